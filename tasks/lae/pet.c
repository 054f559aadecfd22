/* pet.c - LAE's Adapter, LoRA and Prefix modules and the ViT hooks that apply them. */
#include "pet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "ops/ops.h"

const char *pet_kind_name(pet_kind k) {
    return k == PET_ADAPTER ? "adapter" : k == PET_LORA ? "lora" : "prefix";
}

bool pet_kind_parse(const char *s, pet_kind *k) {
    if (strcmp(s, "adapter") == 0)
        *k = PET_ADAPTER;
    else if (strcmp(s, "lora") == 0)
        *k = PET_LORA;
    else if (strcmp(s, "prefix") == 0)
        *k = PET_PREFIX;
    else
        return false;
    return true;
}

/* A (1,)-broadcast scale times x. */
static tensor *scaled(pk_ctx *c, tensor *x, tensor *s) { return pk_mul(c, x, s); }

static tensor *zeros(pk_ctx *c, int ndim, const int64_t *shape) {
    tensor *z = tensor_new(c->step, PK_F32, ndim, shape);
    if (!z || pk_fill(c, z, 0.0f) != PK_OK) return NULL;
    return z;
}

/* Adapter: a + s * up(gelu(down(h))). */
static tensor *hook_attn_out(pk_ctx *c, void *user, int block, tensor *h, tensor *a) {
    pet *p = user;
    if (block >= p->o.blocks || p->o.kind != PET_ADAPTER) return a;
    const pet_block *b = &p->b[block];
    tensor *z = pk_gelu_erf(c, pk_linear(c, h, b->down_w, b->down_b)); // (N, T, r)
    z = pk_linear(c, z, b->up_w, b->up_b);                             // (N, T, D)
    return pk_add(c, a, scaled(c, z, b->scale));
}

/* LoRA: qkv + [0, s_k h A_k^T B_k^T, s_v h A_v^T B_v^T]. */
static tensor *hook_qkv(pk_ctx *c, void *user, int block, tensor *h, tensor *qkv) {
    pet *p = user;
    if (block >= p->o.blocks || p->o.kind != PET_LORA) return qkv;
    const pet_block *b = &p->b[block];
    tensor *dk = pk_linear(c, pk_linear(c, h, b->a_k, NULL), b->b_k, NULL); // (N, T, D)
    tensor *dv = pk_linear(c, pk_linear(c, h, b->a_v, NULL), b->b_v, NULL); // (N, T, D)
    if (!dk || !dv) return NULL;
    tensor *z = zeros(c, 3, (int64_t[]){h->shape[0], h->shape[1], p->dim});
    tensor *d = pk_concat(c, (tensor *[]){z, scaled(c, dk, b->scale_k), scaled(c, dv, b->scale_v)},
                          3, 2); // (N, T, 3D)
    return pk_add(c, qkv, d);
}

/* (N, S, H*d) -> (N*H, S, d) */
static tensor *split_heads(pk_ctx *c, tensor *x, int64_t n, int64_t s, int heads, int64_t d) {
    x = pk_reshape(c, x, 4, (int64_t[]){n, s, heads, d});
    x = pk_permute(c, x, (int[]){0, 2, 1, 3});
    return pk_reshape(c, x, 3, (int64_t[]){n * heads, s, d});
}

tensor *pet_prefix_attention(pk_ctx *c, tensor *qkv, tensor *key, tensor *val, int heads,
                             float scale) {
    if (!qkv || !key || !val) return NULL;
    int64_t n = qkv->shape[0], t = qkv->shape[1], D = qkv->shape[2] / 3, L = key->shape[0];
    int64_t d = D / heads;
    tensor *q = split_heads(c, pk_slice(c, qkv, 2, 0, D), n, t, heads, d);     // (NH, T, d)
    tensor *k = split_heads(c, pk_slice(c, qkv, 2, D, D), n, t, heads, d);     // (NH, T, d)
    tensor *v = split_heads(c, pk_slice(c, qkv, 2, 2 * D, D), n, t, heads, d); // (NH, T, d)
    tensor *z = zeros(c, 3, (int64_t[]){n, L, D});
    tensor *pk = pk_add(c, z, pk_reshape(c, key, 3, (int64_t[]){1, L, D})); // (N, L, D)
    tensor *pv = pk_add(c, z, pk_reshape(c, val, 3, (int64_t[]){1, L, D}));
    pk = split_heads(c, pk, n, L, heads, d); // (NH, L, d)
    pv = split_heads(c, pv, n, L, heads, d);
    tensor *kall = pk_concat(c, (tensor *[]){k, pk}, 2, 1); // (NH, T+L, d)
    tensor *a = pk_softmax(c, pk_scale(c, pk_matmul(c, q, kall, false, true), scale), 2);
    tensor *as = pk_slice(c, a, 2, 0, t); // (NH, T, T)
    tensor *ap = pk_slice(c, a, 2, t, L); // (NH, T, L)
    /* LAE's compensation: the prefix tokens' attention renormalised to sum to 1 (their sum is
     * a softmax mass, never 0, so LAE's clamp(min=1e-12) never acts) */
    ap = pk_div(c, ap, pk_sum(c, ap, 2, true));
    tensor *o = pk_add(c, pk_matmul(c, as, v, false, false), pk_matmul(c, ap, pv, false, false));
    o = pk_permute(c, pk_reshape(c, o, 4, (int64_t[]){n, heads, t, d}), (int[]){0, 2, 1, 3});
    return pk_reshape(c, o, 3, (int64_t[]){n, t, D}); // (N, T, D)
}

static tensor *hook_attention(pk_ctx *c, void *user, int block, tensor *qkv, int heads,
                              float scale) {
    pet *p = user;
    if (block >= p->o.blocks || p->o.kind != PET_PREFIX)
        return pk_attention_qkv(c, qkv, heads, scale);
    const pet_block *b = &p->b[block];
    return pet_prefix_attention(c, qkv, scaled(c, b->key, b->key_scale),
                                scaled(c, b->val, b->val_scale), heads, scale);
}

static tensor *param(pk_ctx *c, pet *p, const char *prefix, int blk, const char *what, int ndim,
                     const int64_t *shape) {
    char nm[160];
    snprintf(nm, sizeof nm, "%sblocks.%d.%s.%s", prefix, blk, pet_kind_name(p->o.kind), what);
    tensor *t = pk_param_new(c, pk_ctx_name(c, nm, ""), ndim, shape);
    if (t) p->params[p->nparams++] = t;
    return t;
}

/* kaiming_uniform_(a = sqrt 5) of a (rows, fan_in) weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static pk_status fill_uniform(tensor *t, pk_rng *rng, double lo, double hi) {
    int64_t n = tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return pk_error(PK_ERR_NOMEM, "pet: out of host memory");
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * pk_rng_uniform(rng));
    pk_status s = tensor_upload(t, v);
    free(v);
    return s;
}

pk_status pet_create(pk_ctx *c, const vit_config *cfg, const pet_options *opt, const char *prefix,
                     pk_rng *rng, pet **out) {
    *out = NULL;
    pet_options o = *opt;
    if (o.blocks <= 0) o.blocks = cfg->depth < 5 ? cfg->depth : 5;
    if (o.rank <= 0) o.rank = 5;
    if (o.length <= 0) o.length = 10;
    if (o.blocks > cfg->depth)
        return pk_error(PK_ERR_INVALID, "pet: --pet-blocks %d exceeds the ViT's depth %d", o.blocks,
                        cfg->depth);
    pet *p = calloc(1, sizeof *p);
    if (!p) return pk_error(PK_ERR_NOMEM, "pet: out of host memory");
    p->o = o, p->dim = cfg->dim, p->heads = cfg->heads;
    p->b = calloc((size_t)o.blocks, sizeof *p->b);
    p->params = calloc((size_t)o.blocks * 6, sizeof *p->params);
    if (!p->b || !p->params) {
        pet_destroy(p);
        return pk_error(PK_ERR_NOMEM, "pet: out of host memory");
    }
    const char *pre = prefix ? prefix : "";
    int64_t D = cfg->dim, r = o.rank, L = o.length;
    double bound = 1.0 / sqrt((double)D);
    pk_status s = PK_OK;
    for (int i = 0; i < o.blocks && s == PK_OK; i++) {
        pet_block *b = &p->b[i];
        if (o.kind == PET_ADAPTER) {
            b->down_w = param(c, p, pre, i, "down.weight", 2, (int64_t[]){r, D});
            b->down_b = param(c, p, pre, i, "down.bias", 1, (int64_t[]){r});
            b->up_w = param(c, p, pre, i, "up.weight", 2, (int64_t[]){D, r});
            b->up_b = param(c, p, pre, i, "up.bias", 1, (int64_t[]){D});
            b->scale = param(c, p, pre, i, "scale", 1, (int64_t[]){1});
            if (!b->down_w || !b->down_b || !b->up_w || !b->up_b || !b->scale) s = PK_ERR_NOMEM;
            if (s == PK_OK) s = fill_uniform(b->down_w, rng, -bound, bound);
            if (s == PK_OK) s = tensor_fill(b->down_b, 0.0f);
            if (s == PK_OK) s = tensor_fill(b->up_w, 0.0f);
            if (s == PK_OK) s = tensor_fill(b->up_b, 0.0f);
            if (s == PK_OK) s = tensor_fill(b->scale, 1.0f);
        } else if (o.kind == PET_LORA) {
            b->a_k = param(c, p, pre, i, "k.A", 2, (int64_t[]){r, D});
            b->b_k = param(c, p, pre, i, "k.B", 2, (int64_t[]){D, r});
            b->a_v = param(c, p, pre, i, "v.A", 2, (int64_t[]){r, D});
            b->b_v = param(c, p, pre, i, "v.B", 2, (int64_t[]){D, r});
            b->scale_k = param(c, p, pre, i, "k.scale", 1, (int64_t[]){1});
            b->scale_v = param(c, p, pre, i, "v.scale", 1, (int64_t[]){1});
            if (!b->a_k || !b->b_k || !b->a_v || !b->b_v || !b->scale_k || !b->scale_v)
                s = PK_ERR_NOMEM;
            if (s == PK_OK) s = fill_uniform(b->a_k, rng, -bound, bound);
            if (s == PK_OK) s = tensor_fill(b->b_k, 0.0f);
            if (s == PK_OK) s = fill_uniform(b->a_v, rng, -bound, bound);
            if (s == PK_OK) s = tensor_fill(b->b_v, 0.0f);
            if (s == PK_OK) s = tensor_fill(b->scale_k, 1.0f);
            if (s == PK_OK) s = tensor_fill(b->scale_v, 1.0f);
        } else {
            b->key = param(c, p, pre, i, "key", 2, (int64_t[]){L, D});
            b->val = param(c, p, pre, i, "val", 2, (int64_t[]){L, D});
            b->key_scale = param(c, p, pre, i, "key.scale", 1, (int64_t[]){1});
            b->val_scale = param(c, p, pre, i, "val.scale", 1, (int64_t[]){1});
            if (!b->key || !b->val || !b->key_scale || !b->val_scale) s = PK_ERR_NOMEM;
            if (s == PK_OK) s = fill_uniform(b->key, rng, 0.0, 0.01);
            if (s == PK_OK) s = fill_uniform(b->val, rng, 0.0, 0.01);
            if (s == PK_OK) s = tensor_fill(b->key_scale, 1.0f);
            if (s == PK_OK) s = tensor_fill(b->val_scale, 1.0f);
        }
    }
    if (s != PK_OK) {
        pet_destroy(p);
        return s == PK_ERR_NOMEM ? pk_error(s, "pet: out of memory for the PET parameters") : s;
    }
    p->hooks = (vit_hooks){.user = p,
                           .qkv = o.kind == PET_LORA ? hook_qkv : NULL,
                           .attention = o.kind == PET_PREFIX ? hook_attention : NULL,
                           .attn_out = o.kind == PET_ADAPTER ? hook_attn_out : NULL};
    *out = p;
    return PK_OK;
}

void pet_destroy(pet *p) {
    if (!p) return;
    free(p->b);
    free(p->params);
    free(p);
}

void pet_set_trainable(pet *p, bool on) {
    for (int i = 0; i < p->nparams; i++)
        p->params[i]->requires_grad = on;
}
