/* test_onnx_daemon — imported ONNX models through the daemon, end to end:
 * a models folder holding PyTorch's ResNet and MobileNet exports (make
 * onnx-fixtures) and PP-OCR's text-direction classifier with its sidecar
 * (make ocr), and a data folder with mnist and a colour 3x32x32 dataset. The models'
 * documents, a prediction on a text line, L-BFGS turning an upright line to
 * "180" with ONNX Runtime (make ort) reading the returned 8-bit PNG as
 * "180" too, every attack method on the ResNet, Lipschitz bounds, unit
 * analysis of a node named as in the ONNX file, and an evaluation job on
 * the imported models. Without build/onnx-fixtures or build/ocr every test
 * skips, printing which is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/base64.h"
#include "api/image.h"
#include "tests/testhttp.h"
#include "tests/testutil.h"

#define FIXTURES "build/onnx-fixtures/"
#define OCR_DIR "build/ocr/"
#define OCR_FILE "ch_ppocr_mobile_v2.0_cls_infer"
#define OCR "ppocr-cls" /* the resident name of PP-OCR's classifier */
#define SET "blobs"
#define SET_N 24

static daemon_proc dm;
static char *models_dir, *data_dir;
static const char *missing; /* why the tests skip, or NULL */

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    uint8_t *b = tu_read_file(from, &len);
    if (!b || tu_write_file(to, b, len))
        fail_msg("cannot copy %s to %s", from, to);
    free(b);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A split of SET_N colour 32x32 images, (n,C,H,W) bytes of smooth colour
 * blobs, labelled 0..9 in turn: the daemon serves every folder of --data
 * that has a test split, so the imported 3x32x32 models get a dataset of
 * their own shape. */
static void write_split(const char *dir, const char *split, uint32_t seed)
{
    enum { C = 3, H = 32, W = 32, HDR = 4 + 4 * 4 };
    uint8_t *img = malloc(HDR + (size_t)SET_N * C * H * W), lab[8 + SET_N];
    assert_non_null(img);
    memcpy(img, "\0\0\x08\x04", 4);
    put_be32(img + 4, SET_N), put_be32(img + 8, C), put_be32(img + 12, H);
    put_be32(img + 16, W);
    memcpy(lab, "\0\0\x08\x01", 4);
    put_be32(lab + 4, SET_N);
    uint8_t *p = img + HDR;
    for (int n = 0; n < SET_N; n++) {
        lab[8 + n] = (uint8_t)(n % 10);
        for (int c = 0; c < C; c++) {
            seed = seed * 1664525u + 1013904223u;
            double fx = 1 + (seed >> 28), fy = 1 + ((seed >> 24) & 15), ph = (seed & 255) / 40.0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    *p++ = (uint8_t)lround(127.5 + 127.5 * sin(fx * x / 9.0 + ph) *
                                                       cos(fy * y / 11.0 - ph));
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    assert_int_equal(tu_write_file(path, img, (size_t)(p - img)), 0);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    assert_int_equal(tu_write_file(path, lab, sizeof lab), 0);
    free(img);
}

static int setup(void **state)
{
    (void)state;
    struct stat st;
    if (stat(FIXTURES "resnet.onnx", &st) || stat(FIXTURES "mobilenet-op14.onnx", &st))
        missing = FIXTURES " (make onnx-fixtures makes it)";
    else if (stat(OCR_DIR OCR_FILE ".onnx", &st) || stat(OCR_DIR "text1-0.png", &st))
        missing = OCR_DIR " (make ocr makes it)";
    if (missing)
        return 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    models_dir = tu_tmpdir();
    data_dir = tu_tmpdir();
    if (!models_dir || !data_dir)
        return -1;
    char to[512], set[512];
    snprintf(to, sizeof to, "%s/resnet.onnx", models_dir);
    copy_file(FIXTURES "resnet.onnx", to);
    snprintf(to, sizeof to, "%s/mobilenet.onnx", models_dir);
    copy_file(FIXTURES "mobilenet-op14.onnx", to);
    snprintf(to, sizeof to, "%s/" OCR ".onnx", models_dir);
    copy_file(OCR_DIR OCR_FILE ".onnx", to);
    snprintf(to, sizeof to, "%s/" OCR ".json", models_dir);
    copy_file(OCR_DIR OCR_FILE ".json", to);
    snprintf(set, sizeof set, "%s/" SET, data_dir);
    if (mkdir(set, 0755))
        return -1;
    char *mnist = realpath("data/mnist", NULL);
    snprintf(set, sizeof set, "%s/mnist", data_dir);
    if (!mnist || symlink(mnist, set))
        return -1;
    free(mnist);
    snprintf(set, sizeof set, "%s/" SET, data_dir);
    write_split(set, "train", 1);
    write_split(set, "test", 2);
    const char *extra[] = {"--models", models_dir, "--data", data_dir, NULL};
    if (daemon_start(&dm, extra)) {
        fprintf(stderr, "blindspotd did not start; its log is %s\n", dm.log);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (missing)
        return 0;
    int rc = daemon_stop(&dm);
    daemon_cleanup(&dm);
    tu_rmtree(models_dir);
    tu_rmtree(data_dir);
    free(models_dir);
    free(data_dir);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

static void skip_if_missing(const char *test)
{
    if (missing) {
        printf("%s: skipped, no %s\n", test, missing);
        skip();
    }
}

/* POST body (JSON) to path; the reply in r, its status checked. */
static void post(const char *path, const char *body, long status, reply *r)
{
    request_on(dm.port, path, &(req_opts){.method = "POST", .body = body, .len = strlen(body),
                                          .headers = json_body_type, .timeout_ms = 120000}, r);
    if (r->status != status)
        fail_msg("POST %s %s: %ld %s", path, body, r->status, r->body ? r->body : "");
}

/* GET path; the reply in r, 200 checked. */
static void get(const char *path, reply *r)
{
    request_on(dm.port, path, NULL, r);
    if (r->status != 200)
        fail_msg("GET %s: %ld %s", path, r->status, r->body ? r->body : "");
}

static void test_models(void **state)
{
    skip_if_missing("test_models");
    (void)state;
    reply r;
    get("/v1/models", &r);
    const json_t *list = json_object_get(r.json, "models");
    static const struct {
        const char *name;
        int shape[3], classes;
        const char *labels;
    } want[] = {
        {"mobilenet", {3, 32, 32}, 10, NULL},
        {OCR, {3, 48, 192}, 2, "[\"0\",\"180\"]"},
        {"resnet", {3, 32, 32}, 10, "[\"airplane\",\"automobile\",\"bird\",\"cat\",\"deer\","
                                     "\"dog\",\"frog\",\"horse\",\"ship\",\"truck\"]"},
    };
    assert_int_equal((int)json_array_size(list), 3);
    for (int i = 0; i < 3; i++) {
        const json_t *m = json_array_get(list, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(m, "name")), want[i].name);
        for (int d = 0; d < 3; d++)
            assert_int_equal(json_integer_value(json_array_get(json_object_get(m, "input_shape"),
                                                               (size_t)d)), want[i].shape[d]);
        assert_int_equal(json_integer_value(json_object_get(m, "classes")), want[i].classes);
        if (!want[i].labels)
            continue;
        char path[128];
        reply one;
        snprintf(path, sizeof path, "/v1/models/%s", want[i].name);
        get(path, &one);
        const json_t *meta = json_object_get(one.json, "metadata");
        assert_string_equal(json_string_value(json_object_get(meta, "labels")), want[i].labels);
        assert_string_equal(json_string_value(json_object_get(meta, "blindspot.format")), "onnx");
        reply_free(&one);
    }
    reply_free(&r);
}

/* {"png": base64} of a file. Caller frees. */
static char *png_json(const char *path)
{
    size_t len = 0;
    uint8_t *b = tu_read_file(path, &len);
    assert_non_null(b);
    char *s = bs_base64_encode(b, len);
    assert_non_null(s);
    free(b);
    return s;
}

/* ONNX Runtime's probabilities for a PNG the daemon returned (base64), with
 * the preprocessing the sidecar states: (x/255 - 0.5) / 0.5, planes C,H,W. */
static void ort_on_png(const char *b64, float p[2])
{
    char err[BS_ERR_LEN], in[600], out[600], cmd[2048];
    size_t len = 0;
    uint8_t *png = bs_base64_decode(b64, strlen(b64), &len, err);
    assert_non_null(png);
    bs_image img = {0};
    if (bs_image_decode(png, len, 1u << 24, &img, err))
        fail_msg("the returned PNG: %s", err);
    assert_true(img.width == 192 && img.height == 48 && img.channels == 3);
    size_t n = 3 * 48 * 192;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < 48 * 192; i++) {
            double v = lround(img.pixels[i * 3 + (size_t)c] * 255.0); /* the PNG's byte */
            x[(size_t)c * 48 * 192 + i] = (float)((v / 255.0 - 0.5) / 0.5);
        }
    snprintf(in, sizeof in, "%s/adv.f32", dm.dir);
    snprintf(out, sizeof out, "%s/adv.ort.f32", dm.dir);
    assert_int_equal(tu_write_file(in, x, n * sizeof *x), 0);
    snprintf(cmd, sizeof cmd, "node tests/oracle/ort_run.mjs " OCR_DIR OCR_FILE ".onnx %s 3 48 192 %s 2>&1",
             in, out);
    char *log = NULL;
    if (tu_run(cmd, &log) != 0)
        fail_msg("%s: %s", cmd, log ? log : "");
    free(log);
    size_t got = 0;
    float *probs = (float *)tu_read_file(out, &got);
    assert_true(probs && got == 2 * sizeof(float));
    p[0] = probs[0], p[1] = probs[1];
    free(probs);
    free(x);
    bs_image_free(&img);
    free(png);
}

/* PP-OCR: an upright line is "0"; L-BFGS (one step of the c search) to
 * label 1, "180", succeeds, and ONNX Runtime says 180 on the 8-bit PNG. */
static void test_ppocr_flip(void **state)
{
    skip_if_missing("test_ppocr_flip");
    (void)state;
    char *b64 = png_json(OCR_DIR "text1-0.png");
    size_t blen = strlen(b64) + 512;
    char *body = malloc(blen);
    assert_non_null(body);
    reply r;
    snprintf(body, blen, "{\"image\":{\"png\":\"%s\"},\"invert\":\"no\"}", b64);
    post("/v1/models/" OCR "/predict", body, 200, &r);
    assert_int_equal(json_integer_value(json_object_get(r.json, "label")), 0);
    reply_free(&r);

    snprintf(body, blen, "{\"model\":\"" OCR "\",\"image\":{\"png\":\"%s\"},\"invert\":\"no\","
             "\"target\":1,\"method\":\"lbfgs\",\"params\":{\"search_steps\":1}}", b64);
    double t0 = now_s();
    post("/v1/attacks", body, 200, &r);
    double t = now_s() - t0;
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "original"),
                                                        "label")), 0);
    const json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    if (!json_is_true(json_object_get(res, "success")))
        fail_msg("the attack did not flip the line: %s", r.body);
    assert_int_equal(json_integer_value(json_object_get(res, "label")), 1);
    const json_t *image = json_object_get(res, "image");
    assert_string_equal(json_string_value(json_object_get(image, "format")), "png");
    float p[2];
    ort_on_png(json_string_value(json_object_get(image, "data")), p);
    const json_t *norms = json_object_get(res, "norms");
    printf("PP-OCR upright line to 180 by L-BFGS over HTTP in %.1f s: blindspot p(180) %.4f, "
           "ONNX Runtime on the 8-bit PNG p(180) %.4f, L2 %.3f, Linf %.3f\n", t,
           json_number_value(json_object_get(res, "target_probability")), (double)p[1],
           json_number_value(json_object_get(norms, "l2")),
           json_number_value(json_object_get(norms, "linf")));
    if (!(p[1] > p[0]))
        fail_msg("ONNX Runtime reads the adversarial PNG as 0 (p(180) %g)", (double)p[1]);
    reply_free(&r);
    free(body);
    free(b64);
}

/* Every method on the ResNet, two targets each, on a sample of the
 * dataset: each answers with a result per target, and a success is labelled
 * its target. */
static void test_methods(void **state)
{
    skip_if_missing("test_methods");
    (void)state;
    reply r;
    post("/v1/models/resnet/predict", "{\"image\":{\"dataset\":\"" SET "\",\"index\":3}}", 200,
         &r);
    int label = (int)json_integer_value(json_object_get(r.json, "label"));
    reply_free(&r);
    static const char *const methods[][2] = {
        {"lbfgs", "{\"search_steps\":2}"},
        {"adam-l1", "{\"steps\":300}"},
        {"fgsm", "{}"},
        {"pgd", "{}"},
        {"cw-l2", "{\"steps\":100,\"search_steps\":2}"},
    };
    for (size_t k = 0; k < sizeof methods / sizeof *methods; k++) {
        char body[512];
        int t1 = (label + 1) % 10, t2 = (label + 5) % 10;
        snprintf(body, sizeof body, "{\"model\":\"resnet\",\"image\":{\"dataset\":\"" SET
                 "\",\"index\":3},\"target\":[%d,%d],\"method\":\"%s\",\"params\":%s}", t1, t2,
                 methods[k][0], methods[k][1]);
        double t0 = now_s();
        post("/v1/attacks", body, 200, &r);
        const json_t *results = json_object_get(r.json, "results");
        assert_int_equal((int)json_array_size(results), 2);
        int ok = 0;
        for (size_t i = 0; i < 2; i++) {
            const json_t *res = json_array_get(results, i);
            assert_int_equal(json_integer_value(json_object_get(res, "target")), i ? t2 : t1);
            assert_true(json_is_boolean(json_object_get(res, "success")));
            if (json_is_true(json_object_get(res, "success"))) {
                ok++;
                assert_int_equal(json_integer_value(json_object_get(res, "label")), i ? t2 : t1);
            }
        }
        printf("resnet %-8s targets %d,%d: %d of 2 reached in %.2f s\n", methods[k][0], t1, t2,
               ok, now_s() - t0);
        reply_free(&r);
    }
}

static void test_lipschitz(void **state)
{
    skip_if_missing("test_lipschitz");
    (void)state;
    reply r;
    get("/v1/models/resnet/lipschitz", &r);
    const json_t *layers = json_object_get(r.json, "layers");
    assert_int_equal((int)json_array_size(layers), 16);
    for (size_t i = 0; i < json_array_size(layers); i++) {
        double b = json_number_value(json_object_get(json_array_get(layers, i), "bound"));
        if (!(isfinite(b) && b > 0))
            fail_msg("node %zu: bound %g", i, b);
    }
    double product = json_number_value(json_object_get(r.json, "product"));
    assert_true(isfinite(product) && product > 0);
    printf("resnet Lipschitz bound of the network %.4g\n", product);
    reply_free(&r);
}

/* units names the residual Add by its ONNX name, and by its index: the
 * same images; an unknown name is 422 layer_out_of_range. */
static void test_units_by_node_name(void **state)
{
    skip_if_missing("test_units_by_node_name");
    (void)state;
    reply r, by_index;
    get("/v1/models/resnet", &r);
    const json_t *layers = json_object_get(r.json, "layers");
    int idx = -1;
    for (size_t i = 0; i < json_array_size(layers); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(layers, i), "name"));
        if (name && !strcmp(name, "/block2/Add"))
            idx = (int)i;
    }
    assert_true(idx > 0);
    reply_free(&r);

    post("/v1/models/resnet/units", "{\"layer\":\"/block2/Add\",\"direction\":3,\"k\":4,"
         "\"dataset\":\"" SET "\"}", 200, &r);
    char body[256];
    snprintf(body, sizeof body, "{\"layer\":%d,\"direction\":3,\"k\":4,\"dataset\":\"" SET "\"}",
             idx);
    post("/v1/models/resnet/units", body, 200, &by_index);
    const json_t *top = json_object_get(r.json, "indices");
    if (json_array_size(top) != 4)
        fail_msg("not 4 images: %s", r.body);
    assert_true(json_equal(top, json_object_get(by_index.json, "indices")));
    assert_true(json_equal(json_object_get(r.json, "scores"),
                           json_object_get(by_index.json, "scores")));
    reply_free(&by_index);
    reply_free(&r);

    post("/v1/models/resnet/units", "{\"layer\":\"/block9/Add\",\"direction\":0,\"dataset\":\""
         SET "\"}", 422, &r);
    assert_error(&r, 422, "layer_out_of_range");
    reply_free(&r);
}

/* An evaluation job over the colour dataset on the two imported 3x32x32
 * models; one over mnist is refused 422 shape_mismatch. */
static void test_evaluation(void **state)
{
    skip_if_missing("test_evaluation");
    (void)state;
    reply r;
    post("/v1/evaluations", "{\"models\":[\"resnet\"],\"n\":2}", 422, &r);
    assert_error(&r, 422, "shape_mismatch");
    reply_free(&r);

    double t0 = now_s();
    post("/v1/evaluations", "{\"models\":[\"resnet\",\"mobilenet\"],\"dataset\":\"" SET "\","
         "\"n\":4,\"seed\":1,\"params\":{\"search_steps\":2}}", 202, &r);
    char location[256];
    assert_non_null(header_of(&r, "Location", location, sizeof location));
    reply_free(&r);
    for (;;) {
        get(location, &r);
        const char *st = json_string_value(json_object_get(r.json, "state"));
        if (strcmp(st, "queued") && strcmp(st, "running"))
            break;
        if (now_s() - t0 > 120)
            fail_msg("the evaluation is still %s after 120 s", st);
        reply_free(&r);
        usleep(100000);
    }
    if (strcmp(json_string_value(json_object_get(r.json, "state")), "done"))
        fail_msg("the evaluation ended: %s", r.body);
    const json_t *t1 = json_object_get(json_object_get(r.json, "result"), "table1");
    if (!json_object_get(t1, "resnet") || !json_object_get(t1, "mobilenet"))
        fail_msg("table1 without both models: %s", r.body);
    printf("evaluation of 4 images x 2 imported models in %.1f s\n", now_s() - t0);
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_ppocr_flip),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_lipschitz),
        cmocka_unit_test(test_units_by_node_name),
        cmocka_unit_test(test_evaluation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
