/*
 * safetensors reader and writer.
 *
 * The file is mapped read-only and the JSON header parsed once into a small
 * table of (name, dtype, shape, range), every range checked against the file
 * size, so later lookups cannot read outside the mapping whatever the file
 * says. The parser accepts exactly the JSON the format uses (objects,
 * arrays, strings, integers, and skips any other value); it is not a general
 * JSON library. Rejected: a JSON dependency (jansson) for one flat header;
 * reading the whole file into memory (weights can be many GiB, and the
 * mapping lets the model convert tensor by tensor).
 */
#include "executor/ref/sl_safetensors.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/kernels.h>

#include "common/sl_log.h"

#define S_MAX_HEADER (100u << 20)

typedef struct s_entry {
    char *name;       /* tensor name (or metadata key) */
    sl_st_tensor_t t; /* tensor description (unused for metadata) */
    char *meta_value; /* metadata value, NULL for a tensor */
} s_entry_t;

struct sl_st {
    char path[256];     /* for error messages */
    void *map;          /* the mapped file */
    size_t size;        /* bytes mapped */
    s_entry_t *entries; /* tensors and metadata */
    size_t n_entries;   /* entries used */
};

/* --- a minimal JSON reader over the header ------------------------------------ */

typedef struct s_json {
    const char *p;   /* next character */
    const char *end; /* one past the header */
} s_json_t;

static void s_ws(s_json_t *j)
{
    while (j->p < j->end && isspace((unsigned char)*j->p))
        j->p++;
}

static int s_eat(s_json_t *j, char c)
{
    s_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

/* Parse a string into a new allocation (escapes other than \uXXXX kept literally). */
static char *s_string(s_json_t *j)
{
    if (!s_eat(j, '"'))
        return NULL;
    const char *start = j->p;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            j->p++;
        j->p++;
        n++;
    }
    if (j->p >= j->end)
        return NULL;
    char *s = malloc(n + 1), *o = s;
    if (!s)
        return NULL;
    for (const char *q = start; q < j->p; q++) {
        if (*q == '\\')
            q++;
        *o++ = *q;
    }
    *o = '\0';
    j->p++;
    return s;
}

static int s_uint(s_json_t *j, uint64_t *v)
{
    s_ws(j);
    if (j->p >= j->end || !isdigit((unsigned char)*j->p))
        return 0;
    uint64_t x = 0;
    while (j->p < j->end && isdigit((unsigned char)*j->p)) {
        if (x > (UINT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(*j->p++ - '0');
    }
    *v = x;
    return 1;
}

/* Skip any value (bounded nesting). */
static int s_skip(s_json_t *j, int depth)
{
    s_ws(j);
    if (j->p >= j->end || depth > 32)
        return 0;
    char c = *j->p;
    if (c == '"') {
        char *s = s_string(j);
        free(s);
        return s != NULL;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (s_eat(j, close))
            return 1;
        do {
            if (c == '{') {
                char *k = s_string(j);
                free(k);
                if (!k || !s_eat(j, ':'))
                    return 0;
            }
            if (!s_skip(j, depth + 1))
                return 0;
        } while (s_eat(j, ','));
        return s_eat(j, close);
    }
    while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
        j->p++;
    return 1;
}

static int s_push(sl_st_t *st, size_t *cap, s_entry_t *e)
{
    if (st->n_entries == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        s_entry_t *ne = realloc(st->entries, nc * sizeof(*ne));
        if (!ne)
            return 0;
        st->entries = ne;
        *cap = nc;
    }
    st->entries[st->n_entries++] = *e;
    return 1;
}

/* Parse {"dtype": ..., "shape": [...], "data_offsets": [b, e]} into e->t. */
static int s_tensor(s_json_t *j, const sl_st_t *st, size_t data_start, s_entry_t *e)
{
    uint64_t off[2] = {0, 0};
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (!s_eat(j, '{'))
        return 0;
    do {
        char *k = s_string(j);
        if (!k || !s_eat(j, ':')) {
            free(k);
            return 0;
        }
        int ok = 1;
        if (!strcmp(k, "dtype")) {
            char *d = s_string(j);
            ok = d && strlen(d) < sizeof(e->t.dtype);
            if (ok)
                strcpy(e->t.dtype, d);
            free(d);
            have_dtype = ok;
        } else if (!strcmp(k, "shape")) {
            ok = s_eat(j, '[');
            e->t.ndim = 0;
            if (ok && !s_eat(j, ']')) {
                do {
                    ok = e->t.ndim < SL_ST_MAX_DIMS && s_uint(j, &e->t.shape[e->t.ndim]);
                    e->t.ndim++;
                } while (ok && s_eat(j, ','));
                ok = ok && s_eat(j, ']');
            }
            have_shape = ok;
        } else if (!strcmp(k, "data_offsets")) {
            ok = s_eat(j, '[') && s_uint(j, &off[0]) && s_eat(j, ',') && s_uint(j, &off[1]) &&
                 s_eat(j, ']');
            have_off = ok;
        } else {
            ok = s_skip(j, 1);
        }
        free(k);
        if (!ok)
            return 0;
    } while (s_eat(j, ','));
    if (!s_eat(j, '}') || !have_dtype || !have_shape || !have_off)
        return 0;
    if (off[1] < off[0] || off[1] > st->size - data_start)
        return 0;
    e->t.data = (const char *)st->map + data_start + off[0];
    e->t.bytes = off[1] - off[0];
    return 1;
}

static int s_parse(sl_st_t *st, const char *hdr, size_t len, size_t data_start)
{
    s_json_t j = {hdr, hdr + len};
    size_t cap = 0;
    if (!s_eat(&j, '{'))
        return 0;
    if (s_eat(&j, '}'))
        return 1;
    do {
        s_entry_t e;
        memset(&e, 0, sizeof(e));
        e.name = s_string(&j);
        if (!e.name || !s_eat(&j, ':'))
            goto err_entry;
        if (!strcmp(e.name, "__metadata__")) {
            free(e.name);
            if (!s_eat(&j, '{'))
                return 0;
            if (s_eat(&j, '}'))
                continue;
            do {
                s_entry_t m = {0};
                m.name = s_string(&j);
                if (!m.name || !s_eat(&j, ':') || !(m.meta_value = s_string(&j)) ||
                    !s_push(st, &cap, &m)) {
                    free(m.name);
                    free(m.meta_value);
                    return 0;
                }
            } while (s_eat(&j, ','));
            if (!s_eat(&j, '}'))
                return 0;
            continue;
        }
        if (!s_tensor(&j, st, data_start, &e) || !s_push(st, &cap, &e))
            goto err_entry;
        continue;
    err_entry:
        free(e.name);
        return 0;
    } while (s_eat(&j, ','));
    return s_eat(&j, '}');
}

static void s_free_entries(sl_st_t *st)
{
    for (size_t i = 0; i < st->n_entries; i++) {
        free(st->entries[i].name);
        free(st->entries[i].meta_value);
    }
    free(st->entries);
}

sl_status_t sl_st_open(const char *path, sl_st_t **st_p)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        SL_ERROR("safetensors: cannot open %s: %m", path);
        return SL_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        SL_ERROR("safetensors: cannot stat %s: %m", path);
        close(fd);
        return SL_ERR_IO;
    }
    if (sb.st_size < 8) {
        SL_ERROR("safetensors: %s is too short (%lld bytes)", path, (long long)sb.st_size);
        close(fd);
        return SL_ERR_INVALID;
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        SL_ERROR("safetensors: cannot map %s: %m", path);
        return SL_ERR_IO;
    }
    sl_st_t *st = calloc(1, sizeof(*st));
    if (!st) {
        munmap(map, (size_t)sb.st_size);
        SL_ERROR("safetensors: out of memory");
        return SL_ERR_NOMEM;
    }
    snprintf(st->path, sizeof(st->path), "%s", path);
    st->map = map;
    st->size = (size_t)sb.st_size;
    const unsigned char *b = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | b[i];
    if (hlen > S_MAX_HEADER || hlen > st->size - 8 ||
        !s_parse(st, (const char *)b + 8, (size_t)hlen, 8 + (size_t)hlen)) {
        SL_ERROR("safetensors: %s has a malformed header", path);
        sl_st_close(&st);
        return SL_ERR_INVALID;
    }
    *st_p = st;
    return SL_OK;
}

void sl_st_close(sl_st_t **st_p)
{
    if (!st_p || !*st_p)
        return;
    sl_st_t *st = *st_p;
    s_free_entries(st);
    munmap(st->map, st->size);
    free(st);
    *st_p = NULL;
}

sl_status_t sl_st_find(const sl_st_t *st, const char *name, sl_st_tensor_t *t)
{
    for (size_t i = 0; i < st->n_entries; i++)
        if (!st->entries[i].meta_value && !strcmp(st->entries[i].name, name)) {
            *t = st->entries[i].t;
            return SL_OK;
        }
    return SL_ERR_NOT_FOUND;
}

const char *sl_st_meta(const sl_st_t *st, const char *key)
{
    for (size_t i = 0; i < st->n_entries; i++)
        if (st->entries[i].meta_value && !strcmp(st->entries[i].name, key))
            return st->entries[i].meta_value;
    return NULL;
}

sl_status_t sl_st_read_f32(const sl_st_t *st, const char *name, uint32_t ndim,
                           const uint64_t *shape, float *out)
{
    sl_st_tensor_t t;
    if (sl_st_find(st, name, &t) != SL_OK) {
        SL_ERROR("safetensors: %s has no tensor '%s'", st->path, name);
        return SL_ERR_NOT_FOUND;
    }
    int same = t.ndim == ndim;
    size_t n = 1;
    for (uint32_t i = 0; same && i < ndim; i++) {
        same = t.shape[i] == shape[i];
        n *= shape[i];
    }
    if (!same) {
        char want[96] = "", got[96] = "";
        for (uint32_t i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%llu", i ? "," : "",
                     (unsigned long long)shape[i]);
        for (uint32_t i = 0; i < t.ndim; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%llu", i ? "," : "",
                     (unsigned long long)t.shape[i]);
        SL_ERROR("safetensors: tensor '%s' in %s has shape [%s], the model needs [%s]", name,
                 st->path, got, want);
        return SL_ERR_INVALID;
    }
    size_t esz = !strcmp(t.dtype, "F32")                                 ? 4
                 : (!strcmp(t.dtype, "F16") || !strcmp(t.dtype, "BF16")) ? 2
                                                                         : 0;
    if (!esz) {
        SL_ERROR("safetensors: tensor '%s' in %s has dtype %s (F32, F16 or BF16 expected)", name,
                 st->path, t.dtype);
        return SL_ERR_INVALID;
    }
    if (t.bytes != n * esz) {
        SL_ERROR("safetensors: tensor '%s' in %s has %zu bytes for %zu %s values", name, st->path,
                 t.bytes, n, t.dtype);
        return SL_ERR_INVALID;
    }
    const unsigned char *p = t.data;
    for (size_t i = 0; i < n; i++) {
        if (esz == 4) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&out[i], &u, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
            out[i] = t.dtype[0] == 'B' ? sl_k_bf16_to_f32(h) : sl_k_f16_to_f32(h);
        }
    }
    return SL_OK;
}

sl_status_t sl_st_write(const char *path, const sl_st_write_tensor_t *tensors, size_t n,
                        const char *const *meta, size_t n_meta)
{
    size_t cap = 256 + n * 160 + n_meta * 128, len = 0;
    for (size_t i = 0; i < n; i++)
        cap += strlen(tensors[i].name);
    for (size_t i = 0; i < 2 * n_meta; i++)
        cap += strlen(meta[i]);
    char *h = malloc(cap);
    if (!h) {
        SL_ERROR("safetensors: out of memory for a header");
        return SL_ERR_NOMEM;
    }
    len += (size_t)snprintf(h + len, cap - len, "{");
    if (n_meta) {
        len += (size_t)snprintf(h + len, cap - len, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++)
            len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":\"%s\"", i ? "," : "",
                                    meta[2 * i], meta[2 * i + 1]);
        len += (size_t)snprintf(h + len, cap - len, "}%s", n ? "," : "");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t cnt = 1;
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                i ? "," : "", tensors[i].name);
        for (uint32_t d = 0; d < tensors[i].ndim; d++) {
            cnt *= tensors[i].shape[d];
            len += (size_t)snprintf(h + len, cap - len, "%s%llu", d ? "," : "",
                                    (unsigned long long)tensors[i].shape[d]);
        }
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + cnt * 4));
        off += cnt * 4;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) /* data starts 8-byte aligned */
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        SL_ERROR("safetensors: cannot create %s: %m", path);
        free(h);
        return SL_ERR_IO;
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(lenb, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t cnt = 1;
        for (uint32_t d = 0; d < tensors[i].ndim; d++)
            cnt *= tensors[i].shape[d];
        ok = fwrite(tensors[i].data, 4, cnt, f) == cnt; /* little-endian hosts only */
    }
    free(h);
    if (fclose(f) != 0 || !ok) {
        SL_ERROR("safetensors: writing %s failed: %m", path);
        return SL_ERR_IO;
    }
    return SL_OK;
}
