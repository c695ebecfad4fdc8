/* rng — a small deterministic random number generator (SplitMix64 seeding a
 * xoshiro256** stream). Same seed, same numbers, on every machine: training,
 * initialisation, data splits and attacks draw from it so that their
 * results are reproducible from a seed. */
#ifndef BS_RNG_H
#define BS_RNG_H

#include <stdint.h>

typedef struct bs_rng {
    uint64_t s[4];
} bs_rng;

void bs_rng_seed(bs_rng *r, uint64_t seed);
uint64_t bs_rng_next(bs_rng *r);
/* Uniform in [0,1) with 24 bits of precision. */
float bs_rng_uniform(bs_rng *r);
/* Uniform integer in [0,n), unbiased; n > 0. */
uint32_t bs_rng_below(bs_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
float bs_rng_normal(bs_rng *r);
/* Fisher-Yates shuffle of n ints. */
void bs_rng_shuffle(bs_rng *r, int *v, int n);

#endif
