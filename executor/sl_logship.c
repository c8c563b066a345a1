/*
 * Log shipping (see sl_logship.h): a bounded byte ring of records, a
 * batch taken from it, and a token bucket that paces the batches.
 *
 * The ring is one block of ring_bytes; a record is a 3-byte header (kind,
 * length) and its text, written across the end of the block when it must
 * wrap. A push that finds no room drops whole records from the oldest end
 * first: what a collector far behind misses is the old news, and the
 * executor never waits for it. Records are copied in (a log line lives in a
 * stack buffer of the thread that logs). A mutex guards the ring: pushes
 * come from every thread that logs (the engine thread, the link thread, the
 * transport's), a few per second normally, so a lock held for one memcpy is
 * cheaper and simpler than a lock-free multi-producer ring; the one
 * consumer holds it only while it moves lines into its batch.
 *
 * The batch is taken out of the ring into a buffer of its own and kept
 * there until a send succeeds, so a collector that is away costs one batch
 * of memory, not a growing queue; meanwhile the ring goes on dropping its
 * oldest lines. The bucket is charged only for batches sent, in text bytes
 * plus a fixed framing allowance per line and per batch, and is one batch
 * deep, so the background connection never carries more than rate_bps over
 * any window longer than one batch. With a transport engine in the
 * process, a batch must also take its bytes from the engine's background
 * bucket (the gate), so logs and the engine's background transfers share
 * one budget and stay under the share of the link together. One bucket per shipper rather than
 * ZeroMQ's own rate option: ZMQ_RATE applies only to multicast transports.
 */
#include "executor/sl_logship.h"
#include "common/sl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define S_HDR 3 /* record header: kind, then length (16 bits, little-endian) */

struct sl_logship {
    sl_logship_cfg_t cfg;  /* configuration */
    pthread_mutex_t lock;  /* guards the ring and the push counters (pushes from any thread) */
    uint8_t *ring;         /* cfg.ring_bytes of records (owned) */
    size_t head;           /* offset of the oldest record */
    size_t used;           /* bytes of records in the ring */
    uint64_t lines_pushed; /* lines pushed */
    uint64_t dropped;      /* lines dropped for room */
    char *text;          /* the pending batch's text, NUL-separated (owned, batch_bytes + lines) */
    size_t text_used;    /* bytes of text used, NULs included */
    size_t text_bytes;   /* text bytes of the batch, NULs excluded */
    const char **logs;   /* the pending batch's log lines (into text; owned array) */
    const char **traces; /* its trace records (into text; owned array) */
    uint32_t n_logs;     /* entries of logs */
    uint32_t n_traces;   /* entries of traces */
    double tokens;       /* bucket: bytes that may go now */
    double depth;        /* bucket: most tokens held */
    sl_time_t ts;        /* bucket: time of the last refill */
    uint64_t lines_shipped; /* lines of batches sent */
    uint64_t bytes_shipped; /* their text bytes */
    uint64_t batches;       /* batches sent */
    uint64_t send_failed;   /* sends that failed */
};

static _Atomic(sl_logship_t *) s_hooked;

static double s_cost(size_t bytes, uint32_t lines)
{
    return (double)bytes + (double)lines * SL_LOGSHIP_LINE_OVERHEAD + SL_LOGSHIP_BATCH_OVERHEAD;
}

sl_status_t sl_logship_create(const sl_logship_cfg_t *cfg, sl_time_t now, sl_logship_t **ls_p)
{
    if (!cfg || !ls_p || cfg->ring_bytes < S_HDR + 1 || cfg->batch_bytes < SL_LOGSHIP_LINE_MAX ||
        cfg->ring_bytes > SIZE_MAX / 2 || !(cfg->rate_bps > 0))
        return SL_ERR_INVALID;
    sl_logship_t *ls = calloc(1, sizeof(*ls));
    if (!ls)
        return SL_ERR_NOMEM;
    ls->cfg = *cfg;
    ls->ring = malloc(cfg->ring_bytes);
    ls->text = malloc(cfg->batch_bytes + SL_LOGSHIP_BATCH_LINES);
    ls->logs = calloc(SL_LOGSHIP_BATCH_LINES, sizeof(*ls->logs));
    ls->traces = calloc(SL_LOGSHIP_BATCH_LINES, sizeof(*ls->traces));
    if (!ls->ring || !ls->text || !ls->logs || !ls->traces || pthread_mutex_init(&ls->lock, NULL)) {
        free(ls->traces);
        free(ls->logs);
        free(ls->text);
        free(ls->ring);
        free(ls);
        return SL_ERR_NOMEM;
    }
    ls->depth = s_cost(cfg->batch_bytes, SL_LOGSHIP_BATCH_LINES);
    ls->tokens = ls->depth;
    ls->ts = now;
    *ls_p = ls;
    return SL_OK;
}

void sl_logship_destroy(sl_logship_t **ls_p)
{
    sl_logship_t *ls = ls_p ? *ls_p : NULL;
    if (!ls)
        return;
    if (atomic_load(&s_hooked) == ls)
        sl_logship_hook(NULL);
    pthread_mutex_destroy(&ls->lock);
    free(ls->traces);
    free(ls->logs);
    free(ls->text);
    free(ls->ring);
    free(ls);
    *ls_p = NULL;
}

/* Copy n bytes into the ring at offset pos (mod cap). */
static void s_put(sl_logship_t *ls, size_t pos, const void *src, size_t n)
{
    size_t cap = ls->cfg.ring_bytes;
    pos %= cap;
    size_t first = n < cap - pos ? n : cap - pos;
    memcpy(ls->ring + pos, src, first);
    memcpy(ls->ring, (const uint8_t *)src + first, n - first);
}

/* Copy n bytes out of the ring from offset pos (mod cap). */
static void s_get(const sl_logship_t *ls, size_t pos, void *dst, size_t n)
{
    size_t cap = ls->cfg.ring_bytes;
    pos %= cap;
    size_t first = n < cap - pos ? n : cap - pos;
    memcpy(dst, ls->ring + pos, first);
    memcpy((uint8_t *)dst + first, ls->ring, n - first);
}

/* Header of the oldest record (the ring is not empty). */
static void s_peek(const sl_logship_t *ls, int *kind, size_t *len)
{
    uint8_t h[S_HDR];
    s_get(ls, ls->head, h, S_HDR);
    *kind = h[0];
    *len = (size_t)h[1] | (size_t)h[2] << 8;
}

/* Forget the oldest record. */
static void s_pop(sl_logship_t *ls, size_t len)
{
    ls->head = (ls->head + S_HDR + len) % ls->cfg.ring_bytes;
    ls->used -= S_HDR + len;
}

void sl_logship_push(sl_logship_t *ls, sl_logship_kind_t kind, const char *line, size_t len)
{
    if (!ls)
        return;
    if (len > SL_LOGSHIP_LINE_MAX)
        len = SL_LOGSHIP_LINE_MAX;
    if (S_HDR + len > ls->cfg.ring_bytes) /* a ring smaller than a line keeps its start */
        len = ls->cfg.ring_bytes - S_HDR;
    uint8_t h[S_HDR] = {(uint8_t)kind, (uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    pthread_mutex_lock(&ls->lock);
    while (ls->cfg.ring_bytes - ls->used < S_HDR + len) {
        int k;
        size_t l;
        s_peek(ls, &k, &l);
        s_pop(ls, l);
        ls->dropped++;
    }
    size_t tail = ls->head + ls->used;
    s_put(ls, tail, h, S_HDR);
    s_put(ls, tail + S_HDR, line, len);
    ls->used += S_HDR + len;
    ls->lines_pushed++;
    pthread_mutex_unlock(&ls->lock);
}

/* common/sl_log's hook: whatever any thread logs goes to the installed shipper. */
static void s_log_hook(sl_log_level_t level, const char *line)
{
    (void)level;
    sl_logship_t *ls = atomic_load(&s_hooked);
    if (ls)
        sl_logship_push(ls, SL_LOGSHIP_LOG, line, strlen(line));
}

void sl_logship_hook(sl_logship_t *ls)
{
    atomic_store(&s_hooked, ls);
    sl_log_set_hook(ls ? s_log_hook : NULL);
}

static void s_refill(sl_logship_t *ls, sl_time_t now)
{
    if (now > ls->ts) {
        ls->tokens += ls->cfg.rate_bps * (double)(now - ls->ts) / (double)SL_NS_PER_S;
        if (ls->tokens > ls->depth)
            ls->tokens = ls->depth;
        ls->ts = now;
    }
}

static void s_batch_out(const sl_logship_t *ls, sl_logship_batch_t *b)
{
    *b = (sl_logship_batch_t){.logs = ls->logs,
                              .n_logs = ls->n_logs,
                              .traces = ls->traces,
                              .n_traces = ls->n_traces,
                              .bytes = ls->text_bytes};
}

/* The taken batch goes out once the shared bucket, if any, gives its bytes;
 * else it stays taken for the next call. */
static sl_status_t s_gate(sl_logship_t *ls, sl_logship_batch_t *b)
{
    uint32_t lines = ls->n_logs + ls->n_traces;
    if (ls->cfg.gate &&
        ls->cfg.gate(ls->cfg.gate_arg, (uint64_t)s_cost(ls->text_bytes, lines)) != SL_OK)
        return SL_ERR_AGAIN;
    s_batch_out(ls, b);
    return SL_OK;
}

sl_status_t sl_logship_next(sl_logship_t *ls, sl_time_t now, sl_logship_batch_t *b)
{
    s_refill(ls, now);
    uint32_t lines = ls->n_logs + ls->n_traces;
    if (lines) { /* kept from a failed send, or held back by the gate */
        if (ls->tokens < s_cost(ls->text_bytes, lines))
            return SL_ERR_AGAIN;
        return s_gate(ls, b);
    }
    pthread_mutex_lock(&ls->lock);
    while (ls->used && lines < SL_LOGSHIP_BATCH_LINES) {
        int kind;
        size_t len;
        s_peek(ls, &kind, &len);
        if (ls->text_bytes + len > ls->cfg.batch_bytes ||
            s_cost(ls->text_bytes + len, lines + 1) > ls->tokens)
            break;
        char *dst = ls->text + ls->text_used;
        s_get(ls, ls->head + S_HDR, dst, len);
        dst[len] = '\0';
        if (kind == SL_LOGSHIP_TRACE)
            ls->traces[ls->n_traces++] = dst;
        else
            ls->logs[ls->n_logs++] = dst;
        ls->text_used += len + 1;
        ls->text_bytes += len;
        lines++;
        s_pop(ls, len);
    }
    pthread_mutex_unlock(&ls->lock);
    if (!lines)
        return SL_ERR_AGAIN;
    return s_gate(ls, b);
}

void sl_logship_sent(sl_logship_t *ls, sl_time_t now, bool ok)
{
    uint32_t lines = ls->n_logs + ls->n_traces;
    if (!lines)
        return;
    s_refill(ls, now);
    pthread_mutex_lock(&ls->lock);
    if (!ok) {
        ls->send_failed++;
        pthread_mutex_unlock(&ls->lock);
        return;
    }
    ls->tokens -= s_cost(ls->text_bytes, lines);
    ls->lines_shipped += lines;
    ls->bytes_shipped += ls->text_bytes;
    ls->batches++;
    pthread_mutex_unlock(&ls->lock);
    ls->n_logs = ls->n_traces = 0;
    ls->text_used = ls->text_bytes = 0;
}

void sl_logship_stats(sl_logship_t *ls, sl_logship_stats_t *st)
{
    pthread_mutex_lock(&ls->lock);
    *st = (sl_logship_stats_t){.lines_pushed = ls->lines_pushed,
                               .lines_shipped = ls->lines_shipped,
                               .bytes_shipped = ls->bytes_shipped,
                               .batches = ls->batches,
                               .dropped = ls->dropped,
                               .send_failed = ls->send_failed,
                               .ring_used = ls->used};
    pthread_mutex_unlock(&ls->lock);
}
