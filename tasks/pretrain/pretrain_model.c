/* pretrain_model.c - the models of a pretraining run (ViT, DINO head or linear head, the EMA
 * teacher set, AdamW groups) and its training steps (DINO, supervised), with DINO's gradient
 * clipping and last-layer freezing. The loop around them is pretrain_run.c's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "pretrain_internal.h"

void ema_destroy(ema_set *e) {
    for (int i = 0; i < e->n; i++) {
        teacher_destroy(e->t[i]);
        free(e->students[i]);
    }
    e->n = 0;
}

pk_status ema_create(pk_ctx *c, const pk_teacher_options *to, tensor *const *params, int n,
                     ema_set *e) {
    bool *done = calloc((size_t)n, sizeof(bool));
    tensor **list = malloc(sizeof(tensor *) * (size_t)n);
    pk_status st = done && list ? PK_OK : pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    for (int i = 0; i < n && st == PK_OK; i++) {
        if (done[i]) continue;
        int k = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && params[j]->block == params[i]->block)
                list[k++] = params[j], done[j] = true;
        if (e->n == MAX_TEACHERS) {
            st = pk_error(PK_ERR_UNSUPPORTED,
                          "pretrain: parameters span more than %d memory blocks", MAX_TEACHERS);
            break;
        }
        e->students[e->n] = malloc(sizeof(tensor *) * (size_t)k);
        if (!e->students[e->n]) {
            st = pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
            break;
        }
        memcpy(e->students[e->n], list, sizeof(tensor *) * (size_t)k);
        st = teacher_create(c, to, list, k, &e->t[e->n]);
        e->n++;
    }
    free(done), free(list);
    return st;
}

/* Swaps every teacher's values into its students (again: back). */
pk_status ema_swap(ema_set *e) {
    for (int i = 0; i < e->n; i++)
        PK_TRY(teacher_swap(e->t[i]));
    return PK_OK;
}

pk_status ema_update(ema_set *e) {
    for (int i = 0; i < e->n; i++)
        PK_TRY(teacher_update(e->t[i]));
    return PK_OK;
}

/* ---- models ---- */

/* DINO's get_params_groups: biases and 1-D tensors get no weight decay. */
static bool regularized(const tensor *p) {
    size_t n = p->name ? strlen(p->name) : 0;
    return !(n >= 5 && strcmp(p->name + n - 5, ".bias") == 0) && p->ndim > 1;
}

/* The named configuration with the options' overrides. */
pk_status arch_config(const pretrain_options *o, vit_config *cfg) {
    PK_TRY(vit_config_by_name(o->arch ? o->arch : "vit_nano_patch4_28", cfg));
    if (o->dim > 0) cfg->dim = o->dim, cfg->mlp_hidden = 4 * o->dim;
    if (o->depth > 0) cfg->depth = o->depth;
    if (o->heads > 0) cfg->heads = o->heads;
    if (o->patch > 0) cfg->patch = o->patch;
    if (cfg->dim % cfg->heads)
        return pk_error(PK_ERR_INVALID,
                        "pretrain: embedding dimension %d is not divisible by %d heads", cfg->dim,
                        cfg->heads);
    return PK_OK;
}

pk_status build_models(pt_state *s) {
    pretrain_options *o = &s->o;
    vit_config cfg;
    PK_TRY(arch_config(o, &cfg));
    cfg.in_chans = s->train.c;
    cfg.img_size = o->global_size;
    cfg.num_classes = 0;
    pk_rng rng = {aug_mix(o->seed, 0x5EED)};
    PK_TRY(vit_create(s->c, &cfg, "", &rng, &s->model));
    int nb = 0;
    tensor *const *bp = vit_params(s->model, &nb);
    s->params = malloc(sizeof(tensor *) * (size_t)(nb + 8));
    if (!s->params) return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    memcpy(s->params, bp, sizeof(tensor *) * (size_t)nb);
    s->nparams = nb;
    if (o->method == PRETRAIN_DINO) {
        dino_head_config hc = {cfg.dim, o->hidden, o->bottleneck, o->out_dim};
        PK_TRY(dino_head_create(s->c, &hc, "head", &rng, &s->head));
        tensor *hp[7] = {s->head.fc1.w, s->head.fc1.b, s->head.fc2.w, s->head.fc2.b,
                         s->head.fc3.w, s->head.fc3.b, s->head.last_v};
        memcpy(s->params + nb, hp, sizeof hp);
        s->nparams = nb + 7;
        s->center = tensor_new(s->c->state, PK_F32, 1, (int64_t[]){o->out_dim});
        if (!s->center) return PK_ERR_NOMEM;
        PK_TRY(tensor_fill(s->center, 0.0f));
        int64_t total = (int64_t)o->epochs * s->steps;
        pk_teacher_options to = {.name = "teacher",
                                 .schedule = {.kind = PK_MOMENTUM_COSINE,
                                              .m0 = o->momentum_teacher,
                                              .m1 = 1.0,
                                              .total_steps = total}};
        PK_TRY(ema_create(s->c, &to, s->params, s->nparams, &s->ema));
    } else if (o->method == PRETRAIN_SUPERVISED) {
        /* timm's head: trunc_normal(.02) weight, zero bias (here: normal, |w| <= 2 anyway) */
        PK_TRY(nn_linear_init(s->c, "head", cfg.dim, s->classes, true, &rng, &s->cls_head));
        float *w = malloc(sizeof(float) * (size_t)cfg.dim * (size_t)s->classes);
        if (!w) return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
        for (int64_t i = 0; i < (int64_t)cfg.dim * s->classes; i++)
            w[i] = (float)(0.02 * pk_rng_normal(&rng));
        pk_status st = tensor_upload(s->cls_head.w, w);
        free(w);
        PK_TRY(st);
        PK_TRY(tensor_fill(s->cls_head.b, 0.0f));
        s->params[nb] = s->cls_head.w, s->params[nb + 1] = s->cls_head.b;
        s->nparams = nb + 2;
    }
    if (o->method != PRETRAIN_DINO && o->method != PRETRAIN_SUPERVISED) return PK_OK;
    if (s->c->backend != PK_BACKEND_CPU) {
        s->loss_sum = tensor_new(s->c->state, PK_F32, 1, (int64_t[]){1});
        if (!s->loss_sum) return PK_ERR_NOMEM;
        PK_TRY(tensor_fill(s->loss_sum, 0.0f));
    }
    /* optimiser groups: regularised, not regularised; DINO's last layer apart */
    tensor **reg = malloc(sizeof(tensor *) * (size_t)s->nparams);
    tensor **noreg = malloc(sizeof(tensor *) * (size_t)s->nparams);
    if (!reg || !noreg) {
        free(reg), free(noreg);
        return pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    }
    int nr = 0, nn = 0;
    for (int i = 0; i < s->nparams; i++) {
        if (o->method == PRETRAIN_DINO && s->params[i] == s->head.last_v) continue;
        if (regularized(s->params[i]))
            reg[nr++] = s->params[i];
        else
            noreg[nn++] = s->params[i];
    }
    pk_param_group g[2] = {
        {.name = "regularized", .params = reg, .n = nr, .lr = s->lr_base, .weight_decay = o->wd},
        {.name = "not_regularized", .params = noreg, .n = nn, .lr = s->lr_base, .weight_decay = 0}};
    pk_optim_options oo = {.kind = PK_OPTIM_ADAMW, .adamw = {.lr = s->lr_base}};
    pk_status st = optim_create(s->c, &oo, g, 2, &s->opt);
    if (st == PK_OK && o->method == PRETRAIN_DINO) {
        pk_param_group gl = {.name = "last_layer",
                             .params = &s->head.last_v,
                             .n = 1,
                             .lr = s->lr_base,
                             .weight_decay = o->wd};
        st = optim_create(s->c, &oo, &gl, 1, &s->opt_last);
    }
    free(reg), free(noreg);
    return st;
}

/* ---- training steps ---- */

/* Concatenates n (1)-shaped tensors along axis 0 in groups of PK_MAX_IN (pk_concat's limit);
 * xs is overwritten. */
static tensor *concat_many(pk_ctx *c, tensor **xs, int n) {
    while (n > 1) {
        int m = 0;
        for (int i = 0; i < n; i += PK_MAX_IN) {
            int k = n - i < PK_MAX_IN ? n - i : PK_MAX_IN;
            xs[m++] = k == 1 ? xs[i] : pk_concat(c, xs + i, k, 0);
        }
        n = m;
    }
    return n == 1 ? xs[0] : NULL;
}

/* DINO's clip_gradients: every parameter's gradient scaled to norm <= clip. */
static pk_status clip_gradients(pt_state *s) {
    if (s->o.clip <= 0) return PK_OK;
    pk_ctx *c = s->c;
    bool host = c->backend == PK_BACKEND_CPU;
    if (host) {
        for (int i = 0; i < s->nparams; i++) {
            tensor *g = s->params[i]->grad;
            float *p = tensor_host(g);
            int64_t n = tensor_numel(g);
            /* the norm accumulated in double and rounded to float (torch's p.grad.norm() is a
             * float; its summation order differs, so this matches it to rounding) */
            double acc = 0;
            for (int64_t j = 0; j < n; j++)
                acc += (double)p[j] * p[j];
            float nrm = (float)sqrt(acc);
            float coef = (float)(s->o.clip / ((double)nrm + 1e-6));
            if (coef < 1.0f)
                for (int64_t j = 0; j < n; j++)
                    p[j] *= coef;
        }
        return PK_OK;
    }
    /* other backends, on the device without a read-back: every tensor's squared norm into
     * one (n) vector, coef = clip / (norm + 1e-6) and g += (min(coef, 1) - 1) g, the CPU
     * path's `if (coef < 1) g *= coef` (min(coef, 1) - 1 = -relu(1 - coef); 0 leaves g) */
    bool ge = pk_set_grad_enabled(c, false);
    int n = s->nparams;
    tensor **sq = malloc(sizeof(tensor *) * (size_t)n);
    pk_status st = sq ? PK_OK : pk_error(PK_ERR_NOMEM, "pretrain: out of host memory");
    for (int i = 0; i < n && st == PK_OK; i++) {
        tensor *g = s->params[i]->grad;
        tensor *flat = pk_reshape(c, g, 1, (int64_t[]){tensor_numel(g)});
        sq[i] = pk_sum_all(c, pk_unary(c, PK_SQUARE, flat)); // (1)
        if (!sq[i]) st = PK_ERR_INVALID;
    }
    tensor *norms = st == PK_OK ? concat_many(c, sq, n) : NULL; // (n) squared norms
    tensor *clip = norms ? tensor_new(c->step, PK_F32, 1, (int64_t[]){n}) : NULL;
    if (st == PK_OK && (!clip || pk_fill(c, clip, (float)s->o.clip) != PK_OK)) st = PK_ERR_INVALID;
    tensor *coef =
        st == PK_OK ? pk_div(c, clip, pk_affine(c, pk_sqrt(c, norms), 1.0f, 1e-6f)) : NULL; // (n)
    tensor *less1 = coef ? pk_scale(c, pk_relu(c, pk_affine(c, coef, -1.0f, 1.0f)), -1.0f) : NULL;
    if (st == PK_OK && !less1) st = PK_ERR_INVALID;
    for (int i = 0; i < n && st == PK_OK; i++) {
        tensor *g = s->params[i]->grad;
        st = pk_accumulate(c, g, pk_mul(c, g, pk_slice(c, less1, 0, i, 1)));
    }
    pk_set_grad_enabled(c, ge);
    free(sq);
    return st;
}

/* The step's loss: read (CPU backend), or added into the device sum (others). */
static pk_status take_loss(pt_state *s, tensor *loss, double *out) {
    if (s->loss_sum) {
        *out = NAN;
        return pk_accumulate(s->c, s->loss_sum, loss);
    }
    float lv = 0;
    PK_TRY(tensor_download(loss, &lv));
    *out = lv;
    return PK_OK;
}

/* One DINO step on the batch at `it` (views already in s->globals / s->locals). */
pk_status dino_step(pt_state *s, int epoch, int64_t it, double *loss_out) {
    pk_ctx *c = s->c;
    const pretrain_options *o = &s->o;
    int b = s->local_batch, ch = s->train.c, g = o->global_size, l = o->local_size,
        nl = o->local_crops;
    /* no wait for the previous step: its recording is submitted; the step arena's reuse is
     * ordered on the device (pk_step_reset) */
    PK_TRY(pk_step_reset(c));
    tensor *xg = tensor_new(c->step, PK_F32, 4, (int64_t[]){2 * b, ch, g, g});
    tensor *xl = nl ? tensor_new(c->step, PK_F32, 4, (int64_t[]){(int64_t)nl * b, ch, l, l}) : NULL;
    if (!xg || (nl && !xl)) return PK_ERR_NOMEM;
    PK_TRY(tensor_upload(xg, s->globals));
    if (nl) PK_TRY(tensor_upload(xl, s->locals));
    /* teacher: the two global crops, with the teacher's weights swapped in, no tape */
    PK_TRY(ema_swap(&s->ema));
    bool ge = pk_set_grad_enabled(c, false);
    tensor *tout = dino_head_forward(c, &s->head, vit_forward_features(c, s->model, xg));
    pk_set_grad_enabled(c, ge);
    PK_TRY(ema_swap(&s->ema));
    if (!tout) return PK_ERR_INVALID;
    /* student: every crop through the backbone (one pass per resolution), one head pass */
    tensor *fs = vit_forward_features(c, s->model, xg); // (2 B, D)
    if (nl) {
        tensor *fl = vit_forward_features(c, s->model, xl); // (nl B, D)
        tensor *both[2] = {fs, fl};
        fs = pk_concat(c, both, 2, 0);
    }
    tensor *sout = dino_head_forward(c, &s->head, fs); // (ncrops B, K)
    double temp = dino_teacher_temp(epoch, o->warmup_teacher_temp, o->teacher_temp,
                                    o->warmup_teacher_temp_epochs);
    tensor *loss = dino_loss(c, sout, tout, s->center, s->ncrops, o->student_temp, temp);
    if (!loss) return PK_ERR_INVALID;
    PK_TRY(dino_center_update_world(c, s->center, tout, o->center_momentum));
    PK_TRY(autograd_backward(c, loss));
    PK_TRY(take_loss(s, loss, loss_out));
    /* data parallel: the mean of the ranks' gradients, then DINO's per-tensor clipping (as
     * DDP's reduced gradients are what clip_gradients sees) */
    PK_TRY(dist_average_grads(c));
    return clip_gradients(s);
}

/* One supervised step: cross-entropy of the head on both global crops of every image. */
pk_status supervised_step(pt_state *s, double *loss_out) {
    pk_ctx *c = s->c;
    const pretrain_options *o = &s->o;
    int b = s->local_batch, ch = s->train.c, g = o->global_size;
    PK_TRY(pk_step_reset(c));
    tensor *xg = tensor_new(c->step, PK_F32, 4, (int64_t[]){2 * b, ch, g, g});
    tensor *y = tensor_new(c->step, PK_I32, 1, (int64_t[]){2 * b});
    if (!xg || !y) return PK_ERR_NOMEM;
    PK_TRY(tensor_upload(xg, s->globals));
    PK_TRY(tensor_upload(y, s->labels));
    tensor *logits = nn_linear_forward(c, &s->cls_head, vit_forward_features(c, s->model, xg));
    tensor *loss = pk_cross_entropy(c, logits, y, 0, 0);
    if (!loss) return PK_ERR_INVALID;
    PK_TRY(autograd_backward(c, loss));
    PK_TRY(take_loss(s, loss, loss_out));
    PK_TRY(dist_average_grads(c));
    return clip_gradients(s);
}

/* Sets lr and weight decay of step `it`, steps the optimisers, zeroes the gradients and
 * updates the teacher (DINO's order). */
pk_status optimise(pt_state *s, int epoch, int64_t it, double *lr, double *wd) {
    const pretrain_options *o = &s->o;
    int64_t total = (int64_t)o->epochs * s->steps;
    /* warm-up in (possibly fractional) epochs, as whole steps */
    int64_t warm = (int64_t)llround(o->warmup_epochs * s->steps);
    *lr = dino_cosine_steps(s->lr_base, o->min_lr, total, warm, it);
    *wd = dino_cosine_steps(o->wd, o->wd_end, total, 0, it);
    optim_set_lr(s->opt, 0, *lr);
    optim_set_lr(s->opt, 1, *lr);
    optim_set_weight_decay(s->opt, 0, *wd);
    PK_TRY(optim_step(s->opt));
    PK_TRY(optim_zero_grad(s->opt));
    if (s->opt_last) {
        if (epoch >= o->freeze_last_layer) { /* cancel_gradients_last_layer before that */
            optim_set_lr(s->opt_last, 0, *lr);
            optim_set_weight_decay(s->opt_last, 0, *wd);
            PK_TRY(optim_step(s->opt_last));
        }
        PK_TRY(optim_zero_grad(s->opt_last));
    }
    PK_TRY(ema_update(&s->ema));
    return PK_OK;
}
