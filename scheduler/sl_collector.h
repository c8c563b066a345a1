/*
 * The collector: log lines and job trace records that executors ship
 * (LogBatch, on their background connections) written to files, one pair
 * per executor: <dir>/<executor>.log and <dir>/<executor>.trace, a line
 * each, appended (OPERATIONS.md, "Log shipping"). Owned by the scheduler's
 * thread.
 */
#ifndef SL_COLLECTOR_H
#define SL_COLLECTOR_H

#include <sluice/status.h>

#include <stdint.h>

#include "proto/sl_wire.h"

/* Files kept open at once; past it the least recently written one closes. */
#define SL_COLLECTOR_OPEN_MAX 64

typedef struct sl_collector sl_collector_t;

typedef struct sl_collector_stats {
    uint64_t batches;      /* batches taken */
    uint64_t lines;        /* log lines and trace records written */
    uint64_t bytes;        /* their bytes, newlines included */
    uint64_t dropped;      /* lines the executors reported dropping (their rings were full) */
    uint64_t write_failed; /* batches not (wholly) written: a file could not be opened or written */
} sl_collector_stats_t;

/* Create a collector writing under dir (made when missing, like mkdir -p).
 * SL_ERR_IO (logged, with the cause) when dir cannot be made; SL_ERR_NOMEM.
 * On success *c_p owns it. */
sl_status_t sl_collector_create(const char *dir, sl_collector_t **c_p);

/* Close every file and free it; NULL-safe; sets *c_p = NULL. */
void sl_collector_destroy(sl_collector_t **c_p);

/* Append a batch's lines to its executor's files and flush them (b is only
 * read; its executor name was validated as a plain file name by proto/).
 * SL_ERR_IO when a file cannot be opened or written (logged once per
 * file, counted in write_failed). */
sl_status_t sl_collector_take(sl_collector_t *c, const sl_wire_log_batch_t *b);

void sl_collector_stats(const sl_collector_t *c, sl_collector_stats_t *st);

#endif
