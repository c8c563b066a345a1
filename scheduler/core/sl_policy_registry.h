/*
 * The built-in placement policies: one table of names and ops, from which
 * the lookup, the list of names, the --policy help text and the
 * simulator's default comparison all derive. A new policy is one row here.
 */
#ifndef SL_POLICY_REGISTRY_H
#define SL_POLICY_REGISTRY_H

#include "scheduler/core/sl_policy.h"

/*
 * The policies in the order they are listed and compared (the learned one
 * first, then the baselines): first(name, ops) for the first row, row(name,
 * ops) for every other one, so a list can be joined without a trailing
 * separator.
 */
/* clang-format off */
#define SL_POLICY_TABLE(first, row)                                                                \
    first("learned", sl_policy_learned)                                                            \
    row("kv-cost", sl_policy_kv_cost)                                                              \
    row("scorer", sl_policy_scorer)                                                                \
    row("cache-switch", sl_policy_cache_switch)                                                    \
    row("weighted", sl_policy_weighted)                                                            \
    row("session", sl_policy_session)                                                              \
    row("round-robin", sl_policy_round_robin)                                                      \
    row("random", sl_policy_random)                                                                \
    row("least-outstanding", sl_policy_least_outstanding)                                          \
    row("p2c", sl_policy_p2c)

/* Other names accepted for the same policies (the projects they come from
 * call them so); not listed. alias(name, ops) per row. */
#define SL_POLICY_ALIASES(alias)                                                                   \
    alias("rr", sl_policy_round_robin)                                                             \
    alias("least-conn", sl_policy_least_outstanding)                                               \
    alias("power-of-two", sl_policy_p2c)                                                           \
    alias("dynamo", sl_policy_kv_cost)                                                             \
    alias("epp", sl_policy_scorer)                                                                 \
    alias("sglang", sl_policy_cache_switch)
/* clang-format on */

#define SL_POLICY_DECLARE_(name, ops) extern const sl_policy_ops_t ops;
SL_POLICY_TABLE(SL_POLICY_DECLARE_, SL_POLICY_DECLARE_)

#define SL_POLICY_TEXT_FIRST_(name, ops) name
#define SL_POLICY_TEXT_ROW_(name, ops) ", " name
#define SL_POLICY_CSV_ROW_(name, ops) "," name
/* The names as one string literal: "learned, kv-cost, ..." (help texts). */
#define SL_POLICY_NAMES_TEXT SL_POLICY_TABLE(SL_POLICY_TEXT_FIRST_, SL_POLICY_TEXT_ROW_)
/* The names comma-separated without spaces: "learned,kv-cost,..." (a list
 * flag's default). */
#define SL_POLICY_NAMES_CSV SL_POLICY_TABLE(SL_POLICY_TEXT_FIRST_, SL_POLICY_CSV_ROW_)

/* Find a built-in policy by name or alias; NULL when unknown. */
const sl_policy_ops_t *sl_policy_find(const char *name);
/* Names of the built-in policies in table order, NULL-terminated. */
const char *const *sl_policy_names(void);

#endif
