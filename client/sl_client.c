/*
 * libsluice: one DEALER connection to the scheduler and the state of every
 * job submitted on it until its single completion.
 *
 * Idea: each job is a small state machine (sent -> accepted -> done, or
 * sent -> backoff -> sent after BUSY, and accepted -> sent when a
 * reconnection resubmits it) keyed by the hash of its id, with one
 * timer in a min-heap: the ack timeout while sent, the retry time while in
 * backoff, the result timeout once accepted. The Submit is encoded once at
 * submission and the bytes are kept, so a retry or a resend after a
 * reconnect costs no allocation and sends exactly what was validated.
 * Sends are coalesced: the Submits queued between two polls go out as one
 * SubmitBatch (appended as bytes), flushed when it is full, when the client
 * polls or waits, and before any other message so order is kept; the
 * scheduler then answers with ResultBatch messages. A batch that cannot be
 * sent re-arms its jobs' timers for a prompt retry, as a single send did.
 * Completions go to a FIFO that sl_client_poll() drains, so the blocking
 * call is the asynchronous one plus a wait for one id.
 *
 * The socket has an explicit random routing id: after ZeroMQ reconnects on
 * its own (a scheduler restart) the scheduler still sees the same identity
 * and routes results to it. sl_client_reconnect() uses a new socket and a
 * new id and resubmits every pending job, which the contract makes
 * idempotent.
 *
 * Rejected: a background I/O thread (hides when callbacks run and breaks
 * the one-thread-per-client rule that keeps the library lock-free); a
 * REQ socket (one request at a time, and it wedges when an answer is lost);
 * scanning every job for due timers (O(jobs) per poll with thousands in
 * flight under the load generator).
 */
#include <sluice/client.h>

#include "common/sl_auth.h"
#include "common/sl_clock.h"
#include "common/sl_hash.h"
#include "common/sl_heap.h"
#include "common/sl_log.h"
#include "common/sl_map.h"
#include "common/sl_rand.h"
#include "common/sl_ring.h"
#include "proto/sl_wire.h"
#include "proto/sl_wire_mark.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

typedef enum s_job_state {
    S_JOB_SENT,     /* Submit sent, waiting for Accepted or Busy; timer = ack timeout */
    S_JOB_BACKOFF,  /* refused with Busy; timer = when to send again */
    S_JOB_ACCEPTED, /* accepted, waiting for the Result; timer = result timeout or none */
} s_job_state_t;

typedef struct s_job s_job_t;

struct s_job {
    uint64_t key;        /* hash of the id: the map key */
    s_job_state_t state; /* where it stands */
    uint8_t *packed;     /* the encoded Submit (the message, not an envelope), sent on every try;
                            it follows the struct in the same allocation */
    size_t packed_len;   /* bytes of packed */
    size_t heap_idx;     /* place in the timer heap, kept by it; SL_HEAP_NO_INDEX: none */
    uint32_t unanswered; /* sends since the last Accepted or Busy */
    uint32_t streamed;   /* output offset past the last token handed to the chunk callback */
    sl_result_t *res;    /* the completion being filled in */
};

struct sl_client {
    sl_client_cfg_t cfg;         /* copy of the configuration */
    void *ctx;                   /* ZeroMQ context (owned) */
    void *sock;                  /* DEALER socket (owned) */
    void *mon;                   /* PAIR receiving the DEALER's connect/disconnect events (owned) */
    sl_auth_keys_t *keys;        /* CURVE keys (owned; NULL: insecure) */
    unsigned mon_seq;            /* makes each monitor endpoint unique */
    bool connected_once;         /* the current socket has connected before */
    bool refused_told;           /* the current socket's refused handshake was logged */
    sl_map_t jobs;               /* key -> s_job_t*, every pending job */
    sl_heap_t timers;            /* one timer per job with one armed: key = due, ptr = the job */
    sl_ring_t done;              /* completions (sl_result_t *) not yet handed out */
    sl_rand_t rng;               /* jitter draws */
    sl_client_chunk_cb chunk_cb; /* TokenChunk callback or NULL */
    void *chunk_arg;             /* its argument */
    sl_cluster_status_t *status; /* a StatusReply not yet collected */
    bool status_failed;          /* an Error came while a status was awaited */
    bool status_waiting;         /* a StatusRequest is outstanding */
    sl_client_stats_t stats;     /* counters */
    sl_wire_batch_t out;         /* Submits queued for the next SubmitBatch */
    sl_wire_batch_t single;      /* a Submit sent at once (submit_batch 1), as a batch of one */
    s_job_t **out_jobs;          /* jobs whose send is in out (to retry if it fails) */
    size_t n_out_jobs;           /* their number */
    char last_error[512];        /* reason of the last failure */
};

static void s_set_error(sl_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_set_error(sl_client_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
    va_end(ap);
}

/* Bounded copy, always terminated (a plain copy: this runs for every result). */
static void s_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static uint64_t s_key(const char *id)
{
    return sl_hash_bytes(id, strlen(id), 0x736c7569636521ull);
}

/* ---- configuration ---------------------------------------------------- */

void sl_client_cfg_default(sl_client_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    s_copy_str(cfg->endpoint, sizeof(cfg->endpoint), "tcp://127.0.0.1:5555");
    cfg->ack_timeout_ms = 5000;
    cfg->ack_retries = 3;
    cfg->result_timeout_ms = 0;
    cfg->wait_timeout_ms = 0;
    cfg->max_inflight = 100000;
    cfg->sndhwm = 100000;
    cfg->linger_ms = 0;
    cfg->seed = 0;
    cfg->submit_batch = 256;
    sl_backoff_cfg_default(&cfg->backoff);
}

/* ---- results ---------------------------------------------------------- */

void sl_result_destroy(sl_result_t **res_p)
{
    if (!res_p || !*res_p)
        return;
    free((*res_p)->tokens);
    free(*res_p);
    *res_p = NULL;
}

void sl_cluster_status_destroy(sl_cluster_status_t **st_p)
{
    if (!st_p || !*st_p)
        return;
    free((*st_p)->executors);
    free((*st_p)->counters);
    free(*st_p);
    *st_p = NULL;
}

/* ---- timers --------------------------------------------------------- */

static void s_timer_cancel(sl_client_t *c, s_job_t *job)
{
    if (job->heap_idx != SL_HEAP_NO_INDEX)
        sl_heap_remove(&c->timers, job->heap_idx);
}

/* Arm (or re-arm) the job's timer; the heap has room for every pending job. */
static void s_timer_set(sl_client_t *c, s_job_t *job, sl_time_t due)
{
    s_timer_cancel(c, job);
    (void)sl_heap_push(&c->timers, due, job, 0); /* reserved for max_inflight: cannot fail */
}

/* Take the completion of one id out of the ring, keeping the others in order. */
static sl_result_t *s_done_take(sl_client_t *c, const char *id)
{
    for (size_t i = 0; i < sl_ring_len(&c->done); i++) {
        sl_result_t *r = sl_ring_at(&c->done, i);
        if (strcmp(r->job_id, id) == 0)
            return sl_ring_remove(&c->done, i);
    }
    return NULL;
}

static void s_job_free(s_job_t *job)
{
    if (!job)
        return;
    sl_result_destroy(&job->res);
    free(job); /* the packed Submit is in the same block */
}

/*
 * Finish a job: its result moves to the completion ring and the job is
 * freed. The ring was reserved when the job was submitted, so this cannot fail.
 */
static void s_complete(sl_client_t *c, s_job_t *job, sl_status_t status, const char *why,
                       sl_time_t now)
{
    sl_result_t *res = job->res;
    s_timer_cancel(c, job);
    sl_map_del(&c->jobs, job->key);
    res->status = status;
    res->end_ns = now;
    if (why && !res->error[0])
        s_copy_str(res->error, sizeof(res->error), why);
    job->res = NULL;
    (void)sl_ring_push(&c->done, res); /* reserved at submission: cannot fail */
    c->stats.completed++;
    s_job_free(job);
}

/* ---- sending ---------------------------------------------------------- */

/* A send of job that did not go out: try again shortly. */
static void s_send_failed(sl_client_t *c, s_job_t *job, sl_status_t st, sl_time_t now)
{
    if (st != SL_ERR_AGAIN)
        SL_WARN("client: send of job %s failed: %s", job->res->job_id, sl_status_str(st));
    job->state = S_JOB_SENT;
    s_timer_set(c, job, now + SL_MS(10));
}

/*
 * Send the queued SubmitBatch. On failure every job in it is re-armed to be
 * sent again shortly (its counted send undone) and the error is returned.
 */
static sl_status_t s_flush(sl_client_t *c)
{
    if (c->out.n == 0)
        return SL_OK;
    sl_status_t st = sl_wire_batch_send(c->sock, NULL, &c->out, ZMQ_DONTWAIT);
    if (st != SL_OK) {
        sl_time_t now = sl_clock_now();
        for (size_t i = 0; i < c->n_out_jobs; i++) {
            s_job_t *job = c->out_jobs[i];
            job->unanswered--;
            job->res->sends--;
            c->stats.sends--;
            s_send_failed(c, job, st, now);
        }
        s_set_error(c, "send to %s failed: %s", c->cfg.endpoint, sl_status_str(st));
    }
    c->n_out_jobs = 0;
    return st;
}

/*
 * Queue the job's Submit bytes (or send them at once when batching is off).
 * Jobs whose retry must be re-armed if the batch fails are tracked; an
 * untracked resend is best effort. Only sending code runs between a queue
 * and the flush (nothing that completes jobs), so the tracked ones stay valid.
 */
static sl_status_t s_queue(sl_client_t *c, s_job_t *job, bool track)
{
    if (c->cfg.submit_batch <= 1) {
        /* a batch of one, sent at once */
        sl_status_t st = sl_wire_submit_add_packed(&c->single, job->packed, job->packed_len);
        return st == SL_OK ? sl_wire_batch_send(c->sock, NULL, &c->single, ZMQ_DONTWAIT) : st;
    }
    sl_status_t st = sl_wire_submit_add_packed(&c->out, job->packed, job->packed_len);
    if (st != SL_OK)
        return st;
    if (track)
        c->out_jobs[c->n_out_jobs++] = job;
    return SL_OK;
}

/* Send the batch once it is full, in items or in bytes (a failure re-arms its jobs). */
static void s_flush_if_full(sl_client_t *c)
{
    if (c->out.n >= (uint32_t)c->cfg.submit_batch || c->out.len >= SL_WIRE_BATCH_BYTES)
        (void)s_flush(c);
}

/* Send (or queue) the job's Submit; on a full pipe try again shortly, on failure keep the timer. */
static sl_status_t s_send(sl_client_t *c, s_job_t *job, sl_time_t now)
{
    sl_status_t st = s_queue(c, job, true);
    if (st != SL_OK) {
        s_send_failed(c, job, st, now);
        return st == SL_ERR_AGAIN ? SL_ERR_AGAIN : SL_ERR_LINK;
    }
    if (job->res->submit_ns == 0)
        job->res->submit_ns = now;
    job->res->sends++;
    job->unanswered++;
    job->state = S_JOB_SENT;
    c->stats.sends++;
    s_timer_set(c, job, now + SL_MS(c->cfg.ack_timeout_ms));
    s_flush_if_full(c);
    return SL_OK;
}

/* A cancel by id (job_id) or a status request (job_id NULL), after the
 * queued submits. */
static sl_status_t s_send_other(sl_client_t *c, const char *job_id)
{
    (void)s_flush(c); /* queued submits go first */
    sl_wire_cancel_t cancel = {.job_id = job_id};
    sl_status_t st = job_id ? sl_wire_cancel_send(c->sock, NULL, &cancel, ZMQ_DONTWAIT)
                            : sl_wire_status_request_send(c->sock, ZMQ_DONTWAIT);
    if (st != SL_OK)
        s_set_error(c, "send to %s failed: %s", c->cfg.endpoint, sl_status_str(st));
    return st;
}

/* ---- receiving -------------------------------------------------------- */

static s_job_t *s_find(sl_client_t *c, const char *id)
{
    if (!id || !id[0])
        return NULL;
    s_job_t *job = sl_map_get(&c->jobs, s_key(id));
    return job && strcmp(job->res->job_id, id) == 0 ? job : NULL;
}

static void s_on_busy(sl_client_t *c, const sl_wire_busy_t *b, sl_time_t now)
{
    s_job_t *job = s_find(c, b->job_id);
    c->stats.busy++;
    if (!job || job->state == S_JOB_ACCEPTED)
        return; /* a late answer to an earlier send of a job that has moved on */
    sl_result_t *res = job->res;
    res->busy_count++;
    job->unanswered = 0;
    int max = c->cfg.backoff.max_retries;
    /* A deadline the scheduler cannot meet, told with no retry-after: a
     * retry would only arrive later. Not retried. */
    bool hopeless = b->reason == SL_BUSY_DEADLINE && b->retry_after_ms == 0;
    bool give_up = hopeless || (int)res->busy_count > max;
    char retries[64] = "";
    if (hopeless)
        snprintf(retries, sizeof(retries), "; not retried: the deadline cannot be met");
    else if (give_up)
        snprintf(retries, sizeof(retries), "; gave up after %d retries", max);
    snprintf(res->error, sizeof(res->error),
             "scheduler busy (reason %d%s%.120s, retry after %u ms)%s", (int)b->reason,
             b->detail && b->detail[0] ? ": " : "", b->detail ? b->detail : "", b->retry_after_ms,
             retries);
    if (give_up) {
        s_complete(c, job, max == 0 || hopeless ? SL_ERR_BUSY : SL_ERR_RETRIES, NULL, now);
        return;
    }
    uint32_t delay = sl_backoff_delay_ms(&c->cfg.backoff, res->busy_count - 1, b->retry_after_ms,
                                         sl_rand_double(&c->rng));
    job->state = S_JOB_BACKOFF;
    s_timer_set(c, job, now + SL_MS(delay));
}

static void s_on_accepted(sl_client_t *c, const char *job_id, uint32_t queue_depth, sl_time_t now)
{
    s_job_t *job = s_find(c, job_id);
    c->stats.accepted++;
    if (!job)
        return;
    job->unanswered = 0;
    job->res->queue_depth = queue_depth;
    job->res->error[0] = '\0'; /* an earlier BUSY no longer explains anything */
    if (job->state == S_JOB_ACCEPTED)
        return; /* accepted again after a resend: keep the result timer */
    if (job->res->accept_ns == 0)
        job->res->accept_ns = now;
    job->state = S_JOB_ACCEPTED;
    /* The result timeout counts from the first acceptance, also when the
     * job was accepted again after a reconnection. */
    if (c->cfg.result_timeout_ms > 0)
        s_timer_set(c, job, job->res->accept_ns + SL_MS(c->cfg.result_timeout_ms));
    else
        s_timer_cancel(c, job);
}

static sl_status_t s_result_status(sl_job_status_t rs)
{
    switch (rs) {
    case SL_JOB_OK:
        return SL_OK;
    case SL_JOB_CANCELED:
        return SL_ERR_CANCELED;
    case SL_JOB_EXPIRED:
        return SL_ERR_DEADLINE;
    default:
        return SL_ERR_JOB_FAILED;
    }
}

static void s_on_result(sl_client_t *c, const sl_wire_result_t *r, sl_time_t now)
{
    s_job_t *job = s_find(c, r->job_id);
    if (!job)
        return; /* not ours, or already completed */
    sl_result_t *res = job->res;
    if (r->n_tokens) {
        uint32_t *tokens = malloc(r->n_tokens * sizeof(*tokens));
        if (!tokens) {
            s_complete(c, job, SL_ERR_NOMEM, "no memory for the result's tokens", now);
            return;
        }
        memcpy(tokens, r->tokens, r->n_tokens * sizeof(*tokens));
        res->tokens = tokens;
        res->n_tokens = r->n_tokens;
    }
    res->result_status = (sl_result_status_t)r->status;
    res->attempts = r->attempts;
    res->late = r->late;
    s_copy_str(res->executor, sizeof(res->executor), r->executor);
    s_copy_str(res->error, sizeof(res->error), r->error);
    if (r->has_timings) {
        const sl_wire_timings_t *t = &r->timings;
        res->timings = (sl_job_timings_t){
            .queued_us = t->queued_us,
            .ttft_us = t->ttft_us,
            .end_us = t->end_us,
            .exec_ttft_us = t->exec_ttft_us,
            .exec_end_us = t->exec_end_us,
            .prompt_tokens = t->prompt_tokens,
            .cached_tokens = t->cached_tokens,
            .output_tokens = t->output_tokens,
            .exec_queue_us = t->exec_queue_us,
            .has_exec_queue = t->has_exec_queue,
        };
    }
    s_complete(c, job, s_result_status(r->status), NULL, now);
}

static void s_on_chunk(sl_client_t *c, const sl_wire_chunk_t *ch, sl_time_t now)
{
    s_job_t *job = s_find(c, ch->job_id);
    if (!job)
        return;
    /* The scheduler forwards each offset once; should one come again
     * anyway (a defence, not the protocol), the callback still sees it
     * once: what lies before the last offset handed out is dropped. A chunk
     * past it is handed out (a client that re-attached by resubmitting
     * joins the stream where it is). */
    uint64_t end = (uint64_t)ch->offset + ch->n_tokens;
    if (end <= job->streamed)
        return;
    uint32_t skip = job->streamed > ch->offset ? job->streamed - ch->offset : 0;
    job->streamed = (uint32_t)end;
    if (job->res->first_token_ns == 0)
        job->res->first_token_ns = now;
    if (c->chunk_cb)
        c->chunk_cb(c->chunk_arg, job->res->job_id, ch->offset + skip, ch->tokens + skip,
                    ch->n_tokens - skip);
}

static void s_on_status(sl_client_t *c, const sl_wire_msg_t *m)
{
    sl_wire_status_t r;
    sl_wire_status_get(m, &r);
    sl_cluster_status_t *st = calloc(1, sizeof(*st));
    if (!st)
        goto err;
    if (r.n_executors && !(st->executors = calloc(r.n_executors, sizeof(*st->executors))))
        goto err;
    if (r.n_counters && !(st->counters = calloc(r.n_counters, sizeof(*st->counters))))
        goto err;
    for (uint32_t i = 0; i < r.n_executors; i++) {
        sl_wire_exec_status_t e;
        sl_wire_status_exec_get(m, i, &e);
        sl_executor_info_t *x = &st->executors[i];
        s_copy_str(x->name, sizeof(x->name), e.name);
        s_copy_str(x->backend, sizeof(x->backend), e.backend);
        x->alive = e.alive;
        x->inflight = e.inflight;
        x->slots = e.slots;
        x->completed = e.completed;
        x->failed = e.failed;
        x->quarantined = e.quarantined;
        x->data_plane = e.data_plane;
        x->kv_region_bytes = e.kv_region_bytes;
        x->peers_reachable = e.peers_reachable;
        x->peers_unreachable = e.peers_unreachable;
        if (e.has_load) {
            x->running_jobs = e.load.running_jobs;
            x->queued_jobs = e.load.queued_jobs;
            x->queued_tokens = e.load.queued_tokens;
            x->kv_blocks_used = e.load.kv_blocks_used;
            x->kv_blocks_free = e.load.kv_blocks_free;
            x->step_time_us = e.load.step_time_us;
            x->busy = e.load.busy;
            x->kv_reservations = e.load.kv.reservations;
            x->kv_bytes_sent = e.load.kv.bytes_sent;
            x->kv_bytes_received = e.load.kv.bytes_received;
            x->kv_pushes_failed = e.load.kv.pushes_failed;
            x->kv_notifs_refused = e.load.kv.notifs_refused;
            for (int k = 0; k < 3; k++)
                x->xport_bytes[k] = e.load.kv.class_bytes[k];
            x->has_gpu_util = e.load.has_gpu_util;
            x->gpu_util = x->has_gpu_util ? e.load.gpu_util : 0.0f;
            x->has_cpu_util = e.load.has_cpu_util;
            x->cpu_util = x->has_cpu_util ? e.load.cpu_util : 0.0f;
            x->has_gpu_mem = e.load.has_gpu_mem;
            x->gpu_mem_used = x->has_gpu_mem ? e.load.gpu_mem_used : 0;
            x->gpu_mem_total = x->has_gpu_mem ? e.load.gpu_mem_total : 0;
        }
    }
    st->n_executors = r.n_executors;
    for (uint32_t i = 0; i < r.n_counters; i++) {
        sl_wire_counter_t ctr;
        sl_wire_status_counter_get(m, i, &ctr);
        s_copy_str(st->counters[i].name, sizeof(st->counters[i].name), ctr.name);
        st->counters[i].value = ctr.value;
    }
    st->n_counters = r.n_counters;
    st->queued_interactive = r.queued_interactive;
    st->queued_batch = r.queued_batch;
    st->inflight = r.inflight;
    s_copy_str(st->policy, sizeof(st->policy), r.policy);
    sl_cluster_status_destroy(&c->status);
    c->status = st;
    return;
err:
    SL_WARN("client: no memory for a status reply");
    sl_cluster_status_destroy(&st);
}

/* A bad item of a ResultBatch is counted and skipped. */
static void s_item_bad(sl_client_t *c, const char *what, const char *err)
{
    c->stats.errors++;
    SL_WARN("client: dropped a bad %s item from the scheduler: %s", what, err);
}

/* The scheduler refused a client's message on this socket as a message of
 * the other port (SL_ERR_MSG_UNEXPECTED: the endpoint is the executor port).
 * Resending cannot help, so every job not yet accepted ends now with the
 * scheduler's reason, which says which endpoint to use. */
static void s_fail_wrong_port(sl_client_t *c, const char *why, sl_time_t now)
{
    size_t n = 0, iter = 0, cap = sl_map_count(&c->jobs);
    s_job_t **ended = cap ? malloc(cap * sizeof(*ended)) : NULL;
    uint64_t key;
    void *value;
    while (ended && sl_map_next(&c->jobs, &iter, &key, &value) && n < cap) {
        s_job_t *job = value;
        if (job->state != S_JOB_ACCEPTED)
            ended[n++] = job; /* completed below: completing unlinks it from the map */
    }
    for (size_t i = 0; i < n; i++) {
        ended[i]->res->error[0] = '\0';
        s_complete(c, ended[i], SL_ERR_MSG_UNEXPECTED, why, now);
    }
    free(ended);
}

/* Acceptances first, so a job accepted and finished in one batch is in order. */
static void s_on_result_batch(sl_client_t *c, const sl_wire_msg_t *m, sl_time_t now)
{
    char err[256];
    sl_wire_results_t rb;
    sl_wire_results_get(m, &rb);
    for (uint32_t i = 0; i < rb.n_accepted; i++) {
        const char *id;
        if (sl_wire_accepted_get(m, i, &sl_proto_limits_default, &id, err, sizeof(err)) == SL_OK)
            s_on_accepted(c, id, rb.queue_depth, now);
        else
            s_item_bad(c, "accepted", err);
    }
    for (uint32_t i = 0; i < rb.n_busy; i++) {
        sl_wire_busy_t b;
        if (sl_wire_busy_get(m, i, &sl_proto_limits_default, &b, err, sizeof(err)) == SL_OK)
            s_on_busy(c, &b, now);
        else
            s_item_bad(c, "busy", err);
    }
    for (uint32_t i = 0; i < rb.n_results; i++) {
        sl_wire_result_t r;
        if (sl_wire_result_get(m, i, &sl_proto_limits_default, &r, err, sizeof(err)) == SL_OK)
            s_on_result(c, &r, now);
        else
            s_item_bad(c, "result", err);
    }
}

static void s_dispatch(sl_client_t *c, const sl_wire_msg_t *m, sl_time_t now)
{
    sl_wire_kind_t kind = sl_wire_msg_kind(m);
    switch (kind) {
    case SL_WIRE_RESULTS:
        s_on_result_batch(c, m, now);
        break;
    case SL_WIRE_TOKEN_CHUNK: {
        sl_wire_chunk_t ch;
        sl_wire_chunk_get(m, &ch);
        s_on_chunk(c, &ch, now);
        break;
    }
    case SL_WIRE_STATUS_REPLY:
        s_on_status(c, m);
        break;
    case SL_WIRE_ERROR: {
        sl_wire_error_t e;
        sl_wire_error_get(m, &e);
        c->stats.errors++;
        s_set_error(c, "scheduler error %d (%s): %s", e.code, sl_status_str(e.code), e.message);
        /* An Error naming a pending job refuses it for good: it ends with
         * the scheduler's code and reason (an accepted job is past that). */
        s_job_t *job = e.job_id[0] ? s_find(c, e.job_id) : NULL;
        if (job && job->state != S_JOB_ACCEPTED) {
            SL_DEBUG("client: job %s refused: %s", job->res->job_id, c->last_error);
            job->res->error[0] = '\0'; /* an earlier BUSY no longer explains anything */
            s_complete(c, job, e.code < 0 ? e.code : SL_ERR_JOB_FAILED, e.message, now);
            break;
        }
        if (e.code == SL_ERR_MSG_UNEXPECTED || e.code == SL_ERR_MSG_VERSION) {
            /* wrong port or another protocol version: said once, then every
             * pending job ends with it */
            SL_ERROR("client: %s", c->last_error);
            s_fail_wrong_port(c, e.message, now);
        } else {
            SL_WARN("client: %s", c->last_error);
        }
        if (c->status_waiting)
            c->status_failed = true;
        break;
    }
    default:
        c->stats.errors++;
        SL_WARN("client: unexpected %s message from the scheduler", sl_wire_kind_name(kind));
        break;
    }
}

/* Receive and handle everything waiting on the socket. */
static sl_status_t s_drain(sl_client_t *c)
{
    sl_time_t now = sl_clock_now();
    for (;;) {
        sl_wire_ident_t ident;
        sl_wire_msg_t *m = NULL;
        char err[256] = "";
        sl_status_t st = sl_wire_recv(c->sock, 0, ZMQ_DONTWAIT, &sl_proto_limits_default, &ident,
                                      &m, err, sizeof(err));
        if (st == SL_ERR_AGAIN)
            return SL_OK;
        if (st == SL_ERR_LINK) {
            s_set_error(c, "receive from %s failed: %s", c->cfg.endpoint, zmq_strerror(errno));
            return st;
        }
        if (st != SL_OK) {
            c->stats.errors++;
            SL_WARN("client: dropped a bad message from the scheduler: %s", err);
            continue;
        }
        s_dispatch(c, m, now);
        sl_wire_msg_free(&m);
    }
}

/* Fire every timer that is due. */
static void s_run_timers(sl_client_t *c, sl_time_t now)
{
    const sl_heap_entry_t *top;
    while ((top = sl_heap_top(&c->timers)) && top->key <= now) {
        s_job_t *job = top->ptr;
        s_timer_cancel(c, job);
        switch (job->state) {
        case S_JOB_BACKOFF:
            job->unanswered = 0;
            s_send(c, job, now);
            break;
        case S_JOB_SENT:
            if ((int)job->unanswered > c->cfg.ack_retries) {
                char why[320];
                snprintf(why, sizeof(why), "no answer from %s to %u sends", c->cfg.endpoint,
                         job->unanswered);
                s_complete(c, job, SL_ERR_TIMEOUT, why, now);
                break;
            }
            if (job->unanswered > 0)
                c->stats.resends++;
            s_send(c, job, now);
            break;
        case S_JOB_ACCEPTED: {
            (void)s_send_other(c, job->res->job_id);
            s_complete(c, job, SL_ERR_TIMEOUT, "no result within the result timeout", now);
            break;
        }
        }
    }
}

static void s_drain_monitor(sl_client_t *c);

/* One round of work: queued submits sent, everything received, every due
 * timer, and what those queued sent too. Send errors are left to the jobs'
 * timers. */
static sl_status_t s_progress(sl_client_t *c)
{
    (void)s_flush(c);
    s_drain_monitor(c);
    (void)s_flush(c); /* resubmissions after a reconnect, before anything can complete them */
    sl_status_t st = s_drain(c);
    s_run_timers(c, sl_clock_now());
    (void)s_flush(c);
    return st;
}

/* ---- socket ----------------------------------------------------------- */

static void s_close_socket(void **sock_p, void **mon_p)
{
    if (*sock_p) {
        zmq_socket_monitor(*sock_p, NULL, 0);
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
    if (*mon_p) {
        zmq_close(*mon_p);
        *mon_p = NULL;
    }
}

/*
 * A new DEALER with a fresh routing id, watched by a monitor so that a
 * reconnection (the scheduler restarted, the link dropped) can be answered
 * by resubmitting the pending jobs. On failure c is unchanged.
 */
static sl_status_t s_open_socket(sl_client_t *c)
{
    char id[64], mon_ep[96];
    void *sock = zmq_socket(c->ctx, ZMQ_DEALER), *mon = NULL;
    if (!sock) {
        SL_ERROR("client: zmq_socket: %s", zmq_strerror(errno));
        return SL_ERR_IO;
    }
    /* Unique per socket, whatever the jitter seed: two clients configured
     * with the same seed must not share a routing id (the scheduler hands a
     * reused id over to the newest connection, taking the other's results). */
    static _Atomic uint64_t s_sockets;
    uint64_t salt = sl_hash_mix64((uint64_t)sl_clock_wall() ^
                                  (atomic_fetch_add(&s_sockets, 1) * 0x9e3779b97f4a7c15ull));
    snprintf(id, sizeof(id), "sl-%d-%016llx", (int)getpid(), (unsigned long long)salt);
    int linger = c->cfg.linger_ms, hwm = c->cfg.sndhwm;
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) != 0 ||
        zmq_setsockopt(sock, ZMQ_ROUTING_ID, id, strlen(id)) != 0) {
        SL_ERROR("client: zmq_setsockopt: %s", zmq_strerror(errno));
        goto err_close;
    }
    if (sl_auth_sock_client(sock, c->keys) != SL_OK)
        goto err_close;
    snprintf(mon_ep, sizeof(mon_ep), "inproc://sl-client-monitor-%p-%u", (void *)c, ++c->mon_seq);
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (zmq_socket_monitor(sock, mon_ep, events) != 0 || !(mon = zmq_socket(c->ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_connect(mon, mon_ep) != 0) {
        SL_ERROR("client: socket monitor: %s", zmq_strerror(errno));
        goto err_close;
    }
    if (sl_wire_connect_list(sock, c->cfg.endpoint) != SL_OK) {
        s_set_error(c, "cannot connect to '%s': %s", c->cfg.endpoint, zmq_strerror(errno));
        SL_WARN("client: %s", c->last_error);
        goto err_close;
    }
    c->sock = sock;
    c->mon = mon;
    c->connected_once = false;
    c->refused_told = false;
    return SL_OK;
err_close:
    s_close_socket(&sock, &mon);
    return SL_ERR_INVALID;
}

/* Send every pending job again (idempotent), re-attaching it to this socket's identity. */
static void s_resubmit_all(sl_client_t *c)
{
    sl_time_t now = sl_clock_now();
    size_t iter = 0;
    uint64_t key;
    void *value;
    while (sl_map_next(&c->jobs, &iter, &key, &value)) {
        s_job_t *job = value;
        if (job->state == S_JOB_BACKOFF)
            continue; /* its timer resends it */
        /* An accepted job is sent again too, and waits for its answer like
         * a new one: a scheduler that kept it answers Accepted (and keeps or
         * re-runs it), one that restarted without it may answer Busy, which
         * must be retried like any other (it was dropped: the job hung). */
        job->unanswered = 0;
        s_send(c, job, now);
        c->stats.resends++;
    }
}

/* Handle the monitor's events: a second CONNECTED means the link came back. */
static void s_drain_monitor(sl_client_t *c)
{
    uint16_t event;
    while (sl_wire_monitor_event(c->mon, &event) == SL_OK) {
        if (event != ZMQ_EVENT_CONNECTED && !c->refused_told) {
            /* ZeroMQ retries for ever; the reason is told once per socket
             * and kept as the last error, so a timeout says why. */
            c->refused_told = true;
            s_set_error(c, "the scheduler at %s refused the handshake: %s", c->cfg.endpoint,
                        event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                            ? "our key is not in its clients.allow (or this is its executor port)"
                            : "no keys, or not its server.pub, or it runs --insecure");
            SL_WARN("client: %s", c->last_error);
        }
        if (event != ZMQ_EVENT_CONNECTED)
            continue;
        if (c->connected_once) {
            c->stats.reconnects++;
            SL_INFO("client: reconnected to %s; resubmitting %zu pending jobs", c->cfg.endpoint,
                    sl_map_count(&c->jobs));
            s_resubmit_all(c);
        }
        c->connected_once = true;
    }
}

/* ---- public API ------------------------------------------------------- */

sl_status_t sl_client_create(const sl_client_cfg_t *cfg, sl_client_t **client_p)
{
    const char *bad = NULL;
    if (!cfg || !client_p)
        bad = "no configuration or no output";
    else if (!cfg->endpoint[0] || !memchr(cfg->endpoint, '\0', sizeof(cfg->endpoint)))
        bad = "endpoint is empty or unterminated";
    else if (cfg->max_inflight < 1)
        bad = "max_inflight < 1";
    else if (cfg->ack_timeout_ms < 1 || cfg->ack_retries < 0)
        bad = "ack_timeout_ms < 1 or ack_retries < 0";
    else if (cfg->result_timeout_ms < 0 || cfg->wait_timeout_ms < 0)
        bad = "negative result or wait timeout";
    else if (cfg->backoff.max_retries < 0 || cfg->sndhwm < 0)
        bad = "negative retries or sndhwm";
    if (bad) {
        SL_WARN("client: invalid configuration: %s", bad);
        return SL_ERR_INVALID;
    }
    sl_auth_keys_t *keys = NULL;
    if (!memchr(cfg->key_dir, '\0', sizeof(cfg->key_dir)) ||
        !memchr(cfg->key_name, '\0', sizeof(cfg->key_name)) ||
        sl_auth_keys_setup(cfg->key_dir, cfg->key_name, cfg->insecure, "client", "client", &keys) !=
            SL_OK)
        return SL_ERR_INVALID; /* the cause is logged */
    sl_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        sl_auth_keys_free(&keys);
        return SL_ERR_NOMEM;
    }
    c->cfg = *cfg;
    c->keys = keys;
    sl_map_init(&c->jobs);
    uint64_t seed =
        cfg->seed ? (uint64_t)cfg->seed : (uint64_t)sl_clock_now() ^ ((uint64_t)getpid() << 32);
    sl_rand_seed(&c->rng, seed);
    sl_heap_init(&c->timers, SL_HEAP_KEY, offsetof(s_job_t, heap_idx));
    sl_ring_init(&c->done);
    if (sl_heap_reserve(&c->timers, (size_t)cfg->max_inflight) != SL_OK)
        goto err_free;
    sl_wire_batch_init(&c->out, SL_WIRE_SUBMITS);
    sl_wire_batch_init(&c->single, SL_WIRE_SUBMITS);
    if (c->cfg.submit_batch < 1)
        c->cfg.submit_batch = 1; /* a configuration from before the knob: no batching */
    c->out_jobs = malloc((size_t)c->cfg.submit_batch * sizeof(*c->out_jobs));
    if (!c->out_jobs)
        goto err_free;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        SL_ERROR("client: zmq_ctx_new: %s", zmq_strerror(errno));
        goto err_free;
    }
    if (s_open_socket(c) != SL_OK)
        goto err_ctx;
    *client_p = c;
    return SL_OK;
err_ctx:
    zmq_ctx_term(c->ctx);
err_free:
    free(c->out_jobs);
    sl_heap_fini(&c->timers);
    sl_map_fini(&c->jobs);
    sl_auth_keys_free(&c->keys);
    free(c);
    return SL_ERR_INVALID;
}

void sl_client_destroy(sl_client_t **client_p)
{
    if (!client_p || !*client_p)
        return;
    sl_client_t *c = *client_p;
    size_t iter = 0;
    uint64_t key;
    void *value;
    while (sl_map_next(&c->jobs, &iter, &key, &value))
        s_job_free(value);
    sl_map_fini(&c->jobs);
    sl_result_t *r;
    while ((r = sl_ring_pop(&c->done)))
        sl_result_destroy(&r);
    sl_ring_fini(&c->done);
    sl_heap_fini(&c->timers);
    sl_wire_batch_fini(&c->out);
    sl_wire_batch_fini(&c->single);
    free(c->out_jobs);
    sl_cluster_status_destroy(&c->status);
    s_close_socket(&c->sock, &c->mon);
    zmq_ctx_term(c->ctx);
    sl_auth_keys_free(&c->keys);
    free(c);
    *client_p = NULL;
}

void sl_client_set_chunk_cb(sl_client_t *client, sl_client_chunk_cb cb, void *arg)
{
    client->chunk_cb = cb;
    client->chunk_arg = arg;
}

/* Encode the Submit of spec, validated exactly as the scheduler will, into
 * a new zeroed allocation of head bytes followed by the packed Submit (the
 * job struct and its bytes in one block). */
static sl_status_t s_encode(sl_client_t *c, const sl_job_spec_t *spec, size_t head, void **mem_p,
                            size_t *len_p)
{
    char err[256];
    if (spec->priority != SL_CLIENT_BATCH && spec->priority != SL_CLIENT_INTERACTIVE) {
        s_set_error(c, "job %s: unknown priority %d", spec->id, (int)spec->priority);
        return SL_ERR_INVALID;
    }
    sl_job_desc_t d = {
        .id = spec->id,
        .tenant = spec->tenant,
        .model = spec->model,
        .session_key = spec->session_key,
        .prio = spec->priority == SL_CLIENT_BATCH ? SL_PRIO_BATCH : SL_PRIO_INTERACTIVE,
        .prompt_tokens = spec->prompt_length,
        .max_new_tokens = spec->max_new_tokens,
        .block_hashes = spec->block_hashes,
        .n_block_hashes = spec->block_hashes ? spec->n_block_hashes : 0,
        .block_tokens = spec->block_tokens,
        .token_ids = spec->token_ids,
        .n_token_ids = spec->token_ids ? spec->n_token_ids : 0,
        .ttft_deadline = SL_MS(spec->ttft_deadline_ms),
        .deadline = SL_MS(spec->deadline_ms),
        .stream = spec->stream,
    };
    sl_status_t st =
        sl_wire_submit_pack(&d, &sl_proto_limits_default, head, mem_p, len_p, err, sizeof(err));
    if (st == SL_ERR_NOMEM)
        return st;
    if (st != SL_OK) {
        s_set_error(c, "job %s is invalid: %s", spec->id, err);
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

sl_status_t sl_client_submit_async(sl_client_t *c, const sl_job_spec_t *spec)
{
    sl_status_t st;
    if (!spec || !spec->id || !spec->id[0] || strlen(spec->id) > SL_CLIENT_ID_MAX) {
        s_set_error(c, "a job needs an id of 1 to %d bytes", SL_CLIENT_ID_MAX);
        return SL_ERR_INVALID;
    }
    uint64_t key = s_key(spec->id);
    if (sl_map_get(&c->jobs, key)) {
        s_set_error(c, "job %s is already pending", spec->id);
        return SL_ERR_EXISTS;
    }
    if (sl_map_count(&c->jobs) >= (size_t)c->cfg.max_inflight) {
        s_set_error(c, "%d jobs pending (max-inflight)", c->cfg.max_inflight);
        return SL_ERR_AGAIN;
    }
    /* Room for every pending job's completion, so completing never fails. */
    size_t done_need = sl_ring_len(&c->done) + sl_map_count(&c->jobs) + 1;
    if ((st = sl_ring_reserve(&c->done, done_need)) != SL_OK)
        return st;
    void *mem = NULL;
    size_t packed_len = 0;
    if ((st = s_encode(c, spec, sizeof(s_job_t), &mem, &packed_len)) != SL_OK)
        return st;
    s_job_t *job = mem;
    job->packed = (uint8_t *)mem + sizeof(*job);
    job->packed_len = packed_len;
    job->key = key;
    job->heap_idx = SL_HEAP_NO_INDEX;
    job->res = calloc(1, sizeof(*job->res));
    if (!job->res) {
        st = SL_ERR_NOMEM;
        goto err_free;
    }
    s_copy_str(job->res->job_id, sizeof(job->res->job_id), spec->id);
    job->res->user = spec->user;
    job->res->result_status = SL_RESULT_NONE;
    if ((st = sl_map_put(&c->jobs, key, job)) != SL_OK)
        goto err_free;
    st = s_send(c, job, sl_clock_now());
    if (st != SL_OK && st != SL_ERR_AGAIN) {
        s_timer_cancel(c, job);
        sl_map_del(&c->jobs, key);
        goto err_free;
    }
    c->stats.submitted++;
    return SL_OK;
err_free:
    s_job_free(job);
    return st;
}

/* Sleep on the socket until deadline or the next timer, whichever is first. */
static sl_status_t s_sleep(sl_client_t *c, sl_time_t deadline)
{
    sl_time_t now = sl_clock_now();
    sl_time_t until = deadline;
    const sl_heap_entry_t *top = sl_heap_top(&c->timers);
    if (top && top->key < until)
        until = top->key;
    long wait = -1;
    if (until != INT64_MAX)
        wait = until <= now ? 0 : (long)((until - now + SL_NS_PER_MS - 1) / SL_NS_PER_MS);
    zmq_pollitem_t items[2] = {
        {.socket = c->sock, .events = ZMQ_POLLIN},
        {.socket = c->mon, .events = ZMQ_POLLIN},
    };
    if (zmq_poll(items, 2, wait) < 0 && errno != EINTR) {
        s_set_error(c, "zmq_poll: %s", zmq_strerror(errno));
        return SL_ERR_LINK;
    }
    return SL_OK;
}

sl_status_t sl_client_poll(sl_client_t *c, int timeout_ms, sl_result_t **res_p)
{
    /* Completions already here are handed out without touching the socket:
     * draining them one call at a time stays cheap, and the work is done
     * when they run out. */
    sl_result_t *ready = sl_ring_pop(&c->done);
    if (ready) {
        *res_p = ready;
        return SL_OK;
    }
    sl_time_t deadline = timeout_ms < 0 ? INT64_MAX : sl_clock_now() + SL_MS(timeout_ms);
    for (;;) {
        sl_status_t st = s_progress(c);
        sl_result_t *r = sl_ring_pop(&c->done);
        if (r) {
            *res_p = r;
            return SL_OK;
        }
        if (st != SL_OK)
            return st;
        if (sl_clock_now() >= deadline)
            return SL_ERR_TIMEOUT;
        if ((st = s_sleep(c, deadline)) != SL_OK)
            return st;
    }
}

/* Wait until done() holds or the wait timeout passes, doing the client's work. */
static sl_status_t s_wait(sl_client_t *c, bool (*done)(sl_client_t *, const void *),
                          const void *arg)
{
    sl_time_t deadline =
        c->cfg.wait_timeout_ms > 0 ? sl_clock_now() + SL_MS(c->cfg.wait_timeout_ms) : INT64_MAX;
    for (;;) {
        sl_status_t st = s_progress(c);
        if (done(c, arg))
            return SL_OK;
        if (st != SL_OK)
            return st;
        if (sl_clock_now() >= deadline)
            return SL_ERR_TIMEOUT;
        if ((st = s_sleep(c, deadline)) != SL_OK)
            return st;
    }
}

static bool s_job_done(sl_client_t *c, const void *id)
{
    return s_find(c, id) == NULL;
}

sl_status_t sl_client_submit(sl_client_t *c, const sl_job_spec_t *spec, sl_result_t **res_p)
{
    sl_status_t st = sl_client_submit_async(c, spec);
    if (st != SL_OK)
        return st;
    (void)s_flush(c); /* a failed send is retried by the job's timer */
    st = s_wait(c, s_job_done, spec->id);
    if (st == SL_ERR_TIMEOUT)
        s_set_error(c, "job %s: no completion within %d ms", spec->id, c->cfg.wait_timeout_ms);
    if (st != SL_OK)
        return st;
    *res_p = s_done_take(c, spec->id);
    return SL_OK;
}

sl_status_t sl_client_flush(sl_client_t *c)
{
    return s_flush(c);
}

sl_status_t sl_client_cancel(sl_client_t *c, const char *job_id)
{
    if (!job_id || !s_find(c, job_id)) {
        s_set_error(c, "job %s is not pending", job_id ? job_id : "(null)");
        return SL_ERR_NOT_FOUND;
    }
    return s_send_other(c, job_id);
}

static bool s_status_done(sl_client_t *c, const void *unused)
{
    return c->status != NULL || c->status_failed;
}

sl_status_t sl_client_status(sl_client_t *c, sl_cluster_status_t **st_p)
{
    sl_cluster_status_destroy(&c->status);
    c->status_failed = false;
    sl_status_t st = s_send_other(c, NULL);
    if (st != SL_OK)
        return st;
    c->status_waiting = true;
    st = s_wait(c, s_status_done, NULL);
    c->status_waiting = false;
    if (st == SL_ERR_TIMEOUT)
        s_set_error(c, "no status reply from %s within %d ms", c->cfg.endpoint,
                    c->cfg.wait_timeout_ms);
    if (st != SL_OK)
        return st;
    if (!c->status)
        return SL_ERR_INVALID; /* the scheduler answered with an Error (last_error) */
    *st_p = c->status;
    c->status = NULL;
    return SL_OK;
}

sl_status_t sl_client_reconnect(sl_client_t *c)
{
    void *old = c->sock, *old_mon = c->mon;
    bool old_connected = c->connected_once;
    c->sock = NULL;
    c->mon = NULL;
    sl_status_t st = s_open_socket(c);
    if (st != SL_OK) {
        c->sock = old;
        c->mon = old_mon;
        c->connected_once = old_connected;
        return st;
    }
    s_close_socket(&old, &old_mon);
    /* Queued submits were for the old socket; every pending job is sent again. */
    sl_wire_batch_clear(&c->out);
    c->n_out_jobs = 0;
    s_resubmit_all(c);
    (void)s_flush(c);
    return SL_OK;
}

sl_status_t sl_client_fd(sl_client_t *c, int *fd_p)
{
    int fd;
    size_t len = sizeof(fd);
    if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &len) != 0) {
        s_set_error(c, "ZMQ_FD: %s", zmq_strerror(errno));
        return SL_ERR_IO;
    }
    *fd_p = fd;
    return SL_OK;
}

int sl_client_next_timeout_ms(sl_client_t *c)
{
    if (sl_ring_len(&c->done) > 0 || c->out.n > 0)
        return 0;
    const sl_heap_entry_t *top = sl_heap_top(&c->timers);
    if (!top)
        return -1;
    sl_time_t d = top->key - sl_clock_now();
    if (d <= 0)
        return 0;
    sl_time_t ms = (d + SL_NS_PER_MS - 1) / SL_NS_PER_MS;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

size_t sl_client_pending(const sl_client_t *c)
{
    return sl_map_count(&c->jobs);
}

void sl_client_stats(const sl_client_t *c, sl_client_stats_t *stats_p)
{
    *stats_p = c->stats;
}

const char *sl_client_last_error(const sl_client_t *c)
{
    return c->last_error;
}
