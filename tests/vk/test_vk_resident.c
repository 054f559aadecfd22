/* test_vk_resident.c - what keeps Vulkan work on the device and what measures it: the traffic
 * counters (exact counts for known sequences of uploads, read-backs and dispatches), the
 * descriptor-set cache (a hit for every dispatch after warm-up, no allocation, sets of freed
 * blocks dropped), pushed descriptors where the device offers them, barriers only between
 * dispatches that depend on each other, two contexts (CPU and lavapipe) driven from two threads
 * at once with the same results, and the training loops' (man, splat train) per-step counters.
 * Exits 77 without a Vulkan device. Validation is on (POLYAK_VALIDATE=1 from ctest). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "autograd.h"
#include "common/selftest.h"
#include "device.h"
#include "gs_train.h"
#include "man_run.h"
#include "pk_test.h"
#include "vk/vk.h"
#include "vk/vk_internal.h"

#define SELFTEST "common/selftest"

static bool env_validate(void) {
    const char *v = getenv("POLYAK_VALIDATE");
    return v && strcmp(v, "1") == 0;
}

static int llvmpipe_index(void) {
    pk_device_info info[16];
    int n = 0;
    ck_assert_int_eq(vkctx_enumerate(info, 16, &n), PK_OK);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++)
        if (strstr(info[i].name, "llvmpipe")) return i;
    return 0;
}

static vkctx *open_ctx(bool no_push) {
    vkctx *ctx = NULL;
    vkctx_options opt = {.validate = env_validate(), .no_push_descriptors = no_push};
    pk_status s = vkctx_create(llvmpipe_index(), &opt, &ctx);
    ck_assert_msg(s == PK_OK, "vkctx_create: %s", polyak_error());
    return ctx;
}

static void close_ctx(vkctx *ctx) {
    ck_assert_int_eq(vkctx_validation_errors(ctx), 0);
    vkctx_destroy(ctx);
}

/* y[off_y + i] = a * x[off_x + i] + y[off_y + i] for i < n (common/selftest). */
static pk_status axpy(vkctx *ctx, pk_block *x, pk_block *y, uint32_t n, float a) {
    pc_selftest pc = {.off_x = 0, .off_y = 0, .n = n, .a = a};
    vk_binding b[2] = {{x, 0, 0}, {y, 0, 0}};
    return vkctx_dispatch(ctx, SELFTEST, 2, b, &pc, sizeof pc, (n + 63) / 64, 1, 1);
}

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static uint64_t seed(void) {
    uint64_t s = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    fprintf(stderr, "test_vk_resident: seed %llu\n", (unsigned long long)s);
    return s;
}

/* ---- counters ---- */

START_TEST(counters_exact) {
    vkctx *ctx = open_ctx(false);
    enum { N = 1000 };
    uint64_t s = seed();
    float hx[N], hy[N], out[N];
    for (int i = 0; i < N; i++)
        hx[i] = rnd(&s), hy[i] = rnd(&s);
    pk_block x, y;
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof hx, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof hy, &y), PK_OK);
    pk_device_counters a, b;
    vkctx_get_counters(ctx, &a);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, hx, sizeof hx), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, hy, sizeof hy), PK_OK);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(axpy(ctx, &x, &y, N, 0.5f), PK_OK);
    ck_assert_int_eq(vkctx_block_read(ctx, &y, 0, out, sizeof out), PK_OK);
    vkctx_get_counters(ctx, &b);
    ck_assert_uint_eq(b.bytes_to_device - a.bytes_to_device, 2 * sizeof hx);
    ck_assert_uint_eq(b.bytes_to_host - a.bytes_to_host, sizeof out);
    ck_assert_uint_eq(b.dispatches - a.dispatches, 5);
    ck_assert_uint_eq(b.submits - a.submits, 1);
    ck_assert_uint_eq(b.host_waits - a.host_waits, 1);
    /* each axpy reads and writes y: four barriers between five dispatches */
    ck_assert_uint_eq(b.barriers - a.barriers, 4);
    for (int i = 0; i < N; i++) {
        float want = hy[i];
        for (int k = 0; k < 5; k++)
            want = 0.5f * hx[i] + want;
        ck_assert_msg(out[i] == want, "y[%d] = %g, want %g", i, out[i], want);
    }
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    close_ctx(ctx);
}
END_TEST

/* Independent dispatches (different outputs, shared readonly input) get no barrier between
 * them; a dependent one does. */
START_TEST(barriers_only_on_dependence) {
    vkctx *ctx = open_ctx(false);
    enum { N = 512 };
    uint64_t s = seed();
    float hx[N];
    for (int i = 0; i < N; i++)
        hx[i] = rnd(&s);
    pk_block x, y[4];
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof hx, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, hx, sizeof hx), PK_OK);
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof hx, &y[k]), PK_OK);
        ck_assert_int_eq(vkctx_block_write(ctx, &y[k], 0, hx, sizeof hx), PK_OK);
    }
    ck_assert_int_eq(vkctx_sync(ctx), PK_OK);
    pk_device_counters a, b;
    vkctx_get_counters(ctx, &a);
    for (int k = 0; k < 4; k++) /* selftest reads x (readonly) and updates y[k] */
        ck_assert_int_eq(axpy(ctx, &x, &y[k], N, (float)(k + 1)), PK_OK);
    vkctx_get_counters(ctx, &b);
    ck_assert_uint_eq(b.barriers - a.barriers, 0);
    ck_assert_int_eq(axpy(ctx, &y[0], &y[1], N, 1.0f), PK_OK); /* reads y[0]: waits */
    vkctx_get_counters(ctx, &a);
    ck_assert_uint_eq(a.barriers - b.barriers, 1);
    float out[N];
    ck_assert_int_eq(vkctx_block_read(ctx, &y[1], 0, out, sizeof out), PK_OK);
    for (int i = 0; i < N; i++) {
        float y0 = 1.0f * hx[i] + hx[i], y1 = 2.0f * hx[i] + hx[i];
        ck_assert_float_eq(out[i], y0 + y1);
    }
    vkctx_block_free(ctx, &x);
    for (int k = 0; k < 4; k++)
        vkctx_block_free(ctx, &y[k]);
    close_ctx(ctx);
}
END_TEST

/* ---- descriptors ---- */

START_TEST(descriptor_cache_hits) {
    vkctx *ctx = open_ctx(true); /* the cache even where push descriptors exist */
    ck_assert(!vkctx_debug_push_descriptors(ctx));
    enum { N = 256 };
    pk_block x, y, z;
    float h[N];
    uint64_t s = seed();
    for (int i = 0; i < N; i++)
        h[i] = rnd(&s);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &y), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &z), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, h, sizeof h), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, h, sizeof h), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &z, 0, h, sizeof h), PK_OK);
    pk_device_counters a, b;
    /* warm-up: two distinct binding lists */
    ck_assert_int_eq(axpy(ctx, &x, &y, N, 1.0f), PK_OK);
    ck_assert_int_eq(axpy(ctx, &x, &z, N, 1.0f), PK_OK);
    ck_assert_int_eq(vkctx_sync(ctx), PK_OK);
    ck_assert_uint_eq(vkctx_debug_cached_sets(ctx), 2);
    vkctx_get_counters(ctx, &a);
    for (int step = 0; step < 10; step++) { /* "training steps": same bindings, syncs between */
        ck_assert_int_eq(axpy(ctx, &x, &y, N, 0.25f), PK_OK);
        ck_assert_int_eq(axpy(ctx, &x, &z, N, 0.25f), PK_OK);
        ck_assert_int_eq(vkctx_sync(ctx), PK_OK);
    }
    vkctx_get_counters(ctx, &b);
    ck_assert_uint_eq(b.descriptor_allocs - a.descriptor_allocs, 0);
    ck_assert_uint_eq(b.descriptor_hits - a.descriptor_hits, 20);
    ck_assert_uint_eq(vkctx_debug_cached_sets(ctx), 2);
    /* freeing a block drops the sets that bind it; a new block at the same handle value must
     * not hit a stale set (the results below would be wrong) */
    vkctx_block_free(ctx, &z);
    ck_assert_uint_eq(vkctx_debug_cached_sets(ctx), 1);
    pk_block w;
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &w), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &w, 0, h, sizeof h), PK_OK);
    ck_assert_int_eq(axpy(ctx, &x, &w, N, 2.0f), PK_OK);
    float out[N];
    ck_assert_int_eq(vkctx_block_read(ctx, &w, 0, out, sizeof out), PK_OK);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(out[i], 2.0f * h[i] + h[i]);
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    vkctx_block_free(ctx, &w);
    ck_assert_uint_eq(vkctx_debug_cached_sets(ctx), 0);
    close_ctx(ctx);
}
END_TEST

START_TEST(push_descriptors_allocate_nothing) {
    vkctx *ctx = open_ctx(false);
    if (!vkctx_debug_push_descriptors(ctx)) {
        fprintf(stderr, "test_vk_resident: %s offers no VK_KHR_push_descriptor; cache tested\n",
                vkctx_info(ctx)->name);
        close_ctx(ctx);
        return;
    }
    enum { N = 300 };
    pk_block x, y;
    float h[N], out[N];
    uint64_t s = seed();
    for (int i = 0; i < N; i++)
        h[i] = rnd(&s);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, sizeof h, &y), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, h, sizeof h), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, h, sizeof h), PK_OK);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(axpy(ctx, &x, &y, N, -1.0f), PK_OK);
    ck_assert_int_eq(vkctx_block_read(ctx, &y, 0, out, sizeof out), PK_OK);
    pk_device_counters c;
    vkctx_get_counters(ctx, &c);
    ck_assert_uint_eq(c.descriptor_allocs, 0);
    ck_assert_uint_eq(vkctx_debug_cached_sets(ctx), 0);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq(out[i], ((h[i] - h[i]) - h[i]) - h[i]);
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    close_ctx(ctx);
}
END_TEST

/* ---- two contexts in two threads ---- */

typedef struct worker {
    const char *device;
    pthread_barrier_t *start;
    const float *a, *b; // (M, K) (K, N)
    float *y, *ga;      // (M, N) softmax(A B), d sum(w * y) / dA
    const float *w;     // (M, N)
    int rounds;
    pk_status status;
    char error[512];
    int validation;
} worker;

enum { TM = 24, TK = 40, TN = 32 };

/* Repeats y = softmax(A B), backward of sum(w * y) on its own context, `rounds` times. */
static void *work(void *arg) {
    worker *wk = arg;
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = wk->device, .seed = 1, .threads = 1};
    wk->status = pk_ctx_create(&co, &c);
    pthread_barrier_wait(wk->start); /* both contexts exist: run side by side */
    for (int r = 0; r < wk->rounds && wk->status == PK_OK; r++) {
        pk_status s = pk_step_begin(c);
        tensor *a = s == PK_OK ? tensor_new(c->step, PK_F32, 2, (int64_t[]){TM, TK}) : NULL;
        tensor *b = a ? tensor_new(c->step, PK_F32, 2, (int64_t[]){TK, TN}) : NULL;
        tensor *w = b ? tensor_new(c->step, PK_F32, 2, (int64_t[]){TM, TN}) : NULL;
        if (!w || tensor_upload(a, wk->a) || tensor_upload(b, wk->b) || tensor_upload(w, wk->w)) {
            wk->status = PK_ERR_INVALID;
            break;
        }
        a->requires_grad = true;
        tensor *y = pk_softmax(c, pk_matmul(c, a, b, false, false), 1);
        tensor *l = y ? pk_sum_all(c, pk_mul(c, y, w)) : NULL;
        if (!l || (s = autograd_backward(c, l)) != PK_OK || tensor_download(y, wk->y) ||
            tensor_download(a->grad, wk->ga))
            wk->status = s != PK_OK ? s : PK_ERR_INVALID;
    }
    if (wk->status != PK_OK) snprintf(wk->error, sizeof wk->error, "%s", polyak_error());
    if (c) wk->validation = pk_device_validation_errors(c->dev);
    pk_ctx_destroy(c);
    return NULL;
}

START_TEST(two_contexts_two_threads) {
    uint64_t s = seed();
    float *a = malloc(sizeof(float) * TM * TK), *b = malloc(sizeof(float) * TK * TN);
    float *w = malloc(sizeof(float) * TM * TN);
    float *y[2], *ga[2];
    for (int i = 0; i < TM * TK; i++)
        a[i] = rnd(&s);
    for (int i = 0; i < TK * TN; i++)
        b[i] = rnd(&s);
    for (int i = 0; i < TM * TN; i++)
        w[i] = rnd(&s);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    worker wk[2];
    const char *devs[2] = {"cpu", "vk"}; // vk: lavapipe in CI
    for (int k = 0; k < 2; k++) {
        y[k] = malloc(sizeof(float) * TM * TN);
        ga[k] = malloc(sizeof(float) * TM * TK);
        for (int i = 0; i < TM * TN; i++)
            y[k][i] = NAN; /* poison */
        for (int i = 0; i < TM * TK; i++)
            ga[k][i] = NAN;
        wk[k] = (worker){.device = devs[k],
                         .start = &start,
                         .a = a,
                         .b = b,
                         .w = w,
                         .y = y[k],
                         .ga = ga[k],
                         .rounds = 20};
    }
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, work, &wk[k]), 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&start);
    for (int k = 0; k < 2; k++) {
        ck_assert_msg(wk[k].status == PK_OK, "%s: %s", devs[k], wk[k].error);
        ck_assert_int_eq(wk[k].validation, 0);
    }
    double ey = pkt_nerr(y[1], y[0], TM * TN), eg = pkt_nerr(ga[1], ga[0], TM * TK);
    ck_assert_msg(ey < 1e-5 && eg < 1e-4, "vk vs cpu: y %g, dA %g", ey, eg);
    free(a), free(b), free(w);
    for (int k = 0; k < 2; k++)
        free(y[k]), free(ga[k]);
}
END_TEST

/* ---- --devices lists ---- */

START_TEST(devices_list_parsing) {
    char specs[8][64];
    int n = 0;
    ck_assert_int_eq(pk_device_list_parse("cpu,vk:0, vk:llvmpipe", specs, 8, 0, &n), PK_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(specs[0], "cpu");
    ck_assert_str_eq(specs[1], "vk:0");
    ck_assert_str_eq(specs[2], "vk:llvmpipe");
    ck_assert_int_eq(pk_device_list_parse("vk", specs, 8, 0, &n), PK_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_ne(pk_device_list_parse("", specs, 8, 0, &n), PK_OK);
    ck_assert_int_ne(pk_device_list_parse("cpu,,vk", specs, 8, 0, &n), PK_OK);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "empty"));
    ck_assert_int_ne(pk_device_list_parse("cpu,cpu", specs, 8, 0, &n), PK_OK);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "twice"));
    /* repeats where the command asks for them (Momentum-GS: a worker per entry) */
    ck_assert_int_eq(pk_device_list_parse("cpu, cpu,vk:0", specs, 8, PK_DEVICE_LIST_REPEATS, &n),
                     PK_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(specs[0], "cpu");
    ck_assert_str_eq(specs[1], "cpu");
    ck_assert_str_eq(specs[2], "vk:0");
    ck_assert_int_ne(pk_device_list_parse("cpu,,cpu", specs, 8, PK_DEVICE_LIST_REPEATS, &n), PK_OK);
    ck_assert_int_ne(pk_device_list_parse("cpu,cpu,cpu", specs, 2, PK_DEVICE_LIST_REPEATS, &n),
                     PK_OK);
    ck_assert_int_ne(pk_device_list_parse("cpu,gpu", specs, 8, PK_DEVICE_LIST_REPEATS, &n), PK_OK);
    ck_assert_int_ne(pk_device_list_parse("cpu,vk:0,vk:1", specs, 2, 0, &n), PK_OK);
    ck_assert_int_ne(pk_device_list_parse("gpu", specs, 8, 0, &n), PK_OK);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "gpu"));
}
END_TEST

/* ---- the training loops' counters ---- */

START_TEST(man_counters) {
    char out[] = "/tmp/polyak_vkres_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(out));
    man_run_options o = {.data = "/usr/share/datasets/fashion-mnist",
                         .out = out,
                         .device = "vk",
                         .method = MAN_DGL_MAN,
                         .blocks = 2,
                         .epochs = 1,
                         .batch = 4,
                         .lr = 0.05,
                         .train_limit = 12,
                         .test_limit = 4,
                         .threads = 1,
                         .flip = -1};
    man_result r;
    ck_assert_msg(man_run(&o, &r) == PK_OK, "%s", polyak_error());
    const pk_step_counters *sc = &r.vulkan;
    ck_assert_int_eq(sc->steps, 3);
    double k = 1.0 / (double)(sc->steps - 1);
    double allocs = (double)(sc->last.descriptor_allocs - sc->after_first.descriptor_allocs) * k;
    double disp = (double)(sc->last.dispatches - sc->after_first.dispatches) * k;
    double waits = (double)(sc->last.host_waits - sc->after_first.host_waits) * k;
    double up = (double)(sc->last.bytes_to_device - sc->after_first.bytes_to_device) * k;
    fprintf(stderr,
            "test_vk_resident: man per step: %.1f dispatches, %.1f host waits, %.0f bytes "
            "up, %.1f descriptor allocations\n",
            disp, waits, up, allocs);
    ck_assert(disp > 10);
    ck_assert_msg(allocs == 0, "%g descriptor allocations per step after warm-up", allocs);
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.json", out);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char text[16384] = {0};
    ck_assert_int_gt((int)fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "\"vulkan\""));
    ck_assert_ptr_nonnull(strstr(text, "\"descriptor_allocs_per_step\": 0"));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Per-step counters of a short bundled-scene run (steps 2..6; no densification, evaluation or
 * checkpoint falls in them): what each step costs today, so a change that adds a round trip
 * or a descriptor allocation shows. */
START_TEST(splat_train_counters) {
    char out[] = "/tmp/polyak_vkres_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(out));
    gs_train_options o = {.data = POLYAK_SOURCE_DIR "/assets/scene",
                          .out = out,
                          .device = "vk",
                          .iters = 6,
                          .downscale = 8,
                          .init_points = 400,
                          .threads = 1,
                          .densify_from = 100};
    o = gs_train_for_scene(gs_train_defaults(o), false);
    gs_trainer *t = NULL;
    ck_assert_msg(gs_trainer_create(&o, &t) == PK_OK, "%s", polyak_error());
    pk_device_counters a = {0}, b;
    gs_step_result r;
    int64_t n = 0;
    while (gs_trainer_step_count(t) < o.iters) {
        ck_assert_msg(gs_trainer_step(t, &r) == PK_OK, "%s", polyak_error());
        ck_assert(!r.densified && !r.evaluated && !r.checkpointed);
        if (gs_trainer_step_count(t) == 1) pk_device_get_counters(gs_trainer_device(t), &a);
        n = gs_trainer_step_count(t) - 1;
    }
    pk_device_get_counters(gs_trainer_device(t), &b);
    double k = 1.0 / (double)n;
    fprintf(stderr,
            "test_vk_resident: splat train per step: %.1f submits, %.1f host waits, %.0f bytes "
            "up, %.0f down, %.1f dispatches, %.1f barriers, %.1f descriptor allocations\n",
            (double)(b.submits - a.submits) * k, (double)(b.host_waits - a.host_waits) * k,
            (double)(b.bytes_to_device - a.bytes_to_device) * k,
            (double)(b.bytes_to_host - a.bytes_to_host) * k,
            (double)(b.dispatches - a.dispatches) * k, (double)(b.barriers - a.barriers) * k,
            (double)(b.descriptor_allocs - a.descriptor_allocs) * k);
    ck_assert_uint_eq(b.descriptor_allocs - a.descriptor_allocs, 0);
    /* one wait for the rasterizer's pair count, one for the loss with the gradients */
    ck_assert_uint_le(b.host_waits - a.host_waits, 2 * (uint64_t)n);
    ck_assert_uint_gt(b.dispatches - a.dispatches, 20 * (uint64_t)n);
    ck_assert_uint_lt(b.barriers - a.barriers, b.dispatches - a.dispatches);
    gs_eval ev;
    ck_assert_msg(gs_trainer_finish(t, &ev) == PK_OK, "%s", polyak_error());
    gs_trainer_destroy(t);
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.json", out);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 16];
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "\"vulkan\""));
    ck_assert_ptr_nonnull(strstr(text, "\"host_waits_per_step\""));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
    if (!pkt_have_vulkan()) {
        fprintf(stderr, "test_vk_resident: no Vulkan device; skipped\n");
        return 77;
    }
    Suite *s = suite_create("vk_resident");
    TCase *tc = tcase_create("vulkan");
    tcase_set_timeout(tc, 300); /* the shared machine runs at load 50 at times */
    tcase_add_test(tc, counters_exact);
    tcase_add_test(tc, barriers_only_on_dependence);
    tcase_add_test(tc, descriptor_cache_hits);
    tcase_add_test(tc, push_descriptors_allocate_nothing);
    tcase_add_test(tc, two_contexts_two_threads);
    tcase_add_test(tc, devices_list_parsing);
    tcase_add_test(tc, man_counters);
    tcase_add_test(tc, splat_train_counters);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
