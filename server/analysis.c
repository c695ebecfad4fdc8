/* analysis — the measurements of a model that are not attacks
 * (core/analysis.h), both on the worker pool:
 *
 * GET /v1/models/{name}/lipschitz[?seed=S]: the paper's §4.3 upper bounds
 * of the Lipschitz constant (L2, input to logits) of every layer and their
 * product; seed starts the power iterations (default 1).
 *
 * POST /v1/models/{name}/units {"layer": L, "direction": I | "random",
 * "seed": S, "k": K, "dataset": D, "split": P}: §3's unit analysis, the top
 * K images of the split by <phi_L(x), v> for the unit vector e_I or a random
 * direction of seed S (default 1), their labels, label purity and the
 * images side by side as a PNG. k defaults to 8, dataset to the model's
 * own (else mnist), split to test. `blindspot lipschitz --json` and
 * `blindspot units --json` print the same fields. */
#include "server/routes.h"

#include "api/base64.h"
#include "api/image.h"
#include "core/analysis.h"

#include <stdlib.h>
#include <string.h>

/* ---- Lipschitz bounds ------------------------------------------------------ */

typedef struct lipschitz_job {
    const registry_model *rm;
    uint64_t seed;
} lipschitz_job;

static void lipschitz_run(void *ctx, pool_worker *w, const bs_attack_control *ctl,
                          http_response *out)
{
    (void)w, (void)ctl; /* power iteration is bounded and takes no cancel flag */
    lipschitz_job *j = ctx;
    const bs_model *m = j->rm->model;
    bs_lipschitz lip;
    char err[BS_ERR_LEN];
    if (bs_lipschitz_bounds(m, j->seed, &lip, err)) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The bounds cannot be computed: %s.", err);
        return;
    }
    json_t *layers = json_array();
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        json_array_append_new(layers, json_pack(
            "{s:i, s:s, s:[i,i,i], s:f, s:i}", "index", i, "type", bs_layer_name(l->kind),
            "output_shape", l->out_shape[0], l->out_shape[1], l->out_shape[2], "bound",
            lip.layers[i].bound, "iterations", lip.layers[i].iterations));
    }
    resp_json(out, 200, json_pack("{s:s, s:I, s:o, s:f}", "model", j->rm->name, "seed",
                                  (json_int_t)j->seed, "layers", layers, "product",
                                  lip.product));
}

handler_result analysis_lipschitz(server *srv, const http_request *req, http_response *resp,
                                  http_work *work)
{
    const registry_model *rm = req_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    uint64_t seed = 1;
    const char *s = req_query(req, "seed");
    if (s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*s || *end || s[0] == '-' || s[0] == '+' || v > (1ULL << 53)) {
            resp_error(resp, BS_E_INVALID_REQUEST,
                       "seed must be a whole number from 0 to 2^53, not '%.32s'.", s);
            return HANDLER_ANSWERED;
        }
        seed = v;
    }
    lipschitz_job *j = malloc(sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    *j = (lipschitz_job){rm, seed};
    work->run = lipschitz_run;
    work->free = free;
    work->ctx = j;
    return HANDLER_DEFERRED;
}

/* ---- unit analysis ------------------------------------------------------------ */

typedef struct units_job {
    const registry_model *rm;
    const registry_split *d; /* materialised as floats only while the job runs */
    int layer;     /* as asked */
    int resolved;  /* bs_units_layer of it */
    int unit;      /* -1: a random direction */
    uint64_t seed;
    int k;
} units_job;

/* The top images side by side, as {"format": "png", ..., "data": base64}. */
static json_t *grid_json(const bs_dataset *d, const bs_units_top *t, char *err)
{
    bs_units_grid g;
    if (bs_units_grid_make(d, t->indices, t->k, &g, err))
        return NULL;
    uint8_t *png = NULL;
    size_t len = 0;
    char *b64 = NULL;
    if (!bs_image_encode(g.pixels, g.width, g.height, g.channels, BS_IMAGE_PNG, 0, &png, &len,
                         err))
        b64 = bs_base64_encode(png, len);
    json_t *o = b64 ? json_pack("{s:s, s:i, s:i, s:i, s:s}", "format", "png", "width", g.width,
                                "height", g.height, "channels", g.channels, "data", b64)
                    : NULL;
    bs_units_grid_free(&g);
    free(png);
    free(b64);
    return o;
}

static void units_run(void *ctx, pool_worker *w, const bs_attack_control *ctl,
                      http_response *out)
{
    (void)w, (void)ctl; /* one pass over the split; bounded */
    units_job *j = ctx;
    const bs_model *m = j->rm->model;
    size_t dim = m->layers[j->resolved].out_size;
    float *v = malloc(dim * sizeof *v);
    char err[BS_ERR_LEN] = "out of memory";
    bs_units_top t;
    bs_dataset d = {0};
    json_t *grid = NULL;
    if (v && !registry_split_slice(j->d, 0, j->d->n, &d, err)) {
        if (j->unit < 0)
            bs_units_random(v, dim, j->seed);
        else
            bs_units_basis(v, dim, j->unit);
        if (!bs_units_rank(m, j->layer, &d, v, 1, j->k, &t, err))
            grid = grid_json(&d, &t, err);
    }
    bs_dataset_free(&d);
    free(v);
    if (!grid) {
        resp_error(out, BS_E_ANALYSIS_FAILED, "The unit analysis failed: %s.", err);
        return;
    }
    json_t *idx = json_array(), *labels = json_array(), *scores = json_array();
    for (int i = 0; i < t.k; i++) {
        json_array_append_new(idx, json_integer(t.indices[i]));
        json_array_append_new(labels, json_integer(t.labels[i]));
        json_array_append_new(scores, json_real(t.scores[i]));
    }
    json_t *dir = j->unit < 0 ? json_pack("{s:s, s:I}", "type", "random", "seed",
                                          (json_int_t)j->seed)
                              : json_pack("{s:s, s:i}", "type", "unit", "unit", j->unit);
    resp_json(out, 200, json_pack(
        "{s:s, s:i, s:s, s:I, s:o, s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:f, s:o}",
        "model", j->rm->name, "layer", j->resolved, "layer_type",
        bs_layer_name(m->layers[j->resolved].kind), "dim", (json_int_t)dim, "direction", dir,
        "dataset", j->d->name, "split", j->d->split, "k", t.k, "indices", idx, "labels",
        labels, "scores", scores, "majority", t.majority, "purity", t.purity, "grid", grid));
}

static const char *const units_fields[] = {"layer", "direction", "seed", "k", "dataset",
                                           "split"};

/* The model's own dataset (its metadata names it, maybe with a ":P1" part)
 * when it is loaded, else mnist. */
static const char *default_dataset(server *srv, const bs_model *m, char *buf, size_t size)
{
    const char *own = bs_model_get_meta(m, "blindspot.dataset");
    if (own) {
        snprintf(buf, size, "%.*s", (int)strcspn(own, ":"), own);
        if (registry_split_find(&srv->reg, buf, "test"))
            return buf;
    }
    return "mnist";
}

/* Validates the body into j. -1 after an answer. */
static int read_units(server *srv, const json_t *root, units_job *j, http_response *resp)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        size_t i;
        for (i = 0; i < sizeof units_fields / sizeof units_fields[0] &&
                    strcmp(key, units_fields[i]);
             i++)
            ;
        if (i == sizeof units_fields / sizeof units_fields[0]) {
            resp_error(resp, BS_E_UNKNOWN_FIELD, "Unknown field '%.64s'; the fields are layer, "
                       "direction, seed, k, dataset and split.", key);
            return -1;
        }
    }
    const bs_model *m = j->rm->model;
    const json_t *layer = json_object_get(root, "layer"), *dir = json_object_get(root, "direction");
    const json_t *seed = json_object_get(root, "seed"), *k = json_object_get(root, "k");
    const json_t *dataset = json_object_get(root, "dataset"), *split = json_object_get(root, "split");
    if (!layer || !dir) {
        resp_error(resp, BS_E_MISSING_FIELD,
                   "layer and direction (a unit index or \"random\") are required.");
        return -1;
    }
    if (!json_is_integer(layer) ||
        !(json_is_integer(dir) || (json_is_string(dir) && !strcmp(json_string_value(dir), "random"))) ||
        (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0)) ||
        (k && !json_is_integer(k)) || (dataset && !json_is_string(dataset)) ||
        (split && !json_is_string(split))) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "layer and k are whole numbers, direction a unit index or \"random\", seed a "
                   "whole number from 0, dataset and split names.");
        return -1;
    }
    char err[BS_ERR_LEN], own[64];
    json_int_t L = json_integer_value(layer);
    j->layer = L >= 0 && L < m->n_layers ? (int)L : -1;
    j->resolved = bs_units_layer(m, j->layer, err);
    if (j->resolved < 0) {
        resp_error(resp, BS_E_LAYER_OUT_OF_RANGE, "Model %s has layers 0 to %d, not %lld.",
                   j->rm->name, m->n_layers - 1, (long long)L);
        return -1;
    }
    size_t dim = m->layers[j->resolved].out_size;
    j->unit = -1;
    if (json_is_integer(dir)) {
        json_int_t u = json_integer_value(dir);
        if (u < 0 || (size_t)u >= dim) {
            resp_error(resp, BS_E_UNIT_OUT_OF_RANGE,
                       "Layer %d (%s) has units 0 to %zu, not %lld.", j->resolved,
                       bs_layer_name(m->layers[j->resolved].kind), dim - 1, (long long)u);
            return -1;
        }
        j->unit = (int)u;
    }
    j->seed = seed ? (uint64_t)json_integer_value(seed) : 1;
    const char *ds = dataset ? json_string_value(dataset) : default_dataset(srv, m, own, sizeof own);
    const char *sp = split ? json_string_value(split) : "test";
    j->d = registry_split_find(&srv->reg, ds, sp);
    if (!j->d) {
        resp_error(resp, BS_E_DATASET_NOT_FOUND,
                   "No dataset split %.64s/%.16s is loaded; GET /v1/datasets lists them.", ds, sp);
        return -1;
    }
    if (j->d->input_size != m->input_size) {
        resp_error(resp, BS_E_SHAPE_MISMATCH, "%s samples are (%d,%d,%d); model %s takes "
                   "(%d,%d,%d).", ds, j->d->shape[0], j->d->shape[1], j->d->shape[2],
                   j->rm->name, m->input_shape[0], m->input_shape[1], m->input_shape[2]);
        return -1;
    }
    json_int_t kk = k ? json_integer_value(k) : 8;
    int max_k = j->d->n < BS_UNITS_MAX_K ? j->d->n : BS_UNITS_MAX_K;
    if (kk < 1 || kk > max_k) {
        resp_error(resp, BS_E_K_OUT_OF_RANGE, "k must be in [1, %d], not %lld.", max_k,
                   (long long)kk);
        return -1;
    }
    j->k = (int)kk;
    return 0;
}

handler_result analysis_units(server *srv, const http_request *req, http_response *resp,
                              http_work *work)
{
    const registry_model *rm = req_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    json_t *root = req_json_object(req, resp);
    if (!root)
        return HANDLER_ANSWERED;
    units_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(root);
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    j->rm = rm;
    int rc = read_units(srv, root, j, resp);
    json_decref(root);
    if (rc) {
        free(j);
        return HANDLER_ANSWERED;
    }
    work->run = units_run;
    work->free = free;
    work->ctx = j;
    return HANDLER_DEFERRED;
}
