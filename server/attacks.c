/* attacks — POST /v1/attacks: the request (JSON, or multipart/form-data
 * with the same fields as parts) is validated and its image decoded and
 * converted to the model's input on the HTTP thread; the attack runs on a
 * worker with the job's deadline and cancel flag; the answer is the attack
 * core's JSON (as `blindspot attack --json` prints it) plus the input the
 * model saw, or, as the Accept header prefers, the adversarial image itself
 * as PNG or JPEG (quality 95) with its figures in X-Blindspot-* headers,
 * for a request with one target. The header is read before anything else:
 * a type that cannot be served is a 406 naming those that can.
 *
 * Fields: model (required), target (required: a label, a list, or "all"),
 * and one image: {"png"|"jpeg": base64} or {"data": [...], "shape":
 * [C,H,W]} or {"dataset", "split" (default test), "index"}; optional
 * method, params, report (model names; default every resident model with
 * the same input size), invert (auto|yes|no, for PNG/JPEG; raw floats and
 * dataset samples are used as they are unless it is yes), timeout (seconds,
 * may only lower --timeout), image_format (png|jpeg|floats).
 *
 * With ?async=true the attack is a job (jobs.h): 202 at once, its budget
 * --job-timeout, its progress the finished runs of the c (or eps) search
 * over all targets, its result the JSON answer (Accept does not apply). */
#include "server/routes.h"

#include "api/accept.h"
#include "api/attack_json.h"
#include "api/base64.h"
#include "api/image.h"
#include "core/attack.h"
#include "server/jobs.h"

#include <stdlib.h>
#include <string.h>

/* What a synchronous answer can be, in the server's order of preference;
 * the images only for one target. */
typedef enum answer_type { ANSWER_JSON, ANSWER_PNG, ANSWER_JPEG } answer_type;
static const char *const answer_types[] = {"application/json", "image/png", "image/jpeg"};

typedef struct attack_job {
    const registry_model *rm;
    metrics *metrics;
    bs_attack_params params;
    json_t *target;             /* as sent; "all" needs the original label */
    float *x;                   /* the model input, input_size floats */
    int inverted;               /* bs_image_to_input inverted it */
    bs_report_model *report;
    int n_report;
    bs_image_out image_out;
    answer_type answer;         /* as the Accept header chose */
    int n_targets;              /* targets the request names ("all": every class) */
    /* progress of a job: runs finished over all k targets */
    const bs_attack_control *ctl;
    int runs_done, k;
} attack_job;

static void attack_free(void *ctx)
{
    attack_job *j = ctx;
    if (!j)
        return;
    json_decref(j->target);
    free(j->x);
    free(j->report);
    free(j);
}

/* ---- request parsing (HTTP thread) ------------------------------------ */

static const char *const fields[] = {"model", "target", "image", "method", "params", "report",
                                     "invert", "timeout", "image_format"};

/* The value of a text form field as JSON: numbers, lists and objects as
 * they parse, anything else as a string; "3,5" as a list of labels. */
static json_t *form_value(const char *name, const char *text)
{
    static const char *const strings[] = {"model", "method", "invert", "image_format"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if (!strcmp(name, strings[i]))
            return json_string(text);
    if (!strcmp(name, "report") && text[0] != '[') {
        json_t *a = json_array();
        char *copy = strdup(text), *save = NULL;
        for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t; t = strtok_r(NULL, ", ", &save))
            json_array_append_new(a, json_string(t));
        free(copy);
        return a;
    }
    if (!strcmp(name, "target") && strchr(text, ',') && text[0] != '[') {
        char buf[512];
        snprintf(buf, sizeof buf, "[%s]", text);
        json_t *v = json_loads(buf, 0, NULL);
        return v ? v : json_string(text);
    }
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

/* Turns the parts of a form into the JSON request; the file part "image"
 * stays bytes (*image, *image_len point into the part). NULL after 400. */
static json_t *form_to_json(const http_request *req, const uint8_t **image, size_t *image_len,
                            http_response *resp)
{
    json_t *o = json_object();
    for (int i = 0; i < req->n_parts; i++) {
        const http_part *p = &req->parts[i];
        if (!strcmp(p->name, "image") && (p->filename || p->content_type)) {
            *image = p->data;
            *image_len = p->len;
            json_object_set_new(o, "image", json_pack("{s:b}", "file", 1));
            continue;
        }
        if (!strcmp(p->name, "dataset") || !strcmp(p->name, "split") ||
            !strcmp(p->name, "index")) {
            /* -F dataset=mnist -F index=17: the dataset reference's parts */
            json_t *img = json_object_get(o, "image");
            if (!img) {
                img = json_object();
                json_object_set_new(o, "image", img);
            }
            json_object_set_new(img, p->name, !strcmp(p->name, "index")
                                                  ? form_value(p->name, (const char *)p->data)
                                                  : json_string((const char *)p->data));
            continue;
        }
        json_object_set_new(o, p->name, form_value(p->name, (const char *)p->data));
    }
    (void)resp;
    return o;
}

/* Finds the resident model a JSON string names; 404 when none. */
static const registry_model *named_model(server *srv, const json_t *v, const char *field,
                                         http_response *resp)
{
    if (!json_is_string(v)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "%s must be a model name (a string).", field);
        return NULL;
    }
    const registry_model *rm = registry_model_find(&srv->reg, json_string_value(v));
    if (!rm)
        resp_error(resp, BS_E_MODEL_NOT_FOUND,
                   "No model named '%.64s' is loaded; GET /v1/models lists them.",
                   json_string_value(v));
    return rm;
}

/* Decodes PNG/JPEG bytes into the model input. */
static int from_encoded(server *srv, attack_job *j, const uint8_t *bytes, size_t len,
                        bs_invert inv, http_response *resp)
{
    const bs_model *m = j->rm->model;
    bs_image img;
    char err[BS_ERR_LEN];
    int rc = bs_image_decode(bytes, len, srv->cfg->max_pixels, &img, err);
    if (rc) {
        /* Too many pixels is a valid image the server will not take. */
        int big = rc == BS_IMAGE_TOO_LARGE;
        resp_error(resp, big ? BS_E_IMAGE_TOO_LARGE : BS_E_INVALID_IMAGE,
                   "The image cannot be used: %s.", err);
        return -1;
    }
    rc = bs_image_to_input(&img, m->input_shape[0], m->input_shape[1], m->input_shape[2],
                               inv, j->x, &j->inverted, err);
    bs_image_free(&img);
    if (rc)
        resp_error(resp, BS_E_IMAGE_NOT_CONVERTIBLE, "The image cannot be converted: %s.", err);
    return rc;
}

/* Raw floats of shape [C,H,W]: the model's shape as they are, another
 * shape converted like a decoded image. */
static int from_floats(attack_job *j, const json_t *data, const json_t *shape, bs_invert inv,
                       http_response *resp)
{
    const bs_model *m = j->rm->model;
    int s[3];
    if (!json_is_array(data) || !json_is_array(shape) || json_array_size(shape) != 3) {
        resp_error(resp, BS_E_INVALID_IMAGE,
                   "image.data must be an array of numbers and image.shape [C,H,W].");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        const json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 65536) {
            resp_error(resp, BS_E_INVALID_IMAGE, "image.shape must hold 3 positive integers.");
            return -1;
        }
        s[i] = (int)json_integer_value(d);
    }
    size_t n = (size_t)s[0] * s[1] * s[2];
    if (s[0] != 1 && s[0] != 3) {
        resp_error(resp, BS_E_SHAPE_MISMATCH, "image.shape has %d channels; 1 or 3 work.", s[0]);
        return -1;
    }
    if (json_array_size(data) != n) {
        resp_error(resp, BS_E_SHAPE_MISMATCH,
                   "image.data holds %zu numbers; its shape [%d,%d,%d] says %zu.",
                   json_array_size(data), s[0], s[1], s[2], n);
        return -1;
    }
    float *v = malloc(n * sizeof *v);
    if (!v) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        double d;
        if (!json_number_value_ok(json_array_get(data, i), &d) || !(d >= 0 && d <= 1)) {
            free(v);
            resp_error(resp, BS_E_VALUE_OUT_OF_RANGE,
                       "image.data[%zu] must be a number in [0,1].", i);
            return -1;
        }
        v[i] = (float)d;
    }
    int rc = 0;
    if (s[0] == m->input_shape[0] && s[1] == m->input_shape[1] && s[2] == m->input_shape[2] &&
        inv != BS_INVERT_YES) {
        memcpy(j->x, v, n * sizeof *v);
    } else {
        /* (C,H,W) planes into the (H,W,C) pixels bs_image holds. */
        bs_image img = {.width = s[2], .height = s[1], .channels = s[0]};
        img.pixels = malloc(n * sizeof *img.pixels);
        char err[BS_ERR_LEN];
        if (!img.pixels) {
            resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
            rc = -1;
        } else {
            size_t plane = (size_t)s[1] * s[2];
            for (int c = 0; c < s[0]; c++)
                for (size_t p = 0; p < plane; p++)
                    img.pixels[p * s[0] + c] = v[c * plane + p];
            rc = bs_image_to_input(&img, m->input_shape[0], m->input_shape[1],
                                   m->input_shape[2], inv == BS_INVERT_YES ? inv : BS_INVERT_NO,
                                   j->x, &j->inverted, err);
            if (rc)
                resp_error(resp, BS_E_IMAGE_NOT_CONVERTIBLE, "The image cannot be converted: %s.", err);
        }
        bs_image_free(&img);
    }
    free(v);
    return rc;
}

static int from_dataset(server *srv, attack_job *j, const json_t *image, bs_invert inv,
                        http_response *resp)
{
    const bs_model *m = j->rm->model;
    const json_t *name = json_object_get(image, "dataset");
    const json_t *split = json_object_get(image, "split");
    const json_t *index = json_object_get(image, "index");
    if (!json_is_string(name) || (split && !json_is_string(split)) || !json_is_integer(index)) {
        resp_error(resp, BS_E_INVALID_IMAGE,
                   "A dataset image is {\"dataset\": name, \"split\": name, \"index\": integer}.");
        return -1;
    }
    const char *sp = split ? json_string_value(split) : "test";
    const registry_split *d = registry_split_find(&srv->reg, json_string_value(name), sp);
    if (!d) {
        resp_error(resp, BS_E_DATASET_NOT_FOUND,
                   "No dataset split %.64s/%.16s is loaded; GET /v1/datasets lists them.",
                   json_string_value(name), sp);
        return -1;
    }
    json_int_t i = json_integer_value(index);
    if (i < 0 || i >= d->n) {
        resp_error(resp, BS_E_INDEX_OUT_OF_RANGE, "%s/%s has samples 0 to %d, not %lld.",
                   json_string_value(name), sp, d->n - 1, (long long)i);
        return -1;
    }
    if (d->input_size != m->input_size) {
        resp_error(resp, BS_E_SHAPE_MISMATCH,
                   "%s samples are (%d,%d,%d); model %s takes (%d,%d,%d).",
                   json_string_value(name), d->shape[0], d->shape[1], d->shape[2], j->rm->name,
                   m->input_shape[0], m->input_shape[1], m->input_shape[2]);
        return -1;
    }
    if (registry_split_sample(d, (int)i, j->x)) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    if (inv == BS_INVERT_YES)
        for (size_t k = 0; k < d->input_size; k++)
            j->x[k] = 1.0f - j->x[k];
    j->inverted = inv == BS_INVERT_YES;
    return 0;
}

/* The image field, whichever form it takes, into j->x. */
static int read_image(server *srv, attack_job *j, const json_t *image, const uint8_t *file,
                      size_t file_len, bs_invert inv, http_response *resp)
{
    if (file)
        return from_encoded(srv, j, file, file_len, inv, resp);
    if (!json_is_object(image)) {
        resp_error(resp, BS_E_MISSING_IMAGE,
                   "image is required: {\"png\": base64}, {\"jpeg\": base64}, {\"data\": "
                   "[...], \"shape\": [C,H,W]} or {\"dataset\", \"split\", \"index\"}.");
        return -1;
    }
    const json_t *b64 = json_object_get(image, "png");
    if (!b64)
        b64 = json_object_get(image, "jpeg");
    if (b64) {
        if (!json_is_string(b64)) {
            resp_error(resp, BS_E_INVALID_IMAGE, "image.png / image.jpeg must be base64 text.");
            return -1;
        }
        char err[BS_ERR_LEN];
        size_t len;
        uint8_t *bytes = bs_base64_decode(json_string_value(b64), json_string_length(b64), &len,
                                          err);
        if (!bytes) {
            resp_error(resp, BS_E_INVALID_BASE64, "The image is not valid base64: %s.", err);
            return -1;
        }
        int rc = from_encoded(srv, j, bytes, len, inv, resp);
        free(bytes);
        return rc;
    }
    if (json_object_get(image, "data"))
        return from_floats(j, json_object_get(image, "data"), json_object_get(image, "shape"),
                           inv, resp);
    if (json_object_get(image, "dataset"))
        return from_dataset(srv, j, image, inv, resp);
    resp_error(resp, BS_E_INVALID_IMAGE,
               "image must hold png, jpeg, data and shape, or dataset and index.");
    return -1;
}

/* The report list: named models, or every resident model with the source
 * model's input size. */
static int read_report(server *srv, attack_job *j, const json_t *report, http_response *resp)
{
    j->report = calloc((size_t)srv->reg.n_models, sizeof *j->report);
    if (!j->report) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    if (!report) {
        for (int i = 0; i < srv->reg.n_models; i++)
            if (srv->reg.models[i].model->input_size == j->rm->model->input_size)
                j->report[j->n_report++] =
                    (bs_report_model){srv->reg.models[i].name, srv->reg.models[i].model};
        return 0;
    }
    if (!json_is_array(report)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "report must be a list of model names.");
        return -1;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(report, i, e) {
        const registry_model *rm = named_model(srv, e, "report[]", resp);
        if (!rm)
            return -1;
        if (rm->model->input_size != j->rm->model->input_size) {
            resp_error(resp, BS_E_SHAPE_MISMATCH,
                       "report model %s takes another input than %s.", rm->name, j->rm->name);
            return -1;
        }
        if ((int)i >= srv->reg.n_models) {
            resp_error(resp, BS_E_DUPLICATE_MODEL, "report lists a model twice.");
            return -1;
        }
        j->report[j->n_report++] = (bs_report_model){rm->name, rm->model};
    }
    return 0;
}

static int parse_invert(const json_t *v, bs_invert *inv, http_response *resp)
{
    const char *s = v ? json_string_value(v) : "auto";
    if (s && !strcmp(s, "auto"))
        *inv = BS_INVERT_AUTO;
    else if (s && !strcmp(s, "yes"))
        *inv = BS_INVERT_YES;
    else if (s && !strcmp(s, "no"))
        *inv = BS_INVERT_NO;
    else {
        resp_error(resp, BS_E_INVALID_REQUEST, "invert is \"auto\", \"yes\" or \"no\".");
        return -1;
    }
    return 0;
}

/* Validates everything in root and fills j. 0, or -1 after an answer. */
static int read_request(server *srv, const http_request *req, json_t *root, const uint8_t *file,
                        size_t file_len, attack_job *j, http_work *work, http_response *resp)
{
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        size_t i;
        for (i = 0; i < sizeof fields / sizeof fields[0] && strcmp(key, fields[i]); i++)
            ;
        if (i == sizeof fields / sizeof fields[0]) {
            resp_error(resp, BS_E_UNKNOWN_FIELD,
                       "Unknown field '%.64s'; the fields are model, target, image, method, "
                       "params, report, invert, timeout and image_format.", key);
            return -1;
        }
    }
    const json_t *model = json_object_get(root, "model");
    if (!model) {
        resp_error(resp, BS_E_MISSING_FIELD, "model is required (GET /v1/models lists them).");
        return -1;
    }
    if (!(j->rm = named_model(srv, model, "model", resp)))
        return -1;
    snprintf(resp->model, sizeof resp->model, "%s", j->rm->name);
    const bs_model *m = j->rm->model;
    char err[BS_ERR_LEN];

    const json_t *method = json_object_get(root, "method");
    const json_t *params = json_object_get(root, "params");
    if (method && !json_is_string(method)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "method must be a string such as \"lbfgs\".");
        return -1;
    }
    if (params && !json_is_object(params)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "params must be an object.");
        return -1;
    }
    if (bs_attack_params_from_json(params, method ? json_string_value(method) : "lbfgs",
                                   &j->params, err)) {
        resp_error(resp, BS_E_INVALID_PARAMS, "%s.", err);
        return -1;
    }

    const json_t *target = json_object_get(root, "target");
    int targets[BS_MAX_TARGETS], k;
    if (!target) {
        resp_error(resp, BS_E_MISSING_FIELD, "target is required: a label, a list, or \"all\".");
        return -1;
    }
    if (!json_is_integer(target) && !json_is_array(target) &&
        !(json_is_string(target) && !strcmp(json_string_value(target), "all"))) {
        resp_error(resp, BS_E_INVALID_REQUEST, "target must be a label, a list, or \"all\".");
        return -1;
    }
    /* Ranges now; "all" is resolved on the worker once the label is known. */
    if (bs_attack_targets_from_json(target, m->classes, -1, targets, &k, err)) {
        resp_error(resp, BS_E_INVALID_TARGET, "%s.", err);
        return -1;
    }
    j->target = json_incref((json_t *)target);
    j->n_targets = k;

    if (req_body_timeout(root, req, work, resp))
        return -1;
    const json_t *format = json_object_get(root, "image_format");
    j->image_out = BS_OUT_PNG;
    if (format && (!json_is_string(format) ||
                   bs_image_out_parse(json_string_value(format), &j->image_out))) {
        resp_error(resp, BS_E_INVALID_REQUEST, "image_format is png, jpeg or floats.");
        return -1;
    }
    bs_invert inv;
    if (parse_invert(json_object_get(root, "invert"), &inv, resp) ||
        read_report(srv, j, json_object_get(root, "report"), resp))
        return -1;
    j->x = malloc(m->input_size * sizeof *j->x);
    if (!j->x) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    /* Images given as raw floats or dataset samples keep their polarity
     * unless invert is yes. */
    return read_image(srv, j, json_object_get(root, "image"), file, file_len, inv, resp);
}

/* ---- the attack (worker) ---------------------------------------------- */

/* The model input as {"format": "png", ..., "inverted"}. */
static json_t *input_json(const attack_job *j, char *err)
{
    const bs_model *m = j->rm->model;
    int C = m->input_shape[0], H = m->input_shape[1], W = m->input_shape[2];
    size_t n = m->input_size, plane = (size_t)H * W;
    uint8_t *planes = malloc(n), *hwc = malloc(n), *png = NULL;
    size_t png_len = 0;
    char *b64 = NULL;
    if (planes && hwc) {
        bs_image_to_bytes(j->x, n, planes);
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < plane; p++)
                hwc[p * C + c] = planes[c * plane + p];
        if (!bs_image_encode(hwc, W, H, C, BS_IMAGE_PNG, 0, &png, &png_len, err))
            b64 = bs_base64_encode(png, png_len);
    }
    free(planes);
    free(hwc);
    free(png);
    if (!b64)
        return NULL;
    json_t *o = json_pack("{s:s, s:i, s:i, s:i, s:s, s:b}", "format", "png", "width", W, "height",
                          H, "channels", C, "data", b64, "inverted", j->inverted);
    free(b64);
    return o;
}

/* Accept: image/png or image/jpeg — the result's image itself, its figures
 * in headers. */
static void answer_image(const attack_job *j, const bs_attack_result *r, int original,
                         http_response *out)
{
    const bs_model *m = j->rm->model;
    int C = m->input_shape[0], H = m->input_shape[1], W = m->input_shape[2];
    size_t plane = (size_t)H * W;
    uint8_t *hwc = malloc(m->input_size), *enc = NULL;
    size_t enc_len = 0;
    char err[BS_ERR_LEN] = "out of memory";
    if (!hwc) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    for (int c = 0; c < C; c++)
        for (size_t p = 0; p < plane; p++)
            hwc[p * C + c] = r->adv8[c * plane + p];
    int jpeg = j->answer == ANSWER_JPEG;
    int rc = bs_image_encode(hwc, W, H, C, jpeg ? BS_IMAGE_JPEG : BS_IMAGE_PNG, 95, &enc,
                             &enc_len, err);
    free(hwc);
    if (rc) {
        resp_error(out, BS_E_ENCODE_FAILED, "The image cannot be encoded: %s.", err);
        return;
    }
    resp_bytes(out, 200, answer_types[j->answer], (char *)enc, enc_len);
    resp_header(out, "X-Blindspot-Model", "%s", j->rm->name);
    resp_header(out, "X-Blindspot-Original", "%d", original);
    resp_header(out, "X-Blindspot-Target", "%d", r->target);
    resp_header(out, "X-Blindspot-Label", "%d", r->adversarial);
    resp_header(out, "X-Blindspot-Success", "%s", r->success ? "true" : "false");
    resp_header(out, "X-Blindspot-Status", "%s", bs_attack_status_name(r->status));
    resp_header(out, "X-Blindspot-Distortion", "%.6g", r->norms.distortion);
    resp_header(out, "X-Blindspot-L2", "%.6g", r->norms.l2);
    resp_header(out, "X-Blindspot-Linf", "%.6g", r->norms.linf);
    resp_header(out, "X-Blindspot-C", "%.6g", r->c);
    resp_header(out, "X-Blindspot-Seconds", "%.3f", r->seconds);
}

/* The core reports the runs of one target; a job counts those of all. */
static void attack_progress(void *ctx, int done, int total)
{
    attack_job *j = ctx;
    (void)done;
    j->runs_done++;
    j->ctl->progress(j->ctl->ctx, j->runs_done, total * j->k);
}

static void attack_run(void *ctx, pool_worker *w, const bs_attack_control *job_ctl,
                       http_response *out)
{
    attack_job *j = ctx;
    const bs_model *m = j->rm->model;
    double t0 = bs_now();
    char err[BS_ERR_LEN];
    bs_workspace *ws = pool_workspace(w, j->rm->index, m, 1);
    if (!ws) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    int original = bs_argmax(bs_model_forward(m, ws, j->x, 1), m->classes);
    int targets[BS_MAX_TARGETS], k = 0;
    if (bs_attack_targets_from_json(j->target, m->classes, original, targets, &k, err)) {
        resp_error(out, BS_E_INVALID_TARGET, "%s.", err);
        return;
    }
    bs_attack_result *res = calloc((size_t)k, sizeof *res);
    bs_attack_control ctl = *job_ctl;
    if (ctl.progress) {
        /* targets the model already gives are not searched: no runs */
        j->ctl = job_ctl;
        for (int i = 0; i < k; i++)
            j->k += targets[i] != original;
        ctl.progress = attack_progress;
        ctl.ctx = j;
    }
    if (!res) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    if (bs_attack_run(m, j->x, targets, k, &j->params, &ctl, res, err)) {
        free(res);
        resp_error(out, BS_E_INVALID_ATTACK, "%s.", err);
        return;
    }
    int ok = 0, failed = 0, timed_out = 0, cancelled = 0;
    /* Targets already given were not attacked and are not counted. */
    for (int i = 0; i < k; i++) {
        if (res[i].status == BS_ATTACK_ALREADY_TARGET)
            continue;
        if (res[i].status == BS_ATTACK_TIMEOUT)
            timed_out++;
        else if (res[i].status == BS_ATTACK_CANCELLED)
            cancelled++;
        else if (res[i].success)
            ok++;
        else
            failed++;
    }
    metrics_attack(j->metrics, bs_attack_method_name(j->params.method), j->rm->name, ok, failed,
                   timed_out, cancelled, bs_now() - t0);
    if (j->answer != ANSWER_JSON && !timed_out && !cancelled) {
        answer_image(j, &res[0], original, out);
    } else {
        json_t *doc = bs_attack_answer_json(j->rm->name, m, j->x, &j->params, res, k, j->report,
                                            j->n_report, j->image_out, err);
        json_t *input = doc ? input_json(j, err) : NULL;
        if (!input) {
            json_decref(doc);
            resp_error(out, BS_E_ENCODE_FAILED, "The answer cannot be built: %s.", err);
        } else {
            json_object_set_new(doc, "input", input);
            if (cancelled || timed_out) {
                bs_error_code e = cancelled ? BS_E_SHUTTING_DOWN : BS_E_DEADLINE_EXCEEDED;
                json_object_set_new(
                    doc, "error",
                    bs_error_json(e, cancelled ? "The attack was stopped before it finished; "
                                                 "results hold the best found so far."
                                               : "The time budget ran out; results hold the "
                                                 "best found so far."));
            }
            int status = cancelled ? bs_error_get(BS_E_SHUTTING_DOWN)->status
                       : timed_out ? bs_error_get(BS_E_DEADLINE_EXCEEDED)->status : 200;
            resp_json(out, status, doc);
            if (status == 503)
                resp_header(out, "Retry-After", "%s", HTTP_RETRY_AFTER);
        }
    }
    for (int i = 0; i < k; i++)
        bs_attack_result_free(&res[i]);
    free(res);
}

/* The synchronous answer's type from the Accept header; -1 after a 406. */
static int negotiate(const http_request *req, attack_job *j, http_response *resp)
{
    int pick = bs_accept_pick(req->accept, answer_types, 3);
    if (pick < 0) {
        resp_error(resp, BS_E_NOT_ACCEPTABLE,
                   "POST /v1/attacks answers application/json, or for one target image/png "
                   "or image/jpeg; Accept: %.100s takes none of them.", req->accept);
        return -1;
    }
    j->answer = (answer_type)pick;
    return 0;
}

handler_result attacks_create(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    const char *async = req_query(req, "async");
    if (async && strcmp(async, "true") && strcmp(async, "false")) {
        resp_error(resp, BS_E_INVALID_REQUEST, "async is true or false, not '%.16s'.", async);
        return HANDLER_ANSWERED;
    }
    int is_async = async && !strcmp(async, "true");
    attack_job *j = calloc(1, sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    j->metrics = srv->metrics;
    if (is_async)
        work->deadline = jobs_deadline(srv, req); /* a body's timeout lowers it below */
    else if (negotiate(req, j, resp)) {
        attack_free(j);
        return HANDLER_ANSWERED;
    }
    json_t *root;
    const uint8_t *file = NULL;
    size_t file_len = 0;
    if (req->multipart)
        root = form_to_json(req, &file, &file_len, resp);
    else
        root = req_json_object(req, resp);
    if (!root) {
        attack_free(j);
        return HANDLER_ANSWERED;
    }
    int rc = read_request(srv, req, root, file, file_len, j, work, resp);
    json_decref(root);
    if (!rc && j->answer != ANSWER_JSON && j->n_targets > 1) {
        /* one image per answer: several targets can only be JSON */
        if (bs_accept_quality(req->accept, answer_types[ANSWER_JSON]) > 0.0) {
            j->answer = ANSWER_JSON;
        } else {
            resp_error(resp, BS_E_NOT_ACCEPTABLE,
                       "%s holds one image, and this request has %d targets; ask for one "
                       "target, or accept application/json.", answer_types[j->answer],
                       j->n_targets);
            rc = -1;
        }
    }
    if (rc) {
        attack_free(j);
        return HANDLER_ANSWERED;
    }
    work->run = attack_run;
    work->free = attack_free;
    work->ctx = j;
    work->kind = "attack";
    return is_async ? HANDLER_ASYNC : HANDLER_DEFERRED;
}
