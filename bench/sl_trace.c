/*
 * Trace reader: Mooncake JSON lines and Azure 2023 CSV into one array of
 * requests, and the transforms a replay needs (slice, speed-up, target
 * rate, Poisson resampling).
 *
 * Idea: read the whole file once, parse it line by line in place, and keep
 * every request's prefix hashes in one pool so a trace is three allocations
 * whatever its size. Each line either parses completely or is counted as
 * malformed and skipped: a bad line must never stop a replay or crash the
 * simulator. Times are integer microseconds, rebased so the trace starts at
 * zero.
 *
 * Rejected: a general JSON library (the Mooncake records are flat objects of
 * numbers and one array of integers; a 100-line scanner has no dependency
 * and is several times faster than building a DOM per line); strptime/mktime
 * for the Azure timestamps (local time zone and locale; the civil-date
 * arithmetic below is exact and pure).
 */
#include "bench/sl_trace.h"

#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name; /* short name */
    const char *file; /* path under the trace folder */
} s_known[] = {
    {"mooncake-conversation", "mooncake/conversation_trace.jsonl"},
    {"mooncake-synthetic", "mooncake/synthetic_trace.jsonl"},
    {"azure-code", "azure2023/AzureLLMInferenceTrace_code.csv"},
    {"azure-conv", "azure2023/AzureLLMInferenceTrace_conv.csv"},
};

/* A trace being built: growable request array and hash pool. */
typedef struct s_builder {
    sl_trace_t *t;   /* the trace being filled */
    size_t cap;      /* allocated requests */
    size_t pool_cap; /* allocated hash entries */
} s_builder_t;

sl_status_t sl_trace_path(const char *name, const char *dir, char *out, size_t cap)
{
    int n = -1;
    for (size_t i = 0; i < sizeof(s_known) / sizeof(s_known[0]); i++)
        if (!strcmp(name, s_known[i].name))
            n = snprintf(out, cap, "%s/%s", dir ? dir : ".", s_known[i].file);
    if (n < 0)
        n = snprintf(out, cap, "%s", name);
    return (size_t)n < cap ? SL_OK : SL_ERR_OVERFLOW;
}

sl_status_t sl_trace_name_check(const char *name, char *msg, size_t cap)
{
    for (size_t i = 0; i < sizeof(s_known) / sizeof(s_known[0]); i++)
        if (!strcmp(name, s_known[i].name))
            return SL_OK;
    if (access(name, R_OK) == 0)
        return SL_OK;
    size_t off = 0;
    int n = snprintf(msg, cap, "unknown trace '%s' (", name);
    for (size_t i = 0;
         n >= 0 && (off += (size_t)n) < cap && i < sizeof(s_known) / sizeof(s_known[0]); i++)
        n = snprintf(msg + off, cap - off, "%s, ", s_known[i].name);
    if (off < cap)
        snprintf(msg + off, cap - off, "or a readable file)");
    return SL_ERR_NOT_FOUND;
}

void sl_trace_destroy(sl_trace_t **trace_p)
{
    if (!trace_p || !*trace_p)
        return;
    free((*trace_p)->reqs);
    free((*trace_p)->hash_pool);
    free(*trace_p);
    *trace_p = NULL;
}

static sl_status_t s_push_req(s_builder_t *b, const sl_trace_req_t *req)
{
    if (b->t->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        sl_trace_req_t *r = realloc(b->t->reqs, cap * sizeof(*r));
        if (!r)
            return SL_ERR_NOMEM;
        b->t->reqs = r;
        b->cap = cap;
    }
    b->t->reqs[b->t->n++] = *req;
    return SL_OK;
}

static sl_status_t s_push_hash(s_builder_t *b, uint64_t h)
{
    if (b->t->n_hash_pool == b->pool_cap) {
        size_t cap = b->pool_cap ? b->pool_cap * 2 : 4096;
        uint64_t *p = realloc(b->t->hash_pool, cap * sizeof(*p));
        if (!p)
            return SL_ERR_NOMEM;
        b->t->hash_pool = p;
        b->pool_cap = cap;
    }
    b->t->hash_pool[b->t->n_hash_pool++] = h;
    return SL_OK;
}

/* ---- Mooncake JSON lines ---------------------------------------------- */

static const char *s_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/* A JSON number; -1 when there is none. */
static int s_number(const char **pp, double *v)
{
    char *end;
    const char *p = *pp;
    if (!(*p == '-' || isdigit((unsigned char)*p)))
        return -1;
    errno = 0;
    *v = strtod(p, &end);
    if (end == p || errno || !isfinite(*v))
        return -1;
    *pp = end;
    return 0;
}

/* A non-negative integer that fits in max. */
static int s_uint(const char **pp, double max, uint64_t *v)
{
    double d;
    if (s_number(pp, &d) != 0 || d < 0 || d > max || d != floor(d))
        return -1;
    *v = (uint64_t)d;
    return 0;
}

/* Skip a value the reader does not use: number, string, literal, array of those. */
static int s_skip_value(const char **pp)
{
    const char *p = *pp;
    double d;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1])
                p++;
        if (*p != '"')
            return -1;
        *pp = p + 1;
        return 0;
    }
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) {
        *pp = p + 4;
        return 0;
    }
    if (!strncmp(p, "false", 5)) {
        *pp = p + 5;
        return 0;
    }
    if (*p == '[') {
        p = s_ws(p + 1);
        if (*p == ']') {
            *pp = p + 1;
            return 0;
        }
        for (;;) {
            if (s_skip_value(&p) != 0)
                return -1;
            p = s_ws(p);
            if (*p == ']') {
                *pp = p + 1;
                return 0;
            }
            if (*p != ',')
                return -1;
            p = s_ws(p + 1);
        }
    }
    if (s_number(&p, &d) != 0)
        return -1;
    *pp = p;
    return 0;
}

/*
 * One Mooncake record. On failure the hashes it pushed are taken back and
 * -1 is returned; -2 means out of memory.
 */
static int s_mooncake_line(s_builder_t *b, const char *p)
{
    size_t mark = b->t->n_hash_pool;
    sl_trace_req_t req = {0};
    bool have_t = false, have_in = false, have_out = false, have_hashes = false;
    uint64_t v;
    double d;

    p = s_ws(p);
    if (*p++ != '{')
        goto bad;
    p = s_ws(p);
    if (*p == '}')
        goto bad;
    for (;;) {
        const char *key, *key_end;
        if (*p != '"')
            goto bad;
        key = ++p;
        while (*p && *p != '"' && *p != '\\')
            p++;
        if (*p != '"')
            goto bad;
        key_end = p++;
        size_t klen = (size_t)(key_end - key);
        p = s_ws(p);
        if (*p++ != ':')
            goto bad;
        p = s_ws(p);
#define S_KEY(lit) (klen == sizeof(lit) - 1 && !memcmp(key, lit, klen))
        if (S_KEY("timestamp")) {
            if (have_t || s_number(&p, &d) != 0 || d < 0 || d > 9.2e15)
                goto bad;
            req.t_us = (int64_t)llround(d * 1000.0);
            have_t = true;
        } else if (S_KEY("input_length")) {
            if (have_in || s_uint(&p, UINT32_MAX, &v) != 0)
                goto bad;
            req.input_len = (uint32_t)v;
            have_in = true;
        } else if (S_KEY("output_length")) {
            if (have_out || s_uint(&p, UINT32_MAX, &v) != 0)
                goto bad;
            req.output_len = (uint32_t)v;
            have_out = true;
        } else if (S_KEY("hash_ids")) {
            if (have_hashes || *p++ != '[')
                goto bad;
            have_hashes = true;
            p = s_ws(p);
            if (*p == ']') {
                p++;
            } else {
                for (;;) {
                    if (s_uint(&p, 1.8e19, &v) != 0)
                        goto bad;
                    if (s_push_hash(b, v) != SL_OK)
                        goto nomem;
                    req.n_hashes++;
                    p = s_ws(p);
                    if (*p == ']') {
                        p++;
                        break;
                    }
                    if (*p++ != ',')
                        goto bad;
                    p = s_ws(p);
                }
            }
        } else if (s_skip_value(&p) != 0) {
            goto bad;
        }
#undef S_KEY
        p = s_ws(p);
        if (*p == '}')
            break;
        if (*p++ != ',')
            goto bad;
        p = s_ws(p);
    }
    p = s_ws(p + 1);
    if (*p || !have_t || !have_in || !have_out || req.input_len == 0)
        goto bad;
    if (s_push_req(b, &req) != SL_OK)
        goto nomem;
    return 0;
bad:
    b->t->n_hash_pool = mark;
    return -1;
nomem:
    b->t->n_hash_pool = mark;
    return -2;
}

/* ---- Azure 2023 CSV --------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t s_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Parse exactly n digits. */
static int s_digits(const char **pp, int n, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*pp)[i]))
            return -1;
        x = x * 10 + (unsigned)((*pp)[i] - '0');
    }
    *pp += n;
    *v = x;
    return 0;
}

/* "2023-11-16 18:17:03.9799600" (fraction optional) -> microseconds since the epoch. */
static int s_azure_time(const char **pp, int64_t *us)
{
    const char *p = *pp;
    unsigned y, mo, d, h, mi, s;
    if (s_digits(&p, 4, &y) || *p++ != '-' || s_digits(&p, 2, &mo) || *p++ != '-' ||
        s_digits(&p, 2, &d) || (*p != ' ' && *p != 'T') || !++p || s_digits(&p, 2, &h) ||
        *p++ != ':' || s_digits(&p, 2, &mi) || *p++ != ':' || s_digits(&p, 2, &s))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return -1;
    int64_t frac_us = 0;
    if (*p == '.') {
        int64_t scale = 100000;
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            frac_us += (*p - '0') * scale;
            scale /= 10;
        }
    }
    int64_t secs = s_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    *us = secs * 1000000 + frac_us;
    *pp = p;
    return 0;
}

static int s_azure_line(s_builder_t *b, const char *p)
{
    sl_trace_req_t req = {0};
    uint64_t v;
    p = s_ws(p);
    if (s_azure_time(&p, &req.t_us) != 0)
        return -1;
    p = s_ws(p);
    if (*p++ != ',')
        return -1;
    p = s_ws(p);
    if (s_uint(&p, UINT32_MAX, &v) != 0 || v == 0)
        return -1;
    req.input_len = (uint32_t)v;
    p = s_ws(p);
    if (*p++ != ',')
        return -1;
    p = s_ws(p);
    if (s_uint(&p, UINT32_MAX, &v) != 0)
        return -1;
    req.output_len = (uint32_t)v;
    if (*s_ws(p))
        return -1;
    return s_push_req(b, &req) == SL_OK ? 0 : -2;
}

/* ---- loading ---------------------------------------------------------- */

/* Stable merge sort by arrival (traces are nearly always sorted already). */
static sl_status_t s_sort(sl_trace_t *t)
{
    size_t i;
    for (i = 1; i < t->n; i++)
        if (t->reqs[i].t_us < t->reqs[i - 1].t_us)
            break;
    if (i >= t->n)
        return SL_OK;
    sl_trace_req_t *tmp = malloc(t->n * sizeof(*tmp));
    if (!tmp)
        return SL_ERR_NOMEM;
    sl_trace_req_t *src = t->reqs, *dst = tmp;
    for (size_t w = 1; w < t->n; w *= 2) {
        for (size_t lo = 0; lo < t->n; lo += 2 * w) {
            size_t mid = lo + w < t->n ? lo + w : t->n;
            size_t hi = lo + 2 * w < t->n ? lo + 2 * w : t->n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                dst[k++] = src[b].t_us < src[a].t_us ? src[b++] : src[a++];
            while (a < mid)
                dst[k++] = src[a++];
            while (b < hi)
                dst[k++] = src[b++];
        }
        sl_trace_req_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != t->reqs)
        memcpy(t->reqs, src, t->n * sizeof(*tmp));
    free(tmp);
    return SL_OK;
}

static sl_trace_format_t s_guess(const char *name, const char *text, size_t len)
{
    size_t nl = strlen(name);
    if ((nl > 6 && !strcmp(name + nl - 6, ".jsonl")) || (nl > 5 && !strcmp(name + nl - 5, ".json")))
        return SL_TRACE_MOONCAKE;
    if (nl > 4 && !strcmp(name + nl - 4, ".csv"))
        return SL_TRACE_AZURE;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]))
            return text[i] == '{' ? SL_TRACE_MOONCAKE : SL_TRACE_AZURE;
    return SL_TRACE_MOONCAKE;
}

sl_status_t sl_trace_parse(const char *text, size_t len, sl_trace_format_t fmt, const char *name,
                           sl_trace_t **trace_p)
{
    sl_status_t st = SL_ERR_NOMEM;
    s_builder_t b = {0};
    char *buf = malloc(len + 1);
    if (!buf)
        return SL_ERR_NOMEM;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!(b.t = calloc(1, sizeof(*b.t))))
        goto err_buf;
    snprintf(b.t->name, sizeof(b.t->name), "%s", name ? name : "");
    if (fmt == SL_TRACE_AUTO)
        fmt = s_guess(b.t->name, buf, len);
    bool first = true;
    for (char *line = buf; line && line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        if (nl)
            *nl = '\0';
        /* A NUL inside the line ends it early; what follows is left unread and the line fails. */
        size_t ll = strlen(line);
        bool blank = *s_ws(line) == '\0';
        int rc = 0;
        if (!blank) {
            if (fmt == SL_TRACE_AZURE && first && isalpha((unsigned char)*s_ws(line)))
                rc = 0; /* the header */
            else if (line + ll != (nl ? nl : buf + len))
                rc = -1; /* an embedded NUL */
            else
                rc = fmt == SL_TRACE_AZURE ? s_azure_line(&b, line) : s_mooncake_line(&b, line);
            first = false;
        }
        if (rc == -2)
            goto err_trace;
        if (rc == -1)
            b.t->malformed++;
        line = nl ? nl + 1 : NULL;
    }
    /* The pool no longer moves: point each request at its hashes. */
    size_t off = 0;
    for (size_t i = 0; i < b.t->n; i++) {
        sl_trace_req_t *r = &b.t->reqs[i];
        r->hashes = r->n_hashes ? b.t->hash_pool + off : NULL;
        off += r->n_hashes;
    }
    b.t->block_tokens = b.t->n_hash_pool ? SL_TRACE_MOONCAKE_BLOCK : 0;
    if ((st = s_sort(b.t)) != SL_OK)
        goto err_trace;
    if (b.t->n > 0) {
        int64_t t0 = b.t->reqs[0].t_us;
        for (size_t i = 0; i < b.t->n; i++)
            b.t->reqs[i].t_us -= t0;
    }
    if (b.t->malformed)
        SL_INFO("trace %s: skipped %zu malformed lines", b.t->name, b.t->malformed);
    free(buf);
    *trace_p = b.t;
    return SL_OK;
err_trace:
    sl_trace_destroy(&b.t);
err_buf:
    free(buf);
    return st == SL_OK ? SL_ERR_NOMEM : st;
}

sl_status_t sl_trace_load(const char *name, const char *dir, sl_trace_format_t fmt,
                          sl_trace_t **trace_p)
{
    char path[1024];
    sl_status_t st = sl_trace_path(name, dir, path, sizeof(path));
    if (st != SL_OK) {
        SL_ERROR("trace %s: path too long", name);
        return st;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        SL_ERROR("trace %s: cannot open %s: %m", name, path);
        return SL_ERR_IO;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 20;
            char *n = realloc(text, ncap);
            if (!n) {
                st = SL_ERR_NOMEM;
                goto out;
            }
            text = n;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        SL_ERROR("trace %s: cannot read %s: %m", name, path);
        st = SL_ERR_IO;
        goto out;
    }
    st = sl_trace_parse(text, len, fmt, path, trace_p);
out:
    free(text);
    fclose(f);
    return st;
}

/* ---- schedules -------------------------------------------------------- */

double sl_trace_rate(const sl_trace_t *t)
{
    if (t->n < 2)
        return 0;
    int64_t span = t->reqs[t->n - 1].t_us - t->reqs[0].t_us;
    return span > 0 ? (double)(t->n - 1) * 1e6 / (double)span : 0;
}

sl_status_t sl_trace_schedule(const sl_trace_t *src, const sl_trace_opts_t *o, sl_trace_t **out_p)
{
    if (o->start_s < 0 || o->duration_s < 0 || o->speedup < 0 || o->rate < 0 ||
        (o->poisson && !(o->rate > 0))) {
        SL_WARN("trace schedule: negative option, or Poisson arrivals without a rate");
        return SL_ERR_INVALID;
    }
    int64_t start = (int64_t)llround(o->start_s * 1e6);
    int64_t span = o->duration_s > 0 ? (int64_t)llround(o->duration_s * 1e6) : INT64_MAX;
    size_t first = 0, n = 0;
    while (first < src->n && src->reqs[first].t_us < start)
        first++;
    while (first + n < src->n && src->reqs[first + n].t_us - start < span &&
           (o->poisson || o->count == 0 || n < o->count))
        n++;

    size_t out_n = n;
    bool tile = !o->poisson && o->tile && o->count > n && n > 0;
    if (tile)
        out_n = o->count;
    if (o->poisson) {
        if (n == 0) {
            SL_WARN("trace schedule: the slice is empty, nothing to draw from");
            return SL_ERR_INVALID;
        }
        out_n = o->count ? o->count
                         : (o->duration_s > 0 ? (size_t)llround(o->duration_s * o->rate) : n);
    }
    sl_trace_t *t = calloc(1, sizeof(*t));
    if (!t)
        return SL_ERR_NOMEM;
    snprintf(t->name, sizeof(t->name), "%s", src->name);
    t->block_tokens = src->block_tokens;
    t->reqs = calloc(out_n ? out_n : 1, sizeof(*t->reqs));
    if (!t->reqs)
        goto err;
    sl_rand_t rng;
    sl_rand_seed(&rng, o->seed ? o->seed : 1);
    size_t pool = 0;
    /* A copy starts one mean gap after the previous one ended. */
    int64_t t0 = n ? src->reqs[first].t_us : 0, t1 = n ? src->reqs[first + n - 1].t_us : 0;
    int64_t period = t1 - t0 + (n > 1 ? (t1 - t0) / (int64_t)(n - 1) : 1) + 1;
    for (size_t i = 0; i < out_n; i++) {
        size_t j = o->poisson ? first + (size_t)sl_rand_below(&rng, n) : first + i % (n ? n : 1);
        t->reqs[i] = src->reqs[j];
        if (tile)
            t->reqs[i].t_us += (int64_t)(i / n) * period;
        pool += src->reqs[j].n_hashes;
    }
    if (pool && !(t->hash_pool = malloc(pool * sizeof(*t->hash_pool))))
        goto err;
    for (size_t i = 0; i < out_n; i++) {
        sl_trace_req_t *r = &t->reqs[i];
        if (r->n_hashes) {
            memcpy(t->hash_pool + t->n_hash_pool, r->hashes, r->n_hashes * sizeof(uint64_t));
            uint64_t copy = tile ? (uint64_t)(i / n) : 0;
            for (size_t h = 0; copy && h < r->n_hashes; h++)
                t->hash_pool[t->n_hash_pool + h] =
                    sl_hash_mix64(t->hash_pool[t->n_hash_pool + h] ^ sl_hash_mix64(copy));
            r->hashes = t->hash_pool + t->n_hash_pool;
            t->n_hash_pool += r->n_hashes;
        }
    }
    t->n = out_n;
    if (o->poisson) {
        double now = 0;
        for (size_t i = 0; i < out_n; i++) {
            now += sl_rand_exp(&rng, 1e6 / o->rate);
            t->reqs[i].t_us = (int64_t)now;
        }
    } else {
        for (size_t i = 0; i < out_n; i++)
            t->reqs[i].t_us -= start;
        double factor = o->speedup > 0 ? o->speedup : 1.0;
        if (o->rate > 0) {
            double natural = sl_trace_rate(t);
            factor = natural > 0 ? o->rate / natural : 1.0;
        }
        if (factor != 1.0)
            for (size_t i = 0; i < out_n; i++)
                t->reqs[i].t_us = (int64_t)llround((double)t->reqs[i].t_us / factor);
    }
    *out_p = t;
    return SL_OK;
err:
    sl_trace_destroy(&t);
    return SL_ERR_NOMEM;
}
