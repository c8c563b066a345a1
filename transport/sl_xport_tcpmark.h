/*
 * Marking UCX's TCP sockets with their traffic class's IP TOS byte
 * (transport/sl_xport_tcpmark.c). UCX 1.13's tcp transport sets no TOS on
 * its sockets and has no knob for it, so the engine finds them and sets it.
 * Not installed.
 */
#ifndef SL_XPORT_TCPMARK_H
#define SL_XPORT_TCPMARK_H

#include <sluice/status.h>
#include <sluice/xport.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_XPORT_TCPMARK_EPS 64 /* endpoints remembered per class and kind */

/* A TCP endpoint: address family, address and port. */
typedef struct sl_xport_tcpmark_ep {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* address (4 bytes used for AF_INET) */
    uint16_t port;    /* port, host order */
} sl_xport_tcpmark_ep_t;

/* A socket seen by a scan: its inode and class (-1: not the engine's). */
typedef struct sl_xport_tcpmark_sock {
    uint64_t ino; /* socket inode (fstat), stable while the socket lives */
    int cls;      /* traffic class, or -1 */
} sl_xport_tcpmark_sock_t;

/* The marker of one engine; belongs to the engine's thread. */
typedef struct sl_xport_tcpmark {
    int tos[SL_XPORT_NCLASS];                                            /* byte per class */
    sl_xport_tcpmark_ep_t listen[SL_XPORT_NCLASS][SL_XPORT_TCPMARK_EPS]; /* class workers' listening
                                                                           endpoints */
    unsigned nlisten[SL_XPORT_NCLASS];                                   /* entries used */
    sl_xport_tcpmark_ep_t remote[SL_XPORT_NCLASS][SL_XPORT_TCPMARK_EPS]; /* peers' listening
                                                                           endpoints, learned
                                                                           from connects */
    unsigned nremote[SL_XPORT_NCLASS];                                   /* entries used */
    sl_xport_tcpmark_sock_t *socks;   /* sockets known since the last scan, sorted by inode */
    unsigned nsocks;                  /* entries used */
    unsigned cap_socks;               /* entries allocated */
    uint64_t *before;                 /* socket inodes at sl_xport_tcpmark_begin, sorted */
    unsigned nbefore;                 /* entries used */
    uint64_t marked[SL_XPORT_NCLASS]; /* sockets marked, per class */
    uint64_t scans;                   /* scans run */
    char cc[16];                      /* TCP congestion control set on marked sockets ("": none) */
    uint64_t cc_set;                  /* sockets given cc */
    uint64_t cc_refused;              /* sockets that refused it (kept the host's default) */
} sl_xport_tcpmark_t;

/* Set up a marker with one TOS byte per class. Nothing allocated yet. */
void sl_xport_tcpmark_init(sl_xport_tcpmark_t *m, const int tos[SL_XPORT_NCLASS]);

/* Also set TCP congestion control `name` (TCP_CONGESTION) on every socket
 * marked from now on; "" or NULL: leave the host's default. */
void sl_xport_tcpmark_set_congestion(sl_xport_tcpmark_t *m, const char *name);

/* Free what the marker holds; NULL-safe. */
void sl_xport_tcpmark_fini(sl_xport_tcpmark_t *m);

/* Remember the process's sockets now, before a call that makes sockets of
 * one class (a class worker's creation, a connect on its worker). */
void sl_xport_tcpmark_begin(sl_xport_tcpmark_t *m);

/*
 * After that call: the TCP sockets made since sl_xport_tcpmark_begin belong
 * to class cls. A listening one adds its endpoint to the class's listening
 * endpoints (sockets accepted on it are the class's); a connected one is
 * marked, and its peer's endpoint is remembered as the class's (later
 * connections to it are the class's). A new socket already carrying another
 * TOS byte was made and marked by someone else (a ZeroMQ I/O thread) and is
 * left alone. Returns the number of sockets marked.
 */
unsigned sl_xport_tcpmark_end(sl_xport_tcpmark_t *m, sl_xport_class_t cls);

/* True when the engine has TCP listening endpoints, so scans can find
 * something; false (scans are skipped) over shared memory or RDMA alone. */
bool sl_xport_tcpmark_active(const sl_xport_tcpmark_t *m);

/*
 * Look at the process's sockets not seen before: a TCP socket whose local
 * endpoint is a class's listening endpoint (accepted from a peer) or whose
 * peer is a class's remembered endpoint is marked with the class's byte;
 * others are remembered as not the engine's. Cost: one readdir of
 * /proc/self/fd and an fstat per descriptor, a few getsockopt calls per new
 * socket. Returns the number of sockets marked.
 */
unsigned sl_xport_tcpmark_scan(sl_xport_tcpmark_t *m);

/* The endpoint of a socket address; false for a family other than IPv4 or
 * IPv6. */
bool sl_xport_tcpmark_ep_of(const struct sockaddr *sa, socklen_t len, sl_xport_tcpmark_ep_t *ep);

#endif
