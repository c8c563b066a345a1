/*
 * The neutral messages: what the layers say to one another about jobs and
 * executors, with no encoding. proto/ turns them into bytes and back, the
 * scheduler's core consumes them, the executor's engine and the simulator
 * produce them (sl_engine_job_report), so each is translated in one place.
 * Enum values equal the wire's (proto/ checks that at compile time).
 */
#ifndef SL_TYPES_H
#define SL_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"

typedef enum sl_prio {
    SL_PRIO_INTERACTIVE = 0, /* user-facing, served first */
    SL_PRIO_BATCH = 1,       /* offline, served when no interactive job waits */
    SL_PRIO_COUNT = 2,
} sl_prio_t;

/* Why a job was refused at submission (the wire's BusyReason). */
typedef enum sl_busy_reason {
    SL_BUSY_OVERLOAD = 0,
    SL_BUSY_DEADLINE = 1,
    SL_BUSY_QUEUE_FULL = 2,
    SL_BUSY_TENANT = 3,
    SL_BUSY_NO_EXECUTOR = 4,
    SL_BUSY_DRAINING = 5,
    SL_BUSY_REASON_COUNT = 6,
} sl_busy_reason_t;

/* How a job ended (the wire's ResultStatus). */
typedef enum sl_job_status {
    SL_JOB_OK = 0,
    SL_JOB_FAILED = 1,
    SL_JOB_CANCELED = 2,
    SL_JOB_EXPIRED = 3,
    SL_JOB_REJECTED = 4,
} sl_job_status_t;

/* What a submission says about a job. Strings and arrays are copied. */
typedef struct sl_job_desc {
    const char *id;               /* idempotency id (required) */
    const char *tenant;           /* may be NULL */
    const char *model;            /* may be NULL: any executor */
    const char *session_key;      /* may be NULL */
    sl_prio_t prio;               /* class */
    uint32_t prompt_tokens;       /* prompt length */
    uint32_t max_new_tokens;      /* output budget */
    const uint64_t *block_hashes; /* prefix block hashes, may be NULL */
    uint32_t n_block_hashes;      /* entries of block_hashes */
    uint32_t block_tokens;        /* tokens per hashed block */
    const uint32_t *token_ids;    /* prompt token ids, may be NULL: without block_hashes the
                                     core hashes their full blocks (sl_core_hash_block_tokens) */
    uint32_t n_token_ids;         /* entries of token_ids */
    sl_time_t ttft_deadline;      /* relative budget for the first token; 0 = none */
    sl_time_t deadline;           /* relative budget for the whole job; 0 = none */
    bool stream;                  /* tokens are reported as they are produced */
} sl_job_desc_t;

/* Which part of a job an executor serves (the wire's ExecutorRole). */
typedef enum sl_exec_role {
    SL_ROLE_MIXED = 0,   /* whole jobs, and either part of a split one */
    SL_ROLE_PREFILL = 1, /* prompts only: computes them and hands their KV on */
    SL_ROLE_DECODE = 2,  /* decoding only: KV handed to it by a peer */
    SL_ROLE_COUNT = 3,
} sl_exec_role_t;

/* How a job's KV moves between executors (the wire's KvMode). */
typedef enum sl_kv_mode {
    SL_KV_LOCAL = 0,   /* computed where it runs */
    SL_KV_AWAIT = 1,   /* reserve its blocks, say where they are, wait for the peer's KV */
    SL_KV_PUSH = 2,    /* compute its prompt, write the KV into the peer's blocks, hand off */
    SL_KV_MIGRATE = 3, /* pause it where it runs, write its KV into the peer's blocks, hand off */
    SL_KV_FETCH = 4,   /* write its leading blocks from the prefix cache into the peer's blocks */
    SL_KV_MODE_COUNT = 5,
} sl_kv_mode_t;

/* The KV plan of one job (the wire's KvPlan). Arrays are borrowed. */
typedef struct sl_kv_plan {
    uint64_t job_seq;       /* the scheduler's handle of the job */
    sl_kv_mode_t mode;      /* what to do */
    uint32_t peer;          /* executor index of the other side */
    uint64_t nonce;         /* names the reservation */
    uint32_t first_block;   /* PUSH, MIGRATE: first block of the job to write */
    const uint32_t *blocks; /* PUSH, MIGRATE: the peer's block ids from first_block on */
    uint32_t n_blocks;      /* entries of blocks */
    uint64_t block_bytes;   /* bytes of one of the peer's blocks */
    const uint64_t *hashes; /* FETCH: chained hashes of the job's leading blocks, from block 0 */
    uint32_t n_hashes;      /* entries of hashes (blocks first_block .. n_hashes-1 are sent) */
} sl_kv_plan_t;

/* An executor's answer to an AWAIT plan (the wire's KvReserved). */
typedef struct sl_kv_reserved {
    uint64_t job_seq;       /* the job */
    uint64_t nonce;         /* the plan's */
    int32_t status;         /* sl_status_t: SL_OK = reserved */
    uint32_t first_block;   /* first block the peer writes (those before are cached here) */
    const uint32_t *blocks; /* block ids from first_block on (borrowed) */
    uint32_t n_blocks;      /* entries of blocks */
    uint64_t block_bytes;   /* bytes of one block */
    const char *error;      /* why not ("" or NULL when reserved) */
} sl_kv_reserved_t;

/* The end of a push of a job's KV (the wire's KvSent). */
typedef struct sl_kv_sent {
    uint64_t job_seq;       /* the job */
    bool ok;                /* landed and notified: the peer has the job now */
    uint64_t bytes;         /* KV bytes written */
    uint32_t blocks;        /* blocks written */
    uint32_t xfer_us;       /* post -> completion */
    uint32_t prefill_us;    /* PUSH: receipt -> prompt computed */
    uint32_t pause_us;      /* MIGRATE: paused -> handed off */
    uint32_t output_tokens; /* tokens produced when handed off */
    const char *error;      /* why not ("" or NULL when ok) */
} sl_kv_sent_t;

/* What an executor says about itself when it joins. */
/* A job an executor says it holds (its hello after a scheduler restart). */
typedef struct sl_held_job {
    const char *id;   /* the client's id */
    uint64_t seq;     /* the handle its dispatch carried */
    uint32_t attempt; /* that dispatch's attempt */
} sl_held_job_t;

typedef struct sl_exec_info {
    const char *name;            /* unique name */
    uint32_t slots;              /* jobs it accepts in flight */
    const char *const *models;   /* models served; none = any */
    size_t n_models;             /* entries of models */
    const char *backend;         /* backend name */
    uint32_t kv_blocks_total;    /* KV capacity in blocks */
    uint32_t kv_block_tokens;    /* tokens per KV block */
    double speed;                /* relative speed hint; 0 = unknown */
    uint32_t max_context_tokens; /* prompt + new tokens of one job at most; 0 = unlimited */
    uint32_t vocab_size;         /* prompt token ids below this; 0 = unlimited */
    sl_exec_role_t role;         /* which part of a job it serves */
    uint64_t kv_region_bytes;    /* its registered KV region (0: no data plane) */
    bool kv_fetch_source;        /* it can send blocks of its prefix cache to a peer */
    uint32_t layer_first;        /* pipeline stage: first layer held */
    uint32_t layer_last;         /* ... last layer held (inclusive) */
    uint32_t layers_total;       /* ... of a model of this many layers; 0 = the whole model */
    const sl_held_job_t *held;   /* jobs it holds from an earlier registration: restored jobs
                                    among them are adopted (sl_core_exec_join) */
    uint32_t n_held;             /* entries of held */
    uint32_t step_tokens;        /* tokens one engine step computes at most; 0 = not said */
} sl_exec_info_t;

/* Stages in one pipeline chain at most. */
#define SL_STAGE_MAX 16

/* What an executor's data plane has moved (sl_exec_load_t.kv). */
typedef struct sl_exec_kv_load {
    uint32_t reservations;   /* jobs holding blocks for a peer's KV now */
    uint64_t bytes_sent;     /* KV bytes pushed to peers, since start */
    uint64_t bytes_received; /* KV bytes landed in its reservations */
    uint64_t pushes_failed;  /* pushes that failed or could not be made */
    uint64_t notifs_refused; /* notifications matching no reservation of its own */
    uint64_t class_bytes[3]; /* bytes its transport engine moved per class (control, critical,
                                background), since start */
} sl_exec_kv_load_t;

/* An executor's step cost model: a step's time in seconds is the sum of
 * these coefficients times its features (executor/sl_step_cost.c). */
#define SL_STEP_COST_N 6
typedef enum sl_step_cost_index {
    SL_SC_PREFILL_BASE = 0, /* 1 when the step computes prompt tokens */
    SL_SC_PREFILL_KTOK = 1, /* prompt tokens computed / 1000 */
    SL_SC_PREFILL_ATTN = 2, /* their attention pairs / 1e6 */
    SL_SC_DECODE_BASE = 3,  /* 1 when the step decodes */
    SL_SC_DECODE_SEQ = 4,   /* sequences decoding / 32 */
    SL_SC_DECODE_MCTX = 5,  /* context tokens they read / 1e6 */
} sl_step_cost_index_t;

/* Load an executor reports in heartbeats. */
typedef struct sl_exec_load {
    uint32_t running_jobs;           /* in its running batch */
    uint32_t queued_jobs;            /* waiting for a batch */
    uint64_t queued_tokens;          /* prompt + output tokens waiting */
    uint32_t kv_blocks_used;         /* KV blocks held */
    uint32_t kv_blocks_free;         /* KV blocks available */
    uint32_t step_time_us;           /* mean decode step time */
    float busy;                      /* the engine's share of recent time in steps, 0..1 */
    float gpu_util;                  /* measured GPU utilization, 0..1 (when has_gpu_util) */
    float cpu_util;                  /* measured host CPU busy share, 0..1 (when has_cpu_util) */
    bool has_gpu_util;               /* gpu_util is measured; false: unknown */
    bool has_cpu_util;               /* cpu_util is measured; false: unknown */
    bool has_gpu_mem;                /* gpu_mem_* are measured; false: unknown */
    uint64_t gpu_mem_used;           /* GPU memory allocated, bytes */
    uint64_t gpu_mem_total;          /* GPU memory installed, bytes */
    sl_exec_kv_load_t kv;            /* its data plane (all 0 without one) */
    bool has_step_cost;              /* step_cost is fitted; false: unknown */
    float step_cost[SL_STEP_COST_N]; /* its step cost model (sl_step_cost_index_t) */
    bool has_step_clock;             /* the three below are reported; false: unknown */
    uint32_t step_left_us;           /* until its step in progress ends (0: none in progress) */
    uint32_t decode_seqs;            /* sequences decoding in it */
    uint64_t decode_ctx;             /* their context tokens */
    uint64_t prompt_tokens;          /* prompt tokens its later steps have to compute */
    uint64_t prompt_pairs;           /* their attention pairs */
} sl_exec_load_t;

/* What an executor measures on its host (executor/sl_hostload.c); a value
 * not measured has its has_ flag false. */
typedef struct sl_host_sample {
    bool has_cpu;           /* cpu is measured */
    float cpu;              /* host CPU busy share since the previous sample, 0..1 */
    bool has_gpu;           /* gpu is measured */
    float gpu;              /* share of NVML's last sample period a kernel ran, 0..1 */
    bool has_gpu_mem;       /* gpu_mem_* are measured */
    uint64_t gpu_mem_used;  /* bytes of GPU memory allocated (all processes) */
    uint64_t gpu_mem_total; /* bytes of GPU memory installed */
} sl_host_sample_t;

/* Outcome of a job reported by an executor: what the core consumes. */
typedef struct sl_job_result {
    sl_job_status_t status; /* how it ended */
    uint32_t output_tokens; /* tokens produced */
    uint32_t cached_tokens; /* prompt tokens served from cache */
    sl_time_t exec_ttft;    /* executor receipt -> first token */
    sl_time_t exec_queue;   /* executor receipt -> its prefill step starts */
    bool has_exec_queue;    /* exec_queue was reported */
    sl_time_t exec_end;     /* executor receipt -> last token */
} sl_job_result_t;

/* A job's outcome as an executor reports it (the body of a Completion): the
 * part the core consumes, then what travels on to the client. Pointers are
 * borrowed from the producer for the duration of the call that takes it. */
typedef struct sl_result_report {
    sl_job_result_t res;    /* status and the executor's timings */
    uint32_t prompt_tokens; /* prompt length */
    const uint32_t *tokens; /* output token ids (may be NULL when n_tokens is 0) */
    uint32_t n_tokens;      /* entries of tokens */
    const char *error;      /* why it failed; NULL or "" when it did not */
} sl_result_report_t;

#endif
