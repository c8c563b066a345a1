/*
 * Marking of ZeroMQ sockets with an IP TOS byte (DSCP << 2), so that the
 * network can tell control traffic from bulk traffic. Proto owns it because
 * proto owns the sockets; which byte a traffic class gets is the caller's
 * knowledge (for the transport's classes: sl_xport_class_tos()).
 */
#ifndef SL_WIRE_MARK_H
#define SL_WIRE_MARK_H

#include <sluice/status.h>

/* Set ZMQ_TOS on zsock (before it binds or connects; the caller keeps the
 * socket). SL_ERR_INVALID for a NULL socket or a tos outside 0..255;
 * SL_ERR_IO (logged) when ZeroMQ refuses. */
sl_status_t sl_wire_sock_mark(void *zsock, int tos);

/* Connect zsock to every endpoint of a comma-separated list: the
 * schedulers that may lead (a standby binds nothing until it leads, so only
 * the leader's connection completes). With more than one, ZMQ_IMMEDIATE is
 * set first, so that messages go only to a completed connection, never
 * into the queue of a scheduler that is not there. SL_ERR_INVALID for an
 * empty list or an endpoint over 255 bytes; SL_ERR_IO (errno set by
 * ZeroMQ) when a connect is refused. */
sl_status_t sl_wire_connect_list(void *zsock, const char *endpoints);

#endif
