/* gemm — row-stable matrix products; see gemm.h for why and what.
 *
 * The AVX2 kernels compute a block of MR rows (1 to 5) by NC columns (nt)
 * or MR rows by NV vectors of 8 columns (nn) at a time, keeping the block's
 * sums in registers: MR x NC (or MR x NV) <= 12 accumulators, enough
 * independent FMA chains to hide their latency, and a loaded value of A or
 * B is used by a whole row or column of the block. What one element sees
 * is fixed:
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
    __m256 acc[5][8];
    int K8 = K / 8 * 8;
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int c = 0; c < nc; c++)
            acc[r][c] = _mm256_setzero_ps();
    for (int k = 0; k < K8; k += 8) {
        __m256 a[5];
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
        __m256 a[5];
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
        if (n < NC_) /* else unreachable: no code */                                        \
            nt_block(C + j, ldc, A, lda, B + (size_t)j * ldb, ldb, bias ? bias + j : NULL, K,   \
                 MR_, n);                                                                   \
        break;
#define NT_ROWS(MR, NC)                                                                     \
    BS_AVX2 static void nt_rows_##MR(float *C, int ldc, const float *A, int lda,            \
                                     const float *B, int ldb, const float *bias, int N,     \
                                     int K)                                                 \
    {                                                                                       \
        enum { MR_ = MR, NC_ = NC };                                                        \
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
NT_ROWS(5, 2)

/* Row block b of M rows: [*i0, *i1), the rows spread evenly over
 * ceil(M / 5) blocks of 1 to 5 rows. Every block reads all of B (a weight
 * matrix, hundreds of KB, from L2), so fewer, fuller blocks read it fewer
 * times: 9 rows are 5 + 4, two passes instead of three. */
static int row_blocks(int M)
{
    return (M + 4) / 5;
}

static void row_block(int M, int b, int *i0, int *i1)
{
    int n = row_blocks(M);
    *i0 = (int)((long)M * b / n);
    *i1 = (int)((long)M * (b + 1) / n);
}

BS_AVX2 static void nt_avx2(float *C, int ldc, const float *A, int lda, const float *B,
                            int ldb, const float *bias, int M, int N, int K)
{
    for (int bl = 0; bl < row_blocks(M); bl++) {
        int i, i1;
        row_block(M, bl, &i, &i1);
        float *c = C + (size_t)i * ldc;
        const float *a = A + (size_t)i * lda;
        switch (i1 - i) {
        case 1: nt_rows_1(c, ldc, a, lda, B, ldb, bias, N, K); break;
        case 2: nt_rows_2(c, ldc, a, lda, B, ldb, bias, N, K); break;
        case 3: nt_rows_3(c, ldc, a, lda, B, ldb, bias, N, K); break;
        case 4: nt_rows_4(c, ldc, a, lda, B, ldb, bias, N, K); break;
        default: nt_rows_5(c, ldc, a, lda, B, ldb, bias, N, K); break;
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
    __m256 acc[5][12];
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
        __m256 a[5];
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
        if (v <= NV_) /* else unreachable: no code */                                       \
            nn_block(C + j, ldc, A, lda, trans_a, B + j, ldb, init, K, MR_, v, 1, N - j);            \
        break;
#define NN_ROWS(MR, NV)                                                                     \
    BS_AVX2 static void nn_rows_##MR(float *C, int ldc, const float *A, int lda,            \
                                     int trans_a, const float *B, int ldb,                  \
                                     const float *init, int N, int K)                       \
    {                                                                                       \
        enum { MR_ = MR, NV_ = NV };                                                        \
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
NN_ROWS(3, 3)
NN_ROWS(4, 2)
NN_ROWS(5, 2)

BS_AVX2 static void nn_avx2(float *C, int ldc, const float *A, int lda, int trans_a,
                            const float *B, int ldb, const float *init, int M, int N, int K)
{
    for (int bl = 0; bl < row_blocks(M); bl++) {
        int i, i1;
        row_block(M, bl, &i, &i1);
        float *c = C + (size_t)i * ldc;
        const float *a = A + (trans_a ? (size_t)i : (size_t)i * lda);
        const float *in = init ? init + i : NULL;
        switch (i1 - i) {
        case 1: nn_rows_1(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        case 2: nn_rows_2(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        case 3: nn_rows_3(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        case 4: nn_rows_4(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        default: nn_rows_5(c, ldc, a, lda, trans_a, B, ldb, in, N, K); break;
        }
    }
}

/* ---- conv2d with stride 1 and no padding, without unfolding ------------ */

/* The output plane is cut into slots: every output row into vectors of 8
 * pixels (the last one of a row shorter when OW is not a multiple of 8). A
 * slot at output (oy, ox) reads the input at oy*W + ox (plus the tap's
 * offset) and writes the output at oy*OW + ox. A block is up to 2 slots by
 * up to 4 rows of the weight matrix (8 sums, the 4 weights and a loaded
 * vector: 13 of the 16 registers); blocks that hold a short slot read and
 * write it through a mask. */
#define CONV_NV 2

typedef struct conv_slots {
    int n;                  /* slots in the plane */
    int in_at[CONV_NV];     /* of one block: input offsets */
    int out_at[CONV_NV];    /* output offsets */
    int len[CONV_NV];       /* pixels, 1..8 */
} conv_slots;

/* Slot s of the plane as (input offset, output offset, length). */
static void conv_slot(int s, int W, int OW, int *in_at, int *out_at, int *len)
{
    int per_row = (OW + 7) / 8, oy = s / per_row, ox = s % per_row * 8;
    *in_at = oy * W + ox;
    *out_at = oy * OW + ox;
    *len = OW - ox < 8 ? OW - ox : 8;
}

/* Forward: rows oc0..oc0+mr-1 of out (OC, OH*OW) over nv slots:
 * bias, then the taps k = (c,ky,kx) in order, fma(w[oc][k], in[...]) —
 * the same sequence as bias + weight @ im2col(in) in bs_gemm_nn. */
BS_AVX2 static ALWAYS_INLINE void convf_block(float *out, const float *in, const float *w,
                                              const float *bias, const bs_gemm_conv *g,
                                              const conv_slots *sl, int mr, int nv,
                                              int masked)
{
    int KK = g->K * g->K, CKK = g->C * KK, OHW = g->OH * g->OW;
    __m256 acc[4][CONV_NV];
    __m256i mask[CONV_NV];
    UNROLL
    for (int v = 0; v < nv; v++)
        mask[v] = lane_mask(sl->len[v]);
    UNROLL
    for (int r = 0; r < mr; r++) {
        __m256 c0 = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = c0;
    }
    const float *wk = w;
    for (int c = 0; c < g->C; c++)
        for (int ky = 0; ky < g->K; ky++) {
            const float *src = in + ((size_t)c * g->H + ky) * g->W;
            for (int kx = 0; kx < g->K; kx++, wk++) {
                __m256 a[4];
                UNROLL
                for (int r = 0; r < mr; r++)
                    a[r] = _mm256_set1_ps(wk[(size_t)r * CKK]);
                UNROLL
                for (int v = 0; v < nv; v++) {
                    const float *at = src + kx + sl->in_at[v];
                    __m256 b = masked ? _mm256_maskload_ps(at, mask[v]) : _mm256_loadu_ps(at);
                    UNROLL
                    for (int r = 0; r < mr; r++)
                        acc[r][v] = _mm256_fmadd_ps(a[r], b, acc[r][v]);
                }
            }
        }
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int v = 0; v < nv; v++) {
            float *at = out + (size_t)r * OHW + sl->out_at[v];
            if (masked)
                _mm256_maskstore_ps(at, mask[v], acc[r][v]);
            else
                _mm256_storeu_ps(at, acc[r][v]);
        }
}

/* Backward to the input: rows i0..i0+mr-1 of dcol = W^T (CKK,OC) @ dout,
 * each row i = (c,ky,kx) summed over oc in order, then added at once onto
 * the input pixels it came from (what col2im does with a stored dcol);
 * tap_at[r] is row i0+r's offset in the input, (c*H + ky)*W + kx. */
BS_AVX2 static ALWAYS_INLINE void convb_block(float *dinp, const float *dout, const float *w,
                                              int i0, const int *tap_at,
                                              const bs_gemm_conv *g, const conv_slots *sl,
                                              int mr, int nv, int masked)
{
    int KK = g->K * g->K, CKK = g->C * KK, OHW = g->OH * g->OW;
    __m256 acc[4][CONV_NV];
    __m256i mask[CONV_NV];
    UNROLL
    for (int v = 0; v < nv; v++)
        mask[v] = lane_mask(sl->len[v]);
    UNROLL
    for (int r = 0; r < mr; r++)
        UNROLL
        for (int v = 0; v < nv; v++)
            acc[r][v] = _mm256_setzero_ps();
    for (int o = 0; o < g->OC; o++) {
        const float *go = dout + (size_t)o * OHW;
        __m256 a[4];
        UNROLL
        for (int r = 0; r < mr; r++)
            a[r] = _mm256_set1_ps(w[(size_t)o * CKK + i0 + r]);
        UNROLL
        for (int v = 0; v < nv; v++) {
            const float *at = go + sl->out_at[v];
            __m256 b = masked ? _mm256_maskload_ps(at, mask[v]) : _mm256_loadu_ps(at);
            UNROLL
            for (int r = 0; r < mr; r++)
                acc[r][v] = _mm256_fmadd_ps(a[r], b, acc[r][v]);
        }
    }
    UNROLL
    for (int r = 0; r < mr; r++) {
        float *dst = dinp + tap_at[r];
        UNROLL
        for (int v = 0; v < nv; v++) {
            float *at = dst + sl->in_at[v];
            if (masked)
                _mm256_maskstore_ps(at, mask[v],
                                    _mm256_add_ps(_mm256_maskload_ps(at, mask[v]), acc[r][v]));
            else
                _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), acc[r][v]));
        }
    }
}

/* Fills sl with slots s0..s0+nv-1; 1 when one of them is short. */
static int conv_fill_slots(conv_slots *sl, int s0, int nv, const bs_gemm_conv *g)
{
    int masked = 0;
    for (int v = 0; v < nv; v++) {
        conv_slot(s0 + v, g->W, g->OW, &sl->in_at[v], &sl->out_at[v], &sl->len[v]);
        masked |= sl->len[v] < 8;
    }
    return masked;
}

/* The block functions for every (rows, slots, masked) a driver can ask
 * for, each its own unrolled code: case (mr * 4 + nv) * 2 + masked. */
#define CONV_CASE(KIND, MR, NV, ...)                                                        \
    case (MR * 4 + NV) * 2:                                                                 \
        KIND##_block(__VA_ARGS__, MR, NV, 0);                                               \
        break;                                                                              \
    case (MR * 4 + NV) * 2 + 1:                                                             \
        KIND##_block(__VA_ARGS__, MR, NV, 1);                                               \
        break;
#define CONV_DISPATCH(KIND, mr, nv, masked, ...)                                            \
    switch ((mr * 4 + nv) * 2 + masked) {                                                   \
        CONV_CASE(KIND, 1, 1, __VA_ARGS__) CONV_CASE(KIND, 1, 2, __VA_ARGS__)               \
        CONV_CASE(KIND, 2, 1, __VA_ARGS__) CONV_CASE(KIND, 2, 2, __VA_ARGS__)               \
        CONV_CASE(KIND, 3, 1, __VA_ARGS__) CONV_CASE(KIND, 3, 2, __VA_ARGS__)               \
        CONV_CASE(KIND, 4, 1, __VA_ARGS__) CONV_CASE(KIND, 4, 2, __VA_ARGS__)               \
    default: break;                                                                         \
    }

/* The slots in blocks of the same size: ceil(S / CONV_NV) blocks of at
 * most CONV_NV slots, spread evenly so that no block is left with too few
 * sums to hide the FMA latency. Block bl covers slots [*s0, *s1). */
static void conv_block_span(int S, int bl, int *s0, int *s1)
{
    int blocks = (S + CONV_NV - 1) / CONV_NV;
    *s0 = (int)((long)S * bl / blocks);
    *s1 = (int)((long)S * (bl + 1) / blocks);
}

/* Forward (out = conv(in)) or backward (dinp = conv^T(dout)): slot blocks
 * outside, blocks of 4 weight rows inside: output channels lo..hi-1
 * (forward), or the taps (c,ky,kx) of input channels lo..hi-1 (backward,
 * which writes those channels' planes only). Every row's sums are the same
 * whichever rows are done beside it. Inlined into one function per
 * direction. */
BS_AVX2 static ALWAYS_INLINE void conv_avx2(int backward, float *dst, const float *src, const float *w,
                              const float *bias, const bs_gemm_conv *g, int lo, int hi)
{
    int KK = g->K * g->K, CKK = g->C * KK, OHW = g->OH * g->OW, S = (g->OW + 7) / 8 * g->OH;
    int first = backward ? lo * KK : lo, rows = backward ? hi * KK : hi;
    if (backward)
        memset(dst + (size_t)lo * g->H * g->W, 0,
               (size_t)(hi - lo) * g->H * g->W * sizeof(float));
    for (int bl = 0; bl * CONV_NV < S; bl++) {
        int s0, s1;
        conv_block_span(S, bl, &s0, &s1);
        conv_slots sl;
        int masked = conv_fill_slots(&sl, s0, s1 - s0, g), nv = s1 - s0;
        int tap[3] = {lo, 0, 0}; /* backward: (c, ky, kx) of row i */
        for (int i = first; i < rows; i += 4) {
            int mr = rows - i < 4 ? rows - i : 4;
            if (backward) {
                int tap_at[4];
                for (int r = 0; r < mr; r++) {
                    tap_at[r] = (tap[0] * g->H + tap[1]) * g->W + tap[2];
                    if (++tap[2] == g->K && (tap[2] = 0, ++tap[1] == g->K))
                        tap[1] = 0, tap[0]++;
                }
                CONV_DISPATCH(convb, mr, nv, masked, dst, src, w, i, tap_at, g, &sl)
            } else {
                CONV_DISPATCH(convf, mr, nv, masked, dst + (size_t)i * OHW, src,
                              w + (size_t)i * CKK, bias ? bias + i : NULL, g, &sl)
            }
        }
    }
}

BS_AVX2 static void convf_avx2(float *out, const float *in, const float *w, const float *bias,
                               const bs_gemm_conv *g, int lo, int hi)
{
    conv_avx2(0, out, in, w, bias, g, lo, hi);
}

BS_AVX2 static void convb_avx2(float *dinp, const float *dout, const float *w,
                               const bs_gemm_conv *g, int lo, int hi)
{
    conv_avx2(1, dinp, dout, w, NULL, g, lo, hi);
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

int bs_gemm_conv_direct(void)
{
#if BS_HAVE_AVX2
    return !bs_gemm_portable && bs_cpu_avx2();
#else
    return 0;
#endif
}

int bs_gemm_conv_forward(float *out, const float *in, const float *weight, const float *bias,
                         const bs_gemm_conv *g, int lo, int hi)
{
#if BS_HAVE_AVX2
    if (!bs_gemm_portable && bs_cpu_avx2()) {
        convf_avx2(out, in, weight, bias, g, lo, hi);
        return 1;
    }
#endif
    (void)out, (void)in, (void)weight, (void)bias, (void)g, (void)lo, (void)hi;
    return 0;
}

int bs_gemm_conv_backward(float *dinp, const float *dout, const float *weight,
                          const bs_gemm_conv *g, int lo, int hi)
{
#if BS_HAVE_AVX2
    if (!bs_gemm_portable && bs_cpu_avx2()) {
        convb_avx2(dinp, dout, weight, g, lo, hi);
        return 1;
    }
#endif
    (void)dinp, (void)dout, (void)weight, (void)g, (void)lo, (void)hi;
    return 0;
}
