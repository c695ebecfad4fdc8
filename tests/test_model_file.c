/* test_model_file — safetensors model files: round trips, deterministic
 * saving, the architecture's JSON, files laid out as PyTorch writes them,
 * and refusal of every kind of damaged file. Each damaged file is a good
 * one with exactly one thing changed (bytes cut, a header field patched). */
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

#include "core/model.h"
#include "core/model_file.h"
#include "tests/testutil.h"

static char *dir;

static int group_setup(void **state)
{
    (void)state;
    dir = tu_tmpdir();
    return dir ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static const char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* --- models ------------------------------------------------------------------ */

static bs_model *build(const bs_layer *layers, int n, int c, int h, int w)
{
    char err[BS_ERR_LEN] = "";
    int shape[3] = {c, h, w};
    bs_model *m = bs_model_build(layers, n, shape, err);
    if (!m)
        fail_msg("bs_model_build: %s", err);
    bs_model_init(m, 7);
    /* Non-zero biases, so that a bias lost or swapped shows. */
    for (int i = 0; i < m->n_layers; i++)
        for (size_t k = 0; k < m->layers[i].bias_size; k++)
            m->params[m->layers[i].bias_off + k] = 0.5f + (float)k;
    return m;
}

/* flatten, linear(5), sigmoid, linear(3) on (1,2,2). */
static bs_model *small_mlp(void)
{
    bs_layer l[4] = {
        {.kind = BS_FLATTEN},
        {.kind = BS_LINEAR, .out_features = 5},
        {.kind = BS_SIGMOID},
        {.kind = BS_LINEAR, .out_features = 3},
    };
    bs_model *m = build(l, 4, 1, 2, 2);
    assert_int_equal(bs_model_set_meta(m, "blindspot.dataset", "mnist"), 0);
    assert_int_equal(bs_model_set_meta(m, "blindspot.train_error", "0.0123"), 0);
    assert_int_equal(bs_model_set_meta(m, "blindspot.command",
                                       "train --arch \"fc\" --lambda 1e-4 λ\n"), 0);
    return m;
}

/* conv2d(2, k3, pad1), relu, maxpool2d(2), flatten, tanh, dropout(0.1),
 * linear(3) on (1,4,4): every layer type but sigmoid, which small_mlp has. */
static bs_model *small_cnn(void)
{
    bs_layer l[7] = {
        {.kind = BS_CONV2D, .out_channels = 2, .kernel = 3, .stride = 1, .padding = 1},
        {.kind = BS_RELU},
        {.kind = BS_MAXPOOL2D, .kernel = 2, .stride = 2},
        {.kind = BS_FLATTEN},
        {.kind = BS_TANH},
        {.kind = BS_DROPOUT, .p = 0.1f},
        {.kind = BS_LINEAR, .out_features = 3},
    };
    bs_model *m = build(l, 7, 1, 4, 4);
    assert_int_equal(bs_model_set_meta(m, "blindspot.dataset", "fashion-mnist"), 0);
    return m;
}

/* Saves m under name and returns the file's bytes. */
static uint8_t *save_bytes(const bs_model *m, const char *name, size_t *len)
{
    char err[BS_ERR_LEN] = "";
    const char *path = tmp_path(name);
    if (bs_model_save(m, path, err) != 0)
        fail_msg("bs_model_save: %s", err);
    uint8_t *buf = tu_read_file(path, len);
    assert_non_null(buf);
    return buf;
}

static uint8_t *good_mlp_file(size_t *len)
{
    bs_model *m = small_mlp();
    uint8_t *buf = save_bytes(m, "good.safetensors", len);
    bs_model_free(m);
    return buf;
}

static void assert_same_model(const bs_model *a, const bs_model *b)
{
    assert_int_equal(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const bs_layer *x = &a->layers[i], *y = &b->layers[i];
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->out_features, y->out_features);
        assert_int_equal(x->out_channels, y->out_channels);
        assert_int_equal(x->kernel, y->kernel);
        assert_int_equal(x->stride, y->stride);
        assert_int_equal(x->padding, y->padding);
        assert_true(x->p == y->p);
        assert_int_equal(x->weight_off, y->weight_off);
        assert_int_equal(x->bias_off, y->bias_off);
    }
    assert_memory_equal(a->input_shape, b->input_shape, sizeof a->input_shape);
    assert_int_equal(a->classes, b->classes);
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
    assert_int_equal(a->n_meta, b->n_meta);
    for (int j = 0; j < a->n_meta; j++) {
        const char *v = bs_model_get_meta(b, a->meta[j].key);
        assert_non_null(v);
        assert_string_equal(a->meta[j].value, v);
    }
}

/* --- patching files -------------------------------------------------------- */

/* A model file taken apart: its header as JSON, and its data section. */
typedef struct parts {
    json_t *hdr;
    const uint8_t *data;
    size_t data_len;
} parts;

static parts split(const uint8_t *buf, size_t len)
{
    assert_true(len >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | buf[i];
    assert_true(n <= len - 8);
    json_error_t jerr;
    parts p = {json_loadb((const char *)buf + 8, n, 0, &jerr), buf + 8 + n,
               len - 8 - n};
    assert_non_null(p.hdr);
    return p;
}

/* Puts header text and data back together behind a fresh length. */
static uint8_t *join_text(const char *hdr, const uint8_t *data, size_t data_len,
                          size_t *len)
{
    size_t n = strlen(hdr);
    *len = 8 + n + data_len;
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    if (data_len)
        memcpy(buf + 8 + n, data, data_len);
    return buf;
}

static uint8_t *join(const parts *p, size_t *len)
{
    char *hdr = json_dumps(p->hdr, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(hdr);
    uint8_t *buf = join_text(hdr, p->data, p->data_len, len);
    free(hdr);
    return buf;
}

static json_t *tensor_of(const parts *p, const char *name)
{
    json_t *t = json_object_get(p->hdr, name);
    assert_non_null(t);
    return t;
}

static void set_meta(const parts *p, const char *key, const char *value)
{
    json_t *meta = json_object_get(p->hdr, "__metadata__");
    assert_int_equal(json_object_set_new(meta, key, json_string(value)), 0);
}

static void expect_refused(const uint8_t *buf, size_t len, const char *want)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_model_load_buffer(buf, len, err);
    if (m) {
        bs_model_free(m);
        fail_msg("loaded a file that should be refused for \"%s\"", want);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not mention \"%s\"", err, want);
}

/* Takes the good MLP file apart, lets patch change one thing, puts it back
 * together and expects the loader to refuse it with a message holding want. */
static void refuse_patched(void (*patch)(parts *), const char *want)
{
    size_t len, out_len;
    uint8_t *good = good_mlp_file(&len);
    parts p = split(good, len);
    patch(&p);
    uint8_t *bad = join(&p, &out_len);
    expect_refused(bad, out_len, want);
    free(bad);
    json_decref(p.hdr);
    free(good);
}

/* --- round trips ------------------------------------------------------------- */

static void roundtrip(bs_model *m, const char *name)
{
    char err[BS_ERR_LEN] = "";
    const char *path = tmp_path(name);
    assert_int_equal(bs_model_save(m, path, err), 0);
    bs_model *back = bs_model_load(path, err);
    if (!back)
        fail_msg("bs_model_load: %s", err);
    assert_same_model(m, back);
    char *a = bs_arch_to_json(m), *b = bs_arch_to_json(back);
    assert_string_equal(a, b);
    free(a);
    free(b);
    bs_model_free(back);
    bs_model_free(m);
}

static void test_roundtrip_mlp(void **state)
{
    (void)state;
    roundtrip(small_mlp(), "mlp.safetensors");
}

static void test_roundtrip_cnn(void **state)
{
    (void)state;
    roundtrip(small_cnn(), "cnn.safetensors");
}

/* Same model, same bytes; a loaded file saves back to itself; the header is
 * padded with spaces to a multiple of 8; nothing is left at path.tmp. */
static void test_save_deterministic(void **state)
{
    (void)state;
    bs_model *m = small_cnn();
    size_t n1, n2, n3;
    uint8_t *a = save_bytes(m, "det1.safetensors", &n1);
    uint8_t *b = save_bytes(m, "det2.safetensors", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);

    char err[BS_ERR_LEN] = "";
    bs_model *back = bs_model_load_buffer(a, n1, err);
    assert_non_null(back);
    uint8_t *c = save_bytes(back, "det3.safetensors", &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, c, n1);

    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | a[i];
    assert_int_equal(hlen % 8, 0);
    assert_true(a[8] == '{');
    assert_null(tu_read_file(tmp_path("det1.safetensors.tmp"), &n3));
    free(a);
    free(b);
    free(c);
    bs_model_free(back);
    bs_model_free(m);
}

/* Stale structure keys in meta are overridden by the model's own, and the
 * loaded model's meta holds only the free entries. */
static void test_save_overrides_stale_meta(void **state)
{
    (void)state;
    bs_model *m = small_mlp();
    int n_free = m->n_meta;
    assert_int_equal(bs_model_set_meta(m, "blindspot.classes", "99"), 0);
    assert_int_equal(bs_model_set_meta(m, "blindspot.arch", "[]"), 0);
    size_t len;
    uint8_t *buf = save_bytes(m, "stale.safetensors", &len);
    parts p = split(buf, len);
    json_t *meta = json_object_get(p.hdr, "__metadata__");
    assert_string_equal(json_string_value(json_object_get(meta, "blindspot.classes")), "3");
    assert_string_equal(json_string_value(json_object_get(meta, "blindspot.input_shape")),
                        "[1,2,2]");
    assert_string_equal(json_string_value(json_object_get(meta, "blindspot.arch")),
                        "[{\"type\":\"flatten\"},{\"out_features\":5,\"type\":\"linear\"},"
                        "{\"type\":\"sigmoid\"},{\"out_features\":3,\"type\":\"linear\"}]");
    char err[BS_ERR_LEN] = "";
    bs_model *back = bs_model_load_buffer(buf, len, err);
    assert_non_null(back);
    assert_int_equal(back->n_meta, n_free);
    assert_null(bs_model_get_meta(back, "blindspot.classes"));
    assert_string_equal(bs_model_get_meta(back, "blindspot.dataset"), "mnist");
    bs_model_free(back);
    json_decref(p.hdr);
    free(buf);
    bs_model_free(m);
}

static void test_save_to_missing_folder(void **state)
{
    (void)state;
    bs_model *m = small_mlp();
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_model_save(m, tmp_path("no/such/folder.safetensors"), err), -1);
    assert_non_null(strstr(err, "cannot create"));
    bs_model_free(m);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    char err[BS_ERR_LEN] = "";
    assert_null(bs_model_load(tmp_path("absent.safetensors"), err));
    assert_non_null(strstr(err, "cannot open"));
}

/* --- the architecture's JSON ----------------------------------------------- */

static void test_arch_json(void **state)
{
    (void)state;
    bs_model *m = small_cnn();
    char *s = bs_arch_to_json(m);
    assert_string_equal(s,
        "[{\"kernel\":3,\"out_channels\":2,\"padding\":1,\"stride\":1,\"type\":\"conv2d\"},"
        "{\"type\":\"relu\"},{\"kernel\":2,\"stride\":2,\"type\":\"maxpool2d\"},"
        "{\"type\":\"flatten\"},{\"type\":\"tanh\"},{\"p\":0.1,\"type\":\"dropout\"},"
        "{\"out_features\":3,\"type\":\"linear\"}]");
    bs_layer layers[BS_MAX_LAYERS];
    int n = 0;
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_arch_from_json(s, layers, &n, err), 0);
    assert_int_equal(n, m->n_layers);
    for (int i = 0; i < n; i++) {
        assert_int_equal(layers[i].kind, m->layers[i].kind);
        assert_int_equal(layers[i].kernel, m->layers[i].kernel);
        assert_int_equal(layers[i].stride, m->layers[i].stride);
    }
    assert_true(layers[5].p == 0.1f);
    free(s);
    bs_model_free(m);
}

/* Optional fields take PyTorch's defaults. */
static void test_arch_json_defaults(void **state)
{
    (void)state;
    bs_layer l[BS_MAX_LAYERS];
    int n = 0;
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_arch_from_json(
        "[{\"type\":\"conv2d\",\"out_channels\":4,\"kernel\":5},"
        "{\"type\":\"maxpool2d\",\"kernel\":3},{\"type\":\"dropout\"}]", l, &n, err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(l[0].stride, 1);
    assert_int_equal(l[0].padding, 0);
    assert_int_equal(l[1].stride, 3);
    assert_true(l[2].p == 0.5f);
}

static void test_arch_json_refused(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"[{\"type\":\"softmax\"}]", "unknown type \"softmax\""},
        {"[{\"type\":\"relu\",\"inplace\":true}]", "unknown field \"inplace\""},
        {"[{\"type\":\"linear\"}]", "needs \"out_features\""},
        {"[{\"type\":\"linear\",\"out_features\":\"10\"}]", "must be an integer"},
        {"[{\"type\":\"linear\",\"out_features\":2.0}]", "must be an integer"},
        {"[{\"type\":\"conv2d\",\"out_channels\":2,\"kernel\":-3}]", "\"kernel\""},
        {"[{\"type\":\"dropout\",\"p\":1}]", "[0, 1)"},
        {"[{\"out_features\":3}]", "no \"type\""},
        {"[\"relu\"]", "not a JSON object"},
        {"{\"type\":\"relu\"}", "not a JSON list"},
        {"[]", "empty"},
        {"[{\"type\":\"relu\"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_layer l[BS_MAX_LAYERS];
        int n = -1;
        char err[BS_ERR_LEN] = "";
        assert_int_equal(bs_arch_from_json(cases[i].json, l, &n, err), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].json, err, cases[i].want);
        assert_int_equal(n, -1);
    }
}

/* --- a file as PyTorch writes it --------------------------------------------- */

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

/* nn.Sequential(nn.Flatten(), nn.Linear(4,3), nn.ReLU(), nn.Linear(3,2))
 * saved by safetensors.torch.save_file: __metadata__ first, keys not
 * sorted, data ordered by name (biases before weights), header padded. */
static void test_pytorch_layout(void **state)
{
    (void)state;
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\",\"blindspot.arch\":"
        "\"[{\\\"type\\\":\\\"flatten\\\"},{\\\"type\\\":\\\"linear\\\",\\\"out_features\\\":3},"
        "{\\\"type\\\":\\\"relu\\\"},{\\\"type\\\":\\\"linear\\\",\\\"out_features\\\":2}]\","
        "\"blindspot.input_shape\":\"[1,2,2]\",\"blindspot.classes\":\"2\"},"
        "\"1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
        "\"1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[12,60]},"
        "\"3.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[60,68]},"
        "\"3.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[68,92]}}"
        "      ";
    /* 1.weight[o][c] = (o == c), 1.bias = (0.5, -1, 0), 3.weight[o][c] =
     * o + 1 when c == o, 3.bias = (0, 10). */
    uint8_t data[92] = {0};
    float b1[3] = {0.5f, -1.0f, 0.0f};
    for (int o = 0; o < 3; o++) {
        put_f32(data + 4 * o, b1[o]);
        for (int c = 0; c < 4; c++)
            put_f32(data + 12 + 4 * (o * 4 + c), o == c ? 1.0f : 0.0f);
    }
    put_f32(data + 60, 0.0f);
    put_f32(data + 64, 10.0f);
    for (int o = 0; o < 2; o++)
        for (int c = 0; c < 3; c++)
            put_f32(data + 68 + 4 * (o * 3 + c), o == c ? (float)(o + 1) : 0.0f);

    size_t len;
    uint8_t *buf = join_text(hdr, data, sizeof data, &len);
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_model_load_buffer(buf, len, err);
    if (!m)
        fail_msg("PyTorch layout refused: %s", err);
    assert_int_equal(m->n_layers, 4);
    assert_int_equal(m->classes, 2);
    assert_string_equal(bs_model_get_meta(m, "format"), "pt");
    assert_true(m->params[m->layers[1].weight_off + 1 * 4 + 1] == 1.0f);
    assert_true(m->params[m->layers[1].bias_off] == 0.5f);
    assert_true(m->params[m->layers[3].weight_off + 1 * 3 + 1] == 2.0f);

    /* x = (2, 3, 5, 7): hidden relu(x[0..2] + b1) = (2.5, 2, 5); logits
     * (1 * 2.5 + 0, 2 * 2 + 10) = (2.5, 14). */
    bs_workspace *ws = bs_workspace_new(m, 1);
    assert_non_null(ws);
    const float x[4] = {2, 3, 5, 7};
    const float *logits = bs_model_forward(m, ws, x, 1);
    assert_float_equal(logits[0], 2.5f, 1e-6);
    assert_float_equal(logits[1], 14.0f, 1e-6);
    bs_workspace_free(ws);
    bs_model_free(m);
    free(buf);
}

/* --- refused files: lengths ---------------------------------------------- */

/* Every prefix of a good file is refused; a few say exactly why. */
static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *good = good_mlp_file(&len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | good[i];
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly cut bytes, so ASan sees any read past it. */
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, good, cut);
        const char *want = cut < 8 ? "too short"
                         : cut < 8 + hlen ? "runs past the end of the file"
                         : "";
        expect_refused(b, cut, want);
        free(b);
    }
    expect_refused(good, 7, "7 bytes");
    expect_refused(good, 8 + hlen / 2, "header length");
    expect_refused(good, 8 + hlen + 10, "past the end of the data");
    expect_refused(good, len - 1, "past the end of the data");
    free(good);
}

static void test_header_length_past_end(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = good_mlp_file(&len);
    uint64_t n = len - 8 + 1;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    expect_refused(buf, len, "runs past the end of the file");
    free(buf);
}

static void test_header_length_absurd(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = good_mlp_file(&len);
    memset(buf, 0xff, 8);
    expect_refused(buf, len, "limit");
    free(buf);
}

/* --- refused files: the header ----------------------------------------- */

static void test_bad_json(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = good_mlp_file(&len);
    uint8_t *colon = memchr(buf + 8, ':', len - 8);
    assert_non_null(colon);
    *colon = ';';
    expect_refused(buf, len, "not valid JSON");
    free(buf);
}

static void test_header_not_object(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = join_text("[1,2]   ", NULL, 0, &len);
    expect_refused(buf, len, "not a JSON object");
    free(buf);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = join_text(
        "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, &len);
    expect_refused(buf, len, "duplicate");
    free(buf);
}

static void drop_metadata(parts *p) { json_object_del(p->hdr, "__metadata__"); }
static void test_missing_metadata(void **state)
{
    (void)state;
    refuse_patched(drop_metadata, "__metadata__");
}

static void drop_arch(parts *p)
{
    json_object_del(json_object_get(p->hdr, "__metadata__"), "blindspot.arch");
}
static void test_missing_arch(void **state)
{
    (void)state;
    refuse_patched(drop_arch, "no blindspot.arch");
}

static void arch_not_list(parts *p) { set_meta(p, "blindspot.arch", "{\"type\":\"relu\"}"); }
static void test_arch_not_list(void **state)
{
    (void)state;
    refuse_patched(arch_not_list, "not a JSON list");
}

static void unknown_layer(parts *p)
{
    set_meta(p, "blindspot.arch",
             "[{\"type\":\"flatten\"},{\"out_features\":5,\"type\":\"linear\"},"
             "{\"type\":\"softmax\"},{\"out_features\":3,\"type\":\"linear\"}]");
}
static void test_unknown_layer_type(void **state)
{
    (void)state;
    refuse_patched(unknown_layer, "unknown type \"softmax\"");
}

static void bad_hyper(parts *p)
{
    set_meta(p, "blindspot.arch",
             "[{\"type\":\"flatten\"},{\"out_features\":0,\"type\":\"linear\"},"
             "{\"type\":\"sigmoid\"},{\"out_features\":3,\"type\":\"linear\"}]");
}
static void test_bad_hyper_parameter(void **state)
{
    (void)state;
    refuse_patched(bad_hyper, "out_features");
}

static void bad_input_shape(parts *p) { set_meta(p, "blindspot.input_shape", "[1,2]"); }
static void test_bad_input_shape(void **state)
{
    (void)state;
    refuse_patched(bad_input_shape, "blindspot.input_shape");
}

static void bad_classes(parts *p) { set_meta(p, "blindspot.classes", "three"); }
static void test_bad_classes(void **state)
{
    (void)state;
    refuse_patched(bad_classes, "blindspot.classes");
}

static void wrong_classes(parts *p) { set_meta(p, "blindspot.classes", "10"); }
static void test_classes_contradict_arch(void **state)
{
    (void)state;
    refuse_patched(wrong_classes, "blindspot.classes is 10");
}

static void meta_not_string(parts *p)
{
    json_object_set_new(json_object_get(p->hdr, "__metadata__"), "blindspot.dataset",
                        json_integer(3));
}
static void test_meta_not_string(void **state)
{
    (void)state;
    refuse_patched(meta_not_string, "\"blindspot.dataset\" is not a string");
}

static void test_arch_does_not_fit_input(void **state)
{
    (void)state;
    /* The CNN's 3x3 convolution fits a 1x1 image (padding 1), its 2x2
     * pooling does not. */
    size_t len, out_len;
    bs_model *m = small_cnn();
    uint8_t *good = save_bytes(m, "misfit.safetensors", &len);
    parts p = split(good, len);
    set_meta(&p, "blindspot.input_shape", "[1,1,1]");
    uint8_t *bad = join(&p, &out_len);
    expect_refused(bad, out_len, "does not fit");
    free(bad);
    json_decref(p.hdr);
    free(good);
    bs_model_free(m);
}

/* A tiny file claiming a huge network is refused before allocating it. */
static void huge_arch(parts *p)
{
    set_meta(p, "blindspot.arch",
             "[{\"type\":\"flatten\"},{\"out_features\":1000000,\"type\":\"linear\"},"
             "{\"type\":\"sigmoid\"},{\"out_features\":1000000,\"type\":\"linear\"}]");
    set_meta(p, "blindspot.input_shape", "[1,4096,4096]");
}
static void test_huge_arch(void **state)
{
    (void)state;
    refuse_patched(huge_arch, "needs");
}

/* --- refused files: tensors --------------------------------------------------- */

static void wrong_dtype(parts *p)
{
    json_object_set_new(tensor_of(p, "1.weight"), "dtype", json_string("F64"));
}
static void test_wrong_dtype(void **state)
{
    (void)state;
    refuse_patched(wrong_dtype, "tensor \"1.weight\" has dtype F64");
}

static void negative_shape(parts *p)
{
    json_object_set_new(tensor_of(p, "1.bias"), "shape", json_pack("[i]", -5));
}
static void test_negative_shape(void **state)
{
    (void)state;
    refuse_patched(negative_shape, "non-negative integers");
}

static void overlapping(parts *p)
{
    /* 1.weight is (5,4) at [0,80), 1.bias (5) at [80,100); move the bias
     * back over the weight's last 20 bytes. */
    json_object_set_new(tensor_of(p, "1.bias"), "data_offsets", json_pack("[i,i]", 60, 80));
}
static void test_overlapping_offsets(void **state)
{
    (void)state;
    refuse_patched(overlapping, "overlap");
}

static void end_past_data(parts *p)
{
    json_int_t end = (json_int_t)p->data_len + 4;
    json_object_set_new(tensor_of(p, "3.bias"), "data_offsets",
                        json_pack("[I,I]", end - 12, end));
}
static void test_offsets_past_data(void **state)
{
    (void)state;
    refuse_patched(end_past_data, "tensor \"3.bias\": data_offsets end");
}

static void begin_after_end(parts *p)
{
    json_object_set_new(tensor_of(p, "3.bias"), "data_offsets", json_pack("[i,i]", 20, 8));
}
static void test_offsets_reversed(void **state)
{
    (void)state;
    refuse_patched(begin_after_end, "begin <= end");
}

static void offsets_not_pair(parts *p)
{
    json_object_set_new(tensor_of(p, "3.bias"), "data_offsets", json_pack("[i]", 0));
}
static void test_offsets_not_pair(void **state)
{
    (void)state;
    refuse_patched(offsets_not_pair, "[begin,end]");
}

static void span_mismatch(parts *p)
{
    json_t *offs = json_object_get(tensor_of(p, "3.bias"), "data_offsets");
    json_array_set_new(offs, 0, json_integer(json_integer_value(json_array_get(offs, 0)) + 4));
}
static void test_offsets_span_mismatch(void **state)
{
    (void)state;
    refuse_patched(span_mismatch, "needs 12");
}

static void transposed(parts *p)
{
    json_object_set_new(tensor_of(p, "1.weight"), "shape", json_pack("[i,i]", 4, 5));
}
static void test_shape_contradicts_arch(void **state)
{
    (void)state;
    refuse_patched(transposed,
                   "tensor \"1.weight\" has shape [4,5] but the architecture expects [5,4]");
}

static void missing_tensor(parts *p) { json_object_del(p->hdr, "3.bias"); }
static void test_missing_tensor(void **state)
{
    (void)state;
    refuse_patched(missing_tensor, "missing tensor \"3.bias\"");
}

static void extra_tensor(parts *p)
{
    json_object_set_new(p->hdr, "2.weight",
                        json_pack("{s:s,s:[i],s:[i,i]}", "dtype", "F32", "shape", 0,
                                  "data_offsets", 0, 0));
}
static void test_extra_tensor(void **state)
{
    (void)state;
    refuse_patched(extra_tensor, "unexpected tensor \"2.weight\"");
}

/* The patching itself (re-serialising an unpadded header) breaks nothing. */
static void test_patch_unchanged_loads(void **state)
{
    (void)state;
    size_t len, out_len;
    uint8_t *good = good_mlp_file(&len);
    parts p = split(good, len);
    uint8_t *again = join(&p, &out_len);
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_model_load_buffer(again, out_len, err);
    if (!m)
        fail_msg("re-joined good file refused: %s", err);
    bs_model_free(m);
    free(again);
    json_decref(p.hdr);
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_mlp),
        cmocka_unit_test(test_roundtrip_cnn),
        cmocka_unit_test(test_save_deterministic),
        cmocka_unit_test(test_save_overrides_stale_meta),
        cmocka_unit_test(test_save_to_missing_folder),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_arch_json),
        cmocka_unit_test(test_arch_json_defaults),
        cmocka_unit_test(test_arch_json_refused),
        cmocka_unit_test(test_pytorch_layout),
        cmocka_unit_test(test_patch_unchanged_loads),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_length_past_end),
        cmocka_unit_test(test_header_length_absurd),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_header_not_object),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_missing_metadata),
        cmocka_unit_test(test_missing_arch),
        cmocka_unit_test(test_arch_not_list),
        cmocka_unit_test(test_unknown_layer_type),
        cmocka_unit_test(test_bad_hyper_parameter),
        cmocka_unit_test(test_bad_input_shape),
        cmocka_unit_test(test_bad_classes),
        cmocka_unit_test(test_classes_contradict_arch),
        cmocka_unit_test(test_meta_not_string),
        cmocka_unit_test(test_arch_does_not_fit_input),
        cmocka_unit_test(test_huge_arch),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_negative_shape),
        cmocka_unit_test(test_overlapping_offsets),
        cmocka_unit_test(test_offsets_past_data),
        cmocka_unit_test(test_offsets_reversed),
        cmocka_unit_test(test_offsets_not_pair),
        cmocka_unit_test(test_offsets_span_mismatch),
        cmocka_unit_test(test_shape_contradicts_arch),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_extra_tensor),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
