/*
 * The UCX peer harness of the transport's tests and benchmarks (see
 * sl_xport_harness.h): one peer engine per child process, a command loop
 * over a socketpair (read back the region, wait for notifications, put
 * back, exit), and the parent's side of each command.
 *
 * The peer is the calling program re-executed, not a bare fork: a forked
 * copy of a process that already holds UCX contexts would share their
 * memory maps and file descriptors, and re-executing lets a program start a
 * peer at any time (the benchmarks used to fork all theirs before touching
 * UCX and keep them idle until their turn). By default the peer sleeps on
 * its engine's file descriptor and the command socket between events, so
 * it also exercises sl_xport_arm()/sl_xport_fd(); a benchmark against
 * ucx_perftest asks it to busy-poll instead, as ucx_perftest does. One
 * harness for tests and benchmarks: they used to spell out two.
 */
#include "transport/testing/sl_xport_harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "common/sl_rand.h"

enum { CMD_READ = 1, CMD_NOTIFS, CMD_PUT_BACK, CMD_PUT_DONE, CMD_EXIT, CMD_REPLY };

typedef struct msg {
    uint32_t cmd; /* CMD_* */
    int32_t st;   /* status in replies */
    uint64_t a;   /* first argument */
    uint64_t b;   /* second argument */
    uint64_t c;   /* third argument */
} msg_t;

sl_status_t sl_xport_harness_copy(void *ctx, void *dst, const void *src, size_t len)
{
    memcpy(dst, src, len);
    return SL_OK;
}

void sl_xport_harness_fill(void *buf, size_t len, uint64_t seed)
{
    sl_rand_t r;
    uint8_t *p = buf;
    size_t i = 0;
    sl_rand_seed(&r, seed);
    for (; i + 8 <= len; i += 8) {
        uint64_t v = sl_rand_u64(&r);
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++)
        p[i] = (uint8_t)sl_rand_u64(&r);
}

sl_xport_block_t *sl_xport_harness_scatter(sl_rand_t *r, uint64_t region, uint64_t slot, size_t n,
                                           bool offsets)
{
    size_t slots = (size_t)(region / slot);
    uint32_t *ls = malloc(slots * sizeof(*ls)), *rs = malloc(slots * sizeof(*rs));
    sl_xport_block_t *b = malloc((n ? n : 1) * sizeof(*b));
    if (!ls || !rs || !b || n > slots || slots == 0) {
        free(ls);
        free(rs);
        free(b);
        return NULL;
    }
    for (size_t i = 0; i < slots; i++)
        ls[i] = rs[i] = (uint32_t)i;
    for (size_t i = slots - 1; i > 0; i--) {
        size_t j = sl_rand_below(r, i + 1), k = sl_rand_below(r, i + 1);
        uint32_t t = ls[i];
        ls[i] = ls[j];
        ls[j] = t;
        t = rs[i];
        rs[i] = rs[k];
        rs[k] = t;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t len = 1 + sl_rand_below(r, slot);
        uint64_t lo = offsets ? sl_rand_below(r, slot - len + 1) : 0;
        uint64_t ro = offsets ? sl_rand_below(r, slot - len + 1) : 0;
        b[i] = (sl_xport_block_t){(uint64_t)ls[i] * slot + lo, (uint64_t)rs[i] * slot + ro, len};
    }
    free(ls);
    free(rs);
    return b;
}

int sl_xport_harness_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int sl_xport_harness_read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int s_send_blob(int fd, const void *buf, size_t len)
{
    uint64_t l = len;
    return sl_xport_harness_write_all(fd, &l, 8) || sl_xport_harness_write_all(fd, buf, len) ? -1
                                                                                             : 0;
}

static void *s_recv_blob(int fd, size_t max, size_t *len_p)
{
    uint64_t l;
    if (sl_xport_harness_read_all(fd, &l, 8) || l > max)
        return NULL;
    void *b = malloc(l ? l : 1);
    if (!b || sl_xport_harness_read_all(fd, b, l)) {
        free(b);
        return NULL;
    }
    *len_p = l;
    return b;
}

sl_status_t sl_xport_harness_exchange(sl_xport_t *xp, sl_xport_mem_t *mine, int fd, size_t max_blob,
                                      sl_xport_peer_t **conn_p, uint32_t *rid_p)
{
    const void *addr;
    size_t alen, klen, ralen, rklen;
    void *key = NULL, *raddr = NULL, *rkey = NULL;
    sl_status_t st;

    if ((st = sl_xport_address(xp, &addr, &alen)) != SL_OK ||
        (st = sl_xport_mem_pack(xp, mine, &key, &klen)) != SL_OK)
        return st;
    st = SL_ERR_IO;
    if (s_send_blob(fd, addr, alen) || s_send_blob(fd, key, klen))
        goto out;
    if (!(raddr = s_recv_blob(fd, max_blob, &ralen)) || !(rkey = s_recv_blob(fd, max_blob, &rklen)))
        goto out;
    if ((st = sl_xport_connect(xp, raddr, ralen, conn_p)) != SL_OK)
        goto out;
    st = sl_xport_rkey_import(xp, *conn_p, rkey, rklen, rid_p);
out:
    free(key);
    free(raddr);
    free(rkey);
    return st;
}

/* The harness's own exchanges take blobs of up to 64 MiB. */
#define S_MAX_BLOB (64u << 20)

/* ---- the peer process ------------------------------------------------- */

typedef struct peer_state {
    int fd;                 /* command socket */
    int put_pending;        /* put_back in flight */
    bool put_done;          /* put_back completed, reply owed */
    int put_status;         /* its status */
    uint64_t notifs_wanted; /* reply owed when this many notifications arrived (0 = none) */
} peer_state_t;

static void s_put_back_cb(void *arg, sl_status_t st)
{
    peer_state_t *ps = arg;
    ps->put_done = true;
    ps->put_status = st;
}

static int s_peer_run(int fd, const sl_xport_harness_opts_t *o)
{
    sl_xport_cfg_t cfg;
    sl_xport_t *xp = NULL;
    sl_xport_mem_t *mem = NULL;
    sl_xport_peer_t *conn = NULL;
    uint32_t rid = 0;
    peer_state_t ps = {.fd = fd};
    unsigned spins = 0;
    uint8_t *region;
    int rc = 1;

    sl_log_set_component("xport-peer");
    if (o->alloc)
        region = NULL; /* allocated with the engine below */
    else if (posix_memalign((void **)&region, 4096, o->region_len))
        return 1;
    else
        sl_xport_harness_fill(region, o->region_len, o->seed);
    sl_xport_cfg_defaults(&cfg);
    cfg.copy = sl_xport_harness_copy;
    cfg.stage_chunk_kib = o->stage_chunk_kib;
    cfg.stage_slots = o->stage_slots;
    if (sl_xport_create(&cfg, &xp) != SL_OK)
        goto out_free;
    if (o->alloc) {
        void *base = NULL;
        if (sl_xport_mem_alloc(xp, o->region_len, SL_XPORT_MEM_HOST, &base, &mem) != SL_OK)
            goto out_destroy;
        region = base;
        sl_xport_harness_fill(region, o->region_len, o->seed);
    } else if (sl_xport_mem_register(xp, region, o->region_len,
                                     o->staged ? SL_XPORT_MEM_CUDA : SL_XPORT_MEM_HOST,
                                     &mem) != SL_OK) {
        goto out_destroy;
    }
    if (sl_xport_harness_exchange(xp, mem, fd, S_MAX_BLOB, &conn, &rid) != SL_OK)
        goto out_destroy;

    for (;;) {
        sl_xport_stats_t stats;
        msg_t m, r;
        struct pollfd pfd[2] = {{fd, POLLIN, 0}, {sl_xport_fd(xp), POLLIN, 0}};

        while (sl_xport_progress(xp))
            ;
        sl_xport_stats(xp, &stats);
        if (ps.notifs_wanted && stats.notifs_rx >= ps.notifs_wanted) {
            r = (msg_t){.cmd = CMD_REPLY, .a = stats.notifs_rx};
            ps.notifs_wanted = 0;
            if (sl_xport_harness_write_all(fd, &r, sizeof(r)))
                break;
        }
        if (ps.put_done) {
            r = (msg_t){.cmd = CMD_PUT_DONE, .st = ps.put_status};
            ps.put_done = false;
            if (sl_xport_harness_write_all(fd, &r, sizeof(r)))
                break;
        }
        if (o->busy_poll) {
            /* look at the command socket once in a while only */
            if ((++spins & 255) != 0)
                continue;
            if (poll(pfd, 1, 0) < 0 && errno != EINTR)
                break;
        } else if (sl_xport_arm(xp) == SL_OK) {
            if (poll(pfd, 2, 100) < 0 && errno != EINTR)
                break;
        } else if (poll(pfd, 1, 0) < 0 && errno != EINTR) {
            break;
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP)))
            continue;
        if (sl_xport_harness_read_all(fd, &m, sizeof(m)))
            break;
        if (m.cmd == CMD_EXIT) {
            rc = 0;
            break;
        }
        switch (m.cmd) {
        case CMD_READ:
            if (m.a > o->region_len || m.b > o->region_len - m.a)
                goto out_destroy;
            r = (msg_t){.cmd = CMD_REPLY, .a = m.b};
            if (sl_xport_harness_write_all(fd, &r, sizeof(r)) ||
                sl_xport_harness_write_all(fd, region + m.a, m.b))
                goto out_destroy;
            break;
        case CMD_NOTIFS:
            ps.notifs_wanted = m.a;
            break;
        case CMD_PUT_BACK: {
            sl_xport_block_t blk = {m.a, m.b, m.c};
            char note[] = "put-back";
            sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                                 .cls = SL_XPORT_CRITICAL,
                                 .local = mem,
                                 .remote = rid,
                                 .blocks = &blk,
                                 .nblocks = 1,
                                 .notif = note,
                                 .notif_len = sizeof(note),
                                 .cb = s_put_back_cb,
                                 .cb_arg = &ps};
            sl_status_t st = sl_xport_post(xp, conn, &x);
            if (st != SL_OK) {
                ps.put_done = true;
                ps.put_status = st;
            }
            break;
        }
        default:
            goto out_destroy;
        }
    }
    if (rc == 0) {
        msg_t r = {.cmd = CMD_REPLY};
        sl_xport_harness_write_all(fd, &r, sizeof(r));
    }
out_destroy:
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);
out_free:
    if (!o->alloc) /* an allocated region went with its deregistration */
        free(region);
    if (rc == 0 && sl_log_error_count())
        rc = 3;
    return rc;
}

void sl_xport_harness_main_maybe(int argc, char **argv)
{
    if (argc < 10 || strcmp(argv[1], "--peer"))
        return;
    sl_xport_harness_opts_t o = {.region_len = strtoull(argv[3], NULL, 0),
                                 .staged = atoi(argv[4]) != 0,
                                 .stage_chunk_kib = atoi(argv[5]),
                                 .stage_slots = atoi(argv[6]),
                                 .seed = strtoull(argv[7], NULL, 0),
                                 .busy_poll = atoi(argv[8]) != 0,
                                 .alloc = atoi(argv[9]) != 0};
    exit(s_peer_run(atoi(argv[2]), &o));
}

/* ---- the parent's side ------------------------------------------------ */

sl_status_t sl_xport_harness_start(sl_xport_t *xp, sl_xport_mem_t *mine,
                                   const sl_xport_harness_opts_t *o, sl_xport_harness_t *h)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        SL_ERROR("xport-harness: socketpair: %m");
        return SL_ERR_IO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        SL_ERROR("xport-harness: fork: %m");
        close(sv[0]);
        close(sv[1]);
        return SL_ERR_IO;
    }
    if (pid == 0) {
        char fd[16], len[32], st[4], ck[16], sl[16], seed[32], busy[4], al[4];
        int cfd = dup(sv[1]); /* without CLOEXEC */
        snprintf(fd, sizeof(fd), "%d", cfd);
        snprintf(len, sizeof(len), "%zu", o->region_len);
        snprintf(st, sizeof(st), "%d", o->staged ? 1 : 0);
        snprintf(ck, sizeof(ck), "%d", o->stage_chunk_kib ? o->stage_chunk_kib : 2048);
        snprintf(sl, sizeof(sl), "%d", o->stage_slots ? o->stage_slots : 4);
        snprintf(seed, sizeof(seed), "%llu", (unsigned long long)o->seed);
        snprintf(busy, sizeof(busy), "%d", o->busy_poll ? 1 : 0);
        snprintf(al, sizeof(al), "%d", o->alloc ? 1 : 0);
        char *args[] = {"xport-peer", "--peer", fd, len, st, ck, sl, seed, busy, al, NULL, NULL};
        if (o->exec_arg) {
            /* argv[0], then the sub-command, then the peer's arguments */
            memmove(&args[2], &args[1], sizeof(args) - 2 * sizeof(args[0]));
            args[1] = (char *)o->exec_arg;
        }
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(sv[1]);
    h->pid = pid;
    h->sock = sv[0];
    h->conn = NULL;
    if (sl_xport_harness_exchange(xp, mine, h->sock, S_MAX_BLOB, &h->conn, &h->rid) != SL_OK) {
        SL_ERROR("xport-harness: exchanging addresses and keys with the peer failed");
        sl_xport_disconnect(xp, &h->conn);
        sl_xport_harness_kill(h);
        return SL_ERR_IO;
    }
    return SL_OK;
}

/* Wait for one message from the peer while progressing our engine. */
static int s_wait_msg(sl_xport_t *xp, sl_xport_harness_t *h, msg_t *m)
{
    for (;;) {
        struct pollfd pfd = {h->sock, POLLIN, 0};
        if (xp)
            sl_xport_progress(xp);
        int n = poll(&pfd, 1, xp ? 0 : 1000);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0)
            return sl_xport_harness_read_all(h->sock, m, sizeof(*m));
    }
}

sl_status_t sl_xport_harness_read(sl_xport_harness_t *h, uint64_t off, void *out, size_t len)
{
    msg_t m = {.cmd = CMD_READ, .a = off, .b = len};
    if (sl_xport_harness_write_all(h->sock, &m, sizeof(m)) ||
        sl_xport_harness_read_all(h->sock, &m, sizeof(m)) || m.cmd != CMD_REPLY || m.a != len ||
        sl_xport_harness_read_all(h->sock, out, len))
        return SL_ERR_IO;
    return SL_OK;
}

sl_status_t sl_xport_harness_wait_notifs(sl_xport_t *xp, sl_xport_harness_t *h, uint64_t n)
{
    msg_t m = {.cmd = CMD_NOTIFS, .a = n};
    if (sl_xport_harness_write_all(h->sock, &m, sizeof(m)) || s_wait_msg(xp, h, &m) ||
        m.cmd != CMD_REPLY)
        return SL_ERR_IO;
    return SL_OK;
}

sl_status_t sl_xport_harness_put_back(sl_xport_harness_t *h, uint64_t off, uint64_t roff,
                                      uint64_t len)
{
    msg_t m = {.cmd = CMD_PUT_BACK, .a = off, .b = roff, .c = len};
    return sl_xport_harness_write_all(h->sock, &m, sizeof(m)) ? SL_ERR_IO : SL_OK;
}

sl_status_t sl_xport_harness_put_back_wait(sl_xport_t *xp, sl_xport_harness_t *h, int *status_p)
{
    msg_t m;
    if (s_wait_msg(xp, h, &m) || m.cmd != CMD_PUT_DONE)
        return SL_ERR_IO;
    *status_p = m.st;
    return SL_OK;
}

int sl_xport_harness_stop(sl_xport_t *xp, sl_xport_harness_t *h)
{
    msg_t m = {.cmd = CMD_EXIT};
    int status = -1;
    if (getenv("SLUICE_XPORT_DESCRIBE") && h->conn)
        sl_xport_peer_describe(h->conn, stderr);
    sl_xport_disconnect(xp, &h->conn);
    if (sl_xport_harness_write_all(h->sock, &m, sizeof(m)) == 0)
        s_wait_msg(NULL, h, &m);
    close(h->sock);
    if (waitpid(h->pid, &status, 0) != h->pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void sl_xport_harness_kill(sl_xport_harness_t *h)
{
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    close(h->sock);
}
