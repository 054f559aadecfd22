/* pk_test.c - shared test machinery; see pk_test.h. */
#include "pk_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "vk/vk.h"

pk_ctx *pkt_ctx(const char *device) {
    pk_ctx *c = NULL;
    pk_ctx_options o = {.device = device, .seed = 1234, .poison = true};
    pk_status s = pk_ctx_create(&o, &c);
    ck_assert_msg(s == PK_OK, "context on %s: %s", device, polyak_error());
    return c;
}

bool pkt_have_vulkan(void) {
    int n = 0;
    return vkctx_enumerate(NULL, 0, &n) == PK_OK && n > 0;
}

void pkt_ctx_done(pk_ctx *c) {
    if (!c) return;
    pk_device_sync(c->dev);
    int errs = pk_device_validation_errors(c->dev);
    pk_ctx_destroy(c);
    ck_assert_msg(errs == 0, "%d Vulkan validation messages (see stderr)", errs);
}

int pkt_run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float pkt_uniform(pkt_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((splitmix(&r->s) >> 40) * (1.0 / 16777216.0));
}

void pkt_fill_uniform(pkt_rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        float v = pkt_uniform(r, lo, hi);
        if (lo < -0.1f && hi > 0.1f && fabsf(v) < 0.05f) v = v < 0 ? -0.05f - v : 0.05f + v;
        x[i] = v;
    }
}

double pkt_nerr(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

tensor *pkt_param(pk_ctx *c, int ndim, const int64_t *shape, const float *data) {
    tensor *t = tensor_new(c->step, PK_F32, ndim, shape);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tensor_upload(t, data), PK_OK);
    t->requires_grad = true;
    return t;
}

tensor *pkt_const(pk_ctx *c, pk_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    tensor *t = tensor_new(c->step, dtype, ndim, shape);
    ck_assert_msg(t != NULL, "tensor_new: %s", polyak_error());
    ck_assert_int_eq(tensor_upload(t, data), PK_OK);
    return t;
}

float *pkt_download(const tensor *t) {
    float *h = malloc(sizeof(float) * (size_t)tensor_numel(t) + 4);
    ck_assert_int_eq(tensor_download(t, h), PK_OK);
    return h;
}

/* ---- golden files: "PKG1", u32 count, then per array: u32 name length, name, u32 ndim,
 * i64 dims[ndim], f32 data[numel] (little-endian) ---- */

pkt_golden *pkt_golden_load(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", POLYAK_GOLDEN_DIR, rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "golden file %s missing (make goldens)", path);
    char magic[4];
    uint32_t count = 0;
    ck_assert(fread(magic, 1, 4, f) == 4 && memcmp(magic, "PKG1", 4) == 0);
    ck_assert(fread(&count, 4, 1, f) == 1 && count < 100000);
    pkt_golden *g = calloc(1, sizeof *g);
    g->count = (int)count;
    g->arrays = calloc(count, sizeof *g->arrays);
    for (uint32_t i = 0; i < count; i++) {
        pkt_array *a = &g->arrays[i];
        uint32_t len = 0, nd = 0;
        ck_assert(fread(&len, 4, 1, f) == 1 && len < sizeof a->name);
        ck_assert(fread(a->name, 1, len, f) == len);
        ck_assert(fread(&nd, 4, 1, f) == 1 && nd <= PK_MAX_DIMS);
        a->ndim = (int)nd;
        a->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            ck_assert(fread(&a->shape[d], 8, 1, f) == 1);
            a->numel *= a->shape[d];
        }
        a->data = malloc(sizeof(float) * (size_t)a->numel + 4);
        ck_assert_msg(fread(a->data, 4, (size_t)a->numel, f) == (size_t)a->numel,
                      "golden %s: array %s truncated", path, a->name);
    }
    fclose(f);
    return g;
}

const pkt_array *pkt_golden_find(const pkt_golden *g, const char *name) {
    for (int i = 0; i < g->count; i++)
        if (strcmp(g->arrays[i].name, name) == 0) return &g->arrays[i];
    return NULL;
}

const pkt_array *pkt_golden_get(const pkt_golden *g, const char *name) {
    const pkt_array *a = pkt_golden_find(g, name);
    ck_assert_msg(a != NULL, "golden array %s missing", name);
    return a;
}

void pkt_golden_free(pkt_golden *g) {
    if (!g) return;
    for (int i = 0; i < g->count; i++)
        free(g->arrays[i].data);
    free(g->arrays);
    free(g);
}

/* ---- op harness ---- */

static tensor *make_input(pk_ctx *c, const pkt_input *in, bool grad) {
    if (in->dtype == PK_I32) return pkt_const(c, PK_I32, in->ndim, in->shape, in->idata);
    tensor *t = pkt_const(c, PK_F32, in->ndim, in->shape, in->data);
    t->requires_grad = grad && !in->no_grad;
    return t;
}

static int64_t input_numel(const pkt_input *in) {
    int64_t n = 1;
    for (int d = 0; d < in->ndim; d++)
        n *= in->shape[d];
    return n;
}

/* Forward only; returns the output downloaded (caller frees) and its size. */
static float *forward_only(pk_ctx *c, const pkt_case *k, const pkt_input *ins, int64_t *numel) {
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    bool old = pk_set_grad_enabled(c, false);
    tensor *t[PKT_MAX_INPUTS];
    for (int i = 0; i < k->n_in; i++)
        t[i] = make_input(c, &ins[i], false);
    tensor *out = k->build(c, t, k->arg);
    ck_assert_msg(out != NULL, "%s forward failed: %s", k->name, polyak_error());
    *numel = tensor_numel(out);
    float *h = pkt_download(out);
    pk_set_grad_enabled(c, old);
    return h;
}

pkt_result pkt_case_run(pk_ctx *c, const pkt_case *k, const float *upstream) {
    pkt_result r = {0};
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *t[PKT_MAX_INPUTS];
    for (int i = 0; i < k->n_in; i++)
        t[i] = make_input(c, &k->in[i], true);
    tensor *out = k->build(c, t, k->arg);
    ck_assert_msg(out != NULL, "%s forward failed: %s", k->name, polyak_error());
    r.out_numel = tensor_numel(out);
    r.out = pkt_download(out);
    for (int64_t i = 0; i < r.out_numel; i++)
        ck_assert_msg(!isnan(r.out[i]), "%s: output element %lld not written (NaN poison)", k->name,
                      (long long)i);
    tensor *seed = pkt_const(c, PK_F32, out->ndim, out->shape, upstream);
    pk_status s = autograd_backward_from(c, out, seed);
    ck_assert_msg(s == PK_OK, "%s backward failed: %s", k->name, polyak_error());
    for (int i = 0; i < k->n_in; i++) {
        r.numel[i] = input_numel(&k->in[i]);
        if (t[i]->requires_grad && t[i]->grad) r.grad[i] = pkt_download(t[i]->grad);
    }
    return r;
}

void pkt_result_free(pkt_result *r) {
    free(r->out);
    for (int i = 0; i < PKT_MAX_INPUTS; i++)
        free(r->grad[i]);
    memset(r, 0, sizeof *r);
}

static float *random_upstream(int64_t n, uint64_t seed) {
    pkt_rng rng = {seed};
    float *u = malloc(sizeof(float) * (size_t)n + 4);
    pkt_fill_uniform(&rng, u, n, -1.0f, 1.0f);
    return u;
}

void pkt_check_gradients(pk_ctx *c, const pkt_case *k, int samples, double tol) {
    int64_t on = 0;
    free(forward_only(c, k, k->in, &on));
    float *up = k->upstream ? (float *)k->upstream : random_upstream(on, 99);
    pkt_result r = pkt_case_run(c, k, up);
    pkt_input ins[PKT_MAX_INPUTS];
    memcpy(ins, k->in, sizeof ins);
    pkt_rng rng = {7};
    for (int i = 0; i < k->n_in; i++) {
        if (k->in[i].dtype != PK_F32 || k->in[i].no_grad) continue;
        ck_assert_msg(r.grad[i] != NULL, "%s: input %d got no gradient", k->name, i);
        int64_t n = r.numel[i];
        float *x = malloc(sizeof(float) * (size_t)n);
        memcpy(x, k->in[i].data, sizeof(float) * (size_t)n);
        ins[i].data = x;
        int m = n < samples ? (int)n : samples;
        for (int s = 0; s < m; s++) {
            int64_t j = n <= samples ? s : (int64_t)(pkt_uniform(&rng, 0, 1) * (float)n) % n;
            float x0 = x[j];
            double h = 1e-2 * fmax(1.0, fabs(x0)), lp = 0, lm = 0;
            int64_t cnt;
            x[j] = (float)(x0 + h);
            float *op = forward_only(c, k, ins, &cnt);
            x[j] = (float)(x0 - h);
            float *om = forward_only(c, k, ins, &cnt);
            x[j] = x0;
            for (int64_t q = 0; q < cnt; q++) {
                lp += (double)op[q] * up[q];
                lm += (double)om[q] * up[q];
            }
            free(op);
            free(om);
            double fd = (lp - lm) / (2 * h), an = r.grad[i][j];
            ck_assert_msg(fabs(fd - an) <= tol * fmax(1.0, fabs(fd)),
                          "%s: d/d in%d[%lld]: analytic %.6g vs finite difference %.6g", k->name, i,
                          (long long)j, an, fd);
        }
        free(x);
        ins[i].data = k->in[i].data;
    }
    pkt_result_free(&r);
    if (!k->upstream) free(up);
}

void pkt_check_golden(pk_ctx *c, const pkt_case *k, const pkt_golden *g, const char *prefix,
                      double tol) {
    char name[96];
    snprintf(name, sizeof name, "%s.up", prefix);
    const pkt_array *up = pkt_golden_get(g, name);
    pkt_result r = pkt_case_run(c, k, up->data);
    snprintf(name, sizeof name, "%s.out", prefix);
    const pkt_array *out = pkt_golden_get(g, name);
    ck_assert_int_eq(out->numel, r.out_numel);
    double e = pkt_nerr(r.out, out->data, out->numel);
    ck_assert_msg(e <= tol, "%s: output differs from PyTorch (normalised error %.3g)", k->name, e);
    for (int i = 0; i < k->n_in; i++) {
        snprintf(name, sizeof name, "%s.grad%d", prefix, i);
        const pkt_array *ga = pkt_golden_find(g, name);
        if (!ga) continue;
        ck_assert_msg(r.grad[i] != NULL, "%s: input %d got no gradient", k->name, i);
        e = pkt_nerr(r.grad[i], ga->data, ga->numel);
        ck_assert_msg(e <= tol, "%s: gradient of input %d differs from PyTorch (error %.3g)",
                      k->name, i, e);
    }
    pkt_result_free(&r);
}

void pkt_check_backends(pk_ctx *cpu, pk_ctx *vk, const pkt_case *k, double tol) {
    int64_t on = 0;
    free(forward_only(cpu, k, k->in, &on));
    float *up = k->upstream ? (float *)k->upstream : random_upstream(on, 5);
    pkt_result a = pkt_case_run(cpu, k, up), b = pkt_case_run(vk, k, up);
    double e = pkt_nerr(b.out, a.out, a.out_numel);
    ck_assert_msg(e <= tol, "%s: Vulkan output differs from CPU (normalised error %.3g)", k->name,
                  e);
    for (int i = 0; i < k->n_in; i++) {
        if (!a.grad[i]) continue;
        ck_assert_msg(b.grad[i] != NULL, "%s: Vulkan gave input %d no gradient", k->name, i);
        e = pkt_nerr(b.grad[i], a.grad[i], a.numel[i]);
        ck_assert_msg(e <= tol, "%s: Vulkan gradient of input %d differs from CPU (error %.3g)",
                      k->name, i, e);
    }
    pkt_result_free(&a);
    pkt_result_free(&b);
    if (!k->upstream) free(up);
}

void pkt_case_from_golden(const pkt_golden *g, const char *prefix, pkt_build_fn build,
                          const void *arg, pkt_case *out) {
    memset(out, 0, sizeof *out);
    out->name = prefix;
    out->build = build;
    out->arg = arg;
    for (int i = 0; i < PKT_MAX_INPUTS; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.in%d", prefix, i);
        const pkt_array *a = pkt_golden_find(g, name);
        pkt_input *in = &out->in[i];
        if (a) {
            in->dtype = PK_F32;
            in->data = a->data;
            snprintf(name, sizeof name, "%s.grad%d", prefix, i);
            in->no_grad = pkt_golden_find(g, name) == NULL;
        } else {
            snprintf(name, sizeof name, "%s.idx%d", prefix, i);
            a = pkt_golden_find(g, name);
            if (!a) break;
            /* indices are small integers stored exactly as floats; convert in place once */
            int32_t *idx = (int32_t *)a->data;
            if (!(a->numel > 0 && isnan(a->data[a->numel]))) {
                for (int64_t q = 0; q < a->numel; q++)
                    idx[q] = (int32_t)a->data[q];
                a->data[a->numel] = NAN; /* marks the conversion done (spare slot) */
            }
            in->dtype = PK_I32;
            in->idata = idx;
        }
        in->ndim = a->ndim;
        memcpy(in->shape, a->shape, sizeof in->shape);
        out->n_in = i + 1;
    }
}

void pkt_check_case(const char *golden_file, const char *prefix, pkt_build_fn build,
                    const void *arg, bool vulkan, pkt_tols tol) {
    pkt_golden *g = pkt_golden_load(golden_file);
    pkt_case k;
    pkt_case_from_golden(g, prefix, build, arg, &k);
    pk_ctx *cpu = pkt_ctx("cpu");
    if (!vulkan) {
        pkt_check_golden(cpu, &k, g, prefix, tol.golden);
        pkt_check_gradients(cpu, &k, 12, tol.fd);
    } else {
        pk_ctx *vk = pkt_ctx("vk");
        pkt_check_golden(vk, &k, g, prefix, tol.backend > tol.golden ? tol.backend : tol.golden);
        pkt_check_backends(cpu, vk, &k, tol.backend);
        pkt_ctx_done(vk);
    }
    pkt_ctx_done(cpu);
    pkt_golden_free(g);
}
