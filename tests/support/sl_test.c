/*
 * The harness every cmocka test links (sl_add_test in tests/CMakeLists.txt).
 * A test fails on an ERROR line it did not declare, wherever the line was
 * logged: in the test's own process, seen through sl_log's hook, or in a
 * daemon the test started, read back from its log file at the end
 * (sl_test_check_log). Both go through one matcher against the running
 * case's declarations (sl_test_expect_errors).
 *
 * The harness reaches every test without any test's main calling it: the
 * link wraps cmocka's _cmocka_run_group_tests (-Wl,--wrap), and the wrapper
 * runs the group with each case's setup and teardown wrapped: the setup
 * opens the case (no declarations, nothing seen), the teardown closes it and
 * fails the case when a line went undeclared or a declaration was not met.
 * The case's own fixtures run inside the wrappers. cmocka runs the cases of
 * the array it is given once each, in order, so the n-th setup is the n-th
 * case's (a case's state cannot carry this: a group setup's state replaces
 * it). The wrapper first keeps only the cases SLUICE_TEST_CASE picks, so
 * ctest can register a long case as an entry of its own and the rest as
 * another: globs over case names separated by ':', those starting with '-'
 * leaving cases out ("-test_20k_*" is every case but those). A choice that
 * leaves no case fails, rather than passing on zero cases.
 *
 * Rejected: comparing sl_log_error_count() in each test's main (a forgotten
 * main is a test that cannot fail on errors, a count does not say which line
 * was expected, and a daemon's lines never reach it); a check of stderr by
 * ctest (FAIL_REGULAR_EXPRESSION) cannot tell expected lines from the rest.
 */
#include "tests/support/sl_test.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_log.h"

#define S_MAX_EXPECT 16 /* declarations per case */
#define S_TEXT_MAX 160  /* bytes of a declaration's text kept */
#define S_LINE_MAX 400  /* bytes of the first unexpected line kept */

typedef struct s_expect {
    char text[S_TEXT_MAX]; /* what an expected line contains; "" for any line */
    unsigned min;          /* lines it must see */
    unsigned max;          /* lines it may take */
    unsigned seen;         /* lines it took */
} s_expect_t;

/* The hook runs on whichever thread logs (a client library's thread, a
 * transport's progress thread), so the state below is under this lock. */
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_expect_t s_expects[S_MAX_EXPECT]; /* the running case's declarations */
static unsigned s_n_expects;               /* how many */
static unsigned s_unexpected;              /* lines no declaration took, since the case opened */
static char s_first[S_LINE_MAX];           /* the first of them */
static const struct CMUnitTest *s_cases;   /* original entries of the cases run, in order */
static size_t s_n_cases;                   /* how many */
static size_t s_next;                      /* index in s_cases of the next setup's case */
static const struct CMUnitTest *s_case;    /* the running case's original entry */

/* Match one ERROR line to the running case's declarations. Lock held. */
static void s_note_locked(const char *line)
{
    for (unsigned i = 0; i < s_n_expects; i++) {
        s_expect_t *e = &s_expects[i];
        if (e->seen < e->max && (!e->text[0] || strstr(line, e->text))) {
            e->seen++;
            return;
        }
    }
    if (s_unexpected++ == 0)
        snprintf(s_first, sizeof(s_first), "%s", line);
}

static void s_note(const char *line)
{
    pthread_mutex_lock(&s_lock);
    s_note_locked(line);
    pthread_mutex_unlock(&s_lock);
}

static void s_hook(sl_log_level_t level, const char *line)
{
    if (level == SL_LOG_ERROR)
        s_note(line);
}

__attribute__((constructor)) static void s_install(void)
{
    sl_log_set_hook(s_hook);
}

void sl_test_expect_errors(const char *text, unsigned min, unsigned max)
{
    pthread_mutex_lock(&s_lock);
    if (s_n_expects == S_MAX_EXPECT) {
        pthread_mutex_unlock(&s_lock);
        fail_msg("more than %d error declarations in one case", S_MAX_EXPECT);
    }
    s_expect_t *e = &s_expects[s_n_expects++];
    snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
    e->min = min;
    e->max = max;
    e->seen = 0;
    pthread_mutex_unlock(&s_lock);
}

/* A line of our log format at ERROR ("12:34:56.789 E ..."), or the first line
 * of a sanitizer's report. */
static bool s_is_error_line(const char *line)
{
    size_t i = strspn(line, "0123456789:.");
    if (i >= 8 && strncmp(line + i, " E ", 3) == 0)
        return true;
    return strstr(line, "ERROR: AddressSanitizer") || strstr(line, "ERROR: LeakSanitizer") ||
           strstr(line, ": runtime error: ");
}

void sl_test_stderr_to(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd >= 0 && fd != STDERR_FILENO) {
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
}

/* Copy a log to stderr; with check, note its ERROR lines. */
static unsigned s_read_log(const char *path, const char *who, bool check)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned errors = 0;
    bool header = false;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (!header) {
            fprintf(stderr, "---- log of %s (%s) ----\n", who, path);
            header = true;
        }
        fwrite(line, 1, (size_t)len, stderr);
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        if (check && s_is_error_line(line)) {
            s_note(line);
            errors++;
        }
    }
    if (header)
        fprintf(stderr, "---- end of the log of %s ----\n", who);
    free(line);
    fclose(f);
    return errors;
}

unsigned sl_test_check_log(const char *path, const char *who)
{
    return s_read_log(path, who, true);
}

void sl_test_show_log(const char *path, const char *who)
{
    s_read_log(path, who, false);
}

/* Whether SLUICE_TEST_CASE's globs (see the top) pick the case name. */
static bool s_picked(const char *globs, const char *name)
{
    bool included = false, any_include = false;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", globs);
    for (char *save = NULL, *g = strtok_r(buf, ":", &save); g; g = strtok_r(NULL, ":", &save)) {
        if (g[0] == '-') {
            if (fnmatch(g + 1, name, 0) == 0)
                return false;
        } else {
            any_include = true;
            included = included || fnmatch(g, name, 0) == 0;
        }
    }
    return included || !any_include;
}

/* Start a case: no declarations, nothing seen. Lock held. */
static void s_open_locked(const struct CMUnitTest *orig)
{
    s_case = orig;
    s_n_expects = 0;
    s_unexpected = 0;
    s_first[0] = '\0';
}

static int s_case_setup(void **state)
{
    const struct CMUnitTest *orig = s_next < s_n_cases ? &s_cases[s_next++] : NULL;
    pthread_mutex_lock(&s_lock);
    s_open_locked(orig);
    pthread_mutex_unlock(&s_lock);
    return orig && orig->setup_func ? orig->setup_func(state) : 0;
}

static int s_case_teardown(void **state)
{
    const struct CMUnitTest *orig = s_case;
    int rc = orig && orig->teardown_func ? orig->teardown_func(state) : 0;
    pthread_mutex_lock(&s_lock);
    if (s_unexpected) {
        print_error("%u ERROR line(s) the case did not declare (sl_test_expect_errors); the "
                    "first: %s\n",
                    s_unexpected, s_first);
        rc = -1;
    }
    for (unsigned i = 0; i < s_n_expects; i++) {
        if (s_expects[i].seen < s_expects[i].min) {
            print_error("declared at least %u ERROR line(s) containing \"%s\", saw %u\n",
                        s_expects[i].min, s_expects[i].text, s_expects[i].seen);
            rc = -1;
        }
    }
    s_open_locked(NULL); /* what is logged until the next case is outside any */
    pthread_mutex_unlock(&s_lock);
    return rc;
}

int __real__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);
int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown);

int __wrap__cmocka_run_group_tests(const char *group_name, const struct CMUnitTest *const tests,
                                   const size_t num_tests, CMFixtureFunction group_setup,
                                   CMFixtureFunction group_teardown)
{
    const char *only = getenv("SLUICE_TEST_CASE");
    struct CMUnitTest *orig = calloc(num_tests ? num_tests : 1, sizeof(*orig));
    struct CMUnitTest *wrapped = calloc(num_tests ? num_tests : 1, sizeof(*wrapped));
    size_t n = 0;
    if (!orig || !wrapped) {
        fprintf(stderr, "%s: out of memory\n", group_name);
        free(orig);
        free(wrapped);
        return 1;
    }
    for (size_t i = 0; i < num_tests; i++) {
        if (only && *only && !s_picked(only, tests[i].name))
            continue;
        orig[n] = tests[i];
        wrapped[n] = tests[i];
        wrapped[n].setup_func = s_case_setup;
        wrapped[n].teardown_func = s_case_teardown;
        n++;
    }
    if (n == 0 && only && *only) {
        fprintf(stderr, "%s: SLUICE_TEST_CASE=%s picks none of its cases\n", group_name, only);
        free(orig);
        free(wrapped);
        return 1;
    }
    pthread_mutex_lock(&s_lock);
    s_open_locked(NULL);
    pthread_mutex_unlock(&s_lock);
    s_cases = orig;
    s_n_cases = n;
    s_next = 0;

    int rc = __real__cmocka_run_group_tests(group_name, wrapped, n, group_setup, group_teardown);

    /* Lines logged outside every case: the group's setup and teardown. */
    pthread_mutex_lock(&s_lock);
    if (s_unexpected) {
        fprintf(stderr, "%s: %u ERROR line(s) outside its cases; the first: %s\n", group_name,
                s_unexpected, s_first);
        if (rc == 0)
            rc = 1;
    }
    pthread_mutex_unlock(&s_lock);
    s_cases = NULL;
    s_n_cases = 0;
    free(orig);
    free(wrapped);
    return rc;
}

const char *sl_test_bin(void)
{
    const char *bin = getenv("SLUICE_BIN");
    return bin && bin[0] ? bin : "build/bin";
}

int sl_test_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    assert_true(rc != -1 && WIFEXITED(rc));
    return WEXITSTATUS(rc);
}

void sl_test_tmpdir(const char *name, char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(buf));
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void sl_test_rmtree(const char *path)
{
    nftw(path, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

void sl_test_read(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}
