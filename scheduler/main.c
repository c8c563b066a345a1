/*
 * sluice-scheduler: the central scheduler. Knobs come from one table
 * (flags, SLUICE_* variables, --help); see sl_scheduler.c for the daemon.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/sl_log.h"
#include "common/sl_signal.h"
#include "scheduler/sl_scheduler.h"

/* A SIGTERM or SIGINT while the scheduler starts (reading its state,
 * binding, starting ZAP): noted here and acted on once it is up, as a stop
 * (drain, save the state, exit 0). Without it the default action killed a
 * scheduler stopped in those first moments (exit 143) before it saved
 * anything. */
static volatile sig_atomic_t s_early_stop;

int main(int argc, char **argv)
{
    sl_sched_cfg_t cfg;
    sl_sched_t *sched = NULL;
    const sl_cfg_part_t parts[] = {
        {sl_sched_cfg_fields, 0},
        {sl_daemon_cfg_fields, offsetof(sl_sched_cfg_t, daemon)},
        {sl_core_cfg_fields, offsetof(sl_sched_cfg_t, core)},
        {sl_lease_cfg_table, offsetof(sl_sched_cfg_t, lease)},
    };
    sl_cfg_field_t *table = sl_cfg_merge(parts, 4);
    if (!table)
        return 1;
    sl_log_set_component("scheduler");
    int rc = sl_cfg_main(table, &cfg, argc, argv, "sluice-scheduler");
    free(table);
    if (rc >= 0)
        return rc;
    sl_signal_stop_flag(&s_early_stop);
    sl_status_t cst = sl_sched_create(&cfg, &sched);
    if (cst != SL_OK)
        /* 2: a bad value, as for a bad flag; 0: a standby stopped by a signal */
        return cst == SL_ERR_INVALID ? 2 : cst == SL_ERR_CANCELED ? 0 : 1;
    sl_sched_handle_signals(sched);
    if (s_early_stop)
        sl_sched_stop(sched);
    sl_status_t st = sl_sched_run(sched);
    sl_sched_destroy(&sched);
    /* 3: the leader lease was lost; start again as a standby */
    return st == SL_OK ? 0 : st == SL_ERR_SHUTDOWN ? 3 : 1;
}
