/*
 * Backend lookup by name, and the sim model's knobs. The ref backend lives
 * in executor/ref/ and is linked in when it is built.
 */
#include "executor/sl_backend.h"
#include "executor/sl_sim_cfg.h"

#include <stdio.h>
#include <string.h>

#ifdef SLUICE_HAVE_REF
extern const sl_backend_ops_t sl_backend_ref;
#endif

/* Every backend linked into this build, in the order they are listed. */
static const sl_backend_ops_t *const s_all[] = {
    &sl_backend_sim,
    &sl_backend_null,
#ifdef SLUICE_HAVE_REF
    &sl_backend_ref,
#endif
};
#define S_NBACKENDS (sizeof(s_all) / sizeof(s_all[0]))

const sl_backend_ops_t *sl_backend_find(const char *name)
{
    for (size_t i = 0; i < S_NBACKENDS; i++)
        if (strcmp(s_all[i]->name, name) == 0)
            return s_all[i];
    return NULL;
}

const char *sl_backend_names(void)
{
    static char names[128];
    if (!names[0]) {
        size_t off = 0;
        for (size_t i = 0; i < S_NBACKENDS && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    s_all[i]->name);
    }
    return names;
}

const sl_cfg_field_t sl_sim_cfg_fields[] = {
    SL_CFG_RANGE(sl_sim_cfg_t, prefill_base_us, "sim-prefill-base-us", "1000", SL_CFG_DOUBLE, 0,
                 1e9, "sim: fixed cost of an iteration with prefill work, us"),
    SL_CFG_RANGE(sl_sim_cfg_t, prefill_us_per_token, "sim-prefill-us-per-token", "29",
                 SL_CFG_DOUBLE, 0, 1e9, "sim: prefill cost per uncached prompt token, us"),
    SL_CFG_RANGE(sl_sim_cfg_t, prefill_us_per_token_ctx, "sim-prefill-us-per-token-ctx", "0.00096",
                 SL_CFG_DOUBLE, 0, 1e9,
                 "sim: attention cost per prompt token per context token, us"),
    SL_CFG_RANGE(sl_sim_cfg_t, decode_base_us, "sim-decode-base-us", "5650", SL_CFG_DOUBLE, 0, 1e9,
                 "sim: fixed cost of a decode step (weights read once), us"),
    SL_CFG_RANGE(sl_sim_cfg_t, decode_us_per_seq, "sim-decode-us-per-seq", "20", SL_CFG_DOUBLE, 0,
                 1e9, "sim: decode cost per sequence in the batch, us"),
    SL_CFG_RANGE(sl_sim_cfg_t, decode_us_per_kv_token, "sim-decode-us-per-kv-token", "0.046",
                 SL_CFG_DOUBLE, 0, 1e9, "sim: decode cost per KV token read, us"),
    SL_CFG_RANGE(sl_sim_cfg_t, speed, "sim-speed", "1", SL_CFG_DOUBLE, 0.001, 1000,
                 "sim: speed factor (2 = twice as fast as the model above)"),
    SL_CFG_RANGE(sl_sim_cfg_t, kv_capacity_blocks, "sim-kv-blocks", "30000", SL_CFG_I64, 1,
                 1000000000,
                 "sim: KV capacity in blocks of --kv-block-tokens (30000 x 16 = 480k tokens)"),
    SL_CFG_RANGE(sl_sim_cfg_t, max_context, "sim-max-context", "262144", SL_CFG_I64, 0,
                 4294967295LL,
                 "sim: prompt + new tokens one job may hold (declared in the "
                 "hello; 0 = unlimited)"),
    SL_CFG_RANGE(sl_sim_cfg_t, fail_share, "sim-fail-share", "0", SL_CFG_DOUBLE, 0, 1,
                 "sim: fault injection: this share of jobs fails at once at admission, evenly "
                 "spread (1 = every job; tests of failure handling)"),
    SL_CFG_END,
};

double sl_sim_cfg_unloaded_ttft(const sl_sim_cfg_t *m, uint32_t prompt_tokens)
{
    double n = prompt_tokens;
    double us =
        m->prefill_base_us + m->prefill_us_per_token * n + m->prefill_us_per_token_ctx * n * n / 2;
    return us / 1e6 / (m->speed > 0 ? m->speed : 1.0);
}
