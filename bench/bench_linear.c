/*
 * sluice-bench linear: what batch invariance costs on the CPU. Times the
 * kernels' batch-invariant product (sl_k_linear on a default context) and
 * OpenBLAS sgemm (the same call on a context set not invariant) on the
 * shapes the ref backend runs: one decode row, a batch of decode rows, and
 * a prompt. Rounds alternate the two so a drifting host affects both; each
 * figure is the median over rounds. Ends with one RESULT line carrying the
 * ratios (invariant time over OpenBLAS time; 1.0 = no cost).
 *
 * Without OpenBLAS in the build both sides are the invariant product and
 * the ratios are 1 by construction.
 */
#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "common/sl_hist.h"
#include "common/sl_rand.h"

#include <sluice/kernels.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_linear_cfg {
    int dim;     /* input width k and output width n */
    int prompt;  /* rows of the prompt shape */
    int batch;   /* rows of the decode-batch shape */
    int rounds;  /* alternations; the figures are medians */
    int threads; /* CPU threads of both contexts (0 = every online CPU) */
} s_linear_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_RANGE(s_linear_cfg_t, dim, "dim", "1024", SL_CFG_INT, 8, 16384,
                 "k = n of the weight matrix"),
    SL_CFG_RANGE(s_linear_cfg_t, prompt, "prompt", "256", SL_CFG_INT, 1, 8192,
                 "rows of the prompt shape"),
    SL_CFG_RANGE(s_linear_cfg_t, batch, "batch", "16", SL_CFG_INT, 1, 1024,
                 "rows of the decode-batch shape"),
    SL_CFG_RANGE(s_linear_cfg_t, rounds, "rounds", "7", SL_CFG_INT, 1, 1000,
                 "rounds of invariant then OpenBLAS; the figures are the medians"),
    SL_CFG_RANGE(s_linear_cfg_t, threads, "threads", "0", SL_CFG_INT, 0, 16,
                 "CPU threads of both contexts (0 = every online CPU)"),
    SL_CFG_END,
};

typedef struct s_call {
    sl_k_ctx_h ctx;         /* invariant or not */
    const float *x;         /* inputs */
    uint32_t m;             /* rows */
    const sl_k_weight_t *w; /* weights */
    float *y;               /* outputs */
} s_call_t;

static sl_status_t s_call_fn(void *arg)
{
    s_call_t *c = arg;
    return sl_k_linear(c->ctx, c->x, c->m, c->w, c->y);
}

/* Median time of one shape on each context, alternating rounds. */
static int s_shape(const s_linear_cfg_t *cfg, sl_k_ctx_h inv, sl_k_ctx_h blas, const float *x,
                   uint32_t m, const sl_k_weight_t *w, float *y, double *inv_ms_p,
                   double *blas_ms_p)
{
    double ti[1000], tb[1000];
    int reps = m >= 64 ? 3 : 20;
    s_call_t ci = {inv, x, m, w, y}, cb = {blas, x, m, w, y};
    for (int r = 0; r < cfg->rounds; r++) {
        if (sl_k_time(inv, s_call_fn, &ci, 1, reps, &ti[r]) != SL_OK ||
            sl_k_time(blas, s_call_fn, &cb, 1, reps, &tb[r]) != SL_OK)
            return -1;
    }
    *inv_ms_p = sl_median(ti, (size_t)cfg->rounds);
    *blas_ms_p = sl_median(tb, (size_t)cfg->rounds);
    return 0;
}

int sl_bench_linear_main(int argc, char **argv)
{
    s_linear_cfg_t cfg;
    int rc = sl_bench_cfg_main(s_table, &cfg, argc, argv);
    if (rc >= 0)
        return rc;
    uint32_t k = (uint32_t)cfg.dim, n = (uint32_t)cfg.dim;
    uint32_t rows_max = (uint32_t)(cfg.prompt > cfg.batch ? cfg.prompt : cfg.batch);
    float *x = malloc((size_t)rows_max * k * sizeof(float));
    float *w = malloc((size_t)n * k * sizeof(float));
    float *y = malloc((size_t)rows_max * n * sizeof(float));
    sl_k_ctx_h inv = NULL, blas = NULL;
    if (!x || !w || !y || sl_k_ctx_create(SL_K_CPU, cfg.threads, &inv) != SL_OK ||
        sl_k_ctx_create(SL_K_CPU, cfg.threads, &blas) != SL_OK) {
        fprintf(stderr, "sluice-bench linear: out of memory\n");
        rc = 1;
        goto out;
    }
    sl_k_ctx_set_invariant(blas, false);
    sl_rand_t rng;
    sl_rand_seed(&rng, 1);
    for (size_t i = 0; i < (size_t)rows_max * k; i++)
        x[i] = (float)(sl_rand_double(&rng) * 2.0 - 1.0);
    for (size_t i = 0; i < (size_t)n * k; i++)
        w[i] = (float)((sl_rand_double(&rng) * 2.0 - 1.0) * 0.05);
    sl_k_weight_t wt = {SL_K_F32, n, k, SL_K_GROUP_DEFAULT, w, NULL};

    const uint32_t rows[3] = {1, (uint32_t)cfg.batch, (uint32_t)cfg.prompt};
    const char *names[3] = {"decode, 1 row", "decode batch", "prompt"};
    double ratio[3], gflops[3];
    printf("fp32 %u x %u weights, %d rounds (medians)\n", n, k, cfg.rounds);
    printf("%-16s %6s %14s %14s %8s %16s\n", "shape", "rows", "invariant ms", "OpenBLAS ms",
           "ratio", "invariant GFLOP/s");
    for (int s = 0; s < 3; s++) {
        double ti, tb;
        if (s_shape(&cfg, inv, blas, x, rows[s], &wt, y, &ti, &tb) != 0) {
            fprintf(stderr, "sluice-bench linear: a product failed\n");
            rc = 1;
            goto out;
        }
        ratio[s] = ti / tb;
        gflops[s] = 2.0 * rows[s] * n * k / ti / 1e6;
        printf("%-16s %6u %14.3f %14.3f %8.2f %16.1f\n", names[s], rows[s], ti, tb, ratio[s],
               gflops[s]);
    }
    printf(
        "RESULT dim=%u decode_ratio=%.2f batch_ratio=%.2f prompt_ratio=%.2f prompt_gflops=%.1f\n",
        k, ratio[0], ratio[1], ratio[2], gflops[2]);
    rc = 0;
out:
    sl_k_ctx_destroy(&inv);
    sl_k_ctx_destroy(&blas);
    free(x), free(w), free(y);
    return rc;
}
