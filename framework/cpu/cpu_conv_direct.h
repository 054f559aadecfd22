/* cpu_conv_direct.h - direct (no im2col) kernels of 3x3, stride-1, padding-1 convolutions for
 * AVX-512 cores: the forward pass, which with flipped transposed weights is also the input
 * gradient, and the weight gradient. cpu_conv.c chooses them; its im2col + SGEMM path stays the
 * reference and the fallback for every other shape and core. */
#ifndef POLYAK_CPU_CONV_DIRECT_H
#define POLYAK_CPU_CONV_DIRECT_H
#include <stdbool.h>

#include "cpu/cpu_util.h"

/* True when this core has AVX-512F and p is a groups-1 3x3 stride-1 padding-1 convolution. */
bool cpu_conv_direct_usable(const pk_conv2d_params *p);

/* out (N, Cout, H, W) = conv(x (N, Cin, H, W), w (Cout, Cin, 3, 3)) + bias (Cout, or NULL);
 * with accumulate, the result is added to out instead of replacing it. */
pk_status cpu_conv_direct_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                  const float *w, const float *bias, float *out, bool accumulate);

/* gw (Cout, Cin, 3, 3) += the weight gradient from x (N, Cin, H, W) and g (N, Cout, H, W). */
pk_status cpu_conv_direct_grad_w(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                 const float *g, float *gw);

#endif
