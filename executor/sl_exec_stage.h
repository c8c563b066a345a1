/*
 * The data path of pipeline stages: each forward step's residual stream
 * goes from a stage to the next one over the transport (critical class),
 * and the sampled tokens come back from the last stage to the first.
 *
 * Every stage registers a receive ring with its transport engine; the
 * stage before it puts a step into that ring with a notification after the
 * data. The stages form a loop: the first stage sends to the second, ...,
 * the last one sends the tokens back to the first. The first stage's
 * backend drives it through the sl_backend_stage_t hook (sl_exec_stage_hook):
 * the hook sends a step and progresses the engine until its tokens are
 * back. A later stage runs the steps that arrive (sl_exec_stage_progress)
 * through io.run, on the thread that owns the engine.
 */
#ifndef SL_EXEC_STAGE_H
#define SL_EXEC_STAGE_H

#include <sluice/status.h>
#include <sluice/xport.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_types.h"
#include "common/sl_clock.h"
#include "executor/sl_backend.h"

typedef struct sl_exec_stage sl_exec_stage_t;

/* Knobs (the executor's stage-ring-kib and stage-step-timeout-ms). */
typedef struct sl_exec_stage_cfg {
    int64_t ring_kib;        /* receive ring (and send buffer): one step at most */
    int64_t step_timeout_ms; /* the first stage fails a step whose tokens are not back */
} sl_exec_stage_cfg_t;

/* What a stage is made with. */
typedef struct sl_exec_stage_io {
    /* A later stage runs its layers on a step (x_in [n_rows][width]); a
     * middle stage writes x_out [n_rows][width], the last one next[n_out]
     * (sl_backend_ref_stage_run). */
    sl_status_t (*run)(void *arg, const sl_stage_step_t *step, const float *x_in, float *x_out,
                       uint32_t *next);
    void *arg;      /* passed to run */
    uint32_t width; /* floats per row of the residual stream */
    bool first;     /* this stage holds layer 0 (it drives the chain) */
    bool last;      /* this stage samples (it sends tokens to the first) */
    /* The receive ring: registered memory of the engine that the stage
     * before writes into (the tail of the executor's KV region, whose key
     * its peers hold already), ring_bytes long; NULL: the stage allocates
     * and registers one of ring_kib, whose key sl_exec_stage_ring_key gives. */
    void *ring;
    size_t ring_bytes;
    /* The stage with scheduler index `index`: its connection, the id of
     * its region and the offset of its ring there (false: not reached).
     * NULL: the single next stage set by sl_exec_stage_set_next. */
    bool (*peer)(void *arg, uint32_t index, sl_xport_peer_t **conn_p, uint32_t *region_p,
                 uint64_t *ring_off_p);
    void *peer_arg; /* passed to peer */
} sl_exec_stage_io_t;

/* Counters. */
typedef struct sl_exec_stage_stats {
    uint64_t steps_sent;     /* steps put into the next stage's ring */
    uint64_t steps_run;      /* steps run here (a later stage) */
    uint64_t steps_failed;   /* steps that failed (first stage: its sequences failed) */
    uint64_t bytes_sent;     /* bytes of those puts */
    uint64_t notifs_refused; /* notifications that did not match a step */
} sl_exec_stage_stats_t;

/* Create on xp (borrowed; it must outlive the stage): a receive ring and a
 * send buffer of ring_kib each, allocated and registered through xp. */
sl_status_t sl_exec_stage_create(const sl_exec_stage_cfg_t *cfg, sl_xport_t *xp,
                                 const sl_exec_stage_io_t *io, sl_exec_stage_t **stage_p);
/* Release (NULL-safe, sets *stage_p = NULL). A put still in flight is
 * waited for (progressing xp) for at most step_timeout_ms; past that the
 * stage's buffers are left registered rather than freed under it. */
void sl_exec_stage_destroy(sl_exec_stage_t **stage_p);
/* The ring's packed remote key (owned by the stage), for the stage before. */
void sl_exec_stage_ring_key(const sl_exec_stage_t *stage, const void **key_p, size_t *len_p);
/* The next stage of the loop (the first stage for the last one), when
 * io.peer is NULL: a connection of xp (borrowed) and the id of its ring. */
void sl_exec_stage_set_next(sl_exec_stage_t *stage, sl_xport_peer_t *conn, uint32_t ring);
/* The first stage's chain (scheduler indices, itself first; n 0: none, its
 * steps fail). Each step carries it, so later stages know where to send. */
sl_status_t sl_exec_stage_set_chain(sl_exec_stage_t *stage, const uint32_t *chain, uint32_t n);
/* A notification xp received: true when it was a stage's (handled). */
bool sl_exec_stage_on_notif(sl_exec_stage_t *stage, const void *data, size_t len);
/* A later stage: run the step that arrived, if any, and send it on. */
void sl_exec_stage_progress(sl_exec_stage_t *stage, sl_time_t now);
/* The first stage's hook for its backend (sl_backend_params_t.stage). */
sl_backend_stage_t sl_exec_stage_hook(sl_exec_stage_t *stage);
/* Counters. */
void sl_exec_stage_stats(const sl_exec_stage_t *stage, sl_exec_stage_stats_t *stats);

#endif
