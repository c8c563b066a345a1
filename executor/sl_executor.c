/*
 * The executor daemon (see sl_executor.h).
 *
 * The engine thread owns the engine and talks to the scheduler through
 * the link (sl_link.c). With a backend whose steps compute in this thread
 * (ref), the link is a thread of its own that owns the DEALER socket and
 * sends the heartbeats on its own clock, so a step that computes for longer
 * than the scheduler's loss timeout does not get the executor declared
 * lost; this thread reaches the scheduler through a pipe to it. With one
 * whose steps return at once (sim, null) there is no such thread: the
 * socket is the DEALER and this thread sends the heartbeats through
 * sl_link_tick. Either way this thread posts its load to the link every
 * half heartbeat interval; its poll loop's timeout is the engine's next
 * wake-up, the next post or the next heartbeat, whichever is first. Engine steps that are due at
 * once run back to back for up to turn_budget_us, so a fast backend (null: 32 jobs a step) reports
 * a whole turn's completions in one message instead of polling and sending per step; the budget
 * bounds how late a cancel is read. The decoded DispatchBatch is kept as the job's backing store,
 * so prompt token ids are never copied; the jobs of one batch share it (reference counted), and
 * each of its items is validated on its own so one bad item does not cost the rest. A finished
 * engine job becomes a result report in one function shared with the simulator
 * (sl_engine_job_report), sent through proto's typed completion. Finished jobs' structs go to a
 * free list and are reused, so a steady stream of jobs does not allocate per job.
 *
 * Registration is soft state: the executor says hello until welcomed, and
 * says it again whenever the scheduler calls it unknown (a restarted
 * scheduler answers the next heartbeat with an Error). Silence from the
 * scheduler is normal (it writes only to dispatch or cancel), so it is not a
 * reason to register again: that would throw away the running jobs. A dead
 * connection is found by ZeroMQ's own heartbeats (link_timeout_ms), after
 * which the socket reconnects and the next heartbeat meets the Error.
 * Jobs that complete after a scheduler restart are counted there as stale,
 * which is why the scheduler requeues instead of trusting an executor.
 * A hello answered "name held by another connection" (SL_ERR_AGAIN) is
 * simply retried; "in use by a live executor" (SL_ERR_EXISTS) is final:
 * two live executors under one name would displace each other for ever, so
 * the newcomer exits (run returns SL_ERR_EXISTS). A hello refused as a
 * message that endpoint does not take (SL_ERR_MSG_UNEXPECTED: the client
 * port) is a configuration error: run returns SL_ERR_INVALID (exit 2).
 * While not registered the
 * executor logs every wait_log_ms that it waits, naming the endpoint.
 *
 * With --data-plane on the executor embeds one transport engine (one per
 * process, so one address names it) and registers a region standing for its
 * KV pool once, at start, so the hello can carry the engine address and the
 * region's key; the engine's fd sleeps in the same poll as the socket, since
 * the engine belongs to this thread. Nothing is transferred yet.
 */
#include "executor/sl_executor.h"
#include "executor/sl_exec_dp.h"
#include "executor/sl_exec_stage.h"
#include "executor/sl_link.h"
#include "executor/sl_logship.h"
#include "executor/sl_weights_peer.h"
#include "executor/sl_report.h"
#include "executor/sl_sim_cfg.h"
#include "common/sl_auth.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_signal.h"
#include "proto/sl_wire.h"
#include "proto/sl_wire_mark.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

const sl_cfg_field_t sl_executor_cfg_fields[] = {
    SL_CFG_FIELD(sl_executor_cfg_t, scheduler, "scheduler", "tcp://127.0.0.1:5556", SL_CFG_STR,
                 "the scheduler's executor endpoint; a comma-separated list for a leader and "
                 "its standbys (the link reaches whichever leads)"),
    SL_CFG_FIELD(sl_executor_cfg_t, name, "name", "", SL_CFG_STR,
                 "unique executor name (default: host-pid)"),
    SL_CFG_FIELD(sl_executor_cfg_t, backend, "backend", "sim", SL_CFG_STR,
                 "compute backend: sim, null or ref"),
    SL_CFG_FIELD(sl_executor_cfg_t, models, "models", "", SL_CFG_STR,
                 "comma-separated model names served (empty: any)"),
    SL_CFG_FIELD(sl_executor_cfg_t, model, "model", "tiny", SL_CFG_STR,
                 "ref: model preset (tiny, small, ...)"),
    SL_CFG_FIELD(sl_executor_cfg_t, weights, "weights", "", SL_CFG_STR,
                 "ref: safetensors weight file (empty: synthetic weights); sim: a file standing "
                 "for the model's weights (read, served and pulled like ref's, nothing computed "
                 "from it)"),
    SL_CFG_FIELD(sl_executor_cfg_t, weight_format, "weight-format", "auto", SL_CFG_STR,
                 "ref: auto (fp32 on CPU, bf16 on CUDA), fp32, bf16, fp16, int8 or int4"),
    SL_CFG_FIELD(sl_executor_cfg_t, device, "device", "auto", SL_CFG_STR, "ref: auto, cpu or cuda"),
    SL_CFG_FIELD(sl_executor_cfg_t, zone, "zone", "", SL_CFG_STR, "placement zone label"),
    SL_CFG_RANGE(sl_executor_cfg_t, slots, "slots", "48", SL_CFG_INT, 1, 4096,
                 "jobs accepted in flight (running + waiting for a batch)"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_blocks, "kv-blocks", "0", SL_CFG_INT, 0, 100000000,
                 "KV pool size in blocks (0: backend default)"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_block_tokens, "kv-block-tokens", "0", SL_CFG_INT, 0, 65536,
                 "tokens per KV block (0: the backend's default, 16 for sim)"),
    SL_CFG_FIELD(sl_executor_cfg_t, seed, "seed", "1", SL_CFG_I64,
                 "seed of synthetic weights and placeholder tokens"),
    SL_CFG_RANGE(sl_executor_cfg_t, threads, "threads", "0", SL_CFG_INT, 0, 1024,
                 "compute threads (0: backend default)"),
    SL_CFG_RANGE(sl_executor_cfg_t, heartbeat_ms, "heartbeat-ms", "0", SL_CFG_I64, 0, 600000,
                 "heartbeat interval in ms (0: what the scheduler asks)"),
    SL_CFG_RANGE(sl_executor_cfg_t, hello_retry_ms, "hello-retry-ms", "500", SL_CFG_I64, 1, 600000,
                 "resend hello after this many ms without a welcome"),
    SL_CFG_RANGE(sl_executor_cfg_t, wait_log_ms, "wait-log-ms", "5000", SL_CFG_I64, 1, 3600000,
                 "while not registered, log that the scheduler is awaited this often"),
    SL_CFG_RANGE(sl_executor_cfg_t, link_timeout_ms, "link-timeout-ms", "3000", SL_CFG_I64, 100,
                 3600000, "ZeroMQ heartbeat timeout: a silent connection is dropped and redialled"),
    SL_CFG_RANGE(sl_executor_cfg_t, stall_timeout_ms, "stall-timeout-ms", "600000", SL_CFG_I64, 0,
                 86400000,
                 "ref: heartbeats stop when one step has held the engine thread this long, so the "
                 "scheduler requeues its jobs (0: never)"),
    SL_CFG_RANGE(sl_executor_cfg_t, gpu_index, "gpu-index", "0", SL_CFG_INT, -1, 1024,
                 "NVML index of the GPU whose utilization and memory heartbeats carry (-1: none)"),
    SL_CFG_FIELD(sl_executor_cfg_t, nvml_lib, "nvml-lib", "libnvidia-ml.so.1", SL_CFG_STR,
                 "NVML library loaded at run time for GPU load (empty: GPU load unknown)"),
    SL_CFG_RANGE(sl_executor_cfg_t, turn_budget_us, "turn-budget-us", "1000", SL_CFG_I64, 0,
                 1000000,
                 "engine steps that are due run back to back for up to this long before the "
                 "socket is read again (0: one step per loop turn)"),
    SL_CFG_RANGE(sl_executor_cfg_t, recv_batch, "recv-batch", "256", SL_CFG_INT, 1, 100000,
                 "messages read from the scheduler per loop turn at most"),
    SL_CFG_RANGE(sl_executor_cfg_t, max_msg_batch, "max-msg-batch", "4096", SL_CFG_INT, 1, 65536,
                 "dispatches in one DispatchBatch accepted (larger batches are refused)"),
    SL_CFG_RANGE(sl_executor_cfg_t, speed_hint, "speed-hint", "0", SL_CFG_DOUBLE, 0, 1000,
                 "relative speed declared to the scheduler (0: unknown)"),
    SL_CFG_FIELD(sl_executor_cfg_t, data_plane, "data-plane", "off", SL_CFG_BOOL,
                 "embed a transport engine, register the KV region with it and send its address "
                 "and key in the hello (on|off)"),
    SL_CFG_FIELD(sl_executor_cfg_t, data_plane_tls, "data-plane-tls", "tcp", SL_CFG_STR,
                 "UCX_TLS of the data-plane engine (empty: the environment's)"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_bytes_per_token, "kv-bytes-per-token", "4096", SL_CFG_I64, 1,
                 16777216,
                 "data plane: KV bytes per token of the registered region (kv blocks x block "
                 "tokens x this)"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_region_max_mib, "kv-region-max-mib", "256", SL_CFG_I64, 1,
                 1048576, "data plane: the registered KV region is at most this many MiB"),
    SL_CFG_FIELD(sl_executor_cfg_t, role, "role", "mixed", SL_CFG_STR,
                 "which part of a job it serves: mixed (whole jobs, and either part of a split "
                 "one), prefill (computes prompts and hands their KV on) or decode (decodes KV "
                 "handed to it); prefill and decode need --data-plane on"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_xfer_timeout_ms, "kv-xfer-timeout-ms", "5000", SL_CFG_I64, 1,
                 3600000,
                 "data plane: a push of a job's KV not completed this long fails, and the "
                 "connection to that peer is dropped"),
    SL_CFG_RANGE(sl_executor_cfg_t, kv_release_grace_ms, "kv-release-grace-ms", "500", SL_CFG_I64,
                 0, 3600000,
                 "data plane: blocks reserved for a job's KV and canceled are released this long "
                 "after the cancel (a write already posted by the peer may still land)"),
    SL_CFG_RANGE(sl_executor_cfg_t, peer_check_timeout_ms, "peer-check-timeout-ms", "2000",
                 SL_CFG_I64, 10, 3600000,
                 "data plane: a peer whose region does not answer a small read within this long "
                 "is reported unreachable"),
    SL_CFG_FIELD(sl_executor_cfg_t, layers, "layers", "", SL_CFG_STR,
                 "ref: a pipeline stage holding layers A-B of the model (empty: all); needs "
                 "--data-plane on"),
    SL_CFG_RANGE(sl_executor_cfg_t, stage_ring_kib, "stage-ring-kib", "4096", SL_CFG_I64, 4,
                 1048576,
                 "pipeline stage: receive ring for one step's rows and residual stream, in KiB "
                 "(equal on every stage of a chain)"),
    SL_CFG_RANGE(sl_executor_cfg_t, stage_step_timeout_ms, "stage-step-timeout-ms", "10000",
                 SL_CFG_I64, 1, 3600000,
                 "pipeline stage: a step whose tokens are not back from the later stages this "
                 "long fails its jobs"),
    SL_CFG_FIELD(sl_executor_cfg_t, log_ship, "log-ship", "off", SL_CFG_BOOL,
                 "ship log lines and a trace record per finished job to the scheduler's "
                 "collector (its --collect-dir) on a connection of their own, in the background "
                 "class (on|off)"),
    SL_CFG_RANGE(sl_executor_cfg_t, log_ship_kib, "log-ship-kib", "256", SL_CFG_I64, 1, 1048576,
                 "log shipping: lines not yet shipped are held in this many KiB; when full, the "
                 "oldest are dropped and counted"),
    SL_CFG_RANGE(sl_executor_cfg_t, log_ship_batch_kib, "log-ship-batch-kib", "16", SL_CFG_I64, 2,
                 4096, "log shipping: most text bytes in one message, in KiB"),
    SL_CFG_RANGE(sl_executor_cfg_t, log_ship_tos, "log-ship-tos", "32", SL_CFG_INT, 0, 255,
                 "log shipping: IP TOS byte of its connection (32: DSCP CS1, as "
                 "xport-tos-background)"),
    SL_CFG_RANGE(sl_executor_cfg_t, bg_link_mbps, "bg-link-mbps", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "capacity of this host's link in MB/s: background traffic (log shipping, and the "
                 "data plane's background class, whose bucket log shipping then shares) is held "
                 "under --bg-share of it (0: unknown: --log-ship-max-kibps holds log shipping, and "
                 "the data plane keeps its SLUICE_XPORT_LINK_MBPS and SLUICE_XPORT_BG_SHARE)"),
    SL_CFG_RANGE(sl_executor_cfg_t, bg_share, "bg-share", "0.2", SL_CFG_DOUBLE, 0.001, 1,
                 "share of --bg-link-mbps background traffic may take"),
    SL_CFG_RANGE(sl_executor_cfg_t, log_ship_max_kibps, "log-ship-max-kibps", "1024", SL_CFG_DOUBLE,
                 1, 1e9, "log shipping: most KiB per second when --bg-link-mbps is 0"),
    SL_CFG_FIELD(
        sl_executor_cfg_t, weights_from, "weights-from", "auto", SL_CFG_STR,
        "ref or sim with --weights: where the weights come from: peer (a live executor that "
        "serves the same file, named by the scheduler, read in the background class; "
        "the file when that fails), auto (the same, quietly when no peer serves them) or "
        "file"),
    SL_CFG_FIELD(sl_executor_cfg_t, weights_serve, "weights-serve", "on", SL_CFG_BOOL,
                 "with --data-plane on and --weights: serve the weights to starting peers "
                 "(on|off)"),
    SL_CFG_RANGE(sl_executor_cfg_t, weights_query_timeout_ms, "weights-query-timeout-ms", "2000",
                 SL_CFG_I64, 1, 3600000,
                 "weights from a peer: the scheduler not answering within this long means no "
                 "peer"),
    SL_CFG_RANGE(sl_executor_cfg_t, weights_pull_timeout_ms, "weights-pull-timeout-ms", "60000",
                 SL_CFG_I64, 1, 86400000,
                 "weights from a peer: a pull not done within this long falls back to the file"),
    SL_CFG_END,
};

/* A dispatched job. */
typedef struct s_job {
    sl_engine_job_t ej;      /* engine view */
    sl_wire_msg_t *backing;  /* reference to the DispatchBatch holding the job's prompt */
    uint32_t out_cap;        /* room in out[] */
    sl_engine_done_t how;    /* how it ended (once done) */
    const char *error;       /* static error text, or NULL */
    bool silent;             /* ended without a report: its KV went to a peer */
    const char *id;          /* the client's job id (in backing), for its trace record */
    uint32_t resume;         /* output tokens its client already has (a resumed dispatch): in
                                out[0..resume), computed as prompt, the engine's out after them */
    uint32_t *prompt_buf;    /* a resumed job's prompt then its resume tokens (owned; NULL: none) */
    uint32_t attempt;        /* its dispatch's attempt (reported in a hello as held) */
    struct s_job *next_done; /* finished jobs waiting to be reported */
    uint32_t out[];          /* output tokens */
} s_job_t;

/* Completions sent in one message at most. */
#define S_DONE_BATCH 256
/* Idle job structs kept for reuse. */
#define S_JOB_FREE_MAX 4096

#define S_KV_BATCH 256
#define SL_EXEC_MAX_MODELS_WIRE 16

struct sl_executor {
    sl_executor_cfg_t cfg;          /* configuration */
    sl_proto_limits_t limits;       /* validation bounds */
    const sl_backend_ops_t *ops;    /* backend */
    sl_engine_t *engine;            /* batching engine */
    void *zctx;                     /* ZeroMQ context */
    sl_link_t *link;                /* link thread: owns the DEALER, sends heartbeats */
    void *sock;                     /* pipe to the link thread (the scheduler beyond it) */
    bool welcomed;                  /* the scheduler knows us */
    bool contested;                 /* told our name is held by another connection (logged) */
    sl_status_t fatal;              /* a refusal registering again cannot cure: run returns it */
    bool stop_logged;               /* the clean stop was logged */
    sl_time_t waiting_since;        /* when the wait for a welcome began */
    sl_time_t wait_logged;          /* when that wait was last logged */
    sl_time_t hello_at;             /* last hello sent */
    sl_time_t heartbeat;            /* heartbeat interval in use */
    sl_time_t next_post;            /* next load post to the link due */
    sl_time_t next_beat;            /* next heartbeat the link sends from this thread (inline) */
    uint32_t inflight;              /* jobs inside */
    uint64_t kv_stored[S_KV_BATCH]; /* KV events waiting to be sent */
    uint64_t kv_evicted[S_KV_BATCH];
    size_t n_stored, n_evicted;
    s_job_t *done_head;         /* finished jobs to report, oldest first */
    s_job_t **done_tail;        /* where the next one goes */
    size_t n_done;              /* their number */
    sl_wire_batch_t done_out;   /* CompletionBatch being packed */
    s_job_t *free_jobs;         /* finished job structs for reuse (linked by next_done) */
    size_t n_free_jobs;         /* their number */
    volatile sig_atomic_t stop; /* drain and exit */
    uint64_t rejected;          /* bad messages received */
    uint32_t kv_blocks;         /* the backend's KV pool in blocks (advertised in hello) */
    uint32_t kv_block_tokens;   /* tokens per KV block (advertised: prompts are hashed by it) */
    sl_backend_limits_t
        job_limits;         /* what one job may be (advertised: the scheduler places by it) */
    sl_exec_dp_t *dp;       /* the data plane (NULL: off) */
    sl_exec_stage_t *stage; /* pipeline stage data path (NULL: whole model) */
    sl_backend_stage_info_t stage_info; /* the layers held */
    int role;                           /* sl_exec_role_t of cfg.role */
    bool drain_said;                    /* the scheduler was told that we drain */
    sl_logship_t *ship; /* log lines and traces waiting to be shipped (NULL: --log-ship off) */
    sl_weights_serve_t *wserve;        /* weights served to peers (NULL: none) */
    int weights_fd;                    /* in-memory file of weights pulled from a peer (-1: none) */
    char weights_path[SL_CFG_STR_MAX]; /* the weights the backend loaded */
    sl_auth_keys_t *keys;              /* CURVE keys (NULL: --insecure) */
    void *ship_sock;                   /* DEALER to the scheduler's collector, marked background */
    char ship_name[SL_CFG_STR_MAX];    /* our name as the collector's file name */
};

/* A send that failed is logged and dropped: the scheduler requeues what it
 * does not hear of, and registration is retried on its own clock. */
static void s_sent(sl_status_t st, const char *what)
{
    if (st != SL_OK)
        SL_DEBUG("send %s failed: %s", what, sl_status_str(st));
}

static void s_flush_kv(sl_executor_t *x)
{
    if (!x->n_stored && !x->n_evicted)
        return;
    sl_wire_kv_event_t ev = {.stored = x->kv_stored,
                             .n_stored = x->n_stored,
                             .evicted = x->kv_evicted,
                             .n_evicted = x->n_evicted};
    if (x->welcomed)
        s_sent(sl_wire_kv_event_send(x->sock, &ev, ZMQ_DONTWAIT), "kv_event");
    x->n_stored = x->n_evicted = 0;
}

static void s_kv_stored(void *arg, uint64_t hash)
{
    sl_executor_t *x = arg;
    if (x->n_stored == S_KV_BATCH)
        s_flush_kv(x);
    x->kv_stored[x->n_stored++] = hash;
}

static void s_kv_evicted(void *arg, uint64_t hash)
{
    sl_executor_t *x = arg;
    if (x->n_evicted == S_KV_BATCH)
        s_flush_kv(x);
    x->kv_evicted[x->n_evicted++] = hash;
}

static void s_on_tokens(void *arg, sl_engine_job_t *ej, uint32_t from, uint32_t n)
{
    sl_executor_t *x = arg;
    const s_job_t *job = SL_CONTAINER_OF(ej, s_job_t, ej);
    sl_wire_chunk_t c = {.job_seq = ej->seq.id,
                         .offset = job->resume + from, /* a resumed job's go on after its resume */
                         .tokens = ej->seq.out + from,
                         .n_tokens = n};
    s_sent(sl_wire_chunk_send(x->sock, NULL, &c, ZMQ_DONTWAIT), "token_chunk");
}

/* The engine finished a job: queue its report; s_flush_done sends the
 * reports of one loop turn together (one message for a whole batch step). */
static void s_on_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *error)
{
    sl_executor_t *x = arg;
    s_job_t *job = SL_CONTAINER_OF(ej, s_job_t, ej);
    if (x->dp)
        sl_exec_dp_job_end(x->dp, ej);
    job->how = how;
    job->error = error;
    job->next_done = NULL;
    *x->done_tail = job;
    x->done_tail = &job->next_done;
    x->n_done++;
}

/* The data plane ends a job whose report the scheduler does not expect. */
/* ---- pipeline stages ---- */

/* The first stage's backend hands each step on (the stage exists once the
 * data plane does, after the engine). */
static sl_status_t s_stage_forward(void *arg, const sl_stage_step_t *step, const float *xs,
                                   uint32_t *next)
{
    sl_executor_t *x = arg;
    if (!x->stage)
        return SL_ERR_NOT_FOUND;
    sl_backend_stage_t h = sl_exec_stage_hook(x->stage);
    return h.forward(h.arg, step, xs, next);
}

static void s_stage_end(void *arg, uint64_t id)
{
    sl_executor_t *x = arg;
    if (x->stage) {
        sl_backend_stage_t h = sl_exec_stage_hook(x->stage);
        h.end(h.arg, id);
    }
}

static sl_status_t s_stage_run(void *arg, const sl_stage_step_t *step, const float *x_in,
                               float *x_out, uint32_t *next)
{
    sl_executor_t *x = arg;
    return x->ops->stage_run(sl_engine_backend(x->engine), step, x_in, x_out, next);
}

/* A stage of the chain is a data-plane peer; its ring is its region's tail. */
static bool s_stage_peer(void *arg, uint32_t index, sl_xport_peer_t **conn_p, uint32_t *region_p,
                         uint64_t *ring_off_p)
{
    sl_executor_t *x = arg;
    uint64_t bytes = 0;
    size_t ring = (size_t)x->cfg.stage_ring_kib << 10;
    if (!sl_exec_dp_peer(x->dp, index, conn_p, region_p, &bytes) || bytes < ring)
        return false;
    *ring_off_p = bytes - ring;
    return true;
}

static bool s_stage_notif(void *arg, const void *data, size_t len)
{
    sl_executor_t *x = arg;
    return sl_exec_stage_on_notif(x->stage, data, len);
}

/* Parse --layers "A-B" into params (nothing for ""). */
static sl_status_t s_layers_parse(const char *text, sl_backend_params_t *p)
{
    unsigned a, b;
    char end;
    if (!text[0])
        return SL_OK;
    if (sscanf(text, "%u-%u%c", &a, &b, &end) != 2 || a > b) {
        SL_ERROR("--layers '%s': expected A-B with A <= B (layers A to B, from 0)", text);
        return SL_ERR_INVALID;
    }
    p->layer_first = a;
    p->layer_count = b - a + 1;
    return SL_OK;
}

/* With --layers: the stage's data path on the data plane's engine. */
static sl_status_t s_stage_create(sl_executor_t *x)
{
    x->ops->stage_info(sl_engine_backend(x->engine), &x->stage_info);
    const sl_backend_stage_info_t *si = &x->stage_info;
    if (!si->ring || !x->dp) {
        SL_ERROR("--layers needs --data-plane on (the stages' activations move over it)");
        return SL_ERR_INVALID;
    }
    size_t bytes = 0, block = 0;
    bool device = false;
    sl_engine_kv_pool(x->engine, &bytes, &block, &device);
    if (device) {
        SL_ERROR("--layers: pipeline stages run on the CPU in this build (--device cpu): the "
                 "ring in the KV region is read by the host");
        return SL_ERR_UNSUPPORTED;
    }
    sl_exec_stage_cfg_t scfg = {.ring_kib = x->cfg.stage_ring_kib,
                                .step_timeout_ms = x->cfg.stage_step_timeout_ms};
    sl_exec_stage_io_t io = {.run = s_stage_run,
                             .arg = x,
                             .width = si->width,
                             .first = si->layer_first == 0,
                             .last = si->layer_first + si->layer_count == si->layers_total,
                             .ring = si->ring,
                             .ring_bytes = si->ring_bytes,
                             .peer = s_stage_peer,
                             .peer_arg = x};
    sl_status_t st = sl_exec_stage_create(&scfg, sl_exec_dp_xport(x->dp), &io, &x->stage);
    if (st != SL_OK)
        return st;
    sl_exec_dp_set_notif_other(x->dp, s_stage_notif, x);
    SL_INFO("pipeline stage: layers %u-%u of %u (%s), ring %zu KiB", si->layer_first,
            si->layer_first + si->layer_count - 1, si->layers_total,
            io.first ? "the first: it takes jobs" : "a later one: it takes no jobs",
            si->ring_bytes >> 10);
    return SL_OK;
}

static void s_silence(void *arg, sl_engine_job_t *ej)
{
    (void)arg;
    SL_CONTAINER_OF(ej, s_job_t, ej)->silent = true;
}

/* The engine holds a job while its KV moves: the data plane's business. */
static void s_on_held(void *arg, sl_engine_job_t *ej, sl_engine_held_t why)
{
    sl_executor_t *x = arg;
    sl_exec_dp_held(x->dp, ej, why, sl_clock_now());
}

static void s_job_free(sl_executor_t *x, s_job_t *job)
{
    sl_wire_msg_free(&job->backing);
    free(job->prompt_buf);
    job->prompt_buf = NULL;
    x->inflight--;
    if (x->n_free_jobs < S_JOB_FREE_MAX) {
        job->next_done = x->free_jobs;
        x->free_jobs = job;
        x->n_free_jobs++;
    } else {
        free(job);
    }
}

/* A finished job's trace record for the collector: one line, key=value. */
static void s_trace(sl_executor_t *x, const s_job_t *job, const sl_result_report_t *r)
{
    static const char *const status[] = {"ok", "failed", "canceled", "expired", "rejected"};
    char line[512];
    int n = snprintf(
        line, sizeof(line),
        "job=%s seq=%llu status=%s prompt=%u cached=%u out=%u queue_us=%lld "
        "ttft_us=%lld end_us=%lld",
        job->id ? job->id : "", (unsigned long long)job->ej.seq.id,
        (unsigned)r->res.status < 5 ? status[r->res.status] : "?", r->prompt_tokens,
        r->res.cached_tokens, r->res.output_tokens, (long long)(r->res.exec_queue / SL_NS_PER_US),
        (long long)(r->res.exec_ttft / SL_NS_PER_US), (long long)(r->res.exec_end / SL_NS_PER_US));
    if (n > 0)
        sl_logship_push(x->ship, SL_LOGSHIP_TRACE, line,
                        (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Ship what the bucket lets out now, without waiting: a send the socket
 * cannot take (the collector is away or slow) keeps its batch for later. */
static void s_ship(sl_executor_t *x, sl_time_t now)
{
    sl_logship_batch_t b;
    for (int i = 0; i < 4 && sl_logship_next(x->ship, now, &b) == SL_OK; i++) {
        sl_logship_stats_t st;
        sl_logship_stats(x->ship, &st);
        sl_wire_log_batch_t w = {.executor = x->ship_name,
                                 .logs = b.logs,
                                 .n_logs = b.n_logs,
                                 .traces = b.traces,
                                 .n_traces = b.n_traces,
                                 .dropped = st.dropped,
                                 .shipped = st.lines_shipped + b.n_logs + b.n_traces};
        bool ok = sl_wire_log_batch_send(x->ship_sock, &w, ZMQ_DONTWAIT) == SL_OK;
        sl_logship_sent(x->ship, now, ok);
        if (!ok)
            return;
    }
}

/* Log shipping's bytes come out of the transport engine's background bucket. */
static sl_status_t s_ship_gate(void *arg, uint64_t bytes)
{
    return sl_exec_dp_bg_take(arg, bytes);
}

/* The shipper and its connection: a DEALER of its own to the scheduler's
 * executor endpoint, marked with the background TOS, which queues a few
 * batches at most and none while not connected, so a collector that is away
 * never holds up this thread. */
static sl_status_t s_ship_create(sl_executor_t *x)
{
    const sl_executor_cfg_t *c = &x->cfg;
    double rate =
        c->bg_link_mbps > 0 ? c->bg_link_mbps * 1e6 * c->bg_share : c->log_ship_max_kibps * 1024;
    sl_logship_cfg_t lcfg = {.ring_bytes = (size_t)c->log_ship_kib << 10,
                             .batch_bytes = (size_t)c->log_ship_batch_kib << 10,
                             .rate_bps = rate,
                             .gate = x->dp ? s_ship_gate : NULL,
                             .gate_arg = x->dp};
    if (sl_logship_create(&lcfg, sl_clock_now(), &x->ship) != SL_OK) {
        SL_ERROR("log shipping: cannot set up a %lld KiB ring", (long long)c->log_ship_kib);
        return SL_ERR_INVALID;
    }
    /* The collector names files after us: a plain file name (proto checks). */
    snprintf(x->ship_name, sizeof(x->ship_name), "%s", c->name);
    for (char *p = x->ship_name; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", *p) ||
            (p == x->ship_name && *p == '.'))
            *p = '_';
    x->ship_sock = zmq_socket(x->zctx, ZMQ_DEALER);
    int hwm = 4, one = 1, zero = 0;
    int64_t maxmsg = c->daemon.max_msg_bytes;
    if (!x->ship_sock || zmq_setsockopt(x->ship_sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) ||
        zmq_setsockopt(x->ship_sock, ZMQ_IMMEDIATE, &one, sizeof(one)) ||
        zmq_setsockopt(x->ship_sock, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_setsockopt(x->ship_sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) ||
        sl_wire_sock_mark(x->ship_sock, c->log_ship_tos) != SL_OK ||
        sl_auth_sock_client(x->ship_sock, x->keys) != SL_OK ||
        sl_wire_connect_list(x->ship_sock, c->scheduler) != SL_OK) {
        SL_ERROR("log shipping: cannot connect to %s: %s", c->scheduler, zmq_strerror(errno));
        return SL_ERR_IO;
    }
    sl_logship_hook(x->ship);
    SL_INFO("log shipping to %s: %lld KiB held, at most %.0f KiB/s, TOS %d", c->scheduler,
            (long long)c->log_ship_kib, rate / 1024, c->log_ship_tos);
    return SL_OK;
}

static void s_ship_destroy(sl_executor_t *x)
{
    if (!x->ship)
        return;
    sl_logship_stats_t st;
    sl_logship_hook(NULL);
    sl_logship_stats(x->ship, &st);
    SL_INFO("log shipping: %llu lines shipped (%llu bytes in %llu batches), %llu dropped, %llu "
            "sends deferred",
            (unsigned long long)st.lines_shipped, (unsigned long long)st.bytes_shipped,
            (unsigned long long)st.batches, (unsigned long long)st.dropped,
            (unsigned long long)st.send_failed);
    if (x->ship_sock)
        zmq_close(x->ship_sock);
    x->ship_sock = NULL;
    sl_logship_destroy(&x->ship);
}

/* What peers call the weights: the configured file's base name. */
static const char *s_weights_name(const sl_executor_cfg_t *c)
{
    const char *slash = strrchr(c->weights, '/');
    return slash ? slash + 1 : c->weights;
}

/* Backends that load a weight file: ref computes with it; sim models a
 * model's load (its bytes are read, served and pulled like ref's, and
 * nothing is computed from them), so a simulated cluster moves real weight
 * traffic. */
static bool s_backend_has_weights(const sl_executor_cfg_t *c)
{
    return !strcmp(c->backend, "ref") || !strcmp(c->backend, "sim");
}

/* Where the backend reads its weights: from a peer that serves the same
 * file (an in-memory copy), else the file. SL_ERR_INVALID only for an
 * unknown --weights-from; a failed pull falls back to the file. */
static sl_status_t s_weights_source(sl_executor_t *x)
{
    const sl_executor_cfg_t *c = &x->cfg;
    bool peer = !strcmp(c->weights_from, "peer"), automatic = !strcmp(c->weights_from, "auto");
    snprintf(x->weights_path, sizeof(x->weights_path), "%s", c->weights);
    if (!peer && !automatic && strcmp(c->weights_from, "file")) {
        SL_ERROR("unknown --weights-from '%s' (auto, peer, file)", c->weights_from);
        return SL_ERR_INVALID;
    }
    if (!c->weights[0] || !s_backend_has_weights(c) || !(peer || automatic))
        return SL_OK;
    sl_weights_pull_cfg_t pc = {.scheduler = c->scheduler,
                                .name = s_weights_name(c),
                                .tos = c->log_ship_tos,
                                .keys = x->keys,
                                .query_timeout_ms = c->weights_query_timeout_ms,
                                .pull_timeout_ms = c->weights_pull_timeout_ms,
                                .bg_link_mbps = c->bg_link_mbps,
                                .bg_share = c->bg_share};
    if (c->data_plane_tls[0])
        setenv("UCX_TLS", c->data_plane_tls, 1);
    int fd = -1;
    sl_weights_pull_stats_t ps;
    sl_status_t st = sl_weights_pull(&pc, &fd, &ps);
    if (st == SL_OK) {
        x->weights_fd = fd;
        snprintf(x->weights_path, sizeof(x->weights_path), "/proc/self/fd/%d", fd);
    } else if (peer && st != SL_ERR_NOT_FOUND) {
        SL_WARN("weights: the pull from a peer failed (%s); reading %s", sl_status_str(st),
                c->weights);
    }
    return SL_OK;
}

/* A resumed job's report holds its whole output (the resume tokens its
 * client had, then the new ones) and its own prompt. */
static void s_report_resumed(const s_job_t *job, sl_result_report_t *r)
{
    if (!job->resume)
        return;
    r->tokens = job->out;
    r->n_tokens += job->resume;
    r->res.output_tokens += job->resume;
    r->prompt_tokens -= job->resume;
}

/* Report finished jobs, S_DONE_BATCH per message; send = false only frees them. */
static void s_flush_done(sl_executor_t *x, bool send)
{
    s_job_t *batch[S_DONE_BATCH];

    if (send && x->n_done)
        s_flush_kv(x); /* the scheduler learns of cached blocks before the next placement */
    while (x->done_head) {
        size_t n = 0;
        while (x->done_head && n < S_DONE_BATCH) {
            batch[n++] = x->done_head;
            x->done_head = x->done_head->next_done;
        }
        if (send) {
            sl_status_t st = SL_OK;
            for (size_t i = 0; i < n && st == SL_OK; i++) {
                if (batch[i]->silent)
                    continue;
                sl_result_report_t r;
                sl_engine_job_report(&batch[i]->ej, batch[i]->how, batch[i]->error, &r);
                s_report_resumed(batch[i], &r);
                st = sl_wire_completion_add(&x->done_out, batch[i]->ej.seq.id, &r);
                if (x->ship)
                    s_trace(x, batch[i], &r);
            }
            if (st == SL_OK && x->done_out.n)
                st = sl_wire_batch_send(x->sock, NULL, &x->done_out, ZMQ_DONTWAIT);
            sl_wire_batch_clear(&x->done_out);
            s_sent(st, "completions");
        }
        for (size_t i = 0; i < n; i++)
            s_job_free(x, batch[i]);
    }
    x->done_tail = &x->done_head;
    x->n_done = 0;
}

static void s_hello(sl_executor_t *x, sl_time_t now)
{
    char models_buf[SL_CFG_STR_MAX];
    const char *models[SL_EXEC_MAX_MODELS_WIRE];
    size_t n = 0;
    snprintf(models_buf, sizeof(models_buf), "%s", x->cfg.models);
    for (char *save = NULL, *tok = strtok_r(models_buf, ",", &save);
         tok && n < SL_EXEC_MAX_MODELS_WIRE; tok = strtok_r(NULL, ",", &save))
        models[n++] = tok;
    sl_wire_hello_t h = {
        .info =
            {
                .name = x->cfg.name,
                .slots = (uint32_t)x->cfg.slots,
                .models = models,
                .n_models = n,
                .backend = x->cfg.backend,
                .kv_blocks_total = x->kv_blocks,
                .kv_block_tokens = x->kv_block_tokens,
                .speed = (float)x->cfg.speed_hint,
                .max_context_tokens = x->job_limits.max_context_tokens,
                .vocab_size = x->job_limits.vocab_size,
                /* its step budget; without chunked prefill, a step takes
                 * every prompt whole */
                .step_tokens = x->cfg.engine.step_tokens > 0 && x->ops->chunked_prefill
                                   ? (uint32_t)x->cfg.engine.step_tokens
                                   : 1u << 24,
            },
        .zone = x->cfg.zone,
    };
    h.info.role = (sl_exec_role_t)x->role;
    if (x->stage) {
        const sl_backend_stage_info_t *si = &x->stage_info;
        h.info.layer_first = si->layer_first;
        h.info.layer_last = si->layer_first + si->layer_count - 1;
        h.info.layers_total = si->layers_total;
    }
    if (x->dp)
        sl_exec_dp_hello(x->dp, &h);
    if (x->wserve)
        sl_weights_serve_offer(x->wserve, &h.weights);
    /* The jobs it still runs: a scheduler restarted from its journal adopts
     * them instead of dispatching them again (an empty list otherwise). */
    uint32_t n_held = sl_engine_jobs(x->engine);
    sl_engine_job_t **ejs = n_held ? calloc(n_held, sizeof(*ejs)) : NULL;
    sl_held_job_t *held = n_held ? calloc(n_held, sizeof(*held)) : NULL;
    if (ejs && held) {
        n_held = sl_engine_list(x->engine, ejs, n_held);
        for (uint32_t i = 0; i < n_held; i++) {
            const s_job_t *job = SL_CONTAINER_OF(ejs[i], s_job_t, ej);
            held[i] =
                (sl_held_job_t){.id = job->id, .seq = job->ej.seq.id, .attempt = job->attempt};
        }
        h.held = held;
        h.n_held = n_held;
    }
    s_sent(sl_wire_hello_send(x->sock, &h, ZMQ_DONTWAIT), "hello");
    free(ejs);
    free(held);
    x->hello_at = now;
}

/* Hand the engine's load to the link thread, which sends it in heartbeats
 * with the CPU and GPU use it measures; KV events go out first, so the
 * scheduler hears of cached blocks at least this often. */
static void s_post_load(sl_executor_t *x, sl_time_t now)
{
    sl_engine_load_t el;
    sl_engine_load(x->engine, now, &el);
    if (x->dp) {
        sl_exec_dp_stats_t ds;
        sl_exec_dp_stats(x->dp, &ds);
        el.kv = (sl_exec_kv_load_t){.reservations = ds.reservations,
                                    .bytes_sent = ds.bytes_sent,
                                    .bytes_received = ds.bytes_received,
                                    .pushes_failed = ds.pushes_failed,
                                    .notifs_refused = ds.notifs_refused};
        sl_xport_stats_t xs;
        sl_xport_stats(sl_exec_dp_xport(x->dp), &xs);
        for (int c = 0; c < 3; c++)
            el.kv.class_bytes[c] = xs.bytes[c];
    }
    s_flush_kv(x);
    sl_link_post(x->link, true, x->heartbeat, &el);
}

/* A job struct with room for max_new output tokens: a reused one when it fits. */
static s_job_t *s_job_alloc(sl_executor_t *x, uint32_t max_new)
{
    s_job_t *job = x->free_jobs;
    if (job && job->out_cap >= max_new) {
        x->free_jobs = job->next_done;
        x->n_free_jobs--;
        uint32_t cap = job->out_cap;
        memset(job, 0, sizeof(*job));
        job->out_cap = cap;
        return job;
    }
    /* Small jobs share one size class, so structs are reusable across them. */
    uint32_t cap = max_new < 64 ? 64 : max_new;
    job = calloc(1, sizeof(*job) + (size_t)cap * sizeof(uint32_t));
    if (job)
        job->out_cap = cap;
    return job;
}

/*
 * A streaming job dispatched again after its executor was lost: its client
 * has the output tokens d->resume_tokens already. They become prompt tokens
 * after the prompt (the backend computes their KV as it would a prompt's;
 * the ref backend's greedy sampling then gives the tokens an uninterrupted
 * run would) and the engine generates only the rest; chunks and the report
 * go on after them. When nothing is left to generate (the executor died
 * between the last chunk and its report) the job ends at once. SL_OK: the
 * job is ready to submit; otherwise it was ended (reported).
 */
static sl_status_t s_resume(sl_executor_t *x, s_job_t *job, const sl_wire_dispatch_t *d,
                            sl_time_t now)
{
    sl_seq_t *s = &job->ej.seq;
    uint32_t n = d->n_resume_tokens; /* at most max_new_tokens (validated) */
    memcpy(job->out, d->resume_tokens, (size_t)n * sizeof(uint32_t));
    job->resume = n;
    s->out = job->out + n;
    s->max_new_tokens -= n;
    if (s->prompt) {
        job->prompt_buf = malloc(((size_t)s->prompt_len + n) * sizeof(uint32_t));
        if (!job->prompt_buf) {
            SL_ERROR("out of memory for the resumed prompt of job %s", d->job.id);
            job->ej.arrived = job->ej.finished = now;
            s_on_done(x, &job->ej, SL_ENGINE_FAILED, "out of memory for the resumed prompt");
            return SL_ERR_NOMEM;
        }
        memcpy(job->prompt_buf, s->prompt, (size_t)s->prompt_len * sizeof(uint32_t));
        memcpy(job->prompt_buf + s->prompt_len, d->resume_tokens, (size_t)n * sizeof(uint32_t));
        s->prompt = job->prompt_buf;
    }
    s->prompt_len += n; /* without ids (trace replay) only the length grows */
    if (s->max_new_tokens > 0)
        return SL_OK;
    job->ej.arrived = job->ej.finished = now;
    s_on_done(x, &job->ej, SL_ENGINE_OK, NULL);
    return SL_ERR_EXISTS;
}

/* Start one validated dispatch held in backing (the job takes a reference). */
static void s_on_dispatch(sl_executor_t *x, sl_wire_msg_t *backing, const sl_wire_dispatch_t *d,
                          sl_time_t now)
{
    const sl_job_desc_t *j = &d->job;
    s_job_t *job = s_job_alloc(x, j->max_new_tokens);
    if (!job) {
        SL_ERROR("out of memory for job %s", j->id);
        return;
    }
    job->backing = sl_wire_msg_ref(backing);
    job->id = j->id;
    job->attempt = d->attempt;
    sl_seq_t *s = &job->ej.seq;
    s->id = d->job_seq;
    s->prompt = j->token_ids;
    s->prompt_len = j->prompt_tokens;
    s->block_hashes = j->block_hashes;
    s->n_block_hashes = j->n_block_hashes;
    s->hash_block_tokens = j->block_tokens;
    s->max_new_tokens = j->max_new_tokens;
    s->interactive = j->prio == SL_PRIO_INTERACTIVE;
    s->out = job->out;
    job->ej.stream = j->stream;
    job->ej.kv_mode = SL_KV_LOCAL;
    x->inflight++;
    if (d->n_resume_tokens && s_resume(x, job, d, now) != SL_OK)
        return;
    if (x->dp)
        sl_exec_dp_on_dispatch(x->dp, &job->ej, now);
    sl_engine_submit(x->engine, &job->ej, now);
}

static void s_on_message(sl_executor_t *x, sl_time_t now)
{
    char err[256];
    for (int i = 0; i < x->cfg.recv_batch; i++) {
        sl_wire_ident_t none;
        sl_wire_msg_t *msg = NULL;
        sl_status_t st =
            sl_wire_recv(x->sock, 0, ZMQ_DONTWAIT, &x->limits, &none, &msg, err, sizeof(err));
        if (st == SL_ERR_AGAIN || st == SL_ERR_LINK)
            return;
        if (st != SL_OK) {
            x->rejected++;
            SL_WARN("bad message from the scheduler: %s", err);
            continue;
        }
        sl_wire_kind_t kind = sl_wire_msg_kind(msg);
        switch (kind) {
        case SL_WIRE_WELCOME: {
            sl_wire_welcome_t w;
            sl_wire_welcome_get(msg, &w);
            if (!x->welcomed) /* hellos sent while it was away are all welcomed */
                SL_INFO("registered with the scheduler at %s as %s (index %u)", x->cfg.scheduler,
                        x->cfg.name, w.executor_index);
            x->welcomed = true;
            x->contested = false;
            x->heartbeat = x->cfg.heartbeat_ms ? SL_MS(x->cfg.heartbeat_ms)
                                               : SL_MS(w.heartbeat_ms ? w.heartbeat_ms : 100);
            x->next_post = now; /* the link learns the interval at once */
            break;
        }
        case SL_WIRE_DISPATCHES:
            for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
                sl_wire_dispatch_t d;
                if (sl_wire_dispatch_get(msg, k, &x->limits, &d, err, sizeof(err)) != SL_OK) {
                    x->rejected++;
                    SL_WARN("bad dispatch %u of a batch from the scheduler: %s", k, err);
                    continue;
                }
                s_on_dispatch(x, msg, &d, now);
            }
            break;
        case SL_WIRE_CANCEL: {
            sl_wire_cancel_t c;
            sl_wire_cancel_get(msg, &c);
            if (!x->dp || !sl_exec_dp_cancel(x->dp, c.job_seq, now))
                sl_engine_cancel(x->engine, c.job_seq, now);
            break;
        }
        case SL_WIRE_PEERS:
            if (!x->dp) { /* the scheduler sends none to an executor without one */
                x->rejected++;
                SL_WARN("peers from the scheduler, but the data plane is off");
                break;
            }
            sl_exec_dp_on_peers(x->dp, msg, now);
            break;
        case SL_WIRE_KV_PLAN: {
            sl_kv_plan_t p;
            sl_wire_kv_plan_get(msg, &p);
            if (!x->dp) {
                x->rejected++;
                SL_WARN("a KV plan from the scheduler, but the data plane is off");
                break;
            }
            sl_exec_dp_on_plan(x->dp, &p, now);
            break;
        }
        case SL_WIRE_STAGE_PLAN: {
            const uint32_t *chain;
            uint32_t n;
            sl_wire_stage_plan_get(msg, &chain, &n);
            if (!x->stage || x->stage_info.layer_first != 0) {
                x->rejected++;
                SL_WARN("a stage plan from the scheduler, but this is no first pipeline stage");
                break;
            }
            if (sl_exec_stage_set_chain(x->stage, chain, n) != SL_OK)
                x->rejected++;
            break;
        }
        case SL_WIRE_ERROR: {
            sl_wire_error_t e;
            sl_wire_error_get(msg, &e);
            if (e.code == SL_ERR_NOT_FOUND) {
                if (x->welcomed) {
                    SL_WARN("lost the scheduler at %s (it no longer knows us): registering again",
                            x->cfg.scheduler);
                    sl_link_post(x->link, false, x->heartbeat, NULL); /* no heartbeats meanwhile */
                    x->waiting_since = x->wait_logged = now;
                }
                x->welcomed = false;
                if (now - x->hello_at > SL_MS(10))
                    s_hello(x, now);
            } else if ((e.code == SL_ERR_EXISTS || e.code == SL_ERR_MSG_UNEXPECTED ||
                        e.code == SL_ERR_MSG_VERSION) &&
                       !x->welcomed) {
                /* Refused for good: another live executor holds the name
                 * (retrying would fight it for ever), our hello is not a
                 * message that endpoint takes, so it is not an executor
                 * endpoint (the client port: a configuration error), or the
                 * scheduler speaks another protocol version. */
                SL_ERROR("the scheduler at %s refused us: %s", x->cfg.scheduler, e.message);
                x->fatal = e.code == SL_ERR_EXISTS ? SL_ERR_EXISTS : SL_ERR_INVALID;
                sl_wire_msg_free(&msg);
                return;
            } else if (e.code == SL_ERR_AGAIN && !x->welcomed) {
                /* The scheduler checks whether the holder of our name is alive;
                 * the next hello (hello_retry_ms) gets the verdict. */
                if (!x->contested)
                    SL_INFO("the scheduler at %s: %s", x->cfg.scheduler, e.message);
                x->contested = true;
            } else {
                SL_WARN("scheduler error %d: %s", e.code, e.message);
            }
            break;
        }
        default:
            x->rejected++;
            SL_WARN("unexpected '%s' from the scheduler", sl_wire_kind_name(kind));
            break;
        }
        sl_wire_msg_free(&msg);
    }
}

sl_status_t sl_executor_create(const sl_executor_cfg_t *cfg, sl_executor_t **exec_p)
{
    sl_executor_t *x = calloc(1, sizeof(*x));
    if (!x)
        return SL_ERR_NOMEM;
    x->cfg = *cfg;
    x->weights_fd = -1;
    x->done_tail = &x->done_head;
    sl_wire_batch_init(&x->done_out, SL_WIRE_COMPLETIONS);
    if (!x->cfg.name[0]) {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(x->cfg.name, sizeof(x->cfg.name), "%s-%d", host, (int)getpid());
    }
    x->limits = sl_proto_limits_default;
    x->limits.max_msg_bytes = (size_t)cfg->daemon.max_msg_bytes;
    x->limits.max_batch = (uint32_t)cfg->max_msg_batch;
    /* SL_ERR_INVALID: a configured value is unusable (the program exits 2) */
    sl_status_t st = SL_ERR_INVALID;
    if (sl_daemon_cfg_apply(&cfg->daemon) != SL_OK)
        goto err_free;
    if (sl_auth_keys_setup(cfg->daemon.key_dir, cfg->daemon.key_name, cfg->daemon.insecure,
                           "executor", "sluice-executor", &x->keys) != SL_OK)
        goto err_free;
    x->ops = sl_backend_find(cfg->backend);
    if (!x->ops) {
        SL_ERROR("unknown backend '%s' (built in: %s)", cfg->backend, sl_backend_names());
        goto err_free;
    }
    if (s_weights_source(x) != SL_OK)
        goto err_free;
    sl_backend_params_t params = {
        .model = x->cfg.model,
        .weights = x->weights_path,
        .weight_format = x->cfg.weight_format,
        .device = x->cfg.device,
        .kv_blocks = (uint32_t)x->cfg.kv_blocks,
        .kv_block_tokens = (uint32_t)x->cfg.kv_block_tokens,
        .seed = (uint64_t)x->cfg.seed,
        .threads = x->cfg.threads,
        .sim = &x->cfg.sim,
        .kv_cb = {.stored = s_kv_stored, .evicted = s_kv_evicted, .arg = x},
        .stage = {.forward = s_stage_forward, .end = s_stage_end, .arg = x},
    };
    if (s_layers_parse(x->cfg.layers, &params) != SL_OK)
        goto err_free;
    if (x->cfg.layers[0]) {
        if (!x->ops->stage_info) {
            SL_ERROR("--layers: the %s backend holds whole models only", cfg->backend);
            goto err_free;
        }
        params.stage_ring_bytes = (size_t)x->cfg.stage_ring_kib << 10;
    }
    sl_engine_cb_t cb = {.tokens = s_on_tokens, .done = s_on_done, .held = s_on_held, .arg = x};
    if (!strcmp(cfg->role, "mixed"))
        x->role = SL_ROLE_MIXED;
    else if (!strcmp(cfg->role, "prefill"))
        x->role = SL_ROLE_PREFILL;
    else if (!strcmp(cfg->role, "decode"))
        x->role = SL_ROLE_DECODE;
    else {
        SL_ERROR("unknown --role '%s' (mixed, prefill, decode)", cfg->role);
        goto err_free;
    }
    if ((st = sl_engine_create(&x->cfg.engine, x->ops, &params, &cb, &x->engine)) != SL_OK) {
        SL_ERROR("cannot start the %s backend", cfg->backend);
        goto err_free;
    }
    st = SL_ERR_IO;
    /* What the backend really built (its defaults fill unset sizes). */
    sl_engine_kv_geometry(x->engine, &x->kv_blocks, &x->kv_block_tokens);
    sl_engine_limits(x->engine, &x->job_limits);
    if (x->cfg.data_plane) {
        sl_exec_dp_cfg_t dcfg = {
            .tls = x->cfg.data_plane_tls,
            .kv_bytes_per_token = x->cfg.kv_bytes_per_token,
            .kv_region_max_mib = x->cfg.kv_region_max_mib,
            .peer_check_timeout_ms = x->cfg.peer_check_timeout_ms,
            .xfer_timeout_ms = x->cfg.kv_xfer_timeout_ms,
            .release_grace_ms = x->cfg.kv_release_grace_ms,
            .kv_blocks = x->kv_blocks ? x->kv_blocks : (uint32_t)x->cfg.kv_blocks,
            .kv_block_tokens =
                x->kv_block_tokens ? x->kv_block_tokens : (uint32_t)x->cfg.kv_block_tokens,
            .gpu_index = cfg->gpu_index,
            .bg_link_mbps = x->cfg.bg_link_mbps,
            .bg_share = x->cfg.bg_share,
        };
        sl_exec_dp_io_t dio = {.silence = s_silence, .arg = x};
        if (sl_exec_dp_create(&dcfg, x->engine, &dio, &x->dp) != SL_OK)
            goto err_engine;
        /* Serving the weights is a favour to peers: failing to is only logged. */
        if (x->cfg.weights[0] && x->cfg.weights_serve && s_backend_has_weights(&x->cfg))
            (void)sl_weights_serve_create(sl_exec_dp_xport(x->dp), x->weights_path,
                                          s_weights_name(&x->cfg), &x->wserve);
    } else if (x->role != SL_ROLE_MIXED) {
        SL_ERROR("--role %s needs --data-plane on (its KV moves to or from peers)", x->cfg.role);
        st = SL_ERR_INVALID;
        goto err_engine;
    }
    if (x->cfg.layers[0] && (st = s_stage_create(x)) != SL_OK) {
        st = st == SL_ERR_NOMEM || st == SL_ERR_IO ? SL_ERR_IO : SL_ERR_INVALID;
        goto err_engine;
    }
    st = SL_ERR_IO;
    x->zctx = zmq_ctx_new();
    if (!x->zctx)
        goto err_engine;
    sl_link_cfg_t lcfg = {
        .endpoint = cfg->scheduler,
        .tos = cfg->daemon.tos,
        .link_timeout_ms = cfg->link_timeout_ms,
        .max_msg_bytes = cfg->daemon.max_msg_bytes,
        .stall_timeout_ms = cfg->stall_timeout_ms,
        .threaded = !x->ops->instant_step,
        .keys = x->keys,
        .hostload = {.proc_stat = "/proc/stat",
                     .nvml_lib = x->cfg.nvml_lib,
                     .gpu_index = cfg->gpu_index},
    };
    if (sl_link_create(x->zctx, &lcfg, &x->link) != SL_OK)
        goto err_ctx;
    x->sock = sl_link_pipe(x->link);
    if (x->dp)
        sl_exec_dp_set_sock(x->dp, x->sock);
    if (cfg->log_ship && (st = s_ship_create(x)) != SL_OK)
        goto err_link;
    x->next_beat = INT64_MAX;
    *exec_p = x;
    return SL_OK;

err_link:
    s_ship_destroy(x);
    sl_link_destroy(&x->link);
err_ctx:
    zmq_ctx_term(x->zctx);
err_engine:
    sl_exec_dp_close_peers(x->dp); /* before the stage's ring is deregistered */
    sl_exec_stage_destroy(&x->stage);
    sl_weights_serve_destroy(&x->wserve);
    sl_exec_dp_destroy(&x->dp);
    sl_engine_destroy(&x->engine);
err_free:
    if (x->weights_fd >= 0)
        close(x->weights_fd);
    sl_auth_keys_free(&x->keys);
    free(x);
    return st;
}

void sl_executor_stop(sl_executor_t *x)
{
    x->stop = 1;
}

void sl_executor_handle_signals(sl_executor_t *x)
{
    sl_signal_stop_flag(&x->stop);
}

sl_status_t sl_executor_run(sl_executor_t *x)
{
    /* The data-plane engine's fd sleeps in the same poll as the scheduler's
     * socket; the engine is progressed every loop turn. */
    zmq_pollitem_t items[2] = {{x->sock, 0, ZMQ_POLLIN, 0},
                               {NULL, x->dp ? sl_exec_dp_fd(x->dp) : -1, ZMQ_POLLIN, 0}};
    zmq_pollitem_t *item = &items[0];
    int n_items = x->dp ? 2 : 1;
    sl_time_t now = sl_clock_now();
    sl_time_t wake = INT64_MAX;
    s_hello(x, now);
    x->waiting_since = x->wait_logged = now;
    SL_INFO("executor %s: backend %s, %d slots, scheduler %s", x->cfg.name, x->ops->name,
            x->cfg.slots, x->cfg.scheduler);
    while ((!x->stop || x->inflight > 0) && !x->fatal) {
        if (x->stop && !x->stop_logged) {
            SL_INFO("stopping: %s %u jobs in flight (a second SIGTERM stops at once)",
                    x->dp ? "moving or finishing" : "finishing", x->inflight);
            x->stop_logged = true;
        }
        if (x->stop && x->dp && x->welcomed && !x->drain_said) {
            /* The scheduler moves what it can to other executors. */
            s_sent(sl_wire_goodbye_send(x->sock, "draining", true, ZMQ_DONTWAIT), "goodbye");
            x->drain_said = true;
        }
        if (x->stop >= 2) {
            SL_WARN("second stop signal: stopping now with %u jobs in flight (the scheduler "
                    "requeues them at our goodbye)",
                    x->inflight);
            break;
        }
        now = sl_clock_now();
        sl_time_t due = wake;
        if (x->welcomed && x->next_post < due)
            due = x->next_post;
        if (x->next_beat < due)
            due = x->next_beat;
        if (!x->welcomed && x->hello_at + SL_MS(x->cfg.hello_retry_ms) < due)
            due = x->hello_at + SL_MS(x->cfg.hello_retry_ms);
        long timeout = due == INT64_MAX ? 100 : (long)((due - now + 999999) / SL_NS_PER_MS);
        if (timeout < 0)
            timeout = 0;
        if (timeout > 100)
            timeout = 100;
        if (x->dp) {
            sl_exec_dp_progress(x->dp, now);
            if (sl_exec_dp_arm(x->dp) == SL_ERR_AGAIN)
                timeout = 0; /* work to progress before sleeping */
        }
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            SL_ERROR("zmq_poll: %s", zmq_strerror(errno));
            return SL_ERR_IO;
        }
        now = sl_clock_now();
        if (rc > 0 && (item->revents & ZMQ_POLLIN))
            s_on_message(x, now);
        if (x->dp)
            sl_exec_dp_progress(x->dp, now);
        if (x->stage) /* a later stage runs a step that arrived and sends it on */
            sl_exec_stage_progress(x->stage, now);
        if (x->fatal)
            break;
        wake = sl_engine_advance(x->engine, now);
        /* Steps that are due at once (a fast backend) run together, so one
         * turn's completions go in one message and one poll serves them. */
        if (wake <= now && x->cfg.turn_budget_us > 0) {
            sl_time_t until = now + SL_US(x->cfg.turn_budget_us);
            for (;;) {
                now = sl_clock_now(); /* a slow step ends the turn at once */
                if (wake > now || now >= until)
                    break;
                wake = sl_engine_advance(x->engine, now);
            }
        }
        s_flush_done(x, true);
        if (x->welcomed && now >= x->next_post) {
            s_post_load(x, now);
            x->next_post = now + x->heartbeat / 2; /* the load a heartbeat carries is this fresh */
        }
        x->next_beat = sl_link_tick(x->link, now);
        if (x->ship)
            s_ship(x, now);
        if (!x->welcomed && now - x->hello_at >= SL_MS(x->cfg.hello_retry_ms))
            s_hello(x, now);
        if (!x->welcomed && now - x->wait_logged >= SL_MS(x->cfg.wait_log_ms)) {
            SL_INFO("waiting for the scheduler at %s (no welcome for %lld ms)", x->cfg.scheduler,
                    (long long)((now - x->waiting_since) / SL_NS_PER_MS));
            x->wait_logged = now;
        }
    }
    if (x->fatal)
        return x->fatal;
    if (x->ship)
        s_ship(x, sl_clock_now()); /* what the bucket lets out of the last lines */
    s_flush_kv(x);
    if (x->welcomed)
        s_sent(sl_wire_goodbye_send(x->sock, "shutting down", false, ZMQ_DONTWAIT), "goodbye");
    SL_INFO("executor %s stopped", x->cfg.name);
    return SL_OK;
}

void sl_executor_destroy(sl_executor_t **exec_p)
{
    sl_executor_t *x = *exec_p;
    if (!x)
        return;
    sl_signal_forget(&x->stop);
    sl_engine_destroy(&x->engine);
    s_flush_done(x, false);
    while (x->free_jobs) {
        s_job_t *job = x->free_jobs;
        x->free_jobs = job->next_done;
        free(job);
    }
    sl_wire_batch_fini(&x->done_out);
    sl_link_destroy(&x->link); /* forwards the goodbye, closes the pipe */
    s_ship_destroy(x);         /* after the link thread, which logs into it */
    zmq_ctx_term(x->zctx);
    sl_exec_dp_close_peers(x->dp);        /* a peer's late put lands while the ring is mapped */
    sl_exec_stage_destroy(&x->stage);     /* its buffers are registered with the engine */
    sl_weights_serve_destroy(&x->wserve); /* its region is the data plane engine's */
    sl_exec_dp_destroy(&x->dp);           /* after the socket work: the goodbye is out */
    if (x->weights_fd >= 0)
        close(x->weights_fd);
    sl_auth_keys_free(&x->keys);
    free(x);
    *exec_p = NULL;
}
