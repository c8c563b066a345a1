/*
 * Reading a whole file: allow-lists, the scheduler's learned state, fuzz
 * corpus files.
 */
#ifndef SL_FILE_H
#define SL_FILE_H

#include <sluice/status.h>

#include <stddef.h>

/* Read the file at path whole into *buf_p (malloc'd, owned by the caller,
 * with a NUL after the *len_p bytes read, so that text can be parsed in
 * place). SL_ERR_NOT_FOUND when there is no such file, SL_ERR_IO when it
 * cannot be opened or read (errno set), SL_ERR_NOMEM; *buf_p is then NULL.
 * Logs nothing: the caller knows what the file is. */
sl_status_t sl_file_read(const char *path, char **buf_p, size_t *len_p);

#endif
