/*
 * Output folders of the simulator's commands (compare, matrix): where their
 * CSVs, plot scripts and cells go, and the writing of each file.
 */
#ifndef SL_SIM_OUT_H
#define SL_SIM_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Make the folder path (one level; an existing folder is fine). false with
 * the cause printed after prog. */
bool sl_sim_out_mkdir(const char *prog, const char *path);
/* The output folder: dir (made if missing) when it names one, else a fresh
 * folder prefix-XXXXXX under $TMPDIR or /tmp, never the working directory
 * (a sweep would litter it), whose name is written into dir (cap bytes).
 * false with the cause printed after prog. */
bool sl_sim_out_dir(const char *prog, char *dir, size_t cap, const char *prefix);
/* Open dir/name for writing; NULL with the cause printed after prog. */
FILE *sl_sim_out_open(const char *prog, const char *dir, const char *name);
/* Close f, reporting a failed write (a full disk) instead of keeping a
 * truncated file quietly; false then. */
bool sl_sim_out_close(const char *prog, FILE *f, const char *dir, const char *name);

#endif
