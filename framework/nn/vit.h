/* vit.h - the Vision Transformer exactly as timm's VisionTransformer writes it, so timm
 * checkpoints load unchanged and Polyak's own backbones load in timm.
 *
 * x (N, C, H, W) -> patch_embed.proj (conv, kernel = stride = patch) -> (N, L, D) tokens;
 * prepend cls_token (1, 1, D); add pos_embed (1, 1 + G*G, D), its grid part resampled
 * bicubically (F.interpolate(size=grid, align_corners=False), A = -0.75: timm <= 0.6's
 * resize_pos_embed; DINO's interpolate_pos_encoding uses the same filter with scale_factor
 * (g + 0.1) / G; timm >= 0.9 antialiases, which tasks/common/backbone.c follows when it loads
 * a checkpoint for another grid) when the input's patch grid is not the configured one; `depth`
 * pre-norm blocks: x += attn.proj(attention(attn.qkv(norm1(x)))), x += mlp.fc2(gelu_erf(
 * mlp.fc1(norm2(x)))); final norm; optional head on the class token. LayerNorm eps 1e-6.
 * Parameter names are timm's (`patch_embed.proj.weight`, `cls_token`, `pos_embed`,
 * `blocks.N.norm1.weight`, `blocks.N.attn.qkv.weight`, `blocks.N.mlp.fc1.weight`, `norm.weight`,
 * `head.weight`, ...), under an optional prefix.
 *
 * Owns: configurations by timm name, parameter creation with timm's initialisation, the
 * forward. Leaves to others: reading/writing checkpoint files (tasks/common/backbone.h, since
 * framework/ never touches file formats), training loops. */
#ifndef POLYAK_VIT_H
#define POLYAK_VIT_H
#include "nn/nn.h"

/* A ViT configuration; the named ones are timm's (see vit_config_by_name). */
typedef struct vit_config {
    char name[48];   /* timm model name */
    int img_size;    /* the size pos_embed is laid out for */
    int patch;       /* patch size (kernel and stride of patch_embed.proj) */
    int in_chans;    /* 3 for timm's models; 1 for grayscale data */
    int dim;         /* embedding dimension D */
    int depth;       /* number of blocks */
    int heads;       /* attention heads (D divisible by heads) */
    int mlp_hidden;  /* hidden width of the MLP (timm: 4 D) */
    int num_classes; /* head outputs; 0: no head (features only) */
    float ln_eps;    /* 1e-6 */
} vit_config;

/* Fills cfg with the timm configuration `name` (vit_tiny_patch16_224, vit_small_patch16_224,
 * vit_base_patch16_224, and the small-image ones listed by vit_config_names); in_chans 3,
 * num_classes 0. An unknown name is an error listing the known ones. */
pk_status vit_config_by_name(const char *name, vit_config *cfg);

/* A comma-separated list of the known configuration names. */
const char *vit_config_names(void);

typedef struct nn_layernorm {
    tensor *weight, *bias; /* (D) */
    float eps;
} nn_layernorm;

typedef struct vit_block {
    nn_layernorm norm1, norm2;
    nn_linear qkv;  /* D -> 3D, bias */
    nn_linear proj; /* D -> D */
    nn_linear fc1;  /* D -> hidden */
    nn_linear fc2;  /* hidden -> D */
} vit_block;

typedef struct vit {
    vit_config cfg;
    nn_conv2d patch_embed; /* (D, C, P, P), bias */
    tensor *cls_token;     /* (1, 1, D) */
    tensor *pos_embed;     /* (1, 1 + G*G, D), G = img_size / patch */
    vit_block *blocks;     /* depth */
    nn_layernorm norm;
    nn_linear head; /* num_classes > 0 only */
    /* the bicubic pos_embed resampling matrices of other grid sizes (DINO's local crops),
     * made and uploaded once into the context's state arena at first use; owned by the
     * module vit_create made (struct copies, CTP's views, share it) */
    struct vit_pos_cache *pos_cache;
} vit;

/* Creates the parameters of a ViT named `prefix`.<timm name> ("" for none) with timm's
 * initialisation: trunc_normal(std .02) for pos_embed, linear weights and the head
 * (timm 'jax'-free default), cls_token normal(std 1e-6), zero biases, LayerNorm (1, 0), patch
 * embedding as PyTorch's Conv2d default. */
pk_status vit_create(pk_ctx *c, const vit_config *cfg, const char *prefix, pk_rng *rng, vit **out);

/* Frees the module's bookkeeping (parameters stay in the context's arena); accepts NULL. */
void vit_destroy(vit *m);

/* All parameter tensors in timm's state_dict order; *n is their count. The array is owned by
 * the module. */
tensor *const *vit_params(const vit *m, int *n);

/* Tokens after the final norm: x (N, C, H, W), H and W multiples of the patch -> (N, 1 + L, D). */
tensor *vit_forward_tokens(pk_ctx *c, const vit *m, tensor *x);

/* Optional per-block hooks of the forward, for parameter-efficient tuning modules (LoRA,
 * Prefix, Adapter: tasks/lae) that change a block without owning it. Each hook gets the block
 * index and `user`; a NULL hook leaves that part of the block as it is. A hook returns NULL
 * only on failure (with pk_error set). */
typedef struct vit_hooks {
    void *user;
    /* the attention's projection of block b: h = norm1(x) (N, T, D), qkv = attn.qkv(h)
     * (N, T, 3D) -> the qkv the attention uses (N, T, 3D) */
    tensor *(*qkv)(pk_ctx *c, void *user, int block, tensor *h, tensor *qkv);
    /* replaces the attention of block b: qkv (N, T, 3D) -> (N, T, D) before attn.proj (the
     * default is pk_attention_qkv(qkv, heads, scale)) */
    tensor *(*attention)(pk_ctx *c, void *user, int block, tensor *qkv, int heads, float scale);
    /* the attention branch of block b: h = norm1(x) (N, T, D), a = attn.proj(...) (N, T, D)
     * -> what is added to the residual stream (N, T, D) */
    tensor *(*attn_out)(pk_ctx *c, void *user, int block, tensor *h, tensor *a);
} vit_hooks;

/* vit_forward_tokens with hooks (NULL: none, the same as vit_forward_tokens). */
tensor *vit_forward_tokens_hooked(pk_ctx *c, const vit *m, tensor *x, const vit_hooks *hooks);

/* vit_forward_features with hooks: the final-norm class token (N, D). */
tensor *vit_forward_features_hooked(pk_ctx *c, const vit *m, tensor *x, const vit_hooks *hooks);

/* The final-norm class token: (N, D). */
tensor *vit_forward_features(pk_ctx *c, const vit *m, tensor *x);

/* Most blocks vit_forward_probe_features takes. */
#define VIT_MAX_PROBE_BLOCKS 64

/* DINO's get_intermediate_layers: the tokens after each of the last n blocks, each through
 * the final norm, into out[0..n) in block order (out[n - 1] is vit_forward_tokens'):
 * (N, 1 + L, D) each. 1 <= n <= depth. */
pk_status vit_forward_intermediate(pk_ctx *c, const vit *m, tensor *x, int n, tensor **out);

/* DINO eval_linear's feature: the class tokens of the last n blocks (final norm applied),
 * concatenated in block order, then with avgpool the mean of the last block's patch tokens:
 * (N, n D + (avgpool ? D : 0)). DINO interleaves (class, mean) per dimension for n = 1; this
 * is the same numbers in another column order. n = 1 without avgpool: vit_forward_features. */
tensor *vit_forward_probe_features(pk_ctx *c, const vit *m, tensor *x, int n, bool avgpool);

/* head(features) when the model has a head, else the features. */
tensor *vit_forward(pk_ctx *c, const vit *m, tensor *x);

/* Layer normalisation module over the last axis (weight 1, bias 0), named prefix.weight/bias. */
pk_status nn_layernorm_init(pk_ctx *c, const char *prefix, int64_t d, float eps, nn_layernorm *l);

/* y = layernorm(x) over the last axis. */
tensor *nn_layernorm_forward(pk_ctx *c, const nn_layernorm *l, tensor *x);

/* The (oh*ow, ih*iw) matrix that resamples a row-major ih x iw grid to oh x ow by bicubic
 * interpolation exactly as PyTorch's F.interpolate(mode='bicubic', align_corners=False)
 * (A = -0.75, clamped borders); host memory the caller frees. */
float *vit_bicubic_matrix(int ih, int iw, int oh, int ow);

#endif
