/* test_remote — the daemon's POST /v1/models/{name}/predict, started on a
 * free loopback port with the zoo (tests/testhttp.h): every way an image
 * comes (a raw PNG or JPEG body, a form, base64 in JSON, raw floats, a
 * dataset sample), each answer equal to the model's forward pass in this
 * process; a slice of a split; the errors (415, 400, 404, 422 for a pixel
 * bomb). Needs `make data models` (make test does it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include "api/base64.h"
#include "api/image.h"
#include "core/dataset.h"
#include "core/model_file.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static daemon_proc daemon_;
static bs_dataset test_set; /* mnist test, loaded here */

/* The pixel cap the daemon runs with: a 1100x1000 image is over it. */
#define MAX_PIXELS_FLAG "1M"

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    char err[BS_ERR_LEN];
    if (bs_dataset_load("data", "mnist", "test", &test_set, err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    const char *extra[] = {"--max-pixels", MAX_PIXELS_FLAG, NULL};
    if (daemon_start(&daemon_, extra)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", daemon_.log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&daemon_);
    daemon_cleanup(&daemon_);
    bs_dataset_free(&test_set);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

static void post(const char *path, const char *content_type, const void *body, size_t len,
                 reply *r)
{
    char header[128];
    snprintf(header, sizeof header, "Content-Type: %s", content_type);
    const char *headers[] = {header, NULL};
    req_opts o = {.method = "POST", .headers = headers, .body = body, .len = len};
    request_on(daemon_.port, path, &o, r);
}

static void post_json(const char *path, const char *body, reply *r)
{
    post(path, "application/json", body, strlen(body), r);
}

/* ---- predict ------------------------------------------------------------------ */

/* Test image i of mnist encoded as a gray PNG or JPEG. */
static uint8_t *encode_sample(int i, bs_image_format fmt, size_t *len)
{
    uint8_t px[784];
    char err[BS_ERR_LEN];
    bs_image_to_bytes(test_set.images + (size_t)i * 784, 784, px);
    uint8_t *out = NULL;
    assert_int_equal(bs_image_encode(px, 28, 28, 1, fmt, 90, &out, len, err), 0);
    return out;
}

/* The input the daemon makes of encoded bytes (auto inversion), here. */
static void convert_here(const uint8_t *bytes, size_t len, float *x)
{
    bs_image img;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_image_decode(bytes, len, 1 << 20, &img, err), 0);
    assert_int_equal(bs_image_to_input(&img, 1, 28, 28, BS_INVERT_AUTO, x, NULL, err), 0);
    bs_image_free(&img);
}

/* Asserts that a predict answer is model's forward pass of x here: the
 * label and every probability (9 significant digits on the wire). */
static void assert_prediction(const reply *r, const char *model, const float *x)
{
    if (r->status != 200)
        fail_msg("predict answered %ld: %s", r->status, r->body ? r->body : "");
    char path[256], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "models/%s.safetensors", model);
    bs_model *m = bs_model_load(path, err);
    assert_non_null(m);
    bs_workspace *ws = bs_workspace_new(m, 1);
    const float *logits = bs_model_forward(m, ws, x, 1);
    int label = bs_argmax(logits, m->classes);
    bs_model_loss(m, ws, (const int[1]){0}, 1);
    assert_string_equal(json_string_value(json_object_get(r->json, "model")), model);
    assert_int_equal(json_integer_value(json_object_get(r->json, "label")), label);
    json_t *probs = json_object_get(r->json, "probabilities");
    assert_int_equal(json_array_size(probs), (size_t)m->classes);
    for (int c = 0; c < m->classes; c++) {
        double got = json_number_value(json_array_get(probs, (size_t)c));
        if (fabs(got - ws->probs[c]) > 1e-8 * fabs(ws->probs[c]) + 1e-30)
            fail_msg("probability %d: the daemon says %.9g, the model here %.9g", c, got,
                     (double)ws->probs[c]);
    }
    /* the input as the model saw it, within the 8-bit rounding of its PNG */
    json_t *input = json_object_get(r->json, "input");
    const char *b64 = json_string_value(json_object_get(input, "data"));
    size_t len;
    uint8_t *png = bs_base64_decode(b64, strlen(b64), &len, err);
    assert_non_null(png);
    bs_image img;
    assert_int_equal(bs_image_decode(png, len, 1 << 20, &img, err), 0);
    assert_int_equal(img.width * img.height * img.channels, (int)m->input_size);
    for (size_t k = 0; k < m->input_size; k++)
        assert_true(fabsf(img.pixels[k] - x[k]) <= 0.5f / 255 + 1e-6f);
    bs_image_free(&img);
    free(png);
    bs_workspace_free(ws);
    bs_model_free(m);
}

static void test_predict_raw_png_and_jpeg(void **state)
{
    (void)state;
    float x[784];
    size_t len;
    reply r;
    uint8_t *png = encode_sample(7, BS_IMAGE_PNG, &len);
    post("/v1/models/cnn/predict", "image/png", png, len, &r);
    /* a PNG of an MNIST sample holds its bytes: the sample itself */
    assert_prediction(&r, "cnn", test_set.images + 7 * 784);
    assert_false(json_is_true(json_object_get(json_object_get(r.json, "input"), "inverted")));
    reply_free(&r);
    /* ?invert=yes: the negative */
    post("/v1/models/fc100-100-10/predict?invert=yes", "image/png", png, len, &r);
    for (int k = 0; k < 784; k++)
        x[k] = 1.0f - test_set.images[7 * 784 + k];
    assert_prediction(&r, "fc100-100-10", x);
    assert_true(json_is_true(json_object_get(json_object_get(r.json, "input"), "inverted")));
    reply_free(&r);
    free(png);
    uint8_t *jpeg = encode_sample(8, BS_IMAGE_JPEG, &len);
    post("/v1/models/cnn/predict", "image/jpeg", jpeg, len, &r);
    convert_here(jpeg, len, x);
    assert_prediction(&r, "cnn", x);
    reply_free(&r);
    free(jpeg);
}

static uint8_t *form_bytes;
static size_t form_len;

static curl_mime *predict_form(CURL *c)
{
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "image");
    curl_mime_filename(p, "digit.png");
    curl_mime_type(p, "image/png");
    curl_mime_data(p, (const char *)form_bytes, form_len);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "invert");
    curl_mime_data(p, "no", CURL_ZERO_TERMINATED);
    return m;
}

static void test_predict_form(void **state)
{
    (void)state;
    form_bytes = encode_sample(11, BS_IMAGE_PNG, &form_len);
    req_opts o = {.method = "POST", .form = predict_form};
    reply r;
    request_on(daemon_.port, "/v1/models/fc10-1e-4/predict", &o, &r);
    assert_prediction(&r, "fc10-1e-4", test_set.images + 11 * 784);
    reply_free(&r);
    free(form_bytes);
}

static void test_predict_json_forms(void **state)
{
    (void)state;
    size_t len;
    reply r;
    char *body = malloc(64 * 1024);
    /* base64 PNG and JPEG */
    uint8_t *png = encode_sample(12, BS_IMAGE_PNG, &len);
    char *b64 = bs_base64_encode(png, len);
    snprintf(body, 64 * 1024, "{\"image\":{\"png\":\"%s\"},\"invert\":\"no\"}", b64);
    post_json("/v1/models/cnn/predict", body, &r);
    assert_prediction(&r, "cnn", test_set.images + 12 * 784);
    reply_free(&r);
    free(b64);
    free(png);
    uint8_t *jpeg = encode_sample(13, BS_IMAGE_JPEG, &len);
    b64 = bs_base64_encode(jpeg, len);
    snprintf(body, 64 * 1024, "{\"image\":{\"jpeg\":\"%s\"}}", b64);
    post_json("/v1/models/cnn/predict", body, &r);
    float x[784];
    convert_here(jpeg, len, x);
    assert_prediction(&r, "cnn", x);
    reply_free(&r);
    free(b64);
    free(jpeg);
    /* raw floats of the model's shape, taken as they are */
    size_t n = (size_t)snprintf(body, 64 * 1024, "{\"image\":{\"shape\":[1,28,28],\"data\":[");
    for (int k = 0; k < 784; k++)
        n += (size_t)snprintf(body + n, 64 * 1024 - n, "%s%.9g", k ? "," : "",
                              (double)test_set.images[14 * 784 + k]);
    snprintf(body + n, 64 * 1024 - n, "]}}");
    post_json("/v1/models/fc100-100-10/predict", body, &r);
    assert_prediction(&r, "fc100-100-10", test_set.images + 14 * 784);
    reply_free(&r);
    /* a dataset sample */
    post_json("/v1/models/fc200-200-10/predict", "{\"image\":{\"dataset\":\"mnist\",\"index\":15}}",
              &r);
    assert_prediction(&r, "fc200-200-10", test_set.images + 15 * 784);
    reply_free(&r);
    free(body);
}

static void test_predict_slice(void **state)
{
    (void)state;
    reply r;
    post_json("/v1/models/cnn/predict", "{\"dataset\":\"mnist\",\"first\":100,\"n\":50}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "first")), 100);
    assert_int_equal(json_integer_value(json_object_get(r.json, "images")), 50);
    /* the confusion matrix counts the slice's labels, and its errors */
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load("models/cnn.safetensors", err);
    bs_workspace *ws = bs_workspace_new(m, 1);
    json_t *conf = json_object_get(r.json, "confusion");
    int wrong = 0;
    for (int i = 100; i < 150; i++) {
        int y = test_set.labels[i];
        int p = bs_argmax(bs_model_forward(m, ws, test_set.images + (size_t)i * 784, 1), 10);
        wrong += p != y;
        json_t *cell = json_array_get(json_array_get(conf, (size_t)y), (size_t)p);
        assert_true(json_integer_value(cell) >= 1);
    }
    assert_int_equal(json_integer_value(json_object_get(r.json, "errors")), wrong);
    assert_true(json_is_number(json_object_get(r.json, "recorded_test_error")));
    bs_workspace_free(ws);
    bs_model_free(m);
    reply_free(&r);
}

static void test_predict_errors(void **state)
{
    (void)state;
    reply r;
    post("/v1/models/cnn/predict", "text/plain", "7", 1, &r);
    assert_error(&r, 415, "unsupported_media_type");
    reply_free(&r);
    post("/v1/models/cnn/predict", "image/png", "\x89PNG\r\n\x1a\nnot really", 18, &r);
    assert_error(&r, 400, "invalid_image");
    reply_free(&r);
    post("/v1/models/cnn/predict", "image/png", "", 0, &r);
    assert_error(&r, 400, "missing_image");
    reply_free(&r);
    post_json("/v1/models/nosuch/predict", "{}", &r);
    assert_error(&r, 404, "model_not_found");
    reply_free(&r);
    post_json("/v1/models/cnn/predict", "{\"image\":{\"png\":\"!!\"}}", &r);
    assert_error(&r, 400, "invalid_base64");
    reply_free(&r);
    post_json("/v1/models/cnn/predict", "{\"image\":{\"dataset\":\"mnist\",\"index\":1}, \"n\":3}", &r);
    assert_error(&r, 400, "unknown_field");
    reply_free(&r);
    post_json("/v1/models/cnn/predict", "{\"image\":{\"dataset\":\"mnist\",\"index\":5000}}", &r);
    assert_error(&r, 422, "index_out_of_range");
    reply_free(&r);
    post_json("/v1/models/cnn/predict", "{\"first\":1990,\"n\":11}", &r);
    assert_error(&r, 422, "out_of_range");
    reply_free(&r);
    post_json("/v1/models/cnn/predict", "{\"dataset\":\"nosuch\"}", &r);
    assert_error(&r, 404, "dataset_not_found");
    reply_free(&r);
    post_json("/v1/models/cnn/predict?invert=maybe", "{\"image\":{\"dataset\":\"mnist\",\"index\":1},"
              "\"invert\":\"maybe\"}", &r);
    assert_error(&r, 400, "invalid_request");
    reply_free(&r);
    /* a pixel bomb: a small file whose header says more pixels than
     * --max-pixels, refused before any pixel is decoded */
    size_t W = 1100, H = 1000, len;
    uint8_t *black = calloc(W * H, 1), *png = NULL;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_image_encode(black, (int)W, (int)H, 1, BS_IMAGE_PNG, 0, &png, &len, err), 0);
    assert_true(len < 64 * 1024);
    post("/v1/models/cnn/predict", "image/png", png, len, &r);
    assert_error(&r, 422, "image_too_large");
    reply_free(&r);
    free(png);
    free(black);
    /* the daemon is still there */
    post_json("/v1/models/cnn/predict", "{\"image\":{\"dataset\":\"mnist\",\"index\":1}}", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_raw_png_and_jpeg),
        cmocka_unit_test(test_predict_form),
        cmocka_unit_test(test_predict_json_forms),
        cmocka_unit_test(test_predict_slice),
        cmocka_unit_test(test_predict_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
