/*
 * Byte-string hash: 8 bytes at a time through a multiply-xorshift mixer,
 * with the length folded in so that prefixes differ. Not cryptographic (the
 * scheduler never trusts a hash for security); chosen for being small,
 * stable across hosts (explicit little-endian loads) and fast enough.
 *
 * The chained KV block hash lives here, not in the executor's KV manager,
 * because the scheduler must compute exactly the same hashes from a
 * prompt's token ids to match them against what executors report; one
 * definition cannot drift the way two copies could.
 */
#include "common/sl_hash.h"

#include <string.h>

static uint64_t s_load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t sl_hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = sl_hash_mix64(seed ^ (0x27d4eb2f165667c5ull * (len + 1)));
    while (len >= 8) {
        h = sl_hash_mix64(h ^ s_load64(p)) * 0x9e3779b97f4a7c15ull;
        p += 8;
        len -= 8;
    }
    if (len) {
        unsigned char tail[8] = {0};
        memcpy(tail, p, len);
        h = sl_hash_mix64(h ^ s_load64(tail) ^ ((uint64_t)len << 56));
    }
    return sl_hash_mix64(h);
}

uint64_t sl_hash_kv_block(uint64_t prev, const uint32_t *tokens, uint32_t block_tokens)
{
    return sl_hash_combine(prev, sl_hash_bytes(tokens, (size_t)block_tokens * sizeof(uint32_t), 0));
}

uint32_t sl_hash_kv_blocks(const uint32_t *tokens, uint32_t n_tokens, uint32_t block_tokens,
                           uint64_t *out, uint32_t cap)
{
    if (block_tokens == 0)
        return 0;
    uint32_t n = n_tokens / block_tokens;
    if (n > cap)
        n = cap;
    uint64_t h = 0;
    for (uint32_t i = 0; i < n; i++)
        out[i] = h = sl_hash_kv_block(h, tokens + (size_t)i * block_tokens, block_tokens);
    return n;
}
