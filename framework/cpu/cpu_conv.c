/* cpu_conv.c - CPU kernels of 2-D convolution (NCHW, weights (Cout, Cin/groups, KH, KW)).
 *
 * groups == 1 on an AVX-512 core, 3x3 stride 1 or 2 and 1x1 stride 2 (a CIFAR ResNet's
 * shapes): the direct kernels of cpu_conv_direct.c, forward and backward. Other groups == 1
 * convolutions and cores: im2col per image, then one OpenBLAS SGEMM; backward recomputes the
 * columns, takes dW from one SGEMM and dX from another followed by col2im. 1x1 stride-1
 * unpadded convolutions skip im2col (the image already is its column matrix). im2col/col2im
 * and the bias loops run on the worker pool; SGEMM is always called outside pk_parallel_for,
 * since OpenBLAS threads itself. groups == Cin (depthwise, Cout = Cin * multiplier): direct
 * loops, parallel over (n, c) planes. Other group counts are refused by the front end. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_conv_direct.h"
#include "cpu_conv_winograd.h"
#include "cpu_util.h"

/* The columns [lo, hi) of output positions whose input index o*s + k - pad lies in [0, n). */
static inline void valid_range(int64_t k, int64_t pad, int64_t s, int64_t n, int64_t out,
                               int64_t *lo, int64_t *hi) {
    int64_t a = pad - k, b = n + pad - k; /* need a <= o*s < b */
    /* stride 1 without the divisions: im2col calls this for every row, and on 8x8 planes the
     * integer divisions were a visible part of im2col's time in perf */
    int64_t l = a <= 0 ? 0 : s == 1 ? a : (a + s - 1) / s;
    int64_t h = b <= 0 ? 0 : s == 1 ? b : (b + s - 1) / s;
    *lo = l < out ? l : out;
    *hi = h < out ? h : out;
    if (*hi < *lo) *hi = *lo;
}

typedef struct {
    const pk_conv2d_params *p;
    const float *x; // (Cin, H, W): one image
    float *col;     // (Cin*KH*KW, OH*OW)
    float *dx;      // (Cin, H, W): col2im target
} col_job;

/* One im2col row of a stride-1 convolution whose output rows are as wide as its input rows
 * (same padding): the row is the input plane shifted by (ky - pad) * W + kx - pad, so it is one
 * memcpy, after which the ox < xlo and ox >= xhi edges (wrapped-around neighbours) and the rows
 * above and below the image are zeroed. On ResNet-32's 16x16 and 8x8 layers the per-output-row
 * memcpy calls this replaces copied 16 or 8 floats each. */
static void im2col_row_shift(const pk_conv2d_params *p, int64_t ky, int64_t kx, int64_t xlo,
                             int64_t xhi, const float *x, float *col) {
    int64_t ow = p->ow, ylo, yhi;
    valid_range(ky, p->pad, 1, p->h, p->oh, &ylo, &yhi);
    if (ylo >= yhi || xlo >= xhi) {
        memset(col, 0, sizeof(float) * (size_t)(p->oh * ow));
        return;
    }
    /* col[i] = x[i + shift] for i in [ylo * OW + xlo, (yhi - 1) * OW + xhi): both ends lie in the
     * image, so no read leaves the plane */
    int64_t shift = (ky - p->pad) * p->w + kx - p->pad;
    int64_t b = ylo * ow + xlo, e = (yhi - 1) * ow + xhi;
    memcpy(col + b, x + b + shift, sizeof(float) * (size_t)(e - b));
    memset(col, 0, sizeof(float) * (size_t)b);
    memset(col + e, 0, sizeof(float) * (size_t)(p->oh * ow - e));
    for (int64_t oy = ylo; oy < yhi; oy++) {
        float *cr = col + oy * ow;
        for (int64_t ox = 0; ox < xlo; ox++)
            cr[ox] = 0.0f;
        for (int64_t ox = xhi; ox < ow; ox++)
            cr[ox] = 0.0f;
    }
}

/* im2col: each index is one row (ci, ky, kx) of the column matrix. */
static void im2col_range(void *arg, int64_t b, int64_t e) {
    col_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t s = p->stride, ohw = p->oh * p->ow;
    /* (ci, ky, kx) of row b, then stepped: three integer divisions per row showed in perf */
    int64_t ci = b / (p->kh * p->kw), ky = (b / p->kw) % p->kh, kx = b % p->kw - 1;
    for (int64_t r = b; r < e; r++) {
        if (++kx == p->kw) {
            kx = 0;
            if (++ky == p->kh) ky = 0, ci++;
        }
        const float *x = j->x + ci * p->h * p->w;
        float *col = j->col + r * ohw;
        int64_t xlo, xhi;
        valid_range(kx, p->pad, s, p->w, p->ow, &xlo, &xhi);
        if (s == 1 && p->ow == p->w) {
            im2col_row_shift(p, ky, kx, xlo, xhi, x, col);
            continue;
        }
        for (int64_t oy = 0; oy < p->oh; oy++) {
            float *cr = col + oy * p->ow;
            int64_t iy = oy * s + ky - p->pad;
            if (iy < 0 || iy >= p->h) {
                memset(cr, 0, sizeof(float) * (size_t)p->ow);
                continue;
            }
            const float *xr = x + iy * p->w + kx - p->pad; /* xr[ox * s] for ox in range */
            for (int64_t ox = 0; ox < xlo; ox++)
                cr[ox] = 0.0f;
            if (s == 1)
                memcpy(cr + xlo, xr + xlo, sizeof(float) * (size_t)(xhi - xlo));
            else
                for (int64_t ox = xlo; ox < xhi; ox++)
                    cr[ox] = xr[ox * s];
            for (int64_t ox = xhi; ox < p->ow; ox++)
                cr[ox] = 0.0f;
        }
    }
}

/* col2im: each index is one input channel, gathering its KH*KW rows (no two threads share an
 * output element). */
static void col2im_range(void *arg, int64_t b, int64_t e) {
    col_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t s = p->stride, ohw = p->oh * p->ow;
    for (int64_t ci = b; ci < e; ci++) {
        float *dx = j->dx + ci * p->h * p->w;
        for (int64_t ky = 0; ky < p->kh; ky++) {
            for (int64_t kx = 0; kx < p->kw; kx++) {
                const float *col = j->col + ((ci * p->kh + ky) * p->kw + kx) * ohw;
                int64_t xlo, xhi, ylo, yhi;
                valid_range(kx, p->pad, s, p->w, p->ow, &xlo, &xhi);
                valid_range(ky, p->pad, s, p->h, p->oh, &ylo, &yhi);
                for (int64_t oy = ylo; oy < yhi; oy++) {
                    float *dr = dx + (oy * s + ky - p->pad) * p->w + kx - p->pad;
                    const float *cr = col + oy * p->ow;
                    if (s == 1)
                        for (int64_t ox = xlo; ox < xhi; ox++)
                            dr[ox] += cr[ox];
                    else
                        for (int64_t ox = xlo; ox < xhi; ox++)
                            dr[ox * s] += cr[ox];
                }
            }
        }
    }
}

static bool conv_is_pointwise(const pk_conv2d_params *p) {
    return p->kh == 1 && p->kw == 1 && p->stride == 1 && p->pad == 0;
}

/* ---- bias: out (N, Cout, OH*OW) = b broadcast; db (Cout) += sum over N, OH*OW of dy ---- */

typedef struct {
    const pk_conv2d_params *p;
    const float *b, *g;
    float *out, *gb;
} bias_job;

static void bias_fill_range(void *arg, int64_t lo, int64_t hi) {
    bias_job *j = arg;
    int64_t ohw = j->p->oh * j->p->ow;
    for (int64_t r = lo; r < hi; r++) { /* r indexes (n, cout) planes */
        float v = j->b ? j->b[r % j->p->cout] : 0.0f, *o = j->out + r * ohw;
        for (int64_t i = 0; i < ohw; i++)
            o[i] = v;
    }
}

static void bias_grad_range(void *arg, int64_t lo, int64_t hi) {
    bias_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t ohw = p->oh * p->ow;
    for (int64_t co = lo; co < hi; co++) {
        double s = 0.0;
        for (int64_t n = 0; n < p->n; n++) {
            const float *g = j->g + (n * p->cout + co) * ohw;
            float t = 0.0f;
            for (int64_t i = 0; i < ohw; i++)
                t += g[i];
            s += t;
        }
        j->gb[co] += (float)s;
    }
}

/* ---- depthwise: groups == Cin, w (Cout, 1, KH, KW), output channel co reads co / mult ---- */

typedef struct {
    const pk_conv2d_params *p;
    const float *x, *w, *g;
    float *out, *gx, *gw;
} dw_job;

/* o (OH, OW) += sum over (ky, kx) of w[ky, kx] x (H, W) shifted; one plane. */
static void dw_plane(const pk_conv2d_params *p, const float *x, const float *w, float *o) {
    int64_t s = p->stride;
    for (int64_t ky = 0; ky < p->kh; ky++) {
        int64_t ylo, yhi;
        valid_range(ky, p->pad, s, p->h, p->oh, &ylo, &yhi);
        for (int64_t kx = 0; kx < p->kw; kx++) {
            int64_t xlo, xhi;
            valid_range(kx, p->pad, s, p->w, p->ow, &xlo, &xhi);
            float wv = w[ky * p->kw + kx];
            for (int64_t oy = ylo; oy < yhi; oy++) {
                const float *xr = x + (oy * s + ky - p->pad) * p->w + kx - p->pad;
                float *orow = o + oy * p->ow;
                if (s == 1)
                    for (int64_t ox = xlo; ox < xhi; ox++)
                        orow[ox] += wv * xr[ox];
                else
                    for (int64_t ox = xlo; ox < xhi; ox++)
                        orow[ox] += wv * xr[ox * s];
            }
        }
    }
}

static void dw_fwd_range(void *arg, int64_t b, int64_t e) {
    dw_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t mult = p->cout / p->cin;
    for (int64_t pl = b; pl < e; pl++) { /* (n, co) */
        int64_t n = pl / p->cout, co = pl % p->cout, ci = co / mult;
        dw_plane(p, j->x + (n * p->cin + ci) * p->h * p->w, j->w + co * p->kh * p->kw,
                 j->out + pl * p->oh * p->ow);
    }
}

/* dx: one (n, ci) plane per index, summing over the mult output channels that read it. */
static void dw_bwd_dx_range(void *arg, int64_t b, int64_t e) {
    dw_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t mult = p->cout / p->cin, s = p->stride;
    for (int64_t pl = b; pl < e; pl++) {
        int64_t n = pl / p->cin, ci = pl % p->cin;
        float *gx = j->gx + pl * p->h * p->w;
        for (int64_t m = 0; m < mult; m++) {
            int64_t co = ci * mult + m;
            const float *g = j->g + (n * p->cout + co) * p->oh * p->ow;
            const float *w = j->w + co * p->kh * p->kw;
            for (int64_t ky = 0; ky < p->kh; ky++) {
                int64_t ylo, yhi;
                valid_range(ky, p->pad, s, p->h, p->oh, &ylo, &yhi);
                for (int64_t kx = 0; kx < p->kw; kx++) {
                    int64_t xlo, xhi;
                    valid_range(kx, p->pad, s, p->w, p->ow, &xlo, &xhi);
                    float wv = w[ky * p->kw + kx];
                    for (int64_t oy = ylo; oy < yhi; oy++) {
                        float *dr = gx + (oy * s + ky - p->pad) * p->w + kx - p->pad;
                        const float *gr = g + oy * p->ow;
                        if (s == 1)
                            for (int64_t ox = xlo; ox < xhi; ox++)
                                dr[ox] += wv * gr[ox];
                        else
                            for (int64_t ox = xlo; ox < xhi; ox++)
                                dr[ox * s] += wv * gr[ox];
                    }
                }
            }
        }
    }
}

/* dw: one output channel per index, summing over the batch. */
static void dw_bwd_dw_range(void *arg, int64_t b, int64_t e) {
    dw_job *j = arg;
    const pk_conv2d_params *p = j->p;
    int64_t mult = p->cout / p->cin, s = p->stride;
    for (int64_t co = b; co < e; co++) {
        int64_t ci = co / mult;
        float *gw = j->gw + co * p->kh * p->kw;
        for (int64_t ky = 0; ky < p->kh; ky++) {
            int64_t ylo, yhi;
            valid_range(ky, p->pad, s, p->h, p->oh, &ylo, &yhi);
            for (int64_t kx = 0; kx < p->kw; kx++) {
                int64_t xlo, xhi;
                valid_range(kx, p->pad, s, p->w, p->ow, &xlo, &xhi);
                double acc = 0.0;
                for (int64_t n = 0; n < p->n; n++) {
                    const float *x = j->x + (n * p->cin + ci) * p->h * p->w;
                    const float *g = j->g + (n * p->cout + co) * p->oh * p->ow;
                    float t = 0.0f;
                    for (int64_t oy = ylo; oy < yhi; oy++) {
                        const float *xr = x + (oy * s + ky - p->pad) * p->w + kx - p->pad;
                        const float *gr = g + oy * p->ow;
                        for (int64_t ox = xlo; ox < xhi; ox++)
                            t += gr[ox] * xr[ox * s];
                    }
                    acc += t;
                }
                gw[ky * p->kw + kx] += (float)acc;
            }
        }
    }
}

/* ---- forward / backward ---- */

/* wt (Cin, Cout, K, K): the flipped, transposed weights, wt[ci][co][ky][kx] =
 * w[co][ci][K-1-ky][K-1-kx], with which dX of a stride-1 convolution is a convolution of dY. */
static void flip_weights(const pk_conv2d_params *p, const float *w, float *wt) {
    int64_t kk = p->kh * p->kw;
    for (int64_t co = 0; co < p->cout; co++)
        for (int64_t ci = 0; ci < p->cin; ci++)
            for (int64_t k = 0; k < kk; k++)
                wt[(ci * p->cout + co) * kk + k] = w[(co * p->cin + ci) * kk + (kk - 1 - k)];
}

pk_status cpu_conv2d_forward(pk_ctx *c, pk_node *n) {
    const pk_conv2d_params *p = PK_PARAMS(n, pk_conv2d_params);
    const float *x = cpu_f32(n->in[0]), *w = cpu_f32(n->in[1]); // (N,Cin,H,W), (Cout,Cin/g,KH,KW)
    const float *bias = n->n_in > 2 && n->in[2] ? cpu_f32(n->in[2]) : NULL;
    float *out = cpu_f32(n->out[0]); // (N, Cout, OH, OW)
    int64_t ohw = p->oh * p->ow, hw = p->h * p->w, ckk = p->cin / p->groups * p->kh * p->kw;
    /* 3x3 stride-1 layers with enough channels: Winograd F(2x2, 3x3) (cpu_conv_winograd.c) */
    if (cpu_conv_winograd_usable(p)) return cpu_conv_winograd_forward(c, p, x, w, bias, out, false);
    if (cpu_conv_direct_usable(p)) return cpu_conv_direct_forward(c, p, x, w, bias, out, false);
    /* out starts as the bias (or zero); the kernels below accumulate into it */
    bias_job bj = {.p = p, .b = bias, .out = out};
    pk_parallel_for(c->pool, p->n * p->cout, 1 + (1 << 14) / ohw, bias_fill_range, &bj);
    if (p->groups != 1) {
        dw_job j = {.p = p, .x = x, .w = w, .out = out};
        pk_parallel_for(c->pool, p->n * p->cout, 1 + (1 << 12) / (ohw * p->kh * p->kw),
                        dw_fwd_range, &j);
        return PK_OK;
    }
    if (conv_is_pointwise(p)) {
        for (int64_t i = 0; i < p->n; i++) // out_i (Cout, HW) += W (Cout, Cin) x_i (Cin, HW)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->cout, (int)hw,
                        (int)p->cin, 1.0f, w, (int)p->cin, x + i * p->cin * hw, (int)hw, 1.0f,
                        out + i * p->cout * ohw, (int)ohw);
        return PK_OK;
    }
    float *col = malloc(sizeof(float) * (size_t)(ckk * ohw)); // (Cin*KH*KW, OH*OW)
    if (!col) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for im2col");
    for (int64_t i = 0; i < p->n; i++) {
        col_job j = {.p = p, .x = x + i * p->cin * hw, .col = col};
        pk_parallel_for(c->pool, ckk, 1 + (1 << 13) / ohw, im2col_range, &j);
        // out_i (Cout, OHW) += W (Cout, CKK) col (CKK, OHW)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->cout, (int)ohw, (int)ckk,
                    1.0f, w, (int)ckk, col, (int)ohw, 1.0f, out + i * p->cout * ohw, (int)ohw);
    }
    free(col);
    return PK_OK;
}

pk_status cpu_conv2d_backward(pk_ctx *c, pk_node *n) {
    const pk_conv2d_params *p = PK_PARAMS(n, pk_conv2d_params);
    const float *x = cpu_f32(n->in[0]), *w = cpu_f32(n->in[1]);
    const float *g = cpu_f32(n->out[0]->grad); // (N, Cout, OH, OW)
    /* dW and the bias gradient (parameters, normally) are added into: zeros when fresh */
    PK_TRY(cpu_grad_settle(n, 1, true));
    PK_TRY(cpu_grad_settle(n, 2, true));
    float *gx = cpu_wants_grad(n, 0) ? cpu_f32(n->in[0]->grad) : NULL;
    float *gw = cpu_wants_grad(n, 1) ? cpu_f32(n->in[1]->grad) : NULL;
    /* only the direct kernels write a fresh dX; every other path adds into zeros */
    if (!cpu_conv_direct_usable(p) || p->groups != 1 || conv_is_pointwise(p))
        PK_TRY(cpu_grad_settle(n, 0, true));
    int64_t ohw = p->oh * p->ow, hw = p->h * p->w, ckk = p->cin / p->groups * p->kh * p->kw;
    if (cpu_wants_grad(n, 2)) {
        bias_job bj = {.p = p, .g = g, .gb = cpu_f32(n->in[2]->grad)};
        pk_parallel_for(c->pool, p->cout, 1 + (1 << 14) / (p->n * ohw), bias_grad_range, &bj);
    }
    if (p->groups != 1) {
        dw_job j = {.p = p, .x = x, .w = w, .g = g, .gx = gx, .gw = gw};
        if (gx)
            pk_parallel_for(c->pool, p->n * p->cin, 1 + (1 << 12) / (ohw * p->kh * p->kw),
                            dw_bwd_dx_range, &j);
        if (gw)
            pk_parallel_for(c->pool, p->cout, 1 + (1 << 12) / (p->n * ohw * p->kh * p->kw),
                            dw_bwd_dw_range, &j);
        return PK_OK;
    }
    if (conv_is_pointwise(p)) {
        for (int64_t i = 0; i < p->n; i++) {
            const float *xi = x + i * p->cin * hw, *gi = g + i * p->cout * ohw;
            if (gw) // dW (Cout, Cin) += g_i (Cout, HW) x_i^T (HW, Cin)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->cout, (int)p->cin,
                            (int)hw, 1.0f, gi, (int)hw, xi, (int)hw, 1.0f, gw, (int)p->cin);
            if (gx) // dx_i (Cin, HW) += W^T (Cin, Cout) g_i (Cout, HW)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p->cin, (int)hw,
                            (int)p->cout, 1.0f, w, (int)p->cin, gi, (int)hw, 1.0f,
                            gx + i * p->cin * hw, (int)hw);
        }
        return PK_OK;
    }
    if (!gx && !gw) return PK_OK;
    bool direct = cpu_conv_direct_usable(p);
    if (direct && gw) PK_TRY(cpu_conv_direct_grad_w(c, p, x, g, gw));
    if (direct && gx) { /* a fresh dX is written, not added to */
        /* Winograd's shapes are a subset of the direct ones, so the settling above holds */
        if (cpu_conv_winograd_usable(p))
            PK_TRY(cpu_conv_winograd_grad_x(c, p, w, g, gx, !cpu_grad_fresh(n, 0)));
        else
            PK_TRY(cpu_conv_direct_grad_x(c, p, w, g, gx, !cpu_grad_fresh(n, 0)));
        return cpu_grad_settle(n, 0, false);
    }
    if (direct) return PK_OK;
    /* dX of a stride-1 square-kernel convolution is itself a convolution: of dY (Cout, OH, OW)
     * by the flipped, transposed weights W' (Cin, Cout, K, K), padded by K - 1 - pad, giving
     * (Cin, H, W). That is im2col + one SGEMM with the long Cout*K*K inner dimension instead of
     * an SGEMM with inner dimension Cout and a col2im (measured faster here). */
    bool as_conv = p->stride == 1 && p->kh == p->kw && p->pad <= p->kh - 1;
    pk_conv2d_params tp = {.n = p->n,
                           .cin = p->cout,
                           .h = p->oh,
                           .w = p->ow,
                           .cout = p->cin,
                           .kh = p->kh,
                           .kw = p->kw,
                           .oh = p->h,
                           .ow = p->w,
                           .stride = 1,
                           .pad = (int)p->kh - 1 - p->pad,
                           .groups = 1};
    int64_t tkk = p->cout * p->kh * p->kw; /* rows of dY's column matrix */
    size_t ncol = (size_t)(ckk * ohw), ndcol = gx ? (size_t)(as_conv ? tkk * hw : ckk * ohw) : 0;
    size_t nwt = gx && as_conv ? (size_t)(p->cin * tkk) : 0;
    size_t ndwt = gw ? (size_t)(ckk * p->cout) : 0;
    float *col = malloc(sizeof(float) * (ncol + ndcol + nwt + ndwt)); // (CKK, OHW) + scratch
    if (!col) return pk_error(PK_ERR_NOMEM, "conv2d: out of host memory for im2col");
    float *dcol = col + ncol, *wt = dcol + ndcol, *dwt = wt + nwt; // dwt: dW^T (CKK, Cout)
    if (nwt) flip_weights(p, w, wt);
    for (int64_t i = 0; i < p->n; i++) {
        const float *gi = g + i * p->cout * ohw;
        col_job j = {.p = p, .x = x + i * p->cin * hw, .col = col};
        if (gw) {
            pk_parallel_for(c->pool, ckk, 1 + (1 << 13) / ohw, im2col_range, &j);
            /* dW^T rather than dW: OpenBLAS 0.3.21 runs (CKK x OHW) (OHW x Cout) at 99 GFLOP/s
             * against 80 for (Cout x OHW) (OHW x CKK) on ResNet-32's 16-channel layer (1
             * thread); the (CKK, Cout) sum is transposed into dW once, after the batch. */
            // dW^T (CKK, Cout) (+)= col (CKK, OHW) g_i^T (OHW, Cout)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ckk, (int)p->cout, (int)ohw,
                        1.0f, col, (int)ohw, gi, (int)ohw, i ? 1.0f : 0.0f, dwt, (int)p->cout);
        }
        if (gx && as_conv) {
            col_job k = {.p = &tp, .x = gi, .col = dcol};
            pk_parallel_for(c->pool, tkk, 1 + (1 << 13) / hw, im2col_range, &k);
            // dx_i (Cin, HW) += W' (Cin, Cout*K*K) dcol (Cout*K*K, HW)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->cin, (int)hw, (int)tkk,
                        1.0f, wt, (int)tkk, dcol, (int)hw, 1.0f, gx + i * p->cin * hw, (int)hw);
        } else if (gx) {
            // dcol (CKK, OHW) = W^T (CKK, Cout) g_i (Cout, OHW)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)ohw, (int)p->cout,
                        1.0f, w, (int)ckk, gi, (int)ohw, 0.0f, dcol, (int)ohw);
            col_job k = {.p = p, .col = dcol, .dx = gx + i * p->cin * hw};
            pk_parallel_for(c->pool, p->cin, 1 + (1 << 13) / (p->kh * p->kw * ohw), col2im_range,
                            &k);
        }
    }
    if (gw) // dW (Cout, CKK) += dW^T
        for (int64_t co = 0; co < p->cout; co++)
            for (int64_t r = 0; r < ckk; r++)
                gw[co * ckk + r] += dwt[r * p->cout + co];
    free(col);
    return PK_OK;
}
