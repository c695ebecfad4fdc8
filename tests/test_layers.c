/* test_layers — every layer's backward pass, and the model's, checked
 * against central finite differences of the forward pass; the forward passes
 * against direct double-precision formulas; and the conventions of layers.h
 * (dinp overwritten, parameter gradients accumulated, NULL allowed) and of
 * model.h (a batch gives the same logits as its samples one by one, a batch
 * smaller than the workspace works, a forward pass's multiply-adds).
 *
 * The finite differences use the scalar loss L = sum_i g_i out_i for a fixed
 * random g, so the analytic dout is g (for a model, the mean cross-entropy);
 * L is summed in double so that only the float32 forward adds noise. An
 * element agrees when |a - n| / max(|a| + |n|, 1e-2) < 1e-3, and every
 * element checked must agree. Differences that straddle a relu or maxpool
 * kink are detected and skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers.h"
#include "core/model.h"
#include "core/rng.h"

#define TOL 1e-3   /* relative error allowed for one element */

/* ------------------------------------------------------------------------ */
/* helpers */

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static void fill_uniform(bs_rng *r, float *v, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * bs_rng_uniform(r);
}

static void fill_const(float *v, size_t n, float x)
{
    for (size_t i = 0; i < n; i++)
        v[i] = x;
}

/* sum_i g_i out_i in double: the loss whose gradient to out is g. */
static double dot_d(const float *g, const float *out, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * out[i];
    return s;
}

static double rel_err(double a, double n)
{
    return fabs(a - n) / fmax(fabs(a) + fabs(n), 1e-2);
}

/* Asserts |a - b| <= tol * max(|a|, |b|, 1) element by element. */
static void assert_all_close(const char *what, const float *a, const float *b,
                             size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double s = fmax(fmax(fabs(a[i]), fabs(b[i])), 1.0);
        if (!(fabs((double)a[i] - b[i]) <= tol * s))
            fail_msg("%s: element %zu is %.9g, expected %.9g", what, i,
                     (double)a[i], (double)b[i]);
    }
}

/* The loss at the current values of the variables; *regime_changed is set
 * when a piecewise-linear unit (relu, maxpool) switched branch compared with
 * the base point, so that the finite difference straddles a kink. */
typedef double (*loss_fn)(void *ctx, int *regime_changed);

typedef struct gc_result {
    size_t wanted;   /* elements asked for: min(n, n_sub) */
    size_t n;        /* elements compared */
    size_t bad;      /* of which with relative error >= TOL */
    size_t skipped;  /* straddling a kink, not compared */
    double max_rel;
    size_t worst;    /* index of the largest relative error */
    double worst_a, worst_n;
} gc_result;

/* Fisher-Yates shuffle of n indices. */
static void shuffle_indices(bs_rng *r, size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = bs_rng_below(r, (uint32_t)i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Compares analytic[i] with the central difference of f along var[i], for
 * every i, or for n_sub random i when n is larger; an i whose difference
 * straddles a kink is skipped and another drawn. var is left unchanged. */
static gc_result grad_check(loss_fn f, void *ctx, float *var, size_t n,
                            const float *analytic, float h, size_t n_sub,
                            bs_rng *r)
{
    gc_result res = {.wanted = n < n_sub ? n : n_sub};
    size_t *idx = calloc(n ? n : 1, sizeof *idx);
    assert_non_null(idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    shuffle_indices(r, idx, n);
    for (size_t k = 0; k < n && res.n < n_sub; k++) {
        size_t i = idx[k];
        float x0 = var[i];
        const float off[4] = {x0 + 2 * h, x0 + h, x0 - h, x0 - 2 * h};
        double loss[4];
        int kink = 0;
        for (int s = 0; s < 4; s++) {
            int changed = 0;
            var[i] = off[s];
            loss[s] = f(ctx, &changed);
            kink |= changed;
        }
        var[i] = x0;
        if (kink) {
            res.skipped++;
            continue;
        }
        /* Fourth-order central difference: its truncation error is O(h^4),
         * so h can be large enough that the float32 rounding of the forward
         * pass, divided by h, stays far below TOL. The step is the one the
         * floats took; x0 +- 2h rounds by a relative 1e-7/h at most. */
        double hp = ((double)off[1] - (double)off[2]) / 2.0;
        double num = (8.0 * (loss[1] - loss[2]) - (loss[0] - loss[3])) / (12.0 * hp);
        double e = rel_err(analytic[i], num);
        res.n++;
        if (e >= TOL)
            res.bad++;
        if (e > res.max_rel || res.n == 1) {
            res.max_rel = e;
            res.worst = i;
            res.worst_a = analytic[i];
            res.worst_n = num;
        }
    }
    free(idx);
    return res;
}

/* Every compared element within TOL; kinks may have hidden at most a
 * quarter of the elements asked for. */
static void expect_grad(const char *what, gc_result r)
{
    print_message("    %-34s %4zu checked, max rel err %.1e%s\n", what, r.n,
                  r.max_rel, r.skipped ? " (some skipped at kinks)" : "");
    if (r.bad)
        fail_msg("%s: %zu of %zu elements off; worst [%zu] analytic %.7g vs "
                 "numeric %.7g (rel err %.2e)", what, r.bad, r.n, r.worst,
                 r.worst_a, r.worst_n, r.max_rel);
    if (r.n == 0 || 4 * r.n < 3 * r.wanted)
        fail_msg("%s: only %zu elements free of kinks (%zu skipped); choose other data",
                 what, r.n, r.skipped);
}

/* ------------------------------------------------------------------------ */
/* linear */

typedef struct linear_ctx {
    int B, C, OC;
    float *inp, *w, *b, *out, *g;
} linear_ctx;

static double linear_loss(void *p, int *kink)
{
    linear_ctx *c = p;
    (void)kink;
    bs_linear_forward(c->out, c->inp, c->w, c->b, c->B, c->C, c->OC, NULL);
    return dot_d(c->g, c->out, (size_t)c->B * c->OC);
}

static void test_linear(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 1);
    linear_ctx c = {.B = 3, .C = 7, .OC = 5};
    size_t ni = (size_t)c.B * c.C, nw = (size_t)c.OC * c.C, no = (size_t)c.B * c.OC;
    c.inp = falloc(ni);
    c.w = falloc(nw);
    c.b = falloc(c.OC);
    c.out = falloc(no);
    c.g = falloc(no);
    fill_uniform(&r, c.inp, ni, -1, 1);
    fill_uniform(&r, c.w, nw, -1, 1);
    fill_uniform(&r, c.b, c.OC, -1, 1);
    fill_uniform(&r, c.g, no, -1, 1);

    /* forward against the formula in double */
    bs_linear_forward(c.out, c.inp, c.w, c.b, c.B, c.C, c.OC, NULL);
    for (int b = 0; b < c.B; b++)
        for (int o = 0; o < c.OC; o++) {
            double s = c.b[o];
            for (int i = 0; i < c.C; i++)
                s += (double)c.inp[b * c.C + i] * c.w[o * c.C + i];
            assert_true(fabs(s - c.out[b * c.OC + o]) < 1e-5);
        }

    float *dinp = falloc(ni), *dw = falloc(nw), *db = falloc(c.OC);
    fill_const(dinp, ni, 123.0f); /* overwritten, not accumulated */
    bs_linear_backward(dinp, dw, db, c.g, c.inp, c.w, c.B, c.C, c.OC, NULL);

    /* L is linear in every variable: any step is exact, a large one drowns
     * the float noise. */
    expect_grad("linear dinp", grad_check(linear_loss, &c, c.inp, ni, dinp, 0.5f, 1000, &r));
    expect_grad("linear dweight", grad_check(linear_loss, &c, c.w, nw, dw, 0.5f, 1000, &r));
    expect_grad("linear dbias", grad_check(linear_loss, &c, c.b, c.OC, db, 0.5f, 1000, &r));

    /* accumulation: a second call without dinp doubles dweight and dbias */
    float *dw1 = falloc(nw), *db1 = falloc(c.OC), *dinp2 = falloc(ni);
    memcpy(dw1, dw, nw * sizeof(float));
    memcpy(db1, db, c.OC * sizeof(float));
    bs_linear_backward(NULL, dw, db, c.g, c.inp, c.w, c.B, c.C, c.OC, NULL);
    for (size_t i = 0; i < nw; i++)
        dw1[i] *= 2.0f;
    for (int i = 0; i < c.OC; i++)
        db1[i] *= 2.0f;
    assert_all_close("linear dweight after two calls", dw, dw1, nw, 1e-6);
    assert_all_close("linear dbias after two calls", db, db1, c.OC, 1e-6);

    /* without parameter gradients, dinp alone, the same as before */
    fill_const(dinp2, ni, -7.0f);
    bs_linear_backward(dinp2, NULL, NULL, c.g, c.inp, c.w, c.B, c.C, c.OC, NULL);
    assert_all_close("linear dinp without dweight", dinp2, dinp, ni, 0);

    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.g);
    free(dinp); free(dw); free(db); free(dw1); free(db1); free(dinp2);
}

/* ------------------------------------------------------------------------ */
/* conv2d */

typedef struct conv_ctx {
    int B;
    bs_conv_dims d;
    float *inp, *w, *b, *out, *g, *col;
} conv_ctx;

static double conv_loss(void *p, int *kink)
{
    conv_ctx *c = p;
    (void)kink;
    bs_conv2d_forward(c->out, c->inp, c->w, c->b, c->col, c->B, &c->d, NULL);
    return dot_d(c->g, c->out, (size_t)c->B * c->d.OC * c->d.OH * c->d.OW);
}

static bs_conv_dims conv_geometry(int C, int H, int W, int OC, int K,
                                  int stride, int pad)
{
    bs_conv_dims d = {.C = C, .H = H, .W = W, .OC = OC, .K = K,
                      .stride = stride, .pad = pad};
    d.OH = bs_conv_out_size(H, K, stride, pad);
    d.OW = bs_conv_out_size(W, K, stride, pad);
    return d;
}

/* Direct convolution in double: out[b,oc,oy,ox] = bias[oc] + sum over
 * (c,ky,kx) of weight[oc,c,ky,kx] * inp[b,c,oy*s-p+ky,ox*s-p+kx]. */
static void conv_direct(double *out, const float *inp, const float *w,
                        const float *bias, int B, const bs_conv_dims *d)
{
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < d->OC; oc++)
            for (int oy = 0; oy < d->OH; oy++)
                for (int ox = 0; ox < d->OW; ox++) {
                    double s = bias[oc];
                    for (int c = 0; c < d->C; c++)
                        for (int ky = 0; ky < d->K; ky++)
                            for (int kx = 0; kx < d->K; kx++) {
                                int y = oy * d->stride - d->pad + ky;
                                int x = ox * d->stride - d->pad + kx;
                                if (y < 0 || y >= d->H || x < 0 || x >= d->W)
                                    continue;
                                s += (double)w[((oc * d->C + c) * d->K + ky) * d->K + kx] *
                                     inp[((b * d->C + c) * d->H + y) * d->W + x];
                            }
                    out[((b * d->OC + oc) * d->OH + oy) * d->OW + ox] = s;
                }
}

static void test_conv_out_size(void **state)
{
    (void)state;
    assert_int_equal(bs_conv_out_size(28, 5, 1, 0), 24);
    assert_int_equal(bs_conv_out_size(7, 3, 2, 1), 4);
    assert_int_equal(bs_conv_out_size(6, 3, 2, 1), 3);
    assert_int_equal(bs_conv_out_size(5, 2, 2, 0), 2);
    assert_int_equal(bs_conv_out_size(4, 5, 1, 0), 0);
}

static void test_conv2d_forward_direct(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 2);
    int B = 2;
    bs_conv_dims d = conv_geometry(3, 9, 6, 4, 3, 2, 1);
    assert_int_equal(d.OH, 5);
    assert_int_equal(d.OW, 3);
    size_t ni = (size_t)B * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * d.K * d.K;
    size_t no = (size_t)B * d.OC * d.OH * d.OW;
    float *inp = falloc(ni), *w = falloc(nw), *bias = falloc(d.OC), *out = falloc(no);
    float *col = falloc(bs_conv2d_scratch(&d));
    double *ref = calloc(no, sizeof *ref);
    assert_non_null(ref);
    fill_uniform(&r, inp, ni, -1, 1);
    fill_uniform(&r, w, nw, -1, 1);
    fill_uniform(&r, bias, d.OC, -1, 1);
    fill_const(out, no, NAN);
    bs_conv2d_forward(out, inp, w, bias, col, B, &d, NULL);
    conv_direct(ref, inp, w, bias, B, &d);
    for (size_t i = 0; i < no; i++)
        if (!(fabs(out[i] - ref[i]) < 1e-5 * fmax(1.0, fabs(ref[i]))))
            fail_msg("conv2d out[%zu] = %.8g, direct convolution gives %.8g",
                     i, (double)out[i], ref[i]);
    free(inp); free(w); free(bias); free(out); free(col); free(ref);
}

static void check_conv2d(int B, bs_conv_dims d, uint64_t seed)
{
    bs_rng r;
    bs_rng_seed(&r, seed);
    print_message("  conv2d B=%d C=%d %dx%d -> OC=%d %dx%d, K=%d stride %d pad %d\n",
                  B, d.C, d.H, d.W, d.OC, d.OH, d.OW, d.K, d.stride, d.pad);
    assert_true(d.OH > 0 && d.OW > 0);
    conv_ctx c = {.B = B, .d = d};
    size_t ni = (size_t)B * d.C * d.H * d.W, nw = (size_t)d.OC * d.C * d.K * d.K;
    size_t no = (size_t)B * d.OC * d.OH * d.OW;
    c.inp = falloc(ni);
    c.w = falloc(nw);
    c.b = falloc(d.OC);
    c.out = falloc(no);
    c.g = falloc(no);
    c.col = falloc(bs_conv2d_scratch(&d));
    fill_uniform(&r, c.inp, ni, -1, 1);
    fill_uniform(&r, c.w, nw, -1, 1);
    fill_uniform(&r, c.b, d.OC, -1, 1);
    fill_uniform(&r, c.g, no, -1, 1);

    float *dinp = falloc(ni), *dw = falloc(nw), *db = falloc(d.OC);
    fill_const(dinp, ni, 123.0f);
    bs_conv2d_backward(dinp, dw, db, c.g, c.inp, c.w, c.col, B, &d, NULL);
    expect_grad("conv2d dinp", grad_check(conv_loss, &c, c.inp, ni, dinp, 0.5f, 1000, &r));
    expect_grad("conv2d dweight", grad_check(conv_loss, &c, c.w, nw, dw, 0.5f, 1000, &r));
    expect_grad("conv2d dbias", grad_check(conv_loss, &c, c.b, d.OC, db, 0.5f, 1000, &r));

    float *dw1 = falloc(nw), *db1 = falloc(d.OC), *dinp2 = falloc(ni);
    for (size_t i = 0; i < nw; i++)
        dw1[i] = 2.0f * dw[i];
    for (int i = 0; i < d.OC; i++)
        db1[i] = 2.0f * db[i];
    bs_conv2d_backward(NULL, dw, db, c.g, c.inp, c.w, c.col, B, &d, NULL);
    assert_all_close("conv2d dweight after two calls", dw, dw1, nw, 1e-6);
    assert_all_close("conv2d dbias after two calls", db, db1, d.OC, 1e-6);
    fill_const(dinp2, ni, -7.0f);
    bs_conv2d_backward(dinp2, NULL, NULL, c.g, c.inp, c.w, c.col, B, &d, NULL);
    assert_all_close("conv2d dinp without dweight", dinp2, dinp, ni, 0);

    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.g); free(c.col);
    free(dinp); free(dw); free(db); free(dw1); free(db1); free(dinp2);
}

static void test_conv2d(void **state)
{
    (void)state;
    check_conv2d(2, conv_geometry(2, 5, 7, 3, 3, 1, 0), 10);  /* stride 1 pad 0 */
    check_conv2d(2, conv_geometry(3, 7, 6, 4, 3, 2, 1), 11);  /* stride 2 pad 1, ragged edge */
    check_conv2d(1, conv_geometry(1, 6, 9, 2, 5, 1, 2), 12);  /* 5x5 "same" */
    check_conv2d(3, conv_geometry(4, 4, 6, 1, 2, 2, 0), 13);  /* even kernel, OC 1 */
}

/* ------------------------------------------------------------------------ */
/* maxpool2d */

typedef struct pool_ctx {
    int B;
    bs_conv_dims d;
    float *inp, *out, *g;
} pool_ctx;

static double pool_loss(void *p, int *kink)
{
    pool_ctx *c = p;
    (void)kink;
    bs_maxpool2d_forward(c->out, c->inp, c->B, &c->d);
    return dot_d(c->g, c->out, (size_t)c->B * c->d.C * c->d.OH * c->d.OW);
}

static void check_maxpool(int B, int C, int H, int W, uint64_t seed)
{
    bs_rng r;
    bs_rng_seed(&r, seed);
    bs_conv_dims d = conv_geometry(C, H, W, C, 2, 2, 0);
    print_message("  maxpool2d B=%d C=%d %dx%d -> %dx%d\n", B, C, H, W, d.OH, d.OW);
    pool_ctx c = {.B = B, .d = d};
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * C * d.OH * d.OW;
    c.inp = falloc(ni);
    c.out = falloc(no);
    c.g = falloc(no);
    /* Distinct values 0.05 apart in random order: steps up to 2h = 0.02
     * never change which input of a window is the largest. */
    int *perm = calloc(ni, sizeof *perm);
    assert_non_null(perm);
    for (size_t i = 0; i < ni; i++)
        perm[i] = (int)i;
    bs_rng_shuffle(&r, perm, (int)ni);
    for (size_t i = 0; i < ni; i++)
        c.inp[i] = 0.05f * (float)(perm[i] - (int)ni / 2);
    fill_uniform(&r, c.g, no, -1, 1);

    bs_maxpool2d_forward(c.out, c.inp, B, &d);
    for (int bc = 0; bc < B * C; bc++)
        for (int oy = 0; oy < d.OH; oy++)
            for (int ox = 0; ox < d.OW; ox++) {
                const float *p = c.inp + (size_t)bc * H * W;
                float m = -INFINITY;
                for (int ky = 0; ky < 2; ky++)
                    for (int kx = 0; kx < 2; kx++)
                        m = fmaxf(m, p[(2 * oy + ky) * W + 2 * ox + kx]);
                assert_true(c.out[((size_t)bc * d.OH + oy) * d.OW + ox] == m);
            }

    float *dinp = falloc(ni);
    fill_const(dinp, ni, 123.0f);
    bs_maxpool2d_backward(dinp, c.g, c.inp, B, &d);
    expect_grad("maxpool2d dinp", grad_check(pool_loss, &c, c.inp, ni, dinp, 0.01f, 1000, &r));
    free(c.inp); free(c.out); free(c.g); free(perm); free(dinp);
}

/* The _argmax pair (what a model runs) gives bit for bit what the plain pair
 * gives, with ties (the first maximum wins) and overlapping windows (a pixel
 * collects several gradients, added in the same order). */
static void check_maxpool_argmax(int B, int C, int H, int W, int K, int S, uint64_t seed)
{
    bs_rng r;
    bs_rng_seed(&r, seed);
    bs_conv_dims d = conv_geometry(C, H, W, C, K, S, 0);
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * C * d.OH * d.OW;
    float *inp = falloc(ni), *g = falloc(no), *out = falloc(no), *out2 = falloc(no);
    float *dinp = falloc(ni), *dinp2 = falloc(ni);
    int *argmax = calloc(no, sizeof *argmax);
    assert_non_null(argmax);
    for (size_t i = 0; i < ni; i++)
        inp[i] = (float)(bs_rng_uniform(&r) < 0.5f ? 1 : (int)(bs_rng_uniform(&r) * 4));
    fill_uniform(&r, g, no, -1, 1);
    bs_maxpool2d_forward(out, inp, B, &d);
    bs_maxpool2d_backward(dinp, g, inp, B, &d);
    fill_const(dinp2, ni, 123.0f);
    bs_maxpool2d_forward_argmax(out2, argmax, inp, B, &d);
    bs_maxpool2d_backward_argmax(dinp2, g, argmax, B, &d);
    assert_memory_equal(out, out2, no * sizeof(float));
    assert_memory_equal(dinp, dinp2, ni * sizeof(float));
    free(inp); free(g); free(out); free(out2); free(dinp); free(dinp2); free(argmax);
}

static void test_maxpool2d(void **state)
{
    (void)state;
    check_maxpool(2, 3, 6, 8, 20);
    check_maxpool(2, 2, 5, 7, 21); /* odd sizes: the last row and column are dropped */
    check_maxpool_argmax(2, 3, 6, 8, 2, 2, 22);
    check_maxpool_argmax(2, 2, 9, 7, 3, 2, 23); /* overlapping windows, odd sizes */
    check_maxpool_argmax(1, 2, 7, 5, 3, 1, 24);
    /* rows wide enough for the 4-at-a-time 2x2 path, and its scalar rest;
     * the plain backward finds each maximum again with the scalar search */
    check_maxpool_argmax(2, 3, 6, 40, 2, 2, 25);
    check_maxpool_argmax(1, 2, 7, 37, 2, 2, 26);
    check_maxpool_argmax(2, 32, 8, 8, 2, 2, 28); /* the CNN's second pool: 4 wide */
    check_maxpool(2, 2, 24, 24, 27);
}

/* ------------------------------------------------------------------------ */
/* elementwise activations */

typedef void (*act_forward)(float *out, const float *inp, size_t n);
typedef void (*act_backward)(float *dinp, const float *dout, const float *out, size_t n);

typedef struct act_ctx {
    act_forward fwd;
    size_t n;
    float *inp, *out, *g;
} act_ctx;

static double act_loss(void *p, int *kink)
{
    act_ctx *c = p;
    (void)kink;
    c->fwd(c->out, c->inp, c->n);
    return dot_d(c->g, c->out, c->n);
}

static double relu_d(double x) { return x > 0 ? x : 0; }
static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* inputs uniform in [-range, range], with |x| >= gap so that steps up to
 * 2h < gap do not cross relu's kink. */
static void check_activation(const char *name, act_forward fwd, act_backward bwd,
                             double (*ref)(double), float range, float gap,
                             float h, uint64_t seed)
{
    bs_rng r;
    bs_rng_seed(&r, seed);
    act_ctx c = {.fwd = fwd, .n = 60};
    c.inp = falloc(c.n);
    c.out = falloc(c.n);
    c.g = falloc(c.n);
    fill_uniform(&r, c.inp, c.n, gap, range);
    for (size_t i = 0; i < c.n; i++)
        if (bs_rng_below(&r, 2))
            c.inp[i] = -c.inp[i];
    fill_uniform(&r, c.g, c.n, -1, 1);

    fwd(c.out, c.inp, c.n);
    for (size_t i = 0; i < c.n; i++)
        if (!(fabs(c.out[i] - ref(c.inp[i])) < 1e-6))
            fail_msg("%s(%.7g) = %.8g, expected %.8g", name, (double)c.inp[i],
                     (double)c.out[i], ref(c.inp[i]));

    float *dinp = falloc(c.n);
    fill_const(dinp, c.n, 123.0f);
    bwd(dinp, c.g, c.out, c.n);
    char what[64];
    snprintf(what, sizeof what, "%s dinp", name);
    expect_grad(what, grad_check(act_loss, &c, c.inp, c.n, dinp, h, 1000, &r));
    free(c.inp); free(c.out); free(c.g); free(dinp);
}

/* sigmoid to within 4 float ulps of the double-precision value (plus the
 * smallest normal, for results that underflow) over the whole range, the
 * extremes saturating to 0 and 1 and NaN staying NaN; on every lane of the
 * eight-wide path and its masked rest (N mod 8 = 3, the NaN among them). */
static void test_sigmoid_accuracy(void **state)
{
    (void)state;
    enum { N = 20011 };
    float *x = falloc(N), *y = falloc(N);
    static const float edges[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 1.0f, -1.0f, 15.9f, -15.9f,
                                  17.0f, -17.0f, 87.0f, -87.0f, 88.3f, -88.3f, 88.5f, -88.5f,
                                  100.0f, -100.0f, 1e30f, -1e30f, INFINITY, -INFINITY};
    size_t ne = sizeof edges / sizeof edges[0];
    for (size_t i = 0; i < N; i++)
        x[i] = i < ne ? edges[i] : -100.0f + 200.0f * (float)(i - ne) / (float)(N - ne);
    x[N - 3] = NAN;
    bs_sigmoid_forward(y, x, N);
    for (size_t i = 0; i < N; i++) {
        if (isnan(x[i])) {
            assert_true(isnan(y[i]));
            continue;
        }
        double want = 1.0 / (1.0 + exp(-(double)x[i]));
        double tol = 4.0 * (double)FLT_EPSILON * want + (double)FLT_MIN;
        if (!(fabs(y[i] - want) <= tol))
            fail_msg("sigmoid(%.9g) = %.9g, want %.9g", (double)x[i], (double)y[i], want);
    }
    free(x);
    free(y);
}

static void test_activations(void **state)
{
    (void)state;
    check_activation("relu", bs_relu_forward, bs_relu_backward, relu_d, 2.0f, 0.1f, 0.02f, 30);
    check_activation("sigmoid", bs_sigmoid_forward, bs_sigmoid_backward, sigmoid_d, 4.0f, 0.0f, 0.03f, 31);
    check_activation("tanh", bs_tanh_forward, bs_tanh_backward, tanh, 3.0f, 0.0f, 0.03f, 32);
}

/* ------------------------------------------------------------------------ */
/* dropout */

typedef struct dropout_ctx {
    const uint8_t *mask;
    float p;
    size_t n;
    float *inp, *out, *g;
} dropout_ctx;

static double dropout_loss(void *p, int *kink)
{
    dropout_ctx *c = p;
    (void)kink;
    bs_dropout_forward(c->out, c->inp, c->mask, c->p, c->n);
    return dot_d(c->g, c->out, c->n);
}

static void test_dropout(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 40);
    size_t n = 50;
    float *inp = falloc(n), *out = falloc(n), *g = falloc(n), *dinp = falloc(n);
    uint8_t mask[50];
    fill_uniform(&r, inp, n, -1, 1);
    fill_uniform(&r, g, n, -1, 1);

    /* inference: the identity both ways */
    fill_const(out, n, 123.0f);
    bs_dropout_forward(out, inp, NULL, 0.5f, n);
    assert_memory_equal(out, inp, n * sizeof(float));
    fill_const(dinp, n, 123.0f);
    bs_dropout_backward(dinp, g, NULL, 0.5f, n);
    assert_memory_equal(dinp, g, n * sizeof(float));

    /* training with a fixed mask: survivors doubled, the rest zero */
    int kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += mask[i] = (uint8_t)bs_rng_below(&r, 2);
    assert_true(kept > 0 && kept < (int)n);
    bs_dropout_forward(out, inp, mask, 0.5f, n);
    for (size_t i = 0; i < n; i++)
        assert_true(out[i] == (mask[i] ? 2.0f * inp[i] : 0.0f));
    dropout_ctx c = {.mask = mask, .p = 0.5f, .n = n, .inp = inp, .out = out, .g = g};
    fill_const(dinp, n, 123.0f);
    bs_dropout_backward(dinp, g, mask, 0.5f, n);
    expect_grad("dropout (training) dinp", grad_check(dropout_loss, &c, inp, n, dinp, 0.5f, 1000, &r));
    free(inp); free(out); free(g); free(dinp);
}

/* ------------------------------------------------------------------------ */
/* softmax cross-entropy */

typedef struct xent_ctx {
    int B, V;
    const int *targets;
    float *logits, *probs, *losses;
} xent_ctx;

/* The mean loss, summed in double from the per-sample losses. */
static double xent_loss(void *p, int *kink)
{
    xent_ctx *c = p;
    (void)kink;
    bs_softmax_xent_forward(c->probs, c->losses, c->logits, c->targets, c->B, c->V);
    double s = 0.0;
    for (int b = 0; b < c->B; b++)
        s += c->losses[b];
    return s / c->B;
}

static void test_softmax_xent(void **state)
{
    (void)state;
    bs_rng r;
    bs_rng_seed(&r, 50);
    enum { B = 3, V = 6 };
    int targets[B];
    float logits[B * V], probs[B * V], losses[B], dlogits[B * V], d2[B * V];
    fill_uniform(&r, logits, B * V, -3, 3);
    for (int b = 0; b < B; b++)
        targets[b] = (int)bs_rng_below(&r, V);

    float mean = bs_softmax_xent_forward(probs, losses, logits, targets, B, V);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, logits[b * V + v]);
        for (int v = 0; v < V; v++)
            sum += exp(logits[b * V + v] - mx);
        for (int v = 0; v < V; v++)
            assert_true(fabs(probs[b * V + v] - exp(logits[b * V + v] - mx) / sum) < 1e-6);
        double loss = -(logits[b * V + targets[b]] - mx - log(sum));
        assert_true(fabs(losses[b] - loss) < 1e-5);
        total += loss;
    }
    assert_true(fabs(mean - total / B) < 1e-5);
    /* losses may be NULL */
    assert_true(bs_softmax_xent_forward(probs, NULL, logits, targets, B, V) == mean);

    fill_const(dlogits, B * V, 123.0f);
    bs_softmax_xent_backward(dlogits, probs, targets, B, V, 1.0f / B);
    xent_ctx c = {.B = B, .V = V, .targets = targets, .logits = logits,
                  .probs = probs, .losses = losses};
    expect_grad("softmax xent dlogits (scale 1/B)",
                grad_check(xent_loss, &c, logits, B * V, dlogits, 0.03f, 1000, &r));

    /* the scale multiplies the whole gradient */
    bs_softmax_xent_forward(probs, losses, logits, targets, B, V);
    bs_softmax_xent_backward(d2, probs, targets, B, V, 2.0f);
    for (int i = 0; i < B * V; i++)
        assert_true(fabs(d2[i] - 2.0f * B * dlogits[i]) < 1e-6);
}

static void test_softmax_xent_large_logits(void **state)
{
    (void)state;
    float logits[3] = {1000.0f, 0.0f, -1000.0f}, probs[3], losses[1];
    int target = 2;
    float loss = bs_softmax_xent_forward(probs, losses, logits, &target, 1, 3);
    assert_true(isfinite(loss));
    assert_true(fabs(loss - 2000.0f) < 1e-2);
    assert_true(fabs(probs[0] + probs[1] + probs[2] - 1.0f) < 1e-6);
    assert_true(probs[0] == 1.0f);
}

/* ------------------------------------------------------------------------ */
/* models */

typedef struct model_case {
    const char *spec; /* NULL: the hand-built layers below */
    int shape[3];
    int classes;
} model_case;

static const model_case model_cases[] = {
    {"fc:7,5", {1, 3, 3}, 4},
    {"fc:6:relu", {1, 3, 3}, 4},
    {"fc:6:tanh", {1, 3, 3}, 4},
    {"ae:8", {1, 3, 3}, 4},
    {"fc", {1, 3, 3}, 4},
    {"cnn:2,3:5", {1, 20, 16}, 4}, /* 5x5 convs unpadded: 20x16 -> 16x12 -> 8x6 -> 4x2 -> 2x1 */
    {NULL, {2, 2, 3}, 3},          /* flatten, linear, tanh, dropout (inference), linear */
};

/* A model with initialised weights and small random biases (init zeroes
 * them, which would hide a bias that forward ignores). */
static bs_model *make_model(const model_case *mc, uint64_t seed)
{
    bs_layer layers[BS_MAX_LAYERS];
    int n = 0;
    char err[BS_ERR_LEN] = "";
    if (mc->spec) {
        if (bs_arch_parse(mc->spec, mc->classes, layers, &n, err))
            fail_msg("bs_arch_parse(%s): %s", mc->spec, err);
    } else {
        layers[n++] = (bs_layer){.kind = BS_FLATTEN};
        layers[n++] = (bs_layer){.kind = BS_LINEAR, .out_features = 6};
        layers[n++] = (bs_layer){.kind = BS_TANH};
        layers[n++] = (bs_layer){.kind = BS_DROPOUT, .p = 0.5f};
        layers[n++] = (bs_layer){.kind = BS_LINEAR, .out_features = mc->classes};
    }
    bs_model *m = bs_model_build(layers, n, mc->shape, err);
    if (!m)
        fail_msg("bs_model_build(%s): %s", mc->spec ? mc->spec : "hand-built", err);
    assert_int_equal(m->classes, mc->classes);
    bs_model_init(m, seed);
    bs_rng r;
    bs_rng_seed(&r, seed + 1000);
    for (int i = 0; i < m->n_layers; i++)
        fill_uniform(&r, m->params + m->layers[i].bias_off, m->layers[i].bias_size,
                     -0.1f, 0.1f);
    return m;
}

typedef struct model_ctx {
    const bs_model *m;
    bs_workspace *ws;
    float *x;
    const int *targets;
    int B;
    uint8_t *base_regime, *regime; /* which branch each relu and maxpool took */
    size_t regime_len;
} model_ctx;

/* Records which branch every piecewise-linear unit took: for a maxpool
 * output, which input of its window won and whether it is positive; for a
 * relu output, whether it is positive. A relu feeding a maxpool is seen
 * through the pool: one of its units may cross 0 without changing the
 * pool's output, unless it wins its window or stops winning. */
static size_t record_regime(const model_ctx *c, uint8_t *out)
{
    size_t k = 0;
    const bs_model *m = c->m;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        const float *in = c->ws->acts[i], *o = c->ws->acts[i + 1];
        if (l->kind == BS_RELU &&
            !(i + 1 < m->n_layers && m->layers[i + 1].kind == BS_MAXPOOL2D)) {
            for (size_t j = 0; j < (size_t)c->B * l->out_size; j++, k++)
                if (out)
                    out[k] = o[j] > 0.0f;
        } else if (l->kind == BS_MAXPOOL2D) {
            int C = l->in_shape[0], H = l->in_shape[1], W = l->in_shape[2];
            int OH = l->out_shape[1], OW = l->out_shape[2];
            for (int bc = 0; bc < c->B * C; bc++)
                for (int oy = 0; oy < OH; oy++)
                    for (int ox = 0; ox < OW; ox++, k++) {
                        const float *p = in + (size_t)bc * H * W;
                        int best = 0;
                        float bv = -INFINITY;
                        for (int ky = 0; ky < l->kernel; ky++)
                            for (int kx = 0; kx < l->kernel; kx++) {
                                int y = oy * l->stride + ky, x = ox * l->stride + kx;
                                if (y < H && x < W && p[y * W + x] > bv) {
                                    bv = p[y * W + x];
                                    best = ky * l->kernel + kx;
                                }
                            }
                        if (out)
                            out[k] = (uint8_t)(2 * best + (bv > 0.0f));
                    }
        }
    }
    return k;
}

/* The mean loss over the batch, summed in double from the per-sample losses. */
static double model_loss(void *p, int *kink)
{
    model_ctx *c = p;
    bs_model_forward(c->m, c->ws, c->x, c->B);
    bs_model_loss(c->m, c->ws, c->targets, c->B);
    double s = 0.0;
    for (int b = 0; b < c->B; b++)
        s += c->ws->losses[b];
    if (kink && c->regime_len) {
        record_regime(c, c->regime);
        *kink = memcmp(c->regime, c->base_regime, c->regime_len) != 0;
    }
    return s / c->B;
}

/* dlogits = (probs - onehot(targets)) / B, from the last bs_model_loss. */
static void mean_xent_grad(float *dlogits, const bs_workspace *ws,
                           const int *targets, int B, int V)
{
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++)
            dlogits[b * V + v] = (ws->probs[b * V + v] - (v == targets[b])) / B;
}

static void check_model_grad(const model_case *mc, uint64_t seed)
{
    enum { B = 3 };
    bs_rng r;
    bs_rng_seed(&r, seed);
    bs_model *m = make_model(mc, seed);
    print_message("  model %s on (%d,%d,%d): %d layers, %zu parameters\n",
                  mc->spec ? mc->spec : "flatten,linear:6,tanh,dropout,linear",
                  mc->shape[0], mc->shape[1], mc->shape[2], m->n_layers, m->n_params);
    bs_workspace *ws = bs_workspace_new(m, B);
    assert_non_null(ws);
    size_t nx = B * m->input_size, V = (size_t)m->classes;
    float *x = falloc(nx), *dx = falloc(nx), *dx2 = falloc(nx);
    float *dparams = falloc(m->n_params), *dparams1 = falloc(m->n_params);
    float *dlogits = falloc(B * V);
    int targets[B];
    fill_uniform(&r, x, nx, 0, 1);
    for (int b = 0; b < B; b++)
        targets[b] = (int)bs_rng_below(&r, (uint32_t)V);

    model_ctx c = {.m = m, .ws = ws, .x = x, .targets = targets, .B = B};
    model_loss(&c, NULL);
    c.regime_len = record_regime(&c, NULL);
    c.base_regime = calloc(c.regime_len + 1, 1);
    c.regime = calloc(c.regime_len + 1, 1);
    assert_non_null(c.base_regime);
    assert_non_null(c.regime);
    record_regime(&c, c.base_regime);

    mean_xent_grad(dlogits, ws, targets, B, (int)V);
    fill_const(dx, nx, 123.0f);
    bs_model_backward(m, ws, dlogits, dparams, dx, B);

    /* conventions: dparams accumulates, dx is overwritten, either may be NULL */
    memcpy(dparams1, dparams, m->n_params * sizeof(float));
    fill_const(dx2, nx, -7.0f);
    bs_model_backward(m, ws, dlogits, dparams, dx2, B);
    assert_all_close("model dx on a second call", dx2, dx, nx, 0);
    for (size_t i = 0; i < m->n_params; i++)
        dparams1[i] *= 2.0f;
    assert_all_close("model dparams after two calls", dparams, dparams1, m->n_params, 1e-6);
    fill_const(dx2, nx, -7.0f);
    bs_model_backward(m, ws, dlogits, NULL, dx2, B);
    assert_all_close("model dx without dparams", dx2, dx, nx, 0);
    memset(dparams, 0, m->n_params * sizeof(float));
    bs_model_backward(m, ws, dlogits, dparams, NULL, B);
    for (size_t i = 0; i < m->n_params; i++)
        dparams1[i] *= 0.5f;
    assert_all_close("model dparams without dx", dparams, dparams1, m->n_params, 0);

    expect_grad("model dx", grad_check(model_loss, &c, x, nx, dx, 0.02f, 200, &r));
    expect_grad("model dparams", grad_check(model_loss, &c, m->params, m->n_params,
                                            dparams, 0.02f, 200, &r));

    free(c.base_regime); free(c.regime);
    free(x); free(dx); free(dx2); free(dparams); free(dparams1); free(dlogits);
    bs_workspace_free(ws);
    bs_model_free(m);
}

static void test_model_gradients(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof model_cases / sizeof *model_cases; i++)
        check_model_grad(&model_cases[i], 60 + i);
}

/* A forward pass's multiply-adds, counted by hand: a linear layer's
 * weights once, a conv2d's once per output position. */
static void test_model_macs(void **state)
{
    (void)state;
    static const struct {
        model_case mc;
        size_t macs;
    } cases[] = {
        /* 784*100 + 100*100 + 100*10 */
        {{"fc:100,100", {1, 28, 28}, 10}, 89400},
        /* conv 2x1x5x5 over 16x12, conv 3x2x5x5 over 4x2, linear 6*5, 5*4 */
        {{"cnn:2,3:5", {1, 20, 16}, 4}, 50 * 16 * 12 + 150 * 4 * 2 + 30 + 20},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        bs_model *m = make_model(&cases[k].mc, 1);
        assert_int_equal(bs_model_macs(m), cases[k].macs);
        bs_model_free(m);
    }
}

/* A batch gives the logits of its samples run one by one, and a batch
 * smaller than the workspace gives the same logits and gradients as one
 * that fills it. */
static void test_model_batch_consistency(void **state)
{
    (void)state;
    enum { B = 5, CAP = 8, SMALL = 3 };
    for (size_t k = 0; k < sizeof model_cases / sizeof *model_cases; k++) {
        const model_case *mc = &model_cases[k];
        bs_rng r;
        bs_rng_seed(&r, 70 + k);
        bs_model *m = make_model(mc, 70 + k);
        size_t V = (size_t)m->classes, in = m->input_size;
        bs_workspace *ws_b = bs_workspace_new(m, B), *ws_1 = bs_workspace_new(m, 1);
        bs_workspace *ws_cap = bs_workspace_new(m, CAP), *ws_small = bs_workspace_new(m, SMALL);
        assert_non_null(ws_b);
        assert_non_null(ws_1);
        assert_non_null(ws_cap);
        assert_non_null(ws_small);
        float *x = falloc(B * in), *logits = falloc(B * V), *dlogits = falloc(SMALL * V);
        float *dx_cap = falloc(SMALL * in), *dx_small = falloc(SMALL * in);
        float *dp_cap = falloc(m->n_params), *dp_small = falloc(m->n_params);
        int targets[SMALL];
        fill_uniform(&r, x, B * in, 0, 1);
        for (int b = 0; b < SMALL; b++)
            targets[b] = (int)bs_rng_below(&r, (uint32_t)V);

        memcpy(logits, bs_model_forward(m, ws_b, x, B), B * V * sizeof(float));
        for (int b = 0; b < B; b++) {
            const float *one = bs_model_forward(m, ws_1, x + b * in, 1);
            for (size_t v = 0; v < V; v++) {
                float a = logits[b * V + v], s = one[v];
                if (!(fabs(a - s) <= 1e-6 * fmax(fmax(fabs(a), fabs(s)), 1.0)))
                    fail_msg("%s: sample %d logit %zu is %.9g in a batch of %d, "
                             "%.9g alone", mc->spec ? mc->spec : "hand-built",
                             b, v, (double)a, B, (double)s);
            }
        }

        const float *lc = bs_model_forward(m, ws_cap, x, SMALL);
        const float *ls = bs_model_forward(m, ws_small, x, SMALL);
        assert_all_close("logits, batch below capacity", lc, ls, SMALL * V, 1e-6);
        float loss_cap = bs_model_loss(m, ws_cap, targets, SMALL);
        float loss_small = bs_model_loss(m, ws_small, targets, SMALL);
        assert_true(fabs(loss_cap - loss_small) <= 1e-6 * fmax(1.0, fabs(loss_small)));
        mean_xent_grad(dlogits, ws_cap, targets, SMALL, (int)V);
        bs_model_backward(m, ws_cap, dlogits, dp_cap, dx_cap, SMALL);
        bs_model_backward(m, ws_small, dlogits, dp_small, dx_small, SMALL);
        assert_all_close("dx, batch below capacity", dx_cap, dx_small, SMALL * in, 1e-6);
        assert_all_close("dparams, batch below capacity", dp_cap, dp_small, m->n_params, 1e-6);

        free(x); free(logits); free(dlogits); free(dx_cap); free(dx_small);
        free(dp_cap); free(dp_small);
        bs_workspace_free(ws_b);
        bs_workspace_free(ws_1);
        bs_workspace_free(ws_cap);
        bs_workspace_free(ws_small);
        bs_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_conv_out_size),
        cmocka_unit_test(test_conv2d_forward_direct),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_maxpool2d),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_sigmoid_accuracy),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_softmax_xent_large_logits),
        cmocka_unit_test(test_model_gradients),
        cmocka_unit_test(test_model_batch_consistency),
        cmocka_unit_test(test_model_macs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
