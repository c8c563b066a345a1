/*
 * Text in memory for the core (see sl_text.h).
 *
 * The core formats into buffers and parses from buffers, never through a
 * FILE: the state file, its knob and the log belong to the daemon, and the
 * simulator and the tests need neither. This file is the one place in the
 * core that uses the C library's formatting (vsnprintf, for %.17g that
 * round-trips a double exactly) and number parsing. Words are copied into
 * a small NUL-terminated scratch before strtod/strtoll, so the input buffer
 * needs no terminator; a word longer than any number the state holds is
 * refused rather than cut.
 */
#include "scheduler/core/sl_text.h"

#include <errno.h>
#include <stdio.h> /* vsnprintf: formatting into a buffer, no stream */
#include <stdlib.h>
#include <string.h>

#define S_WORD_MAX 64

void sl_text_out_init(sl_text_out_t *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->len = 0;
    if (w->cap)
        w->buf[0] = '\0';
}

void sl_text_put(sl_text_out_t *w, const char *fmt, ...)
{
    va_list ap;
    size_t room = w->len < w->cap ? w->cap - w->len : 0;
    va_start(ap, fmt);
    int n = vsnprintf(room ? w->buf + w->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->len += (size_t)n;
}

sl_status_t sl_text_out_end(const sl_text_out_t *w, size_t *len_p)
{
    *len_p = w->len;
    return w->len < w->cap ? SL_OK : SL_ERR_OVERFLOW;
}

void sl_text_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
    vsnprintf(buf, cap, fmt, ap);
}

static bool s_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The next word into word (NUL-terminated); *next_p just past it. */
static bool s_word(const sl_text_in_t *in, char word[S_WORD_MAX], const char **next_p)
{
    const char *p = in->pos;
    while (p < in->end && s_space(*p))
        p++;
    size_t n = 0;
    while (p < in->end && !s_space(*p)) {
        if (n == S_WORD_MAX - 1)
            return false;
        word[n++] = *p++;
    }
    word[n] = '\0';
    *next_p = p;
    return n > 0;
}

bool sl_text_word_is(sl_text_in_t *in, const char *want)
{
    char w[S_WORD_MAX];
    const char *next;
    if (!s_word(in, w, &next) || strcmp(w, want) != 0)
        return false;
    in->pos = next;
    return true;
}

bool sl_text_int(sl_text_in_t *in, int64_t *v)
{
    char w[S_WORD_MAX], *e;
    const char *next;
    if (!s_word(in, w, &next))
        return false;
    errno = 0;
    long long x = strtoll(w, &e, 10);
    if (*e || errno)
        return false;
    *v = x;
    in->pos = next;
    return true;
}

bool sl_text_uint(sl_text_in_t *in, uint64_t *v)
{
    char w[S_WORD_MAX], *e;
    const char *next;
    if (!s_word(in, w, &next) || w[0] == '-')
        return false;
    errno = 0;
    unsigned long long x = strtoull(w, &e, 10);
    if (*e || errno)
        return false;
    *v = x;
    in->pos = next;
    return true;
}

bool sl_text_double(sl_text_in_t *in, double *v)
{
    char w[S_WORD_MAX], *e;
    const char *next;
    if (!s_word(in, w, &next))
        return false;
    double x = strtod(w, &e);
    if (*e)
        return false;
    *v = x;
    in->pos = next;
    return true;
}
