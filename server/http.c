/* http — the request life-cycle on libmicrohttpd; see http.h.
 *
 * libmicrohttpd calls on_request several times per request: once when the
 * headers are in (*req_cls is still NULL: make the state, name the client,
 * route, and refuse early what can be refused before reading the body: a
 * foreign origin, a client over its quota), once per piece of
 * body (accumulate it under the cap, or feed the multipart parser), and
 * once when the request is complete (call the handler). Work for the pool
 * is queued with the connection suspended; the job's done callback stores
 * the answer and resumes the connection, and libmicrohttpd calls on_request
 * once more, which queues the answer; quick work (a small inference) runs
 * on the spot instead when nothing waits in the queue (pool_run_inline),
 * and is answered at once. Work that runs as an asynchronous
 * job is handed to the job table instead and answered 202 at once; a
 * parked request (a wait for a job to end) is suspended the same way and
 * resumed by the job table's watcher. A streamed answer (server-sent
 * events) is a callback response whose reader suspends the connection
 * when the stream has nothing yet and is resumed by the stream's wake.
 * on_completed logs, counts, gives the request back to its client's quota
 * and frees.
 *
 * Before all that, as soon as the request line is in, on_uri makes the
 * request's state and looks at the raw URI (its length, and control
 * characters escaped in its path, which decoding would cut or keep); and
 * each connection has an entry in the deadlines watcher (deadlines.h),
 * told here which phase the connection is in. */
#include "server/http.h"

#include "core/control.h" /* bs_now */
#include "server/auth.h"
#include "server/cors.h"
#include "server/deadlines.h"
#include "server/jobs.h"
#include "server/quota.h"
#include "server/routes.h"
#include "server/tls.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct http_server {
    server *srv;
    struct MHD_Daemon *daemon;
    MHD_socket listen_fd; /* kept after quiesce until stop, as the API asks */
    int loopback;         /* listening on a loopback address: loopback Host names only */
    int tls;              /* serving HTTPS (tls.h holds the certificate) */
    deadlines *deadlines; /* head and body deadlines of every connection */
    /* the answer to a request whose state cannot be allocated, made at
     * start (a 500 out_of_memory document) and queued as it is */
    struct MHD_Response *out_of_memory;
};

/* The longest request URI taken (path and query, as sent). Longer ones up
 * to what fits libmicrohttpd's per-connection buffer are answered 414
 * uri_too_long; longer still, libmicrohttpd answers 414 itself. */
#define HTTP_MAX_URI 8192

/* *req_cls of a request whose state could not be allocated: its body is
 * discarded and it is answered with out_of_memory. */
static char no_state;

/* Where a request is in its life. */
typedef enum phase {
    PHASE_READING,  /* headers seen, body arriving */
    PHASE_QUEUED,   /* handed to the pool, connection suspended */
    PHASE_DONE,     /* the pool answered; the connection was resumed */
    PHASE_ANSWERED, /* response queued with libmicrohttpd */
} phase;

typedef struct request_state {
    server *srv;
    const http_server *http;
    struct MHD_Connection *conn; /* NULL until the headers are in */
    deadline_conn *watch;        /* the connection's deadlines; NULL: not watched */
    int bad_path;                /* the raw path escapes a control character */
    int long_uri;                /* the raw URI is over HTTP_MAX_URI */
    phase phase;
    const route *route;         /* NULL when the path matched no route */
    http_request req;
    char params_buf[512];
    char request_id[104];
    char path[256];             /* for the log line, sanitised */
    char method[16];
    /* body */
    uint64_t received;          /* bytes of body seen, counted even when dropped */
    int too_large;              /* over --max-body: the rest is discarded, then 413 */
    uint8_t *body;
    size_t body_len, body_cap;
    struct MHD_PostProcessor *form;
    http_part *parts;
    int n_parts, parts_cap;
    int form_failed;            /* 1: out of memory, 2: malformed form */
    int refused;                /* resp holds an answer decided from the headers */
    int quota_held;             /* admitted by the client's quota: released at the end */
    const char *cors_origin;    /* an allowed other origin: its answer gets CORS headers */
    /* compute */
    http_work work;
    pool_job job;
    bs_control ctl;             /* the work's, until the job ends (the run may hold it) */
    double started;             /* bs_now() when its run began; 0: not run */
    /* the answer */
    http_response resp;
    size_t sent_len;
} request_state;

/* Made request ids start from this, set before the polling threads start. */
static unsigned long long id_seed;

/* ---- small helpers ---------------------------------------------------- */

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* req_header's way in, so that handlers need not see libmicrohttpd. */
static const char *request_header(const void *conn, const char *name)
{
    return header((struct MHD_Connection *)conn, name);
}

/* A client's X-Request-Id is echoed when it is 1-100 visible ASCII
 * characters; otherwise one is made. */
static void set_request_id(request_state *st)
{
    const char *id = header(st->conn, "X-Request-Id");
    size_t n = id ? strlen(id) : 0;
    int ok = n > 0 && n <= 100;
    for (size_t i = 0; ok && i < n; i++)
        ok = id[i] > ' ' && id[i] < 0x7f;
    if (ok) {
        memcpy(st->request_id, id, n + 1);
        return;
    }
    static atomic_ullong counter;
    unsigned long long seed = id_seed;
    /* splitmix64 of a counter: unique within a run, unpredictable enough
     * to tell runs apart in a shared log. */
    unsigned long long z = seed + 0x9e3779b97f4a7c15ULL * (atomic_fetch_add(&counter, 1) + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    snprintf(st->request_id, sizeof st->request_id, "%016llx", z);
}

/* The client of a connection as http_request.client has it: "addr:" and
 * the peer's IP address, an IPv4-mapped IPv6 one written as IPv4. */
static void set_client(request_state *st)
{
    char ip[INET6_ADDRSTRLEN] = "unknown";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            inet_ntop(AF_INET, &a6->s6_addr[12], ip, sizeof ip);
        else
            inet_ntop(AF_INET6, a6, ip, sizeof ip);
    }
    snprintf(st->req.client, sizeof st->req.client, "addr:%s", ip);
}

/* Copies s for the log line with anything unprintable (or a space, which
 * would split the field) replaced, so a client cannot forge log lines. */
static void sanitise(char *dst, size_t size, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < size; s++)
        dst[i++] = (*s > ' ' && *s < 0x7f) ? *s : '?';
    dst[i] = '\0';
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    http_request *req = cls;
    if (req->n_query == HTTP_MAX_QUERY)
        return MHD_NO;
    req->query[req->n_query].key = key;
    req->query[req->n_query].value = value;
    req->n_query++;
    return MHD_YES;
}

/* Adds st->resp's headers to mr and queues it. */
static enum MHD_Result queue_response(request_state *st, struct MHD_Response *mr)
{
    http_response *r = &st->resp;
    if (st->watch && deadlines_busy(st->http->deadlines, st->watch)) {
        MHD_destroy_response(mr);
        return MHD_NO; /* a 408 went out instead */
    }
    if (r->content_type)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(mr, "X-Request-Id", st->request_id);
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
    if (st->cors_origin) {
        MHD_add_response_header(mr, "Access-Control-Allow-Origin", st->cors_origin);
        MHD_add_response_header(mr, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
        MHD_add_response_header(mr, "Vary", "Origin");
    }
    if (atomic_load(&st->srv->draining))
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(st->conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    st->phase = PHASE_ANSWERED;
    return ret;
}

/* Hands st->resp to libmicrohttpd. */
static enum MHD_Result answer(request_state *st)
{
    http_response *r = &st->resp;
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
    if (!mr)
        return MHD_NO;
    st->sent_len = r->body_len;
    r->body = NULL; /* libmicrohttpd frees it now */
    return queue_response(st, mr);
}

/* ---- streamed answers ------------------------------------------------- */

static void stream_wake(void *arg)
{
    request_state *st = arg;
    MHD_resume_connection(st->conn);
}

/* libmicrohttpd's content reader: nothing ready suspends the connection
 * until the stream wakes it (returning 0 without suspending would spin). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    request_state *st = cls;
    http_stream *s = &st->work.stream;
    long n = s->read(s->ctx, buf, max);
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n > 0) {
        st->sent_len += (size_t)n;
        return n;
    }
    MHD_suspend_connection(st->conn);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->wait(s->ctx, ci ? ci->connect_fd : -1, stream_wake, st);
    return 0;
}

/* Hands st->resp's status and headers to libmicrohttpd with the stream as
 * the body (chunked, its length unknown); HEAD gets no body. */
static enum MHD_Result answer_stream(request_state *st)
{
    if (!strcmp(st->method, "HEAD")) {
        st->work.stream.free(st->work.stream.ctx);
        st->work.stream.free = NULL;
        return answer(st);
    }
    struct MHD_Response *mr =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, NULL);
    return mr ? queue_response(st, mr) : MHD_NO;
}

static enum MHD_Result answer_error(request_state *st, bs_error_code code, const char *msg)
{
    resp_error(&st->resp, code, "%s", msg);
    return answer(st);
}

/* Refuses the request from its headers alone. With a body on its way the
 * answer goes out at once and libmicrohttpd closes the connection rather
 * than read the body; without one it waits for the (immediate) end of the
 * request, so that the connection stays open for the next request. */
static enum MHD_Result refuse_with(request_state *st)
{
    const char *cl = header(st->conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int body = header(st->conn, MHD_HTTP_HEADER_TRANSFER_ENCODING) || (cl && strcmp(cl, "0"));
    if (body)
        return answer(st);
    st->refused = 1;
    return MHD_YES;
}

/* Refuses the request from its headers alone with an error of code. */
static enum MHD_Result refuse(request_state *st, bs_error_code code, const char *msg)
{
    resp_error(&st->resp, code, "%s", msg);
    return refuse_with(st);
}

/* ---- who asks ---------------------------------------------------------- */

/* The scope the request needs with tokens on (0: none). A job's route
 * needs the scope of the job's kind when the job is the caller's; an id
 * the caller cannot see needs nothing more, and its handler answers 404
 * as for an unknown one, so that a 403 does not tell that the job exists. */
static unsigned needed_scope(request_state *st, const char *client)
{
    unsigned scope = st->route->scope;
    if (scope == ROUTE_SCOPE_METRICS)
        return st->srv->cfg->metrics_auth ? AUTH_ADMIN : ROUTE_OPEN;
    if (scope != ROUTE_SCOPE_JOB)
        return scope;
    char kind[32];
    if (!atomic_load(&st->srv->ready) ||
        jobs_kind_of(st->srv->jobs, st->req.params[0], client, kind, sizeof kind))
        return ROUTE_OPEN;
    return auth_scope_of_kind(kind);
}

/* With --auth-tokens: the token from Authorization (or ?access_token= on
 * the routes that take it), checked before the body is read and before
 * any work. Returns 0 to go on (req->client then names the token's
 * client), or 1 once the refusal is in hand (*ret holds what to return). */
static int authenticate(request_state *st, enum MHD_Result *ret)
{
    server *srv = st->srv;
    if (!srv->auth || auth_count(srv->auth) == 0 || st->route->scope == ROUTE_OPEN ||
        (st->route->scope == ROUTE_SCOPE_METRICS && !srv->cfg->metrics_auth))
        return 0;
    const char *token = auth_bearer(header(st->conn, MHD_HTTP_HEADER_AUTHORIZATION));
    if (!token && (st->route->flags & ROUTE_QUERY_TOKEN))
        token = req_query(&st->req, "access_token");
    char client[AUTH_CLIENT_LEN] = "";
    /* The token's client first (any scope will do), so that a job's scope
     * is looked up among that client's jobs. */
    auth_verdict v = auth_check(srv->auth, token, 0, client);
    unsigned scope = v == AUTH_OK ? needed_scope(st, client) : 0;
    if (v == AUTH_OK && scope)
        v = auth_check(srv->auth, token, scope, client);
    if (v == AUTH_OK) {
        snprintf(st->req.client, sizeof st->req.client, "%s", client);
        return 0;
    }
    if (v == AUTH_FORBIDDEN) {
        char msg[200];
        snprintf(st->req.client, sizeof st->req.client, "%s", client); /* for the log line */
        resp_header(&st->resp, "WWW-Authenticate",
                    AUTH_REALM ", error=\"insufficient_scope\", scope=\"%s\"",
                    auth_scope_name(scope));
        snprintf(msg, sizeof msg, "The token of client %.70s lacks the %s scope this request "
                 "needs.", client + 6, auth_scope_name(scope));
        *ret = refuse(st, BS_E_FORBIDDEN, msg);
        return 1;
    }
    if (v == AUTH_MISSING)
        resp_header(&st->resp, "WWW-Authenticate", AUTH_REALM);
    else
        resp_header(&st->resp, "WWW-Authenticate", AUTH_REALM ", error=\"invalid_token\"");
    *ret = refuse(st, BS_E_UNAUTHORIZED,
                  v == AUTH_MISSING
                      ? "This daemon needs an access token: send Authorization: Bearer TOKEN."
                      : "The access token is not one this daemon knows.");
    return 1;
}

/* Takes a compute request into its client's quota, or refuses it (429 with
 * Retry-After) from the headers, before any body is read or work queued. */
static enum MHD_Result admit(request_state *st)
{
    server *srv = st->srv;
    double retry = 1;
    quota_verdict v = quota_admit(srv->quota, st->req.client, st->req.arrival, &retry);
    if (v == QUOTA_ADMITTED) {
        st->quota_held = 1;
        return MHD_YES;
    }
    metrics_rate_limited(srv->metrics, v);
    if (v == QUOTA_RATE)
        resp_error(&st->resp, BS_E_RATE_LIMITED, "More than %g compute requests a second "
                   "(--rate-limit, bursts of %d) came from this client; retry in %.1f s.",
                   srv->cfg->rate_limit, srv->cfg->rate_burst, retry);
    else
        resp_error(&st->resp, BS_E_TOO_MANY_CLIENT_REQUESTS, "This client has %d compute "
                   "requests in flight (--max-client-work); retry when one is answered.",
                   srv->cfg->max_client_work);
    resp_retry_after(&st->resp, retry);
    return refuse_with(st);
}

/* ---- multipart/form-data ---------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static enum MHD_Result on_form_data(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data,
                                    uint64_t off, size_t size)
{
    (void)kind;
    (void)transfer_encoding;
    request_state *st = cls;
    if (!key) { /* libmicrohttpd could not keep the part's name */
        st->form_failed = 2;
        return MHD_NO;
    }
    http_part *p = st->n_parts ? &st->parts[st->n_parts - 1] : NULL;
    if (off == 0 || !p || strcmp(p->name, key) != 0) {
        if (st->n_parts == st->parts_cap) {
            int cap = st->parts_cap ? 2 * st->parts_cap : 8;
            http_part *np = realloc(st->parts, (size_t)cap * sizeof *np);
            if (!np)
                goto oom;
            st->parts = np;
            st->parts_cap = cap;
        }
        p = &st->parts[st->n_parts++];
        memset(p, 0, sizeof *p);
        p->name = strdup(key);
        p->filename = dup_or_null(filename);
        p->content_type = dup_or_null(content_type);
        p->data = malloc(1);
        if (!p->name || !p->data || (filename && !p->filename) ||
            (content_type && !p->content_type))
            goto oom;
        p->data[0] = '\0';
    }
    if (size) {
        uint8_t *nd = realloc(p->data, p->len + size + 1);
        if (!nd)
            goto oom;
        memcpy(nd + p->len, data, size);
        p->len += size;
        nd[p->len] = '\0';
        p->data = nd;
    }
    return MHD_YES;
oom:
    st->form_failed = 1;
    return MHD_NO;
}

static void free_parts(request_state *st)
{
    for (int i = 0; i < st->n_parts; i++) {
        free(st->parts[i].name);
        free(st->parts[i].filename);
        free(st->parts[i].content_type);
        free(st->parts[i].data);
    }
    free(st->parts);
    st->parts = NULL;
    st->n_parts = 0;
}

/* ---- the pool side ---------------------------------------------------- */

#define STATE_OF(job) ((request_state *)((char *)(job) - offsetof(request_state, job)))

/* Nothing is touched once run returns: a run that holds its job
 * (pool_hold) may have ended it, and the request with it. */
static void job_run(pool_job *job, pool_worker *w)
{
    request_state *st = STATE_OF(job);
    st->ctl = (bs_control){.deadline = job->deadline, .cancel = &job->cancel};
    st->started = bs_now();
    st->work.run(st->work.ctx, w, &st->ctl, &st->resp);
}

/* Queue and compute apart, per kind of work and model, for /metrics; once
 * the run's answer is made. */
static void record_work(request_state *st)
{
    if (st->work.kind && st->started > 0)
        metrics_work(st->srv->metrics, st->work.kind, st->resp.model, st->resp.status < 400,
                     st->started - st->req.arrival, bs_now() - st->started);
}

/* The answer for a job that did not run (any verdict but POOL_RAN). */
static void verdict_error(request_state *st, pool_verdict verdict)
{
    double waited = bs_now() - st->req.arrival;
    if (verdict == POOL_EXPIRED)
        resp_error(&st->resp, BS_E_DEADLINE_EXCEEDED,
                   "The time budget ran out after %.1f s while the request waited for a "
                   "worker; retry later or with a larger timeout.", waited);
    else if (verdict == POOL_SHUTDOWN)
        resp_error(&st->resp, BS_E_SHUTTING_DOWN,
                   "The server is shutting down; retry on another instance.");
    else if (verdict == POOL_GONE)
        /* Nobody will read it; 499 (client closed) keeps logs and metrics honest. */
        resp_error(&st->resp, BS_E_CLIENT_CLOSED, "The client closed the connection.");
}

static void job_done(pool_job *job, pool_verdict verdict)
{
    request_state *st = STATE_OF(job);
    if (verdict != POOL_RAN)
        verdict_error(st, verdict);
    else
        record_work(st);
    st->phase = PHASE_DONE;
    MHD_resume_connection(st->conn);
}

/* ---- the life-cycle --------------------------------------------------- */

/* First call: the headers are in. Returns MHD_YES to read on, or the
 * result of answering at once. */
static enum MHD_Result on_headers(request_state *st, const char *url, const char *method)
{
    server *srv = st->srv;
    http_request *req = &st->req;
    set_request_id(st);
    req->request_id = st->request_id;
    set_client(st);
    req->method = strcmp(method, "HEAD") ? method : "GET";
    req->path = url;
    st->resp.oip_errors = !strncmp(url, "/v2", 3) && (url[3] == '/' || url[3] == '\0');
    req->content_type = header(st->conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    req->accept = header(st->conn, MHD_HTTP_HEADER_ACCEPT);
    req->header = request_header;
    req->conn = st->conn;
    sanitise(st->path, sizeof st->path, url);
    sanitise(st->method, sizeof st->method, method);
    MHD_get_connection_values(st->conn, MHD_GET_ARGUMENT_KIND, collect_query, req);

    /* DNS rebinding: a page of another site reaches the daemon under that
     * site's name, which is then its Host (and would make it the daemon's
     * own origin for the CORS check below). */
    const char *host = header(st->conn, "Host");
    if (!cors_host_allowed(srv->cfg->allowed_hosts, st->http->loopback, host)) {
        char msg[200];
        snprintf(msg, sizeof msg, "Host %.80s is not served here; the daemon's --allowed-hosts "
                 "lists the host names that are.", host);
        return refuse(st, BS_E_HOST_NOT_ALLOWED, msg);
    }
    if (st->long_uri) {
        char msg[120];
        snprintf(msg, sizeof msg, "The URI is longer than %d bytes.", HTTP_MAX_URI);
        return refuse(st, BS_E_URI_TOO_LONG, msg);
    }
    if (st->bad_path)
        return refuse(st, BS_E_INVALID_PATH, "The path holds an escaped NUL or other control "
                      "character (%00-%1F, %7F); no name has one.");

    int status = 0;
    char allow[64];
    st->route = route_match(method, url, req, st->params_buf, sizeof st->params_buf, &status,
                            allow, sizeof allow);
    /* A page of another origin is refused here, before the body is read,
     * whatever its content type: a form POST needs no preflight. */
    const char *origin = header(st->conn, "Origin");
    cors_verdict cv = cors_check(srv->cfg->cors_origins, origin, host);
    if (cv == CORS_REFUSED) {
        char msg[200];
        snprintf(msg, sizeof msg, "Requests from pages of origin %.80s are not allowed; the "
                 "daemon's --cors-origins lists the origins that are.", origin);
        return refuse(st, BS_E_ORIGIN_NOT_ALLOWED, msg);
    }
    if (cv == CORS_ALLOWED)
        st->cors_origin = origin;
    if (atomic_load(&srv->draining))
        return refuse(st, BS_E_SHUTTING_DOWN,
                            "The server is shutting down; retry on another instance.");
    if (cv == CORS_ALLOWED && !st->route && status == 405 && !strcmp(method, "OPTIONS") &&
        header(st->conn, "Access-Control-Request-Method")) {
        /* a preflight: the methods the path takes, no body */
        st->resp.status = 204;
        resp_header(&st->resp, "Access-Control-Allow-Methods", "%s", allow);
        resp_header(&st->resp, "Access-Control-Allow-Headers", "%s", CORS_ALLOW_HEADERS);
        resp_header(&st->resp, "Access-Control-Max-Age", "%s", CORS_MAX_AGE);
        st->refused = 1;
        return MHD_YES;
    }
    if (!st->route && status == 405) {
        resp_header(&st->resp, "Allow", "%s", allow);
        char msg[160];
        snprintf(msg, sizeof msg, "%s is not served on this path; use %s.", st->method, allow);
        return refuse(st, BS_E_METHOD_NOT_ALLOWED, msg);
    }
    if (!st->route)
        return refuse(st, BS_E_NOT_FOUND, "No endpoint has this path.");
    enum MHD_Result refused;
    if (authenticate(st, &refused))
        return refused;
    if (!atomic_load(&srv->ready) && !(st->route->flags & ROUTE_BEFORE_READY))
        return refuse(st, BS_E_NOT_READY,
                            "The server is still loading its models; retry shortly.");

    if ((st->route->flags & ROUTE_POOLED) && srv->quota) {
        enum MHD_Result ret = admit(st);
        if (!st->quota_held)
            return ret; /* refused */
    }

    const char *cl = header(st->conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && !*end && !errno && n > srv->cfg->max_body) {
            char msg[160];
            snprintf(msg, sizeof msg, "The body of %llu bytes is larger than the limit of %zu "
                     "bytes (--max-body).", n, srv->cfg->max_body);
            return refuse(st, BS_E_BODY_TOO_LARGE, msg);
        }
    }
    if ((st->route->flags & ROUTE_FORM) && req->content_type &&
        !strncasecmp(req->content_type, "multipart/form-data", 19)) {
        req->multipart = 1;
        st->form = MHD_create_post_processor(st->conn, 64 * 1024, on_form_data, st);
        if (!st->form)
            return refuse(st, BS_E_INVALID_FORM,
                                "The multipart/form-data body cannot be parsed (no boundary?).");
    }
    return MHD_YES;
}

/* A piece of body. Never answers: libmicrohttpd takes no answer while the
 * body is still arriving, so an oversized body is discarded and answered
 * 413 when it ends. */
static void on_body(request_state *st, const char *data, size_t size)
{
    size_t max = st->srv->cfg->max_body;
    st->received += size;
    if (st->too_large)
        return;
    if (st->received > max) {
        st->too_large = 1;
        free(st->body);
        st->body = NULL;
        st->body_len = 0;
        free_parts(st);
        return;
    }
    if (st->form) {
        if (MHD_post_process(st->form, data, size) != MHD_YES)
            st->form_failed = st->form_failed ? st->form_failed : 2;
        return;
    }
    if (st->body_len + size + 1 > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len + size + 1)
            cap *= 2;
        uint8_t *nb = realloc(st->body, cap);
        if (!nb) {
            st->form_failed = 1;
            return;
        }
        st->body = nb;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, size);
    st->body_len += size;
    st->body[st->body_len] = '\0';
}

/* Last call: the whole request is in. */
static enum MHD_Result on_complete(request_state *st)
{
    server *srv = st->srv;
    http_request *req = &st->req;
    if (st->watch && deadlines_busy(st->http->deadlines, st->watch))
        return MHD_NO; /* the body came too late: a 408 went out */
    if (st->too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "The body is larger than the limit of %zu bytes (--max-body).",
                 srv->cfg->max_body);
        return answer_error(st, BS_E_BODY_TOO_LARGE, msg);
    }
    if (st->form_failed == 1)
        return answer_error(st, BS_E_OUT_OF_MEMORY, "The server ran out of memory reading "
                            "the body.");
    if (st->form_failed == 2)
        return answer_error(st, BS_E_INVALID_FORM, "The multipart/form-data body is malformed.");
    req->body = st->body;
    req->body_len = st->body_len;
    req->parts = st->parts;
    req->n_parts = st->n_parts;

    st->work.deadline = req->arrival + srv->cfg->timeout;
    if (st->route->flags & ROUTE_POOLED) {
        const char *t = req_query(req, "timeout");
        if (t) {
            char *end;
            double v = strtod(t, &end);
            if (end == t || *end || !isfinite(v) || v <= 0)
                return answer_error(st, BS_E_INVALID_TIMEOUT,
                                    "timeout wants a positive number of seconds.");
            req->timeout = v;
            if (req->arrival + v < st->work.deadline)
                st->work.deadline = req->arrival + v;
        }
    }
    if (atomic_load(&srv->ready))
        req->models = registry_acquire(&srv->reg);
    handler_result hr = st->route->handler(srv, req, &st->resp, &st->work);
    if (hr == HANDLER_ANSWERED)
        return answer(st);
    if (hr == HANDLER_STREAM)
        return answer_stream(st);
    if (hr == HANDLER_ASYNC) {
        /* No connection waits for a job: 202 now, the result at /v1/jobs/{id}. */
        if (work_hold_models(&st->work, req->models) != 0)
            return answer_error(st, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        jobs_submit(srv->jobs, req, &st->work, &st->resp);
        return answer(st);
    }

    st->job.run = job_run;
    st->job.deadline = st->work.deadline;
    st->job.tag = &st->work;
    if (hr == HANDLER_PARKED) {
        st->job.done = job_done;
        st->phase = PHASE_QUEUED;
        MHD_suspend_connection(st->conn);
        st->work.park(st->work.ctx, &st->job);
        return MHD_YES;
    }
    /* Quick work runs right here when no job waits, rather than pay for a
     * hand-off to a worker and back (suspend, wake, resume). */
    if (st->work.quick) {
        int verdict = pool_run_inline(srv->pool, &st->job);
        if (verdict >= 0) {
            if (verdict != POOL_RAN)
                verdict_error(st, (pool_verdict)verdict);
            else
                record_work(st);
            return answer(st);
        }
    }
    /* The place in the queue is claimed first, so that once the connection
     * is suspended the job is sure to be queued and to resume it. */
    if (pool_reserve(srv->pool) != 0) {
        if (atomic_load(&srv->draining))
            return answer_error(st, BS_E_SHUTTING_DOWN,
                                "The server is shutting down; retry on another instance.");
        char msg[160];
        snprintf(msg, sizeof msg, "All %d places in the queue are taken (--queue-size); retry "
                 "shortly.", srv->cfg->queue_size);
        return answer_error(st, BS_E_QUEUE_FULL, msg);
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->job.done = job_done;
    st->job.fd = ci ? ci->connect_fd : -1;
    st->phase = PHASE_QUEUED;
    MHD_suspend_connection(st->conn);
    pool_submit(srv->pool, &st->job);
    return MHD_YES;
}

/* A request's state, counted as active until on_completed frees it. */
static request_state *new_state(http_server *h, struct MHD_Connection *conn)
{
    request_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->srv = h->srv;
    st->http = h;
    st->job.fd = -1;
    st->req.arrival = bs_now();
    snprintf(st->method, sizeof st->method, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    st->watch = ci ? ci->socket_context : NULL;
    atomic_fetch_add(&h->srv->active, 1);
    return st;
}

/* Whether the path part of a raw URI escapes a control character: decoded,
 * %00 would end the path there (cnn%00.safetensors would name cnn) and
 * the others name nothing. */
static int path_escapes_control(const char *uri)
{
    for (const char *s = uri; *s && *s != '?'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
        if (*s != '%' || !isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
            continue;
        char hex[3] = {s[1], s[2], '\0'};
        long v = strtol(hex, NULL, 16);
        if (v < 0x20 || v == 0x7f)
            return 1;
    }
    return 0;
}

/* libmicrohttpd's URI log callback: the request line is in, the headers
 * not yet. Its return value is the request's *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_server *h = cls;
    request_state *st = new_state(h, conn);
    if (!st)
        return NULL;
    if (st->watch)
        (void)deadlines_request_line(h->deadlines, st->watch);
    st->long_uri = strlen(uri) > HTTP_MAX_URI;
    st->bad_path = path_escapes_control(uri);
    sanitise(st->path, sizeof st->path, uri);
    return st;
}

/* libmicrohttpd's connection callback: a connection's deadlines entry
 * lives in its socket context from its start to its close. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    http_server *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (*socket_context)
            deadlines_remove(h->deadlines, *socket_context);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *peer =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[INET6_ADDRSTRLEN] = "-";
    if (peer && peer->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer->client_addr)->sin_addr, addr,
                  sizeof addr);
    else if (peer && peer->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer->client_addr)->sin6_addr, addr,
                  sizeof addr);
    *socket_context = fd ? deadlines_add(h->deadlines, fd->connect_fd, addr) : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    http_server *h = cls;
    request_state *st = *req_cls;
    if (!st) {
        st = new_state(h, conn);
        if (!st) {
            *req_cls = &no_state;
            return MHD_YES;
        }
        *req_cls = st;
    }
    if ((void *)st == &no_state) {
        if (!*upload_data_size)
            return MHD_queue_response(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, h->out_of_memory);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!st->conn) {
        st->conn = conn;
        const char *cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
        int body = header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING) || (cl && strcmp(cl, "0"));
        if (st->watch && (body ? deadlines_body : deadlines_busy)(h->deadlines, st->watch))
            return MHD_NO; /* the head came too late: the connection is closing */
        return on_headers(st, url, method);
    }
    switch (st->phase) {
    case PHASE_READING:
        if (*upload_data_size && st->watch && deadlines_alive(h->deadlines, st->watch) != 0)
            return MHD_NO; /* too late: a 408 went out */
        if (st->refused && *upload_data_size) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (st->refused)
            return answer(st);
        if (*upload_data_size) {
            on_body(st, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        return on_complete(st);
    case PHASE_DONE:
        return answer(st);
    case PHASE_QUEUED:   /* not called while suspended */
    case PHASE_ANSWERED: /* not called once answered */
        break;
    }
    return MHD_YES;
}

/* One line on stderr, after the time (UTC, milliseconds), written at once
 * so that lines of several threads do not mix. */
static void log_line(const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32], line[1024];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s\n", when, ts.tv_nsec / 1000000, line);
}

static void log_request(const request_state *st, int aborted)
{
    double ms = (bs_now() - st->req.arrival) * 1e3;
    log_line("request method=%s path=%s status=%d bytes=%zu ms=%.1f id=%s model=%s client=%s%s",
             st->method, st->path, st->resp.status, st->sent_len, ms, st->request_id,
             st->resp.model[0] ? st->resp.model : "-", st->req.client,
             aborted ? " aborted=1" : "");
}

/* The deadlines watcher ended a connection. */
static void log_timeout(const char *client, const char *phase)
{
    log_line("timeout client=%s phase=%s closed=1", client, phase);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    http_server *h = cls;
    request_state *st = *req_cls;
    *req_cls = NULL;
    if (!st || (void *)st == &no_state)
        return;
    if (st->watch)
        deadlines_idle(h->deadlines, st->watch);
    if (st->resp.status)
        metrics_request(h->srv->metrics, st->route ? st->route->pattern : ROUTE_UNMATCHED,
                        st->method, st->resp.status, bs_now() - st->req.arrival);
    log_request(st, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (st->work.free)
        st->work.free(st->work.ctx);
    if (st->work.stream.free)
        st->work.stream.free(st->work.stream.ctx);
    registry_set_release(st->req.models);
    if (st->quota_held)
        quota_release(h->srv->quota, st->req.client);
    if (st->form)
        MHD_destroy_post_processor(st->form);
    free_parts(st);
    free(st->body);
    resp_clear(&st->resp);
    atomic_fetch_sub(&h->srv->active, 1);
    free(st);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "blindspotd: libmicrohttpd: %s\n", msg);
}

/* Whether addr is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x). */
static int is_loopback(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr) >> 24) == 127;
    if (addr->ss_family != AF_INET6)
        return 0;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

http_server *http_start(server *srv, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    unsigned addrlen;
    if (config_listen_addr(srv->cfg, &addr, &addrlen, err, errlen))
        return NULL;
    http_server *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->srv = srv;
    h->listen_fd = MHD_INVALID_SOCKET;
    http_response oom = {0};
    resp_error(&oom, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
    h->out_of_memory = oom.body ? MHD_create_response_from_buffer(oom.body_len, oom.body,
                                                                  MHD_RESPMEM_MUST_COPY)
                                : NULL;
    if (!h->out_of_memory || MHD_add_response_header(h->out_of_memory,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE,
                                                     oom.content_type) != MHD_YES) {
        resp_clear(&oom);
        snprintf(err, errlen, "out of memory");
        if (h->out_of_memory)
            MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    resp_clear(&oom);
    h->loopback = is_loopback(&addr);
    h->tls = srv->cfg->tls_cert[0] != '\0';
    if (h->tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "--tls-cert: this build of libmicrohttpd has no TLS support");
        MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    if (h->tls && MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
        snprintf(err, errlen, "--tls-cert: this build of libmicrohttpd cannot ask for its "
                 "certificate (MHD_OPTION_HTTPS_CERT_CALLBACK), which reloading needs");
        MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    if (h->tls && tls_open(srv->cfg->tls_cert, srv->cfg->tls_key, err, errlen)) {
        MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    h->deadlines = deadlines_start(srv->cfg->header_timeout, srv->cfg->body_timeout, h->tls,
                                   log_timeout);
    if (!h->deadlines) {
        snprintf(err, errlen, "cannot start the deadlines thread");
        if (h->tls)
            tls_close();
        MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    id_seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
    /* MHD_USE_ITC lets MHD_quiesce_daemon stop a pool of polling threads.
     * poll, not epoll: with epoll, libmicrohttpd 0.9.75's quiesce takes the
     * listening socket out of each thread's epoll set while the thread may
     * be doing so itself, and aborts the process when it loses the race
     * ("Failed to remove listen FD from epoll set", seen on a SIGTERM that
     * came with a request in flight); with poll, quiesce only flags the
     * threads. Measured with wrk at 32 connections: no slower. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_POLL;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (h->tls)
        flags |= MHD_USE_TLS;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg->idle_timeout,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->cfg->http_threads,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)srv->cfg->max_connections_per_ip,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        /* last, as without TLS its place ends the list */
        h->tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, tls_retrieve,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use, or not an address of "
                 "this host?)", srv->cfg->listen);
        deadlines_stop(h->deadlines);
        if (h->tls)
            tls_close();
        MHD_destroy_response(h->out_of_memory);
        free(h);
        return NULL;
    }
    return h;
}

int http_port(http_server *h)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : -1;
}

void http_quiesce(http_server *h)
{
    h->listen_fd = MHD_quiesce_daemon(h->daemon);
}

void http_stop(http_server *h)
{
    MHD_stop_daemon(h->daemon);
    if (h->listen_fd != MHD_INVALID_SOCKET)
        close(h->listen_fd);
    deadlines_stop(h->deadlines);
    if (h->tls)
        tls_close();
    MHD_destroy_response(h->out_of_memory);
    free(h);
}

int http_reload_tls(http_server *h, char *err, size_t errlen)
{
    if (!h->tls)
        return 1;
    return tls_reload(err, errlen);
}
