/* pet.h - parameter-efficient tuning (PET) modules on a frozen ViT, as LAE writes them
 * (gqk/LAE libml/model/pet/{adapter,lora,prefix}.py):
 *  - Adapter: parallel to the attention, fed norm1's output h: the block adds
 *    s * up(gelu_erf(down(h))) to attn.proj's output; down (r, D) kaiming-uniform(a = sqrt 5),
 *    zero biases, up (D, r) zero-initialised (so a new adapter changes nothing).
 *  - LoRA: rank r on the key and value parts of attn.qkv: qkv(h) + [0, s_k h A_k^T B_k^T,
 *    s_v h A_v^T B_v^T]; A (r, D) kaiming-uniform, B (D, r) zero.
 *  - Prefix: L key and L value tokens (uniform [0, 0.01)) times learnable scales, joined to the
 *    block's own keys and values; after the softmax over all keys the prefix tokens' attention
 *    is divided by its own sum (LAE's compensation, the attention-mass renormalisation).
 * Every PET output is scaled by learnable calibration factors starting at 1 (LAE's Scaler).
 *
 * Owns: the PET parameters (allocated one after another, so an optimiser or an EMA teacher
 * over them is one fused run) and the vit_hooks that apply them. Leaves to others: the
 * backbone (framework/nn/vit.h), training and the offline copies (tasks/lae/lae.h). */
#ifndef POLYAK_PET_H
#define POLYAK_PET_H
#include "nn/vit.h"
#include "rng.h"

typedef enum pet_kind { PET_ADAPTER, PET_LORA, PET_PREFIX } pet_kind;

/* "adapter", "lora", "prefix". */
const char *pet_kind_name(pet_kind k);

/* Parses a kind name; false when unknown. */
bool pet_kind_parse(const char *s, pet_kind *k);

typedef struct pet_options {
    pet_kind kind;
    int blocks; /* PETs on blocks [0, blocks) (0: min(5, depth), LAE's first five) */
    int rank;   /* adapter hidden width and LoRA rank (0: 5) */
    int length; /* prefix tokens per key and per value (0: 10) */
} pet_options;

/* The tensors of one block's PET (those of its kind; the others NULL). */
typedef struct pet_block {
    tensor *down_w, *down_b, *up_w, *up_b, *scale;     /* adapter (r, D) (r) (D, r) (D) (1) */
    tensor *a_k, *b_k, *a_v, *b_v, *scale_k, *scale_v; /* lora (r, D) (D, r) x2, (1) (1) */
    tensor *key, *val, *key_scale, *val_scale;         /* prefix (L, D) (L, D) (1) (1) */
} pet_block;

typedef struct pet {
    pet_options o; /* with defaults filled in */
    int dim, heads;
    pet_block *b;    /* o.blocks */
    tensor **params; /* every PET tensor, in allocation order */
    int nparams;
    vit_hooks hooks; /* hand to vit_forward_*_hooked */
} pet;

/* Creates PETs for blocks [0, o->blocks) of a ViT with configuration cfg, named
 * "<prefix>blocks.<i>.<kind>.<tensor>", initialised from rng as LAE does. */
pk_status pet_create(pk_ctx *c, const vit_config *cfg, const pet_options *o, const char *prefix,
                     pk_rng *rng, pet **out);

/* Frees the bookkeeping (tensors stay in the context's arenas); accepts NULL. */
void pet_destroy(pet *p);

/* Sets requires_grad of every PET tensor (false: frozen, no gradient is computed for them). */
void pet_set_trainable(pet *p, bool on);

/* Prefix attention with LAE's compensation, exposed for tests: qkv (N, T, 3D) as timm lays it
 * out, key/val (L, D) already scaled -> (N, T, D). */
tensor *pet_prefix_attention(pk_ctx *c, tensor *qkv, tensor *key, tensor *val, int heads,
                             float scale);

#endif
