/* test_colour — colour images of any size through every path of the daemon
 * and the command line: RGB models of a non-square (3,48,192) and a square
 * (3,32,32) input and a gray one of as many values (1,48,64), made here
 * (random weights, saved with core/model_file.h
 * into a models folder of their own), and colour IDX datasets in both
 * layouts, (n,H,W,3) and (n,3,H,W), in a data folder of their own. An
 * upload of another size is attacked under each resize mode: the input the
 * answer echoes has the mode's geometry, the returned PNG is RGB (colour
 * type 2) of the model's size and the daemon's predict calls it the target.
 * The norms are recomputed over all channels from the returned floats;
 * Accept: image/png, JPEG output, dataset samples, v2 infer with [1,3,H,W]
 * and the refusals of a bad resize are checked too. */
#include "api/base64.h"
#include "api/image.h"
#include "core/dataset.h"
#include "core/idx.h"
#include "core/model.h"
#include "core/model_file.h"
#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define CLASSES 4
#define LINE_H 48
#define LINE_W 192
#define N_SAMPLES 4

static char *scratch;
static char models_dir[512], data_dir[512], upload_path[600];
static daemon_proc colour_daemon;

/* The upload: 80x40 (an aspect ratio of 2 where the line model takes 4), a
 * one-pixel green frame, red bands in rows 1..9 and 30..38, blue between. */
#define UP_W 80
#define UP_H 40
static uint8_t *upload;
static size_t upload_len;

static void upload_make(void)
{
    uint8_t px[UP_W * UP_H * 3];
    for (int y = 0; y < UP_H; y++)
        for (int x = 0; x < UP_W; x++) {
            uint8_t *p = px + (y * UP_W + x) * 3;
            int frame = y == 0 || y == UP_H - 1 || x == 0 || x == UP_W - 1;
            int red = y < 10 || y >= 30;
            p[0] = !frame && red ? 255 : 0;
            p[1] = frame ? 255 : 0;
            p[2] = !frame && !red ? 255 : 0;
        }
    char err[BS_ERR_LEN];
    if (bs_image_encode(px, UP_W, UP_H, 3, BS_IMAGE_PNG, 0, &upload, &upload_len, err))
        fail_msg("encode: %s", err);
}

/* Pixel value of dataset sample i at (y,x), channel c. */
static uint8_t sample_byte(int i, int y, int x, int c)
{
    return (uint8_t)((i * 31 + y * 7 + x * 3 + c * 85) % 256);
}

static void save_model(const char *name, const char *spec, int C, int H, int W, uint64_t seed)
{
    bs_layer layers[BS_MAX_LAYERS];
    int n;
    char err[BS_ERR_LEN], path[700];
    if (bs_arch_parse(spec, CLASSES, layers, &n, err))
        fail_msg("%s: %s", spec, err);
    bs_model *m = bs_model_build(layers, n, (const int[3]){C, H, W}, err);
    if (!m)
        fail_msg("%s: %s", spec, err);
    bs_model_init(m, seed);
    snprintf(path, sizeof path, "%s/%s.safetensors", models_dir, name);
    if (bs_model_save(m, path, err))
        fail_msg("%s: %s", path, err);
    bs_model_free(m);
}

/* data_dir/name/{split}-images (n,H,W,3) when channels_last, else
 * (n,3,H,W), and labels i % CLASSES. */
static void save_dataset(const char *name, const char *split, int H, int W, int channels_last)
{
    char dir[700], path[800], err[BS_ERR_LEN];
    snprintf(dir, sizeof dir, "%s/%s", data_dir, name);
    mkdir(dir, 0755);
    size_t count = (size_t)N_SAMPLES * 3 * H * W;
    uint8_t *px = malloc(count), labels[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) {
        labels[i] = (uint8_t)(i % CLASSES);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    size_t at = channels_last
                                    ? (((size_t)i * H + y) * W + x) * 3 + c
                                    : (((size_t)i * 3 + c) * H + y) * W + x;
                    px[at] = sample_byte(i, y, x, c);
                }
    }
    bs_idx im = {.type = BS_IDX_UBYTE, .ndims = 4, .count = count, .data = px};
    uint32_t dims[4] = {N_SAMPLES, channels_last ? H : 3, channels_last ? W : H,
                        channels_last ? 3 : W};
    memcpy(im.dims, dims, sizeof dims);
    bs_idx lb = {.type = BS_IDX_UBYTE, .ndims = 1, .dims = {N_SAMPLES}, .count = N_SAMPLES,
                 .data = labels};
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    if (bs_idx_write(path, &im, err))
        fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (bs_idx_write(path, &lb, err))
        fail_msg("%s", err);
    free(px);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    scratch = tu_tmpdir();
    snprintf(models_dir, sizeof models_dir, "%s/models", scratch);
    snprintf(data_dir, sizeof data_dir, "%s/data", scratch);
    snprintf(upload_path, sizeof upload_path, "%s/upload.png", scratch);
    mkdir(models_dir, 0755);
    mkdir(data_dir, 0755);
    save_model("rgb-line", "cnn:4,8:16", 3, LINE_H, LINE_W, 7);
    save_model("rgb-square", "fc:32", 3, 32, 32, 11);
    /* as many values as rgb-square (3072), in one channel */
    save_model("gray-wide", "fc", 1, 48, 64, 13);
    save_dataset("lines", "test", LINE_H, LINE_W, 1);
    save_dataset("tiles", "test", 32, 32, 0);
    save_dataset("tiles", "train", 32, 32, 0);
    upload_make();
    if (tu_write_file(upload_path, upload, upload_len))
        return -1;
    const char *extra[] = {"--models", models_dir, "--data", data_dir, NULL};
    if (daemon_start(&colour_daemon, extra)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", colour_daemon.log);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&colour_daemon);
    daemon_cleanup(&colour_daemon);
    tu_rmtree(scratch);
    free(scratch);
    free(upload);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- helpers ---------------------------------------------------------------- */

static void post_json(const char *path, const char *body, const char *const *headers,
                      reply *r)
{
    req_opts o = {.method = "POST", .headers = headers ? headers : json_body_type,
                  .body = body, .len = strlen(body)};
    request_on(colour_daemon.port, path, &o, r);
}

/* Checks a PNG's bytes: signature, IHDR of W x H, 8 bits, colour type 2. */
static void assert_rgb_png(const uint8_t *png, size_t len, int W, int H)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_true(len > 33);
    assert_memory_equal(png, sig, 8);
    assert_memory_equal(png + 12, "IHDR", 4);
    uint32_t w = (uint32_t)png[16] << 24 | png[17] << 16 | png[18] << 8 | png[19];
    uint32_t h = (uint32_t)png[20] << 24 | png[21] << 16 | png[22] << 8 | png[23];
    assert_int_equal(w, W);
    assert_int_equal(h, H);
    assert_int_equal(png[24], 8); /* bit depth */
    assert_int_equal(png[25], 2); /* colour type: truecolour RGB */
}

/* An answer's image document {"format", "width", "height", "channels",
 * "data": base64} decoded into img, its bytes in *bytes (caller frees). */
static void decode_doc(const json_t *doc, const char *format, bs_image *img, uint8_t **bytes,
                       size_t *len)
{
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "format")), format);
    assert_int_equal(json_integer_value(json_object_get(doc, "channels")), 3);
    const char *b64 = json_string_value(json_object_get(doc, "data"));
    assert_non_null(b64);
    char err[BS_ERR_LEN];
    *bytes = bs_base64_decode(b64, strlen(b64), len, err);
    assert_non_null(*bytes);
    if (bs_image_decode(*bytes, *len, 1 << 20, img, err))
        fail_msg("decode: %s", err);
    assert_int_equal(img->channels, 3);
    assert_int_equal(img->width, json_integer_value(json_object_get(doc, "width")));
    assert_int_equal(img->height, json_integer_value(json_object_get(doc, "height")));
}

/* The daemon's label for PNG bytes (converted as they are: no inversion). */
static int predict_png(const char *model, const uint8_t *png, size_t len, const char *query)
{
    static const char *const png_type[] = {"Content-Type: image/png", NULL};
    char path[256];
    snprintf(path, sizeof path, "/v1/models/%s/predict?invert=no%s", model, query);
    req_opts o = {.method = "POST", .headers = png_type, .body = (const char *)png, .len = len};
    reply r;
    request_on(colour_daemon.port, path, &o, &r);
    assert_int_equal(r.status, 200);
    int label = (int)json_integer_value(json_object_get(r.json, "label"));
    reply_free(&r);
    return label;
}

static float px(const bs_image *img, int y, int x, int c)
{
    return img->pixels[((size_t)y * img->width + x) * 3 + c];
}

/* Whether columns x0..x1-1 of every row are exactly the upload's green. */
static int columns_green(const bs_image *img, int x0, int x1)
{
    for (int y = 0; y < img->height; y++)
        for (int x = x0; x < x1; x++)
            if (px(img, y, x, 0) != 0.0f || px(img, y, x, 1) != 1.0f || px(img, y, x, 2) != 0.0f)
                return 0;
    return 1;
}

static float max_channel(const bs_image *img, int c, int x0, int x1)
{
    float m = 0.0f;
    for (int y = 0; y < img->height; y++)
        for (int x = x0; x < x1; x++)
            m = fmaxf(m, px(img, y, x, c));
    return m;
}

/* ---- the core: a channels-last IDX file --------------------------------------- */

static void test_dataset_channels_last_reordered(void **state)
{
    (void)state;
    bs_dataset d;
    char err[BS_ERR_LEN];
    if (bs_dataset_load(data_dir, "lines", "test", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.n, N_SAMPLES);
    assert_int_equal(d.shape[0], 3);
    assert_int_equal(d.shape[1], LINE_H);
    assert_int_equal(d.shape[2], LINE_W);
    size_t plane = LINE_H * LINE_W;
    for (int i = 0; i < N_SAMPLES; i++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < (int)plane; p += 37)
                assert_true(d.images[(size_t)i * 3 * plane + c * plane + p] ==
                            sample_byte(i, p / LINE_W, p % LINE_W, c) / 255.0f);
    bs_dataset_free(&d);
    /* the channels-first file keeps its order */
    if (bs_dataset_load(data_dir, "tiles", "test", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.shape[0], 3);
    assert_true(d.images[2 * 1024 + 5 * 32 + 7] == sample_byte(0, 5, 7, 2) / 255.0f);
    bs_dataset_free(&d);
}

/* ---- datasets through the daemon --------------------------------------------- */

static void test_datasets_listed_with_colour_shapes(void **state)
{
    (void)state;
    reply r;
    request_on(colour_daemon.port, "/v1/datasets", NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *list = json_object_get(r.json, "datasets");
    int found = 0;
    size_t i;
    const json_t *ds;
    json_array_foreach(list, i, ds) {
        const char *name = json_string_value(json_object_get(ds, "name"));
        const json_t *split = json_array_get(json_object_get(ds, "splits"), 0);
        const json_t *shape = json_object_get(split, "shape");
        if (!strcmp(name, "lines")) {
            found |= 1;
            /* only a test split in the folder: only it is served */
            assert_int_equal(json_array_size(json_object_get(ds, "splits")), 1);
            assert_int_equal(json_integer_value(json_array_get(shape, 0)), 3);
            assert_int_equal(json_integer_value(json_array_get(shape, 1)), LINE_H);
            assert_int_equal(json_integer_value(json_array_get(shape, 2)), LINE_W);
        } else if (!strcmp(name, "tiles")) {
            found |= 2;
            assert_int_equal(json_array_size(json_object_get(ds, "splits")), 2);
        }
    }
    assert_int_equal(found, 3);
    reply_free(&r);
}

static void test_sample_png_is_rgb(void **state)
{
    (void)state;
    reply r;
    request_on(colour_daemon.port, "/v1/datasets/lines/test/2", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_rgb_png((const uint8_t *)r.body, r.len, LINE_W, LINE_H);
    bs_image img;
    char err[BS_ERR_LEN];
    if (bs_image_decode((const uint8_t *)r.body, r.len, 1 << 20, &img, err))
        fail_msg("%s", err);
    for (int y = 0; y < LINE_H; y++)
        for (int x = 0; x < LINE_W; x++)
            for (int c = 0; c < 3; c++)
                assert_true(px(&img, y, x, c) == sample_byte(2, y, x, c) / 255.0f);
    bs_image_free(&img);
    reply_free(&r);

    /* as JSON: the (C,H,W) planes one after another */
    request_on(colour_daemon.port, "/v1/datasets/lines/test/2?format=json", NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *shape = json_object_get(r.json, "shape"), *data = json_object_get(r.json, "data");
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), 3);
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), LINE_H);
    assert_int_equal(json_integer_value(json_array_get(shape, 2)), LINE_W);
    assert_int_equal(json_array_size(data), 3 * LINE_H * LINE_W);
    size_t green_5_7 = (size_t)LINE_H * LINE_W + 5 * LINE_W + 7;
    assert_float_equal(json_number_value(json_array_get(data, green_5_7)),
                       sample_byte(2, 5, 7, 1) / 255.0, 1e-6);
    reply_free(&r);
}

/* ---- attacks of an upload of another size, under each resize mode ------------- */

static const char *form_resize;
static char form_target[8];

/* A form of n text fields and the upload as the file part "image". */
static curl_mime *upload_form(CURL *c, const char *const (*fields)[2], size_t n)
{
    curl_mime *m = curl_mime_init(c);
    for (size_t i = 0; i < n; i++) {
        curl_mimepart *p = curl_mime_addpart(m);
        curl_mime_name(p, fields[i][0]);
        curl_mime_data(p, fields[i][1], CURL_ZERO_TERMINATED);
    }
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "image");
    curl_mime_filename(p, "upload.png");
    curl_mime_type(p, "image/png");
    curl_mime_data(p, (const char *)upload, upload_len);
    return m;
}

static curl_mime *attack_form(CURL *c)
{
    /* a short search: a model of random weights gives in quickly */
    const char *const fields[][2] = {{"model", "rgb-line"}, {"target", form_target},
                                     {"resize", form_resize}, {"report", "rgb-line"},
                                     {"params", "{\"search_steps\": 3}"}};
    return upload_form(c, fields, sizeof fields / sizeof *fields);
}

/* The input as the model saw it under mode: the geometry each mode makes
 * of the 80x40 upload in a 192x48 input. */
static void assert_geometry(const char *mode, const bs_image *in)
{
    assert_int_equal(in->width, LINE_W);
    assert_int_equal(in->height, LINE_H);
    if (!strcmp(mode, "stretch")) {
        /* the whole upload, its red bands included, across the whole width */
        assert_true(max_channel(in, 0, 0, 8) > 0.9f);
        assert_true(max_channel(in, 0, LINE_W - 8, LINE_W) > 0.9f);
    } else if (!strcmp(mode, "crop")) {
        /* the centred 80x20 rows 10..29: the blue middle, no red at all */
        assert_true(max_channel(in, 0, 0, LINE_W) == 0.0f);
        assert_true(max_channel(in, 2, 0, LINE_W) == 1.0f);
    } else if (!strcmp(mode, "pad")) {
        /* 96 columns centred, the frame's green on both sides */
        assert_true(columns_green(in, 0, 48));
        assert_true(columns_green(in, 144, LINE_W));
        assert_true(max_channel(in, 0, 48, 144) > 0.9f);
    } else {
        /* pad-right: full height, 96 columns at the left, green after */
        assert_true(columns_green(in, 96, LINE_W));
        assert_true(max_channel(in, 0, 0, 4) > 0.9f);
        assert_true(max_channel(in, 0, 90, 95) > 0.9f); /* the upload's right end */
    }
}

static void attack_with_resize(const char *mode)
{
    char query[64];
    snprintf(query, sizeof query, "&resize=%s", mode);
    int label = predict_png("rgb-line", upload, upload_len, query);
    int target = (label + 1) % CLASSES;
    snprintf(form_target, sizeof form_target, "%d", target);
    form_resize = mode;
    req_opts o = {.method = "POST", .form = attack_form, .timeout_ms = 120000};
    reply r;
    request_on(colour_daemon.port, "/v1/attacks", &o, &r);
    if (r.status != 200)
        fail_msg("%s: %ld %s", mode, r.status, r.body);
    const json_t *input = json_object_get(r.json, "input");
    assert_false(json_is_true(json_object_get(input, "inverted"))); /* colour: never by auto */
    bs_image in, adv;
    uint8_t *in_png, *adv_png;
    size_t in_len, adv_len;
    decode_doc(input, "png", &in, &in_png, &in_len);
    assert_rgb_png(in_png, in_len, LINE_W, LINE_H);
    assert_geometry(mode, &in);

    const json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "target")), target);
    assert_true(json_is_true(json_object_get(res, "success")));
    decode_doc(json_object_get(res, "image"), "png", &adv, &adv_png, &adv_len);
    assert_rgb_png(adv_png, adv_len, LINE_W, LINE_H);
    /* the daemon itself calls the returned PNG the target */
    assert_int_equal(predict_png("rgb-line", adv_png, adv_len, ""), target);
    /* and the perturbation is in colour: some pixel's channels differ */
    int coloured = 0;
    for (int y = 0; y < LINE_H && !coloured; y++)
        for (int x = 0; x < LINE_W && !coloured; x++)
            coloured = px(&adv, y, x, 0) - px(&in, y, x, 0) !=
                       px(&adv, y, x, 1) - px(&in, y, x, 1);
    assert_true(coloured);
    bs_image_free(&in);
    bs_image_free(&adv);
    free(in_png);
    free(adv_png);
    reply_free(&r);
}

static void test_attack_upload_stretch(void **state)
{
    (void)state;
    attack_with_resize("stretch");
}

static void test_attack_upload_crop(void **state)
{
    (void)state;
    attack_with_resize("crop");
}

static void test_attack_upload_pad(void **state)
{
    (void)state;
    attack_with_resize("pad");
}

static void test_attack_upload_pad_right(void **state)
{
    (void)state;
    attack_with_resize("pad-right");
}

/* ---- norms over all channels, raw floats ---------------------------------------- */

static float square_pixel(size_t i)
{
    return (float)((i * 37) % 101) / 100.0f;
}

static void test_norms_over_channels(void **state)
{
    (void)state;
    size_t n = 3 * 32 * 32;
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, json_real(square_pixel(i)));
    json_t *req = json_pack("{s:s, s:s, s:{s:o, s:[i,i,i]}, s:s, s:[s]}", "model", "rgb-square",
                            "target", "all", "image", "data", data, "shape", 3, 32, 32,
                            "image_format", "floats", "report", "rgb-square");
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    reply r;
    post_json("/v1/attacks", body, NULL, &r);
    free(body);
    assert_int_equal(r.status, 200);
    const json_t *results = json_object_get(r.json, "results");
    assert_int_equal(json_array_size(results), CLASSES - 1);
    size_t k;
    const json_t *res;
    json_array_foreach(results, k, res) {
        const json_t *img = json_object_get(res, "image");
        assert_string_equal(json_string_value(json_object_get(img, "format")), "floats");
        assert_int_equal(json_integer_value(json_object_get(img, "channels")), 3);
        assert_int_equal(json_integer_value(json_object_get(img, "height")), 32);
        assert_int_equal(json_integer_value(json_object_get(img, "width")), 32);
        const json_t *adv = json_object_get(img, "data");
        assert_int_equal(json_array_size(adv), n);
        double l2 = 0.0, linf = 0.0;
        for (size_t i = 0; i < n; i++) {
            double d = json_number_value(json_array_get(adv, i)) - (double)square_pixel(i);
            l2 += d * d;
            linf = fmax(linf, fabs(d));
        }
        const json_t *norms = json_object_get(res, "norms");
        assert_true(l2 > 0.0);
        assert_float_equal(json_number_value(json_object_get(norms, "l2")), sqrt(l2), 1e-6);
        assert_float_equal(json_number_value(json_object_get(norms, "distortion")),
                           sqrt(l2 / (double)n), 1e-7);
        assert_float_equal(json_number_value(json_object_get(norms, "linf")), linf, 1e-7);
    }
    reply_free(&r);
}

/* ---- a dataset reference, Accept: image/png, JPEG -------------------------- */

static int predict_dataset_label(const char *model, const char *dataset, int index)
{
    char body[256], path[128];
    snprintf(body, sizeof body, "{\"image\": {\"dataset\": \"%s\", \"index\": %d}}", dataset,
             index);
    snprintf(path, sizeof path, "/v1/models/%s/predict", model);
    reply r;
    post_json(path, body, NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *input = json_object_get(r.json, "input");
    assert_int_equal(json_integer_value(json_object_get(input, "channels")), 3);
    int label = (int)json_integer_value(json_object_get(r.json, "label"));
    reply_free(&r);
    return label;
}

static void test_attack_dataset_accept_png(void **state)
{
    (void)state;
    int target = (predict_dataset_label("rgb-line", "lines", 1) + 1) % CLASSES;
    char body[256];
    snprintf(body, sizeof body, "{\"model\": \"rgb-line\", \"target\": %d, \"image\": "
             "{\"dataset\": \"lines\", \"index\": 1}, \"params\": {\"search_steps\": 3}}",
             target);
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: image/png", NULL};
    reply r;
    post_json("/v1/attacks", body, headers, &r);
    assert_int_equal(r.status, 200);
    char type[64];
    assert_string_equal(header_of(&r, "Content-Type", type, sizeof type), "image/png");
    assert_rgb_png((const uint8_t *)r.body, r.len, LINE_W, LINE_H);
    assert_int_equal(predict_png("rgb-line", (const uint8_t *)r.body, r.len, ""), target);
    reply_free(&r);
}

static void test_attack_jpeg_output_rgb(void **state)
{
    (void)state;
    int target = (predict_dataset_label("rgb-square", "tiles", 2) + 1) % CLASSES;
    char body[256];
    snprintf(body, sizeof body, "{\"model\": \"rgb-square\", \"target\": %d, \"image\": "
             "{\"dataset\": \"tiles\", \"index\": 2}, \"image_format\": \"jpeg\"}", target);
    reply r;
    post_json("/v1/attacks", body, NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    bs_image img;
    uint8_t *jpeg;
    size_t len;
    decode_doc(json_object_get(res, "image"), "jpeg", &img, &jpeg, &len);
    assert_int_equal(img.width, 32);
    assert_int_equal(img.height, 32);
    assert_int_equal(jpeg[0], 0xFF);
    assert_int_equal(jpeg[1], 0xD8);
    bs_image_free(&img);
    free(jpeg);
    reply_free(&r);
}

/* ---- predict and v2 infer on RGB ----------------------------------------------- */

static curl_mime *predict_form(CURL *c)
{
    const char *const fields[][2] = {{"resize", form_resize}};
    return upload_form(c, fields, 1);
}

static void test_predict_rgb_form_and_json(void **state)
{
    (void)state;
    bs_image in;
    uint8_t *png;
    size_t len;
    /* a form: the file and resize crop */
    form_resize = "crop";
    req_opts o = {.method = "POST", .form = predict_form};
    reply f;
    request_on(colour_daemon.port, "/v1/models/rgb-line/predict", &o, &f);
    assert_int_equal(f.status, 200);
    decode_doc(json_object_get(f.json, "input"), "png", &in, &png, &len);
    assert_geometry("crop", &in);
    bs_image_free(&in);
    free(png);
    reply_free(&f);
    form_resize = "zoom";
    request_on(colour_daemon.port, "/v1/models/rgb-line/predict", &o, &f);
    assert_error(&f, 422, "invalid_resize");
    reply_free(&f);

    /* JSON: the base64 upload with resize pad */
    char *b64 = bs_base64_encode(upload, upload_len);
    json_t *req = json_pack("{s:{s:s}, s:s}", "image", "png", b64, "resize", "pad");
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    free(b64);
    reply r;
    post_json("/v1/models/rgb-line/predict", body, NULL, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "probabilities")), CLASSES);
    decode_doc(json_object_get(r.json, "input"), "png", &in, &png, &len);
    assert_geometry("pad", &in);
    bs_image_free(&in);
    free(png);
    reply_free(&r);
}

static void test_v2_infer_rgb(void **state)
{
    (void)state;
    size_t n = 3 * 32 * 32;
    json_t *data = json_array(), *image = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(data, json_real(square_pixel(i)));
        json_array_append_new(image, json_real(square_pixel(i)));
    }
    json_t *req = json_pack("{s:[{s:s, s:[i,i,i,i], s:s, s:o}]}", "inputs", "name", "input",
                            "shape", 1, 3, 32, 32, "datatype", "FP32", "data", data);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    reply r;
    post_json("/v2/models/rgb-square/infer", body, NULL, &r);
    free(body);
    assert_int_equal(r.status, 200);
    const json_t *probs = json_object_get(json_array_get(json_object_get(r.json, "outputs"), 0),
                                          "data");
    assert_int_equal(json_array_size(probs), CLASSES);
    int best = 0;
    for (int c = 1; c < CLASSES; c++)
        if (json_number_value(json_array_get(probs, c)) >
            json_number_value(json_array_get(probs, best)))
            best = c;
    reply_free(&r);
    /* the same floats through /v1 predict: the same label */
    req = json_pack("{s:{s:o, s:[i,i,i]}}", "image", "data", image, "shape", 3, 32, 32);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    post_json("/v1/models/rgb-square/predict", body, NULL, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "label")), best);
    reply_free(&r);
}

/* ---- refusals --------------------------------------------------------------------- */

static void test_bad_resize_refused_everywhere(void **state)
{
    (void)state;
    static const char *const bodies[][2] = {
        {"/v1/attacks", "{\"model\": \"rgb-line\", \"target\": 1, \"resize\": \"zoom\", "
                        "\"image\": {\"dataset\": \"lines\", \"index\": 0}}"},
        {"/v1/attacks", "{\"model\": \"rgb-line\", \"target\": 1, \"resize\": 3, "
                        "\"image\": {\"dataset\": \"lines\", \"index\": 0}}"},
        {"/v1/models/rgb-line/predict", "{\"image\": {\"dataset\": \"lines\", \"index\": 0}, "
                                        "\"resize\": \"Crop\"}"},
    };
    reply r;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        post_json(bodies[i][0], bodies[i][1], NULL, &r);
        assert_error(&r, 422, "invalid_resize");
        reply_free(&r);
    }

    snprintf(form_target, sizeof form_target, "1");
    form_resize = "zoom";
    req_opts o = {.method = "POST", .form = attack_form};
    request_on(colour_daemon.port, "/v1/attacks", &o, &r);
    assert_error(&r, 422, "invalid_resize");
    reply_free(&r);

    static const char *const png_type[] = {"Content-Type: image/png", NULL};
    req_opts raw = {.method = "POST", .headers = png_type, .body = (const char *)upload,
                    .len = upload_len};
    request_on(colour_daemon.port, "/v1/models/rgb-line/predict?resize=zoom", &raw, &r);
    assert_error(&r, 422, "invalid_resize");
    reply_free(&r);
}

/* Another size, or as many values in another number of channels: a
 * colour sample is no input for a gray model, nor a gray model a reporter
 * on a colour attack. */
static void test_other_shape_refused(void **state)
{
    (void)state;
    static const char *const bodies[][2] = {
        {"/v1/attacks", "{\"model\": \"rgb-line\", \"target\": 1, "
                        "\"image\": {\"dataset\": \"tiles\", \"index\": 0}}"},
        {"/v1/attacks", "{\"model\": \"gray-wide\", \"target\": 1, "
                        "\"image\": {\"dataset\": \"tiles\", \"index\": 0}}"},
        {"/v1/attacks", "{\"model\": \"rgb-square\", \"target\": 1, \"report\": [\"gray-wide\"], "
                        "\"image\": {\"dataset\": \"tiles\", \"index\": 0}}"},
        {"/v1/models/gray-wide/predict", "{\"image\": {\"dataset\": \"tiles\", \"index\": 0}}"},
        {"/v1/models/gray-wide/predict", "{\"dataset\": \"tiles\"}"},
    };
    reply r;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        post_json(bodies[i][0], bodies[i][1], NULL, &r);
        if (r.status != 422)
            fail_msg("%s %s: %ld %s", bodies[i][0], bodies[i][1], r.status, r.body);
        assert_error(&r, 422, "shape_mismatch");
        reply_free(&r);
    }
    /* by default the models that take the same input report: not gray-wide */
    post_json("/v1/attacks", "{\"model\": \"rgb-square\", \"target\": 1, \"image\": "
              "{\"dataset\": \"tiles\", \"index\": 1}}", NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *preds = json_object_get(json_array_get(json_object_get(r.json, "results"), 0),
                                          "predictions");
    assert_int_equal(json_array_size(preds), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(preds, 0), "model")),
                        "rgb-square");
    reply_free(&r);
}

/* ---- the command line ------------------------------------------------------------- */

/* Runs the command line cmd (its --json answer on stdout), checks its exit
 * status, and decodes the answer's input into in (caller frees); the
 * answer itself is returned (caller frees). */
static json_t *cli_answer(const char *cmd, int status, bs_image *in)
{
    char *out = NULL;
    assert_int_equal(tu_run(cmd, &out), status);
    json_t *doc = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(doc);
    uint8_t *png;
    size_t len;
    decode_doc(json_object_get(doc, "input"), "png", in, &png, &len);
    free(png);
    return doc;
}

/* Runs cmd, checks its exit status (-1: any failure) and that its output
 * holds text. */
static void cli_says(const char *cmd, int status, const char *text)
{
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (status >= 0)
        assert_int_equal(rc, status);
    else
        assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, text));
    free(out);
}

static void test_cli_resize(void **state)
{
    (void)state;
    char cmd[2048];
    const char *cli = tu_bin("blindspot");
    bs_image in;
    snprintf(cmd, sizeof cmd, "%s predict --model %s/rgb-line.safetensors --image %s "
             "--resize pad-right --json", cli, models_dir, upload_path);
    json_decref(cli_answer(cmd, 0, &in));
    assert_geometry("pad-right", &in);
    bs_image_free(&in);

    /* attack here: the upload cropped, then a user's folder of
     * channels-last IDX files named by its path */
    int label = predict_png("rgb-line", upload, upload_len, "&resize=crop");
    snprintf(cmd, sizeof cmd, "%s attack --model %s/rgb-line.safetensors --image %s "
             "--resize crop --target %d --models none --param search_steps=3 --json", cli, models_dir, upload_path,
             (label + 1) % CLASSES);
    json_t *doc = cli_answer(cmd, 0, &in);
    assert_geometry("crop", &in);
    bs_image_free(&in);
    json_decref(doc);
    label = predict_dataset_label("rgb-line", "lines", 3);
    snprintf(cmd, sizeof cmd, "%s attack --model %s/rgb-line.safetensors --dataset %s/lines "
             "--index 3 --target %d --models none --param search_steps=3 --json", cli, models_dir, data_dir,
             (label + 1) % CLASSES);
    doc = cli_answer(cmd, 0, &in);
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(doc, "results"), 0),
                                             "success")));
    assert_true(px(&in, 5, 7, 2) == sample_byte(3, 5, 7, 2) / 255.0f);
    bs_image_free(&in);
    json_decref(doc);

    snprintf(cmd, sizeof cmd, "%s predict --model %s/rgb-line.safetensors --image %s "
             "--resize zoom 2>&1", cli, models_dir, upload_path);
    cli_says(cmd, 2, "--resize is stretch, crop, pad or pad-right");
    snprintf(cmd, sizeof cmd, "%s attack --model %s/rgb-line.safetensors --image %s "
             "--resize zoom --target 1 --models none 2>&1", cli, models_dir, upload_path);
    cli_says(cmd, -1, "resize is \"stretch\", \"crop\", \"pad\" or \"pad-right\"");
    snprintf(cmd, sizeof cmd, "%s predict --help", cli);
    cli_says(cmd, 0, "--resize MODE");
    snprintf(cmd, sizeof cmd, "%s attack --help", cli);
    cli_says(cmd, 0, "--resize MODE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_channels_last_reordered),
        cmocka_unit_test(test_datasets_listed_with_colour_shapes),
        cmocka_unit_test(test_sample_png_is_rgb),
        cmocka_unit_test(test_attack_upload_stretch),
        cmocka_unit_test(test_attack_upload_crop),
        cmocka_unit_test(test_attack_upload_pad),
        cmocka_unit_test(test_attack_upload_pad_right),
        cmocka_unit_test(test_norms_over_channels),
        cmocka_unit_test(test_attack_dataset_accept_png),
        cmocka_unit_test(test_attack_jpeg_output_rgb),
        cmocka_unit_test(test_predict_rgb_form_and_json),
        cmocka_unit_test(test_v2_infer_rgb),
        cmocka_unit_test(test_bad_resize_refused_everywhere),
        cmocka_unit_test(test_other_shape_refused),
        cmocka_unit_test(test_cli_resize),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
