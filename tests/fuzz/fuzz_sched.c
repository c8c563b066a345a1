/*
 * Fuzz target "sched": the scheduler's message handlers driven through its
 * core, in-process, on a simulated clock, without sockets. An input is a
 * short header (policy and switches of the core) and then a sequence of
 * records, each either a step of the clock (then sl_core_tick) or one
 * message frame from one of four clients or four executor connections.
 * Each frame goes through sl_proto_decode with the default limits and, when
 * valid, to the core the way scheduler/sl_scheduler.c hands it on: submits
 * item by item (sl_wire_submit_get, sl_core_job_submit), cancels, status
 * queries; hellos (sl_core_exec_join, a connection saying hello again
 * losing its old incarnation), heartbeats, completions, KV events,
 * goodbyes, KV reservations and sends, peer reports, token chunks. A kind a
 * connection may not send is refused as the daemon refuses it. Log batches
 * (from any connection) go to the collector (scheduler/sl_collector.c),
 * writing into a scratch folder that is emptied after each input that used
 * it; a file there that is not <name>.log or <name>.trace aborts.
 *
 * What the daemon does with the core's actions (sending dispatches,
 * results, KV plans over ZeroMQ) is not driven here: dispatches always
 * succeed and the jobs they carry are remembered so later completions of
 * the input can name them. At the end the core is destroyed, which
 * releases every job and executor left: a leak is a failure under the
 * sanitizers.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "proto/sl_proto.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/sl_collector.h"
#include "tests/fuzz/sl_fuzz.h"

#define S_CONNS 4 /* executor connections (and client identities) */

static const char *const s_policies[] = {"learned",  "kv-cost", "scorer",     "cache-switch",
                                         "weighted", "session", "round-robin"};

/* What the harness keeps of one executor connection. */
typedef struct s_conn {
    uint32_t index1; /* core index + 1 of its executor; 0: none joined */
    char name[64];   /* the name it joined under */
} s_conn_t;

/* The collector's scratch folder (made at start) and whether an input wrote there. */
static char s_dir[256];
static bool s_dir_used;

typedef struct s_harness {
    sl_core_t *core;
    sl_collector_t *collector; /* made at the first log batch */
    s_conn_t conns[S_CONNS];
    sl_time_t now;
    uint64_t dispatched; /* dispatches so far */
} s_harness_t;

static sl_status_t s_io_dispatch(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    s_harness_t *h = arg;
    h->dispatched++;
    return SL_OK;
}

static void s_io_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                        const sl_exec_t *exec, const void *payload, const char *error)
{
}

static void s_io_cancel(void *arg, sl_exec_t *exec, sl_job_t *job) {}

static void s_io_release(void *arg, sl_job_t *job)
{
    free(job->user);
    job->user = NULL;
}

/* The executor's connection forgets it, as the daemon's identity map does. */
static void s_io_exec_lost(void *arg, sl_exec_t *exec, const char *why)
{
    s_harness_t *h = arg;
    for (int i = 0; i < S_CONNS; i++)
        if (h->conns[i].index1 == exec->index + 1)
            h->conns[i].index1 = 0;
    exec->user = NULL;
}

static sl_status_t s_io_migrate(void *arg, sl_job_t *job)
{
    return SL_OK;
}

static void s_on_submits(s_harness_t *h, const sl_wire_msg_t *msg, const sl_proto_limits_t *lim)
{
    char err[256];
    for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
        sl_job_desc_t d;
        if (sl_wire_submit_get(msg, k, lim, &d, err, sizeof(err)) != SL_OK)
            continue;
        sl_core_job_prefetch(h->core, d.id);
        void *user = malloc(16); /* the daemon's per-job data */
        sl_job_t *job = NULL;
        sl_busy_reason_t reason = SL_BUSY_OVERLOAD;
        sl_time_t retry = 0;
        if (!user)
            return;
        sl_status_t st = sl_core_job_submit(h->core, &d, user, h->now, &job, &reason, &retry);
        if (st == SL_OK)
            continue;
        free(user);
        const void *receipt = NULL;
        size_t receipt_len = 0;
        if (st == SL_ERR_EXISTS && !job)
            (void)sl_core_done_find(h->core, d.id, &receipt, &receipt_len);
        if (st == SL_ERR_NO_EXECUTOR) {
            char why[256];
            sl_core_job_misfit(h->core, &d, why, sizeof(why));
        }
    }
}

static void s_on_client(s_harness_t *h, const sl_wire_msg_t *msg, const sl_proto_limits_t *lim)
{
    switch (sl_wire_msg_kind(msg)) {
    case SL_WIRE_SUBMITS:
        s_on_submits(h, msg, lim);
        break;
    case SL_WIRE_CANCEL: {
        sl_wire_cancel_t c;
        sl_wire_cancel_get(msg, &c);
        (void)sl_core_job_cancel(h->core, c.job_id, h->now);
        break;
    }
    case SL_WIRE_STATUS_REQUEST: /* the reply reads the executor table and counters */
        for (uint32_t i = 0, n = sl_core_exec_slots(h->core); i < n; i++)
            (void)sl_core_exec_get(h->core, i);
        for (int c = 0; c < SL_CTR_COUNT; c++)
            (void)sl_core_counter(h->core, (sl_core_counter_t)c);
        (void)sl_core_queue_depth(h->core, SL_PRIO_INTERACTIVE);
        (void)sl_core_inflight(h->core);
        break;
    default: /* refused: wrong port or not a client's */
        break;
    }
}

/* Whether name is what the collector may write: <plain name>.log or .trace. */
static bool s_collector_file(const char *name)
{
    size_t n = strlen(name);
    if (strchr(name, '/'))
        return false;
    return (n > 4 && !strcmp(name + n - 4, ".log")) || (n > 6 && !strcmp(name + n - 6, ".trace"));
}

/* Check and empty the scratch folder. */
static void s_dir_clean(void)
{
    DIR *d = opendir(s_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!s_collector_file(e->d_name)) {
            fprintf(stderr, "fuzz_sched: the collector wrote '%s'\n", e->d_name);
            abort();
        }
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", s_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    s_dir_used = false;
}

static void s_dir_remove(void)
{
    s_dir_clean();
    rmdir(s_dir);
}

static void s_on_log_batch(s_harness_t *h, const sl_wire_msg_t *msg)
{
    if (!s_dir[0])
        return;
    if (!h->collector && sl_collector_create(s_dir, &h->collector) != SL_OK)
        return;
    sl_wire_log_batch_t b;
    sl_wire_log_batch_get(msg, &b);
    s_dir_used = true;
    (void)sl_collector_take(h->collector, &b);
    sl_collector_stats_t st;
    sl_collector_stats(h->collector, &st);
}

static void s_on_hello(s_harness_t *h, s_conn_t *c, const sl_wire_msg_t *msg)
{
    sl_wire_hello_t hello;
    sl_wire_hello_get(msg, &hello);
    sl_exec_info_t info = hello.info;
    if (info.n_models > SL_EXEC_MAX_MODELS)
        info.n_models = SL_EXEC_MAX_MODELS;
    if (c->index1) {
        sl_exec_t *e = sl_core_exec_get(h->core, c->index1 - 1);
        if (e && strcmp(e->name, info.name) == 0)
            return; /* the same connection again: welcomed, keeps its jobs */
        (void)sl_core_exec_lost(h->core, c->index1 - 1, "said hello again", h->now);
        c->index1 = 0;
    }
    if (!(hello.xport_address_len && hello.kv_rkey_len && info.kv_region_bytes))
        info.kv_region_bytes = 0; /* no usable data plane */
    uint32_t index = 0;
    if (sl_core_exec_join(h->core, &info, c, h->now, &index) == SL_OK) {
        c->index1 = index + 1;
        snprintf(c->name, sizeof(c->name), "%s", info.name);
    }
}

static void s_on_kv_reserved(s_harness_t *h, uint32_t index, const sl_wire_msg_t *msg)
{
    sl_kv_reserved_t r;
    sl_wire_kv_reserved_get(msg, &r);
    sl_job_t *job = sl_core_job_get(h->core, r.job_seq);
    bool split = job && (job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) && job->exec &&
                 job->exec->index == index;
    bool move =
        job && job->kv_mode == SL_KV_MIGRATE && job->kv_peer && job->kv_peer->index == index;
    if ((!split && !move) || r.nonce != job->kv_nonce)
        return; /* stale */
    if (r.status != SL_OK) {
        (void)sl_core_kv_refused(h->core, index, r.job_seq, r.error, h->now);
        return;
    }
    if (split && job->kv_mode == SL_KV_FETCH && r.first_block >= job->kv_fetch_blocks)
        (void)sl_core_kv_refused(h->core, index, r.job_seq, "nothing left to fetch", h->now);
    /* otherwise the daemon sends the plan; the push's end comes as KV_SENT */
}

static void s_on_executor(s_harness_t *h, s_conn_t *c, const sl_wire_msg_t *msg)
{
    sl_wire_kind_t kind = sl_wire_msg_kind(msg);
    if (kind == SL_WIRE_HELLO) {
        s_on_hello(h, c, msg);
        return;
    }
    if (kind == SL_WIRE_LOG_BATCH) { /* from any connection, as the daemon takes them */
        s_on_log_batch(h, msg);
        return;
    }
    if (!c->index1)
        return; /* unknown executor: send hello first */
    uint32_t index = c->index1 - 1;
    switch (kind) {
    case SL_WIRE_HEARTBEAT: {
        sl_exec_load_t load;
        sl_wire_heartbeat_get(msg, NULL, &load);
        (void)sl_core_exec_heartbeat(h->core, index, &load, h->now);
        break;
    }
    case SL_WIRE_COMPLETIONS:
        for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
            if (k + 2 < n)
                sl_core_complete_prefetch(h->core, sl_wire_completion_seq(msg, k + 2));
            sl_wire_completion_t cp;
            sl_wire_completion_get(msg, k, &cp);
            (void)sl_core_job_complete(h->core, index, cp.job_seq, &cp.report.res, &cp.report,
                                       h->now);
        }
        break;
    case SL_WIRE_TOKEN_CHUNK: {
        (void)sl_core_exec_touch(h->core, index, h->now);
        sl_wire_chunk_t ch;
        sl_wire_chunk_get(msg, &ch);
        (void)sl_core_job_get(h->core, ch.job_seq);
        break;
    }
    case SL_WIRE_KV_EVENT: {
        sl_wire_kv_event_t kv;
        sl_wire_kv_event_get(msg, &kv);
        (void)sl_core_exec_kv_event(h->core, index, kv.stored, kv.n_stored, kv.evicted,
                                    kv.n_evicted, kv.reset, h->now);
        break;
    }
    case SL_WIRE_GOODBYE:
        if (sl_wire_goodbye_draining(msg))
            (void)sl_core_exec_drain(h->core, index, h->now);
        else
            (void)sl_core_exec_lost(h->core, index, "said goodbye", h->now);
        break;
    case SL_WIRE_KV_RESERVED:
        (void)sl_core_exec_touch(h->core, index, h->now);
        s_on_kv_reserved(h, index, msg);
        break;
    case SL_WIRE_KV_SENT: {
        sl_kv_sent_t k;
        sl_wire_kv_sent_get(msg, &k);
        (void)sl_core_kv_sent(h->core, index, &k, h->now);
        break;
    }
    case SL_WIRE_PEER_REACH: {
        (void)sl_core_exec_touch(h->core, index, h->now);
        sl_wire_peer_reach_t r;
        sl_wire_peer_reach_get(msg, &r);
        /* reports on itself or on an executor that is not a live peer are dropped */
        if (r.peer_index == index || r.peer_index > UINT32_MAX >> 1 ||
            !sl_core_exec_get(h->core, r.peer_index))
            break;
        (void)sl_core_exec_reach(h->core, index, r.peer_index, r.reachable, h->now);
        break;
    }
    default: /* refused: not an executor's */
        break;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof(s_dir), "%s/sl-fuzz-sched-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(s_dir))
        s_dir[0] = '\0'; /* log batches are then dropped */
    else
        atexit(s_dir_remove);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_fuzz_in_t in = {data, size};
    uint8_t pick = sl_fuzz_u8(&in), flags = sl_fuzz_u8(&in);
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s",
             s_policies[pick % (sizeof(s_policies) / sizeof(s_policies[0]))]);
    cfg.credits = (pick >> 4) & 3;
    cfg.max_executors = 8;
    cfg.queue_max = 64;
    cfg.done_max = 64;
    cfg.admission = flags & 1;
    cfg.kv_split = flags & 2;
    cfg.kv_fetch = flags & 4;
    cfg.kv_rebalance = flags & 8;
    cfg.tenant_rate = (flags & 16) ? 5 : 0;
    cfg.quarantine_failures = (flags & 32) ? 2 : 0;
    cfg.kv_rebalance_ms = 50;
    s_harness_t h = {.now = SL_MS(1000)};
    sl_core_io_t io = {
        .dispatch = s_io_dispatch,
        .result = s_io_result,
        .cancel = s_io_cancel,
        .release = s_io_release,
        .exec_lost = s_io_exec_lost,
        .migrate = (flags & 64) ? s_io_migrate : NULL,
    };
    if (sl_core_create(&cfg, &io, &h, &h.core) != SL_OK)
        return 0;
    const sl_proto_limits_t *lim = &sl_proto_limits_default;
    int steps = 0;
    while (sl_fuzz_more(&in) && steps++ < 256) {
        uint8_t op = sl_fuzz_u8(&in);
        if ((op & 7) == 0) { /* the clock moves on */
            h.now += SL_MS(sl_fuzz_u16(&in));
            sl_core_tick(h.core, h.now);
            continue;
        }
        size_t len = 0;
        const uint8_t *frame = sl_fuzz_frame(&in, &len);
        char err[256];
        sl_msg_t *m = NULL;
        if (sl_proto_decode(frame, len, lim, &m, err, sizeof(err)) != SL_OK)
            continue; /* refused at receipt */
        sl_wire_msg_t *msg = (sl_wire_msg_t *)m;
        if ((op & 7) <= 2)
            s_on_client(&h, msg, lim);
        else
            s_on_executor(&h, &h.conns[(op >> 3) % S_CONNS], msg);
        sl_wire_msg_free(&msg);
    }
    if (getenv("SL_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_sched: %d steps, %llu dispatched, %llu completed, %llu failed\n",
                steps, (unsigned long long)h.dispatched,
                (unsigned long long)sl_core_counter(h.core, SL_CTR_COMPLETED),
                (unsigned long long)sl_core_counter(h.core, SL_CTR_FAILED));
    sl_core_destroy(&h.core);
    sl_collector_destroy(&h.collector);
    if (s_dir_used)
        s_dir_clean();
    return 0;
}
