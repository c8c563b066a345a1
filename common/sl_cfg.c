/*
 * Configuration tables (see sl_cfg.h). The table is data, so flags,
 * environment variables and help can never disagree: a knob added to the
 * table is at once a flag, a variable and a line of --help. getopt_long was
 * rejected because it would need a second, parallel option array per program.
 *
 * Each row carries the size of its field, taken with sizeof by the row
 * macros, so a string is checked against the array it is copied into (a
 * 16-byte log level, a 256-byte path) rather than against one global
 * maximum. Rejected: truncating a long value (a cut path or endpoint names
 * something else and fails later, far from the cause) and heap strings
 * (every config struct would need a free, and the structs are copied by
 * value today). The sizes also let sl_cfg_defaults check each row's type
 * against its field, which catches an int knob pointed at an int64_t.
 */
#include "common/sl_cfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void s_env_name(const char *name, char *out, size_t len)
{
    size_t i = 0, j;
    const char *prefix = "SLUICE_";
    for (j = 0; prefix[j] && i + 1 < len; j++)
        out[i++] = prefix[j];
    for (j = 0; name[j] && i + 1 < len; j++)
        out[i++] = name[j] == '-' ? '_' : (char)toupper((unsigned char)name[j]);
    out[i] = '\0';
}

static const sl_cfg_field_t *s_find(const sl_cfg_field_t *table, const char *name, size_t len)
{
    for (const sl_cfg_field_t *f = table; f->name; f++)
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
            return f;
    return NULL;
}

/* Bytes a field of each type must have; a string's only needs room for the NUL. */
static size_t s_type_size(sl_cfg_type_t type)
{
    switch (type) {
    case SL_CFG_STR:
        return 1;
    case SL_CFG_INT:
        return sizeof(int);
    case SL_CFG_I64:
        return sizeof(int64_t);
    case SL_CFG_DOUBLE:
        return sizeof(double);
    case SL_CFG_BOOL:
        return sizeof(bool);
    }
    return 0;
}

/* A row that could write outside its field: a size that does not match the type. */
static bool s_row_ok(const sl_cfg_field_t *f)
{
    size_t need = s_type_size(f->type);
    if (need == 0)
        return false;
    return f->type == SL_CFG_STR ? f->size >= need : f->size == need;
}

/* Parse value into f's field. label names the source in err: "--name" for a
 * flag, "SLUICE_NAME" for a variable. The field is unchanged on error. */
static sl_status_t s_parse(const sl_cfg_field_t *f, void *cfg, const char *value, const char *label,
                           char *err, size_t err_len)
{
    char *end = NULL;
    char *dst = (char *)cfg + f->offset;
    double num = 0;

    switch (f->type) {
    case SL_CFG_STR: {
        size_t len = strlen(value);
        if (len >= f->size) {
            snprintf(err, err_len, "%s: value too long (%zu characters; at most %zu)", label, len,
                     f->size - 1);
            return SL_ERR_INVALID;
        }
        memcpy(dst, value, len + 1);
        return SL_OK;
    }
    case SL_CFG_BOOL:
        if (!strcasecmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on")) {
            *(bool *)dst = true;
            return SL_OK;
        }
        if (!strcasecmp(value, "0") || !strcasecmp(value, "false") || !strcasecmp(value, "no") ||
            !strcasecmp(value, "off")) {
            *(bool *)dst = false;
            return SL_OK;
        }
        snprintf(err, err_len, "%s: expected true or false, got '%s'", label, value);
        return SL_ERR_INVALID;
    case SL_CFG_INT:
    case SL_CFG_I64: {
        errno = 0;
        long long v = strtoll(value, &end, 0);
        if (errno || end == value || *end != '\0') {
            snprintf(err, err_len, "%s: expected an integer, got '%s'", label, value);
            return SL_ERR_INVALID;
        }
        if (f->type == SL_CFG_INT && (v < -2147483647LL - 1 || v > 2147483647LL)) {
            snprintf(err, err_len, "%s: %s does not fit in an int", label, value);
            return SL_ERR_INVALID;
        }
        num = (double)v;
        if (f->min != f->max && (num < f->min || num > f->max)) {
            snprintf(err, err_len, "%s: %s is outside [%.15g, %.15g]", label, value, f->min,
                     f->max);
            return SL_ERR_INVALID;
        }
        if (f->type == SL_CFG_INT)
            *(int *)dst = (int)v;
        else
            *(int64_t *)dst = (int64_t)v;
        return SL_OK;
    }
    case SL_CFG_DOUBLE:
        errno = 0;
        num = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !isfinite(num)) {
            snprintf(err, err_len, "%s: expected a number, got '%s'", label, value);
            return SL_ERR_INVALID;
        }
        if (f->min != f->max && (num < f->min || num > f->max)) {
            snprintf(err, err_len, "%s: %s is outside [%g, %g]", label, value, f->min, f->max);
            return SL_ERR_INVALID;
        }
        *(double *)dst = num;
        return SL_OK;
    }
    snprintf(err, err_len, "%s: bad field type", label);
    return SL_ERR_INVALID;
}

sl_status_t sl_cfg_defaults(const sl_cfg_field_t *table, void *cfg)
{
    char err[256], flag[128];
    for (const sl_cfg_field_t *f = table; f->name; f++) {
        if (!s_row_ok(f)) {
            fprintf(stderr, "internal error: --%s: row of type %d on a field of %zu bytes\n",
                    f->name, (int)f->type, f->size);
            return SL_ERR_INVALID;
        }
        snprintf(flag, sizeof(flag), "--%s", f->name);
        if (s_parse(f, cfg, f->dflt, flag, err, sizeof(err)) != SL_OK) {
            fprintf(stderr, "internal error: bad default: %s\n", err);
            return SL_ERR_INVALID;
        }
    }
    return SL_OK;
}

sl_status_t sl_cfg_set(const sl_cfg_field_t *table, void *cfg, const char *name, const char *value,
                       char *err, size_t err_len)
{
    char flag[128];
    const sl_cfg_field_t *f = s_find(table, name, strlen(name));
    if (!f) {
        snprintf(err, err_len, "unknown option --%s", name);
        return SL_ERR_NOT_FOUND;
    }
    snprintf(flag, sizeof(flag), "--%s", f->name);
    return s_parse(f, cfg, value, flag, err, err_len);
}

sl_status_t sl_cfg_load(const sl_cfg_field_t *table, void *cfg, int argc, char **argv,
                        const char *usage, int *first_arg_p)
{
    const char *prog = argc > 0 ? argv[0] : "sluice";
    const char *slash = strrchr(prog, '/');
    char err[512], env[128], flag[128];
    bool print = false;
    int i;

    if (slash)
        prog = slash + 1;
    if (sl_cfg_defaults(table, cfg) != SL_OK)
        return SL_ERR_INVALID;
    for (const sl_cfg_field_t *f = table; f->name; f++) {
        s_env_name(f->name, env, sizeof(env));
        const char *v = getenv(env);
        if (v && s_parse(f, cfg, v, env, err, sizeof(err)) != SL_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return SL_ERR_INVALID;
        }
    }
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            sl_cfg_help(stdout, prog, usage, table);
            return SL_ERR_CANCELED;
        }
        if (strcmp(arg, "--print-config") == 0) {
            print = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            break;
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const sl_cfg_field_t *f = s_find(table, name, len);
        if (!f) {
            fprintf(stderr, "%s: unknown option --%.*s (see %s --help)\n", prog, (int)len, name,
                    prog);
            return SL_ERR_INVALID;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (f->type == SL_CFG_BOOL &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0 ||
                    (strcasecmp(argv[i + 1], "true") && strcasecmp(argv[i + 1], "false") &&
                     strcmp(argv[i + 1], "0") && strcmp(argv[i + 1], "1")))) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "%s: option --%s needs a value (see %s --help)\n", prog, f->name, prog);
            return SL_ERR_INVALID;
        }
        snprintf(flag, sizeof(flag), "--%s", f->name);
        if (s_parse(f, cfg, value, flag, err, sizeof(err)) != SL_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return SL_ERR_INVALID;
        }
    }
    if (print) {
        sl_cfg_dump(stdout, table, cfg);
        return SL_ERR_CANCELED;
    }
    if (first_arg_p)
        *first_arg_p = i;
    return SL_OK;
}

void sl_cfg_help(FILE *out, const char *prog, const char *usage, const sl_cfg_field_t *table)
{
    char env[128], flag[160];
    static const char *const types[] = {"TEXT", "INT", "INT", "NUM", "BOOL"};

    fprintf(out, "usage: %s %s\n\noptions (flag, environment variable, default):\n", prog,
            usage ? usage : "[options]");
    for (const sl_cfg_field_t *f = table; f->name; f++) {
        s_env_name(f->name, env, sizeof(env));
        snprintf(flag, sizeof(flag), "--%s=%s", f->name, types[f->type]);
        fprintf(out, "  %-30s %s\n  %-30s   env %s, default '%s'", flag, f->help, "", env, f->dflt);
        if (f->min != f->max)
            fprintf(out, ", range [%.15g, %.15g]", f->min, f->max);
        if (f->type == SL_CFG_STR)
            fprintf(out, ", at most %zu characters", f->size - 1);
        fputc('\n', out);
    }
    fprintf(out, "  %-30s %s\n", "--print-config", "print the effective configuration and exit");
    fprintf(out, "  %-30s %s\n", "--help", "show this help and exit");
}

void sl_cfg_dump(FILE *out, const sl_cfg_field_t *table, const void *cfg)
{
    for (const sl_cfg_field_t *f = table; f->name; f++) {
        const char *src = (const char *)cfg + f->offset;
        switch (f->type) {
        case SL_CFG_STR:
            fprintf(out, "%s = %s\n", f->name, src);
            break;
        case SL_CFG_INT:
            fprintf(out, "%s = %d\n", f->name, *(const int *)src);
            break;
        case SL_CFG_I64:
            fprintf(out, "%s = %lld\n", f->name, (long long)*(const int64_t *)src);
            break;
        case SL_CFG_DOUBLE:
            fprintf(out, "%s = %g\n", f->name, *(const double *)src);
            break;
        case SL_CFG_BOOL:
            fprintf(out, "%s = %s\n", f->name, *(const bool *)src ? "true" : "false");
            break;
        }
    }
}

sl_cfg_field_t *sl_cfg_merge(const sl_cfg_part_t *parts, size_t n_parts)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < n_parts; i++)
        for (const sl_cfg_field_t *f = parts[i].table; f->name; f++)
            n++;
    sl_cfg_field_t *out = calloc(n + 1, sizeof(*out));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n_parts; i++) {
        for (const sl_cfg_field_t *f = parts[i].table; f->name; f++) {
            out[k] = *f;
            out[k++].offset += parts[i].offset;
        }
    }
    return out; /* the calloc'd last row is the terminator */
}

int sl_cfg_main(const sl_cfg_field_t *table, void *cfg, int argc, char **argv, const char *prog)
{
    int first = argc;
    sl_status_t st = sl_cfg_load(table, cfg, argc, argv, "[options]", &first);
    if (st == SL_ERR_CANCELED)
        return 0;
    if (st != SL_OK)
        return 2;
    if (first < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[first]);
        return 2;
    }
    return -1;
}
