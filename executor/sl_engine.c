/*
 * Continuous (iteration-level) batching, as in Orca and vLLM.
 *
 * At each iteration boundary the engine finishes the step that ended,
 * reports tokens and completions, then admits waiting jobs into the running
 * batch (at most max_batch) and starts the next step:
 *   - interactive jobs join the running batch at once;
 *   - batch-class jobs join when enough wait to fill the free places, or when
 *     the oldest has waited batch_wait (50 ms): a new batch forms at 32 jobs
 *     or 50 ms, whichever comes first.
 * Chunked prefill (as vLLM schedules with a token budget per step): a step
 * computes at most step_tokens tokens, one per decoding sequence and the
 * rest as chunks of prompts in admission order, so a long prompt is spread
 * over several steps and the sequences decoding beside it wait at most one
 * chunk per token instead of the whole prompt (backends that cannot resume
 * a prompt get it whole). A job's wait ends when its first chunk's step
 * begins (started), reported with its result.
 * A step's cost comes from the backend: the sim backend returns modelled GPU
 * time and the engine waits that long before its tokens count (so the daemon
 * keeps serving its socket meanwhile); a real backend computes during the
 * call and returns 0; its step ends at the next call, whose time is taken
 * after the work, so first-token and end times include the compute.
 * Each step's make-up and duration also feed the executor's step cost
 * model (sl_step_cost.c), reported with the load.
 * Held jobs (the data plane): a job is admitted but not stepped while its
 * KV moves. An SL_KV_AWAIT job is held as soon as its blocks are reserved
 * (it skips batch formation: it only needs room), until a peer's KV lands
 * (sl_engine_import); an SL_KV_PUSH job is held once its prompt is
 * computed, until its KV has gone (sl_engine_end MOVED); a paused job is
 * held at a step boundary after its tokens so far are streamed, so the
 * peer streams on from there. Held jobs keep their blocks but no batch
 * place.
 * Runs (run_steps > 1, for an embedder on a virtual clock with a modelled
 * backend): when a step begins with every running sequence decoding,
 * nothing waiting and nothing flagged, the steps after it until the first
 * sequence finishes (or a streamed chunk is due) change nothing anyone
 * sees, and their costs are known beforehand (the backend's decode_cost).
 * The engine then plans them as one run and asks for one wake-up at its
 * end instead of one per step; the steps themselves still run one by one,
 * each at its own boundary, caught up when the embedder next calls (any
 * call that changes the engine, or sl_engine_load). A call that changes
 * it ends the run at the step in flight, so a submitted job joins at the
 * next boundary as it would have. A simulator of a thousand executors
 * spends its time on wake-ups, not on steps.
 * Alternatives rejected: static batching (a long job holds the batch), and
 * admitting batch-class jobs at every boundary (no batching for throughput).
 */
#include "executor/sl_engine.h"
#include "common/sl_log.h"
#include "executor/sl_step_cost.h"

#include <stdlib.h>
#include <string.h>

#define S_COST_ALL 2048 /* steps the step cost model learns from before it samples */
#define S_COST_EVERY 16 /* decode-only steps per one it learns from after that */

const sl_cfg_field_t sl_engine_cfg_fields[] = {
    SL_CFG_RANGE(sl_engine_cfg_t, max_batch, "max-batch", "32", SL_CFG_INT, 1, 4096,
                 "sequences in the running batch at most"),
    SL_CFG_RANGE(sl_engine_cfg_t, batch_wait_us, "batch-wait-us", "50000", SL_CFG_I64, 0, 60000000,
                 "a partial batch of batch-class jobs starts after this wait, in us"),
    SL_CFG_RANGE(sl_engine_cfg_t, chunk_tokens, "chunk-tokens", "16", SL_CFG_INT, 1, 65536,
                 "tokens per streamed chunk"),
    SL_CFG_RANGE(sl_engine_cfg_t, step_tokens, "step-tokens", "2048", SL_CFG_INT, 0, 16777216,
                 "tokens one step computes at most: one per decoding sequence, the rest in "
                 "prompt chunks (chunked prefill; 0 = whole prompts in one step)"),
    SL_CFG_RANGE(sl_engine_cfg_t, run_steps, "run-steps", "1", SL_CFG_INT, 1, 65536,
                 "decode steps of a modelled backend planned as one run, one wake-up for all, "
                 "while nothing changes (a virtual clock's embedder; 1 = a wake-up per step)"),
    SL_CFG_END,
};

struct sl_engine {
    sl_engine_cfg_t cfg;         /* configuration */
    const sl_backend_ops_t *ops; /* backend */
    void *backend;               /* its state */
    sl_engine_cb_t cb;           /* callbacks */
    sl_list_t waiting[2];        /* interactive, batch: not yet running */
    uint32_t n_waiting[2];       /* their lengths */
    uint64_t waiting_tokens;     /* prompt + output tokens waiting */
    sl_list_t running;           /* admitted sequences */
    uint32_t n_running;          /* their number */
    sl_list_t held;              /* admitted, not stepped (their KV moves) */
    uint32_t n_held;             /* their number */
    sl_list_t ready;  /* admitted and runnable (KV taken in), waiting for a batch place */
    uint32_t n_ready; /* their number */
    sl_seq_t **batch; /* scratch: the step's sequences */
    sl_engine_job_t **batch_jobs;  /* scratch: their jobs */
    size_t n_batch;                /* size of the step in flight */
    bool stepping;                 /* a modelled step is in flight */
    sl_time_t step_end;            /* when it ends */
    sl_time_t step_start;          /* when it started */
    uint32_t run_left;             /* a run's steps still to begin after the one in flight */
    sl_time_t run_end;             /* the run's last boundary (the wake-up asked for) */
    sl_time_t stat_since;          /* start of the load statistics window */
    sl_time_t stat_busy;           /* time spent stepping in the window */
    uint64_t stat_steps;           /* steps in the window */
    double step_x[SL_STEP_COST_N]; /* the step in flight's make-up (sl_step_cost_features) */
    bool step_learn;               /* the cost model learns from the step in flight */
    uint32_t decode_only;          /* decode-only steps begun (one in S_COST_EVERY is learned) */
    sl_step_cost_t cost;           /* its steps' cost model, fitted from them */
};

sl_status_t sl_engine_create(const sl_engine_cfg_t *cfg, const sl_backend_ops_t *ops,
                             const sl_backend_params_t *params, const sl_engine_cb_t *cb,
                             sl_engine_t **engine_p)
{
    /* The batch arrays follow the engine in one allocation: their address
     * is known without reading the engine (sl_engine_prefetch). */
    size_t mb = (size_t)cfg->max_batch;
    sl_engine_t *e = calloc(1, sizeof(*e) + mb * (sizeof(*e->batch_jobs) + sizeof(*e->batch)));
    if (!e)
        return SL_ERR_NOMEM;
    e->cfg = *cfg;
    e->ops = ops;
    e->cb = *cb;
    sl_list_init(&e->waiting[0]);
    sl_list_init(&e->waiting[1]);
    sl_list_init(&e->running);
    sl_list_init(&e->held);
    sl_list_init(&e->ready);
    sl_step_cost_init(&e->cost);
    e->batch_jobs = (sl_engine_job_t **)(e + 1);
    e->batch = (sl_seq_t **)(e->batch_jobs + mb);
    sl_backend_params_t p = *params;
    p.max_batch = (uint32_t)cfg->max_batch;
    sl_status_t st = ops->create(&p, &e->backend);
    if (st != SL_OK) {
        free(e);
        return st;
    }
    *engine_p = e;
    return SL_OK;
}

void sl_engine_prefetch(const sl_engine_t *e, int max_batch)
{
    /* the engine and the first places of both batch arrays (a step's batch
     * is mostly a few sequences) */
    const char *p = (const char *)e;
    for (; p < (const char *)(e + 1); p += 64)
        __builtin_prefetch(p);
    const sl_engine_job_t *const *jobs = (const sl_engine_job_t *const *)(e + 1);
    __builtin_prefetch(jobs);
    __builtin_prefetch(jobs + max_batch);
}

static void s_end(sl_engine_t *e, sl_engine_job_t *job, sl_engine_done_t how, const char *error,
                  sl_time_t now)
{
    sl_list_del(&job->link);
    if (job->admitted) {
        e->ops->release(e->backend, &job->seq);
        job->admitted = false;
        if (job->held)
            e->n_held--;
        else if (job->ready)
            e->n_ready--;
        else
            e->n_running--;
        job->held = job->ready = false;
    } else {
        int c = job->seq.interactive ? 0 : 1;
        e->n_waiting[c]--;
        e->waiting_tokens -= (uint64_t)job->seq.prompt_len + job->seq.max_new_tokens;
    }
    job->finished = now;
    e->cb.done(e->cb.arg, job, how, error);
}

void sl_engine_destroy(sl_engine_t **engine_p)
{
    sl_engine_t *e = *engine_p;
    if (!e)
        return;
    sl_list_t *lists[5] = {&e->running, &e->held, &e->ready, &e->waiting[0], &e->waiting[1]};
    for (int i = 0; i < 5; i++)
        while (!sl_list_empty(lists[i]))
            s_end(e, SL_CONTAINER_OF(lists[i]->next, sl_engine_job_t, link), SL_ENGINE_CANCELED,
                  "executor shutting down", 0);
    e->ops->destroy(e->backend);
    free(e);
    *engine_p = NULL;
}

static bool s_admit(sl_engine_t *e, sl_engine_job_t *job, sl_time_t now);
static void s_sync(sl_engine_t *e, sl_time_t now);

void sl_engine_submit(sl_engine_t *e, sl_engine_job_t *job, sl_time_t now)
{
    s_sync(e, now);
    int c = job->seq.interactive ? 0 : 1;
    job->arrived = now;
    job->seq.error[0] = '\0';
    job->first_token = 0;
    job->started = 0;
    job->has_started = false;
    job->streamed = 0;
    job->cancel = false;
    job->admitted = false;
    job->held = job->ready = false;
    job->pause = false;
    job->seq.n_out = 0;
    job->seq.prefilled = job->seq.done = false;
    job->seq.prefill_done = job->seq.prefill_chunk = 0;
    sl_list_push_back(&e->waiting[c], &job->link);
    e->n_waiting[c]++;
    e->waiting_tokens += (uint64_t)job->seq.prompt_len + job->seq.max_new_tokens;
    if (job->kv_mode == SL_KV_AWAIT)
        s_admit(e, job, now); /* a reservation needs room, not a batch place */
}

sl_status_t sl_engine_cancel(sl_engine_t *e, uint64_t id, sl_time_t now)
{
    sl_engine_job_t *job = sl_engine_find(e, id);
    if (!job)
        return SL_ERR_NOT_FOUND;
    s_sync(e, now);
    if (e->stepping && job->admitted && !job->held && !job->ready)
        job->cancel = true; /* ended at the step boundary */
    else
        s_end(e, job, SL_ENGINE_CANCELED, "canceled", now);
    return SL_OK;
}

/* Park an admitted job (not on any list) in the held list and say why. */
static void s_hold(sl_engine_t *e, sl_engine_job_t *job, sl_engine_held_t why)
{
    job->held = true;
    job->pause = false;
    sl_list_push_back(&e->held, &job->link);
    e->n_held++;
    if (e->cb.held)
        e->cb.held(e->cb.arg, job, why);
}

/* Admit one waiting job; false when the backend has no room. */
static bool s_admit(sl_engine_t *e, sl_engine_job_t *job, sl_time_t now)
{
    sl_status_t st = e->ops->admit(e->backend, &job->seq);
    if (st == SL_ERR_AGAIN)
        return false;
    int c = job->seq.interactive ? 0 : 1;
    sl_list_del(&job->link);
    e->n_waiting[c]--;
    e->waiting_tokens -= (uint64_t)job->seq.prompt_len + job->seq.max_new_tokens;
    if (st != SL_OK) {
        job->finished = now;
        e->cb.done(e->cb.arg, job, SL_ENGINE_FAILED,
                   job->seq.error[0] ? job->seq.error : sl_status_str(st));
        return true;
    }
    job->admitted = true;
    if (job->kv_mode == SL_KV_AWAIT) {
        s_hold(e, job, SL_ENGINE_HELD_RESERVED);
        return true;
    }
    sl_list_push_back(&e->running, &job->link);
    e->n_running++;
    return true;
}

static void s_admit_waiting(sl_engine_t *e, sl_time_t now)
{
    uint32_t max = (uint32_t)e->cfg.max_batch;
    while (e->n_running < max && !sl_list_empty(&e->ready)) { /* admitted already */
        sl_engine_job_t *job = SL_CONTAINER_OF(sl_list_pop_front(&e->ready), sl_engine_job_t, link);
        e->n_ready--;
        job->ready = false;
        sl_list_push_back(&e->running, &job->link);
        e->n_running++;
    }
    while (e->n_running < max && !sl_list_empty(&e->waiting[0]))
        if (!s_admit(e, SL_CONTAINER_OF(e->waiting[0].next, sl_engine_job_t, link), now))
            return;
    if (sl_list_empty(&e->waiting[1]) || e->n_running >= max)
        return;
    sl_engine_job_t *oldest = SL_CONTAINER_OF(e->waiting[1].next, sl_engine_job_t, link);
    bool full = e->n_waiting[1] >= max - e->n_running;
    bool aged = now - oldest->arrived >= SL_US(e->cfg.batch_wait_us);
    if (!full && !aged)
        return;
    while (e->n_running < max && !sl_list_empty(&e->waiting[1]))
        if (!s_admit(e, SL_CONTAINER_OF(e->waiting[1].next, sl_engine_job_t, link), now))
            return;
}

/* The step in flight ended at `end`: its time into the load statistics and
 * (when chosen) the step cost model. */
static void s_step_ended(sl_engine_t *e, sl_time_t end)
{
    if (e->step_learn)
        sl_step_cost_learn(&e->cost, e->step_x, (double)(end - e->step_start) / 1e9);
    e->stat_busy += end - e->step_start;
    e->stat_steps++;
}

/* The step in flight has ended at now: report its tokens and completions. */
static void s_finish_step(sl_engine_t *e, sl_time_t now)
{
    e->stepping = false;
    s_step_ended(e, now);
    for (size_t i = 0; i < e->n_batch; i++) {
        sl_engine_job_t *job = e->batch_jobs[i];
        if (job->seq.n_out > 0 && !job->first_token)
            job->first_token = now;
        if (job->cancel) {
            s_end(e, job, SL_ENGINE_CANCELED, "canceled", now);
            continue;
        }
        bool finished = job->seq.done || job->seq.n_out >= job->seq.max_new_tokens;
        bool pushed = job->kv_mode == SL_KV_PUSH && job->seq.prefilled;
        if (job->stream && e->cb.tokens && !pushed) {
            uint32_t pending = job->seq.n_out - job->streamed;
            if (pending >= (uint32_t)e->cfg.chunk_tokens || (finished && pending) ||
                (job->streamed == 0 && pending) || (job->pause && pending)) {
                e->cb.tokens(e->cb.arg, job, job->streamed, pending);
                job->streamed = job->seq.n_out;
            }
        }
        if (pushed) { /* its KV goes to the decode peer */
            sl_list_del(&job->link);
            e->n_running--;
            s_hold(e, job, SL_ENGINE_HELD_PREFILLED);
        } else if (finished) {
            s_end(e, job, SL_ENGINE_OK, NULL, now);
        } else if (job->pause) {
            sl_list_del(&job->link);
            e->n_running--;
            s_hold(e, job, SL_ENGINE_HELD_PAUSED);
        }
    }
    e->n_batch = 0;
}

/* The make-up of the step of the n gathered sequences, for its cost model:
 * what each computes in it, as the backend will (a prompt's chunk, or one
 * decode token). */
static void s_step_features(sl_engine_t *e, size_t n)
{
    uint32_t n_prefill = 0, n_decode = 0;
    uint64_t tokens = 0, ctx = 0;
    double attn = 0;
    for (size_t i = 0; i < n; i++) {
        const sl_seq_t *seq = e->batch[i];
        if (!seq->prefilled) {
            uint32_t chunk = sl_seq_prefill_chunk(seq);
            n_prefill++;
            tokens += chunk;
            attn += (double)chunk * ((double)seq->cached_tokens + seq->prefill_done + chunk / 2.0);
        } else {
            n_decode++;
            ctx += (uint64_t)seq->prompt_len + seq->n_out;
        }
    }
    sl_step_cost_features(n_prefill, tokens, attn, n_decode, ctx, e->step_x);
}

/* Begin a step of the n gathered sequences at `at`: the backend's step, its
 * cost into *cost_p. On the backend's failure the batch's jobs fail, and
 * false. */
static bool s_step_begin(sl_engine_t *e, size_t n, sl_time_t at, sl_time_t *cost_p,
                         bool decode_only)
{
    /* The cost model learns from every step that computes prompts and,
     * past its first S_COST_ALL steps, from one decode-only step in
     * S_COST_EVERY: those are most steps, alike, and a simulator of a
     * thousand executors begins millions of them. */
    e->step_learn =
        !decode_only || e->cost.steps < S_COST_ALL || e->decode_only++ % S_COST_EVERY == 0;
    if (e->step_learn)
        s_step_features(e, n);
    e->step_start = at;
    sl_status_t st = e->ops->step(e->backend, e->batch, n, cost_p);
    if (st == SL_OK)
        return true;
    SL_WARN("backend step failed: %s; failing %zu jobs", sl_status_str(st), n);
    for (size_t i = 0; i < n; i++)
        s_end(e, e->batch_jobs[i], SL_ENGINE_FAILED, sl_status_str(st), at);
    e->n_batch = 0;
    return false;
}

/* Plan a run after the step just begun (n sequences, every running one):
 * the steps that follow while every sequence decodes and none finishes or
 * streams, at most run_steps in all, their costs from the backend. */
static void s_plan_run(sl_engine_t *e, size_t n, size_t n_run)
{
    if (n != n_run || e->n_waiting[0] || e->n_waiting[1] || e->n_ready)
        return;
    uint64_t k = (uint64_t)e->cfg.run_steps;
    for (size_t i = 0; i < n && k > 1; i++) {
        const sl_engine_job_t *job = e->batch_jobs[i];
        const sl_seq_t *seq = &job->seq;
        if (!seq->prefilled || !job->first_token || seq->done || job->kv_mode != SL_KV_LOCAL ||
            job->cancel || job->pause || seq->n_out >= seq->max_new_tokens)
            return; /* (a first token is stamped at the boundary after it) */
        /* it finishes at the boundary of the step making its last token */
        uint64_t left = (uint64_t)(seq->max_new_tokens - seq->n_out) + 1;
        if (left < k)
            k = left;
        if (job->stream && e->cb.tokens) { /* ... and streams a chunk at that boundary */
            uint32_t pending = seq->n_out - job->streamed;
            if (job->streamed == 0 || pending >= (uint32_t)e->cfg.chunk_tokens)
                return;
            uint64_t chunk = (uint64_t)(e->cfg.chunk_tokens - pending) + 1;
            if (chunk < k)
                k = chunk;
        }
    }
    sl_time_t end = e->step_end;
    uint32_t m = 0;
    for (; m + 1 < k; m++) {
        sl_time_t c = e->ops->decode_cost(e->backend, e->batch, n, m);
        if (c <= 0)
            break;
        end += c;
    }
    e->run_left = m;
    e->run_end = end;
}

/* The run's steps whose boundary has come (before now, or at it when
 * inclusive), each ended at its boundary and the next begun there, the
 * same batch. A boundary inside a run has nothing to report (s_plan_run
 * saw to it: no job starts, ends, streams or is flagged there), so ending
 * its step is counting it. The run's last boundary is left to
 * sl_engine_advance: jobs end there. */
static void s_catch_up(sl_engine_t *e, sl_time_t now, bool inclusive)
{
    while (e->stepping && e->run_left > 0 &&
           (e->step_end < now || (inclusive && e->step_end == now))) {
        sl_time_t b = e->step_end;
        size_t n = e->n_batch;
        s_step_ended(e, b);
        e->run_left--;
        sl_time_t cost = 0;
        if (!s_step_begin(e, n, b, &cost, true)) { /* a run's steps only decode */
            e->stepping = false;
            e->run_left = 0;
            return;
        }
        e->step_end = b + cost;
    }
}

/* Before a call that changes the engine at now: the run's steps so far,
 * and no more of it (what changes may change the next step). */
static void s_sync(sl_engine_t *e, sl_time_t now)
{
    s_catch_up(e, now, false);
    e->run_left = 0;
}

sl_time_t sl_engine_advance(sl_engine_t *e, sl_time_t now)
{
    if (e->stepping)
        s_catch_up(e, now, true); /* (a failed step ends the stepping) */
    if (e->stepping) {
        if (now < e->step_end)
            return e->run_left > 0 ? e->run_end : e->step_end;
        s_finish_step(e, e->step_end <= now ? now : e->step_end);
    }
    s_admit_waiting(e, now);
    if (e->n_running == 0) {
        if (sl_list_empty(&e->waiting[1]))
            return sl_list_empty(&e->waiting[0]) ? INT64_MAX : now + SL_MS(1);
        sl_engine_job_t *oldest = SL_CONTAINER_OF(e->waiting[1].next, sl_engine_job_t, link);
        return oldest->arrived + SL_US(e->cfg.batch_wait_us);
    }
    /* One walk of the running list (a chain of pointers, one job after
     * another) gathers the batch and counts the decoding sequences; the
     * chunks are then given out over the gathered array. */
    sl_list_t *pos;
    size_t n_run = 0;
    uint32_t n_decode = 0;
    sl_list_for_each(pos, &e->running)
    {
        sl_engine_job_t *job = SL_CONTAINER_OF(pos, sl_engine_job_t, link);
        e->batch_jobs[n_run++] = job;
        n_decode += job->seq.prefilled;
    }
    /* Chunked prefill: decoding sequences take one token each of the
     * step's budget, prompts share the rest in admission order; a prompt
     * left without budget sits this step out. */
    bool chunked = e->cfg.step_tokens > 0 && e->ops->chunked_prefill;
    uint64_t budget = 0;
    if (chunked) {
        uint64_t limit = (uint64_t)e->cfg.step_tokens;
        budget = limit > n_decode ? limit - n_decode : 1; /* prompts always move */
    }
    size_t n = 0;
    for (size_t i = 0; i < n_run; i++) {
        sl_engine_job_t *job = e->batch_jobs[i];
        if (chunked && !job->seq.prefilled) {
            uint32_t left = sl_seq_prefill_left(&job->seq);
            if (left == 0)
                left = 1; /* the token that always computes */
            if (budget == 0)
                continue;
            job->seq.prefill_chunk = left < budget ? left : (uint32_t)budget;
            budget -= job->seq.prefill_chunk;
        }
        if (!job->has_started) {
            job->started = now; /* its prefill step: the wait ends here */
            job->has_started = true;
        }
        e->batch_jobs[n] = job;
        e->batch[n++] = &job->seq;
    }
    e->n_batch = n;
    sl_time_t cost = 0;
    if (!s_step_begin(e, n, now, &cost, n_decode == n))
        return now;
    /* A backend that computed for real (cost 0) finished during the call:
     * the step ends at the next call, whose time is taken after the work,
     * so first-token and end times include the compute. */
    e->stepping = true;
    e->step_end = now + (cost > 0 ? cost : 0);
    e->run_left = 0;
    if (cost > 0 && e->cfg.run_steps > 1 && e->ops->decode_cost) {
        s_plan_run(e, n, n_run);
        if (e->run_left > 0)
            return e->run_end;
    }
    return e->step_end;
}

uint32_t sl_engine_jobs(const sl_engine_t *e)
{
    return e->n_running + e->n_held + e->n_ready + e->n_waiting[0] + e->n_waiting[1];
}

uint32_t sl_engine_list(sl_engine_t *e, sl_engine_job_t **out, uint32_t cap)
{
    sl_list_t *lists[5] = {&e->running, &e->held, &e->ready, &e->waiting[0], &e->waiting[1]};
    sl_list_t *pos;
    uint32_t n = 0;
    for (int i = 0; i < 5; i++)
        sl_list_for_each(pos, lists[i])
        {
            if (n < cap)
                out[n] = SL_CONTAINER_OF(pos, sl_engine_job_t, link);
            n++;
        }
    return n;
}

sl_engine_job_t *sl_engine_find(sl_engine_t *e, uint64_t id)
{
    sl_list_t *lists[5] = {&e->running, &e->held, &e->ready, &e->waiting[0], &e->waiting[1]};
    sl_list_t *pos;
    for (int i = 0; i < 5; i++)
        sl_list_for_each(pos, lists[i])
        {
            sl_engine_job_t *job = SL_CONTAINER_OF(pos, sl_engine_job_t, link);
            if (job->seq.id == id)
                return job;
        }
    return NULL;
}

sl_status_t sl_engine_pause(sl_engine_t *e, uint64_t id, sl_time_t now)
{
    sl_engine_job_t *job = sl_engine_find(e, id);
    if (!job)
        return SL_ERR_NOT_FOUND;
    s_sync(e, now);
    if (job->held)
        return SL_ERR_INVALID;
    if (!job->admitted || !job->seq.prefilled)
        return SL_ERR_AGAIN; /* no KV to move yet */
    job->pause = true;
    if (e->stepping)
        return SL_OK; /* held at the step boundary */
    if (job->stream && e->cb.tokens && job->seq.n_out > job->streamed) {
        e->cb.tokens(e->cb.arg, job, job->streamed, job->seq.n_out - job->streamed);
        job->streamed = job->seq.n_out;
    }
    sl_list_del(&job->link);
    e->n_running--;
    s_hold(e, job, SL_ENGINE_HELD_PAUSED);
    return SL_OK;
}

/* Take a held job back into the running batch, or, when the batch is
 * full, among the ready jobs that join it first as places free up. */
static void s_unhold(sl_engine_t *e, sl_engine_job_t *job)
{
    sl_list_del(&job->link);
    e->n_held--;
    job->held = false;
    job->pause = false;
    if (e->n_running >= (uint32_t)e->cfg.max_batch) {
        job->ready = true;
        sl_list_push_back(&e->ready, &job->link);
        e->n_ready++;
        return;
    }
    sl_list_push_back(&e->running, &job->link);
    e->n_running++;
}

sl_status_t sl_engine_resume(sl_engine_t *e, sl_engine_job_t *job, sl_time_t now)
{
    s_sync(e, now);
    if (!job->held || job->kv_mode != SL_KV_LOCAL)
        return SL_ERR_INVALID;
    s_unhold(e, job);
    return SL_OK;
}

sl_status_t sl_engine_kv_hold(sl_engine_t *e, const uint64_t *hashes, uint32_t n, void **hold_p,
                              const uint32_t **ids_p, uint32_t *n_found_p)
{
    *n_found_p = 0;
    if (!e->ops->kv_hold)
        return SL_ERR_UNSUPPORTED;
    return e->ops->kv_hold(e->backend, hashes, n, hold_p, ids_p, n_found_p);
}

bool sl_engine_kv_can_hold(const sl_engine_t *e)
{
    return e->ops->kv_hold != NULL;
}

void sl_engine_kv_unhold(sl_engine_t *e, void *hold)
{
    if (hold && e->ops->kv_unhold)
        e->ops->kv_unhold(e->backend, hold);
}

sl_status_t sl_engine_import(sl_engine_t *e, sl_engine_job_t *job, uint32_t n_out,
                             uint32_t streamed, uint32_t prefix_tokens, sl_time_t now)
{
    s_sync(e, now);
    if (!job->held || job->kv_mode != SL_KV_AWAIT || n_out > job->seq.max_new_tokens ||
        streamed > n_out || !e->ops->kv_import)
        return SL_ERR_INVALID;
    if (n_out == 0) { /* a fetched prefix: the prompt's rest is computed here */
        if (prefix_tokens <= job->seq.cached_tokens || prefix_tokens >= job->seq.prompt_len)
            return SL_ERR_INVALID;
        uint32_t before = job->seq.cached_tokens;
        job->seq.cached_tokens = prefix_tokens;
        sl_status_t st = e->ops->kv_import(e->backend, &job->seq);
        if (st != SL_OK) {
            job->seq.cached_tokens = before;
            return st;
        }
        job->kv_mode = SL_KV_LOCAL;
        s_unhold(e, job);
        return SL_OK;
    }
    job->seq.n_out = n_out;
    sl_status_t st = e->ops->kv_import(e->backend, &job->seq);
    if (st != SL_OK)
        return st;
    job->kv_mode = SL_KV_LOCAL;
    job->streamed = streamed;
    if (!job->has_started) {
        job->started = now;
        job->has_started = true;
    }
    if (!job->first_token)
        job->first_token = now;
    s_unhold(e, job);
    if (job->stream && e->cb.tokens && n_out > streamed) {
        e->cb.tokens(e->cb.arg, job, streamed, n_out - streamed);
        job->streamed = n_out;
    }
    if (job->seq.done || n_out >= job->seq.max_new_tokens)
        s_end(e, job, SL_ENGINE_OK, NULL, now);
    return SL_OK;
}

void sl_engine_end(sl_engine_t *e, sl_engine_job_t *job, sl_engine_done_t how, const char *error,
                   sl_time_t now)
{
    s_sync(e, now);
    s_end(e, job, how, error, now);
}

void *sl_engine_kv_pool(const sl_engine_t *e, size_t *bytes_p, size_t *block_bytes_p,
                        bool *device_p)
{
    *bytes_p = *block_bytes_p = 0;
    *device_p = false;
    return e->ops->kv_pool ? e->ops->kv_pool(e->backend, bytes_p, block_bytes_p, device_p) : NULL;
}

const uint32_t *sl_engine_kv_table(const sl_engine_t *e, const sl_engine_job_t *job, uint32_t *n_p)
{
    *n_p = 0;
    if (!job->admitted || !e->ops->kv_table)
        return NULL;
    return e->ops->kv_table(e->backend, &job->seq, n_p);
}

void *sl_engine_backend(const sl_engine_t *e)
{
    return e->backend;
}

void sl_engine_kv_geometry(const sl_engine_t *e, uint32_t *blocks_p, uint32_t *block_tokens_p)
{
    sl_backend_load_t bl = {0};
    e->ops->load(e->backend, &bl);
    *blocks_p = bl.kv_block_tokens ? bl.kv_blocks_used + bl.kv_blocks_free : 0;
    *block_tokens_p = bl.kv_block_tokens;
}

void sl_engine_limits(const sl_engine_t *e, sl_backend_limits_t *limits)
{
    *limits = (sl_backend_limits_t){0};
    if (e->ops->limits)
        e->ops->limits(e->backend, limits);
}

/* seq's prompt tokens still to compute into *tokens, their attention pairs
 * (tokens x (tokens before them + tokens / 2)) into *pairs. */
static void s_prompt_left(const sl_seq_t *seq, double *tokens, double *pairs)
{
    double n = sl_seq_prefill_left(seq), before = (double)seq->cached_tokens + seq->prefill_done;
    *tokens += n;
    *pairs += n * (before + n / 2);
}

void sl_engine_load(sl_engine_t *e, sl_time_t now, sl_engine_load_t *load)
{
    s_catch_up(e, now, false); /* the steps ended by now count; the run goes on */
    sl_backend_load_t bl = {0};
    e->ops->load(e->backend, &bl);
    memset(&load->kv, 0, sizeof(load->kv));
    load->running = e->n_running + e->n_held;
    load->waiting = e->n_waiting[0] + e->n_waiting[1] + e->n_ready;
    load->waiting_tokens = e->waiting_tokens;
    load->kv_used = bl.kv_blocks_used;
    load->kv_free = bl.kv_blocks_free;
    sl_time_t span = now - e->stat_since;
    load->step_us = e->stat_steps ? (uint32_t)(e->stat_busy / (sl_time_t)e->stat_steps / 1000) : 0;
    load->busy = span > 0 ? (float)((double)e->stat_busy / (double)span) : 0.0f;
    if (load->busy > 1.0f)
        load->busy = 1.0f;
    e->stat_since = now;
    e->stat_busy = 0;
    e->stat_steps = 0;
    load->has_step_cost = sl_step_cost_ready(&e->cost);
    for (int i = 0; i < SL_STEP_COST_N; i++)
        load->step_cost[i] = load->has_step_cost ? (float)e->cost.th[i] : 0.0f;
    /* The step clock: the step in progress, what decodes in it (and in the
     * steps after it, until the batch changes), and the prompt tokens the
     * steps after it have to compute with their attention pairs (the step
     * in progress has taken its chunks already). */
    sl_time_t left = e->stepping && e->step_end > now ? e->step_end - now : 0;
    load->step_left_us = left < SL_MS(60000) ? (uint32_t)(left / 1000) : 60000000u;
    load->decode_seqs = 0;
    load->decode_ctx = 0;
    double tokens = 0, pairs = 0;
    sl_list_t *pos;
    sl_list_for_each(pos, &e->running)
    {
        const sl_seq_t *seq = &SL_CONTAINER_OF(pos, sl_engine_job_t, link)->seq;
        if (seq->prefilled) {
            load->decode_seqs++;
            load->decode_ctx += (uint64_t)seq->prompt_len + seq->n_out;
        } else {
            s_prompt_left(seq, &tokens, &pairs);
        }
    }
    sl_list_t *queues[3] = {&e->ready, &e->waiting[0], &e->waiting[1]};
    for (int i = 0; i < 3; i++)
        sl_list_for_each(pos, queues[i])
            s_prompt_left(&SL_CONTAINER_OF(pos, sl_engine_job_t, link)->seq, &tokens, &pairs);
    load->prompt_tokens = (uint64_t)tokens;
    load->prompt_pairs = (uint64_t)pairs;
}
