/* Unit tests of common/: config tables, histogram, map, hash, list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_cfg.h"
#include "common/sl_hash.h"
#include "common/sl_hist.h"
#include "common/sl_list.h"
#include "common/sl_map.h"
#include "common/sl_rand.h"

typedef struct {
    char endpoint[SL_CFG_STR_MAX];
    int credits;
    int64_t big;
    double ratio;
    bool verbose;
} cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_FIELD(cfg_t, endpoint, "endpoint", "tcp://127.0.0.1:1", SL_CFG_STR, "where"),
    SL_CFG_RANGE(cfg_t, credits, "credits", "4", SL_CFG_INT, 1, 64, "in-flight jobs"),
    SL_CFG_FIELD(cfg_t, big, "big", "1000000000000", SL_CFG_I64, "a large one"),
    SL_CFG_RANGE(cfg_t, ratio, "ratio", "0.8", SL_CFG_DOUBLE, 0, 1, "a ratio"),
    SL_CFG_FIELD(cfg_t, verbose, "verbose", "false", SL_CFG_BOOL, "talk"),
    SL_CFG_END,
};

static void test_cfg_precedence(void **state)
{
    cfg_t cfg;
    char *argv[] = {"prog", "--credits=9", "--ratio", "0.5", "--verbose", "rest", NULL};
    int first = 0;
    setenv("SLUICE_CREDITS", "7", 1);
    setenv("SLUICE_ENDPOINT", "ipc://x", 1);
    assert_int_equal(sl_cfg_load(s_table, &cfg, 6, argv, NULL, &first), SL_OK);
    assert_int_equal(cfg.credits, 9);
    assert_string_equal(cfg.endpoint, "ipc://x");
    assert_true(cfg.ratio == 0.5);
    assert_true(cfg.verbose);
    assert_int_equal(cfg.big, 1000000000000LL);
    assert_int_equal(first, 5);
    unsetenv("SLUICE_CREDITS");
    unsetenv("SLUICE_ENDPOINT");
}

static void test_cfg_errors(void **state)
{
    cfg_t cfg;
    char *bad_flag[] = {"prog", "--nope=1", NULL};
    char *bad_range[] = {"prog", "--credits=100", NULL};
    char *bad_num[] = {"prog", "--ratio=abc", NULL};
    char *missing[] = {"prog", "--credits", NULL};
    assert_int_equal(sl_cfg_load(s_table, &cfg, 2, bad_flag, NULL, NULL), SL_ERR_INVALID);
    assert_int_equal(sl_cfg_load(s_table, &cfg, 2, bad_range, NULL, NULL), SL_ERR_INVALID);
    assert_int_equal(sl_cfg_load(s_table, &cfg, 2, bad_num, NULL, NULL), SL_ERR_INVALID);
    assert_int_equal(sl_cfg_load(s_table, &cfg, 2, missing, NULL, NULL), SL_ERR_INVALID);
}

/* A short string field between guards, to see that nothing is written past it. */
typedef struct {
    char before[8];
    char level[8];
    char after[8];
    char path[SL_CFG_STR_MAX];
    int n;
    int64_t wide;
} small_cfg_t;

static const sl_cfg_field_t s_small[] = {
    SL_CFG_FIELD(small_cfg_t, level, "level", "info", SL_CFG_STR, "a short one"),
    SL_CFG_FIELD(small_cfg_t, path, "path", "", SL_CFG_STR, "a long one"),
    SL_CFG_RANGE(small_cfg_t, n, "n", "1", SL_CFG_INT, 0, 9, "a number"),
    SL_CFG_END,
};

/* Run sl_cfg_load with fd (1 or 2) sent to a file; the file's text goes to out. */
static sl_status_t s_load_capture(const sl_cfg_field_t *table, void *cfg, int argc, char **argv,
                                  int fd, char *out, size_t cap)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(fd == 1 ? stdout : stderr);
    int saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fd) >= 0);
    sl_status_t st = sl_cfg_load(table, cfg, argc, argv, NULL, NULL);
    fflush(fd == 1 ? stdout : stderr);
    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return st;
}

static void test_cfg_string_sizes(void **state)
{
    small_cfg_t cfg;
    char err[256], out[4096], path[SL_CFG_STR_MAX + 1];

    assert_int_equal(s_small[0].size, 8);
    assert_int_equal(s_small[1].size, SL_CFG_STR_MAX);
    memset(&cfg, 'x', sizeof(cfg));
    assert_int_equal(sl_cfg_defaults(s_small, &cfg), SL_OK);
    assert_string_equal(cfg.level, "info");

    /* size - 1 characters fit, exactly; size characters are refused and change nothing. */
    assert_int_equal(sl_cfg_set(s_small, &cfg, "level", "1234567", err, sizeof(err)), SL_OK);
    assert_string_equal(cfg.level, "1234567");
    assert_int_equal(sl_cfg_set(s_small, &cfg, "level", "12345678", err, sizeof(err)),
                     SL_ERR_INVALID);
    assert_string_equal(err, "--level: value too long (8 characters; at most 7)");
    assert_string_equal(cfg.level, "1234567");
    for (size_t i = 0; i < sizeof(cfg.after); i++) {
        assert_int_equal(cfg.before[i], 'x');
        assert_int_equal(cfg.after[i], 'x');
    }

    memset(path, 'p', SL_CFG_STR_MAX - 1);
    path[SL_CFG_STR_MAX - 1] = '\0';
    assert_int_equal(sl_cfg_set(s_small, &cfg, "path", path, err, sizeof(err)), SL_OK);
    assert_string_equal(cfg.path, path);
    path[SL_CFG_STR_MAX - 1] = 'p';
    path[SL_CFG_STR_MAX] = '\0';
    assert_int_equal(sl_cfg_set(s_small, &cfg, "path", path, err, sizeof(err)), SL_ERR_INVALID);
    assert_non_null(strstr(err, "at most 255)"));

    /* A flag and a variable are refused alike, each named in the message. */
    char *flag_long[] = {"prog", "--level=12345678", NULL};
    assert_int_equal(s_load_capture(s_small, &cfg, 2, flag_long, 2, out, sizeof(out)),
                     SL_ERR_INVALID);
    assert_string_equal(out, "prog: --level: value too long (8 characters; at most 7)\n");
    char *none[] = {"prog", NULL};
    setenv("SLUICE_LEVEL", "123456789", 1);
    assert_int_equal(s_load_capture(s_small, &cfg, 1, none, 2, out, sizeof(out)), SL_ERR_INVALID);
    assert_string_equal(out, "prog: SLUICE_LEVEL: value too long (9 characters; at most 7)\n");
    setenv("SLUICE_LEVEL", "1234567", 1);
    assert_int_equal(sl_cfg_load(s_small, &cfg, 1, none, NULL, NULL), SL_OK);
    assert_string_equal(cfg.level, "1234567");
    unsetenv("SLUICE_LEVEL");

    /* --help gives each string's limit. */
    char *help[] = {"prog", "--help", NULL};
    assert_int_equal(s_load_capture(s_small, &cfg, 2, help, 1, out, sizeof(out)), SL_ERR_CANCELED);
    assert_non_null(strstr(out, "env SLUICE_LEVEL, default 'info', at most 7 characters\n"));
    assert_non_null(strstr(out, "at most 255 characters\n"));
}

static void test_cfg_print_config(void **state)
{
    small_cfg_t cfg;
    char out[4096];
    char *argv[] = {"prog", "--print-config", "--level=warn", "--n", "3", NULL};
    assert_int_equal(s_load_capture(s_small, &cfg, 5, argv, 1, out, sizeof(out)), SL_ERR_CANCELED);
    assert_string_equal(out, "level = warn\npath = \nn = 3\n");
}

static void test_cfg_bad_rows(void **state)
{
    small_cfg_t cfg;
    /* The row's type must match its field; sizes come from the member. */
    const sl_cfg_field_t int_on_i64[] = {
        SL_CFG_FIELD(small_cfg_t, wide, "wide", "1", SL_CFG_INT, "an int row on an int64_t"),
        SL_CFG_END,
    };
    const sl_cfg_field_t i64_on_int[] = {
        SL_CFG_FIELD(small_cfg_t, n, "n", "1", SL_CFG_I64, "an int64 row on an int"),
        SL_CFG_END,
    };
    const sl_cfg_field_t no_size[] = {
        {"level", "", "a row written without the macros", offsetof(small_cfg_t, level), 0,
         SL_CFG_STR, 0, 0},
        SL_CFG_END,
    };
    const sl_cfg_field_t long_default[] = {
        SL_CFG_FIELD(small_cfg_t, level, "level", "12345678", SL_CFG_STR, "does not fit"),
        SL_CFG_END,
    };
    char out[512];
    char *none[] = {"prog", NULL};
    assert_int_equal(s_load_capture(int_on_i64, &cfg, 1, none, 2, out, sizeof(out)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(out, "internal error: --wide"));
    assert_int_equal(s_load_capture(i64_on_int, &cfg, 1, none, 2, out, sizeof(out)),
                     SL_ERR_INVALID);
    assert_int_equal(s_load_capture(no_size, &cfg, 1, none, 2, out, sizeof(out)), SL_ERR_INVALID);
    assert_int_equal(s_load_capture(long_default, &cfg, 1, none, 2, out, sizeof(out)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(out, "bad default: --level: value too long"));

    /* Merged tables keep each row's size. */
    const sl_cfg_part_t parts[] = {{s_table, 0}, {s_small, 64}};
    sl_cfg_field_t *merged = sl_cfg_merge(parts, 2);
    assert_non_null(merged);
    assert_int_equal(merged[0].size, SL_CFG_STR_MAX);
    assert_string_equal(merged[5].name, "level");
    assert_int_equal(merged[5].size, 8);
    assert_int_equal(merged[5].offset, 64 + offsetof(small_cfg_t, level));
    free(merged);
}

static void test_median(void **state)
{
    double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 2};
    assert_true(sl_median(odd, 3) == 3);
    assert_true(odd[0] == 1 && odd[2] == 5); /* sorted in place */
    assert_true(sl_median(even, 4) == 2.5);
    assert_true(sl_median(NULL, 0) == 0);
}

static void test_hist_quantiles(void **state)
{
    sl_hist_t *h = malloc(sizeof(*h));
    sl_hist_init(h);
    for (uint64_t v = 1; v <= 100000; v++)
        sl_hist_record(h, v);
    assert_int_equal(h->count, 100000);
    uint64_t p50 = sl_hist_quantile(h, 0.5), p99 = sl_hist_quantile(h, 0.99);
    assert_true(p50 >= 48500 && p50 <= 51600);
    assert_true(p99 >= 96000 && p99 <= 102000);
    assert_int_equal(sl_hist_quantile(h, 1.0), 100000);
    assert_int_equal(sl_hist_quantile(h, 0.0), 1);
    free(h);
}

static void test_map_churn(void **state)
{
    sl_map_t map;
    sl_rand_t r;
    enum { N = 20000 };
    static char present[N];
    sl_map_init(&map);
    sl_rand_seed(&r, 42);
    memset(present, 0, sizeof(present));
    for (int round = 0; round < 200000; round++) {
        uint64_t k = sl_rand_below(&r, N);
        if (present[k]) {
            assert_ptr_equal(sl_map_del(&map, k * 7919), (void *)(uintptr_t)(k + 1));
            present[k] = 0;
        } else {
            assert_int_equal(sl_map_put(&map, k * 7919, (void *)(uintptr_t)(k + 1)), SL_OK);
            present[k] = 1;
        }
    }
    size_t n = 0;
    for (uint64_t k = 0; k < N; k++) {
        void *v = sl_map_get(&map, k * 7919);
        if (present[k]) {
            assert_ptr_equal(v, (void *)(uintptr_t)(k + 1));
            n++;
        } else {
            assert_null(v);
        }
    }
    assert_int_equal(sl_map_count(&map), n);
    size_t it = 0, seen = 0;
    uint64_t key;
    void *val;
    while (sl_map_next(&map, &it, &key, &val))
        seen++;
    assert_int_equal(seen, n);
    sl_map_fini(&map);
}

static void test_hash_stable(void **state)
{
    assert_true(sl_hash_bytes("abc", 3, 0) == sl_hash_bytes("abc", 3, 0));
    assert_true(sl_hash_bytes("abc", 3, 0) != sl_hash_bytes("abd", 3, 0));
    assert_true(sl_hash_bytes("abc", 3, 0) != sl_hash_bytes("abc", 3, 1));
    assert_true(sl_hash_bytes("", 0, 0) != sl_hash_bytes("\0", 1, 0));
    assert_true(sl_hash_combine(1, 2) != sl_hash_combine(2, 1));
}

typedef struct {
    int v;
    sl_list_t link;
} item_t;

static void test_list(void **state)
{
    sl_list_t head, *pos, *tmp;
    item_t items[5];
    int sum = 0;
    sl_list_init(&head);
    for (int i = 0; i < 5; i++) {
        items[i].v = i;
        sl_list_push_back(&head, &items[i].link);
    }
    sl_list_del(&items[2].link);
    sl_list_for_each_safe(pos, tmp, &head) sum += SL_CONTAINER_OF(pos, item_t, link)->v;
    assert_int_equal(sum, 0 + 1 + 3 + 4);
    assert_int_equal(SL_CONTAINER_OF(sl_list_pop_front(&head), item_t, link)->v, 0);
    assert_false(sl_list_empty(&head));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cfg_precedence),   cmocka_unit_test(test_cfg_errors),
        cmocka_unit_test(test_cfg_string_sizes), cmocka_unit_test(test_cfg_print_config),
        cmocka_unit_test(test_cfg_bad_rows),     cmocka_unit_test(test_hist_quantiles),
        cmocka_unit_test(test_median),           cmocka_unit_test(test_map_churn),
        cmocka_unit_test(test_hash_stable),      cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
