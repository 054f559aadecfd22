/* backbone_features.h - frozen-backbone features of a data set: timm's default evaluation
 * preprocessing (resize the shorter side to floor(size / crop_pct) with antialiased bicubic, centre
 * crop, mean/std), then the final-norm class token of a vit for every image (or DINO
 * eval_linear's feature: the class tokens of the last n blocks, optionally with the mean patch
 * token), in batches. `polyak features`, k-NN and linear-probe evaluation share it. */
#ifndef POLYAK_BACKBONE_FEATURES_H
#define POLYAK_BACKBONE_FEATURES_H
#include "dataset.h"
#include "nn/vit.h"

typedef struct features_options {
    int image_size; /* side of the centre crop fed to the backbone (0: its img_size) */
    float crop_pct; /* resize the shorter side to floor(image_size / crop_pct) first; (0, 1] */
    float mean[3], std[3]; /* per backbone channel, applied to pixels in [0, 1] */
    int batch;             /* images per forward (0: 64) */
    int blocks;   /* class tokens of the last `blocks` blocks (0: 1, the final class token) */
    bool avgpool; /* append the mean of the last block's patch tokens (DINO's ViT-B probe) */
    /* called after each batch with images done and the total (may be NULL) */
    void (*progress)(void *user, int done, int total);
    void *user;
} features_options;

/* Resizes one channel plane src (h, w) to dst (oh, ow) exactly as PyTorch's
 * F.interpolate(mode='bicubic', antialias=True, align_corners=False) (PIL's filter: a = -0.5,
 * widened by the scale when shrinking, weights normalised); tmp holds h * ow floats. */
void features_resize(const float *src, int h, int w, int oh, int ow, float *tmp, float *dst);

/* Preprocesses image i of ds into out (in_chans, S, S), S = o->image_size: pixels / 255,
 * shorter side resized to floor(S / crop_pct) (skipped when already that size), centre crop
 * (torchvision's rounding), 1 channel replicated for a 3-channel backbone or 3 reduced to
 * luma (0.299, 0.587, 0.114) for a 1-channel one, then (x - mean) / std. */
pk_status features_preprocess(const pk_dataset *ds, int i, const features_options *o, int in_chans,
                              float *out);

/* Columns of a feature row for a backbone of width dim: (blocks + avgpool) * dim. The final-norm
 * class token of the last block is columns [(blocks - 1) dim, blocks dim). */
int features_dim(const features_options *o, int dim);

/* The (n, features_dim) features of ds's images (all of them) into out (host): the final-norm
 * class tokens of the last o->blocks blocks in block order (vit_forward_probe_features), then
 * the mean patch token with o->avgpool; run without gradients in evaluation mode, o->batch
 * images per forward. */
pk_status features_extract(pk_ctx *c, const vit *m, const pk_dataset *ds, const features_options *o,
                           float *out);

#endif
