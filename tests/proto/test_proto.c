/* Unit tests of the validation layer: every decoded message is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proto/sl_proto.h"
#include "common/sl_clock.h"

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
    Sluice__Submit s = SLUICE__SUBMIT__INIT, *sp = &s;
    Sluice__SubmitBatch sb = SLUICE__SUBMIT_BATCH__INIT;
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
    sb.submits = &sp;
    sb.n_submits = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
    env.submits = &sb;
    size_t len = sluice__envelope__pack(&env, s_buf);
    sl_msg_t *m = NULL;
    sl_status_t st = sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256);
    if (st == SL_OK) {
        /* the item is checked when it is read */
        assert_non_null(m);
        sl_job_desc_t d;
        st = sl_wire_submit_get((sl_wire_msg_t *)m, 0, &sl_proto_limits_default, &d, err, 256);
        if (st == SL_OK)
            assert_string_equal(d.id, in->id);
        else
            assert_true(strlen(err) > 0);
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
    submit_t ok = {.id = "a", .length = 100, .max_new = 10, .version = SL_PROTO_VERSION};
    assert_int_equal(s_roundtrip(&ok, err), SL_OK);
    submit_t trace = {.id = "t",
                      .length = 1024,
                      .n_hashes = 2,
                      .block_tokens = 512,
                      .max_new = 10,
                      .version = SL_PROTO_VERSION,
                      .prio = 1};
    assert_int_equal(s_roundtrip(&trace, err), SL_OK);
    submit_t ids = {.id = "i", .n_ids = 50, .max_new = 1, .version = SL_PROTO_VERSION};
    assert_int_equal(s_roundtrip(&ids, err), SL_OK);
}

static void test_invalid_submit(void **state)
{
    char err[256], longid[200];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    submit_t cases[] = {
        {.id = "", .length = 10, .max_new = 1, .version = SL_PROTO_VERSION},     /* empty id */
        {.id = longid, .length = 10, .max_new = 1, .version = SL_PROTO_VERSION}, /* id too long */
        {.id = "a", .length = 0, .max_new = 1, .version = SL_PROTO_VERSION},     /* empty prompt */
        {.id = "a", .length = 10, .max_new = 0, .version = SL_PROTO_VERSION},    /* no output */
        {.id = "a",
         .length = 10,
         .max_new = 1000000,
         .version = SL_PROTO_VERSION},                          /* too much output */
        {.id = "a", .length = 10, .max_new = 1, .version = 99}, /* version */
        {.id = "a", .length = 10, .max_new = 1, .version = SL_PROTO_VERSION, .prio = 5}, /* enum */
        {.id = "a",
         .length = 5,
         .n_ids = 10,
         .max_new = 1,
         .version = SL_PROTO_VERSION}, /* length < ids */
        {.id = "a",
         .length = 11,
         .n_ids = 10,
         .max_new = 1,
         .version = SL_PROTO_VERSION}, /* length > ids */
        {.id = "a", .length = 2000000, .max_new = 1, .version = SL_PROTO_VERSION}, /* huge prompt */
        {.id = "a",
         .length = 100,
         .n_hashes = 3,
         .block_tokens = 512,
         .max_new = 1,
         .version = SL_PROTO_VERSION}, /* hashes > prompt */
        {.id = "a",
         .length = 100,
         .n_hashes = 1,
         .block_tokens = 0,
         .max_new = 1,
         .version = SL_PROTO_VERSION}, /* no block size */
    };
    sl_status_t expect[] = {SL_ERR_MSG_RANGE,   SL_ERR_MSG_TOO_BIG, SL_ERR_MSG_RANGE,
                            SL_ERR_MSG_RANGE,   SL_ERR_MSG_RANGE,   SL_ERR_MSG_VERSION,
                            SL_ERR_MSG_RANGE,   SL_ERR_MSG_RANGE,   SL_ERR_MSG_RANGE,
                            SL_ERR_MSG_TOO_BIG, SL_ERR_MSG_RANGE,   SL_ERR_MSG_RANGE};
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
    assert_int_equal(sl_proto_decode(junk, sizeof(junk), &small, &m, err, 256), SL_ERR_MSG_TOO_BIG);
    /* an envelope with no body */
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    env.version = SL_PROTO_VERSION;
    size_t len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
    /* every truncation of a valid message is refused or decodes to a valid one */
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit s = SLUICE__SUBMIT__INIT, *sp = &s;
    Sluice__SubmitBatch sb = SLUICE__SUBMIT_BATCH__INIT;
    p.length = 10;
    j.id = "truncate-me";
    j.prompt = &p;
    j.max_new_tokens = 3;
    s.job = &j;
    sb.submits = &sp;
    sb.n_submits = 1;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
    env.submits = &sb;
    len = sluice__envelope__pack(&env, s_buf);
    for (size_t cut = 1; cut < len; cut++) {
        sl_status_t st = sl_proto_decode(s_buf, cut, &sl_proto_limits_default, &m, err, 256);
        if (st == SL_OK) { /* a shorter batch can still parse: its item must not */
            sl_job_desc_t d;
            st = sl_wire_submit_get((sl_wire_msg_t *)m, 0, &sl_proto_limits_default, &d, err, 256);
            sl_proto_free(&m);
        }
        assert_int_not_equal(st, SL_OK);
    }
}

static void test_hello_limits(void **state)
{
    char err[256];
    Sluice__ExecutorHello h = SLUICE__EXECUTOR_HELLO__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT, *m = NULL;
    env.version = SL_PROTO_VERSION;
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
    env.version = SL_PROTO_VERSION;
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
    /* The step cost model: all six coefficients or none, each finite and
     * within a minute. */
    l.gpu_mem_used_bytes = 1u << 20;
    float cost[SL_STEP_COST_N] = {0.001f, 0.029f, 0.00096f, 0.0056f, 0.0006f, 0.046f};
    l.step_cost = cost;
    l.n_step_cost = SL_STEP_COST_N;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->heartbeat->load->n_step_cost, SL_STEP_COST_N);
    assert_true(m->heartbeat->load->step_cost[SL_SC_DECODE_MCTX] == 0.046f);
    sl_proto_free(&m);
    l.n_step_cost = 5;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    assert_non_null(strstr(err, "step cost has 5 coefficients"));
    l.n_step_cost = SL_STEP_COST_N;
    cost[2] = NAN;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    cost[2] = 1e6f;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_RANGE);
    /* The step clock: the step in progress ends within a minute; the batch
     * decoding in it is bounded; unchecked when not reported. */
    cost[2] = 0.00096f;
    l.has_step_clock = 1;
    l.step_left_us = 4000;
    l.decode_seqs = 32;
    l.decode_ctx_tokens = 1u << 20;
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->heartbeat->load->step_left_us, 4000);
    sl_proto_free(&m);
    uint64_t bad[5][5] = {{60000001u, 32, 1, 1, 1},
                          {4000, (1u << 24) + 1, 1, 1, 1},
                          {4000, 32, (1ull << 40) + 1, 1, 1},
                          {4000, 32, 1, (1ull << 40) + 1, 1},
                          {4000, 32, 1, 1, (1ull << 62) + 1}};
    for (int i = 0; i < 5; i++) {
        l.step_left_us = (uint32_t)bad[i][0];
        l.decode_seqs = (uint32_t)bad[i][1];
        l.decode_ctx_tokens = bad[i][2];
        l.prompt_tokens_left = bad[i][3];
        l.prompt_pairs_left = bad[i][4];
        len = sluice__envelope__pack(&env, s_buf);
        assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                         SL_ERR_MSG_RANGE);
        assert_non_null(strstr(err, "step clock out of range"));
        l.has_step_clock = 0; /* not reported: not judged */
        len = sluice__envelope__pack(&env, s_buf);
        assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256),
                         SL_OK);
        sl_proto_free(&m);
        l.has_step_clock = 1;
    }
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
    env.version = SL_PROTO_VERSION;
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

/* A heartbeat's load through the typed API: the step cost model arrives
 * as sent, and a load without one arrives without one. */
static void test_heartbeat_step_cost(void **state)
{
    char err[256];
    pair_t pr;
    s_pair_open(&pr, "proto-hb-cost");
    sl_exec_load_t load = {.running_jobs = 3,
                           .has_step_cost = true,
                           .step_cost = {0.001f, 0.029f, 0.00096f, 0.0056f, 0.0006f, 0.046f},
                           .has_step_clock = true,
                           .step_left_us = 4321,
                           .decode_seqs = 17,
                           .decode_ctx = 5000000000ull,
                           .prompt_tokens = 3000,
                           .prompt_pairs = 4500000};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(sl_wire_heartbeat_send(pr.tx, 7, &load, 0), SL_OK);
        sl_wire_ident_t none;
        sl_wire_msg_t *m = NULL;
        assert_int_equal(
            sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
            SL_OK);
        uint64_t seq = 0;
        sl_exec_load_t got;
        sl_wire_heartbeat_get(m, &seq, &got);
        assert_int_equal(seq, 7);
        assert_int_equal(got.running_jobs, 3);
        assert_int_equal(got.has_step_cost, load.has_step_cost);
        if (load.has_step_cost)
            assert_memory_equal(got.step_cost, load.step_cost, sizeof(got.step_cost));
        /* the step clock, and nothing of it when not reported */
        assert_int_equal(got.has_step_clock, load.has_step_clock);
        assert_int_equal(got.step_left_us, load.has_step_clock ? 4321 : 0);
        assert_int_equal(got.decode_seqs, load.has_step_clock ? 17 : 0);
        assert_true(got.decode_ctx == (load.has_step_clock ? 5000000000ull : 0));
        assert_true(got.prompt_tokens == (load.has_step_clock ? 3000 : 0));
        assert_true(got.prompt_pairs == (load.has_step_clock ? 4500000 : 0));
        sl_wire_msg_free(&m);
        load.has_step_cost = false;
        load.has_step_clock = false;
    }
    s_pair_close(&pr);
}

/* Receive one raw frame into s_buf; returns its length. */
static size_t s_recv_raw(pair_t *p)
{
    int n = zmq_recv(p->rx, s_buf, sizeof(s_buf), 0);
    assert_true(n > 0);
    return (size_t)n;
}

/* The data-plane fields of a hello: sent by the typed sender and read back by
 * the neutral reader; a key larger than max_kv_rkey is refused as too big,
 * a key without an address or a region size as malformed. A status reply
 * carries whether each executor has a data plane and its region size. */
static void test_hello_data_plane(void **state)
{
    char err[256];
    pair_t pr;
    sl_wire_ident_t none;
    sl_wire_msg_t *m = NULL;
    s_pair_open(&pr, "hello-dp");
    static uint8_t addr[300], rkey[4097];
    for (size_t i = 0; i < sizeof(addr); i++)
        addr[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof(rkey); i++)
        rkey[i] = (uint8_t)(i * 13 + 1);
    sl_wire_hello_t h = {.info = {.name = "e1",
                                  .slots = 4,
                                  .backend = "sim",
                                  .kv_region_bytes = 3u << 20,
                                  .role = SL_ROLE_DECODE},
                         .zone = "",
                         .xport_address = addr,
                         .xport_address_len = sizeof(addr),
                         .kv_rkey = rkey,
                         .kv_rkey_len = 56};
    assert_int_equal(sl_wire_hello_send(pr.tx, &h, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_HELLO);
    sl_wire_hello_t got;
    sl_wire_hello_get(m, &got);
    assert_int_equal(got.xport_address_len, sizeof(addr));
    assert_memory_equal(got.xport_address, addr, sizeof(addr));
    assert_int_equal(got.kv_rkey_len, 56);
    assert_memory_equal(got.kv_rkey, rkey, 56);
    assert_int_equal(got.info.kv_region_bytes, 3u << 20);
    assert_int_equal(got.info.role, SL_ROLE_DECODE);
    sl_wire_msg_free(&m);

    /* without a data plane the fields stay empty; its step budget goes
     * with it, and one above 2^24 tokens is refused */
    sl_wire_hello_t plain = {.info = {.name = "e2", .slots = 4, .step_tokens = 1024}, .zone = ""};
    assert_int_equal(sl_wire_hello_send(pr.tx, &plain, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_hello_get(m, &got);
    assert_int_equal(got.info.step_tokens, 1024);
    assert_int_equal(got.xport_address_len, 0);
    assert_null(got.kv_rkey);
    assert_int_equal(got.kv_rkey_len, 0);
    assert_int_equal(got.info.kv_region_bytes, 0);
    assert_int_equal(got.info.role, SL_ROLE_MIXED);
    sl_wire_msg_free(&m);
    plain.info.step_tokens = (1u << 24) + 1;
    assert_int_equal(sl_wire_hello_send(pr.tx, &plain, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_RANGE);
    assert_non_null(strstr(err, "step tokens"));
    plain.info.step_tokens = 0;

    /* a key one byte over the limit */
    assert_int_equal(sizeof(rkey), sl_proto_limits_default.max_kv_rkey + 1);
    h.kv_rkey_len = sizeof(rkey);
    assert_int_equal(sl_wire_hello_send(pr.tx, &h, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_TOO_BIG);
    assert_non_null(strstr(err, "kv rkey"));
    assert_null(m);
    h.kv_rkey_len = sl_proto_limits_default.max_kv_rkey;
    assert_int_equal(sl_wire_hello_send(pr.tx, &h, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_msg_free(&m);

    /* a key without an address, or without a region size */
    h.kv_rkey_len = 56;
    h.xport_address_len = 0;
    assert_int_equal(sl_wire_hello_send(pr.tx, &h, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_MALFORMED);
    h.xport_address_len = sizeof(addr);
    h.info.kv_region_bytes = 0;
    assert_int_equal(sl_wire_hello_send(pr.tx, &h, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_MALFORMED);

    /* the status reply's per-executor data plane */
    sl_wire_exec_status_t es[2] = {
        {.name = "a",
         .backend = "sim",
         .slots = 1,
         .data_plane = true,
         .kv_region_bytes = 5u << 20},
        {.name = "b", .backend = "sim", .slots = 1},
    };
    sl_wire_status_t st = {.n_executors = 2, .policy = "x"};
    assert_int_equal(sl_wire_status_reply_send(pr.tx, NULL, &st, es, NULL, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_exec_status_t e;
    sl_wire_status_exec_get(m, 0, &e);
    assert_true(e.data_plane);
    assert_int_equal(e.kv_region_bytes, 5u << 20);
    sl_wire_status_exec_get(m, 1, &e);
    assert_false(e.data_plane);
    assert_int_equal(e.kv_region_bytes, 0);
    sl_wire_msg_free(&m);
    s_pair_close(&pr);
}

/* Peers and PeerReach: sent by the typed senders and read back by the
 * neutral readers; an empty Peers, too many peers, a live peer without an
 * address or key, and an oversized address or key are refused. The status
 * reply carries the reachability counts. */
static void test_peers(void **state)
{
    (void)state;
    char err[256];
    pair_t pr;
    sl_wire_ident_t none;
    sl_wire_msg_t *m = NULL;
    s_pair_open(&pr, "peers");
    static uint8_t addr[8193], rkey[4097];
    for (size_t i = 0; i < sizeof(addr); i++)
        addr[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(rkey); i++)
        rkey[i] = (uint8_t)(i * 13 + 1);
    sl_wire_peer_t ps[2] = {
        {.executor_index = 3,
         .name = "e3",
         .xport_address = addr,
         .xport_address_len = 200,
         .kv_rkey = rkey,
         .kv_rkey_len = 40,
         .kv_region_bytes = 1u << 20},
        {.executor_index = 7, .name = "e7", .gone = true},
    };
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 2, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_PEERS);
    assert_string_equal(sl_wire_kind_name(SL_WIRE_PEERS), "peers");
    assert_int_equal(sl_wire_msg_count(m), 2);
    sl_wire_peer_t got;
    sl_wire_peer_get(m, 0, &got);
    assert_int_equal(got.executor_index, 3);
    assert_string_equal(got.name, "e3");
    assert_int_equal(got.xport_address_len, 200);
    assert_memory_equal(got.xport_address, addr, 200);
    assert_int_equal(got.kv_rkey_len, 40);
    assert_memory_equal(got.kv_rkey, rkey, 40);
    assert_int_equal(got.kv_region_bytes, 1u << 20);
    assert_false(got.gone);
    sl_wire_peer_get(m, 1, &got);
    assert_int_equal(got.executor_index, 7);
    assert_true(got.gone);
    assert_int_equal(got.xport_address_len, 0);
    assert_null(got.kv_rkey);
    sl_wire_msg_free(&m);

    /* refused: empty, an address or key one byte over, a live peer
     * without a key, more peers than the limit */
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 0, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_MALFORMED);
    assert_null(m);
    assert_int_equal(sizeof(addr), sl_proto_limits_default.max_xport_address + 1);
    ps[0].xport_address_len = sizeof(addr);
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 1, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_TOO_BIG);
    assert_non_null(strstr(err, "xport address"));
    ps[0].xport_address_len = 200;
    ps[0].kv_rkey_len = sizeof(rkey);
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 1, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_TOO_BIG);
    assert_non_null(strstr(err, "kv rkey"));
    ps[0].kv_rkey_len = 0;
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 1, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_MALFORMED);
    ps[0].kv_rkey_len = 40;
    sl_proto_limits_t lim = sl_proto_limits_default;
    lim.max_peers = 1;
    assert_int_equal(sl_wire_peers_send(pr.tx, NULL, ps, 2, 0), SL_OK);
    assert_int_equal(sl_wire_recv(pr.rx, 0, 0, &lim, &none, &m, err, sizeof(err)),
                     SL_ERR_MSG_TOO_BIG);
    assert_null(m);

    /* a reach report, and one with an oversized error */
    sl_wire_peer_reach_t r = {.peer_index = 3, .reachable = true, .rtt_us = 250, .error = ""};
    assert_int_equal(sl_wire_peer_reach_send(pr.tx, &r, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_PEER_REACH);
    sl_wire_peer_reach_t rg;
    sl_wire_peer_reach_get(m, &rg);
    assert_int_equal(rg.peer_index, 3);
    assert_true(rg.reachable);
    assert_int_equal(rg.rtt_us, 250);
    assert_string_equal(rg.error, "");
    sl_wire_msg_free(&m);
    static char long_err[1100];
    memset(long_err, 'x', sizeof(long_err) - 1);
    r = (sl_wire_peer_reach_t){.peer_index = 3, .error = long_err};
    assert_int_equal(sl_wire_peer_reach_send(pr.tx, &r, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)),
        SL_ERR_MSG_TOO_BIG);

    /* the status reply's reachability counts */
    sl_wire_exec_status_t es = {.name = "a",
                                .backend = "sim",
                                .slots = 1,
                                .data_plane = true,
                                .kv_region_bytes = 1u << 20,
                                .peers_reachable = 2,
                                .peers_unreachable = 1};
    sl_wire_status_t st = {.n_executors = 1, .policy = "x"};
    assert_int_equal(sl_wire_status_reply_send(pr.tx, NULL, &st, &es, NULL, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_exec_status_t e;
    sl_wire_status_exec_get(m, 0, &e);
    assert_int_equal(e.peers_reachable, 2);
    assert_int_equal(e.peers_unreachable, 1);
    sl_wire_msg_free(&m);
    s_pair_close(&pr);
}

static void s_dispatch_init(Sluice__Dispatch *d, Sluice__Job *j, Sluice__Prompt *p, const char *id,
                            uint64_t seq, uint32_t max_new)
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
    sl_wire_batch_init(&b, SL_WIRE_DISPATCHES);
    for (int i = 0; i < 3; i++) {
        dp[i] = &d[i];
        if (i == 1) {
            assert_int_equal(sl_proto_batch_add(&b, 1, &d[i].base), SL_OK);
        } else { /* the hand-nested form packs the same bytes */
            static const uint32_t vf[2] = {2, 3};
            uint64_t vv[2] = {d[i].job_seq, d[i].attempt};
            assert_int_equal(sl_proto_batch_add_nested(&b, 1, 1, &j[i].base, vf, vv, 2), SL_OK);
        }
    }
    assert_int_equal(b.n, 3);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
    assert_int_equal(b.n, 0);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK); /* empty: nothing */
    size_t len = s_recv_raw(&pr);

    static uint8_t ref[1 << 16];
    Sluice__DispatchBatch db = SLUICE__DISPATCH_BATCH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    db.dispatches = dp;
    db.n_dispatches = 3;
    env.version = SL_PROTO_VERSION;
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
        assert_int_equal(
            sl_proto_validate_item(SL_PROTO_ITEM_DISPATCH, x, &sl_proto_limits_default, err, 256),
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
    assert_int_equal(
        sl_proto_validate_item((sl_proto_item_t)77, &d[0], &sl_proto_limits_default, err, 256),
        SL_ERR_MSG_MALFORMED);
    assert_int_equal(
        sl_proto_validate_item(SL_PROTO_ITEM_DISPATCH, NULL, &sl_proto_limits_default, err, 256),
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
    env.version = SL_PROTO_VERSION;
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
    assert_int_equal(sl_proto_validate_item(SL_PROTO_ITEM_SUBMIT, m->submits->submits[2],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_proto_validate_item(SL_PROTO_ITEM_SUBMIT, m->submits->submits[1],
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
    assert_int_equal(sl_proto_validate_item(SL_PROTO_ITEM_ACCEPTED, m->results->accepted[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_RANGE);
    assert_int_equal(sl_proto_validate_item(SL_PROTO_ITEM_BUSY, m->results->busy[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_ERR_MSG_RANGE);
    assert_int_equal(sl_proto_validate_item(SL_PROTO_ITEM_RESULT, m->results->results[0],
                                            &sl_proto_limits_default, err, 256),
                     SL_OK);
    sl_proto_free(&m);
}

/* Items appended as bytes decode like the same items packed by protobuf-c. */
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
    size_t len;
    sl_msg_t *m = NULL;
    /* A ResultBatch of two cached results. */
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_RESULTS);
    assert_int_equal(sl_proto_batch_add_packed(&b, 3, body, blen), SL_OK);
    assert_int_equal(sl_proto_batch_add_packed(&b, 3, body, blen), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
    len = s_recv_raw(&pr);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    assert_int_equal(m->results->n_results, 2);
    assert_string_equal(m->results->results[1]->job_id, "packed");
    assert_int_equal(m->results->results[1]->attempts, 2);
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
        env.version = SL_PROTO_VERSION;
        env.body_case = SLUICE__ENVELOPE__BODY_COMPLETIONS;
        env.completions = &cb;
        uint8_t want[256];
        size_t want_len = sluice__envelope__pack(&env, want);
        sl_wire_batch_init(&b, SL_WIRE_COMPLETIONS);
        assert_int_equal(sl_proto_batch_add_nested(&b, 1, 2, &r.base, vf, &seq, 1), SL_OK);
        assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
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
    sl_wire_batch_init(&b, SL_WIRE_DISPATCHES);
    for (int i = 0; i < 3; i++) {
        s_dispatch_init(&d[i], &j[i], &p[i], "fuzz", (uint64_t)i + 1, 4);
        assert_int_equal(sl_proto_batch_add(&b, 1, &d[i].base), SL_OK);
    }
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
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
                (void)sl_proto_validate_item(SL_PROTO_ITEM_DISPATCH, m->dispatches->dispatches[i],
                                             &sl_proto_limits_default, err, sizeof(err));
        sl_proto_free(&m);
    }
    assert_true(decoded > 0);
    sl_wire_batch_fini(&b);
    s_pair_close(&pr);
}

/* Version 2 has no single-message bodies: the Envelope has no field for
 * them, and bytes that carry one (a version 1 Submit) are refused; a
 * message of another version is refused as such before its body is read. */
static void test_single_bodies_gone(void **state)
{
    char err[256];
    static const uint32_t gone[] = {10, 11, 12, 13, 19, 20};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_null(
            protobuf_c_message_descriptor_get_field(&sluice__envelope__descriptor, gone[i]));
    /* Envelope{version, submit = 10 {job = 1 {id = 1 "a"}}} */
    uint8_t v2[] = {0x08, SL_PROTO_VERSION, 0x52, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'a'};
    sl_msg_t *m = NULL;
    assert_int_equal(sl_proto_decode(v2, sizeof(v2), &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_MALFORMED);
    assert_null(m);
    uint8_t v1[sizeof(v2)];
    memcpy(v1, v2, sizeof(v2));
    v1[1] = 1;
    assert_int_equal(sl_proto_decode(v1, sizeof(v1), &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_VERSION);
    assert_non_null(strstr(err, "protocol version 1 (expected 2)"));
    /* another version with a body that no longer decodes at all */
    uint8_t v3[] = {0x08, 0x03, 0xff, 0xff};
    assert_int_equal(sl_proto_decode(v3, sizeof(v3), &sl_proto_limits_default, &m, err, 256),
                     SL_ERR_MSG_VERSION);
}

/* The typed functions: what one program writes, another reads back the
 * same, and a Job forwarded as bytes arrives as if encoded again. */
static void test_typed_roundtrip(void **state)
{
    char err[256];
    pair_t pr;
    s_pair_open(&pr, "proto-typed");
    uint32_t ids[40];
    for (uint32_t i = 0; i < 40; i++)
        ids[i] = i * 1000u + 7u;
    uint64_t hashes[1] = {0xabcdef};
    sl_job_desc_t job = {.id = "job-1",
                         .tenant = "t",
                         .model = "m",
                         .session_key = "s",
                         .prio = SL_PRIO_BATCH,
                         .token_ids = ids,
                         .n_token_ids = 40,
                         .block_hashes = hashes,
                         .n_block_hashes = 1,
                         .block_tokens = 32,
                         .max_new_tokens = 9,
                         .ttft_deadline = SL_MS(250),
                         .deadline = SL_MS(900),
                         .stream = true};
    /* submitted packed, as libsluice does, with a second job added whole */
    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(
        sl_wire_submit_pack(&job, &sl_proto_limits_default, 8, &mem, &len, err, sizeof(err)),
        SL_OK);
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add_packed(&b, (uint8_t *)mem + 8, len), SL_OK);
    sl_job_desc_t job2 = job;
    job2.id = "job-2";
    assert_int_equal(sl_wire_submit_add(&b, &job2), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
    free(mem);
    sl_wire_ident_t none;
    sl_wire_msg_t *m = NULL;
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_msg_count(m), 2);
    sl_job_desc_t got;
    assert_int_equal(sl_wire_submit_get(m, 1, &sl_proto_limits_default, &got, err, 256), SL_OK);
    assert_string_equal(got.id, "job-2");
    assert_int_equal(sl_wire_submit_get(m, 0, &sl_proto_limits_default, &got, err, 256), SL_OK);
    assert_string_equal(got.id, "job-1");
    assert_string_equal(got.tenant, "t");
    assert_string_equal(got.session_key, "s");
    assert_int_equal(got.prio, SL_PRIO_BATCH);
    assert_int_equal(got.prompt_tokens, 40);
    assert_int_equal(got.n_token_ids, 40);
    assert_memory_equal(got.token_ids, ids, sizeof(ids));
    assert_int_equal(got.n_block_hashes, 1);
    assert_int_equal(got.block_hashes[0], 0xabcdef);
    assert_int_equal(got.ttft_deadline, SL_MS(250));
    assert_int_equal(got.deadline, SL_MS(900));
    assert_true(got.stream);

    /* forwarded as bytes: the same dispatch as one encoded from the job */
    const void *jb[2];
    size_t jl[2];
    for (uint32_t i = 0; i < 2; i++) /* in order, then again out of order */
        assert_int_equal(sl_wire_submit_job_bytes(m, i, &jb[i], &jl[i]), SL_OK);
    assert_int_equal(sl_wire_submit_job_bytes(m, 0, &jb[0], &jl[0]), SL_OK);
    assert_int_equal(sl_wire_submit_job_bytes(m, 2, &jb[1], &jl[1]), SL_ERR_NOT_FOUND);
    assert_int_equal(sl_wire_submit_job_bytes(m, 1, &jb[1], &jl[1]), SL_OK);
    /* the bytes outlive the decoded message through a frame reference */
    sl_wire_frame_t *frame = sl_wire_msg_frame(m);
    assert_non_null(frame);
    sl_wire_msg_free(&m);
    assert_null(m);
    static uint8_t fwd[4096], enc[4096];
    sl_wire_batch_t d;
    sl_wire_batch_init(&d, SL_WIRE_DISPATCHES);
    assert_int_equal(sl_wire_dispatch_add_job_bytes(&d, jb[0], jl[0], 300, 2), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &d, 0), SL_OK);
    int n_fwd = zmq_recv(pr.rx, fwd, sizeof(fwd), 0);
    assert_int_equal(sl_wire_dispatch_add(&d, &job, 300, 2), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &d, 0), SL_OK);
    int n_enc = zmq_recv(pr.rx, enc, sizeof(enc), 0);
    assert_true(n_fwd > 40);
    assert_int_equal(n_fwd, n_enc);
    assert_memory_equal(fwd, enc, (size_t)n_fwd);
    /* a resumed dispatch: the delivered tokens after the job, read back by
     * both decoders (values of one to three varint bytes) */
    static uint8_t rsm[4096];
    const uint32_t resume[4] = {5, 300, 70000, 0};
    assert_int_equal(sl_wire_dispatch_add_resume(&d, jb[0], jl[0], 301, 3, resume, 4), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &d, 0), SL_OK);
    int n_res = zmq_recv(pr.rx, rsm, sizeof(rsm), 0);
    assert_true(n_res > n_fwd);
    Sluice__Envelope *pe = sluice__envelope__unpack(NULL, (size_t)n_res, rsm);
    assert_non_null(pe);
    assert_int_equal(pe->dispatches->n_dispatches, 1);
    assert_int_equal(pe->dispatches->dispatches[0]->n_resume_tokens, 4);
    assert_memory_equal(pe->dispatches->dispatches[0]->resume_tokens, resume, sizeof(resume));
    sluice__envelope__free_unpacked(pe, NULL);
    sl_msg_t *rm = NULL;
    assert_int_equal(sl_proto_decode(rsm, (size_t)n_res, &sl_proto_limits_default, &rm, err, 256),
                     SL_OK);
    sl_wire_dispatch_t rd;
    assert_int_equal(
        sl_wire_dispatch_get((sl_wire_msg_t *)rm, 0, &sl_proto_limits_default, &rd, err, 256),
        SL_OK);
    assert_int_equal(rd.job_seq, 301);
    assert_int_equal(rd.attempt, 3);
    assert_int_equal(rd.n_resume_tokens, 4);
    assert_memory_equal(rd.resume_tokens, resume, sizeof(resume));
    sl_proto_free(&rm);
    /* more resume tokens than the job's max_new_tokens (9): refused */
    static uint32_t many[10];
    assert_int_equal(sl_wire_dispatch_add_resume(&d, jb[0], jl[0], 302, 2, many, 10), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &d, 0), SL_OK);
    n_res = zmq_recv(pr.rx, rsm, sizeof(rsm), 0);
    assert_int_equal(sl_proto_decode(rsm, (size_t)n_res, &sl_proto_limits_default, &rm, err, 256),
                     SL_OK);
    assert_int_equal(
        sl_wire_dispatch_get((sl_wire_msg_t *)rm, 0, &sl_proto_limits_default, &rd, err, 256),
        SL_ERR_MSG_RANGE);
    sl_proto_free(&rm);
    sl_wire_frame_free(&frame);
    assert_null(frame);
    sl_wire_frame_free(&frame); /* NULL-safe */
    sl_msg_t *dm = NULL;
    assert_int_equal(sl_proto_decode(fwd, (size_t)n_fwd, &sl_proto_limits_default, &dm, err, 256),
                     SL_OK);
    sl_wire_dispatch_t dd;
    assert_int_equal(
        sl_wire_dispatch_get((sl_wire_msg_t *)dm, 0, &sl_proto_limits_default, &dd, err, 256),
        SL_OK);
    assert_int_equal(dd.job_seq, 300);
    assert_int_equal(dd.attempt, 2);
    assert_string_equal(dd.job.id, "job-1");
    assert_int_equal(dd.job.max_new_tokens, 9);
    assert_int_equal(dd.n_resume_tokens, 0);
    assert_null(dd.resume_tokens);
    /* a message not from sl_wire_recv has no bytes to forward */
    assert_int_equal(sl_wire_submit_job_bytes((sl_wire_msg_t *)dm, 0, &jb[0], &jl[0]),
                     SL_ERR_NOT_FOUND);
    assert_null(sl_wire_msg_frame((sl_wire_msg_t *)dm));
    sl_proto_free(&dm);

    /* a completion: the executor's report, read back by the scheduler */
    uint32_t out[3] = {5, 6, 7};
    sl_result_report_t rep = {.res = {.status = SL_JOB_CANCELED,
                                      .output_tokens = 3,
                                      .cached_tokens = 16,
                                      .exec_ttft = SL_US(40),
                                      .exec_queue = SL_US(5),
                                      .has_exec_queue = true,
                                      .exec_end = SL_US(90)},
                              .prompt_tokens = 40,
                              .tokens = out,
                              .n_tokens = 3,
                              .error = "stopped"};
    sl_wire_batch_t c;
    sl_wire_batch_init(&c, SL_WIRE_COMPLETIONS);
    assert_int_equal(sl_wire_completion_add(&c, 77, &rep), SL_OK);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &c, 0), SL_OK);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_completion_t comp;
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_COMPLETIONS);
    sl_wire_completion_get(m, 0, &comp);
    assert_int_equal(comp.job_seq, 77);
    assert_int_equal(comp.report.res.status, SL_JOB_CANCELED);
    assert_int_equal(comp.report.res.output_tokens, 3);
    assert_int_equal(comp.report.res.cached_tokens, 16);
    assert_int_equal(comp.report.res.exec_ttft, SL_US(40));
    assert_int_equal(comp.report.res.exec_queue, SL_US(5));
    assert_true(comp.report.res.has_exec_queue);
    assert_int_equal(comp.report.res.exec_end, SL_US(90));
    assert_int_equal(comp.report.prompt_tokens, 40);
    assert_memory_equal(comp.report.tokens, out, sizeof(out));
    assert_string_equal(comp.report.error, "stopped");
    sl_wire_msg_free(&m);

    /* a result packed as a receipt, sent as bytes, read by the client */
    uint8_t *rbuf = NULL;
    size_t rcap = 0;
    const void *rb;
    size_t rl;
    sl_wire_result_t res = {.job_id = "job-1",
                            .status = SL_JOB_OK,
                            .tokens = out,
                            .n_tokens = 3,
                            .has_timings = true,
                            .timings = {.queued_us = 1, .ttft_us = 2, .end_us = 3},
                            .executor = "e1",
                            .error = "",
                            .attempts = 2,
                            .late = true};
    assert_int_equal(sl_wire_result_pack(&res, &rbuf, &rcap, &rb, &rl), SL_OK);
    sl_wire_batch_t r;
    sl_wire_batch_init(&r, SL_WIRE_RESULTS);
    assert_int_equal(sl_wire_accepted_add(&r, "job-1"), SL_OK);
    sl_wire_busy_t busy = {
        .job_id = "job-3", .retry_after_ms = 5, .reason = SL_BUSY_TENANT, .detail = "x"};
    assert_int_equal(sl_wire_busy_add(&r, &busy), SL_OK);
    assert_int_equal(sl_wire_result_add_packed(&r, rb, rl), SL_OK);
    sl_wire_results_set_depth(&r, 12);
    assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &r, 0), SL_OK);
    free(rbuf);
    assert_int_equal(
        sl_wire_recv(pr.rx, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    sl_wire_results_t counts;
    sl_wire_results_get(m, &counts);
    assert_int_equal(counts.n_accepted, 1);
    assert_int_equal(counts.n_busy, 1);
    assert_int_equal(counts.n_results, 1);
    assert_int_equal(counts.queue_depth, 12);
    sl_wire_busy_t gb;
    assert_int_equal(sl_wire_busy_get(m, 0, &sl_proto_limits_default, &gb, err, 256), SL_OK);
    assert_int_equal(gb.reason, SL_BUSY_TENANT);
    sl_wire_result_t gr;
    assert_int_equal(sl_wire_result_get(m, 0, &sl_proto_limits_default, &gr, err, 256), SL_OK);
    assert_string_equal(gr.job_id, "job-1");
    assert_int_equal(gr.attempts, 2);
    assert_true(gr.late);
    assert_true(gr.has_timings);
    assert_int_equal(gr.timings.end_us, 3);
    assert_string_equal(gr.executor, "e1");
    sl_wire_msg_free(&m);
    sl_wire_batch_fini(&b);
    sl_wire_batch_fini(&d);
    sl_wire_batch_fini(&c);
    sl_wire_batch_fini(&r);
    s_pair_close(&pr);
}

/* A long prompt (the packed uint32 fast paths both ways) comes back the
 * same, whatever the lengths of its varints, and encodes as protobuf-c. */
static void test_long_prompt(void **state)
{
    char err[256];
    enum { N = 40000 };
    static uint32_t ids[N];
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (uint32_t i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned bits = (unsigned)(x >> 59) + 1; /* 1 to 32 bits: every varint length */
        ids[i] = (uint32_t)(x >> 8) & (uint32_t)((1ull << bits) - 1);
    }
    for (int n = N - 7; n <= N; n++) {
        sl_job_desc_t job = {
            .id = "long", .token_ids = ids, .n_token_ids = (uint32_t)n, .max_new_tokens = 1};
        void *mem = NULL;
        size_t len = 0;
        assert_int_equal(
            sl_wire_submit_pack(&job, &sl_proto_limits_default, 0, &mem, &len, err, sizeof(err)),
            SL_OK);
        /* the Submit as protobuf-c packs it */
        Sluice__Prompt p = SLUICE__PROMPT__INIT;
        Sluice__Job j = SLUICE__JOB__INIT;
        Sluice__Submit sub = SLUICE__SUBMIT__INIT;
        p.token_ids = ids;
        p.n_token_ids = (size_t)n;
        j.id = "long";
        j.prompt = &p;
        j.max_new_tokens = 1;
        sub.job = &j;
        size_t want_len = sluice__submit__get_packed_size(&sub);
        assert_int_equal(len, want_len);
        uint8_t *want = malloc(want_len);
        sluice__submit__pack(&sub, want);
        assert_memory_equal(mem, want, len);
        free(want);
        /* decoded back: the same ids */
        Sluice__Submit *back = NULL;
        sl_msg_t *m = NULL;
        size_t elen = 0;
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        assert_int_equal(sl_wire_submit_add_packed(&b, mem, len), SL_OK);
        pair_t pr;
        s_pair_open(&pr, "proto-long");
        assert_int_equal(sl_wire_batch_send(pr.tx, NULL, &b, 0), SL_OK);
        elen = s_recv_raw(&pr);
        s_pair_close(&pr);
        sl_wire_batch_fini(&b);
        assert_int_equal(sl_proto_decode(s_buf, elen, &sl_proto_limits_default, &m, err, 256),
                         SL_OK);
        back = m->submits->submits[0];
        assert_int_equal(back->job->prompt->n_token_ids, (size_t)n);
        assert_memory_equal(back->job->prompt->token_ids, ids, (size_t)n * sizeof(uint32_t));
        sl_proto_free(&m);
        free(mem);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_submit),        cmocka_unit_test(test_invalid_submit),
        cmocka_unit_test(test_malformed_bytes),     cmocka_unit_test(test_hello_limits),
        cmocka_unit_test(test_hello_data_plane),    cmocka_unit_test(test_heartbeat_load),
        cmocka_unit_test(test_heartbeat_step_cost), cmocka_unit_test(test_completion_batch),
        cmocka_unit_test(test_dispatch_batch),      cmocka_unit_test(test_batch_counts),
        cmocka_unit_test(test_send_packed),         cmocka_unit_test(test_batch_corruption),
        cmocka_unit_test(test_single_bodies_gone),  cmocka_unit_test(test_typed_roundtrip),
        cmocka_unit_test(test_long_prompt),         cmocka_unit_test(test_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
