/* client — the daemon's API over libcurl; see client.h. */
#include "api/client.h"

#include <curl/curl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int bs_client_init(bs_client *c, const char *url, const char *token, char *err)
{
    memset(c, 0, sizeof *c);
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
        snprintf(err, BS_ERR_LEN, "the server URL must start with http:// or https://, not '%.100s'",
                 url);
        return -1;
    }
    snprintf(c->url, sizeof c->url, "%s", url);
    size_t n = strlen(c->url);
    while (n && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    if (token && *token)
        snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", token);
    const char *ca = getenv("BLINDSPOT_CACERT");
    if (!ca || !*ca)
        ca = getenv("CURL_CA_BUNDLE");
    if (ca && *ca)
        snprintf(c->cainfo, sizeof c->cainfo, "%s", ca);
    /* libcurl's global state is made once per process, before any thread */
    static int ready;
    if (!ready && curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK)
        ready = 1;
    c->curl = ready ? curl_easy_init() : NULL;
    if (!c->curl) {
        snprintf(err, BS_ERR_LEN, "libcurl cannot start");
        return -1;
    }
    return 0;
}

void bs_client_free(bs_client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

typedef struct buffer {
    char *data;
    size_t len;
    int failed;
} buffer;

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
    buffer *b = ctx;
    size_t add = size * n;
    char *nd = realloc(b->data, b->len + add + 1);
    if (!nd) {
        b->failed = 1;
        return 0;
    }
    memcpy(nd + b->len, p, add);
    b->len += add;
    nd[b->len] = '\0';
    b->data = nd;
    return add;
}

/* The message of an error answer in either shape, else the body's start. */
static void error_message(const char *body, long status, char *err)
{
    json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
    const json_t *e = json_object_get(doc, "error");
    const char *msg = json_is_string(e) ? json_string_value(e)
                                        : json_string_value(json_object_get(e, "message"));
    if (msg)
        snprintf(err, BS_ERR_LEN, "%s", msg);
    else
        snprintf(err, BS_ERR_LEN, "the server answered %ld: %.160s", status,
                 body && *body ? body : "(no body)");
    json_decref(doc);
}

json_t *bs_client_call(bs_client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len, long *status,
                       char *err)
{
    CURL *h = c->curl;
    char url[2048], type[160];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    struct curl_slist *headers = NULL;
    if (c->auth[0])
        headers = curl_slist_append(headers, c->auth);
    if (body) {
        snprintf(type, sizeof type, "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, type);
    }
    headers = curl_slist_append(headers, "Accept: application/json");
    buffer b = {0};
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (c->cainfo[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cainfo);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    if (c->timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    long code = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (status)
        *status = code;
    json_t *doc = NULL;
    if (rc != CURLE_OK)
        snprintf(err, BS_ERR_LEN, "cannot reach the server at %s: %s", c->url,
                 curl_easy_strerror(rc));
    else if (b.failed)
        snprintf(err, BS_ERR_LEN, "out of memory reading the answer of %s", url);
    else if (code < 200 || code > 299)
        error_message(b.data, code, err);
    else if (!(doc = b.data ? json_loads(b.data, 0, NULL) : NULL))
        snprintf(err, BS_ERR_LEN, "%s answered %ld with something that is not JSON", url, code);
    free(b.data);
    return doc;
}

json_t *bs_client_job(bs_client *c, const char *path, const json_t *body,
                      bs_client_progress_fn progress, void *ctx, char *err)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        return NULL;
    }
    long status;
    json_t *made = bs_client_call(c, "POST", path, "application/json", text, strlen(text),
                                  &status, err);
    free(text);
    if (!made)
        return NULL;
    char location[512], read[540];
    const char *loc = json_string_value(json_object_get(made, "location"));
    snprintf(location, sizeof location, "%s", loc ? loc : "");
    /* each read blocks until the job ends or BS_CLIENT_WAIT seconds pass */
    snprintf(read, sizeof read, "%s?wait=%d", location, BS_CLIENT_WAIT);
    json_decref(made);
    if (status != 202 || !loc) {
        snprintf(err, BS_ERR_LEN, "%s answered %ld without a job's location", path, status);
        return NULL;
    }
    int done = -1, total = -1;
    for (;;) {
        json_t *job = bs_client_call(c, "GET", read, NULL, NULL, 0, NULL, err);
        if (!job)
            return NULL;
        const char *state = json_string_value(json_object_get(job, "state"));
        const json_t *p = json_object_get(job, "progress");
        int d = (int)json_integer_value(json_object_get(p, "done"));
        int t = (int)json_integer_value(json_object_get(p, "total"));
        /* from the first finished unit, as a local run reports */
        if (progress && d > 0 && (d != done || t != total))
            progress(ctx, d, t);
        done = d;
        total = t;
        if (state && !strcmp(state, "done")) {
            json_t *result = json_incref(json_object_get(job, "result"));
            json_decref(job);
            if (!result)
                snprintf(err, BS_ERR_LEN, "the job at %s ended without a result", location);
            return result;
        }
        json_t *partial = json_object_get(job, "result");
        if (state && !strcmp(state, "failed") && json_is_object(partial)) {
            /* work that ran out of time with results so far (an attack's
             * best): those, their "error" saying why, as a run here prints
             * them */
            json_incref(partial);
            json_decref(job);
            return partial;
        }
        if (!state || !strcmp(state, "failed") || !strcmp(state, "cancelled")) {
            const char *msg = json_string_value(
                json_object_get(json_object_get(job, "error"), "message"));
            snprintf(err, BS_ERR_LEN, "%s", msg ? msg : "the job was cancelled");
            json_decref(job);
            return NULL;
        }
        json_decref(job);
    }
}
