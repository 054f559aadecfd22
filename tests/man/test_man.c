/* test_man.c - the MAN task: split tables against the network's parameter count (PyTorch's
 * count of the same ResNets, bench/man_peer.py), the EMA rule of MAN's momentum blocks,
 * gradient isolation between local modules, short real runs of every method on a
 * Fashion-MNIST subset, and bit-exact resume (after an epoch and from within one). Inputs are fresh
 * random numbers each run. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "man_run.h"
#include "pk_test.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static pkt_rng g_rng;

static void setup(void) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    g_rng.s = seed;
    fprintf(stderr, "test_man: seed %llu\n", (unsigned long long)seed);
}

static man_model *small_model(pk_ctx *c, man_method method, int k, int batch) {
    man_config cfg = {.arch = MAN_RESNET32,
                      .method = method,
                      .blocks = k,
                      .in_channels = 1,
                      .height = 12,
                      .width = 12,
                      .classes = 10,
                      .lr = 0.05,
                      .batch = batch,
                      .seed = g_rng.s | 1};
    man_model *m = NULL;
    ck_assert_msg(man_model_create(c, &cfg, &m) == PK_OK, "%s", polyak_error());
    return m;
}

/* A random batch: images in [0, 1], their normalisation, random labels. */
typedef struct rand_batch {
    float *x, *t;
    int32_t *y;
    man_batch b;
} rand_batch;

static rand_batch make_batch(int n, int img) {
    rand_batch r = {.x = malloc(sizeof(float) * (size_t)(n * img)),
                    .t = malloc(sizeof(float) * (size_t)(n * img)),
                    .y = malloc(sizeof(int32_t) * (size_t)n)};
    pkt_fill_uniform(&g_rng, r.t, (int64_t)n * img, 0.0f, 1.0f);
    for (int i = 0; i < n * img; i++)
        r.x[i] = (r.t[i] - 0.5f) / 0.5f;
    for (int i = 0; i < n; i++)
        r.y[i] = (int32_t)(pkt_uniform(&g_rng, 0.0f, 10.0f)) % 10;
    r.b = (man_batch){.x = r.x, .target = r.t, .labels = r.y, .n = n};
    return r;
}

static void free_batch(rand_batch *r) { free(r->x), free(r->t), free(r->y); }

/* ---- split tables ---- */

START_TEST(split_tables_cover_the_network) {
    /* PyTorch's sum(p.numel()) of the same networks (1x1-conv projection shortcuts, as the
     * official code), 3 input channels, 10 classes: ResNet-32 466,906 ("0.46M"), ResNet-110
     * 1,730,714 (bench/man_peer.py's model). */
    static const struct {
        man_arch arch;
        int k;
        int64_t total;
    } cases[] = {
        {MAN_RESNET32, 1, 466906},   {MAN_RESNET32, 2, 466906},    {MAN_RESNET32, 4, 466906},
        {MAN_RESNET32, 8, 466906},   {MAN_RESNET32, 16, 466906},   {MAN_RESNET110, 2, 1730714},
        {MAN_RESNET110, 8, 1730714}, {MAN_RESNET110, 16, 1730714}, {MAN_RESNET110, 32, 1730714}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const man_cut *cuts;
        int n;
        ck_assert_int_eq(man_split_table(cases[i].arch, cases[i].k, &cuts, &n), PK_OK);
        int nper = cases[i].arch == MAN_RESNET110 ? 18 : 5;
        for (int j = 0; j < n; j++) { /* strictly increasing, inside the network, ends last */
            int flat = (cuts[j].stage - 1) * nper + cuts[j].block;
            ck_assert(cuts[j].stage >= 1 && cuts[j].stage <= 3);
            ck_assert(cuts[j].block >= 0 && cuts[j].block < nper);
            if (j) ck_assert_int_gt(flat, (cuts[j - 1].stage - 1) * nper + cuts[j - 1].block);
        }
        ck_assert(cuts[n - 1].stage == 3 && cuts[n - 1].block == nper - 1);
        pk_ctx *c = pkt_ctx("cpu");
        man_config cfg = {.arch = cases[i].arch,
                          .method = cases[i].k == 1 ? MAN_E2E : MAN_DGL_MAN,
                          .blocks = cases[i].k,
                          .in_channels = 3,
                          .height = 32,
                          .width = 32,
                          .classes = 10,
                          .lr = 0.1,
                          .batch = 2,
                          .seed = 3};
        man_model *m = NULL;
        ck_assert_msg(man_model_create(c, &cfg, &m) == PK_OK, "%s", polyak_error());
        ck_assert_int_eq(man_module_count(m), n);
        int64_t sum = 0;
        for (int j = 0; j < n; j++) {
            int64_t p = man_module_param_count(m, j);
            ck_assert_int_gt(p, 0);
            sum += p;
            if (j < n - 1) ck_assert_int_gt(man_aux_param_count(m, j), 0);
        }
        ck_assert_msg(sum == cases[i].total, "%s K=%d: modules hold %lld parameters, expected %lld",
                      man_arch_name(cases[i].arch), cases[i].k, (long long)sum,
                      (long long)cases[i].total);
        man_model_destroy(m);
        pkt_ctx_done(c);
    }
    const man_cut *cuts;
    int n;
    ck_assert_int_ne(man_split_table(MAN_RESNET32, 5, &cuts, &n), PK_OK);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "no official split"));
}
END_TEST

START_TEST(infopro_loss_weights_interpolate) {
    pk_ctx *c = pkt_ctx("cpu");
    man_model *m = small_model(c, MAN_INFOPRO, 8, 4);
    double l1, l2; /* InfoPro comand.sh, ResNet-32 K=8: (5, 0) at module 0 -> (0, 2) at 6 */
    man_loss_weights(m, 0, &l1, &l2);
    ck_assert(fabs(l1 - 5) < 1e-12 && fabs(l2) < 1e-12);
    man_loss_weights(m, 3, &l1, &l2);
    ck_assert(fabs(l1 - 2.5) < 1e-12 && fabs(l2 - 1) < 1e-12);
    man_loss_weights(m, 6, &l1, &l2);
    ck_assert(fabs(l1) < 1e-12 && fabs(l2 - 2) < 1e-12);
    man_model_destroy(m);
    pkt_ctx_done(c);
}
END_TEST

/* ---- the EMA block ---- */

static float *download_all(tensor *const *ts, int n, int64_t *total) {
    int64_t sz = 0;
    for (int i = 0; i < n; i++)
        sz += tensor_numel(ts[i]);
    float *h = malloc(sizeof(float) * (size_t)sz), *at = h;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(tensor_download(ts[i], at), PK_OK);
        at += tensor_numel(ts[i]);
    }
    *total = sz;
    return h;
}

START_TEST(ema_block_follows_its_source) {
    pk_ctx *c = pkt_ctx("cpu");
    man_model *m = small_model(c, MAN_DGL_MAN, 4, 6);
    rand_batch rb = make_batch(6, 144);
    tensor *const *src, *const *ema, *const *lb;
    int n;
    for (int i = 0; i < man_module_count(m) - 1; i++) {
        ck_assert_int_eq(man_ema_tensors(m, i, &src, &ema, &lb, &n), PK_OK);
        int64_t sz;
        float *s0 = download_all(src, n, &sz), *e0 = download_all(ema, n, &sz),
              *l0 = download_all(lb, n, &sz);
        /* all three start as copies of the block */
        ck_assert(memcmp(s0, e0, sizeof(float) * (size_t)sz) == 0);
        ck_assert(memcmp(s0, l0, sizeof(float) * (size_t)sz) == 0);
        free(s0), free(e0), free(l0);
    }
    for (int step = 0; step < 3; step++) {
        float *s0[8], *e0[8];
        int64_t sz[8];
        int nm = man_module_count(m) - 1;
        for (int i = 0; i < nm; i++) {
            ck_assert_int_eq(man_ema_tensors(m, i, &src, &ema, &lb, &n), PK_OK);
            s0[i] = download_all(src, n, &sz[i]);
            e0[i] = download_all(ema, n, &sz[i]);
        }
        ck_assert_msg(man_train_step(m, &rb.b, NULL) == PK_OK, "%s", polyak_error());
        for (int i = 0; i < nm; i++) {
            ck_assert_int_eq(man_ema_tensors(m, i, &src, &ema, &lb, &n), PK_OK);
            int64_t z;
            float *s1 = download_all(src, n, &z), *e1 = download_all(ema, n, &z);
            double worst = 0, moved = 0, lag = 0;
            for (int64_t j = 0; j < z; j++) {
                /* EMA_i <- 0.995 EMA_i + 0.005 block, with the block's values before the step */
                double want = 0.995 * e0[i][j] + 0.005 * s0[i][j];
                double err = fabs(e1[j] - want) / (fabs(want) + 1e-3);
                worst = err > worst ? err : worst;
                moved += fabs(s1[j] - s0[i][j]);
                lag += fabs(e1[j] - s1[j]);
            }
            ck_assert_msg(worst < 1e-5, "module %d step %d: EMA off the rule by %g", i, step,
                          worst);
            ck_assert_msg(moved > 0, "the source block did not train");
            ck_assert_msg(lag > 0, "the EMA block equals the trained block");
            free(s1), free(e1), free(s0[i]), free(e0[i]);
        }
    }
    free_batch(&rb);
    man_model_destroy(m);
    pkt_ctx_done(c);
}
END_TEST

/* ---- gradient isolation ---- */

typedef struct grads {
    float *g[64];
    int64_t n[64];
    int count;
} grads;

static void snapshot_grads(man_model *m, int module, grads *out) {
    int n;
    tensor *const *ts = man_module_params(m, module, &n);
    ck_assert_int_le(n, 64);
    out->count = n;
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(ts[i]->grad);
        out->g[i] = pkt_download(ts[i]->grad);
        out->n[i] = tensor_numel(ts[i]);
    }
}

static double grads_diff(const grads *a, const grads *b) {
    double worst = 0;
    for (int i = 0; i < a->count; i++) {
        double e = pkt_nerr(a->g[i], b->g[i], a->n[i]);
        worst = e > worst ? e : worst;
    }
    return worst;
}

static void free_grads(grads *g) {
    for (int i = 0; i < g->count; i++)
        free(g->g[i]);
}

static void check_isolation(man_method method) {
    pk_ctx *c = pkt_ctx("cpu");
    man_model *m = small_model(c, method, 4, 6);
    rand_batch rb = make_batch(6, 144);
    int nm = man_module_count(m);
    grads base[8], pert[8];
    ck_assert_msg(man_compute_grads(m, &rb.b, NULL, NULL) == PK_OK, "%s", polyak_error());
    for (int i = 0; i < nm; i++)
        snapshot_grads(m, i, &base[i]);
    for (int later = 1; later < nm; later++) {
        float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        scale[later] = 3.0f + pkt_uniform(&g_rng, 0.0f, 1.0f);
        ck_assert_int_eq(man_compute_grads(m, &rb.b, scale, NULL), PK_OK);
        for (int i = 0; i < nm; i++) {
            snapshot_grads(m, i, &pert[i]);
            double d = grads_diff(&pert[i], &base[i]);
            if (i < later)
                ck_assert_msg(d < 1e-6,
                              "%s: scaling module %d's loss moved module %d's gradients "
                              "by %g",
                              man_method_name(method), later, i, d);
            else if (i == later)
                ck_assert_msg(d > 1.0, "%s: module %d's own gradients did not scale (%g)",
                              man_method_name(method), i, d);
            free_grads(&pert[i]);
        }
    }
    for (int i = 0; i < nm; i++)
        free_grads(&base[i]);
    free_batch(&rb);
    man_model_destroy(m);
    pkt_ctx_done(c);
}

START_TEST(gradients_stay_in_their_module) {
    check_isolation(MAN_INFOPRO_MAN);
    check_isolation(MAN_DGL);
}
END_TEST

/* ---- real runs ---- */

static char *temp_dir(void) {
    char *d = strdup("/tmp/polyak_man_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static void remove_dir(char *d) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    ck_assert_int_eq(system(cmd), 0);
    free(d);
}

/* 200 steps (4 epochs of 50 batches of 8) on 400 Fashion-MNIST images, K = 4. */
static void short_run(man_method method) {
    char *out = temp_dir();
    man_run_options o = {.data = FMNIST,
                         .out = out,
                         .device = "cpu",
                         .method = method,
                         .blocks = 4,
                         .epochs = 4,
                         .batch = 8,
                         .lr = 0.05,
                         .train_limit = 400,
                         .test_limit = 300,
                         .flip = -1};
    man_result r;
    ck_assert_msg(man_run(&o, &r) == PK_OK, "%s", polyak_error());
    fprintf(stderr, "test_man: %s, 200 steps: test accuracy %.3f, peak memory %zu\n",
            man_method_name(method), r.test_accuracy, r.memory.total);
    ck_assert_msg(r.test_accuracy > 0.4, "%s: accuracy %.3f after 200 steps (chance 0.1)",
                  man_method_name(method), r.test_accuracy);
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.json", out);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char text[4096] = {0};
    ck_assert_int_gt((int)fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "\"test_accuracy\""));
    ck_assert_ptr_nonnull(strstr(text, "\"peak_memory_bytes\""));
    snprintf(path, sizeof path, "%s/log.csv", out);
    ck_assert_int_eq(access(path, R_OK), 0);
    remove_dir(out);
}

START_TEST(run_e2e) { short_run(MAN_E2E); }
END_TEST
START_TEST(run_dgl) { short_run(MAN_DGL); }
END_TEST
START_TEST(run_infopro) { short_run(MAN_INFOPRO); }
END_TEST
START_TEST(run_dgl_man) { short_run(MAN_DGL_MAN); }
END_TEST
START_TEST(run_infopro_man) { short_run(MAN_INFOPRO_MAN); }
END_TEST

/* The final checkpoints of runs a and b hold the same model, EMA and optimizer tensors. */
static void same_checkpoints(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/ckpt-2.safetensors", a);
    snprintf(pb, sizeof pb, "%s/ckpt-2.safetensors", b);
    /* every model, EMA and optimizer tensor identical (the history and the log hold timings:
     * skipped) */
    ckpt_file ca = {0}, cb = {0};
    ck_assert_int_eq(checkpoint_open(pa, &ca), PK_OK);
    ck_assert_int_eq(checkpoint_open(pb, &cb), PK_OK);
    ck_assert_int_eq(ca.st.n, cb.st.n);
    ck_assert_mem_eq(ca.rng, cb.rng, sizeof ca.rng);
    for (int i = 0; i < ca.st.n; i++) {
        const st_tensor *x = &ca.st.tensors[i], *y = safetensors_find(&cb.st, x->name);
        ck_assert_ptr_nonnull(y);
        if (strcmp(x->name, "run.history") == 0 || strcmp(x->name, "run.log") == 0) continue;
        ck_assert_msg(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0,
                      "tensor %s differs after resume", x->name);
    }
    checkpoint_close(&ca);
    checkpoint_close(&cb);
    /* log.csv: the same rows but for the seconds */
    char text[2][4096];
    for (int k = 0; k < 2; k++) {
        snprintf(pa, sizeof pa, "%s/log.csv", k ? b : a);
        FILE *f = fopen(pa, "r");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(text[k], 1, sizeof text[k] - 1, f);
        text[k][n] = 0;
        fclose(f);
        /* drop the epoch_seconds column's values (the 7th) */
        int col = 0;
        char *w = text[k];
        for (char *p = text[k]; *p; p++) {
            if (*p == '\n')
                col = 0;
            else if (*p == ',')
                col++;
            else if (col == 6)
                continue;
            *w++ = *p;
        }
        *w = 0;
    }
    ck_assert_msg(strchr(text[0], '\n') && strstr(text[0], "\n2,"), "%s", text[0]);
    ck_assert_str_eq(text[0], text[1]);
}

START_TEST(resume_is_bit_exact) {
    char *a = temp_dir(), *b = temp_dir(), *c = temp_dir(), *d = temp_dir();
    man_run_options o = {.data = FMNIST,
                         .device = "cpu",
                         .method = MAN_INFOPRO_MAN,
                         .blocks = 2,
                         .epochs = 2,
                         .batch = 8,
                         .lr = 0.05,
                         .train_limit = 32,
                         .test_limit = 16,
                         .flip = -1};
    man_result ra, rb;
    o.out = a;
    ck_assert_msg(man_run(&o, &ra) == PK_OK, "%s", polyak_error());
    ck_assert(!ra.interrupted);
    ck_assert_int_eq(ra.epochs_done, 2);
    /* stopped after epoch 1 */
    o.out = b;
    o.stop_after = 1;
    ck_assert_msg(man_run(&o, &rb) == PK_OK, "%s", polyak_error());
    o.stop_after = 0;
    o.resume = true;
    ck_assert_msg(man_run(&o, &rb) == PK_OK, "%s", polyak_error());
    same_checkpoints(a, b);
    /* stopped within an epoch, as Ctrl-C does: 4 steps per epoch, so step 2 of epoch 2 and
     * step 1 of epoch 1 */
    const char *dirs[2] = {c, d};
    int64_t stops[2] = {6, 1};
    for (int k = 0; k < 2; k++) {
        o.out = dirs[k];
        o.resume = false;
        o.stop_after_steps = stops[k];
        ck_assert_msg(man_run(&o, &rb) == PK_OK, "%s", polyak_error());
        ck_assert(rb.interrupted);
        ck_assert_int_eq(rb.epochs_done, k == 0 ? 1 : 0);
        o.stop_after_steps = 0;
        o.resume = true;
        ck_assert_msg(man_run(&o, &rb) == PK_OK, "%s", polyak_error());
        ck_assert(!rb.interrupted);
        ck_assert_int_eq(rb.epochs_done, 2);
        ck_assert(rb.test_accuracy == ra.test_accuracy);
        same_checkpoints(a, dirs[k]);
    }
    /* other options: refused, naming the checkpoint */
    o.seed = 2;
    ck_assert_int_ne(man_run(&o, &rb), PK_OK);
    ck_assert_msg(strstr(polyak_error(), "ckpt-2.safetensors") &&
                      strstr(polyak_error(), "\"seed\":2"),
                  "%s", polyak_error());
    remove_dir(a);
    remove_dir(b);
    remove_dir(c);
    remove_dir(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("man");
    TCase *unit = tcase_create("model");
    tcase_add_checked_fixture(unit, setup, NULL);
    tcase_set_timeout(unit, 300);
    tcase_add_test(unit, split_tables_cover_the_network);
    tcase_add_test(unit, infopro_loss_weights_interpolate);
    tcase_add_test(unit, ema_block_follows_its_source);
    tcase_add_test(unit, gradients_stay_in_their_module);
    tcase_add_test(unit, resume_is_bit_exact);
    suite_add_tcase(s, unit);
    TCase *runs = tcase_create("fashion-mnist");
    tcase_add_checked_fixture(runs, setup, NULL);
    tcase_set_timeout(runs, 600);
    tcase_add_test(runs, run_e2e);
    tcase_add_test(runs, run_dgl);
    tcase_add_test(runs, run_infopro);
    tcase_add_test(runs, run_dgl_man);
    tcase_add_test(runs, run_infopro_man);
    suite_add_tcase(s, runs);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
