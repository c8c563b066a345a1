/*
 * `sluice`: the command-line client.
 *
 *   sluice submit [options]   run one job and print its result and timings
 *   sluice status [options]   print executors, their load, queues, counters
 *   sluice keygen DIR [--name NAME]
 *                             write a CURVE key pair DIR/NAME.key and .pub
 *
 * Each command is one configuration table (common/sl_cfg.h) that embeds the
 * library's knobs, so every option is also a SLUICE_* variable and a line of
 * --help. Exit status: 0 success, 1 the job or the request failed (or
 * ended late, past --deadline-ms, or `submit` gave up after
 * --wait-timeout-ms, canceling the job), 2 usage,
 * 130 / 143 `submit` interrupted by SIGINT / SIGTERM (the job is canceled
 * at the scheduler first).
 *
 * `submit` waits in short polls rather than one blocking call, so a signal
 * (caught into a flag) or the overall timeout is seen within a poll and the
 * job can be canceled before exiting: a CLI that died on Ctrl-C left its job
 * running on an executor for nobody.
 *
 * Rejected: one table shared by both commands (status would accept
 * --max-new-tokens and silently ignore it); getopt (a second list of options
 * that drifts from the knobs).
 */
#include <sluice/client.h>

#include "client/sl_client_cfg.h"
#include "common/sl_auth.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_EXIT_OK 0
#define S_EXIT_FAIL 1
#define S_EXIT_USAGE 2
#define S_EXIT_SIGNAL 128 /* plus the signal's number, as a shell reports it */
#define S_POLL_MS 50      /* how soon submit notices a signal */

typedef struct s_submit_cfg {
    sl_client_cfg_t client;           /* library knobs */
    int prompt_tokens;                /* synthetic prompt length when --tokens is absent */
    char tokens[SL_CFG_STR_MAX];      /* comma-separated prompt token ids */
    int max_new_tokens;               /* tokens to generate */
    char priority[SL_CFG_STR_MAX];    /* interactive | batch */
    char tenant[SL_CFG_STR_MAX];      /* tenant name */
    char model[SL_CFG_STR_MAX];       /* model name */
    char session_key[SL_CFG_STR_MAX]; /* sticky routing key */
    char id[SL_CFG_STR_MAX];          /* job id; empty = generated */
    int ttft_deadline_ms;             /* first-token budget */
    int deadline_ms;                  /* whole-job budget */
    bool stream;                      /* print tokens as they arrive */
    int print_tokens;                 /* how many output tokens to print */
    int cancel_wait_ms;               /* after a cancel, wait this long for the job's completion */
} s_submit_cfg_t;

static const sl_cfg_field_t s_submit_table[] = {
    SL_CLIENT_CFG_ROWS(s_submit_cfg_t, client, "120000"),
    SL_CFG_RANGE(s_submit_cfg_t, prompt_tokens, "prompt-tokens", "16", SL_CFG_INT, 1, 1 << 20,
                 "prompt length when --tokens is not given (token ids 1..N)"),
    SL_CFG_FIELD(s_submit_cfg_t, tokens, "tokens", "", SL_CFG_STR,
                 "prompt token ids, comma-separated (e.g. 1,2,3)"),
    SL_CFG_RANGE(s_submit_cfg_t, max_new_tokens, "max-new-tokens", "16", SL_CFG_INT, 1, 65536,
                 "tokens to generate"),
    SL_CFG_FIELD(s_submit_cfg_t, priority, "priority", "interactive", SL_CFG_STR,
                 "interactive or batch"),
    SL_CFG_FIELD(s_submit_cfg_t, tenant, "tenant", "", SL_CFG_STR, "tenant name"),
    SL_CFG_FIELD(s_submit_cfg_t, model, "model", "", SL_CFG_STR, "model name"),
    SL_CFG_FIELD(s_submit_cfg_t, session_key, "session-key", "", SL_CFG_STR, "sticky routing key"),
    SL_CFG_FIELD(s_submit_cfg_t, id, "id", "", SL_CFG_STR, "job id (default: generated)"),
    SL_CFG_RANGE(s_submit_cfg_t, ttft_deadline_ms, "ttft-deadline-ms", "0", SL_CFG_INT, 0, 86400000,
                 "first token due within this after receipt (0 = none)"),
    SL_CFG_RANGE(s_submit_cfg_t, deadline_ms, "deadline-ms", "0", SL_CFG_INT, 0, 86400000,
                 "whole job due within this after receipt (0 = none)"),
    SL_CFG_FIELD(s_submit_cfg_t, stream, "stream", "false", SL_CFG_BOOL,
                 "stream tokens as they are produced"),
    SL_CFG_RANGE(s_submit_cfg_t, print_tokens, "print-tokens", "64", SL_CFG_INT, 0, 1 << 20,
                 "output tokens to print"),
    SL_CFG_RANGE(s_submit_cfg_t, cancel_wait_ms, "cancel-wait-ms", "5000", SL_CFG_INT, 0, 600000,
                 "after giving up or a signal, wait this long for the canceled job's result"),
    SL_CFG_END,
};

typedef struct s_status_cfg {
    sl_client_cfg_t client; /* library knobs */
} s_status_cfg_t;

/* Only what a status call uses: the retry, backoff and batching knobs of
 * the library concern submits (the rest keep the library's defaults). */
static const sl_cfg_field_t s_status_table[] = {
    SL_CLIENT_CFG_ENDPOINT_ROW(s_status_cfg_t, client),
    SL_CFG_RANGE(s_status_cfg_t, client.wait_timeout_ms, "wait-timeout-ms", "5000", SL_CFG_INT, 0,
                 86400000, "give up when the scheduler has not answered within this (0 = never)"),
    SL_CFG_END,
};

static void s_usage(FILE *out)
{
    fprintf(out, "usage: sluice COMMAND [options]   (sluice COMMAND --help for its options)\n"
                 "commands:\n"
                 "  submit   run one job and print its result and timings\n"
                 "  status   print executors, their load, queue depths and counters\n"
                 "  keygen   write a CURVE key pair into a key directory\n");
}

/* Load a command's table; returns -1 to go on, else the exit status. */
static int s_load(const char *cmd, const sl_cfg_field_t *table, void *cfg, int argc, char **argv,
                  const char *usage)
{
    char prog[64];
    int first = argc;
    snprintf(prog, sizeof(prog), "sluice %s", cmd);
    argv[0] = prog;
    sl_status_t st = sl_cfg_load(table, cfg, argc, argv, usage, &first);
    if (st == SL_ERR_CANCELED)
        return S_EXIT_OK;
    if (st != SL_OK)
        return S_EXIT_USAGE;
    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see %s --help)\n", prog, argv[first], prog);
        return S_EXIT_USAGE;
    }
    return -1;
}

/* Parse "1,2,3" into a new array; -1 with a message on a bad list. */
static int s_parse_tokens(const char *text, uint32_t **ids_p, size_t *n_p)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    uint32_t *ids = malloc(cap * sizeof(*ids));
    if (!ids)
        return -1;
    size_t n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (errno || end == p || v > UINT32_MAX || (*end && *end != ',') || *p == '-') {
            fprintf(stderr, "sluice submit: --tokens: '%s' is not a list of token ids\n", text);
            free(ids);
            return -1;
        }
        ids[n++] = (uint32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        fprintf(stderr, "sluice submit: --tokens is empty\n");
        free(ids);
        return -1;
    }
    *ids_p = ids;
    *n_p = n;
    return 0;
}

/* Streamed tokens as they come, up to --print-tokens of them (arg: the
 * submit's config). */
static void s_on_chunk(void *arg, const char *job_id, uint32_t offset, const uint32_t *tokens,
                       size_t n)
{
    const s_submit_cfg_t *cfg = arg;
    size_t limit = (size_t)cfg->print_tokens;
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)offset + i;
        if (at < limit)
            printf("%s%u", at == 0 ? "stream: " : " ", tokens[i]);
        else if (at == limit)
            printf(limit ? " ..." : "stream: ...");
    }
    fflush(stdout);
}

static double s_ms(int64_t from_ns, int64_t to_ns)
{
    return from_ns && to_ns ? (double)(to_ns - from_ns) / 1e6 : 0.0;
}

static void s_print_result(const s_submit_cfg_t *cfg, const sl_result_t *r)
{
    const sl_job_timings_t *t = &r->timings;
    if (cfg->stream && r->first_token_ns)
        putchar('\n');
    printf("job %s: %s", r->job_id, r->status == SL_OK ? "ok" : sl_status_str(r->status));
    if (r->late)
        printf(", LATE: ended %.3f ms after receipt, past its %d ms deadline", t->end_us / 1e3,
               cfg->deadline_ms);
    if (r->error[0])
        printf(" (%s)", r->error);
    printf("\n  executor %s, attempts %u, busy answers %u, sends %u, queue depth at accept %u\n",
           r->executor[0] ? r->executor : "-", r->attempts, r->busy_count, r->sends,
           r->queue_depth);
    printf("  tokens (%zu):", r->n_tokens);
    for (size_t i = 0; i < r->n_tokens && i < (size_t)cfg->print_tokens; i++)
        printf(" %u", r->tokens[i]);
    if (r->n_tokens > (size_t)cfg->print_tokens)
        printf(" ...");
    if (r->n_tokens > 0) {
        printf("\n  scheduler: queued %.3f ms, ttft %.3f ms, end %.3f ms; executor: ttft %.3f ms, "
               "end %.3f ms\n",
               t->queued_us / 1e3, t->ttft_us / 1e3, t->end_us / 1e3, t->exec_ttft_us / 1e3,
               t->exec_end_us / 1e3);
    } else {
        /* no token came: there is no time to first token to show */
        printf(
            "\n  scheduler: queued %.3f ms, ttft -, end %.3f ms; executor: ttft -, end %.3f ms\n",
            t->queued_us / 1e3, t->end_us / 1e3, t->exec_end_us / 1e3);
    }
    printf("  prompt %u tokens (%u cached), output %u tokens\n", t->prompt_tokens, t->cached_tokens,
           t->output_tokens);
    char first[32] = "-";
    if (r->first_token_ns)
        snprintf(first, sizeof(first), "%.3f ms", s_ms(r->submit_ns, r->first_token_ns));
    printf("  client: accepted after %.3f ms, first token after %s, result after %.3f ms\n",
           s_ms(r->submit_ns, r->accept_ns), first, s_ms(r->submit_ns, r->end_ns));
}

static volatile sig_atomic_t s_signal; /* the SIGINT or SIGTERM caught, 0 = none */

static void s_on_signal(int sig)
{
    s_signal = sig;
}

/* Catch SIGINT and SIGTERM into s_signal (no SA_RESTART: a wait returns). */
static void s_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/*
 * Wait for the completion of job id: SL_OK with *res_p, SL_ERR_TIMEOUT when
 * wait_ms (0 = none) passed, SL_ERR_CANCELED when a signal came
 * (stop_on_signal), or the client's error.
 */
static sl_status_t s_wait_result(sl_client_t *client, const char *id, int wait_ms,
                                 bool stop_on_signal, sl_result_t **res_p)
{
    sl_time_t deadline = wait_ms > 0 ? sl_clock_now() + SL_MS(wait_ms) : INT64_MAX;
    for (;;) {
        if (stop_on_signal && s_signal)
            return SL_ERR_CANCELED;
        sl_time_t now = sl_clock_now();
        if (now >= deadline)
            return SL_ERR_TIMEOUT;
        sl_time_t left = (deadline - now + SL_NS_PER_MS - 1) / SL_NS_PER_MS;
        sl_result_t *r = NULL;
        sl_status_t st = sl_client_poll(client, left < S_POLL_MS ? (int)left : S_POLL_MS, &r);
        if (st == SL_OK && strcmp(r->job_id, id) == 0) {
            *res_p = r;
            return SL_OK;
        }
        sl_result_destroy(&r); /* not ours: this client submits one job */
        if (st != SL_OK && st != SL_ERR_TIMEOUT)
            return st;
    }
}

/* Cancel job id at the scheduler and wait a little for its completion. */
static sl_result_t *s_cancel_job(sl_client_t *client, const char *id, int wait_ms)
{
    sl_result_t *res = NULL;
    if (sl_client_cancel(client, id) != SL_OK) {
        fprintf(stderr, "sluice submit: could not cancel job %s: %s\n", id,
                sl_client_last_error(client));
        return NULL;
    }
    if (s_wait_result(client, id, wait_ms, false, &res) != SL_OK)
        fprintf(stderr, "sluice submit: no completion of the canceled job %s within %d ms\n", id,
                wait_ms);
    return res;
}

static int s_cmd_submit(int argc, char **argv)
{
    s_submit_cfg_t cfg;
    int rc = s_load("submit", s_submit_table, &cfg, argc, argv, "[options]");
    if (rc >= 0)
        return rc;
    sl_client_priority_t prio;
    if (!strcmp(cfg.priority, "interactive")) {
        prio = SL_CLIENT_INTERACTIVE;
    } else if (!strcmp(cfg.priority, "batch")) {
        prio = SL_CLIENT_BATCH;
    } else {
        fprintf(stderr, "sluice submit: --priority must be interactive or batch, not '%s'\n",
                cfg.priority);
        return S_EXIT_USAGE;
    }
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    if (cfg.tokens[0]) {
        if (s_parse_tokens(cfg.tokens, &ids, &n_ids) != 0)
            return S_EXIT_USAGE;
    } else {
        n_ids = (size_t)cfg.prompt_tokens;
        if (!(ids = malloc(n_ids * sizeof(*ids)))) {
            fprintf(stderr, "sluice submit: out of memory\n");
            return S_EXIT_FAIL;
        }
        for (size_t i = 0; i < n_ids; i++)
            ids[i] = (uint32_t)(i + 1);
    }
    char id[SL_CFG_STR_MAX];
    if (cfg.id[0]) {
        snprintf(id, sizeof(id), "%s", cfg.id);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(id, sizeof(id), "cli-%d-%lld%09ld", (int)getpid(), (long long)ts.tv_sec,
                 ts.tv_nsec);
    }
    sl_job_spec_t job = {
        .id = id,
        .tenant = cfg.tenant,
        .model = cfg.model,
        .session_key = cfg.session_key,
        .priority = prio,
        .token_ids = ids,
        .n_token_ids = n_ids,
        .max_new_tokens = (uint32_t)cfg.max_new_tokens,
        .ttft_deadline_ms = (uint32_t)cfg.ttft_deadline_ms,
        .deadline_ms = (uint32_t)cfg.deadline_ms,
        .stream = cfg.stream,
    };
    sl_client_t *client = NULL;
    sl_result_t *res = NULL;
    rc = S_EXIT_FAIL;
    sl_status_t st = sl_client_create(&cfg.client, &client);
    if (st != SL_OK) {
        fprintf(stderr, "sluice submit: cannot create the client: %s\n", sl_status_str(st));
        goto out;
    }
    if (cfg.stream)
        sl_client_set_chunk_cb(client, s_on_chunk, &cfg);
    s_catch_signals();
    st = sl_client_submit_async(client, &job);
    if (st != SL_OK) {
        fprintf(stderr, "sluice submit: %s: %s\n", sl_status_str(st), sl_client_last_error(client));
        rc = st == SL_ERR_INVALID ? S_EXIT_USAGE : S_EXIT_FAIL;
        goto out;
    }
    st = s_wait_result(client, id, cfg.client.wait_timeout_ms, true, &res);
    if (st == SL_ERR_CANCELED || st == SL_ERR_TIMEOUT) {
        int sig = s_signal;
        if (st == SL_ERR_CANCELED)
            fprintf(stderr, "sluice submit: interrupted by %s; canceling job %s\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", id);
        else
            fprintf(stderr,
                    "sluice submit: no result for job %s within %d ms (--wait-timeout-ms); "
                    "canceling it\n",
                    id, cfg.client.wait_timeout_ms);
        res = s_cancel_job(client, id, cfg.cancel_wait_ms);
        if (res)
            s_print_result(&cfg, res);
        rc = st == SL_ERR_CANCELED ? S_EXIT_SIGNAL + sig : S_EXIT_FAIL;
        goto out;
    }
    if (st != SL_OK) {
        fprintf(stderr, "sluice submit: %s: %s\n", sl_status_str(st), sl_client_last_error(client));
        goto out;
    }
    s_print_result(&cfg, res);
    if (res->late)
        fprintf(stderr,
                "sluice submit: job %s finished late: %.3f ms after receipt, past its %d ms "
                "deadline\n",
                id, res->timings.end_us / 1e3, cfg.deadline_ms);
    rc = res->status == SL_OK && !res->late ? S_EXIT_OK : S_EXIT_FAIL;
out:
    sl_result_destroy(&res);
    sl_client_destroy(&client);
    free(ids);
    return rc;
}

static int s_cmd_status(int argc, char **argv)
{
    s_status_cfg_t cfg;
    sl_client_cfg_default(&cfg.client); /* what the table leaves out */
    int rc = s_load("status", s_status_table, &cfg, argc, argv, "[options]");
    if (rc >= 0)
        return rc;
    sl_client_t *client = NULL;
    sl_cluster_status_t *st = NULL;
    sl_status_t s = sl_client_create(&cfg.client, &client);
    if (s != SL_OK) {
        fprintf(stderr, "sluice status: cannot create the client: %s\n", sl_status_str(s));
        return S_EXIT_FAIL;
    }
    s = sl_client_status(client, &st);
    if (s != SL_OK) {
        fprintf(stderr, "sluice status: %s: %s\n", sl_status_str(s), sl_client_last_error(client));
        sl_client_destroy(&client);
        return S_EXIT_FAIL;
    }
    printf("scheduler %s: policy %s, queued interactive %u, queued batch %u, in flight %u\n",
           cfg.client.endpoint, st->policy[0] ? st->policy : "-", st->queued_interactive,
           st->queued_batch, st->inflight);
    /* CPU and GPU are measured on the executor's host ("-": not measured
     * there); BUSY is its engine's share of time in steps. */
    /* ALIVE says "quar" for a live executor quarantined for failing its
     * recent jobs (POLICIES.md); COMPLETED counts jobs that ended OK.
     * DATA_PLANE is the size of the KV region the executor registered with
     * its transport engine ("-": no data plane), then the peers it reached
     * over the data plane out of those it checked. KV_MOVED: KV MiB it pushed
     * to peers / that landed in its reservations, reservations now, and
     * notifications it refused (matching no reservation of its own). */
    printf("%-20s %-8s %-5s %9s %7s %6s %10s %15s %5s %5s %5s %13s %8s %10s %8s %16s %s\n",
           "EXECUTOR", "BACKEND", "ALIVE", "INFL/SLOT", "RUNNING", "QUEUED", "QTOKENS",
           "KV USED/FREE", "CPU%", "GPU%", "BUSY%", "GPU_MEM_GIB", "STEP_US", "COMPLETED", "FAILED",
           "DATA_PLANE", "KV_MOVED");
    for (size_t i = 0; i < st->n_executors; i++) {
        const sl_executor_info_t *e = &st->executors[i];
        char infl[32], kv[40], cpu[16] = "-", gpu[16] = "-", mem[40] = "-", dp[48] = "-";
        char moved[96] = "-";
        if (e->data_plane) {
            snprintf(dp, sizeof(dp), "%.1fMiB %u/%u", (double)e->kv_region_bytes / (1 << 20),
                     e->peers_reachable, e->peers_reachable + e->peers_unreachable);
            snprintf(
                moved, sizeof(moved), "%.1f/%.1f res=%u refused=%" PRIu64 " classes=%.1f/%.1f/%.1f",
                (double)e->kv_bytes_sent / (1 << 20), (double)e->kv_bytes_received / (1 << 20),
                e->kv_reservations, e->kv_notifs_refused, (double)e->xport_bytes[0] / (1 << 20),
                (double)e->xport_bytes[1] / (1 << 20), (double)e->xport_bytes[2] / (1 << 20));
        }
        snprintf(infl, sizeof(infl), "%u/%u", e->inflight, e->slots);
        snprintf(kv, sizeof(kv), "%u/%u", e->kv_blocks_used, e->kv_blocks_free);
        if (e->has_cpu_util)
            snprintf(cpu, sizeof(cpu), "%.0f", e->cpu_util * 100.0);
        if (e->has_gpu_util)
            snprintf(gpu, sizeof(gpu), "%.0f", e->gpu_util * 100.0);
        if (e->has_gpu_mem)
            snprintf(mem, sizeof(mem), "%.1f/%.1f", (double)e->gpu_mem_used / (1 << 30),
                     (double)e->gpu_mem_total / (1 << 30));
        printf("%-20s %-8s %-5s %9s %7u %6u %10" PRIu64 " %15s %5s %5s %5.0f %13s %8u %10" PRIu64
               " %8" PRIu64 " %16s %s\n",
               e->name, e->backend[0] ? e->backend : "-",
               !e->alive        ? "no"
               : e->quarantined ? "quar"
                                : "yes",
               infl, e->running_jobs, e->queued_jobs, e->queued_tokens, kv, cpu, gpu,
               e->busy * 100.0, mem, e->step_time_us, e->completed, e->failed, dp, moved);
    }
    if (st->n_executors == 0)
        printf("(no executors)\n");
    if (st->n_counters)
        printf("counters:\n");
    for (size_t i = 0; i < st->n_counters; i++)
        printf("  %-32s %" PRIu64 "\n", st->counters[i].name, st->counters[i].value);
    sl_cluster_status_destroy(&st);
    sl_client_destroy(&client);
    return S_EXIT_OK;
}

typedef struct s_keygen_cfg {
    char name[64]; /* the pair's file name */
} s_keygen_cfg_t;

static const sl_cfg_field_t s_keygen_table[] = {
    SL_CFG_FIELD(s_keygen_cfg_t, name, "name", "", SL_CFG_STR,
                 "NAME of DIR/NAME.key and DIR/NAME.pub (empty: this host's name, else sluice)"),
    SL_CFG_END,
};

/* `sluice keygen DIR`: the public key goes to stdout, for an allow-list line. */
static int s_cmd_keygen(int argc, char **argv)
{
    s_keygen_cfg_t cfg;
    char pub[SL_AUTH_KEY_LEN + 1];
    int first = argc;
    argv[0] = "sluice keygen";
    sl_status_t st = sl_cfg_load(s_keygen_table, &cfg, argc, argv, "DIR [options]", &first);
    if (st == SL_ERR_CANCELED)
        return S_EXIT_OK;
    if (st != SL_OK)
        return S_EXIT_USAGE;
    if (first != argc - 1) {
        fprintf(stderr, "sluice keygen: give one key directory (see sluice keygen --help)\n");
        return S_EXIT_USAGE;
    }
    if (!cfg.name[0]) {
        char host[64] = "";
        if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
            snprintf(host, sizeof(host), "sluice");
        host[strcspn(host, ".")] = '\0'; /* the short name */
        snprintf(cfg.name, sizeof(cfg.name), "%s", host);
    }
    st = sl_auth_keygen(argv[first], cfg.name, pub);
    if (st != SL_OK)
        return st == SL_ERR_INVALID ? S_EXIT_USAGE : S_EXIT_FAIL; /* the cause is logged */
    fprintf(stderr, "sluice keygen: wrote %s/%s.key (secret, 0600) and %s/%s.pub\n", argv[first],
            cfg.name, argv[first], cfg.name);
    printf("%s\n", pub);
    return S_EXIT_OK;
}

int main(int argc, char **argv)
{
    sl_log_set_component("sluice");
    if (argc < 2) {
        s_usage(stderr);
        return S_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        s_usage(stdout);
        return S_EXIT_OK;
    }
    if (!strcmp(argv[1], "submit"))
        return s_cmd_submit(argc - 1, argv + 1);
    if (!strcmp(argv[1], "status"))
        return s_cmd_status(argc - 1, argv + 1);
    if (!strcmp(argv[1], "keygen"))
        return s_cmd_keygen(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n", argv[1]);
    s_usage(stderr);
    return S_EXIT_USAGE;
}
