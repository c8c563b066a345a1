/*
 * Fuzz target "cfg": the configuration parser (common/sl_cfg.c) on a real
 * table, the scheduler core's knobs, the engine's, the sim backend's and
 * the daemons' joined with sl_cfg_merge, so every type and range of the
 * tree's knobs is parsed. An input is NUL-separated strings: the first
 * byte says how many of them are environment variables (NAME=VALUE,
 * exported as SLUICE_NAME for one load, then removed), the rest is argv.
 * Each load is followed by sl_cfg_set on the last pair and sl_cfg_dump, and
 * the parsed values are checked against their rows' ranges: a value
 * outside its range that the parser let through aborts.
 *
 * The parser's messages (stderr) and --help/--print-config (stdout) go to
 * /dev/null; a crash report still reaches the real stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_cfg.h"
#include "common/sl_daemon_cfg.h"
#include "executor/sl_engine.h"
#include "executor/sl_sim_cfg.h"
#include "scheduler/core/sl_core.h"
#include "tests/fuzz/sl_fuzz.h"

#define S_MAX_ARGS 32

typedef struct s_all {
    sl_core_cfg_t core;
    sl_engine_cfg_t engine;
    sl_sim_cfg_t sim;
    sl_daemon_cfg_t daemon;
} s_all_t;

static sl_cfg_field_t *s_table;
static FILE *s_null;
static FILE *s_err; /* the real stderr, for the target's own report */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_cfg_part_t parts[] = {
        {sl_core_cfg_fields, offsetof(s_all_t, core)},
        {sl_engine_cfg_fields, offsetof(s_all_t, engine)},
        {sl_sim_cfg_fields, offsetof(s_all_t, sim)},
        {sl_daemon_cfg_fields, offsetof(s_all_t, daemon)},
    };
    s_table = sl_cfg_merge(parts, sizeof(parts) / sizeof(parts[0]));
    if (!s_table)
        abort();
    s_null = fopen("/dev/null", "w");
    s_err = stderr;
    return 0;
}

/* Every number the load left must be within its row's range. */
static void s_check_ranges(const s_all_t *all)
{
    for (const sl_cfg_field_t *f = s_table; f->name; f++) {
        if (f->min == f->max)
            continue;
        const char *p = (const char *)all + f->offset;
        double v;
        switch (f->type) {
        case SL_CFG_INT: {
            int x;
            memcpy(&x, p, sizeof(x));
            v = x;
            break;
        }
        case SL_CFG_I64: {
            int64_t x;
            memcpy(&x, p, sizeof(x));
            v = (double)x;
            break;
        }
        case SL_CFG_DOUBLE:
            memcpy(&v, p, sizeof(v));
            break;
        default:
            continue;
        }
        if (!(v >= f->min && v <= f->max)) {
            fprintf(s_err, "fuzz_cfg: %s = %g is outside [%g, %g]\n", f->name, v, f->min, f->max);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    int n_env = data[0] % 4;
    char *args[S_MAX_ARGS + 1];
    int n = 0;
    args[n++] = "fuzz";
    char *env_names[4];
    int n_names = 0;
    for (char *p = text; p < text + size - 1 && n < S_MAX_ARGS; p += strlen(p) + 1) {
        if (n_env > 0) {
            n_env--;
            char *eq = strchr(p, '=');
            if (!eq || eq == p || n_names == 4)
                continue;
            char name[128];
            int len = snprintf(name, sizeof(name), "SLUICE_%.*s", (int)(eq - p), p);
            if (len <= 0 || len >= (int)sizeof(name) || setenv(name, eq + 1, 1) != 0)
                continue;
            env_names[n_names++] = strdup(name);
            continue;
        }
        args[n++] = p;
    }
    args[n] = NULL;
    FILE *out = stdout, *err = stderr;
    if (s_null)
        stdout = stderr = s_null;
    s_all_t all;
    memset(&all, 0, sizeof(all));
    int first = 0;
    sl_status_t st = sl_cfg_load(s_table, &all, n, args, "[flags]", &first);
    if (st == SL_OK) {
        s_check_ranges(&all);
        if (first > n)
            abort();
        char why[256];
        if (n >= 3 && args[n - 2][0] != '-') /* the last two as one name and value */
            (void)sl_cfg_set(s_table, &all, args[n - 2], args[n - 1], why, sizeof(why));
        s_check_ranges(&all);
        sl_cfg_dump(s_null ? s_null : stdout, s_table, &all);
    }
    stdout = out;
    stderr = err;
    for (int i = 0; i < n_names; i++) {
        if (env_names[i]) {
            unsetenv(env_names[i]);
            free(env_names[i]);
        }
    }
    free(text);
    return 0;
}
