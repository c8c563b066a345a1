/*
 * The fuzz targets' shared pieces: the libFuzzer entry point every target
 * defines, and a reader that cuts one input into the values and framed
 * messages a target feeds its code (a byte for a choice, a 16-bit length
 * then that many bytes for a message).
 *
 * The same target source links against libFuzzer in the clang fuzz build
 * (SLUICE_FUZZ=ON) and against fuzz_replay.c otherwise, which runs each
 * file of a corpus through it once, so ctest replays the corpora in the
 * release and sanitizer builds.
 */
#ifndef SL_FUZZ_H
#define SL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Run one input (data is borrowed). Returns 0, as libFuzzer asks. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Called once before the first input; argc and argv are the program's. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A cursor over one input. */
typedef struct sl_fuzz_in {
    const uint8_t *p; /* next byte */
    size_t left;      /* bytes after p */
} sl_fuzz_in_t;

static inline bool sl_fuzz_more(const sl_fuzz_in_t *in)
{
    return in->left > 0;
}

/* The next byte, 0 past the end. */
static inline uint8_t sl_fuzz_u8(sl_fuzz_in_t *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

/* The next 16-bit little-endian value, 0 past the end. */
static inline uint16_t sl_fuzz_u16(sl_fuzz_in_t *in)
{
    uint16_t lo = sl_fuzz_u8(in);
    return (uint16_t)(lo | (uint16_t)sl_fuzz_u8(in) << 8);
}

/* The next framed piece: a 16-bit length, then at most that many bytes
 * (fewer at the end of the input). *len_p is its length; the bytes stay in
 * the input. */
static inline const uint8_t *sl_fuzz_frame(sl_fuzz_in_t *in, size_t *len_p)
{
    size_t n = sl_fuzz_u16(in);
    if (n > in->left)
        n = in->left;
    const uint8_t *p = in->p;
    in->p += n;
    in->left -= n;
    *len_p = n;
    return p;
}

#endif
