/*
 * gnuplot for the simulator's commands (see sl_sim_plot.h).
 *
 * One fork/exec shared by compare and matrix rather than a copy in each.
 * gnuplot runs in the output folder (the scripts name their files relative
 * to it) and by execlp, not system(): a folder with a quote or a space in
 * its name is never parsed by a shell. Linking a plotting library was
 * rejected: the .gp scripts are what a user edits and redraws, so they are
 * written either way and gnuplot is only their optional reader.
 */
#include "bench/sim/sl_sim_plot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int sl_sim_gnuplot(const char *dir, const char *script)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        if (chdir(dir) != 0)
            _exit(126);
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
