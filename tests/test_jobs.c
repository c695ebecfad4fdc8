/* test_jobs — GET /v1/jobs/{id}?wait=S against a running blindspotd: the
 * request blocks until the job ends (and no longer), answers the job as it
 * is when the wait runs out, ends early when the job is cancelled by
 * another client, refuses a bad wait, and is answered at once when the
 * daemon receives SIGTERM; jobs are timed in /metrics like synchronous work.
 * Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A job that runs until cancelled or timeout seconds pass. */
static const char slow_body[] =
    "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
    "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000},\"timeout\":60}";
/* A job of milliseconds (well under a second under ThreadSanitizer). */
static const char quick_body[] =
    "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3}";

/* POSTs an async attack; its location goes to location. */
static void submit(int port, const char *body, char *location, size_t size)
{
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(port, "/v1/attacks?async=true", &o, &r);
    if (r.status != 202)
        fail_msg("expected 202, got %ld: %s", r.status, r.body ? r.body : "");
    assert_non_null(header_of(&r, "Location", location, size));
    reply_free(&r);
}

/* GET location?wait=S; the seconds it took go to *took. */
static void get_wait(int port, const char *location, const char *wait, reply *r, double *took)
{
    char path[256];
    snprintf(path, sizeof path, "%s?wait=%s", location, wait);
    req_opts o = {.timeout_ms = 60000};
    double t0 = now_s();
    request_on(port, path, &o, r);
    *took = now_s() - t0;
}

static const char *state_of(const reply *r)
{
    return json_string_value(json_object_get(r->json, "state"));
}

static void test_wait_until_done(void **state)
{
    (void)state;
    char location[128];
    submit(daemon_of_group.port, quick_body, location, sizeof location);
    reply r;
    double took;
    get_wait(daemon_of_group.port, location, "30", &r, &took);
    assert_int_equal(r.status, 200);
    assert_string_equal(state_of(&r), "done");
    assert_non_null(json_object_get(r.json, "result"));
    /* answered when the job ended, not when the 30 s ran out */
    assert_true(took < 20);
    reply_free(&r);
    /* an ended job is answered at once, whatever the wait */
    get_wait(daemon_of_group.port, location, "30", &r, &took);
    assert_string_equal(state_of(&r), "done");
    assert_true(took < 1);
    reply_free(&r);
}

/* The value of the sample line that starts with prefix in /metrics, or -1. */
static double metric(const char *prefix)
{
    reply r;
    request_on(daemon_of_group.port, "/metrics", NULL, &r);
    double v = -1;
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix)))
            v = strtod(p + strlen(prefix), NULL);
    reply_free(&r);
    return v;
}

/* Jobs are timed like synchronous work: queue and compute, by kind and model. */
static void test_jobs_in_metrics(void **state)
{
    (void)state;
    char location[128];
    submit(daemon_of_group.port, quick_body, location, sizeof location);
    reply r;
    double took;
    get_wait(daemon_of_group.port, location, "30", &r, &took);
    assert_string_equal(state_of(&r), "done");
    reply_free(&r);
    assert_true(metric("blindspot_work_total{kind=\"attack\",model=\"fc10-1e-4\",outcome=\"success\"} ") >= 1);
    assert_true(metric("blindspot_work_compute_seconds_count{kind=\"attack\",model=\"fc10-1e-4\"} ") >= 1);
    request_on(daemon_of_group.port, "/v1/models/cnn/lipschitz", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_true(metric("blindspot_work_total{kind=\"lipschitz\",model=\"cnn\",outcome=\"success\"} ") == 1);
}

static void test_wait_runs_out(void **state)
{
    (void)state;
    char location[128];
    submit(daemon_of_group.port, slow_body, location, sizeof location);
    reply r;
    double took;
    get_wait(daemon_of_group.port, location, "0.5", &r, &took);
    assert_int_equal(r.status, 200);
    const char *st = state_of(&r);
    assert_true(!strcmp(st, "queued") || !strcmp(st, "running"));
    assert_true(took >= 0.45 && took < 5);
    reply_free(&r);
    /* wait=0 is a plain GET */
    get_wait(daemon_of_group.port, location, "0", &r, &took);
    assert_int_equal(r.status, 200);
    assert_true(took < 1);
    reply_free(&r);
    req_opts del = {.method = "DELETE"};
    request_on(daemon_of_group.port, location, &del, &r);
    reply_free(&r);
}

typedef struct waiter_arg {
    const char *location;
    reply r;
    double took;
} waiter_arg;

static void *waiter(void *p)
{
    waiter_arg *a = p;
    get_wait(daemon_of_group.port, a->location, "60", &a->r, &a->took);
    return NULL;
}

static void test_wait_ends_on_cancel(void **state)
{
    (void)state;
    char location[128];
    submit(daemon_of_group.port, slow_body, location, sizeof location);
    waiter_arg a = {.location = location};
    pthread_t t;
    pthread_create(&t, NULL, waiter, &a);
    usleep(300000);
    reply r;
    req_opts del = {.method = "DELETE"};
    request_on(daemon_of_group.port, location, &del, &r);
    assert_true(r.status == 200 || r.status == 202);
    reply_free(&r);
    pthread_join(t, NULL);
    assert_int_equal(a.r.status, 200);
    assert_string_equal(state_of(&a.r), "cancelled");
    assert_true(a.took < 10);
    reply_free(&a.r);
}

static void test_wait_refused(void **state)
{
    (void)state;
    char location[128];
    submit(daemon_of_group.port, quick_body, location, sizeof location);
    static const char *const bad[] = {"abc", "-1", "301", "1e9", "nan", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reply r;
        double took;
        get_wait(daemon_of_group.port, location, bad[i], &r, &took);
        assert_error(&r, 400, "invalid_request");
        reply_free(&r);
    }
    reply r;
    double took;
    get_wait(daemon_of_group.port, "/v1/jobs/0123456789abcdef", "30", &r, &took);
    assert_error(&r, 404, "job_not_found");
    assert_true(took < 1);
    reply_free(&r);
}

/* SIGTERM answers a parked request at once and the daemon exits 0. */
static void test_wait_at_shutdown(void **state)
{
    (void)state;
    daemon_proc own;
    assert_int_equal(daemon_start(&own, NULL), 0);
    char location[128];
    submit(own.port, slow_body, location, sizeof location);
    waiter_arg a = {.location = location};
    int port = daemon_of_group.port;
    daemon_of_group.port = own.port; /* waiter() asks daemon_of_group */
    pthread_t t;
    pthread_create(&t, NULL, waiter, &a);
    usleep(300000);
    double t0 = now_s();
    assert_int_equal(daemon_stop(&own), 0);
    pthread_join(t, NULL);
    daemon_of_group.port = port;
    assert_int_equal(a.r.status, 200);
    assert_true(now_s() - t0 < 10);
    reply_free(&a.r);
    daemon_cleanup(&own);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_until_done),
        cmocka_unit_test(test_jobs_in_metrics),
        cmocka_unit_test(test_wait_runs_out),
        cmocka_unit_test(test_wait_ends_on_cancel),
        cmocka_unit_test(test_wait_refused),
        cmocka_unit_test(test_wait_at_shutdown),
    };
    return cmocka_run_group_tests(tests, daemon_group_setup, daemon_group_teardown);
}
