/* cpu_gemm.h - the CPU backend's own SGEMM for AVX-512 cores (cpu_gemm.c); cblas_sgemm is the
 * path elsewhere and the tests' reference. */
#ifndef POLYAK_CPU_GEMM_H
#define POLYAK_CPU_GEMM_H
#include <stdbool.h>

#include "cpu/cpu_util.h"

/* C (m, n) = (+= with accumulate) op(A) (m, k) . op(B) (k, n), all row-major; op transposes
 * the stored matrix when trans_a / trans_b (A stored (k, m), B stored (n, k)). */
typedef struct cpu_gemm_args {
    bool trans_a, trans_b, accumulate;
    int64_t m, n, k;
    const float *a, *b;
    float *c;
    int64_t lda, ldb, ldc;
} cpu_gemm_args;

/* True when this core has AVX-512F (cpu_gemm runs any size there). */
bool cpu_gemm_available(void);

/* True when cpu_gemm is available and the product is large enough to be worth it. */
bool cpu_gemm_usable(int64_t m, int64_t n, int64_t k);

/* Runs the product on the pool's threads (rows split between them). */
pk_status cpu_gemm(pk_pool *pool, const cpu_gemm_args *g);

#endif
