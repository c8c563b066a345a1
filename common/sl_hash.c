/*
 * Byte-string hash: 8 bytes at a time through a multiply-xorshift mixer,
 * with the length folded in so that prefixes differ. Not cryptographic (the
 * scheduler never trusts a hash for security); chosen for being small,
 * stable across hosts (explicit little-endian loads) and fast enough.
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
