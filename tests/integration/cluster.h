/* Test harness: start the real programs and talk to them as a client does. */
#ifndef SL_TEST_CLUSTER_H
#define SL_TEST_CLUSTER_H

#include <stdint.h>
#include <sys/types.h>

#include "proto/sl_proto.h"

#define CL_MAX_PROCS 16

typedef struct cl {
    char dir[256];                   /* temp dir for ipc endpoints */
    char client_ep[300];             /* scheduler's client endpoint */
    char exec_ep[300];               /* scheduler's executor endpoint */
    pid_t pids[CL_MAX_PROCS];        /* started programs */
    const char *progs[CL_MAX_PROCS]; /* their program names, for their logs */
    int n;                           /* how many */
    void *zctx;                      /* ZeroMQ context of the test */
} cl_t;

/* Make endpoints and a context. A cluster of an earlier case still running
 * (that case failed before its cl_fini) is stopped first, its logs shown. */
void cl_init(cl_t *c, const char *tag);
/* Start build/bin/<prog> with NULL-terminated extra args; returns its slot.
 * Its stderr goes to a log file in the cluster's temp dir. */
int cl_spawn(cl_t *c, const char *prog, const char *const *args);
/* Start the scheduler with extra args. */
int cl_scheduler(cl_t *c, const char *const *args);
/* Start an executor with a name and extra args. */
int cl_executor(cl_t *c, const char *name, const char *const *args);
/* A connected DEALER to the client endpoint. */
void *cl_client(cl_t *c);
/* Status request; returns the reply (free with sl_proto_free) or NULL. */
sl_msg_t *cl_status(void *sock, int timeout_ms);
/* Value of a named counter in a status reply; -1 when absent. */
int64_t cl_counter(const sl_msg_t *status, const char *name);
/* Wait until n executors are registered (or timeout). Returns 0 on success. */
int cl_wait_executors(cl_t *c, void *sock, int n, int timeout_ms);
/* Send a signal to the process in slot i. */
void cl_kill(cl_t *c, int i, int sig);
/* Wait for the process in slot i; returns its exit status or -1 on timeout. */
int cl_wait(cl_t *c, int i, int timeout_ms);
/* Stop everything (SIGTERM, then SIGKILL), copy each program's log to
 * stderr and fail the running case on an ERROR line in one that it did not
 * declare (sl_test_expect_errors), remove the temp dir. */
void cl_fini(cl_t *c);
/* Send a submit for job id with the given prompt length and output. */
void cl_submit(void *sock, const char *id, uint32_t prompt, uint32_t out, int batch);
/* Receive one message with timeout; NULL on timeout. */
sl_msg_t *cl_recv(void *sock, int timeout_ms);

#endif
