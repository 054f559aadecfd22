/* cpu_conv_winograd.h - Winograd F(2x2, 3x3) kernels for AVX-512 cores: the forward and the input
 * gradient of 3x3 stride-1 padding-1 convolutions (groups 1), at 16 multiplies per 2x2 output
 * tile and channel pair instead of 36. The weight gradient, the other shapes and the other cores
 * stay with cpu_conv_direct.c and cpu_conv.c's im2col + SGEMM path; cpu_conv.c chooses. */
#ifndef POLYAK_CPU_CONV_WINOGRAD_H
#define POLYAK_CPU_CONV_WINOGRAD_H
#include <stdbool.h>

#include "cpu/cpu_util.h"

/* True when this core has AVX-512F, p is a 3x3 stride-1 padding-1 "same" convolution with
 * groups 1, and its channel counts are ones where Winograd measured faster than the direct
 * kernel (forward and input gradient alike). */
bool cpu_conv_winograd_usable(const pk_conv2d_params *p);

/* True when p has the shape above, whatever its channel counts, on an AVX-512F core (for tests
 * and benchmarks that run the kernels where cpu_conv.c would not choose them). */
bool cpu_conv_winograd_shape_ok(const pk_conv2d_params *p);

/* out (N, Cout, H, W) = conv(x (N, Cin, H, W), w (Cout, Cin, 3, 3)) + bias (Cout, or NULL);
 * with accumulate, the result is added to out instead of replacing it. */
pk_status cpu_conv_winograd_forward(pk_ctx *c, const pk_conv2d_params *p, const float *x,
                                    const float *w, const float *bias, float *out, bool accumulate);

/* gx (N, Cin, H, W) = (+= with accumulate) the input gradient from w (Cout, Cin, 3, 3) and
 * g (N, Cout, H, W): the forward of g with the flipped, transposed weights. */
pk_status cpu_conv_winograd_grad_x(pk_ctx *c, const pk_conv2d_params *p, const float *w,
                                   const float *g, float *gx, bool accumulate);

#endif
