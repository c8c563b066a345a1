/*
 * Fuzz target "engine": the executor's message handlers driven through its
 * engine (executor/sl_engine.c) with the sim or the null backend,
 * in-process, on a simulated clock, without sockets. An input is a header
 * (backend, engine knobs, runs of steps, KV pool size) and then records: a
 * step of the clock (sl_engine_advance), one message frame from the
 * scheduler, or an action of the data plane on a held job (KV taken in
 * from a peer, resumed, ended as moved or failed).
 *
 * Frames are decoded with sl_proto_decode and handed on as
 * executor/sl_executor.c does: each dispatch of a DISPATCHES batch is
 * validated (sl_wire_dispatch_get) and becomes an engine job whose prompt
 * points into the message, which the job keeps a reference to; a CANCEL
 * cancels by job seq. A KV_PLAN does what the data plane asks of the
 * engine: AWAIT and PUSH mark the job's next dispatch (held once reserved
 * or prefilled), MIGRATE pauses it, FETCH holds the cached blocks of its
 * hashes and lets them go. Other kinds are ignored as the executor ignores
 * them. Every job left is ended by sl_engine_destroy, so the sanitizers see
 * a job or a message reference that is lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"
#include "executor/sl_engine.h"
#include "executor/sl_sim_cfg.h"
#include "proto/sl_proto.h"
#include "tests/fuzz/sl_fuzz.h"

#define S_HELD 32 /* held jobs remembered for the data plane's actions */
#define S_PLANS 8 /* KV plans waiting for their dispatch */

typedef struct s_job {
    sl_engine_job_t ej;
    sl_wire_msg_t *backing; /* the message its prompt points into (a reference) */
    uint32_t out[];         /* max_new_tokens entries */
} s_job_t;

typedef struct s_harness {
    sl_engine_t *engine;
    sl_time_t now;
    s_job_t *held[S_HELD]; /* jobs held, in the order they were held */
    sl_engine_held_t why[S_HELD];
    uint32_t n_held;
    uint64_t plan_seq[S_PLANS]; /* AWAIT or PUSH plans for these seqs */
    sl_kv_mode_t plan_mode[S_PLANS];
    uint32_t n_plans;
    uint64_t tokens; /* streamed tokens seen */
} s_harness_t;

static void s_unheld(s_harness_t *h, const s_job_t *job)
{
    for (uint32_t i = 0; i < h->n_held; i++)
        if (h->held[i] == job) {
            h->held[i] = h->held[--h->n_held];
            h->why[i] = h->why[h->n_held];
            return;
        }
}

static void s_cb_tokens(void *arg, sl_engine_job_t *job, uint32_t from, uint32_t n)
{
    s_harness_t *h = arg;
    for (uint32_t i = 0; i < n; i++)
        h->tokens += job->seq.out[from + i];
}

static void s_cb_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *error)
{
    s_harness_t *h = arg;
    s_job_t *job = (s_job_t *)ej;
    s_unheld(h, job);
    sl_wire_msg_free(&job->backing);
    free(job);
}

static void s_cb_held(void *arg, sl_engine_job_t *ej, sl_engine_held_t why)
{
    s_harness_t *h = arg;
    s_job_t *job = (s_job_t *)ej;
    s_unheld(h, job);
    if (h->n_held < S_HELD) {
        h->held[h->n_held] = job;
        h->why[h->n_held++] = why;
    }
}

static void s_on_dispatch(s_harness_t *h, sl_wire_msg_t *backing, const sl_wire_dispatch_t *d)
{
    const sl_job_desc_t *j = &d->job;
    s_job_t *job = calloc(1, sizeof(*job) + (size_t)j->max_new_tokens * sizeof(uint32_t));
    if (!job)
        return;
    job->backing = sl_wire_msg_ref(backing);
    sl_seq_t *s = &job->ej.seq;
    s->id = d->job_seq;
    s->prompt = j->token_ids;
    s->prompt_len = j->prompt_tokens;
    s->block_hashes = j->block_hashes;
    s->n_block_hashes = j->n_block_hashes;
    s->hash_block_tokens = j->block_tokens;
    s->max_new_tokens = j->max_new_tokens;
    s->interactive = j->prio == SL_PRIO_INTERACTIVE;
    s->out = job->out;
    job->ej.stream = j->stream;
    job->ej.kv_mode = SL_KV_LOCAL;
    for (uint32_t i = 0; i < h->n_plans; i++)
        if (h->plan_seq[i] == d->job_seq) { /* the plan came before its dispatch */
            job->ej.kv_mode = h->plan_mode[i];
            h->plan_seq[i] = h->plan_seq[--h->n_plans];
            h->plan_mode[i] = h->plan_mode[h->n_plans];
            break;
        }
    sl_engine_submit(h->engine, &job->ej, h->now);
}

static void s_on_kv_plan(s_harness_t *h, const sl_wire_msg_t *msg)
{
    sl_kv_plan_t p;
    sl_wire_kv_plan_get(msg, &p);
    switch (p.mode) {
    case SL_KV_AWAIT:
    case SL_KV_PUSH:
        if (sl_engine_find(h->engine, p.job_seq) || h->n_plans == S_PLANS)
            break; /* a plan for a job already running is refused */
        h->plan_seq[h->n_plans] = p.job_seq;
        h->plan_mode[h->n_plans++] = p.mode;
        break;
    case SL_KV_MIGRATE:
        (void)sl_engine_pause(h->engine, p.job_seq, h->now);
        break;
    case SL_KV_FETCH: {
        void *hold = NULL;
        const uint32_t *ids = NULL;
        uint32_t found = 0;
        if (sl_engine_kv_hold(h->engine, p.hashes, p.n_hashes, &hold, &ids, &found) == SL_OK)
            sl_engine_kv_unhold(h->engine, hold);
        break;
    }
    default:
        break;
    }
}

static void s_on_message(s_harness_t *h, sl_wire_msg_t *msg)
{
    char err[256];
    switch (sl_wire_msg_kind(msg)) {
    case SL_WIRE_WELCOME: {
        sl_wire_welcome_t w;
        sl_wire_welcome_get(msg, &w);
        break;
    }
    case SL_WIRE_DISPATCHES:
        for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
            sl_wire_dispatch_t d;
            if (sl_wire_dispatch_get(msg, k, &sl_proto_limits_default, &d, err, sizeof(err)) ==
                SL_OK)
                s_on_dispatch(h, msg, &d);
        }
        break;
    case SL_WIRE_CANCEL: {
        sl_wire_cancel_t c;
        sl_wire_cancel_get(msg, &c);
        (void)sl_engine_cancel(h->engine, c.job_seq, h->now);
        break;
    }
    case SL_WIRE_KV_PLAN:
        s_on_kv_plan(h, msg);
        break;
    default:
        break;
    }
}

/* The data plane acts on held job i: its KV arrived, it moved, or it failed. */
static void s_on_held(s_harness_t *h, sl_fuzz_in_t *in)
{
    uint8_t b = sl_fuzz_u8(in);
    if (!h->n_held)
        return;
    uint32_t i = (b >> 2) % h->n_held;
    s_job_t *job = h->held[i];
    sl_engine_held_t why = h->why[i];
    uint32_t n_out = sl_fuzz_u8(in), streamed = sl_fuzz_u8(in), covered = sl_fuzz_u16(in);
    const sl_seq_t *seq = &job->ej.seq;
    switch (b & 3) {
    case 0: /* a peer's KV landed in a reservation (as sl_exec_dp.c checks it) */
        if (why != SL_ENGINE_HELD_RESERVED || n_out > seq->max_new_tokens || streamed > n_out)
            return;
        if (n_out ? (uint64_t)seq->prompt_len + n_out - 1 > covered
                  : !(covered > 0 && covered < seq->prompt_len))
            return;
        for (uint32_t k = 0; k < n_out; k++)
            job->out[k] = k + 1;
        s_unheld(h, job);
        if (sl_engine_import(h->engine, &job->ej, n_out, streamed, covered, h->now) != SL_OK)
            sl_engine_end(h->engine, &job->ej, SL_ENGINE_FAILED, "not taken in", h->now);
        return;
    case 1: /* a paused job's move failed: it runs here again */
        if (why != SL_ENGINE_HELD_PAUSED)
            return;
        s_unheld(h, job);
        if (sl_engine_resume(h->engine, &job->ej, h->now) != SL_OK)
            sl_engine_end(h->engine, &job->ej, SL_ENGINE_FAILED, "not resumed", h->now);
        return;
    case 2: /* its KV is the peer's now */
        sl_engine_end(h->engine, &job->ej, SL_ENGINE_MOVED, NULL, h->now);
        return;
    default:
        sl_engine_end(h->engine, &job->ej, SL_ENGINE_FAILED, "the move failed", h->now);
        return;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_fuzz_in_t in = {data, size};
    uint8_t pick = sl_fuzz_u8(&in), batch = sl_fuzz_u8(&in), kv = sl_fuzz_u8(&in);
    sl_engine_cfg_t cfg;
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    cfg.max_batch = 1 + batch % 16;
    cfg.chunk_tokens = 1 + (batch >> 4);
    cfg.step_tokens = (pick & 2) ? 64 : 0;
    cfg.run_steps = (pick & 4) ? 2 + (pick >> 3) : 1; /* runs of decode steps (sim backend) */
    sl_sim_cfg_t sim;
    sl_cfg_defaults(sl_sim_cfg_fields, &sim);
    sim.kv_capacity_blocks = 4 + kv; /* small pools: eviction and refusal within reach */
    s_harness_t h = {.now = SL_MS(1)};
    sl_backend_params_t params = {.kv_block_tokens = 16, .sim = &sim, .seed = 1};
    sl_engine_cb_t cb = {.tokens = s_cb_tokens, .done = s_cb_done, .held = s_cb_held, .arg = &h};
    const sl_backend_ops_t *ops = sl_backend_find((pick & 1) ? "null" : "sim");
    if (!ops || sl_engine_create(&cfg, ops, &params, &cb, &h.engine) != SL_OK)
        return 0;
    int steps = 0;
    while (sl_fuzz_more(&in) && steps++ < 256) {
        uint8_t op = sl_fuzz_u8(&in);
        if ((op & 3) == 0) { /* the clock moves on: what is due runs */
            sl_time_t until = h.now + SL_MS(op >> 2);
            for (int k = 0; k < 64; k++) {
                sl_time_t next = sl_engine_advance(h.engine, h.now);
                if (next > until || next == INT64_MAX)
                    break;
                if (next > h.now)
                    h.now = next;
            }
            h.now = until;
            continue;
        }
        if ((op & 3) == 1) {
            s_on_held(&h, &in);
            continue;
        }
        size_t len = 0;
        const uint8_t *frame = sl_fuzz_frame(&in, &len);
        char err[256];
        sl_msg_t *m = NULL;
        if (sl_proto_decode(frame, len, &sl_proto_limits_default, &m, err, sizeof(err)) != SL_OK)
            continue;
        sl_wire_msg_t *msg = (sl_wire_msg_t *)m;
        s_on_message(&h, msg);
        sl_wire_msg_free(&msg);
    }
    sl_engine_load_t load;
    sl_engine_load(h.engine, h.now, &load);
    if (getenv("SL_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_engine: %d steps, %u jobs left, %llu tokens streamed\n", steps,
                sl_engine_jobs(h.engine), (unsigned long long)h.tokens);
    sl_engine_destroy(&h.engine);
    return 0;
}
