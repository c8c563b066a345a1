/* sluice-bench subcommands: each is int sl_bench_<name>_main(argc, argv). */
#ifndef SL_BENCH_H
#define SL_BENCH_H

typedef struct sl_bench_cmd {
    const char *name;                   /* subcommand */
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
} sl_bench_cmd_t;

extern const sl_bench_cmd_t sl_bench_cmds[];

#endif
