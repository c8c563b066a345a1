/*
 * sluice-sim matrix: `compare` over a matrix of scenarios (traces, fleets,
 * failures, cluster sizes, priority mixes), one process per cell, merged
 * into one table, a CSV, plots and a RESULT line (sim_matrix.c).
 */
#ifndef SL_SIM_MATRIX_H
#define SL_SIM_MATRIX_H

/* The command's main: argv[0] is "matrix", the rest its options. Returns
 * the exit status: 0 when every cell printed a RESULT, 1 when one failed
 * or an output could not be written, 2 for a bad option. */
int sl_sim_matrix_main(int argc, char **argv);

#endif
