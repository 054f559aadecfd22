/* cpu_util.h - small helpers shared by the CPU backend's kernels. */
#ifndef POLYAK_CPU_UTIL_H
#define POLYAK_CPU_UTIL_H
#include "backend.h"
#include "cpu/threads.h"
#include "ops/ops.h"

/* The f32 elements of a CPU tensor (block host pointer + offset). */
static inline float *cpu_f32(const tensor *t) { return (float *)t->block->host + t->offset; }

/* The i32 elements of a CPU tensor. */
static inline int32_t *cpu_i32(const tensor *t) { return (int32_t *)t->block->host + t->offset; }

/* True when input i exists and wants a gradient. */
static inline bool cpu_wants_grad(const pk_node *n, int i) {
    return i < n->n_in && n->in[i] && n->in[i]->requires_grad && n->in[i]->grad;
}

/* True when input i's gradient is fresh: unwritten in this walk, so this kernel's contribution
 * must write every element instead of adding, then clear the flag (cpu_grad_settle). Only
 * kernels that autograd.c lists as writing fresh gradients ever see one. */
static inline bool cpu_grad_fresh(const pk_node *n, int i) {
    return cpu_wants_grad(n, i) && n->in[i]->grad_fresh;
}

/* Marks input i's gradient written; zero-fills it first when `fill` (for a path that only adds
 * into its gradient) and it is still fresh. */
static inline pk_status cpu_grad_settle(const pk_node *n, int i, bool fill) {
    if (!cpu_wants_grad(n, i) || !n->in[i]->grad_fresh) return PK_OK;
    if (fill) PK_TRY(tensor_fill(n->in[i]->grad, 0.0f));
    n->in[i]->grad_fresh = false;
    return PK_OK;
}

/* Sixteen-float vectors (GCC/Clang vector extensions) for elementwise loops, which GCC's -O2
 * cost model leaves scalar when the trip count is unknown. Functions using them are cloned with
 * target_clones("avx512f", "avx2", "default"): one zmm, two ymm or four xmm operations each.
 * v16u is the same at any float alignment, so loads and stores are plain dereferences
 * (helpers returning a 64-byte vector would change the ABI between the clones). */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define LD16(p) (*(const v16u *)(p))

/* Runs fn over [0, n) on the context's pool. */
static inline void cpu_for(pk_ctx *c, int64_t n, int64_t grain, pk_range_fn fn, void *arg) {
    pk_parallel_for(c->pool, n, grain, fn, arg);
}

#endif
