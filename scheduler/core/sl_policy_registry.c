/*
 * The built-in policies looked up by name (see sl_policy_registry.h): the
 * lookup table and the list of names are both expanded from
 * SL_POLICY_TABLE, so they cannot disagree with each other or with the
 * help texts.
 */
#include "scheduler/core/sl_policy_registry.h"

#include <string.h>

#define S_ROW(name, ops) {name, &ops},
#define S_NAME(name, ops) name,

static const struct {
    const char *name;           /* accepted name */
    const sl_policy_ops_t *ops; /* policy */
} s_policies[] = {SL_POLICY_TABLE(S_ROW, S_ROW) SL_POLICY_ALIASES(S_ROW)};

static const char *const s_names[] = {SL_POLICY_TABLE(S_NAME, S_NAME) NULL};

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
