/*
 * libsluice: the client API of Sluice.
 *
 * A client object owns one ZeroMQ DEALER connection to a scheduler. Jobs are
 * submitted by id (client-chosen, idempotent); the library keeps every job
 * until its single completion, answers BUSY with a jittered exponential
 * backoff that honours the scheduler's retry-after, resends a Submit that was
 * never acknowledged, and hands completions back either one at a time from
 * sl_client_poll() (asynchronous use) or from sl_client_submit() (blocking
 * use).
 *
 * Threads: a client object belongs to the thread that uses it; it is not
 * safe to call into one client from two threads at once. Use one client per
 * thread.
 *
 * Every function returns sl_status_t (see <sluice/status.h>); outputs are
 * written only on success.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_CLIENT_ENDPOINT_MAX 256 /* bytes of an endpoint string, with the NUL */
#define SL_CLIENT_ID_MAX 128       /* bytes of a job id, without the NUL */
#define SL_CLIENT_NAME_MAX 128     /* bytes of a tenant, model, executor name */

/* ---- Backoff schedule -------------------------------------------------- */

/*
 * How long to wait before resending a job the scheduler refused with BUSY.
 * Attempt k (0 for the first retry) has a nominal delay n = base * multiplier^k
 * (at most cap) and waits a uniformly drawn time in [n, min(cap, n * (1 + j))]
 * where j is first_jitter for k = 0 and jitter after. The defaults give about
 * 1 s, then 2-4 s, then 4-8 s, then 8-10 s. A retry-after r from the
 * scheduler raises the window to at least [r, r * (1 + retry_after_jitter)]
 * (at most retry_after_max_ms), so clients told the same r do not all come
 * back in the same millisecond.
 */
typedef struct sl_backoff_cfg {
    int base_ms;               /* nominal delay of the first retry */
    int cap_ms;                /* largest delay of the backoff itself */
    double multiplier;         /* growth of the nominal delay per attempt */
    double jitter;             /* window width relative to the nominal delay */
    double first_jitter;       /* window width of the first retry */
    double retry_after_jitter; /* window width above the scheduler's retry-after */
    int retry_after_max_ms;    /* largest delay a retry-after can impose */
    int max_retries;           /* retries after BUSY before SL_ERR_RETRIES; 0 = fail at once */
} sl_backoff_cfg_t;

/* The defaults described above (1000 ms base, x2, cap 10 s, 5 retries). */
void sl_backoff_cfg_default(sl_backoff_cfg_t *cfg);

/*
 * The window [*lo_ms_p, *hi_ms_p] of retry number attempt (0-based) after a
 * BUSY carrying retry_after_ms (0 = none). Pure: no clock, no state.
 */
void sl_backoff_window(const sl_backoff_cfg_t *cfg, uint32_t attempt, uint32_t retry_after_ms,
                       uint32_t *lo_ms_p, uint32_t *hi_ms_p);

/*
 * The delay of retry number attempt: lo + u * (hi - lo) of the window above,
 * where u is a uniform random number in [0, 1) the caller draws. Pure.
 */
uint32_t sl_backoff_delay_ms(const sl_backoff_cfg_t *cfg, uint32_t attempt, uint32_t retry_after_ms,
                             double u);

/* ---- Configuration ----------------------------------------------------- */

typedef struct sl_client_cfg {
    char endpoint[SL_CLIENT_ENDPOINT_MAX]; /* scheduler's client endpoint */
    int ack_timeout_ms;    /* resend a Submit not answered by Accepted/Busy within this */
    int ack_retries;       /* resends of an unanswered Submit before SL_ERR_TIMEOUT */
    int result_timeout_ms; /* give up on an accepted job after this; 0 = wait forever */
    int wait_timeout_ms;   /* bound of the blocking calls (submit, status); 0 = forever */
    int max_inflight;      /* jobs held at once; submits beyond get SL_ERR_AGAIN */
    int sndhwm;            /* ZeroMQ send high-water mark (messages) */
    int linger_ms;         /* how long unsent messages survive sl_client_destroy */
    int64_t seed;          /* seed of the backoff jitter; 0 = from the clock and pid */
    int submit_batch;      /* async submits sent in one SubmitBatch at most; 1 = one Submit each */
    sl_backoff_cfg_t backoff; /* BUSY retry schedule */
    /* CURVE keys: a directory with this client's pair (key_name.key, or its
     * one *.key when key_name is "") and the scheduler's server.pub; see
     * docs/OPERATIONS.md, "Keys and authentication". sl_client_create
     * refuses a configuration with neither key_dir nor insecure. */
    char key_dir[SL_CLIENT_ENDPOINT_MAX];
    char key_name[64];
    bool insecure; /* plain text and no authentication, logged as a warning */
} sl_client_cfg_t;

/* Fill cfg with the defaults (endpoint tcp://127.0.0.1:5555). */
void sl_client_cfg_default(sl_client_cfg_t *cfg);

/* ---- Jobs and results -------------------------------------------------- */

typedef enum sl_client_priority {
    SL_CLIENT_INTERACTIVE = 0, /* user-facing: placed first */
    SL_CLIENT_BATCH = 1,       /* offline work */
} sl_client_priority_t;

/* What to run. Only read during the submit call: the library copies it. */
typedef struct sl_job_spec {
    const char *id;                /* idempotency id, 1..128 bytes; required */
    const char *tenant;            /* may be NULL */
    const char *model;             /* may be NULL */
    const char *session_key;       /* sticky routing key; may be NULL */
    sl_client_priority_t priority; /* class */
    const uint32_t *token_ids;     /* prompt tokens; may be NULL when prompt_length is set */
    size_t n_token_ids;            /* entries of token_ids */
    uint32_t prompt_length; /* prompt tokens; 0 = n_token_ids (must equal it when ids are given) */
    const uint64_t *block_hashes; /* prefix block hashes (trace replay); may be NULL */
    size_t n_block_hashes;        /* entries of block_hashes */
    uint32_t block_tokens;        /* tokens per hashed block */
    uint32_t max_new_tokens;      /* tokens to generate, >= 1 */
    uint32_t ttft_deadline_ms;    /* first-token budget from receipt; 0 = none */
    uint32_t deadline_ms;         /* whole-job budget from receipt; 0 = none */
    bool stream;                  /* ask for TokenChunk messages */
    void *user;                   /* handed back in the result untouched */
} sl_job_spec_t;

/* How a job ended on the scheduler's side (mirrors sluice.ResultStatus). */
typedef enum sl_result_status {
    SL_RESULT_OK = 0,       /* completed */
    SL_RESULT_FAILED = 1,   /* the backend failed it */
    SL_RESULT_CANCELED = 2, /* canceled */
    SL_RESULT_EXPIRED = 3,  /* its deadline passed before it could run */
    SL_RESULT_REJECTED = 4, /* refused after acceptance */
    SL_RESULT_NONE = 5,     /* no Result came (retries exhausted, timed out) */
} sl_result_status_t;

/* Scheduler-measured times of a job, from its receipt at the scheduler. */
typedef struct sl_job_timings {
    uint64_t queued_us;     /* receipt -> dispatch */
    uint64_t ttft_us;       /* receipt -> first token */
    uint64_t end_us;        /* receipt -> last token */
    uint64_t exec_ttft_us;  /* dispatch at the executor -> first token */
    uint64_t exec_end_us;   /* dispatch at the executor -> last token */
    uint32_t prompt_tokens; /* prompt tokens */
    uint32_t cached_tokens; /* prompt tokens served from the prefix cache */
    uint32_t output_tokens; /* tokens generated */
    uint64_t exec_queue_us; /* dispatch at the executor -> its prefill starts */
    bool has_exec_queue;    /* exec_queue_us was reported */
} sl_job_timings_t;

/* One completed job. Owned by the caller; free with sl_result_destroy(). */
typedef struct sl_result {
    char job_id[SL_CLIENT_ID_MAX + 1];     /* the id it was submitted with */
    sl_status_t status;                    /* SL_OK when a Result with RESULT_OK came */
    sl_result_status_t result_status;      /* the scheduler's verdict */
    uint32_t *tokens;                      /* output tokens (owned by the result) */
    size_t n_tokens;                       /* entries of tokens */
    sl_job_timings_t timings;              /* scheduler-measured times */
    char executor[SL_CLIENT_NAME_MAX + 1]; /* executor that ran it */
    char error[256];                       /* why it failed; empty on success */
    uint32_t attempts;                     /* dispatches the scheduler made */
    uint32_t busy_count;                   /* BUSY answers received */
    uint32_t sends;                        /* Submit messages sent (first + resends) */
    uint32_t queue_depth;                  /* scheduler queue depth at acceptance */
    int64_t submit_ns;                     /* monotonic time of the first send */
    int64_t accept_ns;                     /* monotonic time of Accepted; 0 = never */
    int64_t first_token_ns;                /* first TokenChunk (stream only); 0 = none */
    int64_t end_ns;                        /* monotonic time of completion */
    void *user;                            /* sl_job_spec_t.user */
    bool late; /* ended OK (status SL_OK) but past its deadline_ms, by the scheduler's clock */
} sl_result_t;

/* Free a result and its tokens; NULL-safe; sets *res_p = NULL. */
void sl_result_destroy(sl_result_t **res_p);

/* ---- Cluster status ---------------------------------------------------- */

typedef struct sl_executor_info {
    char name[SL_CLIENT_NAME_MAX + 1];    /* executor name */
    char backend[SL_CLIENT_NAME_MAX + 1]; /* backend (null, sim, ref) */
    bool alive;                           /* heartbeating */
    uint32_t inflight;                    /* jobs dispatched to it */
    uint32_t slots;                       /* jobs it accepts in flight */
    uint64_t completed;                   /* jobs that ended OK there */
    uint32_t running_jobs;                /* from its last heartbeat */
    uint32_t queued_jobs;                 /* from its last heartbeat */
    uint64_t queued_tokens;               /* from its last heartbeat */
    uint32_t kv_blocks_used;              /* from its last heartbeat */
    uint32_t kv_blocks_free;              /* from its last heartbeat */
    uint32_t step_time_us;                /* mean decode step time */
    float gpu_util;                       /* measured GPU utilization, 0..1; 0 when !has_gpu_util */
    float cpu_util;             /* measured host CPU busy share, 0..1; 0 when !has_cpu_util */
    float busy;                 /* the engine's share of recent time in steps, 0..1 */
    bool has_gpu_util;          /* gpu_util is measured (false: unknown, e.g. no GPU) */
    bool has_cpu_util;          /* cpu_util is measured (false: unknown) */
    bool has_gpu_mem;           /* gpu_mem_* are measured (false: unknown) */
    uint64_t gpu_mem_used;      /* GPU memory allocated, bytes (all processes) */
    uint64_t gpu_mem_total;     /* GPU memory installed, bytes */
    uint64_t failed;            /* jobs it failed or rejected */
    bool quarantined;           /* no jobs placed on it for now: its recent jobs failed */
    bool data_plane;            /* it embeds the transport: its KV region is registered */
    uint64_t kv_region_bytes;   /* bytes of that region (0 without a data plane) */
    uint32_t peers_reachable;   /* data-plane peers it reported reached */
    uint32_t peers_unreachable; /* data-plane peers it reported it could not reach */
    uint32_t kv_reservations;   /* jobs holding blocks for a peer's KV now */
    uint64_t kv_bytes_sent;     /* KV bytes it pushed to peers */
    uint64_t kv_bytes_received; /* KV bytes that landed in its reservations */
    uint64_t kv_pushes_failed;  /* its pushes that failed */
    uint64_t kv_notifs_refused; /* notifications that matched no reservation of its own */
    uint64_t xport_bytes[3];    /* bytes its transport engine moved per class: control,
                                   critical, background */
} sl_executor_info_t;

typedef struct sl_counter_info {
    char name[SL_CLIENT_NAME_MAX + 1]; /* counter name */
    uint64_t value;                    /* its value */
} sl_counter_info_t;

/* A snapshot of the scheduler. Owned by the caller; free with sl_cluster_status_destroy(). */
typedef struct sl_cluster_status {
    sl_executor_info_t *executors;       /* n_executors entries */
    size_t n_executors;                  /* executors known to the scheduler */
    sl_counter_info_t *counters;         /* n_counters entries */
    size_t n_counters;                   /* scheduler counters */
    uint32_t queued_interactive;         /* jobs waiting, interactive class */
    uint32_t queued_batch;               /* jobs waiting, batch class */
    uint32_t inflight;                   /* jobs on executors */
    char policy[SL_CLIENT_NAME_MAX + 1]; /* placement policy name */
} sl_cluster_status_t;

/* Free a status snapshot; NULL-safe; sets *st_p = NULL. */
void sl_cluster_status_destroy(sl_cluster_status_t **st_p);

/* ---- The client -------------------------------------------------------- */

typedef struct sl_client sl_client_t;

/*
 * Called for each TokenChunk of a streamed job, from inside sl_client_poll,
 * sl_client_submit or sl_client_status. It may submit or cancel jobs but
 * must not destroy the client. job_id and tokens are valid during the call.
 */
typedef void (*sl_client_chunk_cb)(void *arg, const char *job_id, uint32_t offset,
                                   const uint32_t *tokens, size_t n_tokens);

/*
 * Create a client and connect it (ZeroMQ connects in the background, so an
 * absent scheduler is not an error here; the first answer's timeout is).
 * On success *client_p owns the client; on failure it is untouched and the
 * cause is logged (SL_ERR_INVALID for a bad configuration, SL_ERR_IO).
 */
sl_status_t sl_client_create(const sl_client_cfg_t *cfg, sl_client_t **client_p);

/* Close the connection and free every pending job and unread result; NULL-safe. */
void sl_client_destroy(sl_client_t **client_p);

/* Install (or clear with NULL) the TokenChunk callback. */
void sl_client_set_chunk_cb(sl_client_t *client, sl_client_chunk_cb cb, void *arg);

/*
 * Submit a job without waiting. The job is copied and validated; its one
 * completion comes later from sl_client_poll(). SL_ERR_INVALID for a job
 * that fails validation, SL_ERR_EXISTS when a job with that id is pending,
 * SL_ERR_AGAIN when max_inflight jobs are pending (poll, then try again).
 */
sl_status_t sl_client_submit_async(sl_client_t *client, const sl_job_spec_t *job);

/*
 * Wait up to timeout_ms (0 = do not wait, -1 = forever) for the next
 * completion, doing all the client's work meanwhile (receiving, resending,
 * backoff timers). SL_OK with *res_p owning the result, SL_ERR_TIMEOUT when
 * none completed in time, SL_ERR_LINK when the socket failed.
 */
sl_status_t sl_client_poll(sl_client_t *client, int timeout_ms, sl_result_t **res_p);

/*
 * Submit a job and wait for its completion (at most wait_timeout_ms).
 * Completions of other jobs that arrive meanwhile stay queued for
 * sl_client_poll(). SL_OK with *res_p owning the result (whose own status
 * may be an error such as SL_ERR_RETRIES), or the submit error, or
 * SL_ERR_TIMEOUT (the job stays pending).
 */
sl_status_t sl_client_submit(sl_client_t *client, const sl_job_spec_t *job, sl_result_t **res_p);

/*
 * Send the submits queued by sl_client_submit_async() now. Asynchronous
 * submits are held and sent together (one SubmitBatch of up to submit_batch
 * jobs) when the batch is full or at the next sl_client_poll(),
 * sl_client_submit(), sl_client_cancel(), sl_client_status() or
 * sl_client_flush(). SL_OK, or the send error (the jobs stay pending and
 * are sent again shortly).
 */
sl_status_t sl_client_flush(sl_client_t *client);

/* Ask the scheduler to cancel a pending job; its completion still comes. */
sl_status_t sl_client_cancel(sl_client_t *client, const char *job_id);

/*
 * Ask the scheduler for its status and wait (at most wait_timeout_ms).
 * SL_OK with *st_p owning the snapshot; SL_ERR_TIMEOUT; SL_ERR_INVALID when
 * the scheduler answered with an Error.
 */
sl_status_t sl_client_status(sl_client_t *client, sl_cluster_status_t **st_p);

/*
 * Replace the connection with a new socket and resubmit every pending job
 * (idempotent on the scheduler), so results are routed to the new identity.
 * The client also resubmits every pending job by itself whenever ZeroMQ
 * re-establishes a lost connection (seen while polling).
 */
sl_status_t sl_client_reconnect(sl_client_t *client);

/*
 * Event-loop integration: *fd_p becomes readable (edge-triggered, as
 * ZMQ_FD) when messages may be waiting; call sl_client_poll(client, 0, ...)
 * until it returns SL_ERR_TIMEOUT whenever it fires or when
 * sl_client_next_timeout_ms() has elapsed.
 */
sl_status_t sl_client_fd(sl_client_t *client, int *fd_p);

/* Milliseconds until the client's next timer (a resend) is due, 0 while
 * submits wait to be sent; -1 = none. */
int sl_client_next_timeout_ms(sl_client_t *client);

/* Why the last call on this client failed (a static or client-owned string; "" when none). */
const char *sl_client_last_error(const sl_client_t *client);

/* Jobs submitted and not yet completed. */
size_t sl_client_pending(const sl_client_t *client);

/* Counters of the client since creation. */
typedef struct sl_client_stats {
    uint64_t submitted;  /* jobs accepted by sl_client_submit_async */
    uint64_t sends;      /* Submit messages sent, resends included */
    uint64_t busy;       /* BUSY answers */
    uint64_t accepted;   /* Accepted answers */
    uint64_t completed;  /* completions handed out or queued */
    uint64_t errors;     /* Error messages and undecodable messages received */
    uint64_t resends;    /* Submits resent after an ack timeout or reconnect */
    uint64_t reconnects; /* times the connection came back after a loss */
} sl_client_stats_t;

/* Copy the counters into *stats_p. */
void sl_client_stats(const sl_client_t *client, sl_client_stats_t *stats_p);

#ifdef __cplusplus
}
#endif
#endif
