/*
 * The scheduler's journal (see sl_journal.h).
 *
 * Records are written in batches, one per commit: the accepts gathered
 * since the last batch go into one row of the accepts table, the results
 * into one row of the results table, both keyed by the batch number (one
 * counter for both, so batches are ordered). Each row is the batch's records packed back to
 * back: an accept carries what rebuilds the job (its seq, id, tenant,
 * client routing identity and the Job encoding as the client sent it), a
 * result the seq, the id and the packed Result. A job is live when its
 * accept is in a row and no result of it is; so that old results can go,
 * the journal counts in memory the live jobs of each accepts row and
 * deletes the row when its last job finishes (a row whose jobs all
 * finished within their batch is never written at all). A results row goes
 * once older than retain_ms and older than every accepts row left.
 * A meta table holds the schema version and a bound on the seqs handed
 * out, so a restarted core never reuses a seq an executor may still hold.
 *
 * WAL mode makes a commit one append to the -wal file (and, with
 * synchronous=FULL, one fsync of it); a torn tail of the WAL is ignored at
 * the next open, so a crash at any point leaves the last committed state.
 * SQLite's own checkpointing (wal_autocheckpoint) folds the WAL back in.
 *
 * The owner's thread only packs records into the open batch. A writer
 * thread of the journal's own does every SQLite call after the restore:
 * the owner hands it the open batch when it is idle (the two batches swap,
 * under a lock) and polls an eventfd that says a batch was written; while
 * the writer syncs one batch, the next gathers, so one sync serves every
 * record of a burst and the owner's loop never waits on the disk. The
 * live-job counts and the open batch are the owner's alone; what the
 * writer shares (the batch handed over, the counters, the number of the
 * last batch written) is under the lock.
 *
 * Alternatives rejected: a row per job (two statements per job, accept and
 * result: the journal then cost the scheduler three times its own work per
 * job, against a few hundred nanoseconds of copying per job here, and a
 * few statements per turn); one transaction per job (a sync per accept:
 * about a hundred times slower on a disk); an append-only log of our own
 * (torn-record detection, compaction and checkpoints are what SQLite
 * already gets right); committing in the owner's loop (it then stalled
 * for every sync, and its answers could not overlap the next turns).
 */
#include "scheduler/sl_journal.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_map.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The schema this code writes; another is refused. */
#define S_VERSION 2
/* How far ahead of the highest seq written the seq bound is raised. */
#define S_SEQ_STEP 65536
/* Header of a packed accept: seq, then the lengths of id, tenant, client, job. */
#define S_ACC_HEAD (8 + 4 * 4)
/* Header of a packed result: seq, then the lengths of id and result. */
#define S_RES_HEAD (8 + 2 * 4)

enum {
    S_ST_BEGIN,
    S_ST_COMMIT,
    S_ST_ACCEPTS,
    S_ST_RESULTS,
    S_ST_DROP,
    S_ST_FORGET,
    S_ST_BOUND,
    S_ST_COUNT,
};

static const char *const s_sql[S_ST_COUNT] = {
    [S_ST_BEGIN] = "BEGIN",
    [S_ST_COMMIT] = "COMMIT",
    [S_ST_ACCEPTS] = "INSERT INTO accepts(batch, recs) VALUES (?1, ?2)",
    [S_ST_RESULTS] = "INSERT INTO results(batch, recs, done_at) VALUES (?1, ?2, ?3)",
    [S_ST_DROP] = "DELETE FROM accepts WHERE batch = ?1",
    [S_ST_FORGET] = "DELETE FROM results WHERE done_at < ?1 AND "
                    "batch < (SELECT COALESCE(MIN(batch), ?2) FROM accepts)",
    [S_ST_BOUND] = "INSERT OR REPLACE INTO meta(k, v) VALUES ('seq_bound', ?1)",
};

/* A growing byte buffer (a batch being packed). */
typedef struct s_buf {
    uint8_t *data; /* bytes */
    size_t len;    /* used */
    size_t cap;    /* allocated */
    uint32_t n;    /* records in it */
} s_buf_t;

/* One batch: what one transaction writes. */
typedef struct s_batch {
    uint64_t no;             /* its number */
    s_buf_t acc;             /* accepts, packed */
    s_buf_t res;             /* results, packed */
    int64_t res_at;          /* the wall-clock ms of its latest result */
    uint64_t *drop;          /* accepts rows to delete (their jobs all finished) */
    size_t n_drop, cap_drop; /* entries and room of drop */
    bool write_acc;          /* its accepts row is written (some of its jobs are live) */
    uint64_t bound;          /* the seq bound to write (0: unchanged) */
    int64_t forget_before;   /* delete results older than this (INT64_MIN: none) */
} s_batch_t;

struct sl_journal {
    sl_journal_cfg_t cfg;         /* configuration (path copied below) */
    char *path;                   /* the file */
    sqlite3 *db;                  /* the connection (the writer's once it runs) */
    sqlite3_stmt *st[S_ST_COUNT]; /* prepared statements */
    s_batch_t cur;                /* the open batch (the owner's thread fills it) */
    s_batch_t w;                  /* the batch being written (the writer's while busy) */
    sl_map_t live;                /* batch -> jobs of it not finished (as a pointer-sized count) */
    uint64_t seq_bound;           /* see sl_journal_seq_bound */
    bool bound_dirty;             /* seq_bound to be written with the open batch */
    sl_journal_stats_t stats;     /* the writer's counters (under lock) */
    uint64_t accepts, results;    /* the owner's counters */
    uint64_t unusable;            /* records skipped at restore */
    uint64_t w_errors;            /* failed writes, the writer's count */
    /* the writer thread */
    pthread_t thread;     /* it */
    bool started;         /* it runs */
    pthread_mutex_t lock; /* guards what follows, stats and w while handed over */
    pthread_cond_t wake;  /* the writer waits here for a batch or the stop */
    pthread_cond_t idle;  /* sl_journal_commit waits here for the writer */
    bool busy;            /* w is handed to the writer */
    bool stop;            /* the writer exits */
    uint64_t durable;     /* the last batch written (committed or failed) */
    int efd;              /* eventfd the writer signals after each batch */
};

/* Log a failed SQLite call on the journal with its message. */
static sl_status_t s_fail(sl_journal_t *j, const char *what)
{
    j->w_errors++;
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
        if (sqlite3_errcode(j->db) == SQLITE_BUSY) {
            SL_ERROR("journal %s is in use by another process (another scheduler?)", j->path);
            sqlite3_free(msg);
            return SL_ERR_IO;
        }
        SL_ERROR("journal %s is not usable (%.60s...): %s; move it away to start without it",
                 j->path, sql, msg ? msg : sqlite3_errmsg(j->db));
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
                  "INSERT OR IGNORE INTO meta(k, v) VALUES ('version', 2);"
                  "CREATE TABLE IF NOT EXISTS accepts(batch INTEGER PRIMARY KEY, recs BLOB);"
                  "CREATE TABLE IF NOT EXISTS results(batch INTEGER PRIMARY KEY, recs BLOB, "
                  "done_at INTEGER NOT NULL);") != SL_OK)
        return SL_ERR_IO;
    int64_t version = 0, bound = 0, batch = 0;
    if (!s_int(j, "SELECT v FROM meta WHERE k = 'version'", &version) || version != S_VERSION) {
        SL_ERROR("journal %s has schema version %lld, this scheduler writes %d; move it away "
                 "to start without it",
                 j->path, (long long)version, S_VERSION);
        return SL_ERR_IO;
    }
    (void)s_int(j, "SELECT v FROM meta WHERE k = 'seq_bound'", &bound);
    (void)s_int(j,
                "SELECT MAX(COALESCE((SELECT MAX(batch) FROM accepts), 0), "
                "COALESCE((SELECT MAX(batch) FROM results), 0))",
                &batch);
    j->seq_bound = (uint64_t)(bound > 0 ? bound : 1);
    j->cur.no = (uint64_t)batch + 1;
    j->durable = j->cur.no - 1;
    return SL_OK;
}

static void s_batch_clear(s_batch_t *b);
static void s_batch_fini(s_batch_t *b);
static void *s_writer(void *arg);

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
    sl_map_init(&j->live);
    s_batch_clear(&j->cur);
    s_batch_clear(&j->w);
    j->efd = -1;
    if (!j->path) {
        free(j);
        return SL_ERR_NOMEM;
    }
    /* One thread uses SQLite in this process: no mutexes, no memory
     * statistics. Refused once SQLite is initialized (a second journal in
     * one process), which is harmless. */
    (void)sqlite3_config(SQLITE_CONFIG_SINGLETHREAD);
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
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
    /* The writer: SQLite is used by one thread at a time (the owner's
     * restore before any batch is handed over, then the writer's). */
    j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (j->efd < 0) {
        SL_ERROR("journal %s: eventfd: %m", j->path);
        goto err_close;
    }
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->wake, NULL);
    pthread_cond_init(&j->idle, NULL);
    if (pthread_create(&j->thread, NULL, s_writer, j) != 0) {
        SL_ERROR("journal %s: cannot start its writer thread", j->path);
        pthread_cond_destroy(&j->idle);
        pthread_cond_destroy(&j->wake);
        pthread_mutex_destroy(&j->lock);
        goto err_close;
    }
    j->started = true;
    *journal_p = j;
    return SL_OK;

err_close:
    if (j->efd >= 0)
        close(j->efd);
    for (int i = 0; i < S_ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    sqlite3_close(j->db);
    sl_map_fini(&j->live);
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
    pthread_mutex_lock(&j->lock);
    j->stop = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
    pthread_cond_destroy(&j->idle);
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->lock);
    close(j->efd);
    for (int i = 0; i < S_ST_COUNT; i++)
        sqlite3_finalize(j->st[i]);
    sqlite3_close(j->db);
    s_batch_fini(&j->cur);
    s_batch_fini(&j->w);
    sl_map_fini(&j->live);
    free(j->path);
    free(j);
    *journal_p = NULL;
}

/* Room for len more bytes in b; a pointer to them, or NULL. */
static uint8_t *s_buf_grow(s_buf_t *b, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return NULL;
        b->data = d;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->len;
    b->len += len;
    return p;
}

static uint8_t *s_put(uint8_t *p, const void *src, size_t len)
{
    if (len)
        memcpy(p, src, len);
    return p + len;
}

static uint8_t *s_put32(uint8_t *p, size_t v)
{
    uint32_t x = (uint32_t)v;
    return s_put(p, &x, 4);
}

static uint64_t s_live_get(const sl_journal_t *j, uint64_t batch)
{
    return (uint64_t)(uintptr_t)sl_map_get(&j->live, batch);
}

/* Set batch's count of live jobs (0: forgotten). */
static sl_status_t s_live_set(sl_journal_t *j, uint64_t batch, uint64_t n)
{
    if (!n) {
        sl_map_del(&j->live, batch);
        return SL_OK;
    }
    if (sl_map_swap(&j->live, batch, (void *)(uintptr_t)n))
        return SL_OK;
    return sl_map_put(&j->live, batch, (void *)(uintptr_t)n);
}

/* Delete accepts row `row` with batch b. */
static sl_status_t s_drop_add(s_batch_t *b, uint64_t row)
{
    if (b->n_drop == b->cap_drop) {
        size_t cap = b->cap_drop ? b->cap_drop * 2 : 64;
        uint64_t *d = realloc(b->drop, cap * sizeof(*d));
        if (!d)
            return SL_ERR_NOMEM;
        b->drop = d;
        b->cap_drop = cap;
    }
    b->drop[b->n_drop++] = row;
    return SL_OK;
}

static bool s_batch_pending(const s_batch_t *b)
{
    return b->acc.n || b->res.n || b->n_drop || b->bound || b->forget_before != INT64_MIN;
}

static void s_batch_clear(s_batch_t *b)
{
    b->acc.len = b->res.len = 0;
    b->acc.n = b->res.n = 0;
    b->n_drop = 0;
    b->bound = 0;
    b->write_acc = false;
    b->forget_before = INT64_MIN;
}

static void s_batch_fini(s_batch_t *b)
{
    free(b->acc.data);
    free(b->res.data);
    free(b->drop);
}

/* Write batch b in one transaction (the writer thread, or the owner's
 * before the writer runs). */
static sl_status_t s_write(sl_journal_t *j, s_batch_t *b, uint64_t *forgotten_p)
{
    sl_status_t st = s_run(j, S_ST_BEGIN, "begin");
    if (st == SL_OK && b->write_acc) {
        sqlite3_bind_int64(j->st[S_ST_ACCEPTS], 1, (sqlite3_int64)b->no);
        sqlite3_bind_blob(j->st[S_ST_ACCEPTS], 2, b->acc.data, (int)b->acc.len, SQLITE_STATIC);
        st = s_run(j, S_ST_ACCEPTS, "writing accepted jobs");
    }
    if (st == SL_OK && b->res.n) {
        sqlite3_bind_int64(j->st[S_ST_RESULTS], 1, (sqlite3_int64)b->no);
        sqlite3_bind_blob(j->st[S_ST_RESULTS], 2, b->res.data, (int)b->res.len, SQLITE_STATIC);
        sqlite3_bind_int64(j->st[S_ST_RESULTS], 3, b->res_at);
        st = s_run(j, S_ST_RESULTS, "writing results");
    }
    for (size_t i = 0; st == SL_OK && i < b->n_drop; i++) {
        sqlite3_bind_int64(j->st[S_ST_DROP], 1, (sqlite3_int64)b->drop[i]);
        st = s_run(j, S_ST_DROP, "deleting finished jobs");
    }
    if (st == SL_OK && b->bound) {
        sqlite3_bind_int64(j->st[S_ST_BOUND], 1, (sqlite3_int64)b->bound);
        st = s_run(j, S_ST_BOUND, "raising the seq bound");
    }
    if (st == SL_OK && b->forget_before != INT64_MIN) {
        sqlite3_bind_int64(j->st[S_ST_FORGET], 1, b->forget_before);
        sqlite3_bind_int64(j->st[S_ST_FORGET], 2, (sqlite3_int64)b->no);
        st = s_run(j, S_ST_FORGET, "deleting old results");
        *forgotten_p = st == SL_OK ? (uint64_t)sqlite3_changes(j->db) : 0;
    }
    if (st == SL_OK)
        st = s_run(j, S_ST_COMMIT, "commit");
    if (st != SL_OK && !sqlite3_get_autocommit(j->db))
        (void)sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

/* The writer thread: writes each batch handed to it, then tells the owner
 * (eventfd) and any sl_journal_commit waiting. A failed batch is dropped,
 * logged and counted: its jobs go on, but would not survive a crash. */
static void *s_writer(void *arg)
{
    sl_journal_t *j = arg;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->busy && !j->stop)
            pthread_cond_wait(&j->wake, &j->lock);
        if (!j->busy)
            break;
        pthread_mutex_unlock(&j->lock);
        sl_time_t t0 = sl_clock_now();
        uint64_t forgotten = 0;
        sl_status_t st = s_write(j, &j->w, &forgotten);
        uint64_t us = (uint64_t)((sl_clock_now() - t0) / SL_NS_PER_US);
        pthread_mutex_lock(&j->lock);
        j->stats.commits += st == SL_OK;
        j->stats.commit_us += us;
        j->stats.forgotten += forgotten;
        j->stats.errors = j->w_errors;
        j->durable = j->w.no;
        s_batch_clear(&j->w);
        j->busy = false;
        pthread_cond_broadcast(&j->idle);
        uint64_t one = 1;
        if (write(j->efd, &one, sizeof(one)) < 0) { /* the counter cannot overflow here */
        }
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* Hand the open batch to the writer when it is idle (lock held). */
static void s_hand_locked(sl_journal_t *j)
{
    if (j->busy || !s_batch_pending(&j->cur))
        return;
    j->cur.write_acc = j->cur.acc.n && s_live_get(j, j->cur.no);
    if (j->bound_dirty)
        j->cur.bound = j->seq_bound;
    j->bound_dirty = false;
    s_batch_t t = j->w;
    j->w = j->cur;
    j->cur = t;
    j->cur.no = j->w.no + 1;
    s_batch_clear(&j->cur);
    j->busy = true;
    pthread_cond_signal(&j->wake);
}

void sl_journal_kick(sl_journal_t *j)
{
    pthread_mutex_lock(&j->lock);
    s_hand_locked(j);
    pthread_mutex_unlock(&j->lock);
}

uint64_t sl_journal_mark(const sl_journal_t *j)
{
    return s_batch_pending(&j->cur) ? j->cur.no : j->cur.no - 1;
}

uint64_t sl_journal_durable(sl_journal_t *j)
{
    uint64_t eat;
    if (read(j->efd, &eat, sizeof(eat)) < 0) { /* nothing to clear: EAGAIN */
    }
    pthread_mutex_lock(&j->lock);
    uint64_t d = j->durable;
    pthread_mutex_unlock(&j->lock);
    return d;
}

int sl_journal_fd(const sl_journal_t *j)
{
    return j->efd;
}

sl_status_t sl_journal_commit(sl_journal_t *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t errors = j->stats.errors;
    while (j->busy)
        pthread_cond_wait(&j->idle, &j->lock);
    s_hand_locked(j);
    while (j->busy)
        pthread_cond_wait(&j->idle, &j->lock);
    sl_status_t st = j->stats.errors == errors ? SL_OK : SL_ERR_IO;
    pthread_mutex_unlock(&j->lock);
    return st;
}

/* Commit first when the open batch is full. */
static sl_status_t s_room(sl_journal_t *j)
{
    if (j->cur.acc.n + j->cur.res.n >= (uint32_t)j->cfg.batch)
        return sl_journal_commit(j);
    return SL_OK;
}

sl_status_t sl_journal_accept(sl_journal_t *j, const sl_journal_rec_t *rec, uint64_t *batch_p)
{
    sl_status_t st = s_room(j);
    if (st != SL_OK)
        return st;
    s_batch_t *b = &j->cur;
    size_t l_id = strlen(rec->id), l_tenant = rec->tenant ? strlen(rec->tenant) : 0;
    size_t need = S_ACC_HEAD + l_id + l_tenant + rec->client_len + rec->job_len;
    uint8_t *p = s_buf_grow(&b->acc, need);
    if (!p || s_live_set(j, b->no, s_live_get(j, b->no) + 1) != SL_OK) {
        if (p)
            b->acc.len -= need;
        SL_ERROR("journal %s: out of memory for job '%s'", j->path, rec->id);
        return SL_ERR_NOMEM;
    }
    p = s_put(p, &rec->seq, 8);
    p = s_put32(p, l_id);
    p = s_put32(p, l_tenant);
    p = s_put32(p, rec->client_len);
    p = s_put32(p, rec->job_len);
    p = s_put(p, rec->id, l_id);
    p = s_put(p, rec->tenant, l_tenant);
    p = s_put(p, rec->client, rec->client_len);
    s_put(p, rec->job, rec->job_len);
    b->acc.n++;
    if (rec->seq + S_SEQ_STEP / 2 >= j->seq_bound) { /* raised well ahead of need */
        j->seq_bound = rec->seq + S_SEQ_STEP;
        j->bound_dirty = true;
    }
    j->accepts++;
    *batch_p = b->no;
    return SL_OK;
}

sl_status_t sl_journal_done(sl_journal_t *j, uint64_t batch, uint64_t seq, const char *id,
                            const void *result, size_t len, int64_t now_ms)
{
    sl_status_t st = s_room(j);
    if (st != SL_OK)
        return st;
    s_batch_t *b = &j->cur;
    size_t l_id = strlen(id);
    uint8_t *p = s_buf_grow(&b->res, S_RES_HEAD + l_id + len);
    if (!p) {
        SL_ERROR("journal %s: out of memory for the result of '%s'", j->path, id);
        return SL_ERR_NOMEM;
    }
    p = s_put(p, &seq, 8);
    p = s_put32(p, l_id);
    p = s_put32(p, len);
    p = s_put(p, id, l_id);
    s_put(p, result, len);
    b->res.n++;
    b->res_at = now_ms;
    j->results++;
    /* The batch's last live job: its row goes (or is never written). */
    uint64_t n = s_live_get(j, batch);
    if (n) {
        (void)s_live_set(j, batch, n - 1);
        if (n == 1 && batch != b->no)
            (void)s_drop_add(b, batch); /* without memory the row stays: restored, its jobs are
                                           found finished */
    }
    return SL_OK;
}

bool sl_journal_pending(const sl_journal_t *j)
{
    return s_batch_pending(&j->cur);
}

uint64_t sl_journal_seq_bound(const sl_journal_t *j)
{
    return j->seq_bound;
}

/* A callback's refusal of one record: skipped (counted) or fatal. */
static bool s_skippable(sl_status_t st)
{
    return st == SL_ERR_INVALID || st == SL_ERR_EXISTS ||
           (st <= SL_ERR_MSG_MALFORMED && st >= SL_ERR_MSG_UNEXPECTED);
}

static uint32_t s_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A NUL-terminated copy of len bytes at p (restore only), or NULL. */
static char *s_str(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* The results rows: finished seqs into done (a set) when done is not
 * NULL, else those within retention handed to v->done. */
static sl_status_t s_restore_results(sl_journal_t *j, int64_t now_ms, const sl_journal_visit_t *v,
                                     void *arg, sl_map_t *done)
{
    sqlite3_stmt *q = NULL;
    sl_status_t st = SL_OK;
    if (sqlite3_prepare_v2(j->db, "SELECT recs, done_at FROM results ORDER BY batch", -1, &q,
                           NULL) != SQLITE_OK)
        return s_fail(j, "reading the results");
    int rc = SQLITE_DONE;
    while (st == SL_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const uint8_t *p = sqlite3_column_blob(q, 0);
        size_t len = (size_t)sqlite3_column_bytes(q, 0);
        bool keep = !done && sqlite3_column_int64(q, 1) >= now_ms - j->cfg.retain_ms;
        if (!done && !keep)
            continue;
        for (size_t off = 0; st == SL_OK && off < len;) {
            if (len - off < S_RES_HEAD) {
                j->unusable += done ? 1 : 0;
                break;
            }
            uint64_t seq;
            memcpy(&seq, p + off, 8);
            size_t l_id = s_get32(p + off + 8), l_res = s_get32(p + off + 12);
            if (len - off - S_RES_HEAD < l_id || len - off - S_RES_HEAD - l_id < l_res) {
                j->unusable += done ? 1 : 0;
                break;
            }
            const uint8_t *b = p + off + S_RES_HEAD;
            off += S_RES_HEAD + l_id + l_res;
            if (done && seq && sl_map_put(done, seq, (void *)1) != SL_OK) {
                st = SL_ERR_NOMEM;
                break;
            }
            if (!keep)
                continue;
            char *id = s_str(b, l_id);
            if (!id) {
                st = SL_ERR_NOMEM;
                break;
            }
            st = v->done(arg, id, b + l_id, l_res);
            if (s_skippable(st)) {
                if (st != SL_ERR_EXISTS) /* an id accepted again since */
                    j->unusable++;
                st = SL_OK;
            }
            free(id);
        }
    }
    if (st == SL_OK && rc != SQLITE_DONE)
        st = s_fail(j, "reading the results");
    sqlite3_finalize(q);
    return st;
}

/* One packed accept of batch at p (len bytes left): handed to v->live
 * unless finished; *used_p is its size (0: damaged). */
static sl_status_t s_restore_accept(sl_journal_t *j, uint64_t batch, const uint8_t *p, size_t len,
                                    const sl_journal_visit_t *v, void *arg, const sl_map_t *done,
                                    size_t *used_p)
{
    *used_p = 0;
    if (len < S_ACC_HEAD)
        return SL_OK;
    uint64_t seq;
    memcpy(&seq, p, 8);
    size_t l[4], total = S_ACC_HEAD;
    for (int i = 0; i < 4; i++) {
        l[i] = s_get32(p + 8 + 4 * i);
        if (len - total < l[i])
            return SL_OK;
        total += l[i];
    }
    *used_p = total;
    if (sl_map_get(done, seq))
        return SL_OK;
    const uint8_t *b = p + S_ACC_HEAD;
    char *id = s_str(b, l[0]), *tenant = s_str(b + l[0], l[1]);
    sl_status_t st = SL_ERR_NOMEM;
    if (id && tenant) {
        sl_journal_rec_t rec = {.id = id,
                                .seq = seq,
                                .batch = batch,
                                .tenant = tenant,
                                .client = b + l[0] + l[1],
                                .client_len = l[2],
                                .job = b + l[0] + l[1] + l[2],
                                .job_len = l[3]};
        st = !id[0] || !seq || !l[3] ? SL_ERR_INVALID : v->live(arg, &rec);
        if (st == SL_OK)
            st = s_live_set(j, batch, s_live_get(j, batch) + 1);
        else if (s_skippable(st)) {
            SL_WARN("journal %s: job '%s' cannot be restored: %s", j->path, id, sl_status_str(st));
            j->unusable++;
            st = SL_OK;
        }
    }
    free(id);
    free(tenant);
    return st;
}

sl_status_t sl_journal_restore(sl_journal_t *j, int64_t now_ms, const sl_journal_visit_t *v,
                               void *arg)
{
    sl_map_t done;
    sl_map_init(&done);
    sl_status_t st = s_restore_results(j, now_ms, v, arg, &done);
    sqlite3_stmt *q = NULL;
    if (st == SL_OK && sqlite3_prepare_v2(j->db, "SELECT batch, recs FROM accepts ORDER BY batch",
                                          -1, &q, NULL) != SQLITE_OK)
        st = s_fail(j, "reading the accepted jobs");
    int rc = SQLITE_DONE;
    while (st == SL_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        uint64_t batch = (uint64_t)sqlite3_column_int64(q, 0);
        const uint8_t *p = sqlite3_column_blob(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1), used = 0;
        for (size_t off = 0; st == SL_OK && off < len; off += used) {
            st = s_restore_accept(j, batch, p + off, len - off, v, arg, &done, &used);
            if (st == SL_OK && !used) {
                j->unusable++;
                break;
            }
        }
        /* A row none of whose jobs is live any more goes with the next batch. */
        if (st == SL_OK && !s_live_get(j, batch))
            st = s_drop_add(&j->cur, batch);
    }
    if (st == SL_OK && q && rc != SQLITE_DONE)
        st = s_fail(j, "reading the accepted jobs");
    sqlite3_finalize(q);
    sl_map_fini(&done);
    /* Finished jobs last: an id finished long ago and accepted again since
     * is the live job's. */
    if (st == SL_OK)
        st = s_restore_results(j, now_ms, v, arg, NULL);
    pthread_mutex_lock(&j->lock);
    j->stats.errors = j->w_errors;
    pthread_mutex_unlock(&j->lock);
    return st;
}

sl_status_t sl_journal_forget(sl_journal_t *j, int64_t now_ms)
{
    j->cur.forget_before = now_ms - j->cfg.retain_ms;
    return SL_OK;
}

void sl_journal_stats(sl_journal_t *j, sl_journal_stats_t *st)
{
    pthread_mutex_lock(&j->lock);
    *st = j->stats;
    pthread_mutex_unlock(&j->lock);
    st->accepts = j->accepts;
    st->results = j->results;
    st->unusable = j->unusable;
}
