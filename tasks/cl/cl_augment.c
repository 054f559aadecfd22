/* cl_augment.c - LAE's training augmentation for the continual-learning runner:
 * RandomResizedCrop with PIL's bilinear resampling, then a horizontal flip. */
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "cl.h"

void cl_resize_bilinear(const float *src, int c, int h, int w, const int box[4], int s, float *dst,
                        float *tmp) {
    aug_resize_box_filter(AUG_BILINEAR, src, c, h, w, box, s, dst, tmp);
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
