/* test_cors — browsers and blindspotd: a request from a page of another
 * origin is refused with 403 before any work (a form POST needs no
 * preflight, so the refusal cannot wait for one), whether CORS is off or
 * the origin is not in --cors-origins; the daemon's own origin and
 * requests without Origin pass; an allowed origin gets its preflight
 * answered (methods, headers, max-age) and its answers the
 * Access-Control-* headers; "*" allows any origin, "null" included.
 * And the API's document for browsers: /openapi.yaml, compiled in, with
 * its ETag; the studio's pages and files, compiled in too, the pages with a
 * Content-Security-Policy that keeps them to the daemon's origin. */
#define _GNU_SOURCE /* memmem */
#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static daemon_proc off_daemon;    /* CORS off (the default) */
static daemon_proc listed_daemon; /* --cors-origins with two origins */
static daemon_proc star_daemon;   /* --cors-origins '*' */

/* an attack on the test set's first digit (a 7) towards 3 */
#define ATTACK_JSON                                                                            \
    "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"split\":\"test\","          \
    "\"index\":0},\"target\":3}"
#define LISTED "https://a.example,http://localhost:3000"

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    const char *listed[] = {"--cors-origins", LISTED, NULL};
    const char *star[] = {"--cors-origins", "*", NULL};
    if (daemon_start(&off_daemon, NULL) || daemon_start(&listed_daemon, listed) ||
        daemon_start(&star_daemon, star)) {
        fprintf(stderr, "blindspotd did not become ready\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&off_daemon) | daemon_stop(&listed_daemon) | daemon_stop(&star_daemon);
    daemon_cleanup(&off_daemon);
    daemon_cleanup(&listed_daemon);
    daemon_cleanup(&star_daemon);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

static reply sample_png; /* a PNG the server made, for the form */

static curl_mime *attack_form(CURL *c)
{
    static const char *const fields[][2] = {{"model", "fc100-100-10"}, {"target", "3"}};
    curl_mime *m = curl_mime_init(c);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        curl_mimepart *f = curl_mime_addpart(m);
        curl_mime_name(f, fields[i][0]);
        curl_mime_data(f, fields[i][1], CURL_ZERO_TERMINATED);
    }
    curl_mimepart *img = curl_mime_addpart(m);
    curl_mime_filename(img, "digit.png");
    curl_mime_name(img, "image");
    curl_mime_data(img, sample_png.body, sample_png.len);
    return m;
}

/* The sum of every sample of /metrics whose series starts with prefix. */
static double metrics_sum(int port, const char *prefix)
{
    reply r;
    request_on(port, "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    double sum = 0;
    size_t n = strlen(prefix);
    for (char *p = r.body; *p; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != '\0')) {
        if (!strncmp(p, prefix, n)) {
            char *sp = strchr(p, ' ');
            assert_non_null(sp);
            sum += strtod(sp + 1, NULL);
        }
    }
    reply_free(&r);
    return sum;
}

/* Work done so far: attacks run (any outcome) and jobs in the table. */
static double work_done(int port)
{
    return metrics_sum(port, "blindspot_attack_targets_total") +
           metrics_sum(port, "blindspot_jobs{");
}

static void assert_header(const reply *r, const char *name, const char *want)
{
    char buf[512];
    const char *got = header_of(r, name, buf, sizeof buf);
    if (!want) {
        if (got)
            fail_msg("%s: %s, wanted none", name, got);
        return;
    }
    if (!got)
        fail_msg("%s missing, wanted %s", name, want);
    assert_string_equal(got, want);
}

/* The form POST a page of another origin can send without a preflight,
 * synchronous and as a job: 403 and nothing run, nothing queued. */
static void assert_form_post_refused(int port, const char *origin)
{
    request_on(port, "/v1/datasets/mnist/test/0", NULL, &sample_png);
    assert_int_equal(sample_png.status, 200);
    double before = work_done(port);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "Origin: %s", origin);
    const char *headers[] = {hdr, NULL};
    req_opts o = {.form = attack_form, .headers = headers};
    const char *paths[] = {"/v1/attacks", "/v1/attacks?async=true"};
    for (int i = 0; i < 2; i++) {
        reply r;
        request_on(port, paths[i], &o, &r);
        assert_error(&r, 403, "origin_not_allowed");
        assert_header(&r, "Access-Control-Allow-Origin", NULL);
        reply_free(&r);
    }
    /* a JSON POST too */
    const char *json_headers[] = {hdr, "Content-Type: application/json", NULL};
    const char *body = ATTACK_JSON;
    req_opts j = {.headers = json_headers, .body = body, .len = strlen(body)};
    reply r;
    request_on(port, "/v1/attacks?async=true", &j, &r);
    assert_error(&r, 403, "origin_not_allowed");
    reply_free(&r);
    assert_true(work_done(port) == before);
    reply_free(&sample_png);
}

/* The test that failed before: with CORS off (the default), a page of
 * another origin made the daemon run the attack and queue a job. */
static void test_cross_site_form_post_refused(void **state)
{
    (void)state;
    assert_form_post_refused(off_daemon.port, "https://evil.example");
    assert_form_post_refused(listed_daemon.port, "https://evil.example");
    /* a listed origin on another port or scheme is another origin */
    assert_form_post_refused(listed_daemon.port, "http://localhost:3001");
    assert_form_post_refused(listed_daemon.port, "http://a.example");
    /* "null" is any sandboxed page's: refused unless "*" */
    assert_form_post_refused(listed_daemon.port, "null");
    assert_form_post_refused(off_daemon.port, "null");
}

/* A GET is refused the same way; without Origin, and from the daemon's own
 * origin, everything passes and no CORS header is added. */
static void test_same_origin_and_no_origin(void **state)
{
    (void)state;
    char own[80], hdr[120];
    snprintf(own, sizeof own, "http://127.0.0.1:%d", off_daemon.port);
    snprintf(hdr, sizeof hdr, "Origin: %s", own);
    const char *same[] = {hdr, NULL};
    const char *evil[] = {"Origin: https://evil.example", NULL};
    reply r;
    request_on(off_daemon.port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Access-Control-Allow-Origin", NULL);
    reply_free(&r);
    req_opts o = {.headers = same};
    request_on(off_daemon.port, "/v1/models", &o, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Access-Control-Allow-Origin", NULL);
    reply_free(&r);
    o.headers = evil;
    request_on(off_daemon.port, "/v1/models", &o, &r);
    assert_error(&r, 403, "origin_not_allowed");
    reply_free(&r);
    /* an unknown path from another origin: 403 too, before routing matters */
    request_on(off_daemon.port, "/nowhere", &o, &r);
    assert_error(&r, 403, "origin_not_allowed");
    reply_free(&r);

    /* the same-origin attack runs */
    request_on(off_daemon.port, "/v1/datasets/mnist/test/0", NULL, &sample_png);
    o.headers = same;
    o.form = attack_form;
    request_on(off_daemon.port, "/v1/attacks?async=true", &o, &r);
    assert_int_equal(r.status, 202);
    reply_free(&r);
    reply_free(&sample_png);
}

static void preflight(int port, const char *path, const char *origin, reply *r)
{
    char hdr[160];
    snprintf(hdr, sizeof hdr, "Origin: %s", origin);
    const char *headers[] = {hdr, "Access-Control-Request-Method: POST",
                             "Access-Control-Request-Headers: content-type", NULL};
    req_opts o = {.method = "OPTIONS", .headers = headers};
    request_on(port, path, &o, r);
}

static void test_preflight(void **state)
{
    (void)state;
    reply r;
    preflight(listed_daemon.port, "/v1/attacks", "http://localhost:3000", &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    assert_header(&r, "Access-Control-Allow-Origin", "http://localhost:3000");
    assert_header(&r, "Access-Control-Allow-Methods", "POST");
    assert_header(&r, "Access-Control-Allow-Headers",
                  "Content-Type, Accept, Authorization, Inference-Header-Content-Length, "
                  "Last-Event-ID, X-Request-Id");
    assert_header(&r, "Access-Control-Max-Age", "600");
    assert_header(&r, "Vary", "Origin");
    reply_free(&r);
    /* the route's methods, whatever was asked */
    preflight(listed_daemon.port, "/v1/jobs/abc", "https://a.example", &r);
    assert_int_equal(r.status, 204);
    assert_header(&r, "Access-Control-Allow-Origin", "https://a.example");
    assert_header(&r, "Access-Control-Allow-Methods", "GET, HEAD, DELETE");
    reply_free(&r);
    /* a path nobody serves is still 404 */
    preflight(listed_daemon.port, "/nowhere", "https://a.example", &r);
    assert_error(&r, 404, "not_found");
    reply_free(&r);
    /* a disallowed origin, and any origin with CORS off: 403 */
    preflight(listed_daemon.port, "/v1/attacks", "https://evil.example", &r);
    assert_error(&r, 403, "origin_not_allowed");
    assert_header(&r, "Access-Control-Allow-Origin", NULL);
    reply_free(&r);
    preflight(off_daemon.port, "/v1/attacks", "https://a.example", &r);
    assert_error(&r, 403, "origin_not_allowed");
    reply_free(&r);
    /* OPTIONS without Origin is not a preflight: 405 as before */
    req_opts o = {.method = "OPTIONS"};
    request_on(listed_daemon.port, "/v1/attacks", &o, &r);
    assert_error(&r, 405, "method_not_allowed");
    reply_free(&r);
}

static void assert_cors_answer(const reply *r, const char *origin)
{
    assert_header(r, "Access-Control-Allow-Origin", origin);
    assert_header(r, "Vary", "Origin");
    char buf[512];
    const char *exp = header_of(r, "Access-Control-Expose-Headers", buf, sizeof buf);
    assert_non_null(exp);
    const char *want[] = {"Location", "Retry-After", "X-Request-Id",
                          "Inference-Header-Content-Length", "X-Blindspot-Target",
                          "X-Blindspot-Distortion"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(exp, want[i]))
            fail_msg("Access-Control-Expose-Headers lacks %s: %s", want[i], exp);
}

static void test_allowed_origin_answers(void **state)
{
    (void)state;
    const char *headers[] = {"Origin: https://a.example", "Content-Type: application/json",
                             NULL};
    const char *body = ATTACK_JSON;
    req_opts o = {.headers = headers, .body = body, .len = strlen(body)};
    reply r;
    request_on(listed_daemon.port, "/v1/attacks?async=true", &o, &r);
    assert_int_equal(r.status, 202);
    assert_cors_answer(&r, "https://a.example");
    reply_free(&r);
    /* errors carry them too, so that a page can read them */
    req_opts g = {.headers = headers};
    request_on(listed_daemon.port, "/v1/models/nope", &g, &r);
    assert_error(&r, 404, "model_not_found");
    assert_cors_answer(&r, "https://a.example");
    reply_free(&r);
}

static void test_star(void **state)
{
    (void)state;
    const char *origins[] = {"https://anything.example:8443", "null"};
    for (int i = 0; i < 2; i++) {
        char hdr[160];
        snprintf(hdr, sizeof hdr, "Origin: %s", origins[i]);
        const char *headers[] = {hdr, NULL};
        req_opts o = {.headers = headers};
        reply r;
        request_on(star_daemon.port, "/v1/models", &o, &r);
        assert_int_equal(r.status, 200);
        assert_cors_answer(&r, origins[i]);
        reply_free(&r);
        preflight(star_daemon.port, "/v2/models/fc100-100-10/infer", origins[i], &r);
        assert_int_equal(r.status, 204);
        assert_header(&r, "Access-Control-Allow-Origin", origins[i]);
        assert_header(&r, "Access-Control-Allow-Methods", "POST");
        reply_free(&r);
    }
}

static void test_bad_list_stops_startup(void **state)
{
    (void)state;
    const char *bad[] = {"https://a.example/", "a.example", "https://a.example, http://b",
                         "ftp://a.example", "https://a.example,,http://b.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s --check --cors-origins '%s' 2>&1", tu_bin("blindspotd"),
                 bad[i]);
        int rc = tu_run(cmd, &out);
        if (rc == 0 || !strstr(out, "--cors-origins"))
            fail_msg("accepted %s: %s", bad[i], out);
        free(out);
    }
}

static void test_openapi_document(void **state)
{
    (void)state;
    char *want = NULL;
    assert_int_equal(tu_run("cat api/openapi.yaml", &want), 0);
    reply r;
    request_on(off_daemon.port, "/openapi.yaml", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, strlen(want));
    assert_memory_equal(r.body, want, r.len);
    free(want);
    assert_header(&r, "Content-Type", "application/yaml");
    assert_header(&r, "Cache-Control", "no-cache");
    char etag[64], hdr[96];
    assert_non_null(header_of(&r, "ETag", etag, sizeof etag));
    assert_int_equal(strlen(etag), 18);
    assert_int_equal(etag[0], '"');
    reply_free(&r);

    /* If-None-Match with its ETag: 304, no body, the same ETag */
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    const char *inm[] = {hdr, NULL};
    req_opts o = {.headers = inm};
    request_on(off_daemon.port, "/openapi.yaml", &o, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    assert_header(&r, "ETag", etag);
    reply_free(&r);
    const char *other[] = {"If-None-Match: \"0123456789abcdef\"", NULL};
    o.headers = other;
    request_on(off_daemon.port, "/openapi.yaml", &o, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);

    /* HEAD as GET, without the body */
    req_opts h = {.method = "HEAD"};
    request_on(off_daemon.port, "/openapi.yaml", &h, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    assert_header(&r, "ETag", etag);
    reply_free(&r);
}

/* The pages and the files they load are the files of server/studio/ (and
 * Redoc's bundle), byte for byte; pages may load and call only the
 * daemon's own origin. */
static void test_studio_files(void **state)
{
    (void)state;
    static const struct {
        const char *path, *file, *type;
    } files[] = {
        {"/", "server/studio/index.html", "text/html;charset=utf-8"},
        {"/ui", "server/studio/index.html", "text/html;charset=utf-8"},
        {"/paper", "server/studio/paper.html", "text/html;charset=utf-8"},
        {"/docs", "server/studio/docs.html", "text/html;charset=utf-8"},
        {"/studio/studio.js", "server/studio/studio.js", "text/javascript;charset=utf-8"},
        {"/studio/api.js", "server/studio/api.js", "text/javascript;charset=utf-8"},
        {"/studio/studio.css", "server/studio/studio.css", "text/css;charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len;
        unsigned char *want = tu_read_file(files[i].file, &len);
        assert_non_null(want);
        reply r;
        request_on(off_daemon.port, files[i].path, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, len);
        assert_memory_equal(r.body, want, len);
        free(want);
        assert_header(&r, "Content-Type", files[i].type);
        assert_header(&r, "X-Content-Type-Options", "nosniff");
        char csp[512];
        int page = !strncmp(files[i].type, "text/html", 9);
        assert_int_equal(header_of(&r, "Content-Security-Policy", csp, sizeof csp) != NULL, page);
        if (page) {
            assert_non_null(strstr(csp, "default-src 'self'"));
            assert_non_null(strstr(csp, "frame-ancestors 'none'"));
            /* only Redoc's page styles itself inline */
            assert_int_equal(strstr(csp, "'unsafe-inline'") != NULL, !strcmp(files[i].path, "/docs"));
            assert_null(strstr(csp, "script-src"));
        }
        reply_free(&r);
    }
    reply r;
    request_on(off_daemon.port, "/studio/redoc.standalone.js", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.len > 500000);
    assert_null(memmem(r.body, r.len, "https://cdn.", 12)); /* nothing from another origin */
    reply_free(&r);
    const char *missing[] = {"/studio/nope.js", "/studio/", "/studio/api.js/x", "/index.html"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        request_on(off_daemon.port, missing[i], NULL, &r);
        assert_int_equal(r.status, 404);
        assert_header(&r, "Content-Type", "application/json");
        reply_free(&r);
    }
    /* gzip for a client that takes it: the same bytes once inflated, under
     * another ETag; Vary tells caches to keep the two apart */
    char plain_etag[32], gz_etag[32];
    request_on(off_daemon.port, "/studio/redoc.standalone.js", NULL, &r);
    assert_non_null(header_of(&r, "ETag", plain_etag, sizeof plain_etag));
    assert_header(&r, "Vary", "Accept-Encoding");
    size_t plain_len = r.len;
    reply_free(&r);
    const char *gzip[] = {"Accept-Encoding: br;q=1, gzip;q=0.8", NULL};
    req_opts g = {.headers = gzip};
    request_on(off_daemon.port, "/studio/redoc.standalone.js", &g, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Encoding", "gzip");
    assert_non_null(header_of(&r, "ETag", gz_etag, sizeof gz_etag));
    assert_string_not_equal(gz_etag, plain_etag);
    assert_true(r.len < plain_len / 2);
    char path[256], cmd[600], *out = NULL, *dir = tu_tmpdir();
    snprintf(path, sizeof path, "%s/redoc.js.gz", dir);
    assert_int_equal(tu_write_file(path, r.body, r.len), 0);
    reply_free(&r);
    snprintf(cmd, sizeof cmd, "gzip -dc %s | cmp - build/npm/redoc-*/package/bundles/redoc.standalone.js", path);
    int rc = tu_run(cmd, &out);
    free(out);
    tu_rmtree(dir);
    free(dir);
    assert_int_equal(rc, 0);
    const char *no_gzip[] = {"Accept-Encoding: gzip;q=0, identity", NULL};
    g.headers = no_gzip;
    request_on(off_daemon.port, "/studio/redoc.standalone.js", &g, &r);
    assert_null(header_of(&r, "Content-Encoding", cmd, sizeof cmd));
    assert_int_equal(r.len, plain_len);
    reply_free(&r);

    /* a page of another origin cannot even read the studio's files */
    const char *other[] = {"Origin: https://elsewhere.example", NULL};
    req_opts o = {.headers = other};
    request_on(off_daemon.port, "/", &o, &r);
    assert_int_equal(r.status, 403);
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_site_form_post_refused),
        cmocka_unit_test(test_same_origin_and_no_origin),
        cmocka_unit_test(test_preflight),
        cmocka_unit_test(test_allowed_origin_answers),
        cmocka_unit_test(test_star),
        cmocka_unit_test(test_bad_list_stops_startup),
        cmocka_unit_test(test_openapi_document),
        cmocka_unit_test(test_studio_files),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
