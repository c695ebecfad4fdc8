/* routes — the route table and the path matcher; see routes.h. */
#include "server/routes.h"

#include <string.h>

/* Scopes: health and the studio's files (no data in them) are open; reads
 * of models and datasets, inference and predictions need infer; attacks
 * attack; evaluations and the analyses evaluate; the repository admin; a
 * job the scope of its kind. */
static const route table[] = {
    {"GET", "/v2/health/live", v2_live, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/v2/health/ready", v2_ready, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/v2", v2_server, ROUTE_BEFORE_READY, AUTH_INFER},
    {"GET", "/v2/", v2_server, ROUTE_BEFORE_READY, AUTH_INFER},
    /* before /v2/models/{name}, which would take "stats" for a name */
    {"GET", "/v2/models/stats", v2_stats, 0, AUTH_INFER},
    {"GET", "/v2/models/{name}", v2_model, 0, AUTH_INFER},
    {"GET", "/v2/models/{name}/ready", v2_model_ready, ROUTE_BEFORE_READY, AUTH_INFER},
    {"POST", "/v2/models/{name}/infer", v2_infer, ROUTE_POOLED, AUTH_INFER},
    {"GET", "/v2/models/{name}/versions/{version}", v2_model, 0, AUTH_INFER},
    {"GET", "/v2/models/{name}/versions/{version}/ready", v2_model_ready, ROUTE_BEFORE_READY,
     AUTH_INFER},
    {"POST", "/v2/models/{name}/versions/{version}/infer", v2_infer, ROUTE_POOLED, AUTH_INFER},
    {"GET", "/v2/models/{name}/stats", v2_stats, 0, AUTH_INFER},
    {"GET", "/v2/models/{name}/versions/{version}/stats", v2_stats, 0, AUTH_INFER},
    {"POST", "/v2/repository/index", repository_index, 0, AUTH_ADMIN},
    {"POST", "/v2/repository/models/{name}/load", repository_load, 0, AUTH_ADMIN},
    {"POST", "/v2/repository/models/{name}/unload", repository_unload, 0, AUTH_ADMIN},
    {"GET", "/v1/models", catalog_models, 0, AUTH_INFER},
    {"GET", "/v1/models/{name}", catalog_model, 0, AUTH_INFER},
    {"GET", "/v1/datasets", catalog_datasets, 0, AUTH_INFER},
    {"GET", "/v1/datasets/{name}/{split}/{index}", catalog_sample, 0, AUTH_INFER},
    {"GET", "/v1/models/{name}/lipschitz", analysis_lipschitz, ROUTE_POOLED, AUTH_EVALUATE},
    {"POST", "/v1/models/{name}/units", analysis_units, ROUTE_POOLED, AUTH_EVALUATE},
    {"POST", "/v1/models/{name}/predict", predict_create, ROUTE_POOLED | ROUTE_FORM, AUTH_INFER},
    {"POST", "/v1/attacks", attacks_create, ROUTE_POOLED | ROUTE_FORM, AUTH_ATTACK},
    {"POST", "/v1/evaluations", evaluations_create, ROUTE_POOLED, AUTH_EVALUATE},
    {"GET", "/v1/jobs/{id}", jobs_get, 0, ROUTE_SCOPE_JOB},
    {"DELETE", "/v1/jobs/{id}", jobs_cancel, 0, ROUTE_SCOPE_JOB},
    {"GET", "/v1/jobs/{id}/events", jobs_events, ROUTE_QUERY_TOKEN, ROUTE_SCOPE_JOB},
    {"GET", "/metrics", metrics_scrape, ROUTE_BEFORE_READY, ROUTE_SCOPE_METRICS},
    {"GET", "/openapi.yaml", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/ui", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/paper", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/docs", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
    {"GET", "/studio/{file}", assets_get, ROUTE_BEFORE_READY, ROUTE_OPEN},
};
#define N_ROUTES (sizeof table / sizeof table[0])

/* Matches path against pattern segment by segment; {x} takes one non-empty
 * segment, copied into buf. Returns the number of params, or -1. */
static int match(const char *pattern, const char *path, const char **params, char *buf,
                 size_t bufsize)
{
    int n = 0;
    size_t used = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return -1;
        p++;
        s++;
        size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
        if (*p == '{') {
            if (slen == 0 || n == HTTP_MAX_PARAMS || used + slen + 1 > bufsize)
                return -1;
            memcpy(buf + used, s, slen);
            buf[used + slen] = '\0';
            params[n++] = buf + used;
            used += slen + 1;
        } else if (plen != slen || strncmp(p, s, plen) != 0) {
            return -1;
        }
        p += plen;
        s += slen;
    }
    return *p || *s ? -1 : n;
}

const route *route_match(const char *method, const char *path, http_request *req,
                         char *buf, size_t bufsize, int *status, char *allow,
                         size_t allowlen)
{
    const char *m = strcmp(method, "HEAD") ? method : "GET";
    int path_known = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < N_ROUTES; i++) {
        const char *params[HTTP_MAX_PARAMS];
        int n = match(table[i].pattern, path, params, buf, bufsize);
        if (n < 0)
            continue;
        if (!strcmp(table[i].method, m)) {
            req->n_params = n;
            memcpy(req->params, params, (size_t)n * sizeof *params);
            return &table[i];
        }
        if (!strstr(allow, table[i].method)) {
            size_t len = strlen(allow);
            snprintf(allow + len, allowlen - len, "%s%s", len ? ", " : "", table[i].method);
            if (!strcmp(table[i].method, "GET") && !strstr(allow, "HEAD")) {
                len = strlen(allow);
                snprintf(allow + len, allowlen - len, ", HEAD");
            }
        }
        path_known = 1;
    }
    *status = path_known ? 405 : 404;
    return NULL;
}

void routes_print(FILE *out)
{
    for (size_t i = 0; i < N_ROUTES; i++) {
        fprintf(out, "%s %s\n", table[i].method, table[i].pattern);
        if (!strcmp(table[i].method, "GET")) /* route_match serves HEAD as GET */
            fprintf(out, "HEAD %s\n", table[i].pattern);
    }
}
