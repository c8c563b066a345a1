/*
 * A history of what clients saw of their jobs, and its check: every
 * accepted job ends with exactly one result, no job's state goes
 * backwards, no answer reaches a client that did not submit the job, a
 * stream has no gap and no duplicated token. Pure: the caller stamps the
 * events; used by sluice-bench chaos (OPERATIONS.md, "Chaos").
 */
#ifndef SL_HISTORY_H
#define SL_HISTORY_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stdint.h>

#include "common/sl_clock.h"

typedef enum sl_hev {
    SL_HEV_SUBMIT = 0, /* the client sent the job (a resend is another SUBMIT) */
    SL_HEV_ACCEPT = 1, /* Accepted came */
    SL_HEV_BUSY = 2,   /* Busy came (refused for now) */
    SL_HEV_RESULT = 3, /* a Result came */
    SL_HEV_CHUNK = 4,  /* a TokenChunk came: tokens offset .. offset + n - 1 */
} sl_hev_t;

typedef struct sl_history sl_history_t;

typedef struct sl_history_report {
    uint64_t submitted;          /* jobs submitted at least once */
    uint64_t accepted;           /* jobs accepted at least once */
    uint64_t results;            /* jobs with a result */
    uint64_t lost;               /* accepted, and no result by the end */
    uint64_t duplicated;         /* results beyond the first, all jobs */
    uint64_t wrong_client;       /* answers that reached a client that did not submit the job */
    uint64_t backwards;          /* an Accepted or Busy after the job's result */
    uint64_t unaccepted_results; /* results of jobs never accepted */
    uint64_t chunk_dups;         /* streamed tokens received twice */
    uint64_t chunk_gaps;         /* chunks that began past the tokens received so far */
    uint64_t stream_short;       /* streamed jobs ended OK whose chunks do not cover their result */
} sl_history_report_t;

/* A history for clients x jobs (job numbers 0..jobs-1 per client). NULL
 * when out of memory. */
sl_history_t *sl_history_create(uint32_t clients, uint32_t jobs);
void sl_history_destroy(sl_history_t **h_p);

/* An event about job `job` of client `owner`, seen by client `at` (the
 * submitter for SUBMIT); offset and n for CHUNK; for RESULT, n = output
 * tokens and offset = 0 when it ended OK, anything else when not (a failed
 * job's stream need not cover its result). SL_ERR_INVALID for an owner or job out of range (counted
 * as a wrong client when it was an answer). */
sl_status_t sl_history_note(sl_history_t *h, sl_hev_t ev, uint32_t owner, uint32_t job, uint32_t at,
                            sl_time_t t, uint32_t offset, uint32_t n);

/* Whether the job has its result (the caller stops resending it). */
bool sl_history_done(const sl_history_t *h, uint32_t owner, uint32_t job);

/* Whether the job was accepted. */
bool sl_history_accepted(const sl_history_t *h, uint32_t owner, uint32_t job);

/* Check the history so far (lost = accepted without a result now). */
void sl_history_check(const sl_history_t *h, sl_history_report_t *r);

#endif
