/* cpu_ssim.c - CPU kernels of the SSIM op: separable 11-tap Gaussian filtering (horizontal
 * pass into scratch, vertical pass into the statistics), threaded over image rows. Each tap
 * is an axpy over a row so the compiler vectorises it; zero padding is handled by clipping
 * each tap's x or y range. Deterministic: row means are summed in order in double. */
#include <string.h>

#include "cpu_util.h"
#include "ops/ops_ssim.h"

enum { R = PK_SSIM_WINDOW / 2 };

/* out (w) = in (w) correlated with g, zero padding. */
static void hfilter(const float *restrict in, float *restrict out, int64_t w, const float *g) {
    memset(out, 0, sizeof(float) * (size_t)w);
    for (int k = 0; k < PK_SSIM_WINDOW; k++) {
        int64_t off = k - R, x0 = off < 0 ? -off : 0, x1 = off > 0 ? w - off : w;
        float gk = g[k];
        for (int64_t x = x0; x < x1; x++)
            out[x] += gk * in[x + off];
    }
}

/* out (w) = column filter at row y of the (h, w) image `img`, zero padding. */
static void vfilter(const float *restrict img, float *restrict out, int64_t y, int64_t h, int64_t w,
                    const float *g) {
    memset(out, 0, sizeof(float) * (size_t)w);
    for (int k = 0; k < PK_SSIM_WINDOW; k++) {
        int64_t yy = y + k - R;
        if (yy < 0 || yy >= h) continue;
        const float *restrict row = img + yy * w;
        float gk = g[k];
        for (int64_t x = 0; x < w; x++)
            out[x] += gk * row[x];
    }
}

typedef struct ssim_job {
    const pk_ssim_params *p;
    const float *x, *y; /* (planes, h, w) */
    float *stats, *scratch, *map, *rows, *dmaps;
    float *gx, *gy; /* NULL when not wanted */
    float scale;    /* backward: d loss / d mean / count */
} ssim_job;

/* Forward, horizontal pass: scratch (planes, 5, h, w) = hfilter of x, y, x^2, y^2, xy. */
static void fwd_h_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        const float *xr = j->x + r * w, *yr = j->y + r * w;
        float *o = j->scratch + pl * 5 * hw + y * w;
        /* the products go to this row of stats slots 2..4, written only by the next pass */
        float *prod = j->stats + pl * 5 * hw + y * w;
        for (int64_t i = 0; i < w; i++) {
            prod[2 * hw + i] = xr[i] * xr[i];
            prod[3 * hw + i] = yr[i] * yr[i];
            prod[4 * hw + i] = xr[i] * yr[i];
        }
        hfilter(xr, o, w, j->p->win);
        hfilter(yr, o + hw, w, j->p->win);
        for (int m = 2; m < 5; m++)
            hfilter(prod + m * hw, o + m * hw, w, j->p->win);
    }
}

/* Forward, vertical pass: stats, the SSIM map and each row's mean. */
static void fwd_v_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        float *st = j->stats + pl * 5 * hw + y * w;
        for (int m = 0; m < 5; m++)
            vfilter(j->scratch + (pl * 5 + m) * hw, st + m * hw, y, h, w, j->p->win);
        float *map = j->map + r * w;
        double sum = 0;
        for (int64_t i = 0; i < w; i++) {
            float mu1 = st[i], mu2 = st[hw + i];
            float s11 = st[2 * hw + i] - mu1 * mu1, s22 = st[3 * hw + i] - mu2 * mu2;
            float s12 = st[4 * hw + i] - mu1 * mu2;
            float v = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) /
                      ((mu1 * mu1 + mu2 * mu2 + C1) * (s11 + s22 + C2));
            map[i] = v;
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

/* Backward, per pixel: d mean / d (mu1, mu2, E[x^2] = E[y^2] share one, E[xy]) into dmaps
 * (planes, 5, h, w) slots 0..3, each already times scale. */
static void bwd_d_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    const float C1 = PK_SSIM_C1, C2 = PK_SSIM_C2, s = j->scale;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        const float *st = j->stats + pl * 5 * hw + y * w;
        float *d = j->dmaps + pl * 5 * hw + y * w;
        for (int64_t i = 0; i < w; i++) {
            float mu1 = st[i], mu2 = st[hw + i];
            float s11 = st[2 * hw + i] - mu1 * mu1, s22 = st[3 * hw + i] - mu2 * mu2;
            float s12 = st[4 * hw + i] - mu1 * mu2;
            float A1 = 2 * mu1 * mu2 + C1, B1 = 2 * s12 + C2;
            float A2 = mu1 * mu1 + mu2 * mu2 + C1, B2 = s11 + s22 + C2;
            float den = 1.0f / (A2 * B2), f = A1 * B1 * den;
            float ds12 = 2 * A1 * den, ds = -f / B2; /* d f / d s12, d f / d s11 = d s22 */
            float dmu1 = 2 * mu2 * B1 * den - 2 * mu1 * f / A2 - 2 * mu1 * ds - mu2 * ds12;
            float dmu2 = 2 * mu1 * B1 * den - 2 * mu2 * f / A2 - 2 * mu2 * ds - mu1 * ds12;
            d[i] = s * dmu1;
            d[hw + i] = s * dmu2;
            d[2 * hw + i] = s * ds;
            d[3 * hw + i] = s * ds12;
        }
    }
}

/* Backward, horizontal pass of the four derivative maps into scratch. */
static void bwd_h_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        for (int m = 0; m < 4; m++) {
            if (m == 0 && !j->gx) continue;
            if (m == 1 && !j->gy) continue;
            int64_t o = (pl * 5 + m) * hw + y * w;
            hfilter(j->dmaps + o, j->scratch + o, w, j->p->win);
        }
    }
}

/* Backward, vertical pass and the chain through E[x], E[x^2], E[xy] into the images. */
static void bwd_v_range(void *arg, int64_t b, int64_t e) {
    ssim_job *j = arg;
    int64_t h = j->p->h, w = j->p->w, hw = h * w;
    for (int64_t r = b; r < e; r++) {
        int64_t pl = r / h, y = r % h;
        /* filtered rows go to this row of dmaps, which the horizontal pass no longer reads */
        float *f = j->dmaps + pl * 5 * hw + y * w;
        for (int m = 0; m < 4; m++) {
            if ((m == 0 && !j->gx) || (m == 1 && !j->gy)) continue;
            vfilter(j->scratch + (pl * 5 + m) * hw, f + m * hw, y, h, w, j->p->win);
        }
        const float *xr = j->x + r * w, *yr = j->y + r * w;
        const float *fb = f + 2 * hw, *fc = f + 3 * hw;
        if (j->gx) {
            float *g = j->gx + r * w;
            for (int64_t i = 0; i < w; i++)
                g[i] += f[i] + 2 * xr[i] * fb[i] + yr[i] * fc[i];
        }
        if (j->gy) {
            float *g = j->gy + r * w;
            const float *fa = f + hw;
            for (int64_t i = 0; i < w; i++)
                g[i] += fa[i] + 2 * yr[i] * fb[i] + xr[i] * fc[i];
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
    pk_parallel_for(c->pool, rows, 8, bwd_d_range, &j);
    pk_parallel_for(c->pool, rows, 8, bwd_h_range, &j);
    pk_parallel_for(c->pool, rows, 8, bwd_v_range, &j);
    return PK_OK;
}
