/* predict — POST /v1/models/{name}/predict: a model's label and
 * probabilities for one image, or its error rate and confusion matrix on
 * a slice of a dataset split. The answers are the documents of
 * api/predict_json.h, the ones `blindspot predict --json` prints.
 *
 * The body is one of:
 *   image/png, image/jpeg   the image itself; ?invert=auto|yes|no and
 *                           ?resize=stretch|crop|pad|pad-right
 *   multipart/form-data     the file part "image" (curl -F image=@x.png)
 *                           and optionally the fields "invert", "resize"
 *   application/json        {"image": one of the forms of
 *                           api/image_input.h, "invert", "resize",
 *                           "timeout"}, or
 *                           for a slice {"dataset", "split", "first", "n",
 *                           "timeout"}, all optional: the model's own
 *                           dataset (else mnist), test, 0, the rest of
 *                           the split
 * An image is decoded (under --max-pixels) and converted to the model's
 * input on the HTTP thread, as attacks do; PNG and JPEG are inverted when
 * they look like dark ink on a light background unless invert says
 * otherwise, raw floats and dataset samples only when it says yes. The
 * model runs on a worker, or at once on the HTTP thread when it is small
 * (pool_run_inline); a slice runs on a worker in chunks, checking the
 * deadline and the cancel flag between them. */
#include "server/routes.h"

#include "api/image_input.h"
#include "api/predict_json.h"
#include "core/control.h" /* bs_now */
#include "core/train.h"  /* bs_evaluate */
#include "server/image_url.h"

#include <stdlib.h>
#include <string.h>

/* Multiply-adds of one forward pass up to which an image runs on the HTTP
 * thread when the queue is empty (the cnn of the zoo is about 1M). */
#define PREDICT_QUICK_MACS 2000000
/* Images scored between two looks at the deadline and the cancel flag. */
#define PREDICT_CHUNK 1000

typedef struct predict_job {
    const registry_model *rm;
    float *x;                /* the image, input_size floats; NULL for a slice */
    int inverted;
    const registry_split *d; /* the slice's split, materialised chunk by chunk */
    int first, n;
    char *url;               /* an image by URL, fetched on the worker into x; or NULL */
    bs_invert inv;           /* for it */
    bs_resize resize;        /* how an image of another aspect ratio is fitted */
    server *srv;
} predict_job;

static void predict_free(void *ctx)
{
    predict_job *j = ctx;
    if (!j)
        return;
    free(j->x);
    free(j->url);
    free(j);
}

/* ---- the work (worker, or the HTTP thread for a small image) ------------- */

static void image_run(predict_job *j, pool_worker *w, http_response *out)
{
    const bs_model *m = j->rm->model;
    char err[BS_ERR_LEN];
    bs_workspace *ws = pool_workspace(w, j->rm->ws, m, 1);
    json_t *doc = ws ? bs_predict_image_json(j->rm->name, m, ws, j->x, j->inverted, err) : NULL;
    if (doc)
        resp_json(out, 200, doc);
    else if (!ws)
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    else
        resp_error(out, BS_E_ENCODE_FAILED, "The answer cannot be built: %s.", err);
}

static void slice_run(predict_job *j, const bs_control *ctl, http_response *out)
{
    const bs_model *m = j->rm->model;
    size_t cells = (size_t)m->classes * m->classes;
    int *confusion = calloc(cells, sizeof *confusion), *part = calloc(cells, sizeof *part);
    char err[BS_ERR_LEN];
    if (!confusion || !part) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        goto out;
    }
    for (int done = 0; done < j->n; done += PREDICT_CHUNK) {
        if (atomic_load(ctl->cancel)) {
            resp_error(out, BS_E_CANCELLED, "The prediction was stopped before it finished.");
            goto out;
        }
        if (bs_now() > ctl->deadline) {
            resp_error(out, BS_E_DEADLINE_EXCEEDED,
                       "The time budget ran out after %d of %d images; ask for fewer (n) or "
                       "a larger timeout.", done, j->n);
            goto out;
        }
        int count = j->n - done < PREDICT_CHUNK ? j->n - done : PREDICT_CHUNK;
        bs_dataset slice = {0};
        if (registry_split_slice(j->d, j->first + done, count, &slice, err)) {
            resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
            goto out;
        }
        double rate = bs_evaluate(m, &slice, part, err);
        bs_dataset_free(&slice);
        if (rate < 0) {
            resp_error(out, BS_E_SHAPE_MISMATCH, "Model %s cannot score %s: %s.", j->rm->name,
                       j->d->name, err);
            goto out;
        }
        for (size_t c = 0; c < cells; c++)
            confusion[c] += part[c];
    }
    json_t *doc = bs_predict_split_json(j->rm->name, m, j->d->name, j->d->split, j->first, j->n,
                                        confusion);
    if (doc)
        resp_json(out, 200, doc);
    else
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
out:
    free(confusion);
    free(part);
}

/* An image by URL, on the worker: fetched and decoded into j->x. 0, or -1
 * after an answer in out. */
static int fetch_image(predict_job *j, double deadline, http_response *out)
{
    uint8_t *bytes;
    size_t len;
    if (image_url_fetch(j->srv, j->url, deadline, &bytes, &len, out))
        return -1;
    const bs_model *m = j->rm->model;
    bs_image_target t = {{m->input_shape[0], m->input_shape[1], m->input_shape[2]},
                         j->srv->cfg->max_pixels, j->x, 0, j->rm->name, j->resize};
    bs_error_code code;
    char msg[BS_ERR_LEN];
    int rc = bs_image_input_encoded(bytes, len, j->inv, &t, &code, msg);
    free(bytes);
    if (rc) {
        resp_error(out, code, "%s", msg);
        return -1;
    }
    j->inverted = t.inverted;
    return 0;
}

static void predict_run(void *ctx, pool_worker *w, const bs_control *ctl,
                        http_response *out)
{
    predict_job *j = ctx;
    if (j->url && fetch_image(j, ctl->deadline, out))
        return;
    if (j->x)
        image_run(j, w, out);
    else
        slice_run(j, ctl, out);
}

/* ---- the request (HTTP thread) -------------------------------------------- */

static const char *const image_fields[] = {"image", "invert", "resize", "timeout"};
static const char *const slice_fields[] = {"dataset", "split", "first", "n", "timeout"};

/* -1 after a 400 when root has a field outside fields. */
static int check_fields(const json_t *root, const char *const *fields, size_t n,
                        const char *list, http_response *resp)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        size_t i;
        for (i = 0; i < n && strcmp(key, fields[i]); i++)
            ;
        if (i == n) {
            resp_error(resp, BS_E_UNKNOWN_FIELD, "Unknown field '%.64s'; %s.", key, list);
            return -1;
        }
    }
    return 0;
}

/* invert's text (NULL: auto). -1 after a 400. */
static int read_invert(const char *s, bs_invert *inv, http_response *resp)
{
    if (bs_invert_parse(s ? s : "auto", inv)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "invert is \"auto\", \"yes\" or \"no\", not "
                   "'%.32s'.", s);
        return -1;
    }
    return 0;
}

/* resize's text (NULL: stretch) into j. -1 after a 422. */
static int read_resize(const char *s, predict_job *j, http_response *resp)
{
    bs_error_code code;
    char msg[BS_ERR_LEN];
    if (bs_image_resize_read(s, &j->resize, &code, msg)) {
        resp_error(resp, code, "%s", msg);
        return -1;
    }
    return 0;
}

/* The target of an image: the model's input, in j->x. */
static int new_image(server *srv, predict_job *j, bs_image_target *t, http_response *resp)
{
    const bs_model *m = j->rm->model;
    j->x = malloc(m->input_size * sizeof *j->x);
    if (!j->x) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    *t = (bs_image_target){{m->input_shape[0], m->input_shape[1], m->input_shape[2]},
                           srv->cfg->max_pixels, j->x, 0, j->rm->name, j->resize};
    return 0;
}

/* PNG or JPEG bytes (a raw body or a form's file) into j. -1 after an answer. */
static int read_encoded(server *srv, predict_job *j, const uint8_t *bytes, size_t len,
                        bs_invert inv, http_response *resp)
{
    bs_image_target t;
    bs_error_code code;
    char msg[BS_ERR_LEN];
    if (len == 0) {
        resp_error(resp, BS_E_MISSING_IMAGE, "The body is empty; send a PNG or JPEG image.");
        return -1;
    }
    if (new_image(srv, j, &t, resp))
        return -1;
    if (bs_image_input_encoded(bytes, len, inv, &t, &code, msg)) {
        resp_error(resp, code, "%s", msg);
        return -1;
    }
    j->inverted = t.inverted;
    return 0;
}

/* api/image_input.h's view of the resident splits: a dataset named as the
 * other endpoints name it (req_dataset_split). */
typedef struct sample_source {
    server *srv;
    const bs_model *m;
} sample_source;

static int source_split(void *ctx, const char *dataset, const char *split, bs_image_split *out,
                        char *err)
{
    sample_source *src = ctx;
    const registry_split *d = req_dataset_split_find(src->srv, src->m, dataset, split, err);
    if (!d)
        return -1;
    *out = (bs_image_split){.dataset = d->name, .split = d->split, .n = d->n,
                            .input_size = d->input_size, .handle = d,
                            .shape = {d->shape[0], d->shape[1], d->shape[2]}};
    return 0;
}

static int source_sample(void *ctx, const bs_image_split *split, int index, float *x)
{
    (void)ctx;
    return registry_split_sample(split->handle, index, x);
}

/* {"image", "invert", "resize", "timeout"} */
static int read_json_image(server *srv, const json_t *root, predict_job *j,
                           http_response *resp)
{
    if (check_fields(root, image_fields, sizeof image_fields / sizeof *image_fields,
                     "an image prediction takes image, invert, resize and timeout", resp))
        return -1;
    const json_t *invert = json_object_get(root, "invert");
    const json_t *resize = json_object_get(root, "resize");
    if (resize && !json_is_string(resize)) {
        resp_error(resp, BS_E_INVALID_RESIZE, "resize is a string: \"stretch\", \"crop\", "
                   "\"pad\" or \"pad-right\".");
        return -1;
    }
    if (read_resize(json_string_value(resize), j, resp))
        return -1;
    bs_invert inv;
    if (invert && !json_is_string(invert)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "invert is \"auto\", \"yes\" or \"no\".");
        return -1;
    }
    if (read_invert(json_string_value(invert), &inv, resp))
        return -1;
    bs_image_target t;
    bs_error_code code;
    char msg[BS_ERR_LEN];
    if (new_image(srv, j, &t, resp))
        return -1;
    const char *url = image_url_of(json_object_get(root, "image"));
    if (url) { /* fetched on the worker */
        j->url = strdup(url);
        j->inv = inv;
        j->srv = srv;
        if (!j->url)
            resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return j->url ? 0 : -1;
    }
    sample_source src = {srv, j->rm->model};
    bs_image_datasets ds = {&src, source_split, source_sample};
    if (bs_image_input_json(json_object_get(root, "image"), inv, &ds, &t, &code, msg)) {
        resp_error(resp, code, "%s", msg);
        return -1;
    }
    j->inverted = t.inverted;
    return 0;
}

/* {"dataset", "split", "first", "n", "timeout"} */
static int read_json_slice(server *srv, const json_t *root, predict_job *j,
                           http_response *resp)
{
    if (check_fields(root, slice_fields, sizeof slice_fields / sizeof *slice_fields,
                     "the fields are image, invert and resize for an image, or dataset, "
                     "split, first and n for a slice, and timeout", resp))
        return -1;
    const json_t *dataset = json_object_get(root, "dataset"), *split = json_object_get(root, "split");
    if ((dataset && !json_is_string(dataset)) || (split && !json_is_string(split))) {
        resp_error(resp, BS_E_INVALID_REQUEST, "dataset and split are names.");
        return -1;
    }
    j->d = req_dataset_split(srv, j->rm, json_string_value(dataset),
                             split ? json_string_value(split) : "test", resp);
    if (!j->d)
        return -1;
    long long first = 0, n = 0;
    if (req_body_int(root, "first", 0, j->d->n - 1, &first, resp) ||
        req_body_int(root, "n", 1, j->d->n - first, &n, resp))
        return -1;
    j->first = (int)first;
    j->n = n ? (int)n : j->d->n - (int)first;
    return 0;
}

/* A form: the file part "image" and the fields "invert" and "resize". */
static int read_form(server *srv, const http_request *req, predict_job *j, http_response *resp)
{
    const http_part *image = NULL;
    const char *invert = NULL, *resize = NULL;
    for (int i = 0; i < req->n_parts; i++) {
        const http_part *p = &req->parts[i];
        if (!strcmp(p->name, "image"))
            image = p;
        else if (!strcmp(p->name, "invert"))
            invert = (const char *)p->data;
        else if (!strcmp(p->name, "resize"))
            resize = (const char *)p->data;
        else {
            resp_error(resp, BS_E_UNKNOWN_FIELD, "Unknown form field '%.64s'; the fields are "
                       "image (a PNG or JPEG file), invert and resize.", p->name);
            return -1;
        }
    }
    bs_invert inv;
    if (read_invert(invert, &inv, resp) || read_resize(resize, j, resp))
        return -1;
    if (!image) {
        resp_error(resp, BS_E_MISSING_IMAGE,
                   "The form has no image; send the file as the part image (-F image=@x.png).");
        return -1;
    }
    return read_encoded(srv, j, image->data, image->len, inv, resp);
}

/* The request, by its media type, into j. -1 after an answer. */
static int read_request(server *srv, const http_request *req, predict_job *j, http_work *work,
                        http_response *resp)
{
    if (req->multipart)
        return read_form(srv, req, j, resp);
    if (req_content_type_is(req, "image/png") || req_content_type_is(req, "image/jpeg")) {
        bs_invert inv;
        if (read_invert(req_query(req, "invert"), &inv, resp) ||
            read_resize(req_query(req, "resize"), j, resp))
            return -1;
        return read_encoded(srv, j, req->body, req->body_len, inv, resp);
    }
    if (req->content_type && !req_content_type_is(req, "application/json")) {
        resp_error(resp, BS_E_UNSUPPORTED_MEDIA_TYPE,
                   "This endpoint takes image/png, image/jpeg, multipart/form-data or "
                   "application/json, not %.100s.", req->content_type);
        return -1;
    }
    json_t *root = req_json_object(req, resp);
    if (!root)
        return -1;
    int rc = req_body_timeout(root, req, work, resp);
    if (!rc)
        rc = json_object_get(root, "image") ? read_json_image(srv, root, j, resp)
                                            : read_json_slice(srv, root, j, resp);
    json_decref(root);
    return rc;
}

handler_result predict_create(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    const registry_model *rm = req_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    predict_job *j = calloc(1, sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    j->rm = rm;
    if (read_request(srv, req, j, work, resp)) {
        predict_free(j);
        return HANDLER_ANSWERED;
    }
    work->run = predict_run;
    work->free = predict_free;
    work->kind = "predict";
    work->ctx = j;
    work->quick = j->x && !j->url && bs_model_macs(rm->model) <= PREDICT_QUICK_MACS;
    return HANDLER_DEFERRED;
}
