/*
 * The client's knobs as rows of a configuration table (common/sl_cfg.h), so
 * the `sluice` CLI and the load generator expose the same flags and SLUICE_*
 * variables. Internal: not installed.
 *
 * SL_CLIENT_CFG_ROWS(st, m, wait) expands to the rows for an sl_client_cfg_t
 * that is member m of config struct st, with wait (a string) as the default
 * of wait-timeout-ms; put it inside the program's table.
 * SL_CLIENT_CFG_ENDPOINT_ROW(st, m) is its endpoint and key rows alone (sluice status).
 */
#ifndef SL_CLIENT_CFG_H
#define SL_CLIENT_CFG_H

#include <sluice/client.h>

#include "common/sl_cfg.h"

_Static_assert(SL_CLIENT_ENDPOINT_MAX == SL_CFG_STR_MAX, "endpoint must be a config string");

/* One knob per row reads better than the formatter's layout. */
/* clang-format off */
#define SL_CLIENT_CFG_ENDPOINT_ROW(st, m)                                                              \
    SL_CFG_FIELD(st, m.endpoint, "endpoint", "tcp://127.0.0.1:5555", SL_CFG_STR,                   \
                 "scheduler's client endpoint; a comma-separated list for a leader and its "     \
                 "standbys"),                                                                      \
    SL_CFG_FIELD(st, m.key_dir, "key-dir", "", SL_CFG_STR,                                         \
                 "CURVE key directory: own pair and server.pub (`sluice keygen`)"),                \
    SL_CFG_FIELD(st, m.key_name, "key-name", "", SL_CFG_STR,                                       \
                 "own pair NAME.key in --key-dir (empty: client.key, else the one *.key)"),       \
    SL_CFG_FIELD(st, m.insecure, "insecure", "false", SL_CFG_BOOL,                                 \
                 "talk plain text without keys (logged as a warning)")
#define SL_CLIENT_CFG_ROWS(st, m, wait)                                                                \
    SL_CLIENT_CFG_ENDPOINT_ROW(st, m),                                                             \
    SL_CFG_RANGE(st, m.ack_timeout_ms, "ack-timeout-ms", "5000", SL_CFG_INT, 1, 3600000,           \
                 "resend a Submit not answered (Accepted/Busy) within this"),                      \
    SL_CFG_RANGE(st, m.ack_retries, "ack-retries", "3", SL_CFG_INT, 0, 1000,                       \
                 "resends of an unanswered Submit before giving up"),                              \
    SL_CFG_RANGE(st, m.result_timeout_ms, "result-timeout-ms", "0", SL_CFG_INT, 0, 86400000,       \
                 "give up on an accepted job after this (0 = never)"),                             \
    SL_CFG_RANGE(st, m.wait_timeout_ms, "wait-timeout-ms", wait, SL_CFG_INT, 0, 86400000,           \
                 "bound of a blocking submit or status call (0 = none)"),                          \
    SL_CFG_RANGE(st, m.max_inflight, "max-inflight", "100000", SL_CFG_INT, 1, 10000000,            \
                 "jobs pending at once in the client"),                                            \
    SL_CFG_RANGE(st, m.sndhwm, "sndhwm", "100000", SL_CFG_INT, 0, 100000000,                       \
                 "ZeroMQ send/receive high-water mark in messages"),                               \
    SL_CFG_RANGE(st, m.linger_ms, "linger-ms", "0", SL_CFG_INT, -1, 3600000,                       \
                 "how long unsent messages survive closing (-1 = forever)"),                       \
    SL_CFG_FIELD(st, m.seed, "seed", "0", SL_CFG_I64, "seed of the retry jitter (0 = random)"),    \
    SL_CFG_RANGE(st, m.submit_batch, "submit-batch", "256", SL_CFG_INT, 1, 4096,                   \
                 "async submits sent in one message at most (1 = one message each)"),             \
    SL_CFG_RANGE(st, m.backoff.max_retries, "retries", "5", SL_CFG_INT, 0, 1000,                   \
                 "retries after BUSY before giving up (0 = fail at once)"),                        \
    SL_CFG_RANGE(st, m.backoff.base_ms, "backoff-base-ms", "1000", SL_CFG_INT, 0, 3600000,         \
                 "nominal delay of the first retry after BUSY"),                                   \
    SL_CFG_RANGE(st, m.backoff.cap_ms, "backoff-cap-ms", "10000", SL_CFG_INT, 0, 3600000,          \
                 "largest backoff delay"),                                                         \
    SL_CFG_RANGE(st, m.backoff.multiplier, "backoff-multiplier", "2", SL_CFG_DOUBLE, 1, 100,       \
                 "growth of the backoff per retry"),                                               \
    SL_CFG_RANGE(st, m.backoff.jitter, "backoff-jitter", "1", SL_CFG_DOUBLE, 0, 10,                \
                 "jitter window relative to the nominal delay"),                                   \
    SL_CFG_RANGE(st, m.backoff.first_jitter, "backoff-first-jitter", "0.25", SL_CFG_DOUBLE, 0, 10, \
                 "jitter window of the first retry"),                                              \
    SL_CFG_RANGE(st, m.backoff.retry_after_jitter, "retry-after-jitter", "0.5", SL_CFG_DOUBLE, 0,  \
                 10, "jitter window above the scheduler's retry-after"),                          \
    SL_CFG_RANGE(st, m.backoff.retry_after_max_ms, "retry-after-max-ms", "60000", SL_CFG_INT, 0,   \
                 3600000, "largest delay a retry-after can impose")
/* clang-format on */

#endif
