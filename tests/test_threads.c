/* test_threads — a team of threads inside one model evaluation
 * (core/team.h) changes nothing but the time: the logits and the input
 * gradient of the zoo's fc100-100-10 and cnn, of a wide MLP built here
 * (its linear layers big enough to be split) and of the imported ResNet
 * (make onnx-fixtures; skipped without it) are bit for bit those of one
 * thread, at batch 1 and 3, with teams of 1, 2 and 3 threads, on the AVX2
 * kernels and on their portable twins; so are convolutions with groups,
 * strides, padding and dilations; and a whole L-BFGS attack with a
 * team of 2 returns the same images after the same number of evaluations.
 * Also the team itself: every task runs exactly once, run after run. Run
 * under ThreadSanitizer too (make SAN=thread). Needs make data models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/attack.h"
#include "core/dataset.h"
#include "core/gemm.h"
#include "core/layers.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/onnx.h"
#include "core/rng.h"
#include "core/scratch.h"
#include "core/team.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RESNET "build/onnx-fixtures/resnet.onnx"

static bs_model *fc100, *cnn, *wide, *resnet;
static bs_dataset test;

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    fc100 = bs_model_load("models/fc100-100-10.safetensors", err);
    cnn = bs_model_load("models/cnn.safetensors", err);
    if (!fc100 || !cnn || bs_dataset_load("data", "mnist", "test", &test, err)) {
        fprintf(stderr, "test_threads needs make data models: %s\n", err);
        return -1;
    }
    bs_layer layers[BS_MAX_LAYERS];
    int n;
    if (bs_arch_parse("fc:400,300:relu", 10, layers, &n, err) ||
        !(wide = bs_model_build(layers, n, (int[]){1, 28, 28}, err))) {
        fprintf(stderr, "test_threads: %s\n", err);
        return -1;
    }
    bs_model_init(wide, 7);
    struct stat st;
    if (!stat(RESNET, &st) && !(resnet = bs_onnx_load(RESNET, NULL, err))) {
        fprintf(stderr, "test_threads: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bs_model_free(fc100);
    bs_model_free(cnn);
    bs_model_free(wide);
    bs_model_free(resnet);
    bs_dataset_free(&test);
    return 0;
}

/* ---- the team --------------------------------------------------------- */

typedef struct count_job {
    atomic_int hits[97];
} count_job;

static void count_task(void *ctx, int task)
{
    count_job *j = ctx;
    atomic_fetch_add(&j->hits[task], 1);
}

/* Every task runs once per run, for task counts below, at and above the
 * team's threads, many runs in a row (the workers park and wake). */
static void test_team_runs_every_task_once(void **state)
{
    (void)state;
    assert_null(bs_team_new(0));
    assert_null(bs_team_new(BS_TEAM_MAX + 1));
    for (int threads = 1; threads <= 3; threads++) {
        bs_team *t = bs_team_new(threads);
        assert_non_null(t);
        assert_int_equal(bs_team_threads(t), threads);
        for (int run = 0; run < 300; run++) {
            int tasks = run % 97;
            count_job j;
            for (int k = 0; k < 97; k++)
                atomic_init(&j.hits[k], 0);
            bs_team_run(t, tasks, count_task, &j);
            for (int k = 0; k < 97; k++)
                assert_int_equal(atomic_load(&j.hits[k]), k < tasks);
        }
        bs_team_free(t);
    }
    bs_team_free(NULL);
}

/* ---- one evaluation ---------------------------------------------------- */

/* Logits and input gradient of m on x (B samples) with dlogits g, in the
 * workspace ws (its team as set). */
static void evaluate(const bs_model *m, bs_workspace *ws, const float *x, const float *g,
                     int B, float *logits, float *dx)
{
    const float *out = bs_model_forward(m, ws, x, B);
    memcpy(logits, out, (size_t)B * m->classes * sizeof(float));
    bs_model_backward(m, ws, g, NULL, dx, B);
}

static float *random_floats(bs_rng *r, size_t n, float lo, float hi)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * bs_rng_uniform(r);
    return v;
}

/* For batch 1 and 3 and teams of 1, 2 and 3: the same bits as no team. */
static void check_model(const bs_model *m, const char *name)
{
    bs_rng r;
    bs_rng_seed(&r, 11);
    for (int B = 1; B <= 3; B += 2) {
        size_t nx = (size_t)B * m->input_size, nl = (size_t)B * m->classes;
        float *x = random_floats(&r, nx, 0.0f, 1.0f), *g = random_floats(&r, nl, -1.0f, 1.0f);
        float *logits0 = malloc(nl * sizeof(float)), *dx0 = malloc(nx * sizeof(float));
        float *logits = malloc(nl * sizeof(float)), *dx = malloc(nx * sizeof(float));
        assert_true(logits0 && dx0 && logits && dx);
        bs_workspace *ws = bs_workspace_new(m, B);
        assert_non_null(ws);
        assert_null(ws->team);
        evaluate(m, ws, x, g, B, logits0, dx0);
        for (int threads = 1; threads <= 3; threads++) {
            bs_team *t = bs_team_new(threads);
            assert_non_null(t);
            ws->team = t;
            for (int again = 0; again < 2; again++) {
                memset(logits, 0xff, nl * sizeof(float));
                memset(dx, 0xff, nx * sizeof(float));
                evaluate(m, ws, x, g, B, logits, dx);
                if (memcmp(logits, logits0, nl * sizeof(float)) ||
                    memcmp(dx, dx0, nx * sizeof(float)))
                    fail_msg("%s, batch %d, %d threads%s: %s differ from one thread's", name,
                             B, threads, bs_gemm_portable ? " (portable)" : "",
                             memcmp(logits, logits0, nl * sizeof(float)) ? "logits"
                                                                         : "input gradients");
            }
            ws->team = NULL;
            bs_team_free(t);
        }
        printf("%s batch %d%s: logits and input gradients identical with 1, 2, 3 threads\n",
               name, B, bs_gemm_portable ? " (portable kernels)" : "");
        bs_workspace_free(ws);
        free(x);
        free(g);
        free(logits0);
        free(dx0);
        free(logits);
        free(dx);
    }
}

static void test_zoo_identical(void **state)
{
    (void)state;
    check_model(fc100, "fc100-100-10");
    check_model(cnn, "cnn");
    check_model(wide, "fc:400,300:relu");
}

static void test_resnet_identical(void **state)
{
    (void)state;
    if (!resnet) {
        printf("test_resnet_identical: skipped, no " RESNET " (make onnx-fixtures makes it)\n");
        skip();
    }
    check_model(resnet, "resnet");
}

/* The portable kernels (the unfolded conv2d products, split by columns and
 * channels) split the same way without changing a bit. */
static void test_portable_identical(void **state)
{
    (void)state;
    bs_gemm_portable = 1;
    check_model(cnn, "cnn");
    check_model(wide, "fc:400,300:relu");
    if (resnet)
        check_model(resnet, "resnet");
    bs_gemm_portable = 0;
}

/* Convolutions the zoo and the fixtures do not split (groups, depthwise,
 * strides, padding): forward and input gradient through bs_conv2d_* with
 * teams of 2 and 3, against no team, on both kernel paths. */
static void test_conv_shapes_identical(void **state)
{
    (void)state;
    bs_conv_dims shapes[] = {
        /* depthwise 3x3 */
        {.C = 32, .H = 64, .W = 64, .OC = 32, .OH = 64, .OW = 64, .kh = 3, .kw = 3, .sh = 1,
         .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .groups = 32},
        /* 4 groups, stride 2 */
        {.C = 16, .H = 48, .W = 48, .OC = 32, .OH = 24, .OW = 24, .kh = 3, .kw = 3, .sh = 2,
         .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .groups = 4},
        /* dense, 5x3 kernel, dilation 2 */
        {.C = 8, .H = 30, .W = 30, .OC = 24, .OH = 22, .OW = 26, .kh = 5, .kw = 3, .sh = 1,
         .sw = 1, .dh = 2, .dw = 2, .groups = 1},
    };
    bs_rng r;
    bs_rng_seed(&r, 3);
    for (int portable = 0; portable < 2; portable++) {
        bs_gemm_portable = portable;
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const bs_conv_dims *d = &shapes[k];
            int B = 2;
            size_t in_n = (size_t)B * d->C * d->H * d->W, out_n = (size_t)B * d->OC * d->OH * d->OW;
            size_t w_n = (size_t)d->OC * (d->C / d->groups) * d->kh * d->kw;
            float *x = random_floats(&r, in_n, 0.0f, 1.0f), *w = random_floats(&r, w_n, -1.0f, 1.0f);
            float *bias = random_floats(&r, (size_t)d->OC, -1.0f, 1.0f);
            float *g = random_floats(&r, out_n, -1.0f, 1.0f);
            float *col = malloc(bs_conv2d_scratch(d) * sizeof(float));
            float *y0 = malloc(out_n * sizeof(float)), *y = malloc(out_n * sizeof(float));
            float *dx0 = malloc(in_n * sizeof(float)), *dx = malloc(in_n * sizeof(float));
            assert_true(col && y0 && y && dx0 && dx);
            bs_conv2d_forward(y0, x, w, bias, col, B, d, NULL);
            bs_conv2d_backward(dx0, NULL, NULL, g, x, w, col, B, d, NULL);
            for (int threads = 2; threads <= 3; threads++) {
                bs_team *t = bs_team_new(threads);
                assert_non_null(t);
                memset(y, 0xff, out_n * sizeof(float));
                memset(dx, 0xff, in_n * sizeof(float));
                bs_conv2d_forward(y, x, w, bias, col, B, d, t);
                bs_conv2d_backward(dx, NULL, NULL, g, x, w, col, B, d, t);
                if (memcmp(y, y0, out_n * sizeof(float)) || memcmp(dx, dx0, in_n * sizeof(float)))
                    fail_msg("conv shape %zu, %d threads%s: %s differ", k, threads,
                             portable ? " (portable)" : "",
                             memcmp(y, y0, out_n * sizeof(float)) ? "outputs" : "input gradients");
                bs_team_free(t);
            }
            free(x);
            free(w);
            free(bias);
            free(g);
            free(col);
            free(y0);
            free(y);
            free(dx0);
            free(dx);
        }
    }
    bs_gemm_portable = 0;
}

/* ---- a whole attack ------------------------------------------------------ */

static void attack(const bs_model *m, const float *x, int target, bs_scratch *s,
                   bs_attack_result *res)
{
    char err[BS_ERR_LEN];
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    if (bs_attack_run(m, x, &target, 1, &p, NULL, s, res, err))
        fail_msg("bs_attack_run: %s", err);
}

/* An attack whose scratch lends a team of 2 to its workspace returns what
 * one without does: the same images, evaluations and figures. */
static void check_attack(const bs_model *m, const char *name, const float *x, int target)
{
    bs_scratch *plain = bs_scratch_new(), *teamed = bs_scratch_new();
    bs_team *t = bs_team_new(2);
    assert_true(plain && teamed && t);
    bs_scratch_team(teamed, t);
    bs_attack_result a, b;
    attack(m, x, target, plain, &a);
    attack(m, x, target, teamed, &b);
    size_t n = m->input_size;
    assert_int_equal(a.success, b.success);
    assert_int_equal(a.evaluations, b.evaluations);
    assert_int_equal(a.iterations, b.iterations);
    assert_true(a.c == b.c);
    assert_memory_equal(a.adv, b.adv, n * sizeof(float));
    assert_memory_equal(a.adv_float, b.adv_float, n * sizeof(float));
    assert_memory_equal(a.adv8, b.adv8, n);
    printf("%s lbfgs towards %d: success %d after %d evaluations, identical with 2 threads\n",
           name, target, a.success, a.evaluations);
    bs_attack_result_free(&a);
    bs_attack_result_free(&b);
    bs_scratch_free(plain);
    bs_scratch_free(teamed);
    bs_team_free(t);
}

static void test_attack_identical(void **state)
{
    (void)state;
    check_attack(cnn, "cnn", test.images, (test.labels[0] + 1) % 10);
    if (resnet) {
        bs_rng r;
        bs_rng_seed(&r, 5);
        float *x = random_floats(&r, resnet->input_size, 0.0f, 1.0f);
        check_attack(resnet, "resnet", x, 3);
        free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_team_runs_every_task_once),
        cmocka_unit_test(test_zoo_identical),
        cmocka_unit_test(test_resnet_identical),
        cmocka_unit_test(test_portable_identical),
        cmocka_unit_test(test_conv_shapes_identical),
        cmocka_unit_test(test_attack_identical),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
