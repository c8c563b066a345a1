/*
 * sluice-sim: the policy lab.
 *   sluice-sim run      one policy at one load; prints its figures
 *   sluice-sim compare  every policy over a sweep of offered loads; CSV,
 *                       gnuplot plots and a RESULT line comparing `learned`
 *                       with the best baseline and with round-robin
 *   sluice-sim speed    simulated requests per wall-clock minute on a large
 *                       cluster, and the learned policy's cost per decision
 * Results depend only on the options and the seed (virtual clock); only the
 * speed figures read the wall clock.
 *
 * The comparison load is chosen from the data (the highest offered load at
 * which some baseline still meets 90% of its SLOs) rather than fixed, so the
 * comparison is made where the baselines are still usable; a fixed load was
 * rejected because it is either trivially easy or past every baseline's
 * collapse depending on the cluster and trace.
 */
#include "bench/sim/sl_sim.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef SLUICE_TRACE_DIR
#define SLUICE_TRACE_DIR "../shared/data/traces"
#endif

#define S_MAX_LIST 64
#define S_REFINE 6 /* compare: bisection steps toward the comparison load */

typedef struct s_opts {
    char trace[512];        /* trace name or path */
    char trace_dir[512];    /* folder of the named traces */
    int executors;          /* cluster size */
    size_t requests;        /* requests taken from the trace */
    double rate;            /* run: offered load, req/s (0 = the trace's own) */
    double speedup;         /* run: time scaling instead of a rate */
    bool poisson;           /* Poisson arrivals at rate */
    double loads[S_MAX_LIST]; /* compare: offered loads, req/s */
    int n_loads;            /* entries of loads */
    char policies[S_MAX_LIST][64]; /* compare: policies */
    int n_policies;         /* entries of policies */
    char policy[64];        /* run: policy */
    double speeds[S_MAX_LIST]; /* executor speeds, cycled over the cluster */
    int n_speeds;           /* entries of speeds */
    bool admission;         /* learned runs with admission */
    bool admission_all;     /* baselines too */
    double slo_mult;        /* TTFT SLO multiple */
    double slo_floor;       /* TTFT SLO floor, s */
    double slo_tpot;        /* TPOT SLO, s */
    double fail_at;         /* failures at, s */
    int fail_count;         /* executors failing */
    uint64_t seed;          /* seed */
    char out[512];          /* output folder */
} s_opts_t;

static const char *const s_default_policies[] = {
    "learned", "kv-cost", "scorer", "cache-switch", "weighted", "session",
    "round-robin", "random", "least-outstanding", "p2c", NULL};

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: sluice-sim run|compare|speed [options]\n"
            "  --trace NAME|PATH    mooncake-conversation (default), mooncake-synthetic,\n"
            "                       azure-code, azure-conv, or a file\n"
            "  --trace-dir DIR      folder of the named traces (%s)\n"
            "  --executors N        cluster size (16; speed: 1000)\n"
            "  --requests N         requests taken from the trace (compare: 4000)\n"
            "  --rate R             run/speed: offered load in req/s\n"
            "  --speedup X          run: divide trace time by X instead\n"
            "  --poisson            Poisson arrivals at --rate (lengths drawn from the trace)\n"
            "  --loads R1,R2,...    compare: offered loads in req/s\n"
            "  --policies P1,P2,... compare: policies (all by default)\n"
            "  --policy P           run: policy (learned)\n"
            "  --speeds S1,S2,...   executor speeds, cycled over executors (1,1,0.5,0.5:\n"
            "                       half the fleet at half speed; 1 = uniform)\n"
            "  --no-admission       learned without predictive admission\n"
            "  --admission-all      baselines with admission too\n"
            "  --slo-ttft-mult X    TTFT SLO: X x unloaded TTFT (3)\n"
            "  --slo-ttft-floor S   ... at least S seconds (1)\n"
            "  --slo-tpot S         mean TPOT SLO in seconds (0.1)\n"
            "  --fail-at S --fail-count K   K executors fail at S s, back 30 s later\n"
            "  --seed N             seed (1)\n"
            "  --out DIR            CSV and plots (sim-out)\n",
            SLUICE_TRACE_DIR);
}

static int s_parse_list(const char *arg, double *out, int cap)
{
    int n = 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", arg);
    for (char *tok = strtok(buf, ","); tok && n < cap; tok = strtok(NULL, ",")) {
        char *end;
        double v = strtod(tok, &end);
        if (*end || !(v > 0))
            return -1;
        out[n++] = v;
    }
    return n;
}

static int s_parse(int argc, char **argv, s_opts_t *o)
{
    static const struct option longs[] = {
        {"trace", 1, 0, 't'},     {"trace-dir", 1, 0, 'D'},   {"executors", 1, 0, 'e'},
        {"requests", 1, 0, 'n'},  {"rate", 1, 0, 'r'},        {"speedup", 1, 0, 'x'},
        {"poisson", 0, 0, 'P'},   {"loads", 1, 0, 'l'},       {"policies", 1, 0, 'p'},
        {"policy", 1, 0, 'q'},    {"speeds", 1, 0, 's'},      {"no-admission", 0, 0, 'A'},
        {"admission-all", 0, 0, 'B'}, {"slo-ttft-mult", 1, 0, 'm'}, {"slo-ttft-floor", 1, 0, 'f'},
        {"slo-tpot", 1, 0, 'T'},  {"fail-at", 1, 0, 'F'},     {"fail-count", 1, 0, 'K'},
        {"seed", 1, 0, 'S'},      {"out", 1, 0, 'o'},         {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': snprintf(o->trace, sizeof(o->trace), "%s", optarg); break;
        case 'D': snprintf(o->trace_dir, sizeof(o->trace_dir), "%s", optarg); break;
        case 'e': o->executors = atoi(optarg); break;
        case 'n': o->requests = (size_t)strtoull(optarg, NULL, 10); break;
        case 'r': o->rate = atof(optarg); break;
        case 'x': o->speedup = atof(optarg); break;
        case 'P': o->poisson = true; break;
        case 'l':
            if ((o->n_loads = s_parse_list(optarg, o->loads, S_MAX_LIST)) <= 0) {
                fprintf(stderr, "sluice-sim: bad --loads '%s'\n", optarg);
                return 2;
            }
            break;
        case 'p': {
            char buf[1024];
            snprintf(buf, sizeof(buf), "%s", optarg);
            o->n_policies = 0;
            for (char *tok = strtok(buf, ","); tok && o->n_policies < S_MAX_LIST;
                 tok = strtok(NULL, ","))
                snprintf(o->policies[o->n_policies++], 64, "%s", tok);
            break;
        }
        case 'q': snprintf(o->policy, sizeof(o->policy), "%s", optarg); break;
        case 's':
            if ((o->n_speeds = s_parse_list(optarg, o->speeds, S_MAX_LIST)) <= 0) {
                fprintf(stderr, "sluice-sim: bad --speeds '%s'\n", optarg);
                return 2;
            }
            break;
        case 'A': o->admission = false; break;
        case 'B': o->admission_all = true; break;
        case 'm': o->slo_mult = atof(optarg); break;
        case 'f': o->slo_floor = atof(optarg); break;
        case 'T': o->slo_tpot = atof(optarg); break;
        case 'F': o->fail_at = atof(optarg); break;
        case 'K': o->fail_count = atoi(optarg); break;
        case 'S': o->seed = strtoull(optarg, NULL, 10); break;
        case 'o': snprintf(o->out, sizeof(o->out), "%s", optarg); break;
        case 'h': s_usage(stdout); return 1;
        default: s_usage(stderr); return 2;
        }
    }
    if (o->executors <= 0 || o->executors > SL_SIM_MAX_EXECS) {
        fprintf(stderr, "sluice-sim: --executors must be 1..%d\n", SL_SIM_MAX_EXECS);
        return 2;
    }
    for (int i = 0; i < o->n_policies; i++)
        if (!sl_policy_find(o->policies[i])) {
            fprintf(stderr, "sluice-sim: unknown policy '%s'\n", o->policies[i]);
            return 2;
        }
    if (!sl_policy_find(o->policy)) {
        fprintf(stderr, "sluice-sim: unknown policy '%s'\n", o->policy);
        return 2;
    }
    return 0;
}

static void s_defaults(s_opts_t *o, const char *cmd)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->trace, sizeof(o->trace), "mooncake-conversation");
    const char *dir = getenv("SLUICE_TRACE_DIR");
    snprintf(o->trace_dir, sizeof(o->trace_dir), "%s", dir && *dir ? dir : SLUICE_TRACE_DIR);
    o->executors = strcmp(cmd, "speed") == 0 ? 1000 : 16;
    o->requests = strcmp(cmd, "compare") == 0 ? 4000 : 0;
    snprintf(o->policy, sizeof(o->policy), "learned");
    for (int i = 0; s_default_policies[i]; i++)
        snprintf(o->policies[o->n_policies++], 64, "%s", s_default_policies[i]);
    o->admission = true;
    o->slo_mult = 3;
    o->slo_floor = 1;
    o->slo_tpot = 0.1;
    o->seed = 1;
    /* A mixed fleet by default: half the executors of an older generation
     * at half the speed (hybrid clouds and long-lived clusters look like
     * this); --speeds 1 gives a uniform one. */
    static const double fleet[] = {1, 1, 0.5, 0.5};
    o->n_speeds = (int)(sizeof(fleet) / sizeof(fleet[0]));
    memcpy(o->speeds, fleet, sizeof(fleet));
    snprintf(o->out, sizeof(o->out), "sim-out");
}

/* Speeds per executor, cycling the given list. Caller frees. */
static double *s_speeds(const s_opts_t *o, int n)
{
    double *v = malloc((size_t)n * sizeof(*v));
    for (int i = 0; v && i < n; i++)
        v[i] = o->n_speeds ? o->speeds[i % o->n_speeds] : 1.0;
    return v;
}

static void s_params(const s_opts_t *o, const sl_trace_t *tr, const char *policy,
                     const double *speeds, sl_sim_params_t *p)
{
    sl_sim_params_default(p);
    p->trace = tr;
    p->executors = o->executors;
    p->speeds = speeds;
    p->policy = policy;
    p->admission = strcmp(policy, "learned") == 0 ? o->admission : o->admission_all;
    p->slo_ttft_mult = o->slo_mult;
    p->slo_ttft_floor_s = o->slo_floor;
    p->slo_tpot_s = o->slo_tpot;
    p->fail_at_s = o->fail_at;
    p->fail_count = o->fail_count;
    p->seed = o->seed;
}

static sl_status_t s_schedule(const s_opts_t *o, const sl_trace_t *src, double rate,
                              double speedup, sl_trace_t **out_p)
{
    sl_trace_opts_t to = {.count = o->requests, .rate = rate, .speedup = speedup,
                          .poisson = o->poisson && rate > 0, .seed = o->seed};
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
    sl_status_t st = sl_sim_run(&p, &r);
    if (st == SL_OK) {
        s_print_header();
        s_print_row(o->policy, &r);
        printf("busy by reason: overload %llu, deadline %llu, tenant %llu\n",
               (unsigned long long)r.busy_by_reason[SL_BUSY_OVERLOAD],
               (unsigned long long)r.busy_by_reason[SL_BUSY_DEADLINE],
               (unsigned long long)r.busy_by_reason[SL_BUSY_TENANT]);
        printf("RESULT policy=%s offered_rps=%.3f goodput_rps=%.3f p50_ttft_s=%.4f "
               "p99_ttft_s=%.4f mean_tpot_s=%.4f busy_rate=%.4f hit_rate=%.4f ttft_mape=%.4f\n",
               o->policy, r.offered_rps, r.goodput_rps, r.p50_ttft_s, r.p99_ttft_s, r.mean_tpot_s,
               r.busy_rate, r.hit_rate, r.ttft_mape);
    }
    free(speeds);
    sl_trace_destroy(&tr);
    return st == SL_OK ? 0 : 1;
}

static void s_plot(const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "command -v gnuplot >/dev/null 2>&1");
    if (system(cmd) != 0) {
        printf("gnuplot not found: CSV only in %s\n", out);
        return;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/plots.gp", out);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f,
            "set datafile separator ','\nset terminal pngcairo size 1000,650 noenhanced\n"
            "set key outside right\nset grid\n"
            "set output '%s/goodput_vs_load.png'\nset title 'Goodput (both SLOs met) against offered load'\n"
            "set xlabel 'offered load (req/s)'\nset ylabel 'goodput (req/s)'\n"
            "plot for [i=0:*] '%s/compare.csv' index i using 2:3 with linespoints title columnheader(1)\n"
            "set output '%s/ttft_cdf.png'\nset title 'TTFT distribution at the comparison load'\n"
            "set xlabel 'time to first token (s)'\nset ylabel 'fraction of requests'\nset logscale x\n"
            "plot for [i=0:*] '%s/ttft_cdf.csv' index i using 2:3 with lines title columnheader(1)\n",
            out, out, out, out);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "gnuplot '%s' 2>/dev/null", path);
    if (system(cmd) == 0)
        printf("plots: %s/goodput_vs_load.png %s/ttft_cdf.png\n", out, out);
    else
        printf("gnuplot failed; CSV in %s\n", out);
}

/* Run every policy at one offered load into column l of rep; prints the rows. */
static int s_compare_load(const s_opts_t *o, const sl_trace_t *src, const double *speeds, double load,
                          sl_sim_report_t *rep, int cap, int l)
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

/* Whether a policy other than skip meets 90% of its SLOs in load column l. */
static bool s_compare_passes(const sl_sim_report_t *rep, int cap, int np, int l, int skip)
{
    for (int k = 0; k < np; k++)
        if (k != skip && rep[k * cap + l].slo_frac >= 0.9)
            return true;
    return false;
}

/* The highest load column that passes (columns in increasing load order);
 * -1 when none does. */
static int s_compare_at(const sl_sim_report_t *rep, int cap, int np, int nl, int skip)
{
    int at = -1;
    for (int l = 0; l < nl; l++)
        if (s_compare_passes(rep, cap, np, l, skip))
            at = l;
    return at;
}

static int s_cmd_compare(s_opts_t *o, const sl_trace_t *src)
{
    if (o->n_loads == 0) {
        static const double dflt[] = {4, 6, 8, 10, 12, 14, 16, 20};
        o->n_loads = (int)(sizeof(dflt) / sizeof(dflt[0]));
        memcpy(o->loads, dflt, sizeof(dflt));
    }
    int np = o->n_policies, nl = o->n_loads, cap = o->n_loads + S_REFINE;
    sl_sim_report_t *rep = calloc((size_t)np * cap, sizeof(*rep));
    double *speeds = s_speeds(o, o->executors);
    double loads[S_MAX_LIST + S_REFINE];
    if (!rep || !speeds)
        return 1;
    memcpy(loads, o->loads, (size_t)nl * sizeof(double));
    mkdir(o->out, 0755);
    printf("trace %s: %zu requests, %d executors, policies x loads = %d x %d\n", o->trace,
           o->requests ? o->requests : src->n, o->executors, np, nl);
    int learned = -1, rr = -1;
    for (int k = 0; k < np; k++) {
        if (!strcmp(o->policies[k], "learned"))
            learned = k;
        if (!strcmp(o->policies[k], "round-robin"))
            rr = k;
    }
    for (int l = 0; l < nl; l++)
        if (s_compare_load(o, src, speeds, loads[l], rep, cap, l) != 0)
            return 1;
    /* The comparison load: the highest where some baseline still meets 90%
     * of its SLOs. The grid only brackets it; bisecting between the last
     * grid load that passes and the next one finds it to within a few
     * percent, so the comparison is made where the best baseline is at its
     * limit rather than wherever the grid happens to fall. */
    int at = s_compare_at(rep, cap, np, nl, learned);
    double lo = at >= 0 ? loads[at] : 0, hi = INFINITY;
    for (int l = 0; l < nl; l++)
        if (loads[l] > lo && loads[l] < hi)
            hi = loads[l];
    for (int i = 0; i < S_REFINE && at >= 0 && isfinite(hi); i++) {
        double mid = (lo + hi) / 2;
        if (s_compare_load(o, src, speeds, mid, rep, cap, nl) != 0)
            return 1;
        loads[nl] = mid;
        if (s_compare_passes(rep, cap, np, nl, learned))
            lo = mid;
        else
            hi = mid;
        nl++;
    }
    /* Loads in increasing order for the tables and plots. */
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
    at = s_compare_at(rep, cap, np, nl, learned);
    if (at < 0)
        at = 0;
    int best = -1;
    for (int k = 0; k < np; k++)
        if (k != learned &&
            (best < 0 || rep[k * cap + at].goodput_rps > rep[best * cap + at].goodput_rps))
            best = k;
    char path[1024];
    snprintf(path, sizeof(path), "%s/compare.csv", o->out);
    FILE *f = fopen(path, "w");
    if (f) {
        for (int k = 0; k < np; k++) {
            fprintf(f, "%s\n", o->policies[k]);
            for (int l = 0; l < nl; l++) {
                const sl_sim_report_t *r = &rep[k * cap + l];
                fprintf(f, "%s,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n",
                        o->policies[k], r->offered_rps, r->goodput_rps, r->slo_frac,
                        r->busy_rate, r->p50_ttft_s, r->p99_ttft_s, r->mean_tpot_s, r->hit_rate,
                        r->ttft_mape, loads[l]);
            }
            fprintf(f, "\n\n");
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/ttft_cdf.csv", o->out);
    f = fopen(path, "w");
    if (f) {
        for (int k = 0; k < np; k++) {
            fprintf(f, "%s\n", o->policies[k]);
            for (int q = 1; q <= 100; q++) {
                double v = (double)sl_hist_quantile(&rep[k * cap + at].ttft_us, q / 100.0) / 1e6;
                fprintf(f, "%s,%.5f,%.2f\n", o->policies[k], v > 1e-4 ? v : 1e-4, q / 100.0);
            }
            fprintf(f, "\n\n");
        }
        fclose(f);
    }
    s_plot(o->out);
    double gp = 0, p99 = 0, mape = 0;
    if (learned >= 0 && best >= 0) {
        const sl_sim_report_t *L = &rep[learned * cap + at], *B = &rep[best * cap + at];
        gp = B->goodput_rps > 0 ? L->goodput_rps / B->goodput_rps : 0;
        mape = L->ttft_mape;
        if (rr >= 0 && rep[rr * cap + at].p99_ttft_s > 0)
            p99 = L->p99_ttft_s / rep[rr * cap + at].p99_ttft_s;
    }
    printf("\ncomparison load %.2f req/s (highest where a baseline meets 90%% of SLOs); best "
           "baseline there: %s\n",
           loads[at], best >= 0 ? o->policies[best] : "none");
    printf("RESULT goodput_vs_best_baseline=%.3f p99_ttft_vs_round_robin=%.3f ttft_mape=%.3f "
           "load_rps=%.2f best_baseline=%s executors=%d requests=%zu seed=%llu\n",
           gp, p99, mape, loads[at], best >= 0 ? o->policies[best] : "none", o->executors,
           o->requests, (unsigned long long)o->seed);
    free(speeds);
    free(rep);
    return 0;
}

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
 * prefix index: submit (placed at once) then complete, many times. */
static double s_place_cost_us(const char *policy, int n, uint64_t seed)
{
    sl_core_cfg_t cc;
    sl_core_cfg_default(&cc);
    snprintf(cc.policy, sizeof(cc.policy), "%s", policy);
    cc.max_executors = n;
    cc.done_ttl_ms = 0;
    static const sl_core_io_t io = {.dispatch = s_null_dispatch, .result = s_null_result};
    sl_core_t *core;
    if (sl_core_create(&cc, &io, NULL, &core) != SL_OK)
        return -1;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "x%d", i);
        sl_exec_info_t info = {.name = name, .slots = 32, .backend = "sim"};
        uint32_t idx;
        sl_core_exec_join(core, &info, NULL, 0, &idx);
        uint64_t h[24];
        for (int b = 0; b < 24; b++)
            h[b] = (uint64_t)(i % 200) * 1000 + (uint64_t)b + 1;
        sl_core_exec_kv_event(core, idx, h, 24, NULL, 0, false, 0);
    }
    sl_rand_t rnd;
    sl_rand_seed(&rnd, seed);
    const int jobs = 200000;
    uint64_t hashes[24];
    sl_time_t t0 = sl_clock_now();
    for (int j = 0; j < jobs; j++) {
        uint64_t conv = sl_rand_below(&rnd, 400);
        for (int b = 0; b < 24; b++)
            hashes[b] = conv * 1000 + (uint64_t)b + 1;
        char id[32];
        snprintf(id, sizeof(id), "j%d", j);
        sl_job_desc_t d = {.id = id, .prompt_tokens = 12000, .max_new_tokens = 300,
                           .block_hashes = hashes, .n_block_hashes = 24, .block_tokens = 512};
        sl_job_t *job;
        sl_busy_reason_t why;
        sl_time_t retry;
        sl_time_t now = SL_US(j * 10);
        if (sl_core_job_submit(core, &d, NULL, now, &job, &why, &retry) != SL_OK)
            continue;
        if (job->exec) {
            sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 300,
                                   .exec_ttft = SL_MS(300), .exec_end = SL_MS(3000)};
            sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now);
        }
        if ((j & 1023) == 0)
            sl_core_tick(core, now);
    }
    double us = (double)(sl_clock_now() - t0) / 1e3 / jobs;
    sl_core_destroy(&core);
    return us;
}

static int s_cmd_speed(s_opts_t *o, const sl_trace_t *src)
{
    /* Offered load just below the knee of the cluster (about 0.75 req/s
     * per executor of speed 1 on this trace, where SLO attainment starts to
     * fall), Poisson, with the trace's lengths and prefixes; two minutes of
     * virtual time, long enough for a steady state. */
    double rate = o->rate > 0 ? o->rate : 0.6 * o->executors;
    if (o->requests == 0)
        o->requests = (size_t)(rate * 120);
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
    sl_time_t t0 = sl_clock_now();
    sl_status_t st = sl_sim_run(&p, &r);
    double wall = (double)(sl_clock_now() - t0) / 1e9;
    free(speeds);
    sl_trace_destroy(&tr);
    if (st != SL_OK)
        return 1;
    s_print_header();
    s_print_row(o->policy, &r);
    double place_us = s_place_cost_us(o->policy, o->executors, o->seed);
    double rpm = (double)r.requests / wall * 60.0;
    printf("simulated %llu requests (%.0f s of virtual time, %llu events) in %.2f s of wall "
           "time\n",
           (unsigned long long)r.requests, r.sim_end_s, (unsigned long long)r.events, wall);
    printf("placement cost of %s over %d executors: %.2f us per decision (submit + place + "
           "complete)\n",
           o->policy, o->executors, place_us);
    printf("RESULT requests_per_min=%.0f place_us=%.2f executors=%d policy=%s wall_s=%.2f "
           "requests=%llu\n",
           rpm, place_us, o->executors, o->policy, wall, (unsigned long long)r.requests);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") && strcmp(cmd, "compare") && strcmp(cmd, "speed")) {
        fprintf(stderr, "sluice-sim: unknown command '%s'\n", cmd);
        s_usage(stderr);
        return 2;
    }
    sl_log_set_level(SL_LOG_ERROR);
    s_opts_t o;
    s_defaults(&o, cmd);
    int rc = s_parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    sl_trace_t *src = NULL;
    if (sl_trace_load(o.trace, o.trace_dir, SL_TRACE_AUTO, &src) != SL_OK)
        return 1;
    if (!strcmp(cmd, "run"))
        rc = s_cmd_run(&o, src);
    else if (!strcmp(cmd, "compare"))
        rc = s_cmd_compare(&o, src);
    else
        rc = s_cmd_speed(&o, src);
    sl_trace_destroy(&src);
    return rc;
}
