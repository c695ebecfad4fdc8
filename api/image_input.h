/* image_input — an image as a request carries it, made into a model's
 * input: PNG or JPEG bytes (a file, a raw body, base64 in JSON) or raw
 * floats with their shape, converted exactly as api/image.h converts
 * (colour, fitting by the target's resize mode, area-averaging resize,
 * inversion). The failures come with the
 * error code of api/errors.h a daemon answers and a message a user can act
 * on, so that a server handler and the command line say the same thing.
 *
 * The JSON forms:
 *   {"png": base64} | {"jpeg": base64}   decoded (the --max-pixels cap
 *                                        checked first), invert auto by
 *                                        default
 *   {"data": [...], "shape": [C,H,W]}   numbers in [0,1]; the model's shape
 *                                        taken as it is, another converted;
 *                                        inverted only when asked (yes)
 *   {"dataset", "split", "index"}        a dataset sample (split default
 *                                        test), read through the caller's
 *                                        datasets (bs_image_datasets); used
 *                                        as it is, inverted only when asked
 *                                        (yes) */
#ifndef BS_IMAGE_INPUT_H
#define BS_IMAGE_INPUT_H

#include "api/errors.h"
#include "api/image.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* "auto", "yes" or "no" into *out; -1 for anything else. */
int bs_invert_parse(const char *s, bs_invert *out);

/* The resize mode a request names (NULL: stretch) into *out. Returns 0, or
 * -1 with *code INVALID_RESIZE and a message listing the modes. */
int bs_image_resize_read(const char *name, bs_resize *out, bs_error_code *code, char *msg);

/* Where an image goes: the model input of shape (C,H,W). */
typedef struct bs_image_target {
    int shape[3];      /* the model's input shape */
    size_t max_pixels; /* the decoder's cap (--max-pixels) */
    float *x;          /* C*H*W floats, written */
    int inverted;      /* set: whether the image was inverted */
    const char *model; /* the model's name, for a dataset sample of another shape */
    bs_resize resize;  /* how an image of another aspect ratio is fitted
                          (default stretch) */
} bs_image_target;

/* A dataset split as the caller holds it. */
typedef struct bs_image_split {
    const char *dataset; /* its name and its split's, as messages spell them */
    const char *split;
    int n;               /* samples */
    int shape[3];        /* (C,H,W) of one sample */
    size_t input_size;   /* C*H*W */
    const void *handle;  /* the caller's, handed back to sample */
} bs_image_split;

/* The caller's datasets (the daemon's resident splits, the command line's
 * data folder). */
typedef struct bs_image_datasets {
    void *ctx; /* handed to both callbacks */
    /* The split of dataset: 0 with *out filled, or -1 with a message in
     * err (char[BS_ERR_LEN]) saying where the splits are listed. */
    int (*split)(void *ctx, const char *dataset, const char *split, bs_image_split *out,
                 char *err);
    /* Sample index (in range) of the split into x (input_size floats);
     * 0, or -1 when out of memory. */
    int (*sample)(void *ctx, const bs_image_split *split, int index, float *x);
} bs_image_datasets;

/* PNG or JPEG bytes into t. Returns 0, or -1 with *code (INVALID_IMAGE,
 * IMAGE_TOO_LARGE, IMAGE_NOT_CONVERTIBLE) and a message in msg
 * (char[BS_ERR_LEN]). */
int bs_image_input_encoded(const uint8_t *bytes, size_t len, bs_invert inv,
                           bs_image_target *t, bs_error_code *code, char *msg);

/* One of the JSON forms above into t, a dataset sample read from ds.
 * Returns 0, or -1 with *code and a message (a missing image is
 * MISSING_IMAGE; a dataset sample: DATASET_NOT_FOUND,
 * INDEX_OUT_OF_RANGE, SHAPE_MISMATCH). */
int bs_image_input_json(const json_t *image, bs_invert inv, const bs_image_datasets *ds,
                        bs_image_target *t, bs_error_code *code, char *msg);

#endif
