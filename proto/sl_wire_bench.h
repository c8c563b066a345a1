/*
 * The measurement behind `sluice-bench codec`: proto's fast codec against
 * protobuf-c on the four batch bodies, built as the control plane builds
 * them. Kept in proto/ because it times proto's internals.
 */
#ifndef SL_WIRE_BENCH_H
#define SL_WIRE_BENCH_H

/* Print the table and the RESULT line for batches of `items` items, medians
 * of `rounds` rounds of duration_ms per measurement. Returns the exit
 * status (0, or 1 on failure, said on stderr). */
int sl_wire_codec_bench(int items, int rounds, int duration_ms);

#endif
