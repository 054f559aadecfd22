/* backbone_features.c - evaluation preprocessing (antialiased bicubic resize, centre crop, channel
 * mapping, mean/std) and batched class-token extraction with a frozen vit. */
#include "backbone_features.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* PIL's / PyTorch's antialias bicubic filter, a = -0.5. */
static double aa_cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Weights of one output position (PyTorch's _compute_indices_weights_aa): taps xmin ..
 * xmin + *n - 1 with normalised weights w. */
static void aa_taps(int in, int out, int o, int *xmin, int *n, double *w) {
    double scale = (double)in / (double)out;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double center = scale * (o + 0.5), inv = scale >= 1.0 ? 1.0 / scale : 1.0;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    double total = 0.0;
    for (int j = lo; j < hi; j++) {
        w[j - lo] = aa_cubic((j - center + 0.5) * inv);
        total += w[j - lo];
    }
    for (int j = lo; j < hi && total != 0.0; j++)
        w[j - lo] /= total;
    *xmin = lo;
    *n = hi - lo;
}

void features_resize(const float *src, int h, int w, int oh, int ow, float *tmp, float *dst) {
    int wmax = 4 * (w > h ? w : h) + 8;
    double *wt = malloc(sizeof(double) * (size_t)wmax);
    if (!wt) return;
    /* along W: src (h, w) -> tmp (h, ow) */
    for (int x = 0; x < ow; x++) {
        int lo, n;
        aa_taps(w, ow, x, &lo, &n, wt);
        for (int y = 0; y < h; y++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                s += wt[k] * src[(size_t)y * w + lo + k];
            tmp[(size_t)y * ow + x] = (float)s;
        }
    }
    /* along H: tmp (h, ow) -> dst (oh, ow) */
    for (int y = 0; y < oh; y++) {
        int lo, n;
        aa_taps(h, oh, y, &lo, &n, wt);
        for (int x = 0; x < ow; x++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                s += wt[k] * tmp[(size_t)(lo + k) * ow + x];
            dst[(size_t)y * ow + x] = (float)s;
        }
    }
    free(wt);
}

pk_status features_preprocess(const pk_dataset *ds, int i, const features_options *o, int in_chans,
                              float *out) {
    int S = o->image_size, h = ds->h, w = ds->w, C = ds->c;
    if (S < 1 || !(o->crop_pct > 0.0f && o->crop_pct <= 1.0f))
        return pk_error(PK_ERR_INVALID,
                        "features: image size %d and crop_pct %g (expected > 0 and "
                        "in (0, 1])",
                        S, (double)o->crop_pct);
    if (!(C == in_chans || (C == 1 && in_chans == 3) || (C == 3 && in_chans == 1)))
        return pk_error(PK_ERR_INVALID,
                        "features: the data has %d channels and the backbone takes %d (expected "
                        "equal, 1 -> 3 replicated or 3 -> 1 luma)",
                        C, in_chans);
    /* timm: scale_size = floor(img_size / crop_pct), shorter side to it (torchvision Resize) */
    int scale = (int)floor((double)S / (double)o->crop_pct + 1e-9);
    int nh = h <= w ? scale : (int)((double)scale * h / w);
    int nw = h <= w ? (int)((double)scale * w / h) : scale;
    if (nh < S || nw < S)
        return pk_error(PK_ERR_INVALID, "features: resized image %dx%d is smaller than the crop %d",
                        nh, nw, S);
    size_t hw = (size_t)h * w, nhw = (size_t)nh * nw;
    float *px = malloc(sizeof(float) * hw * C), *rs = malloc(sizeof(float) * nhw * C);
    float *tmp = malloc(sizeof(float) * (size_t)h * nw);
    if (!px || !rs || !tmp) {
        free(px);
        free(rs);
        free(tmp);
        return pk_error(PK_ERR_NOMEM, "features: out of host memory");
    }
    dataset_sample_f32_chw(ds, i, px); // (C, h, w) in [0, 1]
    for (int k = 0; k < C; k++) {
        if (nh == h && nw == w)
            memcpy(rs + k * nhw, px + k * hw, sizeof(float) * hw);
        else
            features_resize(px + k * hw, h, w, nh, nw, tmp, rs + k * nhw);
    }
    /* torchvision CenterCrop: top = int(round((h - S) / 2.0)), round half to even */
    int top = (int)nearbyint((nh - S) / 2.0), left = (int)nearbyint((nw - S) / 2.0);
    for (int k = 0; k < in_chans; k++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                size_t at = (size_t)(top + y) * nw + (size_t)(left + x);
                float v;
                if (C == in_chans)
                    v = rs[k * nhw + at];
                else if (C == 1)
                    v = rs[at]; /* replicate the one channel */
                else
                    v = 0.299f * rs[at] + 0.587f * rs[nhw + at] + 0.114f * rs[2 * nhw + at];
                out[((size_t)k * S + y) * S + x] = (v - o->mean[k]) / o->std[k];
            }
    free(px);
    free(rs);
    free(tmp);
    return PK_OK;
}

int features_dim(const features_options *o, int dim) {
    return ((o->blocks > 0 ? o->blocks : 1) + (o->avgpool ? 1 : 0)) * dim;
}

pk_status features_extract(pk_ctx *c, const vit *m, const pk_dataset *ds, const features_options *o,
                           float *out) {
    int B = o->batch > 0 ? o->batch : 64, S = o->image_size, C = m->cfg.in_chans;
    int D = features_dim(o, m->cfg.dim), nb = o->blocks > 0 ? o->blocks : 1;
    if (nb > m->cfg.depth)
        return pk_error(PK_ERR_INVALID, "features: %d probe blocks requested of %s's %d", nb,
                        m->cfg.name, m->cfg.depth);
    size_t per = (size_t)C * S * S;
    float *x = malloc(sizeof(float) * per * (size_t)B);
    if (!x) return pk_error(PK_ERR_NOMEM, "features: out of host memory for a batch of %d", B);
    bool grad = pk_set_grad_enabled(c, false), training = c->training;
    c->training = false;
    pk_status s = PK_OK;
    for (int start = 0; s == PK_OK && start < ds->n; start += B) {
        int n = ds->n - start < B ? ds->n - start : B;
        for (int i = 0; s == PK_OK && i < n; i++)
            s = features_preprocess(ds, start + i, o, C, x + per * (size_t)i);
        if (s == PK_OK) s = pk_step_begin(c);
        if (s != PK_OK) break;
        tensor *xt = tensor_new(c->step, PK_F32, 4, (int64_t[]){n, C, S, S});
        s = xt ? tensor_upload(xt, x) : PK_ERR_NOMEM;
        if (s != PK_OK) break;
        tensor *f = vit_forward_probe_features(c, m, xt, nb, o->avgpool); // (n, D)
        s = f ? tensor_download(f, out + (size_t)start * D) : PK_ERR_INVALID;
        if (s == PK_OK && o->progress) o->progress(o->user, start + n, ds->n);
    }
    pk_set_grad_enabled(c, grad);
    c->training = training;
    free(x);
    return s;
}
