/*
 * Measured host load (see sl_hostload.h).
 *
 * CPU: the machine's busy share, from the aggregate "cpu" line of
 * /proc/stat read at each sample; the share is the busy ticks over all
 * ticks between two readings. The host's share and not this process's
 * (/proc/self/stat) is what placement needs: an executor competes for its
 * cores with everything else on the machine, and its own use is already in
 * its engine busy fraction. Steal counts as busy (a hypervisor gave that
 * time to someone else); guest time is already inside user and nice. In a
 * container /proc/stat still shows the whole machine, not the cgroup's
 * quota: the share is the host's. The file is kept open and re-read with
 * pread from offset 0 (procfs regenerates it), one system call a sample;
 * only the first line is needed, so one small read suffices.
 *
 * GPU: NVML, opened with dlopen("libnvidia-ml.so.1") at create, so the
 * build needs no CUDA or driver headers and a machine without a GPU or
 * driver runs the same binary with the GPU values unknown. The few entry
 * points and structs used are declared here from NVML's documented ABI
 * (nvml.h: nvmlInit_v2, nvmlDeviceGetHandleByIndex_v2,
 * nvmlDeviceGetUtilizationRates, nvmlDeviceGetMemoryInfo, nvmlShutdown,
 * nvmlErrorString). Utilization is NVML's own: the share of its last
 * sample period (1/6 s to 1 s by product) in which a kernel ran. Memory is
 * the device's, all processes together. A query that fails (a GPU in MIG
 * mode answers NOT_SUPPORTED for utilization) leaves that value unknown.
 *
 * Rejected: linking libnvidia-ml at build time (the build and every host
 * would need the driver), reading the GPU through nvidia-smi (a process per
 * heartbeat), and sending 0 for what could not be measured (a host without
 * a GPU would look like an idle GPU to the scheduler).
 */
#include "executor/sl_hostload.h"
#include "common/sl_log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- NVML's ABI (nvml.h), the part used here ---------------------------- */

typedef int s_nvml_return_t;                   /* nvmlReturn_t; NVML_SUCCESS = 0 */
typedef struct s_nvml_device *s_nvml_device_t; /* nvmlDevice_t, opaque */
typedef struct s_nvml_utilization {            /* nvmlUtilization_t */
    unsigned int gpu;                          /* percent of time a kernel ran */
    unsigned int memory;                       /* percent of time memory was read or written */
} s_nvml_utilization_t;
typedef struct s_nvml_memory { /* nvmlMemory_t (v1) */
    unsigned long long total;  /* installed bytes */
    unsigned long long free;   /* unallocated bytes */
    unsigned long long used;   /* allocated bytes */
} s_nvml_memory_t;

#define S_NVML_SUCCESS 0

typedef struct s_nvml {
    void *lib;                         /* dlopen handle */
    s_nvml_return_t (*init)(void);     /* nvmlInit_v2 */
    s_nvml_return_t (*shutdown)(void); /* nvmlShutdown */
    s_nvml_return_t (*by_index)(unsigned int,
                                s_nvml_device_t *); /* nvmlDeviceGetHandleByIndex_v2 */
    s_nvml_return_t (*util)(s_nvml_device_t,
                            s_nvml_utilization_t *); /* nvmlDeviceGetUtilizationRates */
    s_nvml_return_t (*memory)(s_nvml_device_t, s_nvml_memory_t *); /* nvmlDeviceGetMemoryInfo */
    const char *(*error_string)(s_nvml_return_t);                  /* nvmlErrorString */
    s_nvml_device_t dev;                                           /* the device measured */
} s_nvml_t;

struct sl_hostload {
    int stat_fd;         /* /proc/stat, or -1: CPU unknown */
    bool has_prev;       /* prev holds a reading */
    sl_cpu_times_t prev; /* reading the next share is measured from */
    bool has_cpu;        /* cpu holds a share */
    float cpu;           /* the last share measured */
    s_nvml_t nvml;       /* lib == NULL: GPU unknown */
    bool util_failed;    /* a utilization query failed (logged once) */
    bool memory_failed;  /* a memory query failed (logged once) */
};

/* ---- CPU ---------------------------------------------------------------- */

/* The unsigned decimal at *p (spaces first); false when there is none. */
static bool s_parse_u64(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    if (s == end || *s < '0' || *s > '9')
        return false;
    uint64_t x = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        s++;
    }
    *p = s;
    *v = x;
    return true;
}

sl_status_t sl_hostload_parse_stat(const char *text, size_t len, sl_cpu_times_t *times_p)
{
    /* The aggregate line is the one named exactly "cpu"; per-CPU lines are "cpuN". */
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return SL_ERR_INVALID; /* cut short: a number may be missing digits */
        if (eol - p > 4 && !memcmp(p, "cpu ", 4)) {
            /* user nice system idle [iowait irq softirq steal [guest guest_nice]] */
            uint64_t f[8] = {0};
            const char *q = p + 4;
            int n = 0;
            while (n < 8 && s_parse_u64(&q, eol, &f[n]))
                n++;
            if (n < 4)
                return SL_ERR_INVALID;
            uint64_t idle = f[3] + f[4];
            uint64_t busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
            times_p->busy = busy;
            times_p->total = busy + idle;
            return SL_OK;
        }
        p = eol + 1;
    }
    return SL_ERR_INVALID;
}

bool sl_hostload_cpu_share(const sl_cpu_times_t *before, const sl_cpu_times_t *after,
                           float *share_p)
{
    if (after->total <= before->total || after->busy < before->busy)
        return false;
    uint64_t busy = after->busy - before->busy, total = after->total - before->total;
    double share = (double)busy / (double)total;
    *share_p = share > 1.0 ? 1.0f : (float)share;
    return true;
}

/* The current reading; false when the file cannot be read or parsed. */
static bool s_cpu_read(sl_hostload_t *hl, sl_cpu_times_t *t)
{
    char buf[1024]; /* the "cpu" line is first and at most ~220 bytes */
    ssize_t n = pread(hl->stat_fd, buf, sizeof(buf), 0);
    if (n <= 0)
        return false;
    return sl_hostload_parse_stat(buf, (size_t)n, t) == SL_OK;
}

/* ---- GPU ---------------------------------------------------------------- */

static const char *s_nvml_err(const s_nvml_t *nv, s_nvml_return_t rc)
{
    const char *s = nv->error_string ? nv->error_string(rc) : NULL;
    return s ? s : "unknown NVML error";
}

/* Load NVML and find the device; on failure logs why and leaves nv->lib NULL. */
static void s_nvml_open(s_nvml_t *nv, const char *lib, int index)
{
    memset(nv, 0, sizeof(*nv));
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        SL_INFO("GPU load unknown: cannot load %s: %s", lib, why ? why : "?");
        return;
    }
    /* dlsym returns object pointers; the copy through memcpy is how POSIX
     * says to turn one into a function pointer without a pedantic warning. */
#define S_SYM(field, name)                                                                         \
    do {                                                                                           \
        void *sym = dlsym(h, name);                                                                \
        if (!sym) {                                                                                \
            SL_INFO("GPU load unknown: %s has no %s", lib, name);                                  \
            goto err_close;                                                                        \
        }                                                                                          \
        memcpy(&nv->field, &sym, sizeof(sym));                                                     \
    } while (0)
    S_SYM(init, "nvmlInit_v2");
    S_SYM(shutdown, "nvmlShutdown");
    S_SYM(by_index, "nvmlDeviceGetHandleByIndex_v2");
    S_SYM(util, "nvmlDeviceGetUtilizationRates");
    S_SYM(memory, "nvmlDeviceGetMemoryInfo");
    S_SYM(error_string, "nvmlErrorString");
#undef S_SYM
    s_nvml_return_t rc = nv->init();
    if (rc != S_NVML_SUCCESS) {
        SL_INFO("GPU load unknown: nvmlInit_v2: %s", s_nvml_err(nv, rc));
        goto err_close;
    }
    rc = nv->by_index((unsigned int)index, &nv->dev);
    if (rc != S_NVML_SUCCESS) {
        SL_INFO("GPU load unknown: no NVML device %d: %s", index, s_nvml_err(nv, rc));
        goto err_shutdown;
    }
    nv->lib = h;
    return;

err_shutdown:
    nv->shutdown();
err_close:
    dlclose(h);
    memset(nv, 0, sizeof(*nv));
}

static void s_gpu_sample(sl_hostload_t *hl, sl_hostload_sample_t *out)
{
    s_nvml_t *nv = &hl->nvml;
    s_nvml_utilization_t u;
    s_nvml_memory_t m;
    s_nvml_return_t rc = nv->util(nv->dev, &u);
    if (rc == S_NVML_SUCCESS) {
        out->has_gpu = true;
        out->gpu = u.gpu >= 100 ? 1.0f : (float)u.gpu / 100.0f;
    } else if (!hl->util_failed) {
        hl->util_failed = true;
        SL_INFO("GPU utilization unknown: nvmlDeviceGetUtilizationRates: %s", s_nvml_err(nv, rc));
    }
    rc = nv->memory(nv->dev, &m);
    if (rc == S_NVML_SUCCESS && m.used <= m.total) {
        out->has_gpu_mem = true;
        out->gpu_mem_used = m.used;
        out->gpu_mem_total = m.total;
    } else if (!hl->memory_failed) {
        hl->memory_failed = true;
        SL_INFO("GPU memory unknown: nvmlDeviceGetMemoryInfo: %s",
                rc == S_NVML_SUCCESS ? "used above total" : s_nvml_err(nv, rc));
    }
}

/* ---- The sampler -------------------------------------------------------- */

sl_status_t sl_hostload_create(const sl_hostload_cfg_t *cfg, sl_hostload_t **hl_p)
{
    sl_hostload_t *hl = calloc(1, sizeof(*hl));
    if (!hl)
        return SL_ERR_NOMEM;
    hl->stat_fd = -1;
    if (cfg->proc_stat && cfg->proc_stat[0]) {
        hl->stat_fd = open(cfg->proc_stat, O_RDONLY | O_CLOEXEC);
        if (hl->stat_fd < 0)
            SL_INFO("CPU load unknown: cannot open %s: %m", cfg->proc_stat);
        else if (!(hl->has_prev = s_cpu_read(hl, &hl->prev)))
            SL_INFO("CPU load unknown: %s has no readable cpu line", cfg->proc_stat);
    }
    if (cfg->nvml_lib && cfg->nvml_lib[0] && cfg->gpu_index >= 0)
        s_nvml_open(&hl->nvml, cfg->nvml_lib, cfg->gpu_index);
    *hl_p = hl;
    return SL_OK;
}

void sl_hostload_sample(sl_hostload_t *hl, sl_hostload_sample_t *out)
{
    memset(out, 0, sizeof(*out));
    sl_cpu_times_t now;
    float share;
    if (hl->stat_fd < 0 || !s_cpu_read(hl, &now)) {
        hl->has_cpu = false; /* unreadable now: unknown, not the last share */
    } else if (hl->has_prev && sl_hostload_cpu_share(&hl->prev, &now, &share)) {
        hl->cpu = share;
        hl->has_cpu = true;
        hl->prev = now;
    } else if (!hl->has_prev || now.total < hl->prev.total || now.busy < hl->prev.busy) {
        /* A first reading, or counters that went back: measure from here. */
        hl->prev = now;
        hl->has_prev = true;
        hl->has_cpu = false;
    }
    /* Otherwise no tick passed since the last reading: keep measuring from
     * it and repeat the last share rather than call it unknown. */
    out->has_cpu = hl->has_cpu;
    out->cpu = hl->cpu;
    if (hl->nvml.lib)
        s_gpu_sample(hl, out);
}

void sl_hostload_destroy(sl_hostload_t **hl_p)
{
    sl_hostload_t *hl = *hl_p;
    if (!hl)
        return;
    if (hl->nvml.lib) {
        hl->nvml.shutdown();
        dlclose(hl->nvml.lib);
    }
    if (hl->stat_fd >= 0)
        close(hl->stat_fd);
    free(hl);
    *hl_p = NULL;
}
