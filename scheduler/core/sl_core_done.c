/*
 * The finished-job log (see sl_core_int.h): what a resubmission of a
 * finished job needs, kept for done_ttl.
 *
 * A job is freed as soon as its result is out, and what a resubmission
 * needs (the id and the embedder's receipt, the packed result) is appended
 * to a log of large blocks in finishing order; the id map then points at
 * the record (tagged in its low bit). Forgetting pops records from the
 * front, so memory is walked in order and a block is recycled whole.
 * Keeping the finished sl_job_t itself (with a malloc'd receipt) for
 * done_ttl was rejected: 200,000 remembered jobs made every submit, finish
 * and forget a few cache misses and two frees of cold memory, a quarter of
 * the scheduler's time at full load, and took three times the memory.
 */
#include "scheduler/core/sl_core_int.h"
#include "common/sl_hash.h"

#include <stdlib.h>
#include <string.h>

#define S_DONE_BLOCK (256u << 10)

/* Bytes a record takes in the log (8-aligned): header, id, receipt. */
static inline size_t s_done_size(size_t id_len, size_t len)
{
    return (sizeof(sl_core_done_t) + id_len + len + 7) & ~(size_t)7;
}

void *sl_core_id_find(const sl_core_t *core, const char *id)
{
    size_t len = strlen(id);
    for (int p = 0; p < SL_CORE_ID_PROBES; p++) {
        void *v = sl_map_get(&core->by_id, sl_hash_bytes(id, len, (uint64_t)p));
        if (!v)
            return NULL;
        if (strcmp(sl_core_entry_id(v), id) == 0)
            return v;
    }
    return NULL;
}

bool sl_core_done_find(const sl_core_t *core, const char *id, const void **receipt_p, size_t *len_p)
{
    void *v = sl_core_id_find(core, id);
    if (!v || !sl_core_id_is_done(v))
        return false;
    const sl_core_done_t *rec = sl_core_done_of(v);
    *receipt_p = rec->data + rec->id_len;
    *len_p = rec->len;
    return true;
}

/* Append job's record to the log; NULL when there is no memory for it. */
static sl_core_done_t *s_done_append(sl_core_t *core, const sl_job_t *job, sl_time_t now)
{
    size_t id_len = strlen(job->id) + 1;
    size_t need = s_done_size(id_len, job->receipt_len);
    sl_core_done_block_t *b = core->done_tail;
    if (job->receipt_len > UINT32_MAX)
        return NULL;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > S_DONE_BLOCK ? need : S_DONE_BLOCK;
        sl_core_done_block_t *nb = core->done_spare;
        if (nb && nb->cap >= cap)
            core->done_spare = NULL;
        else if (!(nb = malloc(sizeof(*nb) + cap)))
            return NULL;
        else
            nb->cap = cap;
        nb->next = NULL;
        nb->used = nb->head = 0;
        if (b)
            b->next = nb;
        else
            core->done_head = nb;
        core->done_tail = b = nb;
    }
    sl_core_done_t *rec = (sl_core_done_t *)(b->data + b->used);
    b->used += need;
    rec->id_key = job->id_hash;
    rec->done_at = now;
    rec->id_len = (uint32_t)id_len;
    rec->len = (uint32_t)job->receipt_len;
    memcpy(rec->data, job->id, id_len);
    if (job->receipt_len)
        memcpy(rec->data + id_len, job->receipt, job->receipt_len);
    core->n_done++;
    return rec;
}

/* The oldest record of the log, or NULL; emptied blocks are recycled. */
static sl_core_done_t *s_done_front(sl_core_t *core)
{
    sl_core_done_block_t *b;
    while ((b = core->done_head) && b->head == b->used) {
        if (b == core->done_tail) {
            b->head = b->used = 0;
            return NULL;
        }
        core->done_head = b->next;
        if (!core->done_spare && b->cap == S_DONE_BLOCK)
            core->done_spare = b;
        else
            free(b);
    }
    return b ? (sl_core_done_t *)(b->data + b->head) : NULL;
}

/* Forget the oldest finished job (rec, the front of the log). */
static void s_done_pop(sl_core_t *core, sl_core_done_t *rec)
{
    sl_core_done_block_t *b = core->done_head;
    b->head += s_done_size(rec->id_len, rec->len);
    core->n_done--;
    /* The log is walked in order; the map slots are not: start loading the
     * next one's while this one is removed. */
    if (b->head < b->used)
        sl_map_prefetch(&core->by_id, ((sl_core_done_t *)(b->data + b->head))->id_key);
    void *v = sl_map_get(&core->by_id, rec->id_key);
    if (v && sl_core_done_of(v) == rec)
        sl_map_del(&core->by_id, rec->id_key);
}

/* Records past their time to live, or beyond the count bound, go (memory
 * stays bounded at any completion rate). */
void sl_core_done_forget(sl_core_t *core, sl_time_t now)
{
    sl_time_t ttl = SL_MS(core->cfg.done_ttl_ms);
    sl_core_done_t *rec;
    while ((rec = s_done_front(core))) {
        if (now - rec->done_at < ttl && core->n_done <= (uint32_t)core->cfg.done_max)
            break;
        s_done_pop(core, rec);
    }
}

void sl_core_done_remember(sl_core_t *core, const sl_job_t *job, sl_time_t now)
{
    sl_core_done_t *rec = s_done_append(core, job, now);
    if (rec) {
        sl_map_swap(&core->by_id, job->id_hash, (void *)((uintptr_t)rec | 1));
        /* Past the count bound the oldest goes now, one per finish (its map
         * slot was prefetched by the previous one), not thousands per tick. */
        sl_core_done_t *old;
        if (core->n_done > (uint32_t)core->cfg.done_max && (old = s_done_front(core)))
            s_done_pop(core, old);
    } else {
        /* no memory to remember it: a resubmission will run it again */
        sl_map_del(&core->by_id, job->id_hash);
        core->counters[SL_CTR_DONE_DROPPED]++;
    }
}

void sl_core_done_fini(sl_core_t *core)
{
    for (sl_core_done_block_t *b = core->done_head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(core->done_spare);
    core->done_head = core->done_tail = core->done_spare = NULL;
    core->n_done = 0;
}

sl_status_t sl_core_done_restore(sl_core_t *core, const char *id, const void *receipt, size_t len,
                                 sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_done_restore"))
        return SL_ERR_REENTERED;
    if (!id || !id[0])
        return SL_ERR_INVALID;
    uint64_t key = 0;
    void *old = NULL;
    sl_status_t st = sl_core_id_probe(core, id, &key, &old);
    if (st != SL_OK)
        return st;
    sl_job_t job = {.id = (char *)id, .id_hash = key, .receipt = receipt, .receipt_len = len};
    sl_core_done_t *rec = s_done_append(core, &job, now);
    if (!rec)
        return SL_ERR_NOMEM;
    if (sl_map_put(&core->by_id, key, (void *)((uintptr_t)rec | 1)) != SL_OK) {
        rec->id_key = 0; /* stays in the log until forgotten, found by no id */
        return SL_ERR_NOMEM;
    }
    return SL_OK;
}
