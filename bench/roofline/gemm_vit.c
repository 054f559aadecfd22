/* gemm_vit.c - times cpu_gemm (the AVX-512 SGEMM behind linear, cpu_gemm.c) against OpenBLAS's
 * cblas_sgemm on the products of a ViT training step's linear layers: forward y = x W^T,
 * input gradient dx += dy W, weight gradient dW += dy^T x, for qkv, proj, fc1 and fc2 of
 * vit_nano_patch4_28 at batch 64 (3200 tokens, D 128) and vit_small_patch16_224 at batch 8
 * (1576 tokens, D 384). One thread; median process CPU time over REPS calls, ms and GFLOP/s,
 * and the largest difference between the two results relative to k. Not part of the build
 * (the CLI globs only bench/ itself, not this folder); after building:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iframework -Icommon \
 *      -o /tmp/gemm_vit bench/roofline/gemm_vit.c build/framework/libpolyak_framework_impl.a \
 *      build/shaders/libpolyak_shaders.a build/libpolyak_common.a \
 *      $(pkg-config --libs openblas) -lvulkan -lm -lpthread
 * usage: OPENBLAS_NUM_THREADS=1 /tmp/gemm_vit [REPS] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_gemm.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > 64) reps = 7;
    static const struct {
        const char *model;
        int64_t rows, d, hidden;
    } models[] = {{"nano", 3200, 128, 512}, {"small", 1576, 384, 1536}};
    pk_pool *pool = pk_pool_create(1);
    printf("%-6s %-5s %-3s %5s %5s %5s %9s %9s %9s %9s %7s\n", "model", "layer", "op", "m", "n",
           "k", "ours ms", "GFLOP/s", "blas ms", "GFLOP/s", "ratio");
    double tot_ours = 0, tot_blas = 0;
    for (int mi = 0; mi < 2; mi++) {
        int64_t R = models[mi].rows, D = models[mi].d, H = models[mi].hidden;
        const struct {
            const char *name;
            int64_t in, out;
        } layers[] = {{"qkv", D, 3 * D}, {"proj", D, D}, {"fc1", D, H}, {"fc2", H, D}};
        for (int li = 0; li < 4; li++) {
            int64_t in = layers[li].in, out = layers[li].out;
            for (int op = 0; op < 3; op++) {
                /* fwd: (R,out) = x (R,in) W^T; dx: (R,in) += dy (R,out) W (out,in);
                 * dW: (out,in) += dy^T x */
                cpu_gemm_args g = {0};
                int64_t m = op == 2 ? out : R, n = op == 0 ? out : in,
                        k = op == 0   ? in
                            : op == 1 ? out
                                      : R;
                g.m = m, g.n = n, g.k = k, g.accumulate = op > 0;
                g.trans_a = op == 2, g.trans_b = op == 0;
                int64_t na = m * k, nb = k * n;
                float *a = malloc(sizeof(float) * (size_t)na),
                      *b = malloc(sizeof(float) * (size_t)nb);
                float *c0 = malloc(sizeof(float) * (size_t)(m * n));
                float *c1 = malloc(sizeof(float) * (size_t)(m * n));
                for (int64_t i = 0; i < na; i++)
                    a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
                for (int64_t i = 0; i < nb; i++)
                    b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
                memset(c0, 0, sizeof(float) * (size_t)(m * n));
                memset(c1, 0, sizeof(float) * (size_t)(m * n));
                g.a = a, g.b = b, g.lda = g.trans_a ? m : k, g.ldb = g.trans_b ? k : n, g.ldc = n;
                double to[64], tb[64];
                for (int r = 0; r < reps; r++) {
                    double t0 = cpu_now();
                    g.c = c0;
                    cpu_gemm(pool, &g);
                    to[r] = cpu_now() - t0;
                    t0 = cpu_now();
                    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                                g.trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1.0f,
                                a, (int)g.lda, b, (int)g.ldb, g.accumulate ? 1.0f : 0.0f, c1,
                                (int)n);
                    tb[r] = cpu_now() - t0;
                }
                double err = 0;
                for (int64_t i = 0; i < m * n; i++)
                    err = fmax(err, fabs((double)c0[i] - c1[i]));
                qsort(to, (size_t)reps, sizeof(double), cmp);
                qsort(tb, (size_t)reps, sizeof(double), cmp);
                double mo = to[reps / 2], mb = tb[reps / 2], fl = 2.0 * (double)(m * n) * (double)k;
                tot_ours += mo, tot_blas += mb;
                static const char *ops[] = {"fwd", "dx", "dW"};
                printf("%-6s %-5s %-3s %5ld %5ld %5ld %9.3f %9.1f %9.3f %9.1f %7.2f  (diff %.1e)\n",
                       models[mi].model, layers[li].name, ops[op], (long)m, (long)n, (long)k,
                       1e3 * mo, fl / mo * 1e-9, 1e3 * mb, fl / mb * 1e-9, mo / mb,
                       err / (double)k / (double)reps);
                free(a), free(b), free(c0), free(c1);
            }
        }
    }
    printf("total: ours %.1f ms, OpenBLAS %.1f ms, ratio %.2f\n", 1e3 * tot_ours, 1e3 * tot_blas,
           tot_ours / tot_blas);
    pk_pool_destroy(pool);
    return 0;
}
