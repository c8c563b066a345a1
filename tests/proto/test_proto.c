/* Unit tests of the validation layer: every decoded message is checked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/sl_proto.h"

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
        {.id = "a", .length = 2000000, .max_new = 1, .version = 1},       /* huge prompt */
        {.id = "a", .length = 100, .n_hashes = 3, .block_tokens = 512, .max_new = 1,
         .version = 1},                                                   /* hashes > prompt */
        {.id = "a", .length = 100, .n_hashes = 1, .block_tokens = 0, .max_new = 1,
         .version = 1},                                                   /* no block size */
    };
    sl_status_t expect[] = {SL_ERR_MSG_RANGE, SL_ERR_MSG_TOO_BIG, SL_ERR_MSG_RANGE,
                            SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE, SL_ERR_MSG_VERSION,
                            SL_ERR_MSG_RANGE, SL_ERR_MSG_RANGE, SL_ERR_MSG_TOO_BIG,
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
    len = sluice__envelope__pack(&env, s_buf);
    assert_int_equal(sl_proto_decode(s_buf, len, &sl_proto_limits_default, &m, err, 256), SL_OK);
    sl_proto_free(&m);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_submit),
        cmocka_unit_test(test_invalid_submit),
        cmocka_unit_test(test_malformed_bytes),
        cmocka_unit_test(test_hello_limits),
        cmocka_unit_test(test_completion_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
