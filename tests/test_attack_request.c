/* test_attack_request — the attack request's parser (api/attack_request.h)
 * without a daemon: every field's bad forms answer their api/errors.h code
 * and a message naming the field, the good forms fill the request (image
 * as a dataset sample, raw floats in the model's shape or another, base64
 * PNG, an uploaded file; inversion; "all" resolved against the label), and
 * multipart form fields turn into the same JSON request. The caller's side
 * is a fake: two models that exist only as shapes, and a dataset whose
 * sample i is the constant image i/10. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/attack_request.h"
#include "api/base64.h"
#include "api/image.h"
#include "tests/fake_caller.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses text (a JSON document) with an optional file; the return code. */
static int parse_text(const char *text, const uint8_t *file, size_t len, bs_attack_request *r,
                      bs_api_error *e)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_DECODE_ANY, &je);
    if (!root)
        fail_msg("test JSON does not parse: %s: %s", text, je.text);
    int rc = bs_attack_request_parse(root, file, len, &fake_env, r, e);
    json_decref(root);
    return rc;
}

/* A request that must be refused with code and a message containing words. */
static void refused(const char *text, bs_error_code code, const char *words)
{
    bs_attack_request r;
    bs_api_error e = {0};
    if (parse_text(text, NULL, 0, &r, &e) == 0)
        fail_msg("accepted: %s", text);
    if (e.code != code || !strstr(e.message, words))
        fail_msg("%s: got %s \"%s\", want %s with \"%s\"", text, bs_error_get(e.code)->code,
                 e.message, bs_error_get(code)->code, words);
    /* a refused request owns nothing */
    assert_null(r.x);
    assert_null(r.target);
    assert_null(r.report);
}

#define BASE "\"model\":\"digits\",\"target\":3,\"image\":{\"dataset\":\"mnist\",\"index\":1}"

static void test_bad_fields_refused(void **state)
{
    (void)state;
    refused("[1]", BS_E_INVALID_JSON, "JSON object");
    refused("{" BASE ",\"colour\":1}", BS_E_UNKNOWN_FIELD, "'colour'");
    refused("{\"target\":3}", BS_E_MISSING_FIELD, "model is required");
    refused("{\"model\":7,\"target\":3}", BS_E_INVALID_REQUEST, "model must be a model name");
    refused("{\"model\":\"nope\",\"target\":3}", BS_E_MODEL_NOT_FOUND, "No model named 'nope' here.");
    /* method and params */
    refused("{" BASE ",\"method\":5}", BS_E_INVALID_REQUEST, "method must be a string");
    refused("{" BASE ",\"method\":\"magic\"}", BS_E_INVALID_PARAMS,
            "unknown method \"magic\" (lbfgs, adam-l1, fgsm, pgd, cw-l2)");
    refused("{" BASE ",\"params\":[1]}", BS_E_INVALID_REQUEST, "params must be an object");
    refused("{" BASE ",\"params\":{\"history\":\"many\"}}", BS_E_INVALID_PARAMS,
            "params.history must be a whole number");
    refused("{" BASE ",\"params\":{\"history\":0}}", BS_E_INVALID_PARAMS, "history must be in");
    refused("{" BASE ",\"params\":{\"bogus\":1}}", BS_E_INVALID_PARAMS,
            "unknown parameter params.bogus");
    refused("{" BASE ",\"method\":\"fgsm\",\"params\":{\"history\":3}}", BS_E_INVALID_PARAMS,
            "params.history does not apply to fgsm");
    refused("{" BASE ",\"params\":{\"norm\":\"l3\"}}", BS_E_INVALID_PARAMS,
            "params.norm must be \"l2\" or \"l1\"");
    refused("{" BASE ",\"params\":{\"quantize\":1}}", BS_E_INVALID_PARAMS, "true or false");
    refused("{" BASE ",\"method\":\"adam-l1\",\"params\":{\"seed\":-1}}", BS_E_INVALID_PARAMS,
            "params.seed must be a non-negative");
    refused("{" BASE ",\"params\":{\"initial_c\":-2}}", BS_E_INVALID_PARAMS,
            "initial_c must be positive");
    /* target */
    refused("{\"model\":\"digits\"}", BS_E_MISSING_FIELD, "target is required");
    refused("{\"model\":\"digits\",\"target\":\"three\"}", BS_E_INVALID_REQUEST,
            "target must be a label");
    refused("{\"model\":\"digits\",\"target\":2.5}", BS_E_INVALID_REQUEST, "target must be");
    refused("{\"model\":\"digits\",\"target\":10}", BS_E_INVALID_TARGET,
            "target 10 is not a class of this model (0..9)");
    refused("{\"model\":\"digits\",\"target\":-1}", BS_E_INVALID_TARGET, "not a class");
    refused("{\"model\":\"digits\",\"target\":[]}", BS_E_INVALID_TARGET, "1 to 64 labels");
    refused("{\"model\":\"digits\",\"target\":[1,1]}", BS_E_INVALID_TARGET, "listed twice");
    refused("{\"model\":\"digits\",\"target\":[1,\"a\"]}", BS_E_INVALID_TARGET, "target[1]");
    /* timeout, image_format, invert */
    refused("{" BASE ",\"timeout\":-1}", BS_E_INVALID_TIMEOUT, "positive number of seconds");
    refused("{" BASE ",\"timeout\":\"soon\"}", BS_E_INVALID_TIMEOUT, "positive number");
    refused("{" BASE ",\"image_format\":\"gif\"}", BS_E_INVALID_REQUEST, "png, jpeg or floats");
    refused("{" BASE ",\"image_format\":5}", BS_E_INVALID_REQUEST, "image_format");
    refused("{" BASE ",\"invert\":\"maybe\"}", BS_E_INVALID_REQUEST, "invert is \"auto\"");
    refused("{" BASE ",\"invert\":true}", BS_E_INVALID_REQUEST, "invert is");
    /* report */
    refused("{" BASE ",\"report\":\"digits\"}", BS_E_INVALID_REQUEST, "list of model names");
    refused("{" BASE ",\"report\":[5]}", BS_E_INVALID_REQUEST, "report[] must be a model name");
    refused("{" BASE ",\"report\":[\"nope\"]}", BS_E_MODEL_NOT_FOUND, "'nope'");
    refused("{" BASE ",\"report\":[\"colour\"]}", BS_E_SHAPE_MISMATCH,
            "report model colour takes another input than digits");
    refused("{" BASE ",\"report\":[\"digits\",\"digits\"]}", BS_E_DUPLICATE_MODEL,
            "lists digits twice");
}

#define HEAD "{\"model\":\"digits\",\"target\":3,\"image\":"

static void test_bad_images_refused(void **state)
{
    (void)state;
    refused("{\"model\":\"digits\",\"target\":3}", BS_E_MISSING_IMAGE, "image is required");
    refused(HEAD "5}", BS_E_MISSING_IMAGE, "image is required");
    refused(HEAD "{\"what\":1}}", BS_E_INVALID_IMAGE, "png, jpeg, data and shape");
    refused(HEAD "{\"png\":5}}", BS_E_INVALID_IMAGE, "base64 text");
    refused(HEAD "{\"png\":\"***\"}}", BS_E_INVALID_BASE64, "not valid base64");
    refused(HEAD "{\"png\":\"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB\"}}", BS_E_INVALID_IMAGE,
            "cannot be used");
    refused(HEAD "{\"jpeg\":\"/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcG\"}}", BS_E_INVALID_IMAGE,
            "cannot be used");
    refused(HEAD "{\"data\":[0.5],\"shape\":[1,28,28]}}", BS_E_SHAPE_MISMATCH,
            "holds 1 numbers; its shape [1,28,28] says 784");
    refused(HEAD "{\"data\":[0.5,2],\"shape\":[1,1,2]}}", BS_E_VALUE_OUT_OF_RANGE,
            "image.data[1] must be a number in [0,1]");
    refused(HEAD "{\"data\":[0.5,\"x\"],\"shape\":[1,1,2]}}", BS_E_VALUE_OUT_OF_RANGE,
            "image.data[1]");
    refused(HEAD "{\"data\":[0.5,0.5],\"shape\":[2,1,1]}}", BS_E_SHAPE_MISMATCH,
            "2 channels; 1 or 3 work");
    refused(HEAD "{\"data\":[0.5],\"shape\":[1,1]}}", BS_E_INVALID_IMAGE, "[C,H,W]");
    refused(HEAD "{\"data\":[0.5],\"shape\":[1,0,1]}}", BS_E_INVALID_IMAGE,
            "3 integers from 1 to 65536");
    refused(HEAD "{\"data\":5,\"shape\":[1,1,1]}}", BS_E_INVALID_IMAGE, "array of numbers");
    refused(HEAD "{\"dataset\":\"cifar\",\"index\":0}}", BS_E_DATASET_NOT_FOUND,
            "No split cifar/test here.");
    refused(HEAD "{\"dataset\":\"mnist\",\"split\":\"train\",\"index\":0}}",
            BS_E_DATASET_NOT_FOUND, "mnist/train");
    refused(HEAD "{\"dataset\":\"mnist\",\"index\":3}}", BS_E_INDEX_OUT_OF_RANGE,
            "mnist/test has samples 0 to 2, not 3.");
    refused(HEAD "{\"dataset\":\"mnist\",\"index\":-1}}", BS_E_INDEX_OUT_OF_RANGE, "not -1");
    refused(HEAD "{\"dataset\":\"mnist\",\"index\":\"0\"}}", BS_E_INVALID_IMAGE,
            "\"index\": integer");
    refused(HEAD "{\"dataset\":\"mnist\",\"split\":5,\"index\":0}}", BS_E_INVALID_IMAGE,
            "A dataset image is");
    refused(HEAD "{\"dataset\":\"tiny\",\"index\":0}}", BS_E_SHAPE_MISMATCH,
            "tiny samples are (1,2,2); model digits takes (1,28,28).");

    /* a PNG with more pixels than the caller takes */
    size_t n = 200 * 200, len;
    uint8_t *px = calloc(n, 1), *png;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_image_encode(px, 200, 200, 1, BS_IMAGE_PNG, 0, &png, &len, err), 0);
    bs_attack_request r;
    bs_api_error e;
    assert_int_equal(parse_text("{\"model\":\"digits\",\"target\":3}", png, len, &r, &e), -1);
    assert_int_equal(e.code, BS_E_IMAGE_TOO_LARGE);
    assert_non_null(strstr(e.message, "The image cannot be used"));
    assert_int_equal(parse_text("{\"model\":\"digits\",\"target\":3}", png, 7, &r, &e), -1);
    assert_int_equal(e.code, BS_E_INVALID_IMAGE);
    free(png);
    free(px);
}

static void test_good_requests(void **state)
{
    (void)state;
    bs_attack_request r;
    bs_api_error e;
    /* the defaults */
    assert_int_equal(parse_text("{" BASE "}", NULL, 0, &r, &e), 0);
    assert_ptr_equal(r.model, &digits);
    assert_string_equal(r.model_name, "digits");
    assert_int_equal(r.params.method, BS_ATTACK_LBFGS);
    assert_int_equal(r.params.search_steps, bs_attack_defaults(BS_ATTACK_LBFGS).search_steps);
    assert_int_equal(r.n_targets, 1);
    assert_int_equal(r.n_report, 1);
    assert_ptr_equal(r.report[0].model, &digits);
    assert_int_equal(r.image_out, BS_OUT_PNG);
    assert_true(r.timeout == 0.0);
    assert_false(r.inverted);
    for (int i = 0; i < 784; i++)
        assert_true(r.x[i] == 0.1f);
    int targets[BS_MAX_TARGETS], k;
    assert_int_equal(bs_attack_request_targets(&r, 7, targets, &k, &e), 0);
    assert_int_equal(k, 1);
    assert_int_equal(targets[0], 3);
    bs_attack_request_free(&r);
    bs_attack_request_free(&r); /* twice is harmless */

    /* every field set; "all" is every class but the model's label */
    assert_int_equal(parse_text("{\"model\":\"digits\",\"target\":\"all\",\"method\":\"fgsm\","
                                "\"params\":{\"eps_max\":0.5},\"report\":[\"digits\"],"
                                "\"invert\":\"yes\",\"timeout\":2.5,\"image_format\":\"floats\","
                                "\"image\":{\"dataset\":\"mnist\",\"split\":\"test\",\"index\":2}}",
                                NULL, 0, &r, &e), 0);
    assert_int_equal(r.params.method, BS_ATTACK_FGSM);
    assert_true(r.params.eps_max == 0.5);
    assert_int_equal(r.n_targets, 10);
    assert_true(r.timeout == 2.5);
    assert_int_equal(r.image_out, BS_OUT_FLOATS);
    assert_true(r.inverted);
    assert_true(fabsf(r.x[0] - 0.8f) < 1e-6f);
    assert_int_equal(bs_attack_request_targets(&r, 4, targets, &k, &e), 0);
    assert_int_equal(k, 9);
    for (int i = 0; i < k; i++)
        assert_int_not_equal(targets[i], 4);
    bs_attack_request_free(&r);

    /* raw floats: the model's shape as they are, another shape resized */
    json_t *data = json_array();
    for (int i = 0; i < 784; i++)
        json_array_append_new(data, json_real(i % 2 ? 0.25 : 0.75));
    json_t *root = json_pack("{s:s, s:i, s:{s:o, s:[i,i,i]}}", "model", "digits", "target", 1,
                             "image", "data", data, "shape", 1, 28, 28);
    assert_int_equal(bs_attack_request_parse(root, NULL, 0, &fake_env, &r, &e), 0);
    assert_true(r.x[0] == 0.75f && r.x[1] == 0.25f);
    bs_attack_request_free(&r);
    json_decref(root);
    assert_int_equal(parse_text(HEAD "{\"data\":[0.5,0.5,0.5,0.5],\"shape\":[1,2,2]}}", NULL, 0,
                                &r, &e), 0);
    assert_true(fabsf(r.x[400] - 0.5f) < 1e-6f);
    bs_attack_request_free(&r);

    /* a PNG, base64 in JSON or as an uploaded file: dark ink on white is
     * inverted by auto, kept by no */
    uint8_t px[784], *png;
    size_t len;
    char err[BS_ERR_LEN];
    for (int i = 0; i < 784; i++)
        px[i] = i % 28 == 14 ? 0 : 255;
    assert_int_equal(bs_image_encode(px, 28, 28, 1, BS_IMAGE_PNG, 0, &png, &len, err), 0);
    char *b64 = bs_base64_encode(png, len), text[4096];
    snprintf(text, sizeof text, HEAD "{\"png\":\"%s\"}}", b64);
    assert_int_equal(parse_text(text, NULL, 0, &r, &e), 0);
    assert_true(r.inverted);
    assert_true(r.x[0] == 0.0f && r.x[14] == 1.0f);
    bs_attack_request_free(&r);
    assert_int_equal(parse_text("{\"model\":\"digits\",\"target\":3,\"invert\":\"no\"}", png,
                                len, &r, &e), 0);
    assert_false(r.inverted);
    assert_true(r.x[0] == 1.0f && r.x[14] == 0.0f);
    bs_attack_request_free(&r);
    free(b64);
    free(png);
}

static void test_form_fields(void **state)
{
    (void)state;
    struct { const char *name, *text, *json; } cases[] = {
        {"model", "7", "\"7\""},
        {"method", "lbfgs", "\"lbfgs\""},
        {"invert", "yes", "\"yes\""},
        {"image_format", "jpeg", "\"jpeg\""},
        {"target", "3", "3"},
        {"target", "3,5", "[3,5]"},
        {"target", "[1, 2]", "[1,2]"},
        {"target", "all", "\"all\""},
        {"target", "3,x", "\"3,x\""},
        {"report", "cnn, fc10-1", "[\"cnn\",\"fc10-1\"]"},
        {"report", "[\"cnn\"]", "[\"cnn\"]"},
        {"params", "{\"steps\":5}", "{\"steps\":5}"},
        {"timeout", "2.5", "2.5"},
        {"timeout", "soon", "\"soon\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = bs_attack_form_value(cases[i].name, cases[i].text);
        char *got = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (strcmp(got, cases[i].json))
            fail_msg("form %s=%s gave %s, want %s", cases[i].name, cases[i].text, got,
                     cases[i].json);
        free(got);
        json_decref(v);
    }

    /* a whole form: the dataset reference from its parts, the file aside */
    const uint8_t bytes[] = {1, 2, 3};
    bs_form_part parts[] = {
        {"model", 0, (const uint8_t *)"digits", 6},
        {"target", 0, (const uint8_t *)"3,5", 3},
        {"dataset", 0, (const uint8_t *)"mnist", 5},
        {"index", 0, (const uint8_t *)"2", 1},
        {"report", 0, (const uint8_t *)"digits", 6},
    };
    const uint8_t *file = NULL;
    size_t file_len = 0;
    json_t *root = bs_attack_form_to_json(parts, 5, &file, &file_len);
    char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"image\":{\"dataset\":\"mnist\",\"index\":2},\"model\":\"digits\","
                              "\"report\":[\"digits\"],\"target\":[3,5]}");
    free(text);
    assert_null(file);
    bs_attack_request r;
    bs_api_error e;
    assert_int_equal(bs_attack_request_parse(root, NULL, 0, &fake_env, &r, &e), 0);
    assert_int_equal(r.n_targets, 2);
    assert_true(r.x[0] == 0.2f);
    bs_attack_request_free(&r);
    json_decref(root);

    bs_form_part with_file[] = {
        {"model", 0, (const uint8_t *)"digits", 6},
        {"image", 1, bytes, sizeof bytes},
    };
    root = bs_attack_form_to_json(with_file, 2, &file, &file_len);
    assert_ptr_equal(file, bytes);
    assert_int_equal(file_len, 3);
    assert_true(json_is_true(json_object_get(json_object_get(root, "image"), "file")));
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_fields_refused),
        cmocka_unit_test(test_bad_images_refused),
        cmocka_unit_test(test_good_requests),
        cmocka_unit_test(test_form_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
