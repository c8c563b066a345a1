/*
 * Fuzz target "safetensors": the header parser of the ref backend's weight
 * reader (executor/ref/sl_safetensors.c) on any file. The input is written
 * to an anonymous memory file and opened through /proc/self/fd, so the
 * reader maps it exactly as it maps a model on disk (no hook in the
 * reader). When it opens, every tensor the header names in the usual
 * model layout is looked up and read as fp32 when its shape is small, and
 * a looked-up tensor's bytes must lie inside the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "executor/ref/sl_safetensors.h"
#include "tests/fuzz/sl_fuzz.h"

static FILE *s_null;
static int s_fd = -1;
static volatile size_t s_sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    s_null = fopen("/dev/null", "w");
    s_fd = memfd_create("fuzz-safetensors", 0);
    return 0;
}

static const char *const s_names[] = {"a",
                                      "w",
                                      "x",
                                      "embed",
                                      "tok_embeddings.weight",
                                      "norm.weight",
                                      "layers.0.attention.wq.weight",
                                      "lm_head"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (s_fd < 0 || size > (1u << 20))
        return 0;
    if (ftruncate(s_fd, 0) != 0 || pwrite(s_fd, data, size, 0) != (ssize_t)size)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", s_fd);
    FILE *err = stderr;
    if (s_null)
        stderr = s_null;
    sl_st_t *st = NULL;
    if (sl_st_open(path, &st) == SL_OK) {
        for (size_t i = 0; i < sizeof(s_names) / sizeof(s_names[0]); i++) {
            sl_st_tensor_t t;
            if (sl_st_find(st, s_names[i], &t) != SL_OK)
                continue;
            if (t.bytes > size)
                abort(); /* more bytes than the file has */
            const uint8_t *d = t.data;
            for (size_t k = 0; k < t.bytes; k++) /* a range past the mapping faults here */
                s_sink += d[k];
            uint64_t elems = 1;
            for (uint32_t k = 0; k < t.ndim && k < SL_ST_MAX_DIMS; k++)
                elems = t.shape[k] && elems <= (1u << 16) / t.shape[k] ? elems * t.shape[k]
                                                                       : (1u << 16) + 1;
            if (t.ndim <= SL_ST_MAX_DIMS && elems <= (1u << 16)) {
                float *out = malloc((size_t)(elems ? elems : 1) * sizeof(float));
                if (out)
                    (void)sl_st_read_f32(st, s_names[i], t.ndim, t.shape, out);
                free(out);
            }
        }
        (void)sl_st_meta(st, "format");
        sl_st_close(&st);
    }
    stderr = err;
    return 0;
}
