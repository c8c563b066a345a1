/*
 * Every text knob of every program, at its limit and one character past it,
 * from a flag and from a SLUICE_* variable, against the real programs.
 *
 * Nothing here is a hand list that could drift: the programs are the
 * executables named sluice* in SLUICE_BIN, a program whose --help lists
 * "commands:" is tested command by command, and the knobs are read from each
 * --help ("--NAME=TEXT" and its "at most N characters"). A value of N
 * characters (N + 1 bytes with the NUL: the field's size) must be taken
 * whole, which --print-config shows without starting the program; N + 1
 * characters must be refused with exit status 2 and a message naming the
 * flag or the variable and N. No run may print a sanitizer report (the ASan
 * build runs this test too). Every program also refuses an unknown flag, and
 * every program with commands an unknown command, with status 2.
 *
 * The runs are independent, so a few go at once (some programs take a third
 * of a second to start); each run's output is kept and checked afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_MAX_PROGS 64
#define S_MAX_KNOBS 64      /* text knobs of one program */
#define S_MAX_ARGS 160      /* arguments of one run */
#define S_OUT_MAX (1 << 20) /* output kept per run */
#define S_PARALLEL 4        /* runs at once */

typedef struct prog {
    char path[512];               /* executable */
    char cmd[64];                 /* command ("" for a program without commands) */
    char show[600];               /* "path cmd", for messages */
    char knobs[S_MAX_KNOBS][128]; /* text knobs from --help */
    size_t max[S_MAX_KNOBS];      /* longest value of each, from --help */
    int n_knobs;                  /* entries of knobs and max */
} prog_t;

/* One run of a program and what it should do. */
typedef struct job {
    const prog_t *prog;     /* what runs (its command goes first) */
    char *args[S_MAX_ARGS]; /* arguments after the command, malloc'd */
    int n_args;             /* entries of args */
    char *env[S_MAX_ARGS];  /* "NAME=value" set in the child, malloc'd */
    int n_env;              /* entries of env */
    char what[256];         /* the run, shortened, for messages */
    int want_rc;            /* expected exit status */
    char want[256];         /* text expected in the output ("" = any) */
    bool want_values;       /* every knob's long value printed by --print-config */
    char *out;              /* stdout and stderr, NUL-terminated */
    size_t len;             /* bytes in out */
    int rc;                 /* exit status, or 128 + the signal that ended it */
} job_t;

static const char *s_bin(void)
{
    const char *b = getenv("SLUICE_BIN");
    return b ? b : "build/bin";
}

static void s_prog_init(prog_t *p, const char *path, const char *cmd)
{
    memset(p, 0, sizeof(*p));
    int w = snprintf(p->path, sizeof(p->path), "%s", path);
    assert_true(w > 0 && (size_t)w < sizeof(p->path));
    w = snprintf(p->cmd, sizeof(p->cmd), "%s", cmd);
    assert_true(w >= 0 && (size_t)w < sizeof(p->cmd));
    w = snprintf(p->show, sizeof(p->show), "%s%s%s", path, cmd[0] ? " " : "", cmd);
    assert_true(w > 0 && (size_t)w < sizeof(p->show));
}

/* SLUICE_ and the flag's name in capitals, dashes as underscores; returns its length. */
static size_t s_env_name(const char *flag, char *out)
{
    size_t n = (size_t)sprintf(out, "SLUICE_");
    for (; *flag; flag++)
        out[n++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[n] = '\0';
    return n;
}

static job_t *s_job(const prog_t *p, int want_rc, const char *want, const char *what)
{
    job_t *j = calloc(1, sizeof(*j));
    assert_non_null(j);
    j->prog = p;
    j->want_rc = want_rc;
    snprintf(j->want, sizeof(j->want), "%s", want);
    snprintf(j->what, sizeof(j->what), "%s", what);
    return j;
}

static void s_job_arg(job_t *j, char *arg)
{
    assert_non_null(arg);
    assert_true(j->n_args < S_MAX_ARGS);
    j->args[j->n_args++] = arg;
}

static void s_job_env(job_t *j, char *var)
{
    assert_non_null(var);
    assert_true(j->n_env < S_MAX_ARGS);
    j->env[j->n_env++] = var;
}

static void s_job_free(job_t *j)
{
    for (int i = 0; i < j->n_args; i++)
        free(j->args[i]);
    for (int i = 0; i < j->n_env; i++)
        free(j->env[i]);
    free(j->out);
    free(j);
}

/* Fork and exec j; returns the read end of its output pipe. */
static int s_start(job_t *j, pid_t *pid_p)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0); /* the runs at once do not hold each other's */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[S_MAX_ARGS + 3];
        int n = 0;
        argv[n++] = (char *)j->prog->path;
        if (j->prog->cmd[0])
            argv[n++] = (char *)j->prog->cmd;
        for (int i = 0; i < j->n_args; i++)
            argv[n++] = j->args[i];
        argv[n] = NULL;
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        for (int i = 0; i < j->n_env; i++)
            putenv(j->env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    j->out = malloc(S_OUT_MAX + 1);
    assert_non_null(j->out);
    j->len = 0;
    *pid_p = pid;
    return fds[0];
}

/* Run every job, S_PARALLEL at a time; each gets its rc and out. */
static void s_run_jobs(job_t **jobs, size_t n)
{
    struct pollfd fds[S_PARALLEL];
    job_t *running[S_PARALLEL];
    pid_t pids[S_PARALLEL];
    size_t next = 0, active = 0;
    char drain[4096];

    while (next < n || active > 0) {
        while (active < S_PARALLEL && next < n) {
            running[active] = jobs[next++];
            fds[active].fd = s_start(running[active], &pids[active]);
            fds[active].events = POLLIN;
            active++;
        }
        assert_true(poll(fds, (nfds_t)active, -1) > 0);
        for (size_t i = 0; i < active; i++) {
            if (!fds[i].revents)
                continue;
            job_t *j = running[i];
            ssize_t r = j->len < S_OUT_MAX ? read(fds[i].fd, j->out + j->len, S_OUT_MAX - j->len)
                                           : read(fds[i].fd, drain, sizeof(drain));
            if (r > 0) {
                if (j->len < S_OUT_MAX)
                    j->len += (size_t)r;
                continue;
            }
            int status;
            close(fds[i].fd);
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            j->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            j->out[j->len] = '\0';
            active--;
            fds[i] = fds[active];
            running[i] = running[active];
            pids[i] = pids[active];
            i--;
        }
    }
}

/* "name = value" is a line of --print-config's output. */
static bool s_printed(const char *out, const char *name, size_t len)
{
    size_t nl = strlen(name);
    for (const char *line = out; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, nl) || strncmp(line + nl, " = ", 3))
            continue;
        const char *v = line + nl + 3;
        size_t k = 0;
        while (k < len && v[k] == 'v')
            k++;
        return k == len && v[k] == '\n';
    }
    return false;
}

/* Fail, naming the program, the run and its output, unless j did as expected. */
static void s_check(const job_t *j)
{
    const prog_t *p = j->prog;
    bool sanitizer = strstr(j->out, "Sanitizer") || strstr(j->out, "runtime error:");
    if (j->rc != j->want_rc || sanitizer || !strstr(j->out, j->want))
        fail_msg("%s %s: exit status %d (want %d), want \"%s\"%s; output:\n%s", p->show, j->what,
                 j->rc, j->want_rc, j->want, sanitizer ? ", and a sanitizer report" : "", j->out);
    for (int k = 0; j->want_values && k < p->n_knobs; k++)
        if (!s_printed(j->out, p->knobs[k], p->max[k]))
            fail_msg("%s %s: '%s = <%zu characters>' not printed; output:\n%s", p->show, j->what,
                     p->knobs[k], p->max[k], j->out);
}

static void s_run_and_check(job_t **jobs, size_t n)
{
    s_run_jobs(jobs, n);
    for (size_t i = 0; i < n; i++)
        s_check(jobs[i]);
    for (size_t i = 0; i < n; i++)
        s_job_free(jobs[i]);
}

static int s_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The commands listed after "commands:" in a --help, either on that line
 * ("commands: a b c") or one per following indented line ("  a   help").
 * Returns how many were stored in cmds.
 */
static int s_parse_commands(const char *help, char cmds[][64], int cap)
{
    const char *at = strstr(help, "commands:");
    int n = 0;
    if (!at)
        return 0;
    at += strlen("commands:");
    for (;;) {
        while (*at == ' ')
            at++;
        if (*at == '\n') {
            if (at[1] != ' ' || at[2] != ' ')
                break;
            at += 3;
            while (*at == ' ')
                at++;
            size_t len = strcspn(at, " \n");
            if (len > 0 && len < 64 && n < cap)
                snprintf(cmds[n++], 64, "%.*s", (int)len, at);
            at = strchr(at, '\n');
            if (!at)
                break;
            continue;
        }
        size_t len = strcspn(at, " \n");
        if (len == 0)
            break;
        if (len < 64 && n < cap)
            snprintf(cmds[n++], 64, "%.*s", (int)len, at);
        at += len;
    }
    return n;
}

/*
 * The text knobs in a --help: a line "  --NAME=TEXT ..." followed by one
 * with "at most N characters". A text knob without its limit fails.
 */
static void s_parse_knobs(prog_t *p, const char *help)
{
    char *text = strdup(help);
    assert_non_null(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        int end = 0;
        if (sscanf(line, " --%127[a-z0-9-]=TEXT%n", name, &end) != 1 || end == 0)
            continue;
        char *next = strtok(NULL, "\n");
        const char *at = next ? strstr(next, "at most ") : NULL;
        size_t max = 0;
        if (!at || sscanf(at, "at most %zu characters", &max) != 1 || max == 0)
            fail_msg("%s --help: --%s=TEXT has no \"at most N characters\"", p->show, name);
        assert_true(p->n_knobs < S_MAX_KNOBS);
        memcpy(p->knobs[p->n_knobs], name, sizeof(name));
        p->max[p->n_knobs++] = max;
    }
    free(text);
}

/* --help of each of progs: exit status 0, and the text knobs it lists. */
static void s_read_knobs(prog_t *progs, int n)
{
    job_t *jobs[S_MAX_PROGS];
    for (int i = 0; i < n; i++) {
        jobs[i] = s_job(&progs[i], 0, "usage:", "--help");
        s_job_arg(jobs[i], strdup("--help"));
    }
    s_run_jobs(jobs, (size_t)n);
    for (int i = 0; i < n; i++) {
        s_check(jobs[i]);
        s_parse_knobs(&progs[i], jobs[i]->out);
        s_job_free(jobs[i]);
    }
}

/* Every program and command under SLUICE_BIN, with its text knobs; returns how many. */
static int s_find_programs(prog_t *progs)
{
    static prog_t tops[S_MAX_PROGS];
    char *names[S_MAX_PROGS];
    job_t *jobs[S_MAX_PROGS];
    int n_tops = 0, n = 0;
    DIR *d = opendir(s_bin());
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", s_bin(), e->d_name);
        if (strncmp(e->d_name, "sluice", 6) == 0 && access(path, X_OK) == 0) {
            assert_true(n_tops < S_MAX_PROGS);
            names[n_tops++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n_tops, sizeof(names[0]), s_cmp_names);
    for (int i = 0; i < n_tops; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", s_bin(), names[i]);
        s_prog_init(&tops[i], path, "");
        free(names[i]);
        jobs[i] = s_job(&tops[i], 0, "usage:", "--help");
        s_job_arg(jobs[i], strdup("--help"));
    }
    s_run_jobs(jobs, (size_t)n_tops);
    for (int i = 0; i < n_tops; i++) {
        char cmds[16][64];
        s_check(jobs[i]);
        int n_cmds = s_parse_commands(jobs[i]->out, cmds, 16);
        assert_true(n + (n_cmds ? n_cmds : 1) <= S_MAX_PROGS);
        if (n_cmds == 0)
            progs[n++] = tops[i];
        for (int c = 0; c < n_cmds; c++)
            s_prog_init(&progs[n++], tops[i].path, cmds[c]);
        s_job_free(jobs[i]);
    }
    s_read_knobs(progs, n);
    return n;
}

static prog_t s_progs[S_MAX_PROGS];
static int s_n_progs;

static int s_setup(void **state)
{
    s_n_progs = s_find_programs(s_progs);
    return 0;
}

/* A run of p with every text knob at max + extra characters, 'v' repeated:
 * from flags, or from variables when env. */
static job_t *s_job_values(const prog_t *p, int k, size_t extra, bool env, int want_rc,
                           const char *want, const char *what)
{
    job_t *j = s_job(p, want_rc, want, what);
    for (int i = 0; i < p->n_knobs; i++) {
        if (k >= 0 && i != k)
            continue;
        size_t len = p->max[i] + extra, at = 0;
        char *arg = malloc(strlen(p->knobs[i]) + len + 16);
        assert_non_null(arg);
        if (env) {
            at = s_env_name(p->knobs[i], arg);
            arg[at++] = '=';
        } else {
            at = (size_t)sprintf(arg, "--%s=", p->knobs[i]);
        }
        memset(arg + at, 'v', len);
        arg[at + len] = '\0';
        if (env)
            s_job_env(j, arg);
        else
            s_job_arg(j, arg);
    }
    return j;
}

/* An earlier command of the same program has the same text knobs and limits. */
static bool s_same_knobs_as_before(int i)
{
    const prog_t *p = &s_progs[i];
    for (int e = 0; e < i; e++) {
        const prog_t *q = &s_progs[e];
        bool same = !strcmp(p->path, q->path) && p->n_knobs == q->n_knobs;
        for (int k = 0; same && k < p->n_knobs; k++)
            same = !strcmp(p->knobs[k], q->knobs[k]) && p->max[k] == q->max[k];
        if (same)
            return true;
    }
    return false;
}

static void test_every_text_knob(void **state)
{
    job_t **jobs = calloc(S_MAX_PROGS * (2 + 2 * S_MAX_KNOBS), sizeof(*jobs));
    size_t n = 0;
    int knobs = 0;
    size_t log_level = 0;
    assert_non_null(jobs);
    assert_true(s_n_progs >= 1);
    for (int i = 0; i < s_n_progs; i++) {
        const prog_t *p = &s_progs[i];
        char want[256], what[256], env[sizeof(p->knobs[0]) + 8];
        print_message("%-60s %d text knobs\n", p->show, p->n_knobs);
        knobs += p->n_knobs;
        if (p->n_knobs == 0)
            continue;
        /* Every knob at its limit, all at once: taken whole. */
        jobs[n] = s_job_values(p, -1, 0, false, 0, "",
                               "--print-config with every text flag at its limit");
        s_job_arg(jobs[n], strdup("--print-config"));
        jobs[n++]->want_values = true;
        jobs[n] = s_job_values(p, -1, 0, true, 0, "",
                               "--print-config with every text variable at its limit");
        s_job_arg(jobs[n], strdup("--print-config"));
        jobs[n++]->want_values = true;
        /* Each knob one past its limit: refused, naming the flag or variable
         * and N. Commands of one program with the very same text knobs share
         * a table (sluice-sim's): the first is enough for these. */
        if (s_same_knobs_as_before(i))
            continue;
        for (int k = 0; k < p->n_knobs; k++) {
            size_t max = p->max[k];
            if (strstr(p->path, "/sluice-scheduler") && !strcmp(p->knobs[k], "log-level"))
                log_level = max;
            snprintf(what, sizeof(what), "--%s=<%zu characters>", p->knobs[k], max + 1);
            snprintf(want, sizeof(want), "--%s: value too long (%zu characters; at most %zu)\n",
                     p->knobs[k], max + 1, max);
            jobs[n++] = s_job_values(p, k, 1, false, 2, want, what);
            s_env_name(p->knobs[k], env);
            snprintf(what, sizeof(what), "%s=<%zu characters> --print-config", env, max + 1);
            snprintf(want, sizeof(want), "%s: value too long (%zu characters; at most %zu)\n", env,
                     max + 1, max);
            jobs[n] = s_job_values(p, k, 1, true, 2, want, what);
            s_job_arg(jobs[n++], strdup("--print-config"));
        }
    }
    s_run_and_check(jobs, n);
    free(jobs);
    /* The knobs were found at all: the scheduler's log level is one. */
    assert_int_equal(log_level, 15);
    assert_true(knobs >= 20);
}

static void test_unknown_flag_and_command(void **state)
{
    job_t *jobs[2 * S_MAX_PROGS];
    static prog_t tops[S_MAX_PROGS];
    size_t n = 0;
    int n_tops = 0;
    for (int i = 0; i < s_n_progs; i++) {
        jobs[n] = s_job(&s_progs[i], 2, "unknown option --no-such-flag", "--no-such-flag=1");
        s_job_arg(jobs[n++], strdup("--no-such-flag=1"));
        /* A program with commands refuses an unknown one. */
        const prog_t *p = &s_progs[i];
        if (!p->cmd[0] || (i > 0 && !strcmp(p->path, s_progs[i - 1].path)))
            continue;
        s_prog_init(&tops[n_tops], p->path, "");
        jobs[n] = s_job(&tops[n_tops++], 2, "unknown command 'no-such-command'", "no-such-command");
        s_job_arg(jobs[n++], strdup("no-such-command"));
    }
    s_run_and_check(jobs, n);
}

/* The bug report's case: 300 characters into the scheduler's 16-byte log level. */
static void test_scheduler_long_log_level(void **state)
{
    prog_t p;
    char path[1024], *flag = malloc(320);
    assert_non_null(flag);
    snprintf(path, sizeof(path), "%s/sluice-scheduler", s_bin());
    s_prog_init(&p, path, "");
    int at = sprintf(flag, "--log-level=");
    memset(flag + at, 'a', 300);
    flag[at + 300] = '\0';
    job_t *j =
        s_job(&p, 2, "sluice-scheduler: --log-level: value too long (300 characters; at most 15)\n",
              "--log-level=<300 characters>");
    s_job_arg(j, flag);
    s_run_and_check(&j, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheduler_long_log_level),
        cmocka_unit_test(test_unknown_flag_and_command),
        cmocka_unit_test(test_every_text_knob),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
