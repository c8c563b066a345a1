/*
 * The knobs shared by the daemons (sl_daemon_cfg.h). The table's rows are
 * the only definition of --max-msg-bytes, --tos and --log-level; each
 * daemon merges them into its own table at the offset of its `daemon`
 * member, and calls sl_daemon_cfg_apply once its configuration is read.
 */
#include "common/sl_daemon_cfg.h"

#include <stddef.h>

#include "common/sl_log.h"

const sl_cfg_field_t sl_daemon_cfg_fields[] = {
    SL_CFG_RANGE(sl_daemon_cfg_t, max_msg_bytes, "max-msg-bytes", "8388608", SL_CFG_I64, 1024,
                 1073741824, "largest message accepted, in bytes"),
    SL_CFG_RANGE(sl_daemon_cfg_t, tos, "tos", "0", SL_CFG_INT, 0, 255,
                 "IP type-of-service byte (DSCP << 2) for control traffic (0: leave alone)"),
    SL_CFG_FIELD(sl_daemon_cfg_t, log_level, "log-level", "info", SL_CFG_STR,
                 "error, warn, info, debug or trace"),
    SL_CFG_END,
};

sl_status_t sl_daemon_cfg_apply(const sl_daemon_cfg_t *cfg)
{
    int level = sl_log_level_parse(cfg->log_level);
    if (level < 0) {
        SL_ERROR("unknown log level '%s' (error, warn, info, debug or trace)", cfg->log_level);
        return SL_ERR_INVALID;
    }
    sl_log_set_level((sl_log_level_t)level);
    return SL_OK;
}
