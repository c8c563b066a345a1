/*
 * A placement policy from a shared library (<sluice/policy.h>), loaded by
 * the scheduler daemon for --policy-path and given to the core as its
 * policy (sl_core_cfg_t.policy_ops and policy_arg).
 */
#ifndef SL_POLICY_PLUGIN_H
#define SL_POLICY_PLUGIN_H

#include <sluice/status.h>

#include <stddef.h>

#include "scheduler/core/sl_policy.h"

typedef struct sl_policy_plugin_lib sl_policy_plugin_lib_t;

/* The core's policy table of every plugin; its init's params->arg is the
 * library opened by sl_policy_plugin_open. */
extern const sl_policy_ops_t sl_policy_plugin_ops;

/* Open the library at path and check its table. SL_ERR_INVALID with a
 * reason in err when it cannot be loaded, exports no sl_policy_plugin_v1,
 * or was built for another SL_POLICY_PLUGIN_ABI. */
sl_status_t sl_policy_plugin_open(const char *path, sl_policy_plugin_lib_t **lib_p, char *err,
                                  size_t err_len);

/* The plugin's own name (its table's). */
const char *sl_policy_plugin_name(const sl_policy_plugin_lib_t *lib);

/* Close the library; after the core that used it is destroyed. NULL-safe. */
void sl_policy_plugin_close(sl_policy_plugin_lib_t **lib_p);

#endif
