/* ctp_model.c - the dual encoder (ViT + pre-norm text Transformer + projections), its views
 * over other parameter sets, ALBEF's contrastive loss with soft targets, CTP's topology loss,
 * the feature queue and retrieval recall. */
#include "ctp_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* timm's trunc_normal_(std, a=-2, b=2), drawn on the host. */
static pk_status init_trunc_normal(tensor *t, double std, pk_rng *rng) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    for (int64_t i = 0; i < n; i++) {
        double v;
        do
            v = pk_rng_normal(rng) * std;
        while (v < -2.0 || v > 2.0);
        h[i] = (float)v;
    }
    pk_status s = tensor_upload(t, h);
    free(h);
    return s;
}

/* The [CLS] row of the token table and position 0 of the position table start as the ViT's
 * cls_token (normal, std 1e-6): the text feature is read at [CLS], and with 0.02-scale rows
 * there its own embedding would dominate the residual stream over the attention's
 * (0.02-scale) contribution, so every caption would start at nearly the same feature (measured:
 * mean cosine 0.98 between different captions). */
static pk_status zero_cls_rows(tensor *tok, tensor *pos, int64_t D, pk_rng *rng) {
    int64_t nt = tensor_numel(tok), np = tensor_numel(pos);
    float *a = malloc(sizeof(float) * (size_t)nt), *b = malloc(sizeof(float) * (size_t)np);
    pk_status s = a && b ? PK_OK : pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    if (s == PK_OK) s = tensor_download(tok, a);
    if (s == PK_OK) s = tensor_download(pos, b);
    for (int64_t d = 0; s == PK_OK && d < D; d++) {
        a[2 * D + d] = (float)(pk_rng_normal(rng) * 1e-6); /* [CLS] is id 2 */
        b[d] = (float)(pk_rng_normal(rng) * 1e-6);
    }
    if (s == PK_OK) s = tensor_upload(tok, a);
    if (s == PK_OK) s = tensor_upload(pos, b);
    free(a), free(b);
    return s;
}

static pk_status text_linear(pk_ctx *c, const char *name, int64_t in, int64_t out, pk_rng *rng,
                             nn_linear *l) {
    PK_TRY(nn_linear_init(c, name, in, out, true, rng, l));
    PK_TRY(init_trunc_normal(l->w, 0.02, rng));
    return tensor_fill(l->b, 0.0f);
}

static const char *pname(pk_ctx *c, const char *prefix, const char *rest) {
    const char *n = pk_ctx_name(c, prefix, rest);
    return *prefix ? n : n + 1;
}

/* Appends every tensor of a vit_block in state_dict order. */
static int block_params(const vit_block *b, tensor **out) {
    tensor *bp[] = {b->norm1.weight, b->norm1.bias, b->qkv.w, b->qkv.b, b->proj.w, b->proj.b,
                    b->norm2.weight, b->norm2.bias, b->fc1.w, b->fc1.b, b->fc2.w,  b->fc2.b};
    memcpy(out, bp, sizeof bp);
    return 12;
}

pk_status ctp_model_create(pk_ctx *c, const ctp_model_config *cfg, const char *prefix, pk_rng *rng,
                           ctp_model **out) {
    *out = NULL;
    if (cfg->txt_dim % cfg->txt_heads || cfg->vocab < 6 || cfg->max_len < 2 || cfg->embed < 1 ||
        cfg->txt_depth < 1)
        return pk_error(PK_ERR_INVALID,
                        "ctp: text encoder dim %d, heads %d, depth %d, vocabulary %d, max length "
                        "%d, embed %d: dim must split into the heads, depth >= 1, vocabulary > 5, "
                        "length >= 2",
                        cfg->txt_dim, cfg->txt_heads, cfg->txt_depth, cfg->vocab, cfg->max_len,
                        cfg->embed);
    ctp_model *m = calloc(1, sizeof *m);
    if (!m) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    m->cfg = *cfg;
    int nv;
    pk_status s = vit_create(c, &cfg->vision, pname(c, prefix, "visual"), rng, &m->visual);
    if (s != PK_OK) {
        free(m);
        return s;
    }
    tensor *const *vp = vit_params(m->visual, &nv);
    int64_t D = cfg->txt_dim, L = cfg->max_len;
    m->params = calloc((size_t)(nv + 12 * cfg->txt_depth + 12), sizeof(tensor *));
    m->text.blocks = calloc((size_t)cfg->txt_depth, sizeof(vit_block));
    if (!m->params || !m->text.blocks) {
        ctp_model_destroy(m);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    memcpy(m->params, vp, sizeof(tensor *) * (size_t)nv);
    int n = nv;
    ctp_text_encoder *t = &m->text;
    t->tok_embed =
        pk_param_new(c, pname(c, prefix, "text.tok_embed"), 2, (int64_t[]){cfg->vocab, D});
    t->pos_embed = pk_param_new(c, pname(c, prefix, "text.pos_embed"), 3, (int64_t[]){1, L, D});
    s = t->tok_embed && t->pos_embed ? PK_OK : PK_ERR_NOMEM;
    if (s == PK_OK) s = init_trunc_normal(t->tok_embed, 0.02, rng);
    if (s == PK_OK) s = init_trunc_normal(t->pos_embed, 0.02, rng);
    if (s == PK_OK) s = zero_cls_rows(t->tok_embed, t->pos_embed, D, rng);
    m->params[n++] = t->tok_embed, m->params[n++] = t->pos_embed;
    char nm[96];
    for (int i = 0; i < cfg->txt_depth && s == PK_OK; i++) {
        vit_block *b = &t->blocks[i];
#define NAME(F) (snprintf(nm, sizeof nm, "text.blocks.%d." F, i), pname(c, prefix, nm))
        s = nn_layernorm_init(c, NAME("norm1"), D, 1e-6f, &b->norm1);
        if (s == PK_OK) s = text_linear(c, NAME("attn.qkv"), D, 3 * D, rng, &b->qkv);
        if (s == PK_OK) s = text_linear(c, NAME("attn.proj"), D, D, rng, &b->proj);
        if (s == PK_OK) s = nn_layernorm_init(c, NAME("norm2"), D, 1e-6f, &b->norm2);
        if (s == PK_OK) s = text_linear(c, NAME("mlp.fc1"), D, 4 * D, rng, &b->fc1);
        if (s == PK_OK) s = text_linear(c, NAME("mlp.fc2"), 4 * D, D, rng, &b->fc2);
#undef NAME
        if (s == PK_OK) n += block_params(b, m->params + n);
    }
    if (s == PK_OK) s = nn_layernorm_init(c, pname(c, prefix, "text.norm"), D, 1e-6f, &t->norm);
    if (s == PK_OK)
        s = nn_linear_init(c, pname(c, prefix, "vision_proj"), cfg->vision.dim, cfg->embed, true,
                           rng, &m->vision_proj);
    if (s == PK_OK)
        s = nn_linear_init(c, pname(c, prefix, "text_proj"), D, cfg->embed, true, rng,
                           &m->text_proj);
    if (s != PK_OK) {
        ctp_model_destroy(m);
        return s;
    }
    m->params[n++] = t->norm.weight, m->params[n++] = t->norm.bias;
    m->params[n++] = m->vision_proj.w, m->params[n++] = m->vision_proj.b;
    m->params[n++] = m->text_proj.w, m->params[n++] = m->text_proj.b;
    m->nparams = n;
    *out = m;
    return PK_OK;
}

void ctp_model_destroy(ctp_model *m) {
    if (!m) return;
    if (m->view) {
        if (m->visual) free(m->visual->blocks);
        free(m->visual);
    } else
        vit_destroy(m->visual);
    free(m->text.blocks);
    free(m->params);
    free(m);
}

/* The tensor of `params` at the position `p` has in m's list. */
static tensor *remap(const ctp_model *m, tensor *const *params, tensor *p) {
    if (!p) return NULL;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i] == p) return params[i];
    return NULL;
}

static void remap_block(const ctp_model *m, tensor *const *params, vit_block *b) {
    tensor **f[] = {&b->norm1.weight, &b->norm1.bias, &b->qkv.w, &b->qkv.b, &b->proj.w, &b->proj.b,
                    &b->norm2.weight, &b->norm2.bias, &b->fc1.w, &b->fc1.b, &b->fc2.w,  &b->fc2.b};
    for (int k = 0; k < 12; k++)
        *f[k] = remap(m, params, *f[k]);
}

pk_status ctp_model_view(const ctp_model *m, tensor *const *params, ctp_model **out) {
    *out = NULL;
    for (int i = 0; i < m->nparams; i++)
        if (!params[i] || !tensor_same_shape(params[i], m->params[i]))
            return pk_error(PK_ERR_INVALID, "ctp: view tensor %d (%s) is missing or misshaped", i,
                            m->params[i]->name);
    ctp_model *v = calloc(1, sizeof *v);
    if (!v) return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    *v = *m;
    v->view = true;
    v->visual = malloc(sizeof(vit));
    v->text.blocks = malloc(sizeof(vit_block) * (size_t)m->cfg.txt_depth);
    v->params = malloc(sizeof(tensor *) * (size_t)m->nparams);
    if (v->visual)
        v->visual->blocks = malloc(sizeof(vit_block) * (size_t)(m->cfg.vision.depth + 1));
    if (!v->visual || !v->text.blocks || !v->params || !v->visual->blocks) {
        if (!v->visual) v->view = false; /* nothing to free there */
        ctp_model_destroy(v);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
    }
    vit_block *vb = v->visual->blocks;
    *v->visual = *m->visual;
    v->visual->blocks = vb;
    memcpy(vb, m->visual->blocks, sizeof(vit_block) * (size_t)m->cfg.vision.depth);
    memcpy(v->text.blocks, m->text.blocks, sizeof(vit_block) * (size_t)m->cfg.txt_depth);
    memcpy(v->params, params, sizeof(tensor *) * (size_t)m->nparams);
    vit *w = v->visual;
    w->cls_token = remap(m, params, w->cls_token);
    w->pos_embed = remap(m, params, w->pos_embed);
    w->patch_embed.w = remap(m, params, w->patch_embed.w);
    w->patch_embed.b = remap(m, params, w->patch_embed.b);
    for (int i = 0; i < m->cfg.vision.depth; i++)
        remap_block(m, params, &w->blocks[i]);
    w->norm.weight = remap(m, params, w->norm.weight);
    w->norm.bias = remap(m, params, w->norm.bias);
    v->text.tok_embed = remap(m, params, v->text.tok_embed);
    v->text.pos_embed = remap(m, params, v->text.pos_embed);
    for (int i = 0; i < m->cfg.txt_depth; i++)
        remap_block(m, params, &v->text.blocks[i]);
    v->text.norm.weight = remap(m, params, v->text.norm.weight);
    v->text.norm.bias = remap(m, params, v->text.norm.bias);
    v->vision_proj.w = remap(m, params, v->vision_proj.w);
    v->vision_proj.b = remap(m, params, v->vision_proj.b);
    v->text_proj.w = remap(m, params, v->text_proj.w);
    v->text_proj.b = remap(m, params, v->text_proj.b);
    *out = v;
    return PK_OK;
}

/* ---- forwards ---- */

tensor *ctp_image_embed(pk_ctx *c, const ctp_model *m, tensor *x) {
    tensor *f = vit_forward_features(c, m->visual, x);                           // (B, Dv)
    return pk_l2_normalize(c, nn_linear_forward(c, &m->vision_proj, f), 1e-12f); // (B, E)
}

/* One pre-norm block with the padding mask: the ViT's block, attention through
 * pk_attention_heads so the mask applies. x (B, L, D). */
static tensor *text_block(pk_ctx *c, const ctp_model *m, const vit_block *b, tensor *x,
                          tensor *mask) {
    int64_t D = m->cfg.txt_dim;
    int heads = m->cfg.txt_heads;
    float scale = 1.0f / sqrtf((float)(D / heads));
    tensor *h = nn_layernorm_forward(c, &b->norm1, x);
    tensor *qkv = nn_linear_forward(c, &b->qkv, h); // (B, L, 3D)
    tensor *q = pk_slice(c, qkv, 2, 0, D), *k = pk_slice(c, qkv, 2, D, D),
           *v = pk_slice(c, qkv, 2, 2 * D, D);              // (B, L, D) each
    h = pk_attention_heads(c, q, k, v, heads, mask, scale); // (B, L, D)
    x = pk_add(c, x, nn_linear_forward(c, &b->proj, h));
    h = nn_layernorm_forward(c, &b->norm2, x);
    h = pk_gelu_erf(c, nn_linear_forward(c, &b->fc1, h)); // (B, L, 4D)
    return pk_add(c, x, nn_linear_forward(c, &b->fc2, h));
}

tensor *ctp_text_tokens(pk_ctx *c, const ctp_model *m, tensor *ids, tensor *mask) {
    if (!ids) return NULL;
    int64_t L = ids->shape[1];
    if (L != m->cfg.max_len) {
        pk_error(PK_ERR_INVALID, "ctp: %lld tokens per caption; the text encoder takes %d",
                 (long long)L, m->cfg.max_len);
        return NULL;
    }
    tensor *x = pk_embedding(c, m->text.tok_embed, ids); // (B, L, D)
    x = pk_add(c, x, m->text.pos_embed);
    for (int i = 0; i < m->cfg.txt_depth; i++)
        x = text_block(c, m, &m->text.blocks[i], x, mask);
    return nn_layernorm_forward(c, &m->text.norm, x);
}

tensor *ctp_text_embed(pk_ctx *c, const ctp_model *m, tensor *ids, tensor *mask) {
    tensor *x = ctp_text_tokens(c, m, ids, mask); // (B, L, D)
    if (!x) return NULL;
    int64_t B = ids->shape[0], D = m->cfg.txt_dim;
    tensor *cls = pk_reshape(c, pk_slice(c, x, 1, 0, 1), 2, (int64_t[]){B, D}); // (B, D)
    return pk_l2_normalize(c, nn_linear_forward(c, &m->text_proj, cls), 1e-12f);
}

tensor *ctp_mlm_loss(pk_ctx *c, const ctp_model *m, tensor *tokens, tensor *pos, tensor *labels) {
    if (!tokens || !pos || !labels) return NULL;
    int64_t D = m->cfg.txt_dim, BL = tokens->shape[0] * tokens->shape[1];
    tensor *flat = pk_reshape(c, tokens, 2, (int64_t[]){BL, D});      // (B L, D)
    tensor *h = pk_embedding(c, flat, pos);                           // (M, D)
    tensor *logits = pk_matmul(c, h, m->text.tok_embed, false, true); // (M, V)
    return pk_cross_entropy(c, logits, labels, 0, 0);
}

/* ---- losses ---- */

tensor *ctp_contrastive_loss(pk_ctx *c, tensor *q, tensor *k, tensor *targets, float temp) {
    if (!q || !k || !targets) return NULL;
    tensor *sim = pk_scale(c, pk_matmul(c, q, k, false, true), 1.0f / temp); // (B, N)
    tensor *lsm = pk_log_softmax(c, sim, 1);
    return pk_scale(c, pk_sum_all(c, pk_mul(c, lsm, targets)), -1.0f / (float)q->shape[0]);
}

void ctp_soft_targets(const float *qm, const float *km, const int32_t *qid, const int32_t *kid,
                      int b, int n, int e, float temp, float alpha, float *targets) {
    double *row = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int i = 0; i < b; i++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int d = 0; d < e; d++)
                s += (double)qm[(size_t)i * e + d] * km[(size_t)j * e + d];
            row[j] = s / temp;
            if (row[j] > mx) mx = row[j];
        }
        for (int j = 0; j < n; j++)
            sum += row[j] = exp(row[j] - mx);
        int npos = 0;
        for (int j = 0; j < n; j++)
            npos += qid[i] == kid[j];
        for (int j = 0; j < n; j++) {
            double pos = npos ? (qid[i] == kid[j]) / (double)npos : 0.0;
            targets[(size_t)i * n + j] = (float)(alpha * row[j] / sum + (1.0 - alpha) * pos);
        }
    }
    free(row);
}

/* KL(softmax(ref) || softmax(cur)) batchmean of logits (B, B); mask NULL or (B, B) added to
 * both. */
static tensor *topo_kl(pk_ctx *c, tensor *cur, tensor *ref, tensor *mask) {
    if (mask) cur = pk_add(c, cur, mask), ref = pk_add(c, ref, mask);
    return pk_kl_div(c, pk_log_softmax(c, cur, 1), pk_softmax(c, ref, 1));
}

tensor *ctp_topology_loss(pk_ctx *c, tensor *img, tensor *txt, tensor *img_ref, tensor *txt_ref,
                          float temp) {
    if (!img || !txt || !img_ref || !txt_ref) return NULL;
    int64_t B = img->shape[0];
    tensor *mask = tensor_new(c->step, PK_F32, 2, (int64_t[]){B, B});
    if (!mask) return NULL;
    float *h = calloc((size_t)(B * B), sizeof(float));
    if (!h) {
        pk_error(PK_ERR_NOMEM, "ctp: out of host memory");
        return NULL;
    }
    /* exp(-1e4 / 1) underflows to an exact 0 in the softmax; finite, so no inf - inf */
    for (int64_t i = 0; i < B; i++)
        h[i * B + i] = -1e4f;
    pk_status s = tensor_upload(mask, h);
    free(h);
    if (s != PK_OK) return NULL;
    return ctp_topology_loss_masked(c, img, txt, img_ref, txt_ref, mask, temp);
}

tensor *ctp_topology_loss_masked(pk_ctx *c, tensor *img, tensor *txt, tensor *img_ref,
                                 tensor *txt_ref, tensor *mask, float temp) {
    if (!img || !txt || !img_ref || !txt_ref || !mask) return NULL;
    float it = 1.0f / temp;
    tensor *sim[4][2] = {
        {pk_matmul(c, img, txt, false, true), pk_matmul(c, img_ref, txt_ref, false, true)},
        {pk_matmul(c, txt, img, false, true), pk_matmul(c, txt_ref, img_ref, false, true)},
        {pk_matmul(c, img, img, false, true), pk_matmul(c, img_ref, img_ref, false, true)},
        {pk_matmul(c, txt, txt, false, true), pk_matmul(c, txt_ref, txt_ref, false, true)}};
    tensor *sum = NULL;
    for (int k = 0; k < 4; k++) {
        tensor *kl = topo_kl(c, pk_scale(c, sim[k][0], it), pk_scale(c, sim[k][1], it),
                             k >= 2 ? mask : NULL);
        sum = sum ? pk_add(c, sum, kl) : kl;
    }
    /* CTP's code (models/clip_pretrain.py, CTP()): (i2t + t2i) / 2 + (i2i + t2t) / 2 */
    return pk_scale(c, sum, 0.5f);
}

/* ---- momentum ---- */

pk_status ctp_compatible_update(pk_teacher *t, tensor *const *current, tensor *const *previous) {
    tensor *const *src[2] = {current, previous};
    const float w[2] = {0.05f, 0.05f}; /* CTP: theta_c = 0.9 theta_c + 0.05 cur + 0.05 prev */
    return teacher_update_multi(t, 2, src, w, 0.9f);
}

double ctp_task_lr(int64_t step, int64_t total, double lr, int warmup, double min_ratio) {
    if (warmup > 0 && step < warmup) return lr * (double)(step + 1) / warmup;
    if (total <= 0) return lr;
    double lo = lr * min_ratio;
    const double pi = 3.14159265358979323846;
    return lo + 0.5 * (lr - lo) * (1 + cos(pi * (double)step / (double)total));
}

pk_status ctp_optimizer_reset(pk_optimizer *o) {
    char name[128];
    for (int i = 0; i < optim_state_count(o); i++) {
        tensor *t = optim_state_get(o, i, name, sizeof name);
        if (t) PK_TRY(tensor_fill(t, 0.0f));
    }
    optim_set_steps(o, 0);
    return PK_OK;
}

pk_status ctp_teacher_copy(pk_teacher *t, tensor *const *src) {
    tensor *const *s1[1] = {src};
    const float w1[1] = {1.0f};
    return teacher_update_multi(t, 1, s1, w1, 0.0f);
}

/* ---- queue ---- */

pk_status ctp_queue_init(ctp_queue *q, int size, int dim, pk_rng *rng) {
    memset(q, 0, sizeof *q);
    q->size = size, q->dim = dim;
    q->feat = malloc(sizeof(float) * (size_t)size * (size_t)dim);
    q->ids = malloc(sizeof(float) * (size_t)size);
    if (!q->feat || !q->ids) {
        ctp_queue_free(q);
        return pk_error(PK_ERR_NOMEM, "ctp: out of host memory for a queue of %d", size);
    }
    for (int i = 0; i < size; i++) {
        double n2 = 0;
        float *f = q->feat + (size_t)i * dim;
        for (int d = 0; d < dim; d++) {
            f[d] = (float)pk_rng_normal(rng);
            n2 += (double)f[d] * f[d];
        }
        float inv = (float)(1.0 / fmax(sqrt(n2), 1e-12));
        for (int d = 0; d < dim; d++)
            f[d] *= inv;
        q->ids[i] = -1.0f;
    }
    return PK_OK;
}

void ctp_queue_push(ctp_queue *q, const float *feat, const int32_t *ids, int b) {
    for (int i = 0; i < b; i++) {
        memcpy(q->feat + (size_t)q->ptr * q->dim, feat + (size_t)i * q->dim,
               sizeof(float) * (size_t)q->dim);
        q->ids[q->ptr] = (float)ids[i];
        q->ptr = (q->ptr + 1) % q->size;
    }
}

void ctp_queue_free(ctp_queue *q) {
    free(q->feat), free(q->ids);
    q->feat = q->ids = NULL;
}

/* ---- retrieval ---- */

void ctp_recall(const float *sim, const int32_t *img_text, int ni, int nt, double i2t[3],
                double t2i[3]) {
    static const int ks[3] = {1, 5, 10};
    int hit_i[3] = {0}, hit_t[3] = {0};
    for (int i = 0; i < ni; i++) {
        /* rank of the positive: texts scoring strictly higher */
        float sp = sim[(size_t)i * nt + img_text[i]];
        int rank = 0;
        for (int t = 0; t < nt; t++)
            rank += sim[(size_t)i * nt + t] > sp;
        for (int k = 0; k < 3; k++)
            hit_i[k] += rank < ks[k];
    }
    for (int t = 0; t < nt; t++) {
        int best = ni;
        for (int i = 0; i < ni; i++) {
            if (img_text[i] != t) continue;
            float sp = sim[(size_t)i * nt + t];
            int rank = 0;
            for (int j = 0; j < ni; j++)
                rank += sim[(size_t)j * nt + t] > sp;
            if (rank < best) best = rank;
        }
        for (int k = 0; k < 3; k++)
            hit_t[k] += best < ks[k];
    }
    for (int k = 0; k < 3; k++) {
        i2t[k] = ni ? (double)hit_i[k] / ni : 0.0;
        t2i[k] = nt ? (double)hit_t[k] / nt : 0.0;
    }
}
