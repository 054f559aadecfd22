/* cpu_gemm.c - single-precision GEMM for AVX-512 cores, used by linear (the ViT's dominant op:
 * 75-80 % of a 1-thread training step through OpenBLAS). Debian's OpenBLAS 0.3.21 runs its
 * Haswell (AVX2) kernels on this machine (OPENBLAS_CORETYPE=Haswell is set there; the core is a
 * Zen 5 with two 512-bit FMA pipes), and reached ~83 GFLOP/s at the ViT's shapes.
 *
 * Layout as BLIS: for each block of KC = 384 along k and NC = 1536 along n, op(B) is packed
 * into micro-panels of NR = 32 columns (kc x 32, k-major, zero-padded), shared by all threads.
 * Work items are a block of MC = 144 rows x 4 column panels; the MR = 12 x 32 register kernel
 * (24 zmm accumulators, one broadcast of A per row and k; 14 x 32 was no faster) reads A in
 * place, with row stride lda (A as stored) or k stride lda (A stored transposed, as in a
 * weight gradient): packing A cost as much as the product where n is 128. Only panels at the edges
 * of M or N are packed (zero-padded) and go through a 12 x 32 tile on the stack. The first k block
 * writes or adds into C as asked, later ones add. Every C tile belongs to one item and sums its k
 * blocks in the same order, so results do not depend on the thread count. On 1 thread it takes
 * 0.56x OpenBLAS's CPU time over the linear products of both ViTs (bench/roofline/gemm_vit.c).
 * cblas_sgemm stays the path on other cores and the reference the tests compare against. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_gemm.h"

#define MR 12
#define NR 32
#define KC 384
#define MC 144 /* multiple of MR */
#define NC 1536
#define PCH 4 /* column panels per work item */

bool cpu_gemm_available(void) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return have;
}

bool cpu_gemm_usable(int64_t m, int64_t n, int64_t k) {
    return cpu_gemm_available() && m >= MR && n >= 16 && k >= 16 && m * n * k >= (1 << 18);
}

/* Packs a w-wide panel: dst[k * w + r] = element (x0 + r, k0 + k) of a logical (x, k) matrix
 * stored as p[x * ld + k] (!k_major) or p[k * ld + x] (k_major), for k < kc; rows r >= valid
 * are zero. op(A) is (i, k); op(B) is (j, k) read along its columns. */
__attribute__((always_inline)) static inline void pack_panel(const float *p, int64_t ld,
                                                             bool k_major, int64_t x0, int64_t k0,
                                                             int kc, int w, int valid,
                                                             float *restrict dst) {
    if (k_major) {
        for (int k = 0; k < kc; k++) {
            const float *src = p + (k0 + k) * ld + x0;
            if (valid == w)
                memcpy(dst + k * w, src, sizeof(float) * (size_t)w);
            else {
                int r = 0;
                for (; r < valid; r++)
                    dst[k * w + r] = src[r];
                for (; r < w; r++)
                    dst[k * w + r] = 0.0f;
            }
        }
    } else {
        for (int r = 0; r < w; r++) {
            const float *src = p + (x0 + r) * ld + k0;
            if (r < valid)
                for (int k = 0; k < kc; k++)
                    dst[k * w + r] = src[k];
            else
                for (int k = 0; k < kc; k++)
                    dst[k * w + r] = 0.0f;
        }
    }
}

/* Packs rows [i0, i0 + MR) x k [k0, k0 + kc) of op(A) into ap (kc x MR), zero rows past M. */
static void pack_a(const cpu_gemm_args *g, int64_t i0, int64_t k0, int kc, float *restrict ap) {
    int mr = g->m - i0 < MR ? (int)(g->m - i0) : MR;
    pack_panel(g->a, g->lda, g->trans_a, i0, k0, kc, MR, mr, ap);
}

/* Packs k [k0, k0 + kc) x columns [j0, j0 + NR) of op(B) into bp (kc x NR), zero past N. */
static void pack_b(const cpu_gemm_args *g, int64_t k0, int kc, int64_t j0, float *restrict bp) {
    int nr = g->n - j0 < NR ? (int)(g->n - j0) : NR;
    pack_panel(g->b, g->ldb, !g->trans_b, j0, k0, kc, NR, nr, bp);
}

/* C tile (mr x nr at c, row stride ldc) = (add: +=) ap (kc x MR) . bp (kc x NR). Written
 * with intrinsics and named accumulators: from vector-extension code GCC kept the
 * accumulators in memory and split every FMA in two (ISO C mode does not contract). */
#define ACC_DECL(r) __m512 c##r##a = _mm512_setzero_ps(), c##r##b = _mm512_setzero_ps()
#define ACC_FMA(r)                                                                                 \
    do {                                                                                           \
        __m512 av = _mm512_set1_ps(a[(r)*ars]);                                                    \
        c##r##a = _mm512_fmadd_ps(av, b0, c##r##a);                                                \
        c##r##b = _mm512_fmadd_ps(av, b1, c##r##b);                                                \
    } while (0)
#define ACC_OUT(r)                                                                                 \
    do {                                                                                           \
        _mm512_storeu_ps(tile[r], c##r##a);                                                        \
        _mm512_storeu_ps(tile[r] + 16, c##r##b);                                                   \
    } while (0)
#define ACC_SET(r)                                                                                 \
    do {                                                                                           \
        _mm512_storeu_ps(c + (r)*ldc, c##r##a);                                                    \
        _mm512_storeu_ps(c + (r)*ldc + 16, c##r##b);                                               \
    } while (0)
#define ACC_ADD(r)                                                                                 \
    do {                                                                                           \
        _mm512_storeu_ps(c + (r)*ldc, _mm512_add_ps(c##r##a, _mm512_loadu_ps(c + (r)*ldc)));       \
        _mm512_storeu_ps(c + (r)*ldc + 16,                                                         \
                         _mm512_add_ps(c##r##b, _mm512_loadu_ps(c + (r)*ldc + 16)));               \
    } while (0)
#define ACC_ALL(M)                                                                                 \
    M(0);                                                                                          \
    M(1);                                                                                          \
    M(2);                                                                                          \
    M(3);                                                                                          \
    M(4);                                                                                          \
    M(5);                                                                                          \
    M(6);                                                                                          \
    M(7);                                                                                          \
    M(8);                                                                                          \
    M(9);                                                                                          \
    M(10);                                                                                         \
    M(11)

/* The register kernel over A rows at a + r * ars + k * aks: packed panels (ars 1, aks MR) or
 * the caller's row-major A in place (ars lda, aks 1), which saves packing where n is small. */
__attribute__((target("avx512f"), always_inline)) static inline void
kernel_body(int kc, const float *restrict ap, int64_t ars, int64_t aks, const float *restrict bp,
            float *c, int64_t ldc, int mr, int nr, bool add) {
    ACC_ALL(ACC_DECL);
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
        const float *a = ap + k * aks;
        ACC_ALL(ACC_FMA);
    }
    if (mr == MR && nr == NR) {
        if (add) {
            ACC_ALL(ACC_ADD);
        } else {
            ACC_ALL(ACC_SET);
        }
        return;
    }
    if (mr == MR && nr == NR) {
        if (add) {
            ACC_ALL(ACC_ADD);
        } else {
            ACC_ALL(ACC_SET);
        }
        return;
    }
    _Alignas(64) float tile[MR][NR];
    ACC_ALL(ACC_OUT);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++)
            c[r * ldc + j] = add ? c[r * ldc + j] + tile[r][j] : tile[r][j];
}

__attribute__((target("avx512f"))) static void kernel_packed(int kc, const float *ap,
                                                             const float *bp, float *c, int64_t ldc,
                                                             int mr, int nr, bool add) {
    kernel_body(kc, ap, 1, MR, bp, c, ldc, mr, nr, add);
}

__attribute__((target("avx512f"))) static void kernel_direct(int kc, const float *a, int64_t lda,
                                                             const float *bp, float *c, int64_t ldc,
                                                             bool add) {
    kernel_body(kc, a, lda, 1, bp, c, ldc, MR, NR, add);
}

/* A stored transposed (k, m): the MR rows of a k step are contiguous. */
__attribute__((target("avx512f"))) static void kernel_direct_t(int kc, const float *a, int64_t lda,
                                                               const float *bp, float *c,
                                                               int64_t ldc, bool add) {
    kernel_body(kc, a, 1, lda, bp, c, ldc, MR, NR, add);
}

typedef struct {
    const cpu_gemm_args *g;
    const float *bpack; /* (NC / NR panels) x kc x NR */
    float *bpack_w;
    int64_t k0, j0, nc;
    int kc;
    bool add;
} gemm_job;

static void pack_b_range(void *arg, int64_t b, int64_t e) {
    gemm_job *j = arg;
    for (int64_t p = b; p < e; p++)
        pack_b(j->g, j->k0, j->kc, j->j0 + p * NR, j->bpack_w + p * j->kc * NR);
}

/* Row blocks [b, e) of MC rows against the packed B block. */
/* Work items [b, e): item = row block (MC rows) x chunk of PCH column panels, so that a
 * product with few rows (a weight gradient of 128 outputs) still spreads over the threads. Only
 * a row block's last panel can be partial; it alone is packed. */
static void items_range(void *arg, int64_t b, int64_t e) {
    gemm_job *j = arg;
    const cpu_gemm_args *g = j->g;
    _Alignas(64) float ap[MR * KC];
    int64_t npan = (j->nc + NR - 1) / NR, nch = (npan + PCH - 1) / PCH;
    for (int64_t it = b; it < e; it++) {
        int64_t blk = it / nch, p0 = it % nch * PCH, p1 = p0 + PCH < npan ? p0 + PCH : npan;
        int64_t i0 = blk * MC, i1 = i0 + MC < g->m ? i0 + MC : g->m;
        int64_t ipart = i0 + (i1 - i0) / MR * MR; /* start of the partial panel, if any */
        if (ipart < i1) pack_a(g, ipart, j->k0, j->kc, ap);
        for (int64_t p = p0; p < p1; p++) {
            int64_t jj = j->j0 + p * NR;
            int nr = g->n - jj < NR ? (int)(g->n - jj) : NR;
            const float *bp = j->bpack + p * j->kc * NR;
            for (int64_t i = i0; i < i1; i += MR) {
                int mr = i1 - i < MR ? (int)(i1 - i) : MR;
                float *cij = g->c + i * g->ldc + jj;
                if (mr < MR)
                    kernel_packed(j->kc, ap, bp, cij, g->ldc, mr, nr, j->add);
                else if (nr < NR) { /* a full row panel against a partial column panel */
                    _Alignas(64) float apf[MR * KC];
                    pack_a(g, i, j->k0, j->kc, apf);
                    kernel_packed(j->kc, apf, bp, cij, g->ldc, mr, nr, j->add);
                } else if (!g->trans_a)
                    kernel_direct(j->kc, g->a + i * g->lda + j->k0, g->lda, bp, cij, g->ldc,
                                  j->add);
                else
                    kernel_direct_t(j->kc, g->a + j->k0 * g->lda + i, g->lda, bp, cij, g->ldc,
                                    j->add);
            }
        }
    }
}

pk_status cpu_gemm(pk_pool *pool, const cpu_gemm_args *g) {
    float *bpack = aligned_alloc(64, sizeof(float) * KC * NC);
    if (!bpack) return pk_error(PK_ERR_NOMEM, "gemm: out of host memory");
    int64_t nblk = (g->m + MC - 1) / MC;
    for (int64_t j0 = 0; j0 < g->n; j0 += NC) {
        int64_t nc = g->n - j0 < NC ? g->n - j0 : NC;
        for (int64_t k0 = 0; k0 < g->k; k0 += KC) {
            gemm_job j = {.g = g,
                          .bpack = bpack,
                          .bpack_w = bpack,
                          .k0 = k0,
                          .j0 = j0,
                          .nc = nc,
                          .kc = g->k - k0 < KC ? (int)(g->k - k0) : KC,
                          .add = g->accumulate || k0 > 0};
            pk_parallel_for(pool, (nc + NR - 1) / NR, 4, pack_b_range, &j);
            int64_t nch = ((nc + NR - 1) / NR + PCH - 1) / PCH;
            pk_parallel_for(pool, nblk * nch, 1, items_range, &j);
        }
    }
    free(bpack);
    return PK_OK;
}
