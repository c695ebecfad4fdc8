/* layers — forward and backward of every layer type; see layers.h for the
 * conventions (shapes, which gradients are overwritten or accumulated). */
#include "core/layers.h"

#include "core/gemm.h"
#include "core/model.h" /* bs_pad_mode */
#include "core/simd.h"
#include "core/team.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* linear */

/* Products of fewer multiply-adds than this (per sample) run on the calling
 * thread even with a team. A run costs about 0.4 us with the threads awake,
 * but the parts' data must also travel between the cores' caches: on the
 * 2-core machine this was measured on, forward and input gradient with 2
 * threads against 1 were x0.5 to x0.9 below 150,000 multiply-adds, x1.2 to
 * x1.7 for a linear layer of 313,600 (784x400), x0.93 to x1.3 for
 * convolutions of 230,400 to 819,200. */
#define TEAM_MIN_MACS 300000

/* How many parts a product of macs multiply-adds is cut into. */
static int team_parts(bs_team *team, size_t macs)
{
    return team && macs >= TEAM_MIN_MACS ? bs_team_threads(team) : 1;
}

/* Part k of parts of n items as [*lo, *hi), cut at multiples of align (whole
 * vectors or row blocks of the kernels); the last part takes the rest. */
static void part_of(int n, int parts, int k, int align, int *lo, int *hi)
{
    long units = (n + align - 1) / align;
    *lo = (int)(units * k / parts) * align;
    *hi = k + 1 == parts ? n : (int)(units * (k + 1) / parts) * align;
    *lo = *lo < n ? *lo : n;
    *hi = *hi < n ? *hi : n;
}

/* The forward pass and the input gradient go through core/gemm.h, whose
 * products are row-stable (a row's result never depends on the rows beside
 * it) and column-stable, so a team's threads each take a range of output
 * columns and the bits are those of one thread; sgemm is kept for the
 * weight gradient, which only training needs. */
typedef struct linear_job {
    float *out;                    /* forward: out; backward: dinp */
    const float *inp, *weight, *bias; /* backward: inp is dout */
    int B, C, OC, parts;
} linear_job;

/* out columns lo..hi-1 (output features) */
static void linear_forward_part(void *ctx, int k)
{
    const linear_job *j = ctx;
    int lo, hi;
    part_of(j->OC, j->parts, k, 8, &lo, &hi);
    if (lo < hi)
        bs_gemm_nt(j->out + lo, j->OC, j->inp, j->C, j->weight + (size_t)lo * j->C, j->C,
                   j->bias ? j->bias + lo : NULL, j->B, hi - lo, j->C);
}

/* dinp columns lo..hi-1 (input features) */
static void linear_backward_part(void *ctx, int k)
{
    const linear_job *j = ctx;
    int lo, hi;
    part_of(j->C, j->parts, k, 8, &lo, &hi);
    if (lo < hi)
        bs_gemm_nn(j->out + lo, j->C, j->inp, j->OC, 0, j->weight + lo, j->C, NULL, j->B,
                   hi - lo, j->OC);
}

void bs_linear_forward(float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int OC, bs_team *team)
{
    /* out (B,OC) = inp (B,C) @ weight^T (C,OC) + bias */
    linear_job j = {out, inp, weight, bias, B, C, OC,
                    team_parts(team, (size_t)C * OC)};
    if (j.parts > 1)
        bs_team_run(team, j.parts, linear_forward_part, &j);
    else
        bs_gemm_nt(out, OC, inp, C, weight, C, bias, B, OC, C);
}

void bs_linear_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, int B, int C, int OC, bs_team *team)
{
    /* forward was out = inp W^T + b, so:
     * dinp (B,C) = dout (B,OC) @ W (OC,C): per row, the rows of W summed
     *              in order, weighted by dout
     * dW (OC,C) += dout^T (OC,B) @ inp (B,C)
     * db (OC)   += sum over the batch of dout */
    if (dinp) {
        linear_job j = {dinp, dout, weight, NULL, B, C, OC,
                        team_parts(team, (size_t)C * OC)};
        if (j.parts > 1)
            bs_team_run(team, j.parts, linear_backward_part, &j);
        else
            bs_gemm_nn(dinp, C, dout, OC, 0, weight, C, NULL, B, C, OC);
    }
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

int bs_window_out_size(int n, int k, int s, int pad_begin, int pad_end, int dilation)
{
    if (k <= 0 || s <= 0 || dilation <= 0 || pad_begin < 0 || pad_end < 0)
        return 0;
    long span = (long)(k - 1) * dilation + 1, room = (long)n + pad_begin + pad_end;
    if (room < span)
        return 0;
    return (int)((room - span) / s + 1);
}

/* The window of d in general form: a square d (kh == 0) spelled out. */
typedef struct window {
    int kh, kw, sh, sw, pt, pl, dh, dw, groups;
} window;

static window window_of(const bs_conv_dims *d)
{
    if (!d->kh)
        return (window){d->K, d->K, d->stride, d->stride, d->pad, d->pad, 1, 1,
                        d->groups > 0 ? d->groups : 1};
    return (window){d->kh, d->kw, d->sh, d->sw, d->pt, d->pl, d->dh > 0 ? d->dh : 1,
                    d->dw > 0 ? d->dw : 1, d->groups > 0 ? d->groups : 1};
}

size_t bs_conv2d_scratch(const bs_conv_dims *d)
{
    window w = window_of(d);
    return (size_t)d->C * w.kh * w.kw * d->OH * d->OW;
}

/* The outputs o in [*lo,*hi) (of n_out) whose tap at offset k lands inside
 * the input, 0 <= o*s - pad + k < n: the bounds checks of im2col and col2im
 * hoisted out of their inner loops. */
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

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* col (C*KH*KW, OH*OW): row (c,ky,kx), column (oy,ox) holds the input pixel
 * under kernel tap (ky,kx) when the window is at output (oy,ox); 0 in the
 * padding. The columns of output rows lo..hi-1. */
static void im2col(float *restrict col, const float *restrict img,
                   const bs_conv_dims *d, int lo, int hi)
{
    window w = window_of(d);
    int S = w.sw, OW = d->OW, OHW = d->OH * d->OW;
    for (int c = 0; c < d->C; c++)
        for (int ky = 0; ky < w.kh; ky++) {
            int oy0, oy1, yoff = ky * w.dh - w.pt;
            tap_range(d->H, d->OH, ky * w.dh, w.sh, w.pt, &oy0, &oy1);
            for (int kx = 0; kx < w.kw; kx++) {
                float *row = col + ((size_t)(c * w.kh + ky) * w.kw + kx) * OHW;
                const float *plane = img + (size_t)c * d->H * d->W;
                int ox0, ox1, xoff = kx * w.dw - w.pl;
                tap_range(d->W, OW, kx * w.dw, S, w.pl, &ox0, &ox1);
                int y1 = ox0 < ox1 ? oy1 : oy0; /* rows that see the input */
                int a = clamp(oy0, lo, hi), b = clamp(y1, lo, hi); /* of them, ours */
                memset(row + (size_t)lo * OW, 0, (size_t)(a - lo) * OW * sizeof(float));
                for (int oy = a; oy < b; oy++) {
                    /* src[i] is the pixel of output column ox0 + i */
                    const float *src = plane + (size_t)(oy * w.sh + yoff) * d->W +
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
                memset(row + (size_t)b * OW, 0, (size_t)(hi - b) * OW * sizeof(float));
            }
        }
}

/* The adjoint of im2col: adds every column entry back onto its pixel. Each
 * pixel receives its terms in (c,ky,kx,oy,ox) order, whatever the geometry,
 * so the sums round the same on every path. The planes of channels
 * c0..c1-1, overwritten: a pixel's terms come from its own channel only. */
static void col2im(float *restrict img, const float *restrict col,
                   const bs_conv_dims *d, int c0, int c1)
{
    window w = window_of(d);
    int S = w.sw, OW = d->OW, OHW = d->OH * d->OW;
    size_t plane_n = (size_t)d->H * d->W;
    memset(img + c0 * plane_n, 0, (size_t)(c1 - c0) * plane_n * sizeof(float));
    for (int c = c0; c < c1; c++)
        for (int ky = 0; ky < w.kh; ky++) {
            int oy0, oy1, yoff = ky * w.dh - w.pt;
            tap_range(d->H, d->OH, ky * w.dh, w.sh, w.pt, &oy0, &oy1);
            for (int kx = 0; kx < w.kw; kx++) {
                const float *row = col + ((size_t)(c * w.kh + ky) * w.kw + kx) * OHW;
                float *plane = img + (size_t)c * d->H * d->W;
                int ox0, ox1, xoff = kx * w.dw - w.pl;
                tap_range(d->W, OW, kx * w.dw, S, w.pl, &ox0, &ox1);
                int y1 = ox0 < ox1 ? oy1 : oy0; /* rows that reach the input */
                for (int oy = oy0; oy < y1; oy++) {
                    /* dst[i] is the pixel of output column ox0 + i */
                    float *dst = plane + (size_t)(oy * w.sh + yoff) * d->W +
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

/* A square kernel at stride 1, no padding, no dilation and one group: the
 * products can read the input in place of the unfolded matrix
 * (core/gemm.h); g gets the geometry. */
static int direct_geometry(const bs_conv_dims *d, bs_gemm_conv *g)
{
    window w = window_of(d);
    *g = (bs_gemm_conv){.C = d->C, .H = d->H, .W = d->W, .OC = d->OC, .OH = d->OH,
                        .OW = d->OW, .K = w.kh};
    return w.kh == w.kw && w.sh == 1 && w.sw == 1 && w.pt == 0 && w.pl == 0 &&
           w.dh == 1 && w.dw == 1 && w.groups == 1 && d->OH == d->H - w.kh + 1 &&
           d->OW == d->W - w.kw + 1;
}

/* One sample's conv2d product, cut into parts for a team, each part's data
 * its own as far as it goes: output channels (direct forward), input
 * channels (direct backward; unfolded backward, whose rows of W^T dout for
 * a channel fold back onto that channel alone) or output rows (unfolded
 * forward, whose columns of col are unfolded by the part that multiplies
 * them). Every element's sums are the same in any part. */
typedef enum conv_step {
    CONV_DIRECT_FORWARD,    /* o = conv(in), by output channel */
    CONV_DIRECT_BACKWARD,   /* dinp = conv^T(dout), by input channel */
    CONV_UNFOLDED_FORWARD,  /* o = bias + W im2col(in), by output row */
    CONV_UNFOLDED_BACKWARD, /* dinp = col2im(W^T dout), by input channel */
} conv_step;

typedef struct conv_job {
    conv_step step;
    int parts;              /* the most parts a step is cut into */
    int split;              /* the parts of this step */
    const bs_conv_dims *d;
    const bs_gemm_conv *g;  /* direct steps */
    float *out;             /* o or dinp */
    const float *in;        /* in or dout */
    const float *weight, *bias;
    float *col;
} conv_job;

static void conv_part(void *ctx, int k)
{
    const conv_job *j = ctx;
    const bs_conv_dims *d = j->d;
    window w = window_of(d);
    int G = w.groups, Cg = d->C / G, OCg = d->OC / G, KK = w.kh * w.kw, CKKg = Cg * KK;
    int OHW = d->OH * d->OW, lo, hi;
    switch (j->step) {
    case CONV_DIRECT_FORWARD:
        part_of(d->OC, j->split, k, 4, &lo, &hi);
        if (lo < hi)
            bs_gemm_conv_forward(j->out, j->in, j->weight, j->bias, j->g, lo, hi);
        return;
    case CONV_DIRECT_BACKWARD:
        part_of(d->C, j->split, k, 1, &lo, &hi);
        if (lo < hi)
            bs_gemm_conv_backward(j->out, j->in, j->weight, j->g, lo, hi);
        return;
    case CONV_UNFOLDED_FORWARD: {
        /* o (OC,OHW) = bias + weight (OC,CKK) @ col (CKK,OHW) per group, on
         * the columns of output rows lo..hi-1 */
        part_of(d->OH, j->split, k, 1, &lo, &hi);
        if (lo == hi)
            return;
        int c0 = lo * d->OW, n = (hi - lo) * d->OW;
        im2col(j->col, j->in, d, lo, hi);
        for (int gi = 0; gi < G; gi++)
            bs_gemm_nn(j->out + (size_t)gi * OCg * OHW + c0, OHW,
                       j->weight + (size_t)gi * OCg * CKKg, CKKg, 0,
                       j->col + (size_t)gi * CKKg * OHW + c0, OHW,
                       j->bias ? j->bias + gi * OCg : NULL, OCg, n, CKKg);
        return;
    }
    case CONV_UNFOLDED_BACKWARD:
        /* dcol (CKK,OHW) = W^T (CKK,OC) @ dout (OC,OHW) per group, on the
         * rows (c,ky,kx) of input channels lo..hi-1, folded back */
        part_of(d->C, j->split, k, 1, &lo, &hi);
        for (int gi = lo / Cg; gi < G && gi * Cg < hi; gi++) {
            int r0 = (clamp(lo, gi * Cg, (gi + 1) * Cg) - gi * Cg) * KK;
            int r1 = (clamp(hi, gi * Cg, (gi + 1) * Cg) - gi * Cg) * KK;
            bs_gemm_nn(j->col + ((size_t)gi * CKKg + r0) * OHW, OHW,
                       j->weight + (size_t)gi * OCg * CKKg + r0, CKKg, 1,
                       j->in + (size_t)gi * OCg * OHW, OHW, NULL, r1 - r0, OHW, OCg);
        }
        col2im(j->out, j->col, d, lo, hi);
        return;
    }
}

/* Runs one step on the team, or all of it here: in no more parts than
 * it has units to cut (a step by input channel on a gray image is one). */
static void conv_run(bs_team *team, conv_job *j, conv_step step, int units)
{
    j->step = step;
    j->split = j->parts < units ? j->parts : units;
    if (j->split > 1)
        bs_team_run(team, j->split, conv_part, j);
    else
        conv_part(j, 0);
}

/* Multiply-adds of one sample's product (forward or to the input). */
static size_t conv_macs(const bs_conv_dims *d)
{
    window w = window_of(d);
    return (size_t)d->OC * d->OH * d->OW * (d->C / w.groups) * w.kh * w.kw;
}

/* Each group of OC/groups output channels sees its C/groups input channels:
 * its rows of the weight (OCg, CKKg) times its rows of col (CKKg, OHW). With
 * one group these are the whole matrices. */
void bs_conv2d_forward(float *out, const float *inp, const float *weight,
                       const float *bias, float *col, int B,
                       const bs_conv_dims *d, bs_team *team)
{
    size_t in_n = (size_t)d->C * d->H * d->W, out_n = (size_t)d->OC * d->OH * d->OW;
    bs_gemm_conv g;
    int direct = direct_geometry(d, &g) && bs_gemm_conv_direct();
    conv_job j = {.parts = team_parts(team, conv_macs(d)), .d = d, .g = &g, .weight = weight,
                  .bias = bias, .col = col};
    for (int b = 0; b < B; b++) {
        j.out = out + b * out_n;
        j.in = inp + b * in_n;
        if (direct) {
            conv_run(team, &j, CONV_DIRECT_FORWARD, (d->OC + 3) / 4);
        } else {
            conv_run(team, &j, CONV_UNFOLDED_FORWARD, d->OH);
        }
    }
}

void bs_conv2d_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, float *col, int B,
                        const bs_conv_dims *d, bs_team *team)
{
    window w = window_of(d);
    int G = w.groups, OCg = d->OC / G, CKKg = d->C / G * w.kh * w.kw, OHW = d->OH * d->OW;
    size_t in_n = (size_t)d->C * d->H * d->W, out_n = (size_t)d->OC * OHW;
    bs_gemm_conv geom;
    int direct = direct_geometry(d, &geom) && bs_gemm_conv_direct();
    conv_job j = {.parts = team_parts(team, conv_macs(d)), .d = d, .g = &geom,
                  .weight = weight, .col = col};
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
            /* forward was o = W col, so dW (OCg,CKKg) += g (OCg,OHW) @ col^T per group */
            im2col(col, inp + b * in_n, d, 0, d->OH);
            for (int gi = 0; gi < G; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OCg, CKKg, OHW, 1.0f,
                            g + (size_t)gi * OCg * OHW, OHW, col + (size_t)gi * CKKg * OHW,
                            OHW, 1.0f, dweight + (size_t)gi * OCg * CKKg, CKKg);
        }
        if (!dinp)
            continue;
        j.out = dinp + b * in_n;
        j.in = g;
        if (direct) {
            conv_run(team, &j, CONV_DIRECT_BACKWARD, d->C);
        } else {
            conv_run(team, &j, CONV_UNFOLDED_BACKWARD, d->C);
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

/* One plane's pooling over a general window (pads, dilation, a kernel of
 * two sizes): the first maximum among the taps inside the input, so that
 * padding never wins; argmax as pool_plane. */
static void pool_plane_general(float *o, int *argmax, const float *plane,
                               const bs_conv_dims *d, const window *w)
{
    for (int oy = 0; oy < d->OH; oy++)
        for (int ox = 0; ox < d->OW; ox++) {
            int best = -1;
            float bv = -FLT_MAX;
            for (int ky = 0; ky < w->kh; ky++) {
                int y = oy * w->sh - w->pt + ky * w->dh;
                if (y < 0 || y >= d->H)
                    continue;
                for (int kx = 0; kx < w->kw; kx++) {
                    int x = ox * w->sw - w->pl + kx * w->dw;
                    if (x < 0 || x >= d->W)
                        continue;
                    if (best < 0 || plane[y * d->W + x] > bv) {
                        bv = plane[y * d->W + x];
                        best = y * d->W + x;
                    }
                }
            }
            o[oy * d->OW + ox] = bv;
            if (argmax)
                argmax[oy * d->OW + ox] = best;
        }
}

void bs_maxpool2d_forward_argmax(float *out, int *argmax, const float *inp,
                                 int B, const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    window w = window_of(d);
    int square = w.kh == w.kw && w.sh == w.sw && w.pt == 0 && w.pl == 0 && w.dh == 1 &&
                 w.dw == 1 && d->OH == bs_conv_out_size(d->H, w.kh, w.sh, 0) &&
                 d->OW == bs_conv_out_size(d->W, w.kw, w.sw, 0);
    bs_conv_dims sq = *d;
    sq.K = w.kh;
    sq.stride = w.sh;
    for (int bc = 0; bc < B * d->C; bc++) {
        float *o = out + bc * out_plane;
        int *at = argmax ? argmax + bc * out_plane : NULL;
        if (square)
            pool_plane(o, at, inp + bc * in_plane, &sq);
        else
            pool_plane_general(o, at, inp + bc * in_plane, d, &w);
    }
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
            if (at[i] >= 0) /* -1: a window wholly in the padding */
                di[at[i]] += g[i];
    }
}

/* ------------------------------------------------------------------------ */
/* avgpool2d and global average pooling */

/* How many taps of window (oy,ox) the mean divides by: all of them with
 * count_include_pad (those past the padding excepted), else those inside
 * the input. */
static int avg_count(const bs_conv_dims *d, const window *w, int oy, int ox, int include_pad)
{
    int ny = 0, nx = 0;
    for (int ky = 0; ky < w->kh; ky++) {
        int y = oy * w->sh - w->pt + ky * w->dh;
        ny += include_pad ? y < d->H + d->pb : (y >= 0 && y < d->H);
    }
    for (int kx = 0; kx < w->kw; kx++) {
        int x = ox * w->sw - w->pl + kx * w->dw;
        nx += include_pad ? x < d->W + d->pr : (x >= 0 && x < d->W);
    }
    return ny * nx;
}

/* Runs BODY for every input tap i of every window o of one plane, with
 * inv the window's 1/count. */
#define AVG_WINDOWS(d, w, include_pad, BODY)                                          \
    for (int oy = 0; oy < (d)->OH; oy++)                                              \
        for (int ox = 0; ox < (d)->OW; ox++) {                                        \
            int n_ = avg_count(d, w, oy, ox, include_pad);                            \
            float inv = n_ ? 1.0f / (float)n_ : 0.0f;                                 \
            int o = oy * (d)->OW + ox;                                                \
            for (int ky = 0; ky < (w)->kh; ky++) {                                    \
                int y = oy * (w)->sh - (w)->pt + ky * (w)->dh;                        \
                if (y < 0 || y >= (d)->H)                                             \
                    continue;                                                         \
                for (int kx = 0; kx < (w)->kw; kx++) {                                \
                    int x = ox * (w)->sw - (w)->pl + kx * (w)->dw;                    \
                    if (x < 0 || x >= (d)->W)                                         \
                        continue;                                                     \
                    int i = y * (d)->W + x;                                           \
                    BODY;                                                             \
                }                                                                     \
            }                                                                         \
        }

void bs_avgpool2d_forward(float *out, const float *inp, int include_pad, int B,
                          const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    window w = window_of(d);
    for (int bc = 0; bc < B * d->C; bc++) {
        const float *p = inp + bc * in_plane;
        float *q = out + bc * out_plane;
        memset(q, 0, out_plane * sizeof(float));
        AVG_WINDOWS(d, &w, include_pad, q[o] += p[i] * inv);
    }
}

void bs_avgpool2d_backward(float *dinp, const float *dout, int include_pad, int B,
                           const bs_conv_dims *d)
{
    size_t in_plane = (size_t)d->H * d->W, out_plane = (size_t)d->OH * d->OW;
    window w = window_of(d);
    memset(dinp, 0, (size_t)B * d->C * in_plane * sizeof(float));
    for (int bc = 0; bc < B * d->C; bc++) {
        const float *g = dout + bc * out_plane;
        float *di = dinp + bc * in_plane;
        AVG_WINDOWS(d, &w, include_pad, di[i] += g[o] * inv);
    }
}

void bs_global_avgpool_forward(float *out, const float *inp, int B, int C, int HW)
{
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        const float *p = inp + bc * HW;
        double s = 0.0;
        for (int i = 0; i < HW; i++)
            s += p[i];
        out[bc] = (float)(s / HW);
    }
}

void bs_global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW)
{
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        float g = dout[bc] / (float)HW;
        for (int i = 0; i < HW; i++)
            dinp[bc * HW + i] = g;
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
/* piecewise-linear activations of the graph ops; backward takes the INPUT */

void bs_leaky_relu_forward(float *out, const float *inp, float alpha, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] < 0.0f ? alpha * inp[i] : inp[i];
}

void bs_leaky_relu_backward(float *dinp, const float *dout, const float *inp, float alpha,
                            size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = inp[i] < 0.0f ? alpha * dout[i] : dout[i];
}

void bs_clip_forward(float *out, const float *inp, float lo, float hi, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] < lo ? lo : inp[i] > hi ? hi : inp[i];
}

void bs_clip_backward(float *dinp, const float *dout, const float *inp, float lo, float hi,
                      size_t n)
{
    /* the slope is 1 strictly inside [lo,hi], 0 where the clip holds */
    for (size_t i = 0; i < n; i++)
        dinp[i] = inp[i] > lo && inp[i] < hi ? dout[i] : 0.0f;
}

void bs_hardsigmoid_forward(float *out, const float *inp, float alpha, float beta, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float y = alpha * inp[i] + beta;
        out[i] = y < 0.0f ? 0.0f : y > 1.0f ? 1.0f : y;
    }
}

void bs_hardsigmoid_backward(float *dinp, const float *dout, const float *inp, float alpha,
                             float beta, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float y = alpha * inp[i] + beta;
        dinp[i] = y > 0.0f && y < 1.0f ? alpha * dout[i] : 0.0f;
    }
}

void bs_hardswish_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], s = x / 6.0f + 0.5f;
        out[i] = x * (s < 0.0f ? 0.0f : s > 1.0f ? 1.0f : s);
    }
}

void bs_hardswish_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    /* x (x/6 + 1/2) on (-3,3): slope x/3 + 1/2; 0 below, 1 above */
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        dinp[i] = x <= -3.0f ? 0.0f : x >= 3.0f ? dout[i] : dout[i] * (x / 3.0f + 0.5f);
    }
}

/* ------------------------------------------------------------------------ */
/* elementwise binary ops with broadcasting */

int bs_bcast_make(bs_bcast *g, const int *a_dims, int a_rank, int a_const,
                  const int *b_dims, int b_rank, int b_const)
{
    int rank = a_rank > b_rank ? a_rank : b_rank;
    if (rank < 1 || rank > BS_BCAST_RANK)
        return -1;
    memset(g, 0, sizeof *g);
    g->rank = rank;
    size_t sa = 1, sb = 1;
    /* right-aligned, as numpy: a missing leading dimension is 1 */
    for (int k = BS_BCAST_RANK - 1, ka = a_rank - 1, kb = b_rank - 1; k >= 0; k--, ka--, kb--) {
        int da = ka >= 0 ? a_dims[ka] : 1, db = kb >= 0 ? b_dims[kb] : 1;
        if (da != db && da != 1 && db != 1)
            return -1;
        g->dims[k] = da > db ? da : db;
        g->a_stride[k] = da == 1 ? 0 : sa;
        g->b_stride[k] = db == 1 ? 0 : sb;
        sa *= (size_t)da;
        sb *= (size_t)db;
    }
    g->a_batch = a_const ? 0 : sa;
    g->b_batch = b_const ? 0 : sb;
    g->out_size = (size_t)g->dims[0] * g->dims[1] * g->dims[2] * g->dims[3];
    return 0;
}

/* Visits every output element in order: o its offset, ia and ib its
 * operands' offsets. */
#define BCAST_EACH(g, B, BODY)                                                        \
    for (int b_ = 0; b_ < (B); b_++)                                                  \
        for (int i0 = 0; i0 < (g)->dims[0]; i0++)                                     \
            for (int i1 = 0; i1 < (g)->dims[1]; i1++)                                 \
                for (int i2 = 0; i2 < (g)->dims[2]; i2++) {                           \
                    size_t o = (size_t)b_ * (g)->out_size +                           \
                               (((size_t)i0 * (g)->dims[1] + i1) * (g)->dims[2] + i2) *  \
                                   (g)->dims[3];                                      \
                    size_t ia = b_ * (g)->a_batch + i0 * (g)->a_stride[0] +           \
                                i1 * (g)->a_stride[1] + i2 * (g)->a_stride[2];        \
                    size_t ib = b_ * (g)->b_batch + i0 * (g)->b_stride[0] +           \
                                i1 * (g)->b_stride[1] + i2 * (g)->b_stride[2];        \
                    for (int i3 = 0; i3 < (g)->dims[3]; i3++, o++,                    \
                             ia += (g)->a_stride[3], ib += (g)->b_stride[3]) {        \
                        BODY;                                                         \
                    }                                                                 \
                }

void bs_binary_forward(float *out, const float *a, const float *b, bs_binary_op op,
                       const bs_bcast *g, int B)
{
    switch (op) {
    case BS_BIN_ADD:
        BCAST_EACH(g, B, out[o] = a[ia] + b[ib]);
        break;
    case BS_BIN_SUB:
        BCAST_EACH(g, B, out[o] = a[ia] - b[ib]);
        break;
    case BS_BIN_MUL:
        BCAST_EACH(g, B, out[o] = a[ia] * b[ib]);
        break;
    case BS_BIN_DIV:
        BCAST_EACH(g, B, out[o] = a[ia] / b[ib]);
        break;
    }
}

void bs_binary_backward(float *da, float *db, const float *dout, const float *a,
                        const float *b, bs_binary_op op, const bs_bcast *g, int B)
{
    /* a broadcast operand's gradient sums the output gradients it reached */
    size_t na = g->a_batch * B, nb = g->b_batch * B;
    if (da)
        memset(da, 0, na * sizeof(float));
    if (db)
        memset(db, 0, nb * sizeof(float));
    switch (op) {
    case BS_BIN_ADD:
    case BS_BIN_SUB: {
        float sign = op == BS_BIN_SUB ? -1.0f : 1.0f;
        if (da)
            BCAST_EACH(g, B, da[ia] += dout[o]);
        if (db)
            BCAST_EACH(g, B, db[ib] += sign * dout[o]);
        break;
    }
    case BS_BIN_MUL:
        if (da)
            BCAST_EACH(g, B, da[ia] += dout[o] * b[ib]);
        if (db)
            BCAST_EACH(g, B, db[ib] += dout[o] * a[ia]);
        break;
    case BS_BIN_DIV: /* b is a constant: no db */
        if (da)
            BCAST_EACH(g, B, da[ia] += dout[o] / b[ib]);
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* concat, pad, softmax */

void bs_concat_forward(float *out, const float *const *ins, const size_t *inner, int n,
                       size_t outer, int B)
{
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += inner[k];
    for (size_t bo = 0; bo < (size_t)B * outer; bo++) {
        float *o = out + bo * total;
        for (int k = 0; k < n; k++) {
            memcpy(o, ins[k] + bo * inner[k], inner[k] * sizeof(float));
            o += inner[k];
        }
    }
}

void bs_concat_backward(float *const *dins, const float *dout, const size_t *inner, int n,
                        size_t outer, int B)
{
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += inner[k];
    for (size_t bo = 0; bo < (size_t)B * outer; bo++) {
        const float *g = dout + bo * total;
        for (int k = 0; k < n; k++) {
            if (dins[k])
                memcpy(dins[k] + bo * inner[k], g, inner[k] * sizeof(float));
            g += inner[k];
        }
    }
}

/* The input index that output index i (of n + pads) reads along one axis
 * (pad_begin before it), or -1 for the constant. */
int bs_pad_source(int i, int n, int pad_begin, int mode)
{
    int x = i - pad_begin;
    if (x >= 0 && x < n)
        return x;
    if (mode == BS_PAD_EDGE)
        return x < 0 ? 0 : n - 1;
    if (mode == BS_PAD_REFLECT && n > 1) {
        int period = 2 * (n - 1);
        x = x % period;
        if (x < 0)
            x += period;
        return x < n ? x : period - x;
    }
    return -1;
}

void bs_pad_forward(float *out, const float *inp, const int pads[4], int mode, float value,
                    int B, int C, int H, int W)
{
    int OH = H + pads[0] + pads[2], OW = W + pads[1] + pads[3];
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        const float *p = inp + bc * H * W;
        float *q = out + bc * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            int y = bs_pad_source(oy, H, pads[0], mode);
            for (int ox = 0; ox < OW; ox++) {
                int x = bs_pad_source(ox, W, pads[1], mode);
                q[oy * OW + ox] = y < 0 || x < 0 ? value : p[y * W + x];
            }
        }
    }
}

void bs_pad_backward(float *dinp, const float *dout, const int pads[4], int mode, int B,
                     int C, int H, int W)
{
    int OH = H + pads[0] + pads[2], OW = W + pads[1] + pads[3];
    memset(dinp, 0, (size_t)B * C * H * W * sizeof(float));
    for (size_t bc = 0; bc < (size_t)B * C; bc++) {
        float *p = dinp + bc * H * W;
        const float *g = dout + bc * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            int y = bs_pad_source(oy, H, pads[0], mode);
            for (int ox = 0; ox < OW; ox++) {
                int x = bs_pad_source(ox, W, pads[1], mode);
                if (y >= 0 && x >= 0)
                    p[y * W + x] += g[oy * OW + ox];
            }
        }
    }
}

void bs_softmax_forward(float *out, const float *inp, size_t outer, int len, size_t inner)
{
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < inner; j++) {
            const float *x = inp + o * len * inner + j;
            float *y = out + o * len * inner + j;
            float mx = x[0];
            for (int k = 1; k < len; k++)
                if (x[k * inner] > mx)
                    mx = x[k * inner];
            double sum = 0.0;
            for (int k = 0; k < len; k++) {
                y[k * inner] = expf(x[k * inner] - mx);
                sum += y[k * inner];
            }
            for (int k = 0; k < len; k++)
                y[k * inner] = (float)(y[k * inner] / sum);
        }
}

void bs_softmax_backward(float *dinp, const float *dout, const float *out, size_t outer,
                         int len, size_t inner)
{
    /* y = softmax(x): dx_k = y_k (g_k - sum_j g_j y_j) */
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < inner; j++) {
            size_t base = o * len * inner + j;
            double dot = 0.0;
            for (int k = 0; k < len; k++)
                dot += (double)dout[base + k * inner] * out[base + k * inner];
            for (int k = 0; k < len; k++)
                dinp[base + k * inner] =
                    out[base + k * inner] * (dout[base + k * inner] - (float)dot);
        }
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
