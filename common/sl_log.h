/* Logging: one line per event to stderr, with level, time and component. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdint.h>

typedef enum sl_log_level {
    SL_LOG_ERROR = 0,
    SL_LOG_WARN = 1,
    SL_LOG_INFO = 2,
    SL_LOG_DEBUG = 3,
    SL_LOG_TRACE = 4,
} sl_log_level_t;

/* Current threshold; set from SLUICE_LOG_LEVEL (error|warn|info|debug|trace)
 * on first use, or by sl_log_set_level(). */
sl_log_level_t sl_log_level(void);
void sl_log_set_level(sl_log_level_t level);
/* Parse a level name; returns -1 for an unknown one. */
int sl_log_level_parse(const char *name);
/* Name shown in every line (e.g. "scheduler"); the string must outlive logging. */
void sl_log_set_component(const char *component);
/* Number of lines logged at ERROR since start. */
uint64_t sl_log_error_count(void);

/* Sees each line after it is written: its level and the whole line, NUL
 * terminated, without the newline. It may be called from any thread that
 * logs, at the same time, and must not log itself. The test harness
 * (tests/support/sl_test.c) uses it to fail a test on an ERROR line the test
 * did not expect. */
typedef void (*sl_log_hook_fn)(sl_log_level_t level, const char *line);
/* Install a hook (NULL removes it); it replaces the one before. */
void sl_log_set_hook(sl_log_hook_fn hook);

void sl_log_write(sl_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SL_LOG_AT(lvl, ...)                                                                        \
    do {                                                                                           \
        if ((lvl) <= sl_log_level())                                                               \
            sl_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);                                  \
    } while (0)
#define SL_ERROR(...) SL_LOG_AT(SL_LOG_ERROR, __VA_ARGS__)
#define SL_WARN(...) SL_LOG_AT(SL_LOG_WARN, __VA_ARGS__)
#define SL_INFO(...) SL_LOG_AT(SL_LOG_INFO, __VA_ARGS__)
#define SL_DEBUG(...) SL_LOG_AT(SL_LOG_DEBUG, __VA_ARGS__)
#define SL_TRACE(...) SL_LOG_AT(SL_LOG_TRACE, __VA_ARGS__)

#endif
