/*
 * The transport's class scheduler, token bucket and link probe windows on a
 * simulated clock (transport/sl_xport_sched.c); no UCX, no real time.
 *
 * The simulated link carries what the scheduler hands it in order, at a
 * fixed rate, one chunk after another, and completes each chunk when its
 * last byte is through; the scheduler sees the same calls as in the engine
 * (next, charge, posted, completed). Control messages bypass the scheduler,
 * as the engine's notifications do, and queue on the link behind what is
 * already on it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "transport/sl_xport_sched.h"

#define RATE 1e9           /* link bytes per second */
#define CHUNK (256u << 10) /* the default xport-chunk-kib */
#define CAP (2048u << 10)  /* the default xport-inflight-kib */
#define SHARE 0.2          /* the default xport-bg-share */
#define CTL_BYTES 256      /* one control message */
#define WIRE_MAX 1024

typedef struct wire_item {
    int cls;        /* class, or -1 for a control message */
    uint64_t bytes; /* payload */
    sl_time_t sent; /* when it was handed to the link */
    sl_time_t done; /* when its last byte is through */
} wire_item_t;

typedef struct sim {
    sl_xport_sched_t s;                  /* the scheduler under test */
    sl_time_t now;                       /* simulated clock */
    bool offered[SL_XPORT_NCLASS];       /* class has chunks ready all the time */
    unsigned onwire[SL_XPORT_NCLASS];    /* chunks of the class on the link */
    uint64_t delivered[SL_XPORT_NCLASS]; /* bytes completed per class (control included) */
    wire_item_t wire[WIRE_MAX];          /* FIFO of what the link carries */
    size_t head, n;                      /* its first item and its length */
    sl_time_t free_at;                   /* when the link has carried everything handed to it */
    sl_time_t ctl_every;                 /* a control message this often (0 = none) */
    sl_time_t ctl_next;                  /* time of the next one */
    sl_time_t ctl_worst;                 /* longest control message latency seen */
    uint64_t ctl_sent;                   /* control messages handed to the link */
} sim_t;

/* Background's floor under contention: the share itself (80:20) unless a
 * test sets it lower. */
static double s_floor = SHARE;

static void s_sim_init(sim_t *m, double link_bps)
{
    memset(m, 0, sizeof(*m));
    sl_xport_sched_init(&m->s, SHARE, s_floor, CHUNK, CAP);
    if (link_bps > 0)
        sl_xport_sched_set_link(&m->s, link_bps, 0);
}

/* Start or stop a saturating stream of class cls. A class that had nothing
 * queued joins, as sl_xport_post() does for its first transfer. */
static void s_sim_offer(sim_t *m, sl_xport_class_t cls, bool on)
{
    if (on && !m->offered[cls])
        sl_xport_sched_join(&m->s, cls);
    m->offered[cls] = on;
}

static void s_wire_push(sim_t *m, int cls, uint64_t bytes)
{
    assert_true(m->n < WIRE_MAX);
    sl_time_t start = m->free_at > m->now ? m->free_at : m->now;
    wire_item_t *w = &m->wire[(m->head + m->n++) % WIRE_MAX];
    w->cls = cls;
    w->bytes = bytes;
    w->sent = m->now;
    w->done = start + (sl_time_t)((double)bytes * 1e9 / RATE + 0.5);
    m->free_at = w->done;
}

/* Hand the link every chunk the scheduler picks now. */
static void s_sim_post(sim_t *m)
{
    for (;;) {
        bool ready[SL_XPORT_NCLASS] = {false, m->offered[SL_XPORT_CRITICAL],
                                       m->offered[SL_XPORT_BACKGROUND]};
        bool crit_live = m->offered[SL_XPORT_CRITICAL] || m->onwire[SL_XPORT_CRITICAL];
        int c = sl_xport_sched_next(&m->s, ready, crit_live, m->now);
        if (c < 0)
            return;
        assert_true(c == SL_XPORT_CRITICAL || c == SL_XPORT_BACKGROUND);
        assert_true(m->offered[c]);
        sl_xport_sched_charge(&m->s, (sl_xport_class_t)c, CHUNK);
        sl_xport_sched_posted(&m->s, CHUNK);
        m->onwire[c]++;
        s_wire_push(m, c, CHUNK);
    }
}

/* Run the simulation until the clock reads until. */
static void s_sim_run(sim_t *m, sl_time_t until)
{
    while (m->now < until) {
        if (m->ctl_every && m->now >= m->ctl_next) {
            s_wire_push(m, -1, CTL_BYTES);
            m->ctl_sent++;
            m->ctl_next = m->now + m->ctl_every;
        }
        s_sim_post(m);
        sl_time_t next = until;
        if (m->n && m->wire[m->head].done < next)
            next = m->wire[m->head].done;
        if (m->ctl_every && m->ctl_next < next)
            next = m->ctl_next;
        if (m->offered[SL_XPORT_BACKGROUND]) {
            sl_time_t w = sl_xport_sched_bucket_wait(&m->s, m->now);
            if (w > 0 && m->now + w < next)
                next = m->now + w;
        }
        m->now = next;
        while (m->n && m->wire[m->head].done <= m->now) {
            wire_item_t *w = &m->wire[m->head];
            if (w->cls < 0) {
                m->delivered[SL_XPORT_CONTROL] += w->bytes;
                if (w->done - w->sent > m->ctl_worst)
                    m->ctl_worst = w->done - w->sent;
            } else {
                sl_xport_sched_completed(&m->s, w->bytes);
                m->delivered[w->cls] += w->bytes;
                m->onwire[w->cls]--;
            }
            m->head = (m->head + 1) % WIRE_MAX;
            m->n--;
        }
    }
}

/* Bytes of each class delivered in the next window of len ns. */
static void s_sim_window(sim_t *m, sl_time_t len, double out[SL_XPORT_NCLASS])
{
    uint64_t before[SL_XPORT_NCLASS];
    memcpy(before, m->delivered, sizeof(before));
    s_sim_run(m, m->now + len);
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        out[c] = (double)(m->delivered[c] - before[c]);
}

/* Background, critical and control saturate a link whose capacity the
 * scheduler knows: in every one-second window background stays at or under
 * 20% of the capacity and still gets close to it, critical takes the rest,
 * the link never idles, and every control message crosses within the time
 * the in-flight cap allows. */
static void test_background_capped_under_contention(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, RATE);
    m->ctl_every = SL_MS(1);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(1000));
    for (int i = 0; i < 10; i++) {
        s_sim_window(m, SL_MS(1000), b);
        assert_true(b[SL_XPORT_BACKGROUND] <= SHARE * RATE);
        assert_true(b[SL_XPORT_BACKGROUND] >= 0.19 * RATE);
        assert_true(b[SL_XPORT_CRITICAL] >= 0.80 * RATE);
        /* one message a millisecond, every one delivered (a window's edges
         * may cut one either way) */
        assert_true(b[SL_XPORT_CONTROL] >= 999.0 * CTL_BYTES);
        assert_true(b[SL_XPORT_CONTROL] <= 1001.0 * CTL_BYTES);
        assert_true(b[0] + b[1] + b[2] >= 0.999 * RATE);
    }
    /* a control message waits at most for what the cap lets sit on the link
     * (and for the two or three control messages sent before it, still in
     * that queue: 2 ms at one a millisecond) */
    assert_true(m->ctl_worst <= (sl_time_t)((CAP + 4 * CTL_BYTES) * 1e9 / RATE) + 4);
    assert_true(m->s.inflight <= CAP);
}

/* Critical first: with background's floor at 5% (the default
 * xport-bg-floor) and its cap at 20%, a contended link gives background
 * about 5% and critical the rest, so a saturating critical stream runs at
 * least 0.94 of the link; background alone still takes up to its cap. */
static void test_floor_under_contention(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_floor = 0.05;
    s_sim_init(m, RATE);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(1000));
    for (int i = 0; i < 5; i++) {
        s_sim_window(m, SL_MS(1000), b);
        assert_true(b[SL_XPORT_BACKGROUND] <= 0.05 * RATE + CHUNK);
        assert_true(b[SL_XPORT_BACKGROUND] >= 0.045 * RATE);
        assert_true(b[SL_XPORT_CRITICAL] >= 0.94 * RATE);
        assert_true(b[SL_XPORT_CRITICAL] + b[SL_XPORT_BACKGROUND] >= 0.999 * RATE);
    }
    s_sim_offer(m, SL_XPORT_CRITICAL, false);
    s_sim_run(m, m->now + SL_MS(1000));
    for (int i = 0; i < 3; i++) {
        s_sim_window(m, SL_MS(1000), b);
        assert_true(b[SL_XPORT_BACKGROUND] <= SHARE * RATE);
        assert_true(b[SL_XPORT_BACKGROUND] >= 0.19 * RATE);
    }
    s_floor = SHARE;
}

/* The same cap over shorter windows: 100 ms windows carry no more than
 * 20% of the capacity plus the bucket's depth. */
static void test_background_cap_in_short_windows(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, RATE);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(500));
    for (int i = 0; i < 50; i++) {
        s_sim_window(m, SL_MS(100), b);
        assert_true(b[SL_XPORT_BACKGROUND] <=
                    SHARE * RATE * 0.1 + SL_XPORT_BUCKET_CHUNKS * (double)CHUNK);
    }
}

/* Background alone on a link of known capacity stays under its share: the
 * bucket holds it even with the link idle. */
static void test_background_alone_held_by_bucket(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, RATE);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(1000));
    for (int i = 0; i < 5; i++) {
        s_sim_window(m, SL_MS(1000), b);
        assert_true(b[SL_XPORT_BACKGROUND] <= SHARE * RATE);
        assert_true(b[SL_XPORT_BACKGROUND] >= 0.19 * RATE);
        assert_true(b[SL_XPORT_CRITICAL] == 0);
    }
}

/* Without a known capacity the classes share the bytes by weight: about
 * 20% background (aimed 2% low), 80% critical, and the link is full. */
static void test_class_shares_without_bucket(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, 0);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(200));
    for (int i = 0; i < 10; i++) {
        s_sim_window(m, SL_MS(1000), b);
        double tot = b[SL_XPORT_CRITICAL] + b[SL_XPORT_BACKGROUND];
        assert_true(tot >= 0.999 * RATE);
        assert_true(b[SL_XPORT_BACKGROUND] / tot <= SHARE);
        assert_true(b[SL_XPORT_BACKGROUND] / tot >= 0.19);
        assert_true(b[SL_XPORT_CRITICAL] / tot >= 0.80);
    }
}

/* An idle class's share is lent: critical alone takes the whole link even
 * with the bucket set; background alone takes it when no capacity is set. */
static void test_idle_share_is_lent(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, RATE);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_run(m, SL_MS(100));
    s_sim_window(m, SL_MS(1000), b);
    assert_true(b[SL_XPORT_CRITICAL] >= 0.999 * RATE);

    s_sim_init(m, 0);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(100));
    s_sim_window(m, SL_MS(1000), b);
    assert_true(b[SL_XPORT_BACKGROUND] >= 0.999 * RATE);
}

/* A class that was idle rejoins at the current virtual time: it claims no
 * credit for the time it did not send, so from its first milliseconds back
 * the shares are the contended ones, both ways round. */
static void test_rejoining_class_claims_no_backlog(void **state)
{
    sim_t *m = *state;
    double b[SL_XPORT_NCLASS];

    s_sim_init(m, 0);
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    s_sim_run(m, SL_MS(2000));
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_window(m, SL_MS(20), b);
    double tot = b[SL_XPORT_CRITICAL] + b[SL_XPORT_BACKGROUND];
    /* at most one chunk more than its share, and critical is not stalled */
    assert_true(b[SL_XPORT_BACKGROUND] <= SHARE * tot + CHUNK);
    assert_true(b[SL_XPORT_CRITICAL] >= 0.75 * tot);

    s_sim_init(m, 0);
    s_sim_offer(m, SL_XPORT_BACKGROUND, true);
    s_sim_run(m, SL_MS(2000));
    s_sim_offer(m, SL_XPORT_CRITICAL, true);
    /* what background had on the link drains first (the cap), then the
     * contended shares hold */
    s_sim_run(m, m->now + (sl_time_t)(CAP * 1e9 / RATE));
    s_sim_window(m, SL_MS(20), b);
    tot = b[SL_XPORT_CRITICAL] + b[SL_XPORT_BACKGROUND];
    assert_true(b[SL_XPORT_CRITICAL] <= (1 - 0.19) * tot + CHUNK);
    assert_true(b[SL_XPORT_BACKGROUND] >= 0.15 * tot);
}

/* The bucket: empty when the capacity is set, a chunk's worth after
 * chunk / rate, refilled at its rate over a long run, never deeper than
 * four chunks, and at least its depth per second on a slow link. */
static void test_token_bucket_refills_at_rate(void **state)
{
    sl_xport_sched_t s;
    const bool bg[SL_XPORT_NCLASS] = {false, false, true};
    (void)state;

    sl_xport_sched_init(&s, SHARE, SHARE, CHUNK, CAP);
    sl_xport_sched_set_link(&s, RATE, SL_MS(5));
    double rate = SHARE * SL_XPORT_SHARE_MARGIN * RATE - SL_XPORT_BUCKET_CHUNKS * (double)CHUNK;
    assert_true(s.bucket_rate == rate);
    assert_true(s.bucket_max == SL_XPORT_BUCKET_CHUNKS * (double)CHUNK);

    sl_time_t t = SL_MS(5);
    assert_int_equal(sl_xport_sched_next(&s, bg, false, t), -1);
    sl_time_t w = sl_xport_sched_bucket_wait(&s, t);
    assert_true(w > 0 && w <= (sl_time_t)(CHUNK * 1e9 / rate) + 1);
    assert_int_equal(sl_xport_sched_next(&s, bg, false, t + w - 2), -1);
    assert_int_equal(sl_xport_sched_next(&s, bg, false, t + w), SL_XPORT_BACKGROUND);
    assert_int_equal(sl_xport_sched_bucket_wait(&s, t + w), 0);

    /* send whenever a chunk's worth is there, on a link that completes at
     * once: ten seconds carry rate x 10 s, give or take a chunk */
    uint64_t sent = 0;
    t += w;
    sl_time_t end = t + SL_MS(10000);
    for (;;) {
        sl_time_t d = sl_xport_sched_bucket_wait(&s, t);
        if (t + d > end)
            break;
        t += d;
        assert_int_equal(sl_xport_sched_next(&s, bg, false, t), SL_XPORT_BACKGROUND);
        sl_xport_sched_charge(&s, SL_XPORT_BACKGROUND, CHUNK);
        sent += CHUNK;
    }
    assert_true((double)sent >= rate * 10 - CHUNK);
    assert_true((double)sent <= rate * 10 + CHUNK);

    /* idle for a minute: the bucket holds only its depth */
    t += SL_MS(60000);
    int burst = 0;
    while (sl_xport_sched_next(&s, bg, false, t) == SL_XPORT_BACKGROUND) {
        sl_xport_sched_charge(&s, SL_XPORT_BACKGROUND, CHUNK);
        burst++;
    }
    assert_int_equal(burst, SL_XPORT_BUCKET_CHUNKS);

    /* a link so slow that share x capacity is under the depth: the rate is
     * the depth per second, not zero or negative */
    sl_xport_sched_set_link(&s, 1e6, t);
    assert_true(s.bucket_rate == s.bucket_max);
    /* no capacity: no bucket, nothing to wait for */
    sl_xport_sched_set_link(&s, 0, t);
    assert_int_equal(sl_xport_sched_bucket_wait(&s, t), 0);
    assert_int_equal(sl_xport_sched_next(&s, bg, false, t), SL_XPORT_BACKGROUND);
}

/* Background sent beside the engine (log shipping) takes the bucket's
 * tokens: engine chunks and those bytes together stay at the bucket's rate
 * over ten seconds; with no capacity set, nothing is held. */
static void test_bucket_shared_with_outside_bytes(void **state)
{
    sl_xport_sched_t s;
    const bool bg[SL_XPORT_NCLASS] = {false, false, true};
    (void)state;

    sl_xport_sched_init(&s, SHARE, SHARE, CHUNK, CAP);
    assert_true(sl_xport_sched_bg_take(&s, 1u << 30, 0)); /* no bucket yet */
    sl_xport_sched_set_link(&s, RATE, 0);
    assert_false(sl_xport_sched_bg_take(&s, 1, 0)); /* empty at first */
    double rate = s.bucket_rate;
    uint64_t engine = 0, outside = 0;
    for (sl_time_t t = SL_MS(1); t <= SL_MS(10000); t += SL_MS(1)) {
        while (sl_xport_sched_bg_take(&s, 16u << 10, t)) /* logs first each ms */
            outside += 16u << 10;
        while (sl_xport_sched_next(&s, bg, false, t) == SL_XPORT_BACKGROUND) {
            sl_xport_sched_charge(&s, SL_XPORT_BACKGROUND, CHUNK);
            engine += CHUNK;
        }
    }
    assert_true(outside > 0);
    assert_true((double)(engine + outside) <= rate * 10 + s.bucket_max);
    assert_true((double)(engine + outside) >= rate * 10 - CHUNK);
}

/* The in-flight cap stops the scheduler; completions let it go on. Control
 * is never picked, and nothing is picked when nothing is ready. */
static void test_inflight_cap(void **state)
{
    sl_xport_sched_t s;
    const bool none[SL_XPORT_NCLASS] = {true, false, false};
    const bool crit[SL_XPORT_NCLASS] = {false, true, false};
    (void)state;

    sl_xport_sched_init(&s, SHARE, SHARE, CHUNK, CAP);
    assert_int_equal(sl_xport_sched_next(&s, none, false, 0), -1);
    for (unsigned i = 0; i < CAP / CHUNK; i++) {
        assert_int_equal(sl_xport_sched_next(&s, crit, true, 0), SL_XPORT_CRITICAL);
        sl_xport_sched_charge(&s, SL_XPORT_CRITICAL, CHUNK);
        sl_xport_sched_posted(&s, CHUNK);
    }
    assert_int_equal(sl_xport_sched_next(&s, crit, true, 0), -1);
    sl_xport_sched_completed(&s, CHUNK);
    assert_int_equal(sl_xport_sched_next(&s, crit, true, 0), SL_XPORT_CRITICAL);
}

/* Bytes a link of rate bps has completed by time t, in whole chunks, with
 * an optional stall [s0, s1) during which nothing completes. */
static uint64_t s_link_bytes(double bps, sl_time_t t, sl_time_t s0, sl_time_t s1)
{
    sl_time_t busy = t < s0 ? t : t < s1 ? s0 : t - (s1 - s0);
    uint64_t bytes = (uint64_t)(bps * (double)busy / 1e9);
    return bytes - bytes % CHUNK;
}

static void s_probe_run(sl_xport_probe_t *p, double bps, sl_time_t total, sl_time_t s0,
                        sl_time_t s1)
{
    sl_time_t t = 0;
    sl_xport_probe_start(p, SL_MS(250), total, t);
    while (!sl_xport_probe_observe(p, t, s_link_bytes(bps, t, s0, s1))) {
        t += SL_US(100);
        assert_true(t < 2 * total);
    }
}

/* The probe's estimate converges on the link's rate: after its warm-up it
 * measures windows, and their median is the rate within a chunk's
 * granularity, even when one window stalls completely. */
static void test_probe_converges(void **state)
{
    sl_xport_probe_t p;
    double bps = 0;
    (void)state;

    s_probe_run(&p, 1.25e9, SL_MS(3000), 0, 0);
    assert_int_equal(p.nrate, 12);
    assert_int_equal(sl_xport_probe_result(&p, &bps), SL_OK);
    assert_true(bps > 0.99 * 1.25e9 && bps < 1.01 * 1.25e9);

    /* a 250 ms stall of the host inside the measured time */
    s_probe_run(&p, 1.25e9, SL_MS(3000), SL_MS(1500), SL_MS(1750));
    assert_int_equal(sl_xport_probe_result(&p, &bps), SL_OK);
    assert_true(bps > 0.99 * 1.25e9 && bps < 1.01 * 1.25e9);
    assert_true(p.rate[0] < 0.5 * 1.25e9); /* the stalled window, sorted first */

    /* a slower link gives a proportionally smaller estimate */
    s_probe_run(&p, 1e8, SL_MS(2000), 0, 0);
    assert_int_equal(sl_xport_probe_result(&p, &bps), SL_OK);
    assert_true(bps > 0.98 * 1e8 && bps < 1.02 * 1e8);

    /* shorter than a window: one window of the measured time */
    s_probe_run(&p, 1.25e9, SL_MS(200), 0, 0);
    assert_int_equal(p.nrate, 1);
    assert_int_equal(sl_xport_probe_result(&p, &bps), SL_OK);

    /* nothing moves: no estimate, and the output is left alone */
    bps = 7;
    s_probe_run(&p, 0, SL_MS(1000), 0, 0);
    assert_int_equal(sl_xport_probe_result(&p, &bps), SL_ERR_TIMEOUT);
    assert_true(bps == 7);
}

static int s_setup(void **state)
{
    static sim_t m;
    *state = &m;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background_capped_under_contention),
        cmocka_unit_test(test_floor_under_contention),
        cmocka_unit_test(test_background_cap_in_short_windows),
        cmocka_unit_test(test_background_alone_held_by_bucket),
        cmocka_unit_test(test_class_shares_without_bucket),
        cmocka_unit_test(test_idle_share_is_lent),
        cmocka_unit_test(test_rejoining_class_claims_no_backlog),
        cmocka_unit_test(test_token_bucket_refills_at_rate),
        cmocka_unit_test(test_bucket_shared_with_outside_bytes),
        cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_probe_converges),
    };
    return cmocka_run_group_tests_name("xport_sched", tests, s_setup, NULL);
}
