/*
 * Test harness for integration tests: starts sluice-scheduler and
 * sluice-executor from SLUICE_BIN as real child processes on ipc endpoints
 * in a private temp dir, and speaks the wire protocol with a raw DEALER, as
 * any client would. Every child is killed at the end, even on failure paths
 * (atexit, or the next case's cl_init), so no process is left behind.
 * Each child's stderr goes to a file in the temp dir; at the end the files
 * are copied to the test's stderr (what ctest shows of a failed test) and
 * their ERROR lines checked against what the case declared (sl_test.h).
 * Rejected: children writing to the test's stderr directly (nothing could
 * read their lines back to check them).
 */
#include "cluster.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <cmocka.h>

#include "tests/support/sl_test.h"

static cl_t *s_live;

static void s_fini(cl_t *c, int check);

static void s_atexit(void)
{
    if (s_live)
        s_fini(s_live, 0);
}

/* A pair name in c->key_dir into keys; exits on failure (nothing to test without). */
static void s_keygen(cl_t *c, const char *name, sl_auth_keys_t *keys)
{
    char pub[SL_AUTH_KEY_LEN + 1];
    sl_auth_keys_t *k = NULL;
    if (sl_auth_keygen(c->key_dir, name, pub) != SL_OK ||
        sl_auth_keys_setup(c->key_dir, name, false, "server", "test", &k) != SL_OK) {
        fprintf(stderr, "cannot make the key %s in %s\n", name, c->key_dir);
        exit(1);
    }
    *keys = *k;
    sl_auth_keys_free(&k);
}

static void s_write(const char *dir, const char *file, const char *text)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void s_keys_init(cl_t *c)
{
    char line[128];
    snprintf(c->key_dir, sizeof(c->key_dir), "%s/keys", c->dir);
    s_keygen(c, "server", &c->server_key);
    s_keygen(c, "client", &c->client_key);
    s_keygen(c, "executor", &c->executor_key);
    memcpy(c->client_key.server_key, c->server_key.public_key, sizeof(c->server_key.public_key));
    memcpy(c->executor_key.server_key, c->server_key.public_key, sizeof(c->server_key.public_key));
    snprintf(line, sizeof(line), "%s test\n", c->client_key.public_key);
    s_write(c->key_dir, "clients.allow", line);
    snprintf(line, sizeof(line), "%s executors\n", c->executor_key.public_key);
    s_write(c->key_dir, "executors.allow", line);
    snprintf(c->client_keys, sizeof(c->client_keys), "--key-dir=%s --key-name=client", c->key_dir);
    snprintf(c->key_dir_arg, sizeof(c->key_dir_arg), "--key-dir=%s", c->key_dir);
}

static void s_keys_fini(cl_t *c)
{
    static const char *const files[] = {"server.key",    "server.pub",     "client.key",
                                        "client.pub",    "executor.key",   "executor.pub",
                                        "clients.allow", "executors.allow"};
    char path[400];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", c->key_dir, files[i]);
        unlink(path);
    }
    rmdir(c->key_dir);
}

void cl_secure(void *sock, const sl_auth_keys_t *keys, const cl_t *c)
{
    int one = 1;
    if (keys == &c->server_key) /* no ZAP domain: without a handler, ZeroMQ admits any key */
        assert_true(zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) == 0 &&
                    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->secret_key, SL_AUTH_KEY_LEN) ==
                        0);
    else
        assert_int_equal(sl_auth_sock_client(sock, keys), SL_OK);
}

static bool s_insecure(const char *const *args)
{
    for (int i = 0; args && args[i]; i++)
        if (!strncmp(args[i], "--insecure", 10) || !strncmp(args[i], "--key-dir", 9))
            return true;
    return false;
}

static void s_log_path(const cl_t *c, int slot, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%d.log", c->dir, slot);
}

void cl_init(cl_t *c, const char *tag)
{
    if (s_live)
        s_fini(s_live, 0); /* its case failed before cl_fini */
    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/sluice-%s-XXXXXX", tag);
    if (!mkdtemp(c->dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(c->client_ep, sizeof(c->client_ep), "ipc://%s/c", c->dir);
    snprintf(c->exec_ep, sizeof(c->exec_ep), "ipc://%s/e", c->dir);
    s_keys_init(c);
    c->zctx = zmq_ctx_new();
    s_live = c;
    atexit(s_atexit);
}

int cl_spawn(cl_t *c, const char *prog, const char *const *args)
{
    const char *bin = getenv("SLUICE_BIN");
    char path[512];
    const char *argv[64];
    char log[400];
    int n = 0;
    snprintf(path, sizeof(path), "%s/%s", bin ? bin : "build/bin", prog);
    s_log_path(c, c->n, log, sizeof(log));
    argv[n++] = path;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        sl_test_stderr_to(log);
        execv(path, (char *const *)argv);
        perror("execv");
        _exit(127);
    }
    c->pids[c->n] = pid;
    c->progs[c->n] = prog;
    return c->n++;
}

int cl_scheduler(cl_t *c, const char *const *args)
{
    char ce[320], ee[320], kd[320];
    const char *argv[48];
    int n = 0;
    snprintf(ce, sizeof(ce), "--client-endpoint=%s", c->client_ep);
    snprintf(ee, sizeof(ee), "--executor-endpoint=%s", c->exec_ep);
    snprintf(kd, sizeof(kd), "--key-dir=%s", c->key_dir);
    argv[n++] = ce;
    argv[n++] = ee;
    c->insecure = false;
    for (int i = 0; args && args[i]; i++)
        c->insecure |= !strncmp(args[i], "--insecure", 10);
    if (!s_insecure(args))
        argv[n++] = kd;
    for (int i = 0; args && args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return cl_spawn(c, "sluice-scheduler", argv);
}

int cl_executor(cl_t *c, const char *name, const char *const *args)
{
    char se[320], nm[160], kd[320];
    const char *argv[48];
    int n = 0;
    snprintf(se, sizeof(se), "--scheduler=%s", c->exec_ep);
    snprintf(nm, sizeof(nm), "--name=%s", name);
    snprintf(kd, sizeof(kd), "--key-dir=%s", c->key_dir);
    argv[n++] = se;
    argv[n++] = nm;
    if (!s_insecure(args)) {
        argv[n++] = kd;
        argv[n++] = "--key-name=executor";
    }
    for (int i = 0; args && args[i] && n < 47; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return cl_spawn(c, "sluice-executor", argv);
}

void *cl_client(cl_t *c)
{
    void *s = zmq_socket(c->zctx, ZMQ_DEALER);
    int zero = 0, hwm = 1000000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (!c->insecure)
        cl_secure(s, &c->client_key, c);
    zmq_connect(s, c->client_ep);
    return s;
}

sl_wire_msg_t *cl_recv(void *sock, int timeout_ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    sl_wire_ident_t id;
    sl_wire_msg_t *m = NULL;
    char err[256];
    if (sl_wire_recv(sock, 0, 0, &sl_proto_limits_default, &id, &m, err, sizeof(err)) != SL_OK)
        return NULL;
    return m;
}

sl_wire_msg_t *cl_status(void *sock, int timeout_ms)
{
    /* Drop what is already waiting (late replies to earlier polls on a
     * loaded host), so the reply returned answers this request. */
    sl_wire_msg_t *old;
    while ((old = cl_recv(sock, 0)) != NULL)
        sl_wire_msg_free(&old);
    sl_wire_status_request_send(sock, 0);
    for (;;) {
        sl_wire_msg_t *m = cl_recv(sock, timeout_ms);
        if (!m)
            return NULL;
        if (sl_wire_msg_kind(m) == SL_WIRE_STATUS_REPLY)
            return m;
        sl_wire_msg_free(&m); /* a late reply to something else */
    }
}

int64_t cl_counter(const sl_wire_msg_t *st, const char *name)
{
    sl_wire_status_t h;
    sl_wire_status_get(st, &h);
    for (uint32_t i = 0; i < h.n_counters; i++) {
        sl_wire_counter_t c;
        sl_wire_status_counter_get(st, i, &c);
        if (strcmp(c.name, name) == 0)
            return (int64_t)c.value;
    }
    return -1;
}

int64_t cl_counter_or(void *sock, const char *name)
{
    sl_wire_msg_t *st = cl_status(sock, 2000);
    int64_t v = st ? cl_counter(st, name) : -1;
    sl_wire_msg_free(&st);
    return v;
}

int64_t cl_wait_counter(void *sock, const char *name, int64_t min, int timeout_ms)
{
    int64_t v = -1;
    sl_time_t end = sl_clock_now() + SL_MS(timeout_ms);
    while (sl_clock_now() < end) {
        v = cl_counter_or(sock, name);
        if (v >= min)
            break;
        usleep(50000);
    }
    return v;
}

int64_t cl_status_counter(void *sock, const char *name)
{
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    int64_t v = cl_counter(st, name);
    sl_wire_msg_free(&st);
    return v;
}

sl_wire_exec_status_t cl_status_exec(const sl_wire_msg_t *st, uint32_t i)
{
    sl_wire_exec_status_t e;
    sl_wire_status_exec_get(st, i, &e);
    return e;
}

uint32_t cl_status_execs(const sl_wire_msg_t *st)
{
    sl_wire_status_t h;
    sl_wire_status_get(st, &h);
    return h.n_executors;
}

/* A results batch being handed out item by item, per socket. */
typedef struct s_pending {
    void *sock;         /* the socket it came on */
    sl_wire_msg_t *msg; /* the batch (NULL: slot free) */
    uint32_t next;      /* items handed out */
} s_pending_t;

static s_pending_t s_pend[8];

void cl_ev_free(cl_ev_t *ev)
{
    sl_wire_msg_free(&ev->msg);
}

/* Item p->next of the results batch into ev; false when none is left. */
static bool s_pending_item(s_pending_t *p, cl_ev_t *ev)
{
    sl_wire_results_t rb;
    char err[256];
    sl_wire_results_get(p->msg, &rb);
    uint32_t i = p->next;
    if (i >= rb.n_accepted + rb.n_busy + rb.n_results) {
        sl_wire_msg_free(&p->msg);
        return false;
    }
    p->next++;
    memset(ev, 0, sizeof(*ev));
    ev->msg = sl_wire_msg_ref(p->msg);
    if (i < rb.n_accepted) {
        ev->kind = CL_EV_ACCEPTED;
        assert_int_equal(sl_wire_accepted_get(p->msg, i, &sl_proto_limits_default, &ev->job_id, err,
                                              sizeof(err)),
                         SL_OK);
    } else if ((i -= rb.n_accepted) < rb.n_busy) {
        ev->kind = CL_EV_BUSY;
        assert_int_equal(
            sl_wire_busy_get(p->msg, i, &sl_proto_limits_default, &ev->busy, err, sizeof(err)),
            SL_OK);
        ev->job_id = ev->busy.job_id;
    } else {
        ev->kind = CL_EV_RESULT;
        assert_int_equal(sl_wire_result_get(p->msg, i - rb.n_busy, &sl_proto_limits_default,
                                            &ev->result, err, sizeof(err)),
                         SL_OK);
        ev->job_id = ev->result.job_id;
    }
    return true;
}

bool cl_next(void *sock, int timeout_ms, cl_ev_t *ev)
{
    s_pending_t *p = NULL;
    for (size_t i = 0; i < sizeof(s_pend) / sizeof(s_pend[0]) && !p; i++)
        if (s_pend[i].msg && s_pend[i].sock == sock)
            p = &s_pend[i];
    if (p && s_pending_item(p, ev))
        return true;
    for (;;) {
        sl_wire_msg_t *m = cl_recv(sock, timeout_ms);
        if (!m)
            return false;
        memset(ev, 0, sizeof(*ev));
        ev->job_id = "";
        switch (sl_wire_msg_kind(m)) {
        case SL_WIRE_RESULTS:
            if (!p)
                for (size_t i = 0; i < sizeof(s_pend) / sizeof(s_pend[0]) && !p; i++)
                    if (!s_pend[i].msg)
                        p = &s_pend[i];
            assert_non_null(p);
            p->sock = sock;
            p->msg = m;
            p->next = 0;
            if (s_pending_item(p, ev))
                return true;
            continue;
        case SL_WIRE_ERROR:
            ev->kind = CL_EV_ERROR;
            sl_wire_error_get(m, &ev->error);
            ev->job_id = ev->error.job_id;
            break;
        case SL_WIRE_TOKEN_CHUNK:
            ev->kind = CL_EV_CHUNK;
            sl_wire_chunk_get(m, &ev->chunk);
            ev->job_id = ev->chunk.job_id;
            break;
        case SL_WIRE_STATUS_REPLY:
            ev->kind = CL_EV_STATUS;
            break;
        default:
            fail_msg("unexpected '%s' on a client socket", sl_wire_kind_name(sl_wire_msg_kind(m)));
        }
        ev->msg = m;
        return true;
    }
}

int cl_wait_executors(cl_t *c, void *sock, int n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        /* Long enough that a loaded host still answers this poll: an
         * abandoned one would answer later, in the middle of a test. */
        sl_wire_msg_t *st = cl_status(sock, 2000);
        int have = st ? (int)cl_status_execs(st) : 0;
        if (st)
            sl_wire_msg_free(&st);
        if (have >= n)
            return 0;
        usleep(100000);
    }
    return -1;
}

int cl_log_has(const cl_t *c, int slot, const char *text)
{
    char path[400], line[1024];
    s_log_path(c, slot, path, sizeof(path));
    FILE *f = fopen(path, "r");
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

void cl_kill(cl_t *c, int i, int sig)
{
    if (c->pids[i] > 0)
        kill(c->pids[i], sig);
}

int cl_wait(cl_t *c, int i, int timeout_ms)
{
    int status;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        pid_t r = waitpid(c->pids[i], &status, WNOHANG);
        if (r == c->pids[i]) {
            c->pids[i] = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    return -1;
}

void cl_fini(cl_t *c)
{
    s_fini(c, 1);
}

/* Stop, read the logs (checked against the case's declarations when check
 * is set), clean up. */
static void s_fini(cl_t *c, int check)
{
    for (int i = 0; i < c->n; i++)
        cl_kill(c, i, SIGTERM);
    for (int i = 0; i < c->n; i++) {
        if (c->pids[i] > 0 && cl_wait(c, i, 5000) < 0) {
            kill(c->pids[i], SIGKILL);
            waitpid(c->pids[i], NULL, 0);
            c->pids[i] = 0;
        }
    }
    /* A failed case may have left sockets open, on which zmq_ctx_term would
     * wait for ever: its context is left as it is. */
    if (c->zctx && check) {
        zmq_ctx_term(c->zctx);
        c->zctx = NULL;
    }
    char path[400];
    for (int i = 0; i < c->n; i++) {
        char who[64];
        snprintf(who, sizeof(who), "%s (slot %d)", c->progs[i], i);
        s_log_path(c, i, path, sizeof(path));
        if (check)
            sl_test_check_log(path, who);
        else
            sl_test_show_log(path, who);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/c", c->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/e", c->dir);
    unlink(path);
    s_keys_fini(c);
    rmdir(c->dir);
    s_live = NULL;
}

sl_job_desc_t cl_job(const char *id, uint32_t prompt, uint32_t out, int batch)
{
    return (sl_job_desc_t){.id = id,
                           .prompt_tokens = prompt,
                           .max_new_tokens = out,
                           .prio = batch ? SL_PRIO_BATCH : SL_PRIO_INTERACTIVE};
}

void cl_submit(void *sock, const char *id, uint32_t prompt, uint32_t out, int batch)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = cl_job(id, prompt, out, batch);
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    sl_wire_submit_add(&b, &j);
    sl_wire_batch_send(sock, NULL, &b, 0);
    sl_wire_batch_fini(&b);
}
