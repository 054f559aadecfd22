/* cpu_attention.c - the CPU kernels of the fused attention op (pk_attention_params, ops.h).
 * Per (batch, head): S = scale Q K^T + mask (Tq, Tk), P = softmax(S) by rows, O = P V. The
 * products are OpenBLAS SGEMMs on the head's columns in place (the leading dimension is the
 * row stride), so no head is copied out and d(qkv) is written where qkv lives; small heads
 * (ATT_DIRECT_ELEMS) use direct register-blocked vector loops over zero-padded copies of the
 * head's K, V (transposed where a product needs it) instead, as a call into OpenBLAS costs more
 * than their products. The forward
 * keeps only each row's log-sum-exp; the backward recomputes P from Q, K and it:
 *   dV += P^T dO, dP = dO V^T, D_i = dO_i . O_i, dS = P (dP - D), dQ += scale dS K,
 *   dK += scale dS^T Q.
 * The worker pool splits the forward over (batch, head, block of query rows) and the backward
 * over (batch, head), each backward task walking its query rows in the same blocks (dK and dV sum
 * over all of them): every gradient element a backward task adds to lies in its batch's rows
 * and its head's columns, so no two tasks write the same element, whichever tensors alias.
 * With a threaded pool and a threaded OpenBLAS, blocks are sized so that no SGEMM reaches the
 * size from which OpenBLAS spreads a call over its own threads (see att_plan). Gradients are added
 * to (autograd zero-fills them first: this op is not one that writes fresh gradients). Scratch: two
 * blocks of rows x Tk floats per parallel chunk, from malloc. */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_util.h"

/* Query rows per block at most: 64 rows of S (64 x Tk floats) stay in L2 beside K and V. */
#define ATT_ROWS 64
/* OpenBLAS threads an SGEMM call itself from m n k > 4 * 65536 on (GEMM_MULTITHREAD_THRESHOLD x
 * SMP_THRESHOLD_MIN in its interface/gemm.c). Calls of that size made at once from the pool's
 * workers into a threaded OpenBLAS measured ~10x slower than the composed ops (T = 197, d = 64,
 * 2 threads: 377 ms against 33 ms per step), so blocks stay below it. */
#define ATT_BLAS_SERIAL_MNK ((int64_t)4 * 65536)

typedef float att_v8 __attribute__((vector_size(32)));
typedef int32_t att_v8i __attribute__((vector_size(32)));
typedef float att_v8u __attribute__((vector_size(32), aligned(4), may_alias)); // unaligned access
#define ATT_LD(p) (*(const att_v8u *)(const void *)(p))
#define ATT_ST(p, v) (*(att_v8u *)(void *)(p) = (v))

/* exp(x) for x <= 0 as a polynomial on eight lanes (x = n ln2 + r, |r| <= ln2/2, Cephes' expf
 * coefficients, relative error ~2e-7); below -87 (subnormal results, masked -inf logits) it is
 * exactly 0, NaN stays NaN. glibc's expf is one call per element and never vectorises, and a
 * T = 197 head takes 2 x 197^2 of them per step. In place through a pointer: a vector argument
 * or result would change the ABI between the target clones. */
static inline __attribute__((always_inline)) void att_exp8(att_v8 *px) {
    att_v8 x = *px;
    const att_v8 lo = (att_v8){0} - 87.0f;
    att_v8i small = x<lo, nan = x != x, keep = x> lo;
    att_v8 xc = (att_v8)(((att_v8i)x & keep) | ((att_v8i)lo & ~keep));
    att_v8 n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; // round to integer
    att_v8 r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    att_v8 e = r * 1.9875691500e-4f + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * r * r + r + 1.0f;
    att_v8i bits = (__builtin_convertvector(n, att_v8i) + 127) * (1 << 23);
    att_v8 out = e * (att_v8)bits;
    *px = (att_v8)(((att_v8i)out & ~small & ~nan) | ((att_v8i)x & nan));
}

/* att_exp8's arithmetic on one float, for the tails of rows. */
static inline float att_exp1(float x) {
    if (x != x) return x;
    if (x < -87.0f) return 0.0f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float e = r * 1.9875691500e-4f + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } b = {.i = ((int32_t)n + 127) * (1 << 23)};
    return e * b.f;
}

/* Logits of one row in place, s[j] = scale s[j] + m[j * mcs] (m NULL: no mask); returns their
 * maximum (NaN logits left out of it, as PyTorch's max would not be: they poison the row
 * through exp anyway). */
static inline __attribute__((always_inline)) float att_logits(float *s, int64_t n, float scale,
                                                              const float *m, int64_t mcs) {
    float add = m && mcs == 0 ? m[0] : 0.0f;
    const float *mr = m && mcs != 0 ? m : NULL; // a full mask row (mcs is 1 then)
    att_v8 vmax = (att_v8){0} - INFINITY;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        att_v8 v = ATT_LD(s + j) * scale + add;
        if (mr) v += ATT_LD(mr + j);
        ATT_ST(s + j, v);
        vmax =
            (att_v8)(((att_v8i)v & (att_v8i)(v > vmax)) | ((att_v8i)vmax & ~(att_v8i)(v > vmax)));
    }
    float mx = -INFINITY;
    for (; j < n; j++) {
        s[j] = s[j] * scale + add + (mr ? mr[j] : 0.0f);
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int l = 0; l < 8; l++)
        mx = vmax[l] > mx ? vmax[l] : mx;
    return mx;
}

/* s[j] = exp(s[j] - shift) in place for j < n; returns their sum. */
static inline __attribute__((always_inline)) float att_exp_row(float *s, int64_t n, float shift) {
    att_v8 acc = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        att_v8 v = ATT_LD(s + j) - shift;
        att_exp8(&v);
        ATT_ST(s + j, v);
        acc += v;
    }
    float sum = 0.0f;
    for (; j < n; j++)
        sum += s[j] = att_exp1(s[j] - shift);
    for (int l = 0; l < 8; l++)
        sum += acc[l];
    return sum;
}

/* One forward row: the raw scores s (n) become probabilities; returns the log-sum-exp of the
 * logits (scale s + mask). */
__attribute__((target_clones("avx2", "default"))) static float
att_row_softmax(float *s, int64_t n, float scale, const float *m, int64_t mcs) {
    float mx = att_logits(s, n, scale, m, mcs);
    float sum = att_exp_row(s, n, mx), inv = 1.0f / sum;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        ATT_ST(s + j, ATT_LD(s + j) * inv);
    for (; j < n; j++)
        s[j] *= inv;
    return mx + logf(sum);
}

/* One backward row: the raw scores s (n) become the probabilities exp(logit - lse). */
__attribute__((target_clones("avx2", "default"))) static void
att_row_probs(float *s, int64_t n, float scale, const float *m, int64_t mcs, float lse) {
    att_logits(s, n, scale, m, mcs);
    att_exp_row(s, n, lse);
}

/* One backward row of dS: dp[j] = scale p[j] (dp[j] - dsum), with dsum = dO_i . O_i. */
__attribute__((target_clones("avx2", "default"))) static void
att_row_ds(float *dp, const float *p, int64_t n, float dsum, float scale) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        ATT_ST(dp + j, (ATT_LD(dp + j) - dsum) * ATT_LD(p + j) * scale);
    for (; j < n; j++)
        dp[j] = (dp[j] - dsum) * p[j] * scale;
}

/* Heads with Tk (d + dv) up to this many elements run on the direct kernels below instead of
 * OpenBLAS: at ViT-pico sizes (T = 17 or 5, d = 16) an SGEMM call costs more in its interface
 * and packing than its few thousand multiply-adds, and the attention took a fifth of a DINO
 * step's CPU. */
#define ATT_DIRECT_ELEMS 4096

/* n rounded up to a whole number of 8-float vectors */
#define ATT_PAD(n) (((n) + 7) & ~(int64_t)7)

/* c (rows, np) = a (rows, w) b (w, np): a's element (i, k) at a[i ars + k acs], b contiguous
 * rows of np floats (np a multiple of 8), c rows of np floats. Four rows of c at a time, each
 * an accumulator in a register, so the sum over k is no chain of loads and stores. */
static inline __attribute__((always_inline)) void att_mm(float *c, int64_t rows, int64_t np,
                                                         const float *a, int64_t ars, int64_t acs,
                                                         int64_t w, const float *b) {
    for (int64_t j = 0; j < np; j += 8) {
        int64_t i = 0;
        for (; i + 4 <= rows; i += 4) {
            att_v8 c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
            const float *ai = a + i * ars;
            for (int64_t k = 0; k < w; k++) {
                att_v8 bv = ATT_LD(b + k * np + j);
                const float *ak = ai + k * acs;
                c0 += ak[0] * bv, c1 += ak[ars] * bv, c2 += ak[2 * ars] * bv;
                c3 += ak[3 * ars] * bv;
            }
            ATT_ST(c + i * np + j, c0), ATT_ST(c + (i + 1) * np + j, c1);
            ATT_ST(c + (i + 2) * np + j, c2), ATT_ST(c + (i + 3) * np + j, c3);
        }
        for (; i < rows; i++) {
            att_v8 c0 = {0};
            for (int64_t k = 0; k < w; k++)
                c0 += a[i * ars + k * acs] * ATT_LD(b + k * np + j);
            ATT_ST(c + i * np + j, c0);
        }
    }
}

/* dst (n, np) = n rows of width w (row stride rs), zero-padded to np columns. */
static void att_pad_rows(float *dst, const float *src, int64_t n, int64_t w, int64_t rs,
                         int64_t np) {
    for (int64_t r = 0; r < n; r++) {
        memcpy(dst + r * np, src + r * rs, sizeof(float) * (size_t)w);
        memset(dst + r * np + w, 0, sizeof(float) * (size_t)(np - w));
    }
}

/* dst (w, np) = the transpose of n rows of width w (row stride rs), zero-padded to np >= n. */
static void att_pad_transpose(float *dst, const float *src, int64_t n, int64_t w, int64_t rs,
                              int64_t np) {
    memset(dst, 0, sizeof(float) * (size_t)(w * np));
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < w; c++)
            dst[c * np + r] = src[r * rs + c];
}

/* y (n, w; row stride ys) += x (n, w; row stride xs). */
static void att_add_rows(float *y, int64_t ys, const float *x, int64_t xs, int64_t n, int64_t w) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < w; c++)
            y[r * ys + c] += x[r * xs + c];
}

typedef struct att_job {
    const pk_attention_params *p;
    const float *q, *k, *v, *m; // head 0's first column of batch 0 (m: NULL without a mask)
    float *o, *lse;             // (B, Tq, H*dv), (B, H, Tq)
    const float *go;            // dO, laid out as o
    float *gq, *gk, *gv;        // NULL where no gradient is wanted; laid out as q, k, v
    int64_t rows, nqb;          // query rows per block, blocks per (batch, head)
    bool serial;                // tasks run on the calling thread (see att_plan)
    bool direct;                // the direct kernels, not OpenBLAS (see ATT_DIRECT_ELEMS)
    atomic_int failed;          // a chunk could not get scratch memory
} att_job;

/* Floats of scratch att_fwd_direct needs. */
static int64_t att_fwd_direct_floats(const pk_attention_params *p, int64_t nr) {
    int64_t tkp = ATT_PAD(p->tk), dvp = ATT_PAD(p->dv);
    return p->d * tkp + p->tk * dvp + nr * tkp + nr * dvp;
}

/* att_fwd_range's tasks [t0, t1) on the direct kernels; w: att_fwd_direct_floats of scratch. */
__attribute__((target_clones("avx2", "default"))) static void
att_fwd_direct(const att_job *j, int64_t t0, int64_t t1, float *w) {
    const pk_attention_params *p = j->p;
    int64_t tk = p->tk, ro = p->heads * p->dv, nr = j->rows, last = -1;
    int64_t tkp = ATT_PAD(tk), dvp = ATT_PAD(p->dv);
    float *kt = w, *vp = kt + p->d * tkp, *s = vp + tk * dvp, *ot = s + nr * tkp;
    for (int64_t t = t0; t < t1; t++) {
        int64_t bh = t / j->nqb, b = bh / p->heads, h = bh % p->heads;
        int64_t i0 = (t % j->nqb) * nr, rows = p->tq - i0 < nr ? p->tq - i0 : nr;
        const float *q = j->q + (b * p->tq + i0) * p->q_rs + h * p->d;
        float *o = j->o + (b * p->tq + i0) * ro + h * p->dv;
        float *lse = j->lse + bh * p->tq + i0;
        if (bh != last) { // K^T (d, Tk) and V (Tk, dv) of this (batch, head), padded
            att_pad_transpose(kt, j->k + b * tk * p->k_rs + h * p->d, tk, p->d, p->k_rs, tkp);
            att_pad_rows(vp, j->v + b * tk * p->v_rs + h * p->dv, tk, p->dv, p->v_rs, dvp);
            last = bh;
        }
        att_mm(s, rows, tkp, q, p->q_rs, 1, p->d, kt); // S (rows, Tk) = Q K^T
        for (int64_t i = 0; i < rows; i++) {
            const float *m = j->m ? j->m + b * p->m_bs + (i0 + i) * p->m_rs : NULL;
            lse[i] = att_row_softmax(s + i * tkp, tk, p->scale, m, p->m_cs);
        }
        att_mm(ot, rows, dvp, s, tkp, 1, tk, vp); // O (rows, dv) = P V
        for (int64_t i = 0; i < rows; i++)
            memcpy(o + i * ro, ot + i * dvp, sizeof(float) * (size_t)p->dv);
    }
}

/* Forward of tasks [t0, t1): task t is (batch, head, block of j->rows query rows). */
static void att_fwd_range(void *arg, int64_t t0, int64_t t1) {
    att_job *j = arg;
    const pk_attention_params *p = j->p;
    int64_t tk = p->tk, ro = p->heads * p->dv, nr = j->rows;
    size_t nf = (size_t)(j->direct ? att_fwd_direct_floats(p, nr) : nr * tk);
    float *s = malloc(sizeof(float) * nf);
    if (!s) {
        atomic_store(&j->failed, 1);
        return;
    }
    if (j->direct) {
        att_fwd_direct(j, t0, t1, s);
        free(s);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t bh = t / j->nqb, b = bh / p->heads, h = bh % p->heads;
        int64_t i0 = (t % j->nqb) * nr, rows = p->tq - i0 < nr ? p->tq - i0 : nr;
        const float *q = j->q + (b * p->tq + i0) * p->q_rs + h * p->d;
        const float *k = j->k + b * tk * p->k_rs + h * p->d;
        const float *v = j->v + b * tk * p->v_rs + h * p->dv;
        float *o = j->o + (b * p->tq + i0) * ro + h * p->dv;
        float *lse = j->lse + bh * p->tq + i0;
        // S (rows, Tk) = Q (rows, d) K^T (d, Tk)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)tk, (int)p->d, 1.0f, q,
                    (int)p->q_rs, k, (int)p->k_rs, 0.0f, s, (int)tk);
        for (int64_t i = 0; i < rows; i++) {
            const float *m = j->m ? j->m + b * p->m_bs + (i0 + i) * p->m_rs : NULL;
            lse[i] = att_row_softmax(s + i * tk, tk, p->scale, m, p->m_cs);
        }
        // O (rows, dv) = P (rows, Tk) V (Tk, dv)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)p->dv, (int)tk, 1.0f,
                    s, (int)tk, v, (int)p->v_rs, 0.0f, o, (int)ro);
    }
    free(s);
}

/* Floats of scratch att_bwd_direct needs. */
static int64_t att_bwd_direct_floats(const pk_attention_params *p, int64_t nr) {
    int64_t tk = p->tk, tkp = ATT_PAD(tk), dp = ATT_PAD(p->d), dvp = ATT_PAD(p->dv);
    int64_t tr = nr > tk ? nr : tk, tc = dp > dvp ? dp : dvp;
    return (p->d + p->dv) * tkp + tk * dp + 2 * nr * tkp + nr * (dp + dvp) + tr * tc;
}

/* att_bwd_range's tasks [t0, t1) on the direct kernels; w: att_bwd_direct_floats of scratch.
 * The same products as the SGEMMs there, summed in another order. */
__attribute__((target_clones("avx2", "default"))) static void
att_bwd_direct(const att_job *j, int64_t t0, int64_t t1, float *w) {
    const pk_attention_params *p = j->p;
    int64_t tq = p->tq, tk = p->tk, ro = p->heads * p->dv, nr = j->rows;
    int64_t tkp = ATT_PAD(tk), dp = ATT_PAD(p->d), dvp = ATT_PAD(p->dv);
    bool want_s = j->gq || j->gk;
    float *kt = w, *vt = kt + p->d * tkp, *kp = vt + p->dv * tkp, *s = kp + tk * dp;
    float *ds = s + nr * tkp, *qp = ds + nr * tkp, *gop = qp + nr * dp, *tmp = gop + nr * dvp;
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / p->heads, h = t % p->heads;
        int64_t ko = b * tk * p->k_rs + h * p->d, vo = b * tk * p->v_rs + h * p->dv;
        const float *k = j->k + ko, *v = j->v + vo;
        att_pad_transpose(kt, k, tk, p->d, p->k_rs, tkp);              // K^T (d, Tk)
        if (want_s) att_pad_transpose(vt, v, tk, p->dv, p->v_rs, tkp); // V^T (dv, Tk)
        if (j->gq) att_pad_rows(kp, k, tk, p->d, p->k_rs, dp);         // K (Tk, d)
        for (int64_t i0 = 0; i0 < tq; i0 += nr) {
            int64_t rows = tq - i0 < nr ? tq - i0 : nr;
            int64_t qo = (b * tq + i0) * p->q_rs + h * p->d, oo = (b * tq + i0) * ro + h * p->dv;
            const float *q = j->q + qo, *o = j->o + oo, *go = j->go + oo;
            const float *lse = j->lse + t * tq + i0;
            att_mm(s, rows, tkp, q, p->q_rs, 1, p->d, kt); // P = exp(scale Q K^T + m - lse)
            for (int64_t i = 0; i < rows; i++) {
                const float *m = j->m ? j->m + b * p->m_bs + (i0 + i) * p->m_rs : NULL;
                att_row_probs(s + i * tkp, tk, p->scale, m, p->m_cs, lse[i]);
            }
            if (j->gv) { // dV (Tk, dv) += P^T (Tk, rows) dO (rows, dv)
                att_pad_rows(gop, go, rows, p->dv, ro, dvp);
                att_mm(tmp, tk, dvp, s, 1, tkp, rows, gop);
                att_add_rows(j->gv + vo, p->v_rs, tmp, dvp, tk, p->dv);
            }
            if (!want_s) continue;
            att_mm(ds, rows, tkp, go, ro, 1, p->dv, vt); // dP (rows, Tk) = dO V^T
            for (int64_t i = 0; i < rows; i++) {         // dS = scale P (dP - D_i), in place
                float dsum = 0.0f;
                for (int64_t c = 0; c < p->dv; c++)
                    dsum += go[i * ro + c] * o[i * ro + c];
                att_row_ds(ds + i * tkp, s + i * tkp, tk, dsum, p->scale);
            }
            if (j->gq) { // dQ (rows, d) += dS (rows, Tk) K (Tk, d)
                att_mm(tmp, rows, dp, ds, tkp, 1, tk, kp);
                att_add_rows(j->gq + qo, p->q_rs, tmp, dp, rows, p->d);
            }
            if (j->gk) { // dK (Tk, d) += dS^T (Tk, rows) Q (rows, d)
                att_pad_rows(qp, q, rows, p->d, p->q_rs, dp);
                att_mm(tmp, tk, dp, ds, 1, tkp, rows, qp);
                att_add_rows(j->gk + ko, p->k_rs, tmp, dp, tk, p->d);
            }
        }
    }
}

/* Backward of tasks [t0, t1): task t is (batch, head), over its query rows block by block. */
static void att_bwd_range(void *arg, int64_t t0, int64_t t1) {
    att_job *j = arg;
    const pk_attention_params *p = j->p;
    int64_t tq = p->tq, tk = p->tk, ro = p->heads * p->dv, nr = j->rows;
    bool want_s = j->gq || j->gk; // dS is needed
    size_t nf = (size_t)(j->direct ? att_bwd_direct_floats(p, nr) : nr * tk * 2);
    float *s = malloc(sizeof(float) * nf);
    if (!s) {
        atomic_store(&j->failed, 1);
        return;
    }
    if (j->direct) {
        att_bwd_direct(j, t0, t1, s);
        free(s);
        return;
    }
    float *dp = s + nr * tk;
    for (int64_t t = t0; t < t1; t++) {
        int64_t b = t / p->heads, h = t % p->heads;
        int64_t ko = b * tk * p->k_rs + h * p->d, vo = b * tk * p->v_rs + h * p->dv;
        const float *k = j->k + ko, *v = j->v + vo;
        for (int64_t i0 = 0; i0 < tq; i0 += nr) {
            int rows = (int)(tq - i0 < nr ? tq - i0 : nr);
            int64_t qo = (b * tq + i0) * p->q_rs + h * p->d, oo = (b * tq + i0) * ro + h * p->dv;
            const float *q = j->q + qo, *o = j->o + oo, *go = j->go + oo;
            const float *lse = j->lse + t * tq + i0;
            // P (rows, Tk) = exp(scale Q K^T + mask - lse), row by row
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (int)tk, (int)p->d, 1.0f, q,
                        (int)p->q_rs, k, (int)p->k_rs, 0.0f, s, (int)tk);
            for (int64_t i = 0; i < rows; i++) {
                const float *m = j->m ? j->m + b * p->m_bs + (i0 + i) * p->m_rs : NULL;
                att_row_probs(s + i * tk, tk, p->scale, m, p->m_cs, lse[i]);
            }
            if (j->gv) // dV (Tk, dv) += P^T (Tk, rows) dO (rows, dv)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)tk, (int)p->dv, rows,
                            1.0f, s, (int)tk, go, (int)ro, 1.0f, j->gv + vo, (int)p->v_rs);
            if (!want_s) continue;
            // dP (rows, Tk) = dO (rows, dv) V^T (dv, Tk)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (int)tk, (int)p->dv, 1.0f,
                        go, (int)ro, v, (int)p->v_rs, 0.0f, dp, (int)tk);
            for (int64_t i = 0; i < rows; i++) { // dS = scale P (dP - D_i), into dp
                float dsum = 0.0f;
                for (int64_t c = 0; c < p->dv; c++)
                    dsum += go[i * ro + c] * o[i * ro + c];
                att_row_ds(dp + i * tk, s + i * tk, tk, dsum, p->scale);
            }
            if (j->gq) // dQ (rows, d) += dS (rows, Tk) K (Tk, d)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)p->d, (int)tk,
                            1.0f, dp, (int)tk, k, (int)p->k_rs, 1.0f, j->gq + qo, (int)p->q_rs);
            if (j->gk) // dK (Tk, d) += dS^T (Tk, rows) Q (rows, d)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)tk, (int)p->d, rows, 1.0f,
                            dp, (int)tk, q, (int)p->q_rs, 1.0f, j->gk + ko, (int)p->k_rs);
        }
    }
    free(s);
}

/* Picks the query rows per block and where the tasks run: blocks of ATT_ROWS when the pool has
 * one thread (tasks run inline) or OpenBLAS runs one thread per call; with both threaded, blocks
 * small enough to keep every SGEMM below OpenBLAS's threading size, if that leaves at least 8
 * rows; otherwise (long keys and wide heads) blocks of ATT_ROWS on the calling thread, task
 * after task, each SGEMM spread over OpenBLAS's threads. */
static void att_plan(pk_ctx *c, att_job *j) {
    const pk_attention_params *p = j->p;
    int64_t width = p->tk * (p->d > p->dv ? p->d : p->dv);
    bool both_threaded = pk_pool_threads(c->pool) > 1 && openblas_get_num_threads() > 1;
    j->rows = ATT_ROWS;
    j->serial = false;
    j->direct = p->tk * (p->d + p->dv) <= ATT_DIRECT_ELEMS;
    if (j->direct) { /* no OpenBLAS call: its threading does not matter */
        if (j->rows > p->tq) j->rows = p->tq;
        j->nqb = (p->tq + j->rows - 1) / j->rows;
        return;
    }
    if (both_threaded && ATT_ROWS * width > ATT_BLAS_SERIAL_MNK) {
        j->rows = ATT_BLAS_SERIAL_MNK / width;
        if (j->rows < 8) j->rows = ATT_ROWS, j->serial = true;
    }
    if (j->rows > p->tq) j->rows = p->tq;
    j->nqb = (p->tq + j->rows - 1) / j->rows;
}

/* Runs fn over [0, n) as att_plan decided. */
static void att_run(pk_ctx *c, att_job *j, int64_t n, pk_range_fn fn) {
    if (j->serial)
        fn(j, 0, n);
    else
        cpu_for(c, n, 1, fn, j);
}

/* The job's inputs: q, k, v at head 0's column, the mask when there is one. */
static void att_job_init(att_job *j, const pk_node *n) {
    const pk_attention_params *p = PK_PARAMS(n, pk_attention_params);
    j->p = p;
    j->q = cpu_f32(n->in[p->q_in]) + p->q_col;
    j->k = cpu_f32(n->in[p->k_in]) + p->k_col;
    j->v = cpu_f32(n->in[p->v_in]) + p->v_col;
    j->m = p->mask_in >= 0 ? cpu_f32(n->in[p->mask_in]) : NULL;
    j->o = cpu_f32(n->out[0]);
    j->lse = cpu_f32(n->saved[0]);
    atomic_init(&j->failed, 0);
}

/* out and lse from q, k, v and the mask. */
pk_status cpu_attention_forward(pk_ctx *c, pk_node *n) {
    att_job j;
    att_job_init(&j, n);
    att_plan(c, &j);
    att_run(c, &j, j.p->b * j.p->heads * j.nqb, att_fwd_range);
    if (atomic_load(&j.failed))
        return pk_error(PK_ERR_NOMEM, "attention: out of host memory for a %lld x %lld score block",
                        (long long)j.rows, (long long)j.p->tk);
    return PK_OK;
}

/* Adds d(out)'s contribution into the gradients of q, k and v (never the mask). */
pk_status cpu_attention_backward(pk_ctx *c, pk_node *n) {
    att_job j;
    att_job_init(&j, n);
    const pk_attention_params *p = j.p;
    j.go = cpu_f32(n->out[0]->grad);
    j.gq = cpu_wants_grad(n, p->q_in) ? cpu_f32(n->in[p->q_in]->grad) + p->q_col : NULL;
    j.gk = cpu_wants_grad(n, p->k_in) ? cpu_f32(n->in[p->k_in]->grad) + p->k_col : NULL;
    j.gv = cpu_wants_grad(n, p->v_in) ? cpu_f32(n->in[p->v_in]->grad) + p->v_col : NULL;
    if (!j.gq && !j.gk && !j.gv) return PK_OK;
    att_plan(c, &j);
    att_run(c, &j, p->b * p->heads, att_bwd_range);
    if (atomic_load(&j.failed))
        return pk_error(PK_ERR_NOMEM, "attention: out of host memory for two %lld x %lld blocks",
                        (long long)j.rows, (long long)p->tk);
    return PK_OK;
}
