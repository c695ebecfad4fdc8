/* evaluations — POST /v1/evaluations: the paper's Tables 1-3 over a slice
 * of a dataset for chosen resident models (core/evaluate.h), always as an
 * asynchronous job (jobs.h) whose result is the document of
 * api/evaluate_json.h, the one `blindspot evaluate --json` prints.
 *
 * Fields, all optional: models (names; default every resident model that
 * takes the dataset's input), dataset (mnist), split (test), first (0),
 * n (100), seed (1: targets and noise), method (lbfgs) and params, noise
 * (standard deviations of the Gaussian-noise rows, [0.1, 0.3]), magnify
 * (0.1; 0 for none), timeout (seconds, lowers --job-timeout). Everything is
 * validated here, on the HTTP thread; the job's progress is attacks done
 * of models*n. The attacks of a job run one after another on its worker:
 * the numbers do not depend on it. */
#include "server/routes.h"

#include "api/attack_json.h"
#include "api/evaluate_json.h"
#include "core/evaluate.h"
#include "server/jobs.h"

#include <stdlib.h>
#include <string.h>

/* Attacks (models * n) one evaluation may ask for: its adversarial images
 * are held in memory together (about 3 KB each for MNIST). */
#define EVAL_MAX_ATTACKS 20000

typedef struct eval_job {
    const bs_model *models[BS_EVAL_MAX_MODELS];
    const char *names[BS_EVAL_MAX_MODELS]; /* the registry's */
    int n_models;
    const registry_split *d; /* the slice is materialised while the job runs */
    bs_eval_config cfg;
} eval_job;

static void evaluation_free(void *ctx)
{
    free(ctx);
}

static void evaluation_run(void *ctx, pool_worker *w, const bs_attack_control *ctl,
                           http_response *out)
{
    (void)w;
    eval_job *j = ctx;
    /* The job's progress is the evaluation's, not that of each attack. */
    bs_attack_control inner = {.deadline = ctl->deadline, .cancel = ctl->cancel};
    /* Core sees only the slice, as its images 0 .. n-1; targets and noise
     * depend on the seed and the slice's position in it, not on first. */
    bs_eval_config cfg = j->cfg;
    cfg.first = 0;
    bs_eval_result *r = malloc(sizeof *r);
    bs_dataset slice = {0};
    char err[BS_ERR_LEN];
    if (!r || registry_split_slice(j->d, j->cfg.first, j->cfg.n, &slice, err)) {
        free(r);
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    if (ctl->progress) /* the total is known before the first attack ends */
        ctl->progress(ctl->ctx, 0, j->n_models * j->cfg.n);
    if (bs_evaluate_transfer(j->models, j->n_models, &slice, &cfg, &inner, ctl->progress,
                             ctl->ctx, r, NULL, NULL, err)) {
        resp_error(out, BS_E_EVALUATION_FAILED, "The evaluation failed: %s.", err);
    } else if (r->status == BS_ATTACK_TIMEOUT) {
        resp_error(out, BS_E_DEADLINE_EXCEEDED,
                   "The time budget ran out before every attack was done; ask for fewer "
                   "models or images, or a larger timeout (--job-timeout).");
    } else if (r->status == BS_ATTACK_CANCELLED) {
        resp_error(out, BS_E_CANCELLED, "The evaluation was stopped before it finished.");
    } else {
        json_t *doc = bs_eval_result_json(r, j->names, j->models, &slice, &j->cfg);
        if (doc)
            resp_json(out, 200, doc);
        else
            resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    }
    bs_dataset_free(&slice);
    free(r);
}

/* ---- the request (HTTP thread) ---------------------------------------------- */

static const char *const fields[] = {"models", "dataset", "split", "first", "n", "seed",
                                     "method", "params", "noise", "magnify", "timeout"};

/* An optional string into *out. */
static int read_string(const json_t *root, const char *key, const char **out,
                       http_response *resp)
{
    const json_t *v = json_object_get(root, key);
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "%s must be a string.", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* The models: those named, or every one of the request's set that takes
 * d's input. */
static int read_models(const registry_set *set, const json_t *list, eval_job *j,
                       http_response *resp)
{
    const registry_split *d = j->d;
    if (!list) {
        for (int i = 0; i < set->n_models; i++) {
            const registry_model *rm = set->models[i];
            if (rm->model->input_size != d->input_size)
                continue;
            if (j->n_models == BS_EVAL_MAX_MODELS) {
                resp_error(resp, BS_E_TOO_MANY_MODELS,
                           "More than %d resident models fit %s; name at most %d in models.",
                           BS_EVAL_MAX_MODELS, d->name, BS_EVAL_MAX_MODELS);
                return -1;
            }
            j->models[j->n_models] = rm->model;
            j->names[j->n_models++] = rm->name;
        }
        if (j->n_models == 0) {
            resp_error(resp, BS_E_SHAPE_MISMATCH, "No resident model takes the inputs of %s.",
                       d->name);
            return -1;
        }
        return 0;
    }
    if (!json_is_array(list) || json_array_size(list) == 0) {
        resp_error(resp, BS_E_INVALID_REQUEST, "models must be a non-empty list of names.");
        return -1;
    }
    if (json_array_size(list) > BS_EVAL_MAX_MODELS) {
        resp_error(resp, BS_E_TOO_MANY_MODELS, "An evaluation takes at most %d models, not %zu.",
                   BS_EVAL_MAX_MODELS, json_array_size(list));
        return -1;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) {
        if (!json_is_string(e)) {
            resp_error(resp, BS_E_INVALID_REQUEST, "models[%zu] must be a model name.", i);
            return -1;
        }
        const registry_model *rm = registry_set_find(set, json_string_value(e));
        if (!rm) {
            resp_error(resp, BS_E_MODEL_NOT_FOUND,
                       "No model named '%.64s' is loaded; GET /v1/models lists them.",
                       json_string_value(e));
            return -1;
        }
        for (int k = 0; k < j->n_models; k++)
            if (j->models[k] == rm->model) {
                resp_error(resp, BS_E_DUPLICATE_MODEL, "models lists %s twice.", rm->name);
                return -1;
            }
        if (rm->model->input_size != d->input_size) {
            resp_error(resp, BS_E_SHAPE_MISMATCH,
                       "Model %s takes (%d,%d,%d) inputs; %s has (%d,%d,%d).", rm->name,
                       rm->model->input_shape[0], rm->model->input_shape[1],
                       rm->model->input_shape[2], d->name, d->shape[0], d->shape[1],
                       d->shape[2]);
            return -1;
        }
        j->models[j->n_models] = rm->model;
        j->names[j->n_models++] = rm->name;
    }
    return 0;
}

static int read_noise(const json_t *v, bs_eval_config *cfg, http_response *resp)
{
    if (!v)
        return 0;
    if (!json_is_array(v)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "noise must be a list of standard deviations.");
        return -1;
    }
    if (json_array_size(v) > BS_EVAL_MAX_NOISE) {
        resp_error(resp, BS_E_OUT_OF_RANGE, "noise holds at most %d standard deviations.",
                   BS_EVAL_MAX_NOISE);
        return -1;
    }
    cfg->n_noise = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        double s;
        if (!json_number_value_ok(e, &s)) {
            resp_error(resp, BS_E_INVALID_REQUEST, "noise[%zu] must be a number.", i);
            return -1;
        }
        if (!(s > 0.0 && s <= 10.0)) {
            resp_error(resp, BS_E_OUT_OF_RANGE, "noise[%zu] must be in (0, 10], not %g.", i, s);
            return -1;
        }
        cfg->noise[cfg->n_noise++] = s;
    }
    return 0;
}

/* Validates root into j (and the job's deadline). -1 after an answer. */
static int read_request(server *srv, const http_request *req, const json_t *root, eval_job *j,
                        http_work *work, http_response *resp)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        size_t i;
        for (i = 0; i < sizeof fields / sizeof fields[0] && strcmp(key, fields[i]); i++)
            ;
        if (i == sizeof fields / sizeof fields[0]) {
            resp_error(resp, BS_E_UNKNOWN_FIELD,
                       "Unknown field '%.64s'; the fields are models, dataset, split, first, n, "
                       "seed, method, params, noise, magnify and timeout.", key);
            return -1;
        }
    }
    const char *dataset = "mnist", *split = "test", *method = "lbfgs";
    if (read_string(root, "dataset", &dataset, resp) || read_string(root, "split", &split, resp) ||
        read_string(root, "method", &method, resp))
        return -1;
    j->d = registry_split_find(&srv->reg, dataset, split);
    if (!j->d) {
        char err[BS_ERR_LEN];
        registry_split_missing(&srv->reg, dataset, split, err, sizeof err);
        resp_error(resp, BS_E_DATASET_NOT_FOUND, "%s", err);
        return -1;
    }
    if (read_models(req->models, json_object_get(root, "models"), j, resp))
        return -1;

    bs_eval_config *cfg = &j->cfg;
    *cfg = bs_eval_defaults();
    long long first = cfg->first, n = cfg->n, seed = (long long)cfg->seed;
    if (req_body_int(root, "first", 0, j->d->n - 1, &first, resp) ||
        req_body_int(root, "n", 1, j->d->n, &n, resp) ||
        req_body_int(root, "seed", 0, (1LL << 53), &seed, resp))
        return -1;
    if (first + n > j->d->n) {
        resp_error(resp, BS_E_OUT_OF_RANGE,
                   "The slice %lld..%lld runs past the %d images of %s/%s.", first,
                   first + n - 1, j->d->n, dataset, split);
        return -1;
    }
    if (n * j->n_models > EVAL_MAX_ATTACKS) {
        resp_error(resp, BS_E_EVALUATION_TOO_LARGE,
                   "%d models x %lld images is more than the %d attacks an evaluation may "
                   "hold; ask for fewer.", j->n_models, n, EVAL_MAX_ATTACKS);
        return -1;
    }
    cfg->first = (int)first;
    cfg->n = (int)n;
    cfg->seed = (uint64_t)seed;
    const json_t *params = json_object_get(root, "params");
    if (params && !json_is_object(params)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "params must be an object.");
        return -1;
    }
    char err[BS_ERR_LEN];
    if (bs_attack_params_from_json(params, method, &cfg->params, err)) {
        resp_error(resp, BS_E_INVALID_PARAMS, "%s.", err);
        return -1;
    }
    if (read_noise(json_object_get(root, "noise"), cfg, resp))
        return -1;
    const json_t *magnify = json_object_get(root, "magnify");
    if (magnify) {
        if (!json_number_value_ok(magnify, &cfg->magnify)) {
            resp_error(resp, BS_E_INVALID_REQUEST, "magnify must be a number.");
            return -1;
        }
        if (!(cfg->magnify >= 0.0 && cfg->magnify <= 1.0)) {
            resp_error(resp, BS_E_OUT_OF_RANGE, "magnify must be in [0, 1] (0: none).");
            return -1;
        }
    }
    if (req_body_timeout(root, req, work, resp))
        return -1;
    cfg->threads = 1;
    return 0;
}

handler_result evaluations_create(server *srv, const http_request *req, http_response *resp,
                                  http_work *work)
{
    json_t *root = req_json_object(req, resp);
    if (!root)
        return HANDLER_ANSWERED;
    eval_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(root);
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    work->deadline = jobs_deadline(srv, req);
    int rc = read_request(srv, req, root, j, work, resp);
    json_decref(root);
    if (rc) {
        free(j);
        return HANDLER_ANSWERED;
    }
    work->run = evaluation_run;
    work->free = evaluation_free;
    work->ctx = j;
    work->kind = "evaluation";
    return HANDLER_ASYNC;
}
