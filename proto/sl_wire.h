/*
 * The wire, as the rest of the tree sees it: one typed function per message
 * a program sends and one neutral struct per message it reads. Field
 * numbers, the generated protobuf-c types, validation and the codec stay
 * inside proto/ (PROTOCOL.md says which file owns what).
 *
 * Every message is one ZeroMQ frame holding one envelope (after the
 * identity frame on a ROUTER socket). The envelope carries the protocol
 * version; a receiver refuses another version with SL_ERR_MSG_VERSION.
 * Jobs, answers, dispatches and completions travel only in batches: a batch
 * of one is the single case.
 *
 * Reading: sl_wire_recv decodes and validates a message into an opaque
 * sl_wire_msg_t; sl_wire_msg_kind says what it is, and the sl_wire_*_get
 * functions fill neutral structs whose pointers (strings, token ids) point
 * into the message and stay valid until its last reference is dropped
 * (sl_wire_msg_free). Items of a batch are validated one by one when read,
 * so one bad item is refused on its own and the rest proceed.
 */
#ifndef SL_WIRE_H
#define SL_WIRE_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_types.h"

/* The protocol version every envelope carries; a peer of another version is
 * refused with SL_ERR_MSG_VERSION. 2: batches only. */
#define SL_PROTO_VERSION 2

/* Bounds every decoded message is checked against. */
typedef struct sl_proto_limits {
    size_t max_msg_bytes;       /* whole encoded envelope */
    uint32_t max_prompt_tokens; /* prompt length */
    uint32_t max_token_ids;    /* entries of a prompt's token ids, a result's or a chunk's tokens */
    uint32_t max_block_hashes; /* entries of a prompt's block hashes */
    uint32_t max_new_tokens;   /* a job's max_new_tokens */
    uint32_t max_id_len;       /* job ids */
    uint32_t max_name_len;     /* tenant, model, session key, executor name, zone */
    uint32_t max_kv_events;    /* entries of one KV event list */
    uint32_t max_xport_address; /* bytes of a hello's transport address */
    uint32_t max_kv_blocks;     /* block ids of one KV plan or reservation */
    uint32_t max_kv_rkey;       /* bytes of a hello's packed KV region key */
    uint32_t max_models;        /* models of a hello */
    uint32_t max_slots;         /* slots of a hello */
    uint32_t max_batch;         /* items of one batch (completions, dispatches, submits, answers) */
    uint32_t max_peers;         /* peers of one Peers message */
} sl_proto_limits_t;

/* The defaults: 8 MiB messages, 1 Mi-token prompts, 64 Ki new tokens. */
extern const sl_proto_limits_t sl_proto_limits_default;

/* What a message is. */
typedef enum sl_wire_kind {
    SL_WIRE_UNKNOWN = 0,
    SL_WIRE_SUBMITS,        /* client -> scheduler: jobs (sl_wire_submit_get) */
    SL_WIRE_RESULTS,        /* scheduler -> client: accepted, busy, results */
    SL_WIRE_TOKEN_CHUNK,    /* executor -> scheduler -> client: streamed tokens */
    SL_WIRE_CANCEL,         /* client -> scheduler -> executor */
    SL_WIRE_HELLO,          /* executor -> scheduler: it joins */
    SL_WIRE_WELCOME,        /* scheduler -> executor: joined */
    SL_WIRE_HEARTBEAT,      /* executor -> scheduler: its load */
    SL_WIRE_DISPATCHES,     /* scheduler -> executor: jobs to run */
    SL_WIRE_COMPLETIONS,    /* executor -> scheduler: finished jobs */
    SL_WIRE_KV_EVENT,       /* executor -> scheduler: cached blocks stored or evicted */
    SL_WIRE_STATUS_REQUEST, /* client -> scheduler */
    SL_WIRE_STATUS_REPLY,   /* scheduler -> client */
    SL_WIRE_ERROR,          /* either way: a refusal */
    SL_WIRE_GOODBYE,        /* executor -> scheduler: it leaves */
    SL_WIRE_PEERS,          /* scheduler -> executor: data-plane peers joined or gone */
    SL_WIRE_PEER_REACH,     /* executor -> scheduler: whether a peer answered */
    SL_WIRE_KV_PLAN,        /* scheduler -> executor: how a job's KV moves */
    SL_WIRE_KV_RESERVED,    /* executor -> scheduler: blocks reserved for a job's KV */
    SL_WIRE_KV_SENT,        /* executor -> scheduler: a push of a job's KV ended */
    SL_WIRE_STAGE_PLAN,     /* scheduler -> executor: the chain of pipeline stages it drives */
    SL_WIRE_LOG_BATCH,      /* executor -> scheduler's collector: log lines, job traces */
    SL_WIRE_WEIGHTS_QUERY,  /* starting executor -> scheduler: who holds these weights? */
    SL_WIRE_WEIGHTS_SOURCE, /* scheduler -> starting executor: the holder, or none */
    SL_WIRE_KIND_COUNT,
} sl_wire_kind_t;

/* A decoded, validated message (reference counted). */
typedef struct sl_wire_msg sl_wire_msg_t;

/* A received identity frame (ROUTER peers). */
typedef struct sl_wire_ident {
    unsigned char data[256]; /* identity bytes */
    size_t len;              /* identity length; 0 for non-ROUTER sockets */
    char user[128];          /* the connection's ZAP user id ("" without one; common/sl_auth.h) */
} sl_wire_ident_t;

/* ---- reading ---------------------------------------------------------- */

/*
 * Receive one message. For a ROUTER socket (router != 0) expects an identity
 * frame then one payload frame. Returns SL_ERR_AGAIN when nothing is waiting
 * (with ZMQ_DONTWAIT), SL_ERR_MSG_* for a bad message (SL_ERR_MSG_VERSION
 * for another protocol version; the identity is still filled in so the
 * caller can answer with an Error, all its frames are consumed, err says
 * why), SL_OK with *msg_p owning the decoded message.
 */
sl_status_t sl_wire_recv(void *sock, int router, int flags, const sl_proto_limits_t *lim,
                         sl_wire_ident_t *ident, sl_wire_msg_t **msg_p, char *err, size_t err_len);

/* What msg is. */
sl_wire_kind_t sl_wire_msg_kind(const sl_wire_msg_t *msg);

/* A short name of a kind ("submits", "heartbeat", ...) for logs. */
const char *sl_wire_kind_name(sl_wire_kind_t kind);

/* Items of a batch message (submits, dispatches, completions; the results
 * batch counts accepted + busy + results) or peers of a PEERS message; 0
 * for other kinds. */
uint32_t sl_wire_msg_count(const sl_wire_msg_t *msg);

/* Take one more reference to msg, so several owners may keep pointers into
 * it (the jobs of one batch); each drops its own with sl_wire_msg_free. */
sl_wire_msg_t *sl_wire_msg_ref(sl_wire_msg_t *msg);

/* Drop a reference, freeing the message with the last; NULL-safe; sets
 * *msg_p = NULL. */
void sl_wire_msg_free(sl_wire_msg_t **msg_p);

/*
 * Job i of a SUBMITS message, validated against lim, into *job (pointers
 * into msg). On failure *job is untouched and err says why (the caller
 * answers that item alone).
 */
sl_status_t sl_wire_submit_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                               sl_job_desc_t *job, char *err, size_t err_len);

/* The frame a SUBMITS message arrived in (reference counted). */
typedef struct sl_wire_frame sl_wire_frame_t;

/*
 * The encoded bytes of job i of a SUBMITS message as they arrived, for
 * forwarding into a dispatch without encoding it again. They lie in the
 * message's frame: valid as long as msg, or as a reference to the frame
 * (sl_wire_msg_frame) taken before msg is freed. SL_ERR_NOT_FOUND when msg
 * did not come from sl_wire_recv.
 */
sl_status_t sl_wire_submit_job_bytes(const sl_wire_msg_t *msg, uint32_t i, const void **bytes_p,
                                     size_t *len_p);

/* One more reference to the frame msg arrived in (SUBMITS messages from
 * sl_wire_recv), or NULL; the caller owns it (sl_wire_frame_free). Keeping
 * the frame instead of the message lets the decoded message go at once. */
sl_wire_frame_t *sl_wire_msg_frame(const sl_wire_msg_t *msg);

/* Drop a frame reference; NULL-safe; sets *frame_p = NULL. */
void sl_wire_frame_free(sl_wire_frame_t **frame_p);

/* One dispatch: the job, the scheduler's handle for it, and its attempt. */
typedef struct sl_wire_dispatch {
    sl_job_desc_t job;             /* what to run (pointers into the message) */
    uint64_t job_seq;              /* the scheduler's handle, echoed in completions and chunks */
    uint32_t attempt;              /* dispatches of this job so far, this one included */
    const uint32_t *resume_tokens; /* output tokens already delivered to the client (a streaming
                                      job dispatched again): go on after them (NULL: none) */
    uint32_t n_resume_tokens;      /* entries of resume_tokens, at most job.max_new_tokens */
} sl_wire_dispatch_t;

/* Dispatch i of a DISPATCHES message, validated; as sl_wire_submit_get. */
sl_status_t sl_wire_dispatch_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                                 sl_wire_dispatch_t *d, char *err, size_t err_len);

/* One completion: the job's handle and the executor's report of it. */
typedef struct sl_wire_completion {
    uint64_t job_seq;          /* the scheduler's handle of the job */
    sl_result_report_t report; /* how it ended (pointers into the message) */
} sl_wire_completion_t;

/* Completion i of a COMPLETIONS message (validated with the message). */
void sl_wire_completion_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_completion_t *c);

/* The job handle of completion i, to look ahead at. */
uint64_t sl_wire_completion_seq(const sl_wire_msg_t *msg, uint32_t i);

/* The counts of a RESULTS message. */
typedef struct sl_wire_results {
    uint32_t n_accepted;  /* accepted job ids */
    uint32_t n_busy;      /* jobs refused for now */
    uint32_t n_results;   /* finished jobs */
    uint32_t queue_depth; /* jobs waiting in the scheduler when it was sent */
} sl_wire_results_t;

/* A job refused for now. */
typedef struct sl_wire_busy {
    const char *job_id;      /* the job */
    uint32_t retry_after_ms; /* a retry before this is refused again; 0: no hint */
    sl_busy_reason_t reason; /* why */
    const char *detail;      /* the reason in words */
} sl_wire_busy_t;

/* A finished job's timings as the client sees them. */
typedef struct sl_wire_timings {
    uint64_t queued_us;     /* receipt at the scheduler -> dispatch */
    uint64_t ttft_us;       /* receipt -> first token */
    uint64_t end_us;        /* receipt -> last token */
    uint32_t prompt_tokens; /* prompt length */
    uint32_t cached_tokens; /* prompt tokens served from the prefix cache */
    uint32_t output_tokens; /* tokens produced */
    uint64_t exec_ttft_us;  /* dispatch at the executor -> first token */
    uint64_t exec_end_us;   /* dispatch at the executor -> last token */
    uint64_t exec_queue_us; /* dispatch at the executor -> its prefill step */
    bool has_exec_queue;    /* exec_queue_us is reported */
} sl_wire_timings_t;

/* A finished job as the scheduler tells its client. */
typedef struct sl_wire_result {
    const char *job_id;        /* the job */
    sl_job_status_t status;    /* how it ended */
    const uint32_t *tokens;    /* output token ids */
    uint32_t n_tokens;         /* entries of tokens */
    bool has_timings;          /* timings were sent */
    sl_wire_timings_t timings; /* when has_timings */
    const char *executor;      /* the executor that ran it ("" when none) */
    const char *error;         /* why it failed ("" when it did not) */
    uint32_t attempts;         /* dispatches it took */
    bool late;                 /* ended OK but past its whole-job deadline */
} sl_wire_result_t;

/* The counts of a RESULTS message. */
void sl_wire_results_get(const sl_wire_msg_t *msg, sl_wire_results_t *r);

/* Accepted item i of a RESULTS message, validated: the job id. */
sl_status_t sl_wire_accepted_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                                 const char **job_id_p, char *err, size_t err_len);

/* Busy item i of a RESULTS message, validated. */
sl_status_t sl_wire_busy_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                             sl_wire_busy_t *b, char *err, size_t err_len);

/* Result item i of a RESULTS message, validated. */
sl_status_t sl_wire_result_get(const sl_wire_msg_t *msg, uint32_t i, const sl_proto_limits_t *lim,
                               sl_wire_result_t *r, char *err, size_t err_len);

/* Streamed tokens of a running job. */
typedef struct sl_wire_chunk {
    const char *job_id;     /* to the client: the job ("" from an executor) */
    uint64_t job_seq;       /* from an executor: the scheduler's handle */
    uint32_t offset;        /* index of the first token in the output */
    const uint32_t *tokens; /* the tokens */
    uint32_t n_tokens;      /* their number */
} sl_wire_chunk_t;

void sl_wire_chunk_get(const sl_wire_msg_t *msg, sl_wire_chunk_t *c);

/* A cancel: by id from a client, by handle to an executor. */
typedef struct sl_wire_cancel {
    const char *job_id; /* the job ("" when by handle) */
    uint64_t job_seq;   /* the scheduler's handle (0 when by id) */
} sl_wire_cancel_t;

void sl_wire_cancel_get(const sl_wire_msg_t *msg, sl_wire_cancel_t *c);

/* An executor's hello: what it says about itself. */
/* Model weights an executor serves to peers over its transport engine. */
typedef struct sl_wire_weights {
    const char *name;  /* the weight file's base name (NULL or "": none) */
    uint64_t bytes;    /* its size */
    uint64_t checksum; /* sl_hash_bytes of the whole file, seed 0 */
    const void *rkey;  /* packed remote key of the registered bytes */
    size_t rkey_len;   /* bytes of rkey */
} sl_wire_weights_t;

/* The scheduler's answer to a weights query. */
typedef struct sl_wire_weights_source {
    bool found;                /* a live executor holds them */
    const char *peer;          /* its name */
    const void *xport_address; /* its transport engine's address */
    size_t xport_address_len;  /* bytes of xport_address */
    sl_wire_weights_t weights; /* what it holds */
} sl_wire_weights_source_t;

typedef struct sl_wire_hello {
    sl_exec_info_t info;       /* what the scheduler keeps (models point into the message) */
    const char *zone;          /* placement zone ("" when none) */
    uint32_t gpus;             /* GPUs it has */
    uint64_t gpu_mem_bytes;    /* GPU memory it has */
    const void *xport_address; /* its data-plane address */
    size_t xport_address_len;  /* bytes of xport_address */
    const void *kv_rkey;       /* packed remote key of its KV region (NULL when none) */
    size_t kv_rkey_len;        /* bytes of kv_rkey (its region's size is info.kv_region_bytes) */
    sl_wire_weights_t weights; /* the weights it serves to peers (name NULL or "": none) */
    const sl_held_job_t *held; /* sending: jobs it holds from an earlier registration */
    uint32_t n_held;           /* entries of held (sending) */
} sl_wire_hello_t;

void sl_wire_hello_get(const sl_wire_msg_t *msg, sl_wire_hello_t *h);
/* The jobs a HELLO says its executor holds (field held), at most cap of
 * them into out (pointers into msg); returns how many it lists in all. */
uint32_t sl_wire_hello_held(const sl_wire_msg_t *msg, sl_held_job_t *out, uint32_t cap);

/* A job's encoding as submitted (sl_wire_submit_job_bytes), decoded and
 * validated again against lim: the scheduler's journal keeps those bytes.
 * *job_p owns the decoded job; *desc points into it. On failure err says
 * why and nothing is allocated. */
typedef struct sl_wire_job sl_wire_job_t;
sl_status_t sl_wire_job_unpack(const void *bytes, size_t len, const sl_proto_limits_t *lim,
                               sl_wire_job_t **job_p, sl_job_desc_t *desc, char *err,
                               size_t err_len);
/* Free a job from sl_wire_job_unpack; NULL-safe; sets *job_p = NULL. */
void sl_wire_job_free(sl_wire_job_t **job_p);

/* The scheduler's welcome. */
typedef struct sl_wire_welcome {
    uint32_t heartbeat_ms;   /* heartbeat interval it asks for */
    uint32_t executor_index; /* the executor's index */
} sl_wire_welcome_t;

void sl_wire_welcome_get(const sl_wire_msg_t *msg, sl_wire_welcome_t *w);

/* A heartbeat's sequence number and load; an unmeasured value (has_ flag
 * false) reads as 0 whatever was sent. */
void sl_wire_heartbeat_get(const sl_wire_msg_t *msg, uint64_t *seq_p, sl_exec_load_t *load);

/* Cached blocks an executor stored or evicted. */
typedef struct sl_wire_kv_event {
    const uint64_t *stored;  /* hashes of blocks stored */
    size_t n_stored;         /* their number */
    const uint64_t *evicted; /* hashes of blocks evicted */
    size_t n_evicted;        /* their number */
    bool reset;              /* the executor dropped its whole cache */
} sl_wire_kv_event_t;

void sl_wire_kv_event_get(const sl_wire_msg_t *msg, sl_wire_kv_event_t *kv);

/* A refusal. */
typedef struct sl_wire_error {
    sl_status_t code;    /* why, as a status */
    const char *message; /* in words ("" when none) */
    const char *job_id;  /* the submitted job it refuses ("" when none) */
} sl_wire_error_t;

void sl_wire_error_get(const sl_wire_msg_t *msg, sl_wire_error_t *e);

/* A goodbye's reason ("" when none). */
const char *sl_wire_goodbye_reason(const sl_wire_msg_t *msg);
/* Whether a goodbye only announces a drain (a final one follows). */
bool sl_wire_goodbye_draining(const sl_wire_msg_t *msg);

/* A data-plane peer of a PEERS message. */
typedef struct sl_wire_peer {
    uint32_t executor_index;   /* the scheduler's index of it */
    const char *name;          /* its name */
    const void *xport_address; /* its transport address (none when gone) */
    size_t xport_address_len;  /* bytes of xport_address */
    const void *kv_rkey;       /* packed remote key of its KV region */
    size_t kv_rkey_len;        /* bytes of kv_rkey */
    uint64_t kv_region_bytes;  /* bytes of that region */
    bool gone;                 /* lost or left: drop it */
} sl_wire_peer_t;

/* Peer i (below sl_wire_msg_count) of a PEERS message (pointers into msg). */
void sl_wire_peer_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_peer_t *p);

/* An executor's report on one peer. */
typedef struct sl_wire_peer_reach {
    uint32_t peer_index; /* the peer's executor index */
    bool reachable;      /* a transfer to it completed */
    uint32_t rtt_us;     /* that transfer's round trip (reachable only) */
    const char *error;   /* why not ("" when reachable) */
} sl_wire_peer_reach_t;

void sl_wire_peer_reach_get(const sl_wire_msg_t *msg, sl_wire_peer_reach_t *r);

/* The KV plan, reservation or push report of a message (arrays point into msg). */
void sl_wire_kv_plan_get(const sl_wire_msg_t *msg, sl_kv_plan_t *p);
void sl_wire_kv_reserved_get(const sl_wire_msg_t *msg, sl_kv_reserved_t *r);
void sl_wire_kv_sent_get(const sl_wire_msg_t *msg, sl_kv_sent_t *s);
/* A stage plan's chain: *n_p executor indices (pointing into msg). */
void sl_wire_stage_plan_get(const sl_wire_msg_t *msg, const uint32_t **chain_p, uint32_t *n_p);

/* Longest log line or trace record a LogBatch may carry, in bytes. */
#define SL_WIRE_LOG_LINE_MAX 4096

/* Log lines and job traces an executor ships to the collector. */
typedef struct sl_wire_log_batch {
    const char *executor;      /* its name (validated: a plain file name) */
    const char *const *logs;   /* log lines, oldest first */
    uint32_t n_logs;           /* their number */
    const char *const *traces; /* trace records, oldest first */
    uint32_t n_traces;         /* their number */
    uint64_t dropped;          /* lines it dropped since it started */
    uint64_t shipped;          /* lines it shipped since it started, these included */
} sl_wire_log_batch_t;

/* The name a WEIGHTS_QUERY asks for (into msg). */
const char *sl_wire_weights_query_get(const sl_wire_msg_t *msg);
/* The answer of a WEIGHTS_SOURCE message (pointers into msg). */
void sl_wire_weights_source_get(const sl_wire_msg_t *msg, sl_wire_weights_source_t *w);

/* The batch of a LOG_BATCH message (pointers into msg). */
void sl_wire_log_batch_get(const sl_wire_msg_t *msg, sl_wire_log_batch_t *b);

/* The head of a status reply. */
typedef struct sl_wire_status {
    uint32_t n_executors;        /* executors listed */
    uint32_t n_counters;         /* counters listed */
    uint32_t queued_interactive; /* jobs waiting, interactive */
    uint32_t queued_batch;       /* jobs waiting, batch */
    uint32_t inflight;           /* jobs running */
    const char *policy;          /* placement policy name */
} sl_wire_status_t;

/* One executor in a status reply. */
typedef struct sl_wire_exec_status {
    const char *name;           /* its name */
    const char *backend;        /* its backend */
    sl_exec_load_t load;        /* its last load (has_ flags as sent) */
    bool has_load;              /* load was sent */
    uint32_t inflight;          /* jobs dispatched to it */
    uint32_t slots;             /* jobs it accepts in flight */
    bool alive;                 /* heard from within the loss timeout */
    uint64_t completed;         /* jobs that ended OK on it */
    uint64_t failed;            /* jobs it failed or rejected */
    bool quarantined;           /* not placed on now */
    bool data_plane;            /* it registered a transport address and a KV region */
    uint64_t kv_region_bytes;   /* bytes of that region */
    uint32_t peers_reachable;   /* data-plane peers it reached */
    uint32_t peers_unreachable; /* data-plane peers it could not reach */
} sl_wire_exec_status_t;

/* One counter in a status reply. */
typedef struct sl_wire_counter {
    const char *name; /* its name */
    uint64_t value;   /* its value */
} sl_wire_counter_t;

void sl_wire_status_get(const sl_wire_msg_t *msg, sl_wire_status_t *st);
void sl_wire_status_exec_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_exec_status_t *e);
void sl_wire_status_counter_get(const sl_wire_msg_t *msg, uint32_t i, sl_wire_counter_t *c);

/* ---- sending single messages ----------------------------------------- */
/*
 * Each sends one envelope on sock, after the identity frame `to` when it is
 * non-NULL (ROUTER sockets). flags are zmq_send flags (ZMQ_DONTWAIT).
 * SL_ERR_AGAIN when the socket would block under ZMQ_DONTWAIT,
 * SL_ERR_PEER_LOST when a ROUTER no longer knows `to`, SL_ERR_LINK on other
 * failures (logged). Nothing is taken: every pointer is only read.
 */
sl_status_t sl_wire_hello_send(void *sock, const sl_wire_hello_t *h, int flags);
sl_status_t sl_wire_welcome_send(void *sock, const sl_wire_ident_t *to, const sl_wire_welcome_t *w,
                                 int flags);
sl_status_t sl_wire_heartbeat_send(void *sock, uint64_t seq, const sl_exec_load_t *load, int flags);
sl_status_t sl_wire_cancel_send(void *sock, const sl_wire_ident_t *to, const sl_wire_cancel_t *c,
                                int flags);
sl_status_t sl_wire_chunk_send(void *sock, const sl_wire_ident_t *to, const sl_wire_chunk_t *c,
                               int flags);
sl_status_t sl_wire_kv_event_send(void *sock, const sl_wire_kv_event_t *kv, int flags);
sl_status_t sl_wire_status_request_send(void *sock, int flags);
sl_status_t sl_wire_status_reply_send(void *sock, const sl_wire_ident_t *to,
                                      const sl_wire_status_t *st,
                                      const sl_wire_exec_status_t *execs,
                                      const sl_wire_counter_t *counters, int flags);
sl_status_t sl_wire_error_send(void *sock, const sl_wire_ident_t *to, const sl_wire_error_t *e,
                               int flags);
sl_status_t sl_wire_goodbye_send(void *sock, const char *reason, bool draining, int flags);
/* n peers (1 to the limit's max_peers) in one PEERS message. */
sl_status_t sl_wire_peers_send(void *sock, const sl_wire_ident_t *to, const sl_wire_peer_t *peers,
                               uint32_t n, int flags);
sl_status_t sl_wire_peer_reach_send(void *sock, const sl_wire_peer_reach_t *r, int flags);
/* The KV plan of one job (to an executor). */
sl_status_t sl_wire_kv_plan_send(void *sock, const sl_wire_ident_t *to, const sl_kv_plan_t *p,
                                 int flags);
/* Blocks reserved for a job awaiting KV, or why not (to the scheduler). */
sl_status_t sl_wire_kv_reserved_send(void *sock, const sl_kv_reserved_t *r, int flags);
/* The end of a push of a job's KV (to the scheduler). */
sl_status_t sl_wire_kv_sent_send(void *sock, const sl_kv_sent_t *s, int flags);
/* The chain of pipeline stages a first stage drives (n 0: none; at most SL_STAGE_MAX). */
sl_status_t sl_wire_stage_plan_send(void *sock, const sl_wire_ident_t *to, const uint32_t *chain,
                                    uint32_t n, int flags);
/* Starting executor -> scheduler: who holds the weights named name? */
sl_status_t sl_wire_weights_query_send(void *sock, const char *name, int flags);
/* Scheduler -> starting executor: the holder (w is only read). */
sl_status_t sl_wire_weights_source_send(void *sock, const sl_wire_ident_t *to,
                                        const sl_wire_weights_source_t *w, int flags);
/* Executor -> collector: a batch of log lines and traces (b's strings are
 * only read). */
sl_status_t sl_wire_log_batch_send(void *sock, const sl_wire_log_batch_t *b, int flags);

/* ---- batches ---------------------------------------------------------- */

/*
 * A batch under construction: items are packed one after the other
 * straight into one buffer, which is the encoding of the batch message, and
 * sent as the body of one envelope. The buffer is kept between sends, so a
 * steady stream of batches allocates nothing. Fields are proto/'s own.
 */
typedef struct sl_wire_batch {
    uint8_t *buf;    /* header room, then the packed items */
    size_t len;      /* bytes used, header room included */
    size_t cap;      /* bytes allocated */
    uint32_t n;      /* items added since the last send */
    uint32_t body;   /* which batch (proto/'s number for it) */
    uint64_t scalar; /* RESULTS: the queue depth sent with it */
} sl_wire_batch_t;

/* Bytes after which a sender sends the batch it is filling, whatever its
 * item count: a batch of long prompts stays far below every peer's
 * max-msg-bytes (8 MiB by default) and is not held back for a whole turn. */
#define SL_WIRE_BATCH_BYTES (1u << 20)

/* An empty batch of kind SL_WIRE_SUBMITS, _RESULTS, _DISPATCHES or
 * _COMPLETIONS; allocates nothing. */
void sl_wire_batch_init(sl_wire_batch_t *b, sl_wire_kind_t kind);

/* Free the buffer; the batch is empty and may be used again. */
void sl_wire_batch_fini(sl_wire_batch_t *b);

/* Forget the items added since the last send. */
void sl_wire_batch_clear(sl_wire_batch_t *b);

/*
 * Send the batch as one envelope (after the identity frame `to` when it is
 * non-NULL) and empty it, whether or not the send succeeded. Nothing is
 * sent for an empty batch (SL_OK). Return values as the single senders.
 */
sl_status_t sl_wire_batch_send(void *sock, const sl_wire_ident_t *to, sl_wire_batch_t *b,
                               int flags);

/*
 * Encode the submission of job, validated exactly as the scheduler will
 * (err says why not: SL_ERR_MSG_* / SL_ERR_INVALID), into a new zeroed
 * allocation of head bytes followed by the encoded item, so a caller keeps
 * its own struct and the bytes in one block (free with free()). prompt_tokens
 * 0 means the number of token ids.
 */
sl_status_t sl_wire_submit_pack(const sl_job_desc_t *job, const sl_proto_limits_t *lim, size_t head,
                                void **mem_p, size_t *len_p, char *err, size_t err_len);

/* Add a submission packed by sl_wire_submit_pack to a SUBMITS batch.
 * SL_ERR_NOMEM leaves the batch unchanged (as every _add below). */
sl_status_t sl_wire_submit_add_packed(sl_wire_batch_t *b, const void *item, size_t len);

/* Add a job to a SUBMITS batch (encoded, not validated). */
sl_status_t sl_wire_submit_add(sl_wire_batch_t *b, const sl_job_desc_t *job);

/* Add a dispatch of job to a DISPATCHES batch (encoded, not validated). */
sl_status_t sl_wire_dispatch_add(sl_wire_batch_t *b, const sl_job_desc_t *job, uint64_t job_seq,
                                 uint32_t attempt);

/* Add a dispatch to a DISPATCHES batch whose job is given as the bytes it
 * was submitted in (sl_wire_submit_job_bytes): forwarded verbatim. */
sl_status_t sl_wire_dispatch_add_job_bytes(sl_wire_batch_t *b, const void *job, size_t job_len,
                                           uint64_t job_seq, uint32_t attempt);
/* The same, for a streaming job dispatched again: resume[0..n_resume) are
 * the output tokens already delivered to its client (Dispatch.resume_tokens;
 * n_resume 0 sends none). */
sl_status_t sl_wire_dispatch_add_resume(sl_wire_batch_t *b, const void *job, size_t job_len,
                                        uint64_t job_seq, uint32_t attempt, const uint32_t *resume,
                                        uint32_t n_resume);

/* Add a completion of job job_seq to a COMPLETIONS batch. */
sl_status_t sl_wire_completion_add(sl_wire_batch_t *b, uint64_t job_seq,
                                   const sl_result_report_t *r);

/* Add an acceptance of job_id to a RESULTS batch. */
sl_status_t sl_wire_accepted_add(sl_wire_batch_t *b, const char *job_id);

/* Add a busy answer to a RESULTS batch. */
sl_status_t sl_wire_busy_add(sl_wire_batch_t *b, const sl_wire_busy_t *busy);

/* Add a result to a RESULTS batch. */
sl_status_t sl_wire_result_add(sl_wire_batch_t *b, const sl_wire_result_t *r);

/* Add a result encoded by sl_wire_result_pack to a RESULTS batch. */
sl_status_t sl_wire_result_add_packed(sl_wire_batch_t *b, const void *bytes, size_t len);

/* Set the queue depth a RESULTS batch carries (sent with its next send). */
void sl_wire_results_set_depth(sl_wire_batch_t *b, uint32_t queue_depth);

/*
 * Encode r at the end of the buffer *buf_p of *cap_p bytes, doubling it
 * (realloc) until it fits: *bytes_p and *len_p say where the encoding lies
 * inside it (valid until the buffer is grown again). SL_ERR_NOMEM when it
 * cannot grow (the buffer stays valid).
 */
sl_status_t sl_wire_result_pack(const sl_wire_result_t *r, uint8_t **buf_p, size_t *cap_p,
                                const void **bytes_p, size_t *len_p);

/* ---- socket helpers --------------------------------------------------- */

/*
 * Read one event from the PAIR socket of a ZeroMQ socket monitor without
 * waiting: its number (ZMQ_EVENT_*) in *event_p; the endpoint frame that
 * follows it is read and dropped. SL_ERR_AGAIN when none is waiting.
 */
sl_status_t sl_wire_monitor_event(void *mon, uint16_t *event_p);

#endif
