/* attack_request — the attack request's parser and the form-field
 * conversion (see attack_request.h). */
#include "api/attack_request.h"

#include "api/predict_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fields[] = {"model", "target", "image", "method", "params", "report",
                                     "invert", "resize", "timeout", "image_format"};
#define N_FIELDS (sizeof fields / sizeof fields[0])

/* ---- form fields ---------------------------------------------------------- */

json_t *bs_attack_form_value(const char *name, const char *text)
{
    static const char *const strings[] = {"model", "method", "invert", "resize", "image_format"};
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

json_t *bs_attack_form_to_json(const bs_form_part *parts, int n, const uint8_t **file,
                               size_t *file_len)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        const bs_form_part *p = &parts[i];
        const char *text = (const char *)p->data;
        if (!strcmp(p->name, "image") && p->is_file) {
            *file = p->data;
            *file_len = p->len;
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
                                                  ? bs_attack_form_value(p->name, text)
                                                  : json_string(text));
            continue;
        }
        json_object_set_new(o, p->name, bs_attack_form_value(p->name, text));
    }
    return o;
}

/* ---- the image ------------------------------------------------------------ */

/* The image field, or the uploaded file in its place, into r->x. */
static int read_image(const bs_attack_env *env, bs_attack_request *r, const json_t *image,
                      const uint8_t *file, size_t file_len, bs_invert inv, bs_resize rs,
                      bs_api_error *e)
{
    const bs_model *m = r->model;
    bs_image_target t = {{m->input_shape[0], m->input_shape[1], m->input_shape[2]},
                         env->max_pixels, r->x, 0, r->model_name, rs};
    bs_error_code code;
    char msg[BS_ERR_LEN];
    int rc = file ? bs_image_input_encoded(file, file_len, inv, &t, &code, msg)
                  : bs_image_input_json(image, inv, &env->datasets, &t, &code, msg);
    if (rc)
        return bs_api_fail(e, code, "%s", msg);
    r->inverted = t.inverted;
    return 0;
}

/* ---- the other fields ----------------------------------------------------- */

/* The model a JSON string names. */
static const bs_model *named_model(const bs_attack_env *env, const json_t *v, const char *field,
                                   const char **canonical, bs_api_error *e)
{
    if (!json_is_string(v)) {
        bs_api_fail(e, BS_E_INVALID_REQUEST, "%s must be a model name (a string).", field);
        return NULL;
    }
    char err[BS_ERR_LEN];
    const bs_model *m = env->model(env->ctx, json_string_value(v), canonical, err);
    if (!m)
        bs_api_fail(e, BS_E_MODEL_NOT_FOUND, "%s", err);
    return m;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const bs_report_model *)a)->name, ((const bs_report_model *)b)->name);
}

/* The report list: named models in the order named, or the caller's
 * default list by name, so that a daemon and a command line holding the
 * same models list them alike. */
static int read_report(const bs_attack_env *env, bs_attack_request *r, const json_t *report,
                       bs_api_error *e)
{
    if (report && !json_is_array(report))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "report must be a list of model names.");
    size_t cap = report ? json_array_size(report) : (size_t)env->max_report;
    r->report = calloc(cap ? cap : 1, sizeof *r->report);
    if (!r->report)
        return bs_api_fail(e, BS_E_OUT_OF_MEMORY, "Out of memory for the report list.");
    if (!report) {
        r->n_report = env->report_all(env->ctx, r->model, r->report, (int)cap);
        qsort(r->report, (size_t)r->n_report, sizeof *r->report, by_name);
        return 0;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(report, i, v) {
        const char *name;
        const bs_model *m = named_model(env, v, "report[]", &name, e);
        if (!m)
            return -1;
        if (m->input_size != r->model->input_size ||
            m->input_shape[0] != r->model->input_shape[0])
            return bs_api_fail(e, BS_E_SHAPE_MISMATCH, "report model %.64s takes another input "
                               "than %.64s.", name, r->model_name);
        for (int k = 0; k < r->n_report; k++)
            if (r->report[k].model == m)
                return bs_api_fail(e, BS_E_DUPLICATE_MODEL, "report lists %.64s twice.", name);
        r->report[r->n_report++] = (bs_report_model){name, m};
    }
    return 0;
}

static int read_invert(const json_t *v, bs_invert *inv, bs_api_error *e)
{
    if (bs_invert_parse(v ? json_string_value(v) : "auto", inv))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "invert is \"auto\", \"yes\" or \"no\".");
    return 0;
}

static int read_resize(const json_t *v, bs_resize *rs, bs_api_error *e)
{
    bs_error_code code;
    char msg[BS_ERR_LEN];
    if (v && !json_is_string(v))
        return bs_api_fail(e, BS_E_INVALID_RESIZE, "resize is a string: \"stretch\", "
                           "\"crop\", \"pad\" or \"pad-right\".");
    if (bs_image_resize_read(json_string_value(v), rs, &code, msg))
        return bs_api_fail(e, code, "%s", msg);
    return 0;
}

static int parse(const json_t *root, const uint8_t *file, size_t file_len,
                 const bs_attack_env *env, bs_attack_request *r, bs_api_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        size_t i;
        for (i = 0; i < N_FIELDS && strcmp(key, fields[i]); i++)
            ;
        if (i == N_FIELDS)
            return bs_api_fail(e, BS_E_UNKNOWN_FIELD, "Unknown field '%.64s'; the fields are "
                               "model, target, image, method, params, report, invert, resize, "
                               "timeout and image_format.", key);
    }
    const json_t *model = json_object_get(root, "model");
    if (!model)
        return bs_api_fail(e, BS_E_MISSING_FIELD, "model is required (GET /v1/models lists them).");
    if (!(r->model = named_model(env, model, "model", &r->model_name, e)))
        return -1;

    const json_t *method = json_object_get(root, "method");
    const json_t *params = json_object_get(root, "params");
    char err[BS_ERR_LEN];
    if (method && !json_is_string(method))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "method must be a string such as \"lbfgs\".");
    if (params && !json_is_object(params))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "params must be an object.");
    if (bs_attack_params_from_json(params, method ? json_string_value(method) : "lbfgs",
                                   &r->params, err))
        return bs_api_fail(e, BS_E_INVALID_PARAMS, "%s.", err);

    const json_t *target = json_object_get(root, "target");
    int targets[BS_MAX_TARGETS];
    if (!target)
        return bs_api_fail(e, BS_E_MISSING_FIELD, "target is required: a label, a list, or \"all\".");
    if (!json_is_integer(target) && !json_is_array(target) &&
        !(json_is_string(target) && !strcmp(json_string_value(target), "all")))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "target must be a label, a list, or \"all\".");
    /* Ranges now; "all" is resolved once the label is known. */
    if (bs_attack_targets_from_json(target, r->model->classes, -1, targets, &r->n_targets, err))
        return bs_api_fail(e, BS_E_INVALID_TARGET, "%s.", err);
    r->target = json_incref((json_t *)target);

    const json_t *timeout = json_object_get(root, "timeout");
    if (timeout) {
        if (!json_is_number(timeout) || !(json_number_value(timeout) > 0))
            return bs_api_fail(e, BS_E_INVALID_TIMEOUT,
                               "timeout wants a positive number of seconds.");
        r->timeout = json_number_value(timeout);
    }
    const json_t *format = json_object_get(root, "image_format");
    r->image_out = BS_OUT_PNG;
    if (format && (!json_is_string(format) ||
                   bs_image_out_parse(json_string_value(format), &r->image_out)))
        return bs_api_fail(e, BS_E_INVALID_REQUEST, "image_format is png, jpeg or floats.");
    bs_invert inv = BS_INVERT_AUTO;
    bs_resize rs;
    if (read_invert(json_object_get(root, "invert"), &inv, e) ||
        read_resize(json_object_get(root, "resize"), &rs, e) ||
        read_report(env, r, json_object_get(root, "report"), e))
        return -1;
    r->x = malloc(r->model->input_size * sizeof *r->x);
    if (!r->x)
        return bs_api_fail(e, BS_E_OUT_OF_MEMORY, "Out of memory for the image.");
    return read_image(env, r, json_object_get(root, "image"), file, file_len, inv, rs, e);
}

int bs_attack_request_parse(const json_t *root, const uint8_t *file, size_t file_len,
                            const bs_attack_env *env, bs_attack_request *out,
                            bs_api_error *err)
{
    *out = (bs_attack_request){0};
    if (!json_is_object(root))
        return bs_api_fail(err, BS_E_INVALID_JSON, "The request must be a JSON object.");
    if (parse(root, file, file_len, env, out, err)) {
        bs_attack_request_free(out);
        return -1;
    }
    return 0;
}

int bs_attack_request_targets(const bs_attack_request *r, int original, int *targets, int *k,
                              bs_api_error *err)
{
    char msg[BS_ERR_LEN];
    if (bs_attack_targets_from_json(r->target, r->model->classes, original, targets, k, msg))
        return bs_api_fail(err, BS_E_INVALID_TARGET, "%s.", msg);
    return 0;
}

json_t *bs_attack_request_answer(const bs_attack_request *r, const bs_attack_result *res, int k,
                                 char *err)
{
    json_t *doc = bs_attack_answer_json(r->model_name, r->model, r->x, &r->params, res, k,
                                        r->report, r->n_report, r->image_out, err);
    json_t *input = doc ? bs_input_png_json(r->x, r->model->input_shape, r->inverted, err)
                        : NULL;
    if (!input) {
        json_decref(doc);
        return NULL;
    }
    json_object_set_new(doc, "input", input);
    return doc;
}

void bs_attack_request_free(bs_attack_request *r)
{
    json_decref(r->target);
    free(r->x);
    free(r->report);
    *r = (bs_attack_request){0};
}
