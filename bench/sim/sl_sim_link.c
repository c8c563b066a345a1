/*
 * KV transfer links of the simulator (see sl_sim_link.h).
 *
 * Idea: a transfer is a reservation of two queues, the sender's transmit
 * side and the receiver's receive side, each remembered as the time it
 * becomes free. A transfer starts when both are free and holds both for
 * bytes / rate; the latency is added to its arrival but holds neither side
 * (the next transfer's bytes follow it on the wire). That is what one
 * RDMA write stream per NIC does: one transfer at a time at line rate,
 * pipelined latency.
 *
 * Alternatives rejected: fair sharing of a link among concurrent transfers
 * (processor sharing): it needs every transfer's end recomputed whenever
 * one starts or ends, and the data plane posts one transfer per job in
 * order, which a FIFO models as well; a single shared network fabric: the
 * NIC, not the switch, is the bottleneck of a rack.
 */
#include "bench/sim/sl_sim_link.h"

#include <stdlib.h>

struct sl_sim_links {
    uint32_t n;            /* executors */
    sl_sim_link_cfg_t cfg; /* the model's parameters */
    double *gbps;          /* per executor link bandwidth */
    sl_time_t *tx_free;    /* when each transmit side is free */
    sl_time_t *rx_free;    /* when each receive side is free */
};

sl_status_t sl_sim_links_create(uint32_t n, const sl_sim_link_cfg_t *cfg, sl_sim_links_t **links_p)
{
    if (n == 0 || !(cfg->gbps > 0) || !(cfg->bg_share >= 0 && cfg->bg_share < 1) ||
        !(cfg->latency_us >= 0))
        return SL_ERR_INVALID;
    sl_sim_links_t *l = calloc(1, sizeof(*l));
    if (!l)
        return SL_ERR_NOMEM;
    l->n = n;
    l->cfg = *cfg;
    l->gbps = malloc(n * sizeof(*l->gbps));
    l->tx_free = calloc(n, sizeof(*l->tx_free));
    l->rx_free = calloc(n, sizeof(*l->rx_free));
    if (!l->gbps || !l->tx_free || !l->rx_free) {
        sl_sim_links_destroy(&l);
        return SL_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        l->gbps[i] = cfg->gbps;
    *links_p = l;
    return SL_OK;
}

void sl_sim_links_destroy(sl_sim_links_t **links_p)
{
    sl_sim_links_t *l = *links_p;
    if (!l)
        return;
    free(l->gbps);
    free(l->tx_free);
    free(l->rx_free);
    free(l);
    *links_p = NULL;
}

void sl_sim_links_set_gbps(sl_sim_links_t *l, uint32_t i, double gbps)
{
    if (i < l->n && gbps > 0)
        l->gbps[i] = gbps;
}

void sl_sim_links_reset(sl_sim_links_t *l, uint32_t i)
{
    if (i < l->n)
        l->tx_free[i] = l->rx_free[i] = 0;
}

double sl_sim_links_rate(const sl_sim_links_t *l, uint32_t from, uint32_t to)
{
    double g = l->gbps[from] < l->gbps[to] ? l->gbps[from] : l->gbps[to];
    double share = l->cfg.bg_on ? 1.0 - l->cfg.bg_share : 1.0;
    return g * 1e9 / 8.0 * share;
}

sl_time_t sl_sim_links_post(sl_sim_links_t *l, uint32_t from, uint32_t to, uint64_t bytes,
                            sl_time_t now, sl_time_t *start_p)
{
    sl_time_t start = now;
    if (l->tx_free[from] > start)
        start = l->tx_free[from];
    if (l->rx_free[to] > start)
        start = l->rx_free[to];
    sl_time_t ser = (sl_time_t)((double)bytes / sl_sim_links_rate(l, from, to) * 1e9 + 0.5);
    l->tx_free[from] = l->rx_free[to] = start + ser;
    if (start_p)
        *start_p = start;
    return start + ser + (sl_time_t)(l->cfg.latency_us * 1e3 + 0.5);
}
