/* test_lae.c - LAE's parts: zero-initialised Adapter and LoRA leave the ViT's output unchanged
 * bit for bit; LoRA and Prefix (with its attention-mass compensation) match PyTorch
 * transcriptions of gqk/LAE (tests/golden/lae/make_lae.py) in output and every gradient, on
 * the CPU and (when a driver exists) on lavapipe; the offline PETs are a copy of the online
 * ones at the start of task 2 and then follow off = 0.9999 off + 0.0001 on after every step,
 * untouched by the optimiser; the freeze keeps the online PETs fixed while the head trains;
 * the ensemble rule on hand-made logits. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"
#include "lae.h"
#include "pet.h"
#include "pk_test.h"

static pkt_rng g_rng;

static void setup(void) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    g_rng.s = seed;
    fprintf(stderr, "test_lae: seed %llu\n", (unsigned long long)seed);
}

static vit_config tiny_cfg(int depth) {
    vit_config cfg;
    ck_assert_int_eq(vit_config_by_name("vit_pico_patch7_28", &cfg), PK_OK);
    cfg.in_chans = 1, cfg.depth = depth, cfg.dim = 16, cfg.heads = 2, cfg.mlp_hidden = 32;
    return cfg;
}

static float *rand_buf(int64_t n, float lo, float hi) {
    float *x = malloc(sizeof(float) * (size_t)n);
    pkt_fill_uniform(&g_rng, x, n, lo, hi);
    return x;
}

/* ---- zero-initialised PETs change nothing ---- */

static void check_identity(pet_kind kind) {
    pk_ctx *c = pkt_ctx("cpu");
    vit_config cfg = tiny_cfg(3);
    pk_rng rng = {g_rng.s | 1};
    vit *m = NULL;
    ck_assert_int_eq(vit_create(c, &cfg, "", &rng, &m), PK_OK);
    /* random LayerNorm affine and biases too, so nothing is accidentally symmetric */
    int np;
    tensor *const *ps = vit_params(m, &np);
    for (int i = 0; i < np; i++) {
        float *v = rand_buf(tensor_numel(ps[i]), -0.5f, 0.5f);
        ck_assert_int_eq(tensor_upload(ps[i], v), PK_OK);
        free(v);
    }
    pet *p = NULL;
    pet_options po = {.kind = kind, .blocks = 2};
    ck_assert_int_eq(pet_create(c, &cfg, &po, "pet.", &rng, &p), PK_OK);
    ck_assert_int_eq(p->o.rank, 5);
    int64_t n = 3, numel = n * 28 * 28;
    float *x = rand_buf(numel, -1, 1);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *xt = pkt_const(c, PK_F32, 4, (int64_t[]){n, 1, 28, 28}, x);
    float *a = pkt_download(vit_forward_features(c, m, xt));
    tensor *h = vit_forward_features_hooked(c, m, xt, &p->hooks);
    ck_assert_msg(h != NULL, "%s", polyak_error());
    float *b = pkt_download(h);
    ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)(n * cfg.dim)) == 0,
                  "%s: a zero-initialised PET changed the features", pet_kind_name(kind));
    /* and a non-zero one does change them (the hook is live) */
    tensor *up = kind == PET_ADAPTER ? p->b[1].up_w : p->b[1].b_v;
    /* random, not constant: a constant adapter output shifts every feature alike, which the
     * next LayerNorm removes */
    float *uv = rand_buf(tensor_numel(up), -0.5f, 0.5f);
    ck_assert_int_eq(tensor_upload(up, uv), PK_OK);
    free(uv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    xt = pkt_const(c, PK_F32, 4, (int64_t[]){n, 1, 28, 28}, x);
    float *d = pkt_download(vit_forward_features_hooked(c, m, xt, &p->hooks));
    ck_assert_msg(pkt_nerr(d, a, n * cfg.dim) > 1e-3, "%s: the hook has no effect (%g)",
                  pet_kind_name(kind), pkt_nerr(d, a, n * cfg.dim));
    free(a), free(b), free(d), free(x);
    pet_destroy(p);
    vit_destroy(m);
    pkt_ctx_done(c);
}

START_TEST(test_zero_adapter_identity) { check_identity(PET_ADAPTER); }
END_TEST

START_TEST(test_zero_lora_identity) { check_identity(PET_LORA); }
END_TEST

/* ---- LoRA and Prefix against PyTorch ---- */

static tensor *gparam(pk_ctx *c, const pkt_golden *g, const char *p, const char *nm) {
    char k[64];
    snprintf(k, sizeof k, "%s.%s", p, nm);
    const pkt_array *a = pkt_golden_get(g, k);
    return pkt_param(c, a->ndim, a->shape, a->data);
}

static void expect(const pkt_golden *g, const char *p, const char *nm, const tensor *t,
                   const char *device, double tol) {
    char k[64];
    snprintf(k, sizeof k, "%s.%s", p, nm);
    const pkt_array *a = pkt_golden_get(g, k);
    ck_assert_msg(t != NULL, "%s %s: missing (%s)", device, k, polyak_error());
    ck_assert_int_eq(tensor_numel(t), a->numel);
    float *v = pkt_download(t);
    double e = pkt_nerr(v, a->data, a->numel);
    ck_assert_msg(e < tol, "%s %s: error %g against PyTorch", device, k, e);
    free(v);
}

static void check_lora_on(const char *device) {
    pkt_golden *g = pkt_golden_load("lae/lae.bin");
    pk_ctx *c = pkt_ctx(device);
    for (int i = 0; i < 2; i++) {
        char p[16];
        snprintf(p, sizeof p, "lora%d", i);
        char k[32];
        snprintf(k, sizeof k, "%s.cfg", p);
        const float *cfgv = pkt_golden_get(g, k)->data;
        int d = (int)cfgv[2], r = (int)cfgv[3];
        vit_config cfg = tiny_cfg(1);
        cfg.dim = d, cfg.heads = 1;
        pk_rng rng = {7};
        pet *pt = NULL;
        pet_options po = {.kind = PET_LORA, .blocks = 1, .rank = r};
        ck_assert_int_eq(pet_create(c, &cfg, &po, "t.", &rng, &pt), PK_OK);
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *h = gparam(c, g, p, "h"), *s = gparam(c, g, p, "s");
        snprintf(k, sizeof k, "%s.W", p);
        const pkt_array *W = pkt_golden_get(g, k);
        snprintf(k, sizeof k, "%s.b", p);
        const pkt_array *B = pkt_golden_get(g, k);
        tensor *w = pkt_const(c, PK_F32, 2, W->shape, W->data);
        tensor *b = pkt_const(c, PK_F32, 1, B->shape, B->data);
        pet_block *blk = &pt->b[0];
        blk->a_k = gparam(c, g, p, "Ak"), blk->b_k = gparam(c, g, p, "Bk");
        blk->a_v = gparam(c, g, p, "Av"), blk->b_v = gparam(c, g, p, "Bv");
        blk->scale_k = pk_slice(c, s, 0, 0, 1), blk->scale_v = pk_slice(c, s, 0, 1, 1);
        tensor *out = pt->hooks.qkv(c, pt->hooks.user, 0, h, pk_linear(c, h, w, b));
        expect(g, p, "out", out, device, 2e-6);
        snprintf(k, sizeof k, "%s.up", p);
        const pkt_array *up = pkt_golden_get(g, k);
        tensor *ut = pkt_const(c, PK_F32, up->ndim, up->shape, up->data);
        ck_assert_int_eq(autograd_backward_from(c, out, ut), PK_OK);
        expect(g, p, "grad_h", h->grad, device, 2e-6);
        expect(g, p, "grad_Ak", blk->a_k->grad, device, 2e-6);
        expect(g, p, "grad_Bk", blk->b_k->grad, device, 2e-6);
        expect(g, p, "grad_Av", blk->a_v->grad, device, 2e-6);
        expect(g, p, "grad_Bv", blk->b_v->grad, device, 2e-6);
        expect(g, p, "grad_s", s->grad, device, 2e-6);
        pet_destroy(pt);
    }
    pkt_ctx_done(c);
    pkt_golden_free(g);
}

static void check_prefix_on(const char *device) {
    pkt_golden *g = pkt_golden_load("lae/lae.bin");
    pk_ctx *c = pkt_ctx(device);
    for (int i = 0; i < 2; i++) {
        char p[16], k[32];
        snprintf(p, sizeof p, "prefix%d", i);
        snprintf(k, sizeof k, "%s.cfg", p);
        const float *cfgv = pkt_golden_get(g, k)->data;
        int d = (int)cfgv[2], heads = (int)cfgv[3], L = (int)cfgv[4];
        vit_config cfg = tiny_cfg(1);
        cfg.dim = d, cfg.heads = heads;
        pk_rng rng = {7};
        pet *pt = NULL;
        pet_options po = {.kind = PET_PREFIX, .blocks = 1, .length = L};
        ck_assert_int_eq(pet_create(c, &cfg, &po, "t.", &rng, &pt), PK_OK);
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *qkv = gparam(c, g, p, "qkv"), *s = gparam(c, g, p, "s");
        pet_block *blk = &pt->b[0];
        blk->key = gparam(c, g, p, "key"), blk->val = gparam(c, g, p, "val");
        blk->key_scale = pk_slice(c, s, 0, 0, 1), blk->val_scale = pk_slice(c, s, 0, 1, 1);
        float scale = 1.0f / sqrtf((float)(d / heads));
        tensor *out = pt->hooks.attention(c, pt->hooks.user, 0, qkv, heads, scale);
        expect(g, p, "out", out, device, 2e-6);
        snprintf(k, sizeof k, "%s.up", p);
        const pkt_array *up = pkt_golden_get(g, k);
        tensor *ut = pkt_const(c, PK_F32, up->ndim, up->shape, up->data);
        ck_assert_int_eq(autograd_backward_from(c, out, ut), PK_OK);
        expect(g, p, "grad_qkv", qkv->grad, device, 5e-6);
        expect(g, p, "grad_key", blk->key->grad, device, 5e-6);
        expect(g, p, "grad_val", blk->val->grad, device, 5e-6);
        expect(g, p, "grad_s", s->grad, device, 5e-6);
        pet_destroy(pt);
    }
    pkt_ctx_done(c);
    pkt_golden_free(g);
}

START_TEST(test_lora_golden) { check_lora_on("cpu"); }
END_TEST

START_TEST(test_prefix_golden) { check_prefix_on("cpu"); }
END_TEST

START_TEST(test_pets_golden_vulkan) {
    if (!pkt_have_vulkan()) return;
    check_lora_on("vk");
    check_prefix_on("vk");
}
END_TEST

/* ---- offline PETs, freeze ---- */

static tensor *state_tensor(run_tensor *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(ts[i].name, name) == 0) return ts[i].t;
    ck_abort_msg("no state tensor %s", name);
    return NULL;
}

static void lae_steps(cl_method *m, pk_ctx *c, int steps, int lo, int hi) {
    int64_t n = 4;
    for (int s = 0; s < steps; s++) {
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        float *x = rand_buf(n * 28 * 28, -1, 1);
        int32_t y[4];
        for (int i = 0; i < n; i++)
            y[i] = lo + (int)(pkt_uniform(&g_rng, 0, 1) * (float)(hi - lo)) % (hi - lo);
        tensor *xt = pkt_const(c, PK_F32, 4, (int64_t[]){n, 1, 28, 28}, x);
        tensor *yt = pkt_const(c, PK_I32, 1, (int64_t[]){n}, y);
        tensor *lt = NULL;
        ck_assert_msg(m->step(m, xt, yt, lo, hi, 1.0, &lt) == PK_OK, "%s", polyak_error());
        float loss = NAN;
        ck_assert_int_eq(tensor_download(lt, &loss), PK_OK);
        ck_assert(isfinite(loss));
        free(x);
    }
}

START_TEST(test_offline_follows_online) {
    pk_ctx *c = pkt_ctx("cpu");
    vit_config cfg = tiny_cfg(2);
    pk_rng rng = {g_rng.s | 1};
    vit *bb = NULL;
    ck_assert_int_eq(vit_create(c, &cfg, "", &rng, &bb), PK_OK);
    int np;
    tensor *const *ps = vit_params(bb, &np);
    ck_assert_int_le(np, 64);
    float *bb0[64];
    for (int i = 0; i < np; i++) {
        ps[i]->requires_grad = false;
        bb0[i] = pkt_download(ps[i]);
    }
    for (int kind = 0; kind < 3; kind++) {
        lae_options lo = {.mode = LAE_LAE, .pet = {.kind = (pet_kind)kind}, .freeze_epochs = 3};
        cl_method *m = NULL;
        ck_assert_int_eq(lae_method(&lo, &m), PK_OK);
        ck_assert_int_eq(m->nvariants, 3);
        /* a high rate so that the online PETs move visibly in a few steps */
        cl_setup su = {
            .c = c, .backbone = bb, .classes = 4, .batch = 4, .lr = 0.05, .epochs = 5, .seed = 3};
        ck_assert_int_eq(m->setup(m, &su), PK_OK);
        run_tensor ts[256];
        int n = m->state(m, ts, 256);
        /* the PET tensors (online) and their offline copies */
        tensor *on[64], *off[64];
        int k = 0;
        for (int i = 0; i < n; i++)
            if (strncmp(ts[i].name, "pet.", 4) == 0) {
                char nm[128];
                snprintf(nm, sizeof nm, "offline.%s", ts[i].name);
                on[k] = ts[i].t, off[k] = state_tensor(ts, n, nm), k++;
            }
        ck_assert_int_eq(k, kind == PET_ADAPTER ? 2 * 5 : kind == PET_LORA ? 2 * 6 : 2 * 4);
        tensor *head = state_tensor(ts, n, "head.weight");
        ck_assert_int_eq(m->task_begin(m, 0, 0, 2), PK_OK);
        ck_assert_int_eq(m->epoch_begin(m, 0, 0), PK_OK);
        lae_steps(m, c, 3, 0, 2);
        /* task 2 starts: offline = online exactly */
        ck_assert_int_eq(m->task_begin(m, 1, 2, 4), PK_OK);
        for (int i = 0; i < k; i++) {
            float *a = pkt_download(on[i]), *b = pkt_download(off[i]);
            ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)tensor_numel(on[i])) == 0,
                          "offline %s is not a copy at the start of task 2", on[i]->name);
            free(a), free(b);
        }
        /* epoch 1 of task 2 is frozen: online PETs unchanged, the head moves */
        ck_assert_int_eq(m->epoch_begin(m, 1, 0), PK_OK);
        float *on0[64], *off0[64];
        for (int i = 0; i < k; i++)
            on0[i] = pkt_download(on[i]), off0[i] = pkt_download(off[i]);
        float *h0 = pkt_download(head);
        lae_steps(m, c, 1, 2, 4);
        float *h1 = pkt_download(head);
        ck_assert_msg(pkt_nerr(h1, h0, tensor_numel(head)) > 0, "the head did not train");
        for (int i = 0; i < k; i++) {
            float *a = pkt_download(on[i]);
            ck_assert_msg(memcmp(a, on0[i], sizeof(float) * (size_t)tensor_numel(on[i])) == 0,
                          "online %s moved during the freeze", on[i]->name);
            free(a);
        }
        free(h0), free(h1);
        for (int i = 0; i < k; i++)
            free(on0[i]), free(off0[i]);
        /* epoch 4 (after the freeze): every step, off = 0.9999 off + 0.0001 on (new on) */
        ck_assert_int_eq(m->epoch_begin(m, 1, 3), PK_OK);
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < k; i++)
                on0[i] = pkt_download(on[i]), off0[i] = pkt_download(off[i]);
            lae_steps(m, c, 1, 2, 4);
            double moved = 0;
            for (int i = 0; i < k; i++) {
                int64_t ne = tensor_numel(on[i]);
                float *a = pkt_download(on[i]), *b = pkt_download(off[i]);
                for (int64_t j = 0; j < ne; j++) {
                    double want = 0.9999 * (double)off0[i][j] + 0.0001 * (double)a[j];
                    ck_assert_msg(fabs(b[j] - want) <= 1e-6 * (fabs(want) + 1e-3),
                                  "offline %s[%lld] = %.9g, expected %.9g", on[i]->name,
                                  (long long)j, b[j], want);
                    moved += fabs((double)a[j] - on0[i][j]);
                }
                free(a), free(b), free(on0[i]), free(off0[i]);
            }
            ck_assert_msg(moved > 0, "the online PETs did not train after the freeze");
        }
        m->destroy(m);
    }
    /* the backbone stays frozen: not one bit of it moved */
    for (int i = 0; i < np; i++) {
        float *v = pkt_download(ps[i]);
        ck_assert_msg(memcmp(v, bb0[i], sizeof(float) * (size_t)tensor_numel(ps[i])) == 0,
                      "backbone tensor %s changed", ps[i]->name);
        free(v), free(bb0[i]);
    }
    vit_destroy(bb);
    pkt_ctx_done(c);
}
END_TEST

/* ---- the ensemble rule ---- */

START_TEST(test_ensemble_rule) {
    /* 3 samples, 3 classes. Row 0: online confident in class 0 (p ~ 0.84), offline mildly in 2
     * (p ~ 0.51): ensemble picks 0. Row 1: online mild in 1 (~0.42), offline confident in 2
     * (~0.98): ensemble picks 2, online alone 1. Row 2: equal logits online, offline confident
     * in 1. */
    float on[9] = {2, 0, 0.3f, 0.1f, 0.4f, 0.2f, 1, 1, 1};
    float off[9] = {0, 0.2f, 0.7f, 0, 0, 5, -1, 3, 0};
    float sc[27];
    lae_ensemble_scores(on, off, 3, 3, sc);
    int want_ens[3] = {0, 2, 1}, want_on[3] = {0, 1, 0}, want_off[3] = {2, 2, 1};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(cl_argmax(sc + i * 3, 0, 3), want_ens[i]);
        ck_assert_int_eq(cl_argmax(sc + 9 + i * 3, 0, 3), want_on[i]);
        ck_assert_int_eq(cl_argmax(sc + 18 + i * 3, 0, 3), want_off[i]);
        double s_on = 0, s_off = 0;
        for (int k = 0; k < 3; k++) {
            s_on += sc[9 + i * 3 + k], s_off += sc[18 + i * 3 + k];
            float e = sc[i * 3 + k], a = sc[9 + i * 3 + k], b = sc[18 + i * 3 + k];
            ck_assert(e == (a > b ? a : b));
        }
        ck_assert(fabs(s_on - 1) < 1e-6 && fabs(s_off - 1) < 1e-6);
    }
    /* the hand-computed probability of row 1's offline class 2: e^5 / (2 + e^5) */
    ck_assert(fabs(sc[18 + 3 + 2] - exp(5.0) / (2 + exp(5.0))) < 1e-6);
}
END_TEST

int main(void) {
    Suite *s = suite_create("lae");
    TCase *tc = tcase_create("lae");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_zero_adapter_identity);
    tcase_add_test(tc, test_zero_lora_identity);
    tcase_add_test(tc, test_lora_golden);
    tcase_add_test(tc, test_prefix_golden);
    tcase_add_test(tc, test_pets_golden_vulkan);
    tcase_add_test(tc, test_offline_follows_online);
    tcase_add_test(tc, test_ensemble_rule);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
