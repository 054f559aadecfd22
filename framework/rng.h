/* rng.h - the deterministic random numbers of the runtime (parameter initialisation, data
 * order): a splitmix64 stream whose whole state is one integer, so checkpoints can store it. */
#ifndef POLYAK_RNG_H
#define POLYAK_RNG_H
#include <stdint.h>

typedef struct pk_rng {
    uint64_t state;
} pk_rng;

/* Returns the next 64 random bits. */
static inline uint64_t pk_rng_next(pk_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Returns a uniform double in [0, 1). */
static inline double pk_rng_uniform(pk_rng *r) {
    return (double)(pk_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Returns a uniform integer in [0, n). */
static inline uint64_t pk_rng_below(pk_rng *r, uint64_t n) { return pk_rng_next(r) % n; }

/* Returns a standard normal sample (Box-Muller). */
double pk_rng_normal(pk_rng *r);

/* Shuffles idx[0..n) in place (Fisher-Yates). */
void pk_rng_shuffle(pk_rng *r, int32_t *idx, int64_t n);

#endif
