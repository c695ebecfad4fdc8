/* simd — how the hot loops use AVX2 and FMA without requiring them: a
 * kernel written with <immintrin.h> intrinsics is compiled for AVX2+FMA by
 * marking it BS_AVX2, and called only when bs_cpu_avx2() says the machine
 * has both; every such kernel has a portable twin the other machines run.
 * The build itself stays plain x86-64 (or any other architecture, where
 * BS_HAVE_AVX2 is 0 and only the portable twins are compiled).
 *
 * Results are deterministic on one machine: the choice depends only on the
 * CPU, never on sizes or timing. The two paths round differently (one FMA
 * vs a multiply and an add), so results may differ between machines in the
 * last bits. */
#ifndef BS_SIMD_H
#define BS_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__)
#define BS_HAVE_AVX2 1
#include <immintrin.h>
#define BS_AVX2 __attribute__((target("avx2,fma")))
/* 1 when this CPU runs AVX2 and FMA instructions (cached by the compiler's
 * runtime after the first call). */
static inline int bs_cpu_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define BS_HAVE_AVX2 0
static inline int bs_cpu_avx2(void)
{
    return 0;
}
#endif

#endif
