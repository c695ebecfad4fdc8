/* test_lockstep — the L-BFGS engine's ways of doing less work, on the
 * zoo's FC100-100-10 and real MNIST test digits: the c search in lanes
 * reaches the same or a smaller mean distortion than the sequential search
 * on a fixed set; warm starts save evaluations and keep the distortion
 * within 1%; attacks batched across requests (bs_attack_stream) give each
 * request bit for bit what bs_attack_run gives it alone, however the jobs
 * come and go, with its own deadline, cancel and refusal. Needs make data
 * models. */
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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static bs_model *model;
static bs_dataset test;

#define IMAGES 10

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    model = bs_model_load("models/fc100-100-10.safetensors", err);
    if (!model || bs_dataset_load("data", "mnist", "test", &test, err)) {
        fprintf(stderr, "test_lockstep needs make data models: %s\n", err);
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

/* The fixed set: images 0..IMAGES-1, each towards (label + 1) mod 10, as
 * make bench attacks them. Sums the distortion and evaluations of the
 * attacks; every one must succeed. */
static void attack_set(const bs_attack_params *p, double *distortion, long *evaluations)
{
    char err[BS_ERR_LEN];
    *distortion = 0.0;
    *evaluations = 0;
    for (int i = 0; i < IMAGES; i++) {
        int target = (test.labels[i] + 1) % 10;
        bs_attack_result r;
        if (bs_attack_run(model, image(i), &target, 1, p, NULL, NULL, &r, err))
            fail_msg("bs_attack_run: %s", err);
        assert_true(r.success);
        *distortion += r.norms.distortion;
        *evaluations += r.evaluations;
        bs_attack_result_free(&r);
    }
    *distortion /= IMAGES;
}

static void test_lanes_same_or_better_distortion(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    double seq, lanes;
    long seq_evals, lanes_evals;
    attack_set(&p, &seq, &seq_evals);
    for (int L = 2; L <= 8; L *= 2) {
        p.lanes = L;
        attack_set(&p, &lanes, &lanes_evals);
        print_message("lanes %d: mean distortion %.6f (sequential %.6f), evaluations %ld (%ld)\n",
                      L, lanes, seq, lanes_evals, seq_evals);
        assert_true(lanes <= seq);
    }
}

static void test_warm_start_saves_evaluations(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    assert_true(p.warm_start);
    double warm, cold;
    long warm_evals, cold_evals;
    attack_set(&p, &warm, &warm_evals);
    p.warm_start = 0;
    attack_set(&p, &cold, &cold_evals);
    print_message("warm: mean distortion %.6f, evaluations %ld; cold: %.6f, %ld\n", warm,
                  warm_evals, cold, cold_evals);
    assert_true(warm_evals < cold_evals);
    assert_true(fabs(warm - cold) <= 0.01 * cold);
}

/* The default tolerance stops before the float32 rounding of the loss: far
 * fewer evaluations than SciPy's factr 1e7, the same distortion. */
static void test_factr_default_saves_evaluations(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.warm_start = 0;
    double dflt, scipy;
    long dflt_evals, scipy_evals;
    attack_set(&p, &dflt, &dflt_evals);
    p.factr = 1e7;
    attack_set(&p, &scipy, &scipy_evals);
    print_message("factr 1e10: mean distortion %.6f, evaluations %ld; 1e7: %.6f, %ld\n", dflt,
                  dflt_evals, scipy, scipy_evals);
    assert_true(2 * dflt_evals < scipy_evals);
    assert_true(fabs(dflt - scipy) <= 0.01 * scipy);
}

/* ------------------------------------------------------------------------ */
/* streams */

/* A feed that offers jobs[0..n) one per `every` calls of next (the others
 * answer that none is waiting), and records the order they end in. */
typedef struct feed_state {
    bs_attack_job *jobs;
    int n, offered, calls, every;
    int done_order[16], n_done;
    int max_free;           /* the most free rows next was told of */
} feed_state;

static bs_attack_job *feed_next(void *ctx, int free_rows)
{
    feed_state *f = ctx;
    if (free_rows > f->max_free)
        f->max_free = free_rows;
    if (f->offered == f->n || f->calls++ % f->every)
        return NULL;
    return &f->jobs[f->offered++];
}

static void feed_done(void *ctx, bs_attack_job *job)
{
    feed_state *f = ctx;
    f->done_order[f->n_done++] = (int)(job - f->jobs);
}

/* Everything bs_attack_run returns but the seconds. */
static void assert_same_result(const bs_attack_result *a, const bs_attack_result *b)
{
    size_t n = test.input_size;
    assert_int_equal(a->target, b->target);
    assert_int_equal(a->success, b->success);
    assert_int_equal(a->success_float, b->success_float);
    assert_int_equal(a->adversarial, b->adversarial);
    assert_int_equal(a->status, b->status);
    assert_memory_equal(&a->target_prob, &b->target_prob, sizeof a->target_prob);
    assert_memory_equal(a->adv, b->adv, n * sizeof(float));
    assert_memory_equal(a->adv_float, b->adv_float, n * sizeof(float));
    assert_memory_equal(a->adv8, b->adv8, n);
    assert_int_equal(a->norms.l0, b->norms.l0);
    assert_memory_equal(&a->norms.l1, &b->norms.l1, sizeof a->norms.l1);
    assert_memory_equal(&a->norms.l2, &b->norms.l2, sizeof a->norms.l2);
    assert_memory_equal(&a->norms.linf, &b->norms.linf, sizeof a->norms.linf);
    assert_memory_equal(&a->c, &b->c, sizeof a->c);
    assert_int_equal(a->iterations, b->iterations);
    assert_int_equal(a->evaluations, b->evaluations);
    assert_int_equal(a->runs, b->runs);
}

/* Jobs of 1 to 3 targets (one of them a target the model already gives)
 * that arrive one every other step, in a stream of `rows` rows, each equal
 * to its attack alone. */
static void check_stream_equals_alone(const bs_attack_params *p, int rows, int every)
{
    enum { JOBS = 6 };
    static const int ks[JOBS] = {1, 3, 2, 1, 2, 1};
    int targets[JOBS][3];
    bs_attack_result streamed[JOBS][3], alone[JOBS][3];
    bs_attack_job jobs[JOBS];
    char err[BS_ERR_LEN];
    for (int j = 0; j < JOBS; j++) {
        int label = test.labels[j];
        for (int t = 0; t < ks[j]; t++)
            targets[j][t] = (label + 1 + 4 * t) % 10;
        if (j == 1)
            targets[j][2] = label; /* answered at once, not searched */
        jobs[j] = (bs_attack_job){.x = image(j), .targets = targets[j], .k = ks[j],
                                  .results = streamed[j]};
        if (bs_attack_run(model, image(j), targets[j], ks[j], p, NULL, NULL, alone[j], err))
            fail_msg("bs_attack_run: %s", err);
    }
    feed_state f = {.jobs = jobs, .n = JOBS, .every = every};
    bs_attack_feed feed = {feed_next, feed_done, &f};
    assert_int_equal(bs_attack_stream(model, p, rows, NULL, &feed, err), 0);
    assert_int_equal(f.n_done, JOBS);
    for (int j = 0; j < JOBS; j++) {
        assert_int_equal(jobs[j].rc, 0);
        for (int t = 0; t < ks[j]; t++) {
            assert_same_result(&streamed[j][t], &alone[j][t]);
            bs_attack_result_free(&streamed[j][t]);
            bs_attack_result_free(&alone[j][t]);
        }
    }
    assert_int_equal(alone[1][2].status, BS_ATTACK_ALREADY_TARGET);
    /* never more rows than asked, but for a job larger than that alone */
    int largest = 3 * p->lanes;
    assert_true(f.max_free <= (rows > largest ? rows : largest));
}

static void test_stream_equals_alone(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    check_stream_equals_alone(&p, 8, 2); /* several jobs at once, coming and going */
    check_stream_equals_alone(&p, 1, 1); /* one row: one job after another */
    p.lanes = 2;
    check_stream_equals_alone(&p, 6, 3);
    p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.optimizer = 0; /* the Fortran reference */
    p.norm = 1;
    check_stream_equals_alone(&p, 4, 1);
}

/* A job larger than the stream runs, alone, once the others have left. */
static void test_stream_job_larger_than_stream(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    int one = 5, nine[9];
    for (int t = 0; t < 9; t++)
        nine[t] = (test.labels[1] + 1 + t) % 10;
    bs_attack_result r1, r9[9], a1, a9[9];
    char err[BS_ERR_LEN];
    bs_attack_job jobs[2] = {{.x = image(0), .targets = &one, .k = 1, .results = &r1},
                             {.x = image(1), .targets = nine, .k = 9, .results = r9}};
    feed_state f = {.jobs = jobs, .n = 2, .every = 1};
    bs_attack_feed feed = {feed_next, feed_done, &f};
    assert_int_equal(bs_attack_stream(model, &p, 4, NULL, &feed, err), 0);
    assert_int_equal(f.n_done, 2);
    assert_int_equal(f.done_order[0], 0);
    assert_int_equal(bs_attack_run(model, image(0), &one, 1, &p, NULL, NULL, &a1, err), 0);
    assert_int_equal(bs_attack_run(model, image(1), nine, 9, &p, NULL, NULL, a9, err), 0);
    assert_same_result(&r1, &a1);
    bs_attack_result_free(&r1);
    bs_attack_result_free(&a1);
    for (int t = 0; t < 9; t++) {
        assert_same_result(&r9[t], &a9[t]);
        bs_attack_result_free(&r9[t]);
        bs_attack_result_free(&a9[t]);
    }
}

/* Raises a job's cancel flag after its first finished run. */
static void cancel_after_first_run(void *ctx, int done, int total)
{
    (void)done, (void)total;
    atomic_store((atomic_int *)ctx, 1);
}

/* One job cancelled, one past its deadline, three refused (a bad target,
 * no targets, more than a stream may size for): each ends its own way, and
 * the others are what they are alone. */
static void test_stream_stop_and_refusal_are_per_job(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    atomic_int cancel = 0;
    bs_control cancelled = {.cancel = &cancel, .progress = cancel_after_first_run,
                            .ctx = &cancel};
    bs_control late = {.deadline = 1e-9}; /* long past */
    int t[4] = {(test.labels[0] + 1) % 10, (test.labels[1] + 1) % 10,
                (test.labels[2] + 1) % 10, 10 /* not a class */};
    bs_attack_result r[4], alone[2];
    char err[BS_ERR_LEN];
    bs_attack_job jobs[7] = {
        {.x = image(0), .targets = &t[0], .k = 1, .ctl = &cancelled, .results = &r[0]},
        {.x = image(1), .targets = &t[1], .k = 1, .results = &r[1]},
        {.x = image(2), .targets = &t[2], .k = 1, .ctl = &late, .results = &r[2]},
        {.x = image(3), .targets = &t[3], .k = 1, .results = &r[3]},
        {.x = image(4), .targets = &t[1], .k = 1, .results = alone},
        {.x = image(5), .targets = &t[1], .k = 0, .results = alone},
        {.x = image(6), .targets = &t[1], .k = 100000, .results = alone},
    };
    feed_state f = {.jobs = jobs, .n = 7, .every = 1};
    bs_attack_feed feed = {feed_next, feed_done, &f};
    assert_int_equal(bs_attack_stream(model, &p, 8, NULL, &feed, err), 0);
    assert_int_equal(f.n_done, 7);
    assert_int_equal(jobs[0].rc, 0);
    assert_int_equal(r[0].status, BS_ATTACK_CANCELLED);
    assert_int_equal(r[0].runs, 1);
    assert_int_equal(jobs[2].rc, 0);
    assert_int_equal(r[2].status, BS_ATTACK_TIMEOUT);
    assert_int_equal(jobs[3].rc, -1);
    assert_non_null(strstr(jobs[3].err, "target 10"));
    for (int j = 5; j < 7; j++) {
        assert_int_equal(jobs[j].rc, -1);
        assert_non_null(strstr(jobs[j].err, "between 1 and 1024 targets"));
    }
    /* the refused and the late jobs were answered at admission, before the
     * others ended */
    int early = 0;
    for (int i = 0; i < 4; i++)
        early += f.done_order[i] == 2 || f.done_order[i] == 3 || f.done_order[i] >= 5;
    assert_int_equal(early, 4);
    assert_int_equal(bs_attack_run(model, image(1), &t[1], 1, &p, NULL, NULL, &alone[1], err),
                     0);
    assert_same_result(&r[1], &alone[1]);
    assert_int_equal(r[1].status, BS_ATTACK_DONE);
    for (int i = 0; i < 3; i++)
        bs_attack_result_free(&r[i]);
    bs_attack_result_free(&alone[0]);
    bs_attack_result_free(&alone[1]);
}

static void test_stream_refuses_other_methods(void **state)
{
    (void)state;
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_PGD);
    feed_state f = {.every = 1};
    bs_attack_feed feed = {feed_next, feed_done, &f};
    char err[BS_ERR_LEN];
    assert_int_equal(bs_attack_stream(model, &p, 8, NULL, &feed, err), -1);
    assert_int_equal(f.calls, 0);
    p = bs_attack_defaults(BS_ATTACK_LBFGS);
    p.lanes = BS_ATTACK_MAX_LANES + 1;
    assert_int_equal(bs_attack_stream(model, &p, 8, NULL, &feed, err), -1);
    assert_non_null(strstr(err, "lanes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes_same_or_better_distortion),
        cmocka_unit_test(test_warm_start_saves_evaluations),
        cmocka_unit_test(test_factr_default_saves_evaluations),
        cmocka_unit_test(test_stream_equals_alone),
        cmocka_unit_test(test_stream_job_larger_than_stream),
        cmocka_unit_test(test_stream_stop_and_refusal_are_per_job),
        cmocka_unit_test(test_stream_refuses_other_methods),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
