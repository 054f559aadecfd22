/* optim_kernels.c - the fused CPU optimizer updates declared in optim_kernels.h.
 *
 * Elementwise optimizers (SGD, Adam, AdamW, SPAM) are one streaming pass split over threads.
 * The per-tensor ones work on "units": a run of whole rows of one tensor (or an element chunk
 * of a vector), so that every row's reduction is owned by exactly one unit and needs no
 * atomics. AdamP/SGDP: pass 1 updates the moments and accumulates, per row, <g,w>, |g|^2,
 * |w|^2 and <w,d> (d = the unprojected update); the host then decides per tensor (O(rows));
 * pass 2 recomputes d from the stored moments, projects and writes the parameters. Stable-SPAM:
 * pass 1 max|g|, pass 2 |clip(g)|^2, pass 3 the update.
 *
 * Hot loops are branch-free over restrict pointers; loop-invariant flags are hoisted by the
 * compiler (unswitching). Loops with a square root work in tiles: sqrtf carries an errno
 * path (a libm call for negative inputs) that keeps GCC from vectorising the loop around it,
 * and a per-function -fno-math-errno does not reach the builtin; so each tile's radicands
 * go through sqrt_tile (SSE2 sqrtps, correctly rounded, no errno) between two loops that
 * vectorise. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#include "optim/optim_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/threads.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* elements per square-root tile (a stack buffer that stays in L1) */
#define OPTIM_TILE 256

/* Reductions keep 8 independent lanes so that the compiler may vectorise them without
 * reassociating (the lanes are combined in a fixed order: results do not depend on threads). */
#define OPTIM_LANES 8

/* sum_i a[i] b[i] in double, for n elements */
static inline double dot_lanes(const float *restrict a, const float *restrict b, int64_t n) {
    double acc[OPTIM_LANES] = {0};
    int64_t i = 0;
    for (; i + OPTIM_LANES <= n; i += OPTIM_LANES)
        for (int l = 0; l < OPTIM_LANES; l++)
            acc[l] += (double)a[i + l] * (double)b[i + l];
    double s = 0;
    for (; i < n; i++)
        s += (double)a[i] * (double)b[i];
    for (int l = 0; l < OPTIM_LANES; l++)
        s += acc[l];
    return s;
}

/* x[0..n) = sqrt(x[0..n)), correctly rounded */
static inline void sqrt_tile(float *restrict x, int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        x[i] = sqrtf(x[i]);
}

/* PyTorch's AVX2 CPU kernels compute `a.add_(b, alpha)`, addcmul and lerp with fused
 * multiply-adds; the hot loops call fmaf in the same places so that the trajectories agree to
 * the last bit or so. Hot loops are cloned for x86-64-v3 (AVX2 + FMA, where fmaf is one
 * instruction and vectorises) and a baseline version (fmaf from libm: exact, slower). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define OPTIM_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define OPTIM_HOT
#endif

/* elements per parallel chunk: large enough that a chunk costs far more than a pool hand-off */
#define OPTIM_GRAIN 32768
/* target elements per unit for the per-tensor optimizers */
#define OPTIM_UNIT 32768

static double dflt(double v, double d) { return v == 0.0 ? d : v; }

pk_adamw_params optim_adamw_defaults(pk_adamw_params p) {
    /* torch.optim.AdamW defaults, except weight_decay (0 means none, not torch's 1e-2) */
    p.lr = dflt(p.lr, 1e-3);
    p.beta1 = dflt(p.beta1, 0.9);
    p.beta2 = dflt(p.beta2, 0.999);
    p.eps = dflt(p.eps, 1e-8);
    return p;
}

pk_adamp_params optim_adamp_defaults(pk_adamp_params p) {
    /* clovaai/AdamP adamp.py / sgdp.py constructor defaults */
    p.lr = dflt(p.lr, 1e-3);
    p.beta1 = dflt(p.beta1, 0.9);
    p.beta2 = dflt(p.beta2, 0.999);
    p.eps = dflt(p.eps, 1e-8);
    p.delta = dflt(p.delta, 0.1);
    p.wd_ratio = dflt(p.wd_ratio, 0.1);
    return p;
}

pk_spam_params optim_spam_defaults(pk_spam_params p) {
    /* SPAM-Optimizer README/code: DeltaT 500, threshold 5000, warmup 150, grad_accu_steps 20,
     * eps 1e-6 */
    p.lr = dflt(p.lr, 1e-3);
    p.beta1 = dflt(p.beta1, 0.9);
    p.beta2 = dflt(p.beta2, 0.999);
    p.eps = dflt(p.eps, 1e-6);
    p.threshold = dflt(p.threshold, 5000.0);
    if (p.delta_t == 0) p.delta_t = 500;
    if (p.warmup == 0) p.warmup = 150;
    if (p.grad_accu == 0) p.grad_accu = 20;
    return p;
}

pk_stable_spam_params optim_stable_spam_defaults(pk_stable_spam_params p) {
    /* Stable-SPAM paper/code: gamma1 0.7, gamma2 0.9, theta 0.999, update_proj_gap 1000 */
    p.lr = dflt(p.lr, 1e-3);
    p.beta1 = dflt(p.beta1, 0.9);
    p.beta2 = dflt(p.beta2, 0.999);
    p.gamma1 = dflt(p.gamma1, 0.7);
    p.gamma2 = dflt(p.gamma2, 0.9);
    p.gamma3 = dflt(p.gamma3, 0.999);
    p.eps = dflt(p.eps, 1e-8);
    if (p.delta_t == 0) p.delta_t = 1000;
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* SGD                                                                                      */

typedef struct sgd_job {
    float *param, *buf;
    const float *grad;
    float neg_lr, wd, mom, one_minus_damp;
    int first, nesterov, use_mom;
} sgd_job;

OPTIM_HOT static void sgd_range(void *arg, int64_t b, int64_t e) {
    const sgd_job *j = arg;
    float *restrict p = j->param;
    float *restrict buf = j->buf;
    const float *restrict g = j->grad;
    const float neg_lr = j->neg_lr, wd = j->wd, mom = j->mom, omd = j->one_minus_damp;
    if (!j->use_mom) {
        for (int64_t i = b; i < e; i++) {
            float d = fmaf(p[i], wd, g[i]); /* d_p.add(param, alpha=wd); exact when wd = 0 */
            p[i] = fmaf(d, neg_lr, p[i]);
        }
    } else if (j->first) {
        /* torch: buf = clone(d_p) on the first step, no dampening */
        const int nest = j->nesterov;
        for (int64_t i = b; i < e; i++) {
            float d = fmaf(p[i], wd, g[i]);
            buf[i] = d;
            float u = nest ? fmaf(d, mom, d) : d;
            p[i] = fmaf(u, neg_lr, p[i]);
        }
    } else {
        const int nest = j->nesterov;
        for (int64_t i = b; i < e; i++) {
            float d = fmaf(p[i], wd, g[i]);
            float bb = fmaf(d, omd, buf[i] * mom);
            buf[i] = bb;
            float u = nest ? fmaf(bb, mom, d) : bb;
            p[i] = fmaf(u, neg_lr, p[i]);
        }
    }
}

pk_status optim_sgd_step(pk_pool *pool, const pk_sgd_params *hp, int64_t step, int64_t n,
                         float *param, const float *grad, float *buf) {
    if (!hp || !param || !grad || n < 0 || step < 1)
        return pk_error(PK_ERR_INVALID, "optim_sgd_step: bad arguments (n=%lld step=%lld)",
                        (long long)n, (long long)step);
    if (hp->momentum != 0.0f && !buf)
        return pk_error(PK_ERR_INVALID, "optim_sgd_step: momentum %g needs a buffer",
                        (double)hp->momentum);
    if (hp->nesterov && (hp->momentum <= 0.0f || hp->dampening != 0.0f))
        return pk_error(PK_ERR_INVALID,
                        "optim_sgd_step: Nesterov needs momentum > 0 and zero dampening");
    sgd_job j = {.param = param,
                 .buf = buf,
                 .grad = grad,
                 .neg_lr = -hp->lr,
                 .wd = hp->weight_decay,
                 .mom = hp->momentum,
                 .one_minus_damp = (float)(1.0 - (double)hp->dampening),
                 .first = step == 1,
                 .nesterov = hp->nesterov,
                 .use_mom = hp->momentum != 0.0f};
    pk_parallel_for(pool, n, OPTIM_GRAIN, sgd_range, &j);
    return PK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Adam / AdamW                                                                             */

typedef struct adam_job {
    float *param, *m, *v;
    const float *grad;
    float decay; /* AdamW: 1 - lr*wd */
    float l2;    /* Adam: grad += l2 * param */
    float b1, omb1, b2, omb2;
    float bc2_sqrt; /* sqrt(1 - beta2^t) (outside) or 1 - beta2^t (inside) */
    float eps, neg_step_size;
    int eps_inside;
} adam_job;

OPTIM_HOT static void adam_range(void *arg, int64_t b, int64_t e) {
    const adam_job *j = arg;
    float *restrict p = j->param;
    float *restrict m = j->m;
    float *restrict v = j->v;
    const float *restrict g = j->grad;
    const float decay = j->decay, l2 = j->l2, b1 = j->b1, omb1 = j->omb1, b2 = j->b2,
                omb2 = j->omb2, bc2 = j->bc2_sqrt, eps = j->eps, nss = j->neg_step_size;
    const int inside = j->eps_inside;
    float sq[OPTIM_TILE];
    for (int64_t t0 = b; t0 < e; t0 += OPTIM_TILE) {
        const int64_t n = t0 + OPTIM_TILE < e ? OPTIM_TILE : e - t0;
        float *restrict pt = p + t0, *restrict mt = m + t0, *restrict vt = v + t0;
        const float *restrict gt = g + t0;
        for (int64_t i = 0; i < n; i++) {
            float gi = fmaf(pt[i], l2, gt[i]); /* Adam: grad.add(param, alpha=wd) */
            float mi = fmaf(gi, omb1, mt[i] * b1);
            float vi = fmaf(omb2 * gi, gi, vt[i] * b2);
            mt[i] = mi;
            vt[i] = vi;
            sq[i] = inside ? vi / bc2 + eps : vi;
        }
        sqrt_tile(sq, n);
        for (int64_t i = 0; i < n; i++) {
            float den = inside ? sq[i] : sq[i] / bc2 + eps;
            pt[i] = pt[i] * decay + nss * mt[i] / den; /* addcdiv: (value * t1) / t2 */
        }
    }
}

static pk_status adam_common(pk_pool *pool, const pk_adamw_params *hp0, int64_t step, int64_t n,
                             float *param, const float *grad, float *m, float *v, int decoupled,
                             const char *who) {
    if (!hp0 || !param || !grad || !m || !v || n < 0 || step < 1)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments (n=%lld step=%lld)", who, (long long)n,
                        (long long)step);
    pk_adamw_params hp = optim_adamw_defaults(*hp0);
    if (!(hp.beta1 > 0 && hp.beta1 < 1 && hp.beta2 > 0 && hp.beta2 < 1 && hp.eps > 0))
        return pk_error(PK_ERR_INVALID, "%s: betas must be in (0,1) and eps > 0", who);
    double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    adam_job j = {.param = param,
                  .m = m,
                  .v = v,
                  .grad = grad,
                  .decay = decoupled ? (float)(1.0 - lr * (double)hp.weight_decay) : 1.0f,
                  .l2 = decoupled ? 0.0f : hp.weight_decay,
                  .b1 = hp.beta1,
                  .omb1 = (float)(1.0 - b1),
                  .b2 = hp.beta2,
                  .omb2 = (float)(1.0 - b2),
                  .bc2_sqrt = hp.eps_inside_sqrt ? (float)bc2 : (float)sqrt(bc2),
                  .eps = hp.eps,
                  .neg_step_size = (float)-(lr / bc1),
                  .eps_inside = hp.eps_inside_sqrt};
    pk_parallel_for(pool, n, OPTIM_GRAIN, adam_range, &j);
    return PK_OK;
}

pk_status optim_adamw_step(pk_pool *pool, const pk_adamw_params *hp, int64_t step, int64_t n,
                           float *param, const float *grad, float *exp_avg, float *exp_avg_sq) {
    return adam_common(pool, hp, step, n, param, grad, exp_avg, exp_avg_sq, 1, "optim_adamw_step");
}

pk_status optim_adam_step(pk_pool *pool, const pk_adamw_params *hp, int64_t step, int64_t n,
                          float *param, const float *grad, float *exp_avg, float *exp_avg_sq) {
    return adam_common(pool, hp, step, n, param, grad, exp_avg, exp_avg_sq, 0, "optim_adam_step");
}

/* ---------------------------------------------------------------------------------------- */
/* Units: runs of whole rows of one tensor, or element chunks of a vector                  */

typedef struct optim_unit {
    int seg;
    int matrix;         /* 1: rows [row0, row1) of a >= 2-D tensor; 0: elements [b, e) */
    int64_t row0, row1; /* rows within the segment */
    int64_t b, e;       /* absolute element range */
} optim_unit;

typedef struct optim_plan {
    optim_unit *units;
    int nunits;
    int64_t *row_base; /* per segment: index of its first row in the row-statistics array */
    int64_t total_rows;
} optim_plan;

static void plan_free(optim_plan *pl) {
    free(pl->units);
    free(pl->row_base);
}

static pk_status check_segments(const pk_optim_segment *segs, int nseg, const char *who) {
    if (!segs || nseg < 0) return pk_error(PK_ERR_INVALID, "%s: no segment list", who);
    for (int s = 0; s < nseg; s++)
        if (segs[s].offset < 0 || segs[s].rows < 1 || segs[s].cols < 1)
            return pk_error(PK_ERR_INVALID,
                            "%s: segment %d has offset %lld rows %lld cols %lld (need rows, "
                            "cols >= 1)",
                            who, s, (long long)segs[s].offset, (long long)segs[s].rows,
                            (long long)segs[s].cols);
    return PK_OK;
}

/* Splits the segments into units; with by_rows = 0 every segment is cut into element chunks. */
static pk_status plan_build(const pk_optim_segment *segs, int nseg, int by_rows, optim_plan *pl) {
    memset(pl, 0, sizeof *pl);
    int64_t count = 0;
    for (int s = 0; s < nseg; s++) {
        int64_t numel = segs[s].rows * segs[s].cols;
        if (by_rows && segs[s].ndim >= 2) {
            int64_t per = OPTIM_UNIT / segs[s].cols;
            if (per < 1) per = 1;
            count += (segs[s].rows + per - 1) / per;
        } else {
            count += (numel + OPTIM_UNIT - 1) / OPTIM_UNIT;
        }
    }
    if (count > (1 << 30)) return pk_error(PK_ERR_INVALID, "optimizer: too many units");
    pl->units = malloc((size_t)(count ? count : 1) * sizeof *pl->units);
    pl->row_base = malloc((size_t)(nseg ? nseg : 1) * sizeof *pl->row_base);
    if (!pl->units || !pl->row_base) {
        plan_free(pl);
        return pk_error(PK_ERR_NOMEM, "optimizer: no memory for %lld work units", (long long)count);
    }
    int u = 0;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &segs[s];
        int64_t numel = sg->rows * sg->cols;
        pl->row_base[s] = pl->total_rows;
        if (by_rows && sg->ndim >= 2) {
            int64_t per = OPTIM_UNIT / sg->cols;
            if (per < 1) per = 1;
            for (int64_t r = 0; r < sg->rows; r += per) {
                int64_t r1 = r + per < sg->rows ? r + per : sg->rows;
                pl->units[u++] = (optim_unit){.seg = s,
                                              .matrix = 1,
                                              .row0 = r,
                                              .row1 = r1,
                                              .b = sg->offset + r * sg->cols,
                                              .e = sg->offset + r1 * sg->cols};
            }
            pl->total_rows += sg->rows;
        } else {
            for (int64_t b = 0; b < numel; b += OPTIM_UNIT) {
                int64_t e = b + OPTIM_UNIT < numel ? b + OPTIM_UNIT : numel;
                pl->units[u++] =
                    (optim_unit){.seg = s, .matrix = 0, .b = sg->offset + b, .e = sg->offset + e};
            }
        }
    }
    pl->nunits = u;
    return PK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* AdamP / SGDP                                                                             */

/* per-row statistics of pass 1 */
enum { RS_GW, RS_GG, RS_WW, RS_WD, RS_N };

/* per-row projection inputs of pass 2: p_n = w / nrm_eps, d -= p_n * dot (dot = 0: none) */
typedef struct proj_row {
    float nrm_eps, dot;
} proj_row;

typedef struct adamp_job {
    const optim_plan *pl;
    const pk_optim_segment *segs;
    float *param, *m, *v; /* v unused (NULL) by SGDP; m is SGDP's momentum buffer */
    const float *grad;
    double *rowstat;  /* total_rows x RS_N */
    proj_row *proj;   /* total_rows */
    float *seg_decay; /* per segment: 1 - lr*wd*ratio (/(1-momentum) for SGDP) */
    int sgdp, nesterov;
    /* AdamP */
    float b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step_size, decay_full;
    /* SGDP */
    float mom, omd, neg_lr;
    float delta;
} adamp_job;

/* Pass 1 over one range of elements: state update, the update direction and, for rows,
 * the row statistics. For vectors (no projection) it also writes the parameters. */
OPTIM_HOT static void adamp_pass1_run(const adamp_job *j, int64_t b, int64_t e, double *st,
                                      int write_p) {
    float *restrict p = j->param;
    float *restrict m = j->m;
    float *restrict v = j->v;
    const float *restrict g = j->grad;
    double gw = 0, gg = 0, ww = 0, wd = 0;
    if (!j->sgdp) {
        const float b1 = j->b1, omb1 = j->omb1, b2 = j->b2, omb2 = j->omb2;
        const float bc2 = j->bc2_sqrt, eps = j->eps, nss = j->neg_step_size;
        const float dec = j->decay_full;
        const int nest = j->nesterov;
        float sq[OPTIM_TILE];
        for (int64_t t0 = b; t0 < e; t0 += OPTIM_TILE) {
            const int64_t n = t0 + OPTIM_TILE < e ? OPTIM_TILE : e - t0;
            float *restrict pt = p + t0, *restrict mt = m + t0, *restrict vt = v + t0;
            const float *restrict gt = g + t0;
            for (int64_t i = 0; i < n; i++) {
                float gi = gt[i];
                float mi = fmaf(gi, omb1, mt[i] * b1);
                float vi = fmaf(omb2 * gi, gi, vt[i] * b2);
                mt[i] = mi;
                vt[i] = vi;
                sq[i] = vi;
            }
            sqrt_tile(sq, n);
            float *restrict dt = sq; /* the update direction replaces the roots */
            for (int64_t i = 0; i < n; i++) {
                float gi = gt[i], mi = mt[i];
                float den = sq[i] / bc2 + eps;
                dt[i] = (nest ? b1 * mi + omb1 * gi : mi) / den;
            }
            if (st) {
                gw += dot_lanes(gt, pt, n);
                gg += dot_lanes(gt, gt, n);
                ww += dot_lanes(pt, pt, n);
                wd += dot_lanes(pt, dt, n);
            }
            if (write_p)
                for (int64_t i = 0; i < n; i++)
                    pt[i] = fmaf(dt[i], nss, pt[i] * dec);
        }
    } else {
        const float mom = j->mom, omd = j->omd, nlr = j->neg_lr, dec = j->decay_full;
        const int nest = j->nesterov;
        float dt[OPTIM_TILE];
        for (int64_t t0 = b; t0 < e; t0 += OPTIM_TILE) {
            const int64_t n = t0 + OPTIM_TILE < e ? OPTIM_TILE : e - t0;
            float *restrict pt = p + t0, *restrict mt = m + t0;
            const float *restrict gt = g + t0;
            for (int64_t i = 0; i < n; i++) {
                float gi = gt[i];
                float bb = fmaf(gi, omd, mt[i] * mom);
                mt[i] = bb;
                dt[i] = nest ? gi + mom * bb : bb;
            }
            if (st) {
                gw += dot_lanes(gt, pt, n);
                gg += dot_lanes(gt, gt, n);
                ww += dot_lanes(pt, pt, n);
                wd += dot_lanes(pt, dt, n);
            }
            if (write_p)
                for (int64_t i = 0; i < n; i++)
                    pt[i] = fmaf(dt[i], nlr, pt[i] * dec);
        }
    }
    if (st) {
        st[RS_GW] = gw;
        st[RS_GG] = gg;
        st[RS_WW] = ww;
        st[RS_WD] = wd;
    }
}

static void adamp_pass1(void *arg, int64_t ub, int64_t ue) {
    const adamp_job *j = arg;
    for (int64_t u = ub; u < ue; u++) {
        const optim_unit *un = &j->pl->units[u];
        if (!un->matrix) {
            adamp_pass1_run(j, un->b, un->e, NULL, 1);
            continue;
        }
        const pk_optim_segment *sg = &j->segs[un->seg];
        for (int64_t r = un->row0; r < un->row1; r++) {
            int64_t b = sg->offset + r * sg->cols;
            adamp_pass1_run(j, b, b + sg->cols, j->rowstat + (j->pl->row_base[un->seg] + r) * RS_N,
                            0);
        }
    }
}

OPTIM_HOT static void adamp_pass2(void *arg, int64_t ub, int64_t ue) {
    const adamp_job *j = arg;
    float *restrict p = j->param;
    const float *restrict m = j->m;
    const float *restrict v = j->v;
    const float *restrict g = j->grad;
    for (int64_t u = ub; u < ue; u++) {
        const optim_unit *un = &j->pl->units[u];
        if (!un->matrix) continue;
        const pk_optim_segment *sg = &j->segs[un->seg];
        const float dec = j->seg_decay[un->seg];
        for (int64_t r = un->row0; r < un->row1; r++) {
            const proj_row pr = j->proj[j->pl->row_base[un->seg] + r];
            const float ne = pr.nrm_eps, dot = pr.dot;
            int64_t b = sg->offset + r * sg->cols, e = b + sg->cols;
            if (!j->sgdp) {
                const float b1 = j->b1, omb1 = j->omb1, bc2 = j->bc2_sqrt, eps = j->eps;
                const float nss = j->neg_step_size;
                const int nest = j->nesterov;
                float sq[OPTIM_TILE];
                for (int64_t t0 = b; t0 < e; t0 += OPTIM_TILE) {
                    const int64_t n = t0 + OPTIM_TILE < e ? OPTIM_TILE : e - t0;
                    for (int64_t i = 0; i < n; i++)
                        sq[i] = v[t0 + i];
                    sqrt_tile(sq, n);
                    float *restrict pt = p + t0;
                    const float *restrict mt = m + t0, *restrict gt = g + t0;
                    for (int64_t i = 0; i < n; i++) {
                        float wi = pt[i];
                        float den = sq[i] / bc2 + eps;
                        float d = (nest ? b1 * mt[i] + omb1 * gt[i] : mt[i]) / den;
                        d = d - (wi / ne) * dot;
                        pt[i] = fmaf(d, nss, wi * dec);
                    }
                }
            } else {
                const float mom = j->mom, nlr = j->neg_lr;
                const int nest = j->nesterov;
                for (int64_t i = b; i < e; i++) {
                    float wi = p[i];
                    float d = nest ? g[i] + mom * m[i] : m[i];
                    d = d - (wi / ne) * dot;
                    p[i] = fmaf(d, nlr, wi * dec);
                }
            }
        }
    }
}

/* |cos| as torch.nn.functional.cosine_similarity: <x,y> / (max(|x|,eps) * max(|y|,eps)) */
static double abs_cos(double xy, double xx, double yy, double eps) {
    double nx = sqrt(xx), ny = sqrt(yy);
    if (nx < eps) nx = eps;
    if (ny < eps) ny = eps;
    return fabs(xy / (nx * ny));
}

/* Decides the projection of every >= 2-D segment from its row statistics (as the reference
 * code: channel view first, then the whole tensor) and fills the per-row projection inputs
 * and per-segment decay factors. O(rows) on the calling thread. */
static void adamp_decide(adamp_job *j, int nseg, float dec_full, float dec_proj, int *projected) {
    const optim_plan *pl = j->pl;
    const double eps = (double)j->eps, delta = (double)j->delta;
    for (int s = 0; s < nseg; s++) {
        const pk_optim_segment *sg = &j->segs[s];
        if (projected) projected[s] = 0;
        j->seg_decay[s] = dec_full;
        if (sg->ndim < 2) continue;
        const double *st = j->rowstat + pl->row_base[s] * RS_N;
        proj_row *pr = j->proj + pl->row_base[s];
        double cmax = 0, tot[RS_N] = {0};
        for (int64_t r = 0; r < sg->rows; r++) {
            const double *x = st + r * RS_N;
            double c = abs_cos(x[RS_GW], x[RS_GG], x[RS_WW], eps);
            if (c > cmax) cmax = c;
            for (int k = 0; k < RS_N; k++)
                tot[k] += x[k];
        }
        int mode = 0;
        if (cmax < delta / sqrt((double)sg->cols)) {
            mode = 1;
        } else if (abs_cos(tot[RS_GW], tot[RS_GG], tot[RS_WW], eps) <
                   delta / sqrt((double)(sg->rows * sg->cols))) {
            mode = 2;
        }
        if (projected) projected[s] = mode;
        if (mode) j->seg_decay[s] = dec_proj;
        /* p_n = w / (|w| + eps); d -= p_n * <p_n, d> = p_n * <w, d> / (|w| + eps) */
        float whole_ne = (float)(sqrt(tot[RS_WW]) + eps);
        float whole_dot = (float)(tot[RS_WD] / (double)whole_ne);
        for (int64_t r = 0; r < sg->rows; r++) {
            const double *x = st + r * RS_N;
            if (mode == 1) {
                float ne = (float)((double)(float)sqrt(x[RS_WW]) + eps);
                pr[r] = (proj_row){.nrm_eps = ne, .dot = (float)(x[RS_WD] / (double)ne)};
            } else if (mode == 2) {
                pr[r] = (proj_row){.nrm_eps = whole_ne, .dot = whole_dot};
            } else {
                pr[r] = (proj_row){.nrm_eps = 1.0f, .dot = 0.0f};
            }
        }
    }
}

static pk_status adamp_common(pk_pool *pool, const pk_adamp_params *hp0, int64_t step,
                              const pk_optim_segment *segs, int nseg, float *param,
                              const float *grad, float *m, float *v, int *projected, int sgdp,
                              const char *who) {
    if (!hp0 || !param || !grad || !m || (!sgdp && !v) || step < 1)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments (step=%lld)", who, (long long)step);
    PK_TRY(check_segments(segs, nseg, who));
    pk_adamp_params hp = optim_adamp_defaults(*hp0);
    if (sgdp && hp.momentum >= 1.0f)
        return pk_error(PK_ERR_INVALID, "%s: momentum %g must be < 1", who, (double)hp.momentum);
    optim_plan pl;
    PK_TRY(plan_build(segs, nseg, 1, &pl));
    size_t nr = (size_t)(pl.total_rows ? pl.total_rows : 1);
    double *rowstat = malloc(nr * RS_N * sizeof *rowstat);
    proj_row *proj = malloc(nr * sizeof *proj);
    float *seg_decay = malloc((size_t)(nseg ? nseg : 1) * sizeof *seg_decay);
    if (!rowstat || !proj || !seg_decay) {
        free(rowstat);
        free(proj);
        free(seg_decay);
        plan_free(&pl);
        return pk_error(PK_ERR_NOMEM, "%s: no memory for row statistics", who);
    }
    double lr = hp.lr, wd = hp.weight_decay;
    adamp_job j = {.pl = &pl,
                   .segs = segs,
                   .param = param,
                   .m = m,
                   .v = v,
                   .grad = grad,
                   .rowstat = rowstat,
                   .proj = proj,
                   .seg_decay = seg_decay,
                   .sgdp = sgdp,
                   .nesterov = hp.nesterov,
                   .eps = hp.eps,
                   .delta = hp.delta};
    float dec_full, dec_proj;
    if (!sgdp) {
        double b1 = hp.beta1, b2 = hp.beta2;
        double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
        j.b1 = hp.beta1;
        j.omb1 = (float)(1.0 - b1);
        j.b2 = hp.beta2;
        j.omb2 = (float)(1.0 - b2);
        j.bc2_sqrt = (float)sqrt(bc2);
        j.neg_step_size = (float)-(lr / bc1);
        /* the reference code only decays when weight_decay > 0 */
        dec_full = (float)(1.0 - lr * wd);
        dec_proj = (float)(1.0 - lr * wd * (double)hp.wd_ratio);
    } else {
        double mom = hp.momentum;
        j.mom = hp.momentum;
        j.omd = (float)(1.0 - (double)hp.dampening);
        j.neg_lr = -hp.lr;
        dec_full = (float)(1.0 - lr * wd / (1.0 - mom));
        dec_proj = (float)(1.0 - lr * wd * (double)hp.wd_ratio / (1.0 - mom));
    }
    if (wd <= 0) dec_full = dec_proj = 1.0f;
    j.decay_full = dec_full;
    pk_parallel_for(pool, pl.nunits, 1, adamp_pass1, &j);
    adamp_decide(&j, nseg, dec_full, dec_proj, projected);
    pk_parallel_for(pool, pl.nunits, 1, adamp_pass2, &j);
    free(rowstat);
    free(proj);
    free(seg_decay);
    plan_free(&pl);
    return PK_OK;
}

pk_status optim_adamp_step(pk_pool *pool, const pk_adamp_params *hp, int64_t step,
                           const pk_optim_segment *segs, int nseg, float *param, const float *grad,
                           float *exp_avg, float *exp_avg_sq, int *projected) {
    return adamp_common(pool, hp, step, segs, nseg, param, grad, exp_avg, exp_avg_sq, projected, 0,
                        "optim_adamp_step");
}

pk_status optim_sgdp_step(pk_pool *pool, const pk_adamp_params *hp, int64_t step,
                          const pk_optim_segment *segs, int nseg, float *param, const float *grad,
                          float *buf, int *projected) {
    return adamp_common(pool, hp, step, segs, nseg, param, grad, buf, NULL, projected, 1,
                        "optim_sgdp_step");
}

/* ---------------------------------------------------------------------------------------- */
/* SPAM                                                                                     */

double optim_spam_scale(const pk_spam_params *hp0, int64_t step) {
    pk_spam_params hp = optim_spam_defaults(*hp0);
    /* The reference code sets its warmup counter to 0 at the end of step k*DeltaT - 1, so step
     * t = k*DeltaT + c (k >= 1) uses c; before the first reset the counter starts past the
     * warmup. Its CosineDecay(0.99, W) steps a CosineAnnealingLR(T_max = W + 1) with the epoch
     * argument, i.e. the closed form 0.99 (1 + cos(pi c / (W+1))) / 2 for c < W and 0 after;
     * the step scale is 1 minus that: 0.01 on the reset step, rising to 1. */
    if (step < hp.delta_t) return 1.0;
    int64_t c = step % hp.delta_t;
    if (c >= hp.warmup) return 1.0;
    double dr = 0.99 * (1.0 + cos(M_PI * (double)c / (double)(hp.warmup + 1))) / 2.0;
    return 1.0 - dr;
}

typedef struct spam_job {
    float *param, *m, *v;
    const float *grad;
    float keep; /* 0 on a reset step (moments zeroed), else 1 */
    float thr;  /* clip where g^2 > thr * v; +inf disables */
    float b1, omb1, b2, omb2, eps, neg_step, decay_scale;
    int64_t *clipped; /* total count, added atomically once per chunk */
} spam_job;

OPTIM_HOT static void spam_range(void *arg, int64_t b, int64_t e) {
    const spam_job *j = arg;
    float *restrict p = j->param;
    float *restrict m = j->m;
    float *restrict v = j->v;
    const float *restrict g = j->grad;
    const float keep = j->keep, thr = j->thr, b1 = j->b1, omb1 = j->omb1, b2 = j->b2,
                omb2 = j->omb2, eps = j->eps, ns = j->neg_step, dsc = j->decay_scale;
    int64_t clipped = 0;
    float sq[OPTIM_TILE], lim[OPTIM_TILE];
    for (int64_t t0 = b; t0 < e; t0 += OPTIM_TILE) {
        const int64_t n = t0 + OPTIM_TILE < e ? OPTIM_TILE : e - t0;
        float *restrict pt = p + t0, *restrict mt = m + t0, *restrict vt = v + t0;
        const float *restrict gt = g + t0;
        for (int64_t i = 0; i < n; i++)
            lim[i] = vt[i] * keep * thr;
        sqrt_tile(lim, n); /* sqrt(theta v) with v before this step's update */
        for (int64_t i = 0; i < n; i++) {
            float gi = gt[i];
            float vo = vt[i] * keep, mo = mt[i] * keep;
            int spike = gi * gi > thr * vo;
            clipped += spike;
            float gs = gi > 0.0f ? lim[i] : -lim[i]; /* sign(g) sqrt(theta v); g = 0 never spikes */
            gi = spike ? gs : gi;
            float mi = fmaf(gi, omb1, mo * b1);
            float vi = fmaf(omb2 * gi, gi, vo * b2);
            mt[i] = mi;
            vt[i] = vi;
            sq[i] = vi;
        }
        sqrt_tile(sq, n);
        for (int64_t i = 0; i < n; i++) {
            float den = sq[i] + eps;
            /* norm_grad = exp_avg / denom; p.add_(norm_grad, alpha=-step_size * scale) */
            float pi = fmaf(mt[i] / den, ns, pt[i]);
            pt[i] = fmaf(pi, dsc, pi); /* p.add_(p, alpha=-lr*wd) after the step, as the code */
        }
    }
    __atomic_fetch_add(j->clipped, clipped, __ATOMIC_RELAXED);
}

pk_status optim_spam_step(pk_pool *pool, const pk_spam_params *hp0, int64_t step, int64_t n,
                          float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                          int64_t *clipped) {
    if (!hp0 || !param || !grad || !exp_avg || !exp_avg_sq || n < 0 || step < 1)
        return pk_error(PK_ERR_INVALID, "optim_spam_step: bad arguments (n=%lld step=%lld)",
                        (long long)n, (long long)step);
    pk_spam_params hp = optim_spam_defaults(*hp0);
    if (hp.delta_t < 1 || hp.warmup < 0 || hp.grad_accu < 0)
        return pk_error(PK_ERR_INVALID, "optim_spam_step: delta_t %d warmup %d grad_accu %d",
                        hp.delta_t, hp.warmup, hp.grad_accu);
    double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    double scale = optim_spam_scale(&hp, step);
    /* the code's step counter is never reset; moments are zeroed on steps k * DeltaT, and
     * clipping waits grad_accu steps after the start and after every reset */
    int reset = step % hp.delta_t == 0;
    int clip = !hp.no_clip && step >= hp.grad_accu && step % hp.delta_t >= hp.grad_accu;
    int64_t count = 0;
    spam_job j = {.param = param,
                  .m = exp_avg,
                  .v = exp_avg_sq,
                  .grad = grad,
                  .keep = reset ? 0.0f : 1.0f,
                  .thr = clip ? hp.threshold : INFINITY,
                  .b1 = hp.beta1,
                  .omb1 = (float)(1.0 - b1),
                  .b2 = hp.beta2,
                  .omb2 = (float)(1.0 - b2),
                  .eps = hp.eps,
                  .neg_step = (float)(-(lr * sqrt(bc2) / bc1) * scale),
                  .decay_scale = (float)(-lr * (double)hp.weight_decay),
                  .clipped = &count};
    pk_parallel_for(pool, n, OPTIM_GRAIN, spam_range, &j);
    if (clipped) *clipped = count;
    return PK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Stable-SPAM                                                                              */

typedef struct sspam_job {
    const optim_plan *pl;
    float *param, *m, *v;
    const float *grad;
    float *unit_max;                               /* pass 1: per unit max |g| */
    double *unit_sumsq;                            /* pass 2: per unit |clip(g)|^2 */
    float *seg_maxg, *seg_mhat, *seg_norm, *seg_c; /* per segment */
    unsigned char *seg_active;
    float keep, decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step_size;
} sspam_job;

OPTIM_HOT static void sspam_pass1(void *arg, int64_t ub, int64_t ue) {
    const sspam_job *j = arg;
    const float *restrict g = j->grad;
    for (int64_t u = ub; u < ue; u++) {
        const optim_unit *un = &j->pl->units[u];
        /* max |g| on the bit patterns: for sign-cleared floats the unsigned order is the float
         * order (a NaN wins, as in torch.max), and an integer max vectorises */
        uint32_t lane[OPTIM_LANES] = {0}, mx = 0;
        int64_t i = un->b;
        for (; i + OPTIM_LANES <= un->e; i += OPTIM_LANES)
            for (int l = 0; l < OPTIM_LANES; l++) {
                uint32_t a;
                memcpy(&a, &g[i + l], sizeof a);
                a &= 0x7fffffffu;
                lane[l] = a > lane[l] ? a : lane[l];
            }
        for (; i < un->e; i++) {
            uint32_t a;
            memcpy(&a, &g[i], sizeof a);
            a &= 0x7fffffffu;
            mx = a > mx ? a : mx;
        }
        for (int l = 0; l < OPTIM_LANES; l++)
            mx = lane[l] > mx ? lane[l] : mx;
        memcpy(&j->unit_max[u], &mx, sizeof mx);
    }
}

OPTIM_HOT static void sspam_pass2(void *arg, int64_t ub, int64_t ue) {
    const sspam_job *j = arg;
    const float *restrict g = j->grad;
    for (int64_t u = ub; u < ue; u++) {
        const optim_unit *un = &j->pl->units[u];
        const float mg = j->seg_maxg[un->seg], mh = j->seg_mhat[un->seg];
        double s = 0;
        float gc[OPTIM_TILE];
        for (int64_t t0 = un->b; t0 < un->e; t0 += OPTIM_TILE) {
            const int64_t n = t0 + OPTIM_TILE < un->e ? OPTIM_TILE : un->e - t0;
            const float *restrict gt = g + t0;
            for (int64_t i = 0; i < n; i++) {
                float q = gt[i] / mg * mh; /* unconditional, so the loop vectorises */
                float gi = gt[i];
                int big = fabsf(gi) > mh;
                gc[i] = big ? q : gi;
            }
            s += dot_lanes(gc, gc, n);
        }
        j->unit_sumsq[u] = s;
    }
}

OPTIM_HOT static void sspam_pass3(void *arg, int64_t ub, int64_t ue) {
    const sspam_job *j = arg;
    float *restrict p = j->param;
    float *restrict m = j->m;
    float *restrict v = j->v;
    const float *restrict g = j->grad;
    const float keep = j->keep, dec = j->decay, b1 = j->b1, omb1 = j->omb1, b2 = j->b2,
                omb2 = j->omb2, bc2 = j->bc2_sqrt, eps = j->eps, nss = j->neg_step_size;
    (void)b1;
    for (int64_t u = ub; u < ue; u++) {
        const optim_unit *un = &j->pl->units[u];
        const int s = un->seg;
        if (!j->seg_active[s]) {
            /* zero gradient norm: the code skips the tensor after its weight decay (the reset
             * of the moments still happens) */
            for (int64_t i = un->b; i < un->e; i++) {
                p[i] = p[i] * dec;
                m[i] = m[i] * keep;
                v[i] = v[i] * keep;
            }
            continue;
        }
        const float mg = j->seg_maxg[s], mh = j->seg_mhat[s], nrm = j->seg_norm[s], c = j->seg_c[s];
        float sq[OPTIM_TILE];
        for (int64_t t0 = un->b; t0 < un->e; t0 += OPTIM_TILE) {
            const int64_t n = t0 + OPTIM_TILE < un->e ? OPTIM_TILE : un->e - t0;
            float *restrict pt = p + t0, *restrict mt = m + t0, *restrict vt = v + t0;
            const float *restrict gt = g + t0;
            for (int64_t i = 0; i < n; i++) {
                float gi = gt[i];
                float q = gi / mg * mh;
                int big = fabsf(gi) > mh;
                float gc = big ? q : gi;
                float gn = gc / nrm * c;
                float mo = mt[i] * keep, vo = vt[i] * keep;
                float mi = fmaf(omb1, gn - mo, mo); /* exp_avg.lerp_(grad, 1 - beta1) */
                float vi = fmaf(omb2 * gn, gn, vo * b2);
                mt[i] = mi;
                vt[i] = vi;
                sq[i] = vi;
            }
            sqrt_tile(sq, n);
            for (int64_t i = 0; i < n; i++) {
                float den = sq[i] / bc2 + eps;
                pt[i] = pt[i] * dec + nss * mt[i] / den;
            }
        }
    }
}

/* torch's CPU lerp for one scalar: exact at both ends, as aten's lerp kernel */
static float lerp_f(float a, float b, float w) {
    return fabsf(w) < 0.5f ? fmaf(w, b - a, a) : fmaf(-(b - a), 1.0f - w, b);
}

pk_status optim_stable_spam_step(pk_pool *pool, const pk_stable_spam_params *hp0, int64_t step,
                                 const pk_optim_segment *segs, int nseg, float *param,
                                 const float *grad, float *exp_avg, float *exp_avg_sq,
                                 pk_stable_spam_tensor_state *ts) {
    const char *who = "optim_stable_spam_step";
    if (!hp0 || !param || !grad || !exp_avg || !exp_avg_sq || !ts || step < 1)
        return pk_error(PK_ERR_INVALID, "%s: bad arguments (step=%lld)", who, (long long)step);
    PK_TRY(check_segments(segs, nseg, who));
    pk_stable_spam_params hp = optim_stable_spam_defaults(*hp0);
    if (hp.delta_t < 1) return pk_error(PK_ERR_INVALID, "%s: delta_t %d", who, hp.delta_t);
    optim_plan pl;
    PK_TRY(plan_build(segs, nseg, 0, &pl));
    size_t nu = (size_t)(pl.nunits ? pl.nunits : 1), ns = (size_t)(nseg ? nseg : 1);
    float *unit_max = malloc(nu * sizeof *unit_max);
    double *unit_sumsq = malloc(nu * sizeof *unit_sumsq);
    float *segf = malloc(4 * ns * sizeof *segf);
    unsigned char *active = malloc(ns);
    if (!unit_max || !unit_sumsq || !segf || !active) {
        free(unit_max);
        free(unit_sumsq);
        free(segf);
        free(active);
        plan_free(&pl);
        return pk_error(PK_ERR_NOMEM, "%s: no memory for per-tensor statistics", who);
    }
    /* Adam's step count restarts at 1 on every reset step k * DeltaT (the first period runs
     * from 1 to DeltaT - 1); the norm EMAs and max EMA use the global step. */
    int reset = step % hp.delta_t == 0;
    int64_t astep = step < hp.delta_t ? step : step % hp.delta_t + 1;
    double lr = hp.lr, b1 = hp.beta1, b2 = hp.beta2;
    double bc1 = 1.0 - pow(b1, (double)astep), bc2 = 1.0 - pow(b2, (double)astep);
    sspam_job j = {.pl = &pl,
                   .param = param,
                   .m = exp_avg,
                   .v = exp_avg_sq,
                   .grad = grad,
                   .unit_max = unit_max,
                   .unit_sumsq = unit_sumsq,
                   .seg_maxg = segf,
                   .seg_mhat = segf + ns,
                   .seg_norm = segf + 2 * ns,
                   .seg_c = segf + 3 * ns,
                   .seg_active = active,
                   .keep = reset ? 0.0f : 1.0f,
                   .decay = (float)(1.0 - (double)hp.weight_decay * lr),
                   .b1 = hp.beta1,
                   .omb1 = (float)(1.0 - b1),
                   .b2 = hp.beta2,
                   .omb2 = (float)(1.0 - b2),
                   .bc2_sqrt = (float)sqrt(bc2),
                   .eps = hp.eps,
                   .neg_step_size = (float)-(lr / bc1)};
    pk_parallel_for(pool, pl.nunits, 1, sspam_pass1, &j);
    const float theta_t = (float)(1.0 - pow((double)hp.gamma3, (double)step));
    for (int s = 0; s < nseg; s++)
        j.seg_maxg[s] = 0.0f;
    for (int u = 0; u < pl.nunits; u++) {
        int s = pl.units[u].seg;
        if (unit_max[u] > j.seg_maxg[s]) j.seg_maxg[s] = unit_max[u];
    }
    for (int s = 0; s < nseg; s++) {
        ts[s].m_max = lerp_f(ts[s].m_max, j.seg_maxg[s], (float)(1.0 - (double)hp.gamma3));
        j.seg_mhat[s] = ts[s].m_max / theta_t;
    }
    pk_parallel_for(pool, pl.nunits, 1, sspam_pass2, &j);
    double *segsum = calloc(ns, sizeof *segsum);
    if (!segsum) {
        free(unit_max);
        free(unit_sumsq);
        free(segf);
        free(active);
        plan_free(&pl);
        return pk_error(PK_ERR_NOMEM, "%s: no memory", who);
    }
    for (int u = 0; u < pl.nunits; u++)
        segsum[pl.units[u].seg] += unit_sumsq[u];
    const double g1 = hp.gamma1, g2 = hp.gamma2;
    const float m_bc = (float)(1.0 - pow((double)g1, (double)step));
    const float v_bc = (float)(1.0 - pow((double)g2, (double)step));
    for (int s = 0; s < nseg; s++) {
        float nrm = (float)sqrt(segsum[s]);
        active[s] = nrm != 0.0f;
        j.seg_norm[s] = nrm;
        j.seg_c[s] = 0.0f;
        if (!active[s]) continue;
        ts[s].m_norm = lerp_f(ts[s].m_norm, nrm, (float)(1.0 - (double)g1));
        ts[s].v_norm = lerp_f(ts[s].v_norm, nrm * nrm, (float)(1.0 - (double)g2));
        float m_hat = ts[s].m_norm / m_bc;
        float v_hat = ts[s].v_norm / v_bc;
        j.seg_c[s] = m_hat / (sqrtf(v_hat) + (float)hp.eps);
    }
    pk_parallel_for(pool, pl.nunits, 1, sspam_pass3, &j);
    free(segsum);
    free(unit_max);
    free(unit_sumsq);
    free(segf);
    free(active);
    plan_free(&pl);
    return PK_OK;
}
