/*
 * The knobs every daemon has (sluice-scheduler, sluice-executor): the
 * largest message it accepts, the IP type-of-service byte of its control
 * sockets, its log level, how the allocator keeps large blocks and its keys. One struct, one table
 * and one function that applies them, so the daemons embed the same rows (sl_cfg_merge at
 * offsetof(..., daemon)) instead of each spelling them out.
 */
#ifndef SL_DAEMON_CFG_H
#define SL_DAEMON_CFG_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stdint.h>

#include "common/sl_cfg.h"

typedef struct sl_daemon_cfg {
    int64_t max_msg_bytes;        /* largest message accepted, bytes */
    int tos;                      /* IP type-of-service byte of control sockets (0 = leave alone) */
    char log_level[16];           /* error, warn, info, debug or trace */
    int heap_keep_mib;            /* blocks up to this size come from the heap and are reused */
    char key_dir[SL_CFG_STR_MAX]; /* CURVE keys and allow-lists (common/sl_auth.h); "" = none */
    char key_name[64];            /* own pair NAME.key in key_dir ("" = the default one) */
    bool insecure;                /* plain text, no authentication (refused without it or keys) */
} sl_daemon_cfg_t;

extern const sl_cfg_field_t sl_daemon_cfg_fields[];

/* Apply what applies process-wide (the log level, the allocator's
 * thresholds). SL_ERR_INVALID, with the reason logged, for a value the
 * table's ranges could not refuse (an unknown log level). */
sl_status_t sl_daemon_cfg_apply(const sl_daemon_cfg_t *cfg);

/* Have the C library serve blocks up to mib MiB from the heap and keep up
 * to 4 x mib MiB of freed memory for reuse (mib 1..32; 0 leaves its
 * defaults). SL_ERR_INVALID for another value or when it refuses. What
 * --heap-keep-mib applies; a benchmark applies it to its own process so
 * that a baseline is measured under the same allocator as the daemons. */
sl_status_t sl_heap_keep(int mib);

#endif
