/*
 * The scheduler daemon: ZeroMQ I/O, timers and signals around the decision
 * core. One thread, one poll loop.
 */
#ifndef SL_SCHEDULER_H
#define SL_SCHEDULER_H

#include <sluice/status.h>

#include "common/sl_cfg.h"
#include "common/sl_daemon_cfg.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/sl_lease.h"

typedef struct sl_sched_cfg {
    sl_core_cfg_t core;                     /* decision core knobs */
    sl_daemon_cfg_t daemon;                 /* the knobs every daemon has (sl_daemon_cfg_fields) */
    char client_endpoint[SL_CFG_STR_MAX];   /* ROUTER for clients */
    char executor_endpoint[SL_CFG_STR_MAX]; /* ROUTER for executors */
    int64_t tick_ms;                        /* timer resolution */
    int64_t drain_timeout_ms;               /* longest wait for running jobs at SIGTERM */
    int hwm;                                /* ZeroMQ high-water mark per peer */
    int batch;                              /* messages read per socket per loop turn */
    int max_batch;                          /* items per batch message, sent or accepted */
    char policy_path[SL_CFG_STR_MAX];       /* placement policy plugin ("" = none) */
    char state_file[256];                   /* learned state saved on exit, read at start
                                               ("" = none) */
    char collect_dir[SL_CFG_STR_MAX];       /* executors' shipped logs and traces go here
                                               ("" = not collected) */
    sl_lease_cfg_t lease;             /* the leader lease (sl_lease_cfg_table; etcd "" = none) */
    char journal[SL_CFG_STR_MAX];     /* accepted jobs and results ("" = no journal) */
    char journal_sync[16];            /* full | normal (sl_journal_cfg_t.sync_full) */
    int journal_batch;                /* records in one journal transaction at most */
    int64_t journal_retain_ms;        /* finished jobs' results kept in the journal */
    int64_t journal_sweep_ms;         /* how often older results are deleted */
    int64_t journal_checkpoint_pages; /* WAL pages past which a commit checkpoints */
} sl_sched_cfg_t;

/* The daemon's knobs (without the core's). */
extern const sl_cfg_field_t sl_sched_cfg_fields[];

typedef struct sl_sched sl_sched_t;

/* Bind the sockets and create the core. On error nothing is left open. */
sl_status_t sl_sched_create(const sl_sched_cfg_t *cfg, sl_sched_t **sched_p);
/* Serve until sl_sched_stop() (or SIGTERM/SIGINT when installed), then
 * drain: refuse new jobs, wait for running ones up to drain_timeout_ms. */
sl_status_t sl_sched_run(sl_sched_t *sched);
/* Ask the loop to drain and exit (async-signal-safe). */
void sl_sched_stop(sl_sched_t *sched);
void sl_sched_destroy(sl_sched_t **sched_p);
/* Install SIGTERM/SIGINT handlers that call sl_sched_stop(sched). */
void sl_sched_handle_signals(sl_sched_t *sched);

#endif
