/*
 * The simulator's model of KV transfers between executors: each executor
 * has one network link (a NIC) of a given bandwidth, full duplex, with a
 * fixed one-way latency. A transfer is serialized at the slower of the two
 * ends' bandwidths and occupies the sender's transmit side and the
 * receiver's receive side; transfers that share a side are served first
 * come, first served (a side busy until t serves the next from t). While
 * background traffic is on, it takes bg_share of every link's bandwidth
 * from the critical class that KV moves use. Pure: time is an argument.
 */
#ifndef SL_SIM_LINK_H
#define SL_SIM_LINK_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stdint.h>

#include "common/sl_clock.h"

typedef struct sl_sim_links sl_sim_links_t;

typedef struct sl_sim_link_cfg {
    double gbps;       /* link bandwidth of each executor, Gbit/s */
    double latency_us; /* one-way latency of a transfer, microseconds */
    double bg_share;   /* share of the bandwidth background traffic takes while on */
    bool bg_on;        /* background traffic on the links */
} sl_sim_link_cfg_t;

/* Links of n executors, all of cfg->gbps (sl_sim_links_set_gbps changes
 * one). SL_ERR_INVALID for a bandwidth <= 0, a share outside [0, 1) or a
 * negative latency; SL_ERR_NOMEM. On error *links_p is unchanged. */
sl_status_t sl_sim_links_create(uint32_t n, const sl_sim_link_cfg_t *cfg, sl_sim_links_t **links_p);
/* NULL-safe; sets *links_p = NULL. */
void sl_sim_links_destroy(sl_sim_links_t **links_p);
/* Executor i's link bandwidth becomes gbps (> 0). */
void sl_sim_links_set_gbps(sl_sim_links_t *links, uint32_t i, double gbps);
/* Executor i's links are idle again (it rejoined, empty). */
void sl_sim_links_reset(sl_sim_links_t *links, uint32_t i);
/* Bandwidth the critical class gets between from and to, bytes per second. */
double sl_sim_links_rate(const sl_sim_links_t *links, uint32_t from, uint32_t to);
/* Post a transfer of bytes from -> to at now: returns when it lands (the
 * last byte plus the latency), and books both sides until its last byte
 * leaves. *start_p (may be NULL) is when its first byte leaves. */
sl_time_t sl_sim_links_post(sl_sim_links_t *links, uint32_t from, uint32_t to, uint64_t bytes,
                            sl_time_t now, sl_time_t *start_p);

#endif
