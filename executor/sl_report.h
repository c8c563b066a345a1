/*
 * What an executor reports, made from its engine in one place: a finished
 * engine job becomes the result report (sl_result_report_t) and the
 * engine's load, with the host's measurements, becomes the heartbeat load
 * (sl_exec_load_t). The executor daemon sends what these produce and the
 * simulator feeds the same to the scheduler's core, so both say the same
 * thing about the same engine run.
 */
#ifndef SL_REPORT_H
#define SL_REPORT_H

#include "common/sl_types.h"
#include "executor/sl_engine.h"

/*
 * The report of job, which the engine ended as how with error (the done
 * callback's arguments). Timings are measured from the job's arrival at the
 * engine, in nanoseconds cut to whole microseconds (the wire's unit, so
 * a report decoded from a Completion equals the one made here). out->tokens and
 * out->error borrow from job and error: valid while job is (until the
 * embedder frees or reuses it). error NULL gives "". Never fails.
 */
void sl_engine_job_report(const sl_engine_job_t *job, sl_engine_done_t how, const char *error,
                          sl_result_report_t *out);

/*
 * The heartbeat load from the engine's load and the host's measurements
 * (host NULL: none were taken, so the host's CPU, GPU and GPU memory are
 * reported unknown, never guessed). Never fails.
 */
void sl_engine_load_report(const sl_engine_load_t *engine, const sl_host_sample_t *host,
                           sl_exec_load_t *out);

#endif
