/* attack_request — the request of an attack, as POST /v1/attacks takes it
 * and `blindspot attack` builds it from its options: one parser, so that a
 * request one refuses the other refuses with the same message.
 *
 * The request is a JSON object:
 *   model         (required) a model name
 *   target        (required) a label, a list of labels, or "all"
 *   image         (required unless a file comes with it) one of
 *                 {"png"|"jpeg": base64}, {"data": [...], "shape": [C,H,W]},
 *                 {"dataset", "split" (default test), "index"}
 *   method        an attack method of core/attack.h's table (default lbfgs)
 *   params        the method's parameters (api/attack_json.h)
 *   report        model names to predict on each result, in that order
 *                 (default: the caller's list, env.report_all, by name)
 *   invert        auto|yes|no (default auto), for PNG/JPEG; raw floats and
 *                 dataset samples are used as they are unless it is yes
 *   resize        stretch|crop|pad|pad-right (default stretch): how an image
 *                 of another aspect ratio is fitted (api/image.h)
 *   timeout       seconds, a positive number
 *   image_format  png|jpeg|floats, the answer's images (default png)
 * An uploaded file (a multipart part, or the command line's --image) takes
 * the place of image and is decoded as PNG or JPEG. Fields are checked in
 * the order above after unknown ones; the first refusal is the answer, as
 * an api/errors.h code and a message.
 *
 * The image is read by api/image_input.h, as every request's image is.
 * What only the caller knows (resident models by name, dataset splits, the
 * pixel cap) comes through bs_attack_env; api/ never sees the daemon. */
#ifndef BS_ATTACK_REQUEST_H
#define BS_ATTACK_REQUEST_H

#include "api/attack_json.h"
#include "api/errors.h"
#include "api/image_input.h"
#include "core/attack.h"
#include "core/model.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The caller's side: models by name, dataset samples, limits. */
typedef struct bs_attack_env {
    void *ctx; /* handed to every callback */
    /* The model called name, with its name as the answer spells it in
     * *canonical; NULL when there is none, with a message in err
     * (char[BS_ERR_LEN]) saying where the names are listed. */
    const bs_model *(*model)(void *ctx, const char *name, const char **canonical, char *err);
    /* The models to report on when the request names none (those that take
     * m's input): up to cap into out, returning how many. */
    int (*report_all)(void *ctx, const bs_model *m, bs_report_model *out, int cap);
    int max_report; /* cap for report_all */
    bs_image_datasets datasets; /* the dataset samples an image may name */
    size_t max_pixels; /* the largest decoded image taken (width*height) */
} bs_attack_env;

/* A validated request. */
typedef struct bs_attack_request {
    const bs_model *model;    /* the model to attack (the caller's) */
    const char *model_name;   /* as env->model spelled it */
    bs_attack_params params;  /* the method's defaults with params applied */
    json_t *target;           /* as sent (owned); "all" is resolved once the
                               * model's label is known: bs_attack_request_targets */
    int n_targets;            /* labels target names ("all": every class) */
    float *x;                 /* model->input_size floats: the model's input (owned) */
    int inverted;             /* the image was inverted */
    bs_report_model *report;  /* n_report models to predict with (array owned) */
    int n_report;
    bs_image_out image_out;   /* the answer's image encoding */
    double timeout;           /* the body's timeout in seconds; 0 when absent */
} bs_attack_request;

/* Validates root (a JSON object) with an optional uploaded image file
 * (file_len bytes, or NULL) and fills out. Returns 0, or -1 with err filled
 * and out left empty. */
int bs_attack_request_parse(const json_t *root, const uint8_t *file, size_t file_len,
                            const bs_attack_env *env, bs_attack_request *out,
                            bs_api_error *err);

/* The labels to attack (room for BS_MAX_TARGETS) once original, the
 * model's label for x, is known. 0, or -1 with err. */
int bs_attack_request_targets(const bs_attack_request *r, int original, int *targets, int *k,
                              bs_api_error *err);

/* The answer to r for the k results of its attack: api/attack_json.h's
 * document with "input", the image as the model saw it (predict_json.h's
 * bs_input_png_json) — what POST /v1/attacks answers and `blindspot attack
 * --json` prints. NULL with a message in err (char[BS_ERR_LEN]) when an
 * image cannot be encoded or memory runs out. */
json_t *bs_attack_request_answer(const bs_attack_request *r, const bs_attack_result *res, int k,
                                 char *err);

/* Releases what the request owns; safe on an empty request. */
void bs_attack_request_free(bs_attack_request *r);

/* One field of a multipart/form-data body. */
typedef struct bs_form_part {
    const char *name;
    int is_file;          /* sent as a file (a filename or a content type) */
    const uint8_t *data;  /* len bytes; NUL-terminated when not a file */
    size_t len;
} bs_form_part;

/* The text of form field `name` as its JSON value: model, method, invert,
 * resize and image_format as strings; report "cnn,fc10-1" as a list of names;
 * target "3,5" as a list of labels; anything else as the JSON it parses as
 * (numbers, lists, objects), or else as a string. */
json_t *bs_attack_form_value(const char *name, const char *text);

/* The parts of a form as the JSON request: a file part "image" becomes
 * *file and *file_len (pointing into the part) with image {"file": true};
 * parts dataset, split and index make the dataset reference. */
json_t *bs_attack_form_to_json(const bs_form_part *parts, int n, const uint8_t **file,
                               size_t *file_len);

#endif
