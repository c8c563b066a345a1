/* The trace reader: the real trace files, slicing, scaling, Poisson arrivals, malformed lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sl_trace.h"
#include "tests/support/sl_test.h"

static const char *s_dir(void)
{
    const char *d = getenv("SLUICE_TRACE_DIR");
    return d ? d : "data/traces";
}

static sl_trace_t *s_load(const char *name)
{
    sl_trace_t *t = NULL;
    assert_int_equal(sl_trace_load(name, s_dir(), SL_TRACE_AUTO, &t), SL_OK);
    assert_non_null(t);
    assert_int_equal(t->malformed, 0);
    for (size_t i = 1; i < t->n; i++)
        assert_true(t->reqs[i].t_us >= t->reqs[i - 1].t_us);
    assert_int_equal(t->reqs[0].t_us, 0);
    return t;
}

static void s_means(const sl_trace_t *t, double *in, double *out)
{
    double a = 0, b = 0;
    for (size_t i = 0; i < t->n; i++) {
        a += t->reqs[i].input_len;
        b += t->reqs[i].output_len;
    }
    *in = a / (double)t->n;
    *out = b / (double)t->n;
}

static void test_mooncake_files(void **state)
{
    double in, out;
    sl_trace_t *t = s_load("mooncake-conversation");
    assert_int_equal(t->n, 12031);
    assert_int_equal(t->block_tokens, 512);
    s_means(t, &in, &out);
    assert_true(fabs(in - 12035) < 1.0);
    assert_true(fabs(out - 343) < 1.0);
    assert_int_equal(t->reqs[0].input_len, 6758);
    assert_int_equal(t->reqs[0].output_len, 500);
    assert_int_equal(t->reqs[0].n_hashes, 14);
    assert_int_equal(t->reqs[0].hashes[13], 13);
    for (size_t i = 0; i < t->n; i++)
        assert_true(t->reqs[i].n_hashes == (t->reqs[i].input_len + 511) / 512);
    assert_true(t->reqs[t->n - 1].t_us > 3000LL * 1000000 &&
                t->reqs[t->n - 1].t_us <= 3600LL * 1000000);
    sl_trace_destroy(&t);
    assert_null(t);

    t = s_load("mooncake-synthetic");
    assert_int_equal(t->n, 3993);
    s_means(t, &in, &out);
    assert_true(fabs(in - 15325) < 1.0);
    assert_true(fabs(out - 149) < 1.0);
    sl_trace_destroy(&t);
}

static void test_azure_files(void **state)
{
    sl_trace_t *t = s_load("azure-code");
    assert_int_equal(t->n, 8819);
    assert_int_equal(t->block_tokens, 0);
    assert_int_equal(t->reqs[0].input_len, 4808);
    assert_int_equal(t->reqs[0].output_len, 10);
    assert_null(t->reqs[0].hashes);
    assert_int_equal(t->reqs[1].t_us, 52000); /* 18:17:04.0319600 - 18:17:03.9799600 */
    /* The last request comes 3435.948056 s after the first. */
    assert_int_equal(t->reqs[t->n - 1].t_us, 3435948056LL);
    sl_trace_destroy(&t);
    t = s_load("azure-conv");
    assert_int_equal(t->n, 19366);
    sl_trace_destroy(&t);
    /* A file path works as a name too. */
    char path[1024];
    assert_int_equal(sl_trace_path("azure-code", s_dir(), path, sizeof(path)), SL_OK);
    t = s_load(path);
    assert_int_equal(t->n, 8819);
    sl_trace_destroy(&t);
    assert_int_equal(sl_trace_path("azure-code", s_dir(), path, 8), SL_ERR_OVERFLOW);
    sl_test_expect_error("cannot open /nonexistent/trace.csv");
    assert_int_equal(sl_trace_load("/nonexistent/trace.csv", NULL, SL_TRACE_AUTO, &t), SL_ERR_IO);
    assert_null(t);
}

static void test_slice_and_scale(void **state)
{
    sl_trace_t *t = s_load("azure-conv"), *s = NULL;
    sl_trace_opts_t o = {.start_s = 60, .duration_s = 60};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    size_t expect = 0;
    for (size_t i = 0; i < t->n; i++)
        expect += t->reqs[i].t_us >= 60000000 && t->reqs[i].t_us < 120000000;
    assert_int_equal(s->n, expect);
    assert_true(s->n > 100);
    for (size_t i = 0; i < s->n; i++)
        assert_true(s->reqs[i].t_us >= 0 && s->reqs[i].t_us < 60000000);
    sl_trace_destroy(&s);

    o = (sl_trace_opts_t){.count = 100, .speedup = 2};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, 100);
    for (size_t i = 0; i < 100; i++)
        assert_true(llabs(s->reqs[i].t_us - t->reqs[i].t_us / 2) <= 1);
    sl_trace_destroy(&s);

    o = (sl_trace_opts_t){.rate = 25, .count = 2000};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, 2000);
    assert_true(fabs(sl_trace_rate(s) - 25) < 0.01);
    sl_trace_destroy(&s);

    o = (sl_trace_opts_t){.start_s = 1e9};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, 0);
    sl_trace_destroy(&s);
    o = (sl_trace_opts_t){.speedup = -1};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_ERR_INVALID);
    sl_trace_destroy(&t);
}

/* tile: a count beyond the slice replays it, copy after copy, in order,
 * each copy's hashes its own (no prefix shared between copies, the same
 * sharing within one); without tile the slice's end is the end. */
static void test_tile(void **state)
{
    sl_trace_t *t = s_load("mooncake-synthetic"), *s = NULL;
    size_t n = t->n, want = 2 * n + n / 2;
    sl_trace_opts_t o = {.count = want, .rate = 40, .tile = true};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, want);
    assert_true(fabs(sl_trace_rate(s) - 40) < 0.5);
    for (size_t i = 1; i < s->n; i++)
        assert_true(s->reqs[i].t_us >= s->reqs[i - 1].t_us);
    size_t same0 = 0, same1 = 0;
    for (size_t i = 0; i < n; i++) {
        const sl_trace_req_t *a = &s->reqs[i], *b = &s->reqs[n + i], *c = &t->reqs[i];
        assert_int_equal(a->input_len, c->input_len);
        assert_int_equal(b->input_len, c->input_len);
        assert_int_equal(b->output_len, c->output_len);
        assert_int_equal(b->n_hashes, c->n_hashes);
        for (size_t h = 0; h < c->n_hashes; h++) {
            same0 += a->hashes[h] == c->hashes[h];
            same1 += b->hashes[h] == c->hashes[h];
        }
        /* within a copy, two requests share a prefix iff they did */
        if (i && c->n_hashes && t->reqs[i - 1].n_hashes)
            assert_int_equal(b->hashes[0] == s->reqs[n + i - 1].hashes[0],
                             c->hashes[0] == t->reqs[i - 1].hashes[0]);
    }
    assert_true(same0 > 0);     /* the first copy is the trace */
    assert_int_equal(same1, 0); /* the second has hashes of its own */
    sl_trace_destroy(&s);
    o.tile = false;
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, n);
    sl_trace_destroy(&s);
    sl_trace_destroy(&t);
}

static void test_poisson(void **state)
{
    sl_trace_t *t = s_load("mooncake-conversation"), *s = NULL, *s2 = NULL;
    sl_trace_opts_t o = {.poisson = true, .rate = 50, .count = 20000, .seed = 9};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, 20000);
    assert_true(fabs(sl_trace_rate(s) - 50) < 2.5);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < t->n; i++) {
        lo = t->reqs[i].input_len < lo ? t->reqs[i].input_len : lo;
        hi = t->reqs[i].input_len > hi ? t->reqs[i].input_len : hi;
    }
    for (size_t i = 0; i < s->n; i++) {
        assert_true(s->reqs[i].input_len >= lo && s->reqs[i].input_len <= hi);
        assert_int_equal(s->reqs[i].n_hashes, (s->reqs[i].input_len + 511) / 512);
        if (i)
            assert_true(s->reqs[i].t_us >= s->reqs[i - 1].t_us);
    }
    /* Same seed, same schedule. */
    assert_int_equal(sl_trace_schedule(t, &o, &s2), SL_OK);
    assert_int_equal(s2->reqs[777].t_us, s->reqs[777].t_us);
    assert_int_equal(s2->reqs[777].input_len, s->reqs[777].input_len);
    sl_trace_destroy(&s2);
    sl_trace_destroy(&s);
    o = (sl_trace_opts_t){.poisson = true, .rate = 10, .duration_s = 30};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_OK);
    assert_int_equal(s->n, 300);
    sl_trace_destroy(&s);
    o = (sl_trace_opts_t){.poisson = true};
    assert_int_equal(sl_trace_schedule(t, &o, &s), SL_ERR_INVALID);
    sl_trace_destroy(&t);
}

static void test_malformed_mooncake(void **state)
{
    static const char text[] =
        "{\"timestamp\": 5, \"input_length\": 600, \"output_length\": 2, \"hash_ids\": [1, 2]}\n"
        "\n"
        "   \r\n"
        "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 3}\n"
        "not json at all\n"
        "{\"timestamp\": 2, \"input_length\": 10}\n"                           /* missing key */
        "{\"timestamp\": -1, \"input_length\": 10, \"output_length\": 3}\n"    /* negative */
        "{\"timestamp\": 3, \"input_length\": 1.5, \"output_length\": 3}\n"    /* not integral */
        "{\"timestamp\": 3, \"input_length\": \"10\", \"output_length\": 3}\n" /* a string */
        "{\"timestamp\": 3, \"input_length\": 10, \"output_length\": 3} x\n"   /* trailing junk */
        "{\"timestamp\": 3, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1, -2]}\n"
        "{\"timestamp\": 3, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1, 2\n"
        "{\"timestamp\": 3, \"input_length\": 99999999999, \"output_length\": 3}\n"
        "{\"timestamp\": 3, \"input_length\": 0, \"output_length\": 3}\n"
        "{\"timestamp\": 3, \"timestamp\": 4, \"input_length\": 5, \"output_length\": 3}\n"
        "{}\n"
        "{\"timestamp\": 4, \"input_length\": 7, \"output_length\": 1, \"note\": [\"a\", null], "
        "\"x\": true}\n"
        "{\"timestamp\": 9, \"input_length\": 8, \"output_length\": 0, \"hash_ids\": []}";
    sl_trace_t *t = NULL;
    assert_int_equal(sl_trace_parse(text, sizeof(text) - 1, SL_TRACE_AUTO, "mem.jsonl", &t), SL_OK);
    assert_int_equal(t->n, 4);
    assert_int_equal(t->malformed, 12);
    /* Sorted and rebased: 1, 4, 5, 9 ms become 0, 3, 4, 8 ms. */
    assert_int_equal(t->reqs[0].t_us, 0);
    assert_int_equal(t->reqs[0].input_len, 10);
    assert_int_equal(t->reqs[2].t_us, 4000);
    assert_int_equal(t->reqs[2].n_hashes, 2);
    assert_int_equal(t->reqs[2].hashes[1], 2);
    assert_int_equal(t->reqs[3].n_hashes, 0);
    assert_int_equal(t->n_hash_pool, 2); /* hashes of rejected lines were taken back */
    sl_trace_destroy(&t);

    /* Embedded NUL and binary garbage. */
    static const char bin[] = "{\"timestamp\": 1, \"input_length\": 2, \"output_length\": 3}\n"
                              "{\"timestamp\": 1,\0\"input_length\": 2}\n\xff\xfe\x01\n";
    assert_int_equal(sl_trace_parse(bin, sizeof(bin) - 1, SL_TRACE_MOONCAKE, "bin", &t), SL_OK);
    assert_int_equal(t->n, 1);
    assert_int_equal(t->malformed, 2);
    sl_trace_destroy(&t);
    assert_int_equal(sl_trace_parse("", 0, SL_TRACE_AUTO, "empty", &t), SL_OK);
    assert_int_equal(t->n, 0);
    sl_trace_destroy(&t);
}

static void test_malformed_azure(void **state)
{
    static const char text[] = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                               "2023-11-16 18:17:03.9799600,4808,10\n"
                               "2023-11-16 18:17:04,100,1\r\n"
                               "2023-11-16 18:17:0x.1,100,1\n"
                               "2023-13-16 18:17:04.1,100,1\n"
                               "2023-11-16 18:17:04.1,100\n"
                               "2023-11-16 18:17:04.1,abc,1\n"
                               "2023-11-16 18:17:04.1,100,1,7\n"
                               "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                               "2023-11-17 00:00:00.5,1,2\n";
    sl_trace_t *t = NULL;
    assert_int_equal(sl_trace_parse(text, sizeof(text) - 1, SL_TRACE_AZURE, "mem", &t), SL_OK);
    assert_int_equal(t->n, 3);
    assert_int_equal(t->malformed, 6);
    assert_int_equal(t->reqs[1].t_us, 20040);
    /* Across midnight: 18:17:03.97996 -> 00:00:00.5 next day. */
    assert_int_equal(t->reqs[2].t_us, (5 * 3600 + 42 * 60 + 56) * 1000000LL + 520040);
    sl_trace_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mooncake_files),  cmocka_unit_test(test_azure_files),
        cmocka_unit_test(test_slice_and_scale), cmocka_unit_test(test_tile),
        cmocka_unit_test(test_poisson),         cmocka_unit_test(test_malformed_mooncake),
        cmocka_unit_test(test_malformed_azure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
