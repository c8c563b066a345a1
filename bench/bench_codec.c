/*
 * sluice-bench codec: proto's fast codec against protobuf-c on the four
 * batch bodies that carry every job. This file parses the flags; the
 * measurement is proto's own (proto/sl_wire_bench.c), since it times
 * internals that nothing outside proto/ touches.
 */
#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "proto/sl_wire_bench.h"

typedef struct s_codec_cfg {
    int items;       /* items per batch */
    int rounds;      /* alternations; the figures are medians */
    int duration_ms; /* time of each measurement */
} s_codec_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_RANGE(s_codec_cfg_t, items, "items", "256", SL_CFG_INT, 1, 4096,
                 "items per batch message"),
    SL_CFG_RANGE(s_codec_cfg_t, rounds, "rounds", "7", SL_CFG_INT, 1, 1000,
                 "rounds of protobuf-c then the codec; the figures are the medians"),
    SL_CFG_RANGE(s_codec_cfg_t, duration_ms, "duration-ms", "100", SL_CFG_INT, 1, 60000,
                 "time of each measurement"),
    SL_CFG_END,
};

int sl_bench_codec_main(int argc, char **argv)
{
    s_codec_cfg_t cfg;
    int early = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (early >= 0)
        return early;
    return sl_wire_codec_bench(cfg.items, cfg.rounds, cfg.duration_ms);
}
