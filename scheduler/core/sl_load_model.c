/*
 * The learned load model (see sl_load_model.h).
 *
 * Idea: a TTFT is a wait and then a prefill step, and each is learned from
 * its own measurement with recursive least squares (RLS) and exponential
 * forgetting, one small model per executor:
 *   prefill = p0 + p1 * u + p2 * a + p3 * d + p4 * v
 *   wait    = w + q0 + q3 * h + q1 * s + q2 * k
 * with u the uncached prompt tokens (thousands: prefill is compute-bound,
 * linear in them), a = u * (c + u / 2) / 1e6 the attention term (quadratic
 * in the prompt, c the cached tokens), d 1 when jobs are in flight there
 * and v the KV tokens they hold (millions) times the steps the prompt
 * takes, 1 + u / 2048 (the decode work sharing the steps: a step that
 * decodes reads the weights once, whatever the batch, and the KV of every
 * sequence decoding, and a chunked-prefill engine spreads a long prompt
 * over about one step per 2048 tokens, the usual chunk; both replaced the
 * jobs in flight / 32, which charged one decoding sequence a 32nd of what
 * it costs; measured below), s the expected remainder of the step
 * in progress when the job arrives (busy x mean step / 2, from the
 * executor's heartbeat: the share of time it spends in steps and their
 * mean length; a job with nothing ahead still waits out the step it lands
 * in, the larger part of a short prompt's TTFT. It replaced r here: the
 * running count stood in for the step's length and missed how long the
 * steps were; measured below), w the executor's predicted backlog in
 * seconds, k the KV overflow (how far the job plus the jobs in flight
 * exceed the executor's KV capacity, as a fraction of it: the engine then
 * holds the job until others finish) and h 1 when either puts work ahead
 * of the job (a job with nothing ahead starts at once in a chunked-prefill
 * engine, while one behind a backlog also waits out the step it lands in;
 * one intercept for both was biased both ways). The backlog is a "busy until" clock:
 * each dispatch adds the token part of the job's predicted prefill (p1 * u
 * + p2 * a: a step's fixed cost p0 and its decode share are paid once for
 * all the prompts batched into it, so summing whole prefills overstated
 * the backlog many times on short prompts) and, for each full chunk of
 * its tokens (u / 2048), one step's fixed costs (p0 + p3 * d): a long
 * prompt fills steps of its own, each paying them (without them the
 * backlog ran 3% to 9% short on a busy executor, and the jobs behind it
 * were predicted short; measured below), it drains at one second per
 * second, and each job's first token caps it at the work sent since that
 * job (everything sent before it is done). It enters the wait at face
 * value: it is made of this
 * executor's own prefill predictions, so it is already in its seconds,
 * while a coefficient on it would be fitted only on the placements the
 * policy chose (those with little backlog) and went low exactly where it
 * matters.
 * An executor that reports its step cost model (fitted by the executor from
 * its own steps, executor/sl_step_cost.c, sent with its load) is predicted
 * by it instead of the learned prefill: the prompt's tokens and attention
 * and, for each step it takes (u / 2048 rounded up), a step's fixed costs,
 * the prefill's and, while jobs are in flight, the decode's with their KV;
 * the backlog gets those per full chunk. From whole TTFTs the scheduler
 * cannot tell a long prompt's own cost from the stretch the prompts placed
 * after it add when they share its steps, and the learned attention term
 * took that up (three times the engine's on azure-code at 256 executors);
 * the executor sees each step's make-up. Measured by `sluice-sim run` in
 * the eight 16-executor cells (below): mean error 0.115 -> 0.091;
 * azure-code at 256 executors 0.287 -> 0.150. The learned prefill goes on
 * learning and predicts an executor that does not report one. The same
 * costs give s, half a decode step of the jobs in flight (0.091 -> 0.083
 * in those cells; mooncake-synthetic 0.097 -> 0.075).
 * Two predictors per executor. The fleet model (the same RLS fed by every
 * executor, forgetting slower, and slower still in a larger fleet so that
 * its memory spans about the same time: 0.995 per completion up to 16
 * executors, 0.995^(16 / n) for n; at 0.995 a fleet of 256 at 1,540 req/s
 * remembered 0.13 s, and its error on azure-code went 0.254 -> 0.239 with
 * the scaling, 0.172 -> 0.166 at 64, azure-conv at 256 0.178 -> 0.182,
 * every 16-executor cell unchanged; each sample divided by its executor's
 * scale) times the executor's scale: one number, its prefill time over the
 * fleet model's, a running mean in logs, so an executor twice as slow, or
 * one that slows down mid-run, is found within a few jobs, and a new or
 * rejoined one is predicted from the fleet's experience at once. And the
 * executor's own RLS, which takes over once it has learned 64 jobs and its
 * recent error is lower than the fleet's (an executor that differs in
 * shape, not only in speed). Own models alone, first, needed about a
 * hundred jobs per executor to settle, and their errors while settling
 * were most of a run's error on a fleet of mixed speeds.
 * The prefill learns from jobs with nothing ahead of them (the executor's
 * report of when the prompt's first step began, Timings exec_queue_us,
 * splits off any wait); a job behind a backlog teaches the wait what the
 * predicted prefill leaves. The engine's report is not used to split
 * those: under chunked prefill the job's first chunk starts beside the
 * prompts ahead of it, so its "prefill" held their work too.
 * TPOT = t0 + t1 * r, a third tiny RLS (r the jobs in flight there / 32).
 * The step remainder, measured by `sluice-sim run` (16 executors of
 * speeds 1,1,0.5,0.5, 4,000 requests, mean of five loads 0.96x to 1.04x
 * the comparison load): error 0.155 -> 0.130 on azure-conv, 0.109 ->
 * 0.104 on mooncake-conversation, 0.148 and 0.166 -> 0.148 and 0.165 on
 * azure-code and mooncake-synthetic; with both r and s in the wait, 0.165
 * on azure-conv.
 * The decode terms, measured by `sluice-sim run` in the eight 16-executor
 * cells of the scenario matrix without failures, each at its best
 * baseline's capacity: mean error 0.142 -> 0.122, every cell lower (the
 * worst, azure-code on a uniform fleet, 0.200 -> 0.179); with d alone
 * added beside the jobs in flight / 32, 0.135 and mooncake-conversation
 * worse (0.123 -> 0.160); a decode indicator per chunk as well, or the
 * jobs in flight per chunk, made the fits erratic (collinear with the
 * intercept on a busy executor) and errors up to 0.3.
 * The chunks' fixed costs in the backlog, measured the same way: mean error
 * 0.122 -> 0.115, azure-code 0.179 -> 0.138 (uniform) and 0.126 -> 0.105
 * (spread), the others within 0.007; azure-code on 256 executors of the
 * spread fleet worse, 0.239 -> 0.287 (there the fleet model's attention
 * term is three times the engine's, so the token part already overstates
 * a long prompt's work: a backlog 40% above the real wait on the fastest
 * executors). The KV the decoding jobs read per chunk (p4 * v's share)
 * as well: the same at 16 executors, 0.330 on that cell.
 * The error is prequential: each prediction is scored against its outcome
 * before the model learns from that outcome.
 *
 * Alternatives rejected: one regression on the whole TTFT with the backlog
 * as a feature (the random part of the waits blurred the prefill cost, and
 * the backlog coefficient collapsed as described above); gradient-boosted
 * trees as a sidecar service (llm-d: hundreds of predictions per second per
 * sidecar; here a prediction is a dozen multiply-adds, called once per
 * candidate in the scheduler's thread); plain SGD (needs a learning rate
 * per feature scale; RLS is scale-free and converges in about as many
 * samples as there are features); one global model without scales (cannot
 * tell a slow executor from a loaded one).
 */
#include "scheduler/core/sl_load_model.h"
#include "scheduler/core/sl_text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The two halves of a TTFT and the features each one reads, as indices
 * into the feature vector x of a prediction. */
#define S_NP 5 /* prefill step: 1, uncached ktokens, attention term, decoding, decode context */
#define S_NW 4 /* wait before it beyond the backlog: 1, work ahead, step remainder, KV overflow */
static const int s_xp[S_NP] = {0, 1, 2, 4, 8};
static const int s_xw[S_NW] = {0, 6, 7, 5};
#define S_W_REMAINDER 2 /* the step remainder's place in the wait model */
#define S_NMAX 5
#define S_P_NONNEG 3 /* prefill coefficients kept >= 0 from here (the decode terms) */
#define S_W_NONNEG 1 /* wait coefficients kept >= 0 from here (all but the intercept) */

typedef struct s_rls {
    double th[S_NMAX];        /* coefficients */
    double p[S_NMAX][S_NMAX]; /* inverse information (covariance) */
} s_rls_t;

typedef struct s_exec {
    /* What every prediction reads, in the record's first two cache lines
     * (the records are aligned to them): a prediction for a candidate not
     * seen lately misses on each line it touches, and a decision makes a
     * dozen or more. The coefficient vectors are copies of the models'
     * below, made whenever those learn (s_mirror). */
    _Alignas(64) sl_time_t last_sent; /* last dispatch to it (or its reset) */
    double th_prefill[S_NP];          /* prefill.th */
    double th_wait[S_NW];             /* wait.th */
    double th_tpot[SL_LM_NT];         /* tpot.th */
    bool own;                         /* its own model predicts it (it has proved better) */
    s_rls_t prefill;                  /* prefill step model */
    s_rls_t wait;                     /* wait model */
    s_rls_t tpot;                     /* TPOT model (first SL_LM_NT entries used) */
    double work_sent;                 /* predicted prefill seconds ever sent to it */
    sl_time_t learn_at;               /* when learn_tokens was last refilled */
    double learn_tokens;              /* completions it may learn from now (token bucket) */
    uint64_t samples;                 /* outcomes learned */
    double log_scale;                 /* log of its time over the fleet model's (its slowness;
                                         exp of it in the model's scale[]) */
    double err_own;                   /* recent relative TTFT error of its own model (EWMA) */
    double err_fleet;                 /* the same of the fleet model times its scale */
} s_exec_t;

struct sl_load_model {
    sl_lm_cfg_t cfg;       /* configuration */
    uint32_t max_execs;    /* table size */
    s_exec_t *execs;       /* per-executor models */
    sl_time_t *busy_until; /* per executor: predicted end of the prefill work sent to it
                            * (apart from execs, so that summing the backlog reads one
                            * dense array rather than a cache line per executor) */
    double *scale;         /* per executor: exp(log_scale), kept (exp is no cheap call per
                            * candidate) in a dense array (the screen reads it for many) */
    s_rls_t prior;         /* shared prefill prior */
    s_rls_t prior_wait;    /* shared wait prior */
    s_rls_t prior_tpot;    /* shared TPOT prior */
    double ape_sum;        /* sum of absolute percentage errors */
    uint64_t n_scored;     /* predictions scored */
    double ape_recent;     /* EWMA of the error */
    double prior_forget;   /* the fleet models' forgetting per completion, for the fleet's
                              size (sl_load_model_fleet) */
    double log_scale_mean; /* the learning executors' log scales, averaged over their
                              completions (EWMA): the fleet model is kept at 0 (s_anchor) */
};

/* A starting point before any data: an 8B model on an H100-class GPU
 * (8 ms per step, about 30 us per prompt token, 1 us per 1e6 token x context
 * tokens, decoding sequences adding 5.7 ms to a step for the weights, read
 * once per step, and 46 ms per million KV tokens they hold; the
 * wait is the backlog as predicted plus part of the step remainder: the
 * wait model's output is scaled by the executor's slowness while the
 * remainder is measured in its own seconds already, and fits started from
 * 0.03 to 1 on it ended within noise of each other, 0.1 a little ahead).
 * The model moves off it after a few jobs. */
static const double s_tp_init[S_NP] = {0.008, 0.030, 0.001, 0.0057, 0.046};
static const double s_tw_init[S_NW] = {0.0, 0.0, 0.1, 5.0};
static const double s_tt_init[SL_LM_NT] = {0.007, 0.002};

/* The starting covariance of each coefficient is p_init x (S_SPREAD x its
 * starting magnitude)^2: each one may move by orders of magnitude (an
 * executor ten times faster than the prior), on its own scale, so the
 * first few jobs already put it in place. One spread for all coefficients
 * (their magnitudes differ by 100x) made the fit erratic for hundreds of
 * jobs. */
#define S_SPREAD 100.0
#define S_SCALE_MIN 1e-3    /* magnitude floor (coefficients starting at 0) */
#define S_LEARN_BURST 64.0  /* completions learned at once before learn_gap applies */
#define S_SCALE_RATE 0.15   /* weight of one job in an executor's scale (log EWMA) */
#define S_FLEET_REF 16.0    /* executors for which prior_forget is meant (sl_load_model_fleet) */
#define S_ANCHOR_RATE 0.01  /* weight of one completion in the fleet's mean log scale */
#define S_ANCHOR_MAX 0.1    /* the fleet model is re-anchored when that mean passes this */
#define S_ERR_RATE 0.05     /* weight of one job in the models' recent errors */
#define S_OWN_MIN 64        /* jobs learned before an executor's own model may take over */
#define S_PRIOR_EVERY 4     /* the shared TPOT prior learns from one completion in this many */
#define S_P_TRACE_MAX 1e6   /* bound on the covariance trace */
#define S_PRED_MAX_S 3600.0 /* bound on any predicted time, seconds */
/* Tokens per step of a chunked-prefill engine (the usual --step-tokens). */
#define S_CHUNK_TOKENS ((double)SL_LM_STEP_TOKENS)

static double s_clamp(double v, double lo, double hi)
{
    if (!(v >= lo)) /* also NaN */
        return lo;
    return v > hi ? hi : v;
}

/* Coefficient i of r starts over from th_i, uncorrelated with the others. */
static void s_rls_restart(s_rls_t *r, int i, double th_i, double p)
{
    double scale = S_SPREAD * (fabs(th_i) > S_SCALE_MIN ? fabs(th_i) : S_SCALE_MIN);
    r->th[i] = th_i;
    for (int j = 0; j < S_NMAX; j++)
        r->p[i][j] = r->p[j][i] = 0;
    r->p[i][i] = p * scale * scale;
}

static void s_rls_init(s_rls_t *r, const double *th, int nx, double p)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < nx; i++)
        s_rls_restart(r, i, th[i], p);
}

static double s_dot(const double *a, const double *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* s_dot of th with the features idx[] of x, read in place: the same sum in
 * the same order as s_dot over a picked copy, without the copy (whose
 * 8-byte stores a vector load of it would wait on). */
static double s_dot_at(const double *th, const double *x, const int *idx, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += th[i] * x[idx[i]];
    return s;
}

/* The prediction's copies of an executor's coefficients, after they change. */
static void s_mirror(s_exec_t *e)
{
    memcpy(e->th_prefill, e->prefill.th, sizeof(e->th_prefill));
    memcpy(e->th_wait, e->wait.th, sizeof(e->th_wait));
    memcpy(e->th_tpot, e->tpot.th, sizeof(e->th_tpot));
}

/* One RLS step with forgetting lambda. Two guards keep it sane on real
 * traffic, where some features stay zero for long stretches (no load, no KV
 * overflow): the coefficients of those rarely excited features (from
 * first_nonneg on) are kept non-negative, as the physics says (more load
 * never makes a job faster), which stops a burst of unusual samples from
 * throwing the fit to nonsense; and the covariance trace is bounded, since
 * forgetting inflates it without limit in the unexcited directions
 * ("windup"). The prompt terms are left free: clipping the per-token term
 * when one sample pushes it below zero (the attention term then takes the
 * rest) left the fit of an executor ten times faster than the start
 * erratic for hundreds of jobs. The trace bound is loose on purpose: a
 * tight one slows adaptation to a slowed executor. */
static void s_rls_update(s_rls_t *r, const double *x, int nx, double y, double lambda,
                         const double *init, int first_nonneg)
{
    double px[S_NMAX], k[S_NMAX];
    for (int i = 0; i < nx; i++)
        px[i] = s_dot(r->p[i], x, nx);
    double den = lambda + s_dot(x, px, nx);
    if (!(den > 1e-12))
        return;
    double err = y - s_dot(r->th, x, nx);
    /* Multiplications by reciprocals: this runs for every completion, and
     * the nx * nx divisions by lambda were most of its cost. */
    double inv_den = 1.0 / den, inv_lambda = 1.0 / lambda;
    for (int i = 0; i < nx; i++) {
        k[i] = px[i] * inv_den;
        r->th[i] += k[i] * err;
    }
    for (int i = first_nonneg; i < nx; i++)
        if (r->th[i] < 0)
            r->th[i] = 0;
    for (int i = 0; i < nx; i++) {
        if (!isfinite(r->th[i]) || fabs(r->th[i]) > 1e6) {
            s_rls_init(r, init, nx, 1.0);
            return; /* diverged: start over rather than predict nonsense */
        }
    }
    double tr = 0;
    for (int i = 0; i < nx; i++) {
        for (int j = 0; j < nx; j++)
            r->p[i][j] = (r->p[i][j] - k[i] * px[j]) * inv_lambda;
        tr += r->p[i][i];
    }
    /* The covariance update loses symmetry and definiteness to rounding,
     * and with forgetting on collinear features (the prompt terms, fed
     * hundreds of samples a second by a large fleet) that grew into
     * coefficients of 1e5 within seconds: keep it symmetric, and start over
     * from the starting point when a variance turns non-positive. */
    for (int i = 0; i < nx; i++) {
        for (int j = i + 1; j < nx; j++)
            r->p[i][j] = r->p[j][i] = 0.5 * (r->p[i][j] + r->p[j][i]);
        if (!(r->p[i][i] > 0)) {
            s_rls_init(r, init, nx, 1.0);
            return;
        }
    }
    if (tr > S_P_TRACE_MAX || !isfinite(tr)) {
        double s = isfinite(tr) ? S_P_TRACE_MAX / tr : 0;
        for (int i = 0; i < nx; i++)
            for (int j = 0; j < nx; j++)
                r->p[i][j] = isfinite(tr) ? r->p[i][j] * s : (i == j ? 1.0 : 0.0);
    }
}

sl_status_t sl_load_model_create(const sl_lm_cfg_t *cfg, uint32_t max_execs,
                                 sl_load_model_t **model_p)
{
    if (max_execs == 0 || cfg->forget <= 0 || cfg->forget > 1 || cfg->prior_forget <= 0 ||
        cfg->prior_forget > 1 || cfg->p_init <= 0)
        return SL_ERR_INVALID;
    sl_load_model_t *m = calloc(1, sizeof(*m));
    if (!m)
        return SL_ERR_NOMEM;
    /* aligned to the records' cache lines (a multiple of 64 bytes each) */
    m->execs = aligned_alloc(64, (size_t)max_execs * sizeof(*m->execs));
    if (m->execs)
        memset(m->execs, 0, (size_t)max_execs * sizeof(*m->execs));
    m->busy_until = calloc(max_execs, sizeof(*m->busy_until));
    m->scale = calloc(max_execs, sizeof(*m->scale));
    if (!m->execs || !m->busy_until || !m->scale) {
        free(m->scale);
        free(m->busy_until);
        free(m->execs);
        free(m);
        return SL_ERR_NOMEM;
    }
    m->cfg = *cfg;
    m->max_execs = max_execs;
    m->prior_forget = cfg->prior_forget;
    s_rls_init(&m->prior, s_tp_init, S_NP, cfg->p_init);
    s_rls_init(&m->prior_wait, s_tw_init, S_NW, cfg->p_init);
    s_rls_init(&m->prior_tpot, s_tt_init, SL_LM_NT, cfg->p_init);
    for (uint32_t i = 0; i < max_execs; i++)
        sl_load_model_exec_reset(m, i, 0);
    *model_p = m;
    return SL_OK;
}

void sl_load_model_destroy(sl_load_model_t **model_p)
{
    sl_load_model_t *m = *model_p;
    if (!m)
        return;
    free(m->scale);
    free(m->busy_until);
    free(m->execs);
    free(m);
    *model_p = NULL;
}

void sl_load_model_exec_reset(sl_load_model_t *m, uint32_t exec, sl_time_t now)
{
    if (exec >= m->max_execs)
        return;
    s_exec_t *e = &m->execs[exec];
    s_rls_init(&e->prefill, m->prior.th, S_NP, m->cfg.p_init);
    s_rls_init(&e->wait, m->prior_wait.th, S_NW, m->cfg.p_init);
    s_rls_init(&e->tpot, m->prior_tpot.th, SL_LM_NT, m->cfg.p_init);
    s_mirror(e);
    m->busy_until[exec] = now;
    e->last_sent = now;
    e->learn_at = now;
    e->learn_tokens = S_LEARN_BURST;
    e->samples = 0;
    e->log_scale = 0;
    m->scale[exec] = 1;
    e->err_own = e->err_fleet = 0;
    e->own = false;
}

void sl_load_model_fleet(sl_load_model_t *m, uint32_t executors)
{
    double n = executors > S_FLEET_REF ? (double)executors : S_FLEET_REF;
    m->prior_forget = pow(m->cfg.prior_forget, S_FLEET_REF / n);
}

double sl_load_model_backlog_s(const sl_load_model_t *m, uint32_t exec, sl_time_t now)
{
    if (exec >= m->max_execs)
        return 0;
    sl_time_t b = m->busy_until[exec] - now;
    return b > 0 ? (double)b / 1e9 : 0.0;
}

void sl_load_model_prefetch(const sl_load_model_t *m, uint32_t exec)
{
    if (exec >= m->max_execs)
        return;
    const s_exec_t *e = &m->execs[exec];
    /* the two lines a prediction reads of the record */
    __builtin_prefetch(e);
    __builtin_prefetch((const char *)e + 64);
    __builtin_prefetch(&m->busy_until[exec]);
    __builtin_prefetch(&m->scale[exec]);
}

double sl_load_model_backlog_sum_s(const sl_load_model_t *m, const uint32_t *execs, uint32_t n,
                                   sl_time_t now, double cap_s)
{
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (execs[i] >= m->max_execs)
            continue;
        sl_time_t b = m->busy_until[execs[i]] - now;
        double s = b > 0 ? (double)b / 1e9 : 0.0;
        sum += s < cap_s ? s : cap_s;
    }
    return sum;
}

double sl_load_model_fleet_prefill(const sl_load_model_t *m, uint32_t prompt_tokens)
{
    double u = prompt_tokens, x[SL_LM_NX] = {1.0, u / 1000.0, u * (u / 2) / 1e6};
    return s_clamp(s_dot_at(m->prior.th, x, s_xp, S_NP), 1e-4, S_PRED_MAX_S);
}

double sl_load_model_screen(const sl_load_model_t *m, uint32_t exec, double prefill_s,
                            sl_time_t now)
{
    if (exec >= m->max_execs)
        return INFINITY;
    sl_time_t b = m->busy_until[exec] - now;
    return (b > 0 ? (double)b / 1e9 : 0.0) + m->scale[exec] * prefill_s;
}

/* A decode step of seqs sequences reading ctx context tokens by an
 * executor's reported step costs k, seconds; 0 when nothing decodes. */
static double s_decode_step_s(const float *k, uint32_t seqs, uint64_t ctx)
{
    if (seqs == 0)
        return 0;
    return k[SL_SC_DECODE_BASE] + k[SL_SC_DECODE_SEQ] * seqs / 32.0 +
           k[SL_SC_DECODE_MCTX] * (double)ctx / 1e6;
}

void sl_step_clock_heartbeat(sl_step_clock_t *c, const sl_exec_load_t *load, sl_time_t now)
{
    if (!load->has_step_clock)
        return;
    c->boundary = now + (sl_time_t)load->step_left_us * SL_NS_PER_US;
    c->seqs = load->decode_seqs;
    c->ctx = load->decode_ctx;
    c->tokens = (double)load->prompt_tokens;
    c->pairs = (double)load->prompt_pairs;
}

/* A step's budget for prompt tokens on c's executor beside seqs decoding
 * sequences (one token each). */
static double s_clock_budget(const sl_step_clock_t *c, uint32_t seqs)
{
    uint32_t limit = c->step_tokens ? c->step_tokens : SL_LM_STEP_TOKENS;
    return seqs + 1 < limit ? (double)(limit - seqs) : 1.0;
}

/* The clock moved to now: the prompt steps begun by now have taken their
 * chunks, and boundary is the end of the one in progress (or the last
 * boundary before now once no prompt is left: decode steps follow). At
 * most S_CLOCK_STEPS steps at a time (a minute of prompts at most). */
#define S_CLOCK_STEPS 4096
static void s_clock_advance(sl_step_clock_t *c, const float *k, sl_time_t now)
{
    double dec = s_decode_step_s(k, c->seqs, c->ctx);
    for (int i = 0; i < S_CLOCK_STEPS && c->tokens > 0 && c->boundary < now; i++) {
        double budget = s_clock_budget(c, c->seqs), take = c->tokens < budget ? c->tokens : budget;
        double share = c->pairs * take / c->tokens;
        double cost = k[SL_SC_PREFILL_BASE] + k[SL_SC_PREFILL_KTOK] * take / 1e3 +
                      k[SL_SC_PREFILL_ATTN] * share / 1e6 + dec;
        c->tokens = c->tokens - take > 0.5 ? c->tokens - take : 0;
        c->pairs = c->tokens > 0 && c->pairs - share > 0 ? c->pairs - share : 0;
        c->boundary += (sl_time_t)(s_clamp(cost, 1e-6, 60) * 1e9);
    }
}

/* Seconds until the decode step in progress at now ends, from the last
 * boundary (no prompt queued); 0 at a boundary or with nothing decoding. */
static double s_clock_decode_left(const sl_step_clock_t *c, const float *k, sl_time_t now)
{
    if (c->boundary >= now)
        return (double)(c->boundary - now) / 1e9;
    double step = s_decode_step_s(k, c->seqs, c->ctx);
    if (!(step > 1e-6))
        return 0.0; /* nothing decodes: the next job starts at once */
    double phase = fmod((double)(now - c->boundary) / 1e9, step);
    return phase > 0 ? s_clamp(step - phase, 0, 60) : 0.0;
}

bool sl_step_clock_at(const sl_step_clock_t *c, const float *step_cost, sl_time_t now,
                      sl_step_clock_now_t *out)
{
    if (c->boundary == 0 || !step_cost)
        return false;
    sl_step_clock_t t = *c;
    s_clock_advance(&t, step_cost, now);
    *out = (sl_step_clock_now_t){.left_s = s_clock_decode_left(&t, step_cost, now),
                                 .tokens = t.tokens,
                                 .pairs = t.pairs,
                                 .seqs = t.seqs,
                                 .ctx = t.ctx,
                                 .budget = s_clock_budget(&t, t.seqs)};
    return true;
}

/* The clock at now, with the boundary the end of the step in progress. */
static void s_clock_sync(sl_step_clock_t *c, const float *k, sl_time_t now)
{
    s_clock_advance(c, k, now);
    if (c->boundary < now)
        c->boundary = now + (sl_time_t)(s_clock_decode_left(c, k, now) * 1e9);
}

void sl_step_clock_dispatched(sl_step_clock_t *c, const float *step_cost, uint32_t prompt_tokens,
                              double uncached, double pairs, sl_time_t now)
{
    if (c->boundary == 0 || !step_cost)
        return;
    s_clock_sync(c, step_cost, now);
    c->tokens += uncached > 1 ? uncached : 1; /* (a fully cached prompt computes one token) */
    c->pairs += pairs > 0 ? pairs : 0;
    c->seqs++;
    c->ctx += prompt_tokens;
}

void sl_step_clock_completed(sl_step_clock_t *c, const float *step_cost, uint32_t prompt_tokens,
                             uint32_t output_tokens, sl_time_t now)
{
    if (c->boundary == 0 || !step_cost)
        return;
    s_clock_advance(c, step_cost, now);
    /* A step ended as the result was sent: where decode steps were
     * counted on, the clock starts again from it. (A prompt step the clock
     * has in progress took its chunk at its start; ending it here would
     * have the next one take another.) */
    if (c->boundary < now)
        c->boundary = now;
    uint64_t ctx = (uint64_t)prompt_tokens + output_tokens;
    c->seqs = c->seqs > 0 ? c->seqs - 1 : 0;
    c->ctx = c->ctx > ctx ? c->ctx - ctx : 0;
}

void sl_load_model_predict(const sl_load_model_t *m, uint32_t exec, const sl_lm_query_t *q,
                           sl_time_t now, sl_lm_pred_t *pred)
{
    const s_exec_t *e = &m->execs[exec < m->max_execs ? exec : 0];
    double c = q->cached_tokens < q->prompt_tokens ? q->cached_tokens : q->prompt_tokens;
    double u = (double)q->prompt_tokens - c;
    double over = 0;
    if (q->kv_capacity && q->kv_inflight + q->kv_need > q->kv_capacity)
        over = (double)(q->kv_inflight + q->kv_need - q->kv_capacity) / (double)q->kv_capacity;
    double backlog = sl_load_model_backlog_s(m, exec, now);
    /* The work ahead of the job. With the executor's step clock (and its
     * step costs) known, the clock's: what is left of the step in progress,
     * and when prompt tokens are queued there, the steps computing them
     * and this prompt (below, once its own prefill is known); at face
     * value, like the backlog (a learned coefficient on the step's rest,
     * shared with the jobs behind a backlog, kept it short by a tenth).
     * Otherwise the backlog, and half the step in progress left on average,
     * a feature of the learned wait: from the heartbeat (its busy share
     * times its mean step), or, when the executor reports its step costs,
     * a decode step of the jobs in flight now by those (none when nothing
     * is in flight: the job starts at once). */
    const sl_step_clock_now_t *clock = q->step_cost ? q->clock : NULL;
    double decode_s = q->step_cost ? s_decode_step_s(q->step_cost, q->running, q->kv_inflight) : 0;
    double remainder = q->step_cost ? s_clamp(decode_s, 0, 60) / 2
                                    : s_clamp(q->busy, 0, 1) * s_clamp(q->step_s, 0, 60) / 2;
    double ahead = backlog;
    bool behind = backlog > 0;
    if (clock) {
        ahead = s_clamp(clock->left_s, 0, 60);
        remainder = 0;
        behind = clock->tokens > 0;
    }
    double x[SL_LM_NX] = {1.0,
                          u / 1000.0,
                          u * (c + u / 2) / 1e6,
                          ahead,
                          q->running > 0 ? 1.0 : 0.0,
                          over,
                          behind || over > 0 ? 1.0 : 0.0,
                          remainder,
                          (double)q->kv_inflight / 1e6 * (1.0 + u / S_CHUNK_TOKENS)};
    double xt[SL_LM_NT] = {1.0, q->running / 32.0};
    /* An executor the policy has not chosen for a long time may be judged
     * on one bad stretch and then never chosen again, so never corrected:
     * once stale, it is predicted as the fleet's prior predicts, it gets a
     * job when that looks best, and its own model, which kept learning,
     * takes over again at that dispatch. */
    const double *pre = e->th_prefill, *wai = e->th_wait;
    double scale = 1.0;
    if (m->cfg.stale > 0 && now - e->last_sent > m->cfg.stale) {
        pre = m->prior.th; /* stale: judged as the fleet is, its scale forgotten */
        wai = m->prior_wait.th;
    } else if (!e->own) {
        pre = m->prior.th;
        wai = m->prior_wait.th;
        scale = m->scale[exec < m->max_execs ? exec : 0];
    }
    /* Bounded, whatever the coefficients: a prediction feeds the backlog
     * clock, which must never overflow. The work the job adds to the
     * backlog: its tokens, and a step's fixed costs for each full chunk of
     * them. */
    double chunks = u / S_CHUNK_TOKENS, prefill, work;
    if (q->step_cost) {
        /* The executor's own step costs: the prompt's tokens and attention,
         * and a step's fixed costs (the prefill's, and the decode's while
         * jobs are in flight) for each step the prompt takes. */
        const float *k = q->step_cost;
        double fixed = k[SL_SC_PREFILL_BASE] + decode_s;
        double tok = k[SL_SC_PREFILL_KTOK] * x[1] + k[SL_SC_PREFILL_ATTN] * x[2];
        double steps = ceil(chunks) > 1 ? ceil(chunks) : 1;
        prefill = s_clamp(tok + fixed * steps, 1e-4, S_PRED_MAX_S);
        work = s_clamp(tok + fixed * chunks, 0, prefill);
    } else { /* the learned prefill: p0, and p3 while jobs decode, per chunk */
        prefill = s_clamp(scale * s_dot_at(pre, x, s_xp, S_NP), 1e-4, S_PRED_MAX_S);
        work = s_clamp(scale * (pre[1] * x[s_xp[1]] + pre[2] * x[s_xp[2]] +
                                (pre[0] + pre[3] * x[s_xp[3]]) * chunks),
                       0, prefill);
    }
    if (clock && clock->tokens > 0) {
        /* Behind queued prompt tokens: the engine computes them first come
         * first served, a budget of tokens a step, so the job's first token
         * comes at the end of the step that computes the last of its own;
         * the steps' fixed costs are paid once per step for all of them. */
        const float *k = q->step_cost;
        double tokens = clock->tokens + (u > 1 ? u : 1), pairs = clock->pairs + x[2] * 1e6;
        double steps = ceil(tokens / (clock->budget >= 1 ? clock->budget : 1));
        double first =
            ahead + k[SL_SC_PREFILL_KTOK] * tokens / 1e3 + k[SL_SC_PREFILL_ATTN] * pairs / 1e6 +
            steps * (k[SL_SC_PREFILL_BASE] + s_decode_step_s(k, clock->seqs, clock->ctx));
        x[3] = s_clamp(first - prefill, 0, S_PRED_MAX_S);
    }
    /* The backlog counts at face value: it is made of this executor's own
     * prefill predictions, so it is already in its seconds; a learned
     * coefficient on it is fitted on the placements the policy chose (the
     * ones with little backlog) and went low exactly where it matters. */
    double wait = s_clamp(x[3] + scale * s_dot_at(wai, x, s_xw, S_NW), 0, 2 * S_PRED_MAX_S);
    double tpot = s_dot(e->th_tpot, xt, SL_LM_NT);
    for (int i = 0; i < SL_LM_NX; i++)
        pred->x[i] = (float)x[i];
    for (int i = 0; i < SL_LM_NT; i++)
        pred->xt[i] = (float)xt[i];
    pred->wait_s = (float)wait;
    pred->prefill_s = (float)prefill;
    pred->work_s = (float)work;
    pred->ttft_s = (float)(prefill + wait);
    pred->tpot_s = (float)s_clamp(tpot, 1e-4, 60);
    pred->valid = true;
}

void sl_load_model_dispatched(sl_load_model_t *m, uint32_t exec, sl_lm_pred_t *pred, sl_time_t now)
{
    if (exec >= m->max_execs || !pred->valid)
        return;
    s_exec_t *e = &m->execs[exec];
    sl_time_t *busy = &m->busy_until[exec];
    e->last_sent = now;
    if (*busy < now)
        *busy = now;
    /* At most a day of backlog, so the clock arithmetic cannot overflow. */
    double s = s_clamp(pred->work_s, 0, S_PRED_MAX_S);
    if (*busy - now < 24 * 3600 * SL_NS_PER_S)
        *busy += (sl_time_t)(s * 1e9);
    e->work_sent += s;
    pred->work_mark = e->work_sent;
}

/* The fleet model and the scales are one product: the fleet model times an
 * executor's scale is what predicts it, and each learns from the other, so
 * nothing fixes how the two share it. Left alone, the fleet model drifted
 * (to 2.6 times a typical executor's times in test_model_stale), and it is
 * what predicts an executor gone stale or new. So it is kept at the
 * fleet's typical executor: when the executors' mean log scale passes
 * S_ANCHOR_MAX, that mean moves into the fleet model and out of every
 * scale (the products unchanged). O(executors), once per drift of 10%. */
static void s_anchor(sl_load_model_t *m)
{
    double g = m->log_scale_mean, k = exp(g);
    s_rls_t *r[2] = {&m->prior, &m->prior_wait};
    int n[2] = {S_NP, S_NW};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < n[t]; i++) {
            r[t]->th[i] *= k;
            for (int j = 0; j < n[t]; j++)
                r[t]->p[i][j] *= k * k;
        }
    for (uint32_t i = 0; i < m->max_execs; i++) {
        m->execs[i].log_scale -= g;
        m->scale[i] = exp(m->execs[i].log_scale);
    }
    m->log_scale_mean = 0;
}

/* Learn y ~ th . x[idx], weighted by wy, on one executor's model, and y /
 * scale on the fleet's (which predicts an executor of scale 1: fitted to
 * the times as they are, it confused an executor's speed with the prompts
 * the policy sends it, fast executors getting the long ones). */
static void s_learn(sl_load_model_t *m, s_rls_t *own, s_rls_t *fleet, const sl_lm_pred_t *pred,
                    const int *idx, int n, double y, double wy, double scale, const double *init,
                    int first_nonneg)
{
    double x[S_NMAX];
    for (int i = 0; i < n; i++)
        x[i] = pred->x[idx[i]] * wy;
    s_rls_update(own, x, n, y * wy, m->cfg.forget, init, first_nonneg);
    /* (y / scale) weighted by wy * scale: the same relative weight */
    for (int i = 0; i < n; i++)
        x[i] *= scale;
    s_rls_update(fleet, x, n, y * wy, m->prior_forget, init, first_nonneg);
}

/* Score the fleet's and the executor's own model on a completed job (both
 * before they learn from it), so each executor is predicted by whichever
 * has done better lately. Returns the fleet model's prefill for the job at
 * scale 1 (unbounded), which the scale learns from. */
static double s_score_models(const sl_load_model_t *m, s_exec_t *e, double scale,
                             const sl_lm_pred_t *pred, double ttft_s)
{
    double x[SL_LM_NX];
    for (int i = 0; i < SL_LM_NX; i++)
        x[i] = pred->x[i];
    double fleet_prefill = s_dot_at(m->prior.th, x, s_xp, S_NP);
    double fleet = x[3] + scale * (s_clamp(fleet_prefill, 1e-4, S_PRED_MAX_S) +
                                   s_dot_at(m->prior_wait.th, x, s_xw, S_NW));
    double own = x[3] + s_clamp(s_dot_at(e->prefill.th, x, s_xp, S_NP), 1e-4, S_PRED_MAX_S) +
                 s_dot_at(e->wait.th, x, s_xw, S_NW);
    double ef = fabs(fleet - ttft_s) / ttft_s, eo = fabs(own - ttft_s) / ttft_s;
    e->err_fleet += S_ERR_RATE * ((ef < 10 ? ef : 10) - e->err_fleet);
    e->err_own += S_ERR_RATE * ((eo < 10 ? eo : 10) - e->err_own);
    e->own = e->samples >= S_OWN_MIN && e->err_own < e->err_fleet;
    return fleet_prefill;
}

void sl_load_model_observe(sl_load_model_t *m, uint32_t exec, const sl_lm_pred_t *pred,
                           double ttft_s, double queue_s, double tpot_s, sl_time_t now)
{
    if (exec >= m->max_execs || !pred->valid || !(ttft_s > 0) || !isfinite(ttft_s))
        return;
    s_exec_t *e = &m->execs[exec];
    double ape = fabs((double)pred->ttft_s - ttft_s) / ttft_s;
    /* The job's first token came, so the executor had worked off what was
     * sent before it: the backlog is at most what was sent since. Summed
     * predictions overstate it where the engine batches prefills (a step's
     * fixed cost is paid once for several prompts), and without this
     * check the error only grew, so a busy executor looked busy for long
     * after it had drained; on short prompts the backlog alone ran to 50
     * times the real wait. */
    double after = e->work_sent - pred->work_mark;
    if (after < 0)
        after = 0;
    sl_time_t *busy = &m->busy_until[exec];
    if (*busy > now && (double)(*busy - now) / 1e9 > after)
        *busy = now + (sl_time_t)(after * 1e9);
    if (ape > 10)
        ape = 10; /* one wild outlier must not hide the rest */
    m->ape_sum += ape;
    m->ape_recent = m->n_scored ? 0.998 * m->ape_recent + 0.002 * ape : ape;
    m->n_scored++;
    /* Thousands of completions a second from one executor (jobs that do
     * no work) carry no more information than a few hundred, and learning
     * from each is a good part of a completion's cost: a token bucket lets
     * a step's worth of completions (S_LEARN_BURST) through at once and one
     * per learn_gap after that; the rest are scored and not learned. */
    if (m->cfg.learn_gap > 0) {
        if (now > e->learn_at) {
            e->learn_tokens += (double)(now - e->learn_at) / (double)m->cfg.learn_gap;
            if (e->learn_tokens > S_LEARN_BURST)
                e->learn_tokens = S_LEARN_BURST;
            e->learn_at = now;
        }
        if (e->learn_tokens < 1.0)
            return;
        e->learn_tokens -= 1.0;
    }
    /* Relative least squares: each sample weighted by 1 / TTFT (x and y
     * scaled), so a few long waits in the tail do not drag the fit away
     * from the many short jobs; the error that matters is relative to the
     * TTFT. When the executor reports when the job's prefill step began,
     * the TTFT splits into its wait and its prefill step and each half
     * learns from its own measurement; otherwise the wait takes what the
     * predicted prefill leaves, and the prefill learns only from jobs that
     * had no predicted wait. */
    double wy = 1.0 / (ttft_s > 0.005 ? ttft_s : 0.005);
    double wait;
    bool prefill_known = true;
    bool ahead = pred->x[6] > 0;
    if (!ahead && queue_s >= 0 && isfinite(queue_s) && queue_s <= ttft_s) {
        wait = queue_s;
    } else if (!ahead) {
        wait = 0; /* nothing ahead of it: all of it counts as its prefill step */
    } else {
        wait = ttft_s > pred->prefill_s ? ttft_s - pred->prefill_s : 0;
        prefill_known = false;
    }
    double f = s_score_models(m, e, m->scale[exec], pred, ttft_s);
    /* The executor's scale: its prefill over the fleet model's, a running
     * mean in logs (a slowed executor moves it within a few jobs). */
    if (prefill_known && f > 1e-6 && ttft_s - wait > 1e-6) {
        e->log_scale +=
            S_SCALE_RATE * (log(s_clamp((ttft_s - wait) / f, 1e-2, 1e2)) - e->log_scale);
        m->scale[exec] = exp(e->log_scale);
        m->log_scale_mean += S_ANCHOR_RATE * (e->log_scale - m->log_scale_mean);
        if (fabs(m->log_scale_mean) > S_ANCHOR_MAX)
            s_anchor(m);
    }
    double scale = m->scale[exec];
    if (prefill_known)
        s_learn(m, &e->prefill, &m->prior, pred, s_xp, S_NP, ttft_s - wait, wy, scale, s_tp_init,
                S_P_NONNEG);
    s_learn(m, &e->wait, &m->prior_wait, pred, s_xw, S_NW, wait - pred->x[3], wy, scale, s_tw_init,
            S_W_NONNEG);
    if (tpot_s > 0 && isfinite(tpot_s)) {
        double xt[SL_LM_NT];
        for (int i = 0; i < SL_LM_NT; i++)
            xt[i] = pred->xt[i];
        s_rls_update(&e->tpot, xt, SL_LM_NT, tpot_s, m->cfg.forget, s_tt_init, SL_LM_NT);
        if (m->n_scored % S_PRIOR_EVERY == 0)
            s_rls_update(&m->prior_tpot, xt, SL_LM_NT, tpot_s, m->prior_forget, s_tt_init,
                         SL_LM_NT);
    }
    s_mirror(e);
    e->samples++;
}

void sl_load_model_observe_tpot(sl_load_model_t *m, uint32_t exec, const sl_lm_pred_t *pred,
                                double tpot_s)
{
    if (exec >= m->max_execs || !pred->valid || !(tpot_s > 0) || !isfinite(tpot_s))
        return;
    double xt[SL_LM_NT];
    for (int i = 0; i < SL_LM_NT; i++)
        xt[i] = pred->xt[i];
    s_rls_update(&m->execs[exec].tpot, xt, SL_LM_NT, tpot_s, m->cfg.forget, s_tt_init, SL_LM_NT);
    s_mirror(&m->execs[exec]);
}

double sl_load_model_mape(const sl_load_model_t *m)
{
    return m->n_scored ? m->ape_sum / (double)m->n_scored : 0.0;
}

double sl_load_model_mape_recent(const sl_load_model_t *m)
{
    return m->ape_recent;
}

uint64_t sl_load_model_samples(const sl_load_model_t *m)
{
    return m->n_scored;
}

double sl_load_model_exec_uncertainty(const sl_load_model_t *m, uint32_t exec)
{
    if (exec >= m->max_execs)
        return 1.0;
    const s_exec_t *e = &m->execs[exec];
    return (e->own ? e->err_own : e->err_fleet) + 1.0 / sqrt(1.0 + (double)e->samples);
}

double sl_load_model_exec_rate(const sl_load_model_t *m, uint32_t exec)
{
    if (exec >= m->max_execs)
        return 0.0;
    const s_exec_t *e = &m->execs[exec];
    return e->own ? e->prefill.th[1] : m->scale[exec] * m->prior.th[1];
}

#define S_MAGIC "sluice-load-model"
#define S_VERSION 5
/* Version 3 had the running jobs where the wait now has the step remainder
 * (the same shapes): its wait prior is read with that coefficient started
 * afresh, so an upgraded scheduler keeps the rest of what it learned.
 * Versions 3 and 4 had the running jobs / 32 as the prefill's last feature
 * where it now has the two decode terms: read with those started afresh. */
#define S_VERSION_RUNNING 3
#define S_VERSION_DECODE 4
#define S_NP_RUNNING 4 /* prefill features before version 5 */

static void s_rls_write(sl_text_out_t *w, const char *tag, const s_rls_t *r, int nx)
{
    sl_text_put(w, "%s", tag);
    for (int i = 0; i < nx; i++)
        sl_text_put(w, " %.17g", r->th[i]);
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < nx; j++)
            sl_text_put(w, " %.17g", r->p[i][j]);
    sl_text_put(w, "\n");
}

static bool s_rls_read(sl_text_in_t *in, const char *tag, s_rls_t *r, int nx)
{
    if (!sl_text_word_is(in, tag))
        return false;
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < nx; i++)
        if (!sl_text_double(in, &r->th[i]) || !isfinite(r->th[i]))
            return false;
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < nx; j++)
            if (!sl_text_double(in, &r->p[i][j]) || !isfinite(r->p[i][j]))
                return false;
    return true;
}

sl_status_t sl_load_model_save(const sl_load_model_t *m, char *buf, size_t cap, size_t *len_p)
{
    sl_text_out_t w;
    sl_text_out_init(&w, buf, cap);
    sl_text_put(&w, "%s %d %d %d\n", S_MAGIC, S_VERSION, S_NP + S_NW, SL_LM_NT);
    sl_text_put(&w, "scored %llu %.17g %.17g\n", (unsigned long long)m->n_scored, m->ape_sum,
                m->ape_recent);
    s_rls_write(&w, "prior", &m->prior, S_NP);
    s_rls_write(&w, "prior_wait", &m->prior_wait, S_NW);
    s_rls_write(&w, "prior_tpot", &m->prior_tpot, SL_LM_NT);
    sl_text_put(&w, "end\n");
    return sl_text_out_end(&w, len_p);
}

#define S_STR_(x) #x
#define S_STR(x) S_STR_(x)

sl_status_t sl_load_model_load(sl_load_model_t *m, const char **pos_p, const char *end,
                               const char **why_p)
{
    sl_text_in_t in = {.pos = *pos_p, .end = end};
    int64_t version, nx, nt;
    uint64_t n;
    double sum, recent;
    s_rls_t prior, prior_wait, prior_tpot;
    if (!sl_text_word_is(&in, S_MAGIC) || !sl_text_int(&in, &version) || !sl_text_int(&in, &nx) ||
        !sl_text_int(&in, &nt)) {
        *why_p = "not a load model (bad header)";
        return SL_ERR_INVALID;
    }
    bool old = version == S_VERSION_RUNNING || version == S_VERSION_DECODE;
    int np = old ? S_NP_RUNNING : S_NP;
    if ((version != S_VERSION && !old) || nx != np + S_NW || nt != SL_LM_NT) {
        *why_p = "a load model of another version or feature count (this build reads "
                 "versions " S_STR(S_VERSION_RUNNING) " to " S_STR(S_VERSION) ")";
        return SL_ERR_INVALID;
    }
    if (!sl_text_word_is(&in, "scored") || !sl_text_uint(&in, &n) || !sl_text_double(&in, &sum) ||
        !sl_text_double(&in, &recent) || !isfinite(sum) || !isfinite(recent) || sum < 0 ||
        recent < 0 || !s_rls_read(&in, "prior", &prior, np) ||
        !s_rls_read(&in, "prior_wait", &prior_wait, S_NW) ||
        !s_rls_read(&in, "prior_tpot", &prior_tpot, SL_LM_NT) || !sl_text_word_is(&in, "end")) {
        *why_p = "load model truncated or malformed";
        return SL_ERR_INVALID;
    }
    if (version == S_VERSION_RUNNING)
        s_rls_restart(&prior_wait, S_W_REMAINDER, s_tw_init[S_W_REMAINDER], m->cfg.p_init);
    if (old)
        for (int i = S_NP_RUNNING - 1; i < S_NP; i++)
            s_rls_restart(&prior, i, s_tp_init[i], m->cfg.p_init);
    m->prior = prior;
    m->prior_wait = prior_wait;
    m->prior_tpot = prior_tpot;
    m->n_scored = n;
    m->ape_sum = sum;
    m->ape_recent = recent;
    for (uint32_t i = 0; i < m->max_execs; i++)
        if (m->execs[i].samples == 0)
            sl_load_model_exec_reset(m, i, m->busy_until[i]);
    *pos_p = in.pos;
    return SL_OK;
}
