/* The BUSY backoff schedule: windows per attempt, jitter, retry-after, cap, on a simulated clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/client.h>

#include <stdint.h>
#include <string.h>

#include "client/sl_client_cfg.h"
#include "common/sl_rand.h"

static void s_window(const sl_backoff_cfg_t *cfg, uint32_t attempt, uint32_t ra, uint32_t lo,
                     uint32_t hi)
{
    uint32_t l, h;
    sl_backoff_window(cfg, attempt, ra, &l, &h);
    assert_int_equal(l, lo);
    assert_int_equal(h, hi);
}

static void test_default_windows(void **state)
{
    sl_backoff_cfg_t cfg;
    sl_backoff_cfg_default(&cfg);
    s_window(&cfg, 0, 0, 1000, 1250);  /* about 1 s */
    s_window(&cfg, 1, 0, 2000, 4000);  /* then 2 to 4 s */
    s_window(&cfg, 2, 0, 4000, 8000);  /* then 4 to 8 s */
    s_window(&cfg, 3, 0, 8000, 10000); /* capped at 10 s */
    s_window(&cfg, 4, 0, 10000, 10000);
    s_window(&cfg, 5000, 0, 10000, 10000); /* no overflow for absurd attempts */
    assert_int_equal(cfg.max_retries, 5);
}

/* Many draws per attempt stay inside the window and cover it. */
static void test_draws_cover_window(void **state)
{
    sl_backoff_cfg_t cfg;
    sl_rand_t rng;
    sl_backoff_cfg_default(&cfg);
    sl_rand_seed(&rng, 42);
    for (uint32_t attempt = 0; attempt < 6; attempt++) {
        uint32_t lo, hi, min = UINT32_MAX, max = 0;
        double sum = 0;
        sl_backoff_window(&cfg, attempt, 0, &lo, &hi);
        for (int i = 0; i < 20000; i++) {
            uint32_t d = sl_backoff_delay_ms(&cfg, attempt, 0, sl_rand_double(&rng));
            assert_true(d >= lo && d <= hi);
            min = d < min ? d : min;
            max = d > max ? d : max;
            sum += d;
        }
        uint32_t slack = (hi - lo) / 50 + 1;
        assert_true(min <= lo + slack);
        assert_true(max + slack >= hi);
        double mean = sum / 20000, mid = (lo + hi) / 2.0;
        assert_true(mean > mid - (hi - lo) * 0.05 - 1 && mean < mid + (hi - lo) * 0.05 + 1);
    }
    assert_int_equal(sl_backoff_delay_ms(&cfg, 1, 0, 0.0), 2000);
    assert_int_equal(sl_backoff_delay_ms(&cfg, 1, 0, 0.9999999), 4000);
    assert_int_equal(sl_backoff_delay_ms(&cfg, 1, 0, 7.0), 4000); /* out-of-range draws clamp */
    assert_int_equal(sl_backoff_delay_ms(&cfg, 1, 0, -1.0), 2000);
}

static void test_retry_after_honoured(void **state)
{
    sl_backoff_cfg_t cfg;
    sl_rand_t rng;
    sl_backoff_cfg_default(&cfg);
    sl_rand_seed(&rng, 7);
    s_window(&cfg, 0, 30000, 30000, 45000);  /* the scheduler's floor, with jitter above */
    s_window(&cfg, 2, 500, 4000, 8000);      /* a small retry-after does not shorten backoff */
    s_window(&cfg, 0, 100000, 60000, 60000); /* bounded by retry-after-max-ms */
    s_window(&cfg, 3, 9000, 9000, 13500);
    for (int i = 0; i < 10000; i++) {
        uint32_t d = sl_backoff_delay_ms(&cfg, 0, 3000, sl_rand_double(&rng));
        assert_true(d >= 3000 && d <= 4500);
    }
}

static void test_custom_cfg(void **state)
{
    sl_backoff_cfg_t cfg;
    sl_backoff_cfg_default(&cfg);
    cfg.base_ms = 10;
    cfg.cap_ms = 50;
    cfg.jitter = 0;
    cfg.first_jitter = 0;
    s_window(&cfg, 0, 0, 10, 10);
    s_window(&cfg, 1, 0, 20, 20);
    s_window(&cfg, 3, 0, 50, 50);
    cfg.multiplier = 0.5; /* below 1 is treated as 1: delays never shrink */
    s_window(&cfg, 4, 0, 10, 10);
}

/*
 * Simulated clock: 1000 clients refused at t = 0 retry until the bounded
 * number of retries is spent. Each gives up within the sum of the windows,
 * and the retries of one round spread over their window instead of landing
 * together.
 */
static void test_simulated_clients(void **state)
{
    enum { CLIENTS = 1000 };
    sl_backoff_cfg_t cfg;
    sl_rand_t rng;
    sl_backoff_cfg_default(&cfg);
    sl_rand_seed(&rng, 2024);
    uint64_t lo_total = 0, hi_total = 0;
    for (int a = 0; a < cfg.max_retries; a++) {
        uint32_t lo, hi;
        sl_backoff_window(&cfg, (uint32_t)a, 0, &lo, &hi);
        lo_total += lo;
        hi_total += hi;
    }
    assert_int_equal(lo_total, 1000 + 2000 + 4000 + 8000 + 10000);
    assert_int_equal(hi_total, 1250 + 4000 + 8000 + 10000 + 10000);
    static uint64_t clock_ms[CLIENTS];
    memset(clock_ms, 0, sizeof(clock_ms));
    for (int a = 0; a < cfg.max_retries; a++) {
        unsigned bins[100] = {0}; /* retry times of this round, in 100 ms bins */
        uint64_t first = UINT64_MAX;
        for (int c = 0; c < CLIENTS; c++) {
            clock_ms[c] += sl_backoff_delay_ms(&cfg, (uint32_t)a, 0, sl_rand_double(&rng));
            first = clock_ms[c] < first ? clock_ms[c] : first;
        }
        for (int c = 0; c < CLIENTS; c++) {
            uint64_t bin = (clock_ms[c] - first) / 100;
            bins[bin < 100 ? bin : 99]++;
        }
        unsigned worst = 0;
        for (int b = 0; b < 100; b++)
            worst = bins[b] > worst ? bins[b] : worst;
        if (a < 3)
            assert_true(worst < CLIENTS / 2); /* no lock-step */
    }
    for (int c = 0; c < CLIENTS; c++)
        assert_true(clock_ms[c] >= lo_total && clock_ms[c] <= hi_total);
}

/* The library's C defaults and the knob table's text defaults are two
 * sources of truth; they must agree field for field. */
typedef struct {
    sl_client_cfg_t client; /* the rows' target */
} s_table_cfg_t;

static const sl_cfg_field_t s_rows[] = {
    SL_CLIENT_CFG_ROWS(s_table_cfg_t, client, "0"),
    SL_CFG_END,
};

static void test_defaults_match_table(void **state)
{
    s_table_cfg_t from_table;
    sl_client_cfg_t from_code;
    memset(&from_table, 0, sizeof(from_table));
    sl_client_cfg_default(&from_code);
    assert_int_equal(sl_cfg_defaults(s_rows, &from_table), SL_OK);
    assert_string_equal(from_table.client.endpoint, from_code.endpoint);
    assert_int_equal(from_table.client.ack_timeout_ms, from_code.ack_timeout_ms);
    assert_int_equal(from_table.client.ack_retries, from_code.ack_retries);
    assert_int_equal(from_table.client.max_inflight, from_code.max_inflight);
    assert_int_equal(from_table.client.sndhwm, from_code.sndhwm);
    assert_int_equal(from_table.client.result_timeout_ms, from_code.result_timeout_ms);
    assert_int_equal(from_table.client.wait_timeout_ms, from_code.wait_timeout_ms);
    assert_int_equal(from_table.client.linger_ms, from_code.linger_ms);
    assert_int_equal(from_table.client.seed, from_code.seed);
    assert_int_equal(from_table.client.backoff.max_retries, from_code.backoff.max_retries);
    assert_int_equal(from_table.client.backoff.base_ms, from_code.backoff.base_ms);
    assert_int_equal(from_table.client.backoff.cap_ms, from_code.backoff.cap_ms);
    assert_true(from_table.client.backoff.multiplier == from_code.backoff.multiplier);
    assert_true(from_table.client.backoff.jitter == from_code.backoff.jitter);
    assert_true(from_table.client.backoff.first_jitter == from_code.backoff.first_jitter);
    assert_true(from_table.client.backoff.retry_after_jitter ==
                from_code.backoff.retry_after_jitter);
    assert_int_equal(from_table.client.backoff.retry_after_max_ms,
                     from_code.backoff.retry_after_max_ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_table), cmocka_unit_test(test_default_windows),
        cmocka_unit_test(test_draws_cover_window),   cmocka_unit_test(test_retry_after_honoured),
        cmocka_unit_test(test_custom_cfg),           cmocka_unit_test(test_simulated_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
