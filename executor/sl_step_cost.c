/*
 * An executor's step cost model (see sl_step_cost.h).
 *
 * Idea: a step's time is linear in its make-up, as the engines' cost
 * models have it (Vidur, DistServe's profiling): a fixed cost when it
 * computes prompt tokens, a cost per prompt token and per attention pair,
 * and, when it decodes, a fixed cost (the weights read once), a cost per
 * sequence and per context token read. The executor sees every step's
 * make-up and how long it took, so it fits the coefficients itself, by
 * recursive least squares with slow forgetting (about the last 2,000
 * steps), and sends them with its load. The scheduler then knows what a
 * prompt costs on that executor from the executor's own measurements,
 * where its load model sees only whole TTFTs, which also hold the waits
 * and the prompts placed after a job that shared its steps.
 * On the simulator's backend (a cost law linear in the same features) the
 * fit is exact; on hardware it carries the law's misfit, and the
 * heartbeat says nothing until the fit has seen enough of both kinds of
 * step (sl_step_cost_ready).
 * Alternatives rejected: profiling offline (a table per model, GPU and
 * engine version, stale on a throttled or shared GPU); fitting in the
 * scheduler from job times (the confusion just described).
 */
#include "executor/sl_step_cost.h"

#include <math.h>
#include <string.h>

#define S_FORGET 0.9995 /* per step */
#define S_P_INIT 1e6 /* starting variance of each coefficient (seconds^2): no prior to speak of */
#define S_P_TRACE_MAX 1e7 /* bound on the covariance trace (forgetting inflates it) */
#define S_READY_STEPS 64  /* steps learned before the fit is reported */
#define S_READY_KIND 16   /* ...with at least this many that computed prompts, and that decoded */
#define S_READY_AGREE 4   /* or sooner: this many steps in a row of each kind predicted... */
#define S_READY_TOL 0.02  /* ...within this share of their time before it learned them */
#define S_DRIFT_RATE (1.0 / 16) /* weight of a step in the drift (mean signed relative error) */
#define S_DRIFT_MAX 0.10        /* past this drift the steps changed: old ones count for little */
#define S_DRIFT_BOOST 1e3       /* the covariance's growth then (the old steps' weight / it) */

void sl_step_cost_features(uint32_t n_prefill, uint64_t prefill_tokens, double attn_pairs,
                           uint32_t n_decode, uint64_t decode_ctx, double x[SL_STEP_COST_N])
{
    x[SL_SC_PREFILL_BASE] = n_prefill > 0 ? 1.0 : 0.0;
    x[SL_SC_PREFILL_KTOK] = (double)prefill_tokens / 1e3;
    x[SL_SC_PREFILL_ATTN] = attn_pairs / 1e6;
    x[SL_SC_DECODE_BASE] = n_decode > 0 ? 1.0 : 0.0;
    x[SL_SC_DECODE_SEQ] = n_decode / 32.0;
    x[SL_SC_DECODE_MCTX] = (double)decode_ctx / 1e6;
}

void sl_step_cost_init(sl_step_cost_t *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < SL_STEP_COST_N; i++)
        c->p[i][i] = S_P_INIT;
}

void sl_step_cost_learn(sl_step_cost_t *c, const double x[SL_STEP_COST_N], double seconds)
{
    enum { N = SL_STEP_COST_N };
    if (!(seconds > 0) || !isfinite(seconds))
        return; /* a step of no time was not measured (a backend that does nothing) */
    double px[N], k[N], den = S_FORGET, err = seconds;
    for (int i = 0; i < N; i++) {
        px[i] = 0;
        for (int j = 0; j < N; j++)
            px[i] += c->p[i][j] * x[j];
        den += x[i] * px[i];
        err -= c->th[i] * x[i];
    }
    if (!(den > 1e-12))
        return;
    bool agree = fabs(err) <= S_READY_TOL * seconds; /* predicted before it learns the step */
    /* The executor slowed down or sped up (throttling, a neighbour): its
     * steps run long or short of the fit, step after step. Forgetting alone
     * takes thousands of steps to follow; raising the covariance makes the
     * steps before count for a thousandth of what they did, so the next few
     * dozen set the fit (the direction they do not explore keeps the old
     * value). */
    c->drift += S_DRIFT_RATE * (err / seconds - c->drift);
    if (c->ready && fabs(c->drift) > S_DRIFT_MAX) {
        double tr = 0;
        for (int i = 0; i < N; i++)
            tr += c->p[i][i];
        double boost = tr * S_DRIFT_BOOST < S_P_TRACE_MAX ? S_DRIFT_BOOST : S_P_TRACE_MAX / tr;
        for (int i = 0; i < N; i++) {
            px[i] *= boost;
            for (int j = 0; j < N; j++)
                c->p[i][j] *= boost;
        }
        den = S_FORGET + (den - S_FORGET) * boost;
        c->drift = 0;
        c->resets++;
    }
    if (x[SL_SC_PREFILL_BASE] > 0)
        c->agree_prefill = agree ? c->agree_prefill + 1 : 0;
    if (x[SL_SC_DECODE_BASE] > 0)
        c->agree_decode = agree ? c->agree_decode + 1 : 0;
    double inv_den = 1.0 / den, inv_forget = 1.0 / S_FORGET;
    for (int i = 0; i < N; i++) {
        k[i] = px[i] * inv_den;
        c->th[i] += k[i] * err;
    }
    double tr = 0;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++)
            c->p[i][j] = (c->p[i][j] - k[i] * px[j]) * inv_forget;
        tr += c->p[i][i];
    }
    bool sane = isfinite(tr);
    for (int i = 0; i < N && sane; i++) {
        sane = isfinite(c->th[i]) && c->p[i][i] > 0;
        for (int j = i + 1; j < N; j++)
            c->p[i][j] = c->p[j][i] = 0.5 * (c->p[i][j] + c->p[j][i]);
    }
    if (!sane) { /* rounding broke it: start over */
        sl_step_cost_init(c);
        return;
    }
    if (tr > S_P_TRACE_MAX)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                c->p[i][j] *= S_P_TRACE_MAX / tr;
    c->steps++;
    c->prefill_steps += x[SL_SC_PREFILL_BASE] > 0;
    c->decode_steps += x[SL_SC_DECODE_BASE] > 0;
    if ((c->steps >= S_READY_STEPS && c->prefill_steps >= S_READY_KIND &&
         c->decode_steps >= S_READY_KIND) ||
        (c->agree_prefill >= S_READY_AGREE && c->agree_decode >= S_READY_AGREE))
        c->ready = true;
}

bool sl_step_cost_ready(const sl_step_cost_t *c)
{
    return c->ready;
}
