/* dataset — resolves a dataset name to its IDX files, reads them and turns
 * them into float images and int labels (see dataset.h). */
#include "core/dataset.h"
#include "core/error.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/idx.h"

#define PATH_LEN 4096

/* A split names files, so it is a short word: letters, digits, '-' and '_'. */
static int valid_split(const char *split)
{
    size_t n = strlen(split);
    if (n == 0 || n >= sizeof ((bs_dataset *)0)->split)
        return 0;
    return strspn(split, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-_") == n;
}

/* Turns (name, split) into the dataset's folder and its files' prefix. */
static int resolve(const char *data_dir, const char *name, const char *split,
                   char *folder, char *prefix, char *err)
{
    if (!valid_split(split)) {
        bs_fail(err,
                "dataset %s: split \"%s\" is not a split name such as train or test.",
                name, split);
        return -1;
    }
    if (strchr(name, '/')) {
        snprintf(folder, PATH_LEN, "%s", name);
        snprintf(prefix, 16, "%s", split);
        return 0;
    }

    const char *colon = strchr(name, ':');
    size_t base_len = colon ? (size_t)(colon - name) : strlen(name);
    if (base_len == 0 || (base_len == 1 && name[0] == '.') ||
        (base_len == 2 && name[0] == '.' && name[1] == '.')) {
        bs_fail(err, "dataset \"%s\": not a dataset name.", name);
        return -1;
    }
    snprintf(prefix, 16, "%s", split);
    if (colon) {
        const char *variant = colon + 1;
        if (strcasecmp(variant, "P1") != 0 && strcasecmp(variant, "P2") != 0) {
            bs_fail(err,
                    "dataset %s: unknown variant \"%s\", the variants are P1 and P2.",
                    name, variant);
            return -1;
        }
        if (strcmp(split, "train") == 0)
            snprintf(prefix, 16, "p%c", variant[1]);
        else if (strcmp(split, "test") != 0) {
            bs_fail(err,
                    "dataset %s: no split \"%s\", its splits are train and test.",
                    name, split);
            return -1;
        }
    }
    if (snprintf(folder, PATH_LEN, "%s/%.*s", data_dir, (int)base_len, name) >= PATH_LEN) {
        bs_fail(err, "dataset %s: data folder path too long.", name);
        return -1;
    }
    return 0;
}

/* Finds folder/prefix-kind.gz, else folder/prefix-kind. */
static int find_file(const char *name, const char *folder, const char *prefix,
                     const char *kind, char *path, char *err)
{
    struct stat st;
    if (snprintf(path, PATH_LEN, "%s/%s-%s.gz", folder, prefix, kind) >= PATH_LEN) {
        bs_fail(err, "dataset %s: folder path too long.", name);
        return -1;
    }
    if (stat(path, &st) == 0)
        return 0;
    path[strlen(path) - 3] = '\0';
    if (stat(path, &st) == 0)
        return 0;
    bs_fail(err, "dataset %s: %s[.gz] not found; `make data` prepares mnist and fashion-mnist.",
            name, path);
    return -1;
}

/* Whether 4-dim images are (n,H,W,C), the channels last as TensorFlow and
 * most image folders keep them: the last dim is 1 or 3 and the first after
 * n is not (a (n,C,H,W) file has C 1 or 3 there). */
static int channels_last(const bs_idx *im)
{
    return im->ndims == 4 && (im->dims[3] == 1 || im->dims[3] == 3) && im->dims[1] != 1 &&
           im->dims[1] != 3;
}

/* Checks the images' header and fills n and shape. */
static int image_shape(const char *path, const bs_idx *im, bs_dataset *out,
                       char *err)
{
    if (im->ndims != 3 && im->ndims != 4) {
        bs_fail(err,
                "%s: images need 3 dims (n,H,W) or 4 ((n,C,H,W) or (n,H,W,C) with C 1 or 3), "
                "the file has %d.",
                path, im->ndims);
        return -1;
    }
    if (im->dims[0] == 0 || im->dims[0] > INT_MAX) {
        bs_fail(err, "%s: %u images, expected 1 to %d.", path,
                im->dims[0], INT_MAX);
        return -1;
    }
    const uint32_t *chw = im->ndims == 3 ? (const uint32_t[]){1, im->dims[1], im->dims[2]}
                          : channels_last(im) ? (const uint32_t[]){im->dims[3], im->dims[1],
                                                                   im->dims[2]}
                                              : im->dims + 1;
    if (chw[0] == 0 || chw[1] == 0 || chw[2] == 0) {
        bs_fail(err, "%s: empty images of shape %ux%ux%u.", path,
                chw[0], chw[1], chw[2]);
        return -1;
    }
    /* The IDX reader caps the data at 2 GiB, so every count fits an int. */
    out->n = (int)im->dims[0];
    for (int i = 0; i < 3; i++)
        out->shape[i] = (int)chw[i];
    out->input_size = (size_t)chw[0] * chw[1] * chw[2];
    return 0;
}

/* (n,H,W,C) data into (n,C,H,W), the layout models take. 0, or -1 when
 * memory runs out. */
static int to_planes(const char *path, bs_idx *im, const int shape[3], char *err)
{
    size_t es = im->type == BS_IDX_FLOAT ? sizeof(float) : 1;
    size_t C = (size_t)shape[0], plane = (size_t)shape[1] * (size_t)shape[2];
    size_t per = C * plane;
    uint8_t *to = malloc(im->count * es);
    if (!to) {
        bs_fail(err, "%s: out of memory for %zu pixels.", path, im->count);
        return -1;
    }
    const uint8_t *from = im->data;
    for (size_t i = 0; i < im->count / per; i++)
        for (size_t p = 0; p < plane; p++)
            for (size_t c = 0; c < C; c++)
                memcpy(to + (i * per + c * plane + p) * es, from + (i * per + p * C + c) * es,
                       es);
    free(im->data);
    im->data = to;
    return 0;
}

/* Pixels as floats in [0,1]: bytes scaled by 1/255, floats checked. Takes
 * over im->data when it already holds floats. */
static float *image_floats(const char *path, bs_idx *im, char *err)
{
    if (im->type == BS_IDX_FLOAT) {
        float *f = im->data;
        for (size_t i = 0; i < im->count; i++)
            if (!(f[i] >= 0.0f && f[i] <= 1.0f)) {
                bs_fail(err,
                        "%s: pixel %zu is %g, float pixels must be within [0,1].",
                        path, i, (double)f[i]);
                return NULL;
            }
        im->data = NULL;
        return f;
    }
    float *f = malloc(im->count * sizeof *f);
    if (!f) {
        bs_fail(err, "%s: out of memory for %zu pixels.", path, im->count);
        return NULL;
    }
    const uint8_t *b = im->data;
    for (size_t i = 0; i < im->count; i++)
        f[i] = b[i] / 255.0f;
    return f;
}

static int load(const char *data_dir, const char *name, const char *split, int keep_bytes,
                bs_dataset *out, char *err)
{
    char folder[PATH_LEN], prefix[16], im_path[PATH_LEN], lb_path[PATH_LEN];
    bs_idx im = {0}, lb = {0};

    memset(out, 0, sizeof *out);
    if (resolve(data_dir, name, split, folder, prefix, err) ||
        find_file(name, folder, prefix, "images-idx3-ubyte", im_path, err) ||
        find_file(name, folder, prefix, "labels-idx1-ubyte", lb_path, err))
        return -1;

    if (bs_idx_read(im_path, &im, err) || image_shape(im_path, &im, out, err) ||
        (channels_last(&im) && to_planes(im_path, &im, out->shape, err)) ||
        bs_idx_read(lb_path, &lb, err))
        goto fail;
    if (lb.ndims != 1 || lb.type != BS_IDX_UBYTE) {
        bs_fail(err,
                "%s: labels need 1 dim of unsigned bytes, the file has %d dims of type 0x%02X.",
                lb_path, lb.ndims, lb.type);
        goto fail;
    }
    if (lb.count != (size_t)out->n) {
        bs_fail(err, "%s: %zu labels for the %d images of %s.",
                lb_path, lb.count, out->n, im_path);
        goto fail;
    }

    out->labels = malloc((size_t)out->n * sizeof *out->labels);
    if (!out->labels) {
        bs_fail(err, "%s: out of memory for %d labels.", lb_path, out->n);
        goto fail;
    }
    const uint8_t *lv = lb.data;
    int max_label = 0;
    for (int i = 0; i < out->n; i++) {
        out->labels[i] = lv[i];
        if (lv[i] > max_label)
            max_label = lv[i];
    }
    out->classes = max_label + 1 < 2 ? 2 : max_label + 1;

    if (keep_bytes && im.type == BS_IDX_UBYTE) {
        out->bytes = im.data;
        im.data = NULL;
    } else if (!(out->images = image_floats(im_path, &im, err))) {
        goto fail;
    }

    snprintf(out->name, sizeof out->name, "%.*s", (int)sizeof out->name - 1, name);
    snprintf(out->split, sizeof out->split, "%s", split);
    bs_idx_free(&im);
    bs_idx_free(&lb);
    return 0;

fail:
    bs_idx_free(&im);
    bs_idx_free(&lb);
    bs_dataset_free(out);
    return -1;
}

int bs_dataset_load(const char *data_dir, const char *name, const char *split,
                    bs_dataset *out, char *err)
{
    return load(data_dir, name, split, 0, out, err);
}

int bs_dataset_load_bytes(const char *data_dir, const char *name, const char *split,
                          bs_dataset *out, char *err)
{
    return load(data_dir, name, split, 1, out, err);
}

void bs_dataset_free(bs_dataset *d)
{
    if (!d)
        return;
    free(d->images);
    free(d->bytes);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
