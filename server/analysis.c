/* analysis — the measurements of core/analysis.h, both on the worker pool:
 *
 * GET /v1/models/{name}/lipschitz[?seed=S][&attacks=N[&dataset=D][&split=P]]:
 * the paper's §4.3 upper bounds of the Lipschitz constant (L2, input to
 * logits) of every layer and their product; seed starts the power
 * iterations (default 1). With attacks, also the ratios the L-BFGS
 * attack's examples reach on the first N images of the split (at most
 * LIPSCHITZ_MAX_ATTACKS; the model's own dataset and test by default),
 * within the request's time budget.
 *
 * POST /v1/models/{name}/units {"layer": L | "node", "direction": I | "random",
 * "seed": S, "k": K, "dataset": D, "split": P}: §3's unit analysis, the top
 * K images of the split by <phi_L(x), v> for the unit vector e_I or a random
 * direction of seed S (default 1), their labels, label purity and the
 * images side by side as a PNG; with "summary": U instead of a direction,
 * the mean purity of units 0..U-1 against U random directions of seeds
 * S..S+U-1. k defaults to 8, dataset to the model's own (else mnist), split
 * to test.
 *
 * The answers are the documents of api/analysis_json.h, the ones
 * `blindspot lipschitz --json` and `blindspot units --json` print. */
#include "server/routes.h"

#include "api/analysis_json.h"
#include "core/analysis.h"

#include <stdlib.h>
#include <string.h>

/* Attacks one Lipschitz request may ask for (each a c search of L-BFGS
 * runs; the time budget stops them sooner). */
#define LIPSCHITZ_MAX_ATTACKS 10000

/* ---- Lipschitz bounds ------------------------------------------------------ */

typedef struct lipschitz_job {
    const registry_model *rm;
    uint64_t seed;
    const registry_split *d; /* the images of the attacks, when there are any */
    int attacks;             /* the first images of d to attack; 0: none */
} lipschitz_job;

static void lipschitz_run(void *ctx, pool_worker *w, const bs_control *ctl,
                          http_response *out)
{
    /* power iteration is bounded; the attacks take the deadline */
    lipschitz_job *j = ctx;
    const bs_model *m = j->rm->model;
    bs_lipschitz lip;
    bs_lipschitz_empirical emp;
    bs_dataset slice = {0};
    char err[BS_ERR_LEN];
    if (bs_lipschitz_bounds(m, j->seed, &lip, err)) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The bounds cannot be computed: %s.", err);
        return;
    }
    if (j->attacks) {
        bs_control inner = bs_control_quiet(ctl);
        if (registry_split_slice(j->d, 0, j->attacks, &slice, err) ||
            bs_lipschitz_attack(m, &slice, j->attacks, &inner, pool_scratch(w), &emp, err)) {
            bs_dataset_free(&slice);
            resp_error(out, BS_E_ANALYSIS_FAILED, "The attacks failed: %s.", err);
            return;
        }
        bs_dataset_free(&slice);
        if (emp.status == BS_ATTACK_TIMEOUT) {
            resp_error(out, BS_E_DEADLINE_EXCEEDED, "The time budget ran out after %d of %d "
                       "attacks; ask for fewer, or a larger timeout.", emp.images, j->attacks);
            return;
        }
        if (emp.status == BS_ATTACK_CANCELLED) {
            resp_error(out, BS_E_CANCELLED, "The attacks were stopped before they finished.");
            return;
        }
    }
    json_t *doc = bs_lipschitz_json(j->rm->name, m, j->seed, &lip, j->attacks ? &emp : NULL,
                                    j->attacks ? j->d->name : NULL,
                                    j->attacks ? j->d->split : NULL);
    if (doc)
        resp_json(out, 200, doc);
    else
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
}

/* A query argument that is a whole number in [0, max] into *out (absent:
 * left as it is). -1 after a 400. */
static int query_number(const http_request *req, const char *key, unsigned long long max,
                        unsigned long long *out, http_response *resp)
{
    const char *s = req_query(req, key);
    if (!s)
        return 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || s[0] == '+' || v > max) {
        resp_error(resp, BS_E_INVALID_REQUEST, "%s must be a whole number from 0 to %llu, not "
                   "'%.32s'.", key, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

handler_result analysis_lipschitz(server *srv, const http_request *req, http_response *resp,
                                  http_work *work)
{
    const registry_model *rm = req_route_model(srv, req, resp);
    if (!rm)
        return HANDLER_ANSWERED;
    unsigned long long seed = 1, attacks = 0;
    if (query_number(req, "seed", 1ULL << 53, &seed, resp) ||
        query_number(req, "attacks", LIPSCHITZ_MAX_ATTACKS, &attacks, resp))
        return HANDLER_ANSWERED;
    const registry_split *d = NULL;
    if (attacks) {
        const char *split = req_query(req, "split");
        d = req_dataset_split(srv, rm, req_query(req, "dataset"), split ? split : "test", resp);
        if (!d)
            return HANDLER_ANSWERED;
        if (attacks > (unsigned long long)d->n) /* as many as there are, as the CLI does */
            attacks = (unsigned long long)d->n;
    }
    lipschitz_job *j = malloc(sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    *j = (lipschitz_job){rm, seed, d, (int)attacks};
    work->run = lipschitz_run;
    work->free = free;
    work->kind = "lipschitz";
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
    int summary;   /* U > 0: the summary over U units and directions instead */
    uint64_t seed;
    int k;
} units_job;

/* The job's document, or NULL with a message in err. */
static json_t *units_doc(const units_job *j, const bs_dataset *d, char *err)
{
    const bs_model *m = j->rm->model;
    if (j->summary) {
        bs_units_summary s;
        if (bs_units_summarise(m, j->layer, d, j->summary, j->k, j->seed, &s, err))
            return NULL;
        json_t *doc = bs_units_summary_json(j->rm->name, m, d->name, d->split, j->seed, &s);
        if (!doc)
            snprintf(err, BS_ERR_LEN, "out of memory");
        return doc;
    }
    size_t dim = m->layers[j->resolved].out_size;
    float *v = malloc(dim * sizeof *v);
    json_t *doc = NULL;
    bs_units_top t;
    snprintf(err, BS_ERR_LEN, "out of memory");
    if (v) {
        if (j->unit < 0)
            bs_units_random(v, dim, j->seed);
        else
            bs_units_basis(v, dim, j->unit);
        if (!bs_units_rank(m, j->layer, d, v, 1, j->k, &t, err))
            doc = bs_units_json(j->rm->name, m, j->resolved, j->unit, j->seed, d, &t, err);
    }
    free(v);
    return doc;
}

static void units_run(void *ctx, pool_worker *w, const bs_control *ctl,
                      http_response *out)
{
    (void)w, (void)ctl; /* passes over the split; bounded */
    units_job *j = ctx;
    char err[BS_ERR_LEN] = "out of memory";
    bs_dataset d = {0};
    json_t *doc = NULL;
    if (!registry_split_slice(j->d, 0, j->d->n, &d, err))
        doc = units_doc(j, &d, err);
    bs_dataset_free(&d);
    if (doc)
        resp_json(out, 200, doc);
    else
        resp_error(out, BS_E_ANALYSIS_FAILED, "The unit analysis failed: %s.", err);
}

static const char *const units_fields[] = {"layer", "direction", "summary", "seed", "k",
                                           "dataset", "split"};

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
                       "direction, summary, seed, k, dataset and split.", key);
            return -1;
        }
    }
    const bs_model *m = j->rm->model;
    const json_t *layer = json_object_get(root, "layer"), *dir = json_object_get(root, "direction");
    const json_t *seed = json_object_get(root, "seed"), *k = json_object_get(root, "k");
    const json_t *dataset = json_object_get(root, "dataset"), *split = json_object_get(root, "split");
    const json_t *summary = json_object_get(root, "summary");
    if (!layer || (!dir && !summary)) {
        resp_error(resp, BS_E_MISSING_FIELD,
                   "layer is required, and one of direction (a unit index or \"random\") and "
                   "summary (a number of units).");
        return -1;
    }
    if (dir && summary) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "direction and summary exclude each other; send one.");
        return -1;
    }
    if (!(json_is_integer(layer) || json_is_string(layer)) || (summary && !json_is_integer(summary)) ||
        (dir && !json_is_integer(dir) &&
         !(json_is_string(dir) && !strcmp(json_string_value(dir), "random"))) ||
        (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0)) ||
        (k && !json_is_integer(k)) || (dataset && !json_is_string(dataset)) ||
        (split && !json_is_string(split))) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "layer is a whole number or a node's name, summary and k are whole numbers, "
                   "direction a unit index or \"random\", seed a whole number from 0, dataset "
                   "and split names.");
        return -1;
    }
    char err[BS_ERR_LEN];
    json_int_t L = json_integer_value(layer);
    if (json_is_string(layer))
        j->layer = bs_model_find_node(m, json_string_value(layer));
    else
        j->layer = L >= 0 && L < m->n_layers ? (int)L : -1;
    j->resolved = bs_units_layer(m, j->layer, err);
    if (j->resolved < 0 && json_is_string(layer)) {
        resp_error(resp, BS_E_LAYER_OUT_OF_RANGE, "Model %s has no node named '%.64s'.",
                   j->rm->name, json_string_value(layer));
        return -1;
    }
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
    if (summary) {
        json_int_t U = json_integer_value(summary);
        if (U < 1 || (size_t)U > dim) {
            resp_error(resp, BS_E_UNIT_OUT_OF_RANGE,
                       "summary takes 1 to %zu units of layer %d (%s), not %lld.", dim,
                       j->resolved, bs_layer_name(m->layers[j->resolved].kind), (long long)U);
            return -1;
        }
        j->summary = (int)U;
    }
    j->seed = seed ? (uint64_t)json_integer_value(seed) : 1;
    j->d = req_dataset_split(srv, j->rm, dataset ? json_string_value(dataset) : NULL,
                             split ? json_string_value(split) : "test", resp);
    if (!j->d)
        return -1;
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
    work->kind = "units";
    work->ctx = j;
    return HANDLER_DEFERRED;
}
