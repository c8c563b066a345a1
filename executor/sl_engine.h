/*
 * The executor's engine: continuous batching over a backend. Pure like the
 * scheduler's core: time is an argument and nothing here touches a socket,
 * so the executor daemon runs it on the real clock and the simulator on a
 * virtual one (one implementation of the sim executor, not a copy).
 */
#ifndef SL_ENGINE_H
#define SL_ENGINE_H

#include "common/sl_cfg.h"
#include "common/sl_list.h"
#include "common/sl_types.h"
#include "executor/sl_backend.h"

typedef struct sl_engine sl_engine_t;

typedef struct sl_engine_cfg {
    int max_batch;         /* sequences running at once (32) */
    int64_t batch_wait_us; /* a partial batch of batch-class jobs starts after this wait (50 ms) */
    int chunk_tokens;      /* streamed tokens per chunk */
    int step_tokens;       /* tokens one step computes at most (chunked prefill; 0 = no limit) */
    int run_steps;         /* modelled steps run back to back while nothing changes (1: off) */
} sl_engine_cfg_t;

extern const sl_cfg_field_t sl_engine_cfg_fields[];

typedef enum sl_engine_done {
    SL_ENGINE_OK = 0,       /* finished normally */
    SL_ENGINE_FAILED = 1,   /* the backend failed it */
    SL_ENGINE_CANCELED = 2, /* canceled */
    SL_ENGINE_MOVED = 3,    /* its KV went to a peer, which goes on with it (sl_engine_end) */
} sl_engine_done_t;

/* Why a job stopped stepping and is held (admitted, its blocks kept). */
typedef enum sl_engine_held {
    SL_ENGINE_HELD_RESERVED = 0,  /* SL_KV_AWAIT: blocks reserved, its KV comes from a peer */
    SL_ENGINE_HELD_PREFILLED = 1, /* SL_KV_PUSH: prompt computed, its KV goes to a peer */
    SL_ENGINE_HELD_PAUSED = 2,    /* sl_engine_pause: paused between steps (migration) */
} sl_engine_held_t;

/* A job inside the engine; the embedder allocates it (with seq.out of
 * max_new_tokens entries) and owns it again after on_done. */
typedef struct sl_engine_job {
    /* What each step reads and writes first, then the sequence (whose own
     * step fields lead it), then what only submission and completion read:
     * a step touches two or three cache lines of a job rather than four. */
    sl_list_t link;        /* waiting or running list */
    sl_time_t first_token; /* time of the first token (0 until then) */
    uint32_t streamed;     /* tokens already reported */
    sl_kv_mode_t kv_mode;  /* SL_KV_LOCAL, or SL_KV_AWAIT / SL_KV_PUSH: held (see cb.held) */
    bool has_started;      /* started is set */
    bool stream;           /* report tokens as they come */
    bool cancel;           /* cancel requested */
    bool admitted;         /* backend admitted it */
    bool held;             /* admitted but not stepped (cb.held said why) */
    bool ready;            /* admitted and runnable, waiting for a place in the batch */
    bool pause;            /* sl_engine_pause asked: held at the step boundary */
    sl_seq_t seq;          /* what the backend sees */
    sl_time_t arrived;     /* submit time */
    sl_time_t started;     /* start of the step that began its prefill (0 until then) */
    sl_time_t finished;    /* completion time */
    void *user;            /* embedder's data */
} sl_engine_job_t;

typedef struct sl_engine_cb {
    /* New tokens of a streaming job: out[from .. from+n). */
    void (*tokens)(void *arg, sl_engine_job_t *job, uint32_t from, uint32_t n);
    /* The job ended; the engine forgets it. */
    void (*done)(void *arg, sl_engine_job_t *job, sl_engine_done_t how, const char *error);
    /* The job is held: it keeps its blocks and is not stepped until
     * sl_engine_import, sl_engine_resume or sl_engine_end (may be NULL when
     * no job is ever held). */
    void (*held)(void *arg, sl_engine_job_t *job, sl_engine_held_t why);
    void *arg; /* passed to all */
} sl_engine_cb_t;

/* Load for heartbeats. */
typedef struct sl_engine_load {
    uint32_t running;                /* sequences in the running batch */
    uint32_t waiting;                /* jobs waiting for a batch */
    uint64_t waiting_tokens;         /* their prompt + output tokens */
    uint32_t kv_used;                /* KV blocks used */
    uint32_t kv_free;                /* KV blocks free */
    uint32_t step_us;                /* mean step time since the last call */
    float busy;                      /* fraction of time stepping since the last call */
    sl_exec_kv_load_t kv;            /* the embedder's data plane (sl_engine_load leaves it 0) */
    bool has_step_cost;              /* step_cost is fitted (enough steps seen) */
    float step_cost[SL_STEP_COST_N]; /* its steps' cost model (executor/sl_step_cost.c) */
    uint32_t step_left_us;           /* until the step in progress ends (0: none in progress) */
    uint32_t decode_seqs;            /* running sequences past their prompt (decoding) */
    uint64_t decode_ctx;             /* their context tokens */
    uint64_t prompt_tokens; /* prompt tokens still to compute (after the step in progress) */
    uint64_t prompt_pairs;  /* their attention pairs (chunk x (before + chunk / 2)) */
} sl_engine_load_t;

sl_status_t sl_engine_create(const sl_engine_cfg_t *cfg, const sl_backend_ops_t *ops,
                             const sl_backend_params_t *params, const sl_engine_cb_t *cb,
                             sl_engine_t **engine_p);
/* Start loading the engine's own state and the step's batch, so that the
 * next sl_engine_advance finds them cached (a hint: nothing changes). An
 * embedder driving many engines calls it for the one it will advance next.
 * max_batch: the engine's, from the embedder's copy of the configuration
 * (reading the engine's own would wait for the very load this starts). */
void sl_engine_prefetch(const sl_engine_t *e, int max_batch);
/* Destroy; jobs still inside are ended with on_done(CANCELED). NULL-safe. */
void sl_engine_destroy(sl_engine_t **engine_p);
/* Add a job (the engine holds it until on_done). */
void sl_engine_submit(sl_engine_t *engine, sl_engine_job_t *job, sl_time_t now);
/* Cancel the job with seq.id == id; SL_ERR_NOT_FOUND when absent. */
sl_status_t sl_engine_cancel(sl_engine_t *engine, uint64_t id, sl_time_t now);
/* Up to cap of the jobs inside the engine into out (any order); returns
 * how many it holds in all. */
uint32_t sl_engine_list(sl_engine_t *engine, sl_engine_job_t **out, uint32_t cap);
/* The job with seq.id == id inside the engine, or NULL. */
sl_engine_job_t *sl_engine_find(sl_engine_t *engine, uint64_t id);
/* Pause a running job for migration: held (SL_ENGINE_HELD_PAUSED) at the end
 * of the step in flight, or at once between steps, after its tokens so far
 * are streamed. SL_ERR_NOT_FOUND when absent, SL_ERR_AGAIN when it is not
 * admitted yet (nothing to move), SL_ERR_INVALID when held already. */
sl_status_t sl_engine_pause(sl_engine_t *engine, uint64_t id, sl_time_t now);
/* A held SL_ENGINE_HELD_PAUSED job runs again here (its move failed). */
sl_status_t sl_engine_resume(sl_engine_t *engine, sl_engine_job_t *job, sl_time_t now);
/* A held SL_ENGINE_HELD_RESERVED job got its KV from a peer: the embedder
 * has put its n_out tokens so far into seq.out; the first streamed tokens
 * were already delivered by the peer. It is prefilled and decodes next.
 * With n_out == 0 the peer sent only the KV of its first prefix_tokens
 * prompt tokens (a prefix fetch): it computes the rest of its prompt. */
sl_status_t sl_engine_import(sl_engine_t *engine, sl_engine_job_t *job, uint32_t n_out,
                             uint32_t streamed, uint32_t prefix_tokens, sl_time_t now);
/* Hold the blocks of the longest cached prefix of hashes[0..n) for a peer
 * to read (SL_ERR_NOT_FOUND: none cached; SL_ERR_UNSUPPORTED: the backend
 * has no prefix cache of blocks); release with sl_engine_kv_unhold. */
sl_status_t sl_engine_kv_hold(sl_engine_t *engine, const uint64_t *hashes, uint32_t n,
                              void **hold_p, const uint32_t **ids_p, uint32_t *n_found_p);
void sl_engine_kv_unhold(sl_engine_t *engine, void *hold);
/* Whether the backend can hold cached blocks for a peer (serve a prefix fetch). */
bool sl_engine_kv_can_hold(const sl_engine_t *engine);
/* End a held job (its blocks are released): SL_ENGINE_MOVED once its KV is
 * the peer's, SL_ENGINE_FAILED or _CANCELED when the move is abandoned. */
void sl_engine_end(sl_engine_t *engine, sl_engine_job_t *job, sl_engine_done_t how,
                   const char *error, sl_time_t now);
/* The KV pool of the backend (NULL without one; see sl_backend_ops_t.kv_pool). */
void *sl_engine_kv_pool(const sl_engine_t *engine, size_t *bytes_p, size_t *block_bytes_p,
                        bool *device_p);
/* The block table of an admitted job (NULL when the backend keeps none). */
const uint32_t *sl_engine_kv_table(const sl_engine_t *engine, const sl_engine_job_t *job,
                                   uint32_t *n_p);

/* The backend's own state (what its create made), for an embedder that
 * drives a backend beside the engine: a later pipeline stage runs the steps
 * the stage before it sends (sl_backend_ref_stage_run). */
void *sl_engine_backend(const sl_engine_t *engine);

/* Do what is due at now; returns when to call again (INT64_MAX: on the next
 * submit). A real-compute backend runs one step per call. */
sl_time_t sl_engine_advance(sl_engine_t *engine, sl_time_t now);
/* Jobs inside (waiting + running). */
uint32_t sl_engine_jobs(const sl_engine_t *engine);
/* The backend's KV pool: *blocks_p blocks of *block_tokens_p tokens (both 0
 * for a backend that keeps no KV), what the executor advertises. */
void sl_engine_kv_geometry(const sl_engine_t *engine, uint32_t *blocks_p, uint32_t *block_tokens_p);
/* The limits of one job on the backend (all 0 when it has none), what the
 * executor declares in its hello. */
void sl_engine_limits(const sl_engine_t *engine, sl_backend_limits_t *limits);
/* Load since the previous call (resets the step statistics). */
void sl_engine_load(sl_engine_t *engine, sl_time_t now, sl_engine_load_t *load);

#endif
