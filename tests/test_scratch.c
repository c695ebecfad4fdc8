/* test_scratch — the arena and kept workspace of core/scratch.h, and what
 * they are for: an attack with the caller's scratch gives the results of
 * one with its own, bit for bit, for every method; a thread's second
 * attack allocates nothing but its results' images (every allocation of
 * this binary is counted: it is linked with malloc, calloc, realloc and
 * aligned_alloc wrapped, see the Makefile); a model that comes back at the
 * address of a freed one is not served the old one's workspace once the
 * generation changes. Needs make data models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/attack.h"
#include "core/dataset.h"
#include "core/model_file.h"
#include "core/scratch.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation counting ------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

static atomic_long allocations;

void *__wrap_malloc(size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t count, size_t size)
{
    atomic_fetch_add(&allocations, 1);
    return __real_calloc(count, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_aligned_alloc(align, n);
}

/* ---- fixtures ------------------------------------------------------------- */

static bs_model *fc100, *fc10, *cnn;
static bs_dataset test;

static int setup(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    openblas_set_num_threads(1);
    fc100 = bs_model_load("models/fc100-100-10.safetensors", err);
    fc10 = bs_model_load("models/fc10-1e-4.safetensors", err);
    cnn = bs_model_load("models/cnn.safetensors", err);
    if (!fc100 || !fc10 || !cnn || bs_dataset_load("data", "mnist", "test", &test, err)) {
        fprintf(stderr, "test_scratch needs make data models: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bs_model_free(fc100);
    bs_model_free(fc10);
    bs_model_free(cnn);
    bs_dataset_free(&test);
    return 0;
}

static const float *image(int i)
{
    return test.images + (size_t)i * test.input_size;
}

/* Short settings of every method (the tests compare, they need not win). */
static bs_attack_params params_of(bs_attack_method method)
{
    bs_attack_params p = bs_attack_defaults(method);
    p.steps = 40;
    p.search_steps = 3;
    p.pgd_steps = 10;
    return p;
}

/* Attacks model m with scratch s (NULL: the call's own). */
static void attack(const bs_model *m, int index, const int *targets, int k,
                   const bs_attack_params *p, bs_scratch *s, bs_attack_result *res)
{
    char err[BS_ERR_LEN];
    if (bs_attack_run(m, image(index), targets, k, p, NULL, s, res, err))
        fail_msg("bs_attack_run: %s", err);
}

static void free_results(bs_attack_result *res, int k)
{
    for (int j = 0; j < k; j++)
        bs_attack_result_free(&res[j]);
}

/* Every figure and every image of a and b is the same. */
static void assert_same(const bs_attack_result *a, const bs_attack_result *b, int k, size_t n)
{
    for (int j = 0; j < k; j++) {
        assert_int_equal(a[j].success, b[j].success);
        assert_int_equal(a[j].adversarial, b[j].adversarial);
        assert_int_equal(a[j].iterations, b[j].iterations);
        assert_int_equal(a[j].evaluations, b[j].evaluations);
        assert_true(a[j].c == b[j].c);
        assert_true(a[j].norms.l2 == b[j].norms.l2);
        assert_memory_equal(a[j].adv, b[j].adv, n * sizeof(float));
        assert_memory_equal(a[j].adv_float, b[j].adv_float, n * sizeof(float));
        assert_memory_equal(a[j].adv8, b[j].adv8, n);
    }
}

/* ---- the arena ------------------------------------------------------------ */

/* Carves are zeroed and 64-byte aligned, marks nest, and once a call's
 * peak is known a call of that size makes no allocation. */
static void test_arena(void **state)
{
    (void)state;
    bs_scratch *s = bs_scratch_new();
    assert_non_null(s);
    assert_int_equal(bs_scratch_allocations(s), 0);
    for (int round = 0; round < 3; round++) {
        long before = bs_scratch_allocations(s);
        size_t mark = bs_scratch_mark(s);
        assert_int_equal(mark, 0);
        unsigned char *a = bs_scratch_alloc(s, 100);
        float *b = bs_scratch_array(s, 300000, float); /* past the first chunk */
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal((uintptr_t)a % 64, 0);
        assert_int_equal((uintptr_t)b % 64, 0);
        for (int i = 0; i < 100; i++)
            assert_int_equal(a[i], 0);
        for (int i = 0; i < 300000; i++)
            assert_true(b[i] == 0.0f);
        memset(a, 0xff, 100);
        b[299999] = 1.0f;
        size_t inner = bs_scratch_mark(s);
        double *c = bs_scratch_array(s, 1000, double);
        assert_non_null(c);
        c[999] = 2.0;
        bs_scratch_release(s, inner);
        assert_int_equal(bs_scratch_mark(s), inner);
        double *again = bs_scratch_array(s, 1000, double);
        assert_true(again[999] == 0.0); /* zeroed anew */
        assert_int_equal(a[99], 0xff);   /* the outer carves are untouched */
        assert_true(b[299999] == 1.0f);
        bs_scratch_release(s, mark);
        /* the first round grows; the others fit in the chunk it left */
        if (round > 0)
            assert_int_equal(bs_scratch_allocations(s), before);
    }
    bs_scratch_free(s);
    bs_scratch_free(NULL);
}

/* The workspace is kept for the same model, generation and batch (or a
 * smaller one), and made anew when any of them changes. */
static void test_workspace_kept(void **state)
{
    (void)state;
    bs_scratch *s = bs_scratch_new();
    bs_workspace *w1 = bs_scratch_workspace(s, fc100, 4);
    assert_non_null(w1);
    assert_int_equal(w1->batch, 4);
    long made = bs_scratch_allocations(s);
    assert_ptr_equal(bs_scratch_workspace(s, fc100, 4), w1);
    assert_ptr_equal(bs_scratch_workspace(s, fc100, 2), w1);
    bs_scratch_generation(s, 0); /* the same generation: kept */
    assert_ptr_equal(bs_scratch_workspace(s, fc100, 1), w1);
    assert_int_equal(bs_scratch_allocations(s), made);
    bs_workspace *w2 = bs_scratch_workspace(s, fc100, 9);
    assert_int_equal(w2->batch, 9);
    assert_int_equal(bs_scratch_allocations(s), made + 1);
    bs_workspace *w3 = bs_scratch_workspace(s, fc10, 1);
    assert_non_null(w3);
    assert_int_equal(bs_scratch_allocations(s), made + 2);
    bs_scratch_generation(s, 7);
    bs_workspace *w4 = bs_scratch_workspace(s, fc10, 1);
    assert_non_null(w4);
    assert_int_equal(bs_scratch_allocations(s), made + 3);
    w4->training = 1; /* handed out again in inference mode */
    assert_int_equal(bs_scratch_workspace(s, fc10, 1)->training, 0);
    bs_scratch_free(s);
}

/* ---- attacks with a scratch ------------------------------------------------ */

/* For every method, several targets and one: the caller's scratch (used
 * again and again, across models) gives what the call's own gives. */
static void test_results_with_scratch_identical(void **state)
{
    (void)state;
    bs_scratch *s = bs_scratch_new();
    int targets[3] = {1, 4, 8};
    size_t n = test.input_size;
    const bs_model *models[] = {fc100, cnn};
    for (int mi = 0; mi < 2; mi++)
        for (int method = 0; method < BS_ATTACK_N_METHODS; method++) {
            bs_attack_params p = params_of((bs_attack_method)method);
            for (int k = 1; k <= 3; k += 2) {
                bs_attack_result own[3], mine[3];
                attack(models[mi], 3, targets, k, &p, NULL, own);
                attack(models[mi], 3, targets, k, &p, s, mine);
                assert_same(own, mine, k, n);
                free_results(mine, k);
                attack(models[mi], 3, targets, k, &p, s, mine); /* the kept arena again */
                assert_same(own, mine, k, n);
                free_results(own, k);
                free_results(mine, k);
            }
        }
    /* the reference L-BFGS-B's workspace comes from the arena too */
    bs_attack_params ref = params_of(BS_ATTACK_LBFGS);
    ref.optimizer = 0;
    bs_attack_result own[3], mine[3];
    attack(fc100, 5, targets, 3, &ref, NULL, own);
    attack(fc100, 5, targets, 3, &ref, s, mine);
    assert_same(own, mine, 3, n);
    free_results(own, 3);
    free_results(mine, 3);
    bs_scratch_free(s);
}

/* A worker's second attack of the same size allocates only its results'
 * three images per target: buffers, optimiser state and workspace all come
 * from the scratch. */
static void test_second_attack_allocates_nothing(void **state)
{
    (void)state;
    int targets[4] = {0, 2, 5, 9};
    for (int method = 0; method < BS_ATTACK_N_METHODS; method++)
        for (int optimizer = 0; optimizer <= (method == BS_ATTACK_LBFGS); optimizer++) {
            bs_attack_params p = params_of((bs_attack_method)method);
            p.optimizer = optimizer;
            bs_scratch *s = bs_scratch_new();
            bs_attack_result res[4];
            for (int call = 0; call < 3; call++) {
                long before = atomic_load(&allocations);
                attack(fc100, 7, targets, 4, &p, s, res);
                long made = atomic_load(&allocations) - before;
                if (call > 0 && made != 3 * 4)
                    fail_msg("%s (optimizer %d), call %d: %ld allocations, want 12 (the "
                             "results' images)", bs_attack_method_name(method), optimizer,
                             call + 1, made);
                free_results(res, 4);
            }
            bs_scratch_free(s);
        }
}

/* Another model at the address of a freed one (a reload that reuses the
 * memory): with the generation changed, the workspace kept for the old
 * model is not used for the new one, whose results are then those of a
 * fresh call. Without the generation the old workspace (fc10's, far too
 * small for fc100-100-10) would be. */
static void test_generation_guards_reused_address(void **state)
{
    (void)state;
    bs_scratch *s = bs_scratch_new();
    bs_model *slot = malloc(sizeof *slot);
    int target = 3;
    bs_attack_params p = params_of(BS_ATTACK_LBFGS);
    bs_attack_result want, got;

    *slot = *fc10; /* "load" fc10 at slot */
    bs_scratch_generation(s, 1);
    attack(slot, 2, &target, 1, &p, s, &got);
    attack(fc10, 2, &target, 1, &p, NULL, &want);
    assert_same(&want, &got, 1, test.input_size);
    free_results(&want, 1);
    free_results(&got, 1);
    long made = bs_scratch_allocations(s);

    *slot = *fc100; /* fc10 "freed", fc100-100-10 "loaded" at the same address */
    bs_scratch_generation(s, 2);
    attack(slot, 2, &target, 1, &p, s, &got);
    assert_true(bs_scratch_allocations(s) > made); /* its own workspace */
    attack(fc100, 2, &target, 1, &p, NULL, &want);
    assert_same(&want, &got, 1, test.input_size);
    free_results(&want, 1);
    free_results(&got, 1);
    free(slot);
    bs_scratch_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_workspace_kept),
        cmocka_unit_test(test_results_with_scratch_identical),
        cmocka_unit_test(test_second_attack_allocates_nothing),
        cmocka_unit_test(test_generation_guards_reused_address),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
