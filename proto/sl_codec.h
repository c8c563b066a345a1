/*
 * Protocol layer: the fast codec for the protobuf messages of sluice.proto.
 *
 * It reads and writes the same bytes and the same generated structs as
 * protobuf-c, driven by protobuf-c's own generated descriptors, for the
 * canonical encodings this project's programs write. Anything else (an
 * unknown field, a sub-message or oneof given twice, a repeated scalar not
 * packed, a malformed or truncated encoding) is left to protobuf-c, which
 * stays the judge of what is valid. sl_proto_decode and the wire layer use
 * it; nothing else should need to.
 */
#ifndef SL_CODEC_H
#define SL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* An allocator: size bytes aligned for any type, or NULL. Nothing is freed
 * one by one (an arena). */
typedef void *(*sl_codec_alloc_fn)(void *data, size_t size);

/* sl_codec_decode's answers. */
#define SL_CODEC_DONE 1     /* decoded: *msg_p is set */
#define SL_CODEC_DEFER 0    /* not a canonical encoding: ask protobuf-c */
#define SL_CODEC_NOMEM (-1) /* the allocator failed */

/*
 * Decode len bytes at buf as a message of descriptor desc into memory from
 * alloc (the message first, then its parts). On SL_CODEC_DONE *msg_p holds
 * what protobuf_c_message_unpack would return for the same bytes. On
 * SL_CODEC_DEFER or SL_CODEC_NOMEM whatever was allocated is garbage for the
 * caller to drop.
 */
int sl_codec_decode(const ProtobufCMessageDescriptor *desc, const void *buf, size_t len,
                    sl_codec_alloc_fn alloc, void *alloc_data, ProtobufCMessage **msg_p);

/*
 * Encode msg so that its last byte is hi[-1]: the bytes protobuf-c packs
 * for it. Returns the first byte, or NULL when lo would be passed (nothing
 * useful is left in [lo, hi) then). The encoding runs backwards, so every
 * length is known when it is written and no message is sized twice.
 */
uint8_t *sl_codec_encode(const ProtobufCMessage *msg, uint8_t *lo, uint8_t *hi);

#endif
