/*
 * Clocks for the daemons and tools. Kept in one file so that nothing in the
 * decision core can reach a clock by accident: the core does not link this.
 */
#include "common/sl_clock.h"

#include <errno.h>
#include <time.h>

static sl_time_t s_read(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (sl_time_t)ts.tv_sec * SL_NS_PER_S + ts.tv_nsec;
}

sl_time_t sl_clock_now(void)
{
    return s_read(CLOCK_MONOTONIC);
}

sl_time_t sl_clock_wall(void)
{
    return s_read(CLOCK_REALTIME);
}

void sl_clock_sleep(sl_time_t ns)
{
    struct timespec ts = {.tv_sec = ns / SL_NS_PER_S, .tv_nsec = ns % SL_NS_PER_S};
    while (ns > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
