/* Deterministic pseudo-random numbers (xoshiro256**), seeded explicitly. */
#ifndef SL_RAND_H
#define SL_RAND_H

#include <math.h>
#include <stdint.h>

#include "common/sl_hash.h"

typedef struct sl_rand {
    uint64_t s[4]; /* generator state */
} sl_rand_t;

static inline void sl_rand_seed(sl_rand_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ull;
        r->s[i] = sl_hash_mix64(seed);
    }
}

static inline uint64_t sl_rand_u64(sl_rand_t *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1). */
static inline double sl_rand_double(sl_rand_t *r)
{
    return (double)(sl_rand_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n); n > 0. */
static inline uint64_t sl_rand_below(sl_rand_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)sl_rand_u64(r) * n) >> 64);
}

/* Exponential with the given mean (Poisson inter-arrival times). */
static inline double sl_rand_exp(sl_rand_t *r, double mean)
{
    return -mean * log(1.0 - sl_rand_double(r));
}

#endif
