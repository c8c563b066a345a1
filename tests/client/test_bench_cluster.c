/*
 * The client tools against the real programs on loopback: `sluice submit`
 * and `sluice status`, `sluice-bench loadgen` (all done; BUSY counted and
 * dropped against a tiny queue), `sluice-bench ctlplane` and `sluice-bench codec`.
 * What the daemons and commands write on stderr goes to files in a temp dir,
 * copied to the test's output and checked for ERROR lines at the end of each
 * (sl_test_check_log).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/client.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_clock.h"
#include "tests/support/sl_test.h"

typedef struct cluster {
    pid_t pids[4];      /* scheduler then executors */
    int n;              /* processes started */
    char client_ep[64]; /* scheduler's client endpoint */
    char exec_ep[64];   /* scheduler's executor endpoint */
} cluster_t;

static const char *s_bin(void)
{
    const char *b = getenv("SLUICE_BIN");
    return b ? b : "build/bin";
}

static char s_logs[64]; /* temp dir of the logs; "" until made */

static void s_logs_remove(void)
{
    rmdir(s_logs);
}

/* Path of log name in the temp dir, made on first use. */
static void s_log_path(const char *name, char *path, size_t cap)
{
    if (!s_logs[0]) {
        snprintf(s_logs, sizeof(s_logs), "/tmp/sluice-tb-XXXXXX");
        assert_non_null(mkdtemp(s_logs));
        atexit(s_logs_remove);
    }
    snprintf(path, cap, "%s/%s.log", s_logs, name);
}

/* Copy a log to the output, check it, remove it. */
static void s_log_check(const char *name)
{
    char path[128];
    s_log_path(name, path, sizeof(path));
    sl_test_check_log(path, name);
    unlink(path);
}

static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void s_spawn(cluster_t *c, char **argv)
{
    char name[16], log[128];
    snprintf(name, sizeof(name), "proc%d", c->n);
    s_log_path(name, log, sizeof(log));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sl_test_stderr_to(log);
        execv(argv[0], argv);
        _exit(127);
    }
    c->pids[c->n++] = pid;
}

/* A scheduler and n executors; waits until they are registered. */
static void s_start(cluster_t *c, int n, const char *queue_max, const char *backend,
                    const char *slots)
{
    char sched[512], exec[512];
    memset(c, 0, sizeof(*c));
    snprintf(c->client_ep, sizeof(c->client_ep), "tcp://127.0.0.1:%d", s_free_port());
    snprintf(c->exec_ep, sizeof(c->exec_ep), "tcp://127.0.0.1:%d", s_free_port());
    snprintf(sched, sizeof(sched), "%s/sluice-scheduler", s_bin());
    snprintf(exec, sizeof(exec), "%s/sluice-executor", s_bin());
    char *sargv[] = {sched,
                     "--client-endpoint",
                     c->client_ep,
                     "--executor-endpoint",
                     c->exec_ep,
                     "--queue-max",
                     (char *)queue_max,
                     "--log-level",
                     "error",
                     "--insecure",
                     NULL};
    s_spawn(c, sargv);
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "tb-e%d", i);
        char *eargv[] = {exec,        "--scheduler",   c->exec_ep, "--name",      name,
                         "--backend", (char *)backend, "--slots",  (char *)slots, "--log-level",
                         "error",     "--insecure",    NULL};
        s_spawn(c, eargv);
    }
    sl_client_cfg_t cfg;
    sl_client_t *cl = NULL;
    sl_client_cfg_default(&cfg);
    cfg.insecure = true;
    snprintf(cfg.endpoint, sizeof(cfg.endpoint), "%s", c->client_ep);
    cfg.wait_timeout_ms = 200;
    assert_int_equal(sl_client_create(&cfg, &cl), SL_OK);
    sl_time_t deadline = sl_clock_now() + SL_MS(20000);
    size_t alive = 0;
    while (alive < (size_t)n && sl_clock_now() < deadline) {
        sl_cluster_status_t *st = NULL;
        if (sl_client_status(cl, &st) == SL_OK) {
            alive = 0;
            for (size_t i = 0; i < st->n_executors; i++)
                alive += st->executors[i].alive;
            sl_cluster_status_destroy(&st);
        } else {
            sl_clock_sleep(SL_MS(50));
        }
    }
    sl_client_destroy(&cl);
    assert_int_equal(alive, (size_t)n);
}

static void s_stop(cluster_t *c)
{
    for (int i = c->n - 1; i >= 0; i--)
        kill(c->pids[i], SIGTERM);
    for (int i = c->n - 1; i >= 0; i--) {
        sl_time_t deadline = sl_clock_now() + SL_MS(5000);
        while (waitpid(c->pids[i], NULL, WNOHANG) == 0) {
            if (sl_clock_now() > deadline) {
                kill(c->pids[i], SIGKILL);
                waitpid(c->pids[i], NULL, 0);
                break;
            }
            sl_clock_sleep(SL_MS(10));
        }
    }
    for (int i = 0; i < c->n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "proc%d", i);
        s_log_check(name);
    }
    c->n = 0;
}

/* Run a command, capture its stdout into out, return its exit status; its
 * stderr is checked as a log. */
static int s_capture(const char *cmd, char *out, size_t cap)
{
    char log[128], full[2304];
    s_log_path("command", log, sizeof(log));
    snprintf(full, sizeof(full), "%s 2>%s", cmd, log);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    s_log_check("command");
    assert_true(WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

static unsigned long s_field(const char *text, const char *key)
{
    const char *r = strstr(text, "RESULT ");
    assert_non_null(r);
    const char *k = strstr(r, key);
    assert_non_null(k);
    return strtoul(k + strlen(key), NULL, 10);
}

static char s_out[1 << 16];

static void test_cli_against_scheduler(void **state)
{
    cluster_t c;
    char cmd[1024];
    s_start(&c, 1, "100000", "null", "32");
    snprintf(cmd, sizeof(cmd),
             "%s/sluice submit --insecure --endpoint %s --wait-timeout-ms 10000 --prompt-tokens 8 "
             "--max-new-tokens 5 --stream --tenant t1",
             s_bin(), c.client_ep);
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    assert_non_null(strstr(s_out, ": ok"));
    assert_non_null(strstr(s_out, "tokens (5)"));
    snprintf(cmd, sizeof(cmd), "%s/sluice status --insecure --endpoint %s", s_bin(), c.client_ep);
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    assert_non_null(strstr(s_out, "tb-e0"));
    s_stop(&c);
}

static void test_loadgen(void **state)
{
    cluster_t c;
    char cmd[2048];
    const char *dir = getenv("SLUICE_TRACE_DIR");
    s_start(&c, 2, "100000", "null", "64");
    snprintf(cmd, sizeof(cmd),
             "%s/sluice-bench loadgen --insecure --endpoint %s --trace mooncake-conversation "
             "--trace-dir %s --count 400 --rate 2000 --priority mix --progress-ms 100 "
             "--drain-timeout-ms 20000",
             s_bin(), c.client_ep, dir ? dir : "data/traces");
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    assert_int_equal(s_field(s_out, "sent="), 400);
    assert_int_equal(s_field(s_out, "done="), 400);
    assert_int_equal(s_field(s_out, "errors="), 0);
    s_stop(&c);

    /* One slow executor and a queue of one: BUSY answers, dropped, not errors. */
    s_start(&c, 1, "1", "sim", "1");
    snprintf(cmd, sizeof(cmd),
             "%s/sluice-bench loadgen --insecure --endpoint %s --trace azure-code --trace-dir %s "
             "--count 100 --rate 1000 --busy drop --max-new-tokens-cap 4 "
             "--drain-timeout-ms 20000",
             s_bin(), c.client_ep, dir ? dir : "data/traces");
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    unsigned long busy = s_field(s_out, "busy="), done = s_field(s_out, "done=");
    assert_true(busy > 0);
    assert_int_equal(s_field(s_out, "errors="), 0);
    assert_int_equal(done + busy, 100);
    s_stop(&c);

    /* No scheduler: every job times out. Exit status 1, and no latency
     * percentile is made up from no data. */
    snprintf(cmd, sizeof(cmd),
             "%s/sluice-bench loadgen --insecure --endpoint tcp://127.0.0.1:1 --trace azure-code "
             "--trace-dir %s --count 5 --rate 1000 --ack-timeout-ms 50 --ack-retries 0 "
             "--drain-timeout-ms 5000",
             s_bin(), dir ? dir : "data/traces");
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 1);
    assert_int_equal(s_field(s_out, "errors="), 5);
    assert_int_equal(s_field(s_out, "done="), 0);
    if (!strstr(s_out, " ttft_p50_ms=- ttft_p99_ms=- e2e_p50_ms=- e2e_p99_ms=- "))
        fail_msg("loadgen's output:\n%s", s_out);

    snprintf(cmd, sizeof(cmd), "%s/sluice-bench loadgen --busy sometimes", s_bin());
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 2);
    snprintf(cmd, sizeof(cmd), "%s/sluice-bench loadgen --poisson", s_bin());
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 2);
}

static void test_ctlplane(void **state)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s/sluice-bench ctlplane --duration-s 0.3 --warmup-s 0.1 --executors 2 "
             "--window 32 --transport ipc",
             s_bin());
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    assert_true(s_field(s_out, "raw_rt_per_s=") > 0);
    assert_true(s_field(s_out, "jobs_per_s=") > 0);
    assert_non_null(strstr(s_out, "ratio="));
}

static void test_codec_bench(void **state)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice-bench codec --items 16 --rounds 1 --duration-ms 5",
             s_bin());
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 0);
    assert_non_null(strstr(s_out, "RESULT encode_speedup="));
    assert_true(s_field(s_out, "protobuf_c_ns_per_job=") > 0);
    snprintf(cmd, sizeof(cmd), "%s/sluice-bench codec --items 0", s_bin());
    assert_int_equal(s_capture(cmd, s_out, sizeof(s_out)), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_against_scheduler),
        cmocka_unit_test(test_loadgen),
        cmocka_unit_test(test_ctlplane),
        cmocka_unit_test(test_codec_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
