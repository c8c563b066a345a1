/*
 * Text in memory for the core: formatting into a caller's buffer (log
 * lines, reasons, the saved state) and reading words and numbers back from
 * a buffer. The core keeps no stream and opens no file: the embedder moves
 * the bytes (the daemon to and from its --state-file).
 */
#ifndef SL_TEXT_H
#define SL_TEXT_H

#include <sluice/status.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Text being written into buf of cap bytes; len counts what was asked for,
 * past cap too, so the caller learns the size it needs. */
typedef struct sl_text_out {
    char *buf;  /* destination (may be NULL when cap is 0) */
    size_t cap; /* its size */
    size_t len; /* bytes written or wanted, without the NUL */
} sl_text_out_t;

void sl_text_out_init(sl_text_out_t *w, char *buf, size_t cap);
/* Append, formatted like printf; what does not fit is only counted. */
void sl_text_put(sl_text_out_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* *len_p = w->len; SL_OK when it all fit with its NUL, else SL_ERR_OVERFLOW. */
sl_status_t sl_text_out_end(const sl_text_out_t *w, size_t *len_p);
/* Format like vsnprintf into buf of cap > 0 bytes (cut to fit, NUL-terminated). */
void sl_text_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Text being read: [pos, end), not necessarily NUL-terminated. Words are
 * separated by white space. Each reader returns false, leaving pos where
 * it was, when the next word is missing or is not what was asked for. */
typedef struct sl_text_in {
    const char *pos; /* next byte */
    const char *end; /* one past the last */
} sl_text_in_t;

/* The next word equals want. */
bool sl_text_word_is(sl_text_in_t *in, const char *want);
/* The next word is a whole decimal integer / unsigned integer / finite or
 * not floating-point number (as strtod reads it). */
bool sl_text_int(sl_text_in_t *in, int64_t *v);
bool sl_text_uint(sl_text_in_t *in, uint64_t *v);
bool sl_text_double(sl_text_in_t *in, double *v);

#endif
