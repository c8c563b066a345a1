/*
 * sluice-bench chaos: faults under load, checked against what clients saw.
 *
 * The real sluice-scheduler and --executors sim executors on ipc endpoints
 * in a temporary folder; --clients clients (raw DEALER sockets speaking the
 * wire protocol, so that every Accepted, Busy, Result and TokenChunk is
 * seen as it came, none hidden by a client library's de-duplication)
 * submit jobs at --rate, half of them streamed; meanwhile the executors
 * are killed with SIGKILL (--kills times, at random times about
 * --kill-interval-ms apart) and each is started again under its name
 * --restart-ms later. The cluster runs in plain text (--insecure): the
 * faults, not the keys, are what is measured. Every message is noted in a history (sl_history.c),
 * checked at the end: each accepted job has exactly one result, no job's
 * state went backwards, no answer reached another client, streams have no
 * gap and no duplicated token. A client resends a job not answered within
 * --resend-ms and one refused Busy after its retry-after, with the same id
 * (the scheduler makes ids idempotent), as a client library does.
 *
 * Detection: the scheduler's log (warn level, on a pipe read by a thread
 * of this program) says "executor NAME lost"; the time that line is read
 * minus the time of the kill is the detection time of that kill (an upper
 * bound: the pipe adds microseconds). A loss with no kill before it is a
 * false loss (an executor too slow to heartbeat on a loaded host).
 *
 * --scheduler-kills N: the scheduler instead, N SIGKILLs, each started
 * again on the same journal (--journal in the run folder) --restart-ms
 * later; clients keep their routing ids, so results of journaled jobs
 * reach them from the new process; executors register again and list the
 * jobs they hold. Its recovery time is from the kill to the first status
 * reply of the new process.
 *
 * --takeovers N: two schedulers on the same endpoints and the same
 * journal, racing for a leader lease in an etcd this program starts (the
 * standby binds nothing until it leads: the endpoints move with the
 * leader, as a floating address would); the leader is SIGKILLed N times
 * and started again as the standby. takeover: from the kill to the
 * standby's "leading" log line; recovery: to its first status reply.
 *
 * Children are started with fork/exec, die with this process
 * (PR_SET_PDEATHSIG), and are stopped and reaped before it exits.
 */
#include "bench/bench.h"
#include "bench/sl_bench_proc.h"
#include "bench/sl_history.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "proto/sl_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_EXECS 64
#define S_MAX_CLIENTS 64
#define S_MAX_LOSSES 100000

typedef struct s_chaos_cfg {
    int executors;                 /* sim executors */
    int slots;                     /* --slots of each */
    double sim_speed;              /* --sim-speed of each */
    int clients;                   /* client sockets */
    double rate;                   /* jobs per second, all clients */
    int window;                    /* jobs outstanding per client at most */
    int prompt_tokens;             /* prompt of each job */
    int max_new_tokens;            /* output of each job */
    int kills;                     /* executor SIGKILLs */
    int kill_interval_ms;          /* mean time between kills (uniform, 0.5x to 1.5x) */
    int restart_ms;                /* a killed executor starts again this long after */
    int heartbeat_ms;              /* scheduler --heartbeat-ms */
    int missed_heartbeats;         /* scheduler --missed-heartbeats */
    int resend_ms;                 /* a job not answered this long is sent again */
    int drain_timeout_ms;          /* at the end, longest wait for the last results */
    int scheduler_kills;           /* scheduler SIGKILLs instead of executor faults */
    int takeovers;                 /* leader SIGKILLs with a standby taking over */
    uint64_t seed;                 /* kill times and victims */
    char bin_dir[SL_CFG_STR_MAX];  /* where the programs are (default: next to sluice-bench) */
    char key_args[SL_CFG_STR_MAX]; /* extra flags for every daemon (e.g. keys), space-separated */
    bool keep;                     /* keep the run folder (the scheduler's log) */
    char fault[16];                /* kill (SIGKILL) or stop (SIGSTOP: hung, or cut off) */
} s_chaos_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_RANGE(s_chaos_cfg_t, executors, "executors", "4", SL_CFG_INT, 2, S_MAX_EXECS,
                 "sim executors"),
    SL_CFG_RANGE(s_chaos_cfg_t, slots, "slots", "16", SL_CFG_INT, 1, 4096, "--slots of each"),
    SL_CFG_RANGE(s_chaos_cfg_t, sim_speed, "sim-speed", "20", SL_CFG_DOUBLE, 0.01, 10000,
                 "--sim-speed of each executor (jobs of tens of ms at 20)"),
    SL_CFG_RANGE(s_chaos_cfg_t, clients, "clients", "4", SL_CFG_INT, 1, S_MAX_CLIENTS,
                 "client sockets"),
    SL_CFG_RANGE(s_chaos_cfg_t, rate, "rate", "200", SL_CFG_DOUBLE, 1, 100000,
                 "jobs submitted per second, all clients together"),
    SL_CFG_RANGE(s_chaos_cfg_t, window, "window", "64", SL_CFG_INT, 1, 100000,
                 "jobs outstanding per client at most"),
    SL_CFG_RANGE(s_chaos_cfg_t, prompt_tokens, "prompt-tokens", "128", SL_CFG_INT, 1, 1000000,
                 "prompt tokens of each job"),
    SL_CFG_RANGE(s_chaos_cfg_t, max_new_tokens, "max-new-tokens", "32", SL_CFG_INT, 1, 100000,
                 "output tokens of each job (half the jobs stream them)"),
    SL_CFG_RANGE(s_chaos_cfg_t, kills, "kills", "100", SL_CFG_INT, 0, 100000,
                 "executor SIGKILLs under load"),
    SL_CFG_RANGE(s_chaos_cfg_t, kill_interval_ms, "kill-interval-ms", "300", SL_CFG_INT, 10, 600000,
                 "mean time between kills (each drawn from 0.5x to 1.5x)"),
    SL_CFG_RANGE(s_chaos_cfg_t, restart_ms, "restart-ms", "500", SL_CFG_INT, 0, 600000,
                 "a killed executor is started again under its name this long after"),
    SL_CFG_RANGE(s_chaos_cfg_t, heartbeat_ms, "heartbeat-ms", "50", SL_CFG_INT, 1, 600000,
                 "the scheduler's --heartbeat-ms"),
    SL_CFG_RANGE(s_chaos_cfg_t, missed_heartbeats, "missed-heartbeats", "4", SL_CFG_INT, 1, 1000,
                 "the scheduler's --missed-heartbeats"),
    SL_CFG_RANGE(
        s_chaos_cfg_t, resend_ms, "resend-ms", "5000", SL_CFG_INT, 10, 3600000,
        "a job with no answer (or accepted and no result) this long is sent again, same id"),
    SL_CFG_RANGE(s_chaos_cfg_t, drain_timeout_ms, "drain-timeout-ms", "60000", SL_CFG_INT, 100,
                 3600000, "at the end, longest wait for the results of accepted jobs"),
    SL_CFG_RANGE(s_chaos_cfg_t, scheduler_kills, "scheduler-kills", "0", SL_CFG_INT, 0, 100000,
                 "scheduler SIGKILLs, each started again on its journal, instead of executor "
                 "faults (the kill interval is then at least the time it takes to come back)"),
    SL_CFG_RANGE(s_chaos_cfg_t, takeovers, "takeovers", "0", SL_CFG_INT, 0, 100000,
                 "leader SIGKILLs, a standby scheduler (etcd lease, same journal and endpoints) "
                 "taking over each time, instead of executor faults"),
    SL_CFG_FIELD(s_chaos_cfg_t, seed, "seed", "1", SL_CFG_I64, "seed of kill times and victims"),
    SL_CFG_FIELD(s_chaos_cfg_t, bin_dir, "bin-dir", "", SL_CFG_STR,
                 "folder of sluice-scheduler and sluice-executor (default: next to sluice-bench)"),
    SL_CFG_FIELD(s_chaos_cfg_t, key_args, "daemon-args", "", SL_CFG_STR,
                 "extra flags given to every daemon, space-separated"),
    SL_CFG_FIELD(s_chaos_cfg_t, fault, "fault", "kill", SL_CFG_STR,
                 "kill: SIGKILL (the connection closes: found at the next send to it); stop: "
                 "SIGSTOP, killed for good at its restart (a hung or partitioned executor: its "
                 "connection stays open, so only missed heartbeats find it)"),
    SL_CFG_FIELD(s_chaos_cfg_t, keep, "keep", "false", SL_CFG_BOOL,
                 "keep the run folder and the scheduler's log in it (always kept after a "
                 "failed check)"),
    SL_CFG_END,
};

/* ---- children ----------------------------------------------------------- */

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* ---- the scheduler's log: losses --------------------------------------- */

typedef struct s_loss {
    char name[32];
    sl_time_t t;
} s_loss_t;

typedef struct s_log {
    int fd;
    pid_t leader;     /* the scheduler that last logged "leading" (takeovers) */
    sl_time_t led_at; /* when that line was read */
    pthread_mutex_t mu;
    s_loss_t *loss;
    size_t n;
    FILE *copy; /* the whole log, kept in the run folder */
} s_log_t;

static void *s_log_main(void *arg)
{
    s_log_t *l = arg;
    FILE *f = fdopen(l->fd, "r");
    char line[1024];
    if (!f)
        return NULL;
    while (fgets(line, sizeof(line), f)) {
        sl_time_t now = sl_clock_now();
        if (l->copy)
            fputs(line, l->copy);
        const char *lead = strstr(line, "leading: the lease is ours");
        const char *who = strstr(line, "scheduler[");
        if (lead && who) {
            pthread_mutex_lock(&l->mu);
            l->leader = (pid_t)atoi(who + strlen("scheduler["));
            l->led_at = now;
            pthread_mutex_unlock(&l->mu);
        }
        const char *p = strstr(line, "executor ");
        char name[32];
        if (p && strstr(p, " lost (") && sscanf(p, "executor %31s lost (", name) == 1) {
            pthread_mutex_lock(&l->mu);
            if (l->n < S_MAX_LOSSES) {
                snprintf(l->loss[l->n].name, sizeof(l->loss[l->n].name), "%s", name);
                l->loss[l->n++].t = now;
            }
            pthread_mutex_unlock(&l->mu);
        }
    }
    fclose(f);
    return NULL;
}

/* ---- jobs ---------------------------------------------------------------- */

typedef struct s_job {
    sl_time_t next_send; /* 0: not to be sent (done, or waiting for its first send) */
    uint16_t sends;
} s_job_t;

typedef struct s_client {
    void *sock;
    uint32_t next_job; /* jobs submitted so far (numbers 0..next_job-1) */
    uint32_t open;     /* submitted, no result yet */
} s_client_t;

/* "ch<client>-<job>" -> client, job; false for anything else. */
static bool s_parse_id(const char *id, uint32_t *c, uint32_t *j)
{
    unsigned a, b;
    int n = 0;
    if (sscanf(id, "ch%u-%u%n", &a, &b, &n) != 2 || id[n] != '\0')
        return false;
    *c = a;
    *j = b;
    return true;
}

static void s_send(const s_chaos_cfg_t *cfg, s_client_t *cl, uint32_t c, uint32_t j, bool stream)
{
    char id[32];
    snprintf(id, sizeof(id), "ch%u-%u", c, j);
    sl_job_desc_t d = {.id = id,
                       .prio = SL_PRIO_INTERACTIVE,
                       .prompt_tokens = (uint32_t)cfg->prompt_tokens,
                       .max_new_tokens = (uint32_t)cfg->max_new_tokens,
                       .stream = stream};
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    if (sl_wire_submit_add(&b, &d) == SL_OK)
        sl_wire_batch_send(cl->sock, NULL, &b, ZMQ_DONTWAIT);
    sl_wire_batch_fini(&b);
}

typedef struct s_run {
    const s_chaos_cfg_t *cfg;
    sl_history_t *h;
    s_job_t *jobs; /* clients x per_client */
    uint32_t per_client;
    s_client_t cl[S_MAX_CLIENTS];
    uint64_t attempts_max, results_ok, results_other, errors;
} s_run_t;

static s_job_t *s_job(s_run_t *r, uint32_t c, uint32_t j)
{
    return &r->jobs[(size_t)c * r->per_client + j];
}

/* Take every message waiting on client c's socket into the history. */
static void s_drain(s_run_t *r, uint32_t c)
{
    s_client_t *cl = &r->cl[c];
    for (;;) {
        sl_wire_ident_t from;
        sl_wire_msg_t *m = NULL;
        char err[256];
        sl_status_t st = sl_wire_recv(cl->sock, 0, ZMQ_DONTWAIT, &sl_proto_limits_default, &from,
                                      &m, err, sizeof(err));
        if (st == SL_ERR_AGAIN || (st != SL_OK && !m))
            return;
        sl_time_t now = sl_clock_now();
        uint32_t oc, oj;
        switch (sl_wire_msg_kind(m)) {
        case SL_WIRE_RESULTS: {
            sl_wire_results_t rb;
            sl_wire_results_get(m, &rb);
            for (uint32_t i = 0; i < rb.n_accepted; i++) {
                const char *id = NULL;
                if (sl_wire_accepted_get(m, i, &sl_proto_limits_default, &id, err, sizeof(err)) ||
                    !s_parse_id(id, &oc, &oj)) {
                    r->errors++;
                    continue;
                }
                sl_history_note(r->h, SL_HEV_ACCEPT, oc, oj, c, now, 0, 0);
            }
            for (uint32_t i = 0; i < rb.n_busy; i++) {
                sl_wire_busy_t b;
                if (sl_wire_busy_get(m, i, &sl_proto_limits_default, &b, err, sizeof(err)) ||
                    !s_parse_id(b.job_id, &oc, &oj)) {
                    r->errors++;
                    continue;
                }
                sl_history_note(r->h, SL_HEV_BUSY, oc, oj, c, now, 0, 0);
                if (oc == c && oj < r->per_client && !sl_history_done(r->h, oc, oj))
                    s_job(r, oc, oj)->next_send =
                        now + SL_MS(b.retry_after_ms ? b.retry_after_ms : 50);
            }
            for (uint32_t i = 0; i < rb.n_results; i++) {
                sl_wire_result_t res;
                if (sl_wire_result_get(m, i, &sl_proto_limits_default, &res, err, sizeof(err)) ||
                    !s_parse_id(res.job_id, &oc, &oj)) {
                    r->errors++;
                    continue;
                }
                bool first = oc == c && oj < r->per_client && !sl_history_done(r->h, oc, oj);
                sl_history_note(r->h, SL_HEV_RESULT, oc, oj, c, now,
                                res.status == SL_JOB_OK ? 0 : 1, res.n_tokens);
                if (first) {
                    s_job(r, oc, oj)->next_send = 0;
                    cl->open--;
                    if (res.status == SL_JOB_OK)
                        r->results_ok++;
                    else
                        r->results_other++;
                    if (res.attempts > r->attempts_max)
                        r->attempts_max = res.attempts;
                }
            }
            break;
        }
        case SL_WIRE_TOKEN_CHUNK: {
            sl_wire_chunk_t ch;
            sl_wire_chunk_get(m, &ch);
            if (s_parse_id(ch.job_id, &oc, &oj))
                sl_history_note(r->h, SL_HEV_CHUNK, oc, oj, c, now, ch.offset, ch.n_tokens);
            else
                r->errors++;
            break;
        }
        default:
            r->errors++; /* an Error, or something a client is never sent */
            break;
        }
        sl_wire_msg_free(&m);
    }
}

/* Executors the scheduler lists alive, from a status reply: alive_at[i]
 * = now for each of names[] listed alive. */
static bool s_on_status(void *sock, char names[][32], int n, sl_time_t *alive_at)
{
    bool any = false;
    for (;;) {
        sl_wire_ident_t from;
        sl_wire_msg_t *m = NULL;
        char err[256];
        if (sl_wire_recv(sock, 0, ZMQ_DONTWAIT, &sl_proto_limits_default, &from, &m, err,
                         sizeof(err)) != SL_OK) {
            sl_wire_msg_free(&m);
            return any;
        }
        if (sl_wire_msg_kind(m) == SL_WIRE_STATUS_REPLY) {
            any = true;
            sl_wire_status_t st;
            sl_wire_status_get(m, &st);
            sl_time_t now = sl_clock_now();
            for (uint32_t k = 0; k < st.n_executors; k++) {
                sl_wire_exec_status_t e;
                sl_wire_status_exec_get(m, k, &e);
                for (int i = 0; i < n; i++)
                    if (e.alive && !strcmp(e.name, names[i]))
                        alive_at[i] = now;
            }
        }
        sl_wire_msg_free(&m);
    }
}

/* Losses of name logged so far. */
static size_t s_losses_of(s_log_t *l, const char *name)
{
    size_t n = 0;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        n += !strcmp(l->loss[i].name, name);
    pthread_mutex_unlock(&l->mu);
    return n;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int sl_bench_chaos_main(int argc, char **argv)
{
    s_chaos_cfg_t cfg;
    int early = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (early >= 0)
        return early;
    bool stop_fault = strcmp(cfg.fault, "stop") == 0;
    if (!stop_fault && strcmp(cfg.fault, "kill")) {
        fprintf(stderr, "sluice-bench chaos: --fault is kill or stop, not '%s'\n", cfg.fault);
        return 2;
    }
    if (cfg.takeovers && cfg.scheduler_kills) {
        fprintf(stderr, "sluice-bench chaos: --takeovers or --scheduler-kills, not both\n");
        return 2;
    }
    bool tk_mode = cfg.takeovers > 0;
    bool sched_mode = cfg.scheduler_kills > 0 || tk_mode;
    int nfaults = tk_mode ? cfg.takeovers : sched_mode ? cfg.scheduler_kills : cfg.kills;
    if (tk_mode && system("command -v etcd >/dev/null 2>&1") != 0) {
        fprintf(stderr,
                "sluice-bench chaos: --takeovers needs etcd (etcd-server, scripts/setup)\n");
        return 2;
    }
    char self[PATH_MAX], bin[PATH_MAX], sched_bin[PATH_MAX + 32], exec_bin[PATH_MAX + 32];
    if (cfg.bin_dir[0]) {
        snprintf(bin, sizeof(bin), "%s", cfg.bin_dir);
    } else {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
            return 1;
        self[n] = '\0';
        snprintf(bin, sizeof(bin), "%s", dirname(self));
    }
    snprintf(sched_bin, sizeof(sched_bin), "%s/sluice-scheduler", bin);
    snprintf(exec_bin, sizeof(exec_bin), "%s/sluice-executor", bin);

    char tmp[] = "/tmp/sluice-chaos-XXXXXX";
    if (!mkdtemp(tmp)) {
        SL_ERROR("chaos: mkdtemp: %m");
        return 1;
    }
    char cep[PATH_MAX], eep[PATH_MAX], logpath[PATH_MAX];
    snprintf(cep, sizeof(cep), "ipc://%s/c", tmp);
    snprintf(eep, sizeof(eep), "ipc://%s/e", tmp);
    snprintf(logpath, sizeof(logpath), "%s/scheduler.log", tmp);

    struct sigaction sa = {.sa_handler = s_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    s_run_t r = {.cfg = &cfg};
    s_log_t lg = {.fd = -1};
    pthread_t log_thread;
    bool log_up = false;
    pid_t sched = -1, exe[S_MAX_EXECS] = {0};
    sl_time_t restart_at[S_MAX_EXECS] = {0};
    /* a victim is an executor the scheduler has listed alive since it was
     * (re)started, whose previous kill it has logged as a loss: killing
     * one it never registered, or one whose loss is pending, would be no
     * test of detection */
    sl_time_t started_at[S_MAX_EXECS] = {0}, alive_at[S_MAX_EXECS] = {0};
    size_t killed[S_MAX_EXECS] = {0};
    pid_t stopped[S_MAX_EXECS] = {0}; /* --fault stop: paused, killed at restart */
    void *status_sock = NULL;
    char names[S_MAX_EXECS][32];
    void *zctx = zmq_ctx_new();
    int pfd[2] = {-1, -1};
    double *detect = NULL;
    s_loss_t *kills =
        calloc((size_t)(cfg.kills > nfaults ? cfg.kills : nfaults) + 1, sizeof(*kills));
    double *recover = calloc((size_t)nfaults + 1, sizeof(*recover));
    double *takeover = calloc((size_t)nfaults + 1, sizeof(*takeover));
    size_t ntakeover = 0;
    pid_t etcd = -1, standby = -1;
    bool tk_pending = false; /* a takeover whose "leading" line has not come yet */
    sl_time_t tk_killed_at = 0;
    pid_t tk_killed = 0;
    size_t nrecover = 0;
    sl_time_t sched_killed_at = 0, sched_restart_at = 0;
    size_t nkills = 0;

    /* room for the whole run: a kill waits until its victim is back and
     * registered, so kills can come slower than --kill-interval-ms; past
     * this room the clients stop submitting (said at the end) */
    double run_s = (double)nfaults * cfg.kill_interval_ms / 1000.0 * 3.0 + 60.0 +
                   (sched_mode ? 10.0 * nfaults : 0.0);
    r.per_client = (uint32_t)(cfg.rate * run_s / cfg.clients) + (uint32_t)cfg.window + 16;
    r.h = sl_history_create((uint32_t)cfg.clients, r.per_client);
    r.jobs = calloc((size_t)cfg.clients * r.per_client, sizeof(*r.jobs));
    pthread_mutex_init(&lg.mu, NULL);
    lg.loss = calloc(S_MAX_LOSSES, sizeof(*lg.loss));
    lg.copy = fopen(logpath, "w");
    if (!zctx || !r.h || !r.jobs || !lg.loss || !kills || !recover || !takeover ||
        pipe2(pfd, O_CLOEXEC))
        goto out;
    lg.fd = pfd[0];
    if (pthread_create(&log_thread, NULL, s_log_main, &lg) != 0)
        goto out;
    log_up = true;

    char hb[16], missed[16], slots[16], speed[32];
    snprintf(hb, sizeof(hb), "%d", cfg.heartbeat_ms);
    snprintf(missed, sizeof(missed), "%d", cfg.missed_heartbeats);
    snprintf(slots, sizeof(slots), "%d", cfg.slots);
    snprintf(speed, sizeof(speed), "%g", cfg.sim_speed);
    char extra_s[SL_CFG_STR_MAX], *av[64];
    snprintf(extra_s, sizeof(extra_s), "%s", cfg.key_args);
    char journal[PATH_MAX + 16];
    snprintf(journal, sizeof(journal), "%s/journal.db", tmp);
    char *sfixed[] = {sched_bin,
                      "--client-endpoint",
                      cep,
                      "--executor-endpoint",
                      eep,
                      "--heartbeat-ms",
                      hb,
                      "--missed-heartbeats",
                      missed,
                      "--log-level",
                      "warn",
                      "--insecure",
                      sched_mode ? "--journal" : NULL,
                      journal,
                      NULL};
    char *sav[64]; /* kept: a killed scheduler is started again with them */
    int nsav = sl_bench_argv(sav, 64, sfixed, extra_s);
    char etcd_url[64] = "", etcd_flag[96], key_flag[96];
    if (tk_mode) {
        /* etcd with a one-second shortest lease (test_takeover's settings) */
        int cport = sl_bench_free_port(), pport = sl_bench_free_port();
        char curl[64], purl[64], cluster[96], data[PATH_MAX + 16];
        snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", cport);
        snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", pport);
        snprintf(cluster, sizeof(cluster), "c=%s", purl);
        snprintf(data, sizeof(data), "%s/etcd", tmp);
        snprintf(etcd_url, sizeof(etcd_url), "%s", curl);
        char *eav[] = {"/usr/bin/env",
                       "etcd",
                       "--name",
                       "c",
                       "--data-dir",
                       data,
                       "--listen-client-urls",
                       curl,
                       "--advertise-client-urls",
                       curl,
                       "--listen-peer-urls",
                       purl,
                       "--initial-advertise-peer-urls",
                       purl,
                       "--initial-cluster",
                       cluster,
                       "--heartbeat-interval",
                       "50",
                       "--election-timeout",
                       "250",
                       NULL};
        if (cport < 0 || pport < 0 || (etcd = sl_bench_spawn(eav, -1)) < 0)
            goto out;
        snprintf(etcd_flag, sizeof(etcd_flag), "--etcd=%s", etcd_url);
        snprintf(key_flag, sizeof(key_flag), "--leader-key=/sluice/chaos-%d", (int)getpid());
        /* info: the "leading" line says which of the two leads */
        for (int i = 1; i < nsav; i++)
            if (!strcmp(sav[i], "warn") && !strcmp(sav[i - 1], "--log-level"))
                sav[i] = "info";
        if (nsav + 2 < 64) {
            sav[nsav++] = etcd_flag;
            sav[nsav++] = key_flag;
            sav[nsav] = NULL;
        }
    }
    sched = sl_bench_spawn(sav, pfd[1]); /* pfd[1] stays open for the restarts */
    if (sched < 0)
        goto out;
    if (tk_mode) { /* the standby: started once the first one leads */
        for (sl_time_t until = sl_clock_now() + SL_MS(30000); !s_stop;) {
            pthread_mutex_lock(&lg.mu);
            pid_t l = lg.leader;
            pthread_mutex_unlock(&lg.mu);
            if (l == sched)
                break;
            if (sl_clock_now() >= until) {
                fprintf(stderr, "sluice-bench chaos: no scheduler led within 30 s (etcd at %s)\n",
                        etcd_url);
                goto out;
            }
            sl_clock_sleep(SL_MS(20));
        }
        if ((standby = sl_bench_spawn(sav, pfd[1])) < 0)
            goto out;
    }
    for (int i = 0; i < cfg.executors; i++) {
        snprintf(names[i], sizeof(names[i]), "chaos-e%d", i);
        char extra_e[SL_CFG_STR_MAX];
        snprintf(extra_e, sizeof(extra_e), "%s", cfg.key_args);
        char *efixed[] = {exec_bin,    "--scheduler", eep,       "--name",     names[i],
                          "--backend", "sim",         "--slots", slots,        "--sim-speed",
                          speed,       "--log-level", "error",   "--insecure", NULL};
        sl_bench_argv(av, 64, efixed, extra_e);
        if ((exe[i] = sl_bench_spawn(av, -1)) < 0)
            goto out;
        started_at[i] = sl_clock_now();
    }
    status_sock = zmq_socket(zctx, ZMQ_DEALER);
    {
        int zero = 0;
        if (!status_sock || zmq_setsockopt(status_sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
            zmq_connect(status_sock, cep) != 0)
            goto out;
    }
    /* every executor registered before the load and the kills begin */
    for (sl_time_t until = sl_clock_now() + SL_MS(30000);;) {
        sl_wire_status_request_send(status_sock, ZMQ_DONTWAIT);
        sl_clock_sleep(SL_MS(100));
        s_on_status(status_sock, names, cfg.executors, alive_at);
        int up = 0;
        for (int i = 0; i < cfg.executors; i++)
            up += alive_at[i] > started_at[i];
        if (up == cfg.executors)
            break;
        if (sl_clock_now() >= until || s_stop) {
            fprintf(stderr, "sluice-bench chaos: %d of %d executors registered within 30 s\n", up,
                    cfg.executors);
            goto out;
        }
    }
    for (int c = 0; c < cfg.clients; c++) {
        void *s = zmq_socket(zctx, ZMQ_DEALER);
        int zero = 0, hwm = 1000000;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        /* a routing id of its own, as libsluice's: a restarted scheduler
         * sends journaled jobs' results to the same client */
        char rid[48];
        snprintf(rid, sizeof(rid), "chaos-%d-c%d", (int)getpid(), c);
        zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
        if (!s || zmq_connect(s, cep) != 0)
            goto out;
        r.cl[c].sock = s;
    }
    /* the executors register: the first answers come once they have */
    sl_time_t t_start = sl_clock_now();
    printf("# sluice-bench chaos: %d sim executors (--sim-speed %g, %d slots), %d clients, "
           "%.0f jobs/s (%d prompt + %d output tokens, half streamed), %d executor %s "
           "about %d ms apart, restarted after %d ms; heartbeats %d ms x %d; run folder %s\n",
           cfg.executors, cfg.sim_speed, cfg.slots, cfg.clients, cfg.rate, cfg.prompt_tokens,
           cfg.max_new_tokens, cfg.kills, stop_fault ? "SIGSTOPs" : "SIGKILLs",
           cfg.kill_interval_ms, cfg.restart_ms, cfg.heartbeat_ms, cfg.missed_heartbeats, tmp);
    fflush(stdout);

    sl_rand_t rnd;
    sl_rand_seed(&rnd, (uint64_t)cfg.seed);
    sl_time_t warm = t_start + SL_MS(1000); /* load before the first kill */
    sl_time_t next_kill =
        warm + SL_MS((int64_t)(cfg.kill_interval_ms * (0.5 + sl_rand_double(&rnd))));
    sl_time_t next_print = t_start + SL_NS_PER_S, next_status = t_start;
    double credit = 0;
    sl_time_t last = t_start;
    bool submitting = true;
    sl_time_t drain_end = 0;
    uint32_t rr = 0;
    zmq_pollitem_t items[S_MAX_CLIENTS];
    for (int c = 0; c < cfg.clients; c++)
        items[c] = (zmq_pollitem_t){r.cl[c].sock, 0, ZMQ_POLLIN, 0};

    while (!s_stop) {
        sl_time_t now = sl_clock_now();
        /* kills, then restarts */
        if (tk_mode && submitting && nkills < (size_t)nfaults && now >= next_kill) {
            pthread_mutex_lock(&lg.mu);
            pid_t l = lg.leader;
            pthread_mutex_unlock(&lg.mu);
            if (l != sched) { /* the roles as the log says */
                pid_t t = sched;
                sched = standby;
                standby = t;
            }
            pid_t kills_pid = sched;
            kill(sched, SIGKILL);
            waitpid(sched, NULL, 0);
            sched_killed_at = sl_clock_now();
            kills[nkills] = (s_loss_t){.t = sched_killed_at};
            snprintf(kills[nkills].name, sizeof(kills[nkills].name), "leader");
            nkills++;
            sched = standby; /* the new leader, soon */
            tk_pending = true;
            tk_killed_at = sched_killed_at;
            tk_killed = kills_pid;
            if ((standby = sl_bench_spawn(sav, pfd[1])) < 0)
                goto out;
            next_kill = INT64_MAX; /* set once the standby leads and answers */
            s_on_status(status_sock, names, cfg.executors, alive_at);
        }
        if (!tk_mode && sched_mode && submitting && nkills < (size_t)nfaults && now >= next_kill &&
            sched > 0) {
            kill(sched, SIGKILL);
            waitpid(sched, NULL, 0);
            sched = 0;
            sched_killed_at = sl_clock_now();
            kills[nkills] = (s_loss_t){.t = sched_killed_at};
            snprintf(kills[nkills].name, sizeof(kills[nkills].name), "scheduler");
            nkills++;
            sched_restart_at = now + SL_MS(cfg.restart_ms);
            next_kill = INT64_MAX;                                    /* set once it is back */
            s_on_status(status_sock, names, cfg.executors, alive_at); /* replies of the dead one */
        }
        if (!tk_mode && sched_mode && sched == 0 && now >= sched_restart_at) {
            if ((sched = sl_bench_spawn(sav, pfd[1])) < 0)
                goto out;
        }
        if (!sched_mode && submitting && nkills < (size_t)cfg.kills && now >= next_kill) {
            int alive[S_MAX_EXECS], na = 0;
            for (int i = 0; i < cfg.executors; i++)
                if (exe[i] > 0 && alive_at[i] > started_at[i] &&
                    s_losses_of(&lg, names[i]) >= killed[i])
                    alive[na++] = i;
            if (na > 1) { /* never the last one */
                int v = alive[sl_rand_below(&rnd, (uint64_t)na)];
                if (stop_fault) {
                    kill(exe[v], SIGSTOP);
                    stopped[v] = exe[v];
                } else {
                    kill(exe[v], SIGKILL);
                    waitpid(exe[v], NULL, 0);
                }
                exe[v] = 0;
                kills[nkills] = (s_loss_t){.t = sl_clock_now()};
                snprintf(kills[nkills].name, sizeof(kills[nkills].name), "%s", names[v]);
                nkills++;
                killed[v]++;
                restart_at[v] = now + SL_MS(cfg.restart_ms);
            }
            next_kill = now + SL_MS((int64_t)(cfg.kill_interval_ms * (0.5 + sl_rand_double(&rnd))));
        }
        for (int i = 0; i < cfg.executors; i++)
            if (exe[i] == 0 && restart_at[i] && now >= restart_at[i]) {
                if (stopped[i] > 0) { /* the hung one goes for good */
                    kill(stopped[i], SIGKILL);
                    waitpid(stopped[i], NULL, 0);
                    stopped[i] = 0;
                }
                char extra_e[SL_CFG_STR_MAX];
                snprintf(extra_e, sizeof(extra_e), "%s", cfg.key_args);
                char *efixed[] = {exec_bin, "--scheduler", eep,   "--name",
                                  names[i], "--backend",   "sim", "--slots",
                                  slots,    "--sim-speed", speed, "--log-level",
                                  "error",  "--insecure",  NULL};
                sl_bench_argv(av, 64, efixed, extra_e);
                if ((exe[i] = sl_bench_spawn(av, -1)) < 0)
                    goto out;
                started_at[i] = sl_clock_now();
                restart_at[i] = 0;
            }
        if (submitting && nkills >= (size_t)nfaults && now >= next_kill) {
            submitting = false; /* the last kill has had its interval */
            drain_end = now + SL_MS(cfg.drain_timeout_ms);
        }
        /* new jobs at the rate, round the clients */
        credit += (double)(now - last) / 1e9 * cfg.rate;
        last = now;
        if (credit > cfg.rate)
            credit = cfg.rate; /* no burst after a stall */
        while (submitting && credit >= 1) {
            bool sent = false;
            for (int k = 0; k < cfg.clients && !sent; k++) {
                uint32_t c = (rr + (uint32_t)k) % (uint32_t)cfg.clients;
                s_client_t *cl = &r.cl[c];
                if (cl->open >= (uint32_t)cfg.window || cl->next_job >= r.per_client)
                    continue;
                uint32_t j = cl->next_job++;
                cl->open++;
                s_send(&cfg, cl, c, j, j % 2 == 1);
                sl_history_note(r.h, SL_HEV_SUBMIT, c, j, c, now, 0, 0);
                s_job(&r, c, j)->sends = 1;
                s_job(&r, c, j)->next_send = now + SL_MS(cfg.resend_ms);
                sent = true;
                rr = c + 1;
            }
            if (!sent)
                break;
            credit -= 1;
        }
        /* resends: Busy past its retry-after, or no answer for resend-ms */
        for (int c = 0; c < cfg.clients; c++)
            for (uint32_t j = 0; j < r.cl[c].next_job; j++) {
                s_job_t *jb = s_job(&r, (uint32_t)c, j);
                if (jb->next_send && now >= jb->next_send &&
                    !sl_history_done(r.h, (uint32_t)c, j)) {
                    s_send(&cfg, &r.cl[c], (uint32_t)c, j, j % 2 == 1);
                    sl_history_note(r.h, SL_HEV_SUBMIT, (uint32_t)c, j, (uint32_t)c, now, 0, 0);
                    jb->sends++;
                    jb->next_send = now + SL_MS(cfg.resend_ms);
                }
            }
        if (now >= next_status) { /* who is alive, for the choice of victims */
            sl_wire_status_request_send(status_sock, ZMQ_DONTWAIT);
            next_status = now + SL_MS(100);
        }
        if (tk_pending) { /* the standby's "leading" line, once the log thread has it */
            pthread_mutex_lock(&lg.mu);
            if (lg.leader != tk_killed && lg.leader > 0 && lg.led_at >= tk_killed_at) {
                /* either standby may win: the one started at this kill too */
                takeover[ntakeover++] = (double)(lg.led_at - tk_killed_at) / 1e6;
                tk_pending = false;
                if (lg.leader != sched) {
                    standby = sched;
                    sched = lg.leader;
                }
            }
            pthread_mutex_unlock(&lg.mu);
        }
        if (s_on_status(status_sock, names, cfg.executors, alive_at) && sched_killed_at) {
            /* the restarted scheduler (or the new leader) answers: recovered */
            recover[nrecover++] = (double)(now - sched_killed_at) / 1e6;

            sched_killed_at = 0;
            next_kill = now + SL_MS((int64_t)(cfg.kill_interval_ms * (0.5 + sl_rand_double(&rnd))));
        }
        if (zmq_poll(items, cfg.clients, 2) < 0 && errno != EINTR)
            break;
        for (int c = 0; c < cfg.clients; c++)
            s_drain(&r, (uint32_t)c);
        now = sl_clock_now();
        if (now >= next_print) {
            sl_history_report_t hr;
            sl_history_check(r.h, &hr);
            pthread_mutex_lock(&lg.mu);
            size_t nl = lg.n;
            pthread_mutex_unlock(&lg.mu);
            printf("t=%3.0fs submitted=%llu accepted=%llu results=%llu open=%llu kills=%zu "
                   "losses_logged=%zu\n",
                   (double)(now - t_start) / 1e9, (unsigned long long)hr.submitted,
                   (unsigned long long)hr.accepted, (unsigned long long)hr.results,
                   (unsigned long long)(hr.submitted - hr.results), nkills, nl);
            fflush(stdout);
            next_print += SL_NS_PER_S;
        }
        if (!submitting) {
            uint32_t open = 0;
            for (int c = 0; c < cfg.clients; c++)
                open += r.cl[c].open;
            if (open == 0 || now >= drain_end)
                break;
        }
    }
    if (s_stop) {
        fprintf(stderr, "sluice-bench chaos: stopped by a signal\n");
        goto out;
    }
    /* the last losses are logged by now (the drain took longer than a detection) */
    sl_history_report_t hr;
    sl_history_check(r.h, &hr);
    pthread_mutex_lock(&lg.mu);
    detect = calloc(nkills + 1, sizeof(*detect));
    size_t nd = 0, undetected = 0, matched_losses = 0;
    bool *used = calloc(lg.n + 1, sizeof(*used));
    char kpath[PATH_MAX + 16];
    snprintf(kpath, sizeof(kpath), "%s/kills.txt", tmp);
    FILE *kf = fopen(kpath, "w"); /* each kill and its detection, for a reader of the log */
    for (size_t k = 0; detect && used && k < nkills; k++) {
        /* the first loss of that name logged after the kill */
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < lg.n; i++)
            if (!used[i] && lg.loss[i].t >= kills[k].t && !strcmp(lg.loss[i].name, kills[k].name) &&
                (best == SIZE_MAX || lg.loss[i].t < lg.loss[best].t))
                best = i;
        if (best == SIZE_MAX) {
            undetected++;
            continue;
        }
        used[best] = true;
        matched_losses++;
        detect[nd++] = (double)(lg.loss[best].t - kills[k].t) / 1e6;
        if (kf)
            fprintf(kf, "%s killed at %.3f s, lost at %.3f s: %.0f ms\n", kills[k].name,
                    (double)(kills[k].t - t_start) / 1e9, (double)(lg.loss[best].t - t_start) / 1e9,
                    detect[nd - 1]);
    }
    for (size_t i = 0; kf && i < lg.n; i++)
        if (!used[i])
            fprintf(kf, "%s lost at %.3f s with no kill before it\n", lg.loss[i].name,
                    (double)(lg.loss[i].t - t_start) / 1e9);
    if (kf)
        fclose(kf);
    size_t false_losses = lg.n - matched_losses;
    pthread_mutex_unlock(&lg.mu);
    free(used);
    qsort(detect, nd, sizeof(*detect), s_cmp_double);
    double p50 = nd ? detect[(nd - 1) / 2] : 0;
    double p99 = nd ? detect[(size_t)((double)(nd - 1) * 0.99 + 0.5)] : 0;
    double dmax = nd ? detect[nd - 1] : 0;
    if (!sched_mode)
        printf("# detection (kill to \"executor lost\" in the scheduler's log), ms: min %.0f, p50 "
               "%.0f, p90 %.0f, p99 %.0f, max %.0f (%zu kills detected, %zu not)\n",
               nd ? detect[0] : 0, p50, nd ? detect[(size_t)((double)(nd - 1) * 0.9 + 0.5)] : 0,
               p99, dmax, nd, undetected);
    printf("# history: %llu jobs submitted, %llu accepted, %llu with a result (%llu OK, %llu "
           "other); lost %llu, duplicated %llu, wrong client %llu, backwards %llu, results "
           "without Accepted %llu; streams: %llu tokens twice, %llu gaps, %llu short; most "
           "attempts %llu; %llu undecodable or unexpected messages\n",
           (unsigned long long)hr.submitted, (unsigned long long)hr.accepted,
           (unsigned long long)hr.results, (unsigned long long)r.results_ok,
           (unsigned long long)r.results_other, (unsigned long long)hr.lost,
           (unsigned long long)hr.duplicated, (unsigned long long)hr.wrong_client,
           (unsigned long long)hr.backwards, (unsigned long long)hr.unaccepted_results,
           (unsigned long long)hr.chunk_dups, (unsigned long long)hr.chunk_gaps,
           (unsigned long long)hr.stream_short, (unsigned long long)r.attempts_max,
           (unsigned long long)r.errors);
    if (!sched_mode)
        printf("# false losses (an executor lost with no kill): %zu; the scheduler's log: %s\n",
               false_losses, logpath);
    else if (hr.chunk_dups || hr.stream_short)
        printf("# streamed tokens received twice: %llu, from streaming jobs run again after a "
               "restart (the delivered frontier is not journaled; libsluice drops repeated "
               "offsets); streams short of their result: %llu (chunks sent while no scheduler "
               "ran are not sent again; the Result carries every token): reported, not "
               "failed\n",
               (unsigned long long)hr.chunk_dups, (unsigned long long)hr.stream_short);
    if (tk_mode) {
        qsort(recover, nrecover, sizeof(*recover), s_cmp_double);
        qsort(takeover, ntakeover, sizeof(*takeover), s_cmp_double);
        printf("# takeover (leader SIGKILLed to the standby's \"leading\" line), ms: p50 %.0f, "
               "max %.0f (%zu of %zu); recovery (to its first status reply): p50 %.0f, max %.0f\n",
               ntakeover ? takeover[(ntakeover - 1) / 2] : 0,
               ntakeover ? takeover[ntakeover - 1] : 0, ntakeover, nkills,
               nrecover ? recover[(nrecover - 1) / 2] : 0, nrecover ? recover[nrecover - 1] : 0);
        printf("RESULT scenario=takeovers takeovers=%zu jobs=%llu accepted=%llu lost=%llu "
               "duplicated=%llu wrong_client=%llu backwards=%llu unaccepted_results=%llu "
               "stream_dup_tokens=%llu stream_gaps=%llu stream_short=%llu takeover_p50_ms=%.0f "
               "takeover_max_ms=%.0f taken_over=%zu recover_max_ms=%.0f attempts_max=%llu\n",
               nkills, (unsigned long long)hr.submitted, (unsigned long long)hr.accepted,
               (unsigned long long)hr.lost, (unsigned long long)hr.duplicated,
               (unsigned long long)hr.wrong_client, (unsigned long long)hr.backwards,
               (unsigned long long)hr.unaccepted_results, (unsigned long long)hr.chunk_dups,
               (unsigned long long)hr.chunk_gaps, (unsigned long long)hr.stream_short,
               ntakeover ? takeover[(ntakeover - 1) / 2] : 0,
               ntakeover ? takeover[ntakeover - 1] : 0, ntakeover,
               nrecover ? recover[nrecover - 1] : 0, (unsigned long long)r.attempts_max);
    } else if (sched_mode) {
        qsort(recover, nrecover, sizeof(*recover), s_cmp_double);
        printf("# recovery (kill to the first status reply of the restarted scheduler), ms: p50 "
               "%.0f, max %.0f (%zu of %zu kills)\n",
               nrecover ? recover[(nrecover - 1) / 2] : 0, nrecover ? recover[nrecover - 1] : 0,
               nrecover, nkills);
        printf("RESULT scenario=scheduler-kills kills=%zu jobs=%llu accepted=%llu lost=%llu "
               "duplicated=%llu wrong_client=%llu backwards=%llu unaccepted_results=%llu "
               "stream_dup_tokens=%llu stream_gaps=%llu stream_short=%llu recover_p50_ms=%.0f "
               "recover_max_ms=%.0f attempts_max=%llu\n",
               nkills, (unsigned long long)hr.submitted, (unsigned long long)hr.accepted,
               (unsigned long long)hr.lost, (unsigned long long)hr.duplicated,
               (unsigned long long)hr.wrong_client, (unsigned long long)hr.backwards,
               (unsigned long long)hr.unaccepted_results, (unsigned long long)hr.chunk_dups,
               (unsigned long long)hr.chunk_gaps, (unsigned long long)hr.stream_short,
               nrecover ? recover[(nrecover - 1) / 2] : 0, nrecover ? recover[nrecover - 1] : 0,
               (unsigned long long)r.attempts_max);
    } else
        printf("RESULT scenario=executor-%s kills=%zu jobs=%llu accepted=%llu lost=%llu "
               "duplicated=%llu wrong_client=%llu backwards=%llu unaccepted_results=%llu "
               "stream_dup_tokens=%llu stream_gaps=%llu detect_p50_ms=%.0f detect_p99_ms=%.0f "
               "detect_max_ms=%.0f undetected=%zu false_losses=%zu attempts_max=%llu\n",
               stop_fault ? "stops" : "kills", nkills, (unsigned long long)hr.submitted,
               (unsigned long long)hr.accepted, (unsigned long long)hr.lost,
               (unsigned long long)hr.duplicated, (unsigned long long)hr.wrong_client,
               (unsigned long long)hr.backwards, (unsigned long long)hr.unaccepted_results,
               (unsigned long long)hr.chunk_dups, (unsigned long long)hr.chunk_gaps, p50, p99, dmax,
               undetected, false_losses, (unsigned long long)r.attempts_max);
    fflush(stdout);
    /* After a scheduler restart a streaming job that runs again streams
     * from its first token: the delivered frontier is not journaled (a
     * known limit, OPERATIONS.md; libsluice drops the repeated offsets),
     * so there repeated tokens are reported, not failed. So are streams
     * short of their result: chunks an executor sent while no scheduler
     * ran are lost, and a job that finished meanwhile is answered with
     * its Result (every token) and no further chunk. */
    bool stream_bad = hr.chunk_gaps || (!sched_mode && (hr.chunk_dups || hr.stream_short));
    /* A scheduler killed after its journal batch was durable and before
     * the batch's Accepted went out: the job runs, its result comes with
     * no Accepted before it. Broken only when no scheduler died. */
    rc = hr.lost || hr.duplicated || hr.wrong_client || hr.backwards ||
                 (!sched_mode && hr.unaccepted_results) || stream_bad
             ? 3
             : 0;
out:
    for (int c = 0; c < cfg.clients; c++)
        if (r.cl[c].sock)
            zmq_close(r.cl[c].sock);
    if (status_sock)
        zmq_close(status_sock);
    for (int i = 0; i < cfg.executors; i++) {
        if (exe[i] > 0) {
            kill(exe[i], SIGKILL);
            waitpid(exe[i], NULL, 0);
        }
        if (stopped[i] > 0) {
            kill(stopped[i], SIGKILL);
            waitpid(stopped[i], NULL, 0);
        }
    }
    if (sched > 0) {
        kill(sched, SIGKILL);
        waitpid(sched, NULL, 0);
    }
    if (standby > 0) {
        kill(standby, SIGKILL);
        waitpid(standby, NULL, 0);
    }
    if (etcd > 0) {
        kill(etcd, SIGTERM);
        waitpid(etcd, NULL, 0);
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s/etcd'", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "sluice-bench chaos: could not remove %s/etcd\n", tmp);
    }
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (log_up)
        pthread_join(log_thread, NULL);
    else if (pfd[0] >= 0)
        close(pfd[0]);
    if (lg.copy)
        fclose(lg.copy);
    if (zctx)
        zmq_ctx_term(zctx);
    free(detect);
    free(recover);
    free(takeover);
    free(kills);
    free(lg.loss);
    free(r.jobs);
    sl_history_destroy(&r.h);
    pthread_mutex_destroy(&lg.mu);
    if (rc == 0 && !cfg.keep) { /* keep the folder (its log) when something failed */
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/scheduler.log", tmp);
        unlink(path);
        snprintf(path, sizeof(path), "%s/kills.txt", tmp);
        unlink(path);
        const char *jf[] = {"journal.db", "journal.db-wal", "journal.db-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/%s", tmp, jf[i]);
            unlink(path);
        }
        snprintf(path, sizeof(path), "%s/c", tmp);
        unlink(path);
        snprintf(path, sizeof(path), "%s/e", tmp);
        unlink(path);
        rmdir(tmp);
    }
    return rc;
}
