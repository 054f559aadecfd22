/* test_mgs_devices.c - Momentum-GS on several devices (tasks/momentum_gs, --devices): 2 blocks
 * on the CPU and lavapipe (one thread each, POLYAK_VALIDATE=1: no validation message) train,
 * merge and render with the held-out PSNR up; the decoder replicas are bit-identical in a
 * checkpoint written right after a --block-steps boundary (the averaging rule) and differ one
 * step later (they train independently within a round); and 2 blocks on two CPU contexts resume
 * bit-exactly (every replica and every device's generator is in the checkpoint). */
#define _GNU_SOURCE /* mkdtemp */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gs/gs_testscene.h"
#include "checkpoint.h"
#include "device.h"
#include "gs_source.h"
#include "gs_train.h"
#include "io_util.h"
#include "momentum.h"
#include "pk_test.h"
#include "safetensors.h"

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-mgsdev-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static void rmdir_all(char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    free(dir);
}

static gs_train_options opts(const char *data, const char *out, const char *dev0, int64_t iters,
                             mgs_options *mo, char *json) {
    gs_train_options o = {.data = data,
                          .out = out,
                          .device = dev0,
                          .iters = iters,
                          .test_every = 4,
                          .seed = 5,
                          .init_points = 3000,
                          .threads = 1,
                          .model = "momentum-gs",
                          .make_source = mgs_make_source,
                          .make_source_arg = mo,
                          .source_json = json};
    return gs_train_defaults(o);
}

/* Whether the checkpoint's replica of device 1 equals device 0's, tensor by tensor. */
static bool replicas_equal(const char *ckpt, int *compared) {
    ckpt_file k;
    ck_assert_int_eq(checkpoint_open(ckpt, &k), PK_OK);
    bool same = true;
    *compared = 0;
    for (int i = 0;; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "mgs.t%d", i);
        snprintf(b, sizeof b, "mgs.d1.t%d", i);
        const st_tensor *x = safetensors_find(&k.st, a), *y = safetensors_find(&k.st, b);
        if (!x) {
            ck_assert_ptr_null(y);
            break;
        }
        ck_assert_ptr_nonnull(y);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        same = same && memcmp(x->data, y->data, x->nbytes) == 0;
        (*compared)++;
    }
    checkpoint_close(&k);
    return same;
}

START_TEST(two_blocks_cpu_and_lavapipe) {
    if (!pkt_have_vulkan()) {
        fprintf(stderr, "no Vulkan device: the CPU + lavapipe case is skipped\n");
        return;
    }
    char *dir = tmpdir(), data[300], out[300], path[400];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    mkdir(data, 0777);
    ts_make(data);
    mgs_options mo = mgs_defaults((mgs_options){.blocks = 2,
                                                .block_steps = 6,
                                                .weight_interval = 12,
                                                .voxel_size = 0.05,
                                                .view_share = 0.1,
                                                .devices = "cpu,vk",
                                                .threads = 1});
    char *json = mgs_options_json(&mo);
    gs_train_options o = opts(data, out, "cpu", 16, &mo, json);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    mgs_info mi = mgs_source_info(gs_trainer_source(t));
    ck_assert_int_eq(mi.blocks, 2);
    ck_assert_int_eq(mi.devices, 2);
    ck_assert_int_eq(mi.device_of[0], 0);
    ck_assert_int_eq(mi.device_of[1], 1);
    gs_eval ev0, ev;
    ck_assert_int_eq(gs_trainer_evaluate(t, false, &ev0), PK_OK);
    gs_step_result r;
    while (gs_trainer_step_count(t) < 12)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK); /* right after an averaging */
    ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK); /* one independent step later */
    while (gs_trainer_step_count(t) < 16)
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(gs_trainer_finish(t, &ev), PK_OK);
    double gain = ev.psnr - ev0.psnr;
    fprintf(stderr, "2 devices, 16 steps: held-out PSNR %.2f -> %.2f dB\n", ev0.psnr, ev.psnr);
    ck_assert_msg(gain > 0.3, "held-out PSNR rose only %.2f dB", gain);
    mi = mgs_source_info(gs_trainer_source(t));
    ck_assert_int_eq(mi.validation_errors, 0);
    ck_assert_int_gt(mi.anchors[0], 0);
    ck_assert_int_gt(mi.anchors[1], 0);
    /* per-block checkpoints and the partition */
    snprintf(path, sizeof path, "%s/blocks", out);
    ck_assert_int_eq(mgs_write_blocks(gs_trainer_source(t), path), PK_OK);
    gs_trainer_destroy(t);
    free(json);
    int n12 = 0, n13 = 0;
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-12.safetensors", out);
    ck_assert_msg(replicas_equal(path, &n12), "replicas differ after the averaging at step 12");
    snprintf(path, sizeof path, "%s/checkpoints/ckpt-13.safetensors", out);
    ck_assert_msg(!replicas_equal(path, &n13), "replicas equal one step after an averaging");
    ck_assert_int_ge(n12, 24); /* decoder + Adam state + teacher */
    ck_assert_int_eq(n12, n13);
    /* the merged model's PLY renders */
    snprintf(path, sizeof path, "%s/point_cloud.ply", out);
    float *rgb;
    int w, h;
    ck_assert_msg(gs_render_ply(path, data, 1, 0, &rgb, &w, &h) == PK_OK, "%s", polyak_error());
    double mean = 0;
    for (int i = 0; i < 3 * w * h; i++)
        mean += rgb[i] / (3.0 * w * h);
    ck_assert(mean > 0.01 && isfinite(mean));
    free(rgb);
    for (int b = 0; b < 2; b++) {
        snprintf(path, sizeof path, "%s/blocks/block%d.safetensors", out, b);
        st_file k;
        ck_assert_int_eq(safetensors_open(path, &k), PK_OK);
        char an[32];
        snprintf(an, sizeof an, "b%d.sc.anchor", b);
        ck_assert_ptr_nonnull(safetensors_find(&k, an));
        ck_assert_ptr_nonnull(safetensors_find(&k, "decoder.11"));
        safetensors_close(&k);
    }
    rmdir_all(dir);
}
END_TEST

/* Trains 2 blocks on cpu,cpu to `iters`; stop_at > 0 stops there and resumes. */
static void train2(const char *data, const char *out, int64_t iters, int64_t stop_at) {
    mgs_options mo = mgs_defaults((mgs_options){.blocks = 2,
                                                .block_steps = 5,
                                                .weight_interval = 10,
                                                .voxel_size = 0.05,
                                                .view_share = 0.1,
                                                .devices = "cpu,cpu",
                                                .threads = 1});
    char *json = mgs_options_json(&mo);
    gs_train_options o = opts(data, out, "cpu", iters, &mo, json);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    gs_step_result r;
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
    ck_assert_int_eq(gs_trainer_checkpoint(t), PK_OK);
    gs_trainer_destroy(t);
    free(json);
}

START_TEST(two_cpu_devices_resume_bit_exact) {
    char *dir = tmpdir(), data[300], a[300], b[300];
    snprintf(data, sizeof data, "%s/scene", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    mkdir(data, 0777);
    ts_make(data);
    train2(data, a, 24, 0);
    train2(data, b, 24, 13); /* stopped inside a round: the replicas differ there */
    char *ca = io_path_join(a, "checkpoints/ckpt-24.safetensors");
    char *cb = io_path_join(b, "checkpoints/ckpt-24.safetensors");
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(ca, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(cb, &kb), PK_OK);
    ck_assert_int_eq(ka.st.n, kb.st.n);
    int replica = 0;
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i], *y = safetensors_find(&kb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strcmp(x->name, "run.log") == 0) continue;
        replica += strncmp(x->name, "mgs.d1.", 7) == 0 || strcmp(x->name, "mgs.rng") == 0;
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs", x->name);
    }
    ck_assert_int_ge(replica, 25); /* device 1's replica and generator are compared */
    checkpoint_close(&ka), checkpoint_close(&kb);
    free(ca), free(cb);
    rmdir_all(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("momentum_devices");
    TCase *t = tcase_create("lavapipe");
    tcase_add_test(t, two_blocks_cpu_and_lavapipe);
    tcase_set_timeout(t, 300);
    suite_add_tcase(s, t);
    TCase *u = tcase_create("cpu");
    tcase_add_test(u, two_cpu_devices_resume_bit_exact);
    tcase_set_timeout(u, 300);
    suite_add_tcase(s, u);
    return pkt_run_suite(s);
}
