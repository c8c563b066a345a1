/*
 * The journal on a temporary file (write, reopen, restore, forget, a crash
 * without close, damaged files) and the core's side of a restart (restored
 * jobs held for the grace, adopted by the executor that lists them, the
 * rest queued; finished ids answered from their receipts), on a simulated
 * clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scheduler/core/sl_core.h"
#include "scheduler/sl_journal.h"
#include "tests/support/sl_test.h"

/* ---- the journal ---- */

typedef struct {
    char dir[64];   /* temp dir */
    char path[128]; /* the journal in it */
} tmp_t;

static void s_tmp(tmp_t *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/sl-journal-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/j.db", t->dir);
}

static void s_tmp_fini(tmp_t *t)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    assert_int_equal(system(cmd), 0);
}

static sl_journal_cfg_t s_cfg(const tmp_t *t)
{
    return (sl_journal_cfg_t){
        .path = t->path, .sync_full = true, .batch = 3, .retain_ms = 1000, .checkpoint_pages = 100};
}

static sl_journal_rec_t s_rec(const char *id, uint64_t seq)
{
    static char job[8][64];
    static int k;
    char *b = job[k++ % 8];
    snprintf(b, 64, "job bytes of %s", id);
    return (sl_journal_rec_t){.id = id,
                              .seq = seq,
                              .tenant = "t1",
                              .client = "cli",
                              .client_len = 3,
                              .job = b,
                              .job_len = strlen(b)};
}

/* What a restore saw. */
typedef struct {
    int n_live;
    char live_id[16][32];
    uint64_t live_seq[16];
    char live_job[16][64];
    char tenant[32];
    int n_done;
    char done_id[16][32];
    char done_res[16][32];
    const char *refuse; /* the live record refused as undecodable */
} seen_t;

static sl_status_t s_live(void *arg, const sl_journal_rec_t *rec)
{
    seen_t *s = arg;
    if (s->refuse && strcmp(rec->id, s->refuse) == 0)
        return SL_ERR_MSG_MALFORMED;
    snprintf(s->live_id[s->n_live], 32, "%s", rec->id);
    s->live_seq[s->n_live] = rec->seq;
    snprintf(s->live_job[s->n_live], 64, "%.*s", (int)rec->job_len, (const char *)rec->job);
    snprintf(s->tenant, sizeof(s->tenant), "%s", rec->tenant);
    assert_int_equal(rec->client_len, 3);
    assert_memory_equal(rec->client, "cli", 3);
    s->n_live++;
    return SL_OK;
}

static sl_status_t s_done(void *arg, const char *id, const void *res, size_t len)
{
    seen_t *s = arg;
    snprintf(s->done_id[s->n_done], 32, "%s", id);
    snprintf(s->done_res[s->n_done], 32, "%.*s", (int)len, (const char *)res);
    s->n_done++;
    return SL_OK;
}

static const sl_journal_visit_t s_visit = {.live = s_live, .done = s_done};

static void test_write_reopen_restore(void **state)
{
    (void)state;
    tmp_t t;
    s_tmp(&t);
    sl_journal_cfg_t cfg = s_cfg(&t);
    sl_journal_t *j = NULL;
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    const char *ids[] = {"a", "b", "c", "d", "e"};
    uint64_t batch[5];
    for (int i = 0; i < 5; i++) {
        sl_journal_rec_t r = s_rec(ids[i], (uint64_t)(10 - i)); /* seqs out of id order */
        assert_int_equal(sl_journal_accept(j, &r, &batch[i]), SL_OK);
    }
    /* batch 3: the fourth record committed the first three */
    sl_journal_stats_t st;
    sl_journal_stats(j, &st);
    assert_int_equal(st.commits, 1);
    assert_true(batch[3] == batch[0] + 1 && batch[4] == batch[3]);
    assert_true(sl_journal_pending(j));
    assert_int_equal(sl_journal_done(j, batch[1], 9, "b", "result b", 8, 5000), SL_OK);
    assert_int_equal(sl_journal_commit(j), SL_OK);
    assert_false(sl_journal_pending(j));
    assert_true(sl_journal_seq_bound(j) > 10);
    sl_journal_close(&j);
    assert_null(j);

    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    assert_true(sl_journal_seq_bound(j) > 10);
    seen_t seen = {0};
    assert_int_equal(sl_journal_restore(j, 5500, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_live, 4);
    /* in the order written: a (10), c (8), then d (7), e (6) */
    assert_string_equal(seen.live_id[0], "a");
    assert_int_equal(seen.live_seq[0], 10);
    assert_string_equal(seen.live_id[3], "e");
    assert_string_equal(seen.live_job[3], "job bytes of e");
    assert_string_equal(seen.tenant, "t1");
    assert_int_equal(seen.n_done, 1);
    assert_string_equal(seen.done_id[0], "b");
    assert_string_equal(seen.done_res[0], "result b");

    /* Past retain_ms the result is no longer handed back, but its row stays
     * while the batch of its job (a and c live) is written. */
    seen = (seen_t){0};
    assert_int_equal(sl_journal_restore(j, 7000, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_done, 0);
    assert_int_equal(seen.n_live, 4);
    assert_int_equal(sl_journal_forget(j, 7000), SL_OK);
    assert_int_equal(sl_journal_commit(j), SL_OK);
    sl_journal_stats(j, &st);
    assert_int_equal(st.forgotten, 0);
    sl_journal_close(&j);

    /* Every job finishes: the accepts rows go, then the old results. */
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    seen = (seen_t){0};
    assert_int_equal(sl_journal_restore(j, 7000, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_live, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            sl_journal_done(j,
                            seen.live_seq[i] == 10 || seen.live_seq[i] == 8 ? batch[0] : batch[3],
                            seen.live_seq[i], seen.live_id[i], "r", 1, 7000),
            SL_OK);
    assert_int_equal(sl_journal_commit(j), SL_OK);
    assert_int_equal(sl_journal_forget(j, 9000), SL_OK);
    assert_int_equal(sl_journal_commit(j), SL_OK);
    sl_journal_stats(j, &st);
    assert_int_equal(st.forgotten, 3); /* b's row, and these in two (batch 3) */
    sl_journal_close(&j);
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    seen = (seen_t){0};
    assert_int_equal(sl_journal_restore(j, 9000, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_live, 0);
    assert_int_equal(seen.n_done, 0);

    /* An undecodable record is skipped and counted, the rest restored. */
    uint64_t bx;
    sl_journal_rec_t r1 = s_rec("x1", 100), r2 = s_rec("x2", 101);
    assert_int_equal(sl_journal_accept(j, &r1, &bx), SL_OK);
    assert_int_equal(sl_journal_accept(j, &r2, &bx), SL_OK);
    sl_journal_close(&j);
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    seen = (seen_t){.refuse = "x1"};
    assert_int_equal(sl_journal_restore(j, 9000, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_live, 1);
    assert_string_equal(seen.live_id[0], "x2");
    sl_journal_stats(j, &st);
    assert_int_equal(st.unusable, 1);
    sl_journal_close(&j);
    s_tmp_fini(&t);
}

/* A job finished in the batch it was accepted in never reaches the
 * accepts table; its result does. */
static void test_same_batch(void **state)
{
    (void)state;
    tmp_t t;
    s_tmp(&t);
    sl_journal_cfg_t cfg = s_cfg(&t);
    cfg.batch = 100;
    sl_journal_t *j = NULL;
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    uint64_t b;
    sl_journal_rec_t r = s_rec("quick", 1);
    assert_int_equal(sl_journal_accept(j, &r, &b), SL_OK);
    assert_int_equal(sl_journal_done(j, b, 1, "quick", "ok", 2, 100), SL_OK);
    sl_journal_close(&j);
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    seen_t seen = {0};
    assert_int_equal(sl_journal_restore(j, 200, &s_visit, &seen), SL_OK);
    assert_int_equal(seen.n_live, 0);
    assert_int_equal(seen.n_done, 1);
    assert_string_equal(seen.done_res[0], "ok");
    sl_journal_close(&j);
    s_tmp_fini(&t);
}

/* Count the live rows a restore sees (beyond the 16 seen_t keeps). */
static sl_status_t s_count(void *arg, const sl_journal_rec_t *rec)
{
    (void)rec;
    (*(int *)arg)++;
    return SL_OK;
}

static sl_status_t s_none(void *arg, const char *id, const void *res, size_t len)
{
    (void)arg, (void)id, (void)res, (void)len;
    return SL_OK;
}

/* A process killed without closing keeps what it committed, and loses
 * what it had not. */
static void test_crash_count(void **state)
{
    (void)state;
    tmp_t t;
    s_tmp(&t);
    sl_journal_cfg_t cfg = s_cfg(&t);
    cfg.batch = 1000;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_journal_t *j = NULL;
        if (sl_journal_open(&cfg, &j) != SL_OK)
            _exit(3);
        for (int i = 0; i < 100; i++) {
            char id[16];
            snprintf(id, sizeof(id), "job-%d", i);
            sl_journal_rec_t r = s_rec(id, (uint64_t)i + 1);
            uint64_t b;
            if (sl_journal_accept(j, &r, &b) != SL_OK)
                _exit(4);
            if (i == 49 && sl_journal_commit(j) != SL_OK)
                _exit(5);
        }
        kill(getpid(), SIGKILL);
        _exit(6);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    sl_journal_t *j = NULL;
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    int n = 0;
    const sl_journal_visit_t v = {.live = s_count, .done = s_none};
    assert_int_equal(sl_journal_restore(j, 0, &v, &n), SL_OK);
    assert_int_equal(n, 50);
    assert_true(sl_journal_seq_bound(j) > 50);
    sl_journal_close(&j);
    s_tmp_fini(&t);
}

/* Files that are not a usable journal are refused with a clear error,
 * and left as they were. */
static void test_damaged_files(void **state)
{
    (void)state;
    tmp_t t;
    s_tmp(&t);
    sl_journal_cfg_t cfg = s_cfg(&t);
    /* Not SQLite at all. */
    FILE *f = fopen(t.path, "w");
    assert_non_null(f);
    for (int i = 0; i < 400; i++)
        fputs("not a journal ", f);
    fclose(f);
    sl_journal_t *j = NULL;
    sl_test_expect_error("move it away to start without it");
    assert_int_equal(sl_journal_open(&cfg, &j), SL_ERR_IO);
    assert_null(j);
    struct stat sb;
    assert_int_equal(stat(t.path, &sb), 0);
    assert_int_equal(sb.st_size, 400 * 14);
    unlink(t.path);

    /* A real journal whose pages were overwritten in the middle (a torn or
     * damaged disk): refused as damaged, not half read. */
    assert_int_equal(sl_journal_open(&cfg, &j), SL_OK);
    for (int i = 0; i < 2000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "job-%d", i);
        sl_journal_rec_t r = s_rec(id, (uint64_t)i + 1);
        uint64_t b;
        assert_int_equal(sl_journal_accept(j, &r, &b), SL_OK);
    }
    sl_journal_close(&j);
    int fd = open(t.path, O_WRONLY);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 0xa5, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 4096 * 3), (ssize_t)sizeof(junk));
    close(fd);
    sl_test_expect_errors("journal", 1, 2);
    assert_int_equal(sl_journal_open(&cfg, &j), SL_ERR_IO);
    assert_null(j);
    s_tmp_fini(&t);
}

/* ---- the core's side ---- */

typedef struct {
    int n_dispatch;
    uint64_t dispatched[32];
    int n_result;
    char result_id[32][32];
} io_rec_t;

static sl_status_t s_io_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    (void)e;
    io_rec_t *r = arg;
    r->dispatched[r->n_dispatch++] = job->seq;
    return SL_OK;
}

static void s_io_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                        const sl_exec_t *e, const void *payload, const char *err)
{
    (void)status, (void)t, (void)e, (void)payload, (void)err;
    io_rec_t *r = arg;
    snprintf(r->result_id[r->n_result++], 32, "%s", job->id);
    job->receipt = "stored";
    job->receipt_len = 6;
}

static void s_io_release(void *arg, sl_job_t *job)
{
    (void)arg, (void)job;
}

static void s_io_lost(void *arg, sl_exec_t *e, const char *why)
{
    (void)arg, (void)e, (void)why;
}

static const sl_core_io_t s_io = {.dispatch = s_io_dispatch,
                                  .result = s_io_result,
                                  .release = s_io_release,
                                  .exec_lost = s_io_lost};

static sl_job_desc_t s_desc(const char *id)
{
    return (sl_job_desc_t){.id = id, .tenant = "t", .prompt_tokens = 8, .max_new_tokens = 4};
}

static void test_core_restore_adopt(void **state)
{
    (void)state;
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.adopt_grace_ms = 1000;
    io_rec_t r = {0};
    sl_core_t *core = NULL;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    sl_time_t now = SL_MS(1);
    const char *ids[] = {"r1", "r2", "r3", "r4"};
    for (int i = 0; i < 4; i++) {
        sl_job_desc_t d = s_desc(ids[i]);
        sl_job_t *job = NULL;
        assert_int_equal(sl_core_job_restore(core, &d, NULL, (uint64_t)(100 + i), now, &job),
                         SL_OK);
        assert_int_equal(job->seq, 100 + i);
    }
    sl_job_desc_t dup = s_desc("r2");
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_restore(core, &dup, NULL, 200, now, &job), SL_ERR_EXISTS);
    assert_int_equal(sl_core_done_restore(core, "f1", "result f1", 9, now), SL_OK);
    sl_core_seq_floor(core, 65536);
    assert_int_equal(sl_core_held(core), 4);
    assert_int_equal(sl_core_jobs_pending(core), 4);

    /* The executor comes back holding r2 (and a job nobody knows): r2 is
     * running there, nothing was dispatched. */
    const sl_held_job_t held[] = {{.id = "r2", .seq = 101, .attempt = 1},
                                  {.id = "zz", .seq = 999, .attempt = 1},
                                  {.id = "r3", .seq = 100, .attempt = 1}}; /* wrong seq */
    sl_exec_info_t info = {.name = "e0", .slots = 2, .held = held, .n_held = 3};
    uint32_t e0;
    now += SL_MS(100);
    assert_int_equal(sl_core_exec_join(core, &info, NULL, now, &e0), SL_OK);
    job = sl_core_job_get(core, 101);
    assert_non_null(job);
    assert_int_equal(job->state, SL_JOB_RUNNING);
    assert_int_equal(job->exec->index, e0);
    assert_int_equal(r.n_dispatch, 0);
    assert_int_equal(sl_core_counter(core, SL_CTR_ADOPTED), 1);
    assert_int_equal(sl_core_held(core), 3);

    /* A new job goes to the free credit; the held ones wait for the grace. */
    sl_job_desc_t nd = s_desc("new");
    sl_busy_reason_t why;
    sl_time_t retry;
    assert_int_equal(sl_core_job_submit(core, &nd, NULL, now, &job, &why, &retry), SL_OK);
    assert_true(job->seq >= 65536);
    assert_int_equal(r.n_dispatch, 1);
    now += SL_MS(500);
    sl_exec_load_t load = {0};
    sl_core_exec_heartbeat(core, e0, &load, now);
    sl_core_tick(core, now);
    assert_int_equal(sl_core_held(core), 3);
    assert_int_equal(r.n_dispatch, 1);

    /* The adopted job completes: one result. */
    sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 4};
    assert_int_equal(sl_core_job_complete(core, e0, 101, &res, NULL, now), SL_OK);
    assert_int_equal(r.n_result, 1);
    assert_string_equal(r.result_id[0], "r2");

    /* Past the grace the unclaimed ones are queued, oldest first. */
    now += SL_MS(600);
    sl_core_exec_heartbeat(core, e0, &load, now);
    sl_core_tick(core, now);
    assert_int_equal(sl_core_held(core), 0);
    assert_int_equal(sl_core_counter(core, SL_CTR_UNCLAIMED), 3);
    assert_int_equal(r.n_dispatch, 2);
    assert_int_equal(r.dispatched[1], 100);

    /* Finished ids, restored or not, are answered from their receipts. */
    const void *rc = NULL;
    size_t len = 0;
    sl_job_desc_t again = s_desc("f1");
    assert_int_equal(sl_core_job_submit(core, &again, NULL, now, &job, &why, &retry),
                     SL_ERR_EXISTS);
    assert_null(job);
    assert_true(sl_core_done_find(core, "f1", &rc, &len));
    assert_int_equal(len, 9);
    assert_memory_equal(rc, "result f1", 9);
    assert_true(sl_core_done_find(core, "r2", &rc, &len));
    assert_memory_equal(rc, "stored", 6);
    sl_core_destroy(&core);
}

/* A held job canceled by its client ends at once. */
static void test_core_cancel_held(void **state)
{
    (void)state;
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    io_rec_t r = {0};
    sl_core_t *core = NULL;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    sl_job_desc_t d = s_desc("c1");
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_restore(core, &d, NULL, 7, SL_MS(1), &job), SL_OK);
    assert_int_equal(sl_core_job_cancel(core, "c1", SL_MS(2)), SL_OK);
    assert_int_equal(sl_core_held(core), 0);
    assert_int_equal(sl_core_jobs_pending(core), 0);
    assert_int_equal(r.n_result, 1);
    sl_core_destroy(&core);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_reopen_restore), cmocka_unit_test(test_same_batch),
        cmocka_unit_test(test_crash_count),          cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_core_restore_adopt),   cmocka_unit_test(test_core_cancel_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
