/* ops_ssim.c - front end of the SSIM op: checks the images, builds the Gaussian window and
 * the saved buffers the kernels share, runs one node. */
#include "ops_ssim.h"

#include <math.h>

#include "op_util.h"

void pk_ssim_window(float win[PK_SSIM_WINDOW]) {
    /* as 3DGS's gaussian(): exp(-(x - 5)^2 / (2 sigma^2)) in double, normalised, then float */
    double g[PK_SSIM_WINDOW], sum = 0;
    for (int i = 0; i < PK_SSIM_WINDOW; i++) {
        double d = i - PK_SSIM_WINDOW / 2;
        g[i] = exp(-d * d / (2.0 * PK_SSIM_SIGMA * PK_SSIM_SIGMA));
        sum += g[i];
    }
    for (int i = 0; i < PK_SSIM_WINDOW; i++)
        win[i] = (float)(g[i] / sum);
}

tensor *pk_ssim(pk_ctx *c, tensor *img1, tensor *img2) {
    if (!img1 || !img2) return NULL;
    if (!op_check_f32("ssim", "img1", img1) || !op_check_f32("ssim", "img2", img2)) return NULL;
    char a[64], b[64];
    if (!tensor_same_shape(img1, img2))
        return op_fail("ssim", "img1 %s and img2 %s differ in shape",
                       tensor_shape_str(img1, a, sizeof a), tensor_shape_str(img2, b, sizeof b));
    if (img1->ndim != 3 && img1->ndim != 4)
        return op_fail("ssim", "images are %s, expected (C, H, W) or (N, C, H, W)",
                       tensor_shape_str(img1, a, sizeof a));
    int nd = img1->ndim;
    pk_ssim_params p = {.h = img1->shape[nd - 2], .w = img1->shape[nd - 1]};
    p.planes = tensor_numel(img1) / (p.h * p.w > 0 ? p.h * p.w : 1);
    if (p.planes < 1 || p.h < 1 || p.w < 1 || p.planes * 5 * p.h * p.w > UINT32_MAX)
        return op_fail("ssim", "images are %s, expected non-empty and under 2^32 / 5 elements",
                       tensor_shape_str(img1, a, sizeof a));
    pk_ssim_window(p.win);
    img1 = op_contig(c, img1);
    img2 = op_contig(c, img2);
    if (!img1 || !img2) return NULL;
    int64_t stats_shape[4] = {p.planes, 5, p.h, p.w};
    tensor *saved[4] = {tensor_new(c->step, PK_F32, 4, stats_shape),
                        tensor_new(c->step, PK_F32, 4, stats_shape),
                        tensor_new(c->step, PK_F32, 3, (int64_t[]){p.planes, p.h, p.w}),
                        tensor_new(c->step, PK_F32, 1, (int64_t[]){p.planes * p.h})};
    tensor *out = tensor_new(c->step, PK_F32, 1, (int64_t[]){1});
    return op_run_saved(c, PK_OP_SSIM, (tensor *[]){img1, img2}, 2, &p, sizeof p, out, saved, 4);
}
