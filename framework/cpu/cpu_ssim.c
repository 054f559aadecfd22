/* cpu_ssim.c - CPU kernels of the SSIM op: separable 11-tap Gaussian filtering with zero
 * padding (horizontal pass into scratch, vertical pass into the statistics), threaded over
 * image rows. Zero padding is handled by clipping each output's tap range.
 *
 * Speed: each pass does all of its maps in one sweep over a row, eight pixels per vector
 * (GCC/Clang vector extensions; the hot functions are built for AVX2 and for the baseline by
 * target_clones, where a vector is two SSE or NEON registers). The forward's horizontal pass
 * forms x^2, y^2 and xy in registers; its vertical pass computes the SSIM map while the five
 * statistics are in registers. The backward computes the per-pixel derivatives for one row and
 * filters them at once (the row is still in L1), and its vertical pass chains into the image
 * gradients without storing the filtered maps. Measured with tests/gs/bench_gs_loss.c (loss
 * forward + backward, 2 threads) before/after: see the commit that made this change.
 *
 * Deterministic for any thread count: every output is computed by one thread in a fixed tap
 * order, and the mean is summed per row (fixed lane order, double) then over rows in order. */
#include <string.h>

#include "cpu_util.h"
#include "ops/ops_ssim.h"

enum { R = PK_SSIM_WINDOW / 2 };

#if !defined(__GNUC__)
#error "cpu_ssim.c uses GCC/Clang vector extensions"
#endif
#if !defined(__clang__) && defined(__x86_64__)
/* AVX2 and the baseline; neither enables FMA (and ISO C mode does not contract), so both
 * clones give the same bits */
#define SSIM_HOT __attribute__((target_clones("avx2", "default")))
#else
#define SSIM_HOT
#endif
/* the helpers below take and return 32-byte vectors; they are always inlined into a clone */
#pragma GCC diagnostic ignored "-Wpsabi"
#define VINLINE static inline __attribute__((always_inline))
#define VL 8
typedef float vf __attribute__((vector_size(4 * VL)));
typedef double v4d __attribute__((vector_size(32)));

VINLINE vf vld(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

VINLINE void vst(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* a broadcast as scalar-vector arithmetic in a macro: an inline function returning
 * {x, x, ...} is lowered for the baseline target before inlining, which left the AVX2 clone
 * building each broadcast from two SSE halves (GCC 12) */
#define vbc(x) ((float)(x) - (vf){0})

/* The five statistics of one vector of pixels. */
typedef struct stats5 {
    vf m1, m2, xx, yy, xy;
} stats5;

/* Taps [k0, k1) of the output at x are inside the row (w pixels). */
VINLINE void tap_range(int64_t x, int64_t w, int *k0, int *k1) {
    *k0 = x < R ? (int)(R - x) : 0;
    *k1 = x + R >= w ? (int)(R + w - x) : PK_SSIM_WINDOW;
}

/* SSIM at one pixel from its five statistics (the formula of 3DGS's _ssim). */
VINLINE float ssim_px(float mu1, float mu2, float exx, float eyy, float exy) {
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2;
    float s11 = exx - mu1 * mu1, s22 = eyy - mu2 * mu2, s12 = exy - mu1 * mu2;
    return ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) /
           ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
}

VINLINE vf ssim_v(vf mu1, vf mu2, vf exx, vf eyy, vf exy) {
    vf C1 = vbc(PK_SSIM_C1), C2 = vbc(PK_SSIM_C2), two = vbc(2.f);
    vf s11 = exx - mu1 * mu1, s22 = eyy - mu2 * mu2, s12 = exy - mu1 * mu2;
    return ((two * mu1 * mu2 + C1) * (two * s12 + C2)) /
           ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
}

typedef struct ssim_job {
    const pk_ssim_params *p;
    const float *x, *y; /* (planes, h, w) */
    float *stats, *scratch, *map, *rows, *dmaps;
    float *gx, *gy; /* NULL when not wanted */
    float scale;    /* backward: d loss / d mean / count */
} ssim_job;

/* Forward, horizontal pass of one row: o[m * hw + x] for the maps x, y, x^2, y^2, xy. */
VINLINE void fwd_h_row(const float *restrict xr, const float *restrict yr, float *restrict o,
                       int64_t w, int64_t hw, const float *g) {
    int64_t x = R;
    /* interior: all 11 taps inside the row */
    for (; x + VL <= w - R; x += VL) {
        vf a = vld(xr + x - R), b = vld(yr + x - R), gk = vbc(g[0]);
        vf s0 = gk * a, s1 = gk * b, s2 = gk * (a * a), s3 = gk * (b * b), s4 = gk * (a * b);
        for (int k = 1; k < PK_SSIM_WINDOW; k++) {
            a = vld(xr + x + k - R), b = vld(yr + x + k - R), gk = vbc(g[k]);
            s0 += gk * a, s1 += gk * b;
            s2 += gk * (a * a), s3 += gk * (b * b), s4 += gk * (a * b);
        }
        vst(o + x, s0), vst(o + hw + x, s1), vst(o + 2 * hw + x, s2);
        vst(o + 3 * hw + x, s3), vst(o + 4 * hw + x, s4);
    }
    int64_t mid = x;
    for (x = 0; x < w; x++) {
        if (x >= R && x < mid) continue;
        int k0, k1;
        tap_range(x, w, &k0, &k1);
        float s[5] = {0};
        for (int k = k0; k < k1; k++) {
            float a = xr[x + k - R], b = yr[x + k - R];
            s[0] += g[k] * a, s[1] += g[k] * b;
            s[2] += g[k] * (a * a), s[3] += g[k] * (b * b), s[4] += g[k] * (a * b);
        }
        for (int m = 0; m < 5; m++)
            o[m * hw + x] = s[m];
    }
}

SSIM_HOT static void fwd_h_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        fwd_h_row(j->x + r * w, j->y + r * w, j->scratch + pl * 5 * hw + y * w, w, hw, j->p->win);
    }
}

/* Forward, vertical pass: stats, the SSIM map and each row's mean. */
SSIM_HOT static void fwd_v_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    const float *g = j->p->win;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        int k0, k1;
        tap_range(y, h, &k0, &k1);
        const float *sc = j->scratch + pl * 5 * hw + (y + k0 - R) * w; /* row of tap k0 */
        float *st = j->stats + pl * 5 * hw + y * w, *map = j->map + r * w;
        v4d acc0 = {0, 0, 0, 0}, acc1 = {0, 0, 0, 0};
        int64_t x = 0;
        for (; x + VL <= w; x += VL) {
            const float *p = sc + x;
            vf gk = vbc(g[k0]);
            vf s0 = gk * vld(p), s1 = gk * vld(p + hw), s2 = gk * vld(p + 2 * hw);
            vf s3 = gk * vld(p + 3 * hw), s4 = gk * vld(p + 4 * hw);
            for (int k = k0 + 1; k < k1; k++) {
                p += w, gk = vbc(g[k]);
                s0 += gk * vld(p), s1 += gk * vld(p + hw), s2 += gk * vld(p + 2 * hw);
                s3 += gk * vld(p + 3 * hw), s4 += gk * vld(p + 4 * hw);
            }
            vst(st + x, s0), vst(st + hw + x, s1), vst(st + 2 * hw + x, s2);
            vst(st + 3 * hw + x, s3), vst(st + 4 * hw + x, s4);
            vf v = ssim_v(s0, s1, s2, s3, s4);
            vst(map + x, v);
            acc0 += (v4d){v[0], v[1], v[2], v[3]};
            acc1 += (v4d){v[4], v[5], v[6], v[7]};
        }
        acc0 += acc1;
        double sum = (acc0[0] + acc0[1]) + (acc0[2] + acc0[3]);
        for (; x < w; x++) {
            const float *p = sc + x;
            float s[5];
            for (int m = 0; m < 5; m++)
                s[m] = g[k0] * p[m * hw];
            for (int k = k0 + 1; k < k1; k++) {
                p += w;
                for (int m = 0; m < 5; m++)
                    s[m] += g[k] * p[m * hw];
            }
            for (int m = 0; m < 5; m++)
                st[m * hw + x] = s[m];
            float v = ssim_px(s[0], s[1], s[2], s[3], s[4]);
            map[x] = v;
            sum += v;
        }
        j->rows[r] = (float)(sum / (double)w);
    }
}

pk_status cpu_ssim_forward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    ssim_job j = {.p = p,
                  .x = cpu_f32(n->in[0]),
                  .y = cpu_f32(n->in[1]),
                  .stats = cpu_f32(n->saved[0]),
                  .scratch = cpu_f32(n->saved[1]),
                  .map = cpu_f32(n->saved[2]),
                  .rows = cpu_f32(n->saved[3])};
    int64_t rows = p->planes * p->h;
    pk_parallel_for(c->pool, rows, 8, fwd_h_range, &j);
    pk_parallel_for(c->pool, rows, 8, fwd_v_range, &j);
    double sum = 0;
    for (int64_t r = 0; r < rows; r++)
        sum += j.rows[r];
    float v = (float)(sum / (double)rows);
    *cpu_f32(n->out[0]) = v;
    return PK_OK;
}

/* d SSIM / d (mu1, mu2, E[x^2] = E[y^2] share one, E[xy]) at a vector of pixels, times s. */
VINLINE void ssim_dv(const float *st, int64_t hw, vf s, vf *d0, vf *d1, vf *d2, vf *d3) {
    vf C1 = vbc(PK_SSIM_C1), C2 = vbc(PK_SSIM_C2), two = vbc(2.f);
    vf mu1 = vld(st), mu2 = vld(st + hw);
    vf s11 = vld(st + 2 * hw) - mu1 * mu1, s22 = vld(st + 3 * hw) - mu2 * mu2;
    vf s12 = vld(st + 4 * hw) - mu1 * mu2;
    vf A1 = two * mu1 * mu2 + C1, B1 = two * s12 + C2;
    vf A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
    vf den = vbc(1.f) / (A2 * B2), f = A1 * B1 * den;
    vf ds12 = two * A1 * den, ds = -f / B2; /* d f / d s12, d f / d s11 = d s22 */
    vf dmu1 = two * mu2 * B1 * den - two * mu1 * f / A2 - two * mu1 * ds - mu2 * ds12;
    vf dmu2 = two * mu1 * B1 * den - two * mu2 * f / A2 - two * mu2 * ds - mu1 * ds12;
    *d0 = s * dmu1, *d1 = s * dmu2, *d2 = s * ds, *d3 = s * ds12;
}

/* The same for one pixel. */
VINLINE void ssim_d1(const float *st, int64_t hw, float s, float d[4]) {
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2;
    float mu1 = st[0], mu2 = st[hw];
    float s11 = st[2 * hw] - mu1 * mu1, s22 = st[3 * hw] - mu2 * mu2;
    float s12 = st[4 * hw] - mu1 * mu2;
    float A1 = 2 * mu1 * mu2 + C1, B1 = 2 * s12 + C2;
    float A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
    float den = 1.0f / (A2 * B2), f = A1 * B1 * den;
    float ds12 = 2 * A1 * den, ds = -f / B2;
    float dmu1 = 2 * mu2 * B1 * den - 2 * mu1 * f / A2 - 2 * mu1 * ds - mu2 * ds12;
    float dmu2 = 2 * mu1 * B1 * den - 2 * mu2 * f / A2 - 2 * mu2 * ds - mu1 * ds12;
    d[0] = s * dmu1, d[1] = s * dmu2, d[2] = s * ds, d[3] = s * ds12;
}

/* out (w) = in (w) correlated with g, zero padding. */
VINLINE void hfilter(const float *restrict in, float *restrict out, int64_t w, const float *g) {
    int64_t x = R;
    for (; x + VL <= w - R; x += VL) {
        vf a = vbc(g[0]) * vld(in + x - R);
        for (int k = 1; k < PK_SSIM_WINDOW; k++)
            a += vbc(g[k]) * vld(in + x + k - R);
        vst(out + x, a);
    }
    int64_t mid = x;
    for (x = 0; x < w; x++) {
        if (x >= R && x < mid) continue;
        int k0, k1;
        tap_range(x, w, &k0, &k1);
        float acc = 0.f;
        for (int k = k0; k < k1; k++)
            acc += g[k] * in[x + k - R];
        out[x] = acc;
    }
}

/* Backward, per row: the derivative maps (dmaps (planes, 5, h, w) slots 0..3, times scale),
 * then their horizontal pass into scratch while the row is in cache. */
SSIM_HOT static void bwd_h_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    float s = j->scale;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        const float *st = j->stats + pl * 5 * hw + y * w;
        float *d = j->dmaps + pl * 5 * hw + y * w;
        int64_t x = 0;
        for (; x + VL <= w; x += VL) {
            vf d0, d1, d2, d3;
            ssim_dv(st + x, hw, vbc(s), &d0, &d1, &d2, &d3);
            vst(d + x, d0), vst(d + hw + x, d1), vst(d + 2 * hw + x, d2), vst(d + 3 * hw + x, d3);
        }
        for (; x < w; x++) {
            float dd[4];
            ssim_d1(st + x, hw, s, dd);
            for (int m = 0; m < 4; m++)
                d[m * hw + x] = dd[m];
        }
        for (int m = 0; m < 4; m++) {
            if ((m == 0 && !j->gx) || (m == 1 && !j->gy)) continue;
            hfilter(d + m * hw, j->scratch + pl * 5 * hw + y * w + m * hw, w, j->p->win);
        }
    }
}

/* Backward, vertical pass of the four maps and the chain through E[x], E[x^2], E[xy] into
 * the images: gx += f0 + 2 x f2 + y f3, gy += f1 + 2 y f2 + x f3. */
SSIM_HOT static void bwd_v_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    const float *g = j->p->win;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        int k0, k1;
        tap_range(y, h, &k0, &k1);
        const float *sc = j->scratch + pl * 5 * hw + (y + k0 - R) * w; /* row of tap k0 */
        const float *xr = j->x + r * w, *yr = j->y + r * w;
        float *gx = j->gx ? j->gx + r * w : NULL, *gy = j->gy ? j->gy + r * w : NULL;
        int64_t x = 0;
        for (; x + VL <= w; x += VL) {
            const float *p = sc + x;
            vf gk = vbc(g[k0]);
            /* a map whose gradient is not wanted was not filtered horizontally: skip it */
            vf f0 = vbc(0.f), f1 = vbc(0.f);
            if (gx) f0 = gk * vld(p);
            if (gy) f1 = gk * vld(p + hw);
            vf f2 = gk * vld(p + 2 * hw), f3 = gk * vld(p + 3 * hw);
            for (int k = k0 + 1; k < k1; k++) {
                p += w, gk = vbc(g[k]);
                if (gx) f0 += gk * vld(p);
                if (gy) f1 += gk * vld(p + hw);
                f2 += gk * vld(p + 2 * hw), f3 += gk * vld(p + 3 * hw);
            }
            vf xv = vld(xr + x), yv = vld(yr + x), two = vbc(2.f);
            if (gx) vst(gx + x, vld(gx + x) + (f0 + two * xv * f2 + yv * f3));
            if (gy) vst(gy + x, vld(gy + x) + (f1 + two * yv * f2 + xv * f3));
        }
        for (; x < w; x++) {
            const float *p = sc + x;
            float f[4];
            for (int m = 0; m < 4; m++)
                f[m] = (m == 0 && !gx) || (m == 1 && !gy) ? 0.f : g[k0] * p[m * hw];
            for (int k = k0 + 1; k < k1; k++) {
                p += w;
                for (int m = 0; m < 4; m++)
                    if (!((m == 0 && !gx) || (m == 1 && !gy))) f[m] += g[k] * p[m * hw];
            }
            if (gx) gx[x] += f[0] + 2 * xr[x] * f[2] + yr[x] * f[3];
            if (gy) gy[x] += f[1] + 2 * yr[x] * f[2] + xr[x] * f[3];
        }
    }
}

pk_status cpu_ssim_backward(pk_ctx *c, pk_node *n) {
    const pk_ssim_params *p = PK_PARAMS(n, pk_ssim_params);
    bool wx = cpu_wants_grad(n, 0), wy = cpu_wants_grad(n, 1);
    if (!wx && !wy) return PK_OK;
    tensor *dm = tensor_new(c->step, PK_F32, 4, n->saved[0]->shape);
    if (!dm) return PK_ERR_NOMEM;
    int64_t rows = p->planes * p->h;
    ssim_job j = {.p = p,
                  .x = cpu_f32(n->in[0]),
                  .y = cpu_f32(n->in[1]),
                  .stats = cpu_f32(n->saved[0]),
                  .scratch = cpu_f32(n->saved[1]),
                  .dmaps = cpu_f32(dm),
                  .gx = wx ? cpu_f32(n->in[0]->grad) : NULL,
                  .gy = wy ? cpu_f32(n->in[1]->grad) : NULL,
                  .scale = *cpu_f32(n->out[0]->grad) / (float)(rows * p->w)};
    pk_parallel_for(c->pool, rows, 8, bwd_h_range, &j);
    pk_parallel_for(c->pool, rows, 8, bwd_v_range, &j);
    return PK_OK;
}
