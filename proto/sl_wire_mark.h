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

#endif
