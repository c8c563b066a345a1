/*
 * Marking of ZeroMQ sockets with an IP TOS byte (see sl_wire_mark.h).
 *
 * One setsockopt behind a checked range. It lives with the sockets, in
 * proto/, rather than with the traffic classes in transport/, so that the
 * transport (a UCX data plane) does not link ZeroMQ for it: the transport
 * says which byte a class gets (sl_xport_class_tos), and whoever owns a
 * socket combines the two. Rejected: taking the transport's configuration
 * here (proto would depend on transport, a layer above it).
 *
 * Connecting to a list of schedulers lives here too, for the same reason
 * (the executor's link, its log shipping and weights sockets, and
 * libsluice share it).
 */
#include "proto/sl_wire_mark.h"

#include <string.h>
#include <zmq.h>

#include "common/sl_log.h"

sl_status_t sl_wire_sock_mark(void *zsock, int tos)
{
    if (!zsock || tos < 0 || tos > 255)
        return SL_ERR_INVALID;
    if (zmq_setsockopt(zsock, ZMQ_TOS, &tos, sizeof(tos)) != 0) {
        SL_ERROR("wire: zmq_setsockopt(ZMQ_TOS=%d): %s", tos, zmq_strerror(zmq_errno()));
        return SL_ERR_IO;
    }
    return SL_OK;
}

sl_status_t sl_wire_connect_list(void *zsock, const char *endpoints)
{
    if (!zsock || !endpoints || !endpoints[0])
        return SL_ERR_INVALID;
    int n = 1;
    for (const char *p = endpoints; *p; p++)
        n += *p == ',';
    if (n > 1) {
        int one = 1;
        if (zmq_setsockopt(zsock, ZMQ_IMMEDIATE, &one, sizeof(one)) != 0)
            return SL_ERR_IO;
    }
    const char *p = endpoints;
    while (*p) {
        size_t len = strcspn(p, ",");
        char ep[256];
        if (len >= sizeof(ep))
            return SL_ERR_INVALID;
        memcpy(ep, p, len);
        ep[len] = '\0';
        if (len && zmq_connect(zsock, ep) != 0)
            return SL_ERR_IO;
        p += len;
        if (*p == ',')
            p++;
    }
    return SL_OK;
}
