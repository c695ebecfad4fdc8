/* image_input — a request's image into a model's input; see image_input.h. */
#include "api/image_input.h"

#include "api/base64.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bs_invert_parse(const char *s, bs_invert *out)
{
    if (s && !strcmp(s, "auto"))
        *out = BS_INVERT_AUTO;
    else if (s && !strcmp(s, "yes"))
        *out = BS_INVERT_YES;
    else if (s && !strcmp(s, "no"))
        *out = BS_INVERT_NO;
    else
        return -1;
    return 0;
}

int bs_image_resize_read(const char *name, bs_resize *out, bs_error_code *code, char *msg)
{
    *out = BS_RESIZE_STRETCH;
    if (!name || !bs_resize_parse(name, out))
        return 0;
    *code = BS_E_INVALID_RESIZE;
    snprintf(msg, BS_ERR_LEN, "resize is \"stretch\", \"crop\", \"pad\" or \"pad-right\", "
             "not '%.32s'.", name);
    return -1;
}

/* Sets the failure and returns -1. */
static int fail(bs_error_code *code, bs_error_code c, char *msg, const char *fmt,
                const char *why)
{
    *code = c;
    snprintf(msg, BS_ERR_LEN, fmt, why);
    return -1;
}

int bs_image_input_encoded(const uint8_t *bytes, size_t len, bs_invert inv,
                           bs_image_target *t, bs_error_code *code, char *msg)
{
    bs_image img;
    char err[BS_ERR_LEN];
    int rc = bs_image_decode(bytes, len, t->max_pixels, &img, err);
    if (rc)
        /* Too many pixels is a valid image that will not be taken. */
        return fail(code, rc == BS_IMAGE_TOO_LARGE ? BS_E_IMAGE_TOO_LARGE : BS_E_INVALID_IMAGE,
                    msg, "The image cannot be used: %s.", err);
    rc = bs_image_to_input_fit(&img, t->shape[0], t->shape[1], t->shape[2], t->resize, inv,
                               t->x, &t->inverted, err);
    bs_image_free(&img);
    if (rc)
        return fail(code, BS_E_IMAGE_NOT_CONVERTIBLE, msg, "The image cannot be converted: %s.",
                    err);
    return 0;
}

/* {"png"|"jpeg": base64} */
static int from_base64(const json_t *b64, bs_invert inv, bs_image_target *t,
                       bs_error_code *code, char *msg)
{
    if (!json_is_string(b64))
        return fail(code, BS_E_INVALID_IMAGE, msg, "%s",
                    "image.png / image.jpeg must be base64 text.");
    char err[BS_ERR_LEN];
    size_t len;
    uint8_t *bytes = bs_base64_decode(json_string_value(b64), json_string_length(b64), &len, err);
    if (!bytes)
        return fail(code, BS_E_INVALID_BASE64, msg, "The image is not valid base64: %s.", err);
    int rc = bs_image_input_encoded(bytes, len, inv, t, code, msg);
    free(bytes);
    return rc;
}

/* {"data": [...], "shape": [C,H,W]} */
static int from_floats(const json_t *data, const json_t *shape, bs_invert inv,
                       bs_image_target *t, bs_error_code *code, char *msg)
{
    int s[3];
    if (!json_is_array(data) || !json_is_array(shape) || json_array_size(shape) != 3)
        return fail(code, BS_E_INVALID_IMAGE, msg, "%s",
                    "image.data must be an array of numbers and image.shape [C,H,W].");
    for (int i = 0; i < 3; i++) {
        const json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 65536)
            return fail(code, BS_E_INVALID_IMAGE, msg, "%s",
                        "image.shape must hold 3 integers from 1 to 65536.");
        s[i] = (int)json_integer_value(d);
    }
    size_t n = (size_t)s[0] * s[1] * s[2];
    if (s[0] != 1 && s[0] != 3) {
        *code = BS_E_SHAPE_MISMATCH;
        snprintf(msg, BS_ERR_LEN, "image.shape has %d channels; 1 or 3 work.", s[0]);
        return -1;
    }
    if (json_array_size(data) != n) {
        *code = BS_E_SHAPE_MISMATCH;
        snprintf(msg, BS_ERR_LEN, "image.data holds %zu numbers; its shape [%d,%d,%d] says %zu.",
                 json_array_size(data), s[0], s[1], s[2], n);
        return -1;
    }
    /* (C,H,W) planes into the (H,W,C) pixels bs_image holds */
    bs_image img = {.width = s[2], .height = s[1], .channels = s[0]};
    img.pixels = malloc(n * sizeof *img.pixels);
    if (!img.pixels)
        return fail(code, BS_E_OUT_OF_MEMORY, msg, "%s", "Out of memory for the image.");
    size_t plane = (size_t)s[1] * s[2];
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(data, i);
        double v = json_is_number(e) ? json_number_value(e) : -1.0;
        if (!(v >= 0.0 && v <= 1.0)) {
            bs_image_free(&img);
            *code = BS_E_VALUE_OUT_OF_RANGE;
            snprintf(msg, BS_ERR_LEN, "image.data[%zu] must be a number in [0,1].", i);
            return -1;
        }
        img.pixels[(i % plane) * s[0] + i / plane] = (float)v;
    }
    int same = s[0] == t->shape[0] && s[1] == t->shape[1] && s[2] == t->shape[2];
    int rc = 0;
    char err[BS_ERR_LEN];
    if (same && inv != BS_INVERT_YES) {
        /* the model's shape: the numbers as they are */
        for (size_t i = 0; i < n; i++)
            t->x[i] = img.pixels[(i % plane) * s[0] + i / plane];
        t->inverted = 0;
    } else if (bs_image_to_input_fit(&img, t->shape[0], t->shape[1], t->shape[2], t->resize,
                                     inv == BS_INVERT_YES ? inv : BS_INVERT_NO, t->x,
                                     &t->inverted, err)) {
        rc = fail(code, BS_E_IMAGE_NOT_CONVERTIBLE, msg, "The image cannot be converted: %s.",
                  err);
    }
    bs_image_free(&img);
    return rc;
}

/* {"dataset", "split", "index"} */
static int from_dataset(const json_t *image, bs_invert inv, const bs_image_datasets *ds,
                        bs_image_target *t, bs_error_code *code, char *msg)
{
    const json_t *name = json_object_get(image, "dataset");
    const json_t *split = json_object_get(image, "split");
    const json_t *index = json_object_get(image, "index");
    if (!json_is_string(name) || (split && !json_is_string(split)) || !json_is_integer(index))
        return fail(code, BS_E_INVALID_IMAGE, msg, "%s", "A dataset image is {\"dataset\": "
                    "name, \"split\": name, \"index\": integer}.");
    bs_image_split d;
    char err[BS_ERR_LEN];
    if (ds->split(ds->ctx, json_string_value(name), split ? json_string_value(split) : "test",
                  &d, err))
        return fail(code, BS_E_DATASET_NOT_FOUND, msg, "%s", err);
    json_int_t i = json_integer_value(index);
    if (i < 0 || i >= d.n) {
        *code = BS_E_INDEX_OUT_OF_RANGE;
        snprintf(msg, BS_ERR_LEN, "%.64s/%.16s has samples 0 to %d, not %lld.", d.dataset,
                 d.split, d.n - 1, (long long)i);
        return -1;
    }
    size_t n = (size_t)t->shape[0] * t->shape[1] * t->shape[2];
    if (d.input_size != n || d.shape[0] != t->shape[0]) { /* gray is not colour */
        *code = BS_E_SHAPE_MISMATCH;
        snprintf(msg, BS_ERR_LEN, "%.64s samples are (%d,%d,%d); model %.64s takes (%d,%d,%d).",
                 d.dataset, d.shape[0], d.shape[1], d.shape[2], t->model, t->shape[0],
                 t->shape[1], t->shape[2]);
        return -1;
    }
    if (ds->sample(ds->ctx, &d, (int)i, t->x))
        return fail(code, BS_E_OUT_OF_MEMORY, msg, "%s", "Out of memory for the image.");
    if (inv == BS_INVERT_YES)
        for (size_t k = 0; k < n; k++)
            t->x[k] = 1.0f - t->x[k];
    t->inverted = inv == BS_INVERT_YES;
    return 0;
}

int bs_image_input_json(const json_t *image, bs_invert inv, const bs_image_datasets *ds,
                        bs_image_target *t, bs_error_code *code, char *msg)
{
    if (!json_is_object(image))
        return fail(code, BS_E_MISSING_IMAGE, msg, "%s",
                    "image is required: {\"png\": base64}, {\"jpeg\": base64}, {\"data\": "
                    "[...], \"shape\": [C,H,W]} or {\"dataset\", \"split\", \"index\"}.");
    const json_t *b64 = json_object_get(image, "png");
    if (!b64)
        b64 = json_object_get(image, "jpeg");
    if (b64)
        return from_base64(b64, inv, t, code, msg);
    if (json_object_get(image, "data"))
        return from_floats(json_object_get(image, "data"), json_object_get(image, "shape"), inv,
                           t, code, msg);
    if (json_object_get(image, "dataset"))
        return from_dataset(image, inv, ds, t, code, msg);
    return fail(code, BS_E_INVALID_IMAGE, msg, "%s",
                "image must hold png, jpeg, data and shape, or dataset and index.");
}
