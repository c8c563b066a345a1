/*
 * A small etcd v3 client: the calls a leader lease needs, over etcd's JSON
 * gateway (HTTP POST to /v3/...), through libcurl. Keys and values are
 * text; the gateway's base64 is done here. One handle serves one thread.
 */
#ifndef SL_ETCD_H
#define SL_ETCD_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest key or value handled, bytes. */
#define SL_ETCD_VALUE_MAX 512

typedef struct sl_etcd sl_etcd_t;

typedef struct sl_etcd_stats {
    uint64_t requests;  /* HTTP requests made */
    uint64_t failures;  /* requests no endpoint answered, or answered with an error */
    uint64_t failovers; /* times the next endpoint of the list was tried */
} sl_etcd_stats_t;

/* endpoints: etcd client URLs separated by commas (e.g.
 * "http://10.0.0.1:2379,http://10.0.0.2:2379"); a request goes to the
 * endpoint that answered last and moves on along the list when it does not
 * answer. timeout_ms bounds each request. SL_ERR_INVALID for an empty or
 * overlong list; on success *e_p owns the handle. */
sl_status_t sl_etcd_create(const char *endpoints, int timeout_ms, sl_etcd_t **e_p);

/* NULL-safe; sets *e_p = NULL. */
void sl_etcd_destroy(sl_etcd_t **e_p);

/* Grant a lease of ttl_s seconds; *id_p its id, *ttl_p the TTL etcd gave
 * (it rounds up to its minimum). SL_ERR_IO: no endpoint answered. */
sl_status_t sl_etcd_lease_grant(sl_etcd_t *e, int ttl_s, int64_t *id_p, int *ttl_p);

/* Renew a lease; *ttl_p the seconds it now has, 0 when etcd no longer
 * knows it (expired or revoked). */
sl_status_t sl_etcd_lease_keepalive(sl_etcd_t *e, int64_t id, int *ttl_p);

/* Revoke a lease (its keys go with it). */
sl_status_t sl_etcd_lease_revoke(sl_etcd_t *e, int64_t id);

/* Put key = value attached to lease if the key does not exist (one
 * transaction). *won_p true when it was put; otherwise holder (cap bytes,
 * may be NULL) receives the value that is there. */
sl_status_t sl_etcd_put_if_absent(sl_etcd_t *e, const char *key, const char *value, int64_t lease,
                                  bool *won_p, char *holder, size_t cap);

/* Read key: *found_p, and its value into value (cap bytes). */
sl_status_t sl_etcd_get(sl_etcd_t *e, const char *key, char *value, size_t cap, bool *found_p);

void sl_etcd_stats(const sl_etcd_t *e, sl_etcd_stats_t *st);

#endif
