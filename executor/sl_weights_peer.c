/*
 * Weights from a peer (see sl_weights_peer.h).
 *
 * The holder reads its weight file once into a region allocated through
 * its transport engine (sl_xport_mem_alloc: registered for every class,
 * and mappable by a peer on the same host), and offers the region's key,
 * size and checksum in its hello. The scheduler keeps the offer with the
 * executor and names a holder to whoever asks (WeightsQuery, from a
 * connection of its own, before the asker's hello), so the scheduler holds
 * no state about pulls and a holder that is lost is never named again.
 *
 * The starting executor pulls before it builds its backend, so the bytes
 * reach the backend through the same loader as a file: they land in an
 * anonymous in-memory file (memfd) that the loader opens by its
 * /proc/self/fd path. It reads with a GET (the holder does nothing but
 * progress its engine, which its loop does anyway) in the background
 * class, on an engine of its own made for the pull and destroyed after
 * it, whose bucket holds the pull under the background share of the link
 * when the link's capacity is known. A pull that fails in any way (no
 * holder, the holder lost mid-way, a timeout, a size or checksum that
 * differs from the offer) leaves nothing behind and the caller reads its
 * own file: the peer is an optimisation, never a dependency.
 *
 * Rejected: the holder pushing (PUT) into the newcomer's region, which
 * would need the newcomer registered first and a notification back; and
 * registering the holder's mmap of the file in place, which UCX may refuse
 * for a read-only mapping and which the file's owner could change under a
 * reader.
 */
#include "executor/sl_weights_peer.h"
#include "common/sl_auth.h"
#include "common/sl_clock.h"
#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "proto/sl_wire_mark.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

struct sl_weights_serve {
    sl_xport_t *xp;      /* the engine the region is registered with (borrowed) */
    sl_xport_mem_t *mem; /* the region (owns the bytes) */
    void *base;          /* its first byte */
    uint64_t bytes;      /* the file's size */
    uint64_t checksum;   /* sl_hash_bytes of it, seed 0 */
    void *rkey;          /* packed key (owned) */
    size_t rkey_len;     /* its bytes */
    char name[256];      /* what peers ask for */
};

/* Read all of fd into buf. */
static int s_read_all(int fd, void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

sl_status_t sl_weights_serve_create(sl_xport_t *xp, const char *path, const char *name,
                                    sl_weights_serve_t **ws_p)
{
    if (strlen(name) > sl_proto_limits_default.max_name_len) {
        SL_WARN("weights: not served to peers: the name %s is longer than %u bytes", name,
                sl_proto_limits_default.max_name_len);
        return SL_ERR_INVALID;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0) {
        SL_WARN("weights: cannot serve %s to peers: %m", path);
        if (fd >= 0)
            close(fd);
        return SL_ERR_IO;
    }
    sl_weights_serve_t *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        close(fd);
        return SL_ERR_NOMEM;
    }
    ws->xp = xp;
    ws->bytes = (uint64_t)sb.st_size;
    snprintf(ws->name, sizeof(ws->name), "%s", name);
    sl_status_t st =
        sl_xport_mem_alloc(xp, (size_t)ws->bytes, SL_XPORT_MEM_HOST, &ws->base, &ws->mem);
    if (st == SL_OK && s_read_all(fd, ws->base, (size_t)ws->bytes) != 0) {
        SL_WARN("weights: cannot read %s to serve it: %m", path);
        st = SL_ERR_IO;
    }
    if (st == SL_OK)
        st = sl_xport_mem_pack(xp, ws->mem, &ws->rkey, &ws->rkey_len);
    close(fd);
    if (st != SL_OK) {
        sl_weights_serve_destroy(&ws);
        return st;
    }
    ws->checksum = sl_hash_bytes(ws->base, (size_t)ws->bytes, 0);
    SL_INFO("weights: serving %s to peers (%llu bytes, checksum %016llx)", ws->name,
            (unsigned long long)ws->bytes, (unsigned long long)ws->checksum);
    *ws_p = ws;
    return SL_OK;
}

void sl_weights_serve_offer(const sl_weights_serve_t *ws, sl_wire_weights_t *w)
{
    *w = (sl_wire_weights_t){.name = ws->name,
                             .bytes = ws->bytes,
                             .checksum = ws->checksum,
                             .rkey = ws->rkey,
                             .rkey_len = ws->rkey_len};
}

void sl_weights_serve_destroy(sl_weights_serve_t **ws_p)
{
    sl_weights_serve_t *ws = ws_p ? *ws_p : NULL;
    if (!ws)
        return;
    free(ws->rkey);
    sl_xport_mem_deregister(ws->xp, &ws->mem);
    free(ws);
    *ws_p = NULL;
}

/* ---- pulling -------------------------------------------------------- */

/* What the scheduler answered, copied out of its message. */
typedef struct s_source {
    char peer[256];    /* the holder's name */
    uint8_t *addr;     /* its engine address (owned) */
    size_t addr_len;   /* bytes of addr */
    uint8_t *rkey;     /* the region's key (owned) */
    size_t rkey_len;   /* bytes of rkey */
    uint64_t bytes;    /* the size offered */
    uint64_t checksum; /* the checksum offered */
} s_source_t;

static void s_source_free(s_source_t *src)
{
    free(src->addr);
    free(src->rkey);
}

/* Ask the scheduler for a holder; SL_ERR_NOT_FOUND when none or no answer. */
static sl_status_t s_query(const sl_weights_pull_cfg_t *cfg, s_source_t *src)
{
    sl_status_t st = SL_ERR_NOT_FOUND;
    void *zctx = zmq_ctx_new();
    void *sock = zctx ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    int zero = 0;
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
        sl_wire_sock_mark(sock, cfg->tos) != SL_OK || sl_auth_sock_client(sock, cfg->keys) ||
        sl_wire_connect_list(sock, cfg->scheduler) != SL_OK ||
        sl_wire_weights_query_send(sock, cfg->name, 0) != SL_OK) {
        SL_WARN("weights: cannot ask the scheduler at %s for a peer: %s", cfg->scheduler,
                zmq_strerror(errno));
        goto out;
    }
    sl_time_t until = sl_clock_now() + SL_MS(cfg->query_timeout_ms);
    for (sl_time_t now; (now = sl_clock_now()) < until;) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)((until - now) / SL_NS_PER_MS) + 1) <= 0)
            continue;
        sl_wire_msg_t *msg = NULL;
        sl_wire_ident_t none;
        char err[256];
        if (sl_wire_recv(sock, 0, ZMQ_DONTWAIT, &sl_proto_limits_default, &none, &msg, err,
                         sizeof(err)) != SL_OK)
            continue;
        if (sl_wire_msg_kind(msg) != SL_WIRE_WEIGHTS_SOURCE) {
            sl_wire_msg_free(&msg);
            continue;
        }
        sl_wire_weights_source_t w;
        sl_wire_weights_source_get(msg, &w);
        if (w.found) {
            snprintf(src->peer, sizeof(src->peer), "%s", w.peer);
            src->addr = malloc(w.xport_address_len);
            src->rkey = malloc(w.weights.rkey_len);
            if (src->addr && src->rkey) {
                memcpy(src->addr, w.xport_address, w.xport_address_len);
                memcpy(src->rkey, w.weights.rkey, w.weights.rkey_len);
                src->addr_len = w.xport_address_len;
                src->rkey_len = w.weights.rkey_len;
                src->bytes = w.weights.bytes;
                src->checksum = w.weights.checksum;
                st = SL_OK;
            } else {
                s_source_free(src);
                st = SL_ERR_NOMEM;
            }
        } else {
            SL_INFO("weights: no live executor serves %s; reading the file", cfg->name);
        }
        sl_wire_msg_free(&msg);
        goto out;
    }
    SL_WARN("weights: the scheduler at %s did not name a peer within %lld ms; reading the file",
            cfg->scheduler, (long long)cfg->query_timeout_ms);
out:
    if (sock)
        zmq_close(sock);
    if (zctx)
        zmq_ctx_term(zctx);
    return st;
}

static void s_done(void *arg, sl_status_t status)
{
    sl_status_t *st = arg;
    *st = status;
}

/* Read the holder's region into an in-memory file. */
static sl_status_t s_get(const sl_weights_pull_cfg_t *cfg, const s_source_t *src, int *fd_p,
                         sl_weights_pull_stats_t *stats)
{
    sl_xport_cfg_t xcfg;
    sl_xport_t *xp = NULL;
    sl_xport_peer_t *peer = NULL;
    sl_xport_mem_t *mem = NULL;
    void *base = NULL;
    uint32_t rid = 0;
    sl_status_t st = sl_xport_cfg_defaults(&xcfg);
    if (st != SL_OK)
        return st;
    xcfg.link_mbps = cfg->bg_link_mbps;
    if (cfg->bg_share > 0)
        xcfg.bg_share = cfg->bg_share;
    if ((st = sl_xport_create(&xcfg, &xp)) != SL_OK ||
        (st = sl_xport_connect(xp, src->addr, src->addr_len, &peer)) != SL_OK ||
        (st = sl_xport_rkey_import(xp, peer, src->rkey, src->rkey_len, &rid)) != SL_OK ||
        (st = sl_xport_mem_alloc(xp, (size_t)src->bytes, SL_XPORT_MEM_HOST, &base, &mem)) !=
            SL_OK) {
        SL_WARN("weights: cannot reach %s for its weights: %s", src->peer, sl_status_str(st));
        st = SL_ERR_PEER_LOST;
        goto out;
    }
    sl_status_t done = SL_ERR_AGAIN;
    sl_xport_block_t blk = {.local_off = 0, .remote_off = 0, .len = src->bytes};
    sl_xport_xfer_t xf = {.op = SL_XPORT_GET,
                          .cls = SL_XPORT_BACKGROUND,
                          .local = mem,
                          .remote = rid,
                          .blocks = &blk,
                          .nblocks = 1,
                          .cb = s_done,
                          .cb_arg = &done};
    sl_time_t t0 = sl_clock_now(), until = t0 + SL_MS(cfg->pull_timeout_ms);
    if ((st = sl_xport_post(xp, peer, &xf)) != SL_OK) {
        SL_WARN("weights: cannot read %s's weights: %s", src->peer, sl_status_str(st));
        st = SL_ERR_PEER_LOST;
        goto out;
    }
    while (done == SL_ERR_AGAIN && sl_clock_now() < until) {
        if (!sl_xport_progress(xp))
            sl_clock_sleep(SL_US(50));
    }
    if (done != SL_OK) {
        SL_WARN("weights: reading %s's weights %s", src->peer,
                done == SL_ERR_AGAIN ? "timed out" : sl_status_str(done));
        st = SL_ERR_PEER_LOST;
        goto out; /* destroying the engine fails the transfer still pending */
    }
    uint64_t us = (uint64_t)((sl_clock_now() - t0) / SL_NS_PER_US);
    uint64_t sum = sl_hash_bytes(base, (size_t)src->bytes, 0);
    if (sum != src->checksum) {
        SL_WARN("weights from %s: checksum %016llx, offered %016llx; reading the file", src->peer,
                (unsigned long long)sum, (unsigned long long)src->checksum);
        st = SL_ERR_MSG_MALFORMED;
        goto out;
    }
    int fd = memfd_create("sluice-weights", MFD_CLOEXEC);
    size_t off = 0;
    while (fd >= 0 && off < src->bytes) {
        ssize_t n = write(fd, (const char *)base + off, (size_t)src->bytes - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (fd < 0 || off != src->bytes) {
        SL_WARN("weights: cannot keep the pulled weights in memory: %m");
        if (fd >= 0)
            close(fd);
        st = SL_ERR_IO;
        goto out;
    }
    *fd_p = fd;
    stats->bytes = src->bytes;
    stats->xfer_us = us;
    snprintf(stats->peer, sizeof(stats->peer), "%s", src->peer);
    st = SL_OK;
out:
    sl_xport_disconnect(xp, &peer); /* fails a transfer still pending before its memory goes */
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);
    return st;
}

sl_status_t sl_weights_pull(const sl_weights_pull_cfg_t *cfg, int *fd_p,
                            sl_weights_pull_stats_t *stats)
{
    s_source_t src = {0};
    if (strlen(cfg->name) > sl_proto_limits_default.max_name_len)
        return SL_ERR_NOT_FOUND; /* never served under a name that long */
    sl_status_t st = s_query(cfg, &src);
    if (st != SL_OK)
        return st == SL_ERR_NOMEM ? st : SL_ERR_NOT_FOUND;
    sl_weights_pull_stats_t got = {0};
    st = s_get(cfg, &src, fd_p, &got);
    if (st == SL_OK) {
        *stats = got;
        SL_INFO("weights: pulled %llu bytes of %s from %s in %llu us (background class)",
                (unsigned long long)got.bytes, cfg->name, got.peer,
                (unsigned long long)got.xfer_us);
    }
    s_source_free(&src);
    return st;
}
