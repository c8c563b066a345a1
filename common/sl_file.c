/*
 * Whole-file reads (sl_file.h): open, a buffer doubled from 4 KiB until
 * fread comes back short (one byte kept for the NUL), close; a missing
 * file is told apart from an unreadable one, since every caller treats it
 * as "nothing yet". Files read this way are
 * small (allow-lists, a model's learned state, corpus inputs), so a stat
 * for the size first would save little and would not hold for pipes.
 */
#include "common/sl_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

sl_status_t sl_file_read(const char *path, char **buf_p, size_t *len_p)
{
    *buf_p = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? SL_ERR_NOT_FOUND : SL_ERR_IO;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    sl_status_t st = !buf ? SL_ERR_NOMEM : ferror(f) ? SL_ERR_IO : SL_OK;
    int err = errno;
    fclose(f);
    errno = err;
    if (st != SL_OK) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *buf_p = buf;
    *len_p = len;
    return SL_OK;
}
