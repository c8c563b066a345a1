/*
 * Reading a whole file: allow-lists, the scheduler's learned state, fuzz
 * corpus files.
 */
#ifndef SL_FILE_H
#define SL_FILE_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdio.h>

/* Read f to its end into *buf_p (malloc'd, owned by the caller, with a NUL
 * after the *len_p bytes read, so that text can be parsed in place).
 * SL_ERR_NOMEM, or SL_ERR_IO on a read error (errno set); *buf_p is then
 * NULL. f is not closed. */
sl_status_t sl_file_read_all(FILE *f, char **buf_p, size_t *len_p);

#endif
