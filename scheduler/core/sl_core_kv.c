/*
 * The data plane in the core: which executors KV can move between, when a
 * job is split over a prefill and a decode executor, when a running job
 * moves, and what happens to either when a side fails.
 *
 * Splitting is decided per job, by prediction (conditional disaggregation,
 * as Dynamo and DistServe do it, but with the load model instead of a fixed
 * prompt-length threshold): after the policy has chosen the executor d for
 * a job, the core compares d's predicted time for the whole job (its wait,
 * its prefill, then the output at its time per token) with the best
 * prefill executor p that reached d: p's wait and prefill, the transfer of
 * the prompt's KV (learned from measured transfers, bytes over time plus a
 * fixed cost), then the output at d's time per token. It splits when that
 * is shorter by kv_split_margin. A decode-only executor always splits, a
 * prefill-only one is never the policy's choice. The decode executor holds
 * the job (its completion ends it); the prefill executor holds one credit
 * for it until its KvSent hands the KV off.
 *
 * A move (migration) is the same two-step exchange the other way: the
 * destination reserves, the source pauses the sequence and pushes its KV,
 * and on the source's KvSent the job changes executor. Moves drain a
 * leaving executor and rebalance decode load when the predicted gain (the
 * rest of the output at the source's time per token minus the
 * destination's) is kv_rebalance_gain times the predicted cost of the move.
 *
 * Failure: a split whose prefill side is lost, refuses or fails its push,
 * or times out, is requeued (the decode side is told to drop its
 * reservation); a move that fails leaves the job where it was (the
 * destination drops its reservation). A source that reports a successful
 * push of a move the core had already abandoned has let the job go, so the
 * job is requeued: nothing accepted is lost.
 *
 * Reachability is a bitmap per data-plane executor (bit i: it reached
 * executor i with a transfer), so the check costs a shift, not a lookup.
 */
#include "scheduler/core/sl_core_int.h"
#include "common/sl_hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Free executors looked at as the prefill side of one split at most. */
#define S_SPLIT_SCAN 64

static size_t s_words(const sl_core_t *core)
{
    return ((size_t)core->cfg.max_executors + 63) / 64;
}

void sl_core_credit_take(sl_core_t *core, sl_exec_t *e)
{
    if (e->inflight + 1 == e->credits)
        sl_core_free_del(core, e);
    e->inflight++;
    core->free_credits--;
}

void sl_core_credit_give(sl_core_t *core, sl_exec_t *e)
{
    if (e->inflight == e->credits)
        sl_core_free_add(core, e);
    e->inflight--;
    core->free_credits++;
}

static void s_cancel(sl_core_t *core, sl_exec_t *e, sl_job_t *job)
{
    if (!core->io->cancel || !e || !e->alive)
        return;
    sl_core_cb_enter(core);
    core->io->cancel(core->io_arg, e, job);
    sl_core_cb_leave(core);
}

void sl_core_kv_detach(sl_core_t *core, sl_job_t *job, bool cancel_peer)
{
    sl_exec_t *p = job->kv_peer;
    if (!p)
        return;
    if (cancel_peer)
        s_cancel(core, p, job);
    if (p->alive && job->kv_mode != SL_KV_FETCH) /* a fetch holds no credit of its source */
        sl_core_credit_give(core, p);
    if (job->kv_mode == SL_KV_PUSH) { /* the prompt it computed for the split */
        p->inflight_tokens -= (uint64_t)job->prompt_tokens + 1;
        p->prefill_tokens -= job->prompt_tokens;
    }
    p->kv_peer_jobs--;
    job->kv_peer = NULL;
    job->kv_mode = SL_KV_LOCAL;
    core->n_kv_moving--;
}

/* A split or a fetch that failed for want of room on the receiving side
 * (or a refused reservation) is no fault of the job: requeued without
 * charging the attempt, and placed next time without a move, so a full
 * peer cannot fail a job. */
static void s_requeue_unmoved(sl_core_t *core, sl_job_t *job, const char *why, sl_time_t now)
{
    job->kv_no_move = true;
    if (job->attempts > 0)
        job->attempts--;
    sl_core_job_requeue(core, job, why, now);
}

void sl_core_job_requeue(sl_core_t *core, sl_job_t *job, const char *why, sl_time_t now)
{
    sl_exec_t *e = job->exec;
    sl_core_kv_detach(core, job, true);
    s_cancel(core, e, job);
    sl_list_del(&job->link);
    sl_core_credit_give(core, e);
    e->inflight_tokens -= (uint64_t)job->prompt_tokens + job->max_new_tokens;
    e->prefill_tokens -= job->uncached_tokens;
    core->running--;
    job->exec = NULL;
    job->kv_split = false;
    sl_core_logf(core, SL_CORE_LOG_WARN, "job %s requeued: %s", job->id, why);
    if (job->attempts >= (uint32_t)core->cfg.max_attempts) {
        sl_job_timings_t t;
        sl_core_timings_queued(job, now, &t);
        sl_core_job_finish(core, job, SL_JOB_FAILED, &t, NULL, NULL, why, now);
        return;
    }
    job->state = SL_JOB_QUEUED;
    sl_core_queue_add(core, job, true);
    core->counters[SL_CTR_REQUEUED]++;
}

/* ---- executors ---- */

sl_status_t sl_core_kv_exec_join(sl_core_t *core, sl_exec_t *e, const sl_exec_info_t *info)
{
    if ((unsigned)info->role >= SL_ROLE_COUNT ||
        (info->role != SL_ROLE_MIXED && info->kv_region_bytes == 0))
        return SL_ERR_INVALID;
    e->role = info->role;
    /* a pipeline stage has a region (its peers reach it) but takes no part in KV moves */
    e->data_plane = info->kv_region_bytes > 0 && info->layers_total == 0;
    e->kv_fetch_source = e->data_plane && info->kv_fetch_source;
    uint64_t tokens = (uint64_t)info->kv_blocks_total * info->kv_block_tokens;
    e->kv_bytes_per_token = e->data_plane && tokens ? (double)info->kv_region_bytes / tokens : 0;
    if (info->kv_region_bytes > 0) {
        sl_core_exec_t *x = sl_core_exec_priv(e);
        x->reach = calloc(s_words(core), sizeof(uint64_t));
        if (!x->reach)
            return SL_ERR_NOMEM;
        core->n_data_plane++;
    }
    /* Nobody reaches it yet: the bits of its index were cleared when the
     * slot's previous executor was lost (sl_core_kv_exec_lose). */
    return SL_OK;
}

void sl_core_kv_exec_lose(sl_core_t *core, sl_exec_t *e, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    /* Jobs elsewhere that count on e as their other side. */
    for (uint32_t i = 0; e->kv_peer_jobs && i < core->n_alive; i++) {
        sl_exec_t *o = core->alive_execs[i];
        sl_list_for_each_safe(pos, tmp, &o->jobs)
        {
            sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
            if (job->kv_peer != e)
                continue;
            if (job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) {
                core->counters[job->kv_mode == SL_KV_PUSH ? SL_CTR_KV_SPLIT_FAILED
                                                          : SL_CTR_KV_FETCH_FAILED]++;
                sl_core_job_requeue(core, job, "the executor sending its KV was lost", now);
            } else {
                core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
                sl_core_kv_detach(core, job, false); /* it goes on where it is */
            }
        }
    }
    /* e's own jobs: their other sides drop them (they are requeued). */
    sl_list_for_each(pos, &e->jobs)
    {
        sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
        sl_core_kv_detach(core, job, true);
        job->kv_split = false;
    }
    /* nobody reaches this index now, so a new executor in the slot starts unreached */
    for (uint32_t i = 0; i < core->n_alive; i++) {
        sl_core_exec_t *o = sl_core_exec_priv(core->alive_execs[i]);
        if (o->reach)
            o->reach[e->index / 64] &= ~(1ull << (e->index % 64));
    }
    sl_core_exec_t *x = sl_core_exec_priv(e);
    if (x->reach) {
        free(x->reach);
        x->reach = NULL;
        core->n_data_plane--;
    }
}

bool sl_core_kv_candidate(const sl_exec_t *e)
{
    return e->role != SL_ROLE_PREFILL && !e->draining;
}

sl_status_t sl_core_exec_reach(sl_core_t *core, uint32_t from, uint32_t to, bool ok, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_exec_reach"))
        return SL_ERR_REENTERED;
    sl_exec_t *a = sl_core_exec_get(core, from);
    sl_exec_t *b = sl_core_exec_get(core, to);
    if (!a || !b)
        return SL_ERR_NOT_FOUND;
    sl_core_exec_t *x = sl_core_exec_priv(a);
    if (!x->reach)
        return SL_ERR_INVALID;
    a->last_seen = now;
    if (ok)
        x->reach[to / 64] |= 1ull << (to % 64);
    else
        x->reach[to / 64] &= ~(1ull << (to % 64));
    sl_core_stage_update(core, now);
    if (ok)
        sl_core_pump(core, now); /* a decode executor may have waited for a prefill peer */
    return SL_OK;
}

bool sl_core_exec_reaches(const sl_core_t *core, const sl_exec_t *from, const sl_exec_t *to)
{
    (void)core;
    const sl_core_exec_t *x = sl_core_exec_priv(from);
    return x->reach && to->alive && (x->reach[to->index / 64] >> (to->index % 64) & 1);
}

/* ---- the transfer model ---- */

/* Predicted seconds to move bytes of KV between two executors. */
static double s_xfer_s(const sl_core_t *core, double bytes)
{
    if (core->xfer_samples == 0)
        return (double)core->cfg.kv_xfer_latency_us / 1e6 +
               bytes / (core->cfg.kv_xfer_prior_mbps * 1e6);
    return core->xfer_lat_s + bytes * core->xfer_s_per_byte;
}

/* Learn from one measured transfer: an exponentially weighted fit of time
 * per byte over large transfers, and of the fixed cost over small ones
 * (below 256 KiB the fixed cost dominates). */
static void s_xfer_learn(sl_core_t *core, uint64_t bytes, uint32_t us)
{
    if (bytes == 0 || us == 0)
        return;
    double s = us / 1e6;
    if (core->xfer_samples == 0) {
        core->xfer_lat_s = (double)core->cfg.kv_xfer_latency_us / 1e6;
        core->xfer_s_per_byte = 1.0 / (core->cfg.kv_xfer_prior_mbps * 1e6);
    }
    const double a = 0.2;
    if (bytes >= (256u << 10)) {
        double per = (s - core->xfer_lat_s) / (double)bytes;
        if (per < 1e-12)
            per = 1e-12;
        core->xfer_s_per_byte = (1 - a) * core->xfer_s_per_byte + a * per;
    } else {
        double lat = s - (double)bytes * core->xfer_s_per_byte;
        core->xfer_lat_s = (1 - a) * core->xfer_lat_s + a * (lat > 0 ? lat : 0);
    }
    core->xfer_samples++;
}

double sl_core_kv_xfer_predict(const sl_core_t *core, double bytes)
{
    return s_xfer_s(core, bytes);
}

/* ---- splitting ---- */

static uint64_t s_nonce(sl_core_t *core, const sl_job_t *job)
{
    core->kv_nonce = sl_hash_mix64(core->kv_nonce + job->seq + 0x9e3779b97f4a7c15ull);
    return core->kv_nonce ? core->kv_nonce : 1;
}

/* Whether p may compute job's prompt for d. */
static bool s_prefill_ok(const sl_core_t *core, const sl_exec_t *p, const sl_exec_t *d,
                         const sl_job_t *job, sl_time_t now)
{
    return p != d && p->data_plane && p->role != SL_ROLE_DECODE && !p->draining &&
           p->inflight < p->credits && !sl_core_exec_quarantined(p, now) &&
           sl_core_exec_holds(p, (uint64_t)job->prompt_tokens + 1, job->vocab_need) &&
           sl_core_exec_reaches(core, p, d);
}

/*
 * Prefix fetch (Mooncake's transfer-versus-recompute choice): when a peer
 * caches more of the job's leading blocks than d does, pull them when the
 * model predicts the transfer is faster than computing them on d.
 */
static void s_fetch_place(sl_core_t *core, sl_job_t *job, sl_exec_t *d, sl_time_t now)
{
    uint32_t bt = job->block_tokens;
    if (!bt || bt != d->kv_block_tokens || job->prompt_tokens < 2)
        return;
    uint32_t mine = core->hit_blocks[d->index];
    if (core->common_blocks > mine)
        mine = core->common_blocks;
    uint32_t limit = (job->prompt_tokens - 1) / bt; /* the last token's block is computed */
    /* h: the fetchable peer caching most (hb blocks); best_any: the most
     * any peer caches, fetchable or not (the rest counts as recomputed) */
    sl_exec_t *h = NULL;
    uint32_t hb = mine, best_any = mine;
    for (size_t i = 0; i < core->n_hits; i++) {
        uint32_t b = core->hits[i].blocks < limit ? core->hits[i].blocks : limit;
        if (core->hits[i].exec == d->index)
            continue;
        if (b > best_any)
            best_any = b;
        sl_exec_t *x = sl_core_exec_get(core, core->hits[i].exec);
        if (!x || b <= hb || !core->cfg.kv_fetch || !d->data_plane || !x->kv_fetch_source ||
            x->kv_block_tokens != bt || !sl_core_exec_reaches(core, x, d))
            continue;
        h = x;
        hb = b;
    }
    if (h) {
        sl_lm_pred_t with;
        sl_core_predict_cached(core, job, d, hb * bt, now, &with); /* hb * bt < prompt */
        double saved = job->pred.valid && with.valid ? job->pred.prefill_s - with.prefill_s : 0;
        double bytes = (double)(hb - mine) * bt * d->kv_bytes_per_token;
        double x = s_xfer_s(core, bytes);
        if (saved > 0 && x < saved * (1.0 - core->cfg.kv_split_margin)) {
            job->kv_mode = SL_KV_FETCH;
            job->kv_peer = h;
            job->kv_nonce = s_nonce(core, job);
            job->kv_started = now;
            job->kv_fetch_blocks = hb;
            job->kv_xfer_pred_s = (float)x;
            job->pred = with;
            h->kv_peer_jobs++;
            core->n_kv_moving++;
            core->counters[SL_CTR_KV_BLOCKS_RECOMPUTED] += best_any - hb;
            return;
        }
    }
    core->counters[SL_CTR_KV_BLOCKS_RECOMPUTED] += best_any - mine;
}

bool sl_core_kv_place(sl_core_t *core, sl_job_t *job, sl_exec_t *d, sl_time_t now)
{
    bool must = d->role == SL_ROLE_DECODE;
    if (job->kv_no_move && !must)
        return true;
    if (!must && (!core->cfg.kv_split || !d->data_plane || core->n_data_plane < 2 ||
                  job->max_new_tokens < 2)) {
        s_fetch_place(core, job, d, now);
        return true;
    }
    const sl_lm_pred_t *pd = &job->pred;
    double rest = (double)(job->max_new_tokens - 1);
    double t_one = pd->valid ? pd->ttft_s + rest * pd->tpot_s : INFINITY;
    sl_exec_t *best = NULL;
    sl_lm_pred_t best_pred = {0};
    double best_t = INFINITY, best_x = 0;
    uint32_t scanned = 0;
    for (uint32_t i = 0; i < core->n_free_execs && scanned < S_SPLIT_SCAN; i++) {
        sl_exec_t *p = core->free_execs[i];
        if (!s_prefill_ok(core, p, d, job, now))
            continue;
        scanned++;
        sl_lm_pred_t pp;
        sl_core_predict(core, job, p, now, &pp);
        double x = s_xfer_s(core, (double)job->prompt_tokens * p->kv_bytes_per_token);
        double t = (pp.valid ? pp.ttft_s : 0) + x + rest * (pd->valid ? pd->tpot_s : 0);
        if (!best || t < best_t) {
            best = p;
            best_t = t;
            best_x = x;
            best_pred = pp;
        }
    }
    if (!best) {
        if (!must)
            s_fetch_place(core, job, d, now);
        return !must;
    }
    if (!must && !(best_t < t_one * (1.0 - core->cfg.kv_split_margin))) {
        s_fetch_place(core, job, d, now);
        return true;
    }
    job->kv_mode = SL_KV_PUSH;
    job->kv_peer = best;
    job->kv_nonce = s_nonce(core, job);
    job->kv_started = now;
    job->kv_pred = best_pred;
    job->kv_xfer_pred_s = (float)best_x;
    job->kv_split = true;
    sl_core_credit_take(core, best);
    best->kv_peer_jobs++;
    best->inflight_tokens += (uint64_t)job->prompt_tokens + 1; /* its next prediction sees it */
    best->prefill_tokens += job->prompt_tokens;
    core->n_kv_moving++;
    core->counters[SL_CTR_KV_SPLITS]++;
    return true;
}

/* ---- reports from executors ---- */

static void s_count_xfer(sl_core_t *core, const sl_kv_sent_t *sent)
{
    core->counters[SL_CTR_KV_BYTES] += sent->bytes;
    core->counters[SL_CTR_KV_BLOCKS] += sent->blocks;
    core->counters[SL_CTR_KV_XFER_US] += sent->xfer_us;
}

sl_status_t sl_core_kv_sent(sl_core_t *core, uint32_t exec_index, const sl_kv_sent_t *sent,
                            sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_kv_sent"))
        return SL_ERR_REENTERED;
    sl_exec_t *x = sl_core_exec_get(core, exec_index);
    sl_job_t *job = sl_map_get(&core->by_seq, sent->job_seq);
    if (!x || !job || job->state != SL_JOB_RUNNING) {
        core->counters[SL_CTR_STALE_COMPLETIONS]++;
        return SL_ERR_NOT_FOUND;
    }
    x->last_seen = now;
    const char *why = sent->error && sent->error[0] ? sent->error : "the push failed";
    if (job->kv_mode == SL_KV_PUSH && job->kv_peer == x) {
        if (!sent->ok) {
            core->counters[SL_CTR_KV_SPLIT_FAILED]++;
            char msg[256];
            sl_core_fmt(msg, sizeof(msg), "its KV push from %s failed: %s", x->name, why);
            s_requeue_unmoved(core, job, msg, now);
        } else {
            s_xfer_learn(core, sent->bytes, sent->xfer_us);
            if (sent->prefill_us)
                sl_load_model_observe(core->model, x->index, &job->kv_pred,
                                      (double)sent->prefill_us / 1e6, -1.0, -1.0, now);
            core->counters[SL_CTR_KV_HANDOFFS]++;
            s_count_xfer(core, sent);
            sl_core_kv_detach(core, job, false);
        }
        sl_core_pump(core, now);
        return SL_OK;
    }
    if (job->kv_mode == SL_KV_FETCH && job->kv_peer == x) {
        if (!sent->ok) {
            core->counters[SL_CTR_KV_FETCH_FAILED]++;
            char msg[256];
            sl_core_fmt(msg, sizeof(msg), "its prefix fetch from %s failed: %s", x->name, why);
            s_requeue_unmoved(core, job, msg, now);
        } else {
            s_xfer_learn(core, sent->bytes, sent->xfer_us);
            core->counters[SL_CTR_KV_FETCHES]++;
            core->counters[SL_CTR_KV_BLOCKS_FETCHED] += sent->blocks;
            s_count_xfer(core, sent);
            sl_core_kv_detach(core, job, false);
        }
        sl_core_pump(core, now);
        return SL_OK;
    }
    if (job->kv_mode == SL_KV_MIGRATE && job->exec == x) {
        if (!sent->ok) {
            core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
            sl_core_kv_detach(core, job, true);
        } else {
            sl_exec_t *b = job->kv_peer;
            uint64_t tokens = (uint64_t)job->prompt_tokens + job->max_new_tokens;
            s_xfer_learn(core, sent->bytes, sent->xfer_us);
            sl_list_del(&job->link);
            sl_core_credit_give(core, x);
            x->inflight_tokens -= tokens;
            x->prefill_tokens -= job->uncached_tokens;
            /* b's credit, taken when the move began, is now the job's own */
            b->kv_peer_jobs--;
            core->n_kv_moving--;
            job->exec = b;
            job->kv_peer = NULL;
            job->kv_mode = SL_KV_LOCAL;
            job->uncached_tokens = 0;
            sl_list_push_back(&b->jobs, &job->link);
            b->inflight_tokens += tokens;
            core->counters[SL_CTR_KV_MIGRATIONS]++;
            core->counters[SL_CTR_KV_PAUSE_US] += sent->pause_us;
            s_count_xfer(core, sent);
            sl_core_logf(core, SL_CORE_LOG_INFO,
                         "job %s moved from %s to %s (%u tokens out, paused %u us)", job->id,
                         x->name, b->name, sent->output_tokens, sent->pause_us);
        }
        sl_core_pump(core, now);
        return SL_OK;
    }
    if (sent->ok && job->exec == x) {
        /* It pushed a move the core had abandoned: it let the job go. */
        sl_core_job_requeue(core, job, "it left its executor after its move was abandoned", now);
        sl_core_pump(core, now);
        return SL_OK;
    }
    core->counters[SL_CTR_STALE_COMPLETIONS]++;
    return SL_ERR_NOT_FOUND;
}

sl_status_t sl_core_kv_refused(sl_core_t *core, uint32_t exec_index, uint64_t seq, const char *why,
                               sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_kv_refused"))
        return SL_ERR_REENTERED;
    sl_exec_t *x = sl_core_exec_get(core, exec_index);
    sl_job_t *job = sl_map_get(&core->by_seq, seq);
    if (!x || !job || job->state != SL_JOB_RUNNING || job->kv_mode == SL_KV_LOCAL)
        return SL_ERR_NOT_FOUND;
    char msg[256];
    sl_core_fmt(msg, sizeof(msg), "%s reserved no KV blocks: %s", x->name, why ? why : "");
    if ((job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) && job->exec == x) {
        core->counters[job->kv_mode == SL_KV_PUSH ? SL_CTR_KV_SPLIT_FAILED
                                                  : SL_CTR_KV_FETCH_FAILED]++;
        s_requeue_unmoved(core, job, msg, now);
    } else if (job->kv_mode == SL_KV_MIGRATE && job->kv_peer == x) {
        core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
        sl_core_logf(core, SL_CORE_LOG_WARN, "job %s stays on %s: %s", job->id, job->exec->name,
                     msg);
        sl_core_kv_detach(core, job, false);
    } else {
        return SL_ERR_NOT_FOUND;
    }
    sl_core_pump(core, now);
    return SL_OK;
}

/* ---- moving running jobs ---- */

/* The best destination for job among free data-plane executors reached
 * from its executor: the least predicted time per token. */
static sl_exec_t *s_move_target(sl_core_t *core, sl_job_t *job, sl_time_t now, double *tpot_p)
{
    sl_exec_t *src = job->exec, *best = NULL;
    double best_tpot = INFINITY;
    for (uint32_t i = 0; i < core->n_free_execs; i++) {
        sl_exec_t *d = core->free_execs[i];
        if (d == src || !d->data_plane || d->role == SL_ROLE_PREFILL || d->draining ||
            sl_core_exec_quarantined(d, now) || !sl_core_exec_reaches(core, src, d) ||
            !sl_core_exec_holds(d, (uint64_t)job->prompt_tokens + job->max_new_tokens,
                                job->vocab_need))
            continue;
        sl_lm_pred_t p;
        sl_core_predict(core, job, d, now, &p);
        double tpot = p.valid ? p.tpot_s : 0;
        if (!best || tpot < best_tpot) {
            best = d;
            best_tpot = tpot;
        }
    }
    *tpot_p = best_tpot;
    return best;
}

/* Begin moving job to d. */
static sl_status_t s_move(sl_core_t *core, sl_job_t *job, sl_exec_t *d, sl_time_t now)
{
    job->kv_mode = SL_KV_MIGRATE;
    job->kv_peer = d;
    job->kv_nonce = s_nonce(core, job);
    job->kv_started = now;
    sl_core_credit_take(core, d);
    d->kv_peer_jobs++;
    core->n_kv_moving++;
    sl_status_t st = SL_ERR_UNSUPPORTED;
    if (core->io->migrate) {
        sl_core_cb_enter(core);
        st = core->io->migrate(core->io_arg, job);
        sl_core_cb_leave(core);
    }
    if (st != SL_OK) {
        core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
        sl_core_kv_detach(core, job, true);
    }
    return st;
}

/* Whether job may move now: running alone (no split or move in flight),
 * on a data-plane executor, long enough to have produced its first token. */
static bool s_movable(const sl_job_t *job, sl_time_t now)
{
    /* twice its predicted TTFT and 50 ms: a move before its first token is
     * refused by the executor, so guessing early only costs round trips */
    double ready_s = (job->pred.valid ? 2.0 * job->pred.ttft_s : 0) + 0.05;
    return job->state == SL_JOB_RUNNING && job->kv_mode == SL_KV_LOCAL && job->exec &&
           job->exec->data_plane && job->max_new_tokens > 1 &&
           now - job->dispatched > (sl_time_t)(ready_s * 1e9);
}

sl_status_t sl_core_job_migrate(sl_core_t *core, uint64_t seq, uint32_t to_index, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_job_migrate"))
        return SL_ERR_REENTERED;
    sl_job_t *job = sl_map_get(&core->by_seq, seq);
    if (!job || job->state != SL_JOB_RUNNING)
        return SL_ERR_NOT_FOUND;
    if (job->kv_mode != SL_KV_LOCAL || !job->exec->data_plane)
        return SL_ERR_INVALID;
    sl_exec_t *d;
    double tpot;
    if (to_index != UINT32_MAX) {
        d = sl_core_exec_get(core, to_index);
        if (!d || d == job->exec || !d->data_plane || d->inflight >= d->credits ||
            !sl_core_exec_reaches(core, job->exec, d))
            return SL_ERR_AGAIN;
    } else if (!(d = s_move_target(core, job, now, &tpot))) {
        return SL_ERR_AGAIN;
    }
    return s_move(core, job, d, now);
}

static bool s_drain_moves(sl_core_t *core, sl_time_t now);

sl_status_t sl_core_exec_drain(sl_core_t *core, uint32_t index, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_exec_drain"))
        return SL_ERR_REENTERED;
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    if (!e->draining)
        sl_core_logf(core, SL_CORE_LOG_INFO, "executor %s is draining: %u jobs%s", e->name,
                     e->inflight, e->data_plane ? " move where they can" : " finish there");
    e->draining = true;
    e->last_seen = now;
    core->drain_pending = s_drain_moves(core, now);
    return SL_OK;
}

/* Move what can move off draining executors. True while one of them still
 * holds a running job that stays (not yet movable, or nowhere to go): the
 * tick then looks again at once rather than a rebalancing period later,
 * since a job that could have moved would otherwise often finish first. */
static bool s_drain_moves(sl_core_t *core, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    bool left = false;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        sl_exec_t *e = core->alive_execs[i];
        if (!e->draining || !e->data_plane)
            continue;
        sl_list_for_each_safe(pos, tmp, &e->jobs)
        {
            sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
            double tpot;
            sl_exec_t *d;
            if (s_movable(job, now) && (d = s_move_target(core, job, now, &tpot)))
                s_move(core, job, d, now);
            else if (job->state == SL_JOB_RUNNING && job->kv_mode == SL_KV_LOCAL &&
                     job->max_new_tokens > 1)
                left = true;
        }
    }
    return left;
}

/* One rebalancing move at most: from the data-plane executor with the
 * most jobs, the job with the most output left, to the executor predicted
 * fastest per token, when the predicted gain pays for the move. */
static void s_rebalance(sl_core_t *core, sl_time_t now)
{
    sl_exec_t *src = NULL;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        sl_exec_t *e = core->alive_execs[i];
        if (e->data_plane && e->role != SL_ROLE_PREFILL && (!src || e->inflight > src->inflight))
            src = e;
    }
    if (!src || src->inflight < 2)
        return;
    sl_job_t *pick = NULL;
    double pick_left = 0;
    sl_list_t *pos;
    sl_list_for_each(pos, &src->jobs)
    {
        sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
        if (!s_movable(job, now))
            continue;
        double tpot = job->pred.valid && job->pred.tpot_s > 0 ? job->pred.tpot_s : 0;
        double ran =
            (double)(now - job->dispatched) / 1e9 - (job->pred.valid ? job->pred.ttft_s : 0);
        double done = tpot > 0 ? ran / tpot : 0;
        double left = (double)job->max_new_tokens - done;
        if (left > pick_left) {
            pick = job;
            pick_left = left;
        }
    }
    if (!pick)
        return;
    double tpot_dst;
    sl_exec_t *d = s_move_target(core, pick, now, &tpot_dst);
    if (!d || d->inflight + 1 >= src->inflight)
        return;
    sl_lm_pred_t here;
    sl_core_predict(core, pick, src, now, &here);
    double gain = pick_left * ((here.valid ? here.tpot_s : 0) - tpot_dst);
    double tokens = (double)pick->prompt_tokens + (pick->max_new_tokens - pick_left);
    double cost = s_xfer_s(core, tokens * src->kv_bytes_per_token);
    if (gain > core->cfg.kv_rebalance_gain * cost)
        s_move(core, pick, d, now);
}

void sl_core_kv_tick(sl_core_t *core, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    if (core->n_kv_moving) {
        sl_time_t limit = SL_MS(core->cfg.kv_move_timeout_ms);
        for (uint32_t i = 0; i < core->n_alive; i++) {
            sl_exec_t *e = core->alive_execs[i];
            sl_list_for_each_safe(pos, tmp, &e->jobs)
            {
                sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
                /* a split's clock starts once its prompt is predicted done */
                sl_time_t expect =
                    job->kv_mode == SL_KV_PUSH && job->kv_pred.valid
                        ? (sl_time_t)((2.0 * job->kv_pred.ttft_s + job->kv_xfer_pred_s) * 1e9)
                        : 0;
                if (job->kv_mode == SL_KV_LOCAL || now - job->kv_started < limit + expect)
                    continue;
                if (job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) {
                    core->counters[job->kv_mode == SL_KV_PUSH ? SL_CTR_KV_SPLIT_FAILED
                                                              : SL_CTR_KV_FETCH_FAILED]++;
                    sl_core_job_requeue(core, job,
                                        "its KV did not reach the decode executor in time", now);
                } else {
                    core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
                    sl_core_logf(core, SL_CORE_LOG_WARN, "job %s: its move timed out; it stays",
                                 job->id);
                    sl_core_kv_detach(core, job, true);
                }
            }
        }
    }
    if (core->n_data_plane < 2)
        return;
    bool rebalance = now >= core->rebalance_at;
    if (rebalance || core->drain_pending)
        core->drain_pending = s_drain_moves(core, now);
    if (!rebalance)
        return;
    core->rebalance_at = now + SL_MS(core->cfg.kv_rebalance_ms);
    if (core->cfg.kv_rebalance)
        s_rebalance(core, now);
}
