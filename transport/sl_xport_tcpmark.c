/*
 * Marking UCX's TCP sockets with their class's IP TOS byte (see
 * sl_xport_tcpmark.h).
 *
 * The problem. Each traffic class has its own UCP worker, so its own tcp
 * interfaces and sockets, but UCX 1.13 neither sets IP_TOS on them nor lets
 * us reach them: the sockets are file descriptors inside UCX. Without a
 * mark, DSCP-based queueing on the path (deploy/tc, a switch) cannot tell
 * KV blocks from background copies on a plain TCP network.
 *
 * The idea. Sockets are told apart by who made them and by their
 * endpoints, both visible from outside UCX:
 * - a class worker's creation opens its listening sockets (one per tcp
 *   interface): the sockets that appear during ucp_worker_create are the
 *   class's, and their endpoints are remembered;
 * - a connect on a class worker opens connections to the peer's listening
 *   endpoints of that class: the sockets that appear during ucp_ep_create
 *   are the class's, and their peers' endpoints are remembered;
 * - later sockets (accepted from a peer by UCX's async thread, or opened
 *   while a worker progresses) are found by a scan of /proc/self/fd: one
 *   whose local endpoint is a class's listening endpoint, or whose peer is a
 *   class's remembered endpoint, is the class's.
 * A socket found is marked once (setsockopt IP_TOS, or IPV6_TCLASS): Linux
 * applies a changed TOS to the packets that follow. Listening sockets are
 * marked too, since Linux starts an accepted connection with its
 * listener's TOS: then a peer's connection is marked from its first packet,
 * and the scan only confirms it. The same step sets the sockets' TCP
 * congestion control where xport-tcp-congestion names one (cubic by
 * default): BBR, the default of some hosts, drops a connection's window
 * to four packets for 200 ms every 10 s to measure the path's RTT
 * (PROBE_RTT), and a KV transfer caught in it waited 60 to 120 ms longer
 * (sluice-bench qos --hosts, docs/BENCHMARKS.md). Sockets are known by
 * inode, so a descriptor number that UCX closes and reuses is seen anew.
 * The scan runs from the engine's progress on a timer knob
 * (xport-mark-interval-ms), not on every call; a scan costs a readdir and an
 * fstat per descriptor, and only new sockets cost more.
 *
 * Limits. A connection the passive side opens towards an endpoint it never
 * connected to itself is found only when its peer is remembered; UCX 1.13
 * reuses the accepted connection instead (tested). A socket another thread
 * opens during a worker's creation or a connect would be taken for the
 * class's; one already carrying a TOS byte (ZeroMQ marks its own before
 * connecting) is left alone.
 *
 * Rejected: UCX's own options (1.13 has none for TOS); LD_PRELOAD of
 * socket() (a second library in every process, and it cannot tell the
 * classes apart either); parsing UCX's packed worker addresses for the
 * peers' ports (an internal format that changes between releases).
 */
#include "transport/sl_xport_tcpmark.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sl_log.h"

void sl_xport_tcpmark_init(sl_xport_tcpmark_t *m, const int tos[SL_XPORT_NCLASS])
{
    memset(m, 0, sizeof(*m));
    memcpy(m->tos, tos, sizeof(m->tos));
}

void sl_xport_tcpmark_set_congestion(sl_xport_tcpmark_t *m, const char *name)
{
    snprintf(m->cc, sizeof(m->cc), "%s", name ? name : "");
}

void sl_xport_tcpmark_fini(sl_xport_tcpmark_t *m)
{
    if (!m)
        return;
    free(m->socks);
    free(m->before);
    m->socks = NULL;
    m->before = NULL;
    m->nsocks = m->cap_socks = m->nbefore = 0;
}

bool sl_xport_tcpmark_active(const sl_xport_tcpmark_t *m)
{
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (m->nlisten[c])
            return true;
    return false;
}

bool sl_xport_tcpmark_ep_of(const struct sockaddr *sa, socklen_t len, sl_xport_tcpmark_ep_t *ep)
{
    memset(ep, 0, sizeof(*ep));
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ep->family = AF_INET;
        memcpy(ep->addr, &in->sin_addr, 4);
        ep->port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ep->family = AF_INET6;
        memcpy(ep->addr, &in6->sin6_addr, 16);
        ep->port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

static bool s_ep_any(const sl_xport_tcpmark_ep_t *e)
{
    static const uint8_t zero[16];
    return memcmp(e->addr, zero, e->family == AF_INET ? 4 : 16) == 0;
}

/* a matches the remembered endpoint b (a listener bound to the wildcard
 * address matches any address on its port) */
static bool s_ep_match(const sl_xport_tcpmark_ep_t *a, const sl_xport_tcpmark_ep_t *b)
{
    return a->family == b->family && a->port == b->port &&
           (s_ep_any(b) || memcmp(a->addr, b->addr, sizeof(a->addr)) == 0);
}

static int s_ep_find(const sl_xport_tcpmark_ep_t eps[][SL_XPORT_TCPMARK_EPS], const unsigned *n,
                     const sl_xport_tcpmark_ep_t *e)
{
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        for (unsigned i = 0; i < n[c]; i++)
            if (s_ep_match(e, &eps[c][i]))
                return c;
    return -1;
}

static void s_ep_add(sl_xport_tcpmark_ep_t eps[][SL_XPORT_TCPMARK_EPS], unsigned *n, int cls,
                     const sl_xport_tcpmark_ep_t *e)
{
    for (unsigned i = 0; i < n[cls]; i++)
        if (memcmp(&eps[cls][i], e, sizeof(*e)) == 0)
            return;
    if (n[cls] < SL_XPORT_TCPMARK_EPS)
        eps[cls][n[cls]++] = *e;
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Call fn for every socket descriptor of the process, with its inode. */
typedef void (*s_sock_fn_t)(sl_xport_tcpmark_t *m, int fd, uint64_t ino, void *arg);

static void s_each_socket(sl_xport_tcpmark_t *m, s_sock_fn_t fn, void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat st;
        if (*end || end == e->d_name || fd == dirfd(d) || fstat((int)fd, &st) != 0 ||
            !S_ISSOCK(st.st_mode))
            continue;
        fn(m, (int)fd, (uint64_t)st.st_ino, arg);
    }
    closedir(d);
}

/* A TCP socket's family and whether it listens; false for anything else. */
static bool s_tcp(int fd, int *family_p, bool *listening_p)
{
    int v = 0, fam = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) != 0 || v != SOCK_STREAM)
        return false;
    l = sizeof(fam);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &fam, &l) != 0 || (fam != AF_INET && fam != AF_INET6))
        return false;
    l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) != 0)
        return false;
    *family_p = fam;
    *listening_p = v != 0;
    return true;
}

static bool s_local(int fd, sl_xport_tcpmark_ep_t *ep)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    return getsockname(fd, (struct sockaddr *)&ss, &l) == 0 &&
           sl_xport_tcpmark_ep_of((struct sockaddr *)&ss, l, ep);
}

static bool s_peer(int fd, sl_xport_tcpmark_ep_t *ep)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    return getpeername(fd, (struct sockaddr *)&ss, &l) == 0 &&
           sl_xport_tcpmark_ep_of((struct sockaddr *)&ss, l, ep);
}

/* The socket's TOS byte now (-1 when it cannot be read). */
static int s_tos_get(int fd, int family)
{
    int v = -1;
    socklen_t l = sizeof(v);
    if (family == AF_INET6 ? getsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &v, &l)
                           : getsockopt(fd, IPPROTO_IP, IP_TOS, &v, &l))
        return -1;
    return v;
}

static unsigned s_mark(sl_xport_tcpmark_t *m, int fd, int family, int cls)
{
    int tos = m->tos[cls];
    int rc = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos))
                                : setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    if (family == AF_INET6) /* an IPv4-mapped peer takes the IPv4 option */
        (void)setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    if (rc != 0) {
        /* UCX may close a socket under a scan: not worth more than a debug line */
        SL_DEBUG("xport: cannot mark socket %d with TOS %d: %m", fd, tos);
        return 0;
    }
    m->marked[cls]++;
    if (m->cc[0]) {
        if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, m->cc, (socklen_t)strlen(m->cc)) == 0) {
            m->cc_set++;
        } else {
            /* an unprivileged process may set only what
             * net.ipv4.tcp_allowed_congestion_control lists */
            if (!m->cc_refused++)
                SL_WARN("xport: TCP congestion control '%s' refused on UCX's sockets (%m): they "
                        "keep the host's default (xport-tcp-congestion; "
                        "net.ipv4.tcp_allowed_congestion_control)",
                        m->cc);
        }
    }
    return 1;
}

static bool s_push(sl_xport_tcpmark_sock_t **v, unsigned *n, unsigned *cap, uint64_t ino, int cls)
{
    if (*n == *cap) {
        unsigned nc = *cap ? *cap * 2 : 64;
        sl_xport_tcpmark_sock_t *nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return false;
        *v = nv;
        *cap = nc;
    }
    (*v)[*n].ino = ino;
    (*v)[*n].cls = cls;
    (*n)++;
    return true;
}

static int s_cmp_sock(const void *a, const void *b)
{
    return s_cmp_u64(&((const sl_xport_tcpmark_sock_t *)a)->ino,
                     &((const sl_xport_tcpmark_sock_t *)b)->ino);
}

static const sl_xport_tcpmark_sock_t *s_known(const sl_xport_tcpmark_t *m, uint64_t ino)
{
    sl_xport_tcpmark_sock_t key = {.ino = ino, .cls = 0};
    return m->nsocks ? bsearch(&key, m->socks, m->nsocks, sizeof(key), s_cmp_sock) : NULL;
}

/* ---- before and after a call that makes a class's sockets ------------ */

typedef struct s_inos {
    uint64_t *v;  /* inodes */
    unsigned n;   /* used */
    unsigned cap; /* allocated */
} s_inos_t;

static void s_collect(sl_xport_tcpmark_t *m, int fd, uint64_t ino, void *arg)
{
    s_inos_t *in = arg;
    (void)m;
    (void)fd;
    if (in->n == in->cap) {
        unsigned nc = in->cap ? in->cap * 2 : 64;
        uint64_t *nv = realloc(in->v, nc * sizeof(*nv));
        if (!nv)
            return;
        in->v = nv;
        in->cap = nc;
    }
    in->v[in->n++] = ino;
}

void sl_xport_tcpmark_begin(sl_xport_tcpmark_t *m)
{
    s_inos_t in = {NULL, 0, 0};
    s_each_socket(m, s_collect, &in);
    if (in.n)
        qsort(in.v, in.n, sizeof(*in.v), s_cmp_u64);
    free(m->before);
    m->before = in.v;
    m->nbefore = in.n;
}

typedef struct s_end_arg {
    int cls;         /* class of the call */
    unsigned marked; /* sockets marked */
} s_end_arg_t;

static void s_end_one(sl_xport_tcpmark_t *m, int fd, uint64_t ino, void *arg)
{
    s_end_arg_t *a = arg;
    sl_xport_tcpmark_ep_t ep;
    int family;
    bool listening;

    if ((m->nbefore && bsearch(&ino, m->before, m->nbefore, sizeof(ino), s_cmp_u64)) ||
        s_known(m, ino) || !s_tcp(fd, &family, &listening))
        return;
    if (listening) {
        /* a connection accepted on it starts with its TOS (Linux copies
         * the listener's, unless net.ipv4.tcp_reflect_tos is set): marked
         * from its first packet; scans mark it otherwise */
        if (s_local(fd, &ep)) {
            s_ep_add(m->listen, m->nlisten, a->cls, &ep);
            a->marked += s_mark(m, fd, family, a->cls);
        }
        return;
    }
    /* UCX's async thread may accept a peer's connection of any class
     * meanwhile: the listening endpoint it came in on says which */
    int cls = s_local(fd, &ep) ? s_ep_find(m->listen, m->nlisten, &ep) : -1;
    if (cls < 0) {
        int now = s_tos_get(fd, family);
        if (now != 0 && now != m->tos[a->cls])
            return; /* someone else's, already marked */
        cls = a->cls;
        if (s_peer(fd, &ep))
            s_ep_add(m->remote, m->nremote, cls, &ep);
    }
    a->marked += s_mark(m, fd, family, cls);
    if (s_push(&m->socks, &m->nsocks, &m->cap_socks, ino, cls))
        qsort(m->socks, m->nsocks, sizeof(*m->socks), s_cmp_sock);
}

unsigned sl_xport_tcpmark_end(sl_xport_tcpmark_t *m, sl_xport_class_t cls)
{
    s_end_arg_t a = {(int)cls, 0};
    if ((unsigned)cls >= SL_XPORT_NCLASS)
        return 0;
    s_each_socket(m, s_end_one, &a);
    free(m->before);
    m->before = NULL;
    m->nbefore = 0;
    return a.marked;
}

/* ---- the scan --------------------------------------------------------- */

typedef struct s_scan_arg {
    sl_xport_tcpmark_sock_t *v; /* sockets seen by this scan */
    unsigned n;                 /* used */
    unsigned cap;               /* allocated */
    unsigned marked;            /* sockets marked by this scan */
} s_scan_arg_t;

static void s_scan_one(sl_xport_tcpmark_t *m, int fd, uint64_t ino, void *arg)
{
    s_scan_arg_t *a = arg;
    const sl_xport_tcpmark_sock_t *k = s_known(m, ino);
    sl_xport_tcpmark_ep_t local, peer;
    int family, cls = -1;
    bool listening;

    if (k) {
        (void)s_push(&a->v, &a->n, &a->cap, ino, k->cls);
        return;
    }
    if (s_tcp(fd, &family, &listening) && !listening && s_local(fd, &local)) {
        cls = s_ep_find(m->listen, m->nlisten, &local);
        if (cls < 0) {
            if (!s_peer(fd, &peer))
                return; /* still connecting: look again next time */
            cls = s_ep_find(m->remote, m->nremote, &peer);
        }
    }
    if (cls >= 0)
        a->marked += s_mark(m, fd, family, cls);
    (void)s_push(&a->v, &a->n, &a->cap, ino, cls);
}

unsigned sl_xport_tcpmark_scan(sl_xport_tcpmark_t *m)
{
    s_scan_arg_t a = {NULL, 0, 0, 0};
    m->scans++;
    s_each_socket(m, s_scan_one, &a);
    if (a.n)
        qsort(a.v, a.n, sizeof(*a.v), s_cmp_sock);
    /* sockets closed since the last scan drop out here */
    free(m->socks);
    m->socks = a.v;
    m->nsocks = a.n;
    m->cap_socks = a.cap;
    return a.marked;
}
