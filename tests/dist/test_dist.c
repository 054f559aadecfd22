/* test_dist.c - data-parallel training under mpirun (tasks/common/dist.h), on loopback with
 * `mpirun --oversubscribe -np 2`:
 * - MAN: 2 ranks with global batch B (B/2 each) for 20 steps against one process that takes
 *   the same two halves in turn and averages their gradients (per-half batch norm, which is
 *   what the ranks compute: batch-norm statistics stay per rank without --sync-bn);
 *   parameters, EMA teachers and optimizer state bit-equal between the ranks, and equal to the
 *   one process within 1e-5 (relative, per tensor);
 * - MAN --sync-bn (batch norm over the global batch): for each of 8 steps, from the state the
 *   ranks hold before it, the ranks' averaged gradients against one process's gradients of
 *   the global batch B from that same state within 1e-4 relative per tensor, and the running
 *   statistics the step leaves within 1e-5 (see the test for why not a free-running run);
 * - DINO (ViT: no batch norm): `polyak pretrain` 2 ranks x batch B against 1 process x batch
 *   B for 20 steps: student, teacher and centre within 5e-4 relative per tensor (measured
 *   <= 7e-6 on most seeds, 1.2e-4 on one in 17: the summation order of the centre and of the
 *   reduction differ, and AdamW magnifies noise on near-zero gradients), except the key
 *   third of each attention's qkv bias: softmax ignores a shift of the keys, so its true
 *   gradient is zero and what AdamW makes of the rounding noise (values ~1e-5, different
 *   noise in every summation order) is not compared; the run compares a hash of every rank's
 *   state before each checkpoint and fails when the ranks differ (teachers bit-equal);
 * - splat train on the bundled scene: held-out PSNR of 2 ranks (two views a step) no more
 *   than 0.2 dB below one process at equal steps; the same for `--model scaffold` (anchors and
 *   decoders averaged, growing / pruning statistics summed; the ranks' anchors compared
 *   after every growing step);
 * - failure: a rank killed mid-run ends the job within seconds with mpirun's message naming
 *   it, the last checkpoint stays readable and `--resume` with 1 rank finishes; a rank that
 *   fails with an error ends every rank with a message naming it; a rank that stops answering
 *   ends the job at the collective deadline (POLYAK_DIST_TIMEOUT).
 * - the primitives (sums, max, broadcast, any, check_same, shards, gradient and tensor
 *   averaging on the CPU and, where a Vulkan device exists, staged through the host), each
 *   against the other rank's random data, which every rank can make;
 * The whole program is skipped (77) only where mpirun is absent or the build has no MPI.
 * Inputs (batches, seeds) are fresh random numbers each run. */
#define _GNU_SOURCE /* mkdtemp, asprintf */
#include <check.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backbone.h"
#include "checkpoint.h"
#include "image.h"
#include "dist.h"
#include "man.h"
#include "pk_test.h"
#include "nn/vit.h"
#include "safetensors.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define STEPS 20
#define SYNC_STEPS 8 /* see man_sync_bn_matches_one_process_batch */
#define BATCH 8      /* global: 4 per rank */
#define IMG 12

static char g_exe[PATH_MAX], g_bin[PATH_MAX]; /* this program, and build/polyak */
static pkt_rng g_rng;

static void setup(void) {
    /* TEST_DIST_SEED=N repeats a run whose seed a failure printed */
    const char *env = getenv("TEST_DIST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    g_rng.s = seed;
    fprintf(stderr, "test_dist: seed %llu\n", (unsigned long long)seed);
}

static char *tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-dist-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

static void rmrf(char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs a shell command; returns its exit status (-signal when killed), its output in log. */
static int sh(const char *cmd, const char *log) {
    char *full = NULL;
    ck_assert(asprintf(&full, "%s > '%s' 2>&1", cmd, log) > 0);
    int st = system(full);
    free(full);
    if (WIFSIGNALED(st)) return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* The text of a file (malloc'd; "" when unreadable). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

/* ---- the primitives: the ranks' program ---- */

static int g_fails;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: ", dist_rank());                                             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_fails++;                                                                             \
        }                                                                                          \
    } while (0)

/* Rank r's random floats (any rank can make any rank's). */
static void rank_data(uint64_t seed, int r, float *x, int64_t n) {
    pkt_rng g = {seed * 977 + (uint64_t)r * 0x9E3779B97F4A7C15ull};
    pkt_fill_uniform(&g, x, n, -2.0f, 2.0f);
}

/* dist_average_grads on a context on `device`: parameters with rank-specific gradients become
 * (g0 + g1) / 2 on both ranks, bit for bit (two-rank sums are exact in either order). */
static void check_grads(const char *device, uint64_t seed) {
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = device, .seed = 1};
    if (pk_ctx_create(&co, &c) != PK_OK) {
        EXPECT(false, "context on %s: %s", device, polyak_error());
        return;
    }
    /* odd sizes; the last (4.4 MB) does not fit the arena's first 4 MB block: two blocks */
    const int64_t shapes[3] = {37, 1000, 1100001};
    tensor *p[3];
    int64_t total = 0;
    for (int i = 0; i < 3; i++) {
        p[i] = pk_param_new(c, "p", 1, &shapes[i]);
        total += shapes[i];
    }
    float *mine = malloc(sizeof(float) * (size_t)total),
          *other = malloc(sizeof(float) * (size_t)total),
          *got = malloc(sizeof(float) * (size_t)total);
    rank_data(seed, dist_rank(), mine, total);
    rank_data(seed, 1 - dist_rank(), other, total);
    int64_t at = 0;
    for (int i = 0; i < 3; i++) {
        tensor_upload(p[i]->grad, mine + at);
        at += shapes[i];
    }
    pk_status s = dist_average_grads(c);
    EXPECT(s == PK_OK, "%s: dist_average_grads: %s", device, polyak_error());
    at = 0;
    for (int i = 0; i < 3; i++) {
        tensor_download(p[i]->grad, got + at);
        at += shapes[i];
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < total; i++)
        bad += got[i] != (mine[i] + other[i]) * 0.5f;
    EXPECT(bad == 0, "%s: %lld of %lld averaged gradients differ from (g0 + g1) / 2", device,
           (long long)bad, (long long)total);
    /* dist_average_grads_weighted: rank r's gradients count 0.75 (r + 1); then rank 0's
     * count 0 (a rank that stepped on a stand-in sample) */
    for (int zero = 0; zero < 2; zero++) {
        float w0 = zero ? 0.0f : 0.75f, w1 = 1.5f; /* ranks 0 and 1 */
        float wm = dist_rank() == 0 ? w0 : w1, wo = dist_rank() == 0 ? w1 : w0;
        at = 0;
        for (int i = 0; i < 3; i++) {
            tensor_upload(p[i]->grad, mine + at);
            at += shapes[i];
        }
        s = dist_average_grads_weighted(c, wm);
        EXPECT(s == PK_OK, "%s: dist_average_grads_weighted: %s", device, polyak_error());
        at = 0;
        for (int i = 0; i < 3; i++) {
            tensor_download(p[i]->grad, got + at);
            at += shapes[i];
        }
        bad = 0;
        for (int64_t i = 0; i < total; i++) {
            float a0 = mine[i] * wm, a1 = other[i] * wo;
            bad += got[i] != (a0 + a1) * 0.5f;
        }
        EXPECT(bad == 0, "%s: %lld of %lld weighted gradients differ (weights %g, %g)", device,
               (long long)bad, (long long)total, wm, wo);
    }
    /* dist_average_grads_of: the first and third parameters only (weights 0.75 and 1.5); the
     * second (1,000 floats between them, 4 KB: beyond the merging of neighbours) keeps this
     * rank's own values */
    {
        at = 0;
        for (int i = 0; i < 3; i++) {
            tensor_upload(p[i]->grad, mine + at);
            at += shapes[i];
        }
        float wm = dist_rank() == 0 ? 0.75f : 1.5f, wo = dist_rank() == 0 ? 1.5f : 0.75f;
        s = dist_average_grads_of(c, (tensor *[]){p[2], p[0]}, 2, wm);
        EXPECT(s == PK_OK, "%s: dist_average_grads_of: %s", device, polyak_error());
        at = 0;
        for (int i = 0; i < 3; i++) {
            tensor_download(p[i]->grad, got + at);
            at += shapes[i];
        }
        bad = 0;
        for (int64_t i = 0; i < total; i++) {
            bool middle = i >= shapes[0] && i < shapes[0] + shapes[1];
            float a0 = mine[i] * wm, a1 = other[i] * wo;
            bad += middle ? got[i] != mine[i] : got[i] != (a0 + a1) * 0.5f;
        }
        EXPECT(bad == 0, "%s: %lld of %lld values wrong after dist_average_grads_of", device,
               (long long)bad, (long long)total);
    }
    /* dist_average_tensors: the same over plain tensors */
    tensor *t = tensor_new(c->params, PK_F32, 1, &shapes[1]);
    tensor_upload(t, mine);
    EXPECT(dist_average_tensors(&t, 1) == PK_OK, "%s: average_tensors: %s", device, polyak_error());
    tensor_download(t, got);
    bad = 0;
    for (int64_t i = 0; i < shapes[1]; i++)
        bad += got[i] != (mine[i] + other[i]) * 0.5f;
    EXPECT(bad == 0, "%s: %lld averaged tensor values differ", device, (long long)bad);
    pk_device_sync(c->dev);
    EXPECT(pk_device_validation_errors(c->dev) == 0, "%s: validation messages", device);
    free(mine), free(other), free(got);
    pk_ctx_destroy(c);
}

/* mpirun -np 2 <this> --child-api SEED [vk]: every primitive against what the other rank
 * holds (each rank can make both ranks' random data). */
static int child_api(int argc, char **argv) {
    if (argc < 3 || dist_init(&argc, &argv) != PK_OK || dist_size() != 2) return 2;
    uint64_t seed = strtoull(argv[2], NULL, 10);
    int r = dist_rank();
    enum { N = 1031 };
    float a[N], b[N], x[N];
    rank_data(seed, r, x, N);
    rank_data(seed, 0, a, N);
    rank_data(seed, 1, b, N);
    EXPECT(dist_sum_f32(x, N) == PK_OK, "sum: %s", polyak_error());
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += x[i] != a[i] + b[i];
    EXPECT(bad == 0, "sum_f32: %d of %d wrong", bad, N);
    rank_data(seed, r, x, N);
    EXPECT(dist_max_f32(x, N) == PK_OK, "max: %s", polyak_error());
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += x[i] != (a[i] > b[i] ? a[i] : b[i]);
    EXPECT(bad == 0, "max_f32: %d of %d wrong", bad, N);
    double d[2] = {r + 0.25, 1e300 * (r + 1)};
    EXPECT(dist_sum_f64(d, 2) == PK_OK && d[0] == 1.5 && d[1] == 3e300, "sum_f64 %g %g", d[0],
           d[1]);
    int64_t k[1] = {((int64_t)1 << 40) + r};
    EXPECT(dist_sum_i64(k, 1) == PK_OK && k[0] == ((int64_t)1 << 41) + 1, "sum_i64 %lld",
           (long long)k[0]);
    rank_data(seed, r, x, N);
    EXPECT(dist_bcast(x, sizeof x, 0) == PK_OK && memcmp(x, a, sizeof a) == 0, "bcast");
    bool any = false;
    EXPECT(dist_any(r == 1, &any) == PK_OK && any, "any: rank 1's flag not seen");
    EXPECT(dist_any(false, &any) == PK_OK && !any, "any: a flag nobody set");
    EXPECT(dist_check_same(seed, "the seed") == PK_OK, "check_same of equal values failed");
    EXPECT(dist_check_same(seed + (uint64_t)r, "a value") != PK_OK &&
               strstr(polyak_error(), "differs between the ranks"),
           "check_same of different values passed (%s)", polyak_error());
    int64_t f = 0, n = 0;
    dist_shard(7, &f, &n);
    EXPECT(f == (r ? 3 : 0) && n == (r ? 4 : 3), "shard of 7: [%lld, +%lld)", (long long)f,
           (long long)n);
    EXPECT(dist_check_batch(7, "b") != PK_OK && dist_check_batch(8, "b") == PK_OK, "check_batch");
    /* gather_rows: 7 rows of 5, each rank holding its shard and NaN elsewhere; every rank
     * ends with both ranks' rows, bit for bit */
    {
        float rows[35], want[35];
        rank_data(seed + 5, 0, want, 35);
        rank_data(seed + 5, 1, rows, 35);
        memcpy(want + 15, rows + 15, sizeof(float) * 20); /* rank 1 owns rows 3..6 */
        for (int i = 0; i < 35; i++)
            rows[i] = (i < 15) == (r == 0) ? want[i] : NAN;
        EXPECT(dist_gather_rows_f32(rows, 7, 5) == PK_OK && memcmp(rows, want, sizeof rows) == 0,
               "gather_rows: the rows differ from the owners'");
    }
    check_grads("cpu", seed);
    if (argc > 3) check_grads(argv[3], seed); /* Vulkan: staged through the host */
    dist_finalize();
    return g_fails ? 1 : 0;
}

/* ---- MAN: the ranks' program (this executable under mpirun) ---- */

/* A man model on 12x12 one-channel images, DGL+MAN with 2 modules (EMA teachers, batch norm). */
static man_model *man_small(pk_ctx *c, uint64_t seed, bool sync_bn) {
    man_config cfg = {.arch = MAN_RESNET32,
                      .method = MAN_DGL_MAN,
                      .blocks = 2,
                      .in_channels = 1,
                      .height = IMG,
                      .width = IMG,
                      .classes = 10,
                      .lr = 0.05,
                      .batch = BATCH,
                      .seed = seed,
                      .sync_bn = sync_bn};
    man_model *m = NULL;
    if (man_model_create(c, &cfg, &m) != PK_OK) return NULL;
    return m;
}

/* The global batch of step s: images, targets, labels from (seed, s). */
static void man_global_batch(uint64_t seed, int s, float *x, float *t, int32_t *y) {
    pkt_rng r = {seed * 31 + (uint64_t)s * 0x9E3779B97F4A7C15ull};
    pkt_fill_uniform(&r, t, BATCH * IMG * IMG, 0.0f, 1.0f);
    for (int i = 0; i < BATCH * IMG * IMG; i++)
        x[i] = (t[i] - 0.5f) / 0.5f;
    for (int i = 0; i < BATCH; i++)
        y[i] = (int32_t)pkt_uniform(&r, 0.0f, 10.0f) % 10;
}

/* True for the state compared: parameters, EMA teachers, optimizer moments (batch-norm
 * running statistics stay per rank without --sync-bn). */
static bool compared(const char *name) { return !strstr(name, ".running_"); }

/* Writes the compared state of m to path (with all: the running statistics too). */
static pk_status save_state_as(man_model *m, const char *path, bool all) {
    man_state_entry *e = NULL;
    int n = 0;
    PK_TRY(man_state_list(m, &e, &n));
    st_write_tensor *w = calloc((size_t)n, sizeof *w);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    int k = 0;
    pk_status s = PK_OK;
    for (int i = 0; i < n && s == PK_OK; i++) {
        if (!all && !compared(e[i].name)) continue;
        bufs[k] = malloc(sizeof(float) * (size_t)tensor_numel(e[i].t));
        s = tensor_download(e[i].t, bufs[k]);
        w[k] = (st_write_tensor){e[i].name, ST_F32, e[i].t->ndim, e[i].t->shape, bufs[k]};
        k++;
    }
    if (s == PK_OK) s = safetensors_write(path, w, k, NULL, NULL, 0);
    for (int i = 0; i < k; i++)
        free(bufs[i]);
    free(bufs), free(w), free(e);
    return s;
}

/* Writes the compared state of m (no running statistics) to path. */
static pk_status save_state(man_model *m, const char *path) {
    return save_state_as(m, path, false);
}

/* Writes the gradients of m's trainable parameters to path. */
static pk_status save_grads(man_model *m, const char *path) {
    man_state_entry *e = NULL;
    int n = 0;
    PK_TRY(man_state_list(m, &e, &n));
    st_write_tensor *w = calloc((size_t)n, sizeof *w);
    float **bufs = calloc((size_t)n, sizeof *bufs);
    int k = 0;
    pk_status s = PK_OK;
    for (int i = 0; i < n && s == PK_OK; i++) {
        if (!e[i].t->requires_grad || !e[i].t->grad) continue;
        bufs[k] = malloc(sizeof(float) * (size_t)tensor_numel(e[i].t));
        s = tensor_download(e[i].t->grad, bufs[k]);
        w[k] = (st_write_tensor){e[i].name, ST_F32, e[i].t->ndim, e[i].t->shape, bufs[k]};
        k++;
    }
    if (s == PK_OK) s = safetensors_write(path, w, k, NULL, NULL, 0);
    for (int i = 0; i < k; i++)
        free(bufs[i]);
    free(bufs), free(w), free(e);
    return s;
}

/* mpirun -np 2 <this> --child-man DIR SEED [sync]: 20 data-parallel steps, state to
 * DIR/rank<r>. With `sync` (batch norm over the global batch): SYNC_STEPS steps, and before
 * each step s the whole state (running statistics too) to DIR/rank<r>-s<s> and the averaged
 * gradients of step s to DIR/rank<r>-g<s>; the state after the last step is -s<SYNC_STEPS>. */
static int child_man(int argc, char **argv) {
    if (argc < 4 || dist_init(&argc, &argv) != PK_OK) return 2;
    uint64_t seed = strtoull(argv[3], NULL, 10);
    bool sync = argc > 4 && strcmp(argv[4], "sync") == 0;
    int steps = sync ? SYNC_STEPS : STEPS;
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = "cpu", .seed = seed, .threads = 1};
    man_model *m = NULL;
    pk_status s = pk_ctx_create(&co, &c);
    if (s == PK_OK && !(m = man_small(c, seed, sync))) s = PK_ERR_INVALID;
    float *x = malloc(sizeof(float) * BATCH * IMG * IMG),
          *t = malloc(sizeof(float) * BATCH * IMG * IMG);
    int32_t y[BATCH];
    int64_t first = 0, n = 0;
    dist_shard(BATCH, &first, &n);
    for (int step = 0; step < steps && s == PK_OK; step++) {
        man_global_batch(seed, step, x, t, y);
        man_batch b = {.x = x + first * IMG * IMG,
                       .target = t + first * IMG * IMG,
                       .labels = y + first,
                       .n = (int)n};
        optim_set_lr(man_model_optimizer(m), 0, 0.05);
        if (!sync) {
            s = man_train_step(m, &b, NULL);
            continue;
        }
        char sp[600], gp[600];
        snprintf(sp, sizeof sp, "%s/rank%d-s%d.safetensors", argv[2], dist_rank(), step);
        snprintf(gp, sizeof gp, "%s/rank%d-g%d.safetensors", argv[2], dist_rank(), step);
        s = save_state_as(m, sp, true);
        if (s == PK_OK) s = man_compute_grads(m, &b, NULL, NULL);
        if (s == PK_OK) s = dist_average_grads(c); /* what man_train_step does */
        if (s == PK_OK) s = save_grads(m, gp);
        if (s == PK_OK) s = man_apply_step(m);
    }
    char path[600];
    if (sync)
        snprintf(path, sizeof path, "%s/rank%d-s%d.safetensors", argv[2], dist_rank(), steps);
    else
        snprintf(path, sizeof path, "%s/rank%d.safetensors", argv[2], dist_rank());
    if (s == PK_OK) s = save_state_as(m, path, sync);
    if (s != PK_OK) fprintf(stderr, "rank %d: %s\n", dist_rank(), polyak_error());
    free(x), free(t);
    man_model_destroy(m);
    pk_ctx_destroy(c);
    dist_finalize();
    return s == PK_OK ? 0 : 1;
}

/* The gradient arena's used bytes as host floats (CPU context), into/out of buf. */
static size_t grads_copy(pk_ctx *c, float *buf, bool out) {
    size_t at = 0;
    for (int i = 0; pk_arena_block(c->grads, i); i++) {
        pk_block *b = pk_arena_block(c->grads, i);
        size_t n = pk_arena_block_used(c->grads, i) / sizeof(float);
        if (buf) {
            if (out)
                memcpy(buf + at, b->host, n * sizeof(float));
            else
                memcpy(b->host, buf + at, n * sizeof(float));
        }
        at += n;
    }
    return at;
}

/* Largest relative difference ||a - b|| / ||b|| over the tensors of two state files, and
 * whether every tensor is bit-equal. */
static double compare_files(const char *pa, const char *pb, bool *bits, int *count) {
    st_file a, b;
    ck_assert_msg(safetensors_open(pa, &a) == PK_OK, "%s", polyak_error());
    ck_assert_msg(safetensors_open(pb, &b) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(a.n, b.n);
    double worst = 0;
    *bits = true;
    for (int i = 0; i < a.n; i++) {
        const st_tensor *ta = &a.tensors[i], *tb = safetensors_find(&b, ta->name);
        ck_assert_msg(tb && tb->nbytes == ta->nbytes, "%s: %s missing or resized", pb, ta->name);
        *bits = *bits && memcmp(ta->data, tb->data, ta->nbytes) == 0;
        size_t n = st_tensor_numel(ta);
        float *fa = malloc(sizeof(float) * n), *fb = malloc(sizeof(float) * n);
        st_tensor_to_f32(ta, fa), st_tensor_to_f32(tb, fb);
        double e = pkt_nerr(fa, fb, (int64_t)n);
        if (!(e <= worst)) worst = e; /* NaN propagates */
        free(fa), free(fb);
    }
    *count = a.n;
    safetensors_close(&a), safetensors_close(&b);
    return worst;
}

START_TEST(primitives_on_two_ranks) {
    char *dir = tmpdir();
    char cmd[16384], log[600];
    snprintf(log, sizeof log, "%s/mpirun.log", dir);
    snprintf(cmd, sizeof cmd, "mpirun --oversubscribe -np 2 '%s' --child-api %llu %s", g_exe,
             (unsigned long long)(g_rng.s | 1), pkt_have_vulkan() ? "vk" : "");
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "the primitives failed on 2 ranks (%d): %s", rc, out);
    free(out);
    rmrf(dir);
}
END_TEST

START_TEST(man_two_ranks_match_one_process) {
    char *dir = tmpdir();
    uint64_t seed = g_rng.s | 1;
    char cmd[16384], log[600];
    snprintf(log, sizeof log, "%s/mpirun.log", dir);
    snprintf(cmd, sizeof cmd, "mpirun --oversubscribe -np 2 '%s' --child-man '%s' %llu", g_exe, dir,
             (unsigned long long)seed);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "2 ranks failed (%d): %s", rc, out);
    free(out);
    /* one process: the same global batches, the two halves in turn, gradients averaged */
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = "cpu", .seed = seed, .threads = 1}; /* as each rank */
    ck_assert_msg(pk_ctx_create(&co, &c) == PK_OK, "%s", polyak_error());
    man_model *m = man_small(c, seed, false);
    ck_assert_ptr_nonnull(m);
    char p0[600], p1[600], pr[600];
    snprintf(pr, sizeof pr, "%s/initial.safetensors", dir);
    ck_assert(save_state(m, pr) == PK_OK);
    size_t ng = grads_copy(c, NULL, true);
    float *g0 = malloc(sizeof(float) * ng), *g1 = malloc(sizeof(float) * ng);
    float *x = malloc(sizeof(float) * BATCH * IMG * IMG),
          *t = malloc(sizeof(float) * BATCH * IMG * IMG);
    int32_t y[BATCH];
    for (int step = 0; step < STEPS; step++) {
        man_global_batch(seed, step, x, t, y);
        for (int half = 0; half < 2; half++) {
            int o = half * BATCH / 2;
            man_batch b = {.x = x + o * IMG * IMG,
                           .target = t + o * IMG * IMG,
                           .labels = y + o,
                           .n = BATCH / 2};
            ck_assert_msg(man_compute_grads(m, &b, NULL, NULL) == PK_OK, "%s", polyak_error());
            grads_copy(c, half ? g1 : g0, true);
        }
        for (size_t i = 0; i < ng; i++)
            g0[i] = (g0[i] + g1[i]) * 0.5f;
        grads_copy(c, g0, false);
        optim_set_lr(man_model_optimizer(m), 0, 0.05);
        ck_assert_msg(man_apply_step(m) == PK_OK, "%s", polyak_error());
    }
    snprintf(p0, sizeof p0, "%s/rank0.safetensors", dir);
    snprintf(p1, sizeof p1, "%s/rank1.safetensors", dir);
    bool bits = false;
    int n = 0;
    double e01 = compare_files(p0, p1, &bits, &n);
    ck_assert_msg(bits, "ranks 0 and 1 differ (relative %g)", e01);
    /* the runs moved the parameters (the comparison below is not of two initial states) */
    bool same = true;
    double moved = compare_files(p0, pr, &same, &n);
    ck_assert_msg(!same && moved > 1e-3, "20 steps changed nothing (%g)", moved);
    snprintf(pr, sizeof pr, "%s/one.safetensors", dir);
    ck_assert(save_state(m, pr) == PK_OK);
    double e = compare_files(p0, pr, &bits, &n);
    fprintf(stderr, "man: %d tensors, 2 ranks vs 1 process: largest relative difference %g%s\n", n,
            e, bits ? " (bit-equal)" : "");
    ck_assert_msg(e <= 1e-5, "2 ranks vs 1 process: relative difference %g > 1e-5", e);
    free(g0), free(g1), free(x), free(t);
    man_model_destroy(m);
    pkt_ctx_done(c);
    rmrf(dir);
}
END_TEST

/* The largest relative difference ||a - b|| / ||b|| over the tensors of file pa whose names
 * contain `only` (NULL: all), against the tensors of the same names in pb; the worst one's
 * name into worst. */
static double compare_some(const char *pa, const char *pb, const char *only, char worst[96]) {
    st_file a, b;
    ck_assert_msg(safetensors_open(pa, &a) == PK_OK, "%s", polyak_error());
    ck_assert_msg(safetensors_open(pb, &b) == PK_OK, "%s", polyak_error());
    double e = 0;
    int seen = 0;
    for (int i = 0; i < a.n; i++) {
        const st_tensor *ta = &a.tensors[i], *tb = safetensors_find(&b, ta->name);
        if (only && !strstr(ta->name, only)) continue;
        ck_assert_msg(tb && tb->nbytes == ta->nbytes, "%s: %s missing or resized", pb, ta->name);
        size_t n = st_tensor_numel(ta);
        float *fa = malloc(sizeof(float) * n), *fb = malloc(sizeof(float) * n);
        st_tensor_to_f32(ta, fa), st_tensor_to_f32(tb, fb);
        double d = pkt_nerr(fa, fb, (int64_t)n);
        if (!(d <= e)) { /* NaN propagates */
            e = d;
            snprintf(worst, 96, "%s", ta->name);
        }
        seen++;
        free(fa), free(fb);
    }
    ck_assert_msg(seen > 0, "%s: no tensor named *%s*", pa, only ? only : "");
    safetensors_close(&a), safetensors_close(&b);
    return e;
}

/* Sets every state tensor of m (parameters, running statistics, EMA teachers, optimizer
 * state) to the values in the state file at path. */
static void load_state(man_model *m, const char *path) {
    st_file f;
    ck_assert_msg(safetensors_open(path, &f) == PK_OK, "%s", polyak_error());
    man_state_entry *e = NULL;
    int n = 0;
    ck_assert_msg(man_state_list(m, &e, &n) == PK_OK, "%s", polyak_error());
    for (int i = 0; i < n; i++) {
        const st_tensor *t = safetensors_find(&f, e[i].name);
        int64_t k = tensor_numel(e[i].t);
        ck_assert_msg(t && (int64_t)st_tensor_numel(t) == k, "%s: %s missing or resized", path,
                      e[i].name);
        float *v = malloc(sizeof(float) * (size_t)k);
        st_tensor_to_f32(t, v);
        ck_assert_msg(tensor_upload(e[i].t, v) == PK_OK, "%s", polyak_error());
        free(v);
    }
    free(e);
    safetensors_close(&f);
}

/* --sync-bn: 2 ranks x B/2 with batch norm over the global batch against one process of
 * batch B, step by step: before each of SYNC_STEPS steps the ranks write their whole state
 * and then the step's averaged gradients; the one process takes that state, computes the
 * gradients of the same global batch (plain batch norm over B) and must agree within 1e-4
 * relative per tensor (measured <= 6e-6: summation order only), and the running statistics
 * its forward leaves must match what the ranks hold after the step within 1e-5 (global mean,
 * unbiased global variance). Steps after the first check the backward with gamma != 1 and
 * beta != 0 (the initial values hide a term that scales with them).
 * Why not one free-running comparison over several steps (what this test did before, with a
 * tolerance of 1e-4 after 2 steps; it failed for about 2 seeds in 3): the trajectory of this
 * ResNet is not stable under rounding. One process of batch B against the same process with
 * the two halves of every batch swapped (a mathematically equal computation, no MPI) gives
 * gradients 8.1e-3 apart at the second step for seed 11, the size of 2 ranks against 1
 * process (seed 83: 1.5e-2, seed 2448879409: 3.5e-2; most seeds ~5e-6), while the states
 * entering that step agree within 3e-7. Measured for seed 2448879409: at the second step one
 * ReLU input of layer3.3.bn1 (terms of size 2.0) is -1.67e-6 on the ranks and +1.91e-6 in one
 * process; it switches sides, beta's gradient there (sum of dY) moves by 3.5 % while gamma's
 * (sum of dY x-hat, x-hat ~ 0 at that element) agrees within 4e-6, every gradient upstream
 * follows, and momentum SGD carries the jump into every later step. From the ranks' own state
 * before each step the comparison stays at the rounding of one step (measured 2e-7). */
START_TEST(man_sync_bn_matches_one_process_batch) {
    char *dir = tmpdir();
    uint64_t seed = g_rng.s | 1;
    char cmd[16384], log[600];
    snprintf(log, sizeof log, "%s/mpirun.log", dir);
    snprintf(cmd, sizeof cmd, "mpirun --oversubscribe -np 2 '%s' --child-man '%s' %llu sync", g_exe,
             dir, (unsigned long long)seed);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "2 ranks failed (%d): %s", rc, out);
    free(out);
    char p0[600], p1[600], pr[600], worst[96] = "";
    /* the ranks end bit-equal, running statistics included, and the run moved the state */
    snprintf(p0, sizeof p0, "%s/rank0-s%d.safetensors", dir, SYNC_STEPS);
    snprintf(p1, sizeof p1, "%s/rank1-s%d.safetensors", dir, SYNC_STEPS);
    bool bits = false;
    int n = 0;
    double e01 = compare_files(p0, p1, &bits, &n);
    ck_assert_msg(bits, "ranks 0 and 1 differ (relative %g)", e01);
    snprintf(p1, sizeof p1, "%s/rank0-s0.safetensors", dir);
    double moved = compare_files(p0, p1, &bits, &n);
    ck_assert_msg(!bits && moved > 1e-3, "%d steps changed nothing (%g)", SYNC_STEPS, moved);
    pk_ctx *c = NULL;
    pk_ctx_options co = {.device = "cpu", .seed = seed, .threads = 1};
    ck_assert_msg(pk_ctx_create(&co, &c) == PK_OK, "%s", polyak_error());
    man_model *m = man_small(c, seed, false);
    ck_assert_ptr_nonnull(m);
    float *x = malloc(sizeof(float) * BATCH * IMG * IMG),
          *t = malloc(sizeof(float) * BATCH * IMG * IMG);
    int32_t y[BATCH];
    double eg = 0, er = 0;
    for (int step = 0; step < SYNC_STEPS; step++) {
        snprintf(p0, sizeof p0, "%s/rank0-s%d.safetensors", dir, step);
        load_state(m, p0);
        man_global_batch(seed, step, x, t, y);
        man_batch b = {.x = x, .target = t, .labels = y, .n = BATCH};
        ck_assert_msg(man_compute_grads(m, &b, NULL, NULL) == PK_OK, "%s", polyak_error());
        snprintf(pr, sizeof pr, "%s/one-g%d.safetensors", dir, step);
        ck_assert_msg(save_grads(m, pr) == PK_OK, "%s", polyak_error());
        snprintf(p0, sizeof p0, "%s/rank0-g%d.safetensors", dir, step);
        double e = compare_some(p0, pr, NULL, worst);
        ck_assert_msg(e <= 1e-4,
                      "step %d: gradients of 2 ranks vs 1 process of batch %d: relative "
                      "difference %g (%s) > 1e-4",
                      step, BATCH, e, worst);
        if (e > eg) eg = e;
        snprintf(pr, sizeof pr, "%s/one-s%d.safetensors", dir, step + 1);
        ck_assert_msg(save_state_as(m, pr, true) == PK_OK, "%s", polyak_error());
        snprintf(p0, sizeof p0, "%s/rank0-s%d.safetensors", dir, step + 1);
        e = compare_some(p0, pr, ".running_", worst);
        ck_assert_msg(e <= 1e-5,
                      "step %d: running statistics of 2 ranks vs 1 process: relative difference "
                      "%g (%s) > 1e-5",
                      step, e, worst);
        if (e > er) er = e;
    }
    fprintf(stderr,
            "man --sync-bn: %d steps, 2 ranks vs 1 process of batch %d from the same state: "
            "largest relative difference %g (gradients), %g (running statistics)\n",
            SYNC_STEPS, BATCH, eg, er);
    free(x), free(t);
    man_model_destroy(m);
    pkt_ctx_done(c);
    rmrf(dir);
}
END_TEST

/* ---- DINO through the CLI ---- */

#define DINO_ARGS                                                                                  \
    "pretrain --method dino --arch vit_nano_patch4_28 --dim 32 --depth 2 --heads 2 --epochs 1 "    \
    "--batch 8 --train-limit 160 --test-limit 32 --out-dim 64 --hidden 32 --bottleneck 16 "        \
    "--knn-k 5 --probe-epochs 1 --threads 1 --device cpu"

START_TEST(dino_two_ranks_match_one_process) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    char cmd[16384], log[600], a[600], b[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(cmd, sizeof cmd, "'%s' " DINO_ARGS " --seed %llu --out '%s/one'", g_bin, seed, dir);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "1 process failed (%d): %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 '%s' " DINO_ARGS " --seed %llu --out '%s/two'", g_bin,
             seed, dir);
    rc = sh(cmd, log);
    out = slurp(log);
    ck_assert_msg(rc == 0, "2 ranks failed (%d): %s", rc, out);
    ck_assert_msg(strstr(out, "2 ranks (MPI)"), "no word of the ranks: %s", out);
    free(out);
    /* 160 images / batch 8 = 20 steps: the epoch's checkpoint is ckpt-20 */
    snprintf(a, sizeof a, "%s/one/ckpt-20.safetensors", dir);
    snprintf(b, sizeof b, "%s/two/ckpt-20.safetensors", dir);
    ckpt_file ca, cb;
    ck_assert_msg(checkpoint_open(a, &ca) == PK_OK, "%s", polyak_error());
    ck_assert_msg(checkpoint_open(b, &cb) == PK_OK, "%s", polyak_error());
    double worst = 0, moved = 0;
    int n = 0;
    for (int i = 0; i < ca.st.n; i++) {
        const st_tensor *ta = &ca.st.tensors[i];
        bool student = strncmp(ta->name, "student.", 8) == 0;
        if (!student && strncmp(ta->name, "teacher.", 8) && strcmp(ta->name, "dino.center"))
            continue;
        const st_tensor *tb = safetensors_find(&cb.st, ta->name);
        ck_assert_msg(tb && tb->nbytes == ta->nbytes, "%s: %s", b, ta->name);
        size_t m = st_tensor_numel(ta);
        float *fa = malloc(sizeof(float) * m), *fb = malloc(sizeof(float) * m);
        st_tensor_to_f32(ta, fa), st_tensor_to_f32(tb, fb);
        size_t len = strlen(ta->name);
        if (len > 13 && strcmp(ta->name + len - 13, "attn.qkv.bias") == 0)
            for (size_t j = m / 3; j < 2 * m / 3; j++) /* the key bias: see the file comment */
                fa[j] = fb[j] = 0;
        double e = pkt_nerr(fb, fa, (int64_t)m);
        if (!(e <= worst)) worst = e;
        n++;
        free(fa), free(fb);
        if (student) { /* the teacher of the same name: the student moved away from it */
            char tn[300];
            snprintf(tn, sizeof tn, "teacher.%s", ta->name + 8);
            const st_tensor *tt = safetensors_find(&ca.st, tn);
            ck_assert_ptr_nonnull(tt);
            float *fs = malloc(sizeof(float) * m), *ft = malloc(sizeof(float) * m);
            st_tensor_to_f32(ta, fs), st_tensor_to_f32(tt, ft);
            double d = pkt_nerr(fs, ft, (int64_t)m);
            if (d > moved) moved = d;
            free(fs), free(ft);
        }
    }
    fprintf(stderr, "dino: %d tensors, 2 ranks vs 1 process: largest relative difference %g\n", n,
            worst);
    ck_assert_msg(n > 10, "only %d tensors compared", n);
    ck_assert_msg(moved > 1e-4, "training moved nothing (%g)", moved);
    /* 5e-4: typically <= 7e-6, but one seed in 17 gave 1.2e-4 (seed printed above): AdamW
     * turns the rounding noise of near-zero gradients into lr-sized steps, as for the key bias.
     * A sharding or averaging error changes the gradients themselves (errors planted in the
     * MAN path measured 0.39 and 2.5). */
    ck_assert_msg(worst <= 5e-4, "2 ranks vs 1 process: relative difference %g > 5e-4", worst);
    checkpoint_close(&ca), checkpoint_close(&cb);
    rmrf(dir);
}
END_TEST

/* Waits up to `secs` for path to exist. */
static bool wait_file(const char *path, double secs) {
    for (double t0 = now_s(); now_s() - t0 < secs; usleep(50000))
        if (access(path, F_OK) == 0) return true;
    return false;
}

/* ---- splat train ---- */

/* The "psnr" of a metrics.json. */
static double metrics_psnr(const char *dir) {
    char p[700];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    char *t = slurp(p);
    const char *k = strstr(t, "\"psnr\":");
    double v = k ? atof(k + 7) : NAN;
    free(t);
    return v;
}

#define SPLAT_ARGS                                                                                 \
    "splat train --data '" POLYAK_SOURCE_DIR "/assets/scene' --iters 150 --downscale 8 "           \
    "--init-points 4000 --densify-interval 20 --threads 1 --device cpu"

START_TEST(splat_two_ranks_keep_psnr) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    char cmd[16384], log[600], a[600], b[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(a, sizeof a, "%s/one", dir);
    snprintf(b, sizeof b, "%s/two", dir);
    snprintf(cmd, sizeof cmd, "'%s' " SPLAT_ARGS " --seed %llu --out '%s'", g_bin, seed, a);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "1 process failed (%d): %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 '%s' " SPLAT_ARGS " --seed %llu --out '%s'", g_bin, seed,
             b);
    rc = sh(cmd, log);
    out = slurp(log);
    ck_assert_msg(rc == 0, "2 ranks failed (%d): %s", rc, out);
    free(out);
    double p1 = metrics_psnr(a), p2 = metrics_psnr(b);
    fprintf(stderr, "splat: held-out PSNR 1 process %.3f dB, 2 ranks %.3f dB (150 steps)\n", p1,
            p2);
    ck_assert_msg(isfinite(p1) && isfinite(p2) && p1 > 10, "PSNR %g / %g", p1, p2);
    ck_assert_msg(p2 >= p1 - 0.2, "2 ranks %.3f dB, more than 0.2 dB below 1 process %.3f", p2, p1);
    /* resuming with another number of ranks: 2 ranks stopped by Ctrl-C (SIGINT to rank 1:
     * every rank stops at the same step and rank 0 saves), then one process continues from
     * that checkpoint to step 150 and must keep the same PSNR bound */
    char pid1[600], ck[700], r21[600];
    snprintf(r21, sizeof r21, "%s/r21", dir);
    snprintf(pid1, sizeof pid1, "%s/pid.1", dir);
    snprintf(ck, sizeof ck, "%s/checkpoints/ckpt-20.safetensors", r21);
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 sh -c 'echo $$ > %s/pid.$OMPI_COMM_WORLD_RANK; exec "
             "\"%s\" " SPLAT_ARGS " --seed %llu --save-every 20 --out %s' > '%s' 2>&1",
             dir, g_bin, seed, r21, log);
    pid_t job = fork();
    ck_assert(job >= 0);
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ck_assert_msg(wait_file(ck, 240), "no checkpoint at step 20 after 240 s");
    char *p = slurp(pid1);
    pid_t victim = (pid_t)atoi(p);
    free(p);
    ck_assert(victim > 1);
    ck_assert_int_eq(kill(victim, SIGINT), 0);
    int st = 0;
    double t0 = now_s();
    pid_t w = 0;
    while ((w = waitpid(job, &st, WNOHANG)) == 0 && now_s() - t0 < 120)
        usleep(20000);
    if (w == 0) kill(job, SIGKILL), waitpid(job, &st, 0);
    out = slurp(log);
    ck_assert_msg(w == job, "2 ranks still ran 120 s after Ctrl-C: %s", out);
    ck_assert_msg(strstr(out, "interrupted at step"), "2 ranks did not stop on Ctrl-C: %s", out);
    ck_assert_msg(!strstr(out, "ending every rank"), "the stop aborted the job: %s", out);
    free(out);
    int64_t at = -1;
    char cks[700];
    snprintf(cks, sizeof cks, "%s/checkpoints", r21);
    ck_assert(checkpoint_find_latest(cks, &at) == PK_OK && at >= 20 && at < 150);
    snprintf(cmd, sizeof cmd, "'%s' " SPLAT_ARGS " --seed %llu --out '%s' --resume", g_bin, seed,
             r21);
    rc = sh(cmd, log);
    out = slurp(log);
    ck_assert_msg(rc == 0, "1 process resuming the 2 ranks' run failed (%d): %s", rc, out);
    ck_assert_msg(strstr(out, "resumed"), "did not resume: %s", out);
    free(out);
    double p3 = metrics_psnr(r21);
    fprintf(stderr, "splat: 2 ranks to step %lld, then 1 process to 150: %.3f dB\n", (long long)at,
            p3);
    ck_assert_msg(p3 >= p1 - 0.2, "resumed %.3f dB, more than 0.2 dB below 1 process %.3f", p3, p1);
    rmrf(dir);
}
END_TEST

/* ---- splat train --model scaffold ---- */

/* The number of Gaussians in the first and the last row of a splat run's log.csv. */
static void log_gaussians(const char *dir, long *first, long *last) {
    char p[700];
    snprintf(p, sizeof p, "%s/log.csv", dir);
    char *t = slurp(p);
    *first = *last = -1;
    for (char *line = strchr(t, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long step = 0, g = -1;
        double loss, psnr;
        if (sscanf(line + 1, "%ld,%lf,%lf,%ld", &step, &loss, &psnr, &g) != 4) continue;
        if (*first < 0) *first = g;
        *last = g;
    }
    free(t);
}

/* anchors grown and pruned at steps 10, 20, ..., 50 (the short run's window: until iters / 2) */
#define SCAFFOLD_ARGS                                                                              \
    "splat train --model scaffold --data '" POLYAK_SOURCE_DIR "/assets/scene' --iters 120 "        \
    "--anchor-interval 10 --downscale 8 --init-points 4000 --threads 1 --device cpu"

START_TEST(scaffold_two_ranks_keep_psnr) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    char cmd[16384], log[600], a[600], b[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(a, sizeof a, "%s/one", dir);
    snprintf(b, sizeof b, "%s/two", dir);
    snprintf(cmd, sizeof cmd, "'%s' " SCAFFOLD_ARGS " --seed %llu --out '%s'", g_bin, seed, a);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == 0, "1 process failed (%d): %s", rc, out);
    free(out);
    /* every rank grows and prunes from the summed statistics; the run fails unless the
     * ranks' anchors, their parameters, Adam moments and opacity statistics hash the same
     * after each of the 5 adjustments (checked: without the allreduce of the anchors'
     * gradients and statistics it fails at the first; whether any anchor is grown or pruned
     * in 120 steps depends on the seed: 39,940 -> 14,740 neural Gaussians on one, none on
     * another) */
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 '%s' " SCAFFOLD_ARGS " --seed %llu --out '%s'", g_bin,
             seed, b);
    rc = sh(cmd, log);
    out = slurp(log);
    ck_assert_msg(rc == 0, "2 ranks failed (%d): %s", rc, out);
    free(out);
    double p1 = metrics_psnr(a), p2 = metrics_psnr(b);
    long g0 = 0, g1 = 0;
    log_gaussians(b, &g0, &g1);
    fprintf(stderr,
            "scaffold: held-out PSNR 1 process %.3f dB, 2 ranks %.3f dB (120 steps); 2 ranks' "
            "neural Gaussians %ld -> %ld\n",
            p1, p2, g0, g1);
    ck_assert_msg(isfinite(p1) && isfinite(p2) && p1 > 10, "PSNR %g / %g", p1, p2);
    ck_assert_msg(p2 >= p1 - 0.2, "2 ranks %.3f dB, more than 0.2 dB below 1 process %.3f", p2, p1);
    ck_assert_msg(g0 > 0 && g1 > 0, "no Gaussians in the 2 ranks' log (%ld, %ld)", g0, g1);
    rmrf(dir);
}
END_TEST

/* ---- checkpoints of two runs ---- */

/* The largest relative difference ||a - b|| / ||b|| over the F32 tensors of checkpoint pa
 * against pb, skipping names that start with any of skip[] (host timings, counts of correct
 * answers), with the key third of every attn.qkv.bias zeroed on both sides (softmax ignores a
 * shift of the keys: the true gradient of the key bias is zero, and what Adam makes of the
 * rounding noise differs with the summation order; see the file comment); the worst tensor's
 * name into worst; *n: tensors compared. */
static double compare_ckpts(const char *pa, const char *pb, const char *const *skip, int nskip,
                            char worst[96], int *n) {
    ckpt_file ca, cb;
    ck_assert_msg(checkpoint_open(pa, &ca) == PK_OK, "%s", polyak_error());
    ck_assert_msg(checkpoint_open(pb, &cb) == PK_OK, "%s", polyak_error());
    double e = 0;
    *n = 0;
    for (int i = 0; i < ca.st.n; i++) {
        const st_tensor *ta = &ca.st.tensors[i];
        bool skipped = ta->dtype != ST_F32;
        for (int k = 0; k < nskip && !skipped; k++)
            skipped = strncmp(ta->name, skip[k], strlen(skip[k])) == 0;
        if (skipped) continue;
        const st_tensor *tb = safetensors_find(&cb.st, ta->name);
        ck_assert_msg(tb && tb->nbytes == ta->nbytes, "%s: %s missing or resized", pb, ta->name);
        size_t m = st_tensor_numel(ta);
        float *fa = malloc(sizeof(float) * m), *fb = malloc(sizeof(float) * m);
        st_tensor_to_f32(ta, fa), st_tensor_to_f32(tb, fb);
        size_t len = strlen(ta->name);
        if (len > 13 && strcmp(ta->name + len - 13, "attn.qkv.bias") == 0)
            for (size_t j = m / 3; j < 2 * m / 3; j++)
                fa[j] = fb[j] = 0;
        double d = pkt_nerr(fa, fb, (int64_t)m);
        if (!(d <= e)) { /* NaN propagates */
            e = d;
            snprintf(worst, 96, "%s", ta->name);
        }
        (*n)++;
        free(fa), free(fb);
    }
    checkpoint_close(&ca), checkpoint_close(&cb);
    return e;
}

/* Column `col` (0-based) of every data row of a log.csv into v (at most max); returns the
 * row count. */
static int log_column(const char *dir, int col, double *v, int max) {
    char p[700];
    snprintf(p, sizeof p, "%s/log.csv", dir);
    char *t = slurp(p), *save = NULL;
    int n = 0, line = 0;
    for (char *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
        if (line == 0 || n == max) continue; /* the header */
        const char *f = l;
        for (int c = 0; c < col && f; c++) {
            f = strchr(f, ',');
            if (f) f++;
        }
        v[n++] = f ? atof(f) : NAN;
    }
    free(t);
    return n;
}

/* Runs `cmd` (its output in dir/run.log) and fails the test unless it exits with `want` and,
 * for a command with --resume, says it resumed from a checkpoint. */
static void run_ok(const char *dir, const char *cmd, int want, const char *what) {
    char log[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    int rc = sh(cmd, log);
    char *out = slurp(log);
    ck_assert_msg(rc == want, "%s: exit %d (expected %d): %s", what, rc, want, out);
    ck_assert_msg(!strstr(cmd, "--resume") || strstr(out, "resuming from"),
                  "%s: did not resume from a checkpoint: %s", what, out);
    free(out);
}

/* ---- cl (LAE) through the CLI ---- */

/* 6 images per class, 2 tasks of 3 and 7 classes (--first-task 3), batch 8, the last partial
 * batch of an epoch dropped (LAE's drop_last): task 1 has 18 images an epoch, 2 steps of 8;
 * task 2 has 42, 5 steps of 8 (shards of 4 and 4); epoch 1 of task 2 freezes the PETs (only the
 * head trains), the offline PETs follow from task 2 on: 14 steps, checkpoints ckpt-9 and
 * ckpt-14 kept */
#define CL_ARGS                                                                                    \
    "cl --method lae --pet adapter --tasks 2 --epochs 2 --freeze-epochs 1 --batch 8 "              \
    "--first-task 3 --train-per-class 6 --test-per-class 6 --threads 1 --device cpu"

/* A random grayscale vit_pico_patch7_28 saved as a Polyak backbone at path. */
static void make_backbone(const char *path, uint64_t seed) {
    pk_ctx *c = pkt_ctx("cpu");
    vit_config cfg;
    ck_assert_int_eq(vit_config_by_name("vit_pico_patch7_28", &cfg), PK_OK);
    cfg.in_chans = 1;
    pk_rng rng = {seed};
    vit *m = NULL;
    ck_assert_int_eq(vit_create(c, &cfg, "", &rng, &m), PK_OK);
    backbone_norm nm = {.present = true, .mean = {0.5f, 0.5f, 0.5f}, .std = {0.5f, 0.5f, 0.5f}};
    ck_assert_int_eq(backbone_save(m, path, &nm), PK_OK);
    vit_destroy(m);
    pkt_ctx_done(c);
}

/* The largest relative difference of the per-epoch training losses of two cl/ctp runs (column
 * 3 of their log.csv), which must have `rows` rows each. */
static double loss_difference(const char *a, const char *b, int rows) {
    double la[16], lb[16], e = 0;
    ck_assert_int_eq(log_column(a, 3, la, 16), rows);
    ck_assert_int_eq(log_column(b, 3, lb, 16), rows);
    for (int i = 0; i < rows; i++) {
        double d = fabs(la[i] - lb[i]) / fmax(fabs(lb[i]), 1e-6);
        if (!(d <= e)) e = d;
    }
    return e;
}

/* 2 ranks x global batch 8 against 1 process x batch 8 (parameters, offline PETs, Adam state,
 * epoch losses), and resuming mid-epoch with another number of ranks (2 -> 1 and 1 -> 2)
 * against the uninterrupted process. Tolerance 5e-4 relative per tensor: only the summation
 * order differs, typically 1e-6-1e-5 over these 14 steps, but seed 5585201353 gives 1.8e-4 on
 * offline.pet.blocks.0.adapter.down.bias (5 values of norm 2e-3, largest difference 3.4e-7 where
 * the weights beside it agree within 2e-6); a missing or doubled reduction is O(1). The offline
 * PETs (an EMA teacher)
 * are bit-equal across the ranks: the harness compares a hash of every rank's state before each
 * checkpoint and the run fails otherwise. */
START_TEST(cl_two_ranks_match_one_process) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    char bb[600], cmd[16384], a[700], b[700], worst[96] = "";
    snprintf(bb, sizeof bb, "%s/backbone.safetensors", dir);
    make_backbone(bb, seed * 7 + 1);
#define CL_RUN(NP, OUT, EXTRA)                                                                     \
    do {                                                                                           \
        snprintf(cmd, sizeof cmd,                                                                  \
                 "%s '%s' " CL_ARGS " --backbone '%s' --seed %llu --out '%s/%s' %s",               \
                 NP > 1 ? "mpirun --oversubscribe -np 2" : "", g_bin, bb, seed, dir, OUT, EXTRA);  \
        run_ok(dir, cmd, 0, OUT);                                                                  \
    } while (0)
    CL_RUN(1, "one", "");
    CL_RUN(2, "two", "");
    CL_RUN(2, "r21", "--stop-after-steps 3"); /* task 1, epoch 2, after step 1 of 2 */
    CL_RUN(1, "r21", "--resume");
    CL_RUN(1, "r12", "--stop-after-steps 6"); /* task 2, epoch 1 (frozen PETs), step 2 of 5 */
    CL_RUN(2, "r12", "--resume");
#undef CL_RUN
    const char *skip[] = {"cl.task_seconds", "cl.peak_memory", "cl.accuracy"};
    int n = 0;
    snprintf(a, sizeof a, "%s/two/ckpt-14.safetensors", dir);
    snprintf(b, sizeof b, "%s/one/ckpt-14.safetensors", dir);
    double e = compare_ckpts(a, b, skip, 3, worst, &n);
    /* the run moved the PETs (a comparison of untouched tensors proves nothing) */
    char w2[96];
    int n2 = 0;
    snprintf(a, sizeof a, "%s/one/ckpt-9.safetensors", dir);
    double moved = compare_ckpts(a, b, skip, 3, w2, &n2);
    ck_assert_msg(moved > 1e-4, "the last 5 steps changed nothing (%g)", moved);
    char one[700], two[700];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    double el = loss_difference(two, one, 4);
    fprintf(stderr,
            "cl: %d tensors, 2 ranks vs 1 process: largest relative difference %g (%s), epoch "
            "losses %g\n",
            n, e, worst, el);
    ck_assert_msg(n > 20, "only %d tensors compared", n);
    ck_assert_msg(e <= 5e-4, "cl: 2 ranks vs 1 process: relative difference %g (%s) > 5e-4", e,
                  worst);
    ck_assert_msg(el <= 1e-5, "cl: epoch losses of 2 ranks vs 1 process differ by %g", el);
    for (int k = 0; k < 2; k++) {
        const char *r = k ? "r12" : "r21";
        snprintf(a, sizeof a, "%s/%s/ckpt-14.safetensors", dir, r);
        e = compare_ckpts(a, b, skip, 3, worst, &n);
        snprintf(two, sizeof two, "%s/%s", dir, r);
        el = loss_difference(two, one, 4);
        fprintf(stderr, "cl: resumed %s: largest relative difference %g (%s), epoch losses %g\n",
                k ? "1 -> 2 ranks" : "2 -> 1 rank", e, worst, el);
        ck_assert_msg(e <= 5e-4, "cl resumed %s: relative difference %g (%s) > 5e-4", r, e, worst);
        ck_assert_msg(el <= 1e-5, "cl resumed %s: epoch losses differ by %g", r, el);
    }
    rmrf(dir);
}
END_TEST

/* ---- ctp through the CLI ---- */

/* A w x w picture of shape s (0 circle, 1 square, 2 triangle, 3 cross) in colour rgb, at a
 * random offset and size, on white. */
static void write_shape(const char *path, int w, int s, const uint8_t rgb[3], pkt_rng *r) {
    pk_image im;
    ck_assert_int_eq(image_create(&im, w, w, 3, 8), PK_OK);
    float cx = w / 2.0f + pkt_uniform(r, -2, 2), cy = w / 2.0f + pkt_uniform(r, -2, 2);
    float rad = w * pkt_uniform(r, 0.28f, 0.4f);
    for (int y = 0; y < w; y++)
        for (int x = 0; x < w; x++) {
            float dx = x + 0.5f - cx, dy = y + 0.5f - cy;
            bool in = s == 0   ? dx * dx + dy * dy < rad * rad
                      : s == 1 ? fabsf(dx) < rad * 0.8f && fabsf(dy) < rad * 0.8f
                      : s == 2 ? dy > -rad && dy < rad && fabsf(dx) < (dy + rad) * 0.5f
                               : (fabsf(dx) < rad * 0.3f || fabsf(dy) < rad * 0.3f) &&
                                     fabsf(dx) < rad && fabsf(dy) < rad;
            for (int k = 0; k < 3; k++)
                ((uint8_t *)im.data)[(y * w + x) * 3 + k] = in ? rgb[k] : 255;
        }
    ck_assert_int_eq(png_write(path, &im), PK_OK);
    image_free(&im);
}

/* dir/pairs.jsonl: 2 tasks (round: circle, cross; angular: square, triangle) x 4 colours = 8
 * captions a task, 4 pictures each (drawn from seed), the last 2 held out: 16 training pairs a
 * task. */
static void make_shapes(const char *dir, uint64_t seed) {
    const char *names[4] = {"circle", "square", "triangle", "cross"};
    const char *colours[4] = {"red", "green", "blue", "yellow"};
    const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 180, 40}, {30, 50, 220}, {230, 210, 20}};
    char p[700];
    snprintf(p, sizeof p, "%s/pairs.jsonl", dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    pkt_rng r = {seed};
    for (int s = 0; s < 4; s++)
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 4; k++) {
                snprintf(p, sizeof p, "%s/%s_%s_%d.png", dir, colours[c], names[s], k);
                write_shape(p, 16, s, rgb[c], &r);
                fprintf(f,
                        "{\"image\": \"%s_%s_%d.png\", \"caption\": \"a %s %s\", \"task\": "
                        "\"%s\", \"split\": \"%s\"}\n",
                        colours[c], names[s], k, colours[c], names[s],
                        s == 1 || s == 2 ? "angular" : "round", k >= 2 ? "test" : "train");
            }
    fclose(f);
}

/* CTP (compatible momentum, frozen reference, topology loss, ITC + ITA with queues) on the
 * shapes: batch 8 of 16 pairs a task, 3 epochs: 6 steps a task, 12 in all. */
#define CTP_ARGS                                                                                   \
    "ctp --method ctp --epochs 3 --batch 8 --lr 2e-3 --img-size 16 --patch 4 --dim 32 "            \
    "--depth 1 --heads 2 --txt-dim 32 --txt-depth 1 --txt-heads 2 --max-len 8 --vocab-size 60 "    \
    "--embed 32 --queue 24 --momentum 0.9 --threads 1 --device cpu --keep-optimizer"

/* 2 ranks x global batch 8 against 1 process x batch 8 after 12 steps: model, momentum
 * teacher, frozen reference, AdamW state and both feature queues within 1e-4 relative per
 * tensor (key bias excepted, see compare_ckpts; measured ~1e-6), epoch losses within 1e-5;
 * and a run stopped after task 1 in one process and resumed with 2 ranks against the
 * uninterrupted process. Each rank's losses span the global batch (the other rank's features
 * gathered as constants); computing them over each rank's half alone (ALBEF's per-rank in-batch
 * negatives) changes the loss itself. Teachers bit-equal across ranks: the harness's hash check
 * before each checkpoint. Planted errors: the gradient averaged instead of summed 0.75 (AdamW's
 * second moments; Adam's steps hardly change with the gradient's scale, so the optimizer state is
 * compared too), augmentation draws skipped for the other rank's rows 0.52, each rank's ITA rows
 * (scored on its own rows only) not weighted by their share 3.6
 * One AdamW throughout (--keep-optimizer): the default new AdamW at each task start takes a
 * first step of g / (|g| + eps), so components whose gradient is at rounding level step +-lr by
 * the summation order's sign (seed 3394716981: 0.107 relative on model.visual.cls_token after
 * task 2's first steps); tests/ctp checks the reset optimizer itself. */
START_TEST(ctp_two_ranks_match_one_process) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    make_shapes(dir, seed);
    char cmd[16384], a[700], b[700], worst[96] = "";
#define CTP_RUN(NP, OUT, EXTRA)                                                                    \
    do {                                                                                           \
        snprintf(cmd, sizeof cmd, "%s '%s' " CTP_ARGS " --data '%s' --seed %llu --out '%s/%s' %s", \
                 NP > 1 ? "mpirun --oversubscribe -np 2" : "", g_bin, dir, seed, dir, OUT, EXTRA); \
        run_ok(dir, cmd, 0, OUT);                                                                  \
    } while (0)
    CTP_RUN(1, "one", "");
    CTP_RUN(2, "two", "");
    CTP_RUN(1, "r12", "--stop-after-task 1");
    CTP_RUN(2, "r12", "--resume");
#undef CTP_RUN
    const char *skip[] = {"ctp.final", "ctp.recall"};
    int n = 0;
    snprintf(b, sizeof b, "%s/one/ckpt-12.safetensors", dir);
    snprintf(a, sizeof a, "%s/one/ckpt-6.safetensors", dir);
    double moved = compare_ckpts(a, b, skip, 2, worst, &n);
    ck_assert_msg(moved > 1e-3, "task 2 changed nothing (%g)", moved);
    char one[700], other[700];
    snprintf(one, sizeof one, "%s/one", dir);
    for (int k = 0; k < 2; k++) {
        const char *r = k ? "r12" : "two";
        snprintf(a, sizeof a, "%s/%s/ckpt-12.safetensors", dir, r);
        double e = compare_ckpts(a, b, skip, 2, worst, &n);
        snprintf(other, sizeof other, "%s/%s", dir, r);
        double el = loss_difference(other, one, 6);
        fprintf(stderr,
                "ctp: %s: %d tensors, largest relative difference %g (%s), epoch losses %g\n",
                k ? "resumed 1 -> 2 ranks" : "2 ranks vs 1 process", n, e, worst, el);
        ck_assert_msg(n > 40, "only %d tensors compared", n);
        ck_assert_msg(e <= 1e-4, "ctp %s: relative difference %g (%s) > 1e-4", r, e, worst);
        ck_assert_msg(el <= 1e-5, "ctp %s: epoch losses differ by %g", r, el);
    }
    rmrf(dir);
}
END_TEST

/* ---- resuming pretrain and splat train with another number of ranks ---- */

/* DINO stopped after epoch 1 of 2 in one process and resumed with 2 ranks, against the
 * uninterrupted process (the same bound as dino_two_ranks_match_one_process). */
START_TEST(dino_resumes_on_two_ranks) {
    char *dir = tmpdir();
    unsigned long long seed = (g_rng.s % 100000) + 1;
    char cmd[16384], a[700], b[700], worst[96] = "";
    const char *args = DINO_ARGS " --train-limit 80 --epochs 2"; /* 10 steps an epoch */
    snprintf(cmd, sizeof cmd, "'%s' %s --seed %llu --out '%s/one'", g_bin, args, seed, dir);
    run_ok(dir, cmd, 0, "1 process");
    snprintf(cmd, sizeof cmd, "'%s' %s --seed %llu --out '%s/r12' --stop-after 1", g_bin, args,
             seed, dir);
    run_ok(dir, cmd, 0, "1 process, epoch 1");
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 '%s' %s --seed %llu --out '%s/r12' --resume", g_bin,
             args, seed, dir);
    run_ok(dir, cmd, 0, "2 ranks, resumed");
    snprintf(a, sizeof a, "%s/r12/ckpt-20.safetensors", dir);
    snprintf(b, sizeof b, "%s/one/ckpt-20.safetensors", dir);
    const char *skip[] = {"run.", "pretrain.timing"};
    int n = 0;
    double e = compare_ckpts(a, b, skip, 2, worst, &n);
    fprintf(stderr, "dino: resumed 1 -> 2 ranks: %d tensors, largest relative difference %g (%s)\n",
            n, e, worst);
    ck_assert_msg(n > 10, "only %d tensors compared", n);
    ck_assert_msg(e <= 5e-4, "dino resumed on 2 ranks: relative difference %g (%s) > 5e-4", e,
                  worst);
    rmrf(dir);
}
END_TEST

/* ---- failure ---- */

#define MAN_ARGS                                                                                   \
    "man --method dgl --blocks 2 --batch 16 --train-limit 160 --test-limit 32 --image-size 32 "    \
    "--threads 1 --device cpu"

START_TEST(killed_rank_ends_the_job_and_resume_continues) {
    char *dir = tmpdir();
    char cmd[16384], log[600], pid1[600], ck[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(pid1, sizeof pid1, "%s/pid.1", dir);
    snprintf(ck, sizeof ck, "%s/run/ckpt-1.safetensors", dir);
    /* each rank notes its pid (exec keeps it) */
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 2 sh -c 'echo $$ > %s/pid.$OMPI_COMM_WORLD_RANK; exec "
             "\"%s\" " MAN_ARGS " --epochs 40 --out %s/run' > '%s' 2>&1",
             dir, g_bin, dir, log);
    pid_t job = fork();
    ck_assert(job >= 0);
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ck_assert_msg(wait_file(ck, 240), "no checkpoint after 240 s");
    char *p = slurp(pid1);
    pid_t victim = (pid_t)atoi(p);
    free(p);
    ck_assert(victim > 1);
    usleep(300000); /* into the next epoch */
    double t0 = now_s();
    ck_assert_int_eq(kill(victim, SIGKILL), 0);
    int st = 0;
    pid_t w = 0;
    while ((w = waitpid(job, &st, WNOHANG)) == 0 && now_s() - t0 < 60)
        usleep(20000);
    double took = now_s() - t0;
    if (w == 0) kill(job, SIGKILL), waitpid(job, &st, 0);
    char *out = slurp(log);
    fprintf(stderr, "killed rank 1: the job ended after %.2f s\n", took);
    ck_assert_msg(w == job, "the job still ran 60 s after rank 1 was killed: %s", out);
    ck_assert_msg(took < 15, "the job took %.1f s to end", took);
    ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mpirun exited 0: %s", out);
    ck_assert_msg(strstr(out, "rank 1"), "no message names rank 1: %s", out);
    free(out);
    /* the newest checkpoint is whole, and one process continues from it to the end */
    int64_t latest = -1;
    char run[600];
    snprintf(run, sizeof run, "%s/run", dir);
    ck_assert(checkpoint_find_latest(run, &latest) == PK_OK && latest >= 1);
    char path[700];
    checkpoint_path(run, latest, path, sizeof path);
    ckpt_file f;
    ck_assert_msg(checkpoint_open(path, &f) == PK_OK, "%s", polyak_error());
    checkpoint_close(&f);
    snprintf(cmd, sizeof cmd, "'%s' " MAN_ARGS " --epochs 40 --stop-after %lld --out '%s' --resume",
             g_bin, (long long)latest + 1, run);
    int rc = sh(cmd, log);
    out = slurp(log);
    ck_assert_msg(rc == 0, "--resume with 1 rank failed (%d): %s", rc, out);
    ck_assert_msg(strstr(out, "resuming from"), "did not resume: %s", out);
    free(out);
    int64_t after = -1;
    ck_assert(checkpoint_find_latest(run, &after) == PK_OK);
    ck_assert_msg(after == latest + 1, "resumed run ended at checkpoint %lld, expected %lld",
                  (long long)after, (long long)latest + 1);
    rmrf(dir);
}
END_TEST

START_TEST(failing_rank_ends_every_rank) {
    char *dir = tmpdir();
    char cmd[16384], log[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    /* rank 1 is given a data folder that does not exist; rank 0 goes on to its first step */
    snprintf(cmd, sizeof cmd,
             "mpirun --oversubscribe -np 1 '%s' " MAN_ARGS
             " --epochs 1 --out '%s/a' : -np 1 '%s' " MAN_ARGS
             " --epochs 1 --out '%s/a' --data '%s/none'",
             g_bin, dir, g_bin, dir, dir);
    double t0 = now_s();
    int rc = sh(cmd, log);
    double took = now_s() - t0;
    char *out = slurp(log);
    ck_assert_msg(rc != 0, "the job exited 0: %s", out);
    ck_assert_msg(strstr(out, "rank 1 of 2") && strstr(out, "none"),
                  "no message names rank 1 and its error: %s", out);
    ck_assert_msg(took < 30, "ending took %.1f s: %s", took, out);
    free(out);
    rmrf(dir);
}
END_TEST

START_TEST(stuck_rank_ends_at_the_deadline) {
    char *dir = tmpdir();
    char cmd[16384], log[600], pid1[600], ck[600];
    snprintf(log, sizeof log, "%s/run.log", dir);
    snprintf(pid1, sizeof pid1, "%s/pid.1", dir);
    snprintf(ck, sizeof ck, "%s/run/ckpt-1.safetensors", dir);
    snprintf(cmd, sizeof cmd,
             "POLYAK_DIST_TIMEOUT=3 mpirun --oversubscribe -x POLYAK_DIST_TIMEOUT -np 2 sh -c "
             "'echo $$ > %s/pid.$OMPI_COMM_WORLD_RANK; exec \"%s\" " MAN_ARGS
             " --epochs 40 --out %s/run' > '%s' 2>&1",
             dir, g_bin, dir, log);
    pid_t job = fork();
    ck_assert(job >= 0);
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ck_assert_msg(wait_file(ck, 240), "no checkpoint after 240 s");
    char *p = slurp(pid1);
    pid_t victim = (pid_t)atoi(p);
    free(p);
    double t0 = now_s();
    ck_assert_int_eq(kill(victim, SIGSTOP), 0); /* alive but silent */
    int st = 0;
    pid_t w = 0;
    while ((w = waitpid(job, &st, WNOHANG)) == 0 && now_s() - t0 < 60)
        usleep(20000);
    double took = now_s() - t0;
    if (w == 0) {
        kill(victim, SIGKILL);
        kill(job, SIGKILL), waitpid(job, &st, 0);
    }
    char *out = slurp(log);
    fprintf(stderr, "stopped rank 1: the job ended after %.2f s (deadline 3 s)\n", took);
    ck_assert_msg(w == job, "the job still ran 60 s after rank 1 stopped: %s", out);
    ck_assert_msg(!(WIFEXITED(st) && WEXITSTATUS(st) == 0), "mpirun exited 0: %s", out);
    ck_assert_msg(strstr(out, "rank 0 of 2") && strstr(out, "POLYAK_DIST_TIMEOUT"),
                  "no message of rank 0 about the deadline: %s", out);
    free(out);
    rmrf(dir);
}
END_TEST

/* True when `only` is NULL or empty, or one of its comma-separated words is in name. */
static bool selected(const char *only, const char *name) {
    if (!only || !*only) return true;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", only);
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (*w && strstr(name, w)) return true;
    return false;
}

/* mpirun on the PATH. */
static bool have_mpirun(void) { return system("command -v mpirun > /dev/null 2>&1") == 0; }

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--child-man") == 0) return child_man(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "--child-api") == 0) return child_api(argc, argv);
    if (!dist_have_mpi() || !have_mpirun()) {
        fprintf(stderr, "test_dist: skipped: %s\n",
                dist_have_mpi() ? "no mpirun on the PATH" : "built without MPI");
        return 77;
    }
    ssize_t k = readlink("/proc/self/exe", g_exe, sizeof g_exe - 1);
    if (k <= 0) return 1;
    g_exe[k] = 0;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", g_exe);
    snprintf(g_bin, sizeof g_bin, "%s/../polyak", dirname(tmp)); /* <build>/tests -> <build> */
    /* CI may run as root; mpirun refuses that unless told */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("POLYAK_DEVICE", "cpu", 1);
    /* containers without ptrace rights (CI) fail OpenMPI's shared-memory single copy (CMA);
     * the copy-in/copy-out path works everywhere */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("mpirun");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 600);
    /* TEST_DIST_ONLY=a,b runs the tests whose names contain a or b (all when unset) */
    const char *only = getenv("TEST_DIST_ONLY");
#define ADD(T)                                                                                     \
    do {                                                                                           \
        if (selected(only, #T)) tcase_add_test(tc, T);                                             \
    } while (0)
    ADD(primitives_on_two_ranks);
    ADD(man_two_ranks_match_one_process);
    ADD(man_sync_bn_matches_one_process_batch);
    ADD(dino_two_ranks_match_one_process);
    ADD(splat_two_ranks_keep_psnr);
    ADD(scaffold_two_ranks_keep_psnr);
    ADD(cl_two_ranks_match_one_process);
    ADD(ctp_two_ranks_match_one_process);
    ADD(dino_resumes_on_two_ranks);
    ADD(failing_rank_ends_every_rank);
    ADD(killed_rank_ends_the_job_and_resume_continues);
    ADD(stuck_rank_ends_at_the_deadline);
#undef ADD
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
