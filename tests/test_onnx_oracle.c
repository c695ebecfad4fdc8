/* test_onnx_oracle — imported models against references blindspot did not
 * make: PyTorch's probabilities and input gradients for the classifiers
 * tests/oracle/onnx_models.py exports with torch.onnx.export (make
 * onnx-fixtures: build/onnx-fixtures/index.json names them), and ONNX
 * Runtime's probabilities for PP-OCR's text-direction classifier on the
 * rendered text lines (make ocr: build/ocr/), read here as PNGs through the
 * daemon's image path. Each check prints one line with its measured maximum
 * differences; a missing folder skips with the make target that makes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/image.h"
#include "core/model.h"
#include "core/onnx.h"
#include "tests/testutil.h"

#define FIXTURES "build/onnx-fixtures/"
#define OCR_DIR "build/ocr/"
#define OCR_MODEL OCR_DIR "ch_ppocr_mobile_v2.0_cls_infer.onnx"

#define PROB_TOL 1e-4 /* max abs difference of probabilities */
#define GRAD_TOL 1e-3 /* max abs difference of input gradients over the
                       * largest |gradient| of the sample */

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The raw float32 file dir/name holding exactly n floats; fails otherwise. */
static float *read_floats(const char *dir, const char *name, size_t n)
{
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s%s", dir, name);
    uint8_t *b = tu_read_file(path, &len);
    if (!b || len != n * sizeof(float))
        fail_msg("%s: %zu bytes, expected %zu float32", path, b ? len : 0, n);
    return (float *)b;
}

/* softmax of n logits into p */
static void softmax(const float *z, int n, double *p)
{
    double mx = z[0], sum = 0;
    for (int k = 1; k < n; k++)
        mx = fmax(mx, z[k]);
    for (int k = 0; k < n; k++)
        sum += p[k] = exp((double)z[k] - mx);
    for (int k = 0; k < n; k++)
        p[k] /= sum;
}

/* One export of a fixture model: forward on the inputs, softmax against
 * PyTorch's probabilities, and the gradient of each sample's cross-entropy
 * to its target (dlogits = p - onehot, through bs_model_backward) against
 * PyTorch's, as the largest difference over the sample's largest
 * |gradient|. */
static void check_export(const json_t *model, const json_t *exp_, const float *x,
                         const float *probs, const float *grad)
{
    const char *file = json_string_value(json_object_get(exp_, "file"));
    int opset = (int)json_integer_value(json_object_get(exp_, "opset"));
    int B = (int)json_integer_value(json_object_get(model, "batch"));
    int classes = (int)json_integer_value(json_object_get(model, "classes"));
    const json_t *shape = json_object_get(model, "input_shape"), *targets =
        json_object_get(model, "targets");
    char path[512], err[BS_ERR_LEN];
    snprintf(path, sizeof path, FIXTURES "%s", file);
    double t0 = seconds();
    bs_model *m = bs_onnx_load(path, NULL, err);
    if (!m)
        fail_msg("%s refused: %s", file, err);
    double t_load = seconds() - t0;
    for (int d = 0; d < 3; d++)
        assert_int_equal(m->input_shape[d], (int)json_integer_value(json_array_get(shape, (size_t)d)));
    assert_int_equal(m->classes, classes);
    size_t in = m->input_size;
    bs_workspace *ws = bs_workspace_new(m, B);
    float *dlogits = malloc((size_t)(B * classes) * sizeof *dlogits);
    float *dx = malloc((size_t)B * in * sizeof *dx);
    double *p = malloc((size_t)classes * sizeof *p);
    assert_true(ws && dlogits && dx && p);

    t0 = seconds();
    const float *logits = bs_model_forward(m, ws, x, B);
    double dp = 0;
    for (int b = 0; b < B; b++) {
        softmax(logits + b * classes, classes, p);
        int t = (int)json_integer_value(json_array_get(targets, (size_t)b));
        for (int k = 0; k < classes; k++) {
            dp = fmax(dp, fabs(p[k] - probs[b * classes + k]));
            dlogits[b * classes + k] = (float)(p[k] - (k == t));
        }
    }
    bs_model_backward(m, ws, dlogits, NULL, dx, B);
    double t_run = seconds() - t0;
    double dg_abs = 0, dg_rel = 0;
    for (int b = 0; b < B; b++) {
        double gmax = 0, d = 0;
        for (size_t i = 0; i < in; i++) {
            gmax = fmax(gmax, fabs(grad[b * in + i]));
            d = fmax(d, fabs((double)dx[b * in + i] - grad[b * in + i]));
        }
        dg_abs = fmax(dg_abs, d);
        dg_rel = fmax(dg_rel, d / gmax);
    }
    printf("oracle %-20s opset %2d (%d,%d,%d) x %d: probabilities max abs diff %.1e, "
           "input gradient max abs diff %.1e (%.1e of its largest), load %.1f ms, "
           "forward+backward %.1f ms\n", file, opset, m->input_shape[0], m->input_shape[1],
           m->input_shape[2], B, dp, dg_abs, dg_rel, 1e3 * t_load, 1e3 * t_run);
    if (!(dp <= PROB_TOL) || !(dg_rel <= GRAD_TOL))
        fail_msg("%s: probabilities off by %g (tolerance %g), gradients by %g of their "
                 "largest (tolerance %g)", file, dp, PROB_TOL, dg_rel, GRAD_TOL);
    free(p);
    free(dx);
    free(dlogits);
    bs_workspace_free(ws);
    bs_model_free(m);
}

static void test_pytorch_fixtures(void **state)
{
    (void)state;
    json_t *index = json_load_file(FIXTURES "index.json", 0, NULL);
    if (!index) {
        printf("test_pytorch_fixtures: skipped, no " FIXTURES "index.json (make onnx-fixtures "
               "makes it)\n");
        skip();
    }
    const json_t *models = json_object_get(index, "models");
    int exports = 0;
    assert_true(json_array_size(models) >= 3);
    for (size_t i = 0; i < json_array_size(models); i++) {
        const json_t *model = json_array_get(models, i), *files = json_object_get(model, "files");
        const json_t *shape = json_object_get(model, "input_shape");
        size_t B = (size_t)json_integer_value(json_object_get(model, "batch"));
        size_t classes = (size_t)json_integer_value(json_object_get(model, "classes"));
        size_t in = 1;
        for (size_t d = 0; d < json_array_size(shape); d++)
            in *= (size_t)json_integer_value(json_array_get(shape, d));
        float *x = read_floats(FIXTURES, json_string_value(json_object_get(files, "input")), B * in);
        float *probs = read_floats(FIXTURES, json_string_value(json_object_get(files, "probs")),
                                   B * classes);
        float *grad = read_floats(FIXTURES, json_string_value(json_object_get(files, "grad")),
                                  B * in);
        const json_t *list = json_object_get(model, "exports");
        for (size_t e = 0; e < json_array_size(list); e++, exports++)
            check_export(model, json_array_get(list, e), x, probs, grad);
        free(grad);
        free(probs);
        free(x);
    }
    assert_true(exports >= 4);
    json_decref(index);
}

/* PP-OCR on the rendered PNGs, decoded and converted as the daemon does
 * (RGB, 192x48 already, no inversion), against ONNX Runtime's probabilities
 * on the same lines (cls.ort.f32, in cls.json's order). */
static void test_ppocr_pngs(void **state)
{
    (void)state;
    json_t *summary = json_load_file(OCR_DIR "cls.json", 0, NULL);
    size_t np = 0;
    uint8_t *pb = tu_read_file(OCR_DIR "cls.ort.f32", &np);
    if (!summary || !pb) {
        printf("test_ppocr_pngs: skipped, no " OCR_DIR " (make ocr makes it)\n");
        json_decref(summary);
        free(pb);
        skip();
    }
    char err[BS_ERR_LEN];
    double t0 = seconds();
    bs_model *m = bs_onnx_load(OCR_MODEL, NULL, err);
    if (!m)
        fail_msg("PP-OCR refused: %s", err);
    double t_load = seconds() - t0;
    assert_int_equal(m->classes, 2);
    const json_t *images = json_object_get(summary, "images");
    int n = (int)json_array_size(images);
    assert_true(n > 0);
    assert_int_equal(np, (size_t)n * 2 * sizeof(float));
    const float *ort = (const float *)pb;
    float *x = malloc((size_t)n * m->input_size * sizeof *x);
    assert_non_null(x);
    for (int b = 0; b < n; b++) {
        char path[512];
        snprintf(path, sizeof path, OCR_DIR "%s",
                 json_string_value(json_object_get(json_array_get(images, (size_t)b), "image")));
        size_t len = 0;
        uint8_t *png = tu_read_file(path, &len);
        bs_image img = {0};
        if (!png || bs_image_decode(png, len, 1u << 24, &img, err) ||
            bs_image_to_input(&img, m->input_shape[0], m->input_shape[1], m->input_shape[2],
                              BS_INVERT_NO, x + (size_t)b * m->input_size, NULL, err))
            fail_msg("%s: %s", path, png ? err : "cannot read");
        bs_image_free(&img);
        free(png);
    }
    bs_workspace *ws = bs_workspace_new(m, n);
    assert_non_null(ws);
    t0 = seconds();
    const float *logits = bs_model_forward(m, ws, x, n);
    double t_run = seconds() - t0, dp = 0, p[2];
    for (int b = 0; b < n; b++) {
        const json_t *row = json_array_get(images, (size_t)b);
        softmax(logits + 2 * b, 2, p);
        dp = fmax(dp, fmax(fabs(p[0] - ort[2 * b]), fabs(p[1] - ort[2 * b + 1])));
        const char *answer = json_string_value(json_object_get(row, "answer"));
        if (strcmp(p[1] > p[0] ? "180" : "0", answer) != 0)
            fail_msg("%s: p(180) %g, ONNX Runtime's answer %s",
                     json_string_value(json_object_get(row, "image")), p[1], answer);
    }
    printf("oracle %-20s (3,48,192) x %d PNGs: probabilities max abs diff from ONNX Runtime "
           "%.1e, load %.1f ms, forward %.1f ms\n", "PP-OCR cls", n, dp, 1e3 * t_load,
           1e3 * t_run);
    if (!(dp <= PROB_TOL))
        fail_msg("PP-OCR: probabilities off by %g (tolerance %g)", dp, PROB_TOL);
    bs_workspace_free(ws);
    bs_model_free(m);
    free(x);
    free(pb);
    json_decref(summary);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_ppocr_pngs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
