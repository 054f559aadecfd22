/* augment.c - DINO's multi-crop augmentation on host threads (see augment.h). */
#include "augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/threads.h"

uint64_t aug_mix(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

aug_config aug_config_default(int channels, int global_size, int local_size, int nlocal) {
    double k = (double)global_size / 224.0; /* DINO's sigmas are pixels of a 224 crop */
    aug_config a = {.channels = channels,
                    .global_size = global_size,
                    .local_size = local_size,
                    .nlocal = nlocal,
                    .global_scale = {0.4, 1.0},
                    .local_scale = {0.05, 0.4},
                    .blur_sigma = {0.1 * k, 2.0 * k},
                    .blur_p = {1.0, 0.1, 0.5},
                    .solarize_p = 0.2,
                    .flip_p = 0.5,
                    .jitter_p = 0.8,
                    .gray_p = 0.2};
    for (int i = 0; i < 3; i++)
        a.mean[i] = 0.5f, a.std[i] = 0.5f;
    return a;
}

static double uni(pk_rng *r, double lo, double hi) { return lo + (hi - lo) * pk_rng_uniform(r); }

void aug_rrc_params(pk_rng *rng, int h, int w, const double scale[2], int box[4]) {
    double area = (double)h * w, lr0 = log(3.0 / 4.0), lr1 = log(4.0 / 3.0);
    for (int t = 0; t < 10; t++) {
        double target = area * uni(rng, scale[0], scale[1]);
        double ar = exp(uni(rng, lr0, lr1));
        int cw = (int)lround(sqrt(target * ar)), ch = (int)lround(sqrt(target / ar));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            box[0] = (int)pk_rng_below(rng, (uint64_t)(h - ch + 1));
            box[1] = (int)pk_rng_below(rng, (uint64_t)(w - cw + 1));
            box[2] = ch, box[3] = cw;
            return;
        }
    }
    /* torchvision's fallback: the centre crop with the ratio clamped to (3/4, 4/3) */
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < 3.0 / 4.0)
        ch = (int)lround(cw / (3.0 / 4.0));
    else if (in_ratio > 4.0 / 3.0)
        cw = (int)lround(ch * (4.0 / 3.0));
    box[0] = (h - ch) / 2, box[1] = (w - cw) / 2, box[2] = ch, box[3] = cw;
}

/* PIL's bicubic kernel (a = -0.5). */
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* PIL's 1-D resampling weights (ImagingResampleHorizontal's precompute) for `in` samples to
 * `out`: output j reads in[lo[j] .. lo[j] + n[j]) with weights w[j * stride ..]. */
typedef struct resample_1d {
    int *lo, *n;
    double *w;
    int stride;
} resample_1d;

/* PIL's bilinear (triangle) kernel. */
static double triangle(double x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

static bool resample_make(int in, int out, aug_filter f, resample_1d *r) {
    double scale = (double)in / out, fs = scale > 1 ? scale : 1.0;
    double support = (f == AUG_BILINEAR ? 1.0 : 2.0) * fs;
    r->stride = (int)ceil(support) * 2 + 1;
    r->lo = malloc(sizeof(int) * (size_t)out);
    r->n = malloc(sizeof(int) * (size_t)out);
    r->w = malloc(sizeof(double) * (size_t)out * (size_t)r->stride);
    if (!r->lo || !r->n || !r->w) return false;
    for (int j = 0; j < out; j++) {
        double center = (j + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        double *w = r->w + (size_t)j * r->stride, sum = 0;
        int n = hi - lo;
        if (n > r->stride) n = r->stride;
        for (int x = 0; x < n; x++) {
            double t = (x + lo - center + 0.5) / fs;
            w[x] = f == AUG_BILINEAR ? triangle(t) : bicubic(t);
            sum += w[x];
        }
        for (int x = 0; x < n; x++)
            w[x] = sum != 0 ? w[x] / sum : 0;
        r->lo[j] = lo, r->n[j] = n;
    }
    return true;
}

static void resample_free(resample_1d *r) { free(r->lo), free(r->n), free(r->w); }

void aug_resize_box(const float *src, int c, int h, int w, const int box[4], int s, float *dst,
                    float *tmp) {
    aug_resize_box_filter(AUG_BICUBIC, src, c, h, w, box, s, dst, tmp);
}

void aug_resize_box_filter(aug_filter f, const float *src, int c, int h, int w, const int box[4],
                           int s, float *dst, float *tmp) {
    int top = box[0], left = box[1], bh = box[2], bw = box[3];
    resample_1d rx = {0}, ry = {0};
    if (!resample_make(bw, s, f, &rx) || !resample_make(bh, s, f, &ry)) {
        /* out of host memory: nearest neighbour keeps the batch defined */
        for (int k = 0; k < c; k++)
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                    dst[((size_t)k * s + y) * s + x] =
                        src[((size_t)k * h + top + y * bh / s) * w + left + x * bw / s];
        resample_free(&rx), resample_free(&ry);
        return;
    }
    for (int k = 0; k < c; k++) { /* horizontal pass: (bh, bw) -> (bh, s) */
        for (int y = 0; y < bh; y++) {
            const float *row = src + ((size_t)k * h + top + y) * w + left;
            float *o = tmp + ((size_t)k * bh + y) * s;
            for (int x = 0; x < s; x++) {
                const double *wt = rx.w + (size_t)x * rx.stride;
                double v = 0;
                for (int i = 0; i < rx.n[x]; i++)
                    v += wt[i] * row[rx.lo[x] + i];
                o[x] = (float)v;
            }
        }
        for (int y = 0; y < s; y++) { /* vertical pass: (bh, s) -> (s, s) */
            const double *wt = ry.w + (size_t)y * ry.stride;
            float *o = dst + ((size_t)k * s + y) * s;
            for (int x = 0; x < s; x++) {
                double v = 0;
                for (int i = 0; i < ry.n[y]; i++)
                    v += wt[i] * tmp[((size_t)k * bh + ry.lo[y] + i) * s + x];
                /* bicubic overshoots: clamped to [0, 1] as PIL clamps to bytes; bilinear
                 * weights are convex, so its output stays in the input's range unclamped */
                o[x] = f == AUG_BILINEAR ? (float)v : v < 0 ? 0.0f : v > 1 ? 1.0f : (float)v;
            }
        }
    }
    resample_free(&rx), resample_free(&ry);
}

static float clamp01(double v) { return v < 0 ? 0.0f : v > 1 ? 1.0f : (float)v; }

static float gray_of(const float *x, size_t hw, size_t j) {
    return 0.299f * x[j] + 0.587f * x[hw + j] + 0.114f * x[2 * hw + j];
}

static void adjust_brightness(float *x, int c, size_t hw, double f) {
    for (size_t j = 0; j < (size_t)c * hw; j++)
        x[j] = clamp01(x[j] * f);
}

/* torchvision adjust_contrast: blend with the mean of the grayscale image. */
static void adjust_contrast(float *x, int c, size_t hw, double f) {
    double mean = 0;
    for (size_t j = 0; j < hw; j++)
        mean += c == 3 ? gray_of(x, hw, j) : x[j];
    mean /= (double)hw;
    for (size_t j = 0; j < (size_t)c * hw; j++)
        x[j] = clamp01(f * x[j] + (1 - f) * mean);
}

/* torchvision adjust_saturation: blend with the grayscale image (3 channels). */
static void adjust_saturation(float *x, size_t hw, double f) {
    for (size_t j = 0; j < hw; j++) {
        float g = gray_of(x, hw, j);
        for (int k = 0; k < 3; k++)
            x[k * hw + j] = clamp01(f * x[k * hw + j] + (1 - f) * g);
    }
}

/* torchvision adjust_hue: shift the hue by f (a fraction of the circle) in HSV. */
static void adjust_hue(float *x, size_t hw, double f) {
    for (size_t j = 0; j < hw; j++) {
        double r = x[j], g = x[hw + j], b = x[2 * hw + j];
        double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b)), d = mx - mn, hue = 0;
        if (d > 0) {
            if (mx == r)
                hue = fmod((g - b) / d, 6.0);
            else if (mx == g)
                hue = (b - r) / d + 2.0;
            else
                hue = (r - g) / d + 4.0;
            hue /= 6.0;
        }
        double s = mx > 0 ? d / mx : 0, v = mx;
        hue = fmod(hue + f + 2.0, 1.0);
        double h6 = hue * 6.0;
        int i = (int)floor(h6) % 6;
        double fr = h6 - floor(h6), p = v * (1 - s), q = v * (1 - s * fr),
               t = v * (1 - s * (1 - fr));
        double o[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
        x[j] = clamp01(o[i][0]), x[hw + j] = clamp01(o[i][1]), x[2 * hw + j] = clamp01(o[i][2]);
    }
}

/* Separable Gaussian blur with a sampled kernel of radius ceil(3 sigma), edges replicated. */
static void gaussian_blur(float *x, int c, int s, double sigma, float *tmp) {
    int r = (int)ceil(3.0 * sigma);
    if (r < 1) r = 1;
    if (r > 32) r = 32;
    double k[65], sum = 0;
    for (int i = -r; i <= r; i++)
        sum += k[i + r] = exp(-0.5 * (double)i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++)
        k[i] /= sum;
    for (int ch = 0; ch < c; ch++) {
        float *p = x + (size_t)ch * s * s;
        for (int y = 0; y < s; y++)
            for (int xx = 0; xx < s; xx++) {
                double v = 0;
                for (int i = -r; i <= r; i++) {
                    int q = xx + i < 0 ? 0 : xx + i >= s ? s - 1 : xx + i;
                    v += k[i + r] * p[y * s + q];
                }
                tmp[y * s + xx] = (float)v;
            }
        for (int y = 0; y < s; y++)
            for (int xx = 0; xx < s; xx++) {
                double v = 0;
                for (int i = -r; i <= r; i++) {
                    int q = y + i < 0 ? 0 : y + i >= s ? s - 1 : y + i;
                    v += k[i + r] * tmp[q * s + xx];
                }
                p[y * s + xx] = (float)v;
            }
    }
}

/* One view: crop, flip, jitter, grayscale, blur, solarise, normalise, into out (C, S, S). */
static void make_view(const aug_config *a, const float *img, int h, int w, pk_rng *rng, int s,
                      const double scale[2], double blur_p, double solarize_p, float *out,
                      float *tmp) {
    int c = a->channels, box[4];
    size_t hw = (size_t)s * s;
    aug_rrc_params(rng, h, w, scale, box);
    aug_resize_box(img, c, h, w, box, s, out, tmp);
    if (pk_rng_uniform(rng) < a->flip_p)
        for (int k = 0; k < c; k++)
            for (int y = 0; y < s; y++) {
                float *row = out + ((size_t)k * s + y) * s;
                for (int x = 0; x < s / 2; x++) {
                    float t = row[x];
                    row[x] = row[s - 1 - x], row[s - 1 - x] = t;
                }
            }
    if (pk_rng_uniform(rng) < a->jitter_p) {
        /* ColorJitter.get_params: a random order, then the four factors */
        int order[4] = {0, 1, 2, 3};
        for (int i = 3; i > 0; i--) {
            int j = (int)pk_rng_below(rng, (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double fb = uni(rng, 0.6, 1.4), fc = uni(rng, 0.6, 1.4), fs = uni(rng, 0.8, 1.2),
               fh = uni(rng, -0.1, 0.1);
        for (int i = 0; i < 4; i++) {
            if (order[i] == 0) adjust_brightness(out, c, hw, fb);
            if (order[i] == 1) adjust_contrast(out, c, hw, fc);
            if (order[i] == 2 && c == 3) adjust_saturation(out, hw, fs);
            if (order[i] == 3 && c == 3) adjust_hue(out, hw, fh);
        }
    }
    if (pk_rng_uniform(rng) < a->gray_p && c == 3)
        for (size_t j = 0; j < hw; j++) {
            float g = gray_of(out, hw, j);
            out[j] = out[hw + j] = out[2 * hw + j] = g;
        }
    if (pk_rng_uniform(rng) < blur_p) {
        double sigma = uni(rng, a->blur_sigma[0], a->blur_sigma[1]);
        if (sigma > 0) gaussian_blur(out, c, s, sigma, tmp);
    }
    if (solarize_p > 0 && pk_rng_uniform(rng) < solarize_p)
        for (size_t j = 0; j < (size_t)c * hw; j++)
            if (out[j] >= 127.5f / 255.0f) out[j] = 1.0f - out[j];
    for (int k = 0; k < c; k++)
        for (size_t j = 0; j < hw; j++)
            out[k * hw + j] = (out[k * hw + j] - a->mean[k]) / a->std[k];
}

static void to_planar(const uint8_t *img, int h, int w, int c, float *out) {
    size_t hw = (size_t)h * w;
    for (size_t j = 0; j < hw; j++)
        for (int k = 0; k < c; k++)
            out[(size_t)k * hw + j] = img[j * c + k] / 255.0f;
}

bool aug_dino_views(const aug_config *a, const uint8_t *img, int h, int w, uint64_t seed, float *g0,
                    float *g1, float *const *locals) {
    int c = a->channels, big = h > w ? h : w;
    if (a->global_size > big) big = a->global_size;
    float *src = malloc(sizeof(float) * (size_t)c * h * w);
    float *tmp = malloc(sizeof(float) * (size_t)c * big * big);
    if (!src || !tmp) {
        free(src), free(tmp);
        return false;
    }
    to_planar(img, h, w, c, src);
    /* one stream per view, so the number of local crops does not change the global ones */
    pk_rng r0 = {aug_mix(seed, 0)}, r1 = {aug_mix(seed, 1)};
    make_view(a, src, h, w, &r0, a->global_size, a->global_scale, a->blur_p[0], 0.0, g0, tmp);
    make_view(a, src, h, w, &r1, a->global_size, a->global_scale, a->blur_p[1], a->solarize_p, g1,
              tmp);
    for (int v = 0; v < a->nlocal; v++) {
        pk_rng rl = {aug_mix(seed, 2 + (uint64_t)v)};
        make_view(a, src, h, w, &rl, a->local_size, a->local_scale, a->blur_p[2], 0.0, locals[v],
                  tmp);
    }
    free(src), free(tmp);
    return true;
}

typedef struct batch_job {
    const aug_config *a;
    const pk_dataset *ds;
    const int32_t *idx;
    int b;
    uint64_t seed;
    int64_t first; /* sample i is sample first + i of the global batch (its seed's index) */
    float *globals, *locals;
    volatile int failed;
} batch_job;

static void batch_range(void *arg, int64_t begin, int64_t end) {
    batch_job *j = arg;
    const aug_config *a = j->a;
    size_t c = (size_t)a->channels, gsz = c * a->global_size * a->global_size,
           lsz = c * a->local_size * a->local_size;
    size_t img = (size_t)j->ds->h * j->ds->w * j->ds->c;
    for (int64_t i = begin; i < end; i++) {
        float *loc[64];
        for (int v = 0; v < a->nlocal && v < 64; v++)
            loc[v] = j->locals + ((size_t)v * j->b + (size_t)i) * lsz;
        if (!aug_dino_views(a, j->ds->images + (size_t)j->idx[i] * img, j->ds->h, j->ds->w,
                            aug_mix(j->seed, (uint64_t)(j->first + i)),
                            j->globals + (size_t)i * gsz,
                            j->globals + ((size_t)j->b + (size_t)i) * gsz, loc))
            j->failed = 1;
    }
}

pk_status aug_dino_batch(pk_pool *pool, const aug_config *a, const pk_dataset *ds,
                         const int32_t *idx, int b, uint64_t seed, float *globals, float *locals) {
    return aug_dino_batch_at(pool, a, ds, idx, b, 0, seed, globals, locals);
}

pk_status aug_dino_batch_at(pk_pool *pool, const aug_config *a, const pk_dataset *ds,
                            const int32_t *idx, int b, int64_t first, uint64_t seed, float *globals,
                            float *locals) {
    if (a->nlocal > 64) return pk_error(PK_ERR_INVALID, "augment: at most 64 local crops");
    if (a->channels != ds->c)
        return pk_error(PK_ERR_INVALID, "augment: configured for %d channels, images have %d",
                        a->channels, ds->c);
    batch_job j = {a, ds, idx, b, seed, first, globals, locals, 0};
    pk_parallel_for(pool, b, 1, batch_range, &j);
    return j.failed ? pk_error(PK_ERR_NOMEM, "augment: out of host memory") : PK_OK;
}

pk_status aug_eval_view(const aug_config *a, const pk_dataset *ds, int i, float *out) {
    int c = ds->c, h = ds->h, w = ds->w, s = a->global_size;
    size_t hw = (size_t)s * s;
    if (h == s && w == s) {
        to_planar(ds->images + (size_t)i * h * w * c, h, w, c, out);
    } else {
        int m = h < w ? h : w, big = h > w ? h : w;
        int box[4] = {(h - m) / 2, (w - m) / 2, m, m};
        float *src = malloc(sizeof(float) * (size_t)c * h * w);
        float *tmp = malloc(sizeof(float) * (size_t)c * (big > s ? big : s) * (big > s ? big : s));
        if (!src || !tmp) {
            free(src), free(tmp);
            return pk_error(PK_ERR_NOMEM, "augment: out of host memory");
        }
        to_planar(ds->images + (size_t)i * h * w * c, h, w, c, src);
        aug_resize_box(src, c, h, w, box, s, out, tmp);
        free(src), free(tmp);
    }
    for (int k = 0; k < c; k++)
        for (size_t j = 0; j < hw; j++)
            out[k * hw + j] = (out[k * hw + j] - a->mean[k]) / a->std[k];
    return PK_OK;
}
