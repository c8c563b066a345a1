/*
 * The refusal matrix of CURVE with ZAP against the real scheduler: a peer
 * with no key, with a wrong server key, with a key in no allow-list, with
 * a key revoked by SIGHUP (its live connection and a new one), and with a
 * client key on the executor port are all refused, and nothing they send
 * reaches the core (its counters of submits and registrations do not move)
 * while the refusal counters do. An allowed client is served, and its jobs
 * count against the tenant of its key whatever Job.tenant says (seen
 * through the tenant's token bucket: the key's tenant runs out, a job's
 * own tenants would not).
 */
#include "cluster.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "tests/support/sl_test.h"

/* A DEALER to ep, a CURVE client with keys (NULL: plain text). */
static void *s_dealer(cl_t *c, const sl_auth_keys_t *keys, const char *ep)
{
    void *s = zmq_socket(c->zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (keys)
        assert_int_equal(sl_auth_sock_client(s, keys), SL_OK);
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

/* A fresh pair that no allow-list holds, aimed at the scheduler's key. */
static sl_auth_keys_t s_stranger(const cl_t *c)
{
    sl_auth_keys_t k;
    assert_int_equal(zmq_curve_keypair(k.public_key, k.secret_key), 0);
    memcpy(k.server_key, c->server_key.public_key, sizeof(k.server_key));
    return k;
}

static void s_submit(void *sock, const char *id, const char *tenant)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = cl_job(id, 8, 2, 0);
    j.tenant = tenant;
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, ZMQ_DONTWAIT), SL_OK);
    sl_wire_batch_fini(&b);
}

/* The first answer about a job on sock within timeout_ms; -1 when none. */
static int s_answer(void *sock, int timeout_ms)
{
    cl_ev_t ev;
    if (!cl_next(sock, timeout_ms, &ev))
        return -1;
    int kind = (int)ev.kind;
    cl_ev_free(&ev);
    return kind;
}

/* Status counter name, read over the allowed client's socket. */
static int64_t s_ctr(void *probe, const char *name)
{
    return cl_status_counter(probe, name);
}

/* Poll until counter name reaches at least want (5 s at most). */
static int64_t s_wait_ctr(void *probe, const char *name, int64_t want)
{
    int64_t v = -1;
    for (int i = 0; i < 100 && (v = s_ctr(probe, name)) < want; i++)
        usleep(50000);
    return v;
}

static int64_t s_handshakes_failed(void *probe)
{
    return s_ctr(probe, "auth_handshake_failed_protocol") +
           s_ctr(probe, "auth_handshake_failed_auth") + s_ctr(probe, "auth_handshake_failed_other");
}

static void test_refusal_matrix(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "auth");
    /* a second allowed client, to be revoked */
    sl_auth_keys_t revokee = s_stranger(&c);
    char path[400], line[256];
    snprintf(path, sizeof(path), "%s/clients.allow", c.key_dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "%s tenant-r\n", revokee.public_key);
    fclose(f);
    /* a loaded host must not lose x1 (a second join would move the counters) */
    const char *sched_args[] = {"--admission=true", "--tenant-rate=0.001", "--tenant-burst=2",
                                "--missed-heartbeats=100", NULL};
    int sched = cl_scheduler(&c, sched_args);
    const char *exec_args[] = {"--backend=null", NULL};
    cl_executor(&c, "x1", exec_args);
    void *probe = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, probe, 1, 10000), 0);
    void *rev = s_dealer(&c, &revokee, c.client_ep);
    s_submit(rev, "rev-1", "");
    assert_int_equal(s_answer(rev, 5000), CL_EV_ACCEPTED);
    assert_int_equal(s_answer(rev, 5000), CL_EV_RESULT);

    int64_t submitted = s_ctr(probe, "jobs_submitted");
    int64_t joined = s_ctr(probe, "executors_joined");
    int64_t failed = s_handshakes_failed(probe);
    assert_int_equal(submitted, 1);
    assert_int_equal(joined, 1);

    /* 1. no key: a plain-text client against the CURVE server */
    void *plain = s_dealer(&c, NULL, c.client_ep);
    s_submit(plain, "plain-1", "");
    assert_int_equal(s_answer(plain, 500), -1);

    /* 2. a wrong server key: the client's own pair, aimed at another server */
    sl_auth_keys_t wrong = c.client_key, other = s_stranger(&c);
    memcpy(wrong.server_key, other.public_key, sizeof(wrong.server_key));
    void *misaimed = s_dealer(&c, &wrong, c.client_ep);
    s_submit(misaimed, "wrong-1", "");
    assert_int_equal(s_answer(misaimed, 500), -1);

    /* 3. a key in no allow-list */
    sl_auth_keys_t unknown = s_stranger(&c);
    void *stranger = s_dealer(&c, &unknown, c.client_ep);
    s_submit(stranger, "unknown-1", "");
    assert_int_equal(s_answer(stranger, 500), -1);
    assert_true(s_wait_ctr(probe, "auth_denied_unknown_key", 1) >= 1);

    /* 4. revoked by SIGHUP: its live connection's messages are dropped, a
     * new connection is refused at the handshake */
    snprintf(line, sizeof(line), "%s test\n", c.client_key.public_key);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(line, f);
    fclose(f);
    cl_kill(&c, sched, SIGHUP);
    assert_int_equal(s_wait_ctr(probe, "auth_reloads", 1), 1);
    s_submit(rev, "rev-2", "");
    assert_int_equal(s_answer(rev, 500), -1);
    assert_true(s_wait_ctr(probe, "auth_msgs_revoked", 1) >= 1);
    int64_t unknown_before = s_ctr(probe, "auth_denied_unknown_key");
    void *rev2 = s_dealer(&c, &revokee, c.client_ep);
    s_submit(rev2, "rev-3", "");
    assert_int_equal(s_answer(rev2, 500), -1);
    assert_true(s_wait_ctr(probe, "auth_denied_unknown_key", unknown_before + 1) >=
                unknown_before + 1);

    /* 5. a client key presented as an executor */
    void *impostor = s_dealer(&c, &c.client_key, c.exec_ep);
    sl_wire_hello_t h = {.info = {.name = "impostor", .slots = 4, .backend = "null"}, .zone = ""};
    assert_int_equal(sl_wire_hello_send(impostor, &h, ZMQ_DONTWAIT), SL_OK);
    assert_null(cl_recv(impostor, 500));
    assert_true(s_wait_ctr(probe, "auth_denied_wrong_role", 1) >= 1);

    /* and the reverse: an executor key cannot submit */
    int64_t role_before = s_ctr(probe, "auth_denied_wrong_role");
    void *submitter = s_dealer(&c, &c.executor_key, c.client_ep);
    s_submit(submitter, "exec-1", "");
    assert_int_equal(s_answer(submitter, 500), -1);
    assert_true(s_wait_ctr(probe, "auth_denied_wrong_role", role_before + 1) >= role_before + 1);

    /* None of them reached the core; each was counted. */
    assert_int_equal(s_ctr(probe, "jobs_submitted"), submitted);
    assert_int_equal(s_ctr(probe, "executors_joined"), joined);
    assert_true(s_handshakes_failed(probe) >= failed + 4); /* all but the live revoked one */
    assert_true(s_ctr(probe, "auth_admitted") >= 3); /* probe, revokee, x1 (and reconnections) */

    /* The allowed client is served, under its key's tenant: the bucket of
     * "test" (burst 2) refuses the third job although each names another. */
    s_submit(probe, "ok-1", "alpha");
    s_submit(probe, "ok-2", "beta");
    s_submit(probe, "ok-3", "gamma");
    int accepted = 0, busy = 0, results = 0;
    for (int i = 0; i < 20 && results + busy < 3; i++) {
        cl_ev_t ev;
        if (!cl_next(probe, 2000, &ev))
            break;
        accepted += ev.kind == CL_EV_ACCEPTED;
        busy += ev.kind == CL_EV_BUSY;
        results += ev.kind == CL_EV_RESULT && ev.result.status == SL_JOB_OK;
        cl_ev_free(&ev);
    }
    assert_int_equal(accepted, 2);
    assert_int_equal(results, 2);
    assert_int_equal(busy, 1);
    assert_int_equal(s_ctr(probe, "busy_tenant"), 1);
    assert_int_equal(s_ctr(probe, "auth_tenant_replaced"), 3);

    zmq_close(plain);
    zmq_close(misaimed);
    zmq_close(stranger);
    zmq_close(rev);
    zmq_close(rev2);
    zmq_close(impostor);
    zmq_close(submitter);
    zmq_close(probe);
    cl_fini(&c);
}

/* Without --key-dir or --insecure the daemons refuse to start, saying why. */
static void test_no_keys_refused(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "nokeys");
    const char *none[] = {"--key-dir=", NULL};
    sl_test_expect_errors("no keys: give --key-dir DIR", 2, 2);
    int s = cl_spawn(&c, "sluice-scheduler", none);
    int x = cl_spawn(&c, "sluice-executor", none);
    assert_int_equal(cl_wait(&c, s, 10000), 2);
    assert_int_equal(cl_wait(&c, x, 10000), 2);
    assert_true(cl_log_has(&c, s,
                           "no keys: give --key-dir DIR (see `sluice keygen`), or "
                           "--insecure to run without authentication"));
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_matrix),
        cmocka_unit_test(test_no_keys_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
