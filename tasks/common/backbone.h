/* backbone.h - ViT backbones in files: timm-layout safetensors in (timm's own
 * model.safetensors, F32/F16/BF16, pos_embed resampled for another grid) and Polyak's own
 * backbones out (timm names, F32, a __metadata__ that names the configuration so timm loads
 * the weights and Polyak needs no --arch to read them back).
 *
 * Owns: the name/shape check between a checkpoint and a vit, the metadata keys, config
 * discovery (metadata, or inference from shapes). Leaves the model to framework/nn/vit.h and
 * the file format to io/safetensors.h. */
#ifndef POLYAK_BACKBONE_H
#define POLYAK_BACKBONE_H
#include <stdbool.h>

#include "nn/vit.h"

/* Loads the timm-named tensors of `path` into m's parameters (m's own name prefix, if any, is
 * not part of the file's names). Every parameter must be present with m's shape, and every
 * tensor of the file must be a parameter of m; otherwise the error names each offending tensor
 * (missing, unexpected, or misshaped with expected and found shapes) and nothing is loaded.
 * A name that starts with one of the `skip` prefixes (nskip of them, e.g. "head.") is exempt:
 * its parameter keeps its value when missing or misshaped, and its file tensor is ignored.
 * pos_embed laid out for another square grid (1 + G0*G0 tokens) is resampled to m's grid as
 * timm's resample_abs_pos_embed does when it loads a checkpoint for another image size (timm
 * >= 0.9: F.interpolate(bicubic, antialias=True), PIL's cubic with a = -0.5, class row kept),
 * so the model equals timm.create_model(name, pretrained=True, img_size=S). (The forward's own
 * resampling for inputs of another size is vit.h's plain bicubic, A = -0.75, as DINO's
 * interpolate_pos_encoding.) F32, F16 and BF16 tensors are read. */
pk_status backbone_load(pk_ctx *c, vit *m, const char *path, const char *const *skip, int nskip);

/* Preprocessing a backbone was trained with (written by Polyak into the metadata). */
typedef struct backbone_norm {
    bool present;          /* mean/std were in the metadata */
    float mean[3], std[3]; /* per channel (in_chans of them used) */
    float crop_pct;        /* evaluation centre-crop fraction; 0: not recorded */
} backbone_norm;

/* Writes m's parameters (F32, timm names, state_dict order) atomically to `path`, with
 * __metadata__ {format: pt, arch, img_size, patch, in_chans, embed_dim, depth, num_heads,
 * mlp_hidden, num_classes, ln_eps} and, when norm->present, mean and std ("m1,m2,m3") and
 * crop_pct (when > 0). */
pk_status backbone_save(const vit *m, const char *path, const backbone_norm *norm);

/* The configuration of a backbone file: `arch` when given (a vit_config_by_name name), else
 * the metadata Polyak writes (arch and the numeric fields, which override the named ones);
 * in_chans, img_size and num_classes from the file's shapes always win over the name's (a
 * grayscale or resized backbone still loads under its timm name). An error says to pass
 * --arch when the file names no configuration. `norm` (may be NULL) gets
 * mean/std/crop_pct where present. */
pk_status backbone_config(const char *path, const char *arch, vit_config *cfg, backbone_norm *norm);

/* Infers a configuration from the tensor shapes alone (timm files without metadata): patch,
 * in_chans, dim, depth, mlp_hidden, img_size (from pos_embed's square grid), num_classes;
 * heads = dim / 64 (timm's head width for every vit_*_patch16 model). */
pk_status backbone_infer_config(const char *path, vit_config *cfg);

#endif
