/* test_attack — the paper's L-BFGS attack through bs_attack_run on the zoo's
 * FC100-100-10 and real MNIST test digits: it reaches the target on the
 * 8-bit image, its norms describe adv - x, several targets at once equal
 * one by one, two threads equal one after another, deadline and cancel
 * return the best so far, a target the model already gives is answered as
 * such without a search, bad requests are refused. Needs make data models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/attack.h"
#include "core/dataset.h"
#include "core/model_file.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static bs_model *model;
static bs_dataset test;

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    model = bs_model_load("models/fc100-100-10.safetensors", err);
    if (!model || bs_dataset_load("data", "mnist", "test", &test, err)) {
        fprintf(stderr, "test_attack needs make data models: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bs_model_free(model);
    bs_dataset_free(&test);
    return 0;
}

static const float *image(int i)
{
    return test.images + (size_t)i * test.input_size;
}

static int classify(const float *x)
{
    bs_workspace *ws = bs_workspace_new(model, 1);
    int label = bs_argmax(bs_model_forward(model, ws, x, 1), model->classes);
    bs_workspace_free(ws);
    return label;
}

static void attack(const float *x, const int *targets, int k, const bs_attack_params *p,
                   const bs_control *ctl, bs_attack_result *res)
{
    char err[BS_ERR_LEN];
    if (bs_attack_run(model, x, targets, k, p, ctl, NULL, res, err))
        fail_msg("bs_attack_run: %s", err);
}

static void free_results(bs_attack_result *res, int k)
{
    for (int j = 0; j < k; j++)
        bs_attack_result_free(&res[j]);
}

static void test_lbfgs_reaches_target_on_8bit_image(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    double dist = 0.0;
    int n = 8;
    for (int i = 0; i < n; i++) {
        int target = (test.labels[i] + 3) % 10;
        bs_attack_result r;
        attack(image(i), &target, 1, &p, NULL, &r);
        assert_int_equal(r.status, BS_ATTACK_DONE);
        assert_true(r.success);
        assert_int_equal(r.adversarial, target);
        /* what a PNG holds is what was judged: the bytes re-read as floats */
        float *back = malloc(test.input_size * sizeof(float));
        for (size_t j = 0; j < test.input_size; j++) {
            back[j] = (float)r.adv8[j] / 255.0f;
            assert_true(fabsf(back[j] - r.adv[j]) < 1e-6f);
        }
        assert_int_equal(classify(back), target);
        free(back);
        /* the norms describe adv - x */
        bs_norms nm = bs_norms_of(image(i), r.adv, test.input_size);
        assert_true(fabs(nm.l2 - r.norms.l2) < 1e-9);
        assert_true(fabs(r.norms.distortion - r.norms.l2 / 28.0) < 1e-9);
        assert_true(r.norms.linf <= 1.0 && r.norms.l0 > 0);
        assert_true(r.iterations > 0 && r.evaluations > r.iterations);
        assert_int_equal(r.runs, p.search_steps);
        dist += r.norms.distortion;
        bs_attack_result_free(&r);
    }
    /* Table 1 puts FC100-100-10's average minimum distortion at 0.058 */
    dist /= n;
    assert_true(dist > 0.02 && dist < 0.12);
}

static void test_c_search_prefers_smaller_perturbation(void **state)
{
    (void)state;
    /* one run at c=1 versus the search: the search never returns more */
    bs_attack_params one = bs_attack_defaults(BS_ATTACK_LBFGS), search = one;
    one.search_steps = 1;
    int target = (test.labels[5] + 1) % 10;
    bs_attack_result a, b;
    attack(image(5), &target, 1, &one, NULL, &a);
    attack(image(5), &target, 1, &search, NULL, &b);
    assert_true(b.success);
    if (a.success)
        assert_true(b.norms.l2 <= a.norms.l2 + 1e-9);
    assert_true(b.c > 0.0);
    bs_attack_result_free(&a);
    bs_attack_result_free(&b);
}

static void test_several_targets_equal_one_by_one(void **state)
{
    (void)state;
    /* all nine other labels at once: one batched evaluation per step */
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    int targets[9], k = 0;
    for (int c = 0; c < 10; c++)
        if (c != test.labels[0])
            targets[k++] = c;
    bs_attack_result all[9];
    attack(image(0), targets, k, &p, NULL, all);
    for (int j = 0; j < k; j++) {
        bs_attack_result one;
        attack(image(0), &targets[j], 1, &p, NULL, &one);
        assert_int_equal(one.success, all[j].success);
        assert_int_equal(one.iterations, all[j].iterations);
        assert_int_equal(one.evaluations, all[j].evaluations);
        assert_memory_equal(one.adv, all[j].adv, test.input_size * sizeof(float));
        assert_memory_equal(one.adv_float, all[j].adv_float, test.input_size * sizeof(float));
        bs_attack_result_free(&one);
    }
    free_results(all, k);
}

/* Image 17 is already a 3 to FC100-100-10: target 3 is not searched and is
 * no success; the other target in the same call is attacked as it would
 * be alone. */
static void test_already_target_is_not_a_success(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    int label = classify(image(17));
    int targets[2] = {label, (label + 2) % 10};
    bs_attack_result res[2], alone;
    attack(image(17), targets, 2, &p, NULL, res);
    assert_int_equal(res[0].status, BS_ATTACK_ALREADY_TARGET);
    assert_string_equal(bs_attack_status_name(res[0].status), "already_target");
    assert_false(res[0].success);
    assert_false(res[0].untargeted);
    assert_int_equal(res[0].target, label);
    assert_int_equal(res[0].adversarial, label);
    assert_int_equal(res[0].evaluations, 0);
    assert_int_equal(res[0].runs, 0);
    assert_int_equal(res[0].norms.l0, 0);
    assert_true(res[0].norms.l2 == 0.0 && res[0].norms.distortion == 0.0);
    assert_memory_equal(res[0].adv, image(17), test.input_size * sizeof(float));
    assert_int_equal(res[1].status, BS_ATTACK_DONE);
    assert_true(res[1].success);
    attack(image(17), &targets[1], 1, &p, NULL, &alone);
    assert_int_equal(alone.evaluations, res[1].evaluations);
    assert_memory_equal(alone.adv, res[1].adv, test.input_size * sizeof(float));
    bs_attack_result_free(&alone);
    free_results(res, 2);

    /* every method answers the same way */
    for (int m = BS_ATTACK_LBFGS; m <= BS_ATTACK_CW_L2; m++) {
        bs_attack_params q = bs_attack_defaults((bs_attack_method)m);
        bs_attack_result r;
        attack(image(17), &label, 1, &q, NULL, &r);
        assert_int_equal(r.status, BS_ATTACK_ALREADY_TARGET);
        assert_false(r.success);
        assert_int_equal(r.evaluations, 0);
        bs_attack_result_free(&r);
    }
}

typedef struct job {
    int index, target;
    bs_attack_result r;
} job;

static void *run_job(void *arg)
{
    job *jb = arg;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    char err[BS_ERR_LEN];
    if (bs_attack_run(model, image(jb->index), &jb->target, 1, &p, NULL, NULL, &jb->r, err))
        jb->r.adv = NULL;
    return NULL;
}

static void test_two_threads_equal_sequential(void **state)
{
    (void)state;
    job seq[4], par[4];
    for (int i = 0; i < 4; i++) {
        seq[i] = par[i] = (job){.index = 10 + i, .target = (test.labels[10 + i] + 2) % 10};
        run_job(&seq[i]);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i += 2) {
        pthread_create(&th[i], NULL, run_job, &par[i]);
        pthread_create(&th[i + 1], NULL, run_job, &par[i + 1]);
        pthread_join(th[i], NULL);
        pthread_join(th[i + 1], NULL);
    }
    for (int i = 0; i < 4; i++) {
        assert_non_null(par[i].r.adv);
        assert_memory_equal(seq[i].r.adv, par[i].r.adv, test.input_size * sizeof(float));
        assert_memory_equal(seq[i].r.adv_float, par[i].r.adv_float,
                            test.input_size * sizeof(float));
        assert_int_equal(seq[i].r.evaluations, par[i].r.evaluations);
        bs_attack_result_free(&seq[i].r);
        bs_attack_result_free(&par[i].r);
    }
}

static void test_deadline_and_cancel_return_best_so_far(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    int target = (test.labels[3] + 5) % 10;
    bs_attack_result r;
    bs_control past = {.deadline = bs_now() - 1.0};
    double t0 = bs_now();
    attack(image(3), &target, 1, &p, &past, &r);
    assert_int_equal(r.status, BS_ATTACK_TIMEOUT);
    assert_true(bs_now() - t0 < 0.5);
    assert_non_null(r.adv);
    bs_attack_result_free(&r);

    atomic_int cancel = 1;
    bs_control stop = {.cancel = &cancel};
    attack(image(3), &target, 1, &p, &stop, &r);
    assert_int_equal(r.status, BS_ATTACK_CANCELLED);
    bs_attack_result_free(&r);
}

static void test_quantize_off_and_l1_norm(void **state)
{
    (void)state;
    int target = (test.labels[7] + 1) % 10;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.quantize = 0;
    bs_attack_result r;
    attack(image(7), &target, 1, &p, NULL, &r);
    assert_true(r.success);
    assert_memory_equal(r.adv, r.adv_float, test.input_size * sizeof(float));
    bs_attack_result_free(&r);

    p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.norm = 1;
    attack(image(7), &target, 1, &p, NULL, &r);
    assert_true(r.success);
    assert_true(r.norms.l1 > 0.0);
    bs_attack_result_free(&r);
}

/* A convex problem with a known answer: two-class softmax regression where
 * class 1's logit minus class 0's is v.x + beta. From x with margin -0.5,
 * the smallest perturbation that flips the label is r* = 0.5 v/||v||^2,
 * of L2 norm 0.5/||v|| (= 0.5 with ||v|| = 1), inside the box. */
static bs_model *convex_model(float *x)
{
    char err[BS_ERR_LEN];
    bs_layer layers[BS_MAX_LAYERS];
    int n_layers;
    const int shape[3] = {1, 4, 4};
    assert_int_equal(bs_arch_parse("fc", 2, layers, &n_layers, err), 0);
    bs_model *m = bs_model_build(layers, n_layers, shape, err);
    assert_non_null(m);
    const bs_layer *l = &m->layers[1];
    float *w = m->params + l->weight_off, *b = m->params + l->bias_off;
    double norm = 0.0, vx = 0.0;
    for (int i = 0; i < 16; i++) {
        w[16 + i] = (float)sin(1.0 + i); /* v */
        norm += (double)w[16 + i] * w[16 + i];
    }
    for (int i = 0; i < 16; i++) {
        w[16 + i] = (float)(w[16 + i] / sqrt(norm));
        x[i] = 0.5f + 0.1f * (float)cos(3.0 * i);
        vx += (double)w[16 + i] * x[i];
    }
    b[1] = (float)(-0.5 - vx);
    return m;
}

static void test_convex_case_finds_known_optimum(void **state)
{
    (void)state;
    float x[16];
    bs_model *m = convex_model(x);
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.quantize = 0; /* the optimum is off the 8-bit grid */
    int target = 1;
    bs_attack_result r;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_attack_run(m, x, &target, 1, &p, NULL, NULL, &r, err), 0);
    assert_int_equal(r.original, 0);
    assert_true(r.success);
    /* no success can beat the optimum; the search lands within 5% of it */
    assert_true(r.norms.l2 >= 0.5 - 1e-4);
    assert_true(r.norms.l2 <= 0.5 * 1.05);
    /* and in its direction */
    const float *v = m->params + m->layers[1].weight_off + 16;
    double dot = 0.0;
    for (int i = 0; i < 16; i++)
        dot += (r.adv[i] - x[i]) * v[i];
    assert_true(dot / r.norms.l2 > 0.999);
    bs_attack_result_free(&r);
    bs_model_free(m);
}

static void test_larger_c_never_larger_distortion(void **state)
{
    (void)state;
    float x[16];
    bs_model *m = convex_model(x);
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.quantize = 0;
    p.search_steps = 1; /* one run at exactly initial_c */
    int target = 1;
    char err[BS_ERR_LEN];
    double prev = INFINITY;
    for (double c = 0.01; c < 100.0; c *= 2.0) {
        bs_attack_result r;
        p.initial_c = c;
        assert_int_equal(bs_attack_run(m, x, &target, 1, &p, NULL, NULL, &r, err), 0);
        assert_true(r.norms_float.distortion <= prev + 1e-6);
        prev = r.norms_float.distortion;
        bs_attack_result_free(&r);
    }
    bs_model_free(m);
}

static void test_native_optimizer_matches_reference(void **state)
{
    (void)state;
    /* the C port of L-BFGS-B in the attack: same outcome, same sizes */
    bs_attack_params ref = bs_attack_defaults(BS_ATTACK_LBFGS), nat = ref;
    nat.optimizer = 1;
    for (int i = 20; i < 24; i++) {
        int target = (test.labels[i] + 4) % 10;
        bs_attack_result a, b;
        attack(image(i), &target, 1, &ref, NULL, &a);
        attack(image(i), &target, 1, &nat, NULL, &b);
        assert_true(a.success && b.success);
        assert_true(fabs(a.norms.l2 - b.norms.l2) <= 0.05 * a.norms.l2);
        bs_attack_result_free(&a);
        bs_attack_result_free(&b);
    }
}

static void test_bad_requests_refused(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    bs_attack_result r[2];
    int bad_target = 10;
    assert_int_equal(bs_attack_run(model, image(0), &bad_target, 1, &p, NULL, NULL, r, err), -1);
    assert_non_null(strstr(err, "target 10"));
    float *x = malloc(test.input_size * sizeof(float));
    memcpy(x, image(0), test.input_size * sizeof(float));
    x[100] = 1.5f;
    int target = 1;
    assert_int_equal(bs_attack_run(model, x, &target, 1, &p, NULL, NULL, r, err), -1);
    assert_non_null(strstr(err, "outside [0,1]"));
    free(x);
    p.history = 0;
    assert_int_equal(bs_attack_run(model, image(0), &target, 1, &p, NULL, NULL, r, err), -1);
    assert_non_null(strstr(err, "history"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lbfgs_reaches_target_on_8bit_image),
        cmocka_unit_test(test_c_search_prefers_smaller_perturbation),
        cmocka_unit_test(test_several_targets_equal_one_by_one),
        cmocka_unit_test(test_already_target_is_not_a_success),
        cmocka_unit_test(test_two_threads_equal_sequential),
        cmocka_unit_test(test_deadline_and_cancel_return_best_so_far),
        cmocka_unit_test(test_quantize_off_and_l1_norm),
        cmocka_unit_test(test_convex_case_finds_known_optimum),
        cmocka_unit_test(test_larger_c_never_larger_distortion),
        cmocka_unit_test(test_native_optimizer_matches_reference),
        cmocka_unit_test(test_bad_requests_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
