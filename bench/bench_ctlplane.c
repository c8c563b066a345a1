/*
 * sluice-bench ctlplane: how close the control plane comes to ZeroMQ's own
 * ceiling on this host.
 *
 * Two measurements in one run, with the same message size and the same
 * window of outstanding messages:
 *   1. raw: a DEALER sends Submit-sized messages along the path a job
 *      takes, with nothing but ZeroMQ on it (--raw-shape relay, the
 *      default): to a ROUTER in another thread (own context, loopback),
 *      which passes each on to a DEALER in a third thread, which answers
 *      with a completion-sized message that the ROUTER passes back; round
 *      trips per second is the ceiling of a control plane that moves the
 *      same bytes over the same hops. --raw-shape echo is the older,
 *      shorter baseline: the ROUTER echoes each message whole;
 *   2. jobs: the real sluice-scheduler and N `sluice-executor --backend
 *      null` (child processes found next to this program) run jobs that do
 *      no work; jobs per second is what the control plane delivers.
 * The two phases alternate for --rounds rounds against the same cluster
 * (the jobs phase drains its outstanding jobs before the next raw phase),
 * and the RESULT carries the medians: this host's speed drifts by tens of
 * percent from one second to the next, and a raw phase measured long
 * before the jobs phase made the ratio swing with it.
 * It prints each round, the medians, then a RESULT line.
 *
 * With --journal a second scheduler, with --journal in --journal-dir (the
 * run's temporary folder by default, /tmp), and executors of its own run
 * beside the first; each round then adds a jobs phase through it, and the
 * RESULT adds its jobs per second and journal_vs_none, its ratio to the
 * jobs phase without a journal of the same round (median over rounds).
 * Two clusters side by side, rather than one scheduler restarted between
 * phases, keep each phase's cluster warm and let the phases alternate.
 * The cluster runs with CURVE keys made for the run in a temporary folder
 * (every message encrypted and authenticated, as in production); --insecure
 * runs it in plain text, so two runs give the cost of the keys. The raw
 * phase is plain ZeroMQ either way (the ceiling without any of it).
 *
 * Children are started with fork/exec, die with this process
 * (PR_SET_PDEATHSIG), are killed by the signal handler on SIGINT/SIGTERM,
 * and are always stopped (SIGTERM, then SIGKILL) and reaped before exit.
 *
 * Rejected: shelling out through system() (no pids to kill, a shell in the
 * way); measuring the raw ceiling in a separate run (host noise between the
 * runs would make the ratio meaningless).
 */
#include <sluice/client.h>

#include "bench/bench.h"
#include "bench/sl_bench_proc.h"
#include "common/sl_auth.h"
#include "common/sl_cfg.h"
#include "common/sl_daemon_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "proto/sl_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_CHILDREN 257

typedef struct s_ctl_cfg {
    int executors;                     /* sluice-executor processes */
    int slots;                         /* --slots of each executor */
    int credits;                       /* scheduler --credits (0 = the executor's slots) */
    char policy[SL_CFG_STR_MAX];       /* scheduler --policy */
    int missed_heartbeats;             /* scheduler --missed-heartbeats */
    int heap_keep_mib;                 /* --heap-keep-mib of the daemons and of this process */
    int window;                        /* messages / jobs outstanding at once */
    double duration_s;                 /* measured time of each phase */
    double warmup_s;                   /* unmeasured time before each phase */
    int prompt_tokens;                 /* prompt length of the jobs (sets the message size) */
    bool prompt_ids;                   /* jobs carry token ids (else a length only) */
    char transport[SL_CFG_STR_MAX];    /* tcp (loopback, free ports) or ipc (temp dir) */
    char bin_dir[SL_CFG_STR_MAX];      /* where the programs are (default: next to sluice-bench) */
    int startup_timeout_ms;            /* wait for the executors to register */
    int stop_timeout_ms;               /* wait after SIGTERM before SIGKILL */
    int stall_timeout_ms;              /* a phase with no progress for this long fails */
    bool skip_raw;                     /* only the jobs phase */
    bool insecure;                     /* the cluster without keys (plain text) */
    char raw_shape[SL_CFG_STR_MAX];    /* relay (the path of a job) or echo (one hop, both ways) */
    int rounds;                        /* alternations of the two phases */
    bool journal;                      /* also a jobs phase through a scheduler with --journal */
    char journal_dir[SL_CFG_STR_MAX];  /* where its journal is ("" = the run's temp folder) */
    char journal_sync[SL_CFG_STR_MAX]; /* its --journal-sync */
} s_ctl_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_RANGE(s_ctl_cfg_t, executors, "executors", "2", SL_CFG_INT, 1, S_MAX_CHILDREN - 1,
                 "sluice-executor --backend null processes"),
    SL_CFG_RANGE(s_ctl_cfg_t, slots, "slots", "256", SL_CFG_INT, 1, 4096,
                 "--slots of each executor"),
    SL_CFG_RANGE(s_ctl_cfg_t, credits, "credits", "0", SL_CFG_INT, 0, 4096,
                 "scheduler --credits (0 = the executors' slots)"),
    SL_CFG_FIELD(s_ctl_cfg_t, policy, "policy", "least-outstanding", SL_CFG_STR,
                 "scheduler --policy"),
    SL_CFG_RANGE(s_ctl_cfg_t, missed_heartbeats, "missed-heartbeats", "10", SL_CFG_INT, 1, 1000,
                 "scheduler --missed-heartbeats: a saturated host delays heartbeats behind "
                 "long prompts past the scheduler's default of 3 (300 ms)"),
    SL_CFG_RANGE(s_ctl_cfg_t, heap_keep_mib, "heap-keep-mib", "16", SL_CFG_INT, 0, 32,
                 "the daemons' --heap-keep-mib, applied to this process too (the raw phase and "
                 "the client), so that both phases run under the same allocator"),
    SL_CFG_RANGE(s_ctl_cfg_t, window, "window", "2000", SL_CFG_INT, 1, 1000000,
                 "messages or jobs outstanding at once (the integration job test uses 2000)"),
    SL_CFG_RANGE(s_ctl_cfg_t, duration_s, "duration-s", "1.5", SL_CFG_DOUBLE, 0.01, 3600,
                 "measured seconds of each phase in each round"),
    SL_CFG_RANGE(s_ctl_cfg_t, warmup_s, "warmup-s", "0.5", SL_CFG_DOUBLE, 0, 3600,
                 "unmeasured seconds before each phase"),
    SL_CFG_RANGE(s_ctl_cfg_t, prompt_tokens, "prompt-tokens", "16", SL_CFG_INT, 1, 65536,
                 "prompt tokens per job (sets the message size of both phases)"),
    SL_CFG_FIELD(s_ctl_cfg_t, prompt_ids, "prompt-ids", "true", SL_CFG_BOOL,
                 "jobs carry their prompt's token ids (false: its length only, as before "
                 "2026-12)"),
    SL_CFG_FIELD(s_ctl_cfg_t, transport, "transport", "tcp", SL_CFG_STR,
                 "tcp (loopback, free ports) or ipc (sockets in a temporary folder)"),
    SL_CFG_FIELD(s_ctl_cfg_t, bin_dir, "bin-dir", "", SL_CFG_STR,
                 "folder of sluice-scheduler and sluice-executor (default: next to sluice-bench)"),
    SL_CFG_RANGE(s_ctl_cfg_t, startup_timeout_ms, "startup-timeout-ms", "10000", SL_CFG_INT, 100,
                 600000, "wait this long for every executor to register"),
    SL_CFG_RANGE(s_ctl_cfg_t, stop_timeout_ms, "stop-timeout-ms", "3000", SL_CFG_INT, 0, 600000,
                 "after SIGTERM, wait this long before SIGKILL"),
    SL_CFG_RANGE(s_ctl_cfg_t, stall_timeout_ms, "stall-timeout-ms", "5000", SL_CFG_INT, 10, 600000,
                 "fail a phase that makes no progress for this long"),
    SL_CFG_FIELD(s_ctl_cfg_t, skip_raw, "skip-raw", "false", SL_CFG_BOOL,
                 "skip the raw ZeroMQ phase"),
    SL_CFG_FIELD(s_ctl_cfg_t, insecure, "insecure", "false", SL_CFG_BOOL,
                 "run the cluster in plain text (default: CURVE keys made for the run)"),
    SL_CFG_FIELD(s_ctl_cfg_t, raw_shape, "raw-shape", "relay", SL_CFG_STR,
                 "raw phase: relay (client, relay, worker and back: a job's hops and sizes) or "
                 "echo (one hop, the whole message both ways)"),
    SL_CFG_RANGE(s_ctl_cfg_t, rounds, "rounds", "5", SL_CFG_INT, 1, 1000,
                 "rounds of raw then jobs; the figures are the medians over the rounds"),
    SL_CFG_FIELD(s_ctl_cfg_t, journal, "journal", "false", SL_CFG_BOOL,
                 "also run jobs through a second scheduler with --journal, each round, and "
                 "report journal_vs_none (its jobs/s over the first's)"),
    SL_CFG_FIELD(s_ctl_cfg_t, journal_dir, "journal-dir", "", SL_CFG_STR,
                 "folder of that scheduler's journal (default: a temporary folder in /tmp; "
                 "/dev/shm measures it on a tmpfs)"),
    SL_CFG_FIELD(s_ctl_cfg_t, journal_sync, "journal-sync", "full", SL_CFG_STR,
                 "that scheduler's --journal-sync (full or normal)"),
    SL_CFG_END,
};

/* Children, visible to the signal handler. */
static volatile pid_t s_children[S_MAX_CHILDREN];
static volatile sig_atomic_t s_n_children;

static void s_on_signal(int sig)
{
    for (int i = 0; i < s_n_children; i++)
        if (s_children[i] > 0)
            kill(s_children[i], SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A daemon that keeps this process's output, remembered for s_on_signal. */
static pid_t s_spawn(char *const argv[])
{
    pid_t pid = sl_bench_spawn(argv, SL_BENCH_INHERIT);
    if (pid < 0)
        return -1;
    s_children[s_n_children] = pid;
    s_n_children = s_n_children + 1;
    return pid;
}

/* Stop every child: SIGTERM, a grace period, then SIGKILL; reap all. */
static void s_stop_children(int grace_ms)
{
    for (int i = 0; i < s_n_children; i++)
        if (s_children[i] > 0)
            kill(s_children[i], SIGTERM);
    sl_time_t deadline = sl_clock_now() + SL_MS(grace_ms);
    for (;;) {
        int alive = 0;
        for (int i = 0; i < s_n_children; i++) {
            if (s_children[i] <= 0)
                continue;
            pid_t r = waitpid(s_children[i], NULL, WNOHANG);
            if (r == s_children[i] || (r < 0 && errno == ECHILD))
                s_children[i] = 0;
            else
                alive++;
        }
        if (!alive)
            break;
        if (sl_clock_now() >= deadline) {
            for (int i = 0; i < s_n_children; i++)
                if (s_children[i] > 0) {
                    kill(s_children[i], SIGKILL);
                    waitpid(s_children[i], NULL, 0);
                    s_children[i] = 0;
                }
            break;
        }
        sl_clock_sleep(SL_MS(10));
    }
    s_n_children = 0;
}

/* The prompt of every job: prompt_tokens token ids spread over a 32 Ki
 * vocabulary (most take three bytes on the wire, as real ids do). */
static uint32_t *s_prompt_ids(int prompt_tokens)
{
    uint32_t *ids = malloc((size_t)prompt_tokens * sizeof(*ids));
    for (int i = 0; ids && i < prompt_tokens; i++)
        ids[i] = (uint32_t)(((uint64_t)i * 7919u + 17u) % 32000u);
    return ids;
}

/* The encoded size of a job's submission in the jobs phase (the item and
 * the envelope around a batch of one), so both phases move the same bytes. */
static size_t s_submit_size(int prompt_tokens, const uint32_t *ids)
{
    sl_job_desc_t job = {
        .id = "ctl-0000000000",
        .tenant = "ctlplane",
        .prio = SL_PRIO_INTERACTIVE,
        .prompt_tokens = ids ? 0 : (uint32_t)prompt_tokens,
        .token_ids = ids,
        .n_token_ids = ids ? (uint32_t)prompt_tokens : 0,
        .max_new_tokens = 1,
    };
    void *mem = NULL;
    size_t len = 0;
    char err[256];
    if (sl_wire_submit_pack(&job, &sl_proto_limits_default, 0, &mem, &len, err, sizeof(err)) !=
        SL_OK)
        return 0;
    free(mem);
    /* version (2 bytes), body tag (2), body length and item tag and length (at most 8) */
    return len + 2 + 2 + 8;
}

/* ---- phase 1: raw echo ------------------------------------------------ */

/* The bytes a worker answers with in the relay shape: about a completion
 * or a result of one output token. */
#define S_REPLY_BYTES 64

typedef struct s_echo {
    void *ctx;       /* the echo (or relay) side's own context */
    void *sock;      /* ROUTER: the client's peer */
    void *back;      /* relay: DEALER to the worker (NULL: echo) */
    void *wctx;      /* relay: the worker's own context */
    void *worker;    /* relay: the worker's DEALER */
    atomic_int stop; /* ends the threads */
} s_echo_t;

/* Echo: each message goes back whole. Relay: each goes on to the worker,
 * and the worker's answer back to the one client. */
static void *s_echo_main(void *arg)
{
    s_echo_t *e = arg;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    unsigned char client[256];
    size_t client_len = 0;
    while (!atomic_load(&e->stop)) {
        zmq_pollitem_t it[2] = {{.socket = e->sock, .events = ZMQ_POLLIN},
                                {.socket = e->back, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, e->back ? 2 : 1, 50) <= 0)
            continue;
        while (zmq_msg_recv(&id, e->sock, ZMQ_DONTWAIT) >= 0) {
            if (zmq_msg_recv(&body, e->sock, 0) < 0)
                break;
            if (!e->back) {
                zmq_msg_send(&id, e->sock, ZMQ_SNDMORE);
                zmq_msg_send(&body, e->sock, 0);
                continue;
            }
            if (zmq_msg_size(&id) <= sizeof(client)) {
                client_len = zmq_msg_size(&id);
                memcpy(client, zmq_msg_data(&id), client_len);
            }
            zmq_msg_send(&body, e->back, 0); /* passed on as it came, no copy */
        }
        while (e->back && zmq_msg_recv(&body, e->back, ZMQ_DONTWAIT) >= 0) {
            zmq_send(e->sock, client, client_len, ZMQ_SNDMORE);
            zmq_msg_send(&body, e->sock, 0);
        }
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    return NULL;
}

/* The relay's worker: answers each message with S_REPLY_BYTES. */
static void *s_worker_main(void *arg)
{
    s_echo_t *e = arg;
    zmq_msg_t body;
    char reply[S_REPLY_BYTES];
    memset(reply, 'r', sizeof(reply));
    zmq_msg_init(&body);
    while (!atomic_load(&e->stop)) {
        zmq_pollitem_t it = {.socket = e->worker, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        while (zmq_msg_recv(&body, e->worker, ZMQ_DONTWAIT) >= 0)
            zmq_send(e->worker, reply, sizeof(reply), 0);
    }
    zmq_msg_close(&body);
    return NULL;
}

/* A socket of type in ctx with no linger and no high-water marks. */
static void *s_raw_socket(void *ctx, int type)
{
    int linger = 0, hwm = 0;
    void *sock = zmq_socket(ctx, type);
    if (sock) {
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    return sock;
}

/* Round trips per second with window messages of size bytes outstanding,
 * along the shape of cfg (relay: through worker_ep too); < 0 on failure. */
static double s_raw(const s_ctl_cfg_t *cfg, const char *endpoint, const char *worker_ep,
                    size_t size)
{
    double result = -1;
    s_echo_t e = {0};
    pthread_t thread, wthread;
    bool relay = strcmp(cfg->raw_shape, "echo") != 0, threads = false, wthreads = false;
    char *buf = malloc(size), *in = malloc(size + 512);
    void *ctx = NULL, *d = NULL;
    if (!buf || !in)
        goto out;
    memset(buf, 'x', size);
    e.ctx = zmq_ctx_new();
    e.sock = s_raw_socket(e.ctx, ZMQ_ROUTER);
    if (zmq_bind(e.sock, endpoint) != 0) {
        SL_ERROR("ctlplane: bind %s: %s", endpoint, zmq_strerror(errno));
        goto out;
    }
    if (relay) {
        e.back = s_raw_socket(e.ctx, ZMQ_DEALER);
        e.wctx = zmq_ctx_new();
        e.worker = s_raw_socket(e.wctx, ZMQ_DEALER);
        if (zmq_bind(e.back, worker_ep) != 0 || zmq_connect(e.worker, worker_ep) != 0) {
            SL_ERROR("ctlplane: relay %s: %s", worker_ep, zmq_strerror(errno));
            goto out;
        }
        if (pthread_create(&wthread, NULL, s_worker_main, &e) != 0)
            goto out;
        wthreads = true;
    }
    ctx = zmq_ctx_new();
    d = s_raw_socket(ctx, ZMQ_DEALER);
    if (zmq_connect(d, endpoint) != 0 || pthread_create(&thread, NULL, s_echo_main, &e) != 0) {
        SL_ERROR("ctlplane: raw phase setup failed: %s", zmq_strerror(errno));
        goto out;
    }
    threads = true;
    for (int i = 0; i < cfg->window; i++)
        zmq_send(d, buf, size, 0);
    uint64_t done = 0, counted = 0;
    sl_time_t start = sl_clock_now();
    sl_time_t measure = start + (sl_time_t)(cfg->warmup_s * 1e9);
    sl_time_t end = measure + (sl_time_t)(cfg->duration_s * 1e9);
    sl_time_t t_begin = 0, now = start;
    while (now < end) {
        zmq_pollitem_t it = {.socket = d, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, cfg->stall_timeout_ms) <= 0) {
            SL_ERROR("ctlplane: raw phase stalled for %d ms", cfg->stall_timeout_ms);
            goto out;
        }
        while (zmq_recv(d, in, size + 512, ZMQ_DONTWAIT) >= 0) {
            done++;
            zmq_send(d, buf, size, 0);
        }
        now = sl_clock_now();
        if (!t_begin && now >= measure) {
            t_begin = now;
            counted = done;
        }
    }
    result = (double)(done - counted) / ((double)(now - t_begin) / 1e9);
out:
    atomic_store(&e.stop, 1);
    if (threads)
        pthread_join(thread, NULL);
    if (wthreads)
        pthread_join(wthread, NULL);
    if (d)
        zmq_close(d);
    if (ctx)
        zmq_ctx_term(ctx);
    if (e.worker)
        zmq_close(e.worker);
    if (e.wctx)
        zmq_ctx_term(e.wctx);
    if (e.back)
        zmq_close(e.back);
    if (e.sock)
        zmq_close(e.sock);
    if (e.ctx)
        zmq_ctx_term(e.ctx);
    free(buf);
    free(in);
    return result;
}

/* ---- phase 2: jobs through the real scheduler -------------------------- */

/* CPU seconds used so far: [0] the scheduler (the first child), [1] the
 * executors together, [2] this process (the client and its I/O thread). */
typedef struct s_cpu {
    double s[3];
} s_cpu_t;

/* CPU seconds of process pid (user + system, all threads); 0 if unreadable. */
static double s_cpu_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The children of the cluster a jobs phase measures: its scheduler, then
 * its executors, [s_cpu_lo, s_cpu_hi) in s_children. */
static int s_cpu_lo, s_cpu_hi;

static void s_cpu_now(s_cpu_t *c)
{
    struct timespec ts;
    memset(c, 0, sizeof(*c));
    for (int i = s_cpu_lo; i < s_cpu_hi && i < s_n_children; i++)
        c->s[i > s_cpu_lo ? 1 : 0] += s_cpu_of(s_children[i]);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    c->s[2] = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait until the scheduler reports n live executors; 0 on success. */
static int s_wait_ready(sl_client_t *c, int n, int timeout_ms)
{
    sl_time_t deadline = sl_clock_now() + SL_MS(timeout_ms);
    while (sl_clock_now() < deadline) {
        sl_cluster_status_t *st = NULL;
        if (sl_client_status(c, &st) == SL_OK) {
            int alive = 0;
            for (size_t i = 0; i < st->n_executors; i++)
                alive += st->executors[i].alive;
            sl_cluster_status_destroy(&st);
            if (alive >= n)
                return 0;
        }
        sl_clock_sleep(SL_MS(50));
    }
    return -1;
}

/* Add one to the decimal counter in digits[0..n) (ids of the jobs phase:
 * formatting each with snprintf cost the client more than some of its own
 * work, and the raw phase formats nothing). */
static void s_id_next(char *digits, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        if (digits[i] != '9') {
            digits[i]++;
            return;
        }
        digits[i] = '0';
    }
}

/* The jobs phase's client, connected and with every executor registered;
 * NULL on failure. */
/* A key folder for the run (pairs server, client, executor, allow-lists)
 * made from the template dir; 0 on success. */
static int s_make_keys(char *dir)
{
    static const char *const names[] = {"server", "client", "executor"};
    char pub[3][SL_AUTH_KEY_LEN + 1], path[PATH_MAX + 32];
    if (!mkdtemp(dir)) {
        SL_ERROR("ctlplane: mkdtemp: %m");
        return -1;
    }
    for (int i = 0; i < 3; i++)
        if (sl_auth_keygen(dir, names[i], pub[i]) != SL_OK)
            return -1;
    for (int i = 1; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s.allow", dir, i == 1 ? "clients" : "executors");
        FILE *f = fopen(path, "w");
        if (!f || fprintf(f, "%s bench\n", pub[i]) < 0 || fclose(f) != 0) {
            SL_ERROR("ctlplane: cannot write %s: %m", path);
            return -1;
        }
    }
    return 0;
}

static void s_remove_keys(const char *dir)
{
    static const char *const files[] = {"server.key",    "server.pub",     "client.key",
                                        "client.pub",    "executor.key",   "executor.pub",
                                        "clients.allow", "executors.allow"};
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static sl_client_t *s_jobs_client(const s_ctl_cfg_t *cfg, const char *endpoint, const char *key_dir)
{
    sl_client_cfg_t ccfg;
    sl_client_t *c = NULL;
    sl_client_cfg_default(&ccfg);
    if (strlen(endpoint) >= sizeof(ccfg.endpoint)) {
        SL_ERROR("ctlplane: endpoint %s is too long", endpoint);
        return NULL;
    }
    memcpy(ccfg.endpoint, endpoint, strlen(endpoint) + 1);
    ccfg.insecure = cfg->insecure;
    snprintf(ccfg.key_dir, sizeof(ccfg.key_dir), "%.*s", (int)sizeof(ccfg.key_dir) - 1, key_dir);
    ccfg.wait_timeout_ms = 500;
    ccfg.max_inflight = cfg->window;
    ccfg.backoff.base_ms = 1;
    ccfg.backoff.cap_ms = 50;
    ccfg.backoff.max_retries = 100;
    if (sl_client_create(&ccfg, &c) != SL_OK)
        return NULL;
    if (s_wait_ready(c, cfg->executors, cfg->startup_timeout_ms) != 0) {
        SL_ERROR("ctlplane: %d executors did not register within %d ms", cfg->executors,
                 cfg->startup_timeout_ms);
        sl_client_destroy(&c);
    }
    return c;
}

/* One jobs phase on client c: window jobs outstanding for warm-up plus
 * duration, jobs per second over the duration, then every outstanding job
 * drained so the cluster is idle for the next raw phase; < 0 on failure.
 * id holds "ctl-<pid>-" then 10 digits, stepped per job. */
static double s_jobs(const s_ctl_cfg_t *cfg, sl_client_t *c, char *id, int prefix,
                     const uint32_t *ids, uint64_t *errors_p, s_cpu_t *cpu_us)
{
    s_cpu_t c0, c1;
    uint64_t done = 0, counted = 0;
    sl_job_spec_t job = {
        .id = id,
        .tenant = "ctlplane",
        .prompt_length = ids ? 0 : (uint32_t)cfg->prompt_tokens,
        .token_ids = ids,
        .n_token_ids = ids ? (uint32_t)cfg->prompt_tokens : 0,
        .max_new_tokens = 1,
    };
    sl_time_t start = sl_clock_now();
    sl_time_t measure = start + (sl_time_t)(cfg->warmup_s * 1e9);
    sl_time_t end = measure + (sl_time_t)(cfg->duration_s * 1e9);
    sl_time_t t_begin = 0, now = start;
    double result = -1;
    bool draining = false;
    for (;;) {
        while (!draining && sl_client_pending(c) < (size_t)cfg->window) {
            if (sl_client_submit_async(c, &job) != SL_OK) {
                SL_ERROR("ctlplane: submit: %s", sl_client_last_error(c));
                return -1;
            }
            s_id_next(id + prefix, 10);
        }
        if (draining && sl_client_pending(c) == 0)
            break;
        sl_result_t *r = NULL;
        sl_status_t st = sl_client_poll(c, cfg->stall_timeout_ms, &r);
        if (st == SL_ERR_TIMEOUT) {
            SL_ERROR("ctlplane: no job completed within %d ms", cfg->stall_timeout_ms);
            return -1;
        }
        if (st != SL_OK)
            return -1;
        do {
            if (r->status == SL_OK)
                done++;
            else if ((*errors_p)++ == 0)
                SL_WARN("ctlplane: job %s failed (%s): %s", r->job_id, sl_status_str(r->status),
                        r->error);
            sl_result_destroy(&r);
        } while (sl_client_poll(c, 0, &r) == SL_OK);
        now = sl_clock_now();
        if (!t_begin && now >= measure) {
            t_begin = now;
            counted = done;
            s_cpu_now(&c0);
        }
        /* the measured span ends with a completion after the one that opened it */
        if (!draining && now >= end && now > t_begin) {
            result = (double)(done - counted) / ((double)(now - t_begin) / 1e9);
            draining = true;
            s_cpu_now(&c1);
            for (int i = 0; i < 3; i++)
                cpu_us->s[i] =
                    done > counted ? (c1.s[i] - c0.s[i]) * 1e6 / (double)(done - counted) : 0;
        }
    }
    return result;
}

/* Start a scheduler on client_ep and exec_ep (with --journal journal when
 * not NULL) and cfg->executors null executors named <prefix><i>; 0 when
 * all were started. */
static int s_cluster(const s_ctl_cfg_t *cfg, char *sched_bin, char *exec_bin, char *client_ep,
                     char *exec_ep, const char *journal, const char *prefix, char *keys)
{
    /* keys: the run's key folder; --insecure: plain text (a second flag fills the pair) */
    char *auth_flag = cfg->insecure ? "--insecure=true" : "--key-dir";
    char *auth_arg = cfg->insecure ? "--log-level=error" : keys;
    char credits[16], slots[16], missed[16], keep[16], name[32], jarg[SL_CFG_STR_MAX + 32],
        jsync[SL_CFG_STR_MAX + 32];
    snprintf(keep, sizeof(keep), "%d", cfg->heap_keep_mib);
    snprintf(credits, sizeof(credits), "%d", cfg->credits);
    snprintf(missed, sizeof(missed), "%d", cfg->missed_heartbeats);
    snprintf(slots, sizeof(slots), "%d", cfg->slots);
    snprintf(jarg, sizeof(jarg), "--journal=%s", journal ? journal : "");
    snprintf(jsync, sizeof(jsync), "--journal-sync=%s", cfg->journal_sync);
    char *sargv[] = {sched_bin,
                     "--client-endpoint",
                     client_ep,
                     "--executor-endpoint",
                     exec_ep,
                     "--policy",
                     (char *)cfg->policy,
                     "--credits",
                     credits,
                     "--missed-heartbeats",
                     missed,
                     "--heap-keep-mib",
                     keep,
                     auth_flag,
                     auth_arg,
                     "--log-level",
                     "error",
                     journal ? jarg : NULL,
                     jsync,
                     NULL};
    if (s_spawn(sargv) < 0)
        return -1;
    for (int i = 0; i < cfg->executors; i++) {
        snprintf(name, sizeof(name), "%s%d", prefix, i);
        char *eargv[] = {exec_bin, "--scheduler",     exec_ep, "--name",
                         name,     "--backend",       "null",  "--slots",
                         slots,    "--heap-keep-mib", keep,    auth_flag,
                         auth_arg, "--log-level",     "error", NULL};
        if (s_spawn(eargv) < 0)
            return -1;
    }
    return 0;
}

static int s_bin_dir(const s_ctl_cfg_t *cfg, char *out, size_t cap)
{
    if (cfg->bin_dir[0]) {
        snprintf(out, cap, "%s", cfg->bin_dir);
        return 0;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        SL_ERROR("ctlplane: readlink /proc/self/exe: %m");
        return -1;
    }
    self[n] = '\0';
    snprintf(out, cap, "%s", dirname(self));
    return 0;
}

int sl_bench_ctlplane_main(int argc, char **argv)
{
    s_ctl_cfg_t cfg;
    int early = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (early >= 0)
        return early;
    bool ipc = !strcmp(cfg.transport, "ipc");
    if (!ipc && strcmp(cfg.transport, "tcp")) {
        fprintf(stderr, "sluice-bench ctlplane: --transport must be tcp or ipc\n");
        return 2;
    }
    if (strcmp(cfg.raw_shape, "relay") && strcmp(cfg.raw_shape, "echo")) {
        fprintf(stderr, "sluice-bench ctlplane: --raw-shape must be relay or echo\n");
        return 2;
    }
    char dir[PATH_MAX], sched_bin[PATH_MAX + 32], exec_bin[PATH_MAX + 32];
    if (s_bin_dir(&cfg, dir, sizeof(dir)) != 0)
        return 1;
    snprintf(sched_bin, sizeof(sched_bin), "%s/sluice-scheduler", dir);
    snprintf(exec_bin, sizeof(exec_bin), "%s/sluice-executor", dir);
    if (access(sched_bin, X_OK) != 0 || access(exec_bin, X_OK) != 0) {
        fprintf(stderr, "sluice-bench ctlplane: %s or %s is missing (build them, or --bin-dir)\n",
                sched_bin, exec_bin);
        return 1;
    }

    char tmp[] = "/tmp/sluice-ctlplane-XXXXXX";
    char raw_ep[PATH_MAX + 32], relay_ep[PATH_MAX + 32], client_ep[PATH_MAX + 32],
        exec_ep[PATH_MAX + 32], jclient_ep[PATH_MAX + 32], jexec_ep[PATH_MAX + 32],
        journal[PATH_MAX + 64] = "";
    if ((ipc || (cfg.journal && !cfg.journal_dir[0])) && !mkdtemp(tmp)) {
        SL_ERROR("ctlplane: mkdtemp: %m");
        return 1;
    }
    if (ipc) {
        snprintf(jclient_ep, sizeof(jclient_ep), "ipc://%s/jclient", tmp);
        snprintf(jexec_ep, sizeof(jexec_ep), "ipc://%s/jexecutor", tmp);
        snprintf(raw_ep, sizeof(raw_ep), "ipc://%s/raw", tmp);
        snprintf(relay_ep, sizeof(relay_ep), "ipc://%s/relay", tmp);
        snprintf(client_ep, sizeof(client_ep), "ipc://%s/client", tmp);
        snprintf(exec_ep, sizeof(exec_ep), "ipc://%s/executor", tmp);
    } else {
        int p1 = sl_bench_free_port(), p2 = sl_bench_free_port(), p3 = sl_bench_free_port(),
            p4 = sl_bench_free_port();
        int p5 = sl_bench_free_port(), p6 = sl_bench_free_port();
        if (p1 < 0 || p2 < 0 || p3 < 0 || p4 < 0 || p5 < 0 || p6 < 0) {
            SL_ERROR("ctlplane: no free loopback port: %m");
            return 1;
        }
        snprintf(raw_ep, sizeof(raw_ep), "tcp://127.0.0.1:%d", p1);
        snprintf(relay_ep, sizeof(relay_ep), "tcp://127.0.0.1:%d", p4);
        snprintf(client_ep, sizeof(client_ep), "tcp://127.0.0.1:%d", p2);
        snprintf(exec_ep, sizeof(exec_ep), "tcp://127.0.0.1:%d", p3);
        snprintf(jclient_ep, sizeof(jclient_ep), "tcp://127.0.0.1:%d", p5);
        snprintf(jexec_ep, sizeof(jexec_ep), "tcp://127.0.0.1:%d", p6);
    }
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int rc = 1;
    char keys[] = "/tmp/sluice-ctlplane-keys-XXXXXX";
    bool keyed = false;
    sl_client_t *client = NULL, *jclient = NULL;
    uint32_t *prompt_ids = cfg.prompt_ids ? s_prompt_ids(cfg.prompt_tokens) : NULL;
    size_t size = !cfg.prompt_ids || prompt_ids ? s_submit_size(cfg.prompt_tokens, prompt_ids) : 0;
    if (!size) {
        fprintf(stderr, "sluice-bench ctlplane: cannot build a job of %d tokens\n",
                cfg.prompt_tokens);
        goto out;
    }
    if (!cfg.insecure && s_make_keys(keys) != 0)
        goto out;
    keyed = !cfg.insecure;
    printf("ctlplane: window %d, %zu-byte messages (%d prompt tokens%s), %d null executors "
           "(%d slots), policy %s, %s, raw %s, cluster %s\n",
           cfg.window, size, cfg.prompt_tokens, cfg.prompt_ids ? " as ids" : ", length only",
           cfg.executors, cfg.slots, cfg.policy, cfg.transport, cfg.raw_shape,
           cfg.insecure ? "plain text (--insecure)" : "CURVE");
    fflush(stdout);
    if (sl_heap_keep(cfg.heap_keep_mib) != SL_OK)
        fprintf(stderr, "sluice-bench ctlplane: the C library refused --heap-keep-mib %d\n",
                cfg.heap_keep_mib);
    int lo = s_n_children;
    if (s_cluster(&cfg, sched_bin, exec_bin, client_ep, exec_ep, NULL, "ctl-e", keys) != 0)
        goto out;
    int hi = s_n_children;
    client = s_jobs_client(&cfg, client_ep, keyed ? keys : "");
    if (!client)
        goto out;
    int jlo = s_n_children, jhi = jlo;
    if (cfg.journal) {
        snprintf(journal, sizeof(journal), "%s/ctlplane-%d.journal",
                 cfg.journal_dir[0] ? cfg.journal_dir : tmp, (int)getpid());
        if (s_cluster(&cfg, sched_bin, exec_bin, jclient_ep, jexec_ep, journal, "ctl-j", keys) != 0)
            goto out;
        jhi = s_n_children;
        jclient = s_jobs_client(&cfg, jclient_ep, keyed ? keys : "");
        if (!jclient)
            goto out;
        printf("journal: %s (--journal-sync %s)\n", journal, cfg.journal_sync);
    }
    /* Alternating rounds, medians: see the top of this file. */
    char id[64];
    int prefix = snprintf(id, sizeof(id), "ctl-%d-", (int)getpid());
    memset(id + prefix, '0', 10);
    id[prefix + 10] = '\0';
    double raws[1000], jobss[1000], ratios[1000], cpus[3][1000], jjobss[1000], jratios[1000],
        jcpus[1000] = {0};
    uint64_t errors = 0;
    for (int k = 0; k < cfg.rounds; k++) {
        double raw = 0;
        if (!cfg.skip_raw && (raw = s_raw(&cfg, raw_ep, relay_ep, size)) < 0)
            goto out;
        s_cpu_t cpu;
        s_cpu_lo = lo;
        s_cpu_hi = hi;
        double jobs = s_jobs(&cfg, client, id, prefix, prompt_ids, &errors, &cpu);
        if (jobs < 0)
            goto out;
        if (cfg.journal) {
            s_cpu_t jcpu;
            s_cpu_lo = jlo;
            s_cpu_hi = jhi;
            jjobss[k] = s_jobs(&cfg, jclient, id, prefix, prompt_ids, &errors, &jcpu);
            if (jjobss[k] < 0)
                goto out;
            jratios[k] = jobs > 0 ? jjobss[k] / jobs : 0;
            jcpus[k] = jcpu.s[0];
        }
        raws[k] = raw;
        jobss[k] = jobs;
        ratios[k] = raw > 0 ? jobs / raw : 0;
        printf("round %d: raw ZeroMQ %s %.0f round trips/s, jobs through "
               "sluice-scheduler + %d null executors %.0f jobs/s, ratio %.3f\n",
               k + 1, strcmp(cfg.raw_shape, "echo") ? "relay" : "ROUTER/DEALER echo", raw,
               cfg.executors, jobs, ratios[k]);
        printf("  cpu per job: scheduler %.2f us, executors %.2f us, client %.2f us\n", cpu.s[0],
               cpu.s[1], cpu.s[2]);
        for (int i = 0; i < 3; i++)
            cpus[i][k] = cpu.s[i];
        if (cfg.journal)
            printf("round %d: jobs through sluice-scheduler --journal %.0f jobs/s, %.3f of "
                   "without (scheduler cpu per job %.2f us)\n",
                   k + 1, jjobss[k], jratios[k], jcpus[k]);
        fflush(stdout);
    }
    double raw = sl_median(raws, (size_t)cfg.rounds), jobs = sl_median(jobss, (size_t)cfg.rounds);
    double ratio = sl_median(ratios, (size_t)cfg.rounds);
    printf("medians over %d rounds: %.0f round trips/s, %.0f jobs/s (%llu failed), ratio %.3f\n",
           cfg.rounds, raw, jobs, (unsigned long long)errors, ratio);
    printf("medians of cpu per job: scheduler %.2f us, executors %.2f us, client %.2f us\n",
           sl_median(cpus[0], (size_t)cfg.rounds), sl_median(cpus[1], (size_t)cfg.rounds),
           sl_median(cpus[2], (size_t)cfg.rounds));
    const char *auth = cfg.insecure ? "none" : "curve";
    if (cfg.journal) {
        double jj = sl_median(jjobss, (size_t)cfg.rounds),
               jr = sl_median(jratios, (size_t)cfg.rounds);
        printf("medians with the journal: %.0f jobs/s, %.3f of without\n", jj, jr);
        printf("RESULT raw_rt_per_s=%.0f jobs_per_s=%.0f ratio=%.3f journal_jobs_per_s=%.0f "
               "journal_vs_none=%.3f auth=%s\n",
               raw, jobs, ratio, jj, jr, auth);
    } else {
        printf("RESULT raw_rt_per_s=%.0f jobs_per_s=%.0f ratio=%.3f auth=%s\n", raw, jobs, ratio,
               auth);
    }
    rc = 0;
out:
    sl_client_destroy(&client);
    sl_client_destroy(&jclient);
    s_stop_children(cfg.stop_timeout_ms);
    if (keyed)
        s_remove_keys(keys);
    free(prompt_ids);
    if (journal[0]) {
        char path[PATH_MAX + 96];
        const char *sfx[] = {"", "-wal", "-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s%s", journal, sfx[i]);
            unlink(path);
        }
    }
    if (ipc || (cfg.journal && !cfg.journal_dir[0])) {
        const char *names[] = {"raw", "relay", "client", "executor", "jclient", "jexecutor"};
        char path[PATH_MAX + 32];
        for (size_t i = 0; i < 6; i++) {
            snprintf(path, sizeof(path), "%s/%s", tmp, names[i]);
            unlink(path);
        }
        rmdir(tmp);
    }
    return rc;
}
