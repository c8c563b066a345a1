/*
 * Test harness linked into every cmocka test by sl_add_test (tests/CMakeLists.txt).
 * A case fails when it logs an ERROR line it did not declare here, in this
 * process or in a daemon whose log it checks. SLUICE_TEST_CASE picks cases:
 * globs over their names separated by ':', a leading '-' leaving cases out
 * (SLUICE_TEST_CASE=test_20k_jobs, SLUICE_TEST_CASE=-test_20k_*).
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <stddef.h>

/* Declare that the running case logs ERROR lines containing text (any line
 * when text is NULL): at least min and at most max of them. Each ERROR line
 * is matched to the first declaration it fits that is not yet full; a line
 * that fits none fails the case, and so does a declaration seen fewer than
 * min times. Declarations last until the end of the case. */
void sl_test_expect_errors(const char *text, unsigned min, unsigned max);

/* Exactly one ERROR line containing text. */
#define sl_test_expect_error(text) sl_test_expect_errors((text), 1, 1)

/* In a child between fork and exec: its stderr goes to the file path
 * (created or emptied), the log sl_test_check_log reads at the end. Uses
 * only calls that are safe there (open, dup2, close); on failure stderr
 * stays as it was. */
void sl_test_stderr_to(const char *path);

/* The log of a process the test started (its stderr, in a file): copies it to
 * stderr under a header naming who, so the output of a failed test shows it,
 * and puts each ERROR line in it (and each sanitizer report) through the
 * running case's declarations, as if it had been logged here. Returns the
 * number of such lines; a missing or empty file is 0 and prints nothing. */
unsigned sl_test_check_log(const char *path, const char *who);

/* The same copy to stderr, without the check: for the log of a case that has
 * already failed, read when a later case or the exit cleans up after it. */
void sl_test_show_log(const char *path, const char *who);

/* The folder of the programs under test: $SLUICE_BIN (set by ctest), else build/bin. */
const char *sl_test_bin(void);

/* Run cmd with sh; its stdout (the first cap - 1 bytes, NUL-terminated) into
 * out. Fails the case unless cmd exited normally; returns its exit status. */
int sl_test_run(const char *cmd, char *out, size_t cap);

/* A fresh folder "$TMPDIR/name-XXXXXX" (or under /tmp) into buf; fails the
 * case when it cannot be made. Remove it with sl_test_rmtree. */
void sl_test_tmpdir(const char *name, char *buf, size_t cap);

/* The whole of dir/name, NUL-terminated, into buf (cut at cap - 1 bytes);
 * fails the case when it cannot be opened. */
void sl_test_read(const char *dir, const char *name, char *buf, size_t cap);

/* Remove path and everything under it (not following links). */
void sl_test_rmtree(const char *path);

#endif
