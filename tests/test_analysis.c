/* test_analysis — the paper's measurements: Lipschitz bounds (power
 * iteration against matrices of known spectrum, the conv bound against the
 * explicit matrix of the circular convolution and against ||conv(x)||/||x||,
 * the network bound against ||f(x)-f(y)||/||x-y|| on the zoo), the unit
 * analysis (ranking against a brute-force sort, purity on hand-made cases,
 * the summary, the grid), and adversarial training (same seed, same
 * parameters; pool examples misclassified when made), and the command
 * lines `blindspot lipschitz`, `blindspot units` and `blindspot train
 * --adversarial` against the same numbers. Needs make data models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testutil.h"

#include "api/image.h"
#include "core/adversarial.h"
#include "core/analysis.h"
#include "core/dataset.h"
#include "core/layers.h"
#include "core/model_file.h"
#include "core/rng.h"
#include "core/train.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bs_model *fc100, *cnn;
static bs_dataset test, train;

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    fc100 = bs_model_load("models/fc100-100-10.safetensors", err);
    cnn = fc100 ? bs_model_load("models/cnn.safetensors", err) : NULL;
    if (!cnn || bs_dataset_load("data", "mnist", "test", &test, err) ||
        bs_dataset_load("data", "mnist", "train", &train, err)) {
        fprintf(stderr, "test_analysis needs make data models: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bs_model_free(fc100);
    bs_model_free(cnn);
    bs_dataset_free(&test);
    bs_dataset_free(&train);
    return 0;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Lipschitz bounds */

/* The n x n Householder reflection I - 2 u u^T / u^T u of a random u:
 * orthogonal, so it keeps singular values. */
static void householder(double *Q, int n, bs_rng *rng)
{
    double u[16], uu = 0.0;
    for (int i = 0; i < n; i++) {
        u[i] = bs_rng_normal(rng);
        uu += u[i] * u[i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            Q[i * n + j] = (i == j) - 2.0 * u[i] * u[j] / uu;
}

/* W (rows x cols, rows >= cols) = Q1 diag(s) Q2^T: singular values s. */
static void known_spectrum(float *W, int rows, int cols, const double *s, uint64_t seed)
{
    double Q1[256], Q2[256];
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    householder(Q1, rows, &rng);
    householder(Q2, cols, &rng);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double acc = 0.0;
            for (int k = 0; k < cols; k++)
                acc += Q1[i * rows + k] * s[k] * Q2[j * cols + k];
            W[i * cols + j] = (float)acc;
        }
}

static void test_power_iteration_known_spectrum(void **state)
{
    (void)state;
    float W[5 * 4];
    const double s[4] = {3.0, 2.0, 1.5, 0.5};
    known_spectrum(W, 5, 4, s, 11);
    int it;
    double sigma = bs_lipschitz_linear(W, 5, 4, 1, &it);
    assert_true(fabs(sigma - 3.0) < 1e-5 * 3.0);
    assert_true(it > 1 && it < BS_LIPSCHITZ_MAX_ITER);
    /* the transpose (a wide W) has the same singular values */
    float Wt[4 * 5];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            Wt[j * 5 + i] = W[i * 4 + j];
    assert_true(fabs(bs_lipschitz_linear(Wt, 4, 5, 2, NULL) - 3.0) < 1e-5 * 3.0);
    /* a diagonal W: the largest |entry| whatever its sign */
    const float D[3 * 3] = {0.5f, 0, 0, 0, -4.0f, 0, 0, 0, 2.0f};
    assert_true(fabs(bs_lipschitz_linear(D, 3, 3, 3, NULL) - 4.0) < 1e-5 * 4.0);
    /* the zero matrix stops at once at 0 */
    const float Z[6] = {0};
    assert_true(bs_lipschitz_linear(Z, 2, 3, 1, &it) == 0.0);
    assert_int_equal(it, 1);
}

static void test_conv_1x1_is_channel_matrix(void **state)
{
    (void)state;
    /* a 1x1 conv applies the (OC,C) channel matrix at every pixel: its DFT
     * is that matrix at every frequency */
    float W[4 * 3];
    const double s[3] = {2.5, 1.0, 0.25};
    known_spectrum(W, 4, 3, s, 5);
    bs_conv_dims d = {.C = 3, .H = 5, .W = 6, .OC = 4, .OH = 5, .OW = 6, .K = 1,
                      .stride = 1, .pad = 0};
    double b = bs_lipschitz_conv2d(W, &d, 1, NULL);
    assert_true(fabs(b - 2.5) < 1e-5 * 2.5);
    assert_true(fabs(b - bs_lipschitz_linear(W, 4, 3, 1, NULL)) < 1e-5 * 2.5);
}

/* ||y|| / ||x|| of the conv (bias 0) for a random x. */
static double conv_ratio(const float *w, const bs_conv_dims *d, bs_rng *rng)
{
    size_t nin = (size_t)d->C * d->H * d->W, nout = (size_t)d->OC * d->OH * d->OW;
    float *x = xcalloc(nin, sizeof *x), *y = xcalloc(nout, sizeof *y);
    float *bias = xcalloc((size_t)d->OC, sizeof *bias);
    float *col = xcalloc(bs_conv2d_scratch(d), sizeof *col);
    for (size_t i = 0; i < nin; i++)
        x[i] = bs_rng_normal(rng);
    bs_conv2d_forward(y, x, w, bias, col, 1, d, NULL);
    double xx = 0.0, yy = 0.0;
    for (size_t i = 0; i < nin; i++)
        xx += (double)x[i] * x[i];
    for (size_t i = 0; i < nout; i++)
        yy += (double)y[i] * y[i];
    free(x);
    free(y);
    free(bias);
    free(col);
    return sqrt(yy / xx);
}

static void test_conv_single_channel_is_max_dft(void **state)
{
    (void)state;
    bs_rng rng;
    bs_rng_seed(&rng, 21);
    float w[3 * 3];
    for (int i = 0; i < 9; i++)
        w[i] = bs_rng_normal(&rng);
    bs_conv_dims d = {.C = 1, .H = 6, .W = 7, .OC = 1, .OH = 4, .OW = 5, .K = 3,
                      .stride = 1, .pad = 0};
    /* max over the 6 x 7 grid of |sum_{a,b} w[a,b] e^{-2 pi i (ua/6 + vb/7)}| */
    double brute = 0.0;
    for (int u = 0; u < 6; u++)
        for (int v = 0; v < 7; v++) {
            double re = 0.0, im = 0.0;
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    double t = 2.0 * M_PI * (u * a / 6.0 + v * b / 7.0);
                    re += w[a * 3 + b] * cos(t);
                    im -= w[a * 3 + b] * sin(t);
                }
            brute = fmax(brute, sqrt(re * re + im * im));
        }
    double bound = bs_lipschitz_conv2d(w, &d, 1, NULL);
    assert_true(fabs(bound - brute) < 1e-9 * brute);
    for (int t = 0; t < 100; t++)
        assert_true(conv_ratio(w, &d, &rng) <= bound * (1.0 + 1e-6));
}

/* The explicit (OC N1 N2) x (C N1 N2) matrix of the circular
 * cross-correlation on the padded grid. */
static float *circular_matrix(const float *w, const bs_conv_dims *d, int *rows, int *cols)
{
    int N1 = d->H + 2 * d->pad, N2 = d->W + 2 * d->pad, K = d->K;
    *rows = d->OC * N1 * N2;
    *cols = d->C * N1 * N2;
    float *M = xcalloc((size_t)*rows * *cols, sizeof *M);
    for (int o = 0; o < d->OC; o++)
        for (int i = 0; i < N1; i++)
            for (int j = 0; j < N2; j++)
                for (int c = 0; c < d->C; c++)
                    for (int a = 0; a < K; a++)
                        for (int b = 0; b < K; b++) {
                            int r = (o * N1 + i) * N2 + j;
                            int col = (c * N1 + (i + a) % N1) * N2 + (j + b) % N2;
                            M[(size_t)r * *cols + col] += w[((o * d->C + c) * K + a) * K + b];
                        }
    return M;
}

/* The explicit matrix of the model's conv (padding, stride), column by
 * column from basis inputs. */
static float *conv_matrix(const float *w, const bs_conv_dims *d, int *rows, int *cols)
{
    *cols = d->C * d->H * d->W;
    *rows = d->OC * d->OH * d->OW;
    float *M = xcalloc((size_t)*rows * *cols, sizeof *M);
    float *x = xcalloc((size_t)*cols, sizeof *x), *y = xcalloc((size_t)*rows, sizeof *y);
    float *bias = xcalloc((size_t)d->OC, sizeof *bias);
    float *col = xcalloc(bs_conv2d_scratch(d), sizeof *col);
    for (int k = 0; k < *cols; k++) {
        memset(x, 0, (size_t)*cols * sizeof *x);
        x[k] = 1.0f;
        bs_conv2d_forward(y, x, w, bias, col, 1, d, NULL);
        for (int r = 0; r < *rows; r++)
            M[(size_t)r * *cols + k] = y[r];
    }
    free(x);
    free(y);
    free(bias);
    free(col);
    return M;
}

static void test_conv_bound_matches_brute_force(void **state)
{
    (void)state;
    bs_rng rng;
    bs_rng_seed(&rng, 33);
    /* 2 -> 3 channels, 3x3 kernel, 5x5 input, padding 1; stride 1 and 2 */
    float w[3 * 2 * 3 * 3];
    for (int i = 0; i < 54; i++)
        w[i] = bs_rng_normal(&rng);
    for (int stride = 1; stride <= 2; stride++) {
        bs_conv_dims d = {.C = 2, .H = 5, .W = 5, .OC = 3, .K = 3, .stride = stride, .pad = 1};
        d.OH = d.OW = bs_conv_out_size(5, 3, stride, 1);
        double bound = bs_lipschitz_conv2d(w, &d, 1, NULL);
        int rows, cols;
        /* the DFT bound IS the norm of the circular operator on the padded grid */
        float *C = circular_matrix(w, &d, &rows, &cols);
        double circ = bs_lipschitz_linear(C, rows, cols, 1, NULL);
        assert_true(fabs(bound - circ) < 1e-4 * bound);
        free(C);
        /* and bounds the model's conv, its matrix and random inputs alike */
        float *M = conv_matrix(w, &d, &rows, &cols);
        assert_true(bs_lipschitz_linear(M, rows, cols, 1, NULL) <= bound * (1.0 + 1e-5));
        free(M);
        for (int t = 0; t < 100; t++)
            assert_true(conv_ratio(w, &d, &rng) <= bound * (1.0 + 1e-6));
    }
}

static void test_layer_bounds_of_a_hand_made_model(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    const bs_layer layers[] = {
        {.kind = BS_CONV2D, .out_channels = 2, .kernel = 3, .stride = 1},
        {.kind = BS_MAXPOOL2D, .kernel = 3, .stride = 1}, /* overlapping */
        {.kind = BS_TANH},
        {.kind = BS_MAXPOOL2D, .kernel = 2, .stride = 2},
        {.kind = BS_FLATTEN},
        {.kind = BS_DROPOUT, .p = 0.5f},
        {.kind = BS_LINEAR, .out_features = 3},
        {.kind = BS_SIGMOID},
        {.kind = BS_RELU},
        {.kind = BS_LINEAR, .out_features = 2},
    };
    const int shape[3] = {1, 8, 8};
    bs_model *m = bs_model_build(layers, 10, shape, err);
    assert_non_null(m);
    bs_model_init(m, 4);
    bs_lipschitz lip;
    assert_int_equal(bs_lipschitz_bounds(m, 1, &lip, err), 0);
    assert_int_equal(lip.n_layers, 10);
    assert_true(lip.layers[1].bound == 3.0);
    assert_true(lip.layers[2].bound == 1.0);
    assert_true(lip.layers[3].bound == 1.0);
    assert_true(lip.layers[5].bound == 1.0);
    assert_true(lip.layers[7].bound == 0.25);
    double product = 1.0;
    for (int i = 0; i < 10; i++)
        product *= lip.layers[i].bound;
    assert_true(fabs(product - lip.product) <= 1e-12 * product);
    /* the bound holds for random pairs (overlapping pooling included) */
    bs_rng rng;
    bs_rng_seed(&rng, 8);
    float x[64], y[64];
    for (int t = 0; t < 100; t++) {
        for (int i = 0; i < 64; i++) {
            x[i] = bs_rng_uniform(&rng);
            y[i] = x[i] + 0.1f * bs_rng_normal(&rng);
        }
        double r = bs_lipschitz_ratio(m, x, y, err);
        assert_true(r >= 0.0 && r <= lip.product);
    }
    assert_true(bs_lipschitz_ratio(m, x, x, err) < 0.0);
    assert_non_null(strstr(err, "equal"));
    bs_model_free(m);
}

/* ||f(x)-f(y)|| / ||x-y|| on the logits never exceeds the product, for
 * nearby pairs (small noise) and for pairs of different test digits. */
static void check_network_bound(const bs_model *m)
{
    char err[BS_ERR_LEN];
    bs_lipschitz lip;
    assert_int_equal(bs_lipschitz_bounds(m, 1, &lip, err), 0);
    assert_true(lip.product > 0.0 && isfinite(lip.product));
    bs_rng rng;
    bs_rng_seed(&rng, 99);
    size_t n = m->input_size;
    float *y = xcalloc(n, sizeof *y);
    double largest = 0.0;
    for (int t = 0; t < 100; t++) {
        const float *x = test.images + (size_t)t * n;
        if (t % 2)
            memcpy(y, test.images + (size_t)(t + 1000) * n, n * sizeof *y);
        else
            for (size_t i = 0; i < n; i++)
                y[i] = x[i] + 0.01f * bs_rng_normal(&rng);
        double r = bs_lipschitz_ratio(m, x, y, err);
        assert_true(r > 0.0);
        assert_true(r <= lip.product);
        largest = fmax(largest, r);
    }
    free(y);
    assert_true(largest > 0.0);
}

static void test_network_bound_holds_on_the_zoo(void **state)
{
    (void)state;
    check_network_bound(fc100);
    check_network_bound(cnn);
}

/* ------------------------------------------------------------------------ */
/* unit analysis */

static void test_purity_hand_made(void **state)
{
    (void)state;
    int majority;
    const int a[8] = {3, 3, 1, 3, 1, 2, 2, 2};
    /* 3 and 2 tie at 3 of 8: the smaller label wins */
    assert_true(bs_units_purity(a, 8, &majority) == 3.0 / 8.0);
    assert_int_equal(majority, 2);
    const int b[4] = {5, 5, 5, 5};
    assert_true(bs_units_purity(b, 4, &majority) == 1.0);
    assert_int_equal(majority, 5);
    const int c[4] = {0, 1, 2, 3};
    assert_true(bs_units_purity(c, 4, &majority) == 0.25);
    assert_int_equal(majority, 0);
}

static void test_rank_hand_made_model(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    /* logits = the first two pixels: unit 0 of layer 1 ranks by pixel 0 */
    const bs_layer layers[] = {{.kind = BS_FLATTEN}, {.kind = BS_LINEAR, .out_features = 2}};
    const int shape[3] = {1, 2, 2};
    bs_model *m = bs_model_build(layers, 2, shape, err);
    assert_non_null(m);
    m->params[0] = 1.0f; /* W[0][0] */
    m->params[5] = 1.0f; /* W[1][1] */
    float images[6 * 4] = {0};
    const float pixel0[6] = {0.1f, 0.9f, 0.5f, 0.9f, 0.7f, 0.2f};
    int labels[6] = {0, 1, 1, 0, 0, 1};
    for (int i = 0; i < 6; i++)
        images[i * 4] = pixel0[i];
    bs_dataset d = {.name = "hand", .split = "test", .n = 6, .shape = {1, 2, 2},
                    .input_size = 4, .classes = 2, .images = images, .labels = labels};
    float v[2];
    bs_units_basis(v, 2, 0);
    bs_units_top t;
    assert_int_equal(bs_units_rank(m, 1, &d, v, 1, 3, &t, err), 0);
    /* 0.9 (image 1), 0.9 (image 3: ties go to the smaller index), 0.7 (image 4) */
    assert_int_equal(t.k, 3);
    assert_int_equal(t.indices[0], 1);
    assert_int_equal(t.indices[1], 3);
    assert_int_equal(t.indices[2], 4);
    assert_int_equal(t.labels[0], 1);
    assert_int_equal(t.majority, 0);
    assert_true(fabs(t.purity - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(t.scores[2] - 0.7f) < 1e-6);
    /* bad requests */
    assert_int_equal(bs_units_rank(m, 2, &d, v, 1, 3, &t, err), -1);
    assert_non_null(strstr(err, "layer 2"));
    assert_int_equal(bs_units_rank(m, 1, &d, v, 1, 7, &t, err), -1);
    assert_int_equal(bs_units_rank(m, 1, &d, v, 1, 0, &t, err), -1);
    bs_model_free(m);
}

/* qsort order of image indices: higher score first, then smaller index */
static const double *sort_scores;
static int cmp_index(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_scores[i] != sort_scores[j])
        return sort_scores[i] > sort_scores[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static void test_rank_matches_brute_force(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    const bs_model *m = fc100;
    int L = bs_units_layer(m, 2, err);
    assert_int_equal(L, 2);
    assert_int_equal(bs_units_layer(m, 1, err), 2); /* linear -> its sigmoid */
    assert_int_equal(bs_units_layer(m, 5, err), 5);
    assert_int_equal(bs_units_layer(m, 6, err), -1);
    size_t dim = m->layers[L].out_size;
    enum { DIRS = 3, K = 8 };
    float *dirs = xcalloc(DIRS * dim, sizeof *dirs);
    bs_units_basis(dirs, dim, 3);
    bs_units_random(dirs + dim, dim, 7);
    bs_units_random(dirs + 2 * dim, dim, 8);
    double norm = 0.0;
    for (size_t i = 0; i < dim; i++)
        norm += (double)dirs[dim + i] * dirs[dim + i];
    assert_true(fabs(norm - 1.0) < 1e-5);
    bs_units_top tops[DIRS];
    assert_int_equal(bs_units_rank(m, 2, &test, dirs, DIRS, K, tops, err), 0);
    /* brute force: every image alone, every score, a full sort */
    int n = test.n;
    double *scores = xcalloc((size_t)n, sizeof *scores);
    int *order = xcalloc((size_t)n, sizeof *order);
    bs_workspace *ws = bs_workspace_new(m, 1);
    assert_non_null(ws);
    for (int t = 0; t < DIRS; t++) {
        for (int i = 0; i < n; i++) {
            bs_model_forward(m, ws, test.images + (size_t)i * test.input_size, 1);
            double s = 0.0;
            for (size_t j = 0; j < dim; j++)
                s += (double)ws->acts[L + 1][j] * dirs[t * dim + j];
            scores[i] = s;
            order[i] = i;
        }
        sort_scores = scores;
        qsort(order, (size_t)n, sizeof *order, cmp_index);
        for (int r = 0; r < K; r++) {
            assert_int_equal(tops[t].indices[r], order[r]);
            assert_true(tops[t].scores[r] == scores[order[r]]);
            assert_int_equal(tops[t].labels[r], test.labels[order[r]]);
        }
        assert_true(tops[t].purity >= 1.0 / K && tops[t].purity <= 1.0);
    }
    bs_workspace_free(ws);
    free(scores);
    free(order);
    free(dirs);
}

static void test_summary_is_the_mean_of_rankings(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    enum { U = 6, K = 8 };
    bs_units_summary s;
    assert_int_equal(bs_units_summarise(fc100, 2, &test, U, K, 5, &s, err), 0);
    assert_int_equal(s.layer, 2);
    assert_int_equal(s.dim, 100);
    size_t dim = 100;
    float *dirs = xcalloc(2 * U * dim, sizeof *dirs);
    for (int u = 0; u < U; u++) {
        bs_units_basis(dirs + u * dim, dim, u);
        bs_units_random(dirs + (U + u) * dim, dim, 5 + u);
    }
    bs_units_top tops[2 * U];
    assert_int_equal(bs_units_rank(fc100, 2, &test, dirs, 2 * U, K, tops, err), 0);
    double units = 0.0, random = 0.0;
    for (int u = 0; u < U; u++) {
        units += tops[u].purity / U;
        random += tops[U + u].purity / U;
    }
    assert_true(fabs(units - s.unit_mean) < 1e-12);
    assert_true(fabs(random - s.random_mean) < 1e-12);
    assert_true(s.unit_std >= 0.0 && s.random_std >= 0.0);
    assert_true(s.chance_mean >= 1.0 / K && s.chance_mean <= 1.0);
    free(dirs);
    assert_int_equal(bs_units_summarise(fc100, 2, &test, 101, K, 5, &s, err), -1);
    assert_non_null(strstr(err, "units"));
}

static void test_grid(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    const int idx[3] = {4, 0, 1999};
    bs_units_grid g;
    assert_int_equal(bs_units_grid_make(&test, idx, 3, &g, err), 0);
    assert_int_equal(g.width, 3 * 28 + 2);
    assert_int_equal(g.height, 28);
    assert_int_equal(g.channels, 1);
    for (int y = 0; y < 28; y++) {
        assert_int_equal(g.pixels[y * g.width + 28], 255);
        assert_int_equal(g.pixels[y * g.width + 57], 255);
        for (int k = 0; k < 3; k++)
            for (int x = 0; x < 28; x++) {
                float v = test.images[(size_t)idx[k] * 784 + y * 28 + x];
                assert_int_equal(g.pixels[y * g.width + k * 29 + x], (int)lroundf(v * 255.0f));
            }
    }
    bs_units_grid_free(&g);
    const int bad[1] = {2000};
    assert_int_equal(bs_units_grid_make(&test, bad, 1, &g, err), -1);
    assert_null(g.pixels);
}

/* ------------------------------------------------------------------------ */
/* adversarial training */

/* The first 256 training images, as a view (owns nothing). */
static bs_dataset tiny(void)
{
    bs_dataset d = train;
    d.n = 256;
    return d;
}

static bs_model *tiny_model(void)
{
    char err[BS_ERR_LEN];
    bs_layer layers[BS_MAX_LAYERS];
    int n;
    assert_int_equal(bs_arch_parse("fc:16", 10, layers, &n, err), 0);
    bs_model *m = bs_model_build(layers, n, train.shape, err);
    assert_non_null(m);
    return m;
}

static bs_train_config tiny_config(void)
{
    bs_train_config cfg = bs_train_defaults();
    cfg.epochs = 3;
    cfg.batch = 32;
    cfg.seed = 5;
    return cfg;
}

static void test_advtrain_is_deterministic(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    bs_dataset d = tiny();
    bs_train_config cfg = tiny_config();
    for (int method = 0; method < 2; method++) {
        bs_advtrain_config adv = bs_advtrain_defaults(method ? BS_ATTACK_FGSM : BS_ATTACK_LBFGS);
        adv.pool_size = 24;
        adv.attack.search_steps = 2;
        adv.attack.max_iterations = 20;
        adv.refresh = method ? 0 : 4; /* every epoch, or every 4 minibatches */
        bs_model *a = tiny_model(), *b = tiny_model(), *plain = tiny_model();
        bs_advtrain_stats sa, sb;
        assert_int_equal(bs_advtrain(a, &d, &cfg, &adv, NULL, NULL, &sa, err), 0);
        assert_int_equal(bs_advtrain(b, &d, &cfg, &adv, NULL, NULL, &sb, err), 0);
        assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
        assert_int_equal(sa.made, sb.made);
        /* the pool was made after the warm-up epoch, and used */
        assert_int_equal(sa.refreshes, method ? 2 : 4);
        assert_true(sa.made > 0 && sa.made <= sa.attempted);
        assert_int_equal(sa.attempted, (long)sa.refreshes * 24);
        assert_int_equal(sa.used, 2 * 8 * 16); /* 2 epochs of 8 minibatches, half of 32 */
        assert_true(sa.mean_distortion > 0.0);
        /* and changed the training */
        assert_int_equal(bs_train(plain, &d, &cfg, NULL, NULL, err), 0);
        assert_memory_not_equal(a->params, plain->params, a->n_params * sizeof(float));
        bs_model_free(a);
        bs_model_free(b);
        bs_model_free(plain);
    }
}

static void test_pool_examples_are_misclassified(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    bs_dataset d = tiny();
    bs_train_config cfg = tiny_config();
    bs_model *m = tiny_model();
    assert_int_equal(bs_train(m, &d, &cfg, NULL, NULL, err), 0);
    bs_advtrain_config adv = bs_advtrain_defaults(BS_ATTACK_LBFGS);
    bs_advtrain_pool pool;
    assert_int_equal(bs_advtrain_pool_init(&pool, 40, d.input_size, err), 0);
    bs_rng rng;
    bs_rng_seed(&rng, 3);
    assert_int_equal(bs_advtrain_pool_refresh(&pool, m, &d, &adv.attack, &rng, err), 0);
    assert_int_equal(pool.attempted, 40);
    assert_true(pool.n > 30);
    bs_workspace *ws = bs_workspace_new(m, 1);
    for (int i = 0; i < pool.n; i++) {
        const float *x = pool.images + (size_t)i * pool.input_size;
        int label = bs_argmax(bs_model_forward(m, ws, x, 1), m->classes);
        assert_int_not_equal(label, pool.labels[i]);
        assert_int_equal(pool.labels[i], d.labels[pool.sources[i]]);
        for (size_t j = 0; j < pool.input_size; j++)
            assert_true(x[j] >= 0.0f && x[j] <= 1.0f);
    }
    for (int i = 0; i < pool.n; i++)
        for (int j = 0; j < i; j++)
            assert_int_not_equal(pool.sources[i], pool.sources[j]);
    bs_workspace_free(ws);
    bs_advtrain_pool_free(&pool);
    bs_model_free(m);
}

static int keep_batch(void *ctx, const bs_model *m, float *x, int *labels, int nb,
                      int epoch, int step, char *err)
{
    (void)ctx, (void)m, (void)x, (void)labels, (void)nb, (void)step;
    if (epoch == 2) {
        snprintf(err, BS_ERR_LEN, "stopped by the hook");
        return -1;
    }
    return 0;
}

static void test_advtrain_refuses_bad_config(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    bs_dataset d = tiny();
    bs_train_config cfg = tiny_config();
    bs_model *m = tiny_model();
    bs_advtrain_config adv = bs_advtrain_defaults(BS_ATTACK_FGSM);
    adv.fraction = 1.5;
    assert_int_equal(bs_advtrain(m, &d, &cfg, &adv, NULL, NULL, NULL, err), -1);
    assert_non_null(strstr(err, "fraction"));
    adv = bs_advtrain_defaults(BS_ATTACK_FGSM);
    adv.attack.search_steps = 0;
    assert_int_equal(bs_advtrain(m, &d, &cfg, &adv, NULL, NULL, NULL, err), -1);
    assert_non_null(strstr(err, "search_steps"));
    /* the minibatch hook is adversarial training's own */
    adv = bs_advtrain_defaults(BS_ATTACK_FGSM);
    cfg.batch_fn = keep_batch;
    assert_int_equal(bs_advtrain(m, &d, &cfg, &adv, NULL, NULL, NULL, err), -1);
    assert_non_null(strstr(err, "batch_fn"));
    /* and a hook's failure stops bs_train with its message */
    assert_int_equal(bs_train(m, &d, &cfg, NULL, NULL, err), -1);
    assert_string_equal(err, "stopped by the hook");
    bs_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* command lines */

/* Runs `blindspot ARGS`, expects exit status rc, returns stdout (caller frees). */
static char *run(const char *args, int rc)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", tu_bin("blindspot"), args);
    int got = tu_run(cmd, &out);
    if (got != rc)
        fail_msg("'%s' exited %d, expected %d", cmd, got, rc);
    assert_non_null(out);
    return out;
}

static json_t *run_json(const char *args)
{
    char *out = run(args, 0);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("'%s' printed no JSON: %s", args, e.text);
    free(out);
    return j;
}

static double num(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void test_cli_lipschitz(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    bs_lipschitz lip;
    assert_int_equal(bs_lipschitz_bounds(fc100, 1, &lip, err), 0);
    json_t *j = run_json("lipschitz --model models/fc100-100-10.safetensors --attacks 3 --json");
    /* printed with 6 significant digits */
    assert_true(fabs(num(j, "product") - lip.product) < 1e-5 * lip.product);
    json_t *layers = json_object_get(j, "layers");
    assert_int_equal(json_array_size(layers), fc100->n_layers);
    assert_true(fabs(num(json_array_get(layers, 1), "bound") - lip.layers[1].bound) <
                1e-5 * lip.layers[1].bound);
    json_t *emp = json_object_get(j, "empirical");
    assert_int_equal((int)num(emp, "images"), 3);
    assert_true(num(emp, "examples") >= 1);
    assert_true(num(emp, "max_ratio") > 0.0 && num(emp, "max_ratio") <= lip.product);
    json_decref(j);
    char *help = run("lipschitz --help", 0);
    assert_non_null(strstr(help, "--attacks"));
    free(help);
    free(run("lipschitz", 2));
    free(run("lipschitz --model models/fc100-100-10.safetensors --split dev", 2));
    free(run("lipschitz --model models/nonexistent.safetensors", 1));
}

static void test_cli_units(void **state)
{
    (void)state;
    char err[BS_ERR_LEN], args[512];
    char *dir = tu_tmpdir();
    snprintf(args, sizeof args, "units --model models/fc100-100-10.safetensors --layer 2 "
             "--unit 5 --k 8 --out %s/grid.png --json", dir);
    json_t *j = run_json(args);
    float v[100];
    bs_units_basis(v, 100, 5);
    bs_units_top t;
    assert_int_equal(bs_units_rank(fc100, 2, &test, v, 1, 8, &t, err), 0);
    json_t *idx = json_object_get(j, "indices");
    assert_int_equal(json_array_size(idx), 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(json_integer_value(json_array_get(idx, i)), t.indices[i]);
    assert_true(fabs(num(j, "purity") - t.purity) < 1e-6);
    json_decref(j);
    /* the grid is a PNG of 8 digits with 7 gaps */
    char path[512];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    size_t len;
    uint8_t *png = tu_read_file(path, &len);
    assert_non_null(png);
    bs_image img;
    assert_int_equal(bs_image_decode(png, len, 1 << 20, &img, err), 0);
    assert_int_equal(img.width, 8 * 28 + 7);
    assert_int_equal(img.height, 28);
    assert_int_equal(img.channels, 1);
    bs_image_free(&img);
    free(png);
    tu_rmtree(dir);
    free(dir);
    /* the summary agrees with the core's */
    bs_units_summary s;
    assert_int_equal(bs_units_summarise(fc100, 2, &test, 5, 8, 1, &s, err), 0);
    j = run_json("units --model models/fc100-100-10.safetensors --layer 2 --summary 5 --json");
    assert_true(fabs(num(json_object_get(j, "unit_purity"), "mean") - s.unit_mean) < 1e-6);
    assert_true(fabs(num(json_object_get(j, "random_purity"), "mean") - s.random_mean) < 1e-6);
    json_decref(j);
    char *help = run("units --help", 0);
    assert_non_null(strstr(help, "--summary"));
    free(help);
    /* one direction, and only one */
    free(run("units --model models/fc100-100-10.safetensors --layer 2", 2));
    free(run("units --model models/fc100-100-10.safetensors --layer 2 --unit 1 --random", 2));
    free(run("units --model models/fc100-100-10.safetensors --layer 2 --k 65 --unit 1", 2));
    free(run("units --model models/fc100-100-10.safetensors --layer 2 --unit 100", 1));
    free(run("units --model models/fc100-100-10.safetensors --layer 9 --unit 1", 1));
}

static void test_cli_train_adversarial(void **state)
{
    (void)state;
    char err[BS_ERR_LEN], args[512];
    char *dir = tu_tmpdir();
    const char *common = "train --arch fc:16 --epochs 2 --adversarial fgsm --adv-pool 50 --json";
    snprintf(args, sizeof args, "%s -o %s/a.safetensors", common, dir);
    json_t *j = run_json(args);
    json_t *adv = json_object_get(j, "adversarial");
    assert_int_equal((int)num(adv, "pools"), 1);
    assert_int_equal((int)num(adv, "attacks"), 50);
    json_decref(j);
    snprintf(args, sizeof args, "%s -o %s/b.safetensors", common, dir);
    json_decref(run_json(args));
    /* the same command gives the same file; the file says how it was made */
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s/a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b.safetensors", dir);
    bs_model *a = bs_model_load(pa, err), *b = bs_model_load(pb, err);
    assert_non_null(a);
    assert_non_null(b);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
    const char *meta = bs_model_get_meta(a, "blindspot.adversarial");
    assert_non_null(meta);
    assert_non_null(strstr(meta, "\"method\":\"fgsm\""));
    bs_model_free(a);
    bs_model_free(b);
    snprintf(args, sizeof args, "train --arch fc:16 --adv-pool 5 -o %s/c.safetensors", dir);
    free(run(args, 2));
    snprintf(args, sizeof args, "train --arch fc:16 --adversarial fgsm --adv-param nope=1 "
             "-o %s/c.safetensors", dir);
    free(run(args, 2));
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_iteration_known_spectrum),
        cmocka_unit_test(test_conv_1x1_is_channel_matrix),
        cmocka_unit_test(test_conv_single_channel_is_max_dft),
        cmocka_unit_test(test_conv_bound_matches_brute_force),
        cmocka_unit_test(test_layer_bounds_of_a_hand_made_model),
        cmocka_unit_test(test_network_bound_holds_on_the_zoo),
        cmocka_unit_test(test_purity_hand_made),
        cmocka_unit_test(test_rank_hand_made_model),
        cmocka_unit_test(test_rank_matches_brute_force),
        cmocka_unit_test(test_summary_is_the_mean_of_rankings),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_advtrain_is_deterministic),
        cmocka_unit_test(test_pool_examples_are_misclassified),
        cmocka_unit_test(test_advtrain_refuses_bad_config),
        cmocka_unit_test(test_cli_lipschitz),
        cmocka_unit_test(test_cli_units),
        cmocka_unit_test(test_cli_train_adversarial),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
