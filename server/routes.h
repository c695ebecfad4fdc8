/* routes — the table of every served endpoint: method, path pattern with
 * {param} segments, handler, and what the life-cycle must do around it.
 * The same table answers 404 and 405 (with Allow), labels metrics, and is
 * printed by `blindspotd --routes` for the check against api/openapi.yaml. */
#ifndef BS_SERVER_ROUTES_H
#define BS_SERVER_ROUTES_H

#include "server/auth.h"
#include "server/handler.h"

#include <stdio.h>

enum {
    ROUTE_BEFORE_READY = 1, /* served while models are still loading */
    ROUTE_POOLED = 2,       /* may defer to the pool or make a job: ?timeout= applies */
    ROUTE_FORM = 4,         /* takes multipart/form-data bodies */
    ROUTE_QUERY_TOKEN = 8,  /* the token may come as ?access_token= (EventSource sends no
                               headers) */
};

/* A route's scope besides the AUTH_* bits (auth.h) and ROUTE_OPEN. */
enum {
    ROUTE_OPEN = 0,               /* no token needed: health, the studio's files */
    ROUTE_SCOPE_JOB = 0x100,      /* the scope of the kind of the job {id} names */
    ROUTE_SCOPE_METRICS = 0x200,  /* open, or admin under --metrics-auth */
};

typedef struct route {
    const char *method;
    const char *pattern; /* "/v2/models/{name}/infer" */
    http_handler handler;
    int flags;
    unsigned scope;      /* what a token needs with --auth-tokens: an AUTH_* bit, or above */
} route;

/* The route label for metrics and logs of paths that match no route. */
#define ROUTE_UNMATCHED "other"

/* Finds the route for method and path. Returns it and stores the {param}
 * values (copied into buf, bufsize bytes) in req->params; or NULL with
 * *status 404 (no such path) or 405 (path served, method not: allow gets
 * the served methods, comma-separated). HEAD matches GET routes. */
const route *route_match(const char *method, const char *path, http_request *req,
                         char *buf, size_t bufsize, int *status, char *allow,
                         size_t allowlen);

/* Prints "METHOD /pattern" lines, one per route and method (HEAD beside
 * every GET). */
void routes_print(FILE *out);

/* Handlers, by file. */
handler_result assets_get(server *, const http_request *, http_response *, http_work *);
handler_result v2_live(server *, const http_request *, http_response *, http_work *);
handler_result v2_ready(server *, const http_request *, http_response *, http_work *);
handler_result v2_server(server *, const http_request *, http_response *, http_work *);
handler_result v2_model(server *, const http_request *, http_response *, http_work *);
handler_result v2_model_ready(server *, const http_request *, http_response *, http_work *);
handler_result v2_infer(server *, const http_request *, http_response *, http_work *);
handler_result v2_stats(server *, const http_request *, http_response *, http_work *);
handler_result catalog_models(server *, const http_request *, http_response *, http_work *);
handler_result catalog_model(server *, const http_request *, http_response *, http_work *);
handler_result catalog_datasets(server *, const http_request *, http_response *, http_work *);
handler_result catalog_sample(server *, const http_request *, http_response *, http_work *);
handler_result analysis_lipschitz(server *, const http_request *, http_response *, http_work *);
handler_result analysis_units(server *, const http_request *, http_response *, http_work *);
handler_result predict_create(server *, const http_request *, http_response *, http_work *);
handler_result attacks_create(server *, const http_request *, http_response *, http_work *);
handler_result evaluations_create(server *, const http_request *, http_response *, http_work *);
handler_result jobs_get(server *, const http_request *, http_response *, http_work *);
handler_result jobs_events(server *, const http_request *, http_response *, http_work *);
handler_result jobs_cancel(server *, const http_request *, http_response *, http_work *);
handler_result metrics_scrape(server *, const http_request *, http_response *, http_work *);
handler_result repository_index(server *, const http_request *, http_response *, http_work *);
handler_result repository_load(server *, const http_request *, http_response *, http_work *);
handler_result repository_unload(server *, const http_request *, http_response *, http_work *);

#endif
