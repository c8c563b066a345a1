/* sluice-bench subcommands: each is int sl_bench_<name>_main(argc, argv). */
#ifndef SL_BENCH_H
#define SL_BENCH_H

typedef struct sl_bench_cmd {
    const char *name;                   /* subcommand */
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
} sl_bench_cmd_t;

extern const sl_bench_cmd_t sl_bench_cmds[];

struct sl_cfg_field;

/* A subcommand's flags into cfg, as sl_cfg_main with the program shown as
 * "sluice-bench NAME" in --help and errors (argv[0] is NAME). Returns
 * sl_cfg_main's answer: -1 to go on, else the exit status. */
int sl_bench_cfg_main(const struct sl_cfg_field *table, void *cfg, int argc, char **argv);

#endif
