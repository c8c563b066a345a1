/*
 * Log-linear histogram of non-negative integers (HdrHistogram's idea): 32
 * sub-buckets per power of two, so any quantile is within about 3% of the
 * true value, in fixed memory and O(1) per record.
 */
#ifndef SL_HIST_H
#define SL_HIST_H

#include <stddef.h>
#include <stdint.h>

#define SL_HIST_SUB_BITS 5
#define SL_HIST_SUB (1u << SL_HIST_SUB_BITS)
#define SL_HIST_BUCKETS ((64 - SL_HIST_SUB_BITS + 1) * SL_HIST_SUB)

typedef struct sl_hist {
    uint64_t count;                   /* values recorded */
    uint64_t max;                     /* largest value */
    uint64_t min;                     /* smallest value (UINT64_MAX when empty) */
    double sum;                       /* sum of values, for the mean */
    uint64_t bucket[SL_HIST_BUCKETS]; /* counts per log-linear bucket */
} sl_hist_t;

void sl_hist_init(sl_hist_t *h);
void sl_hist_record(sl_hist_t *h, uint64_t value);
/* Value at quantile q in [0, 1] (upper edge of its bucket, capped at max); 0 when empty. */
uint64_t sl_hist_quantile(const sl_hist_t *h, double q);
double sl_hist_mean(const sl_hist_t *h);
/* Add every count of src into dst. */
void sl_hist_merge(sl_hist_t *dst, const sl_hist_t *src);
/* Exact median of the n values of a small sample (benchmark rounds, probe
 * windows); sorts v in place (so v[0] and v[n - 1] are then the extremes).
 * 0 when n is 0. */
double sl_median(double *v, size_t n);

#endif
