/* The gather-copy kernel of the CUDA IPC lane (sl_xport_ipc_kernel.cu),
 * callable from C. Not installed. */
#ifndef SL_XPORT_IPC_KERNEL_H
#define SL_XPORT_IPC_KERNEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_XPORT_IPC_PIECE (64u << 10) /* a block is copied in pieces of at most this */

/* One piece of a block list: len bytes from src to dst (device addresses). */
typedef struct sl_xport_ipc_piece {
    uint64_t src; /* source address */
    uint64_t dst; /* destination address */
    uint64_t len; /* bytes, 1 to SL_XPORT_IPC_PIECE */
} sl_xport_ipc_piece_t;

/* Enqueue on stream (a cudaStream_t) one kernel that copies the n pieces
 * whose descriptors are in device memory at pieces. Returns the launch's
 * cudaError_t (0 = enqueued). */
int sl_xport_ipc_launch(const sl_xport_ipc_piece_t *pieces, uint32_t n, void *stream);

#ifdef __cplusplus
}
#endif
#endif
