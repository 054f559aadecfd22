/* ops_ssim.h - structural similarity (SSIM) as a differentiable op, as 3DGS's loss uses it:
 * an 11x11 Gaussian window (sigma 1.5) applied per channel with zero padding (conv2d with
 * padding 5, groups = channels), C1 = 0.01^2, C2 = 0.03^2, the mean of the SSIM map.
 *
 * Owns: the op's front end and its parameter struct. Kernels: cpu_ssim_* (separable,
 * multi-threaded) and vk_ssim_* (shaders/nn/ssim*.comp). */
#ifndef POLYAK_OPS_SSIM_H
#define POLYAK_OPS_SSIM_H
#include "ops/ops.h"

#define PK_SSIM_WINDOW 11
#define PK_SSIM_SIGMA 1.5
#define PK_SSIM_C1 (0.01f * 0.01f)
#define PK_SSIM_C2 (0.03f * 0.03f)

/* planes = N * C images of (h, w); win is the normalised 1-D Gaussian (the 2-D window is its
 * outer product). Saved: [0] stats (planes, 5, h, w) = mu1, mu2, E[x^2], E[y^2], E[xy];
 * [1] scratch (planes, 5, h, w); [2] the SSIM map (planes, h, w); [3] row means (planes*h). */
typedef struct pk_ssim_params {
    int64_t planes, h, w;
    float win[PK_SSIM_WINDOW];
} pk_ssim_params;

/* Mean SSIM of img1 against img2, both (C, H, W) or (N, C, H, W) float32: shape (1,).
 * Gradients flow to img1 and to img2 when it requires them. */
tensor *pk_ssim(pk_ctx *c, tensor *img1, tensor *img2);

/* Fills win with the normalised 1-D Gaussian of the SSIM window. */
void pk_ssim_window(float win[PK_SSIM_WINDOW]);

#endif
