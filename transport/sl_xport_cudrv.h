/* The few CUDA driver calls the GPU lanes need, reached through dlopen of
 * libcuda.so.1 so that no program needs a driver to link or to start
 * (transport/sl_xport_cudrv.c). Not installed. */
#ifndef SL_XPORT_CUDRV_H
#define SL_XPORT_CUDRV_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

/* The allocation holding device pointer p: its start and size.
 * SL_ERR_UNSUPPORTED without a driver, SL_ERR_INVALID when p is not device
 * memory. Outputs written only on success. */
sl_status_t sl_xport_cudrv_range(const void *p, uint64_t *base_p, uint64_t *size_p);

/* A dma-buf file descriptor covering [p, p + len) of device memory: the
 * range is widened to host pages inside its allocation, and *offset_p gets
 * p's offset in the dma-buf. The caller owns *fd_p (close it). Logged;
 * SL_ERR_UNSUPPORTED without a driver or where the device cannot export
 * dma-bufs, SL_ERR_INVALID when p is not device memory, SL_ERR_IO when the
 * driver refuses. Outputs written only on success. */
sl_status_t sl_xport_cudrv_dmabuf(const void *p, size_t len, int *fd_p, uint64_t *offset_p);

/* The PCI bus id ("0000:3b:00.0") of CUDA device ordinal into buf (len
 * bytes). SL_ERR_UNSUPPORTED without a driver, SL_ERR_NOT_FOUND when the
 * driver has no such device. buf written only on success. */
sl_status_t sl_xport_cudrv_busid(int ordinal, char *buf, size_t len);

/* The PCI bus id of the device that holds device pointer p, into buf (len
 * bytes). SL_ERR_UNSUPPORTED without a driver, SL_ERR_NOT_FOUND when p is
 * not device memory. buf written only on success. */
sl_status_t sl_xport_cudrv_ptr_busid(const void *p, char *buf, size_t len);

#endif
