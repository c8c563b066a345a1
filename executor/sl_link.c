/*
 * The executor's link to the scheduler (see sl_link.h).
 *
 * Why a thread: the ref backend computes a step in the thread that calls
 * it, for as long as the step takes (seconds for a long prompt on a CPU).
 * When the same loop also sent the heartbeats, a step longer than
 * missed_heartbeats intervals got a healthy executor declared lost, its
 * jobs requeued and its completions dropped as stale.
 *
 * The idea: split by ownership. The link thread owns the DEALER socket,
 * the heartbeat clock and the host load sampler; the engine thread
 * (sl_executor.c) owns the engine and everything else. They hand messages
 * over an inproc PAIR socket, the pipe. Frames pass through untouched in
 * both directions (zmq_msg_t moves: no copy, no decoding), so the engine
 * thread's code is the same as when it held the DEALER. The engine thread
 * posts its load on the pipe every half heartbeat interval as a small
 * struct frame whose first byte is 0 (no protobuf encoding starts with
 * field number 0, so it cannot be taken for an Envelope); the link thread
 * sends a Heartbeat on its own clock with the latest load it was posted
 * and the CPU and GPU utilization it measures itself at that moment. While
 * a step computes, the heartbeats keep going with the load from before the
 * step and a measured CPU that shows the step.
 *
 * Stalls: if the engine thread posts nothing for stall_timeout_ms (a step
 * that never ends, a deadlock), the link thread stops the heartbeats, so
 * the scheduler declares the executor lost and requeues its jobs instead
 * of waiting on them for ever. A post resumes them (a scheduler that
 * dropped the executor answers Error NOT_FOUND, and it registers again).
 *
 * Backpressure: the DEALER is read only while the pipe towards the engine
 * thread has room, so messages beyond the pipe's high-water mark wait in
 * ZeroMQ's queue and TCP, as they did before the link, and are not dropped.
 * What the engine thread sends is forwarded at once; a send the DEALER
 * refuses (no connection) is dropped and logged at debug level, as before.
 *
 * Rejected:
 * - the engine step on a worker thread: the engine, its callbacks (tokens,
 *   completions, KV events) and the jobs' envelopes would all cross
 *   between threads, and the engine would change owner at every step;
 * - a heartbeat thread with a socket of its own: the scheduler knows an
 *   executor by the ROUTER identity of its connection (ROUTER_HANDOVER
 *   lets a reconnecting peer take an identity over), so a second
 *   connection is a stranger; accepting it would need a new protocol field
 *   and a second way to check who speaks;
 * - the DEALER shared under a mutex: ZeroMQ sockets are not thread-safe,
 *   so every send, including those the engine's callbacks make during a
 *   step, would take the lock: a lock on the per-message path.
 *
 * Connection state: a ZeroMQ monitor on the DEALER reports its connection
 * going down and coming up, which the link logs with the endpoint ("lost
 * the scheduler at E; waiting for it"), so an operator sees the loss when
 * it happens rather than when a restarted scheduler answers. Nothing else
 * depends on it: registration stays soft state (sl_executor.c).
 *
 * Inline mode: a backend whose steps return at once (sim returns modelled
 * time, null does no work) never holds the engine thread for long, so it
 * needs no link thread, and the hop would cost it: a thread woken for each
 * message, on two shared cores, took about a third of the null executor's
 * control-plane jobs per second (sluice-bench ctlplane, alternating runs).
 * Chosen at create (cfg->threaded, which the executor takes from the
 * backend's instant_step): the pipe is then the DEALER itself, posts are
 * applied at once and the engine thread sends the heartbeats when
 * sl_link_tick says they are due; the same state and functions serve both
 * modes.
 */
#include "executor/sl_link.h"
#include "common/sl_auth.h"
#include "executor/sl_report.h"
#include "proto/sl_wire_mark.h"
#include "common/sl_log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Messages moved per direction per loop turn at most, so a flood one way
 * does not delay the other or a heartbeat. */
#define S_BURST 256
/* Queue depth of the pipe, each way (as the DEALER's). */
#define S_PIPE_HWM 100000

/* What the engine thread posts on the pipe. */
typedef struct s_post {
    uint8_t zero;          /* 0: marks a post (an Envelope never starts with 0) */
    uint8_t stop;          /* the engine thread is done: exit after what came before */
    bool welcomed;         /* the scheduler knows the executor: heartbeat */
    sl_time_t heartbeat;   /* interval between heartbeats */
    sl_engine_load_t load; /* the engine's load (scalars only: copyable) */
} s_post_t;

/* The link's state: the link thread's alone once started; the engine
 * thread's in inline mode. */
typedef struct s_link_thread {
    void *dealer;            /* DEALER to the scheduler */
    void *pipe;              /* the link thread's end of the pipe */
    sl_hostload_t *hl;       /* host load sampler */
    sl_time_t stall_timeout; /* 0 = never stop heartbeats */
    bool welcomed;           /* from the last post */
    sl_time_t heartbeat;     /* interval, from the last post */
    sl_engine_load_t load;   /* from the last post */
    sl_time_t last_post;     /* when the last post arrived */
    sl_time_t next_beat;     /* next heartbeat due (while welcomed) */
    uint64_t seq;            /* heartbeat sequence */
    bool stalled;            /* heartbeats withheld: the engine thread is silent */
    bool to_engine_blocked;  /* the pipe is full: the DEALER is not read */
    bool stop;               /* the stop post was read */
    void *monitor;           /* events of the DEALER's connection (NULL: none) */
    bool lost;               /* the connection went down and has not come back */
    bool refused;            /* a refused handshake was logged */
    char endpoint[256];      /* the scheduler's endpoint, for the log */
} s_link_thread_t;

struct sl_link {
    void *pipe;          /* the engine thread's socket: the pipe, or the DEALER when inline */
    bool threaded;       /* a link thread runs (else inline mode) */
    pthread_t thread;    /* the link thread, when threaded */
    s_link_thread_t *lt; /* the link's state (freed after the join) */
};

/* ---- The link thread ---------------------------------------------------- */

/* Log the DEALER's connection going down and coming back. */
static void s_monitor(s_link_thread_t *lt)
{
    uint16_t event;
    for (int i = 0; lt->monitor && i < S_BURST; i++) {
        if (sl_wire_monitor_event(lt->monitor, &event) != SL_OK)
            return;
        if ((event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
             event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
             event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) &&
            !lt->refused) {
            SL_WARN("the scheduler at %s refused our handshake: %s", lt->endpoint,
                    event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                        ? "our key is not in its executors.allow (or this is its client port)"
                        : "no keys, or not its server.pub, or it runs --insecure");
            lt->refused = true;
        }
        if (event == ZMQ_EVENT_DISCONNECTED && !lt->lost) {
            SL_WARN("lost the scheduler at %s; waiting for it", lt->endpoint);
            lt->lost = true;
        } else if (event == ZMQ_EVENT_CONNECTED && lt->lost) {
            SL_INFO("connected to the scheduler at %s again", lt->endpoint);
            lt->lost = false;
        }
    }
}

static void s_beat(s_link_thread_t *lt, sl_time_t now)
{
    if (lt->stall_timeout && now - lt->last_post > lt->stall_timeout) {
        if (!lt->stalled)
            SL_WARN("the engine thread has posted nothing for %lld ms: heartbeats stop, so the "
                    "scheduler requeues its jobs",
                    (long long)((now - lt->last_post) / SL_NS_PER_MS));
        lt->stalled = true;
        return;
    }
    sl_hostload_sample_t hs;
    sl_hostload_sample(lt->hl, &hs);
    sl_exec_load_t l;
    sl_engine_load_report(&lt->load, &hs, &l);
    sl_status_t st = sl_wire_heartbeat_send(lt->dealer, ++lt->seq, &l, ZMQ_DONTWAIT);
    if (st != SL_OK)
        SL_DEBUG("send heartbeat failed: %s", sl_status_str(st));
}

/* Send the heartbeat if it is due; the next one's time (INT64_MAX: none). */
static sl_time_t s_tick(s_link_thread_t *lt, sl_time_t now)
{
    if (!lt->welcomed)
        return INT64_MAX;
    if (now >= lt->next_beat) {
        s_beat(lt, now);
        lt->next_beat += lt->heartbeat;
        if (lt->next_beat <= now) /* far behind (a suspended process): no burst of beats */
            lt->next_beat = now + lt->heartbeat;
    }
    return lt->next_beat;
}

static void s_on_post(s_link_thread_t *lt, const s_post_t *p, sl_time_t now)
{
    if (p->stop) {
        lt->stop = true;
        return;
    }
    if (p->welcomed && (!lt->welcomed || p->heartbeat != lt->heartbeat))
        lt->next_beat = now + p->heartbeat; /* the first beat one interval after the welcome */
    if (lt->stalled)
        SL_INFO("the engine thread posts again: heartbeats resume");
    lt->stalled = false;
    lt->welcomed = p->welcomed;
    lt->heartbeat = p->heartbeat;
    lt->load = p->load;
    lt->last_post = now;
}

/* Move what the engine thread sent: posts are read, the rest forwarded. */
static void s_from_engine(s_link_thread_t *lt, sl_time_t now)
{
    for (int i = 0; i < S_BURST && !lt->stop; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, lt->pipe, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const uint8_t *data = zmq_msg_data(&m);
        if (zmq_msg_size(&m) == sizeof(s_post_t) && data[0] == 0) {
            s_post_t p;
            memcpy(&p, data, sizeof(p));
            zmq_msg_close(&m);
            s_on_post(lt, &p, now);
            continue;
        }
        int more = zmq_msg_more(&m);
        if (zmq_msg_send(&m, lt->dealer, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0) {
            SL_DEBUG("send to the scheduler failed: %s", zmq_strerror(errno));
            zmq_msg_close(&m);
        }
    }
}

/* Move the scheduler's messages to the engine thread while the pipe has room. */
static void s_from_scheduler(s_link_thread_t *lt)
{
    lt->to_engine_blocked = false;
    for (int i = 0; i < S_BURST; i++) {
        int events = 0;
        size_t sz = sizeof(events);
        zmq_getsockopt(lt->pipe, ZMQ_EVENTS, &events, &sz);
        if (!(events & ZMQ_POLLOUT)) {
            lt->to_engine_blocked = true;
            return;
        }
        zmq_msg_t m;
        int more;
        do {
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, lt->dealer, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                return;
            }
            more = zmq_msg_more(&m);
            /* The parts of a message travel together: room for the first is room for all. */
            if (zmq_msg_send(&m, lt->pipe, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0) {
                SL_WARN("link: cannot hand a message to the engine thread: %s",
                        zmq_strerror(errno));
                zmq_msg_close(&m);
            }
        } while (more);
    }
}

static void *s_thread(void *arg)
{
    s_link_thread_t *lt = arg;
    lt->last_post = sl_clock_now();
    while (!lt->stop) {
        zmq_pollitem_t items[3] = {
            {lt->pipe, 0, (short)(ZMQ_POLLIN | (lt->to_engine_blocked ? ZMQ_POLLOUT : 0)), 0},
            {lt->monitor, 0, ZMQ_POLLIN, 0},
            {lt->dealer, 0, ZMQ_POLLIN, 0},
        };
        sl_time_t now = sl_clock_now();
        long timeout = -1;
        if (lt->welcomed) {
            timeout =
                lt->next_beat <= now ? 0 : (long)((lt->next_beat - now + 999999) / SL_NS_PER_MS);
        }
        int rc = zmq_poll(items, lt->to_engine_blocked ? 2 : 3, timeout);
        if (rc < 0 && errno != EINTR) {
            SL_ERROR("link: zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        now = sl_clock_now();
        s_monitor(lt);
        s_from_engine(lt, now);
        s_from_scheduler(lt);
        s_tick(lt, now);
    }
    return NULL;
}

/* ---- The engine thread's side ------------------------------------------- */

static void s_set_int(void *sock, int opt, int v)
{
    zmq_setsockopt(sock, opt, &v, sizeof(v));
}

sl_status_t sl_link_create(void *zctx, const sl_link_cfg_t *cfg, sl_link_t **link_p)
{
    sl_status_t st = SL_ERR_IO;
    char ep[64];
    sl_link_t *k = calloc(1, sizeof(*k));
    s_link_thread_t *lt = calloc(1, sizeof(*lt));
    if (!k || !lt) {
        st = SL_ERR_NOMEM;
        goto err_free;
    }
    lt->stall_timeout = SL_MS(cfg->stall_timeout_ms);
    if ((st = sl_hostload_create(&cfg->hostload, &lt->hl)) != SL_OK)
        goto err_free;
    st = SL_ERR_IO;
    lt->dealer = zmq_socket(zctx, ZMQ_DEALER);
    if (!lt->dealer) {
        SL_ERROR("link: cannot create the DEALER socket: %s", zmq_strerror(errno));
        goto err_hostload;
    }
    int64_t maxmsg = cfg->max_msg_bytes;
    s_set_int(lt->dealer, ZMQ_LINGER, 0);
    zmq_setsockopt(lt->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (cfg->tos)
        (void)sl_wire_sock_mark(lt->dealer, cfg->tos); /* logged when refused */
    if (sl_auth_sock_client(lt->dealer, cfg->keys) != SL_OK)
        goto err_monitor;
    s_set_int(lt->dealer, ZMQ_HEARTBEAT_IVL, (int)(cfg->link_timeout_ms / 3));
    s_set_int(lt->dealer, ZMQ_HEARTBEAT_TIMEOUT, (int)cfg->link_timeout_ms);
    s_set_int(lt->dealer, ZMQ_SNDHWM, S_PIPE_HWM);
    s_set_int(lt->dealer, ZMQ_RCVHWM, S_PIPE_HWM);
    snprintf(lt->endpoint, sizeof(lt->endpoint), "%s", cfg->endpoint);
    snprintf(ep, sizeof(ep), "inproc://sluice-link-mon-%p", (void *)k);
    lt->monitor = zmq_socket(zctx, ZMQ_PAIR);
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (!lt->monitor || zmq_socket_monitor(lt->dealer, ep, events) != 0 ||
        zmq_connect(lt->monitor, ep) != 0) {
        SL_ERROR("link: cannot monitor the connection: %s", zmq_strerror(errno));
        goto err_monitor;
    }
    s_set_int(lt->monitor, ZMQ_LINGER, 0);
    if (sl_wire_connect_list(lt->dealer, cfg->endpoint) != SL_OK) {
        SL_ERROR("cannot connect to %s: %s", cfg->endpoint, zmq_strerror(errno));
        goto err_monitor;
    }
    if (!cfg->threaded) {
        lt->last_post = sl_clock_now();
        k->pipe = lt->dealer;
        k->lt = lt;
        *link_p = k;
        return SL_OK;
    }
    lt->pipe = zmq_socket(zctx, ZMQ_PAIR);
    k->pipe = zmq_socket(zctx, ZMQ_PAIR);
    if (!lt->pipe || !k->pipe) {
        SL_ERROR("link: cannot create the pipe: %s", zmq_strerror(errno));
        goto err_pipe;
    }
    snprintf(ep, sizeof(ep), "inproc://sluice-link-%p", (void *)k);
    for (int i = 0; i < 2; i++) {
        void *s = i ? k->pipe : lt->pipe;
        s_set_int(s, ZMQ_LINGER, 0);
        s_set_int(s, ZMQ_SNDHWM, S_PIPE_HWM);
        s_set_int(s, ZMQ_RCVHWM, S_PIPE_HWM);
    }
    if (zmq_bind(lt->pipe, ep) != 0 || zmq_connect(k->pipe, ep) != 0) {
        SL_ERROR("link: cannot join the pipe %s: %s", ep, zmq_strerror(errno));
        goto err_pipe;
    }
    /* Signals go to the engine thread, whose poll they interrupt. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&k->thread, NULL, s_thread, lt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        SL_ERROR("link: cannot start the link thread: %s", strerror(rc));
        goto err_pipe;
    }
    k->threaded = true;
    k->lt = lt;
    *link_p = k;
    return SL_OK;

err_pipe:
    if (k->pipe)
        zmq_close(k->pipe);
    if (lt->pipe)
        zmq_close(lt->pipe);
err_monitor:
    zmq_socket_monitor(lt->dealer, NULL, 0); /* stopped first, as in sl_link_destroy */
    zmq_close(lt->dealer);
    if (lt->monitor)
        zmq_close(lt->monitor);
err_hostload:
    sl_hostload_destroy(&lt->hl);
err_free:
    free(lt);
    free(k);
    return st;
}

void *sl_link_pipe(sl_link_t *k)
{
    return k->pipe;
}

static int s_post_send(sl_link_t *k, const s_post_t *p, int flags)
{
    return zmq_send(k->pipe, p, sizeof(*p), flags);
}

void sl_link_post(sl_link_t *k, bool welcomed, sl_time_t heartbeat, const sl_engine_load_t *load)
{
    s_post_t p;
    memset(&p, 0, sizeof(p));
    p.welcomed = welcomed;
    p.heartbeat = heartbeat > 0 ? heartbeat : SL_MS(100);
    if (load)
        p.load = *load;
    if (!k->threaded)
        s_on_post(k->lt, &p, sl_clock_now());
    else if (s_post_send(k, &p, ZMQ_DONTWAIT) < 0)
        SL_DEBUG("link: post dropped: %s", zmq_strerror(errno));
}

sl_time_t sl_link_tick(sl_link_t *k, sl_time_t now)
{
    if (k->threaded)
        return INT64_MAX;
    s_monitor(k->lt);
    return s_tick(k->lt, now);
}

void sl_link_destroy(sl_link_t **link_p)
{
    sl_link_t *k = *link_p;
    if (!k)
        return;
    if (k->threaded) {
        s_post_t p;
        memset(&p, 0, sizeof(p));
        p.stop = 1;
        /* Blocking: the link thread drains the pipe, so there will be room. */
        while (s_post_send(k, &p, 0) < 0 && errno == EINTR)
            ;
        pthread_join(k->thread, NULL);
        zmq_close(k->pipe);
        zmq_close(k->lt->pipe);
    }
    /* Stop the monitor before closing either end: a monitored socket closed
     * while its monitor still runs queues a last event for a reader that is
     * gone, and libzmq 4.3 leaks that message. */
    if (k->lt->monitor)
        zmq_socket_monitor(k->lt->dealer, NULL, 0);
    zmq_close(k->lt->dealer);
    if (k->lt->monitor)
        zmq_close(k->lt->monitor);
    sl_hostload_destroy(&k->lt->hl);
    free(k->lt);
    free(k);
    *link_p = NULL;
}
