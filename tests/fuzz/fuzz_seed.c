/*
 * The seed generator of the fuzz corpora: `fuzz_seed DIR` writes, under
 * DIR/<target>/, inputs built from real messages, so each fuzzer starts
 * from encodings that pass validation rather than from nothing.
 *
 * Messages are filled from protobuf-c's generated descriptors: every
 * field of a body gets a plausible value (ids, names and models that the
 * validation accepts, small counts, two entries per repeated field), so an
 * Envelope of each body type comes out without a hand-written builder per
 * message that would drift from sluice.proto. The handler targets get
 * sequences a real session sends: an executor's hello, a client's submits,
 * heartbeats, completions of the dispatched jobs, KV events, goodbyes; a
 * scheduler's dispatches, cancels and KV plans to an executor. File names
 * are seed-<what>, so a merge of the fuzzers' finds keeps them apart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/sl_proto.h"

typedef struct s_buf {
    uint8_t data[1 << 16];
    size_t len;
} s_buf_t;

static const char *s_dir;

static void s_put(s_buf_t *b, const void *p, size_t n)
{
    if (b->len + n > sizeof(b->data)) {
        fprintf(stderr, "fuzz_seed: input too long\n");
        exit(1);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void s_u8(s_buf_t *b, uint8_t v)
{
    s_put(b, &v, 1);
}

static void s_u16(s_buf_t *b, uint16_t v)
{
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    s_put(b, le, 2);
}

static void s_write(const char *target, const char *name, const s_buf_t *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", s_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/seed-%s", s_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- filling a message from its descriptor ---- */

static const char *s_str_for(const char *field)
{
    if (!strcmp(field, "model") || !strcmp(field, "models"))
        return "m";
    if (!strcmp(field, "tenant"))
        return "t";
    if (!strcmp(field, "name") || !strcmp(field, "executor") || !strcmp(field, "peer"))
        return "e1";
    if (!strcmp(field, "id") || !strcmp(field, "job_id") || !strcmp(field, "accepted"))
        return "j1";
    if (!strcmp(field, "backend"))
        return "sim";
    if (strstr(field, "error") || !strcmp(field, "detail") || !strcmp(field, "message") ||
        !strcmp(field, "zone") || !strcmp(field, "session_key"))
        return "";
    return "x";
}

static uint64_t s_num_for(const char *field)
{
    if (!strcmp(field, "version"))
        return SL_PROTO_VERSION;
    if (!strcmp(field, "length") || !strcmp(field, "status") || !strcmp(field, "code") ||
        !strcmp(field, "first_block") || !strcmp(field, "layer_first") ||
        !strcmp(field, "layer_last") || !strcmp(field, "layers_total") ||
        !strcmp(field, "executor_index") || !strcmp(field, "peer_index") ||
        strstr(field, "deadline"))
        return 0;
    if (!strcmp(field, "block_tokens") || !strcmp(field, "kv_block_tokens"))
        return 16;
    if (!strcmp(field, "kv_blocks_total") || !strcmp(field, "max_context_tokens"))
        return 256;
    if (!strcmp(field, "vocab_size"))
        return 1000;
    if (!strcmp(field, "heartbeat_ms"))
        return 100;
    return 1;
}

static void s_fill(ProtobufCMessage *m, int depth);

static void s_fill_value(const ProtobufCFieldDescriptor *f, void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)p = (uint32_t)s_num_for(f->name);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        *(int *)p = ((const ProtobufCEnumDescriptor *)f->descriptor)->values[0].value;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *)p = s_num_for(f->name);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)p = 0;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)p = 0.5f;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)p = 0.5;
        break;
    case PROTOBUF_C_TYPE_STRING:
        *(const char **)p = s_str_for(f->name);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = p;
        bd->data = (uint8_t *)"abcd";
        bd->len = 4;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        ProtobufCMessage *sub = calloc(1, d->sizeof_message);
        protobuf_c_message_init(d, sub);
        s_fill(sub, depth + 1);
        *(ProtobufCMessage **)p = sub;
        break;
    }
    }
}

static size_t s_size_of(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* Every field of m except oneof members; repeated fields get two entries. */
static void s_fill(ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            continue;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= 6)
            continue;
        char *base = (char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= 1) ? 1 : 2;
            size_t sz = s_size_of(f);
            char *arr = calloc(n, sz);
            for (size_t k = 0; k < n; k++)
                s_fill_value(f, arr + k * sz, depth);
            *(size_t *)(base + f->quantifier_offset) = n;
            *(void **)(base + f->offset) = arr;
        } else {
            s_fill_value(f, base + f->offset, depth);
        }
    }
}

/* An Envelope whose body is the oneof member named body, filled. */
static Sluice__Envelope *s_envelope(const char *body)
{
    Sluice__Envelope *env = calloc(1, sizeof(*env));
    sluice__envelope__init(env);
    env->version = SL_PROTO_VERSION;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&sluice__envelope__descriptor, body);
    if (!f) {
        fprintf(stderr, "fuzz_seed: no body %s\n", body);
        exit(1);
    }
    s_fill_value(f, (char *)env + f->offset, 1);
    *(uint32_t *)((char *)env + f->quantifier_offset) = f->id;
    return env;
}

static void s_pack(s_buf_t *b, const Sluice__Envelope *env)
{
    b->len = protobuf_c_message_pack(&env->base, b->data);
}

/* A record of a handler target: op, 16-bit length, frame. */
static void s_record(s_buf_t *b, uint8_t op, const Sluice__Envelope *env)
{
    s_buf_t m;
    s_pack(&m, env);
    s_u8(b, op);
    s_u16(b, (uint16_t)m.len);
    s_put(b, m.data, m.len);
}

/* A one-job submit of id with n_tokens prompt token ids. */
static Sluice__Envelope *s_submit(const char *id, int stream)
{
    Sluice__Envelope *env = s_envelope("submits");
    for (size_t i = 0; i < env->submits->n_submits; i++) {
        Sluice__Job *job = env->submits->submits[i]->job;
        char *jid = malloc(16);
        snprintf(jid, 16, "%s%c", id, (char)('a' + i));
        job->id = jid;
        job->max_new_tokens = 4;
        job->stream = stream;
        job->prompt->n_block_hashes = 0;
        job->prompt->block_tokens = 0;
    }
    return env;
}

static Sluice__Envelope *s_completion(uint64_t seq)
{
    Sluice__Envelope *env = s_envelope("completions");
    for (size_t i = 0; i < env->completions->n_completions; i++)
        env->completions->completions[i]->job_seq = seq + i;
    return env;
}

/* ---- the corpora ---- */

static const char *const s_bodies[] = {
    "token_chunk",    "cancel",       "hello",     "welcome",       "heartbeat",     "kv_event",
    "status_request", "status_reply", "error",     "goodbye",       "completions",   "dispatches",
    "submits",        "results",      "peers",     "peer_reach",    "kv_plan",       "kv_reserved",
    "kv_sent",        "stage_plan",   "log_batch", "weights_query", "weights_source"};

static void s_messages(void)
{
    for (size_t i = 0; i < sizeof(s_bodies) / sizeof(s_bodies[0]); i++) {
        Sluice__Envelope *env = s_envelope(s_bodies[i]);
        if (env->body_case == SLUICE__ENVELOPE__BODY_KV_PLAN)
            env->kv_plan->mode = SLUICE__KV_MODE__KV_PUSH; /* LOCAL is never sent */
        s_buf_t m, b = {.len = 0};
        s_pack(&m, env);
        s_write("codec", s_bodies[i], &m);
        for (uint8_t tight = 0; tight < 2; tight++) {
            char name[64];
            snprintf(name, sizeof(name), "%s-%s", s_bodies[i], tight ? "tight" : "default");
            b.len = 0;
            s_u8(&b, tight);
            s_put(&b, m.data, m.len);
            s_write("decode", name, &b);
        }
    }
}

/* Scheduler sessions: header (policy, flags), then records. Clients use op
 * 1 (| conn << 3), executors op 3 (| conn << 3), the clock op 0 + 16-bit ms. */
static void s_sched(void)
{
    static const char *const exec_bodies[] = {
        "heartbeat",  "kv_event", "token_chunk", "kv_reserved", "kv_sent",
        "peer_reach", "goodbye",  "completions", "cancel",      "log_batch"};
    for (size_t i = 0; i < sizeof(exec_bodies) / sizeof(exec_bodies[0]); i++) {
        s_buf_t b = {.len = 0};
        s_u8(&b, (uint8_t)i);       /* policy */
        s_u8(&b, (uint8_t)(i * 5)); /* switches */
        s_record(&b, 3, s_envelope("hello"));
        Sluice__Envelope *h2 = s_envelope("hello");
        h2->hello->name = "e2";
        s_record(&b, 3 | 1 << 3, h2);
        s_record(&b, 1, s_submit("j", (int)(i & 1)));
        s_u8(&b, 0);
        s_u16(&b, 10);
        s_record(&b, 3, s_envelope(exec_bodies[i]));
        s_record(&b, 3, s_completion(1));
        s_record(&b, 3 | 1 << 3, s_completion(1));
        s_u8(&b, 0);
        s_u16(&b, 5000); /* past the liveness timeout */
        s_record(&b, 1, s_submit("k", 0));
        s_record(&b, 2, s_envelope("cancel"));
        s_record(&b, 1, s_envelope("status_request"));
        s_write("sched", exec_bodies[i], &b);
    }
}

/* Executor sessions: header (backend, batch, kv pool), then records:
 * frames op 2, the clock op 0 (ms in the high bits), held-job actions op 1. */
static void s_engine(void)
{
    for (int mode = 0; mode <= 4; mode++) {
        s_buf_t b = {.len = 0};
        s_u8(&b, (uint8_t)(mode == 4)); /* sim, or null */
        s_u8(&b, 4);
        s_u8(&b, 8);
        s_record(&b, 2, s_envelope("welcome"));
        Sluice__Envelope *plan = s_envelope("kv_plan");
        plan->kv_plan->mode = (Sluice__KvMode)mode;
        plan->kv_plan->job_seq = 1;
        if (mode == 1 || mode == 2)
            s_record(&b, 2, plan);
        Sluice__Envelope *d = s_envelope("dispatches");
        for (size_t i = 0; i < d->dispatches->n_dispatches; i++) {
            d->dispatches->dispatches[i]->job_seq = 1 + i;
            d->dispatches->dispatches[i]->job->max_new_tokens = 8;
            d->dispatches->dispatches[i]->job->stream = (protobuf_c_boolean)(i & 1);
            d->dispatches->dispatches[i]->job->prompt->n_block_hashes = 0;
        }
        s_record(&b, 2, d);
        s_u8(&b, 0 | 5 << 2);
        if (mode == 3 || mode == 4)
            s_record(&b, 2, plan);
        s_u8(&b, 0 | 5 << 2);
        s_u8(&b, 1); /* a held job's action */
        s_u8(&b, (uint8_t)(mode & 3));
        s_u8(&b, 2);
        s_u8(&b, 1);
        s_u16(&b, 16);
        Sluice__Envelope *c = s_envelope("cancel");
        c->cancel->job_seq = 2;
        s_record(&b, 2, c);
        for (int k = 0; k < 8; k++)
            s_u8(&b, 0 | 63 << 2);
        char name[32];
        snprintf(name, sizeof(name), "session-mode%d", mode);
        s_write("engine", name, &b);
    }
}

/* Flags and SLUICE_* variables: the first byte says how many of the
 * NUL-separated strings are variables. */
static void s_cfg(void)
{
    static const struct {
        const char *name;
        uint8_t n_env;
        const char *args[8];
    } seeds[] = {
        {"flags",
         0,
         {"--policy=round-robin", "--credits", "4", "--admission", "--tenant-rate=2.5"}},
        {"env", 2, {"POLICY=scorer", "HEARTBEAT_MS=50", "--queue-max=10", "--kv-split=on"}},
        {"positional", 0, {"--max-batch=8", "--", "run", "x"}},
        {"bad", 1, {"CREDITS=-1", "--missed-heartbeats=abc", "--kv-split-margin", "1e400"}},
        {"print", 0, {"--batch-wait-us=100", "--print-config"}},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        s_buf_t b = {.len = 0};
        s_u8(&b, seeds[i].n_env);
        for (int k = 0; k < 8 && seeds[i].args[k]; k++)
            s_put(&b, seeds[i].args[k], strlen(seeds[i].args[k]) + 1);
        s_write("cfg", seeds[i].name, &b);
    }
}

/* The first lines of each public trace, with the format byte (0 auto, 1
 * Mooncake, 2 Azure) and two option bytes in front. */
static void s_trace(const char *trace_dir)
{
    static const struct {
        const char *name, *file;
        uint8_t fmt, o1, o2;
    } seeds[] = {
        {"mooncake-conversation", "mooncake/conversation_trace.jsonl", 1, 0x00, 0},
        {"mooncake-synthetic", "mooncake/synthetic_trace.jsonl", 0, 0x61, 3},
        {"azure-code", "azure2023/AzureLLMInferenceTrace_code.csv", 2, 0x22, 0},
        {"azure-conv", "azure2023/AzureLLMInferenceTrace_conv.csv", 0, 0xc4, 7},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", trace_dir, seeds[i].file);
        FILE *f = fopen(path, "r");
        if (!f) {
            perror(path);
            exit(1);
        }
        s_buf_t b = {.len = 0};
        s_u8(&b, seeds[i].fmt);
        s_u8(&b, seeds[i].o1);
        s_u8(&b, seeds[i].o2);
        char line[8192];
        for (int n = 0; n < 12 && fgets(line, sizeof(line), f); n++)
            if (b.len + strlen(line) < 4096)
                s_put(&b, line, strlen(line));
        fclose(f);
        s_write("trace", seeds[i].name, &b);
    }
}

/* safetensors files as sl_st_write lays them out: the header's length
 * (8 bytes, little-endian), the JSON header, the data. */
static void s_safetensors(void)
{
    static const struct {
        const char *name, *header;
        size_t data;
    } seeds[] = {
        {"f32",
         "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
         "\"data_offsets\":[0,16]},\"x\":{\"dtype\":\"F32\",\"shape\":[3],"
         "\"data_offsets\":[16,28]}}",
         28},
        {"half",
         "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
         "\"embed\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[4,8]},"
         "\"lm_head\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[8,8]}}",
         8},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        s_buf_t b = {.len = 0};
        uint64_t n = strlen(seeds[i].header);
        for (int k = 0; k < 8; k++)
            s_u8(&b, (uint8_t)(n >> (8 * k)));
        s_put(&b, seeds[i].header, n);
        for (size_t k = 0; k < seeds[i].data; k++)
            s_u8(&b, (uint8_t)(k * 37));
        s_write("safetensors", seeds[i].name, &b);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CORPUS_DIR TRACE_DIR\n", argv[0]);
        return 2;
    }
    s_dir = argv[1];
    mkdir(s_dir, 0755);
    s_messages();
    s_sched();
    s_engine();
    s_cfg();
    s_trace(argv[2]);
    s_safetensors();
    return 0;
}
