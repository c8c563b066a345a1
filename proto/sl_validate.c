/*
 * Validation of decoded messages.
 *
 * protobuf-c already rejects bytes that are not a well-formed encoding; what
 * it cannot know is what is sensible: a 100 MB prompt, a negative enum
 * value smuggled through proto3's open enums, a missing oneof, another
 * protocol version. Every decoded envelope goes through sl_proto_validate
 * before anything reads it, so the code above proto/ may trust field sizes
 * and enum values. The items of a batch (submits, dispatches, answers) are
 * checked one by one when read (sl_proto_validate_item), so one bad item is
 * answered on its own and the rest proceed; completions are checked with
 * their message, since an executor that sends a bad one is broken as a
 * whole.
 */
#include "proto/sl_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A heartbeat's step clock: the step in progress ends within a minute, and
 * the batch decoding in it is a batch, not a counter gone wrong (these
 * bounds keep the scheduler's arithmetic on them exact in a double). */
#define S_STEP_LEFT_MAX_US 60000000u
#define S_DECODE_SEQS_MAX (1u << 24)
#define S_TOKENS_MAX (1ull << 40)
#define S_PAIRS_MAX (1ull << 62)
#define S_STEP_TOKENS_MAX (1u << 24) /* an engine's --step-tokens at most */

const sl_proto_limits_t sl_proto_limits_default = {
    .max_msg_bytes = 8u << 20,
    .max_prompt_tokens = 1u << 20,
    .max_token_ids = 1u << 18,
    .max_block_hashes = 1u << 13,
    .max_new_tokens = 1u << 16,
    .max_id_len = 128,
    .max_name_len = 128,
    .max_kv_events = 1u << 16,
    .max_xport_address = 8192,
    .max_kv_rkey = 4096,
    .max_kv_blocks = 1u << 16,
    .max_models = 64,
    .max_slots = 4096,
    .max_batch = 4096,
    .max_peers = 1024,
};

sl_status_t sl_proto_fail(sl_status_t st, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

#define CHECK_STR(s, maxlen, what, required)                                                       \
    do {                                                                                           \
        size_t l_ = (s) ? strlen(s) : 0;                                                           \
        if ((required) && l_ == 0)                                                                 \
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "%s is empty", what);             \
        if (l_ > (maxlen))                                                                         \
            return sl_proto_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "%s is %zu bytes (limit %u)",   \
                                 what, l_, (unsigned)(maxlen));                                    \
    } while (0)

#define CHECK_COUNT(n, maxn, what)                                                                 \
    do {                                                                                           \
        if ((size_t)(n) > (size_t)(maxn))                                                          \
            return sl_proto_fail(SL_ERR_MSG_TOO_BIG, err, err_len,                                 \
                                 "%s has %zu entries (limit %u)", what, (size_t)(n),               \
                                 (unsigned)(maxn));                                                \
    } while (0)

/* A weights offer: a plain name, a size, and a key. */
static sl_status_t s_weights(const Sluice__WeightsOffer *w, const sl_proto_limits_t *lim, char *err,
                             size_t err_len)
{
    CHECK_STR(w->name, lim->max_name_len, "weights name", 1);
    CHECK_COUNT(w->rkey.len, lim->max_kv_rkey, "weights rkey bytes");
    if (!w->bytes || !w->rkey.len)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                             "weights '%s' offered without a size or a key", w->name);
    return SL_OK;
}

static sl_status_t s_job(const Sluice__Job *job, const sl_proto_limits_t *lim, char *err,
                         size_t err_len)
{
    if (!job)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "job is missing");
    CHECK_STR(job->id, lim->max_id_len, "job id", 1);
    CHECK_STR(job->tenant, lim->max_name_len, "tenant", 0);
    CHECK_STR(job->model, lim->max_name_len, "model", 0);
    CHECK_STR(job->session_key, lim->max_name_len, "session key", 0);
    if (job->priority != SLUICE__PRIORITY__PRIORITY_INTERACTIVE &&
        job->priority != SLUICE__PRIORITY__PRIORITY_BATCH)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "priority %d is not a known class",
                             (int)job->priority);
    if (job->max_new_tokens == 0 || job->max_new_tokens > lim->max_new_tokens)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "max_new_tokens %u outside [1, %u]",
                             job->max_new_tokens, lim->max_new_tokens);
    const Sluice__Prompt *p = job->prompt;
    if (!p)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "prompt is missing");
    CHECK_COUNT(p->n_token_ids, lim->max_token_ids, "prompt token_ids");
    CHECK_COUNT(p->n_block_hashes, lim->max_block_hashes, "prompt block_hashes");
    uint64_t length = p->length ? p->length : p->n_token_ids;
    if (length == 0)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "prompt is empty");
    if (length > lim->max_prompt_tokens)
        return sl_proto_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "prompt of %llu tokens (limit %u)",
                             (unsigned long long)length, lim->max_prompt_tokens);
    /* With token ids the prompt is those ids: a length that says otherwise
     * would make a backend read past them. */
    if (p->length && p->n_token_ids && p->n_token_ids != p->length)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "prompt length %u but %zu token ids",
                             p->length, p->n_token_ids);
    if (p->n_block_hashes) {
        if (p->block_tokens == 0 || p->block_tokens > 65536)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "block_tokens %u outside [1, 65536]", p->block_tokens);
        if ((uint64_t)p->n_block_hashes * p->block_tokens > length + p->block_tokens - 1)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "%zu blocks of %u tokens exceed a prompt of %llu tokens",
                                 p->n_block_hashes, p->block_tokens, (unsigned long long)length);
    }
    return SL_OK;
}

static sl_status_t s_load(const Sluice__Load *l, char *err, size_t err_len)
{
    if (!l)
        return SL_OK;
    if (!(l->gpu_util >= 0 && l->gpu_util <= 1.5) || !(l->cpu_util >= 0 && l->cpu_util <= 1.5) ||
        !(l->busy >= 0 && l->busy <= 1.5))
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "utilization outside [0, 1]");
    if (l->has_gpu_mem && l->gpu_mem_used_bytes > l->gpu_mem_total_bytes)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "GPU memory used above its total");
    if (l->n_step_cost != 0 && l->n_step_cost != SL_STEP_COST_N)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                             "step cost has %zu coefficients, not 0 or %d", l->n_step_cost,
                             SL_STEP_COST_N);
    for (size_t i = 0; i < l->n_step_cost; i++)
        if (!(l->step_cost[i] >= -60.0f && l->step_cost[i] <= 60.0f)) /* also NaN */
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "step cost coefficient outside [-60, 60] s");
    if (l->has_step_clock &&
        (l->step_left_us > S_STEP_LEFT_MAX_US || l->decode_seqs > S_DECODE_SEQS_MAX ||
         l->decode_ctx_tokens > S_TOKENS_MAX || l->prompt_tokens_left > S_TOKENS_MAX ||
         l->prompt_pairs_left > S_PAIRS_MAX))
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                             "step clock out of range (step left over 60 s, over %u sequences, "
                             "over 2^40 tokens or over 2^62 attention pairs)",
                             S_DECODE_SEQS_MAX);
    return SL_OK;
}

static sl_status_t s_result(const Sluice__Result *r, const sl_proto_limits_t *lim, char *err,
                            size_t err_len)
{
    if (!r)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "result is missing");
    CHECK_STR(r->job_id, lim->max_id_len, "result job id", 0);
    CHECK_COUNT(r->n_tokens, lim->max_token_ids, "result tokens");
    CHECK_STR(r->executor, lim->max_name_len, "result executor", 0);
    CHECK_STR(r->error, 1024, "result error", 0);
    if ((unsigned)r->status > SLUICE__RESULT_STATUS__RESULT_REJECTED)
        return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "result status %d unknown",
                             (int)r->status);
    return SL_OK;
}

static sl_status_t s_batch_count(size_t n, const sl_proto_limits_t *lim, const char *what,
                                 char *err, size_t err_len)
{
    if (n == 0)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "%s batch is empty", what);
    CHECK_COUNT(n, lim->max_batch, what);
    return SL_OK;
}

sl_status_t sl_proto_validate(const sl_msg_t *m, const sl_proto_limits_t *lim, char *err,
                              size_t err_len)
{
    if (m->version != SL_PROTO_VERSION)
        return sl_proto_fail(SL_ERR_MSG_VERSION, err, err_len, "protocol version %u (expected %u)",
                             m->version, SL_PROTO_VERSION);
    switch (m->body_case) {
    case SLUICE__ENVELOPE__BODY_TOKEN_CHUNK:
        CHECK_STR(m->token_chunk->job_id, lim->max_id_len, "job id", 0);
        CHECK_COUNT(m->token_chunk->n_tokens, lim->max_token_ids, "chunk tokens");
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_CANCEL:
        CHECK_STR(m->cancel->job_id, lim->max_id_len, "job id", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_HELLO: {
        const Sluice__ExecutorHello *h = m->hello;
        CHECK_STR(h->name, lim->max_name_len, "executor name", 1);
        CHECK_STR(h->zone, lim->max_name_len, "zone", 0);
        CHECK_STR(h->backend, lim->max_name_len, "backend", 0);
        CHECK_COUNT(h->n_models, lim->max_models, "models");
        for (size_t i = 0; i < h->n_models; i++)
            CHECK_STR(h->models[i], lim->max_name_len, "model name", 1);
        CHECK_COUNT(h->xport_address.len, lim->max_xport_address, "xport address bytes");
        CHECK_COUNT(h->kv_rkey.len, lim->max_kv_rkey, "kv rkey bytes");
        CHECK_COUNT(h->n_held, lim->max_slots, "held jobs");
        for (size_t i = 0; i < h->n_held; i++)
            CHECK_STR(h->held[i]->job_id, lim->max_id_len, "held job id", 1);
        if (h->weights) {
            sl_status_t wst = s_weights(h->weights, lim, err, err_len);
            if (wst != SL_OK)
                return wst;
            if (!h->xport_address.len)
                return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                     "weights offered without a transport address");
        }
        if (h->kv_rkey.len && (!h->xport_address.len || !h->kv_region_bytes))
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "kv rkey without a transport address or a region size");
        if (h->slots == 0 || h->slots > lim->max_slots)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "slots %u outside [1, %u]",
                                 h->slots, lim->max_slots);
        if (h->step_tokens > S_STEP_TOKENS_MAX)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "step tokens %u above %u",
                                 h->step_tokens, S_STEP_TOKENS_MAX);
        if (!(h->speed >= 0 && h->speed <= 1000))
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "speed outside [0, 1000]");
        if ((unsigned)h->role > SLUICE__EXECUTOR_ROLE__ROLE_DECODE)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "role %d unknown", (int)h->role);
        if (h->role != SLUICE__EXECUTOR_ROLE__ROLE_MIXED && !h->kv_rkey.len)
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "a prefill or decode executor without a data plane");
        if (h->layers_total && (h->layer_first > h->layer_last || h->layer_last >= h->layers_total))
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "layers %u-%u of %u",
                                 h->layer_first, h->layer_last, h->layers_total);
        if (h->kv_block_tokens > 65536) /* the scheduler hashes prompts in blocks of it */
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "kv_block_tokens %u outside [0, 65536]", h->kv_block_tokens);
        return SL_OK;
    }
    case SLUICE__ENVELOPE__BODY_WELCOME:
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_HEARTBEAT:
        return s_load(m->heartbeat->load, err, err_len);
    case SLUICE__ENVELOPE__BODY_COMPLETIONS:
        CHECK_COUNT(m->completions->n_completions, lim->max_batch, "completions");
        for (size_t i = 0; i < m->completions->n_completions; i++) {
            sl_status_t st = s_result(m->completions->completions[i]->result, lim, err, err_len);
            if (st != SL_OK)
                return st;
        }
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_DISPATCHES:
        return s_batch_count(m->dispatches->n_dispatches, lim, "dispatches", err, err_len);
    case SLUICE__ENVELOPE__BODY_SUBMITS:
        return s_batch_count(m->submits->n_submits, lim, "submits", err, err_len);
    case SLUICE__ENVELOPE__BODY_RESULTS:
        return s_batch_count(m->results->n_accepted + m->results->n_busy + m->results->n_results,
                             lim, "result batch", err, err_len);
    case SLUICE__ENVELOPE__BODY_KV_EVENT:
        CHECK_COUNT(m->kv_event->n_stored, lim->max_kv_events, "kv stored");
        CHECK_COUNT(m->kv_event->n_evicted, lim->max_kv_events, "kv evicted");
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
    case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_ERROR:
        CHECK_STR(m->error->message, 1024, "error message", 0);
        CHECK_STR(m->error->job_id, lim->max_id_len, "error job id", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_GOODBYE:
        CHECK_STR(m->goodbye->reason, 1024, "goodbye reason", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_PEERS:
        if (m->peers->n_peers == 0)
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "peers message is empty");
        CHECK_COUNT(m->peers->n_peers, lim->max_peers, "peers");
        for (size_t i = 0; i < m->peers->n_peers; i++) {
            const Sluice__Peer *p = m->peers->peers[i];
            if (!p)
                return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "peer is missing");
            CHECK_STR(p->name, lim->max_name_len, "peer name", 1);
            CHECK_COUNT(p->xport_address.len, lim->max_xport_address, "peer xport address bytes");
            CHECK_COUNT(p->kv_rkey.len, lim->max_kv_rkey, "peer kv rkey bytes");
            if (!p->gone && (!p->xport_address.len || !p->kv_rkey.len || !p->kv_region_bytes))
                return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                     "peer %u without a transport address, key or region",
                                     p->executor_index);
        }
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_PEER_REACH:
        CHECK_STR(m->peer_reach->error, 1024, "peer reach error", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_KV_PLAN: {
        const Sluice__KvPlan *p = m->kv_plan;
        CHECK_COUNT(p->n_blocks, lim->max_kv_blocks, "kv plan blocks");
        CHECK_COUNT(p->n_hashes, lim->max_block_hashes, "kv plan hashes");
        if (p->mode == SLUICE__KV_MODE__KV_FETCH && p->n_hashes <= p->first_block)
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "kv fetch plan of job %llu names no block to fetch",
                                 (unsigned long long)p->job_seq);
        if (p->mode == SLUICE__KV_MODE__KV_LOCAL || (unsigned)p->mode > SLUICE__KV_MODE__KV_FETCH)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "kv plan mode %d", (int)p->mode);
        if (p->mode != SLUICE__KV_MODE__KV_AWAIT && (!p->n_blocks || !p->block_bytes))
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "kv plan of job %llu names no destination blocks",
                                 (unsigned long long)p->job_seq);
        return SL_OK;
    }
    case SLUICE__ENVELOPE__BODY_KV_RESERVED: {
        const Sluice__KvReserved *r = m->kv_reserved;
        CHECK_COUNT(r->n_blocks, lim->max_kv_blocks, "kv reserved blocks");
        CHECK_STR(r->error, 1024, "kv reserved error", 0);
        if (r->status == 0 && (!r->n_blocks || !r->block_bytes))
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "kv reservation of job %llu names no blocks",
                                 (unsigned long long)r->job_seq);
        return SL_OK;
    }
    case SLUICE__ENVELOPE__BODY_STAGE_PLAN:
        CHECK_COUNT(m->stage_plan->n_chain, SL_STAGE_MAX, "stage plan chain");
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_KV_SENT:
        CHECK_STR(m->kv_sent->error, 1024, "kv sent error", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_WEIGHTS_QUERY:
        CHECK_STR(m->weights_query->name, lim->max_name_len, "weights name", 1);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_WEIGHTS_SOURCE: {
        const Sluice__WeightsSource *w = m->weights_source;
        CHECK_STR(w->peer, lim->max_name_len, "weights peer", 0);
        CHECK_COUNT(w->xport_address.len, lim->max_xport_address, "weights peer address bytes");
        if (w->found && (!w->weights || !w->xport_address.len))
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "a weights source without an offer or an address");
        return w->weights ? s_weights(w->weights, lim, err, err_len) : SL_OK;
    }
    case SLUICE__ENVELOPE__BODY_LOG_BATCH: {
        const Sluice__LogBatch *b = m->log_batch;
        CHECK_STR(b->executor, lim->max_name_len, "log batch executor", 1);
        /* The collector names a file after it: a plain name, never a path. */
        if (b->executor[0] == '.' || strspn(b->executor, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         "abcdefghijklmnopqrstuvwxyz"
                                                         "0123456789._-") != strlen(b->executor))
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "log batch executor '%s' is not a plain file name", b->executor);
        CHECK_COUNT(b->n_logs + b->n_traces, lim->max_batch, "log batch lines");
        for (size_t i = 0; i < b->n_logs; i++)
            CHECK_STR(b->logs[i], SL_WIRE_LOG_LINE_MAX, "log line", 0);
        for (size_t i = 0; i < b->n_traces; i++)
            CHECK_STR(b->traces[i], SL_WIRE_LOG_LINE_MAX, "trace record", 0);
        return SL_OK;
    }
    default:
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "envelope has no known body (%d)",
                             (int)m->body_case);
    }
}

sl_status_t sl_proto_validate_item(sl_proto_item_t item, const void *ptr,
                                   const sl_proto_limits_t *lim, char *err, size_t err_len)
{
    if (!ptr)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "batch item is missing");
    switch (item) {
    case SL_PROTO_ITEM_SUBMIT:
        return s_job(((const Sluice__Submit *)ptr)->job, lim, err, err_len);
    case SL_PROTO_ITEM_DISPATCH: {
        const Sluice__Dispatch *d = ptr;
        sl_status_t st = s_job(d->job, lim, err, err_len);
        if (st == SL_OK && d->n_resume_tokens > d->job->max_new_tokens)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len,
                                 "%zu resume tokens exceed max_new_tokens %u", d->n_resume_tokens,
                                 d->job->max_new_tokens);
        return st;
    }
    case SL_PROTO_ITEM_ACCEPTED:
        CHECK_STR((const char *)ptr, lim->max_id_len, "job id", 1);
        return SL_OK;
    case SL_PROTO_ITEM_BUSY: {
        const Sluice__Busy *b = ptr;
        CHECK_STR(b->job_id, lim->max_id_len, "job id", 0);
        CHECK_STR(b->detail, 1024, "busy detail", 0);
        if ((unsigned)b->reason > SLUICE__BUSY_REASON__BUSY_DRAINING)
            return sl_proto_fail(SL_ERR_MSG_RANGE, err, err_len, "busy reason %d unknown",
                                 (int)b->reason);
        return SL_OK;
    }
    case SL_PROTO_ITEM_RESULT:
        return s_result(ptr, lim, err, err_len);
    }
    return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "unknown batch item %d", (int)item);
}

sl_status_t sl_proto_validate_job(const Sluice__Job *job, const sl_proto_limits_t *lim, char *err,
                                  size_t err_len)
{
    return s_job(job, lim, err, err_len);
}

sl_wire_kind_t sl_proto_kind(int body_case)
{
    switch (body_case) {
    case SLUICE__ENVELOPE__BODY_SUBMITS:
        return SL_WIRE_SUBMITS;
    case SLUICE__ENVELOPE__BODY_RESULTS:
        return SL_WIRE_RESULTS;
    case SLUICE__ENVELOPE__BODY_TOKEN_CHUNK:
        return SL_WIRE_TOKEN_CHUNK;
    case SLUICE__ENVELOPE__BODY_CANCEL:
        return SL_WIRE_CANCEL;
    case SLUICE__ENVELOPE__BODY_HELLO:
        return SL_WIRE_HELLO;
    case SLUICE__ENVELOPE__BODY_WELCOME:
        return SL_WIRE_WELCOME;
    case SLUICE__ENVELOPE__BODY_HEARTBEAT:
        return SL_WIRE_HEARTBEAT;
    case SLUICE__ENVELOPE__BODY_DISPATCHES:
        return SL_WIRE_DISPATCHES;
    case SLUICE__ENVELOPE__BODY_COMPLETIONS:
        return SL_WIRE_COMPLETIONS;
    case SLUICE__ENVELOPE__BODY_KV_EVENT:
        return SL_WIRE_KV_EVENT;
    case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
        return SL_WIRE_STATUS_REQUEST;
    case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
        return SL_WIRE_STATUS_REPLY;
    case SLUICE__ENVELOPE__BODY_ERROR:
        return SL_WIRE_ERROR;
    case SLUICE__ENVELOPE__BODY_GOODBYE:
        return SL_WIRE_GOODBYE;
    case SLUICE__ENVELOPE__BODY_PEERS:
        return SL_WIRE_PEERS;
    case SLUICE__ENVELOPE__BODY_PEER_REACH:
        return SL_WIRE_PEER_REACH;
    case SLUICE__ENVELOPE__BODY_KV_PLAN:
        return SL_WIRE_KV_PLAN;
    case SLUICE__ENVELOPE__BODY_KV_RESERVED:
        return SL_WIRE_KV_RESERVED;
    case SLUICE__ENVELOPE__BODY_KV_SENT:
        return SL_WIRE_KV_SENT;
    case SLUICE__ENVELOPE__BODY_STAGE_PLAN:
        return SL_WIRE_STAGE_PLAN;
    case SLUICE__ENVELOPE__BODY_LOG_BATCH:
        return SL_WIRE_LOG_BATCH;
    case SLUICE__ENVELOPE__BODY_WEIGHTS_QUERY:
        return SL_WIRE_WEIGHTS_QUERY;
    case SLUICE__ENVELOPE__BODY_WEIGHTS_SOURCE:
        return SL_WIRE_WEIGHTS_SOURCE;
    default:
        return SL_WIRE_UNKNOWN;
    }
}

const char *sl_proto_body_name(int body_case)
{
    return sl_wire_kind_name(sl_proto_kind(body_case));
}

const char *sl_wire_kind_name(sl_wire_kind_t kind)
{
    static const char *const names[SL_WIRE_KIND_COUNT] = {
        [SL_WIRE_UNKNOWN] = "unknown",
        [SL_WIRE_SUBMITS] = "submits",
        [SL_WIRE_RESULTS] = "results",
        [SL_WIRE_TOKEN_CHUNK] = "token_chunk",
        [SL_WIRE_CANCEL] = "cancel",
        [SL_WIRE_HELLO] = "hello",
        [SL_WIRE_WELCOME] = "welcome",
        [SL_WIRE_HEARTBEAT] = "heartbeat",
        [SL_WIRE_DISPATCHES] = "dispatches",
        [SL_WIRE_COMPLETIONS] = "completions",
        [SL_WIRE_KV_EVENT] = "kv_event",
        [SL_WIRE_STATUS_REQUEST] = "status_request",
        [SL_WIRE_STATUS_REPLY] = "status_reply",
        [SL_WIRE_ERROR] = "error",
        [SL_WIRE_GOODBYE] = "goodbye",
        [SL_WIRE_PEERS] = "peers",
        [SL_WIRE_PEER_REACH] = "peer_reach",
        [SL_WIRE_KV_PLAN] = "kv_plan",
        [SL_WIRE_KV_RESERVED] = "kv_reserved",
        [SL_WIRE_KV_SENT] = "kv_sent",
        [SL_WIRE_STAGE_PLAN] = "stage_plan",
        [SL_WIRE_LOG_BATCH] = "log_batch",
        [SL_WIRE_WEIGHTS_QUERY] = "weights_query",
        [SL_WIRE_WEIGHTS_SOURCE] = "weights_source",
    };
    return (unsigned)kind < SL_WIRE_KIND_COUNT ? names[kind] : "unknown";
}
