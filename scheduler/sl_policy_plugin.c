/*
 * Placement policies loaded from shared libraries (--policy-path).
 *
 * The idea. A plugin sees none of the core's memory: for each placement
 * the adapter here copies the job and every candidate into the plain
 * records of <sluice/policy.h> (name, load, cached prefix blocks, the
 * learned model's predictions for the job there) and passes the copies;
 * the plugin returns an index. So the interface is a header of records and
 * one table, versioned by SL_POLICY_PLUGIN_ABI, and the core's structures
 * can change without breaking a plugin built against an older release.
 * What the plugin returns is checked by the core: an index out of range is
 * counted (policy_invalid_choices) and the built-in policy named by
 * --policy places that job (sl_core_place.c).
 *
 * Cost: one prediction per candidate per placement, which the learned
 * policy makes anyway; the records reuse one array grown to the largest
 * candidate list.
 *
 * Alternatives rejected: exporting the core's view (sl_core_view.h) as the
 * plugin ABI (every field of sl_job and sl_exec would become a promise);
 * callbacks into the scheduler for each query (the plugin would link
 * against the executable's symbols, and a query per candidate costs more
 * than a copy).
 */
#include "scheduler/sl_policy_plugin.h"

#include <sluice/policy.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_policy_plugin_lib {
    void *handle;                 /* dlopen */
    const sl_policy_plugin_t *pt; /* its table */
};

typedef struct s_state {
    sl_policy_plugin_lib_t *lib;
    void *pstate;                  /* the plugin's state */
    sl_core_t *core;               /* for predictions and prefix hits */
    sl_policy_plugin_exec_t *recs; /* candidate records, reused */
    size_t cap;                    /* entries allocated */
} s_state_t;

sl_status_t sl_policy_plugin_open(const char *path, sl_policy_plugin_lib_t **lib_p, char *err,
                                  size_t err_len)
{
    *lib_p = NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, err_len, "cannot load policy plugin %s: %s", path, dlerror());
        return SL_ERR_INVALID;
    }
    const sl_policy_plugin_t *(*entry)(void) = NULL;
    *(void **)&entry = dlsym(h, "sl_policy_plugin_v1");
    const sl_policy_plugin_t *pt = entry ? entry() : NULL;
    const char *why = !entry                                 ? "exports no sl_policy_plugin_v1"
                      : !pt                                  ? "returned no table"
                      : pt->abi != SL_POLICY_PLUGIN_ABI      ? "was built for another plugin ABI"
                      : !pt->name || !pt->init || !pt->place ? "has no name, init or place"
                                                             : NULL;
    if (why) {
        snprintf(err, err_len, "policy plugin %s %s (this scheduler: ABI %d, the plugin: %d)", path,
                 why, SL_POLICY_PLUGIN_ABI, pt ? (int)pt->abi : -1);
        dlclose(h);
        return SL_ERR_INVALID;
    }
    sl_policy_plugin_lib_t *lib = calloc(1, sizeof(*lib));
    if (!lib) {
        dlclose(h);
        snprintf(err, err_len, "out of memory");
        return SL_ERR_NOMEM;
    }
    lib->handle = h;
    lib->pt = pt;
    *lib_p = lib;
    return SL_OK;
}

const char *sl_policy_plugin_name(const sl_policy_plugin_lib_t *lib)
{
    return lib->pt->name;
}

void sl_policy_plugin_close(sl_policy_plugin_lib_t **lib_p)
{
    sl_policy_plugin_lib_t *lib = *lib_p;
    if (!lib)
        return;
    dlclose(lib->handle);
    free(lib);
    *lib_p = NULL;
}

static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    sl_policy_plugin_lib_t *lib = params->arg;
    if (!lib)
        return SL_ERR_INVALID;
    s_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ERR_NOMEM;
    s->lib = lib;
    s->core = params->core;
    if (lib->pt->init(params->seed, &s->pstate) != 0) {
        free(s);
        return SL_ERR_INVALID;
    }
    *state_p = s;
    return SL_OK;
}

static void s_job(const sl_job_t *job, sl_time_t now, sl_policy_plugin_job_t *out)
{
    double left = 0;
    if (job->ttft_due)
        left = job->ttft_due > now ? (double)(job->ttft_due - now) / 1e9 : 1e-9;
    *out = (sl_policy_plugin_job_t){.id = job->id,
                                    .tenant = job->tenant,
                                    .model = job->model,
                                    .priority = (int)job->prio,
                                    .prompt_tokens = job->prompt_tokens,
                                    .max_new_tokens = job->max_new_tokens,
                                    .ttft_left_s = left};
}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    s_state_t *s = state;
    if (n > s->cap) {
        sl_policy_plugin_exec_t *r = realloc(s->recs, n * sizeof(*r));
        if (!r)
            return n; /* out of range: the core's fallback places it */
        s->recs = r;
        s->cap = n;
    }
    const uint32_t *hits = sl_core_place_hit_blocks(s->core);
    for (size_t i = 0; i < n; i++) {
        const sl_exec_t *e = cands[i];
        sl_lm_pred_t pred;
        sl_core_predict(s->core, job, e, now, &pred);
        s->recs[i] = (sl_policy_plugin_exec_t){.name = e->name,
                                               .inflight = e->inflight,
                                               .credits = e->credits,
                                               .queued_tokens = e->inflight_tokens,
                                               .cached_blocks = hits ? hits[e->index] : 0,
                                               .speed = e->speed,
                                               .prediction_valid = pred.valid,
                                               .predicted_ttft_s = pred.ttft_s,
                                               .predicted_tpot_s = pred.tpot_s};
    }
    sl_policy_plugin_job_t pj;
    s_job(job, now, &pj);
    size_t pick = s->lib->pt->place(s->pstate, &pj, s->recs, n);
    return pick < n ? pick : n; /* out of range (never SL_POLICY_WAIT): the fallback places it */
}

static void s_observe(void *state, const sl_job_t *job, const sl_exec_t *exec,
                      const sl_job_result_t *res, sl_time_t now)
{
    s_state_t *s = state;
    if (!s->lib->pt->observe)
        return;
    sl_policy_plugin_job_t pj;
    s_job(job, now, &pj);
    sl_policy_plugin_result_t r = {.executor = exec->name,
                                   .ok = res->status == SL_JOB_OK,
                                   .output_tokens = res->output_tokens,
                                   .ttft_s = (double)res->exec_ttft / 1e9,
                                   .e2e_s = (double)res->exec_end / 1e9};
    s->lib->pt->observe(s->pstate, &pj, &r);
}

static void s_fini(void *state)
{
    s_state_t *s = state;
    if (!s)
        return;
    if (s->lib->pt->fini)
        s->lib->pt->fini(s->pstate);
    free(s->recs);
    free(s);
}

const sl_policy_ops_t sl_policy_plugin_ops = {.name = "plugin",
                                              .api_version = SL_POLICY_API_VERSION,
                                              .init = s_init,
                                              .place = s_place,
                                              .observe = s_observe,
                                              .fini = s_fini};
