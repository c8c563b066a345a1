/*
 * Configuration tables. Every knob of a program is one row: flag name,
 * default as a string, help text, offset and size of the field and type
 * (optionally a valid range). The same table gives the command-line flag
 * (--name=value or --name value), the SLUICE_* environment variable
 * (SLUICE_NAME with dashes as underscores) and the --help text.
 * Precedence: default < environment < flag.
 *
 * A string knob is a char array inside the config struct; its row carries
 * the array's size (sizeof, filled in by the row macros), and a value that
 * does not fit, NUL included, is refused rather than cut or overflowed.
 */
#ifndef SL_CFG_H
#define SL_CFG_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The usual size of a string knob's array (a path, an endpoint); a knob
 * with a shorter natural limit (a log level) declares a smaller array. */
#define SL_CFG_STR_MAX 256

typedef enum sl_cfg_type {
    SL_CFG_STR,    /* char[size]: at most size - 1 characters */
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
    size_t size;        /* bytes of the field (a string's array, NUL included) */
    sl_cfg_type_t type; /* type of the field */
    double min;         /* valid range for numbers; ignored when min == max */
    double max;         /* upper bound of the range */
} sl_cfg_field_t;

/* Rows take the size from the member itself, so it cannot drift from the
 * struct; sl_cfg_defaults() refuses a size that does not match the type. */
#define SL_CFG_SIZEOF(st, field) sizeof(((st *)0)->field)
#define SL_CFG_FIELD(st, field, name, dflt, type, help)                                            \
    {                                                                                              \
        (name), (dflt), (help), offsetof(st, field), SL_CFG_SIZEOF(st, field), (type), 0, 0        \
    }
#define SL_CFG_RANGE(st, field, name, dflt, type, lo, hi, help)                                    \
    {                                                                                              \
        (name), (dflt), (help), offsetof(st, field), SL_CFG_SIZEOF(st, field), (type), (lo), (hi)  \
    }
#define SL_CFG_END                                                                                 \
    {                                                                                              \
        NULL, NULL, NULL, 0, 0, SL_CFG_STR, 0, 0                                                   \
    }

/* Write every default of the table into cfg. Fails only on a bad table: a
 * field size that does not match its type, or a default that does not parse
 * or fit (the cause is printed to stderr). */
sl_status_t sl_cfg_defaults(const sl_cfg_field_t *table, void *cfg);

/* Set one knob by flag name from text; SL_ERR_NOT_FOUND for an unknown name,
 * SL_ERR_INVALID (with a message in err) for a bad value or a string longer
 * than the field holds. cfg is unchanged on error. */
sl_status_t sl_cfg_set(const sl_cfg_field_t *table, void *cfg, const char *name, const char *value,
                       char *err, size_t err_len);

/*
 * Load defaults, then SLUICE_<NAME> variables, then flags from argv[1..].
 * Parsing stops at the first argument that is not a flag (or after "--");
 * its index is stored in *first_arg_p (argc when none).
 * On --help / -h prints help to stdout and returns SL_ERR_CANCELED (exit 0).
 * With --print-config, after every flag is read, prints the effective
 * configuration (sl_cfg_dump) to stdout and returns SL_ERR_CANCELED.
 * On an unknown flag, a bad value or a string longer than its field (from a
 * flag or a SLUICE_* variable) prints a clear error to stderr naming the flag
 * or the variable and returns SL_ERR_INVALID (exit 2).
 */
sl_status_t sl_cfg_load(const sl_cfg_field_t *table, void *cfg, int argc, char **argv,
                        const char *usage, int *first_arg_p);

/*
 * The usual main(): sl_cfg_load, then refuse any positional argument.
 * Returns -1 when the program should go on, otherwise the exit status to
 * return at once (0 after --help or --print-config, 2 after a bad flag,
 * value or argument; the message is already printed). prog names the
 * program in messages.
 */
int sl_cfg_main(const sl_cfg_field_t *table, void *cfg, int argc, char **argv, const char *prog);

/* Print usage and every knob with its default, variable and help (and a
 * string knob's longest value, "at most N characters"). */
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
