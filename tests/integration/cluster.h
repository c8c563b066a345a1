/* Test harness: start the real programs and talk to them as a client does. */
#ifndef SL_TEST_CLUSTER_H
#define SL_TEST_CLUSTER_H

#include <stdint.h>
#include <sys/types.h>

#include "common/sl_auth.h"
#include "proto/sl_wire.h"

#include <stdbool.h>

#define CL_MAX_PROCS 16

typedef struct cl {
    char dir[256];                   /* temp dir for ipc endpoints */
    char client_ep[300];             /* scheduler's client endpoint */
    char exec_ep[300];               /* scheduler's executor endpoint */
    pid_t pids[CL_MAX_PROCS];        /* started programs */
    const char *progs[CL_MAX_PROCS]; /* their program names, for their logs */
    int n;                           /* how many */
    void *zctx;                      /* ZeroMQ context of the test */
    char key_dir[300];               /* <dir>/keys: server, client and executor pairs, the
                                        allow-lists (client tenant "test", executor "executors") */
    char client_keys[400];           /* "--key-dir=... --key-name=client" for a client program */
    char key_dir_arg[320];           /* "--key-dir=..." alone (with "--key-name=client") */
    sl_auth_keys_t client_key;       /* the client pair (cl_client's keys) */
    sl_auth_keys_t executor_key;     /* the executor pair */
    sl_auth_keys_t server_key;       /* the scheduler's pair (server_key = its public) */
    bool insecure;                   /* the scheduler was started --insecure: cl_client is plain */
} cl_t;

/* Make endpoints, a key directory and a context. A cluster of an earlier
 * case still running (that case failed before its cl_fini) is stopped
 * first, its logs shown. The programs started run with the keys (--key-dir)
 * unless their arguments say --insecure. */
void cl_init(cl_t *c, const char *tag);
/* Start build/bin/<prog> with NULL-terminated extra args; returns its slot.
 * Its stderr goes to a log file in the cluster's temp dir. */
int cl_spawn(cl_t *c, const char *prog, const char *const *args);
/* Start the scheduler with extra args. */
int cl_scheduler(cl_t *c, const char *const *args);
/* Start an executor with a name and extra args. */
int cl_executor(cl_t *c, const char *name, const char *const *args);
/* A connected DEALER to the client endpoint, a CURVE client with the client pair. */
void *cl_client(cl_t *c);
/* Make sock (not yet connected) a CURVE client with keys (c->client_key or
 * c->executor_key), or a CURVE server with the scheduler's pair when keys
 * is c->server_key (a test playing the scheduler; its context has no ZAP
 * handler, so every client key is admitted). */
void cl_secure(void *sock, const sl_auth_keys_t *keys, const cl_t *c);
/* Status request; returns the reply (free with sl_wire_msg_free) or NULL. */
sl_wire_msg_t *cl_status(void *sock, int timeout_ms);
/* Value of a named counter in a status reply; -1 when absent. */
int64_t cl_counter(const sl_wire_msg_t *status, const char *name);
/* One counter of the scheduler, -1 when no status reply came within 2 s
 * (a scheduler restarting: unlike cl_status_counter, no failed assert). */
int64_t cl_counter_or(void *sock, const char *name);
/* Wait until that counter reaches at least min; its last value. */
int64_t cl_wait_counter(void *sock, const char *name, int64_t min, int timeout_ms);
/* A status request (a reply must come within 2 s) and one counter of it. */
int64_t cl_status_counter(void *sock, const char *name);
/* Executor i of a status reply. */
sl_wire_exec_status_t cl_status_exec(const sl_wire_msg_t *status, uint32_t i);
/* Executors listed in a status reply. */
uint32_t cl_status_execs(const sl_wire_msg_t *status);
/* Wait until n executors are registered (or timeout). Returns 0 on success. */
int cl_wait_executors(cl_t *c, void *sock, int n, int timeout_ms);
/* Whether the log of the process in slot has a line containing text. */
int cl_log_has(const cl_t *c, int slot, const char *text);
/* Send a signal to the process in slot i. */
void cl_kill(cl_t *c, int i, int sig);
/* Wait for the process in slot i; returns its exit status or -1 on timeout. */
int cl_wait(cl_t *c, int i, int timeout_ms);
/* Stop everything (SIGTERM, then SIGKILL), copy each program's log to
 * stderr and fail the running case on an ERROR line in one that it did not
 * declare (sl_test_expect_errors), remove the temp dir. */
void cl_fini(cl_t *c);
/* Send a submit (a batch of one) for job id with the given prompt length and output. */
void cl_submit(void *sock, const char *id, uint32_t prompt, uint32_t out, int batch);
/* A job description for cl_submit's arguments (id borrowed). */
sl_job_desc_t cl_job(const char *id, uint32_t prompt, uint32_t out, int batch);
/* Receive one message with timeout; NULL on timeout. */
sl_wire_msg_t *cl_recv(void *sock, int timeout_ms);

/* What a client hears, one answer at a time: the items of a results batch
 * come one by one (accepted first, then busy, then results). */
typedef enum cl_ev_kind {
    CL_EV_ACCEPTED, /* job_id accepted */
    CL_EV_BUSY,     /* busy */
    CL_EV_RESULT,   /* result */
    CL_EV_ERROR,    /* error */
    CL_EV_CHUNK,    /* chunk */
    CL_EV_STATUS,   /* a status reply (msg) */
} cl_ev_kind_t;

typedef struct cl_ev {
    cl_ev_kind_t kind;       /* what it is */
    const char *job_id;      /* the job it is about ("" when none) */
    sl_wire_busy_t busy;     /* CL_EV_BUSY */
    sl_wire_result_t result; /* CL_EV_RESULT */
    sl_wire_error_t error;   /* CL_EV_ERROR */
    sl_wire_chunk_t chunk;   /* CL_EV_CHUNK */
    sl_wire_msg_t *msg;      /* the message it came in (a reference; cl_ev_free drops it) */
} cl_ev_t;

/* The next answer on sock within timeout_ms: true with *ev filled, false
 * on timeout. Items of one batch are kept per socket between calls. */
bool cl_next(void *sock, int timeout_ms, cl_ev_t *ev);
/* Drop the event's reference to its message. */
void cl_ev_free(cl_ev_t *ev);

#endif
