/*
 * The UCX peer harness of the transport's tests and benchmarks: a peer
 * engine in a child process (the calling program re-executed with --peer),
 * driven over a socketpair. Addresses and remote keys are exchanged over the
 * same socketpair; in the product they would travel through the scheduler.
 * Library sluice-xport-harness; never linked into the product.
 *
 * A program that starts peers calls sl_xport_harness_main_maybe(argc, argv)
 * first thing in main (or in the sub-command's main, with the sub-command's
 * name in opts.exec_arg), so that the re-executed copy becomes the peer.
 */
#ifndef SL_XPORT_HARNESS_H
#define SL_XPORT_HARNESS_H

#include <sluice/xport.h>

#include "common/sl_rand.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the peer process registers, and how it runs. */
typedef struct sl_xport_harness_opts {
    size_t region_len;    /* bytes of its region */
    bool staged;          /* register it as device memory staged with memcpy */
    int stage_chunk_kib;  /* its staging chunk (0: 2048) */
    int stage_slots;      /* its staging slots (0: 4) */
    uint64_t seed;        /* fills the region with random bytes from this seed */
    bool busy_poll;       /* progress without sleeping (as ucx_perftest does), instead of
                             sleeping on the engine's descriptor between events */
    const char *exec_arg; /* argument before --peer when re-executing (a sub-command), or NULL */
    bool alloc;           /* its region allocated through UCX (sl_xport_mem_alloc), so that a
                             peer on shared memory maps it; else allocated and registered */
} sl_xport_harness_opts_t;

/* The parent's view of one peer process. */
typedef struct sl_xport_harness {
    pid_t pid;             /* the process */
    int sock;              /* our end of the socketpair */
    sl_xport_peer_t *conn; /* our connection to its engine */
    uint32_t rid;          /* id of its region in our transfers */
} sl_xport_harness_t;

/* Memcpy copy step for staging tests (sl_xport_copy_fn_t). */
sl_status_t sl_xport_harness_copy(void *ctx, void *dst, const void *src, size_t len);

/* Fill buf with bytes from seed. */
void sl_xport_harness_fill(void *buf, size_t len, uint64_t seed);

/* If argv asks for peer mode (argv[1] is --peer), run the peer and exit;
 * otherwise return. */
void sl_xport_harness_main_maybe(int argc, char **argv);

/* Start a peer, connect both ways and exchange region keys (ours: mine, a
 * region registered with xp). On error nothing is left running. */
sl_status_t sl_xport_harness_start(sl_xport_t *xp, sl_xport_mem_t *mine,
                                   const sl_xport_harness_opts_t *o, sl_xport_harness_t *h);
/* Read back len bytes of the peer's region at off. */
sl_status_t sl_xport_harness_read(sl_xport_harness_t *h, uint64_t off, void *out, size_t len);
/* Wait until the peer has received n notifications in total; progress xp meanwhile. */
sl_status_t sl_xport_harness_wait_notifs(sl_xport_t *xp, sl_xport_harness_t *h, uint64_t n);
/* Ask the peer to put len bytes of its region at off into our region at roff,
 * with a notification; returns at once (the peer reports completion on wait). */
sl_status_t sl_xport_harness_put_back(sl_xport_harness_t *h, uint64_t off, uint64_t roff,
                                      uint64_t len);
/* Wait for the peer's put_back completion status, progressing xp meanwhile. */
sl_status_t sl_xport_harness_put_back_wait(sl_xport_t *xp, sl_xport_harness_t *h, int *status_p);
/* n blocks of random sizes (1 to slot bytes) in distinct slot-sized slots
 * of a region of region bytes on each side, the slots shuffled on each side
 * (a paged pool's scattered blocks); offsets: each block also starts at a
 * random offset inside its slot (else at its start). The caller frees it;
 * NULL when n exceeds the slots or memory is short. */
sl_xport_block_t *sl_xport_harness_scatter(sl_rand_t *r, uint64_t region, uint64_t slot, size_t n,
                                           bool offsets);
/* Write or read exactly len bytes on fd (retrying short transfers and
 * EINTR); 0, or -1 when the socket failed or closed. */
int sl_xport_harness_write_all(int fd, const void *buf, size_t len);
int sl_xport_harness_read_all(int fd, void *buf, size_t len);
/* Send xp's address and mine's packed key on fd, read the other side's
 * (each at most max_blob bytes), connect to it and import its key:
 * *conn_p and *rid_p. SL_ERR_IO when the socket fails or a blob is too
 * large; the transport's error otherwise. Both sides call it. */
sl_status_t sl_xport_harness_exchange(sl_xport_t *xp, sl_xport_mem_t *mine, int fd, size_t max_blob,
                                      sl_xport_peer_t **conn_p, uint32_t *rid_p);
/* Disconnect and stop the peer cleanly; returns its exit status (0 when it
 * exited cleanly and logged no error), or -1 when it could not be reaped. */
int sl_xport_harness_stop(sl_xport_t *xp, sl_xport_harness_t *h);
/* Kill the peer with SIGKILL and reap it (our connection stays: the engine
 * sees the peer fail). */
void sl_xport_harness_kill(sl_xport_harness_t *h);

#endif
