/* test_remote — the daemon's POST /v1/models/{name}/predict and the
 * command line as the daemon's client, against blindspotd started on a
 * free loopback port with the zoo (tests/testhttp.h).
 *
 * Predict: every way an image comes (a raw PNG or JPEG body, a form,
 * base64 in JSON, raw floats, a dataset sample), each answer equal to the
 * model's forward pass in this process; a slice of a split; the errors
 * (415, 400, 404, 422 for a pixel bomb); the errors of the unit summary and of
 * the Lipschitz attacks.
 *
 * The command line: info, predict (a slice and an image), lipschitz, units,
 * evaluate and attack (a dataset sample or an uploaded image, one target,
 * a list or all, -o's PNGs) run here and with --server (before the
 * command, on it, or as $BLINDSPOT_SERVER) print the same bytes, text and
 * --json, once timing fields are taken out; the server's errors are
 * printed as its message with exit 1, an unreachable server names the URL,
 * $BLINDSPOT_TOKEN goes out as a bearer token, and a job is followed with
 * GET /v1/jobs/{id}?wait=S; `blindspot health` reads ready, live, not
 * ready, refused and timed out, by default at $BLINDSPOT_LISTEN. Needs `make data models` (make test does it). */
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

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    /* a P1 half's model: its own train split is not mnist's whole one */
    post_json("/v1/models/fc100-100-10-p1/predict", "{\"split\":\"train\"}", &r);
    assert_error(&r, 404, "dataset_not_found");
    reply_free(&r);
    post_json("/v1/models/cnn/predict?invert=maybe", "{\"image\":{\"dataset\":\"mnist\",\"index\":1},"
              "\"invert\":\"maybe\"}", &r);
    assert_error(&r, 400, "invalid_request");
    reply_free(&r);
    /* Lipschitz attacks: a bad count, an unknown dataset, the time budget */
    request_on(daemon_.port, "/v1/models/cnn/lipschitz?attacks=-1", NULL, &r);
    assert_error(&r, 400, "invalid_request");
    reply_free(&r);
    request_on(daemon_.port, "/v1/models/cnn/lipschitz?attacks=2&dataset=nosuch", NULL, &r);
    assert_error(&r, 404, "dataset_not_found");
    reply_free(&r);
    request_on(daemon_.port, "/v1/models/cnn/lipschitz?attacks=500&timeout=0.2", NULL, &r);
    assert_error(&r, 504, "deadline_exceeded");
    reply_free(&r);
    /* the unit summary: one of direction and summary, within the layer */
    post_json("/v1/models/fc100-100-10/units", "{\"layer\":2,\"summary\":3,\"direction\":1}", &r);
    assert_error(&r, 400, "invalid_request");
    reply_free(&r);
    post_json("/v1/models/fc100-100-10/units", "{\"layer\":2,\"summary\":101}", &r);
    assert_error(&r, 422, "unit_out_of_range");
    reply_free(&r);
    post_json("/v1/models/fc100-100-10/units", "{\"layer\":2}", &r);
    assert_error(&r, 400, "missing_field");
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

/* A dataset sample is read by one piece of code for a prediction and an
 * attack: the same refusal, word for word, and the same input. */
static void test_predict_and_attack_read_samples_alike(void **state)
{
    (void)state;
    static const struct {
        const char *image;
        long status;
        const char *code, *message;
    } cases[] = {
        {"{\"dataset\":\"mnist\",\"index\":5000}", 422, "index_out_of_range",
         "mnist/test has samples 0 to 1999, not 5000."},
        {"{\"dataset\":\"mnist\",\"split\":\"train\",\"index\":-2}", 422,
         "index_out_of_range", "mnist/train has samples 0 to 7999, not -2."},
        {"{\"dataset\":\"mnist\",\"index\":\"3\"}", 400, "invalid_image",
         "A dataset image is {\"dataset\": name, \"split\": name, \"index\": integer}."},
        {"{\"dataset\":\"nosuch\",\"index\":3}", 404, "dataset_not_found",
         "Dataset nosuch is not loaded: no folder data/nosuch; GET /v1/datasets lists those "
         "that are."},
    };
    char body[512];
    reply p, a;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(body, sizeof body, "{\"image\":%s}", cases[i].image);
        post_json("/v1/models/cnn/predict", body, &p);
        snprintf(body, sizeof body, "{\"model\":\"cnn\",\"target\":1,\"image\":%s}",
                 cases[i].image);
        post_json("/v1/attacks", body, &a);
        assert_error(&p, cases[i].status, cases[i].code);
        assert_error(&a, cases[i].status, cases[i].code);
        const char *mp = json_string_value(json_object_get(json_object_get(p.json, "error"),
                                                           "message"));
        const char *ma = json_string_value(json_object_get(json_object_get(a.json, "error"),
                                                           "message"));
        assert_string_equal(mp, cases[i].message);
        assert_string_equal(ma, cases[i].message);
        reply_free(&p);
        reply_free(&a);
    }
    /* inverted when asked, as the attack's input shows */
    post_json("/v1/models/cnn/predict", "{\"image\":{\"dataset\":\"mnist\",\"index\":6},"
              "\"invert\":\"yes\"}", &p);
    float x[784];
    for (int k = 0; k < 784; k++)
        x[k] = 1.0f - test_set.images[6 * 784 + k];
    assert_prediction(&p, "cnn", x);
    post_json("/v1/attacks", "{\"model\":\"cnn\",\"target\":1,\"image\":{\"dataset\":"
              "\"mnist\",\"index\":6},\"invert\":\"yes\",\"params\":{\"search_steps\":1}}", &a);
    assert_int_equal(a.status, 200);
    assert_true(json_equal(json_object_get(p.json, "input"), json_object_get(a.json, "input")));
    reply_free(&p);
    reply_free(&a);
}

/* ---- the command line against the daemon ------------------------------------- */

/* stdout of `blindspot ARGS` with every line that carries a timing field
 * (seconds, elapsed, ms) taken out, and the time that ends an attack's
 * text line (", 0.014 s"); *rc its exit status. */
static char *run_cli(const char *prefix, const char *args, int *rc)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s%s %s 2>/dev/null", prefix, tu_bin("blindspot"), args);
    *rc = tu_run(cmd, &out);
    assert_non_null(out);
    char *w = out;
    for (char *line = out; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        char saved = line[len];
        line[len] = '\0';
        int timing = strstr(line, "seconds") || strstr(line, "elapsed") ||
                     strstr(line, "\"ms\"");
        if (!timing) {
            /* ", 0.014 s" at the end of an attack's line */
            size_t keep = len, stop = len - (line[len - 1] == '\n'), k;
            if (stop > 2 && !strncmp(line + stop - 2, " s", 2)) {
                for (k = stop - 2; k > 0 && strchr("0123456789.", line[k - 1]); k--)
                    ;
                if (k >= 2 && k < stop - 2 && !strncmp(line + k - 2, ", ", 2))
                    keep = k - 2;
            }
            memmove(w, line, keep);
            w += keep;
            if (keep != len)
                *w++ = '\n';
        }
        line[len] = saved;
        line += len;
    }
    *w = '\0';
    return out;
}

/* Runs args here and remote (args_remote, with the daemon given by how:
 * 0 before the command, 1 as --server on it, 2 as $BLINDSPOT_SERVER),
 * with and without --json, and asserts the same output and exit status
 * want. */
static void assert_same_output_rc(const char *args, const char *args_remote, int how, int want)
{
    char url[64], prefix[128] = "", remote[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", daemon_.port);
    for (int json = 0; json < 2; json++) {
        char local[1024];
        snprintf(local, sizeof local, "%s%s", args, json ? " --json" : "");
        if (how == 0)
            snprintf(remote, sizeof remote, "--server %s %s%s", url, args_remote,
                     json ? " --json" : "");
        else if (how == 1)
            snprintf(remote, sizeof remote, "%s --server %s%s", args_remote, url,
                     json ? " --json" : "");
        else {
            snprintf(prefix, sizeof prefix, "BLINDSPOT_SERVER=%s ", url);
            snprintf(remote, sizeof remote, "%s%s", args_remote, json ? " --json" : "");
        }
        int rc_local, rc_remote;
        char *a = run_cli("", local, &rc_local);
        char *b = run_cli(prefix, remote, &rc_remote);
        if (rc_local != want || rc_remote != want)
            fail_msg("'%s' exited %d, '%s' exited %d (want %d)", local, rc_local, remote,
                     rc_remote, want);
        assert_true(strlen(a) > 20);
        if (strcmp(a, b))
            fail_msg("'%s' and '%s' differ:\n--- here\n%s\n--- remote\n%s", local, remote, a, b);
        free(a);
        free(b);
    }
}

/* The same, exit 0. */
static void assert_same_output(const char *args, const char *args_remote, int how)
{
    assert_same_output_rc(args, args_remote, how, 0);
}

static void test_cli_info_remote(void **state)
{
    (void)state;
    assert_same_output("info models/cnn.safetensors", "info models/cnn.safetensors", 0);
    assert_same_output("info models/fc100-100-10.safetensors", "info fc100-100-10", 1);
}

static void test_cli_predict_remote(void **state)
{
    (void)state;
    assert_same_output("predict --model models/fc100-100-10.safetensors --first 100 --n 300",
                       "predict --model fc100-100-10 --first 100 --n 300", 1);
    /* a P1 half's model: its test split is mnist's, on both sides */
    assert_same_output("predict --model models/fc100-100-10-p1.safetensors",
                       "predict --model models/fc100-100-10-p1.safetensors", 2);
    char *dir = tu_tmpdir(), args[1024];
    size_t len;
    uint8_t *png = encode_sample(21, BS_IMAGE_PNG, &len);
    snprintf(args, sizeof args, "%s/digit.png", dir);
    assert_int_equal(tu_write_file(args, png, len), 0);
    free(png);
    snprintf(args, sizeof args, "predict --model models/cnn.safetensors --image %s/digit.png", dir);
    assert_same_output(args, args, 0);
    snprintf(args, sizeof args, "predict --model models/cnn.safetensors --image %s/digit.png "
             "--invert yes", dir);
    assert_same_output(args, args, 1);
    uint8_t *jpeg = encode_sample(22, BS_IMAGE_JPEG, &len);
    snprintf(args, sizeof args, "%s/digit.jpg", dir);
    assert_int_equal(tu_write_file(args, jpeg, len), 0);
    free(jpeg);
    snprintf(args, sizeof args, "predict --model models/fc200-200-10.safetensors --image "
             "%s/digit.jpg", dir);
    assert_same_output(args, args, 2);
    tu_rmtree(dir);
    free(dir);
}

static void test_cli_analysis_remote(void **state)
{
    (void)state;
    assert_same_output("lipschitz --model models/cnn.safetensors --seed 3",
                       "lipschitz --model cnn --seed 3", 1);
    /* the attacks' ratios too, on the daemon's worker */
    assert_same_output("lipschitz --model models/fc100-100-10.safetensors --attacks 3",
                       "lipschitz --model fc100-100-10 --attacks 3", 0);
    assert_same_output("lipschitz --model models/fc10-1e-2.safetensors --attacks 2 --split train "
                       "--seed 9", "lipschitz --model fc10-1e-2 --attacks 2 --split train --seed 9",
                       2);
    assert_same_output("units --model models/fc100-100-10.safetensors --layer 2 --unit 5",
                       "units --model fc100-100-10 --layer 2 --unit 5", 0);
    assert_same_output("units --model models/cnn.safetensors --layer 3 --random --seed 4 --k 5",
                       "units --model cnn --layer 3 --random --seed 4 --k 5", 2);
    assert_same_output("units --model models/fc100-100-10.safetensors --layer 2 --summary 4",
                       "units --model fc100-100-10 --layer 2 --summary 4", 1);
    /* --out writes the same grid */
    char *dir = tu_tmpdir(), args[1024];
    int rc;
    snprintf(args, sizeof args, "units --model models/fc10-1e-4.safetensors --layer 1 --unit 3 "
             "--out %s/here.png", dir);
    free(run_cli("", args, &rc));
    assert_int_equal(rc, 0);
    snprintf(args, sizeof args, "--server http://127.0.0.1:%d units --model fc10-1e-4 --layer 1 "
             "--unit 3 --out %s/there.png", daemon_.port, dir);
    free(run_cli("", args, &rc));
    assert_int_equal(rc, 0);
    size_t la, lb;
    snprintf(args, sizeof args, "%s/here.png", dir);
    uint8_t *a = tu_read_file(args, &la);
    snprintf(args, sizeof args, "%s/there.png", dir);
    uint8_t *b = tu_read_file(args, &lb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    tu_rmtree(dir);
    free(dir);
}

static void test_cli_evaluate_remote(void **state)
{
    (void)state;
    assert_same_output("evaluate --models fc10-1e-4,models/cnn.safetensors --first 20 --n 3 "
                       "--seed 7 --noise 0.2 --magnify 0.15",
                       "evaluate --models fc10-1e-4,models/cnn.safetensors --first 20 --n 3 "
                       "--seed 7 --noise 0.2 --magnify 0.15", 1);
    /* the job's progress on stderr, as a local run shows its own */
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d evaluate --models cnn --n 2 "
             "2>&1 >/dev/null", tu_bin("blindspot"), daemon_.port);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "attacks 2/2"));
    free(out);
}

static void test_cli_attack_remote(void **state)
{
    (void)state;
    /* a dataset sample: one target, a list, all */
    assert_same_output("attack --model models/fc100-100-10.safetensors --dataset mnist --index 4 "
                       "--target 6", "attack --model fc100-100-10 --dataset mnist --index 4 "
                       "--target 6", 1);
    assert_same_output("attack --model models/fc10-1e-2.safetensors --dataset mnist --index 9 "
                       "--target all", "attack --model fc10-1e-2 --dataset mnist --index 9 "
                       "--target all", 0);
    assert_same_output("attack --model models/cnn.safetensors --dataset mnist --split train "
                       "--index 30 --target 2,7 --method pgd --param search_steps=6",
                       "attack --model cnn --dataset mnist --split train --index 30 --target "
                       "2,7 --method pgd --param search_steps=6", 2);
    /* a target the model already gives: exit 1 on both sides */
    assert_same_output_rc("attack --model models/fc100-100-10.safetensors --dataset mnist "
                          "--index 17 --target 3,5 --models none",
                          "attack --model fc100-100-10 --dataset mnist --index 17 --target 3,5 "
                          "--models none", 1, 1);
    /* an image file, uploaded: PNG and JPEG, inverted or not */
    char *dir = tu_tmpdir(), args[1024], here[1024], there[1024];
    size_t len;
    uint8_t *png = encode_sample(40, BS_IMAGE_PNG, &len);
    snprintf(args, sizeof args, "%s/digit.png", dir);
    assert_int_equal(tu_write_file(args, png, len), 0);
    free(png);
    uint8_t *jpeg = encode_sample(41, BS_IMAGE_JPEG, &len);
    snprintf(args, sizeof args, "%s/digit.jpg", dir);
    assert_int_equal(tu_write_file(args, jpeg, len), 0);
    free(jpeg);
    snprintf(args, sizeof args, "attack --model models/fc200-200-10.safetensors --image "
             "%s/digit.png --target 8", dir);
    assert_same_output(args, args, 2);
    snprintf(here, sizeof here, "attack --model models/cnn.safetensors --image %s/digit.jpg "
             "--target all --param max_iterations=60", dir);
    snprintf(there, sizeof there, "attack --model cnn --image %s/digit.jpg --target all "
             "--param max_iterations=60", dir);
    assert_same_output(here, there, 0);
    snprintf(args, sizeof args, "attack --model models/fc10-1e-4.safetensors --image "
             "%s/digit.png --invert yes --target 1,4", dir);
    assert_same_output(args, args, 1);
    /* -o writes the same PNGs, one per target */
    int rc;
    snprintf(args, sizeof args, "attack --model models/fc100-100-10.safetensors --image "
             "%s/digit.png --target 0,5 -o %s/here.png", dir, dir);
    free(run_cli("", args, &rc));
    assert_int_equal(rc, 0);
    snprintf(args, sizeof args, "--server http://127.0.0.1:%d attack --model fc100-100-10 "
             "--image %s/digit.png --target 0,5 -o %s/there.png", daemon_.port, dir, dir);
    free(run_cli("", args, &rc));
    assert_int_equal(rc, 0);
    for (int t = 0; t <= 5; t += 5) {
        size_t la, lb;
        snprintf(args, sizeof args, "%s/here-%d.png", dir, t);
        uint8_t *a = tu_read_file(args, &la);
        snprintf(args, sizeof args, "%s/there-%d.png", dir, t);
        uint8_t *b = tu_read_file(args, &lb);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
    }
    tu_rmtree(dir);
    free(dir);
}

/* An attack whose --timeout runs out prints its best results so far, as a
 * local run does, rather than only the daemon's error. */
static void test_cli_attack_remote_timeout(void **state)
{
    (void)state;
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s attack --server http://127.0.0.1:%d --model ae400-10 "
             "--dataset mnist --index 3 --target 1,2 --method adam-l1 --param steps=1000000 "
             "--timeout 0.5 2>&1", tu_bin("blindspot"), daemon_.port);
    tu_run(cmd, &out);
    assert_non_null(out);
    if (strncmp(out, "ae400-10: label ", 16) || !strstr(out, "target 1: ") ||
        !strstr(out, " (timeout), label "))
        fail_msg("a remote attack that ran out of time printed:\n%s", out);
    free(out);
}

/* `blindspot ARGS` (stdout and stderr) must exit rc saying want. */
static void expect_failure(const char *prefix, const char *args, int rc, const char *want)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s%s %s 2>&1", prefix, tu_bin("blindspot"), args);
    int got = tu_run(cmd, &out);
    if (got != rc || !out || !strstr(out, want))
        fail_msg("'%s' exited %d (want %d) saying: %s (want '%s')", args, got, rc,
                 out ? out : "", want);
    free(out);
}

static void test_cli_remote_errors(void **state)
{
    (void)state;
    char args[512];
    snprintf(args, sizeof args, "info nosuch --server http://127.0.0.1:%d", daemon_.port);
    expect_failure("", args, 1, "blindspot info: No model named 'nosuch' is loaded");
    snprintf(args, sizeof args, "--server http://127.0.0.1:%d predict --model nosuch --n 3",
             daemon_.port);
    expect_failure("", args, 1, "No model named 'nosuch' is loaded");
    snprintf(args, sizeof args, "units --model cnn --layer 42 --unit 1 --server "
             "http://127.0.0.1:%d", daemon_.port);
    expect_failure("", args, 1, "Model cnn has layers 0 to 9, not 42");
    snprintf(args, sizeof args, "evaluate --models cnn --n 3 --dataset nosuch --server "
             "http://127.0.0.1:%d", daemon_.port);
    expect_failure("", args, 1, "Dataset nosuch is not loaded: no folder data/nosuch");
    /* nobody listens there */
    int port = free_port();
    snprintf(args, sizeof args, "lipschitz --model cnn --server http://127.0.0.1:%d", port);
    char want[128];
    snprintf(want, sizeof want, "cannot reach the server at http://127.0.0.1:%d", port);
    expect_failure("", args, 1, want);
    expect_failure("BLINDSPOT_SERVER=127.0.0.1:9 ", "info cnn", 1, "must start with http://");
}

/* The daemon's refusals of an attack, as its message with exit 1; what
 * only a local run can do, refused as bad usage. */
static void test_cli_attack_remote_errors(void **state)
{
    (void)state;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "BLINDSPOT_SERVER=http://127.0.0.1:%d ", daemon_.port);
    expect_failure(prefix, "attack --model nosuch --dataset mnist --index 1 --target 2", 1,
                   "blindspot attack: No model named 'nosuch' is loaded; GET /v1/models lists");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 1 --target 12", 1,
                   "target 12 is not a class of this model (0..9)");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 5000 --target 2", 1,
                   "mnist/test has samples 0 to 1999, not 5000");
    expect_failure(prefix, "attack --model cnn --dataset nosuch --index 1 --target 2", 1,
                   "Dataset nosuch is not loaded: no folder data/nosuch");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 1 --target 2 "
                   "--method fgsm --param history=3", 1, "params.history does not apply to fgsm");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 1 --target 2 "
                   "--method nosuch", 1, "unknown method \"nosuch\"");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 1 --target 2 "
                   "--invert maybe", 1, "invert is \"auto\", \"yes\" or \"no\"");
    expect_failure(prefix, "attack --model cnn --image tests/run.sh --target 2", 1,
                   "blindspot attack: The image cannot be used");
    expect_failure(prefix, "attack --model cnn --image /nonexistent.png --target 2", 1,
                   "cannot open /nonexistent.png");
    expect_failure(prefix, "attack --model cnn --dataset mnist --index 1 --target 2 "
                   "--models models", 2, "--models names a folder here");
    int port = free_port();
    char args[256], want[128];
    snprintf(args, sizeof args, "attack --server http://127.0.0.1:%d --model cnn --dataset "
             "mnist --index 1 --target 2", port);
    snprintf(want, sizeof want, "cannot reach the server at http://127.0.0.1:%d", port);
    expect_failure("", args, 1, want);
}

/* An HTTP server that answers its requests, one per connection, with the
 * answers given in turn, keeping their heads one after the other. */
typedef struct fake_answer {
    const char *status; /* "404 Not Found" */
    const char *body;   /* JSON */
} fake_answer;

typedef struct fake_server {
    int fd, port;
    const fake_answer *answers;
    int n;
    char head[8192];
} fake_server;

static void *fake_serve(void *arg)
{
    fake_server *f = arg;
    size_t n = 0;
    for (int i = 0; i < f->n; i++) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        size_t start = n;
        ssize_t got;
        while (n + 1 < sizeof f->head &&
               (got = read(c, f->head + n, sizeof f->head - 1 - n)) > 0) {
            n += (size_t)got;
            f->head[n] = '\0';
            if (strstr(f->head + start, "\r\n\r\n"))
                break;
        }
        char answer[1024];
        int len = snprintf(answer, sizeof answer, "HTTP/1.1 %s\r\nContent-Type: "
                           "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                           f->answers[i].status, strlen(f->answers[i].body), f->answers[i].body);
        assert_true(write(c, answer, (size_t)len) == len);
        close(c);
    }
    return NULL;
}

/* Starts f on a loopback port, answering answers[0..n-1]. */
static void fake_start(fake_server *f, const fake_answer *answers, int n, pthread_t *t)
{
    *f = (fake_server){.answers = answers, .n = n};
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    getsockname(f->fd, (struct sockaddr *)&a, &alen);
    f->port = ntohs(a.sin_port);
    pthread_create(t, NULL, fake_serve, f);
}

static void test_cli_sends_token(void **state)
{
    (void)state;
    static const fake_answer answers[] = {{"404 Not Found",
        "{\"error\":{\"code\":\"model_not_found\",\"message\":\"The fake has no models.\"}}"}};
    fake_server f;
    pthread_t t;
    fake_start(&f, answers, 1, &t);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "BLINDSPOT_TOKEN=s3cret BLINDSPOT_SERVER=http://127.0.0.1:%d ",
             f.port);
    expect_failure(prefix, "info models/cnn.safetensors", 1, "The fake has no models.");
    pthread_join(t, NULL);
    close(f.fd);
    assert_non_null(strstr(f.head, "GET /v1/models/cnn HTTP/1.1"));
    assert_non_null(strstr(f.head, "Authorization: Bearer s3cret\r\n"));
}

/* A job is read with ?wait=S, each read blocking on the daemon until the
 * job ends, rather than polled; its result is printed. */
static void test_cli_job_read_waits(void **state)
{
    (void)state;
    static const fake_answer answers[] = {
        {"202 Accepted", "{\"id\":\"j1\",\"state\":\"queued\",\"location\":\"/v1/jobs/j1\"}"},
        {"200 OK", "{\"id\":\"j1\",\"state\":\"running\",\"progress\":{\"done\":0,\"total\":1}}"},
        {"200 OK", "{\"id\":\"j1\",\"state\":\"done\",\"progress\":{\"done\":1,\"total\":1},"
                   "\"result\":{\"model\":\"cnn\",\"method\":\"lbfgs\",\"original\":{\"label\":1},"
                   "\"results\":[]}}"},
    };
    fake_server f;
    pthread_t t;
    fake_start(&f, answers, 3, &t);
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d attack --model cnn --dataset "
             "mnist --index 1 --target 2", tu_bin("blindspot"), f.port);
    assert_int_equal(tu_run(cmd, &out), 0);
    pthread_join(t, NULL);
    close(f.fd);
    assert_string_equal(out, "cnn: label 1, method lbfgs\n");
    free(out);
    assert_non_null(strstr(f.head, "POST /v1/attacks?async=true HTTP/1.1"));
    char *first = strstr(f.head, "GET /v1/jobs/j1?wait=1 HTTP/1.1");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "GET /v1/jobs/j1?wait=1 HTTP/1.1"));
}

static void test_cli_help_documents_server(void **state)
{
    (void)state;
    const char *cmds[] = {"info", "predict", "attack", "evaluate", "lipschitz", "units", ""};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char cmd[256], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s %s --help", tu_bin("blindspot"), cmds[i]);
        assert_int_equal(tu_run(cmd, &out), 0);
        if (!strstr(out, "--server URL") || !strstr(out, "BLINDSPOT_SERVER") ||
            !strstr(out, "BLINDSPOT_TOKEN"))
            fail_msg("blindspot %s --help does not document --server and its variables:\n%s",
                     cmds[i], out);
        free(out);
    }
}

/* `blindspot health`: exit 0 for a ready (or live) daemon, whether named by
 * URL or $BLINDSPOT_SERVER; exit 1 with the reason when nobody listens,
 * when the daemon answers 400 (not ready), and when no answer comes within
 * --timeout (a socket that never accepts), which ends the wait on time. */
static void test_cli_health(void **state)
{
    (void)state;
    char args[256], want[160], prefix[128];
    snprintf(args, sizeof args, "health http://127.0.0.1:%d", daemon_.port);
    snprintf(want, sizeof want, "http://127.0.0.1:%d: ready", daemon_.port);
    expect_failure("", args, 0, want);
    snprintf(args, sizeof args, "health --live http://127.0.0.1:%d/", daemon_.port);
    snprintf(want, sizeof want, "http://127.0.0.1:%d: live", daemon_.port);
    expect_failure("", args, 0, want);
    snprintf(prefix, sizeof prefix, "BLINDSPOT_SERVER=http://127.0.0.1:%d ", daemon_.port);
    expect_failure(prefix, "health", 0, ": ready");
    /* without a URL, the daemon's own address (BLINDSPOT_LISTEN), a
     * wildcard one asked on the loopback */
    snprintf(prefix, sizeof prefix, "BLINDSPOT_LISTEN=0.0.0.0:%d ", daemon_.port);
    snprintf(want, sizeof want, "http://127.0.0.1:%d: ready", daemon_.port);
    expect_failure(prefix, "health", 0, want);
    snprintf(prefix, sizeof prefix, "BLINDSPOT_LISTEN=127.0.0.1:%d ", daemon_.port);
    expect_failure(prefix, "health", 0, want);
    expect_failure("", "health --help", 0, "/v2/health/ready");
    expect_failure("", "health --timeout 0", 2, "--timeout wants a number");

    int port = free_port();
    snprintf(args, sizeof args, "health http://127.0.0.1:%d", port);
    snprintf(want, sizeof want, "blindspot health: cannot reach the server at "
             "http://127.0.0.1:%d: Couldn't connect", port);
    expect_failure("", args, 1, want);
    snprintf(prefix, sizeof prefix, "BLINDSPOT_LISTEN=[::]:%d ", port);
    expect_failure(prefix, "health", 1, want);

    static const fake_answer answers[] = {{"400 Bad Request", "{\"ready\":false}"}};
    fake_server f;
    pthread_t t;
    fake_start(&f, answers, 1, &t);
    snprintf(args, sizeof args, "health http://127.0.0.1:%d", f.port);
    snprintf(want, sizeof want, "blindspot health: http://127.0.0.1:%d/v2/health/ready "
             "answered 400: not ready", f.port);
    expect_failure("", args, 1, want);
    pthread_join(t, NULL);
    close(f.fd);
    assert_non_null(strstr(f.head, "GET /v2/health/ready HTTP/1.1"));

    /* listens, never accepts: the connection is made, no answer comes */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    snprintf(args, sizeof args, "health --timeout 0.5 http://127.0.0.1:%d", ntohs(a.sin_port));
    double start = now_s();
    expect_failure("", args, 1, "Timeout was reached (--timeout 0.5 s)");
    assert_true(now_s() - start < 3);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_raw_png_and_jpeg),
        cmocka_unit_test(test_predict_form),
        cmocka_unit_test(test_predict_json_forms),
        cmocka_unit_test(test_predict_slice),
        cmocka_unit_test(test_predict_errors),
        cmocka_unit_test(test_predict_and_attack_read_samples_alike),
        cmocka_unit_test(test_cli_info_remote),
        cmocka_unit_test(test_cli_predict_remote),
        cmocka_unit_test(test_cli_analysis_remote),
        cmocka_unit_test(test_cli_evaluate_remote),
        cmocka_unit_test(test_cli_attack_remote),
        cmocka_unit_test(test_cli_attack_remote_timeout),
        cmocka_unit_test(test_cli_remote_errors),
        cmocka_unit_test(test_cli_attack_remote_errors),
        cmocka_unit_test(test_cli_sends_token),
        cmocka_unit_test(test_cli_job_read_waits),
        cmocka_unit_test(test_cli_help_documents_server),
        cmocka_unit_test(test_cli_health),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
