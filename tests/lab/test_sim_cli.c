/* The policy lab as a user drives it: the real sluice-sim, run from
 * $SLUICE_BIN with a few dozen requests so each run takes well under a
 * second. SLUICE_* variables, the valid names on a bad one (exit 2),
 * compare's output folder (never the working directory), its CSV headers,
 * its gnuplot scripts (one style per policy, the load in the titles,
 * admission in the legend), its warnings about a sweep that never
 * reaches saturation, and disagg's table and RESULT line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/sl_trace.h"
#include "scheduler/core/sl_policy_registry.h"
#include "tests/support/sl_test.h"

/* A compare that takes a fraction of a second: 4 executors, 20 requests,
 * plots not drawn (gnuplot is not what is tested). */
#define S_SMALL "--executors 4 --speeds 1 --requests 20 --plot false"

static char s_out[1 << 18];

/* Run "cd cwd && env $SLUICE_BIN/sluice-sim args" with stdout and stderr
 * into s_out; returns the exit status. env is "" or "VAR=value ...". */
static int s_sim(const char *cwd, const char *env, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cd '%s' && %s '%s/sluice-sim' %s 2>&1", cwd ? cwd : ".", env,
             sl_test_bin(), args);
    return sl_test_run(cmd, s_out, sizeof(s_out));
}

static void s_must_say(const char *what, const char *text)
{
    if (!strstr(s_out, text))
        fail_msg("%s: want \"%s\" in the output:\n%s", what, text, s_out);
}

/* The value of key=... in the RESULT line of s_out, as text. */
static void s_result(const char *key, char *buf, size_t cap)
{
    const char *r = strstr(s_out, "RESULT ");
    assert_non_null(r);
    char pat[64];
    snprintf(pat, sizeof(pat), " %s=", key);
    const char *v = strstr(r, pat);
    if (!v)
        fail_msg("no %s in the RESULT line:\n%s", key, s_out);
    v += strlen(pat);
    size_t n = strcspn(v, " \n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
}

static void test_env_sets_executors(void **state)
{
    (void)state;
    assert_int_equal(s_sim(NULL, "SLUICE_EXECUTORS=4", "run --requests 20"), 0);
    s_must_say("SLUICE_EXECUTORS=4", "cluster: 4 executors");
    s_must_say("SLUICE_EXECUTORS=4", " executors=4\n");
    /* the default is not 4, and a flag beats the variable */
    assert_int_equal(s_sim(NULL, "", "run --requests 20"), 0);
    s_must_say("no variable", "cluster: 16 executors");
    assert_int_equal(s_sim(NULL, "SLUICE_EXECUTORS=4", "run --requests 20 --executors 3"), 0);
    s_must_say("SLUICE_EXECUTORS=4 --executors 3", "cluster: 3 executors");
    /* a text knob too */
    assert_int_equal(s_sim(NULL, "SLUICE_POLICY=p2c SLUICE_SPEEDS=1", "run --requests 20"), 0);
    s_must_say("SLUICE_POLICY=p2c", "policy p2c,");
    s_must_say("SLUICE_SPEEDS=1", "(speeds 1)");
}

/* Every built-in policy is named in the message. */
static void s_must_list_policies(const char *what)
{
    const char *const *names = sl_policy_names();
    for (int i = 0; names[i]; i++)
        s_must_say(what, names[i]);
}

static void test_bad_names_list_the_valid_ones(void **state)
{
    (void)state;
    assert_int_equal(s_sim(NULL, "", "run --policy x"), 2);
    s_must_say("--policy x", "sluice-sim run: --policy: unknown policy 'x' (");
    s_must_list_policies("--policy x");
    assert_int_equal(s_sim(NULL, "SLUICE_POLICY=x", "run"), 2);
    s_must_say("SLUICE_POLICY=x", "unknown policy 'x' (");
    s_must_list_policies("SLUICE_POLICY=x");
    assert_int_equal(s_sim(NULL, "", "compare --policies learned,x,p2c"), 2);
    s_must_say("--policies", "sluice-sim compare: --policies: unknown policy 'x' (");
    s_must_list_policies("--policies");
    assert_int_equal(s_sim(NULL, "", "speed --policy x"), 2);
    s_must_say("speed --policy x", "unknown policy 'x' (");

    static const char *const traces[] = {"mooncake-conversation", "mooncake-synthetic",
                                         "azure-code", "azure-conv"};
    assert_int_equal(s_sim(NULL, "", "run --trace x"), 2);
    s_must_say("--trace x", "sluice-sim run: --trace: unknown trace 'x' (");
    assert_int_equal(s_sim(NULL, "", "compare --trace /no/such/file.jsonl"), 2);
    s_must_say("--trace /no/such/file.jsonl", "unknown trace '/no/such/file.jsonl' (");
    for (size_t i = 0; i < sizeof(traces) / sizeof(traces[0]); i++) {
        s_must_say("--trace", traces[i]);
        /* the names listed are the ones the trace reader knows */
        char path[256];
        assert_int_equal(sl_trace_path(traces[i], "/d", path, sizeof(path)), SL_OK);
        assert_string_not_equal(path, traces[i]);
    }
}

/* The distinct values of the word after key in the "set style line" rows
 * of a script, and the number of rows. */
static int s_distinct_after(const char *gp, const char *key, int *rows)
{
    char seen[64][48];
    int n = 0;
    *rows = 0;
    for (const char *l = strstr(gp, "set style line "); l; l = strstr(l + 1, "set style line ")) {
        (*rows)++;
        const char *v = strstr(l, key);
        assert_non_null(v);
        v += strlen(key);
        char val[48];
        snprintf(val, sizeof(val), "%.*s", (int)strcspn(v, " \n"), v);
        int j = 0;
        while (j < n && strcmp(seen[j], val))
            j++;
        if (j == n && n < 64)
            snprintf(seen[n++], sizeof(seen[0]), "%s", val);
    }
    return n;
}

static void s_check_script(const char *gp, const char *name)
{
    int rows;
    const char *keys[] = {" lc rgb ", " dt ", " pt "};
    for (int i = 0; i < 3; i++) {
        int n = s_distinct_after(gp, keys[i], &rows);
        if (rows != 10 || n != 10)
            fail_msg("%s: %d styles with %d distinct '%s' (want 10 and 10):\n%s", name, rows, n,
                     keys[i], gp);
    }
    /* each policy's clause uses its own style, learned's legend says admission */
    for (int k = 1; k <= 10; k++) {
        char ls[32];
        snprintf(ls, sizeof(ls), " ls %d title ", k);
        if (!strstr(gp, ls))
            fail_msg("%s: no clause with style %d:\n%s", name, k, gp);
    }
    if (!strstr(gp, "title 'learned (+admission)'") || strstr(gp, "title 'p2c (+admission)'") ||
        !strstr(gp, "title 'p2c'"))
        fail_msg("%s: the legend must mark learned (and only it) with admission:\n%s", name, gp);
}

static void test_compare_files(void **state)
{
    (void)state;
    char dir[512], args[1024], buf[1 << 16], load[32];
    sl_test_tmpdir("test_sim_cli", dir, sizeof(dir));
    /* the ten default policies, one load */
    snprintf(args, sizeof(args), "compare " S_SMALL " --loads 0.5 --out '%s/out'", dir);
    assert_int_equal(s_sim(NULL, "", args), 0);
    char out[600];
    snprintf(out, sizeof(out), "%s/out", dir);
    s_result("load_rps", load, sizeof(load));

    sl_test_read(out, "compare.csv", buf, sizeof(buf));
    assert_true(strncmp(buf, "policy,admission,load_rps,offered_rps,goodput_rps,slo_frac,", 59) ==
                0);
    assert_non_null(strstr(buf, "\nlearned,1,"));
    assert_non_null(strstr(buf, "\nround-robin,0,"));
    sl_test_read(out, "ttft_cdf.csv", buf, sizeof(buf));
    assert_true(strncmp(buf, "policy,admission,load_rps,ttft_s,fraction\n", 42) == 0);

    char title[128];
    sl_test_read(out, "goodput_vs_load.gp", buf, sizeof(buf));
    s_check_script(buf, "goodput_vs_load.gp");
    snprintf(title, sizeof(title), "comparison load %s req/s'", load);
    if (!strstr(buf, title))
        fail_msg("goodput_vs_load.gp: the title must name the load (%s):\n%s", title, buf);
    sl_test_read(out, "ttft_cdf.gp", buf, sizeof(buf));
    s_check_script(buf, "ttft_cdf.gp");
    snprintf(title, sizeof(title), "set title 'TTFT distribution at %s req/s", load);
    if (!strstr(buf, title))
        fail_msg("ttft_cdf.gp: the title must name the load (%s):\n%s", title, buf);

    /* without admission for learned, no legend entry says admission */
    snprintf(args, sizeof(args), "compare " S_SMALL " --loads 0.5 --no-admission --out '%s/out'",
             dir);
    assert_int_equal(s_sim(NULL, "", args), 0);
    sl_test_read(out, "ttft_cdf.gp", buf, sizeof(buf));
    assert_null(strstr(buf, "(+admission)"));
    sl_test_rmtree(dir);
}

static void test_compare_default_out_is_a_fresh_folder(void **state)
{
    (void)state;
    char cwd[512], tmp[512], env[600], buf[1 << 16];
    sl_test_tmpdir("test_sim_cli", cwd, sizeof(cwd));
    sl_test_tmpdir("test_sim_cli", tmp, sizeof(tmp));
    snprintf(env, sizeof(env), "TMPDIR='%s'", tmp);
    assert_int_equal(s_sim(cwd, env, "compare " S_SMALL " --loads 0.5"), 0);
    char want[600];
    snprintf(want, sizeof(want), "output: %s/sluice-sim-", tmp);
    s_must_say("default --out", want);
    char out[600];
    const char *o = strstr(s_out, "output: ") + strlen("output: ");
    snprintf(out, sizeof(out), "%.*s", (int)strcspn(o, "\n"), o);
    sl_test_read(out, "compare.csv", buf, sizeof(buf));
    assert_true(strncmp(buf, "policy,", 7) == 0);
    /* nothing written where it was started */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", cwd);
    assert_int_equal(system(cmd), 0);
    /* a second run gets another folder */
    assert_int_equal(s_sim(cwd, env, "compare " S_SMALL " --loads 0.5"), 0);
    assert_null(strstr(s_out, out));
    sl_test_rmtree(tmp);
    sl_test_rmtree(cwd);
}

static void test_compare_without_gnuplot_writes_scripts(void **state)
{
    (void)state;
    char dir[512], args[1024], buf[1 << 16];
    sl_test_tmpdir("test_sim_cli", dir, sizeof(dir));
    snprintf(args, sizeof(args),
             "compare --executors 4 --speeds 1 --requests 20 --loads 0.5 --plot true --out '%s'",
             dir);
    assert_int_equal(s_sim(NULL, "PATH=/nonexistent", args), 0);
    s_must_say("no gnuplot", "warning: gnuplot not found");
    sl_test_read(dir, "goodput_vs_load.gp", buf, sizeof(buf));
    sl_test_read(dir, "ttft_cdf.gp", buf, sizeof(buf));
    s_check_script(buf, "ttft_cdf.gp");
    sl_test_rmtree(dir);
}

static void test_compare_warns_without_saturation(void **state)
{
    (void)state;
    char dir[512], args[1024];
    sl_test_tmpdir("test_sim_cli", dir, sizeof(dir));
    /* SLOs nobody can miss: the sweep never saturates */
    snprintf(args, sizeof(args),
             "compare " S_SMALL " --loads 0.5,1 --slo-ttft-floor 1000 --slo-tpot 100 --out '%s'",
             dir);
    assert_int_equal(s_sim(NULL, "", args), 0);
    s_must_say("lenient SLOs", "warning: the sweep never reaches saturation: at the highest "
                               "load, ");
    s_must_say("lenient SLOs", "(24 loads added)");
    /* SLOs nobody can meet: saturated from the start */
    snprintf(args, sizeof(args),
             "compare " S_SMALL " --loads 0.5,1 --slo-ttft-mult 0.0001 --slo-ttft-floor 0 "
             "--out '%s'",
             dir);
    assert_int_equal(s_sim(NULL, "", args), 0);
    /* (the sweep halves its lowest load four times first) */
    s_must_say("strict SLOs", "warning: no baseline meets 90% of its SLOs even at the lowest "
                              "load, 0.031 req/s");
    /* a sweep through saturation: no warning */
    snprintf(args, sizeof(args), "compare " S_SMALL " --loads 0.05,100 --out '%s'", dir);
    assert_int_equal(s_sim(NULL, "", args), 0);
    if (strstr(s_out, "warning"))
        fail_msg("a sweep through saturation warned:\n%s", s_out);
    sl_test_rmtree(dir);
}

/* disagg --quick: a table and one RESULT line with every key, the same
 * for the same seed; bad roles are refused with the reason. */
static void test_disagg_quick(void **state)
{
    (void)state;
    static const char *const keys[] = {"disagg_vs_aggregated",
                                       "best_split",
                                       "conditional_vs_aggregated",
                                       "fetch_vs_aggregated",
                                       "aggregated_fetch_vs_aggregated",
                                       "migrate_vs_aggregated",
                                       "load_rps",
                                       "executors",
                                       "trace",
                                       "seed"};
    char v[128], first[1024];
    assert_int_equal(s_sim(NULL, "", "disagg --quick --executors 8 --seed 5"), 0);
    s_must_say("disagg table", "aggregated");
    s_must_say("disagg table", "conditional");
    s_must_say("disagg table", "best split + migration");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        s_result(keys[i], v, sizeof(v));
    s_result("disagg_vs_aggregated", v, sizeof(v));
    assert_true(strtod(v, NULL) > 0);
    s_result("migrate_vs_aggregated", v, sizeof(v));
    assert_true(strtod(v, NULL) > 0);
    s_result("aggregated_fetch_vs_aggregated", v, sizeof(v));
    assert_true(strtod(v, NULL) > 0);
    s_must_say("disagg table", "aggregated + fetch");
    s_result("best_split", v, sizeof(v));
    int pf = 0, dc = 0;
    assert_int_equal(sscanf(v, "%d:%d", &pf, &dc), 2);
    assert_true(pf >= 1 && dc >= 1 && pf + dc == 8);
    s_result("executors", v, sizeof(v));
    assert_string_equal(v, "8");
    s_result("trace", v, sizeof(v));
    assert_string_equal(v, "mooncake-conversation");
    const char *r = strstr(s_out, "RESULT ");
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(r, "\n"), r);
    assert_int_equal(s_sim(NULL, "", "disagg --quick --executors 8 --seed 5"), 0);
    if (!strstr(s_out, first))
        fail_msg("the same seed gave another RESULT line:\n%s\nthen:\n%s", first, s_out);
    /* a given load and ratio: no search, that split */
    assert_int_equal(s_sim(NULL, "", "disagg --quick --executors 4 --load 2 --ratios 1:3"), 0);
    s_result("best_split", v, sizeof(v));
    assert_string_equal(v, "1:3");
    s_result("load_rps", v, sizeof(v));
    assert_string_equal(v, "2.00");
    assert_int_equal(s_sim(NULL, "", "disagg --quick --executors 4 --ratios 3:2"), 2);
    s_must_say("--ratios 3:2", "--ratios: '3:2' is not P:D with P, D >= 1 and P + D <= "
                               "--executors 4");
    assert_int_equal(s_sim(NULL, "", "run --requests 5 --kv-rebalance maybe"), 2);
    s_must_say("--kv-rebalance maybe", "--kv-rebalance: 'maybe' is not on or off");
    assert_int_equal(s_sim(NULL, "", "run --requests 5 --executors 4 --prefill 3 --decode 2"), 2);
    s_must_say("--prefill 3 --decode 2", "--prefill 3 plus --decode 2 is more than --executors 4");
    /* run with roles reports its data plane */
    assert_int_equal(s_sim(NULL, "", "run --requests 40 --executors 4 --prefill 1 --decode 3"), 0);
    s_must_say("run with roles", "data plane: ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_sets_executors),
        cmocka_unit_test(test_bad_names_list_the_valid_ones),
        cmocka_unit_test(test_compare_files),
        cmocka_unit_test(test_compare_default_out_is_a_fresh_folder),
        cmocka_unit_test(test_compare_without_gnuplot_writes_scripts),
        cmocka_unit_test(test_compare_warns_without_saturation),
        cmocka_unit_test(test_disagg_quick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
