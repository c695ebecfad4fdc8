/* catalog — the read-only endpoints: the resident models (GET /v1/models,
 * /v1/models/{name}: the documents of api/model_json.h, the one `blindspot
 * info --json` prints), the datasets and their samples as PNG or JSON as
 * ?format= or the Accept header asks (GET /v1/datasets,
 * /v1/datasets/{name}/{split}/{index}), and the
 * Prometheus scrape (GET /metrics). All answer on the HTTP thread: they
 * only read what start-up loaded. */
#include "server/routes.h"

#include "api/accept.h"
#include "api/image.h"
#include "api/model_json.h"
#include "server/jobs.h"
#include "server/quota.h"

#include <stdlib.h>
#include <string.h>

handler_result catalog_models(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    (void)srv, (void)work;
    json_t *list = json_array();
    for (int i = 0; i < req->models->n_models; i++)
        json_array_append_new(list, bs_model_summary_json(req->models->models[i]->name,
                                                           req->models->models[i]->model));
    resp_json(resp, 200, json_pack("{s:o}", "models", list));
    return HANDLER_ANSWERED;
}

handler_result catalog_model(server *srv, const http_request *req, http_response *resp,
                             http_work *work)
{
    (void)work;
    const registry_model *rm = req_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    json_t *doc = bs_model_json(rm->name, rm->path, rm->model);
    if (!doc) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    resp_json(resp, 200, doc);
    return HANDLER_ANSWERED;
}

handler_result catalog_datasets(server *srv, const http_request *req, http_response *resp,
                                http_work *work)
{
    (void)req, (void)work;
    json_t *list = json_array();
    for (int d = 0; d < srv->reg.n_datasets; d++) {
        const registry_dataset *ds = &srv->reg.datasets[d];
        json_t *splits = json_array();
        for (int s = 0; s < ds->n_splits; s++) {
            const registry_split *sp = &ds->splits[s];
            json_array_append_new(splits,
                                  json_pack("{s:s, s:i, s:[i,i,i], s:i}", "name", sp->split,
                                            "size", sp->n, "shape", sp->shape[0], sp->shape[1],
                                            sp->shape[2], "classes", sp->classes));
        }
        json_array_append_new(list, json_pack("{s:s, s:o}", "name", ds->name, "splits", splits));
    }
    resp_json(resp, 200, json_pack("{s:o}", "datasets", list));
    return HANDLER_ANSWERED;
}

/* What a sample can be, in the server's order of preference. */
static const char *const sample_types[] = {"image/png", "application/json"};

/* Whether to answer JSON rather than the default PNG: ?format= when given,
 * else the Accept header, negotiated as POST /v1/attacks negotiates. -1
 * after answering 400 for an unknown ?format=, or 406 when the header
 * takes neither type. */
static int wants_json(const http_request *req, http_response *resp)
{
    const char *format = req_query(req, "format");
    if (format) {
        if (!strcmp(format, "json"))
            return 1;
        if (!strcmp(format, "png"))
            return 0;
        resp_error(resp, BS_E_INVALID_FORMAT, "format is png or json, not '%.32s'.", format);
        return -1;
    }
    int pick = bs_accept_pick(req->accept, sample_types, 2);
    if (pick < 0) {
        resp_error(resp, BS_E_NOT_ACCEPTABLE,
                   "A dataset sample is image/png or application/json (or ?format=png|json); "
                   "Accept: %.100s takes neither.", req->accept);
        return -1;
    }
    return pick == 1;
}

handler_result catalog_sample(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    (void)work;
    const char *name = req->params[0], *split = req->params[1], *index = req->params[2];
    const registry_split *d = registry_split_find(&srv->reg, name, split);
    if (!d) {
        char err[BS_ERR_LEN];
        registry_split_missing(&srv->reg, name, split, err, sizeof err);
        resp_error(resp, BS_E_DATASET_NOT_FOUND, "%s", err);
        return HANDLER_ANSWERED;
    }
    char *end;
    long i = strtol(index, &end, 10);
    if (!*index || *end || index[0] == '-' || index[0] == '+') {
        resp_error(resp, BS_E_INVALID_INDEX, "The index must be a whole number, not '%.32s'.",
                   index);
        return HANDLER_ANSWERED;
    }
    if (i >= d->n) {
        resp_error(resp, BS_E_SAMPLE_NOT_FOUND, "%s/%s has %d samples (0 to %d).", name,
                   split, d->n, d->n - 1);
        return HANDLER_ANSWERED;
    }
    int json = wants_json(req, resp);
    if (json < 0)
        return HANDLER_ANSWERED;
    float *x = malloc(d->input_size * sizeof *x);
    if (!x || registry_split_sample(d, (int)i, x)) {
        free(x);
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    int label = d->labels[i];
    resp_header(resp, "X-Label", "%d", label);
    if (json) {
        json_t *data = json_array();
        for (size_t k = 0; k < d->input_size; k++)
            json_array_append_new(data, json_real(x[k]));
        free(x);
        resp_json(resp, 200,
                  json_pack("{s:s, s:s, s:i, s:i, s:[i,i,i], s:o}", "dataset", name, "split",
                            split, "index", (int)i, "label", label, "shape", d->shape[0],
                            d->shape[1], d->shape[2], "data", data));
        return HANDLER_ANSWERED;
    }
    int C = d->shape[0], H = d->shape[1], W = d->shape[2];
    uint8_t *planes = malloc(d->input_size);
    uint8_t *png = NULL;
    size_t png_len = 0;
    char err[BS_ERR_LEN];
    int rc = -1;
    if (!planes) {
        snprintf(err, sizeof err, "out of memory");
    } else if (C == 1 || C == 3) {
        bs_image_to_bytes(x, d->input_size, planes);
        rc = bs_image_encode_planes(planes, C, H, W, BS_IMAGE_PNG, 0, &png, &png_len, err);
    } else {
        snprintf(err, sizeof err, "samples of %d channels have no PNG form; ask for JSON", C);
    }
    free(x);
    free(planes);
    if (rc)
        resp_error(resp, BS_E_ENCODE_FAILED, "The sample cannot be encoded: %s.", err);
    else
        resp_bytes(resp, 200, "image/png", (char *)png, png_len);
    return HANDLER_ANSWERED;
}

handler_result metrics_scrape(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    (void)work;
    metrics_gauges g = {0};
    g.ready = req->models != NULL; /* http.c gives a request models once ready */
    g.queue_capacity = srv->cfg->queue_size;
    g.workers = srv->cfg->workers;
    g.max_jobs = srv->cfg->max_jobs;
    g.clients = srv->quota ? quota_clients(srv->quota) : 0;
    registry_state *states = NULL;
    const char **failing = NULL;
    if (g.ready) {
        g.models = req->models->n_models;
        pool_stats(srv->pool, &g.queued, &g.busy, &g.workers);
        jobs_stats(srv->jobs, g.jobs);
        int n = registry_states(&srv->reg, &states);
        failing = n > 0 ? calloc((size_t)n, sizeof *failing) : NULL;
        for (int i = 0; failing && i < n; i++)
            if (states[i].reason[0] && !states[i].unloaded)
                failing[g.n_failing++] = states[i].name;
        g.failing = failing;
    }
    size_t len = 0;
    char *text = metrics_render(srv->metrics, &g, &len);
    free(failing);
    free(states);
    if (!text)
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    else
        resp_bytes(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    return HANDLER_ANSWERED;
}
