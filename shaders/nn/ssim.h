/* ssim.h - push constants of the SSIM shaders (nn/ssim_*.comp). Images are (planes, h, w);
 * the five-map buffers are (planes, 5, h, w): mu1, mu2, E[x^2], E[y^2], E[xy] in the forward,
 * d mu1, d mu2, d E[x^2] (= d E[y^2]), d E[xy], 0 in the backward. */
#ifndef POLYAK_NN_SSIM_H
#define POLYAK_NN_SSIM_H
#include "common/pc.h"
PK_PC_BEGIN(pc_ssim)
PC_U32 off_x; /* img1 */
PC_U32 off_y; /* img2 */
PC_U32 off_a; /* prod: five maps out; map/dmap: stats in; grad: filtered maps in */
PC_U32 off_b; /* map: SSIM map out; dmap: d loss / d mean (one float); grad: image gradient */
PC_U32 off_c; /* dmap: derivative maps out */
PC_U32 planes;
PC_U32 h;
PC_U32 w;
PC_U32 which; /* grad: 0 img1, 1 img2 */
PK_PC_END(pc_ssim)

#endif
