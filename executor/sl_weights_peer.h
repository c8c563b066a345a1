/*
 * Weights from a peer: an executor that holds its model's weight file
 * serves it to starting peers over its transport engine, and a starting
 * executor reads it from such a peer, in the background class, instead of
 * from its own copy of the file, which stays the fallback (OPERATIONS.md,
 * "Weights from a peer").
 */
#ifndef SL_WEIGHTS_PEER_H
#define SL_WEIGHTS_PEER_H

#include <sluice/status.h>
#include <sluice/xport.h>

#include <stdint.h>

#include "proto/sl_wire.h"

/* ---- serving -------------------------------------------------------- */

typedef struct sl_weights_serve sl_weights_serve_t;

/* Read the weight file at path into memory registered with xp (for the
 * background class as for the others) and checksum it. name is what peers
 * ask for (the base name of the file the operator configured). SL_ERR_IO
 * (logged) when the file cannot be read; SL_ERR_INVALID (logged) for a
 * name longer than the wire allows; SL_ERR_NOMEM. On success *ws_p
 * owns the region; xp must outlive it. */
sl_status_t sl_weights_serve_create(sl_xport_t *xp, const char *path, const char *name,
                                    sl_weights_serve_t **ws_p);

/* What the executor's hello offers (points into ws). */
void sl_weights_serve_offer(const sl_weights_serve_t *ws, sl_wire_weights_t *w);

/* Deregister and free; NULL-safe; sets *ws_p = NULL. */
void sl_weights_serve_destroy(sl_weights_serve_t **ws_p);

/* ---- pulling -------------------------------------------------------- */

typedef struct sl_weights_pull_cfg {
    const char *scheduler;    /* the scheduler's executor endpoint (it names the holder) */
    const char *name;         /* the weights asked for */
    int tos;                  /* IP TOS byte of the query connection */
    int64_t query_timeout_ms; /* no answer from the scheduler within this long: no peer */
    int64_t pull_timeout_ms;  /* the transfer not done within this long fails */
    double bg_link_mbps;      /* link capacity the background bucket is a share of (0: none) */
    double bg_share;          /* that share */
    const struct sl_auth_keys *keys; /* CURVE keys of the query (NULL: plain text) */
} sl_weights_pull_cfg_t;

typedef struct sl_weights_pull_stats {
    uint64_t bytes;   /* bytes pulled (0: nothing was) */
    uint64_t xfer_us; /* the transfer's time */
    char peer[256];   /* the executor they came from */
} sl_weights_pull_stats_t;

/*
 * Ask the scheduler which live executor serves the weights cfg->name and
 * read them from it in the background class into an anonymous in-memory
 * file, checked against the offer's size and checksum. On SL_OK, *fd_p is
 * that file's descriptor (the caller closes it; the weights can be opened
 * by the path /proc/self/fd/<fd>) and *stats says what moved. Otherwise
 * nothing is left open and the caller reads its own file: SL_ERR_NOT_FOUND
 * (no holder, or no answer in time), SL_ERR_PEER_LOST (the transfer
 * failed or timed out), SL_ERR_MSG_MALFORMED (size or checksum differ),
 * each logged as a warning with its cause.
 */
sl_status_t sl_weights_pull(const sl_weights_pull_cfg_t *cfg, int *fd_p,
                            sl_weights_pull_stats_t *stats);

#endif
