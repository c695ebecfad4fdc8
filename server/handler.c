/* handler — response builders and request helpers shared by every
 * endpoint; see handler.h. */
#include "server/handler.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void resp_clear(http_response *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

void resp_bytes(http_response *r, int status, const char *content_type, char *body,
                size_t len)
{
    resp_clear(r);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->body_len = len;
}

/* text_of_json's writer: any failed write fails the whole text. */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    int failed;
} text_buf;

static int text_write(const char *buf, size_t size, void *data)
{
    text_buf *t = data;
    if (!t->failed && t->len + size + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + size + 1)
            cap *= 2;
        char *ns = realloc(t->s, cap);
        if (ns) {
            t->s = ns;
            t->cap = cap;
        } else {
            t->failed = 1;
        }
    }
    if (t->failed)
        return -1;
    memcpy(t->s + t->len, buf, size);
    t->len += size;
    t->s[t->len] = '\0';
    return 0;
}

char *text_of_json(const json_t *v, size_t flags)
{
    text_buf t = {0};
    if (json_dump_callback(v, text_write, &t, flags) != 0 || t.failed || !t.s) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

void resp_json(http_response *r, int status, json_t *body)
{
    char *s = body ? text_of_json(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(body);
    if (!s) {
        /* Only memory can fail here; say so in a fixed body. */
        static const char oom[] =
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"The server ran out of "
            "memory building the answer.\"}}";
        char *copy = malloc(sizeof oom);
        if (copy)
            memcpy(copy, oom, sizeof oom);
        resp_bytes(r, 500, "application/json", copy, copy ? sizeof oom - 1 : 0);
        return;
    }
    resp_bytes(r, status, "application/json", s, strlen(s));
}

/* The length of the UTF-8 character at s (1 to 4), or 0 when s starts
 * none that Jansson takes: a stray or cut byte, an overlong form, a
 * surrogate, or a code point beyond U+10FFFF. */
static int utf8_length(const unsigned char *s)
{
    int n = s[0] < 0x80   ? 1
            : s[0] < 0xC2 ? 0
            : s[0] < 0xE0 ? 2
            : s[0] < 0xF0 ? 3
            : s[0] < 0xF5 ? 4
                          : 0;
    if (n <= 1)
        return n;
    unsigned c = s[0] & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
        (n == 4 && (c < 0x10000 || c > 0x10FFFF)))
        return 0;
    return n;
}

void resp_error(http_response *r, bs_error_code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages quote what the client sent (a header, a name) cut to a
     * length, which may fall inside a character or quote bytes that are
     * not UTF-8 at all; JSON cannot carry those, and the answer would be
     * lost, so each such byte becomes '?'. */
    for (unsigned char *p = (unsigned char *)msg; *p;) {
        int n = utf8_length(p);
        if (n)
            p += n;
        else
            *p++ = '?';
    }
    const bs_error_info *e = bs_error_get(code);
    int status = e->status;
    if (r->oip_errors)
        resp_json(r, status, json_pack("{s:s, s:s}", "error", msg, "code", e->code));
    else
        resp_json(r, status, json_pack("{s:o}", "error", bs_error_json(code, msg)));
    if (status == 503 || status == 429)
        resp_header(r, "Retry-After", "%s", HTTP_RETRY_AFTER);
}

void resp_retry_after(http_response *r, double seconds)
{
    long s = seconds > 1 ? (long)ceil(seconds) : 1;
    for (int i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, "Retry-After")) {
            snprintf(r->headers[i].value, sizeof r->headers[i].value, "%ld", s);
            return;
        }
    resp_header(r, "Retry-After", "%ld", s);
}

void resp_header(http_response *r, const char *name, const char *fmt, ...)
{
    if (r->n_headers == HTTP_MAX_HEADERS)
        return;
    http_header *h = &r->headers[r->n_headers++];
    snprintf(h->name, sizeof h->name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->value, sizeof h->value, fmt, ap);
    va_end(ap);
}

const char *req_header(const http_request *req, const char *name)
{
    return req->header ? req->header(req->conn, name) : NULL;
}

const char *req_query(const http_request *req, const char *key)
{
    for (int i = 0; i < req->n_query; i++)
        if (!strcmp(req->query[i].key, key))
            return req->query[i].value ? req->query[i].value : "";
    return NULL;
}

int req_content_type_is(const http_request *req, const char *type)
{
    const char *ct = req->content_type;
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(type);
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Refuses (415, 400) a body that cannot be a JSON document. */
static int req_json_acceptable(const http_request *req, http_response *resp)
{
    if (req->content_type && !req_content_type_is(req, "application/json")) {
        resp_error(resp, BS_E_UNSUPPORTED_MEDIA_TYPE,
                   "This endpoint takes application/json, not %.100s.", req->content_type);
        return 0;
    }
    if (req->body_len == 0) {
        resp_error(resp, BS_E_EMPTY_BODY, "The request has no body; send a JSON object.");
        return 0;
    }
    return 1;
}

/* The parsed root, or NULL after a 400 when it failed or is no object. */
static json_t *req_json_checked(json_t *root, const json_error_t *jerr, http_response *resp)
{
    if (!root) {
        resp_error(resp, BS_E_INVALID_JSON, "The body is not valid JSON: %s (line %d, column %d).",
                   jerr->text, jerr->line, jerr->column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        resp_error(resp, BS_E_INVALID_JSON, "The body must be a JSON object.");
        return NULL;
    }
    return root;
}

json_t *req_json_object(const http_request *req, http_response *resp)
{
    if (!req_json_acceptable(req, resp))
        return NULL;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)req->body, req->body_len,
                              JSON_REJECT_DUPLICATES, &jerr);
    return req_json_checked(root, &jerr, resp);
}

json_t *req_json_tensor_object(const http_request *req, http_response *resp,
                               bs_tensor_data *tensor)
{
    tensor->values = NULL;
    tensor->n = 0;
    if (!req_json_acceptable(req, resp))
        return NULL;
    json_error_t jerr;
    json_t *root = bs_tensor_json_load((const char *)req->body, req->body_len, tensor, &jerr);
    root = req_json_checked(root, &jerr, resp);
    if (!root) {
        free(tensor->values);
        tensor->values = NULL;
    }
    return root;
}

int json_number_value_ok(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}

const registry_model *req_model(const http_request *req, const char *name,
                                http_response *resp)
{
    const registry_model *rm = registry_set_find(req->models, name);
    if (!rm)
        resp_error(resp, BS_E_MODEL_NOT_FOUND,
                   "No model named '%.64s' is loaded; GET /v1/models lists them.", name);
    else
        snprintf(resp->model, sizeof resp->model, "%s", rm->name);
    return rm;
}

const registry_model *req_route_model(server *srv, const http_request *req,
                                      http_response *resp)
{
    (void)srv;
    return req_model(req, req->params[0], resp);
}

const registry_split *req_dataset_split_find(server *srv, const bs_model *m,
                                             const char *dataset, const char *split, char *err)
{
    const char *name = dataset ? dataset : bs_model_get_meta(m, "blindspot.dataset");
    char base[REGISTRY_NAME_LEN];
    snprintf(base, sizeof base, "%s", name ? name : "mnist");
    /* mnist:P1 is a half of mnist's train split; its test split is mnist's */
    char *variant = strchr(base, ':');
    if (variant && !strcmp(split, "test"))
        *variant = '\0';
    const registry_split *d = registry_split_find(&srv->reg, base, split);
    /* a model of a dataset the daemon does not hold reads mnist; a P1/P2
     * half's train split is no whole split, and is refused */
    if (!d && !dataset && !variant)
        d = registry_split_find(&srv->reg, "mnist", split);
    if (!d && variant && *variant)
        snprintf(err, BS_ERR_LEN, "No dataset split %.64s/%.16s is loaded; GET /v1/datasets "
                 "lists them.", base, split);
    else if (!d)
        registry_split_missing(&srv->reg, dataset ? base : "mnist", split, err, BS_ERR_LEN);
    return d;
}

const registry_split *req_dataset_split(server *srv, const registry_model *rm,
                                        const char *dataset, const char *split,
                                        http_response *resp)
{
    char err[BS_ERR_LEN];
    const bs_model *m = rm->model;
    const registry_split *d = req_dataset_split_find(srv, m, dataset, split, err);
    if (!d) {
        resp_error(resp, BS_E_DATASET_NOT_FOUND, "%s", err);
    } else if (d->input_size != m->input_size || d->shape[0] != m->input_shape[0]) {
        resp_error(resp, BS_E_SHAPE_MISMATCH, "%s samples are (%d,%d,%d); model %s takes "
                   "(%d,%d,%d).", d->name, d->shape[0], d->shape[1], d->shape[2], rm->name,
                   m->input_shape[0], m->input_shape[1], m->input_shape[2]);
        d = NULL;
    }
    return d;
}

int req_body_int(const json_t *root, const char *key, long long lo, long long hi,
                 long long *out, http_response *resp)
{
    const json_t *v = json_object_get(root, key);
    if (!v)
        return 0;
    if (!json_is_integer(v)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "%s must be a whole number.", key);
        return -1;
    }
    if (json_integer_value(v) < lo || json_integer_value(v) > hi) {
        resp_error(resp, BS_E_OUT_OF_RANGE, "%s must be in [%lld, %lld], not %lld.", key, lo, hi,
                   (long long)json_integer_value(v));
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

int req_body_timeout(const json_t *root, const http_request *req, http_work *work,
                     http_response *resp)
{
    const json_t *timeout = json_object_get(root, "timeout");
    double t;
    if (!timeout)
        return 0;
    if (!json_number_value_ok(timeout, &t) || !(t > 0)) {
        resp_error(resp, BS_E_INVALID_TIMEOUT, "timeout wants a positive number of seconds.");
        return -1;
    }
    if (req->arrival + t < work->deadline)
        work->deadline = req->arrival + t;
    return 0;
}

/* ---- work that outlives its request ---------------------------------- */

/* An asynchronous job's work with the model set of the request that made
 * it: the models its ctx points into stay until the job is over, whatever
 * reloads happen meanwhile. */
typedef struct held_work {
    http_work inner;
    registry_set *models;
} held_work;

static void held_run(void *ctx, pool_worker *w, const bs_control *ctl,
                     http_response *out)
{
    held_work *h = ctx;
    h->inner.run(h->inner.ctx, w, ctl, out);
}

static void held_free(void *ctx)
{
    held_work *h = ctx;
    if (h->inner.free)
        h->inner.free(h->inner.ctx);
    registry_set_release(h->models);
    free(h);
}

const http_work *work_unwrapped(const http_work *work)
{
    return work->run == held_run ? &((const held_work *)work->ctx)->inner : work;
}

/* work_hold_models: see handler.h. */
int work_hold_models(http_work *work, registry_set *models)
{
    held_work *h = malloc(sizeof *h);
    if (!h)
        return -1;
    h->inner = *work;
    h->models = models;
    if (models)
        registry_set_retain(models);
    work->run = held_run;
    work->free = held_free;
    work->ctx = h;
    return 0;
}
