/* Time. The decision core never reads a clock: callers pass sl_time_t in. */
#ifndef SL_CLOCK_H
#define SL_CLOCK_H

#include <stdint.h>

typedef int64_t sl_time_t; /* nanoseconds; monotonic unless said otherwise */

#define SL_NS_PER_US 1000LL
#define SL_NS_PER_MS 1000000LL
#define SL_NS_PER_S 1000000000LL
#define SL_MS(ms) ((sl_time_t)(ms)*SL_NS_PER_MS)
#define SL_US(us) ((sl_time_t)(us)*SL_NS_PER_US)

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC). */
sl_time_t sl_clock_now(void);
/* Wall clock in nanoseconds since the Unix epoch (for deadlines sent on the wire). */
sl_time_t sl_clock_wall(void);
/* Sleep for ns nanoseconds (restarts on EINTR). */
void sl_clock_sleep(sl_time_t ns);

#endif
