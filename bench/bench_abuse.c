/*
 * sluice-bench abuse: the scheduler's resident memory through a minute of
 * bogus and abusive traffic.
 *
 * The real sluice-scheduler and one slow sim executor; attackers, each a
 * ZeroMQ socket of this program, on the client port and on the executor
 * port, for --seconds:
 *   - garbage: random bytes of random sizes (up to 64 KiB);
 *   - oversized: messages over the scheduler's --max-msg-bytes (ZeroMQ
 *     drops the connection at the frame header);
 *   - malformed: a valid envelope header with a damaged body;
 *   - churn: a new connection for every few messages, then gone;
 *   - flood: valid submits from one client as fast as it can, never
 *     reading an answer (a slow client: what the scheduler holds for it
 *     is bounded by its queue, its tenant's bucket and its high-water
 *     marks);
 *   - bogus executors: hellos and heartbeats with junk fields on the
 *     executor port.
 * Every second it reads the scheduler's VmRSS (/proc/PID/status) and
 * prints it; the RESULT line gives the first, largest and last readings
 * and the growth over the second half of the run, which is what a bound
 * means: whatever the scheduler keeps for abusers stops growing.
 *
 * The daemons run --insecure: the attackers are raw sockets measuring the
 * scheduler's message handling (with keys, every one of them would be
 * refused at the handshake, which test_auth covers).
 *
 * Alternatives rejected: measuring inside the scheduler (mallinfo misses
 * ZeroMQ's and SQLite's own pools; RSS is what an operator sees).
 */
#include "bench/bench.h"
#include "bench/sl_bench_proc.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "proto/sl_wire.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

typedef struct s_abuse_cfg {
    int seconds;                      /* length of the abuse */
    int max_msg_kib;                  /* scheduler --max-msg-bytes, KiB */
    int hwm;                          /* scheduler --hwm */
    int queue_max;                    /* scheduler --queue-max */
    char bin_dir[SL_CFG_STR_MAX];     /* where the programs are */
    char daemon_args[SL_CFG_STR_MAX]; /* extra flags for the daemons, space-separated */
    char client_args[SL_CFG_STR_MAX]; /* unused by raw sockets; kept for symmetry */
} s_abuse_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_RANGE(s_abuse_cfg_t, seconds, "seconds", "60", SL_CFG_INT, 2, 3600,
                 "length of the abuse"),
    SL_CFG_RANGE(s_abuse_cfg_t, max_msg_kib, "max-msg-kib", "1024", SL_CFG_INT, 4, 1048576,
                 "the scheduler's --max-msg-bytes, in KiB"),
    SL_CFG_RANGE(s_abuse_cfg_t, hwm, "hwm", "1000", SL_CFG_INT, 100, 100000000,
                 "the scheduler's --hwm (messages queued per peer)"),
    SL_CFG_RANGE(s_abuse_cfg_t, queue_max, "queue-max", "10000", SL_CFG_INT, 1, 100000000,
                 "the scheduler's --queue-max"),
    SL_CFG_FIELD(s_abuse_cfg_t, bin_dir, "bin-dir", "", SL_CFG_STR,
                 "folder of sluice-scheduler and sluice-executor (default: next to sluice-bench)"),
    SL_CFG_FIELD(s_abuse_cfg_t, daemon_args, "daemon-args", "", SL_CFG_STR,
                 "extra flags given to both daemons, space-separated"),
    SL_CFG_END,
};

/* VmRSS of pid in KiB; -1 when gone. */
static long s_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void *s_sock(void *zctx, const char *ep)
{
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0, hwm = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_connect(s, ep);
    return s;
}

/* One valid submit (a fresh id each time) from the flooding client. */
static void s_submit(void *sock, uint64_t n)
{
    char id[40];
    snprintf(id, sizeof(id), "abuse-%llu", (unsigned long long)n);
    sl_job_desc_t d = {.id = id,
                       .prio = SL_PRIO_INTERACTIVE,
                       .prompt_tokens = 64,
                       .max_new_tokens = 16,
                       .tenant = "flood"};
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    if (sl_wire_submit_add(&b, &d) == SL_OK)
        sl_wire_batch_send(sock, NULL, &b, ZMQ_DONTWAIT);
    sl_wire_batch_fini(&b);
}

int sl_bench_abuse_main(int argc, char **argv)
{
    s_abuse_cfg_t cfg;
    int early = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (early >= 0)
        return early;
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
    char tmp[] = "/tmp/sluice-abuse-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char cep[PATH_MAX], eep[PATH_MAX];
    snprintf(cep, sizeof(cep), "ipc://%s/c", tmp);
    snprintf(eep, sizeof(eep), "ipc://%s/e", tmp);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    pid_t sched = -1, exe = -1;
    void *zctx = zmq_ctx_new();
    void *garbage = NULL, *malformed = NULL, *flood = NULL, *oversize = NULL, *bogus_exec = NULL,
         *churn = NULL;
    uint8_t *buf = NULL;
    char maxmsg[32], hwm[16], qmax[16], extra[SL_CFG_STR_MAX], *av[64];
    snprintf(maxmsg, sizeof(maxmsg), "%lld", (long long)cfg.max_msg_kib * 1024);
    snprintf(hwm, sizeof(hwm), "%d", cfg.hwm);
    snprintf(qmax, sizeof(qmax), "%d", cfg.queue_max);
    snprintf(extra, sizeof(extra), "%s", cfg.daemon_args);
    char *sfixed[] = {sched_bin, "--client-endpoint", cep,    "--executor-endpoint",
                      eep,       "--max-msg-bytes",   maxmsg, "--hwm",
                      hwm,       "--queue-max",       qmax,   "--log-level",
                      "error",   "--insecure",        NULL};
    sl_bench_argv(av, 64, sfixed, extra);
    if ((sched = sl_bench_spawn(av, -1)) < 0)
        goto out;
    snprintf(extra, sizeof(extra), "%s", cfg.daemon_args);
    char *efixed[] = {exec_bin,    "--scheduler", eep,           "--name", "abuse-slow",
                      "--backend", "sim",         "--sim-speed", "0.2",    "--log-level",
                      "error",     "--insecure",  NULL};
    sl_bench_argv(av, 64, efixed, extra);
    if ((exe = sl_bench_spawn(av, -1)) < 0)
        goto out;
    sl_clock_sleep(SL_MS(1000)); /* both up */

    garbage = s_sock(zctx, cep);
    malformed = s_sock(zctx, cep);
    flood = s_sock(zctx, cep);
    oversize = s_sock(zctx, cep);
    bogus_exec = s_sock(zctx, eep);
    sl_rand_t rnd;
    sl_rand_seed(&rnd, 11);
    size_t big = (size_t)cfg.max_msg_kib * 1024 + 4096;
    buf = malloc(big);
    if (!buf || !garbage || !malformed || !flood || !oversize || !bogus_exec)
        goto out;
    for (size_t i = 0; i < big; i++)
        buf[i] = (uint8_t)sl_rand_u64(&rnd);
    /* a valid submit's bytes, damaged at random below */
    uint8_t valid[512];
    size_t valid_len = 0;
    {
        sl_job_desc_t d = {.id = "abuse-template", .prompt_tokens = 8, .max_new_tokens = 4};
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        sl_wire_submit_add(&b, &d);
        void *pair[2] = {zmq_socket(zctx, ZMQ_PAIR), zmq_socket(zctx, ZMQ_PAIR)};
        zmq_bind(pair[0], "inproc://abuse-template");
        zmq_connect(pair[1], "inproc://abuse-template");
        sl_wire_batch_send(pair[1], NULL, &b, 0);
        int n = zmq_recv(pair[0], valid, sizeof(valid), 0);
        valid_len = n > 0 ? (size_t)(n < (int)sizeof(valid) ? n : (int)sizeof(valid)) : 0;
        zmq_close(pair[0]);
        zmq_close(pair[1]);
        sl_wire_batch_fini(&b);
    }
    long rss[3602] = {0};
    int nrss = 0;
    uint64_t sent[6] = {0}, submits = 0;
    sl_time_t start = sl_clock_now(), next = start;
    printf("# sluice-bench abuse: the scheduler (--max-msg-bytes %d KiB, --hwm %d, --queue-max "
           "%d) and one slow sim executor, %d s of garbage, oversized, malformed, churned and "
           "bogus-executor messages and a client flooding submits without reading\n",
           cfg.max_msg_kib, cfg.hwm, cfg.queue_max, cfg.seconds);
    printf("%-7s %10s %12s\n", "second", "rss_MiB", "msgs_sent");
    while (nrss <= cfg.seconds) {
        sl_time_t now = sl_clock_now();
        if (now >= next) {
            long k = s_rss_kib(sched);
            if (k < 0) {
                fprintf(stderr, "sluice-bench abuse: the scheduler is gone\n");
                goto out;
            }
            rss[nrss++] = k;
            uint64_t tot = submits;
            for (int i = 0; i < 5; i++)
                tot += sent[i];
            printf("%-7d %10.1f %12llu\n", nrss - 1, (double)k / 1024, (unsigned long long)tot);
            fflush(stdout);
            next += SL_NS_PER_S;
        }
        for (int k = 0; k < 64; k++) {
            size_t n = 1 + sl_rand_below(&rnd, 65536);
            sent[0] += zmq_send(garbage, buf + sl_rand_below(&rnd, big - n), n, ZMQ_DONTWAIT) >= 0;
            if (valid_len) {
                uint8_t m[512];
                memcpy(m, valid, valid_len);
                for (int f = 0; f < 4; f++)
                    m[sl_rand_below(&rnd, valid_len)] = (uint8_t)sl_rand_u64(&rnd);
                size_t len = 1 + sl_rand_below(&rnd, valid_len);
                sent[1] += zmq_send(malformed, m, len, ZMQ_DONTWAIT) >= 0;
            }
            s_submit(flood, submits++);
            n = 1 + sl_rand_below(&rnd, 2048);
            sent[2] +=
                zmq_send(bogus_exec, buf + sl_rand_below(&rnd, big - n), n, ZMQ_DONTWAIT) >= 0;
        }
        if (++sent[5] % 8 == 0) { /* oversized: the connection is dropped, so a new one */
            zmq_close(oversize);
            oversize = s_sock(zctx, cep);
        }
        sent[3] += zmq_send(oversize, buf, big, ZMQ_DONTWAIT) >= 0;
        if (!churn)
            churn = s_sock(zctx, cep);
        sent[4] += zmq_send(churn, buf, 1 + sl_rand_below(&rnd, 512), ZMQ_DONTWAIT) >= 0;
        if (sl_rand_below(&rnd, 4) == 0) {
            zmq_close(churn);
            churn = NULL;
        }
        sl_clock_sleep(SL_MS(1));
    }
    long first = rss[1], maxr = 0, mid = rss[nrss / 2], last = rss[nrss - 1];
    for (int i = 0; i < nrss; i++)
        maxr = rss[i] > maxr ? rss[i] : maxr;
    uint64_t tot = submits;
    for (int i = 0; i < 5; i++)
        tot += sent[i];
    printf("# messages sent: garbage %llu, malformed %llu, bogus executor %llu, oversized %llu, "
           "churned %llu, flood submits %llu\n",
           (unsigned long long)sent[0], (unsigned long long)sent[1], (unsigned long long)sent[2],
           (unsigned long long)sent[3], (unsigned long long)sent[4], (unsigned long long)submits);
    /* the scheduler's own count of what it refused */
    {
        void *st = s_sock(zctx, cep);
        sl_wire_status_request_send(st, 0);
        zmq_pollitem_t it = {st, 0, ZMQ_POLLIN, 0};
        sl_time_t until = sl_clock_now() + SL_MS(5000);
        while (sl_clock_now() < until && zmq_poll(&it, 1, 100) >= 0) {
            sl_wire_ident_t from;
            sl_wire_msg_t *m = NULL;
            char err[256];
            if (!(it.revents & ZMQ_POLLIN) ||
                sl_wire_recv(st, 0, 0, &sl_proto_limits_default, &from, &m, err, sizeof(err)))
                continue;
            if (sl_wire_msg_kind(m) == SL_WIRE_STATUS_REPLY) {
                sl_wire_status_t h;
                sl_wire_status_get(m, &h);
                printf("# the scheduler's counters:");
                for (uint32_t i = 0; i < h.n_counters; i++) {
                    sl_wire_counter_t c;
                    sl_wire_status_counter_get(m, i, &c);
                    if (strstr(c.name, "reject") || strstr(c.name, "unknown") ||
                        strstr(c.name, "wrong") || strstr(c.name, "busy"))
                        printf(" %s=%llu", c.name, (unsigned long long)c.value);
                }
                printf("\n");
                sl_wire_msg_free(&m);
                break;
            }
            sl_wire_msg_free(&m);
        }
        zmq_close(st);
    }
    printf("RESULT seconds=%d msgs=%llu rss_first_mib=%.1f rss_max_mib=%.1f rss_mid_mib=%.1f "
           "rss_last_mib=%.1f growth_second_half_mib=%.1f alive=1\n",
           cfg.seconds, (unsigned long long)tot, (double)first / 1024, (double)maxr / 1024,
           (double)mid / 1024, (double)last / 1024, (double)(last - mid) / 1024);
    rc = 0;
out:
    free(buf);
    void *socks[] = {garbage, malformed, flood, oversize, bogus_exec, churn};
    for (size_t i = 0; i < sizeof(socks) / sizeof(socks[0]); i++)
        if (socks[i])
            zmq_close(socks[i]);
    if (exe > 0) {
        kill(exe, SIGKILL);
        waitpid(exe, NULL, 0);
    }
    if (sched > 0) {
        kill(sched, SIGKILL);
        waitpid(sched, NULL, 0);
    }
    zmq_ctx_term(zctx);
    char path[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/c", tmp);
    unlink(path);
    snprintf(path, sizeof(path), "%s/e", tmp);
    unlink(path);
    rmdir(tmp);
    return rc;
}
