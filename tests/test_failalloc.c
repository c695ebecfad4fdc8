/* test_failalloc — every allocation of a request made to fail in turn.
 *
 * The daemon runs with the shim tests/failalloc.c preloaded. For each
 * representative request (or exchange: an asynchronous job and the reads
 * that wait for it), the test fails its 1st allocation, then its 2nd, and
 * so on until the exchange runs without reaching the failed one. Each
 * time: every answer is the usual one, or an error document (a 5xx, or a
 * 4xx where the failed allocation was in a parser that reports it as a
 * refusal), never a dropped connection (except where libmicrohttpd itself
 * could not allocate: it then closes the connection, and no server can
 * answer), and the daemon stays alive and answers the next request. The
 * group ends with the daemon stopped: under ASan (`make SAN=address,undefined
 * test`) LeakSanitizer fails its exit on any leak, and so the group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/failalloc.h"
#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* No exchange here makes this many allocations; reaching it is a failure
 * of the loop, not of the daemon. */
#define MAX_ALLOCATIONS 20000

static daemon_proc d;
static failalloc_control *control;
static char control_path[600];
static reply seven_png; /* test digit 18 as the daemon serves it */

static const char *png_type[] = {"Content-Type: image/png", NULL};

/* What one exchange saw. */
typedef struct outcome {
    int n;
    reply r[4];
} outcome;

static void post(const char *path, const char *const *headers, const char *body, size_t len,
                 outcome *out)
{
    req_opts o = {.headers = headers, .body = body, .len = len};
    request_on(d.port, path, &o, &out->r[out->n++]);
}

static void post_json(const char *path, const char *body, outcome *out)
{
    post(path, json_body_type, body, strlen(body), out);
}

/* An asynchronous job's POST, then its reads (?wait=) until it ends. */
static void post_then_wait(const char *path, const char *body, outcome *out)
{
    post_json(path, body, out);
    char loc[200];
    if (out->r[0].status != 202 || !header_of(&out->r[0], "Location", loc, sizeof loc))
        return;
    char url[256];
    snprintf(url, sizeof url, "%s?wait=30", loc);
    while (out->n < 4) {
        reply *r = &out->r[out->n++];
        req_opts o = {.timeout_ms = 60000};
        request_on(d.port, url, &o, r);
        const char *state = json_string_value(json_object_get(r->json, "state"));
        if (r->status != 200 || !state || (strcmp(state, "queued") && strcmp(state, "running")))
            return;
    }
}

/* ---- the exchanges ------------------------------------------------------ */

static char *infer_json_body;

static void infer_json(outcome *out)
{
    post_json("/v2/models/fc100-100-10/infer", infer_json_body, out);
}

static char infer_binary_body[1024];
static size_t infer_binary_len;
static char infer_binary_header[64];

static void infer_binary(outcome *out)
{
    const char *headers[] = {"Content-Type: application/octet-stream", infer_binary_header, NULL};
    post("/v2/models/fc100-100-10/infer", headers, infer_binary_body, infer_binary_len, out);
}

static void predict_png(outcome *out)
{
    post("/v1/models/fc100-100-10/predict", png_type, seven_png.body, seven_png.len, out);
}

static const char attack_body[] =
    "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3}";

static void attack_sync(outcome *out)
{
    post_json("/v1/attacks", attack_body, out);
}

static void attack_async(outcome *out)
{
    post_then_wait("/v1/attacks?async=true", attack_body, out);
}

static void evaluation(outcome *out)
{
    post_then_wait("/v1/evaluations", "{\"models\":[\"fc10-1e-4\"],\"n\":1,\"seed\":1}", out);
}

static void not_found(outcome *out)
{
    req_opts o = {0};
    request_on(d.port, "/v1/no-such-thing", &o, &out->r[out->n++]);
}

static curl_mime *predict_form(CURL *c)
{
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "image");
    curl_mime_filename(p, "seven.png");
    curl_mime_type(p, "image/png");
    curl_mime_data(p, seven_png.body, seven_png.len);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "invert");
    curl_mime_data(p, "no", CURL_ZERO_TERMINATED);
    return m;
}

static void multipart_form(outcome *out)
{
    req_opts o = {.form = predict_form};
    request_on(d.port, "/v1/models/fc100-100-10/predict", &o, &out->r[out->n++]);
}

/* ---- the loop ----------------------------------------------------------- */

/* Whether r is an error document: /v1's {"error": {"code", "message"}} or
 * the /v2 protocol's {"error": "message"}. */
static int is_error_document(const reply *r)
{
    json_t *e = json_object_get(r->json, "error");
    return json_is_string(e) || (json_is_string(json_object_get(e, "code")) &&
                                 json_is_string(json_object_get(e, "message")));
}

static void outcome_free(outcome *out)
{
    for (int i = 0; i < out->n; i++)
        reply_free(&out->r[i]);
    out->n = 0;
}

/* Runs exchange with allocation 1, 2, ... failing until it runs without
 * reaching the failed one, whose answers must then be expected_status. */
static void fail_each_allocation(void (*exchange)(outcome *), long expected_status)
{
    long n;
    for (n = 1; n <= MAX_ALLOCATIONS; n++) {
        atomic_store(&control->fired, 0);
        atomic_store(&control->in_mhd, 0);
        atomic_store(&control->target, n);
        atomic_store(&control->arm, 1);
        outcome out = {0};
        exchange(&out);
        /* the last reads of a failed job may be answered before the job
         * ends its count: stop it only now */
        atomic_store(&control->target, 0);
        atomic_store(&control->arm, 0);
        int fired = (int)atomic_load(&control->fired);
        int in_mhd = (int)atomic_load(&control->in_mhd);
        for (int i = 0; i < out.n; i++) {
            const reply *r = &out.r[i];
            /* the reads of a job answer 200, whatever became of it */
            long usual = i == 0 ? expected_status : 200;
            if (r->status == usual)
                continue;
            if (!fired)
                fail_msg("with no allocation failed, answer %d was %ld: %.300s", i + 1,
                         r->status, r->body ? r->body : "");
            if (r->status == 0 && in_mhd)
                continue; /* libmicrohttpd closed the connection */
            if (r->status >= 400 && r->status < 600 && is_error_document(r))
                continue;
            fail_msg("allocation %ld failed (in %s): answer %d was %ld (curl error %d), not an "
                     "error document: %.300s; daemon log %s", n, control->where, i + 1, r->status,
                     r->curl_error, r->body ? r->body : "", d.log);
        }
        outcome_free(&out);
        if (waitpid(d.pid, NULL, WNOHANG) == d.pid)
            fail_msg("the daemon died after allocation %ld failed (in %s); log %s", n,
                     control->where, d.log);
        reply live;
        req_opts o = {.timeout_ms = 10000};
        request_on(d.port, "/v2/health/live", &o, &live);
        long live_status = live.status;
        reply_free(&live);
        if (live_status != 200)
            fail_msg("after allocation %ld failed (in %s) the daemon answers %ld to "
                     "/v2/health/live; log %s", n, control->where, live_status, d.log);
        if (!fired)
            break;
    }
    assert_true(n > 1 && n <= MAX_ALLOCATIONS);
    print_message("%ld allocations failed in turn (the exchange makes %ld)\n", n - 1,
                  (long)atomic_load(&control->counted));
}

/* The exchanges, and the status each answers first when nothing fails. */
typedef struct exchange_case {
    const char *name;
    void (*run)(outcome *);
    long expected_status;
} exchange_case;

static const exchange_case cases[] = {
    {"not_found", not_found, 404},
    {"infer_json", infer_json, 200},
    {"infer_binary", infer_binary, 200},
    {"predict_png", predict_png, 200},
    {"multipart_form", multipart_form, 200},
    {"attack_sync", attack_sync, 200},
    {"attack_async_and_job", attack_async, 202},
    {"evaluation", evaluation, 202},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void test_exchange(void **state)
{
    const exchange_case *c = *state;
    fail_each_allocation(c->run, c->expected_status);
}

/* ---- the daemon --------------------------------------------------------- */

/* The bodies, from digit 18 as the daemon serves it (before any failure). */
static int make_bodies(void)
{
    reply r;
    req_opts o = {0};
    request_on(d.port, "/v1/datasets/mnist/test/18?format=json", &o, &r);
    json_t *data = json_object_get(r.json, "data");
    if (r.status != 200 || json_array_size(data) != 784)
        return -1;
    char *values = json_dumps(data, JSON_COMPACT);
    size_t size = strlen(values) + 200;
    infer_json_body = malloc(size);
    snprintf(infer_json_body, size, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
             "\"datatype\":\"FP32\",\"data\":%s}]}", values);
    free(values);
    reply_free(&r);

    const char *hdr = "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":"
                      "\"UINT8\",\"parameters\":{\"binary_data_size\":784}}]}";
    size_t hlen = strlen(hdr);
    memcpy(infer_binary_body, hdr, hlen);
    memset(infer_binary_body + hlen, 0, 784);
    infer_binary_len = hlen + 784;
    snprintf(infer_binary_header, sizeof infer_binary_header,
             "Inference-Header-Content-Length: %zu", hlen);

    request_on(d.port, "/v1/datasets/mnist/test/18", &o, &seven_png);
    return seven_png.status == 200 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    char *dir = tu_tmpdir();
    snprintf(control_path, sizeof control_path, "%s/failalloc", dir);
    free(dir);
    int fd = open(control_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof *control))
        return -1;
    control = mmap(NULL, sizeof *control, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (control == MAP_FAILED)
        return -1;
    /* Only the daemon gets the shim; ASan is told that it comes first. */
    char shim[600], asan[1024];
    snprintf(shim, sizeof shim, "%s", tu_bin("tests/failalloc.so"));
    const char *asan_was = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", asan_was ? asan_was : "",
             asan_was && *asan_was ? ":" : "");
    setenv("LD_PRELOAD", shim, 1);
    setenv("FAILALLOC", control_path, 1);
    setenv("ASAN_OPTIONS", asan, 1);
    /* every exchange leaves a job or two: room for all of them */
    const char *const flags[] = {"--max-jobs", "100000", NULL};
    int rc = daemon_start(&d, flags);
    unsetenv("LD_PRELOAD");
    unsetenv("FAILALLOC");
    if (rc || make_bodies()) {
        fprintf(stderr, "blindspotd with the shim did not become ready; log in %s\n", d.log);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&d);
    if (rc != 0)
        fprintf(stderr, "blindspotd exited %d (a leak under ASan?); log in %s\n", rc, d.log);
    else
        daemon_cleanup(&d);
    reply_free(&seven_png);
    free(infer_json_body);
    munmap(control, sizeof *control);
    char *slash = strrchr(control_path, '/');
    unlink(control_path);
    *slash = '\0';
    tu_rmtree(control_path);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    struct CMUnitTest tests[N_CASES];
    for (size_t i = 0; i < N_CASES; i++)
        tests[i] = (struct CMUnitTest){.name = cases[i].name, .test_func = test_exchange,
                                       .initial_state = (void *)&cases[i]};
    return cmocka_run_group_tests(tests, setup, teardown);
}
