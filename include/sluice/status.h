/*
 * One status type for the whole project. SL_OK is zero; errors are negative
 * and grouped by how much a caller has to tear down:
 *   -1..-19   local, nothing to undo beyond the call (bad argument, no memory)
 *   -20..-39  a bad message: drop it, count it, keep the link
 *   -40..-59  a lost link or peer: drop the connection
 *   -60..-79  a lost executor or job-level failure: requeue its work
 *   -80..-99  admission: the request was refused, try later
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_status {
    SL_OK = 0,

    SL_ERR_INVALID = -1,       /* bad argument or configuration */
    SL_ERR_NOMEM = -2,         /* allocation failed */
    SL_ERR_NOT_FOUND = -3,     /* no such object */
    SL_ERR_EXISTS = -4,        /* object already exists */
    SL_ERR_AGAIN = -5,         /* nothing available now, try again */
    SL_ERR_TIMEOUT = -6,       /* a deadline passed */
    SL_ERR_UNSUPPORTED = -7,   /* not available in this build or on this host */
    SL_ERR_IO = -8,            /* a system call or library call failed */
    SL_ERR_OVERFLOW = -9,      /* a fixed capacity was exceeded */
    SL_ERR_CANCELED = -10,     /* the operation was canceled */
    SL_ERR_SHUTDOWN = -11,     /* the component is shutting down */
    SL_ERR_ID_COLLISION = -12, /* an id's hash collides with others on every probe */
    SL_ERR_REENTERED = -13,    /* called from inside one of the callee's own callbacks */

    SL_ERR_MSG_MALFORMED = -20,  /* a message could not be decoded */
    SL_ERR_MSG_TOO_BIG = -21,    /* a message or field exceeds its limit */
    SL_ERR_MSG_VERSION = -22,    /* unsupported protocol version */
    SL_ERR_MSG_RANGE = -23,      /* a field is out of its valid range */
    SL_ERR_MSG_UNEXPECTED = -24, /* a valid message in the wrong place */

    SL_ERR_LINK = -40,      /* a link failed */
    SL_ERR_PEER_LOST = -41, /* the peer is gone */

    SL_ERR_EXEC_LOST = -60,   /* the executor running the job was lost */
    SL_ERR_JOB_FAILED = -61,  /* the job failed on the executor */
    SL_ERR_NO_EXECUTOR = -62, /* no executor can run the job */

    SL_ERR_BUSY = -80,     /* refused: the cluster is busy, retry later */
    SL_ERR_DEADLINE = -81, /* refused: the deadline cannot be met */
    SL_ERR_RETRIES = -82,  /* gave up after the configured retries */
} sl_status_t;

/* A short, static, human-readable name for a status; never NULL. */
const char *sl_status_str(sl_status_t status);

#ifdef __cplusplus
}
#endif
#endif
