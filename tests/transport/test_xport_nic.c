/*
 * The NIC nearest each GPU (transport/sl_xport_nic.c) on fake sysfs trees
 * built in a temporary folder the way the kernel lays them out (PCI device
 * folders under devices/, numa_node files, class/net and class/infiniband
 * entries whose device link points at a PCI function, bus/pci/devices
 * links), then on this host's own /sys.
 *
 * Three topologies: one GPU and one NIC; eight GPUs and four NICs over two
 * NUMA nodes (each pair of GPUs shares a PCIe switch with one NIC, which has
 * an RDMA port and a netdev); a GPU with no NIC on its NUMA node.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sluice/xport.h>

#include "transport/sl_xport_nic.h"
#include "tests/support/sl_test.h"

/* snprintf into an array, failing the case when it does not fit */
#define S_FMT(buf, ...) assert_true(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

typedef struct tree {
    char root[64];                              /* the fake sysfs */
    sl_xport_nic_topo_t topo;                   /* its scan */
    sl_xport_nic_choice_t ch[SL_XPORT_NIC_MAX]; /* a ranking */
    unsigned n;                                 /* entries of ch */
} tree_t;

/* mkdir -p root/rel */
static void s_mkdirs(const char *root, const char *rel)
{
    char p[PATH_MAX];
    S_FMT(p, "%s/%s", root, rel);
    for (char *c = p + strlen(root) + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
        *c = '/';
    }
    assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
}

static void s_link(const char *target, const char *root, const char *rel)
{
    char p[PATH_MAX];
    S_FMT(p, "%s/%s", root, rel);
    assert_int_equal(symlink(target, p), 0);
}

static const char *s_last(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A PCI device at path (under devices/) on NUMA node numa. */
static void s_pci(tree_t *t, const char *path, int numa)
{
    char rel[PATH_MAX], target[PATH_MAX];
    S_FMT(rel, "devices/%s", path);
    s_mkdirs(t->root, rel);
    S_FMT(rel, "%s/devices/%s/numa_node", t->root, path);
    FILE *f = fopen(rel, "w");
    assert_non_null(f);
    fprintf(f, "%d\n", numa);
    fclose(f);
    s_mkdirs(t->root, "bus/pci/devices");
    S_FMT(rel, "bus/pci/devices/%s", s_last(path));
    S_FMT(target, "%s/devices/%s", t->root, path);
    s_link(target, t->root, rel);
}

/* A netdev name on the PCI function at path (below a virtio child when
 * virtio is set, as a virtual machine's NIC is). */
static void s_net(tree_t *t, const char *name, const char *path, bool virtio)
{
    char rel[PATH_MAX], target[PATH_MAX], dev[PATH_MAX];
    S_FMT(dev, "%s%s", path, virtio ? "/virtio0" : "");
    S_FMT(rel, "devices/%s/net/%s", dev, name);
    s_mkdirs(t->root, rel);
    s_mkdirs(t->root, "class/net");
    S_FMT(target, "%s/devices/%s/net/%s", t->root, dev, name);
    S_FMT(rel, "class/net/%s", name);
    s_link(target, t->root, rel);
    S_FMT(target, "%s/devices/%s", t->root, dev);
    S_FMT(rel, "devices/%s/net/%s/device", dev, name);
    s_link(target, t->root, rel);
}

/* An RDMA device name with ports 1..nports on the PCI function at path. */
static void s_ib(tree_t *t, const char *name, const char *path, int nports)
{
    char rel[PATH_MAX], target[PATH_MAX];
    S_FMT(rel, "devices/%s/infiniband/%s", path, name);
    s_mkdirs(t->root, rel);
    for (int p = 1; p <= nports; p++) {
        S_FMT(rel, "devices/%s/infiniband/%s/ports/%d", path, name, p);
        s_mkdirs(t->root, rel);
    }
    s_mkdirs(t->root, "class/infiniband");
    S_FMT(target, "%s/devices/%s/infiniband/%s", t->root, path, name);
    S_FMT(rel, "class/infiniband/%s", name);
    s_link(target, t->root, rel);
    S_FMT(target, "%s/devices/%s", t->root, path);
    S_FMT(rel, "devices/%s/infiniband/%s/device", path, name);
    s_link(target, t->root, rel);
}

/* A virtual netdev (no device link), as lo is. */
static void s_virtual(tree_t *t, const char *name)
{
    char rel[PATH_MAX], target[PATH_MAX];
    S_FMT(rel, "devices/virtual/net/%s", name);
    s_mkdirs(t->root, rel);
    s_mkdirs(t->root, "class/net");
    S_FMT(target, "%s/devices/virtual/net/%s", t->root, name);
    S_FMT(rel, "class/net/%s", name);
    s_link(target, t->root, rel);
}

static int s_setup(void **state)
{
    tree_t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    S_FMT(t->root, "/tmp/sl_nic.XXXXXX");
    assert_non_null(mkdtemp(t->root));
    *state = t;
    return 0;
}

static int s_teardown(void **state)
{
    tree_t *t = *state;
    char cmd[128], out[16];
    S_FMT(cmd, "rm -rf '%s'", t->root);
    assert_int_equal(sl_test_run(cmd, out, sizeof(out)), 0);
    free(t);
    return 0;
}

static void s_rank_in(tree_t *t, const char *root, const char *gpu)
{
    assert_int_equal(sl_xport_nic_rank(&t->topo, root, gpu, t->ch, SL_XPORT_NIC_MAX, &t->n), SL_OK);
    assert_int_equal(t->n, t->topo.nnic);
}

static void s_rank(tree_t *t, const char *gpu)
{
    s_rank_in(t, t->root, gpu);
}

static const char *s_name(const tree_t *t, unsigned i)
{
    return t->topo.nic[t->ch[i].idx].name;
}

static void s_nearest_is(const tree_t *t, const char *gpu, const char *want)
{
    char buf[256];
    assert_int_equal(sl_xport_nic_nearest(t->root, gpu, buf, sizeof(buf)), SL_OK);
    assert_string_equal(buf, want);
}

/* One GPU and one NIC on two root ports of one host bridge; lo (virtual)
 * and a NIC below a virtio child are told apart. */
static void test_one_gpu_one_nic(void **state)
{
    tree_t *t = *state;
    s_pci(t, "pci0000:00/0000:00:01.0", 0);
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0", 0); /* the GPU */
    s_pci(t, "pci0000:00/0000:00:03.0", 0);
    s_net(t, "eth0", "pci0000:00/0000:00:03.0", true);
    s_virtual(t, "lo");

    assert_int_equal(sl_xport_nic_scan(t->root, &t->topo), SL_OK);
    assert_int_equal(t->topo.nnic, 1);
    assert_string_equal(t->topo.nic[0].name, "eth0");
    assert_string_equal(t->topo.nic[0].busid, "0000:00:03.0");
    assert_string_equal(t->topo.nic[0].path, "pci0000:00/0000:00:03.0");
    assert_int_equal(t->topo.nic[0].numa, 0);
    assert_false(t->topo.nic[0].rdma);

    s_rank(t, "0000:01:00.0");
    assert_int_equal(t->n, 1);
    assert_int_equal(t->ch[0].level, SL_XPORT_NIC_ROOT);
    assert_int_equal(t->ch[0].hops, 3); /* up 01:00.0, 00:01.0; down 00:03.0 */
    assert_int_equal(t->ch[0].rank, 0);
    s_nearest_is(t, "0000:01:00.0", "eth0");
    s_nearest_is(t, "00000000:01:00.0", "eth0"); /* NVML's form */
    assert_int_equal(t->topo.cross_numa, 0);

    /* a GPU sysfs does not have, and a bus id that is none */
    char buf[64] = "unchanged";
    assert_int_equal(sl_xport_nic_nearest(t->root, "0000:09:00.0", buf, sizeof(buf)),
                     SL_ERR_NOT_FOUND);
    assert_int_equal(sl_xport_nic_nearest(t->root, "GPU-0", buf, sizeof(buf)), SL_ERR_INVALID);
    assert_int_equal(sl_xport_nic_nearest(t->root, "0000:01:00.0", buf, 3), SL_ERR_OVERFLOW);
    assert_string_equal(buf, "unchanged");
}

/* Eight GPUs and four NICs over two NUMA nodes: switch k (two per host
 * bridge, one host bridge per node) holds GPUs 2k and 2k+1 and NIC k, whose
 * function has an RDMA port (mlx5_k:1) and a netdev (ensk). */
static void test_eight_gpus_four_nics(void **state)
{
    tree_t *t = *state;
    char up[128], sw[160], down[192], path[256], name[32], gpu[8][16];

    for (int k = 0; k < 4; k++) {
        const char *hb = k < 2 ? "pci0000:00" : "pci0000:80";
        int dom = k < 2 ? 0x00 : 0x80, bus = dom + 0x10 * (k % 2 + 1), node = k < 2 ? 0 : 1;
        S_FMT(up, "%s/0000:%02x:%02x.0", hb, dom, k % 2 + 1); /* root port */
        s_pci(t, up, node);
        S_FMT(sw, "%s/0000:%02x:00.0", up, bus); /* switch */
        s_pci(t, sw, node);
        for (int d = 0; d < 3; d++) {
            S_FMT(down, "%s/0000:%02x:%02x.0", sw, bus + 1, d); /* down port */
            s_pci(t, down, node);
            S_FMT(path, "%s/0000:%02x:00.0", down, bus + 2 + d);
            s_pci(t, path, node);
            if (d < 2) {
                snprintf(gpu[2 * k + d], sizeof(gpu[0]), "0000:%02X:00.0", bus + 2 + d);
                continue;
            }
            S_FMT(name, "mlx5_%d", k);
            s_ib(t, name, path, 1);
            S_FMT(name, "ens%d", k);
            s_net(t, name, path, false);
        }
    }
    s_virtual(t, "lo");

    assert_int_equal(sl_xport_nic_scan(t->root, &t->topo), SL_OK);
    assert_int_equal(t->topo.nnic, 8); /* 4 RDMA ports, 4 netdevs */
    assert_true(t->topo.nic[0].rdma);
    assert_string_equal(t->topo.nic[0].name, "mlx5_0:1");
    assert_int_equal(t->topo.nic[2].numa, 1);

    for (int g = 0; g < 8; g++) {
        int k = g / 2, other = k ^ 1;
        char want[64];
        s_rank(t, gpu[g]);
        /* rank 0: the NIC under the GPU's switch (its port and its netdev) */
        S_FMT(want, "mlx5_%d:1", k);
        assert_string_equal(s_name(t, 0), want);
        S_FMT(want, "ens%d", k);
        assert_string_equal(s_name(t, 1), want);
        for (unsigned i = 0; i < 2; i++) {
            assert_int_equal(t->ch[i].level, SL_XPORT_NIC_SWITCH);
            assert_int_equal(t->ch[i].rank, 0);
            assert_int_equal(t->ch[i].hops, 4); /* up two ports, down two */
        }
        /* rank 1: the other switch of the same host bridge */
        S_FMT(want, "mlx5_%d:1", other);
        assert_string_equal(s_name(t, 2), want);
        for (unsigned i = 2; i < 4; i++) {
            assert_int_equal(t->ch[i].level, SL_XPORT_NIC_ROOT);
            assert_int_equal(t->ch[i].rank, 1);
        }
        /* rank 2: the other NUMA node's two NICs */
        for (unsigned i = 4; i < 8; i++) {
            assert_int_equal(t->ch[i].level, SL_XPORT_NIC_REMOTE);
            assert_int_equal(t->ch[i].rank, 2);
            assert_int_not_equal(t->topo.nic[t->ch[i].idx].numa, k < 2 ? 0 : 1);
        }
        S_FMT(want, "mlx5_%d:1,ens%d", k, k);
        s_nearest_is(t, gpu[g], want);
    }
    assert_int_equal(t->topo.cross_numa, 0);

    /* a short output array gets the nearest first */
    assert_int_equal(sl_xport_nic_rank(&t->topo, t->root, gpu[5], t->ch, 1, &t->n), SL_OK);
    assert_int_equal(t->n, 1);
    assert_string_equal(s_name(t, 0), "mlx5_2:1");
}

/* A GPU on node 1 with both NICs on node 0 behind other host bridges: the
 * nearest across nodes is chosen (the NIC fewer hops away first), and the
 * fallback is counted. A GPU on node 0 is not a fallback. */
static void test_gpu_without_local_nic(void **state)
{
    tree_t *t = *state;
    s_pci(t, "pci0000:80/0000:80:01.0", 1);
    s_pci(t, "pci0000:80/0000:80:01.0/0000:81:00.0", 1); /* GPU A, node 1 */
    s_pci(t, "pci0000:00/0000:00:02.0", 0);
    s_pci(t, "pci0000:00/0000:00:02.0/0000:02:00.0", 0);
    s_pci(t, "pci0000:00/0000:00:02.0/0000:02:00.0/0000:03:00.0", 0);
    s_pci(t, "pci0000:00/0000:00:02.0/0000:02:00.0/0000:03:00.0/0000:04:00.0", 0);
    s_net(t, "eth1", "pci0000:00/0000:00:02.0/0000:02:00.0/0000:03:00.0/0000:04:00.0", false);
    s_pci(t, "pci0000:40/0000:40:01.0", 0);
    s_pci(t, "pci0000:40/0000:40:01.0/0000:41:00.0", 0);
    s_net(t, "eth0", "pci0000:40/0000:40:01.0/0000:41:00.0", false);
    s_pci(t, "pci0000:40/0000:40:02.0", 0);
    s_pci(t, "pci0000:40/0000:40:02.0/0000:42:00.0", 0); /* GPU B, node 0 */

    assert_int_equal(sl_xport_nic_scan(t->root, &t->topo), SL_OK);
    assert_int_equal(t->topo.nnic, 2);
    s_rank(t, "0000:81:00.0");
    assert_int_equal(t->topo.cross_numa, 1);
    assert_string_equal(s_name(t, 0), "eth0");
    assert_string_equal(s_name(t, 1), "eth1");
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(t->ch[i].level, SL_XPORT_NIC_REMOTE);
        assert_int_equal(t->ch[i].rank, 0);
    }
    assert_true(t->ch[0].hops < t->ch[1].hops);
    s_nearest_is(t, "0000:81:00.0", "eth0,eth1");

    /* GPU B: eth0 shares its host bridge, eth1 only its node */
    s_rank(t, "0000:42:00.0");
    assert_int_equal(t->topo.cross_numa, 1);
    assert_string_equal(s_name(t, 0), "eth0");
    assert_int_equal(t->ch[0].level, SL_XPORT_NIC_ROOT);
    assert_int_equal(t->ch[1].level, SL_XPORT_NIC_NODE);
    assert_int_equal(t->ch[1].rank, 1);
    s_nearest_is(t, "0000:42:00.0", "eth0");
}

/* Bus ids as CUDA and NVML spell them. */
static void test_busid(void **state)
{
    char b[SL_XPORT_NIC_BUSID_MAX] = "x";
    (void)state;
    assert_int_equal(sl_xport_nic_busid("0000:3B:00.0", b), SL_OK);
    assert_string_equal(b, "0000:3b:00.0");
    assert_int_equal(sl_xport_nic_busid("00000000:3B:00.0", b), SL_OK);
    assert_string_equal(b, "0000:3b:00.0");
    assert_int_equal(sl_xport_nic_busid("0000:3b:00", b), SL_ERR_INVALID);
    assert_int_equal(sl_xport_nic_busid("0000:3g:00.0", b), SL_ERR_INVALID);
    assert_int_equal(sl_xport_nic_busid("", b), SL_ERR_INVALID);
    assert_int_equal(sl_xport_nic_busid(NULL, b), SL_ERR_INVALID);
    assert_string_equal(b, "0000:3b:00.0");
}

/* This host's /sys: whatever it holds scans without error, every NIC found
 * is a PCI function with a name, and a NIC's own function ranks it first.
 * A root that does not exist has no NIC. */
static void test_real_sysfs(void **state)
{
    tree_t *t = *state;
    assert_int_equal(sl_xport_nic_scan("/sys", &t->topo), SL_OK);
    for (unsigned i = 0; i < t->topo.nnic; i++) {
        const sl_xport_nic_t *nic = &t->topo.nic[i];
        char b[SL_XPORT_NIC_BUSID_MAX];
        print_message("  %s at %s (node %d)\n", nic->name, nic->path, nic->numa);
        assert_true(nic->name[0] != '\0');
        assert_int_equal(strncmp(nic->path, "pci", 3), 0);
        assert_int_equal(sl_xport_nic_busid(nic->busid, b), SL_OK);
        assert_true(strcmp(nic->name, "lo") != 0);
    }
    if (t->topo.nnic) {
        s_rank_in(t, "/sys", t->topo.nic[0].busid);
        assert_string_equal(t->topo.nic[t->ch[0].idx].busid, t->topo.nic[0].busid);
        assert_int_equal(t->ch[0].hops, 0);
    }
    assert_int_equal(sl_xport_nic_scan("/nonexistent/sys", &t->topo), SL_OK);
    assert_int_equal(t->topo.nnic, 0);
}

/* Connect two engines in this process (UCX over tcp) and return what the
 * first one's endpoints run over (sl_xport_peer_describe). */
static void s_describe(const sl_xport_cfg_t *cfg, char *out, size_t cap)
{
    sl_xport_t *a = NULL, *b = NULL;
    sl_xport_peer_t *peer = NULL;
    const void *addr;
    size_t len;
    assert_int_equal(sl_xport_create(cfg, &a), SL_OK);
    assert_int_equal(sl_xport_create(cfg, &b), SL_OK);
    assert_int_equal(sl_xport_address(b, &addr, &len), SL_OK);
    assert_int_equal(sl_xport_connect(a, addr, len, &peer), SL_OK);
    FILE *f = fmemopen(out, cap, "w");
    assert_non_null(f);
    sl_xport_peer_describe(peer, f);
    fclose(f);
    out[cap - 1] = '\0';
    sl_xport_disconnect(a, &peer);
    sl_xport_destroy(&a);
    sl_xport_destroy(&b);
}

/* The engine pins the NICs nearest its GPU: in a fake tree where the NIC
 * under the GPU's switch is named lo (so that UCX finds it on this host)
 * and eth0 hangs off another root complex, xport-net-devices=auto gives
 * UCX_NET_DEVICES=lo and UCX's tcp lanes run over lo alone. Without a GPU
 * "auto" leaves UCX's default; an explicit list is taken as it is. */
static void test_engine_pins_nearest(void **state)
{
    tree_t *t = *state;
    static char desc[1 << 16];
    sl_xport_cfg_t cfg;

    s_pci(t, "pci0000:00/0000:00:01.0", 0);
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0", 0);
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0", 0);
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.0", 0); /* GPU */
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0", 0);
    s_pci(t, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:04:00.0", 0);
    s_net(t, "lo", "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:04:00.0", false);
    s_pci(t, "pci0000:40/0000:40:01.0", 0);
    s_net(t, "eth0", "pci0000:40/0000:40:01.0", false);
    setenv("UCX_TLS", "tcp", 1);
    unsetenv("UCX_NET_DEVICES");

    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    assert_string_equal(cfg.net_devices, "auto");
    S_FMT(cfg.sysfs, "%s", t->root);
    S_FMT(cfg.gpu_pci, "0000:03:00.0");
    sl_xport_t *xp = NULL;
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_string_equal(sl_xport_net_devices(xp), "lo");
    sl_xport_destroy(&xp);
    s_describe(&cfg, desc, sizeof(desc));
    assert_non_null(strstr(desc, "tcp/lo"));
    assert_null(strstr(desc, "tcp/eth0"));

    /* no GPU: UCX's default */
    cfg.gpu_pci[0] = '\0';
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_string_equal(sl_xport_net_devices(xp), "");
    sl_xport_destroy(&xp);

    /* a GPU sysfs does not know: UCX's default, with a warning */
    S_FMT(cfg.gpu_pci, "0000:77:00.0");
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_string_equal(sl_xport_net_devices(xp), "");
    sl_xport_destroy(&xp);

    /* an explicit list */
    S_FMT(cfg.net_devices, "eth0");
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_string_equal(sl_xport_net_devices(xp), "eth0");
    sl_xport_destroy(&xp);
    s_describe(&cfg, desc, sizeof(desc));
    assert_non_null(strstr(desc, "tcp/eth0"));
    assert_null(strstr(desc, "tcp/lo"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_gpu_one_nic, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_eight_gpus_four_nics, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_gpu_without_local_nic, s_setup, s_teardown),
        cmocka_unit_test(test_busid),
        cmocka_unit_test_setup_teardown(test_engine_pins_nearest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_real_sysfs, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("xport_nic", tests, NULL, NULL);
}
