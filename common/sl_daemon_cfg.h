/*
 * The knobs every daemon has (sluice-scheduler, sluice-executor): the
 * largest message it accepts, the IP type-of-service byte of its control
 * sockets, its log level and how the allocator keeps large blocks. One struct, one table and one
 * function that applies them, so the daemons embed the same rows (sl_cfg_merge at offsetof(...,
 * daemon)) instead of each spelling them out.
 */
#ifndef SL_DAEMON_CFG_H
#define SL_DAEMON_CFG_H

#include <sluice/status.h>

#include <stdint.h>

#include "common/sl_cfg.h"

typedef struct sl_daemon_cfg {
    int64_t max_msg_bytes; /* largest message accepted, bytes */
    int tos;               /* IP type-of-service byte of control sockets (0 = leave alone) */
    char log_level[16];    /* error, warn, info, debug or trace */
    int heap_keep_mib;     /* blocks up to this size come from the heap and are reused */
} sl_daemon_cfg_t;

extern const sl_cfg_field_t sl_daemon_cfg_fields[];

/* Apply what applies process-wide (the log level, the allocator's
 * thresholds). SL_ERR_INVALID, with the reason logged, for a value the
 * table's ranges could not refuse (an unknown log level). */
sl_status_t sl_daemon_cfg_apply(const sl_daemon_cfg_t *cfg);

#endif
