/*
 * The NICs nearest a GPU, from sysfs (see sl_xport_nic.h).
 *
 * The idea. Every PCI device has a path under <sysfs>/devices that spells
 * its place in the PCIe tree: the host bridge ("pci0000:00"), then each
 * bridge or switch port on the way down, then the device itself. Two
 * devices are as near as the longest prefix their paths share: sharing a
 * bridge below the host bridge means the same switch (or root port), so a
 * transfer never crosses the CPU's root complex; sharing only the host
 * bridge means the same root complex; sharing nothing means crossing between
 * root complexes, cheap on one NUMA node and expensive across the CPU
 * interconnect. The level is what ranks NICs (the levels NCCL calls PIX/PXB,
 * PHB, NODE and SYS); the hops (links up to the common ancestor and down)
 * order NICs within a level but do not split its rank, so two NICs under
 * the GPU's switch are both "nearest" and a transfer may stripe over both.
 *
 * Everything is read under a root given by the caller, so a test builds a
 * fake tree (folders, numa_node files and symlinks, as sysfs has them) and
 * checks the choice on topologies this host does not have. No state is kept
 * between calls: the tree is small and read once when an engine starts.
 *
 * Rejected: hwloc (a dependency for a walk of a few links, and its own
 * distance model we would still have to map to UCX device names); asking
 * UCX (ucx_info's "system device" distances are per transport, after the
 * contexts exist, which is too late to choose UCX_NET_DEVICES).
 */
#include "transport/sl_xport_nic.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"

/* True when s is a PCI function name, "dddd:bb:dd.f" in hex. */
static bool s_is_busid(const char *s, size_t n)
{
    static const char form[] = "xxxx:xx:xx.x";
    if (n != sizeof(form) - 1)
        return false;
    for (size_t i = 0; i < n; i++)
        if (form[i] == 'x' ? !isxdigit((unsigned char)s[i]) : s[i] != form[i])
            return false;
    return true;
}

sl_status_t sl_xport_nic_busid(const char *in, char out[SL_XPORT_NIC_BUSID_MAX])
{
    if (!in || !out)
        return SL_ERR_INVALID;
    size_t n = strlen(in);
    /* NVML writes an 8-digit domain; sysfs a 4-digit one */
    if (n == 16 && strncmp(in, "0000", 4) == 0)
        in += 4, n -= 4;
    char b[SL_XPORT_NIC_BUSID_MAX];
    if (n >= sizeof(b))
        return SL_ERR_INVALID;
    for (size_t i = 0; i <= n; i++)
        b[i] = (char)tolower((unsigned char)in[i]);
    if (!s_is_busid(b, n))
        return SL_ERR_INVALID;
    memcpy(out, b, n + 1);
    return SL_OK;
}

/* The PCI path of the device link at link (e.g. <sysfs>/class/net/eth0/
 * device) relative to <sysfs>/devices, cut after its last PCI function (a
 * virtio or other child below the function is not part of the tree).
 * False for a virtual device, a missing link, or a path outside a host
 * bridge. */
static bool s_pci_path(const char *root, const char *link, char path[SL_XPORT_NIC_PATH_MAX],
                       char busid[SL_XPORT_NIC_BUSID_MAX])
{
    char real[PATH_MAX];
    size_t rl = strlen(root);
    if (!realpath(link, real) || strncmp(real, root, rl) != 0 ||
        strncmp(real + rl, "/devices/pci", 12) != 0)
        return false;
    const char *p = real + rl + strlen("/devices/");
    const char *end = NULL, *last = NULL;
    for (const char *c = p; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (s_is_busid(c, n)) {
            end = c + n;
            last = c;
        }
        c += n + (slash ? 1 : 0);
    }
    if (!end || (size_t)(end - p) >= SL_XPORT_NIC_PATH_MAX)
        return false;
    memcpy(path, p, (size_t)(end - p));
    path[end - p] = '\0';
    memcpy(busid, last, (size_t)(end - last));
    busid[end - last] = '\0';
    return true;
}

/* The NUMA node of the PCI device at path (-1 when sysfs does not say). */
static int s_numa(const char *root, const char *path)
{
    char f[PATH_MAX];
    int node = -1;
    if (snprintf(f, sizeof(f), "%s/devices/%s/numa_node", root, path) >= (int)sizeof(f))
        return -1;
    FILE *fp = fopen(f, "r");
    if (!fp)
        return -1;
    if (fscanf(fp, "%d", &node) != 1)
        node = -1;
    fclose(fp);
    return node;
}

static int s_skip_dots(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Add one NIC entry (name as UCX spells it) for the device link at link. */
static void s_add(sl_xport_nic_topo_t *topo, const char *root, const char *link, const char *name,
                  bool rdma)
{
    sl_xport_nic_t nic;
    memset(&nic, 0, sizeof(nic));
    if (strlen(name) >= sizeof(nic.name) || !s_pci_path(root, link, nic.path, nic.busid))
        return;
    if (topo->nnic == SL_XPORT_NIC_MAX) {
        topo->skipped++;
        return;
    }
    strcpy(nic.name, name);
    nic.numa = s_numa(root, nic.path);
    nic.rdma = rdma;
    topo->nic[topo->nnic++] = nic;
}

/* The entries of <root>/class/<cls>, sorted by name (so the scan order, and
 * the order of ties, does not depend on the filesystem). */
static void s_scan_class(sl_xport_nic_topo_t *topo, const char *root, const char *cls)
{
    char dir[PATH_MAX], link[PATH_MAX], name[SL_XPORT_NIC_NAME_MAX];
    struct dirent **ents = NULL;
    snprintf(dir, sizeof(dir), "%s/class/%s", root, cls);
    int n = scandir(dir, &ents, s_skip_dots, alphasort);
    for (int i = 0; i < n; i++) {
        const char *dev = ents[i]->d_name;
        if (snprintf(link, sizeof(link), "%s/%s/device", dir, dev) >= (int)sizeof(link))
            continue;
        if (strcmp(cls, "net") == 0) {
            s_add(topo, root, link, dev, false);
            continue;
        }
        /* an RDMA device: one UCX device per port, "mlx5_0:1" */
        char ports[PATH_MAX];
        struct dirent **pe = NULL;
        int np = snprintf(ports, sizeof(ports), "%s/%s/ports", dir, dev) < (int)sizeof(ports)
                     ? scandir(ports, &pe, s_skip_dots, alphasort)
                     : -1;
        for (int j = 0; j < np; j++) {
            if (snprintf(name, sizeof(name), "%s:%s", dev, pe[j]->d_name) < (int)sizeof(name))
                s_add(topo, root, link, name, true);
            free(pe[j]);
        }
        free(pe);
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
}

sl_status_t sl_xport_nic_scan(const char *sysfs, sl_xport_nic_topo_t *topo)
{
    char root[PATH_MAX];
    if (!sysfs || !topo)
        return SL_ERR_INVALID;
    memset(topo, 0, sizeof(*topo));
    if (!realpath(sysfs, root))
        return SL_OK; /* no sysfs: no NIC */
    s_scan_class(topo, root, "infiniband");
    s_scan_class(topo, root, "net");
    if (topo->skipped)
        SL_WARN("xport: %u NICs beyond the first %d left out of the NIC choice", topo->skipped,
                SL_XPORT_NIC_MAX);
    return SL_OK;
}

/* Components of a PCI path; components shared by two paths. */
static unsigned s_depth(const char *p)
{
    unsigned n = 1;
    for (; *p; p++)
        n += *p == '/';
    return n;
}

static unsigned s_common(const char *a, const char *b)
{
    unsigned n = 0;
    for (;;) {
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        if (la != lb || strncmp(a, b, la) != 0)
            return n;
        n++;
        if (!a[la] || !b[lb])
            return n;
        a += la + 1;
        b += lb + 1;
    }
}

static int s_cmp_choice(const void *x, const void *y)
{
    const sl_xport_nic_choice_t *a = x, *b = y;
    if (a->level != b->level)
        return a->level < b->level ? -1 : 1;
    if (a->hops != b->hops)
        return a->hops < b->hops ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

sl_status_t sl_xport_nic_rank(sl_xport_nic_topo_t *topo, const char *sysfs, const char *gpu,
                              sl_xport_nic_choice_t *out, unsigned cap, unsigned *n_p)
{
    char root[PATH_MAX], link[PATH_MAX + 64], busid[SL_XPORT_NIC_BUSID_MAX];
    char gpath[SL_XPORT_NIC_PATH_MAX], gbus[SL_XPORT_NIC_BUSID_MAX];
    sl_xport_nic_choice_t all[SL_XPORT_NIC_MAX];

    if (!topo || !sysfs || !gpu || (!out && cap) || !n_p)
        return SL_ERR_INVALID;
    if (sl_xport_nic_busid(gpu, busid) != SL_OK) {
        SL_WARN("xport: %s is not a PCI bus id", gpu);
        return SL_ERR_INVALID;
    }
    if (!realpath(sysfs, root))
        return SL_ERR_NOT_FOUND;
    snprintf(link, sizeof(link), "%s/bus/pci/devices/%s", root, busid);
    if (!s_pci_path(root, link, gpath, gbus)) {
        SL_WARN("xport: no PCI device %s under %s", busid, sysfs);
        return SL_ERR_NOT_FOUND;
    }
    int gnuma = s_numa(root, gpath);
    unsigned gdepth = s_depth(gpath);
    bool near_node = false;
    for (unsigned i = 0; i < topo->nnic; i++) {
        const sl_xport_nic_t *nic = &topo->nic[i];
        unsigned common = s_common(gpath, nic->path);
        sl_xport_nic_choice_t *c = &all[i];
        c->idx = i;
        c->hops = (gdepth - common) + (s_depth(nic->path) - common);
        if (common >= 2)
            c->level = SL_XPORT_NIC_SWITCH;
        else if (common == 1)
            c->level = SL_XPORT_NIC_ROOT;
        else
            c->level = nic->numa == gnuma ? SL_XPORT_NIC_NODE : SL_XPORT_NIC_REMOTE;
        near_node |= c->level != SL_XPORT_NIC_REMOTE;
    }
    if (topo->nnic)
        qsort(all, topo->nnic, sizeof(all[0]), s_cmp_choice);
    for (unsigned i = 0; i < topo->nnic; i++)
        all[i].rank = i == 0                             ? 0
                      : all[i].level == all[i - 1].level ? all[i - 1].rank
                                                         : all[i - 1].rank + 1;
    if (topo->nnic && !near_node) {
        topo->cross_numa++;
        SL_WARN("xport: no NIC on NUMA node %d of GPU %s; nearest is %s on node %d", gnuma, busid,
                topo->nic[all[0].idx].name, topo->nic[all[0].idx].numa);
    }
    unsigned n = topo->nnic < cap ? topo->nnic : cap;
    if (n)
        memcpy(out, all, n * sizeof(all[0]));
    *n_p = n;
    return SL_OK;
}

sl_status_t sl_xport_nic_nearest(const char *sysfs, const char *gpu, char *buf, size_t len)
{
    sl_xport_nic_topo_t *topo = malloc(sizeof(*topo));
    sl_xport_nic_choice_t ch[SL_XPORT_NIC_MAX];
    unsigned n = 0;
    size_t used = 0;
    sl_status_t st;

    if (!buf || !len) {
        free(topo);
        return SL_ERR_INVALID;
    }
    if (!topo)
        return SL_ERR_NOMEM;
    if ((st = sl_xport_nic_scan(sysfs, topo)) != SL_OK ||
        (st = sl_xport_nic_rank(topo, sysfs, gpu, ch, SL_XPORT_NIC_MAX, &n)) != SL_OK)
        goto out;
    char tmp[SL_XPORT_NIC_MAX * (SL_XPORT_NIC_NAME_MAX + 1)];
    tmp[0] = '\0';
    for (unsigned i = 0; i < n && ch[i].rank == 0; i++) {
        const char *name = topo->nic[ch[i].idx].name;
        used += (size_t)snprintf(tmp + used, sizeof(tmp) - used, "%s%s", used ? "," : "", name);
    }
    if (used >= len) {
        st = SL_ERR_OVERFLOW;
        goto out;
    }
    memcpy(buf, tmp, used + 1);
out:
    free(topo);
    return st;
}
