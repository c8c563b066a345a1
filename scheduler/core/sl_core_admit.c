/*
 * Admission (see sl_core_int.h): whether a job is accepted at submission,
 * when the core's admission knob is on.
 *
 * Admission refuses at once, with a predicted retry-after: a tenant over
 * its token bucket (SL_BUSY_TENANT); any job while the cluster is in the
 * busy state (SL_BUSY_OVERLOAD), entered when predicted utilization
 * (prefill backlog, or the wait of jobs queued for a place, over a horizon)
 * passes busy_utilization and left only
 * below busy_utilization - busy_hysteresis, so the state does not flap;
 * batch jobs already at 90% of the threshold, so interactive work keeps the
 * last capacity; and a job whose best predicted TTFT misses its TTFT
 * deadline, or whose best predicted end (TTFT + TPOT x its output tokens)
 * misses its whole-job deadline (SL_BUSY_DEADLINE, with no retry-after: a
 * deadline is a budget from receipt, and a retry comes back later than the
 * client wanted). A job that runs anyway and ends past its whole-job
 * deadline is marked late in its result and counted (sl_core.c). Rejecting
 * late (letting a job queue into a timeout) was rejected: the client learns
 * nothing and the queue serves work that will be thrown away. For the same
 * reason a job whose TTFT deadline is predicted lost on the executor it is
 * about to be placed on is refused, or expires if it had queued
 * (sl_core_place_doomed): at submission that executor was not known.
 */
#include "scheduler/core/sl_core_int.h"
#include "common/sl_hash.h"

#include <math.h>

#define S_ADMIT_SAMPLE 32    /* executors sampled for an estimate in big clusters */
#define S_RETRY_MAX_S 3600.0 /* longest retry-after, seconds: a longer estimate is clamped */
#define S_HOLD_BEHIND                                                                              \
    0.5 /* share of the wait for a place each job queued behind a held one                         \
           waits on average */

/* A retry-after of s seconds, at least min_s and at most S_RETRY_MAX_S:
 * the estimates it comes from can run to any size (a queue over a
 * departure rate decayed to almost nothing after a long idle spell, found
 * by fuzz_sched as 4e48 s; a tiny tenant rate), and a double past the
 * range of sl_time_t must not be converted. */
static sl_time_t s_retry_after(double s, double min_s)
{
    if (!(s > min_s)) /* also NaN */
        s = min_s;
    if (s > S_RETRY_MAX_S)
        s = S_RETRY_MAX_S;
    return (sl_time_t)(s * 1e9);
}

/* The admission horizon, seconds. */
static double s_horizon_s(const sl_core_t *core)
{
    return (double)core->cfg.admit_horizon_ms / 1e3;
}

static uint64_t s_rand(sl_core_t *core)
{
    core->rand_state += 0x9e3779b97f4a7c15ull;
    return sl_hash_mix64(core->rand_state);
}

/* How many live executors an estimate looks at: every one up to twice
 * S_ADMIT_SAMPLE, S_ADMIT_SAMPLE beyond (s_looked_at). */
static uint32_t s_looked(const sl_core_t *core)
{
    uint32_t n = core->n_alive;
    return n <= 2 * S_ADMIT_SAMPLE ? n : S_ADMIT_SAMPLE;
}

/* The i-th of the k executors an estimate looks at: the i-th live one
 * when it looks at all of them, else one drawn at random. */
static sl_exec_t *s_looked_at(sl_core_t *core, uint32_t i, uint32_t k)
{
    uint32_t n = core->n_alive;
    return core->alive_execs[k == n ? i : (uint32_t)(s_rand(core) % n)];
}

double sl_core_utilization(sl_core_t *core, sl_time_t now)
{
    if (core->n_alive == 0)
        return 0;
    /* Each executor counts for the share of the horizon it is predicted
     * busy, at most all of it: one executor predicted busy for an hour (one
     * wild prediction, or a job that long) does not make a cluster of
     * hundreds look overloaded. The backlog sum is O(executors): reuse it
     * for up to a millisecond unless a dispatch changed it. */
    double horizon_s = s_horizon_s(core);
    if (core->util_at == 0 || now < core->util_at || now - core->util_at >= SL_MS(1)) {
        core->util_cached = sl_load_model_backlog_sum_s(core->model, core->alive_index,
                                                        core->n_alive, now, horizon_s);
        core->util_at = now ? now : 1;
    }
    double prefill =
        (core->util_cached + core->queued_work_s) / ((double)core->n_alive * horizon_s);
    double slots = sl_core_place_wait_s(core, now) / horizon_s;
    return prefill > slots ? prefill : slots;
}

/* The rate at which jobs leave their places: each departure adds 1/tau,
 * decaying with time constant tau (the admission horizon), so it reads in
 * jobs per second. */
static double s_done_rate(const sl_core_t *core, sl_time_t now)
{
    if (core->done_rate_at == 0 || now <= core->done_rate_at)
        return core->done_rate;
    return core->done_rate * exp(-(double)(now - core->done_rate_at) / 1e9 / s_horizon_s(core));
}

void sl_core_done_rate_note(sl_core_t *core, sl_time_t now)
{
    core->done_rate = s_done_rate(core, now) + 1.0 / s_horizon_s(core);
    core->done_rate_at = now > core->done_rate_at ? now : core->done_rate_at;
}

/* Decode-bound load does not show in the prefill backlog: the jobs hold
 * their places (credits) for their whole decode. A full set of places is
 * not overload (a running batch is meant to be full); jobs waiting here
 * for one are. Their predicted wait is the queue over the rate at which
 * places free up. Before any job has left one, the share of places taken
 * (queued jobs counting) stands in. The share was the whole measure
 * first; it called the cluster busy at 80% of its places, where every job
 * still met its SLOs, and shed a fifth of the load a decode-bound cluster
 * could carry. */
double sl_core_place_wait_s(const sl_core_t *core, sl_time_t now)
{
    double queued = (double)core->qlen[0] + core->qlen[1];
    if (queued == 0)
        return 0;
    double rate = s_done_rate(core, now);
    if (rate > 0)
        return queued / rate;
    double places = (double)core->running + (double)core->free_credits;
    return places > 0 ? ((double)core->running + queued) / places * s_horizon_s(core) : 0.0;
}

/* The expected wait for a place on one given executor whose places are
 * all taken: the fleet's mean time between departures times the live
 * executors (one of them frees a place that often, on average). 0 before
 * any departure. */
static double s_exec_place_s(const sl_core_t *core, sl_time_t now)
{
    double rate = s_done_rate(core, now);
    return rate > 0 ? (double)core->n_alive / rate : 0.0;
}

/* Holding a job for a better executor (delay scheduling, as Hadoop's fair
 * scheduler waits a little for a node holding a task's data): an executor
 * whose places are all taken (its running batch full of jobs decoding) may
 * have no prefill backlog at all, while every executor with a free place
 * is behind seconds of prompts. Placing the job at once puts it behind
 * them; waiting for the idle one to free a place (one of its jobs ending:
 * on average the fleet's time between departures times the executors) can
 * give its first token much sooner. The wait must win by a margin
 * (place_hold, a share of the best free TTFT), because both estimates are
 * rough, and must also pay for the jobs queued behind it, which wait until
 * it goes (on average half the wait for a place each): without that term
 * a held head of the line stalled the queue of a 256-executor fleet at
 * 2,000 req/s, and the capacity there fell by 5% (docs/POLICIES.md). The
 * check costs nothing unless some executor is full and the best free TTFT
 * exceeds the wait for a place. The job keeps the head of the line, so it
 * is looked at again at the next freed place, and a TTFT deadline still
 * expires it. */
bool sl_core_place_later(sl_core_t *core, const sl_job_t *job, double best_ttft_s, sl_time_t now)
{
    double gain = core->cfg.place_hold;
    if (!(gain > 0) || core->n_free_execs >= core->n_alive || !(best_ttft_s > 0))
        return false; /* every live executor has a free place: nothing to wait for */
    double place_s = s_exec_place_s(core, now), bound = gain * best_ttft_s;
    if (!(place_s > 0))
        return false; /* no departure seen yet: no estimate of the wait for a place */
    /* the jobs queued behind it wait too, until it goes (on average half
     * the wait for a place): the saving must pay for them */
    double others = (double)core->qlen[0] + core->qlen[1] - (job->state == SL_JOB_QUEUED);
    double behind = S_HOLD_BEHIND * place_s * others;
    if (!(place_s < bound) || !(place_s + behind < best_ttft_s))
        return false; /* the wait for a place alone costs more than it could save */
    for (uint32_t i = 0, k = s_looked(core); i < k; i++) {
        sl_exec_t *e = s_looked_at(core, i, k);
        if (e->inflight < e->credits || !sl_core_can_place(e, job, now))
            continue; /* a free one was a candidate already */
        sl_lm_pred_t pred;
        sl_core_predict(core, job, e, now, &pred);
        if (pred.ttft_s + place_s < bound && pred.ttft_s + place_s + behind < best_ttft_s)
            return true;
    }
    return false;
}

bool sl_core_busy(const sl_core_t *core)
{
    return core->busy;
}

/* The best a set of executors offers a job: the shortest predicted TTFT
 * (with its prefill time) and the earliest predicted end. */
typedef struct s_best {
    double ttft;    /* seconds */
    double prefill; /* seconds of prefill of the executor with that TTFT */
    double end;     /* seconds to the last token, the earliest of any */
} s_best_t;

/* Fold executor e's prediction for job into *best, place_s added when e
 * has every place taken. While some executor has a free place, the job
 * goes to one of those at once, or waits for a given full one
 * (sl_core_place_later): a full executor's first token comes after the
 * expected wait for a place there (place_s). Without that wait, in
 * a burst that filled the executors with no prefill backlog, jobs were
 * judged by them (0.15 s) and went behind 2.6 s of prompts on one with a
 * free place (azure-code, 16 executors, 80 req/s). With none free, the
 * caller adds the wait for any place instead. */
static void s_consider(sl_core_t *core, sl_job_t *job, sl_exec_t *e, sl_time_t now, double place_s,
                       s_best_t *best)
{
    sl_lm_pred_t pred;
    sl_core_predict(core, job, e, now, &pred);
    if (e->inflight >= e->credits)
        pred.ttft_s += (float)place_s;
    if (pred.ttft_s < best->ttft) {
        best->ttft = pred.ttft_s;
        best->prefill = pred.work_s;
    }
    double end = pred.ttft_s + (double)pred.tpot_s * job->max_new_tokens;
    if (end < best->end)
        best->end = end;
}

/* Best predicted TTFT of job over the executors caching its prefix and a
 * sample of the others (all of them in a small cluster), and in *end_p the
 * best predicted end (TTFT + TPOT x max_new_tokens, the model's whole-job
 * estimate). Sets the job's predicted queued work to the prefill on the
 * executor of the best TTFT. */
static double s_best_ttft(sl_core_t *core, sl_job_t *job, sl_time_t now, double *end_p)
{
    s_best_t best = {INFINITY, 0, INFINITY};
    /* a full executor's wait for a place, while some executor has one free
     * (the same for every executor: reckoned once) */
    double place_s = core->n_free_execs > 0 ? s_exec_place_s(core, now) : 0.0;
    sl_core_hits_mark(core, job);
    for (size_t i = 0; i < core->n_hits; i++) {
        sl_exec_t *e = core->execs[core->hits[i].exec];
        if (!e || !sl_core_can_place(e, job, now))
            continue;
        s_consider(core, job, e, now, place_s, &best);
    }
    for (uint32_t i = 0, k = s_looked(core); i < k; i++) {
        sl_exec_t *e = s_looked_at(core, i, k);
        if (!sl_core_can_place(e, job, now))
            continue;
        s_consider(core, job, e, now, place_s, &best);
    }
    sl_core_hits_clear(core);
    job->queued_work_s = (float)best.prefill;
    /* No free credit: it also waits its turn in the scheduler's queue, for
     * a place and for the prefill queued ahead of it. */
    if (core->n_free_execs == 0 && core->n_alive) {
        double wait = core->queued_work_s / core->n_alive, place = sl_core_place_wait_s(core, now);
        double longer = wait > place ? wait : place;
        best.ttft += longer;
        best.end += longer;
    }
    *end_p = best.end;
    return best.ttft;
}

/* Expiring a job whose deadline is predicted lost at placement. Admission
 * judges a job at submission by the best executor; the job is placed later
 * (it may queue, and the executors that looked best may fill first) on the
 * best one with a free place, which in a burst can be seconds behind. A
 * job dispatched there misses its TTFT deadline anyway, and its prefill
 * delays every job queued behind it on that executor: serving it is work
 * thrown away that also costs others their deadlines. So it expires there,
 * answered at once (SL_JOB_EXPIRED, as a job whose deadline passes while
 * queued), when its predicted TTFT passes expire_predicted times what is
 * left of its TTFT deadline; a job placed during its own submission is
 * refused SL_BUSY_DEADLINE instead (sl_core_job_submit), never accepted.
 * Never a job dispatched once already (requeued after a loss: it was
 * running). Measured: azure-code on 16 executors at 80 req/s, learned with
 * admission met its SLOs for 88.6% of the requests without this (with the
 * full executors' wait for a place in s_consider), 93.4% with it
 * (docs/POLICIES.md, "Admission"). */
bool sl_core_place_doomed(const sl_core_t *core, const sl_job_t *job, sl_time_t now)
{
    double k = core->cfg.expire_predicted;
    if (!core->cfg.admission || !(k > 0) || !job->ttft_due || job->attempts || !job->pred.valid)
        return false;
    return (double)job->pred.ttft_s > k * (double)(job->ttft_due - now) / 1e9;
}

/* Admission: false (with reason and retry-after) to refuse job now. */
bool sl_core_admit(sl_core_t *core, sl_job_t *job, sl_time_t now, sl_busy_reason_t *reason_p,
                   sl_time_t *retry_p)
{
    if (core->cfg.tenant_rate > 0) {
        sl_core_tenant_t *t = sl_core_tenant_get(core, job->tenant);
        if (!t->bucket_set) {
            t->bucket = core->cfg.tenant_burst;
            t->bucket_at = now;
            t->bucket_set = true;
        }
        t->bucket += (double)(now - t->bucket_at) / 1e9 * core->cfg.tenant_rate;
        if (t->bucket > core->cfg.tenant_burst)
            t->bucket = core->cfg.tenant_burst;
        t->bucket_at = now;
        if (t->bucket < 1.0) {
            *reason_p = SL_BUSY_TENANT;
            *retry_p = s_retry_after((1.0 - t->bucket) / core->cfg.tenant_rate, 0) + 1;
            return false;
        }
        t->bucket -= 1.0;
    }
    double util = sl_core_utilization(core, now);
    if (core->cfg.busy_smooth_ms == 0 || core->util_avg_at == 0) {
        core->util_avg = util;
    } else if (now > core->util_avg_at) {
        double a = 1.0 - exp(-(double)(now - core->util_avg_at) /
                             ((double)core->cfg.busy_smooth_ms * 1e6));
        core->util_avg += a * (util - core->util_avg);
    }
    core->util_avg_at = now > 0 ? now : 1;
    util = core->util_avg;
    double high = core->cfg.busy_utilization, low = high - core->cfg.busy_hysteresis;
    double horizon_s = s_horizon_s(core);
    if (!core->busy && util > high) {
        core->busy = true;
        core->counters[SL_CTR_BUSY_ENTERED]++;
    } else if (core->busy && util < low) {
        core->busy = false;
    }
    double limit = job->prio == SL_PRIO_BATCH ? 0.9 * high : high;
    if (core->busy || util > limit) {
        double target = job->prio == SL_PRIO_BATCH ? 0.9 * low : low;
        double wait_s = (util - target) * horizon_s;
        *reason_p = SL_BUSY_OVERLOAD;
        *retry_p = s_retry_after(wait_s, 0.01);
        return false;
    }
    double best_end;
    double best = s_best_ttft(core, job, now, &best_end);
    /* A deadline is a budget from receipt: a retry would come back later
     * than the client wanted, so these refusals carry no retry-after. */
    bool ttft_missed =
        job->ttft_due && isfinite(best) && best > (double)(job->ttft_due - now) / 1e9;
    bool end_missed = job->due && isfinite(best_end) && best_end > (double)(job->due - now) / 1e9;
    if (ttft_missed || end_missed) {
        *reason_p = SL_BUSY_DEADLINE;
        *retry_p = 0;
        return false;
    }
    return true;
}
