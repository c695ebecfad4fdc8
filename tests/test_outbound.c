/* test_outbound — the outbound guard (server/outbound.h) as tables of URLs,
 * addresses and allow lists, then through the daemon: webhooks (signature,
 * retries, giving up), images by URL (served, wrong type, too big, too
 * slow, a redirect), and every refusal, each checked to be refused before
 * any connection: a receiver on the loopback address counts the
 * connections it gets. Nothing leaves the loopback address. */
#define _GNU_SOURCE /* strcasestr */
#include "tests/testhttp.h"

#include "api/image.h"
#include "server/outbound.h"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the pure checks ------------------------------------------------------- */

static void test_address_rules(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        const char *rule; /* a word of the refusal, or NULL: allowed */
    } cases[] = {
        {"8.8.8.8", NULL},
        {"93.184.216.34", NULL},
        {"127.0.0.1", "loopback"},
        {"127.255.1.2", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"10.1.2.3", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.1", NULL},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "carrier-grade"},
        {"100.128.0.1", NULL},
        {"169.254.169.254", "metadata"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"255.255.255.255", "broadcast"},
        {"240.0.0.1", "reserved"},
        {"2001:4860:4860::8888", NULL},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::ffff:127.0.0.1", "IPv4-mapped"},
        {"::ffff:169.254.169.254", "IPv4-mapped"},
        {"::ffff:10.0.0.1", "IPv4-mapped"},
        {"::ffff:8.8.8.8", NULL},
        {"::127.0.0.1", "IPv4-compatible"},
        {"64:ff9b::7f00:1", "NAT64"},
        {"2002:7f00:1::", "6to4"},
        {"2002:808:808::", NULL},
        {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},
        {"fe80::1", "link-local"},
        {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},
    };
    outbound_policy none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[16];
        int v6 = strchr(cases[i].addr, ':') != NULL;
        assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, cases[i].addr, a), 1);
        const char *rule = outbound_address_rule(&none, v6, a);
        if (!cases[i].rule) {
            if (rule)
                fail_msg("%s refused: %s", cases[i].addr, rule);
        } else if (!rule || !strstr(rule, cases[i].rule)) {
            fail_msg("%s: rule '%s', expected one naming '%s'", cases[i].addr,
                     rule ? rule : "(allowed)", cases[i].rule);
        }
    }
}

static void test_allow_list(void **state)
{
    (void)state;
    outbound_policy p = {0};
    char err[256];
    assert_int_equal(outbound_allow_parse("127.0.0.1/32,10.1.0.0/16,fd00::/8", &p, err,
                                          sizeof err), 0);
    assert_int_equal(p.n_allow, 3);
    static const struct {
        const char *addr;
        int allowed;
    } cases[] = {
        {"127.0.0.1", 1}, {"127.0.0.2", 0},       {"10.1.200.3", 1},
        {"10.2.0.1", 0},  {"::ffff:127.0.0.1", 1}, {"::ffff:127.0.0.2", 0},
        {"fd00::5", 1},   {"fc00::5", 0},          {"::1", 0},
        {"169.254.169.254", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[16];
        int v6 = strchr(cases[i].addr, ':') != NULL;
        assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, cases[i].addr, a), 1);
        if ((outbound_address_rule(&p, v6, a) == NULL) != cases[i].allowed)
            fail_msg("%s: expected %s", cases[i].addr, cases[i].allowed ? "allowed" : "refused");
    }
    static const char *const bad[] = {"127.0.0.1/33", "::1/129", "localhost", "10.0.0.0/",
                                      "1.2.3.4,,5.6.7.8", "10.0.0.0/8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (outbound_allow_parse(bad[i], &p, err, sizeof err) == 0)
            fail_msg("allow list '%s' taken", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(outbound_allow_parse("", &p, err, sizeof err), 0);
    assert_int_equal(p.n_allow, 0);
}

static void test_parse_url(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *host; /* NULL: refused */
        int port;
        const char *rest;
    } cases[] = {
        {"http://example.com", "example.com", 80, "/"},
        {"https://Example.COM:8443/a/b?c=d#frag", "example.com", 8443, "/a/b?c=d"},
        {"HTTP://x.test?q", "x.test", 80, "/?q"},
        {"http://[::1]:81/p", "::1", 81, "/p"},
        {"http://127.0.0.1:8080/hook", "127.0.0.1", 8080, "/hook"},
        {"ftp://example.com/", NULL, 0, NULL},
        {"file:///etc/passwd", NULL, 0, NULL},
        {"gopher://x/", NULL, 0, NULL},
        {"http://a@127.0.0.1/", NULL, 0, NULL},
        {"http://user:pw@example.com/", NULL, 0, NULL},
        {"http://example.com@127.0.0.1/", NULL, 0, NULL},
        {"http://127.0.0.1\\@example.com/", NULL, 0, NULL},
        {"http:///path", NULL, 0, NULL},
        {"http://x:0/", NULL, 0, NULL},
        {"http://x:65536/", NULL, 0, NULL},
        {"http://x:80a/", NULL, 0, NULL},
        {"http://[::1/", NULL, 0, NULL},
        {"http://[nothex]/", NULL, 0, NULL},
        {"http://exa mple.com/", NULL, 0, NULL},
        {"http://example.com/a b", NULL, 0, NULL},
        {"http://example.com/\r\nHost: x", NULL, 0, NULL},
        {"http://ex%61mple.com/", NULL, 0, NULL},
        {"", NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outbound_url u;
        char err[256] = "";
        int rc = outbound_parse_url(cases[i].url, &u, err, sizeof err);
        if (!cases[i].host) {
            if (rc == 0)
                fail_msg("'%s' taken (host %s)", cases[i].url, u.host);
            assert_true(err[0] != '\0');
            continue;
        }
        if (rc)
            fail_msg("'%s' refused: %s", cases[i].url, err);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.rest, cases[i].rest);
    }
}

/* ---- a receiver on the loopback address -------------------------------- */

/* What the receiver answers, one connection after another. */
typedef struct receiver {
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    int connections;            /* accepted so far */
    int statuses[8], n_statuses; /* the status of each answer; the last repeats */
    const char *content_type;
    const uint8_t *body;
    size_t body_len;
    const char *location;       /* a Location header */
    int delay_ms;               /* before answering */
    char last_request[65536];   /* head and body of the last request */
    size_t last_len;
    int quit;
} receiver;

/* Changes what rv answers (statements on rv's fields) under its lock. */
#define RECEIVER_SET(rv, ...)                                                  \
    do {                                                                       \
        pthread_mutex_lock(&(rv)->lock);                                       \
        __VA_ARGS__;                                                           \
        pthread_mutex_unlock(&(rv)->lock);                                     \
    } while (0)

static void *receive(void *arg)
{
    receiver *rv = arg;
    for (;;) {
        int c = accept(rv->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_mutex_lock(&rv->lock);
        if (rv->quit) {
            pthread_mutex_unlock(&rv->lock);
            close(c);
            return NULL;
        }
        int n = rv->connections++;
        pthread_mutex_unlock(&rv->lock);
        char buf[sizeof rv->last_request];
        size_t len = 0;
        /* the head, then Content-Length bytes of body */
        for (;;) {
            ssize_t got = recv(c, buf + len, sizeof buf - 1 - len, 0);
            if (got <= 0)
                break;
            len += (size_t)got;
            buf[len] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (!end)
                continue;
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t want = cl ? (size_t)atol(cl + 17) : 0;
            if (len >= (size_t)(end + 4 - buf) + want)
                break;
        }
        pthread_mutex_lock(&rv->lock);
        memcpy(rv->last_request, buf, len);
        rv->last_request[len] = '\0';
        rv->last_len = len;
        /* the answer as it is set now, copied: the test may change it while
         * this one is still being sent */
        int status = rv->statuses[n < rv->n_statuses ? n : rv->n_statuses - 1];
        int delay_ms = rv->delay_ms;
        size_t body_len = rv->body_len;
        uint8_t *body = malloc(body_len + 1);
        if (body_len)
            memcpy(body, rv->body, body_len);
        char head[512];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s"
                          "Connection: close\r\n\r\n",
                          status, rv->content_type ? rv->content_type : "text/plain",
                          body_len, rv->location ? "Location: " : "",
                          rv->location ? rv->location : "", rv->location ? "\r\n" : "");
        pthread_mutex_unlock(&rv->lock);
        if (delay_ms)
            usleep((useconds_t)delay_ms * 1000);
        ssize_t w = send(c, head, (size_t)hl, MSG_NOSIGNAL);
        if (w > 0 && body_len)
            w = send(c, body, body_len, MSG_NOSIGNAL);
        (void)w;
        free(body);
        close(c);
    }
}

static void receiver_start(receiver *rv)
{
    memset(rv, 0, sizeof *rv);
    pthread_mutex_init(&rv->lock, NULL);
    rv->statuses[0] = 200;
    rv->n_statuses = 1;
    rv->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(rv->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(rv->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(rv->fd, (struct sockaddr *)&a, &al);
    rv->port = ntohs(a.sin_port);
    assert_int_equal(listen(rv->fd, 16), 0);
    assert_int_equal(pthread_create(&rv->thread, NULL, receive, rv), 0);
}

static void receiver_stop(receiver *rv)
{
    pthread_mutex_lock(&rv->lock);
    rv->quit = 1;
    pthread_mutex_unlock(&rv->lock);
    shutdown(rv->fd, SHUT_RDWR);
    close(rv->fd);
    pthread_join(rv->thread, NULL);
    pthread_mutex_destroy(&rv->lock);
}

static int connections(receiver *rv)
{
    pthread_mutex_lock(&rv->lock);
    int n = rv->connections;
    pthread_mutex_unlock(&rv->lock);
    return n;
}

/* ---- through the daemon ---------------------------------------------------- */

static const char secret[] = "test-secret-42";

static daemon_proc allowing; /* --outbound-allow 127.0.0.1/32 */
static daemon_proc guarded;  /* no allow list */

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    const char *const allow[] = {"--outbound-allow", "127.0.0.1/32", "--webhook-secret", secret,
                                 "--webhook-backoff", "0.2", "--webhook-tries", "3",
                                 "--fetch-max-bytes", "4K", "--fetch-timeout", "1", NULL};
    const char *const none[] = {"--webhook-secret", secret, NULL};
    if (daemon_start(&allowing, allow) || daemon_start(&guarded, none))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&allowing) | daemon_stop(&guarded);
    daemon_cleanup(&allowing);
    daemon_cleanup(&guarded);
    curl_global_cleanup();
    return rc ? -1 : 0;
}

static const char quick_fields[] =
    "\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3";

/* POSTs body to path on port into r. */
static void post(int port, const char *path, const char *body, reply *r)
{
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(port, path, &o, r);
}

/* The job document of location once its callback is no longer pending
 * (or 20 s pass). */
static json_t *callback_settled(int port, const char *location)
{
    double end = now_s() + 20;
    while (now_s() < end) {
        reply r;
        request_on(port, location, NULL, &r);
        json_t *cb = json_object_get(r.json, "callback");
        const char *st = json_string_value(json_object_get(cb, "state"));
        if (st && strcmp(st, "pending")) {
            json_t *doc = json_incref(r.json);
            reply_free(&r);
            return doc;
        }
        reply_free(&r);
        usleep(100000);
    }
    fail_msg("the callback of %s stayed pending", location);
    return NULL;
}

/* Asserts the callback of a job document: its state and attempts; it. */
static json_t *assert_callback(json_t *doc, const char *state, int attempts)
{
    json_t *cb = json_object_get(doc, "callback");
    assert_string_equal(json_string_value(json_object_get(cb, "state")), state);
    assert_int_equal(json_integer_value(json_object_get(cb, "attempts")), attempts);
    return cb;
}

/* Submits an async attack with a callback to rv; the job's location. */
static void submit_with_callback(receiver *rv, char *location, size_t size)
{
    char body[512];
    snprintf(body, sizeof body, "{%s,\"callback\":\"http://127.0.0.1:%d/hook\"}", quick_fields,
             rv->port);
    reply r;
    post(allowing.port, "/v1/attacks?async=true", body, &r);
    if (r.status != 202)
        fail_msg("expected 202, got %ld: %s", r.status, r.body ? r.body : "");
    assert_non_null(header_of(&r, "Location", location, size));
    reply_free(&r);
}

/* Two 500s, then 200: delivered on the third try, signed. */
static void test_webhook_retries_then_delivers(void **state)
{
    (void)state;
    receiver rv;
    receiver_start(&rv);
    RECEIVER_SET(&rv, rv.statuses[0] = rv.statuses[1] = 500; rv.statuses[2] = 200;
                 rv.n_statuses = 3);
    char location[128];
    submit_with_callback(&rv, location, sizeof location);
    json_t *doc = callback_settled(allowing.port, location);
    json_t *cb = assert_callback(doc, "delivered", 3);
    assert_int_equal(json_integer_value(json_object_get(cb, "last_status")), 200);
    assert_int_equal(connections(&rv), 3);

    /* the last request: its signature is the HMAC of its body */
    const char *req = rv.last_request;
    const char *body = strstr(req, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    size_t body_len = rv.last_len - (size_t)(body - req);
    uint8_t mac[32];
    assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), body,
                                      body_len, mac), 0);
    char expect[128] = "X-Blindspot-Signature: sha256=";
    for (int i = 0; i < 32; i++)
        snprintf(expect + strlen(expect), 3, "%02x", mac[i]);
    if (!strcasestr(req, expect))
        fail_msg("no '%s' in:\n%.600s", expect, req);
    const char *id = location + strlen("/v1/jobs/");
    char job_header[64];
    snprintf(job_header, sizeof job_header, "X-Blindspot-Job: %s", id);
    if (!strcasestr(req, job_header))
        fail_msg("no '%s' in:\n%.600s", job_header, req);
    /* the body is the job document of the ended job */
    json_t *sent = json_loadb(body, body_len, 0, NULL);
    assert_non_null(sent);
    assert_string_equal(json_string_value(json_object_get(sent, "id")), id);
    assert_string_equal(json_string_value(json_object_get(sent, "state")), "done");
    assert_non_null(json_object_get(sent, "result"));
    json_decref(sent);
    json_decref(doc);
    receiver_stop(&rv);
}

/* Always 500: failed after --webhook-tries (3) attempts. */
static void test_webhook_gives_up(void **state)
{
    (void)state;
    receiver rv;
    receiver_start(&rv);
    RECEIVER_SET(&rv, rv.statuses[0] = 503);
    char location[128];
    submit_with_callback(&rv, location, sizeof location);
    json_t *doc = callback_settled(allowing.port, location);
    json_t *cb = assert_callback(doc, "failed", 3);
    assert_int_equal(json_integer_value(json_object_get(cb, "last_status")), 503);
    assert_non_null(strstr(json_string_value(json_object_get(cb, "last_error")), "503"));
    usleep(500000);
    assert_int_equal(connections(&rv), 3);
    json_decref(doc);
    receiver_stop(&rv);
}

/* A callback whose receiver is gone: connection failures are retried too. */
static void test_webhook_connection_refused(void **state)
{
    (void)state;
    char body[512], location[128];
    snprintf(body, sizeof body, "{%s,\"callback\":\"http://127.0.0.1:%d/\"}", quick_fields,
             free_port());
    reply r;
    post(allowing.port, "/v1/attacks?async=true", body, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(header_of(&r, "Location", location, sizeof location));
    reply_free(&r);
    json_t *doc = callback_settled(allowing.port, location);
    json_t *cb = assert_callback(doc, "failed", 3);
    assert_true(json_is_null(json_object_get(cb, "last_status")));
    json_decref(doc);
}

/* Every refusal of the guard: 422 url_refused naming the rule, and no
 * connection at the receiver. */
static void test_callback_refusals(void **state)
{
    (void)state;
    receiver rv;
    receiver_start(&rv);
    static const struct {
        const char *url; /* %d: the receiver's port */
        const char *says;
    } cases[] = {
        {"http://127.0.0.1:%d/", "loopback"},
        {"http://localhost:%d/", "resolves to"},
        {"http://[::1]:%d/", "loopback"},
        {"http://[::ffff:127.0.0.1]:%d/", "IPv4-mapped"},
        {"http://[::ffff:7f00:1]:%d/", "IPv4-mapped"},
        {"http://0.0.0.0:%d/", "unspecified"},
        {"http://10.0.0.1:%d/", "private"},
        {"http://169.254.169.254:%d/latest/meta-data/", "metadata"},
        {"http://[fe80::1]:%d/", "link-local"},
        {"http://224.0.0.1:%d/", "multicast"},
        {"ftp://127.0.0.1:%d/", "http://"},
        {"file:///etc/passwd?%d", "http://"},
        {"http://a@127.0.0.1:%d/", "user info"},
        {"http://example.com@127.0.0.1:%d/", "user info"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char url[128], body[512];
        snprintf(url, sizeof url, cases[i].url, rv.port);
        snprintf(body, sizeof body, "{%s,\"callback\":\"%s\"}", quick_fields, url);
        reply r;
        post(guarded.port, "/v1/attacks?async=true", body, &r);
        assert_error(&r, 422, "url_refused");
        const char *msg = json_string_value(
            json_object_get(json_object_get(r.json, "error"), "message"));
        if (!strstr(msg, cases[i].says))
            fail_msg("%s: '%s' does not say '%s'", url, msg, cases[i].says);
        reply_free(&r);
        /* the same URL as an image */
        snprintf(body, sizeof body, "{\"model\":\"fc10-1e-4\",\"target\":3,\"image\":{\"url\":"
                 "\"%s\"}}", url);
        post(guarded.port, "/v1/attacks", body, &r);
        assert_error(&r, 422, "url_refused");
        reply_free(&r);
    }
    /* an evaluation's callback too, and a synchronous attack has none */
    reply r;
    char body[512];
    snprintf(body, sizeof body, "{\"n\":1,\"callback\":\"http://127.0.0.1:%d/\"}", rv.port);
    post(guarded.port, "/v1/evaluations", body, &r);
    assert_error(&r, 422, "url_refused");
    reply_free(&r);
    snprintf(body, sizeof body, "{%s,\"callback\":\"http://127.0.0.1:%d/\"}", quick_fields,
             rv.port);
    post(allowing.port, "/v1/attacks", body, &r);
    assert_error(&r, 400, "invalid_request");
    reply_free(&r);
    assert_int_equal(connections(&rv), 0);
    receiver_stop(&rv);
}

/* A 28x28 PNG of a digit-like stroke, malloc'd into *png. */
static size_t digit_png(uint8_t **png)
{
    uint8_t px[28 * 28] = {0};
    for (int y = 6; y < 22; y++)
        px[y * 28 + 14] = px[y * 28 + 15] = 255;
    char err[256];
    size_t len = 0;
    assert_int_equal(bs_image_encode(px, 28, 28, 1, BS_IMAGE_PNG, 0, png, &len, err), 0);
    return len;
}

/* An attack whose image url answers what rv answers. */
static void attack_by_url(receiver *rv, const char *path, reply *r)
{
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"fc10-1e-4\",\"target\":3,\"image\":{\"url\":"
             "\"http://127.0.0.1:%d%s\"}}", rv->port, path);
    post(allowing.port, "/v1/attacks", body, r);
}

static void test_image_by_url(void **state)
{
    (void)state;
    receiver rv;
    receiver_start(&rv);
    uint8_t *png;
    size_t png_len = digit_png(&png);
    RECEIVER_SET(&rv, rv.body_len = png_len; rv.body = png; rv.content_type = "image/png");
    reply r;
    attack_by_url(&rv, "/digit.png", &r);
    if (r.status != 200)
        fail_msg("expected 200, got %ld: %s", r.status, r.body ? r.body : "");
    assert_non_null(json_object_get(r.json, "results"));
    reply_free(&r);
    assert_int_equal(connections(&rv), 1);
    assert_non_null(strstr(rv.last_request, "GET /digit.png HTTP/1.1"));

    /* predict takes the same form */
    char path[128], body[512], location[128];
    snprintf(body, sizeof body, "{\"image\":{\"url\":\"http://127.0.0.1:%d/p.png\"}}",
             rv.port);
    post(allowing.port, "/v1/models/fc10-1e-4/predict", body, &r);
    if (r.status != 200)
        fail_msg("expected 200, got %ld: %s", r.status, r.body ? r.body : "");
    reply_free(&r);
    assert_int_equal(connections(&rv), 2);
    snprintf(path, sizeof path, "/v1/models/fc10-1e-4/predict");
    snprintf(body, sizeof body, "{\"image\":{\"url\":\"http://10.0.0.1:%d/\"}}", rv.port);
    post(guarded.port, path, body, &r);
    assert_error(&r, 422, "url_refused");
    reply_free(&r);

    /* async: fetched on the worker, the job's result */
    snprintf(body, sizeof body, "{\"model\":\"fc10-1e-4\",\"target\":3,\"image\":{\"url\":"
             "\"http://127.0.0.1:%d/d.png\"}}", rv.port);
    post(allowing.port, "/v1/attacks?async=true", body, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(header_of(&r, "Location", location, sizeof location));
    reply_free(&r);
    strcat(location, "?wait=20");
    request_on(allowing.port, location, NULL, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "done");
    reply_free(&r);

    /* the wrong type */
    RECEIVER_SET(&rv, rv.content_type = "text/html");
    attack_by_url(&rv, "/", &r);
    assert_error(&r, 422, "fetch_failed");
    assert_non_null(strstr(r.body, "text/html"));
    reply_free(&r);
    /* a status other than 200 */
    RECEIVER_SET(&rv, rv.content_type = "image/png"; rv.statuses[0] = 404);
    attack_by_url(&rv, "/", &r);
    assert_error(&r, 422, "fetch_failed");
    assert_non_null(strstr(r.body, "404"));
    reply_free(&r);
    RECEIVER_SET(&rv, rv.statuses[0] = 200);
    /* too big: 5000 bytes over --fetch-max-bytes 4K */
    uint8_t *big = calloc(5000, 1);
    memcpy(big, png, png_len);
    RECEIVER_SET(&rv, rv.body = big; rv.body_len = 5000);
    attack_by_url(&rv, "/", &r);
    assert_error(&r, 422, "fetch_failed");
    assert_non_null(strstr(r.body, "more than 4096 bytes"));
    reply_free(&r);
    RECEIVER_SET(&rv, rv.body = png; rv.body_len = png_len);
    free(big);
    /* too slow: 2 s over --fetch-timeout 1 */
    RECEIVER_SET(&rv, rv.delay_ms = 2000);
    double t0 = now_s();
    attack_by_url(&rv, "/", &r);
    assert_error(&r, 422, "fetch_failed");
    assert_true(now_s() - t0 < 1.9);
    reply_free(&r);
    RECEIVER_SET(&rv, rv.delay_ms = 0);
    free(png);
    receiver_stop(&rv);
}

/* A redirect to a loopback address is not followed: the receiver it
 * names gets no connection. */
static void test_redirect_not_followed(void **state)
{
    (void)state;
    receiver rv, target;
    receiver_start(&rv);
    receiver_start(&target);
    char where[64];
    snprintf(where, sizeof where, "http://127.0.0.1:%d/secret", target.port);
    RECEIVER_SET(&rv, rv.statuses[0] = 302; rv.location = where);
    reply r;
    attack_by_url(&rv, "/", &r);
    assert_error(&r, 422, "fetch_failed");
    assert_non_null(strstr(r.body, "redirects are not followed"));
    reply_free(&r);
    /* and a webhook answered 3xx has failed at once */
    char location[128];
    submit_with_callback(&rv, location, sizeof location);
    json_t *doc = callback_settled(allowing.port, location);
    assert_callback(doc, "failed", 1);
    json_decref(doc);
    assert_int_equal(connections(&rv), 2);
    assert_int_equal(connections(&target), 0);
    receiver_stop(&target);
    receiver_stop(&rv);
}

/* A delivery pending when the daemon stops resumes at the next start,
 * its attempts counted on (the state file keeps it). */
static void test_webhook_resumes_after_restart(void **state)
{
    (void)state;
    receiver rv;
    receiver_start(&rv);
    RECEIVER_SET(&rv, rv.statuses[0] = 500; rv.statuses[1] = 200; rv.n_statuses = 2);
    /* mkdtemp's template: the prefix and six placeholder letters */
    char dir[64], path[128];
    size_t n = (size_t)snprintf(dir, sizeof dir, "/tmp/bs-outbound-");
    memset(dir + n, 'X', 6);
    dir[n + 6] = '\0';
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/state.sqlite", dir);
    const char *const flags[] = {"--outbound-allow", "127.0.0.1/32", "--webhook-secret", secret,
                                 "--webhook-backoff", "600", "--state", path, NULL};
    daemon_proc d;
    assert_int_equal(daemon_start(&d, flags), 0);
    char body[512], location[128];
    snprintf(body, sizeof body, "{%s,\"callback\":\"http://127.0.0.1:%d/hook\"}", quick_fields,
             rv.port);
    reply r;
    post(d.port, "/v1/attacks?async=true", body, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(header_of(&r, "Location", location, sizeof location));
    reply_free(&r);
    /* the first attempt is answered 500; the next would be in 600 s */
    double end = now_s() + 20;
    json_int_t attempts = 0;
    while (attempts < 1 && now_s() < end) {
        usleep(100000);
        request_on(d.port, location, NULL, &r);
        json_t *cb = json_object_get(r.json, "callback");
        attempts = json_integer_value(json_object_get(cb, "attempts"));
        if (attempts)
            assert_string_equal(json_string_value(json_object_get(cb, "state")), "pending");
        reply_free(&r);
    }
    assert_int_equal(attempts, 1);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    assert_int_equal(daemon_start(&d, flags), 0);
    json_t *doc = callback_settled(d.port, location);
    assert_callback(doc, "delivered", 2);
    assert_int_equal(connections(&rv), 2);
    json_decref(doc);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    unlink(path);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    rmdir(dir);
    receiver_stop(&rv);
}

int main(void)
{
    const struct CMUnitTest units[] = {
        cmocka_unit_test(test_address_rules),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_parse_url),
    };
    const struct CMUnitTest daemon_tests[] = {
        cmocka_unit_test(test_webhook_retries_then_delivers),
        cmocka_unit_test(test_webhook_gives_up),
        cmocka_unit_test(test_webhook_connection_refused),
        cmocka_unit_test(test_callback_refusals),
        cmocka_unit_test(test_image_by_url),
        cmocka_unit_test(test_redirect_not_followed),
        cmocka_unit_test(test_webhook_resumes_after_restart),
    };
    int failed = cmocka_run_group_tests_name("outbound guard", units, NULL, NULL);
    return failed | cmocka_run_group_tests_name("outbound through the daemon", daemon_tests,
                                                group_setup, group_teardown);
}
