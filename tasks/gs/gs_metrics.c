/* gs_metrics.c - PSNR, SSIM with its gradient, and the 3DGS photometric loss on the host.
 * SSIM uses separable Gaussian filtering with zero padding (the same as the 2-D
 * convolution with padding 5 in 3DGS's _ssim); the gradient goes back through the five
 * filtered maps (mu_a, mu_b, E[a^2], E[b^2], E[ab]) by the filter's transpose, which for a
 * symmetric kernel with zero padding is the same filter. */
#include "gs_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WIN 11
#define HALF 5
#define SSIM_C1 (0.01 * 0.01)
#define SSIM_C2 (0.03 * 0.03)

double gs_psnr(const float *a, const float *b, int64_t n) {
    double se = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        se += d * d;
    }
    double mse = se / (double)(n > 0 ? n : 1);
    return mse > 0 ? 10.0 * log10(1.0 / mse) : 100.0;
}

static void gauss_window(float *k) {
    double s = 0, t[WIN];
    for (int i = 0; i < WIN; i++)
        s += t[i] = exp(-(double)((i - HALF) * (i - HALF)) / (2.0 * 1.5 * 1.5));
    for (int i = 0; i < WIN; i++)
        k[i] = (float)(t[i] / s);
}

/* out (h, w) = in filtered by the separable window, zero padding; tmp (h, w) scratch. */
static void blur(const float *k, const float *in, float *tmp, float *out, int h, int w) {
    for (int y = 0; y < h; y++) {
        const float *r = in + (size_t)y * w;
        float *o = tmp + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            int lo = x - HALF < 0 ? HALF - x : 0, hi = x + HALF >= w ? HALF + w - 1 - x : WIN - 1;
            float s = 0;
            for (int j = lo; j <= hi; j++)
                s += k[j] * r[x - HALF + j];
            o[x] = s;
        }
    }
    for (int y = 0; y < h; y++) {
        int lo = y - HALF < 0 ? HALF - y : 0, hi = y + HALF >= h ? HALF + h - 1 - y : WIN - 1;
        float *o = out + (size_t)y * w;
        for (int x = 0; x < w; x++)
            o[x] = 0;
        for (int j = lo; j <= hi; j++) {
            const float *r = tmp + (size_t)(y - HALF + j) * w;
            float kj = k[j];
            for (int x = 0; x < w; x++)
                o[x] += kj * r[x];
        }
    }
}

typedef struct ssim_job {
    const float *a, *b;
    float *d_a;
    int h, w;
    float scale;
    double *sums;   // (c) per-channel SSIM sums
    float *scratch; // (c, 12, h, w)
    pk_status status;
} ssim_job;

static void ssim_channels(void *arg, int64_t begin, int64_t end) {
    ssim_job *j = arg;
    float k[WIN];
    gauss_window(k);
    size_t hw = (size_t)j->h * (size_t)j->w;
    for (int64_t ch = begin; ch < end; ch++) {
        const float *a = j->a + ch * hw, *b = j->b + ch * hw;
        float *s = j->scratch + (size_t)ch * 12 * hw;
        float *aa = s, *bb = s + hw, *ab = s + 2 * hw, *tmp = s + 3 * hw;
        float *mu_a = s + 4 * hw, *mu_b = s + 5 * hw, *e_aa = s + 6 * hw, *e_bb = s + 7 * hw,
              *e_ab = s + 8 * hw;
        for (size_t i = 0; i < hw; i++)
            aa[i] = a[i] * a[i], bb[i] = b[i] * b[i], ab[i] = a[i] * b[i];
        blur(k, a, tmp, mu_a, j->h, j->w);
        blur(k, b, tmp, mu_b, j->h, j->w);
        blur(k, aa, tmp, e_aa, j->h, j->w);
        blur(k, bb, tmp, e_bb, j->h, j->w);
        blur(k, ab, tmp, e_ab, j->h, j->w);
        /* per pixel: S = A1 A2 / (B1 B2); the gradient w.r.t. the maps goes into
         * g_mu (d/d mu_a), g_aa (d/d E[a^2]) and g_ab (d/d E[ab]), reusing aa, bb, ab */
        double sum = 0;
        float *g_mu = aa, *g_aa = bb, *g_ab = ab;
        for (size_t i = 0; i < hw; i++) {
            double ma = mu_a[i], mb = mu_b[i];
            double saa = e_aa[i] - ma * ma, sbb = e_bb[i] - mb * mb, sab = e_ab[i] - ma * mb;
            double A1 = 2 * ma * mb + SSIM_C1, A2 = 2 * sab + SSIM_C2;
            double B1 = ma * ma + mb * mb + SSIM_C1, B2 = saa + sbb + SSIM_C2;
            double S = A1 * A2 / (B1 * B2);
            sum += S;
            if (j->d_a) {
                double dS_dma = 2 * mb * A2 / (B1 * B2) - S * 2 * ma / B1;
                double dS_dsab = 2 * A1 / (B1 * B2), dS_dsaa = -S / B2;
                /* saa = E[a^2] - ma^2, sab = E[ab] - ma mb */
                g_mu[i] = (float)(dS_dma - 2 * ma * dS_dsaa - mb * dS_dsab);
                g_aa[i] = (float)dS_dsaa;
                g_ab[i] = (float)dS_dsab;
            }
        }
        j->sums[ch] = sum;
        if (j->d_a) {
            float *d = j->d_a + ch * hw;
            blur(k, g_mu, tmp, mu_a, j->h, j->w);
            blur(k, g_aa, tmp, e_aa, j->h, j->w);
            blur(k, g_ab, tmp, e_ab, j->h, j->w);
            for (size_t i = 0; i < hw; i++)
                d[i] += j->scale * (mu_a[i] + 2 * a[i] * e_aa[i] + b[i] * e_ab[i]);
        }
    }
}

pk_status gs_ssim(pk_pool *pool, const float *a, const float *b, int c, int h, int w, float scale,
                  float *d_a, double *ssim) {
    if (c <= 0 || h <= 0 || w <= 0)
        return pk_error(PK_ERR_INVALID, "ssim: empty image (%d, %d, %d)", c, h, w);
    size_t hw = (size_t)h * (size_t)w;
    float *scratch = malloc(sizeof(float) * 12 * hw * (size_t)c);
    double *sums = calloc((size_t)c, sizeof(double));
    if (!scratch || !sums) {
        free(scratch), free(sums);
        return pk_error(PK_ERR_NOMEM, "ssim: out of memory");
    }
    double n = (double)hw * c;
    ssim_job j = {.a = a,
                  .b = b,
                  .d_a = d_a,
                  .h = h,
                  .w = w,
                  .scale = (float)(scale / n),
                  .sums = sums,
                  .scratch = scratch};
    pk_parallel_for(pool, c, 1, ssim_channels, &j);
    double s = 0;
    for (int ch = 0; ch < c; ch++)
        s += sums[ch];
    *ssim = s / n;
    free(scratch), free(sums);
    return PK_OK;
}

pk_status gs_loss(pk_pool *pool, const float *a, const float *b, int c, int h, int w, float *d_a,
                  double *loss, double *l1, double *ssim) {
    int64_t n = (int64_t)c * h * w;
    double s = 0;
    float g = (float)(0.8 / (double)n);
    for (int64_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        s += fabsf(d);
        /* torch's sign: d |x| / dx = 0 at x = 0 */
        if (d_a) d_a[i] = d > 0 ? g : d < 0 ? -g : 0.0f;
    }
    *l1 = s / (double)n;
    PK_TRY(gs_ssim(pool, a, b, c, h, w, -0.2f, d_a, ssim));
    *loss = 0.8 * *l1 + 0.2 * (1.0 - *ssim);
    return PK_OK;
}
