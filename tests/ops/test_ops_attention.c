/* test_ops_attention.c - the fused attention op (pk_attention, pk_attention_heads,
 * pk_attention_qkv): CPU against PyTorch golden files (tests/golden/gold_attention.py) and finite
 * differences; CPU against a naive double-precision reference written here at ViT sizes (T = 50,
 * d = 32; T = 197, d = 64, H = 6; T = 17 and 5, d = 16), with masks, Tq != Tk, d != dv and d = 128
 * (small heads take the CPU's direct kernels, large ones OpenBLAS); Vulkan against the
 * goldens and the CPU; gradients adding onto existing ones; and the messages of bad inputs.
 * Contexts poison their step arenas, so an output element a kernel leaves unwritten is NaN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pk_test.h"

/* How a case calls the op: mode 0 pk_attention_heads (q, k, v [, mask]), 1 pk_attention_qkv,
 * 2 pk_attention_heads with its one input as q, k and v. */
typedef struct att_arg {
    int mode, heads, mask;
    float scale;
} att_arg;

static tensor *b_att(pk_ctx *c, tensor **x, const void *a) {
    const att_arg *p = a;
    if (p->mode == 1) return pk_attention_qkv(c, x[0], p->heads, p->scale);
    if (p->mode == 2) return pk_attention_heads(c, x[0], x[0], x[0], p->heads, NULL, p->scale);
    if (p->heads == 1) return pk_attention(c, x[0], x[1], x[2], p->mask ? x[3] : NULL, p->scale);
    return pk_attention_heads(c, x[0], x[1], x[2], p->heads, p->mask ? x[3] : NULL, p->scale);
}

static const att_arg A_MASK = {0, 1, 1, 0.35f}, A_SQUARE = {0, 1, 0, 0.5f},
                     A_HEADS_MASK = {0, 3, 1, 0.5f}, A_HEADS = {0, 2, 0, 0.7f},
                     A_QKV = {1, 2, 0, 0.5f}, A_QKV_H3 = {1, 3, 0, 0.44721359549995793f},
                     A_SELF = {2, 2, 0, 0.6f};

static const struct {
    const char *prefix;
    const att_arg *arg;
} cases[] = {
    {"att_mask", &A_MASK},   {"att_square", &A_SQUARE}, {"att_heads_mask", &A_HEADS_MASK},
    {"att_heads", &A_HEADS}, {"att_qkv", &A_QKV},       {"att_qkv_h3", &A_QKV_H3},
    {"att_self", &A_SELF},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static const pkt_tols tols = {.golden = 2e-5, .fd = 2e-2, .backend = 2e-5};

START_TEST(cpu_golden) {
    pkt_check_case("ops/attention.bin", cases[_i].prefix, b_att, cases[_i].arg, false, tols);
}
END_TEST

START_TEST(vk_golden) {
    pkt_check_case("ops/attention.bin", cases[_i].prefix, b_att, cases[_i].arg, true, tols);
}
END_TEST

/* ---- random cases at larger sizes ---- */

/* A shape: B, Tq, Tk, H, d, dv; qkv (then Tk = Tq, dv = d); mask rank (0: none) */
typedef struct att_shape {
    int64_t b, tq, tk, h, d, dv;
    int qkv, mask_rank;
} att_shape;

static const att_shape shapes[] = {
    {2, 50, 50, 2, 32, 32, 1, 0},   // 28x28 images, patch 4: T = 49 + cls
    {1, 197, 197, 6, 64, 64, 1, 0}, // vit_small_patch16_224
    {2, 33, 70, 3, 16, 24, 0, 3},   // cross attention, per-batch mask, d != dv
    {1, 9, 130, 1, 128, 128, 0, 1}, // d = 128, keys beyond two 64-blocks, a key mask
    {3, 17, 5, 4, 8, 4, 0, 2},      // Tk < Tq, a (Tq, Tk) mask
    {1, 20, 300, 2, 128, 96, 0, 0}, // Tk d large: the CPU runs it serially when BLAS is threaded
    {4, 17, 17, 4, 16, 16, 1, 0},   // vit_pico_patch7_28's global crops (the direct CPU kernels)
    {8, 5, 5, 4, 16, 16, 1, 0},     // and its 14x14 local crops
    {1, 100, 20, 2, 16, 8, 0, 1},   // direct kernels over two blocks of query rows, a key mask
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* Owns the random inputs of a shape as a pkt_case (arrays freed by case_free). */
static void case_make(const att_shape *s, att_arg *arg, pkt_case *k, uint64_t seed) {
    memset(k, 0, sizeof *k);
    pkt_rng r = {seed};
    *arg = (att_arg){.mode = s->qkv,
                     .heads = (int)s->h,
                     .mask = s->mask_rank > 0,
                     .scale = 1.0f / sqrtf((float)s->d)};
    k->name = "random";
    k->build = b_att;
    k->arg = arg;
    int64_t shp[4][3];
    int nd[4] = {3, 3, 3, 0};
    if (s->qkv) {
        memcpy(shp[0], (int64_t[]){s->b, s->tq, 3 * s->h * s->d}, sizeof shp[0]);
        k->n_in = 1;
    } else {
        memcpy(shp[0], (int64_t[]){s->b, s->tq, s->h * s->d}, sizeof shp[0]);
        memcpy(shp[1], (int64_t[]){s->b, s->tk, s->h * s->d}, sizeof shp[0]);
        memcpy(shp[2], (int64_t[]){s->b, s->tk, s->h * s->dv}, sizeof shp[0]);
        k->n_in = 3;
        int64_t full[3] = {s->b, s->tq, s->tk}; // the mask's shape: the last mask_rank of these
        for (int d = 0; d < s->mask_rank; d++)
            shp[3][d] = full[3 - s->mask_rank + d];
        nd[3] = s->mask_rank;
        if (s->mask_rank) k->n_in = 4;
    }
    for (int i = 0; i < k->n_in; i++) {
        pkt_input *in = &k->in[i];
        in->ndim = nd[i];
        in->dtype = PK_F32;
        int64_t n = 1;
        for (int d = 0; d < nd[i]; d++)
            n *= in->shape[d] = shp[i][d];
        float *x = malloc(sizeof(float) * (size_t)n);
        pkt_fill_uniform(&r, x, n, -2.0f, 2.0f);
        if (i == 3) { // the mask: a constant with some -inf entries (never a whole row)
            in->no_grad = true;
            for (int64_t e = 0; e < n; e++)
                if (e % 7 == 3 && (e % s->tk) != 0) x[e] = -INFINITY;
        }
        in->data = x;
    }
}

static void case_free(pkt_case *k) {
    for (int i = 0; i < k->n_in; i++)
        free((void *)k->in[i].data);
}

/* Naive reference in double: out and the gradients of q, k, v for upstream `up`, following
 * the definition (softmax of scaled logits plus mask, then the chain rule written out). */
typedef struct ref_out {
    double *o, *gq, *gk, *gv; // gq, gk, gv laid out as q, k, v (one array for qkv: gq)
} ref_out;

static ref_out reference(const att_shape *s, const pkt_case *k, const float *up) {
    int64_t b = s->b, tq = s->tq, tk = s->tk, H = s->h, d = s->d, dv = s->dv;
    const float *q = k->in[0].data, *kk, *v;
    int64_t qrs, krs, vrs, qc = 0, kc = 0, vc = 0, ro = H * dv;
    if (s->qkv) {
        kk = v = q;
        qrs = krs = vrs = 3 * H * d;
        kc = H * d;
        vc = 2 * H * d;
    } else {
        kk = k->in[1].data;
        v = k->in[2].data;
        qrs = krs = H * d;
        vrs = H * dv;
    }
    const float *m = s->mask_rank ? k->in[3].data : NULL;
    int64_t nq = b * tq * qrs, nk = b * tk * krs, nv = b * tk * vrs;
    ref_out r = {calloc((size_t)(b * tq * ro), sizeof(double)), calloc((size_t)nq, sizeof(double)),
                 calloc((size_t)nk, sizeof(double)), calloc((size_t)nv, sizeof(double))};
    double *gk = s->qkv ? r.gq : r.gk, *gv = s->qkv ? r.gq : r.gv;
    double *p = malloc(sizeof(double) * (size_t)tk), *dp = malloc(sizeof(double) * (size_t)tk);
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < tq; i++) {
                const float *qi = q + (bi * tq + i) * qrs + qc + h * d;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < tk; j++) {
                    const float *kj = kk + (bi * tk + j) * krs + kc + h * d;
                    double sc = 0;
                    for (int64_t c = 0; c < d; c++)
                        sc += (double)qi[c] * kj[c];
                    sc *= (double)(1.0f / sqrtf((float)d));
                    if (s->mask_rank == 3) sc += m[(bi * tq + i) * tk + j];
                    if (s->mask_rank == 2) sc += m[i * tk + j];
                    if (s->mask_rank == 1) sc += m[j];
                    p[j] = sc;
                    mx = fmax(mx, sc);
                }
                for (int64_t j = 0; j < tk; j++)
                    sum += p[j] = exp(p[j] - mx);
                const float *ui = up + (bi * tq + i) * ro + h * dv;
                double *oi = r.o + (bi * tq + i) * ro + h * dv, dsum = 0;
                for (int64_t j = 0; j < tk; j++) {
                    p[j] /= sum;
                    const float *vj = v + (bi * tk + j) * vrs + vc + h * dv;
                    dp[j] = 0;
                    for (int64_t c = 0; c < dv; c++) {
                        oi[c] += p[j] * vj[c];
                        dp[j] += (double)ui[c] * vj[c]; // dP = dO V^T
                        gv[(bi * tk + j) * vrs + vc + h * dv + c] += p[j] * ui[c];
                    }
                }
                for (int64_t j = 0; j < tk; j++)
                    dsum += p[j] * dp[j]; // = dO_i . O_i
                for (int64_t j = 0; j < tk; j++) {
                    double ds = p[j] * (dp[j] - dsum) * (double)(1.0f / sqrtf((float)d));
                    const float *kj = kk + (bi * tk + j) * krs + kc + h * d;
                    for (int64_t c = 0; c < d; c++) {
                        r.gq[(bi * tq + i) * qrs + qc + h * d + c] += ds * kj[c];
                        gk[(bi * tk + j) * krs + kc + h * d + c] += ds * qi[c];
                    }
                }
            }
    free(p);
    free(dp);
    return r;
}

/* ||a - b|| / ||b|| with b in double. */
static double nerr_d(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += b[i] * b[i];
    }
    return isnan(num) ? INFINITY : sqrt(num) / fmax(sqrt(den), 1e-30);
}

static float *upstream(int64_t n, uint64_t seed) {
    pkt_rng r = {seed};
    float *u = malloc(sizeof(float) * (size_t)n);
    pkt_fill_uniform(&r, u, n, -1.0f, 1.0f);
    return u;
}

static int64_t out_numel(const att_shape *s) { return s->b * s->tq * s->h * s->dv; }

/* The CPU kernels against the naive reference, output and every gradient. */
START_TEST(cpu_vs_naive) {
    const att_shape *s = &shapes[_i];
    att_arg arg;
    pkt_case k;
    case_make(s, &arg, &k, 100 + (uint64_t)_i);
    float *up = upstream(out_numel(s), 7);
    pk_ctx *c = pkt_ctx("cpu");
    pkt_result got = pkt_case_run(c, &k, up);
    ref_out want = reference(s, &k, up);
    double e = nerr_d(got.out, want.o, got.out_numel);
    ck_assert_msg(e < 1e-5, "shape %d: output error %.3g", _i, e);
    double *wg[3] = {want.gq, want.gk, want.gv};
    for (int i = 0; i < (s->qkv ? 1 : 3); i++) {
        ck_assert_ptr_nonnull(got.grad[i]);
        e = nerr_d(got.grad[i], wg[i], got.numel[i]);
        ck_assert_msg(e < 1e-5, "shape %d: gradient of input %d error %.3g", _i, i, e);
    }
    ck_assert_msg(k.n_in < 4 || got.grad[3] == NULL, "the mask got a gradient");
    pkt_result_free(&got);
    free(want.o), free(want.gq), free(want.gk), free(want.gv);
    free(up);
    case_free(&k);
    pkt_ctx_done(c);
}
END_TEST

/* Vulkan against the CPU at the same sizes. */
START_TEST(vk_vs_cpu) {
    const att_shape *s = &shapes[_i];
    att_arg arg;
    pkt_case k;
    case_make(s, &arg, &k, 200 + (uint64_t)_i);
    pk_ctx *cpu = pkt_ctx("cpu"), *vk = pkt_ctx("vk");
    pkt_check_backends(cpu, vk, &k, 2e-5);
    case_free(&k);
    pkt_ctx_done(vk);
    pkt_ctx_done(cpu);
}
END_TEST

/* Backward adds onto gradients that already hold values (a tensor used twice, a parameter
 * gradient accumulated over micro-batches): grad = before + this op's contribution. */
static void check_accumulates(const char *device) {
    const att_shape *s = &shapes[2];
    att_arg arg;
    pkt_case k;
    case_make(s, &arg, &k, 300);
    float *up = upstream(out_numel(s), 8);
    pk_ctx *c = pkt_ctx(device);
    pkt_result fresh = pkt_case_run(c, &k, up);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *t[4], *before[3];
    float *pre[3];
    for (int i = 0; i < 4; i++) {
        t[i] = pkt_const(c, PK_F32, k.in[i].ndim, k.in[i].shape, k.in[i].data);
        if (i == 3) break;
        t[i]->requires_grad = true;
        pre[i] = upstream(fresh.numel[i], 20 + (uint64_t)i);
        before[i] = pkt_const(c, PK_F32, 3, k.in[i].shape, pre[i]);
        t[i]->grad = before[i];
    }
    tensor *out = b_att(c, t, &arg);
    ck_assert_msg(out != NULL, "%s", polyak_error());
    tensor *seed = pkt_const(c, PK_F32, 3, out->shape, up);
    ck_assert_int_eq(autograd_backward_from(c, out, seed), PK_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_eq(t[i]->grad, before[i]);
        float *g = pkt_download(t[i]->grad);
        for (int64_t e = 0; e < fresh.numel[i]; e++)
            ck_assert_msg(fabsf(g[e] - (pre[i][e] + fresh.grad[i][e])) <=
                              1e-5f * (1.0f + fabsf(g[e])),
                          "%s: input %d element %lld: %g, want %g + %g", device, i, (long long)e,
                          g[e], pre[i][e], fresh.grad[i][e]);
        free(g);
        free(pre[i]);
    }
    pkt_result_free(&fresh);
    free(up);
    case_free(&k);
    pkt_ctx_done(c);
}

START_TEST(cpu_accumulates) { check_accumulates("cpu"); }
END_TEST

START_TEST(vk_accumulates) { check_accumulates("vk"); }
END_TEST

/* Records the failure of `t` and checks the message names op and (optionally) `what`. */
static void expect_error(const tensor *t, const char *op, const char *what) {
    ck_assert_ptr_null(t);
    const char *msg = polyak_error();
    ck_assert_msg(strstr(msg, op) != NULL, "message '%s' does not name %s", msg, op);
    if (what) ck_assert_msg(strstr(msg, what) != NULL, "message '%s' lacks '%s'", msg, what);
}

START_TEST(bad_inputs) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *q = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 4, 8});
    tensor *k = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 6, 8});
    tensor *k7 = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 6, 7});
    ck_assert_int_eq(pk_fill(c, q, 0.5f), PK_OK);
    ck_assert_int_eq(pk_fill(c, k, 0.25f), PK_OK);
    expect_error(pk_attention(c, q, k7, k7, NULL, 1.0f), "attention", "(2, 6, 7)");
    expect_error(pk_attention_heads(c, q, k, k, 3, NULL, 1.0f), "attention", "3 heads");
    tensor *m = tensor_new(c->step, PK_F32, 2, (int64_t[]){4, 5});
    ck_assert_int_eq(pk_fill(c, m, 0.0f), PK_OK);
    expect_error(pk_attention(c, q, k, k, m, 1.0f), "attention", "(4, 5)");
    tensor *mg = tensor_new(c->step, PK_F32, 2, (int64_t[]){4, 6});
    ck_assert_int_eq(pk_fill(c, mg, 0.0f), PK_OK);
    ck_assert_ptr_nonnull(pk_attention(c, q, k, k, mg, 1.0f));
    mg->requires_grad = true;
    expect_error(pk_attention(c, q, k, k, mg, 1.0f), "attention", "mask");
    tensor *qkv = tensor_new(c->step, PK_F32, 3, (int64_t[]){2, 4, 20});
    expect_error(pk_attention_qkv(c, qkv, 3, 1.0f), "attention_qkv", "(2, 4, 20)");
    ck_assert_ptr_null(pk_attention_qkv(c, NULL, 2, 1.0f));
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_attention");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_loop_test(cpu, cpu_golden, 0, NCASES);
    tcase_add_loop_test(cpu, cpu_vs_naive, 0, NSHAPES);
    tcase_add_test(cpu, cpu_accumulates);
    tcase_add_test(cpu, bad_inputs);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 300);
        tcase_add_loop_test(vk, vk_golden, 0, NCASES);
        tcase_add_loop_test(vk, vk_vs_cpu, 0, NSHAPES);
        tcase_add_test(vk, vk_accumulates);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
