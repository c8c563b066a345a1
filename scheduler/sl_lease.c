/*
 * The leader lease.
 *
 * The idea. Schedulers that may lead race for one etcd key, each putting
 * its own address there under a lease of its own, in a transaction that
 * puts only if the key is absent. The winner leads; it renews the lease
 * every renew-ms; the others (standbys) try again every retry-ms, and win
 * once the key has gone with an expired or revoked lease. This is how
 * Kubernetes controllers and etcd's own election recipe pick one leader.
 *
 * Fencing. A leader must stop before a standby can start. Each answered
 * request that was sent at time t with ttl left means etcd keeps the key
 * until at least t + ttl (etcd acted on it at or after t, and its clock
 * runs at the rate of ours), so the holder may act until t + ttl - margin
 * by its own monotonic clock and not after: sl_lease_held reads that bound
 * and the clock, nothing else, so a leader that was paused (SIGSTOP, a
 * long stall) or cut off from etcd finds its lease over the moment it
 * looks, before it dispatches anything. The standby wins only after the
 * key is gone at etcd, so the two never dispatch at the same time. A
 * keepalive answered with no time left (the lease expired at etcd) makes
 * the state LOST for good: the scheduler holding it exits and is started
 * again as a standby, as a Kubernetes controller does on losing its lease.
 *
 * Threads. One thread per lease does the etcd calls, so a slow etcd never
 * stalls the scheduler's loop; it publishes valid_until and the state
 * through atomics. The pure core (sl_lease_core_*) is the arithmetic,
 * tested on a simulated clock.
 */
#include "scheduler/sl_lease.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"
#include "scheduler/sl_etcd.h"

const sl_cfg_field_t sl_lease_cfg_table[] = {
    SL_CFG_FIELD(sl_lease_cfg_t, etcd, "etcd", "", SL_CFG_STR,
                 "etcd client URLs, comma-separated (e.g. http://10.0.0.1:2379); set, this "
                 "scheduler leads only while it holds the leader lease, and waits as a standby "
                 "until then"),
    SL_CFG_FIELD(sl_lease_cfg_t, key, "leader-key", "/sluice/leader", SL_CFG_STR,
                 "etcd key the schedulers race for; its value is the leader's address"),
    SL_CFG_RANGE(sl_lease_cfg_t, ttl_ms, "lease-ttl-ms", "1000", SL_CFG_INT, 1000, 600000,
                 "leader lease TTL (etcd counts whole seconds and has a minimum of its own: "
                 "1.5 x its election timeout)"),
    SL_CFG_RANGE(sl_lease_cfg_t, renew_ms, "lease-renew-ms", "250", SL_CFG_INT, 10, 600000,
                 "the leader renews its lease this often"),
    SL_CFG_RANGE(sl_lease_cfg_t, retry_ms, "lease-retry-ms", "100", SL_CFG_INT, 10, 600000,
                 "a standby tries for the key this often"),
    SL_CFG_RANGE(sl_lease_cfg_t, margin_ms, "lease-margin-ms", "100", SL_CFG_INT, 0, 600000,
                 "the leader stops dispatching this long before its lease could end at etcd"),
    SL_CFG_RANGE(sl_lease_cfg_t, timeout_ms, "etcd-timeout-ms", "200", SL_CFG_INT, 10, 60000,
                 "one request to etcd"),
    SL_CFG_END,
};

/* ---- pure core ---------------------------------------------------------- */

void sl_lease_core_init(sl_lease_core_t *c, sl_time_t margin)
{
    memset(c, 0, sizeof(*c));
    c->margin = margin;
}

void sl_lease_core_won(sl_lease_core_t *c, sl_time_t sent, sl_time_t ttl)
{
    if (c->state == SL_LEASE_LOST)
        return;
    c->state = SL_LEASE_LEADING;
    c->valid_until = sent + ttl - c->margin;
}

void sl_lease_core_renewed(sl_lease_core_t *c, sl_time_t sent, sl_time_t ttl)
{
    if (c->state != SL_LEASE_LEADING)
        return;
    if (ttl <= 0) {
        c->state = SL_LEASE_LOST;
        c->valid_until = 0;
        return;
    }
    c->renewals++;
    sl_time_t v = sent + ttl - c->margin;
    if (v > c->valid_until) /* an answer to an older request never shortens it */
        c->valid_until = v;
}

void sl_lease_core_renew_failed(sl_lease_core_t *c)
{
    c->renew_failures++;
}

bool sl_lease_core_held(const sl_lease_core_t *c, sl_time_t now)
{
    return c->state == SL_LEASE_LEADING && now < c->valid_until;
}

/* ---- the thread --------------------------------------------------------- */

struct sl_lease {
    sl_lease_cfg_t cfg;
    char value[sizeof(((sl_lease_stats_t *)0)->holder)];
    sl_etcd_t *etcd;
    pthread_t thread;
    pthread_mutex_t mu; /* core, stats, holder */
    sl_lease_core_t core;
    _Atomic sl_time_t valid_until; /* published for sl_lease_held: 0 = not leading */
    _Atomic int state;
    atomic_bool stop;
    int64_t lease_id;
    sl_lease_stats_t st;
};

static void s_publish(sl_lease_t *l)
{
    atomic_store(&l->valid_until, l->core.state == SL_LEASE_LEADING ? l->core.valid_until : 0);
    atomic_store(&l->state, (int)l->core.state);
    l->st.state = l->core.state;
    l->st.valid_until = l->core.valid_until;
    l->st.renewals = l->core.renewals;
    l->st.renew_failures = l->core.renew_failures;
}

/* Sleep up to ms, waking early when stopped. */
static void s_nap(sl_lease_t *l, int ms)
{
    sl_time_t end = sl_clock_now() + SL_MS(ms);
    while (!atomic_load(&l->stop)) {
        sl_time_t now = sl_clock_now();
        if (now >= end)
            return;
        sl_time_t step = end - now < SL_MS(10) ? end - now : SL_MS(10);
        sl_clock_sleep(step);
    }
}

/* One try for the key: grant a lease, put-if-absent under it. */
static void s_try(sl_lease_t *l)
{
    int64_t id;
    int ttl_s;
    char holder[sizeof(l->st.holder)] = "";
    bool won = false;
    int want = (l->cfg.ttl_ms + 999) / 1000;
    sl_time_t sent = sl_clock_now();
    if (sl_etcd_lease_grant(l->etcd, want, &id, &ttl_s) != SL_OK)
        return;
    if (sl_etcd_put_if_absent(l->etcd, l->cfg.key, l->value, id, &won, holder, sizeof(holder)) !=
        SL_OK) {
        sl_etcd_lease_revoke(l->etcd, id);
        return;
    }
    pthread_mutex_lock(&l->mu);
    l->st.tries++;
    if (won) {
        l->lease_id = id;
        snprintf(l->st.holder, sizeof(l->st.holder), "%s", l->value);
        sl_lease_core_won(&l->core, sent, SL_MS((sl_time_t)ttl_s * 1000));
        l->st.won_at = sl_clock_now();
        SL_INFO("lease: leading (key %s, lease %lld, %d s)", l->cfg.key, (long long)id, ttl_s);
        s_publish(l);
    } else {
        snprintf(l->st.holder, sizeof(l->st.holder), "%s", holder);
    }
    pthread_mutex_unlock(&l->mu);
    if (!won) /* the key is someone else's: this lease is of no use */
        sl_etcd_lease_revoke(l->etcd, id);
}

static void s_renew(sl_lease_t *l)
{
    int ttl_s = 0;
    sl_time_t sent = sl_clock_now();
    sl_status_t rc = sl_etcd_lease_keepalive(l->etcd, l->lease_id, &ttl_s);
    pthread_mutex_lock(&l->mu);
    if (rc != SL_OK) {
        sl_lease_core_renew_failed(&l->core);
        if (!sl_lease_core_held(&l->core, sl_clock_now()) && l->core.renew_failures % 8 == 1)
            SL_WARN("lease: etcd does not answer and the lease may have ended: not dispatching");
    } else {
        sl_lease_core_renewed(&l->core, sent, SL_MS((sl_time_t)ttl_s * 1000));
        if (l->core.state == SL_LEASE_LOST)
            SL_ERROR("lease: lost (etcd no longer has lease %lld): another scheduler may lead",
                     (long long)l->lease_id);
    }
    s_publish(l);
    pthread_mutex_unlock(&l->mu);
}

static void *s_main(void *arg)
{
    sl_lease_t *l = arg;
    while (!atomic_load(&l->stop)) {
        int state = atomic_load(&l->state);
        if (state == SL_LEASE_STANDBY) {
            s_try(l);
            if (atomic_load(&l->state) == SL_LEASE_STANDBY)
                s_nap(l, l->cfg.retry_ms);
        } else if (state == SL_LEASE_LEADING) {
            s_nap(l, l->cfg.renew_ms);
            if (!atomic_load(&l->stop))
                s_renew(l);
        } else {
            s_nap(l, l->cfg.retry_ms); /* LOST: the owner decides what to do */
        }
    }
    sl_etcd_stats_t es;
    sl_etcd_stats(l->etcd, &es);
    pthread_mutex_lock(&l->mu);
    l->st.etcd_failures = es.failures;
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------- */

sl_status_t sl_lease_start(const sl_lease_cfg_t *cfg, const char *value, sl_lease_t **l_p)
{
    if (!cfg || !value || !l_p || !cfg->etcd[0] || !cfg->key[0] ||
        strlen(value) >= sizeof(((sl_lease_t *)0)->value) || cfg->renew_ms >= cfg->ttl_ms)
        return SL_ERR_INVALID;
    sl_lease_t *l = calloc(1, sizeof(*l));
    if (!l)
        return SL_ERR_NOMEM;
    l->cfg = *cfg;
    snprintf(l->value, sizeof(l->value), "%s", value);
    sl_lease_core_init(&l->core, SL_MS(cfg->margin_ms));
    pthread_mutex_init(&l->mu, NULL);
    sl_status_t rc = sl_etcd_create(cfg->etcd, cfg->timeout_ms, &l->etcd);
    if (rc == SL_OK && pthread_create(&l->thread, NULL, s_main, l) != 0)
        rc = SL_ERR_IO;
    if (rc != SL_OK) {
        sl_etcd_destroy(&l->etcd);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return rc;
    }
    *l_p = l;
    return SL_OK;
}

bool sl_lease_held(const sl_lease_t *l)
{
    sl_time_t v = atomic_load(&((sl_lease_t *)l)->valid_until);
    return v != 0 && sl_clock_now() < v;
}

sl_lease_state_t sl_lease_state(const sl_lease_t *l)
{
    return (sl_lease_state_t)atomic_load(&((sl_lease_t *)l)->state);
}

sl_status_t sl_lease_wait(sl_lease_t *l, int timeout_ms, volatile const int *stop)
{
    sl_time_t end = timeout_ms < 0 ? 0 : sl_clock_now() + SL_MS(timeout_ms);
    for (;;) {
        int state = atomic_load(&l->state);
        if (state == SL_LEASE_LEADING)
            return SL_OK;
        if (state == SL_LEASE_LOST || (stop && *stop))
            return SL_ERR_CANCELED;
        if (end && sl_clock_now() >= end)
            return SL_ERR_TIMEOUT;
        /* short naps: a signal handler's *stop is seen within 10 ms */
        sl_clock_sleep(SL_MS(10));
    }
}

void sl_lease_stats(sl_lease_t *l, sl_lease_stats_t *st)
{
    pthread_mutex_lock(&l->mu);
    *st = l->st;
    pthread_mutex_unlock(&l->mu);
}

void sl_lease_stop(sl_lease_t **l_p)
{
    if (!l_p || !*l_p)
        return;
    sl_lease_t *l = *l_p;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    if (l->core.state == SL_LEASE_LEADING) {
        /* stop first, then hand over: after this nothing here dispatches */
        atomic_store(&l->valid_until, 0);
        if (sl_etcd_lease_revoke(l->etcd, l->lease_id) == SL_OK)
            SL_INFO("lease: revoked; a standby may lead now");
    }
    sl_etcd_destroy(&l->etcd);
    pthread_mutex_destroy(&l->mu);
    free(l);
    *l_p = NULL;
}

sl_status_t sl_lease_leader(const char *etcd, const char *key, int timeout_ms, char *value,
                            size_t cap)
{
    sl_etcd_t *e = NULL;
    bool found = false;
    sl_status_t rc = sl_etcd_create(etcd, timeout_ms, &e);
    if (rc == SL_OK)
        rc = sl_etcd_get(e, key, value, cap, &found);
    sl_etcd_destroy(&e);
    return rc == SL_OK && !found ? SL_ERR_NOT_FOUND : rc;
}
