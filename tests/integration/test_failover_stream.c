/*
 * Mid-stream failover with real processes: a scheduler, two `ref`
 * executors (the small model on the CPU, one token per chunk) and a
 * streaming client on a raw socket, so what the scheduler sends is seen
 * unfiltered. Once some chunks of a job have arrived, the executor serving
 * it is killed (SIGKILL); the job completes on the other executor, resumed
 * after the tokens already delivered. The client must receive every offset
 * exactly once, in order, with no gap; the concatenated chunks and the
 * Result's tokens must equal the same model run uninterrupted in this
 * process; the Result says attempts 2; the scheduler counts the resumed
 * job. Two rounds kill at different points (after the first token, and
 * about half way), a fresh executor joining between them; a third stops
 * the executor (SIGSTOP) until the job was resumed elsewhere and then lets
 * it go on: the late chunks it sends, if any, are dropped (chunks_stale),
 * and the client still gets each offset once.
 *
 * The executor's side on its own, against a scripted scheduler: a ref
 * executor and a sim executor given dispatches that carry resume tokens
 * stream from their count on and report the whole output; a job whose
 * every token was delivered ends at once; more resume tokens than
 * max_new_tokens are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cluster.h"
#include "tests/support/sl_test.h"
#include "common/sl_clock.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

#define PROMPT 40   /* prompt tokens */
#define MAX_NEW 160 /* output tokens: the small model takes seconds for them on one core */

static uint32_t s_prompt[PROMPT];
static uint32_t s_expect[MAX_NEW];

/* The uninterrupted run: the model the executors build from the same flags. */
static void s_reference_run(void)
{
    sl_backend_params_t params = {
        .model = "small", .weights = "", .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    sl_model_t *model = NULL;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 14);
    for (int i = 0; i < PROMPT; i++)
        s_prompt[i] = (uint32_t)sl_rand_below(&r, mcfg.vocab);
    assert_int_equal(sl_model_generate(model, s_prompt, PROMPT, MAX_NEW, s_expect, NULL), SL_OK);
    sl_model_destroy(&model);
}

static void s_submit_stream(void *sock, const char *id)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = {.id = id,
                       .token_ids = s_prompt,
                       .n_token_ids = PROMPT,
                       .max_new_tokens = MAX_NEW,
                       .stream = true};
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
}

/* The executor running a job now (by the status reply's in-flight counts):
 * its name into name; false when none has one. */
static bool s_serving(void *ctl, char *name, size_t len)
{
    sl_wire_msg_t *st = cl_status(ctl, 5000);
    assert_non_null(st);
    bool found = false;
    for (uint32_t i = 0; i < cl_status_execs(st) && !found; i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        if (e.alive && e.inflight > 0) {
            snprintf(name, len, "%s", e.name);
            found = true;
        }
    }
    sl_wire_msg_free(&st);
    return found;
}

/* The live executors: their names and cluster slots. */
typedef struct s_execs {
    const char *names[8]; /* names */
    int slots[8];         /* slots in the cluster */
    int n;                /* how many */
} s_execs_t;

static void s_execs_add(s_execs_t *x, cl_t *c, const char *name, const char *const *args)
{
    x->names[x->n] = name;
    x->slots[x->n++] = cl_executor(c, name, args);
}

/* Stop the executor serving a job: SIGKILL (it leaves the list), or
 * SIGSTOP (its slot into *stopped_p; the caller continues it). */
static void s_stop_server(cl_t *c, void *ctl, s_execs_t *x, int sig, int *stopped_p)
{
    char name[64];
    assert_true(s_serving(ctl, name, sizeof(name)));
    int k = 0;
    while (k < x->n && strcmp(x->names[k], name) != 0)
        k++;
    assert_true(k < x->n);
    cl_kill(c, x->slots[k], sig);
    if (sig == SIGSTOP) {
        *stopped_p = x->slots[k];
    } else {
        cl_wait(c, x->slots[k], 10000); /* reaped: it is gone */
    }
    x->names[k] = x->names[x->n - 1];
    x->slots[k] = x->slots[--x->n];
}

/*
 * One round: stream job id; once kill_after tokens arrived, stop the
 * executor serving it with sig. A SIGSTOPped one is continued once the job
 * was resumed elsewhere: it goes on streaming the job, late. The client
 * must get every offset once, in order, and the uninterrupted run's tokens.
 */
static void s_round(cl_t *c, void *sock, void *ctl, const char *id, uint32_t kill_after, int sig,
                    s_execs_t *x)
{
    static uint32_t got[MAX_NEW];
    uint32_t n_got = 0;
    bool killed = false, done = false;
    int stopped = -1;
    int64_t resumed = cl_status_counter(ctl, "jobs_resumed");
    s_submit_stream(sock, id);
    while (!done) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 120000, &ev));
        switch (ev.kind) {
        case CL_EV_ACCEPTED:
            assert_string_equal(ev.job_id, id);
            break;
        case CL_EV_CHUNK: {
            const sl_wire_chunk_t *ch = &ev.chunk;
            assert_string_equal(ch->job_id, id);
            /* exactly the next offset: no duplicate, no gap */
            assert_int_equal(ch->offset, n_got);
            assert_true(ch->n_tokens > 0);
            assert_true(n_got + ch->n_tokens <= MAX_NEW);
            memcpy(got + n_got, ch->tokens, ch->n_tokens * sizeof(uint32_t));
            n_got += ch->n_tokens;
            if (!killed && n_got >= kill_after) {
                s_stop_server(c, ctl, x, sig, &stopped);
                killed = true;
                assert_true(n_got < MAX_NEW); /* stopped mid-stream */
            }
            if (stopped >= 0) {
                /* wait for the resume, then let the old executor go on */
                for (int i = 0; i < 400 && cl_status_counter(ctl, "jobs_resumed") == resumed; i++)
                    zmq_poll(NULL, 0, 50);
                assert_true(cl_status_counter(ctl, "jobs_resumed") > resumed);
                cl_kill(c, stopped, SIGCONT);
                stopped = -1;
            }
            break;
        }
        case CL_EV_RESULT: {
            const sl_wire_result_t *r = &ev.result;
            assert_string_equal(r->job_id, id);
            assert_int_equal(r->status, SL_JOB_OK);
            assert_int_equal(r->attempts, 2);
            assert_int_equal(r->n_tokens, MAX_NEW);
            for (uint32_t i = 0; i < MAX_NEW; i++)
                assert_int_equal(r->tokens[i], s_expect[i]);
            done = true;
            break;
        }
        default:
            fail_msg("unexpected event %d for %s", (int)ev.kind, id);
        }
        cl_ev_free(&ev);
    }
    assert_true(killed);
    /* the chunks, concatenated, are the uninterrupted run's tokens */
    assert_int_equal(n_got, MAX_NEW);
    for (uint32_t i = 0; i < MAX_NEW; i++)
        assert_int_equal(got[i], s_expect[i]);
}

static void test_stream_survives_executor_kill(void **state)
{
    (void)state;
    s_reference_run();

    static cl_t c;
    /* A loss timeout of 1 s: on a loaded 2-core host a live executor can
     * miss 300 ms of heartbeats, and a false loss would take an attempt. */
    const char *sched_args[] = {"--missed-heartbeats=10", "--log-level=warn", NULL};
    const char *exec_args[] = {"--backend=ref",
                               "--model=small",
                               "--device=cpu",
                               "--threads=1",
                               "--chunk-tokens=1",
                               "--log-level=warn",
                               NULL};
    cl_init(&c, "failover");
    cl_scheduler(&c, sched_args);
    s_execs_t x = {.n = 0};
    s_execs_add(&x, &c, "f1", exec_args);
    s_execs_add(&x, &c, "f2", exec_args);
    void *sock = cl_client(&c);
    void *ctl = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, ctl, 2, 30000), 0);

    /* round 1: killed right after its first token */
    s_round(&c, sock, ctl, "fo-early", 1, SIGKILL, &x);
    /* round 2: killed about half way, a fresh executor in the dead one's place */
    s_execs_add(&x, &c, "f3", exec_args);
    assert_int_equal(cl_wait_executors(&c, ctl, 2, 30000), 0);
    s_round(&c, sock, ctl, "fo-half", MAX_NEW / 2, SIGKILL, &x);
    assert_int_equal(cl_status_counter(ctl, "chunks_stale"), 0); /* the dead send nothing */
    /* round 3: stopped half way, lost, continued once the job was resumed:
     * its late chunks are dropped */
    s_execs_add(&x, &c, "f4", exec_args);
    assert_int_equal(cl_wait_executors(&c, ctl, 2, 30000), 0);
    s_round(&c, sock, ctl, "fo-late", MAX_NEW / 2, SIGSTOP, &x);
    for (int i = 0; i < 200 && cl_status_counter(ctl, "chunks_stale") <= 0; i++)
        zmq_poll(NULL, 0, 50);

    sl_wire_msg_t *st = cl_status(ctl, 5000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_resumed"), 3);
    assert_int_equal(cl_counter(st, "executors_lost"), 3);
    assert_int_equal(cl_counter(st, "jobs_completed"), 3);
    /* Late chunks of the resumed executor are dropped when they come; on a
     * loaded host it may learn it was lost before it sends one, so their
     * number is reported, not asserted (each offset once is, in s_round). */
    if (cl_counter(st, "chunks_stale") == 0)
        fprintf(stderr, "# the resumed executor sent no late chunk this time\n");
    assert_int_equal(cl_counter(st, "chunks_gap"), 0);
    assert_int_equal(cl_counter(st, "stream_bytes_held"), 0);
    sl_wire_msg_free(&st);
    zmq_close(ctl);
    zmq_close(sock);
    cl_fini(&c);
}

/* ---- the executor's side, against a scripted scheduler ---- */

#define XS_PROMPT 24 /* the tiny model's prompt */
#define XS_NEW 12    /* its output tokens */

/* Add a dispatch of a streaming job (seq) whose client has resume[0..n);
 * prompt NULL: a prompt given by its length only. */
static void s_dispatch_resumed(sl_wire_batch_t *b, uint64_t seq, const uint32_t *prompt,
                               const uint32_t *resume, uint32_t n)
{
    char id[32], err[256];
    snprintf(id, sizeof(id), "xs%llu", (unsigned long long)seq);
    sl_job_desc_t j = {.id = id,
                       .prompt_tokens = XS_PROMPT,
                       .token_ids = prompt,
                       .n_token_ids = prompt ? XS_PROMPT : 0,
                       .max_new_tokens = XS_NEW,
                       .stream = true};
    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(
        sl_wire_submit_pack(&j, &sl_proto_limits_default, 0, &mem, &len, err, sizeof(err)), SL_OK);
    /* a Submit is {job = 1}: the tag, the job's length, then the job */
    const uint8_t *p = mem;
    assert_int_equal(p[0], 0x0a);
    size_t at = 1, job_len = 0;
    for (int shift = 0; p[at] & 0x80; shift += 7)
        job_len |= (size_t)(p[at++] & 0x7f) << shift;
    job_len |= (size_t)p[at] << (7 * (at - 1));
    at++;
    assert_int_equal(at + job_len, len);
    assert_int_equal(sl_wire_dispatch_add_resume(b, p + at, job_len, seq, 2, resume, n), SL_OK);
    free(mem);
}

/* Start executor "xr" with args against a scripted scheduler (a ROUTER
 * on the cluster's executor endpoint), welcome it; its identity in *who. */
static void *s_scripted(cl_t *c, const char *tag, const char *const *args, sl_wire_ident_t *who)
{
    cl_init(c, tag);
    void *sched = zmq_socket(c->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(sched, ZMQ_LINGER, &zero, sizeof(zero));
    cl_secure(sched, &c->server_key, c);
    assert_int_equal(zmq_bind(sched, c->exec_ep), 0);
    cl_executor(c, "xr", args);
    sl_wire_msg_t *m = NULL;
    char err[256];
    for (;;) { /* its hello */
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, 20000), 1);
        assert_int_equal(
            sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, who, &m, err, sizeof(err)), SL_OK);
        int hello = sl_wire_msg_kind(m) == SL_WIRE_HELLO;
        sl_wire_msg_free(&m);
        if (hello)
            break;
    }
    sl_wire_welcome_t w = {.heartbeat_ms = 100};
    assert_int_equal(sl_wire_welcome_send(sched, who, &w, 0), SL_OK);
    return sched;
}

/* Send jobs 1 to 3 resumed after 5, all (XS_NEW) and XS_NEW + 1 of the
 * tokens resume[], and check what comes back: job 1 streams from offset 5
 * on (the tokens expect[] where given), jobs 1 and 2 report the whole
 * output (resume's first tokens, expect[] where given) with the prompt's
 * own length, job 3 is refused (never reported). */
static void s_check_resumes(void *sched, const sl_wire_ident_t *who, const uint32_t *prompt,
                            const uint32_t *resume, const uint32_t *expect)
{
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_DISPATCHES);
    s_dispatch_resumed(&b, 1, prompt, resume, 5);          /* 5 delivered */
    s_dispatch_resumed(&b, 2, prompt, resume, XS_NEW);     /* all delivered */
    s_dispatch_resumed(&b, 3, prompt, resume, XS_NEW + 1); /* more than max_new_tokens */
    assert_int_equal(sl_wire_batch_send(sched, who, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);

    uint32_t next = 5; /* the offset job 1's next chunk must have */
    int done[4] = {0, 0, 0, 0};
    char err[256];
    sl_wire_ident_t from;
    sl_wire_msg_t *m = NULL;
    sl_time_t quiet_until = sl_clock_now() + SL_MS(3000);
    while (sl_clock_now() < quiet_until) {
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        if (sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, &from, &m, err, sizeof(err)) !=
            SL_OK)
            continue;
        if (sl_wire_msg_kind(m) == SL_WIRE_TOKEN_CHUNK) {
            sl_wire_chunk_t ch;
            sl_wire_chunk_get(m, &ch);
            assert_true(ch.job_seq == 1); /* job 2 has nothing left to stream */
            assert_int_equal(ch.offset, next);
            for (uint32_t i = 0; expect && i < ch.n_tokens; i++)
                assert_int_equal(ch.tokens[i], expect[ch.offset + i]);
            next += ch.n_tokens;
        } else if (sl_wire_msg_kind(m) == SL_WIRE_COMPLETIONS) {
            for (uint32_t i = 0; i < sl_wire_msg_count(m); i++) {
                sl_wire_completion_t comp;
                sl_wire_completion_get(m, i, &comp);
                assert_true(comp.job_seq == 1 || comp.job_seq == 2);
                done[comp.job_seq]++;
                const sl_result_report_t *r = &comp.report;
                assert_int_equal(r->res.status, SL_JOB_OK);
                assert_int_equal(r->n_tokens, XS_NEW);
                assert_int_equal(r->res.output_tokens, XS_NEW);
                assert_int_equal(r->prompt_tokens, XS_PROMPT);
                uint32_t had = comp.job_seq == 1 ? 5 : XS_NEW;
                for (uint32_t k = 0; k < XS_NEW; k++)
                    if (k < had || expect)
                        assert_int_equal(r->tokens[k], k < had ? resume[k] : expect[k]);
            }
            if (done[1] && done[2])
                quiet_until = sl_clock_now() + SL_MS(300); /* nothing more may come */
        }
        sl_wire_msg_free(&m);
    }
    assert_int_equal(done[1], 1);
    assert_int_equal(done[2], 1);
    assert_int_equal(done[3], 0);
    assert_int_equal(next, XS_NEW);
}

/* A real ref executor given resumed dispatches goes on after the tokens
 * the client has: the uninterrupted run's tokens (greedy decoding of the
 * prompt and the delivered tokens computed as prompt). */
static void test_ref_executor_resumes(void **state)
{
    (void)state;
    sl_backend_params_t params = {
        .model = "tiny", .weights = "", .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    sl_model_t *model = NULL;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);
    uint32_t prompt[XS_PROMPT], expect[XS_NEW + 1];
    for (uint32_t i = 0; i < XS_PROMPT; i++)
        prompt[i] = (i * 37u + 11u) % mcfg.vocab;
    assert_int_equal(sl_model_generate(model, prompt, XS_PROMPT, XS_NEW, expect, NULL), SL_OK);
    sl_model_destroy(&model);
    expect[XS_NEW] = 1;

    static cl_t c;
    const char *args[] = {"--backend=ref",    "--model=tiny",      "--device=cpu",
                          "--chunk-tokens=1", "--log-level=error", NULL};
    sl_wire_ident_t who;
    void *sched = s_scripted(&c, "xresume", args, &who);
    s_check_resumes(sched, &who, prompt, expect, expect);
    zmq_close(sched);
    cl_fini(&c);
}

/* The sim backend resumes with the right count and offsets, for a prompt
 * of token ids and one given by its length. */
static void test_sim_executor_resumes(void **state)
{
    (void)state;
    uint32_t prompt[XS_PROMPT], resume[XS_NEW + 1];
    for (uint32_t i = 0; i < XS_PROMPT; i++)
        prompt[i] = i + 1;
    for (uint32_t i = 0; i <= XS_NEW; i++)
        resume[i] = 900 + i;
    static cl_t c;
    const char *args[] = {"--backend=sim", "--chunk-tokens=2", "--log-level=error", NULL};
    sl_wire_ident_t who;
    void *sched = s_scripted(&c, "xsim", args, &who);
    s_check_resumes(sched, &who, prompt, resume, NULL);
    s_check_resumes(sched, &who, NULL, resume, NULL);
    zmq_close(sched);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_executor_resumes),
        cmocka_unit_test(test_sim_executor_resumes),
        cmocka_unit_test(test_stream_survives_executor_kill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
