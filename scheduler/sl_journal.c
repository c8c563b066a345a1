/*
 * The scheduler's journal (see sl_journal.h).
 *
 * One SQLite table holds a row per job, keyed by the client's id: while
 * the job is live the row carries what rebuilds it (the Job encoding as
 * the client sent it, its seq, tenant and client routing identity); when
 * it finishes the job bytes are dropped and the packed Result is kept, so
 * a resubmission after a restart gets the same answer, until retain_ms
 * has passed and the row is deleted. A small meta table holds the schema
 * version and a bound on the seqs handed out, so a restarted core never
 * reuses a seq an executor may still hold from before the crash.
 *
 * WAL mode makes a commit one append to the -wal file (and, with
 * synchronous=FULL, one fsync of it); readers never block the writer and
 * a torn tail of the WAL is ignored at the next open, so a crash at any
 * point leaves the last committed state. Writes are grouped: the first
 * record opens a transaction, and sl_journal_commit (once per loop turn)
 * or the batch bound ends it, so the cost of the sync is shared by every
 * accept of the turn. SQLite's own checkpointing (wal_autocheckpoint)
 * folds the WAL back into the file.
 *
 * Alternatives rejected: an append-only log of our own (its torn-record
 * detection, compaction and index for lookups by id are what SQLite
 * already gets right, and the brief is durability, not the last few
 * microseconds); one transaction per job (a sync per accept: about a
 * hundred times slower on a disk).
 */
#include "scheduler/sl_journal.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The schema this code writes; another is refused. */
#define S_VERSION 1
/* How far ahead of the highest seq written the seq bound is raised. */
#define S_SEQ_STEP 65536

enum {
    S_ST_BEGIN,
    S_ST_COMMIT,
    S_ST_ACCEPT,
    S_ST_DONE,
    S_ST_FORGET,
    S_ST_BOUND,
    S_ST_COUNT,
};

static const char *const s_sql[S_ST_COUNT] = {
    [S_ST_BEGIN] = "BEGIN",
    [S_ST_COMMIT] = "COMMIT",
    [S_ST_ACCEPT] = "INSERT OR REPLACE INTO jobs(id, seq, tenant, client, job, result, done_at) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL)",
    [S_ST_DONE] = "UPDATE jobs SET job = NULL, result = ?2, done_at = ?3 WHERE id = ?1",
    [S_ST_FORGET] = "DELETE FROM jobs WHERE done_at IS NOT NULL AND done_at < ?1",
    [S_ST_BOUND] = "INSERT OR REPLACE INTO meta(k, v) VALUES ('seq_bound', ?1)",
};

struct sl_journal {
    sl_journal_cfg_t cfg;         /* configuration (path copied below) */
    char *path;                   /* the file */
    sqlite3 *db;                  /* the connection */
    sqlite3_stmt *st[S_ST_COUNT]; /* prepared statements */
    bool in_tx;                   /* a transaction is open */
    int n_tx;                     /* records in it */
    uint64_t seq_bound;           /* see sl_journal_seq_bound */
    sl_journal_stats_t stats;     /* counters */
};

/* Log a failed SQLite call on the journal with its message. */
static sl_status_t s_fail(sl_journal_t *j, const char *what)
{
    j->stats.errors++;
    SL_ERROR("journal %s: %s failed: %s", j->path, what, sqlite3_errmsg(j->db));
    return SL_ERR_IO;
}

/* Run one statement st (reset after). SQLITE_DONE or SQLITE_ROW is success. */
static sl_status_t s_run(sl_journal_t *j, int st, const char *what)
{
    int rc = sqlite3_step(j->st[st]);
    sqlite3_reset(j->st[st]);
    sqlite3_clear_bindings(j->st[st]);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return s_fail(j, what);
    return SL_OK;
}

static sl_status_t s_exec(sl_journal_t *j, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(j->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        SL_ERROR("journal %s is not usable (%s): %s; move it away to start without it", j->path,
                 sql, msg ? msg : sqlite3_errmsg(j->db));
        sqlite3_free(msg);
        return SL_ERR_IO;
    }
    return SL_OK;
}

/* One integer of a single-row query; false when there is no row. */
static bool s_int(sl_journal_t *j, const char *sql, int64_t *v_p)
{
    sqlite3_stmt *q = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(j->db, sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        *v_p = sqlite3_column_int64(q, 0);
        found = true;
    }
    sqlite3_finalize(q);
    return found;
}

/* The file is SQLite, intact, and of our schema (created when empty). */
static sl_status_t s_schema(sl_journal_t *j)
{
    sqlite3_stmt *q = NULL;
    /* quick_check reads every page: a torn or overwritten file is found here,
     * not in the middle of a restore. */
    if (sqlite3_prepare_v2(j->db, "PRAGMA quick_check", -1, &q, NULL) != SQLITE_OK) {
        SL_ERROR("journal %s is not usable: %s; move it away to start without it", j->path,
                 sqlite3_errmsg(j->db));
        return SL_ERR_IO;
    }
    int rc = sqlite3_step(q);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
    if (!res || strcmp(res, "ok") != 0) {
        SL_ERROR("journal %s is damaged (%.200s); move it away to start without it", j->path,
                 res ? res : sqlite3_errmsg(j->db));
        sqlite3_finalize(q);
        return SL_ERR_IO;
    }
    sqlite3_finalize(q);
    if (s_exec(j, "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
                  "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
                  "tenant TEXT NOT NULL, client BLOB, job BLOB, result BLOB, done_at INTEGER);"
                  "CREATE INDEX IF NOT EXISTS jobs_done ON jobs(done_at) "
                  "WHERE done_at IS NOT NULL;"
                  "INSERT OR IGNORE INTO meta(k, v) VALUES ('version', 1);") != SL_OK)
        return SL_ERR_IO;
    int64_t version = 0, bound = 0;
    if (!s_int(j, "SELECT v FROM meta WHERE k = 'version'", &version) || version != S_VERSION) {
        SL_ERROR("journal %s has schema version %lld, this scheduler writes %d; move it away "
                 "to start without it",
                 j->path, (long long)version, S_VERSION);
        return SL_ERR_IO;
    }
    int64_t max_seq = 0;
    (void)s_int(j, "SELECT v FROM meta WHERE k = 'seq_bound'", &bound);
    (void)s_int(j, "SELECT COALESCE(MAX(seq), 0) FROM jobs", &max_seq);
    j->seq_bound = (uint64_t)(bound > max_seq ? bound : max_seq + 1);
    return SL_OK;
}

sl_status_t sl_journal_open(const sl_journal_cfg_t *cfg, sl_journal_t **journal_p)
{
    if (!cfg->path || !cfg->path[0] || cfg->batch < 1)
        return SL_ERR_INVALID;
    sl_journal_t *j = calloc(1, sizeof(*j));
    if (!j)
        return SL_ERR_NOMEM;
    j->cfg = *cfg;
    j->path = strdup(cfg->path);
    j->cfg.path = j->path;
    if (!j->path) {
        free(j);
        return SL_ERR_NOMEM;
    }
    int rc = sqlite3_open_v2(
        j->path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        SL_ERROR("cannot open journal %s: %s", j->path,
                 j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
        goto err_close;
    }
    char pragmas[256];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; "
             "PRAGMA wal_autocheckpoint = %lld; PRAGMA locking_mode = EXCLUSIVE;",
             cfg->sync_full ? "FULL" : "NORMAL", (long long)cfg->checkpoint_pages);
    /* Exclusive locking: a second scheduler on the same file fails here
     * instead of interleaving its writes with ours. */
    if (s_exec(j, pragmas) != SL_OK || s_schema(j) != SL_OK)
        goto err_close;
    for (int i = 0; i < S_ST_COUNT; i++) {
        if (sqlite3_prepare_v3(j->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &j->st[i], NULL) !=
            SQLITE_OK) {
            SL_ERROR("journal %s: cannot prepare '%s': %s", j->path, s_sql[i],
                     sqlite3_errmsg(j->db));
            goto err_close;
        }
    }
    *journal_p = j;
    return SL_OK;

err_close:
    for (int i = 0; i < S_ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    sqlite3_close(j->db);
    free(j->path);
    free(j);
    return SL_ERR_IO;
}

void sl_journal_close(sl_journal_t **journal_p)
{
    sl_journal_t *j = *journal_p;
    if (!j)
        return;
    (void)sl_journal_commit(j);
    for (int i = 0; i < S_ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    sqlite3_close(j->db);
    free(j->path);
    free(j);
    *journal_p = NULL;
}

/* Open a transaction for the next record, committing a full one first. */
static sl_status_t s_tx(sl_journal_t *j)
{
    if (j->in_tx && j->n_tx >= j->cfg.batch) {
        sl_status_t st = sl_journal_commit(j);
        if (st != SL_OK)
            return st;
    }
    if (!j->in_tx) {
        sl_status_t st = s_run(j, S_ST_BEGIN, "begin");
        if (st != SL_OK)
            return st;
        j->in_tx = true;
        j->n_tx = 0;
    }
    j->n_tx++;
    return SL_OK;
}

sl_status_t sl_journal_accept(sl_journal_t *j, const sl_journal_rec_t *rec)
{
    sl_status_t st = s_tx(j);
    if (st != SL_OK)
        return st;
    if (rec->seq >= j->seq_bound) {
        j->seq_bound = rec->seq + S_SEQ_STEP;
        sqlite3_bind_int64(j->st[S_ST_BOUND], 1, (sqlite3_int64)j->seq_bound);
        if ((st = s_run(j, S_ST_BOUND, "raising the seq bound")) != SL_OK)
            return st;
    }
    sqlite3_stmt *q = j->st[S_ST_ACCEPT];
    sqlite3_bind_text(q, 1, rec->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)rec->seq);
    sqlite3_bind_text(q, 3, rec->tenant ? rec->tenant : "", -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 4, rec->client, (int)rec->client_len, SQLITE_STATIC);
    sqlite3_bind_blob(q, 5, rec->job, (int)rec->job_len, SQLITE_STATIC);
    if ((st = s_run(j, S_ST_ACCEPT, "writing an accepted job")) != SL_OK)
        return st;
    j->stats.accepts++;
    return SL_OK;
}

sl_status_t sl_journal_done(sl_journal_t *j, const char *id, const void *result, size_t len,
                            int64_t now_ms)
{
    sl_status_t st = s_tx(j);
    if (st != SL_OK)
        return st;
    sqlite3_stmt *q = j->st[S_ST_DONE];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, len ? result : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, now_ms);
    if ((st = s_run(j, S_ST_DONE, "writing a result")) != SL_OK)
        return st;
    j->stats.results++;
    return SL_OK;
}

sl_status_t sl_journal_commit(sl_journal_t *j)
{
    if (!j->in_tx)
        return SL_OK;
    sl_time_t t0 = sl_clock_now();
    j->in_tx = false;
    j->n_tx = 0;
    sl_status_t st = s_run(j, S_ST_COMMIT, "commit");
    if (st != SL_OK && !sqlite3_get_autocommit(j->db))
        (void)sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    if (st == SL_OK)
        j->stats.commits++;
    j->stats.commit_us += (uint64_t)((sl_clock_now() - t0) / SL_NS_PER_US);
    return st;
}

bool sl_journal_pending(const sl_journal_t *j)
{
    return j->in_tx;
}

uint64_t sl_journal_seq_bound(const sl_journal_t *j)
{
    return j->seq_bound;
}

/* A callback's refusal of one record: skipped (counted) or fatal. */
static bool s_skippable(sl_status_t st)
{
    return st == SL_ERR_INVALID || (st <= SL_ERR_MSG_MALFORMED && st >= SL_ERR_MSG_UNEXPECTED);
}

sl_status_t sl_journal_restore(sl_journal_t *j, int64_t now_ms, const sl_journal_visit_t *v,
                               void *arg)
{
    sqlite3_stmt *q = NULL;
    sl_status_t st = SL_OK;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT id, seq, tenant, client, job FROM jobs "
                           "WHERE done_at IS NULL ORDER BY seq",
                           -1, &q, NULL) != SQLITE_OK)
        return s_fail(j, "reading the live jobs");
    int rc = SQLITE_DONE;
    while (st == SL_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        sl_journal_rec_t rec = {
            .id = (const char *)sqlite3_column_text(q, 0),
            .seq = (uint64_t)sqlite3_column_int64(q, 1),
            .tenant = (const char *)sqlite3_column_text(q, 2),
            .client = sqlite3_column_blob(q, 3),
            .client_len = (size_t)sqlite3_column_bytes(q, 3),
            .job = sqlite3_column_blob(q, 4),
            .job_len = (size_t)sqlite3_column_bytes(q, 4),
        };
        if (!rec.id || !rec.job || !rec.job_len || rec.seq == 0) {
            j->stats.unusable++;
            continue;
        }
        st = v->live(arg, &rec);
        if (s_skippable(st)) {
            SL_WARN("journal %s: job '%s' cannot be restored: %s", j->path, rec.id,
                    sl_status_str(st));
            j->stats.unusable++;
            st = SL_OK;
        }
    }
    if (st == SL_OK && rc != SQLITE_DONE)
        st = s_fail(j, "reading the live jobs");
    sqlite3_finalize(q);
    if (st != SL_OK)
        return st;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT id, result FROM jobs WHERE done_at IS NOT NULL "
                           "AND done_at >= ?1 ORDER BY done_at",
                           -1, &q, NULL) != SQLITE_OK)
        return s_fail(j, "reading the finished jobs");
    sqlite3_bind_int64(q, 1, now_ms - j->cfg.retain_ms);
    while (st == SL_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        if (!id) {
            j->stats.unusable++;
            continue;
        }
        st = v->done(arg, id, sqlite3_column_blob(q, 1), (size_t)sqlite3_column_bytes(q, 1));
        if (s_skippable(st) || st == SL_ERR_EXISTS) {
            j->stats.unusable++;
            st = SL_OK;
        }
    }
    if (st == SL_OK && rc != SQLITE_DONE)
        st = s_fail(j, "reading the finished jobs");
    sqlite3_finalize(q);
    return st;
}

sl_status_t sl_journal_forget(sl_journal_t *j, int64_t now_ms)
{
    sl_status_t st = s_tx(j);
    if (st != SL_OK)
        return st;
    sqlite3_bind_int64(j->st[S_ST_FORGET], 1, now_ms - j->cfg.retain_ms);
    if ((st = s_run(j, S_ST_FORGET, "deleting old results")) != SL_OK)
        return st;
    j->stats.forgotten += (uint64_t)sqlite3_changes(j->db);
    return SL_OK;
}

void sl_journal_stats(const sl_journal_t *j, sl_journal_stats_t *st)
{
    *st = j->stats;
}
