/*
 * session: sticky placement by session key with a load guard (the
 * prefix-affinity-with-load-guard policy of ARCHITECTURE.md, as
 * consistent-hash session affinity is done by common gateways). A job goes
 * where its session went last, unless that executor is not a candidate or
 * is loaded beyond guard: its outstanding jobs exceed twice the least loaded
 * candidate's plus 4. Then the least loaded candidate takes it and becomes
 * the session's home. A job without a session key uses its first block hash
 * as the key, so turns of one conversation (same leading prefix) stick.
 * The table is bounded (S_MAX_SESSIONS; when full it is cleared, which
 * only costs affinity).
 */
#include "scheduler/core/sl_policy.h"
#include "common/sl_hash.h"
#include "common/sl_map.h"

#include <stdlib.h>
#include <string.h>

#define S_MAX_SESSIONS 1000000

typedef struct s_session {
    sl_map_t homes; /* session hash -> executor index + 1 (as a pointer value) */
    uint64_t next;  /* tie-break rotation */
} s_session_t;

static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    s_session_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ERR_NOMEM;
    sl_map_init(&st->homes);
    *state_p = st;
    return SL_OK;
}

static void s_fini(void *state)
{
    s_session_t *st = state;
    sl_map_fini(&st->homes);
    free(st);
}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    s_session_t *st = state;
    uint64_t key = 0;
    if (job->session_key[0])
        key = sl_hash_bytes(job->session_key, strlen(job->session_key), 11);
    else if (job->n_block_hashes)
        key = sl_hash_mix64(job->block_hashes[0] + 0x5e55);
    size_t least = 0, start = (size_t)(st->next++ % n);
    uint32_t lmin = UINT32_MAX;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (cands[i]->inflight < lmin) {
            lmin = cands[i]->inflight;
            least = i;
        }
    }
    if (!key)
        return least;
    uintptr_t home = (uintptr_t)sl_map_get(&st->homes, key);
    if (home) {
        for (size_t i = 0; i < n; i++)
            if (cands[i]->index + 1u == home && cands[i]->inflight <= 2 * lmin + 4)
                return i;
    }
    if (sl_map_count(&st->homes) >= S_MAX_SESSIONS) {
        sl_map_fini(&st->homes);
        sl_map_init(&st->homes);
    }
    sl_map_put(&st->homes, key, (void *)(uintptr_t)(cands[least]->index + 1u));
    return least;
}

const sl_policy_ops_t sl_policy_session = {
    .name = "session",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
