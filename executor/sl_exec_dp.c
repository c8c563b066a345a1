/*
 * The executor's data plane (see sl_exec_dp.h).
 *
 * Region. A backend that keeps its KV in one pool of equal blocks (ref)
 * has that pool registered once, so blocks move straight from one pool to
 * the other by block id; one that keeps none (sim, null) gets a stand-in
 * region sized like the KV it models, carved into blocks of block_tokens x
 * kv_bytes_per_token, so that real bytes of the modelled size move in tests
 * and benches. The stand-in is allocated by UCX (sl_xport_mem_alloc), so a
 * peer on the same host maps it. Stand-in blocks are handed out from a
 * bitmap per job.
 *
 * Moves. Every move of a job's KV is the same exchange, driven by the
 * scheduler: the receiver gets an AWAIT plan and the job, reserves its
 * blocks (the backend's block table from its first uncached block) and
 * reports them (KvReserved); the sender gets a PUSH plan (a split job: it
 * computes the prompt first) or a MIGRATE plan (a job running here: it is
 * paused between steps) with those block ids, writes its blocks into them
 * in one transfer of the critical class, and the transport sends the
 * notification only after the data has landed (data, flush, notification).
 * The notification names the job, the reservation's nonce and range, and
 * carries the tokens produced so far and how many were streamed, so the
 * receiver goes on decoding (and streaming) from there. The receiver
 * checks the notification against its own reservation (a valid memory key
 * is not enough: a write for blocks it did not reserve for that job, with
 * that nonce, is refused and counted); only then does the job run. The
 * sender reports the outcome (KvSent) and forgets the job; on failure a
 * split's prefill ends (the scheduler requeues the job) and a move's
 * sequence resumes here.
 *
 * Faults. A push not completed within xfer_timeout_ms drops the peer's
 * connection, which fails every transfer to it (the peer is reported
 * unreachable until the scheduler hands it out again). A canceled
 * reservation keeps its blocks for release_grace_ms, since a write the
 * sender posted before its own cancel may still land. A job canceled while
 * its push is in flight ends when the push does. Plans whose job never
 * comes are forgotten after S_PLAN_TTL.
 */
#include "executor/sl_exec_dp.h"
#include "common/sl_cfg.h"
#include "common/sl_log.h"
#include "common/sl_map.h"

#include <sluice/xport.h>

#include "transport/sl_xport_cudrv.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Bytes of the scratch region; a peer check reads S_CHECK_BYTES into it. */
#define S_SCRATCH 4096
#define S_CHECK_BYTES 64
/* A plan whose job has not come this long after it is forgotten. */
#define S_PLAN_TTL SL_MS(60000)

/* The notification of a push: this header, then n_out token ids. Host
 * byte order (the magic tells a peer of the other order). */
#define S_NOTIF_MAGIC 0x564b4c53u /* "SLKV" */
#define S_NOTIF_VERSION 1u
typedef struct s_notif {
    uint32_t magic;       /* S_NOTIF_MAGIC */
    uint32_t version;     /* S_NOTIF_VERSION */
    uint64_t job_seq;     /* the job */
    uint64_t nonce;       /* the reservation's */
    uint32_t first_block; /* the reservation's first block */
    uint32_t n_blocks;    /* blocks written from it */
    uint32_t n_out;       /* tokens produced so far (following) */
    uint32_t streamed;    /* of which already streamed to the client */
} s_notif_t;

/* A peer the scheduler handed out, and the check of the path to it. */
typedef struct s_peer {
    struct s_peer *next;   /* next peer */
    sl_exec_dp_t *dp;      /* the data plane */
    uint32_t index;        /* the scheduler's index of it */
    sl_xport_peer_t *conn; /* connection (NULL once dropped) */
    uint32_t remote;       /* its KV region's id in our transfers */
    sl_time_t posted_at;   /* when the check was posted */
    bool pending;          /* the check awaits its callback */
    bool reached;          /* the check completed */
    uint64_t region_bytes; /* bytes of its KV region */
} s_peer_t;

/* A plan received before its job (AWAIT, PUSH). */
typedef struct s_plan {
    sl_kv_plan_t plan;  /* blocks point into the allocation, after it */
    sl_time_t arrived;  /* when */
    struct s_plan *old; /* next older plan (for expiry) */
} s_plan_t;

/* What the data plane holds for one job (sl_engine_job_t.user). */
typedef struct s_kvjob {
    sl_exec_dp_t *dp;         /* the data plane */
    sl_engine_job_t *job;     /* the job (NULL once it ended with a push in flight) */
    sl_kv_mode_t mode;        /* what it is doing; SL_KV_LOCAL once done */
    uint32_t peer;            /* the other executor */
    uint64_t nonce;           /* the reservation's */
    bool reserved;            /* AWAIT: blocks reserved, KV awaited */
    uint32_t first_block;     /* AWAIT: first block the peer writes */
    uint32_t n_blocks;        /* AWAIT: blocks reserved from it */
    sl_time_t retire_at;      /* a canceled reservation ends at this time (0: not canceled) */
    uint32_t *dst;            /* PUSH, MIGRATE: the receiver's block ids (owned) */
    uint32_t dst_first;       /* ... from this block of the job */
    uint32_t dst_n;           /* entries of dst */
    uint64_t dst_block_bytes; /* bytes of one of its blocks */
    bool pushing;             /* a push is in flight */
    bool cancel_after;        /* canceled while pushing: end when the push does */
    sl_time_t posted_at;      /* when the push was posted */
    sl_time_t paused_at;      /* MIGRATE: when the sequence was paused */
    uint64_t bytes;           /* bytes of the push */
    uint32_t blocks;          /* blocks of the push */
    uint32_t *standin;        /* stand-in blocks held (owned; NULL with a pool) */
    uint32_t n_standin;       /* entries of standin */
    bool active;              /* listed in dp->active */
    struct s_kvjob *next;     /* next in dp->active (pushing or retiring) */
} s_kvjob_t;

struct sl_exec_dp {
    sl_exec_dp_cfg_t cfg;        /* configuration */
    sl_exec_dp_io_t io;          /* calls back into the executor */
    sl_engine_t *engine;         /* the engine whose KV moves */
    void *sock;                  /* to the scheduler */
    sl_xport_t *xport;           /* transport engine */
    void *region;                /* the registered KV region */
    size_t region_bytes;         /* its bytes */
    bool region_mapped;          /* a stand-in UCX allocated (else the backend's pool) */
    bool staged;                 /* device memory moved through host staging */
    size_t block_bytes;          /* bytes of one block */
    uint32_t block_tokens;       /* tokens per block */
    uint64_t *bitmap;            /* stand-in blocks in use (NULL with a pool) */
    uint32_t n_standin;          /* stand-in blocks in the region */
    sl_xport_mem_t *kv_mem;      /* the region's registration */
    void *kv_rkey;               /* its packed key (malloc'd by the transport) */
    size_t kv_rkey_len;          /* bytes of kv_rkey */
    const void *addr;            /* the engine's address (owned by the engine) */
    size_t addr_len;             /* bytes of addr */
    void *scratch;               /* landing place of peer checks */
    sl_xport_mem_t *scratch_mem; /* its registration */
    s_peer_t *peers;             /* peers handed out */
    sl_map_t plans;              /* job_seq + 1 -> s_plan_t awaiting its job */
    s_plan_t *newest_plan;       /* plans, newest first (expiry walks them) */
    s_kvjob_t *active;           /* jobs pushing or retiring */
    uint32_t fetches;            /* prefix fetches in flight (their callbacks free them) */
    sl_exec_dp_stats_t stats;    /* counters */
    bool (*other)(void *arg, const void *data, size_t len); /* pipeline stages' notifications */
    void *other_arg;                                        /* passed to other */
};

static void s_sent(sl_status_t st, const char *what)
{
    if (st != SL_OK)
        SL_DEBUG("send %s failed: %s", what, sl_status_str(st));
}

/* ---- peers ---- */

static void s_peer_report(sl_exec_dp_t *dp, uint32_t index, bool ok, uint32_t rtt_us,
                          const char *error)
{
    sl_wire_peer_reach_t r = {
        .peer_index = index, .reachable = ok, .rtt_us = rtt_us, .error = ok ? "" : error};
    if (ok)
        SL_INFO("data plane: peer %u reached (%u us)", index, rtt_us);
    else
        SL_WARN("data plane: peer %u unreachable: %s", index, error);
    if (dp->sock)
        s_sent(sl_wire_peer_reach_send(dp->sock, &r, ZMQ_DONTWAIT), "peer_reach");
}

static s_peer_t *s_peer_find(sl_exec_dp_t *dp, uint32_t index)
{
    for (s_peer_t *p = dp->peers; p; p = p->next)
        if (p->index == index)
            return p;
    return NULL;
}

/* Close the connection to p (its transfers fail, their callbacks run now);
 * a pending check is dropped unreported. */
static void s_peer_close(sl_exec_dp_t *dp, s_peer_t *p)
{
    p->pending = false;
    p->reached = false;
    sl_xport_disconnect(dp->xport, &p->conn);
}

/* The check's completion (from sl_xport_progress or a disconnect). */
static void s_peer_done(void *arg, sl_status_t st)
{
    s_peer_t *p = arg;
    if (!p->pending)
        return;
    p->pending = false;
    sl_time_t took = sl_clock_now() - p->posted_at;
    p->reached = st == SL_OK;
    if (st == SL_OK)
        s_peer_report(p->dp, p->index, true, (uint32_t)(took / 1000), NULL);
    else
        s_peer_report(p->dp, p->index, false, 0, sl_status_str(st));
}

/* Connect to peer w and post the check; a failure is reported at once. */
static void s_peer_check(sl_exec_dp_t *dp, s_peer_t *p, const sl_wire_peer_t *w, sl_time_t now)
{
    const char *what = "connect";
    sl_status_t st = sl_xport_connect(dp->xport, w->xport_address, w->xport_address_len, &p->conn);
    if (st == SL_OK) {
        what = "import its key";
        st = sl_xport_rkey_import(dp->xport, p->conn, w->kv_rkey, w->kv_rkey_len, &p->remote);
    }
    if (st == SL_OK) {
        what = "post a read";
        sl_xport_block_t b = {.local_off = 0,
                              .remote_off = 0,
                              .len = w->kv_region_bytes < S_CHECK_BYTES ? w->kv_region_bytes
                                                                        : S_CHECK_BYTES};
        sl_xport_xfer_t xf = {.op = SL_XPORT_GET,
                              .cls = SL_XPORT_CRITICAL,
                              .local = dp->scratch_mem,
                              .remote = p->remote,
                              .blocks = &b,
                              .nblocks = 1,
                              .cb = s_peer_done,
                              .cb_arg = p};
        p->posted_at = now;
        p->pending = true;
        st = sl_xport_post(dp->xport, p->conn, &xf);
        if (st != SL_OK)
            p->pending = false;
    }
    if (st != SL_OK) {
        char why[96];
        snprintf(why, sizeof(why), "cannot %s: %s", what, sl_status_str(st));
        s_peer_close(dp, p);
        s_peer_report(dp, w->executor_index, false, 0, why);
    }
}

void sl_exec_dp_on_peers(sl_exec_dp_t *dp, const sl_wire_msg_t *msg, sl_time_t now)
{
    for (uint32_t k = 0, n = sl_wire_msg_count(msg); k < n; k++) {
        sl_wire_peer_t w;
        sl_wire_peer_get(msg, k, &w);
        s_peer_t **pp = &dp->peers;
        while (*pp && (*pp)->index != w.executor_index)
            pp = &(*pp)->next;
        s_peer_t *p = *pp;
        if (p) { /* gone, or a new incarnation under the same index */
            s_peer_close(dp, p);
            *pp = p->next;
            free(p);
            SL_INFO("data plane: peer %u (%s) %s", w.executor_index, w.name,
                    w.gone ? "gone" : "replaced");
        }
        if (w.gone)
            continue;
        if (!(p = calloc(1, sizeof(*p)))) {
            s_peer_report(dp, w.executor_index, false, 0, "out of memory");
            continue;
        }
        p->dp = dp;
        p->index = w.executor_index;
        p->region_bytes = w.kv_region_bytes;
        p->next = dp->peers;
        dp->peers = p;
        s_peer_check(dp, p, &w, now);
    }
}

/* ---- stand-in blocks ---- */

static void s_standin_free(sl_exec_dp_t *dp, s_kvjob_t *kv)
{
    for (uint32_t i = 0; i < kv->n_standin; i++)
        dp->bitmap[kv->standin[i] / 64] &= ~(1ull << (kv->standin[i] % 64));
    free(kv->standin);
    kv->standin = NULL;
    kv->n_standin = 0;
}

/* Give kv n stand-in blocks (anywhere in the region). */
static sl_status_t s_standin_alloc(sl_exec_dp_t *dp, s_kvjob_t *kv, uint32_t n)
{
    s_standin_free(dp, kv);
    if (n > dp->n_standin)
        return SL_ERR_AGAIN;
    uint32_t *ids = malloc((size_t)(n ? n : 1) * sizeof(*ids));
    if (!ids)
        return SL_ERR_NOMEM;
    uint32_t got = 0;
    for (uint32_t b = 0; b < dp->n_standin && got < n; b++)
        if (!(dp->bitmap[b / 64] >> (b % 64) & 1))
            ids[got++] = b;
    if (got < n) {
        free(ids);
        return SL_ERR_AGAIN;
    }
    for (uint32_t i = 0; i < n; i++)
        dp->bitmap[ids[i] / 64] |= 1ull << (ids[i] % 64);
    kv->standin = ids;
    kv->n_standin = n;
    return SL_OK;
}

/* ---- jobs ---- */

static void s_active_add(sl_exec_dp_t *dp, s_kvjob_t *kv)
{
    if (kv->active)
        return;
    kv->active = true;
    kv->next = dp->active;
    dp->active = kv;
}

static void s_active_del(sl_exec_dp_t *dp, s_kvjob_t *kv)
{
    if (!kv->active)
        return;
    for (s_kvjob_t **pp = &dp->active; *pp; pp = &(*pp)->next)
        if (*pp == kv) {
            *pp = kv->next;
            break;
        }
    kv->active = false;
}

static void s_kvjob_free(sl_exec_dp_t *dp, s_kvjob_t *kv)
{
    s_active_del(dp, kv);
    if (dp->bitmap)
        s_standin_free(dp, kv);
    free(kv->dst);
    free(kv);
}

void sl_exec_dp_job_end(sl_exec_dp_t *dp, sl_engine_job_t *job)
{
    s_kvjob_t *kv = job->user;
    if (!kv)
        return;
    job->user = NULL;
    if (kv->reserved) {
        kv->reserved = false;
        dp->stats.reservations--;
    }
    if (kv->pushing) {
        kv->job = NULL; /* the push's callback frees it */
        return;
    }
    s_kvjob_free(dp, kv);
}

/* The data plane's record of job, created on first use (NULL: no memory). */
static s_kvjob_t *s_kvjob(sl_exec_dp_t *dp, sl_engine_job_t *job)
{
    s_kvjob_t *kv = job->user;
    if (!kv && (kv = calloc(1, sizeof(*kv)))) {
        kv->dp = dp;
        kv->job = job;
        job->user = kv;
    }
    return kv;
}

/* End job here: silently (the scheduler does not expect its report) or as usual. */
static void s_end(sl_exec_dp_t *dp, sl_engine_job_t *job, sl_engine_done_t how, const char *why,
                  bool silent, sl_time_t now)
{
    if (silent && dp->io.silence)
        dp->io.silence(dp->io.arg, job);
    sl_engine_end(dp->engine, job, how, why, now);
}

static void s_kv_sent(sl_exec_dp_t *dp, const sl_kv_sent_t *k)
{
    if (dp->sock)
        s_sent(sl_wire_kv_sent_send(dp->sock, k, ZMQ_DONTWAIT), "kv_sent");
}

/* A push could not be made or failed: report it; a split's prefill ends
 * (the scheduler requeues the job), a moved sequence goes on here. */
static void s_push_fail(sl_exec_dp_t *dp, s_kvjob_t *kv, const char *why, sl_time_t now)
{
    sl_engine_job_t *job = kv->job;
    sl_kv_mode_t mode = kv->mode;
    dp->stats.pushes_failed++;
    SL_WARN("data plane: KV of job %llu not moved to executor %u: %s",
            (unsigned long long)job->seq.id, kv->peer, why);
    sl_kv_sent_t k = {.job_seq = job->seq.id, .ok = false, .error = why};
    s_kv_sent(dp, &k);
    kv->mode = SL_KV_LOCAL;
    free(kv->dst);
    kv->dst = NULL;
    if (kv->cancel_after)
        s_end(dp, job, SL_ENGINE_CANCELED, "canceled", false, now);
    else if (mode == SL_KV_MIGRATE && job->held)
        sl_engine_resume(dp->engine, job, now);
    else if (mode == SL_KV_PUSH)
        s_end(dp, job, SL_ENGINE_FAILED, why, true, now);
}

static void s_push_done(void *arg, sl_status_t st)
{
    s_kvjob_t *kv = arg;
    sl_exec_dp_t *dp = kv->dp;
    kv->pushing = false;
    s_active_del(dp, kv);
    if (!kv->job) { /* it ended meanwhile (the executor is stopping) */
        s_kvjob_free(dp, kv);
        return;
    }
    sl_time_t now = sl_clock_now();
    sl_engine_job_t *job = kv->job;
    if (st != SL_OK) {
        s_push_fail(dp, kv, sl_status_str(st), now);
        return;
    }
    if (kv->cancel_after) {
        s_push_fail(dp, kv, "canceled while its KV moved", now);
        return;
    }
    dp->stats.pushes_ok++;
    dp->stats.bytes_sent += kv->bytes;
    dp->stats.blocks_sent += kv->blocks;
    sl_kv_sent_t k = {
        .job_seq = job->seq.id,
        .ok = true,
        .bytes = kv->bytes,
        .blocks = kv->blocks,
        .xfer_us = (uint32_t)((now - kv->posted_at) / 1000),
        .output_tokens = job->seq.n_out,
    };
    if (kv->mode == SL_KV_PUSH && job->first_token > job->arrived)
        k.prefill_us = (uint32_t)((job->first_token - job->arrived) / 1000);
    if (kv->mode == SL_KV_MIGRATE) {
        k.pause_us = (uint32_t)((now - kv->paused_at) / 1000);
        dp->stats.migrations_out++;
        dp->stats.pause_us_total += k.pause_us;
        SL_INFO("data plane: job %llu moved to executor %u after %u tokens (paused %u us, %llu "
                "bytes)",
                (unsigned long long)job->seq.id, kv->peer, job->seq.n_out, k.pause_us,
                (unsigned long long)kv->bytes);
    }
    s_kv_sent(dp, &k);
    s_end(dp, job, SL_ENGINE_MOVED, NULL, true, now); /* frees kv */
}

/* Tokens one notification carries at most on this region. */
static uint32_t s_notif_tokens(const sl_exec_dp_t *dp)
{
    size_t max = dp->staged ? SL_XPORT_STAGE_NOTIF_MAX : SL_XPORT_NOTIF_MAX;
    return (uint32_t)((max - sizeof(s_notif_t)) / sizeof(uint32_t));
}

/* Write job's KV (positions 0 .. prompt + n_out - 2) into the receiver's
 * reservation, with the notification after it. */
static void s_push(sl_exec_dp_t *dp, s_kvjob_t *kv, sl_time_t now)
{
    sl_engine_job_t *job = kv->job;
    const sl_seq_t *seq = &job->seq;
    uint32_t bt = dp->block_tokens;
    uint64_t positions = (uint64_t)seq->prompt_len + (seq->n_out ? seq->n_out - 1 : 0);
    uint32_t total = (uint32_t)((positions + bt - 1) / bt);
    char why[160];
    s_peer_t *peer = s_peer_find(dp, kv->peer);
    if (seq->n_out == 0 || total <= kv->dst_first) {
        s_push_fail(dp, kv, "nothing computed to move", now);
        return;
    }
    uint32_t nb = total - kv->dst_first;
    if (nb > kv->dst_n) {
        snprintf(why, sizeof(why), "the reservation holds %u blocks, %u needed", kv->dst_n, nb);
        s_push_fail(dp, kv, why, now);
        return;
    }
    if (kv->dst_block_bytes != dp->block_bytes) {
        snprintf(why, sizeof(why), "KV block layouts differ (%llu bytes there, %zu here)",
                 (unsigned long long)kv->dst_block_bytes, dp->block_bytes);
        s_push_fail(dp, kv, why, now);
        return;
    }
    if (seq->n_out > s_notif_tokens(dp)) {
        snprintf(why, sizeof(why), "%u tokens produced: more than a notification carries (%u)",
                 seq->n_out, s_notif_tokens(dp));
        s_push_fail(dp, kv, why, now);
        return;
    }
    if (!peer || !peer->conn || !peer->reached) {
        s_push_fail(dp, kv, "the receiver is not reached over the data plane", now);
        return;
    }
    const uint32_t *src;
    if (dp->bitmap) {
        if (s_standin_alloc(dp, kv, nb) != SL_OK) {
            s_push_fail(dp, kv, "no room in the stand-in KV region", now);
            return;
        }
        src = kv->standin;
    } else {
        uint32_t tn = 0;
        const uint32_t *table = sl_engine_kv_table(dp->engine, job, &tn);
        if (!table || tn < total) {
            s_push_fail(dp, kv, "the job's block table is shorter than its KV", now);
            return;
        }
        src = table + kv->dst_first;
    }
    sl_xport_block_t *blocks = malloc((size_t)nb * sizeof(*blocks));
    size_t nlen = sizeof(s_notif_t) + (size_t)seq->n_out * sizeof(uint32_t);
    uint8_t *notif = malloc(nlen);
    if (!blocks || !notif) {
        free(blocks);
        free(notif);
        s_push_fail(dp, kv, "out of memory", now);
        return;
    }
    for (uint32_t i = 0; i < nb; i++)
        blocks[i] = (sl_xport_block_t){.local_off = (uint64_t)src[i] * dp->block_bytes,
                                       .remote_off = (uint64_t)kv->dst[i] * dp->block_bytes,
                                       .len = dp->block_bytes};
    s_notif_t h = {.magic = S_NOTIF_MAGIC,
                   .version = S_NOTIF_VERSION,
                   .job_seq = seq->id,
                   .nonce = kv->nonce,
                   .first_block = kv->dst_first,
                   .n_blocks = nb,
                   .n_out = seq->n_out,
                   .streamed = kv->mode == SL_KV_MIGRATE ? job->streamed : 0};
    memcpy(notif, &h, sizeof(h));
    memcpy(notif + sizeof(h), seq->out, (size_t)seq->n_out * sizeof(uint32_t));
    sl_xport_xfer_t xf = {.op = SL_XPORT_PUT,
                          .cls = SL_XPORT_CRITICAL,
                          .local = dp->kv_mem,
                          .remote = peer->remote,
                          .blocks = blocks,
                          .nblocks = nb,
                          .notif = notif,
                          .notif_len = nlen,
                          .cb = s_push_done,
                          .cb_arg = kv};
    kv->pushing = true;
    kv->posted_at = now;
    kv->bytes = (uint64_t)nb * dp->block_bytes;
    kv->blocks = nb;
    s_active_add(dp, kv);
    sl_status_t st = sl_xport_post(dp->xport, peer->conn, &xf);
    free(blocks);
    free(notif);
    if (st != SL_OK) {
        kv->pushing = false;
        s_active_del(dp, kv);
        snprintf(why, sizeof(why), "cannot post the transfer: %s", sl_status_str(st));
        s_push_fail(dp, kv, why, now);
    }
}

/* Reserve the blocks a peer will write for an AWAIT job and report them. */
static void s_reserve(sl_exec_dp_t *dp, s_kvjob_t *kv, sl_time_t now)
{
    sl_engine_job_t *job = kv->job;
    const sl_seq_t *seq = &job->seq;
    uint32_t bt = dp->block_tokens;
    uint32_t first = seq->cached_tokens / bt;
    const uint32_t *blocks = NULL;
    uint32_t n = 0;
    const char *why = NULL;
    if (dp->bitmap) {
        uint64_t cap = (uint64_t)seq->prompt_len + seq->max_new_tokens;
        uint32_t total = (uint32_t)((cap + bt - 1) / bt);
        n = total > first ? total - first : 0;
        if (n == 0 || s_standin_alloc(dp, kv, n) != SL_OK)
            why = "no room in the stand-in KV region";
        blocks = kv->standin;
    } else {
        uint32_t tn = 0;
        const uint32_t *table = sl_engine_kv_table(dp->engine, job, &tn);
        if (!table || tn <= first)
            why = "the backend gave no block table";
        else {
            blocks = table + first;
            n = tn - first;
        }
    }
    sl_kv_reserved_t r = {.job_seq = seq->id, .nonce = kv->nonce};
    if (why) {
        r.status = SL_ERR_AGAIN;
        r.error = why;
        if (dp->sock)
            s_sent(sl_wire_kv_reserved_send(dp->sock, &r, ZMQ_DONTWAIT), "kv_reserved");
        s_end(dp, job, SL_ENGINE_FAILED, why, true, now);
        return;
    }
    kv->reserved = true;
    kv->first_block = first;
    kv->n_blocks = n;
    dp->stats.reserved++;
    dp->stats.reservations++;
    r.status = SL_OK;
    r.first_block = first;
    r.blocks = blocks;
    r.n_blocks = n;
    r.block_bytes = dp->block_bytes;
    if (dp->sock)
        s_sent(sl_wire_kv_reserved_send(dp->sock, &r, ZMQ_DONTWAIT), "kv_reserved");
}

void sl_exec_dp_held(sl_exec_dp_t *dp, sl_engine_job_t *job, sl_engine_held_t why, sl_time_t now)
{
    s_kvjob_t *kv = job->user;
    switch (why) {
    case SL_ENGINE_HELD_RESERVED:
        if (kv && kv->mode == SL_KV_AWAIT)
            s_reserve(dp, kv, now);
        else
            s_end(dp, job, SL_ENGINE_FAILED, "held for KV without a plan", false, now);
        break;
    case SL_ENGINE_HELD_PREFILLED:
        if (kv && kv->mode == SL_KV_PUSH)
            s_push(dp, kv, now);
        else
            s_end(dp, job, SL_ENGINE_FAILED, "prefilled for a push without a plan", true, now);
        break;
    case SL_ENGINE_HELD_PAUSED:
        if (kv && kv->mode == SL_KV_MIGRATE) {
            kv->paused_at = now;
            s_push(dp, kv, now);
        } else {
            sl_engine_resume(dp->engine, job, now);
        }
        break;
    }
}

/* ---- plans ---- */

static void s_plan_drop(sl_exec_dp_t *dp, s_plan_t *p)
{
    for (s_plan_t **pp = &dp->newest_plan; *pp; pp = &(*pp)->old)
        if (*pp == p) {
            *pp = p->old;
            break;
        }
    sl_map_del(&dp->plans, p->plan.job_seq + 1);
    free(p);
}

/* Copy the destination of plan into kv. */
static sl_status_t s_take_dst(s_kvjob_t *kv, const sl_kv_plan_t *plan)
{
    free(kv->dst);
    kv->dst = NULL;
    kv->dst_n = 0;
    if (plan->n_blocks) {
        kv->dst = malloc((size_t)plan->n_blocks * sizeof(uint32_t));
        if (!kv->dst)
            return SL_ERR_NOMEM;
        memcpy(kv->dst, plan->blocks, (size_t)plan->n_blocks * sizeof(uint32_t));
    }
    kv->dst_n = plan->n_blocks;
    kv->dst_first = plan->first_block;
    kv->dst_block_bytes = plan->block_bytes;
    kv->peer = plan->peer;
    kv->nonce = plan->nonce;
    kv->mode = plan->mode;
    return SL_OK;
}

/* A fetch in flight: cached blocks held for a peer to receive. */
typedef struct s_fetch {
    sl_exec_dp_t *dp;    /* the data plane */
    uint64_t job_seq;    /* the job they are for */
    void *hold;          /* the backend's hold on the blocks */
    uint64_t bytes;      /* bytes moved */
    uint32_t blocks;     /* blocks moved */
    sl_time_t posted_at; /* when */
} s_fetch_t;

static void s_fetch_done(void *arg, sl_status_t st)
{
    s_fetch_t *f = arg;
    sl_exec_dp_t *dp = f->dp;
    sl_engine_kv_unhold(dp->engine, f->hold);
    sl_kv_sent_t k = {.job_seq = f->job_seq, .ok = st == SL_OK, .error = sl_status_str(st)};
    if (st == SL_OK) {
        k.bytes = f->bytes;
        k.blocks = f->blocks;
        k.xfer_us = (uint32_t)((sl_clock_now() - f->posted_at) / 1000);
        k.error = "";
        dp->stats.pushes_ok++;
        dp->stats.bytes_sent += f->bytes;
        dp->stats.blocks_sent += f->blocks;
    } else {
        dp->stats.pushes_failed++;
    }
    s_kv_sent(dp, &k);
    dp->fetches--;
    free(f);
}

/* Send the cached leading blocks of a job (plan->hashes) to the peer's
 * reservation (a prefix fetch): held while they move, released after. */
static void s_fetch(sl_exec_dp_t *dp, const sl_kv_plan_t *plan, sl_time_t now)
{
    const char *why = NULL;
    char buf[128];
    void *hold = NULL;
    const uint32_t *ids = NULL;
    uint32_t found = 0;
    s_peer_t *peer = s_peer_find(dp, plan->peer);
    s_fetch_t *f = NULL;
    sl_xport_block_t *blocks = NULL;
    uint32_t nb = 0;
    if (plan->block_bytes != dp->block_bytes) {
        snprintf(buf, sizeof(buf), "KV block layouts differ (%llu bytes there, %zu here)",
                 (unsigned long long)plan->block_bytes, dp->block_bytes);
        why = buf;
    } else if (!peer || !peer->conn || !peer->reached) {
        why = "the receiver is not reached over the data plane";
    } else if (sl_engine_kv_hold(dp->engine, plan->hashes, plan->n_hashes, &hold, &ids, &found) !=
                   SL_OK ||
               found <= plan->first_block) {
        why = "the blocks are no longer cached here";
    } else {
        nb = found - plan->first_block;
        if (nb > plan->n_blocks)
            nb = plan->n_blocks;
        f = calloc(1, sizeof(*f));
        blocks = malloc((size_t)nb * sizeof(*blocks));
        if (!f || !blocks)
            why = "out of memory";
    }
    if (!why) {
        for (uint32_t i = 0; i < nb; i++)
            blocks[i] = (sl_xport_block_t){
                .local_off = (uint64_t)ids[plan->first_block + i] * dp->block_bytes,
                .remote_off = (uint64_t)plan->blocks[i] * dp->block_bytes,
                .len = dp->block_bytes};
        s_notif_t h = {.magic = S_NOTIF_MAGIC,
                       .version = S_NOTIF_VERSION,
                       .job_seq = plan->job_seq,
                       .nonce = plan->nonce,
                       .first_block = plan->first_block,
                       .n_blocks = nb};
        *f = (s_fetch_t){.dp = dp,
                         .job_seq = plan->job_seq,
                         .hold = hold,
                         .bytes = (uint64_t)nb * dp->block_bytes,
                         .blocks = nb,
                         .posted_at = now};
        sl_xport_xfer_t xf = {.op = SL_XPORT_PUT,
                              .cls = SL_XPORT_CRITICAL,
                              .local = dp->kv_mem,
                              .remote = peer->remote,
                              .blocks = blocks,
                              .nblocks = nb,
                              .notif = &h,
                              .notif_len = sizeof(h),
                              .cb = s_fetch_done,
                              .cb_arg = f};
        sl_status_t st = sl_xport_post(dp->xport, peer->conn, &xf);
        if (st == SL_OK) {
            dp->fetches++;
            free(blocks);
            return;
        }
        snprintf(buf, sizeof(buf), "cannot post the transfer: %s", sl_status_str(st));
        why = buf;
    }
    sl_engine_kv_unhold(dp->engine, hold);
    free(blocks);
    free(f);
    dp->stats.pushes_failed++;
    SL_WARN("data plane: prefix of job %llu not sent to executor %u: %s",
            (unsigned long long)plan->job_seq, plan->peer, why);
    sl_kv_sent_t k = {.job_seq = plan->job_seq, .ok = false, .error = why};
    s_kv_sent(dp, &k);
}

void sl_exec_dp_on_plan(sl_exec_dp_t *dp, const sl_kv_plan_t *plan, sl_time_t now)
{
    if (plan->mode == SL_KV_FETCH) {
        s_fetch(dp, plan, now);
        return;
    }
    if (plan->mode == SL_KV_MIGRATE) {
        sl_engine_job_t *job = sl_engine_find(dp->engine, plan->job_seq);
        s_kvjob_t *kv = NULL;
        const char *why = NULL;
        if (!job || job->held || job->kv_mode != SL_KV_LOCAL)
            why = "the job is not running here";
        else if (!(kv = s_kvjob(dp, job)) || s_take_dst(kv, plan) != SL_OK)
            why = "out of memory";
        if (!why) {
            sl_status_t st = sl_engine_pause(dp->engine, plan->job_seq, now);
            if (st != SL_OK) {
                why = st == SL_ERR_AGAIN ? "its prompt is not computed yet" : sl_status_str(st);
                kv->mode = SL_KV_LOCAL;
            }
            /* else: held at once (the push is posted) or at the step's end */
        }
        if (why) {
            dp->stats.pushes_failed++;
            sl_kv_sent_t k = {.job_seq = plan->job_seq, .ok = false, .error = why};
            s_kv_sent(dp, &k);
        }
        return;
    }
    size_t bytes = (size_t)plan->n_blocks * sizeof(uint32_t);
    s_plan_t *p = malloc(sizeof(*p) + bytes);
    if (!p) {
        SL_ERROR("data plane: out of memory for the plan of job %llu",
                 (unsigned long long)plan->job_seq);
        return;
    }
    s_plan_t *old = sl_map_get(&dp->plans, plan->job_seq + 1);
    if (old)
        s_plan_drop(dp, old);
    p->plan = *plan;
    if (bytes) /* an AWAIT plan names no blocks */
        memcpy(p + 1, plan->blocks, bytes);
    p->plan.blocks = (const uint32_t *)(p + 1);
    p->plan.hashes = NULL; /* a FETCH plan is served at once, never kept */
    p->plan.n_hashes = 0;
    p->arrived = now;
    if (sl_map_put(&dp->plans, plan->job_seq + 1, p) != SL_OK) {
        free(p);
        return;
    }
    p->old = dp->newest_plan;
    dp->newest_plan = p;
}

void sl_exec_dp_on_dispatch(sl_exec_dp_t *dp, sl_engine_job_t *job, sl_time_t now)
{
    /* An earlier attempt of the job still here (a canceled reservation in
     * its grace): the scheduler has moved on, so it goes now. */
    sl_engine_job_t *old = sl_engine_find(dp->engine, job->seq.id);
    s_kvjob_t *okv = old ? old->user : NULL;
    if (okv && okv->retire_at && !okv->pushing) {
        s_active_del(dp, okv);
        s_end(dp, old, SL_ENGINE_CANCELED, "canceled", true, now);
    }
    s_plan_t *p = sl_map_get(&dp->plans, job->seq.id + 1);
    if (!p)
        return;
    s_kvjob_t *kv = s_kvjob(dp, job);
    if (kv && s_take_dst(kv, &p->plan) == SL_OK) {
        job->kv_mode = p->plan.mode;
        if (p->plan.mode == SL_KV_PUSH)
            job->seq.max_new_tokens = 1; /* the prompt and its first token; the peer decodes */
    }
    s_plan_drop(dp, p);
}

bool sl_exec_dp_cancel(sl_exec_dp_t *dp, uint64_t job_seq, sl_time_t now)
{
    s_plan_t *p = sl_map_get(&dp->plans, job_seq + 1);
    if (p)
        s_plan_drop(dp, p);
    sl_engine_job_t *job = sl_engine_find(dp->engine, job_seq);
    s_kvjob_t *kv = job ? job->user : NULL;
    if (!kv)
        return job == NULL && p != NULL;
    if (kv->pushing) {
        kv->cancel_after = true;
        return true;
    }
    if (kv->mode == SL_KV_AWAIT && kv->reserved && job->held) {
        if (!kv->retire_at)
            kv->retire_at = now + SL_MS(dp->cfg.release_grace_ms);
        s_active_add(dp, kv);
        return true;
    }
    return false;
}

/* ---- notifications ---- */

static void s_refuse(sl_exec_dp_t *dp, uint64_t seq, const char *why)
{
    dp->stats.notifs_refused++;
    SL_WARN("data plane: refused a KV notification for job %llu: %s", (unsigned long long)seq, why);
}

/* A peer's KV landed (the transport delivers this after its data). */
static void s_on_notif(void *arg, const void *data, size_t len)
{
    sl_exec_dp_t *dp = arg;
    s_notif_t h;
    if (dp->other && dp->other(dp->other_arg, data, len))
        return;
    if (len < sizeof(h)) {
        s_refuse(dp, 0, "shorter than its header");
        return;
    }
    memcpy(&h, data, sizeof(h));
    if (h.magic != S_NOTIF_MAGIC || h.version != S_NOTIF_VERSION) {
        s_refuse(dp, 0, "not a KV notification of this version");
        return;
    }
    if (h.n_out > s_notif_tokens(dp) || len != sizeof(h) + (size_t)h.n_out * sizeof(uint32_t)) {
        s_refuse(dp, h.job_seq, "its token count does not match its length");
        return;
    }
    sl_engine_job_t *job = sl_engine_find(dp->engine, h.job_seq);
    s_kvjob_t *kv = job ? job->user : NULL;
    if (!kv || kv->mode != SL_KV_AWAIT || !kv->reserved || kv->retire_at || !job->held) {
        s_refuse(dp, h.job_seq, "no reservation awaits it");
        return;
    }
    const sl_seq_t *seq = &job->seq;
    uint64_t covered = ((uint64_t)h.first_block + h.n_blocks) * dp->block_tokens;
    /* a whole prompt and its tokens so far, or (n_out 0) a prefix of whole
     * blocks that leaves at least the prompt's last token to compute */
    bool fits = h.n_out ? (uint64_t)seq->prompt_len + h.n_out - 1 <= covered
                        : h.n_blocks > 0 && covered < seq->prompt_len;
    if (h.nonce != kv->nonce || h.first_block != kv->first_block || h.n_blocks > kv->n_blocks ||
        h.n_out > seq->max_new_tokens || h.streamed > h.n_out || !fits) {
        s_refuse(dp, h.job_seq, "it does not match the reservation");
        return;
    }
    memcpy(job->seq.out, (const uint8_t *)data + sizeof(h), (size_t)h.n_out * sizeof(uint32_t));
    kv->mode = SL_KV_LOCAL;
    kv->reserved = false;
    dp->stats.reservations--;
    sl_status_t st =
        sl_engine_import(dp->engine, job, h.n_out, h.streamed, (uint32_t)covered, sl_clock_now());
    if (st != SL_OK) {
        s_refuse(dp, h.job_seq, sl_status_str(st));
        s_end(dp, job, SL_ENGINE_FAILED, "its KV could not be taken in", false, sl_clock_now());
        return;
    }
    dp->stats.imports++;
    dp->stats.bytes_received += (uint64_t)h.n_blocks * dp->block_bytes;
    if (h.n_out == 0)
        dp->stats.blocks_fetched += h.n_blocks;
}

/* ---- progress and timers ---- */

static void s_expire(sl_exec_dp_t *dp, sl_time_t now)
{
    for (s_peer_t *p = dp->peers; p; p = p->next) {
        if (!p->pending || now - p->posted_at < SL_MS(dp->cfg.peer_check_timeout_ms))
            continue;
        char why[64];
        snprintf(why, sizeof(why), "no answer within %lld ms",
                 (long long)dp->cfg.peer_check_timeout_ms);
        s_peer_close(dp, p);
        s_peer_report(dp, p->index, false, 0, why);
    }
    /* One action per pass: each may change the list (callbacks run). */
    for (bool again = true; again;) {
        again = false;
        for (s_kvjob_t *kv = dp->active; kv; kv = kv->next) {
            if (kv->pushing && now - kv->posted_at >= SL_MS(dp->cfg.xfer_timeout_ms)) {
                s_peer_t *p = s_peer_find(dp, kv->peer);
                char why[96];
                snprintf(why, sizeof(why), "a KV push did not complete within %lld ms",
                         (long long)dp->cfg.xfer_timeout_ms);
                if (p && p->conn) {
                    s_peer_close(dp, p); /* fails its transfers: this one's callback runs */
                    s_peer_report(dp, p->index, false, 0, why);
                } else {
                    kv->pushing = false; /* no connection left to fail it: fail it here */
                    s_active_del(dp, kv);
                    if (kv->job)
                        s_push_fail(dp, kv, why, now);
                    else
                        s_kvjob_free(dp, kv);
                }
                again = true;
                break;
            }
            if (kv->retire_at && now >= kv->retire_at && kv->job) {
                s_active_del(dp, kv);
                s_end(dp, kv->job, SL_ENGINE_CANCELED, "canceled", false, now);
                again = true;
                break;
            }
        }
    }
    while (dp->newest_plan) {
        s_plan_t *oldest = dp->newest_plan;
        while (oldest->old)
            oldest = oldest->old;
        if (now - oldest->arrived < S_PLAN_TTL)
            break;
        s_plan_drop(dp, oldest);
    }
}

void sl_exec_dp_progress(sl_exec_dp_t *dp, sl_time_t now)
{
    sl_xport_progress(dp->xport);
    s_expire(dp, now);
}

sl_status_t sl_exec_dp_arm(sl_exec_dp_t *dp)
{
    return sl_xport_arm(dp->xport);
}

int sl_exec_dp_fd(const sl_exec_dp_t *dp)
{
    return sl_xport_fd(dp->xport);
}

void sl_exec_dp_set_sock(sl_exec_dp_t *dp, void *sock)
{
    dp->sock = sock;
}

void sl_exec_dp_hello(const sl_exec_dp_t *dp, sl_wire_hello_t *h)
{
    h->xport_address = dp->addr;
    h->xport_address_len = dp->addr_len;
    h->kv_rkey = dp->kv_rkey;
    h->kv_rkey_len = dp->kv_rkey_len;
    h->info.kv_region_bytes = dp->region_bytes;
    h->info.kv_fetch_source = sl_engine_kv_can_hold(dp->engine);
}

sl_status_t sl_exec_dp_bg_take(sl_exec_dp_t *dp, uint64_t bytes)
{
    return sl_xport_bg_take(dp->xport, bytes);
}

void sl_exec_dp_stats(const sl_exec_dp_t *dp, sl_exec_dp_stats_t *stats)
{
    *stats = dp->stats;
}

/* ---- life cycle ---- */

void sl_exec_dp_close_peers(sl_exec_dp_t *dp)
{
    if (!dp)
        return;
    while (dp->peers) { /* fails the transfers in flight: their callbacks run */
        s_peer_t *p = dp->peers;
        dp->peers = p->next;
        s_peer_close(dp, p);
        free(p);
    }
}

void sl_exec_dp_destroy(sl_exec_dp_t **dp_p)
{
    sl_exec_dp_t *dp = *dp_p;
    if (!dp)
        return;
    sl_exec_dp_close_peers(dp);
    while (dp->active) {
        s_kvjob_t *kv = dp->active;
        s_active_del(dp, kv);
        if (kv->job)
            kv->job->user = NULL;
        s_kvjob_free(dp, kv);
    }
    while (dp->newest_plan)
        s_plan_drop(dp, dp->newest_plan);
    sl_map_fini(&dp->plans);
    sl_xport_mem_deregister(dp->xport, &dp->scratch_mem);
    free(dp->scratch);
    free(dp->kv_rkey);
    sl_xport_mem_deregister(dp->xport, &dp->kv_mem); /* frees an allocated stand-in */
    sl_xport_destroy(&dp->xport);
    free(dp->bitmap);
    free(dp);
    *dp_p = NULL;
}

sl_status_t sl_exec_dp_create(const sl_exec_dp_cfg_t *cfg, sl_engine_t *engine,
                              const sl_exec_dp_io_t *io, sl_exec_dp_t **dp_p)
{
    sl_exec_dp_t *dp = calloc(1, sizeof(*dp));
    if (!dp)
        return SL_ERR_NOMEM;
    dp->cfg = *cfg;
    dp->io = *io;
    dp->engine = engine;
    sl_map_init(&dp->plans);
    if (cfg->tls && cfg->tls[0])
        setenv("UCX_TLS", cfg->tls, 1);
    dp->block_tokens = cfg->kv_block_tokens ? cfg->kv_block_tokens : 16;
    bool device = false;
    size_t pool_bytes = 0, pool_block = 0;
    void *pool = sl_engine_kv_pool(engine, &pool_bytes, &pool_block, &device);
    uint64_t want = 0, cap = (uint64_t)cfg->kv_region_max_mib << 20;
    if (pool && pool_bytes && pool_block) {
        dp->region = pool;
        dp->region_bytes = pool_bytes;
        dp->block_bytes = pool_block;
        dp->staged = device;
    } else {
        /* A backend without a pool (sim, null): a stand-in of the size it
         * models; an anonymous mapping costs memory only where bytes land. */
        dp->block_bytes = (size_t)dp->block_tokens * (size_t)cfg->kv_bytes_per_token;
        uint64_t blocks = cfg->kv_blocks ? cfg->kv_blocks : 1024;
        want = blocks * dp->block_bytes;
        uint64_t bytes = want < cap ? want : cap;
        dp->n_standin = (uint32_t)(bytes / dp->block_bytes);
        dp->region_bytes = (size_t)dp->n_standin * dp->block_bytes;
        dp->bitmap = calloc(((size_t)dp->n_standin + 63) / 64 + 1, sizeof(uint64_t));
        if (!dp->bitmap || !dp->region_bytes) {
            SL_ERROR("data plane: no room for a KV region of %zu-byte blocks", dp->block_bytes);
            free(dp->bitmap);
            free(dp);
            return SL_ERR_NOMEM;
        }
        dp->region_mapped = true;
    }
    /* the engine's knobs are SLUICE_XPORT_* variables, as in sluice-bench;
     * xport-net-devices=auto pins the NICs nearest the executor's GPU */
    sl_xport_cfg_t xcfg;
    char *no_flags[] = {"sluice-executor", NULL};
    sl_status_t st = sl_cfg_load(sl_xport_cfg_table, &xcfg, 1, no_flags, NULL, NULL);
    if (st == SL_OK && !xcfg.gpu_pci[0]) {
        /* the GPU that holds the KV pool, else CUDA device --gpu-index */
        char *bus = xcfg.gpu_pci;
        size_t blen = sizeof(xcfg.gpu_pci);
        if (!(device && pool && sl_xport_cudrv_ptr_busid(pool, bus, blen) == SL_OK) &&
            !(cfg->gpu_index >= 0 && sl_xport_cudrv_busid(cfg->gpu_index, bus, blen) == SL_OK))
            bus[0] = '\0';
    }
    /* --bg-link-mbps and --bg-share, when the link is given, set the
     * background bucket (log shipping takes from it too) */
    if (st == SL_OK && cfg->bg_link_mbps > 0) {
        xcfg.link_mbps = cfg->bg_link_mbps;
        xcfg.bg_share = cfg->bg_share;
    }
    if (st == SL_OK)
        st = sl_xport_create(&xcfg, &dp->xport);
    if (st != SL_OK) {
        SL_ERROR("data plane: cannot create the transport engine: %s", sl_status_str(st));
        free(dp->bitmap);
        free(dp);
        return st;
    }
    /* The stand-in is allocated by UCX, so a peer on the same host maps it
     * (a plain copy over shared memory instead of software RMA); the
     * backend's pool can only be registered where it lies. */
    if (dp->region_mapped)
        st = sl_xport_mem_alloc(dp->xport, dp->region_bytes, SL_XPORT_MEM_HOST, &dp->region,
                                &dp->kv_mem);
    else
        st = sl_xport_mem_register(dp->xport, dp->region, dp->region_bytes,
                                   device ? SL_XPORT_MEM_CUDA : SL_XPORT_MEM_HOST, &dp->kv_mem);
    if (st != SL_OK ||
        (st = sl_xport_mem_pack(dp->xport, dp->kv_mem, &dp->kv_rkey, &dp->kv_rkey_len)) != SL_OK ||
        (st = sl_xport_address(dp->xport, &dp->addr, &dp->addr_len)) != SL_OK ||
        (st = (dp->scratch = calloc(1, S_SCRATCH)) ? SL_OK : SL_ERR_NOMEM) != SL_OK ||
        (st = sl_xport_mem_register(dp->xport, dp->scratch, S_SCRATCH, SL_XPORT_MEM_HOST,
                                    &dp->scratch_mem)) != SL_OK) {
        SL_ERROR("data plane: cannot register the KV region: %s", sl_status_str(st));
        sl_exec_dp_destroy(&dp);
        return st;
    }
    if (dp->addr_len > sl_proto_limits_default.max_xport_address ||
        dp->kv_rkey_len > sl_proto_limits_default.max_kv_rkey) {
        SL_ERROR("data plane: address (%zu bytes) or key (%zu bytes) larger than a hello carries",
                 dp->addr_len, dp->kv_rkey_len);
        sl_exec_dp_destroy(&dp);
        return SL_ERR_MSG_TOO_BIG;
    }
    sl_xport_set_notif_handler(dp->xport, s_on_notif, dp);
    SL_INFO(
        "data plane: UCX_TLS %s, address %zu bytes, KV region %zu bytes (%s, %zu-byte blocks)%s, "
        "key %zu bytes",
        cfg->tls && cfg->tls[0] ? cfg->tls : "(environment)", dp->addr_len, dp->region_bytes,
        dp->region_mapped ? "stand-in"
        : device          ? "the backend's device pool"
                          : "the backend's pool",
        dp->block_bytes, want > cap ? " (capped)" : "", dp->kv_rkey_len);
    *dp_p = dp;
    return SL_OK;
}

sl_xport_t *sl_exec_dp_xport(const sl_exec_dp_t *dp)
{
    return dp->xport;
}

void sl_exec_dp_set_notif_other(sl_exec_dp_t *dp,
                                bool (*other)(void *arg, const void *data, size_t len), void *arg)
{
    dp->other = other;
    dp->other_arg = arg;
}

bool sl_exec_dp_peer(const sl_exec_dp_t *dp, uint32_t index, sl_xport_peer_t **conn_p,
                     uint32_t *remote_p, uint64_t *region_bytes_p)
{
    for (const s_peer_t *p = dp->peers; p; p = p->next)
        if (p->index == index && p->conn && p->reached) {
            *conn_p = p->conn;
            *remote_p = p->remote;
            *region_bytes_p = p->region_bytes;
            return true;
        }
    return false;
}
