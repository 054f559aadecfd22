/* teacher_kernels.c - fused EMA-teacher updates and momentum schedules (teacher_kernels.h).
 * Every update streams read t, read s_i, write t once; the pool splits the element range (for
 * segment lists: the concatenation of all runs) into contiguous chunks, so a list of many
 * small runs and one huge run parallelise equally well. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "no-math-errno")
#endif
#include "teacher/teacher_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/threads.h"

/* PyTorch's AVX2 kernels compute lerp_ and add_(alpha) with fused multiply-adds; so do these
 * loops (fmaf), cloned for x86-64-v3 (one instruction, vectorised) and a baseline (libm fmaf:
 * the same results, slower). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TEACHER_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TEACHER_HOT
#endif

/* elements per chunk: 64K floats = 256 KB per stream, far above the pool's hand-off cost */
#define TEACHER_GRAIN 65536
/* multi-source updates with k > 2 sweep the sources over L1-sized blocks of t */
#define TEACHER_BLOCK 1024

/* t = lerp(t, s, w) exactly as aten's CPU lerp kernel */
TEACHER_HOT static void ema_lerp(float *restrict t, const float *restrict s, int64_t n, float w) {
    if (fabsf(w) < 0.5f) {
        for (int64_t i = 0; i < n; i++)
            t[i] = fmaf(w, s[i] - t[i], t[i]);
    } else {
        const float omw = 1.0f - w;
        for (int64_t i = 0; i < n; i++)
            t[i] = fmaf(-(s[i] - t[i]), omw, s[i]);
    }
}

/* t = m t + sum_i w_i s_i, left to right */
TEACHER_HOT static void ema_multi(float *restrict t, int k, const float *const *src, const float *w,
                                  int64_t n, float m) {
    if (k == 1) {
        const float *restrict s0 = src[0];
        const float w0 = w[0];
        for (int64_t i = 0; i < n; i++)
            t[i] = fmaf(s0[i], w0, m * t[i]);
        return;
    }
    if (k == 2) {
        const float *restrict s0 = src[0];
        const float *restrict s1 = src[1];
        const float w0 = w[0], w1 = w[1];
        for (int64_t i = 0; i < n; i++)
            t[i] = fmaf(s1[i], w1, fmaf(s0[i], w0, m * t[i]));
        return;
    }
    for (int64_t b = 0; b < n; b += TEACHER_BLOCK) {
        int64_t e = b + TEACHER_BLOCK < n ? b + TEACHER_BLOCK : n;
        const float *restrict s0 = src[0];
        const float w0 = w[0];
        for (int64_t i = b; i < e; i++)
            t[i] = fmaf(s0[i], w0, m * t[i]);
        for (int j = 1; j < k; j++) {
            const float *restrict sj = src[j];
            const float wj = w[j];
            for (int64_t i = b; i < e; i++)
                t[i] = fmaf(sj[i], wj, t[i]);
        }
    }
}

typedef struct teacher_job {
    float *t;
    int k;
    const float *const *src;
    int lerp; /* single source: lerp with weight lerp_w; else m and w */
    float w[PK_TEACHER_MAX_SOURCES];
    float m, lerp_w;
    const pk_teacher_segment *segs;
    const int64_t *start; /* nseg + 1 prefix sums of run lengths; NULL: one plain range */
    int nseg;
} teacher_job;

/* updates teacher[dst .. dst+n) from sources at [so .. so+n) */
static void teacher_piece(const teacher_job *j, int64_t dst, int64_t so, int64_t n, int copy) {
    const float *s[PK_TEACHER_MAX_SOURCES];
    for (int i = 0; i < j->k; i++)
        s[i] = j->src[i] + so;
    if (copy)
        memcpy(j->t + dst, s[0], (size_t)n * sizeof(float));
    else if (j->lerp)
        ema_lerp(j->t + dst, s[0], n, j->lerp_w);
    else
        ema_multi(j->t + dst, j->k, s, j->w, n, j->m);
}

static void teacher_range(void *arg, int64_t b, int64_t e) {
    const teacher_job *j = arg;
    if (!j->start) {
        teacher_piece(j, b, b, e - b, 0);
        return;
    }
    /* first run containing element b: the last start <= b */
    int lo = 0, hi = j->nseg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->start[mid] <= b)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (int r = lo; r < j->nseg && j->start[r] < e; r++) {
        int64_t rb = j->start[r], re = j->start[r + 1];
        int64_t pb = b > rb ? b : rb, pe = e < re ? e : re;
        if (pe <= pb) continue;
        const pk_teacher_segment *sg = &j->segs[r];
        teacher_piece(j, sg->dst_offset + (pb - rb), sg->src_offset + (pb - rb), pe - pb,
                      (sg->flags & PK_TEACHER_COPY) != 0);
    }
}

static pk_status check_momentum(double m, const char *who) {
    if (!(m >= 0.0 && m <= 1.0))
        return pk_error(PK_ERR_INVALID, "%s: momentum %g outside [0, 1]", who, m);
    return PK_OK;
}

static pk_status check_sources(int k, const float *const *src, const double *w, double m,
                               const char *who) {
    if (k < 1 || k > PK_TEACHER_MAX_SOURCES || !src)
        return pk_error(PK_ERR_INVALID, "%s: %d sources (1..%d)", who, k, PK_TEACHER_MAX_SOURCES);
    for (int i = 0; i < k; i++)
        if (!src[i]) return pk_error(PK_ERR_INVALID, "%s: source %d is NULL", who, i);
    if (w) {
        double sum = m;
        for (int i = 0; i < k; i++)
            sum += w[i];
        if (fabs(sum - 1.0) > 1e-6)
            return pk_error(PK_ERR_INVALID,
                            "%s: momentum %g plus source weights sum to %.9g, expected 1", who, m,
                            sum);
    }
    return PK_OK;
}

pk_status teacher_ema(pk_pool *pool, float *t, const float *s, int64_t n, double m) {
    if (!t || !s || n < 0)
        return pk_error(PK_ERR_INVALID, "teacher_ema: bad arguments (n=%lld)", (long long)n);
    PK_TRY(check_momentum(m, "teacher_ema"));
    const float *src[1] = {s};
    teacher_job j = {.t = t, .k = 1, .src = src, .lerp = 1, .lerp_w = (float)(1.0 - m)};
    pk_parallel_for(pool, n, TEACHER_GRAIN, teacher_range, &j);
    return PK_OK;
}

pk_status teacher_ema_multi(pk_pool *pool, float *t, int k, const float *const *src,
                            const double *w, int64_t n, double m) {
    if (!t || !w || n < 0)
        return pk_error(PK_ERR_INVALID, "teacher_ema_multi: bad arguments (n=%lld)", (long long)n);
    PK_TRY(check_momentum(m, "teacher_ema_multi"));
    PK_TRY(check_sources(k, src, w, m, "teacher_ema_multi"));
    teacher_job j = {.t = t, .k = k, .src = src, .m = (float)m};
    for (int i = 0; i < k; i++)
        j.w[i] = (float)w[i];
    pk_parallel_for(pool, n, TEACHER_GRAIN, teacher_range, &j);
    return PK_OK;
}

static int cmp_dst(const void *a, const void *b) {
    const pk_teacher_segment *x = *(const pk_teacher_segment *const *)a;
    const pk_teacher_segment *y = *(const pk_teacher_segment *const *)b;
    return x->dst_offset < y->dst_offset ? -1 : x->dst_offset > y->dst_offset;
}

pk_status teacher_ema_segments(pk_pool *pool, float *t, int k, const float *const *src,
                               const double *w, double m, const pk_teacher_segment *segs,
                               int nseg) {
    const char *who = "teacher_ema_segments";
    if (!t || nseg < 0 || (nseg > 0 && !segs))
        return pk_error(PK_ERR_INVALID, "%s: bad arguments (nseg=%d)", who, nseg);
    PK_TRY(check_momentum(m, who));
    PK_TRY(check_sources(k, src, w, m, who));
    if (!w && k != 1)
        return pk_error(PK_ERR_INVALID, "%s: %d sources need explicit weights", who, k);
    if (nseg == 0) return PK_OK;
    int64_t *start = malloc((size_t)(nseg + 1) * sizeof *start);
    const pk_teacher_segment **order = malloc((size_t)nseg * sizeof *order);
    if (!start || !order) {
        free(start);
        free(order);
        return pk_error(PK_ERR_NOMEM, "%s: no memory for %d runs", who, nseg);
    }
    start[0] = 0;
    for (int i = 0; i < nseg; i++) {
        const pk_teacher_segment *sg = &segs[i];
        if (sg->src_offset < 0 || sg->dst_offset < 0 || sg->len < 0 ||
            (sg->flags & ~PK_TEACHER_COPY) != 0) {
            free(start);
            free(order);
            return pk_error(PK_ERR_INVALID, "%s: run %d has src %lld dst %lld len %lld flags %#x",
                            who, i, (long long)sg->src_offset, (long long)sg->dst_offset,
                            (long long)sg->len, sg->flags);
        }
        start[i + 1] = start[i] + sg->len;
        order[i] = sg;
    }
    /* runs may come in any order but must not overlap in the teacher */
    qsort(order, (size_t)nseg, sizeof *order, cmp_dst);
    for (int i = 1; i < nseg; i++) {
        if (order[i - 1]->dst_offset + order[i - 1]->len > order[i]->dst_offset) {
            long long a = (long long)(order[i - 1] - segs), b = (long long)(order[i] - segs);
            free(start);
            free(order);
            return pk_error(PK_ERR_INVALID, "%s: runs %lld and %lld overlap in the teacher", who, a,
                            b);
        }
    }
    free(order);
    teacher_job j = {.t = t,
                     .k = k,
                     .src = src,
                     .lerp = w == NULL,
                     .m = (float)m,
                     .lerp_w = (float)(1.0 - m),
                     .segs = segs,
                     .start = start,
                     .nseg = nseg};
    for (int i = 0; w && i < k; i++)
        j.w[i] = (float)w[i];
    pk_parallel_for(pool, start[nseg], TEACHER_GRAIN, teacher_range, &j);
    free(start);
    return PK_OK;
}

pk_status teacher_momentum_validate(const pk_momentum_schedule *s) {
    if (!s) return pk_error(PK_ERR_INVALID, "momentum schedule: NULL");
    switch (s->kind) {
    case PK_MOMENTUM_CONSTANT:
        if (!(s->m0 >= 0 && s->m0 <= 1))
            return pk_error(PK_ERR_INVALID, "momentum schedule: m0 %g outside [0, 1]", s->m0);
        return PK_OK;
    case PK_MOMENTUM_COSINE:
        if (!(s->m0 >= 0 && s->m0 <= 1 && s->m1 >= 0 && s->m1 <= 1) || s->total_steps < 1)
            return pk_error(PK_ERR_INVALID,
                            "momentum schedule: cosine needs m0 %g, m1 %g in [0, 1] and "
                            "total_steps %lld >= 1",
                            s->m0, s->m1, (long long)s->total_steps);
        return PK_OK;
    case PK_MOMENTUM_TABLE:
        if (!s->table || s->table_len < 1)
            return pk_error(PK_ERR_INVALID, "momentum schedule: empty table");
        for (int64_t i = 0; i < s->table_len; i++)
            if (!(s->table[i] >= 0 && s->table[i] <= 1))
                return pk_error(PK_ERR_INVALID, "momentum schedule: table[%lld] = %g", (long long)i,
                                (double)s->table[i]);
        return PK_OK;
    }
    return pk_error(PK_ERR_INVALID, "momentum schedule: unknown kind %d", (int)s->kind);
}

double teacher_momentum_at(const pk_momentum_schedule *s, int64_t k) {
    if (k < 0) k = 0;
    switch (s->kind) {
    case PK_MOMENTUM_CONSTANT: return s->m0;
    case PK_MOMENTUM_COSINE:
        if (k >= s->total_steps) return s->m1;
        /* BYOL (Grill et al. 2020, sec. 3.2) / DINO cosine_scheduler */
        return s->m1 -
               (s->m1 - s->m0) * (cos(M_PI * (double)k / (double)s->total_steps) + 1.0) / 2.0;
    case PK_MOMENTUM_TABLE: return s->table[k < s->table_len ? k : s->table_len - 1];
    }
    return s->m0;
}
