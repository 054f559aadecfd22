/* optimizer.c - parameter groups, contiguous runs, state allocation and the per-run dispatch
 * of the fused optimizer kernels. Everything a run keeps between steps is a tensor of the
 * state arena on both backends (moments, Stable-SPAM's per-tensor scalars, and on Vulkan the
 * small tables of the per-tensor optimizers, built once here), so a Vulkan step only records
 * dispatches and a checkpoint reads every piece of state through optim_state_get. */
#include "optim/optimizer.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim_vk.h"

/* the state tensor of Stable-SPAM's per-tensor scalars is read as an array of these */
static_assert(sizeof(pk_stable_spam_tensor_state) == 3 * sizeof(float),
              "pk_stable_spam_tensor_state is three packed floats");

/* A run: parameters adjacent in one block whose gradients are adjacent in the same way. */
typedef struct optim_run {
    int group;
    tensor param, grad; /* 1-D views over the run: [first offset, last offset + numel) */
    /* state: SGD/SGDP momentum; Adam family exp_avg, exp_avg_sq; Stable-SPAM adds its
     * per-tensor scalars (nseg x pk_stable_spam_tensor_state as 3 floats) */
    tensor *state[3];
    pk_optim_segment *segs; /* the tensors of the run, relative to its start */
    int nseg;
    pk_optim_vk_run vk; /* Vulkan: the run's device tables (in c->state), built at creation */
} optim_run;

typedef struct optim_group {
    double lr, wd;
} optim_group;

struct pk_optimizer {
    pk_ctx *c;
    pk_optim_options opt;
    optim_group *groups;
    int ngroups;
    optim_run *runs;
    int nruns;
    int64_t steps;
};

static int nstate(pk_optim_kind k) {
    switch (k) {
    case PK_OPTIM_SGD:
    case PK_OPTIM_SGDP: return 1;
    case PK_OPTIM_STABLE_SPAM: return 3;
    default: return 2;
    }
}

/* Vulkan updates live in optim_vk.c; absent there, say so rather than fall back silently. */
__attribute__((weak)) pk_status optim_vk_run_init(pk_ctx *c, pk_optim_kind kind,
                                                  const pk_optim_segment *segs, int nseg,
                                                  pk_optim_vk_run *out);
__attribute__((weak)) pk_status optim_vk_step_run(pk_ctx *c, const pk_optim_options *opt, double lr,
                                                  double wd, int64_t step, tensor *param,
                                                  tensor *grad, tensor *const *st,
                                                  const pk_optim_vk_run *run);

static int cmp_tensor(const void *a, const void *b) {
    const tensor *x = *(tensor *const *)a, *y = *(tensor *const *)b;
    if (x->block != y->block) return (uintptr_t)x->block < (uintptr_t)y->block ? -1 : 1;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* 1-D view of elements [begin, end) of the block holding t. */
static tensor range_view(const tensor *t, int64_t begin, int64_t end) {
    tensor v = {.dtype = PK_F32,
                .ndim = 1,
                .shape = {end - begin},
                .strides = {1},
                .offset = begin,
                .block = t->block,
                .arena = t->arena};
    return v;
}

static pk_status add_run(pk_optimizer *o, int g, tensor **ts, int n) {
    if (n <= 0) return PK_OK;
    optim_run *r = &o->runs[o->nruns];
    memset(r, 0, sizeof *r);
    r->group = g;
    int64_t begin = ts[0]->offset, end = ts[n - 1]->offset + tensor_numel(ts[n - 1]);
    int64_t gshift = ts[0]->grad->offset - begin;
    r->param = range_view(ts[0], begin, end);
    r->grad = range_view(ts[0]->grad, begin + gshift, end + gshift);
    r->segs = calloc((size_t)n, sizeof *r->segs);
    if (!r->segs) return pk_error(PK_ERR_NOMEM, "optimizer: out of host memory");
    r->nseg = n;
    for (int i = 0; i < n; i++) {
        const tensor *t = ts[i];
        pk_optim_segment *s = &r->segs[i];
        s->offset = t->offset - begin;
        s->ndim = t->ndim;
        s->rows = t->ndim >= 2 ? t->shape[0] : 1;
        s->cols = tensor_numel(t) / (s->rows ? s->rows : 1);
    }
    o->nruns++; /* counted now so that optim_destroy frees the segments on failure */
    if (o->c->backend != PK_BACKEND_CPU) {
        if (!optim_vk_run_init)
            return pk_error(PK_ERR_UNSUPPORTED,
                            "optimizer: this build has no Vulkan optimizer kernels");
        PK_TRY(optim_vk_run_init(o->c, o->opt.kind, r->segs, r->nseg, &r->vk));
    }
    for (int k = 0; k < nstate(o->opt.kind); k++) {
        int64_t len = k < 2 ? end - begin : (int64_t)n * 3;
        r->state[k] = tensor_new(o->c->state, PK_F32, 1, (int64_t[]){len});
        if (!r->state[k]) return PK_ERR_NOMEM;
    }
    return PK_OK;
}

/* Zeroes the alignment padding between the tensors of a run, in the parameters and the
 * gradients: the run's kernels sweep it like the tensors, so whatever a fresh block held
 * there would otherwise drift into the state (and into run-wide norms). */
static pk_status zero_gaps(optim_run *r) {
    for (int i = 0; i + 1 < r->nseg; i++) {
        const pk_optim_segment *a = &r->segs[i], *b = &r->segs[i + 1];
        int64_t lo = a->offset + a->rows * a->cols, hi = b->offset;
        if (hi <= lo) continue;
        tensor p = range_view(&r->param, r->param.offset + lo, r->param.offset + hi);
        tensor g = range_view(&r->grad, r->grad.offset + lo, r->grad.offset + hi);
        PK_TRY(tensor_fill(&p, 0.0f));
        PK_TRY(tensor_fill(&g, 0.0f));
    }
    return PK_OK;
}

pk_status optim_create(pk_ctx *c, const pk_optim_options *opt, const pk_param_group *groups,
                       int ngroups, pk_optimizer **out) {
    *out = NULL;
    int total = 0;
    for (int g = 0; g < ngroups; g++) {
        for (int i = 0; i < groups[g].n; i++) {
            const tensor *t = groups[g].params[i];
            if (!t || t->dtype != PK_F32 || !t->grad || !tensor_is_contiguous(t))
                return pk_error(PK_ERR_INVALID,
                                "optimizer: parameter %d of group '%s' is not a float32 "
                                "parameter with a gradient (make it with pk_param_new)",
                                i, groups[g].name ? groups[g].name : "?");
        }
        if (groups[g].n < 0 || groups[g].n > (1 << 24))
            return pk_error(PK_ERR_INVALID, "optimizer: group '%s' has %d parameters",
                            groups[g].name ? groups[g].name : "?", groups[g].n);
        total += groups[g].n;
    }
    if (ngroups < 0 || ngroups > 1024)
        return pk_error(PK_ERR_INVALID, "optimizer: %d parameter groups (0..1024)", ngroups);
    pk_optimizer *o = calloc(1, sizeof *o);
    if (!o) return pk_error(PK_ERR_NOMEM, "optimizer: out of host memory");
    o->c = c;
    o->opt = *opt;
    o->ngroups = ngroups;
    o->groups = calloc((size_t)ngroups + 1, sizeof *o->groups);
    o->runs = calloc((size_t)(total ? total : 1), sizeof *o->runs);
    tensor **sorted = calloc((size_t)(total ? total : 1), sizeof *sorted);
    pk_status s =
        o->groups && o->runs && sorted ? PK_OK : pk_error(PK_ERR_NOMEM, "optimizer: no memory");
    for (int g = 0; g < ngroups && s == PK_OK; g++) {
        o->groups[g].lr = groups[g].lr;
        o->groups[g].wd = groups[g].weight_decay;
        int n = groups[g].n;
        memcpy(sorted, groups[g].params, sizeof(tensor *) * (size_t)n);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_tensor);
        int start = 0;
        for (int i = 1; i <= n && s == PK_OK; i++) {
            bool split = i == n;
            if (!split) {
                const tensor *a = sorted[i - 1], *b = sorted[i];
                /* adjacent when nothing but alignment padding lies between them, in the
                 * parameters and in the gradients alike */
                int64_t gap = b->offset - (a->offset + tensor_numel(a));
                split = a->block != b->block || a->grad->block != b->grad->block || gap < 0 ||
                        gap > 64 || b->grad->offset - b->offset != a->grad->offset - a->offset ||
                        a == b;
            }
            if (split) {
                s = add_run(o, g, sorted + start, i - start);
                start = i;
            }
        }
    }
    free(sorted);
    /* zeroed after every table is uploaded: a fill recorded before an upload into the same
     * block would make the upload wait for it */
    for (int i = 0; i < o->nruns && s == PK_OK; i++) {
        for (int k = 0; k < 3 && s == PK_OK; k++)
            if (o->runs[i].state[k]) s = tensor_fill(o->runs[i].state[k], 0.0f);
        if (s == PK_OK) s = zero_gaps(&o->runs[i]);
    }
    if (s != PK_OK) {
        optim_destroy(o);
        return s;
    }
    *out = o;
    return PK_OK;
}

void optim_destroy(pk_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->nruns; i++)
        free(o->runs[i].segs);
    free(o->runs);
    free(o->groups);
    free(o);
}

void optim_set_lr(pk_optimizer *o, int g, double lr) {
    if (g >= 0 && g < o->ngroups) o->groups[g].lr = lr;
}

void optim_set_weight_decay(pk_optimizer *o, int g, double wd) {
    if (g >= 0 && g < o->ngroups) o->groups[g].wd = wd;
}

double optim_get_lr(const pk_optimizer *o, int g) {
    return g >= 0 && g < o->ngroups ? o->groups[g].lr : 0.0;
}

int64_t optim_steps(const pk_optimizer *o) { return o->steps; }

void optim_set_steps(pk_optimizer *o, int64_t steps) { o->steps = steps; }

int optim_state_count(const pk_optimizer *o) { return o->nruns * nstate(o->opt.kind); }

tensor *optim_state_get(pk_optimizer *o, int i, char *name, size_t name_size) {
    int k = nstate(o->opt.kind);
    if (i < 0 || i >= o->nruns * k) return NULL;
    static const char *names[3][3] = {{"momentum", "", ""},
                                      {"exp_avg", "exp_avg_sq", ""},
                                      {"exp_avg", "exp_avg_sq", "tensor_state"}};
    snprintf(name, name_size, "optim.run%d.%s", i / k, names[k - 1][i % k]);
    return o->runs[i / k].state[i % k];
}

pk_status optim_zero_grad(pk_optimizer *o) {
    for (int i = 0; i < o->nruns; i++)
        PK_TRY(tensor_fill(&o->runs[i].grad, 0.0f));
    return PK_OK;
}

/* One run's update on the CPU backend. */
static pk_status step_cpu(pk_optimizer *o, optim_run *r, int64_t step) {
    pk_pool *pool = o->c->pool;
    const optim_group *g = &o->groups[r->group];
    int64_t n = tensor_numel(&r->param);
    float *p = tensor_host(&r->param);
    const float *gr = tensor_host(&r->grad);
    float *s0 = r->state[0] ? tensor_host(r->state[0]) : NULL;
    float *s1 = r->state[1] ? tensor_host(r->state[1]) : NULL;
    switch (o->opt.kind) {
    case PK_OPTIM_SGD: {
        pk_sgd_params hp = o->opt.sgd;
        hp.lr = g->lr;
        hp.weight_decay = g->wd;
        return optim_sgd_step(pool, &hp, step, n, p, gr, s0);
    }
    case PK_OPTIM_ADAMW:
    case PK_OPTIM_ADAM: {
        pk_adamw_params hp = o->opt.adamw;
        hp.lr = g->lr;
        hp.weight_decay = g->wd;
        return o->opt.kind == PK_OPTIM_ADAMW ? optim_adamw_step(pool, &hp, step, n, p, gr, s0, s1)
                                             : optim_adam_step(pool, &hp, step, n, p, gr, s0, s1);
    }
    case PK_OPTIM_ADAMP:
    case PK_OPTIM_SGDP: {
        pk_adamp_params hp = o->opt.adamp;
        hp.lr = g->lr;
        hp.weight_decay = g->wd;
        return o->opt.kind == PK_OPTIM_ADAMP
                   ? optim_adamp_step(pool, &hp, step, r->segs, r->nseg, p, gr, s0, s1, NULL)
                   : optim_sgdp_step(pool, &hp, step, r->segs, r->nseg, p, gr, s0, NULL);
    }
    case PK_OPTIM_SPAM: {
        pk_spam_params hp = o->opt.spam;
        hp.lr = g->lr;
        hp.weight_decay = g->wd;
        return optim_spam_step(pool, &hp, step, n, p, gr, s0, s1, NULL);
    }
    case PK_OPTIM_STABLE_SPAM: {
        pk_stable_spam_params hp = o->opt.stable_spam;
        hp.lr = g->lr;
        hp.weight_decay = g->wd;
        pk_stable_spam_tensor_state *ts = tensor_host(r->state[2]);
        return optim_stable_spam_step(pool, &hp, step, r->segs, r->nseg, p, gr, s0, s1, ts);
    }
    }
    return pk_error(PK_ERR_INVALID, "optimizer: unknown kind %d", (int)o->opt.kind);
}

pk_status optim_step(pk_optimizer *o) {
    int64_t step = o->steps + 1;
    for (int i = 0; i < o->nruns; i++) {
        optim_run *r = &o->runs[i];
        if (o->c->backend == PK_BACKEND_CPU) {
            PK_TRY(step_cpu(o, r, step));
        } else {
            if (!optim_vk_step_run)
                return pk_error(PK_ERR_UNSUPPORTED,
                                "optimizer: this build has no Vulkan optimizer kernels");
            const optim_group *g = &o->groups[r->group];
            PK_TRY(optim_vk_step_run(o->c, &o->opt, g->lr, g->wd, step, &r->param, &r->grad,
                                     r->state, &r->vk));
        }
    }
    o->steps = step;
    return PK_OK;
}
