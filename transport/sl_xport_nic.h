/*
 * The NICs nearest a GPU on the PCIe tree, read from sysfs
 * (transport/sl_xport_nic.c). Pure: it reads files under a root passed in
 * ("/sys" in production, a tree built by a test otherwise) and nothing
 * else, so fake topologies test it. Not installed.
 */
#ifndef SL_XPORT_NIC_H
#define SL_XPORT_NIC_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_XPORT_NIC_MAX 64       /* NICs (UCX device names) one scan keeps */
#define SL_XPORT_NIC_NAME_MAX 64  /* a UCX device name: "eth0", "mlx5_0:1" */
#define SL_XPORT_NIC_PATH_MAX 512 /* a PCI device's path under <sysfs>/devices */
#define SL_XPORT_NIC_BUSID_MAX 32 /* a PCI bus id: "0000:3b:00.0" */

/* How far a NIC is from a GPU, nearest first. */
typedef enum sl_xport_nic_level {
    SL_XPORT_NIC_SWITCH = 0, /* below the same PCIe switch or root port */
    SL_XPORT_NIC_ROOT = 1,   /* same root complex (host bridge), different ports */
    SL_XPORT_NIC_NODE = 2,   /* another root complex on the same NUMA node */
    SL_XPORT_NIC_REMOTE = 3, /* another NUMA node */
} sl_xport_nic_level_t;

/* One NIC as UCX names it. An RDMA port and the netdev of the same PCI
 * function are two entries (verbs transports use the one, tcp the other). */
typedef struct sl_xport_nic {
    char name[SL_XPORT_NIC_NAME_MAX];   /* UCX device name */
    char busid[SL_XPORT_NIC_BUSID_MAX]; /* its PCI function */
    char path[SL_XPORT_NIC_PATH_MAX];   /* "pci0000:00/0000:00:01.0/..." of that function */
    int numa;                           /* NUMA node (-1: unknown) */
    bool rdma;                          /* an InfiniBand/RoCE port (else a netdev) */
} sl_xport_nic_t;

/* The NICs of a host. */
typedef struct sl_xport_nic_topo {
    sl_xport_nic_t nic[SL_XPORT_NIC_MAX]; /* PCI NICs found */
    unsigned nnic;                        /* their number */
    unsigned skipped;                     /* NICs past SL_XPORT_NIC_MAX, left out */
    uint64_t cross_numa;                  /* choices that fell back to another NUMA node */
} sl_xport_nic_topo_t;

/* One NIC seen from a GPU. */
typedef struct sl_xport_nic_choice {
    unsigned idx;               /* index in topo->nic */
    sl_xport_nic_level_t level; /* how far */
    unsigned hops;              /* PCIe links from the GPU up to the common ancestor and down */
    unsigned rank;              /* 0 for the nearest; equal levels share a rank */
} sl_xport_nic_choice_t;

/*
 * Read the PCI NICs under sysfs: <sysfs>/class/net/<dev>/device and
 * <sysfs>/class/infiniband/<dev>/device (one entry per port under ports/),
 * their PCI paths and NUMA nodes. Virtual devices (no device link, or not
 * under a PCI host bridge) are left out. A missing class folder is no NIC,
 * not an error. SL_ERR_INVALID for bad arguments; *topo is written whole.
 */
sl_status_t sl_xport_nic_scan(const char *sysfs, sl_xport_nic_topo_t *topo);

/*
 * Normalize a PCI bus id from CUDA ("0000:3B:00.0") or NVML
 * ("00000000:3B:00.0") to sysfs's form ("0000:3b:00.0"). SL_ERR_INVALID when
 * it is not one; out is written only on success.
 */
sl_status_t sl_xport_nic_busid(const char *in, char out[SL_XPORT_NIC_BUSID_MAX]);

/*
 * The NICs of topo seen from the GPU at PCI bus id gpu (either form), nearest
 * first: by level, then by hops; ties keep scan order. out receives at most
 * cap choices and *n_p their number. When no NIC is on the GPU's NUMA node
 * the nearest ones are on another: topo->cross_numa is counted and a
 * warning logged. SL_ERR_NOT_FOUND when sysfs has no such PCI device,
 * SL_ERR_INVALID for bad arguments; outputs written only on success.
 */
sl_status_t sl_xport_nic_rank(sl_xport_nic_topo_t *topo, const char *sysfs, const char *gpu,
                              sl_xport_nic_choice_t *out, unsigned cap, unsigned *n_p);

/*
 * The UCX_NET_DEVICES value for the GPU at bus id gpu: the names of the NICs
 * of rank 0, comma separated, into buf (len bytes). An empty string when the
 * host has no PCI NIC. Scans sysfs itself; errors as sl_xport_nic_rank, and
 * SL_ERR_OVERFLOW when the list does not fit in buf. buf written only on
 * success.
 */
sl_status_t sl_xport_nic_nearest(const char *sysfs, const char *gpu, char *buf, size_t len);

#endif
