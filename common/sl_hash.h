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

/*
 * Chained hash of one full KV block: sl_hash_combine(prev, sl_hash_bytes(the
 * block's token ids, 4 * block_tokens bytes, seed 0)); prev is the previous
 * block's hash, 0 before the first block. The token ids are hashed as they
 * lie in memory (little-endian uint32 on every supported host). The
 * executors' KV caches name their blocks with it and the scheduler hashes
 * prompts with it, so equal prefixes give equal hashes on both sides.
 */
uint64_t sl_hash_kv_block(uint64_t prev, const uint32_t *tokens, uint32_t block_tokens);
/*
 * The chained hashes of the leading full blocks of a prompt: writes
 * min(n_tokens / block_tokens, cap) hashes to out and returns how many
 * (0 when block_tokens is 0). O(n_tokens), no allocation.
 */
uint32_t sl_hash_kv_blocks(const uint32_t *tokens, uint32_t n_tokens, uint32_t block_tokens,
                           uint64_t *out, uint32_t cap);

#endif
