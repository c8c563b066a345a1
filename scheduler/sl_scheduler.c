/*
 * The scheduler daemon (see sl_scheduler.h).
 *
 * Two ROUTER sockets, clients and executors, polled by one thread that owns
 * the decision core; every message is decoded and validated before the core
 * sees it, and every refusal is answered with an Error and counted, so a bad
 * peer never stops the loop. ROUTER_MANDATORY makes a send to a vanished
 * peer fail at once (counted) rather than vanish silently; a result that
 * could not be delivered stays cached with the finished job, so a client
 * that reconnects and resubmits the id gets it.
 *
 * Per job the daemon keeps the frame its SubmitBatch came in (its encoded
 * Job is forwarded into the Dispatch as it arrived, so a long prompt is
 * not encoded again) and the client's routing identity, updated on every
 * resubmission so the result goes to the latest sender. The decoded
 * SubmitBatch, which placement reads, is freed once its items are handled;
 * the frame is shared by its jobs (reference counted). Each item is
 * validated and answered on its own.
 *
 * Output is batched per loop turn: dispatches collect per executor (one
 * DispatchBatch each) and answers per client (one ResultBatch each), and
 * everything is sent at the end of the turn, so a burst of jobs costs a few
 * ZeroMQ messages instead of several per job. Ordering towards an executor
 * holds because its pending dispatches are sent before a Cancel to it; the
 * pending dispatches of a lost executor are dropped (the core requeues the
 * jobs). Every answer goes in a batch (the protocol has no other form); one
 * that cannot join its client's batch of the turn is sent as a batch of
 * one. Batching by a timer was rejected: it adds latency when idle,
 * whereas the end of a turn comes at once when nothing else is waiting.
 *
 * Alternatives rejected: a thread per socket (the core would need locks) and
 * a REQ/REP pattern (one request at a time per client).
 */
#include "scheduler/sl_scheduler.h"
#include "scheduler/sl_collector.h"
#include "scheduler/sl_journal.h"
#include "scheduler/sl_policy_plugin.h"
#include "common/sl_auth.h"
#include "common/sl_clock.h"
#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "common/sl_file.h"
#include "common/sl_signal.h"
#include "common/sl_map.h"
#include "proto/sl_wire.h"
#include "proto/sl_wire_mark.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

const sl_cfg_field_t sl_sched_cfg_fields[] = {
    SL_CFG_FIELD(sl_sched_cfg_t, client_endpoint, "client-endpoint", "tcp://127.0.0.1:5555",
                 SL_CFG_STR, "ZeroMQ endpoint clients connect to"),
    SL_CFG_FIELD(sl_sched_cfg_t, executor_endpoint, "executor-endpoint", "tcp://127.0.0.1:5556",
                 SL_CFG_STR, "ZeroMQ endpoint executors connect to"),
    SL_CFG_RANGE(sl_sched_cfg_t, tick_ms, "tick-ms", "10", SL_CFG_I64, 1, 10000,
                 "timer resolution in ms (liveness, deadlines)"),
    SL_CFG_RANGE(sl_sched_cfg_t, drain_timeout_ms, "drain-timeout-ms", "30000", SL_CFG_I64, 0,
                 3600000, "at SIGTERM, longest wait in ms for queued and running jobs"),
    SL_CFG_RANGE(sl_sched_cfg_t, hwm, "hwm", "200000", SL_CFG_INT, 100, 100000000,
                 "ZeroMQ high-water mark (messages queued per peer)"),
    SL_CFG_RANGE(sl_sched_cfg_t, batch, "batch", "256", SL_CFG_INT, 1, 100000,
                 "messages read from one socket before turning to the other"),
    SL_CFG_RANGE(sl_sched_cfg_t, max_batch, "max-msg-batch", "1024", SL_CFG_INT, 1, 4096,
                 "items in one batch message: larger batches received are refused, "
                 "and dispatch and result batches sent are split at this size"),
    SL_CFG_FIELD(sl_sched_cfg_t, policy_path, "policy-path", "", SL_CFG_STR,
                 "shared library with a placement policy (<sluice/policy.h>) that places jobs "
                 "instead of --policy, which then places those it answers out of range "
                 "(counted: policy_invalid_choices; empty: none)"),
    SL_CFG_FIELD(sl_sched_cfg_t, state_file, "state-file", "", SL_CFG_STR,
                 "learned state (load model) read at start and written on clean exit"),
    SL_CFG_FIELD(sl_sched_cfg_t, collect_dir, "collect-dir", "", SL_CFG_STR,
                 "directory where the log lines and job traces executors ship (--log-ship on) "
                 "are written, <executor>.log and <executor>.trace (empty: not collected)"),
    SL_CFG_FIELD(sl_sched_cfg_t, journal, "journal", "", SL_CFG_STR,
                 "SQLite file where accepted jobs and their results are written before they are "
                 "acknowledged; a restart on the same file restores them (empty: no journal)"),
    SL_CFG_FIELD(sl_sched_cfg_t, journal_sync, "journal-sync", "full", SL_CFG_STR,
                 "full: each journal commit is synced to the disk (survives a power loss); "
                 "normal: survives a crash of the scheduler, a power loss may lose the last "
                 "commits"),
    SL_CFG_RANGE(sl_sched_cfg_t, journal_batch, "journal-batch", "4096", SL_CFG_INT, 1, 1000000,
                 "journal records in one transaction at most (a loop turn commits once; a "
                 "larger turn commits every this many)"),
    SL_CFG_RANGE(sl_sched_cfg_t, journal_retain_ms, "journal-retain-ms", "600000", SL_CFG_I64, 0,
                 INT64_C(31536000000),
                 "how long the journal keeps a finished job's result for a resubmitted id"),
    SL_CFG_RANGE(sl_sched_cfg_t, journal_sweep_ms, "journal-sweep-ms", "1000", SL_CFG_I64, 1,
                 3600000, "how often results older than journal-retain-ms are deleted"),
    SL_CFG_RANGE(sl_sched_cfg_t, journal_checkpoint_pages, "journal-checkpoint-pages", "1000",
                 SL_CFG_I64, 1, 100000000,
                 "write-ahead log pages past which a commit folds it back into the journal"),
    SL_CFG_END,
};

typedef enum s_ctr {
    S_CTR_CLIENT_REJECTED,   /* bad messages from clients */
    S_CTR_EXEC_REJECTED,     /* bad messages from executors */
    S_CTR_UNKNOWN_EXECUTOR,  /* messages from executors that never said hello */
    S_CTR_CLIENT_GONE,       /* results or replies to clients that vanished */
    S_CTR_RESULTS_RESENT,    /* results re-sent for a resubmitted finished job */
    S_CTR_TOKENS_FORWARDED,  /* token chunks forwarded to clients */
    S_CTR_KV_EVENTS,         /* KV event messages received */
    S_CTR_NAME_IN_USE,       /* hellos refused: the name belongs to a live executor */
    S_CTR_WRONG_PORT,        /* executor messages on the client port and the reverse */
    S_CTR_VERSION,           /* messages of another protocol version, either port */
    S_CTR_KV_PLANS,          /* KV plans sent (reserve, push, move) */
    S_CTR_KV_STALE,          /* reservations and push reports for splits or moves no longer on */
    S_CTR_COLLECT_LINES,     /* shipped log lines and traces written by the collector */
    S_CTR_COLLECT_BYTES,     /* their bytes */
    S_CTR_COLLECT_DROPPED,   /* lines executors reported dropping before shipping */
    S_CTR_COLLECT_IGNORED,   /* log batches received with no --collect-dir, or not written */
    S_CTR_WEIGHTS_SOURCED,   /* weights queries answered with a peer that holds them */
    S_CTR_WEIGHTS_UNSOURCED, /* weights queries no live executor could answer */
    S_CTR_LEASE_FENCED,      /* loop turns held back: the leader lease was not sure to hold */
    S_CTR_JOURNAL_COMMITS,   /* journal transactions committed */
    S_CTR_JOURNAL_ERRORS,    /* journal writes that failed (those jobs would not survive a crash) */
    S_CTR_JOURNAL_UNUSABLE,  /* journal records that could not be restored */
    S_CTR_HELD_DROPPED,      /* jobs an executor said it held that were not adopted (canceled) */
    S_CTR_AUTH_HS_PROTOCOL,  /* handshakes failed: no key, a wrong server key, not ZMTP */
    S_CTR_AUTH_HS_AUTH,      /* handshakes failed: the ZAP handler denied the key */
    S_CTR_AUTH_HS_OTHER,     /* handshakes failed otherwise */
    S_CTR_AUTH_REVOKED,      /* messages dropped: their key is no longer allowed */
    S_CTR_AUTH_WRONG_ROLE,   /* messages dropped: a client key on the executor port, or reverse */
    S_CTR_AUTH_TENANT_SET,   /* submits whose Job.tenant differed from their key's (replaced) */
    S_CTR_COUNT,
} s_ctr_t;

static const char *const s_ctr_names[S_CTR_COUNT] = {
    "msgs_rejected_client",
    "msgs_rejected_executor",
    "msgs_unknown_executor",
    "client_gone",
    "results_resent",
    "token_chunks_forwarded",
    "kv_events",
    "executors_refused_name",
    "msgs_wrong_port",
    "msgs_wrong_version",
    "kv_plans_sent",
    "kv_reports_stale",
    "collect_lines",
    "collect_bytes",
    "collect_dropped",
    "collect_ignored",
    "weights_sourced",
    "weights_unsourced",
    "lease_fenced_turns",
    "journal_commits",
    "journal_errors",
    "journal_unusable",
    "held_jobs_dropped",
    "auth_handshake_failed_protocol",
    "auth_handshake_failed_auth",
    "auth_handshake_failed_other",
    "auth_msgs_revoked",
    "auth_msgs_wrong_role",
    "auth_tenant_replaced",
};

/* What the daemon keeps per job (sl_job_t.user) until it is done. */
typedef struct s_job_data {
    sl_wire_frame_t *frame; /* reference to the frame the job was submitted in */
    const void *job;        /* the job's encoded bytes as submitted, inside frame */
    size_t job_len;         /* their length */
    uint8_t *own;           /* the job's bytes when restored from the journal (owned; else
                               NULL and job lies in frame) */
    uint64_t jbatch;        /* the journal batch its accept was written in (0: none) */
    uint16_t client_len;    /* bytes of client */
    uint16_t client_cap;    /* room in client */
    uint8_t client[];       /* routing identity of the latest submitter (sized to fit: a
                               few dozen bytes, not sl_wire_ident_t's 256) */
} s_job_data_t;

/* The job's client identity as a wire identity. */
static void s_jd_client(const s_job_data_t *jd, sl_wire_ident_t *to)
{
    memcpy(to->data, jd->client, jd->client_len);
    to->len = jd->client_len;
}

/* What the daemon keeps per executor (sl_exec_t.user). */
typedef struct s_exec_data {
    sl_wire_ident_t ident;  /* routing identity */
    uint64_t key;           /* key in by_ident */
    sl_wire_batch_t out;    /* dispatches of this loop turn not yet sent */
    bool dirty;             /* listed in sl_sched.dirty_execs */
    uint64_t contender;     /* identity key of the latest other connection claiming its name */
    sl_time_t contested_at; /* when that connection first claimed it (0: never) */
    uint8_t *dp_addr;       /* its data-plane address then its KV region key (owned; NULL: none) */
    size_t dp_addr_len;     /* bytes of the address */
    size_t dp_rkey_len;     /* bytes of the key, which follows the address in dp_addr */
    uint64_t kv_region_bytes; /* bytes of its registered KV region */
    uint32_t *reach;          /* peers it reported on: executor index << 1 | reachable (owned) */
    uint32_t n_reach;         /* entries of reach */
    uint32_t cap_reach;       /* room in reach */
    char *weights_name;       /* the weights it serves to peers (owned; NULL: none) */
    void *weights_rkey;       /* their packed key (owned) */
    size_t weights_rkey_len;  /* bytes of weights_rkey */
    uint64_t weights_bytes;   /* their size */
    uint64_t weights_sum;     /* their checksum */
} s_exec_data_t;

/* Answers to one client collected during a loop turn (a ResultBatch). */
typedef struct s_client_out {
    sl_wire_ident_t ident;     /* routing identity */
    uint64_t key;              /* key in sl_sched.outs */
    sl_wire_batch_t batch;     /* accepted, busy and result items */
    uint64_t ticket;           /* held: the journal batch that must be durable first */
    struct s_client_out *next; /* next free one (in the free list), or next held one */
} s_client_out_t;

/* Idle client batches kept for reuse (their buffers stay allocated). */
#define S_OUT_FREE_MAX 64

struct sl_sched {
    sl_sched_cfg_t cfg;             /* configuration */
    sl_proto_limits_t limits;       /* message validation bounds */
    void *zctx;                     /* ZeroMQ context */
    void *clients;                  /* ROUTER for clients */
    void *executors;                /* ROUTER for executors */
    sl_core_t *core;                /* decision core */
    sl_map_t by_ident;              /* hash of executor identity -> index + 1 */
    sl_map_t outs;                  /* hash of client identity -> s_client_out_t (this turn) */
    s_client_out_t **dirty_outs;    /* client batches with items, in first-use order */
    size_t n_dirty_outs;            /* their number */
    size_t cap_dirty_outs;          /* room in dirty_outs */
    s_client_out_t *free_outs;      /* idle client batches for reuse */
    size_t n_free_outs;             /* their number */
    uint32_t *dirty_execs;          /* indexes of executors with pending dispatches */
    size_t n_dirty_execs;           /* their number */
    size_t cap_dirty_execs;         /* room in dirty_execs */
    sl_time_t now;                  /* time of the current loop turn */
    volatile sig_atomic_t stop;     /* drain and exit */
    uint64_t counters[S_CTR_COUNT]; /* daemon counters */
    uint8_t *receipt;               /* scratch: the packed Result of a finished job */
    size_t receipt_cap;             /* its size */
    sl_wire_batch_t single;         /* scratch: an answer sent on its own */
    bool closing;                   /* being destroyed: executors are no longer told of peers */
    sl_collector_t *collector;      /* writes shipped logs and traces (NULL: --collect-dir unset) */
    sl_lease_t *lease;              /* the leader lease (NULL: --etcd unset, always leading) */
    sl_journal_t *journal;          /* accepted jobs and results (NULL: --journal unset) */
    sl_policy_plugin_lib_t *plugin; /* --policy-path's library (NULL: a built-in policy) */
    s_client_out_t *held;           /* answers waiting for their journal batch, oldest first */
    s_client_out_t **held_tail;     /* where the next held one goes */
    sl_time_t journal_sweep_at;     /* next deletion of old results */
    uint64_t results_restored;      /* finished jobs' results the journal gave back at start */
    sl_auth_keys_t *keys;           /* CURVE pair (NULL: --insecure) */
    sl_auth_zap_t *zap;             /* the ZAP handler (NULL: --insecure) */
    void *mon[2];                   /* handshake-failure monitors of clients, executors */
    volatile sig_atomic_t reload;   /* SIGHUP: reload the allow-lists */
};

/* Wall-clock milliseconds: the journal's results outlive the process. */
static int64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Commit the journal's open batch and wait for it (an answer that must
 * leave at once). A failure is logged and counted by the journal. */
static void s_journal_commit(sl_sched_t *s)
{
    if (s->journal && sl_journal_pending(s->journal))
        (void)sl_journal_commit(s->journal);
}

/* Free what the daemon keeps for a job. */
static void s_jd_free(s_job_data_t *jd)
{
    sl_wire_frame_free(&jd->frame);
    free(jd->own);
    free(jd);
}

static uint64_t s_ident_key(const sl_wire_ident_t *id)
{
    return sl_hash_bytes(id->data, id->len, 0x5eed);
}

/* ---- actions from the core ---- */

/* Send an executor's pending dispatches; SL_OK when there were none. */
static sl_status_t s_exec_flush(sl_sched_t *s, s_exec_data_t *ed)
{
    ed->dirty = false;
    return sl_wire_batch_send(s->executors, &ed->ident, &ed->out, ZMQ_DONTWAIT);
}

/* Send exec the KV plan of job now (before its pending dispatches, which
 * go at the end of the turn): mode toward peer, and for a push the
 * receiver's reservation r. */
static sl_status_t s_kv_plan(sl_sched_t *s, sl_exec_t *exec, const sl_job_t *job, sl_kv_mode_t mode,
                             uint32_t peer, const sl_kv_reserved_t *r)
{
    s_exec_data_t *ed = exec->user;
    sl_kv_plan_t p = {.job_seq = job->seq, .mode = mode, .peer = peer, .nonce = job->kv_nonce};
    if (r) {
        p.first_block = r->first_block;
        p.blocks = r->blocks;
        p.n_blocks = r->n_blocks;
        p.block_bytes = r->block_bytes;
    }
    if (mode == SL_KV_FETCH) { /* the holder finds the blocks by their hashes */
        p.hashes = job->block_hashes;
        p.n_hashes =
            job->kv_fetch_blocks < job->n_block_hashes ? job->kv_fetch_blocks : job->n_block_hashes;
    }
    s->counters[S_CTR_KV_PLANS]++;
    return sl_wire_kv_plan_send(s->executors, &ed->ident, &p, ZMQ_DONTWAIT);
}

/* Queue job's dispatch to exec for the end of the loop turn (sl_sched_flush). */
static sl_status_t s_batch_job(sl_sched_t *s, sl_exec_t *exec, sl_job_t *job)
{
    s_exec_data_t *ed = exec->user;
    s_job_data_t *jd = job->user;
    if (ed->out.n >= (uint32_t)s->cfg.max_batch || ed->out.len >= SL_WIRE_BATCH_BYTES) {
        sl_status_t st = s_exec_flush(s, ed);
        if (st != SL_OK)
            return st;
    }
    /* The job goes as the client encoded it: nothing is decoded or encoded
     * again on the way (placement used the decoded view). */
    sl_status_t st = sl_wire_dispatch_add_resume(&ed->out, jd->job, jd->job_len, job->seq,
                                                 job->attempts, job->delivered, job->resume_tokens);
    if (st != SL_OK)
        return st;
    if (ed->dirty)
        return SL_OK;
    if (s->n_dirty_execs == s->cap_dirty_execs)
        return s_exec_flush(s, ed); /* only after losses in one flush; send at once */
    ed->dirty = true;
    s->dirty_execs[s->n_dirty_execs++] = exec->index;
    return SL_OK;
}

static sl_status_t s_io_dispatch(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    sl_sched_t *s = arg;
    /* A split job's decode executor first gets the plan: reserve, wait for
     * the KV of kv_peer (sent now, so before the batch holding the job). */
    if ((job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) && job->exec == exec) {
        sl_status_t st = s_kv_plan(s, exec, job, SL_KV_AWAIT, job->kv_peer->index, NULL);
        if (st != SL_OK)
            return st;
    }
    return s_batch_job(s, exec, job);
}

/* A move begins: the destination reserves (its plan, then the job), and
 * the source is told to push once the reservation is known. */
static sl_status_t s_io_migrate(void *arg, sl_job_t *job)
{
    sl_sched_t *s = arg;
    sl_status_t st = s_kv_plan(s, job->kv_peer, job, SL_KV_AWAIT, job->exec->index, NULL);
    return st == SL_OK ? s_batch_job(s, job->kv_peer, job) : st;
}

static void s_out_send(sl_sched_t *s, s_client_out_t *o)
{
    if (o->batch.n)
        sl_wire_results_set_depth(&o->batch, sl_core_queue_depth(s->core, SL_PRIO_INTERACTIVE) +
                                                 sl_core_queue_depth(s->core, SL_PRIO_BATCH));
    if (sl_wire_batch_send(s->clients, &o->ident, &o->batch, ZMQ_DONTWAIT) != SL_OK)
        s->counters[S_CTR_CLIENT_GONE]++;
}

static bool s_ident_eq(const sl_wire_ident_t *a, const sl_wire_ident_t *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/*
 * The batch of answers to `to` in this loop turn, created on first use; NULL
 * when none can be had (out of memory, or another identity with the same
 * hash): the caller then sends on its own.
 */
static s_client_out_t *s_out_get(sl_sched_t *s, const sl_wire_ident_t *to)
{
    /* Most answers in a turn go to the client of the previous one. */
    s_client_out_t *o = s->n_dirty_outs ? s->dirty_outs[s->n_dirty_outs - 1] : NULL;
    uint64_t key = 0;
    if (!o || !s_ident_eq(&o->ident, to)) {
        key = sl_hash_bytes(to->data, to->len, 0xc11e);
        o = sl_map_get(&s->outs, key);
        if (o && !s_ident_eq(&o->ident, to))
            return NULL;
    }
    if (o) {
        if (o->batch.n >= (uint32_t)s->cfg.max_batch || o->batch.len >= SL_WIRE_BATCH_BYTES)
            s_out_send(s, o);
        return o;
    }
    if (s->n_dirty_outs == s->cap_dirty_outs) {
        size_t cap = s->cap_dirty_outs ? s->cap_dirty_outs * 2 : 16;
        s_client_out_t **d = realloc(s->dirty_outs, cap * sizeof(*d));
        if (!d)
            return NULL;
        s->dirty_outs = d;
        s->cap_dirty_outs = cap;
    }
    if (s->free_outs) {
        o = s->free_outs;
        s->free_outs = o->next;
        s->n_free_outs--;
    } else {
        o = calloc(1, sizeof(*o));
        if (!o)
            return NULL;
        sl_wire_batch_init(&o->batch, SL_WIRE_RESULTS);
    }
    if (sl_map_put(&s->outs, key, o) != SL_OK) {
        o->next = s->free_outs;
        s->free_outs = o;
        s->n_free_outs++;
        return NULL;
    }
    o->ident = *to;
    o->key = key;
    s->dirty_outs[s->n_dirty_outs++] = o;
    return o;
}

/*
 * The batch an answer to `to` joins: the client's batch of this turn, or,
 * when none can be had, the scratch batch, which s_answer_done sends at
 * once as a batch of one.
 */
static sl_wire_batch_t *s_answer_batch(sl_sched_t *s, const sl_wire_ident_t *to)
{
    s_client_out_t *o = s_out_get(s, to);
    return o ? &o->batch : &s->single;
}

/* After an item was added to the batch from s_answer_batch (st its status). */
static void s_answer_done(sl_sched_t *s, const sl_wire_ident_t *to, sl_wire_batch_t *b,
                          sl_status_t st)
{
    if (b != &s->single && st == SL_OK)
        return;
    if (b == &s->single && st == SL_OK) {
        s_journal_commit(s);
        sl_wire_results_set_depth(b, sl_core_queue_depth(s->core, SL_PRIO_INTERACTIVE) +
                                         sl_core_queue_depth(s->core, SL_PRIO_BATCH));
        st = sl_wire_batch_send(s->clients, to, b, ZMQ_DONTWAIT);
    }
    if (st != SL_OK)
        s->counters[S_CTR_CLIENT_GONE]++;
}

/* Queue a packed Result to a client. */
static void s_answer_packed_result(sl_sched_t *s, const sl_wire_ident_t *to, const void *buf,
                                   size_t len)
{
    sl_wire_batch_t *b = s_answer_batch(s, to);
    s_answer_done(s, to, b, sl_wire_result_add_packed(b, buf, len));
}

/* End of a loop turn: send every pending dispatch batch and answer batch. */
/* A client batch sent or dropped goes back to the free list. */
static void s_out_recycle(sl_sched_t *s, s_client_out_t *o)
{
    if (s->n_free_outs < S_OUT_FREE_MAX) {
        o->next = s->free_outs;
        s->free_outs = o;
        s->n_free_outs++;
    } else {
        sl_wire_batch_fini(&o->batch);
        free(o);
    }
}

/* Send the held answers whose journal batch is durable, oldest first. */
static void s_held_release(sl_sched_t *s, uint64_t durable)
{
    while (s->held && s->held->ticket <= durable) {
        s_client_out_t *o = s->held;
        s->held = o->next;
        if (!s->held)
            s->held_tail = &s->held;
        s_out_send(s, o);
        s_out_recycle(s, o);
    }
}

/* The journal's writer finished a batch: its answers go, and the records
 * gathered meanwhile are handed over as the next batch. */
static void s_journal_ready(sl_sched_t *s)
{
    uint64_t durable = sl_journal_durable(s->journal);
    sl_journal_kick(s->journal);
    s_held_release(s, durable);
}

static void s_flush(sl_sched_t *s)
{
    /* A failed send loses the executor, whose requeued jobs may be
     * dispatched to others. The core is told only after the walk over
     * dirty_execs, which its callbacks append to: the executors that failed
     * are kept at the head of the list, lost once the walk is over, and the
     * dispatches that causes (appended behind them) go out in another pass. */
    while (s->n_dirty_execs) {
        size_t n_failed = 0;
        for (size_t i = 0; i < s->n_dirty_execs; i++) {
            uint32_t index = s->dirty_execs[i];
            sl_exec_t *e = sl_core_exec_get(s->core, index);
            s_exec_data_t *ed = e ? e->user : NULL;
            if (ed && ed->dirty && s_exec_flush(s, ed) != SL_OK)
                s->dirty_execs[n_failed++] = index;
        }
        s->n_dirty_execs = n_failed;
        for (size_t i = 0; i < n_failed; i++)
            sl_core_exec_lost(s->core, s->dirty_execs[i], "dispatch failed", s->now);
        s->n_dirty_execs -= n_failed;
        memmove(s->dirty_execs, s->dirty_execs + n_failed,
                s->n_dirty_execs * sizeof(*s->dirty_execs));
    }
    /* With a journal, what this turn answered waits for the batch holding
     * this turn's records (group commit: the writer syncs while the loop
     * goes on; answers leave in order, as their batches become durable). */
    uint64_t mark = 0, durable = 0;
    if (s->journal) {
        mark = sl_journal_mark(s->journal);
        sl_journal_kick(s->journal);
        durable = sl_journal_durable(s->journal);
        s_held_release(s, durable);
    }
    for (size_t i = 0; i < s->n_dirty_outs; i++) {
        s_client_out_t *o = s->dirty_outs[i];
        sl_map_del(&s->outs, o->key);
        if (mark > durable || s->held) {
            o->ticket = mark;
            o->next = NULL;
            *s->held_tail = o;
            s->held_tail = &o->next;
            continue;
        }
        s_out_send(s, o);
        s_out_recycle(s, o);
    }
    s->n_dirty_outs = 0;
}

static void s_io_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                        const sl_exec_t *exec, const void *payload, const char *error)
{
    sl_sched_t *s = arg;
    s_job_data_t *jd = job->user;
    const sl_result_report_t *er = payload;
    sl_wire_result_t r = {
        .job_id = job->id,
        .status = status,
        .attempts = job->attempts,
        .late = t->late,
        .executor = exec ? exec->name : "",
        .error = error ? error : (er && er->error ? er->error : ""),
        .tokens = er ? er->tokens : NULL,
        .n_tokens = er ? er->n_tokens : 0,
        .has_timings = true,
        .timings =
            {
                .queued_us = (uint64_t)(t->queued / SL_NS_PER_US),
                .ttft_us = (uint64_t)(t->ttft / SL_NS_PER_US),
                .end_us = (uint64_t)(t->end / SL_NS_PER_US),
                .prompt_tokens = job->prompt_tokens,
            },
    };
    if (er) {
        r.timings.cached_tokens = er->res.cached_tokens;
        r.timings.output_tokens = er->res.output_tokens;
        r.timings.exec_ttft_us = (uint64_t)(er->res.exec_ttft / SL_NS_PER_US);
        r.timings.exec_end_us = (uint64_t)(er->res.exec_end / SL_NS_PER_US);
        r.timings.has_exec_queue = er->res.has_exec_queue;
        r.timings.exec_queue_us = (uint64_t)(er->res.exec_queue / SL_NS_PER_US);
    }
    /* The packed result goes to the client and, as the job's receipt, into
     * the core's finished-job log for resubmissions. */
    sl_wire_ident_t to;
    s_jd_client(jd, &to);
    const void *p = NULL;
    size_t len = 0;
    if (sl_wire_result_pack(&r, &s->receipt, &s->receipt_cap, &p, &len) == SL_OK) {
        job->receipt = p;
        job->receipt_len = len;
        if (s->journal)
            (void)sl_journal_done(s->journal, jd->jbatch, job->seq, job->id, p, len, s_wall_ms());
        s_answer_packed_result(s, &to, p, len);
    } else {
        if (s->journal)
            (void)sl_journal_done(s->journal, jd->jbatch, job->seq, job->id, NULL, 0, s_wall_ms());
        sl_wire_batch_t *b = s_answer_batch(s, &to);
        s_answer_done(s, &to, b, sl_wire_result_add(b, &r));
    }
    job->user = NULL;
    s_jd_free(jd);
}

static void s_io_cancel(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    sl_sched_t *s = arg;
    s_exec_data_t *ed = exec->user;
    sl_wire_cancel_t c = {.job_id = job->id, .job_seq = job->seq};
    /* The executor must see the dispatch before the cancel. A failed send
     * is found by the liveness check, as a lost cancel always was. */
    if (ed->dirty)
        (void)s_exec_flush(s, ed);
    (void)sl_wire_cancel_send(s->executors, &ed->ident, &c, ZMQ_DONTWAIT);
}

static void s_io_release(void *arg, sl_job_t *job)
{
    s_job_data_t *jd = job->user;
    if (!jd)
        return;
    s_jd_free(jd);
}

/* ---- data-plane peers ---- */

/* The data of executor i when it is joined and has a data plane, else NULL. */
static s_exec_data_t *s_dp_exec(sl_sched_t *s, uint32_t i, sl_exec_t **e_p)
{
    sl_exec_t *e = sl_core_exec_get(s->core, i);
    s_exec_data_t *ed = e ? e->user : NULL;
    if (!ed || !ed->dp_addr)
        return NULL;
    if (e_p)
        *e_p = e;
    return ed;
}

/* e as a peer (pointers into e and its data). */
static sl_wire_peer_t s_peer_of(const sl_exec_t *e, const s_exec_data_t *ed)
{
    return (sl_wire_peer_t){.executor_index = e->index,
                            .name = e->name,
                            .xport_address = ed->dp_addr,
                            .xport_address_len = ed->dp_addr_len,
                            .kv_rkey = ed->dp_addr + ed->dp_addr_len,
                            .kv_rkey_len = ed->dp_rkey_len,
                            .kv_region_bytes = ed->kv_region_bytes};
}

/* Forget what ed reported about peer (lost, left or reported again). */
static void s_reach_forget(s_exec_data_t *ed, uint32_t peer)
{
    for (uint32_t k = 0; k < ed->n_reach; k++) {
        if (ed->reach[k] >> 1 == peer) {
            ed->reach[k] = ed->reach[--ed->n_reach];
            return;
        }
    }
}

/* Peers ed reported reachable (*ok_p) and unreachable (*bad_p). */
static void s_reach_count(const s_exec_data_t *ed, uint32_t *ok_p, uint32_t *bad_p)
{
    uint32_t ok = 0;
    for (uint32_t k = 0; k < ed->n_reach; k++)
        ok += ed->reach[k] & 1u;
    *ok_p = ok;
    *bad_p = ed->n_reach - ok;
}

/* A report from index that it reserved blocks for a job's KV (or could
 * not): the sending side gets its plan, with the blocks to write. */
static void s_on_kv_reserved(sl_sched_t *s, uint32_t index, const sl_wire_msg_t *msg, sl_time_t now)
{
    sl_kv_reserved_t r;
    sl_wire_kv_reserved_get(msg, &r);
    sl_job_t *job = sl_core_job_get(s->core, r.job_seq);
    bool split = job && (job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH) && job->exec &&
                 job->exec->index == index;
    bool move =
        job && job->kv_mode == SL_KV_MIGRATE && job->kv_peer && job->kv_peer->index == index;
    if ((!split && !move) || r.nonce != job->kv_nonce) {
        s->counters[S_CTR_KV_STALE]++; /* abandoned: the executor was told to drop it */
        return;
    }
    if (r.status != SL_OK) {
        (void)sl_core_kv_refused(s->core, index, r.job_seq, r.error, now);
        return;
    }
    sl_exec_t *from = split ? job->kv_peer : job->exec;
    sl_kv_mode_t mode = !split ? SL_KV_MIGRATE : job->kv_mode;
    if (mode == SL_KV_FETCH && r.first_block >= job->kv_fetch_blocks) {
        /* it cached those blocks itself meanwhile: nothing to pull */
        (void)sl_core_kv_refused(s->core, index, r.job_seq, "nothing left to fetch", now);
        return;
    }
    sl_status_t st = s_kv_plan(s, from, job, mode, index, &r);
    if (st == SL_OK && mode == SL_KV_PUSH)
        st = s_batch_job(s, from, job); /* the prompt to compute, after its plan */
    if (st != SL_OK)                    /* as a failed dispatch: its connection is gone */
        (void)sl_core_exec_lost(s->core, from->index, "a KV plan could not be sent", now);
}

static void s_on_kv_sent(sl_sched_t *s, uint32_t index, const sl_wire_msg_t *msg, sl_time_t now)
{
    sl_kv_sent_t k;
    sl_wire_kv_sent_get(msg, &k);
    if (!k.ok)
        SL_WARN("executor %u: the KV push of job %llu failed: %s", index,
                (unsigned long long)k.job_seq, k.error);
    if (sl_core_kv_sent(s->core, index, &k, now) != SL_OK)
        s->counters[S_CTR_KV_STALE]++;
}

/* An executor's report on one of its peers; reports on an executor that is
 * not a live data-plane peer (lost since) are dropped. */
static void s_on_peer_reach(sl_sched_t *s, uint32_t index, const sl_wire_msg_t *msg)
{
    sl_wire_peer_reach_t r;
    sl_wire_peer_reach_get(msg, &r);
    s_exec_data_t *ed = s_dp_exec(s, index, NULL);
    if (!ed || r.peer_index == index || r.peer_index > UINT32_MAX >> 1 ||
        !s_dp_exec(s, r.peer_index, NULL))
        return;
    s_reach_forget(ed, r.peer_index);
    if (ed->n_reach == ed->cap_reach) {
        uint32_t cap = ed->cap_reach ? ed->cap_reach * 2 : 8;
        uint32_t *p = realloc(ed->reach, cap * sizeof(*p));
        if (!p)
            return;
        ed->reach = p;
        ed->cap_reach = cap;
    }
    ed->reach[ed->n_reach++] = r.peer_index << 1 | (r.reachable ? 1u : 0u);
    (void)sl_core_exec_reach(s->core, index, r.peer_index, r.reachable, s->now);
    if (r.reachable)
        SL_INFO("executor %u reaches executor %u over the data plane (%u us)", index, r.peer_index,
                r.rtt_us);
    else
        SL_WARN("executor %u cannot reach executor %u over the data plane: %s", index, r.peer_index,
                r.error);
}

/*
 * A data-plane executor joined: hand it every other one, and it to each of
 * them. A failed send is left to the liveness check (as a lost cancel): the
 * peer that missed it is then unknown to that executor, never wrongly
 * reachable.
 */
static void s_peers_joined(sl_sched_t *s, uint32_t index)
{
    sl_exec_t *ne = NULL;
    s_exec_data_t *ned = s_dp_exec(s, index, &ne);
    if (!ned)
        return;
    uint32_t slots = sl_core_exec_slots(s->core), n = 0;
    sl_wire_peer_t *ps = calloc(slots ? slots : 1, sizeof(*ps));
    if (!ps)
        return;
    sl_wire_peer_t me = s_peer_of(ne, ned);
    for (uint32_t i = 0; i < slots; i++) {
        sl_exec_t *e = NULL;
        s_exec_data_t *ed = i == index ? NULL : s_dp_exec(s, i, &e);
        if (!ed)
            continue;
        ps[n++] = s_peer_of(e, ed);
        (void)sl_wire_peers_send(s->executors, &ed->ident, &me, 1, ZMQ_DONTWAIT);
    }
    for (uint32_t k = 0; k < n; k += s->limits.max_peers) {
        uint32_t m = n - k < s->limits.max_peers ? n - k : s->limits.max_peers;
        (void)sl_wire_peers_send(s->executors, &ned->ident, ps + k, m, ZMQ_DONTWAIT);
    }
    free(ps);
}

/* A data-plane executor is lost or left: the others drop it. */
static void s_peers_gone(sl_sched_t *s, const sl_exec_t *gone)
{
    sl_wire_peer_t p = {.executor_index = gone->index, .name = gone->name, .gone = true};
    for (uint32_t i = 0; i < sl_core_exec_slots(s->core); i++) {
        s_exec_data_t *ed = i == gone->index ? NULL : s_dp_exec(s, i, NULL);
        if (!ed)
            continue;
        s_reach_forget(ed, gone->index);
        (void)sl_wire_peers_send(s->executors, &ed->ident, &p, 1, ZMQ_DONTWAIT);
    }
}

static void s_io_exec_lost(void *arg, sl_exec_t *exec, const char *why)
{
    sl_sched_t *s = arg;
    s_exec_data_t *ed = exec->user;
    if (!ed)
        return;
    uintptr_t cur = (uintptr_t)sl_map_get(&s->by_ident, ed->key);
    if (cur == (uintptr_t)exec->index + 1)
        sl_map_del(&s->by_ident, ed->key);
    sl_wire_batch_fini(&ed->out); /* pending dispatches: the core requeues their jobs */
    exec->user = NULL;
    if (ed->dp_addr && !s->closing) /* at destroy the core's records are being freed */
        s_peers_gone(s, exec);
    free(ed->reach);
    free(ed->dp_addr);
    free(ed->weights_name);
    free(ed->weights_rkey);
    free(ed);
}

/* The core's lines go to the daemon's log (its levels are sl_log_level_t's). */
_Static_assert((int)SL_CORE_LOG_ERROR == (int)SL_LOG_ERROR &&
                   (int)SL_CORE_LOG_WARN == (int)SL_LOG_WARN &&
                   (int)SL_CORE_LOG_INFO == (int)SL_LOG_INFO,
               "the core's log levels are sl_log_level_t's");
static void s_io_log(void *arg, sl_core_log_level_t level, const char *msg)
{
    SL_LOG_AT((sl_log_level_t)level, "%s", msg);
}

/* A first pipeline stage's chain changed: tell it (before any job it runs on it). */
static void s_io_stage_plan(void *arg, sl_exec_t *first, const uint32_t *chain, uint32_t n)
{
    sl_sched_t *s = arg;
    s_exec_data_t *ed = first->user;
    if (ed->dirty)
        (void)s_exec_flush(s, ed); /* jobs of its old chain go first */
    sl_status_t st = sl_wire_stage_plan_send(s->executors, &ed->ident, chain, n, ZMQ_DONTWAIT);
    if (st != SL_OK)
        SL_WARN("stage plan to %s not sent: %s", first->name, sl_status_str(st));
}

static const sl_core_io_t s_io = {
    .dispatch = s_io_dispatch,
    .result = s_io_result,
    .cancel = s_io_cancel,
    .migrate = s_io_migrate,
    .release = s_io_release,
    .exec_lost = s_io_exec_lost,
    .log = s_io_log,
    .stage_plan = s_io_stage_plan,
};

/* ---- replies ---- */

static void s_reply_error(sl_sched_t *s, void *sock, const sl_wire_ident_t *to, sl_status_t code,
                          const char *text)
{
    sl_wire_error_t e = {.code = code, .message = text, .job_id = ""};
    if (sl_wire_error_send(sock, to, &e, ZMQ_DONTWAIT) != SL_OK && sock == s->clients)
        s->counters[S_CTR_CLIENT_GONE]++;
}

/* An Error that refuses one submitted job (named, so the client fails that
 * job with the reason instead of waiting for it). */
static void s_reply_job_error(sl_sched_t *s, const sl_wire_ident_t *to, const char *job_id,
                              sl_status_t code, const char *text)
{
    sl_wire_error_t e = {.code = code, .message = text, .job_id = job_id};
    if (sl_wire_error_send(s->clients, to, &e, ZMQ_DONTWAIT) != SL_OK)
        s->counters[S_CTR_CLIENT_GONE]++;
}

static void s_reply_accepted(sl_sched_t *s, const sl_wire_ident_t *to, const char *job_id)
{
    /* A bare id; the batch carries the queue depth once. */
    sl_wire_batch_t *b = s_answer_batch(s, to);
    s_answer_done(s, to, b, sl_wire_accepted_add(b, job_id));
}

static void s_reply_busy(sl_sched_t *s, const sl_wire_ident_t *to, const char *job_id,
                         sl_busy_reason_t reason, sl_time_t retry_after)
{
    static const char *const details[SL_BUSY_REASON_COUNT] = {
        "predicted load over the admission threshold",
        "no executor can meet the deadline",
        "scheduler queue is full",
        "tenant over its rate",
        "no executor serves this model",
        "scheduler is draining"};
    sl_wire_busy_t busy = {.job_id = job_id,
                           .retry_after_ms = (uint32_t)(retry_after / SL_NS_PER_MS),
                           .reason = reason,
                           .detail = details[reason]};
    sl_wire_batch_t *b = s_answer_batch(s, to);
    s_answer_done(s, to, b, sl_wire_busy_add(b, &busy));
}

static void s_reply_status(sl_sched_t *s, const sl_wire_ident_t *to)
{
    sl_time_t now = sl_clock_now();
    uint32_t n = sl_core_exec_count(s->core), k = 0;
    sl_wire_exec_status_t *es = calloc(n ? n : 1, sizeof(*es));
    sl_wire_counter_t ctr[SL_CTR_COUNT + S_CTR_COUNT + SL_AUTH_CTR_COUNT];
    uint64_t zc[SL_AUTH_CTR_COUNT];
    if (!es) {
        s_reply_error(s, s->clients, to, SL_ERR_NOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < sl_core_exec_slots(s->core) && k < n; i++) {
        sl_exec_t *e = sl_core_exec_get(s->core, i);
        if (!e)
            continue;
        es[k] = (sl_wire_exec_status_t){
            .name = e->name,
            .backend = e->backend,
            .load = e->load,
            .has_load = true,
            .inflight = e->inflight,
            .slots = e->credits,
            .alive = e->alive,
            .completed = e->completed,
            .failed = e->failed,
            .quarantined = sl_core_exec_quarantined(e, now),
        };
        const s_exec_data_t *ed = e->user;
        if (ed && ed->dp_addr) {
            es[k].data_plane = true;
            es[k].kv_region_bytes = ed->kv_region_bytes;
            s_reach_count(ed, &es[k].peers_reachable, &es[k].peers_unreachable);
        }
        k++;
    }
    if (s->journal) {
        sl_journal_stats_t js;
        sl_journal_stats(s->journal, &js);
        s->counters[S_CTR_JOURNAL_COMMITS] = js.commits;
        s->counters[S_CTR_JOURNAL_ERRORS] = js.errors;
        s->counters[S_CTR_JOURNAL_UNUSABLE] = js.unusable;
    }
    for (int i = 0; i < SL_CTR_COUNT; i++)
        ctr[i] = (sl_wire_counter_t){.name = sl_core_counter_name((sl_core_counter_t)i),
                                     .value = sl_core_counter(s->core, (sl_core_counter_t)i)};
    for (int i = 0; i < S_CTR_COUNT; i++)
        ctr[SL_CTR_COUNT + i] =
            (sl_wire_counter_t){.name = s_ctr_names[i], .value = s->counters[i]};
    sl_auth_zap_counters(s->zap, zc);
    for (int i = 0; i < SL_AUTH_CTR_COUNT; i++)
        ctr[SL_CTR_COUNT + S_CTR_COUNT + i] =
            (sl_wire_counter_t){.name = sl_auth_ctr_names[i], .value = zc[i]};
    sl_wire_status_t st = {
        .n_executors = k,
        .n_counters = SL_CTR_COUNT + S_CTR_COUNT + SL_AUTH_CTR_COUNT,
        .queued_interactive = sl_core_queue_depth(s->core, SL_PRIO_INTERACTIVE),
        .queued_batch = sl_core_queue_depth(s->core, SL_PRIO_BATCH),
        .inflight = sl_core_inflight(s->core),
        .policy = sl_core_policy_name(s->core),
    };
    if (sl_wire_status_reply_send(s->clients, to, &st, es, ctr, ZMQ_DONTWAIT) != SL_OK)
        s->counters[S_CTR_CLIENT_GONE]++;
    free(es);
}

/*
 * A peer on the wrong socket (an executor's message on the client port, a
 * client's on the executor port): told which endpoint it wants, with the
 * code a peer on the wrong port recognises (SL_ERR_MSG_UNEXPECTED), and
 * counted with that socket's refused messages and in msgs_wrong_port.
 * Answering as for any unexpected message was rejected: an executor on the
 * client port said hello again for ever, and a client on the executor port
 * was told to say hello, which no client can.
 */
static void s_wrong_port(sl_sched_t *s, void *sock, const sl_wire_ident_t *to, sl_wire_kind_t kind)
{
    char text[512];
    s->counters[S_CTR_WRONG_PORT]++; /* of the refused messages, counted as any */
    s->counters[sock == s->clients ? S_CTR_CLIENT_REJECTED : S_CTR_EXEC_REJECTED]++;
    if (sock == s->clients)
        snprintf(text, sizeof(text),
                 "this is the client port; executors connect to the executor endpoint (%s)",
                 s->cfg.executor_endpoint);
    else
        snprintf(text, sizeof(text),
                 "this is the executor port; clients connect to the client endpoint (%s)",
                 s->cfg.client_endpoint);
    SL_DEBUG("'%s' on the wrong port: %s", sl_wire_kind_name(kind), text);
    s_reply_error(s, sock, to, SL_ERR_MSG_UNEXPECTED, text);
}

/* ---- client messages ---- */

/* One submitted job (validated), item `item` of backing: on acceptance the
 * job takes a reference to the frame backing came in. */
static void s_on_submit(sl_sched_t *s, const sl_wire_ident_t *from, sl_wire_msg_t *backing,
                        uint32_t item, const sl_job_desc_t *jdesc, sl_time_t now)
{
    sl_job_desc_t d = *jdesc;
    const char *id = d.id;
    s_job_data_t *jd = malloc(sizeof(*jd) + from->len);
    sl_job_t *job = NULL;
    sl_busy_reason_t reason = SL_BUSY_OVERLOAD;
    sl_time_t retry = 0;
    if (!jd) {
        s_reply_error(s, s->clients, from, SL_ERR_NOMEM, "out of memory");
        return;
    }
    jd->own = NULL;
    jd->jbatch = 0;
    jd->client_len = jd->client_cap = (uint16_t)from->len;
    memcpy(jd->client, from->data, from->len);
    sl_status_t st = sl_wire_submit_job_bytes(backing, item, &jd->job, &jd->job_len);
    if (st != SL_OK) {
        free(jd);
        s->counters[S_CTR_CLIENT_REJECTED]++;
        s_reply_job_error(s, from, id, SL_ERR_MSG_MALFORMED, "cannot find the job's encoding");
        return;
    }
    jd->frame = sl_wire_msg_frame(backing);
    st = sl_core_job_submit(s->core, &d, jd, now, &job, &reason, &retry);
    if (st == SL_OK) {
        if (s->journal) { /* committed before the Accepted leaves (s_flush) */
            sl_journal_rec_t rec = {.id = job->id,
                                    .seq = job->seq,
                                    .tenant = job->tenant,
                                    .client = from->data,
                                    .client_len = from->len,
                                    .job = jd->job,
                                    .job_len = jd->job_len};
            (void)sl_journal_accept(s->journal, &rec, &jd->jbatch);
        }
        s_reply_accepted(s, from, job->id);
        return;
    }
    sl_wire_frame_free(&jd->frame);
    free(jd);
    const void *receipt = NULL;
    size_t receipt_len = 0;
    bool done =
        st == SL_ERR_EXISTS && !job && sl_core_done_find(s->core, id, &receipt, &receipt_len);
    if (st == SL_ERR_EXISTS && (job || done)) {
        if (job) {
            /* Results go to the latest submitter. */
            s_job_data_t *old = job->user;
            if (from->len > old->client_cap) {
                s_job_data_t *grown = realloc(old, sizeof(*old) + from->len);
                if (grown) {
                    grown->client_cap = (uint16_t)from->len;
                    job->user = old = grown;
                }
            }
            if (from->len <= old->client_cap) {
                old->client_len = (uint16_t)from->len;
                memcpy(old->client, from->data, from->len);
            }
        }
        s_reply_accepted(s, from, id);
        if (done && receipt_len) {
            s_answer_packed_result(s, from, receipt, receipt_len);
            s->counters[S_CTR_RESULTS_RESENT]++;
        }
    } else if (st == SL_ERR_BUSY) {
        s_reply_busy(s, from, id, reason, retry);
    } else if (st == SL_ERR_NO_EXECUTOR) {
        char why[256];
        sl_core_job_misfit(s->core, &d, why, sizeof(why));
        s_reply_job_error(s, from, id, st, why);
    } else {
        s->counters[S_CTR_CLIENT_REJECTED]++;
        s_reply_error(s, s->clients, from, st, sl_status_str(st));
    }
}

/* A message refused at receipt (bad, or of another version), counted with
 * the socket's refusals and answered with the reason. */
static void s_refused(sl_sched_t *s, void *sock, const sl_wire_ident_t *from, sl_status_t st,
                      const char *err)
{
    s->counters[sock == s->clients ? S_CTR_CLIENT_REJECTED : S_CTR_EXEC_REJECTED]++;
    if (st == SL_ERR_MSG_VERSION)
        s->counters[S_CTR_VERSION]++;
    SL_DEBUG("%s message rejected: %s", sock == s->clients ? "client" : "executor", err);
    s_reply_error(s, sock, from, st, err);
}

/*
 * Whether the message just read from sock may reach the core: with keys,
 * its connection's key must still be listed (a reload may have revoked it
 * since its handshake; ZeroMQ never authenticates a live connection again)
 * and in the socket's role. A refused message is dropped unanswered and
 * counted. *tenant (SL_AUTH_LABEL_MAX bytes) gets a client key's tenant.
 */
static bool s_admitted(sl_sched_t *s, void *sock, const sl_wire_ident_t *from, char *tenant)
{
    if (!s->zap)
        return true;
    const char *label = NULL;
    size_t len = 0;
    bool wrong_role = false;
    sl_auth_role_t role = sock == s->clients ? SL_AUTH_CLIENT : SL_AUTH_EXECUTOR;
    if (sl_auth_zap_check(s->zap, from->user, role, &label, &len, &wrong_role)) {
        if (tenant)
            snprintf(tenant, SL_AUTH_LABEL_MAX, "%.*s", (int)len, label);
        return true;
    }
    s->counters[wrong_role ? S_CTR_AUTH_WRONG_ROLE : S_CTR_AUTH_REVOKED]++;
    SL_DEBUG("message dropped: %s '%s' on the %s port", wrong_role ? "wrong role" : "revoked",
             from->user, role == SL_AUTH_CLIENT ? "client" : "executor");
    return false;
}

/* Count the handshake failures the monitors of the two sockets report. */
static void s_monitors_drain(sl_sched_t *s)
{
    for (int i = 0; i < 2; i++) {
        uint16_t ev;
        while (s->mon[i] && sl_wire_monitor_event(s->mon[i], &ev) == SL_OK) {
            if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                s->counters[S_CTR_AUTH_HS_PROTOCOL]++;
            else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                s->counters[S_CTR_AUTH_HS_AUTH]++;
            else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
                s->counters[S_CTR_AUTH_HS_OTHER]++;
        }
    }
}

static void s_on_client(sl_sched_t *s, sl_time_t now)
{
    char err[256];
    for (int i = 0; i < s->cfg.batch; i++) {
        /* A turn of long prompts (1 MiB batches) is bounded by time too, so
         * the executors' heartbeats waiting behind it are read within a
         * tick, not after hundreds of milliseconds of decoding. */
        if (i && sl_clock_now() - now >= SL_MS(s->cfg.tick_ms))
            return;
        sl_wire_ident_t from;
        sl_wire_msg_t *msg = NULL;
        char tenant[SL_AUTH_LABEL_MAX] = "";
        sl_status_t st =
            sl_wire_recv(s->clients, 1, ZMQ_DONTWAIT, &s->limits, &from, &msg, err, sizeof(err));
        if (st == SL_ERR_AGAIN || st == SL_ERR_LINK)
            return;
        if (!s_admitted(s, s->clients, &from, tenant)) {
            sl_wire_msg_free(&msg);
            continue;
        }
        if (st != SL_OK) {
            s_refused(s, s->clients, &from, st, err);
            continue;
        }
        sl_wire_kind_t kind = sl_wire_msg_kind(msg);
        switch (kind) {
        case SL_WIRE_SUBMITS: {
            /* Item k + 1 is read (and its id prefetched in the core) before
             * item k is submitted. */
            uint32_t n = sl_wire_msg_count(msg);
            sl_job_desc_t jobs[2];
            sl_status_t sts[2];
            char errs[2][256];
            sts[0] = sl_wire_submit_get(msg, 0, &s->limits, &jobs[0], errs[0], sizeof(errs[0]));
            for (uint32_t k = 0; k < n; k++) {
                int c = (int)(k & 1), nx = c ^ 1;
                if (k + 1 < n) {
                    sts[nx] = sl_wire_submit_get(msg, k + 1, &s->limits, &jobs[nx], errs[nx],
                                                 sizeof(errs[nx]));
                    if (sts[nx] == SL_OK)
                        sl_core_job_prefetch(s->core, jobs[nx].id);
                }
                if (sts[c] != SL_OK) {
                    s->counters[S_CTR_CLIENT_REJECTED]++;
                    SL_DEBUG("submit %u of a batch rejected: %s", k, errs[c]);
                    s_reply_error(s, s->clients, &from, sts[c], errs[c]);
                    continue;
                }
                if (s->zap) { /* the tenant is the key's, whatever the job says */
                    if (jobs[c].tenant && strcmp(jobs[c].tenant, tenant) != 0 && jobs[c].tenant[0])
                        s->counters[S_CTR_AUTH_TENANT_SET]++;
                    jobs[c].tenant = tenant;
                }
                s_on_submit(s, &from, msg, k, &jobs[c], now);
            }
            break;
        }
        case SL_WIRE_CANCEL: {
            sl_wire_cancel_t c;
            sl_wire_cancel_get(msg, &c);
            if (sl_core_job_cancel(s->core, c.job_id, now) != SL_OK)
                s_reply_error(s, s->clients, &from, SL_ERR_NOT_FOUND, "no such running job");
            break;
        }
        case SL_WIRE_STATUS_REQUEST:
            s_reply_status(s, &from);
            break;
        case SL_WIRE_HELLO:
        case SL_WIRE_HEARTBEAT:
        case SL_WIRE_COMPLETIONS:
        case SL_WIRE_TOKEN_CHUNK:
        case SL_WIRE_KV_EVENT:
        case SL_WIRE_GOODBYE:
        case SL_WIRE_PEER_REACH:
        case SL_WIRE_KV_RESERVED:
        case SL_WIRE_KV_SENT:
        case SL_WIRE_LOG_BATCH:
        case SL_WIRE_WEIGHTS_QUERY:
            s_wrong_port(s, s->clients, &from, kind);
            break;
        default:
            s->counters[S_CTR_CLIENT_REJECTED]++;
            snprintf(err, sizeof(err), "a client may not send '%s'", sl_wire_kind_name(kind));
            s_reply_error(s, s->clients, &from, SL_ERR_MSG_UNEXPECTED, err);
            break;
        }
        sl_wire_msg_free(&msg);
    }
}

/* ---- executor messages ---- */

static void s_welcome(sl_sched_t *s, const sl_wire_ident_t *to, uint32_t index)
{
    sl_wire_welcome_t w = {.heartbeat_ms = (uint32_t)s->cfg.core.heartbeat_ms,
                           .executor_index = index};
    (void)sl_wire_welcome_send(s->executors, to, &w, ZMQ_DONTWAIT);
}

/*
 * A hello from the connection `key` names an executor that another
 * connection holds: is it a restart (the holder is dead or its connection
 * gone, and falls silent) or a second live executor under the same name?
 * The first hello of a contender starts a contest and is answered
 * SL_ERR_AGAIN; the contender says hello again after its retry interval.
 * If the holder was heard from after the contest began, it is alive and the
 * contender is refused with SL_ERR_EXISTS, which it takes as final. If the
 * holder stays silent, liveness loses it after the usual timeout and the
 * contender's next hello joins. Deciding on the first hello by how recently
 * the holder was heard was rejected: a restart right after a crash (within
 * the loss timeout) would be refused. Returns true when the hello was
 * answered here (the caller stops), false when the name is free.
 */
static bool s_name_held(sl_sched_t *s, const sl_wire_ident_t *from, uint64_t key, const char *name,
                        sl_time_t now)
{
    sl_exec_t *holder = NULL;
    for (uint32_t i = 0; i < sl_core_exec_slots(s->core) && !holder; i++) {
        sl_exec_t *e = sl_core_exec_get(s->core, i);
        if (e && e->alive && e->user && strcmp(e->name, name) == 0)
            holder = e;
    }
    if (!holder)
        return false;
    s_exec_data_t *hd = holder->user;
    char text[SL_CORE_MAX_NAME + 96];
    if (hd->contested_at && hd->contender == key && holder->last_seen > hd->contested_at) {
        s->counters[S_CTR_NAME_IN_USE]++;
        hd->contested_at = 0;
        snprintf(text, sizeof(text), "name '%s' is in use by a live executor", name);
        SL_WARN("refused a second executor named '%s': the first is alive", name);
        s_reply_error(s, s->executors, from, SL_ERR_EXISTS, text);
        return true;
    }
    if (!hd->contested_at || hd->contender != key) {
        hd->contender = key;
        hd->contested_at = now;
        SL_INFO("a new connection claims the name '%s': waiting to see whether its holder is "
                "alive",
                name);
    }
    snprintf(text, sizeof(text), "name '%s' is held by another connection: say hello again", name);
    s_reply_error(s, s->executors, from, SL_ERR_AGAIN, text);
    return true;
}

/* Tell executor index to drop the jobs it holds that were not adopted
 * (finished, run elsewhere, or unknown to the journal): their results
 * would be stale. */
static void s_held_drop(sl_sched_t *s, uint32_t index, const sl_held_job_t *held, uint32_t n)
{
    sl_exec_t *e = sl_core_exec_get(s->core, index);
    s_exec_data_t *ed = e ? e->user : NULL;
    if (!ed)
        return;
    for (uint32_t i = 0; i < n; i++) {
        sl_job_t *job = sl_core_job_get(s->core, held[i].seq);
        if (job && job->exec == e && strcmp(job->id, held[i].id) == 0)
            continue;
        sl_wire_cancel_t c = {.job_id = held[i].id, .job_seq = held[i].seq};
        (void)sl_wire_cancel_send(s->executors, &ed->ident, &c, ZMQ_DONTWAIT);
        s->counters[S_CTR_HELD_DROPPED]++;
    }
}

static void s_on_hello(sl_sched_t *s, const sl_wire_ident_t *from, const sl_wire_msg_t *msg,
                       sl_time_t now)
{
    sl_wire_hello_t hello;
    sl_wire_hello_get(msg, &hello);
    sl_exec_info_t info = hello.info;
    const sl_exec_info_t *h = &hello.info;
    if (info.n_models > SL_EXEC_MAX_MODELS)
        info.n_models = SL_EXEC_MAX_MODELS;
    uint64_t key = s_ident_key(from);
    uintptr_t old = (uintptr_t)sl_map_get(&s->by_ident, key);
    if (old) {
        sl_exec_t *e = sl_core_exec_get(s->core, (uint32_t)(old - 1));
        s_exec_data_t *oed = e ? e->user : NULL;
        if (oed && s_ident_eq(&oed->ident, from) && strcmp(e->name, h->name) == 0) {
            /* The same connection again: a retry that crossed our Welcome,
             * or hellos queued while we were away. It keeps its jobs. */
            s_welcome(s, from, e->index);
            return;
        }
        sl_core_exec_lost(s->core, (uint32_t)(old - 1), "said hello again", now);
    } else if (s_name_held(s, from, key, h->name, now)) {
        return;
    }
    s_exec_data_t *ed = calloc(1, sizeof(*ed));
    uint32_t index = 0;
    if (!ed) {
        s_reply_error(s, s->executors, from, SL_ERR_NOMEM, "out of memory");
        return;
    }
    ed->ident = *from;
    ed->key = key;
    /* The data plane: its engine address and the key of its KV region, kept
     * for the transfers the scheduler will plan; both or neither. */
    if (hello.xport_address_len && hello.kv_rkey_len && info.kv_region_bytes) {
        ed->dp_addr = malloc(hello.xport_address_len + hello.kv_rkey_len);
        if (!ed->dp_addr) {
            free(ed);
            s_reply_error(s, s->executors, from, SL_ERR_NOMEM, "out of memory");
            return;
        }
        memcpy(ed->dp_addr, hello.xport_address, hello.xport_address_len);
        memcpy(ed->dp_addr + hello.xport_address_len, hello.kv_rkey, hello.kv_rkey_len);
        ed->dp_addr_len = hello.xport_address_len;
        ed->dp_rkey_len = hello.kv_rkey_len;
        ed->kv_region_bytes = info.kv_region_bytes;
    } else {
        info.kv_region_bytes = 0; /* no usable data plane */
    }
    /* Weights it serves to starting peers (answered to WeightsQuery). */
    if (ed->dp_addr && hello.weights.name && hello.weights.name[0]) {
        ed->weights_name = strdup(hello.weights.name);
        ed->weights_rkey = malloc(hello.weights.rkey_len);
        if (ed->weights_name && ed->weights_rkey) {
            memcpy(ed->weights_rkey, hello.weights.rkey, hello.weights.rkey_len);
            ed->weights_rkey_len = hello.weights.rkey_len;
            ed->weights_bytes = hello.weights.bytes;
            ed->weights_sum = hello.weights.checksum;
        } else { /* out of memory: it serves no peer */
            free(ed->weights_name);
            free(ed->weights_rkey);
            ed->weights_name = NULL;
            ed->weights_rkey = NULL;
        }
    }
    sl_wire_batch_init(&ed->out, SL_WIRE_DISPATCHES);
    /* Jobs it still runs from before a restart of ours: restored ones are
     * adopted by the join; it is told to drop the rest (s_held_drop). */
    sl_held_job_t *held = NULL;
    uint32_t n_held = sl_wire_hello_held(msg, NULL, 0);
    if (n_held && (held = calloc(n_held, sizeof(*held)))) {
        info.n_held = sl_wire_hello_held(msg, held, n_held);
        info.held = held;
    }
    sl_status_t st = sl_core_exec_join(s->core, &info, ed, now, &index);
    if (st == SL_OK && held)
        s_held_drop(s, index, held, info.n_held);
    free(held);
    if (st != SL_OK) {
        free(ed->dp_addr);
        free(ed->weights_name);
        free(ed->weights_rkey);
        free(ed);
        s->counters[S_CTR_EXEC_REJECTED]++;
        s_reply_error(s, s->executors, from, st, "executor refused");
        return;
    }
    if (sl_map_put(&s->by_ident, key, (void *)((uintptr_t)index + 1)) != SL_OK) {
        sl_core_exec_lost(s->core, index, "out of memory", now);
        return;
    }
    SL_INFO("executor %s joined (index %u, %u slots, backend %s, data plane %s)", h->name, index,
            h->slots, h->backend ? h->backend : "?", ed->dp_addr ? "on" : "off");
    s_welcome(s, from, index);
    s_peers_joined(s, index);
}

static void s_on_chunk(sl_sched_t *s, uint32_t index, const sl_wire_msg_t *msg)
{
    sl_wire_chunk_t c;
    sl_wire_chunk_get(msg, &c);
    /* The core forwards each offset once, in order (its delivered frontier):
     * stale, duplicate and out-of-order chunks stop here, counted. */
    uint32_t skip = 0, fwd = 0;
    if (sl_core_job_chunk(s->core, index, c.job_seq, c.offset, c.tokens, c.n_tokens, s->now, &skip,
                          &fwd) != SL_OK)
        return;
    sl_job_t *job = sl_core_job_get(s->core, c.job_seq);
    s_job_data_t *jd = job->user;
    c.job_id = job->id;
    c.offset += skip;
    c.tokens += skip;
    c.n_tokens = fwd;
    sl_wire_ident_t to;
    s_jd_client(jd, &to);
    if (sl_wire_chunk_send(s->clients, &to, &c, ZMQ_DONTWAIT) != SL_OK)
        s->counters[S_CTR_CLIENT_GONE]++;
    s->counters[S_CTR_TOKENS_FORWARDED]++;
}

/* Shipped logs and traces: to the collector, from any connection (an
 * executor ships on a socket of its own, which never says hello). */
static void s_on_log_batch(sl_sched_t *s, const sl_wire_msg_t *msg)
{
    sl_wire_log_batch_t b;
    sl_wire_log_batch_get(msg, &b);
    if (!s->collector || sl_collector_take(s->collector, &b) != SL_OK) {
        s->counters[S_CTR_COLLECT_IGNORED]++;
        return;
    }
    sl_collector_stats_t st;
    sl_collector_stats(s->collector, &st);
    s->counters[S_CTR_COLLECT_LINES] = st.lines;
    s->counters[S_CTR_COLLECT_BYTES] = st.bytes;
    s->counters[S_CTR_COLLECT_DROPPED] = st.dropped;
}

/* A starting executor asks who holds the weights it needs: the first live
 * data-plane executor that serves weights of that name (the loss of an
 * executor removes it from the table, so a holder named here was alive at
 * its last heartbeat). */
static void s_on_weights_query(sl_sched_t *s, const sl_wire_ident_t *from, const sl_wire_msg_t *msg)
{
    const char *name = sl_wire_weights_query_get(msg);
    sl_wire_weights_source_t w = {.found = false, .weights = {.name = ""}};
    uint32_t slots = sl_core_exec_slots(s->core);
    for (uint32_t i = 0; i < slots && !w.found; i++) {
        sl_exec_t *e = NULL;
        s_exec_data_t *ed = s_dp_exec(s, i, &e);
        if (!ed || !ed->weights_name || strcmp(ed->weights_name, name) != 0)
            continue;
        w = (sl_wire_weights_source_t){.found = true,
                                       .peer = e->name,
                                       .xport_address = ed->dp_addr,
                                       .xport_address_len = ed->dp_addr_len,
                                       .weights = {.name = ed->weights_name,
                                                   .bytes = ed->weights_bytes,
                                                   .checksum = ed->weights_sum,
                                                   .rkey = ed->weights_rkey,
                                                   .rkey_len = ed->weights_rkey_len}};
    }
    s->counters[w.found ? S_CTR_WEIGHTS_SOURCED : S_CTR_WEIGHTS_UNSOURCED]++;
    (void)sl_wire_weights_source_send(s->executors, from, &w, ZMQ_DONTWAIT);
}

static void s_on_executor(sl_sched_t *s, sl_time_t now)
{
    char err[256];
    for (int i = 0; i < s->cfg.batch; i++) {
        sl_wire_ident_t from;
        sl_wire_msg_t *msg = NULL;
        sl_status_t st =
            sl_wire_recv(s->executors, 1, ZMQ_DONTWAIT, &s->limits, &from, &msg, err, sizeof(err));
        if (st == SL_ERR_AGAIN || st == SL_ERR_LINK)
            return;
        if (!s_admitted(s, s->executors, &from, NULL)) {
            sl_wire_msg_free(&msg);
            continue;
        }
        if (st != SL_OK) {
            s_refused(s, s->executors, &from, st, err);
            continue;
        }
        sl_wire_kind_t kind = sl_wire_msg_kind(msg);
        if (kind == SL_WIRE_HELLO) {
            s_on_hello(s, &from, msg, now);
            sl_wire_msg_free(&msg);
            continue;
        }
        if (kind == SL_WIRE_LOG_BATCH) {
            s_on_log_batch(s, msg);
            sl_wire_msg_free(&msg);
            continue;
        }
        if (kind == SL_WIRE_WEIGHTS_QUERY) {
            s_on_weights_query(s, &from, msg);
            sl_wire_msg_free(&msg);
            continue;
        }
        uintptr_t idx1 = (uintptr_t)sl_map_get(&s->by_ident, s_ident_key(&from));
        if (!idx1 &&
            (kind == SL_WIRE_SUBMITS || kind == SL_WIRE_CANCEL || kind == SL_WIRE_STATUS_REQUEST)) {
            s_wrong_port(s, s->executors, &from, kind);
            sl_wire_msg_free(&msg);
            continue;
        }
        if (!idx1) {
            s->counters[S_CTR_UNKNOWN_EXECUTOR]++;
            s_reply_error(s, s->executors, &from, SL_ERR_NOT_FOUND,
                          "unknown executor: send hello first");
            sl_wire_msg_free(&msg);
            continue;
        }
        uint32_t index = (uint32_t)(idx1 - 1);
        switch (kind) {
        case SL_WIRE_HEARTBEAT: {
            sl_exec_load_t load;
            sl_wire_heartbeat_get(msg, NULL, &load);
            sl_core_exec_heartbeat(s->core, index, &load, now);
            break;
        }
        case SL_WIRE_COMPLETIONS:
            for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
                if (k + 2 < n)
                    sl_core_complete_prefetch(s->core, sl_wire_completion_seq(msg, k + 2));
                sl_wire_completion_t c;
                sl_wire_completion_get(msg, k, &c);
                sl_core_job_complete(s->core, index, c.job_seq, &c.report.res, &c.report, now);
            }
            break;
        case SL_WIRE_TOKEN_CHUNK:
            sl_core_exec_touch(s->core, index, now);
            s_on_chunk(s, index, msg);
            break;
        case SL_WIRE_KV_EVENT: {
            sl_wire_kv_event_t kv;
            sl_wire_kv_event_get(msg, &kv);
            sl_core_exec_kv_event(s->core, index, kv.stored, kv.n_stored, kv.evicted, kv.n_evicted,
                                  kv.reset, now);
            s->counters[S_CTR_KV_EVENTS]++;
            break;
        }
        case SL_WIRE_GOODBYE:
            if (sl_wire_goodbye_draining(msg))
                (void)sl_core_exec_drain(s->core, index, now);
            else
                sl_core_exec_lost(s->core, index, "said goodbye", now);
            break;
        case SL_WIRE_KV_RESERVED:
            sl_core_exec_touch(s->core, index, now);
            s_on_kv_reserved(s, index, msg, now);
            break;
        case SL_WIRE_KV_SENT:
            s_on_kv_sent(s, index, msg, now);
            break;
        case SL_WIRE_PEER_REACH:
            sl_core_exec_touch(s->core, index, now);
            s_on_peer_reach(s, index, msg);
            break;
        default:
            s->counters[S_CTR_EXEC_REJECTED]++;
            snprintf(err, sizeof(err), "an executor may not send '%s'", sl_wire_kind_name(kind));
            s_reply_error(s, s->executors, &from, SL_ERR_MSG_UNEXPECTED, err);
            break;
        }
        sl_wire_msg_free(&msg);
    }
}

/* ---- life cycle ---- */

static void *s_router(sl_sched_t *s, const char *endpoint, const char *domain, int which)
{
    void *sock = zmq_socket(s->zctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    /* ZeroMQ drops the connection of a peer that sends more than this; keep
     * it above our own limit so a merely oversized message is answered and
     * counted, while a huge one still cannot exhaust memory. */
    int64_t maxmsg = s->cfg.daemon.max_msg_bytes * 2 + 65536;
    if (!sock) {
        SL_ERROR("zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    zmq_setsockopt(sock, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    zmq_setsockopt(sock, ZMQ_SNDHWM, &s->cfg.hwm, sizeof(s->cfg.hwm));
    zmq_setsockopt(sock, ZMQ_RCVHWM, &s->cfg.hwm, sizeof(s->cfg.hwm));
    if (s->cfg.daemon.tos)
        (void)sl_wire_sock_mark(sock, s->cfg.daemon.tos); /* logged when refused */
    char mon_ep[64];
    snprintf(mon_ep, sizeof(mon_ep), "inproc://sl-sched-mon-%d", which);
    int events = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (s->keys && (sl_auth_sock_server(sock, s->keys, domain) != SL_OK ||
                    zmq_socket_monitor(sock, mon_ep, events) != 0 ||
                    !(s->mon[which] = zmq_socket(s->zctx, ZMQ_PAIR)) ||
                    zmq_setsockopt(s->mon[which], ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
                    zmq_connect(s->mon[which], mon_ep) != 0)) {
        SL_ERROR("cannot secure %s: %s", endpoint, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    if (zmq_bind(sock, endpoint) != 0) {
        SL_ERROR("cannot bind %s: %s", endpoint, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* ---- the learned state file (--state-file) ---- */

/* Read the learned state of the previous run and hand it to the core; a
 * missing file is a first start. Logs the cause on failure. */
static sl_status_t s_state_read(sl_sched_t *s)
{
    const char *path = s->cfg.state_file;
    char *buf = NULL;
    size_t len = 0;
    sl_status_t st = sl_file_read(path, &buf, &len);
    if (st == SL_ERR_NOT_FOUND)
        return SL_OK;
    if (st == SL_ERR_IO)
        SL_ERROR("cannot read state file %s: %m", path);
    if (st == SL_OK && sl_core_state_load(s->core, buf, len) != SL_OK) {
        SL_ERROR("state file %s is unusable; move it away to start afresh", path);
        st = SL_ERR_IO;
    }
    free(buf);
    if (st == SL_OK)
        SL_INFO("learned state restored from %s", path);
    return st;
}

/* Save the core's learned state: written beside, then renamed, so a crash
 * never leaves half a file. Failures are logged. */
static void s_state_write(sl_sched_t *s)
{
    const char *path = s->cfg.state_file;
    size_t len = 0;
    char *buf = NULL;
    sl_status_t st = sl_core_state_save(s->core, NULL, 0, &len);
    if (st == SL_ERR_OVERFLOW && (buf = malloc(len + 1)))
        st = sl_core_state_save(s->core, buf, len + 1, &len);
    if (st != SL_OK || !buf) {
        SL_ERROR("cannot save the learned state: %s", sl_status_str(buf ? st : SL_ERR_NOMEM));
        free(buf);
        return;
    }
    char tmp[sizeof(s->cfg.state_file) + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        SL_ERROR("cannot write state file %s: %m", tmp);
    } else {
        size_t n = fwrite(buf, 1, len, f);
        if (fclose(f) != 0 || n != len)
            SL_ERROR("writing state file %s failed: %m", tmp);
        else if (rename(tmp, path) != 0)
            SL_ERROR("cannot rename %s to %s: %m", tmp, path);
    }
    free(buf);
}

/* ---- the journal (--journal) ---- */

/* A live job from the journal: decoded again and handed to the core as a
 * restored job, with its tenant and client as journaled. */
static sl_status_t s_restore_live(void *arg, const sl_journal_rec_t *rec)
{
    sl_sched_t *s = arg;
    char err[256];
    sl_wire_job_t *wj = NULL;
    sl_job_desc_t d;
    if (rec->client_len > sizeof(((sl_wire_ident_t *)0)->data))
        return SL_ERR_INVALID;
    sl_status_t st =
        sl_wire_job_unpack(rec->job, rec->job_len, &s->limits, &wj, &d, err, sizeof(err));
    if (st != SL_OK) {
        SL_WARN("journal: job '%s' does not decode: %s", rec->id, err);
        return st;
    }
    d.tenant = rec->tenant;
    s_job_data_t *jd = calloc(1, sizeof(*jd) + rec->client_len);
    uint8_t *own = malloc(rec->job_len);
    if (!jd || !own) {
        free(jd);
        free(own);
        sl_wire_job_free(&wj);
        return SL_ERR_NOMEM;
    }
    memcpy(own, rec->job, rec->job_len);
    jd->own = own;
    jd->jbatch = rec->batch;
    jd->job = own;
    jd->job_len = rec->job_len;
    jd->client_len = jd->client_cap = (uint16_t)rec->client_len;
    memcpy(jd->client, rec->client, rec->client_len);
    sl_job_t *job = NULL;
    st = sl_core_job_restore(s->core, &d, jd, rec->seq, sl_clock_now(), &job);
    sl_wire_job_free(&wj);
    if (st != SL_OK) {
        s_jd_free(jd);
        return st == SL_ERR_EXISTS || st == SL_ERR_ID_COLLISION ? SL_ERR_INVALID : st;
    }
    return SL_OK;
}

/* A finished job from the journal: its result answers a resubmission. */
static sl_status_t s_restore_done(void *arg, const char *id, const void *result, size_t len)
{
    sl_sched_t *s = arg;
    sl_status_t st = sl_core_done_restore(s->core, id, result, len, sl_clock_now());
    if (st == SL_OK)
        s->results_restored++;
    return st;
}

/* Open the journal and restore what it holds into the core. */
static sl_status_t s_journal_open(sl_sched_t *s)
{
    sl_journal_cfg_t jc = {.path = s->cfg.journal,
                           .sync_full = strcmp(s->cfg.journal_sync, "normal") != 0,
                           .batch = s->cfg.journal_batch,
                           .retain_ms = s->cfg.journal_retain_ms,
                           .checkpoint_pages = s->cfg.journal_checkpoint_pages};
    if (strcmp(s->cfg.journal_sync, "full") != 0 && strcmp(s->cfg.journal_sync, "normal") != 0) {
        SL_ERROR("--journal-sync must be full or normal, not '%s'", s->cfg.journal_sync);
        return SL_ERR_INVALID;
    }
    sl_status_t st = sl_journal_open(&jc, &s->journal);
    if (st != SL_OK)
        return st;
    static const sl_journal_visit_t visit = {.live = s_restore_live, .done = s_restore_done};
    st = sl_journal_restore(s->journal, s_wall_ms(), &visit, s);
    if (st != SL_OK) {
        SL_ERROR("journal %s: restoring failed: %s", s->cfg.journal, sl_status_str(st));
        sl_journal_close(&s->journal);
        return st;
    }
    sl_core_seq_floor(s->core, sl_journal_seq_bound(s->journal));
    sl_journal_stats_t js;
    sl_journal_stats(s->journal, &js);
    SL_INFO("journal %s: %llu jobs restored (waiting %lld ms for their executors), %llu results "
            "kept, %llu records unusable",
            s->cfg.journal, (unsigned long long)sl_core_counter(s->core, SL_CTR_RESTORED),
            (long long)s->cfg.core.adopt_grace_ms, (unsigned long long)s->results_restored,
            (unsigned long long)js.unusable);
    return SL_OK;
}

sl_status_t sl_sched_create(const sl_sched_cfg_t *cfg, sl_sched_t **sched_p)
{
    sl_sched_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ERR_NOMEM;
    s->cfg = *cfg;
    s->limits = sl_proto_limits_default;
    s->limits.max_msg_bytes = (size_t)cfg->daemon.max_msg_bytes;
    s->limits.max_batch = (uint32_t)cfg->max_batch;
    sl_map_init(&s->by_ident);
    sl_map_init(&s->outs);
    s->held_tail = &s->held;
    /* An executor may be listed twice in a turn: flushed, then given
     * requeued jobs when another executor is lost during the flush. */
    s->cap_dirty_execs = 2 * (size_t)cfg->core.max_executors;
    s->dirty_execs = calloc(s->cap_dirty_execs, sizeof(*s->dirty_execs));
    s->receipt_cap = 4096;
    s->receipt = malloc(s->receipt_cap);
    sl_wire_batch_init(&s->single, SL_WIRE_RESULTS);
    /* SL_ERR_INVALID: a configured value is unusable (the program exits 2) */
    sl_status_t st = SL_ERR_NOMEM;
    if (!s->dirty_execs || !s->receipt)
        goto err_free;
    st = SL_ERR_INVALID;
    if (sl_daemon_cfg_apply(&cfg->daemon) != SL_OK)
        goto err_free;
    /* the table loads the knobs only: the code-set fields start empty */
    sl_core_cfg_t core_cfg = cfg->core;
    core_cfg.policy_ops = NULL;
    core_cfg.policy_arg = NULL;
    if (cfg->policy_path[0]) {
        char err[512];
        if ((st = sl_policy_plugin_open(cfg->policy_path, &s->plugin, err, sizeof(err))) != SL_OK) {
            SL_ERROR("%s", err);
            st = SL_ERR_INVALID;
            goto err_free;
        }
        core_cfg.policy_ops = &sl_policy_plugin_ops;
        core_cfg.policy_arg = s->plugin;
        SL_INFO("placement by plugin '%s' (%s); '%s' places a job it answers out of range",
                sl_policy_plugin_name(s->plugin), cfg->policy_path, cfg->core.policy);
    }
    if ((st = sl_core_create(&core_cfg, &s_io, s, &s->core)) != SL_OK)
        goto err_free;
    /* keys before the lease: a standby without them fails now, not at its takeover */
    st = sl_auth_keys_setup(cfg->daemon.key_dir, cfg->daemon.key_name, cfg->daemon.insecure,
                            "server", "sluice-scheduler", &s->keys);
    if (st != SL_OK)
        goto err_core;
    st = SL_ERR_IO;
    /* A standby waits here, before its state is read and its ports are
     * bound: clients and executors reach only the leader. */
    if (cfg->lease.etcd[0]) {
        char value[SL_CFG_STR_MAX * 2 + 2];
        snprintf(value, sizeof(value), "%s %s", cfg->client_endpoint, cfg->executor_endpoint);
        if (sl_lease_start(&cfg->lease, value, &s->lease) != SL_OK) {
            SL_ERROR("leader lease: cannot start with etcd at %s", cfg->lease.etcd);
            goto err_core;
        }
        sl_signal_stop_flag(&s->stop);
        SL_INFO("standby: waiting for the leader lease (%s at %s)", cfg->lease.key,
                cfg->lease.etcd);
        if (sl_lease_wait(s->lease, -1, &s->stop) != SL_OK) {
            sl_signal_forget(&s->stop);
            st = SL_ERR_CANCELED;
            goto err_core;
        }
        sl_signal_forget(&s->stop);
        SL_INFO("leading: the lease is ours");
    }
    if (cfg->state_file[0] && s_state_read(s) != SL_OK)
        goto err_core;
    if (cfg->collect_dir[0] && sl_collector_create(cfg->collect_dir, &s->collector) != SL_OK)
        goto err_core;
    if (cfg->journal[0] && s_journal_open(s) != SL_OK)
        goto err_core;
    s->zctx = zmq_ctx_new();
    if (!s->zctx)
        goto err_core;
    if (s->keys && sl_auth_zap_start(s->zctx, cfg->daemon.key_dir, &s->zap) != SL_OK) {
        st = SL_ERR_INVALID;
        goto err_ctx;
    }
    s->clients = s_router(s, cfg->client_endpoint, SL_AUTH_CLIENT_DOMAIN, 0);
    if (!s->clients)
        goto err_ctx;
    s->executors = s_router(s, cfg->executor_endpoint, SL_AUTH_EXECUTOR_DOMAIN, 1);
    if (!s->executors)
        goto err_clients;
    SL_INFO("scheduler up: clients on %s, executors on %s, policy %s, %s", cfg->client_endpoint,
            cfg->executor_endpoint, sl_core_policy_name(s->core),
            s->keys ? "CURVE with ZAP" : "plain text (--insecure)");
    *sched_p = s;
    return SL_OK;

err_clients:
    zmq_close(s->clients);
err_ctx:
    for (int i = 0; i < 2; i++)
        if (s->mon[i])
            zmq_close(s->mon[i]);
    zmq_ctx_shutdown(s->zctx);
    sl_auth_zap_stop(&s->zap);
    zmq_ctx_term(s->zctx);
err_core:
    sl_lease_stop(&s->lease);
    sl_auth_keys_free(&s->keys);
    sl_collector_destroy(&s->collector);
    sl_core_destroy(&s->core);
    sl_journal_close(&s->journal);
err_free:
    sl_policy_plugin_close(&s->plugin);
    free(s->receipt);
    free(s->dirty_execs);
    sl_map_fini(&s->outs);
    sl_map_fini(&s->by_ident);
    free(s);
    return st;
}

void sl_sched_stop(sl_sched_t *sched)
{
    sched->stop = 1;
}

void sl_sched_handle_signals(sl_sched_t *sched)
{
    sl_signal_stop_flag(&sched->stop);
    sl_signal_reload_flag(&sched->reload);
}

sl_status_t sl_sched_run(sl_sched_t *s)
{
    sl_status_t st = SL_OK;
    zmq_pollitem_t items[3] = {{s->clients, 0, ZMQ_POLLIN, 0},
                               {s->executors, 0, ZMQ_POLLIN, 0},
                               {NULL, s->journal ? sl_journal_fd(s->journal) : -1, ZMQ_POLLIN, 0}};
    int n_items = s->journal ? 3 : 2;
    sl_time_t tick = SL_MS(s->cfg.tick_ms);
    sl_time_t next_tick = sl_clock_now() + tick;
    sl_time_t drain_until = 0;

    for (;;) {
        sl_time_t now = sl_clock_now();
        if (s->stop && !drain_until) {
            SL_INFO("draining: %u jobs pending (a second SIGTERM stops at once)",
                    sl_core_jobs_pending(s->core));
            sl_core_drain(s->core);
            drain_until = now + SL_MS(s->cfg.drain_timeout_ms);
        }
        if (s->stop >= 2) {
            SL_WARN("second stop signal: stopping now with %u jobs pending",
                    sl_core_jobs_pending(s->core));
            break;
        }
        if (drain_until && (sl_core_jobs_pending(s->core) == 0 || now >= drain_until))
            break;
        long timeout_ms = (long)((next_tick - now + SL_NS_PER_MS - 1) / SL_NS_PER_MS);
        if (timeout_ms < 0)
            timeout_ms = 0;
        int rc = zmq_poll(items, n_items, timeout_ms);
        if (rc < 0 && errno != EINTR) {
            SL_ERROR("zmq_poll: %s", zmq_strerror(errno));
            return SL_ERR_IO;
        }
        now = sl_clock_now();
        s->now = now;
        if (s->reload) {
            s->reload = 0;
            if (s->zap)
                (void)sl_auth_zap_reload(s->zap); /* logged; the lists in force stay on error */
            else
                SL_INFO("SIGHUP: nothing to reload without --key-dir");
        }
        s_monitors_drain(s);
        /* Fencing: nothing is read, decided or sent unless the lease is
         * sure to hold (sl_lease.c); lost for good, this scheduler exits
         * and is started again as a standby. */
        if (s->lease && !sl_lease_held(s->lease)) {
            if (sl_lease_state(s->lease) == SL_LEASE_LOST) {
                SL_ERROR("the leader lease is lost: stopping so that the new leader serves alone");
                st = SL_ERR_SHUTDOWN;
                break;
            }
            s->counters[S_CTR_LEASE_FENCED]++;
            sl_clock_sleep(tick);
            continue;
        }
        if (rc > 0) {
            if (n_items > 2 && (items[2].revents & ZMQ_POLLIN))
                s_journal_ready(s);
            if (items[1].revents & ZMQ_POLLIN)
                s_on_executor(s, now);
            if (items[0].revents & ZMQ_POLLIN)
                s_on_client(s, now);
        }
        if (now >= next_tick) {
            sl_core_tick(s->core, now);
            next_tick = now + tick;
            if (s->journal && now >= s->journal_sweep_at) {
                (void)sl_journal_forget(s->journal, s_wall_ms());
                s->journal_sweep_at = now + SL_MS(s->cfg.journal_sweep_ms);
            }
        }
        if (!s->lease || sl_lease_held(s->lease))
            s_flush(s); /* otherwise next turn, if the lease still holds */
    }
    SL_INFO("scheduler stopped: %llu jobs completed, %u left",
            (unsigned long long)sl_core_counter(s->core, SL_CTR_COMPLETED),
            sl_core_jobs_pending(s->core));
    return st;
}

void sl_sched_destroy(sl_sched_t **sched_p)
{
    sl_sched_t *s = *sched_p;
    if (!s)
        return;
    sl_signal_forget(&s->stop);
    sl_signal_forget(&s->reload);
    /* a scheduler that lost the lease leaves the state and the last
     * sends to the new leader */
    bool leading = !s->lease || sl_lease_held(s->lease);
    if (leading && s->cfg.state_file[0])
        s_state_write(s);
    if (leading) {
        s_journal_commit(s);
        s_flush(s);
        if (s->journal) /* the last answers, now that their batches are durable */
            s_held_release(s, sl_journal_durable(s->journal));
    }
    while (s->held) { /* answers never sent: not durable, or no longer leading */
        s_client_out_t *o = s->held;
        s->held = o->next;
        sl_wire_batch_fini(&o->batch);
        free(o);
    }
    s->closing = true;
    sl_core_destroy(&s->core);
    sl_policy_plugin_close(&s->plugin);
    sl_journal_close(&s->journal);
    sl_collector_destroy(&s->collector);
    while (s->free_outs) {
        s_client_out_t *o = s->free_outs;
        s->free_outs = o->next;
        sl_wire_batch_fini(&o->batch);
        free(o);
    }
    free(s->dirty_outs);
    free(s->dirty_execs);
    free(s->receipt);
    sl_wire_batch_fini(&s->single);
    zmq_close(s->executors);
    zmq_close(s->clients);
    for (int i = 0; i < 2; i++)
        if (s->mon[i])
            zmq_close(s->mon[i]);
    zmq_ctx_shutdown(s->zctx); /* the ZAP thread's socket sees ETERM */
    sl_auth_zap_stop(&s->zap);
    zmq_ctx_term(s->zctx);
    sl_lease_stop(&s->lease); /* revoked: a standby leads at once */
    sl_auth_keys_free(&s->keys);
    sl_map_fini(&s->outs);
    sl_map_fini(&s->by_ident);
    free(s);
    *sched_p = NULL;
}
