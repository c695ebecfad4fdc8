/* test_quota — per-client quotas against a running blindspotd: the rate of
 * compute requests (429 rate_limited with Retry-After, decided from the
 * headers, the bucket refilling), the cap on a client's requests in flight
 * and on its jobs, the bounded table of clients, and the job table that
 * one client cannot fill: DELETE frees a finished job's slot, a full table
 * forgets the finished job that ended longest ago, and only a table full
 * of queued and running jobs refuses. Other clients are other loopback
 * addresses (Linux routes all of 127/8 to lo). Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Compute that takes a moment: a GET, so it has no body. */
static const char lipschitz[] = "/v1/models/fc10-1e-4/lipschitz";
/* An attack of milliseconds. */
static const char fast_body[] = "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\","
                                "\"index\":1},\"target\":3,\"method\":\"fgsm\"}";
/* An attack that runs until cancelled or its timeout. */
static const char slow_body[] =
    "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
    "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000},\"timeout\":%g}";

/* GET path from the local address iface (NULL: 127.0.0.1). */
static void get_from(int port, const char *iface, const char *path, reply *r)
{
    req_opts o = {.interface = iface};
    request_on(port, path, &o, r);
}

/* POSTs a JSON body to path from iface. */
static void post_from(int port, const char *iface, const char *path, const char *body,
                      reply *r)
{
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body),
                  .interface = iface};
    request_on(port, path, &o, r);
}

/* An async attack from iface, expected 202; its location into location. */
static void submit_from(int port, const char *iface, const char *body, char *location)
{
    reply r;
    post_from(port, iface, "/v1/attacks?async=true", body, &r);
    if (r.status != 202)
        fail_msg("expected 202, got %ld: %s", r.status, r.body ? r.body : "");
    assert_non_null(header_of(&r, "Location", location, 128));
    reply_free(&r);
}

static void slow(char *buf, size_t size, double timeout)
{
    snprintf(buf, size, slow_body, timeout);
}

/* Asserts r is a 429 of code with Retry-After retry (seconds; 0: any). */
static void assert_429(const reply *r, const char *code, int retry)
{
    assert_error(r, 429, code);
    char buf[32];
    assert_non_null(header_of(r, "Retry-After", buf, sizeof buf));
    if (retry)
        assert_int_equal(atoi(buf), retry);
    else
        assert_true(atoi(buf) >= 1);
}

/* The value of series in /metrics now; checks the exposition with promtool. */
static double metric_now(int port, const char *series)
{
    reply r;
    request_on(port, "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_promtool_accepts(r.body, r.len);
    double v = metric_value(r.body, series);
    reply_free(&r);
    return v;
}

/* Stops the daemon (it exits 0) and removes its folder. */
static void stop(daemon_proc *d)
{
    assert_int_equal(daemon_stop(d), 0);
    daemon_cleanup(d);
}

static const char *state_of(const reply *r)
{
    return json_string_value(json_object_get(r->json, "state"));
}

/* Waits up to 30 s for the job to be in state (NULL: any final one). */
static void wait_state(int port, const char *location, const char *state)
{
    double until = now_s() + 30;
    for (;;) {
        reply r;
        request_on(port, location, NULL, &r);
        assert_int_equal(r.status, 200);
        const char *s = state_of(&r);
        int ok = state ? !strcmp(s, state)
                       : !strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
        if (ok) {
            reply_free(&r);
            return;
        }
        if (now_s() > until)
            fail_msg("%s is still %s", location, s);
        reply_free(&r);
        usleep(20000);
    }
}

static long delete_job(int port, const char *location, reply *r)
{
    req_opts o = {.method = "DELETE"};
    request_on(port, location, &o, r);
    return r->status;
}

/* The rate: a burst, then 429 with Retry-After until a token is back;
 * counted only on compute routes, per client, before the body is read. */
static void test_rate_limit(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--rate-limit", "2", "--rate-burst", "3", "--max-body", "1K", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    reply r;
    for (int i = 0; i < 3; i++) {
        get_from(d.port, NULL, lipschitz, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    get_from(d.port, NULL, lipschitz, &r);
    assert_429(&r, "rate_limited", 1);
    reply_free(&r);
    /* on /v2 in the Open Inference Protocol's shape */
    post_from(d.port, NULL, "/v2/models/fc10-1e-4/infer", "{}", &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "rate_limited");
    assert_true(json_is_string(json_object_get(r.json, "error")));
    reply_free(&r);
    /* not a compute route: not counted */
    get_from(d.port, NULL, "/v1/models", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    /* refused from the headers: the body (over --max-body) is never read */
    char big[4096];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    post_from(d.port, NULL, "/v1/attacks", big, &r);
    assert_429(&r, "rate_limited", 1);
    reply_free(&r);
    /* another client has a bucket of its own */
    get_from(d.port, "127.0.0.2", lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    /* the bucket refills at 2 a second */
    usleep(1100000);
    get_from(d.port, NULL, lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_true(metric_now(d.port, "blindspot_rate_limited_total{reason=\"rate\"}") == 3);
    assert_true(metric_now(d.port, "blindspot_rate_limited_total{reason=\"client_work\"}") == 0);
    assert_true(metric_now(d.port, "blindspot_quota_clients") == 2);
    stop(&d);
}

/* Retry-After is the time until the next token, rounded up; the table of
 * clients holds --max-clients idle ones plus --max-connections, and
 * forgets the least recently seen (whose bucket is full again then). */
static void test_retry_after_and_client_table(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--rate-limit", "0.25", "--rate-burst", "1", "--max-clients", "2",
                           "--max-connections", "2", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    reply r;
    get_from(d.port, "127.0.0.2", lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    get_from(d.port, "127.0.0.2", lipschitz, &r);
    assert_429(&r, "rate_limited", 4);
    reply_free(&r);
    for (int i = 3; i <= 10; i++) {
        char iface[32];
        snprintf(iface, sizeof iface, "127.0.0.%d", i);
        get_from(d.port, iface, lipschitz, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    assert_true(metric_now(d.port, "blindspot_quota_clients") == 4);
    get_from(d.port, "127.0.0.2", lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    stop(&d);
}

typedef struct attack_arg {
    int port;
    const char *body;
    reply r;
} attack_arg;

static void *attack_client(void *p)
{
    attack_arg *a = p;
    post_from(a->port, NULL, "/v1/attacks", a->body, &a->r);
    return NULL;
}

/* --max-client-work: a client with that many requests in flight is
 * refused; another client is not. */
static void test_client_work(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--workers", "1", "--max-client-work", "1", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    char body[512];
    slow(body, sizeof body, 2);
    attack_arg a = {.port = d.port, .body = body};
    pthread_t t;
    pthread_create(&t, NULL, attack_client, &a);
    double t0 = now_s();
    while (metric_now(d.port, "blindspot_workers_busy") != 1) {
        if (now_s() - t0 > 10)
            fail_msg("the attack did not start");
        usleep(20000);
    }
    reply r;
    get_from(d.port, NULL, lipschitz, &r);
    assert_429(&r, "too_many_client_requests", 1);
    reply_free(&r);
    get_from(d.port, "127.0.0.2", lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    pthread_join(t, NULL);
    assert_int_equal(a.r.status, 504); /* its budget ran out, as it was made to */
    reply_free(&a.r);
    get_from(d.port, NULL, lipschitz, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_true(metric_now(d.port, "blindspot_rate_limited_total{reason=\"client_work\"}") == 1);
    stop(&d);
}

/* --max-client-jobs, eviction before refusal, refusal only when the table
 * is full of live jobs, and DELETE that frees. */
static void test_job_caps_and_eviction(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--workers", "1", "--max-client-jobs", "3", "--max-jobs", "4",
                           "--job-ttl", "600", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    char body[512], mine[3][128], other[128], fresh[128];
    slow(body, sizeof body, 60);
    for (int i = 0; i < 3; i++)
        submit_from(d.port, NULL, body, mine[i]);
    reply r;
    post_from(d.port, NULL, "/v1/attacks?async=true", body, &r);
    assert_429(&r, "too_many_client_jobs", 0);
    reply_free(&r);
    submit_from(d.port, "127.0.0.2", body, other);
    /* four live jobs: the table is full and nothing may be forgotten */
    post_from(d.port, "127.0.0.3", "/v1/attacks?async=true", fast_body, &r);
    assert_int_equal(r.status, 503);
    assert_error(&r, 503, "too_many_jobs");
    reply_free(&r);
    /* a cancelled job makes room: the new job forgets it */
    delete_job(d.port, mine[0], &r);
    reply_free(&r);
    wait_state(d.port, mine[0], "cancelled");
    submit_from(d.port, NULL, fast_body, fresh);
    get_from(d.port, NULL, mine[0], &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    assert_true(metric_now(d.port, "blindspot_jobs_evicted_total") == 1);
    /* DELETE of a finished job answers it as it was and frees its slot */
    for (int i = 1; i < 3; i++) {
        delete_job(d.port, mine[i], &r);
        reply_free(&r);
    }
    delete_job(d.port, other, &r);
    reply_free(&r);
    wait_state(d.port, fresh, "done");
    assert_int_equal(delete_job(d.port, fresh, &r), 200);
    assert_string_equal(state_of(&r), "done");
    assert_non_null(json_object_get(r.json, "result"));
    reply_free(&r);
    get_from(d.port, NULL, fresh, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    assert_int_equal(delete_job(d.port, fresh, &r), 404);
    reply_free(&r);
    /* three slots are taken by cancelled jobs, one is free: no eviction */
    for (int i = 1; i < 3; i++)
        wait_state(d.port, mine[i], "cancelled");
    submit_from(d.port, NULL, fast_body, fresh);
    assert_true(metric_now(d.port, "blindspot_jobs_evicted_total") == 1);
    assert_true(metric_now(d.port, "blindspot_rate_limited_total{reason=\"client_jobs\"}") == 1);
    stop(&d);
}

/* A job forgotten by DELETE or by eviction is gone from the state file
 * too: a restart on the same file does not bring it back. */
static void test_forgotten_jobs_leave_the_store(void **state)
{
    (void)state;
    daemon_proc a, b;
    const char *extra[] = {"--max-jobs", "2", "--job-ttl", "600", NULL};
    assert_int_equal(daemon_start(&a, extra), 0);
    char db[600], deleted[128], evicted[128], kept[128], last[128];
    snprintf(db, sizeof db, "%s/state.sqlite", a.dir);
    submit_from(a.port, NULL, fast_body, deleted);
    wait_state(a.port, deleted, "done");
    reply r;
    assert_int_equal(delete_job(a.port, deleted, &r), 200);
    reply_free(&r);
    submit_from(a.port, NULL, fast_body, evicted);
    wait_state(a.port, evicted, "done");
    submit_from(a.port, NULL, fast_body, kept);
    wait_state(a.port, kept, "done");
    submit_from(a.port, NULL, fast_body, last); /* the table is full: evicted goes */
    wait_state(a.port, last, "done");
    assert_int_equal(daemon_stop(&a), 0);
    const char *again[] = {"--state", db, "--max-jobs", "2", "--job-ttl", "600", NULL};
    assert_int_equal(daemon_start(&b, again), 0);
    const char *gone[] = {deleted, evicted}, *there[] = {kept, last};
    for (int i = 0; i < 2; i++) {
        get_from(b.port, NULL, gone[i], &r);
        assert_error(&r, 404, "job_not_found");
        reply_free(&r);
        get_from(b.port, NULL, there[i], &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    stop(&b);
    daemon_cleanup(&a);
}

/* How many of the n jobs at locations answer 404 (the others 200). */
static int forgotten(int port, char (*locations)[128], int n)
{
    int gone = 0;
    for (int i = 0; i < n; i++) {
        reply r;
        get_from(port, NULL, locations[i], &r);
        if (r.status == 404)
            gone++;
        else
            assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    return gone;
}

/* The probe with the default limits: one client sends 256 cheap
 * async jobs (and is held to 16 live ones); the table full of its
 * finished jobs then still takes another client's job, forgetting the
 * oldest, and the flooding client with 16 live jobs gets 429, not the
 * others 503. */
static void test_flood_of_jobs(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--job-ttl", "3600", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    static char flood[256][128];
    char location[128], body[512];
    int accepted = 0, limited = 0;
    double t0 = now_s();
    while (accepted < 256) {
        reply r;
        post_from(d.port, NULL, "/v1/attacks?async=true", fast_body, &r);
        if (r.status == 202) {
            assert_non_null(header_of(&r, "Location", flood[accepted], sizeof flood[0]));
            accepted++;
        } else {
            assert_429(&r, "too_many_client_jobs", 0);
            limited++;
            usleep(10000);
        }
        reply_free(&r);
        if (now_s() - t0 > 120)
            fail_msg("only %d of 256 jobs accepted in 120 s", accepted);
    }
    t0 = now_s();
    while (metric_now(d.port, "blindspot_jobs{state=\"done\"}") < 256) {
        if (now_s() - t0 > 60)
            fail_msg("the 256 jobs did not finish");
        usleep(50000);
    }
    /* the table is full of finished jobs: another client gets in, and one
     * of them (the one that ended first) is forgotten */
    submit_from(d.port, "127.0.0.2", fast_body, location);
    assert_int_equal(forgotten(d.port, flood, 256), 1);
    reply r;
    /* the flooding client holds 16 live jobs at most */
    slow(body, sizeof body, 60);
    for (int i = 0; i < 16; i++)
        submit_from(d.port, NULL, body, location);
    post_from(d.port, NULL, "/v1/attacks?async=true", body, &r);
    assert_429(&r, "too_many_client_jobs", 0);
    reply_free(&r);
    submit_from(d.port, "127.0.0.2", fast_body, location);
    submit_from(d.port, "127.0.0.3", fast_body, location);
    assert_int_equal(forgotten(d.port, flood, 256), 19);
    assert_true(metric_now(d.port, "blindspot_jobs_evicted_total") == 19);
    assert_true(metric_now(d.port, "blindspot_rate_limited_total{reason=\"client_jobs\"}") ==
                limited + 1);
    stop(&d);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_retry_after_and_client_table),
        cmocka_unit_test(test_client_work),
        cmocka_unit_test(test_job_caps_and_eviction),
        cmocka_unit_test(test_forgotten_jobs_leave_the_store),
        cmocka_unit_test(test_flood_of_jobs),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
