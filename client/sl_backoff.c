/*
 * The BUSY retry schedule of the client, as a pure function.
 *
 * Idea: exponential growth with jitter over the whole doubling window
 * ([n, 2n] for attempt k with n = base * 2^k), so that clients refused
 * together spread over the window instead of returning in lock-step, and the
 * scheduler's retry-after acts as a floor with its own jitter on top. The
 * function takes the uniform draw as an argument and reads no clock, so the
 * schedule is tested with many draws on a simulated clock and the client
 * only has to add the result to "now".
 *
 * Rejected: AWS "full jitter" in [0, n] (a retry can come back at once,
 * which defeats the point of a retry-after, and the first retry after 1 s
 * would sometimes be after 1 ms); fixed delays (lock-step retries, the
 * failure this schedule exists to prevent); "decorrelated jitter" (depends on
 * the previous delay, so it is not a function of the attempt alone).
 */
#include <sluice/client.h>

#include <math.h>

void sl_backoff_cfg_default(sl_backoff_cfg_t *cfg)
{
    cfg->base_ms = 1000;
    cfg->cap_ms = 10000;
    cfg->multiplier = 2.0;
    cfg->jitter = 1.0;
    cfg->first_jitter = 0.25;
    cfg->retry_after_jitter = 0.5;
    cfg->retry_after_max_ms = 60000;
    cfg->max_retries = 5;
}

static double s_min(double a, double b)
{
    return a < b ? a : b;
}

static double s_max(double a, double b)
{
    return a > b ? a : b;
}

void sl_backoff_window(const sl_backoff_cfg_t *cfg, uint32_t attempt, uint32_t retry_after_ms,
                       uint32_t *lo_ms_p, uint32_t *hi_ms_p)
{
    double cap = s_max(0, cfg->cap_ms);
    double mult = cfg->multiplier >= 1.0 ? cfg->multiplier : 1.0;
    /* pow() of a large attempt is inf, which s_min folds into the cap. */
    double nominal = s_min(cap, s_max(0, cfg->base_ms) * pow(mult, (double)attempt));
    double width = attempt == 0 ? cfg->first_jitter : cfg->jitter;
    double lo = nominal;
    double hi = s_min(cap, nominal * (1.0 + s_max(0, width)));

    if (retry_after_ms > 0) {
        double ra_max = s_max(0, cfg->retry_after_max_ms);
        double ra_lo = s_min(ra_max, retry_after_ms);
        double ra_hi = s_min(ra_max, ra_lo * (1.0 + s_max(0, cfg->retry_after_jitter)));
        lo = s_max(lo, ra_lo);
        hi = s_max(hi, ra_hi);
    }
    if (hi < lo)
        hi = lo;
    *lo_ms_p = (uint32_t)lo;
    *hi_ms_p = (uint32_t)hi;
}

uint32_t sl_backoff_delay_ms(const sl_backoff_cfg_t *cfg, uint32_t attempt, uint32_t retry_after_ms,
                             double u)
{
    uint32_t lo, hi;
    sl_backoff_window(cfg, attempt, retry_after_ms, &lo, &hi);
    if (!(u >= 0))
        u = 0;
    if (u >= 1)
        u = 0.999999999;
    /* floor(u * (width + 1)) <= width for u < 1: every value of the window is reachable. */
    uint32_t d = lo + (uint32_t)(u * ((double)(hi - lo) + 1.0));
    return d > hi ? hi : d;
}
