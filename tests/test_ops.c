/* test_ops — the graph ops and the one executor: every op's forward on
 * small cases worked out by hand, its backward (input and parameter
 * gradients) against central finite differences of the forward (the loss
 * L = sum_i g_i logits_i summed in double, so that only the float forward
 * adds noise), numpy broadcasting, a residual graph and a depthwise +
 * pointwise graph end to end, the refusals of bs_graph_build (naming the
 * node), chains built as graphs giving the same bits as bs_model_build,
 * bs_model_find_node and the layer unit analysis resolves to,
 * the zoo's architectures giving the bits they gave before the graph,
 * and the Lipschitz bounds of graphs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/analysis.h"
#include "core/layers.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/simd.h"

#define EPS 1e-2 /* finite-difference step */
#define TOL 2e-2 /* relative error allowed for one element */

/* ------------------------------------------------------------------------ */
/* building small graphs */

typedef struct graph {
    bs_layer nodes[16];
    bs_tensor tensors[32];
    const float *values[32]; /* constants' floats */
    int n_nodes, n_tensors;
} graph;

static int add_tensor(graph *g, int rank, const int *dims, const float *values)
{
    bs_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->rank = rank;
    memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
    t->constant = values != NULL;
    g->values[g->n_tensors] = values;
    snprintf(t->name, sizeof t->name, "t%d", g->n_tensors);
    return g->n_tensors++;
}

/* The input (tensor 0) of a graph. */
static void input_of(graph *g, int rank, const int *dims)
{
    memset(g, 0, sizeof *g);
    add_tensor(g, rank, dims, NULL);
}

/* Node l reading the given tensors, writing a new one; returns it. */
static int node(graph *g, bs_layer l, const char *name, int n_in, ...)
{
    va_list ap;
    va_start(ap, n_in);
    l.n_in = n_in;
    for (int k = 0; k < n_in; k++)
        l.in[k] = va_arg(ap, int);
    va_end(ap);
    l.out = add_tensor(g, 1, (int[]){1}, NULL);
    snprintf(l.name, sizeof l.name, "%s", name);
    g->nodes[g->n_nodes++] = l;
    return l.out;
}

/* Builds g (failing the test when refused), copies the constants in and
 * sets the parameters from seed. */
static bs_model *build(const graph *g, uint64_t seed)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_graph_build(g->nodes, g->n_nodes, g->tensors, g->n_tensors, err);
    if (!m)
        fail_msg("bs_graph_build: %s", err);
    bs_rng r;
    bs_rng_seed(&r, seed);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] = 2.0f * bs_rng_uniform(&r) - 1.0f;
    for (int t = 0; t < g->n_tensors; t++)
        if (g->values[t])
            memcpy(m->params + m->tensors[t].off, g->values[t],
                   m->tensors[t].size * sizeof(float));
    return m;
}

/* The message bs_graph_build refuses g with. */
static const char *refusal(const graph *g)
{
    static char err[BS_ERR_LEN];
    err[0] = '\0';
    bs_model *m = bs_graph_build(g->nodes, g->n_nodes, g->tensors, g->n_tensors, err);
    assert_null(m);
    return err;
}

static void fill(float *v, size_t n, uint64_t seed, float lo, float hi)
{
    bs_rng r;
    bs_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * bs_rng_uniform(&r);
}

/* ------------------------------------------------------------------------ */
/* running and differentiating */

/* The logits of x (B samples) copied into out. */
static void run(const bs_model *m, const float *x, int B, float *out)
{
    bs_workspace *ws = bs_workspace_new(m, B);
    assert_non_null(ws);
    memcpy(out, bs_model_forward(m, ws, x, B), (size_t)B * m->classes * sizeof(float));
    bs_workspace_free(ws);
}

static double loss(const bs_model *m, bs_workspace *ws, const float *x, const float *g, int B)
{
    const float *z = bs_model_forward(m, ws, x, B);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)B * m->classes; i++)
        s += (double)g[i] * z[i];
    return s;
}

/* Central difference of the loss along v[i]; 1 when it straddles a kink
 * (the one-sided slopes disagree), then *num is not to be trusted. */
static int central(const bs_model *m, bs_workspace *ws, float *x, const float *g, int B,
                   float *v, size_t i, double *num)
{
    float keep = v[i];
    double l0 = loss(m, ws, x, g, B);
    v[i] = keep + (float)EPS;
    double lp = loss(m, ws, x, g, B);
    v[i] = keep - (float)EPS;
    double lm = loss(m, ws, x, g, B);
    v[i] = keep;
    double up = (lp - l0) / EPS, down = (l0 - lm) / EPS;
    *num = (lp - lm) / (2 * EPS);
    return fabs(up - down) > 0.05 * fmax(fmax(fabs(up), fabs(down)), 0.1);
}

static void agree(const char *what, size_t i, double a, double n)
{
    if (fabs(a - n) / fmax(fabs(a) + fabs(n), 1e-2) >= TOL)
        fail_msg("%s %zu: backward %.6g, finite difference %.6g", what, i, a, n);
}

/* The gradients backward gives to x and to every parameter of m against
 * central finite differences; returns how many elements were checked. */
static int check_gradients(bs_model *m, float *x, int B, uint64_t seed)
{
    bs_workspace *ws = bs_workspace_new(m, B);
    assert_non_null(ws);
    size_t nz = (size_t)B * m->classes, nx = (size_t)B * m->input_size;
    float *g = calloc(nz, sizeof *g), *dx = calloc(nx, sizeof *dx);
    float *dp = calloc(m->n_params + 1, sizeof *dp);
    fill(g, nz, seed, -1.0f, 1.0f);
    bs_model_forward(m, ws, x, B);
    bs_model_backward(m, ws, g, dp, dx, B);
    int checked = 0;
    double num;
    for (size_t i = 0; i < nx; i++)
        if (!central(m, ws, x, g, B, x, i, &num)) {
            agree("input", i, dx[i], num);
            checked++;
        }
    for (int l = 0; l < m->n_layers; l++) {
        const bs_layer *n = &m->layers[l];
        for (size_t i = n->weight_off; i < n->bias_off + n->bias_size; i++)
            if (!central(m, ws, x, g, B, m->params, i, &num)) {
                agree("parameter", i, dp[i], num);
                checked++;
            }
    }
    /* the same input gradient without parameter gradients */
    float *dx2 = calloc(nx, sizeof *dx2);
    bs_model_forward(m, ws, x, B);
    bs_model_backward(m, ws, g, NULL, dx2, B);
    assert_memory_equal(dx, dx2, nx * sizeof *dx);
    free(dx2);
    free(g);
    free(dx);
    free(dp);
    bs_workspace_free(ws);
    return checked;
}

/* One op of layer l over an input of the given dims (values in [lo,hi]),
 * its output the logits: gradients checked on a batch of 2. */
static void check_op(bs_layer l, int rank, const int *dims, float lo, float hi)
{
    graph g;
    input_of(&g, rank, dims);
    node(&g, l, "op", 1, 0);
    bs_model *m = build(&g, 11);
    float *x = calloc(2 * m->input_size, sizeof *x);
    fill(x, 2 * m->input_size, 5, lo, hi);
    assert_true(check_gradients(m, x, 2, 3) > 0);
    free(x);
    bs_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* forward on cases worked out by hand */

static void expect(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-5f * fmaxf(1.0f, fabsf(want[i])))
            fail_msg("element %zu is %.7g, expected %.7g", i, (double)got[i], (double)want[i]);
}

/* The logits of the one-node graph l over x of dims (one sample). */
static void forward_one(bs_layer l, int rank, const int *dims, const float *x, float *out)
{
    graph g;
    input_of(&g, rank, dims);
    node(&g, l, "op", 1, 0);
    bs_model *m = build(&g, 1);
    run(m, x, 1, out);
    bs_model_free(m);
}

static void test_activations_by_hand(void **state)
{
    (void)state;
    const float x[6] = {-4.0f, -1.0f, -0.25f, 0.5f, 2.0f, 5.0f};
    float y[6];
    forward_one((bs_layer){.kind = BS_LEAKY_RELU, .alpha = 0.1f}, 1, (int[]){6}, x, y);
    expect(y, (float[]){-0.4f, -0.1f, -0.025f, 0.5f, 2.0f, 5.0f}, 6);
    forward_one((bs_layer){.kind = BS_CLIP, .alpha = 0.0f, .beta = 1.0f}, 1, (int[]){6}, x, y);
    expect(y, (float[]){0.0f, 0.0f, 0.0f, 0.5f, 1.0f, 1.0f}, 6);
    forward_one((bs_layer){.kind = BS_HARDSIGMOID, .alpha = 0.2f, .beta = 0.5f}, 1,
                (int[]){6}, x, y);
    expect(y, (float[]){0.0f, 0.3f, 0.45f, 0.6f, 0.9f, 1.0f}, 6);
    forward_one((bs_layer){.kind = BS_HARDSWISH}, 1, (int[]){6}, x, y);
    /* x (x + 3) / 6 on (-3,3) */
    expect(y, (float[]){0.0f, -1.0f / 3, -0.25f * 2.75f / 6, 0.5f * 3.5f / 6, 2.0f * 5 / 6,
                        5.0f}, 6);
    forward_one((bs_layer){.kind = BS_SOFTMAX, .axis = 1}, 2, (int[]){2, 3},
                (float[]){0, 0, 0, 1, 2, 3}, y);
    double e = exp(1.0), s = e + e * e + e * e * e;
    expect(y, (float[]){1.0f / 3, 1.0f / 3, 1.0f / 3, (float)(e / s), (float)(e * e / s),
                        (float)(e * e * e / s)}, 6);
    /* softmax over the first axis: columns sum to 1 */
    forward_one((bs_layer){.kind = BS_SOFTMAX, .axis = 0}, 2, (int[]){2, 3},
                (float[]){0, 0, 0, 1, 1, 1}, y);
    expect(y, (float[]){(float)(1 / (1 + e)), (float)(1 / (1 + e)), (float)(1 / (1 + e)),
                        (float)(e / (1 + e)), (float)(e / (1 + e)), (float)(e / (1 + e))}, 6);
}

static void test_pools_by_hand(void **state)
{
    (void)state;
    /* one 3x3 plane, 2x2 windows at stride 1 padded by 1 on every side */
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    bs_layer avg = {.kind = BS_AVGPOOL2D, .kernel_h = 2, .kernel_w = 2, .stride_h = 1,
                    .stride_w = 1, .pads = {1, 1, 1, 1}, .count_include_pad = 1};
    float y[16];
    forward_one(avg, 3, (int[]){1, 3, 3}, x, y);
    /* the corner window holds only x[0]: 1/4 with the pads counted, 1 without */
    expect(y, (float[]){0.25f, 0.75f, 1.25f, 0.75f, 1.25f, 3.0f, 4.0f, 2.25f, 2.75f, 6.0f, 7.0f,
                        3.75f, 1.75f, 3.75f, 4.25f, 2.25f}, 16);
    avg.count_include_pad = 0;
    forward_one(avg, 3, (int[]){1, 3, 3}, x, y);
    expect(y, (float[]){1.0f, 1.5f, 2.5f, 3.0f, 2.5f, 3.0f, 4.0f, 4.5f, 5.5f, 6.0f, 7.0f, 7.5f,
                        7.0f, 7.5f, 8.5f, 9.0f}, 16);
    /* maxpool with pads: the padding never wins, even over negatives */
    const float neg[4] = {-1, -2, -3, -4};
    bs_layer maxp = {.kind = BS_MAXPOOL2D, .kernel_h = 2, .kernel_w = 2, .stride_h = 1,
                     .stride_w = 1, .pads = {1, 1, 1, 1}};
    forward_one(maxp, 3, (int[]){1, 2, 2}, neg, y);
    expect(y, (float[]){-1, -1, -2, -1, -1, -2, -3, -3, -4}, 9);
    /* a 1x3 window at strides (1,2) with dilation 2 across */
    bs_layer wide = {.kind = BS_MAXPOOL2D, .kernel_h = 1, .kernel_w = 2, .stride_h = 1,
                     .stride_w = 2, .dilation_w = 2};
    forward_one(wide, 3, (int[]){1, 2, 5}, (float[]){1, 9, 3, 0, 2, 5, 1, 0, 8, 4}, y);
    expect(y, (float[]){3, 3, 5, 4}, 4);
    forward_one((bs_layer){.kind = BS_GLOBAL_AVGPOOL}, 3, (int[]){2, 1, 3},
                (float[]){1, 2, 6, -1, -2, -6}, y);
    expect(y, (float[]){3, -3}, 2);
}

static void test_pad_concat_reshape_by_hand(void **state)
{
    (void)state;
    const float x[6] = {1, 2, 3, 4, 5, 6}; /* (1,2,3) */
    float y[32];
    bs_layer pad = {.kind = BS_PAD, .pads = {1, 2, 0, 1}, .mode = BS_PAD_CONSTANT,
                    .alpha = -1.0f};
    forward_one(pad, 3, (int[]){1, 2, 3}, x, y);
    expect(y, (float[]){-1, -1, -1, -1, -1, -1, -1, -1, 1, 2, 3, -1, -1, -1, 4, 5, 6, -1}, 18);
    pad.mode = BS_PAD_REFLECT;
    forward_one(pad, 3, (int[]){1, 2, 3}, x, y);
    expect(y, (float[]){6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5}, 18);
    pad.mode = BS_PAD_EDGE;
    forward_one(pad, 3, (int[]){1, 2, 3}, x, y);
    expect(y, (float[]){1, 1, 1, 2, 3, 3, 1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6}, 18);

    /* concat of the input with itself along axis 1 of (2,3): rows side by side */
    graph g;
    input_of(&g, 2, (int[]){2, 3});
    node(&g, (bs_layer){.kind = BS_CONCAT, .axis = -1}, "cat", 2, 0, 0);
    bs_model *m = build(&g, 1);
    assert_int_equal(m->tensors[m->output].dims[1], 6);
    run(m, x, 1, y);
    expect(y, (float[]){1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}, 12);
    bs_model_free(m);
    input_of(&g, 2, (int[]){2, 3});
    node(&g, (bs_layer){.kind = BS_CONCAT, .axis = 0}, "cat", 2, 0, 0);
    m = build(&g, 1);
    run(m, x, 1, y);
    expect(y, (float[]){1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}, 12);
    bs_model_free(m);

    /* reshape with a dimension left to infer shares the input's floats */
    input_of(&g, 3, (int[]){1, 2, 3});
    node(&g, (bs_layer){.kind = BS_RESHAPE, .shape_rank = 2, .shape = {3, -1}}, "r", 1, 0);
    m = build(&g, 1);
    assert_int_equal(m->tensors[m->output].rank, 2);
    assert_int_equal(m->tensors[m->output].dims[0], 3);
    assert_int_equal(m->tensors[m->output].dims[1], 2);
    run(m, x, 1, y);
    expect(y, x, 6);
    bs_model_free(m);
}

/* The general conv2d against a direct double sum over its definition. */
static void conv_reference(double *out, const float *x, const float *w, const float *b,
                           const bs_conv_dims *d)
{
    int G = d->groups, Cg = d->C / G, OCg = d->OC / G;
    for (int o = 0; o < d->OC; o++)
        for (int oy = 0; oy < d->OH; oy++)
            for (int ox = 0; ox < d->OW; ox++) {
                double s = b[o];
                for (int c = 0; c < Cg; c++)
                    for (int ky = 0; ky < d->kh; ky++)
                        for (int kx = 0; kx < d->kw; kx++) {
                            int y = oy * d->sh - d->pt + ky * d->dh;
                            int xx = ox * d->sw - d->pl + kx * d->dw;
                            if (y < 0 || y >= d->H || xx < 0 || xx >= d->W)
                                continue;
                            int ic = o / OCg * Cg + c;
                            s += (double)w[((o * Cg + c) * d->kh + ky) * d->kw + kx] *
                                 x[(ic * d->H + y) * d->W + xx];
                        }
                out[(o * d->OH + oy) * d->OW + ox] = s;
            }
}

static void test_conv2d_general_forward(void **state)
{
    (void)state;
    /* depthwise, dilated, strided, unevenly padded, grouped */
    const int geoms[][12] = {
        /* C, H, W, OC, kh, kw, sh, sw, dh, dw, groups, pads-pattern */
        {3, 7, 6, 3, 3, 3, 1, 1, 1, 1, 3, 0},
        {4, 9, 8, 6, 3, 2, 2, 1, 2, 1, 2, 1},
        {2, 6, 7, 4, 1, 3, 1, 2, 1, 2, 1, 2},
        {3, 8, 8, 5, 5, 5, 2, 2, 1, 1, 1, 1},
    };
    const int pads[3][4] = {{1, 1, 1, 1}, {0, 2, 1, 0}, {2, 0, 0, 1}};
    for (size_t t = 0; t < sizeof geoms / sizeof geoms[0]; t++) {
        const int *q = geoms[t];
        const int *p = pads[q[11]];
        bs_conv_dims d = {.C = q[0], .H = q[1], .W = q[2], .OC = q[3], .kh = q[4], .kw = q[5],
                          .sh = q[6], .sw = q[7], .dh = q[8], .dw = q[9], .groups = q[10],
                          .pt = p[0], .pl = p[1], .pb = p[2], .pr = p[3]};
        d.K = d.kh;
        d.OH = bs_window_out_size(d.H, d.kh, d.sh, d.pt, d.pb, d.dh);
        d.OW = bs_window_out_size(d.W, d.kw, d.sw, d.pl, d.pr, d.dw);
        assert_true(d.OH > 0 && d.OW > 0);
        size_t nx = (size_t)d.C * d.H * d.W, nw = (size_t)d.OC * d.C / d.groups * d.kh * d.kw;
        size_t ny = (size_t)d.OC * d.OH * d.OW;
        float *x = calloc(nx, 4), *w = calloc(nw, 4), *b = calloc(d.OC, 4), *y = calloc(ny, 4);
        float *col = calloc(bs_conv2d_scratch(&d), 4);
        double *ref = calloc(ny, sizeof *ref);
        fill(x, nx, 1 + t, -1, 1);
        fill(w, nw, 2 + t, -1, 1);
        fill(b, d.OC, 3 + t, -1, 1);
        bs_conv2d_forward(y, x, w, b, col, 1, &d, NULL);
        conv_reference(ref, x, w, b, &d);
        for (size_t i = 0; i < ny; i++)
            if (fabs(y[i] - ref[i]) > 1e-4 * fmax(1.0, fabs(ref[i])))
                fail_msg("geometry %zu, output %zu: %.7g, expected %.7g", t, i, (double)y[i],
                         ref[i]);
        free(x), free(w), free(b), free(y), free(col), free(ref);
    }
}

static void test_binary_by_hand(void **state)
{
    (void)state;
    /* (2,3) + a constant (3): a row added to both rows */
    const float x[6] = {1, 2, 3, 4, 5, 6};
    const float row[3] = {10, 20, 30}, col[2] = {2, 4};
    float y[6];
    graph g;
    input_of(&g, 2, (int[]){2, 3});
    int c = add_tensor(&g, 1, (int[]){3}, row);
    node(&g, (bs_layer){.kind = BS_ADD}, "add", 2, 0, c);
    bs_model *m = build(&g, 1);
    run(m, x, 1, y);
    expect(y, (float[]){11, 22, 33, 14, 25, 36}, 6);
    bs_model_free(m);
    /* a constant (2,1) minus the input: broadcast across columns */
    input_of(&g, 2, (int[]){2, 3});
    c = add_tensor(&g, 2, (int[]){2, 1}, col);
    node(&g, (bs_layer){.kind = BS_SUB}, "sub", 2, c, 0);
    m = build(&g, 1);
    run(m, x, 1, y);
    expect(y, (float[]){1, 0, -1, 0, -1, -2}, 6);
    bs_model_free(m);
    /* mul and div by constants; two samples share the constant */
    input_of(&g, 2, (int[]){2, 3});
    c = add_tensor(&g, 2, (int[]){2, 1}, col);
    int t = node(&g, (bs_layer){.kind = BS_MUL}, "mul", 2, 0, c);
    int s = add_tensor(&g, 1, (int[]){1}, (float[]){4});
    node(&g, (bs_layer){.kind = BS_DIV}, "div", 2, t, s);
    m = build(&g, 1);
    float xx[12], yy[12];
    memcpy(xx, x, sizeof x);
    memcpy(xx + 6, x, sizeof x);
    run(m, xx, 2, yy);
    expect(yy, (float[]){0.5f, 1, 1.5f, 4, 5, 6, 0.5f, 1, 1.5f, 4, 5, 6}, 12);
    bs_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* gradients of every op */

static void test_gradients_elementwise(void **state)
{
    (void)state;
    const int d[3] = {2, 3, 4};
    check_op((bs_layer){.kind = BS_LEAKY_RELU, .alpha = 0.2f}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_CLIP, .alpha = -0.5f, .beta = 0.7f}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_HARDSIGMOID, .alpha = 0.2f, .beta = 0.5f}, 3, d, -4, 4);
    check_op((bs_layer){.kind = BS_HARDSWISH}, 3, d, -5, 5);
    check_op((bs_layer){.kind = BS_RELU}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_SIGMOID}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_TANH}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_SOFTMAX, .axis = 1}, 3, d, -2, 2);
    check_op((bs_layer){.kind = BS_SOFTMAX, .axis = -1}, 3, d, -2, 2);
}

static void test_gradients_windows(void **state)
{
    (void)state;
    const int d[3] = {2, 5, 6};
    check_op((bs_layer){.kind = BS_AVGPOOL2D, .kernel_h = 3, .kernel_w = 2, .stride_h = 2,
                        .stride_w = 1, .pads = {1, 0, 1, 1}, .count_include_pad = 1},
             3, d, -1, 1);
    check_op((bs_layer){.kind = BS_AVGPOOL2D, .kernel_h = 3, .kernel_w = 2, .stride_h = 2,
                        .stride_w = 1, .pads = {1, 0, 1, 1}},
             3, d, -1, 1);
    check_op((bs_layer){.kind = BS_MAXPOOL2D, .kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                        .stride_w = 2, .pads = {1, 1, 1, 1}},
             3, d, -1, 1);
    check_op((bs_layer){.kind = BS_GLOBAL_AVGPOOL}, 3, d, -1, 1);
    check_op((bs_layer){.kind = BS_PAD, .pads = {1, 2, 2, 1}, .mode = BS_PAD_REFLECT}, 3, d,
             -1, 1);
    check_op((bs_layer){.kind = BS_PAD, .pads = {2, 0, 1, 3}, .mode = BS_PAD_EDGE}, 3, d, -1,
             1);
    check_op((bs_layer){.kind = BS_PAD, .pads = {1, 1, 0, 0}, .alpha = 0.5f}, 3, d, -1, 1);
    /* conv2d in general form: weight and bias gradients too */
    check_op((bs_layer){.kind = BS_CONV2D, .out_channels = 4, .kernel_h = 3, .kernel_w = 2,
                        .stride_h = 2, .stride_w = 1, .dilation_h = 1, .dilation_w = 2,
                        .pads = {1, 2, 0, 1}, .groups = 2},
             3, d, -1, 1);
    check_op((bs_layer){.kind = BS_CONV2D, .out_channels = 2, .kernel_h = 3, .kernel_w = 3,
                        .stride_h = 1, .stride_w = 1, .pads = {1, 1, 1, 1}, .groups = 2},
             3, d, -1, 1);
}

static void test_gradients_linear_last_dim(void **state)
{
    (void)state;
    /* (2,3,4) -> (2,3,5): rows are the batch times 2 x 3 */
    check_op((bs_layer){.kind = BS_LINEAR, .out_features = 5}, 3, (int[]){2, 3, 4}, -1, 1);
    graph g;
    input_of(&g, 2, (int[]){3, 4});
    node(&g, (bs_layer){.kind = BS_LINEAR, .out_features = 2}, "fc", 1, 0);
    bs_model *m = build(&g, 1);
    assert_int_equal(m->layers[0].weight_size, 8);
    assert_int_equal(bs_model_macs(m), 3 * 8);
    bs_model_free(m);
}

/* a op b for every binary op over shapes that broadcast both ways */
static void test_gradients_broadcast(void **state)
{
    (void)state;
    const bs_layer_kind kinds[] = {BS_ADD, BS_SUB, BS_MUL};
    const int shapes[][2][4] = {
        /* rank a, dims a..., then b (rank first) */
        {{3, 2, 3, 4}, {2, 3, 1}},
        {{2, 1, 4}, {3, 2, 3, 4}},
        {{3, 2, 1, 4}, {2, 3, 1}},
        {{1, 4}, {1, 4}},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            /* the input feeds b through a linear layer so that both sides
             * depend on it and b has its own shape */
            const int *a = shapes[s][0], *b = shapes[s][1];
            graph g;
            input_of(&g, a[0], a + 1);
            int bdims[4] = {0};
            memcpy(bdims, b + 1, (size_t)b[0] * sizeof *bdims);
            int flat = node(&g, (bs_layer){.kind = BS_RESHAPE}, "flat", 1, 0);
            int n = 1;
            for (int j = 0; j < b[0]; j++)
                n *= b[1 + j];
            int lin = node(&g, (bs_layer){.kind = BS_LINEAR, .out_features = n}, "lin", 1, flat);
            int rb = node(&g, (bs_layer){.kind = BS_RESHAPE, .shape_rank = b[0],
                                         .shape = {bdims[0], bdims[1], bdims[2], bdims[3]}},
                          "rb", 1, lin);
            node(&g, (bs_layer){.kind = kinds[k]}, "op", 2, 0, rb);
            bs_model *m = build(&g, 7 + s);
            float *x = calloc(2 * m->input_size, sizeof *x);
            fill(x, 2 * m->input_size, 9 + s, -1, 1);
            assert_true(check_gradients(m, x, 2, 4 + k) > 0);
            free(x);
            bs_model_free(m);
        }
    /* div by a broadcast constant, and a constant on the left of sub */
    graph g;
    input_of(&g, 3, (int[]){2, 2, 3});
    int c = add_tensor(&g, 3, (int[]){2, 1, 1}, (float[]){0.5f, -2.0f});
    int t = node(&g, (bs_layer){.kind = BS_DIV}, "div", 2, 0, c);
    node(&g, (bs_layer){.kind = BS_SUB}, "sub", 2, c, t);
    bs_model *m = build(&g, 1);
    float x[24];
    fill(x, 24, 2, -1, 1);
    assert_true(check_gradients(m, x, 2, 1) > 0);
    bs_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* whole graphs */

/* conv -> relu -> add with the input -> flatten -> linear: the input read
 * twice, its gradient the sum of both paths. */
static bs_model *residual(void)
{
    graph g;
    input_of(&g, 3, (int[]){2, 5, 5});
    int c = node(&g, (bs_layer){.kind = BS_CONV2D, .out_channels = 2, .kernel_h = 3,
                                .kernel_w = 3, .pads = {1, 1, 1, 1}}, "conv_1", 1, 0);
    int r = node(&g, (bs_layer){.kind = BS_RELU}, "relu_1", 1, c);
    int s = node(&g, (bs_layer){.kind = BS_ADD}, "add_1", 2, r, 0);
    int f = node(&g, (bs_layer){.kind = BS_FLATTEN}, "flatten", 1, s);
    node(&g, (bs_layer){.kind = BS_LINEAR, .out_features = 3}, "fc", 1, f);
    return build(&g, 21);
}

static void test_residual_graph(void **state)
{
    (void)state;
    bs_model *m = residual();
    assert_int_equal(m->classes, 3);
    float x[100];
    fill(x, 100, 8, -1, 1);
    assert_true(check_gradients(m, x, 2, 5) > 100);
    /* the workspace planned one buffer for the input's second gradient */
    bs_workspace *ws = bs_workspace_new(m, 2);
    assert_int_equal(ws->n_acc, 1);
    bs_workspace_free(ws);
    bs_model_free(m);
}

/* Gradient buffers are shared by tensors whose lifetimes in backward do
 * not meet: a chain needs two, as its ping-pong pair; the residual graph's
 * input gradient of the add must not share with the relu's. */
static void test_gradient_buffers_shared(void **state)
{
    (void)state;
    bs_layer layers[BS_MAX_LAYERS];
    int n;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_arch_parse("fc:20,30,10", 10, layers, &n, err), 0);
    bs_model *m = bs_model_build(layers, n, (int[]){1, 28, 28}, err);
    bs_workspace *ws = bs_workspace_new(m, 4);
    const float *seen[2] = {NULL, NULL};
    for (int t = 0; t < m->n_tensors; t++) {
        const float *g = ws->grads[t];
        if (!g || g == seen[0] || g == seen[1])
            continue;
        assert_null(seen[1]);
        seen[seen[0] ? 1 : 0] = g;
    }
    assert_non_null(seen[1]);
    bs_workspace_free(ws);
    bs_model_free(m);
    m = residual();
    ws = bs_workspace_new(m, 1);
    /* conv_1's output (t1) is live while relu_1's (t2) is */
    assert_ptr_not_equal(ws->grads[1], ws->grads[2]);
    bs_workspace_free(ws);
    bs_model_free(m);
}

/* A node whose output nothing reads: its gradient is zero, and the input's
 * gradient is only what the other path sends. */
static void test_dead_branch(void **state)
{
    (void)state;
    graph g;
    input_of(&g, 1, (int[]){4});
    node(&g, (bs_layer){.kind = BS_TANH}, "unused", 1, 0);
    int c = add_tensor(&g, 1, (int[]){4}, (float[]){1, -2, 3, 0.5f});
    node(&g, (bs_layer){.kind = BS_MUL}, "scale", 2, 0, c);
    bs_model *m = build(&g, 1);
    float x[8] = {0.1f, -0.2f, 0.3f, 0.4f, 1, 2, 3, 4};
    assert_true(check_gradients(m, x, 2, 2) == 8);
    bs_model_free(m);
}

/* depthwise conv (groups = C) -> relu6 (clip) -> pointwise 1x1 -> global
 * average pool -> reshape to (classes) */
static void test_depthwise_pointwise_graph(void **state)
{
    (void)state;
    graph g;
    input_of(&g, 3, (int[]){3, 6, 6});
    int dw = node(&g, (bs_layer){.kind = BS_CONV2D, .out_channels = 3, .kernel_h = 3,
                                 .kernel_w = 3, .stride_h = 2, .stride_w = 2,
                                 .pads = {1, 1, 1, 1}, .groups = 3}, "dw", 1, 0);
    int r6 = node(&g, (bs_layer){.kind = BS_CLIP, .alpha = 0.0f, .beta = 6.0f}, "relu6", 1, dw);
    int pw = node(&g, (bs_layer){.kind = BS_CONV2D, .out_channels = 4, .kernel_h = 1,
                                 .kernel_w = 1}, "pw", 1, r6);
    int gp = node(&g, (bs_layer){.kind = BS_GLOBAL_AVGPOOL}, "pool", 1, pw);
    node(&g, (bs_layer){.kind = BS_RESHAPE, .shape_rank = 1, .shape = {-1}}, "logits", 1, gp);
    bs_model *m = build(&g, 4);
    assert_int_equal(m->layers[0].weight_size, 3 * 1 * 9);
    assert_int_equal(m->classes, 4);
    float x[2 * 108];
    fill(x, 2 * 108, 3, -1, 1);
    assert_true(check_gradients(m, x, 2, 6) > 100);
    /* a batch gives each sample's logits as alone */
    float both[8], one[4];
    run(m, x, 2, both);
    run(m, x + 108, 1, one);
    assert_memory_equal(both + 4, one, sizeof one);
    bs_model_free(m);
}

/* Every zoo architecture built as a graph runs the same bits as the chain
 * of bs_model_build. */
static void test_chain_as_graph_same_bits(void **state)
{
    (void)state;
    const char *specs[] = {"fc:20,10", "ae:16", "cnn:4,8:16", "fc"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        bs_layer layers[BS_MAX_LAYERS];
        int n;
        char err[BS_ERR_LEN];
        assert_int_equal(bs_arch_parse(specs[s], 10, layers, &n, err), 0);
        bs_model *chain = bs_model_build(layers, n, (int[]){1, 28, 28}, err);
        assert_non_null(chain);
        bs_model_init(chain, 3);
        graph g;
        input_of(&g, 3, (int[]){1, 28, 28});
        int t = 0;
        for (int i = 0; i < n; i++)
            t = node(&g, layers[i], "", 1, t);
        bs_model *gm = bs_graph_build(g.nodes, g.n_nodes, g.tensors, g.n_tensors, err);
        assert_non_null(gm);
        assert_int_equal(gm->n_params, chain->n_params);
        memcpy(gm->params, chain->params, chain->n_params * sizeof(float));
        float x[3 * 784], a[30], b[30];
        fill(x, 3 * 784, 1, 0, 1);
        run(chain, x, 3, a);
        run(gm, x, 3, b);
        assert_memory_equal(a, b, sizeof a);
        /* the legacy fields as a chain has them */
        for (int i = 0; i < n; i++) {
            assert_memory_equal(gm->layers[i].out_shape, chain->layers[i].out_shape,
                                sizeof chain->layers[i].out_shape);
            assert_int_equal(gm->layers[i].weight_off, chain->layers[i].weight_off);
        }
        bs_model_free(chain);
        bs_model_free(gm);
    }
}

/* FNV-1a over n bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The zoo's architectures give the logits and input gradients, bit for
 * bit, that they gave before the graph executor: the hashes were taken
 * with the chain executor it replaced (seeded weights and inputs; the
 * AVX2 kernels, so a machine without them skips). */
static void test_zoo_bits_as_before(void **state)
{
    (void)state;
    if (!bs_cpu_avx2())
        skip();
    static const struct {
        const char *spec;
        uint64_t hash;
    } zoo[] = {
        {"fc", 0xf6cb54f43dfb919aull},
        {"fc:100,100", 0x515d6456e3e9cf5aull},
        {"fc:50:relu", 0x2ab4a47a1d4f4434ull},
        {"ae:40", 0x207939d0ce2fc9f8ull},
        {"cnn:small", 0xa71de23e7939c334ull},
        {"cnn:4,8:16", 0xa29c00889d8fd530ull},
    };
    for (size_t s = 0; s < sizeof zoo / sizeof zoo[0]; s++) {
        bs_layer layers[BS_MAX_LAYERS];
        int n, B = 3;
        char err[BS_ERR_LEN];
        assert_int_equal(bs_arch_parse(zoo[s].spec, 10, layers, &n, err), 0);
        bs_model *m = bs_model_build(layers, n, (int[]){1, 28, 28}, err);
        assert_non_null(m);
        bs_model_init(m, 42);
        float x[3 * 784], g[30], dx[3 * 784];
        bs_rng r;
        bs_rng_seed(&r, 9);
        for (int i = 0; i < B * 784; i++)
            x[i] = bs_rng_uniform(&r);
        for (int i = 0; i < B * 10; i++)
            g[i] = bs_rng_uniform(&r) - 0.5f;
        bs_workspace *ws = bs_workspace_new(m, B);
        float *dp = calloc(m->n_params, sizeof *dp);
        uint64_t h = fnv(1469598103934665603ull, bs_model_forward(m, ws, x, B), sizeof g);
        bs_model_backward(m, ws, g, dp, dx, B);
        h = fnv(h, dx, sizeof dx);
        if (h != zoo[s].hash)
            fail_msg("%s: hash 0x%016llx, before 0x%016llx", zoo[s].spec, (unsigned long long)h,
                     (unsigned long long)zoo[s].hash);
        free(dp);
        bs_workspace_free(ws);
        bs_model_free(m);
    }
}

static void test_refusals_name_the_node(void **state)
{
    (void)state;
    graph g;
    /* shapes that do not broadcast */
    input_of(&g, 2, (int[]){2, 3});
    int c = add_tensor(&g, 1, (int[]){2}, (float[]){1, 2});
    node(&g, (bs_layer){.kind = BS_ADD}, "add_7", 2, 0, c);
    assert_non_null(strstr(refusal(&g), "node 'add_7' (add) cannot broadcast (2,3) and (2)"));
    /* div by a tensor that depends on the input */
    input_of(&g, 1, (int[]){4});
    int r = node(&g, (bs_layer){.kind = BS_RELU}, "relu", 1, 0);
    node(&g, (bs_layer){.kind = BS_DIV}, "div_1", 2, 0, r);
    assert_non_null(strstr(refusal(&g), "node 'div_1' (div) divides by a tensor that is not "
                                        "a constant"));
    /* a node reading a tensor a later node writes */
    input_of(&g, 1, (int[]){4});
    node(&g, (bs_layer){.kind = BS_RELU}, "early", 1, 2);
    node(&g, (bs_layer){.kind = BS_RELU}, "late", 1, 0);
    assert_non_null(strstr(refusal(&g), "node 'early' (relu) reads tensor 't2', which no "
                                        "earlier node writes"));
    /* a window that does not fit, a concat of unequal dims, groups */
    input_of(&g, 3, (int[]){1, 4, 4});
    node(&g, (bs_layer){.kind = BS_CONV2D, .out_channels = 2, .kernel_h = 5, .kernel_w = 5},
         "conv_3", 1, 0);
    assert_non_null(strstr(refusal(&g), "node 'conv_3' (conv2d) with kernel 5x5 does not fit"));
    input_of(&g, 3, (int[]){3, 4, 4});
    node(&g, (bs_layer){.kind = BS_CONV2D, .out_channels = 4, .kernel_h = 1, .kernel_w = 1,
                        .groups = 3}, "g", 1, 0);
    assert_non_null(strstr(refusal(&g), "node 'g' (conv2d) has 3 groups"));
    input_of(&g, 2, (int[]){2, 3});
    int f = node(&g, (bs_layer){.kind = BS_RESHAPE, .shape_rank = 2, .shape = {3, 2}}, "t", 1,
                 0);
    node(&g, (bs_layer){.kind = BS_CONCAT, .axis = 0}, "cat", 2, 0, f);
    assert_non_null(strstr(refusal(&g), "node 'cat' (concat) joins tensors whose dim 1"));
    /* a constant where no constant goes, a reshape that loses floats */
    input_of(&g, 1, (int[]){4});
    c = add_tensor(&g, 1, (int[]){4}, (float[]){1, 2, 3, 4});
    node(&g, (bs_layer){.kind = BS_RELU}, "relu_c", 1, c);
    assert_non_null(strstr(refusal(&g), "node 'relu_c' (relu) reads constant 't1'"));
    input_of(&g, 1, (int[]){6});
    node(&g, (bs_layer){.kind = BS_RESHAPE, .shape_rank = 2, .shape = {4, 2}}, "rs", 1, 0);
    assert_non_null(strstr(refusal(&g), "node 'rs' (reshape) shapes 6 floats as 8"));
    /* chains keep their messages */
    char err[BS_ERR_LEN];
    bs_layer bad[2] = {{.kind = BS_LINEAR, .out_features = 10}};
    assert_null(bs_model_build(bad, 1, (int[]){1, 28, 28}, err));
    assert_non_null(strstr(err, "layer 0 (linear) needs a flat input but gets (1,28,28)"));
}

static void test_find_node(void **state)
{
    (void)state;
    bs_model *m = residual();
    assert_int_equal(bs_model_find_node(m, "relu_1"), 1);
    assert_int_equal(bs_model_find_node(m, "t3"), 2); /* add_1's output tensor */
    assert_int_equal(bs_model_find_node(m, "fc"), 4);
    assert_int_equal(bs_model_find_node(m, "nope"), -1);
    assert_int_equal(bs_model_find_node(m, ""), -1);
    /* unit analysis of conv_1 looks past the relu that reads it */
    char err[BS_ERR_LEN];
    assert_int_equal(bs_units_layer(m, 0, err), 1);
    bs_model_free(m);
    /* but not past a relu that reads something else */
    graph g;
    input_of(&g, 1, (int[]){4});
    int a = node(&g, (bs_layer){.kind = BS_LINEAR, .out_features = 4}, "a", 1, 0);
    int b = node(&g, (bs_layer){.kind = BS_RELU}, "b", 1, 0);
    node(&g, (bs_layer){.kind = BS_ADD}, "sum", 2, a, b);
    m = build(&g, 1);
    assert_int_equal(bs_units_layer(m, 0, err), 0);
    bs_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* Lipschitz bounds of graphs */

static bs_lipschitz *bounds(const bs_model *m)
{
    static bs_lipschitz lip;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_lipschitz_bounds(m, 1, &lip, err), 0);
    return &lip;
}

static void test_lipschitz_graph_rules(void **state)
{
    (void)state;
    /* residual: the add sums its inputs' bounds */
    bs_model *m = residual();
    bs_lipschitz *l = bounds(m);
    double conv = l->layers[0].bound;
    assert_true(conv > 0.0);
    assert_true(fabs(l->layers[2].output - (conv + 1.0)) <= 1e-12 * (conv + 1.0));
    assert_true(fabs(l->product - (conv + 1.0) * l->layers[4].bound) <= 1e-9 * l->product);
    assert_null(l->note);
    bs_model_free(m);

    /* mul by a constant multiplies by max |c|; concat the root of squares */
    graph g;
    input_of(&g, 1, (int[]){3});
    int c = add_tensor(&g, 1, (int[]){3}, (float[]){0.5f, -3.0f, 2.0f});
    int a = node(&g, (bs_layer){.kind = BS_MUL}, "mul", 2, c, 0);
    node(&g, (bs_layer){.kind = BS_CONCAT}, "cat", 2, a, 0);
    m = build(&g, 1);
    l = bounds(m);
    assert_true(l->layers[0].bound == 3.0);
    assert_true(fabs(l->product - sqrt(9.0 + 1.0)) < 1e-12);
    bs_model_free(m);

    /* mul of two tensors that depend on the input: no finite bound */
    input_of(&g, 1, (int[]){3});
    a = node(&g, (bs_layer){.kind = BS_TANH}, "tanh", 1, 0);
    node(&g, (bs_layer){.kind = BS_MUL}, "square", 2, a, 0);
    m = build(&g, 1);
    l = bounds(m);
    assert_true(l->layers[1].bound == HUGE_VAL);
    assert_true(l->product == HUGE_VAL);
    assert_non_null(l->layers[1].note);
    assert_non_null(l->note);
    bs_model_free(m);
}

/* The operator norm of avgpool2d and global pooling, and of a general
 * conv2d, against the largest singular value of the explicit matrix. */
static double matrix_norm(const bs_model *m)
{
    /* columns: the logits of each basis input */
    size_t n = m->input_size, k = (size_t)m->classes;
    float *e = calloc(n * n, sizeof *e), *A = calloc(k * n, sizeof *A), *z = calloc(k, 4);
    bs_workspace *ws = bs_workspace_new(m, 1);
    float *zero = calloc(n, sizeof *zero);
    const float *z0 = bs_model_forward(m, ws, zero, 1);
    memcpy(z, z0, k * sizeof *z);
    for (size_t j = 0; j < n; j++) {
        e[j * n + j] = 1.0f;
        const float *y = bs_model_forward(m, ws, e + j * n, 1);
        for (size_t i = 0; i < k; i++)
            A[i * n + j] = y[i] - z[i]; /* the linear part, bias removed */
    }
    double s = bs_lipschitz_linear(A, (int)k, (int)n, 5, NULL);
    free(e), free(A), free(z), free(zero);
    bs_workspace_free(ws);
    return s;
}

static void test_lipschitz_windows(void **state)
{
    (void)state;
    struct {
        bs_layer l;
        int exact; /* the bound is the norm itself */
    } cases[] = {
        {{.kind = BS_AVGPOOL2D, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2}, 1},
        {{.kind = BS_AVGPOOL2D, .kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1,
          .pads = {1, 1, 1, 1}, .count_include_pad = 1}, 0},
        {{.kind = BS_AVGPOOL2D, .kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1,
          .pads = {1, 0, 1, 1}}, 0},
        {{.kind = BS_GLOBAL_AVGPOOL}, 1},
        {{.kind = BS_CONV2D, .out_channels = 3, .kernel_h = 3, .kernel_w = 2, .stride_h = 2,
          .stride_w = 1, .dilation_w = 2, .pads = {1, 0, 2, 1}}, 1},
        {{.kind = BS_CONV2D, .out_channels = 2, .kernel_h = 3, .kernel_w = 3,
          .pads = {1, 1, 1, 1}, .groups = 2}, 1},
        {{.kind = BS_PAD, .pads = {1, 2, 1, 0}, .mode = BS_PAD_EDGE}, 0},
        {{.kind = BS_PAD, .pads = {1, 2, 1, 0}, .mode = BS_PAD_REFLECT}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        graph g;
        input_of(&g, 3, (int[]){2, 6, 6});
        node(&g, cases[i].l, "op", 1, 0);
        bs_model *m = build(&g, 3 + i);
        double norm = matrix_norm(m), bound = bounds(m)->product;
        if (!(bound >= norm * (1 - 1e-4)))
            fail_msg("case %zu: bound %.9g below the norm %.9g", i, bound, norm);
        if (cases[i].exact && !(bound <= norm * (1 + 1e-4)))
            fail_msg("case %zu: bound %.9g, the norm is %.9g", i, bound, norm);
        bs_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations_by_hand),
        cmocka_unit_test(test_pools_by_hand),
        cmocka_unit_test(test_pad_concat_reshape_by_hand),
        cmocka_unit_test(test_conv2d_general_forward),
        cmocka_unit_test(test_binary_by_hand),
        cmocka_unit_test(test_gradients_elementwise),
        cmocka_unit_test(test_gradients_windows),
        cmocka_unit_test(test_gradients_linear_last_dim),
        cmocka_unit_test(test_gradients_broadcast),
        cmocka_unit_test(test_residual_graph),
        cmocka_unit_test(test_dead_branch),
        cmocka_unit_test(test_gradient_buffers_shared),
        cmocka_unit_test(test_depthwise_pointwise_graph),
        cmocka_unit_test(test_chain_as_graph_same_bits),
        cmocka_unit_test(test_zoo_bits_as_before),
        cmocka_unit_test(test_refusals_name_the_node),
        cmocka_unit_test(test_find_node),
        cmocka_unit_test(test_lipschitz_graph_rules),
        cmocka_unit_test(test_lipschitz_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
