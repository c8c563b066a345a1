/*
 * safetensors files: an 8-byte little-endian header length, a JSON header
 * naming each tensor's dtype, shape and byte range, then the raw data.
 * Read by mapping the file; written for tests and tools (fp32 only).
 */
#ifndef SL_SAFETENSORS_H
#define SL_SAFETENSORS_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

#define SL_ST_MAX_DIMS 4

typedef struct sl_st sl_st_t; /* an open, mapped safetensors file */

/* One tensor of a file; data points into the mapping. */
typedef struct sl_st_tensor {
    char dtype[8];                  /* "F32", "F16", "BF16", ... */
    uint32_t ndim;                  /* dimensions used in shape */
    uint64_t shape[SL_ST_MAX_DIMS]; /* sizes, outermost first */
    const void *data;               /* first byte */
    size_t bytes;                   /* length of the data */
} sl_st_tensor_t;

/* A tensor to write: fp32 data of the given shape. */
typedef struct sl_st_write_tensor {
    const char *name;               /* tensor name */
    uint32_t ndim;                  /* dimensions used in shape */
    uint64_t shape[SL_ST_MAX_DIMS]; /* sizes, outermost first */
    const float *data;              /* product of shape floats */
} sl_st_write_tensor_t;

/* Open and map path; *st_p owns it. SL_ERR_IO (unreadable) or
 * SL_ERR_INVALID (malformed header, ranges outside the file), logged. */
sl_status_t sl_st_open(const char *path, sl_st_t **st_p);
/* Unmap and free (NULL-safe, sets *st_p = NULL). */
void sl_st_close(sl_st_t **st_p);
/* Look up a tensor by name; SL_ERR_NOT_FOUND (not logged) when absent. */
sl_status_t sl_st_find(const sl_st_t *st, const char *name, sl_st_tensor_t *t);
/* Value of a string in the "__metadata__" object, or NULL. */
const char *sl_st_meta(const sl_st_t *st, const char *key);
/* Read tensor name as fp32 into out, requiring exactly shape[0..ndim):
 * a clear logged error naming the tensor for a missing one (SL_ERR_NOT_FOUND),
 * a wrong shape or an unsupported dtype (SL_ERR_INVALID). F32, F16, BF16. */
sl_status_t sl_st_read_f32(const sl_st_t *st, const char *name, uint32_t ndim,
                           const uint64_t *shape, float *out);
/* Write tensors (and string metadata pairs meta[0..2*n_meta)) to path. */
sl_status_t sl_st_write(const char *path, const sl_st_write_tensor_t *tensors, size_t n,
                        const char *const *meta, size_t n_meta);

#endif
