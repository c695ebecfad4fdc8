/* ops — the table of op kinds: per kind its shape rules, its kernels over a
 * batch (core/layers.c), its Lipschitz bound and its workspace needs. */
#include "core/ops.h"

#include "core/analysis.h"
#include "core/error.h"
#include "core/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOW 256   /* a window's size, stride, dilation or padding at most */
#define MAX_FEATURES 1000000

void bs_tensor_chw(const bs_tensor *t, int chw[3])
{
    const int *d = t->dims;
    switch (t->rank) {
    case 1: chw[0] = d[0], chw[1] = 1, chw[2] = 1; break;
    case 2: chw[0] = d[0], chw[1] = d[1], chw[2] = 1; break;
    case 3: chw[0] = d[0], chw[1] = d[1], chw[2] = d[2]; break;
    default: chw[0] = d[0] * d[1], chw[1] = d[2], chw[2] = d[3]; break;
    }
}

static const bs_tensor *input(const bs_op_run *r, int k)
{
    return &r->m->tensors[r->l->in[k]];
}

static const bs_tensor *output(const bs_op_run *r)
{
    return &r->m->tensors[r->l->out];
}

/* floats of the node's output over the batch */
static size_t out_n(const bs_op_run *r)
{
    return (size_t)r->B * output(r)->size;
}

static const float *weight(const bs_op_run *r)
{
    return r->m->params + r->l->weight_off;
}

static const float *bias(const bs_op_run *r)
{
    return r->m->params + r->l->bias_off;
}

static void set_dims(bs_tensor *t, int rank, const int *dims)
{
    t->rank = rank;
    memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
}

static void same_shape(const bs_tensor *in, bs_tensor *out)
{
    set_dims(out, in->rank, in->dims);
}

/* An image (C,H,W) in chw; in a chain a flat (C) is (C,1,1). */
static int image_of(const bs_tensor *t, int chain, int chw[3])
{
    if (t->rank != 3 && !(chain && t->rank == 1))
        return -1;
    bs_tensor_chw(t, chw);
    return 0;
}

static void set_image(bs_tensor *t, int c, int h, int w, int chain)
{
    if (chain && h == 1 && w == 1)
        set_dims(t, 1, (int[]){c});
    else
        set_dims(t, 3, (int[]){c, h, w});
}

static int not_image(const bs_tensor *t, char *why)
{
    return bs_fail(why, "needs an image (C,H,W) but gets a tensor of rank %d", t->rank);
}

/* ------------------------------------------------------------------------ */
/* windows: conv2d, maxpool2d, avgpool2d */

bs_conv_dims bs_op_window(const bs_model *m, const bs_layer *l)
{
    int in[3], out[3];
    bs_tensor_chw(&m->tensors[l->in[0]], in);
    bs_tensor_chw(&m->tensors[l->out], out);
    bs_conv_dims d = {.C = in[0], .H = in[1], .W = in[2], .OC = out[0], .OH = out[1],
                      .OW = out[2]};
    if (!l->kernel_h) {
        d.K = l->kernel;
        d.stride = l->stride;
        d.pad = l->kind == BS_CONV2D ? l->padding : 0;
    } else {
        d.K = d.kh = l->kernel_h;
        d.kw = l->kernel_w;
        d.sh = l->stride_h > 0 ? l->stride_h : 1;
        d.sw = l->stride_w > 0 ? l->stride_w : 1;
        d.dh = l->dilation_h > 0 ? l->dilation_h : 1;
        d.dw = l->dilation_w > 0 ? l->dilation_w : 1;
        d.pt = l->pads[0], d.pl = l->pads[1], d.pb = l->pads[2], d.pr = l->pads[3];
        d.stride = d.sh;
    }
    d.groups = l->kind == BS_CONV2D && l->groups > 1 ? l->groups : 1;
    return d;
}

static int in_range(int v, int lo, int hi)
{
    return v >= lo && v <= hi;
}

/* The output (oh, ow) of a general window over (H,W); -1 with why when the
 * window's numbers are out of range or it does not fit. */
static int general_window(const bs_layer *l, int H, int W, int C, int *oh, int *ow, char *why)
{
    int sh = l->stride_h > 0 ? l->stride_h : 1, sw = l->stride_w > 0 ? l->stride_w : 1;
    int dh = l->dilation_h > 0 ? l->dilation_h : 1, dw = l->dilation_w > 0 ? l->dilation_w : 1;
    if (!in_range(l->kernel_h, 1, MAX_WINDOW) || !in_range(l->kernel_w, 1, MAX_WINDOW) ||
        sh > MAX_WINDOW || sw > MAX_WINDOW || dh > MAX_WINDOW || dw > MAX_WINDOW)
        return bs_fail(why, "has an invalid window (kernel %dx%d, strides %d,%d, "
                       "dilations %d,%d)", l->kernel_h, l->kernel_w, sh, sw, dh, dw);
    for (int k = 0; k < 4; k++)
        if (!in_range(l->pads[k], 0, MAX_WINDOW))
            return bs_fail(why, "has an invalid padding %d", l->pads[k]);
    if (l->kind != BS_CONV2D && (l->pads[0] >= l->kernel_h || l->pads[2] >= l->kernel_h ||
                                 l->pads[1] >= l->kernel_w || l->pads[3] >= l->kernel_w))
        return bs_fail(why, "pads (%d,%d,%d,%d) a window of %dx%d by as much as the window",
                       l->pads[0], l->pads[1], l->pads[2], l->pads[3], l->kernel_h,
                       l->kernel_w);
    *oh = bs_window_out_size(H, l->kernel_h, sh, l->pads[0], l->pads[2], dh);
    *ow = bs_window_out_size(W, l->kernel_w, sw, l->pads[1], l->pads[3], dw);
    if (*oh <= 0 || *ow <= 0)
        return bs_fail(why, "with kernel %dx%d does not fit its input (%d,%d,%d)", l->kernel_h,
                       l->kernel_w, C, H, W);
    return 0;
}

static int conv2d_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                        char *why)
{
    int s[3], oh, ow, kk;
    if (image_of(in[0], chain, s))
        return not_image(in[0], why);
    if (!l->kernel_h) {
        if (!in_range(l->out_channels, 1, 65536) || !in_range(l->kernel, 1, 64) ||
            !in_range(l->stride, 1, 64) || !in_range(l->padding, 0, 64))
            return bs_fail(why, "has invalid hyper-parameters (out_channels %d, kernel %d, "
                           "stride %d, padding %d)", l->out_channels, l->kernel, l->stride,
                           l->padding);
        oh = bs_conv_out_size(s[1], l->kernel, l->stride, l->padding);
        ow = bs_conv_out_size(s[2], l->kernel, l->stride, l->padding);
        if (oh <= 0 || ow <= 0)
            return bs_fail(why, "with kernel %d does not fit its input (%d,%d,%d)", l->kernel,
                           s[0], s[1], s[2]);
        kk = l->kernel * l->kernel;
    } else {
        if (!in_range(l->out_channels, 1, 65536))
            return bs_fail(why, "has invalid out_channels %d", l->out_channels);
        if (general_window(l, s[1], s[2], s[0], &oh, &ow, why))
            return -1;
        kk = l->kernel_h * l->kernel_w;
    }
    int G = l->groups > 1 ? l->groups : 1;
    if (s[0] % G || l->out_channels % G)
        return bs_fail(why, "has %d groups, which do not divide its %d input and %d output "
                       "channels", G, s[0], l->out_channels);
    l->weight_size = (size_t)l->out_channels * (s[0] / G) * kk;
    l->bias_size = (size_t)l->out_channels;
    set_image(out, l->out_channels, oh, ow, chain);
    return 0;
}

static void conv2d_forward(const bs_op_run *r)
{
    bs_conv_dims d = bs_op_window(r->m, r->l);
    bs_conv2d_forward(r->out, r->in[0], weight(r), bias(r), r->ws->col, r->B, &d,
                      r->ws->team);
}

static void conv2d_backward(const bs_op_run *r, const float *dout, float *const *din,
                            float *dw, float *db)
{
    bs_conv_dims d = bs_op_window(r->m, r->l);
    bs_conv2d_backward(din[0], dw, db, dout, r->in[0], weight(r), r->ws->col, r->B, &d,
                       r->ws->team);
}

static size_t conv2d_scratch(const bs_model *m, const bs_layer *l)
{
    bs_conv_dims d = bs_op_window(m, l);
    return bs_conv2d_scratch(&d);
}

/* conv2d as the operator it is (pads, strides, dilations, groups), in
 * double for power iteration: x (C,H,W) -> W * x (no bias), and its
 * adjoint, which sends each product back along the same tap. */
typedef struct conv_op {
    bs_conv_dims d;
    const float *w;
} conv_op;

static void conv_taps(const conv_op *op, double *y, double *x, int adjoint)
{
    const bs_conv_dims *d = &op->d;
    int G = d->groups, Cg = d->C / G, OCg = d->OC / G;
    memset(adjoint ? x : y, 0,
           (adjoint ? (size_t)d->C * d->H * d->W : (size_t)d->OC * d->OH * d->OW) * sizeof *y);
    for (int o = 0; o < d->OC; o++)
        for (int c = 0; c < Cg; c++) {
            int ic = o / OCg * Cg + c;
            for (int ky = 0; ky < d->kh; ky++)
                for (int kx = 0; kx < d->kw; kx++) {
                    double w = op->w[(((size_t)o * Cg + c) * d->kh + ky) * d->kw + kx];
                    for (int oy = 0; oy < d->OH; oy++) {
                        int iy = oy * d->sh - d->pt + ky * d->dh;
                        if (iy < 0 || iy >= d->H)
                            continue;
                        for (int ox = 0; ox < d->OW; ox++) {
                            int ix = ox * d->sw - d->pl + kx * d->dw;
                            if (ix < 0 || ix >= d->W)
                                continue;
                            size_t at = ((size_t)ic * d->H + iy) * d->W + ix;
                            size_t to = ((size_t)o * d->OH + oy) * d->OW + ox;
                            if (adjoint)
                                x[at] += w * y[to];
                            else
                                y[to] += w * x[at];
                        }
                    }
                }
        }
}

static void conv_apply(void *ctx, double *out, const double *in)
{
    conv_taps(ctx, out, (double *)in, 0); /* in is only read */
}

static void conv_adjoint(void *ctx, double *out, const double *in)
{
    conv_taps(ctx, (double *)in, out, 1); /* in is only read */
}

static double conv2d_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                               int *iterations, const char **note)
{
    (void)note;
    bs_conv_dims d = bs_op_window(m, l);
    const float *w = m->params + l->weight_off;
    int square = !l->kernel_h ||
                 (d.kh == d.kw && d.sh == d.sw && d.dh == 1 && d.dw == 1 && d.pt == d.pb &&
                  d.pl == d.pr && d.pt == d.pl);
    if (square && d.groups == 1) {
        /* the DFT of the kernel over the padded grid (§4.3) */
        bs_conv_dims s = d;
        s.kh = 0;
        s.pad = l->kernel_h ? d.pt : d.pad;
        return bs_lipschitz_conv2d(w, &s, seed, iterations);
    }
    if (!d.kh) { /* a square kernel in many groups */
        d.kh = d.kw = d.K;
        d.sh = d.sw = d.stride;
        d.pt = d.pl = d.pb = d.pr = d.pad;
        d.dh = d.dw = 1;
    }
    conv_op c = {.d = d, .w = w};
    return bs_lipschitz_operator(conv_apply, conv_adjoint, &c, (size_t)d.C * d.H * d.W,
                                 (size_t)d.OC * d.OH * d.OW, BS_LIPSCHITZ_TOL, seed,
                                 iterations);
}

static int pool_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                      char *why)
{
    int s[3], oh, ow;
    if (image_of(in[0], chain, s))
        return not_image(in[0], why);
    if (!l->kernel_h) {
        if (l->stride == 0)
            l->stride = l->kernel;
        if (!in_range(l->kernel, 1, 64) || !in_range(l->stride, 1, 64))
            return bs_fail(why, "has invalid kernel %d or stride %d", l->kernel, l->stride);
        oh = bs_conv_out_size(s[1], l->kernel, l->stride, 0);
        ow = bs_conv_out_size(s[2], l->kernel, l->stride, 0);
        if (oh <= 0 || ow <= 0)
            return bs_fail(why, "with kernel %d does not fit its input (%d,%d,%d)", l->kernel,
                           s[0], s[1], s[2]);
    } else if (general_window(l, s[1], s[2], s[0], &oh, &ow, why)) {
        return -1;
    }
    set_image(out, s[0], oh, ow, chain);
    return 0;
}

static void maxpool2d_forward(const bs_op_run *r)
{
    bs_conv_dims d = bs_op_window(r->m, r->l);
    bs_maxpool2d_forward_argmax(r->out, r->ws->argmax[r->node], r->in[0], r->B, &d);
}

static void maxpool2d_backward(const bs_op_run *r, const float *dout, float *const *din,
                               float *dw, float *db)
{
    (void)dw, (void)db;
    bs_conv_dims d = bs_op_window(r->m, r->l);
    if (din[0])
        bs_maxpool2d_backward_argmax(din[0], dout, r->ws->argmax[r->node], r->B, &d);
}

/* Along one axis, how many windows one input can fall in: their starts lie
 * in a span of (k-1)d+1, s apart, and no two reach it by the same tap. */
static int windows_per_input(int k, int s, int dil)
{
    int span = (k - 1) * dil + 1, n = (span + s - 1) / s;
    return n < k ? n : k;
}

static double maxpool2d_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                                  int *iterations, const char **note)
{
    (void)m, (void)seed, (void)iterations, (void)note;
    /* |max_w a - max_w b| <= ||(a-b)_w||_2; summed over windows, each input
     * counts once per window holding it. */
    if (!l->kernel_h)
        return l->stride >= l->kernel ? 1.0
                                      : (double)((l->kernel + l->stride - 1) / l->stride);
    bs_conv_dims d = bs_op_window(m, l);
    return sqrt((double)windows_per_input(d.kh, d.sh, d.dh) *
                windows_per_input(d.kw, d.sw, d.dw));
}

static void avgpool2d_forward(const bs_op_run *r)
{
    bs_conv_dims d = bs_op_window(r->m, r->l);
    bs_avgpool2d_forward(r->out, r->in[0], r->l->count_include_pad, r->B, &d);
}

static void avgpool2d_backward(const bs_op_run *r, const float *dout, float *const *din,
                               float *dw, float *db)
{
    (void)dw, (void)db;
    bs_conv_dims d = bs_op_window(r->m, r->l);
    if (din[0])
        bs_avgpool2d_backward(din[0], dout, r->l->count_include_pad, r->B, &d);
}

static double avgpool2d_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                                  int *iterations, const char **note)
{
    (void)seed, (void)iterations, (void)note;
    /* Schur's test: ||A||_2 <= sqrt(||A||_1 ||A||_inf), the largest column
     * sum (the weights reaching one input) times the largest row sum (the
     * weights of one window); exact for windows that do not overlap.
     * Channels are pooled apart, so one plane's operator has the norm.
     * Row sums are the pool of an all-ones plane, column sums the adjoint
     * of all-ones outputs. */
    bs_conv_dims p = bs_op_window(m, l);
    p.C = p.OC = 1;
    size_t n_in = (size_t)p.H * p.W, n_out = (size_t)p.OH * p.OW;
    size_t n_max = n_in > n_out ? n_in : n_out;
    float *ones = calloc(n_max, sizeof *ones);
    float *rows = malloc(n_out * sizeof *rows), *cols = malloc(n_in * sizeof *cols);
    double row = 0.0, col = 0.0;
    int ok = ones && rows && cols;
    if (ok) {
        for (size_t i = 0; i < n_max; i++)
            ones[i] = 1.0f;
        bs_avgpool2d_forward(rows, ones, l->count_include_pad, 1, &p);
        bs_avgpool2d_backward(cols, ones, l->count_include_pad, 1, &p);
        for (size_t i = 0; i < n_out; i++)
            row = rows[i] > row ? rows[i] : row;
        for (size_t i = 0; i < n_in; i++)
            col = cols[i] > col ? cols[i] : col;
    }
    free(ones);
    free(rows);
    free(cols);
    /* the float sums may round down: a relative 1e-6 keeps it a bound */
    return ok ? sqrt(row * col) * (1.0 + 1e-6) : -1.0;
}

static int global_avgpool_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out,
                                int chain, char *why)
{
    (void)l;
    int s[3];
    if (image_of(in[0], chain, s))
        return not_image(in[0], why);
    set_image(out, s[0], 1, 1, chain);
    return 0;
}

static void global_avgpool_forward(const bs_op_run *r)
{
    int s[3];
    bs_tensor_chw(input(r, 0), s);
    bs_global_avgpool_forward(r->out, r->in[0], r->B, s[0], s[1] * s[2]);
}

static void global_avgpool_backward(const bs_op_run *r, const float *dout, float *const *din,
                                    float *dw, float *db)
{
    (void)dw, (void)db;
    int s[3];
    bs_tensor_chw(input(r, 0), s);
    if (din[0])
        bs_global_avgpool_backward(din[0], dout, r->B, s[0], s[1] * s[2]);
}

static double global_avgpool_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                                       int *iterations, const char **note)
{
    (void)seed, (void)iterations, (void)note;
    /* a plane's mean is <1/n, x>: norm 1/sqrt(n), exactly */
    int s[3];
    bs_tensor_chw(&m->tensors[l->in[0]], s);
    return 1.0 / sqrt((double)s[1] * s[2]);
}

/* ------------------------------------------------------------------------ */
/* linear over the last dimension */

static int linear_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                        char *why)
{
    const bs_tensor *t = in[0];
    if (chain && t->rank != 1) {
        int s[3];
        bs_tensor_chw(t, s);
        return bs_fail(why, "needs a flat input but gets (%d,%d,%d); put a flatten layer "
                       "before it", s[0], s[1], s[2]);
    }
    if (!in_range(l->out_features, 1, MAX_FEATURES))
        return bs_fail(why, "has invalid out_features %d", l->out_features);
    int dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    dims[t->rank - 1] = l->out_features;
    set_dims(out, t->rank, dims);
    l->weight_size = (size_t)l->out_features * t->dims[t->rank - 1];
    l->bias_size = (size_t)l->out_features;
    return 0;
}

/* rows of the product: the batch times every dimension but the last */
static int linear_rows(const bs_op_run *r, int *C)
{
    const bs_tensor *t = input(r, 0);
    *C = t->dims[t->rank - 1];
    return (int)((size_t)r->B * (t->size / (size_t)*C));
}

static void linear_forward(const bs_op_run *r)
{
    int C, rows = linear_rows(r, &C);
    bs_linear_forward(r->out, r->in[0], weight(r), bias(r), rows, C, r->l->out_features,
                      r->ws->team);
}

static void linear_backward(const bs_op_run *r, const float *dout, float *const *din,
                            float *dw, float *db)
{
    int C, rows = linear_rows(r, &C);
    bs_linear_backward(din[0], dw, db, dout, r->in[0], weight(r), rows, C,
                       r->l->out_features, r->ws->team);
}

static double linear_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                               int *iterations, const char **note)
{
    (void)note;
    const bs_tensor *t = &m->tensors[l->in[0]];
    return bs_lipschitz_linear(m->params + l->weight_off, l->out_features,
                               t->dims[t->rank - 1], seed, iterations);
}

/* ------------------------------------------------------------------------ */
/* shape-preserving elementwise ops */

static int same_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                      char *why)
{
    (void)chain;
    if (l->kind == BS_DROPOUT && !(l->p >= 0.0f && l->p < 1.0f))
        return bs_fail(why, "has p %g outside [0,1)", (double)l->p);
    if (l->kind == BS_CLIP && !(l->alpha <= l->beta))
        return bs_fail(why, "has min %g above max %g", (double)l->alpha, (double)l->beta);
    same_shape(in[0], out);
    return 0;
}

/* Activations without parameters: a kernel pair per kind; backward takes
 * the forward's output (relu, sigmoid, tanh) or its input (hardswish). */
typedef struct activation {
    void (*forward)(float *out, const float *inp, size_t n);
    void (*backward)(float *dinp, const float *dout, const float *x, size_t n);
    int from_input;
} activation;

static const activation activations[] = {
    [BS_RELU] = {bs_relu_forward, bs_relu_backward, 0},
    [BS_SIGMOID] = {bs_sigmoid_forward, bs_sigmoid_backward, 0},
    [BS_TANH] = {bs_tanh_forward, bs_tanh_backward, 0},
    [BS_HARDSWISH] = {bs_hardswish_forward, bs_hardswish_backward, 1},
};

static void activation_forward(const bs_op_run *r)
{
    activations[r->l->kind].forward(r->out, r->in[0], out_n(r));
}

static void activation_backward(const bs_op_run *r, const float *dout, float *const *din,
                                float *dw, float *db)
{
    (void)dw, (void)db;
    const activation *a = &activations[r->l->kind];
    if (din[0])
        a->backward(din[0], dout, a->from_input ? r->in[0] : r->out, out_n(r));
}

static uint64_t mask_next(uint64_t *s)
{
    /* xorshift64: cheap, deterministic per workspace */
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void dropout_forward(const bs_op_run *r)
{
    const bs_layer *l = r->l;
    size_t n = out_n(r);
    uint8_t *mask = NULL;
    if (r->ws->training && l->p > 0.0f) {
        mask = r->ws->masks[r->node];
        uint64_t keep = (uint64_t)((1.0 - l->p) * 4294967296.0);
        for (size_t j = 0; j < n; j++)
            mask[j] = (mask_next(&r->ws->rng) >> 32) < keep;
    }
    bs_dropout_forward(r->out, r->in[0], mask, l->p, n);
}

static void dropout_backward(const bs_op_run *r, const float *dout, float *const *din,
                             float *dw, float *db)
{
    (void)dw, (void)db;
    const bs_layer *l = r->l;
    if (din[0])
        bs_dropout_backward(din[0], dout,
                            r->ws->training && l->p > 0.0f ? r->ws->masks[r->node] : NULL, l->p,
                            out_n(r));
}

static void leaky_relu_forward(const bs_op_run *r)
{
    bs_leaky_relu_forward(r->out, r->in[0], r->l->alpha, out_n(r));
}

static void leaky_relu_backward(const bs_op_run *r, const float *dout, float *const *din,
                                float *dw, float *db)
{
    (void)dw, (void)db;
    if (din[0])
        bs_leaky_relu_backward(din[0], dout, r->in[0], r->l->alpha, out_n(r));
}

static void clip_forward(const bs_op_run *r)
{
    bs_clip_forward(r->out, r->in[0], r->l->alpha, r->l->beta, out_n(r));
}

static void clip_backward(const bs_op_run *r, const float *dout, float *const *din, float *dw,
                          float *db)
{
    (void)dw, (void)db;
    if (din[0])
        bs_clip_backward(din[0], dout, r->in[0], r->l->alpha, r->l->beta, out_n(r));
}

static void hardsigmoid_forward(const bs_op_run *r)
{
    bs_hardsigmoid_forward(r->out, r->in[0], r->l->alpha, r->l->beta, out_n(r));
}

static void hardsigmoid_backward(const bs_op_run *r, const float *dout, float *const *din,
                                 float *dw, float *db)
{
    (void)dw, (void)db;
    if (din[0])
        bs_hardsigmoid_backward(din[0], dout, r->in[0], r->l->alpha, r->l->beta, out_n(r));
}

/* Constant bounds: the largest slope of the op. */
static double one_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                            int *iterations, const char **note)
{
    (void)m, (void)seed, (void)iterations, (void)note;
    switch (l->kind) {
    case BS_SIGMOID:
        return 0.25;
    case BS_LEAKY_RELU:
        return fabs((double)l->alpha) > 1.0 ? fabs((double)l->alpha) : 1.0;
    case BS_HARDSIGMOID:
        return fabs((double)l->alpha);
    case BS_HARDSWISH:
        return 1.5; /* x/3 + 1/2 at x -> 3 */
    default:
        return 1.0; /* relu, tanh, clip, dropout at inference, flatten,
                     * reshape, and softmax (Gao and Pavel 2017) */
    }
}

/* ------------------------------------------------------------------------ */
/* reshape and flatten: the same floats */

static size_t product(const int *dims, int rank)
{
    size_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= (size_t)dims[k];
    return n;
}

static int reshape_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                         char *why)
{
    (void)chain;
    size_t n = in[0]->size;
    if (l->kind == BS_FLATTEN || l->shape_rank == 0) {
        set_dims(out, 1, (int[]){(int)n});
        return 0;
    }
    if (!in_range(l->shape_rank, 1, BS_MAX_RANK))
        return bs_fail(why, "has a shape of rank %d (1 to %d)", l->shape_rank, BS_MAX_RANK);
    int dims[BS_MAX_RANK], free_at = -1;
    size_t known = 1;
    for (int k = 0; k < l->shape_rank; k++) {
        dims[k] = l->shape[k];
        if (dims[k] == -1 && free_at < 0)
            free_at = k;
        else if (dims[k] <= 0)
            return bs_fail(why, "has an invalid dimension %d in its shape", dims[k]);
        else
            known *= (size_t)dims[k];
    }
    if (free_at >= 0) {
        if (n % known)
            return bs_fail(why, "cannot spread %zu floats over its shape", n);
        dims[free_at] = (int)(n / known);
        known = n;
    }
    if (known != n)
        return bs_fail(why, "shapes %zu floats as %zu", n, known);
    set_dims(out, l->shape_rank, dims);
    return 0;
}

static void reshape_forward(const bs_op_run *r)
{
    if (r->out != r->in[0])
        memcpy(r->out, r->in[0], out_n(r) * sizeof(float));
}

static void reshape_backward(const bs_op_run *r, const float *dout, float *const *din,
                             float *dw, float *db)
{
    (void)dw, (void)db;
    if (din[0] && din[0] != dout)
        memcpy(din[0], dout, out_n(r) * sizeof(float));
}

/* ------------------------------------------------------------------------ */
/* binary ops with broadcasting */

/* "(2,3,4)": a tensor's dims for a message; buf holds 64. */
static const char *dims_text(char *buf, const bs_tensor *t)
{
    int n = snprintf(buf, 64, "(");
    for (int k = 0; k < t->rank && n < 48; k++)
        n += snprintf(buf + n, (size_t)(64 - n), k ? ",%d" : "%d", t->dims[k]);
    snprintf(buf + n, (size_t)(64 - n), ")");
    return buf;
}

static int binary_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                        char *why)
{
    (void)chain;
    bs_bcast g;
    if (in[0]->constant && in[1]->constant)
        return bs_fail(why, "reads two constants; fold it into one");
    if (l->kind == BS_DIV && !in[1]->constant)
        return bs_fail(why, "divides by a tensor that is not a constant");
    if (bs_bcast_make(&g, in[0]->dims, in[0]->rank, 0, in[1]->dims, in[1]->rank, 0)) {
        char a[64], b[64];
        return bs_fail(why, "cannot broadcast %s and %s", dims_text(a, in[0]),
                       dims_text(b, in[1]));
    }
    set_dims(out, g.rank, g.dims + BS_BCAST_RANK - g.rank);
    return 0;
}

static bs_binary_op binary_of(bs_layer_kind k)
{
    return k == BS_ADD ? BS_BIN_ADD : k == BS_SUB ? BS_BIN_SUB : k == BS_MUL ? BS_BIN_MUL
                                                                             : BS_BIN_DIV;
}

static void binary_geometry(const bs_op_run *r, bs_bcast *g)
{
    const bs_tensor *a = input(r, 0), *b = input(r, 1);
    bs_bcast_make(g, a->dims, a->rank, a->constant, b->dims, b->rank, b->constant);
}

static void binary_forward(const bs_op_run *r)
{
    bs_bcast g;
    binary_geometry(r, &g);
    bs_binary_forward(r->out, r->in[0], r->in[1], binary_of(r->l->kind), &g, r->B);
}

static void binary_backward(const bs_op_run *r, const float *dout, float *const *din,
                            float *dw, float *db)
{
    (void)dw, (void)db;
    bs_bcast g;
    binary_geometry(r, &g);
    bs_binary_backward(din[0], din[1], dout, r->in[0], r->in[1], binary_of(r->l->kind), &g,
                       r->B);
}

static double binary_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                               int *iterations, const char **note)
{
    (void)seed, (void)iterations;
    const bs_tensor *a = &m->tensors[l->in[0]], *b = &m->tensors[l->in[1]];
    if (l->kind == BS_ADD || l->kind == BS_SUB)
        return 1.0; /* of each input; rule BS_LIP_SUM adds them */
    if (!a->constant && !b->constant) {
        *note = "the product of two tensors that depend on the input has no global "
                "Lipschitz bound";
        return HUGE_VAL;
    }
    const bs_tensor *c = a->constant ? a : b;
    const float *v = m->params + c->off;
    double top = 0.0, low = HUGE_VAL;
    for (size_t i = 0; i < c->size; i++) {
        double x = fabs((double)v[i]);
        top = x > top ? x : top;
        low = x < low ? x : low;
    }
    if (l->kind == BS_MUL)
        return top;
    if (low == 0.0) {
        *note = "divides by a constant that holds a zero";
        return HUGE_VAL;
    }
    return 1.0 / low;
}

/* ------------------------------------------------------------------------ */
/* concat, pad, softmax */

static int axis_of(int axis, int rank)
{
    return axis < 0 ? axis + rank : axis;
}

static int concat_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                        char *why)
{
    (void)chain;
    int rank = in[0]->rank, axis = axis_of(l->axis, rank);
    if (!in_range(axis, 0, rank - 1))
        return bs_fail(why, "has axis %d outside a sample's %d dims", l->axis, rank);
    int dims[BS_MAX_RANK];
    memcpy(dims, in[0]->dims, sizeof dims);
    for (int k = 1; k < l->n_in; k++) {
        if (in[k]->rank != rank)
            return bs_fail(why, "joins tensors of rank %d and %d", rank, in[k]->rank);
        for (int j = 0; j < rank; j++)
            if (j != axis && in[k]->dims[j] != dims[j])
                return bs_fail(why, "joins tensors whose dim %d differs (%d and %d)", j,
                               dims[j], in[k]->dims[j]);
        dims[axis] += in[k]->dims[axis];
    }
    l->axis = axis;
    set_dims(out, rank, dims);
    return 0;
}

/* floats before the axis (outer) and each input's block (inner) */
static size_t concat_blocks(const bs_op_run *r, size_t *inner)
{
    const bs_tensor *t = input(r, 0);
    size_t outer = product(t->dims, r->l->axis);
    for (int k = 0; k < r->l->n_in; k++)
        inner[k] = input(r, k)->size / outer;
    return outer;
}

static void concat_forward(const bs_op_run *r)
{
    size_t inner[BS_MAX_INPUTS];
    size_t outer = concat_blocks(r, inner);
    bs_concat_forward(r->out, r->in, inner, r->l->n_in, outer, r->B);
}

static void concat_backward(const bs_op_run *r, const float *dout, float *const *din,
                            float *dw, float *db)
{
    (void)dw, (void)db;
    size_t inner[BS_MAX_INPUTS];
    size_t outer = concat_blocks(r, inner);
    bs_concat_backward(din, dout, inner, r->l->n_in, outer, r->B);
}

static int pad_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                     char *why)
{
    int s[3];
    if (image_of(in[0], chain, s))
        return not_image(in[0], why);
    if (!in_range(l->mode, BS_PAD_CONSTANT, BS_PAD_EDGE))
        return bs_fail(why, "has an unknown mode %d", l->mode);
    for (int k = 0; k < 4; k++)
        if (!in_range(l->pads[k], 0, 4096))
            return bs_fail(why, "has an invalid padding %d", l->pads[k]);
    if (l->mode == BS_PAD_REFLECT &&
        (l->pads[0] >= s[1] || l->pads[2] >= s[1] || l->pads[1] >= s[2] || l->pads[3] >= s[2]))
        return bs_fail(why, "reflects by more than its input (%d,%d,%d) holds", s[0], s[1],
                       s[2]);
    set_image(out, s[0], s[1] + l->pads[0] + l->pads[2], s[2] + l->pads[1] + l->pads[3], chain);
    return 0;
}

static void pad_forward(const bs_op_run *r)
{
    int s[3];
    bs_tensor_chw(input(r, 0), s);
    bs_pad_forward(r->out, r->in[0], r->l->pads, r->l->mode, r->l->alpha, r->B, s[0], s[1],
                   s[2]);
}

static void pad_backward(const bs_op_run *r, const float *dout, float *const *din, float *dw,
                         float *db)
{
    (void)dw, (void)db;
    int s[3];
    bs_tensor_chw(input(r, 0), s);
    if (din[0])
        bs_pad_backward(din[0], dout, r->l->pads, r->l->mode, r->B, s[0], s[1], s[2]);
}

/* The most outputs one input is copied to along an axis of n. */
static int pad_copies(int n, int before, int after, int mode)
{
    int *hits = calloc((size_t)n, sizeof *hits), most = 0;
    if (!hits)
        return -1;
    for (int i = 0; i < n + before + after; i++) {
        int x = bs_pad_source(i, n, before, mode);
        if (x >= 0 && ++hits[x] > most)
            most = hits[x];
    }
    free(hits);
    return most;
}

static double pad_lipschitz(const bs_model *m, const bs_layer *l, uint64_t seed,
                            int *iterations, const char **note)
{
    (void)seed, (void)iterations, (void)note;
    int s[3];
    bs_tensor_chw(&m->tensors[l->in[0]], s);
    int cy = pad_copies(s[1], l->pads[0], l->pads[2], l->mode);
    int cx = pad_copies(s[2], l->pads[1], l->pads[3], l->mode);
    if (cy < 0 || cx < 0)
        return -1.0;
    return sqrt((double)cy * cx); /* the constant itself does not move */
}

static int softmax_infer(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                         char *why)
{
    (void)chain;
    int axis = axis_of(l->axis, in[0]->rank);
    if (!in_range(axis, 0, in[0]->rank - 1))
        return bs_fail(why, "has axis %d outside a sample's %d dims", l->axis, in[0]->rank);
    l->axis = axis;
    same_shape(in[0], out);
    return 0;
}

static void softmax_geometry(const bs_op_run *r, size_t *outer, int *len, size_t *inner)
{
    const bs_tensor *t = input(r, 0);
    int a = r->l->axis;
    *outer = (size_t)r->B * product(t->dims, a);
    *len = t->dims[a];
    *inner = product(t->dims + a + 1, t->rank - a - 1);
}

static void softmax_forward(const bs_op_run *r)
{
    size_t outer, inner;
    int len;
    softmax_geometry(r, &outer, &len, &inner);
    bs_softmax_forward(r->out, r->in[0], outer, len, inner);
}

static void softmax_backward(const bs_op_run *r, const float *dout, float *const *din,
                             float *dw, float *db)
{
    (void)dw, (void)db;
    size_t outer, inner;
    int len;
    softmax_geometry(r, &outer, &len, &inner);
    if (din[0])
        bs_softmax_backward(din[0], dout, r->out, outer, len, inner);
}

/* ------------------------------------------------------------------------ */
/* the table */

#define UNARY(fwd, bwd) .min_in = 1, .max_in = 1, .infer = same_infer, .forward = fwd,      \
                        .backward = bwd, .lipschitz = one_lipschitz, .rule = BS_LIP_CHAIN
#define BINARY(lip_rule) .min_in = 2, .max_in = 2, .const_in = 1, .infer = binary_infer,    \
                         .forward = binary_forward, .backward = binary_backward,            \
                         .lipschitz = binary_lipschitz, .rule = lip_rule

static const bs_op ops[] = {
    [BS_LINEAR] = {"linear", 1, 1, 0, linear_infer, linear_forward, linear_backward,
                   linear_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
    [BS_CONV2D] = {"conv2d", 1, 1, 0, conv2d_infer, conv2d_forward, conv2d_backward,
                   conv2d_lipschitz, BS_LIP_CHAIN, conv2d_scratch, 0, 0},
    [BS_MAXPOOL2D] = {"maxpool2d", 1, 1, 0, pool_infer, maxpool2d_forward, maxpool2d_backward,
                      maxpool2d_lipschitz, BS_LIP_CHAIN, NULL, 1, 0},
    [BS_FLATTEN] = {"flatten", 1, 1, 0, reshape_infer, reshape_forward, reshape_backward,
                    one_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
    [BS_RELU] = {"relu", UNARY(activation_forward, activation_backward)},
    [BS_SIGMOID] = {"sigmoid", UNARY(activation_forward, activation_backward)},
    [BS_TANH] = {"tanh", UNARY(activation_forward, activation_backward)},
    [BS_DROPOUT] = {"dropout", UNARY(dropout_forward, dropout_backward), .mask = 1},
    [BS_AVGPOOL2D] = {"avgpool2d", 1, 1, 0, pool_infer, avgpool2d_forward, avgpool2d_backward,
                      avgpool2d_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
    [BS_GLOBAL_AVGPOOL] = {"global_avgpool", 1, 1, 0, global_avgpool_infer,
                           global_avgpool_forward, global_avgpool_backward,
                           global_avgpool_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
    [BS_ADD] = {"add", BINARY(BS_LIP_SUM)},
    [BS_SUB] = {"sub", BINARY(BS_LIP_SUM)},
    [BS_MUL] = {"mul", BINARY(BS_LIP_CHAIN)},
    [BS_DIV] = {"div", BINARY(BS_LIP_CHAIN)},
    [BS_LEAKY_RELU] = {"leaky_relu", UNARY(leaky_relu_forward, leaky_relu_backward)},
    [BS_CLIP] = {"clip", UNARY(clip_forward, clip_backward)},
    [BS_HARDSIGMOID] = {"hardsigmoid", UNARY(hardsigmoid_forward, hardsigmoid_backward)},
    [BS_HARDSWISH] = {"hardswish", UNARY(activation_forward, activation_backward)},
    [BS_CONCAT] = {"concat", 1, BS_MAX_INPUTS, 0, concat_infer, concat_forward,
                   concat_backward, one_lipschitz, BS_LIP_RSS, NULL, 0, 0},
    [BS_PAD] = {"pad", 1, 1, 0, pad_infer, pad_forward, pad_backward, pad_lipschitz,
                BS_LIP_CHAIN, NULL, 0, 0},
    [BS_RESHAPE] = {"reshape", 1, 1, 0, reshape_infer, reshape_forward, reshape_backward,
                    one_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
    [BS_SOFTMAX] = {"softmax", 1, 1, 0, softmax_infer, softmax_forward, softmax_backward,
                    one_lipschitz, BS_LIP_CHAIN, NULL, 0, 0},
};

const bs_op *bs_op_of(bs_layer_kind kind)
{
    if ((unsigned)kind >= sizeof ops / sizeof ops[0] || !ops[kind].name)
        return NULL;
    return &ops[kind];
}
