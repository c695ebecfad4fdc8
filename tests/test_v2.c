/* test_v2 — conformance of blindspotd's Open Inference Protocol v2 (KServe)
 * over REST. The daemon is started with the zoo and every /v2 answer,
 * success and error, is checked against the protocol's JSON schemas,
 * transcribed below from kserve/kserve docs/predict-api/v2/
 * rest_predict_v2.yaml (and Triton's extension documents for statistics and
 * binary outputs) and read by a small schema checker (type, properties,
 * required, items, enum, anyOf, $ref). Beyond the schemas: the statuses the
 * protocol asks for (400 for a bad request, 4xx for "not ready"), versioned
 * paths, every input datatype, binary tensor data in and out (bit for bit
 * against the JSON answer), classification, statistics. Needs `make data
 * models` (make test does it). */
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the protocol's schemas --------------------------------------------- */

/* components.schemas of rest_predict_v2.yaml as JSON, with the error objects
 * of blindspot's /v2 ("code" beside the protocol's "error"), the health
 * answers of required_api.md, Triton's binary output (parameters.
 * binary_data_size instead of data) and statistics documents. */
static const char schemas_text[] =
    "{"
    "\"metadata_server_response\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"}, \"version\": {\"type\": \"string\"},"
    "    \"extensions\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}},"
    "  \"required\": [\"name\", \"version\", \"extensions\"]},"
    "\"error_response\": {\"type\": \"object\","
    "  \"properties\": {\"error\": {\"type\": \"string\"}, \"code\": {\"type\": \"string\"}},"
    "  \"required\": [\"error\", \"code\"]},"
    "\"metadata_model_response\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"},"
    "    \"versions\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
    "    \"platform\": {\"type\": \"string\"},"
    "    \"inputs\": {\"type\": \"array\", \"items\": {\"$ref\": \"metadata_tensor\"}},"
    "    \"outputs\": {\"type\": \"array\", \"items\": {\"$ref\": \"metadata_tensor\"}}},"
    "  \"required\": [\"name\", \"platform\"]},"
    "\"metadata_tensor\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"}, \"datatype\": {\"$ref\": \"datatype\"},"
    "    \"shape\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}}},"
    "  \"required\": [\"name\", \"datatype\", \"shape\"]},"
    "\"datatype\": {\"type\": \"string\", \"enum\": [\"BOOL\", \"UINT8\", \"UINT16\", \"UINT32\","
    "  \"UINT64\", \"INT8\", \"INT16\", \"INT32\", \"INT64\", \"FP16\", \"FP32\", \"FP64\", \"BYTES\"]},"
    "\"live_response\": {\"type\": \"object\", \"properties\": {\"live\": {\"type\": \"boolean\"}},"
    "  \"required\": [\"live\"]},"
    "\"ready_response\": {\"type\": \"object\", \"properties\": {\"ready\": {\"type\": \"boolean\"}},"
    "  \"required\": [\"ready\"]},"
    "\"parameters\": {\"type\": \"object\"},"
    "\"tensor_data\": {\"type\": \"array\", \"items\": {\"anyOf\": [{\"$ref\": \"tensor_data\"},"
    "  {\"type\": \"number\"}, {\"type\": \"string\"}, {\"type\": \"boolean\"}]}},"
    "\"inference_request\": {\"type\": \"object\","
    "  \"properties\": {\"id\": {\"type\": \"string\"}, \"parameters\": {\"$ref\": \"parameters\"},"
    "    \"inputs\": {\"type\": \"array\", \"items\": {\"anyOf\": [{\"$ref\": \"request_input\"},"
    "      {\"$ref\": \"request_input_binary\"}]}},"
    "    \"outputs\": {\"type\": \"array\", \"items\": {\"$ref\": \"request_output\"}}},"
    "  \"required\": [\"inputs\"]},"
    "\"request_input\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"},"
    "    \"shape\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}},"
    "    \"datatype\": {\"$ref\": \"datatype\"}, \"parameters\": {\"$ref\": \"parameters\"},"
    "    \"data\": {\"$ref\": \"tensor_data\"}},"
    "  \"required\": [\"name\", \"shape\", \"datatype\", \"data\"]},"
    "\"request_input_binary\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"},"
    "    \"shape\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}},"
    "    \"datatype\": {\"$ref\": \"datatype\"},"
    "    \"parameters\": {\"type\": \"object\","
    "      \"properties\": {\"binary_data_size\": {\"type\": \"integer\"}},"
    "      \"required\": [\"binary_data_size\"]}},"
    "  \"required\": [\"name\", \"shape\", \"datatype\", \"parameters\"]},"
    "\"request_output\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"}, \"parameters\": {\"$ref\": \"parameters\"}},"
    "  \"required\": [\"name\"]},"
    "\"model_ready_response\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"}, \"ready\": {\"type\": \"boolean\"}},"
    "  \"required\": [\"ready\"]},"
    "\"response_output\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"},"
    "    \"shape\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}},"
    "    \"datatype\": {\"$ref\": \"datatype\"}, \"parameters\": {\"$ref\": \"parameters\"},"
    "    \"data\": {\"$ref\": \"tensor_data\"}},"
    "  \"required\": [\"name\", \"shape\", \"datatype\", \"data\"]},"
    "\"response_output_binary\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"},"
    "    \"shape\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}},"
    "    \"datatype\": {\"$ref\": \"datatype\"},"
    "    \"parameters\": {\"type\": \"object\","
    "      \"properties\": {\"binary_data_size\": {\"type\": \"integer\"}},"
    "      \"required\": [\"binary_data_size\"]}},"
    "  \"required\": [\"name\", \"shape\", \"datatype\", \"parameters\"]},"
    "\"inference_response\": {\"type\": \"object\","
    "  \"properties\": {\"model_name\": {\"type\": \"string\"},"
    "    \"model_version\": {\"type\": \"string\"}, \"id\": {\"type\": \"string\"},"
    "    \"parameters\": {\"$ref\": \"parameters\"},"
    "    \"outputs\": {\"type\": \"array\", \"items\": {\"anyOf\": [{\"$ref\": \"response_output\"},"
    "      {\"$ref\": \"response_output_binary\"}]}}},"
    "  \"required\": [\"model_name\", \"outputs\"]},"
    "\"statistic_duration\": {\"type\": \"object\","
    "  \"properties\": {\"count\": {\"type\": \"integer\"}, \"ns\": {\"type\": \"integer\"}},"
    "  \"required\": [\"count\", \"ns\"]},"
    "\"inference_statistics\": {\"type\": \"object\","
    "  \"properties\": {\"success\": {\"$ref\": \"statistic_duration\"},"
    "    \"fail\": {\"$ref\": \"statistic_duration\"}, \"queue\": {\"$ref\": \"statistic_duration\"},"
    "    \"compute_input\": {\"$ref\": \"statistic_duration\"},"
    "    \"compute_infer\": {\"$ref\": \"statistic_duration\"},"
    "    \"compute_output\": {\"$ref\": \"statistic_duration\"}},"
    "  \"required\": [\"success\", \"fail\", \"queue\", \"compute_input\", \"compute_infer\","
    "    \"compute_output\"]},"
    "\"batch_statistics\": {\"type\": \"object\","
    "  \"properties\": {\"batch_size\": {\"type\": \"integer\"},"
    "    \"compute_input\": {\"$ref\": \"statistic_duration\"},"
    "    \"compute_infer\": {\"$ref\": \"statistic_duration\"},"
    "    \"compute_output\": {\"$ref\": \"statistic_duration\"}},"
    "  \"required\": [\"batch_size\", \"compute_input\", \"compute_infer\", \"compute_output\"]},"
    "\"model_statistics\": {\"type\": \"object\","
    "  \"properties\": {\"name\": {\"type\": \"string\"}, \"version\": {\"type\": \"string\"},"
    "    \"last_inference\": {\"type\": \"integer\"}, \"inference_count\": {\"type\": \"integer\"},"
    "    \"execution_count\": {\"type\": \"integer\"},"
    "    \"inference_stats\": {\"$ref\": \"inference_statistics\"},"
    "    \"batch_stats\": {\"type\": \"array\", \"items\": {\"$ref\": \"batch_statistics\"}}},"
    "  \"required\": [\"name\", \"version\", \"last_inference\", \"inference_count\","
    "    \"execution_count\", \"inference_stats\", \"batch_stats\"]},"
    "\"statistics_response\": {\"type\": \"object\","
    "  \"properties\": {\"model_stats\": {\"type\": \"array\","
    "    \"items\": {\"$ref\": \"model_statistics\"}}},"
    "  \"required\": [\"model_stats\"]}"
    "}";

static json_t *schemas;

/* Whether v is of the schema type name. */
static int is_type(const json_t *v, const char *type)
{
    if (!strcmp(type, "object"))
        return json_is_object(v);
    if (!strcmp(type, "array"))
        return json_is_array(v);
    if (!strcmp(type, "string"))
        return json_is_string(v);
    if (!strcmp(type, "integer"))
        return json_is_integer(v);
    if (!strcmp(type, "number"))
        return json_is_number(v);
    if (!strcmp(type, "boolean"))
        return json_is_boolean(v);
    return 0;
}

/* Checks v against schema; on a mismatch writes where and why into err
 * (errlen bytes) and returns -1. path is v's place in the document. */
static int check(const json_t *schema, const json_t *v, const char *path, char *err,
                 size_t errlen)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    if (ref) {
        const json_t *target = json_object_get(schemas, ref);
        if (!target) {
            snprintf(err, errlen, "no schema %s", ref);
            return -1;
        }
        return check(target, v, path, err, errlen);
    }
    const json_t *any = json_object_get(schema, "anyOf");
    if (any) {
        size_t i;
        const json_t *alt;
        char why[256] = "";
        json_array_foreach(any, i, alt)
            if (check(alt, v, path, why, sizeof why) == 0)
                return 0;
        snprintf(err, errlen, "%s matches no alternative (last: %s)", path, why);
        return -1;
    }
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type && !is_type(v, type)) {
        snprintf(err, errlen, "%s is not of type %s", path, type);
        return -1;
    }
    const json_t *en = json_object_get(schema, "enum");
    if (en) {
        size_t i;
        const json_t *e;
        int found = 0;
        json_array_foreach(en, i, e)
            found |= json_equal(e, v);
        if (!found) {
            snprintf(err, errlen, "%s is not one of the enum", path);
            return -1;
        }
    }
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(schema, "required"), i, e)
        if (!json_object_get(v, json_string_value(e))) {
            snprintf(err, errlen, "%s lacks required %s", path, json_string_value(e));
            return -1;
        }
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)json_object_get(schema, "properties"), key, sub) {
        const json_t *field = json_object_get(v, key);
        char p[256];
        snprintf(p, sizeof p, "%s.%s", path, key);
        if (field && check(sub, field, p, err, errlen))
            return -1;
    }
    const json_t *items = json_object_get(schema, "items");
    if (items && json_is_array(v))
        json_array_foreach(v, i, e) {
            char p[256];
            snprintf(p, sizeof p, "%s[%zu]", path, i);
            if (check(items, e, p, err, errlen))
                return -1;
        }
    return 0;
}

/* Asserts that doc follows the named schema. */
static void assert_schema(const char *name, const json_t *doc)
{
    char err[512];
    const json_t *schema = json_object_get(schemas, name);
    assert_non_null(schema);
    assert_non_null(doc);
    if (check(schema, doc, "$", err, sizeof err)) {
        char *text = json_dumps(doc, JSON_COMPACT);
        fail_msg("%s: %s in %.400s", name, err, text ? text : "");
    }
}

/* ---- the daemon ------------------------------------------------------------- */

static daemon_proc d;
static int answers_checked; /* /v2 answers validated against a schema */

/* Whether path ends with suffix. */
static int ends_with(const char *path, const char *suffix)
{
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && !strcmp(path + n - k, suffix);
}

/* Validates any /v2 answer against the schema of its path and status:
 * errors against the error object (readiness' 400 against its own
 * answer), successes against the endpoint's document; a binary answer's
 * JSON head against the inference response. An accepted inference
 * request (200) must itself be an inference request of the protocol. */
static void conform(const char *path, const char *request_json, size_t request_len,
                    const reply *r)
{
    if (strncmp(path, "/v2", 3) != 0 || r->status == 0)
        return;
    const char *q = strchr(path, '?');
    char p[256];
    snprintf(p, sizeof p, "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
    int ready = ends_with(p, "/ready");
    const char *schema;
    json_t *doc = r->json;
    char buf[32];
    if (ready && (r->status == 200 || r->status == 400) && json_object_get(r->json, "ready"))
        schema = strstr(p, "/models/") ? "model_ready_response" : "ready_response";
    else if (r->status >= 400)
        schema = "error_response";
    else if (!strcmp(p, "/v2/health/live"))
        schema = "live_response";
    else if (!strcmp(p, "/v2") || !strcmp(p, "/v2/"))
        schema = "metadata_server_response";
    else if (ends_with(p, "/stats"))
        schema = "statistics_response";
    else if (ends_with(p, "/infer"))
        schema = "inference_response";
    else
        schema = "metadata_model_response";
    json_t *head = NULL;
    if (!strcmp(schema, "inference_response") &&
        header_of(r, "Inference-Header-Content-Length", buf, sizeof buf)) {
        head = json_loadb(r->body, strtoul(buf, NULL, 10), 0, NULL);
        doc = head;
    }
    assert_schema(schema, doc);
    json_decref(head);
    if (!strcmp(schema, "inference_response") && request_json) {
        json_t *req = json_loadb(request_json, request_len, 0, NULL);
        assert_schema("inference_request", req);
        json_decref(req);
    }
    answers_checked++;
}

static void get(const char *path, reply *r)
{
    request_on(d.port, path, NULL, r);
    conform(path, NULL, 0, r);
}

static void post(const char *path, const char *body, reply *r)
{
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(d.port, path, &o, r);
    conform(path, body, strlen(body), r);
}

/* Asserts an error answer on /v2: status, code, and the protocol's shape. */
static void assert_v2_error(const reply *r, long status, const char *code)
{
    assert_error(r, status, code);
    assert_schema("error_response", r->json);
}

/* A request body of one input named name, datatype dtype, shape [1,784] and
 * 784 numbers printed by value(i). malloc'd. */
static char *infer_body(const char *name, const char *dtype, const char *(*value)(int, char *))
{
    size_t cap = 784 * 32 + 256;
    char *b = malloc(cap);
    int n = snprintf(b, cap, "{\"inputs\":[{\"name\":\"%s\",\"shape\":[1,784],\"datatype\":\"%s\","
                     "\"data\":[", name, dtype);
    for (int i = 0; i < 784; i++) {
        char v[32];
        n += snprintf(b + n, cap - (size_t)n, "%s%s", i ? "," : "", value(i, v));
    }
    snprintf(b + n, cap - (size_t)n, "]}]}");
    return b;
}

/* body (from infer_body, freed) with "outputs": outputs added. malloc'd. */
static char *with_outputs(char *body, const char *outputs)
{
    size_t n = strlen(body);
    char *b = malloc(n + strlen(outputs) + 16);
    snprintf(b, n + strlen(outputs) + 16, "%.*s,\"outputs\":%s}", (int)n - 1, body, outputs);
    free(body);
    return b;
}

static const char *pixel_half(int i, char *buf)
{
    (void)i;
    return strcpy(buf, "0.5");
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    json_error_t e;
    schemas = json_loads(schemas_text, 0, &e);
    if (!schemas) {
        fprintf(stderr, "schemas: %s (line %d, column %d)\n", e.text, e.line, e.column);
        return -1;
    }
    if (daemon_start(&d, NULL)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", d.log);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fprintf(stderr, "%d /v2 answers checked against the protocol's schemas\n", answers_checked);
    int rc = daemon_stop(&d);
    daemon_cleanup(&d);
    json_decref(schemas);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- health, metadata, versions ------------------------------------------ */

static void test_health_and_server_metadata(void **state)
{
    (void)state;
    reply r;
    get("/v2/health/live", &r);
    assert_int_equal(r.status, 200);
    assert_schema("live_response", r.json);
    reply_free(&r);
    get("/v2/health/ready", &r);
    assert_int_equal(r.status, 200);
    assert_schema("ready_response", r.json);
    reply_free(&r);
    /* "/v2/" is the protocol's own spelling of the metadata path */
    reply slash;
    get("/v2", &r);
    get("/v2/", &slash);
    assert_int_equal(r.status, 200);
    assert_int_equal(slash.status, 200);
    assert_schema("metadata_server_response", r.json);
    assert_true(json_equal(r.json, slash.json));
    reply_free(&r);
    reply_free(&slash);
}

static void test_model_metadata_and_versions(void **state)
{
    (void)state;
    reply r, v;
    get("/v2/models/cnn", &r);
    assert_int_equal(r.status, 200);
    assert_schema("metadata_model_response", r.json);
    get("/v2/models/cnn/versions/1", &v);
    assert_int_equal(v.status, 200);
    assert_true(json_equal(r.json, v.json));
    reply_free(&r);
    reply_free(&v);

    get("/v2/models/cnn/versions/1/ready", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ready")));
    reply_free(&r);

    static const char *const missing[] = {"/v2/models/cnn/versions/2",
                                          "/v2/models/cnn/versions/2/ready",
                                          "/v2/models/cnn/versions/latest"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        get(missing[i], &r);
        assert_v2_error(&r, 404, "model_version_not_found");
        assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "\"1\""));
        reply_free(&r);
    }
    get("/v2/models/nope/versions/1", &r);
    assert_v2_error(&r, 404, "model_not_found");
    reply_free(&r);
    get("/v2/models/nope/ready", &r);
    assert_v2_error(&r, 404, "model_not_found");
    reply_free(&r);

    char *body = infer_body("input", "FP32", pixel_half);
    reply plain;
    post("/v2/models/fc10-1e-4/infer", body, &plain);
    post("/v2/models/fc10-1e-4/versions/1/infer", body, &r);
    assert_int_equal(r.status, 200);
    assert_schema("inference_response", r.json);
    assert_true(json_equal(r.json, plain.json));
    reply_free(&r);
    reply_free(&plain);
    post("/v2/models/fc10-1e-4/versions/7/infer", body, &r);
    assert_v2_error(&r, 404, "model_version_not_found");
    reply_free(&r);
    free(body);
}

/* While the models load, readiness is a 4xx with "ready": false (the
 * protocol: 200 is true, 4xx false), never a 200. The daemon is watched
 * from its first moment; every answer before the first 200 must be that. */
static void test_ready_while_loading(void **state)
{
    (void)state;
    daemon_proc late;
    memset(&late, 0, sizeof late);
    late.dir = tu_tmpdir();
    late.port = free_port();
    char listen[64], bin[512], log[600];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", late.port);
    snprintf(bin, sizeof bin, "%s", tu_bin("blindspotd"));
    snprintf(log, sizeof log, "%s/log", late.dir);
    late.pid = fork();
    if (late.pid == 0) {
        freopen(log, "w", stderr);
        execl(bin, bin, "--listen", listen, "--models", "models", "--data", "data",
              "--workers", "1", "--state", "none", (char *)NULL);
        _exit(127);
    }
    int not_ready = 0, ready = 0;
    double until = now_s() + 30;
    while (!ready && now_s() < until) {
        reply r, m;
        req_opts o = {.timeout_ms = 1000};
        request_on(late.port, "/v2/health/ready", &o, &r);
        request_on(late.port, "/v2/models/cnn/ready", &o, &m);
        conform("/v2/health/ready", NULL, 0, &r);
        conform("/v2/models/cnn/ready", NULL, 0, &m);
        if (r.status == 200) {
            ready = 1;
        } else if (r.status) {
            assert_int_equal(r.status, 400);
            assert_schema("ready_response", r.json);
            assert_true(json_is_false(json_object_get(r.json, "ready")));
            not_ready++;
        }
        if (m.status && m.status != 200) {
            assert_int_equal(m.status, 400);
            assert_true(json_is_false(json_object_get(m.json, "ready")));
        }
        reply_free(&r);
        reply_free(&m);
    }
    assert_true(ready);
    fprintf(stderr, "readiness: %d answers 'not ready' before the first 200\n", not_ready);
    assert_int_equal(daemon_stop(&late), 0);
    daemon_cleanup(&late);
}

/* ---- bad requests are 400 ------------------------------------------------- */

static void test_bad_requests_are_400(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *code;
    } cases[] = {
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,3,28,28],\"datatype\":\"FP32\",\"data\":[0]}]}", "invalid_input"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[2,784],\"datatype\":\"FP32\",\"data\":[0,1]}]}", "invalid_input"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[1e39]}]}", "invalid_input"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP8\",\"data\":[0]}]}", "unsupported_datatype"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[0]},"
         "{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[0]}]}", "too_many_inputs"},
        {"{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":[\"x\"]}]}", "invalid_request"},
        {"{\"inputs\":[]}", "invalid_request"},
        {"nope", "invalid_json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reply r;
        post("/v2/models/fc10-1e-4/infer", cases[i].body, &r);
        assert_v2_error(&r, 400, cases[i].code);
        reply_free(&r);
    }
    char *body = with_outputs(infer_body("input", "FP32", pixel_half), "[{\"name\":\"logits\"}]");
    reply r;
    post("/v2/models/fc10-1e-4/infer", body, &r);
    assert_v2_error(&r, 400, "unknown_output");
    reply_free(&r);
    free(body);
}

/* Errors the life-cycle answers before a handler (unknown path, method,
 * media type, size) have the protocol's shape on /v2 too. */
static void test_lifecycle_errors(void **state)
{
    (void)state;
    reply r;
    get("/v2/nope", &r);
    assert_v2_error(&r, 404, "not_found");
    reply_free(&r);
    req_opts put = {.method = "PUT", .headers = json_body_type, .body = "{}", .len = 2};
    request_on(d.port, "/v2/models/cnn/versions/1/infer", &put, &r);
    conform("/v2/models/cnn/versions/1/infer", NULL, 0, &r);
    assert_v2_error(&r, 405, "method_not_allowed");
    reply_free(&r);
    const char *text[] = {"Content-Type: text/plain", NULL};
    req_opts plain = {.headers = text, .body = "{}", .len = 2};
    request_on(d.port, "/v2/models/cnn/infer", &plain, &r);
    conform("/v2/models/cnn/infer", NULL, 0, &r);
    assert_v2_error(&r, 415, "unsupported_media_type");
    reply_free(&r);
    size_t big = 64u << 20; /* past the default --max-body */
    char *huge = malloc(big);
    memset(huge, ' ', big);
    req_opts o = {.headers = json_body_type, .body = huge, .len = big};
    request_on(d.port, "/v2/models/cnn/infer", &o, &r);
    conform("/v2/models/cnn/infer", NULL, 0, &r);
    assert_v2_error(&r, 413, "body_too_large");
    reply_free(&r);
    free(huge);
}

/* ---- datatypes ----------------------------------------------------------- */

static const char *pixel_small_int(int i, char *buf)
{
    snprintf(buf, 32, "%d", (i * 7) % 128);
    return buf;
}

/* Every numeric datatype carries the same values (whole numbers in
 * [0, 127], which each can hold exactly) to the same answer as FP32. */
static void test_every_datatype(void **state)
{
    (void)state;
    static const char *const types[] = {"FP64", "FP16", "UINT8", "UINT16", "UINT32", "UINT64",
                                        "INT8", "INT16", "INT32", "INT64"};
    char *body = infer_body("input", "FP32", pixel_small_int);
    reply want;
    post("/v2/models/fc100-100-10/infer", body, &want);
    free(body);
    assert_int_equal(want.status, 200);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        body = infer_body("input", types[i], pixel_small_int);
        reply r;
        post("/v2/models/fc100-100-10/infer", body, &r);
        if (r.status != 200)
            fail_msg("%s: %ld %s", types[i], r.status, r.body);
        assert_schema("inference_response", r.json);
        assert_true(json_equal(r.json, want.json));
        reply_free(&r);
        free(body);
    }
    reply_free(&want);
}

static const char *pixel_256(int i, char *buf)
{
    return strcpy(buf, i == 3 ? "256" : "0");
}

static const char *pixel_fraction(int i, char *buf)
{
    return strcpy(buf, i == 9 ? "1.5" : "1");
}

static const char *pixel_negative(int i, char *buf)
{
    return strcpy(buf, i == 0 ? "-1" : "1");
}

static void test_datatype_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        const char *(*value)(int, char *);
        const char *code, *says;
    } cases[] = {
        {"UINT8", pixel_256, "invalid_input", "data[3]"},
        {"INT8", pixel_256, "invalid_input", "INT8"},
        {"INT32", pixel_fraction, "invalid_input", "data[9]"},
        {"UINT64", pixel_negative, "invalid_input", "UINT64"},
        {"BOOL", pixel_half, "unsupported_datatype", "BOOL"},
        {"BYTES", pixel_half, "unsupported_datatype", "BYTES"},
        {"FP8", pixel_half, "unsupported_datatype", "FP8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = infer_body("input", cases[i].type, cases[i].value);
        reply r;
        post("/v2/models/fc100-100-10/infer", body, &r);
        assert_v2_error(&r, 400, cases[i].code);
        if (!strstr(json_string_value(json_object_get(r.json, "error")), cases[i].says))
            fail_msg("%s: '%s' does not say %s", cases[i].type,
                     json_string_value(json_object_get(r.json, "error")), cases[i].says);
        reply_free(&r);
        free(body);
    }
}

/* ---- binary tensor data ------------------------------------------------- */

/* Sends head (JSON) followed by len raw bytes as Triton's clients do. */
static void post_binary(const char *path, const char *head, const void *raw, size_t len,
                        const char *length_header, reply *r)
{
    size_t hl = strlen(head);
    char *body = malloc(hl + len + 1);
    memcpy(body, head, hl);
    if (len)
        memcpy(body + hl, raw, len);
    char h[96];
    if (length_header)
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %s", length_header);
    else
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", hl);
    const char *headers[] = {"Content-Type: application/octet-stream", h, NULL};
    req_opts o = {.headers = headers, .body = body, .len = hl + len};
    request_on(d.port, path, &o, r);
    conform(path, head, hl, r);
    free(body);
}

/* The JSON head of a binary body with one input of datatype dtype,
 * [1,784], size bytes; extra is spliced into the request object. */
static void binary_head(char *buf, size_t cap, const char *dtype, size_t size, const char *extra)
{
    snprintf(buf, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],\"datatype\":"
             "\"%s\",\"parameters\":{\"binary_data_size\":%zu}}]%s}", dtype, size, extra);
}

/* The same pixels as JSON FP32 (printed exactly) and as little-endian
 * binary FP32 give the same answer, number for number; so do the other
 * datatypes against their JSON spelling. */
static void test_binary_inputs_equal_json(void **state)
{
    (void)state;
    float x[784];
    for (int i = 0; i < 784; i++)
        x[i] = (float)((i * 37) % 255) / 255.0f;
    size_t cap = 784 * 32 + 256;
    char *json = malloc(cap), head[512];
    int n = snprintf(json, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                     "\"datatype\":\"FP32\",\"data\":[");
    for (int i = 0; i < 784; i++)
        n += snprintf(json + n, cap - (size_t)n, "%s%.9g", i ? "," : "", x[i]);
    snprintf(json + n, cap - (size_t)n, "]}]}");
    reply want, r;
    post("/v2/models/cnn/infer", json, &want);
    assert_int_equal(want.status, 200);
    binary_head(head, sizeof head, "FP32", sizeof x, "");
    post_binary("/v2/models/cnn/infer", head, x, sizeof x, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_schema("inference_response", r.json);
    assert_true(json_equal(r.json, want.json));
    reply_free(&r);
    reply_free(&want);
    free(json);

    /* whole numbers in [0, 127] in every numeric datatype's bytes */
    static const struct {
        const char *type;
        size_t size;
    } types[] = {{"FP16", 2}, {"FP64", 8}, {"UINT8", 1}, {"UINT16", 2}, {"UINT32", 4},
                 {"UINT64", 8}, {"INT8", 1}, {"INT16", 2}, {"INT32", 4}, {"INT64", 8}};
    char *small = infer_body("input", "FP32", pixel_small_int);
    post("/v2/models/cnn/infer", small, &want);
    free(small);
    assert_int_equal(want.status, 200);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint8_t raw[784 * 8];
        for (int i = 0; i < 784; i++) {
            int v = (i * 7) % 128;
            uint8_t *p = raw + (size_t)i * types[t].size;
            memset(p, 0, types[t].size);
            if (!strcmp(types[t].type, "FP16")) {
                _Float16 h = (_Float16)v;
                memcpy(p, &h, 2);
            } else if (!strcmp(types[t].type, "FP64")) {
                double dv = v;
                memcpy(p, &dv, 8);
            } else {
                p[0] = (uint8_t)v; /* little-endian, small and positive */
            }
        }
        binary_head(head, sizeof head, types[t].type, 784 * types[t].size, "");
        post_binary("/v2/models/cnn/infer", head, raw, 784 * types[t].size, NULL, &r);
        if (r.status != 200)
            fail_msg("%s: %ld %s", types[t].type, r.status, r.body);
        assert_true(json_equal(r.json, want.json));
        reply_free(&r);
    }
    reply_free(&want);
}

/* The JSON head of a binary answer, checked: octet-stream, the length
 * header within the body. Returns the parsed head; *json_len its length. */
static json_t *binary_answer(const reply *r, size_t *json_len)
{
    char buf[64];
    assert_int_equal(r->status, 200);
    assert_non_null(header_of(r, "Content-Type", buf, sizeof buf));
    assert_string_equal(buf, "application/octet-stream");
    assert_non_null(header_of(r, "Inference-Header-Content-Length", buf, sizeof buf));
    *json_len = strtoul(buf, NULL, 10);
    assert_true(*json_len > 0 && *json_len < r->len);
    json_t *head = json_loadb(r->body, *json_len, 0, NULL);
    assert_non_null(head);
    assert_schema("inference_response", head);
    return head;
}

/* Outputs asked for as binary data come back as the same bits the JSON
 * answer's numbers spell, after the JSON head, in output order. */
static void test_binary_outputs(void **state)
{
    (void)state;
    char *body = infer_body("input", "FP32", pixel_small_int);
    reply want, r;
    post("/v2/models/fc100-100-10/infer", body, &want);
    assert_int_equal(want.status, 200);
    json_t *probs = json_object_get(json_array_get(json_object_get(want.json, "outputs"), 0), "data");
    json_t *labels = json_object_get(json_array_get(json_object_get(want.json, "outputs"), 1), "data");

    /* every output binary: the request's binary_data_output */
    size_t n = strlen(body);
    char *all = malloc(n + 64);
    snprintf(all, n + 64, "%.*s,\"parameters\":{\"binary_data_output\":true}}", (int)n - 1, body);
    post("/v2/models/fc100-100-10/infer", all, &r);
    size_t json_len;
    json_t *head = binary_answer(&r, &json_len);
    json_t *outs = json_object_get(head, "outputs");
    assert_int_equal(json_array_size(outs), 2);
    for (size_t i = 0; i < 2; i++)
        assert_null(json_object_get(json_array_get(outs, i), "data"));
    json_t *p0 = json_object_get(json_array_get(outs, 0), "parameters");
    json_t *p1 = json_object_get(json_array_get(outs, 1), "parameters");
    assert_int_equal(json_integer_value(json_object_get(p0, "binary_data_size")), 40);
    assert_int_equal(json_integer_value(json_object_get(p1, "binary_data_size")), 8);
    assert_int_equal(r.len, json_len + 48);
    for (size_t c = 0; c < 10; c++) {
        float got, exp = (float)json_number_value(json_array_get(probs, c));
        memcpy(&got, r.body + json_len + 4 * c, 4);
        assert_memory_equal(&got, &exp, 4);
    }
    int64_t label;
    memcpy(&label, r.body + json_len + 40, 8);
    assert_int_equal(label, json_integer_value(json_array_get(labels, 0)));
    json_decref(head);
    reply_free(&r);
    free(all);

    /* binary_data on one output overrides binary_data_output */
    all = malloc(n + 256);
    snprintf(all, n + 256, "%.*s,\"parameters\":{\"binary_data_output\":true},\"outputs\":"
             "[{\"name\":\"label\",\"parameters\":{\"binary_data\":false}},"
             "{\"name\":\"probabilities\"}]}", (int)n - 1, body);
    post("/v2/models/fc100-100-10/infer", all, &r);
    head = binary_answer(&r, &json_len);
    outs = json_object_get(head, "outputs");
    assert_true(json_equal(json_object_get(json_array_get(outs, 1), "data"), labels));
    assert_int_equal(r.len, json_len + 40);
    json_decref(head);
    reply_free(&r);
    free(all);

    /* and no binary output: plain JSON */
    all = malloc(n + 256);
    snprintf(all, n + 256, "%.*s,\"outputs\":[{\"name\":\"label\",\"parameters\":"
             "{\"binary_data\":false}}]}", (int)n - 1, body);
    post("/v2/models/fc100-100-10/infer", all, &r);
    assert_int_equal(r.status, 200);
    assert_schema("inference_response", r.json);
    char buf[64];
    assert_null(header_of(&r, "Inference-Header-Content-Length", buf, sizeof buf));
    reply_free(&r);
    free(all);
    reply_free(&want);
    free(body);
}

/* Every way binary data can disagree with its body is a 400, never a
 * read past the body. */
static void test_binary_errors(void **state)
{
    (void)state;
    uint8_t raw[784 * 4 + 16] = {0};
    char head[512], extra_head[512];
    binary_head(head, sizeof head, "FP32", 784 * 4, "");
    size_t hl = strlen(head);
    char n_beyond[32], n_short[32];
    snprintf(n_beyond, sizeof n_beyond, "%zu", hl + 784 * 4 + 1);
    snprintf(n_short, sizeof n_short, "%zu", hl - 1);
    static const char *const bad_lengths[] = {"12a", "-1", "1 2", "+5", "0x10",
                                              "99999999999999999999999"};
    reply r;
    for (size_t i = 0; i < sizeof bad_lengths / sizeof bad_lengths[0]; i++) {
        post_binary("/v2/models/cnn/infer", head, raw, 784 * 4, bad_lengths[i], &r);
        assert_v2_error(&r, 400, "invalid_binary_data");
        reply_free(&r);
    }
    /* N beyond the body */
    post_binary("/v2/models/cnn/infer", head, raw, 784 * 4, n_beyond, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    /* N inside the JSON: the JSON is cut */
    post_binary("/v2/models/cnn/infer", head, raw, 784 * 4, n_short, &r);
    assert_v2_error(&r, 400, "invalid_json");
    reply_free(&r);
    /* truncated and too long */
    post_binary("/v2/models/cnn/infer", head, raw, 784 * 4 - 1, NULL, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    post_binary("/v2/models/cnn/infer", head, raw, 784 * 4 + 4, NULL, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    /* binary_data_size that is not the shape's */
    binary_head(extra_head, sizeof extra_head, "FP32", 784 * 4 - 4, "");
    post_binary("/v2/models/cnn/infer", extra_head, raw, 784 * 4 - 4, NULL, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    binary_head(extra_head, sizeof extra_head, "FP16", 784 * 4, "");
    post_binary("/v2/models/cnn/infer", extra_head, raw, 784 * 4, NULL, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    /* binary_data_size without the header */
    req_opts o = {.headers = json_body_type, .body = head, .len = hl};
    request_on(d.port, "/v2/models/cnn/infer", &o, &r);
    conform("/v2/models/cnn/infer", NULL, 0, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    /* bytes after JSON data that no input claims */
    char *json = infer_body("input", "FP32", pixel_half);
    post_binary("/v2/models/cnn/infer", json, raw, 8, NULL, &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    reply_free(&r);
    free(json);
    /* a float beyond the range as FP64 bytes */
    double dv[784] = {0};
    dv[17] = 1e300;
    binary_head(extra_head, sizeof extra_head, "FP64", sizeof dv, "");
    post_binary("/v2/models/cnn/infer", extra_head, dv, sizeof dv, NULL, &r);
    assert_v2_error(&r, 400, "invalid_input");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "17"));
    reply_free(&r);
    /* the daemon is still there */
    get("/v2/health/live", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

/* ---- input names, classification, platform ------------------------------- */

static void test_input_name_and_platform(void **state)
{
    (void)state;
    char *body = infer_body("pixels", "FP32", pixel_half);
    reply r;
    post("/v2/models/cnn/infer", body, &r);
    assert_v2_error(&r, 400, "invalid_input");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "\"input\""));
    reply_free(&r);
    free(body);
    get("/v2/models/cnn", &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "platform")),
                        "blindspot_safetensors");
    reply_free(&r);
    get("/v2", &r);
    json_t *ext = json_object_get(r.json, "extensions");
    int binary = 0, classification = 0;
    size_t i;
    json_t *e;
    json_array_foreach(ext, i, e) {
        binary |= !strcmp(json_string_value(e), "binary_tensor_data");
        classification |= !strcmp(json_string_value(e), "classification");
    }
    assert_true(binary && classification);
    reply_free(&r);
}

/* An error message quotes what the client sent cut to a length, which can
 * fall inside a UTF-8 character: the answer is still the 400 with its
 * message (the cut character replaced), not a 500 that lost it (found by
 * tests/fuzz/fuzz_v2_infer). */
static void test_error_quoting_a_cut_character(void **state)
{
    (void)state;
    char name[128] = "a";
    for (int i = 0; i < 40; i++)
        strcat(name, "\u00e9");
    char *body = infer_body(name, "FP32", pixel_half);
    reply r;
    post("/v2/models/cnn/infer", body, &r);
    assert_v2_error(&r, 400, "invalid_input");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "'a\u00e9\u00e9"));
    reply_free(&r);
    free(body);
    /* a header of bytes that are no UTF-8 at all, quoted with '?' */
    char head[256];
    binary_head(head, sizeof head, "FP32", 784 * 4, "");
    static float raw[784];
    post_binary("/v2/models/cnn/infer", head, raw, sizeof raw, "12\xff\xfe", &r);
    assert_v2_error(&r, 400, "invalid_binary_data");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "'12?\?'"));
    reply_free(&r);
}

/* classification: k on probabilities is its top k as "value:index"
 * strings (Triton's format, value printed %f), BYTES [B, k]. */
static void test_classification(void **state)
{
    (void)state;
    char *body = infer_body("input", "FP32", pixel_small_int);
    reply want, r;
    post("/v2/models/fc100-100-10/infer", body, &want);
    json_t *probs = json_object_get(json_array_get(json_object_get(want.json, "outputs"), 0), "data");
    int order[10];
    for (int c = 0; c < 10; c++)
        order[c] = c;
    for (int a = 0; a < 10; a++)
        for (int b = a + 1; b < 10; b++) {
            double pa = json_number_value(json_array_get(probs, (size_t)order[a]));
            double pb = json_number_value(json_array_get(probs, (size_t)order[b]));
            if (pb > pa || (pb == pa && order[b] < order[a])) {
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
        }
    char *cls = with_outputs(strdup(body), "[{\"name\":\"probabilities\",\"parameters\":"
                                           "{\"classification\":3}}]");
    post("/v2/models/fc100-100-10/infer", cls, &r);
    assert_int_equal(r.status, 200);
    assert_schema("inference_response", r.json);
    json_t *out = json_array_get(json_object_get(r.json, "outputs"), 0);
    assert_string_equal(json_string_value(json_object_get(out, "datatype")), "BYTES");
    json_t *shape = json_pack("[i,i]", 1, 3);
    assert_true(json_equal(json_object_get(out, "shape"), shape));
    json_decref(shape);
    json_t *data = json_object_get(out, "data");
    assert_int_equal(json_array_size(data), 3);
    for (int k = 0; k < 3; k++) {
        char s[64];
        snprintf(s, sizeof s, "%f:%d",
                 (float)json_number_value(json_array_get(probs, (size_t)order[k])), order[k]);
        assert_string_equal(json_string_value(json_array_get(data, (size_t)k)), s);
    }
    reply_free(&r);
    free(cls);

    /* and as binary: a 4-byte length before each string */
    cls = with_outputs(strdup(body), "[{\"name\":\"probabilities\",\"parameters\":"
                                     "{\"classification\":2,\"binary_data\":true}}]");
    post("/v2/models/fc100-100-10/infer", cls, &r);
    size_t json_len;
    json_t *head = binary_answer(&r, &json_len);
    const char *p = r.body + json_len;
    for (int k = 0; k < 2; k++) {
        uint32_t len;
        memcpy(&len, p, 4);
        char s[64];
        snprintf(s, sizeof s, "%f:%d",
                 (float)json_number_value(json_array_get(probs, (size_t)order[k])), order[k]);
        assert_int_equal(len, strlen(s));
        assert_memory_equal(p + 4, s, len);
        p += 4 + len;
    }
    assert_ptr_equal(p, r.body + r.len);
    json_decref(head);
    reply_free(&r);
    free(cls);

    static const char *const refused[] = {
        "[{\"name\":\"probabilities\",\"parameters\":{\"classification\":0}}]",
        "[{\"name\":\"probabilities\",\"parameters\":{\"classification\":11}}]",
        "[{\"name\":\"probabilities\",\"parameters\":{\"classification\":\"2\"}}]",
        "[{\"name\":\"probabilities\",\"parameters\":{\"binary_data\":1}}]",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cls = with_outputs(strdup(body), refused[i]);
        post("/v2/models/fc100-100-10/infer", cls, &r);
        assert_v2_error(&r, 400, "invalid_request");
        reply_free(&r);
        free(cls);
    }
    cls = with_outputs(strdup(body), "[{\"name\":\"label\",\"parameters\":{\"classification\":1}}]");
    post("/v2/models/fc100-100-10/infer", cls, &r);
    assert_v2_error(&r, 400, "unknown_output");
    reply_free(&r);
    free(cls);
    reply_free(&want);
    free(body);
}

/* ---- statistics ------------------------------------------------------------ */

static long long stat_of(const json_t *doc, const char *a, const char *b, const char *c)
{
    const json_t *v = json_array_get(json_object_get(doc, "model_stats"), 0);
    v = json_object_get(v, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_integer_value(v);
}

/* The batch_stats entry of batch size B in doc's first model, or NULL. */
static const json_t *batch_stat(const json_t *doc, int B)
{
    const json_t *list = json_object_get(json_array_get(json_object_get(doc, "model_stats"), 0),
                                         "batch_stats");
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
        if (json_integer_value(json_object_get(e, "batch_size")) == B)
            return e;
    return NULL;
}

/* Every inference is measured: three good requests (batches 1, 1 and 2)
 * and a refused one move the counters of their model by exactly that. */
static void test_statistics(void **state)
{
    (void)state;
    reply before, after, r;
    get("/v2/models/fc10-1/stats", &before);
    assert_int_equal(before.status, 200);
    assert_schema("statistics_response", before.json);
    struct timespec t0, t1;
    clock_gettime(CLOCK_REALTIME, &t0);
    char *one = infer_body("input", "FP32", pixel_half);
    post("/v2/models/fc10-1/infer", one, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    post("/v2/models/fc10-1/versions/1/infer", one, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    free(one);
    size_t cap = 2 * 784 * 4 + 256;
    char *two = malloc(cap);
    int n = snprintf(two, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,784],"
                     "\"datatype\":\"FP32\",\"data\":[");
    for (int i = 0; i < 2 * 784; i++)
        n += snprintf(two + n, cap - (size_t)n, "%s0.5", i ? "," : "");
    snprintf(two + n, cap - (size_t)n, "]}]}");
    post("/v2/models/fc10-1/infer", two, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    free(two);
    char *bad = infer_body("input", "BOOL", pixel_half);
    post("/v2/models/fc10-1/infer", bad, &r);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    free(bad);
    clock_gettime(CLOCK_REALTIME, &t1);

    get("/v2/models/fc10-1/stats", &after);
    assert_int_equal(after.status, 200);
    assert_schema("statistics_response", after.json);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(after.json, "model_stats"), 0), "name")),
                        "fc10-1");
    assert_int_equal(stat_of(after.json, "inference_count", NULL, NULL) -
                     stat_of(before.json, "inference_count", NULL, NULL), 4);
    assert_int_equal(stat_of(after.json, "execution_count", NULL, NULL) -
                     stat_of(before.json, "execution_count", NULL, NULL), 3);
    static const char *const phases[] = {"success", "queue", "compute_input", "compute_infer",
                                         "compute_output"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(stat_of(after.json, "inference_stats", phases[i], "count") -
                         stat_of(before.json, "inference_stats", phases[i], "count"), 3);
        assert_true(stat_of(after.json, "inference_stats", phases[i], "ns") >
                    stat_of(before.json, "inference_stats", phases[i], "ns") ||
                    !strcmp(phases[i], "queue")); /* an inline run waits for nothing */
    }
    assert_int_equal(stat_of(after.json, "inference_stats", "fail", "count") -
                     stat_of(before.json, "inference_stats", "fail", "count"), 1);
    assert_true(stat_of(after.json, "inference_stats", "success", "ns") >=
                stat_of(after.json, "inference_stats", "compute_infer", "ns"));
    long long last = stat_of(after.json, "last_inference", NULL, NULL);
    assert_true(last >= (long long)t0.tv_sec * 1000 + t0.tv_nsec / 1000000 - 1);
    assert_true(last <= (long long)t1.tv_sec * 1000 + t1.tv_nsec / 1000000 + 1);
    const json_t *b1 = batch_stat(after.json, 1), *b2 = batch_stat(after.json, 2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_true(json_integer_value(json_object_get(json_object_get(b1, "compute_infer"), "count")) >= 2);
    assert_true(json_integer_value(json_object_get(json_object_get(b2, "compute_infer"), "count")) >= 1);
    reply_free(&before);

    /* the same through the version path; every model in the list */
    get("/v2/models/fc10-1/versions/1/stats", &r);
    assert_int_equal(r.status, 200);
    assert_true(json_equal(r.json, after.json));
    reply_free(&r);
    reply_free(&after);
    get("/v2/models/stats", &r);
    assert_int_equal(r.status, 200);
    assert_schema("statistics_response", r.json);
    assert_int_equal(json_array_size(json_object_get(r.json, "model_stats")), 10);
    reply_free(&r);
    get("/v2/models/fc10-1/versions/3/stats", &r);
    assert_v2_error(&r, 404, "model_version_not_found");
    reply_free(&r);
    get("/v2/models/nope/stats", &r);
    assert_v2_error(&r, 404, "model_not_found");
    reply_free(&r);
    get("/v2", &r);
    assert_non_null(strstr(r.body, "\"statistics\""));
    reply_free(&r);
}

/* ---- /metrics ------------------------------------------------------------ */

/* The value of the sample line that starts with series, or NAN. */
/* Inferences (and a synchronous attack) appear in /metrics by model, their
 * queue and compute times as separate histograms; the process_* metrics hold believable values;
 * promtool (Debian's prometheus package) accepts it all. */
static void test_metrics_work_and_process(void **state)
{
    (void)state;
    reply r;
    request_on(d.port, "/metrics", NULL, &r);
    double before = metric_value(r.body, "blindspot_work_total{kind=\"inference\","
                                          "model=\"fc100-100-10-p2\",outcome=\"success\"}");
    reply_free(&r);
    if (isnan(before))
        before = 0;
    char *body = infer_body("input", "FP32", pixel_half);
    for (int i = 0; i < 3; i++) {
        post("/v2/models/fc100-100-10-p2/infer", body, &r);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    free(body);
    /* a synchronous attack is work of its own kind, on its model */
    req_opts attack = {.headers = json_body_type,
                       .body = "{\"model\":\"fc10-1\",\"target\":3,"
                               "\"image\":{\"dataset\":\"mnist\",\"index\":0}}"};
    attack.len = strlen(attack.body);
    request_on(d.port, "/v1/attacks", &attack, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    request_on(d.port, "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    const char *text = r.body;
    assert_true(metric_value(text, "blindspot_work_total{kind=\"attack\",model=\"fc10-1\","
                                   "outcome=\"success\"}") >= 1);
    assert_true(metric_value(text, "blindspot_work_queue_seconds_count{kind=\"attack\","
                                   "model=\"fc10-1\"}") >= 1);
    assert_true(metric_value(text, "blindspot_work_compute_seconds_count{kind=\"attack\","
                                   "model=\"fc10-1\"}") >= 1);
    assert_true(metric_value(text, "blindspot_work_total{kind=\"inference\","
                                   "model=\"fc100-100-10-p2\",outcome=\"success\"}") == before + 3);
    static const char *const families[] = {"blindspot_work_queue_seconds",
                                           "blindspot_work_compute_seconds"};
    for (int f = 0; f < 2; f++) {
        char series[160];
        snprintf(series, sizeof series, "%s_count{kind=\"inference\",model=\"fc100-100-10-p2\"}",
                 families[f]);
        assert_true(metric_value(text, series) == before + 3);
        snprintf(series, sizeof series, "%s_bucket{kind=\"inference\",model=\"fc100-100-10-p2\","
                 "le=\"+Inf\"}", families[f]);
        assert_true(metric_value(text, series) == before + 3);
        snprintf(series, sizeof series, "# TYPE %s histogram", families[f]);
        assert_non_null(strstr(text, series));
    }
    /* compute is real time spent: more than nothing, less than the test */
    double compute = metric_value(text, "blindspot_work_compute_seconds_sum{kind=\"inference\","
                                        "model=\"fc100-100-10-p2\"}");
    assert_true(compute > 0 && compute < 10);
    assert_true(metric_value(text, "process_resident_memory_bytes") > 1e6);
    assert_true(metric_value(text, "process_virtual_memory_bytes") >=
                metric_value(text, "process_resident_memory_bytes"));
    assert_true(metric_value(text, "process_cpu_seconds_total") > 0);
    assert_true(metric_value(text, "process_open_fds") >= 3);
    assert_true(metric_value(text, "process_max_fds") >= metric_value(text, "process_open_fds"));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double start = metric_value(text, "process_start_time_seconds");
    assert_true(start > (double)now.tv_sec - 600 && start <= (double)now.tv_sec + 1);
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter"));

    assert_promtool_accepts(r.body, r.len);
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_server_metadata),
        cmocka_unit_test(test_model_metadata_and_versions),
        cmocka_unit_test(test_bad_requests_are_400),
        cmocka_unit_test(test_lifecycle_errors),
        cmocka_unit_test(test_every_datatype),
        cmocka_unit_test(test_datatype_refusals),
        cmocka_unit_test(test_binary_inputs_equal_json),
        cmocka_unit_test(test_binary_outputs),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_input_name_and_platform),
        cmocka_unit_test(test_error_quoting_a_cut_character),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_statistics),
        cmocka_unit_test(test_metrics_work_and_process),
        cmocka_unit_test(test_ready_while_loading),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
