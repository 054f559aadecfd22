/* gs_metrics.h - image comparisons for 3DGS on planar (C, H, W) float images: PSNR, and SSIM
 * (11x11 Gaussian window, sigma 1.5, zero padding, mean over pixels and channels: 3DGS
 * utils/loss_utils.py) with its exact gradient, and the training loss
 * 0.8 L1 + 0.2 (1 - SSIM). Host arithmetic; the loss on the tape uses pk_ssim when the op
 * exists (gs_train.c), these stay the metric and the test reference. */
#ifndef POLYAK_GS_METRICS_H
#define POLYAK_GS_METRICS_H
#include "cpu/threads.h"
#include "status.h"

/* PSNR in dB of a against b (n values in [0, 1]): 10 log10(1 / MSE), 3DGS utils/image_utils. */
double gs_psnr(const float *a, const float *b, int64_t n);

/* SSIM of a against b (c, h, w); when d_a is not NULL, ADDS scale * d SSIM / d a into it. */
pk_status gs_ssim(pk_pool *pool, const float *a, const float *b, int c, int h, int w, float scale,
                  float *d_a, double *ssim);

/* 3DGS's loss 0.8 L1 + 0.2 (1 - SSIM) of render a against b; writes d loss / d a into d_a
 * (overwritten, may be NULL) and the L1 and SSIM terms into *l1, *ssim. */
pk_status gs_loss(pk_pool *pool, const float *a, const float *b, int c, int h, int w, float *d_a,
                  double *loss, double *l1, double *ssim);

#endif
