/* v2 — the Open Inference Protocol (KServe V2) endpoints: health, server
 * and model metadata, inference (which runs on the worker pool), and
 * Triton's extensions clients rely on: binary tensor data, classification
 * and statistics (measured here, kept in metrics.c).
 *
 * A model has one input, "input", FP32 of shape [-1, C, H, W] (also
 * accepted as [-1, C*H*W], and [-1, H, W] when C is 1; any numeric
 * datatype is converted, see api/oip_tensor.h), and two outputs,
 * "probabilities" FP32 [-1, classes] (the softmax) and "label" INT64 [-1].
 * Every model has one version, "1". Statuses follow the protocol: a bad
 * request is 400, and readiness answers 200 for ready and 400 for not
 * ready (while loading), where other routes answer 503 not_ready. */
#include "server/routes.h"

#include "api/infer_json.h"
#include "api/oip_tensor.h"
#include "core/attack.h" /* bs_now */
#include "core/layers.h" /* bs_softmax_xent_forward */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V2_VERSION "1"
#define SERVER_NAME "blindspot"
#define SERVER_VERSION "0.1.0"
/* Samples per model evaluation: inference runs a batch in chunks of this
 * size through the worker's workspace, which is sized for it once. */
#define INFER_CHUNK 64
/* Multiply-adds up to which an inference runs on the HTTP thread when the
 * pool's queue is empty (a few hundred microseconds at most; one MNIST
 * image on fc100-100-10 is 89,400). */
#define INFER_QUICK_MACS 1000000
/* The binary tensor data extension's header: the length of the JSON that
 * starts a body (request or answer) whose tensors follow as raw bytes. */
#define INFER_HEADER_LENGTH "Inference-Header-Content-Length"

handler_result v2_live(server *srv, const http_request *req, http_response *resp,
                       http_work *work)
{
    (void)srv, (void)req, (void)work;
    resp_json(resp, 200, json_pack("{s:b}", "live", 1));
    return HANDLER_ANSWERED;
}

handler_result v2_ready(server *srv, const http_request *req, http_response *resp,
                        http_work *work)
{
    (void)req, (void)work;
    /* The protocol's reading: 200 is ready, a 4xx is not ready. */
    int ready = atomic_load(&srv->ready);
    resp_json(resp, ready ? 200 : 400, json_pack("{s:b}", "ready", ready));
    return HANDLER_ANSWERED;
}

handler_result v2_server(server *srv, const http_request *req, http_response *resp,
                         http_work *work)
{
    (void)srv, (void)req, (void)work;
    resp_json(resp, 200, json_pack("{s:s, s:s, s:[s,s,s,s]}", "name", SERVER_NAME, "version",
                                   SERVER_VERSION, "extensions", "binary_tensor_data",
                                   "classification", "statistics", "model_repository"));
    return HANDLER_ANSWERED;
}

/* The model a /v2/models/{name}[/versions/{version}] route names, or NULL
 * after a 404 in resp: every model has one version, V2_VERSION. */
static const registry_model *v2_route_model(server *srv, const http_request *req,
                                            http_response *resp)
{
    const registry_model *rm = req_route_model(srv, req, resp);
    if (rm && req->n_params > 1 && strcmp(req->params[1], V2_VERSION) != 0) {
        resp_error(resp, BS_E_MODEL_VERSION_NOT_FOUND,
                   "Model %s has no version '%.32s'; its only version is \"" V2_VERSION "\".",
                   rm->name, req->params[1]);
        return NULL;
    }
    return rm;
}

handler_result v2_model(server *srv, const http_request *req, http_response *resp,
                        http_work *work)
{
    (void)work;
    const registry_model *rm = v2_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    const bs_model *m = rm->model;
    /* The protocol's platform is "<project>_<format>": the format the
     * loader read, whatever the file's name (--model-name takes any). */
    const char *format = bs_model_get_meta(m, "blindspot.format");
    const char *platform = format && !strcmp(format, "onnx") ? SERVER_NAME "_onnx"
                                                              : SERVER_NAME "_safetensors";
    resp_json(resp, 200,
              json_pack("{s:s, s:[s], s:s, s:[{s:s, s:s, s:[i,i,i,i]}], "
                        "s:[{s:s, s:s, s:[i,i]}, {s:s, s:s, s:[i]}]}",
                        "name", rm->name, "versions", V2_VERSION, "platform", platform,
                        "inputs", "name", "input", "datatype", "FP32", "shape", -1,
                        m->input_shape[0], m->input_shape[1], m->input_shape[2], "outputs",
                        "name", "probabilities", "datatype", "FP32", "shape", -1, m->classes,
                        "name", "label", "datatype", "INT64", "shape", -1));
    return HANDLER_ANSWERED;
}

handler_result v2_model_ready(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    (void)work;
    /* Served while loading, to answer "not ready" the protocol's way (a
     * 4xx) rather than with the 503 of other routes. */
    if (!req->models) { /* dispatched before ready */
        resp_json(resp, 400, json_pack("{s:s, s:b}", "name", req->params[0], "ready", 0));
        return HANDLER_ANSWERED;
    }
    const registry_model *rm = v2_route_model(srv, req, resp);
    if (rm)
        resp_json(resp, 200, json_pack("{s:s, s:b}", "name", rm->name, "ready", 1));
    return HANDLER_ANSWERED;
}

/* ---- statistics (Triton's extension) ------------------------------------ */

static json_t *duration_json(const metrics_duration *d)
{
    return json_pack("{s:I, s:I}", "count", (json_int_t)d->count, "ns", (json_int_t)d->ns);
}

/* Triton's model statistics document of rm. */
static json_t *model_stats_json(server *srv, const registry_model *rm)
{
    metrics_model_stats st;
    metrics_inference_stats(srv->metrics, rm->name, &st);
    json_t *batches = json_array();
    for (int i = 0; i < st.n_batches; i++) {
        const metrics_batch *b = &st.batches[i];
        json_array_append_new(batches,
                              json_pack("{s:i, s:o, s:o, s:o}", "batch_size", b->batch_size,
                                        "compute_input", duration_json(&b->compute_input),
                                        "compute_infer", duration_json(&b->compute_infer),
                                        "compute_output", duration_json(&b->compute_output)));
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o, s:o, s:o}, s:o}",
                     "name", rm->name, "version", V2_VERSION, "last_inference",
                     (json_int_t)st.last_inference, "inference_count",
                     (json_int_t)st.inference_count, "execution_count",
                     (json_int_t)st.execution_count, "inference_stats", "success",
                     duration_json(&st.success), "fail", duration_json(&st.fail), "queue",
                     duration_json(&st.queue), "compute_input", duration_json(&st.compute_input),
                     "compute_infer", duration_json(&st.compute_infer), "compute_output",
                     duration_json(&st.compute_output), "batch_stats", batches);
}

handler_result v2_stats(server *srv, const http_request *req, http_response *resp,
                        http_work *work)
{
    (void)work;
    json_t *list = json_array();
    if (req->n_params > 0) {
        const registry_model *rm = v2_route_model(srv, req, resp);
        if (!rm) {
            json_decref(list);
            return HANDLER_ANSWERED;
        }
        json_array_append_new(list, model_stats_json(srv, rm));
    } else {
        for (int i = 0; i < req->models->n_models; i++)
            json_array_append_new(list, model_stats_json(srv, req->models->models[i]));
    }
    resp_json(resp, 200, json_pack("{s:o}", "model_stats", list));
    return HANDLER_ANSWERED;
}

/* ---- inference -------------------------------------------------------- */

typedef struct infer_job {
    const registry_model *rm;
    float *x;          /* B * input_size */
    int B;
    json_t *id;        /* echoed, or NULL */
    int want_probs, want_label;
    int probs_binary, label_binary; /* the output as binary data (Triton's extension) */
    int top_k;         /* > 0: probabilities as top_k classifications */
    /* for the statistics extension */
    metrics *metrics;
    double arrival;       /* bs_now() at the request's headers */
    double handed;        /* bs_now() when the handler handed it to the pool */
    double compute_input; /* seconds the handler spent reading the input */
    int recorded;         /* its statistics are written */
} infer_job;

/* Writes j's statistics once: a success from infer_run, or a failure
 * (refused, out of time, never run) from wherever it ended. */
static void infer_record(infer_job *j, const metrics_inference_times *t)
{
    if (!j->recorded)
        metrics_inference(j->metrics, j->rm->name, t);
    j->recorded = 1;
}

static void infer_free(void *ctx)
{
    infer_job *j = ctx;
    /* not recorded: refused by the handler, or never run (queue full,
     * expired, client gone) */
    infer_record(j, &(metrics_inference_times){.total = bs_now() - j->arrival});
    free(j->x);
    json_decref(j->id);
    free(j);
}

static void infer_run(void *ctx, pool_worker *w, const bs_attack_control *ctl,
                      http_response *out)
{
    infer_job *j = ctx;
    const bs_model *m = j->rm->model;
    int V = m->classes;
    double started = bs_now();
    bs_workspace *ws = pool_workspace(w, j->rm->ws, m, INFER_CHUNK);
    float *probs = malloc((size_t)j->B * (size_t)V * sizeof *probs);
    int *labels = malloc((size_t)j->B * sizeof *labels);
    if (!ws || !probs || !labels) {
        free(probs);
        free(labels);
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory for this batch.");
        return;
    }
    for (int b0 = 0; b0 < j->B; b0 += INFER_CHUNK) {
        if (atomic_load(ctl->cancel) || bs_now() > ctl->deadline) {
            free(probs);
            free(labels);
            if (atomic_load(ctl->cancel))
                resp_error(out, BS_E_SHUTTING_DOWN, "The request was cancelled.");
            else
                resp_error(out, BS_E_DEADLINE_EXCEEDED,
                           "The time budget ran out after %d of %d samples.", b0, j->B);
            return;
        }
        int n = j->B - b0 < INFER_CHUNK ? j->B - b0 : INFER_CHUNK;
        const float *logits = bs_model_forward(m, ws, j->x + (size_t)b0 * m->input_size, n);
        memset(ws->targets, 0, (size_t)n * sizeof *ws->targets);
        bs_softmax_xent_forward(probs + (size_t)b0 * V, ws->losses, logits, ws->targets, n, V);
        for (int b = 0; b < n; b++)
            labels[b0 + b] = bs_argmax(logits + (size_t)b * V, V);
    }
    bs_infer_answer answer = {
        .model_name = j->rm->name,
        .model_version = V2_VERSION,
        .id = j->id ? json_string_value(j->id) : NULL,
        .batch = j->B,
        .classes = V,
        .probabilities = j->want_probs ? probs : NULL,
        .labels = j->want_label ? labels : NULL,
        .top_k = j->top_k,
        .probabilities_binary = j->probs_binary,
        .labels_binary = j->label_binary,
    };
    double inferred = bs_now();
    size_t len, json_len;
    char *text = bs_infer_answer_json(&answer, &len, &json_len);
    free(probs);
    free(labels);
    double done = bs_now();
    if (text)
        infer_record(j, &(metrics_inference_times){
                            .ok = 1, .batch = j->B, .total = done - j->arrival,
                            .queue = started - j->handed, .compute_input = j->compute_input,
                            .compute_infer = inferred - started,
                            .compute_output = done - inferred});
    if (!text) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory for the answer.");
    } else if (json_len < len) {
        /* Binary outputs follow the JSON: Triton's framing. */
        resp_bytes(out, 200, "application/octet-stream", text, len);
        resp_header(out, INFER_HEADER_LENGTH, "%zu", json_len);
    } else {
        resp_bytes(out, 200, "application/json", text, len);
    }
}

/* The batch size implied by shape for model m, or -1 when the shape does
 * not describe inputs of m. */
static long batch_of(const json_t *shape, const bs_model *m)
{
    size_t rank = json_array_size(shape);
    long dims[8];
    if (rank < 2 || rank > 4)
        return -1;
    for (size_t i = 0; i < rank; i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > (1L << 30))
            return -1;
        dims[i] = (long)json_integer_value(d);
    }
    const int *s = m->input_shape;
    int ok = (rank == 2 && dims[1] == (long)m->input_size) ||
             (rank == 3 && s[0] == 1 && dims[1] == s[1] && dims[2] == s[2]) ||
             (rank == 4 && dims[1] == s[0] && dims[2] == s[1] && dims[3] == s[2]);
    return ok ? dims[0] : -1;
}

/* A boolean parameter of params (an object or NULL): *flag keeps its
 * default when absent. Returns 0, or -1 after a 400 naming where. */
static int bool_parameter(const json_t *params, const char *key, int *flag, const char *where,
                          http_response *resp)
{
    const json_t *v = json_object_get(params, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "%s.parameters.%s must be true or false.", where,
                   key);
        return -1;
    }
    *flag = json_is_true(v);
    return 0;
}

/* Reads the request's outputs list into the want flags, with each
 * output's binary_data (default: the request's binary_data_output) and
 * classification parameters. */
static int parse_outputs(const json_t *root, infer_job *j, int classes, http_response *resp)
{
    const json_t *outputs = json_object_get(root, "outputs");
    const json_t *params = json_object_get(root, "parameters");
    int all_binary = 0;
    if (params && !json_is_object(params)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "parameters must be an object.");
        return -1;
    }
    if (bool_parameter(params, "binary_data_output", &all_binary, "the request", resp))
        return -1;
    j->want_probs = j->want_label = 1;
    j->probs_binary = j->label_binary = all_binary;
    if (!outputs)
        return 0;
    if (!json_is_array(outputs)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "outputs must be an array of {\"name\": ...}.");
        return -1;
    }
    j->want_probs = j->want_label = 0;
    size_t i;
    const json_t *o;
    json_array_foreach(outputs, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        const json_t *op = json_object_get(o, "parameters");
        char where[32];
        snprintf(where, sizeof where, "outputs[%zu]", i);
        if (!name) {
            resp_error(resp, BS_E_INVALID_REQUEST, "outputs[%zu].name must be a string.", i);
            return -1;
        }
        if (op && !json_is_object(op)) {
            resp_error(resp, BS_E_INVALID_REQUEST, "outputs[%zu].parameters must be an object.", i);
            return -1;
        }
        int is_probs = !strcmp(name, "probabilities");
        if (!is_probs && strcmp(name, "label") != 0) {
            resp_error(resp, BS_E_UNKNOWN_OUTPUT,
                       "No output named '%.64s'; the outputs are probabilities and label.",
                       name);
            return -1;
        }
        if (bool_parameter(op, "binary_data", is_probs ? &j->probs_binary : &j->label_binary,
                           where, resp))
            return -1;
        const json_t *k = json_object_get(op, "classification");
        if (k && !is_probs) {
            resp_error(resp, BS_E_UNKNOWN_OUTPUT, "Classification applies to the probabilities "
                       "output; label is already the top class.");
            return -1;
        }
        if (k && (!json_is_integer(k) || json_integer_value(k) < 1 ||
                  json_integer_value(k) > classes)) {
            resp_error(resp, BS_E_INVALID_REQUEST, "outputs[%zu].parameters.classification must "
                       "be a whole number of classes from 1 to %d.", i, classes);
            return -1;
        }
        if (k)
            j->top_k = (int)json_integer_value(k);
        *(is_probs ? &j->want_probs : &j->want_label) = 1;
    }
    return 0;
}

/* The index of the first value that is not a finite float (a number like
 * 1e39 parses, but is infinite as a float), or n. */
static size_t first_not_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

/* The input's datatype, or -1 after a 400 in resp: only numeric ones
 * become the model's FP32. */
static int input_datatype(const char *name, http_response *resp)
{
    int t = bs_oip_datatype_find(name);
    if (t < 0) {
        resp_error(resp, BS_E_UNSUPPORTED_DATATYPE,
                   "'%.16s' is not a datatype of the Open Inference Protocol; the input is "
                   "FP32 (FP16, FP64 and the integer datatypes are converted).", name);
        return -1;
    }
    if (!bs_oip_datatype_numeric((bs_oip_datatype)t)) {
        resp_error(resp, BS_E_UNSUPPORTED_DATATYPE,
                   "%s holds no pixel values: the input is FP32 numbers (FP16, FP64 and the "
                   "integer datatypes are converted).", name);
        return -1;
    }
    return t;
}

/* The want numbers of inputs[0].data as floats (malloc'd), or NULL after
 * an error in resp. fast holds them already read when the body's data
 * was FP32-shaped JSON (see req_json_tensor_object); the checked path
 * reads integer datatypes exactly and refuses what does not fit. */
static float *json_input(const json_t *data, bs_oip_datatype t, bs_tensor_data *fast,
                         size_t want, http_response *resp)
{
    size_t n = fast->n, bad = 0;
    bs_oip_status st = BS_OIP_OK;
    if (!fast->values)
        st = bs_oip_json_to_float(data, t, NULL, 0, &n, &bad);
    if (st == BS_OIP_NOT_A_NUMBER) {
        resp_error(resp, BS_E_INVALID_REQUEST, "inputs[0].data must hold only numbers.");
        return NULL;
    }
    if (st == BS_OIP_OK && n != want) {
        resp_error(resp, BS_E_INVALID_INPUT, "inputs[0].data holds %zu numbers; its shape says %zu.",
                   n, want);
        return NULL;
    }
    float *x = fast->values;
    fast->values = NULL;
    if (st == BS_OIP_OK && !x) {
        x = malloc(want * sizeof *x);
        if (!x) {
            resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory for this batch.");
            return NULL;
        }
        bs_oip_json_to_float(data, t, x, want, &n, &bad);
    }
    if (st == BS_OIP_OK && (bad = first_not_finite(x, want)) == want)
        return x;
    free(x);
    if (t != BS_OIP_FP32 && t != BS_OIP_FP64 && t != BS_OIP_FP16)
        resp_error(resp, BS_E_INVALID_INPUT, "inputs[0].data[%zu] is not a whole number within "
                   "the range of %s.", bad, bs_oip_datatype_name(t));
    else
        resp_error(resp, BS_E_INVALID_INPUT, "inputs[0].data[%zu] is beyond the range of %s.",
                   bad, t == BS_OIP_FP16 ? "FP16" : "a 32-bit float");
    return NULL;
}

/* The length of the JSON at the start of the body: the whole body, or
 * the Inference-Header-Content-Length of a body with binary tensors
 * after its JSON. Returns 0, or -1 after a 400 in resp. */
static int json_length(const http_request *req, size_t *len, http_response *resp)
{
    const char *h = req_header(req, INFER_HEADER_LENGTH);
    *len = req->body_len;
    if (!h)
        return 0;
    size_t n = strspn(h, "0123456789");
    errno = 0;
    unsigned long long v = n && n <= 20 && !h[n] ? strtoull(h, NULL, 10) : 0;
    if (!n || n > 20 || h[n] || errno || v > req->body_len) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA,
                   INFER_HEADER_LENGTH " must be the byte length of the JSON that starts the "
                   "body, from 0 to %zu; it is '%.32s'.", req->body_len, h);
        return -1;
    }
    *len = (size_t)v;
    return 0;
}

/* The input's binary data (after json_len bytes of JSON) as want floats
 * (malloc'd), or NULL after a 400 in resp. size is its binary_data_size
 * parameter; every byte after the JSON must belong to it. */
static float *binary_input(const http_request *req, size_t json_len, const json_t *size,
                           bs_oip_datatype t, size_t want, http_response *resp)
{
    size_t after = req->body_len - json_len, bytes = want * bs_oip_datatype_size(t), bad;
    if (!req_header(req, INFER_HEADER_LENGTH)) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA, "inputs[0].parameters.binary_data_size needs "
                   "the " INFER_HEADER_LENGTH " header (the length of the JSON before the "
                   "binary data).");
        return NULL;
    }
    if (!json_is_integer(size) || json_integer_value(size) < 0) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA,
                   "inputs[0].parameters.binary_data_size must be a whole number of bytes.");
        return NULL;
    }
    if ((unsigned long long)json_integer_value(size) != bytes) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA,
                   "inputs[0].parameters.binary_data_size is %lld bytes; %zu %s values take %zu.",
                   (long long)json_integer_value(size), want, bs_oip_datatype_name(t), bytes);
        return NULL;
    }
    if (after != bytes) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA,
                   "The body holds %zu bytes after its %zu bytes of JSON; binary_data_size says "
                   "%zu.", after, json_len, bytes);
        return NULL;
    }
    float *x = malloc(want * sizeof *x);
    if (!x) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory for this batch.");
        return NULL;
    }
    if (bs_oip_binary_to_float(req->body + json_len, t, want, x, &bad) != BS_OIP_OK) {
        free(x);
        resp_error(resp, BS_E_INVALID_INPUT, "Value %zu of inputs[0]'s binary data is beyond "
                   "the range of a 32-bit float.", bad);
        return NULL;
    }
    return x;
}

handler_result v2_infer(server *srv, const http_request *req, http_response *resp,
                        http_work *work)
{
    const registry_model *rm = v2_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    const bs_model *m = rm->model;
    double started = bs_now();
    infer_job *j = calloc(1, sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    j->rm = rm;
    j->metrics = srv->metrics;
    j->arrival = req->arrival;
    bs_tensor_data tensor = {0};
    json_t *root = NULL;
    size_t json_len;
    if (json_length(req, &json_len, resp))
        goto refused;
    /* The JSON of a body with binary tensors is read whatever the media
     * type says of the whole (Triton's clients send application/octet-stream). */
    http_request head = *req;
    head.body_len = json_len;
    if (req_header(req, INFER_HEADER_LENGTH) && req_content_type_is(req, "application/octet-stream"))
        head.content_type = NULL;
    /* inputs[0].data usually arrives as floats, the rest as JSON */
    root = req_json_tensor_object(&head, resp, &tensor);
    if (!root)
        goto refused;
    const char *dtype0 = json_string_value(
        json_object_get(json_array_get(json_object_get(root, "inputs"), 0), "datatype"));
    if (tensor.values && (!dtype0 || strcmp(dtype0, "FP32") != 0)) {
        /* The fast path reads numbers as floats: other datatypes are read
         * exactly, from the whole document. */
        free(tensor.values);
        tensor.values = NULL;
        tensor.n = 0;
        json_decref(root);
        if (!(root = req_json_object(&head, resp)))
            goto refused;
    }
    const json_t *id = json_object_get(root, "id");
    const json_t *inputs = json_object_get(root, "inputs");
    const json_t *in = json_array_get(inputs, 0);
    const char *in_name = json_string_value(json_object_get(in, "name"));
    const json_t *shape = json_object_get(in, "shape");
    const char *dtype = json_string_value(json_object_get(in, "datatype"));
    const json_t *data = json_object_get(in, "data");
    const json_t *binary_size = json_object_get(json_object_get(in, "parameters"),
                                                "binary_data_size");
    long B;
    int t;
    if (id && !json_is_string(id)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "id must be a string.");
    } else if (!json_is_array(inputs) || json_array_size(inputs) == 0 || !json_is_object(in)) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "inputs must be a non-empty array of tensors {name, shape, datatype, data}.");
    } else if (json_array_size(inputs) > 1) {
        resp_error(resp, BS_E_TOO_MANY_INPUTS, "The model has one input; %zu were sent.",
                   json_array_size(inputs));
    } else if (!in_name || strcmp(in_name, "input") != 0) {
        resp_error(resp, BS_E_INVALID_INPUT,
                   "The model's one input is named \"input\"; inputs[0].name is '%.64s'.",
                   in_name ? in_name : "(missing)");
    } else if (!json_is_array(shape) || !dtype || !data == !binary_size) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "inputs[0] needs shape (array of integers), datatype (string) and either "
                   "data or parameters.binary_data_size.");
    } else if ((t = input_datatype(dtype, resp)) < 0) {
        /* answered */
    } else if ((B = batch_of(shape, m)) <= 0) {
        resp_error(resp, BS_E_INVALID_INPUT,
                   "Model %s takes inputs of shape [B,%d,%d,%d] (or [B,%zu]) with B >= 1.",
                   rm->name, m->input_shape[0], m->input_shape[1], m->input_shape[2],
                   m->input_size);
    } else if (data && json_len < req->body_len) {
        resp_error(resp, BS_E_INVALID_BINARY_DATA,
                   "%zu bytes follow the JSON, but no input has parameters.binary_data_size.",
                   req->body_len - json_len);
    } else if ((j->x = data ? json_input(data, (bs_oip_datatype)t, &tensor,
                                         (size_t)B * m->input_size, resp)
                            : binary_input(req, json_len, binary_size, (bs_oip_datatype)t,
                                           (size_t)B * m->input_size, resp)) &&
               parse_outputs(root, j, m->classes, resp) == 0) {
        j->B = (int)B;
        j->id = json_incref((json_t *)id);
        json_decref(root);
        work->run = infer_run;
        work->free = infer_free;
        work->ctx = j;
        work->kind = "inference";
        work->quick = (size_t)B * bs_model_macs(m) <= INFER_QUICK_MACS;
        j->handed = bs_now();
        j->compute_input = j->handed - started;
        return HANDLER_DEFERRED;
    }
refused:
    free(tensor.values);
    infer_free(j);
    json_decref(root);
    return HANDLER_ANSWERED;
}
