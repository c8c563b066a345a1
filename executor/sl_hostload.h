/*
 * Measured host load for heartbeats: the machine's CPU busy share from
 * /proc/stat and, where NVML can be loaded at run time, one GPU's
 * utilization and memory. A value that cannot be measured is reported as
 * unknown (its has_ flag false), never as a number.
 */
#ifndef SL_HOSTLOAD_H
#define SL_HOSTLOAD_H

#include "common/sl_types.h"
#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The aggregate "cpu" line of /proc/stat, in clock ticks since boot. */
typedef struct sl_cpu_times {
    uint64_t busy;  /* everything but idle and iowait (steal counts: the CPU was not ours) */
    uint64_t total; /* busy + idle + iowait */
} sl_cpu_times_t;

/*
 * Parse the aggregate "cpu " line of /proc/stat text (len bytes, need not
 * be NUL-terminated). SL_OK fills *times_p; SL_ERR_INVALID when the line is
 * missing, cut short or has fewer than the four fields every kernel writes
 * (user nice system idle), and *times_p is untouched.
 */
sl_status_t sl_hostload_parse_stat(const char *text, size_t len, sl_cpu_times_t *times_p);

/*
 * The busy share of the CPUs between two readings, in [0, 1]. Returns false
 * (unknown, *share_p untouched) when no tick passed or a counter went back.
 */
bool sl_hostload_cpu_share(const sl_cpu_times_t *before, const sl_cpu_times_t *after,
                           float *share_p);

typedef struct sl_hostload_cfg {
    const char *proc_stat; /* file read for CPU times ("/proc/stat"); NULL or "" = CPU unknown */
    const char
        *nvml_lib; /* NVML library dlopen()ed ("libnvidia-ml.so.1"); NULL or "" = GPU unknown */
    int gpu_index; /* NVML device index measured; < 0 = GPU unknown */
} sl_hostload_cfg_t;

/* One measurement (the neutral struct of common/sl_types.h, which the
 * engine's load report reads without depending on the sampler). */
typedef sl_host_sample_t sl_hostload_sample_t;

typedef struct sl_hostload sl_hostload_t;

/*
 * Open the sources cfg names and take a first CPU reading (the first sample
 * measures from here). A source that cannot be opened is not an error: its
 * values stay unknown and the cause is logged once at info level. On
 * success *hl_p owns the sampler; SL_ERR_NOMEM leaves it untouched. The
 * sampler is used by one thread at a time.
 */
sl_status_t sl_hostload_create(const sl_hostload_cfg_t *cfg, sl_hostload_t **hl_p);

/* Measure now. CPU: since the previous sample that saw a tick pass (with
 * none since, the previous share again). */
void sl_hostload_sample(sl_hostload_t *hl, sl_hostload_sample_t *out);

/* Close the sources and free the sampler; NULL-safe; sets *hl_p = NULL. */
void sl_hostload_destroy(sl_hostload_t **hl_p);

#endif
