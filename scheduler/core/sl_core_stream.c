/*
 * Streamed output across executor losses: the delivered frontier.
 *
 * A streaming job's client gets its output as TokenChunks {offset, tokens}.
 * When the executor running it is lost the job is dispatched again; without
 * care the new run would stream from offset 0 and the client would see its
 * first tokens twice. So the core keeps, per job, the tokens it already
 * forwarded to the client (job->delivered, the frontier being their count)
 * for the job's whole life, across attempts. A dispatch carries them
 * (job->resume_tokens of them, Dispatch.resume_tokens): the new executor
 * computes them as prompt tokens after the prompt and generates only the
 * rest, its chunks' offsets going on from the frontier.
 *
 * Every chunk is checked against the frontier before it is forwarded:
 * from an executor that does not run the job (a lost incarnation) it is
 * stale; wholly before the frontier it is a duplicate or a late chunk of an
 * earlier attempt; overlapping it, only the tokens past it go on; starting
 * past it, it would leave a hole in what the client got, so it is never
 * forwarded (the Result carries the whole output anyway). So the client
 * receives each offset exactly once and in order, whatever the executors
 * send.
 *
 * Memory: the tokens are kept only for jobs that stream (the array is made
 * at the first chunk), grow by doubling up to max_new_tokens (the wire
 * bounds that by 65,536: 256 KiB) and are freed with the job; the bytes
 * held are the gauge stream_bytes_held. Keeping only the count (and
 * restarting the new run from the prompt, skipping the tokens already
 * sent) was rejected: with any sampling but greedy, or a backend whose
 * tokens depend on its batch, the restarted run's first tokens need not be
 * those the client has, and the output would not be one sequence.
 */
#include "scheduler/core/sl_core_int.h"

#include <stdlib.h>
#include <string.h>

/* Room for at least need tokens in job->delivered (need <= max_new_tokens). */
static sl_status_t s_reserve(sl_core_t *core, sl_job_t *job, uint32_t need)
{
    if (need <= job->cap_delivered)
        return SL_OK;
    uint32_t cap = job->cap_delivered ? job->cap_delivered : 64;
    while (cap < need)
        cap *= 2;
    if (cap > job->max_new_tokens)
        cap = job->max_new_tokens;
    uint32_t *d = realloc(job->delivered, (size_t)cap * sizeof(*d));
    if (!d)
        return SL_ERR_NOMEM;
    core->counters[SL_CTR_STREAM_BYTES] += (uint64_t)(cap - job->cap_delivered) * sizeof(*d);
    job->delivered = d;
    job->cap_delivered = cap;
    return SL_OK;
}

sl_status_t sl_core_job_chunk(sl_core_t *core, uint32_t exec_index, uint64_t seq, uint32_t offset,
                              const uint32_t *tokens, uint32_t n, sl_time_t now, uint32_t *skip_p,
                              uint32_t *fwd_p)
{
    if (sl_core_reentered(core, "sl_core_job_chunk"))
        return SL_ERR_REENTERED;
    sl_job_t *job = sl_map_get(&core->by_seq, seq);
    /* the destination of a move streams on where its source stopped */
    bool mover =
        job && job->kv_mode == SL_KV_MIGRATE && job->kv_peer && job->kv_peer->index == exec_index;
    if (!job || job->state != SL_JOB_RUNNING || !job->exec ||
        (job->exec->index != exec_index && !mover)) {
        core->counters[SL_CTR_CHUNKS_STALE]++;
        return SL_ERR_NOT_FOUND;
    }
    uint64_t end = (uint64_t)offset + n;
    if (offset > job->n_delivered || end > job->max_new_tokens) {
        core->counters[SL_CTR_CHUNKS_GAP]++;
        return SL_ERR_INVALID;
    }
    if (end <= job->n_delivered) {
        core->counters[SL_CTR_CHUNKS_STALE]++;
        return SL_ERR_EXISTS;
    }
    uint32_t skip = job->n_delivered - offset;
    uint32_t fwd = n - skip;
    if (s_reserve(core, job, (uint32_t)end) != SL_OK)
        return SL_ERR_NOMEM;
    memcpy(job->delivered + job->n_delivered, tokens + skip, (size_t)fwd * sizeof(*tokens));
    job->n_delivered = (uint32_t)end;
    if (!job->first_delivered)
        job->first_delivered = now;
    *skip_p = skip;
    *fwd_p = fwd;
    return SL_OK;
}

void sl_core_stream_free(sl_core_t *core, sl_job_t *job)
{
    core->counters[SL_CTR_STREAM_BYTES] -= (uint64_t)job->cap_delivered * sizeof(*job->delivered);
    free(job->delivered);
    job->delivered = NULL;
    job->n_delivered = job->cap_delivered = 0;
}
