/* attacks — POST /v1/attacks: the request (JSON, or multipart/form-data
 * with the same fields as parts) is validated by api/attack_request.h, its
 * image decoded and converted to the model's input on the HTTP thread, with
 * this daemon's resident models, dataset splits and --max-pixels behind
 * its callbacks; the attack runs on a worker with the job's deadline and
 * cancel flag; the answer is the attack core's JSON (as `blindspot attack
 * --json` prints it) plus the input the model saw, or, as the Accept header
 * prefers, the adversarial image itself as PNG or JPEG (quality 95) with its
 * figures in X-Blindspot-* headers, for a request with one target. The
 * header is read before anything else: a type that cannot be served is a
 * 406 naming those that can.
 *
 * With ?async=true the attack is a job (jobs.h): 202 at once, its budget
 * --job-timeout, its progress the finished runs of the c (or eps) search
 * over all targets, its result the JSON answer (Accept does not apply).
 *
 * An lbfgs attack runs as a stream that queued lbfgs attacks on the same
 * model with the same params join, their evaluations in one batch of up
 * to --attack-batch rows (see attack_stream below); each is answered as
 * soon as its own search ends, with what it would get alone. */
#include "server/routes.h"

#include "api/accept.h"
#include "api/attack_json.h"
#include "api/attack_request.h"
#include "api/image.h"
#include "core/attack.h"
#include "server/image_url.h"
#include "server/jobs.h"

#include <stdlib.h>
#include <string.h>

/* What a synchronous answer can be, in the server's order of preference;
 * the images only for one target. */
typedef enum answer_type { ANSWER_JSON, ANSWER_PNG, ANSWER_JPEG } answer_type;
static const char *const answer_types[] = {"application/json", "image/png", "image/jpeg"};

typedef struct attack_stream attack_stream;

typedef struct attack_job {
    const registry_model *rm;   /* the model attacked */
    metrics *metrics;
    bs_attack_request req;      /* the validated request */
    answer_type answer;         /* as the Accept header chose */
    int batch_rows;             /* --attack-batch */
    /* progress of a job: runs finished over all targets searched */
    const bs_control *job_ctl;
    int runs_done, searched;
    /* an image by URL: the request, validated on the worker once the image
     * is fetched (NULL otherwise) */
    json_t *deferred;
    server *srv;
    registry_set *models;       /* the request's */
    /* the attack, from its start on a worker to its answer in out */
    http_response *out;
    bs_control ctl;             /* the job's, with the progress of all targets */
    int original;               /* the model's label for x */
    int targets[BS_MAX_TARGETS];
    bs_attack_result *res;      /* sj.k of them */
    bs_attack_job sj;           /* the attack as the core runs it */
    double t0;
    /* batched across requests: */
    attack_stream *stream;      /* the stream that took it from the queue; NULL: none */
    pool_job *held;             /* its pool job, ended once its answer is made */
} attack_job;

static void attack_free(void *ctx)
{
    attack_job *j = ctx;
    if (!j)
        return;
    bs_attack_request_free(&j->req);
    json_decref(j->deferred);
    free(j);
}

/* ---- request parsing (HTTP thread) ------------------------------------ */

/* api/attack_request.h's view of this daemon: the request's model set and
 * the registry's datasets. */
typedef struct attack_env_ctx {
    server *srv;
    const registry_set *models;
} attack_env_ctx;

static const bs_model *env_model(void *ctx, const char *name, const char **canonical, char *err)
{
    const registry_model *rm = registry_set_find(((attack_env_ctx *)ctx)->models, name);
    if (!rm) {
        snprintf(err, BS_ERR_LEN, "No model named '%.64s' is loaded; GET /v1/models lists them.",
                 name);
        return NULL;
    }
    *canonical = rm->name;
    return rm->model;
}

/* By default every resident model that takes the source model's input: as
 * many values in as many channels (a gray 1x48x64 model does not read a
 * colour 3x32x32 image, though both take 3072 values). */
static int env_report_all(void *ctx, const bs_model *m, bs_report_model *out, int cap)
{
    const registry_set *set = ((attack_env_ctx *)ctx)->models;
    int n = 0;
    for (int i = 0; i < set->n_models && n < cap; i++)
        if (set->models[i]->model->input_size == m->input_size &&
            set->models[i]->model->input_shape[0] == m->input_shape[0])
            out[n++] = (bs_report_model){set->models[i]->name, set->models[i]->model};
    return n;
}

static int env_split(void *ctx, const char *dataset, const char *split, bs_image_split *out,
                     char *err)
{
    /* named as every endpoint names it: mnist:P1's test split is mnist's */
    const registry_split *d =
        req_dataset_split_find(((attack_env_ctx *)ctx)->srv, NULL, dataset, split, err);
    if (!d)
        return -1;
    *out = (bs_image_split){.dataset = d->name, .split = d->split, .n = d->n,
                            .input_size = d->input_size, .handle = d,
                            .shape = {d->shape[0], d->shape[1], d->shape[2]}};
    return 0;
}

static int env_sample(void *ctx, const bs_image_split *split, int index, float *x)
{
    (void)ctx;
    return registry_split_sample(split->handle, index, x);
}

static int parse_request(server *srv, const registry_set *models, const json_t *root,
                         const uint8_t *file, size_t file_len, attack_job *j, bs_api_error *e);

/* Validates the body (or the form's parts) into j; 0, or -1 after an answer.
 * A request whose image is a URL is only kept (j->deferred): it is
 * validated on the worker once the image has come. */
static int read_request(server *srv, const http_request *req, int is_async, attack_job *j,
                        http_work *work, http_response *resp)
{
    json_t *root;
    const uint8_t *file = NULL;
    size_t file_len = 0;
    if (req->multipart) {
        bs_form_part *parts = calloc((size_t)req->n_parts + 1, sizeof *parts);
        if (!parts) {
            resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
            return -1;
        }
        for (int i = 0; i < req->n_parts; i++) {
            const http_part *p = &req->parts[i];
            parts[i] = (bs_form_part){p->name, p->filename || p->content_type, p->data, p->len};
        }
        root = bs_attack_form_to_json(parts, req->n_parts, &file, &file_len);
        free(parts);
    } else if (!(root = req_json_object(req, resp))) {
        return -1;
    }
    if (!is_async && json_object_get(root, "callback")) {
        json_decref(root);
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "callback is for asynchronous attacks: add ?async=true.");
        return -1;
    }
    if (is_async && jobs_take_callback(srv, root, work, resp)) {
        json_decref(root);
        return -1;
    }
    /* the log line names the model even when the request is refused */
    const char *model = json_string_value(json_object_get(root, "model"));
    const registry_model *named = model ? registry_set_find(req->models, model) : NULL;
    if (named)
        snprintf(resp->model, sizeof resp->model, "%s", named->name);
    if (!file && image_url_of(json_object_get(root, "image"))) {
        /* fetched on the worker; the request is validated there */
        j->deferred = root;
        j->srv = srv;
        const json_t *timeout = json_object_get(root, "timeout");
        double t = json_is_number(timeout) ? json_number_value(timeout) : 0;
        if (t > 0 && req->arrival + t < work->deadline)
            work->deadline = req->arrival + t;
        return 0;
    }
    bs_api_error e;
    int rc = parse_request(srv, req->models, root, file, file_len, j, &e);
    json_decref(root);
    if (rc) {
        resp_error(resp, e.code, "%s", e.message);
        return -1;
    }
    if (j->req.timeout > 0 && req->arrival + j->req.timeout < work->deadline)
        work->deadline = req->arrival + j->req.timeout;
    return 0;
}

/* api/attack_request.h's parse of root into j->req against models. */
static int parse_request(server *srv, const registry_set *models, const json_t *root,
                         const uint8_t *file, size_t file_len, attack_job *j, bs_api_error *e)
{
    attack_env_ctx ectx = {srv, models};
    bs_attack_env env = {.ctx = &ectx, .model = env_model, .report_all = env_report_all,
                         .max_report = models->n_models,
                         .datasets = {&ectx, env_split, env_sample},
                         .max_pixels = srv->cfg->max_pixels};
    if (bs_attack_request_parse(root, file, file_len, &env, &j->req, e))
        return -1;
    j->rm = registry_set_find(models, j->req.model_name);
    return 0;
}

/* On the worker: the image of a deferred request fetched, and the request
 * validated with it. 0, or -1 after an answer in out. */
static int fetch_deferred(attack_job *j, double deadline, http_response *out)
{
    uint8_t *bytes;
    size_t len;
    if (image_url_fetch(j->srv, image_url_of(json_object_get(j->deferred, "image")), deadline,
                        &bytes, &len, out))
        return -1;
    json_object_set_new(j->deferred, "image", json_pack("{s:b}", "file", 1));
    bs_api_error e;
    int rc = parse_request(j->srv, j->models, j->deferred, bytes, len, j, &e);
    free(bytes);
    if (rc)
        resp_error(out, e.code, "%s", e.message);
    else if (j->req.n_targets > 1)
        j->answer = ANSWER_JSON; /* one image per answer */
    return rc;
}

/* ---- the attack (worker) ---------------------------------------------- */

/* Accept: image/png or image/jpeg — the result's image itself, its figures
 * in headers. */
static void answer_image(const attack_job *j, const bs_attack_result *r, int original,
                         http_response *out)
{
    const bs_model *m = j->rm->model;
    int C = m->input_shape[0], H = m->input_shape[1], W = m->input_shape[2];
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    char err[BS_ERR_LEN];
    int jpeg = j->answer == ANSWER_JPEG;
    int rc = bs_image_encode_planes(r->adv8, C, H, W, jpeg ? BS_IMAGE_JPEG : BS_IMAGE_PNG, 95,
                                    &enc, &enc_len, err);
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
    j->job_ctl->progress(j->job_ctl->ctx, j->runs_done, total * j->searched);
}

/* The attack's start: the model's label for x, the targets, room for their
 * results and the control of the job. 0, or -1 after an answer in out. */
static int attack_start(attack_job *j, pool_worker *w, const bs_control *job_ctl,
                        http_response *out)
{
    const bs_model *m = j->rm->model;
    j->t0 = bs_now();
    j->out = out;
    bs_workspace *ws = pool_workspace(w, j->rm->ws, m, 1);
    if (!ws) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    j->original = bs_argmax(bs_model_forward(m, ws, j->req.x, 1), m->classes);
    int k = 0;
    bs_api_error e;
    if (bs_attack_request_targets(&j->req, j->original, j->targets, &k, &e)) {
        resp_error(out, e.code, "%s", e.message);
        return -1;
    }
    if (!(j->res = calloc((size_t)k, sizeof *j->res))) {
        resp_error(out, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return -1;
    }
    j->ctl = *job_ctl;
    if (j->ctl.progress) {
        /* targets the model already gives are not searched: no runs */
        j->job_ctl = job_ctl;
        for (int i = 0; i < k; i++)
            j->searched += j->targets[i] != j->original;
        j->ctl.progress = attack_progress;
        j->ctl.ctx = j;
    }
    j->sj = (bs_attack_job){.x = j->req.x, .targets = j->targets, .k = k, .ctl = &j->ctl,
                            .results = j->res, .tag = j};
    return 0;
}

/* The answer in j->out once the core has run j->sj; frees the results. */
static void attack_finish(attack_job *j)
{
    http_response *out = j->out;
    bs_attack_result *res = j->res;
    int k = j->sj.k;
    char err[BS_ERR_LEN];
    if (j->sj.rc) {
        resp_error(out, BS_E_INVALID_ATTACK, "%s.", j->sj.err);
        k = 0;
    } else {
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
        metrics_attack(j->metrics, bs_attack_method_name(j->req.params.method), j->rm->name, ok,
                       failed, timed_out, cancelled, bs_now() - j->t0);
        if (j->answer != ANSWER_JSON && !timed_out && !cancelled) {
            answer_image(j, &res[0], j->original, out);
        } else {
            json_t *doc = bs_attack_request_answer(&j->req, res, k, err);
            if (!doc) {
                resp_error(out, BS_E_ENCODE_FAILED, "The answer cannot be built: %s.", err);
            } else {
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
    }
    for (int i = 0; i < k; i++)
        bs_attack_result_free(&res[i]);
    free(res);
    j->res = NULL;
}

/* ---- attacks batched across requests ----------------------------------- */

/* A worker's stream (core/attack.h's bs_attack_stream): the lbfgs attack it
 * took from the queue first, then queued ones on the same model with the
 * same params as rows come free, each started as if a worker had taken it
 * and answered as soon as its own search ends. Only attacks waiting in the
 * queue join: a stream never waits for more. */
struct attack_stream {
    pool_worker *w;
    attack_job *first;        /* the worker's own job, until the stream takes it */
    const registry_model *rm; /* the model and params every job shares */
    bs_attack_params params;
    int free_rows;            /* what the stream can take now, for stream_match */
    attack_job *joined;       /* the job pool_take just started, for stream_next */
    metrics *metrics;
};

static void attack_run(void *ctx, pool_worker *w, const bs_control *job_ctl,
                       http_response *out);

/* Whether a and b are the same params. Compared field by field, through
 * the table that names every field but the method: padding may differ. */
static int same_params(const bs_attack_params *a, const bs_attack_params *b)
{
    if (a->method != b->method)
        return 0;
    for (int i = 0; i < BS_ATTACK_N_PARAMS; i++) {
        const bs_attack_param_info *f = &bs_attack_param_table[i];
        size_t size = f->kind == BS_PARAM_DOUBLE ? sizeof(double)
                    : f->kind == BS_PARAM_FLOAT  ? sizeof(float)
                    : f->kind == BS_PARAM_SEED   ? sizeof(uint64_t)
                                                 : sizeof(int);
        if (memcmp((const char *)a + f->offset, (const char *)b + f->offset, size))
            return 0;
    }
    return 1;
}

/* pool_take's match, under the pool's lock: a queued attack the stream can
 * run with its own. The model is the same object (the stream holds its
 * model set, so no other model comes back at its address meanwhile). */
static int stream_match(pool_job *pj, void *arg)
{
    attack_stream *s = arg;
    if (!pj->tag)
        return 0;
    const http_work *work = work_unwrapped(pj->tag);
    if (work->run != attack_run)
        return 0;
    attack_job *j = work->ctx;
    /* an image by URL is fetched first, which would hold up the stream */
    if (j->deferred || j->rm != s->rm || !same_params(&j->req.params, &s->params) ||
        bs_attack_stream_rows(&j->req.params, j->req.n_targets) > s->free_rows)
        return 0;
    j->stream = s;
    return 1;
}

static bs_attack_job *stream_next(void *ctx, int free_rows)
{
    attack_stream *s = ctx;
    if (s->first) {
        attack_job *j = s->first;
        s->first = NULL;
        j->held = pool_hold(s->w);
        metrics_attack_stream_job(s->metrics, 1);
        return &j->sj;
    }
    s->free_rows = free_rows;
    while (free_rows > 0 && pool_take(s->w, stream_match, s)) {
        attack_job *j = s->joined;
        s->joined = NULL;
        if (j) {
            metrics_attack_stream_job(s->metrics, 0);
            return &j->sj;
        }
        /* it ended at once (a bad target, an async job cancelled meanwhile) */
    }
    return NULL;
}

static void stream_done(void *ctx, bs_attack_job *sj)
{
    attack_stream *s = ctx;
    attack_job *j = sj->tag;
    pool_job *held = j->held;
    attack_finish(j);
    pool_release(s->w, held); /* j may be freed with it */
}

/* Runs j, started on worker w, as the first of a stream. */
static void attack_lead(attack_job *j, pool_worker *w)
{
    attack_stream s = {.w = w, .first = j, .rm = j->rm, .params = j->req.params,
                       .metrics = j->metrics};
    bs_attack_feed feed = {stream_next, stream_done, &s};
    registry_set *models = j->models;
    registry_set_retain(models);
    char err[BS_ERR_LEN];
    if (bs_attack_stream(j->rm->model, &s.params, j->batch_rows, pool_scratch(w), &feed, err)) {
        /* it took no job: j is still this run's */
        j->sj.rc = -1;
        snprintf(j->sj.err, sizeof j->sj.err, "%s", err);
        attack_finish(j);
    }
    registry_set_release(models);
}

static void attack_run(void *ctx, pool_worker *w, const bs_control *job_ctl,
                       http_response *out)
{
    attack_job *j = ctx;
    if (j->deferred && fetch_deferred(j, job_ctl->deadline, out))
        return;
    if (attack_start(j, w, job_ctl, out))
        return;
    if (j->stream) {
        /* taken by a running stream: it runs the attack and answers */
        j->held = pool_hold(w);
        j->stream->joined = j;
        return;
    }
    if (j->batch_rows > 1 && j->req.params.method == BS_ATTACK_LBFGS) {
        attack_lead(j, w);
        return;
    }
    j->sj.rc = bs_attack_run(j->rm->model, j->req.x, j->targets, j->sj.k, &j->req.params,
                             &j->ctl, pool_scratch(w), j->res, j->sj.err);
    attack_finish(j);
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
    j->batch_rows = srv->cfg->attack_batch;
    j->models = req->models;
    if (is_async)
        work->deadline = jobs_deadline(srv, req); /* a body's timeout lowers it below */
    else if (negotiate(req, j, resp)) {
        attack_free(j);
        return HANDLER_ANSWERED;
    }
    int rc = read_request(srv, req, is_async, j, work, resp);
    if (!rc && j->answer != ANSWER_JSON && j->req.n_targets > 1) {
        /* one image per answer: several targets can only be JSON */
        if (bs_accept_quality(req->accept, answer_types[ANSWER_JSON]) > 0.0) {
            j->answer = ANSWER_JSON;
        } else {
            resp_error(resp, BS_E_NOT_ACCEPTABLE,
                       "%s holds one image, and this request has %d targets; ask for one "
                       "target, or accept application/json.", answer_types[j->answer],
                       j->req.n_targets);
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
