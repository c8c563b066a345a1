/*
 * The leader lease: which of several schedulers dispatches. Candidates
 * race for one etcd key under a lease; the holder keeps the lease alive
 * and dispatches only while its own clock says the lease still holds
 * (fencing). OPERATIONS.md, "A standby that takes over".
 */
#ifndef SL_LEASE_H
#define SL_LEASE_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stdint.h>

#include "common/sl_cfg.h"
#include "common/sl_clock.h"

typedef struct sl_lease_cfg {
    char etcd[SL_CFG_STR_MAX]; /* etcd client URLs, comma-separated; empty: no lease (one scheduler)
                                */
    char key[SL_CFG_STR_MAX];  /* the leader's key */
    int ttl_ms;                /* lease TTL asked of etcd (it counts whole seconds, rounded up) */
    int renew_ms;              /* keepalive period while leading */
    int retry_ms;              /* a standby's period between tries for the key */
    int margin_ms;             /* the holder stops this long before the lease could end at etcd */
    int timeout_ms;            /* one etcd request */
} sl_lease_cfg_t;

extern const sl_cfg_field_t sl_lease_cfg_table[];

/* ---- the pure core: what the holder may believe, on any clock ----------- */

typedef enum sl_lease_state {
    SL_LEASE_STANDBY = 0, /* not holding the key */
    SL_LEASE_LEADING = 1, /* holding it; dispatch while sl_lease_core_held */
    SL_LEASE_LOST = 2,    /* held it once and etcd says it is gone: never again */
} sl_lease_state_t;

typedef struct sl_lease_core {
    sl_lease_state_t state;
    sl_time_t valid_until; /* the holder's own clock: it may act before this */
    sl_time_t margin;
    uint64_t renewals, renew_failures;
} sl_lease_core_t;

void sl_lease_core_init(sl_lease_core_t *c, sl_time_t margin);

/* The key was won with a lease granted in a request sent at sent (the
 * grant happened at or after sent, so the lease lasts at least until
 * sent + ttl by etcd's clock, which runs at the rate of ours). */
void sl_lease_core_won(sl_lease_core_t *c, sl_time_t sent, sl_time_t ttl);

/* A keepalive sent at sent came back with ttl left; ttl 0: the lease is
 * gone (LOST). */
void sl_lease_core_renewed(sl_lease_core_t *c, sl_time_t sent, sl_time_t ttl);

/* A keepalive got no answer: nothing is extended. */
void sl_lease_core_renew_failed(sl_lease_core_t *c);

/* Whether the holder may dispatch at now: leading and before valid_until. */
bool sl_lease_core_held(const sl_lease_core_t *c, sl_time_t now);

/* ---- the lease, run by a thread of its own ------------------------------ */

typedef struct sl_lease sl_lease_t;

typedef struct sl_lease_stats {
    sl_lease_state_t state;
    uint64_t tries;          /* puts-if-absent tried */
    uint64_t renewals;       /* keepalives answered with time left */
    uint64_t renew_failures; /* keepalives not answered */
    uint64_t etcd_failures;  /* requests that failed, all kinds */
    sl_time_t won_at;        /* when it won the key (sl_clock_now), 0 if never */
    sl_time_t valid_until;
    char holder[256]; /* the last value seen at the key (the leader's address), "" if none */
} sl_lease_stats_t;

/* Start racing for cfg->key with value (this scheduler's address, for
 * clients and executors to find). A thread does the etcd calls; the
 * caller asks sl_lease_held before each dispatch. SL_ERR_INVALID when
 * cfg->etcd is empty. On success *l_p owns it. */
sl_status_t sl_lease_start(const sl_lease_cfg_t *cfg, const char *value, sl_lease_t **l_p);

/* Whether this scheduler may dispatch now: cheap (an atomic read and the
 * clock), for every dispatch. */
bool sl_lease_held(const sl_lease_t *l);

sl_lease_state_t sl_lease_state(const sl_lease_t *l);

/* Block until leading, LOST, *stop becomes true (may be NULL) or
 * timeout_ms passes (< 0: no limit). SL_OK when leading; SL_ERR_TIMEOUT;
 * SL_ERR_CANCELED when stopped. */
sl_status_t sl_lease_wait(sl_lease_t *l, int timeout_ms, volatile const int *stop);

void sl_lease_stats(sl_lease_t *l, sl_lease_stats_t *st);

/* Stop the thread; a holder revokes its lease, so a standby takes over at
 * once instead of after the TTL. NULL-safe; sets *l_p = NULL. */
void sl_lease_stop(sl_lease_t **l_p);

/* Read who holds key: SL_OK and the value, SL_ERR_NOT_FOUND when nobody,
 * SL_ERR_IO when etcd does not answer. */
sl_status_t sl_lease_leader(const char *etcd, const char *key, int timeout_ms, char *value,
                            size_t cap);

#endif
