/* test_gs_scaffold.c - the Scaffold-GS source (tasks/gs/gs_scaffold.c): voxelisation against
 * brute force, anchor initialisation (features and offsets zero, scaling log of the 3-NN
 * distance, Scaffold-GS's voxel rule), the decode of neural Gaussians and its gradients against
 * a PyTorch transcription of generate_neural_gaussians (tests/golden/gs/make_scaffold_golden.py),
 * frustum culling, anchor growing and pruning on hand-set statistics, and `--model scaffold`
 * training end to end (the held-out PSNR rises; a resumed run is bit-identical). */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "checkpoint.h"
#include "gs_scaffold.h"
#include "gs_testscene.h"
#include "gs_train.h"
#include "io_util.h"
#include "pk_test.h"

START_TEST(voxelize_matches_brute_force) {
    pkt_rng r = {3};
    int n = 900;
    float *p = malloc(sizeof(float) * 3 * n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            p[i * 3 + k] = pkt_uniform(&r, -2, 2);
    double vox = 0.5;
    float *a;
    int64_t m;
    ck_assert_int_eq(gs_voxelize(p, n, vox, &a, &m), PK_OK);
    /* brute force: the distinct cells */
    long long(*cells)[3] = malloc(sizeof *cells * n);
    int nc = 0;
    for (int i = 0; i < n; i++) {
        long long c[3];
        for (int k = 0; k < 3; k++)
            c[k] = llrint(p[i * 3 + k] / (float)vox);
        int dup = 0;
        for (int j = 0; j < nc && !dup; j++)
            dup = cells[j][0] == c[0] && cells[j][1] == c[1] && cells[j][2] == c[2];
        if (!dup) memcpy(cells[nc++], c, sizeof c);
    }
    ck_assert_int_eq(m, nc);
    for (int64_t i = 0; i < m; i++) {
        /* on the grid, present in the brute-force set, in lexicographic order */
        long long c[3];
        for (int k = 0; k < 3; k++) {
            c[k] = llrint(a[i * 3 + k] / vox);
            ck_assert_float_eq_tol(a[i * 3 + k], (float)c[k] * (float)vox, 1e-6);
        }
        int found = 0;
        for (int j = 0; j < nc && !found; j++)
            found = cells[j][0] == c[0] && cells[j][1] == c[1] && cells[j][2] == c[2];
        ck_assert(found);
        if (i > 0) {
            const float *q = a + (i - 1) * 3, *w = a + i * 3;
            int lt =
                q[0] < w[0] || (q[0] == w[0] && (q[1] < w[1] || (q[1] == w[1] && q[2] < w[2])));
            ck_assert_msg(lt, "anchors %lld and %lld out of order", (long long)i - 1, (long long)i);
        }
    }
    free(a), free(cells), free(p);
}
END_TEST

START_TEST(anchor_initialisation) {
    pkt_rng r = {8};
    int n = 600;
    float *p = malloc(sizeof(float) * 3 * n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            p[i * 3 + k] = pkt_uniform(&r, -1, 1);
    pk_ctx *c = pkt_ctx("cpu");
    gs_scaffold_options o = gs_scaffold_defaults((gs_scaffold_options){0}, 1000);
    pk_rng rng = {1};
    gs_scaffold *s;
    ck_assert_int_eq(gs_scaffold_create(c, p, n, 3.0, &o, &rng, &s), PK_OK);
    /* Scaffold-GS's voxel: the (n/2)-th smallest mean squared 3-NN distance */
    float *d = malloc(sizeof(float) * n);
    ck_assert_int_eq(gs_knn3_scale(p, n, d), PK_OK);
    for (int i = 0; i < n; i++)
        d[i] *= d[i];
    int below = 0, equal = 0;
    double v = gs_scaffold_voxel(s);
    for (int i = 0; i < n; i++)
        below += d[i] < (float)v, equal += d[i] == (float)v;
    ck_assert_msg(equal >= 1 && below <= n / 2 - 1 && below + equal >= n / 2, "voxel %g", v);
    /* anchors = the voxelised points; features and offsets zero; scaling log 3-NN */
    float *a;
    int64_t m;
    ck_assert_int_eq(gs_voxelize(p, n, v, &a, &m), PK_OK);
    ck_assert_int_eq(gs_scaffold_anchors(s), m);
    float *an, *feat, *off, *sc;
    gs_scaffold_arrays(s, &an, &feat, &off, &sc);
    ck_assert_int_eq(memcmp(an, a, sizeof(float) * 3 * (size_t)m), 0);
    float *dm = malloc(sizeof(float) * (size_t)m);
    ck_assert_int_eq(gs_knn3_scale(a, m, dm), PK_OK);
    for (int64_t i = 0; i < m; i++) {
        for (int k = 0; k < GS_SCAFFOLD_FEAT; k++)
            ck_assert_float_eq(feat[i * GS_SCAFFOLD_FEAT + k], 0);
        for (int k = 0; k < 3 * GS_SCAFFOLD_K; k++)
            ck_assert_float_eq(off[i * 3 * GS_SCAFFOLD_K + k], 0);
        for (int k = 0; k < 6; k++)
            ck_assert_float_eq_tol(sc[i * 6 + k], logf(dm[i]), 1e-6);
    }
    gs_scaffold_source(s).destroy(s);
    pkt_ctx_done(c);
    free(p), free(d), free(a), free(dm);
}
END_TEST

/* Copies golden array `name` into dst after checking its size. */
static void gold_copy(const pkt_golden *g, const char *name, float *dst, int64_t numel) {
    const pkt_array *x = pkt_golden_get(g, name);
    ck_assert_int_eq(x->numel, numel);
    memcpy(dst, x->data, sizeof(float) * (size_t)numel);
}

/* A pinhole camera at `pos` looking along +z with identity rotation, 200 x 200. */
static splat_camera axis_camera(const float pos[3]) {
    splat_camera cam = {.fx = 100, .fy = 100, .cx = 100, .cy = 100, .width = 200, .height = 200};
    for (int k = 0; k < 3; k++) {
        cam.world_to_cam[k * 4 + k] = 1;
        cam.world_to_cam[k * 4 + 3] = -pos[k];
    }
    cam.world_to_cam[15] = 1;
    return cam;
}

START_TEST(decode_matches_pytorch) {
    pkt_golden *g = pkt_golden_load("gs/scaffold.bin");
    const pkt_array *ga = pkt_golden_get(g, "anchor");
    int64_t N = ga->shape[0], K = GS_SCAFFOLD_K, F = GS_SCAFFOLD_FEAT;
    pk_ctx *c = pkt_ctx("cpu");
    gs_scaffold_options o = gs_scaffold_defaults((gs_scaffold_options){.voxel_size = 1e-5}, 1000);
    pk_rng rng = {1};
    gs_scaffold *s;
    ck_assert_int_eq(gs_scaffold_create(c, ga->data, N, 3.0, &o, &rng, &s), PK_OK);
    ck_assert_int_eq(gs_scaffold_anchors(s), N);
    float *an, *feat, *off, *sc;
    gs_scaffold_arrays(s, &an, &feat, &off, &sc);
    gold_copy(g, "anchor", an, N * 3);
    gold_copy(g, "feat", feat, N * F);
    gold_copy(g, "offset", off, N * K * 3);
    gold_copy(g, "scaling", sc, N * 6);
    tensor *ps[12];
    gs_decoder_params(gs_scaffold_decoder(s), ps);
    const char *mlp[3] = {"opacity", "cov", "color"}, *pn[4] = {"w1", "b1", "w2", "b2"};
    char name[64];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "%s.%s", mlp[i / 4], pn[i % 4]);
        const pkt_array *x = pkt_golden_get(g, name);
        ck_assert_int_eq(x->numel, tensor_numel(ps[i]));
        ck_assert_int_eq(tensor_upload(ps[i], x->data), PK_OK);
    }
    splat_camera cam = axis_camera(pkt_golden_get(g, "campos")->data);
    /* every anchor is in this camera's frustum; one behind it is culled */
    int32_t *vis;
    int64_t nv;
    ck_assert_int_eq(gs_scaffold_visible(s, &cam, &vis, &nv), PK_OK);
    ck_assert_int_eq(nv, N);
    free(vis);
    float back[3] = {0, 0, 4};
    splat_camera cb = axis_camera(back);
    ck_assert_int_eq(gs_scaffold_visible(s, &cb, &vis, &nv), PK_OK);
    ck_assert_int_eq(nv, 0);
    free(vis);

    gs_source src = gs_scaffold_source(s);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    pk_splat_inputs in;
    tensor *reg = NULL;
    ck_assert_msg(src.produce_tensors(s, c, &cam, &in, &reg) == PK_OK, "%s", polyak_error());
    const char *outs[5] = {"means", "log_scales", "quats", "logits", "colors"};
    tensor *ot[5] = {in.means, in.log_scales, in.quats, in.opacity_logits, in.colors};
    tensor *loss = reg;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "out.%s", outs[i]);
        const pkt_array *want = pkt_golden_get(g, name);
        ck_assert_int_eq(tensor_numel(ot[i]), want->numel);
        float *got = pkt_download(ot[i]);
        double e = pkt_nerr(got, want->data, want->numel);
        ck_assert_msg(e < 1e-5, "%s: error %g", outs[i], e);
        free(got);
        snprintf(name, sizeof name, "up.%s", outs[i]);
        const pkt_array *u = pkt_golden_get(g, name);
        tensor *ut = pkt_const(c, PK_F32, ot[i]->ndim, ot[i]->shape, u->data);
        loss = pk_add(c, loss, pk_sum_all(c, pk_mul(c, ot[i], ut)));
    }
    float rv, *rw = pkt_download(reg);
    rv = rw[0];
    free(rw);
    ck_assert_float_eq_tol(rv, pkt_golden_get(g, "reg")->data[0], 1e-6 * fabsf(rv) + 1e-9);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
    float *gf, *go, *gsc;
    ck_assert_int_eq(gs_scaffold_grads(s, &gf, &go, &gsc), PK_OK);
    struct {
        const char *name;
        const float *got;
    } gg[3] = {{"grad.feat", gf}, {"grad.offset", go}, {"grad.scaling", gsc}};
    for (int i = 0; i < 3; i++) {
        const pkt_array *want = pkt_golden_get(g, gg[i].name);
        double e = pkt_nerr(gg[i].got, want->data, want->numel);
        ck_assert_msg(e < 1e-4, "%s: error %g", gg[i].name, e);
    }
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "grad.%s.%s", mlp[i / 4], pn[i % 4]);
        const pkt_array *want = pkt_golden_get(g, name);
        float *got = pkt_download(ps[i]->grad);
        double e = pkt_nerr(got, want->data, want->numel);
        ck_assert_msg(e < 1e-4, "%s: error %g", name, e);
        free(got);
    }
    src.destroy(s);
    pkt_ctx_done(c);
    pkt_golden_free(g);
}
END_TEST

/* Growing and pruning on hand-set statistics: one anchor whose Gaussians all have a large
 * gradient seeds new anchors on the coarse (16 voxels) grid and possibly the finer ones, with
 * the parent's feature and log(cell size) scaling; a seen but transparent anchor is pruned. */
START_TEST(grow_and_prune) {
    pk_ctx *c = pkt_ctx("cpu");
    float pts[4 * 3] = {0, 0, 0, 5, 5, 5, 5.5f, 5, 5, -5, -5, 5};
    gs_scaffold_options o = gs_scaffold_defaults((gs_scaffold_options){.voxel_size = 0.1}, 30000);
    pk_rng rng = {4};
    gs_scaffold *s;
    ck_assert_int_eq(gs_scaffold_create(c, pts, 4, 3.0, &o, &rng, &s), PK_OK);
    ck_assert_int_eq(gs_scaffold_anchors(s), 4);
    float *an, *feat, *off, *sc, *oa, *ad, *ga, *gd;
    gs_scaffold_arrays(s, &an, &feat, &off, &sc);
    gs_scaffold_stats(s, &oa, &ad, &ga, &gd);
    /* anchor order is lexicographic: (-5,-5,5), (0,0,0), (5,5,5), (5.5,5,5) */
    ck_assert_float_eq(an[3], 0);
    int K = GS_SCAFFOLD_K, F = GS_SCAFFOLD_FEAT;
    for (int k = 0; k < F; k++)
        feat[1 * F + k] = (float)k * 0.01f;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 6; k++)
            sc[i * 6 + k] = 0; /* exp = 1: the offset is the world displacement */
    /* anchor 1's ten Gaussians all sit at (1.23, 0.47, -0.61): cells 1.6 -> (1, 0, 0),
     * 0.4 -> (3, 1, -2), 0.1 -> (12, 5, -6), none taken by an anchor */
    const float tgt[3] = {1.23f, 0.47f, -0.61f};
    for (int k = 0; k < K; k++)
        for (int d = 0; d < 3; d++)
            off[(1 * K + k) * 3 + d] = tgt[d];
    for (int k = 0; k < K; k++) {
        ga[1 * K + k] = 100 * 1e-3f; /* mean 1e-3 > 4 x 2e-4 */
        gd[1 * K + k] = 100;
    }
    for (int i = 0; i < 4; i++)
        ad[i] = 100; /* seen more than 100 x 0.8 times */
    oa[0] = 0.1f;    /* < 0.005 x 100: pruned */
    oa[1] = 60, oa[2] = 60, oa[3] = 60;
    gs_scaffold_report rep;
    ck_assert_int_eq(gs_scaffold_adjust(s, 1999, &rng, &rep), PK_OK); /* not due */
    ck_assert_int_eq(rep.before, 0);
    ck_assert_int_eq(gs_scaffold_adjust(s, 2000, &rng, &rep), PK_OK);
    ck_assert_int_eq(rep.pruned, 1);
    ck_assert_int_ge(rep.grown, 1);
    ck_assert_int_le(rep.grown, 3);
    ck_assert_int_eq(gs_scaffold_anchors(s), 4 + rep.grown - 1);
    gs_scaffold_arrays(s, &an, &feat, &off, &sc);
    gs_scaffold_stats(s, &oa, &ad, &ga, &gd);
    /* the survivors first, in order, with their statistics reset; then the new anchors */
    ck_assert_float_eq(an[0], 0);
    ck_assert_float_eq(an[3], 5);
    ck_assert_float_eq(an[6], 5.5f);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(ad[i], 0);
        ck_assert_float_eq(oa[i], 0);
    }
    for (int k = 0; k < K; k++)
        ck_assert_float_eq(gd[0 * K + k], 0);
    const double sizes[3] = {1.6, 0.4, 0.1};
    bool coarse = false;
    for (int64_t i = 3; i < gs_scaffold_anchors(s); i++) {
        int lvl = -1;
        for (int l = 0; l < 3; l++)
            if (fabsf(sc[i * 6] - logf((float)sizes[l])) < 1e-6) lvl = l;
        ck_assert_msg(lvl >= 0, "new anchor %lld scaling %g", (long long)i, sc[i * 6]);
        for (int d = 0; d < 3; d++) {
            float want = (float)nearbyint(tgt[d] / (float)(sizes[lvl] * 1.0)) * (float)sizes[lvl];
            ck_assert_float_eq_tol(an[i * 3 + d], want, 1e-5);
        }
        for (int k = 0; k < F; k++)
            ck_assert_float_eq(feat[i * F + k], (float)k * 0.01f);
        for (int k = 0; k < 3 * K; k++)
            ck_assert_float_eq(off[i * 3 * K + k], 0);
        coarse |= lvl == 0;
    }
    ck_assert(coarse);
    gs_scaffold_source(s).destroy(s);
    pkt_ctx_done(c);
}
END_TEST

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-scaffold-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

/* Trains --model scaffold on the test scene; stop_at > 0: stops there and resumes. */
static double train(const char *data, const char *out, int64_t iters, int64_t stop_at) {
    gs_train_options o = {.data = data,
                          .out = out,
                          .device = "cpu",
                          .iters = iters,
                          .test_every = 4,
                          .seed = 7,
                          .init_points = 3000,
                          .model = "scaffold",
                          .voxel_size = 0.05};
    o = gs_train_defaults(o);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_step_result r;
    gs_eval ev0;
    ck_assert_int_eq(gs_trainer_evaluate(t, false, &ev0), PK_OK);
    if (stop_at) {
        while (gs_trainer_step_count(t) < stop_at)
            ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK);
        gs_trainer_destroy(t);
        o.resume = true;
        ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    }
    while (gs_trainer_step_count(t) < iters)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    gs_eval ev;
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    gs_trainer_destroy(t);
    return ev.psnr - ev0.psnr;
}

START_TEST(train_and_resume) {
    char *dir = tmpdir(), data[300], a[300], b[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    mkdir(data, 0777);
    ts_make(data);
    /* 120 steps (statistics from step 2 to 60; growing itself is grow_and_prune's test) */
    double gain = train(data, a, 120, 0);
    ck_assert_msg(gain > 3.0, "held-out PSNR rose only %.2f dB", gain);
    ck_assert(train(data, b, 120, 70) == gain);
    char *ca = io_path_join(a, "checkpoints/ckpt-120.safetensors");
    char *cb = io_path_join(b, "checkpoints/ckpt-120.safetensors");
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(ca, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(cb, &kb), PK_OK);
    ck_assert_int_eq(ka.st.n, kb.st.n);
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i], *y = safetensors_find(&kb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strcmp(x->name, "run.log") == 0) continue;
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs", x->name);
    }
    checkpoint_close(&ka), checkpoint_close(&kb);
    free(ca), free(cb);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gs_scaffold");
    TCase *t = tcase_create("scaffold");
    tcase_add_test(t, voxelize_matches_brute_force);
    tcase_add_test(t, anchor_initialisation);
    tcase_add_test(t, decode_matches_pytorch);
    tcase_add_test(t, grow_and_prune);
    tcase_add_test(t, train_and_resume);
    tcase_set_timeout(t, 300);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
