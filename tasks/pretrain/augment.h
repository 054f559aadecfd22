/* augment.h - DINO's multi-crop augmentation (main_dino.py DataAugmentationDINO) on host
 * threads, deterministic given a seed: the views of sample i in a batch depend only on
 * (seed, i), never on the thread that made them, so a resumed run sees the same pixels.
 *
 * Per crop, in DINO's order: RandomResizedCrop(size, scale, ratio (3/4, 4/3)) with
 * torchvision's parameter draw and PIL's bicubic resampling (a = -0.5, support widened when
 * shrinking, as Image.resize(BICUBIC) does; computed in float and clamped to [0, 1] instead of
 * rounded to uint8); horizontal flip p 0.5; ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, its
 * four adjustments in a random order as torchvision applies them; RandomGrayscale p 0.2;
 * Gaussian blur (p 1.0 on the first global crop, 0.1 on the second, 0.5 on local crops, sigma
 * uniform in blur_sigma, a sampled Gaussian kernel of radius ceil(3 sigma) with edge
 * replication instead of PIL's box-blur approximation); solarisation (p 0.2, second global
 * crop only: v >= 128/255 -> 1 - v, PIL's threshold 128); then (v - mean) / std.
 * On 1-channel images saturation, hue and grayscale are identities and are skipped;
 * brightness scales v by a factor in [0.6, 1.4], contrast blends v with the image's mean
 * by a factor in [0.6, 1.4] (torchvision's adjust_contrast), both clamped to [0, 1].
 *
 * Owns: the crops and photometric transforms. Leaves to the caller: batches' order, the
 * model. */
#ifndef POLYAK_AUGMENT_H
#define POLYAK_AUGMENT_H
#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
#include "rng.h"

typedef struct pk_pool pk_pool;

/* What the augmentation does; aug_config_default fills it from the data and crop sizes. */
typedef struct aug_config {
    int channels;                    /* 1 or 3 */
    int global_size, local_size;     /* crop sizes in pixels */
    int nlocal;                      /* local crops per image */
    double global_scale[2];          /* RandomResizedCrop area scale of the global crops (0.4, 1) */
    double local_scale[2];           /* (0.05, 0.4) */
    double blur_sigma[2];            /* pixels of the crop; DINO: (0.1, 2) at 224 */
    double blur_p[3];                /* first global, second global, local: 1.0, 0.1, 0.5 */
    double solarize_p;               /* second global crop: 0.2 */
    double flip_p, jitter_p, gray_p; /* 0.5, 0.8, 0.2 */
    float mean[3], std[3];           /* normalisation */
} aug_config;

/* DINO's augmentation for images of `channels` channels: crop sizes as given, scales and
 * probabilities of the paper, blur sigma (0.1, 2) scaled by global_size / 224, mean = std =
 * 0.5 per channel (timm's augreg default, which `polyak features` uses too). */
aug_config aug_config_default(int channels, int global_size, int local_size, int nlocal);

/* torchvision RandomResizedCrop.get_params on an h x w image: the box (top, left, ch, cw). */
void aug_rrc_params(pk_rng *rng, int h, int w, const double scale[2], int box[4]);

/* Resamples the box (top, left, bh, bw) of a planar (C, H, W) float image to (C, S, S) with
 * PIL's bicubic filter; tmp holds C * bh * S floats. */
void aug_resize_box(const float *src, int c, int h, int w, const int box[4], int s, float *dst,
                    float *tmp);

/* PIL's resampling filters that aug_resize_box_filter offers. */
typedef enum aug_filter { AUG_BICUBIC, AUG_BILINEAR } aug_filter;

/* aug_resize_box with PIL's bicubic (clamped to [0, 1]) or bilinear (unclamped) filter. */
void aug_resize_box_filter(aug_filter f, const float *src, int c, int h, int w, const int box[4],
                           int s, float *dst, float *tmp);

/* Writes the views of one HWC uint8 image (h x w x channels), seeded by `seed`: g0, g1
 * (C, G, G) and locals[v] (C, L, L) for v < nlocal (locals may be NULL when nlocal is 0).
 * Returns false when host memory ran out. */
bool aug_dino_views(const aug_config *a, const uint8_t *img, int h, int w, uint64_t seed, float *g0,
                    float *g1, float *const *locals);

/* The views of a batch of `b` images idx[0..b) of ds, crop-major: globals (2 b, C, G, G)
 * (rows [v b, (v + 1) b) are view v), locals (nlocal b, C, L, L); sample i is seeded by
 * (seed, i). Runs over the pool's threads; at most 64 local crops. */
pk_status aug_dino_batch(pk_pool *pool, const aug_config *a, const pk_dataset *ds,
                         const int32_t *idx, int b, uint64_t seed, float *globals, float *locals);

/* aug_dino_batch of a shard of a global batch (tasks/common/dist.h): images idx[0..b) are
 * the global batch's samples first .. first + b - 1 and are seeded by (seed, first + i), so
 * the shards of the ranks together hold the views one process makes of the whole batch. */
pk_status aug_dino_batch_at(pk_pool *pool, const aug_config *a, const pk_dataset *ds,
                            const int32_t *idx, int b, int64_t first, uint64_t seed, float *globals,
                            float *locals);

/* The evaluation view of image i: (C, G, G) normalised, resized bicubically when the image is
 * not G x G (a centre crop of the largest square first). */
pk_status aug_eval_view(const aug_config *a, const pk_dataset *ds, int i, float *out);

/* A 64-bit mix of two words (splitmix64 finaliser), for seeds derived from (seed, counter). */
uint64_t aug_mix(uint64_t a, uint64_t b);

#endif
