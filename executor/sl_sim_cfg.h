/* Knobs of the sim backend's timing model (rows for sl_sim_cfg_t). */
#ifndef SL_SIM_CFG_H
#define SL_SIM_CFG_H

#include "common/sl_cfg.h"
#include "executor/sl_backend.h"

extern const sl_cfg_field_t sl_sim_cfg_fields[];

#endif
