/*
 * sluice-bench loadgen: open-loop replay of a request trace against a
 * running scheduler.
 *
 * Open loop: each request is sent at its scheduled time whatever is still
 * outstanding, because a closed loop (send the next when one completes)
 * slows down exactly when the system does and so hides the queueing it is
 * meant to measure. One asynchronous client carries every job; the wait
 * between sends is spent in sl_client_poll(), so completions are recorded
 * while the schedule advances. The in-flight cap (--max-inflight) exists
 * only to bound memory; when it is reached the send is late and counted.
 *
 * Reported: throughput, client-measured latency (send to Result; first
 * TokenChunk when --stream), the scheduler's own timings, BUSY answers and
 * errors, goodput, then one RESULT line. A latency with no sample (no job
 * completed; no --stream) is printed as "-", never as 0. Exit status 1 when
 * a job failed: the backend failed it, it timed out or was left unfinished,
 * or (with --busy retry) it was refused for good; a job that expired on its
 * deadline, or was dropped after BUSY with --busy drop, is an outcome of the
 * load being measured and leaves the status 0.
 *
 * Goodput is the policy lab's (POLICIES.md): requests of the slice per
 * second of its span that completed within both SLOs, TTFT at most
 * --slo-ttft-mult x the prompt's unloaded TTFT on an empty sim executor (at
 * least --slo-ttft-floor-ms) and mean time per output token at most
 * --slo-tpot-ms; a refused or failed request counts against it. The TTFT is
 * the scheduler's (receipt to first token), as in the simulator. Against
 * sim executors running at --sim-speed S, --slo-speed S divides every SLO
 * time by S, so a run compressed S times is judged as the uncompressed one.
 *
 * Rejected: one thread per in-flight request (thousands of threads and
 * sockets, and the client is one-thread-per-object by design); a sender and
 * a receiver thread (two sockets and two identities, so results would have
 * to be matched across threads for no gain at these rates).
 */
#include <sluice/client.h>

#include "bench/bench.h"
#include "bench/sl_trace.h"
#include "client/sl_client_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "executor/sl_sim_cfg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SLUICE_TRACE_DIR
#define SLUICE_TRACE_DIR "data/traces"
#endif

typedef struct s_lg_cfg {
    sl_client_cfg_t client;         /* library knobs (endpoint, retries, max-inflight, ...) */
    char trace[SL_CFG_STR_MAX];     /* trace name or file */
    char trace_dir[SL_CFG_STR_MAX]; /* folder of the named traces */
    double start_s;                 /* slice start in trace time */
    double duration_s;              /* slice length in trace time (0 = to the end) */
    int count;                      /* requests to send (0 = all in the slice) */
    double speedup;                 /* time compression of the trace */
    double rate;                    /* target mean rate, requests/s (0 = the trace's) */
    bool poisson;                   /* Poisson arrivals at --rate, lengths from the trace */
    int64_t trace_seed;             /* seed of the Poisson draws and the priority mix */
    int max_new_tokens_cap;         /* cap on max_new_tokens (output_length) */
    int prompt_cap;                 /* cap on the prompt length */
    char priority[SL_CFG_STR_MAX];  /* interactive, batch or mix */
    double batch_fraction;          /* share of batch jobs under mix */
    char tenant[SL_CFG_STR_MAX];    /* tenant of every job */
    char model[SL_CFG_STR_MAX];     /* model of every job */
    char busy[SL_CFG_STR_MAX];      /* retry (client backoff) or drop */
    bool stream;                    /* ask for TokenChunks (client-side TTFT) */
    int ttft_deadline_ms;           /* per-job first-token budget */
    bool slo_deadline;              /* each job's TTFT SLO as its first-token budget */
    double slo_ttft_mult;           /* TTFT SLO: this x the unloaded TTFT ... */
    int slo_ttft_floor_ms;          /* ... at least this */
    int slo_tpot_ms;                /* mean time per output token SLO */
    double slo_speed;               /* every SLO time divided by this (sim executors' speed) */
    int deadline_ms;                /* per-job budget */
    int progress_ms;                /* progress line interval */
    char label[SL_CFG_STR_MAX];     /* prefix of the progress line */
    int drain_timeout_ms;           /* wait for outstanding results after the last send */
    char id_prefix[SL_CFG_STR_MAX]; /* job id prefix (default: lg-PID-TIME-) */
} s_lg_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CLIENT_CFG_ROWS(s_lg_cfg_t, client, "0"),
    SL_CFG_FIELD(s_lg_cfg_t, trace, "trace", "mooncake-conversation", SL_CFG_STR,
                 "mooncake-conversation, mooncake-synthetic, azure-code, azure-conv or a file"),
    SL_CFG_FIELD(s_lg_cfg_t, trace_dir, "trace-dir", SLUICE_TRACE_DIR, SL_CFG_STR,
                 "folder of the named traces"),
    SL_CFG_RANGE(s_lg_cfg_t, start_s, "start-s", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "skip the trace before this offset (trace seconds)"),
    SL_CFG_RANGE(s_lg_cfg_t, duration_s, "duration-s", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "replay this span of the trace (trace seconds; 0 = to the end)"),
    SL_CFG_RANGE(s_lg_cfg_t, count, "count", "0", SL_CFG_INT, 0, 100000000,
                 "requests to send (0 = every request of the slice)"),
    SL_CFG_RANGE(s_lg_cfg_t, speedup, "speedup", "1", SL_CFG_DOUBLE, 1e-6, 1e9,
                 "replay this many times faster than the trace"),
    SL_CFG_RANGE(s_lg_cfg_t, rate, "rate", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "rescale arrivals to this mean rate in requests/s (0 = keep)"),
    SL_CFG_FIELD(s_lg_cfg_t, poisson, "poisson", "false", SL_CFG_BOOL,
                 "Poisson arrivals at --rate with lengths drawn from the trace"),
    SL_CFG_FIELD(s_lg_cfg_t, trace_seed, "trace-seed", "1", SL_CFG_I64,
                 "seed of Poisson arrivals and the priority mix"),
    SL_CFG_RANGE(s_lg_cfg_t, max_new_tokens_cap, "max-new-tokens-cap", "4096", SL_CFG_INT, 1, 65536,
                 "cap on max_new_tokens (the trace's output length)"),
    SL_CFG_RANGE(s_lg_cfg_t, prompt_cap, "prompt-cap", "1048576", SL_CFG_INT, 1, 1048576,
                 "cap on the prompt length"),
    SL_CFG_FIELD(s_lg_cfg_t, priority, "priority", "interactive", SL_CFG_STR,
                 "interactive, batch or mix"),
    SL_CFG_RANGE(s_lg_cfg_t, batch_fraction, "batch-fraction", "0.5", SL_CFG_DOUBLE, 0, 1,
                 "share of batch jobs when --priority=mix"),
    SL_CFG_FIELD(s_lg_cfg_t, tenant, "tenant", "loadgen", SL_CFG_STR, "tenant of every job"),
    SL_CFG_FIELD(s_lg_cfg_t, model, "model", "", SL_CFG_STR, "model of every job"),
    SL_CFG_FIELD(s_lg_cfg_t, busy, "busy", "retry", SL_CFG_STR,
                 "on BUSY: retry (client backoff, --retries) or drop"),
    SL_CFG_FIELD(s_lg_cfg_t, stream, "stream", "false", SL_CFG_BOOL,
                 "request token streaming (measures time to first token at the client)"),
    SL_CFG_RANGE(s_lg_cfg_t, ttft_deadline_ms, "ttft-deadline-ms", "0", SL_CFG_INT, 0, 86400000,
                 "first-token budget of every job (0 = none)"),
    SL_CFG_FIELD(s_lg_cfg_t, slo_deadline, "slo-deadline", "false", SL_CFG_BOOL,
                 "give each job its TTFT SLO as first-token budget (admission's deadline check)"),
    SL_CFG_RANGE(s_lg_cfg_t, slo_ttft_mult, "slo-ttft-mult", "3", SL_CFG_DOUBLE, 0, 1e6,
                 "goodput's TTFT SLO: this x the prompt's unloaded TTFT on a sim executor"),
    SL_CFG_RANGE(s_lg_cfg_t, slo_ttft_floor_ms, "slo-ttft-floor-ms", "1000", SL_CFG_INT, 0,
                 86400000, "... and at least this"),
    SL_CFG_RANGE(s_lg_cfg_t, slo_tpot_ms, "slo-tpot-ms", "100", SL_CFG_INT, 0, 86400000,
                 "goodput's SLO on the mean time per output token"),
    SL_CFG_RANGE(s_lg_cfg_t, slo_speed, "slo-speed", "1", SL_CFG_DOUBLE, 0.001, 1000,
                 "divide every SLO time by this (the sim executors' --sim-speed)"),
    SL_CFG_RANGE(s_lg_cfg_t, deadline_ms, "deadline-ms", "0", SL_CFG_INT, 0, 86400000,
                 "whole-job budget of every job (0 = none)"),
    SL_CFG_RANGE(s_lg_cfg_t, progress_ms, "progress-ms", "1000", SL_CFG_INT, 10, 3600000,
                 "interval of the progress line on stderr"),
    SL_CFG_FIELD(s_lg_cfg_t, label, "label", "", SL_CFG_STR,
                 "prefix of the progress line (names the run when several share a screen)"),
    SL_CFG_RANGE(s_lg_cfg_t, drain_timeout_ms, "drain-timeout-ms", "60000", SL_CFG_INT, 0, 86400000,
                 "wait this long for outstanding results after the last send"),
    SL_CFG_FIELD(s_lg_cfg_t, id_prefix, "id-prefix", "", SL_CFG_STR,
                 "prefix of job ids (default lg-PID-TIME-)"),
    SL_CFG_END,
};

/* Everything measured in one run. */
typedef struct s_lg_stats {
    uint64_t sent;        /* jobs submitted */
    uint64_t done;        /* completed with RESULT_OK */
    uint64_t dropped;     /* given up after BUSY (drop mode, or retries exhausted) */
    uint64_t errors;      /* other failures: job failed, expired, timed out, submit errors */
    uint64_t expired;     /* of the errors: jobs whose deadline passed (RESULT_EXPIRED) */
    uint64_t late;        /* sends delayed by the in-flight cap */
    uint64_t unfinished;  /* still pending when the drain timeout ended the run */
    uint64_t out_tokens;  /* output tokens of completed jobs */
    uint64_t slo_met;     /* completed within both SLOs */
    sl_hist_t e2e;        /* client: first send -> Result, us */
    sl_hist_t ttft_c;     /* client: first send -> first TokenChunk, us (stream only) */
    sl_hist_t ttft_s;     /* scheduler: receipt -> first token, us */
    sl_hist_t end_s;      /* scheduler: receipt -> last token, us */
    sl_hist_t queued_s;   /* scheduler: receipt -> dispatch, us */
    sl_time_t first_send; /* time of the first send */
    sl_time_t last_done;  /* time of the last completion */
} s_lg_stats_t;

/* The TTFT SLO of a prompt, us (see the top of the file). */
static uint64_t s_slo_ttft_us(const s_lg_cfg_t *cfg, const sl_sim_cfg_t *model, uint32_t prompt)
{
    double us = cfg->slo_ttft_mult * sl_sim_cfg_unloaded_ttft(model, prompt) * 1e6;
    double floor_us = cfg->slo_ttft_floor_ms * 1e3 / cfg->slo_speed;
    return (uint64_t)(us > floor_us ? us : floor_us);
}

/* r->user carries the job's TTFT SLO in us. */
static void s_record(s_lg_stats_t *s, sl_result_t *r, bool drop_mode, uint64_t slo_tpot_us)
{
    s->last_done = r->end_ns;
    if (r->status == SL_OK) {
        s->done++;
        s->out_tokens += r->n_tokens;
        uint64_t ttft = r->timings.ttft_us, end = r->timings.end_us;
        uint64_t tpot = r->n_tokens > 1 && end > ttft ? (end - ttft) / (r->n_tokens - 1) : 0;
        if (ttft <= (uint64_t)(uintptr_t)r->user && tpot <= slo_tpot_us)
            s->slo_met++;
        sl_hist_record(&s->e2e, (uint64_t)(r->end_ns - r->submit_ns) / 1000);
        if (r->first_token_ns)
            sl_hist_record(&s->ttft_c, (uint64_t)(r->first_token_ns - r->submit_ns) / 1000);
        sl_hist_record(&s->ttft_s, r->timings.ttft_us);
        sl_hist_record(&s->end_s, r->timings.end_us);
        sl_hist_record(&s->queued_s, r->timings.queued_us);
    } else if (r->status == SL_ERR_BUSY || r->status == SL_ERR_RETRIES) {
        s->dropped++;
        if (!drop_mode)
            s->errors++;
    } else {
        s->errors++;
        if (r->status == SL_ERR_DEADLINE)
            s->expired++;
        if (s->errors <= 5)
            SL_WARN("loadgen: job %s: %s%s%s", r->job_id, sl_status_str(r->status),
                    r->error[0] ? ": " : "", r->error);
    }
}

static void s_progress(const char *label, const s_lg_stats_t *s, const sl_client_stats_t *cs,
                       size_t pending, sl_time_t t0, sl_time_t now, uint64_t *prev_sent,
                       sl_time_t *prev_t)
{
    double dt = (double)(now - *prev_t) / 1e9;
    double rate = dt > 0 ? (double)(s->sent - *prev_sent) / dt : 0;
    /* On a terminal the line is rewritten in place; in a log each report is its own line. */
    bool tty = isatty(STDERR_FILENO);
    fprintf(stderr,
            "%s%s%s[%7.1fs] sent=%" PRIu64 " done=%" PRIu64 " busy=%" PRIu64 " errors=%" PRIu64
            " inflight=%zu rate=%.1f/s%s",
            tty ? "\r" : "", label, label[0] ? " " : "", (double)(now - t0) / 1e9, s->sent, s->done,
            cs->busy, s->errors, pending, rate, tty ? "\033[K" : "\n");
    *prev_sent = s->sent;
    *prev_t = now;
}

/* Quantile q of h in ms into buf, or "-" when h has no sample. */
static const char *s_q_ms(const sl_hist_t *h, double q, char *buf, size_t cap)
{
    if (h->count == 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.3f", sl_hist_quantile(h, q) / 1e3);
    return buf;
}

static void s_row(const char *what, const sl_hist_t *h)
{
    if (h->count == 0) {
        printf("  %-22s %10s\n", what, "-");
        return;
    }
    printf("  %-22s %10.3f %10.3f %10.3f %10.3f %10.3f %8" PRIu64 "\n", what,
           sl_hist_quantile(h, 0.5) / 1e3, sl_hist_quantile(h, 0.9) / 1e3,
           sl_hist_quantile(h, 0.99) / 1e3, (double)h->max / 1e3, sl_hist_mean(h) / 1e3, h->count);
}

int sl_bench_loadgen_main(int argc, char **argv)
{
    s_lg_cfg_t cfg;
    sl_status_t st;
    int early = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (early >= 0)
        return early;
    int prio_mode; /* 0 interactive, 1 batch, 2 mix */
    if (!strcmp(cfg.priority, "interactive"))
        prio_mode = 0;
    else if (!strcmp(cfg.priority, "batch"))
        prio_mode = 1;
    else if (!strcmp(cfg.priority, "mix"))
        prio_mode = 2;
    else {
        fprintf(stderr, "sluice-bench loadgen: --priority must be interactive, batch or mix\n");
        return 2;
    }
    bool drop_mode;
    if (!strcmp(cfg.busy, "drop"))
        drop_mode = true;
    else if (!strcmp(cfg.busy, "retry"))
        drop_mode = false;
    else {
        fprintf(stderr, "sluice-bench loadgen: --busy must be retry or drop\n");
        return 2;
    }
    if (cfg.poisson && !(cfg.rate > 0)) {
        fprintf(stderr, "sluice-bench loadgen: --poisson needs --rate\n");
        return 2;
    }
    if (cfg.slo_deadline && cfg.ttft_deadline_ms > 0) {
        fprintf(stderr, "sluice-bench loadgen: --slo-deadline and --ttft-deadline-ms exclude each "
                        "other\n");
        return 2;
    }
    if (drop_mode)
        cfg.client.backoff.max_retries = 0;
    sl_sim_cfg_t slo_model; /* the unloaded TTFT of the SLO: the sim backend's defaults */
    sl_cfg_defaults(sl_sim_cfg_fields, &slo_model);
    slo_model.speed = cfg.slo_speed;
    uint64_t slo_tpot_us = (uint64_t)(cfg.slo_tpot_ms * 1e3 / cfg.slo_speed);
    if (!cfg.id_prefix[0])
        snprintf(cfg.id_prefix, sizeof(cfg.id_prefix), "lg-%d-%lld-", (int)getpid(),
                 (long long)(sl_clock_wall() / SL_NS_PER_MS));

    int rc = 1;
    sl_trace_t *trace = NULL, *sched = NULL;
    sl_client_t *client = NULL;
    s_lg_stats_t *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;
    sl_hist_init(&s->e2e);
    sl_hist_init(&s->ttft_c);
    sl_hist_init(&s->ttft_s);
    sl_hist_init(&s->end_s);
    sl_hist_init(&s->queued_s);

    char msg[512];
    if (sl_trace_name_check(cfg.trace, msg, sizeof(msg)) != SL_OK) {
        fprintf(stderr, "sluice-bench loadgen: --trace: %s\n", msg);
        rc = 2;
        goto out;
    }
    if (sl_trace_load(cfg.trace, cfg.trace_dir, SL_TRACE_AUTO, &trace) != SL_OK)
        goto out;
    sl_trace_opts_t o = {
        .start_s = cfg.start_s,
        .duration_s = cfg.duration_s,
        .count = (size_t)cfg.count,
        .speedup = cfg.speedup,
        .rate = cfg.rate,
        .poisson = cfg.poisson,
        .seed = (uint64_t)cfg.trace_seed,
    };
    if (sl_trace_schedule(trace, &o, &sched) != SL_OK)
        goto out;
    if (sched->n == 0) {
        fprintf(stderr, "sluice-bench loadgen: the slice of %s holds no request\n", trace->name);
        goto out;
    }
    double span_s = (double)sched->reqs[sched->n - 1].t_us / 1e6;
    printf("loadgen: %s: %zu requests (%zu malformed lines skipped); replaying %zu over %.1f s "
           "(%.1f requests/s) against %s\n",
           trace->name, trace->n, trace->malformed, sched->n, span_s, sl_trace_rate(sched),
           cfg.client.endpoint);
    fflush(stdout);
    if ((st = sl_client_create(&cfg.client, &client)) != SL_OK) {
        fprintf(stderr, "sluice-bench loadgen: cannot create the client: %s\n", sl_status_str(st));
        goto out;
    }

    sl_rand_t rng;
    sl_rand_seed(&rng, (uint64_t)cfg.trace_seed ^ 0x5ca1ab1eull);
    sl_client_stats_t cs = {0};
    sl_time_t t0 = sl_clock_now(), next_progress = t0 + SL_MS(cfg.progress_ms);
    sl_time_t prev_t = t0, last_send = t0;
    uint64_t prev_sent = 0;
    size_t next = 0;
    s->first_send = t0;
    for (;;) {
        sl_time_t now = sl_clock_now();
        while (next < sched->n && t0 + SL_US(sched->reqs[next].t_us) <= now) {
            const sl_trace_req_t *q = &sched->reqs[next];
            char id[SL_CFG_STR_MAX + 32];
            snprintf(id, sizeof(id), "%s%zu", cfg.id_prefix, next);
            uint32_t len =
                q->input_len < (uint32_t)cfg.prompt_cap ? q->input_len : (uint32_t)cfg.prompt_cap;
            uint32_t blocks =
                sched->block_tokens ? (len + sched->block_tokens - 1) / sched->block_tokens : 0;
            uint32_t out = q->output_len < 1 ? 1 : q->output_len;
            if (out > (uint32_t)cfg.max_new_tokens_cap)
                out = (uint32_t)cfg.max_new_tokens_cap;
            bool batch =
                prio_mode == 1 || (prio_mode == 2 && sl_rand_double(&rng) < cfg.batch_fraction);
            uint64_t slo_us = s_slo_ttft_us(&cfg, &slo_model, len);
            uint32_t ttft_budget_ms = (uint32_t)cfg.ttft_deadline_ms;
            if (cfg.slo_deadline)
                ttft_budget_ms = (uint32_t)((slo_us + 999) / 1000);
            sl_job_spec_t job = {
                .id = id,
                .tenant = cfg.tenant,
                .model = cfg.model,
                .priority = batch ? SL_CLIENT_BATCH : SL_CLIENT_INTERACTIVE,
                .prompt_length = len,
                .block_hashes = q->hashes,
                .n_block_hashes = q->n_hashes < blocks ? q->n_hashes : blocks,
                .block_tokens = sched->block_tokens,
                .max_new_tokens = out,
                .ttft_deadline_ms = ttft_budget_ms,
                .deadline_ms = (uint32_t)cfg.deadline_ms,
                .stream = cfg.stream,
                .user = (void *)(uintptr_t)slo_us,
            };
            st = sl_client_submit_async(client, &job);
            if (st == SL_ERR_AGAIN) {
                s->late++;
                break; /* at the in-flight cap: completions first */
            }
            if (st != SL_OK) {
                s->errors++;
                if (s->errors <= 5)
                    SL_WARN("loadgen: submit %s: %s", id, sl_client_last_error(client));
            } else {
                s->sent++;
            }
            last_send = now;
            next++;
        }
        sl_result_t *r = NULL;
        while (sl_client_poll(client, 0, &r) == SL_OK) {
            s_record(s, r, drop_mode, slo_tpot_us);
            sl_result_destroy(&r);
        }
        now = sl_clock_now();
        if (now >= next_progress) {
            sl_client_stats(client, &cs);
            s_progress(cfg.label, s, &cs, sl_client_pending(client), t0, now, &prev_sent, &prev_t);
            next_progress = now + SL_MS(cfg.progress_ms);
        }
        size_t pending = sl_client_pending(client);
        if (next >= sched->n && pending == 0)
            break;
        if (next >= sched->n && now - last_send > SL_MS(cfg.drain_timeout_ms)) {
            s->unfinished = pending;
            s->errors += pending;
            fprintf(stderr, "sluice-bench loadgen: %zu jobs unfinished after the drain timeout\n",
                    pending);
            break;
        }
        sl_time_t until = next_progress;
        if (next < sched->n && t0 + SL_US(sched->reqs[next].t_us) < until)
            until = t0 + SL_US(sched->reqs[next].t_us);
        if (next >= sched->n && last_send + SL_MS(cfg.drain_timeout_ms) < until)
            until = last_send + SL_MS(cfg.drain_timeout_ms);
        int wait_ms = until <= now ? 0 : (int)((until - now) / SL_NS_PER_MS);
        st = sl_client_poll(client, wait_ms, &r);
        if (st == SL_OK) {
            s_record(s, r, drop_mode, slo_tpot_us);
            sl_result_destroy(&r);
        } else if (st != SL_ERR_TIMEOUT) {
            fprintf(stderr, "sluice-bench loadgen: %s\n", sl_client_last_error(client));
            break;
        }
    }
    sl_client_stats(client, &cs);
    /* The last report shows the final counts (on a terminal it stays on screen). */
    s_progress(cfg.label, s, &cs, sl_client_pending(client), t0, sl_clock_now(), &prev_sent,
               &prev_t);
    if (isatty(STDERR_FILENO))
        fputc('\n', stderr);
    double wall =
        (double)((s->last_done > s->first_send ? s->last_done : sl_clock_now()) - s->first_send) /
        1e9;
    double tput = wall > 0 ? (double)s->done / wall : 0;
    printf("sent %" PRIu64 ", done %" PRIu64 ", BUSY answers %" PRIu64
           ", dropped after BUSY %" PRIu64 ", errors %" PRIu64 " (unfinished %" PRIu64
           "), late sends %" PRIu64 ", resends %" PRIu64 "\n",
           s->sent, s->done, cs.busy, s->dropped, s->errors, s->unfinished, s->late, cs.resends);
    printf("throughput %.1f jobs/s, %.1f output tokens/s over %.2f s (first send to last "
           "completion)\n",
           tput, wall > 0 ? (double)s->out_tokens / wall : 0.0, wall);
    printf("  %-22s %10s %10s %10s %10s %10s %8s\n", "latency (ms)", "p50", "p90", "p99", "max",
           "mean", "count");
    s_row("e2e (client)", &s->e2e);
    s_row("ttft (client, stream)", &s->ttft_c);
    s_row("ttft (scheduler)", &s->ttft_s);
    s_row("end (scheduler)", &s->end_s);
    s_row("queued (scheduler)", &s->queued_s);
    /* Goodput over the span of the slice's arrivals, as the simulator counts it. */
    double arrivals_s = (double)(sched->reqs[sched->n - 1].t_us - sched->reqs[0].t_us) / 1e6;
    if (arrivals_s <= 0)
        arrivals_s = 1.0;
    double goodput = (double)s->slo_met / arrivals_s;
    printf("goodput %.2f jobs/s: %" PRIu64 " of %zu requests met both SLOs (TTFT <= %.1f x "
           "unloaded, at least %.0f ms; TPOT <= %.1f ms)\n",
           goodput, s->slo_met, sched->n, cfg.slo_ttft_mult, cfg.slo_ttft_floor_ms / cfg.slo_speed,
           (double)slo_tpot_us / 1e3);
    const sl_hist_t *ttft = s->ttft_c.count ? &s->ttft_c : &s->ttft_s;
    char q[4][32];
    printf("RESULT sent=%" PRIu64 " done=%" PRIu64 " busy=%" PRIu64 " errors=%" PRIu64
           " throughput=%.1f tokens_per_s=%.1f wall_s=%.2f ttft_p50_ms=%s ttft_p99_ms=%s"
           " e2e_p50_ms=%s e2e_p99_ms=%s slo_met=%" PRIu64 " goodput=%.3f\n",
           s->sent, s->done, cs.busy, s->errors, tput,
           wall > 0 ? (double)s->out_tokens / wall : 0.0, wall,
           s_q_ms(ttft, 0.5, q[0], sizeof(q[0])), s_q_ms(ttft, 0.99, q[1], sizeof(q[1])),
           s_q_ms(&s->e2e, 0.5, q[2], sizeof(q[2])), s_q_ms(&s->e2e, 0.99, q[3], sizeof(q[3])),
           s->slo_met, goodput);
    uint64_t failed = s->errors - s->expired;
    if (failed > 0)
        fprintf(stderr, "sluice-bench loadgen: %" PRIu64 " of %" PRIu64 " jobs failed\n", failed,
                s->sent);
    rc = failed > 0 ? 1 : 0;
out:
    sl_client_destroy(&client);
    sl_trace_destroy(&sched);
    sl_trace_destroy(&trace);
    free(s);
    return rc;
}
