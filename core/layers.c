/* layers — forward and backward of every layer type; see layers.h for the
 * conventions (shapes, which gradients are overwritten or accumulated). */
#include "core/layers.h"

#include "core/gemm.h"
#include "core/simd.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* linear */

/* The forward pass and the input gradient go through core/gemm.h, whose
 * products are row-stable (a row's result never depends on the rows beside
 * it); sgemm is kept for the weight gradient, which only training needs. */
void bs_linear_forward(float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int OC)
{
    /* out (B,OC) = inp (B,C) @ weight^T (C,OC) + bias */
    bs_gemm_nt(out, OC, inp, C, weight, C, bias, B, OC, C);
}

void bs_linear_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, int B, int C, int OC)
{
    /* forward was out = inp W^T + b, so:
     * dinp (B,C) = dout (B,OC) @ W (OC,C): per row, the rows of W summed
     *              in order, weighted by dout
     * dW (OC,C) += dout^T (OC,B) @ inp (B,C)
     * db (OC)   += sum over the batch of dout */
    if (dinp)
        bs_gemm_nn(dinp, C, dout, OC, 0, weight, C, NULL, B, C, OC);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, B,
                    1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias)
        for (int b = 0; b < B; b++) {
            const float *d = dout + (size_t)b * OC;
            for (int o = 0; o < OC; o++)
                dbias[o] += d[o];
        }
}

/* ------------------------------------------------------------------------ */
/* short vectors for the copy and select loops below */

#define LANES 4

typedef float v4 __attribute__((vector_size(LANES * sizeof(float))));

static v4 load4(const float *p)
{
    v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ------------------------------------------------------------------------ */
/* conv2d, by unfolding each sample into a matrix (im2col) */

int bs_conv_out_size(int n, int k, int s, int p)
{
    if (k <= 0 || s <= 0 || p < 0 || n + 2 * p < k)
        return 0;
    return (n + 2 * p - k) / s + 1;
}

size_t bs_conv2d_scratch(const bs_conv_dims *d)
{
    return (size_t)d->C * d->K * d->K * d->OH * d->OW;
}

/* The outputs o in [*lo,*hi) (of n_out) whose tap k lands inside the input,
 * 0 <= o*s - pad + k < n: the bounds checks of im2col and col2im hoisted
 * out of their inner loops. */
static void tap_range(int n, int n_out, int k, int s, int pad, int *lo, int *hi)
{
    int first = pad - k, last = n - 1 + pad - k;
    *hi = last < 0 ? 0 : last / s + 1;
    if (*hi > n_out)
        *hi = n_out;
    *lo = first <= 0 ? 0 : (first + s - 1) / s;
    if (*lo > *hi)
        *lo = *hi;
}

/* col (C*K*K, OH*OW): row (c,ky,kx), column (oy,ox) holds the input pixel
 * under kernel tap (ky,kx) when the window is at output (oy,ox); 0 in the
 * padding. */
static void im2col(float *restrict col, const float *restrict img,
                   const bs_conv_dims *d)
{
    int K = d->K, S = d->stride, OW = d->OW, OHW = d->OH * d->OW;
    for (int c = 0; c < d->C; c++)
        for (int ky = 0; ky < K; ky++) {
            int oy0, oy1;
            tap_range(d->H, d->OH, ky, S, d->pad, &oy0, &oy1);
            for (int kx = 0; kx < K; kx++) {
                float *row = col + ((size_t)(c * K + ky) * K + kx) * OHW;
                const float *plane = img + (size_t)c * d->H * d->W;
                int ox0, ox1, xoff = kx - d->pad;
                tap_range(d->W, OW, kx, S, d->pad, &ox0, &ox1);
                int y1 = ox0 < ox1 ? oy1 : oy0; /* rows that see the input */
                memset(row, 0, (size_t)oy0 * OW * sizeof(float));
                for (int oy = oy0; oy < y1; oy++) {
                    /* src[i] is the pixel of output column ox0 + i */
                    const float *src = plane + (size_t)(oy * S - d->pad + ky) * d->W +
                                       (ox0 * S + xoff);
                    float *r = row + (size_t)oy * OW;
                    /* rows are short (OW floats): plain loops, no libc calls */
                    for (int ox = 0; ox < ox0; ox++)
                        r[ox] = 0.0f;
                    int i = 0, n = ox1 - ox0;
                    if (S == 1)
                        for (; i + LANES <= n; i += LANES) {
                            v4 v = load4(src + i);
                            memcpy(r + ox0 + i, &v, sizeof v);
                        }
                    for (; i < n; i++)
                        r[ox0 + i] = src[i * S];
                    for (int ox = ox1; ox < OW; ox++)
                        r[ox] = 0.0f;
                }
                memset(row + (size_t)y1 * OW, 0, (size_t)(d->OH - y1) * OW * sizeof(float));
            }
        }
}

/* The adjoint of im2col: adds every column entry back onto its pixel. Each
 * pixel receives its terms in (c,ky,kx,oy,ox) order, whatever the geometry,
 * so the sums round the same on every path. */
static void col2im(float *restrict img, const float *restrict col,
                   const bs_conv_dims *d)
{
    int K = d->K, S = d->stride, OW = d->OW, OHW = d->OH * d->OW;
    memset(img, 0, (size_t)d->C * d->H * d->W * sizeof(float));
    for (int c = 0; c < d->C; c++)
        for (int ky = 0; ky < K; ky++) {
            int oy0, oy1;
            tap_range(d->H, d->OH, ky, S, d->pad, &oy0, &oy1);
            for (int kx = 0; kx < K; kx++) {
                const float *row = col + ((size_t)(c * K + ky) * K + kx) * OHW;
                float *plane = img + (size_t)c * d->H * d->W;
                int ox0, ox1, xoff = kx - d->pad;
                tap_range(d->W, OW, kx, S, d->pad, &ox0, &ox1);
                int y1 = ox0 < ox1 ? oy1 : oy0; /* rows that reach the input */
                for (int oy = oy0; oy < y1; oy++) {
                    /* dst[i] is the pixel of output column ox0 + i */
                    float *dst = plane + (size_t)(oy * S - d->pad + ky) * d->W +
                                 (ox0 * S + xoff);
                    const float *r = row + (size_t)oy * OW + ox0;
                    int i = 0, n = ox1 - ox0;
                    if (S == 1)
                        for (; i + LANES <= n; i += LANES) {
                            v4 v = load4(dst + i) + load4(r + i);
                            memcpy(dst + i, &v, sizeof v);
                        }
                    for (; i < n; i++)
                        dst[i * S] += r[i];
                }
            }
        }
}

/* Stride 1 and no padding: the products can read the input in place of
 * the unfolded matrix (core/gemm.h); g gets the geometry. */
static int direct_geometry(const bs_conv_dims *d, bs_gemm_conv *g)
{
    *g = (bs_gemm_conv){.C = d->C, .H = d->H, .W = d->W, .OC = d->OC, .OH = d->OH,
                        .OW = d->OW, .K = d->K};
    return d->stride == 1 && d->pad == 0;
}

void bs_conv2d_forward(float *out, const float *inp, const float *weight,
                       const float *bias, float *col, int B,
                       const bs_conv_dims *d)
{
    int CKK = d->C * d->K * d->K, OHW = d->OH * d->OW;
    size_t in_n = (size_t)d->C * d->H * d->W, out_n = (size_t)d->OC * OHW;
    bs_gemm_conv g;
    int direct = direct_geometry(d, &g);
    for (int b = 0; b < B; b++) {
        float *o = out + b * out_n;
        if (direct && bs_gemm_conv_forward(o, inp + b * in_n, weight, bias, &g))
            continue;
        im2col(col, inp + b * in_n, d);
        /* o (OC,OHW) = bias + weight (OC,CKK) @ col (CKK,OHW) */
        bs_gemm_nn(o, OHW, weight, CKK, 0, col, OHW, bias, d->OC, OHW, CKK);
    }
}

void bs_conv2d_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, float *col, int B,
                        const bs_conv_dims *d)
{
    int CKK = d->C * d->K * d->K, OHW = d->OH * d->OW;
    size_t in_n = (size_t)d->C * d->H * d->W, out_n = (size_t)d->OC * OHW;
    bs_gemm_conv geom;
    int direct = direct_geometry(d, &geom);
    for (int b = 0; b < B; b++) {
        const float *g = dout + b * out_n;
        if (dbias)
            for (int oc = 0; oc < d->OC; oc++) {
                const float *go = g + (size_t)oc * OHW;
                float s = 0.0f;
                for (int i = 0; i < OHW; i++)
                    s += go[i];
                dbias[oc] += s;
            }
        if (dweight) {
            /* forward was o = W col, so dW (OC,CKK) += g (OC,OHW) @ col^T */
            im2col(col, inp + b * in_n, d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d->OC, CKK, OHW,
                        1.0f, g, OHW, col, OHW, 1.0f, dweight, CKK);
        }
        if (dinp && !(direct && bs_gemm_conv_backward(dinp + b * in_n, g, weight, &geom))) {
            /* dcol (CKK,OHW) = W^T (CKK,OC) @ g (OC,OHW), folded back */
            bs_gemm_nn(col, OHW, weight, CKK, 1, g, OHW, NULL, CKK, OHW, d->OC);
            col2im(dinp + b * in_n, col, d);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* maxpool2d */

/* Offset within the input plane of the first maximum of window (oy,ox). */
static int pool_argmax(const float *plane, int oy, int ox, const bs_conv_dims *d)
{
    int best = -1;
    float bv = -FLT_MAX;
    for (int ky = 0; ky < d->K; ky++) {
        int y = oy * d->stride + ky;
        if (y >= d->H)
            break;
        for (int kx = 0; kx < d->K; kx++) {
            int x = ox * d->stride + kx;
            if (x >= d->W)
                break;
            float v = plane[y * d->W + x];
            if (best < 0 || v > bv) {
                bv = v;
                best = y * d->W + x;
            }
        }
    }
    return best;
}

#if BS_HAVE_AVX2
/* The 2x2, stride 2 windows of output row oy, four at a time: the same
 * first maximum in the same order as the scalar loop ((0,0), (0,1), (1,0),
 * (1,1), a later value taking over only when strictly greater). Returns how
 * many outputs of the row it did (a multiple of 4); the scalar loop does
 * the rest. (Eight at a time measured no faster on the CNN.) */
BS_AVX2 static int pool_row_2x2(float *o, int *argmax, const float *plane, int oy,
                                const bs_conv_dims *d)
{
    int W = d->W, ox = 0;
    const float *r0 = plane + (size_t)2 * oy * W, *r1 = r0 + W;
    for (; ox + 4 <= d->OW; ox += 4) {
        /* evens and odds of 8 floats (in 128 bits the shuffle keeps order) */
        __m128 a0 = _mm_loadu_ps(r0 + 2 * ox), b0 = _mm_loadu_ps(r0 + 2 * ox + 4);
        __m128 a1 = _mm_loadu_ps(r1 + 2 * ox), b1 = _mm_loadu_ps(r1 + 2 * ox + 4);
        __m128 v[4] = {_mm_shuffle_ps(a0, b0, 0x88), _mm_shuffle_ps(a0, b0, 0xdd),
                       _mm_shuffle_ps(a1, b1, 0x88), _mm_shuffle_ps(a1, b1, 0xdd)};
        __m128i at = _mm_add_epi32(_mm_set1_epi32(2 * oy * W + 2 * ox),
                                   _mm_setr_epi32(0, 2, 4, 6));
        __m128i step[4] = {_mm_setzero_si128(), _mm_set1_epi32(1), _mm_set1_epi32(W),
                           _mm_set1_epi32(W + 1)};
        __m128 best = v[0];
        __m128i best_at = at;
        for (int j = 1; j < 4; j++) {
            __m128 gt = _mm_cmp_ps(v[j], best, _CMP_GT_OQ);
            best = _mm_blendv_ps(best, v[j], gt);
            best_at = _mm_castps_si128(_mm_blendv_ps(
                _mm_castsi128_ps(best_at), _mm_castsi128_ps(_mm_add_epi32(at, step[j])), gt));
        }
        _mm_storeu_ps(o + (size_t)oy * d->OW + ox, best);
        if (argmax)
            _mm_storeu_si128((__m128i *)(argmax + (size_t)oy * d->OW + ox), best_at);
    }
    return ox;
}
#endif

/* One plane's pooling: o (OH,OW) gets each window's first maximum and,
 * when argmax is not NULL, its offset in the plane (as pool_argmax). */
static void pool_plane(float *o, int *argmax, const float *plane,
                       const bs_conv_dims *d)
{
    int K = d->K, S = d->stride, W = d->W;
#if BS_HAVE_AVX2
    /* every window a full 2x2 at stride 2 */
    int vector_rows = K == 2 && S == 2 && 2 * d->OH <= d->H && 2 * d->OW <= W &&
                      bs_cpu_avx2();
#endif
    for (int oy = 0; oy < d->OH; oy++) {
        int y0 = oy * S, kh = d->H - y0 < K ? d->H - y0 : K;
        int ox = 0;
#if BS_HAVE_AVX2
        if (vector_rows)
            ox = pool_row_2x2(o, argmax, plane, oy, d);
#endif
        for (; ox < d->OW; ox++) {
            int x0 = ox * S, kw = W - x0 < K ? W - x0 : K;
            int best = y0 * W + x0;
            float bv = plane[best];
            int rows = kh; /* rows still to scan */
            if (kh == 2 && kw == 2) {
                /* the common 2x2 window, unrolled in the same order */
                int at[3] = {best + 1, best + W, best + W + 1};
                for (int j = 0; j < 3; j++)
                    if (plane[at[j]] > bv) {
                        bv = plane[at[j]];
                        best = at[j];
                    }
                rows = 0;
            }
            for (int ky = 0; ky < rows; ky++)
                for (int kx = 0; kx < kw; kx++) {
                    int at = (y0 + ky) * W + x0 + kx;
                    if (plane[at] > bv) {
                        bv = plane[at];
                        best = at;
                    }
                }
            o[oy * d->OW + ox] = bv;
            if (argmax)
                argmax[oy * d->OW + ox] = best;
        }
    }
}

void bs_maxpool2d_forward(float *out, const float *inp, int B,
                          const bs_conv_dims *d)
{
    bs_maxpool2d_forward_argmax(out, NULL, inp, B, d);
}

void bs_maxpool2d_forward_argmax(float *out, int *argmax, const float *inp,
                                 int B, const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    for (int bc = 0; bc < B * d->C; bc++)
        pool_plane(out + bc * out_plane, argmax ? argmax + bc * out_plane : NULL,
                   inp + bc * in_plane, d);
}

void bs_maxpool2d_backward(float *dinp, const float *dout, const float *inp,
                           int B, const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    memset(dinp, 0, (size_t)B * d->C * in_plane * sizeof(float));
    for (int bc = 0; bc < B * d->C; bc++) {
        const float *plane = inp + bc * in_plane;
        const float *g = dout + bc * out_plane;
        float *di = dinp + bc * in_plane;
        for (int oy = 0; oy < d->OH; oy++)
            for (int ox = 0; ox < d->OW; ox++)
                di[pool_argmax(plane, oy, ox, d)] += g[oy * d->OW + ox];
    }
}

void bs_maxpool2d_backward_argmax(float *dinp, const float *dout,
                                  const int *argmax, int B,
                                  const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    memset(dinp, 0, (size_t)B * d->C * in_plane * sizeof(float));
    for (int bc = 0; bc < B * d->C; bc++) {
        const float *g = dout + bc * out_plane;
        const int *at = argmax + bc * out_plane;
        float *di = dinp + bc * in_plane;
        for (size_t i = 0; i < out_plane; i++)
            di[at[i]] += g[i];
    }
}

/* ------------------------------------------------------------------------ */
/* elementwise activations */

/* relu selects with a comparison mask, eight lanes at a time with AVX2,
 * else four: (x > 0) is all ones or all zeros, so mask & bits gives x or +0.0f exactly as the scalar
 * x > 0 ? x : 0.0f (NaN and -0.0f included). */
typedef int32_t v4i __attribute__((vector_size(LANES * sizeof(int32_t))));

#if BS_HAVE_AVX2
BS_AVX2 static size_t relu_select_avx2(float *dst, const float *test, const float *val,
                                       size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 keep = _mm256_cmp_ps(_mm256_loadu_ps(test + i), _mm256_setzero_ps(), _CMP_GT_OQ);
        _mm256_storeu_ps(dst + i, _mm256_and_ps(_mm256_loadu_ps(val + i), keep));
    }
    return i;
}
#endif

static void relu_select(float *dst, const float *test, const float *val, size_t n)
{
    const v4 zero = {0};
    size_t i = 0;
#if BS_HAVE_AVX2
    if (bs_cpu_avx2())
        i = relu_select_avx2(dst, test, val, n);
#endif
    for (; i + LANES <= n; i += LANES) {
        v4i keep = load4(test + i) > zero;
        v4 v = load4(val + i);
        v4i bits;
        memcpy(&bits, &v, sizeof bits);
        bits &= keep;
        memcpy(dst + i, &bits, sizeof bits);
    }
    for (; i < n; i++)
        dst[i] = test[i] > 0.0f ? val[i] : 0.0f;
}

void bs_relu_forward(float *out, const float *inp, size_t n)
{
    relu_select(out, inp, inp, n);
}

void bs_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    relu_select(dinp, out, dout, n);
}

#if BS_HAVE_AVX2
/* e^x for eight floats (Cephes' expf: x = n ln2 + r, |r| <= ln2/2, a
 * degree-6 polynomial in r, scaled by 2^n), within 2 ulp of expf; beyond
 * +-88.38 it gives inf or 0. */
BS_AVX2 static __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)),
                      _mm256_set1_ps(88.3762626647949f));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                               _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n through the exponent bits; n = 128 (x near 88.38) gives inf */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
                                                   _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* 1 / (1 + e^-x); NaN stays NaN. */
BS_AVX2 static __m256 sigmoid8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
    return _mm256_blendv_ps(s, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* Every element through sigmoid8, the last n mod 8 through a mask, so that
 * an element's result never depends on where it sits (row-stable). */
BS_AVX2 static void sigmoid_avx2(float *out, const float *inp, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, sigmoid8(_mm256_loadu_ps(inp + i)));
    if (i < n) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_maskstore_ps(out + i, m, sigmoid8(_mm256_maskload_ps(inp + i, m)));
    }
}
#endif

void bs_sigmoid_forward(float *out, const float *inp, size_t n)
{
#if BS_HAVE_AVX2
    if (bs_cpu_avx2()) {
        sigmoid_avx2(out, inp, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

void bs_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    /* d sigmoid(z)/dz = s (1 - s) */
    for (size_t i = 0; i < n; i++)
        dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void bs_tanh_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void bs_tanh_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    /* d tanh(z)/dz = 1 - tanh(z)^2 */
    for (size_t i = 0; i < n; i++)
        dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void bs_dropout_forward(float *out, const float *inp, const uint8_t *mask,
                        float p, size_t n)
{
    if (!mask) {
        if (out != inp)
            memmove(out, inp, n * sizeof(float));
        return;
    }
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        out[i] = mask[i] ? inp[i] * scale : 0.0f;
}

void bs_dropout_backward(float *dinp, const float *dout, const uint8_t *mask,
                         float p, size_t n)
{
    bs_dropout_forward(dinp, dout, mask, p, n);
}

/* ------------------------------------------------------------------------ */
/* softmax cross-entropy */

float bs_softmax_xent_forward(float *probs, float *losses, const float *logits,
                              const int *targets, int B, int V)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * V;
        float *p = probs + (size_t)b * V;
        float maxz = z[0];
        for (int v = 1; v < V; v++)
            if (z[v] > maxz)
                maxz = z[v];
        double sum = 0.0;
        for (int v = 0; v < V; v++) {
            p[v] = expf(z[v] - maxz);
            sum += p[v];
        }
        for (int v = 0; v < V; v++)
            p[v] = (float)(p[v] / sum);
        /* -log softmax(z)_t computed from the logits: no log(0) */
        double loss = -((double)z[targets[b]] - maxz - log(sum));
        if (losses)
            losses[b] = (float)loss;
        total += loss;
    }
    return (float)(total / B);
}

void bs_softmax_xent_backward(float *dlogits, const float *probs,
                              const int *targets, int B, int V, float scale)
{
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * V;
        float *d = dlogits + (size_t)b * V;
        for (int v = 0; v < V; v++)
            d[v] = p[v] * scale;
        d[targets[b]] -= scale;
    }
}
