/* test_auth — --auth-tokens against a daemon: a request without a token or
 * with a wrong one is 401 with WWW-Authenticate, a token stored as its
 * SHA-256 works, a token without the route's scope is 403 naming the
 * scope; another client's job is 404 on GET, DELETE and events (and the
 * events accept ?access_token=, no other route does); health stays open,
 * /metrics is open unless --metrics-auth; SIGHUP reads the file again (and
 * a bad file keeps the old tokens); job ids are 32 random hex digits; a
 * restart keeps the owners; a malformed file stops the start-up naming
 * its line; without tokens the daemon refuses to listen off loopback
 * unless --insecure-no-auth, which it logs; --check reads the file too;
 * the CLI sends --token. Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* alice may infer and attack; bob's token is stored hashed and may only
 * infer; root is the operator; alice-ro is alice's read-only token. */
#define TOKENS                                                                                 \
    "# clients of the test daemon\n"                                                           \
    "alice-secret-0123 alice infer,attack\n"                                                   \
    "\n"                                                                                       \
    "sha256:e6ae6c9d31a0a1fe9b6a4a3b8bbfa6e0e0e0b8e1b0e1f2ec5b0a7f1ab0e5a0a7 nobody infer\n"   \
    "sha256:%s bob infer   # stored hashed\n"                                                  \
    "root-secret-4567 root infer,attack,evaluate,admin\n"                                      \
    "alice-ro-secret alice infer\n"                                                            \
    "carol-secret-89ab carol infer,attack,evaluate\n"

static const char quick_body[] =
    "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3}";

static daemon_proc d;
static char tokens_path[600];

/* The SHA-256 of s in hex, by sha256sum (coreutils). */
static void sha256_hex(const char *s, char hex[65])
{
    char cmd[200], *out = NULL;
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | sha256sum", s);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(out);
    memcpy(hex, out, 64);
    hex[64] = '\0';
    free(out);
}

static void write_tokens(const char *path, const char *text)
{
    assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

static void write_default_tokens(const char *path)
{
    char hex[65], text[1200];
    sha256_hex("bob-secret-cdef", hex);
    snprintf(text, sizeof text, TOKENS, hex);
    write_tokens(path, text);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    char *dir = tu_tmpdir();
    snprintf(tokens_path, sizeof tokens_path, "%s/tokens", dir);
    free(dir);
    write_default_tokens(tokens_path);
    const char *extra[] = {"--auth-tokens", tokens_path, NULL};
    if (daemon_start(&d, extra)) {
        fprintf(stderr, "daemon did not start; see %s\n", d.log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&d);
    daemon_cleanup(&d);
    curl_global_cleanup();
    return rc;
}

/* A request with token (NULL: none) as Bearer. */
static void call(int port, const char *method, const char *path, const char *token,
                 const char *body, reply *r)
{
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    const char *headers[] = {"Content-Type: application/json", token ? auth : NULL, NULL};
    req_opts o = {.method = method, .headers = headers, .body = body,
                  .len = body ? strlen(body) : 0, .timeout_ms = 60000};
    request_on(port, path, &o, r);
}

static void expect_status(int port, const char *method, const char *path, const char *token,
                          long status)
{
    reply r;
    call(port, method, path, token, NULL, &r);
    if (r.status != status)
        fprintf(stderr, "%s %s: %ld %.*s\n", method, path, r.status, (int)r.len, r.body);
    assert_int_equal(r.status, status);
    reply_free(&r);
}

/* An async attack by token; its id into id (33 bytes). */
static void submit_job(int port, const char *token, char id[64])
{
    reply r;
    call(port, "POST", "/v1/attacks?async=true", token, quick_body, &r);
    assert_int_equal(r.status, 202);
    const char *s = json_string_value(json_object_get(r.json, "id"));
    assert_non_null(s);
    snprintf(id, 64, "%s", s);
    reply_free(&r);
}

static void test_missing_token_is_401(void **state)
{
    (void)state;
    reply r;
    call(d.port, "GET", "/v1/models", NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    char buf[200];
    assert_string_equal(header_of(&r, "WWW-Authenticate", buf, sizeof buf),
                        "Bearer realm=\"blindspot\"");
    reply_free(&r);
    /* refused from the headers: the body is never read, the attack never runs */
    call(d.port, "POST", "/v1/attacks", NULL, quick_body, &r);
    assert_error(&r, 401, "unauthorized");
    reply_free(&r);
    /* /v2 answers in its own error shape */
    call(d.port, "GET", "/v2/models/cnn", NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "unauthorized");
    reply_free(&r);
    /* another scheme is no token either */
    const char *basic[] = {"Authorization: Basic YWxpY2U6c2VjcmV0", NULL};
    req_opts o = {.headers = basic};
    request_on(d.port, "/v1/models", &o, &r);
    assert_error(&r, 401, "unauthorized");
    reply_free(&r);
}

static void test_wrong_token_is_401(void **state)
{
    (void)state;
    reply r;
    call(d.port, "GET", "/v1/models", "alice-secret-0124", NULL, &r);
    assert_error(&r, 401, "unauthorized");
    char buf[200];
    assert_non_null(header_of(&r, "WWW-Authenticate", buf, sizeof buf));
    assert_non_null(strstr(buf, "Bearer realm=\"blindspot\""));
    assert_non_null(strstr(buf, "invalid_token"));
    reply_free(&r);
    /* the stored hash is not a token */
    char hex[72] = "sha256:";
    sha256_hex("bob-secret-cdef", hex + 7);
    expect_status(d.port, "GET", "/v1/models", hex, 401);
    expect_status(d.port, "GET", "/v1/models", "alice-secret-0123", 200);
}

static void test_hashed_token_works(void **state)
{
    (void)state;
    expect_status(d.port, "GET", "/v1/models", "bob-secret-cdef", 200);
    expect_status(d.port, "GET", "/v2/models/cnn", "bob-secret-cdef", 200);
}

static void test_missing_scope_is_403(void **state)
{
    (void)state;
    reply r;
    call(d.port, "POST", "/v1/attacks", "bob-secret-cdef", quick_body, &r);
    assert_error(&r, 403, "forbidden");
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_object_get(r.json, "error"), "message")), "attack"));
    char buf[200];
    assert_non_null(header_of(&r, "WWW-Authenticate", buf, sizeof buf));
    assert_non_null(strstr(buf, "scope=\"attack\""));
    reply_free(&r);
    expect_status(d.port, "POST", "/v1/evaluations", "alice-secret-0123", 403);
    expect_status(d.port, "GET", "/v1/models/fc10-1e-4/lipschitz", "alice-secret-0123", 403);
    expect_status(d.port, "POST", "/v2/repository/index", "carol-secret-89ab", 403);
    expect_status(d.port, "POST", "/v2/repository/index", "root-secret-4567", 200);
    call(d.port, "POST", "/v1/attacks", "alice-secret-0123", quick_body, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_open_routes(void **state)
{
    (void)state;
    expect_status(d.port, "GET", "/v2/health/live", NULL, 200);
    expect_status(d.port, "GET", "/v2/health/ready", NULL, 200);
    expect_status(d.port, "GET", "/metrics", NULL, 200);
    expect_status(d.port, "GET", "/", NULL, 200);
    expect_status(d.port, "GET", "/openapi.yaml", NULL, 200);
    /* a wrong token on an open route does not matter */
    expect_status(d.port, "GET", "/v2/health/ready", "nope", 200);
}

static void test_foreign_job_is_404(void **state)
{
    (void)state;
    char id[64], path[160];
    submit_job(d.port, "alice-secret-0123", id);
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=30", id);
    expect_status(d.port, "GET", path, "alice-secret-0123", 200);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    reply r;
    call(d.port, "GET", path, "carol-secret-89ab", NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    call(d.port, "DELETE", path, "carol-secret-89ab", NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/events", id);
    call(d.port, "GET", path, "carol-secret-89ab", NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    /* exactly the answer of an id nobody has */
    call(d.port, "GET", "/v1/jobs/0123456789abcdef0123456789abcdef", "carol-secret-89ab", NULL,
         &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    /* the owner's events, the token in the query as EventSource must send it */
    snprintf(path, sizeof path, "/v1/jobs/%s/events?access_token=alice-secret-0123", id);
    call(d.port, "GET", path, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "event: done"));
    reply_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/events?access_token=carol-secret-89ab", id);
    expect_status(d.port, "GET", path, NULL, 404);
    /* only there: elsewhere the query's token is no token */
    snprintf(path, sizeof path, "/v1/jobs/%s?access_token=alice-secret-0123", id);
    expect_status(d.port, "GET", path, NULL, 401);
    /* the owner's other token needs the scope of the job's kind */
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    call(d.port, "GET", path, "alice-ro-secret", NULL, &r);
    assert_error(&r, 403, "forbidden");
    reply_free(&r);
    /* a foreign DELETE left it alone; the owner's works */
    call(d.port, "DELETE", path, "alice-secret-0123", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "done");
    reply_free(&r);
}

static int is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

static void test_job_ids_are_random(void **state)
{
    (void)state;
    char a[64], b[64];
    submit_job(d.port, "alice-secret-0123", a);
    submit_job(d.port, "alice-secret-0123", b);
    assert_true(is_hex32(a));
    assert_true(is_hex32(b));
    assert_string_not_equal(a, b);
    /* no half of one id is found in the other (not a counter) */
    assert_memory_not_equal(a, b, 16);
    assert_memory_not_equal(a + 16, b + 16, 16);
}

/* Polls until token answers status on /v1/models (the reload is
 * asynchronous to the signal); fails after 10 s. */
static void wait_status(const char *token, long status)
{
    for (int i = 0; i < 200; i++) {
        reply r;
        call(d.port, "GET", "/v1/models", token, NULL, &r);
        long got = r.status;
        reply_free(&r);
        if (got == status)
            return;
        usleep(50000);
    }
    fail_msg("token %s never answered %ld", token, status);
}

static void test_sighup_reads_tokens_again(void **state)
{
    (void)state;
    write_tokens(tokens_path, "dave-secret-7777 dave infer\n"
                              "root-secret-4567 root infer,attack,evaluate,admin\n");
    kill(d.pid, SIGHUP);
    wait_status("dave-secret-7777", 200);
    expect_status(d.port, "GET", "/v1/models", "alice-secret-0123", 401);
    /* a broken file keeps the tokens in force, and says why */
    write_tokens(tokens_path, "eve-secret eve infer,steal\n");
    kill(d.pid, SIGHUP);
    char *log = NULL;
    size_t len;
    for (int i = 0; i < 200; i++) {
        free(log);
        log = (char *)tu_read_file(d.log, &len);
        if (log && strstr(log, "line 1: unknown scope 'steal'"))
            break;
        usleep(50000);
    }
    assert_non_null(strstr(log, "line 1: unknown scope 'steal'"));
    assert_non_null(strstr(log, "the tokens read before stay in force"));
    assert_null(strstr(log, "dave-secret-7777")); /* tokens are never logged */
    free(log);
    expect_status(d.port, "GET", "/v1/models", "dave-secret-7777", 200);
    expect_status(d.port, "GET", "/v1/models", "eve-secret", 401);
    write_default_tokens(tokens_path);
    kill(d.pid, SIGHUP);
    wait_status("alice-secret-0123", 200);
    wait_status("dave-secret-7777", 401);
}

static void test_metrics_auth(void **state)
{
    (void)state;
    daemon_proc m;
    const char *extra[] = {"--auth-tokens", tokens_path, "--metrics-auth", NULL};
    assert_int_equal(daemon_start(&m, extra), 0);
    reply r;
    call(m.port, "GET", "/metrics", NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized");
    reply_free(&r);
    expect_status(m.port, "GET", "/metrics", "carol-secret-89ab", 403);
    expect_status(m.port, "GET", "/metrics", "root-secret-4567", 200);
    expect_status(m.port, "GET", "/v2/health/ready", NULL, 200);
    assert_int_equal(daemon_stop(&m), 0);
    daemon_cleanup(&m);
}

static void test_restart_keeps_owners(void **state)
{
    (void)state;
    daemon_proc a, b;
    const char *extra[] = {"--auth-tokens", tokens_path, NULL};
    assert_int_equal(daemon_start(&a, extra), 0);
    char id[64], path[160];
    submit_job(a.port, "alice-secret-0123", id);
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=30", id);
    expect_status(a.port, "GET", path, "alice-secret-0123", 200);
    assert_int_equal(daemon_stop(&a), 0);
    char store[700];
    snprintf(store, sizeof store, "%s/state.sqlite", a.dir);
    const char *again[] = {"--auth-tokens", tokens_path, "--state", store, NULL};
    assert_int_equal(daemon_start(&b, again), 0);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    expect_status(b.port, "GET", path, "carol-secret-89ab", 404);
    expect_status(b.port, "GET", path, "alice-secret-0123", 200);
    assert_int_equal(daemon_stop(&b), 0);
    daemon_cleanup(&b);
    daemon_cleanup(&a);
}

/* Runs blindspotd with args (its stderr into *out); the exit status. */
static int run_daemon(const char *args, char **out)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "%s --models models --data data --state none %s 2>&1",
             tu_bin("blindspotd"), args);
    return tu_run(cmd, out);
}

static void test_malformed_file_stops_start(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), path[600], args[800], *out = NULL;
    snprintf(path, sizeof path, "%s/bad", dir);
    write_tokens(path, "# ok so far\ngood-token-1 ok infer\nlonely-token\n");
    snprintf(args, sizeof args, "--listen 127.0.0.1:%d --auth-tokens %s", free_port(), path);
    assert_int_equal(run_daemon(args, &out), 1);
    assert_non_null(strstr(out, "line 3: wants TOKEN CLIENT SCOPES"));
    free(out);
    write_tokens(path, "t1 a infer\nsha256:abcd b infer\n");
    assert_int_equal(run_daemon(args, &out), 1);
    assert_non_null(strstr(out, "line 2: sha256: wants 64 hex digits"));
    free(out);
    /* --check says so too */
    snprintf(args, sizeof args, "--check --auth-tokens %s", path);
    assert_int_equal(run_daemon(args, &out), 1);
    assert_non_null(strstr(out, "line 2: sha256: wants 64 hex digits"));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

static void test_no_tokens_stays_on_loopback(void **state)
{
    (void)state;
    char args[200], *out = NULL;
    snprintf(args, sizeof args, "--listen 0.0.0.0:%d", free_port());
    assert_int_equal(run_daemon(args, &out), 1);
    assert_non_null(strstr(out, "refusing to listen on 0.0.0.0"));
    assert_non_null(strstr(out, "--insecure-no-auth"));
    free(out);
    /* said explicitly, it starts, and the log says so loudly */
    daemon_proc open;
    const char *extra[] = {"--insecure-no-auth", NULL};
    assert_int_equal(daemon_start_on(&open, "0.0.0.0", extra), 0);
    expect_status(open.port, "GET", "/v1/models", NULL, 200);
    assert_int_equal(daemon_stop(&open), 0);
    size_t len;
    char *log = (char *)tu_read_file(open.log, &len);
    assert_non_null(log);
    assert_non_null(strstr(log, "WARNING: INSECURE: listening on 0.0.0.0"));
    free(log);
    daemon_cleanup(&open);
}

/* blindspot --server URL --token TOKEN: the token goes with the requests;
 * without it the daemon's message says a token is needed. */
static void test_cli_token(void **state)
{
    (void)state;
    char cmd[700], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d --token bob-secret-cdef info cnn",
             tu_bin("blindspot"), d.port);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "cnn"));
    free(out);
    snprintf(cmd, sizeof cmd, "BLINDSPOT_TOKEN=bob-secret-cdef %s --server=http://127.0.0.1:%d "
             "info cnn", tu_bin("blindspot"), d.port);
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --server http://127.0.0.1:%d info cnn 2>&1",
             tu_bin("blindspot"), d.port);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "needs an access token"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_token_is_401),
        cmocka_unit_test(test_wrong_token_is_401),
        cmocka_unit_test(test_hashed_token_works),
        cmocka_unit_test(test_missing_scope_is_403),
        cmocka_unit_test(test_open_routes),
        cmocka_unit_test(test_foreign_job_is_404),
        cmocka_unit_test(test_job_ids_are_random),
        cmocka_unit_test(test_cli_token),
        cmocka_unit_test(test_sighup_reads_tokens_again),
        cmocka_unit_test(test_metrics_auth),
        cmocka_unit_test(test_restart_keeps_owners),
        cmocka_unit_test(test_malformed_file_stops_start),
        cmocka_unit_test(test_no_tokens_stays_on_loopback),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
