/* cpu_conv_direct.h - direct (no im2col) convolution kernels for AVX-512 cores: 3x3 stride-1
 * padding-1, 3x3 stride-2 padding-1 and 1x1 stride-2 convolutions (stride 2 on even planes);
 * forward, input gradient and weight gradient. cpu_conv.c chooses them; its im2col + SGEMM path
 * stays the reference and the fallback for every other shape and core. */
#ifndef POLYAK_CPU_CONV_DIRECT_H
#define POLYAK_CPU_CONV_DIRECT_H
#include <stdbool.h>

#include "cpu/cpu_util.h"

/* True when this core has AVX-512F and p is one of the shapes above, with groups 1. */
bool cpu_conv_direct_usable(const pk_conv2d_params *p);

/* out (N, Cout, OH, OW) = conv(x (N, Cin, H, W), w (Cout, Cin, KH, KW)) + bias (Cout, or NULL);
 * with accumulate, the result is added to out instead of replacing it. */
pk_status cpu_conv_direct_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                  const float *w, const float *bias, float *out, bool accumulate);

/* gx (N, Cin, H, W) = (+= with accumulate) the input gradient from w (Cout, Cin, KH, KW) and
 * g (N, Cout, OH, OW). */
pk_status cpu_conv_direct_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                 const float *g, float *gx, bool accumulate);

/* gw (Cout, Cin, KH, KW) += the weight gradient from x (N, Cin, H, W) and g (N, Cout, OH, OW). */
pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw);

#endif
