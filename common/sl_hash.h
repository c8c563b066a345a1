/* 64-bit hashing for maps, idempotency ids and chained KV block hashes. */
#ifndef SL_HASH_H
#define SL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Bijective 64-bit mixer (splitmix64 finalizer): good for integer keys. */
static inline uint64_t sl_hash_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Hash of a byte string with a seed; stable across runs and hosts. */
uint64_t sl_hash_bytes(const void *data, size_t len, uint64_t seed);

/* Chain two hashes: h(prev, next), order-sensitive. */
static inline uint64_t sl_hash_combine(uint64_t prev, uint64_t next)
{
    return sl_hash_mix64(prev ^ (next + 0x9e3779b97f4a7c15ull + (prev << 6) + (prev >> 2)));
}

#endif
