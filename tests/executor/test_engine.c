/* Unit tests of the executor engine and the sim backend, on a simulated clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/sl_rand.h"
#include "executor/sl_engine.h"
#include "executor/sl_report.h"
#include "executor/sl_sim_cfg.h"
#include "executor/sl_step_cost.h"
#include "proto/sl_wire.h"

typedef struct {
    int done;
    int canceled;
    int chunks;
    int stored;
    int evicted;
    int failed;
    char error[200]; /* the last failed job's error text */
    sl_time_t first_token[256];
} rec_t;

typedef struct {
    sl_engine_job_t ej;
    uint32_t out[64];
} job_t;

static void s_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *err)
{
    rec_t *r = arg;
    if (how == SL_ENGINE_CANCELED)
        r->canceled++;
    else
        r->done++;
    if (how == SL_ENGINE_FAILED) {
        r->failed++;
        snprintf(r->error, sizeof(r->error), "%s", err ? err : "");
    }
    if (ej->seq.id < 256)
        r->first_token[ej->seq.id] = ej->first_token;
}

static void s_tokens(void *arg, sl_engine_job_t *ej, uint32_t from, uint32_t n)
{
    ((rec_t *)arg)->chunks++;
}

static void s_stored(void *arg, uint64_t h)
{
    ((rec_t *)arg)->stored++;
}

static void s_evicted(void *arg, uint64_t h)
{
    ((rec_t *)arg)->evicted++;
}

static sl_sim_cfg_t s_sim;

/* An engine over backend, its records in *r; kv_blocks: the sim's KV pool
 * (0 = its default); run_steps and the tokens callback as given. */
static sl_engine_t *s_engine_with(rec_t *r, const char *backend, int64_t kv_blocks, int run_steps,
                                  void (*tokens)(void *, sl_engine_job_t *, uint32_t, uint32_t))
{
    sl_engine_cfg_t cfg;
    sl_engine_t *e = NULL;
    memset(r, 0, sizeof(*r));
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    cfg.run_steps = run_steps;
    sl_cfg_defaults(sl_sim_cfg_fields, &s_sim);
    if (kv_blocks)
        s_sim.kv_capacity_blocks = kv_blocks;
    sl_backend_params_t p = {.kv_block_tokens = 16,
                             .sim = &s_sim,
                             .kv_cb = {.stored = s_stored, .evicted = s_evicted, .arg = r}};
    sl_engine_cb_t cb = {.tokens = tokens, .done = s_done, .arg = r};
    assert_int_equal(sl_engine_create(&cfg, sl_backend_find(backend), &p, &cb, &e), SL_OK);
    return e;
}

static sl_engine_t *s_engine(rec_t *r, const char *backend, int64_t kv_blocks)
{
    return s_engine_with(r, backend, kv_blocks, 1, s_tokens);
}

static job_t *s_job(uint64_t id, int interactive, uint32_t prompt, uint32_t out)
{
    job_t *j = calloc(1, sizeof(*j));
    j->ej.seq.id = id;
    j->ej.seq.interactive = interactive;
    j->ej.seq.prompt_len = prompt;
    j->ej.seq.max_new_tokens = out;
    j->ej.seq.out = j->out;
    return j;
}

/* Run the engine until empty; returns the end time. */
static sl_time_t s_drain(sl_engine_t *e, sl_time_t now)
{
    while (sl_engine_jobs(e) > 0) {
        sl_time_t next = sl_engine_advance(e, now);
        if (next != INT64_MAX && next > now)
            now = next; /* INT64_MAX: nothing more to wait for */
    }
    return now;
}

/* Held jobs (the data plane): jobs awaiting a peer's KV are admitted and
 * held at once, beyond the batch; taken in, they join the batch only as
 * places free (never more than max_batch run); a paused job resumes. */
static int s_held_n;
static void s_held(void *arg, sl_engine_job_t *ej, sl_engine_held_t why)
{
    (void)arg, (void)ej, (void)why;
    s_held_n++;
}

static void test_held_jobs(void **state)
{
    rec_t r;
    sl_engine_cfg_t cfg;
    sl_engine_t *e = NULL;
    memset(&r, 0, sizeof(r));
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    cfg.max_batch = 2;
    sl_cfg_defaults(sl_sim_cfg_fields, &s_sim);
    sl_backend_params_t p = {.kv_block_tokens = 16, .sim = &s_sim};
    sl_engine_cb_t cb = {.tokens = s_tokens, .done = s_done, .held = s_held, .arg = &r};
    assert_int_equal(sl_engine_create(&cfg, sl_backend_find("sim"), &p, &cb, &e), SL_OK);
    s_held_n = 0;
    job_t *j[5];
    for (int i = 0; i < 5; i++) {
        j[i] = s_job((uint64_t)i, 1, 64, 8);
        j[i]->ej.kv_mode = SL_KV_AWAIT;
        sl_engine_submit(e, &j[i]->ej, 0);
    }
    assert_int_equal(s_held_n, 5); /* all reserved at once */
    for (int i = 0; i < 5; i++) {
        j[i]->out[0] = 7;
        assert_int_equal(sl_engine_import(e, &j[i]->ej, 1, 0, 0, SL_MS(1)), SL_OK);
    }
    sl_engine_load_t load;
    sl_engine_load(e, SL_MS(1), &load);
    assert_int_equal(load.running, 2); /* the rest wait for a place */
    assert_int_equal(load.waiting, 3);
    s_drain(e, SL_MS(1));
    assert_int_equal(r.done, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(j[i]->ej.seq.n_out, 8);
        assert_int_equal(j[i]->out[0], 7); /* the peer's first token stays */
    }
    /* a running job paused between steps is held, then resumes */
    job_t *m = s_job(9, 1, 64, 40);
    sl_engine_submit(e, &m->ej, SL_MS(1000));
    sl_time_t now = SL_MS(1000);
    while (m->ej.seq.n_out < 4) {
        sl_time_t next = sl_engine_advance(e, now);
        now = next != INT64_MAX && next > now ? next : now + SL_MS(1);
    }
    s_held_n = 0;
    assert_int_equal(sl_engine_pause(e, 9, now), SL_OK);
    sl_time_t next = sl_engine_advance(e, now); /* the step in flight ends: held */
    now = next != INT64_MAX && next > now ? next : now;
    assert_int_equal(s_held_n, 1);
    assert_true(m->ej.held);
    assert_int_equal(sl_engine_resume(e, &m->ej, now), SL_OK);
    s_drain(e, now);
    assert_int_equal(m->ej.seq.n_out, 40);
    sl_engine_destroy(&e);
    for (int i = 0; i < 5; i++)
        free(j[i]);
    free(m);
}

static void test_batch_waits_50ms(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *jobs[10];
    for (int i = 0; i < 10; i++) {
        jobs[i] = s_job((uint64_t)i, 0, 100, 4);
        sl_engine_submit(e, &jobs[i]->ej, 0);
    }
    sl_time_t next = sl_engine_advance(e, 0);
    assert_int_equal(next, SL_MS(50)); /* a partial batch waits for 50 ms */
    assert_int_equal(sl_engine_advance(e, SL_MS(49)), SL_MS(50));
    sl_time_t step_end = sl_engine_advance(e, SL_MS(50));
    assert_true(step_end > SL_MS(50)); /* the batch started */
    s_drain(e, step_end);
    assert_int_equal(r.done, 10);
    for (int i = 0; i < 10; i++) {
        assert_true(r.first_token[i] > SL_MS(50));
        free(jobs[i]);
    }
    sl_engine_destroy(&e);
}

static void test_full_batch_starts_at_once(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *jobs[40];
    for (int i = 0; i < 40; i++) {
        jobs[i] = s_job((uint64_t)i, 0, 100, 4);
        sl_engine_submit(e, &jobs[i]->ej, 0);
    }
    sl_engine_advance(e, 0);
    sl_engine_load_t load;
    sl_engine_load(e, 0, &load);
    assert_int_equal(load.running, 32); /* at most 32 run */
    assert_int_equal(load.waiting, 8);
    s_drain(e, 0);
    assert_int_equal(r.done, 40);
    for (int i = 0; i < 40; i++)
        free(jobs[i]);
    sl_engine_destroy(&e);
}

static void test_interactive_joins_running_batch(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *a = s_job(1, 1, 100, 50), *b = s_job(2, 1, 100, 5), *c = s_job(3, 0, 100, 5);
    sl_engine_submit(e, &a->ej, 0);
    sl_time_t t = sl_engine_advance(e, 0); /* a starts at once */
    assert_true(t > 0);
    sl_engine_submit(e, &b->ej, SL_US(10));
    sl_engine_submit(e, &c->ej, SL_US(10));
    t = sl_engine_advance(e, t); /* step boundary: b joins, c (batch) waits */
    sl_engine_load_t load;
    sl_engine_load(e, t, &load);
    assert_int_equal(load.running, 2);
    assert_int_equal(load.waiting, 1);
    s_drain(e, t);
    assert_true(r.first_token[2] < SL_MS(50));
    assert_true(r.first_token[3] >= SL_MS(50) + SL_US(10));
    free(a);
    free(b);
    free(c);
    sl_engine_destroy(&e);
}

static void test_sim_costs(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *a = s_job(1, 1, 1000, 3);
    sl_engine_submit(e, &a->ej, 0);
    /* prefill of 1000 tokens: base + 29 us x 1000 + attention term */
    double pre = s_sim.prefill_base_us + s_sim.prefill_us_per_token * 1000 +
                 s_sim.prefill_us_per_token_ctx * 1000 * 500;
    sl_time_t t = sl_engine_advance(e, 0);
    assert_true(llabs(t - (sl_time_t)(pre * 1000)) < 1000);
    /* decode step of one sequence with 1001 tokens of context */
    double dec =
        s_sim.decode_base_us + s_sim.decode_us_per_seq + s_sim.decode_us_per_kv_token * 1001;
    sl_time_t t2 = sl_engine_advance(e, t);
    assert_true(llabs(t2 - t - (sl_time_t)(dec * 1000)) < 1000);
    s_drain(e, t2);
    assert_int_equal(a->ej.seq.n_out, 3);
    assert_int_equal(r.first_token[1], t);
    free(a);
    sl_engine_destroy(&e);
}

static void test_prefix_cache(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 100); /* 1600 tokens of KV */
    uint64_t h1[2] = {11, 12}, h2[2] = {11, 13}, h3[3] = {21, 22, 23};
    job_t *a = s_job(1, 1, 1024, 2), *b = s_job(2, 1, 1024, 2), *c = s_job(3, 1, 1100, 2);
    a->ej.seq.block_hashes = h1;
    a->ej.seq.n_block_hashes = 2;
    a->ej.seq.hash_block_tokens = 512;
    b->ej.seq.block_hashes = h2;
    b->ej.seq.n_block_hashes = 2;
    b->ej.seq.hash_block_tokens = 512;
    c->ej.seq.block_hashes = h3;
    c->ej.seq.n_block_hashes = 2; /* two full blocks of 512 */
    c->ej.seq.hash_block_tokens = 512;
    sl_engine_submit(e, &a->ej, 0);
    sl_time_t t = s_drain(e, 0);
    assert_int_equal(a->ej.seq.cached_tokens, 0);
    assert_int_equal(r.stored, 2);
    sl_engine_submit(e, &b->ej, t);
    t = s_drain(e, t);
    assert_int_equal(b->ej.seq.cached_tokens, 512); /* first block shared */
    assert_int_equal(r.stored, 3);
    sl_engine_submit(e, &c->ej, t);
    s_drain(e, t);
    assert_true(r.evicted > 0); /* capacity forces LRU eviction */
    free(a);
    free(b);
    free(c);
    sl_engine_destroy(&e);
}

static void test_cancel_and_null(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "null", 0);
    job_t *a = s_job(1, 0, 10, 8), *b = s_job(2, 1, 10, 8);
    sl_engine_submit(e, &a->ej, 0);
    sl_engine_submit(e, &b->ej, 0);
    assert_int_equal(sl_engine_cancel(e, 1, 0), SL_OK);
    assert_int_equal(sl_engine_cancel(e, 99, 0), SL_ERR_NOT_FOUND);
    s_drain(e, 0);
    assert_int_equal(r.canceled, 1);
    assert_int_equal(r.done, 1);
    assert_int_equal(b->ej.seq.n_out, 8);
    free(a);
    free(b);
    sl_engine_destroy(&e);
}

/* Chunked prefill: a long prompt is computed step-tokens at a time, so a
 * sequence decoding beside it never waits for more than one chunk, its
 * first token comes after the last chunk, the chunks cost what one
 * whole-prompt step would (plus a step overhead each), and the time from
 * dispatch to the start of its first step is its wait. */
static void test_chunked_prefill(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *d = s_job(1, 1, 100, 40); /* decoding when the long one comes */
    job_t *l = s_job(2, 1, 9000, 2); /* 9000 tokens: 5 chunks of <= 2048 */
    sl_engine_submit(e, &d->ej, 0);
    sl_time_t now = sl_engine_advance(e, 0); /* d's prefill */
    now = sl_engine_advance(e, now);         /* d's first decode step */
    sl_time_t arrived = now - SL_MS(1);
    sl_engine_submit(e, &l->ej, arrived);
    double longest = 0;
    int steps = 0;
    double total = 0;
    while (!l->ej.first_token) {
        sl_time_t next = sl_engine_advance(e, now);
        if (next > now && l->ej.has_started && !l->ej.first_token) {
            double step = (double)(next - now);
            longest = step > longest ? step : longest;
            total += step;
            steps++;
        }
        now = next;
    }
    /* The wait ended when its first chunk's step began. */
    assert_true(l->ej.has_started);
    assert_true(l->ej.started >= arrived && l->ej.started < l->ej.first_token);
    assert_int_equal(steps, 5);
    /* No step is longer than a 2048-token chunk at the most context plus a
     * decode step: what the decoding sequence waits at worst per token. */
    double chunk = s_sim.prefill_base_us + s_sim.prefill_us_per_token * 2048 +
                   s_sim.prefill_us_per_token_ctx * 2048 * (9000.0 - 1024) + s_sim.decode_base_us +
                   s_sim.decode_us_per_seq + s_sim.decode_us_per_kv_token * 200;
    assert_true(longest <= chunk * 1000);
    /* The chunks add up to the whole prompt's compute: per-token and
     * attention terms are exact, plus one step overhead per chunk and the
     * decode of the other sequence in each. */
    double whole = s_sim.prefill_us_per_token * 9000 + s_sim.prefill_us_per_token_ctx * 9000 * 4500;
    double over = 5 * (s_sim.prefill_base_us + s_sim.decode_base_us + s_sim.decode_us_per_seq +
                       s_sim.decode_us_per_kv_token * 200);
    assert_true(total >= whole * 1000 && total <= (whole + over) * 1000);
    s_drain(e, now);
    assert_int_equal(r.done, 2);
    free(d);
    free(l);
    sl_engine_destroy(&e);
}

/* The engine fits its steps' cost from their make-up and durations, and
 * reports the fit with its load once it has seen enough of both kinds of
 * step: on the sim backend (a law linear in the same features) it finds
 * the backend's own coefficients. */
static void test_step_cost_fit(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    sl_engine_load_t load;
    sl_engine_load(e, 0, &load);
    assert_false(load.has_step_cost); /* nothing seen yet */
    sl_rand_t rnd;
    sl_rand_seed(&rnd, 3);
    job_t *jobs[200];
    sl_time_t now = 0;
    for (int i = 0; i < 200; i++) {
        jobs[i] = s_job((uint64_t)i + 1, 1, 50 + (uint32_t)sl_rand_below(&rnd, 6000),
                        1 + (uint32_t)sl_rand_below(&rnd, 60));
        sl_engine_submit(e, &jobs[i]->ej, now);
        for (int k = 0; k < 8; k++) { /* a few steps between arrivals */
            sl_time_t next = sl_engine_advance(e, now);
            if (next != INT64_MAX && next > now)
                now = next;
        }
    }
    now = s_drain(e, now);
    sl_engine_load(e, now, &load);
    assert_true(load.has_step_cost);
    const double want[SL_STEP_COST_N] = {
        [SL_SC_PREFILL_BASE] = s_sim.prefill_base_us / 1e6,
        [SL_SC_PREFILL_KTOK] = s_sim.prefill_us_per_token * 1e3 / 1e6,
        [SL_SC_PREFILL_ATTN] = s_sim.prefill_us_per_token_ctx, /* us per pair = s per 1e6 */
        [SL_SC_DECODE_BASE] = s_sim.decode_base_us / 1e6,
        [SL_SC_DECODE_SEQ] = s_sim.decode_us_per_seq * 32 / 1e6,
        [SL_SC_DECODE_MCTX] = s_sim.decode_us_per_kv_token,
    };
    for (int i = 0; i < SL_STEP_COST_N; i++)
        assert_true(fabs(load.step_cost[i] - want[i]) < 0.02 * want[i]);
    sl_exec_load_t l;
    sl_engine_load_report(&load, NULL, &l);
    assert_true(l.has_step_cost);
    assert_memory_equal(l.step_cost, load.step_cost, sizeof(l.step_cost));
    for (int i = 0; i < 200; i++)
        free(jobs[i]);
    sl_engine_destroy(&e);
}

/* When the fit is reported: once it predicted four steps in a row of
 * each kind within 2% before learning them (steps that follow its law:
 * after a handful), or after 64 steps, 16 of each kind, whatever it
 * predicted (steps with 10% noise: not before). */
static void test_step_cost_ready(void **state)
{
    (void)state;
    const double th[SL_STEP_COST_N] = {0.001, 0.029, 0.001, 0.006, 0.0006, 0.05};
    for (int noisy = 0; noisy < 2; noisy++) {
        sl_step_cost_t c;
        sl_step_cost_init(&c);
        sl_rand_t r;
        sl_rand_seed(&r, 7);
        int ready_at = -1;
        for (int s = 0; s < 200 && ready_at < 0; s++) {
            double x[SL_STEP_COST_N];
            uint32_t tok = s % 2 ? 0 : 100 + (uint32_t)sl_rand_below(&r, 2000);
            uint32_t seqs = 1 + (uint32_t)sl_rand_below(&r, 32);
            sl_step_cost_features(tok ? 1 : 0, tok, tok * (tok / 2.0), seqs,
                                  seqs * (500 + sl_rand_below(&r, 4000)), x);
            double y = 0;
            for (int i = 0; i < SL_STEP_COST_N; i++)
                y += th[i] * x[i];
            if (noisy)
                y *= 0.9 + 0.2 * sl_rand_double(&r);
            sl_step_cost_learn(&c, x, y);
            if (sl_step_cost_ready(&c))
                ready_at = s + 1;
        }
        if (noisy) {
            assert_int_equal(ready_at, 64); /* the steps alternate: 32 of each kind by then */
        } else {
            assert_true(ready_at > 0 && ready_at <= 24);
            for (int i = 0; i < SL_STEP_COST_N; i++)
                assert_true(fabs(c.th[i] - th[i]) < 0.02 * th[i]);
        }
    }
}

/* The fit follows an executor that slows down mid-run (thermal
 * throttling, a noisy neighbour): after 3,000 steps of one law, steps three
 * times as long are predicted within 5% again within 48 steps. */
static void test_step_cost_slowdown(void **state)
{
    (void)state;
    const double th[SL_STEP_COST_N] = {0.001, 0.029, 0.001, 0.006, 0.0006, 0.05};
    sl_step_cost_t c;
    sl_step_cost_init(&c);
    sl_rand_t r;
    sl_rand_seed(&r, 11);
    int settled = -1, good = 0;
    for (int s = 0; s < 6000 && settled < 0; s++) {
        double x[SL_STEP_COST_N], slow = s < 3000 ? 1.0 : 3.0;
        uint32_t tok = s % 4 ? 0 : 100 + (uint32_t)sl_rand_below(&r, 2000);
        uint32_t seqs = 1 + (uint32_t)sl_rand_below(&r, 32);
        sl_step_cost_features(tok ? 1 : 0, tok, tok * (tok / 2.0), seqs,
                              seqs * (500 + sl_rand_below(&r, 4000)), x);
        double y = 0, pred = 0;
        for (int i = 0; i < SL_STEP_COST_N; i++) {
            y += slow * th[i] * x[i];
            pred += c.th[i] * x[i];
        }
        if (s >= 3000) {
            good = fabs(pred - y) < 0.05 * y ? good + 1 : 0;
            if (good == 8)
                settled = s - 3000 - 7;
        }
        sl_step_cost_learn(&c, x, y);
    }
    assert_true(settled >= 0 && settled <= 48);
    assert_true(sl_step_cost_ready(&c));
}

/* The step clock in the load: what is left of the step in progress and
 * the sequences decoding in it (past their prompt) with their context; the
 * report passes it on as known. */
static void test_step_clock_report(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    job_t *a = s_job(1, 1, 100, 50), *b = s_job(2, 1, 3000, 5);
    sl_engine_load_t load;
    sl_engine_load(e, 0, &load);
    assert_int_equal(load.step_left_us, 0); /* idle: no step */
    assert_int_equal(load.decode_seqs, 0);
    sl_engine_submit(e, &a->ej, 0);
    sl_time_t t1 = sl_engine_advance(e, 0); /* a's prompt step */
    sl_engine_load(e, t1 / 2, &load);
    assert_int_equal(load.step_left_us, (uint32_t)((t1 - t1 / 2) / 1000));
    sl_time_t t2 = sl_engine_advance(e, t1); /* a decodes; b arrives during it */
    sl_engine_submit(e, &b->ej, t1 + SL_US(100));
    sl_engine_load(e, t1 + SL_US(100), &load);
    assert_int_equal(load.decode_seqs, 1);
    assert_int_equal(load.decode_ctx, 100 + 2); /* its prompt, the token of each step */
    assert_int_equal(load.prompt_tokens, 3000); /* b's, all still to compute */
    assert_int_equal(load.prompt_pairs, 3000 * 1500);
    assert_true(t2 > t1 + SL_US(100));
    sl_time_t t3 = sl_engine_advance(e, t2); /* b's first chunk with a's decode */
    sl_engine_load(e, t2, &load);
    assert_int_equal(load.step_left_us, (uint32_t)((t3 - t2) / 1000));
    assert_int_equal(load.decode_seqs, 1);             /* b is not past its prompt */
    assert_int_equal(load.prompt_tokens, 3000 - 2047); /* its first chunk is in progress */
    sl_exec_load_t l;
    sl_engine_load_report(&load, NULL, &l);
    assert_true(l.has_step_clock);
    assert_int_equal(l.step_left_us, load.step_left_us);
    assert_int_equal(l.decode_seqs, 1);
    s_drain(e, t3);
    free(a);
    free(b);
    sl_engine_destroy(&e);
}

/* The sim backend declares its context (--sim-max-context) and fails a
 * longer job with the reason, which the engine hands on as the job's error
 * (it used to be the status name alone, "invalid argument"). */
static void test_limits_and_failure_reason(void **state)
{
    rec_t r;
    sl_engine_t *e = s_engine(&r, "sim", 0);
    sl_backend_limits_t lim;
    sl_engine_limits(e, &lim);
    assert_int_equal(lim.max_context_tokens, 262144); /* the default */
    assert_int_equal(lim.vocab_size, 0);
    sl_engine_destroy(&e);

    sl_engine_cfg_t cfg;
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    memset(&r, 0, sizeof(r));
    s_sim.max_context = 512;
    sl_backend_params_t p = {.kv_block_tokens = 16, .sim = &s_sim};
    sl_engine_cb_t cb = {.tokens = s_tokens, .done = s_done, .arg = &r};
    assert_int_equal(sl_engine_create(&cfg, sl_backend_find("sim"), &p, &cb, &e), SL_OK);
    sl_engine_limits(e, &lim);
    assert_int_equal(lim.max_context_tokens, 512);
    job_t *ok = s_job(1, 1, 448, 64), *bad = s_job(2, 1, 512, 64);
    sl_engine_submit(e, &ok->ej, 0);
    sl_engine_submit(e, &bad->ej, 0);
    s_drain(e, 0);
    assert_int_equal(r.done, 2);
    assert_int_equal(r.failed, 1);
    assert_string_equal(r.error, "512 prompt + 64 new tokens (context 512)");
    free(ok);
    free(bad);
    sl_engine_destroy(&e);

    /* null: no limits */
    e = s_engine(&r, "null", 0);
    sl_engine_limits(e, &lim);
    assert_int_equal(lim.max_context_tokens, 0);
    sl_engine_destroy(&e);
}

/* What each job's done callback turned into through sl_engine_job_report. */
typedef struct {
    int n;                         /* reports taken */
    uint64_t id[8];                /* whose */
    sl_result_report_t rep[8];     /* the reports (tokens point into the jobs) */
    char error[8][80];             /* their error texts, copied */
    const sl_engine_job_t *job[8]; /* the engine jobs they were made from */
} reports_t;

static void s_done_report(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *err)
{
    reports_t *r = arg;
    assert_true(r->n < 8);
    r->id[r->n] = ej->seq.id;
    r->job[r->n] = ej;
    sl_engine_job_report(ej, how, err, &r->rep[r->n]);
    snprintf(r->error[r->n], sizeof(r->error[r->n]), "%s", r->rep[r->n].error);
    r->n++;
}

static const sl_result_report_t *s_report_of(const reports_t *r, uint64_t id, int *at_p)
{
    for (int i = 0; i < r->n; i++)
        if (r->id[i] == id) {
            *at_p = i;
            return &r->rep[i];
        }
    fail_msg("no report for job %llu", (unsigned long long)id);
    return NULL;
}

/* Durations as reports carry them: whole microseconds, the wire's unit. */
#define S_WIRE(d) ((d) - (d) % SL_NS_PER_US)

/* Each report of r sent as an executor sends it (a Completion over a real
 * ZeroMQ pair) reads back equal, field for field: what the simulator hands
 * the core is what the scheduler decodes. */
static void s_assert_same_over_wire(reports_t *r)
{
    void *ctx = zmq_ctx_new();
    void *tx = zmq_socket(ctx, ZMQ_PAIR), *rx = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(rx, "inproc://report"), 0);
    assert_int_equal(zmq_connect(tx, "inproc://report"), 0);
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_COMPLETIONS);
    for (int i = 0; i < r->n; i++) {
        r->rep[i].error = r->error[i]; /* the copy: the engine's text may be gone */
        assert_int_equal(sl_wire_completion_add(&b, 100 + r->id[i], &r->rep[i]), SL_OK);
    }
    assert_int_equal(sl_wire_batch_send(tx, NULL, &b, 0), SL_OK);

    sl_wire_msg_t *msg = NULL;
    sl_wire_ident_t from;
    char err[160];
    sl_proto_limits_t lim = sl_proto_limits_default;
    assert_int_equal(sl_wire_recv(rx, 0, 0, &lim, &from, &msg, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(msg), SL_WIRE_COMPLETIONS);
    assert_int_equal(sl_wire_msg_count(msg), (uint32_t)r->n);
    for (int i = 0; i < r->n; i++) {
        sl_wire_completion_t c;
        sl_wire_completion_get(msg, (uint32_t)i, &c);
        const sl_result_report_t *a = &r->rep[i], *w = &c.report;
        assert_int_equal(c.job_seq, 100 + r->id[i]);
        assert_int_equal(a->res.status, w->res.status);
        assert_int_equal(a->res.output_tokens, w->res.output_tokens);
        assert_int_equal(a->res.cached_tokens, w->res.cached_tokens);
        assert_int_equal(a->res.exec_ttft, w->res.exec_ttft);
        assert_int_equal(a->res.exec_queue, w->res.exec_queue);
        assert_int_equal(a->res.has_exec_queue, w->res.has_exec_queue);
        assert_int_equal(a->res.exec_end, w->res.exec_end);
        assert_int_equal(a->prompt_tokens, w->prompt_tokens);
        assert_int_equal(a->n_tokens, w->n_tokens);
        if (a->n_tokens)
            assert_memory_equal(a->tokens, w->tokens, a->n_tokens * sizeof(uint32_t));
        assert_string_equal(a->error, w->error ? w->error : "");
    }
    sl_wire_msg_free(&msg);
    sl_wire_batch_fini(&b);
    zmq_close(tx);
    zmq_close(rx);
    zmq_ctx_term(ctx);
}

/* One engine run gives the reports an executor sends: a job that ran, one
 * the backend refused (too long for its context) and one canceled while it
 * waited, with timings from their arrival at the engine; each survives the
 * wire unchanged. */
static void test_job_reports(void **state)
{
    reports_t r;
    sl_engine_cfg_t cfg;
    sl_engine_t *e = NULL;
    memset(&r, 0, sizeof(r));
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    cfg.max_batch = 1; /* the third job waits behind the first */
    sl_cfg_defaults(sl_sim_cfg_fields, &s_sim);
    s_sim.max_context = 512;
    sl_backend_params_t p = {.kv_block_tokens = 16, .sim = &s_sim};
    sl_engine_cb_t cb = {.done = s_done_report, .arg = &r};
    assert_int_equal(sl_engine_create(&cfg, sl_backend_find("sim"), &p, &cb, &e), SL_OK);
    job_t *ok = s_job(1, 1, 448, 64), *bad = s_job(2, 1, 512, 64), *gone = s_job(3, 1, 64, 8);
    /* an odd start, so that no duration is a whole number of microseconds by chance */
    sl_time_t t0 = SL_MS(5) + 337;
    sl_engine_submit(e, &ok->ej, t0);
    sl_engine_submit(e, &bad->ej, t0);
    sl_engine_submit(e, &gone->ej, t0);
    sl_time_t now = sl_engine_advance(e, t0); /* ok's prefill starts; the others wait */
    assert_int_equal(sl_engine_cancel(e, 3, now), SL_OK);
    s_drain(e, now);
    assert_int_equal(r.n, 3);

    int at;
    const sl_result_report_t *rep = s_report_of(&r, 1, &at);
    assert_int_equal(rep->res.status, SL_JOB_OK);
    assert_int_equal(rep->res.output_tokens, 64);
    assert_int_equal(rep->n_tokens, 64);
    assert_ptr_equal(rep->tokens, ok->out);
    assert_int_equal(rep->prompt_tokens, 448);
    assert_int_equal(rep->res.cached_tokens, ok->ej.seq.cached_tokens);
    assert_string_equal(r.error[at], "");
    /* Submitted and stepped at t0: no wait, then the prefill, then 63
     * decode steps to the last token. */
    assert_true(rep->res.has_exec_queue);
    assert_int_equal(rep->res.exec_queue, 0);
    assert_int_equal(rep->res.exec_ttft, S_WIRE(ok->ej.first_token - t0));
    double prefill_us = s_sim.prefill_base_us + s_sim.prefill_us_per_token * 448;
    assert_true(rep->res.exec_ttft >= (sl_time_t)(prefill_us * 1000));
    assert_int_equal(rep->res.exec_end, S_WIRE(ok->ej.finished - t0));
    assert_true(rep->res.exec_end - rep->res.exec_ttft >=
                (sl_time_t)(63 * s_sim.decode_base_us * 1000));

    rep = s_report_of(&r, 2, &at);
    assert_int_equal(rep->res.status, SL_JOB_FAILED);
    assert_string_equal(r.error[at], "512 prompt + 64 new tokens (context 512)");
    assert_int_equal(rep->res.output_tokens, 0);
    assert_int_equal(rep->n_tokens, 0);
    assert_int_equal(rep->res.exec_ttft, 0); /* no first token */
    assert_false(rep->res.has_exec_queue);   /* it never started */
    assert_int_equal(rep->res.exec_queue, 0);
    /* refused when it reached the backend, after the first job freed the batch */
    assert_int_equal(rep->res.exec_end, S_WIRE(bad->ej.finished - t0));
    assert_true(bad->ej.finished >= ok->ej.finished);

    /* Canceled stays canceled (the simulator once reported it failed). */
    rep = s_report_of(&r, 3, &at);
    assert_int_equal(rep->res.status, SL_JOB_CANCELED);
    assert_string_equal(r.error[at], "canceled");
    assert_int_equal(rep->res.output_tokens, 0);
    assert_false(rep->res.has_exec_queue);
    assert_int_equal(rep->res.exec_ttft, 0);
    assert_int_equal(rep->res.exec_end, S_WIRE(now - t0));
    assert_true(rep->res.exec_end > 0);

    s_assert_same_over_wire(&r);
    free(ok);
    free(bad);
    free(gone);
    sl_engine_destroy(&e);
}

/* The heartbeat load: the engine's counts as they are, the host's values
 * only where they were measured (unknown otherwise, never a guess). */
static void test_load_report(void **state)
{
    sl_engine_load_t el = {.running = 3,
                           .waiting = 2,
                           .waiting_tokens = 700,
                           .kv_used = 40,
                           .kv_free = 60,
                           .step_us = 1500,
                           .busy = 0.75f};
    sl_exec_load_t l;
    sl_engine_load_report(&el, NULL, &l);
    assert_int_equal(l.running_jobs, 3);
    assert_int_equal(l.queued_jobs, 2);
    assert_int_equal(l.queued_tokens, 700);
    assert_int_equal(l.kv_blocks_used, 40);
    assert_int_equal(l.kv_blocks_free, 60);
    assert_int_equal(l.step_time_us, 1500);
    assert_true(l.busy == 0.75f);
    assert_false(l.has_cpu_util);
    assert_false(l.has_gpu_util);
    assert_false(l.has_gpu_mem);
    assert_true(l.cpu_util == 0.0f && l.gpu_util == 0.0f);

    sl_host_sample_t hs = {.has_cpu = true,
                           .cpu = 0.25f,
                           .has_gpu = false,
                           .gpu = 0.9f,
                           .has_gpu_mem = true,
                           .gpu_mem_used = 1u << 20,
                           .gpu_mem_total = 1u << 30};
    sl_engine_load_report(&el, &hs, &l);
    assert_true(l.has_cpu_util && l.cpu_util == 0.25f);
    assert_false(l.has_gpu_util);
    assert_true(l.gpu_util == 0.0f); /* not measured: not reported */
    assert_true(l.has_gpu_mem);
    assert_int_equal(l.gpu_mem_used, 1u << 20);
    assert_int_equal(l.gpu_mem_total, 1u << 30);
    assert_true(l.busy == 0.75f);
}

/* Runs: an engine planning runs of decode steps (run_steps) ends every
 * job when, and as, an engine waking at every step does, on a script of
 * submissions (some landing inside a run), a cancel, a streamed job and
 * load reads, driven as an embedder on a virtual clock drives it: an
 * advance at each wake-up it asked for, and after each action. */
typedef enum { S_ACT_SUBMIT, S_ACT_CANCEL, S_ACT_LOAD } s_act_kind_t;
typedef struct {
    sl_time_t at;
    s_act_kind_t kind;
    uint64_t id;
    uint32_t prompt, out;
    bool stream;
} s_act_t;

#define S_RUN_JOBS 8
#define S_RUN_CHUNKS 16

/* The driver's clock, and when (by it) the streamed chunks were handed out. */
static sl_time_t s_run_now;
static sl_time_t s_run_chunk_at[S_RUN_CHUNKS];
static int s_run_chunks;

static void s_run_tokens(void *arg, sl_engine_job_t *ej, uint32_t from, uint32_t n)
{
    (void)arg, (void)ej, (void)from, (void)n;
    if (s_run_chunks < S_RUN_CHUNKS)
        s_run_chunk_at[s_run_chunks] = s_run_now;
    s_run_chunks++;
}

typedef struct {
    int wakeups;                      /* advances at the engine's own wake-ups */
    sl_time_t first[S_RUN_JOBS];      /* per job: first token */
    sl_time_t end[S_RUN_JOBS];        /* ... completion */
    uint32_t n_out[S_RUN_JOBS];       /* ... tokens */
    sl_engine_load_t loads[4];        /* the load reads */
    int chunks, done, canceled;       /* callbacks */
    sl_time_t chunk_at[S_RUN_CHUNKS]; /* when the chunks came out */
} s_run_rec_t;

static void s_script(int run_steps, const s_act_t *acts, int n, s_run_rec_t *out)
{
    rec_t r;
    memset(out, 0, sizeof(*out));
    sl_engine_t *e = s_engine_with(&r, "sim", 0, run_steps, s_run_tokens);
    job_t *jobs[S_RUN_JOBS] = {0};
    s_run_chunks = 0;
    sl_time_t now = 0, wake = INT64_MAX;
    int i = 0, loads = 0;
    while (i < n || sl_engine_jobs(e) > 0) {
        sl_time_t at = i < n ? acts[i].at : INT64_MAX;
        if (at <= wake) { /* an action at a boundary comes first */
            const s_act_t *a = &acts[i++];
            now = s_run_now = at;
            if (a->kind == S_ACT_SUBMIT) {
                jobs[a->id] = s_job(a->id, 1, a->prompt, a->out);
                jobs[a->id]->ej.stream = a->stream;
                sl_engine_submit(e, &jobs[a->id]->ej, now);
            } else if (a->kind == S_ACT_CANCEL) {
                assert_int_equal(sl_engine_cancel(e, a->id, now), SL_OK);
            } else {
                sl_engine_load(e, now, &out->loads[loads++]);
                continue; /* a read: nothing to advance for */
            }
        } else {
            assert_true(wake != INT64_MAX);
            now = s_run_now = wake;
            out->wakeups++;
        }
        wake = sl_engine_advance(e, now);
        if (wake <= now && wake != INT64_MAX)
            wake = now + 1;
    }
    for (int j = 0; j < S_RUN_JOBS; j++)
        if (jobs[j]) {
            out->first[j] = jobs[j]->ej.first_token;
            out->end[j] = jobs[j]->ej.finished;
            out->n_out[j] = jobs[j]->ej.seq.n_out;
            free(jobs[j]);
        }
    out->chunks = s_run_chunks;
    memcpy(out->chunk_at, s_run_chunk_at, sizeof(out->chunk_at));
    out->done = r.done;
    out->canceled = r.canceled;
    sl_engine_destroy(&e);
}

static void test_runs_end_jobs_as_steps_do(void **state)
{
    (void)state;
    const s_act_t acts[] = {
        {SL_MS(0), S_ACT_SUBMIT, 0, 800, 60, false},
        {SL_MS(1), S_ACT_SUBMIT, 1, 300, 40, true}, /* streamed: chunks bound the runs */
        {SL_MS(120), S_ACT_LOAD, 0, 0, 0, false},   /* inside a run */
        {SL_MS(150), S_ACT_SUBMIT, 2, 2000, 64, false},
        {SL_MS(260), S_ACT_SUBMIT, 3, 100, 20, false},
        {SL_MS(300), S_ACT_LOAD, 0, 0, 0, false},
        {SL_MS(330), S_ACT_CANCEL, 0, 0, 0, false},
        {SL_MS(420), S_ACT_SUBMIT, 4, 500, 64, false},
        {SL_MS(600), S_ACT_LOAD, 0, 0, 0, false},
        {SL_MS(900), S_ACT_SUBMIT, 5, 50, 64, false},
        {SL_MS(1300), S_ACT_LOAD, 0, 0, 0, false},
    };
    int n = (int)(sizeof(acts) / sizeof(acts[0]));
    s_run_rec_t a, b;
    s_script(1, acts, n, &a);
    s_script(64, acts, n, &b);
    for (int j = 0; j < 6; j++) {
        assert_true(a.first[j] > 0);
        assert_true(a.end[j] > 0);
        assert_int_equal(a.first[j], b.first[j]);
        assert_int_equal(a.end[j], b.end[j]);
        assert_int_equal(a.n_out[j], b.n_out[j]);
    }
    assert_int_equal(a.n_out[2], 64);
    assert_true(a.n_out[0] < 60); /* canceled on the way */
    assert_int_equal(a.canceled, 1);
    assert_int_equal(a.done, b.done);
    assert_int_equal(a.canceled, b.canceled);
    assert_int_equal(a.chunks, b.chunks);
    assert_true(a.chunks >= 3 && a.chunks <= S_RUN_CHUNKS);
    for (int k = 0; k < a.chunks; k++) /* streamed when they were due, not when a run ended */
        assert_int_equal(a.chunk_at[k], b.chunk_at[k]);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(a.loads[k].running, b.loads[k].running);
        assert_int_equal(a.loads[k].waiting, b.loads[k].waiting);
        assert_int_equal(a.loads[k].kv_used, b.loads[k].kv_used);
        assert_int_equal(a.loads[k].step_us, b.loads[k].step_us);
        assert_true(a.loads[k].busy == b.loads[k].busy);
    }
    assert_true(a.loads[0].running > 0);
    /* the point of it: far fewer wake-ups for the same steps */
    assert_true(b.wakeups * 3 < a.wakeups);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_jobs),
        cmocka_unit_test(test_batch_waits_50ms),
        cmocka_unit_test(test_full_batch_starts_at_once),
        cmocka_unit_test(test_interactive_joins_running_batch),
        cmocka_unit_test(test_sim_costs),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_cancel_and_null),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_step_cost_fit),
        cmocka_unit_test(test_step_clock_report),
        cmocka_unit_test(test_step_cost_ready),
        cmocka_unit_test(test_step_cost_slowdown),
        cmocka_unit_test(test_limits_and_failure_reason),
        cmocka_unit_test(test_job_reports),
        cmocka_unit_test(test_load_report),
        cmocka_unit_test(test_runs_end_jobs_as_steps_do),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
