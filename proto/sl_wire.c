/*
 * The typed messages of sl_wire.h: neutral structs to protobuf-c's
 * generated ones and back, one function per message.
 *
 * This is the one file that knows which neutral field is which wire field,
 * so a field added to sluice.proto is spelled out here and nowhere else.
 * Readers fill the caller's struct with pointers into the decoded message
 * (no copy of token ids or strings); the items of a batch are validated as
 * they are read. Senders build the generated struct on the stack and hand
 * it to the framing (sl_frame.c), or pack a batch item straight into the
 * batch's buffer. The enums of the wire and of common/sl_types.h have the
 * same values, checked here at compile time, so they convert by a cast.
 *
 * Rejected: a second set of hand-written encoders beside the codec (every
 * field would then be written twice), and handing the generated structs to
 * the daemons (every message was then spelled out in three programs).
 */
#include "proto/sl_proto.h"
#include "proto/sl_codec.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

_Static_assert((int)SL_PRIO_INTERACTIVE == (int)SLUICE__PRIORITY__PRIORITY_INTERACTIVE &&
                   (int)SL_PRIO_BATCH == (int)SLUICE__PRIORITY__PRIORITY_BATCH,
               "sl_prio_t and the wire's Priority differ");
_Static_assert((int)SL_BUSY_OVERLOAD == (int)SLUICE__BUSY_REASON__BUSY_OVERLOAD &&
                   (int)SL_BUSY_DEADLINE == (int)SLUICE__BUSY_REASON__BUSY_DEADLINE &&
                   (int)SL_BUSY_QUEUE_FULL == (int)SLUICE__BUSY_REASON__BUSY_QUEUE_FULL &&
                   (int)SL_BUSY_TENANT == (int)SLUICE__BUSY_REASON__BUSY_TENANT &&
                   (int)SL_BUSY_NO_EXECUTOR == (int)SLUICE__BUSY_REASON__BUSY_NO_EXECUTOR &&
                   (int)SL_BUSY_DRAINING == (int)SLUICE__BUSY_REASON__BUSY_DRAINING &&
                   SL_BUSY_REASON_COUNT == SLUICE__BUSY_REASON__BUSY_DRAINING + 1,
               "sl_busy_reason_t and the wire's BusyReason differ");
_Static_assert((int)SL_JOB_OK == (int)SLUICE__RESULT_STATUS__RESULT_OK &&
                   (int)SL_JOB_FAILED == (int)SLUICE__RESULT_STATUS__RESULT_FAILED &&
                   (int)SL_JOB_CANCELED == (int)SLUICE__RESULT_STATUS__RESULT_CANCELED &&
                   (int)SL_JOB_EXPIRED == (int)SLUICE__RESULT_STATUS__RESULT_EXPIRED &&
                   (int)SL_JOB_REJECTED == (int)SLUICE__RESULT_STATUS__RESULT_REJECTED,
               "sl_job_status_t and the wire's ResultStatus differ");
_Static_assert((int)SL_ROLE_MIXED == (int)SLUICE__EXECUTOR_ROLE__ROLE_MIXED &&
                   (int)SL_ROLE_PREFILL == (int)SLUICE__EXECUTOR_ROLE__ROLE_PREFILL &&
                   (int)SL_ROLE_DECODE == (int)SLUICE__EXECUTOR_ROLE__ROLE_DECODE,
               "sl_exec_role_t differs from the wire's ExecutorRole");
_Static_assert((int)SL_KV_LOCAL == (int)SLUICE__KV_MODE__KV_LOCAL &&
                   (int)SL_KV_AWAIT == (int)SLUICE__KV_MODE__KV_AWAIT &&
                   (int)SL_KV_PUSH == (int)SLUICE__KV_MODE__KV_PUSH &&
                   (int)SL_KV_MIGRATE == (int)SLUICE__KV_MODE__KV_MIGRATE &&
                   (int)SL_KV_FETCH == (int)SLUICE__KV_MODE__KV_FETCH,
               "sl_kv_mode_t differs from the wire's KvMode");

/* Field numbers of the batch bodies' repeated items and of the messages
 * built by hand around bytes (sluice.proto). */
enum {
    S_SUBMITS_ITEM = 1,      /* SubmitBatch.submits */
    S_SUBMIT_JOB = 1,        /* Submit.job */
    S_DISPATCHES_ITEM = 1,   /* DispatchBatch.dispatches */
    S_DISPATCH_JOB = 1,      /* Dispatch.job */
    S_DISPATCH_SEQ = 2,      /* Dispatch.job_seq */
    S_DISPATCH_ATTEMPT = 3,  /* Dispatch.attempt */
    S_DISPATCH_RESUME = 4,   /* Dispatch.resume_tokens */
    S_COMPLETIONS_ITEM = 1,  /* CompletionBatch.completions */
    S_COMPLETION_SEQ = 1,    /* Completion.job_seq */
    S_COMPLETION_RESULT = 2, /* Completion.result */
    S_RESULTS_ACCEPTED = 1,  /* ResultBatch.accepted */
    S_RESULTS_BUSY = 2,      /* ResultBatch.busy */
    S_RESULTS_RESULT = 3,    /* ResultBatch.results */
};

static char *s_str(const char *s)
{
    return (char *)(s ? s : "");
}

/* ---- reading ---------------------------------------------------------- */

/* A weights offer of a message (NULL: none). */
static sl_wire_weights_t s_weights_of(const Sluice__WeightsOffer *o)
{
    if (!o)
        return (sl_wire_weights_t){.name = ""};
    return (sl_wire_weights_t){.name = s_str(o->name),
                               .bytes = o->bytes,
                               .checksum = o->checksum,
                               .rkey = o->rkey.len ? o->rkey.data : NULL,
                               .rkey_len = o->rkey.len};
}

/* A weights offer for a message (points into w); false when w names none. */
static bool s_weights_to(const sl_wire_weights_t *w, Sluice__WeightsOffer *o)
{
    if (!w->name || !w->name[0])
        return false;
    o->name = (char *)w->name;
    o->bytes = w->bytes;
    o->checksum = w->checksum;
    o->rkey.data = (uint8_t *)w->rkey;
    o->rkey.len = w->rkey ? w->rkey_len : 0;
    return true;
}

sl_wire_kind_t sl_wire_msg_kind(const sl_wire_msg_t *msg)
{
    return sl_proto_kind(sl_proto_cmsg(msg)->body_case);
}

uint32_t sl_wire_msg_count(const sl_wire_msg_t *msg)
{
    const sl_msg_t *m = sl_proto_cmsg(msg);
    switch (m->body_case) {
    case SLUICE__ENVELOPE__BODY_SUBMITS:
        return (uint32_t)m->submits->n_submits;
    case SLUICE__ENVELOPE__BODY_DISPATCHES:
        return (uint32_t)m->dispatches->n_dispatches;
    case SLUICE__ENVELOPE__BODY_COMPLETIONS:
        return (uint32_t)m->completions->n_completions;
    case SLUICE__ENVELOPE__BODY_RESULTS:
        return (uint32_t)(m->results->n_accepted + m->results->n_busy + m->results->n_results);
    case SLUICE__ENVELOPE__BODY_PEERS:
        return (uint32_t)m->peers->n_peers;
    default:
        return 0;
    }
}

sl_wire_msg_t *sl_wire_msg_ref(sl_wire_msg_t *msg)
{
    return (sl_wire_msg_t *)sl_proto_ref(sl_proto_msg(msg));
}

void sl_wire_msg_free(sl_wire_msg_t **msg_p)
{
    sl_msg_t *m = sl_proto_msg(*msg_p);
    sl_proto_free(&m);
    *msg_p = NULL;
}

/* A decoded Job (validated) as a job description. */
static void s_job_desc(const Sluice__Job *j, sl_job_desc_t *d)
{
    const Sluice__Prompt *p = j->prompt;
    *d = (sl_job_desc_t){
        .id = j->id,
        .tenant = j->tenant,
        .model = j->model,
        .session_key = j->session_key,
        .prio = (sl_prio_t)j->priority,
        .prompt_tokens = p->length ? p->length : (uint32_t)p->n_token_ids,
        .max_new_tokens = j->max_new_tokens,
        .block_hashes = p->n_block_hashes ? p->block_hashes : NULL,
        .n_block_hashes = (uint32_t)p->n_block_hashes,
        .block_tokens = p->block_tokens,
        .token_ids = p->n_token_ids ? p->token_ids : NULL,
        .n_token_ids = (uint32_t)p->n_token_ids,
        .ttft_deadline = SL_MS(j->ttft_deadline_ms),
        .deadline = SL_MS(j->deadline_ms),
        .stream = j->stream,
    };
}

static bool s_is(const sl_msg_t *m, Sluice__Envelope__BodyCase body)
{
    return m->body_case == body;
}

sl_status_t sl_wire_submit_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                               sl_job_desc_t *job, char *err, size_t err_len)
{
    const sl_msg_t *m = sl_proto_cmsg(msg);
    if (!s_is(m, SLUICE__ENVELOPE__BODY_SUBMITS) || i >= m->submits->n_submits)
        return sl_proto_fail(SL_ERR_INVALID, err, err_len, "no submit %u", i);
    const Sluice__Submit *s = m->submits->submits[i];
    sl_status_t st = sl_proto_validate_item(SL_PROTO_ITEM_SUBMIT, s, lim, err, err_len);
    if (st == SL_OK)
        s_job_desc(s->job, job);
    return st;
}

/* The bytes of the value of the first field `field` (length-delimited) in
 * [p, end); NULL when there is none or the encoding is not one we read. */
static const uint8_t *s_find_field(const uint8_t *p, const uint8_t *end, uint32_t field,
                                   size_t *len_p)
{
    while (p < end) {
        uint64_t tag = 0, v = 0;
        unsigned shift = 0;
        do {
            if (p >= end || shift > 63)
                return NULL;
            tag |= (uint64_t)(*p & 0x7f) << shift;
            shift += 7;
        } while (*p++ & 0x80);
        unsigned wt = (unsigned)(tag & 7);
        if (wt == 0 || wt == 2) {
            shift = 0;
            do {
                if (p >= end || shift > 63)
                    return NULL;
                v |= (uint64_t)(*p & 0x7f) << shift;
                shift += 7;
            } while (*p++ & 0x80);
        }
        if (wt == 2) {
            if (v > (uint64_t)(end - p))
                return NULL;
            if ((tag >> 3) == field) {
                *len_p = (size_t)v;
                return p;
            }
            p += v;
        } else if (wt == 1) {
            p += 8;
        } else if (wt == 5) {
            p += 4;
        } else if (wt != 0) {
            return NULL;
        }
    }
    return NULL;
}

sl_status_t sl_wire_submit_job_bytes(const sl_wire_msg_t *msg, uint32_t i, const void **bytes_p,
                                     size_t *len_p)
{
    const sl_msg_t *m = sl_proto_cmsg(msg);
    size_t len = 0, blen = 0;
    const uint8_t *raw = sl_proto_raw(m, &len);
    if (!raw || !s_is(m, SLUICE__ENVELOPE__BODY_SUBMITS) || i >= m->submits->n_submits)
        return SL_ERR_NOT_FOUND;
    const uint8_t *body = s_find_field(raw, raw + len, SLUICE__ENVELOPE__BODY_SUBMITS, &blen);
    if (!body)
        return SL_ERR_NOT_FOUND;
    /* Walk the items of the batch's own encoding to item i. Callers read
     * the items in order, so the message remembers where the last lookup
     * ended (its cursor) and the walk resumes there. */
    const uint8_t *p = body, *end = body + blen;
    uint32_t k = 0;
    size_t *c_off;
    uint32_t *c_k;
    sl_proto_raw_cursor(m, &c_off, &c_k);
    if (*c_k && *c_k <= i) {
        p = raw + *c_off;
        k = *c_k;
    }
    for (;;) {
        size_t ilen = 0;
        const uint8_t *item = s_find_field(p, end, S_SUBMITS_ITEM, &ilen);
        if (!item)
            return SL_ERR_NOT_FOUND;
        if (k == i) {
            size_t jlen = 0;
            const uint8_t *job = s_find_field(item, item + ilen, S_SUBMIT_JOB, &jlen);
            if (!job)
                return SL_ERR_NOT_FOUND;
            *c_off = (size_t)(item + ilen - raw);
            *c_k = i + 1;
            *bytes_p = job;
            *len_p = jlen;
            return SL_OK;
        }
        p = item + ilen;
        k++;
    }
}

sl_status_t sl_wire_dispatch_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                                 sl_wire_dispatch_t *d, char *err, size_t err_len)
{
    const sl_msg_t *m = sl_proto_cmsg(msg);
    if (!s_is(m, SLUICE__ENVELOPE__BODY_DISPATCHES) || i >= m->dispatches->n_dispatches)
        return sl_proto_fail(SL_ERR_INVALID, err, err_len, "no dispatch %u", i);
    const Sluice__Dispatch *x = m->dispatches->dispatches[i];
    sl_status_t st = sl_proto_validate_item(SL_PROTO_ITEM_DISPATCH, x, lim, err, err_len);
    if (st != SL_OK)
        return st;
    s_job_desc(x->job, &d->job);
    d->job_seq = x->job_seq;
    d->attempt = x->attempt;
    d->resume_tokens = x->n_resume_tokens ? x->resume_tokens : NULL;
    d->n_resume_tokens = (uint32_t)x->n_resume_tokens;
    return SL_OK;
}

void sl_wire_completion_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_completion_t *c)
{
    const Sluice__Completion *x = sl_proto_cmsg(msg)->completions->completions[i];
    const Sluice__Result *r = x->result;
    const Sluice__Timings *t = r->timings;
    c->job_seq = x->job_seq;
    c->report = (sl_result_report_t){
        .res =
            {
                .status = (sl_job_status_t)r->status,
                .output_tokens = t ? t->output_tokens : (uint32_t)r->n_tokens,
                .cached_tokens = t ? t->cached_tokens : 0,
                .exec_ttft = t ? SL_US(t->exec_ttft_us) : 0,
                .exec_queue = t ? SL_US(t->exec_queue_us) : 0,
                .has_exec_queue = t && t->has_exec_queue,
                .exec_end = t ? SL_US(t->exec_end_us) : 0,
            },
        .prompt_tokens = t ? t->prompt_tokens : 0,
        .tokens = r->n_tokens ? r->tokens : NULL,
        .n_tokens = (uint32_t)r->n_tokens,
        .error = r->error,
    };
}

uint64_t sl_wire_completion_seq(const sl_wire_msg_t *msg, uint32_t i)
{
    return sl_proto_cmsg(msg)->completions->completions[i]->job_seq;
}

void sl_wire_results_get(const sl_wire_msg_t *msg, sl_wire_results_t *r)
{
    const Sluice__ResultBatch *b = sl_proto_cmsg(msg)->results;
    r->n_accepted = (uint32_t)b->n_accepted;
    r->n_busy = (uint32_t)b->n_busy;
    r->n_results = (uint32_t)b->n_results;
    r->queue_depth = b->queue_depth;
}

sl_status_t sl_wire_accepted_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                                 const char **job_id_p, char *err, size_t err_len)
{
    const Sluice__ResultBatch *b = sl_proto_cmsg(msg)->results;
    sl_status_t st =
        sl_proto_validate_item(SL_PROTO_ITEM_ACCEPTED, b->accepted[i], lim, err, err_len);
    if (st == SL_OK)
        *job_id_p = b->accepted[i];
    return st;
}

sl_status_t sl_wire_busy_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                             sl_wire_busy_t *out, char *err, size_t err_len)
{
    const Sluice__Busy *b = sl_proto_cmsg(msg)->results->busy[i];
    sl_status_t st = sl_proto_validate_item(SL_PROTO_ITEM_BUSY, b, lim, err, err_len);
    if (st == SL_OK)
        *out = (sl_wire_busy_t){.job_id = b->job_id,
                                .retry_after_ms = b->retry_after_ms,
                                .reason = (sl_busy_reason_t)b->reason,
                                .detail = b->detail};
    return st;
}

sl_status_t sl_wire_result_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                               sl_wire_result_t *out, char *err, size_t err_len)
{
    const Sluice__Result *r = sl_proto_cmsg(msg)->results->results[i];
    sl_status_t st = sl_proto_validate_item(SL_PROTO_ITEM_RESULT, r, lim, err, err_len);
    if (st != SL_OK)
        return st;
    *out = (sl_wire_result_t){
        .job_id = r->job_id,
        .status = (sl_job_status_t)r->status,
        .tokens = r->n_tokens ? r->tokens : NULL,
        .n_tokens = (uint32_t)r->n_tokens,
        .has_timings = r->timings != NULL,
        .executor = r->executor,
        .error = r->error,
        .attempts = r->attempts,
        .late = r->late,
    };
    if (r->timings) {
        const Sluice__Timings *t = r->timings;
        out->timings = (sl_wire_timings_t){
            .queued_us = t->queued_us,
            .ttft_us = t->ttft_us,
            .end_us = t->end_us,
            .prompt_tokens = t->prompt_tokens,
            .cached_tokens = t->cached_tokens,
            .output_tokens = t->output_tokens,
            .exec_ttft_us = t->exec_ttft_us,
            .exec_end_us = t->exec_end_us,
            .exec_queue_us = t->exec_queue_us,
            .has_exec_queue = t->has_exec_queue,
        };
    }
    return SL_OK;
}

void sl_wire_chunk_get(const sl_wire_msg_t *msg, sl_wire_chunk_t *c)
{
    const Sluice__TokenChunk *x = sl_proto_cmsg(msg)->token_chunk;
    *c = (sl_wire_chunk_t){.job_id = x->job_id,
                           .job_seq = x->job_seq,
                           .offset = x->offset,
                           .tokens = x->n_tokens ? x->tokens : NULL,
                           .n_tokens = (uint32_t)x->n_tokens};
}

void sl_wire_cancel_get(const sl_wire_msg_t *msg, sl_wire_cancel_t *c)
{
    const Sluice__Cancel *x = sl_proto_cmsg(msg)->cancel;
    c->job_id = x->job_id;
    c->job_seq = x->job_seq;
}

void sl_wire_hello_get(const sl_wire_msg_t *msg, sl_wire_hello_t *h)
{
    const Sluice__ExecutorHello *x = sl_proto_cmsg(msg)->hello;
    *h = (sl_wire_hello_t){
        .info =
            {
                .name = x->name,
                .slots = x->slots,
                .models = (const char *const *)x->models,
                .n_models = x->n_models,
                .backend = x->backend,
                .kv_blocks_total = x->kv_blocks_total,
                .kv_block_tokens = x->kv_block_tokens,
                .step_tokens = x->step_tokens,
                .speed = x->speed,
                .max_context_tokens = x->max_context_tokens,
                .vocab_size = x->vocab_size,
                .role = (sl_exec_role_t)x->role,
                .kv_region_bytes = x->kv_region_bytes,
                .kv_fetch_source = x->kv_fetch_source,
                .layer_first = x->layer_first,
                .layer_last = x->layer_last,
                .layers_total = x->layers_total,
            },
        .zone = x->zone,
        .gpus = x->gpus,
        .gpu_mem_bytes = x->gpu_mem_bytes,
        .xport_address = x->xport_address.data,
        .xport_address_len = x->xport_address.len,
        .kv_rkey = x->kv_rkey.len ? x->kv_rkey.data : NULL,
        .kv_rkey_len = x->kv_rkey.len,
        .weights = s_weights_of(x->weights),
    };
}

uint32_t sl_wire_hello_held(const sl_wire_msg_t *msg, sl_held_job_t *out, uint32_t cap)
{
    const Sluice__ExecutorHello *x = sl_proto_cmsg(msg)->hello;
    for (size_t i = 0; i < x->n_held && i < cap; i++)
        out[i] = (sl_held_job_t){
            .id = x->held[i]->job_id, .seq = x->held[i]->job_seq, .attempt = x->held[i]->attempt};
    return (uint32_t)x->n_held;
}

sl_status_t sl_wire_job_unpack(const void *bytes, size_t len, const sl_proto_limits_t *lim,
                               sl_wire_job_t **job_p, sl_job_desc_t *desc, char *err,
                               size_t err_len)
{
    Sluice__Job *j = sluice__job__unpack(NULL, len, bytes);
    if (!j)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "the job does not decode");
    sl_status_t st = sl_proto_validate_job(j, lim, err, err_len);
    if (st != SL_OK) {
        sluice__job__free_unpacked(j, NULL);
        return st;
    }
    s_job_desc(j, desc);
    *job_p = (sl_wire_job_t *)j;
    return SL_OK;
}

void sl_wire_job_free(sl_wire_job_t **job_p)
{
    if (*job_p)
        sluice__job__free_unpacked((Sluice__Job *)*job_p, NULL);
    *job_p = NULL;
}

void sl_wire_welcome_get(const sl_wire_msg_t *msg, sl_wire_welcome_t *w)
{
    const Sluice__Welcome *x = sl_proto_cmsg(msg)->welcome;
    w->heartbeat_ms = x->heartbeat_ms;
    w->executor_index = x->executor_index;
}

/* A wire Load as a neutral one; unmeasured values stay 0 when `strict`. */
static void s_load_get(const Sluice__Load *l, sl_exec_load_t *load, bool strict)
{
    *load = (sl_exec_load_t){
        .running_jobs = l->running_jobs,
        .queued_jobs = l->queued_jobs,
        .queued_tokens = l->queued_tokens,
        .kv_blocks_used = l->kv_blocks_used,
        .kv_blocks_free = l->kv_blocks_free,
        .step_time_us = l->step_time_us,
        .busy = l->busy,
        .has_gpu_util = l->has_gpu_util,
        .gpu_util = !strict || l->has_gpu_util ? l->gpu_util : 0.0f,
        .has_cpu_util = l->has_cpu_util,
        .cpu_util = !strict || l->has_cpu_util ? l->cpu_util : 0.0f,
        .has_gpu_mem = l->has_gpu_mem,
        .gpu_mem_used = !strict || l->has_gpu_mem ? l->gpu_mem_used_bytes : 0,
        .gpu_mem_total = !strict || l->has_gpu_mem ? l->gpu_mem_total_bytes : 0,
        .kv = {.reservations = l->kv_reservations,
               .bytes_sent = l->kv_bytes_sent,
               .bytes_received = l->kv_bytes_received,
               .pushes_failed = l->kv_pushes_failed,
               .notifs_refused = l->kv_notifs_refused,
               .class_bytes = {l->xport_control_bytes, l->xport_critical_bytes,
                               l->xport_background_bytes}},
        .has_step_cost = l->n_step_cost == SL_STEP_COST_N,
        .has_step_clock = l->has_step_clock,
        .step_left_us = !strict || l->has_step_clock ? l->step_left_us : 0,
        .decode_seqs = !strict || l->has_step_clock ? l->decode_seqs : 0,
        .decode_ctx = !strict || l->has_step_clock ? l->decode_ctx_tokens : 0,
        .prompt_tokens = !strict || l->has_step_clock ? l->prompt_tokens_left : 0,
        .prompt_pairs = !strict || l->has_step_clock ? l->prompt_pairs_left : 0,
    };
    if (load->has_step_cost)
        memcpy(load->step_cost, l->step_cost, sizeof(load->step_cost));
}

void sl_wire_heartbeat_get(const sl_wire_msg_t *msg, uint64_t *seq_p, sl_exec_load_t *load)
{
    const Sluice__Heartbeat *x = sl_proto_cmsg(msg)->heartbeat;
    if (seq_p)
        *seq_p = x->seq;
    if (x->load)
        s_load_get(x->load, load, true);
    else
        memset(load, 0, sizeof(*load));
}

void sl_wire_kv_event_get(const sl_wire_msg_t *msg, sl_wire_kv_event_t *kv)
{
    const Sluice__KvEvent *x = sl_proto_cmsg(msg)->kv_event;
    *kv = (sl_wire_kv_event_t){.stored = x->stored,
                               .n_stored = x->n_stored,
                               .evicted = x->evicted,
                               .n_evicted = x->n_evicted,
                               .reset = x->reset};
}

void sl_wire_error_get(const sl_wire_msg_t *msg, sl_wire_error_t *e)
{
    const Sluice__Error *x = sl_proto_cmsg(msg)->error;
    e->code = (sl_status_t)x->code;
    e->message = s_str(x->message);
    e->job_id = s_str(x->job_id);
}

void sl_wire_peer_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_peer_t *p)
{
    const Sluice__Peer *x = sl_proto_cmsg(msg)->peers->peers[i];
    *p = (sl_wire_peer_t){
        .executor_index = x->executor_index,
        .name = s_str(x->name),
        .xport_address = x->xport_address.data,
        .xport_address_len = x->xport_address.len,
        .kv_rkey = x->kv_rkey.len ? x->kv_rkey.data : NULL,
        .kv_rkey_len = x->kv_rkey.len,
        .kv_region_bytes = x->kv_region_bytes,
        .gone = x->gone,
    };
}

void sl_wire_peer_reach_get(const sl_wire_msg_t *msg, sl_wire_peer_reach_t *r)
{
    const Sluice__PeerReach *x = sl_proto_cmsg(msg)->peer_reach;
    *r = (sl_wire_peer_reach_t){
        .peer_index = x->peer_index,
        .reachable = x->reachable,
        .rtt_us = x->rtt_us,
        .error = s_str(x->error),
    };
}

const char *sl_wire_weights_query_get(const sl_wire_msg_t *msg)
{
    return s_str(sl_proto_cmsg(msg)->weights_query->name);
}

void sl_wire_weights_source_get(const sl_wire_msg_t *msg, sl_wire_weights_source_t *w)
{
    const Sluice__WeightsSource *x = sl_proto_cmsg(msg)->weights_source;
    *w = (sl_wire_weights_source_t){
        .found = x->found,
        .peer = s_str(x->peer),
        .xport_address = x->xport_address.data,
        .xport_address_len = x->xport_address.len,
        .weights = s_weights_of(x->weights),
    };
}

void sl_wire_log_batch_get(const sl_wire_msg_t *msg, sl_wire_log_batch_t *b)
{
    const Sluice__LogBatch *x = sl_proto_cmsg(msg)->log_batch;
    *b = (sl_wire_log_batch_t){
        .executor = s_str(x->executor),
        .logs = (const char *const *)x->logs,
        .n_logs = (uint32_t)x->n_logs,
        .traces = (const char *const *)x->traces,
        .n_traces = (uint32_t)x->n_traces,
        .dropped = x->dropped,
        .shipped = x->shipped,
    };
}

void sl_wire_kv_plan_get(const sl_wire_msg_t *msg, sl_kv_plan_t *p)
{
    const Sluice__KvPlan *x = sl_proto_cmsg(msg)->kv_plan;
    *p = (sl_kv_plan_t){
        .job_seq = x->job_seq,
        .mode = (sl_kv_mode_t)x->mode,
        .peer = x->peer_index,
        .nonce = x->nonce,
        .first_block = x->first_block,
        .blocks = x->n_blocks ? x->blocks : NULL,
        .n_blocks = (uint32_t)x->n_blocks,
        .block_bytes = x->block_bytes,
        .hashes = x->n_hashes ? x->hashes : NULL,
        .n_hashes = (uint32_t)x->n_hashes,
    };
}

void sl_wire_kv_reserved_get(const sl_wire_msg_t *msg, sl_kv_reserved_t *r)
{
    const Sluice__KvReserved *x = sl_proto_cmsg(msg)->kv_reserved;
    *r = (sl_kv_reserved_t){
        .job_seq = x->job_seq,
        .nonce = x->nonce,
        .status = x->status,
        .first_block = x->first_block,
        .blocks = x->n_blocks ? x->blocks : NULL,
        .n_blocks = (uint32_t)x->n_blocks,
        .block_bytes = x->block_bytes,
        .error = s_str(x->error),
    };
}

void sl_wire_kv_sent_get(const sl_wire_msg_t *msg, sl_kv_sent_t *s)
{
    const Sluice__KvSent *x = sl_proto_cmsg(msg)->kv_sent;
    *s = (sl_kv_sent_t){
        .job_seq = x->job_seq,
        .ok = x->ok,
        .bytes = x->bytes,
        .blocks = x->blocks,
        .xfer_us = x->xfer_us,
        .prefill_us = x->prefill_us,
        .pause_us = x->pause_us,
        .output_tokens = x->output_tokens,
        .error = s_str(x->error),
    };
}

bool sl_wire_goodbye_draining(const sl_wire_msg_t *msg)
{
    return sl_proto_cmsg(msg)->goodbye->draining;
}

const char *sl_wire_goodbye_reason(const sl_wire_msg_t *msg)
{
    return s_str(sl_proto_cmsg(msg)->goodbye->reason);
}

void sl_wire_status_get(const sl_wire_msg_t *msg, sl_wire_status_t *st)
{
    const Sluice__StatusReply *r = sl_proto_cmsg(msg)->status_reply;
    *st = (sl_wire_status_t){.n_executors = (uint32_t)r->n_executors,
                             .n_counters = (uint32_t)r->n_counters,
                             .queued_interactive = r->queued_interactive,
                             .queued_batch = r->queued_batch,
                             .inflight = r->inflight,
                             .policy = s_str(r->policy)};
}

void sl_wire_status_exec_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_exec_status_t *e)
{
    const Sluice__ExecutorStatus *x = sl_proto_cmsg(msg)->status_reply->executors[i];
    *e = (sl_wire_exec_status_t){.name = s_str(x->name),
                                 .backend = s_str(x->backend),
                                 .has_load = x->load != NULL,
                                 .inflight = x->inflight,
                                 .slots = x->slots,
                                 .alive = x->alive,
                                 .completed = x->completed,
                                 .failed = x->failed,
                                 .quarantined = x->quarantined,
                                 .data_plane = x->data_plane,
                                 .kv_region_bytes = x->kv_region_bytes,
                                 .peers_reachable = x->peers_reachable,
                                 .peers_unreachable = x->peers_unreachable};
    if (x->load)
        s_load_get(x->load, &e->load, false);
}

void sl_wire_status_counter_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_counter_t *c)
{
    const Sluice__Counter *x = sl_proto_cmsg(msg)->status_reply->counters[i];
    c->name = s_str(x->name);
    c->value = x->value;
}

/* ---- sending single messages ----------------------------------------- */

static void s_load_put(const sl_exec_load_t *load, Sluice__Load *l)
{
    sluice__load__init(l);
    l->running_jobs = load->running_jobs;
    l->queued_jobs = load->queued_jobs;
    l->queued_tokens = load->queued_tokens;
    l->kv_blocks_used = load->kv_blocks_used;
    l->kv_blocks_free = load->kv_blocks_free;
    l->step_time_us = load->step_time_us;
    l->busy = load->busy;
    l->gpu_util = load->gpu_util;
    l->cpu_util = load->cpu_util;
    l->has_gpu_util = load->has_gpu_util;
    l->has_cpu_util = load->has_cpu_util;
    l->has_gpu_mem = load->has_gpu_mem;
    l->gpu_mem_used_bytes = load->gpu_mem_used;
    l->gpu_mem_total_bytes = load->gpu_mem_total;
    l->kv_reservations = load->kv.reservations;
    l->kv_bytes_sent = load->kv.bytes_sent;
    l->kv_bytes_received = load->kv.bytes_received;
    l->kv_pushes_failed = load->kv.pushes_failed;
    l->kv_notifs_refused = load->kv.notifs_refused;
    l->xport_control_bytes = load->kv.class_bytes[0];
    l->xport_critical_bytes = load->kv.class_bytes[1];
    l->xport_background_bytes = load->kv.class_bytes[2];
    l->n_step_cost = load->has_step_cost ? SL_STEP_COST_N : 0;
    l->step_cost = load->has_step_cost ? (float *)load->step_cost : NULL;
    l->has_step_clock = load->has_step_clock;
    l->step_left_us = load->step_left_us;
    l->decode_seqs = load->decode_seqs;
    l->decode_ctx_tokens = load->decode_ctx;
    l->prompt_tokens_left = load->prompt_tokens;
    l->prompt_pairs_left = load->prompt_pairs;
}

sl_status_t sl_wire_hello_send(void *sock, const sl_wire_hello_t *h, int flags)
{
    Sluice__ExecutorHello x = SLUICE__EXECUTOR_HELLO__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.name = s_str(h->info.name);
    x.slots = h->info.slots;
    x.models = (char **)h->info.models;
    x.n_models = h->info.n_models;
    x.gpus = h->gpus;
    x.gpu_mem_bytes = h->gpu_mem_bytes;
    x.zone = s_str(h->zone);
    x.xport_address.data = (uint8_t *)h->xport_address;
    x.xport_address.len = h->xport_address_len;
    x.kv_rkey.data = (uint8_t *)h->kv_rkey;
    x.kv_rkey.len = h->kv_rkey ? h->kv_rkey_len : 0;
    x.kv_region_bytes = h->info.kv_region_bytes;
    x.role = (Sluice__ExecutorRole)h->info.role;
    x.kv_fetch_source = h->info.kv_fetch_source;
    x.layer_first = h->info.layer_first;
    x.layer_last = h->info.layer_last;
    x.layers_total = h->info.layers_total;
    x.backend = s_str(h->info.backend);
    x.kv_blocks_total = h->info.kv_blocks_total;
    x.kv_block_tokens = h->info.kv_block_tokens;
    x.step_tokens = h->info.step_tokens;
    x.speed = (float)h->info.speed;
    x.max_context_tokens = h->info.max_context_tokens;
    x.vocab_size = h->info.vocab_size;
    Sluice__WeightsOffer wo = SLUICE__WEIGHTS_OFFER__INIT;
    if (s_weights_to(&h->weights, &wo))
        x.weights = &wo;
    Sluice__HeldJob *held = NULL, **held_p = NULL;
    if (h->n_held) {
        held = calloc(h->n_held, sizeof(*held));
        held_p = calloc(h->n_held, sizeof(*held_p));
        if (!held || !held_p) {
            free(held);
            free(held_p);
            return SL_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < h->n_held; i++) {
            sluice__held_job__init(&held[i]);
            held[i].job_id = s_str(h->held[i].id);
            held[i].job_seq = h->held[i].seq;
            held[i].attempt = h->held[i].attempt;
            held_p[i] = &held[i];
        }
        x.held = held_p;
        x.n_held = h->n_held;
    }
    env.body_case = SLUICE__ENVELOPE__BODY_HELLO;
    env.hello = &x;
    sl_status_t st = sl_proto_send(sock, NULL, &env, flags);
    free(held_p);
    free(held);
    return st;
}

sl_status_t sl_wire_welcome_send(void *sock, const sl_wire_ident_t *to, const sl_wire_welcome_t *w,
                                 int flags)
{
    Sluice__Welcome x = SLUICE__WELCOME__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.heartbeat_ms = w->heartbeat_ms;
    x.executor_index = w->executor_index;
    env.body_case = SLUICE__ENVELOPE__BODY_WELCOME;
    env.welcome = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_heartbeat_send(void *sock, uint64_t seq, const sl_exec_load_t *load, int flags)
{
    Sluice__Heartbeat x = SLUICE__HEARTBEAT__INIT;
    Sluice__Load l;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    s_load_put(load, &l);
    x.seq = seq;
    x.load = &l;
    env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_cancel_send(void *sock, const sl_wire_ident_t *to, const sl_wire_cancel_t *c,
                                int flags)
{
    Sluice__Cancel x = SLUICE__CANCEL__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.job_id = s_str(c->job_id);
    x.job_seq = c->job_seq;
    env.body_case = SLUICE__ENVELOPE__BODY_CANCEL;
    env.cancel = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_chunk_send(void *sock, const sl_wire_ident_t *to, const sl_wire_chunk_t *c,
                               int flags)
{
    Sluice__TokenChunk x = SLUICE__TOKEN_CHUNK__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.job_id = s_str(c->job_id);
    x.job_seq = c->job_seq;
    x.offset = c->offset;
    x.tokens = (uint32_t *)c->tokens;
    x.n_tokens = c->n_tokens;
    env.body_case = SLUICE__ENVELOPE__BODY_TOKEN_CHUNK;
    env.token_chunk = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_kv_event_send(void *sock, const sl_wire_kv_event_t *kv, int flags)
{
    Sluice__KvEvent x = SLUICE__KV_EVENT__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.stored = (uint64_t *)kv->stored;
    x.n_stored = kv->n_stored;
    x.evicted = (uint64_t *)kv->evicted;
    x.n_evicted = kv->n_evicted;
    x.reset = kv->reset;
    env.body_case = SLUICE__ENVELOPE__BODY_KV_EVENT;
    env.kv_event = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_status_request_send(void *sock, int flags)
{
    Sluice__StatusRequest x = SLUICE__STATUS_REQUEST__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.executors = true;
    env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REQUEST;
    env.status_request = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_status_reply_send(void *sock, const sl_wire_ident_t *to,
                                      const sl_wire_status_t *st,
                                      const sl_wire_exec_status_t *execs,
                                      const sl_wire_counter_t *counters, int flags)
{
    size_t ne = st->n_executors, nc = st->n_counters;
    /* one block: the structs, then the pointer arrays */
    size_t bytes = ne * (sizeof(Sluice__ExecutorStatus) + sizeof(Sluice__Load) + sizeof(void *)) +
                   nc * (sizeof(Sluice__Counter) + sizeof(void *));
    void *mem = bytes ? malloc(bytes) : NULL;
    if (bytes && !mem)
        return SL_ERR_NOMEM;
    Sluice__ExecutorStatus *es = mem;
    Sluice__Load *loads = (Sluice__Load *)(es + ne);
    Sluice__Counter *cs = (Sluice__Counter *)(loads + ne);
    Sluice__ExecutorStatus **esp = (Sluice__ExecutorStatus **)(cs + nc);
    Sluice__Counter **csp = (Sluice__Counter **)(esp + ne);
    for (size_t i = 0; i < ne; i++) {
        const sl_wire_exec_status_t *e = &execs[i];
        sluice__executor_status__init(&es[i]);
        s_load_put(&e->load, &loads[i]);
        es[i].name = s_str(e->name);
        es[i].load = e->has_load ? &loads[i] : NULL;
        es[i].inflight = e->inflight;
        es[i].slots = e->slots;
        es[i].alive = e->alive;
        es[i].completed = e->completed;
        es[i].failed = e->failed;
        es[i].quarantined = e->quarantined;
        es[i].data_plane = e->data_plane;
        es[i].kv_region_bytes = e->kv_region_bytes;
        es[i].peers_reachable = e->peers_reachable;
        es[i].peers_unreachable = e->peers_unreachable;
        es[i].backend = s_str(e->backend);
        esp[i] = &es[i];
    }
    for (size_t i = 0; i < nc; i++) {
        sluice__counter__init(&cs[i]);
        cs[i].name = s_str(counters[i].name);
        cs[i].value = counters[i].value;
        csp[i] = &cs[i];
    }
    Sluice__StatusReply r = SLUICE__STATUS_REPLY__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    r.executors = esp;
    r.n_executors = ne;
    r.counters = csp;
    r.n_counters = nc;
    r.queued_interactive = st->queued_interactive;
    r.queued_batch = st->queued_batch;
    r.inflight = st->inflight;
    r.policy = s_str(st->policy);
    env.body_case = SLUICE__ENVELOPE__BODY_STATUS_REPLY;
    env.status_reply = &r;
    sl_status_t ret = sl_proto_send(sock, to, &env, flags);
    free(mem);
    return ret;
}

sl_status_t sl_wire_error_send(void *sock, const sl_wire_ident_t *to, const sl_wire_error_t *e,
                               int flags)
{
    Sluice__Error x = SLUICE__ERROR__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.code = e->code;
    x.message = s_str(e->message);
    x.job_id = s_str(e->job_id);
    env.body_case = SLUICE__ENVELOPE__BODY_ERROR;
    env.error = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_goodbye_send(void *sock, const char *reason, bool draining, int flags)
{
    Sluice__Goodbye x = SLUICE__GOODBYE__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.reason = s_str(reason);
    x.draining = draining;
    env.body_case = SLUICE__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_peers_send(void *sock, const sl_wire_ident_t *to, const sl_wire_peer_t *peers,
                               uint32_t n, int flags)
{
    Sluice__Peers x = SLUICE__PEERS__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    Sluice__Peer *items = calloc(n ? n : 1, sizeof(*items));
    Sluice__Peer **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    if (!items || !ptrs) {
        free(items);
        free(ptrs);
        return SL_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        const sl_wire_peer_t *p = &peers[i];
        sluice__peer__init(&items[i]);
        items[i].executor_index = p->executor_index;
        items[i].name = s_str(p->name);
        items[i].xport_address.data = (uint8_t *)p->xport_address;
        items[i].xport_address.len = p->xport_address ? p->xport_address_len : 0;
        items[i].kv_rkey.data = (uint8_t *)p->kv_rkey;
        items[i].kv_rkey.len = p->kv_rkey ? p->kv_rkey_len : 0;
        items[i].kv_region_bytes = p->kv_region_bytes;
        items[i].gone = p->gone;
        ptrs[i] = &items[i];
    }
    x.peers = ptrs;
    x.n_peers = n;
    env.body_case = SLUICE__ENVELOPE__BODY_PEERS;
    env.peers = &x;
    sl_status_t st = sl_proto_send(sock, to, &env, flags);
    free(ptrs);
    free(items);
    return st;
}

sl_status_t sl_wire_peer_reach_send(void *sock, const sl_wire_peer_reach_t *r, int flags)
{
    Sluice__PeerReach x = SLUICE__PEER_REACH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.peer_index = r->peer_index;
    x.reachable = r->reachable;
    x.rtt_us = r->rtt_us;
    x.error = s_str(r->error);
    env.body_case = SLUICE__ENVELOPE__BODY_PEER_REACH;
    env.peer_reach = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_weights_query_send(void *sock, const char *name, int flags)
{
    Sluice__WeightsQuery x = SLUICE__WEIGHTS_QUERY__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.name = s_str(name);
    env.body_case = SLUICE__ENVELOPE__BODY_WEIGHTS_QUERY;
    env.weights_query = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_weights_source_send(void *sock, const sl_wire_ident_t *to,
                                        const sl_wire_weights_source_t *w, int flags)
{
    Sluice__WeightsSource x = SLUICE__WEIGHTS_SOURCE__INIT;
    Sluice__WeightsOffer wo = SLUICE__WEIGHTS_OFFER__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.found = w->found;
    x.peer = s_str(w->peer);
    x.xport_address.data = (uint8_t *)w->xport_address;
    x.xport_address.len = w->xport_address ? w->xport_address_len : 0;
    if (s_weights_to(&w->weights, &wo))
        x.weights = &wo;
    env.body_case = SLUICE__ENVELOPE__BODY_WEIGHTS_SOURCE;
    env.weights_source = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_log_batch_send(void *sock, const sl_wire_log_batch_t *b, int flags)
{
    Sluice__LogBatch x = SLUICE__LOG_BATCH__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.executor = s_str(b->executor);
    x.logs = (char **)b->logs;
    x.n_logs = b->logs ? b->n_logs : 0;
    x.traces = (char **)b->traces;
    x.n_traces = b->traces ? b->n_traces : 0;
    x.dropped = b->dropped;
    x.shipped = b->shipped;
    env.body_case = SLUICE__ENVELOPE__BODY_LOG_BATCH;
    env.log_batch = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_kv_plan_send(void *sock, const sl_wire_ident_t *to, const sl_kv_plan_t *p,
                                 int flags)
{
    Sluice__KvPlan x = SLUICE__KV_PLAN__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.job_seq = p->job_seq;
    x.mode = (Sluice__KvMode)p->mode;
    x.peer_index = p->peer;
    x.nonce = p->nonce;
    x.first_block = p->first_block;
    x.blocks = (uint32_t *)p->blocks;
    x.n_blocks = p->blocks ? p->n_blocks : 0;
    x.block_bytes = p->block_bytes;
    x.hashes = (uint64_t *)p->hashes;
    x.n_hashes = p->hashes ? p->n_hashes : 0;
    env.body_case = SLUICE__ENVELOPE__BODY_KV_PLAN;
    env.kv_plan = &x;
    return sl_proto_send(sock, to, &env, flags);
}

sl_status_t sl_wire_kv_reserved_send(void *sock, const sl_kv_reserved_t *r, int flags)
{
    Sluice__KvReserved x = SLUICE__KV_RESERVED__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.job_seq = r->job_seq;
    x.nonce = r->nonce;
    x.status = r->status;
    x.first_block = r->first_block;
    x.blocks = (uint32_t *)r->blocks;
    x.n_blocks = r->blocks ? r->n_blocks : 0;
    x.block_bytes = r->block_bytes;
    x.error = s_str(r->error);
    env.body_case = SLUICE__ENVELOPE__BODY_KV_RESERVED;
    env.kv_reserved = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

sl_status_t sl_wire_kv_sent_send(void *sock, const sl_kv_sent_t *s, int flags)
{
    Sluice__KvSent x = SLUICE__KV_SENT__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.job_seq = s->job_seq;
    x.ok = s->ok;
    x.bytes = s->bytes;
    x.blocks = s->blocks;
    x.xfer_us = s->xfer_us;
    x.prefill_us = s->prefill_us;
    x.pause_us = s->pause_us;
    x.output_tokens = s->output_tokens;
    x.error = s_str(s->error);
    env.body_case = SLUICE__ENVELOPE__BODY_KV_SENT;
    env.kv_sent = &x;
    return sl_proto_send(sock, NULL, &env, flags);
}

void sl_wire_stage_plan_get(const sl_wire_msg_t *msg, const uint32_t **chain_p, uint32_t *n_p)
{
    const Sluice__StagePlan *x = sl_proto_cmsg(msg)->stage_plan;
    *chain_p = x->chain;
    *n_p = (uint32_t)x->n_chain;
}

sl_status_t sl_wire_stage_plan_send(void *sock, const sl_wire_ident_t *to, const uint32_t *chain,
                                    uint32_t n, int flags)
{
    Sluice__StagePlan x = SLUICE__STAGE_PLAN__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    x.chain = (uint32_t *)chain;
    x.n_chain = chain ? n : 0;
    env.body_case = SLUICE__ENVELOPE__BODY_STAGE_PLAN;
    env.stage_plan = &x;
    return sl_proto_send(sock, to, &env, flags);
}

/* ---- batch items ------------------------------------------------------ */

/* A job description as the wire's Job (pointing into d and p). */
static void s_job_put(const sl_job_desc_t *d, Sluice__Job *j, Sluice__Prompt *p)
{
    sluice__job__init(j);
    sluice__prompt__init(p);
    p->token_ids = (uint32_t *)d->token_ids;
    p->n_token_ids = d->token_ids ? d->n_token_ids : 0;
    p->length = d->prompt_tokens;
    p->block_hashes = (uint64_t *)d->block_hashes;
    p->n_block_hashes = d->block_hashes ? d->n_block_hashes : 0;
    p->block_tokens = d->block_tokens;
    j->id = s_str(d->id);
    j->tenant = s_str(d->tenant);
    j->model = s_str(d->model);
    j->session_key = s_str(d->session_key);
    j->priority = (Sluice__Priority)d->prio;
    j->prompt = p;
    j->max_new_tokens = d->max_new_tokens;
    j->ttft_deadline_ms = (uint32_t)(d->ttft_deadline / SL_NS_PER_MS);
    j->deadline_ms = (uint32_t)(d->deadline / SL_NS_PER_MS);
    j->stream = d->stream;
}

sl_status_t sl_wire_submit_pack(const sl_job_desc_t *job, const sl_proto_limits_t *lim, size_t head,
                                void **mem_p, size_t *len_p, char *err, size_t err_len)
{
    Sluice__Job j;
    Sluice__Prompt p;
    if ((unsigned)job->prio >= SL_PRIO_COUNT)
        return sl_proto_fail(SL_ERR_INVALID, err, err_len, "unknown priority %d", (int)job->prio);
    s_job_put(job, &j, &p);
    sl_status_t st = sl_proto_validate_job(&j, lim, err, err_len);
    if (st != SL_OK)
        return st;
    /* Submit{job = 1} written by hand around the packed Job, which most
     * often fits a buffer on the stack (sl_codec_encode), else is sized. */
    uint8_t small[2048];
    uint8_t *packed = sl_codec_encode(&j.base, small, small + sizeof(small));
    size_t job_len =
        packed ? (size_t)(small + sizeof(small) - packed) : sluice__job__get_packed_size(&j);
    uint8_t hdr[12];
    size_t hl = 0;
    hdr[hl++] = (uint8_t)((S_SUBMIT_JOB << 3) | 2);
    hl += sl_proto_varint(hdr + hl, job_len);
    size_t len = hl + job_len;
    uint8_t *mem = malloc(head + len);
    if (!mem)
        return sl_proto_fail(SL_ERR_NOMEM, err, err_len, "out of memory");
    memset(mem, 0, head);
    memcpy(mem + head, hdr, hl);
    if (packed)
        memcpy(mem + head + hl, packed, job_len);
    else
        sluice__job__pack(&j, mem + head + hl);
    *mem_p = mem;
    *len_p = len;
    return SL_OK;
}

sl_status_t sl_wire_submit_add_packed(sl_wire_batch_t *b, const void *item, size_t len)
{
    return sl_proto_batch_add_packed(b, S_SUBMITS_ITEM, item, len);
}

sl_status_t sl_wire_submit_add(sl_wire_batch_t *b, const sl_job_desc_t *job)
{
    Sluice__Job j;
    Sluice__Prompt p;
    s_job_put(job, &j, &p);
    return sl_proto_batch_add_nested(b, S_SUBMITS_ITEM, S_SUBMIT_JOB, &j.base, NULL, NULL, 0);
}

sl_status_t sl_wire_dispatch_add(sl_wire_batch_t *b, const sl_job_desc_t *job, uint64_t job_seq,
                                 uint32_t attempt)
{
    static const uint32_t vfields[2] = {S_DISPATCH_SEQ, S_DISPATCH_ATTEMPT};
    uint64_t vvalues[2] = {job_seq, attempt};
    Sluice__Job j;
    Sluice__Prompt p;
    s_job_put(job, &j, &p);
    return sl_proto_batch_add_nested(b, S_DISPATCHES_ITEM, S_DISPATCH_JOB, &j.base, vfields,
                                     vvalues, 2);
}

sl_status_t sl_wire_dispatch_add_job_bytes(sl_wire_batch_t *b, const void *job, size_t job_len,
                                           uint64_t job_seq, uint32_t attempt)
{
    return sl_wire_dispatch_add_resume(b, job, job_len, job_seq, attempt, NULL, 0);
}

sl_status_t sl_wire_dispatch_add_resume(sl_wire_batch_t *b, const void *job, size_t job_len,
                                        uint64_t job_seq, uint32_t attempt, const uint32_t *resume,
                                        uint32_t n_resume)
{
    static const uint32_t vfields[2] = {S_DISPATCH_SEQ, S_DISPATCH_ATTEMPT};
    uint64_t vvalues[2] = {job_seq, attempt};
    return sl_proto_batch_add_wrapped(b, S_DISPATCHES_ITEM, S_DISPATCH_JOB, job, job_len, vfields,
                                      vvalues, 2, S_DISPATCH_RESUME, resume, n_resume);
}

sl_status_t sl_wire_completion_add(sl_wire_batch_t *b, uint64_t job_seq,
                                   const sl_result_report_t *rep)
{
    static const uint32_t vfields[1] = {S_COMPLETION_SEQ};
    Sluice__Result r = SLUICE__RESULT__INIT;
    Sluice__Timings t = SLUICE__TIMINGS__INIT;
    r.job_id = NULL; /* the scheduler knows the job by job_seq */
    r.status = (Sluice__ResultStatus)rep->res.status;
    r.tokens = (uint32_t *)rep->tokens;
    r.n_tokens = rep->n_tokens;
    r.error = s_str(rep->error);
    t.prompt_tokens = rep->prompt_tokens;
    t.cached_tokens = rep->res.cached_tokens;
    t.output_tokens = rep->res.output_tokens;
    t.exec_ttft_us = (uint64_t)(rep->res.exec_ttft / SL_NS_PER_US);
    t.exec_end_us = (uint64_t)(rep->res.exec_end / SL_NS_PER_US);
    t.has_exec_queue = rep->res.has_exec_queue;
    t.exec_queue_us = rep->res.has_exec_queue ? (uint64_t)(rep->res.exec_queue / SL_NS_PER_US) : 0;
    r.timings = &t;
    return sl_proto_batch_add_nested(b, S_COMPLETIONS_ITEM, S_COMPLETION_RESULT, &r.base, vfields,
                                     &job_seq, 1);
}

sl_status_t sl_wire_accepted_add(sl_wire_batch_t *b, const char *job_id)
{
    return sl_proto_batch_add_packed(b, S_RESULTS_ACCEPTED, job_id, strlen(job_id));
}

sl_status_t sl_wire_busy_add(sl_wire_batch_t *b, const sl_wire_busy_t *busy)
{
    Sluice__Busy x = SLUICE__BUSY__INIT;
    x.job_id = s_str(busy->job_id);
    x.retry_after_ms = busy->retry_after_ms;
    x.reason = (Sluice__BusyReason)busy->reason;
    x.detail = s_str(busy->detail);
    return sl_proto_batch_add(b, S_RESULTS_BUSY, &x.base);
}

/* A result as the wire's Result (pointing into r and t). */
static void s_result_put(const sl_wire_result_t *in, Sluice__Result *r, Sluice__Timings *t)
{
    sluice__result__init(r);
    sluice__timings__init(t);
    r->job_id = s_str(in->job_id);
    r->status = (Sluice__ResultStatus)in->status;
    r->tokens = (uint32_t *)in->tokens;
    r->n_tokens = in->n_tokens;
    r->executor = s_str(in->executor);
    r->error = s_str(in->error);
    r->attempts = in->attempts;
    r->late = in->late;
    if (in->has_timings) {
        t->queued_us = in->timings.queued_us;
        t->ttft_us = in->timings.ttft_us;
        t->end_us = in->timings.end_us;
        t->prompt_tokens = in->timings.prompt_tokens;
        t->cached_tokens = in->timings.cached_tokens;
        t->output_tokens = in->timings.output_tokens;
        t->exec_ttft_us = in->timings.exec_ttft_us;
        t->exec_end_us = in->timings.exec_end_us;
        t->exec_queue_us = in->timings.exec_queue_us;
        t->has_exec_queue = in->timings.has_exec_queue;
        r->timings = t;
    }
}

sl_status_t sl_wire_result_add(sl_wire_batch_t *b, const sl_wire_result_t *in)
{
    Sluice__Result r;
    Sluice__Timings t;
    s_result_put(in, &r, &t);
    return sl_proto_batch_add(b, S_RESULTS_RESULT, &r.base);
}

sl_status_t sl_wire_result_add_packed(sl_wire_batch_t *b, const void *bytes, size_t len)
{
    return sl_proto_batch_add_packed(b, S_RESULTS_RESULT, bytes, len);
}

void sl_wire_results_set_depth(sl_wire_batch_t *b, uint32_t queue_depth)
{
    b->scalar = queue_depth;
}

sl_status_t sl_wire_result_pack(const sl_wire_result_t *in, uint8_t **buf_p, size_t *cap_p,
                                const void **bytes_p, size_t *len_p)
{
    Sluice__Result r;
    Sluice__Timings t;
    s_result_put(in, &r, &t);
    if (!*buf_p) {
        *buf_p = malloc(4096);
        if (!*buf_p)
            return SL_ERR_NOMEM;
        *cap_p = 4096;
    }
    uint8_t *p;
    while (!(p = sl_codec_encode(&r.base, *buf_p, *buf_p + *cap_p))) {
        uint8_t *grown = realloc(*buf_p, *cap_p * 2);
        if (!grown)
            return SL_ERR_NOMEM;
        *buf_p = grown;
        *cap_p *= 2;
    }
    *bytes_p = p;
    *len_p = (size_t)(*buf_p + *cap_p - p);
    return SL_OK;
}
