/*
 * The host load sampler: /proc/stat parsing on captured text, the busy
 * share between readings, the sampler on a file it is fed, on this machine
 * (CPU measured in [0, 1], GPU unknown where NVML cannot be loaded), and
 * NVML through a stand-in library (fake_nvml.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_clock.h"
#include "executor/sl_hostload.h"

/* The head of /proc/stat on a 4-CPU Linux 6.x machine (the intr line cut). */
static const char s_stat[] = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n"
                             "cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n"
                             "cpu1 3212306 87633 839616 11044346 3566 0 2768 0 50613 0\n"
                             "cpu2 2830640 86107 838765 11284617 3604 0 2314 0 50482 0\n"
                             "cpu3 2695925 84006 834281 11156227 3382 0 2236 0 50599 0\n"
                             "intr 1462898 0 9 0 0 0 0 3 0 1 0 0 0 4 0 0 0\n"
                             "ctxt 113813931\n"
                             "btime 1700000000\n";

static void test_parse_stat(void **state)
{
    sl_cpu_times_t t = {0};
    assert_int_equal(sl_hostload_parse_stat(s_stat, strlen(s_stat), &t), SL_OK);
    /* busy: user nice system irq softirq steal; idle: idle iowait; guest is inside user */
    assert_int_equal(t.busy, 10132153ull + 290696 + 3084719 + 0 + 25195 + 0);
    assert_int_equal(t.total, t.busy + 46828483ull + 16683);

    /* An old kernel's four fields; steal counts as busy. */
    const char old[] = "cpu  100 0 50 850\n";
    assert_int_equal(sl_hostload_parse_stat(old, strlen(old), &t), SL_OK);
    assert_int_equal(t.busy, 150);
    assert_int_equal(t.total, 1000);
    const char steal[] = "cpu  100 0 50 800 10 5 5 30\n";
    assert_int_equal(sl_hostload_parse_stat(steal, strlen(steal), &t), SL_OK);
    assert_int_equal(t.busy, 190);
    assert_int_equal(t.total, 1000);

    /* The aggregate line need not be first; only "cpu " is it. */
    const char later[] = "stray 1 2\ncpu0 9 9 9 9\ncpu  1 2 3 4\n";
    assert_int_equal(sl_hostload_parse_stat(later, strlen(later), &t), SL_OK);
    assert_int_equal(t.busy, 6);
    assert_int_equal(t.total, 10);

    /* Refused, and the output untouched. */
    sl_cpu_times_t keep = {7, 8};
    const char *bad[] = {
        "",                                  /* nothing */
        "cpu0 1 2 3 4\ncpu1 1 2 3 4\n",      /* per-CPU lines only */
        "cpu  1 2 3\n",                      /* too few fields */
        "cpu  1 2 3 4",                      /* no newline: may be cut in a number */
        "cpu  x 2 3 4\n",                    /* not a number */
        "cpu  99999999999999999999 0 0 0\n", /* beyond 64 bits */
        "intr 1 2 3\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t = keep;
        assert_int_equal(sl_hostload_parse_stat(bad[i], strlen(bad[i]), &t), SL_ERR_INVALID);
        assert_int_equal(t.busy, 7);
        assert_int_equal(t.total, 8);
    }
    /* The length is honoured: the text need not end in NUL. */
    assert_int_equal(sl_hostload_parse_stat(s_stat, 20, &t), SL_ERR_INVALID);
}

static void test_cpu_share(void **state)
{
    sl_cpu_times_t a = {1000, 4000}, b = {1250, 5000};
    float share = -1;
    assert_true(sl_hostload_cpu_share(&a, &b, &share));
    assert_true(share == 0.25f);
    b = (sl_cpu_times_t){2000, 5000};
    assert_true(sl_hostload_cpu_share(&a, &b, &share));
    assert_true(share == 1.0f);
    /* No tick, or counters that went back: unknown, the output untouched. */
    share = -1;
    assert_false(sl_hostload_cpu_share(&a, &a, &share));
    b = (sl_cpu_times_t){900, 5000};
    assert_false(sl_hostload_cpu_share(&a, &b, &share));
    b = (sl_cpu_times_t){1100, 3000};
    assert_false(sl_hostload_cpu_share(&a, &b, &share));
    assert_true(share == -1);
}

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w"); /* truncated in place: the sampler's descriptor sees it */
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The sampler on a file: shares between successive readings. */
static void test_sampler_on_file(void **state)
{
    char path[] = "/tmp/sl-hostload-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    s_write(path, "cpu  100 0 100 800 0 0 0 0\n");
    sl_hostload_cfg_t cfg = {
        .proc_stat = path, .nvml_lib = "libsluice-no-such-nvml.so.1", .gpu_index = 0};
    sl_hostload_t *hl = NULL;
    sl_hostload_sample_t s;
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    /* 200 busy of 800 ticks since the reading at create */
    s_write(path, "cpu  200 0 200 1400 0 0 0 0\n");
    sl_hostload_sample(hl, &s);
    assert_true(s.has_cpu);
    assert_true(s.cpu == 0.25f);
    assert_false(s.has_gpu); /* no such library: unknown, not 0 */
    assert_false(s.has_gpu_mem);
    /* No tick since: the same share, still known. */
    sl_hostload_sample(hl, &s);
    assert_true(s.has_cpu);
    assert_true(s.cpu == 0.25f);
    /* 400 busy of 400 ticks */
    s_write(path, "cpu  400 0 400 1400 0 0 0 0\n");
    sl_hostload_sample(hl, &s);
    assert_true(s.has_cpu);
    assert_true(s.cpu == 1.0f);
    /* Unreadable now: unknown, not the last share. */
    s_write(path, "garbage\n");
    sl_hostload_sample(hl, &s);
    assert_false(s.has_cpu);
    /* Counters that went back (a new reading): unknown until the next tick. */
    s_write(path, "cpu  10 0 10 80 0 0 0 0\n");
    sl_hostload_sample(hl, &s);
    assert_false(s.has_cpu);
    s_write(path, "cpu  10 0 10 180 0 0 0 0\n");
    sl_hostload_sample(hl, &s);
    assert_true(s.has_cpu);
    assert_true(s.cpu == 0.0f);
    sl_hostload_destroy(&hl);
    assert_null(hl);
    sl_hostload_destroy(&hl); /* NULL-safe */
    unlink(path);

    /* Nothing to read: both unknown. */
    cfg = (sl_hostload_cfg_t){.proc_stat = "/nonexistent/stat", .nvml_lib = "", .gpu_index = 0};
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    sl_hostload_sample(hl, &s);
    assert_false(s.has_cpu);
    assert_false(s.has_gpu);
    sl_hostload_destroy(&hl);
}

/* This machine: the CPU is measured; the GPU is unknown unless NVML loads. */
static void test_sampler_this_machine(void **state)
{
    sl_hostload_cfg_t cfg = {
        .proc_stat = "/proc/stat", .nvml_lib = "libnvidia-ml.so.1", .gpu_index = 0};
    sl_hostload_t *hl = NULL;
    sl_hostload_sample_t s = {0};
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    /* Work until a clock tick has passed on some CPU (10 ms each at 100 Hz). */
    volatile uint64_t sink = 0;
    sl_time_t until = sl_clock_now() + SL_MS(5000);
    do {
        for (int i = 0; i < 1000000; i++)
            sink += (uint64_t)i * (uint64_t)i;
        sl_hostload_sample(hl, &s);
    } while (!s.has_cpu && sl_clock_now() < until);
    assert_true(s.has_cpu);
    assert_true(s.cpu >= 0.0f && s.cpu <= 1.0f);

    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml) {
        /* No driver here (the development machine): GPU values unknown. */
        assert_false(s.has_gpu);
        assert_false(s.has_gpu_mem);
    } else {
        /* A driver: whatever was measured is in range. */
        dlclose(nvml);
        if (s.has_gpu)
            assert_true(s.gpu >= 0.0f && s.gpu <= 1.0f);
        if (s.has_gpu_mem)
            assert_true(s.gpu_mem_total > 0 && s.gpu_mem_used <= s.gpu_mem_total);
        print_message("NVML: gpu %s %.2f, memory %s %llu/%llu\n",
                      s.has_gpu ? "measured" : "unknown", (double)s.gpu,
                      s.has_gpu_mem ? "measured" : "unknown", (unsigned long long)s.gpu_mem_used,
                      (unsigned long long)s.gpu_mem_total);
    }
    sl_hostload_destroy(&hl);

    /* GPU measurement switched off: unknown whatever the machine has. */
    cfg.gpu_index = -1;
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    sl_hostload_sample(hl, &s);
    assert_false(s.has_gpu);
    assert_false(s.has_gpu_mem);
    sl_hostload_destroy(&hl);
}

/* NVML through a stand-in library with its ABI: values read and scaled,
 * an absent device and a failing query unknown. */
static void test_sampler_nvml(void **state)
{
    sl_hostload_cfg_t cfg = {.proc_stat = "", .nvml_lib = SL_FAKE_NVML, .gpu_index = 0};
    sl_hostload_t *hl = NULL;
    sl_hostload_sample_t s;
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    sl_hostload_sample(hl, &s);
    assert_false(s.has_cpu); /* no /proc/stat asked for */
    assert_true(s.has_gpu);
    assert_true(s.gpu == 0.37f);
    assert_true(s.has_gpu_mem);
    assert_int_equal(s.gpu_mem_used, 1ull << 30);
    assert_int_equal(s.gpu_mem_total, 80ull << 30);
    /* Utilization not supported (MIG): unknown; memory still measured. */
    setenv("SL_FAKE_NVML_FAIL", "1", 1);
    sl_hostload_sample(hl, &s);
    unsetenv("SL_FAKE_NVML_FAIL");
    assert_false(s.has_gpu);
    assert_true(s.has_gpu_mem);
    sl_hostload_sample(hl, &s);
    assert_true(s.has_gpu);
    sl_hostload_destroy(&hl);

    /* No device at that index: unknown. */
    cfg.gpu_index = 1;
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    sl_hostload_sample(hl, &s);
    assert_false(s.has_gpu);
    assert_false(s.has_gpu_mem);
    sl_hostload_destroy(&hl);

    /* A library without NVML's entry points: unknown. */
    cfg = (sl_hostload_cfg_t){.proc_stat = "", .nvml_lib = "libc.so.6", .gpu_index = 0};
    assert_int_equal(sl_hostload_create(&cfg, &hl), SL_OK);
    sl_hostload_sample(hl, &s);
    assert_false(s.has_gpu);
    sl_hostload_destroy(&hl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),      cmocka_unit_test(test_cpu_share),
        cmocka_unit_test(test_sampler_on_file), cmocka_unit_test(test_sampler_this_machine),
        cmocka_unit_test(test_sampler_nvml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
