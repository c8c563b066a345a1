/*
 * The command-line programs' usage errors: a bad command, flag, value or
 * SLUICE_* variable exits 2 with a message saying what was wrong (both are
 * checked: a right status with a wrong message, or the reverse, fails), and
 * --help exits 0. Mostly `sluice`; a few of sluice-bench's and sluice-sim's
 * checks made after the table's (test_cfg_limits covers every text knob).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/sl_test.h"

static char s_out[1 << 16];

/* Run "$SLUICE_BIN/prog args" with stdout and stderr into s_out; returns the exit status. */
static int s_run(const char *prog, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/%s %s 2>&1", sl_test_bin(), prog, args);
    return sl_test_run(cmd, s_out, sizeof(s_out));
}

/* prog args exits with status and says text. */
static void s_expect(const char *prog, const char *args, int status, const char *text)
{
    int rc = s_run(prog, args);
    if (rc != status || !strstr(s_out, text))
        fail_msg("%s %s: exit status %d (want %d), want \"%s\"; output:\n%s", prog, args, rc,
                 status, text, s_out);
}

static void test_bad_flags_exit_2(void **state)
{
    s_expect("sluice", "", 2, "usage: sluice COMMAND");
    s_expect("sluice", "frobnicate", 2, "sluice: unknown command 'frobnicate'");
    s_expect("sluice", "submit --no-such-flag", 2,
             "sluice submit: unknown option --no-such-flag (see sluice submit --help)");
    s_expect("sluice", "submit --max-new-tokens", 2,
             "sluice submit: option --max-new-tokens needs a value");
    s_expect("sluice", "submit --max-new-tokens 0", 2,
             "sluice submit: --max-new-tokens: 0 is outside [1, 65536]");
    s_expect("sluice", "submit --max-new-tokens=abc", 2,
             "sluice submit: --max-new-tokens: expected an integer, got 'abc'");
    s_expect("sluice", "submit --priority urgent", 2,
             "sluice submit: --priority must be interactive or batch, not 'urgent'");
    s_expect("sluice", "submit --tokens 1,x,3", 2,
             "sluice submit: --tokens: '1,x,3' is not a list of token ids");
    s_expect("sluice", "submit --tokens ,", 2,
             "sluice submit: --tokens: ',' is not a list of token ids");
    s_expect("sluice", "submit stray-argument", 2,
             "sluice submit: unexpected argument 'stray-argument'");
    s_expect("sluice", "status --wait-timeout-ms=-5", 2,
             "sluice status: --wait-timeout-ms: -5 is outside [0, 86400000]");
    s_expect("sluice", "status --max-new-tokens 3", 2,
             "sluice status: unknown option --max-new-tokens");
    s_expect("sluice", "submit --stream --endpoint", 2,
             "sluice submit: option --endpoint needs a value");
}

static void test_help_and_env(void **state)
{
    s_expect("sluice", "--help", 0, "usage: sluice COMMAND");
    s_expect("sluice", "submit --help", 0, "usage: sluice submit");
    s_expect("sluice", "status --help", 0, "usage: sluice status");
    /* A bad SLUICE_* variable is a usage error too, named in the message. */
    setenv("SLUICE_RETRIES", "many", 1);
    s_expect("sluice", "submit", 2,
             "sluice submit: SLUICE_RETRIES: expected an integer, got 'many'");
    unsetenv("SLUICE_RETRIES");
    /* No scheduler: a clean failure (1) within the wait timeout. */
    s_expect("sluice", "status --endpoint tcp://127.0.0.1:1 --wait-timeout-ms 100 --insecure", 1,
             "sluice status: timed out");
    s_expect("sluice",
             "submit --endpoint tcp://127.0.0.1:1 --ack-timeout-ms 20 --ack-retries 1 --insecure",
             1, ": timed out (no answer from tcp://127.0.0.1:1 to 2 sends)");
    /* Neither keys nor --insecure: refused before anything is sent. */
    s_expect("sluice", "status --endpoint tcp://127.0.0.1:1", 1,
             "no keys: give --key-dir DIR (see `sluice keygen`), or --insecure");
    s_expect("sluice", "keygen", 2, "sluice keygen: give one key directory");
    s_expect("sluice", "keygen --name=../x /tmp", 2, "'../x' is not a plain file name");
}

/* Checks the benches and the simulator make after their tables'. */
static void test_bench_and_sim_values(void **state)
{
    s_expect("sluice-bench", "", 2, "usage: sluice-bench COMMAND");
    s_expect("sluice-bench", "loadgen --busy sometimes", 2,
             "sluice-bench loadgen: --busy must be retry or drop");
    s_expect("sluice-bench", "loadgen --poisson", 2,
             "sluice-bench loadgen: --poisson needs --rate");
    s_expect("sluice-bench", "codec --items 0", 2,
             "sluice-bench codec: --items: 0 is outside [1, 4096]");
    s_expect("sluice-bench", "ctlplane --transport carrier-pigeon", 2,
             "sluice-bench ctlplane: --transport must be tcp or ipc");
    s_expect("sluice-sim", "", 2, "usage: sluice-sim COMMAND");
    s_expect("sluice-sim", "run --executors 0", 2,
             "sluice-sim run: --executors: 0 is outside [1, ");
    s_expect("sluice-sim", "run --policy nope", 2,
             "sluice-sim run: --policy: unknown policy 'nope'");
    s_expect("sluice-sim", "compare --policies learned,nope", 2,
             "sluice-sim compare: --policies: unknown policy 'nope'");
    s_expect("sluice-sim", "run --speeds 1,x", 2,
             "sluice-sim run: --speeds: '1,x' is not a list of 1 to 64 positive numbers");
    s_expect("sluice-sim", "compare --loads ,", 2,
             "sluice-sim compare: --loads: ',' is not a list of 1 to 64 positive numbers");
    s_expect("sluice-sim", "run --seed=x", 2,
             "sluice-sim run: --seed: expected an integer, got 'x'");
    s_expect("sluice-sim", "speed stray", 2, "sluice-sim speed: unexpected argument 'stray'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags_exit_2),
        cmocka_unit_test(test_help_and_env),
        cmocka_unit_test(test_bench_and_sim_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
