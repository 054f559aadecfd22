/* test_mgs_devices.c - Momentum-GS on several devices (tasks/momentum_gs, --devices): 2 blocks
 * on the CPU and lavapipe (one thread each, POLYAK_VALIDATE=1: no validation message) train,
 * merge and render with the held-out PSNR up, and the two devices' decoders (each block's
 * checkpoint holds its device's) are bit-identical (the per-step rule: one step on the mean
 * gradient, copied to every device); 2 blocks on two CPU contexts (cpu,cpu) train the same
 * model as one CPU context training both blocks at every step (--parallel-blocks 2: the
 * lock-step reference), and resume bit-exactly (every lane's generator is in the checkpoint). */
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

/* Largest |a - b| / (1 + |a|) over the F32 tensors of two checkpoints (integer tensors must be
 * equal); *bits: whether every tensor is bit-identical; *n: tensors compared. */
static double compare_ckpts(const char *pa, const char *pb, bool *bits, int *n) {
    ckpt_file ka, kb;
    ck_assert_int_eq(checkpoint_open(pa, &ka), PK_OK);
    ck_assert_int_eq(checkpoint_open(pb, &kb), PK_OK);
    ck_assert_int_eq(ka.st.n, kb.st.n);
    double worst = 0;
    *bits = true, *n = 0;
    for (int i = 0; i < ka.st.n; i++) {
        const st_tensor *x = &ka.st.tensors[i], *y = safetensors_find(&kb.st, x->name);
        ck_assert_msg(y != NULL, "%s missing", x->name);
        if (strcmp(x->name, "run.log") == 0) continue;
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        (*n)++;
        bool same = memcmp(x->data, y->data, x->nbytes) == 0;
        *bits = *bits && same;
        if (same) continue;
        ck_assert_msg(x->dtype == ST_F32, "%s differs", x->name);
        const float *a = x->data, *b = y->data;
        for (size_t k = 0; k < x->nbytes / 4; k++) {
            double e = fabs((double)a[k] - b[k]) / (1 + fabs((double)a[k]));
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    }
    checkpoint_close(&ka), checkpoint_close(&kb);
    return worst;
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
    /* block 0's decoder is the CPU's, block 1's lavapipe's: the same bits */
    st_file k0, k1;
    snprintf(path, sizeof path, "%s/blocks/block0.safetensors", out);
    ck_assert_int_eq(safetensors_open(path, &k0), PK_OK);
    snprintf(path, sizeof path, "%s/blocks/block1.safetensors", out);
    ck_assert_int_eq(safetensors_open(path, &k1), PK_OK);
    for (int i = 0; i < 12; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "decoder.%d", i);
        const st_tensor *x = safetensors_find(&k0, nm), *y = safetensors_find(&k1, nm);
        ck_assert(x && y && x->nbytes == y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0, "%s differs across devices", nm);
    }
    safetensors_close(&k0), safetensors_close(&k1);
    rmdir_all(dir);
}
END_TEST

/* Trains 2 blocks on `devices` with `parallel` lanes to `iters`; stop_at > 0 stops there and
 * resumes. */
static void train2(const char *data, const char *out, const char *devices, int parallel,
                   int64_t iters, int64_t stop_at) {
    mgs_options mo = mgs_defaults((mgs_options){.blocks = 2,
                                                .block_steps = 5,
                                                .weight_interval = 10,
                                                .voxel_size = 0.05,
                                                .view_share = 0.1,
                                                .devices = devices,
                                                .parallel = parallel,
                                                .threads = 1});
    char *json = mgs_options_json(&mo);
    gs_train_options o = opts(data, out, "cpu", iters, &mo, json);
    gs_trainer *t;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(mgs_source_info(gs_trainer_source(t)).lanes, 2);
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
    train2(data, a, "cpu,cpu", 0, 24, 0);
    train2(data, b, "cpu,cpu", 0, 24, 13); /* stopped inside a round of block turns */
    char *ca = io_path_join(a, "checkpoints/ckpt-24.safetensors");
    char *cb = io_path_join(b, "checkpoints/ckpt-24.safetensors");
    bool bits;
    int n;
    double e = compare_ckpts(ca, cb, &bits, &n);
    ck_assert_msg(bits, "the resumed run differs (%.3g)", e);
    ck_assert_int_ge(n, 60); /* blocks, decoder, Adam, teacher, counters, orders, generators */
    /* the lock-step reference: one CPU context training both blocks at every step */
    snprintf(b, sizeof b, "%s/c", dir);
    train2(data, b, "cpu", 2, 24, 0);
    free(cb);
    cb = io_path_join(b, "checkpoints/ckpt-24.safetensors");
    e = compare_ckpts(ca, cb, &bits, &n);
    fprintf(stderr,
            "cpu,cpu against one device with 2 lanes: %s (largest relative difference "
            "%.3g over %d tensors)\n",
            bits ? "bit-identical" : "differs", e, n);
    ck_assert_msg(e < 1e-5, "2 devices and 1 device in lock-step differ by %.3g", e);
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
