/* lae.c - seqft, LAE and joint as continual-learning methods on PETs. */
#include "lae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "teacher/teacher.h"

typedef struct lae {
    lae_options o;
    pk_ctx *c;
    vit *bb;
    pet *pets;
    tensor *w, *b; /* the head (classes, D), (classes) */
    pk_optimizer *head_opt, *pet_opt;
    pk_teacher *offline; /* lae only */
    tensor **trainable;  /* head and PETs: the gradients averaged under mpirun */
    int task;
    bool frozen;
    /* checkpointed counters: head steps, PET steps, offline updates */
    float counters[3];
    char names[64][96];
    int classes;
    float *on, *off; /* host logits for predict */
    int cap_rows;
} lae;

void lae_ensemble_scores(const float *on, const float *off, int n, int classes, float *scores) {
    size_t plane = (size_t)n * (size_t)classes;
    for (int i = 0; i < n; i++) {
        const float *a = on + (size_t)i * classes, *b = off + (size_t)i * classes;
        float *e = scores + (size_t)i * classes, *pa = e + plane, *pb = e + 2 * plane;
        float ma = a[0], mb = b[0];
        for (int k = 1; k < classes; k++)
            ma = a[k] > ma ? a[k] : ma, mb = b[k] > mb ? b[k] : mb;
        double sa = 0, sb = 0;
        for (int k = 0; k < classes; k++)
            sa += exp((double)a[k] - ma), sb += exp((double)b[k] - mb);
        for (int k = 0; k < classes; k++) {
            pa[k] = (float)(exp((double)a[k] - ma) / sa);
            pb[k] = (float)(exp((double)b[k] - mb) / sb);
            e[k] = pa[k] > pb[k] ? pa[k] : pb[k];
        }
    }
}

static pk_status lae_setup(cl_method *m, const cl_setup *s) {
    lae *l = m->self;
    l->c = s->c, l->bb = s->backbone, l->classes = s->classes;
    pk_rng rng = {s->seed * 0x2545F4914F6CDD1Dull + 11};
    PK_TRY(cl_head_create(s->c, "head", s->backbone->cfg.dim, s->classes, &rng, &l->w, &l->b));
    pk_rng prng = {s->seed * 0x9E3779B97F4A7C15ull + 29};
    PK_TRY(pet_create(s->c, &s->backbone->cfg, &l->o.pet, "pet.", &prng, &l->pets));
    l->o.pet = l->pets->o;
    tensor *hp[2] = {l->w, l->b};
    pk_param_group hg = {.name = "head", .params = hp, .n = 2, .lr = s->lr};
    pk_param_group pg = {
        .name = "pet", .params = l->pets->params, .n = l->pets->nparams, .lr = s->lr};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAM, .adamw = {.lr = s->lr}};
    l->trainable = malloc(sizeof(tensor *) * (size_t)(2 + l->pets->nparams));
    if (!l->trainable) return pk_error(PK_ERR_NOMEM, "lae: out of host memory");
    l->trainable[0] = l->w, l->trainable[1] = l->b;
    for (int i = 0; i < l->pets->nparams; i++)
        l->trainable[2 + i] = l->pets->params[i];
    PK_TRY(optim_create(s->c, &oo, &hg, 1, &l->head_opt));
    PK_TRY(optim_create(s->c, &oo, &pg, 1, &l->pet_opt));
    if (l->o.mode == LAE_LAE) {
        pk_teacher_options to = {.name = "offline",
                                 .schedule = {.kind = PK_MOMENTUM_CONSTANT, .m0 = l->o.ema}};
        PK_TRY(teacher_create(s->c, &to, l->pets->params, l->pets->nparams, &l->offline));
    }
    return PK_OK;
}

/* offline = online (the copy LAE makes at the start of task 2). */
static pk_status copy_online_to_offline(lae *l) {
    for (int i = 0; i < l->pets->nparams; i++) {
        tensor *s = l->pets->params[i], *t = teacher_tensor(l->offline, i);
        float *v = malloc(sizeof(float) * (size_t)tensor_numel(s));
        if (!v) return pk_error(PK_ERR_NOMEM, "lae: out of host memory");
        pk_status st = tensor_download(s, v);
        if (st == PK_OK) st = tensor_upload(t, v);
        free(v);
        PK_TRY(st);
    }
    teacher_set_updates(l->offline, 0);
    return PK_OK;
}

static pk_status lae_task_begin(cl_method *m, int task, int lo, int hi) {
    (void)lo, (void)hi;
    lae *l = m->self;
    l->task = task;
    PK_TRY(cl_optim_reset(l->head_opt));
    PK_TRY(cl_optim_reset(l->pet_opt));
    l->counters[0] = l->counters[1] = 0;
    if (l->offline && task == 1) {
        PK_TRY(copy_online_to_offline(l));
        l->counters[2] = 0;
    }
    return PK_OK;
}

static pk_status lae_epoch_begin(cl_method *m, int task, int epoch) {
    lae *l = m->self;
    l->task = task;
    l->frozen = l->o.mode == LAE_LAE && task > 0 && epoch < l->o.freeze_epochs;
    pet_set_trainable(l->pets, !l->frozen);
    return PK_OK;
}

static tensor *logits(lae *l, tensor *x) {
    tensor *f = vit_forward_features_hooked(l->c, l->bb, x, &l->pets->hooks); // (B, D)
    return pk_linear(l->c, f, l->w, l->b);                                    // (B, classes)
}

static pk_status lae_step(cl_method *m, tensor *x, tensor *y, int lo, int hi, double share,
                          tensor **loss) {
    lae *l = m->self;
    tensor *lv = pk_cross_entropy(l->c, logits(l, x), y, lo, hi);
    if (!lv) return pk_error(PK_ERR_INVALID, "%s: forward failed: %s", m->name, polyak_error());
    PK_TRY(autograd_backward(l->c, lv));
    /* data parallel: the world's mean gradient; every rank then takes the same optimiser and
     * offline-teacher steps, so the offline PETs need no communication */
    PK_TRY(cl_average_grads(l->c, l->trainable, 2 + l->pets->nparams, share));
    PK_TRY(optim_step(l->head_opt));
    PK_TRY(optim_zero_grad(l->head_opt));
    if (!l->frozen) {
        PK_TRY(optim_step(l->pet_opt));
        PK_TRY(optim_zero_grad(l->pet_opt));
    }
    /* the offline PETs follow after every optimiser step from task 2 on */
    if (l->offline && l->task >= 1) PK_TRY(teacher_update(l->offline));
    l->counters[0] = (float)optim_steps(l->head_opt);
    l->counters[1] = (float)optim_steps(l->pet_opt);
    l->counters[2] = l->offline ? (float)teacher_updates(l->offline) : 0;
    *loss = lv;
    return PK_OK;
}

static pk_status seen_logits(lae *l, tensor *x, int seen, float *out) {
    tensor *lg = pk_slice(l->c, logits(l, x), 1, 0, seen); // (B, seen)
    if (!lg) return pk_error(PK_ERR_INVALID, "lae: forward failed: %s", polyak_error());
    return tensor_download(lg, out);
}

static pk_status lae_predict(cl_method *m, tensor *x, int seen, float *scores) {
    lae *l = m->self;
    int n = (int)x->shape[0];
    bool g = pk_set_grad_enabled(l->c, false);
    pk_status st = PK_OK;
    if (m->nvariants == 1) {
        st = seen_logits(l, x, seen, scores);
    } else {
        if (n > l->cap_rows) {
            free(l->on), free(l->off);
            l->on = malloc(sizeof(float) * (size_t)n * (size_t)l->classes);
            l->off = malloc(sizeof(float) * (size_t)n * (size_t)l->classes);
            l->cap_rows = l->on && l->off ? n : 0;
            if (!l->on || !l->off) st = pk_error(PK_ERR_NOMEM, "lae: out of host memory");
        }
        if (st == PK_OK) st = seen_logits(l, x, seen, l->on);
        if (st == PK_OK && l->task >= 1) {
            /* the offline PETs: swapped into the PET tensors for one forward, then back */
            st = teacher_swap(l->offline);
            if (st == PK_OK) st = seen_logits(l, x, seen, l->off);
            pk_status s2 = teacher_swap(l->offline);
            if (st == PK_OK) st = s2;
        } else if (st == PK_OK) {
            memcpy(l->off, l->on, sizeof(float) * (size_t)n * (size_t)seen);
        }
        if (st == PK_OK) lae_ensemble_scores(l->on, l->off, n, seen, scores);
    }
    pk_set_grad_enabled(l->c, g);
    return st;
}

static int lae_state(cl_method *m, run_tensor *ts, int cap) {
    lae *l = m->self;
    int n = 0;
    ts[n++] = (run_tensor){.name = "head.weight", .t = l->w};
    ts[n++] = (run_tensor){.name = "head.bias", .t = l->b};
    for (int i = 0; i < l->pets->nparams && n < cap; i++)
        ts[n++] = (run_tensor){.name = l->pets->params[i]->name, .t = l->pets->params[i]};
    int k = 0;
    if (l->offline)
        for (int i = 0; i < l->pets->nparams && n < cap && k < 40; i++, k++) {
            snprintf(l->names[k], 96, "offline.%s", l->pets->params[i]->name);
            ts[n++] = (run_tensor){.name = l->names[k], .t = teacher_tensor(l->offline, i)};
        }
    ts[n++] = (run_tensor){.name = "lae.counters", .host = l->counters, .numel = 3};
    int left = cap - n, room = 64 - k;
    int h =
        cl_optim_state(l->head_opt, "head_optim", ts + n, left < room ? left : room, l->names + k);
    n += h, k += h, left = cap - n, room = 64 - k;
    n += cl_optim_state(l->pet_opt, "pet_optim", ts + n, left < room ? left : room, l->names + k);
    return n;
}

static pk_status lae_restored(cl_method *m, int task, int epoch) {
    (void)epoch;
    lae *l = m->self;
    l->task = task;
    optim_set_steps(l->head_opt, (int64_t)l->counters[0]);
    optim_set_steps(l->pet_opt, (int64_t)l->counters[1]);
    if (l->offline) teacher_set_updates(l->offline, (int64_t)l->counters[2]);
    return PK_OK;
}

static void lae_destroy(cl_method *m) {
    if (!m) return;
    lae *l = m->self;
    if (l) {
        optim_destroy(l->head_opt);
        optim_destroy(l->pet_opt);
        teacher_destroy(l->offline);
        pet_destroy(l->pets);
        free(l->on), free(l->off), free(l->trainable);
    }
    free(l);
    free(m);
}

pk_status lae_method(const lae_options *o, cl_method **out) {
    cl_method *m = calloc(1, sizeof *m);
    lae *l = calloc(1, sizeof *l);
    if (!m || !l) {
        free(m), free(l);
        return pk_error(PK_ERR_NOMEM, "lae: out of memory");
    }
    l->o = *o;
    if (l->o.freeze_epochs < 0) l->o.freeze_epochs = 3;
    if (!(l->o.ema > 0)) l->o.ema = 0.9999;
    bool is_lae = o->mode == LAE_LAE;
    *m = (cl_method){.name = o->mode == LAE_LAE     ? "lae"
                             : o->mode == LAE_JOINT ? "joint"
                                                    : "seqft",
                     .nvariants = is_lae ? 3 : 1,
                     .variant = {is_lae                 ? "ensemble"
                                 : o->mode == LAE_JOINT ? "joint"
                                                        : "seqft",
                                 "online", "offline"},
                     .self = l,
                     .setup = lae_setup,
                     .task_begin = lae_task_begin,
                     .epoch_begin = lae_epoch_begin,
                     .step = lae_step,
                     .predict = lae_predict,
                     .state = lae_state,
                     .restored = lae_restored,
                     .destroy = lae_destroy};
    *out = m;
    return PK_OK;
}
