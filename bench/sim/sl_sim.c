/*
 * The policy lab's simulator (see sl_sim.h).
 *
 * Idea: a discrete-event loop over a binary heap of (time, sequence)
 * events. Each simulated executor is a real sl_engine with the sim backend,
 * driven on the virtual clock: its next wake-up is whatever
 * sl_engine_advance returned. The decision core is the scheduler's own
 * (sluice-sched): arrivals call sl_core_job_submit, engine completions call
 * sl_core_job_complete with the report an executor would send
 * (sl_engine_job_report, as the heartbeats' load is sl_engine_load_report),
 * the backend's KV callbacks feed the core's prefix
 * index, and heartbeats copy engine load into the core every heartbeat_ms.
 * So the simulator measures the policy code that runs in production, and the
 * same executor model the sim executor daemon runs (one implementation).
 *
 * The data plane: executors may have roles (prefill, decode, mixed) and a
 * KV region, and reach each other at join. The core's splits, moves and
 * prefix fetches are enacted as the executor daemons enact them
 * (executor/sl_exec_dp.c): the receiving engine holds the job with its
 * blocks reserved (SL_KV_AWAIT), the sending engine computes the prompt (a
 * copy with one output token, SL_KV_PUSH) or pauses the running sequence,
 * or the holder of a cached prefix sends its blocks (found among the
 * hashes its backend reported stored), then the KV crosses the links
 * (sl_sim_link.h: bandwidth, latency, FIFO per side), lands, is imported
 * (sl_engine_import), and the sender reports KvSent to the core
 * (sl_core_kv_sent). Engine events that must reach the core while the core
 * is inside one of our callbacks are deferred to the end of the event (the
 * core refuses re-entry).
 *
 * Ties in time are broken by insertion sequence, and every random choice is
 * seeded, so a run is a pure function of its parameters.
 *
 * Alternatives rejected: a fluid or queueing-theory model of executors (it
 * cannot reproduce continuous batching or prefix-cache hits, the two things
 * the policies differ on); a time-stepped loop (wastes work between events
 * and quantizes latencies).
 */
#include "bench/sim/sl_sim.h"
#include "bench/sim/sl_sim_link.h"
#include "common/sl_cfg.h"
#include "common/sl_hash.h"
#include "common/sl_heap.h"
#include "common/sl_log.h"
#include "common/sl_map.h"
#include "executor/sl_engine.h"
#include "executor/sl_report.h"
#include "executor/sl_sim_cfg.h"
#include "scheduler/core/sl_core.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum s_ev_type {
    S_EV_ARRIVAL,   /* the next request of the schedule */
    S_EV_ENGINE,    /* an engine's wake-up */
    S_EV_HEARTBEAT, /* load copy and core timers */
    S_EV_FAIL,      /* executors fail */
    S_EV_REJOIN,    /* failed executors come back */
    S_EV_XFER,      /* a KV transfer lands (idx: the transfer) */
} s_ev_type_t;

/* An event is a heap entry: key = when, word = type << 32 | executor (for
 * S_EV_ENGINE); the heap breaks ties in time by insertion order. */
typedef struct s_ev {
    sl_time_t t;   /* when */
    uint32_t type; /* s_ev_type_t */
    uint32_t idx;  /* executor for S_EV_ENGINE */
} s_ev_t;

typedef struct s_sim s_sim_t;

typedef struct s_exec {
    s_sim_t *sim;        /* back pointer */
    uint32_t n;          /* simulator's executor number */
    uint32_t core_index; /* the core's handle */
    sl_engine_t *engine; /* the executor model */
    sl_time_t wake;      /* pending wake-up (INT64_MAX: none) */
    bool alive;          /* up */
    sl_map_t cached;     /* block hashes its backend caches (from its KV events) */
    char name[32];       /* its name */
} s_exec_t;

/* What an engine job is to the data plane. */
typedef enum s_kind {
    S_JOB_LOCAL,    /* the job itself, computed where it runs */
    S_JOB_SPLIT_D,  /* a split job's decode side: reserved, awaits the peer's KV */
    S_JOB_SPLIT_P,  /* a split job's prefill side: a copy computing the prompt */
    S_JOB_MOVE_DST, /* a move's destination: reserved, awaits the source's KV */
    S_JOB_FETCH_D,  /* a prefix fetch's receiver: reserved, awaits a peer's cached blocks */
} s_kind_t;

/* What a transfer carries. */
typedef enum s_xfer_kind {
    S_XFER_PUSH,  /* a split's prompt, prefill side to decode side */
    S_XFER_MOVE,  /* a running job's KV, source to destination */
    S_XFER_FETCH, /* cached leading blocks, holder to the job's executor */
} s_xfer_kind_t;

/* A job inside an engine. */
typedef struct s_ejob {
    sl_engine_job_t ej;    /* what the engine sees */
    uint32_t req;          /* request number */
    s_kind_t kind;         /* its part in a split or a move */
    uint64_t serial;       /* unique per engine job of the run (seqs repeat on requeue) */
    uint32_t peer;         /* SPLIT_*, MOVE_DST, FETCH_D: the other side's executor number */
    uint32_t fetch_blocks; /* FETCH_D: leading blocks the peer caches (the core's plan) */
    uint64_t peer_serial;  /* SPLIT_P: the decode side's engine job */
    uint64_t bytes;        /* SPLIT_P: KV bytes to push */
    uint32_t blocks;       /* SPLIT_P: KV blocks to push */
    bool moving;           /* a move of this job is planned (move_to reserved) */
    uint32_t move_to;      /* ... to this executor number */
    uint64_t move_serial;  /* ... into this engine job */
    sl_time_t paused_at;   /* held paused for the move since */
    uint32_t out[];        /* output tokens */
} s_ejob_t;

/* A KV transfer in flight. */
typedef struct s_xfer {
    bool used;            /* slot taken */
    s_xfer_kind_t kind;   /* what it carries */
    uint64_t seq;         /* the core's job */
    uint32_t from, to;    /* executor numbers */
    uint64_t from_serial; /* the sending engine job (none for a fetch) */
    uint64_t to_serial;   /* the receiving engine job */
    uint64_t bytes;       /* KV bytes */
    uint32_t blocks;      /* KV blocks */
    sl_time_t posted;     /* when posted */
    uint32_t prefill_us;  /* split: receipt -> prompt computed at the sender */
    uint32_t first_block; /* fetch: the receiver's first uncached block */
} s_xfer_t;

/* An engine event for the core, deferred while the core is in a callback. */
typedef enum s_defer_type {
    S_DEFER_DONE,    /* a job ended: its report */
    S_DEFER_KV_FAIL, /* a failed KvSent */
    S_DEFER_REFUSED, /* a reservation refused (KvReserved with an error) */
    S_DEFER_STORED,  /* a KV block stored */
    S_DEFER_EVICTED, /* a KV block evicted */
} s_defer_type_t;

typedef struct s_defer {
    s_defer_type_t type;  /* what happened */
    s_exec_t *x;          /* the executor it happened on */
    s_ejob_t *j;          /* DONE: the job (freed after) */
    sl_engine_done_t how; /* DONE: how it ended */
    uint64_t seq;         /* KV_FAIL: the job; STORED, EVICTED: the block hash */
    char error[128];      /* why */
} s_defer_t;

/* Per request outcome. */
typedef struct s_req {
    uint32_t prompt; /* prompt tokens */
    uint32_t cached; /* tokens served from cache on its last run */
} s_req_t;

struct s_sim {
    const sl_sim_params_t *p; /* parameters */
    sl_sim_report_t *rep;     /* results */
    sl_core_t *core;          /* decision core */
    s_exec_t *execs;          /* executors */
    sl_heap_t events;         /* event queue */
    sl_time_t now;            /* virtual time */
    size_t next_arrival;      /* next request of the schedule */
    s_req_t *reqs;            /* per request */
    double tpot_sum;          /* sum of TPOT over completed jobs */
    uint64_t tpot_n;          /* their number */
    uint64_t prompt_tokens;   /* over completed jobs */
    uint64_t cached_tokens;   /* over completed jobs */
    sl_status_t error;        /* first fatal error */
    sl_sim_links_t *links;    /* the data plane's links (NULL without it) */
    uint64_t serial;          /* last engine job serial */
    s_xfer_t *xfers;          /* transfers in flight (slots) */
    uint32_t n_xfers;         /* slots */
    bool in_cb;               /* inside one of the core's callbacks */
    s_defer_t *defer;         /* deferred engine events */
    uint32_t n_defer;         /* their number */
    uint32_t cap_defer;       /* room */
    double xfer_s_sum;        /* sum of transfer times */
    double pause_s_sum;       /* sum of move pauses */
    uint64_t pauses;          /* their number */
};

void sl_sim_params_default(sl_sim_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->executors = 16;
    p->explore_share = -1;
    p->policy = "learned";
    p->admission = true;
    p->slo_ttft_mult = 3.0;
    p->slo_ttft_floor_s = 1.0;
    p->slo_tpot_s = 0.100;
    p->heartbeat_ms = 100;
    p->credits = 32;
    p->max_batch = 32;
    p->run_steps = 256;
    sl_cfg_defaults(sl_sim_cfg_fields, &p->model);
    p->kv_block_tokens = 16;
    p->fail_down_s = 30;
    p->seed = 1;
    p->kv_bytes_per_token = 131072; /* 2 x 32 layers x 8 KV heads x 128 dims x 2 B (bf16) */
    p->link_gbps = 100;             /* one RDMA NIC */
    p->link_latency_us = 10;
    p->bg_share = 0.2;
}

double sl_sim_unloaded_ttft(const sl_sim_params_t *p, uint32_t prompt_tokens)
{
    sl_sim_cfg_t model = p->model;
    model.speed = 1; /* the SLO is an executor of speed 1's, whatever the fleet */
    return sl_sim_cfg_unloaded_ttft(&model, prompt_tokens);
}

static void s_push(s_sim_t *s, sl_time_t t, s_ev_type_t type, uint32_t idx)
{
    sl_status_t st = sl_heap_push(&s->events, t, NULL, (uint64_t)type << 32 | idx);
    if (st != SL_OK)
        s->error = st;
}

static s_ev_t s_pop(s_sim_t *s)
{
    sl_heap_entry_t e;
    sl_heap_pop(&s->events, &e);
    return (s_ev_t){.t = e.key, .type = (uint32_t)(e.word >> 32), .idx = (uint32_t)e.word};
}

/* The engine of the next event, when it is an engine's wake-up, starts
 * loading while this event runs: with a thousand engines, each one's state
 * has left the caches since its last step. */
static void s_prefetch_next(const s_sim_t *s)
{
    const sl_heap_entry_t *top = sl_heap_top(&s->events);
    if (!top || (uint32_t)(top->word >> 32) != S_EV_ENGINE)
        return;
    const s_exec_t *x = &s->execs[(uint32_t)top->word];
    if (x->alive)
        sl_engine_prefetch(x->engine, s->p->max_batch);
}

static void s_wake(s_sim_t *s, s_exec_t *x, sl_time_t t)
{
    if (t < x->wake) {
        x->wake = t;
        s_push(s, t, S_EV_ENGINE, x->n);
    }
}

/* --- engine jobs --- */

/* A new engine job for the core's job, producing at most max_new tokens
 * (room for all of the job's: a move's destination takes the source's).
 * NULL on no memory (recorded in s->error). */
static s_ejob_t *s_ejob_new(s_sim_t *s, const sl_job_t *job, uint32_t max_new, s_kind_t kind)
{
    s_ejob_t *j = calloc(1, sizeof(*j) + (size_t)job->max_new_tokens * sizeof(uint32_t));
    if (!j) {
        s->error = SL_ERR_NOMEM;
        return NULL;
    }
    j->req = (uint32_t)(uintptr_t)job->user;
    j->kind = kind;
    j->serial = ++s->serial;
    j->ej.seq.id = job->seq;
    j->ej.seq.prompt_len = job->prompt_tokens;
    j->ej.seq.block_hashes = job->block_hashes;
    j->ej.seq.n_block_hashes = job->n_block_hashes;
    j->ej.seq.hash_block_tokens = job->block_tokens;
    j->ej.seq.max_new_tokens = max_new;
    j->ej.seq.interactive = job->prio == SL_PRIO_INTERACTIVE;
    j->ej.seq.out = j->out;
    j->ej.user = j;
    return j;
}

/* Executor n's engine job for the core's job seq with this serial; NULL
 * when it is gone (ended, or its executor failed). */
static s_ejob_t *s_ejob_find(s_sim_t *s, uint32_t n, uint64_t seq, uint64_t serial)
{
    s_exec_t *x = &s->execs[n];
    if (!x->alive)
        return NULL;
    sl_engine_job_t *ej = sl_engine_find(x->engine, seq);
    s_ejob_t *j = ej ? ej->user : NULL;
    return j && j->serial == serial ? j : NULL;
}

static s_defer_t *s_defer_add(s_sim_t *s, s_exec_t *x, s_defer_type_t type)
{
    if (s->n_defer == s->cap_defer) {
        uint32_t cap = s->cap_defer ? 2 * s->cap_defer : 16;
        s_defer_t *d = realloc(s->defer, cap * sizeof(*d));
        if (!d) {
            s->error = SL_ERR_NOMEM;
            return NULL;
        }
        s->defer = d;
        s->cap_defer = cap;
    }
    s_defer_t *d = &s->defer[s->n_defer++];
    memset(d, 0, sizeof(*d));
    d->x = x;
    d->type = type;
    return d;
}

/* x's push of seq failed: KvSent with an error, as the daemon sends it. */
static void s_kv_fail(s_sim_t *s, s_exec_t *x, uint64_t seq, const char *why)
{
    if (s->in_cb) {
        s_defer_t *d = s_defer_add(s, x, S_DEFER_KV_FAIL);
        if (d) {
            d->seq = seq;
            snprintf(d->error, sizeof(d->error), "%s", why);
        }
        return;
    }
    sl_kv_sent_t k = {.job_seq = seq, .ok = false, .error = why};
    if (x->alive)
        (void)sl_core_kv_sent(s->core, x->core_index, &k, s->now);
}

/* x refuses the reservation of seq (KvReserved with an error). */
static void s_kv_refused(s_sim_t *s, s_exec_t *x, uint64_t seq, const char *why)
{
    if (s->in_cb) {
        s_defer_t *d = s_defer_add(s, x, S_DEFER_REFUSED);
        if (d) {
            d->seq = seq;
            snprintf(d->error, sizeof(d->error), "%s", why);
        }
        return;
    }
    if (x->alive)
        (void)sl_core_kv_refused(s->core, x->core_index, seq, why, s->now);
}

/* --- the core's actions --- */

static sl_status_t s_io_dispatch(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    s_sim_t *s = arg;
    s_exec_t *x = exec->user;
    bool split = job->kv_mode == SL_KV_PUSH && job->kv_peer;
    bool fetch = job->kv_mode == SL_KV_FETCH && job->kv_peer;
    s_ejob_t *j = s_ejob_new(s, job, job->max_new_tokens,
                             split   ? S_JOB_SPLIT_D
                             : fetch ? S_JOB_FETCH_D
                                     : S_JOB_LOCAL);
    if (!j)
        return SL_ERR_NOMEM;
    if (split || fetch) {
        /* This side reserves first (held RESERVED); then the prefill side
         * gets the prompt, or the holder sends its cached blocks (s_eng_held). */
        j->ej.kv_mode = SL_KV_AWAIT;
        j->peer = ((s_exec_t *)job->kv_peer->user)->n;
        j->fetch_blocks = fetch ? job->kv_fetch_blocks : 0;
    }
    bool was = s->in_cb;
    s->in_cb = true;
    sl_engine_submit(x->engine, &j->ej, s->now);
    s->in_cb = was;
    s_wake(s, x, s->now);
    return SL_OK;
}

/* Ended here as canceled; the core asked, so nothing is reported. */
static void s_io_cancel(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    s_sim_t *s = arg;
    s_exec_t *x = exec->user;
    if (!x->alive)
        return;
    sl_engine_job_t *ej = sl_engine_find(x->engine, job->seq);
    if (!ej)
        return;
    s_ejob_t *j = ej->user;
    if (j->kind == S_JOB_MOVE_DST) {
        /* the move is off: the source goes on where it is */
        s_ejob_t *src = s_ejob_find(s, j->peer, job->seq, j->peer_serial);
        if (src) {
            src->moving = false;
            if (src->ej.held && src->ej.kv_mode == SL_KV_LOCAL)
                sl_engine_resume(s->execs[j->peer].engine, &src->ej, s->now);
            s_wake(s, &s->execs[j->peer], s->now);
        }
    }
    bool was = s->in_cb;
    s->in_cb = true;
    sl_engine_cancel(x->engine, job->seq, s->now);
    s->in_cb = was;
    s_wake(s, x, s->now);
}

/* A move begins: the destination reserves (held RESERVED), then the source
 * is paused (s_eng_held). */
static sl_status_t s_io_migrate(void *arg, sl_job_t *job)
{
    s_sim_t *s = arg;
    s_exec_t *src = job->exec->user, *dst = job->kv_peer->user;
    sl_engine_job_t *sej = src->alive ? sl_engine_find(src->engine, job->seq) : NULL;
    if (!sej || !sej->admitted || !sej->seq.prefilled || sej->held || !dst->alive)
        return SL_ERR_AGAIN; /* nothing to move yet */
    s_ejob_t *sj = sej->user;
    s_ejob_t *j = s_ejob_new(s, job, job->max_new_tokens, S_JOB_MOVE_DST);
    if (!j)
        return SL_ERR_NOMEM;
    j->ej.kv_mode = SL_KV_AWAIT;
    j->peer = src->n;
    j->peer_serial = sj->serial;
    sj->moving = true;
    sj->move_to = dst->n;
    sj->move_serial = j->serial;
    bool was = s->in_cb;
    s->in_cb = true;
    sl_engine_submit(dst->engine, &j->ej, s->now);
    s->in_cb = was;
    s_wake(s, dst, s->now);
    return SL_OK;
}

/* KV blocks from the receiver's first uncached block through tokens. */
static uint32_t s_kv_blocks(const s_sim_t *s, uint32_t tokens, uint32_t cached)
{
    uint32_t bt = s->p->kv_block_tokens;
    uint32_t total = (tokens + bt - 1) / bt, first = cached / bt;
    return total > first ? total - first : 0;
}

/* Post a transfer of blocks of job seq's KV from executor from (engine job
 * from_serial, 0 for a fetch) to executor to (engine job to_serial). */
static void s_xfer_post(s_sim_t *s, s_xfer_kind_t kind, uint64_t seq, uint32_t from,
                        uint64_t from_serial, uint32_t to, uint64_t to_serial, uint32_t blocks,
                        uint32_t prefill_us, uint32_t first_block)
{
    uint32_t i = 0;
    while (i < s->n_xfers && s->xfers[i].used)
        i++;
    if (i == s->n_xfers) {
        uint32_t n = s->n_xfers ? 2 * s->n_xfers : 64;
        s_xfer_t *v = realloc(s->xfers, n * sizeof(*v));
        if (!v) {
            s->error = SL_ERR_NOMEM;
            return;
        }
        memset(v + s->n_xfers, 0, (n - s->n_xfers) * sizeof(*v));
        s->xfers = v;
        s->n_xfers = n;
    }
    s_xfer_t *xf = &s->xfers[i];
    uint64_t bytes =
        (uint64_t)((double)blocks * s->p->kv_block_tokens * s->p->kv_bytes_per_token + 0.5);
    *xf = (s_xfer_t){.used = true,
                     .kind = kind,
                     .seq = seq,
                     .from = from,
                     .to = to,
                     .from_serial = from_serial,
                     .to_serial = to_serial,
                     .bytes = bytes,
                     .blocks = blocks,
                     .posted = s->now,
                     .prefill_us = prefill_us,
                     .first_block = first_block};
    sl_time_t at = sl_sim_links_post(s->links, from, to, bytes, s->now, NULL);
    s_push(s, at, S_EV_XFER, i);
}

/* A prefix fetch landed: the receiver computes only the rest of the
 * prompt, the holder reports the transfer. */
static void s_fetch_land(s_sim_t *s, const s_xfer_t *xf)
{
    s_exec_t *hx = &s->execs[xf->from], *tx = &s->execs[xf->to];
    s_ejob_t *dj = s_ejob_find(s, xf->to, xf->seq, xf->to_serial);
    if (!hx->alive)
        return; /* the holder failed: the core requeues the job */
    if (!dj || !dj->ej.held) {
        s_kv_fail(s, hx, xf->seq, "the receiver holds no reservation for it");
        return;
    }
    sl_time_t xfer = s->now - xf->posted;
    sl_kv_sent_t k = {.job_seq = xf->seq,
                      .ok = true,
                      .bytes = xf->bytes,
                      .blocks = xf->blocks,
                      .xfer_us = (uint32_t)(xfer / 1000)};
    s->xfer_s_sum += (double)xfer / 1e9;
    s->rep->kv_xfers++;
    (void)sl_core_kv_sent(s->core, hx->core_index, &k, s->now);
    uint32_t covered = (xf->first_block + xf->blocks) * s->p->kv_block_tokens;
    if (sl_engine_import(tx->engine, &dj->ej, 0, 0, covered, s->now) != SL_OK)
        sl_engine_end(tx->engine, &dj->ej, SL_ENGINE_FAILED, "the import of its prefix failed",
                      s->now);
    s_wake(s, tx, s->now);
}

/* A transfer landed: the receiver imports, the sender lets go and reports. */
static void s_xfer_land(s_sim_t *s, uint32_t i)
{
    s_xfer_t xf = s->xfers[i];
    s->xfers[i].used = false;
    if (xf.kind == S_XFER_FETCH) {
        s_fetch_land(s, &xf);
        return;
    }
    s_exec_t *fx = &s->execs[xf.from], *tx = &s->execs[xf.to];
    s_ejob_t *sj = s_ejob_find(s, xf.from, xf.seq, xf.from_serial);
    s_ejob_t *dj = s_ejob_find(s, xf.to, xf.seq, xf.to_serial);
    if (!sj)
        return; /* the sender failed or was canceled: the core has seen to the job */
    if (!dj || !dj->ej.held) {
        /* the reservation is gone: a split's prefill ends, a move's source goes on */
        if (xf.kind == S_XFER_MOVE) {
            sj->moving = false;
            if (sj->ej.held)
                sl_engine_resume(fx->engine, &sj->ej, s->now);
            s_wake(s, fx, s->now);
        } else {
            sl_engine_end(fx->engine, &sj->ej, SL_ENGINE_CANCELED, "its reservation is gone",
                          s->now);
            s_wake(s, fx, s->now);
        }
        s_kv_fail(s, fx, xf.seq, "the receiver holds no reservation for it");
        return;
    }
    uint32_t n_out = sj->ej.seq.n_out;
    memcpy(dj->out, sj->out, (size_t)n_out * sizeof(uint32_t));
    sl_time_t xfer = s->now - xf.posted;
    sl_kv_sent_t k = {.job_seq = xf.seq,
                      .ok = true,
                      .bytes = xf.bytes,
                      .blocks = xf.blocks,
                      .xfer_us = (uint32_t)(xfer / 1000),
                      .prefill_us = xf.prefill_us,
                      .output_tokens = n_out};
    if (xf.kind == S_XFER_MOVE) {
        /* the destination goes on as the source would have: same clock */
        dj->ej.arrived = sj->ej.arrived;
        dj->ej.started = sj->ej.started;
        dj->ej.has_started = sj->ej.has_started;
        dj->ej.first_token = sj->ej.first_token;
        k.pause_us = (uint32_t)((s->now - sj->paused_at) / 1000);
        s->pause_s_sum += (double)(s->now - sj->paused_at) / 1e9;
        s->pauses++;
    }
    s->xfer_s_sum += (double)xfer / 1e9;
    s->rep->kv_xfers++;
    sl_engine_end(fx->engine, &sj->ej, SL_ENGINE_MOVED, NULL, s->now);
    s_wake(s, fx, s->now);
    (void)sl_core_kv_sent(s->core, fx->core_index, &k, s->now);
    if (sl_engine_import(tx->engine, &dj->ej, n_out, 0, 0, s->now) != SL_OK)
        sl_engine_end(tx->engine, &dj->ej, SL_ENGINE_FAILED, "the import of its KV failed", s->now);
    s_wake(s, tx, s->now);
}

static void s_io_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                        const sl_exec_t *exec, const void *payload, const char *error)
{
    s_sim_t *s = arg;
    sl_sim_report_t *rep = s->rep;
    uint32_t req = (uint32_t)(uintptr_t)job->user;
    if (status != SL_JOB_OK) {
        rep->failed++;
        return;
    }
    rep->completed++;
    double ttft = (double)t->ttft / 1e9;
    double end = (double)t->end / 1e9;
    sl_hist_record(&rep->ttft_us, (uint64_t)(t->ttft / 1000));
    double tpot = job->max_new_tokens > 1 ? (end - ttft) / (job->max_new_tokens - 1) : 0;
    if (job->max_new_tokens > 1) {
        s->tpot_sum += tpot;
        s->tpot_n++;
    }
    s->prompt_tokens += s->reqs[req].prompt;
    s->cached_tokens += s->reqs[req].cached;
    double slo = sl_sim_unloaded_ttft(s->p, job->prompt_tokens) * s->p->slo_ttft_mult;
    if (slo < s->p->slo_ttft_floor_s)
        slo = s->p->slo_ttft_floor_s;
    if (ttft <= slo && tpot <= s->p->slo_tpot_s)
        rep->slo_met++;
    double end_s = (double)(job->submitted + t->end) / 1e9;
    if (end_s > rep->sim_end_s)
        rep->sim_end_s = end_s;
}

/* The core's lines go to the log, as the daemon's do (same level values). */
_Static_assert((int)SL_CORE_LOG_ERROR == (int)SL_LOG_ERROR &&
                   (int)SL_CORE_LOG_WARN == (int)SL_LOG_WARN &&
                   (int)SL_CORE_LOG_INFO == (int)SL_LOG_INFO,
               "the core's log levels are sl_log_level_t's");
static void s_io_log(void *arg, sl_core_log_level_t level, const char *msg)
{
    SL_LOG_AT((sl_log_level_t)level, "%s", msg);
}

static const sl_core_io_t s_io = {
    .dispatch = s_io_dispatch,
    .result = s_io_result,
    .cancel = s_io_cancel,
    .migrate = s_io_migrate,
    .log = s_io_log,
};

/* --- the engines' callbacks --- */

/* Exactly what an executor would report for this engine job. */
static void s_report_done(s_sim_t *s, s_exec_t *x, s_ejob_t *j, sl_engine_done_t how,
                          const char *error)
{
    sl_result_report_t rep;
    sl_engine_job_report(&j->ej, how, error, &rep);
    s->reqs[j->req].cached = rep.res.cached_tokens;
    sl_core_job_complete(s->core, x->core_index, j->ej.seq.id, &rep.res, NULL, s->now);
}

static void s_eng_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *error)
{
    s_exec_t *x = arg;
    s_sim_t *s = x->sim;
    s_ejob_t *j = ej->user;
    /* Canceled: the core asked. Moved: the sender reports KvSent. A split's
     * prefill copy is no job of the core's: only its failure is told. */
    if (!x->alive || how == SL_ENGINE_CANCELED || how == SL_ENGINE_MOVED) {
        free(j);
        return;
    }
    if (j->kind == S_JOB_SPLIT_P) {
        if (how != SL_ENGINE_OK)
            s_kv_fail(s, x, ej->seq.id, error ? error : "its prompt failed");
        free(j);
        return;
    }
    if (s->in_cb) {
        s_defer_t *d = s_defer_add(s, x, S_DEFER_DONE);
        if (!d) {
            free(j);
            return;
        }
        d->j = j;
        d->how = how;
        snprintf(d->error, sizeof(d->error), "%s", error ? error : "");
        return;
    }
    s_report_done(s, x, j, how, error);
    free(j);
}

/* Deferred engine events, in order (handling one may add more). */
static void s_defer_run(s_sim_t *s)
{
    for (uint32_t i = 0; i < s->n_defer; i++) {
        s_defer_t d = s->defer[i];
        switch (d.type) {
        case S_DEFER_DONE:
            if (d.x->alive)
                s_report_done(s, d.x, d.j, d.how, d.error[0] ? d.error : NULL);
            free(d.j);
            break;
        case S_DEFER_REFUSED:
            if (d.x->alive)
                (void)sl_core_kv_refused(s->core, d.x->core_index, d.seq, d.error, s->now);
            break;
        case S_DEFER_KV_FAIL: {
            sl_kv_sent_t k = {.job_seq = d.seq, .ok = false, .error = d.error};
            if (d.x->alive)
                (void)sl_core_kv_sent(s->core, d.x->core_index, &k, s->now);
            break;
        }
        case S_DEFER_STORED:
        case S_DEFER_EVICTED:
            if (d.x->alive)
                sl_core_exec_kv_event(
                    s->core, d.x->core_index, d.type == S_DEFER_STORED ? &d.seq : NULL,
                    d.type == S_DEFER_STORED, d.type == S_DEFER_EVICTED ? &d.seq : NULL,
                    d.type == S_DEFER_EVICTED, false, s->now);
            break;
        }
    }
    s->n_defer = 0;
}

/* j (on x) has reserved its blocks for a prefix fetch: the holder sends
 * the leading blocks it still caches past x's own, as the daemon's holder
 * finds them by their hashes in its prefix cache (here: the hashes its
 * backend reported stored and not evicted). */
static void s_fetch_start(s_sim_t *s, s_exec_t *x, s_ejob_t *j)
{
    const sl_seq_t *seq = &j->ej.seq;
    uint32_t first = seq->cached_tokens / s->p->kv_block_tokens;
    if (first >= j->fetch_blocks) {
        s_kv_refused(s, x, seq->id, "nothing left to fetch");
        return;
    }
    s_exec_t *hx = &s->execs[j->peer];
    if (!hx->alive)
        return; /* the core requeues it */
    uint32_t n = j->fetch_blocks < seq->n_block_hashes ? j->fetch_blocks : seq->n_block_hashes;
    uint32_t found = 0;
    while (found < n && sl_map_get(&hx->cached, seq->block_hashes[found]))
        found++;
    if (found <= first) {
        s_kv_fail(s, hx, seq->id, "the blocks are no longer cached here");
        return;
    }
    s_xfer_post(s, S_XFER_FETCH, seq->id, hx->n, 0, x->n, j->serial, found - first, 0, first);
}

/* A job is held: its KV moves next. */
static void s_eng_held(void *arg, sl_engine_job_t *ej, sl_engine_held_t why)
{
    s_exec_t *x = arg;
    s_sim_t *s = x->sim;
    s_ejob_t *j = ej->user;
    if (!x->alive)
        return;
    if (why == SL_ENGINE_HELD_RESERVED && j->kind == S_JOB_SPLIT_D) {
        /* Reserved: the prefill side computes the prompt and one token. */
        s_exec_t *px = &s->execs[j->peer];
        sl_job_t *job = sl_core_job_get(s->core, ej->seq.id);
        if (!px->alive || !job)
            return; /* the core requeues it */
        s_ejob_t *pj = s_ejob_new(s, job, 1, S_JOB_SPLIT_P);
        if (!pj)
            return;
        pj->ej.kv_mode = SL_KV_PUSH;
        pj->peer = x->n;
        pj->peer_serial = j->serial;
        pj->blocks = s_kv_blocks(s, ej->seq.prompt_len, ej->seq.cached_tokens);
        sl_engine_submit(px->engine, &pj->ej, s->now);
        s_wake(s, px, s->now);
    } else if (why == SL_ENGINE_HELD_RESERVED && j->kind == S_JOB_MOVE_DST) {
        /* Reserved: the source pauses the sequence at its next step boundary. */
        s_exec_t *sx = &s->execs[j->peer];
        s_ejob_t *sj = s_ejob_find(s, j->peer, ej->seq.id, j->peer_serial);
        if (!sj) {
            return; /* the source ended it: the core sees to the move */
        }
        sl_status_t st = sl_engine_pause(sx->engine, ej->seq.id, s->now);
        if (st != SL_OK) {
            sj->moving = false;
            s_kv_fail(s, sx, ej->seq.id,
                      st == SL_ERR_AGAIN ? "its prompt is not computed yet" : sl_status_str(st));
        }
        s_wake(s, sx, s->now);
    } else if (why == SL_ENGINE_HELD_RESERVED && j->kind == S_JOB_FETCH_D) {
        s_fetch_start(s, x, j);
    } else if (why == SL_ENGINE_HELD_PREFILLED && j->kind == S_JOB_SPLIT_P) {
        uint32_t prefill_us = (uint32_t)((ej->first_token - ej->arrived) / 1000);
        s_xfer_post(s, S_XFER_PUSH, ej->seq.id, x->n, j->serial, j->peer, j->peer_serial, j->blocks,
                    prefill_us, 0);
    } else if (why == SL_ENGINE_HELD_PAUSED) {
        s_ejob_t *dj = j->moving ? s_ejob_find(s, j->move_to, ej->seq.id, j->move_serial) : NULL;
        if (!dj) {
            j->moving = false;
            sl_engine_resume(x->engine, ej, s->now); /* the move is off */
            s_wake(s, x, s->now);
            return;
        }
        j->paused_at = s->now;
        uint32_t blocks =
            s_kv_blocks(s, ej->seq.prompt_len + ej->seq.n_out, dj->ej.seq.cached_tokens);
        s_xfer_post(s, S_XFER_MOVE, ej->seq.id, x->n, j->serial, j->move_to, j->move_serial, blocks,
                    0, 0);
    }
}

/* A KV event of x's backend; deferred while the core is in a callback. */
static bool s_kv_defer(s_exec_t *x, uint64_t hash, s_defer_type_t type)
{
    s_sim_t *s = x->sim;
    if (!s->in_cb)
        return false;
    s_defer_t *d = s_defer_add(s, x, type);
    if (d)
        d->seq = hash;
    return true;
}

static void s_kv_stored(void *arg, uint64_t hash)
{
    s_exec_t *x = arg;
    if (x->alive && x->sim->p->data_plane && sl_map_put(&x->cached, hash, x) != SL_OK)
        x->sim->error = SL_ERR_NOMEM;
    if (x->alive && !s_kv_defer(x, hash, S_DEFER_STORED))
        sl_core_exec_kv_event(x->sim->core, x->core_index, &hash, 1, NULL, 0, false, x->sim->now);
}

static void s_kv_evicted(void *arg, uint64_t hash)
{
    s_exec_t *x = arg;
    sl_map_del(&x->cached, hash);
    if (x->alive && !s_kv_defer(x, hash, S_DEFER_EVICTED))
        sl_core_exec_kv_event(x->sim->core, x->core_index, NULL, 0, &hash, 1, false, x->sim->now);
}

static sl_status_t s_exec_start(s_sim_t *s, s_exec_t *x)
{
    const sl_sim_params_t *p = s->p;
    sl_engine_cfg_t ecfg;
    sl_cfg_defaults(sl_engine_cfg_fields, &ecfg);
    ecfg.max_batch = p->max_batch;
    ecfg.run_steps = p->run_steps > 1 ? p->run_steps : 1;
    sl_sim_cfg_t model = p->model;
    model.speed = p->speeds ? p->speeds[x->n] : 1.0;
    sl_backend_params_t bp = {
        .model = "",
        .weights = "",
        .weight_format = "bf16",
        .device = "cpu",
        .kv_block_tokens = p->kv_block_tokens,
        .seed = p->seed,
        .sim = &model,
        .kv_cb = {.stored = s_kv_stored, .evicted = s_kv_evicted, .arg = x},
    };
    sl_engine_cb_t cb = {.done = s_eng_done, .held = s_eng_held, .arg = x};
    sl_status_t st = sl_engine_create(&ecfg, &sl_backend_sim, &bp, &cb, &x->engine);
    if (st != SL_OK)
        return st;
    sl_exec_info_t info = {
        .name = x->name,
        .slots = (uint32_t)p->credits,
        .backend = "sim",
        .kv_blocks_total = (uint32_t)model.kv_capacity_blocks,
        .kv_block_tokens = p->kv_block_tokens,
        .speed = model.speed,
        .step_tokens = ecfg.step_tokens > 0 ? (uint32_t)ecfg.step_tokens : 1u << 24,
    };
    if (p->data_plane) {
        int n = (int)x->n;
        info.role = n < p->prefill_execs                     ? SL_ROLE_PREFILL
                    : n < p->prefill_execs + p->decode_execs ? SL_ROLE_DECODE
                                                             : SL_ROLE_MIXED;
        info.kv_region_bytes = (uint64_t)((double)model.kv_capacity_blocks * p->kv_block_tokens *
                                          p->kv_bytes_per_token);
        info.kv_fetch_source = true; /* the simulator serves fetches from its model of the cache */
        sl_sim_links_reset(s->links, x->n);
    }
    sl_map_fini(&x->cached); /* a rejoined executor starts empty */
    sl_map_init(&x->cached);
    x->alive = true;
    x->wake = INT64_MAX;
    st = sl_core_exec_join(s->core, &info, x, s->now, &x->core_index);
    if (st != SL_OK || !p->data_plane)
        return st;
    /* Every pair reaches: the daemons check it with a small read first. */
    for (int i = 0; i < p->executors; i++) {
        s_exec_t *o = &s->execs[i];
        if (o == x || !o->alive)
            continue;
        (void)sl_core_exec_reach(s->core, x->core_index, o->core_index, true, s->now);
        (void)sl_core_exec_reach(s->core, o->core_index, x->core_index, true, s->now);
    }
    return SL_OK;
}

static void s_exec_fail(s_sim_t *s, s_exec_t *x)
{
    if (!x->alive)
        return;
    x->alive = false; /* engine completions from now on are dropped */
    sl_engine_destroy(&x->engine);
    x->wake = INT64_MAX;
    sl_map_fini(&x->cached);
    sl_map_init(&x->cached);
    sl_core_exec_lost(s->core, x->core_index, "simulated failure", s->now);
}

static void s_arrival(s_sim_t *s)
{
    const sl_trace_t *tr = s->p->trace;
    size_t i = s->next_arrival++;
    const sl_trace_req_t *r = &tr->reqs[i];
    char id[32];
    snprintf(id, sizeof(id), "r%zu", i);
    s->reqs[i].prompt = r->input_len;
    double slo = sl_sim_unloaded_ttft(s->p, r->input_len) * s->p->slo_ttft_mult;
    if (slo < s->p->slo_ttft_floor_s)
        slo = s->p->slo_ttft_floor_s;
    /* Which requests are batch is a hash of the seed and the request's
     * index, not a draw from a shared stream: the same requests are batch
     * for every policy and load, whatever else consumes random numbers. */
    double u = (double)(sl_hash_mix64(s->p->seed ^ sl_hash_mix64(i + 1)) >> 11) * 0x1p-53;
    sl_job_desc_t d = {
        .id = id,
        .prio = u < s->p->batch_share ? SL_PRIO_BATCH : SL_PRIO_INTERACTIVE,
        .prompt_tokens = r->input_len,
        .max_new_tokens = r->output_len ? r->output_len : 1,
        .block_hashes = r->hashes,
        .n_block_hashes = r->n_hashes,
        .block_tokens = tr->block_tokens,
        .ttft_deadline = s->p->admission ? (sl_time_t)(slo * 1e9) : 0,
    };
    sl_job_t *job;
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_status_t st =
        sl_core_job_submit(s->core, &d, (void *)(uintptr_t)i, s->now, &job, &reason, &retry);
    if (st == SL_ERR_BUSY) {
        s->rep->busy++;
        if (reason < 8)
            s->rep->busy_by_reason[reason]++;
    } else if (st != SL_OK) {
        s->rep->failed++;
    }
    if (s->next_arrival < tr->n)
        s_push(s, tr->reqs[s->next_arrival].t_us * 1000, S_EV_ARRIVAL, 0);
}

static void s_heartbeat(s_sim_t *s)
{
    for (int i = 0; i < s->p->executors; i++) {
        s_exec_t *x = &s->execs[i];
        if (!x->alive)
            continue;
        sl_engine_load_t el;
        sl_exec_load_t l;
        sl_engine_load(x->engine, s->now, &el);
        /* The executor's heartbeat; no host is measured here, so its CPU
         * and GPU are unknown, as on a host without those sources. */
        sl_engine_load_report(&el, NULL, &l);
        sl_core_exec_heartbeat(s->core, x->core_index, &l, s->now);
    }
    sl_core_tick(s->core, s->now);
}

sl_status_t sl_sim_run(const sl_sim_params_t *p, sl_sim_report_t *rep)
{
    if (!p->trace || p->trace->n == 0 || p->executors <= 0 || p->executors > SL_SIM_MAX_EXECS ||
        p->credits <= 0 || p->max_batch <= 0 || p->heartbeat_ms <= 0) {
        SL_ERROR("sim: bad parameters (need a non-empty trace, executors in 1..%d)",
                 SL_SIM_MAX_EXECS);
        return SL_ERR_INVALID;
    }
    s_sim_t sim = {.p = p};
    s_sim_t *s = &sim;
    sl_heap_init(&s->events, SL_HEAP_KEY_FIFO, SL_HEAP_NO_INDEX);
    sl_sim_report_t r;
    memset(&r, 0, sizeof(r));
    sl_hist_init(&r.ttft_us);
    s->rep = &r;
    sl_core_cfg_t cc;
    sl_core_cfg_default(&cc);
    snprintf(cc.policy, sizeof(cc.policy), "%s", p->policy);
    cc.max_executors = p->executors;
    cc.heartbeat_ms = p->heartbeat_ms;
    cc.missed_heartbeats = 1000000; /* liveness is the simulator's business */
    cc.seed = (int64_t)p->seed;
    cc.admission = p->admission;
    cc.done_ttl_ms = 1000;
    if (p->busy_utilization > 0)
        cc.busy_utilization = p->busy_utilization;
    if (p->explore_share >= 0)
        cc.explore_share = p->explore_share;
    cc.kv_split = p->kv_split;
    cc.kv_rebalance = p->kv_rebalance;
    cc.kv_fetch = p->kv_fetch;
    if (p->kv_move_timeout_ms > 0)
        cc.kv_move_timeout_ms = p->kv_move_timeout_ms;
    if (p->data_plane) {
        /* The core starts from the links' own figures until it has measured. */
        cc.kv_xfer_prior_mbps = p->link_gbps * 1e3 / 8 * (p->bg_traffic ? 1 - p->bg_share : 1);
        cc.kv_xfer_latency_us = (int64_t)p->link_latency_us;
        sl_sim_link_cfg_t lc = {.gbps = p->link_gbps,
                                .latency_us = p->link_latency_us,
                                .bg_share = p->bg_share,
                                .bg_on = p->bg_traffic};
        if (p->prefill_execs < 0 || p->decode_execs < 0 ||
            p->prefill_execs + p->decode_execs > p->executors || !(p->kv_bytes_per_token > 0) ||
            sl_sim_links_create((uint32_t)p->executors, &lc, &s->links) != SL_OK) {
            SL_ERROR("sim: bad data plane parameters (roles within the cluster, KV bytes per "
                     "token > 0, link bandwidth > 0, background share in [0, 1))");
            sl_heap_fini(&s->events);
            return SL_ERR_INVALID;
        }
    }
    sl_status_t st = sl_core_create(&cc, &s_io, s, &s->core);
    if (st != SL_OK) {
        sl_sim_links_destroy(&s->links);
        sl_heap_fini(&s->events);
        return st;
    }
    s->execs = calloc((size_t)p->executors, sizeof(*s->execs));
    s->reqs = calloc(p->trace->n, sizeof(*s->reqs));
    if (!s->execs || !s->reqs) {
        st = SL_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < p->executors; i++) {
        s_exec_t *x = &s->execs[i];
        x->sim = s;
        x->n = (uint32_t)i;
        snprintf(x->name, sizeof(x->name), "sim%d", i);
        if ((st = s_exec_start(s, x)) != SL_OK)
            goto out;
    }
    s_push(s, p->trace->reqs[0].t_us * 1000, S_EV_ARRIVAL, 0);
    s_push(s, SL_MS(p->heartbeat_ms), S_EV_HEARTBEAT, 0);
    if (p->fail_at_s > 0 && p->fail_count > 0)
        s_push(s, (sl_time_t)(p->fail_at_s * 1e9), S_EV_FAIL, 0);
    while (sl_heap_len(&s->events) > 0 && s->error == SL_OK) {
        s_ev_t ev = s_pop(s);
        s->now = ev.t;
        r.events++;
        s_prefetch_next(s);
        switch (ev.type) {
        case S_EV_ARRIVAL:
            s_arrival(s);
            break;
        case S_EV_ENGINE: {
            s_exec_t *x = &s->execs[ev.idx];
            if (!x->alive || ev.t != x->wake)
                break; /* superseded */
            x->wake = INT64_MAX;
            sl_time_t next = sl_engine_advance(x->engine, s->now);
            if (next != INT64_MAX)
                s_wake(s, x, next > s->now ? next : s->now + 1);
            break;
        }
        case S_EV_HEARTBEAT:
            s_heartbeat(s);
            if (s->next_arrival < p->trace->n || sl_core_jobs_pending(s->core) > 0)
                s_push(s, s->now + SL_MS(p->heartbeat_ms), S_EV_HEARTBEAT, 0);
            break;
        case S_EV_FAIL:
            for (int i = 0; i < p->fail_count && i < p->executors; i++)
                s_exec_fail(s, &s->execs[i]);
            s_push(s, s->now + (sl_time_t)(p->fail_down_s * 1e9), S_EV_REJOIN, 0);
            break;
        case S_EV_REJOIN:
            for (int i = 0; i < p->fail_count && i < p->executors; i++)
                if (!s->execs[i].alive && (st = s_exec_start(s, &s->execs[i])) != SL_OK)
                    goto out;
            break;
        case S_EV_XFER:
            s_xfer_land(s, ev.idx);
            break;
        }
        s_defer_run(s);
    }
    st = s->error;
    if (st != SL_OK)
        goto out;
    const sl_trace_t *tr = p->trace;
    r.requests = tr->n;
    r.span_s = tr->n > 1 ? (double)(tr->reqs[tr->n - 1].t_us - tr->reqs[0].t_us) / 1e6 : 1.0;
    if (r.span_s <= 0)
        r.span_s = 1.0;
    r.offered_rps = (double)r.requests / r.span_s;
    r.goodput_rps = (double)r.slo_met / r.span_s;
    r.slo_frac = (double)r.slo_met / (double)r.requests;
    r.p50_ttft_s = (double)sl_hist_quantile(&r.ttft_us, 0.50) / 1e6;
    r.p90_ttft_s = (double)sl_hist_quantile(&r.ttft_us, 0.90) / 1e6;
    r.p99_ttft_s = (double)sl_hist_quantile(&r.ttft_us, 0.99) / 1e6;
    r.mean_tpot_s = s->tpot_n ? s->tpot_sum / (double)s->tpot_n : 0;
    r.busy_rate = (double)r.busy / (double)r.requests;
    r.hit_rate = s->prompt_tokens ? (double)s->cached_tokens / (double)s->prompt_tokens : 0;
    r.ttft_mape = sl_load_model_mape(sl_core_load_model(s->core));
    r.kv_splits = sl_core_counter(s->core, SL_CTR_KV_SPLITS);
    r.kv_handoffs = sl_core_counter(s->core, SL_CTR_KV_HANDOFFS);
    r.kv_split_failed = sl_core_counter(s->core, SL_CTR_KV_SPLIT_FAILED);
    r.kv_migrations = sl_core_counter(s->core, SL_CTR_KV_MIGRATIONS);
    r.kv_migrate_failed = sl_core_counter(s->core, SL_CTR_KV_MIGRATE_FAILED);
    r.kv_bytes = sl_core_counter(s->core, SL_CTR_KV_BYTES);
    r.kv_fetches = sl_core_counter(s->core, SL_CTR_KV_FETCHES);
    r.kv_fetch_failed = sl_core_counter(s->core, SL_CTR_KV_FETCH_FAILED);
    r.kv_blocks_fetched = sl_core_counter(s->core, SL_CTR_KV_BLOCKS_FETCHED);
    r.kv_blocks_recomputed = sl_core_counter(s->core, SL_CTR_KV_BLOCKS_RECOMPUTED);
    r.split_share = r.completed ? (double)r.kv_handoffs / (double)r.completed : 0;
    r.mean_xfer_ms = r.kv_xfers ? 1e3 * s->xfer_s_sum / (double)r.kv_xfers : 0;
    r.mean_pause_ms = s->pauses ? 1e3 * s->pause_s_sum / (double)s->pauses : 0;
    *rep = r;
out:
    for (int i = 0; s->execs && i < p->executors; i++) {
        s->execs[i].alive = false;
        sl_engine_destroy(&s->execs[i].engine);
        sl_map_fini(&s->execs[i].cached);
    }
    sl_core_destroy(&s->core);
    for (uint32_t i = 0; i < s->n_defer; i++)
        free(s->defer[i].j);
    free(s->defer);
    free(s->xfers);
    sl_sim_links_destroy(&s->links);
    sl_heap_fini(&s->events);
    free(s->reqs);
    free(s->execs);
    return st;
}
