/*
 * sluice-bench: one program, one subcommand per benchmark. Every benchmark
 * measures its own baseline in the same run and ends with one line starting
 * with RESULT followed by key=value pairs.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "common/sl_cfg.h"

int sl_bench_cfg_main(const sl_cfg_field_t *table, void *cfg, int argc, char **argv)
{
    char name[64];
    char *args[argc + 1];
    snprintf(name, sizeof(name), "sluice-bench %s", argc > 0 ? argv[0] : "");
    memcpy(args, argv, sizeof(char *) * (size_t)argc);
    args[argc] = NULL;
    if (argc > 0)
        args[0] = name;
    return sl_cfg_main(table, cfg, argc, args, name);
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: sluice-bench COMMAND [options]   (COMMAND --help for its options)\n"
                 "commands:");
    for (const sl_bench_cmd_t *c = sl_bench_cmds; c->name; c++)
        fprintf(out, " %s", c->name);
    fputc('\n', out);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const sl_bench_cmd_t *c = sl_bench_cmds; c->name; c++)
        if (!strcmp(c->name, argv[1]))
            return c->main(argc - 1, argv + 1);
    fprintf(stderr, "sluice-bench: unknown command '%s'\n", argv[1]);
    s_usage(stderr);
    return 2;
}
