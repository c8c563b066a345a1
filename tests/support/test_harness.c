/*
 * The test harness itself (sl_test.c): declared ERROR lines pass, from any
 * thread and from a daemon's log; an undeclared line, a sanitizer report in
 * a log, a declared line that never came, and a case choice that picks
 * nothing fail. The failing cases are ctest entries of their own that expect
 * the harness's message (tests/support/CMakeLists.txt).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "tests/support/sl_test.h"

/* A log file holding text, as a daemon would have written it. */
static void s_log_file(char *path, size_t cap, const char *text)
{
    snprintf(path, cap, "/tmp/sluice-harness-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_ok_declared(void **state)
{
    sl_test_expect_error("disk on fire");
    SL_ERROR("disk on fire (%d)", 1);
    SL_WARN("a warning is never checked");
}

static void test_ok_range(void **state)
{
    sl_test_expect_errors("tick", 0, 3);
    sl_test_expect_errors(NULL, 1, 1); /* any line, after the ticks are full */
    for (int i = 0; i < 3; i++)
        SL_ERROR("tick %d", i);
    SL_ERROR("something else");
}

static void *s_thread(void *arg)
{
    SL_ERROR("from a thread");
    return NULL;
}

static void test_ok_thread(void **state)
{
    pthread_t t;
    sl_test_expect_error("from a thread");
    assert_int_equal(pthread_create(&t, NULL, s_thread, NULL), 0);
    pthread_join(t, NULL);
}

static void test_ok_log(void **state)
{
    char path[64];
    s_log_file(path, sizeof(path),
               "01:02:03.456 W sched[7] a.c:1 a warning\n"
               "01:02:03.457 E sched[7] a.c:2 executor e1 lost\n");
    sl_test_expect_error("executor e1 lost");
    assert_int_equal(sl_test_check_log(path, "a daemon"), 1);
    unlink(path);
}

static void test_bad_undeclared(void **state)
{
    SL_ERROR("nobody expects this");
}

static void test_bad_missing(void **state)
{
    sl_test_expect_error("never logged");
}

static void test_bad_log(void **state)
{
    char path[64];
    s_log_file(path, sizeof(path), "01:02:03.457 E sched[7] a.c:2 undeclared in a log\n");
    sl_test_check_log(path, "a daemon");
    unlink(path);
}

static void test_bad_sanitizer(void **state)
{
    char path[64];
    s_log_file(path, sizeof(path), "==42==ERROR: LeakSanitizer: detected memory leaks\n");
    sl_test_check_log(path, "a daemon");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_declared),    cmocka_unit_test(test_ok_range),
        cmocka_unit_test(test_ok_thread),      cmocka_unit_test(test_ok_log),
        cmocka_unit_test(test_bad_undeclared), cmocka_unit_test(test_bad_missing),
        cmocka_unit_test(test_bad_log),        cmocka_unit_test(test_bad_sanitizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
