/* test_gemm — the row-stable products of core/gemm.h, on both paths (the
 * AVX2 kernels where the machine has them, and the portable twins):
 *
 *   - every element agrees with a double-precision product to within
 *     1e-5 of the sum of the absolute terms (float rounding, nothing more);
 *   - row-stability: any row computed alone, M = 1, has the same bits as
 *     in a product of 1..13 rows, and a row's result does not depend on
 *     what the other rows hold;
 *   - bias/init are added, leading dimensions larger than the width are
 *     honoured and the padding beyond the width is never written.
 *
 * The shapes cover every block and remainder size: widths 1..40 and the
 * layer shapes of the zoo (784x100, 100x10, 400x64 ...). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/gemm.h"
#include "core/rng.h"

#define PAD 3          /* extra floats at the end of every row of C */
#define SENTINEL 1234.5f

static float *random_floats(bs_rng *r, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = bs_rng_uniform(r) * 2.0f - 1.0f;
    return p;
}

/* a(i,k) for A stored (M,K) with leading dimension lda, or (K,M) when trans. */
static float a_at(const float *A, int lda, int trans, int i, int k)
{
    return trans ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}

typedef struct shape {
    int M, N, K;
} shape;

/* One product of each kind for (M,N,K), checked against double precision,
 * then each row again alone (M = 1) and compared bit for bit. */
static void check_shape(bs_rng *r, int M, int N, int K, int with_bias, int trans)
{
    /* nt: C (M,N) = A (M,K) @ B^T, B (N,K); lda = K + 1 to test strides */
    int lda = K + 1, ldb = K + 2, ldc = N + PAD;
    float *A = random_floats(r, (size_t)M * lda);
    float *B = random_floats(r, (size_t)N * ldb);
    float *bias = random_floats(r, (size_t)N);
    float *C = malloc((size_t)M * ldc * sizeof *C);
    float *row = malloc((size_t)ldc * sizeof *row);
    assert_non_null(C);
    assert_non_null(row);
    for (size_t i = 0; i < (size_t)M * ldc; i++)
        C[i] = SENTINEL;
    bs_gemm_nt(C, ldc, A, lda, B, ldb, with_bias ? bias : NULL, M, N, K);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = with_bias ? bias[j] : 0.0, mag = fabs(s);
            for (int k = 0; k < K; k++) {
                double t = (double)A[(size_t)i * lda + k] * B[(size_t)j * ldb + k];
                s += t;
                mag += fabs(t);
            }
            float c = C[(size_t)i * ldc + j];
            if (fabs(c - s) > 1e-5 * (mag + 1e-30))
                fail_msg("nt M=%d N=%d K=%d: C[%d][%d] = %.9g, want %.9g", M, N, K, i, j,
                         c, s);
        }
        for (int j = N; j < ldc; j++)
            assert_true(C[(size_t)i * ldc + j] == SENTINEL);
        bs_gemm_nt(row, ldc, A + (size_t)i * lda, lda, B, ldb, with_bias ? bias : NULL, 1,
                   N, K);
        if (memcmp(row, C + (size_t)i * ldc, (size_t)N * sizeof *row))
            fail_msg("nt M=%d N=%d K=%d: row %d alone differs from row %d of the batch", M,
                     N, K, i, i);
    }
    free(A);
    free(B);
    free(bias);
    free(C);
    free(row);

    /* nn: C (M,N) = A (M,K) @ B (K,N), A maybe stored (K,M) */
    lda = trans ? M + 2 : K + 1;
    ldb = N + 1;
    A = random_floats(r, trans ? (size_t)K * lda : (size_t)M * lda);
    B = random_floats(r, (size_t)K * ldb);
    float *init = random_floats(r, (size_t)M);
    C = malloc((size_t)M * ldc * sizeof *C);
    row = malloc((size_t)ldc * sizeof *row);
    assert_non_null(C);
    assert_non_null(row);
    for (size_t i = 0; i < (size_t)M * ldc; i++)
        C[i] = SENTINEL;
    bs_gemm_nn(C, ldc, A, lda, trans, B, ldb, with_bias ? init : NULL, M, N, K);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = with_bias ? init[i] : 0.0, mag = fabs(s);
            for (int k = 0; k < K; k++) {
                double t = (double)a_at(A, lda, trans, i, k) * B[(size_t)k * ldb + j];
                s += t;
                mag += fabs(t);
            }
            float c = C[(size_t)i * ldc + j];
            if (fabs(c - s) > 1e-5 * (mag + 1e-30))
                fail_msg("nn%s M=%d N=%d K=%d: C[%d][%d] = %.9g, want %.9g",
                         trans ? " (A transposed)" : "", M, N, K, i, j, c, s);
        }
        for (int j = N; j < ldc; j++)
            assert_true(C[(size_t)i * ldc + j] == SENTINEL);
        /* row i alone: A's row i (its column i when transposed) */
        const float *ai = trans ? A + i : A + (size_t)i * lda;
        bs_gemm_nn(row, ldc, ai, lda, trans, B, ldb, with_bias ? init + i : NULL, 1, N, K);
        if (memcmp(row, C + (size_t)i * ldc, (size_t)N * sizeof *row))
            fail_msg("nn%s M=%d N=%d K=%d: row %d alone differs from row %d of the batch",
                     trans ? " (A transposed)" : "", M, N, K, i, i);
    }
    free(A);
    free(B);
    free(init);
    free(C);
    free(row);
}

static void check_all_shapes(void)
{
    bs_rng r;
    bs_rng_seed(&r, 7);
    static const shape zoo[] = {
        {9, 100, 784}, {9, 784, 100}, {1, 10, 100}, {3, 100, 10}, {16, 576, 25},
        {32, 64, 400}, {400, 64, 32}, {25, 576, 16}, {13, 200, 200}, {1, 1, 1},
    };
    for (size_t s = 0; s < sizeof zoo / sizeof zoo[0]; s++)
        for (int trans = 0; trans < 2; trans++)
            check_shape(&r, zoo[s].M, zoo[s].N, zoo[s].K, 1, trans);
    for (int M = 1; M <= 13; M++)
        for (int N = 1; N <= 40; N += (N < 20 ? 1 : 7))
            for (int K = 1; K <= 19; K += 3)
                check_shape(&r, M, N, K, (M + N + K) % 2, (M + K) % 2);
}

static void test_gemm_default_path(void **state)
{
    (void)state;
    bs_gemm_portable = 0;
    check_all_shapes();
}

static void test_gemm_portable_path(void **state)
{
    (void)state;
    bs_gemm_portable = 1;
    check_all_shapes();
    bs_gemm_portable = 0;
}

/* A row's bits do not depend on what the other rows hold. */
static void test_gemm_rows_independent(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 11);
    int M = 7, N = 100, K = 784;
    float *A = random_floats(&r, (size_t)M * K), *B = random_floats(&r, (size_t)N * K);
    float *C1 = malloc((size_t)M * N * sizeof *C1), *C2 = malloc((size_t)M * N * sizeof *C2);
    assert_non_null(C1);
    assert_non_null(C2);
    bs_gemm_nt(C1, N, A, K, B, K, NULL, M, N, K);
    for (size_t i = (size_t)3 * K; i < (size_t)M * K; i++) /* rows 3.. change */
        A[i] = bs_rng_uniform(&r);
    bs_gemm_nt(C2, N, A, K, B, K, NULL, M, N, K);
    assert_memory_equal(C1, C2, (size_t)3 * N * sizeof *C1);
    free(A);
    free(B);
    free(C1);
    free(C2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_default_path),
        cmocka_unit_test(test_gemm_portable_path),
        cmocka_unit_test(test_gemm_rows_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
