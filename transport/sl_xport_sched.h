/*
 * The transport's class scheduler, background token bucket and link probe
 * window arithmetic: pure decisions, no clock reads and no UCX. The engine
 * (sl_xport.c) feeds them sizes and times and asks what to send next; the
 * unit tests drive them on a simulated clock and a simulated link
 * (tests/transport/test_xport_sched.c). Not installed.
 */
#ifndef SL_XPORT_SCHED_H
#define SL_XPORT_SCHED_H

#include <sluice/xport.h>

#include <stdbool.h>
#include <stdint.h>

#include "common/sl_clock.h"

/* Aim slightly under the background share, so that the one-chunk jitter of
 * any window of measurement stays at or under the share. */
#define SL_XPORT_SHARE_MARGIN 0.98
/* Depth of the background bucket, in chunks. */
#define SL_XPORT_BUCKET_CHUNKS 4
/* Most windows the link probe measures. */
#define SL_XPORT_PROBE_WINDOWS_MAX 256

/* State of the class scheduler (one per engine; a plain value, no
 * resources). Fields are read by the engine for logging and by tests; they
 * are changed only through the functions below. */
typedef struct sl_xport_sched {
    double w[SL_XPORT_NCLASS];    /* stride weights: control 1, critical 1-f, background f */
    double bg_cap;                /* background's cap: margin x share of the link (bucket) */
    double pass[SL_XPORT_NCLASS]; /* stride pass per class (bytes / weight served) */
    double vtime;                 /* pass of the last chunk served */
    uint64_t chunk;               /* scheduling unit in bytes */
    uint64_t inflight;            /* bytes handed to the link and not yet completed */
    uint64_t inflight_cap;        /* cap on inflight */
    double bucket;                /* background tokens in bytes */
    double bucket_rate;           /* tokens per second (0 = no bucket) */
    double bucket_max;            /* bucket depth in bytes */
    sl_time_t bucket_ts;          /* time of the last refill */
} sl_xport_sched_t;

/* Set up a scheduler: background held under bg_share (0 < bg_share <= 1)
 * of the link by its bucket, and given bg_floor (at most bg_share) of the
 * bytes while critical contends for the link; chunks of chunk bytes, at
 * most inflight_cap bytes handed to the link at once; no bucket until
 * sl_xport_sched_set_link(). */
void sl_xport_sched_init(sl_xport_sched_t *s, double bg_share, double bg_floor, uint64_t chunk,
                         uint64_t inflight_cap);

/* Set the link capacity (bytes per second) that background alone is held
 * under, at time now: a bucket of SL_XPORT_BUCKET_CHUNKS chunks, empty, with
 * a rate of margin x share x bps less its depth, so that no one-second
 * window carries more background than share x bps. bps <= 0 removes it. */
void sl_xport_sched_set_link(sl_xport_sched_t *s, double bps, sl_time_t now);

/* A class that had nothing queued has work again: it rejoins at the current
 * virtual time, so it cannot claim the bandwidth it did not use while idle.
 * Call before queueing its work when its queue was empty. */
void sl_xport_sched_join(sl_xport_sched_t *s, sl_xport_class_t cls);

/*
 * The class whose next chunk goes to the link at time now, or -1 when none
 * may go (in-flight cap reached, nothing ready, background out of tokens or
 * ahead of its share). ready[c] says that class c (critical or background)
 * has a chunk to send; critical_live that critical transfers are still in
 * progress (queued or completing), during which background may not run
 * ahead of critical. Refills the bucket up to now. Never returns control:
 * control traffic bypasses the scheduler (strict priority).
 */
int sl_xport_sched_next(sl_xport_sched_t *s, const bool ready[SL_XPORT_NCLASS], bool critical_live,
                        sl_time_t now);

/* The chunk picked by sl_xport_sched_next() carried bytes of class cls:
 * advance the class's pass and take background's tokens. */
void sl_xport_sched_charge(sl_xport_sched_t *s, sl_xport_class_t cls, uint64_t bytes);

/* bytes were handed to the link (posted) / completed by it. */
void sl_xport_sched_posted(sl_xport_sched_t *s, uint64_t bytes);
void sl_xport_sched_completed(sl_xport_sched_t *s, uint64_t bytes);

/* Background traffic sent outside the engine (an executor's log shipping)
 * takes bytes of the bucket's tokens at time now, so that all background
 * together stays under the share: true when taken or when there is no
 * bucket, false (nothing taken) when the bucket holds fewer tokens. */
bool sl_xport_sched_bg_take(sl_xport_sched_t *s, uint64_t bytes, sl_time_t now);

/* How long after now the bucket holds a chunk's worth of tokens: 0 when it
 * already does or when there is no bucket. */
sl_time_t sl_xport_sched_bucket_wait(const sl_xport_sched_t *s, sl_time_t now);

/* The link probe's measurement: after a warm-up of a quarter of the time,
 * the time is cut into windows and the capacity is the median window's rate,
 * so that one stall or burst of a shared host does not set it. */
typedef struct sl_xport_probe {
    sl_time_t win;                           /* window length */
    sl_time_t mark;                          /* end of the warm-up, then of the current window */
    uint64_t mark_bytes;                     /* byte counter at the start of the window */
    bool measuring;                          /* past the warm-up */
    int nwin;                                /* windows to measure */
    int nrate;                               /* windows measured */
    double rate[SL_XPORT_PROBE_WINDOWS_MAX]; /* bytes per second of each window */
} sl_xport_probe_t;

/* Start measuring at now for total ns in windows of window ns (one window
 * of the whole time when window > total; at most
 * SL_XPORT_PROBE_WINDOWS_MAX windows). */
void sl_xport_probe_start(sl_xport_probe_t *p, sl_time_t window, sl_time_t total, sl_time_t now);

/* Feed the running count of bytes completed at time now (counters only grow).
 * Returns true once every window has been measured. */
bool sl_xport_probe_observe(sl_xport_probe_t *p, sl_time_t now, uint64_t bytes);

/* True once every window has been measured. */
bool sl_xport_probe_done(const sl_xport_probe_t *p);

/* The median window's rate in *bps_p; sorts p->rate, so rate[0] and
 * rate[nrate - 1] are then the slowest and the fastest window.
 * SL_ERR_TIMEOUT (and *bps_p unchanged) when no window moved any bytes. */
sl_status_t sl_xport_probe_result(sl_xport_probe_t *p, double *bps_p);

#endif
