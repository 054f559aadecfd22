/* cl_augment.c - LAE's training augmentation for the continual-learning runner:
 * RandomResizedCrop with PIL's bilinear resampling, then a horizontal flip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "cl.h"

/* PIL's bilinear (triangle) filter. */
static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Resamples n input samples at stride `in_stride` (offset `in0` of the box, length `in`) to
 * `out` outputs at stride `out_stride`, as PIL's ImagingResample does along one axis:
 * output x takes the input around (x + 0.5) in / out with the triangle widened by in / out
 * when shrinking, weights normalised over the box. */
static void resample_line(const float *src, int in, int in_stride, int out, float *dst,
                          int out_stride) {
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0, support = fs;
    for (int x = 0; x < out; x++) {
        double center = (x + 0.5) * scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        double ws = 0, acc = 0;
        for (int j = lo; j < hi; j++) {
            double w = triangle((j - center + 0.5) / fs);
            ws += w, acc += w * src[(size_t)j * in_stride];
        }
        dst[(size_t)x * out_stride] = (float)(ws > 0 ? acc / ws : 0.0);
    }
}

void cl_resize_bilinear(const float *src, int c, int h, int w, const int box[4], int s, float *dst,
                        float *tmp) {
    int top = box[0], left = box[1], bh = box[2], bw = box[3];
    for (int k = 0; k < c; k++) {
        const float *img = src + (size_t)k * h * w;
        float *t = tmp + (size_t)k * bh * s; /* (bh, s): rows resampled horizontally */
        for (int y = 0; y < bh; y++)
            resample_line(img + (size_t)(top + y) * w + left, bw, 1, s, t + (size_t)y * s, 1);
        float *d = dst + (size_t)k * s * s;
        for (int x = 0; x < s; x++)
            resample_line(t + x, bh, s, s, d + x, s);
    }
}

void cl_augment_lae(const float *src, int c, int s, pk_rng *rng, float *dst, float *tmp) {
    static const double scale[2] = {0.08, 1.0};
    int box[4];
    aug_rrc_params(rng, s, s, scale, box);
    cl_resize_bilinear(src, c, s, s, box, s, dst, tmp);
    if (pk_rng_uniform(rng) < 0.5)
        for (int k = 0; k < c; k++)
            for (int y = 0; y < s; y++) {
                float *row = dst + ((size_t)k * s + y) * s;
                for (int a = 0, b = s - 1; a < b; a++, b--) {
                    float v = row[a];
                    row[a] = row[b], row[b] = v;
                }
            }
}
