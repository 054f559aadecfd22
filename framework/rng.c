/* rng.c - normal samples and shuffles on top of the splitmix64 stream. */
#include "rng.h"

#include <math.h>

double pk_rng_normal(pk_rng *r) {
    double u1 = pk_rng_uniform(r), u2 = pk_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void pk_rng_shuffle(pk_rng *r, int32_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)pk_rng_below(r, (uint64_t)i + 1);
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
