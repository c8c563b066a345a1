/*
 * The core's learned state saved to and restored from a buffer (see
 * sl_core.h): a versioned text header, then the load model's shared prior
 * (sl_load_model_save). Text, so an operator can read what was learned and
 * a version mismatch is caught by a header, not by misread bytes; per
 * executor models are not kept (executors come back under other loads).
 * Where the bytes are kept is the embedder's business: the daemon writes
 * them to --state-file at exit and reads them back at start.
 */
#include "scheduler/core/sl_core_int.h"
#include "scheduler/core/sl_text.h"

#include <string.h>

#define S_MAGIC "sluice-scheduler-state"
#define S_HEADER S_MAGIC " 1\n"

sl_status_t sl_core_state_save(const sl_core_t *core, char *buf, size_t cap, size_t *len_p)
{
    size_t hdr = strlen(S_HEADER), model_len = 0;
    sl_status_t st = sl_load_model_save(core->model, cap > hdr ? buf + hdr : NULL,
                                        cap > hdr ? cap - hdr : 0, &model_len);
    *len_p = hdr + model_len;
    if (st != SL_OK)
        return st;
    memcpy(buf, S_HEADER, hdr);
    return SL_OK;
}

sl_status_t sl_core_state_load(sl_core_t *core, const char *buf, size_t len)
{
    if (sl_core_reentered(core, "sl_core_state_load"))
        return SL_ERR_REENTERED;
    sl_text_in_t in = {.pos = buf, .end = buf + len};
    int64_t version;
    const char *why = NULL;
    if (!sl_text_word_is(&in, S_MAGIC) || !sl_text_int(&in, &version)) {
        sl_core_logf(core, SL_CORE_LOG_ERROR, "learned state: not a scheduler state (bad header)");
        return SL_ERR_INVALID;
    }
    if (version != 1) {
        sl_core_logf(core, SL_CORE_LOG_ERROR,
                     "learned state: version %lld, this build reads version 1", (long long)version);
        return SL_ERR_INVALID;
    }
    if (sl_load_model_load(core->model, &in.pos, in.end, &why) != SL_OK) {
        sl_core_logf(core, SL_CORE_LOG_ERROR, "learned state: %s", why);
        return SL_ERR_INVALID;
    }
    return SL_OK;
}
