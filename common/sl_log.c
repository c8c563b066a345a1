/*
 * Logging. Lines go to stderr with a wall-clock timestamp so that the logs of
 * several processes can be merged by time. The level is read once from the
 * environment; the check is an inline compare in the macro, so disabled levels
 * cost no call. Each line is formatted into one buffer and written with a
 * single write() so lines from threads and processes do not interleave.
 * A syslog or JSON sink was considered and left out: deployments capture
 * stderr (systemd, Kubernetes) and add their own structure.
 */
#include "common/sl_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int s_level = -1;
static const char *s_component = "sluice";
static _Atomic uint64_t s_error_count;
static _Atomic(sl_log_hook_fn) s_hook;

int sl_log_level_parse(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    return -1;
}

sl_log_level_t sl_log_level(void)
{
    int level = atomic_load_explicit(&s_level, memory_order_relaxed);
    if (level < 0) {
        const char *env = getenv("SLUICE_LOG_LEVEL");
        level = env ? sl_log_level_parse(env) : -1;
        if (level < 0)
            level = SL_LOG_INFO;
        atomic_store(&s_level, level);
    }
    return (sl_log_level_t)level;
}

void sl_log_set_level(sl_log_level_t level)
{
    atomic_store(&s_level, (int)level);
}

void sl_log_set_component(const char *component)
{
    s_component = component;
}

uint64_t sl_log_error_count(void)
{
    return atomic_load(&s_error_count);
}

void sl_log_set_hook(sl_log_hook_fn hook)
{
    atomic_store(&s_hook, hook);
}

void sl_log_write(sl_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    static const char tags[] = "EWIDT";
    int saved_errno = errno; /* so callers can use %m after us */
    char buf[1024];
    struct timespec ts;
    struct tm tm;
    const char *base = strrchr(file, '/');
    va_list ap;
    int n;

    if (level == SL_LOG_ERROR)
        atomic_fetch_add(&s_error_count, 1);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03ld %c %s[%d] %s:%d ", tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, tags[level], s_component, (int)getpid(),
                 base ? base + 1 : file, line);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = 0;
    errno = saved_errno;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    sl_log_hook_fn hook = atomic_load(&s_hook);
    if (hook) {
        buf[n - 1] = '\0';
        hook(level, buf);
    }
    errno = saved_errno;
}
