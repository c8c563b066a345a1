/* Stop flags for daemons: SIGTERM and SIGINT ask for a clean stop. */
#ifndef SL_SIGNAL_H
#define SL_SIGNAL_H

#include <signal.h>

/* Make SIGTERM and SIGINT set *flag to 1 (one flag per process: a later call
 * replaces the earlier), and ignore SIGPIPE. The flag must stay valid until
 * sl_signal_forget(flag). */
void sl_signal_stop_flag(volatile sig_atomic_t *flag);
/* Stop writing to flag (if it is the one installed); the handlers stay. */
void sl_signal_forget(volatile sig_atomic_t *flag);

#endif
