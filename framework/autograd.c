/* autograd.c - the training context, nodes, the tape and the backward walk. */
#include "autograd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threads.h"
#include "ops/ops.h"

#define NODES_PER_SLAB 512

typedef struct pk_node_slab {
    struct pk_node_slab *next;
    int used;
    pk_node items[NODES_PER_SLAB];
} pk_node_slab;

pk_status pk_ctx_create(const pk_ctx_options *opt, pk_ctx **out) {
    pk_ctx_options o = opt ? *opt : (pk_ctx_options){0};
    *out = NULL;
    pk_ctx *c = calloc(1, sizeof *c);
    if (!c) return pk_error(PK_ERR_NOMEM, "out of host memory creating a context");
    pk_status s = pk_device_open(o.device, &c->dev);
    if (s != PK_OK) {
        free(c);
        return s;
    }
    c->backend = pk_device_backend(c->dev);
    c->vk = pk_device_impl(c->dev);
    c->pool = pk_pool_create(o.threads);
    c->grad_enabled = true;
    c->training = true;
    c->seed = o.seed;
    c->poison = o.poison;
    if (!c->pool || pk_arena_create(c->dev, "parameters", 0, &c->params) != PK_OK ||
        pk_arena_create(c->dev, "gradients", 0, &c->grads) != PK_OK ||
        pk_arena_create(c->dev, "optimizer state", 0, &c->state) != PK_OK ||
        pk_arena_create(c->dev, "teachers", 0, &c->teachers) != PK_OK ||
        pk_arena_create(c->dev, "activations", 0, &c->step) != PK_OK) {
        s = c->pool ? PK_ERR_NOMEM : pk_error(PK_ERR_NOMEM, "cannot start worker threads");
        pk_ctx_destroy(c);
        return s;
    }
    pk_arena_set_poison(c->step, c->poison);
    if (c->backend == PK_BACKEND_CPU) pk_device_set_cpu_threads(c->dev, pk_pool_threads(c->pool));
    *out = c;
    return PK_OK;
}

void pk_ctx_destroy(pk_ctx *c) {
    if (!c) return;
    if (c->dev) pk_device_sync(c->dev);
    pk_arena_destroy(c->step);
    pk_arena_destroy(c->teachers);
    pk_arena_destroy(c->state);
    pk_arena_destroy(c->grads);
    pk_arena_destroy(c->params);
    for (pk_node_slab *s = c->nodes; s;) {
        pk_node_slab *n = s->next;
        free(s);
        s = n;
    }
    free(c->tape);
    free(c->op_seconds);
    for (int i = 0; i < c->nnames; i++)
        free(c->names[i]);
    free(c->names);
    pk_pool_destroy(c->pool);
    pk_device_close(c->dev);
    free(c);
}

pk_pool *pk_ctx_pool(pk_ctx *c) { return c->pool; }

pk_status pk_ctx_time_ops(pk_ctx *c, bool on) {
    free(c->op_seconds);
    c->op_seconds = NULL;
    if (!on) return PK_OK;
    c->op_seconds = calloc(PK_OP_COUNT, sizeof *c->op_seconds);
    return c->op_seconds ? PK_OK : pk_error(PK_ERR_NOMEM, "out of host memory for op timing");
}

static double seconds_now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs kernel k of node n, adding its wall and CPU time to c->op_seconds[n->op][dir] and
 * [dir + 2] when timing. */
static pk_status run_kernel(pk_ctx *c, pk_kernel k, pk_node *n, int dir) {
    if (!c->op_seconds) return k(c, n);
    double w0 = seconds_now(CLOCK_MONOTONIC), c0 = seconds_now(CLOCK_PROCESS_CPUTIME_ID);
    pk_status s = k(c, n);
    c->op_seconds[n->op][dir] += seconds_now(CLOCK_MONOTONIC) - w0;
    c->op_seconds[n->op][dir + 2] += seconds_now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return s;
}

const char *pk_ctx_name(pk_ctx *c, const char *prefix, const char *suffix) {
    if (c->nnames == c->names_cap) {
        int cap = c->names_cap ? c->names_cap * 2 : 64;
        char **n = realloc(c->names, sizeof *n * (size_t)cap);
        if (!n) return "?";
        c->names = n;
        c->names_cap = cap;
    }
    size_t len = strlen(prefix) + strlen(suffix) + 2;
    char *s = malloc(len);
    if (!s) return "?";
    snprintf(s, len, "%s.%s", prefix, suffix);
    c->names[c->nnames++] = s;
    return s;
}

pk_status pk_step_begin(pk_ctx *c) {
    PK_TRY(pk_device_sync(c->dev));
    return pk_step_reset(c);
}

pk_status pk_step_reset(pk_ctx *c) {
    c->tape_len = 0;
    for (pk_node_slab *s = c->nodes; s; s = s->next)
        s->used = 0;
    pk_arena_reset(c->step);
    if (c->poison) {
        pk_block *b;
        for (int i = 0; (b = pk_arena_block(c->step, i)) != NULL; i++) {
            tensor whole = {.dtype = PK_F32,
                            .ndim = 1,
                            .shape = {(int64_t)(b->size / 4)},
                            .strides = {1},
                            .block = b,
                            .arena = c->step};
            PK_TRY(tensor_fill(&whole, NAN));
        }
    }
    return PK_OK;
}

pk_node *pk_node_new(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                     size_t params_size) {
    if (n_in > PK_MAX_IN || params_size > PK_PARAM_BYTES) {
        pk_error(PK_ERR_INVALID, "op %s: too many inputs or parameters", pk_op_get(op)->name);
        return NULL;
    }
    pk_node_slab *s = c->nodes;
    while (s && s->used == NODES_PER_SLAB)
        s = s->next;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) {
            pk_error(PK_ERR_NOMEM, "out of host memory for tape nodes");
            return NULL;
        }
        s->next = c->nodes;
        c->nodes = s;
    }
    pk_node *n = &s->items[s->used++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        n->in[i] = in[i];
    if (params_size) memcpy(n->params, params, params_size);
    return n;
}

/* Puts a node on the tape and marks its outputs as produced by it. */
static pk_status tape_push(pk_ctx *c, pk_node *n) {
    if (c->tape_len == c->tape_cap) {
        int cap = c->tape_cap ? c->tape_cap * 2 : 1024;
        pk_node **t = realloc(c->tape, sizeof *t * (size_t)cap);
        if (!t) return pk_error(PK_ERR_NOMEM, "out of host memory for the tape");
        c->tape = t;
        c->tape_cap = cap;
    }
    c->tape[c->tape_len++] = n;
    for (int i = 0; i < n->n_in; i++) /* consumers of tape-made tensors (grad_passes_through) */
        if (n->in[i] && n->in[i]->node) n->in[i]->uses++;
    for (int i = 0; i < n->n_out; i++) {
        n->out[i]->requires_grad = true;
        n->out[i]->node = n;
    }
    return PK_OK;
}

static bool needs_tape(pk_ctx *c, const pk_node *n) {
    if (!c->grad_enabled || !pk_op_get(n->op)->backward[c->backend]) return false;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->requires_grad) return true;
    return false;
}

pk_status pk_node_run(pk_ctx *c, pk_node *n) {
    const pk_op_def *def = pk_op_get(n->op);
    pk_kernel k = def->forward[c->backend];
    if (!k)
        return pk_error(PK_ERR_UNSUPPORTED, "op '%s' has no %s kernel", def->name,
                        c->backend == PK_BACKEND_VK ? "Vulkan" : "CPU");
    PK_TRY(run_kernel(c, k, n, 0));
    if (needs_tape(c, n)) PK_TRY(tape_push(c, n));
    return PK_OK;
}

/* Records a node whose forward needs no kernel (views such as reshape). */
pk_status pk_node_record(pk_ctx *c, pk_node *n) {
    return needs_tape(c, n) ? tape_push(c, n) : PK_OK;
}

tensor *pk_param_new(pk_ctx *c, const char *name, int ndim, const int64_t *shape) {
    tensor *t = tensor_new(c->params, PK_F32, ndim, shape);
    if (!t) return NULL;
    t->name = name;
    t->requires_grad = true;
    t->grad = tensor_new(c->grads, PK_F32, ndim, shape);
    if (!t->grad || tensor_fill(t->grad, 0.0f) != PK_OK) return NULL;
    return t;
}

pk_status pk_grad_ensure(pk_ctx *c, tensor *t) {
    if (t->grad) return PK_OK;
    t->grad = tensor_new(c->step, PK_F32, t->ndim, t->shape);
    if (!t->grad) return PK_ERR_NOMEM;
    return tensor_fill(t->grad, 0.0f);
}

pk_status pk_grad_zero(pk_ctx *c, tensor *param) {
    (void)c;
    return param->grad ? tensor_fill(param->grad, 0.0f) : PK_OK;
}

tensor *pk_detach(pk_ctx *c, tensor *t) {
    if (!t) return NULL;
    tensor *v = tensor_view(c->step, t, t->ndim, t->shape, t->strides, t->offset);
    if (v) v->name = t->name;
    return v;
}

bool pk_set_grad_enabled(pk_ctx *c, bool enabled) {
    bool old = c->grad_enabled;
    c->grad_enabled = enabled;
    return old;
}

/* Backward kernels that write a fresh input gradient (cpu_grad_fresh) instead of adding into
 * zeros: the ops of a ResNet's activations, and linear (a ViT's). Zero-filling every activation
 * gradient before its first contribution cost ~3% of a 1-thread ResNet-32 epoch (perf: memset) and
 * made each first contribution read the zeros back. Every other kernel gets its input gradients
 * zero-filled. */
static bool writes_fresh_grads(const pk_ctx *c, pk_op op) {
    return c->backend == PK_BACKEND_CPU &&
           (op == PK_OP_CONV2D || op == PK_OP_BATCHNORM || op == PK_OP_BATCHNORM_ACT ||
            op == PK_OP_UNARY || op == PK_OP_BINARY || op == PK_OP_LINEAR);
}

/* Whether input j of n can take n's output gradient as its own instead of a copy: n is a CPU
 * add whose input j has the output's shape (d out / d in_j is the identity) or a reshape (a
 * view: the same elements in the same order), input j is an activation of this tape with no
 * gradient yet and no other consumer (nothing else will add into it), and it is not n's other
 * input too. PyTorch's AddBackward and ViewBackward hand the gradient on alike; here it saves a
 * gradient-sized block of the step arena and a pass over memory per add or reshape. */
static bool grad_passes_through(const pk_ctx *c, const pk_node *n, int j) {
    const tensor *t = n->in[j], *o = n->out[0];
    if (c->backend != PK_BACKEND_CPU || n->n_out != 1 || !t->node || t->grad) return false;
    if (!o->grad || o->grad_fresh || t->dtype != o->dtype || tensor_numel(t) != tensor_numel(o))
        return false;
    if (n->op == PK_OP_BINARY) {
        if (PK_PARAMS(n, pk_binary_params)->kind != PK_ADD || t->ndim != o->ndim) return false;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] != o->shape[d]) return false;
    } else if (n->op != PK_OP_ACCUM) /* on the tape, ACCUM is pk_reshape */
        return false;
    return t->uses == 1; /* n alone (n taking t twice counts twice) */
}

/* The output gradient of n seen with input j's shape (contiguous, like every gradient). */
static tensor *grad_pass_view(pk_ctx *c, const pk_node *n, int j) {
    const tensor *t = n->in[j], *g = n->out[0]->grad;
    int64_t st[PK_MAX_DIMS], acc = 1;
    for (int d = t->ndim - 1; d >= 0; d--)
        st[d] = acc, acc *= t->shape[d];
    return tensor_view(c->step, g, t->ndim, t->shape, st, g->offset);
}

/* Gives the inputs of n that want one a gradient before n's backward runs. A new gradient is
 * left unwritten (fresh) for kernels that write it; it is zero-filled for the others and when
 * the tensor is two of n's inputs (its first contribution must not overwrite its second). */
static pk_status grad_ensure_inputs(pk_ctx *c, pk_node *n) {
    bool fresh_ok = writes_fresh_grads(c, n->op);
    for (int j = 0; j < n->n_in; j++) {
        tensor *t = n->in[j];
        if (!t || !t->requires_grad || t->grad) continue;
        if (grad_passes_through(c, n, j)) { /* the kernel leaves it alone */
            t->grad = grad_pass_view(c, n, j);
            if (!t->grad) return PK_ERR_NOMEM;
            t->grad_fresh = false;
            t->grad_borrowed = true;
            continue;
        }
        if (!fresh_ok) {
            PK_TRY(pk_grad_ensure(c, t));
            continue;
        }
        t->grad = tensor_new(c->step, PK_F32, t->ndim, t->shape);
        if (!t->grad) return PK_ERR_NOMEM;
        t->grad_fresh = true;
    }
    for (int j = 0; j < n->n_in; j++)
        for (int k = j + 1; k < n->n_in; k++)
            if (n->in[j] && n->in[j] == n->in[k] && n->in[j]->grad_fresh) {
                PK_TRY(tensor_fill(n->in[j]->grad, 0.0f));
                n->in[j]->grad_fresh = false;
            }
    return PK_OK;
}

/* A kernel that writes fresh gradients must have written (and marked) every one it was given. */
static pk_status grad_check_written(const pk_node *n) {
    for (int j = 0; j < n->n_in; j++)
        if (n->in[j] && n->in[j]->grad && n->in[j]->grad_fresh)
            return pk_error(PK_ERR_INVALID,
                            "backward of op '%s' left input %d's gradient unwritten",
                            pk_op_get(n->op)->name, j);
    return PK_OK;
}

pk_status autograd_backward_from(pk_ctx *c, tensor *out, tensor *seed) {
    if (!out || !seed) return pk_error(PK_ERR_INVALID, "backward from a NULL tensor");
    if (!out->requires_grad)
        return pk_error(PK_ERR_INVALID, "backward: the tensor does not depend on any parameter");
    /* The gradients of tensors the tape produced are scratch for one walk. A second backward in
     * the same step (the same loss again, or a second loss sharing the graph) would otherwise
     * walk the first walk's gradients once more and count them twice; zeroed, it adds exactly
     * its own contribution to the leaves (parameters, inputs), as PyTorch does. */
    for (int i = 0; i < c->tape_len; i++)
        for (int j = 0; j < c->tape[i]->n_out; j++) {
            tensor *o = c->tape[i]->out[j];
            if (o->grad_borrowed) /* decided again: the tape may have grown since */
                o->grad = NULL, o->grad_borrowed = false;
            else if (o->grad)
                PK_TRY(tensor_fill(o->grad, 0.0f));
        }
    PK_TRY(pk_grad_ensure(c, out));
    tensor *g = out->grad;
    PK_TRY(pk_accumulate(c, g, seed));
    bool old = pk_set_grad_enabled(c, false);
    pk_status s = PK_OK;
    for (int i = c->tape_len - 1; i >= 0 && s == PK_OK; i--) {
        pk_node *n = c->tape[i];
        bool any = false;
        for (int j = 0; j < n->n_out; j++)
            any |= n->out[j]->grad != NULL;
        if (!any) continue;
        for (int j = 0; j < n->n_out && s == PK_OK; j++)
            s = pk_grad_ensure(c, n->out[j]);
        if (s == PK_OK) s = grad_ensure_inputs(c, n);
        if (s != PK_OK) break;
        const pk_op_def *def = pk_op_get(n->op);
        s = run_kernel(c, def->backward[c->backend], n, 1);
        if (s != PK_OK) {
            /* name the op: a kernel's message alone does not say where in the graph it failed
             * (copied out first: pk_error writes the buffer polyak_error() returns) */
            char cause[1024];
            snprintf(cause, sizeof cause, "%s", polyak_error());
            pk_error(s, "backward of op '%s' (tape node %d): %s", def->name, i, cause);
        }
        if (s == PK_OK) s = grad_check_written(n);
    }
    pk_set_grad_enabled(c, old);
    return s;
}

pk_status autograd_backward(pk_ctx *c, tensor *loss) {
    if (!loss) {
        char cause[1024]; /* copied out: pk_error writes the buffer polyak_error() returns */
        snprintf(cause, sizeof cause, "%s", polyak_error());
        return pk_error(PK_ERR_INVALID, "backward from a NULL loss (an op failed: %s)", cause);
    }
    if (tensor_numel(loss) != 1)
        return pk_error(PK_ERR_INVALID, "backward: the loss must have one element");
    tensor *one = tensor_new(c->step, PK_F32, loss->ndim, loss->shape);
    if (!one) return PK_ERR_NOMEM;
    PK_TRY(tensor_fill(one, 1.0f));
    return autograd_backward_from(c, loss, one);
}
