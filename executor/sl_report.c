/*
 * The executor's reports (see sl_report.h).
 *
 * An engine job's outcome used to be translated twice, by the executor
 * daemon into its Result and by the simulator into the core's result, and
 * the two had drifted apart (a canceled job was a failure in one, the host's
 * CPU a made-up constant). One function per report, in the engine's library
 * that both link, leaves nothing to drift: the daemon encodes what these
 * return and the simulator hands the same structs to the core. They only
 * copy and subtract; encoding (microseconds, field numbers) stays in proto/.
 */
#include "executor/sl_report.h"

#include <string.h>

/* The engine's endings are a subset of the job statuses. */
_Static_assert((int)SL_ENGINE_OK == (int)SL_JOB_OK, "engine OK is the job's OK");
_Static_assert((int)SL_ENGINE_FAILED == (int)SL_JOB_FAILED, "engine FAILED is the job's FAILED");
_Static_assert((int)SL_ENGINE_CANCELED == (int)SL_JOB_CANCELED,
               "engine CANCELED is the job's CANCELED");

static sl_job_status_t s_status(sl_engine_done_t how)
{
    switch (how) {
    case SL_ENGINE_OK:
        return SL_JOB_OK;
    case SL_ENGINE_CANCELED:
        return SL_JOB_CANCELED;
    case SL_ENGINE_FAILED:
    case SL_ENGINE_MOVED: /* never reported: the peer that took it reports it */
        break;
    }
    return SL_JOB_FAILED;
}

/* A duration at the wire's resolution (whole microseconds), so that the
 * report the simulator hands to the core is the one the scheduler decodes
 * from an executor's completion, to the nanosecond. */
static sl_time_t s_wire_time(sl_time_t d)
{
    return d - d % SL_NS_PER_US;
}

void sl_engine_job_report(const sl_engine_job_t *job, sl_engine_done_t how, const char *error,
                          sl_result_report_t *out)
{
    memset(out, 0, sizeof(*out));
    out->res.status = s_status(how);
    out->res.output_tokens = job->seq.n_out;
    out->res.cached_tokens = job->seq.cached_tokens;
    out->res.exec_ttft = job->first_token ? s_wire_time(job->first_token - job->arrived) : 0;
    out->res.has_exec_queue = job->has_started;
    out->res.exec_queue = job->has_started ? s_wire_time(job->started - job->arrived) : 0;
    out->res.exec_end = s_wire_time(job->finished - job->arrived);
    out->prompt_tokens = job->seq.prompt_len;
    out->tokens = job->seq.out;
    out->n_tokens = job->seq.n_out;
    out->error = error ? error : "";
}

void sl_engine_load_report(const sl_engine_load_t *engine, const sl_host_sample_t *host,
                           sl_exec_load_t *out)
{
    memset(out, 0, sizeof(*out));
    out->running_jobs = engine->running;
    out->queued_jobs = engine->waiting;
    out->queued_tokens = engine->waiting_tokens;
    out->kv_blocks_used = engine->kv_used;
    out->kv_blocks_free = engine->kv_free;
    out->step_time_us = engine->step_us;
    out->busy = engine->busy;
    out->kv = engine->kv;
    out->has_step_cost = engine->has_step_cost;
    memcpy(out->step_cost, engine->step_cost, sizeof(out->step_cost));
    out->has_step_clock = true;
    out->step_left_us = engine->step_left_us;
    out->decode_seqs = engine->decode_seqs;
    out->decode_ctx = engine->decode_ctx;
    out->prompt_tokens = engine->prompt_tokens;
    out->prompt_pairs = engine->prompt_pairs;
    if (!host)
        return;
    out->has_cpu_util = host->has_cpu;
    out->cpu_util = host->has_cpu ? host->cpu : 0.0f;
    out->has_gpu_util = host->has_gpu;
    out->gpu_util = host->has_gpu ? host->gpu : 0.0f;
    out->has_gpu_mem = host->has_gpu_mem;
    out->gpu_mem_used = host->has_gpu_mem ? host->gpu_mem_used : 0;
    out->gpu_mem_total = host->has_gpu_mem ? host->gpu_mem_total : 0;
}
