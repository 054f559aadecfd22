/* vit.c - timm's VisionTransformer: named configurations, parameters with timm's names and
 * initialisation, the forward (patch embedding, class token, position embedding resampled
 * bicubically for another grid, pre-norm blocks, final norm, head) and the LayerNorm module.
 *
 * Everything is built from ops, so both backends run it and the tape differentiates it; the
 * bicubic resampling of pos_embed is a matmul by a constant matrix uploaded to the step arena
 * every forward (nothing cached across steps), so pos_embed gets its gradient through it. */
#include "nn/vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configurations ---- */

static const vit_config vit_configs[] = {
    /* name, img, patch, in_chans, dim, depth, heads, mlp, classes, eps */
    {"vit_tiny_patch16_224", 224, 16, 3, 192, 12, 3, 768, 0, 1e-6f},
    {"vit_small_patch16_224", 224, 16, 3, 384, 12, 6, 1536, 0, 1e-6f},
    {"vit_base_patch16_224", 224, 16, 3, 768, 12, 12, 3072, 0, 1e-6f},
    /* small-image configurations (Polyak's own, for 28x28 / 32x32 data) */
    {"vit_nano_patch4_28", 28, 4, 3, 128, 6, 4, 512, 0, 1e-6f},
    /* DINO's Fashion-MNIST backbone in a CPU hour (BENCHMARKS.md): 16 patches of 7x7 */
    {"vit_pico_patch7_28", 28, 7, 3, 64, 4, 4, 256, 0, 1e-6f},
    {"vit_tiny_patch4_28", 28, 4, 3, 192, 12, 3, 768, 0, 1e-6f},
    {"vit_nano_patch4_32", 32, 4, 3, 128, 6, 4, 512, 0, 1e-6f},
    {"vit_tiny_patch4_32", 32, 4, 3, 192, 12, 3, 768, 0, 1e-6f},
};
#define VIT_NCONFIGS ((int)(sizeof vit_configs / sizeof vit_configs[0]))

const char *vit_config_names(void) {
    return "vit_tiny_patch16_224, vit_small_patch16_224, vit_base_patch16_224, "
           "vit_nano_patch4_28, vit_pico_patch7_28, vit_tiny_patch4_28, vit_nano_patch4_32, "
           "vit_tiny_patch4_32";
}

pk_status vit_config_by_name(const char *name, vit_config *cfg) {
    for (int i = 0; i < VIT_NCONFIGS; i++) {
        if (name && strcmp(name, vit_configs[i].name) == 0) {
            *cfg = vit_configs[i];
            return PK_OK;
        }
    }
    return pk_error(PK_ERR_INVALID, "vit: unknown architecture '%s' (known: %s)",
                    name ? name : "(null)", vit_config_names());
}

/* ---- LayerNorm ---- */

pk_status nn_layernorm_init(pk_ctx *c, const char *prefix, int64_t d, float eps, nn_layernorm *l) {
    memset(l, 0, sizeof *l);
    l->eps = eps;
    l->weight = pk_param_new(c, nn_name(c, prefix, "weight"), 1, &d);
    l->bias = pk_param_new(c, nn_name(c, prefix, "bias"), 1, &d);
    if (!l->weight || !l->bias) return PK_ERR_NOMEM;
    PK_TRY(tensor_fill(l->weight, 1.0f));
    return tensor_fill(l->bias, 0.0f);
}

tensor *nn_layernorm_forward(pk_ctx *c, const nn_layernorm *l, tensor *x) {
    return pk_layernorm(c, x, l->weight, l->bias, l->eps);
}

/* ---- parameters ---- */

/* The module with its parameter list (vit is the first member, so vit* converts back). */
#define VIT_POS_CACHE 4 /* grid sizes kept (DINO uses two: global and local crops) */

struct vit_pos_cache {
    int n;
    int64_t gh[VIT_POS_CACHE], gw[VIT_POS_CACHE];
    tensor *mat[VIT_POS_CACHE]; /* (gh*gw, G*G) */
};

typedef struct vit_impl {
    vit m;
    tensor **params;
    int nparams;
} vit_impl;

/* "prefix.rest", or "rest" for an empty prefix; owned by the context. */
static const char *vit_name(pk_ctx *c, const char *prefix, const char *rest) {
    const char *n = pk_ctx_name(c, prefix, rest);
    return *prefix ? n : n + 1; /* skip the leading '.' (the string stays owned whole) */
}

/* Fills t with timm's trunc_normal_(std, a=-2, b=2): a normal resampled outside [-2, 2]. */
static pk_status vit_init_trunc_normal(tensor *t, double std, pk_rng *rng) {
    int64_t n = tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!h) return pk_error(PK_ERR_NOMEM, "vit: out of host memory");
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

/* A linear layer initialised as timm's init_weights_vit_timm: trunc_normal(.02), bias 0. */
static pk_status vit_linear(pk_ctx *c, const char *name, int64_t in, int64_t out, pk_rng *rng,
                            nn_linear *l) {
    PK_TRY(nn_linear_init(c, name, in, out, true, rng, l));
    PK_TRY(vit_init_trunc_normal(l->w, 0.02, rng));
    return tensor_fill(l->b, 0.0f);
}

static pk_status vit_check_config(const vit_config *cfg) {
    if (cfg->img_size < 1 || cfg->patch < 1 || cfg->in_chans < 1 || cfg->dim < 1 ||
        cfg->depth < 0 || cfg->heads < 1 || cfg->mlp_hidden < 1 || cfg->num_classes < 0)
        return pk_error(PK_ERR_INVALID,
                        "vit %s: img_size %d, patch %d, in_chans %d, dim %d, depth %d, heads %d, "
                        "mlp_hidden %d, num_classes %d: all must be positive (depth, classes >= 0)",
                        cfg->name, cfg->img_size, cfg->patch, cfg->in_chans, cfg->dim, cfg->depth,
                        cfg->heads, cfg->mlp_hidden, cfg->num_classes);
    if (cfg->img_size % cfg->patch)
        return pk_error(PK_ERR_INVALID, "vit %s: img_size %d is not a multiple of patch %d",
                        cfg->name, cfg->img_size, cfg->patch);
    if (cfg->dim % cfg->heads)
        return pk_error(PK_ERR_INVALID, "vit %s: dim %d does not split into %d heads", cfg->name,
                        cfg->dim, cfg->heads);
    if (!(cfg->ln_eps > 0.0f))
        return pk_error(PK_ERR_INVALID, "vit %s: ln_eps %g must be positive", cfg->name,
                        (double)cfg->ln_eps);
    return PK_OK;
}

static pk_status vit_build(pk_ctx *c, vit_impl *v, const char *prefix, pk_rng *rng) {
    vit *m = &v->m;
    const vit_config *cfg = &m->cfg;
    int64_t D = cfg->dim, G = cfg->img_size / cfg->patch;
    char name[96];
    /* state_dict order: the model's own parameters, then its submodules in creation order */
    m->cls_token = pk_param_new(c, vit_name(c, prefix, "cls_token"), 3, (int64_t[]){1, 1, D});
    m->pos_embed =
        pk_param_new(c, vit_name(c, prefix, "pos_embed"), 3, (int64_t[]){1, 1 + G * G, D});
    if (!m->cls_token || !m->pos_embed) return PK_ERR_NOMEM;
    PK_TRY(vit_init_trunc_normal(m->pos_embed, 0.02, rng));
    PK_TRY(vit_init_trunc_normal(m->cls_token, 1e-6, rng)); /* normal(std 1e-6): never clipped */
    PK_TRY(nn_conv2d_init(c, vit_name(c, prefix, "patch_embed.proj"), cfg->in_chans, D, cfg->patch,
                          cfg->patch, 0, 1, true, rng, &m->patch_embed));
    for (int i = 0; i < cfg->depth; i++) {
        vit_block *b = &m->blocks[i];
        snprintf(name, sizeof name, "blocks.%d.norm1", i);
        PK_TRY(nn_layernorm_init(c, vit_name(c, prefix, name), D, cfg->ln_eps, &b->norm1));
        snprintf(name, sizeof name, "blocks.%d.attn.qkv", i);
        PK_TRY(vit_linear(c, vit_name(c, prefix, name), D, 3 * D, rng, &b->qkv));
        snprintf(name, sizeof name, "blocks.%d.attn.proj", i);
        PK_TRY(vit_linear(c, vit_name(c, prefix, name), D, D, rng, &b->proj));
        snprintf(name, sizeof name, "blocks.%d.norm2", i);
        PK_TRY(nn_layernorm_init(c, vit_name(c, prefix, name), D, cfg->ln_eps, &b->norm2));
        snprintf(name, sizeof name, "blocks.%d.mlp.fc1", i);
        PK_TRY(vit_linear(c, vit_name(c, prefix, name), D, cfg->mlp_hidden, rng, &b->fc1));
        snprintf(name, sizeof name, "blocks.%d.mlp.fc2", i);
        PK_TRY(vit_linear(c, vit_name(c, prefix, name), cfg->mlp_hidden, D, rng, &b->fc2));
    }
    PK_TRY(nn_layernorm_init(c, vit_name(c, prefix, "norm"), D, cfg->ln_eps, &m->norm));
    if (cfg->num_classes > 0)
        PK_TRY(vit_linear(c, vit_name(c, prefix, "head"), D, cfg->num_classes, rng, &m->head));

    /* the parameter list, in the same (state_dict) order */
    int n = 0;
    v->params[n++] = m->cls_token;
    v->params[n++] = m->pos_embed;
    v->params[n++] = m->patch_embed.w;
    v->params[n++] = m->patch_embed.b;
    for (int i = 0; i < cfg->depth; i++) {
        vit_block *b = &m->blocks[i];
        tensor *bp[] = {b->norm1.weight, b->norm1.bias, b->qkv.w, b->qkv.b, b->proj.w, b->proj.b,
                        b->norm2.weight, b->norm2.bias, b->fc1.w, b->fc1.b, b->fc2.w,  b->fc2.b};
        for (int k = 0; k < 12; k++)
            v->params[n++] = bp[k];
    }
    v->params[n++] = m->norm.weight;
    v->params[n++] = m->norm.bias;
    if (cfg->num_classes > 0) {
        v->params[n++] = m->head.w;
        v->params[n++] = m->head.b;
    }
    v->nparams = n;
    return PK_OK;
}

pk_status vit_create(pk_ctx *c, const vit_config *cfg, const char *prefix, pk_rng *rng, vit **out) {
    *out = NULL;
    PK_TRY(vit_check_config(cfg));
    vit_impl *v = calloc(1, sizeof *v);
    if (!v) return pk_error(PK_ERR_NOMEM, "vit: out of host memory");
    v->m.cfg = *cfg;
    v->m.blocks = calloc((size_t)(cfg->depth ? cfg->depth : 1), sizeof *v->m.blocks);
    v->m.pos_cache = calloc(1, sizeof *v->m.pos_cache);
    v->params =
        calloc((size_t)(8 + 12 * cfg->depth), sizeof *v->params); /* 4 + 12/block + norm + head */
    if (!v->m.blocks || !v->params || !v->m.pos_cache) {
        vit_destroy(&v->m);
        return pk_error(PK_ERR_NOMEM, "vit: out of host memory");
    }
    pk_status s = vit_build(c, v, prefix ? prefix : "", rng);
    if (s != PK_OK) {
        vit_destroy(&v->m);
        return s;
    }
    *out = &v->m;
    return PK_OK;
}

void vit_destroy(vit *m) {
    if (!m) return;
    vit_impl *v = (vit_impl *)m;
    free(v->params);
    free(m->blocks);
    free(m->pos_cache);
    free(v);
}

tensor *const *vit_params(const vit *m, int *n) {
    const vit_impl *v = (const vit_impl *)m;
    *n = v->nparams;
    return v->params;
}

/* ---- bicubic resampling (PyTorch's upsample_bicubic2d, align_corners = false) ---- */

/* PyTorch's cubic convolution kernels with A = -0.75 (UpSample.h). */
static float cubic1(float x, float a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
static float cubic2(float x, float a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }

/* The (out, in) 1-D weights: PyTorch computes the source coordinate in float, takes the
 * floor (not clamped), and clamps the four tap indices to the border. */
static void bicubic_weights_1d(int in, int out, double *w) {
    const float a = -0.75f;
    memset(w, 0, sizeof(double) * (size_t)in * (size_t)out);
    float scale = (float)in / (float)out;
    for (int d = 0; d < out; d++) {
        float real = scale * ((float)d + 0.5f) - 0.5f;
        int x = (int)floorf(real);
        float t = real - (float)x;
        float cw[4] = {cubic2(t + 1.0f, a), cubic1(t, a), cubic1(1.0f - t, a), cubic2(2.0f - t, a)};
        for (int k = 0; k < 4; k++) {
            int i = x - 1 + k;
            i = i < 0 ? 0 : i >= in ? in - 1 : i;
            w[(size_t)d * (size_t)in + (size_t)i] += cw[k];
        }
    }
}

float *vit_bicubic_matrix(int ih, int iw, int oh, int ow) {
    if (ih < 1 || iw < 1 || oh < 1 || ow < 1) return NULL;
    double *wy = malloc(sizeof(double) * (size_t)oh * (size_t)ih);
    double *wx = malloc(sizeof(double) * (size_t)ow * (size_t)iw);
    float *m = malloc(sizeof(float) * (size_t)oh * (size_t)ow * (size_t)ih * (size_t)iw);
    if (!wy || !wx || !m) {
        free(wy);
        free(wx);
        free(m);
        return NULL;
    }
    bicubic_weights_1d(ih, oh, wy);
    bicubic_weights_1d(iw, ow, wx);
    size_t cols = (size_t)ih * (size_t)iw;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *row = m + ((size_t)oy * (size_t)ow + (size_t)ox) * cols;
            for (int iy = 0; iy < ih; iy++)
                for (int ix = 0; ix < iw; ix++)
                    row[(size_t)iy * (size_t)iw + (size_t)ix] =
                        (float)(wy[(size_t)oy * (size_t)ih + (size_t)iy] *
                                wx[(size_t)ox * (size_t)iw + (size_t)ix]);
        }
    free(wy);
    free(wx);
    return m;
}

/* ---- forward ---- */

/* pos_embed for a gh x gw grid: (1, 1 + gh*gw, D); the grid part is resampled bicubically
 * (resampled (gh*gw, D) = M (gh*gw, G*G) x grid (G*G, D)) and the class entry kept. */
static tensor *vit_pos_embed(pk_ctx *c, const vit *m, int64_t gh, int64_t gw) {
    int64_t G = m->cfg.img_size / m->cfg.patch, D = m->cfg.dim;
    if (gh == G && gw == G) return m->pos_embed;
    /* the matrix depends on the grid sizes only: made once per size, so a training step
     * uploads nothing (a full cache, or none, falls back to the step arena) */
    struct vit_pos_cache *pc = m->pos_cache;
    tensor *mat = NULL;
    for (int i = 0; pc && i < pc->n && !mat; i++)
        if (pc->gh[i] == gh && pc->gw[i] == gw) mat = pc->mat[i];
    if (!mat) {
        float *mh = vit_bicubic_matrix((int)G, (int)G, (int)gh, (int)gw);
        if (!mh) {
            pk_error(PK_ERR_NOMEM, "vit: out of host memory for the bicubic matrix");
            return NULL;
        }
        bool keep = pc && pc->n < VIT_POS_CACHE;
        mat = tensor_new(keep ? c->state : c->step, PK_F32, 2, (int64_t[]){gh * gw, G * G});
        pk_status s = mat ? tensor_upload(mat, mh) : PK_ERR_NOMEM;
        free(mh);
        if (s != PK_OK) return NULL;
        if (keep) pc->gh[pc->n] = gh, pc->gw[pc->n] = gw, pc->mat[pc->n++] = mat;
    }
    tensor *cls = pk_slice(c, m->pos_embed, 1, 0, 1); // (1, 1, D)
    tensor *grid =
        pk_reshape(c, pk_slice(c, m->pos_embed, 1, 1, G * G), 2, (int64_t[]){G * G, D}); // (G*G, D)
    tensor *res = pk_reshape(c, pk_matmul(c, mat, grid, false, false), 3,
                             (int64_t[]){1, gh * gw, D}); // (1, gh*gw, D)
    return pk_concat(c, (tensor *[]){cls, res}, 2, 1);    // (1, 1+gh*gw, D)
}

/* Multi-head self-attention of the qkv linear's output (N, T, 3D), laid out as timm's
 * reshape(N, T, 3, H, d): -> (N, T, D) before attn.proj. One fused op reads the heads straight
 * from qkv (no permute copies) and keeps no score matrix for the backward. */
static tensor *vit_attention(pk_ctx *c, tensor *qkv, int heads, float scale) {
    return pk_attention_qkv(c, qkv, heads, scale); // (N, T, 3D) -> (N, T, D)
}

static tensor *vit_block_forward(pk_ctx *c, const vit *m, int bi, tensor *x, const vit_hooks *k) {
    const vit_block *b = &m->blocks[bi];
    int heads = m->cfg.heads;
    float scale = 1.0f / sqrtf((float)(m->cfg.dim / heads));
    tensor *h = nn_layernorm_forward(c, &b->norm1, x); // (N, T, D)
    tensor *qkv = nn_linear_forward(c, &b->qkv, h);    // (N, T, 3D)
    if (k && k->qkv && qkv) qkv = k->qkv(c, k->user, bi, h, qkv);
    tensor *a = k && k->attention && qkv ? k->attention(c, k->user, bi, qkv, heads, scale)
                                         : vit_attention(c, qkv, heads, scale); // (N, T, D)
    a = nn_linear_forward(c, &b->proj, a);
    if (k && k->attn_out && a) a = k->attn_out(c, k->user, bi, h, a);
    x = pk_add(c, x, a);
    h = nn_layernorm_forward(c, &b->norm2, x);
    h = pk_gelu_erf(c, nn_linear_forward(c, &b->fc1, h)); // (N, T, hidden)
    return pk_add(c, x, nn_linear_forward(c, &b->fc2, h));
}

/* Patch embedding, class token and position embedding: x (N, C, H, W) -> (N, 1 + L, D), the
 * input of the first block. */
static tensor *vit_embed(pk_ctx *c, const vit *m, tensor *x) {
    if (!x) return NULL;
    const vit_config *cfg = &m->cfg;
    char sx[64];
    if (x->ndim != 4 || x->shape[1] != cfg->in_chans || x->shape[2] % cfg->patch ||
        x->shape[3] % cfg->patch || x->shape[2] < cfg->patch || x->shape[3] < cfg->patch) {
        pk_error(PK_ERR_INVALID,
                 "vit %s: input %s must be (N, %d, H, W) with H and W positive multiples of the "
                 "patch %d",
                 cfg->name, tensor_shape_str(x, sx, sizeof sx), cfg->in_chans, cfg->patch);
        return NULL;
    }
    int64_t N = x->shape[0], D = cfg->dim;
    int64_t gh = x->shape[2] / cfg->patch, gw = x->shape[3] / cfg->patch, L = gh * gw;
    tensor *p = nn_conv2d_forward(c, &m->patch_embed, x);                 // (N, D, gh, gw)
    p = pk_transpose(c, pk_reshape(c, p, 3, (int64_t[]){N, D, L}), 1, 2); // (N, L, D)
    tensor *pos = vit_pos_embed(c, m, gh, gw);                            // (1, 1 + L, D)
    /* timm: cat(cls_token.expand(N), p) + pos_embed; the class row's sum cls + pos[0] is the
     * same number, computed once and broadcast to the batch by adding zeros (exact) */
    tensor *cls = pk_add(c, m->cls_token, pk_slice(c, pos, 1, 0, 1)); // (1, 1, D)
    tensor *zeros = tensor_new(c->step, PK_F32, 3, (int64_t[]){N, 1, D});
    if (!zeros || pk_fill(c, zeros, 0.0f) != PK_OK) return NULL;
    cls = pk_add(c, zeros, cls);                     // (N, 1, D)
    p = pk_add(c, p, pk_slice(c, pos, 1, 1, L));     // (N, L, D)
    return pk_concat(c, (tensor *[]){cls, p}, 2, 1); // (N, 1 + L, D)
}

tensor *vit_forward_tokens(pk_ctx *c, const vit *m, tensor *x) {
    return vit_forward_tokens_hooked(c, m, x, NULL);
}

tensor *vit_forward_tokens_hooked(pk_ctx *c, const vit *m, tensor *x, const vit_hooks *hooks) {
    tensor *t = vit_embed(c, m, x); // (N, 1 + L, D)
    for (int i = 0; t && i < m->cfg.depth; i++)
        t = vit_block_forward(c, m, i, t, hooks);
    return nn_layernorm_forward(c, &m->norm, t);
}

pk_status vit_forward_intermediate(pk_ctx *c, const vit *m, tensor *x, int n, tensor **out) {
    if (n < 1 || n > m->cfg.depth)
        return pk_error(PK_ERR_INVALID, "vit %s: %d last blocks requested of %d", m->cfg.name, n,
                        m->cfg.depth);
    tensor *t = vit_embed(c, m, x); // (N, 1 + L, D)
    if (!t) return PK_ERR_INVALID;
    for (int i = 0; i < m->cfg.depth; i++) {
        t = vit_block_forward(c, m, i, t, NULL);
        if (!t) return PK_ERR_INVALID;
        if (m->cfg.depth - i <= n) {
            out[n - (m->cfg.depth - i)] = nn_layernorm_forward(c, &m->norm, t);
            if (!out[n - (m->cfg.depth - i)]) return PK_ERR_INVALID;
        }
    }
    return PK_OK;
}

tensor *vit_forward_probe_features(pk_ctx *c, const vit *m, tensor *x, int n, bool avgpool) {
    tensor *outs[VIT_MAX_PROBE_BLOCKS + 1];
    if (n < 1 || n > VIT_MAX_PROBE_BLOCKS) {
        pk_error(PK_ERR_INVALID, "vit %s: %d probe blocks (expected 1 to %d)", m->cfg.name, n,
                 VIT_MAX_PROBE_BLOCKS);
        return NULL;
    }
    if (vit_forward_intermediate(c, m, x, n, outs) != PK_OK) return NULL;
    int64_t N = outs[0]->shape[0], T = outs[0]->shape[1], D = m->cfg.dim;
    tensor *parts[VIT_MAX_PROBE_BLOCKS + 1];
    for (int i = 0; i < n; i++)
        parts[i] = pk_reshape(c, pk_slice(c, outs[i], 1, 0, 1), 2, (int64_t[]){N, D}); // (N, D)
    int np = n;
    if (avgpool) {
        if (T < 2) {
            pk_error(PK_ERR_INVALID, "vit %s: no patch tokens to average", m->cfg.name);
            return NULL;
        }
        parts[np++] = pk_mean(c, pk_slice(c, outs[n - 1], 1, 1, T - 1), 1, false); // (N, D)
    }
    return np == 1 ? parts[0] : pk_concat(c, parts, np, 1); // (N, np D)
}

tensor *vit_forward_features(pk_ctx *c, const vit *m, tensor *x) {
    return vit_forward_features_hooked(c, m, x, NULL);
}

tensor *vit_forward_features_hooked(pk_ctx *c, const vit *m, tensor *x, const vit_hooks *hooks) {
    tensor *t = vit_forward_tokens_hooked(c, m, x, hooks); // (N, 1 + L, D)
    if (!t) return NULL;
    return pk_reshape(c, pk_slice(c, t, 1, 0, 1), 2, (int64_t[]){t->shape[0], m->cfg.dim});
}

tensor *vit_forward(pk_ctx *c, const vit *m, tensor *x) {
    tensor *f = vit_forward_features(c, m, x); // (N, D)
    if (m->cfg.num_classes > 0) return nn_linear_forward(c, &m->head, f);
    return f;
}
