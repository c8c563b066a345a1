/*
 * The replay driver: a main for the fuzz targets when they are built
 * without libFuzzer. Each argument is a file, run through the target once,
 * or a folder, whose files are run in name order (so a failure names the
 * same file on every machine). It exits non-zero when an argument cannot be
 * read or a folder is empty; a crash or a sanitizer report ends it as it
 * would end the fuzzer.
 *
 * ctest gives it the target's corpus folder (tests/fuzz/corpus/<target>),
 * so every input kept in the tree is replayed in the release and the
 * sanitizer builds, regression inputs of fixed bugs included.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/sl_fuzz.h"
#include "common/sl_file.h"

/* Read path whole; returns 0 on success with *buf_p malloc'd (owned by the caller). */
static int s_read(const char *path, uint8_t **buf_p, size_t *len_p)
{
    char *buf = NULL;
    sl_status_t st = sl_file_read(path, &buf, len_p);
    *buf_p = (uint8_t *)buf;
    return st == SL_OK ? 0 : -1;
}

/* Run one file through the target (an exact-size copy, so reads past the
 * end are caught by the sanitizers). */
static int s_run_file(const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (s_read(path, &buf, &len) != 0) {
        fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
        return -1;
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int s_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every plain file of dir; returns the number run, or -1. */
static long s_run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (!grown)
                break;
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), s_name_cmp);
    long run = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (s_run_file(path) != 0)
                run = -1;
            else if (run >= 0)
                run++;
        }
        free(names[i]);
    }
    free(names);
    return run;
}

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "fuzz_replay: no such file or folder %s\n", argv[i]);
            return 1;
        }
        long n = S_ISDIR(sb.st_mode) ? s_run_dir(argv[i]) : (s_run_file(argv[i]) == 0 ? 1 : -1);
        if (n <= 0) {
            fprintf(stderr, "fuzz_replay: %s: %s\n", argv[i], n < 0 ? "unreadable" : "empty");
            return 1;
        }
        total += n;
    }
    printf("fuzz_replay: %ld inputs, no crash\n", total);
    return 0;
}
