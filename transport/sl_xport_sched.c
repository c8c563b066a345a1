/*
 * The transport's class scheduler, its background token bucket and the link
 * probe's windows, as pure functions of sizes and times.
 *
 * The idea. The engine cuts transfers into chunks and asks
 * sl_xport_sched_next() which class's chunk goes next; it hands at most
 * inflight_cap bytes to UCX at once, so the order picked here is the order
 * the wire sees. Control traffic never comes here (it goes out at once:
 * strict priority). Critical and background share what is left by stride
 * scheduling on bytes: each class has a pass that grows by bytes / weight
 * per chunk (weights 1 - floor and floor), and the ready class with the
 * smaller pass goes next. The floor (xport-bg-floor, 5%) is what background
 * keeps while critical wants the whole link, so background is never
 * starved and a KV transfer is slowed by at most 1 / (1 - floor); the cap
 * (xport-bg-share, 20%, aimed SL_XPORT_SHARE_MARGIN low) is the bucket's,
 * which holds background alone under share x link capacity. With the floor
 * equal to the share, the two classes split a contended link 80:20. A class that was idle
 * rejoins at the current virtual time (sl_xport_sched_join), so an idle
 * class's share is lent and not owed back; a class held back (by its bucket)
 * may lag by one chunk at most, so it cannot burst past its share when it is
 * let go. A token bucket holds background alone under share x link capacity.
 *
 * Why this shape: the decisions used to sit inside the engine next to the
 * UCX calls and read the clock, so the 20% cap and the class shares could
 * only be seen in a benchmark on a real link. Here time is an argument and
 * the link is whoever calls sl_xport_sched_posted/completed, so the unit
 * tests run the same code on a simulated clock and a simulated link of known
 * rate. Alternatives rejected: deficit round robin (stride scheduling gives
 * the same shares with one number per class and handles a class that goes
 * idle by resynchronising its pass); a bucket on every class (critical must
 * be able to take the whole link); background at its cap under contention,
 * the earlier shape (a saturating critical stream then ran 1 / 0.8 = 1.25
 * times slower whenever background ran: every KV transfer paid it).
 */
#include "transport/sl_xport_sched.h"

#include <string.h>

#include "common/sl_hist.h"

void sl_xport_sched_init(sl_xport_sched_t *s, double bg_share, double bg_floor, uint64_t chunk,
                         uint64_t inflight_cap)
{
    memset(s, 0, sizeof(*s));
    s->bg_cap = bg_share * SL_XPORT_SHARE_MARGIN;
    double floor = bg_floor * SL_XPORT_SHARE_MARGIN;
    if (floor > s->bg_cap)
        floor = s->bg_cap;
    s->w[SL_XPORT_CONTROL] = 1;
    s->w[SL_XPORT_CRITICAL] = 1 - floor;
    s->w[SL_XPORT_BACKGROUND] = floor;
    s->chunk = chunk;
    s->inflight_cap = inflight_cap;
}

void sl_xport_sched_set_link(sl_xport_sched_t *s, double bps, sl_time_t now)
{
    if (bps <= 0) {
        s->bucket_rate = 0;
        return;
    }
    /* rate x 1 s + depth <= share x capacity: no one-second window carries
     * more background than its share of the link. The depth is a few chunks
     * so that tokens are not lost while background waits for its stride
     * turn behind critical chunks. */
    s->bucket_max = (double)(SL_XPORT_BUCKET_CHUNKS * s->chunk);
    s->bucket_rate = s->bg_cap * bps - s->bucket_max;
    if (s->bucket_rate < s->bucket_max)
        s->bucket_rate = s->bucket_max;
    s->bucket = 0;
    s->bucket_ts = now;
}

void sl_xport_sched_join(sl_xport_sched_t *s, sl_xport_class_t cls)
{
    if (s->pass[cls] < s->vtime)
        s->pass[cls] = s->vtime;
}

static void s_refill(sl_xport_sched_t *s, sl_time_t now)
{
    if (s->bucket_rate <= 0)
        return;
    s->bucket += s->bucket_rate * (double)(now - s->bucket_ts) / 1e9;
    if (s->bucket > s->bucket_max)
        s->bucket = s->bucket_max;
    s->bucket_ts = now;
}

bool sl_xport_sched_bg_take(sl_xport_sched_t *s, uint64_t bytes, sl_time_t now)
{
    if (s->bucket_rate <= 0)
        return true;
    s_refill(s, now);
    if (s->bucket < (double)bytes)
        return false;
    s->bucket -= (double)bytes;
    return true;
}

int sl_xport_sched_next(sl_xport_sched_t *s, const bool ready[SL_XPORT_NCLASS], bool critical_live,
                        sl_time_t now)
{
    int pick = -1;

    s_refill(s, now);
    if (s->inflight >= s->inflight_cap)
        return -1;
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        if (!ready[c])
            continue;
        /* bounded lag: a class held back (by its bucket, say) may catch up
         * by one chunk, not burst through all it missed */
        double floor = s->vtime - (double)s->chunk / s->w[c];
        if (s->pass[c] < floor)
            s->pass[c] = floor;
        if (c == SL_XPORT_BACKGROUND && s->bucket_rate > 0 && s->bucket < (double)s->chunk)
            continue;
        /* while critical transfers are live (even if only waiting for their
         * flush), background may not run ahead of its share */
        if (c == SL_XPORT_BACKGROUND && critical_live && s->pass[c] > s->pass[SL_XPORT_CRITICAL])
            continue;
        if (pick < 0 || s->pass[c] < s->pass[pick])
            pick = c;
    }
    return pick;
}

void sl_xport_sched_charge(sl_xport_sched_t *s, sl_xport_class_t cls, uint64_t bytes)
{
    s->vtime = s->pass[cls];
    s->pass[cls] += (double)bytes / s->w[cls];
    if (cls == SL_XPORT_BACKGROUND && s->bucket_rate > 0)
        s->bucket -= (double)bytes;
}

void sl_xport_sched_posted(sl_xport_sched_t *s, uint64_t bytes)
{
    s->inflight += bytes;
}

void sl_xport_sched_completed(sl_xport_sched_t *s, uint64_t bytes)
{
    s->inflight -= bytes;
}

sl_time_t sl_xport_sched_bucket_wait(const sl_xport_sched_t *s, sl_time_t now)
{
    if (s->bucket_rate <= 0)
        return 0;
    double tokens = s->bucket + s->bucket_rate * (double)(now - s->bucket_ts) / 1e9;
    if (tokens > s->bucket_max)
        tokens = s->bucket_max;
    if (tokens >= (double)s->chunk)
        return 0;
    /* round up, so that waiting this long always suffices */
    return (sl_time_t)(((double)s->chunk - tokens) * 1e9 / s->bucket_rate) + 1;
}

void sl_xport_probe_start(sl_xport_probe_t *p, sl_time_t window, sl_time_t total, sl_time_t now)
{
    memset(p, 0, sizeof(*p));
    p->win = window;
    p->nwin = window > 0 ? (int)(total / window) : 0;
    if (p->nwin < 1) {
        p->nwin = 1;
        p->win = total;
    }
    if (p->nwin > SL_XPORT_PROBE_WINDOWS_MAX)
        p->nwin = SL_XPORT_PROBE_WINDOWS_MAX;
    /* a quarter of the time warms the path up and is not counted */
    p->mark = now + total / 4;
}

bool sl_xport_probe_observe(sl_xport_probe_t *p, sl_time_t now, uint64_t bytes)
{
    if (p->nrate >= p->nwin)
        return true;
    if (now < p->mark)
        return false;
    /* the window began at the previous mark less one window: now - mark +
     * win is the time since then */
    if (p->measuring)
        p->rate[p->nrate++] =
            (double)(bytes - p->mark_bytes) * 1e9 / (double)(now - p->mark + p->win);
    p->measuring = true;
    p->mark_bytes = bytes;
    p->mark = now + p->win;
    return p->nrate >= p->nwin;
}

bool sl_xport_probe_done(const sl_xport_probe_t *p)
{
    return p->nrate >= p->nwin;
}

sl_status_t sl_xport_probe_result(sl_xport_probe_t *p, double *bps_p)
{
    double bps = sl_median(p->rate, (size_t)p->nrate); /* sorts rate */
    if (!(bps > 0))
        return SL_ERR_TIMEOUT;
    *bps_p = bps;
    return SL_OK;
}
