/*
 * Fuzz target "decode": one received frame, as sl_wire_recv sees it. The
 * bytes are decoded and validated (sl_proto_decode: the fast codec, with
 * protobuf-c behind it for what the codec defers, then sl_validate), the
 * frame is kept with the message as the scheduler keeps a submit's, and
 * every item of the message is read back through the typed accessors of
 * sl_wire.h that the daemons use, batch items validated one by one
 * (sl_proto_validate_item) and a submit's job located in the raw frame
 * (sl_wire_submit_job_bytes, a parser of its own).
 *
 * The first byte picks the limits: the defaults, or tight ones that make
 * every bound of sl_validate reachable with short inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/sl_log.h"
#include "proto/sl_proto.h"
#include "tests/fuzz/sl_fuzz.h"

static volatile size_t s_sink; /* keeps the reads of every returned string */
static bool s_verbose;         /* SL_FUZZ_VERBOSE: say what each input decoded to */

static void s_touch(const char *s)
{
    if (s)
        s_sink += strlen(s);
}

static void s_touch_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        s_sink += b[i];
}

static void s_read_submits(const sl_wire_msg_t *msg, const sl_proto_limits_t *lim)
{
    char err[256];
    for (uint32_t i = 0, n = sl_wire_msg_count(msg); i < n; i++) {
        sl_job_desc_t d;
        if (sl_wire_submit_get(msg, i, lim, &d, err, sizeof(err)) != SL_OK) {
            s_touch(err);
            continue;
        }
        s_touch(d.id);
        s_touch(d.tenant);
        s_touch(d.model);
        s_touch_bytes(d.token_ids, (size_t)d.n_token_ids * sizeof(*d.token_ids));
        s_touch_bytes(d.block_hashes, (size_t)d.n_block_hashes * sizeof(*d.block_hashes));
        const void *bytes = NULL;
        size_t len = 0;
        if (sl_wire_submit_job_bytes(msg, i, &bytes, &len) == SL_OK)
            s_touch_bytes(bytes, len);
    }
}

static void s_read_results(const sl_wire_msg_t *msg, const sl_proto_limits_t *lim)
{
    char err[256];
    sl_wire_results_t r;
    sl_wire_results_get(msg, &r);
    for (uint32_t i = 0; i < r.n_accepted; i++) {
        const char *id = NULL;
        if (sl_wire_accepted_get(msg, i, lim, &id, err, sizeof(err)) == SL_OK)
            s_touch(id);
    }
    for (uint32_t i = 0; i < r.n_busy; i++) {
        sl_wire_busy_t b;
        if (sl_wire_busy_get(msg, i, lim, &b, err, sizeof(err)) == SL_OK) {
            s_touch(b.job_id);
            s_touch(b.detail);
        }
    }
    for (uint32_t i = 0; i < r.n_results; i++) {
        sl_wire_result_t res;
        if (sl_wire_result_get(msg, i, lim, &res, err, sizeof(err)) == SL_OK) {
            s_touch(res.job_id);
            s_touch(res.executor);
            s_touch(res.error);
            s_touch_bytes(res.tokens, (size_t)res.n_tokens * sizeof(*res.tokens));
        }
    }
}

static void s_read_status(const sl_wire_msg_t *msg)
{
    sl_wire_status_t st;
    sl_wire_status_get(msg, &st);
    s_touch(st.policy);
    for (uint32_t i = 0; i < st.n_executors; i++) {
        sl_wire_exec_status_t e;
        sl_wire_status_exec_get(msg, i, &e);
        s_touch(e.name);
        s_touch(e.backend);
    }
    for (uint32_t i = 0; i < st.n_counters; i++) {
        sl_wire_counter_t c;
        sl_wire_status_counter_get(msg, i, &c);
        s_touch(c.name);
    }
}

/* Read every part of msg the way its receiver would. */
static void s_read(const sl_wire_msg_t *msg, const sl_proto_limits_t *lim)
{
    char err[256];
    uint32_t n = sl_wire_msg_count(msg);
    switch (sl_wire_msg_kind(msg)) {
    case SL_WIRE_SUBMITS:
        s_read_submits(msg, lim);
        break;
    case SL_WIRE_RESULTS:
        s_read_results(msg, lim);
        break;
    case SL_WIRE_DISPATCHES:
        for (uint32_t i = 0; i < n; i++) {
            sl_wire_dispatch_t d;
            if (sl_wire_dispatch_get(msg, i, lim, &d, err, sizeof(err)) == SL_OK)
                s_touch(d.job.id);
        }
        break;
    case SL_WIRE_COMPLETIONS:
        for (uint32_t i = 0; i < n; i++) {
            sl_wire_completion_t c;
            sl_wire_completion_get(msg, i, &c);
            s_sink += sl_wire_completion_seq(msg, i);
        }
        break;
    case SL_WIRE_TOKEN_CHUNK: {
        sl_wire_chunk_t c;
        sl_wire_chunk_get(msg, &c);
        s_touch(c.job_id);
        break;
    }
    case SL_WIRE_CANCEL: {
        sl_wire_cancel_t c;
        sl_wire_cancel_get(msg, &c);
        s_touch(c.job_id);
        break;
    }
    case SL_WIRE_HELLO: {
        sl_wire_hello_t h;
        sl_wire_hello_get(msg, &h);
        s_touch(h.info.name);
        s_touch_bytes(h.xport_address, h.xport_address_len);
        s_touch_bytes(h.kv_rkey, h.kv_rkey_len);
        break;
    }
    case SL_WIRE_WELCOME: {
        sl_wire_welcome_t w;
        sl_wire_welcome_get(msg, &w);
        break;
    }
    case SL_WIRE_HEARTBEAT: {
        uint64_t seq = 0;
        sl_exec_load_t load;
        sl_wire_heartbeat_get(msg, &seq, &load);
        break;
    }
    case SL_WIRE_KV_EVENT: {
        sl_wire_kv_event_t kv;
        sl_wire_kv_event_get(msg, &kv);
        s_touch_bytes(kv.stored, (size_t)kv.n_stored * sizeof(*kv.stored));
        s_touch_bytes(kv.evicted, (size_t)kv.n_evicted * sizeof(*kv.evicted));
        break;
    }
    case SL_WIRE_STATUS_REPLY:
        s_read_status(msg);
        break;
    case SL_WIRE_ERROR: {
        sl_wire_error_t e;
        sl_wire_error_get(msg, &e);
        s_touch(e.message);
        break;
    }
    case SL_WIRE_GOODBYE:
        s_touch(sl_wire_goodbye_reason(msg));
        s_sink += sl_wire_goodbye_draining(msg);
        break;
    case SL_WIRE_PEERS:
        for (uint32_t i = 0; i < n; i++) {
            sl_wire_peer_t p;
            sl_wire_peer_get(msg, i, &p);
        }
        break;
    case SL_WIRE_PEER_REACH: {
        sl_wire_peer_reach_t r;
        sl_wire_peer_reach_get(msg, &r);
        s_touch(r.error);
        break;
    }
    case SL_WIRE_KV_PLAN: {
        sl_kv_plan_t p;
        sl_wire_kv_plan_get(msg, &p);
        break;
    }
    case SL_WIRE_KV_RESERVED: {
        sl_kv_reserved_t r;
        sl_wire_kv_reserved_get(msg, &r);
        s_touch(r.error);
        break;
    }
    case SL_WIRE_KV_SENT: {
        sl_kv_sent_t k;
        sl_wire_kv_sent_get(msg, &k);
        s_touch(k.error);
        break;
    }
    case SL_WIRE_STAGE_PLAN: {
        const uint32_t *chain = NULL;
        uint32_t nc = 0;
        sl_wire_stage_plan_get(msg, &chain, &nc);
        s_touch_bytes(chain, (size_t)nc * sizeof(*chain));
        break;
    }
    case SL_WIRE_LOG_BATCH: {
        sl_wire_log_batch_t b;
        sl_wire_log_batch_get(msg, &b);
        s_touch(b.executor);
        for (uint32_t i = 0; i < b.n_logs; i++)
            s_touch(b.logs[i]);
        for (uint32_t i = 0; i < b.n_traces; i++)
            s_touch(b.traces[i]);
        break;
    }
    case SL_WIRE_WEIGHTS_QUERY:
        s_touch(sl_wire_weights_query_get(msg));
        break;
    case SL_WIRE_WEIGHTS_SOURCE: {
        sl_wire_weights_source_t w;
        sl_wire_weights_source_get(msg, &w);
        s_touch(w.peer);
        s_touch(w.weights.name);
        break;
    }
    default:
        break;
    }
    s_touch(sl_wire_kind_name(sl_wire_msg_kind(msg)));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    s_verbose = getenv("SL_FUZZ_VERBOSE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sl_proto_limits_t lim = sl_proto_limits_default;
    if (data[0] & 1) { /* tight limits: every bound within reach of a short input */
        lim.max_msg_bytes = 512;
        lim.max_prompt_tokens = 8;
        lim.max_token_ids = 8;
        lim.max_block_hashes = 4;
        lim.max_new_tokens = 8;
        lim.max_id_len = 8;
        lim.max_name_len = 8;
        lim.max_kv_events = 4;
        lim.max_xport_address = 8;
        lim.max_kv_blocks = 4;
        lim.max_kv_rkey = 8;
        lim.max_models = 2;
        lim.max_slots = 4;
        lim.max_batch = 3;
        lim.max_peers = 3;
    }
    data++;
    size--;
    char err[256];
    sl_msg_t *msg = NULL;
    sl_status_t st = sl_proto_decode(data, size, &lim, &msg, err, sizeof(err));
    if (st != SL_OK) {
        s_touch(err);
        if (s_verbose)
            fprintf(stderr, "fuzz_decode: refused: %s\n", err);
        return 0;
    }
    if (s_verbose)
        fprintf(stderr, "fuzz_decode: %s\n",
                sl_wire_kind_name(sl_wire_msg_kind((sl_wire_msg_t *)msg)));
    zmq_msg_t frame;
    if (zmq_msg_init_size(&frame, size) == 0) {
        if (size)
            memcpy(zmq_msg_data(&frame), data, size);
        sl_proto_keep_frame(msg, &frame);
        zmq_msg_close(&frame);
    }
    sl_wire_msg_t *w = (sl_wire_msg_t *)msg;
    s_read(w, &lim);
    sl_wire_msg_t *again = sl_wire_msg_ref(w); /* a second owner, as a batch's jobs take */
    sl_wire_msg_free(&w);
    s_read(again, &lim);
    sl_wire_msg_free(&again);
    return 0;
}
