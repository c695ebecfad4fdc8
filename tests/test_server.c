/* test_server — blindspotd end to end: the daemon is started on a free
 * loopback port with the trained zoo and driven with libcurl. Every
 * endpoint's answer, JSON and multipart attacks, the Accept negotiation
 * of an attack (JSON, PNG, JPEG, q-values, 406) and of a dataset sample
 * (PNG, JSON, ?format=), bad attack requests
 * refused by `blindspot attack` with the daemon's message, the
 * error statuses (each with a JSON error and the daemon staying up),
 * X-Request-Id, /metrics' format, inference equal to bs_model_forward in
 * this process (numbers in every JSON spelling; bad tensors answered as
 * Jansson would), small inferences running at once while the workers are
 * busy, 32 concurrent clients, a full queue, a deadline, a client
 * that goes away, SIGTERM with attacks in flight, start-up refusing a bad
 * model, the route table against api/openapi.yaml; asynchronous jobs (an
 * async attack equal to the synchronous answer, cancelling queued and
 * running jobs, a job's deadline, a full job table, expiry), an evaluation
 * job equal to `blindspot evaluate --json`, and the Lipschitz and unit
 * analysis endpoints against core/analysis.h in this process. Needs `make
 * data models` (make test does it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include "api/base64.h"
#include "api/image.h"
#include "core/analysis.h"
#include "core/dataset.h"
#include "core/layers.h"
#include "core/model_file.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the daemon ----------------------------------------------------- */

static daemon_proc main_daemon; /* shared by most tests */

static void request(const char *path, const req_opts *o, reply *r)
{
    request_on(main_daemon.port, path, o, r);
}

static void post_json(const char *path, const char *body, reply *r)
{
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request(path, &o, r);
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    const char *extra[] = {"--max-body", "1M", NULL};
    if (daemon_start(&main_daemon, extra)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", main_daemon.log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&main_daemon);
    daemon_cleanup(&main_daemon);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

static void test_health_and_server(void **state)
{
    (void)state;
    reply r;
    request("/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "live")));
    reply_free(&r);
    request("/v2/health/ready", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ready")));
    reply_free(&r);
    request("/v2", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "blindspot");
    reply_free(&r);
    req_opts head = {.method = "HEAD"};
    request("/v2/health/live", &head, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

/* HEAD on every GET route answers GET's status and Content-Type, no body. */
static void test_head_like_get(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/v2/health/live", "/v2/health/ready", "/v2", "/v2/", "/v2/models/stats",
        "/v2/models/cnn", "/v2/models/cnn/ready", "/v2/models/cnn/versions/1",
        "/v2/models/cnn/versions/1/ready", "/v2/models/cnn/stats",
        "/v2/models/cnn/versions/1/stats", "/v1/models", "/v1/models/cnn", "/v1/datasets",
        "/v1/datasets/mnist/test/3", "/v1/models/cnn/lipschitz", "/metrics",
        "/v1/jobs/0123456789abcdef", "/v1/jobs/0123456789abcdef/events",
        "/v2/models/nosuch"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        reply get, head;
        req_opts o = {.method = "HEAD"};
        request(paths[i], NULL, &get);
        request(paths[i], &o, &head);
        char a[128], b[128];
        if (head.status != get.status)
            fail_msg("HEAD %s: %ld, GET: %ld", paths[i], head.status, get.status);
        assert_string_equal(header_of(&head, "Content-Type", a, sizeof a),
                            header_of(&get, "Content-Type", b, sizeof b));
        assert_int_equal(head.len, 0);
        reply_free(&get);
        reply_free(&head);
    }
}

static void test_v2_model_metadata(void **state)
{
    (void)state;
    reply r;
    request("/v2/models/cnn", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *in = json_array_get(json_object_get(r.json, "inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(in, "datatype")), "FP32");
    json_t *shape = json_object_get(in, "shape");
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(shape, 2)), 28);
    assert_int_equal(json_array_size(json_object_get(r.json, "outputs")), 2);
    reply_free(&r);
    request("/v2/models/cnn/ready", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ready")));
    reply_free(&r);
    request("/v2/models/nope/ready", NULL, &r);
    assert_error(&r, 404, "model_not_found");
    reply_free(&r);
}

/* The first n test images of mnist, loaded here. */
static bs_dataset test_split(void)
{
    bs_dataset d;
    char err[BS_ERR_LEN];
    if (bs_dataset_load("data", "mnist", "test", &d, err))
        fail_msg("%s", err);
    return d;
}

/* POSTs n samples of d to infer on model (flat [n,784] or nested
 * [n,1,28,28]) and compares with bs_model_forward in this process. */
static void check_infer(const char *name, const bs_dataset *d, int n, int nested)
{
    char path[256], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "models/%s.safetensors", name);
    bs_model *m = bs_model_load(path, err);
    assert_non_null(m);
    json_t *data = json_array();
    for (int i = 0; i < n; i++) {
        const float *x = d->images + (size_t)i * d->input_size;
        if (!nested) {
            for (size_t k = 0; k < d->input_size; k++)
                json_array_append_new(data, json_real(x[k]));
            continue;
        }
        json_t *img = json_array(), *chan = json_array();
        for (int y = 0; y < 28; y++) {
            json_t *row = json_array();
            for (int xk = 0; xk < 28; xk++)
                json_array_append_new(row, json_real(x[y * 28 + xk]));
            json_array_append_new(chan, row);
        }
        json_array_append_new(img, chan);
        json_array_append_new(data, img);
    }
    json_t *shape = nested ? json_pack("[i,i,i,i]", n, 1, 28, 28) : json_pack("[i,i]", n, 784);
    json_t *req = json_pack("{s:s, s:[{s:s, s:o, s:s, s:o}]}", "id", "req-42", "inputs", "name",
                            "input", "shape", shape, "datatype", "FP32", "data", data);
    char *body = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(req);
    snprintf(path, sizeof path, "/v2/models/%s/infer", name);
    reply r;
    post_json(path, body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), "req-42");
    assert_string_equal(json_string_value(json_object_get(r.json, "model_name")), name);
    json_t *outs = json_object_get(r.json, "outputs");
    json_t *probs = json_object_get(json_array_get(outs, 0), "data");
    json_t *labels = json_object_get(json_array_get(outs, 1), "data");
    assert_int_equal(json_array_size(probs), (size_t)n * 10);
    assert_int_equal(json_array_size(labels), (size_t)n);

    bs_workspace *ws = bs_workspace_new(m, 1);
    for (int i = 0; i < n; i++) {
        const float *logits = bs_model_forward(m, ws, d->images + (size_t)i * d->input_size, 1);
        int zero = 0;
        float p[10];
        bs_softmax_xent_forward(p, NULL, logits, &zero, 1, 10);
        for (int c = 0; c < 10; c++)
            assert_true(fabs(json_number_value(json_array_get(probs, (size_t)i * 10 + c)) - p[c]) < 1e-6);
        assert_int_equal(json_integer_value(json_array_get(labels, (size_t)i)), bs_argmax(logits, 10));
    }
    bs_workspace_free(ws);
    bs_model_free(m);
    reply_free(&r);
}

static void test_infer_equals_forward(void **state)
{
    (void)state;
    bs_dataset d = test_split();
    check_infer("fc100-100-10", &d, 5, 0);
    check_infer("cnn", &d, 70, 1); /* more than one chunk of 64 */
    bs_dataset_free(&d);
}

static void test_infer_outputs_filter(void **state)
{
    (void)state;
    char body[8192];
    int n = snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                     "\"datatype\":\"FP32\",\"data\":[");
    for (int i = 0; i < 784; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s0.1", i ? "," : "");
    snprintf(body + n, sizeof body - (size_t)n, "]}],\"outputs\":[{\"name\":\"label\"}]}");
    reply r;
    post_json("/v2/models/fc10-1e-4/infer", body, &r);
    assert_int_equal(r.status, 200);
    json_t *outs = json_object_get(r.json, "outputs");
    assert_int_equal(json_array_size(outs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(outs, 0), "name")), "label");
    assert_null(json_object_get(r.json, "id"));
    reply_free(&r);
}

/* The tensor as clients write it: every way JSON allows a number (long
 * and short decimals, exponents, integers, negative zero), nested and
 * spaced; the daemon must read each as (float)strtod of its text. */
static void test_infer_number_formats(void **state)
{
    (void)state;
    bs_dataset d = test_split();
    const float *x = d.images + 3 * d.input_size;
    static char body[65536];
    float want[784];
    int n = snprintf(body, sizeof body, "{\"inputs\" : [ {\"name\":\"input\",\"shape\":[1,1,28,28],"
                     "\"datatype\":\"FP32\",\n\"data\": [[");
    for (int y = 0; y < 28; y++) {
        n += snprintf(body + n, sizeof body - (size_t)n, "%s[ ", y ? ",\n" : "");
        for (int k = 0; k < 28; k++) {
            int i = y * 28 + k;
            char lit[64];
            double v = x[i];
            switch (i % 9) {
            case 0: snprintf(lit, sizeof lit, "%.17g", v); break;
            case 1: snprintf(lit, sizeof lit, "%.9g", v); break;
            case 2: snprintf(lit, sizeof lit, "%.6e", v); break;
            case 3: snprintf(lit, sizeof lit, "%.3E", v); break;
            case 4: snprintf(lit, sizeof lit, "%.30f", v); break; /* past 19 digits */
            case 5: snprintf(lit, sizeof lit, "%.0f", v); break;  /* an integer */
            case 6: snprintf(lit, sizeof lit, v == 0 ? "-0.0" : "%.8e", v); break;
            case 7: snprintf(lit, sizeof lit, v == 0 ? "-0" : "%.5e", v * 1e-3); break;
            default: snprintf(lit, sizeof lit, "%gE+0", v * 10); break;
            }
            want[i] = (float)strtod(lit, NULL);
            n += snprintf(body + n, sizeof body - (size_t)n, "%s%s", k ? " ,\t" : "", lit);
        }
        n += snprintf(body + n, sizeof body - (size_t)n, " ]");
    }
    snprintf(body + n, sizeof body - (size_t)n, "]] } ] }");
    reply r;
    post_json("/v2/models/fc100-100-10/infer", body, &r);
    assert_int_equal(r.status, 200);
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load("models/fc100-100-10.safetensors", err);
    assert_non_null(m);
    bs_workspace *ws = bs_workspace_new(m, 1);
    const float *logits = bs_model_forward(m, ws, want, 1);
    int zero = 0;
    float p[10];
    bs_softmax_xent_forward(p, NULL, logits, &zero, 1, 10);
    json_t *outs = json_object_get(r.json, "outputs");
    json_t *probs = json_object_get(json_array_get(outs, 0), "data");
    for (int c = 0; c < 10; c++)
        assert_true(fabs(json_number_value(json_array_get(probs, (size_t)c)) - p[c]) < 1e-6);
    json_t *label = json_object_get(json_array_get(outs, 1), "data");
    assert_int_equal(json_integer_value(json_array_get(label, 0)), bs_argmax(logits, 10));
    bs_workspace_free(ws);
    bs_model_free(m);
    reply_free(&r);
    bs_dataset_free(&d);
}

/* Bodies whose tensor is wrong in every way the fast reader of
 * inputs[0].data must leave to Jansson or to the handler's checks: the
 * answer is the one a plain json_loadb gives, down to the message's line
 * and column. */
static void test_infer_bad_numbers(void **state)
{
    (void)state;
    static char body[16384];
    typedef struct {
        const char *data; /* the text of inputs[0].data */
        long status;
        const char *code;
    } bad_data;
    static const bad_data cases[] = {
        {"[NaN]", 400, "invalid_json"},
        {"[Infinity]", 400, "invalid_json"},
        {"[-Infinity]", 400, "invalid_json"},
        {"[1e400]", 400, "invalid_json"},
        {"[-1e400]", 400, "invalid_json"},
        {"[99999999999999999999]", 400, "invalid_json"},
        {"[-9223372036854775809]", 400, "invalid_json"},
        {"[01]", 400, "invalid_json"},
        {"[1.]", 400, "invalid_json"},
        {"[.5]", 400, "invalid_json"},
        {"[+1]", 400, "invalid_json"},
        {"[1e]", 400, "invalid_json"},
        {"[0x10]", 400, "invalid_json"},
        {"[0.5x]", 400, "invalid_json"},
        {"[1,,2]", 400, "invalid_json"},
        {"[1,2,]", 400, "invalid_json"},
        {"[1 2]", 400, "invalid_json"},
        {"[[1],[2]", 400, "invalid_json"},
        {"[\"0.5\"]", 400, "invalid_request"},
        {"[0.5,[null]]", 400, "invalid_request"},
        {"[[0.5],[true]]", 400, "invalid_request"},
        {"[{\"x\":1}]", 400, "invalid_request"},
        {"0.5", 400, "invalid_input"},
        {"[]", 400, "invalid_input"},
        {"[[[]]]", 400, "invalid_input"},
        {"[0.5,1e-400,-0.0,1E+2]", 400, "invalid_input"},
        {"[[0.5],[0.5]]", 400, "invalid_input"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                 "\"datatype\":\"FP32\",\"data\":%s}]}", cases[i].data);
        reply r;
        post_json("/v2/models/fc100-100-10/infer", body, &r);
        assert_error(&r, cases[i].status, cases[i].code);
        if (!strcmp(cases[i].code, "invalid_json")) {
            json_error_t e;
            assert_null(json_loads(body, JSON_REJECT_DUPLICATES, &e));
            char want[512];
            snprintf(want, sizeof want, "The body is not valid JSON: %s (line %d, column %d).",
                     e.text, e.line, e.column);
            assert_string_equal(json_string_value(json_object_get(r.json, "error")), want);
        }
        reply_free(&r);
    }
    /* every cut of a good body is refused as Jansson refuses it */
    int n = snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                     "\"datatype\":\"FP32\",\"data\":[");
    for (int i = 0; i < 784; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "%s%s", i ? "," : "",
                      i % 7 ? "0.0" : "0.20392157137393951");
    n += snprintf(body + n, sizeof body - (size_t)n, "]}]}");
    for (int cut = 1; cut < n; cut += cut < 80 || cut > n - 8 ? 1 : 97) {
        req_opts o = {.headers = json_body_type, .body = body, .len = (size_t)cut};
        reply r;
        request("/v2/models/fc100-100-10/infer", &o, &r);
        assert_error(&r, 400, "invalid_json");
        reply_free(&r);
    }
    /* numbers JSON accepts but a float cannot hold: refused, never NaN
     * probabilities (pixel 5 of an otherwise good image) */
    static const char *const beyond[] = {"1e39", "-3.5e38", "3.5e38"};
    for (size_t b = 0; b < sizeof beyond / sizeof beyond[0]; b++) {
        char big[16384];
        int k = snprintf(big, sizeof big, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                         "\"datatype\":\"FP32\",\"data\":[");
        for (int i = 0; i < 784; i++)
            k += snprintf(big + k, sizeof big - (size_t)k, "%s%s", i ? "," : "",
                          i == 5 ? beyond[b] : "0.5");
        snprintf(big + k, sizeof big - (size_t)k, "]}]}");
        reply rb;
        post_json("/v2/models/fc100-100-10/infer", big, &rb);
        assert_error(&rb, 400, "invalid_input");
        assert_non_null(strstr(json_string_value(json_object_get(rb.json, "error")), "data[5]"));
        reply_free(&rb);
    }
    /* and the whole one is good; twice "data" is not */
    reply r;
    post_json("/v2/models/fc100-100-10/infer", body, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    memcpy(body + n - 4, ",\"data\":[1]}]}", 15);
    post_json("/v2/models/fc100-100-10/infer", body, &r);
    assert_error(&r, 400, "invalid_json");
    reply_free(&r);
}

static void test_v1_models(void **state)
{
    (void)state;
    reply r;
    request("/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *models = json_object_get(r.json, "models");
    assert_int_equal(json_array_size(models), 10);
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        assert_true(json_is_string(json_object_get(m, "name")));
        assert_true(json_integer_value(json_object_get(m, "parameters")) > 0);
        assert_int_equal(json_integer_value(json_object_get(m, "classes")), 10);
        assert_true(json_is_number(json_object_get(m, "test_error")));
        assert_true(!strncmp(json_string_value(json_object_get(m, "dataset")), "mnist", 5));
    }
    reply_free(&r);
    request("/v1/models/fc100-100-10", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "arch")), "fc:100,100");
    assert_int_equal(json_integer_value(json_object_get(r.json, "parameters")), 89610);
    assert_int_equal(json_array_size(json_object_get(r.json, "layers")), 6);
    assert_true(json_is_object(json_object_get(r.json, "metadata")));
    reply_free(&r);
}

static void test_datasets_and_samples(void **state)
{
    (void)state;
    bs_dataset d = test_split();
    reply r;
    char buf[64];
    request("/v1/datasets", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *mnist = json_array_get(json_object_get(r.json, "datasets"), 0);
    assert_string_equal(json_string_value(json_object_get(mnist, "name")), "mnist");
    reply_free(&r);

    request("/v1/datasets/mnist/test/17", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Content-Type", buf, sizeof buf), "image/png");
    assert_int_equal(atoi(header_of(&r, "X-Label", buf, sizeof buf)), d.labels[17]);
    bs_image img;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_image_decode((uint8_t *)r.body, r.len, 1 << 20, &img, err), 0);
    assert_int_equal(img.width, 28);
    for (int k = 0; k < 784; k++)
        assert_true(fabsf(img.pixels[k] - d.images[17 * 784 + k]) <= 0.5f / 255 + 1e-6f);
    bs_image_free(&img);
    reply_free(&r);

    const char *accept[] = {"Accept: application/json", NULL};
    req_opts o = {.headers = accept};
    request("/v1/datasets/mnist/test/17", &o, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "label")), d.labels[17]);
    assert_int_equal(json_array_size(json_object_get(r.json, "data")), 784);
    reply_free(&r);
    request("/v1/datasets/mnist/train/3?format=json", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "shape")), 3);
    reply_free(&r);

    /* Accept negotiated as POST /v1/attacks does: q-values decide, a tie
     * goes to PNG, a header that takes neither is 406, ?format= wins */
    static const struct {
        const char *accept, *query, *type;
    } cases[] = {
        {"Accept: image/png;q=0.5, application/json", "", "application/json"},
        {"Accept: application/*, image/*;q=0.2", "", "application/json"},
        {"Accept: application/json, image/png", "", "image/png"},
        {"Accept: */*", "", "image/png"},
        {"Accept: text/html, application/json;q=0", "", NULL},
        {"Accept: text/html", "?format=json", "application/json"},
        {"Accept: application/json", "?format=png", "image/png"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *h[] = {cases[i].accept, NULL};
        req_opts oh = {.headers = h};
        char path[64];
        snprintf(path, sizeof path, "/v1/datasets/mnist/test/17%s", cases[i].query);
        request(path, &oh, &r);
        if (!cases[i].type) {
            assert_error(&r, 406, "not_acceptable");
            const char *msg = json_string_value(
                json_object_get(json_object_get(r.json, "error"), "message"));
            assert_non_null(strstr(msg, "image/png or application/json"));
        } else {
            if (r.status != 200 ||
                strcmp(header_of(&r, "Content-Type", buf, sizeof buf), cases[i].type))
                fail_msg("%s%s answered %ld %s, not %s", cases[i].accept, cases[i].query,
                         r.status, buf, cases[i].type);
            assert_int_equal(atoi(header_of(&r, "X-Label", buf, sizeof buf)), d.labels[17]);
        }
        reply_free(&r);
    }
    bs_dataset_free(&d);
}

/* A mnist test sample's label and a target that is not it. */
static int other_label(int index)
{
    bs_dataset d = test_split();
    int t = (d.labels[index] + 1) % 10;
    bs_dataset_free(&d);
    return t;
}

static void test_attack_json_dataset(void **state)
{
    (void)state;
    char body[256];
    int t = other_label(0);
    snprintf(body, sizeof body, "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\","
             "\"split\":\"test\",\"index\":0},\"target\":%d,\"report\":[\"cnn\",\"fc10-1e-4\"]}", t);
    reply r;
    post_json("/v1/attacks", body, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "model")), "fc100-100-10");
    assert_string_equal(json_string_value(json_object_get(r.json, "method")), "lbfgs");
    json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "target")), t);
    assert_true(json_is_true(json_object_get(res, "success")));
    assert_int_equal(json_integer_value(json_object_get(res, "label")), t);
    assert_true(json_number_value(json_object_get(json_object_get(res, "norms"), "distortion")) > 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "image"), "format")), "png");
    assert_int_equal(json_array_size(json_object_get(res, "predictions")), 2);
    json_t *input = json_object_get(r.json, "input");
    assert_string_equal(json_string_value(json_object_get(input, "format")), "png");
    assert_true(json_string_length(json_object_get(input, "data")) > 100);
    reply_free(&r);
}

/* A model trained on a half of mnist names its dataset mnist:P1; an image
 * of "mnist:P1"'s test split is mnist's, as predict reads it, and the half's
 * train split (no whole split) is refused. */
static void test_attack_dataset_half(void **state)
{
    (void)state;
    char body[256];
    reply r;
    snprintf(body, sizeof body, "{\"model\":\"fc100-100-10-p1\",\"image\":{\"dataset\":"
             "\"mnist:P1\",\"split\":\"test\",\"index\":0},\"target\":%d,"
             "\"method\":\"fgsm\"}", other_label(0));
    post_json("/v1/attacks", body, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    snprintf(body, sizeof body, "{\"model\":\"fc100-100-10-p1\",\"image\":{\"dataset\":"
             "\"mnist:P1\",\"split\":\"train\",\"index\":0},\"target\":3}");
    post_json("/v1/attacks", body, &r);
    assert_error(&r, 404, "dataset_not_found");
    reply_free(&r);
}

static void test_attack_floats_and_jpeg(void **state)
{
    (void)state;
    bs_dataset d = test_split();
    int t = (d.labels[1] + 1) % 10;
    json_t *data = json_array();
    for (int k = 0; k < 784; k++)
        json_array_append_new(data, json_real(d.images[784 + k]));
    json_t *req = json_pack("{s:s, s:{s:o, s:[i,i,i]}, s:[i], s:s, s:s}", "model", "fc10-1e-4",
                            "image", "data", data, "shape", 1, 28, 28, "target", t,
                            "image_format", "floats", "method", "fgsm");
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    reply r;
    post_json("/v1/attacks", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    json_t *img = json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "image");
    assert_string_equal(json_string_value(json_object_get(img, "format")), "floats");
    assert_int_equal(json_array_size(json_object_get(img, "data")), 784);
    reply_free(&r);

    /* The same digit as a JPEG in base64, dark ink on white: auto inverts it. */
    uint8_t px[784], *jpg = NULL;
    size_t jlen = 0;
    char err[BS_ERR_LEN];
    for (int k = 0; k < 784; k++)
        px[k] = (uint8_t)lroundf(255.0f * (1.0f - d.images[784 + k]));
    assert_int_equal(bs_image_encode(px, 28, 28, 1, BS_IMAGE_JPEG, 95, &jpg, &jlen, err), 0);
    char *b64 = bs_base64_encode(jpg, jlen);
    free(jpg);
    req = json_pack("{s:s, s:{s:s}, s:i}", "model", "fc10-1e-4", "image", "jpeg", b64, "target", t);
    free(b64);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    post_json("/v1/attacks", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(json_object_get(r.json, "input"), "inverted")));
    reply_free(&r);
    bs_dataset_free(&d);
}

/* Test image 17 is already a 3 to FC100-100-10: target 3 answers status
 * already_target, no success, zero norms, no model fooled, while target 5
 * of the same request is attacked; with Accept: image/png the headers say
 * so too. */
static void test_attack_already_target(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\","
                       "\"index\":17},\"target\":[3,5],\"report\":[\"fc100-100-10\",\"cnn\"]}";
    reply r;
    post_json("/v1/attacks", body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "original"),
                                                        "label")), 3);
    json_t *already = json_array_get(json_object_get(r.json, "results"), 0);
    json_t *moved = json_array_get(json_object_get(r.json, "results"), 1);
    assert_string_equal(json_string_value(json_object_get(already, "status")), "already_target");
    assert_true(json_is_false(json_object_get(already, "success")));
    assert_int_equal(json_integer_value(json_object_get(already, "evaluations")), 0);
    assert_true(json_number_value(json_object_get(json_object_get(already, "norms"),
                                                  "distortion")) == 0.0);
    size_t i;
    json_t *pred;
    json_array_foreach(json_object_get(already, "predictions"), i, pred)
        assert_true(json_is_false(json_object_get(pred, "fooled")));
    assert_true(json_is_true(json_object_get(moved, "success")));
    pred = json_array_get(json_object_get(moved, "predictions"), 0);
    assert_int_equal(json_integer_value(json_object_get(pred, "original_label")), 3);
    assert_true(json_is_true(json_object_get(pred, "fooled")));
    reply_free(&r);

    const char *one = "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\","
                      "\"index\":17},\"target\":3}";
    const char *png[] = {"Content-Type: application/json", "Accept: image/png", NULL};
    req_opts o = {.headers = png, .body = one, .len = strlen(one)};
    request("/v1/attacks", &o, &r);
    assert_int_equal(r.status, 200);
    char buf[64];
    assert_string_equal(header_of(&r, "X-Blindspot-Status", buf, sizeof buf), "already_target");
    assert_string_equal(header_of(&r, "X-Blindspot-Success", buf, sizeof buf), "false");
    reply_free(&r);
}

/* One synchronous attack with an Accept header; the reply in r. */
static void attack_accepting(const char *accept, const char *body, reply *r)
{
    char h[256];
    snprintf(h, sizeof h, "Accept: %s", accept);
    const char *headers[] = {"Content-Type: application/json", h, NULL};
    req_opts o = {.headers = headers, .body = body, .len = strlen(body)};
    request("/v1/attacks", &o, r);
}

/* Accept on POST /v1/attacks: JSON by default and for wildcards, the
 * adversarial image as PNG or JPEG (decodable, classified as the target,
 * figures in headers), q-values deciding, and 406 for what cannot be
 * served: a type never offered (checked before the body is even read), or
 * an image for several targets unless JSON is also acceptable. */
static void test_attack_accept(void **state)
{
    (void)state;
    char body[256], several[256], buf[128];
    int t = other_label(0);
    snprintf(body, sizeof body, "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":"
             "\"mnist\",\"index\":0},\"target\":%d}", t);
    snprintf(several, sizeof several, "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":"
             "\"mnist\",\"index\":0},\"target\":[%d,%d]}", t, (t + 1) % 10);
    struct { const char *accept, *type; } ok[] = {
        {"application/json", "application/json"},
        {"*/*", "application/json"},
        {"text/html,application/xhtml+xml,*/*;q=0.8", "application/json"},
        {"image/png", "image/png"},
        {"image/*", "image/png"},
        {"image/png;q=0.9, application/json;q=0.5", "image/png"},
        {"image/png;q=0.5, application/json", "application/json"},
        {"image/jpeg", "image/jpeg"},
        {"application/json;q=0.2, image/jpeg", "image/jpeg"},
    };
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load("models/fc100-100-10.safetensors", err);
    assert_non_null(m);
    bs_workspace *ws = bs_workspace_new(m, 1);
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        reply r;
        attack_accepting(ok[i].accept, body, &r);
        if (r.status != 200)
            fail_msg("Accept: %s answered %ld: %s", ok[i].accept, r.status, r.body);
        assert_non_null(header_of(&r, "Content-Type", buf, sizeof buf));
        if (strcmp(buf, ok[i].type))
            fail_msg("Accept: %s answered %s, not %s", ok[i].accept, buf, ok[i].type);
        if (!strcmp(ok[i].type, "application/json")) {
            assert_non_null(json_object_get(r.json, "results"));
        } else {
            bs_image img;
            int jpeg = !strcmp(ok[i].type, "image/jpeg");
            assert_int_equal(r.len > 4 && (jpeg ? (uint8_t)r.body[0] == 0xFF
                                                : !memcmp(r.body, "\x89PNG", 4)), 1);
            assert_int_equal(bs_image_decode((uint8_t *)r.body, r.len, 1 << 20, &img, err), 0);
            assert_int_equal(img.width * img.height * img.channels, 784);
            if (!jpeg) /* lossless: what was verified is what arrives */
                assert_int_equal(bs_argmax(bs_model_forward(m, ws, img.pixels, 1), 10), t);
            bs_image_free(&img);
            assert_int_equal(atoi(header_of(&r, "X-Blindspot-Target", buf, sizeof buf)), t);
            assert_string_equal(header_of(&r, "X-Blindspot-Model", buf, sizeof buf),
                                "fc100-100-10");
            assert_string_equal(header_of(&r, "X-Blindspot-Success", buf, sizeof buf), "true");
            assert_non_null(header_of(&r, "X-Blindspot-Distortion", buf, sizeof buf));
        }
        reply_free(&r);
    }
    bs_workspace_free(ws);
    bs_model_free(m);

    /* never offered: 406 before the body is looked at */
    const char *refused[] = {"text/html", "image/gif", "image/png;q=0", "application/xml"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        reply r;
        attack_accepting(refused[i], "{not json", &r);
        assert_error(&r, 406, "not_acceptable");
        const char *msg = json_string_value(
            json_object_get(json_object_get(r.json, "error"), "message"));
        assert_non_null(strstr(msg, "application/json"));
        assert_non_null(strstr(msg, "image/jpeg"));
        reply_free(&r);
    }
    /* several targets: one image cannot answer them */
    reply r;
    attack_accepting("image/png", several, &r);
    assert_error(&r, 406, "not_acceptable");
    const char *msg = json_string_value(json_object_get(json_object_get(r.json, "error"),
                                                        "message"));
    assert_non_null(strstr(msg, "one target"));
    assert_non_null(strstr(msg, "application/json"));
    reply_free(&r);
    attack_accepting("image/jpeg", "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":"
                     "\"mnist\",\"index\":0},\"target\":\"all\"}", &r);
    assert_error(&r, 406, "not_acceptable");
    reply_free(&r);
    attack_accepting("image/png, application/json;q=0.1", several, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "results")), 2);
    reply_free(&r);
}

/* `blindspot attack` builds the request POST /v1/attacks takes and checks
 * it with the same parser: a request the daemon refuses, the command line
 * refuses with the same message (exit status 1). */
static void test_cli_and_server_refuse_alike(void **state)
{
    (void)state;
    struct { const char *args, *json; } cases[] = {
        {"--method magic", "\"method\":\"magic\""},
        {"--param history=0", "\"params\":{\"history\":0}"},
        {"--param bogus=1", "\"params\":{\"bogus\":1}"},
        {"--method fgsm --param history=3", "\"method\":\"fgsm\",\"params\":{\"history\":3}"},
        {"--param norm=l3", "\"params\":{\"norm\":\"l3\"}"},
        {"--invert maybe", "\"invert\":\"maybe\""},
    };
    struct { const char *target, *index, *json_target, *json_index; } images[] = {
        {"12", "0", "12", "0"},
        {"3,3", "0", "[3,3]", "0"},
        {"three", "0", "\"three\"", "0"},
        {"3", "5000", "3", "5000"},
    };
    size_t n_cases = sizeof cases / sizeof cases[0], n_images = sizeof images / sizeof images[0];
    for (size_t i = 0; i < n_cases + n_images; i++) {
        char cmd[512], body[512], *out = NULL;
        const char *target = i < n_cases ? "1" : images[i - n_cases].target;
        const char *index = i < n_cases ? "0" : images[i - n_cases].index;
        snprintf(cmd, sizeof cmd, "%s attack --model models/fc100-100-10.safetensors --dataset "
                 "mnist --index %s --target %s %s 2>&1 >/dev/null", tu_bin("blindspot"), index,
                 target, i < n_cases ? cases[i].args : "");
        snprintf(body, sizeof body, "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":"
                 "\"mnist\",\"index\":%s},\"target\":%s%s%s}",
                 i < n_cases ? "0" : images[i - n_cases].json_index,
                 i < n_cases ? "1" : images[i - n_cases].json_target, i < n_cases ? "," : "",
                 i < n_cases ? cases[i].json : "");
        assert_int_equal(tu_run(cmd, &out), 1);
        reply r;
        post_json("/v1/attacks", body, &r);
        assert_true(r.status >= 400 && r.status < 500);
        const char *msg = json_string_value(
            json_object_get(json_object_get(r.json, "error"), "message"));
        assert_non_null(msg);
        char want[600];
        snprintf(want, sizeof want, "blindspot attack: %s\n", msg);
        if (strcmp(out, want))
            fail_msg("%s\n  the CLI said: %s  the daemon: %s", body, out, msg);
        free(out);
        reply_free(&r);
    }
}

static reply sample_png; /* a PNG the server made, for the upload tests */
static char form_target[8];

static curl_mime *attack_form(CURL *c)
{
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "model");
    curl_mime_data(p, "fc100-100-10", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "target");
    curl_mime_data(p, form_target, CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "report");
    curl_mime_data(p, "cnn,fc10-1", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "image");
    curl_mime_filename(p, "seven.png");
    curl_mime_type(p, "image/png");
    curl_mime_data(p, sample_png.body, sample_png.len);
    return m;
}

static void test_attack_multipart_and_png(void **state)
{
    (void)state;
    request("/v1/datasets/mnist/test/0", NULL, &sample_png);
    assert_int_equal(sample_png.status, 200);
    snprintf(form_target, sizeof form_target, "%d", other_label(0));
    reply r;
    req_opts o = {.form = attack_form};
    request("/v1/attacks", &o, &r);
    assert_int_equal(r.status, 200);
    json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "target")), atoi(form_target));
    assert_int_equal(json_array_size(json_object_get(res, "predictions")), 2);
    reply_free(&r);

    const char *png[] = {"Accept: image/png", NULL};
    o.headers = png;
    request("/v1/attacks", &o, &r);
    assert_int_equal(r.status, 200);
    char buf[64];
    assert_string_equal(header_of(&r, "Content-Type", buf, sizeof buf), "image/png");
    assert_string_equal(header_of(&r, "X-Blindspot-Target", buf, sizeof buf), form_target);
    assert_non_null(header_of(&r, "X-Blindspot-Distortion", buf, sizeof buf));
    bs_image img;
    char err[BS_ERR_LEN];
    assert_int_equal(bs_image_decode((uint8_t *)r.body, r.len, 1 << 20, &img, err), 0);
    assert_int_equal(img.width * img.height, 784);
    bs_image_free(&img);
    reply_free(&r);
    reply_free(&sample_png);
}

/* ---- errors ------------------------------------------------------------------ */

typedef struct bad_case {
    const char *method, *path, *content_type, *body;
    long status;
    const char *code;
} bad_case;

static void test_bad_requests(void **state)
{
    (void)state;
    const bad_case cases[] = {
        {"POST", "/v1/attacks", "application/json", "{", 400, "invalid_json"},
        {"POST", "/v1/attacks", "application/json", "", 400, "empty_body"},
        {"POST", "/v1/attacks", "application/json", "[1,2]", 400, "invalid_json"},
        {"POST", "/v1/attacks", "text/plain", "{}", 415, "unsupported_media_type"},
        {"POST", "/v1/attacks", "application/json", "{\"target\":3}", 400, "missing_field"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"nope\",\"target\":3}", 404, "model_not_found"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":7,\"target\":3}", 400, "invalid_request"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\"}", 400, "missing_field"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":10,\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 422, "invalid_target"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":\"three\"}", 400, "invalid_request"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"colour\":1}", 400, "unknown_field"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3}", 400, "missing_image"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"png\":\"iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB\"}}", 400, "invalid_image"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"jpeg\":\"/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcG\"}}", 400, "invalid_image"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"png\":\"***\"}}", 400, "invalid_base64"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"method\":\"magic\",\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 422, "invalid_params"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"params\":{\"max_iterations\":\"many\"},\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 422, "invalid_params"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"params\":[1]}", 400, "invalid_request"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"dataset\":\"mnist\",\"index\":99999}}", 422, "index_out_of_range"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"dataset\":\"cifar\",\"index\":0}}", 404, "dataset_not_found"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"data\":[0.5,2],\"shape\":[1,1,2]}}", 422, "value_out_of_range"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image\":{\"data\":[0.5],\"shape\":[1,28,28]}}", 422, "shape_mismatch"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"timeout\":-1,\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 400, "invalid_timeout"},
        {"POST", "/v1/attacks?timeout=soon", "application/json", "{}", 400, "invalid_timeout"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"image_format\":\"gif\",\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 400, "invalid_request"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"invert\":\"maybe\",\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 400, "invalid_request"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"report\":[\"nope\"],\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 404, "model_not_found"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"report\":[\"cnn\",\"cnn\"],\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 422, "duplicate_model"},
        {"POST", "/v1/attacks", "application/json", "{\"model\":\"cnn\",\"target\":3,\"method\":\"fgsm\",\"params\":{\"history\":3},\"image\":{\"dataset\":\"mnist\",\"index\":0}}", 422, "invalid_params"},
        {"POST", "/v1/attacks", "multipart/form-data", "x", 400, "invalid_form"},
        {"POST", "/v2/models/cnn/infer", "application/json", "nope", 400, "invalid_json"},
        {"POST", "/v2/models/cnn/infer", "application/x-www-form-urlencoded", "a=b", 415, "unsupported_media_type"},
        {"POST", "/v2/models/nope/infer", "application/json", "{}", 404, "model_not_found"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"inputs\":[]}", 400, "invalid_request"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,3,28,28],\"datatype\":\"FP32\",\"data\":[0]}]}", 400, "invalid_input"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,784],\"datatype\":\"FP32\",\"data\":[0,1]}]}", 400, "invalid_input"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"BOOL\",\"data\":[0]}]}", 400, "unsupported_datatype"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[\"x\"]}]}", 400, "invalid_request"},
        {"POST", "/v2/models/cnn/infer", "application/json", "{\"id\":5,\"inputs\":[]}", 400, "invalid_request"},
        {"GET", "/v1/models/nope", NULL, NULL, 404, "model_not_found"},
        {"GET", "/v2/models/nope", NULL, NULL, 404, "model_not_found"},
        {"GET", "/v1/datasets/mnist/test/x1", NULL, NULL, 400, "invalid_index"},
        {"GET", "/v1/datasets/mnist/test/2000", NULL, NULL, 404, "sample_not_found"},
        {"GET", "/v1/datasets/mnist/validation/0", NULL, NULL, 404, "dataset_not_found"},
        {"GET", "/v1/datasets/mnist/test/0?format=bmp", NULL, NULL, 400, "invalid_format"},
        {"GET", "/v3/anything", NULL, NULL, 404, "not_found"},
        {"GET", "/v1/attacks", NULL, NULL, 405, "method_not_allowed"},
        {"DELETE", "/v1/models", NULL, NULL, 405, "method_not_allowed"},
        {"PUT", "/v2/models/cnn/infer", "application/json", "{}", 405, "method_not_allowed"},
        {"POST", "/v1/attacks?async=maybe", "application/json", "{\"model\":\"cnn\",\"target\":3}", 400, "invalid_request"},
        {"POST", "/v1/attacks?async=true", "application/json", "{\"model\":\"cnn\",\"target\":3}", 400, "missing_image"},
        {"POST", "/v1/evaluations", "application/json", "{", 400, "invalid_json"},
        {"POST", "/v1/evaluations", "text/plain", "{}", 415, "unsupported_media_type"},
        {"POST", "/v1/evaluations", "application/json", "{\"colour\":1}", 400, "unknown_field"},
        {"POST", "/v1/evaluations", "application/json", "{\"models\":\"cnn\"}", 400, "invalid_request"},
        {"POST", "/v1/evaluations", "application/json", "{\"models\":[\"nope\"]}", 404, "model_not_found"},
        {"POST", "/v1/evaluations", "application/json", "{\"models\":[\"cnn\",\"cnn\"]}", 422, "duplicate_model"},
        {"POST", "/v1/evaluations", "application/json", "{\"dataset\":\"cifar\"}", 404, "dataset_not_found"},
        {"POST", "/v1/evaluations", "application/json", "{\"n\":0}", 422, "out_of_range"},
        {"POST", "/v1/evaluations", "application/json", "{\"n\":\"ten\"}", 400, "invalid_request"},
        {"POST", "/v1/evaluations", "application/json", "{\"first\":1999,\"n\":5}", 422, "out_of_range"},
        {"POST", "/v1/evaluations", "application/json", "{\"split\":\"train\",\"n\":8000}", 422, "evaluation_too_large"},
        {"POST", "/v1/evaluations", "application/json", "{\"noise\":[0.1,-1]}", 422, "out_of_range"},
        {"POST", "/v1/evaluations", "application/json", "{\"noise\":[0.1,0.2,0.3,0.4,0.5]}", 422, "out_of_range"},
        {"POST", "/v1/evaluations", "application/json", "{\"magnify\":2}", 422, "out_of_range"},
        {"POST", "/v1/evaluations", "application/json", "{\"method\":\"magic\"}", 422, "invalid_params"},
        {"POST", "/v1/evaluations", "application/json", "{\"params\":{\"steps\":\"many\"}}", 422, "invalid_params"},
        {"POST", "/v1/evaluations", "application/json", "{\"timeout\":0}", 400, "invalid_timeout"},
        {"GET", "/v1/evaluations", NULL, NULL, 405, "method_not_allowed"},
        {"GET", "/v1/jobs/0123456789abcdef", NULL, NULL, 404, "job_not_found"},
        {"DELETE", "/v1/jobs/nope", NULL, NULL, 404, "job_not_found"},
        {"POST", "/v1/jobs/nope", "application/json", "{}", 405, "method_not_allowed"},
        {"GET", "/v1/models/nope/lipschitz", NULL, NULL, 404, "model_not_found"},
        {"GET", "/v1/models/cnn/lipschitz?seed=-1", NULL, NULL, 400, "invalid_request"},
        {"POST", "/v1/models/cnn/lipschitz", "application/json", "{}", 405, "method_not_allowed"},
        {"POST", "/v1/models/nope/units", "application/json", "{\"layer\":1,\"direction\":0}", 404, "model_not_found"},
        {"POST", "/v1/models/cnn/units", "application/json", "{\"direction\":0}", 400, "missing_field"},
        {"POST", "/v1/models/cnn/units", "application/json", "{\"layer\":1,\"direction\":\"north\"}", 400, "invalid_request"},
        {"POST", "/v1/models/cnn/units", "application/json", "{\"layer\":1,\"direction\":0,\"depth\":1}", 400, "unknown_field"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":6,\"direction\":0}", 422, "layer_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":-1,\"direction\":0}", 422, "layer_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":\"no such node\",\"direction\":0}", 422, "layer_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":2,\"direction\":100}", 422, "unit_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":2,\"direction\":\"random\",\"k\":65}", 422, "k_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":2,\"direction\":0,\"k\":0}", 422, "k_out_of_range"},
        {"POST", "/v1/models/fc100-100-10/units", "application/json", "{\"layer\":2,\"direction\":0,\"dataset\":\"cifar\"}", 404, "dataset_not_found"},
        {"GET", "/v1/models/cnn/units", NULL, NULL, 405, "method_not_allowed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char ct[128];
        snprintf(ct, sizeof ct, "Content-Type: %s", c->content_type ? c->content_type : "");
        const char *headers[] = {ct, NULL};
        req_opts o = {.method = c->method, .headers = c->content_type ? headers : NULL,
                      .body = c->body, .len = c->body ? strlen(c->body) : 0};
        reply r;
        request(c->path, &o, &r);
        if (r.status != c->status || !r.json)
            fail_msg("case %zu (%s %s %s): expected %ld, got %ld: %s", i, c->method, c->path,
                     c->body ? c->body : "", c->status, r.status, r.body ? r.body : "");
        assert_error(&r, c->status, c->code);
        if (c->status == 405) {
            char buf[64];
            assert_non_null(header_of(&r, "Allow", buf, sizeof buf));
        }
        reply_free(&r);
    }
    reply r;
    request("/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_body_too_large(void **state)
{
    (void)state;
    size_t n = 3u << 20; /* the daemon runs with --max-body 1M */
    char *big = malloc(n);
    memset(big, ' ', n);
    req_opts o = {.headers = json_body_type, .body = big, .len = n};
    reply r;
    request("/v1/attacks", &o, &r);
    assert_error(&r, 413, "body_too_large");
    reply_free(&r);
    o.chunked = 1;
    request("/v1/attacks", &o, &r);
    assert_error(&r, 413, "body_too_large");
    reply_free(&r);
    free(big);
    request("/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_request_id(void **state)
{
    (void)state;
    const char *mine[] = {"X-Request-Id: trace-0042", NULL};
    req_opts o = {.headers = mine};
    reply r;
    char buf[128];
    request("/v1/models", &o, &r);
    assert_string_equal(header_of(&r, "X-Request-Id", buf, sizeof buf), "trace-0042");
    reply_free(&r);
    request("/nowhere", &o, &r);
    assert_string_equal(header_of(&r, "X-Request-Id", buf, sizeof buf), "trace-0042");
    reply_free(&r);
    request("/v1/models", NULL, &r);
    assert_int_equal(strlen(header_of(&r, "X-Request-Id", buf, sizeof buf)), 16);
    reply_free(&r);
    /* The log line of the request carries the id, the status and the path
     * (written when the request completes, just after the answer). */
    int found = 0;
    for (int tries = 0; tries < 100 && !found; tries++) {
        size_t len;
        char *log = (char *)tu_read_file(main_daemon.log, &len);
        assert_non_null(log);
        log = realloc(log, len + 1);
        log[len] = '\0';
        found = strstr(log, "path=/nowhere status=404") && strstr(log, "id=trace-0042");
        free(log);
        if (!found)
            usleep(20000);
    }
    assert_true(found);
}

static int name_char(char c, int first)
{
    return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && c >= '0' && c <= '9');
}

/* One sample line: name{label="value",...} number. */
static int valid_sample(const char *line, size_t len)
{
    size_t i = 0;
    if (!name_char(line[0], 1))
        return 0;
    while (i < len && name_char(line[i], 0))
        i++;
    if (i < len && line[i] == '{') {
        i++;
        while (i < len && line[i] != '}') {
            size_t start = i;
            while (i < len && name_char(line[i], i == start) && line[i] != ':')
                i++;
            if (i == start || i + 1 >= len || line[i] != '=' || line[i + 1] != '"')
                return 0;
            for (i += 2; i < len && line[i] != '"'; i += line[i] == '\\' ? 2 : 1)
                ;
            i++;
            if (i < len && line[i] == ',')
                i++;
        }
        i++;
    }
    if (i >= len || line[i] != ' ')
        return 0;
    char num[64];
    snprintf(num, sizeof num, "%.*s", (int)(len - i - 1), line + i + 1);
    char *end;
    strtod(num, &end);
    return end != num && *end == '\0';
}

static void test_metrics(void **state)
{
    (void)state;
    reply r;
    request("/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    char buf[128];
    assert_non_null(strstr(header_of(&r, "Content-Type", buf, sizeof buf), "text/plain"));
    int samples = 0;
    for (char *p = r.body; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len && p[0] != '#') {
            if (!valid_sample(p, len))
                fail_msg("not a sample line: %.*s", (int)len, p);
            samples++;
        }
        p = nl ? nl + 1 : NULL;
    }
    assert_true(samples > 20);
    assert_true(metric_value(r.body, "blindspot_ready") == 1);
    assert_true(metric_value(r.body, "blindspot_workers") == 2);
    assert_true(metric_value(r.body, "blindspot_http_requests_total{route=\"/v2/models/{name}/infer\","
                                     "method=\"POST\",status=\"200\"}") >= 1);
    assert_true(metric_value(r.body, "blindspot_attack_duration_seconds_count{method=\"lbfgs\","
                                     "model=\"fc100-100-10\"}") >= 1);
    assert_non_null(strstr(r.body, "# TYPE blindspot_http_request_duration_seconds histogram"));
    /* and Prometheus' own checker accepts the page */
    assert_promtool_accepts(r.body, strlen(r.body));
    reply_free(&r);
}

static void test_openapi_lints(void **state)
{
    (void)state;
    /* make test installs the linter into build/npm-tools */
    char *out = NULL;
    int rc = tu_run("REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "
                    "build/npm-tools/node_modules/.bin/redocly lint api/openapi.yaml 2>&1", &out);
    if (rc != 0)
        fail_msg("redocly lint api/openapi.yaml exited %d: %s", rc, out ? out : "");
    free(out);
}

typedef struct client_arg {
    int index;
    long status;
    int label;
} client_arg;

static void *infer_client(void *p)
{
    client_arg *a = p;
    bs_dataset d = test_split();
    json_t *data = json_array();
    for (int k = 0; k < 784; k++)
        json_array_append_new(data, json_real(d.images[(size_t)a->index * 784 + k]));
    json_t *req = json_pack("{s:[{s:s, s:[i,i,i,i], s:s, s:o}]}", "inputs", "name", "input",
                            "shape", 1, 1, 28, 28, "datatype", "FP32", "data", data);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request("/v2/models/cnn/infer", &o, &r);
    a->status = r.status;
    json_t *label = json_array_get(json_object_get(r.json, "outputs"), 1);
    a->label = (int)json_integer_value(json_array_get(json_object_get(label, "data"), 0));
    reply_free(&r);
    free(body);
    bs_dataset_free(&d);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    (void)state;
    enum { N = 32 };
    pthread_t th[N];
    client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){.index = i};
        pthread_create(&th[i], NULL, infer_client, &args[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load("models/cnn.safetensors", err);
    bs_workspace *ws = bs_workspace_new(m, 1);
    bs_dataset d = test_split();
    for (int i = 0; i < N; i++) {
        assert_int_equal(args[i].status, 200);
        assert_int_equal(args[i].label, bs_argmax(bs_model_forward(m, ws, d.images + (size_t)i * 784, 1), 10));
    }
    bs_dataset_free(&d);
    bs_workspace_free(ws);
    bs_model_free(m);
}

/* An attack that runs until its time budget (adam-l1 with many steps). */
static void slow_attack_body(char *buf, size_t size, double timeout)
{
    snprintf(buf, size, "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
             "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000},"
             "\"timeout\":%g}", timeout);
}

static void test_deadline_504(void **state)
{
    (void)state;
    char body[512];
    slow_attack_body(body, sizeof body, 0.5);
    reply r;
    double t0 = now_s();
    post_json("/v1/attacks", body, &r);
    double took = now_s() - t0;
    assert_error(&r, 504, "deadline_exceeded");
    assert_true(took < 5);
    json_t *results = json_object_get(r.json, "results");
    assert_int_equal(json_array_size(results), 9);
    json_t *res = json_array_get(results, 0);
    assert_string_equal(json_string_value(json_object_get(res, "status")), "timeout");
    assert_non_null(json_object_get(json_object_get(res, "image"), "data"));
    reply_free(&r);
    /* ?timeout= lowers the budget the same way. */
    slow_attack_body(body, sizeof body, 30);
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request("/v1/attacks?timeout=0.3", &o, &r);
    assert_error(&r, 504, "deadline_exceeded");
    reply_free(&r);
}

static void test_client_goes_away(void **state)
{
    (void)state;
    char body[512];
    slow_attack_body(body, sizeof body, 20);
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body), .timeout_ms = 300};
    double t0 = now_s();
    request("/v1/attacks", &o, &r);
    assert_int_equal(r.curl_error, CURLE_OPERATION_TIMEDOUT);
    reply_free(&r);
    /* The attack notices and stops; the worker is free again well before
     * the attack's 20 s budget. */
    double busy = 1;
    while (now_s() - t0 < 8) {
        request("/metrics", NULL, &r);
        busy = metric_value(r.body, "blindspot_workers_busy");
        reply_free(&r);
        if (busy == 0)
            break;
        usleep(50000);
    }
    assert_true(busy == 0);
    request("/metrics", NULL, &r);
    assert_true(metric_value(r.body, "blindspot_attack_targets_total{method=\"adam-l1\","
                                     "model=\"fc200-200-10\",outcome=\"cancelled\"}") >= 1);
    reply_free(&r);
    request("/v2/health/ready", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

typedef struct attack_arg {
    int port;
    const char *body;
    reply r;
} attack_arg;

static void *attack_client(void *p)
{
    attack_arg *a = p;
    req_opts o = {.headers = json_body_type, .body = a->body, .len = strlen(a->body)};
    request_on(a->port, "/v1/attacks", &o, &a->r);
    return NULL;
}

static void test_queue_full_503(void **state)
{
    (void)state;
    daemon_proc d;
    /* one client fills the queue: its own cap (--max-client-work) out of the way */
    const char *extra[] = {"--workers", "1", "--queue-size", "1", "--max-client-work", "100",
                           NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    char body[512];
    slow_attack_body(body, sizeof body, 1.5);
    enum { N = 4 };
    pthread_t th[N];
    attack_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (attack_arg){.port = d.port, .body = body};
        pthread_create(&th[i], NULL, attack_client, &args[i]);
        usleep(100000);
    }
    int full = 0, timed_out = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (args[i].r.status == 503) {
            assert_error(&args[i].r, 503, "queue_full");
            full++;
        } else {
            assert_error(&args[i].r, 504, "deadline_exceeded");
            timed_out++;
        }
        reply_free(&args[i].r);
    }
    /* One ran, one waited (and ran out of time in the queue), the rest were refused. */
    assert_int_equal(full, N - 2);
    assert_int_equal(timed_out, 2);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

/* An infer request of n zero images of fc100-100-10 on port, with a query. */
static void infer_zeros(int port, int n, const char *query, reply *r)
{
    size_t cap = (size_t)n * 784 * 2 + 256;
    char *body = malloc(cap);
    assert_non_null(body);
    int len = snprintf(body, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[%d,784],"
                       "\"datatype\":\"FP32\",\"data\":[", n);
    for (int i = 0; i < n * 784; i++)
        len += snprintf(body + len, cap - (size_t)len, i ? ",0" : "0");
    len += snprintf(body + len, cap - (size_t)len, "]}]}");
    char path[128];
    snprintf(path, sizeof path, "/v2/models/fc100-100-10/infer%s", query);
    req_opts o = {.headers = json_body_type, .body = body, .len = (size_t)len};
    request_on(port, path, &o, r);
    free(body);
}

/* Waits until /metrics shows gauge at value; fails after 10 s. */
static void wait_gauge(int port, const char *gauge, double value)
{
    double t0 = now_s();
    for (;;) {
        reply r;
        request_on(port, "/metrics", NULL, &r);
        double v = metric_value(r.body, gauge);
        reply_free(&r);
        if (v == value)
            return;
        if (now_s() - t0 > 10)
            fail_msg("%s is %g, not %g, after 10 s", gauge, v, value);
        usleep(20000);
    }
}

/* A small inference runs on the HTTP thread when nothing waits in the
 * queue, so a busy worker does not hold it up; it still has its deadline,
 * and it does not jump a queue that has jobs in it. A large batch always
 * goes through the queue. */
static void test_quick_infer_inline(void **state)
{
    (void)state;
    daemon_proc d;
    /* one client fills the queue: its own cap (--max-client-work) out of the way */
    const char *extra[] = {"--workers", "1", "--queue-size", "1", "--max-client-work", "100",
                           NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    reply r;
    /* the deadline is checked before it runs */
    infer_zeros(d.port, 1, "?timeout=0.000001", &r);
    assert_error(&r, 504, "deadline_exceeded");
    reply_free(&r);

    char body[512];
    slow_attack_body(body, sizeof body, 2.5);
    attack_arg a = {.port = d.port, .body = body};
    pthread_t ta;
    pthread_create(&ta, NULL, attack_client, &a);
    wait_gauge(d.port, "blindspot_workers_busy", 1);
    /* the only worker is busy: a quick inference is answered anyway */
    double t0 = now_s();
    infer_zeros(d.port, 1, "", &r);
    assert_int_equal(r.status, 200);
    assert_true(now_s() - t0 < 1);
    reply_free(&r);
    /* 16 images (1.4 million multiply-adds) wait for the worker, past their time */
    infer_zeros(d.port, 16, "?timeout=0.3", &r);
    assert_error(&r, 504, "deadline_exceeded");
    reply_free(&r);
    /* a job waits in the queue: the quick inference may not overtake it,
     * and the queue is full */
    attack_arg b = {.port = d.port, .body = body};
    pthread_t tb;
    pthread_create(&tb, NULL, attack_client, &b);
    wait_gauge(d.port, "blindspot_queue_depth", 1);
    infer_zeros(d.port, 1, "", &r);
    assert_error(&r, 503, "queue_full");
    reply_free(&r);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    reply_free(&a.r);
    reply_free(&b.r);
    request_on(d.port, "/metrics", NULL, &r);
    assert_true(metric_value(r.body, "blindspot_http_requests_total{route=\"/v2/models/{name}/infer\","
                                     "method=\"POST\",status=\"200\"}") == 1);
    assert_true(metric_value(r.body, "blindspot_workers_busy") == 0);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

static void test_sigterm_drains(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--drain-timeout", "5", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    /* One attack that finishes within the drain time, one that cannot. */
    const char *quick = "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
                        "\"target\":3,\"method\":\"adam-l1\",\"params\":{\"steps\":1000}}";
    char slow[512];
    slow_attack_body(slow, sizeof slow, 60);
    attack_arg a = {.port = d.port, .body = quick}, b = {.port = d.port, .body = slow};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, attack_client, &a);
    pthread_create(&tb, NULL, attack_client, &b);
    /* Wait until both run. */
    double t0 = now_s();
    while (now_s() - t0 < 10) {
        reply r;
        request_on(d.port, "/metrics", NULL, &r);
        double busy = metric_value(r.body, "blindspot_workers_busy");
        reply_free(&r);
        if (busy == 2)
            break;
        usleep(20000);
    }
    int status = daemon_stop(&d);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(status, 0);
    assert_int_equal(a.r.status, 200);
    assert_error(&b.r, 503, "shutting_down");
    assert_non_null(json_object_get(b.r.json, "results")); /* the best so far */
    reply_free(&a.r);
    reply_free(&b.r);
    daemon_cleanup(&d);
}

/* ---- asynchronous jobs --------------------------------------------------------- */

static int is_final_state(const char *state)
{
    return state && (!strcmp(state, "done") || !strcmp(state, "failed") ||
                     !strcmp(state, "cancelled"));
}

/* Polls GET path (a job's location) until its state is `state`, or is final
 * when state is NULL, for at most `seconds`. Returns the job document (the
 * caller releases it), or fails. */
static json_t *wait_job(int port, const char *path, const char *state, double seconds)
{
    double until = now_s() + seconds;
    for (;;) {
        reply r;
        request_on(port, path, NULL, &r);
        if (r.status != 200)
            fail_msg("GET %s: %ld %s", path, r.status, r.body ? r.body : "");
        const char *st = json_string_value(json_object_get(r.json, "state"));
        if (state ? !strcmp(st, state) : is_final_state(st)) {
            json_t *doc = json_incref(r.json);
            reply_free(&r);
            return doc;
        }
        if (now_s() > until)
            fail_msg("job %s is still %s after %.0f s: %s", path, st, seconds, r.body);
        reply_free(&r);
        usleep(30000);
    }
}

/* POSTs body to path and checks the 202 of a new job; the job's location
 * goes to location. */
static void submit_job(int port, const char *path, const char *body, char *location, size_t size)
{
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(port, path, &o, &r);
    if (r.status != 202)
        fail_msg("POST %s: expected 202, got %ld: %s", path, r.status, r.body ? r.body : "");
    assert_non_null(header_of(&r, "Location", location, size));
    const char *id = json_string_value(json_object_get(r.json, "id"));
    assert_int_equal(strlen(id), 32);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "queued");
    assert_string_equal(json_string_value(json_object_get(r.json, "location")), location);
    assert_string_equal(location + strlen("/v1/jobs/"), id);
    reply_free(&r);
}

/* DELETEs a job; returns the status (the document in *doc when doc). */
static long delete_job(int port, const char *location, json_t **doc)
{
    reply r;
    req_opts o = {.method = "DELETE"};
    request_on(port, location, &o, &r);
    long status = r.status;
    if (doc)
        *doc = json_incref(r.json);
    reply_free(&r);
    return status;
}

/* Removes every result's "seconds" (wall time, the one field two runs of
 * the same attack do not share). */
static void drop_seconds(json_t *answer)
{
    size_t i;
    json_t *res;
    json_array_foreach(json_object_get(answer, "results"), i, res)
        json_object_del(res, "seconds");
}

static void test_async_attack_equals_sync(void **state)
{
    (void)state;
    char body[256], location[128];
    snprintf(body, sizeof body, "{\"model\":\"fc100-100-10\",\"image\":{\"dataset\":\"mnist\","
             "\"index\":3},\"target\":[%d,%d],\"report\":[\"cnn\"]}", other_label(3),
             (other_label(3) + 1) % 10);
    reply sync;
    post_json("/v1/attacks", body, &sync);
    assert_int_equal(sync.status, 200);
    /* Accept: image/png does not apply to a job: its result is the JSON. */
    const char *png[] = {"Content-Type: application/json", "Accept: image/png", NULL};
    req_opts o = {.headers = png, .body = body, .len = strlen(body)};
    reply r;
    request("/v1/attacks?async=true", &o, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(header_of(&r, "Location", location, sizeof location));
    reply_free(&r);
    json_t *job = wait_job(main_daemon.port, location, NULL, 20);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "done");
    assert_string_equal(json_string_value(json_object_get(job, "kind")), "attack");
    json_t *progress = json_object_get(job, "progress");
    /* two targets, 8 runs of the c search each */
    assert_int_equal(json_integer_value(json_object_get(progress, "total")), 16);
    assert_int_equal(json_integer_value(json_object_get(progress, "done")), 16);
    for (const char *const *k = (const char *const[]){"created", "started", "finished",
                                                      "expires", NULL}; *k; k++)
        assert_int_equal(json_string_length(json_object_get(job, *k)), 24);
    assert_null(json_object_get(job, "error"));
    json_t *result = json_object_get(job, "result");
    drop_seconds(result);
    drop_seconds(sync.json);
    if (!json_equal(result, sync.json))
        fail_msg("the job's result differs from the synchronous answer:\n%s\n%s",
                 json_dumps(result, JSON_COMPACT), json_dumps(sync.json, JSON_COMPACT));
    json_decref(job);
    reply_free(&sync);
}

static void test_job_cancel(void **state)
{
    (void)state;
    /* Two slow jobs take the daemon's two workers; a third waits. */
    char body[512], running[2][128], queued[128];
    slow_attack_body(body, sizeof body, 30);
    for (int i = 0; i < 2; i++)
        submit_job(main_daemon.port, "/v1/attacks?async=true", body, running[i], sizeof running[i]);
    submit_job(main_daemon.port, "/v1/attacks?async=true", body, queued, sizeof queued);
    for (int i = 0; i < 2; i++)
        json_decref(wait_job(main_daemon.port, running[i], "running", 10));
    json_t *doc = wait_job(main_daemon.port, queued, "queued", 1);
    json_decref(doc);

    /* A queued job is cancelled at once. */
    assert_int_equal(delete_job(main_daemon.port, queued, &doc), 200);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "cancelled");
    assert_null(json_object_get(doc, "result"));
    json_decref(doc);

    /* A running one stops at its next check: 202 while it stops. */
    double t0 = now_s();
    for (int i = 0; i < 2; i++) {
        long status = delete_job(main_daemon.port, running[i], &doc);
        const char *st = json_string_value(json_object_get(doc, "state"));
        if (status == 202) {
            assert_string_equal(st, "running");
            assert_true(json_is_true(json_object_get(doc, "cancel_requested")));
        } else {
            assert_int_equal(status, 200);
            assert_string_equal(st, "cancelled");
        }
        json_decref(doc);
    }
    for (int i = 0; i < 2; i++) {
        doc = wait_job(main_daemon.port, running[i], NULL, 5);
        assert_string_equal(json_string_value(json_object_get(doc, "state")), "cancelled");
        json_decref(doc);
    }
    assert_true(now_s() - t0 < 2);
    /* The workers are free: a quick request runs at once. */
    reply r;
    request("/metrics", NULL, &r);
    assert_true(metric_value(r.body, "blindspot_workers_busy") == 0);
    assert_true(metric_value(r.body, "blindspot_jobs{state=\"cancelled\"}") >= 3);
    reply_free(&r);
    /* DELETE of a finished job answers its document as it was and forgets it. */
    assert_int_equal(delete_job(main_daemon.port, queued, &doc), 200);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "cancelled");
    json_decref(doc);
    request(queued, NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    assert_int_equal(delete_job(main_daemon.port, queued, NULL), 404);

    /* A job that runs out of its time budget fails with the best results
     * so far, as the synchronous call answers 504. */
    slow_attack_body(body, sizeof body, 0.4);
    submit_job(main_daemon.port, "/v1/attacks?async=true", body, queued, sizeof queued);
    doc = wait_job(main_daemon.port, queued, NULL, 10);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "error"), "code")),
                        "deadline_exceeded");
    json_t *results = json_object_get(json_object_get(doc, "result"), "results");
    assert_int_equal(json_array_size(results), 9);
    json_decref(doc);
}

static void test_job_table_full_and_expiry(void **state)
{
    (void)state;
    daemon_proc d;
    const char *extra[] = {"--workers", "1", "--max-jobs", "2", "--job-ttl", "1", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    char body[512], a[128], b[128], quick[128];
    slow_attack_body(body, sizeof body, 30);
    submit_job(d.port, "/v1/attacks?async=true", body, a, sizeof a);
    submit_job(d.port, "/v1/attacks?async=true", body, b, sizeof b);
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(d.port, "/v1/attacks?async=true", &o, &r);
    assert_error(&r, 503, "too_many_jobs");
    reply_free(&r);
    /* Cancelled jobs keep their document until they expire, but make room:
     * a new job forgets the one that ended longest ago. */
    delete_job(d.port, a, NULL);
    json_decref(wait_job(d.port, a, "cancelled", 5));
    delete_job(d.port, b, NULL);
    json_decref(wait_job(d.port, b, "cancelled", 5));
    char c[128];
    submit_job(d.port, "/v1/attacks?async=true", body, c, sizeof c);
    request_on(d.port, a, NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    delete_job(d.port, c, NULL);
    json_decref(wait_job(d.port, c, "cancelled", 5));
    /* A second later they are gone, and a finished job goes the same way. */
    usleep(1200000);
    request_on(d.port, c, NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    const char *fast = "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
                       "\"target\":3,\"method\":\"fgsm\"}";
    submit_job(d.port, "/v1/attacks?async=true", fast, quick, sizeof quick);
    json_t *doc = wait_job(d.port, quick, NULL, 10);
    assert_string_equal(json_string_value(json_object_get(doc, "state")), "done");
    json_decref(doc);
    usleep(2000000);
    request_on(d.port, quick, NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    request_on(d.port, b, NULL, &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    /* Shutdown cancels jobs rather than wait the drain time (30 s) for
     * results nobody could read. */
    submit_job(d.port, "/v1/attacks?async=true", body, a, sizeof a);
    json_decref(wait_job(d.port, a, "running", 10));
    double t0 = now_s();
    assert_int_equal(daemon_stop(&d), 0);
    assert_true(now_s() - t0 < 5);
    daemon_cleanup(&d);
}

static void test_evaluation_equals_cli(void **state)
{
    (void)state;
    const char *body = "{\"models\":[\"fc10-1e-4\",\"fc100-100-10\",\"cnn\"],\"first\":20,"
                       "\"n\":5,\"seed\":7,\"noise\":[0.2],\"magnify\":0.15}";
    char location[128], cmd[512], *out = NULL;
    /* both workers free: the job runs in shards on them */
    wait_gauge(main_daemon.port, "blindspot_workers_busy", 0);
    submit_job(main_daemon.port, "/v1/evaluations", body, location, sizeof location);
    snprintf(cmd, sizeof cmd, "%s evaluate --models fc10-1e-4,fc100-100-10,cnn --first 20 --n 5 "
             "--seed 7 --noise 0.2 --magnify 0.15 --threads 2 --json", tu_bin("blindspot"));
    int rc = tu_run(cmd, &out);
    if (rc != 0)
        fail_msg("%s exited %d: %s", cmd, rc, out ? out : "");
    json_t *cli = json_loads(out, 0, NULL);
    assert_non_null(cli);
    free(out);
    json_t *job = wait_job(main_daemon.port, location, NULL, 30);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "done");
    assert_string_equal(json_string_value(json_object_get(job, "kind")), "evaluation");
    json_t *progress = json_object_get(job, "progress");
    assert_int_equal(json_integer_value(json_object_get(progress, "done")), 15);
    assert_int_equal(json_integer_value(json_object_get(progress, "total")), 15);
    json_t *result = json_object_get(job, "result");
    /* every number, exactly (both print 9 significant digits) */
    if (!json_equal(result, cli))
        fail_msg("the evaluation job differs from blindspot evaluate --json:\n%s\n%s",
                 json_dumps(result, JSON_COMPACT), json_dumps(cli, JSON_COMPACT));
    /* and it is the paper's tables: the diagonal is 100% */
    json_t *error = json_object_get(json_object_get(result, "table2"), "error");
    assert_true(json_number_value(json_object_get(json_object_get(error, "cnn"), "cnn")) == 1.0);
    assert_int_equal(json_array_size(json_object_get(json_object_get(result, "table2"), "noise")), 1);
    assert_true(json_is_number(json_object_get(json_object_get(result, "max_ratio"), "fc10-1e-4")));
    size_t len;
    char *log = (char *)tu_read_file(main_daemon.log, &len);
    assert_non_null(log);
    if (!strstr(log, "evaluation of 5 images x 3 models in 5 shards on 2 workers"))
        fail_msg("the evaluation did not run in shards on both workers:\n%s", log);
    free(log);
    json_decref(cli);
    json_decref(job);
}

/* A job in shards on both workers stops as a whole: cancelled, or out of
 * its time budget, it frees both workers at once. */
static void test_evaluation_shards_stop_together(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"models\":[\"fc100-100-10\",\"cnn\"],\"n\":400,\"timeout\":60}",
        "{\"models\":[\"fc100-100-10\",\"cnn\"],\"n\":400,\"timeout\":1}",
    };
    for (int b = 0; b < 2; b++) {
        char location[128];
        wait_gauge(main_daemon.port, "blindspot_workers_busy", 0);
        submit_job(main_daemon.port, "/v1/evaluations", bodies[b], location, sizeof location);
        json_decref(wait_job(main_daemon.port, location, "running", 10));
        /* the job's worker and its helper */
        wait_gauge(main_daemon.port, "blindspot_workers_busy", 2);
        json_t *doc = wait_job(main_daemon.port, location, "running", 1);
        json_t *progress = json_object_get(doc, "progress");
        assert_int_equal(json_integer_value(json_object_get(progress, "total")), 800);
        json_decref(doc);
        double t0 = now_s();
        if (b == 0) {
            long status = delete_job(main_daemon.port, location, &doc);
            assert_true(status == 202 || status == 200);
            json_decref(doc);
        }
        doc = wait_job(main_daemon.port, location, NULL, 10);
        if (b == 0) {
            assert_string_equal(json_string_value(json_object_get(doc, "state")), "cancelled");
        } else {
            assert_string_equal(json_string_value(json_object_get(doc, "state")), "failed");
            assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "error"),
                                                                  "code")),
                                "deadline_exceeded");
        }
        json_decref(doc);
        /* no shard runs on after the job ended */
        wait_gauge(main_daemon.port, "blindspot_workers_busy", 0);
        if (now_s() - t0 >= 8)
            fail_msg("job %d took %.1f s to stop", b, now_s() - t0);
    }
}

/* An evaluation borrows idle workers for its shards but gives them back:
 * a request that arrives while it runs on every worker is answered long
 * before the evaluation ends. */
static void test_evaluation_gives_workers_back(void **state)
{
    (void)state;
    char location[128];
    wait_gauge(main_daemon.port, "blindspot_workers_busy", 0);
    submit_job(main_daemon.port, "/v1/evaluations",
               "{\"models\":[\"fc100-100-10\",\"fc200-200-10\"],\"n\":1000,\"timeout\":300}",
               location, sizeof location);
    json_decref(wait_job(main_daemon.port, location, "running", 10));
    wait_gauge(main_daemon.port, "blindspot_workers_busy", 2);
    char body[256];
    snprintf(body, sizeof body, "{\"model\":\"fc10-1e-2\",\"image\":{\"dataset\":\"mnist\","
             "\"split\":\"test\",\"index\":0},\"target\":%d,\"method\":\"fgsm\"}",
             other_label(0));
    double t0 = now_s();
    reply r;
    /* a shard on the helper's worker finishes first (fully connected
     * models, so that it takes well under a minute under TSan too) */
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body),
                  .timeout_ms = 240000};
    request_on(main_daemon.port, "/v1/attacks", &o, &r);
    double waited = now_s() - t0;
    assert_int_equal(r.status, 200);
    reply_free(&r);
    request_on(main_daemon.port, location, NULL, &r);
    const char *st = json_string_value(json_object_get(r.json, "state"));
    if (!st || strcmp(st, "running") != 0)
        fail_msg("the attack waited %.1f s, until the evaluation was %s", waited, st);
    reply_free(&r);
    json_t *doc;
    long status = delete_job(main_daemon.port, location, &doc);
    assert_true(status == 202 || status == 200);
    json_decref(doc);
    json_decref(wait_job(main_daemon.port, location, "cancelled", 30));
    wait_gauge(main_daemon.port, "blindspot_workers_busy", 0);
}

/* ---- analysis --------------------------------------------------------------- */

static void check_lipschitz(const char *name)
{
    char path[256], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "models/%s.safetensors", name);
    bs_model *m = bs_model_load(path, err);
    assert_non_null(m);
    bs_lipschitz lip;
    assert_int_equal(bs_lipschitz_bounds(m, 1, &lip, err), 0);
    snprintf(path, sizeof path, "/v1/models/%s/lipschitz", name);
    reply r;
    request(path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "model")), name);
    json_t *layers = json_object_get(r.json, "layers");
    assert_int_equal(json_array_size(layers), (size_t)m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        json_t *l = json_array_get(layers, (size_t)i);
        double b = json_number_value(json_object_get(l, "bound"));
        assert_true(fabs(b - lip.layers[i].bound) <= 1e-8 * lip.layers[i].bound);
        assert_int_equal(json_integer_value(json_object_get(l, "iterations")), lip.layers[i].iterations);
        assert_string_equal(json_string_value(json_object_get(l, "type")), bs_layer_name(m->layers[i].kind));
    }
    double product = json_number_value(json_object_get(r.json, "product"));
    assert_true(fabs(product - lip.product) <= 1e-8 * lip.product);
    reply_free(&r);
    bs_model_free(m);
}

static void test_lipschitz(void **state)
{
    (void)state;
    check_lipschitz("fc100-100-10");
    check_lipschitz("cnn");
    reply r;
    request("/v1/models/fc10-1e-4/lipschitz?seed=5", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "seed")), 5);
    reply_free(&r);
}

/* POSTs a unit analysis and compares it with bs_units_rank here. */
static void check_units(const char *name, int layer, int unit, uint64_t seed, int k)
{
    char path[256], body[256], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "models/%s.safetensors", name);
    bs_model *m = bs_model_load(path, err);
    assert_non_null(m);
    bs_dataset d = test_split();
    int L = bs_units_layer(m, layer, err);
    assert_true(L >= 0);
    size_t dim = m->layers[L].out_size;
    float *v = malloc(dim * sizeof *v);
    if (unit < 0)
        bs_units_random(v, dim, seed);
    else
        bs_units_basis(v, dim, unit);
    bs_units_top top;
    assert_int_equal(bs_units_rank(m, layer, &d, v, 1, k, &top, err), 0);

    if (unit < 0)
        snprintf(body, sizeof body, "{\"layer\":%d,\"direction\":\"random\",\"seed\":%llu,\"k\":%d}",
                 layer, (unsigned long long)seed, k);
    else
        snprintf(body, sizeof body, "{\"layer\":%d,\"direction\":%d,\"k\":%d}", layer, unit, k);
    snprintf(path, sizeof path, "/v1/models/%s/units", name);
    reply r;
    post_json(path, body, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "layer")), L);
    assert_int_equal(json_integer_value(json_object_get(r.json, "dim")), (json_int_t)dim);
    assert_string_equal(json_string_value(json_object_get(r.json, "dataset")), "mnist");
    assert_string_equal(json_string_value(json_object_get(r.json, "split")), "test");
    json_t *idx = json_object_get(r.json, "indices"), *labels = json_object_get(r.json, "labels");
    assert_int_equal(json_array_size(idx), (size_t)k);
    for (int i = 0; i < k; i++) {
        assert_int_equal(json_integer_value(json_array_get(idx, (size_t)i)), top.indices[i]);
        assert_int_equal(json_integer_value(json_array_get(labels, (size_t)i)), top.labels[i]);
    }
    assert_int_equal(json_integer_value(json_object_get(r.json, "majority")), top.majority);
    assert_true(fabs(json_number_value(json_object_get(r.json, "purity")) - top.purity) < 1e-9);
    /* the grid: the k images side by side, one-pixel gaps */
    json_t *grid = json_object_get(r.json, "grid");
    const char *b64 = json_string_value(json_object_get(grid, "data"));
    size_t len;
    uint8_t *png = bs_base64_decode(b64, strlen(b64), &len, err);
    assert_non_null(png);
    bs_image img;
    assert_int_equal(bs_image_decode(png, len, 1 << 20, &img, err), 0);
    assert_int_equal(img.width, k * 28 + k - 1);
    assert_int_equal(img.height, 28);
    int first = top.indices[0];
    for (int p = 0; p < 28 * 28; p++)
        assert_true(fabsf(img.pixels[(p / 28) * img.width + p % 28] - d.images[(size_t)first * 784 + p]) <=
                    0.5f / 255 + 1e-6f);
    bs_image_free(&img);
    free(png);
    reply_free(&r);
    free(v);
    bs_dataset_free(&d);
    bs_model_free(m);
}

static void test_units(void **state)
{
    (void)state;
    check_units("fc100-100-10", 2, 5, 1, 8);
    check_units("fc100-100-10", 1, -1, 4, 3); /* layer 1 reads after its sigmoid: 2 */
    check_units("cnn", 3, 17, 1, 16);
}

/* ---- start-up and the route table ------------------------------------------- */

static void test_bad_model_stops_startup(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char path[512], cmd[1024], *out = NULL;
    size_t len;
    uint8_t *good = tu_read_file("models/fc10-1.safetensors", &len);
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    tu_write_file(path, good, len);
    snprintf(path, sizeof path, "%s/broken.safetensors", dir);
    tu_write_file(path, good, len / 2);
    free(good);
    snprintf(cmd, sizeof cmd, "%s --check --models %s --data data 2>&1", tu_bin("blindspotd"), dir);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "broken.safetensors"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s --listen 127.0.0.1:%d --models %s --data data --state none 2>&1",
             tu_bin("blindspotd"), free_port(), dir);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "broken.safetensors"));
    free(out);
    snprintf(path, sizeof path, "%s/broken.safetensors", dir);
    unlink(path);
    snprintf(cmd, sizeof cmd, "%s --check --models %s --data data 2>&1", tu_bin("blindspotd"), dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

/* A second daemon on a port in use refuses to start; it must not share the
 * port (SO_REUSEPORT would split the connections between the two). */
static void test_port_in_use_stops_startup(void **state)
{
    (void)state;
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "timeout 20 %s --listen 127.0.0.1:%d --models models --data data --state none 2>&1",
             tu_bin("blindspotd"), main_daemon.port);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "cannot listen"));
    free(out);
}

static void test_flags_and_environment(void **state)
{
    (void)state;
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --help", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 0);
    const char *flags[] = {"--listen", "--models", "--data", "--workers", "--queue-size",
                           "--timeout", "--max-body", "--drain-timeout", "--max-connections",
                           "--idle-timeout", "--max-pixels", "BLINDSPOT_WORKERS", "BLINDSPOT_LISTEN",
                           "--check", "--job-timeout", "--job-ttl", "BLINDSPOT_JOB_TTL",
                           "--max-jobs", "BLINDSPOT_MAX_JOBS", "--state", "BLINDSPOT_STATE",
                           "--model-name", "BLINDSPOT_MODEL_NAME", "SIGHUP"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strstr(out, flags[i]))
            fail_msg("--help does not mention %s", flags[i]);
    free(out);
    snprintf(cmd, sizeof cmd, "BLINDSPOT_WORKERS=many %s --check 2>&1", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "BLINDSPOT_WORKERS"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s --frobnicate 2>&1", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 2);
    free(out);
}

/* "METHOD /path" lines of the OpenAPI file: path keys are indented two
 * spaces under "paths:", operations four. */
static char *openapi_routes(void)
{
    size_t len;
    char *yaml = (char *)tu_read_file("api/openapi.yaml", &len);
    assert_non_null(yaml);
    yaml = realloc(yaml, len + 1);
    yaml[len] = '\0';
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    char path[256] = "";
    int in_paths = 0;
    for (char *line = strtok(yaml, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != ' ' && line[0] != '#')
            in_paths = !strncmp(line, "paths:", 6);
        if (!in_paths)
            continue;
        if (!strncmp(line, "  /", 3)) {
            snprintf(path, sizeof path, "%.*s", (int)(strcspn(line + 2, ":")), line + 2);
            continue;
        }
        static const char *const methods[] = {"get", "post", "put", "delete", "patch", "head"};
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
            size_t ml = strlen(methods[i]);
            if (!strncmp(line, "    ", 4) && line[4] != ' ' && !strncmp(line + 4, methods[i], ml) &&
                line[4 + ml] == ':') {
                char m[8];
                for (size_t k = 0; k <= ml; k++)
                    m[k] = (char)(k < ml ? methods[i][k] - 32 : 0);
                if (n + strlen(path) + 16 > cap) {
                    cap = 2 * cap + strlen(path);
                    out = realloc(out, cap);
                    assert_non_null(out);
                }
                n += (size_t)snprintf(out + n, cap - n, "%s %s\n", m, path);
            }
        }
    }
    free(yaml);
    return out;
}

static int line_in(const char *lines, const char *line, size_t len)
{
    for (const char *p = lines; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strcspn(p, "\n") == len && !strncmp(p, line, len))
            return 1;
    return 0;
}

static void test_routes_match_openapi(void **state)
{
    (void)state;
    char cmd[512], *served = NULL;
    snprintf(cmd, sizeof cmd, "%s --routes", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &served), 0);
    char *documented = openapi_routes();
    int bad = 0;
    for (const char *p = served; *p; p += strcspn(p, "\n") + 1)
        if (!line_in(documented, p, strcspn(p, "\n"))) {
            fprintf(stderr, "served but not in api/openapi.yaml: %.*s\n", (int)strcspn(p, "\n"), p);
            bad++;
        }
    for (const char *p = documented; *p; p += strcspn(p, "\n") + 1)
        if (!line_in(served, p, strcspn(p, "\n"))) {
            fprintf(stderr, "in api/openapi.yaml but not served: %.*s\n", (int)strcspn(p, "\n"), p);
            bad++;
        }
    assert_true(strlen(served) > 100);
    assert_int_equal(bad, 0);
    free(served);
    free(documented);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_server),
        cmocka_unit_test(test_head_like_get),
        cmocka_unit_test(test_v2_model_metadata),
        cmocka_unit_test(test_infer_equals_forward),
        cmocka_unit_test(test_infer_outputs_filter),
        cmocka_unit_test(test_infer_number_formats),
        cmocka_unit_test(test_infer_bad_numbers),
        cmocka_unit_test(test_v1_models),
        cmocka_unit_test(test_datasets_and_samples),
        cmocka_unit_test(test_attack_json_dataset),
        cmocka_unit_test(test_attack_dataset_half),
        cmocka_unit_test(test_attack_floats_and_jpeg),
        cmocka_unit_test(test_attack_already_target),
        cmocka_unit_test(test_attack_accept),
        cmocka_unit_test(test_cli_and_server_refuse_alike),
        cmocka_unit_test(test_attack_multipart_and_png),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_deadline_504),
        cmocka_unit_test(test_client_goes_away),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_queue_full_503),
        cmocka_unit_test(test_quick_infer_inline),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_async_attack_equals_sync),
        cmocka_unit_test(test_job_cancel),
        cmocka_unit_test(test_job_table_full_and_expiry),
        cmocka_unit_test(test_evaluation_equals_cli),
        cmocka_unit_test(test_evaluation_shards_stop_together),
        cmocka_unit_test(test_evaluation_gives_workers_back),
        cmocka_unit_test(test_lipschitz),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_bad_model_stops_startup),
        cmocka_unit_test(test_port_in_use_stops_startup),
        cmocka_unit_test(test_flags_and_environment),
        cmocka_unit_test(test_routes_match_openapi),
        cmocka_unit_test(test_openapi_lints),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
