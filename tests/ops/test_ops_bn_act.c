/* test_ops_bn_act.c - pk_batchnorm_act, batch norm fused with a residual add and a ReLU, against
 * the unfused ops it replaces, pk_relu(pk_add(pk_batchnorm(x), r)) (themselves tested against
 * PyTorch in test_ops_nn.c): the output, the gradients of x, gamma, beta and r, and the running
 * statistics, with and without the residual and the ReLU, in training and evaluation, at odd
 * sizes (vector tails), with gradients that are fresh (written by the kernel), already hold
 * values (added into), shared (r is x) or partly not wanted; on the CPU and on Vulkan. Also the
 * fused op's argument checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pk_test.h"

typedef struct {
    int64_t shape[4];
    int ndim;
} bn_shape;

/* S = 63 and 323 leave vector tails, 64 does not, (7, 5) has no spatial dims, S = 1 is the
 * smallest plane. */
static const bn_shape SHAPES[] = {
    {{3, 5, 7, 9}, 4}, {{2, 4, 8, 8}, 4}, {{4, 6, 17, 19}, 4}, {{7, 5}, 2}, {{9, 3, 1, 1}, 4},
};
#define NSHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

typedef enum {
    GRAD_FRESH,  /* every input's gradient is new: the CPU kernels write it */
    GRAD_ADD,    /* every gradient already holds values: the kernels add into it */
    GRAD_SHARED, /* r is x: both contributions go into one gradient */
    GRAD_NO_X,   /* x wants no gradient, r does */
    GRAD_NO_R,   /* r wants no gradient, x does */
    GRAD_MODES
} grad_mode;

static const char *MODE_NAMES[] = {"fresh", "add", "shared", "no_x", "no_r"};

typedef struct {
    const bn_shape *shape;
    bool residual, relu, training;
    grad_mode mode;
} bn_cfg;

/* Host copies of everything one run produces. */
typedef struct {
    int64_t numel, ch;
    float *y, *gx, *ggamma, *gbeta, *gr, *rm, *rv;
} bn_run;

static int64_t shape_numel(const bn_shape *s) {
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

/* Random data in [lo, hi) from a fixed seed; caller frees. */
static float *rand_vec(uint64_t seed, int64_t n, float lo, float hi) {
    pkt_rng r = {seed};
    float *h = malloc(sizeof(float) * (size_t)n + 4);
    pkt_fill_uniform(&r, h, n, lo, hi);
    return h;
}

/* A tensor holding data, wanting a gradient when `grad`; with `prefill`, its gradient exists
 * already and holds nonzero values (so a kernel that writes instead of adding is caught). */
static tensor *input(pk_ctx *c, int ndim, const int64_t *shape, const float *data, bool grad,
                     const float *prefill) {
    tensor *t = grad ? pkt_param(c, ndim, shape, data) : pkt_const(c, PK_F32, ndim, shape, data);
    if (grad && prefill) {
        ck_assert_int_eq(pk_grad_ensure(c, t), PK_OK);
        ck_assert_int_eq(tensor_upload(t->grad, prefill), PK_OK);
    }
    return t;
}

/* The gradient of t downloaded, or NULL when it has none. */
static float *grad_of(const tensor *t) {
    return t->requires_grad && t->grad ? pkt_download(t->grad) : NULL;
}

/* Runs forward and backward of the fused op (fused) or the unfused composition on c. */
static bn_run run(pk_ctx *c, const bn_cfg *k, bool fused) {
    const bn_shape *s = k->shape;
    int64_t numel = shape_numel(s), ch = s->shape[1];
    float *xd = rand_vec(11, numel, -2.0f, 2.5f), *rd = rand_vec(12, numel, -1.5f, 1.0f);
    float *gd = rand_vec(13, ch, -1.2f, 1.5f), *bd = rand_vec(14, ch, -0.5f, 0.5f);
    float *rmd = rand_vec(15, ch, -0.3f, 0.3f), *rvd = rand_vec(16, ch, 0.5f, 1.5f);
    float *up = rand_vec(17, numel, -1.0f, 1.0f);
    float *px = rand_vec(21, numel, -1.0f, 1.0f), *pr = rand_vec(22, numel, -1.0f, 1.0f);
    float *pg = rand_vec(23, ch, -1.0f, 1.0f), *pb = rand_vec(24, ch, -1.0f, 1.0f);
    bool add = k->mode == GRAD_ADD;
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = input(c, s->ndim, s->shape, xd, k->mode != GRAD_NO_X, add ? px : NULL);
    tensor *gamma = input(c, 1, &ch, gd, true, add ? pg : NULL);
    tensor *beta = input(c, 1, &ch, bd, true, add ? pb : NULL);
    tensor *rm = pkt_const(c, PK_F32, 1, &ch, rmd), *rv = pkt_const(c, PK_F32, 1, &ch, rvd);
    tensor *r = NULL;
    if (k->residual)
        r = k->mode == GRAD_SHARED
                ? x
                : input(c, s->ndim, s->shape, rd, k->mode != GRAD_NO_R, add ? pr : NULL);
    c->training = k->training;
    tensor *y;
    if (fused) {
        y = pk_batchnorm_act(c, x, gamma, beta, rm, rv, 0.1f, 1e-5f, r, k->relu);
    } else {
        y = pk_batchnorm(c, x, gamma, beta, rm, rv, 0.1f, 1e-5f);
        if (r) y = pk_add(c, y, r);
        if (k->relu) y = pk_relu(c, y);
    }
    c->training = true;
    ck_assert_msg(y != NULL, "%s", polyak_error());
    bn_run o = {.numel = numel, .ch = ch, .y = pkt_download(y)};
    tensor *seed = pkt_const(c, PK_F32, y->ndim, y->shape, up);
    ck_assert_msg(autograd_backward_from(c, y, seed) == PK_OK, "%s", polyak_error());
    o.gx = grad_of(x);
    o.ggamma = grad_of(gamma);
    o.gbeta = grad_of(beta);
    o.gr = r && r != x ? grad_of(r) : NULL;
    o.rm = pkt_download(rm);
    o.rv = pkt_download(rv);
    free(xd), free(rd), free(gd), free(bd), free(rmd), free(rvd), free(up);
    free(px), free(pr), free(pg), free(pb);
    return o;
}

static void run_free(bn_run *o) {
    free(o->y), free(o->gx), free(o->ggamma), free(o->gbeta), free(o->gr), free(o->rm);
    free(o->rv);
}

/* Fails unless a and b are both absent or agree to the normalised error tol. */
static void expect_close(const char *what, const char *cfg, const float *a, const float *b,
                         int64_t n, double tol) {
    ck_assert_msg((a == NULL) == (b == NULL), "%s: %s present in only one run", cfg, what);
    if (!a) return;
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(!isnan(a[i]), "%s: %s[%lld] is NaN (unwritten)", cfg, what, (long long)i);
    double e = pkt_nerr(a, b, n);
    ck_assert_msg(e <= tol, "%s: %s differs (normalised error %.3g > %.3g)", cfg, what, e, tol);
}

/* Compares two runs of one backend: running statistics must be the same bits (both ops run
 * batch norm's statistics code); across backends (stats_tol > 0) they agree to stats_tol. */
static void compare(const char *cfg, const bn_run *a, const bn_run *b, double tol,
                    double stats_tol) {
    expect_close("y", cfg, a->y, b->y, a->numel, tol);
    expect_close("dx", cfg, a->gx, b->gx, a->numel, tol);
    expect_close("dgamma", cfg, a->ggamma, b->ggamma, a->ch, tol);
    expect_close("dbeta", cfg, a->gbeta, b->gbeta, a->ch, tol);
    expect_close("dr", cfg, a->gr, b->gr, a->numel, tol);
    if (stats_tol > 0) {
        expect_close("running mean", cfg, a->rm, b->rm, a->ch, stats_tol);
        expect_close("running var", cfg, a->rv, b->rv, a->ch, stats_tol);
        return;
    }
    ck_assert_msg(memcmp(a->rm, b->rm, sizeof(float) * (size_t)a->ch) == 0,
                  "%s: running mean differs from pk_batchnorm's", cfg);
    ck_assert_msg(memcmp(a->rv, b->rv, sizeof(float) * (size_t)a->ch) == 0,
                  "%s: running variance differs from pk_batchnorm's", cfg);
}

/* Every configuration of one shape: fused against unfused on c, and (when cpu is given) the
 * fused op on c against the fused op on the CPU. */
static void check_shape(pk_ctx *c, pk_ctx *cpu, const bn_shape *s, double tol, double backend_tol) {
    int checked = 0;
    for (int res = 0; res < 2; res++)
        for (int relu = 0; relu < 2; relu++)
            for (int train = 0; train < 2; train++)
                for (int mode = 0; mode < GRAD_MODES; mode++) {
                    if (!res && (mode == GRAD_SHARED || mode == GRAD_NO_R)) continue;
                    bn_cfg k = {s, res, relu, train, (grad_mode)mode};
                    char name[160];
                    snprintf(name, sizeof name,
                             "(%lld, %lld, ...) residual %d relu %d %s, %s grads",
                             (long long)s->shape[0], (long long)s->shape[1], res, relu,
                             train ? "training" : "eval", MODE_NAMES[mode]);
                    bn_run f = run(c, &k, true), u = run(c, &k, false);
                    compare(name, &f, &u, tol, 0.0);
                    if (cpu) {
                        bn_run h = run(cpu, &k, true);
                        compare(name, &f, &h, backend_tol, backend_tol);
                        run_free(&h);
                    }
                    /* the residual and the ReLU did something: y differs from batch norm alone */
                    if (res || relu) {
                        bn_cfg plain = {s, false, false, train, GRAD_FRESH};
                        bn_run p = run(c, &plain, true);
                        ck_assert_msg(pkt_nerr(f.y, p.y, f.numel) > 1e-3, "%s: y is plain bn",
                                      name);
                        run_free(&p);
                    }
                    run_free(&f);
                    run_free(&u);
                    checked++;
                }
    ck_assert_int_eq(checked, 32);
}

/* On the CPU the fused op does the unfused ops' arithmetic in the same order: the same bits,
 * held to a tolerance only so that a change of summation order does not fail it. */
START_TEST(cpu_fused_vs_unfused) {
    pk_ctx *c = pkt_ctx("cpu");
    check_shape(c, NULL, &SHAPES[_i], 1e-6, 0.0);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(vk_fused_vs_unfused) {
    pk_ctx *c = pkt_ctx("vk"), *cpu = pkt_ctx("cpu");
    check_shape(c, cpu, &SHAPES[_i], 1e-6, 2e-5);
    pkt_ctx_done(cpu);
    pkt_ctx_done(c);
}
END_TEST

/* A hand-computed case: x (2, 1, 2) = {1, 3, 5, 7}: mean 4, biased var 5; gamma 2, beta 1,
 * r = {0.5, -4, 1, 0}, ReLU; dy = 1 everywhere. */
START_TEST(cpu_hand_case) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    int64_t shape[3] = {2, 1, 2}, one = 1;
    tensor *x = pkt_param(c, 3, shape, (float[]){1, 3, 5, 7});
    tensor *r = pkt_param(c, 3, shape, (float[]){0.5f, -4, 1, 0});
    tensor *g = pkt_param(c, 1, &one, (float[]){2}), *b = pkt_param(c, 1, &one, (float[]){1});
    tensor *rm = pkt_const(c, PK_F32, 1, &one, (float[]){0});
    tensor *rv = pkt_const(c, PK_F32, 1, &one, (float[]){1});
    tensor *y = pk_batchnorm_act(c, x, g, b, rm, rv, 0.1f, 0.0f, r, true);
    ck_assert_ptr_nonnull(y);
    float *hy = pkt_download(y);
    double sd = sqrt(5.0), xh[4] = {-3 / sd, -1 / sd, 1 / sd, 3 / sd}, rr[4] = {0.5, -4, 1, 0};
    bool on[4];
    for (int i = 0; i < 4; i++) {
        double pre = 2 * xh[i] + 1 + rr[i];
        on[i] = pre > 0;
        ck_assert_msg(fabs(hy[i] - (on[i] ? pre : 0.0)) < 1e-5, "y[%d] = %g", i, hy[i]);
    }
    ck_assert(!on[0] && !on[1] && on[2] && on[3]); /* the case exercises both sides of the mask */
    tensor *seed = pkt_const(c, PK_F32, 3, shape, (float[]){1, 1, 1, 1});
    ck_assert_int_eq(autograd_backward_from(c, y, seed), PK_OK);
    float *gx = pkt_download(x->grad), *gr = pkt_download(r->grad);
    float *gg = pkt_download(g->grad), *gb = pkt_download(b->grad);
    /* gm = {0, 0, 1, 1}; dbeta = 2, dgamma = sum gm xhat = 4 / sd;
     * dx = gamma / sd (gm - mean gm - xhat mean(gm xhat)) */
    ck_assert(fabs(gb[0] - 2.0) < 1e-5 && fabs(gg[0] - 4 / sd) < 1e-5);
    for (int i = 0; i < 4; i++) {
        double gm = on[i] ? 1.0 : 0.0;
        double want = 2 / sd * (gm - 0.5 - xh[i] * (4 / sd) / 4);
        ck_assert_msg(fabs(gr[i] - gm) < 1e-6, "dr[%d] = %g", i, gr[i]);
        ck_assert_msg(fabs(gx[i] - want) < 1e-5, "dx[%d] = %g, want %g", i, gx[i], want);
    }
    /* running statistics: momentum 0.1, unbiased variance 20 / 3 */
    float *hm = pkt_download(rm), *hv = pkt_download(rv);
    ck_assert(fabs(hm[0] - 0.4) < 1e-6 && fabs(hv[0] - (0.9 + 0.1 * 20.0 / 3.0)) < 1e-5);
    free(hy), free(gx), free(gr), free(gg), free(gb), free(hm), free(hv);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(bad_inputs) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = tensor_new(c->step, PK_F32, 4, (int64_t[]){2, 3, 4, 4});
    tensor *r = tensor_new(c->step, PK_F32, 4, (int64_t[]){2, 3, 4, 5});
    tensor *v = tensor_new(c->step, PK_F32, 1, (int64_t[]){3});
    ck_assert_int_eq(pk_fill(c, x, 0.5f), PK_OK);
    ck_assert_int_eq(pk_fill(c, r, 0.5f), PK_OK);
    ck_assert_int_eq(pk_fill(c, v, 1.0f), PK_OK);
    ck_assert_ptr_null(pk_batchnorm_act(c, x, v, v, NULL, NULL, 0.1f, 1e-5f, r, true));
    ck_assert_msg(strstr(polyak_error(), "batchnorm_act") && strstr(polyak_error(), "(2, 3, 4, 5)"),
                  "%s", polyak_error());
    c->training = false;
    ck_assert_ptr_null(pk_batchnorm_act(c, x, v, v, NULL, NULL, 0.1f, 1e-5f, NULL, true));
    ck_assert_ptr_nonnull(strstr(polyak_error(), "running statistics"));
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_bn_act");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_loop_test(cpu, cpu_fused_vs_unfused, 0, NSHAPES);
    tcase_add_test(cpu, cpu_hand_case);
    tcase_add_test(cpu, bad_inputs);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 600);
        tcase_add_loop_test(vk, vk_fused_vs_unfused, 0, NSHAPES);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
