/* test_vk_splat_train.c - splat train on Vulkan with the 3DGS source resident on the device
 * (issue #16), on lavapipe: (1) the per-step counters of a short bundled-scene run meet the
 * goal outside the read-back steps: 0 bytes either way, 0 host waits, 0 submissions and (after
 * the first step) 0 descriptor allocations, and the read-backs (the first step, which sizes
 * the rasterizer's pair buffers, and the last) cost one wait each and exactly the losses
 * (8 bytes a step) and the pair count; (2) the same run, with
 * densification, matches the CPU backend step by step (loss, PSNR, Gaussian count, held-out
 * PSNR), also when the rasterizer's pair buffers start far too small: the read-back finds the
 * overflow, the trainer rewinds to its snapshot and redoes the steps with grown buffers.
 * Exits 77 without a Vulkan device. Validation is on (POLYAK_VALIDATE=1 from ctest). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "gs_train.h"
#include "pk_test.h"

/* A small bundled-scene run (40x30 pixels, 400 random Gaussians) on `device`. */
static gs_train_options small_run(const char *out, const char *device, int64_t iters) {
    gs_train_options o = {.data = POLYAK_SOURCE_DIR "/assets/scene",
                          .out = out,
                          .device = device,
                          .iters = iters,
                          .downscale = 8,
                          .init_points = 400,
                          .threads = 1,
                          .seed = 7,
                          .densify_from = 100};
    return gs_train_for_scene(gs_train_defaults(o), false);
}

static void remove_dir(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(resident_counters) {
    char out[] = "/tmp/polyak_vksplat_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(out));
    const int64_t iters = 8;
    gs_train_options o = small_run(out, "vk", iters);
    gs_trainer *t = NULL;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    pk_device_counters a, b;
    pk_device_get_counters(gs_trainer_device(t), &a);
    for (int64_t s = 1; s <= iters; s++) {
        gs_step_result r;
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert(!r.densified && !r.evaluated && !r.checkpointed && !r.rewound);
        pk_device_get_counters(gs_trainer_device(t), &b);
        uint64_t sub = b.submits - a.submits, wait = b.host_waits - a.host_waits;
        uint64_t up = b.bytes_to_device - a.bytes_to_device;
        uint64_t down = b.bytes_to_host - a.bytes_to_host;
        uint64_t alloc = b.descriptor_allocs - a.descriptor_allocs;
        fprintf(stderr,
                "test_vk_splat_train: step %lld: %llu submits, %llu host waits, %llu bytes up, "
                "%llu down, %llu dispatches, %llu descriptor allocations\n",
                (long long)s, (unsigned long long)sub, (unsigned long long)wait,
                (unsigned long long)up, (unsigned long long)down,
                (unsigned long long)(b.dispatches - a.dispatches), (unsigned long long)alloc);
        ck_assert_uint_eq(up, 0);
        if (s > 1) ck_assert_uint_eq(alloc, 0);
        if (s > 1 && s < iters) { /* no read-back in these steps */
            ck_assert_uint_eq(sub, 0);
            ck_assert_uint_eq(wait, 0);
            ck_assert_uint_eq(down, 0);
        } else { /* the first step reads its loss and squared error and the pair count (it
                    sizes the pair buffers), the last every later step's and the count */
            ck_assert_uint_le(sub, 1);
            ck_assert_uint_eq(wait, 1);
            ck_assert_uint_eq(down, 8 * (uint64_t)(s == 1 ? 1 : iters - 1) + 8);
        }
        ck_assert_uint_gt(b.dispatches - a.dispatches, s < iters ? 50 : 0);
        a = b;
    }
    ck_assert_int_eq(gs_trainer_rewinds(t), 0);
    ck_assert_int_eq(pk_device_validation_errors((pk_device *)gs_trainer_device(t)), 0);
    gs_trainer_destroy(t);
    /* every step's row reached log.csv */
    char path[300];
    snprintf(path, sizeof path, "%s/log.csv", out);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int lines = 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        lines++;
    fclose(f);
    ck_assert_int_eq(lines, 1 + (int)iters);
    remove_dir(out);
}
END_TEST

typedef struct train_log {
    double loss[64], psnr[64];
    int64_t gaussians[64];
    int rows;
    double eval_psnr;
    int64_t rewinds, densified;
} train_log;

/* Trains to `iters` (a rewind makes the loop redo steps), finishes, and reads log.csv. */
static void train(const char *device, int64_t pairs, int64_t iters, train_log *L) {
    char out[] = "/tmp/polyak_vksplat_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(out));
    gs_train_options o = small_run(out, device, iters);
    o.densify_from = 2, o.densify_interval = 5, o.densify_until = iters, o.grad_threshold = 2e-5;
    o.vk_pairs = pairs;
    gs_trainer *t = NULL;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    memset(L, 0, sizeof *L);
    while (gs_trainer_step_count(t) < iters) {
        gs_step_result r;
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        L->densified += r.densified;
    }
    gs_eval ev;
    ck_assert_msg(gs_trainer_finish(t, &ev) == PK_OK, "%s", polyak_error());
    L->eval_psnr = ev.psnr;
    L->rewinds = gs_trainer_rewinds(t);
    ck_assert_int_eq(pk_device_validation_errors((pk_device *)gs_trainer_device(t)), 0);
    gs_trainer_destroy(t);
    char path[300];
    snprintf(path, sizeof path, "%s/log.csv", out);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f)); /* header */
    long long step, g;
    double loss, psnr, sec;
    while (fgets(line, sizeof line, f) &&
           sscanf(line, "%lld,%lf,%lf,%lld,%lf", &step, &loss, &psnr, &g, &sec) == 5) {
        ck_assert_int_eq(step, L->rows + 1);
        L->loss[L->rows] = loss, L->psnr[L->rows] = psnr, L->gaussians[L->rows] = g;
        L->rows++;
    }
    fclose(f);
    remove_dir(out);
}

START_TEST(resident_matches_cpu) {
    const int64_t iters = 12; /* densification at steps 5 and 10 */
    train_log cpu, vk, small;
    train("cpu", 0, iters, &cpu);
    train("vk", 0, iters, &vk);
    train("vk", 64, iters, &small); /* the first read-back finds the overflow */
    ck_assert_int_eq(cpu.rows, iters);
    ck_assert_int_eq(vk.rows, iters);
    ck_assert_int_eq(small.rows, iters);
    ck_assert_int_eq(vk.rewinds, 0);
    ck_assert_int_ge(small.rewinds, 1);
    ck_assert_int_eq(cpu.densified, 2);
    double worst = 0;
    for (int i = 0; i < iters; i++) {
        const train_log *runs[2] = {&vk, &small};
        for (int k = 0; k < 2; k++) {
            double d = fabs(runs[k]->loss[i] - cpu.loss[i]) / cpu.loss[i];
            if (d > worst) worst = d;
            ck_assert_msg(d < 1e-4, "step %d loss %g vs CPU %g", i + 1, runs[k]->loss[i],
                          cpu.loss[i]);
            ck_assert(fabs(runs[k]->psnr[i] - cpu.psnr[i]) < 1e-3);
            ck_assert_int_eq(runs[k]->gaussians[i], cpu.gaussians[i]);
        }
    }
    fprintf(stderr,
            "test_vk_splat_train: %lld steps, %lld -> %lld Gaussians; worst relative loss "
            "difference to the CPU %.2e; held-out PSNR cpu %.4f vk %.4f vk-from-64-pairs %.4f "
            "(%lld rewind)\n",
            (long long)iters, (long long)cpu.gaussians[0], (long long)cpu.gaussians[iters - 1],
            worst, cpu.eval_psnr, vk.eval_psnr, small.eval_psnr, (long long)small.rewinds);
    ck_assert(cpu.gaussians[iters - 1] != cpu.gaussians[0]); /* densification changed them */
    ck_assert(fabs(vk.eval_psnr - cpu.eval_psnr) < 1e-3);
    ck_assert(fabs(small.eval_psnr - cpu.eval_psnr) < 1e-3);
}
END_TEST

int main(void) {
    if (!pkt_have_vulkan()) {
        fprintf(stderr, "test_vk_splat_train: no Vulkan device; skipped\n");
        return 77;
    }
    Suite *s = suite_create("vk_splat_train");
    TCase *tc = tcase_create("resident");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, resident_counters);
    tcase_add_test(tc, resident_matches_cpu);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
