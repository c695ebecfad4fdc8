/* test_events — GET /v1/jobs/{id}/events (server-sent events) against a
 * running blindspotd: a running job's progress arrives in order and ends
 * with the job document GET answers; a fast job's progress is coalesced;
 * a finished job gives its final event at once; Last-Event-ID carries the
 * ids on; a client that leaves mid-stream leaves no connection behind and
 * the job runs on; a silent job gets a keep-alive comment; 50 streams on
 * one job hold up no other request; an unknown job is 404; HEAD has no
 * body; SIGTERM ends open streams at once and the daemon exits 0.
 * Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An attack that makes no progress for long and ends at its deadline of
 * "timeout" seconds (the placeholder). */
static const char slow_fmt[] =
    "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
    "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000},\"timeout\":%d}";
/* 72 runs of the c-search within a fraction of a second. */
static const char fast_body[] =
    "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":18},"
    "\"target\":\"all\"}";
/* An evaluation of a few seconds, its progress one attack at a time (with
 * SciPy's tolerance and cold starts, the slower search, so that it lasts
 * long enough for several progress events). */
static const char eval_body[] =
    "{\"models\":[\"fc100-100-10\",\"cnn\"],\"n\":12,\"seed\":1,"
    "\"params\":{\"factr\":1e7,\"warm_start\":false}}";

/* POSTs body to path; the job's location goes to location. */
static void submit_to(int port, const char *path, const char *body, char *location, size_t size)
{
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(port, path, &o, &r);
    if (r.status != 202)
        fail_msg("expected 202, got %ld: %s", r.status, r.body ? r.body : "");
    assert_non_null(header_of(&r, "Location", location, size));
    reply_free(&r);
}

static void submit_slow(int port, int timeout, char *location, size_t size)
{
    char body[512];
    snprintf(body, sizeof body, slow_fmt, timeout);
    submit_to(port, "/v1/attacks?async=true", body, location, size);
}

/* The whole event stream of the job at location (it ends with the job). */
static void read_events(int port, const char *location, const char *const *headers, reply *r)
{
    char path[256];
    snprintf(path, sizeof path, "%s/events", location);
    req_opts o = {.headers = headers, .timeout_ms = 120000};
    request_on(port, path, &o, r);
}

/* One event of a stream. */
typedef struct event {
    unsigned long long id;
    char name[32];
    char *data; /* into the reply's body, NUL-terminated in place */
} event;

/* Splits body into its events (comments and retry: skipped); their count. */
static int parse_events(char *body, event *ev, int max)
{
    int n = 0;
    for (char *block = body; block && *block && n < max;) {
        char *end = strstr(block, "\n\n");
        if (end)
            *end = '\0';
        event e = {0};
        int has = 0;
        for (char *line = block; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (!strncmp(line, "id: ", 4))
                e.id = strtoull(line + 4, NULL, 10);
            else if (!strncmp(line, "event: ", 7))
                snprintf(e.name, sizeof e.name, "%s", line + 7), has = 1;
            else if (!strncmp(line, "data: ", 6))
                e.data = line + 6;
            line = nl ? nl + 1 : NULL;
        }
        if (has)
            ev[n++] = e;
        block = end ? end + 2 : NULL;
    }
    return n;
}

/* The daemon's open file descriptors. */
static int open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    assert_non_null(dir);
    int n = 0;
    while (readdir(dir))
        n++;
    closedir(dir);
    return n;
}

/* A running job's progress in order, then its document as GET has it. */
static void test_progress_then_document(void **state)
{
    (void)state;
    char loc[128];
    submit_to(daemon_of_group.port, "/v1/evaluations", eval_body, loc, sizeof loc);
    reply r, get;
    read_events(daemon_of_group.port, loc, NULL, &r);
    assert_int_equal(r.status, 200);
    char type[64];
    assert_string_equal(header_of(&r, "Content-Type", type, sizeof type), "text/event-stream");
    assert_non_null(strstr(r.body, "retry: "));
    event ev[256];
    int n = parse_events(r.body, ev, 256);
    assert_true(n >= 3);
    int last_done = -1, running = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(ev[i].id, (unsigned long long)i + 1);
        if (i == n - 1)
            break;
        assert_string_equal(ev[i].name, "progress");
        json_t *p = json_loads(ev[i].data, 0, NULL);
        assert_non_null(p);
        int done = (int)json_integer_value(json_object_get(p, "done"));
        assert_true(done >= last_done);
        if (!strcmp(json_string_value(json_object_get(p, "state")), "running"))
            running++;
        last_done = done;
        json_decref(p);
    }
    assert_true(running >= 2);
    assert_string_equal(ev[n - 1].name, "done");
    request_on(daemon_of_group.port, loc, NULL, &get);
    assert_int_equal(get.status, 200);
    assert_string_equal(ev[n - 1].data, get.body);
    reply_free(&get);
    reply_free(&r);
}

/* 72 progress callbacks in a fraction of a second make a handful of events. */
static void test_progress_coalesced(void **state)
{
    (void)state;
    char loc[128];
    submit_to(daemon_of_group.port, "/v1/attacks?async=true", fast_body, loc, sizeof loc);
    double t0 = now_s();
    reply r;
    read_events(daemon_of_group.port, loc, NULL, &r);
    double took = now_s() - t0;
    event ev[256];
    int n = parse_events(r.body, ev, 256);
    assert_string_equal(ev[n - 1].name, "done");
    if (n - 1 > 2 + (int)(took / 0.25))
        fail_msg("%d progress events in %.2f s", n - 1, took);
    reply_free(&r);
}

/* A finished job: its final event at once; Last-Event-ID carries the ids on. */
static void test_finished_job(void **state)
{
    (void)state;
    char loc[128], path[160];
    submit_to(daemon_of_group.port, "/v1/attacks?async=true", fast_body, loc, sizeof loc);
    snprintf(path, sizeof path, "%s?wait=60", loc);
    reply get, r;
    req_opts w = {.timeout_ms = 70000};
    request_on(daemon_of_group.port, path, &w, &get);
    assert_string_equal(json_string_value(json_object_get(get.json, "state")), "done");
    static const char *const last[] = {"Last-Event-ID: 41", NULL};
    double t0 = now_s();
    read_events(daemon_of_group.port, loc, last, &r);
    assert_true(now_s() - t0 < 2);
    event ev[4];
    int n = parse_events(r.body, ev, 4);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, 42);
    assert_string_equal(ev[0].name, "done");
    assert_string_equal(ev[0].data, get.body);
    reply_free(&r);
    reply_free(&get);
}

static void test_unknown_and_head(void **state)
{
    (void)state;
    reply r;
    request_on(daemon_of_group.port, "/v1/jobs/0123456789abcdef/events", NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    char loc[128], path[160], type[64];
    submit_slow(daemon_of_group.port, 2, loc, sizeof loc);
    snprintf(path, sizeof path, "%s/events", loc);
    req_opts head = {.method = "HEAD", .timeout_ms = 1500};
    request_on(daemon_of_group.port, path, &head, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Content-Type", type, sizeof type), "text/event-stream");
    assert_int_equal(r.len, 0);
    reply_free(&r);
    snprintf(path, sizeof path, "%s?wait=60", loc);
    req_opts w = {.timeout_ms = 70000};
    request_on(daemon_of_group.port, path, &w, &r);
    reply_free(&r);
}

/* A client leaving mid-stream (with no news to send it) frees its
 * connection at once, and the job runs on to its end. */
static void test_client_leaves(void **state)
{
    (void)state;
    char loc[128], path[256];
    int before = open_fds(daemon_of_group.pid);
    submit_slow(daemon_of_group.port, 4, loc, sizeof loc);
    snprintf(path, sizeof path, "%s/events", loc);
    reply r;
    req_opts o = {.timeout_ms = 800};
    request_on(daemon_of_group.port, path, &o, &r);
    assert_int_not_equal(r.curl_error, 0); /* cut short by the client */
    reply_free(&r);
    pid_t pid = daemon_of_group.pid;
    int now = open_fds(pid);
    for (double t0 = now_s(); now > before && now_s() - t0 < 2.5; now = open_fds(pid))
        usleep(50000);
    if (now > before)
        fail_msg("%d descriptors open before the stream, %d after the client left", before,
                 now);
    request_on(daemon_of_group.port, loc, NULL, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "running");
    reply_free(&r);
    snprintf(path, sizeof path, "%s?wait=60", loc);
    req_opts w = {.timeout_ms = 70000};
    request_on(daemon_of_group.port, path, &w, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "error"),
                                                          "code")),
                        "deadline_exceeded");
    reply_free(&r);
}

/* A job with no news for JOBS_HEARTBEAT (15 s) seconds: a keep-alive comment. */
static void test_heartbeat(void **state)
{
    (void)state;
    char loc[128], path[256];
    submit_slow(daemon_of_group.port, 30, loc, sizeof loc);
    snprintf(path, sizeof path, "%s/events", loc);
    reply r;
    req_opts o = {.timeout_ms = 16500};
    request_on(daemon_of_group.port, path, &o, &r);
    assert_non_null(r.body);
    char *first = strstr(r.body, "event: progress");
    assert_non_null(first);
    assert_non_null(strstr(first, "\n\n: keep-alive\n\n"));
    reply_free(&r);
    req_opts del = {.method = "DELETE"};
    request_on(daemon_of_group.port, loc, &del, &r);
    reply_free(&r);
}

typedef struct streamer {
    int port;
    const char *location;
    reply r;
} streamer;

static void *stream_thread(void *arg)
{
    streamer *s = arg;
    read_events(s->port, s->location, NULL, &s->r);
    return NULL;
}

#define N_STREAMS 50

/* A catalog read and a fast attack, as another client sends them; answers
 * the seconds they took. */
static double other_requests(void)
{
    double t0 = now_s();
    reply r;
    request_on(daemon_of_group.port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    req_opts o = {.headers = json_body_type, .body = fast_body, .len = strlen(fast_body)};
    request_on(daemon_of_group.port, "/v1/attacks", &o, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    return now_s() - t0;
}

/* 50 streams on one job: other requests and workers are not held up, and
 * every stream ends with the job. */
static void test_many_streams(void **state)
{
    (void)state;
    char loc[128];
    /* the other requests alone first: how long they take on this build
     * and machine (sanitizers slow them several times over) */
    double base = other_requests();
    submit_slow(daemon_of_group.port, 4, loc, sizeof loc);
    static streamer s[N_STREAMS];
    pthread_t th[N_STREAMS];
    for (int i = 0; i < N_STREAMS; i++) {
        s[i] = (streamer){.port = daemon_of_group.port, .location = loc};
        pthread_create(&th[i], NULL, stream_thread, &s[i]);
    }
    usleep(300000);
    double took = other_requests();
    for (int i = 0; i < N_STREAMS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(s[i].r.status, 200);
        event ev[64];
        int n = parse_events(s[i].r.body, ev, 64);
        assert_true(n >= 2);
        assert_string_equal(ev[n - 1].name, "failed");
        reply_free(&s[i].r);
    }
    /* checked once every stream has ended, so a failure leaves no thread */
    if (took > 3 * base + 1.0)
        fail_msg("other requests took %.2f s beside %d streams, %.2f s alone", took, N_STREAMS,
                 base);
}

/* SIGTERM with streams open: they end at once and the daemon exits 0. */
static void test_sigterm_ends_streams(void **state)
{
    (void)state;
    daemon_proc e;
    assert_int_equal(daemon_start(&e, NULL), 0);
    char loc[128];
    submit_slow(e.port, 60, loc, sizeof loc);
    static streamer s[5];
    pthread_t th[5];
    for (int i = 0; i < 5; i++) {
        s[i] = (streamer){.port = e.port, .location = loc};
        pthread_create(&th[i], NULL, stream_thread, &s[i]);
    }
    usleep(500000);
    double t0 = now_s();
    int rc = daemon_stop(&e);
    double took = now_s() - t0;
    for (int i = 0; i < 5; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(s[i].r.status, 200);
        assert_int_equal(s[i].r.curl_error, 0);
        reply_free(&s[i].r);
    }
    daemon_cleanup(&e);
    assert_int_equal(rc, 0);
    if (took > 3)
        fail_msg("SIGTERM took %.2f s with streams open", took);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_then_document),
        cmocka_unit_test(test_progress_coalesced),
        cmocka_unit_test(test_finished_job),
        cmocka_unit_test(test_unknown_and_head),
        cmocka_unit_test(test_client_leaves),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_many_streams),
        cmocka_unit_test(test_sigterm_ends_streams),
    };
    return cmocka_run_group_tests(tests, daemon_group_setup, daemon_group_teardown);
}
