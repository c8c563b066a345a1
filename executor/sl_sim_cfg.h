/* Knobs of the sim backend's timing model (rows for sl_sim_cfg_t). */
#ifndef SL_SIM_CFG_H
#define SL_SIM_CFG_H

#include "common/sl_cfg.h"
#include "executor/sl_backend.h"

extern const sl_cfg_field_t sl_sim_cfg_fields[];

/*
 * Seconds an empty executor with model m takes to the first token of a
 * prompt of prompt_tokens uncached tokens (one prefill step of the whole
 * prompt), divided by m->speed. The base of the TTFT SLO that the simulator
 * and the load generator judge jobs by (POLICIES.md). Pure.
 */
double sl_sim_cfg_unloaded_ttft(const sl_sim_cfg_t *m, uint32_t prompt_tokens);

#endif
