/* sluice-sim matrix as a user runs it: the real program from $SLUICE_BIN,
 * --quick cells (a few dozen requests each) two at a time. Its table,
 * matrix.csv (one row per cell), the RESULT keys, a failing cell (exit 1,
 * marked failed), --merge of a finished folder, the Kubernetes manifest,
 * and run's --batch-share (deterministic, and it changes the run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/sl_test.h"

#define S_QUICK_CELLS 8 /* --quick: 2 traces x 2 fleets x 2 failure modes at 4 executors */

static char s_out[1 << 18];
static char s_file[1 << 18];

/* Run "$SLUICE_BIN/sluice-sim args" with stdout and stderr into s_out;
 * returns the exit status. */
static int s_sim(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s/sluice-sim' %s 2>&1", sl_test_bin(), args);
    return sl_test_run(cmd, s_out, sizeof(s_out));
}

static void s_must_say(const char *what, const char *hay, const char *text)
{
    if (!strstr(hay, text))
        fail_msg("%s: want \"%s\" in:\n%s", what, text, hay);
}

/* The value of key in the last RESULT line of s_out. */
static void s_result(const char *key, char *buf, size_t cap)
{
    const char *r = NULL;
    for (const char *p = strstr(s_out, "RESULT "); p; p = strstr(p + 1, "RESULT "))
        r = p;
    if (!r)
        fail_msg("no RESULT line:\n%s", s_out);
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *v = strstr(r, pat);
    if (!v)
        fail_msg("no %s in the RESULT line:\n%s", key, s_out);
    v += strlen(pat);
    size_t n = strcspn(v, " \n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
}

static int s_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* The RESULT keys and their values for an all-good quick matrix. */
static void s_check_result(int cells, int failed)
{
    static const char *const keys[] = {"min_goodput_vs_best", "median_goodput_vs_best",
                                       "max_ttft_mape", "wall_s"};
    char v[64];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        s_result(keys[i], v, sizeof(v));
        if (failed < cells && !(strtod(v, NULL) >= 0))
            fail_msg("%s=%s is not a number >= 0:\n%s", keys[i], v, s_out);
    }
    s_result("cells", v, sizeof(v));
    assert_int_equal(atoi(v), cells);
    s_result("failed", v, sizeof(v));
    assert_int_equal(atoi(v), failed);
}

/* --quick, 2 at a time: every cell ran, the table names each, matrix.csv
 * has a header and one ok row per cell, the plot scripts are written, and
 * --merge of the same folder gives the same table. */
static void test_matrix_quick(void **state)
{
    (void)state;
    char dir[512], args[1024];
    sl_test_tmpdir("test_sim_matrix", dir, sizeof(dir));
    snprintf(args, sizeof(args), "matrix --quick --jobs 2 --plot false --out '%s'", dir);
    assert_int_equal(s_sim(args), 0);
    s_must_say("table", s_out, "best_baseline");
    s_must_say("table", s_out, "gp/best");
    s_must_say("table", s_out, "mooncake-conversation  uniform");
    s_must_say("table", s_out, "azure-code             spread");
    s_must_say("progress", s_out, "[8/8]");
    if (strstr(s_out, "FAILED"))
        fail_msg("a quick cell failed:\n%s", s_out);
    s_check_result(S_QUICK_CELLS, 0);
    sl_test_read(dir, "matrix.csv", s_file, sizeof(s_file));
    s_must_say("matrix.csv", s_file,
               "cell,trace,fleet,failures,executors,batch_share,status,goodput_vs_best_baseline,");
    assert_int_equal(s_lines(s_file), 1 + S_QUICK_CELLS);
    int ok = 0;
    for (const char *p = strstr(s_file, ",ok,"); p; p = strstr(p + 1, ",ok,"))
        ok++;
    assert_int_equal(ok, S_QUICK_CELLS);
    sl_test_read(dir, "cells.txt", s_file, sizeof(s_file));
    assert_int_equal(s_lines(s_file), S_QUICK_CELLS);
    s_must_say("cells.txt", s_file, " compare --trace azure-code --executors 4 --speeds 1,0.75");
    s_must_say("cells.txt", s_file, " --fail-at ");
    sl_test_read(dir, "goodput_vs_best_baseline.gp", s_file, sizeof(s_file));
    s_must_say("plot script", s_file, "plot 'matrix.csv'");
    /* the folder merged again: the same cells, no run */
    char first[4096];
    const char *t = strstr(s_out, "\ntrace ");
    assert_non_null(t);
    snprintf(first, sizeof(first), "%.*s", (int)(strstr(t, "\noutput:") - t), t);
    snprintf(args, sizeof(args), "matrix --plot false --merge '%s'", dir);
    assert_int_equal(s_sim(args), 0);
    s_must_say("--merge table", s_out, first);
    s_check_result(S_QUICK_CELLS, 0);
    sl_test_rmtree(dir);
}

/* A cell that cannot run (a trace that does not exist) is marked failed,
 * the others still run, and matrix exits 1. */
static void test_matrix_failing_cell(void **state)
{
    (void)state;
    char dir[512], args[1024];
    sl_test_tmpdir("test_sim_matrix", dir, sizeof(dir));
    snprintf(args, sizeof(args),
             "matrix --quick --jobs 2 --plot false --traces azure-code,no-such-trace "
             "--fleets uniform --failures none --out '%s'",
             dir);
    assert_int_equal(s_sim(args), 1);
    s_must_say("failed cell", s_out, "FAILED");
    s_must_say("failed cell", s_out, "cell 001-no-such-trace-uniform-nofail-4-b0 failed (exit 2");
    s_check_result(2, 1);
    sl_test_read(dir, "matrix.csv", s_file, sizeof(s_file));
    s_must_say("matrix.csv", s_file, "no-such-trace,uniform,none,4,0,failed");
    s_must_say("matrix.csv", s_file, "azure-code,uniform,none,4,0,ok,");
    sl_test_read(dir, "cells/001-no-such-trace-uniform-nofail-4-b0/err.txt", s_file,
                 sizeof(s_file));
    s_must_say("the cell's stderr", s_file, "no-such-trace");
    /* bad axes are refused before anything runs */
    assert_int_equal(s_sim("matrix --fleets wide"), 2);
    s_must_say("--fleets wide", s_out, "'wide' is not uniform or spread");
    assert_int_equal(s_sim("matrix --launcher pbs"), 2);
    s_must_say("--launcher pbs", s_out, "'pbs' is not local, slurm or k8s");
    sl_test_rmtree(dir);
}

/* --launcher k8s renders a ConfigMap and an Indexed Job with one
 * completion per cell, and runs nothing; parsed as YAML where Python's
 * yaml module is installed. */
static void test_matrix_k8s(void **state)
{
    (void)state;
    char dir[512], args[1024], cmd[2048];
    sl_test_tmpdir("test_sim_matrix", dir, sizeof(dir));
    snprintf(args, sizeof(args), "matrix --quick --launcher k8s --jobs 3 --out '%s'", dir);
    assert_int_equal(s_sim(args), 0);
    s_must_say("k8s", s_out, "kubectl apply -f");
    s_must_say("k8s", s_out, "sluice-sim matrix --merge");
    sl_test_read(dir, "matrix-job.yaml", s_file, sizeof(s_file));
    s_must_say("manifest", s_file, "apiVersion: batch/v1\nkind: Job\n");
    s_must_say("manifest", s_file, "  completionMode: Indexed\n  completions: 8\n");
    s_must_say("manifest", s_file, "  parallelism: 3\n");
    s_must_say("manifest", s_file, "JOB_COMPLETION_INDEX");
    s_must_say("manifest", s_file, "    000-mooncake-conversation-uniform-nofail-4-b0 ");
    snprintf(
        cmd, sizeof(cmd),
        "python3 -c 'import yaml' 2>/dev/null || exit 77; python3 -c '"
        "import sys, yaml\n"
        "d = list(yaml.safe_load_all(open(sys.argv[1])))\n"
        "cm, job = d[0], d[1]\n"
        "assert cm[\"kind\"] == \"ConfigMap\" and len(cm[\"data\"][\"cells.txt\"].splitlines()) "
        "== 8\n"
        "s = job[\"spec\"]\n"
        "assert job[\"kind\"] == \"Job\" and s[\"completionMode\"] == \"Indexed\"\n"
        "assert s[\"completions\"] == 8 and s[\"parallelism\"] == 3\n"
        "' '%s/matrix-job.yaml' 2>&1",
        dir);
    int rc = sl_test_run(cmd, s_out, sizeof(s_out));
    if (rc != 0 && rc != 77)
        fail_msg("the manifest is not the YAML wanted (%d):\n%s", rc, s_out);
    /* nothing ran: merging now marks every cell failed */
    snprintf(args, sizeof(args), "matrix --plot false --merge '%s'", dir);
    assert_int_equal(s_sim(args), 1);
    s_check_result(S_QUICK_CELLS, S_QUICK_CELLS);
    sl_test_rmtree(dir);
}

/* --batch-share: the same seed gives the same run, and batch requests
 * change it. */
static void test_batch_share(void **state)
{
    (void)state;
    char a[1024], b[1024];
    assert_int_equal(s_sim("run --requests 200 --executors 4 --batch-share 0.5"), 0);
    snprintf(a, sizeof(a), "%.*s", (int)strcspn(strstr(s_out, "RESULT "), "\n"),
             strstr(s_out, "RESULT "));
    assert_int_equal(s_sim("run --requests 200 --executors 4 --batch-share 0.5"), 0);
    s_must_say("same seed", s_out, a);
    assert_int_equal(s_sim("run --requests 200 --executors 4"), 0);
    snprintf(b, sizeof(b), "%.*s", (int)strcspn(strstr(s_out, "RESULT "), "\n"),
             strstr(s_out, "RESULT "));
    if (!strcmp(a, b))
        fail_msg("half the requests batch changed nothing: %s", a);
    assert_int_equal(s_sim("run --requests 5 --batch-share 1.5"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_quick),
        cmocka_unit_test(test_matrix_failing_cell),
        cmocka_unit_test(test_matrix_k8s),
        cmocka_unit_test(test_batch_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
