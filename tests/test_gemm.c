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
 * layer shapes of the zoo (784x100, 100x10, 400x64 ...). The conv2d
 * kernels that read the input in place are checked the same way. */
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

/* conv2d with stride 1, no padding, without unfolding, against double
 * precision: out = bias + sum over (c,ky,kx) of w * in, and the input
 * gradient sum over (oc,ky,kx) of w * dout; then the forward against the
 * unfolded product bs_gemm_nn, bit for bit. Shapes with rows of 4, 3, 2, 1
 * weights left and short (masked) slots. Where only the portable path
 * runs the direct kernels decline (return 0), which is checked too. */
static void check_conv(bs_rng *r, int C, int H, int W, int OC, int K)
{
    bs_gemm_conv g = {.C = C, .H = H, .W = W, .OC = OC, .OH = H - K + 1, .OW = W - K + 1,
                      .K = K};
    int OHW = g.OH * g.OW, CKK = C * K * K;
    size_t in_n = (size_t)C * H * W, out_n = (size_t)OC * OHW;
    float *in = random_floats(r, in_n), *w = random_floats(r, (size_t)OC * CKK);
    float *bias = random_floats(r, (size_t)OC), *dout = random_floats(r, out_n);
    float *out = random_floats(r, out_n), *dinp = random_floats(r, in_n);
    float *col = malloc((size_t)CKK * OHW * sizeof *col), *ref = malloc(out_n * sizeof *ref);
    assert_non_null(col);
    assert_non_null(ref);
    int fwd = bs_gemm_conv_forward(out, in, w, bias, &g, 0, OC);
    int bwd = bs_gemm_conv_backward(dinp, dout, w, &g, 0, C);
    assert_int_equal(fwd, bwd);
    if (!fwd)
        goto done;
    for (int oc = 0; oc < OC; oc++)
        for (int y = 0; y < g.OH; y++)
            for (int x = 0; x < g.OW; x++) {
                double s = bias[oc], mag = fabs(s);
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            double t = (double)w[((size_t)(oc * C + c) * K + ky) * K + kx] *
                                       in[((size_t)c * H + y + ky) * W + x + kx];
                            s += t;
                            mag += fabs(t);
                        }
                float o = out[((size_t)oc * g.OH + y) * g.OW + x];
                if (fabs(o - s) > 1e-5 * mag)
                    fail_msg("conv forward C=%d H=%d W=%d OC=%d K=%d: out[%d][%d][%d] = "
                             "%.9g, want %.9g", C, H, W, OC, K, oc, y, x, o, s);
            }
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double s = 0.0, mag = 0.0;
                for (int oc = 0; oc < OC; oc++)
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++) {
                            int oy = y - ky, ox = x - kx;
                            if (oy < 0 || ox < 0 || oy >= g.OH || ox >= g.OW)
                                continue;
                            double t = (double)w[((size_t)(oc * C + c) * K + ky) * K + kx] *
                                       dout[((size_t)oc * g.OH + oy) * g.OW + ox];
                            s += t;
                            mag += fabs(t);
                        }
                float d = dinp[((size_t)c * H + y) * W + x];
                if (fabs(d - s) > 1e-5 * mag + 1e-30)
                    fail_msg("conv backward C=%d H=%d W=%d OC=%d K=%d: dinp[%d][%d][%d] = "
                             "%.9g, want %.9g", C, H, W, OC, K, c, y, x, d, s);
            }
    /* the unfolded product, element for element the same sequence */
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < K; ky++)
            for (int kx = 0; kx < K; kx++)
                for (int y = 0; y < g.OH; y++)
                    for (int x = 0; x < g.OW; x++)
                        col[((size_t)(c * K + ky) * K + kx) * OHW + y * g.OW + x] =
                            in[((size_t)c * H + y + ky) * W + x + kx];
    bs_gemm_nn(ref, OHW, w, CKK, 0, col, OHW, bias, OC, OHW, CKK);
    assert_memory_equal(ref, out, out_n * sizeof *out);
done:
    free(in);
    free(w);
    free(bias);
    free(dout);
    free(out);
    free(dinp);
    free(col);
    free(ref);
}

static void test_gemm_conv(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 5);
    check_conv(&r, 1, 28, 28, 16, 5);  /* the zoo's CNN */
    check_conv(&r, 16, 12, 12, 32, 5);
    check_conv(&r, 3, 13, 11, 5, 3);   /* short slots, a row of 1 left */
    check_conv(&r, 2, 9, 20, 7, 2);    /* rows of 3 left, 2 slots a row */
    check_conv(&r, 1, 4, 4, 1, 4);     /* one output pixel */
    bs_gemm_portable = 1;
    check_conv(&r, 1, 28, 28, 16, 5);  /* declines */
    bs_gemm_portable = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_default_path),
        cmocka_unit_test(test_gemm_portable_path),
        cmocka_unit_test(test_gemm_rows_independent),
        cmocka_unit_test(test_gemm_conv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
