/* test_optim_golden.c - the fused CPU optimizers against the PyTorch trajectories written by
 * tests/golden/optim/make_goldens.py (torch.optim.SGD/Adam/AdamW, and plain PyTorch
 * transcriptions of AdamP, SGDP, SPAM, Stable-SPAM and AdamW with eps inside the sqrt).
 * Every config runs 50 steps from the stored initial parameters with the stored gradients;
 * the parameters are compared at the stored snapshot steps by the normalised relative error
 *   max_i |ours_i - torch_i| / max(|torch_i|, tau)  <= 1e-5,  tau = 1e-2 * RMS(torch)
 * (plain relative error for every element above 1% of the RMS; an element that cancelled to
 * near zero is held to an absolute 1e-7 * RMS, since rounding there is absolute). The
 * torch.optim configs must also meet the plain |a - b| / max(|b|, 1e-6) <= 1e-5 (they are
 * bit-identical today); AdamP/SGDP/Stable-SPAM sum their per-tensor reductions in another
 * order than torch, which moves near-zero elements by an ulp of the step.
 * and the per-step projection modes (AdamP/SGDP) and clip counts (SPAM) must match exactly. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threads.h"
#include "optim/optim_kernels.h"

#define GOLDEN POLYAK_GOLDEN_DIR "/optim/"
#define TOL 1e-5

static cJSON *g_index;

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

/* reads `count` float32 values of golden file `name` */
static float *read_f32(const char *name, size_t count) {
    char path[1024];
    snprintf(path, sizeof path, GOLDEN "%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    float *x = malloc(count * sizeof *x);
    ck_assert_ptr_nonnull(x);
    size_t got = fread(x, sizeof *x, count, f);
    ck_assert_msg(got == count, "%s: %zu of %zu floats", path, got, count);
    fclose(f);
    return x;
}

static double hp_num(const cJSON *hp, const char *key, double dflt) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(hp, key);
    if (cJSON_IsNumber(x)) return x->valuedouble;
    if (cJSON_IsBool(x)) return cJSON_IsTrue(x) ? 1 : 0;
    if (cJSON_IsArray(x)) return dflt; /* betas: handled by the caller */
    return dflt;
}

static int json_int(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key)->valueint;
}

START_TEST(golden_config) {
    const cJSON *cfgs = cJSON_GetObjectItemCaseSensitive(g_index, "configs");
    const cJSON *cfg = cJSON_GetArrayItem(cfgs, _i);
    const char *name = cJSON_GetObjectItemCaseSensitive(cfg, "name")->valuestring;
    const char *kind = cJSON_GetObjectItemCaseSensitive(cfg, "kind")->valuestring;
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(cfg, "hp");
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(cfg, "records");
    const int steps = json_int(g_index, "steps");
    const int total = json_int(g_index, "total");
    const cJSON *snaps = cJSON_GetObjectItemCaseSensitive(g_index, "snapshot_steps");
    const int nsnap = cJSON_GetArraySize(snaps);

    /* segments from the tensor shapes */
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(g_index, "tensors");
    int nseg = cJSON_GetArraySize(tensors);
    pk_optim_segment segs[8];
    ck_assert_int_le(nseg, 8);
    int64_t off = 0;
    for (int s = 0; s < nseg; s++) {
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tensors, s), "shape");
        int nd = cJSON_GetArraySize(sh);
        int64_t rows = cJSON_GetArrayItem(sh, 0)->valueint, cols = 1;
        for (int d = 1; d < nd; d++)
            cols *= cJSON_GetArrayItem(sh, d)->valueint;
        if (nd < 2) {
            cols = rows;
            rows = 1;
        }
        segs[s] = (pk_optim_segment){.offset = off, .rows = rows, .cols = cols, .ndim = nd};
        off += rows * cols;
    }
    ck_assert_int_eq(off, total);

    float *p = read_f32(cJSON_GetObjectItemCaseSensitive(g_index, "init")->valuestring, total);
    float *grads = read_f32(cJSON_GetObjectItemCaseSensitive(cfg, "grads")->valuestring,
                            (size_t)steps * total);
    float *want = read_f32(cJSON_GetObjectItemCaseSensitive(cfg, "snapshots")->valuestring,
                           (size_t)nsnap * total);
    float *s1 = calloc((size_t)total, sizeof *s1), *s2 = calloc((size_t)total, sizeof *s2);
    pk_stable_spam_tensor_state ts[8] = {{0}};

    double b1 = 0, b2 = 0;
    const cJSON *betas = cJSON_GetObjectItemCaseSensitive(hp, "betas");
    if (cJSON_IsArray(betas)) {
        b1 = cJSON_GetArrayItem(betas, 0)->valuedouble;
        b2 = cJSON_GetArrayItem(betas, 1)->valuedouble;
    }
    const double lr = hp_num(hp, "lr", 0), wd = hp_num(hp, "weight_decay", 0);
    pk_pool *pool = pk_pool_create(2);
    double worst = 0, worst_n = 0;
    /* torch.optim configs must meet the plain relative error too (no reductions involved) */
    const int strict = !strcmp(kind, "sgd") || !strcmp(kind, "adam") || !strcmp(kind, "adamw");
    int snap = 0, nproj_row = 0, nproj_whole = 0;
    int64_t nclipped = 0;
    for (int k = 1; k <= steps; k++) {
        const float *g = grads + (size_t)(k - 1) * total;
        pk_status st = PK_OK;
        int modes[8] = {0};
        int64_t clipped = -1;
        if (!strcmp(kind, "sgd")) {
            pk_sgd_params h = {.lr = lr,
                               .momentum = hp_num(hp, "momentum", 0),
                               .dampening = hp_num(hp, "dampening", 0),
                               .weight_decay = wd,
                               .nesterov = hp_num(hp, "nesterov", 0) != 0};
            st = optim_sgd_step(pool, &h, k, total, p, g, s1);
        } else if (!strcmp(kind, "adamw") || !strcmp(kind, "adam") ||
                   !strcmp(kind, "adamw_inside")) {
            pk_adamw_params h = {.lr = lr,
                                 .beta1 = b1,
                                 .beta2 = b2,
                                 .eps = hp_num(hp, "eps", 0),
                                 .weight_decay = wd,
                                 .eps_inside_sqrt = !strcmp(kind, "adamw_inside")};
            st = !strcmp(kind, "adam") ? optim_adam_step(pool, &h, k, total, p, g, s1, s2)
                                       : optim_adamw_step(pool, &h, k, total, p, g, s1, s2);
        } else if (!strcmp(kind, "adamp") || !strcmp(kind, "sgdp")) {
            pk_adamp_params h = {.lr = lr,
                                 .momentum = hp_num(hp, "momentum", 0),
                                 .dampening = hp_num(hp, "dampening", 0),
                                 .weight_decay = wd,
                                 .nesterov = hp_num(hp, "nesterov", 0) != 0};
            st = !strcmp(kind, "adamp")
                     ? optim_adamp_step(pool, &h, k, segs, nseg, p, g, s1, s2, modes)
                     : optim_sgdp_step(pool, &h, k, segs, nseg, p, g, s1, modes);
            const cJSON *rec = cJSON_GetArrayItem(records, k - 1);
            for (int s = 0; s < nseg; s++) {
                ck_assert_msg(modes[s] == cJSON_GetArrayItem(rec, s)->valueint,
                              "%s step %d tensor %d: projection mode %d, torch %d", name, k, s,
                              modes[s], cJSON_GetArrayItem(rec, s)->valueint);
                nproj_row += modes[s] == 1;
                nproj_whole += modes[s] == 2;
            }
        } else if (!strcmp(kind, "spam")) {
            pk_spam_params h = {.lr = lr,
                                .weight_decay = wd,
                                .delta_t = (int)hp_num(hp, "delta_t", 0),
                                .warmup = (int)hp_num(hp, "warmup", 0),
                                .grad_accu = (int)hp_num(hp, "grad_accu", 0)};
            st = optim_spam_step(pool, &h, k, total, p, g, s1, s2, &clipped);
            int want_c = cJSON_GetArrayItem(records, k - 1)->valueint;
            ck_assert_msg(clipped == want_c, "%s step %d: clipped %lld, torch %d", name, k,
                          (long long)clipped, want_c);
            nclipped += clipped;
        } else if (!strcmp(kind, "stable_spam")) {
            pk_stable_spam_params h = {
                .lr = lr, .weight_decay = wd, .delta_t = (int)hp_num(hp, "delta_t", 0)};
            st = optim_stable_spam_step(pool, &h, k, segs, nseg, p, g, s1, s2, ts);
        } else {
            ck_abort_msg("unknown kind %s", kind);
        }
        ck_assert_msg(st == PK_OK, "%s step %d: %s", name, k, polyak_error());
        if (snap < nsnap && cJSON_GetArrayItem(snaps, snap)->valueint == k) {
            const float *w = want + (size_t)snap * total;
            double ss = 0;
            for (int i = 0; i < total; i++)
                ss += (double)w[i] * w[i];
            const double tau = 1e-2 * sqrt(ss / total);
            for (int i = 0; i < total; i++) {
                double d = fabs((double)p[i] - (double)w[i]), b = fabs((double)w[i]);
                double e = d / (b > 1e-6 ? b : 1e-6);
                double en = d / (b > tau ? b : tau);
                if (!(e <= worst)) worst = e; /* NaN propagates */
                if (!(en <= worst_n)) worst_n = en;
                ck_assert_msg(en <= TOL && (!strict || e <= TOL),
                              "%s step %d element %d: ours %.9g torch %.9g (rel %.3g, "
                              "normalised %.3g)",
                              name, k, i, (double)p[i], (double)w[i], e, en);
            }
            snap++;
        }
    }
    ck_assert_int_eq(snap, nsnap);
    if (!strcmp(kind, "adamp") || !strcmp(kind, "sgdp")) {
        /* the inputs were made so that both kinds of projection happen */
        ck_assert_int_gt(nproj_row, 0);
        ck_assert_int_gt(nproj_whole, 0);
    }
    if (!strcmp(kind, "spam")) ck_assert_int_gt(nclipped, 0);
    printf("%-20s max rel err %.3g, normalised %.3g\n", name, worst, worst_n);
    pk_pool_destroy(pool);
    free(p);
    free(grads);
    free(want);
    free(s1);
    free(s2);
}
END_TEST

/* the golden configs run in one thread's worth of data; this checks the threaded split is the
 * same arithmetic: a large random AdamW / SGD / SPAM step on 2 threads equals 1 thread
 * bit for bit */
START_TEST(threads_bitwise) {
    const int64_t n = 3 * 1000 * 1000 + 17;
    float *buf = malloc((size_t)n * 10 * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    float *p1 = buf, *p2 = buf + n, *g = buf + 2 * n, *m1 = buf + 3 * n, *m2 = buf + 4 * n;
    float *v1 = buf + 5 * n, *v2 = buf + 6 * n;
    srand((unsigned)time(NULL));
    for (int64_t i = 0; i < n; i++) {
        p1[i] = p2[i] = (float)rand() / RAND_MAX - 0.5f;
        g[i] = (float)rand() / RAND_MAX - 0.5f;
        m1[i] = m2[i] = 0;
        v1[i] = v2[i] = 0;
    }
    pk_pool *pool = pk_pool_create(2);
    pk_adamw_params h = {.lr = 1e-2f, .weight_decay = 1e-2f, .eps = 1e-15f};
    for (int k = 1; k <= 3; k++) {
        ck_assert_int_eq(optim_adamw_step(pool, &h, k, n, p1, g, m1, v1), PK_OK);
        ck_assert_int_eq(optim_adamw_step(NULL, &h, k, n, p2, g, m2, v2), PK_OK);
    }
    ck_assert(memcmp(p1, p2, (size_t)n * sizeof *p1) == 0);
    ck_assert(memcmp(v1, v2, (size_t)n * sizeof *p1) == 0);
    pk_spam_params sp = {.lr = 1e-2f, .delta_t = 2, .grad_accu = 1};
    int64_t c1 = 0, c2 = 0;
    g[12345] = 1e4f;
    for (int k = 4; k <= 6; k++) {
        ck_assert_int_eq(optim_spam_step(pool, &sp, k, n, p1, g, m1, v1, &c1), PK_OK);
        ck_assert_int_eq(optim_spam_step(NULL, &sp, k, n, p2, g, m2, v2, &c2), PK_OK);
        ck_assert_int_eq(c1, c2);
    }
    ck_assert(memcmp(p1, p2, (size_t)n * sizeof *p1) == 0);
    pk_pool_destroy(pool);
    free(buf);
}
END_TEST

START_TEST(bad_arguments) {
    float x[4] = {1, 2, 3, 4};
    pk_sgd_params h = {.lr = 0.1f, .momentum = 0.9f};
    ck_assert_int_eq(optim_sgd_step(NULL, &h, 1, 4, x, x, NULL), PK_ERR_INVALID);
    ck_assert_int_eq(optim_sgd_step(NULL, &h, 0, 4, x, x, x), PK_ERR_INVALID);
    pk_adamp_params a = {.lr = 0.1f};
    pk_optim_segment bad = {.offset = 0, .rows = 0, .cols = 4, .ndim = 2};
    ck_assert_int_eq(optim_adamp_step(NULL, &a, 1, &bad, 1, x, x, x, x, NULL), PK_ERR_INVALID);
    ck_assert(strstr(polyak_error(), "segment 0") != NULL);
}
END_TEST

int main(void) {
    char *text = read_text(GOLDEN "index.json");
    if (!text) {
        fprintf(stderr, "cannot read " GOLDEN "index.json\n");
        return 1;
    }
    g_index = cJSON_Parse(text);
    free(text);
    if (!g_index) return 1;
    int ncfg = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g_index, "configs"));
    Suite *s = suite_create("optim_golden");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, golden_config, 0, ncfg);
    tcase_add_test(tc, threads_bitwise);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_index);
    return failed ? 1 : 0;
}
