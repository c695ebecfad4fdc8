/* test_attack_grad — the gradient attacks (adam-l1, fgsm, pgd Linf and L2,
 * cw-l2) through the public bs_attack_run, on what a user relies on: the
 * returned 8-bit image really is classified as the target when read back
 * (adv8/255 through bs_model_forward), it lies in [0,1] on the grid, its
 * reported norms are those of adv - x, the eps searches stay below eps_max
 * and PGD inside its budget, the seed's adam-l1 settings run and report
 * their outcome, attacking several targets at once gives bit for bit the
 * results of attacking them one at a time, and a deadline or a cancel flag
 * stops the call early with the right status.
 *
 * The model is models/fc100-100-10.safetensors on the first MNIST test
 * digits when `make models` has made them; otherwise a small sigmoid MLP
 * trained here on a synthetic 8x8 ten-class problem stands in, so the file
 * also runs on a bare checkout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/attack.h"
#include "core/dataset.h"
#include "core/model_file.h"
#include "core/rng.h"
#include "core/train.h"

#define MODEL_PATH "models/fc100-100-10.safetensors"
#define N_IMAGES 3

/* The model under attack and a few images it classifies. */
typedef struct fixture {
    bs_model *m;
    bs_workspace *ws;  /* batch 1, for re-checking returned images */
    int mnist;         /* 1: the real model and digits */
    size_t n;
    float images[N_IMAGES][28 * 28];
    int label[N_IMAGES]; /* the model's label for each image */
} fixture;

static fixture fx;

static int classify(const float *x)
{
    return bs_argmax(bs_model_forward(fx.m, fx.ws, x, 1), fx.m->classes);
}

/* A ten-class 8x8 problem: each class a random pattern of bright pixels,
 * each sample its class's pattern plus noise. */
static int synthetic_model(char *err)
{
    enum { PER_CLASS = 40, CLASSES = 10, SIDE = 8 };
    const size_t n = SIDE * SIDE;
    bs_dataset d = {.name = "synthetic", .split = "train", .n = PER_CLASS * CLASSES,
                    .shape = {1, SIDE, SIDE}, .input_size = n, .classes = CLASSES};
    float proto[CLASSES][SIDE * SIDE];
    bs_rng r;
    bs_rng_seed(&r, 7);
    for (int c = 0; c < CLASSES; c++)
        for (size_t i = 0; i < n; i++)
            proto[c][i] = bs_rng_uniform(&r) < 0.3f ? 0.9f : 0.1f;
    d.images = malloc((size_t)d.n * n * sizeof *d.images);
    d.labels = malloc((size_t)d.n * sizeof *d.labels);
    if (!d.images || !d.labels)
        return -1;
    for (int s = 0; s < d.n; s++) {
        d.labels[s] = s % CLASSES;
        for (size_t i = 0; i < n; i++) {
            /* on the 8-bit grid, as images read from files are */
            float v = proto[s % CLASSES][i] + 0.2f * (bs_rng_uniform(&r) - 0.5f);
            d.images[(size_t)s * n + i] = roundf(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v)) / 255.0f;
        }
    }
    bs_layer layers[BS_MAX_LAYERS];
    int n_layers, shape[3] = {1, SIDE, SIDE};
    bs_train_config cfg = bs_train_defaults();
    cfg.epochs = 30;
    int rc = -1;
    if (bs_arch_parse("fc:32", CLASSES, layers, &n_layers, err) == 0 &&
        (fx.m = bs_model_build(layers, n_layers, shape, err)) != NULL &&
        bs_train(fx.m, &d, &cfg, NULL, NULL, err) == 0) {
        fx.n = n;
        for (int k = 0; k < N_IMAGES; k++)
            memcpy(fx.images[k], d.images + (size_t)k * n, n * sizeof(float));
        rc = 0;
    }
    bs_dataset_free(&d);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    bs_dataset d = {0};
    fx.m = bs_model_load(MODEL_PATH, err);
    if (fx.m && bs_dataset_load("data", "mnist", "test", &d, err) == 0 &&
        d.input_size == fx.m->input_size) {
        fx.mnist = 1;
        fx.n = d.input_size;
        for (int k = 0; k < N_IMAGES; k++)
            memcpy(fx.images[k], d.images + (size_t)k * fx.n, fx.n * sizeof(float));
    } else {
        print_message("test_attack_grad: %s or data/mnist missing, using a "
                      "synthetic model (run make models)\n", MODEL_PATH);
        bs_model_free(fx.m);
        if (synthetic_model(err)) {
            print_error("synthetic model: %s\n", err);
            return -1;
        }
    }
    bs_dataset_free(&d);
    fx.ws = bs_workspace_new(fx.m, 1);
    if (!fx.ws)
        return -1;
    for (int k = 0; k < N_IMAGES; k++)
        fx.label[k] = classify(fx.images[k]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bs_workspace_free(fx.ws);
    bs_model_free(fx.m);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* helpers */

/* Defaults of a method, with the PGD norm picked by a pseudo-method. */
enum { PGD_L2 = 100 };

static bs_attack_params params_for(int method)
{
    bs_attack_params p = bs_attack_defaults(method == PGD_L2 ? BS_ATTACK_PGD
                                                             : (bs_attack_method)method);
    if (method == PGD_L2)
        p.pgd_norm = 2;
    return p;
}

static const char *label_of(int method)
{
    return method == PGD_L2 ? "pgd-l2" : bs_attack_method_name(method);
}

static void run(const float *x, const int *targets, int k,
                const bs_attack_params *p, const bs_control *ctl,
                bs_attack_result *res)
{
    char err[BS_ERR_LEN] = "";
    if (bs_attack_run(fx.m, x, targets, k, p, ctl, NULL, res, err) != 0)
        fail_msg("bs_attack_run: %s", err);
}

static void free_results(bs_attack_result *res, int k)
{
    for (int t = 0; t < k; t++)
        bs_attack_result_free(&res[t]);
}

static int close_to(double a, double b)
{
    return fabs(a - b) <= 1e-4 * fmax(1.0, fabs(b));
}

/* What every returned result must satisfy, success or not: the image is in
 * the box and on the 8-bit grid, adv8 is that image, the model's verdict on
 * adv8/255 is what the result says, and the norms are those of adv - x. */
static void check_result(const char *what, const float *x,
                         const bs_attack_result *r, int target, int original)
{
    size_t n = fx.n;
    float *back = malloc(n * sizeof *back);
    assert_non_null(back);
    assert_int_equal(r->target, target);
    assert_int_equal(r->original, original);
    for (size_t i = 0; i < n; i++) {
        if (!(r->adv[i] >= 0.0f && r->adv[i] <= 1.0f))
            fail_msg("%s: pixel %zu is %g, outside [0,1]", what, i, (double)r->adv[i]);
        back[i] = r->adv8[i] / 255.0f;
        if (fabsf(back[i] - r->adv[i]) > 1e-6f)
            fail_msg("%s: pixel %zu is %.9g, not its 8-bit value %d/255", what,
                     i, (double)r->adv[i], r->adv8[i]);
    }
    int label = classify(back);
    free(back);
    if (label != r->adversarial)
        fail_msg("%s: adv8 reads back as %d, the result says %d", what, label,
                 r->adversarial);
    assert_int_equal(r->success, label == target);
    assert_int_equal(r->untargeted, label != original);

    bs_norms want = {0};
    double l2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)r->adv[i] - x[i];
        want.l0 += fabs(d) > 1e-6;
        want.l1 += fabs(d);
        l2 += d * d;
        want.linf = fmax(want.linf, fabs(d));
    }
    want.l2 = sqrt(l2);
    if (r->norms.l0 != want.l0 || !close_to(r->norms.l1, want.l1) ||
        !close_to(r->norms.l2, want.l2) || !close_to(r->norms.linf, want.linf) ||
        !close_to(r->norms.distortion, want.l2 / sqrt((double)n)))
        fail_msg("%s: norms l0 %d l1 %g l2 %g linf %g distortion %g, adv - x has "
                 "%d %g %g %g %g", what, r->norms.l0, r->norms.l1, r->norms.l2,
                 r->norms.linf, r->norms.distortion, want.l0, want.l1, want.l2,
                 want.linf, want.l2 / sqrt((double)n));
}

/* Two targets the image is not, chosen among those targeted FGSM (the
 * weakest method here) reaches on the real model. */
static void two_targets(int img, int *targets)
{
    targets[0] = (fx.label[img] + 1) % 10;
    targets[1] = (fx.label[img] + 5) % 10;
}

/* ------------------------------------------------------------------------ */
/* tests */

/* Every method turns a digit into two chosen targets, judged on the 8-bit
 * image a PNG would hold (adam-l1: in its own test below). */
static void test_each_method_reaches_the_target(void **state)
{
    (void)state;
    const int methods[] = {BS_ATTACK_FGSM, BS_ATTACK_PGD, PGD_L2, BS_ATTACK_CW_L2};
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        bs_attack_params p = params_for(methods[mi]);
        assert_int_equal(p.quantize, 1);
        int targets[2];
        two_targets(0, targets);
        bs_attack_result res[2];
        run(fx.images[0], targets, 2, &p, NULL, res);
        for (int t = 0; t < 2; t++) {
            char what[64];
            snprintf(what, sizeof what, "%s, target %d", label_of(methods[mi]),
                     targets[t]);
            check_result(what, fx.images[0], &res[t], targets[t], fx.label[0]);
            if (!res[t].success)
                fail_msg("%s: not reached (model says %d, p(target) %.3f)", what,
                         res[t].adversarial, (double)res[t].target_prob);
            assert_int_equal(res[t].status, BS_ATTACK_DONE);
            assert_true(res[t].runs >= 1);
            assert_true(res[t].iterations >= 1);
            assert_true(res[t].evaluations >= res[t].runs);
            assert_true(res[t].norms.l0 > 0);
        }
        free_results(res, 2);
    }
}

/* The eps searches shrink the budget below eps_max, and PGD's Linf result
 * stays within its eps (plus half a grey level of rounding, up to one of
 * repair). */
static void test_eps_search_finds_small_budgets(void **state)
{
    (void)state;
    const int methods[] = {BS_ATTACK_FGSM, BS_ATTACK_PGD, PGD_L2};
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        bs_attack_params p = params_for(methods[mi]);
        double cap = methods[mi] == PGD_L2 ? p.eps_max * sqrt((double)fx.n) : p.eps_max;
        for (int img = 0; img < 2; img++) {
            int targets[2];
            two_targets(img, targets);
            bs_attack_result res[2];
            run(fx.images[img], targets, 2, &p, NULL, res);
            for (int t = 0; t < 2; t++) {
                if (!res[t].success)
                    continue;
                if (!(res[t].c > 0 && res[t].c < cap))
                    fail_msg("%s image %d target %d: eps %g not below %g",
                             label_of(methods[mi]), img, targets[t], res[t].c, cap);
                if (methods[mi] == BS_ATTACK_PGD &&
                    !(res[t].norms.linf <= res[t].c + 1.0 / 255 + 1e-6))
                    fail_msg("pgd image %d target %d: linf %g over eps %g", img,
                             targets[t], res[t].norms.linf, res[t].c);
            }
            assert_true(res[0].success || res[1].success);
            free_results(res, 2);
        }
    }
}

/* Counts progress calls and checks that `total` is the runs per target. */
typedef struct progress_log {
    int calls, total;
} progress_log;

static void count_progress(void *ctx, int done, int total)
{
    progress_log *log = ctx;
    assert_true(done >= 1 && done <= total);
    log->calls++;
    log->total = total;
}

/* adam-l1 from r = 0 with the search over c reaches two targets of a digit
 * on the 8-bit image (so also leaves the original class), with c reported
 * from the search and progress reported after every run. */
static void test_adam_l1_zero_start_with_c_search(void **state)
{
    (void)state;
    progress_log log = {0};
    bs_control ctl = {.progress = count_progress, .ctx = &log};
    bs_attack_params p = params_for(BS_ATTACK_ADAM_L1);
    p.init_zeros = 1;
    p.c_search = 1;
    int targets[2], k = 2;
    two_targets(1, targets);
    bs_attack_result res[2];
    run(fx.images[1], targets, k, &p, &ctl, res);
    assert_int_equal(log.calls, k * p.search_steps);
    assert_int_equal(log.total, p.search_steps);
    for (int t = 0; t < k; t++) {
        check_result("adam-l1 zeros", fx.images[1], &res[t], targets[t], fx.label[1]);
        assert_true(res[t].success);
        assert_true(res[t].untargeted);
        assert_int_equal(res[t].runs, p.search_steps);
        assert_int_equal(res[t].iterations, p.search_steps * p.steps);
        assert_true(res[t].c > 0);
    }
    free_results(res, k);
}

/* The seed's settings exactly (uniform start, c = 1, one run of 3000 Adam
 * steps at lr 1e-3) run to the end and report a consistent outcome, targeted
 * and untargeted, for three targets of a digit. With c = 1 the L1 term
 * outweighs the cross-entropy on these models, so no outcome is asserted. */
static void test_adam_l1_seed_settings_report_outcomes(void **state)
{
    (void)state;
    bs_attack_params p = params_for(BS_ATTACK_ADAM_L1);
    assert_int_equal(p.init_zeros, 0);
    assert_int_equal(p.c_search, 0);
    assert_true(p.initial_c == 1.0);
    assert_int_equal(p.steps, 3000);
    assert_true(fabsf(p.lr - 1e-3f) < 1e-9f);
    int targets[3] = {(fx.label[0] + 1) % 10, (fx.label[0] + 4) % 10,
                      (fx.label[0] + 8) % 10}, k = 3;
    bs_attack_result res[3];
    run(fx.images[0], targets, k, &p, NULL, res);
    for (int t = 0; t < k; t++) {
        check_result("adam-l1 seed", fx.images[0], &res[t], targets[t], fx.label[0]);
        assert_int_equal(res[t].runs, 1);
        assert_int_equal(res[t].iterations, 3000);
        assert_true(res[t].evaluations >= 3000);
        assert_true(res[t].c == 1.0);
        assert_int_equal(res[t].status, BS_ATTACK_DONE);
    }
    free_results(res, k);
}

/* Shorter settings for the tests that run every method several times. */
static bs_attack_params quick_params(int method)
{
    bs_attack_params p = params_for(method);
    if (method == BS_ATTACK_ADAM_L1) {
        p.steps = 300;
        p.c_search = 1;
        p.search_steps = 2;
    } else if (method == BS_ATTACK_CW_L2) {
        p.steps = 50;
        p.search_steps = 3;
    }
    return p;
}

/* A target's result does not depend on the other targets of the call:
 * three targets together give bit for bit what each gives alone. */
static void test_batch_equals_one_at_a_time(void **state)
{
    (void)state;
    const int methods[] = {BS_ATTACK_ADAM_L1, BS_ATTACK_FGSM, BS_ATTACK_PGD,
                           PGD_L2, BS_ATTACK_CW_L2};
    const int img = 2;
    int targets[3] = {(fx.label[img] + 3) % 10, (fx.label[img] + 1) % 10,
                      (fx.label[img] + 7) % 10};
    size_t n = fx.n;
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        bs_attack_params p = quick_params(methods[mi]);
        bs_attack_result all[3], one;
        run(fx.images[img], targets, 3, &p, NULL, all);
        for (int t = 0; t < 3; t++) {
            run(fx.images[img], &targets[t], 1, &p, NULL, &one);
            const char *name = label_of(methods[mi]);
            if (memcmp(all[t].adv, one.adv, n * sizeof(float)) ||
                memcmp(all[t].adv_float, one.adv_float, n * sizeof(float)) ||
                memcmp(all[t].adv8, one.adv8, n))
                fail_msg("%s target %d: the image differs in a batch of 3", name,
                         targets[t]);
            if (all[t].c != one.c || all[t].success != one.success ||
                all[t].iterations != one.iterations || all[t].runs != one.runs ||
                all[t].evaluations != one.evaluations)
                fail_msg("%s target %d: batch c %g success %d it %d runs %d evals %d,"
                         " alone %g %d %d %d %d", name, targets[t], all[t].c,
                         all[t].success, all[t].iterations, all[t].runs,
                         all[t].evaluations, one.c, one.success, one.iterations,
                         one.runs, one.evaluations);
            bs_attack_result_free(&one);
        }
        free_results(all, 3);
    }
}

/* A deadline already past stops every method before its first step; one
 * that passes mid-run stops it within a few steps. Either way the results
 * are well-formed and say timeout. */
static void test_deadline_returns_timeout(void **state)
{
    (void)state;
    const int methods[] = {BS_ATTACK_ADAM_L1, BS_ATTACK_FGSM, BS_ATTACK_PGD,
                           PGD_L2, BS_ATTACK_CW_L2};
    int targets[2];
    two_targets(0, targets);
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        bs_attack_params p = params_for(methods[mi]);
        bs_control ctl = {.deadline = bs_now() - 1.0};
        bs_attack_result res[2];
        double t0 = bs_now();
        run(fx.images[0], targets, 2, &p, &ctl, res);
        double took = bs_now() - t0;
        if (took > 0.5)
            fail_msg("%s: took %.3f s past its deadline", label_of(methods[mi]), took);
        for (int t = 0; t < 2; t++) {
            assert_int_equal(res[t].status, BS_ATTACK_TIMEOUT);
            check_result(label_of(methods[mi]), fx.images[0], &res[t], targets[t],
                         fx.label[0]);
        }
        free_results(res, 2);
    }

    /* a million Adam steps would take a minute */
    bs_attack_params p = params_for(BS_ATTACK_ADAM_L1);
    p.steps = 1000000;
    bs_control ctl = {.deadline = bs_now() + 0.05};
    bs_attack_result res[2];
    run(fx.images[0], targets, 2, &p, &ctl, res);
    double late = bs_now() - ctl.deadline;
    if (late > 0.5)
        fail_msg("adam-l1 returned %.3f s after its deadline", late);
    for (int t = 0; t < 2; t++) {
        assert_int_equal(res[t].status, BS_ATTACK_TIMEOUT);
        assert_int_equal(res[t].runs, 0);
        check_result("adam-l1 mid-run deadline", fx.images[0], &res[t], targets[t],
                     fx.label[0]);
    }
    free_results(res, 2);
}

/* A raised cancel flag stops every method with status cancelled. */
static void test_cancel_returns_cancelled(void **state)
{
    (void)state;
    const int methods[] = {BS_ATTACK_ADAM_L1, BS_ATTACK_FGSM, BS_ATTACK_PGD,
                           PGD_L2, BS_ATTACK_CW_L2};
    atomic_int cancel = 1;
    int targets[2];
    two_targets(0, targets);
    for (size_t mi = 0; mi < sizeof methods / sizeof *methods; mi++) {
        bs_attack_params p = params_for(methods[mi]);
        bs_control ctl = {.cancel = &cancel};
        bs_attack_result res[2];
        double t0 = bs_now();
        run(fx.images[0], targets, 2, &p, &ctl, res);
        assert_true(bs_now() - t0 < 0.5);
        for (int t = 0; t < 2; t++) {
            assert_int_equal(res[t].status, BS_ATTACK_CANCELLED);
            check_result(label_of(methods[mi]), fx.images[0], &res[t], targets[t],
                         fx.label[0]);
        }
        free_results(res, 2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_method_reaches_the_target),
        cmocka_unit_test(test_eps_search_finds_small_budgets),
        cmocka_unit_test(test_adam_l1_zero_start_with_c_search),
        cmocka_unit_test(test_adam_l1_seed_settings_report_outcomes),
        cmocka_unit_test(test_batch_equals_one_at_a_time),
        cmocka_unit_test(test_deadline_returns_timeout),
        cmocka_unit_test(test_cancel_returns_cancelled),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
