/* teacher_kernels.h - the fused EMA-teacher updates over plain float arrays and the momentum
 * schedules. One call updates a whole teacher range, however many tensors it holds:
 *   plain        t = m t + (1 - m) s
 *   multi-source t = m t + sum_i w_i s_i      (sum_i w_i = 1 - m, checked)
 *   segments     the same over an explicit list of (src_offset, dst_offset, len) runs, in one
 *                call parallelised over elements; a run flagged COPY is copied (t = s_0), the
 *                rule for non-parameter buffers such as batchnorm running statistics.
 * Owns the arithmetic and the schedules; the teacher objects (which parameters, arenas,
 * swap-in, checkpoints) wrap these.
 *
 * Rounding: the single-source update is computed exactly as PyTorch's CPU `t.lerp_(s, w)`
 * with w = (float)(1 - m): fma(w, s - t, t) when |w| < 0.5, else fma(-(s - t), 1 - w, s).
 * It is bit-identical to lerp_ (tests/golden/optim) and within an ulp or two of
 * mul_(m).add_(s, alpha=1-m); unlike the mul/add form it leaves t unchanged when s == t.
 * The multi-source update is t = fma(s_0, w_0, m t), then t = fma(s_i, w_i, t) per source:
 * bit-identical to torch's mul_(m) followed by add_(s_i, alpha=w_i) per source (whose AVX2
 * kernels fuse the multiply-add). m and the weights are doubles (Python floats): 1 - m is formed in
 * double and every scalar is rounded to float once, as torch does. */
#ifndef POLYAK_TEACHER_KERNELS_H
#define POLYAK_TEACHER_KERNELS_H
#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct pk_pool pk_pool;

/* Most sources a multi-source update takes (CTP uses 2). */
#define PK_TEACHER_MAX_SOURCES 8

/* Segment flag: copy source 0 into the teacher instead of averaging. */
#define PK_TEACHER_COPY 1u

/* One run of a segment-list update: teacher[dst_offset .. +len) follows
 * source_i[src_offset .. +len) (the same offset in every source). */
typedef struct pk_teacher_segment {
    int64_t src_offset, dst_offset, len;
    uint32_t flags; /* PK_TEACHER_COPY or 0 */
} pk_teacher_segment;

/* t[0..n) = m t + (1 - m) s, in place. */
pk_status teacher_ema(pk_pool *pool, float *t, const float *s, int64_t n, double m);

/* t[0..n) = m t + sum_{i<k} w[i] src[i]; fails unless |m + sum w - 1| <= 1e-6. */
pk_status teacher_ema_multi(pk_pool *pool, float *t, int k, const float *const *src,
                            const double *w, int64_t n, double m);

/* The segment-list update over `nseg` runs in one call (k sources, weights w; k = 1 with
 * w = NULL means w[0] = 1 - m). Runs must not overlap in the teacher. */
pk_status teacher_ema_segments(pk_pool *pool, float *t, int k, const float *const *src,
                               const double *w, double m, const pk_teacher_segment *segs, int nseg);

typedef enum pk_momentum_kind {
    PK_MOMENTUM_CONSTANT = 0, /* m0 */
    PK_MOMENTUM_COSINE,       /* BYOL/DINO: m1 - (m1 - m0)(cos(pi k / K) + 1) / 2 */
    PK_MOMENTUM_TABLE,        /* table[k] (the last entry after the end) */
} pk_momentum_kind;

typedef struct pk_momentum_schedule {
    pk_momentum_kind kind;
    double m0, m1;       /* start and end momentum (COSINE), m0 alone for CONSTANT */
    int64_t total_steps; /* K for COSINE */
    const float *table;  /* TABLE: per-step momenta, not owned */
    int64_t table_len;
} pk_momentum_schedule;

/* Checks a schedule (momenta in [0, 1], K >= 1, a non-empty table). */
pk_status teacher_momentum_validate(const pk_momentum_schedule *s);

/* Returns the momentum for update number k (0-based); COSINE holds m1 for k >= K. */
double teacher_momentum_at(const pk_momentum_schedule *s, int64_t k);

#endif
