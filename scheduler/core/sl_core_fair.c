/*
 * The queues (see sl_core_int.h): which queued job is placed next, between
 * bands and between tenants, how many jobs a tenant may hold, and which
 * queued job gives way under overload.
 *
 * Bands are the job classes (interactive, then batch); each keeps one list
 * in arrival order (core->queue[band], requeued jobs at the front) and,
 * per tenant, that tenant's part of it (tenant->q[band]). A band is served
 * only when the bands above it are empty, except that a batch job which has
 * waited past starvation_bound_ms (counted from its receipt) is served
 * next: the oldest batch job then goes before any interactive one, so batch
 * work waits at most the bound plus one dispatch for a free credit. Aging
 * every job's priority continuously was rejected: it needs a sorted queue
 * (O(log n) per job) for a guarantee the bound gives with one comparison.
 *
 * Within a band, tenants take turns by deficit round robin weighted by
 * token cost (tenant_fair): the tenants with queued jobs in the band form a
 * ring (core->active[band]); the tenant at its head is served while its
 * deficit covers its oldest job's cost, then gets its quantum
 * (tenant_quantum x its weight) and goes to the back. A job's cost, checked
 * before placement, is its prompt plus its max new tokens (what is cached
 * is known only once an executor is chosen); its tenant is charged at
 * dispatch with its uncached prompt tokens (there) plus its max new
 * tokens, so a tenant whose prompts hit the prefix cache gets more jobs
 * through its share. When a full turn of the ring serves nobody (jobs
 * larger than many quanta), the rounds nobody would be served in are added
 * at once, so one pick costs O(tenants in the band) at worst. With one
 * tenant in a band, or tenant_fair off, the band is served in arrival order
 * and no deficit is kept: that path costs a comparison. Start-time fair
 * queueing (virtual finish tags) was rejected: it needs a priority queue of
 * tenants and a virtual clock for the same long-run shares, and DRR's
 * ring is O(1) per job when jobs are smaller than a quantum.
 *
 * A tenant may hold at most tenant_max_jobs jobs queued or running; past
 * it a submission gets BUSY (SL_BUSY_TENANT, as the rate limit, with
 * busy_retry_ms) and is counted (SL_CTR_TENANT_QUOTA). The count is kept
 * on the tenant's record, bumped when a job is accepted or restored and
 * dropped when the job is freed, so no path that ends a job can forget it.
 *
 * Under overload (the queue at queue_max, or admission's busy state) with
 * overload_shed on, a newcomer displaces the queued job that ranks lowest
 * below it: from the lowest band with jobs, not above the newcomer's, the
 * newest job of the tenant furthest over its weighted share there (queued
 * token cost over weight); in the newcomer's own band only when that
 * tenant is not the newcomer's and stays over the newcomer's tenant's share
 * with the newcomer counted. The shed job is answered BUSY (io->shed, or a
 * REJECTED result naming the retry-after) and its id forgotten, never
 * dropped in silence. Off, the newcomer is refused as before. Shedding the
 * newest job rather than the oldest keeps the work that waited longest.
 *
 * Tenants are keyed by a 64-bit hash of their name, as admission's buckets
 * were: two names with the same hash share a record. Records are never
 * freed before the core (as the buckets before them): memory grows with
 * the number of distinct tenants seen.
 */
#include "scheduler/core/sl_core_int.h"
#include "common/sl_hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t s_tenant_key(const char *name, size_t len)
{
    return sl_hash_bytes(name, len, 7) | 1;
}

/* What a queued job is taken to cost before placement, in tokens. */
static double s_cost(const sl_job_t *job)
{
    return (double)job->prompt_tokens + (double)job->max_new_tokens;
}

static double s_weight_of(const sl_core_t *core, uint64_t key)
{
    for (size_t i = 0; i < core->n_weights; i++)
        if (core->weights[i].key == key)
            return core->weights[i].weight;
    return 1.0;
}

static void s_tenant_init(sl_core_t *core, sl_core_tenant_t *t, uint64_t key)
{
    memset(t, 0, sizeof(*t));
    t->key = key;
    t->weight = s_weight_of(core, key);
    /* a config built by hand may leave it 0: DRR needs a positive quantum */
    t->quantum =
        (double)(core->cfg.tenant_quantum > 0 ? core->cfg.tenant_quantum : 1024) * t->weight;
    for (int b = 0; b < SL_PRIO_COUNT; b++) {
        sl_list_init(&t->q[b]);
        sl_list_init(&t->act[b]);
    }
}

sl_status_t sl_core_fair_init(sl_core_t *core)
{
    for (int b = 0; b < SL_PRIO_COUNT; b++)
        sl_list_init(&core->active[b]);
    s_tenant_init(core, &core->tenant_spill, 0);
    const char *p = core->cfg.tenant_weights;
    size_t rows = *p ? 1 : 0;
    for (const char *c = p; *c; c++)
        rows += *c == ',';
    if (rows == 0)
        return SL_OK;
    core->weights = calloc(rows, sizeof(*core->weights));
    if (!core->weights)
        return SL_ERR_NOMEM;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char num[64];
        char *rest = NULL;
        double w = 0;
        size_t nlen = eq ? (size_t)(len - (size_t)(eq - p) - 1) : 0;
        if (eq && eq > p && nlen > 0 && nlen < sizeof(num)) {
            memcpy(num, eq + 1, nlen);
            num[nlen] = '\0';
            w = strtod(num, &rest);
        }
        if (!eq || eq == p || !rest || *rest || !isfinite(w) || w <= 0 || w > 1e6) {
            sl_core_logf(core, SL_CORE_LOG_ERROR,
                         "tenant-weights: '%.*s' is not name=weight (a weight in (0, 1e6])",
                         (int)len, p);
            return SL_ERR_INVALID;
        }
        core->weights[core->n_weights].key = s_tenant_key(p, (size_t)(eq - p));
        core->weights[core->n_weights].weight = w;
        core->n_weights++;
        p = end ? end + 1 : p + len;
    }
    return SL_OK;
}

void sl_core_fair_fini(sl_core_t *core)
{
    size_t it = 0;
    void *val;
    while (sl_map_next(&core->tenants, &it, NULL, &val))
        free(val);
    free(core->weights);
    core->weights = NULL;
    core->n_weights = 0;
}

sl_core_tenant_t *sl_core_tenant_get(sl_core_t *core, const char *tenant)
{
    if (!tenant)
        tenant = "";
    uint64_t key = s_tenant_key(tenant, strlen(tenant));
    if (core->tenant_last && core->tenant_last->key == key)
        return core->tenant_last;
    sl_core_tenant_t *t = sl_map_get(&core->tenants, key);
    if (!t) {
        t = malloc(sizeof(*t));
        if (!t)
            return &core->tenant_spill;
        s_tenant_init(core, t, key);
        if (sl_map_put(&core->tenants, key, t) != SL_OK) {
            free(t);
            return &core->tenant_spill;
        }
    }
    core->tenant_last = t;
    return t;
}

uint32_t sl_core_tenant_jobs(const sl_core_t *core, const char *tenant)
{
    if (!tenant)
        tenant = "";
    const sl_core_tenant_t *t = sl_map_get(&core->tenants, s_tenant_key(tenant, strlen(tenant)));
    return t ? t->jobs : 0;
}

void sl_core_tenant_attach(sl_core_t *core, sl_job_t *job)
{
    if (job->tenant_rec)
        return;
    job->tenant_rec = sl_core_tenant_get(core, job->tenant);
    job->tenant_rec->jobs++;
}

void sl_core_queue_add(sl_core_t *core, sl_job_t *job, bool front)
{
    sl_prio_t b = job->prio;
    sl_core_tenant_attach(core, job);
    sl_core_tenant_t *t = job->tenant_rec;
    if (front) {
        sl_list_push_front(&core->queue[b], &job->link);
        sl_list_push_front(&t->q[b], &job->tlink);
    } else {
        sl_list_push_back(&core->queue[b], &job->link);
        sl_list_push_back(&t->q[b], &job->tlink);
    }
    if (t->queued[b]++ == 0) {
        sl_list_push_back(&core->active[b], &t->act[b]);
        core->n_active[b]++;
        t->deficit[b] = 0;
        t->queued_cost[b] = 0;
    }
    t->queued_cost[b] += s_cost(job);
    core->qlen[b]++;
    if (job->due || job->ttft_due)
        core->queued_with_due++;
    core->queued_work_s += job->queued_work_s;
}

void sl_core_queue_del(sl_core_t *core, sl_job_t *job)
{
    sl_prio_t b = job->prio;
    sl_core_tenant_t *t = job->tenant_rec;
    sl_list_del(&job->link);
    sl_list_del(&job->tlink);
    if (--t->queued[b] == 0) {
        sl_list_del(&t->act[b]);
        core->n_active[b]--;
        t->deficit[b] = 0; /* DRR: an idle tenant keeps no credit */
        t->queued_cost[b] = 0;
    } else {
        t->queued_cost[b] -= s_cost(job);
    }
    core->qlen[b]--;
    if (job->due || job->ttft_due)
        core->queued_with_due--;
    core->queued_work_s -= job->queued_work_s;
    if (core->qlen[0] + core->qlen[1] == 0)
        core->queued_work_s = 0; /* no drift from rounding */
}

static sl_core_tenant_t *s_act_tenant(sl_list_t *pos, int b)
{
    return (sl_core_tenant_t *)((char *)pos - offsetof(sl_core_tenant_t, act) -
                                (size_t)b * sizeof(sl_list_t));
}

static sl_job_t *s_tenant_head(const sl_core_tenant_t *t, int b)
{
    return SL_CONTAINER_OF(t->q[b].next, sl_job_t, tlink);
}

/* A whole turn of band b's ring served nobody: add at once the turns in
 * which nobody would be served either, so the next turn serves someone. */
static void s_drr_skip(sl_core_t *core, int b)
{
    double turns = INFINITY;
    sl_list_t *pos;
    sl_list_for_each(pos, &core->active[b])
    {
        sl_core_tenant_t *t = s_act_tenant(pos, b);
        double need = ceil((s_cost(s_tenant_head(t, b)) - t->deficit[b]) / t->quantum);
        if (need < turns)
            turns = need;
    }
    if (!(turns > 1))
        return;
    sl_list_for_each(pos, &core->active[b])
    {
        sl_core_tenant_t *t = s_act_tenant(pos, b);
        t->deficit[b] += (turns - 1) * t->quantum;
    }
}

/* Deficit round robin over band b's ring (two tenants or more). */
static sl_job_t *s_drr_pick(sl_core_t *core, int b)
{
    uint32_t visits = 0;
    for (;;) {
        sl_core_tenant_t *t = s_act_tenant(core->active[b].next, b);
        sl_job_t *job = s_tenant_head(t, b);
        if (t->deficit[b] >= s_cost(job))
            return job;
        if (visits == core->n_active[b]) {
            s_drr_skip(core, b);
            visits = 0;
            continue;
        }
        t->deficit[b] += t->quantum;
        sl_list_del(&t->act[b]);
        sl_list_push_back(&core->active[b], &t->act[b]);
        visits++;
    }
}

sl_job_t *sl_core_queue_next(sl_core_t *core, sl_time_t now)
{
    int b;
    if (core->qlen[SL_PRIO_INTERACTIVE]) {
        b = SL_PRIO_INTERACTIVE;
        if (core->qlen[SL_PRIO_BATCH] && core->cfg.starvation_bound_ms > 0) {
            sl_job_t *old = SL_CONTAINER_OF(core->queue[SL_PRIO_BATCH].next, sl_job_t, link);
            if (now - old->submitted > SL_MS(core->cfg.starvation_bound_ms))
                return old;
        }
    } else if (core->qlen[SL_PRIO_BATCH]) {
        b = SL_PRIO_BATCH;
    } else {
        return NULL;
    }
    if (!core->cfg.tenant_fair || core->n_active[b] < 2)
        return SL_CONTAINER_OF(core->queue[b].next, sl_job_t, link);
    return s_drr_pick(core, b);
}

void sl_core_queue_charge(sl_core_t *core, const sl_job_t *job)
{
    sl_prio_t b = job->prio;
    if (b != SL_PRIO_INTERACTIVE && core->qlen[SL_PRIO_INTERACTIVE])
        core->counters[SL_CTR_PROMOTED]++;
    if (core->cfg.tenant_fair && core->n_active[b] > 1)
        job->tenant_rec->deficit[b] -= (double)job->uncached_tokens + (double)job->max_new_tokens;
}

/* The tenant of band b furthest over its weighted share (queued cost per
 * weight), and that share in *usage_p. */
static sl_core_tenant_t *s_most_over(sl_core_t *core, int b, double *usage_p)
{
    sl_core_tenant_t *best = NULL;
    double most = -1;
    sl_list_t *pos;
    sl_list_for_each(pos, &core->active[b])
    {
        sl_core_tenant_t *t = s_act_tenant(pos, b);
        double u = t->queued_cost[b] / t->weight;
        if (u > most) {
            most = u;
            best = t;
        }
    }
    *usage_p = most;
    return best;
}

sl_job_t *sl_core_shed_victim(sl_core_t *core, sl_prio_t prio, const char *tenant, double cost)
{
    for (int b = SL_PRIO_COUNT - 1; b >= (int)prio; b--) {
        if (core->n_active[b] == 0)
            continue;
        double most;
        sl_core_tenant_t *t = s_most_over(core, b, &most);
        if (b == (int)prio) {
            sl_core_tenant_t *mine = sl_core_tenant_get(core, tenant);
            double with_new = (mine->queued_cost[b] + cost) / mine->weight;
            if (t == mine || most <= with_new)
                return NULL;
        }
        return SL_CONTAINER_OF(t->q[b].prev, sl_job_t, tlink); /* its newest */
    }
    return NULL;
}

void sl_core_job_shed(sl_core_t *core, sl_job_t *job, sl_busy_reason_t reason,
                      sl_time_t retry_after, sl_time_t now)
{
    sl_core_queue_del(core, job);
    core->counters[job->prio == SL_PRIO_INTERACTIVE ? SL_CTR_SHED_INTERACTIVE
                                                    : SL_CTR_SHED_BATCH]++;
    sl_map_del(&core->by_seq, job->seq);
    sl_map_del(&core->by_id, job->id_hash);
    job->state = SL_JOB_DONE;
    sl_core_cb_enter(core);
    if (core->io->shed) {
        core->io->shed(core->io_arg, job, reason, retry_after);
    } else {
        char why[128];
        sl_job_timings_t t;
        sl_core_timings_queued(job, now, &t);
        sl_core_fmt(why, sizeof(why), "shed under overload: retry after %lld ms",
                    (long long)(retry_after / 1000000));
        core->io->result(core->io_arg, job, SL_JOB_REJECTED, &t, NULL, NULL, why);
    }
    sl_core_cb_leave(core);
    sl_core_job_free(core, job);
}
