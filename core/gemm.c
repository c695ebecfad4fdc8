/* gemm — row-stable matrix products; see gemm.h for why and what.
 *
 * The AVX2 kernels compute a block of MR rows by NC columns (nt) or MR
 * rows by NV vectors of 8 columns (nn) at a time, keeping the block's sums
 * in registers: MR x NC (or MR x NV) <= 12 accumulators, enough independent
 * FMA chains to hide their latency, and a loaded value of A or B is used
 * by a whole row or column of the block. What one element sees is fixed:
 *
 *   nt: eight lanes of fma over k (the last partial group of eight read
 *       with a mask, the missing lanes as 0), the lanes summed in one fixed
 *       order, then + bias;
 *   nn: c = init, then c = fma(a[i][k], b[k][j], c) for k = 0..K-1, in
 *       vector lanes (the columns past N's last multiple of 8 masked).
 *
 * Blocks only group elements, so whatever M is, and whichever block an
 * element falls in, it gets the same bits. */
#include "core/gemm.h"

#include "core/simd.h"

#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* the portable twins */

/* Four partial sums over k in a fixed order, then k's remainder. */
static void nt_portable(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        const float *bias, int M, int N, int K)
{
    int K4 = K / 4 * 4;
    for (int i = 0; i < M; i++) {
        const float *a = A + (size_t)i * lda;
        for (int j = 0; j < N; j++) {
            const float *b = B + (size_t)j * ldb;
            float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int k = 0; k < K4; k += 4)
                for (int l = 0; l < 4; l++)
                    s[l] += a[k + l] * b[k + l];
            float t = ((s[0] + s[1]) + (s[2] + s[3]));
            for (int k = K4; k < K; k++)
                t += a[k] * b[k];
            C[(size_t)i * ldc + j] = t + (bias ? bias[j] : 0.0f);
        }
    }
}

static void nn_portable(float *C, int ldc, const float *A, int lda, int trans_a,
                        const float *B, int ldb, const float *init, int M, int N, int K)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        float c0 = init ? init[i] : 0.0f;
        for (int j = 0; j < N; j++)
            c[j] = c0;
        for (int k = 0; k < K; k++) {
            float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < N; j++)
                c[j] += a * b[j];
        }
    }
}

#if BS_HAVE_AVX2

/* ------------------------------------------------------------------------ */
/* AVX2 + FMA */

#define ALWAYS_INLINE inline __attribute__((always_inline))
/* The loops over a block's rows and columns, unrolled so that its sums
 * stay in registers. */
#define UNROLL _Pragma("GCC unroll 12")

/* The eight lanes summed in one fixed order. */
BS_AVX2 static ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lanes 0..n-1 on, for n in 0..7. */
BS_AVX2 static ALWAYS_INLINE __m256i lane_mask(int n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* One nt block: rows a[0..mr), columns b[0..nc) of C. */
BS_AVX2 static ALWAYS_INLINE void nt_block(float *C, int ldc, const float *A, int lda,
                                           const float *B, int ldb, const float *bias,
                                           int K, int mr, int nc)
{
    __m256 acc[4][8];
    int K8 = K / 8 * 8;
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int c = 0; c < nc; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int k = 0; k < K8; k += 8) {
        __m256 a[4];
        UNROLL
        for (int r = 0; r < mr; r++)
            a[r] = _mm256_loadu_ps(A + (size_t)r * lda + k);
        UNROLL
        for (int c = 0; c < nc; c++) {
            __m256 b = _mm256_loadu_ps(B + (size_t)c * ldb + k);
            /* a[] and one b in registers beside the sums */
            UNROLL
            for (int r = 0; r < mr; r++)
                acc[r][c] = _mm256_fmadd_ps(a[r], b, acc[r][c]);
        }
    }
    if (K8 < K) {
        __m256i m = lane_mask(K - K8);
        __m256 a[4];
        UNROLL
        for (int r = 0; r < mr; r++)
            a[r] = _mm256_maskload_ps(A + (size_t)r * lda + K8, m);
        UNROLL
        for (int c = 0; c < nc; c++) {
            __m256 b = _mm256_maskload_ps(B + (size_t)c * ldb + K8, m);
            UNROLL
            for (int r = 0; r < mr; r++)
                acc[r][c] = _mm256_fmadd_ps(a[r], b, acc[r][c]);
        }
    }
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int c = 0; c < nc; c++)
            C[(size_t)r * ldc + c] = hsum8(acc[r][c]) + (bias ? bias[c] : 0.0f);
}

/* All columns of MR rows: blocks of NC columns, then one block of the
 * N mod NC left (every block size its own unrolled code). */
#define NT_LEFT(n)                                                                          \
    case n:                                                                                 \
        nt_block(C + j, ldc, A, lda, B + (size_t)j * ldb, ldb, bias ? bias + j : NULL, K,   \
                 MR_, n);                                                                   \
        break;
#define NT_ROWS(MR, NC)                                                                     \
    BS_AVX2 static void nt_rows_##MR(float *C, int ldc, const float *A, int lda,            \
                                     const float *B, int ldb, const float *bias, int N,     \
                                     int K)                                                 \
    {                                                                                       \
        enum { MR_ = MR };                                                                  \
        int j = 0;                                                                          \
        for (; j + NC <= N; j += NC)                                                        \
            nt_block(C + j, ldc, A, lda, B + (size_t)j * ldb, ldb, bias ? bias + j : NULL,  \
                     K, MR, NC);                                                            \
        switch (N - j) {                                                                    \
            NT_LEFT(1) NT_LEFT(2) NT_LEFT(3) NT_LEFT(4) NT_LEFT(5) NT_LEFT(6) NT_LEFT(7)    \
        default: break;                                                                     \
        }                                                                                   \
    }
NT_ROWS(1, 8)
NT_ROWS(2, 4)
NT_ROWS(3, 4)
NT_ROWS(4, 2)

BS_AVX2 static void nt_avx2(float *C, int ldc, const float *A, int lda, const float *B,
                            int ldb, const float *bias, int M, int N, int K)
{
    for (int i = 0; i < M; i += 4) {
        float *c = C + (size_t)i * ldc;
        const float *a = A + (size_t)i * lda;
        switch (M - i < 4 ? M - i : 4) {
        case 1: nt_rows_1(c, ldc, a, lda, B, ldb, bias, N, K); break;
        case 2: nt_rows_2(c, ldc, a, lda, B, ldb, bias, N, K); break;
        case 3: nt_rows_3(c, ldc, a, lda, B, ldb, bias, N, K); break;
        default: nt_rows_4(c, ldc, a, lda, B, ldb, bias, N, K); break;
        }
    }
}

/* One nn block: rows [0,mr) of C, columns [0, n) in nv vectors of 8. With
 * masked (a block at the right edge) the lanes past n are read as 0 and
 * not written. a(r,k) is A's element of row r and column k (A stored
 * (M,K), or (K,M) when trans_a). */
BS_AVX2 static ALWAYS_INLINE void nn_block(float *C, int ldc, const float *A, int lda,
                                           int trans_a, const float *B, int ldb,
                                           const float *init, int K, int mr, int nv,
                                           int masked, int n)
{
    __m256 acc[4][12];
    __m256i mask[12];
    UNROLL
    for (int v = 0; v < nv; v++)
        mask[v] = lane_mask(n - 8 * v);
    UNROLL
    for (int r = 0; r < mr; r++) {
        __m256 c0 = _mm256_set1_ps(init ? init[r] : 0.0f);
        UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = c0;
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        __m256 a[4];
        UNROLL
        for (int r = 0; r < mr; r++)
            a[r] = _mm256_set1_ps(trans_a ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k]);
        UNROLL
        for (int v = 0; v < nv; v++) {
            __m256 bv = masked ? _mm256_maskload_ps(b + 8 * v, mask[v])
                               : _mm256_loadu_ps(b + 8 * v);
            UNROLL
            for (int r = 0; r < mr; r++)
                acc[r][v] = _mm256_fmadd_ps(a[r], bv, acc[r][v]);
        }
    }
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int v = 0; v < nv; v++)
            if (masked)
                _mm256_maskstore_ps(C + (size_t)r * ldc + 8 * v, mask[v], acc[r][v]);
            else
                _mm256_storeu_ps(C + (size_t)r * ldc + 8 * v, acc[r][v]);
}

/* All columns of MR rows: blocks of NV vectors, then one block of what is
 * left (every block size its own unrolled code). */
#define NN_LEFT(v)                                                                          \
    case v:                                                                                 \
        nn_block(C + j, ldc, A, lda, trans_a, B + j, ldb, init, K, MR_, v, 1, N - j);            \
        break;
#define NN_ROWS(MR, NV)                                                                     \
    BS_AVX2 static void nn_rows_##MR(float *C, int ldc, const float *A, int lda,            \
                                     int trans_a, const float *B, int ldb,                  \
                                     const float *init, int N, int K)                       \
    {                                                                                       \
        enum { MR_ = MR };                                                                  \
        int j = 0;                                                                          \
        for (; j + 8 * NV <= N; j += 8 * NV)                                                \
            nn_block(C + j, ldc, A, lda, trans_a, B + j, ldb, init, K, MR, NV, 0, 8 * NV);     \
        switch ((N - j + 7) / 8) {                                                          \
            NN_LEFT(1) NN_LEFT(2) NN_LEFT(3) NN_LEFT(4) NN_LEFT(5) NN_LEFT(6)               \
            NN_LEFT(7) NN_LEFT(8) NN_LEFT(9) NN_LEFT(10) NN_LEFT(11)                        \
        default: break;                                                                     \
        }                                                                                   \
    }
NN_ROWS(1, 12)
NN_ROWS(2, 6)
NN_ROWS(3, 4)
NN_ROWS(4, 2)

BS_AVX2 static void nn_avx2(float *C, int ldc, const float *A, int lda, int trans_a,
                            const float *B, int ldb, const float *init, int M, int N, int K)
{
    for (int i = 0; i < M; i += 4) {
        float *c = C + (size_t)i * ldc;
        const float *a = A + (trans_a ? (size_t)i : (size_t)i * lda);
        const float *in = init ? init + i : NULL;
        switch (M - i < 4 ? M - i : 4) {
        case 1: nn_rows_1(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        case 2: nn_rows_2(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        case 3: nn_rows_3(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        default: nn_rows_4(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        }
    }
}

#endif /* BS_HAVE_AVX2 */

/* ------------------------------------------------------------------------ */

int bs_gemm_portable = 0;

void bs_gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                const float *bias, int M, int N, int K)
{
#if BS_HAVE_AVX2
    if (!bs_gemm_portable && bs_cpu_avx2()) {
        nt_avx2(C, ldc, A, lda, B, ldb, bias, M, N, K);
        return;
    }
#endif
    nt_portable(C, ldc, A, lda, B, ldb, bias, M, N, K);
}

void bs_gemm_nn(float *C, int ldc, const float *A, int lda, int trans_a, const float *B,
                int ldb, const float *init, int M, int N, int K)
{
#if BS_HAVE_AVX2
    if (!bs_gemm_portable && bs_cpu_avx2()) {
        nn_avx2(C, ldc, A, lda, trans_a, B, ldb, init, M, N, K);
        return;
    }
#endif
    nn_portable(C, ldc, A, lda, trans_a, B, ldb, init, M, N, K);
}
