/* jobs — the job table, the pool callbacks of a job, and GET/DELETE
 * /v1/jobs/{id}; see jobs.h. */
#include "server/jobs.h"

#include "server/quota.h" /* quota_reason_names' order */
#include "server/routes.h"
#include "server/state.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

typedef enum job_state {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_DONE,
    JOB_FAILED,
    JOB_CANCELLED,
} job_state;

const char *const jobs_state_names[JOBS_STATES] = {"queued", "running", "done", "failed",
                                                   "cancelled"};

/* Where a job's webhook stands (webhooks.h names them). */
enum { CB_PENDING, CB_DELIVERED, CB_FAILED };
static const char *const cb_names[] = {WEBHOOK_PENDING, WEBHOOK_DELIVERED, WEBHOOK_FAILED};

static int cb_of_name(const char *name)
{
    return name && !strcmp(name, WEBHOOK_DELIVERED) ? CB_DELIVERED
         : name && !strcmp(name, WEBHOOK_FAILED)    ? CB_FAILED
                                                    : CB_PENDING;
}

typedef struct job {
    pool_job pj;          /* in the pool while queued or running */
    jobs *table;
    char id[JOB_ID_SIZE]; /* 32 hex digits (16 in stores of earlier versions) */
    char owner[AUTH_CLIENT_LEN]; /* the "token:" client that made it; "": anyone's */
    const char *kind;     /* a static string, or kind_buf */
    char client[HTTP_CLIENT_LEN]; /* the client that made it ("" after a restart) */
    char kind_buf[24];    /* the kind of a job read back from the store */
    http_work work;       /* ctx freed by the done callback */
    http_response out;    /* what work.run made; the worker's until done */
    bs_control ctl;       /* the work's, until the job ends (the run may hold it) */
    double run_started;   /* bs_now() when work.run was called; 0: not called */
    /* Guarded by table->lock: */
    job_state state;
    int done, total;      /* progress */
    int cancel_requested; /* DELETE came while it was queued or running */
    int pins;             /* handlers using the job without the lock; not swept */
    int cut;              /* ended by the shutdown: left unfinished in the store */
    int deleted;          /* DELETE of the finished job: gone, freed once unpinned */
    double created, started, finished; /* wall-clock seconds; 0: not yet */
    double submitted;     /* bs_now() at creation, for the queue time in /metrics */
    char model[REGISTRY_NAME_LEN]; /* the model concerned, "" for several */
    double finished_at;   /* bs_now() when it finished, for the ttl */
    char *result;         /* the work's JSON document, or NULL */
    char *error;          /* JSON text of the error object, or NULL */
    char *partial;        /* JSON text the work shows while it runs (jobs_partial), or NULL */
    /* the webhook (webhooks.h), when the request named one: */
    char *callback;       /* its URL, or NULL */
    int cb_state;         /* CB_PENDING, CB_DELIVERED, CB_FAILED */
    int cb_attempts, cb_status;
    char cb_error[256];
} job;

/* A request parked until its job ends (GET /v1/jobs/{id}?wait=S). */
typedef struct waiter {
    char id[JOB_ID_SIZE];
    double until;         /* bs_now() seconds: answer then, whatever the state */
    pool_job *pj;         /* the request's: run makes the answer, done resumes it */
    struct waiter *next;
} waiter;

typedef struct stream stream;

struct jobs {
    pthread_mutex_t lock;
    pool *pool;
    metrics *metrics;     /* every job's queue and compute time */
    job **slots;          /* n jobs in no particular order, room for cap */
    int n, max, cap;      /* cap > max only after a restart restored more */
    int max_client_jobs;  /* queued and running jobs of one client */
    double ttl;
    state *store;         /* where jobs are written; NULL: in memory only */
    /* the waiters' watcher, a thread of its own: */
    pthread_cond_t changed; /* a job ended, a waiter came, or stopping was raised */
    pthread_t watcher;
    waiter *waiters;
    stream *streams;      /* event streams waiting for news of their job */
    webhooks *hooks;      /* where the documents of jobs with a callback go */
    int stopping;         /* answer every waiter now (shutdown) */
    int quit;             /* the watcher returns */
};

#define JOB_OF(p) ((job *)((char *)(p) - offsetof(job, pj)))

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_final(job_state s)
{
    return s == JOB_DONE || s == JOB_FAILED || s == JOB_CANCELLED;
}

static void *watch(void *arg);
static void wake_streams(jobs *t, double now, double *next);
static void deliver(jobs *t, const char *id);

jobs *jobs_new(pool *p, metrics *m, int max_jobs, int max_client_jobs, double ttl,
               state *store)
{
    jobs *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->slots = calloc((size_t)max_jobs, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->changed, NULL);
    t->pool = p;
    t->metrics = m;
    t->max = t->cap = max_jobs;
    t->max_client_jobs = max_client_jobs;
    t->ttl = ttl;
    t->store = store;
    if (pthread_create(&t->watcher, NULL, watch, t)) {
        pthread_cond_destroy(&t->changed);
        pthread_mutex_destroy(&t->lock);
        free(t->slots);
        free(t);
        return NULL;
    }
    return t;
}

static void job_free(job *j)
{
    free(j->callback);
    free(j->result);
    free(j->partial);
    free(j->error);
    free(j);
}

void jobs_free(jobs *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = t->quit = 1;
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->watcher, NULL);
    pthread_cond_destroy(&t->changed);
    for (int i = 0; i < t->n; i++)
        job_free(t->slots[i]);
    free(t->slots);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Forgets the job in slot i, in the store too. Called with the lock held. */
static void forget(jobs *t, int i)
{
    if (t->store)
        state_delete(t->store, t->slots[i]->id);
    job_free(t->slots[i]);
    t->slots[i] = t->slots[--t->n];
}

/* Forgets finished jobs past their ttl, and deleted ones nobody uses any
 * more. Called with the lock held. */
static void sweep(jobs *t)
{
    double now = bs_now();
    for (int i = 0; i < t->n;) {
        job *j = t->slots[i];
        if (is_final(j->state) && !j->pins && (j->deleted || now - j->finished_at >= t->ttl))
            forget(t, i);
        else
            i++;
    }
}

/* Makes room for one job: forgets the finished job that ended longest ago.
 * 0, or -1 when every job is queued or running. Called with the lock held. */
static int evict_oldest(jobs *t)
{
    int oldest = -1;
    for (int i = 0; i < t->n; i++) {
        const job *j = t->slots[i];
        if (is_final(j->state) && !j->pins && !j->deleted &&
            (oldest < 0 || j->finished_at < t->slots[oldest]->finished_at))
            oldest = i;
    }
    if (oldest < 0)
        return -1;
    forget(t, oldest);
    metrics_job_evicted(t->metrics);
    return 0;
}

/* The job with this id, or NULL. Called with the lock held. */
static job *find(jobs *t, const char *id)
{
    sweep(t);
    for (int i = 0; i < t->n; i++)
        if (!t->slots[i]->deleted && !strcmp(t->slots[i]->id, id))
            return t->slots[i];
    return NULL;
}

/* Who owns the jobs a client makes: a token's client, or nobody ("") for
 * an address, since without tokens every client is the same one. */
static const char *owner_of(const char *client)
{
    return !strncmp(client, "token:", 6) ? client : "";
}

/* The job with this id that client may see (its own, one nobody owns, or
 * any when client is no token's), or NULL. Called with the lock held. */
static job *find_for(jobs *t, const char *id, const char *client)
{
    job *j = find(t, id);
    const char *owner = owner_of(client);
    if (j && j->owner[0] && owner[0] && strcmp(j->owner, owner))
        return NULL;
    return j;
}

int jobs_kind_of(jobs *t, const char *id, const char *client, char *kind, size_t len)
{
    pthread_mutex_lock(&t->lock);
    job *j = find_for(t, id, client);
    if (j)
        snprintf(kind, len, "%s", j->kind);
    pthread_mutex_unlock(&t->lock);
    return j ? 0 : -1;
}

/* The queued and running jobs of client. Called with the lock held. */
static int live_jobs_of(const jobs *t, const char *client)
{
    int n = 0;
    for (int i = 0; i < t->n; i++)
        n += !is_final(t->slots[i]->state) && !strcmp(t->slots[i]->client, client);
    return n;
}

/* ---- waiters ------------------------------------------------------------- */

/* The watcher: answers each parked request once its job has ended (or is
 * gone), its wait is over, or the server stops. The answers are made
 * without the lock, since run reads the table. */
static void *watch(void *arg)
{
    jobs *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->quit || t->waiters) {
        double now = bs_now(), next = 0;
        waiter *ready = NULL, **w = &t->waiters;
        while (*w) {
            job *j = find(t, (*w)->id);
            if (!j || is_final(j->state) || now >= (*w)->until || t->stopping) {
                waiter *r = *w;
                *w = r->next;
                r->next = ready;
                ready = r;
            } else {
                if (!next || (*w)->until < next)
                    next = (*w)->until;
                w = &(*w)->next;
            }
        }
        wake_streams(t, now, &next);
        if (ready) {
            pthread_mutex_unlock(&t->lock);
            while (ready) {
                waiter *r = ready;
                ready = r->next;
                r->pj->run(r->pj, NULL);
                r->pj->done(r->pj, POOL_RAN);
                free(r);
            }
            pthread_mutex_lock(&t->lock);
        } else if (next) {
            /* bs_now() is CLOCK_MONOTONIC; the condition waits on the
             * realtime clock, so wait for the difference. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double at = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + (next - now) + 1e-3;
            ts.tv_sec = (time_t)at;
            ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&t->changed, &t->lock, &ts);
        } else if (!t->quit) {
            pthread_cond_wait(&t->changed, &t->lock);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* The parked request's state: which job, until when. */
typedef struct wait_ctx {
    jobs *table;
    char id[JOB_ID_SIZE];
    char client[AUTH_CLIENT_LEN];
    double until;
} wait_ctx;

static void wait_park(void *ctx, pool_job *pj)
{
    wait_ctx *c = ctx;
    waiter *w = calloc(1, sizeof *w);
    if (!w) {
        /* No room to wait: answer the job as it is now. */
        pj->run(pj, NULL);
        pj->done(pj, POOL_RAN);
        return;
    }
    memcpy(w->id, c->id, sizeof w->id);
    w->until = c->until;
    w->pj = pj;
    pthread_mutex_lock(&c->table->lock);
    w->next = c->table->waiters;
    c->table->waiters = w;
    pthread_cond_broadcast(&c->table->changed);
    pthread_mutex_unlock(&c->table->lock);
}

double jobs_deadline(const server *srv, const http_request *req)
{
    double budget = srv->cfg->job_timeout;
    if (req->timeout > 0 && req->timeout < budget)
        budget = req->timeout;
    return req->arrival + budget;
}

/* ---- on a worker ---------------------------------------------------------- */

static void job_progress(void *ctx, int done, int total)
{
    job *j = ctx;
    pthread_mutex_lock(&j->table->lock);
    j->done = done;
    j->total = total;
    pthread_mutex_unlock(&j->table->lock);
}

void jobs_partial(const bs_control *ctl, char *text)
{
    if (ctl->progress != job_progress) { /* not a job: nobody reads it */
        free(text);
        return;
    }
    job *j = ctl->ctx;
    pthread_mutex_lock(&j->table->lock);
    char *old = j->partial;
    j->partial = text;
    pthread_mutex_unlock(&j->table->lock);
    free(old);
}

static void job_run(pool_job *pj, pool_worker *w)
{
    job *j = JOB_OF(pj);
    pthread_mutex_lock(&j->table->lock);
    int cancelled = j->cancel_requested;
    j->state = JOB_RUNNING;
    j->started = wall_now();
    if (j->table->store)
        state_started(j->table->store, j->id, j->started);
    pthread_mutex_unlock(&j->table->lock);
    if (cancelled) /* between its submission and now: run nothing */
        return;
    j->ctl = (bs_control){.deadline = pj->deadline, .cancel = &pj->cancel,
                          .progress = job_progress, .ctx = j};
    j->run_started = bs_now();
    /* Nothing is touched once run returns: a run that holds its job
     * (pool_hold) may have ended it already. */
    j->work.run(j->work.ctx, w, &j->ctl, &j->out);
}

static char *error_text(bs_error_code code, const char *message)
{
    json_t *e = bs_error_json(code, message);
    char *s = e ? text_of_json(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return s;
}

/* Reads the response of a run that did not answer 200: its error object,
 * and the document itself when it holds more than the error. */
static void split_failure(http_response *out, char **result, char **error)
{
    json_t *doc = out->body ? json_loadb(out->body, out->body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(doc, "error");
    if (json_is_object(e))
        *error = text_of_json(e, JSON_COMPACT);
    else
        *error = error_text(BS_E_INTERNAL_ERROR, "The job ended without an answer.");
    if (json_is_object(doc) && json_object_size(doc) > 1) {
        *result = out->body; /* NUL-terminated: resp_json made it */
        out->body = NULL;
    }
    json_decref(doc);
}

/* The end of a job, on whichever thread the pool ends it. */
static void job_done(pool_job *pj, pool_verdict verdict)
{
    job *j = JOB_OF(pj);
    jobs *t = j->table;
    pthread_mutex_lock(&t->lock);
    int cancel_requested = j->cancel_requested;
    pthread_mutex_unlock(&t->lock);

    if (verdict == POOL_RAN && j->run_started > 0)
        metrics_work(t->metrics, j->kind, j->model, j->out.status < 400,
                     j->run_started - j->submitted, bs_now() - j->run_started);
    job_state state;
    char *result = NULL, *error = NULL;
    if (verdict == POOL_RAN && j->out.status == 200) {
        state = JOB_DONE;
        result = j->out.body;
        j->out.body = NULL;
    } else if (cancel_requested || verdict == POOL_CANCELLED) {
        state = JOB_CANCELLED;
    } else if (verdict == POOL_RAN) {
        state = JOB_FAILED;
        split_failure(&j->out, &result, &error);
    } else { /* expired or shut down in the queue (no client to be GONE) */
        state = JOB_FAILED;
        error = verdict == POOL_EXPIRED
                    ? error_text(BS_E_DEADLINE_EXCEEDED, "The time budget ran out while the job "
                                 "waited for a worker; retry with a larger timeout.")
                    : error_text(BS_E_SHUTTING_DOWN, "The server shut down before the job ran; "
                                 "submit it again.");
    }
    resp_clear(&j->out);
    if (j->work.free)
        j->work.free(j->work.ctx);
    j->work.free = NULL;

    pthread_mutex_lock(&t->lock);
    j->state = state;
    j->result = result;
    j->error = error;
    free(j->partial); /* the result or the error say it all now */
    j->partial = NULL;
    j->finished = wall_now();
    j->finished_at = bs_now();
    if (state == JOB_DONE && j->total > 0)
        j->done = j->total;
    /* A job the shutdown cut short stays queued or running in the store,
     * to run again at the next start. */
    int cut = j->cut && state != JOB_DONE;
    if (t->store && !cut)
        state_finished(t->store, j->id, jobs_state_names[state], result, error, j->finished,
                       j->done, j->total);
    char id[sizeof j->id];
    memcpy(id, j->id, sizeof id);
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
    if (!cut)
        deliver(t, id);
}

/* ---- on the HTTP thread --------------------------------------------------- */

/* A fresh job id: 128 bits from the system's CSPRNG as 32 hex digits, so
 * that no id tells anything of another; unlike every id in the table
 * (which holds every stored job too). Called with the lock held. 0, or -1
 * when the system has no randomness to give. */
static int new_id(jobs *t, char id[JOB_ID_SIZE])
{
    do {
        unsigned char r[16];
        size_t got = 0;
        while (got < sizeof r) {
            ssize_t n = getrandom(r + got, sizeof r - got, 0);
            if (n < 0 && errno != EINTR)
                return -1;
            if (n > 0)
                got += (size_t)n;
        }
        for (size_t i = 0; i < sizeof r; i++)
            snprintf(id + 2 * i, 3, "%02x", r[i]);
    } while (find(t, id));
    return 0;
}

/* Makes j the job of work, queued. */
static void job_take(jobs *t, job *j, http_work *work, const char *model)
{
    j->table = t;
    j->kind = work->kind ? work->kind : "job";
    j->work = *work;
    j->state = JOB_QUEUED;
    j->submitted = bs_now();
    snprintf(j->model, sizeof j->model, "%s", model);
    j->pj.run = job_run;
    j->pj.done = job_done;
    j->pj.fd = -1; /* no client to watch */
    j->pj.deadline = work->deadline;
    j->pj.tag = &j->work;
    if (work->callback[0] && !j->callback) {
        j->callback = strdup(work->callback);
        j->cb_state = CB_PENDING;
    }
}

/* Adds j to the table, growing it past max for restored jobs. Called with
 * the lock held. 0, or -1 when out of memory. */
static int add_slot(jobs *t, job *j)
{
    if (t->n == t->cap) {
        job **slots = realloc(t->slots, (size_t)(t->cap * 2) * sizeof *slots);
        if (!slots)
            return -1;
        t->slots = slots;
        t->cap *= 2;
    }
    t->slots[t->n++] = j;
    return 0;
}

/* The query of req as a JSON array of [key, value] pairs (value null for
 * a bare key); malloc'd text or NULL. */
static char *query_text(const http_request *req)
{
    json_t *a = json_array();
    for (int i = 0; a && i < req->n_query; i++)
        json_array_append_new(a, json_pack("[s, s?]", req->query[i].key, req->query[i].value));
    char *text = a ? text_of_json(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return text;
}

/* Writes the new job j and the request that made it (deadline in bs_now()
 * seconds). Called with the lock held. 0, or -1 after a 503 in resp. */
static int store_new(jobs *t, const job *j, const http_request *req, double deadline,
                     http_response *resp)
{
    char *query = query_text(req), err[256];
    state_job row = {
        .id = j->id, .kind = j->kind, .model = j->model, .state = jobs_state_names[JOB_QUEUED],
        .owner = j->owner,
        .created = j->created, .deadline = j->created + (deadline - j->submitted),
        .method = req->method, .path = req->path, .query = query,
        .content_type = req->content_type, .accept = req->accept,
        .body = req->multipart ? NULL : req->body, .body_len = req->body_len,
        .multipart = req->multipart, .parts = req->parts, .n_parts = req->n_parts,
        .callback = j->callback, .callback_state = cb_names[j->cb_state],
    };
    int rc = query ? state_insert(t->store, &row, err, sizeof err) : -1;
    if (!query)
        snprintf(err, sizeof err, "out of memory");
    free(query);
    if (rc) {
        fprintf(stderr, "blindspotd: job not accepted: cannot write it to the state file: %s\n",
                err);
        resp_error(resp, BS_E_STATE_UNAVAILABLE,
                   "The job could not be written to the state file (%s), so it was not "
                   "accepted; retry shortly.", err);
    }
    return rc;
}

void jobs_submit(jobs *t, const http_request *req, http_work *work, http_response *resp)
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    /* A place in the table, the row in the store, and a place in the
     * queue, all under the table's lock (the pool never calls into the
     * table with its own lock held). */
    pthread_mutex_lock(&t->lock);
    sweep(t);
    if (live_jobs_of(t, req->client) >= t->max_client_jobs) {
        pthread_mutex_unlock(&t->lock);
        free(j);
        metrics_rate_limited(t->metrics, QUOTA_JOBS);
        resp_error(resp, BS_E_TOO_MANY_CLIENT_JOBS,
                   "This client has %d jobs queued or running (--max-client-jobs); retry when "
                   "one has finished, or cancel one.", t->max_client_jobs);
        return;
    }
    /* A full table makes room by forgetting the finished job that ended
     * longest ago; only queued and running jobs are never forgotten. */
    int full = 0;
    while (t->n >= t->max && !full)
        full = evict_oldest(t) != 0;
    if (full) {
        pthread_mutex_unlock(&t->lock);
        free(j);
        resp_error(resp, BS_E_TOO_MANY_JOBS,
                   "The job table holds %d queued or running jobs (--max-jobs); retry when "
                   "one has finished.", t->n);
        return;
    }
    if (new_id(t, j->id)) {
        pthread_mutex_unlock(&t->lock);
        free(j);
        resp_error(resp, BS_E_INTERNAL_ERROR, "The system gave no randomness for a job id.");
        return;
    }
    job_take(t, j, work, resp->model);
    snprintf(j->owner, sizeof j->owner, "%s", owner_of(req->client));
    if (work->callback[0] && !j->callback) {
        pthread_mutex_unlock(&t->lock);
        job_free(j);
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return;
    }
    snprintf(j->client, sizeof j->client, "%s", req->client);
    j->created = wall_now();
    if (t->store && store_new(t, j, req, work->deadline, resp)) {
        pthread_mutex_unlock(&t->lock);
        job_free(j);
        return;
    }
    if (pool_reserve(t->pool) != 0) {
        if (t->store)
            state_delete(t->store, j->id);
        pthread_mutex_unlock(&t->lock);
        job_free(j);
        resp_error(resp, BS_E_QUEUE_FULL,
                   "The worker queue is full (--queue-size) or the server is shutting down; "
                   "retry shortly.");
        return;
    }
    t->slots[t->n++] = j; /* n < max <= cap */
    char id[sizeof j->id], location[64];
    memcpy(id, j->id, sizeof id);
    snprintf(location, sizeof location, "/v1/jobs/%s", id);
    pthread_mutex_unlock(&t->lock);
    work->free = NULL; /* the job owns ctx now */
    pool_submit(t->pool, &j->pj);

    resp_json(resp, 202, json_pack("{s:s, s:s, s:s}", "id", id, "state", "queued",
                                   "location", location));
    resp_header(resp, "Location", "%s", location);
}

void jobs_stop(jobs *t)
{
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    pthread_cond_broadcast(&t->changed);
    job **live = malloc((size_t)(t->n ? t->n : 1) * sizeof *live);
    int n = 0;
    for (int i = 0; live && i < t->n; i++) {
        job *j = t->slots[i];
        if (!is_final(j->state)) {
            j->cancel_requested = 1;
            j->cut = 1;
            j->pins++;
            live[n++] = j;
        }
    }
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < n; i++)
        pool_cancel(t->pool, &live[i]->pj);
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < n; i++)
        live[i]->pins--;
    pthread_mutex_unlock(&t->lock);
    free(live);
}

void jobs_stats(jobs *t, int counts[JOBS_STATES])
{
    memset(counts, 0, JOBS_STATES * sizeof *counts);
    pthread_mutex_lock(&t->lock);
    sweep(t);
    for (int i = 0; i < t->n; i++)
        counts[t->slots[i]->state]++;
    pthread_mutex_unlock(&t->lock);
}

/* ---- GET and DELETE /v1/jobs/{id} ------------------------------------------ */

/* What a job document shows, copied out under the lock. */
typedef struct job_view {
    char id[JOB_ID_SIZE];
    const char *kind;
    job_state state;
    int done, total, cancel_requested;
    double created, started, finished;
    char *result, *error, *partial; /* copies */
    char *callback;       /* a copy of the webhook's URL, or NULL */
    int cb_state;
    int cb_attempts, cb_status;
    char cb_error[256];
} job_view;

/* Called with the lock held. */
static int view_of(const job *j, job_view *v)
{
    memcpy(v->id, j->id, sizeof v->id);
    v->kind = j->kind;
    v->state = j->state;
    v->done = j->done;
    v->total = j->total;
    v->cancel_requested = j->cancel_requested;
    v->created = j->created;
    v->started = j->started;
    v->finished = j->finished;
    v->result = j->result ? strdup(j->result) : NULL;
    v->error = j->error ? strdup(j->error) : NULL;
    v->partial = j->partial ? strdup(j->partial) : NULL;
    v->callback = j->callback ? strdup(j->callback) : NULL;
    v->cb_state = j->cb_state;
    v->cb_attempts = j->cb_attempts;
    v->cb_status = j->cb_status;
    memcpy(v->cb_error, j->cb_error, sizeof v->cb_error);
    if ((j->result && !v->result) || (j->error && !v->error) || (j->partial && !v->partial) ||
        (j->callback && !v->callback)) {
        free(v->result);
        free(v->error);
        free(v->partial);
        free(v->callback);
        return -1;
    }
    return 0;
}

/* An RFC 3339 UTC time with milliseconds, or null for 0. */
static json_t *time_json(double t)
{
    if (t <= 0)
        return json_null();
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[40], date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, sizeof buf, "%s.%03dZ", date, (int)((t - (double)s) * 1000));
    return json_string(buf);
}

/* The job document: {"id", "kind", "state", "progress", "created",
 * "started", "finished", "expires", ["cancel_requested"], ["error"],
 * ["partial"], ["result"]}. The partial document and the result are
 * spliced in as the texts the work made, so the result is byte for byte
 * the synchronous answer. Frees v's copies. */
static void answer_view(jobs *t, job_view *v, int status, http_response *resp)
{
    json_t *doc = json_pack("{s:s, s:s, s:s, s:{s:i, s:i}, s:o, s:o, s:o, s:o}", "id", v->id,
                            "kind", v->kind, "state", jobs_state_names[v->state], "progress",
                            "done", v->done, "total", v->total, "created",
                            time_json(v->created), "started", time_json(v->started),
                            "finished", time_json(v->finished), "expires",
                            time_json(v->finished > 0 ? v->finished + t->ttl : 0));
    if (doc && v->cancel_requested && !is_final(v->state))
        json_object_set_new(doc, "cancel_requested", json_true());
    if (doc && v->callback)
        json_object_set_new(doc, "callback",
                            json_pack("{s:s, s:s, s:i, s:o, s:o}", "url", v->callback,
                                      "state", cb_names[v->cb_state], "attempts",
                                      v->cb_attempts, "last_status",
                                      v->cb_status ? json_integer(v->cb_status) : json_null(),
                                      "last_error", v->cb_error[0] ? json_string(v->cb_error)
                                                                   : json_null()));
    json_t *error = v->error ? json_loads(v->error, 0, NULL) : NULL;
    if (doc && error)
        json_object_set_new(doc, "error", error);
    else
        json_decref(error);
    char *head = doc ? text_of_json(doc, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(doc);
    static const char *const keys[] = {",\"partial\":", ",\"result\":"};
    const char *texts[] = {v->partial, v->result};
    size_t hlen = head ? strlen(head) : 0, len = hlen + 1;
    for (int k = 0; k < 2; k++)
        len += texts[k] ? strlen(keys[k]) + strlen(texts[k]) : 0;
    char *body = head ? malloc(len) : NULL;
    if (!body) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    } else {
        size_t n = hlen - 1; /* without the closing brace */
        memcpy(body, head, n);
        for (int k = 0; k < 2; k++)
            if (texts[k]) {
                size_t kl = strlen(keys[k]), tl = strlen(texts[k]);
                memcpy(body + n, keys[k], kl);
                memcpy(body + n + kl, texts[k], tl);
                n += kl + tl;
            }
        body[n++] = '}';
        body[n] = '\0';
        resp_bytes(resp, status, "application/json", body, n);
    }
    free(head);
    free(v->result);
    free(v->error);
    free(v->partial);
    free(v->callback);
}

static void not_found(const http_request *req, http_response *resp)
{
    resp_error(resp, BS_E_JOB_NOT_FOUND,
               "No job has the id '%.32s'; finished jobs are forgotten after --job-ttl.",
               req->params[0]);
}

/* The job document of id into resp (404 when it is unknown or expired);
 * returns whether the job has ended. */
static int answer_job(jobs *t, const char *id, const char *client, http_response *resp)
{
    job_view v;
    pthread_mutex_lock(&t->lock);
    job *j = find_for(t, id, client);
    int rc = j ? view_of(j, &v) : 0;
    int ended = j && is_final(j->state);
    pthread_mutex_unlock(&t->lock);
    if (!j)
        resp_error(resp, BS_E_JOB_NOT_FOUND,
                   "No job has the id '%.32s'; finished jobs are forgotten after --job-ttl.", id);
    else if (rc)
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    else
        answer_view(t, &v, 200, resp);
    return ended || !j;
}

/* ---- webhooks -------------------------------------------------------------- */

void jobs_set_webhooks(jobs *t, webhooks *hooks)
{
    t->hooks = hooks;
}

/* Hands the document of the ended job id to the webhooks when its
 * delivery is pending. Called without the lock. */
static void deliver(jobs *t, const char *id)
{
    pthread_mutex_lock(&t->lock);
    job *j = find(t, id);
    int pending = j && j->callback && t->hooks && j->cb_state == CB_PENDING;
    char *url = pending ? strdup(j->callback) : NULL;
    int attempts = pending ? j->cb_attempts : 0;
    pthread_mutex_unlock(&t->lock);
    if (!url)
        return;
    http_response doc;
    memset(&doc, 0, sizeof doc);
    answer_job(t, id, "daemon", &doc); /* no token's: it sees every job */
    if (doc.status != 200 || webhooks_post(t->hooks, id, url, doc.body, doc.body_len, attempts))
        fprintf(stderr, "blindspotd: job %s: its webhook is not queued (out of memory); it "
                "stays pending until the next start\n", id);
    resp_clear(&doc);
    free(url);
}

void jobs_webhook_report(void *table, const char *id, const webhook_status *s)
{
    jobs *t = table;
    int state = cb_of_name(s->state);
    pthread_mutex_lock(&t->lock);
    job *j = find(t, id);
    if (j) {
        j->cb_state = state;
        j->cb_attempts = s->attempts;
        j->cb_status = s->last_status;
        snprintf(j->cb_error, sizeof j->cb_error, "%s", s->last_error ? s->last_error : "");
    }
    if (j && t->store)
        state_callback(t->store, id, cb_names[state], s->attempts, s->last_status, j->cb_error);
    pthread_mutex_unlock(&t->lock);
}

int jobs_take_callback(const server *srv, json_t *root, http_work *work, http_response *resp)
{
    json_t *cb = json_object_get(root, "callback");
    if (!cb)
        return 0;
    if (!json_is_string(cb) || json_string_length(cb) == 0) {
        resp_error(resp, BS_E_INVALID_REQUEST, "callback must be an http:// or https:// URL.");
        return -1;
    }
    char err[600];
    outbound_target target;
    if (outbound_check(&srv->cfg->outbound, json_string_value(cb), &target, err, sizeof err)) {
        resp_error(resp, BS_E_URL_REFUSED, "callback %s.", err);
        return -1;
    }
    snprintf(work->callback, sizeof work->callback, "%s", json_string_value(cb));
    json_object_del(root, "callback");
    return 0;
}

static void wait_run(void *ctx, pool_worker *w, const bs_control *ctl,
                     http_response *out)
{
    (void)w, (void)ctl;
    wait_ctx *c = ctx;
    answer_job(c->table, c->id, c->client, out);
}

/* ?wait=S: seconds in [0, JOBS_MAX_WAIT]; 0 when absent. -1 after a 400. */
static int parse_wait(const http_request *req, double *wait, http_response *resp)
{
    const char *s = req_query(req, "wait");
    *wait = 0;
    if (!s)
        return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= JOBS_MAX_WAIT)) {
        resp_error(resp, BS_E_INVALID_REQUEST,
                   "wait is a number of seconds from 0 to %d, not '%.16s'.", JOBS_MAX_WAIT, s);
        return -1;
    }
    *wait = v;
    return 0;
}

handler_result jobs_get(server *srv, const http_request *req, http_response *resp,
                        http_work *work)
{
    double wait;
    if (parse_wait(req, &wait, resp))
        return HANDLER_ANSWERED;
    if (answer_job(srv->jobs, req->params[0], req->client, resp) || wait <= 0 ||
        atomic_load(&srv->draining))
        return HANDLER_ANSWERED;
    /* Still running: park the request until the job ends or wait passes. */
    wait_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return HANDLER_ANSWERED; /* the job as it is now */
    resp_clear(resp);
    c->table = srv->jobs;
    snprintf(c->id, sizeof c->id, "%s", req->params[0]);
    snprintf(c->client, sizeof c->client, "%s", req->client);
    c->until = req->arrival + wait;
    work->run = wait_run;
    work->free = free;
    work->ctx = c;
    work->park = wait_park;
    work->deadline = c->until + 1;
    return HANDLER_PARKED;
}

/* Cancels a queued job at once and a running one at its next check of the
 * cancel flag: 200 with the job when it is over (cancelled now, or
 * finished before), 202 while a running job is still stopping. A job that
 * had finished before the DELETE is forgotten (404 from now on), its
 * document answered as it was. */
handler_result jobs_cancel(server *srv, const http_request *req, http_response *resp,
                           http_work *work)
{
    (void)work;
    jobs *t = srv->jobs;
    pthread_mutex_lock(&t->lock);
    job *j = find_for(t, req->params[0], req->client);
    if (!j) {
        pthread_mutex_unlock(&t->lock);
        not_found(req, resp);
        return HANDLER_ANSWERED;
    }
    int finished = is_final(j->state);
    if (!finished) {
        if (t->store && !j->cancel_requested)
            state_cancel_requested(t->store, j->id);
        j->cancel_requested = 1;
        j->pins++; /* not swept while the lock is let go */
        pthread_mutex_unlock(&t->lock);
        /* Without the lock: a queued job's done callback runs right here. */
        pool_cancel(t->pool, &j->pj);
        pthread_mutex_lock(&t->lock);
        j->pins--;
    }
    job_view v;
    int rc = view_of(j, &v);
    if (finished && !rc) {
        /* A job that had finished is forgotten now, its slot and its row
         * freed; one this DELETE cancelled is kept for its ttl. */
        j->deleted = 1;
        sweep(t);
    }
    pthread_mutex_unlock(&t->lock);
    if (rc)
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    else
        answer_view(t, &v, is_final(v.state) ? 200 : 202, resp);
    return HANDLER_ANSWERED;
}

/* ---- GET /v1/jobs/{id}/events ---------------------------------------------- */

/* One client's server-sent event stream of a job. Read on its HTTP thread;
 * while it waits for news it is on the table's list, which the watcher
 * checks every JOBS_EVENT_INTERVAL (so a fast job's progress is coalesced
 * to at most one event per interval, whatever its callback rate). */
struct stream {
    jobs *table;
    char id[JOB_ID_SIZE];
    unsigned long long event_id; /* the id: of the last event sent */
    int started;          /* retry: and the first event are made */
    int ended;            /* the final event is made: the stream ends after it */
    int gone;             /* the client hung up while it waited */
    job_state state;      /* as last sent */
    int done, total;
    double sent_at;       /* bs_now() of the last event or heartbeat */
    char *buf;            /* made and not yet read: buf[off, len) */
    size_t len, off;
    /* while on the table's list: */
    int waiting, fd;
    void (*wake)(void *arg);
    void *arg;
    stream *next;
};

/* Whether the job j (NULL: gone) has news for s now. Called with the lock held. */
static int stream_has_news(const jobs *t, const stream *s, const job *j, double now)
{
    if (t->stopping || !j || is_final(j->state) || s->gone)
        return 1;
    int changed = j->state != s->state || j->done != s->done || j->total != s->total;
    return (changed && now - s->sent_at >= JOBS_EVENT_INTERVAL) ||
           now - s->sent_at >= JOBS_HEARTBEAT;
}

/* The watcher's part: wakes each waiting stream that has news or whose
 * client hung up; lowers *next to the next check while any still waits.
 * Called with the lock held (wake only resumes a connection). */
static void wake_streams(jobs *t, double now, double *next)
{
    stream **p = &t->streams;
    while (*p) {
        stream *s = *p;
        char c;
        ssize_t r = s->fd >= 0 ? recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            s->gone = 1; /* end of file or reset: the client hung up */
        if (stream_has_news(t, s, find(t, s->id), now)) {
            *p = s->next;
            s->waiting = 0;
            s->wake(s->arg);
        } else {
            p = &s->next;
        }
    }
    if (t->streams && (!*next || now + JOBS_EVENT_INTERVAL < *next))
        *next = now + JOBS_EVENT_INTERVAL;
}

/* Appends the n pieces of text parts (lengths lens) to s->buf. 0, or -1
 * when out of memory. */
static int stream_append(stream *s, const char *const *parts, const size_t *lens, int n)
{
    size_t add = 0;
    for (int i = 0; i < n; i++)
        add += lens[i];
    char *b = realloc(s->buf, s->len + add);
    if (!b)
        return -1;
    for (int i = 0; i < n; i++) {
        memcpy(b + s->len, parts[i], lens[i]);
        s->len += lens[i];
    }
    s->buf = b;
    return 0;
}

/* Appends an event to s->buf (data is one line of JSON). 0, or -1 when out of memory. */
static int stream_event(stream *s, const char *event, const char *data, size_t len)
{
    char head[96];
    int n = snprintf(head, sizeof head, "%sid: %llu\nevent: %s\ndata: ",
                     s->started ? "" : "retry: " JOBS_EVENT_RETRY "\n\n", ++s->event_id, event);
    const char *parts[] = {head, data, "\n\n"};
    const size_t lens[] = {(size_t)n, len, 2};
    if (stream_append(s, parts, lens, 3))
        return -1;
    s->started = 1;
    return 0;
}

/* Makes what s sends next from its job. 1 when there is something, 0 when
 * nothing is due yet, -1 at the end. */
static int stream_make(stream *s)
{
    jobs *t = s->table;
    double now = bs_now();
    pthread_mutex_lock(&t->lock);
    job *j = t->stopping || s->ended || s->gone ? NULL : find(t, s->id);
    if (!j) {
        pthread_mutex_unlock(&t->lock);
        return -1;
    }
    if (is_final(j->state)) {
        job_view v;
        int rc = view_of(j, &v);
        pthread_mutex_unlock(&t->lock);
        http_response doc;
        memset(&doc, 0, sizeof doc);
        if (rc)
            return -1;
        answer_view(t, &v, 200, &doc);
        s->ended = 1;
        rc = doc.status == 200 ? stream_event(s, jobs_state_names[v.state], doc.body,
                                              doc.body_len)
                               : -1;
        resp_clear(&doc);
        return rc ? -1 : 1;
    }
    int changed = j->state != s->state || j->done != s->done || j->total != s->total;
    if (!s->started || (changed && now - s->sent_at >= JOBS_EVENT_INTERVAL)) {
        s->state = j->state;
        s->done = j->done;
        s->total = j->total;
        pthread_mutex_unlock(&t->lock);
        char data[96];
        int n = snprintf(data, sizeof data, "{\"state\":\"%s\",\"done\":%d,\"total\":%d}",
                         jobs_state_names[s->state], s->done, s->total);
        s->sent_at = now;
        return stream_event(s, "progress", data, (size_t)n) ? -1 : 1;
    }
    pthread_mutex_unlock(&t->lock);
    if (now - s->sent_at < JOBS_HEARTBEAT)
        return 0;
    static const char beat[] = ": keep-alive\n\n";
    const char *parts[] = {beat};
    const size_t lens[] = {sizeof beat - 1};
    if (stream_append(s, parts, lens, 1))
        return -1;
    s->sent_at = now;
    return 1;
}

static long stream_read(void *ctx, char *buf, size_t max)
{
    stream *s = ctx;
    if (s->off == s->len) {
        s->off = s->len = 0;
        int rc = stream_make(s);
        if (rc <= 0)
            return rc;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->buf + s->off, n);
    s->off += n;
    return (long)n;
}

static void stream_wait(void *ctx, int fd, void (*wake)(void *arg), void *arg)
{
    stream *s = ctx;
    jobs *t = s->table;
    pthread_mutex_lock(&t->lock);
    s->fd = fd;
    s->wake = wake;
    s->arg = arg;
    s->waiting = 1;
    s->next = t->streams;
    t->streams = s;
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
}

static void stream_free(void *ctx)
{
    stream *s = ctx;
    jobs *t = s->table;
    pthread_mutex_lock(&t->lock);
    for (stream **p = &t->streams; s->waiting && *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&t->lock);
    free(s->buf);
    free(s);
}

handler_result jobs_events(server *srv, const http_request *req, http_response *resp,
                           http_work *work)
{
    jobs *t = srv->jobs;
    pthread_mutex_lock(&t->lock);
    int known = find_for(t, req->params[0], req->client) != NULL;
    pthread_mutex_unlock(&t->lock);
    if (!known) {
        not_found(req, resp);
        return HANDLER_ANSWERED;
    }
    stream *s = calloc(1, sizeof *s);
    if (!s) {
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    s->table = t;
    s->fd = -1;
    snprintf(s->id, sizeof s->id, "%s", req->params[0]);
    /* A reconnecting client gets the job's state as it is now; its ids go
     * on from the last one it saw. */
    const char *last = req_header(req, "Last-Event-ID");
    if (last)
        s->event_id = strtoull(last, NULL, 10);
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp_header(resp, "Cache-Control", "no-store");
    resp_header(resp, "X-Accel-Buffering", "no");
    work->stream = (http_stream){.read = stream_read, .wait = stream_wait,
                                 .free = stream_free, .ctx = s};
    return HANDLER_STREAM;
}

/* ---- after a restart ------------------------------------------------------- */

/* A stored job that was queued or running: the request that made it, to
 * be made again (copies of the row, which lives only during the load). */
typedef struct pending {
    job *j;               /* in the table, queued */
    double deadline;      /* wall-clock end of its time budget */
    char *method, *path, *query, *content_type, *accept;
    uint8_t *body;
    size_t body_len;
    int multipart;
    http_part *parts;
    int n_parts;
    struct pending *next;
} pending;

/* What the load gathers. */
typedef struct restore_ctx {
    jobs *table;
    pending *pending, **tail;
    char (*expired)[JOB_ID_SIZE];  /* ids past their ttl, deleted after the load */
    int n_expired, n_restored, failed; /* failed: out of memory */
} restore_ctx;

static char *strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void pending_free(pending *p)
{
    free(p->method);
    free(p->path);
    free(p->query);
    free(p->content_type);
    free(p->accept);
    free(p->body);
    state_parts_free(p->parts, p->n_parts);
    free(p);
}

/* Copies the request of a stored job into p. 0, or -1 when out of memory. */
static int pending_copy(pending *p, const state_job *r)
{
    p->deadline = r->deadline;
    p->method = strdup_or_null(r->method);
    p->path = strdup_or_null(r->path);
    p->query = strdup_or_null(r->query ? r->query : "[]");
    p->content_type = strdup_or_null(r->content_type);
    p->accept = strdup_or_null(r->accept);
    p->multipart = r->multipart;
    p->body_len = r->body_len;
    p->body = malloc(r->body_len + 1);
    if (!p->method || !p->path || !p->query || (r->content_type && !p->content_type) ||
        (r->accept && !p->accept) || !p->body)
        return -1;
    if (r->body_len)
        memcpy(p->body, r->body, r->body_len);
    p->body[r->body_len] = '\0';
    p->parts = calloc((size_t)(r->n_parts ? r->n_parts : 1), sizeof *p->parts);
    if (!p->parts)
        return -1;
    for (int i = 0; i < r->n_parts; i++, p->n_parts++) {
        const http_part *in = &r->parts[i];
        http_part *out = &p->parts[i];
        out->name = strdup_or_null(in->name);
        out->filename = strdup_or_null(in->filename);
        out->content_type = strdup_or_null(in->content_type);
        out->data = malloc(in->len + 1);
        out->len = in->len;
        if (!out->name || (in->filename && !out->filename) ||
            (in->content_type && !out->content_type) || !out->data) {
            p->n_parts++;
            return -1;
        }
        memcpy(out->data, in->data, in->len + 1);
    }
    return 0;
}

static int state_of_name(const char *name)
{
    for (int s = 0; s < JOBS_STATES; s++)
        if (!strcmp(jobs_state_names[s], name))
            return s;
    return JOB_QUEUED; /* unknown: run it again rather than lose it */
}

/* One stored job, during the load (with the table's lock held): a finished
 * one goes back into the table as it was, or is deleted once its ttl has
 * passed (the ttl counts wall-clock time, so it ran on while the daemon
 * was down); an unfinished one goes into the table as queued, and its
 * request onto the list to be made again. */
static void restore_one(void *ctx, const state_job *r)
{
    restore_ctx *c = ctx;
    jobs *t = c->table;
    double now = wall_now();
    int st = state_of_name(r->state);
    if (strlen(r->id) >= sizeof(((job *)0)->id))
        return; /* not an id this program makes; nothing can ask for it */
    if (is_final(st) && now - r->finished >= t->ttl) {
        char(*ids)[JOB_ID_SIZE] = realloc(c->expired, (size_t)(c->n_expired + 1) * sizeof *ids);
        if (!ids) {
            c->failed = 1;
            return;
        }
        c->expired = ids;
        snprintf(c->expired[c->n_expired++], JOB_ID_SIZE, "%s", r->id);
        return;
    }
    job *j = calloc(1, sizeof *j);
    pending *p = is_final(st) ? NULL : calloc(1, sizeof *p);
    if (!j || (!is_final(st) && (!p || pending_copy(p, r)))) {
        free(j);
        if (p)
            pending_free(p);
        c->failed = 1;
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", r->id);
    snprintf(j->kind_buf, sizeof j->kind_buf, "%s", r->kind);
    j->kind = j->kind_buf;
    snprintf(j->owner, sizeof j->owner, "%s", r->owner ? r->owner : "");
    snprintf(j->model, sizeof j->model, "%s", r->model ? r->model : "");
    j->table = t;
    j->state = st;
    j->created = r->created;
    j->cancel_requested = r->cancel_requested;
    if (r->callback) {
        j->callback = strdup(r->callback);
        j->cb_state = cb_of_name(r->callback_state);
        j->cb_attempts = r->callback_attempts;
        j->cb_status = r->callback_status;
        snprintf(j->cb_error, sizeof j->cb_error, "%s",
                 r->callback_error ? r->callback_error : "");
        if (!j->callback) {
            free(j);
            if (p)
                pending_free(p);
            c->failed = 1;
            return;
        }
    }
    if (is_final(st)) {
        j->started = r->started;
        j->finished = r->finished;
        j->finished_at = bs_now() - (now - r->finished);
        j->done = r->done;
        j->total = r->total;
        j->result = strdup_or_null(r->result);
        j->error = strdup_or_null(r->error);
        if ((r->result && !j->result) || (r->error && !j->error)) {
            job_free(j);
            c->failed = 1;
            return;
        }
    }
    if (add_slot(t, j)) {
        job_free(j);
        if (p)
            pending_free(p);
        c->failed = 1;
        return;
    }
    c->n_restored++;
    if (p) {
        p->j = j;
        *c->tail = p;
        c->tail = &p->next;
    }
}

/* Ends a restored job that will not run: cancelled (a DELETE came before
 * the restart), or failed with why it could not run again. */
static void restore_end(jobs *t, job *j, job_state state, bs_error_code code, const char *why)
{
    char *error = NULL;
    if (state == JOB_FAILED) {
        char message[600];
        snprintf(message, sizeof message, "The daemon restarted while the job was queued or "
                 "running, and could not run it again: %s.", why);
        error = error_text(code, message);
    }
    pthread_mutex_lock(&t->lock);
    j->state = state;
    j->error = error;
    j->finished = wall_now();
    j->finished_at = bs_now();
    state_finished(t->store, j->id, jobs_state_names[state], NULL, error, j->finished,
                   j->done, j->total);
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
    deliver(t, j->id);
}

/* The message of an error answer in resp, into why. */
static void answer_message(const http_response *resp, char *why, size_t len)
{
    json_t *doc = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *m = json_object_get(json_object_get(doc, "error"), "message");
    snprintf(why, len, "its request is refused now (%d): %s", resp->status,
             json_is_string(m) ? json_string_value(m) : "no message");
    json_decref(doc);
}

/* Makes the request of p again through its route's handler and queues the
 * work it makes under the job's old id (returns 1); or ends the job when
 * that cannot be (returns 0). Called without the lock. */
static int restore_run(jobs *t, server *srv, pending *p)
{
    job *j = p->j;
    double now = wall_now();
    if (j->cancel_requested) {
        restore_end(t, j, JOB_CANCELLED, BS_E_CANCELLED, NULL);
        return 0;
    }
    if (p->deadline <= now) {
        restore_end(t, j, JOB_FAILED, BS_E_DEADLINE_EXCEEDED,
                    "its time budget (--job-timeout, or the request's timeout) ran out while "
                    "the daemon was down");
        return 0;
    }
    http_request req;
    memset(&req, 0, sizeof req);
    char params[512], allow[64], why[400] = "", request_id[40];
    int status = 0;
    json_t *query = json_loads(p->query, 0, NULL);
    const route *rt = route_match(p->method, p->path, &req, params, sizeof params, &status,
                                  allow, sizeof allow);
    if (!json_is_array(query) || json_array_size(query) > HTTP_MAX_QUERY)
        snprintf(why, sizeof why, "its stored request cannot be read back");
    else if (!rt)
        snprintf(why, sizeof why, "%s %s is no longer served", p->method, p->path);
    for (size_t i = 0; !*why && i < json_array_size(query); i++) {
        json_t *pair = json_array_get(query, i);
        req.query[i].key = json_string_value(json_array_get(pair, 0));
        req.query[i].value = json_string_value(json_array_get(pair, 1));
        if (!req.query[i].key)
            snprintf(why, sizeof why, "its stored request cannot be read back");
        req.n_query++;
    }
    if (*why) {
        json_decref(query);
        restore_end(t, j, JOB_FAILED, BS_E_NOT_RESTARTED, why);
        return 0;
    }
    snprintf(request_id, sizeof request_id, "restart-%s", j->id);
    req.method = p->method;
    req.path = p->path;
    req.content_type = p->content_type;
    req.accept = p->accept;
    req.multipart = p->multipart;
    req.body = p->multipart ? NULL : p->body;
    req.body_len = p->multipart ? 0 : p->body_len;
    req.parts = p->parts;
    req.n_parts = p->n_parts;
    req.request_id = request_id;
    snprintf(req.client, sizeof req.client, "%s", j->owner[0] ? j->owner : "addr:restart");
    /* Its budget keeps counting from its creation, not from now. */
    req.arrival = bs_now() - (now - j->created);
    http_work work;
    memset(&work, 0, sizeof work);
    work.deadline = req.arrival + srv->cfg->timeout;
    const char *timeout = req_query(&req, "timeout");
    if (timeout && (rt->flags & ROUTE_POOLED)) {
        double v = strtod(timeout, NULL);
        if (v > 0) {
            req.timeout = v;
            if (req.arrival + v < work.deadline)
                work.deadline = req.arrival + v;
        }
    }
    http_response resp;
    memset(&resp, 0, sizeof resp);
    /* The models resident now, held by the work as a new request's are. */
    req.models = registry_acquire(&srv->reg);
    handler_result hr = rt->handler(srv, &req, &resp, &work);
    json_decref(query);
    if (hr == HANDLER_ASYNC && work_hold_models(&work, req.models) != 0) {
        snprintf(why, sizeof why, "the server ran out of memory");
        hr = HANDLER_DEFERRED;
    } else if (hr != HANDLER_ASYNC) {
        if (hr == HANDLER_ANSWERED)
            answer_message(&resp, why, sizeof why);
        else
            snprintf(why, sizeof why, "its request no longer makes a job");
    }
    registry_set_release(req.models);
    if (hr != HANDLER_ASYNC) {
        if (hr != HANDLER_ANSWERED && work.free)
            work.free(work.ctx);
        resp_clear(&resp);
        restore_end(t, j, JOB_FAILED, BS_E_NOT_RESTARTED, why);
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    int reserved = pool_reserve(t->pool) == 0;
    if (reserved) {
        job_take(t, j, &work, resp.model);
        work.free = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    resp_clear(&resp);
    if (reserved) {
        pool_submit(t->pool, &j->pj);
        return 1;
    }
    if (work.free)
        work.free(work.ctx);
    restore_end(t, j, JOB_FAILED, BS_E_NOT_RESTARTED,
                "more jobs were waiting than the worker queue holds (--queue-size)");
    return 0;
}

int jobs_restore(jobs *t, server *srv, char *err, size_t errlen)
{
    if (!t->store)
        return 0;
    restore_ctx c = {.table = t};
    c.tail = &c.pending;
    pthread_mutex_lock(&t->lock);
    int rc = state_load(t->store, restore_one, &c, err, errlen);
    pthread_mutex_unlock(&t->lock);
    if (!rc && c.failed) {
        snprintf(err, errlen, "out of memory reading the state file");
        rc = -1;
    }
    for (int i = 0; !rc && i < c.n_expired; i++)
        state_delete(t->store, c.expired[i]);
    free(c.expired);
    int again = 0;
    while (c.pending) {
        pending *p = c.pending;
        c.pending = p->next;
        if (!rc)
            again += restore_run(t, srv, p);
        pending_free(p);
    }
    /* deliveries the last run left pending */
    char(*ids)[JOB_ID_SIZE] = NULL;
    int n_ids = 0;
    pthread_mutex_lock(&t->lock);
    if (!rc)
        ids = malloc((size_t)(t->n ? t->n : 1) * sizeof *ids);
    for (int i = 0; ids && i < t->n; i++)
        if (is_final(t->slots[i]->state) && t->slots[i]->cb_state == CB_PENDING)
            memcpy(ids[n_ids++], t->slots[i]->id, sizeof ids[0]);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < n_ids; i++)
        deliver(t, ids[i]);
    free(ids);
    if (!rc)
        fprintf(stderr, "blindspotd: the state file held %d jobs: %d expired and deleted, %d "
                "kept, %d of them queued to run again\n", c.n_expired + c.n_restored,
                c.n_expired, c.n_restored, again);
    return rc;
}
