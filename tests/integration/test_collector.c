/*
 * The scheduler's collector on its own: batches land in <dir>/<executor>.log
 * and .trace, a line each, appended across batches and across collectors
 * (a restarted scheduler); the drops executors report are summed once
 * (a restarted executor counts from zero again); a directory that cannot
 * be made is refused; more executors than files kept open still all get
 * their lines.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scheduler/sl_collector.h"
#include "tests/support/sl_test.h"

static int s_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    int n = 0;
    for (int ch; (ch = fgetc(fp)) != EOF;)
        n += ch == '\n';
    fclose(fp);
    return n;
}

static void test_collector_files_and_counts(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-collect-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128], path[256];
    snprintf(sub, sizeof(sub), "%s/a/b", dir); /* made as with mkdir -p */
    sl_collector_t *c = NULL;
    assert_int_equal(sl_collector_create(sub, &c), SL_OK);
    const char *logs[] = {"first line", "second line"};
    const char *traces[] = {"job=x seq=1 status=ok"};
    sl_wire_log_batch_t b = {.executor = "e1",
                             .logs = logs,
                             .n_logs = 2,
                             .traces = traces,
                             .n_traces = 1,
                             .dropped = 5,
                             .shipped = 3};
    assert_int_equal(sl_collector_take(c, &b), SL_OK);
    b.dropped = 7; /* 2 more */
    assert_int_equal(sl_collector_take(c, &b), SL_OK);
    b.dropped = 1; /* restarted: counts from zero again, 1 more */
    assert_int_equal(sl_collector_take(c, &b), SL_OK);
    sl_collector_stats_t st;
    sl_collector_stats(c, &st);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.lines, 9);
    assert_int_equal(st.dropped, 8);
    assert_int_equal(st.bytes, 3 * (11 + 12 + 22));
    assert_int_equal(st.write_failed, 0);
    snprintf(path, sizeof(path), "%s/e1.log", sub);
    assert_int_equal(s_lines(path), 6);
    snprintf(path, sizeof(path), "%s/e1.trace", sub);
    assert_int_equal(s_lines(path), 3);
    sl_collector_destroy(&c);
    assert_null(c);

    /* A new collector appends; more executors than files kept open. */
    assert_int_equal(sl_collector_create(sub, &c), SL_OK);
    char name[32];
    for (int i = 0; i < SL_COLLECTOR_OPEN_MAX + 10; i++) {
        snprintf(name, sizeof(name), "x%d", i);
        sl_wire_log_batch_t one = {.executor = name, .logs = logs, .n_logs = 1};
        assert_int_equal(sl_collector_take(c, &one), SL_OK);
    }
    sl_wire_log_batch_t again = {.executor = "x0", .logs = logs, .n_logs = 1};
    assert_int_equal(sl_collector_take(c, &again), SL_OK); /* its file was closed: reopened */
    assert_int_equal(sl_collector_take(c, &b), SL_OK);
    sl_collector_destroy(&c);
    snprintf(path, sizeof(path), "%s/e1.log", sub);
    assert_int_equal(s_lines(path), 8);
    snprintf(path, sizeof(path), "%s/x0.log", sub);
    assert_int_equal(s_lines(path), 2);
    snprintf(path, sizeof(path), "%s/x%d.log", sub, SL_COLLECTOR_OPEN_MAX + 9);
    assert_int_equal(s_lines(path), 1);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_collector_bad_dir(void **state)
{
    (void)state;
    sl_collector_t *c = NULL;
    sl_test_expect_error("cannot make the collect dir /proc/sluice-no");
    assert_int_equal(sl_collector_create("/proc/sluice-no/such", &c), SL_ERR_IO);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collector_files_and_counts),
        cmocka_unit_test(test_collector_bad_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
