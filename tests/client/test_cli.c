/* The `sluice` CLI: bad flags and commands exit 2 with a message, --help exits 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int s_run(const char *args)
{
    const char *bin = getenv("SLUICE_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice %s >/dev/null 2>&1", bin ? bin : "build/bin", args);
    int rc = system(cmd);
    assert_true(rc != -1 && WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

static void test_bad_flags_exit_2(void **state)
{
    assert_int_equal(s_run(""), 2);
    assert_int_equal(s_run("frobnicate"), 2);
    assert_int_equal(s_run("submit --no-such-flag"), 2);
    assert_int_equal(s_run("submit --max-new-tokens"), 2);
    assert_int_equal(s_run("submit --max-new-tokens 0"), 2);
    assert_int_equal(s_run("submit --max-new-tokens=abc"), 2);
    assert_int_equal(s_run("submit --priority urgent"), 2);
    assert_int_equal(s_run("submit --tokens 1,x,3"), 2);
    assert_int_equal(s_run("submit --tokens ,"), 2);
    assert_int_equal(s_run("submit stray-argument"), 2);
    assert_int_equal(s_run("status --wait-timeout-ms=-5"), 2);
    assert_int_equal(s_run("status --max-new-tokens 3"), 2);
    assert_int_equal(s_run("submit --stream --endpoint"), 2);
}

static void test_help_and_env(void **state)
{
    assert_int_equal(s_run("--help"), 0);
    assert_int_equal(s_run("submit --help"), 0);
    assert_int_equal(s_run("status --help"), 0);
    /* A bad SLUICE_* variable is a usage error too. */
    setenv("SLUICE_RETRIES", "many", 1);
    assert_int_equal(s_run("submit"), 2);
    unsetenv("SLUICE_RETRIES");
    /* No scheduler: a clean failure (1) within the wait timeout. */
    assert_int_equal(s_run("status --endpoint tcp://127.0.0.1:1 --wait-timeout-ms 100"), 1);
    assert_int_equal(s_run("submit --endpoint tcp://127.0.0.1:1 --ack-timeout-ms 20 "
                           "--ack-retries 1"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags_exit_2),
        cmocka_unit_test(test_help_and_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
