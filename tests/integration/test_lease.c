/*
 * The leader lease (scheduler/sl_lease.c) against a real etcd started by
 * this test: the fencing arithmetic on a simulated clock; a standby that
 * takes over when the leader stops cleanly; and a leader paused with
 * SIGSTOP: the standby takes over within the TTL, and the paused leader,
 * resumed, never acts after the standby has won (every check it passed
 * began before that) and then finds its lease lost. etcd-server is a
 * Debian package (scripts/setup); without it the etcd cases are skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/sl_bench_proc.h"
#include "common/sl_clock.h"
#include "scheduler/sl_lease.h"
#include "tests/support/sl_test.h"

static char s_dir[256];
static char s_url[64];
static pid_t s_etcd;

static bool s_have_etcd(void)
{
    return system("command -v etcd >/dev/null 2>&1") == 0;
}

/* etcd with a 50 ms heartbeat and a 250 ms election timeout: its shortest
 * lease is then one second (1.5 x the election timeout, in whole seconds). */
static int s_etcd_up(void **state)
{
    (void)state;
    if (!s_have_etcd())
        return 0;
    snprintf(s_dir, sizeof(s_dir), "/tmp/sl-lease-XXXXXX");
    assert_non_null(mkdtemp(s_dir));
    int cport = sl_bench_free_port(), pport = sl_bench_free_port();
    assert_true(cport > 0 && pport > 0);
    char data[300], curl[64], purl[64], cluster[96], log[300];
    snprintf(data, sizeof(data), "%s/data", s_dir);
    snprintf(log, sizeof(log), "%s/etcd.log", s_dir);
    snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", cport);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", pport);
    snprintf(cluster, sizeof(cluster), "t=%s", purl);
    snprintf(s_url, sizeof(s_url), "%s", curl);
    s_etcd = fork();
    assert_true(s_etcd >= 0);
    if (s_etcd == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("etcd", "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls", curl,
               "--advertise-client-urls", curl, "--listen-peer-urls", purl,
               "--initial-advertise-peer-urls", purl, "--initial-cluster", cluster,
               "--heartbeat-interval", "50", "--election-timeout", "250", (char *)NULL);
        _exit(127);
    }
    /* ready once it answers a read */
    char v[64];
    for (int i = 0; i < 200; i++) {
        sl_status_t rc = sl_lease_leader(s_url, "/probe", 200, v, sizeof(v));
        if (rc == SL_ERR_NOT_FOUND)
            return 0;
        usleep(50000);
    }
    fprintf(stderr, "etcd did not come up; its log is %s\n", log);
    return -1;
}

static int s_etcd_down(void **state)
{
    (void)state;
    if (s_etcd > 0) {
        kill(s_etcd, SIGTERM);
        waitpid(s_etcd, NULL, 0);
        s_etcd = 0;
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", s_dir);
    }
    return 0;
}

static sl_lease_cfg_t s_cfg(const char *key)
{
    sl_lease_cfg_t cfg;
    assert_int_equal(sl_cfg_defaults(sl_lease_cfg_table, &cfg), SL_OK);
    snprintf(cfg.etcd, sizeof(cfg.etcd), "%s", s_url);
    snprintf(cfg.key, sizeof(cfg.key), "%s", key);
    return cfg;
}

/* The arithmetic: held until sent + ttl - margin; an older answer never
 * shortens it; no time left is LOST for good. */
static void test_core_fencing(void **state)
{
    (void)state;
    sl_lease_core_t c;
    sl_lease_core_init(&c, SL_MS(100));
    assert_false(sl_lease_core_held(&c, 0));
    sl_lease_core_won(&c, SL_MS(100), SL_MS(1000));
    assert_true(sl_lease_core_held(&c, SL_MS(999)));
    assert_false(sl_lease_core_held(&c, SL_MS(1000)));
    sl_lease_core_renewed(&c, SL_MS(600), SL_MS(1000)); /* until 1500 */
    sl_lease_core_renewed(&c, SL_MS(300), SL_MS(1000)); /* older: no change */
    assert_true(sl_lease_core_held(&c, SL_MS(1499)));
    assert_false(sl_lease_core_held(&c, SL_MS(1500)));
    sl_lease_core_renew_failed(&c); /* nothing extended */
    assert_false(sl_lease_core_held(&c, SL_MS(1500)));
    sl_lease_core_renewed(&c, SL_MS(1600), 0); /* etcd: gone */
    assert_int_equal(c.state, SL_LEASE_LOST);
    assert_false(sl_lease_core_held(&c, SL_MS(1601)));
    sl_lease_core_won(&c, SL_MS(1700), SL_MS(1000)); /* never again */
    assert_false(sl_lease_core_held(&c, SL_MS(1701)));
    assert_int_equal(c.renewals, 2); /* both answered with time left */
    assert_int_equal(c.renew_failures, 1);
}

/* One leads, the other waits; the leader stops (revoking) and the
 * standby leads at its next try. */
static void test_standby_takes_over_on_stop(void **state)
{
    (void)state;
    if (!s_etcd) {
        skip();
    }
    sl_lease_cfg_t cfg = s_cfg("/t/stop");
    sl_lease_t *a = NULL, *b = NULL;
    char who[64];
    assert_int_equal(sl_lease_start(&cfg, "tcp://a:5555", &a), SL_OK);
    assert_int_equal(sl_lease_wait(a, 5000, NULL), SL_OK);
    assert_true(sl_lease_held(a));
    assert_int_equal(sl_lease_start(&cfg, "tcp://b:5555", &b), SL_OK);
    assert_int_equal(sl_lease_wait(b, 600, NULL), SL_ERR_TIMEOUT);
    assert_false(sl_lease_held(b));
    assert_int_equal(sl_lease_leader(s_url, cfg.key, 500, who, sizeof(who)), SL_OK);
    assert_string_equal(who, "tcp://a:5555");
    sl_lease_stats_t st;
    sl_lease_stats(b, &st);
    assert_true(st.tries >= 2);
    assert_string_equal(st.holder, "tcp://a:5555");

    sl_time_t t0 = sl_clock_now();
    sl_lease_stop(&a);
    assert_int_equal(sl_lease_wait(b, 3000, NULL), SL_OK);
    sl_time_t took = sl_clock_now() - t0;
    fprintf(stderr, "# takeover after a clean stop: %.0f ms\n", (double)took / 1e6);
    assert_true(took < SL_MS(1000)); /* a retry period, not a TTL */
    assert_int_equal(sl_lease_leader(s_url, cfg.key, 500, who, sizeof(who)), SL_OK);
    assert_string_equal(who, "tcp://b:5555");
    sl_lease_stop(&b);
    assert_int_equal(sl_lease_leader(s_url, cfg.key, 500, who, sizeof(who)), SL_ERR_NOT_FOUND);
}

/* The child leads and "dispatches" (writes the time it began each check
 * that passed) until its lease is lost; exits 3 when lost. */
static void s_child_leader(int wfd, const char *key)
{
    sl_lease_cfg_t cfg = s_cfg(key);
    sl_lease_t *l = NULL;
    if (sl_lease_start(&cfg, "tcp://child:5555", &l) != SL_OK || sl_lease_wait(l, 5000, NULL))
        _exit(2);
    sl_time_t end = sl_clock_now() + SL_MS(20000);
    while (sl_clock_now() < end) {
        sl_time_t t0 = sl_clock_now();
        if (sl_lease_held(l)) {
            if (write(wfd, &t0, sizeof(t0)) != sizeof(t0))
                _exit(4);
        } else if (sl_lease_state(l) == SL_LEASE_LOST) {
            _exit(3);
        }
        usleep(2000);
    }
    _exit(5);
}

/* A leader paused (SIGSTOP): the standby takes over within the TTL; the
 * leader resumed acts on nothing begun after that, and finds its lease
 * lost. */
static void test_paused_leader_is_fenced(void **state)
{
    (void)state;
    if (!s_etcd) {
        skip();
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(p[0]);
        s_child_leader(p[1], "/t/pause");
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    sl_time_t t, last = 0;
    /* the child leads: its first dispatch */
    sl_time_t end = sl_clock_now() + SL_MS(5000);
    while (sl_clock_now() < end && read(p[0], &t, sizeof(t)) != sizeof(t))
        usleep(5000);
    assert_true(sl_clock_now() < end);

    sl_lease_cfg_t cfg = s_cfg("/t/pause");
    sl_lease_t *b = NULL;
    assert_int_equal(sl_lease_start(&cfg, "tcp://b:5555", &b), SL_OK);
    usleep(300000);
    assert_false(sl_lease_held(b)); /* the child is alive and renewing */

    assert_int_equal(kill(child, SIGSTOP), 0);
    sl_time_t stopped = sl_clock_now();
    assert_int_equal(sl_lease_wait(b, 5000, NULL), SL_OK);
    sl_lease_stats_t st;
    sl_lease_stats(b, &st);
    double took_ms = (double)(st.won_at - stopped) / 1e6;
    fprintf(stderr, "# takeover after SIGSTOP of the leader: %.0f ms (TTL %d ms)\n", took_ms,
            cfg.ttl_ms);
    assert_true(took_ms < 2000);

    assert_int_equal(kill(child, SIGCONT), 0);
    int status = 0;
    end = sl_clock_now() + SL_MS(5000);
    pid_t w = 0;
    long n = 0, late = 0;
    while (sl_clock_now() < end && (w = waitpid(child, &status, WNOHANG)) == 0) {
        while (read(p[0], &t, sizeof(t)) == sizeof(t)) {
            n++;
            late += t >= st.won_at;
            last = t > last ? t : last;
        }
        usleep(5000);
    }
    while (read(p[0], &t, sizeof(t)) == sizeof(t)) {
        n++;
        late += t >= st.won_at;
    }
    close(p[0]);
    if (w != child) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        fail_msg("the resumed leader did not find its lease lost");
    }
    fprintf(stderr,
            "# the resumed leader: %ld dispatches in all, %ld begun after the "
            "standby won\n",
            n, late);
    assert_int_equal(late, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3); /* LOST */
    assert_true(sl_lease_held(b));
    sl_lease_stop(&b);
}

/* etcd not answering: a standby stays a standby, no crash; a bad list is
 * refused. */
static void test_no_etcd(void **state)
{
    (void)state;
    sl_lease_cfg_t cfg;
    assert_int_equal(sl_cfg_defaults(sl_lease_cfg_table, &cfg), SL_OK);
    sl_lease_t *l = NULL;
    assert_int_equal(sl_lease_start(&cfg, "x", &l), SL_ERR_INVALID); /* no etcd */
    int port = sl_bench_free_port();
    snprintf(cfg.etcd, sizeof(cfg.etcd), "http://127.0.0.1:%d", port);
    assert_int_equal(sl_lease_start(&cfg, "x", &l), SL_OK);
    assert_int_equal(sl_lease_wait(l, 300, NULL), SL_ERR_TIMEOUT);
    assert_false(sl_lease_held(l));
    sl_lease_stop(&l);
    char v[16];
    assert_int_equal(sl_lease_leader(cfg.etcd, "/k", 100, v, sizeof(v)), SL_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_fencing),
        cmocka_unit_test(test_no_etcd),
        cmocka_unit_test(test_standby_takes_over_on_stop),
        cmocka_unit_test(test_paused_leader_is_fenced),
    };
    return cmocka_run_group_tests(tests, s_etcd_up, s_etcd_down);
}
