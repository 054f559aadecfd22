/* ssim_blur.h - push constants of nn/ssim_blur.comp (see nn/ssim.h for the buffers). */
#ifndef POLYAK_NN_SSIM_BLUR_H
#define POLYAK_NN_SSIM_BLUR_H
#include "common/pc.h"
/* One separable pass of the 11-tap window over n_img images of (h, w), zero padding. */
PK_PC_BEGIN(pc_ssim_blur)
PC_U32 off_in;
PC_U32 off_out;
PC_U32 n_img;
PC_U32 h;
PC_U32 w;
PC_U32 dir; /* 0 along x, 1 along y */
PC_F32 win[11];
PK_PC_END(pc_ssim_blur)
#endif
