/* dino.c - DINO's head, loss, centre update and schedules (see dino.h). */
#include "dino.h"

#include <math.h>
#include <stdlib.h>

#include "dist.h"

/* timm/DINO trunc_normal_(std, a = -2, b = 2): a normal draw redrawn outside [a, b] (absolute
 * bounds, 100 standard deviations at std .02, as the reference code has them). */
static pk_status init_trunc_normal(tensor *t, double std, pk_rng *rng) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "dino head: out of host memory");
    for (int64_t i = 0; i < n; i++) {
        double v;
        do
            v = std * pk_rng_normal(rng);
        while (v < -2.0 || v > 2.0);
        h[i] = (float)v;
    }
    pk_status s = tensor_upload(t, h);
    free(h);
    return s;
}

static pk_status mlp_layer(pk_ctx *c, const char *prefix, const char *name, int in, int out,
                           pk_rng *rng, nn_linear *l) {
    PK_TRY(nn_linear_init(c, nn_name(c, prefix, name), in, out, true, rng, l));
    PK_TRY(init_trunc_normal(l->w, 0.02, rng));
    return tensor_fill(l->b, 0.0f);
}

pk_status dino_head_create(pk_ctx *c, const dino_head_config *cfg, const char *prefix, pk_rng *rng,
                           dino_head *h) {
    *h = (dino_head){.cfg = *cfg};
    if (cfg->in_dim < 1 || cfg->hidden < 1 || cfg->bottleneck < 1 || cfg->out_dim < 1)
        return pk_error(PK_ERR_INVALID,
                        "dino head: sizes must be positive (in %d, hidden %d, bottleneck %d, "
                        "out %d)",
                        cfg->in_dim, cfg->hidden, cfg->bottleneck, cfg->out_dim);
    PK_TRY(mlp_layer(c, prefix, "mlp.0", cfg->in_dim, cfg->hidden, rng, &h->fc1));
    PK_TRY(mlp_layer(c, prefix, "mlp.2", cfg->hidden, cfg->hidden, rng, &h->fc2));
    PK_TRY(mlp_layer(c, prefix, "mlp.4", cfg->hidden, cfg->bottleneck, rng, &h->fc3));
    /* weight_norm keeps Linear's default init in weight_v; weight_g = 1 is not a tensor here */
    nn_linear last;
    PK_TRY(nn_linear_init(c, nn_name(c, prefix, "last_layer"), cfg->bottleneck, cfg->out_dim, false,
                          rng, &last));
    last.w->name = nn_name(c, prefix, "last_layer.weight_v");
    h->last_v = last.w;
    return PK_OK;
}

tensor *dino_head_forward(pk_ctx *c, const dino_head *h, tensor *x) {
    x = pk_gelu_erf(c, nn_linear_forward(c, &h->fc1, x)); // (N, hidden)
    x = pk_gelu_erf(c, nn_linear_forward(c, &h->fc2, x)); // (N, hidden)
    x = nn_linear_forward(c, &h->fc3, x);                 // (N, bottleneck)
    x = pk_l2_normalize(c, x, 1e-12f);                    // F.normalize(dim=-1, eps 1e-12)
    tensor *w = pk_l2_normalize(c, h->last_v, 1e-12f);    // (K, bottleneck), rows of norm 1
    return pk_linear(c, x, w, NULL);                      // (N, K)
}

tensor *dino_loss(pk_ctx *c, tensor *student, tensor *teacher, tensor *center, int ncrops,
                  double tau_s, double tau_t) {
    if (!student || !teacher || !center) return NULL;
    int64_t k = student->shape[student->ndim - 1], b = teacher->shape[0] / 2;
    if (ncrops < 2 || student->ndim != 2 || teacher->ndim != 2 || teacher->shape[1] != k ||
        teacher->shape[0] != 2 * b || student->shape[0] != ncrops * b || b < 1) {
        pk_error(PK_ERR_INVALID,
                 "dino loss: expected student (%d B, K) and teacher (2 B, K) logits for %d crops",
                 ncrops, ncrops);
        return NULL;
    }
    /* the teacher's targets: constants, no tape */
    bool g = pk_set_grad_enabled(c, false);
    tensor *q = pk_softmax(c, pk_scale(c, pk_sub(c, teacher, center), (float)(1.0 / tau_t)), -1);
    tensor *q0 = pk_slice(c, q, 0, 0, b), *q1 = pk_slice(c, q, 0, b, b); // (B, K)
    tensor *qsum = ncrops > 2 ? pk_add(c, q0, q1) : NULL;
    pk_set_grad_enabled(c, g);
    tensor *ls = pk_log_softmax(c, pk_scale(c, student, (float)(1.0 / tau_s)), -1); // (V B, K)
    tensor *ls0 = pk_slice(c, ls, 0, 0, b), *ls1 = pk_slice(c, ls, 0, b, b);
    /* pairs (a=1, v=0) and (a=0, v=1) */
    tensor *total = pk_add(c, pk_sum_all(c, pk_mul(c, q1, ls0)), pk_sum_all(c, pk_mul(c, q0, ls1)));
    if (ncrops > 2) { /* every local crop v pairs with both teacher crops */
        tensor *loc = pk_slice(c, ls, 0, 2 * b, (ncrops - 2) * b);
        loc = pk_reshape(c, loc, 3, (int64_t[]){ncrops - 2, b, k}); // (V - 2, B, K)
        total = pk_add(c, total, pk_sum_all(c, pk_mul(c, loc, qsum)));
    }
    return pk_scale(c, total, (float)(-1.0 / ((double)b * (2.0 * ncrops - 2.0))));
}

pk_status dino_center_update_world(pk_ctx *c, tensor *center, tensor *teacher, double m) {
    if (dist_size() <= 1) return dino_center_update(c, center, teacher, m);
    if (!center || !teacher || teacher->ndim != 2 || tensor_numel(center) != teacher->shape[1])
        return pk_error(PK_ERR_INVALID, "dino centre: expected a (K) centre and (N, K) logits");
    /* DINO's all_reduce(batch_center) / (len(teacher_output) * world_size) */
    int64_t k = teacher->shape[1];
    bool g = pk_set_grad_enabled(c, false);
    tensor *sum = pk_sum(c, teacher, 0, false); // (K)
    float *h = malloc(sizeof(float) * (size_t)k);
    pk_status st = h && sum ? tensor_download(sum, h) : pk_error(PK_ERR_NOMEM, "dino centre");
    if (st == PK_OK) st = dist_sum_f32(h, k);
    tensor *mean = st == PK_OK ? tensor_new(c->step, PK_F32, 1, (int64_t[]){k}) : NULL;
    if (st == PK_OK && !mean) st = PK_ERR_NOMEM;
    if (st == PK_OK) {
        double inv = 1.0 / ((double)teacher->shape[0] * dist_size());
        for (int64_t i = 0; i < k; i++)
            h[i] = (float)(h[i] * inv);
        st = tensor_upload(mean, h);
    }
    free(h);
    tensor *next =
        st == PK_OK ? pk_add(c, pk_scale(c, center, (float)m), pk_scale(c, mean, (float)(1.0 - m)))
                    : NULL;
    pk_set_grad_enabled(c, g);
    PK_TRY(st);
    if (!next) return PK_ERR_INVALID;
    PK_TRY(pk_fill(c, center, 0.0f));
    return pk_accumulate(c, center, next);
}

pk_status dino_center_update(pk_ctx *c, tensor *center, tensor *teacher, double m) {
    if (!center || !teacher || teacher->ndim != 2 || tensor_numel(center) != teacher->shape[1])
        return pk_error(PK_ERR_INVALID, "dino centre: expected a (K) centre and (N, K) logits");
    bool g = pk_set_grad_enabled(c, false);
    /* DINO: center * m + sum(teacher, 0) / N * (1 - m) */
    tensor *mean =
        pk_scale(c, pk_sum(c, teacher, 0, false), (float)(1.0 / (double)teacher->shape[0]));
    tensor *next = pk_add(c, pk_scale(c, center, (float)m), pk_scale(c, mean, (float)(1.0 - m)));
    pk_set_grad_enabled(c, g);
    if (!next) return PK_ERR_INVALID;
    PK_TRY(pk_fill(c, center, 0.0f));
    return pk_accumulate(c, center, next); /* 0 + x = x exactly */
}

double dino_teacher_temp(int e, double warm, double final, int warm_epochs) {
    if (e >= warm_epochs) return final;
    if (warm_epochs <= 1) return warm;
    return warm + (final - warm) * (double)e / (double)(warm_epochs - 1);
}

double dino_cosine(double base, double final, int epochs, int64_t niter, int warmup_epochs,
                   int64_t it) {
    return dino_cosine_steps(base, final, (int64_t)epochs * niter, (int64_t)warmup_epochs * niter,
                             it);
}

double dino_cosine_steps(double base, double final, int64_t total, int64_t w, int64_t it) {
    if (it < w) return w <= 1 ? 0.0 : base * (double)it / (double)(w - 1);
    int64_t len = total - w;
    if (len < 1) return final;
    int64_t i = it - w;
    if (i >= len) i = len - 1; /* the schedule has len entries; past the end holds the last */
    return final + 0.5 * (base - final) * (1.0 + cos(M_PI * (double)i / (double)len));
}
