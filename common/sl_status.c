/*
 * Names for sl_status_t. A switch rather than a table indexed by the value:
 * the values are sparse and negative, and a switch lets the compiler warn
 * when a new status is added without a name.
 */
#include <sluice/status.h>

const char *sl_status_str(sl_status_t status)
{
    switch (status) {
    case SL_OK:
        return "ok";
    case SL_ERR_INVALID:
        return "invalid argument";
    case SL_ERR_NOMEM:
        return "out of memory";
    case SL_ERR_NOT_FOUND:
        return "not found";
    case SL_ERR_EXISTS:
        return "already exists";
    case SL_ERR_AGAIN:
        return "try again";
    case SL_ERR_TIMEOUT:
        return "timed out";
    case SL_ERR_UNSUPPORTED:
        return "unsupported";
    case SL_ERR_IO:
        return "i/o error";
    case SL_ERR_OVERFLOW:
        return "capacity exceeded";
    case SL_ERR_CANCELED:
        return "canceled";
    case SL_ERR_SHUTDOWN:
        return "shutting down";
    case SL_ERR_ID_COLLISION:
        return "id collides with others";
    case SL_ERR_REENTERED:
        return "re-entered from a callback";
    case SL_ERR_MSG_MALFORMED:
        return "malformed message";
    case SL_ERR_MSG_TOO_BIG:
        return "message too big";
    case SL_ERR_MSG_VERSION:
        return "unsupported protocol version";
    case SL_ERR_MSG_RANGE:
        return "field out of range";
    case SL_ERR_MSG_UNEXPECTED:
        return "unexpected message";
    case SL_ERR_LINK:
        return "link failed";
    case SL_ERR_PEER_LOST:
        return "peer lost";
    case SL_ERR_EXEC_LOST:
        return "executor lost";
    case SL_ERR_JOB_FAILED:
        return "job failed";
    case SL_ERR_NO_EXECUTOR:
        return "no executor";
    case SL_ERR_BUSY:
        return "busy";
    case SL_ERR_DEADLINE:
        return "deadline cannot be met";
    case SL_ERR_RETRIES:
        return "retries exhausted";
    }
    return "unknown status";
}
