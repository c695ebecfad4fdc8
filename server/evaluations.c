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
 * of models*n.
 *
 * When workers are free as the job starts, it runs in shards
 * (core/evaluate.h): the job's worker queues one helper job per free
 * worker, and it and the helpers take shards of the slice until none is
 * left (a helper gives its worker back, between shards, as soon as other
 * work waits in the queue); the merged records give the document one worker gives, number for
 * number. The helpers share the job's deadline and cancel flag and add to
 * its progress. Once no shard is left the job takes its helpers that no
 * worker took yet out of the queue, and waits only for those running, whose
 * shards are being measured, so a job never waits on queued work.
 *
 * While it runs, the job shows the tables of the images measured so far
 * (jobs_partial): each time core says a block of images is measured, in
 * whichever shard, the tables of every measured image are made again. */
#include "server/routes.h"

#include "api/attack_json.h"
#include "api/evaluate_json.h"
#include "core/evaluate.h"
#include "server/jobs.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Attacks (models * n) one evaluation may ask for: its adversarial images
 * are held in memory together (about 3 KB each for MNIST). */
#define EVAL_MAX_ATTACKS 20000

/* Shards per worker taking part: attacks differ in length, and smaller
 * shards keep every worker busy to the end. A shard holds at most
 * SHARD_IMAGES images, so that a helper gives its worker back soon when
 * other work arrives. */
#define SHARDS_PER_WORKER 4
#define SHARD_IMAGES 4
#define EVAL_MAX_HELPERS 64

typedef struct eval_job {
    server *srv;
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

/* ---- the job: shards on the job's worker and on helpers ---------------------- */

typedef struct eval_run eval_run;

/* A free worker's part in a running evaluation: a pool job that takes
 * shards until none is left. */
typedef struct shard_helper {
    pool_job job;
    eval_run *run;
} shard_helper;

/* One running evaluation, shared by its job's worker and its helpers. */
struct eval_run {
    const eval_job *j;
    const bs_dataset *slice;
    bs_eval_config cfg;             /* first 0: core sees the slice alone */
    bs_control inner;               /* the job's deadline and cancel flag */
    const bs_control *job;          /* the job's progress */
    bs_eval_images *im;             /* every image's records; shards fill disjoint rows */
    int n_shards;
    atomic_int next_shard;
    shard_helper helpers[EVAL_MAX_HELPERS];
    pthread_mutex_t lock;           /* the fields below */
    pthread_cond_t helper_ended;
    int helpers_out;                /* submitted helpers whose done has not run */
    int workers;                    /* workers that measured a shard */
    int attacks_done;
    unsigned char *measured;        /* (n): the image's records are complete */
    bs_eval_result partial;         /* the tables of the images measured so far */
    bs_attack_status status;
    int failed;
    char err[BS_ERR_LEN];
};

/* Core's progress of one shard: one more attack of the whole evaluation. */
static void shard_progress(void *ctx, int done, int total)
{
    (void)done;
    (void)total;
    eval_run *run = ctx;
    pthread_mutex_lock(&run->lock);
    run->attacks_done++;
    if (run->job->progress)
        run->job->progress(run->job->ctx, run->attacks_done, run->j->n_models * run->cfg.n);
    pthread_mutex_unlock(&run->lock);
}

/* Core's word that images lo .. hi-1 are measured: the job's partial
 * document, {"images", "models", "table1", "table2"} of the images
 * measured so far, made and handed over under the lock, so that a later
 * one never goes before an earlier one. The records read are those of
 * measured images, complete and written no more. */
static void shard_measured(void *ctx, int lo, int hi)
{
    eval_run *run = ctx;
    pthread_mutex_lock(&run->lock);
    for (int k = lo; k < hi; k++)
        run->measured[k] = 1;
    bs_eval_reduce_measured(run->im, run->measured, &run->cfg, BS_ATTACK_DONE, &run->partial);
    json_t *whole = bs_eval_result_json(&run->partial, run->j->names, run->j->models,
                                        run->slice, &run->j->cfg);
    json_t *doc = whole ? json_pack("{s:i, s:O, s:O, s:O}", "images", run->partial.n, "models",
                                    json_object_get(whole, "models"), "table1",
                                    json_object_get(whole, "table1"), "table2",
                                    json_object_get(whole, "table2"))
                        : NULL;
    char *text = doc ? text_of_json(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    if (text) /* else the last one stays: it is only behind */
        jobs_partial(run->job, text);
    pthread_mutex_unlock(&run->lock);
    json_decref(doc);
    json_decref(whole);
}

/* Why the job must stop now: cancelled, out of time, or DONE to go on. */
static bs_attack_status stop_status(const bs_control *ctl)
{
    bs_stop why = bs_should_stop(ctl);
    return why == BS_STOP_CANCELLED ? BS_ATTACK_CANCELLED
         : why == BS_STOP_DEADLINE ? BS_ATTACK_TIMEOUT : BS_ATTACK_DONE;
}

/* Measures shards until none is left, one failed, or the job must stop:
 * then the shards left are not measured at all (the answer is an error).
 * A helper (yield set) also stops once other work waits in the queue,
 * between two shards: an evaluation borrows idle workers, it does not
 * keep them from requests; the job's own worker measures what is left. */
static void take_shards(eval_run *run, pool *p, int yield)
{
    for (int taken = 0;; taken++) {
        if (yield && taken > 0) {
            int queued, running, workers;
            pool_stats(p, &queued, &running, &workers);
            if (queued > 0)
                return;
        }
        int s = atomic_fetch_add(&run->next_shard, 1), lo, hi;
        if (s >= run->n_shards)
            return;
        bs_attack_status stop = stop_status(&run->inner);
        pthread_mutex_lock(&run->lock);
        int failed = run->failed;
        run->workers += taken == 0;
        run->status = bs_eval_status_join(run->status, stop);
        pthread_mutex_unlock(&run->lock);
        if (failed || stop != BS_ATTACK_DONE)
            return;
        bs_eval_shard_range(run->cfg.n, s, run->n_shards, &lo, &hi);
        bs_attack_status status;
        char err[BS_ERR_LEN];
        bs_control shard = run->inner;
        shard.progress = shard_progress;
        shard.ctx = run;
        int rc = bs_evaluate_images(run->j->models, run->j->n_models, run->slice, &run->cfg, lo,
                                    hi, &shard, shard_measured, run->im, NULL, NULL, &status,
                                    err);
        pthread_mutex_lock(&run->lock);
        if (rc && !run->failed) {
            run->failed = 1;
            snprintf(run->err, sizeof run->err, "%s", err);
        }
        if (!rc)
            run->status = bs_eval_status_join(run->status, status);
        pthread_mutex_unlock(&run->lock);
    }
}

static void helper_run(pool_job *job, pool_worker *w)
{
    (void)w;
    eval_run *run = ((shard_helper *)job)->run;
    take_shards(run, run->j->srv->pool, 1);
}

/* Whether or not it ran: the job's worker may go on once every helper is
 * here. Nothing of run is touched after the unlock. */
static void helper_done(pool_job *job, pool_verdict verdict)
{
    (void)verdict;
    eval_run *run = ((shard_helper *)job)->run;
    pthread_mutex_lock(&run->lock);
    run->helpers_out--;
    pthread_cond_broadcast(&run->helper_ended);
    pthread_mutex_unlock(&run->lock);
}

/* Queues a helper for each free worker (none when the queue holds work:
 * it goes first), in shards of SHARDS_PER_WORKER per worker taking part.
 * Returns the number of helpers queued, run->helpers[0 ..]. */
static int start_helpers(eval_run *run, pool *p)
{
    int queued, running, workers;
    pool_stats(p, &queued, &running, &workers);
    int helpers = workers - running - queued;
    if (helpers > EVAL_MAX_HELPERS)
        helpers = EVAL_MAX_HELPERS;
    if (helpers > run->cfg.n - 1)
        helpers = run->cfg.n - 1;
    run->n_shards = 1;
    if (helpers < 1)
        return 0;
    run->n_shards = (helpers + 1) * SHARDS_PER_WORKER;
    if (run->n_shards < (run->cfg.n + SHARD_IMAGES - 1) / SHARD_IMAGES)
        run->n_shards = (run->cfg.n + SHARD_IMAGES - 1) / SHARD_IMAGES;
    if (run->n_shards > run->cfg.n)
        run->n_shards = run->cfg.n;
    int queued_helpers = 0;
    for (; queued_helpers < helpers && !pool_reserve(p); queued_helpers++) {
        shard_helper *sh = &run->helpers[queued_helpers];
        sh->run = run;
        sh->job.run = helper_run;
        sh->job.done = helper_done;
        sh->job.deadline = run->inner.deadline > 0.0 ? run->inner.deadline : INFINITY;
        sh->job.fd = -1;
        pthread_mutex_lock(&run->lock);
        run->helpers_out++;
        pthread_mutex_unlock(&run->lock);
        pool_submit(p, &sh->job);
    }
    return queued_helpers;
}

/* The shards of the evaluation, measured here and on helpers, into
 * run->im; returns once no helper is left in the pool. */
static void run_shards(eval_run *run, pool *p)
{
    int submitted = start_helpers(run, p);
    take_shards(run, p, 0);
    /* No shard left: helpers still queued have nothing to do. */
    for (int h = 0; h < submitted; h++)
        pool_cancel(p, &run->helpers[h].job);
    pthread_mutex_lock(&run->lock);
    while (run->helpers_out > 0)
        pthread_cond_wait(&run->helper_ended, &run->lock);
    pthread_mutex_unlock(&run->lock);
    if (run->n_shards > 1)
        fprintf(stderr, "blindspotd: evaluation of %d images x %d models in %d shards on %d "
                "workers\n", run->cfg.n, run->j->n_models, run->n_shards, run->workers);
}

static void evaluation_run(void *ctx, pool_worker *w, const bs_control *ctl,
                           http_response *out)
{
    (void)w;
    eval_job *j = ctx;
    bs_eval_result *r = malloc(sizeof *r);
    eval_run *run = calloc(1, sizeof *run);
    bs_dataset slice = {0};
    char err[BS_ERR_LEN];
    if (!r || !run || registry_split_slice(j->d, j->cfg.first, j->cfg.n, &slice, err) ||
        !(run->im = bs_eval_images_new(j->n_models, j->cfg.n_noise, j->cfg.n)) ||
        !(run->measured = calloc((size_t)j->cfg.n, 1))) {
        free(r);
        if (run) {
            bs_eval_images_free(run->im);
            free(run->measured);
        }
        free(run);
        bs_dataset_free(&slice);
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    run->j = j;
    run->slice = &slice;
    /* Core sees only the slice, as its images 0 .. n-1; targets and noise
     * depend on the seed and the slice's position in it, not on first. */
    run->cfg = j->cfg;
    run->cfg.first = 0;
    /* The job's progress is the evaluation's, not that of each attack. */
    run->inner = bs_control_quiet(ctl);
    run->job = ctl;
    run->status = BS_ATTACK_DONE;
    pthread_mutex_init(&run->lock, NULL);
    pthread_cond_init(&run->helper_ended, NULL);
    if (ctl->progress) /* the total is known before the first attack ends */
        ctl->progress(ctl->ctx, 0, j->n_models * j->cfg.n);
    if (bs_evaluate_check(j->models, j->n_models, &slice, &run->cfg, run->err))
        run->failed = 1;
    else
        run_shards(run, j->srv->pool);
    if (!run->failed)
        bs_eval_reduce(run->im, &run->cfg, run->status, r);
    if (run->failed) {
        resp_error(out, BS_E_EVALUATION_FAILED, "The evaluation failed: %s.", run->err);
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
    pthread_cond_destroy(&run->helper_ended);
    pthread_mutex_destroy(&run->lock);
    bs_eval_images_free(run->im);
    free(run->measured);
    free(run);
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
                       "seed, method, params, noise, magnify, timeout and callback.", key);
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
    j->srv = srv;
    work->deadline = jobs_deadline(srv, req);
    int rc = jobs_take_callback(srv, root, work, resp);
    if (!rc)
        rc = read_request(srv, req, root, j, work, resp);
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
