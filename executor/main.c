/*
 * sluice-executor: runs jobs for a scheduler. Knobs: the executor's own,
 * the engine's batching and the sim backend's model, in one table.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/sl_log.h"
#include "executor/sl_executor.h"
#include "executor/sl_sim_cfg.h"

int main(int argc, char **argv)
{
    sl_executor_cfg_t cfg;
    sl_executor_t *x = NULL;
    const sl_cfg_part_t parts[] = {
        {sl_executor_cfg_fields, 0},
        {sl_daemon_cfg_fields, offsetof(sl_executor_cfg_t, daemon)},
        {sl_engine_cfg_fields, offsetof(sl_executor_cfg_t, engine)},
        {sl_sim_cfg_fields, offsetof(sl_executor_cfg_t, sim)},
    };
    sl_cfg_field_t *table = sl_cfg_merge(parts, 4);
    if (!table)
        return 1;
    sl_log_set_component("executor");
    int rc = sl_cfg_main(table, &cfg, argc, argv, "sluice-executor");
    free(table);
    if (rc >= 0)
        return rc;
    sl_status_t cst = sl_executor_create(&cfg, &x);
    if (cst != SL_OK)
        return cst == SL_ERR_INVALID ? 2 : 1; /* 2: a bad value, as for a bad flag */
    sl_executor_handle_signals(x);
    sl_status_t st = sl_executor_run(x);
    sl_executor_destroy(&x);
    /* 2: the scheduler refused our configuration (the wrong endpoint), as for a bad value */
    return st == SL_OK ? 0 : st == SL_ERR_INVALID ? 2 : 1;
}
