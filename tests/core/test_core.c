/* test_core.c - the core runtime on the CPU backend: shape and size arithmetic that must fail
 * cleanly, arena state after a failed block, the autograd engine on shared inputs, diamonds,
 * repeated backward, views and detach, the worker pool under nesting and concurrency, and the
 * `polyak` CLI's answers to bad options. Every case here once failed. */
#define _GNU_SOURCE /* asprintf */
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd.h"
#include "cpu/threads.h"
#include "pk_test.h"

/* Under AddressSanitizer a failed allocation aborts the process unless told otherwise;
 * test_arena_block_failure needs posix_memalign to return ENOMEM as it does without ASan. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---- shapes and sizes ---- */

/* A CPU context made with an explicit thread count names that count, not the core count. */
START_TEST(test_cpu_threads_in_device_name) {
    for (int n = 1; n <= 3; n++) {
        pk_ctx *c = NULL;
        pk_ctx_options o = {.device = "cpu", .threads = n};
        ck_assert_int_eq(pk_ctx_create(&o, &c), PK_OK);
        const pk_device_info *d = pk_device_get_info(c->dev);
        char want[64];
        snprintf(want, sizeof want, "cpu (%d thread%s,", n, n == 1 ? "" : "s");
        ck_assert_int_eq(d->threads, n);
        ck_assert_int_eq(pk_pool_threads(c->pool), n);
        ck_assert_msg(strncmp(d->name, want, strlen(want)) == 0, "name '%s'", d->name);
        pk_ctx_destroy(c);
    }
}
END_TEST

START_TEST(test_tensor_new_overflow) {
    pk_ctx *c = pkt_ctx("cpu");
    /* 2^40 * 2^40 elements wraps int64 to 0: it must not become a 256-byte tensor */
    tensor *t = tensor_new(c->step, PK_F32, 2, (int64_t[]){1LL << 40, 1LL << 40});
    ck_assert_msg(t == NULL, "a (2^40, 2^40) tensor was allocated");
    ck_assert_msg(strstr(polyak_error(), "(1099511627776, 1099511627776)") != NULL,
                  "error does not name the shape: %s", polyak_error());
    /* 2^62 elements fit int64, but 2^62 * 4 bytes wraps size_t to 0 */
    t = tensor_new(c->step, PK_F32, 1, (int64_t[]){1LL << 62});
    ck_assert_msg(t == NULL, "a 2^62-element f32 tensor was allocated");
    ck_assert_msg(strstr(polyak_error(), "4611686018427387904") != NULL, "error: %s",
                  polyak_error());
    /* 2^62 - 1 f32 elements: the byte count fits size_t but rounding it up to the arena's
     * alignment wrapped to a 256-byte allocation */
    t = tensor_new(c->step, PK_F32, 1, (int64_t[]){(1LL << 62) - 1});
    ck_assert_msg(t == NULL, "a (2^62 - 1)-element f32 tensor was allocated");
    ck_assert_msg(strstr(polyak_error(), "exceeds") != NULL, "error: %s", polyak_error());
    /* a zero dimension is fine, even next to a huge one */
    t = tensor_new(c->step, PK_F32, 2, (int64_t[]){0, 1LL << 62});
    ck_assert_msg(t && tensor_numel(t) == 0, "%s", polyak_error());
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_tensor_view_bounds) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *t = tensor_new(c->step, PK_F32, 1, (int64_t[]){64});
    ck_assert_ptr_nonnull(t);
    size_t cap = t->block->size / 4; /* elements the block holds */
    /* inside the block: fine */
    tensor *v = tensor_view(c->step, t, 2, (int64_t[]){8, 8}, (int64_t[]){8, 1}, t->offset);
    ck_assert_msg(v != NULL, "%s", polyak_error());
    /* past the block's end: a kernel would write outside the allocation */
    v = tensor_view(c->step, t, 1, (int64_t[]){16}, (int64_t[]){1}, (int64_t)cap - 8);
    ck_assert_msg(v == NULL, "a view past the block end was accepted");
    ck_assert_msg(strstr(polyak_error(), "outside") != NULL, "error: %s", polyak_error());
    /* a negative offset, and a negative stride reaching below element 0 */
    ck_assert_ptr_null(tensor_view(c->step, t, 1, (int64_t[]){4}, (int64_t[]){1}, -1));
    ck_assert_ptr_null(tensor_view(c->step, t, 1, (int64_t[]){4}, (int64_t[]){-1}, 2));
    /* a negative stride that stays inside is a valid (reversed) view */
    ck_assert_ptr_nonnull(tensor_view(c->step, t, 1, (int64_t[]){4}, (int64_t[]){-1}, 3));
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_view_u32_counts_on_vulkan) {
    if (!pkt_have_vulkan()) return;
    pk_ctx *c = pkt_ctx("vk");
    tensor *t = tensor_new(c->step, PK_F32, 1, (int64_t[]){4});
    ck_assert_ptr_nonnull(t);
    /* a stride-0 view stays inside its block but counts 2^33 elements, which a uint32 push
     * constant would truncate to 0 */
    tensor *v = tensor_view(c->step, t, 1, (int64_t[]){1LL << 33}, (int64_t[]){0}, t->offset);
    ck_assert_msg(v == NULL, "a 2^33-element Vulkan view was accepted");
    ck_assert_msg(strstr(polyak_error(), "32 bits") != NULL, "error: %s", polyak_error());
    pkt_ctx_done(c);
    /* the CPU backend indexes in 64 bits: the same view is fine there */
    c = pkt_ctx("cpu");
    t = tensor_new(c->step, PK_F32, 1, (int64_t[]){4});
    ck_assert_ptr_nonnull(tensor_view(c->step, t, 1, (int64_t[]){1LL << 33}, (int64_t[]){0}, 0));
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_reshape_bad_shapes) {
    pk_ctx *c = pkt_ctx("cpu");
    tensor *x = tensor_new(c->step, PK_F32, 1, (int64_t[]){6});
    ck_assert_ptr_nonnull(tensor_fill(x, 1.0f) == PK_OK ? x : NULL);
    /* (-2) * (-3) = 6 matched numel and slipped through to tensor_view */
    ck_assert_ptr_null(pk_reshape(c, x, 2, (int64_t[]){-2, -3}));
    ck_assert_msg(strstr(polyak_error(), "reshape") != NULL, "error: %s", polyak_error());
    /* a product that overflows int64 must not wrap around to 6 */
    int64_t big = (int64_t)1 << 62;
    ck_assert_ptr_null(pk_reshape(c, x, 3, (int64_t[]){big, 4, 6}));
    ck_assert_msg(strstr(polyak_error(), "reshape") != NULL, "error: %s", polyak_error());
    /* -1 next to a zero dimension has no unique answer */
    tensor *z = tensor_new(c->step, PK_F32, 1, (int64_t[]){0});
    ck_assert_ptr_null(pk_reshape(c, z, 2, (int64_t[]){0, -1}));
    ck_assert_msg(strstr(polyak_error(), "reshape") != NULL, "error: %s", polyak_error());
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_linear_degenerate) {
    pk_ctx *c = pkt_ctx("cpu");
    /* zero input features divided numel by zero (SIGFPE) */
    tensor *x = tensor_new(c->step, PK_F32, 2, (int64_t[]){2, 0});
    tensor *w = tensor_new(c->step, PK_F32, 2, (int64_t[]){3, 0});
    ck_assert_ptr_null(pk_linear(c, x, w, NULL));
    ck_assert_msg(strstr(polyak_error(), "linear") != NULL, "error: %s", polyak_error());
    /* a rank-0 input read shape[-1] */
    tensor *s = tensor_new(c->step, PK_F32, 0, NULL);
    tensor *w1 = tensor_new(c->step, PK_F32, 2, (int64_t[]){3, 1});
    ck_assert_ptr_null(pk_linear(c, s, w1, NULL));
    ck_assert_msg(strstr(polyak_error(), "linear") != NULL, "error: %s", polyak_error());
    pkt_ctx_done(c);
}
END_TEST

/* ---- arenas ---- */

START_TEST(test_arena_block_failure) {
    pk_ctx *c = pkt_ctx("cpu");
    pk_arena *a = NULL;
    ck_assert_int_eq(pk_arena_create(c->dev, "probe", 1 << 20, &a), PK_OK);
    tensor *t = tensor_new(a, PK_F32, 1, (int64_t[]){1000});
    ck_assert_ptr_nonnull(t);
    pk_arena_stats before = pk_arena_get_stats(a);
    /* cap the address space so the next block (512 MiB) cannot be mapped; Check forks, so the
     * limit dies with this test */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &rl), 0);
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    unsigned long pages = 0;
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    rl.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (128ul << 20);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    tensor *big = tensor_new(a, PK_F32, 1, (int64_t[]){128LL << 20});
    ck_assert_msg(big == NULL, "a 512 MiB block was allocated under a 128 MiB headroom");
    const char *e = polyak_error();
    ck_assert_msg(strstr(e, "arena 'probe'") && strstr(e, "536870912"),
                  "error does not name the arena and the bytes: %s", e);
    /* the inner cause survives intact after the arena's prefix */
    ck_assert_msg(strstr(e, ": cannot allocate 536870912 bytes of host memory") != NULL,
                  "the inner message was garbled: %s", e);
    pk_arena_stats after = pk_arena_get_stats(a);
    ck_assert_int_eq(after.blocks, before.blocks);
    ck_assert_uint_eq(after.reserved, before.reserved);
    ck_assert_uint_eq(after.used, before.used);
    /* the arena still serves small tensors from its existing block */
    tensor *small = tensor_new(a, PK_F32, 1, (int64_t[]){16});
    ck_assert_ptr_nonnull(small);
    ck_assert_ptr_eq(small->block, t->block);
    pk_arena_destroy(a);
    pkt_ctx_done(c);
}
END_TEST

/* A block of 4 MiB or more is a fresh mapping rather than a memset allocation: it must still
 * read as zeros (the optimizer relies on zeroed padding) and round-trip data, and a second
 * large block must not alias the first. */
START_TEST(test_arena_large_block_zeroed) {
    pk_ctx *c = pkt_ctx("cpu");
    pk_arena *a = NULL;
    ck_assert_int_eq(pk_arena_create(c->dev, "large", 6 << 20, &a), PK_OK);
    const int64_t n = (6 << 20) / 4 - 16; /* fills the first block up to 64 bytes */
    tensor *t = tensor_new(a, PK_F32, 1, (int64_t[]){n});
    tensor *u = tensor_new(a, PK_F32, 1, (int64_t[]){n});
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(u);
    ck_assert_ptr_ne(t->block, u->block);
    float *v = malloc(sizeof(float) * (size_t)n);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = 1.0f;
    ck_assert_int_eq(tensor_download(u, v), PK_OK);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(v[i] == 0.0f, "element %lld of a fresh large block is %g", (long long)i,
                      (double)v[i]);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(i % 1000) - 500.0f;
    ck_assert_int_eq(tensor_upload(t, v), PK_OK);
    ck_assert_int_eq(tensor_fill(u, 3.0f), PK_OK);
    ck_assert_int_eq(tensor_download(t, v), PK_OK);
    for (int64_t i = 0; i < n; i += 997)
        ck_assert_float_eq(v[i], (float)(i % 1000) - 500.0f);
    free(v);
    pk_arena_destroy(a);
    pkt_ctx_done(c);
}
END_TEST

/* ---- autograd ---- */

/* A parameter (it outlives pk_step_begin, unlike pkt_param's step tensors). */
static tensor *param_from(pk_ctx *c, int64_t n, const float *v) {
    tensor *w = pk_param_new(c, "w", 1, (int64_t[]){n});
    ck_assert_msg(w != NULL, "%s", polyak_error());
    ck_assert_int_eq(tensor_upload(w, v), PK_OK);
    return w;
}

static void assert_grad(const tensor *p, const float *want, int64_t n, const char *what) {
    float *g = pkt_download(p->grad);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(g[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])),
                      "%s: grad[%lld] = %g, want %g", what, (long long)i, g[i], want[i]);
    free(g);
}

/* The autograd cases run on the CPU backend and, where a Vulkan driver exists (lavapipe in
 * CI), on Vulkan, where two backward kernels adding into one gradient need a barrier. */
static const char *const devices[] = {"cpu", "vk"};

static pk_ctx *loop_ctx(int i) {
    if (i > 0 && !pkt_have_vulkan()) return NULL;
    return pkt_ctx(devices[i]);
}

START_TEST(test_grad_used_twice_and_diamond) {
    pk_ctx *c = loop_ctx(_i);
    if (!c) return;
    const float wv[4] = {0.5f, -1.25f, 2.0f, 0.75f};
    tensor *w = param_from(c, 4, wv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    /* w used twice by one op: d sum(w*w)/dw = 2w */
    ck_assert_int_eq(autograd_backward(c, pk_sum_all(c, pk_mul(c, w, w))), PK_OK);
    float want[4];
    for (int i = 0; i < 4; i++)
        want[i] = 2 * wv[i];
    assert_grad(w, want, 4, "w*w");
    /* diamond: a = 2w, b = 3w, y = sum(a*b) = 6 sum(w^2): dy/dw = 12w */
    ck_assert_int_eq(pk_grad_zero(c, w), PK_OK);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *a = pk_scale(c, w, 2.0f), *b = pk_scale(c, w, 3.0f);
    ck_assert_int_eq(autograd_backward(c, pk_sum_all(c, pk_mul(c, a, b))), PK_OK);
    for (int i = 0; i < 4; i++)
        want[i] = 12 * wv[i];
    assert_grad(w, want, 4, "diamond");
    pkt_ctx_done(c);
}
END_TEST

/* Activation gradients start unwritten (NaN poison in tests) and the first contribution in
 * the backward walk writes them, later ones add. With a = b = c = 1 w,
 * y = sum((a + b) relu(a) - b) + sum(c c): relu writes a's gradient and add adds to it; sub
 * writes b's (negated) and add adds; mul writes both of its operands' and the scalar add both
 * of its; c c is one op using c twice. By hand: dy/dw = 6w - 1 where w > 0, 2w - 1 where
 * w < 0. */
START_TEST(test_fresh_grads_written_then_added) {
    pk_ctx *c = loop_ctx(_i);
    if (!c) return;
    const float wv[5] = {0.5f, -1.25f, 2.0f, -0.75f, 1.5f};
    tensor *w = param_from(c, 5, wv);
    for (int step = 0; step < 2; step++) { /* the second step reuses the arena's bytes */
        ck_assert_int_eq(pk_grad_zero(c, w), PK_OK);
        ck_assert_int_eq(pk_step_begin(c), PK_OK);
        tensor *a = pk_scale(c, w, 1.0f), *b = pk_scale(c, w, 1.0f), *cc = pk_scale(c, w, 1.0f);
        tensor *s = pk_add(c, a, b), *r = pk_relu(c, a);
        tensor *d = pk_sub(c, pk_mul(c, s, r), b);
        tensor *y = pk_add(c, pk_sum_all(c, d), pk_sum_all(c, pk_mul(c, cc, cc)));
        ck_assert_int_eq(autograd_backward(c, y), PK_OK);
        float want[5];
        for (int i = 0; i < 5; i++)
            want[i] = wv[i] > 0 ? 6 * wv[i] - 1 : 2 * wv[i] - 1;
        assert_grad(w, want, 5, "fresh gradients");
    }
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_backward_twice_accumulates) {
    pk_ctx *c = loop_ctx(_i);
    if (!c) return;
    const float wv[3] = {0.3f, -0.7f, 1.1f}, xv[3] = {2.0f, -3.0f, 0.5f};
    tensor *w = param_from(c, 3, wv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = pkt_const(c, PK_F32, 1, (int64_t[]){3}, xv);
    /* loss = sum(1 * w * x) through an intermediate: the intermediate's gradient from the
     * first walk must not be walked again by the second */
    tensor *loss = pk_sum_all(c, pk_mul(c, pk_scale(c, w, 1.0f), x));
    ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
    ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
    float want[3];
    for (int i = 0; i < 3; i++)
        want[i] = 2 * xv[i];
    assert_grad(w, want, 3, "two backward calls");
    /* two losses sharing the graph: gradients add, each counted once */
    ck_assert_int_eq(pk_grad_zero(c, w), PK_OK);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    x = pkt_const(c, PK_F32, 1, (int64_t[]){3}, xv);
    tensor *h = pk_mul(c, w, x);
    tensor *l1 = pk_sum_all(c, h), *l2 = pk_sum_all(c, pk_scale(c, h, 3.0f));
    ck_assert_int_eq(autograd_backward(c, l1), PK_OK);
    ck_assert_int_eq(autograd_backward(c, l2), PK_OK);
    for (int i = 0; i < 3; i++)
        want[i] = 4 * xv[i];
    assert_grad(w, want, 3, "two losses");
    pkt_ctx_done(c);
}
END_TEST

/* The operands of an add, and the input of a reshape, that nothing else consumes take the
 * output gradient as their own on the CPU (no copy, no block of the arena); the gradients must
 * stay right, also through chained adds, a second backward walk and an operand that has another
 * consumer. y = sum(((2w + 3w) + 4w) x) + sum(relu(5w) x) (5w also added in)
 * + sum(reshape(6w, 2x2) reshape(x, 2x2)): dy/dw = 14x + 5x [w > 0] + 6x. */
START_TEST(test_add_gradient_passes_through) {
    pk_ctx *c = loop_ctx(_i);
    if (!c) return;
    const float wv[4] = {0.5f, -1.25f, 2.0f, -0.75f}, xv[4] = {1.5f, -2.0f, 0.25f, 3.0f};
    const int64_t sq[2] = {2, 2};
    tensor *w = param_from(c, 4, wv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = pkt_const(c, PK_F32, 1, (int64_t[]){4}, xv);
    tensor *p = pk_scale(c, w, 2.0f), *q = pk_scale(c, w, 3.0f), *u = pk_scale(c, w, 4.0f);
    tensor *v = pk_scale(c, w, 5.0f); /* consumed by the add and by relu: its own gradient */
    tensor *z = pk_scale(c, w, 6.0f), *zr = pk_reshape(c, z, 2, sq);
    tensor *s = pk_add(c, pk_add(c, pk_add(c, p, q), u), v);
    tensor *y =
        pk_add(c, pk_sum_all(c, pk_mul(c, s, x)), pk_sum_all(c, pk_mul(c, pk_relu(c, v), x)));
    y = pk_add(c, y, pk_sum_all(c, pk_mul(c, zr, pk_reshape(c, x, 2, sq))));
    ck_assert_int_eq(autograd_backward(c, y), PK_OK);
    float want[4];
    for (int i = 0; i < 4; i++)
        want[i] = 20 * xv[i] + (wv[i] > 0 ? 5 * xv[i] : 0);
    assert_grad(w, want, 4, "adds and a reshape");
    if (_i == 0) { /* CPU: p and q share the inner add's output gradient; v does not */
        ck_assert_ptr_eq(p->grad->block, q->grad->block);
        ck_assert_int_eq(p->grad->offset, q->grad->offset);
        ck_assert_ptr_eq(u->grad->block, s->grad->block);
        ck_assert_int_eq(u->grad->offset, s->grad->offset);
        ck_assert(v->grad->block != s->grad->block || v->grad->offset != s->grad->offset);
        ck_assert_ptr_eq(z->grad->block, zr->grad->block);
        ck_assert_int_eq(z->grad->offset, zr->grad->offset);
        ck_assert_int_eq(z->grad->ndim, 1);
    }
    /* a second walk over the same graph adds the same again */
    ck_assert_int_eq(autograd_backward(c, y), PK_OK);
    for (int i = 0; i < 4; i++)
        want[i] *= 2;
    assert_grad(w, want, 4, "adds and a reshape, second walk");
    /* a second loss that uses p once more, recorded after the walks: p's gradient can no
     * longer be the add's; d sum(3 p x) / dw = 6x on top */
    tensor *y2 = pk_sum_all(c, pk_mul(c, pk_scale(c, p, 3.0f), x));
    ck_assert_int_eq(autograd_backward(c, y2), PK_OK);
    for (int i = 0; i < 4; i++)
        want[i] += 6 * xv[i];
    assert_grad(w, want, 4, "a later consumer");
    ck_assert_int_eq(autograd_backward(c, y), PK_OK);
    for (int i = 0; i < 4; i++)
        want[i] += 20 * xv[i] + (wv[i] > 0 ? 5 * xv[i] : 0);
    assert_grad(w, want, 4, "the first loss again");
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_reshape_and_detach) {
    pk_ctx *c = loop_ctx(_i);
    if (!c) return;
    float wv[6];
    for (int i = 0; i < 6; i++)
        wv[i] = 0.25f * (float)i - 0.6f;
    tensor *w = param_from(c, 6, wv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    /* a reshape view of a parameter carries gradients back in the parameter's layout */
    tensor *r = pk_reshape(c, w, 2, (int64_t[]){2, 3});
    tensor *m = pk_mul(c, r, pkt_const(c, PK_F32, 1, (int64_t[]){3}, (float[]){1, 2, 3}));
    ck_assert_int_eq(autograd_backward(c, pk_sum_all(c, m)), PK_OK);
    assert_grad(w, (float[]){1, 2, 3, 1, 2, 3}, 6, "reshape");
    /* detach: sum(w * detach(w)) has gradient w, not 2w */
    ck_assert_int_eq(pk_grad_zero(c, w), PK_OK);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *d = pk_detach(c, w);
    ck_assert(!d->requires_grad && d->node == NULL && d->grad == NULL);
    ck_assert_int_eq(autograd_backward(c, pk_sum_all(c, pk_mul(c, w, d))), PK_OK);
    assert_grad(w, wv, 6, "detach");
    /* a loss built only from detached tensors has nothing to differentiate */
    ck_assert_int_ne(autograd_backward(c, pk_sum_all(c, pk_scale(c, d, 2.0f))), PK_OK);
    ck_assert(c->grad_enabled);
    pkt_ctx_done(c);
}
END_TEST

/* pk_ctx_time_ops: off by default; on, each op that ran forward or backward has its own
 * kernel time and ops that never ran stay at zero; off frees the table. */
START_TEST(test_op_timing) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_ptr_null(c->op_seconds);
    ck_assert_int_eq(pk_ctx_time_ops(c, true), PK_OK);
    ck_assert_ptr_nonnull(c->op_seconds);
    const float wv[3] = {0.3f, -0.7f, 1.1f}, xv[3] = {2.0f, -3.0f, 0.5f};
    tensor *w = param_from(c, 3, wv);
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *x = pkt_const(c, PK_F32, 1, (int64_t[]){3}, xv);
    tensor *loss = pk_sum_all(c, pk_mul(c, w, x));
    ck_assert_double_gt(c->op_seconds[PK_OP_BINARY][0], 0);
    ck_assert_double_gt(c->op_seconds[PK_OP_REDUCE][0], 0);
    ck_assert_double_eq(c->op_seconds[PK_OP_BINARY][1], 0);
    ck_assert_int_eq(autograd_backward(c, loss), PK_OK);
    ck_assert_double_gt(c->op_seconds[PK_OP_BINARY][1], 0);
    ck_assert_double_gt(c->op_seconds[PK_OP_REDUCE][1], 0);
    for (int k = 0; k < 4; k++)
        ck_assert_double_eq(c->op_seconds[PK_OP_CONV2D][k], 0);
    ck_assert_int_eq(pk_ctx_time_ops(c, false), PK_OK);
    ck_assert_ptr_null(c->op_seconds);
    pkt_ctx_done(c);
}
END_TEST

START_TEST(test_backward_null_loss_message) {
    pk_ctx *c = pkt_ctx("cpu");
    ck_assert_int_eq(pk_step_begin(c), PK_OK);
    tensor *a = tensor_new(c->step, PK_F32, 1, (int64_t[]){3});
    tensor *b = tensor_new(c->step, PK_F32, 1, (int64_t[]){4});
    /* the failed op's message must survive inside backward's own */
    ck_assert_int_ne(autograd_backward(c, pk_sum_all(c, pk_add(c, a, b))), PK_OK);
    const char *e = polyak_error();
    ck_assert_msg(strstr(e, "backward from a NULL loss (an op failed: add: shapes (3,) and (4,) "
                            "do not broadcast)") != NULL,
                  "error: %s", e);
    pkt_ctx_done(c);
}
END_TEST

/* ---- worker pool ---- */

typedef struct {
    pk_pool *pool;
    int64_t *hits; /* one counter per (outer, inner) index */
    int64_t inner;
} nest_job;

static void inner_range(void *arg, int64_t b, int64_t e) {
    int64_t *row = arg;
    for (int64_t i = b; i < e; i++)
        row[i]++;
}

static void outer_range(void *arg, int64_t b, int64_t e) {
    nest_job *j = arg;
    for (int64_t i = b; i < e; i++)
        pk_parallel_for(j->pool, j->inner, 1, inner_range, j->hits + i * j->inner);
}

START_TEST(test_pool_nested) {
    pk_pool *p = pk_pool_create(4);
    ck_assert_ptr_nonnull(p);
    nest_job j = {.pool = p, .inner = 257};
    j.hits = calloc(64 * 257, sizeof *j.hits);
    /* an inner loop from inside a chunk used to overwrite the outer job (lost chunks, hangs) */
    pk_parallel_for(p, 64, 1, outer_range, &j);
    for (int64_t i = 0; i < 64 * 257; i++)
        ck_assert_msg(j.hits[i] == 1, "index %lld ran %lld times", (long long)i,
                      (long long)j.hits[i]);
    free(j.hits);
    pk_pool_destroy(p);
}
END_TEST

typedef struct {
    pk_pool *pool;
    int64_t *hits;
} conc_job;

static void *conc_thread(void *arg) {
    conc_job *j = arg;
    for (int r = 0; r < 200; r++)
        pk_parallel_for(j->pool, 1000, 1, inner_range, j->hits);
    return NULL;
}

START_TEST(test_pool_concurrent_callers) {
    pk_pool *p = pk_pool_create(4);
    int64_t *h1 = calloc(1000, sizeof *h1), *h2 = calloc(1000, sizeof *h2);
    conc_job j1 = {p, h1}, j2 = {p, h2};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, conc_thread, &j1);
    pthread_create(&t2, NULL, conc_thread, &j2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    for (int i = 0; i < 1000; i++) {
        ck_assert_msg(h1[i] == 200, "caller 1, index %d ran %lld times", i, (long long)h1[i]);
        ck_assert_msg(h2[i] == 200, "caller 2, index %d ran %lld times", i, (long long)h2[i]);
    }
    free(h1);
    free(h2);
    pk_pool_destroy(p);
}
END_TEST

/* ---- the CLI ---- */

/* Runs the built `polyak` with args; returns its exit status and its stderr in err. */
static int run_cli(const char *args, char *err, size_t n) {
    char exe[PATH_MAX] = "";
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(k > 0);
    exe[k] = '\0';
    /* tests live in <build>/tests, the CLI in <build> */
    char *cmd = NULL;
    ck_assert(asprintf(&cmd, "POLYAK_DEVICE=cpu '%s/../polyak' %s 2>&1 >/dev/null", dirname(exe),
                       args) > 0);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(err, 1, n - 1, f);
    err[got] = '\0';
    int st = pclose(f);
    free(cmd);
    ck_assert_msg(WIFEXITED(st), "polyak %s died (status %d): %s", args, st, err);
    return WEXITSTATUS(st);
}

START_TEST(test_cli_bad_options) {
    static const char *bad[] = {
        "mlp --epochs",
        "mlp --epochs x",
        "mlp --batch 0",
        "mlp --lr",
        "mlp --lr -1",
        "mlp --lr nan",
        "mlp --lr inf",
        "mlp --data",
        "mlp --device",
        "mlp --seed 1e3",
        "mlp --bogus",
        "devices --device",
        "devices --bogus",
        "bench ops --reps",
        "bench ops --reps 0",
        "nosuchcommand",
        "splat train --num-downscales 9",
        "splat train --resolution-schedule 0",
        "splat train --background 1,2",
        "splat train --background red",
        "splat train --densify-grad-threshold 0",
        "splat train --opacity-reset x",
        "splat train --model nerf",
        "splat train --voxel-size -1",
        "splat train --blocks 0",
        "splat train --data d --out o --blocks 4",
        "splat train --consistency-weight 0",
    };
    char err[4096];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_cli(bad[i], err, sizeof err);
        ck_assert_msg(rc == 2, "polyak %s exited %d, want 2: %s", bad[i], rc, err);
        ck_assert_msg(strstr(err, "usage:") != NULL, "polyak %s printed no usage: %s", bad[i], err);
    }
}
END_TEST

START_TEST(test_cli_missing_data_and_device) {
    char err[4096];
    int rc = run_cli("mlp --data /nonexistent/fmnist", err, sizeof err);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "/nonexistent/fmnist/train-images-idx3-ubyte.gz") != NULL,
                  "the message does not name the file: %s", err);
    rc = run_cli("devices --device vk:99", err, sizeof err);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "vk:99") && strstr(err, "available:") && strstr(err, "cpu"),
                  "the message does not list the devices: %s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("core");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 120); /* lavapipe compiles pipelines slowly */
    tcase_add_test(t, test_tensor_new_overflow);
    tcase_add_test(t, test_cpu_threads_in_device_name);
    tcase_add_test(t, test_tensor_view_bounds);
    tcase_add_test(t, test_arena_large_block_zeroed);
    tcase_add_test(t, test_view_u32_counts_on_vulkan);
    tcase_add_test(t, test_reshape_bad_shapes);
    tcase_add_test(t, test_linear_degenerate);
    tcase_add_test(t, test_arena_block_failure);
    tcase_add_loop_test(t, test_grad_used_twice_and_diamond, 0, 2);
    tcase_add_loop_test(t, test_fresh_grads_written_then_added, 0, 2);
    tcase_add_loop_test(t, test_add_gradient_passes_through, 0, 2);
    tcase_add_loop_test(t, test_backward_twice_accumulates, 0, 2);
    tcase_add_loop_test(t, test_reshape_and_detach, 0, 2);
    tcase_add_test(t, test_backward_null_loss_message);
    tcase_add_test(t, test_op_timing);
    tcase_add_test(t, test_pool_nested);
    tcase_add_test(t, test_pool_concurrent_callers);
    tcase_add_test(t, test_cli_bad_options);
    tcase_add_test(t, test_cli_missing_data_and_device);
    suite_add_tcase(s, t);
    return pkt_run_suite(s);
}
