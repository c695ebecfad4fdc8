/* handler — the contract between the request life-cycle (http.c) and the
 * endpoint handlers (v2.c, catalog.c, attacks.c, ...).
 *
 * A handler gets a parsed request and either fills in a response at once
 * (HANDLER_ANSWERED) or describes work for the worker pool, whose run
 * function fills in the response on a worker thread: for this request
 * (HANDLER_DEFERRED, the connection waits), or as an asynchronous job
 * (HANDLER_ASYNC: answered 202 at once, the response kept as the job's
 * result; see jobs.h). A handler may also park the request until an event
 * (HANDLER_PARKED: GET /v1/jobs/{id}?wait=S waits for the job to end):
 * the connection waits and whoever it is parked with runs the work's run
 * on its own thread when the event comes. A handler may also answer with
 * a stream (HANDLER_STREAM: server-sent events), whose body http.c reads
 * piece by piece from work->stream, suspending the connection while
 * nothing is ready. Handlers never see
 * libmicrohttpd; http.c never sees an endpoint's meaning. The helpers
 * below build the JSON answers and the errors, whose codes and statuses
 * come from one table (api/errors.h): on /v1 {"error": {"code":
 * "snake_case", "message": "..."}}, on /v2 the Open Inference Protocol's
 * {"error": "...", "code": "snake_case"}. */
#ifndef BS_SERVER_HANDLER_H
#define BS_SERVER_HANDLER_H

#include "server/config.h"
#include "server/metrics.h"
#include "server/pool.h"
#include "server/registry.h"

#include "api/errors.h"
#include "api/tensor_json.h"
#include "core/control.h" /* bs_control */

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_PARAMS 4         /* {name} segments in a route */
#define HTTP_MAX_QUERY 16         /* query arguments kept */
#define HTTP_MAX_HEADERS 12       /* extra response headers */
#define HTTP_RETRY_AFTER "1"      /* seconds, on every 503 (and 429 unless told) */
#define HTTP_CLIENT_LEN 80        /* http_request.client */

/* What every handler may read: settings, resident models, the pool. */
typedef struct server {
    const config *cfg;
    registry reg;            /* valid once ready is set; its models are read
                                through a request's models, not directly */
    pool *pool;              /* valid once ready is set */
    struct jobs *jobs;       /* the asynchronous jobs; valid once ready is set */
    struct auth *auth;       /* the access tokens (auth.h); none: every request passes */
    struct quota *quota;     /* per-client rate limits and caps (quota.h) */
    metrics *metrics;
    atomic_int ready;        /* 1 once models and datasets are loaded */
    atomic_int draining;     /* 1 once shutdown began */
    atomic_int active;       /* requests between arrival and completion */
} server;

typedef struct http_kv {
    const char *key, *value;
} http_kv;

/* One field of a multipart/form-data body. */
typedef struct http_part {
    char *name;
    char *filename;      /* NULL for plain fields */
    char *content_type;  /* NULL when the part has none */
    uint8_t *data;       /* len bytes, NUL-terminated for convenience */
    size_t len;
} http_part;

typedef struct http_request {
    const char *method;                 /* HEAD is routed as GET */
    const char *path;                   /* decoded, without the query */
    const char *params[HTTP_MAX_PARAMS]; /* the route's {param} values, in order */
    int n_params;
    http_kv query[HTTP_MAX_QUERY];
    int n_query;
    const char *content_type;           /* NULL when absent */
    const char *accept;                 /* NULL when absent */
    const uint8_t *body;                /* raw body (not for multipart) */
    size_t body_len;
    int multipart;                      /* body came as multipart/form-data */
    const http_part *parts;
    int n_parts;
    const char *request_id;
    /* who sent it, the key of quotas and of a job's owner: "addr:" and
     * the peer's IP address (no port), or "token:" and the client's name
     * once a bearer token has been accepted */
    char client[HTTP_CLIENT_LEN];
    double arrival;                     /* bs_now() at the headers */
    double timeout;                     /* ?timeout= seconds on pooled routes; 0: none */
    /* any request header by name (case-insensitive), NULL when absent;
     * read through req_header */
    const char *(*header)(const void *conn, const char *name);
    const void *conn;
    /* the model set current when the request was dispatched (NULL before
     * ready), held until the request ends; work that outlives the request
     * (an asynchronous job) holds it too. Handlers find models here. */
    registry_set *models;
} http_request;

typedef struct http_header {
    char name[48];
    char value[208];
} http_header;

typedef struct http_response {
    int status;
    const char *content_type;   /* a static string */
    char *body;                 /* malloc'd, body_len bytes; owned */
    size_t body_len;
    http_header headers[HTTP_MAX_HEADERS];
    int n_headers;
    char model[REGISTRY_NAME_LEN]; /* the model concerned, for the log line */
    int oip_errors;             /* errors in the Open Inference Protocol's shape (/v2) */
} http_response;

/* A body made while it is sent (HANDLER_STREAM). read and wait are
 * called on an HTTP thread and never block; free once the connection is
 * over (or at once for HEAD), whether or not the stream ended. */
typedef struct http_stream {
    /* Up to max bytes of the stream into buf: their number; 0 when nothing
     * is ready now (the connection is suspended and wait called); -1 at
     * the end of the stream. */
    long (*read)(void *ctx, char *buf, size_t max);
    /* Calls wake(arg) once, on any thread, when read has something again
     * (or the stream ends, or the client on socket fd hung up). */
    void (*wait)(void *ctx, int fd, void (*wake)(void *arg), void *arg);
    void (*free)(void *ctx);
    void *ctx;
} http_stream;

/* Work for a worker: run fills out (status, body, headers). ctl holds the
 * deadline (a bs_now() time) and the cancel flag, raised when the client
 * hangs up, the drain time runs out or the job is cancelled; its progress
 * callback is set for asynchronous jobs (NULL otherwise) and may be handed
 * to the attack core as it is. A run on a worker may hold its pool job
 * (pool_hold) and fill out later, until pool_release; ctl and out stay
 * valid until then. free releases ctx once the work is over, whether or
 * not run was called. */
typedef struct http_work {
    void (*run)(void *ctx, pool_worker *w, const bs_control *ctl,
                http_response *out);
    void (*free)(void *ctx);
    void *ctx;
    double deadline;  /* preset from --timeout and ?timeout=; a handler may lower it
                         (an asynchronous job starts from jobs_deadline instead) */
    const char *kind; /* what the work is ("inference", "attack", "evaluation"): names an
                         asynchronous job, labels the work series of /metrics */
    int quick;        /* run takes well under a millisecond: it may run on the HTTP
                         thread when the queue is empty (pool_run_inline) */
    /* HANDLER_PARKED: hands job (its run calls this work's run, its done
     * answers) to whoever calls run then done, exactly once each, with
     * the POOL_RAN verdict; called once the connection is suspended. */
    void (*park)(void *ctx, pool_job *job);
    http_stream stream; /* HANDLER_STREAM: the body after resp's status and headers */
    char callback[OUTBOUND_URL_MAX]; /* HANDLER_ASYNC: the webhook's URL, checked by the
                                        guard (jobs_take_callback); "" for none */
} http_work;

typedef enum handler_result {
    HANDLER_ANSWERED, /* resp holds the answer */
    HANDLER_DEFERRED, /* run work on the pool, then answer with its response */
    HANDLER_ASYNC,    /* run work as a job; answer 202 with its location now */
    HANDLER_PARKED,   /* wait for an event (work->park), then answer with run's response */
    HANDLER_STREAM,   /* resp's status and headers now, then work->stream as the body */
} handler_result;

typedef handler_result (*http_handler)(server *srv, const http_request *req,
                                       http_response *resp, http_work *work);

/* Wraps *work so that it holds a reference to models (the model set of
 * the request that made it; NULL: none) until its free: an asynchronous
 * job outlives its request, and the models its ctx points into must stay
 * whatever reloads happen meanwhile. 0, or -1 when memory runs out (work
 * is left as it was). */
int work_hold_models(http_work *work, registry_set *models);
/* The work as its handler described it, seen through work_hold_models'
 * wrapping. */
const http_work *work_unwrapped(const http_work *work);

/* Sets status and a JSON body (compact; reals with 9 significant digits,
 * enough to give back every float exactly). Takes the reference to body. */
void resp_json(http_response *r, int status, json_t *body);
/* v as JSON text (malloc'd), or NULL when memory ran out. Use it rather
 * than json_dumps: Jansson 2.14 leaves some of its writes unchecked (an
 * object's keys), and json_dumps then returns a corrupt document instead
 * of NULL when an allocation fails. */
char *text_of_json(const json_t *v, size_t flags);
/* The error answer of code (its status from api/errors.h), in the shape of
 * r->oip_errors, with a message formatted like printf; 503s and 429s
 * carry Retry-After (HTTP_RETRY_AFTER; see resp_retry_after). */
void resp_error(http_response *r, bs_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets Retry-After to seconds rounded up (at least 1), replacing the one
 * resp_error put there. */
void resp_retry_after(http_response *r, double seconds);
/* Adds a response header (formatted value). */
void resp_header(http_response *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes a malloc'd body of len bytes with a static content type. */
void resp_bytes(http_response *r, int status, const char *content_type, char *body,
                size_t len);
/* Releases the body. */
void resp_clear(http_response *r);

/* The request header name (case-insensitive), or NULL. */
const char *req_header(const http_request *req, const char *name);
/* The query argument key, or NULL. */
const char *req_query(const http_request *req, const char *key);
/* Non-zero when the request's media type (before any ';') is type. */
int req_content_type_is(const http_request *req, const char *type);
/* Parses the body as a JSON object. On failure fills resp (415 for another
 * media type than application/json, 400 for an empty or invalid body or
 * a non-object) and returns NULL. A missing Content-Type counts as JSON. */
json_t *req_json_object(const http_request *req, http_response *resp);
/* The same for a KServe v2 inference request, with inputs[0].data read
 * straight into floats when it is an array of numbers (see
 * api/tensor_json.h): then tensor->values holds them (the caller frees
 * it) and the document has an empty array in their place; otherwise
 * tensor->values is NULL and the data is in the document as sent. */
json_t *req_json_tensor_object(const http_request *req, http_response *resp,
                               bs_tensor_data *tensor);

/* Reads a JSON number into a double, refusing other types. */
int json_number_value_ok(const json_t *v, double *out);

/* The resident model the route's first parameter names, recorded in resp
 * for the log line; NULL after a 404 in resp. */
const registry_model *req_route_model(server *srv, const http_request *req,
                                      http_response *resp);
/* The model named name in the request's set, recorded in resp for the log
 * line; NULL after a 404 in resp. */
const registry_model *req_model(const http_request *req, const char *name,
                                http_response *resp);
/* The dataset split a request names for model rm: dataset (NULL: the
 * model's own when it is loaded, else mnist) and split. The test split of
 * a P1/P2 half of a dataset is that dataset's; its train split is not
 * loaded. NULL after a 404 in resp, or a 422 when its samples are not the
 * model's input. */
const registry_split *req_dataset_split(server *srv, const registry_model *rm,
                                        const char *dataset, const char *split,
                                        http_response *resp);
/* An optional whole number field key of a JSON body, in [lo, hi], into
 * *out (left alone when the field is absent). 0, or -1 after a 400 or 422
 * in resp. */
int req_body_int(const json_t *root, const char *key, long long lo, long long hi,
                 long long *out, http_response *resp);
/* The same, NULL with the message in err (char[BS_ERR_LEN]) rather than
 * an answer. */
const registry_split *req_dataset_split_find(server *srv, const bs_model *m,
                                             const char *dataset, const char *split, char *err);
/* Lowers work->deadline to the body's "timeout" (seconds from the
 * request's arrival) when it has one. Returns 0, or -1 after a 400. */
int req_body_timeout(const json_t *root, const http_request *req, http_work *work,
                     http_response *resp);

#endif
