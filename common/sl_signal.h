/* Stop flags for daemons: SIGTERM and SIGINT ask for a clean stop. */
#ifndef SL_SIGNAL_H
#define SL_SIGNAL_H

#include <signal.h>

/* Make SIGTERM and SIGINT set *flag: the first to 1 (stop cleanly: drain),
 * any later one to 2 (stop at once). One flag per process: a later call
 * replaces the earlier. Also ignores SIGPIPE. The flag must stay valid until
 * sl_signal_forget(flag). */
void sl_signal_stop_flag(volatile sig_atomic_t *flag);
/* Stop writing to flag (if it is the one installed, for a stop or a reload);
 * the handlers stay. */
void sl_signal_forget(volatile sig_atomic_t *flag);

/* Make SIGHUP set *flag to 1 (the daemon reloads what it can, such as the
 * allow-lists, and clears it). One flag per process; NULL restores the
 * default action. */
void sl_signal_reload_flag(volatile sig_atomic_t *flag);

#endif
