/*
 * A stand-in for libnvidia-ml.so.1 for test_hostload: the six entry points
 * sl_hostload uses, with NVML's ABI and return codes (0 success, 1
 * uninitialized, 2 invalid argument, 3 not supported). One device, index
 * 0: 37% busy, 1 GiB of 80 GiB used. With SL_FAKE_NVML_FAIL set, the
 * utilization query answers "not supported", as a GPU in MIG mode does.
 */
#include <stdlib.h>

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} s_util_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} s_mem_t;

static int s_inited;

int nvmlInit_v2(void);
int nvmlShutdown(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device);
int nvmlDeviceGetUtilizationRates(void *device, s_util_t *util);
int nvmlDeviceGetMemoryInfo(void *device, s_mem_t *mem);
const char *nvmlErrorString(int rc);

int nvmlInit_v2(void)
{
    s_inited++;
    return 0;
}

int nvmlShutdown(void)
{
    if (!s_inited)
        return 1;
    s_inited--;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device)
{
    if (!s_inited)
        return 1;
    if (index != 0 || !device)
        return 2;
    *device = &s_inited;
    return 0;
}

int nvmlDeviceGetUtilizationRates(void *device, s_util_t *util)
{
    if (!s_inited || device != &s_inited)
        return 2;
    if (getenv("SL_FAKE_NVML_FAIL"))
        return 3;
    util->gpu = 37;
    util->memory = 5;
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *device, s_mem_t *mem)
{
    if (!s_inited || device != &s_inited)
        return 2;
    mem->total = 80ull << 30;
    mem->used = 1ull << 30;
    mem->free = mem->total - mem->used;
    return 0;
}

const char *nvmlErrorString(int rc)
{
    switch (rc) {
    case 0:
        return "Success";
    case 1:
        return "Uninitialized";
    case 2:
        return "Invalid Argument";
    case 3:
        return "Not Supported";
    default:
        return "Unknown Error";
    }
}
