/*
 * sluice-sim matrix: `sluice-sim compare` over a matrix of scenarios.
 *
 * A matrix is a list of cells; a cell is one compare run with its own
 * trace, fleet (uniform, or speeds spread over 4x), failures (none, or an
 * eighth of the executors failing a third into the run), cluster size and
 * share of batch requests. By default the traces x fleets x failures cross
 * runs at the smallest size and each trace runs on the spread fleet at the
 * larger sizes (--full: the whole cross product at every size): a full
 * cross at 256 executors would take hours on a small host and adds little
 * that the spread fleet, the harder case, does not show. Requests and the
 * load grid scale with the cluster, so a large cluster is loaded as much
 * as a small one.
 *
 * Each cell is a separate process: this very program (/proc/self/exe)
 * running `compare ... --out CELLDIR --plot false`, its stdout in
 * CELLDIR/out.txt, at most --jobs at once. Threads in one process were
 * rejected: compare is single-threaded and keeps process-wide state (the
 * log level, stdout), and a crashed or stuck cell must fail alone. The
 * cells talk back only through their output folder (out.txt's last
 * `RESULT ` line, parsed as key=value pairs by name so that compare may add
 * keys, and an `rc` file with the exit status), so the same merge serves
 * cells run here, by a Slurm job array (--launcher slurm: one array task
 * per line of cells.txt, submitted with `sbatch --wait`) or by a Kubernetes
 * Indexed Job rendered for the user to apply (--launcher k8s; `--merge DIR`
 * merges afterwards). A cell that exits nonzero or prints no RESULT is
 * marked failed and the matrix exits 1.
 *
 * cells.txt holds one cell a line, `NAME TRACE FLEET FAILURES EXECUTORS
 * BATCH_SHARE compare OPTIONS...`, words without blanks: a POSIX shell
 * splits it with `set --`, so the Slurm and Kubernetes scripts need no
 * parser. The output folder and trace folder therefore must not contain
 * blanks for those launchers (refused).
 */
#include "bench/sim/sim_matrix.h"

#include "bench/sim/sl_sim_out.h"
#include "bench/sim/sl_sim_plot.h"
#include "bench/sl_bench_proc.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SLUICE_TRACE_DIR
#define SLUICE_TRACE_DIR "data/traces"
#endif

#define S_MX_AXIS_MAX 16    /* entries of one axis list */
#define S_MX_KEYS_MAX 64    /* distinct RESULT keys kept for the CSV */
#define S_MX_WORD 128       /* a cell's name, trace or key */
#define S_MX_LINE 4096      /* a line of cells.txt or a RESULT line */
#define S_MX_PATH PATH_MAX  /* a file under the output folder */
#define S_MX_QUICK_REQS 20  /* --quick: requests per cell */
#define S_MX_FAIL_SHARE 8   /* failures: one executor in this many fails */
#define S_MX_FAIL_FRAC 0.33 /* failures: this far into the run */

static const char *const s_mx_prog = "sluice-sim matrix";

typedef struct s_mx_opts {
    char traces[512];          /* trace axis ("" = per --quick) */
    char fleets[128];          /* fleet axis */
    char failures[128];        /* failure axis */
    char sizes[256];           /* executors axis */
    char batch_shares[256];    /* batch share axis */
    bool full;                 /* the whole cross product at every size */
    bool quick;                /* tiny cells, for tests */
    int jobs;                  /* cells at once (0 = online cores) */
    char launcher[16];         /* local, slurm or k8s */
    char merge[512];           /* merge this folder only */
    char out[512];             /* output folder ("" = a fresh one) */
    bool plot;                 /* draw the plots */
    int64_t seed;              /* every cell's seed */
    char trace_dir[512];       /* folder of the named traces */
    int requests_per_executor; /* requests per cell = this x executors */
    char policies[1024];       /* compare's --policies ("" = compare's own) */
    char k8s_image[256];       /* k8s: container image holding sluice-sim */
    char k8s_trace_dir[256];   /* k8s: the traces' folder inside the image */
    char k8s_pvc[128];         /* k8s: claim of the results volume */
    char k8s_name[64];         /* k8s: name of the Job and ConfigMap */
} s_mx_opts_t;

/* clang-format off */
static const sl_cfg_field_t s_mx_table[] = {
    SL_CFG_FIELD(s_mx_opts_t, traces, "traces", "", SL_CFG_STR,
                 "traces, comma-separated (default: all four; --quick: mooncake-conversation,azure-code)"),
    SL_CFG_FIELD(s_mx_opts_t, fleets, "fleets", "uniform,spread", SL_CFG_STR,
                 "fleets: uniform (speeds 1) and/or spread (speeds 1,0.75,0.5,0.25)"),
    SL_CFG_FIELD(s_mx_opts_t, failures, "failures", "none,on", SL_CFG_STR,
                 "failures: none and/or on (an eighth of the executors fail a third into the run)"),
    SL_CFG_FIELD(s_mx_opts_t, sizes, "sizes", "", SL_CFG_STR,
                 "executors per cell, comma-separated (default 16,64,256; --quick: 4)"),
    SL_CFG_FIELD(s_mx_opts_t, batch_shares, "batch-shares", "0", SL_CFG_STR,
                 "shares of batch requests, comma-separated (compare's --batch-share)"),
    SL_CFG_FIELD(s_mx_opts_t, full, "full", "false", SL_CFG_BOOL,
                 "every combination at every size (default: the full cross at the first size, "
                 "then each trace on the last fleet at the other sizes)"),
    SL_CFG_FIELD(s_mx_opts_t, quick, "quick", "false", SL_CFG_BOOL,
                 "tiny cells for tests (20 requests, 3 policies, 4 executors)"),
    SL_CFG_RANGE(s_mx_opts_t, jobs, "jobs", "0", SL_CFG_INT, 0, 4096,
                 "cells run at once (0 = the online cores; slurm: the array's limit)"),
    SL_CFG_FIELD(s_mx_opts_t, launcher, "launcher", "local", SL_CFG_STR,
                 "local (child processes), slurm (sbatch --wait job array) or k8s (render an "
                 "Indexed Job)"),
    SL_CFG_FIELD(s_mx_opts_t, merge, "merge", "", SL_CFG_STR,
                 "merge the cells of this output folder (run elsewhere) and run nothing"),
    SL_CFG_FIELD(s_mx_opts_t, out, "out", "", SL_CFG_STR,
                 "output folder (\"\" = a fresh folder under $TMPDIR or /tmp)"),
    SL_CFG_FIELD(s_mx_opts_t, plot, "plot", "true", SL_CFG_BOOL,
                 "draw the plots with gnuplot (the .gp scripts are written either way)"),
    SL_CFG_FIELD(s_mx_opts_t, seed, "seed", "1", SL_CFG_I64, "every cell's seed"),
    SL_CFG_FIELD(s_mx_opts_t, trace_dir, "trace-dir", SLUICE_TRACE_DIR, SL_CFG_STR,
                 "folder of the named traces"),
    SL_CFG_RANGE(s_mx_opts_t, requests_per_executor, "requests-per-executor", "250", SL_CFG_INT, 1,
                 1000000, "requests of a cell per executor (--quick: 20 per cell)"),
    SL_CFG_FIELD(s_mx_opts_t, policies, "policies", "", SL_CFG_STR,
                 "compare's --policies (\"\" = compare's default; --quick: learned,round-robin,"
                 "least-outstanding)"),
    SL_CFG_FIELD(s_mx_opts_t, k8s_image, "k8s-image", "sluice:latest", SL_CFG_STR,
                 "k8s: container image with sluice-sim on its PATH"),
    SL_CFG_FIELD(s_mx_opts_t, k8s_trace_dir, "k8s-trace-dir", "/opt/sluice/traces", SL_CFG_STR,
                 "k8s: folder of the named traces inside the image"),
    SL_CFG_FIELD(s_mx_opts_t, k8s_pvc, "k8s-pvc", "sluice-matrix-results", SL_CFG_STR,
                 "k8s: persistent volume claim the cells write their folders to"),
    SL_CFG_FIELD(s_mx_opts_t, k8s_name, "k8s-name", "sluice-matrix", SL_CFG_STR,
                 "k8s: name of the Job and of its ConfigMap"),
    SL_CFG_END,
};
/* clang-format on */

/* A cell: one compare run and what came back. */
typedef struct s_mx_cell {
    char name[S_MX_WORD];   /* folder under cells/, unique */
    char trace[S_MX_WORD];  /* trace name or file */
    char fleet[16];         /* uniform or spread */
    char failures[32];      /* "none" or "K@Ts" */
    int executors;          /* cluster size */
    double batch_share;     /* compare's --batch-share */
    char args[S_MX_LINE];   /* "compare --trace ...", blank-separated */
    pid_t pid;              /* local: the running child, 0 when none */
    double t0;              /* local: when it started, s */
    int rc;                 /* exit status; -1 unknown */
    char result[S_MX_LINE]; /* the last RESULT line's pairs ("" = none) */
} s_mx_cell_t;

typedef struct s_mx_axes {
    char traces[S_MX_AXIS_MAX][S_MX_WORD]; /* trace names */
    int n_traces;                          /* entries */
    char fleets[S_MX_AXIS_MAX][16];        /* uniform or spread */
    int n_fleets;                          /* entries */
    bool fail[S_MX_AXIS_MAX];              /* failures on */
    int n_fail;                            /* entries */
    int sizes[S_MX_AXIS_MAX];              /* executors */
    int n_sizes;                           /* entries */
    double shares[S_MX_AXIS_MAX];          /* batch shares */
    int n_shares;                          /* entries */
} s_mx_axes_t;

static double s_mx_now(void)
{
    return (double)sl_clock_now() / 1e9;
}

/* Split a comma list into words of at most cap - 1 characters without
 * blanks; -1 with a message when empty, too long or too many. */
static int s_mx_words(const char *flag, const char *list, char *words, size_t cap)
{
    char buf[1024];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (n == S_MX_AXIS_MAX || strlen(w) >= cap || strpbrk(w, " \t\n'\"")) {
            fprintf(stderr, "%s: --%s: '%s' is not a list of at most %d names without blanks\n",
                    s_mx_prog, flag, list, S_MX_AXIS_MAX);
            return -1;
        }
        snprintf(words + (size_t)n * cap, cap, "%s", w);
        n++;
    }
    if (n == 0)
        fprintf(stderr, "%s: --%s is empty\n", s_mx_prog, flag);
    return n > 0 ? n : -1;
}

/* The axes from the options, --quick's defaults where not given. Nonzero
 * with a message when one is bad. */
static int s_mx_axes(const s_mx_opts_t *o, s_mx_axes_t *ax)
{
    char words[S_MX_AXIS_MAX][S_MX_WORD];
    const char *traces = o->traces[0] ? o->traces
                         : o->quick
                             ? "mooncake-conversation,azure-code"
                             : "mooncake-conversation,mooncake-synthetic,azure-code,azure-conv";
    const char *sizes = o->sizes[0] ? o->sizes : o->quick ? "4" : "16,64,256";
    if ((ax->n_traces = s_mx_words("traces", traces, ax->traces[0], S_MX_WORD)) < 0)
        return 2;
    if ((ax->n_fleets = s_mx_words("fleets", o->fleets, ax->fleets[0], 16)) < 0)
        return 2;
    for (int i = 0; i < ax->n_fleets; i++)
        if (strcmp(ax->fleets[i], "uniform") && strcmp(ax->fleets[i], "spread")) {
            fprintf(stderr, "%s: --fleets: '%s' is not uniform or spread\n", s_mx_prog,
                    ax->fleets[i]);
            return 2;
        }
    if ((ax->n_fail = s_mx_words("failures", o->failures, words[0], S_MX_WORD)) < 0)
        return 2;
    for (int i = 0; i < ax->n_fail; i++) {
        if (strcmp(words[i], "none") && strcmp(words[i], "on")) {
            fprintf(stderr, "%s: --failures: '%s' is not none or on\n", s_mx_prog, words[i]);
            return 2;
        }
        ax->fail[i] = !strcmp(words[i], "on");
    }
    if ((ax->n_sizes = s_mx_words("sizes", sizes, words[0], S_MX_WORD)) < 0)
        return 2;
    for (int i = 0; i < ax->n_sizes; i++) {
        char *end;
        long v = strtol(words[i], &end, 10);
        if (*end || v < 1 || v > 100000) {
            fprintf(stderr, "%s: --sizes: '%s' is not a number of executors (1 to 100000)\n",
                    s_mx_prog, words[i]);
            return 2;
        }
        ax->sizes[i] = (int)v;
    }
    if ((ax->n_shares = s_mx_words("batch-shares", o->batch_shares, words[0], S_MX_WORD)) < 0)
        return 2;
    for (int i = 0; i < ax->n_shares; i++) {
        char *end;
        double v = strtod(words[i], &end);
        if (*end || !(v >= 0 && v <= 1)) {
            fprintf(stderr, "%s: --batch-shares: '%s' is not a share from 0 to 1\n", s_mx_prog,
                    words[i]);
            return 2;
        }
        ax->shares[i] = v;
    }
    return 0;
}

/* A guess at the capacity of one executor on a trace, req/s, from compare
 * on 16 executors of the spread fleet (azure-code raised from the 1.3
 * measured there: its uniform fleet and large clusters went past 3x that
 * without saturating): the load grid is laid around it so that each
 * cell's sweep brackets its saturation (the Mooncake traces saturate at a
 * twentieth of the Azure conversations' rate). A trace not named here
 * gets 1. */
static double s_mx_capacity_guess(const char *trace)
{
    static const struct {
        const char *trace;
        double rps;
    } guess[] = {{"mooncake-conversation", 0.3},
                 {"mooncake-synthetic", 0.6},
                 {"azure-code", 2},
                 {"azure-conv", 6}};
    for (size_t i = 0; i < sizeof(guess) / sizeof(guess[0]); i++)
        if (!strcmp(guess[i].trace, trace))
            return guess[i].rps;
    return 1;
}

/* Fill c's compare options from its axes. */
static void s_mx_cell_args(const s_mx_opts_t *o, s_mx_cell_t *c, bool fail)
{
    static const double grid[] = {0.25, 0.5, 0.75, 1, 1.5, 2, 3};
    static const double quick_grid[] = {0.5, 1, 2};
    const double *g = o->quick ? quick_grid : grid;
    int ng = o->quick ? 3 : (int)(sizeof(grid) / sizeof(grid[0]));
    double cap = s_mx_capacity_guess(c->trace) * c->executors;
    long long reqs =
        o->quick ? S_MX_QUICK_REQS : (long long)o->requests_per_executor * c->executors;
    char loads[256] = "";
    for (int i = 0, len = 0; i < ng; i++)
        len +=
            snprintf(loads + len, sizeof(loads) - (size_t)len, "%s%.3g", i ? "," : "", g[i] * cap);
    int len = snprintf(c->args, sizeof(c->args),
                       "compare --trace %s --executors %d --speeds %s --requests %lld --loads %s "
                       "--batch-share %g --seed %lld",
                       c->trace, c->executors, strcmp(c->fleet, "spread") ? "1" : "1,0.75,0.5,0.25",
                       reqs, loads, c->batch_share, (long long)o->seed);
    snprintf(c->failures, sizeof(c->failures), "none");
    if (fail) {
        /* An eighth of the executors (at least one), a third into the run
         * at the sweep's highest load: higher loads end sooner, so a time
         * taken at the guessed capacity fell after the end of the runs
         * above it, the comparison load's among them. */
        int k = c->executors / S_MX_FAIL_SHARE > 0 ? c->executors / S_MX_FAIL_SHARE : 1;
        double at = floor(S_MX_FAIL_FRAC * (double)reqs / (g[ng - 1] * cap));
        at = at >= 1 ? at : 1;
        len += snprintf(c->args + len, sizeof(c->args) - (size_t)len,
                        " --fail-at %.0f --fail-count %d", at, k);
        snprintf(c->failures, sizeof(c->failures), "%d@%.0fs", k, at);
    }
    const char *pol = o->policies[0] ? o->policies
                      : o->quick     ? "learned,round-robin,least-outstanding"
                                     : "";
    if (pol[0])
        snprintf(c->args + len, sizeof(c->args) - (size_t)len, " --policies %s", pol);
}

static void s_mx_cell_add(const s_mx_opts_t *o, s_mx_cell_t *cells, int *n, const char *trace,
                          const char *fleet, bool fail, int executors, double share)
{
    s_mx_cell_t *c = &cells[(*n)];
    memset(c, 0, sizeof(*c));
    snprintf(c->trace, sizeof(c->trace), "%s", trace);
    snprintf(c->fleet, sizeof(c->fleet), "%s", fleet);
    c->executors = executors;
    c->batch_share = share;
    c->rc = -1;
    s_mx_cell_args(o, c, fail);
    /* the trace's base name: a file path must not make folders */
    const char *base = strrchr(trace, '/') ? strrchr(trace, '/') + 1 : trace;
    snprintf(c->name, sizeof(c->name), "%03d-%.60s-%s-%s-%d-b%g", *n, base, fleet,
             fail ? "fail" : "nofail", executors, share);
    (*n)++;
}

/* The cells: see the design comment for which combinations. Caller frees. */
static s_mx_cell_t *s_mx_cells(const s_mx_opts_t *o, const s_mx_axes_t *ax, int *n_p)
{
    size_t cap = (size_t)ax->n_traces * ax->n_fleets * ax->n_fail * ax->n_sizes * ax->n_shares;
    s_mx_cell_t *cells = calloc(cap, sizeof(*cells));
    int n = 0;
    if (!cells)
        return NULL;
    for (int s = 0; s < ax->n_sizes; s++) {
        bool cross = o->full || s == 0;
        for (int t = 0; t < ax->n_traces; t++)
            for (int f = cross ? 0 : ax->n_fleets - 1; f < ax->n_fleets; f++)
                for (int x = 0; x < (cross ? ax->n_fail : 1); x++)
                    for (int b = 0; b < (cross ? ax->n_shares : 1); b++)
                        s_mx_cell_add(o, cells, &n, ax->traces[t], ax->fleets[f], ax->fail[x],
                                      ax->sizes[s], ax->shares[b]);
    }
    *n_p = n;
    return cells;
}

/* dir/rel into buf; false when it does not fit. */
static bool s_mx_path(char *buf, const char *dir, const char *rel)
{
    return snprintf(buf, S_MX_PATH, "%s/%s", dir, rel) < S_MX_PATH;
}

/* The output folder, made and turned absolute in o->out (the Slurm tasks
 * run in it), with its cells folder; false with the cause printed. */
static bool s_mx_out_dir(s_mx_opts_t *o)
{
    if (!sl_sim_out_dir(s_mx_prog, o->out, sizeof(o->out), "sluice-matrix"))
        return false;
    char abs[S_MX_PATH];
    if (!realpath(o->out, abs) || strlen(abs) >= sizeof(o->out)) {
        fprintf(stderr, "%s: cannot resolve the output folder %s\n", s_mx_prog, o->out);
        return false;
    }
    snprintf(o->out, sizeof(o->out), "%s", abs);
    char cells[S_MX_PATH];
    return s_mx_path(cells, o->out, "cells") && sl_sim_out_mkdir(s_mx_prog, cells);
}

/* cells.txt: one cell a line (the design comment gives the format). */
static bool s_mx_write_cells(const char *dir, const s_mx_cell_t *cells, int n)
{
    FILE *f = sl_sim_out_open(s_mx_prog, dir, "cells.txt");
    if (!f)
        return false;
    for (int i = 0; i < n; i++)
        fprintf(f, "%s %s %s %s %d %g %s\n", cells[i].name, cells[i].trace, cells[i].fleet,
                cells[i].failures, cells[i].executors, cells[i].batch_share, cells[i].args);
    return sl_sim_out_close(s_mx_prog, f, dir, "cells.txt");
}

/* Read dir/cells.txt back (--merge). Caller frees; NULL with a message. */
static s_mx_cell_t *s_mx_read_cells(const char *dir, int *n_p)
{
    char path[S_MX_PATH], line[S_MX_LINE + 512];
    FILE *f = s_mx_path(path, dir, "cells.txt") ? fopen(path, "r") : NULL;
    if (!f) {
        fprintf(stderr, "%s: --merge: cannot read %s/cells.txt: %s\n", s_mx_prog, dir,
                strerror(errno));
        return NULL;
    }
    int n = 0, cap = 0;
    s_mx_cell_t *cells = NULL;
    while (fgets(line, sizeof(line), f)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            s_mx_cell_t *more = realloc(cells, (size_t)cap * sizeof(*cells));
            if (!more)
                goto err;
            cells = more;
        }
        s_mx_cell_t *c = &cells[n];
        memset(c, 0, sizeof(*c));
        c->rc = -1;
        int used = 0;
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "%127s %127s %15s %31s %d %lf %n", c->name, c->trace, c->fleet,
                   c->failures, &c->executors, &c->batch_share, &used) != 6 ||
            strncmp(line + used, "compare ", 8)) {
            fprintf(stderr, "%s: --merge: %s/cells.txt line %d is not a cell\n", s_mx_prog, dir,
                    n + 1);
            goto err;
        }
        snprintf(c->args, sizeof(c->args), "%s", line + used);
        n++;
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "%s: --merge: %s/cells.txt has no cells\n", s_mx_prog, dir);
        free(cells);
        return NULL;
    }
    *n_p = n;
    return cells;
err:
    fclose(f);
    free(cells);
    return NULL;
}

/* --- local: child processes --- */

static pid_t s_mx_spawn(const s_mx_opts_t *o, const char *exe, s_mx_cell_t *c)
{
    char dir[S_MX_PATH], path[S_MX_PATH], words[S_MX_LINE];
    char *argv[256];
    char *const fixed[] = {(char *)exe, NULL};
    if (!s_mx_path(dir, o->out, "cells") ||
        snprintf(path, sizeof(path), "%s/%s", dir, c->name) >= (int)sizeof(path))
        return -1;
    if (!sl_sim_out_mkdir(s_mx_prog, path))
        return -1;
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(words, sizeof(words), "%s", c->args);
    int n = sl_bench_argv(argv, 250, fixed, words);
    argv[n++] = "--trace-dir";
    argv[n++] = (char *)o->trace_dir;
    argv[n++] = "--out";
    argv[n++] = dir;
    argv[n++] = "--plot";
    argv[n++] = "false";
    argv[n] = NULL;
    int fds[2];
    static const char *const names[2] = {"out.txt", "err.txt"};
    for (int i = 0; i < 2; i++) {
        if (!s_mx_path(path, dir, names[i]) ||
            (fds[i] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
            fprintf(stderr, "%s: cannot write %s/%s: %s\n", s_mx_prog, dir, names[i],
                    strerror(errno));
            if (i)
                close(fds[0]);
            return -1;
        }
    }
    if (s_mx_path(path, dir, "rc"))
        unlink(path); /* a previous run's */
    fflush(stdout);
    pid_t pid = sl_bench_spawn_out(argv, fds[0], fds[1]);
    close(fds[0]);
    close(fds[1]);
    return pid;
}

static void s_mx_write_rc(const s_mx_opts_t *o, const s_mx_cell_t *c)
{
    char rel[S_MX_WORD + 16];
    snprintf(rel, sizeof(rel), "cells/%s/rc", c->name);
    FILE *f = sl_sim_out_open(s_mx_prog, o->out, rel);
    if (f) {
        fprintf(f, "%d\n", c->rc);
        sl_sim_out_close(s_mx_prog, f, o->out, rel);
    }
}

/* Run the cells, at most --jobs at once; each cell's rc is set. */
static int s_mx_run_local(const s_mx_opts_t *o, s_mx_cell_t *cells, int n)
{
    char exe[S_MX_PATH];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0) {
        fprintf(stderr, "%s: cannot find this program (/proc/self/exe): %s\n", s_mx_prog,
                strerror(errno));
        return 1;
    }
    exe[len] = '\0';
    int running = 0, next = 0, done = 0;
    while (next < n || running > 0) {
        while (running < o->jobs && next < n) {
            s_mx_cell_t *c = &cells[next++];
            c->t0 = s_mx_now();
            c->pid = s_mx_spawn(o, exe, c);
            if (c->pid < 0) {
                c->pid = 0;
                c->rc = 127;
                s_mx_write_rc(o, c);
                printf("[%d/%d] %s: failed (not started)\n", ++done, n, c->name);
                continue;
            }
            running++;
        }
        if (running == 0)
            continue;
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: waitpid: %s\n", s_mx_prog, strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            s_mx_cell_t *c = &cells[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            c->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            s_mx_write_rc(o, c);
            running--;
            printf("[%d/%d] %s: %s %d (%.1f s)\n", ++done, n, c->name,
                   c->rc ? "failed, exit" : "done, exit", c->rc, s_mx_now() - c->t0);
            fflush(stdout);
        }
    }
    return 0;
}

/* --- slurm and k8s: a shell script per cell --- */

/* The POSIX shell lines that run cell number $idx_var of $CELLS into
 * $OUT/cells/NAME (out.txt, err.txt, rc), with $BIN and $TRACE_DIR. */
static void s_mx_cell_script(FILE *f, const char *indent, const char *idx_var)
{
    fprintf(
        f,
        "%sset -- $(sed -n \"$((%s + 1))p\" \"$CELLS\")\n"
        "%sname=$1\n"
        "%sshift 6\n"
        "%smkdir -p \"$OUT/cells/$name\"\n"
        "%s\"$BIN\" \"$@\" --trace-dir \"$TRACE_DIR\" --out \"$OUT/cells/$name\" --plot false \\\n"
        "%s  >\"$OUT/cells/$name/out.txt\" 2>\"$OUT/cells/$name/err.txt\"\n"
        "%src=$?\n"
        "%secho \"$rc\" >\"$OUT/cells/$name/rc\"\n"
        "%sexit \"$rc\"\n",
        indent, idx_var, indent, indent, indent, indent, indent, indent, indent, indent);
}

static bool s_mx_blank_free(const char *what, const char *s)
{
    if (!strpbrk(s, " \t\n'\"\\$`"))
        return true;
    fprintf(stderr,
            "%s: %s '%s' has a blank, quote or shell character; the %s launcher's script "
            "cannot name it\n",
            s_mx_prog, what, s, "slurm or k8s");
    return false;
}

static int s_mx_run_slurm(const s_mx_opts_t *o, s_mx_cell_t *cells, int n)
{
    char exe[S_MX_PATH], td[S_MX_PATH];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0 || !realpath(o->trace_dir, td)) {
        fprintf(stderr, "%s: cannot resolve this program or --trace-dir %s\n", s_mx_prog,
                o->trace_dir);
        return 1;
    }
    exe[len] = '\0';
    if (!s_mx_blank_free("the output folder", o->out) || !s_mx_blank_free("the program", exe) ||
        !s_mx_blank_free("--trace-dir", td))
        return 1;
    for (int i = 0; i < n; i++) {
        char rel[S_MX_WORD + 16], path[S_MX_PATH];
        snprintf(rel, sizeof(rel), "cells/%s/rc", cells[i].name);
        if (s_mx_path(path, o->out, rel))
            unlink(path); /* a previous run's */
    }
    FILE *f = sl_sim_out_open(s_mx_prog, o->out, "matrix.sbatch");
    if (!f)
        return 1;
    fprintf(f,
            "#!/bin/sh\n"
            "# sluice-sim matrix: one array task per line of cells.txt\n"
            "#SBATCH --job-name=sluice-matrix\n"
            "#SBATCH --chdir=%s\n"
            "#SBATCH --output=%s/cells/slurm-%%a.log\n"
            "#SBATCH --ntasks=1\n"
            "#SBATCH --cpus-per-task=1\n"
            "BIN=%s\nTRACE_DIR=%s\nCELLS=%s/cells.txt\nOUT=%s\n",
            o->out, o->out, exe, td, o->out, o->out);
    s_mx_cell_script(f, "", "SLURM_ARRAY_TASK_ID");
    if (!sl_sim_out_close(s_mx_prog, f, o->out, "matrix.sbatch"))
        return 1;
    char array[64], script[S_MX_PATH];
    snprintf(array, sizeof(array), "--array=0-%d%%%d", n - 1, o->jobs);
    s_mx_path(script, o->out, "matrix.sbatch");
    char *argv[] = {"sbatch", "--wait", array, script, NULL};
    printf("submitting: sbatch --wait %s %s\n", array, script);
    fflush(stdout);
    pid_t pid = sl_bench_spawn_out(argv, SL_BENCH_INHERIT, SL_BENCH_INHERIT);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return 1;
    int rc = pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 127 || rc < 0) {
        fprintf(stderr, "%s: sbatch could not be run (is Slurm installed?)\n", s_mx_prog);
        return 1;
    }
    if (rc != 0)
        fprintf(stderr, "%s: sbatch exited %d (a task failed or the job was refused)\n", s_mx_prog,
                rc);
    return 0;
}

/* Render the ConfigMap and the Indexed Job into matrix-job.yaml. */
static int s_mx_render_k8s(const s_mx_opts_t *o, const s_mx_cell_t *cells, int n)
{
    if (!s_mx_blank_free("--k8s-trace-dir", o->k8s_trace_dir) ||
        !s_mx_blank_free("--k8s-image", o->k8s_image) ||
        !s_mx_blank_free("--k8s-name", o->k8s_name))
        return 1;
    FILE *f = sl_sim_out_open(s_mx_prog, o->out, "matrix-job.yaml");
    if (!f)
        return 1;
    fprintf(f,
            "# sluice-sim matrix: %d cells as a Kubernetes Indexed Job\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s-cells\ndata:\n"
            "  cells.txt: |\n",
            n, o->k8s_name);
    for (int i = 0; i < n; i++)
        fprintf(f, "    %s %s %s %s %d %g %s\n", cells[i].name, cells[i].trace, cells[i].fleet,
                cells[i].failures, cells[i].executors, cells[i].batch_share, cells[i].args);
    fprintf(f,
            "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: %s\nspec:\n"
            "  completionMode: Indexed\n  completions: %d\n  parallelism: %d\n"
            "  backoffLimit: %d\n"
            "  template:\n    spec:\n      restartPolicy: Never\n      containers:\n"
            "        - name: cell\n          image: %s\n"
            "          env:\n"
            "            - {name: BIN, value: sluice-sim}\n"
            "            - {name: TRACE_DIR, value: \"%s\"}\n"
            "            - {name: CELLS, value: /cells/cells.txt}\n"
            "            - {name: OUT, value: /results}\n"
            "          command: [\"/bin/sh\", \"-c\"]\n"
            "          args:\n            - |\n",
            o->k8s_name, n, o->jobs < n ? o->jobs : n, n, o->k8s_image, o->k8s_trace_dir);
    s_mx_cell_script(f, "              ", "JOB_COMPLETION_INDEX");
    fprintf(f,
            "          volumeMounts:\n"
            "            - {name: cells, mountPath: /cells}\n"
            "            - {name: results, mountPath: /results}\n"
            "      volumes:\n"
            "        - name: cells\n          configMap: {name: %s-cells}\n"
            "        - name: results\n          persistentVolumeClaim: {claimName: %s}\n",
            o->k8s_name, o->k8s_pvc);
    if (!sl_sim_out_close(s_mx_prog, f, o->out, "matrix-job.yaml"))
        return 1;
    printf("rendered %d cells: %s/matrix-job.yaml (ConfigMap %s-cells, Indexed Job %s, "
           "completions %d)\n"
           "run them:  kubectl apply -f %s/matrix-job.yaml\n"
           "           kubectl wait --for=condition=complete --timeout=24h job/%s\n"
           "then copy the volume's cells/ folder (claim %s) into %s/cells and merge:\n"
           "           sluice-sim matrix --merge %s\n",
           n, o->out, o->k8s_name, o->k8s_name, n, o->out, o->k8s_name, o->k8s_pvc, o->out, o->out);
    return 0;
}

/* --- merge --- */

/* The value of key in a cell's RESULT pairs into buf; false when absent. */
static bool s_mx_value(const s_mx_cell_t *c, const char *key, char *buf, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = c->result; *p;) {
        size_t wl = strcspn(p, " ");
        if (wl > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            snprintf(buf, cap, "%.*s", (int)(wl - kl - 1), p + kl + 1);
            return true;
        }
        p += wl;
        p += strspn(p, " ");
    }
    return false;
}

static double s_mx_num(const s_mx_cell_t *c, const char *key)
{
    char v[64];
    return s_mx_value(c, key, v, sizeof(v)) ? strtod(v, NULL) : NAN;
}

/* Read each cell's rc and the last RESULT line of its out.txt. */
static void s_mx_collect(const char *dir, s_mx_cell_t *cells, int n)
{
    for (int i = 0; i < n; i++) {
        s_mx_cell_t *c = &cells[i];
        char path[S_MX_PATH], line[S_MX_LINE];
        c->result[0] = '\0';
        if (snprintf(path, sizeof(path), "%s/cells/%s/rc", dir, c->name) < (int)sizeof(path)) {
            FILE *f = fopen(path, "r");
            if (f) {
                if (fscanf(f, "%d", &c->rc) != 1)
                    c->rc = -1;
                fclose(f);
            }
        }
        if (snprintf(path, sizeof(path), "%s/cells/%s/out.txt", dir, c->name) >= (int)sizeof(path))
            continue;
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "RESULT ", 7)) {
                line[strcspn(line, "\n")] = '\0';
                snprintf(c->result, sizeof(c->result), "%s", line + 7);
            }
        fclose(f);
    }
}

static bool s_mx_ok(const s_mx_cell_t *c)
{
    return c->rc == 0 && c->result[0];
}

static int s_mx_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The RESULT keys of every cell, in the order first seen. */
static int s_mx_keys(const s_mx_cell_t *cells, int n, char keys[][S_MX_WORD])
{
    int nk = 0;
    for (int i = 0; i < n; i++)
        for (const char *p = cells[i].result; *p;) {
            size_t wl = strcspn(p, " "), kl = strcspn(p, "=");
            /* executors is already a column of its own */
            if (kl < wl && kl < S_MX_WORD && strncmp(p, "executors=", 10)) {
                int k = 0;
                while (k < nk && (strlen(keys[k]) != kl || strncmp(keys[k], p, kl)))
                    k++;
                if (k == nk && nk < S_MX_KEYS_MAX)
                    snprintf(keys[nk++], S_MX_WORD, "%.*s", (int)kl, p);
            }
            p += wl;
            p += strspn(p, " ");
        }
    return nk;
}

/* matrix.csv: the cell's axes and status, then every RESULT key. */
static bool s_mx_csv(const char *dir, const s_mx_cell_t *cells, int n, char keys[][S_MX_WORD],
                     int nk)
{
    FILE *f = sl_sim_out_open(s_mx_prog, dir, "matrix.csv");
    if (!f)
        return false;
    fprintf(f, "cell,trace,fleet,failures,executors,batch_share,status");
    for (int k = 0; k < nk; k++)
        fprintf(f, ",%s", keys[k]);
    fprintf(f, "\n");
    for (int i = 0; i < n; i++) {
        const s_mx_cell_t *c = &cells[i];
        fprintf(f, "%s,%s,%s,%s,%d,%g,%s", c->name, c->trace, c->fleet, c->failures, c->executors,
                c->batch_share, s_mx_ok(c) ? "ok" : "failed");
        for (int k = 0; k < nk; k++) {
            char v[256] = "";
            s_mx_value(c, keys[k], v, sizeof(v));
            fprintf(f, ",%s", v);
        }
        fprintf(f, "\n");
    }
    return sl_sim_out_close(s_mx_prog, f, dir, "matrix.csv");
}

/* A bar per cell of the key's column in matrix.csv, with parity at 1. */
static bool s_mx_plot(const s_mx_opts_t *o, const char *dir, char keys[][S_MX_WORD], int nk,
                      const char *key, const char *title)
{
    int col = 0;
    for (int k = 0; k < nk; k++)
        if (!strcmp(keys[k], key))
            col = 8 + k; /* after the seven fixed columns */
    if (col == 0)
        return true; /* no cell reported it */
    char gp[S_MX_WORD], png[S_MX_WORD];
    snprintf(gp, sizeof(gp), "%s.gp", key);
    snprintf(png, sizeof(png), "%s.png", key);
    FILE *f = sl_sim_out_open(s_mx_prog, dir, gp);
    if (!f)
        return false;
    fprintf(f,
            "# sluice-sim matrix: %s per cell (learned against the baselines)\n"
            "# replot with: gnuplot %s (in this folder)\n"
            "set datafile separator ','\nset terminal pngcairo size 1400,700 noenhanced\n"
            "set output '%s'\nset title '%s per cell (1 = parity)'\n"
            "set style fill solid 0.7 border -1\nset boxwidth 0.8\nset grid ytics\n"
            "set xtics rotate by -60 font ',8'\nset bmargin 14\nset key top left\n"
            "set yrange [0:*]\n"
            "plot 'matrix.csv' skip 1 using 0:%d:xtic(1) with boxes lc rgb '#1f77b4' title "
            "'%s', \\\n  1 with lines dt 2 lc rgb '#555555' title 'parity'\n",
            key, gp, png, title, col, key);
    if (!sl_sim_out_close(s_mx_prog, f, dir, gp))
        return false;
    if (!o->plot)
        return true;
    int rc = sl_sim_gnuplot(dir, gp);
    if (rc == 127)
        fprintf(stderr, "%s: warning: gnuplot not found; the plot scripts are in %s (*.gp)\n",
                s_mx_prog, dir);
    else if (rc != 0)
        fprintf(stderr, "%s: warning: gnuplot failed on %s/%s\n", s_mx_prog, dir, gp);
    return true;
}

static int s_mx_merge(const s_mx_opts_t *o, const char *dir, s_mx_cell_t *cells, int n, double t0)
{
    s_mx_collect(dir, cells, n);
    char keys[S_MX_KEYS_MAX][S_MX_WORD];
    int nk = s_mx_keys(cells, n, keys), failed = 0, ok = 0;
    double *gp = calloc(n > 0 ? (size_t)n : 1, sizeof(*gp)), max_mape = NAN;
    if (!gp)
        return 1;
    printf("\n%-22s %-7s %-8s %5s %5s %-18s %8s %8s %8s %s\n", "trace", "fleet", "failures",
           "execs", "batch", "best_baseline", "gp/best", "p99/rr", "mape", "status");
    for (int i = 0; i < n; i++) {
        const s_mx_cell_t *c = &cells[i];
        char best[64] = "-";
        s_mx_value(c, "best_baseline", best, sizeof(best));
        double g = s_mx_num(c, "goodput_vs_best_baseline"), mape = s_mx_num(c, "ttft_mape");
        printf("%-22s %-7s %-8s %5d %5g %-18s %8.3f %8.3f %8.3f %s\n", c->trace, c->fleet,
               c->failures, c->executors, c->batch_share, best, g,
               s_mx_num(c, "p99_ttft_vs_round_robin"), mape, s_mx_ok(c) ? "ok" : "FAILED");
        if (!s_mx_ok(c)) {
            failed++;
            continue;
        }
        if (!isnan(g))
            gp[ok++] = g;
        if (!isnan(mape) && !(mape <= max_mape))
            max_mape = mape;
    }
    for (int i = 0; i < n; i++)
        if (!s_mx_ok(&cells[i]))
            fprintf(stderr, "%s: cell %s failed (exit %d%s); see %s/cells/%s/err.txt\n", s_mx_prog,
                    cells[i].name, cells[i].rc, cells[i].result[0] ? "" : ", no RESULT line", dir,
                    cells[i].name);
    qsort(gp, (size_t)ok, sizeof(*gp), s_mx_cmp_double);
    double med = ok == 0 ? NAN : ok % 2 ? gp[ok / 2] : (gp[ok / 2 - 1] + gp[ok / 2]) / 2;
    int rc = s_mx_csv(dir, cells, n, keys, nk) &&
                     s_mx_plot(o, dir, keys, nk, "goodput_vs_best_baseline",
                               "goodput: learned over the best baseline") &&
                     s_mx_plot(o, dir, keys, nk, "p99_ttft_vs_round_robin",
                               "p99 TTFT: learned over round-robin")
                 ? 0
                 : 1;
    printf("\noutput: %s (matrix.csv, *.gp%s)\n", dir, o->plot ? ", *.png" : "");
    printf("RESULT min_goodput_vs_best=%.3f median_goodput_vs_best=%.3f max_ttft_mape=%.3f "
           "cells=%d failed=%d wall_s=%.1f\n",
           ok ? gp[0] : NAN, med, max_mape, n, failed, s_mx_now() - t0);
    free(gp);
    return rc != 0 || failed > 0 ? 1 : 0;
}

int sl_sim_matrix_main(int argc, char **argv)
{
    double t0 = s_mx_now();
    s_mx_opts_t o;
    char prog[32];
    char *args[argc + 1];
    snprintf(prog, sizeof(prog), "%s", s_mx_prog);
    memset(&o, 0, sizeof(o));
    memcpy(args, argv, sizeof(char *) * (size_t)argc);
    args[0] = prog; /* sl_cfg names the program by its argv[0] */
    args[argc] = NULL;
    int rc = sl_cfg_main(s_mx_table, &o, argc, args, prog);
    if (rc >= 0)
        return rc;
    if (o.jobs == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o.jobs = cores > 0 ? (int)cores : 1;
    }
    int n = 0;
    s_mx_cell_t *cells = NULL;
    if (o.merge[0]) {
        if (!(cells = s_mx_read_cells(o.merge, &n)))
            return 1;
        rc = s_mx_merge(&o, o.merge, cells, n, t0);
        free(cells);
        return rc;
    }
    if (strcmp(o.launcher, "local") && strcmp(o.launcher, "slurm") && strcmp(o.launcher, "k8s")) {
        fprintf(stderr, "%s: --launcher: '%s' is not local, slurm or k8s\n", s_mx_prog, o.launcher);
        return 2;
    }
    s_mx_axes_t ax;
    if (s_mx_axes(&o, &ax) != 0)
        return 2;
    if (!(cells = s_mx_cells(&o, &ax, &n)) || !s_mx_out_dir(&o) ||
        !s_mx_write_cells(o.out, cells, n)) {
        free(cells);
        return 1;
    }
    printf("output: %s\n%d cells (cells.txt), launcher %s, %d at once\n", o.out, n, o.launcher,
           o.jobs);
    fflush(stdout);
    if (!strcmp(o.launcher, "k8s"))
        rc = s_mx_render_k8s(&o, cells, n);
    else
        rc = !strcmp(o.launcher, "slurm") ? s_mx_run_slurm(&o, cells, n)
                                          : s_mx_run_local(&o, cells, n);
    if (rc == 0 && strcmp(o.launcher, "k8s"))
        rc = s_mx_merge(&o, o.out, cells, n, t0);
    free(cells);
    return rc;
}
