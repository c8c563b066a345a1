/*
 * The table of built-in policies, looked up by name. Aliases let the
 * documented long names and the short ones both work.
 */
#include "scheduler/core/sl_policy.h"

#include <string.h>

static const struct {
    const char *name;            /* accepted name */
    const sl_policy_ops_t *ops;  /* policy */
} s_policies[] = {
    {"round-robin", &sl_policy_round_robin},
    {"rr", &sl_policy_round_robin},
    {"random", &sl_policy_random},
    {"least-outstanding", &sl_policy_least_outstanding},
    {"least-conn", &sl_policy_least_outstanding},
    {"p2c", &sl_policy_p2c},
    {"power-of-two", &sl_policy_p2c},
    {"learned", &sl_policy_learned},
    {"kv-cost", &sl_policy_kv_cost},
    {"dynamo", &sl_policy_kv_cost},
    {"scorer", &sl_policy_scorer},
    {"epp", &sl_policy_scorer},
    {"cache-switch", &sl_policy_cache_switch},
    {"sglang", &sl_policy_cache_switch},
    {"weighted", &sl_policy_weighted},
    {"session", &sl_policy_session},
};

static const char *const s_names[] = {"round-robin", "random",   "least-outstanding", "p2c",
                                     "learned",     "kv-cost",  "scorer",
                                     "cache-switch", "weighted", "session", NULL};

const sl_policy_ops_t *sl_policy_find(const char *name)
{
    for (size_t i = 0; i < sizeof(s_policies) / sizeof(s_policies[0]); i++)
        if (strcmp(s_policies[i].name, name) == 0)
            return s_policies[i].ops;
    return NULL;
}

const char *const *sl_policy_names(void)
{
    return s_names;
}
