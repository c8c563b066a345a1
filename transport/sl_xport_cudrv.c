/*
 * The CUDA driver calls of the GPU lanes (the allocation range of a device
 * pointer, a dma-buf fd for a device range, a device's PCI bus id), through
 * dlopen.
 *
 * Why dlopen: libcuda.so.1 comes with the GPU driver, not with the toolkit,
 * so a program linked against it does not even start on a machine without
 * a driver, and the verbs lane is compiled into every build, CUDA or not.
 * The runtime (cudart) loads the driver itself at run time; these calls are
 * the driver API's alone (cudart has no range query and no dma-buf export),
 * so they are looked up by name in the same library, once, on first use.
 * The prototypes are written out here instead of including cuda.h, so this
 * file builds without the toolkit.
 *
 * Alternative rejected: linking CUDA::cuda_driver (needs the driver, or the
 * toolkit's stub library, at link time, and the driver at start).
 */
#include "transport/sl_xport_cudrv.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_log.h"

typedef int s_curesult_t;               /* CUresult; 0 = CUDA_SUCCESS */
typedef unsigned long long s_cuptr_t;   /* CUdeviceptr */
#define S_CU_DMA_BUF_FD 1               /* CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD */
#define S_CU_ATTR_DMA_BUF_SUPPORTED 124 /* CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED */
#define S_CU_PTR_DEVICE_ORDINAL 9       /* CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL */

/* The driver entry points, resolved once. */
static struct {
    pthread_once_t once;                                     /* guards the lookup */
    void *lib;                                               /* libcuda.so.1, or NULL */
    s_curesult_t (*init)(unsigned);                          /* cuInit */
    s_curesult_t (*range)(s_cuptr_t *, size_t *, s_cuptr_t); /* cuMemGetAddressRange_v2 */
    s_curesult_t (*handle)(void *, s_cuptr_t, size_t, int,
                           unsigned long long);       /* cuMemGetHandleForAddressRange */
    s_curesult_t (*ctx_device)(int *);                /* cuCtxGetDevice */
    s_curesult_t (*attr)(int *, int, int);            /* cuDeviceGetAttribute */
    s_curesult_t (*device)(int *, int);               /* cuDeviceGet */
    s_curesult_t (*busid)(char *, int, int);          /* cuDeviceGetPCIBusId */
    s_curesult_t (*ptr_attr)(void *, int, s_cuptr_t); /* cuPointerGetAttribute */
} s_drv = {.once = PTHREAD_ONCE_INIT};

static void s_load(void)
{
    s_drv.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!s_drv.lib) {
        SL_INFO("xport: no CUDA driver (%s)", dlerror());
        return;
    }
    *(void **)&s_drv.init = dlsym(s_drv.lib, "cuInit");
    *(void **)&s_drv.range = dlsym(s_drv.lib, "cuMemGetAddressRange_v2");
    *(void **)&s_drv.handle = dlsym(s_drv.lib, "cuMemGetHandleForAddressRange");
    *(void **)&s_drv.ctx_device = dlsym(s_drv.lib, "cuCtxGetDevice");
    *(void **)&s_drv.attr = dlsym(s_drv.lib, "cuDeviceGetAttribute");
    *(void **)&s_drv.device = dlsym(s_drv.lib, "cuDeviceGet");
    *(void **)&s_drv.busid = dlsym(s_drv.lib, "cuDeviceGetPCIBusId");
    *(void **)&s_drv.ptr_attr = dlsym(s_drv.lib, "cuPointerGetAttribute");
    if (!s_drv.init || !s_drv.range || s_drv.init(0) != 0) {
        SL_INFO("xport: the CUDA driver lacks cuInit or cuMemGetAddressRange, or cuInit failed");
        s_drv.range = NULL;
        s_drv.handle = NULL;
        s_drv.busid = NULL;
    }
}

sl_status_t sl_xport_cudrv_range(const void *p, uint64_t *base_p, uint64_t *size_p)
{
    pthread_once(&s_drv.once, s_load);
    if (!s_drv.range)
        return SL_ERR_UNSUPPORTED;
    s_cuptr_t base = 0;
    size_t size = 0;
    s_curesult_t r = s_drv.range(&base, &size, (s_cuptr_t)(uintptr_t)p);
    if (r != 0) {
        SL_WARN("xport: %p is not device memory (cuMemGetAddressRange: %d)", p, r);
        return SL_ERR_INVALID;
    }
    *base_p = base;
    *size_p = size;
    return SL_OK;
}

sl_status_t sl_xport_cudrv_dmabuf(const void *p, size_t len, int *fd_p, uint64_t *offset_p)
{
    uint64_t abase, asize;
    sl_status_t st = sl_xport_cudrv_range(p, &abase, &asize);
    if (st != SL_OK)
        return st;
    if (!s_drv.handle) {
        SL_INFO("xport: the CUDA driver cannot export dma-bufs (no cuMemGetHandleForAddressRange)");
        return SL_ERR_UNSUPPORTED;
    }
    int dev = 0, ok = 0;
    if (s_drv.ctx_device && s_drv.attr && s_drv.ctx_device(&dev) == 0 &&
        s_drv.attr(&ok, S_CU_ATTR_DMA_BUF_SUPPORTED, dev) == 0 && !ok) {
        SL_INFO("xport: GPU %d does not support dma-buf export", dev);
        return SL_ERR_UNSUPPORTED;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t start = (uint64_t)(uintptr_t)p, end = start + len;
    if (len == 0 || end < start || end > abase + asize)
        return SL_ERR_INVALID;
    uint64_t lo = start & ~(page - 1), hi = (end + page - 1) & ~(page - 1);
    if (lo < abase)
        lo = abase;
    if (hi > abase + asize)
        hi = abase + asize;
    int fd = -1;
    s_curesult_t r = s_drv.handle(&fd, (s_cuptr_t)lo, (size_t)(hi - lo), S_CU_DMA_BUF_FD, 0);
    if (r != 0 || fd < 0) {
        SL_ERROR("xport: cuMemGetHandleForAddressRange(%llu bytes) failed: %d",
                 (unsigned long long)(hi - lo), r);
        return SL_ERR_IO;
    }
    *fd_p = fd;
    *offset_p = start - lo;
    return SL_OK;
}

sl_status_t sl_xport_cudrv_busid(int ordinal, char *buf, size_t len)
{
    pthread_once(&s_drv.once, s_load);
    if (!s_drv.busid || !s_drv.device)
        return SL_ERR_UNSUPPORTED;
    char tmp[64];
    int dev = 0;
    if (ordinal < 0 || s_drv.device(&dev, ordinal) != 0 ||
        s_drv.busid(tmp, (int)sizeof(tmp), dev) != 0)
        return SL_ERR_NOT_FOUND;
    if (strlen(tmp) >= len)
        return SL_ERR_OVERFLOW;
    memcpy(buf, tmp, strlen(tmp) + 1);
    return SL_OK;
}

sl_status_t sl_xport_cudrv_ptr_busid(const void *p, char *buf, size_t len)
{
    pthread_once(&s_drv.once, s_load);
    if (!s_drv.ptr_attr || !s_drv.busid)
        return SL_ERR_UNSUPPORTED;
    int ordinal = -1;
    if (s_drv.ptr_attr(&ordinal, S_CU_PTR_DEVICE_ORDINAL, (s_cuptr_t)(uintptr_t)p) != 0 ||
        ordinal < 0)
        return SL_ERR_NOT_FOUND;
    return sl_xport_cudrv_busid(ordinal, buf, len);
}
