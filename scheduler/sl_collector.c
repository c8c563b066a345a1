/*
 * The collector (see sl_collector.h).
 *
 * Batches arrive on the executors' socket like any executor message but
 * need no registration: the executor's name travels in each batch, so a
 * restarted scheduler takes them at once and the shipping side keeps no
 * state about the collector. Each executor gets a .log and a .trace file,
 * opened for append when its first batch comes and kept open (up to
 * SL_COLLECTOR_OPEN_MAX executors; then the one written least recently is
 * closed), and flushed after each batch so what is shipped can be read at
 * once (a batch comes at most every few milliseconds: the executor's
 * bucket paces them). One file per executor rather than one file for all
 * with the name on every line: an operator reads one executor's log as it
 * was written, and a file never interleaves two writers.
 *
 * Rejected: writing from a thread of its own (the scheduler's thread would
 * hand it every batch; the writes are a few KiB a batch, buffered, and the
 * disk of a scheduler's host is not its bottleneck) and a database.
 */
#include "scheduler/sl_collector.h"
#include "common/sl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct s_file {
    char name[256];        /* executor name ("" = slot free) */
    FILE *log;             /* <dir>/<name>.log */
    FILE *trace;           /* <dir>/<name>.trace */
    uint64_t last_dropped; /* the executor's drop count in its last batch */
    uint64_t used;         /* the collector's batch count at its last write (for closing) */
    int failed;            /* an open or write failed (logged once) */
} s_file_t;

struct sl_collector {
    char dir[4096];                        /* where files go */
    s_file_t files[SL_COLLECTOR_OPEN_MAX]; /* open executors' files */
    sl_collector_stats_t st;               /* counters */
};

/* mkdir -p: each component in turn. */
static sl_status_t s_mkdirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        SL_ERROR("collect dir '%s' is too long", dir);
        return SL_ERR_IO;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            SL_ERROR("cannot make the collect dir %s: %m", path);
            return SL_ERR_IO;
        }
        if (!c)
            break;
        *p = c;
    }
    return SL_OK;
}

sl_status_t sl_collector_create(const char *dir, sl_collector_t **c_p)
{
    if (!dir || !dir[0] || s_mkdirs(dir) != SL_OK)
        return SL_ERR_IO;
    sl_collector_t *c = calloc(1, sizeof(*c));
    if (!c)
        return SL_ERR_NOMEM;
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    SL_INFO("collector: executors' logs and traces go to %s", dir);
    *c_p = c;
    return SL_OK;
}

static void s_close(s_file_t *f)
{
    if (f->log)
        fclose(f->log);
    if (f->trace)
        fclose(f->trace);
    memset(f, 0, sizeof(*f));
}

void sl_collector_destroy(sl_collector_t **c_p)
{
    sl_collector_t *c = c_p ? *c_p : NULL;
    if (!c)
        return;
    for (int i = 0; i < SL_COLLECTOR_OPEN_MAX; i++)
        s_close(&c->files[i]);
    free(c);
    *c_p = NULL;
}

static FILE *s_open(sl_collector_t *c, s_file_t *f, const char *ext)
{
    char path[4096 + 300];
    snprintf(path, sizeof(path), "%s/%s.%s", c->dir, f->name, ext);
    FILE *fp = fopen(path, "a");
    if (!fp && !f->failed) {
        SL_WARN("collector: cannot open %s: %m", path);
        f->failed = 1;
    }
    return fp;
}

/* The executor's slot: its own, a free one, or the least recently written. */
static s_file_t *s_slot(sl_collector_t *c, const char *name)
{
    s_file_t *free_slot = NULL, *oldest = &c->files[0];
    for (int i = 0; i < SL_COLLECTOR_OPEN_MAX; i++) {
        s_file_t *f = &c->files[i];
        if (f->name[0] && !strcmp(f->name, name))
            return f;
        if (!f->name[0] && !free_slot)
            free_slot = f;
        if (f->used < oldest->used)
            oldest = f;
    }
    s_file_t *f = free_slot ? free_slot : oldest;
    s_close(f);
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static int s_write(FILE *fp, const char *const *lines, uint32_t n, uint64_t *bytes)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        if (fwrite(lines[i], 1, len, fp) != len || fputc('\n', fp) == EOF)
            return -1;
        *bytes += len + 1;
    }
    return fflush(fp);
}

sl_status_t sl_collector_take(sl_collector_t *c, const sl_wire_log_batch_t *b)
{
    s_file_t *f = s_slot(c, b->executor);
    c->st.batches++;
    f->used = c->st.batches;
    /* A lower count: the executor restarted and counts from zero again. */
    c->st.dropped += b->dropped >= f->last_dropped ? b->dropped - f->last_dropped : b->dropped;
    f->last_dropped = b->dropped;
    if (b->n_logs && !f->log)
        f->log = s_open(c, f, "log");
    if (b->n_traces && !f->trace)
        f->trace = s_open(c, f, "trace");
    uint64_t bytes = 0;
    int bad = (b->n_logs && (!f->log || s_write(f->log, b->logs, b->n_logs, &bytes))) ||
              (b->n_traces && (!f->trace || s_write(f->trace, b->traces, b->n_traces, &bytes)));
    c->st.bytes += bytes;
    if (bad) {
        if (!f->failed)
            SL_WARN("collector: cannot write %s's lines under %s: %m", b->executor, c->dir);
        f->failed = 1;
        c->st.write_failed++;
        if (f->log) /* opened again with the next batch (the failure is not logged again) */
            fclose(f->log);
        if (f->trace)
            fclose(f->trace);
        f->log = f->trace = NULL;
        return SL_ERR_IO;
    }
    c->st.lines += b->n_logs + b->n_traces;
    return SL_OK;
}

void sl_collector_stats(const sl_collector_t *c, sl_collector_stats_t *st)
{
    *st = c->st;
}
