/*
 * Test harness for the transport: a peer engine in a separate process
 * (this test binary re-executed with --peer), driven over a socketpair.
 * Addresses and remote keys are exchanged over the same socketpair; in the
 * product they travel through the scheduler's authenticated channel.
 */
#ifndef XPORT_PEER_H
#define XPORT_PEER_H

#include <sluice/xport.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the peer process registers. */
typedef struct xp_peer_opts {
    size_t region_len;  /* bytes of its region */
    bool staged;        /* register it as device memory staged with memcpy */
    int stage_chunk_kib;/* its staging chunk */
    int stage_slots;    /* its staging slots */
    uint64_t seed;      /* fills the region with random bytes from this seed */
} xp_peer_opts_t;

/* The parent's view of one peer process. */
typedef struct xp_peer {
    pid_t pid;             /* the process */
    int sock;              /* our end of the socketpair */
    sl_xport_peer_t *conn; /* our connection to its engine */
    uint32_t rid;          /* id of its region in our transfers */
} xp_peer_t;

/* Memcpy copy step for staging tests. */
sl_status_t xp_memcpy_copy(void *ctx, void *dst, const void *src, size_t len);

/* Fill buf with bytes from seed. */
void xp_fill(void *buf, size_t len, uint64_t seed);

/* If argv asks for peer mode, run the peer and exit; otherwise return. */
void xp_peer_main_maybe(int argc, char **argv);

/* Start a peer, connect both ways, exchange region keys (ours: mine). */
int xp_peer_start(sl_xport_t *xp, sl_xport_mem_t *mine, const xp_peer_opts_t *o, xp_peer_t *p);
/* Read back len bytes of the peer's region at off. */
int xp_peer_read(xp_peer_t *p, uint64_t off, void *out, size_t len);
/* Wait until the peer has received n notifications in total; progress xp meanwhile. */
int xp_peer_wait_notifs(sl_xport_t *xp, xp_peer_t *p, uint64_t n);
/* Ask the peer to put len bytes of its region at off into our region at roff,
 * with a notification; returns at once (the peer reports completion on wait). */
int xp_peer_put_back(xp_peer_t *p, uint64_t off, uint64_t roff, uint64_t len);
/* Wait for the peer's put_back completion status, progressing xp meanwhile. */
int xp_peer_put_back_wait(sl_xport_t *xp, xp_peer_t *p, int *status_p);
/* Stop the peer cleanly; returns its exit status. */
int xp_peer_stop(sl_xport_t *xp, xp_peer_t *p);
/* Kill the peer with SIGKILL and reap it. */
void xp_peer_kill(xp_peer_t *p);

#endif
