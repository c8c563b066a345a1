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
 * Ties in time are broken by insertion sequence, and every random choice is
 * seeded, so a run is a pure function of its parameters.
 *
 * Alternatives rejected: a fluid or queueing-theory model of executors (it
 * cannot reproduce continuous batching or prefix-cache hits, the two things
 * the policies differ on); a time-stepped loop (wastes work between events
 * and quantizes latencies).
 */
#include "bench/sim/sl_sim.h"
#include "common/sl_cfg.h"
#include "common/sl_heap.h"
#include "common/sl_log.h"
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
    char name[32];       /* its name */
} s_exec_t;

/* A job inside an engine. */
typedef struct s_ejob {
    sl_engine_job_t ej; /* what the engine sees */
    uint32_t req;       /* request number */
    uint32_t out[];     /* output tokens */
} s_ejob_t;

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
};

void sl_sim_params_default(sl_sim_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->executors = 16;
    p->policy = "learned";
    p->admission = true;
    p->slo_ttft_mult = 3.0;
    p->slo_ttft_floor_s = 1.0;
    p->slo_tpot_s = 0.100;
    p->heartbeat_ms = 100;
    p->credits = 32;
    p->max_batch = 32;
    sl_cfg_defaults(sl_sim_cfg_fields, &p->model);
    p->kv_block_tokens = 16;
    p->fail_down_s = 30;
    p->seed = 1;
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

static void s_wake(s_sim_t *s, s_exec_t *x, sl_time_t t)
{
    if (t < x->wake) {
        x->wake = t;
        s_push(s, t, S_EV_ENGINE, x->n);
    }
}

/* --- the core's actions --- */

static sl_status_t s_io_dispatch(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    s_sim_t *s = arg;
    s_exec_t *x = exec->user;
    uint32_t req = (uint32_t)(uintptr_t)job->user;
    s_ejob_t *j = calloc(1, sizeof(*j) + (size_t)job->max_new_tokens * sizeof(uint32_t));
    if (!j)
        return SL_ERR_NOMEM;
    j->req = req;
    j->ej.seq.id = job->seq;
    j->ej.seq.prompt_len = job->prompt_tokens;
    j->ej.seq.block_hashes = job->block_hashes;
    j->ej.seq.n_block_hashes = job->n_block_hashes;
    j->ej.seq.hash_block_tokens = job->block_tokens;
    j->ej.seq.max_new_tokens = job->max_new_tokens;
    j->ej.seq.interactive = job->prio == SL_PRIO_INTERACTIVE;
    j->ej.seq.out = j->out;
    j->ej.user = j;
    sl_engine_submit(x->engine, &j->ej, s->now);
    s_wake(s, x, s->now);
    return SL_OK;
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
    .log = s_io_log,
};

/* --- the engines' callbacks --- */

static void s_eng_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *error)
{
    s_exec_t *x = arg;
    s_sim_t *s = x->sim;
    s_ejob_t *j = ej->user;
    if (x->alive) {
        /* Exactly what an executor would report for this engine job. */
        sl_result_report_t rep;
        sl_engine_job_report(ej, how, error, &rep);
        s->reqs[j->req].cached = rep.res.cached_tokens;
        sl_core_job_complete(s->core, x->core_index, ej->seq.id, &rep.res, NULL, s->now);
    }
    free(j);
}

static void s_kv_stored(void *arg, uint64_t hash)
{
    s_exec_t *x = arg;
    if (x->alive)
        sl_core_exec_kv_event(x->sim->core, x->core_index, &hash, 1, NULL, 0, false, x->sim->now);
}

static void s_kv_evicted(void *arg, uint64_t hash)
{
    s_exec_t *x = arg;
    if (x->alive)
        sl_core_exec_kv_event(x->sim->core, x->core_index, NULL, 0, &hash, 1, false, x->sim->now);
}

static sl_status_t s_exec_start(s_sim_t *s, s_exec_t *x)
{
    const sl_sim_params_t *p = s->p;
    sl_engine_cfg_t ecfg;
    sl_cfg_defaults(sl_engine_cfg_fields, &ecfg);
    ecfg.max_batch = p->max_batch;
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
    sl_engine_cb_t cb = {.done = s_eng_done, .arg = x};
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
    };
    x->alive = true;
    x->wake = INT64_MAX;
    return sl_core_exec_join(s->core, &info, x, s->now, &x->core_index);
}

static void s_exec_fail(s_sim_t *s, s_exec_t *x)
{
    if (!x->alive)
        return;
    x->alive = false; /* engine completions from now on are dropped */
    sl_engine_destroy(&x->engine);
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
    sl_job_desc_t d = {
        .id = id,
        .prio = SL_PRIO_INTERACTIVE,
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
    sl_status_t st = sl_core_create(&cc, &s_io, s, &s->core);
    if (st != SL_OK)
        return st;
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
        }
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
    *rep = r;
out:
    for (int i = 0; s->execs && i < p->executors; i++) {
        s->execs[i].alive = false;
        sl_engine_destroy(&s->execs[i].engine);
    }
    sl_core_destroy(&s->core);
    sl_heap_fini(&s->events);
    free(s->reqs);
    free(s->execs);
    return st;
}
