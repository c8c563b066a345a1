/*
 * The history checker.
 *
 * The idea. What a client is promised is visible at the client: for each
 * job it submitted, Accepted (or Busy, and a retry), then exactly one
 * Result, and for a streamed job every token once, in order. So the check
 * needs no view inside the scheduler: the chaos bench notes each message
 * its clients send and receive, as it happens, and this file keeps per job
 * the few facts the promises are about (accepted, results, the frontier of
 * streamed tokens) and counts every broken promise. A fixed table of
 * clients x jobs, since the bench numbers its jobs: no allocation per
 * event, so noting costs nothing beside the sockets.
 *
 * Rejected: a log of every event checked at the end (memory grows with the
 * run, and the checks are per job anyway); checking inside the scheduler
 * (it would check itself).
 */
#include "bench/sl_history.h"

#include <stdlib.h>

typedef struct s_job {
    uint8_t submitted, accepted;
    uint16_t results;  /* saturates */
    uint32_t frontier; /* streamed tokens received, in order */
    uint32_t out;      /* output tokens in the result */
    bool streamed;
    bool ok; /* its (first) result ended OK */
} s_job_t;

struct sl_history {
    uint32_t clients, jobs;
    s_job_t *job;
    uint64_t wrong_client, backwards, chunk_dups, chunk_gaps;
};

sl_history_t *sl_history_create(uint32_t clients, uint32_t jobs)
{
    sl_history_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->clients = clients;
    h->jobs = jobs;
    h->job = calloc((size_t)clients * jobs, sizeof(*h->job));
    if (!h->job) {
        free(h);
        return NULL;
    }
    return h;
}

void sl_history_destroy(sl_history_t **h_p)
{
    if (!h_p || !*h_p)
        return;
    free((*h_p)->job);
    free(*h_p);
    *h_p = NULL;
}

sl_status_t sl_history_note(sl_history_t *h, sl_hev_t ev, uint32_t owner, uint32_t job, uint32_t at,
                            sl_time_t t, uint32_t offset, uint32_t n)
{
    (void)t;
    if (owner >= h->clients || job >= h->jobs) {
        if (ev != SL_HEV_SUBMIT)
            h->wrong_client++;
        return SL_ERR_INVALID;
    }
    s_job_t *j = &h->job[(size_t)owner * h->jobs + job];
    if (ev != SL_HEV_SUBMIT && at != owner) {
        h->wrong_client++;
        return SL_OK;
    }
    switch (ev) {
    case SL_HEV_SUBMIT:
        j->submitted = 1;
        break;
    case SL_HEV_ACCEPT:
    case SL_HEV_BUSY:
        if (j->results)
            h->backwards++;
        else if (ev == SL_HEV_ACCEPT)
            j->accepted = 1;
        break;
    case SL_HEV_RESULT:
        if (j->results < UINT16_MAX)
            j->results++;
        if (j->results == 1) {
            j->out = n;
            j->ok = offset == 0;
        }
        break;
    case SL_HEV_CHUNK:
        j->streamed = true;
        if (j->results)
            h->backwards++; /* a chunk after the result */
        if (offset > j->frontier) {
            h->chunk_gaps++;
            j->frontier = offset + n; /* count the gap once, follow on */
        } else if (offset + n <= j->frontier) {
            h->chunk_dups += n;
        } else {
            h->chunk_dups += j->frontier - offset;
            j->frontier = offset + n;
        }
        break;
    }
    return SL_OK;
}

bool sl_history_done(const sl_history_t *h, uint32_t owner, uint32_t job)
{
    return owner < h->clients && job < h->jobs && h->job[(size_t)owner * h->jobs + job].results;
}

bool sl_history_accepted(const sl_history_t *h, uint32_t owner, uint32_t job)
{
    return owner < h->clients && job < h->jobs && h->job[(size_t)owner * h->jobs + job].accepted;
}

void sl_history_check(const sl_history_t *h, sl_history_report_t *r)
{
    *r = (sl_history_report_t){.wrong_client = h->wrong_client,
                               .backwards = h->backwards,
                               .chunk_dups = h->chunk_dups,
                               .chunk_gaps = h->chunk_gaps};
    for (size_t i = 0; i < (size_t)h->clients * h->jobs; i++) {
        const s_job_t *j = &h->job[i];
        r->submitted += j->submitted;
        r->accepted += j->accepted;
        r->results += j->results > 0;
        if (j->accepted && !j->results)
            r->lost++;
        if (j->results > 1)
            r->duplicated += j->results - 1u;
        if (j->results && !j->accepted)
            r->unaccepted_results++;
        if (j->results && j->ok && j->streamed && j->frontier != j->out)
            r->stream_short++;
    }
}
