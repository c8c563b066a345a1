/*
 * Fuzz target "trace": the request-trace reader of the load generator and
 * the simulator (bench/sl_trace.c), on any text as a Mooncake JSON-lines
 * or an Azure CSV trace (the first byte picks the format, auto-detection
 * included), then a schedule built from it (slice, rescale, Poisson
 * resampling: the options come from the next bytes). The trace must come
 * out sorted by arrival with its hashes inside its pool; otherwise the
 * target aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sl_trace.h"
#include "common/sl_log.h"
#include "tests/fuzz/sl_fuzz.h"

static FILE *s_null;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    s_null = fopen("/dev/null", "w");
    return 0;
}

static void s_check(const sl_trace_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const sl_trace_req_t *r = &t->reqs[i];
        if (i && r->t_us < t->reqs[i - 1].t_us)
            abort(); /* not sorted by arrival */
        if (r->n_hashes && (!r->hashes || r->hashes < t->hash_pool ||
                            r->hashes + r->n_hashes > t->hash_pool + t->n_hash_pool))
            abort(); /* hashes outside the pool */
    }
    (void)sl_trace_rate(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_fuzz_in_t in = {data, size};
    uint8_t fmt = sl_fuzz_u8(&in), o1 = sl_fuzz_u8(&in), o2 = sl_fuzz_u8(&in);
    FILE *err = stderr;
    if (s_null)
        stderr = s_null;
    sl_trace_t *t = NULL;
    sl_status_t st =
        sl_trace_parse((const char *)in.p, in.left, (sl_trace_format_t)(fmt % 3), "fuzz", &t);
    if (st == SL_OK) {
        s_check(t);
        sl_trace_opts_t o = {
            .start_s = (o1 & 1) ? 0.5 : 0,
            .duration_s = (o1 & 2) ? 2.0 : 0,
            .count = (o1 >> 2) & 7,
            .speedup = (o1 & 32) ? 3.0 : 0,
            .rate = (o1 & 64) ? 1.0 + o2 : 0,
            .poisson = o1 & 128,
            .seed = o2,
        };
        sl_trace_t *s = NULL;
        if (sl_trace_schedule(t, &o, &s) == SL_OK) {
            s_check(s);
            sl_trace_destroy(&s);
        }
        sl_trace_destroy(&t);
    }
    stderr = err;
    return 0;
}
