/*
 * The data path of pipeline stages (see sl_exec_stage.h).
 *
 * Shape. The stages of a chain form a loop over the transport: stage i puts
 * each step (its rows' positions and sequence slots, which rows sample, the
 * sequences ended since the last step, and the residual stream after its
 * layers) into the receive ring of stage i+1, in one critical-class put
 * with a notification after the data (the pattern of a KV push); the last
 * stage puts the sampled tokens into the first stage's ring the same way.
 * The first stage's backend sends a step and waits for its tokens, so there
 * is exactly one step in a chain at a time and each ring holds one message:
 * a stage's ring is written again only after the loop has closed, that is
 * after every stage has read what it was sent. A step that fails on a later
 * stage goes on round the loop with its status set, so the first stage
 * always hears about it; one that never comes back fails after
 * step_timeout_ms (a stage lost, a connection dropped), and the first
 * stage's engine fails its sequences: the scheduler requeues or fails the
 * jobs, each answered once.
 *
 * A message is the header s_msg_t, then seqs[n_seqs], ended[n_ended],
 * row_seq[n_rows], pos[n_rows], out_rows[n_out], then (8-byte aligned) the
 * residual stream [n_rows][width] fp32, or the tokens [n_out] of a TOKENS
 * message. Host byte order (the magic tells a peer of the other order); the
 * receiver checks every count against the bytes the notification announced
 * and its own ring before reading.
 *
 * Rejected: the last stage reporting tokens to the scheduler (the first
 * stage needs each token anyway to embed it for the next decode step, so
 * it would arrive twice); stages stepping independently with queues of
 * steps between them (a deeper pipeline overlaps micro-batches, but one
 * engine's continuous batching already keeps a stage busy, and lockstep
 * needs no flow control); activations inside the notification (bounded to
 * 4 KiB: a few rows); NCCL send/recv between GPUs of one communicator (not
 * built here: no two-GPU machine to exercise it; UCX moves the host copy).
 */
#include "executor/sl_exec_stage.h"
#include "common/sl_log.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define S_MAGIC 0x54534c53u /* "SLST" */
#define S_VERSION 1u

enum { S_ACTS = 1, S_TOKENS = 2 };

/* The head of a message in a ring. */
typedef struct s_msg {
    uint32_t magic;               /* S_MAGIC */
    uint32_t version;             /* S_VERSION */
    uint32_t kind;                /* S_ACTS or S_TOKENS */
    int32_t status;               /* SL_OK, or why an earlier stage failed the step */
    uint64_t step;                /* the first stage's step number */
    uint32_t n_rows;              /* rows */
    uint32_t n_seqs;              /* sequence slots */
    uint32_t n_out;               /* rows that sample */
    uint32_t n_ended;             /* sequences ended before this step */
    uint32_t width;               /* floats per row */
    uint32_t hop;                 /* the place in chain of the stage it is sent to */
    uint32_t n_chain;             /* stages in the chain */
    uint32_t pad;                 /* zero */
    uint32_t chain[SL_STAGE_MAX]; /* the stages' scheduler indices, the first stage first */
} s_msg_t;

/* The notification after a message: which step, how many bytes. */
typedef struct s_notif {
    uint32_t magic; /* S_MAGIC */
    uint32_t kind;  /* S_ACTS or S_TOKENS */
    uint64_t step;  /* step number */
    uint64_t bytes; /* message bytes at the start of the ring */
} s_notif_t;

struct sl_exec_stage {
    sl_exec_stage_cfg_t cfg;      /* knobs */
    sl_exec_stage_io_t io;        /* what runs a step here */
    sl_xport_t *xp;               /* transport engine (borrowed) */
    size_t ring_bytes;            /* bytes of the ring and of the send buffer */
    void *ring;                   /* receive ring */
    sl_xport_mem_t *ring_mem;     /* its registration */
    void *ring_key;               /* its packed key */
    size_t ring_key_len;          /* bytes of ring_key */
    void *out;                    /* send buffer */
    sl_xport_mem_t *out_mem;      /* its registration */
    sl_xport_peer_t *next;        /* without io.peer: the next stage (borrowed; NULL: none) */
    uint32_t next_ring;           /* ... its ring's id */
    uint32_t chain[SL_STAGE_MAX]; /* first stage: its chain */
    uint32_t n_chain;             /* stages in it (0: none) */
    bool sending;                 /* a put is in flight */
    sl_status_t sent;             /* the last put's outcome */
    bool arrived;                 /* a message is in the ring */
    s_notif_t notif;              /* its notification */
    uint64_t step;                /* first stage: steps sent so far */
    uint64_t *ended;              /* first stage: sequences ended, not sent yet */
    uint32_t n_ended, cap_ended;  /* entries, capacity */
    sl_exec_stage_stats_t stats;  /* counters */
};

/* Bytes before the stream or the tokens, for the counts of m. */
static size_t s_head_bytes(const s_msg_t *m)
{
    size_t n = sizeof(s_msg_t) + (size_t)m->n_seqs * sizeof(sl_stage_seq_t) +
               (size_t)m->n_ended * sizeof(uint64_t) + (size_t)m->n_rows * 8 + (size_t)m->n_out * 4;
    return (n + 7) & ~(size_t)7;
}

static size_t s_msg_bytes(const s_msg_t *m)
{
    size_t body =
        m->kind == S_TOKENS ? (size_t)m->n_out * 4 : (size_t)m->n_rows * m->width * sizeof(float);
    return s_head_bytes(m) + body;
}

/* Point step's arrays into the message at base (counts already checked). */
static void s_msg_view(const uint8_t *base, sl_stage_step_t *step, const void **body_p)
{
    const s_msg_t *m = (const s_msg_t *)base;
    const uint8_t *p = base + sizeof(*m);
    step->n_rows = m->n_rows;
    step->n_seqs = m->n_seqs;
    step->n_out = m->n_out;
    step->n_ended = m->n_ended;
    step->seqs = (const sl_stage_seq_t *)p;
    p += (size_t)m->n_seqs * sizeof(sl_stage_seq_t);
    step->ended = (const uint64_t *)p;
    p += (size_t)m->n_ended * sizeof(uint64_t);
    step->row_seq = (const uint32_t *)p;
    p += (size_t)m->n_rows * 4;
    step->pos = (const uint32_t *)p;
    p += (size_t)m->n_rows * 4;
    step->out_rows = (const uint32_t *)p;
    *body_p = base + s_head_bytes(m);
}

/* Write the head of a message (header and step's arrays) at base. */
static void s_msg_write(uint8_t *base, const s_msg_t *h, const sl_stage_step_t *step)
{
    memcpy(base, h, sizeof(*h));
    uint8_t *p = base + sizeof(*h);
    size_t n;
    memcpy(p, step->seqs, n = (size_t)h->n_seqs * sizeof(sl_stage_seq_t)), p += n;
    if (h->n_ended)
        memcpy(p, step->ended, n = (size_t)h->n_ended * sizeof(uint64_t)), p += n;
    memcpy(p, step->row_seq, n = (size_t)h->n_rows * 4), p += n;
    memcpy(p, step->pos, n), p += n;
    if (h->n_out)
        memcpy(p, step->out_rows, (size_t)h->n_out * 4);
}

static void s_wait(sl_exec_stage_t *s);

sl_status_t sl_exec_stage_create(const sl_exec_stage_cfg_t *cfg, sl_xport_t *xp,
                                 const sl_exec_stage_io_t *io, sl_exec_stage_t **stage_p)
{
    if (!io->width || (!io->first && !io->run) || (io->ring && io->ring_bytes < 4096)) {
        SL_ERROR("stage: a stage needs a width, a ring of 4 KiB or more, and (a later stage) a "
                 "function that runs its layers");
        return SL_ERR_INVALID;
    }
    sl_exec_stage_t *s = calloc(1, sizeof(*s));
    if (!s) {
        SL_ERROR("stage: out of memory");
        return SL_ERR_NOMEM;
    }
    s->cfg = *cfg;
    s->io = *io;
    s->xp = xp;
    s->ring_bytes = io->ring ? io->ring_bytes : (size_t)cfg->ring_kib << 10;
    s->ring = io->ring;
    sl_status_t st = SL_OK;
    if (!s->ring)
        st = sl_xport_mem_alloc(xp, s->ring_bytes, SL_XPORT_MEM_HOST, &s->ring, &s->ring_mem);
    if (st == SL_OK)
        st = sl_xport_mem_alloc(xp, s->ring_bytes, SL_XPORT_MEM_HOST, &s->out, &s->out_mem);
    if (st == SL_OK && s->ring_mem)
        st = sl_xport_mem_pack(xp, s->ring_mem, &s->ring_key, &s->ring_key_len);
    if (st != SL_OK) {
        SL_ERROR("stage: cannot register a ring of %lld KiB: %s", (long long)cfg->ring_kib,
                 sl_status_str(st));
        sl_exec_stage_destroy(&s);
        return st;
    }
    *stage_p = s;
    return SL_OK;
}

void sl_exec_stage_destroy(sl_exec_stage_t **stage_p)
{
    sl_exec_stage_t *s = *stage_p;
    if (!s)
        return;
    /* a put in flight calls back into s: let it end (its peer answers or
     * fails within the step timeout); past that, s is left allocated */
    sl_time_t deadline = sl_clock_now() + SL_MS(s->cfg.step_timeout_ms);
    while (s->sending && sl_clock_now() < deadline)
        s_wait(s);
    if (s->sending) {
        SL_WARN("stage: a put to the next stage is still in flight: its buffers stay");
        *stage_p = NULL;
        return;
    }
    sl_xport_mem_deregister(s->xp, &s->ring_mem);
    sl_xport_mem_deregister(s->xp, &s->out_mem);
    free(s->ring_key);
    free(s->ended);
    free(s);
    *stage_p = NULL;
}

void sl_exec_stage_ring_key(const sl_exec_stage_t *s, const void **key_p, size_t *len_p)
{
    *key_p = s->ring_key;
    *len_p = s->ring_key_len;
}

void sl_exec_stage_set_next(sl_exec_stage_t *s, sl_xport_peer_t *conn, uint32_t ring)
{
    s->next = conn;
    s->next_ring = ring;
}

sl_status_t sl_exec_stage_set_chain(sl_exec_stage_t *s, const uint32_t *chain, uint32_t n)
{
    if (n > SL_STAGE_MAX || n == 1) {
        SL_WARN("stage: a chain of %u stages refused", n);
        return SL_ERR_INVALID;
    }
    if (n)
        memcpy(s->chain, chain, n * sizeof(*chain));
    s->n_chain = n;
    SL_INFO("stage: chain of %u stages%s", n, n ? "" : " (none: jobs fail until one forms)");
    return SL_OK;
}

bool sl_exec_stage_on_notif(sl_exec_stage_t *s, const void *data, size_t len)
{
    s_notif_t n;
    if (len != sizeof(n))
        return false;
    memcpy(&n, data, sizeof(n));
    if (n.magic != S_MAGIC)
        return false;
    bool want_tokens = s->io.first;
    if (n.kind != (want_tokens ? S_TOKENS : S_ACTS) || n.bytes < sizeof(s_msg_t) ||
        n.bytes > s->ring_bytes || s->arrived) {
        s->stats.notifs_refused++;
        SL_WARN("stage: refused a notification (kind %u, %llu bytes, step %llu)", n.kind,
                (unsigned long long)n.bytes, (unsigned long long)n.step);
        return true;
    }
    s->notif = n;
    s->arrived = true;
    return true;
}

static void s_put_done(void *arg, sl_status_t st)
{
    sl_exec_stage_t *s = arg;
    s->sending = false;
    s->sent = st;
    if (st != SL_OK)
        SL_WARN("stage: a step to the next stage failed: %s", sl_status_str(st));
}

/* Put the message in the send buffer (bytes) into the ring of stage `to`
 * (a scheduler index; ignored without io.peer). */
static sl_status_t s_send(sl_exec_stage_t *s, uint32_t to, uint32_t kind, uint64_t step,
                          size_t bytes)
{
    sl_xport_peer_t *conn = s->next;
    uint32_t ring = s->next_ring;
    uint64_t off = 0;
    if (s->io.peer && !s->io.peer(s->io.peer_arg, to, &conn, &ring, &off))
        conn = NULL;
    if (!conn)
        return SL_ERR_NOT_FOUND;
    if (s->sending)
        return SL_ERR_AGAIN;
    s_notif_t n = {S_MAGIC, kind, step, bytes};
    sl_xport_block_t b = {.local_off = 0, .remote_off = off, .len = bytes};
    sl_xport_xfer_t xf = {.op = SL_XPORT_PUT,
                          .cls = SL_XPORT_CRITICAL,
                          .local = s->out_mem,
                          .remote = ring,
                          .blocks = &b,
                          .nblocks = 1,
                          .notif = &n,
                          .notif_len = sizeof(n),
                          .cb = s_put_done,
                          .cb_arg = s};
    s->sending = true;
    sl_status_t st = sl_xport_post(s->xp, conn, &xf);
    if (st != SL_OK) {
        s->sending = false;
        return st;
    }
    s->stats.steps_sent++;
    s->stats.bytes_sent += bytes;
    return SL_OK;
}

/* The message in the ring, checked: its header and step view, or NULL. */
static const s_msg_t *s_arrived(sl_exec_stage_t *s, uint32_t kind, sl_stage_step_t *step,
                                const void **body_p)
{
    const s_msg_t *m = s->ring;
    uint64_t limit = s->ring_bytes;
    bool ok = m->magic == S_MAGIC && m->version == S_VERSION && m->kind == kind &&
              m->step == s->notif.step && m->width == s->io.width && m->n_chain >= 2 &&
              m->n_chain <= SL_STAGE_MAX && m->hop < m->n_chain &&
              (uint64_t)m->n_rows + m->n_seqs + m->n_out + m->n_ended < limit;
    if (ok)
        ok = s_msg_bytes(m) <= s->notif.bytes && s_msg_bytes(m) <= limit;
    if (ok) {
        s_msg_view(s->ring, step, body_p);
        for (uint32_t i = 0; ok && i < m->n_rows; i++)
            ok = step->row_seq[i] < m->n_seqs;
        for (uint32_t i = 0; ok && kind == S_ACTS && i < m->n_out; i++)
            ok = step->out_rows[i] < m->n_rows;
    }
    if (!ok) {
        s->stats.notifs_refused++;
        SL_WARN("stage: the message of step %llu is malformed (magic %#x, version %u, kind %u, "
                "step %llu, width %u, %u rows, %u sequences, %u outputs, hop %u of %u, %llu "
                "bytes announced)",
                (unsigned long long)s->notif.step, m->magic, m->version, m->kind,
                (unsigned long long)m->step, m->width, m->n_rows, m->n_seqs, m->n_out, m->hop,
                m->n_chain, (unsigned long long)s->notif.bytes);
        return NULL;
    }
    return m;
}

void sl_exec_stage_progress(sl_exec_stage_t *s, sl_time_t now)
{
    (void)now;
    if (s->io.first || !s->arrived || s->sending)
        return;
    s->arrived = false;
    sl_stage_step_t step;
    const void *x_in;
    const s_msg_t *m = s_arrived(s, S_ACTS, &step, &x_in);
    if (!m)
        return; /* the first stage times the step out */
    s_msg_t h = *m;
    h.kind = s->io.last ? S_TOKENS : S_ACTS;
    h.hop = (m->hop + 1) % m->n_chain;
    h.n_ended = s->io.last ? 0 : m->n_ended; /* the first stage needs no ended list */
    if (s->io.last)
        h.n_rows = h.n_seqs = 0, h.n_ended = 0;
    size_t head = s_head_bytes(&h), bytes = s_msg_bytes(&h);
    if (bytes > s->ring_bytes) {
        h.status = SL_ERR_MSG_TOO_BIG;
        h.n_rows = h.n_seqs = h.n_out = h.n_ended = 0;
        head = bytes = s_head_bytes(&h);
    }
    uint8_t *out = s->out;
    void *body = out + head;
    if (h.status == SL_OK) {
        sl_status_t st = s->io.run(s->io.arg, &step, x_in, s->io.last ? NULL : (float *)body,
                                   s->io.last ? (uint32_t *)body : NULL);
        s->stats.steps_run++;
        if (st != SL_OK) {
            s->stats.steps_failed++;
            h.status = st;
        }
    }
    if (h.status != SL_OK) { /* it goes on round the loop, empty */
        h.n_rows = h.n_seqs = h.n_out = h.n_ended = 0;
        bytes = s_head_bytes(&h);
    }
    /* The head is written after run: body may overlap nothing of the ring,
     * but the step view points into the ring, which the next message only
     * overwrites after this one has gone round. */
    if (s->io.last || h.status != SL_OK)
        memcpy(out, &h, sizeof(h));
    else
        s_msg_write(out, &h, &step);
    sl_status_t st = s_send(s, h.chain[h.hop], h.kind, h.step, bytes);
    if (st != SL_OK)
        SL_WARN("stage: cannot send step %llu on to executor %u: %s", (unsigned long long)h.step,
                h.chain[h.hop], sl_status_str(st));
}

/* Wait on the engine for at most 1 ms. */
static void s_wait(sl_exec_stage_t *s)
{
    if (sl_xport_progress(s->xp) > 0 || sl_xport_arm(s->xp) != SL_OK)
        return;
    struct pollfd p = {.fd = sl_xport_fd(s->xp), .events = POLLIN};
    poll(&p, 1, 1);
}

/* The first stage's hook: send a step round the chain, wait for its tokens. */
static sl_status_t s_forward(void *arg, const sl_stage_step_t *step, const float *x, uint32_t *next)
{
    sl_exec_stage_t *s = arg;
    sl_status_t st = SL_OK;
    sl_time_t deadline = sl_clock_now() + SL_MS(s->cfg.step_timeout_ms);
    /* a previous step's put may still be completing; while it is, its
     * buffer is being read, so this step is not written over it */
    while (s->sending && sl_clock_now() < deadline)
        s_wait(s);
    if (s->sending) {
        SL_WARN("stage: the put of step %llu to the next stage is still in flight after %lld ms",
                (unsigned long long)s->step, (long long)s->cfg.step_timeout_ms);
        st = SL_ERR_AGAIN;
        goto fail;
    }
    s_msg_t h = {.magic = S_MAGIC,
                 .version = S_VERSION,
                 .kind = S_ACTS,
                 .status = SL_OK,
                 .step = ++s->step,
                 .n_rows = step->n_rows,
                 .n_seqs = step->n_seqs,
                 .n_out = step->n_out,
                 .n_ended = s->n_ended,
                 .width = s->io.width,
                 .hop = 1,
                 .n_chain = s->n_chain};
    memcpy(h.chain, s->chain, sizeof(h.chain));
    if (s->io.peer && s->n_chain < 2) {
        SL_WARN("stage: no chain of later stages (the scheduler sends one once they are reached)");
        st = SL_ERR_NOT_FOUND;
        goto fail;
    }
    if (!s->io.peer) { /* one next stage, set directly: a chain of two */
        h.n_chain = 2;
        h.chain[0] = 0, h.chain[1] = 1;
    }
    size_t head = s_head_bytes(&h), bytes = s_msg_bytes(&h);
    if (bytes > s->ring_bytes) {
        SL_WARN("stage: a step of %u rows needs %zu bytes, the ring holds %zu (stage-ring-kib)",
                step->n_rows, bytes, s->ring_bytes);
        st = SL_ERR_MSG_TOO_BIG;
        goto fail;
    }
    sl_stage_step_t with_ended = *step;
    with_ended.n_ended = s->n_ended;
    with_ended.ended = s->ended;
    s_msg_write(s->out, &h, &with_ended);
    memcpy((uint8_t *)s->out + head, x, (size_t)step->n_rows * s->io.width * sizeof(float));
    s->arrived = false;
    if ((st = s_send(s, h.chain[1], S_ACTS, h.step, bytes)) != SL_OK) {
        SL_WARN("stage: cannot send step %llu to the next stage: %s", (unsigned long long)h.step,
                sl_status_str(st));
        goto fail;
    }
    s->n_ended = 0; /* sent (a lost step loses them with the chain) */
    while (!s->arrived || s->notif.step != h.step) {
        if (s->arrived) { /* the late tokens of a step that timed out */
            s->arrived = false;
            continue;
        }
        if (!s->sending && s->sent != SL_OK) {
            st = s->sent;
            goto fail;
        }
        if (sl_clock_now() >= deadline) {
            SL_WARN("stage: the tokens of step %llu did not come back within %lld ms",
                    (unsigned long long)h.step, (long long)s->cfg.step_timeout_ms);
            st = SL_ERR_TIMEOUT;
            goto fail;
        }
        s_wait(s);
    }
    s->arrived = false;
    sl_stage_step_t back;
    const void *tokens;
    const s_msg_t *m = s_arrived(s, S_TOKENS, &back, &tokens);
    if (!m) {
        st = SL_ERR_MSG_MALFORMED;
        goto fail;
    }
    if (m->status != SL_OK || m->n_out != step->n_out) {
        st = m->status != SL_OK ? (sl_status_t)m->status : SL_ERR_MSG_MALFORMED;
        SL_WARN("stage: step %llu failed on a later stage: %s", (unsigned long long)h.step,
                sl_status_str(st));
        goto fail;
    }
    memcpy(next, tokens, (size_t)step->n_out * 4);
    return SL_OK;
fail:
    s->stats.steps_failed++;
    return st;
}

/* The first stage released a sequence: the later stages release it with the next step. */
static void s_end(void *arg, uint64_t id)
{
    sl_exec_stage_t *s = arg;
    if (s->n_ended == s->cap_ended) {
        uint32_t cap = s->cap_ended ? 2 * s->cap_ended : 64;
        uint64_t *e = realloc(s->ended, cap * sizeof(*e));
        if (!e) {
            SL_WARN("stage: out of memory noting the end of sequence %llu (its KV on later "
                    "stages stays until they stop)",
                    (unsigned long long)id);
            return;
        }
        s->ended = e;
        s->cap_ended = cap;
    }
    s->ended[s->n_ended++] = id;
}

sl_backend_stage_t sl_exec_stage_hook(sl_exec_stage_t *s)
{
    return (sl_backend_stage_t){.forward = s_forward, .end = s_end, .arg = s};
}

void sl_exec_stage_stats(const sl_exec_stage_t *s, sl_exec_stage_stats_t *stats)
{
    *stats = s->stats;
}
