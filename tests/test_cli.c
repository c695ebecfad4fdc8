/* test_cli — the `blindspot` command line end to end: the trained zoo meets
 * the error bounds of the paper's models, `predict` reproduces each file's
 * recorded test error, `info --json` and `predict --json` carry their
 * fields, training is byte-for-byte deterministic, and bad usage is
 * refused with a message. Needs `make data models` (make test does it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/base64.h"
#include "api/image.h"
#include "core/attack.h"
#include "core/dataset.h"
#include "core/model.h"
#include "core/model_file.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *zoo[] = {
    "fc10-1e-4", "fc10-1e-2", "fc10-1", "fc100-100-10", "fc200-200-10", "ae400-10",
    "fc100-100-10-p1", "fc123-456-10-p1", "fc100-100-10-p2", "cnn",
};
#define ZOO_N (sizeof zoo / sizeof zoo[0])

/* Runs a blindspot command line (arguments after the binary) and parses
 * its stdout as JSON; fails the test when it exits non-zero. */
static json_t *run_json(const char *args)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s", tu_bin("blindspot"), args);
    int rc = tu_run(cmd, &out);
    if (rc != 0)
        fail_msg("'%s' exited %d", cmd, rc);
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    if (!j)
        fail_msg("'%s' printed no JSON: %s", cmd, e.text);
    free(out);
    return j;
}

static double predict_error(const char *name, const char *split, double *recorded)
{
    char args[512];
    snprintf(args, sizeof args, "predict --model models/%s.safetensors --split %s --json",
             name, split);
    json_t *j = run_json(args);
    json_t *conf = json_object_get(j, "confusion");
    assert_true(json_is_array(conf));
    assert_int_equal(json_array_size(conf), 10);
    long total = 0, errors = 0;
    for (size_t y = 0; y < 10; y++)
        for (size_t p = 0; p < 10; p++) {
            long v = (long)json_integer_value(json_array_get(json_array_get(conf, y), p));
            total += v;
            errors += y != p ? v : 0;
        }
    assert_int_equal(total, json_integer_value(json_object_get(j, "images")));
    assert_int_equal(errors, json_integer_value(json_object_get(j, "errors")));
    double err = json_real_value(json_object_get(j, "error_rate"));
    assert_true(err >= 0.0 && err <= 1.0);
    if (recorded)
        *recorded = json_real_value(json_object_get(j, "recorded_test_error"));
    json_decref(j);
    return err;
}

static void test_predict_reproduces_recorded_test_error(void **state)
{
    (void)state;
    for (size_t i = 0; i < ZOO_N; i++) {
        double recorded = -1.0;
        double err = predict_error(zoo[i], "test", &recorded);
        if (recorded < 0.0 || err - recorded > 1e-6 || recorded - err > 1e-6)
            fail_msg("%s: predict says %.6f, the file records %.6f", zoo[i], err, recorded);
    }
}

static void test_zoo_meets_paper_bounds(void **state)
{
    (void)state;
    double fc100 = predict_error("fc100-100-10", "test", NULL);
    double fc200 = predict_error("fc200-200-10", "test", NULL);
    double cnn = predict_error("cnn", "test", NULL);
    double fc10_small = predict_error("fc10-1e-4", "test", NULL);
    double fc10_big = predict_error("fc10-1", "test", NULL);
    assert_true(fc100 <= 0.05);
    assert_true(fc200 <= 0.05);
    assert_true(cnn <= 0.025);
    assert_true(fc10_small <= 0.10);
    /* weight decay 1 must clearly hurt softmax regression, as in Table 1 */
    assert_true(fc10_big >= fc10_small + 0.05);
    /* the nets fit their training set almost perfectly (paper: 0%) */
    assert_true(predict_error("fc100-100-10", "train", NULL) <= 0.01);
}

static void test_info_json_fields(void **state)
{
    (void)state;
    json_t *j = run_json("info models/cnn.safetensors --json");
    /* the daemon's document: name, the spec as arch, computed layers with
     * their stored hyper-parameters */
    assert_string_equal(json_string_value(json_object_get(j, "name")), "cnn");
    assert_string_equal(json_string_value(json_object_get(j, "file")), "models/cnn.safetensors");
    assert_string_equal(json_string_value(json_object_get(j, "arch")), "cnn:small");
    assert_string_equal(json_string_value(json_object_get(j, "dataset")), "mnist");
    assert_true(json_is_number(json_object_get(j, "test_error")));
    json_t *conv = json_array_get(json_object_get(j, "layers"), 0);
    assert_string_equal(json_string_value(json_object_get(conv, "type")), "conv2d");
    assert_int_equal(json_integer_value(json_object_get(conv, "kernel")), 5);
    assert_int_equal(json_integer_value(json_object_get(conv, "out_channels")), 16);
    assert_int_equal(json_integer_value(json_object_get(conv, "parameters")), 16 * 25 + 16);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(conv, "output_shape"), 1)), 24);
    assert_int_equal(json_integer_value(json_object_get(j, "parameters")), 80202);
    assert_int_equal(json_integer_value(json_object_get(j, "classes")), 10);
    json_t *shape = json_object_get(j, "input_shape");
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), 28);
    json_t *layers = json_object_get(j, "layers");
    assert_true(json_array_size(layers) >= 8);
    json_t *meta = json_object_get(j, "metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "blindspot.dataset")), "mnist");
    assert_non_null(json_object_get(meta, "blindspot.train_error"));
    assert_non_null(json_object_get(meta, "blindspot.test_error"));
    const char *cmd = json_string_value(json_object_get(meta, "blindspot.command"));
    assert_non_null(cmd);
    assert_non_null(strstr(cmd, "blindspot train --arch cnn:small"));
    json_decref(j);
}

static uint8_t *train_small(const char *dir, const char *seed, size_t *len)
{
    char args[1024], path[512];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    snprintf(args, sizeof args,
             "train --arch fc:30 --dataset mnist:P2 --epochs 2 --seed %s -o %s --json 2>/dev/null",
             seed, path);
    json_decref(run_json(args));
    uint8_t *bytes = tu_read_file(path, len);
    assert_non_null(bytes);
    return bytes;
}

static void test_training_is_deterministic(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    assert_non_null(dir);
    size_t la, lb, lc;
    uint8_t *a = train_small(dir, "7", &la);
    uint8_t *b = train_small(dir, "7", &lb);
    uint8_t *c = train_small(dir, "8", &lc);
    /* same command, same build: the same file, byte for byte */
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    /* another seed gives other parameters */
    assert_true(lc != la || memcmp(a, c, la) != 0);
    free(a);
    free(b);
    free(c);
    tu_rmtree(dir);
    free(dir);
}

static void test_attack_json_image_fools_the_model(void **state)
{
    (void)state;
    json_t *j = run_json("attack --model models/fc100-100-10.safetensors --dataset mnist "
                         "--index 4 --target 1,6 --json");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "fc100-100-10");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "lbfgs");
    json_t *results = json_object_get(j, "results");
    assert_int_equal(json_array_size(results), 2);
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load("models/fc100-100-10.safetensors", err);
    assert_non_null(m);
    bs_workspace *ws = bs_workspace_new(m, 1);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(results, i);
        assert_true(json_is_true(json_object_get(r, "success")));
        int target = (int)json_integer_value(json_object_get(r, "target"));
        /* the PNG in the answer, decoded, is classified as the target */
        const char *b64 = json_string_value(json_object_get(json_object_get(r, "image"), "data"));
        size_t len;
        uint8_t *png = bs_base64_decode(b64, strlen(b64), &len, err);
        assert_non_null(png);
        bs_image img;
        assert_int_equal(bs_image_decode(png, len, 1 << 20, &img, err), 0);
        assert_int_equal(img.width, 28);
        assert_int_equal(img.channels, 1);
        assert_int_equal(bs_argmax(bs_model_forward(m, ws, img.pixels, 1), 10), target);
        /* every model of models/ reports on it, by name as the daemon
         * lists its resident models, the attacked one among them */
        json_t *preds = json_object_get(r, "predictions");
        assert_true(json_array_size(preds) >= 9);
        int source = 0;
        for (size_t p = 0; p < json_array_size(preds); p++) {
            const char *who = json_string_value(json_object_get(json_array_get(preds, p), "model"));
            source += !strcmp(who, "fc100-100-10");
            if (p > 0)
                assert_true(strcmp(json_string_value(json_object_get(
                                       json_array_get(preds, p - 1), "model")), who) < 0);
        }
        assert_int_equal(source, 1);
        json_t *norms = json_object_get(r, "norms");
        assert_true(json_real_value(json_object_get(norms, "l2")) > 0.0);
        bs_image_free(&img);
        free(png);
    }
    /* the input the model saw, as the daemon adds it: sample 4 itself */
    json_t *input = json_object_get(j, "input");
    assert_string_equal(json_string_value(json_object_get(input, "format")), "png");
    assert_true(json_is_false(json_object_get(input, "inverted")));
    const char *b64 = json_string_value(json_object_get(input, "data"));
    assert_non_null(b64);
    size_t len;
    uint8_t *png = bs_base64_decode(b64, strlen(b64), &len, err);
    bs_image img;
    bs_dataset d;
    assert_int_equal(bs_image_decode(png, len, 1 << 20, &img, err), 0);
    assert_int_equal(bs_dataset_load("data", "mnist", "test", &d, err), 0);
    for (size_t k = 0; k < 784; k++)
        assert_true(fabsf(img.pixels[k] - d.images[4 * 784 + k]) <= 0.5f / 255 + 1e-6f);
    bs_dataset_free(&d);
    bs_image_free(&img);
    free(png);
    bs_workspace_free(ws);
    bs_model_free(m);
    json_decref(j);
}

/* Image 17 is already a 3 to FC100-100-10: the text says so, JSON has the
 * status already_target with no success and zero norms, no reported model
 * counts as fooled, and the exit status is 1 (no target was reached by a
 * perturbation). */
static void test_attack_already_target_says_so(void **state)
{
    (void)state;
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s attack --model models/fc100-100-10.safetensors --dataset mnist "
             "--split test --index 17 --target 3", tu_bin("blindspot"));
    assert_int_equal(tu_run(cmd, &out), 1);
    /* the model by its name, as the daemon names it, not by its path */
    assert_true(!strncmp(out, "fc100-100-10: label 3, method lbfgs\n", 35));
    assert_non_null(strstr(out, "target 3: already classified as 3; nothing to do\n"));
    assert_null(strstr(out, "success"));
    assert_null(strstr(out, "fooled"));
    free(out);

    snprintf(cmd, sizeof cmd, "%s attack --model models/fc100-100-10.safetensors --dataset mnist "
             "--index 17 --target 3,5 --json", tu_bin("blindspot"));
    assert_int_equal(tu_run(cmd, &out), 1);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    json_t *already = json_array_get(json_object_get(j, "results"), 0);
    json_t *moved = json_array_get(json_object_get(j, "results"), 1);
    assert_string_equal(json_string_value(json_object_get(already, "status")), "already_target");
    assert_true(json_is_false(json_object_get(already, "success")));
    assert_true(json_number_value(json_object_get(json_object_get(already, "norms"), "l2")) == 0.0);
    assert_string_equal(json_string_value(json_object_get(moved, "status")), "done");
    assert_true(json_is_true(json_object_get(moved, "success")));
    size_t i;
    json_t *pred;
    json_array_foreach(json_object_get(already, "predictions"), i, pred)
        assert_true(json_is_false(json_object_get(pred, "fooled")));
    /* on the image made for 5, the source model moved from 3: fooled */
    json_t *source = NULL;
    json_array_foreach(json_object_get(moved, "predictions"), i, pred)
        if (!strcmp(json_string_value(json_object_get(pred, "model")), "fc100-100-10"))
            source = pred;
    assert_non_null(source);
    assert_int_equal(json_integer_value(json_object_get(source, "original_label")), 3);
    assert_true(json_is_true(json_object_get(source, "fooled")));
    json_array_foreach(json_object_get(moved, "predictions"), i, pred)
        assert_int_equal(json_is_true(json_object_get(pred, "fooled")),
                         json_integer_value(json_object_get(pred, "label")) == 5 &&
                             json_integer_value(json_object_get(pred, "original_label")) != 5);
    json_decref(j);
}

static void test_eval_reports_rates(void **state)
{
    (void)state;
    json_t *j = run_json("eval --model models/fc100-100-10.safetensors --n 5 --json");
    assert_int_equal(json_integer_value(json_object_get(j, "images")), 5);
    assert_true(json_real_value(json_object_get(j, "success_rate")) >= 0.8);
    assert_true(json_real_value(json_object_get(j, "mean_distortion")) > 0.0);
    assert_true(json_real_value(json_object_get(j, "attacks_per_second")) > 0.0);
    json_decref(j);
}

/* The report with its first line (command, seed, date, build) cut off. */
static char *report_tables(const char *dir)
{
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/reproduction.md", dir);
    uint8_t *text = tu_read_file(path, &len);
    assert_non_null(text);
    char *s = malloc(len + 1);
    memcpy(s, text, len);
    s[len] = '\0';
    free(text);
    char *body = strstr(s, "## Table 1");
    assert_non_null(body);
    memmove(s, body, strlen(body) + 1);
    return s;
}

static void test_reproduce_is_deterministic(void **state)
{
    (void)state;
    char *a = tu_tmpdir(), *b = tu_tmpdir(), args[512];
    assert_non_null(a);
    assert_non_null(b);
    snprintf(args, sizeof args, "%s reproduce --n 3 --seed 5 --threads 2 --out %s 2>/dev/null",
             tu_bin("blindspot"), a);
    assert_int_equal(tu_run(args, NULL), 0);
    snprintf(args, sizeof args, "%s reproduce --n 3 --seed 5 --threads 1 --out %s 2>/dev/null",
             tu_bin("blindspot"), b);
    assert_int_equal(tu_run(args, NULL), 0);
    char *ta = report_tables(a), *tb = report_tables(b);
    /* every table present, and the same numbers whatever the thread count */
    const char *sections[] = {"## Table 2", "Gaussian noise, stddev 0.3", "## Table 3",
                              "magnified", "## §3", "## §4.3", "## §4.1",
                              "figures/adversarial.png"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        assert_non_null(strstr(ta, sections[i]));
    assert_string_equal(ta, tb);
    char png[512];
    snprintf(png, sizeof png, "%s/figures/units-cnn.png", a);
    size_t len;
    uint8_t *img = tu_read_file(png, &len);
    assert_non_null(img);
    free(img);
    free(ta);
    free(tb);
    tu_rmtree(a);
    tu_rmtree(b);
    free(a);
    free(b);
}

/* The result of the attack's first target without its timing. */
static json_t *attack_result(const char *args)
{
    json_t *j = run_json(args);
    json_t *r = json_incref(json_array_get(json_object_get(j, "results"), 0));
    assert_non_null(r);
    json_object_del(r, "seconds");
    json_decref(j);
    return r;
}

/* --threads 2 splits the CNN's convolutions between two threads and
 * answers what one thread does: the same image, norms and evaluations. */
static void test_attack_threads_change_nothing(void **state)
{
    (void)state;
    const char *args = "attack --model models/cnn.safetensors --dataset mnist --index 18 "
                       "--target 3 --models none --json";
    char threaded[512];
    snprintf(threaded, sizeof threaded, "%s --threads 2", args);
    json_t *one = attack_result(args), *two = attack_result(threaded);
    assert_true(json_is_true(json_object_get(one, "success")));
    if (!json_equal(one, two))
        fail_msg("--threads 2 changed the answer");
    json_decref(one);
    json_decref(two);
}

static void expect_failure(const char *args, int want_rc, const char *want_msg)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", tu_bin("blindspot"), args);
    int rc = tu_run(cmd, &out);
    if (rc != want_rc || !out || !strstr(out, want_msg))
        fail_msg("'%s' exited %d (want %d) saying: %s", args, rc, want_rc, out ? out : "");
    free(out);
}

static void test_bad_usage_is_refused(void **state)
{
    (void)state;
    expect_failure("train --arch xyz:1 -o /tmp/never.safetensors", 1, "unknown architecture");
    expect_failure("train --arch fc", 2, "--arch and -o are required");
    expect_failure("train --arch fc --epochs 0 -o /tmp/never.safetensors", 2, "--epochs");
    expect_failure("train --arch fc --dataset nosuch -o /tmp/never.safetensors", 1, "make data");
    expect_failure("info /nonexistent.safetensors", 1, "nonexistent");
    expect_failure("predict --model models/cnn.safetensors --split dev", 2, "--split");
    expect_failure("frobnicate", 2, "unknown command");
    expect_failure("attack --model models/cnn.safetensors --target 3", 2, "--image");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 12",
                   1, "not a class");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--param history=0", 1, "history");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--param bogus=1", 1, "unknown parameter");
    expect_failure("attack --model models/cnn.safetensors --image /nonexistent.png --target 1",
                   1, "cannot open");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--threads 0", 2, "--threads");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--threads 2 --server http://localhost:1", 2, "local attack");
}

/* Every command that takes --method lists the methods of core/attack.h's
 * table in its help, eval, evaluate and train as the table's own list (in
 * its order, so made from it); `attack --help` also each method's summary
 * and its parameters with their defaults. */
static void test_help_lists_every_method(void **state)
{
    (void)state;
    const char *cmds[] = {"attack", "eval", "evaluate", "train"};
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        char cmd[256], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s %s --help", tu_bin("blindspot"), cmds[c]);
        assert_int_equal(tu_run(cmd, &out), 0);
        for (int i = 0; i < BS_ATTACK_N_METHODS; i++)
            if (!strstr(out, bs_attack_methods[i].name))
                fail_msg("blindspot %s --help does not list the method %s", cmds[c],
                         bs_attack_methods[i].name);
        char list[128];
        bs_attack_method_list(", ", list, sizeof list);
        if (strcmp(cmds[c], "attack") && !strstr(out, list))
            fail_msg("blindspot %s --help does not list the methods as the table does (%s)",
                     cmds[c], list);
        if (!strcmp(cmds[c], "attack")) {
            /* "lbfgs: search_steps=8 ...", "fgsm: eps_max=1 ..." */
            for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
                const bs_attack_method_info *m = &bs_attack_methods[i];
                char line[128], first[32], value[32];
                snprintf(first, sizeof first, "%.*s", (int)strcspn(m->params, " "), m->params);
                snprintf(line, sizeof line, "%s: %s=%s", m->name, first,
                         bs_attack_param_format(&m->defaults, bs_attack_param_find(first),
                                                value, sizeof value));
                if (!strstr(out, line))
                    fail_msg("blindspot attack --help lacks '%s'", line);
            }
        }
        free(out);
    }
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--method fgsm --param history=3", 1, "params.history does not apply to fgsm");
    expect_failure("attack --model models/cnn.safetensors --dataset mnist --index 0 --target 1 "
                   "--method magic", 1, "unknown method \"magic\" (lbfgs, adam-l1, fgsm, pgd, cw-l2)");
}

static void test_help_explains_every_command(void **state)
{
    (void)state;
    const char *cmds[] = {"train", "info", "predict", "import-mnist", "attack", "eval",
                          "reproduce", "lipschitz", "units", "evaluate"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char cmd[256], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s %s --help", tu_bin("blindspot"), cmds[i]);
        assert_int_equal(tu_run(cmd, &out), 0);
        assert_non_null(strstr(out, "usage: blindspot"));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_reproduces_recorded_test_error),
        cmocka_unit_test(test_zoo_meets_paper_bounds),
        cmocka_unit_test(test_info_json_fields),
        cmocka_unit_test(test_training_is_deterministic),
        cmocka_unit_test(test_attack_json_image_fools_the_model),
        cmocka_unit_test(test_attack_already_target_says_so),
        cmocka_unit_test(test_attack_threads_change_nothing),
        cmocka_unit_test(test_eval_reports_rates),
        cmocka_unit_test(test_reproduce_is_deterministic),
        cmocka_unit_test(test_bad_usage_is_refused),
        cmocka_unit_test(test_help_explains_every_command),
        cmocka_unit_test(test_help_lists_every_method),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
