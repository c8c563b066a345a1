/*
 * gnuplot for the simulator's commands (compare, matrix): their scripts
 * name their files relative to the output folder, so the folder can be
 * moved and replotted.
 */
#ifndef SL_SIM_PLOT_H
#define SL_SIM_PLOT_H

/* Run gnuplot on script inside dir, its output on /dev/null. No shell: the
 * folder's name is never quoted into a command line. Returns gnuplot's
 * exit status, 127 when gnuplot is not installed, -1 when it cannot be
 * started or did not exit. */
int sl_sim_gnuplot(const char *dir, const char *script);

#endif
