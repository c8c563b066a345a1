/*
 * The scheduler's journal: accepted jobs and their results in an SQLite
 * file (WAL mode), so a scheduler that crashes and restarts on the same
 * file gets back every job it had accepted (docs/OPERATIONS.md, "The
 * journal"). Writes are grouped: records collect in memory and
 * sl_journal_commit writes them as one batch (a row of accepts, a row of
 * results) in one transaction, with one sync; the daemon commits once per
 * loop turn, before the turn's Accepted replies go out.
 *
 * Not thread-safe: the scheduler's loop thread owns it.
 */
#ifndef SL_JOURNAL_H
#define SL_JOURNAL_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_journal_cfg {
    const char *path;         /* the file (created when missing; -wal and -shm beside it) */
    bool sync_full;           /* true: every commit reaches the disk (survives a power loss);
                                 false: commits survive a process crash, a power loss may lose the
                                 last ones (never the file) */
    int batch;                /* records in one batch at most: the next record commits it */
    int64_t retain_ms;        /* finished jobs' results are kept this long, then deleted */
    int64_t checkpoint_pages; /* WAL pages past which a commit checkpoints */
} sl_journal_cfg_t;

/* What the journal keeps of an accepted job. */
typedef struct sl_journal_rec {
    const char *id;     /* the client's id */
    uint64_t seq;       /* the core's handle */
    uint64_t batch;     /* restore: the batch it was written in (sl_journal_done needs it) */
    const char *tenant; /* its tenant ("" none) */
    const void *client; /* routing identity of its client */
    size_t client_len;  /* bytes of client */
    const void *job;    /* the job's encoding as submitted */
    size_t job_len;     /* bytes of job */
} sl_journal_rec_t;

/* Counters (sl_journal_stats). */
typedef struct sl_journal_stats {
    uint64_t accepts;   /* accepted jobs written */
    uint64_t results;   /* results written */
    uint64_t commits;   /* transactions committed (one sync each with sync_full) */
    uint64_t errors;    /* failed writes (each logged) */
    uint64_t unusable;  /* records skipped on restore: they did not decode */
    uint64_t forgotten; /* batches of results deleted past retain_ms */
    uint64_t commit_us; /* time spent committing, summed */
} sl_journal_stats_t;

typedef struct sl_journal sl_journal_t;

/* Open or create the journal. A file that is not a usable journal (not
 * SQLite, corrupt, or of another schema version) is refused with
 * SL_ERR_IO, the cause logged; nothing is changed in it. */
sl_status_t sl_journal_open(const sl_journal_cfg_t *cfg, sl_journal_t **journal_p);
/* Commit what is pending and close; NULL-safe; sets *journal_p = NULL. */
void sl_journal_close(sl_journal_t **journal_p);

/* Record an accepted job in the open batch (copied); *batch_p is the
 * batch, which sl_journal_done of the job names. */
sl_status_t sl_journal_accept(sl_journal_t *j, const sl_journal_rec_t *rec, uint64_t *batch_p);
/* Record that job seq (id), written in batch, finished with the packed
 * result (len bytes) at now_ms (wall clock): the result is kept for
 * retain_ms, and a batch whose jobs have all finished is deleted. */
sl_status_t sl_journal_done(sl_journal_t *j, uint64_t batch, uint64_t seq, const char *id,
                            const void *result, size_t len, int64_t now_ms);
/* Write the open batch and end the transaction with one commit (nothing
 * when no record waits). Logs on failure. */
sl_status_t sl_journal_commit(sl_journal_t *j);
/* Whether records wait for a commit. */
bool sl_journal_pending(const sl_journal_t *j);

/* Called per record by sl_journal_restore; pointers valid during the call. */
typedef struct sl_journal_visit {
    /* A job accepted and not finished (oldest seq first). */
    sl_status_t (*live)(void *arg, const sl_journal_rec_t *rec);
    /* A finished job within retain_ms, with its packed result. */
    sl_status_t (*done)(void *arg, const char *id, const void *result, size_t len);
} sl_journal_visit_t;

/* Read back what the journal holds (at start, before any write). A record
 * a callback refuses with SL_ERR_MSG_* or SL_ERR_INVALID is counted
 * unusable and skipped; another error stops the walk and is returned. */
sl_status_t sl_journal_restore(sl_journal_t *j, int64_t now_ms, const sl_journal_visit_t *v,
                               void *arg);

/* The bound the journal keeps on sequence numbers handed out: every seq
 * recorded, and every seq below the bound, may be in use; a restarted
 * core starts above it. sl_journal_accept raises it ahead of need. */
uint64_t sl_journal_seq_bound(const sl_journal_t *j);

/* Delete results older than retain_ms, except those a batch still
 * written needs to tell its finished jobs from its live ones (in a
 * transaction of its own). */
sl_status_t sl_journal_forget(sl_journal_t *j, int64_t now_ms);

void sl_journal_stats(const sl_journal_t *j, sl_journal_stats_t *st);

#endif
