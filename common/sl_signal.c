/*
 * Signal handling for the daemons: the handler only stores into a
 * sig_atomic_t that the poll loop reads (poll returns EINTR, so the loop sees
 * it at once). Everything else (draining, goodbye messages) happens in the
 * loop, never in the handler. signalfd was rejected: ZeroMQ's poll would need
 * the descriptor too, for no gain over a flag.
 */
#include "common/sl_signal.h"

#include <stddef.h>
#include <string.h>

static volatile sig_atomic_t *s_flag;

/* The first signal asks for a clean stop (1), any later one for an
 * immediate one (2). */
static void s_on_signal(int sig)
{
    (void)sig;
    if (s_flag)
        *s_flag = *s_flag ? 2 : 1;
}

void sl_signal_stop_flag(volatile sig_atomic_t *flag)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_on_signal;
    s_flag = flag;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static volatile sig_atomic_t *s_reload;

void sl_signal_forget(volatile sig_atomic_t *flag)
{
    if (s_flag == flag)
        s_flag = NULL;
    if (s_reload == flag)
        s_reload = NULL;
}

static void s_on_hup(int sig)
{
    (void)sig;
    if (s_reload)
        *s_reload = 1;
}

void sl_signal_reload_flag(volatile sig_atomic_t *flag)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = flag ? s_on_hup : SIG_DFL;
    s_reload = flag;
    sigaction(SIGHUP, &sa, NULL);
}
