/*
 * Child processes and ports for the benches that run the real daemons
 * (chaos, abuse, ctlplane): one fork/exec that dies with its parent, an
 * argv of fixed words and extra flags, a free loopback port.
 */
#ifndef SL_BENCH_PROC_H
#define SL_BENCH_PROC_H

#include <sys/types.h>

/* err_fd for sl_bench_spawn: the child keeps this process's stdin, stdout
 * and stderr. */
#define SL_BENCH_INHERIT (-2)

/* fork/exec argv[0] (searched in $PATH when it has no slash) with argv;
 * stdin and stdout on /dev/null, stderr on err_fd (-1: /dev/null;
 * SL_BENCH_INHERIT: all three left as they are); the child gets SIGKILL
 * when this process dies (PR_SET_PDEATHSIG) and says on its stderr when
 * argv[0] cannot be run (exit 127). The child's pid, or -1 (logged) when
 * fork fails. */
pid_t sl_bench_spawn(char *const argv[], int err_fd);

/* sl_bench_spawn with stdout on out_fd instead (-1: /dev/null); with
 * err_fd SL_BENCH_INHERIT, stdin and stderr stay as they are. */
pid_t sl_bench_spawn_out(char *const argv[], int out_fd, int err_fd);

/* out = the fixed words (up to their NULL), then the space-separated words
 * of extra (split in place: extra is modified and out points into it),
 * then NULL; at most cap - 1 words. Returns the number of words. */
int sl_bench_argv(char **out, int cap, char *const *fixed, char *extra);

/* A free TCP port on loopback (bound, read back, released); -1 if none. */
int sl_bench_free_port(void);

#endif
