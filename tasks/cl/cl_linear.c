/* cl_linear.c - the `linear` method (a frozen backbone, a linear head over the classes seen
 * so far) and the helpers methods share: the head, optimiser reset and checkpoint names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "cl.h"
#include "dist.h"
#include "ops/ops.h"
#include "optim/optimizer.h"

pk_status cl_head_create(pk_ctx *c, const char *prefix, int dim, int classes, pk_rng *rng,
                         tensor **w, tensor **b) {
    char nw[96], nb[96];
    snprintf(nw, sizeof nw, "%s.weight", prefix);
    snprintf(nb, sizeof nb, "%s.bias", prefix);
    *w = pk_param_new(c, pk_ctx_name(c, nw, ""), 2, (int64_t[]){classes, dim});
    *b = pk_param_new(c, pk_ctx_name(c, nb, ""), 1, (int64_t[]){classes});
    if (!*w || !*b) return pk_error(PK_ERR_NOMEM, "cl: out of memory for the head");
    size_t n = (size_t)classes * (size_t)dim;
    float *v = malloc(sizeof(float) * (n + (size_t)classes));
    if (!v) return pk_error(PK_ERR_NOMEM, "cl: out of host memory");
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(0.001 * pk_rng_normal(rng));
    for (size_t i = 0; i < (size_t)classes; i++)
        v[n + i] = 0.0f;
    pk_status s = tensor_upload(*w, v);
    if (s == PK_OK) s = tensor_upload(*b, v + n);
    free(v);
    return s;
}

pk_status cl_average_grads(pk_ctx *c, tensor *const *ps, int n, double share) {
    return dist_average_grads_of(c, ps, n, share);
}

pk_status cl_optim_reset(pk_optimizer *o) {
    int n = optim_state_count(o);
    for (int i = 0; i < n; i++) {
        char name[96];
        tensor *t = optim_state_get(o, i, name, sizeof name);
        if (t) PK_TRY(tensor_fill(t, 0.0f));
    }
    optim_set_steps(o, 0);
    return PK_OK;
}

int cl_optim_state(pk_optimizer *o, const char *prefix, run_tensor *ts, int cap,
                   char (*names)[96]) {
    int n = optim_state_count(o), k = 0;
    for (int i = 0; i < n && k < cap; i++) {
        char name[80];
        tensor *t = optim_state_get(o, i, name, sizeof name);
        if (!t) continue;
        snprintf(names[k], 96, "%s.%s", prefix, name);
        ts[k] = (run_tensor){.name = names[k], .t = t};
        k++;
    }
    return k;
}

typedef struct lin {
    pk_ctx *c;
    vit *bb;
    tensor *w, *b;
    pk_optimizer *opt;
    float counters[1]; /* optimiser steps (checkpointed) */
    char names[16][96];
} lin;

static pk_status lin_setup(cl_method *m, const cl_setup *s) {
    lin *l = m->self;
    l->c = s->c, l->bb = s->backbone;
    pk_rng rng = {s->seed * 0x2545F4914F6CDD1Dull + 11};
    PK_TRY(cl_head_create(s->c, "head", s->backbone->cfg.dim, s->classes, &rng, &l->w, &l->b));
    tensor *ps[2] = {l->w, l->b};
    pk_param_group g = {.name = "head", .params = ps, .n = 2, .lr = s->lr};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAM, .adamw = {.lr = s->lr}};
    return optim_create(s->c, &oo, &g, 1, &l->opt);
}

static pk_status lin_task_begin(cl_method *m, int task, int lo, int hi) {
    (void)task, (void)lo, (void)hi;
    lin *l = m->self;
    l->counters[0] = 0;
    return cl_optim_reset(l->opt);
}

static pk_status lin_epoch_begin(cl_method *m, int task, int epoch) {
    (void)m, (void)task, (void)epoch;
    return PK_OK;
}

static pk_status lin_step(cl_method *m, tensor *x, tensor *y, int lo, int hi, double share,
                          tensor **loss) {
    lin *l = m->self;
    tensor *f = vit_forward_features(l->c, l->bb, x); // (B, D), no tape: the backbone is frozen
    tensor *lv = pk_cross_entropy(l->c, pk_linear(l->c, f, l->w, l->b), y, lo, hi);
    if (!lv) return pk_error(PK_ERR_INVALID, "cl linear: forward failed: %s", polyak_error());
    PK_TRY(autograd_backward(l->c, lv));
    PK_TRY(cl_average_grads(l->c, (tensor *[]){l->w, l->b}, 2, share));
    PK_TRY(optim_step(l->opt));
    PK_TRY(optim_zero_grad(l->opt));
    l->counters[0] = (float)optim_steps(l->opt);
    *loss = lv;
    return PK_OK;
}

static pk_status lin_predict(cl_method *m, tensor *x, int seen, float *scores) {
    lin *l = m->self;
    bool g = pk_set_grad_enabled(l->c, false);
    tensor *lg = pk_linear(l->c, vit_forward_features(l->c, l->bb, x), l->w, l->b);
    lg = pk_slice(l->c, lg, 1, 0, seen); // (B, seen)
    pk_set_grad_enabled(l->c, g);
    if (!lg) return pk_error(PK_ERR_INVALID, "cl linear: forward failed: %s", polyak_error());
    return tensor_download(lg, scores);
}

static int lin_state(cl_method *m, run_tensor *ts, int cap) {
    lin *l = m->self;
    int n = 0;
    ts[n++] = (run_tensor){.name = "head.weight", .t = l->w};
    ts[n++] = (run_tensor){.name = "head.bias", .t = l->b};
    ts[n++] = (run_tensor){.name = "linear.counters", .host = l->counters, .numel = 1};
    n += cl_optim_state(l->opt, "head_optim", ts + n, cap - n < 16 ? cap - n : 16, l->names);
    return n;
}

static pk_status lin_restored(cl_method *m, int task, int epoch) {
    (void)task, (void)epoch;
    lin *l = m->self;
    optim_set_steps(l->opt, (int64_t)l->counters[0]);
    return PK_OK;
}

static void lin_destroy(cl_method *m) {
    if (!m) return;
    lin *l = m->self;
    if (l) optim_destroy(l->opt);
    free(l);
    free(m);
}

pk_status cl_method_linear(cl_method **out) {
    cl_method *m = calloc(1, sizeof *m);
    lin *l = calloc(1, sizeof *l);
    if (!m || !l) {
        free(m), free(l);
        return pk_error(PK_ERR_NOMEM, "cl: out of memory");
    }
    *m = (cl_method){.name = "linear",
                     .nvariants = 1,
                     .variant = {"linear"},
                     .self = l,
                     .setup = lin_setup,
                     .task_begin = lin_task_begin,
                     .epoch_begin = lin_epoch_begin,
                     .step = lin_step,
                     .predict = lin_predict,
                     .state = lin_state,
                     .restored = lin_restored,
                     .destroy = lin_destroy};
    *out = m;
    return PK_OK;
}
