/*
 * The executor's link to the scheduler: the DEALER socket, the heartbeats
 * and the host load they carry. Threaded, for backends whose steps compute
 * in the engine thread (ref): a thread of its own owns the DEALER and sends
 * the heartbeats, so they keep their pace while a long step computes, and
 * the engine thread talks to the scheduler through a pipe (an inproc PAIR
 * socket) exactly as it would through the DEALER: one Envelope per frame
 * each way. Inline, for backends whose steps return at once (sim, null):
 * no thread; the pipe is the DEALER and the engine thread sends the
 * heartbeats by calling sl_link_tick.
 */
#ifndef SL_LINK_H
#define SL_LINK_H

#include "common/sl_clock.h"
#include "executor/sl_engine.h"
#include "executor/sl_hostload.h"
#include "proto/sl_wire.h"

#include <stdbool.h>

typedef struct sl_link_cfg {
    const char *endpoint;     /* the scheduler's executor endpoint */
    int tos;                  /* IP type-of-service byte (0 = leave alone) */
    int64_t link_timeout_ms;  /* ZeroMQ heartbeat timeout of the connection */
    int64_t max_msg_bytes;    /* largest message accepted from the scheduler */
    int64_t stall_timeout_ms; /* heartbeats stop when the engine thread posted nothing this long (0
                                 = never) */
    bool threaded;            /* run a link thread (steps may hold the engine thread) */
    const struct sl_auth_keys *keys; /* CURVE keys (borrowed for the call; NULL: plain text) */
    sl_hostload_cfg_t hostload;      /* what heartbeats measure */
} sl_link_cfg_t;

typedef struct sl_link sl_link_t;

/*
 * Connect to the scheduler in zctx and, when cfg->threaded, start the link
 * thread. On success *link_p owns the sockets and the thread; on failure
 * the cause is logged, nothing is left behind and SL_ERR_IO (socket,
 * thread) or SL_ERR_NOMEM is returned. The calling thread becomes the
 * engine thread: the only one that may call the functions below.
 */
sl_status_t sl_link_create(void *zctx, const sl_link_cfg_t *cfg, sl_link_t **link_p);

/* The engine thread's socket: envelopes sent on it go to the scheduler in
 * order, the scheduler's arrive on it (the pipe, or the DEALER when
 * inline). Owned by the link. */
void *sl_link_pipe(sl_link_t *link);

/*
 * Tell the link the registration state and the engine's latest load
 * (copied; the link adds the CPU and GPU use it measures, through
 * sl_engine_load_report, the function the simulator uses too). While
 * welcomed, a Heartbeat goes out every `heartbeat` with the latest load
 * posted; a link thread stops them when no post came for stall_timeout_ms.
 * Call it at least every stall_timeout_ms while welcomed. A post that does
 * not fit in the pipe is dropped (logged at debug level).
 */
void sl_link_post(sl_link_t *link, bool welcomed, sl_time_t heartbeat,
                  const sl_engine_load_t *load);

/* Inline: log the connection's losses and returns (the link thread does
 * it when threaded), send the heartbeat if it is due. Returns when the next
 * one is due, for the engine thread's poll timeout (INT64_MAX: none, or
 * threaded, where this does nothing). */
sl_time_t sl_link_tick(sl_link_t *link, sl_time_t now);

/*
 * Forward everything sent on the pipe so far, stop and join the link
 * thread, close the sockets (unsent messages are dropped: linger 0) and
 * free the link; NULL-safe; sets *link_p = NULL.
 */
void sl_link_destroy(sl_link_t **link_p);

#endif
