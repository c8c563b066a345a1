/*
 * Request traces for replay: the load generator and the simulator read the
 * public traces (Mooncake JSON lines, Azure 2023 CSV) through this library,
 * then slice, rescale or resample them into an arrival schedule.
 *
 * No ZeroMQ, no client: a trace is plain data in memory.
 */
#ifndef SL_TRACE_H
#define SL_TRACE_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_TRACE_MOONCAKE_BLOCK 512 /* tokens per hash_ids block in the Mooncake traces */

typedef enum sl_trace_format {
    SL_TRACE_AUTO = 0, /* by file extension, else by the first character */
    SL_TRACE_MOONCAKE =
        1, /* {"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]} */
    SL_TRACE_AZURE = 2, /* TIMESTAMP,ContextTokens,GeneratedTokens with a header */
} sl_trace_format_t;

/* One request of a trace. */
typedef struct sl_trace_req {
    int64_t t_us;           /* arrival, microseconds from the start of the trace */
    uint32_t input_len;     /* prompt tokens */
    uint32_t output_len;    /* generated tokens */
    const uint64_t *hashes; /* prefix block hashes (n_hashes), owned by the trace; NULL when none */
    uint32_t n_hashes;      /* entries of hashes */
} sl_trace_req_t;

/* A trace in memory, sorted by arrival. Read-only for users; free with sl_trace_destroy(). */
typedef struct sl_trace {
    sl_trace_req_t *reqs;  /* n requests in arrival order */
    size_t n;              /* requests */
    uint64_t *hash_pool;   /* storage of every request's hashes */
    size_t n_hash_pool;    /* entries used in hash_pool */
    size_t malformed;      /* data lines skipped because they could not be parsed */
    uint32_t block_tokens; /* tokens per hash block (512 for Mooncake, 0 when no hashes) */
    char name[256];        /* what it was loaded from */
} sl_trace_t;

/*
 * Resolve a trace name: one of mooncake-conversation, mooncake-synthetic,
 * azure-code, azure-conv (files under dir), or else a file path used as is.
 * Writes the path into out (cap bytes). SL_ERR_OVERFLOW when it does not fit.
 */
sl_status_t sl_trace_path(const char *name, const char *dir, char *out, size_t cap);

/*
 * Load a trace by name or path (see sl_trace_path). Malformed lines are
 * counted in ->malformed and skipped. On success *trace_p owns the trace; on
 * failure it is untouched (SL_ERR_IO for an unreadable file, logged;
 * SL_ERR_NOMEM).
 */
sl_status_t sl_trace_load(const char *name, const char *dir, sl_trace_format_t fmt,
                          sl_trace_t **trace_p);

/* Whether name is a known trace name or a readable file: SL_OK, or
 * SL_ERR_NOT_FOUND with msg set to "unknown trace 'x' (name, name, ..., or a
 * readable file)" so a program can refuse it at once with the valid names. */
sl_status_t sl_trace_name_check(const char *name, char *msg, size_t cap);

/* Parse a trace held in memory (len bytes of text); same contract as sl_trace_load. */
sl_status_t sl_trace_parse(const char *text, size_t len, sl_trace_format_t fmt, const char *name,
                           sl_trace_t **trace_p);

/* Free a trace; NULL-safe; sets *trace_p = NULL. */
void sl_trace_destroy(sl_trace_t **trace_p);

/* How to turn a trace into a schedule. Zero means "not set" for every field. */
typedef struct sl_trace_opts {
    double start_s;    /* skip requests before this offset (trace time); times rebased to it */
    double duration_s; /* keep requests within this span after start (trace time) */
    size_t count;      /* keep at most this many requests */
    double speedup;    /* divide every arrival time by this (2 = twice as fast) */
    double rate;       /* rescale arrivals to this mean rate (requests/s); overrides speedup */
    bool poisson;      /* replace arrivals with a Poisson process at rate (required), drawing
                          each request's lengths and hashes uniformly from the slice; count
                          (or duration_s * rate, or the slice size) requests */
    bool tile;         /* without poisson: a count beyond the slice replays it again and again,
                          one copy after another, each copy's prefix hashes made its own
                          (copy k's hashes mixed with k), as that many more users of the
                          same kind would: count requests */
    uint64_t seed;     /* seed of the Poisson draws */
} sl_trace_opts_t;

/*
 * Build a new trace from src: slice, then rescale or resample, as opts says.
 * On success *out_p owns it (it shares nothing with src). SL_ERR_INVALID
 * for negative values or Poisson without a rate; SL_ERR_NOMEM.
 */
sl_status_t sl_trace_schedule(const sl_trace_t *src, const sl_trace_opts_t *opts,
                              sl_trace_t **out_p);

/* Mean arrival rate of a trace in requests/s (n / span; 0 when n < 2 or no span). */
double sl_trace_rate(const sl_trace_t *trace);

#endif
