/*
 * Log shipping: an executor's log lines and per-job trace records, held in a
 * bounded ring and handed out in batches no faster than a token bucket
 * allows, for the daemon to send to the scheduler's collector on its
 * background connection (sl_executor.c; OPERATIONS.md, "Log shipping").
 *
 * Any thread may push (the log hook runs in whichever thread logs); one
 * thread, the daemon's, takes batches. A full ring drops its oldest lines
 * and counts them: a push never waits for the collector. The bucket and the
 * batch are pure (time passed in), so tests drive them on a simulated clock.
 */
#ifndef SL_LOGSHIP_H
#define SL_LOGSHIP_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"

/* Longest line kept; a longer one is cut (logs are at most 1 KiB anyway). */
#define SL_LOGSHIP_LINE_MAX 2048
/* Most lines in one batch. */
#define SL_LOGSHIP_BATCH_LINES 256
/* Bytes each line and each batch are charged beyond their text, for the
 * framing that travels with them. */
#define SL_LOGSHIP_LINE_OVERHEAD 4
#define SL_LOGSHIP_BATCH_OVERHEAD 64

typedef struct sl_logship sl_logship_t;

/* What a record is. */
typedef enum sl_logship_kind {
    SL_LOGSHIP_LOG = 0,   /* a log line */
    SL_LOGSHIP_TRACE = 1, /* a finished job's trace record */
} sl_logship_kind_t;

typedef struct sl_logship_cfg {
    size_t ring_bytes;  /* bytes of lines held at most (each line costs its text + 3) */
    size_t batch_bytes; /* text bytes of one batch at most (>= SL_LOGSHIP_LINE_MAX) */
    double rate_bps;    /* bytes per second the bucket lets out (> 0) */
    /* Optional second bucket shared with other background traffic (the
     * transport engine's, sl_xport_bg_take): a batch goes only once gate
     * takes its bytes (SL_OK); NULL = none. */
    sl_status_t (*gate)(void *arg, uint64_t bytes);
    void *gate_arg; /* gate's argument */
} sl_logship_cfg_t;

/* A batch to send: text of the lines taken, in order, per kind. Points into
 * the shipper; valid until the next sl_logship_next or sl_logship_sent. */
typedef struct sl_logship_batch {
    const char *const *logs;   /* log lines, oldest first */
    uint32_t n_logs;           /* their number */
    const char *const *traces; /* trace records, oldest first */
    uint32_t n_traces;         /* their number */
    size_t bytes;              /* text bytes of the batch */
} sl_logship_batch_t;

typedef struct sl_logship_stats {
    uint64_t lines_pushed;  /* lines pushed since creation */
    uint64_t lines_shipped; /* lines in batches reported sent */
    uint64_t bytes_shipped; /* their text bytes */
    uint64_t batches;       /* batches reported sent */
    uint64_t dropped;       /* lines dropped: the ring was full (oldest first) */
    uint64_t send_failed;   /* sends reported failed (the batch is kept and retried) */
    size_t ring_used;       /* bytes in the ring now */
} sl_logship_stats_t;

/* Create a shipper. SL_ERR_INVALID for a zero ring, a batch smaller than
 * one line, or a rate <= 0; SL_ERR_NOMEM. On success *ls_p owns it; the
 * bucket starts full (one batch's worth) at now. */
sl_status_t sl_logship_create(const sl_logship_cfg_t *cfg, sl_time_t now, sl_logship_t **ls_p);

/* Free it; NULL-safe; sets *ls_p = NULL. Uninstalls it as the log hook if it
 * is installed: call once no other thread logs into it. */
void sl_logship_destroy(sl_logship_t **ls_p);

/* Append a line (len bytes, no newline needed; cut to SL_LOGSHIP_LINE_MAX)
 * from any thread. Drops the oldest lines to make room; never blocks beyond
 * a short lock and never logs. */
void sl_logship_push(sl_logship_t *ls, sl_logship_kind_t kind, const char *line, size_t len);

/* Make ls receive every log line of the process (common/sl_log's hook, which
 * it replaces); NULL uninstalls. One shipper at a time. */
void sl_logship_hook(sl_logship_t *ls);

/*
 * The batch to send at time now: the one kept from a failed send, else the
 * oldest lines that fit the bucket's tokens and batch_bytes. SL_ERR_AGAIN
 * when there is nothing to send or the bucket does not yet hold the next
 * batch (it refills at rate_bps). The batch stays taken until
 * sl_logship_sent reports it.
 */
sl_status_t sl_logship_next(sl_logship_t *ls, sl_time_t now, sl_logship_batch_t *b);

/* The batch from sl_logship_next was sent (ok: its bytes are charged to the
 * bucket and counted shipped) or could not be (the collector is away or
 * slow: it is kept, and offered again by the next sl_logship_next). */
void sl_logship_sent(sl_logship_t *ls, sl_time_t now, bool ok);

/* Counters and fill (any thread). */
void sl_logship_stats(sl_logship_t *ls, sl_logship_stats_t *st);

#endif
