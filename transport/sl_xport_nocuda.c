/*
 * Stand-ins for sl_xport_cuda.c in builds without the CUDA toolkit: UCX is
 * never asked to take device memory, there is no CUDA copy step (CUDA
 * regions are refused unless the caller supplies one), and rings are not
 * pinned. Kept apart so no CUDA symbol is referenced when nvcc is absent.
 */
#include "transport/sl_xport_int.h"

sl_xport_copy_fn_t sl_xport_cuda_copy_fn(void)
{
    return NULL;
}

bool sl_xport_cuda_probe(sl_xport_t *xp)
{
    return false;
}

void sl_xport_cuda_pin(void *p, size_t len) {}

void sl_xport_cuda_unpin(void *p) {}
