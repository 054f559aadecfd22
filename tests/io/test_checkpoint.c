/* test_checkpoint.c - checkpoint round trip (tensors + step/RNG/options), bad metadata, the
 * keep-last-K helper, and crash safety: a writer killed at random instants never leaves a torn
 * checkpoint. */
#include "checkpoint.h"
#include "io_testutil.h"

#include <signal.h>
#include <sys/wait.h>

static pk_status write_ckpt(const char *path, int64_t step, float *w, int n, uint64_t rng0) {
    int64_t shape[1] = {n};
    st_write_tensor t = {.name = "w", .dtype = ST_F32, .ndim = 1, .shape = shape, .data = w};
    ckpt_meta m = {.step = step,
                   .rng = {rng0, ~rng0, rng0 * 3, 42},
                   .options_json = "{\"lr\":0.001,\"name\":\"x\"}"};
    return checkpoint_write(path, &t, 1, &m);
}

START_TEST(roundtrip) {
    char *dir = tu_tmpdir();
    char path[512];
    int64_t step = (int64_t)(tu_rand() >> 2);
    checkpoint_path(dir, step, path, sizeof path);
    float w[17];
    for (int i = 0; i < 17; i++)
        w[i] = (float)tu_uniform(-5, 5);
    uint64_t r = tu_rand();
    ck_assert_int_eq(write_ckpt(path, step, w, 17, r), PK_OK);
    ckpt_file ck;
    ck_assert_int_eq(checkpoint_open(path, &ck), PK_OK);
    ck_assert_int_eq(ck.step, step);
    ck_assert_int_eq(ck.format_version, 1);
    ck_assert_uint_eq(ck.rng[0], r);
    ck_assert_uint_eq(ck.rng[1], ~r);
    ck_assert_uint_eq(ck.rng[2], r * 3);
    ck_assert_ptr_nonnull(strstr(ck.options_json, "\"lr\":0.001"));
    const st_tensor *t = safetensors_find(&ck.st, "w");
    ck_assert_ptr_nonnull(t);
    ck_assert_mem_eq(t->data, w, sizeof w);
    checkpoint_close(&ck);
    checkpoint_close(NULL);
    /* a plain safetensors file is not a checkpoint */
    st_write_tensor pt = {.name = "w", .dtype = ST_F32, .ndim = 0, .shape = NULL, .data = w};
    ck_assert_int_eq(safetensors_write(path, &pt, 1, NULL, NULL, 0), PK_OK);
    ck_assert_int_eq(checkpoint_open(path, &ck), PK_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(polyak_error(), "polyak"));
    /* bad metadata fields */
    const char *bad[] = {"{\"format_version\":99,\"step\":\"1\",\"rng\":[\"1\",\"2\",\"3\",\"4\"],"
                         "\"options\":{}}",
                         "{\"format_version\":1,\"step\":\"-1\",\"rng\":[\"1\",\"2\",\"3\",\"4\"],"
                         "\"options\":{}}",
                         "{\"format_version\":1,\"step\":\"5\",\"rng\":[\"1\",\"2\",\"zz\",\"4\"],"
                         "\"options\":{}}",
                         "{\"format_version\":1,\"step\":\"5\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}",
                         "not json"};
    const char *field[] = {"format_version", "step", "rng[2]", "options", "JSON object"};
    for (int i = 0; i < 5; i++) {
        const char *k = "polyak";
        ck_assert_int_eq(safetensors_write(path, &pt, 1, &k, &bad[i], 1), PK_OK);
        ck_assert_int_eq(checkpoint_open(path, &ck), PK_ERR_FORMAT);
        ck_assert_msg(strstr(polyak_error(), field[i]), "%s", polyak_error());
    }
    ckpt_meta m = {.step = 1, .options_json = "[1]"};
    ck_assert_int_eq(checkpoint_write(path, &pt, 1, &m), PK_ERR_INVALID);
    tu_rmrf(dir);
    free(dir);
}
END_TEST

START_TEST(keep_last) {
    char *dir = tu_tmpdir();
    int n = tu_int(3, 12), keep = tu_int(1, 4);
    int64_t steps[12];
    float w[2] = {1, 2};
    for (int i = 0; i < n; i++) {
        steps[i] = (int64_t)i * 1000 + tu_int(0, 999); /* increasing, varied digit counts */
        char p[512];
        checkpoint_path(dir, steps[i], p, sizeof p);
        ck_assert_int_eq(write_ckpt(p, steps[i], w, 2, 1), PK_OK);
    }
    char *other = tu_path(dir, "ckpt-notes.txt");
    tu_write_str(other, "keep me");
    int64_t latest;
    ck_assert_int_eq(checkpoint_find_latest(dir, &latest), PK_OK);
    ck_assert_int_eq(latest, steps[n - 1]);
    ck_assert_int_eq(checkpoint_keep_last(dir, keep), PK_OK);
    for (int i = 0; i < n; i++) {
        char p[512];
        checkpoint_path(dir, steps[i], p, sizeof p);
        ck_assert_int_eq(access(p, F_OK) == 0, i >= n - keep);
    }
    ck_assert_int_eq(access(other, F_OK), 0);
    ck_assert_int_eq(checkpoint_keep_last(dir, 0), PK_ERR_INVALID);
    free(other);
    tu_rmrf(dir);
    ck_assert_int_eq(checkpoint_find_latest(dir, &latest), PK_ERR_IO);
    free(dir);
}
END_TEST

/* A child rewrites the same checkpoint path in a loop (each version self-consistent: every
 * weight equals the step); the parent kills it at a random instant and the file left must open
 * and be consistent, many times over. */
START_TEST(crash_never_tears) {
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "ckpt.safetensors");
    enum { N = 200000 };
    float *w = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        w[i] = 0;
    ck_assert_int_eq(write_ckpt(path, 0, w, N, 0), PK_OK);
    for (int round = 0; round < 8; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            for (int64_t s = 1;; s++) {
                for (int i = 0; i < N; i++)
                    w[i] = (float)s;
                if (write_ckpt(path, s, w, N, (uint64_t)s) != PK_OK) _exit(3);
            }
        }
        usleep((useconds_t)tu_int(1000, 60000));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        ckpt_file ck;
        ck_assert_int_eq(checkpoint_open(path, &ck), PK_OK);
        const st_tensor *t = safetensors_find(&ck.st, "w");
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->shape[0], N);
        float v[N > 0 ? 1 : 1];
        for (size_t i = 0; i < N; i += 997) {
            memcpy(v, (const float *)t->data + i, 4);
            ck_assert_float_eq(v[0], (float)ck.step);
        }
        ck_assert_uint_eq(ck.rng[0], (uint64_t)ck.step);
        checkpoint_close(&ck);
    }
    free(w);
    tu_rmrf(dir);
    free(path);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io/checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, keep_last);
    tcase_add_test(tc, crash_never_tears);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
