/* test_teacher.c - the fused EMA-teacher kernels against a direct double-precision
 * computation: plain, multi-source (CTP's 0.9/0.05/0.05 and the general k-source path),
 * scheduled (cosine ramp and table), and segment-list partial teachers with the copy rule for
 * buffers. Inputs are fresh random numbers each run (the seed is printed).
 * Bit-exactness against torch's own lerp_ and mul_/add_ (tests/golden/optim/index.json,
 * "teacher") is checked too. Error bound: a float update of terms a_i has error <= 2 ulp of sum
 * |a_i| (one rounding per operation, fused multiply-adds); we check |ours - exact| <= 4 * 2^-24 *
 * sum_i |a_i|. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threads.h"
#include "teacher/teacher_kernels.h"

static unsigned g_seed;

static float frand(void) { return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f; }

static float *rand_array(int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand() * 3.0f;
    return x;
}

static float *copy_array(const float *x, int64_t n) {
    float *y = malloc((size_t)n * sizeof *y);
    ck_assert_ptr_nonnull(y);
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

#define ULP_BOUND(mag) (4.0 * 0x1p-24 * (mag) + 1e-30)

static void setup(void) {
    g_seed = (unsigned)time(NULL) ^ (unsigned)clock();
    srand(g_seed);
}

START_TEST(plain_ema) {
    const int64_t n = 1000003; /* several chunks, odd tail */
    const double ms[] = {0.996, 0.9999, 0.9, 0.2 /* weight >= 0.5: the other lerp form */};
    pk_pool *pool = pk_pool_create(2);
    for (size_t c = 0; c < sizeof ms / sizeof ms[0]; c++) {
        float *t = rand_array(n), *s = rand_array(n), *t0 = copy_array(t, n);
        float *t1 = copy_array(t, n);
        double m = ms[c];
        ck_assert_int_eq(teacher_ema(pool, t, s, n, m), PK_OK);
        ck_assert_int_eq(teacher_ema(NULL, t1, s, n, m), PK_OK);
        ck_assert_msg(memcmp(t, t1, (size_t)n * sizeof *t) == 0, "threads change results");
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double md = m, exact = md * t0[i] + (1.0 - md) * s[i];
            double err = fabs(t[i] - exact);
            double mag = fabs(md * t0[i]) + fabs((1.0 - md) * s[i]) + fabs((double)t0[i]);
            ck_assert_msg(err <= ULP_BOUND(mag), "seed %u m %g i %lld: %.9g vs %.9g", g_seed,
                          (double)m, (long long)i, (double)t[i], exact);
            if (err / (mag + 1e-30) > worst) worst = err / mag;
        }
        printf("plain m=%g: max err / magnitude %.3g\n", (double)m, worst);
        free(t);
        free(s);
        free(t0);
        free(t1);
    }
    /* s == t leaves t unchanged (the lerp form is exact there) */
    float *t = rand_array(1000), *t0 = copy_array(t, 1000);
    ck_assert_int_eq(teacher_ema(pool, t, t0, 1000, 0.7), PK_OK);
    ck_assert(memcmp(t, t0, 1000 * sizeof *t) == 0);
    ck_assert_int_eq(teacher_ema(pool, t, t0, 1000, 1.5), PK_ERR_INVALID);
    free(t);
    free(t0);
    pk_pool_destroy(pool);
}
END_TEST

static void check_multi(pk_pool *pool, int k, const double *w, double m, int64_t n) {
    float *t = rand_array(n), *t0 = copy_array(t, n);
    float *src[PK_TEACHER_MAX_SOURCES];
    for (int i = 0; i < k; i++)
        src[i] = rand_array(n);
    ck_assert_int_eq(teacher_ema_multi(pool, t, k, (const float *const *)src, w, n, m), PK_OK);
    for (int64_t e = 0; e < n; e++) {
        double exact = (double)m * t0[e], mag = fabs(exact);
        for (int i = 0; i < k; i++) {
            exact += (double)w[i] * src[i][e];
            mag += fabs((double)w[i] * src[i][e]);
        }
        ck_assert_msg(fabs(t[e] - exact) <= ULP_BOUND(mag) * k, "seed %u k %d e %lld", g_seed, k,
                      (long long)e);
    }
    for (int i = 0; i < k; i++)
        free(src[i]);
    free(t);
    free(t0);
}

START_TEST(multi_source) {
    pk_pool *pool = pk_pool_create(2);
    const double ctp[2] = {0.05, 0.05}; /* CTP: 0.9 t + 0.05 current + 0.05 previous task */
    check_multi(pool, 2, ctp, 0.9, 300007);
    const double one[1] = {0.004};
    check_multi(pool, 1, one, 0.996, 70001);
    const double w5[5] = {0.1, 0.05, 0.02, 0.02, 0.01}; /* general path, m = 0.8 */
    check_multi(pool, 5, w5, 0.8, 200003);
    /* weights that do not sum to 1 - m are refused with a message */
    float *t = rand_array(16), *s = rand_array(16);
    const float *src[2] = {s, s};
    const double bad[2] = {0.05, 0.06};
    ck_assert_int_eq(teacher_ema_multi(pool, t, 2, src, bad, 16, 0.9), PK_ERR_INVALID);
    ck_assert(strstr(polyak_error(), "expected 1") != NULL);
    free(t);
    free(s);
    pk_pool_destroy(pool);
}
END_TEST

START_TEST(momentum_schedules) {
    pk_momentum_schedule c = {
        .kind = PK_MOMENTUM_COSINE, .m0 = 0.996, .m1 = 1.0, .total_steps = 1000};
    ck_assert_int_eq(teacher_momentum_validate(&c), PK_OK);
    ck_assert(fabs(teacher_momentum_at(&c, 0) - 0.996) < 1e-15);
    ck_assert(fabs(teacher_momentum_at(&c, 500) - 0.998) < 1e-12);
    ck_assert(fabs(teacher_momentum_at(&c, 250) - (1.0 - 0.004 * (cos(M_PI / 4) + 1) / 2)) < 1e-12);
    ck_assert(teacher_momentum_at(&c, 5000) == 1.0);
    for (int k = 1; k < 1000; k++)
        ck_assert(teacher_momentum_at(&c, k) >= teacher_momentum_at(&c, k - 1));
    const float table[3] = {0.5f, 0.9f, 0.99f};
    pk_momentum_schedule tb = {.kind = PK_MOMENTUM_TABLE, .table = table, .table_len = 3};
    ck_assert(teacher_momentum_at(&tb, 1) == (double)0.9f);
    ck_assert(teacher_momentum_at(&tb, 7) == (double)0.99f);
    pk_momentum_schedule bad = {
        .kind = PK_MOMENTUM_COSINE, .m0 = 0.9, .m1 = 1.2, .total_steps = 10};
    ck_assert_int_eq(teacher_momentum_validate(&bad), PK_ERR_INVALID);

    /* 60 scheduled updates with fresh students track a double-precision teacher */
    const int64_t n = 100003;
    const int K = 60;
    pk_momentum_schedule sch = {
        .kind = PK_MOMENTUM_COSINE, .m0 = 0.9, .m1 = 0.999, .total_steps = K};
    pk_pool *pool = pk_pool_create(2);
    float *t = rand_array(n);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        ref[i] = t[i];
    double worst = 0;
    for (int k = 0; k < K; k++) {
        float *s = rand_array(n);
        double m = teacher_momentum_at(&sch, k);
        ck_assert_int_eq(teacher_ema(pool, t, s, n, m), PK_OK);
        for (int64_t i = 0; i < n; i++)
            ref[i] = (double)m * ref[i] + (1.0 - (double)m) * s[i];
        free(s);
    }
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(t[i] - ref[i]);
        if (e > worst) worst = e;
    }
    /* 60 roundings of values below 3 in magnitude */
    ck_assert_msg(worst < 60 * 4 * 3 * 0x1p-24, "seed %u worst %.3g", g_seed, worst);
    printf("cosine-scheduled 60 updates: max abs err %.3g\n", worst);
    free(t);
    free(ref);
    pk_pool_destroy(pool);
}
END_TEST

/* a partial teacher: random runs of a student block, some flagged as buffers to copy */
static void check_segments(int k) {
    const int64_t ns = 400000, nt = 300000;
    enum { NSEG = 64 };
    pk_teacher_segment segs[NSEG];
    /* teacher layout: runs in a shuffled order, gaps between them left untouched */
    int64_t dst = 0;
    int nseg = 0;
    for (int i = 0; i < NSEG; i++) {
        int64_t len = i % 4 == 0 ? 1 + rand() % 9 : 1 + rand() % 9000; /* tiny and large runs */
        if (i == 7) len = 120000;                                      /* spans many chunks */
        int64_t gap = rand() % 50;
        if (dst + gap + len > nt) break;
        segs[nseg] = (pk_teacher_segment){.src_offset = rand() % (ns - len),
                                          .dst_offset = dst + gap,
                                          .len = len,
                                          .flags = i % 5 == 3 ? PK_TEACHER_COPY : 0};
        dst += gap + len;
        nseg++;
    }
    for (int i = nseg - 1; i > 0; i--) { /* the call takes runs in any order */
        int j = rand() % (i + 1);
        pk_teacher_segment x = segs[i];
        segs[i] = segs[j];
        segs[j] = x;
    }
    float *t = rand_array(nt), *t0 = copy_array(t, nt);
    float *src[2] = {rand_array(ns), rand_array(ns)};
    const double m = 0.99;
    const double w2[2] = {0.006, 0.004};
    pk_pool *pool = pk_pool_create(2);
    ck_assert_int_eq(teacher_ema_segments(pool, t, k, (const float *const *)src, k == 1 ? NULL : w2,
                                          m, segs, nseg),
                     PK_OK);
    unsigned char *covered = calloc((size_t)nt, 1);
    int64_t ncopy = 0;
    for (int r = 0; r < nseg; r++) {
        const pk_teacher_segment *sg = &segs[r];
        for (int64_t i = 0; i < sg->len; i++) {
            int64_t d = sg->dst_offset + i, s = sg->src_offset + i;
            covered[d] = 1;
            if (sg->flags & PK_TEACHER_COPY) {
                ck_assert_msg(t[d] == src[0][s], "seed %u: buffer run %d not copied", g_seed, r);
                ncopy++;
                continue;
            }
            double exact, mag;
            if (k == 1) {
                exact = (double)m * t0[d] + (1.0 - (double)m) * src[0][s];
                mag = fabs((double)t0[d]) + fabs((double)src[0][s]);
            } else {
                exact = (double)m * t0[d] + (double)w2[0] * src[0][s] + (double)w2[1] * src[1][s];
                mag = fabs((double)t0[d]) + fabs((double)src[0][s]) + fabs((double)src[1][s]);
            }
            ck_assert_msg(fabs(t[d] - exact) <= ULP_BOUND(mag) * 2, "seed %u run %d i %lld", g_seed,
                          r, (long long)i);
        }
    }
    ck_assert_int_gt(ncopy, 0);
    for (int64_t d = 0; d < nt; d++)
        if (!covered[d])
            ck_assert_msg(t[d] == t0[d], "seed %u: element %lld outside every run changed", g_seed,
                          (long long)d);
    /* overlapping runs are refused */
    pk_teacher_segment ov[2] = {{.src_offset = 0, .dst_offset = 0, .len = 10},
                                {.src_offset = 0, .dst_offset = 5, .len = 10}};
    ck_assert_int_eq(teacher_ema_segments(pool, t, 1, (const float *const *)src, NULL, m, ov, 2),
                     PK_ERR_INVALID);
    ck_assert(strstr(polyak_error(), "overlap") != NULL);
    free(covered);
    free(t);
    free(t0);
    free(src[0]);
    free(src[1]);
    pk_pool_destroy(pool);
}

START_TEST(segments_single) { check_segments(1); }
END_TEST

START_TEST(segments_multi) { check_segments(2); }
END_TEST

static float *golden_f32(const char *name, int64_t n) {
    char path[1024];
    snprintf(path, sizeof path, POLYAK_GOLDEN_DIR "/optim/%s", name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    float *x = malloc((size_t)n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(fread(x, sizeof *x, (size_t)n, f), (size_t)n);
    fclose(f);
    return x;
}

/* t.lerp_(s, 1 - m) for both lerp branches and t.mul_(0.9).add_(s0, 0.05).add_(s1, 0.05),
 * computed by PyTorch 1.13: our kernels must give the same bits */
START_TEST(torch_bitwise) {
    FILE *f = fopen(POLYAK_GOLDEN_DIR "/optim/index.json", "rb");
    ck_assert_ptr_nonnull(f);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    cJSON *ix = cJSON_Parse(text);
    ck_assert_ptr_nonnull(ix);
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(ix, "teacher");
    ck_assert_ptr_nonnull(tj);
    int64_t n = cJSON_GetObjectItemCaseSensitive(tj, "n")->valueint;
    const cJSON *sj = cJSON_GetObjectItemCaseSensitive(tj, "s");
    float *t0 = golden_f32(cJSON_GetObjectItemCaseSensitive(tj, "t")->valuestring, n);
    float *s0 = golden_f32(cJSON_GetArrayItem(sj, 0)->valuestring, n);
    float *s1 = golden_f32(cJSON_GetArrayItem(sj, 1)->valuestring, n);
    const cJSON *c;
    int ncase = 0;
    pk_pool *pool = pk_pool_create(2);
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(tj, "cases")) {
        const char *kind = cJSON_GetObjectItemCaseSensitive(c, "kind")->valuestring;
        double m = cJSON_GetObjectItemCaseSensitive(c, "m")->valuedouble;
        const cJSON *wj = cJSON_GetObjectItemCaseSensitive(c, "weights");
        float *want = golden_f32(cJSON_GetObjectItemCaseSensitive(c, "out")->valuestring, n);
        float *t = malloc((size_t)n * sizeof *t);
        memcpy(t, t0, (size_t)n * sizeof *t);
        if (!strcmp(kind, "lerp")) {
            ck_assert_int_eq(teacher_ema(pool, t, s0, n, m), PK_OK);
        } else {
            const float *src[2] = {s0, s1};
            double w[2] = {cJSON_GetArrayItem(wj, 0)->valuedouble,
                           cJSON_GetArrayItem(wj, 1)->valuedouble};
            ck_assert_int_eq(teacher_ema_multi(pool, t, 2, src, w, n, m), PK_OK);
        }
        int64_t diff = 0;
        for (int64_t i = 0; i < n; i++)
            diff += memcmp(&t[i], &want[i], sizeof *t) != 0;
        ck_assert_msg(diff == 0, "%s m=%g: %lld of %lld elements differ from torch", kind,
                      (double)m, (long long)diff, (long long)n);
        free(t);
        free(want);
        ncase++;
    }
    ck_assert_int_eq(ncase, 3);
    pk_pool_destroy(pool);
    free(t0);
    free(s0);
    free(s1);
    cJSON_Delete(ix);
}
END_TEST

int main(void) {
    Suite *s = suite_create("teacher");
    TCase *tc = tcase_create("cpu");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, plain_ema);
    tcase_add_test(tc, torch_bitwise);
    tcase_add_test(tc, multi_source);
    tcase_add_test(tc, momentum_schedules);
    tcase_add_test(tc, segments_single);
    tcase_add_test(tc, segments_multi);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
