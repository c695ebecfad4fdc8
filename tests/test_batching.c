/* test_batching — lbfgs attacks batched across requests (--attack-batch):
 * queued attacks on one model with the same params run in lockstep on one
 * worker, and every answer is bit for bit the one the attack gets alone.
 * Two daemons with one worker each serve the same requests: one with
 * --attack-batch 1 (each attack alone, the reference), one with 32 and
 * --attack-threads 2 (its model evaluations split between two threads,
 * which must not move a bit either). Checks
 * the answers (JSON with float images, PNG bytes and headers, async jobs'
 * results) and that the attacks did run in one stream; that a stream takes
 * no attack queued behind one it cannot serve; a request whose
 * budget runs out or whose client hangs up in a stream while the others
 * finish with their own answers; SIGTERM with a stream running (every
 * request answered); and --attack-batch and --attack-threads refusing 0
 * and garbage. Needs
 * `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static daemon_proc alone;   /* --attack-batch 1 */
static daemon_proc batched; /* --attack-batch 32 --attack-threads 2 */

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    const char *one[] = {"--workers", "1", "--attack-batch", "1", NULL};
    const char *many[] = {"--workers", "1", "--attack-batch", "32", "--attack-threads", "2",
                          NULL};
    if (daemon_start(&alone, one) || daemon_start(&batched, many)) {
        fprintf(stderr, "blindspotd did not become ready; logs in %s and %s\n", alone.log,
                batched.log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&alone) | daemon_stop(&batched);
    daemon_cleanup(&alone);
    daemon_cleanup(&batched);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- requests ---------------------------------------------------------- */

static const char *png_accept[] = {"Content-Type: application/json", "Accept: image/png", NULL};

typedef struct attack_req {
    char body[512];
    int png;          /* Accept: image/png */
    int async;        /* ?async=true, the job's result kept */
    long timeout_ms;  /* the client gives up after this (0: 60 s) */
    int port;
    reply r;          /* the answer (a job's: its document once final) */
} attack_req;

/* Polls GET location until the job is final; its document. */
static json_t *wait_job(int port, const char *location)
{
    double until = now_s() + 120;
    for (;;) {
        reply r;
        request_on(port, location, NULL, &r);
        if (r.status != 200)
            fail_msg("GET %s: %ld", location, r.status);
        const char *st = json_string_value(json_object_get(r.json, "state"));
        if (!strcmp(st, "done") || !strcmp(st, "failed") || !strcmp(st, "cancelled")) {
            json_t *doc = json_incref(r.json);
            reply_free(&r);
            return doc;
        }
        reply_free(&r);
        if (now_s() > until)
            fail_msg("job %s is still %s", location, st);
        usleep(20000);
    }
}

static void *send_attack(void *arg)
{
    attack_req *a = arg;
    req_opts o = {.headers = a->png ? png_accept : json_body_type, .body = a->body,
                  .len = strlen(a->body), .timeout_ms = a->timeout_ms ? a->timeout_ms : 60000};
    request_on(a->port, a->async ? "/v1/attacks?async=true" : "/v1/attacks", &o, &a->r);
    if (a->async && a->r.status == 202) {
        char location[128];
        assert_non_null(header_of(&a->r, "Location", location, sizeof location));
        json_t *job = wait_job(a->port, location);
        json_decref(a->r.json);
        a->r.json = job;
    }
    return NULL;
}

static double metric_on(int port, const char *series)
{
    reply r;
    request_on(port, "/metrics", NULL, &r);
    double v = metric_value(r.body, series);
    reply_free(&r);
    return v;
}

/* Waits (up to 60 s) until the gauge series of port's /metrics is value. */
static void wait_metric(int port, const char *series, double value)
{
    double until = now_s() + 60;
    while (metric_on(port, series) != value) {
        if (now_s() > until)
            fail_msg("%s never became %g", series, value);
        usleep(10000);
    }
}

/* The answer a as text to compare: the JSON document (a job's result) with
 * every result's wall time removed, or the image's bytes and the headers
 * with its figures. */
static char *answer_text(const attack_req *a)
{
    if (a->png) {
        char buf[64];
        size_t n = a->r.len * 2 + 512, at = 0;
        char *s = malloc(n);
        for (size_t i = 0; i < a->r.len; i++)
            at += (size_t)snprintf(s + at, n - at, "%02x", (unsigned char)a->r.body[i]);
        const char *names[] = {"X-Blindspot-Target", "X-Blindspot-Label", "X-Blindspot-Success",
                               "X-Blindspot-Status", "X-Blindspot-Distortion", "X-Blindspot-L2",
                               "X-Blindspot-Linf", "X-Blindspot-C"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            at += (size_t)snprintf(s + at, n - at, " %s", header_of(&a->r, names[i], buf,
                                                                    sizeof buf));
        return s;
    }
    json_t *doc = a->async ? json_object_get(a->r.json, "result") : a->r.json;
    assert_non_null(doc);
    size_t i;
    json_t *res;
    json_array_foreach(json_object_get(doc, "results"), i, res)
        json_object_del(res, "seconds");
    return json_dumps(doc, JSON_COMPACT);
}

/* Sends b's requests one at a time to the daemon that attacks alone and
 * checks that each answer equals b's. */
static void assert_same_as_alone(attack_req *b, int n)
{
    for (int i = 0; i < n; i++) {
        attack_req a = {.png = b[i].png, .async = b[i].async};
        memcpy(a.body, b[i].body, sizeof a.body);
        a.port = alone.port;
        send_attack(&a);
        assert_int_equal(a.r.status, b[i].r.status);
        char *x = answer_text(&a), *y = answer_text(&b[i]);
        if (strcmp(x, y))
            fail_msg("request %d (%s) answered differently in a stream:\nalone   %.300s\n"
                     "batched %.300s", i, b[i].body, x, y);
        free(x);
        free(y);
        reply_free(&a.r);
    }
}

/* The params every request of a stream shares, so that they may join it. */
#define PARAMS "\"params\":{\"lanes\":2}"
/* Long attacks: every search runs its 100 steps to convergence (on
 * fc200-200-10 about 2 s for all targets, under 0.5 s for one, alone). */
#define LONG_PARAMS \
    "\"params\":{\"search_steps\":100,\"max_iterations\":100000,\"factr\":0,\"pgtol\":0}"

/* Holds port's one worker with a slow async attack of another method (its
 * location in blocker) until free_worker. */
static void hold_worker(int port, char *blocker, size_t size)
{
    const char *slow = "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
                       "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000}}";
    reply r;
    req_opts o = {.headers = json_body_type, .body = slow, .len = strlen(slow)};
    request_on(port, "/v1/attacks?async=true", &o, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(header_of(&r, "Location", blocker, size));
    reply_free(&r);
    wait_metric(port, "blindspot_workers_busy", 1);
}

static void free_worker(int port, const char *blocker)
{
    reply r;
    req_opts del = {.method = "DELETE"};
    request_on(port, blocker, &del, &r);
    assert_int_equal(r.status, 202);
    reply_free(&r);
}

/* ---- tests ------------------------------------------------------------- */

/* 12 attacks queued behind a job that holds the one worker run as one
 * stream once it is cancelled, and each answer is the one it gets alone. */
static void test_stream_answers_as_alone(void **state)
{
    (void)state;
    char blocker[128];
    hold_worker(batched.port, blocker, sizeof blocker);

    enum { N = 12 };
    attack_req b[N];
    memset(b, 0, sizeof b);
    for (int i = 0; i < N; i++) {
        int t = (i * 7 + 3) % 10;
        b[i].png = i == 1 || i == 6;
        b[i].async = i == 4 || i == 9;
        /* 8 of one target and 4 of two, 2 lanes each: 32 rows in all */
        if (i % 3 == 2)
            snprintf(b[i].body, sizeof b[i].body,
                     "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":%d},"
                     "\"target\":[%d,%d],\"image_format\":\"floats\"," PARAMS "}", i, t,
                     (t + 4) % 10);
        else
            snprintf(b[i].body, sizeof b[i].body,
                     "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":%d},"
                     "\"target\":%d,\"image_format\":\"floats\"," PARAMS "}", i, t);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        b[i].port = batched.port;
        pthread_create(&th[i], NULL, send_attack, &b[i]);
    }
    wait_metric(batched.port, "blindspot_queue_depth", N);
    free_worker(batched.port, blocker);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        if (b[i].async)
            assert_string_equal(json_string_value(json_object_get(b[i].r.json, "state")),
                                "done");
        else
            assert_int_equal(b[i].r.status, 200);
    }
    /* All twelve ran in the one stream the first of them started. */
    assert_true(metric_on(batched.port, "blindspot_attack_streams_total") == 1);
    assert_true(metric_on(batched.port, "blindspot_attack_stream_jobs_total") == N);
    assert_same_as_alone(b, N);
    assert_true(metric_on(alone.port, "blindspot_attack_stream_jobs_total") == 0);
    reply r;
    request_on(batched.port, "/metrics", NULL, &r);
    assert_promtool_accepts(r.body, r.len);
    reply_free(&r);
    for (int i = 0; i < N; i++)
        reply_free(&b[i].r);
}

/* A stream takes no attack queued behind one it cannot serve while no
 * other worker is free to take that one: the one worker serves the queue
 * in order. */
static void test_stream_keeps_queue_order(void **state)
{
    (void)state;
    double streams = metric_on(batched.port, "blindspot_attack_streams_total");
    double jobs = metric_on(batched.port, "blindspot_attack_stream_jobs_total");
    char blocker[128];
    hold_worker(batched.port, blocker, sizeof blocker);
    attack_req q[3];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 3; i++)
        snprintf(q[i].body, sizeof q[i].body,
                 "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":%d},"
                 "\"target\":%d%s}", 30 + i, (i + 5) % 10,
                 i == 1 ? ",\"method\":\"adam-l1\",\"params\":{\"steps\":100}" : "");
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        q[i].port = batched.port;
        pthread_create(&th[i], NULL, send_attack, &q[i]);
        wait_metric(batched.port, "blindspot_queue_depth", i + 1);
    }
    free_worker(batched.port, blocker);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(q[i].r.status, 200);
        reply_free(&q[i].r);
    }
    /* the two lbfgs attacks each alone in a stream, the adam-l1 one between */
    assert_true(metric_on(batched.port, "blindspot_attack_streams_total") == streams + 2);
    assert_true(metric_on(batched.port, "blindspot_attack_stream_jobs_total") == jobs + 2);
}

/* Sends first, then once it runs the n joiners, which join its stream
 * while it runs; their answers in each. */
static void run_stream(int port, attack_req *first, attack_req *joiners, int n)
{
    double streams = metric_on(port, "blindspot_attack_streams_total");
    first->port = port;
    pthread_t t0;
    pthread_create(&t0, NULL, send_attack, first);
    wait_metric(port, "blindspot_workers_busy", 1);
    pthread_t th[4];
    for (int i = 0; i < n; i++) {
        joiners[i].port = port;
        pthread_create(&th[i], NULL, send_attack, &joiners[i]);
    }
    pthread_join(t0, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    wait_metric(port, "blindspot_workers_busy", 0);
    /* the joiners did not start streams of their own */
    wait_metric(port, "blindspot_attack_streams_total", streams + 1);
}

static void joiner_bodies(attack_req *j, int n)
{
    memset(j, 0, (size_t)n * sizeof *j);
    for (int i = 0; i < n; i++)
        snprintf(j[i].body, sizeof j[i].body,
                 "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":%d},"
                 "\"target\":%d," LONG_PARAMS "}", 20 + i, (i * 3 + 2) % 10);
}

/* A request whose budget runs out in a stream ends with its timeout answer
 * (the best found so far); the others' answers are their own. */
static void test_timeout_in_stream(void **state)
{
    (void)state;
    attack_req first = {0}, j[2];
    snprintf(first.body, sizeof first.body,
             "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
             "\"target\":\"all\",\"timeout\":0.5," LONG_PARAMS "}");
    joiner_bodies(j, 2);
    run_stream(batched.port, &first, j, 2);
    assert_error(&first.r, 504, "deadline_exceeded");
    int timed_out = 0;
    size_t i;
    json_t *res;
    json_array_foreach(json_object_get(first.r.json, "results"), i, res)
        timed_out += !strcmp(json_string_value(json_object_get(res, "status")), "timeout");
    assert_true(timed_out > 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(j[k].r.status, 200);
    assert_same_as_alone(j, 2);
    reply_free(&first.r);
    for (int k = 0; k < 2; k++)
        reply_free(&j[k].r);
}

/* A client that hangs up has its attack cancelled; the others of its
 * stream finish with their own answers. */
static void test_client_gone_in_stream(void **state)
{
    (void)state;
    const char *cancelled = "blindspot_attack_targets_total{method=\"lbfgs\","
                            "model=\"fc200-200-10\",outcome=\"cancelled\"}";
    double before = metric_on(batched.port, cancelled);
    attack_req first = {.timeout_ms = 500}, j[2];
    snprintf(first.body, sizeof first.body,
             "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":2},"
             "\"target\":\"all\"," LONG_PARAMS "}");
    joiner_bodies(j, 2);
    run_stream(batched.port, &first, j, 2);
    assert_int_equal(first.r.curl_error, CURLE_OPERATION_TIMEDOUT);
    assert_true(metric_on(batched.port, cancelled) > (isnan(before) ? 0 : before));
    for (int k = 0; k < 2; k++)
        assert_int_equal(j[k].r.status, 200);
    assert_same_as_alone(j, 2);
    reply_free(&first.r);
    for (int k = 0; k < 2; k++)
        reply_free(&j[k].r);
}

/* SIGTERM while a stream runs: every request gets an answer, its own or
 * the shutdown's, and the daemon exits 0. */
static void test_sigterm_with_stream(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--workers", "1", "--attack-batch", "32", "--drain-timeout", "1",
                           NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    enum { N = 4 };
    attack_req a[N];
    joiner_bodies(a, N);
    snprintf(a[0].body, sizeof a[0].body,
             "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
             "\"target\":\"all\"," LONG_PARAMS "}");
    pthread_t th[N];
    a[0].port = d.port;
    pthread_create(&th[0], NULL, send_attack, &a[0]);
    wait_metric(d.port, "blindspot_workers_busy", 1);
    for (int i = 1; i < N; i++) {
        a[i].port = d.port;
        pthread_create(&th[i], NULL, send_attack, &a[i]);
    }
    /* all in the pool (running in the stream, or queued for it) or already
     * answered: a slow build may finish a joiner before the others arrive */
    double until = now_s() + 60;
    for (;;) {
        double done = metric_on(d.port, "blindspot_attack_duration_seconds_count{method=\"lbfgs\","
                                        "model=\"fc200-200-10\"}");
        if (metric_on(d.port, "blindspot_workers_busy") +
                metric_on(d.port, "blindspot_queue_depth") + (isnan(done) ? 0 : done) >= N)
            break;
        if (now_s() > until)
            fail_msg("the attacks never all reached the pool");
        usleep(10000);
    }
    int status = daemon_stop(&d);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(status, 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(a[i].r.curl_error, 0);
        if (a[i].r.status != 200)
            assert_error(&a[i].r, 503, "shutting_down");
        reply_free(&a[i].r);
    }
    daemon_cleanup(&d);
}

/* --attack-batch takes a whole number of rows, at least 1; --attack-threads
 * a whole number of threads in [1, 64]. */
static void test_attack_batch_refused(void **state)
{
    (void)state;
    const char *bad[] = {"--attack-batch 0", "--attack-batch many", "--attack-batch -3",
                         "--attack-threads 0", "--attack-threads 65", "--attack-threads two"};
    const char *why[] = {"--attack-batch wants a whole number in [1, 4096]",
                         "--attack-threads wants a whole number in [1, 64]"};
    char cmd[512], *out = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s --check 2>&1", tu_bin("blindspotd"), bad[i]);
        assert_int_equal(tu_run(cmd, &out), 2);
        if (!strstr(out, why[i / 3]))
            fail_msg("%s: %s", bad[i], out);
        free(out);
    }
    snprintf(cmd, sizeof cmd, "BLINDSPOT_ATTACK_BATCH=0 %s --check 2>&1", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "BLINDSPOT_ATTACK_BATCH"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s --help", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "--attack-batch ROWS"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_answers_as_alone),
        cmocka_unit_test(test_stream_keeps_queue_order),
        cmocka_unit_test(test_timeout_in_stream),
        cmocka_unit_test(test_client_gone_in_stream),
        cmocka_unit_test(test_sigterm_with_stream),
        cmocka_unit_test(test_attack_batch_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
