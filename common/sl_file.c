/*
 * Whole-file reads (sl_file.h): a buffer doubled from 4 KiB until fread
 * comes back short, one byte kept for the NUL. Files read this way are
 * small (allow-lists, a model's learned state, corpus inputs), so a stat
 * for the size first would save little and would not hold for pipes.
 */
#include "common/sl_file.h"

#include <stdlib.h>

sl_status_t sl_file_read_all(FILE *f, char **buf_p, size_t *len_p)
{
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
    *buf_p = NULL;
    if (!buf)
        return SL_ERR_NOMEM;
    if (ferror(f)) {
        free(buf);
        return SL_ERR_IO;
    }
    buf[len] = '\0';
    *buf_p = buf;
    *len_p = len;
    return SL_OK;
}
