/* test_partial — an evaluation's tables while it runs: the job document
 * of a running POST /v1/evaluations carries "partial", Table 1 and the
 * transfer matrix of the images measured so far, whose count only grows,
 * whose success counts stay within the result's and which, once every
 * image is measured, are the result's tables; the same on one worker (one
 * shard, measured a block at a time) and on two (shards on helpers). A
 * finished job, done or cancelled, has no partial (its result says it
 * all, and it reads the same after a restart). And core's reduction of
 * some images: with every image it is the whole reduction, bit for bit,
 * with some it is the reduction of those images alone. Needs `make data
 * models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/evaluate.h"
#include "tests/testhttp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const one_worker[] = {"--workers", "1", NULL};

/* POSTs an evaluation; its job's id into id. */
static void start(int port, const char *body, char *id, size_t size)
{
    reply r;
    request_on(port, "/v1/evaluations",
               &(req_opts){.headers = json_body_type, .body = body, .len = strlen(body)}, &r);
    assert_int_equal(r.status, 202);
    const char *s = json_string_value(json_object_get(r.json, "id"));
    assert_non_null(s);
    snprintf(id, size, "%s", s);
    reply_free(&r);
}

/* GET /v1/jobs/{id}: the document (the caller decrefs). */
static json_t *job_of(int port, const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    reply r;
    request_on(port, path, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = json_incref(r.json);
    reply_free(&r);
    return doc;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The images a job document's partial covers; 0 without one. */
static int partial_images(const json_t *doc)
{
    return (int)json_integer_value(json_object_get(json_object_get(doc, "partial"), "images"));
}

/* Watches the evaluation body (n images) to its end on port: partial
 * tables appear while it runs, their image count never falls, every
 * success count stays within it and within the result's, and a partial of
 * all n images is the result's tables; the done job has none left. */
static void watch_to_the_end(int port, const char *body, int n)
{
    char id[40];
    start(port, body, id, sizeof id);
    int last = 0, seen_running = 0;
    json_t *doc = NULL, *latest = NULL;
    for (double t0 = now_s(); now_s() - t0 < 240;) {
        json_decref(doc);
        doc = job_of(port, id);
        const char *state = json_string_value(json_object_get(doc, "state"));
        if (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled"))
            break;
        int images = partial_images(doc);
        assert_true(images >= last || images == 0);
        assert_true(images <= n);
        if (images > 0) {
            last = images;
            json_decref(latest);
            latest = json_incref(json_object_get(doc, "partial"));
            const char *name;
            json_t *row;
            json_object_foreach(json_object_get(latest, "table1"), name, row)
                assert_true(json_integer_value(json_object_get(row, "successes")) <= images);
            seen_running |= images < n;
        }
        pause_ms(20);
    }
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "done");
    assert_null(json_object_get(doc, "partial"));
    assert_true(seen_running);
    const json_t *result = json_object_get(doc, "result");
    assert_true(json_equal(json_object_get(latest, "models"), json_object_get(result, "models")));
    const char *name;
    json_t *row;
    json_object_foreach(json_object_get(latest, "table1"), name, row)
        assert_true(json_integer_value(json_object_get(row, "successes")) <=
                    json_integer_value(json_object_get(
                        json_object_get(json_object_get(result, "table1"), name), "successes")));
    if (last == n) {
        assert_true(json_equal(json_object_get(latest, "table1"), json_object_get(result, "table1")));
        assert_true(json_equal(json_object_get(latest, "table2"), json_object_get(result, "table2")));
    }
    json_decref(latest);
    json_decref(doc);
}

/* Small attacks, for ThreadSanitizer's sake. */
#define EVAL_BODY "{\"models\":[\"fc10-1e-4\",\"fc100-100-10\",\"cnn\"],\"n\":12,\"seed\":5," \
                  "\"params\":{\"max_iterations\":30,\"search_steps\":3}}"

/* Two workers: the job's worker and a helper take shards. */
static void test_partial_tables_grow_to_the_result_in_shards(void **state)
{
    (void)state;
    watch_to_the_end(daemon_of_group.port, EVAL_BODY, 12);
}

/* One worker: one shard, measured a block of images at a time. */
static void test_partial_tables_grow_to_the_result_on_one_worker(void **state)
{
    (void)state;
    daemon_proc d;
    assert_int_equal(daemon_start(&d, one_worker), 0);
    watch_to_the_end(d.port, EVAL_BODY, 12);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

static void test_cancelled_evaluation_drops_its_partial_tables(void **state)
{
    (void)state;
    int port = daemon_of_group.port;
    char id[40], path[96];
    start(port, "{\"models\":[\"cnn\",\"fc100-100-10\"],\"n\":400}", id, sizeof id);
    json_t *doc = NULL;
    for (double t0 = now_s(); now_s() - t0 < 120 && partial_images(doc) == 0;) {
        json_decref(doc);
        doc = job_of(port, id);
        pause_ms(20);
    }
    int before = partial_images(doc);
    assert_true(before > 0 && before < 400);
    json_decref(doc);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    reply r;
    request_on(port, path, &(req_opts){.method = "DELETE"}, &r);
    assert_true(r.status == 200 || r.status == 202);
    reply_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=60", id);
    request_on(port, path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "cancelled");
    assert_null(json_object_get(r.json, "partial"));
    reply_free(&r);
}

/* Records of n images of 2 models and 1 noise row, drawn from seed. */
static bs_eval_images *random_records(int n, unsigned seed)
{
    bs_eval_images *im = bs_eval_images_new(2, 1, n);
    assert_non_null(im);
    srand(seed);
    for (int k = 0; k < n * 2; k++) {
        im->clean_wrong[k] = rand() % 5 == 0;
        im->ok[k] = rand() % 4 != 0;
        im->distortion[k] = im->ok[k] ? rand() / (double)RAND_MAX : 0.0;
        im->ratio[k] = rand() / (double)RAND_MAX;
    }
    for (int k = 0; k < n * 4; k++) {
        im->adv_wrong[k] = rand() % 2;
        im->magnified_wrong[k] = rand() % 2;
    }
    for (int k = 0; k < n; k++)
        im->noise_distortion[k] = rand() / (double)RAND_MAX;
    for (int k = 0; k < n * 2; k++)
        im->noise_wrong[k] = rand() % 3 == 0;
    return im;
}

static void test_reduce_of_measured_images(void **state)
{
    (void)state;
    enum { N = 9 };
    bs_eval_config cfg = bs_eval_defaults();
    cfg.n = N;
    cfg.n_noise = 1;
    bs_eval_images *im = random_records(N, 7);
    unsigned char all[N], some[N] = {0, 1, 1, 0, 0, 1, 0, 1, 1};
    memset(all, 1, sizeof all);
    bs_eval_result *whole = calloc(1, sizeof *whole), *part = calloc(1, sizeof *part);
    assert_non_null(whole);
    assert_non_null(part);
    bs_eval_reduce(im, &cfg, BS_ATTACK_DONE, whole);
    bs_eval_reduce_measured(im, all, &cfg, BS_ATTACK_DONE, part);
    assert_memory_equal(whole, part, sizeof *whole);

    /* the measured images alone, copied into records of their own */
    int m = 0;
    for (int k = 0; k < N; k++)
        m += some[k];
    bs_eval_images *sub = bs_eval_images_new(2, 1, m);
    assert_non_null(sub);
    for (int k = 0, r = 0; k < N; k++) {
        if (!some[k])
            continue;
        memcpy(sub->clean_wrong + r * 2, im->clean_wrong + k * 2, 2);
        memcpy(sub->ok + r * 2, im->ok + k * 2, 2);
        memcpy(sub->distortion + r * 2, im->distortion + k * 2, 2 * sizeof(double));
        memcpy(sub->ratio + r * 2, im->ratio + k * 2, 2 * sizeof(double));
        memcpy(sub->adv_wrong + r * 4, im->adv_wrong + k * 4, 4);
        memcpy(sub->magnified_wrong + r * 4, im->magnified_wrong + k * 4, 4);
        sub->noise_distortion[r] = im->noise_distortion[k];
        memcpy(sub->noise_wrong + r * 2, im->noise_wrong + k * 2, 2);
        r++;
    }
    bs_eval_reduce(sub, &cfg, BS_ATTACK_DONE, whole);
    bs_eval_reduce_measured(im, some, &cfg, BS_ATTACK_DONE, part);
    assert_int_equal(part->n, m);
    assert_memory_equal(whole, part, sizeof *whole);

    /* none measured: no images, no division by zero */
    memset(some, 0, sizeof some);
    bs_eval_reduce_measured(im, some, &cfg, BS_ATTACK_DONE, part);
    assert_int_equal(part->n, 0);
    assert_int_equal(part->successes[0], 0);
    free(whole);
    free(part);
    bs_eval_images_free(sub);
    bs_eval_images_free(im);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_of_measured_images),
        cmocka_unit_test(test_partial_tables_grow_to_the_result_in_shards),
        cmocka_unit_test(test_partial_tables_grow_to_the_result_on_one_worker),
        cmocka_unit_test(test_cancelled_evaluation_drops_its_partial_tables),
    };
    return cmocka_run_group_tests(tests, daemon_group_setup, daemon_group_teardown);
}
