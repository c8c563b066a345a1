/*
 * The knobs shared by the daemons (sl_daemon_cfg.h). The table's rows are
 * the only definition of --max-msg-bytes, --tos, --log-level, --heap-keep-mib,
 * --key-dir, --key-name and --insecure; each
 * daemon merges them into its own table at the offset of its `daemon`
 * member, and calls sl_daemon_cfg_apply once its configuration is read.
 */
#include "common/sl_daemon_cfg.h"

#include <malloc.h>
#include <stddef.h>

#include "common/sl_log.h"

const sl_cfg_field_t sl_daemon_cfg_fields[] = {
    SL_CFG_RANGE(sl_daemon_cfg_t, max_msg_bytes, "max-msg-bytes", "8388608", SL_CFG_I64, 1024,
                 1073741824, "largest message accepted, in bytes"),
    /* the default is the transport's control class (xport-tos-control) */
    SL_CFG_RANGE(sl_daemon_cfg_t, tos, "tos", "184", SL_CFG_INT, 0, 255,
                 "IP type-of-service byte (DSCP << 2) of control sockets (184: DSCP EF, the "
                 "control class; 0: leave alone)"),
    SL_CFG_FIELD(sl_daemon_cfg_t, log_level, "log-level", "info", SL_CFG_STR,
                 "error, warn, info, debug or trace"),
    SL_CFG_RANGE(sl_daemon_cfg_t, heap_keep_mib, "heap-keep-mib", "16", SL_CFG_INT, 0, 32,
                 "message buffers up to this many MiB come from the heap and freed ones are kept "
                 "(up to 4x) for reuse, instead of being mapped and faulted in per message "
                 "(0: the C library's defaults; 32 is glibc's largest)"),
    SL_CFG_FIELD(sl_daemon_cfg_t, key_dir, "key-dir", "", SL_CFG_STR,
                 "CURVE key directory: own pair, server.pub, clients.allow, executors.allow "
                 "(`sluice keygen`; docs/OPERATIONS.md)"),
    SL_CFG_FIELD(sl_daemon_cfg_t, key_name, "key-name", "", SL_CFG_STR,
                 "own pair NAME.key/NAME.pub in --key-dir (empty: server for the scheduler, "
                 "executor for an executor when that pair exists, else the directory's one *.key)"),
    SL_CFG_FIELD(sl_daemon_cfg_t, insecure, "insecure", "false", SL_CFG_BOOL,
                 "run without keys: plain text, anyone who reaches the ports is admitted"),
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
    if (sl_heap_keep(cfg->heap_keep_mib) != SL_OK)
        SL_WARN("mallopt refused the heap thresholds: the C library keeps its own");
    return SL_OK;
}

sl_status_t sl_heap_keep(int mib)
{
    if (mib == 0)
        return SL_OK;
    if (mib < 0 || mib > 32)
        return SL_ERR_INVALID;
    /* A long prompt's message is hundreds of KiB, over glibc's default mmap
     * threshold (128 KiB until a mapped block is freed, and freed memory is
     * trimmed back): each one would be mapped, faulted in page by page and
     * unmapped again, which costs more than moving its bytes. */
    int keep = mib << 20; /* at most 32 MiB: no overflow below */
    if (!mallopt(M_MMAP_THRESHOLD, keep) || !mallopt(M_TRIM_THRESHOLD, keep * 4))
        return SL_ERR_INVALID;
    return SL_OK;
}
