/*
 * The scheduler's journal: accepted jobs and their results in an SQLite
 * file (WAL mode), so a scheduler that crashes and restarts on the same
 * file gets back every job it had accepted (docs/OPERATIONS.md, "The
 * journal"). Writes are grouped: records collect in memory and
 * they are written as one batch (a row of accepts, a row of results) in
 * one transaction, with one sync, by a writer thread; the daemon hands a
 * batch over at the end of each loop turn and holds that turn's replies
 * until the batch is committed.
 *
 * One thread owns it (the scheduler's loop); the journal's writer thread
 * is its own business.
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
/* Write the open batch and wait until it is committed (nothing when no
 * record waits): SL_ERR_IO when a write failed (logged). */
sl_status_t sl_journal_commit(sl_journal_t *j);

/*
 * Group commit without waiting. Batches are written by a thread of the
 * journal's own, one transaction (one sync) each, while the owner goes on:
 * sl_journal_kick hands the open batch over when the writer is idle (else
 * the records wait and join the next batch). sl_journal_mark is the number
 * of the batch holding the newest record; once sl_journal_durable (which
 * also clears sl_journal_fd's readiness) reaches it, everything recorded
 * before the mark is on disk, and the replies that depend on it may go. The
 * fd becomes readable after each batch written: poll it, then kick again.
 */
void sl_journal_kick(sl_journal_t *j);
uint64_t sl_journal_mark(const sl_journal_t *j);
uint64_t sl_journal_durable(sl_journal_t *j);
int sl_journal_fd(const sl_journal_t *j);
/* Whether records wait for a commit. */
bool sl_journal_pending(const sl_journal_t *j);

/* Called per record by sl_journal_restore; pointers valid during the call. */
typedef struct sl_journal_visit {
    /* A job accepted and not finished (oldest seq first). */
    sl_status_t (*live)(void *arg, const sl_journal_rec_t *rec);
    /* A finished job within retain_ms, with its packed result. */
    sl_status_t (*done)(void *arg, const char *id, const void *result, size_t len);
} sl_journal_visit_t;

/* Read back what the journal holds (at open, before any record). A record
 * a callback refuses with SL_ERR_MSG_* or SL_ERR_INVALID is counted
 * unusable and skipped; another error stops the walk and is returned. */
sl_status_t sl_journal_restore(sl_journal_t *j, int64_t now_ms, const sl_journal_visit_t *v,
                               void *arg);

/* The bound the journal keeps on sequence numbers handed out: every seq
 * recorded, and every seq below the bound, may be in use; a restarted
 * core starts above it. sl_journal_accept raises it ahead of need. */
uint64_t sl_journal_seq_bound(const sl_journal_t *j);

/* Delete results older than retain_ms, except those an accepts row still
 * written needs to tell its finished jobs from its live ones (with the
 * next batch). */
sl_status_t sl_journal_forget(sl_journal_t *j, int64_t now_ms);

void sl_journal_stats(sl_journal_t *j, sl_journal_stats_t *st);

#endif
