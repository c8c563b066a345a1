/*
 * Child processes and ports for the benches (see sl_bench_proc.h).
 *
 * The benches that start the real scheduler and executors need the same
 * three things; one copy here keeps them alike (a child that outlives its
 * bench would hold a port or a journal lock for the next run, so every
 * child gets PR_SET_PDEATHSIG). The free port is bound and released, so
 * another process may take it in between: good enough for a bench on one
 * host, where a clash fails the run loudly.
 */
#include "bench/sl_bench_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/sl_log.h"

pid_t sl_bench_spawn(char *const argv[], int err_fd)
{
    return sl_bench_spawn_out(argv, err_fd == SL_BENCH_INHERIT ? SL_BENCH_INHERIT : -1, err_fd);
}

pid_t sl_bench_spawn_out(char *const argv[], int out_fd, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        SL_ERROR("bench: fork: %m");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            if (err_fd != SL_BENCH_INHERIT)
                dup2(devnull, 0);
            if (out_fd != SL_BENCH_INHERIT)
                dup2(out_fd >= 0 ? out_fd : devnull, 1);
            if (err_fd != SL_BENCH_INHERIT)
                dup2(err_fd >= 0 ? err_fd : devnull, 2);
            if (devnull > 2)
                close(devnull);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int sl_bench_argv(char **out, int cap, char *const *fixed, char *extra)
{
    int n = 0;
    for (; fixed[n] && n < cap - 1; n++)
        out[n] = fixed[n];
    for (char *save = NULL, *w = strtok_r(extra, " ", &save); w && n < cap - 1;
         w = strtok_r(NULL, " ", &save))
        out[n++] = w;
    out[n] = NULL;
    return n;
}

int sl_bench_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
