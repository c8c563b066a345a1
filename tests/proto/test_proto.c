/* Unit tests of the validation layer: every decoded message is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "proto/sl_proto.h"

#include <zmq.h>

static uint8_t s_buf[1 << 20];

/* Pack a submit built from the fields below and decode it back. */
typedef struct {
    const char *id;
    uint32_t length;
    uint32_t n_ids;
    uint32_t n_hashes;
    uint32_t block_tokens;
    uint32_t max_new;
    int prio;
    uint32_t version;
    const char *tenant;
} submit_t;

static sl_status_t s_roundtrip(const submit_t *in, char *err)
{
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit s = SLUICE__SUBMIT__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    uint32_t *ids = calloc(in->n_ids + 1, sizeof(uint32_t));
    uint64_t *hashes = calloc(in->n_hashes + 1, sizeof(uint64_t));
    p.length = in->length;
    p.token_ids = ids;
    p.n_token_ids = in->n_ids;
    p.block_hashes = hashes;
    p.n_block_hashes = in->n_hashes;
    p.block_tokens = in->block_tokens;
    j.id = (char *)in->id;
    j.tenant = (char *)(in->tenant ? in->tenant : "");
    j.prompt = &p;
    j.max_new_tokens = in->max_new;
    j.priority = (Sluice__Priority)in->prio;
    s.job = &j;
    env.version = in->version;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    size_t len = sluice__envelope__pack(&env, s_buf);
    sl_msg_t *m = NULL;
    sl_status_t st = sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256);
    if (st == SL_OK) {
        assert_non_null(m);
        assert_string_equal(m->submit->job->id, in->id);
        sl_proto_free(&m);
        assert_null(m);
    } else {
        assert_null(m);
        assert_true(strlen(err) > 0);
    }
    free(ids);
    free(hashes);
    return st;
}

static void test_valid_submit(void **state)
{
    char err[256];
    submit_t ok = {.id = "a", .length = 100, .max_new = 10, .version = 1};
    assert_int_equal(s_roundtrip(&ok, err), SL_OK);
    submit_t trace = {.id = "t", .length = 1024, .n_hashes = 2, .block_tokens = 512,
                      .max_new = 10, .version = 1, .prio = 1};
    assert_int_equal(s_roundtrip(&trace, err), SL_OK);
    submit_t ids = {.id = "i", .n_ids = 50, .max_new = 1, .version = 1};
    assert_int_equal(s_roundtrip(&ids, err), SL_OK);
}

static void test_invalid_submit(void **state)
{
    char err[256], longid[200];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    submit_t cases[] = {
        {.id = "", .length = 10, .max_new = 1, .version = 1},             /* empty id */
        {.id = longid, .length = 10, .max_new = 1, .version = 1},         /* id too long */
        {.id = "a", .length = 0, .max_new = 1, .version = 1},             /* empty prompt */
        {.id = "a", .length = 10, .max_new = 0, .version = 1},            /* no output */
        {.id = "a", .length = 10, .max_new = 1000000, .version = 1},      /* too much output */
        {.id = "a", .length = 10, .max_new = 1, .version = 2},            /* version */
        {.id = "a", .length = 10, .max_new = 1, .version = 1, .prio = 5}, /* enum */
        {.id = "a", .length = 5, .n_ids = 10, .max_new = 1, .version = 1},/* length < ids */
        {.id = "a", .length = 11, .n_ids = 10, .max_new = 1, .version = 1},/* length > ids */
        {.id = "a", .length = 2000000, .max_new = 1, .version = 1},       /* huge prompt */
        {.id = "a", .length = 100, .n_hashes = 3, .block_tokens = 512, .max_new = 1,
         .version = 1},                                                   /* hashes > prompt */
        {.id = "a", .length = 100, .n_hashes = 1, .block_tokens = 0, .max_new = 1,
         .version = 1},                                                   /* no block size */
    };
    sl_status_t expect[] = {SL_ERR_MSG_RANGE, SL_ERR_MSG_TOO_BIG, SL_ERR_MSG_RANGE,
                            SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE, SL_ERR_MSG_VERSION,
                            SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE,
                            SL_ERR_MSG_TOO_BIG,
                            SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(s_roundtrip(&cases[i], err), expect[i]);
}

static void test_malformed_bytes(void **state)
{
    char err[256];
    sl_msg_t *m = NULL;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(sl_proto_decode(junk, sizeof(junk), &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_proto_decode(junk, 0, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
    sl_proto_limits_t small = sl_proto_limits_default;
    small.max_msg_bytes = 3;
    assert_int_equal(sl_proto_decode(junk, sizeof(junk), &small, &m, err, 256),
                     SL_ERR_MSG_TOO_BIG);
    /* an envelope with no body */
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    env.version = 1;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
    /* every truncation of a valid message is refused or decodes to a valid one */
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit s = SLUICE__SUBMIT__INIT;
    p.length = 10;
    j.id = "truncate-me";
    j.prompt = &p;
    j.max_new_tokens = 3;
    s.job = &j;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    len = sluice__envelope__pack(&env, s_buf);
    for (size_t cut = 1; cut < len; cut++) {
        sl_status_t st = sl_proto_decode(s_buf, cut, &sl_proto_limits_default, &m, err, 256);
        assert_int_not_equal(st, SL_OK);
    }
}

static void test_hello_limits(void **state)
{
    char err[256];
    Sluice__ExecutorHello h = SLUICE__EXECUTOR_HELLO__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT, *m = NULL;
    env.version = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    h.name = "e1";
    h.slots = 0;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    h.slots = 8;
    h.speed = -1;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    h.speed = 1;
    h.kv_block_tokens = 65537;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    h.kv_block_tokens = 65536;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    sl_proto_free(&m);
}

/* A heartbeat's load: utilizations in [0, 1] (with slack), GPU memory used
 * within its total; unmeasured values (has_ false) travel as 0. */
static void test_heartbeat_load(void **state)
{
    char err[256];
    Sluice__Load l = SLUICE__LOAD__INIT;
    Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT, *m = NULL;
    env.version = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    hb.load = &l;
    l.busy = 0.5f;
    l.has_cpu_util = 1;
    l.cpu_util = 0.25f;
    l.has_gpu_mem = 1;
    l.gpu_mem_used_bytes = 1u << 20;
    l.gpu_mem_total_bytes = 1u << 30;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_true(m->heartbeat->load->has_cpu_util);
    assert_false(m->heartbeat->load->has_gpu_util);
    assert_true(m->heartbeat->load->busy == 0.5f);
    assert_int_equal(m->heartbeat->load->gpu_mem_total_bytes, 1u << 30);
    sl_proto_free(&m);
    l.busy = 2.0f;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    l.busy = 0.5f;
    l.gpu_mem_used_bytes = l.gpu_mem_total_bytes + 1;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
}

static void test_completion_batch(void **state)
{
    char err[256];
    Sluice__Completion c[2] = {SLUICE__COMPLETION__INIT, SLUICE__COMPLETION__INIT}, *cp[2];
    Sluice__Result r = SLUICE__RESULT__INIT;
    Sluice__CompletionBatch b = SLUICE__COMPLETION_BATCH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT, *m = NULL;
    r.job_id = "x";
    c[0].result = &r;
    c[1].result = &r;
    cp[0] = &c[0];
    cp[1] = &c[1];
    b.completions = cp;
    b.n_completions = 2;
    env.version = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_COMPLETIONS;
    env.completions = &b;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->completions->n_completions, 2);
    sl_proto_free(&m);
    sl_proto_limits_t one = sl_proto_limits_default;
    one.max_batch = 1;
    assert_int_equal(sl_proto_decode(s_buf, len, &one, &m, err, 256), SL_ERR_MSG_TOO_BIG);
    c[1].result = NULL; /* a completion without its result */
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
}

/* A PAIR of inproc sockets for framing tests. */
typedef struct {
    void *ctx, *tx, *rx;
} pair_t;

static void s_pair_open(pair_t *p, const char *name)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "inproc://%s", name);
    p->ctx = zmq_ctx_new();
    p->rx = zmq_socket(p->ctx, ZMQ_PAIR);
    p->tx = zmq_socket(p->ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(p->rx, ep), 0);
    assert_int_equal(zmq_connect(p->tx, ep), 0);
}

static void s_pair_close(pair_t *p)
{
    zmq_close(p->tx);
    zmq_close(p->rx);
    zmq_ctx_term(p->ctx);
}

/* Receive one raw frame into s_buf; returns its length. */
static size_t s_recv_raw(pair_t *p)
{
    int n = zmq_recv(p->rx, s_buf, sizeof(s_buf), 0);
    assert_true(n > 0);
    return (size_t)n;
}

static void s_dispatch_init(Sluice__Dispatch *d, Sluice__Job *j, Sluice__Prompt *p,
                            const char *id, uint64_t seq, uint32_t max_new)
{
    sluice__dispatch__init(d);
    sluice__job__init(j);
    sluice__prompt__init(p);
    p->length = 16;
    j->id = (char *)id;
    j->prompt = p;
    j->max_new_tokens = max_new;
    d->job = j;
    d->job_seq = seq;
    d->attempt = 1;
}

/* The batch builder writes exactly what protobuf-c packs for the same
 * DispatchBatch, and each item is checked on its own: a bad one fails, the
 * others pass. */
static void test_dispatch_batch(void **state)
{
    char err[256];
    Sluice__Dispatch d[3], *dp[3];
    Sluice__Job j[3];
    Sluice__Prompt p[3];
    s_dispatch_init(&d[0], &j[0], &p[0], "a", 10, 4);
    s_dispatch_init(&d[1], &j[1], &p[1], "b", 11, 0); /* bad: no new tokens */
    s_dispatch_init(&d[2], &j[2], &p[2], "c", 12, 4);
    pair_t pr;
    s_pair_open(&pr, "proto-dispatch");
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_DISPATCHES);
    for (int i = 0; i < 3; i++) {
        dp[i] = &d[i];
        if (i == 1) {
            assert_int_equal(sl_wire_batch_add(&b, 1, &d[i].base), SL_OK);
        } else { /* the hand-nested form packs the same bytes */
            static const uint32_t vf[2] = {2, 3};
            uint64_t vv[2] = {d[i].job_seq, d[i].attempt};
            assert_int_equal(sl_wire_batch_add_nested(&b, 1, 1, &j[i].base, vf, vv, 2), SL_OK);
        }
    }
    assert_int_equal(b.n, 3);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, 0, &b, 0), SL_OK);
    assert_int_equal(b.n, 0);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, 0, &b, 0), SL_OK); /* empty: nothing */
    size_t len = s_recv_raw(&pr);

    static uint8_t ref[1 << 16];
    Sluice__DispatchBatch db = SLUICE__DISPATCH_BATCH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    db.dispatches = dp;
    db.n_dispatches = 3;
    env.version = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_DISPATCHES;
    env.dispatches = &db;
    size_t ref_len = sluice__envelope__pack(&env, ref);
    assert_int_equal(len, ref_len);
    assert_memory_equal(s_buf, ref, len);

    sl_msg_t *m = NULL;
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->dispatches->n_dispatches, 3);
    sl_status_t want[3] = {SL_OK, SL_ERR_MSG_RANGE, SL_OK};
    for (int i = 0; i < 3; i++) {
        const Sluice__Dispatch *x = m->dispatches->dispatches[i];
        assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_DISPATCH, x,
                                                &sl_proto_limits_default, err, 256),
                         want[i]);
        assert_int_equal(x->job_seq, 10 + (uint64_t)i);
    }
    /* Shared by several owners: freed with the last reference. */
    sl_msg_t *r1 = sl_proto_ref(m), *r2 = sl_proto_ref(m);
    sl_proto_free(&m);
    sl_proto_free(&r1);
    assert_string_equal(r2->dispatches->dispatches[2]->job->id, "c");
    sl_proto_free(&r2);
    assert_null(r2);

    /* Truncated: every shorter prefix is refused, none crashes. */
    for (size_t cut = 1; cut < len; cut++) {
        if (sl_proto_decode(s_buf, cut, &sl_proto_limits_default, &m, err, 256) == SL_OK)
            sl_proto_free(&m);
    }
    assert_int_not_equal(sl_proto_decode(s_buf, len - 1, &sl_proto_limits_default, &m, err, 256),
                         SL_OK);
    /* An item that is not a batch item kind. */
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_HELLO, &d[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_DISPATCH, NULL,
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_MALFORMED);
    sl_wire_batch_fini(&b);
    s_pair_close(&pr);
}

/* Batch counts: empty is malformed, more than max_batch is too big. */
static void test_batch_counts(void **state)
{
    char err[256];
    enum { N = 5 };
    Sluice__Submit sub[N], *sp[N];
    Sluice__Job j[N];
    Sluice__Prompt p[N];
    for (int i = 0; i < N; i++) {
        sluice__submit__init(&sub[i]);
        sluice__job__init(&j[i]);
        sluice__prompt__init(&p[i]);
        p[i].length = 8;
        j[i].id = "s";
        j[i].max_new_tokens = 1;
        j[i].prompt = &p[i];
        sub[i].job = &j[i];
        sp[i] = &sub[i];
    }
    Sluice__SubmitBatch sb = SLUICE__SUBMIT_BATCH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT, *m = NULL;
    env.version = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
    env.submits = &sb;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED); /* empty */
    sb.submits = sp;
    sb.n_submits = N;
    len = sluice__envelope__pack(&env, s_buf);
    sl_proto_limits_t lim = sl_proto_limits_default;
    lim.max_batch = N;
    assert_int_equal(sl_proto_decode(s_buf, len, &lim, &m, err, 256), SL_OK);
    sl_proto_free(&m);
    lim.max_batch = N - 1;
    assert_int_equal(sl_proto_decode(s_buf, len, &lim, &m, err, 256), SL_ERR_MSG_TOO_BIG);
    assert_null(m);
    /* A submit item without its job is refused on its own. */
    sub[2].job = NULL;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_SUBMIT, m->submits->submits[2],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_SUBMIT, m->submits->submits[1],
                                            &sl_proto_limits_default, err, 256),
                     SL_OK);
    sl_proto_free(&m);

    /* ResultBatch counts all three lists together. */
    char empty_id[1] = "", *ap[1] = {empty_id}; /* bad: an acceptance names its job */
    Sluice__Busy bz = SLUICE__BUSY__INIT, *bp[1] = {&bz};
    Sluice__Result r = SLUICE__RESULT__INIT, *rp[1] = {&r};
    Sluice__ResultBatch rb = SLUICE__RESULT_BATCH__INIT;
    bz.job_id = "y";
    bz.reason = (Sluice__BusyReason)42; /* bad */
    r.job_id = "z";
    rb.accepted = ap;
    rb.n_accepted = 1;
    rb.busy = bp;
    rb.n_busy = 1;
    rb.results = rp;
    rb.n_results = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_RESULTS;
    env.results = &rb;
    len = sluice__envelope__pack(&env, s_buf);
    lim.max_batch = 2;
    assert_int_equal(sl_proto_decode(s_buf, len, &lim, &m, err, 256), SL_ERR_MSG_TOO_BIG);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    Sluice__Accepted a = SLUICE__ACCEPTED__INIT;
    a.job_id = m->results->accepted[0];
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_ACCEPTED, &a,
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_RANGE);
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_BUSY, m->results->busy[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_RANGE);
    assert_int_equal(sl_proto_validate_item(SLUICE__ENVELOPE__BODY_RESULT, m->results->results[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_OK);
    sl_proto_free(&m);
}

/* A body sent packed decodes like the same envelope packed whole. */
static void test_send_packed(void **state)
{
    char err[256];
    uint8_t body[256];
    Sluice__Result r = SLUICE__RESULT__INIT;
    r.job_id = "packed";
    r.attempts = 2;
    size_t blen = sluice__result__pack(&r, body);
    pair_t pr;
    s_pair_open(&pr, "proto-packed");
    assert_int_equal(sl_wire_send_packed(pr.tx, NULL, 0, SLUICE__ENVELOPE__BODY_RESULT, body, blen,
                                         0),
                     SL_OK);
    size_t len = s_recv_raw(&pr);
    sl_msg_t *m = NULL;
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->body_case, SLUICE__ENVELOPE__BODY_RESULT);
    assert_string_equal(m->result->job_id, "packed");
    assert_int_equal(m->result->attempts, 2);
    sl_proto_free(&m);
    /* Items appended as bytes: a ResultBatch of two cached results. */
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_RESULTS);
    assert_int_equal(sl_wire_batch_add_packed(&b, 3, body, blen), SL_OK);
    assert_int_equal(sl_wire_batch_add_packed(&b, 3, body, blen), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, 0, &b, 0), SL_OK);
    len = s_recv_raw(&pr);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->results->n_results, 2);
    assert_string_equal(m->results->results[1]->job_id, "packed");
    sl_proto_free(&m);
    sl_wire_batch_fini(&b);

    /* A nested item with a varint before the sub-message (Completion) packs
     * like protobuf-c, and a zero varint is left out like proto3. */
    Sluice__Completion comp = SLUICE__COMPLETION__INIT;
    Sluice__Timings t = SLUICE__TIMINGS__INIT;
    t.output_tokens = 3;
    t.exec_end_us = 1234567;
    r.timings = &t;
    comp.result = &r;
    static const uint32_t vf[1] = {1};
    for (uint64_t seq = 0; seq < 300; seq += 299) {
        comp.job_seq = seq;
        Sluice__Completion *cp[1] = {&comp};
        Sluice__CompletionBatch cb = SLUICE__COMPLETION_BATCH__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        cb.completions = cp;
        cb.n_completions = 1;
        env.version = 1;
        env.body_case = SLUICE__ENVELOPE__BODY_COMPLETIONS;
        env.completions = &cb;
        uint8_t want[256];
        size_t want_len = sluice__envelope__pack(&env, want);
        sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_COMPLETIONS);
        assert_int_equal(sl_wire_batch_add_nested(&b, 1, 2, &r.base, vf, &seq, 1), SL_OK);
        assert_int_equal(sl_wire_batch_send(pr.tx, NULL, 0, &b, 0), SL_OK);
        len = s_recv_raw(&pr);
        assert_int_equal(len, want_len);
        assert_memory_equal(s_buf, want, want_len);
        sl_wire_batch_fini(&b);
    }
    s_pair_close(&pr);
}

/* Random corruptions of valid batches: every one is refused or decodes to
 * items that validate or fail one by one; none crashes (ASan build). */
static void test_batch_corruption(void **state)
{
    char err[256];
    static uint8_t good[4096], bad[4096];
    Sluice__Dispatch d[3];
    Sluice__Job j[3];
    Sluice__Prompt p[3];
    sl_wire_batch_t b;
    pair_t pr;
    s_pair_open(&pr, "proto-fuzz");
    sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_DISPATCHES);
    for (int i = 0; i < 3; i++) {
        s_dispatch_init(&d[i], &j[i], &p[i], "fuzz", (uint64_t)i + 1, 4);
        assert_int_equal(sl_wire_batch_add(&b, 1, &d[i].base), SL_OK);
    }
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, 0, &b, 0), SL_OK);
    size_t len = s_recv_raw(&pr);
    memcpy(good, s_buf, len);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int decoded = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(bad, good, len);
        int flips = 1 + round % 4;
        for (int f = 0; f < flips; f++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bad[x % len] = (uint8_t)(x >> 32);
        }
        size_t cut = round % 5 == 0 ? (size_t)(x >> 40) % len + 1 : len;
        sl_msg_t *m = NULL;
        if (sl_proto_decode(bad, cut, &sl_proto_limits_default, &m, err, sizeof(err)) != SL_OK)
            continue;
        decoded++;
        if (m->body_case == SLUICE__ENVELOPE__BODY_DISPATCHES)
            for (size_t i = 0; i < m->dispatches->n_dispatches; i++)
                (void)sl_proto_validate_item(SLUICE__ENVELOPE__BODY_DISPATCH,
                                             m->dispatches->dispatches[i],
                                             &sl_proto_limits_default, err, sizeof(err));
        sl_proto_free(&m);
    }
    assert_true(decoded > 0);
    sl_wire_batch_fini(&b);
    s_pair_close(&pr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_submit),
        cmocka_unit_test(test_invalid_submit),
        cmocka_unit_test(test_malformed_bytes),
        cmocka_unit_test(test_hello_limits),
        cmocka_unit_test(test_heartbeat_load),
        cmocka_unit_test(test_completion_batch),
        cmocka_unit_test(test_dispatch_batch),
        cmocka_unit_test(test_batch_counts),
        cmocka_unit_test(test_send_packed),
        cmocka_unit_test(test_batch_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
