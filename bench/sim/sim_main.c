/*
 * sluice-sim: the policy lab.
 *   sluice-sim run      one policy at one load; prints its figures
 *   sluice-sim compare  every policy over a sweep of offered loads; CSV,
 *                       gnuplot plots and a RESULT line comparing `learned`
 *                       with the best baseline and with round-robin
 *   sluice-sim speed    simulated requests per wall-clock minute on a large
 *                       cluster, and the learned policy's cost per decision
 *   sluice-sim disagg   aggregated serving against disaggregated prefill and
 *                       decode (fixed ratios, conditional), with migration,
 *                       at the load where aggregated serving reaches its
 *                       limit; a table and a RESULT line
 * Results depend only on the options and the seed (virtual clock); only the
 * speed figures read the wall clock. The options are one configuration
 * table (common/sl_cfg.h), so they are also SLUICE_* variables and are
 * checked as the daemons' are (ranges, text lengths); getopt was dropped
 * because it cut long values silently and took any number as 0.
 *
 * compare measures each policy's capacity: the highest offered load at
 * which it still meets 90% of its SLOs (found by extending the sweep until
 * it brackets every policy's knee, then bisecting), which is goodput as
 * DistServe states it (the highest request rate served with 90% of
 * requests within their SLOs), and compares those. The requests served
 * within SLOs per second at each capacity are compared too
 * (served_at_capacity_vs_best): on a cluster-bound trace both policies
 * serve about what the cluster can, whatever load each can take. Comparing every policy at one
 * shared load (the best baseline's limit) was the first design and is still printed
 * (goodput_at_load_vs_best): there a policy can at most be 1 / 0.9 times
 * the baseline, since the baseline still meets 90%, so it cannot show a
 * policy that carries much more load. The TTFT tails, distributions and
 * the model's error are taken at the best baseline's capacity, where the
 * baselines are still usable. A sweep that cannot bracket the knees is
 * warned about, not silently used.
 *
 * compare writes into --out or else a fresh mkdtemp folder (printed), never
 * the working directory: tidy CSVs with a header row (one row per policy
 * and load) and self-contained gnuplot scripts that name their files
 * relative to the folder, drawn when gnuplot is installed. Each policy has
 * its own colour, dash pattern and point type, and the legend marks the
 * policies that ran with admission. gnuplot runs by fork/exec, not
 * system() (sl_sim_plot.c), so no folder name is ever quoted into a shell
 * command.
 */
#include "bench/sim/sim_matrix.h"
#include "bench/sim/sl_sim.h"
#include "bench/sim/sl_sim_out.h"
#include "bench/sim/sl_sim_plot.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy_registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SLUICE_TRACE_DIR
#define SLUICE_TRACE_DIR "data/traces"
#endif

#define S_MAX_LIST 64
#define S_REFINE                                                                                   \
    4 /* compare: bisection steps toward each policy's capacity (1/16 of a grid step) */
#define S_POLICY_MAX 64 /* bytes of a policy name, with the NUL */

#define S_SLO_TARGET 0.9 /* compare: a policy is usable while it meets this share of its SLOs */
#define S_GROW 1.5       /* compare: ratio of each load the sweep adds above its top */
#define S_GROW_MAX 24    /* compare: loads the sweep may add at either end */
#define S_LOAD_MIN 1e-3  /* compare: the sweep adds no load below this, req/s */
/* compare: halvings of the lowest load at most (a policy that fails below a
 * sixteenth of it has no capacity worth finding) */
#define S_DOWN_MAX 4

typedef struct s_opts {
    char trace[512];                         /* trace name or path */
    char trace_dir[512];                     /* folder of the named traces */
    int executors;                           /* cluster size */
    int64_t requests;                        /* requests taken from the trace (0 = all) */
    double rate;                             /* run: offered load, req/s (0 = the trace's own) */
    double speedup;                          /* run: time scaling instead of a rate */
    bool poisson;                            /* Poisson arrivals at rate */
    char loads_list[1024];                   /* compare: offered loads as given ("" = built in) */
    char policies_list[1024];                /* compare: policies as given */
    char policy[S_POLICY_MAX];               /* run: policy */
    char speeds_list[1024];                  /* executor speeds as given */
    bool no_admission;                       /* learned runs without admission */
    bool admission_all;                      /* baselines with admission too */
    double slo_mult;                         /* TTFT SLO multiple */
    double slo_floor;                        /* TTFT SLO floor, s */
    double slo_tpot;                         /* TPOT SLO, s */
    double fail_at;                          /* failures at, s */
    int fail_count;                          /* executors failing */
    int64_t seed;                            /* seed */
    double batch_share;                      /* share of requests of priority batch */
    double explore_share;                    /* learned's exploration budget (-1 = default) */
    int run_steps;                           /* engines' decode steps per wake-up at most */
    char out[512];                           /* compare: output folder ("" = a fresh one) */
    bool plot;                               /* compare: run gnuplot on the scripts */
    double loads[S_MAX_LIST];                /* compare: loads_list parsed */
    int n_loads;                             /* entries of loads */
    char policies[S_MAX_LIST][S_POLICY_MAX]; /* compare: policies_list parsed */
    int n_policies;                          /* entries of policies */
    double speeds[S_MAX_LIST];               /* speeds_list parsed, cycled over the cluster */
    int n_speeds;                            /* entries of speeds */
    int prefill;                             /* executors of role prefill */
    int decode;                              /* executors of role decode */
    bool kv_split;                           /* conditional disaggregation in the core */
    char kv_rebalance[8];                    /* "on" or "off": moves of running jobs */
    bool kv_fetch;                           /* prefix fetch from a peer in the core */
    int kv_block_tokens;                     /* tokens per KV block (0 = per command) */
    double kv_bytes_per_token;               /* KV bytes of one token */
    double link_gbps;                        /* link bandwidth per executor */
    double link_latency_us;                  /* link latency */
    double bg_share;                         /* background share of a link */
    bool bg_traffic;                         /* background traffic on */
    int64_t kv_move_timeout_ms;              /* the core's split and move timeout */
    double load;                             /* disagg: offered load (0 = found) */
    bool quick;                              /* disagg: a small run for tests */
    char ratios_list[256];                   /* disagg: prefill:decode ratios as given */
    int ratios[S_MAX_LIST][2];               /* ratios_list parsed */
    int n_ratios;                            /* entries of ratios */
} s_opts_t;

/* The knobs of every command. executors and requests default per command
 * (s_table_for); the rows here hold run's. */
/* clang-format off */
static const sl_cfg_field_t s_table[] = {
    SL_CFG_FIELD(s_opts_t, trace, "trace", "mooncake-conversation", SL_CFG_STR,
                 "mooncake-conversation, mooncake-synthetic, azure-code, azure-conv or a file"),
    SL_CFG_FIELD(s_opts_t, trace_dir, "trace-dir", SLUICE_TRACE_DIR, SL_CFG_STR,
                 "folder of the named traces"),
    SL_CFG_RANGE(s_opts_t, executors, "executors", "16", SL_CFG_INT, 1, SL_SIM_MAX_EXECS,
                 "cluster size"),
    SL_CFG_RANGE(s_opts_t, requests, "requests", "0", SL_CFG_I64, 0, 1e12,
                 "requests taken from the trace (0 = all; speed: 2 minutes at the rate)"),
    SL_CFG_RANGE(s_opts_t, rate, "rate", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "run/speed: offered load in req/s (0 = the trace's own)"),
    SL_CFG_RANGE(s_opts_t, speedup, "speedup", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "run: divide trace time by this instead of a rate (0 = off)"),
    SL_CFG_FIELD(s_opts_t, poisson, "poisson", "false", SL_CFG_BOOL,
                 "Poisson arrivals at --rate (lengths drawn from the trace)"),
    SL_CFG_FIELD(s_opts_t, loads_list, "loads", "", SL_CFG_STR,
                 "compare: offered loads in req/s, comma-separated (default 4,6,8,10,12,14,16,20)"),
    SL_CFG_FIELD(s_opts_t, policies_list, "policies", SL_POLICY_NAMES_CSV, SL_CFG_STR,
                 "compare: policies, comma-separated"),
    SL_CFG_FIELD(s_opts_t, policy, "policy", "learned", SL_CFG_STR, "run/speed: policy"),
    /* A mixed fleet by default: half the executors of an older generation at
     * half the speed (hybrid clouds and long-lived clusters look like this). */
    SL_CFG_FIELD(s_opts_t, speeds_list, "speeds", "1,1,0.5,0.5", SL_CFG_STR,
                 "executor speeds, cycled over the executors (1 = a uniform fleet)"),
    SL_CFG_FIELD(s_opts_t, no_admission, "no-admission", "false", SL_CFG_BOOL,
                 "learned without predictive admission"),
    SL_CFG_FIELD(s_opts_t, admission_all, "admission-all", "false", SL_CFG_BOOL,
                 "baselines with admission too"),
    SL_CFG_RANGE(s_opts_t, slo_mult, "slo-ttft-mult", "3", SL_CFG_DOUBLE, 0, 1e9,
                 "TTFT SLO: this multiple of the unloaded TTFT"),
    SL_CFG_RANGE(s_opts_t, slo_floor, "slo-ttft-floor", "1", SL_CFG_DOUBLE, 0, 1e9,
                 "TTFT SLO: at least this many seconds"),
    SL_CFG_RANGE(s_opts_t, slo_tpot, "slo-tpot", "0.1", SL_CFG_DOUBLE, 0, 1e9,
                 "mean TPOT SLO in seconds"),
    SL_CFG_RANGE(s_opts_t, fail_at, "fail-at", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "--fail-count executors fail at this time (s), back 30 s later"),
    SL_CFG_RANGE(s_opts_t, fail_count, "fail-count", "0", SL_CFG_INT, 0, SL_SIM_MAX_EXECS,
                 "executors failing at --fail-at"),
    SL_CFG_FIELD(s_opts_t, seed, "seed", "1", SL_CFG_I64, "seed"),
    SL_CFG_RANGE(s_opts_t, batch_share, "batch-share", "0", SL_CFG_DOUBLE, 0, 1,
                 "share of requests submitted as batch, not interactive (chosen by the seed)"),
    SL_CFG_RANGE(s_opts_t, explore_share, "explore-share", "-1", SL_CFG_DOUBLE, -1, 1,
                 "learned: share of placements that may explore (-1 = the core's default, "
                 "explore-share; 0 = off)"),
    SL_CFG_RANGE(s_opts_t, run_steps, "run-steps", "256", SL_CFG_INT, 1, 65536,
                 "decode steps an engine runs per wake-up at most while nothing changes "
                 "(the same results with fewer events; 1 = a wake-up per step)"),
    SL_CFG_FIELD(s_opts_t, out, "out", "", SL_CFG_STR,
                 "compare: folder of the CSV and plots (\"\" = a fresh folder under $TMPDIR or /tmp)"),
    SL_CFG_FIELD(s_opts_t, plot, "plot", "true", SL_CFG_BOOL,
                 "compare: draw the plots with gnuplot (the .gp scripts are written either way)"),
    SL_CFG_RANGE(s_opts_t, prefill, "prefill", "0", SL_CFG_INT, 0, SL_SIM_MAX_EXECS,
                 "run: executors of role prefill (the first ones; the data plane is on)"),
    SL_CFG_RANGE(s_opts_t, decode, "decode", "0", SL_CFG_INT, 0, SL_SIM_MAX_EXECS,
                 "run: executors of role decode (after the prefill ones); the rest are mixed"),
    SL_CFG_FIELD(s_opts_t, kv_split, "kv-split", "false", SL_CFG_BOOL,
                 "run: the core splits a job over two executors when it predicts a gain"),
    SL_CFG_FIELD(s_opts_t, kv_rebalance, "kv-rebalance", "off", SL_CFG_STR,
                 "on or off: the core moves running jobs with their KV when it predicts a gain"),
    SL_CFG_FIELD(s_opts_t, kv_fetch, "kv-fetch", "false", SL_CFG_BOOL,
                 "run: the core has a job's executor pull the prefix a peer caches when it "
                 "predicts the transfer beats computing it (needs --kv-block-tokens = the "
                 "trace's hash block)"),
    SL_CFG_RANGE(s_opts_t, kv_block_tokens, "kv-block-tokens", "0", SL_CFG_INT, 0, 65536,
                 "tokens per KV block of the executors, KV capacity kept in tokens (0: 16 for "
                 "run, the trace's hash block for disagg)"),
    /* A Llama-3-8B-class model in bf16: 2 (K and V) x 32 layers x 8 KV
     * heads x 128 dims x 2 bytes = 131072 bytes of KV per token. */
    SL_CFG_RANGE(s_opts_t, kv_bytes_per_token, "kv-bytes-per-token", "131072", SL_CFG_DOUBLE, 1,
                 1e9, "KV bytes per token (default: Llama-3-8B-class in bf16)"),
    SL_CFG_RANGE(s_opts_t, link_gbps, "link-gbps", "100", SL_CFG_DOUBLE, 1e-3, 1e6,
                 "link bandwidth of each executor in Gbit/s (one RDMA NIC)"),
    SL_CFG_RANGE(s_opts_t, link_latency_us, "link-latency-us", "10", SL_CFG_DOUBLE, 0, 1e9,
                 "one-way latency of a KV transfer in microseconds"),
    SL_CFG_RANGE(s_opts_t, bg_share, "bg-share", "0.2", SL_CFG_DOUBLE, 0, 0.99,
                 "share of a link background traffic takes from KV transfers while on"),
    SL_CFG_FIELD(s_opts_t, bg_traffic, "bg-traffic", "false", SL_CFG_BOOL,
                 "background traffic on the links (takes --bg-share)"),
    /* Longer than the core's default (10 s): the prefill of the longest
     * prompts of the Mooncake traces (120k tokens) alone takes longer. */
    SL_CFG_RANGE(s_opts_t, kv_move_timeout_ms, "kv-move-timeout-ms", "60000", SL_CFG_I64, 1,
                 3600000, "a split or move not handed off in this long is abandoned (the core's knob)"),
    SL_CFG_RANGE(s_opts_t, load, "load", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "disagg: offered load in req/s (0 = where aggregated serving misses its SLOs)"),
    SL_CFG_FIELD(s_opts_t, quick, "quick", "false", SL_CFG_BOOL,
                 "disagg: a small run (300 requests, a coarse load search) for tests"),
    SL_CFG_FIELD(s_opts_t, ratios_list, "ratios", "", SL_CFG_STR,
                 "disagg: prefill:decode splits, comma-separated (default 1:7,2:6,3:5,4:4 of 8)"),
    SL_CFG_END,
};
/* clang-format on */

#define S_TABLE_ROWS (sizeof(s_table) / sizeof(s_table[0]))

static void s_usage(FILE *f)
{
    fprintf(f, "usage: sluice-sim COMMAND [options]   (sluice-sim COMMAND --help for its options)\n"
               "commands:\n"
               "  run      one policy at one load\n"
               "  compare  every policy over a sweep of offered loads (CSV and plots)\n"
               "  speed    simulated requests per wall-clock minute on a large cluster\n"
               "  disagg   aggregated serving against disaggregated prefill and decode\n"
               "  matrix   compare over scenarios (traces, fleets, failures, sizes), one process "
               "a cell\n");
}

/* The table with cmd's defaults: a larger cluster for speed, a slice of
 * the trace for compare. */
static void s_table_for(const char *cmd, sl_cfg_field_t *rows)
{
    memcpy(rows, s_table, sizeof(s_table));
    for (sl_cfg_field_t *f = rows; f->name; f++) {
        if (!strcmp(f->name, "executors") && !strcmp(cmd, "speed"))
            f->dflt = "1000";
        if (!strcmp(f->name, "requests") && (!strcmp(cmd, "compare") || !strcmp(cmd, "disagg")))
            f->dflt = "4000";
        /* disagg: a uniform fleet, so that roles, not speeds, make the difference */
        if (!strcmp(f->name, "speeds") && !strcmp(cmd, "disagg"))
            f->dflt = "1";
    }
}

/* Parse "R1,R2,..." (positive numbers) into out; -1 with a message when bad. */
static int s_parse_list(const char *prog, const char *flag, const char *arg, double *out, int cap)
{
    int n = 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", arg); /* arg is a knob of at most 1023 characters */
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        double v = strtod(tok, &end);
        if (*end || !(v > 0) || n == cap) {
            n = 0;
            break;
        }
        out[n++] = v;
    }
    if (n == 0)
        fprintf(stderr, "%s: --%s: '%s' is not a list of 1 to %d positive numbers\n", prog, flag,
                arg, cap);
    return n > 0 ? n : -1;
}

/* --ratios "P:D,...": each a split of the cluster with P, D >= 1 and
 * P + D <= executors. Nonzero with a message when bad. */
static int s_parse_ratios(const char *prog, s_opts_t *o)
{
    char buf[sizeof(o->ratios_list)];
    snprintf(buf, sizeof(buf), "%s", o->ratios_list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int pf, dc, used = 0;
        if (sscanf(tok, "%d:%d%n", &pf, &dc, &used) != 2 || tok[used] || pf < 1 || dc < 1 ||
            pf + dc > o->executors || o->n_ratios == S_MAX_LIST) {
            fprintf(stderr,
                    "%s: --ratios: '%s' is not P:D with P, D >= 1 and P + D <= --executors %d\n",
                    prog, tok, o->executors);
            return 1;
        }
        o->ratios[o->n_ratios][0] = pf;
        o->ratios[o->n_ratios][1] = dc;
        o->n_ratios++;
    }
    if (o->n_ratios == 0) {
        fprintf(stderr, "%s: --ratios is empty\n", prog);
        return 1;
    }
    return 0;
}

/* "unknown policy 'x' (a, b, ...)": the message every bad name gets, so
 * the user sees the valid names at once. */
static void s_unknown_policy(const char *prog, const char *flag, const char *name)
{
    fprintf(stderr, "%s: --%s: unknown policy '%s' (", prog, flag, name);
    const char *const *names = sl_policy_names();
    for (int i = 0; names[i]; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", names[i]);
    fprintf(stderr, ")\n");
}

/* A trace is a known name or a readable file; anything else is refused
 * here, with the names, rather than as a failed open later (exit 1). */
static bool s_trace_ok(const char *prog, const s_opts_t *o)
{
    char msg[512];
    if (sl_trace_name_check(o->trace, msg, sizeof(msg)) == SL_OK)
        return true;
    fprintf(stderr, "%s: --trace: %s\n", prog, msg);
    return false;
}

/* Flags into o; returns -1 to go on, else the exit status. */
static int s_parse(const char *cmd, int argc, char **argv, s_opts_t *o)
{
    char prog[64];
    char *args[argc];
    sl_cfg_field_t rows[S_TABLE_ROWS];
    snprintf(prog, sizeof(prog), "sluice-sim %s", cmd);
    s_table_for(cmd, rows);
    memset(o, 0, sizeof(*o));
    /* sl_cfg names the program by its argv[0]: "sluice-sim CMD" */
    memcpy(args, argv + 1, sizeof(char *) * (size_t)(argc - 1));
    args[0] = prog;
    args[argc - 1] = NULL;
    int rc = sl_cfg_main(rows, o, argc - 1, args, prog);
    if (rc >= 0)
        return rc;
    if (o->loads_list[0] &&
        (o->n_loads = s_parse_list(prog, "loads", o->loads_list, o->loads, S_MAX_LIST)) <= 0)
        return 2;
    if ((o->n_speeds = s_parse_list(prog, "speeds", o->speeds_list, o->speeds, S_MAX_LIST)) <= 0)
        return 2;
    char buf[sizeof(o->policies_list)];
    snprintf(buf, sizeof(buf), "%s", o->policies_list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!sl_policy_find(tok)) {
            s_unknown_policy(prog, "policies", tok);
            return 2;
        }
        if (o->n_policies == S_MAX_LIST) {
            fprintf(stderr, "%s: --policies: more than %d policies\n", prog, S_MAX_LIST);
            return 2;
        }
        snprintf(o->policies[o->n_policies++], S_POLICY_MAX, "%s", tok);
    }
    if (o->n_policies == 0) {
        fprintf(stderr, "%s: --policies is empty\n", prog);
        return 2;
    }
    if (!sl_policy_find(o->policy)) {
        s_unknown_policy(prog, "policy", o->policy);
        return 2;
    }
    if (!s_trace_ok(prog, o))
        return 2;
    if (strcmp(o->kv_rebalance, "on") && strcmp(o->kv_rebalance, "off")) {
        fprintf(stderr, "%s: --kv-rebalance: '%s' is not on or off\n", prog, o->kv_rebalance);
        return 2;
    }
    if (o->prefill + o->decode > o->executors) {
        fprintf(stderr, "%s: --prefill %d plus --decode %d is more than --executors %d\n", prog,
                o->prefill, o->decode, o->executors);
        return 2;
    }
    if (o->ratios_list[0] && s_parse_ratios(prog, o) != 0)
        return 2;
    return -1;
}

/* Speeds per executor, cycling the given list. Caller frees. */
static double *s_speeds(const s_opts_t *o, int n)
{
    double *v = malloc((size_t)n * sizeof(*v));
    for (int i = 0; v && i < n; i++)
        v[i] = o->n_speeds ? o->speeds[i % o->n_speeds] : 1.0;
    return v;
}

/* Whether policy runs with predictive admission: learned unless
 * --no-admission, the baselines only with --admission-all. */
static bool s_admission(const s_opts_t *o, const char *policy)
{
    return strcmp(policy, "learned") == 0 ? !o->no_admission : o->admission_all;
}

/* The policy as a legend names it: "learned (+admission)". */
static void s_label(const s_opts_t *o, const char *policy, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", policy, s_admission(o, policy) ? " (+admission)" : "");
}

/* Executors' KV blocks of bt tokens, their capacity kept in tokens. */
static void s_block_tokens(sl_sim_params_t *p, uint32_t bt)
{
    int64_t tokens = p->model.kv_capacity_blocks * (int64_t)p->kv_block_tokens;
    p->kv_block_tokens = bt;
    p->model.kv_capacity_blocks = tokens / bt > 0 ? tokens / bt : 1;
}

static void s_params(const s_opts_t *o, const sl_trace_t *tr, const char *policy,
                     const double *speeds, sl_sim_params_t *p)
{
    sl_sim_params_default(p);
    p->trace = tr;
    p->executors = o->executors;
    p->speeds = speeds;
    p->policy = policy;
    p->admission = s_admission(o, policy);
    p->slo_ttft_mult = o->slo_mult;
    p->slo_ttft_floor_s = o->slo_floor;
    p->slo_tpot_s = o->slo_tpot;
    p->fail_at_s = o->fail_at;
    p->fail_count = o->fail_count;
    p->seed = (uint64_t)o->seed;
    p->batch_share = o->batch_share;
    p->explore_share = o->explore_share;
    p->run_steps = o->run_steps;
    p->prefill_execs = o->prefill;
    p->decode_execs = o->decode;
    p->kv_split = o->kv_split;
    p->kv_rebalance = !strcmp(o->kv_rebalance, "on");
    p->kv_fetch = o->kv_fetch;
    p->data_plane =
        o->prefill > 0 || o->decode > 0 || p->kv_split || p->kv_rebalance || p->kv_fetch;
    s_block_tokens(p, o->kv_block_tokens ? (uint32_t)o->kv_block_tokens : p->kv_block_tokens);
    p->kv_bytes_per_token = o->kv_bytes_per_token;
    p->link_gbps = o->link_gbps;
    p->link_latency_us = o->link_latency_us;
    p->bg_share = o->bg_share;
    p->bg_traffic = o->bg_traffic;
    p->kv_move_timeout_ms = o->kv_move_timeout_ms;
}

static sl_status_t s_schedule(const s_opts_t *o, const sl_trace_t *src, double rate, double speedup,
                              sl_trace_t **out_p)
{
    /* More requests than the trace holds: the trace is replayed again,
     * each copy with prefixes of its own (more users of the same kind),
     * rather than cut at its end, where a large cluster would see a few
     * dozen jobs per executor. Drawing the extra requests from it with
     * Poisson arrivals was rejected: every prompt came back several times
     * whole, four in five fully cached, a workload no service sees. */
    sl_trace_opts_t to = {.count = (size_t)o->requests,
                          .rate = rate,
                          .speedup = speedup,
                          .tile = true,
                          .poisson = o->poisson && rate > 0,
                          .seed = (uint64_t)o->seed};
    return sl_trace_schedule(src, &to, out_p);
}

static void s_print_header(void)
{
    printf("%-18s %8s %8s %8s %7s %8s %8s %8s %8s %7s %7s %7s\n", "policy", "offered", "goodput",
           "slo%", "busy%", "p50ttft", "p90ttft", "p99ttft", "tpot_ms", "hit%", "mape", "failed");
}

static void s_print_row(const char *policy, const sl_sim_report_t *r)
{
    printf("%-18s %8.2f %8.2f %8.1f %7.1f %8.3f %8.3f %8.3f %8.1f %7.1f %7.3f %7llu\n", policy,
           r->offered_rps, r->goodput_rps, 100 * r->slo_frac, 100 * r->busy_rate, r->p50_ttft_s,
           r->p90_ttft_s, r->p99_ttft_s, 1e3 * r->mean_tpot_s, 100 * r->hit_rate, r->ttft_mape,
           (unsigned long long)r->failed);
    fflush(stdout);
}

static int s_cmd_run(s_opts_t *o, const sl_trace_t *src)
{
    sl_trace_t *tr = NULL;
    if (s_schedule(o, src, o->rate, o->speedup, &tr) != SL_OK || tr->n == 0) {
        fprintf(stderr, "sluice-sim: cannot build a schedule from the trace\n");
        sl_trace_destroy(&tr);
        return 1;
    }
    double *speeds = s_speeds(o, o->executors);
    sl_sim_params_t p;
    sl_sim_report_t r;
    s_params(o, tr, o->policy, speeds, &p);
    char label[S_POLICY_MAX + 16];
    s_label(o, o->policy, label, sizeof(label));
    printf("cluster: %d executors (speeds %s), policy %s, %zu requests of %s\n", o->executors,
           o->speeds_list, label, tr->n, o->trace);
    sl_status_t st = sl_sim_run(&p, &r);
    if (st == SL_OK) {
        s_print_header();
        s_print_row(o->policy, &r);
        printf("busy by reason: overload %llu, deadline %llu, tenant %llu\n",
               (unsigned long long)r.busy_by_reason[SL_BUSY_OVERLOAD],
               (unsigned long long)r.busy_by_reason[SL_BUSY_DEADLINE],
               (unsigned long long)r.busy_by_reason[SL_BUSY_TENANT]);
        printf("RESULT policy=%s offered_rps=%.3f goodput_rps=%.3f p50_ttft_s=%.4f "
               "p99_ttft_s=%.4f mean_tpot_s=%.4f busy_rate=%.4f hit_rate=%.4f ttft_mape=%.4f "
               "executors=%d\n",
               o->policy, r.offered_rps, r.goodput_rps, r.p50_ttft_s, r.p99_ttft_s, r.mean_tpot_s,
               r.busy_rate, r.hit_rate, r.ttft_mape, o->executors);
        if (p.data_plane)
            printf("data plane: %llu splits (%llu handed off, %llu failed), %llu moves (%llu "
                   "failed), %llu prefix fetches (%llu failed; %llu blocks fetched, %llu "
                   "recomputed), %llu KV bytes moved, mean transfer %.3f ms, mean pause %.3f "
                   "ms\n",
                   (unsigned long long)r.kv_splits, (unsigned long long)r.kv_handoffs,
                   (unsigned long long)r.kv_split_failed, (unsigned long long)r.kv_migrations,
                   (unsigned long long)r.kv_migrate_failed, (unsigned long long)r.kv_fetches,
                   (unsigned long long)r.kv_fetch_failed, (unsigned long long)r.kv_blocks_fetched,
                   (unsigned long long)r.kv_blocks_recomputed, (unsigned long long)r.kv_bytes,
                   r.mean_xfer_ms, r.mean_pause_ms);
    }
    free(speeds);
    sl_trace_destroy(&tr);
    return st == SL_OK ? 0 : 1;
}

static const char *const s_compare_prog = "sluice-sim compare";

/* out/name for writing, and its close: sl_sim_out with compare's name. */
static FILE *s_open_out(const s_opts_t *o, const char *name)
{
    return sl_sim_out_open(s_compare_prog, o->out, name);
}

static bool s_close_out(const s_opts_t *o, FILE *f, const char *name)
{
    return sl_sim_out_close(s_compare_prog, f, o->out, name);
}

/* Line styles: one per policy, told apart by colour, dash pattern and
 * point type, so ten policies (the default) give ten styles that differ in
 * each of the three and stay distinct printed in grey. Beyond ten the
 * dash pattern shifts against the colour: (colour, dash) stays unique up
 * to 100 policies. The colours are the Tableau 10 palette. */
static const char *const s_colours[10] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
static const char *const s_dashes[10] = {
    "1",      "(8,4)",      "(2,4)",      "(8,4,2,4)", "(8,4,2,4,2,4)",
    "(16,6)", "(16,6,2,6)", "(16,6,8,6)", "(4,2)",     "(12,3,3,3,3,3)"};

static void s_gp_styles(FILE *f, int np)
{
    for (int k = 0; k < np; k++)
        fprintf(f, "set style line %d lc rgb '%s' dt %s pt %d lw 2 ps 1.2\n", k + 1,
                s_colours[k % 10], s_dashes[(k + k / 10) % 10], k % 14 + 1);
}

/* One plot clause per policy over a tidy CSV (header row, one row per
 * policy and x): rows of other policies become NaN and are skipped. */
static void s_gp_plot(FILE *f, const s_opts_t *o, const char *csv, int xcol, int ycol,
                      const char *with)
{
    fprintf(f, "plot \\\n");
    for (int k = 0; k < o->n_policies; k++) {
        char label[S_POLICY_MAX + 16];
        s_label(o, o->policies[k], label, sizeof(label));
        fprintf(f,
                "  '%s' skip 1 using %d:(strcol(1) eq '%s' ? $%d : NaN) with %s ls %d "
                "title '%s'%s\n",
                csv, xcol, o->policies[k], ycol, with, k + 1, label,
                k + 1 < o->n_policies ? ", \\" : "");
    }
}

/* Write goodput_vs_load.gp and ttft_cdf.gp into the output folder and,
 * with --plot, draw them. lo and hi are the sweep's loads, at the load of
 * the TTFT distributions. */
static bool s_plot(const s_opts_t *o, double lo, double hi, double at)
{
    static const char *const scripts[2] = {"goodput_vs_load.gp", "ttft_cdf.gp"};
    for (int i = 0; i < 2; i++) {
        FILE *f = s_open_out(o, scripts[i]);
        if (!f)
            return false;
        fprintf(f,
                "# sluice-sim compare: %.*s on %d executors (speeds %s), %lld requests, seed %lld\n"
                "# replot with: gnuplot %s (in this folder)\n"
                "set datafile separator ','\nset terminal pngcairo size 1000,650 noenhanced\n"
                "set key outside right\nset grid\n",
                (int)strcspn(o->trace, "\r\n"), o->trace, o->executors, o->speeds_list,
                (long long)o->requests, (long long)o->seed, scripts[i]);
        s_gp_styles(f, o->n_policies);
        if (i == 0) {
            fprintf(f,
                    "set output 'goodput_vs_load.png'\n"
                    "set title 'Goodput (both SLOs met) at offered loads %.2f to %.2f req/s; "
                    "comparison load %.2f req/s'\n"
                    "set xlabel 'offered load (req/s)'\nset ylabel 'goodput (req/s)'\n"
                    "set arrow from %.4f, graph 0 to %.4f, graph 1 nohead dt 3 lc rgb '#555555'\n",
                    lo, hi, at, at, at);
            s_gp_plot(f, o, "compare.csv", 4, 5, "linespoints");
        } else {
            fprintf(f,
                    "set output 'ttft_cdf.png'\n"
                    "set title 'TTFT distribution at %.2f req/s (the comparison load)'\n"
                    "set xlabel 'time to first token (s)'\nset ylabel 'fraction of requests'\n"
                    "set logscale x\nset key bottom right inside\n",
                    at);
            s_gp_plot(f, o, "ttft_cdf.csv", 4, 5, "lines");
        }
        if (!s_close_out(o, f, scripts[i]))
            return false;
    }
    if (!o->plot) {
        printf("plots: %s/goodput_vs_load.gp %s/ttft_cdf.gp (not drawn: --plot false)\n", o->out,
               o->out);
        return true;
    }
    for (int i = 0; i < 2; i++) {
        int rc = sl_sim_gnuplot(o->out, scripts[i]);
        if (rc == 127) {
            fprintf(stderr,
                    "sluice-sim compare: warning: gnuplot not found; the plot scripts "
                    "are in %s (*.gp)\n",
                    o->out);
            return true;
        }
        if (rc != 0) {
            fprintf(stderr, "sluice-sim compare: warning: gnuplot failed on %s/%s\n", o->out,
                    scripts[i]);
            return true;
        }
    }
    printf("plots: %s/goodput_vs_load.png %s/ttft_cdf.png\n", o->out, o->out);
    return true;
}

/* Run every policy at one offered load into column l of rep; prints the rows. */
static int s_compare_load(const s_opts_t *o, const sl_trace_t *src, const double *speeds,
                          double load, sl_sim_report_t *rep, int cap, int l)
{
    sl_trace_t *tr = NULL;
    if (s_schedule(o, src, load, 0, &tr) != SL_OK || tr->n == 0) {
        fprintf(stderr, "sluice-sim: cannot schedule load %.2f\n", load);
        sl_trace_destroy(&tr);
        return 1;
    }
    printf("\n== offered load %.2f req/s ==\n", load);
    s_print_header();
    for (int k = 0; k < o->n_policies; k++) {
        sl_sim_params_t p;
        s_params(o, tr, o->policies[k], speeds, &p);
        if (sl_sim_run(&p, &rep[k * cap + l]) != SL_OK) {
            sl_trace_destroy(&tr);
            return 1;
        }
        s_print_row(o->policies[k], &rep[k * cap + l]);
    }
    sl_trace_destroy(&tr);
    return 0;
}

/* Whether a policy other than skip meets S_SLO_TARGET of its SLOs in load
 * column l. */
static bool s_compare_passes(const sl_sim_report_t *rep, int cap, int np, int l, int skip)
{
    for (int k = 0; k < np; k++)
        if (k != skip && rep[k * cap + l].slo_frac >= S_SLO_TARGET)
            return true;
    return false;
}

/* Whether every policy meets S_SLO_TARGET of its SLOs in load column l. */
static bool s_compare_all_pass(const sl_sim_report_t *rep, int cap, int np, int l)
{
    for (int k = 0; k < np; k++)
        if (rep[k * cap + l].slo_frac < S_SLO_TARGET)
            return false;
    return true;
}

/* Run one policy at one offered load into *r, quietly. */
static int s_compare_one(const s_opts_t *o, const sl_trace_t *src, const double *speeds,
                         const char *policy, double load, sl_sim_report_t *r)
{
    sl_trace_t *tr = NULL;
    if (s_schedule(o, src, load, 0, &tr) != SL_OK || tr->n == 0) {
        fprintf(stderr, "sluice-sim: cannot schedule load %.2f\n", load);
        sl_trace_destroy(&tr);
        return 1;
    }
    sl_sim_params_t p;
    s_params(o, tr, policy, speeds, &p);
    sl_status_t st = sl_sim_run(&p, r);
    sl_trace_destroy(&tr);
    return st == SL_OK ? 0 : 1;
}

/* Sort the load columns into increasing order, the reports with them. */
static void s_compare_sort(double *loads, sl_sim_report_t *rep, int cap, int np, int nl)
{
    for (int a = 1; a < nl; a++)
        for (int b = a; b > 0 && loads[b - 1] > loads[b]; b--) {
            double t = loads[b];
            loads[b] = loads[b - 1];
            loads[b - 1] = t;
            for (int k = 0; k < np; k++) {
                sl_sim_report_t r = rep[k * cap + b];
                rep[k * cap + b] = rep[k * cap + b - 1];
                rep[k * cap + b - 1] = r;
            }
        }
}

/* A policy's capacity: the highest offered load at which it still meets
 * S_SLO_TARGET of its SLOs, and its run there. */
typedef struct s_capacity {
    double load;         /* req/s; 0 when it meets them at no load of the sweep */
    sl_sim_report_t rep; /* its run at that load */
} s_capacity_t;

/* Policy k's capacity from the sorted sweep: its highest passing column,
 * then S_REFINE bisection steps (runs of k alone) toward the next column. */
static int s_compare_capacity(const s_opts_t *o, const sl_trace_t *src, const double *speeds,
                              const double *loads, const sl_sim_report_t *rep, int cap, int nl,
                              int k, s_capacity_t *c)
{
    memset(c, 0, sizeof(*c));
    int a = -1;
    for (int l = 0; l < nl; l++)
        if (rep[k * cap + l].slo_frac >= S_SLO_TARGET)
            a = l;
    if (a < 0)
        return 0;
    c->load = loads[a];
    c->rep = rep[k * cap + a];
    if (a == nl - 1)
        return 0; /* the sweep's top: it is at least this much */
    double lo = loads[a], hi = loads[a + 1];
    for (int i = 0; i < S_REFINE; i++) {
        double mid = (lo + hi) / 2;
        sl_sim_report_t r;
        if (s_compare_one(o, src, speeds, o->policies[k], mid, &r) != 0)
            return 1;
        if (r.slo_frac >= S_SLO_TARGET) {
            lo = mid;
            c->load = mid;
            c->rep = r;
        } else {
            hi = mid;
        }
    }
    return 0;
}

static int s_cmd_compare(s_opts_t *o, const sl_trace_t *src)
{
    if (o->n_loads == 0) {
        /* 0.25 to 1.25 req/s per executor; the sweep extends itself
         * below and above as the trace needs. */
        static const double dflt[] = {0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1.25};
        o->n_loads = (int)(sizeof(dflt) / sizeof(dflt[0]));
        for (int l = 0; l < o->n_loads; l++)
            o->loads[l] = dflt[l] * o->executors;
    }
    int np = o->n_policies, nl = o->n_loads, cap = S_MAX_LIST + S_GROW_MAX + 1;
    sl_sim_report_t *rep = calloc((size_t)np * cap, sizeof(*rep));
    s_capacity_t *caps = calloc((size_t)np, sizeof(*caps));
    double *speeds = s_speeds(o, o->executors);
    double loads[S_MAX_LIST + S_GROW_MAX + 1];
    if (!rep || !caps || !speeds ||
        !sl_sim_out_dir(s_compare_prog, o->out, sizeof(o->out), "sluice-sim")) {
        free(speeds);
        free(caps);
        free(rep);
        return 1;
    }
    memcpy(loads, o->loads, (size_t)nl * sizeof(double));
    printf("output: %s\n", o->out);
    if (!o->poisson && o->requests > 0 && (size_t)o->requests > src->n)
        printf("the trace holds %zu requests: it is replayed %.1f times for %lld, each copy with "
               "prefixes of its own\n",
               src->n, (double)o->requests / (double)src->n, (long long)o->requests);
    printf("trace %s: %zu requests, %d executors, policies x loads = %d x %d\n", o->trace,
           o->requests ? (size_t)o->requests : src->n, o->executors, np, nl);
    int learned = -1, rr = -1;
    for (int k = 0; k < np; k++) {
        if (!strcmp(o->policies[k], "learned"))
            learned = k;
        if (!strcmp(o->policies[k], "round-robin"))
            rr = k;
    }
    int rc = 1;
    for (int l = 0; l < nl; l++)
        if (s_compare_load(o, src, speeds, loads[l], rep, cap, l) != 0)
            goto out;
    /* Extend the sweep until it brackets every policy's knee, whatever the
     * trace: upward while any policy (learned too) still meets its SLOs at
     * the highest load, downward (at most S_DOWN_MAX halvings: each one
     * doubles the virtual time a run covers) while one misses them at the
     * lowest. A
     * fixed grid was rejected: on short-request traces every policy met
     * its SLOs at all of it, and the comparison said nothing. */
    int grown = 0;
    double first_bottom = INFINITY;
    for (int l = 0; l < nl; l++)
        first_bottom = loads[l] < first_bottom ? loads[l] : first_bottom;
    for (;;) {
        double top = 0, bottom = INFINITY;
        int ltop = 0, lbot = 0;
        for (int l = 0; l < nl; l++) {
            if (loads[l] > top)
                top = loads[ltop = l];
            if (loads[l] < bottom)
                bottom = loads[lbot = l];
        }
        double next = 0;
        if (s_compare_passes(rep, cap, np, ltop, -1))
            next = top * S_GROW;
        else if (!s_compare_all_pass(rep, cap, np, lbot) && bottom > S_LOAD_MIN &&
                 bottom > first_bottom / (1 << S_DOWN_MAX))
            next = bottom / 2;
        if (next == 0)
            break;
        if (grown == S_GROW_MAX) {
            if (next > top)
                fprintf(stderr,
                        "sluice-sim compare: warning: the sweep never reaches saturation: at the "
                        "highest load, %.2f req/s (%d loads added), a policy still meets %.0f%% of "
                        "its SLOs, so its capacity is at least that; tighten --slo-*\n",
                        top, grown, 100 * S_SLO_TARGET);
            break;
        }
        loads[nl] = next;
        if (s_compare_load(o, src, speeds, next, rep, cap, nl) != 0)
            goto out;
        nl++;
        grown++;
    }
    s_compare_sort(loads, rep, cap, np, nl);
    /* Each policy's capacity, by bisection between its last passing load
     * and the next; goodput is compared there (each policy at its own
     * limit: the highest rate it serves within its SLOs), not at one
     * shared load, where the ratio cannot exceed 1 / S_SLO_TARGET. */
    for (int k = 0; k < np; k++)
        if (s_compare_capacity(o, src, speeds, loads, rep, cap, nl, k, &caps[k]) != 0)
            goto out;
    /* Goodput as DistServe states it: the highest request rate served
     * with 90% of requests within their SLOs, i.e. the capacity. */
    int best = -1;
    for (int k = 0; k < np; k++)
        if (k != learned && (best < 0 || caps[k].load > caps[best].load ||
                             (caps[k].load == caps[best].load &&
                              caps[k].rep.goodput_rps > caps[best].rep.goodput_rps)))
            best = k;
    /* The comparison load, for the TTFT tails, the CDFs and the model's
     * error: the best baseline's limit, every policy run there. */
    int at = 0;
    if (best >= 0 && caps[best].load > 0) {
        at = -1;
        for (int l = 0; l < nl; l++)
            if (fabs(loads[l] - caps[best].load) < 1e-9)
                at = l;
        if (at < 0) {
            loads[nl] = caps[best].load;
            if (s_compare_load(o, src, speeds, loads[nl], rep, cap, nl) != 0)
                goto out;
            nl++;
            s_compare_sort(loads, rep, cap, np, nl);
            for (int l = 0; l < nl; l++)
                if (fabs(loads[l] - caps[best].load) < 1e-9)
                    at = l;
        }
    } else {
        fprintf(stderr,
                "sluice-sim compare: warning: no baseline meets %.0f%% of its SLOs even at the "
                "lowest load, %.3f req/s (the SLOs are out of reach at any load); loosen "
                "--slo-*\n",
                100 * S_SLO_TARGET, loads[0]);
    }
    printf("\n== capacity: the highest offered load at which each policy meets %.0f%% of its "
           "SLOs ==\n",
           100 * S_SLO_TARGET);
    printf("%-18s %12s %11s %8s %8s %8s\n", "policy", "capacity_rps", "goodput_rps", "slo%",
           "p99ttft", "mape");
    for (int k = 0; k < np; k++)
        printf("%-18s %12.3f %11.3f %8.1f %8.3f %8.3f\n", o->policies[k], caps[k].load,
               caps[k].rep.goodput_rps, 100 * caps[k].rep.slo_frac, caps[k].rep.p99_ttft_s,
               caps[k].rep.ttft_mape);
    /* Tidy CSVs: a header row, then one row per policy and load. */
    FILE *f = s_open_out(o, "compare.csv");
    if (!f)
        goto out;
    fprintf(f, "policy,admission,load_rps,offered_rps,goodput_rps,slo_frac,busy_rate,p50_ttft_s,"
               "p90_ttft_s,p99_ttft_s,mean_tpot_s,hit_rate,ttft_mape\n");
    for (int k = 0; k < np; k++)
        for (int l = 0; l < nl; l++) {
            const sl_sim_report_t *r = &rep[k * cap + l];
            fprintf(f, "%s,%d,%.4f,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n",
                    o->policies[k], s_admission(o, o->policies[k]), loads[l], r->offered_rps,
                    r->goodput_rps, r->slo_frac, r->busy_rate, r->p50_ttft_s, r->p90_ttft_s,
                    r->p99_ttft_s, r->mean_tpot_s, r->hit_rate, r->ttft_mape);
        }
    if (!s_close_out(o, f, "compare.csv"))
        goto out;
    if (!(f = s_open_out(o, "capacity.csv")))
        goto out;
    fprintf(f, "policy,admission,capacity_rps,goodput_rps,slo_frac,p99_ttft_s,ttft_mape\n");
    for (int k = 0; k < np; k++)
        fprintf(f, "%s,%d,%.4f,%.4f,%.4f,%.4f,%.4f\n", o->policies[k],
                s_admission(o, o->policies[k]), caps[k].load, caps[k].rep.goodput_rps,
                caps[k].rep.slo_frac, caps[k].rep.p99_ttft_s, caps[k].rep.ttft_mape);
    if (!s_close_out(o, f, "capacity.csv"))
        goto out;
    if (!(f = s_open_out(o, "ttft_cdf.csv")))
        goto out;
    fprintf(f, "policy,admission,load_rps,ttft_s,fraction\n");
    for (int k = 0; k < np; k++)
        for (int q = 1; q <= 100; q++) {
            double v = (double)sl_hist_quantile(&rep[k * cap + at].ttft_us, q / 100.0) / 1e6;
            fprintf(f, "%s,%d,%.4f,%.5f,%.2f\n", o->policies[k], s_admission(o, o->policies[k]),
                    loads[at], v > 1e-4 ? v : 1e-4, q / 100.0);
        }
    if (!s_close_out(o, f, "ttft_cdf.csv") || !s_plot(o, loads[0], loads[nl - 1], loads[at]))
        goto out;
    double gp = 0, served = 0, gp_at = 0, p99 = 0, mape = 0;
    if (learned >= 0 && best >= 0) {
        const sl_sim_report_t *L = &rep[learned * cap + at], *B = &rep[best * cap + at];
        if (caps[best].load > 0)
            gp = caps[learned].load / caps[best].load;
        if (caps[best].rep.goodput_rps > 0)
            served = caps[learned].rep.goodput_rps / caps[best].rep.goodput_rps;
        gp_at = B->goodput_rps > 0 ? L->goodput_rps / B->goodput_rps : 0;
        mape = L->ttft_mape;
        if (rr >= 0 && rep[rr * cap + at].p99_ttft_s > 0)
            p99 = L->p99_ttft_s / rep[rr * cap + at].p99_ttft_s;
    }
    printf("\ngoodput: each policy's capacity (the highest load at which it meets %.0f%% of its "
           "SLOs); tails and error at %.2f req/s, the best baseline's (%s) capacity\n",
           100 * S_SLO_TARGET, loads[at], best >= 0 ? o->policies[best] : "none");
    printf("RESULT goodput_vs_best_baseline=%.3f p99_ttft_vs_round_robin=%.3f ttft_mape=%.3f "
           "load_rps=%.2f learned_capacity_rps=%.3f best_capacity_rps=%.3f "
           "served_at_capacity_vs_best=%.3f goodput_at_load_vs_best=%.3f best_baseline=%s "
           "executors=%d requests=%zu seed=%llu\n",
           gp, p99, mape, loads[at], learned >= 0 ? caps[learned].load : 0,
           best >= 0 ? caps[best].load : 0, served, gp_at, best >= 0 ? o->policies[best] : "none",
           o->executors, (size_t)o->requests, (unsigned long long)o->seed);
    rc = 0;
out:
    free(speeds);
    free(caps);
    free(rep);
    return rc;
}

/* Rounds of the placement micro-benchmark and their decisions, and runs of
 * the simulation. */
#define S_PLACE_ROUNDS 5
#define S_ROUND_JOBS 40000
#define S_SPEED_RUNS 3

/* Dispatch sink for the placement micro-benchmark. */
static sl_status_t s_null_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    return SL_OK;
}
static void s_null_result(void *arg, sl_job_t *job, sl_job_status_t st, const sl_job_timings_t *t,
                          const sl_exec_t *e, const void *payload, const char *err)
{
}

/* Wall-clock cost of one placement by policy over n executors with a warm
 * prefix index: submit (placed at once) then complete, S_PLACE_ROUNDS
 * rounds, each round's microseconds per decision into round_us. Nonzero
 * on failure. */
static int s_place_cost_us(const char *policy, int n, uint64_t seed, double *round_us)
{
    sl_core_cfg_t cc;
    sl_core_cfg_default(&cc);
    snprintf(cc.policy, sizeof(cc.policy), "%s", policy);
    cc.max_executors = n;
    cc.done_ttl_ms = 0;
    static const sl_core_io_t io = {.dispatch = s_null_dispatch, .result = s_null_result};
    sl_core_t *core;
    uint32_t *execs = calloc((size_t)n, sizeof(*execs));
    if (!execs || sl_core_create(&cc, &io, NULL, &core) != SL_OK) {
        free(execs);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "x%d", i);
        sl_exec_info_t info = {.name = name, .slots = 32, .backend = "sim"};
        uint32_t idx;
        sl_core_exec_join(core, &info, NULL, 0, &idx);
        execs[i] = idx;
        uint64_t h[24];
        for (int b = 0; b < 24; b++)
            h[b] = (uint64_t)(i % 200) * 1000 + (uint64_t)b + 1;
        sl_core_exec_kv_event(core, idx, h, 24, NULL, 0, false, 0);
    }
    sl_rand_t rnd;
    sl_rand_seed(&rnd, seed);
    /* Rounds of S_ROUND_JOBS decisions, each timed (round_us: per
     * decision); the job ids are written beforehand: a client's formatting
     * is not the scheduler's cost. */
    char(*ids)[16] = malloc((size_t)S_PLACE_ROUNDS * S_ROUND_JOBS * sizeof(*ids));
    if (!ids) {
        free(execs);
        sl_core_destroy(&core);
        return -1;
    }
    for (int j = 0; j < S_PLACE_ROUNDS * S_ROUND_JOBS; j++)
        snprintf(ids[j], sizeof(ids[j]), "j%d", j);
    uint64_t hashes[24];
    const sl_exec_load_t idle = {0};
    for (int k = 0; k < S_PLACE_ROUNDS; k++) {
        sl_time_t t0 = sl_clock_now();
        for (int j = k * S_ROUND_JOBS; j < (k + 1) * S_ROUND_JOBS; j++) {
            uint64_t conv = sl_rand_below(&rnd, 400);
            for (int b = 0; b < 24; b++)
                hashes[b] = conv * 1000 + (uint64_t)b + 1;
            const char *id = ids[j];
            sl_job_desc_t d = {.id = id,
                               .prompt_tokens = 12000,
                               .max_new_tokens = 300,
                               .block_hashes = hashes,
                               .n_block_hashes = 24,
                               .block_tokens = 512};
            sl_job_t *job;
            sl_busy_reason_t why;
            sl_time_t retry;
            sl_time_t now = SL_US(j * 10);
            if (sl_core_job_submit(core, &d, NULL, now, &job, &why, &retry) != SL_OK)
                continue;
            if (job->exec) {
                sl_job_result_t res = {.status = SL_JOB_OK,
                                       .output_tokens = 300,
                                       .exec_ttft = SL_MS(300),
                                       .exec_end = SL_MS(3000)};
                sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now);
            }
            if ((j & 1023) == 0)
                sl_core_tick(core, now);
            /* Every executor heartbeats each 100 ms of this clock (10,000
             * decisions), as executors do: without it they are all taken
             * for lost within the first round and the rest measures a
             * fleet of a few. */
            if (j % 10000 == 0)
                for (int i = 0; i < n; i++)
                    sl_core_exec_heartbeat(core, execs[i], &idle, now);
        }
        round_us[k] = (double)(sl_clock_now() - t0) / 1e3 / S_ROUND_JOBS;
    }
    uint64_t lost = sl_core_counter(core, SL_CTR_EXECUTORS_LOST);
    free(ids);
    free(execs);
    sl_core_destroy(&core);
    return lost == 0 ? 0 : -1; /* the fleet measured is the one asked for */
}

static int s_cmd_speed(s_opts_t *o, const sl_trace_t *src)
{
    /* Offered load just below the knee of the cluster (about 0.75 req/s
     * per executor of speed 1 on this trace, where SLO attainment starts to
     * fall), Poisson, with the trace's lengths and prefixes; two minutes of
     * virtual time, long enough for a steady state. */
    double rate = o->rate > 0 ? o->rate : 0.6 * o->executors;
    if (o->requests == 0)
        o->requests = (int64_t)(rate * 120);
    o->poisson = true;
    sl_trace_t *tr = NULL;
    if (s_schedule(o, src, rate, 0, &tr) != SL_OK || tr->n == 0) {
        fprintf(stderr, "sluice-sim: cannot build a schedule\n");
        return 1;
    }
    double *speeds = s_speeds(o, o->executors);
    sl_sim_params_t p;
    sl_sim_report_t r;
    s_params(o, tr, o->policy, speeds, &p);
    /* Runs of the same simulation (the same results) and rounds of the
     * placement micro-benchmark, each timed. The figures are the fastest:
     * the machine is shared, and what others run only ever adds to a
     * timing (timeit's reasoning); the medians are printed beside them. */
    double walls[S_SPEED_RUNS], round_us[S_PLACE_ROUNDS];
    sl_status_t st = SL_OK;
    for (int k = 0; k < S_SPEED_RUNS && st == SL_OK; k++) {
        sl_time_t t0 = sl_clock_now();
        st = sl_sim_run(&p, &r);
        walls[k] = (double)(sl_clock_now() - t0) / 1e9;
    }
    free(speeds);
    sl_trace_destroy(&tr);
    if (st != SL_OK)
        return 1;
    s_print_header();
    s_print_row(o->policy, &r);
    if (s_place_cost_us(o->policy, o->executors, (uint64_t)o->seed, round_us) != 0) {
        fprintf(stderr, "sluice-sim: cannot run the placement benchmark\n");
        return 1;
    }
    double wall_med = sl_median(walls, S_SPEED_RUNS); /* sorts: [0] is the fastest */
    double place_med = sl_median(round_us, S_PLACE_ROUNDS);
    double wall = walls[0], place_us = round_us[0];
    double rpm = (double)r.requests / wall * 60.0, rpm_med = (double)r.requests / wall_med * 60.0;
    printf("simulated %llu requests (%.0f s of virtual time, %llu events) in %.2f s of wall "
           "time at best of %d runs (median %.2f s, slowest %.2f s)\n",
           (unsigned long long)r.requests, r.sim_end_s, (unsigned long long)r.events, wall,
           S_SPEED_RUNS, wall_med, walls[S_SPEED_RUNS - 1]);
    printf("placement cost of %s over %d executors: %.2f us per decision (submit + place + "
           "complete) at best of %d rounds of %d (median %.2f, slowest %.2f)\n",
           o->policy, o->executors, place_us, S_PLACE_ROUNDS, S_ROUND_JOBS, place_med,
           round_us[S_PLACE_ROUNDS - 1]);
    printf("RESULT requests_per_min=%.0f place_us=%.2f requests_per_min_median=%.0f "
           "place_us_median=%.2f executors=%d policy=%s wall_s=%.2f requests=%llu\n",
           rpm, place_us, rpm_med, place_med, o->executors, o->policy, wall,
           (unsigned long long)r.requests);
    return 0;
}

/* --- disagg --- */

/* One configuration of the data plane for disagg. */
typedef struct s_dcfg {
    const char *name; /* its row's name */
    int prefill;      /* executors of role prefill */
    int decode;       /* executors of role decode */
    bool split;       /* conditional disaggregation (the core's kv_split) */
    bool rebalance;   /* moves of running jobs (the core's kv_rebalance) */
    bool fetch;       /* prefix fetch from a peer (the core's kv_fetch) */
} s_dcfg_t;

/* Run learned on cfg at load into *r; prints its row. Nonzero on failure. */
static int s_disagg_run(const s_opts_t *o, const sl_trace_t *src, const double *speeds, double load,
                        const s_dcfg_t *cfg, sl_sim_report_t *r)
{
    sl_trace_t *tr = NULL;
    if (s_schedule(o, src, load, 0, &tr) != SL_OK || tr->n == 0) {
        fprintf(stderr, "sluice-sim disagg: cannot schedule load %.2f\n", load);
        sl_trace_destroy(&tr);
        return 1;
    }
    sl_sim_params_t p;
    s_params(o, tr, "learned", speeds, &p);
    p.prefill_execs = cfg->prefill;
    p.decode_execs = cfg->decode;
    p.kv_split = cfg->split;
    p.kv_rebalance = cfg->rebalance;
    p.kv_fetch = cfg->fetch;
    p.data_plane = cfg->prefill || cfg->decode || cfg->split || cfg->rebalance || cfg->fetch;
    /* KV blocks of the trace's hash block, so that the core can match a
     * peer's cached blocks to a job's and fetch them (capacity unchanged) */
    if (!o->kv_block_tokens && tr->block_tokens)
        s_block_tokens(&p, tr->block_tokens);
    sl_status_t st = sl_sim_run(&p, r);
    sl_trace_destroy(&tr);
    if (st != SL_OK)
        return 1;
    char roles[32];
    if (cfg->prefill || cfg->decode)
        snprintf(roles, sizeof(roles), "%d:%d", cfg->prefill, cfg->decode);
    else
        snprintf(roles, sizeof(roles), "0:0/%d", o->executors);
    printf("%-24s %-8s %7.2f %8.2f %6.1f %8.3f %8.3f %7.1f %7.1f %6llu %7llu %8.1f %6.1f\n",
           cfg->name, roles, load, r->goodput_rps, 100 * r->slo_frac, r->p50_ttft_s, r->p99_ttft_s,
           1e3 * r->mean_tpot_s, 100 * r->split_share, (unsigned long long)r->kv_migrations,
           (unsigned long long)r->kv_fetches, r->mean_xfer_ms, 100 * r->busy_rate);
    fflush(stdout);
    return 0;
}

/* The default splits: 1/8, 2/8, 3/8 and 4/8 of the cluster prefill (for
 * 16 executors: 2:14, 4:12, 6:10, 8:8). */
static void s_default_ratios(s_opts_t *o)
{
    for (int k = 1; k <= 4; k++) {
        int pf = (o->executors * k + 4) / 8, dc = o->executors - pf;
        if (pf < 1 || dc < 1 || (o->n_ratios && o->ratios[o->n_ratios - 1][0] == pf))
            continue;
        o->ratios[o->n_ratios][0] = pf;
        o->ratios[o->n_ratios][1] = dc;
        o->n_ratios++;
    }
}

static int s_cmd_disagg(s_opts_t *o, const sl_trace_t *src)
{
    if (o->quick)
        o->requests = 300;
    if (o->n_ratios == 0)
        s_default_ratios(o);
    if (o->n_ratios == 0) {
        fprintf(stderr, "sluice-sim disagg: %d executors cannot be split into prefill and decode\n",
                o->executors);
        return 2;
    }
    double *speeds = s_speeds(o, o->executors);
    if (!speeds)
        return 1;
    int rc = 1;
    sl_sim_report_t agg, r;
    const s_dcfg_t agg_cfg = {.name = "aggregated"};
    printf("trace %s: %zu requests, %d executors (speeds %s), policy learned (+admission)\n"
           "links: %.0f Gbit/s, %.0f us per executor%s; KV %.0f bytes per token\n",
           o->trace, o->requests ? (size_t)o->requests : src->n, o->executors, o->speeds_list,
           o->link_gbps, o->link_latency_us,
           o->bg_traffic ? " (background traffic takes a share)" : "", o->kv_bytes_per_token);
    /* The load: given, or the highest at which aggregated serving still
     * meets S_SLO_TARGET of its SLOs (a grid of half a request per second
     * per executor, then bisection between the last load that passes and
     * the first that does not). */
    double load = o->load;
    if (load <= 0) {
        printf("\nfinding the load where aggregated serving misses its SLOs:\n");
        double lo = 0, hi = 0, step = 0.5 * o->executors;
        for (int k = 1; k <= 40 && hi == 0; k++) {
            double l = step * k;
            printf("  %.2f req/s: ", l);
            if (s_disagg_run(o, src, speeds, l, &agg_cfg, &agg) != 0)
                goto out;
            if (agg.slo_frac >= S_SLO_TARGET)
                lo = l;
            else
                hi = l;
        }
        for (int i = 0; i < (o->quick ? 2 : S_REFINE) && hi > 0; i++) {
            double mid = (lo + hi) / 2;
            printf("  %.2f req/s: ", mid);
            if (s_disagg_run(o, src, speeds, mid, &agg_cfg, &agg) != 0)
                goto out;
            if (agg.slo_frac >= S_SLO_TARGET)
                lo = mid;
            else
                hi = mid;
        }
        if (lo == 0) {
            fprintf(stderr,
                    "sluice-sim disagg: warning: aggregated serving misses %.0f%% of its "
                    "SLOs even at %.2f req/s; comparing there\n",
                    100 * S_SLO_TARGET, hi);
            lo = hi;
        }
        if (hi == 0)
            fprintf(stderr,
                    "sluice-sim disagg: warning: aggregated serving meets its SLOs at "
                    "every load tried, up to %.2f req/s; comparing there\n",
                    lo);
        load = lo;
    }
    printf("\n== at %.2f req/s ==\n", load);
    printf("%-24s %-8s %7s %8s %6s %8s %8s %7s %7s %6s %7s %8s %6s\n", "config", "P:D", "load",
           "goodput", "slo%", "p50ttft", "p99ttft", "tpot_ms", "split%", "moves", "fetches",
           "xfer_ms", "busy%");
    if (s_disagg_run(o, src, speeds, load, &agg_cfg, &agg) != 0)
        goto out;
    /* (b) fixed roles: every job is split */
    int best = -1;
    double best_gp = -1;
    for (int i = 0; i < o->n_ratios; i++) {
        s_dcfg_t c = {
            .name = "disaggregated", .prefill = o->ratios[i][0], .decode = o->ratios[i][1]};
        if (s_disagg_run(o, src, speeds, load, &c, &r) != 0)
            goto out;
        if (r.goodput_rps > best_gp) {
            best = i;
            best_gp = r.goodput_rps;
        }
    }
    /* (c) conditional: all mixed, the core splits when it predicts a gain */
    s_dcfg_t cond_cfg = {.name = "conditional", .split = true};
    sl_sim_report_t cond;
    if (s_disagg_run(o, src, speeds, load, &cond_cfg, &cond) != 0)
        goto out;
    /* (d) prefix fetch on top of the best split, and on aggregated serving
     * (the core fetches only for a job it does not split, so fixed roles
     * leave it nothing to fetch) */
    s_dcfg_t fetch_cfg = {.name = "best split + fetch",
                          .prefill = o->ratios[best][0],
                          .decode = o->ratios[best][1],
                          .fetch = true};
    sl_sim_report_t fetch, agg_fetch;
    if (s_disagg_run(o, src, speeds, load, &fetch_cfg, &fetch) != 0)
        goto out;
    s_dcfg_t agg_fetch_cfg = {.name = "aggregated + fetch", .fetch = true};
    if (s_disagg_run(o, src, speeds, load, &agg_fetch_cfg, &agg_fetch) != 0)
        goto out;
    /* (e) migration on top of the best split */
    s_dcfg_t mig_cfg = {.name = "best split + migration",
                        .prefill = o->ratios[best][0],
                        .decode = o->ratios[best][1],
                        .rebalance = true};
    sl_sim_report_t mig;
    if (s_disagg_run(o, src, speeds, load, &mig_cfg, &mig) != 0)
        goto out;
    double base = agg.goodput_rps > 0 ? agg.goodput_rps : NAN;
    printf("\nbest prefill:decode split: %d:%d (goodput %.2f req/s against %.2f aggregated)\n",
           o->ratios[best][0], o->ratios[best][1], best_gp, agg.goodput_rps);
    printf("RESULT disagg_vs_aggregated=%.3f best_split=%d:%d conditional_vs_aggregated=%.3f "
           "fetch_vs_aggregated=%.3f aggregated_fetch_vs_aggregated=%.3f "
           "migrate_vs_aggregated=%.3f load_rps=%.2f executors=%d trace=%s seed=%lld\n",
           best_gp / base, o->ratios[best][0], o->ratios[best][1], cond.goodput_rps / base,
           fetch.goodput_rps / base, agg_fetch.goodput_rps / base, mig.goodput_rps / base, load,
           o->executors, o->trace, (long long)o->seed);
    rc = 0;
out:
    free(speeds);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "matrix"))
        return sl_sim_matrix_main(argc - 1, argv + 1);
    if (strcmp(cmd, "run") && strcmp(cmd, "compare") && strcmp(cmd, "speed") &&
        strcmp(cmd, "disagg")) {
        fprintf(stderr, "sluice-sim: unknown command '%s'\n", cmd);
        s_usage(stderr);
        return 2;
    }
    if (!getenv("SLUICE_LOG_LEVEL"))
        sl_log_set_level(SL_LOG_ERROR); /* the core's warnings would drown the tables */
    s_opts_t o;
    int rc = s_parse(cmd, argc, argv, &o);
    if (rc >= 0)
        return rc;
    sl_trace_t *src = NULL;
    if (sl_trace_load(o.trace, o.trace_dir, SL_TRACE_AUTO, &src) != SL_OK)
        return 1;
    if (!strcmp(cmd, "run"))
        rc = s_cmd_run(&o, src);
    else if (!strcmp(cmd, "compare"))
        rc = s_cmd_compare(&o, src);
    else if (!strcmp(cmd, "disagg"))
        rc = s_cmd_disagg(&o, src);
    else
        rc = s_cmd_speed(&o, src);
    sl_trace_destroy(&src);
    return rc;
}
