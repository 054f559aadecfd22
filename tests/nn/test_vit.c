/* test_vit.c - the ViT (framework/nn/vit.c) and its files (tasks/common/backbone.c): forward
 * of random-weight timm checkpoints against the PyTorch transcription in
 * tests/golden/gold_vit.py (two configurations; pos_embed resampled at forward time and at load
 * time, antialiased as timm's loader), the bicubic matrix against F.interpolate, gradients against
 * finite differences, Vulkan against the CPU (forward and every parameter's gradient),
 * backbone_load's errors (missing, unexpected, misshaped, each named; --partial skips), save ->
 * load bit-exact and the configuration read back from the metadata; the intermediate-layer
 * outputs and DINO's linear-probe feature against full forwards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backbone.h"
#include "pk_test.h"
#include "safetensors.h"

#define GOLD_BIN "ops/vit.bin"
#define NANO_FILE POLYAK_GOLDEN_DIR "/vit/vit_nano28.safetensors"
#define TINY_FILE POLYAK_GOLDEN_DIR "/vit/vit_tiny16.safetensors"

/* The golden configurations (gold_vit.py): vit_nano_patch4_28's layout on 1 channel narrowed
 * to D 64, MLP 256, depth 2, and a vit_tiny_patch16 variant (D 48, 3 heads, depth 2) laid out
 * for 48x48. */
static vit_config nano_cfg(void) {
    vit_config g;
    ck_assert_int_eq(vit_config_by_name("vit_nano_patch4_28", &g), PK_OK);
    ck_assert_int_eq(g.heads, 4);
    g.in_chans = 1;
    g.dim = 64;
    g.mlp_hidden = 256;
    g.depth = 2;
    return g;
}

static vit_config tiny_cfg(int img) {
    vit_config g;
    ck_assert_int_eq(vit_config_by_name("vit_tiny_patch16_224", &g), PK_OK);
    g.img_size = img;
    g.dim = 48;
    g.heads = 3;
    g.depth = 2;
    g.mlp_hidden = 192;
    return g;
}

static vit *make_vit(pk_ctx *c, const vit_config *g, const char *prefix, uint64_t seed) {
    pk_rng rng = {seed};
    vit *m = NULL;
    pk_status s = vit_create(c, g, prefix, &rng, &m);
    ck_assert_msg(s == PK_OK, "vit_create: %s", polyak_error());
    return m;
}

/* max |a - b| / max |b| */
static double max_rel(const float *a, const float *b, int64_t n) {
    double e = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > e || isnan(d)) e = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
    }
    return e / (m > 0 ? m : 1e-30);
}

/* Runs the forward on the golden input of `prefix` and compares tokens and features. */
static void check_forward(pk_ctx *c, const vit *m, const pkt_golden *g, const char *prefix,
                          const char *input, double tol) {
    char name[96];
    snprintf(name, sizeof name, "%s.in0", input ? input : prefix);
    const pkt_array *x = pkt_golden_get(g, name);
    snprintf(name, sizeof name, "%s.out", prefix);
    const pkt_array *ref = pkt_golden_get(g, name);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *xt = pkt_const(c, PK_F32, x->ndim, x->shape, x->data);
    tensor *tok = vit_forward_tokens(c, m, xt);
    ck_assert_msg(tok != NULL, "%s forward: %s", prefix, polyak_error());
    ck_assert_int_eq(tensor_numel(tok), ref->numel);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(tok->shape[i], ref->shape[i]);
    float *t = pkt_download(tok);
    double e = max_rel(t, ref->data, ref->numel);
    ck_assert_msg(e <= tol, "%s tokens: max rel error %.3g > %.1g", prefix, e, tol);
    /* features: row 0 of the reference tokens */
    tensor *f = vit_forward_features(c, m, xt);
    ck_assert_msg(f != NULL, "%s features: %s", prefix, polyak_error());
    int64_t N = ref->shape[0], T = ref->shape[1], D = ref->shape[2];
    ck_assert_int_eq(f->ndim, 2);
    ck_assert_int_eq(f->shape[0], N);
    ck_assert_int_eq(f->shape[1], D);
    float *fh = pkt_download(f), *fr = malloc(sizeof(float) * (size_t)(N * D));
    for (int64_t n = 0; n < N; n++)
        memcpy(fr + n * D, ref->data + n * T * D, sizeof(float) * D);
    e = max_rel(fh, fr, N * D);
    ck_assert_msg(e <= tol, "%s features: max rel error %.3g > %.1g", prefix, e, tol);
    free(t);
    free(fh);
    free(fr);
}

static void load_ok(pk_ctx *c, vit *m, const char *path, const char *const *skip, int nskip) {
    pk_status s = backbone_load(c, m, path, skip, nskip);
    ck_assert_msg(s == PK_OK, "backbone_load %s: %s", path, polyak_error());
}

/* ---- forward against PyTorch ---- */

static void golden_forward(const char *dev) {
    pk_ctx *c = pkt_ctx(dev);
    pkt_golden *g = pkt_golden_load(GOLD_BIN);
    vit_config nc = nano_cfg();
    vit *nano = make_vit(c, &nc, "", 1);
    load_ok(c, nano, NANO_FILE, NULL, 0);
    check_forward(c, nano, g, "vit_nano28_tokens", NULL, 1e-5);
    /* laid out for 48x48, run at 64x64: pos_embed resampled in the forward */
    vit_config tc = tiny_cfg(48);
    vit *tiny = make_vit(c, &tc, "backbone", 2);
    load_ok(c, tiny, TINY_FILE, NULL, 0);
    check_forward(c, tiny, g, "vit_tiny16_tokens", NULL, 1e-5);
    /* configured for 64x64: pos_embed resampled by backbone_load as timm's loader does */
    vit_config tc64 = tiny_cfg(64);
    vit *tiny64 = make_vit(c, &tc64, "", 3);
    load_ok(c, tiny64, TINY_FILE, NULL, 0);
    ck_assert_int_eq(tiny64->pos_embed->shape[1], 17);
    const pkt_array *pos_ref = pkt_golden_get(g, "vit_tiny16_pos_load.out");
    ck_assert_int_eq(pos_ref->numel, 17 * 48);
    float *pos = pkt_download(tiny64->pos_embed);
    double e = max_rel(pos, pos_ref->data, pos_ref->numel);
    ck_assert_msg(e <= 1e-5, "pos_embed resampled on load: max rel error %.3g", e);
    free(pos);
    check_forward(c, tiny64, g, "vit_tiny16_load_tokens", "vit_tiny16_tokens", 1e-5);
    vit_destroy(nano);
    vit_destroy(tiny);
    vit_destroy(tiny64);
    pkt_golden_free(g);
    pkt_ctx_done(c);
}

START_TEST(cpu_golden_forward) { golden_forward("cpu"); }
END_TEST

START_TEST(vk_golden_forward) { golden_forward("vk"); }
END_TEST

/* ---- bicubic matrix against F.interpolate (values and input gradients) ---- */

START_TEST(bicubic_matrix) {
    pkt_golden *g = pkt_golden_load(GOLD_BIN);
    int cases = 0;
    for (int a = 0; a < g->count; a++) {
        int ih, iw, oh, ow;
        char tail[16];
        if (sscanf(g->arrays[a].name, "bicubic_%dx%d_%dx%d.%15s", &ih, &iw, &oh, &ow, tail) != 5 ||
            strcmp(tail, "in0") != 0)
            continue;
        char name[96], pre[64];
        snprintf(pre, sizeof pre, "bicubic_%dx%d_%dx%d", ih, iw, oh, ow);
        const float *x = g->arrays[a].data;
        snprintf(name, sizeof name, "%s.out", pre);
        const pkt_array *out = pkt_golden_get(g, name);
        snprintf(name, sizeof name, "%s.up", pre);
        const pkt_array *up = pkt_golden_get(g, name);
        snprintf(name, sizeof name, "%s.grad0", pre);
        const pkt_array *gr = pkt_golden_get(g, name);
        float *m = vit_bicubic_matrix(ih, iw, oh, ow);
        ck_assert_ptr_nonnull(m);
        int rows = oh * ow, cols = ih * iw;
        float *y = malloc(sizeof(float) * rows), *gx = calloc((size_t)cols, sizeof(float));
        for (int r = 0; r < rows; r++) {
            double s = 0.0;
            for (int k = 0; k < cols; k++)
                s += (double)m[r * cols + k] * x[k];
            y[r] = (float)s;
        }
        for (int k = 0; k < cols; k++) {
            double s = 0.0;
            for (int r = 0; r < rows; r++)
                s += (double)m[r * cols + k] * up->data[r];
            gx[k] = (float)s;
        }
        double e = max_rel(y, out->data, rows), eg = max_rel(gx, gr->data, cols);
        ck_assert_msg(e <= 2e-6, "%s: values max rel error %.3g", pre, e);
        ck_assert_msg(eg <= 2e-6, "%s: gradient max rel error %.3g", pre, eg);
        free(m);
        free(y);
        free(gx);
        cases++;
    }
    ck_assert_int_ge(cases, 7);
    ck_assert_ptr_null(vit_bicubic_matrix(0, 3, 3, 3));
    pkt_golden_free(g);
}
END_TEST

/* ---- gradients ---- */

/* A tiny ViT (2 channels, 8x8 layout, run at 12x12 so pos_embed is resampled). */
static vit_config micro_cfg(void) {
    vit_config g;
    ck_assert_int_eq(vit_config_by_name("vit_nano_patch4_28", &g), PK_OK);
    snprintf(g.name, sizeof g.name, "micro");
    g.img_size = 8;
    g.patch = 4;
    g.in_chans = 2;
    g.dim = 8;
    g.heads = 2;
    g.depth = 2;
    g.mlp_hidden = 16;
    g.num_classes = 3;
    return g;
}

/* Widens the parameters (timm's init is too small for differences to show). */
static void randomise(vit *m, uint64_t seed) {
    int np = 0;
    tensor *const *p = vit_params(m, &np);
    pkt_rng r = {seed};
    for (int i = 0; i < np; i++) {
        int64_t n = tensor_numel(p[i]);
        float *h = malloc(sizeof(float) * (size_t)n);
        pkt_fill_uniform(&r, h, n, -0.6f, 0.6f);
        if (strstr(p[i]->name, "norm") && strstr(p[i]->name, "weight"))
            for (int64_t k = 0; k < n; k++)
                h[k] += 1.0f;
        ck_assert_int_eq(tensor_upload(p[i], h), PK_OK);
        free(h);
    }
}

#define MICRO_X (2 * 2 * 12 * 12)

/* sum(tokens * up) + sum(logits * up2) in double, on the host. */
static double micro_loss(pk_ctx *c, const vit *m, const float *x, const float *up, const float *up2,
                         bool backward) {
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *xt = pkt_const(c, PK_F32, 4, (int64_t[]){2, 2, 12, 12}, x);
    tensor *tok = vit_forward_tokens(c, m, xt); // (2, 10, 8)
    tensor *logit = vit_forward(c, m, xt);      // (2, 3)
    tensor *u1 = pkt_const(c, PK_F32, 3, (int64_t[]){2, 10, 8}, up);
    tensor *u2 = pkt_const(c, PK_F32, 2, (int64_t[]){2, 3}, up2);
    tensor *loss =
        pk_add(c, pk_sum_all(c, pk_mul(c, tok, u1)), pk_sum_all(c, pk_mul(c, logit, u2)));
    ck_assert_msg(loss != NULL, "micro forward: %s", polyak_error());
    float *t = pkt_download(tok), *l = pkt_download(logit);
    double s = 0.0;
    for (int i = 0; i < 160; i++)
        s += (double)t[i] * up[i];
    for (int i = 0; i < 6; i++)
        s += (double)l[i] * up2[i];
    free(t);
    free(l);
    if (backward) {
        int np = 0;
        tensor *const *p = vit_params(m, &np);
        for (int i = 0; i < np; i++)
            ck_assert_int_eq(pk_grad_zero(c, p[i]), PK_OK);
        ck_assert_msg(autograd_backward(c, loss) == PK_OK, "backward: %s", polyak_error());
    }
    return s;
}

static void micro_inputs(float *x, float *up, float *up2) {
    pkt_rng r = {11};
    pkt_fill_uniform(&r, x, MICRO_X, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up, 160, -1.0f, 1.0f);
    pkt_fill_uniform(&r, up2, 6, -1.0f, 1.0f);
}

START_TEST(cpu_gradients_fd) {
    pk_ctx *c = pkt_ctx("cpu");
    vit_config g = micro_cfg();
    vit *m = make_vit(c, &g, "", 5);
    randomise(m, 6);
    static float x[MICRO_X], up[160], up2[6];
    micro_inputs(x, up, up2);
    micro_loss(c, m, x, up, up2, true);
    tensor *targets[] = {m->pos_embed,       m->cls_token,   m->blocks[0].qkv.w, m->patch_embed.w,
                         m->blocks[1].fc1.w, m->norm.weight, m->head.w};
    pkt_rng r = {13};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        tensor *p = targets[t];
        int64_t n = tensor_numel(p);
        float *grad = pkt_download(p->grad), *w = pkt_download(p);
        for (int s = 0; s < 6; s++) {
            int64_t i = (int64_t)(pkt_uniform(&r, 0.0f, 1.0f) * (float)n) % n;
            float w0 = w[i];
            const float h = 1e-2f;
            w[i] = w0 + h;
            ck_assert_int_eq(tensor_upload(p, w), PK_OK);
            double lp = micro_loss(c, m, x, up, up2, false);
            w[i] = w0 - h;
            ck_assert_int_eq(tensor_upload(p, w), PK_OK);
            double lm = micro_loss(c, m, x, up, up2, false);
            w[i] = w0;
            ck_assert_int_eq(tensor_upload(p, w), PK_OK);
            double fd = (lp - lm) / (2.0 * h);
            double err = fabs(fd - grad[i]) / fmax(1.0, fabs(fd));
            ck_assert_msg(err < 2e-2, "%s[%lld]: analytic %.6g vs finite difference %.6g", p->name,
                          (long long)i, (double)grad[i], fd);
        }
        free(grad);
        free(w);
    }
    vit_destroy(m);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(vk_gradients_vs_cpu) {
    pk_ctx *cpu = pkt_ctx("cpu"), *vk = pkt_ctx("vk");
    vit_config g = micro_cfg();
    vit *mc = make_vit(cpu, &g, "", 5), *mv = make_vit(vk, &g, "", 5);
    randomise(mc, 6);
    randomise(mv, 6);
    static float x[MICRO_X], up[160], up2[6];
    micro_inputs(x, up, up2);
    double lc = micro_loss(cpu, mc, x, up, up2, true);
    double lv = micro_loss(vk, mv, x, up, up2, true);
    ck_assert_msg(fabs(lc - lv) <= 1e-4 * fmax(1.0, fabs(lc)), "loss cpu %.8g vk %.8g", lc, lv);
    int np = 0, nv = 0;
    tensor *const *pc = vit_params(mc, &np);
    tensor *const *pv = vit_params(mv, &nv);
    ck_assert_int_eq(np, nv);
    ck_assert_int_eq(np, 4 + 12 * 2 + 2 + 2);
    for (int i = 0; i < np; i++) {
        ck_assert_str_eq(pc[i]->name, pv[i]->name);
        int64_t n = tensor_numel(pc[i]);
        float *a = pkt_download(pc[i]->grad), *b = pkt_download(pv[i]->grad);
        double e = pkt_nerr(b, a, n);
        ck_assert_msg(e < 1e-4, "%s gradient: vk vs cpu normalised error %.3g", pc[i]->name, e);
        free(a);
        free(b);
    }
    vit_destroy(mc);
    vit_destroy(mv);
    pkt_ctx_done(vk);
    pkt_ctx_done(cpu);
}
END_TEST

/* ---- files ---- */

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/pk_test_vit_%d_%s.safetensors", (int)getpid(), tag);
}

static void expect_load_error(pk_ctx *c, vit *m, const char *path, const char *const *skip,
                              int nskip, const char *const *needles, int nn) {
    /* nothing is loaded on error: the parameters keep their values */
    float *before = pkt_download(m->pos_embed);
    pk_status s = backbone_load(c, m, path, skip, nskip);
    ck_assert_msg(s != PK_OK, "loading %s into %s should fail", path, m->cfg.name);
    const char *msg = polyak_error();
    for (int i = 0; i < nn; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "message lacks '%s': %s", needles[i], msg);
    float *after = pkt_download(m->pos_embed);
    ck_assert_int_eq(memcmp(before, after, sizeof(float) * (size_t)tensor_numel(m->pos_embed)), 0);
    free(before);
    free(after);
}

START_TEST(load_errors) {
    pk_ctx *c = pkt_ctx("cpu");
    /* missing: the depth-2 golden into a 6-block model */
    vit_config full = nano_cfg();
    full.depth = 6;
    vit *m6 = make_vit(c, &full, "", 1);
    expect_load_error(c, m6, NANO_FILE, NULL, 0,
                      (const char *const[]){"missing (48): blocks.2.norm1.weight",
                                            "blocks.3.attn.qkv.bias", "blocks.5.mlp.fc2.bias",
                                            "48 tensors"},
                      4);
    /* not a backbone at all (a features file): said so, with what the file holds */
    char fpath[256];
    tmp_path(fpath, sizeof fpath, "features");
    float fdata[6] = {1, 2, 3, 4, 5, 6};
    int64_t fshape[2] = {2, 3};
    st_write_tensor ft = {
        .name = "features", .dtype = ST_F32, .ndim = 2, .shape = fshape, .data = fdata};
    ck_assert_int_eq(safetensors_write(fpath, &ft, 1, NULL, NULL, 0), PK_OK);
    expect_load_error(
        c, m6, fpath, NULL, 0,
        (const char *const[]){"not a timm-layout ViT backbone", "it holds (1): features (2, 3)"},
        2);
    unlink(fpath);
    /* misshaped: an MLP of 128 against the file's 256, expected and found shapes named */
    vit_config narrow = nano_cfg();
    narrow.mlp_hidden = 128;
    vit *mn = make_vit(c, &narrow, "student", 1);
    expect_load_error(c, mn, NANO_FILE, NULL, 0,
                      (const char *const[]){"blocks.0.mlp.fc1.weight expected (128, 64), found "
                                            "(256, 64)",
                                            "blocks.0.mlp.fc1.bias expected (128,), found (256,)",
                                            "blocks.0.mlp.fc2.weight expected (64, 128), found "
                                            "(64, 256)"},
                      3);
    /* ... and loads with those skipped, keeping their own values */
    float *fc1 = pkt_download(mn->blocks[0].fc1.w);
    const char *skip_mlp[] = {"blocks.0.mlp.fc", "blocks.1.mlp.fc"};
    expect_load_error(c, mn, NANO_FILE, skip_mlp, 1,
                      (const char *const[]){"misshaped (3): blocks.1.mlp.fc1.weight"}, 1);
    load_ok(c, mn, NANO_FILE, skip_mlp, 2);
    float *fc1b = pkt_download(mn->blocks[0].fc1.w);
    ck_assert_int_eq(memcmp(fc1, fc1b, sizeof(float) * 128 * 64), 0);
    free(fc1);
    free(fc1b);
    /* unexpected: a checkpoint with a 10-class head into a headless model */
    vit_config headed = nano_cfg();
    headed.num_classes = 10;
    vit *mh = make_vit(c, &headed, "", 4);
    char path[256];
    tmp_path(path, sizeof path, "head");
    ck_assert_msg(backbone_save(mh, path, NULL) == PK_OK, "save: %s", polyak_error());
    vit_config plain = nano_cfg();
    vit *mp = make_vit(c, &plain, "", 5);
    expect_load_error(c, mp, path, NULL, 0,
                      (const char *const[]){"unexpected (2): head.weight (10, 64)",
                                            "head.bias (10,)", "2 tensors"},
                      3);
    const char *skip_head[] = {"head."};
    load_ok(c, mp, path, skip_head, 1);
    /* a head of another class count: misshaped unless skipped */
    vit_config five = nano_cfg();
    five.num_classes = 5;
    vit *m5 = make_vit(c, &five, "", 6);
    expect_load_error(c, m5, path, NULL, 0,
                      (const char *const[]){"head.weight expected (5, 64), found (10, 64)",
                                            "head.bias expected (5,), found (10,)"},
                      2);
    float *h5 = pkt_download(m5->head.w);
    load_ok(c, m5, path, skip_head, 1);
    float *h5b = pkt_download(m5->head.w), *pos = pkt_download(m5->pos_embed),
          *posh = pkt_download(mh->pos_embed);
    ck_assert_int_eq(memcmp(h5, h5b, sizeof(float) * 5 * 64), 0);
    ck_assert_int_eq(memcmp(pos, posh, sizeof(float) * 50 * 64), 0);
    free(h5);
    free(h5b);
    free(pos);
    free(posh);
    /* another file entirely: not a safetensors file */
    ck_assert_int_ne(backbone_load(c, mp, POLYAK_GOLDEN_DIR "/" GOLD_BIN, NULL, 0), PK_OK);
    unlink(path);
    vit_destroy(m6);
    vit_destroy(mn);
    vit_destroy(mh);
    vit_destroy(mp);
    vit_destroy(m5);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(save_load_roundtrip) {
    pk_ctx *c = pkt_ctx("cpu");
    vit_config g = micro_cfg();
    vit *a = make_vit(c, &g, "student", 21);
    randomise(a, 22);
    char path[256];
    tmp_path(path, sizeof path, "roundtrip");
    backbone_norm nm = {.present = true, .mean = {0.25f, 0.5f, 0.75f}, .std = {0.1f, 0.2f, 0.3f}};
    ck_assert_msg(backbone_save(a, path, &nm) == PK_OK, "save: %s", polyak_error());
    /* the file has timm names (no prefix) and the metadata names the configuration */
    st_file f;
    ck_assert_int_eq(safetensors_open(path, &f), PK_OK);
    ck_assert_ptr_nonnull(safetensors_find(&f, "cls_token"));
    ck_assert_ptr_nonnull(safetensors_find(&f, "blocks.1.attn.qkv.weight"));
    ck_assert_ptr_null(safetensors_find(&f, "student.cls_token"));
    ck_assert_str_eq(f.tensors[0].name, "cls_token");
    ck_assert_str_eq(safetensors_meta(&f, "arch"), "micro");
    ck_assert_str_eq(safetensors_meta(&f, "format"), "pt");
    safetensors_close(&f);
    vit_config back;
    backbone_norm nb;
    ck_assert_msg(backbone_config(path, NULL, &back, &nb) == PK_OK, "%s", polyak_error());
    ck_assert_str_eq(back.name, "micro");
    ck_assert_int_eq(back.img_size, 8);
    ck_assert_int_eq(back.patch, 4);
    ck_assert_int_eq(back.in_chans, 2);
    ck_assert_int_eq(back.dim, 8);
    ck_assert_int_eq(back.heads, 2);
    ck_assert_int_eq(back.depth, 2);
    ck_assert_int_eq(back.mlp_hidden, 16);
    ck_assert_int_eq(back.num_classes, 3);
    ck_assert(back.ln_eps == g.ln_eps);
    ck_assert(nb.present);
    ck_assert(nb.mean[1] == 0.5f && nb.std[2] == 0.3f);
    vit_config inf;
    ck_assert_int_eq(backbone_infer_config(path, &inf), PK_OK);
    ck_assert_int_eq(inf.depth, 2);
    ck_assert_int_eq(inf.img_size, 8);
    ck_assert_int_eq(inf.num_classes, 3);
    /* load into a fresh model (other prefix, other init): every parameter bit-exact */
    vit *b = make_vit(c, &back, "", 99);
    load_ok(c, b, path, NULL, 0);
    int na = 0, nb2 = 0;
    tensor *const *pa = vit_params(a, &na);
    tensor *const *pb = vit_params(b, &nb2);
    ck_assert_int_eq(na, nb2);
    for (int i = 0; i < na; i++) {
        int64_t n = tensor_numel(pa[i]);
        float *x = pkt_download(pa[i]), *y = pkt_download(pb[i]);
        ck_assert_msg(memcmp(x, y, sizeof(float) * (size_t)n) == 0, "%s differs", pb[i]->name);
        free(x);
        free(y);
    }
    /* no metadata and no --arch: an error that says what to pass */
    float one = 1.0f;
    st_write_tensor wt = {
        .name = "cls_token", .dtype = ST_F32, .ndim = 1, .shape = (int64_t[]){1}, .data = &one};
    ck_assert_int_eq(safetensors_write(path, &wt, 1, NULL, NULL, 0), PK_OK);
    ck_assert_int_ne(backbone_config(path, NULL, &back, NULL), PK_OK);
    ck_assert(strstr(polyak_error(), "pass --arch") != NULL);
    unlink(path);
    vit_destroy(a);
    vit_destroy(b);
    pkt_ctx_done(c);
}
END_TEST

/* ---- intermediate layers (DINO's get_intermediate_layers and eval_linear's feature) ---- */

/* The golden nano checkpoint (depth 2, checked against PyTorch above): the last block's
 * intermediate output is the full forward's tokens; block 0's is the full forward of a depth-1
 * copy holding the same cls/pos/patch/block-0/norm values; the probe feature is their class
 * rows in block order and the mean of the last block's patch rows; errors for bad n. */
static void intermediate_on(const char *dev) {
    pk_ctx *c = pkt_ctx(dev);
    vit_config nc = nano_cfg(), n1 = nano_cfg();
    n1.depth = 1;
    vit *m = make_vit(c, &nc, "", 1), *m1 = make_vit(c, &n1, "one", 2);
    load_ok(c, m, NANO_FILE, NULL, 0);
    int np = 0, np1 = 0;
    tensor *const *p = vit_params(m, &np);
    tensor *const *p1 = vit_params(m1, &np1);
    for (int i = 0; i < np1; i++) { /* copy by timm name: "one.<name>" <- "<name>" */
        const char *want = p1[i]->name + 4;
        int j = 0;
        while (j < np && strcmp(p[j]->name, want) != 0)
            j++;
        ck_assert_msg(j < np, "no %s in the depth-2 model", want);
        float *v = pkt_download(p[j]);
        ck_assert_int_eq(tensor_upload(p1[i], v), PK_OK);
        free(v);
    }
    pkt_rng r = {0x1A7E};
    int64_t N = 3, T = 1 + 49, D = nc.dim;
    float *xh = malloc(sizeof(float) * (size_t)(N * 28 * 28));
    pkt_fill_uniform(&r, xh, N * 28 * 28, -1.0f, 1.0f);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = pkt_const(c, PK_F32, 4, (int64_t[]){N, 1, 28, 28}, xh);
    tensor *outs[2] = {NULL, NULL};
    ck_assert_msg(vit_forward_intermediate(c, m, x, 2, outs) == PK_OK, "%s", polyak_error());
    float *o0 = pkt_download(outs[0]), *o1 = pkt_download(outs[1]);
    float *full = pkt_download(vit_forward_tokens(c, m, x));
    float *one = pkt_download(vit_forward_tokens(c, m1, x));
    ck_assert_int_eq(outs[0]->shape[1], T);
    ck_assert_msg(max_rel(o1, full, N * T * D) == 0.0, "last block != full forward");
    double e = max_rel(o0, one, N * T * D);
    ck_assert_msg(e <= 1e-6, "block 0 vs depth-1 forward: max rel error %.3g", e);
    /* the probe feature: (N, 2 D + D) */
    tensor *f = vit_forward_probe_features(c, m, x, 2, true);
    ck_assert_msg(f != NULL, "%s", polyak_error());
    ck_assert_int_eq(f->ndim, 2);
    ck_assert_int_eq(f->shape[0], N);
    ck_assert_int_eq(f->shape[1], 3 * D);
    float *fh = pkt_download(f), *ref = malloc(sizeof(float) * (size_t)(N * 3 * D));
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < D; j++) {
            ref[n * 3 * D + j] = one[n * T * D + j];
            ref[n * 3 * D + D + j] = full[n * T * D + j];
            double sum = 0;
            for (int64_t t = 1; t < T; t++)
                sum += full[(n * T + t) * D + j];
            ref[n * 3 * D + 2 * D + j] = (float)(sum / (double)(T - 1));
        }
    e = max_rel(fh, ref, N * 3 * D);
    ck_assert_msg(e <= 1e-5, "probe feature: max rel error %.3g", e);
    /* n = 1 without avgpool is the class-token feature */
    float *f1 = pkt_download(vit_forward_probe_features(c, m, x, 1, false));
    float *cls = pkt_download(vit_forward_features(c, m, x));
    ck_assert_msg(max_rel(f1, cls, N * D) == 0.0, "1-block feature != vit_forward_features");
    ck_assert_int_ne(vit_forward_intermediate(c, m, x, 3, outs), PK_OK);
    ck_assert(strstr(polyak_error(), "3 last blocks requested of 2") != NULL);
    ck_assert_ptr_null(vit_forward_probe_features(c, m, x, 0, false));
    free(xh), free(o0), free(o1), free(full), free(one), free(fh), free(ref), free(f1), free(cls);
    vit_destroy(m);
    vit_destroy(m1);
    pkt_ctx_done(c);
}

START_TEST(cpu_intermediate_layers) { intermediate_on("cpu"); }
END_TEST

START_TEST(vk_intermediate_layers) { intermediate_on("vk"); }
END_TEST

START_TEST(configs) {
    const char *names[] = {"vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
                           "vit_nano_patch4_28",   "vit_tiny_patch4_28",    "vit_nano_patch4_32",
                           "vit_tiny_patch4_32",   "vit_pico_patch7_28"};
    const int dims[] = {192, 384, 768, 128, 192, 128, 192, 64}, heads[] = {3, 6, 12, 4, 3, 4, 3, 4};
    const int depth[] = {12, 12, 12, 6, 12, 6, 12, 4}, img[] = {224, 224, 224, 28, 28, 32, 32, 28};
    const int patch[] = {16, 16, 16, 4, 4, 4, 4, 7};
    for (int i = 0; i < 8; i++) {
        vit_config g;
        ck_assert_int_eq(vit_config_by_name(names[i], &g), PK_OK);
        ck_assert_int_eq(g.dim, dims[i]);
        ck_assert_int_eq(g.heads, heads[i]);
        ck_assert_int_eq(g.depth, depth[i]);
        ck_assert_int_eq(g.img_size, img[i]);
        ck_assert_int_eq(g.patch, patch[i]);
        ck_assert_int_eq(g.in_chans, 3);
        ck_assert_int_eq(g.mlp_hidden, g.dim == 128 ? 512 : 4 * g.dim);
        ck_assert(strstr(vit_config_names(), names[i]) != NULL);
    }
    vit_config g;
    ck_assert_int_ne(vit_config_by_name("vit_huge", &g), PK_OK);
    ck_assert(strstr(polyak_error(), "vit_small_patch16_224") != NULL);
    /* parameter count and names of vit_small_patch16_224 match timm's state_dict */
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(vit_config_by_name("vit_small_patch16_224", &g), PK_OK);
    g.num_classes = 1000;
    vit *m = make_vit(c, &g, "", 1);
    int np = 0;
    tensor *const *p = vit_params(m, &np);
    int64_t total = 0;
    for (int i = 0; i < np; i++)
        total += tensor_numel(p[i]);
    ck_assert_int_eq(total, 22050664); /* timm: vit_small_patch16_224 has 22,050,664 */
    ck_assert_str_eq(p[0]->name, "cls_token");
    ck_assert_str_eq(p[1]->name, "pos_embed");
    ck_assert_str_eq(p[2]->name, "patch_embed.proj.weight");
    ck_assert_str_eq(p[6]->name, "blocks.0.attn.qkv.weight");
    ck_assert_str_eq(p[np - 1]->name, "head.bias");
    /* a bad input shape is an error */
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    float z[3 * 20 * 20] = {0};
    tensor *x = pkt_const(c, PK_F32, 4, (int64_t[]){1, 3, 20, 20}, z);
    ck_assert_ptr_null(vit_forward_tokens(c, m, x));
    ck_assert(strstr(polyak_error(), "multiples of the patch 16") != NULL);
    vit_destroy(m);
    pkt_ctx_done(c);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vit");
    TCase *cpu = tcase_create("cpu");
    tcase_set_timeout(cpu, 120);
    tcase_add_test(cpu, configs);
    tcase_add_test(cpu, cpu_golden_forward);
    tcase_add_test(cpu, bicubic_matrix);
    tcase_add_test(cpu, cpu_gradients_fd);
    tcase_add_test(cpu, load_errors);
    tcase_add_test(cpu, save_load_roundtrip);
    tcase_add_test(cpu, cpu_intermediate_layers);
    suite_add_tcase(s, cpu);
    if (pkt_have_vulkan()) {
        TCase *vk = tcase_create("vulkan");
        tcase_set_timeout(vk, 600);
        tcase_add_test(vk, vk_golden_forward);
        tcase_add_test(vk, vk_gradients_vs_cpu);
        tcase_add_test(vk, vk_intermediate_layers);
        suite_add_tcase(s, vk);
    }
    return pkt_run_suite(s);
}
