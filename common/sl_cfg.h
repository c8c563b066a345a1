/*
 * Configuration tables. Every knob of a program is one row: flag name,
 * default as a string, help text, offset of the field and type (optionally a
 * valid range). The same table gives the command-line flag (--name=value or
 * --name value), the SLUICE_* environment variable (SLUICE_NAME with dashes
 * as underscores, optionally with a per-program prefix) and the --help text.
 * Precedence: default < environment < flag.
 */
#ifndef SL_CFG_H
#define SL_CFG_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SL_CFG_STR_MAX 256

typedef enum sl_cfg_type {
    SL_CFG_STR,    /* char[SL_CFG_STR_MAX] */
    SL_CFG_INT,    /* int */
    SL_CFG_I64,    /* int64_t */
    SL_CFG_DOUBLE, /* double */
    SL_CFG_BOOL,   /* bool: 1/0, true/false, yes/no, on/off; a bare flag means true */
} sl_cfg_type_t;

typedef struct sl_cfg_field {
    const char *name;   /* flag name without dashes, e.g. "heartbeat-ms"; NULL ends the table */
    const char *dflt;   /* default value as text */
    const char *help;   /* one line of help */
    size_t offset;      /* offset of the field in the config struct */
    sl_cfg_type_t type; /* type of the field */
    double min;         /* valid range for numbers; ignored when min == max */
    double max;         /* upper bound of the range */
} sl_cfg_field_t;

#define SL_CFG_FIELD(st, field, name, dflt, type, help)                                           \
    {(name), (dflt), (help), offsetof(st, field), (type), 0, 0}
#define SL_CFG_RANGE(st, field, name, dflt, type, lo, hi, help)                                   \
    {(name), (dflt), (help), offsetof(st, field), (type), (lo), (hi)}
#define SL_CFG_END                                                                                 \
    {NULL, NULL, NULL, 0, SL_CFG_STR, 0, 0}

/* Write every default of the table into cfg. Fails only on a bad table. */
sl_status_t sl_cfg_defaults(const sl_cfg_field_t *table, void *cfg);

/* Set one knob by flag name from text; SL_ERR_NOT_FOUND for an unknown name,
 * SL_ERR_INVALID (with a message in err) for a bad value. cfg is unchanged on error. */
sl_status_t sl_cfg_set(const sl_cfg_field_t *table, void *cfg, const char *name, const char *value,
                       char *err, size_t err_len);

/*
 * Load defaults, then SLUICE_<NAME> variables, then flags from argv[1..].
 * Parsing stops at the first argument that is not a flag (or after "--");
 * its index is stored in *first_arg_p (argc when none).
 * On --help / -h prints help to stdout and returns SL_ERR_CANCELED (exit 0).
 * On an unknown flag or bad value prints a clear error to stderr and returns
 * SL_ERR_INVALID (exit 2).
 */
sl_status_t sl_cfg_load(const sl_cfg_field_t *table, void *cfg, int argc, char **argv,
                        const char *usage, int *first_arg_p);

/*
 * The usual main(): sl_cfg_load, then refuse any positional argument.
 * Returns -1 when the program should go on, otherwise the exit status to
 * return at once (0 after --help, 2 after a bad flag, value or argument;
 * the message is already printed). prog names the program in messages.
 */
int sl_cfg_main(const sl_cfg_field_t *table, void *cfg, int argc, char **argv, const char *prog);

/* Print usage and every knob with its default, variable and help. */
void sl_cfg_help(FILE *out, const char *prog, const char *usage, const sl_cfg_field_t *table);

/* One table placed at a byte offset inside a larger config struct. */
typedef struct sl_cfg_part {
    const sl_cfg_field_t *table; /* rows relative to the embedded struct */
    size_t offset;               /* where that struct sits in the larger one */
} sl_cfg_part_t;

/* Join several tables into one (offsets shifted). Returns a malloc'd,
 * SL_CFG_END-terminated table the caller frees, or NULL when out of memory. */
sl_cfg_field_t *sl_cfg_merge(const sl_cfg_part_t *parts, size_t n_parts);

/* Print the effective configuration, one "name = value" line per knob. */
void sl_cfg_dump(FILE *out, const sl_cfg_field_t *table, const void *cfg);

#endif
