/* test_reload — blindspotd with models only, one model file, and reloads
 * without a restart. Each test starts a daemon on a scratch models folder
 * holding copies of zoo files (and, but for the last, an empty data
 * folder): ready and serving without datasets, a dataset reference
 * answered 404 with where it was looked for, --models FILE and
 * --model-name, SIGHUP with files changed, added, removed and broken while
 * a thread keeps inferring, /metrics after a failed reload, the model
 * repository endpoints of /v2, an attack in flight across a reload
 * that replaces its model, and attacks after reloads that replace the
 * worker's last model by one of another shape. Needs `make data models`
 * (make test does it). */
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Two models of one shape (softmax regressions with different weight
 * decay) and a larger one. */
#define ZOO_A "models/fc10-1e-4.safetensors"
#define ZOO_B "models/fc10-1.safetensors"
#define ZOO_C "models/fc100-100-10.safetensors"

/* ---- helpers ------------------------------------------------------------ */

/* A scratch models folder and an empty data folder. */
typedef struct scratch {
    char *root;
    char models[600], data[600];
} scratch;

static void scratch_make(scratch *s)
{
    s->root = tu_tmpdir();
    snprintf(s->models, sizeof s->models, "%s/models", s->root);
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    assert_int_equal(mkdir(s->models, 0755), 0);
    assert_int_equal(mkdir(s->data, 0755), 0);
}

static void scratch_free(scratch *s)
{
    tu_rmtree(s->root);
    free(s->root);
}

/* Writes the bytes of zoo file from (or len bytes of text) to dir/name. */
static void put_file(const char *dir, const char *name, const char *from, const char *text)
{
    char path[800];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (text) {
        assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
        return;
    }
    size_t len;
    uint8_t *bytes = tu_read_file(from, &len);
    assert_non_null(bytes);
    assert_int_equal(tu_write_file(path, bytes, len), 0);
    free(bytes);
}

static void drop_file(const char *dir, const char *name)
{
    char path[800];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

/* Starts the daemon on s's folders (models may name a file instead). */
static void start_on(daemon_proc *d, const char *models, const char *data,
                     const char *model_name)
{
    const char *extra[] = {"--models", models, "--data", data,
                           model_name ? "--model-name" : NULL, model_name, NULL};
    if (daemon_start(d, extra) != 0) {
        size_t len;
        char *log = (char *)tu_read_file(d->log, &len);
        fail_msg("the daemon did not get ready: %s", log ? log : "");
    }
}

/* How many lines of the daemon's log hold needle. */
static int log_count(const daemon_proc *d, const char *needle)
{
    size_t len;
    char *log = (char *)tu_read_file(d->log, &len);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(log);
    return n;
}

/* SIGHUP, then waits for the reload's summary line; returns that line
 * (static). */
static const char *reload(daemon_proc *d)
{
    static char line[512];
    int before = log_count(d, "blindspotd: reload: ok") + log_count(d, "blindspotd: reload: failed,");
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    for (int i = 0; i < 200; i++) {
        if (log_count(d, "blindspotd: reload: ok") +
                log_count(d, "blindspotd: reload: failed,") > before)
            break;
        usleep(25000);
    }
    size_t len;
    char *log = (char *)tu_read_file(d->log, &len);
    assert_non_null(log);
    const char *last = NULL;
    for (const char *p = log; (p = strstr(p, " added, ")); p++)
        last = p;
    assert_non_null(last);
    while (last > log && last[-1] != '\n')
        last--;
    snprintf(line, sizeof line, "%.*s", (int)strcspn(last, "\n"), last);
    free(log);
    return line;
}

/* A v2 inference body: one 28x28 image, pixel i = (i % 17) / 16. */
static char *infer_body(void)
{
    size_t cap = 784 * 24 + 128;
    char *b = malloc(cap);
    int n = snprintf(b, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,784],"
                             "\"datatype\":\"FP32\",\"data\":[");
    for (int i = 0; i < 784; i++)
        n += snprintf(b + n, cap - (size_t)n, "%s%g", i ? "," : "", (i % 17) / 16.0);
    snprintf(b + n, cap - (size_t)n, "]}]}");
    return b;
}

static void post_on(int port, const char *path, const char *body, reply *r)
{
    req_opts o = {.method = "POST", .headers = body ? json_body_type : NULL, .body = body,
                  .len = body ? strlen(body) : 0};
    request_on(port, path, &o, r);
}

/* The status of an inference on model, and its probabilities (10) when
 * probs is not NULL and it answered 200. */
static long infer(int port, const char *model, double *probs)
{
    static char *body;
    if (!body)
        body = infer_body();
    char path[160];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    reply r;
    post_on(port, path, body, &r);
    long status = r.status;
    if (probs && status == 200) {
        json_t *outs = json_object_get(r.json, "outputs");
        size_t i;
        json_t *o;
        json_array_foreach(outs, i, o)
            if (!strcmp(json_string_value(json_object_get(o, "name")), "probabilities"))
                for (int k = 0; k < 10; k++)
                    probs[k] = json_real_value(json_array_get(json_object_get(o, "data"), k));
    }
    reply_free(&r);
    return status;
}

static int same_probs(const double *a, const double *b)
{
    for (int k = 0; k < 10; k++)
        if (a[k] != b[k])
            return 0;
    return 1;
}

/* The repository index entry of name (borrowed from r->json), or NULL. */
static json_t *index_entry(const reply *r, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(r->json, i, e)
        if (!strcmp(json_string_value(json_object_get(e, "name")), name))
            return e;
    return NULL;
}

/* ---- models only ---------------------------------------------------------- */

/* No dataset at all: ready, inference works, /v1/datasets is empty, and
 * every dataset reference is a 404 naming the dataset and the folder it
 * was looked for in; --check passes. */
static void test_models_only(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "fc10-1e-4.safetensors", ZOO_A, NULL);
    put_file(s.models, "fc100-100-10.safetensors", ZOO_C, NULL);
    daemon_proc d;
    start_on(&d, s.models, s.data, NULL);
    assert_int_equal(infer(d.port, "fc10-1e-4", NULL), 200);
    assert_int_equal(infer(d.port, "fc100-100-10", NULL), 200);

    reply r;
    request_on(d.port, "/v1/datasets", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "datasets")), 0);
    reply_free(&r);

    char where[700];
    snprintf(where, sizeof where, "no folder %s/mnist", s.data);
    const char *refs[][2] = {
        {"/v1/attacks", "{\"model\":\"fc10-1e-4\",\"target\":3,"
                        "\"image\":{\"dataset\":\"mnist\",\"split\":\"test\",\"index\":1}}"},
        {"/v1/models/fc10-1e-4/predict", "{\"dataset\":\"mnist\",\"first\":0,\"n\":2}"},
        {"/v1/evaluations", "{\"dataset\":\"mnist\",\"n\":2}"},
        {"/v1/models/fc10-1e-4/units", "{\"layer\":0,\"direction\":1,\"k\":2}"},
        {"/v1/datasets/mnist/test/0", NULL},
    };
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        if (refs[i][1])
            post_on(d.port, refs[i][0], refs[i][1], &r);
        else
            request_on(d.port, refs[i][0], NULL, &r);
        assert_error(&r, 404, "dataset_not_found");
        const char *msg = json_string_value(
            json_object_get(json_object_get(r.json, "error"), "message"));
        if (!strstr(msg, "mnist") || !strstr(msg, where))
            fail_msg("%s: %s does not say where mnist was looked for", refs[i][0], msg);
        reply_free(&r);
    }
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);

    char cmd[1600], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --check --models %s --data %s 2>&1", tu_bin("blindspotd"),
             s.models, s.data);
    int rc = tu_run(cmd, &out);
    if (rc != 0 || !strstr(out, "loaded 2 models") || !strstr(out, "0 datasets"))
        fail_msg("--check exited %d: %s", rc, out ? out : "");
    free(out);
    scratch_free(&s);
}

/* --models FILE serves that one file, named after it. */
static void test_models_file(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "fc10-1e-4.safetensors", ZOO_A, NULL);
    put_file(s.models, "fc10-1.safetensors", ZOO_B, NULL);
    char file[700];
    snprintf(file, sizeof file, "%s/fc10-1.safetensors", s.models);
    daemon_proc d;
    start_on(&d, file, s.data, NULL);
    reply r;
    request_on(d.port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *models = json_object_get(r.json, "models");
    assert_int_equal(json_array_size(models), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(models, 0), "name")),
                        "fc10-1");
    reply_free(&r);
    /* a reload of a file reads that file again when it changed */
    put_file(s.models, "fc10-1.safetensors", ZOO_A, NULL);
    double a[10], b[10];
    assert_int_equal(infer(d.port, "fc10-1", b), 200);
    assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 1 replaced, 0 kept"));
    assert_int_equal(infer(d.port, "fc10-1", a), 200);
    assert_false(same_probs(a, b));
    /* a file that cannot be read at all leaves the model as it was */
    drop_file(s.models, "fc10-1.safetensors");
    const char *line = reload(&d);
    if (!strstr(line, "reload: failed, 0 added, 0 removed, 0 replaced, 0 kept, 0 failed"))
        fail_msg("the reload's line: %s", line);
    assert_int_equal(log_count(&d, "the models are kept as they are"), 1);
    assert_int_equal(infer(d.port, "fc10-1", b), 200);
    assert_true(same_probs(a, b));
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

/* --model-name: the one file of a folder (any file name), or the file
 * given, under that name; a folder of two files is a start-up error. */
static void test_model_name(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "weights.bin", ZOO_A, NULL);
    daemon_proc d;
    start_on(&d, s.models, s.data, "digits");
    reply r;
    request_on(d.port, "/v2/models/digits/ready", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(infer(d.port, "digits", NULL), 200);
    assert_int_equal(infer(d.port, "weights", NULL), 404);
    request_on(d.port, "/v2/models/digits", NULL, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "platform")),
                        "blindspot_safetensors");
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);

    char file[700];
    snprintf(file, sizeof file, "%s/weights.bin", s.models);
    start_on(&d, file, s.data, "other");
    /* a second file in the folder is no concern of a daemon given the file */
    put_file(s.models, "more.safetensors", ZOO_B, NULL);
    assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 0 replaced, 1 kept"));
    assert_int_equal(infer(d.port, "other", NULL), 200);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);

    char cmd[1600], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --check --models %s --data %s --model-name digits 2>&1",
             tu_bin("blindspotd"), s.models, s.data);
    int rc = tu_run(cmd, &out);
    if (rc != 1 || !strstr(out, "--model-name digits wants exactly one model file"))
        fail_msg("--check with two files exited %d: %s", rc, out ? out : "");
    free(out);
    /* and the daemon itself refuses to start */
    snprintf(cmd, sizeof cmd, "BLINDSPOT_MODEL_NAME=digits %s --models %s --data %s "
             "--listen 127.0.0.1:0 2>&1", tu_bin("blindspotd"), s.models, s.data);
    rc = tu_run(cmd, &out);
    if (rc != 1 || !strstr(out, "it holds 2"))
        fail_msg("the daemon with two files exited %d: %s", rc, out ? out : "");
    free(out);

    /* "stats" would be shadowed by GET /v2/models/stats: refused */
    snprintf(cmd, sizeof cmd, "%s --check --models models/fc10-1e-2.safetensors --data %s "
             "--model-name stats 2>&1", tu_bin("blindspotd"), s.data);
    rc = tu_run(cmd, &out);
    if (rc != 1 || !strstr(out, "the model name 'stats' is taken"))
        fail_msg("--check with a model named stats exited %d: %s", rc, out ? out : "");
    free(out);

    /* a reload that finds two files keeps the one model serving */
    drop_file(s.models, "more.safetensors");
    start_on(&d, s.models, s.data, "digits");
    put_file(s.models, "more.safetensors", ZOO_B, NULL);
    const char *line = reload(&d);
    if (!strstr(line, "reload: failed, 0 added, 0 removed, 0 replaced, 0 kept, 0 failed"))
        fail_msg("the reload's line: %s", line);
    assert_int_equal(log_count(&d, "wants exactly one model file"), 1);
    assert_int_equal(infer(d.port, "digits", NULL), 200);
    reply r2;
    request_on(d.port, "/metrics", NULL, &r2);
    assert_true(metric_value(r2.body, "blindspot_model_reloads_total{result=\"failed\"}") == 1);
    reply_free(&r2);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

/* ---- SIGHUP under load ------------------------------------------------------ */

typedef struct hammer {
    int port;
    atomic_int stop;
    int answers, bad;
    char first_bad[200];
} hammer;

/* Infers on three models until told to stop: "stable" must always answer
 * 200, "swap" too (its file is replaced), "doomed" 200 until its file is
 * gone, then 404. */
static void *hammer_main(void *arg)
{
    hammer *h = arg;
    const char *names[] = {"stable", "swap", "doomed"};
    while (!atomic_load(&h->stop)) {
        for (int i = 0; i < 3; i++) {
            long st = infer(h->port, names[i], NULL);
            h->answers++;
            if (st != 200 && !(i == 2 && st == 404)) {
                if (!h->bad++)
                    snprintf(h->first_bad, sizeof h->first_bad, "%s answered %ld", names[i], st);
            }
        }
    }
    return NULL;
}

/* A changed file is read again (its predictions are the new bytes'), an
 * added one appears, a removed one answers 404, a broken one is left out
 * and reported in the log and /metrics; the unchanged one is kept; no
 * request of a thread inferring all along fails; a later reload in which a
 * changed file is broken keeps its previous version serving. */
static void test_sighup_under_load(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "stable.safetensors", ZOO_C, NULL);
    put_file(s.models, "swap.safetensors", ZOO_A, NULL);
    put_file(s.models, "doomed.safetensors", ZOO_B, NULL);
    daemon_proc d;
    start_on(&d, s.models, s.data, NULL);
    double swap_before[10], doomed_before[10], p[10];
    assert_int_equal(infer(d.port, "swap", swap_before), 200);
    assert_int_equal(infer(d.port, "doomed", doomed_before), 200);
    assert_false(same_probs(swap_before, doomed_before));

    hammer h = {.port = d.port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hammer_main, &h), 0);
    usleep(100000);
    put_file(s.models, "swap.safetensors", ZOO_B, NULL); /* the same shape, other weights */
    put_file(s.models, "added.safetensors", ZOO_A, NULL);
    put_file(s.models, "broken.safetensors", NULL, "not a safetensors file at all");
    drop_file(s.models, "doomed.safetensors");
    const char *line = reload(&d);
    if (!strstr(line, "reload: failed, 1 added, 1 removed, 1 replaced, 1 kept, 1 failed"))
        fail_msg("the reload's line: %s", line);
    assert_int_equal(log_count(&d, "reload: model broken:"), 1);
    usleep(200000);
    atomic_store(&h.stop, 1);
    pthread_join(t, NULL);
    if (h.bad)
        fail_msg("%d of %d answers were wrong; the first: %s", h.bad, h.answers, h.first_bad);
    assert_true(h.answers > 3);
    assert_int_equal(kill(d.pid, 0), 0);

    assert_int_equal(infer(d.port, "swap", p), 200);
    assert_true(same_probs(p, doomed_before)); /* the new bytes' answer */
    assert_int_equal(infer(d.port, "added", p), 200);
    assert_true(same_probs(p, swap_before));
    assert_int_equal(infer(d.port, "doomed", NULL), 404);
    assert_int_equal(infer(d.port, "broken", NULL), 404);
    assert_int_equal(infer(d.port, "stable", NULL), 200);

    reply r;
    request_on(d.port, "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(metric_value(r.body, "blindspot_model_reloads_total{result=\"failed\"}") == 1);
    assert_true(metric_value(r.body, "blindspot_model_reloads_total{result=\"ok\"}") == 0);
    assert_true(metric_value(r.body, "blindspot_model_load_failures_total") == 1);
    assert_true(metric_value(r.body, "blindspot_model_load_failing{model=\"broken\"}") == 1);
    assert_true(metric_value(r.body, "blindspot_models") == 3);
    assert_promtool_accepts(r.body, r.len);
    reply_free(&r);

    /* broken mended, added broken: added keeps its version */
    put_file(s.models, "broken.safetensors", ZOO_B, NULL);
    put_file(s.models, "added.safetensors", NULL, "garbage");
    line = reload(&d);
    if (!strstr(line, "reload: failed, 1 added, 0 removed, 0 replaced, 2 kept, 1 failed"))
        fail_msg("the second reload's line: %s", line);
    assert_int_equal(infer(d.port, "added", p), 200);
    assert_true(same_probs(p, swap_before));
    assert_int_equal(infer(d.port, "broken", NULL), 200);
    request_on(d.port, "/metrics", NULL, &r);
    assert_true(isnan(metric_value(r.body, "blindspot_model_load_failing{model=\"broken\"}")));
    assert_true(metric_value(r.body, "blindspot_model_load_failing{model=\"added\"}") == 1);
    assert_true(metric_value(r.body, "blindspot_model_load_failures_total") == 2);
    reply_free(&r);
    post_on(d.port, "/v2/repository/index", NULL, &r);
    json_t *e = index_entry(&r, "added");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "READY");
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")), "added"));
    reply_free(&r);

    /* all mended: an ok reload, nothing failing */
    put_file(s.models, "added.safetensors", ZOO_A, NULL);
    line = reload(&d);
    if (!strstr(line, "reload: ok, 0 added, 0 removed, 1 replaced, 3 kept, 0 failed"))
        fail_msg("the third reload's line: %s", line);
    request_on(d.port, "/metrics", NULL, &r);
    assert_true(metric_value(r.body, "blindspot_model_reloads_total{result=\"ok\"}") == 1);
    assert_null(strstr(r.body, "blindspot_model_load_failing{"));
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

/* ---- the model repository extension ------------------------------------------ */

static void assert_state(int port, const char *name, const char *state)
{
    reply r;
    post_on(port, "/v2/repository/index", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *e = index_entry(&r, name);
    if (!state) {
        assert_null(e);
    } else {
        assert_non_null(e);
        assert_string_equal(json_string_value(json_object_get(e, "state")), state);
    }
    reply_free(&r);
}

/* index (its shape, ready filter), load, unload and their errors, in the
 * Open Inference Protocol's error shape; an unload outlasts a SIGHUP. */
static void test_repository(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "a.safetensors", ZOO_A, NULL);
    put_file(s.models, "c.safetensors", ZOO_C, NULL);
    daemon_proc d;
    start_on(&d, s.models, s.data, NULL);
    reply r;
    request_on(d.port, "/v2", NULL, &r);
    json_t *ext = json_object_get(r.json, "extensions");
    int found = 0;
    for (size_t i = 0; i < json_array_size(ext); i++)
        found |= !strcmp(json_string_value(json_array_get(ext, i)), "model_repository");
    assert_true(found);
    reply_free(&r);

    post_on(d.port, "/v2/repository/index", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_array(r.json));
    assert_int_equal(json_array_size(r.json), 2);
    json_t *e = json_array_get(r.json, 0);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "a");
    assert_string_equal(json_string_value(json_object_get(e, "version")), "1");
    assert_string_equal(json_string_value(json_object_get(e, "state")), "READY");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "");
    reply_free(&r);

    post_on(d.port, "/v2/repository/models/a/unload", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(infer(d.port, "a", NULL), 404);
    assert_state(d.port, "a", "UNAVAILABLE");
    post_on(d.port, "/v2/repository/index", "{\"ready\":true}", &r);
    assert_int_equal(json_array_size(r.json), 1);
    assert_null(index_entry(&r, "a"));
    reply_free(&r);
    post_on(d.port, "/v2/repository/models/a/unload", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "model_not_found");
    assert_true(json_is_string(json_object_get(r.json, "error")));
    reply_free(&r);
    /* a rescan leaves an unloaded model out */
    assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 0 replaced, 1 kept"));
    assert_int_equal(infer(d.port, "a", NULL), 404);
    post_on(d.port, "/v2/repository/models/a/load", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(infer(d.port, "a", NULL), 200);
    assert_state(d.port, "a", "READY");

    post_on(d.port, "/v2/repository/models/nope/load", NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "model_not_found");
    reply_free(&r);
    /* a file that fails: 422 with the loader's word, nothing else changes */
    put_file(s.models, "bad.safetensors", NULL, "garbage");
    post_on(d.port, "/v2/repository/models/bad/load", NULL, &r);
    assert_int_equal(r.status, 422);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "model_load_failed");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "error")), "bad"));
    reply_free(&r);
    assert_state(d.port, "bad", "UNAVAILABLE");
    /* a failing file that is gone is forgotten by the next rescan */
    drop_file(s.models, "bad.safetensors");
    reload(&d);
    assert_state(d.port, "bad", NULL);
    /* and so is the unload of a model whose file is gone: back, it serves */
    post_on(d.port, "/v2/repository/models/a/unload", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    drop_file(s.models, "a.safetensors");
    reload(&d);
    assert_state(d.port, "a", NULL);
    put_file(s.models, "a.safetensors", ZOO_A, NULL);
    assert_non_null(strstr(reload(&d), "reload: ok, 1 added, 0 removed, 0 replaced, 1 kept"));
    assert_int_equal(infer(d.port, "a", NULL), 200);
    /* a load of a broken version of a served model keeps the old one */
    double before[10], after[10];
    assert_int_equal(infer(d.port, "c", before), 200);
    put_file(s.models, "c.safetensors", NULL, "garbage");
    post_on(d.port, "/v2/repository/models/c/load", NULL, &r);
    assert_int_equal(r.status, 422);
    reply_free(&r);
    assert_int_equal(infer(d.port, "c", after), 200);
    assert_true(same_probs(before, after));
    assert_state(d.port, "c", "READY");

    post_on(d.port, "/v2/repository/index", "{\"ready\":\"yes\"}", &r);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    post_on(d.port, "/v2/repository/index", "[1]", &r);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

/* ---- work in flight ------------------------------------------------------------- */

static const char attack_body[] =
    "{\"model\":\"victim\",\"target\":3,\"image\":{\"dataset\":\"mnist\",\"index\":18}}";

/* The parts of an attack's answer that depend on the model. */
static char *attack_digest(const json_t *doc)
{
    json_t *keep = json_pack("{s:O, s:O}", "original", json_object_get(doc, "original"),
                             "norms", json_object_get(json_array_get(
                                          json_object_get(doc, "results"), 0), "norms"));
    char *s = json_dumps(keep, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(keep);
    return s;
}

/* An attack queued before a reload that replaces its model finishes with
 * the old model's answer; one made after it gets the new model's. */
static void test_attack_across_reload(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "victim.safetensors", ZOO_A, NULL);
    put_file(s.models, "blocker.safetensors", "models/cnn.safetensors", NULL);
    daemon_proc d;
    const char *extra[] = {"--models", s.models, "--workers", "1", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    reply r;
    post_on(d.port, "/v1/attacks", attack_body, &r);
    assert_int_equal(r.status, 200);
    char *old_answer = attack_digest(r.json);
    reply_free(&r);

    /* the one worker is busy for seconds, so the victim's attack waits */
    post_on(d.port, "/v1/attacks?async=true",
            "{\"model\":\"blocker\",\"target\":\"all\",\"method\":\"adam-l1\","
            "\"image\":{\"dataset\":\"mnist\",\"index\":18},\"params\":{\"steps\":3000}}", &r);
    assert_int_equal(r.status, 202);
    char blocker[128];
    assert_non_null(header_of(&r, "Location", blocker, sizeof blocker));
    reply_free(&r);
    post_on(d.port, "/v1/attacks?async=true", attack_body, &r);
    assert_int_equal(r.status, 202);
    char loc[128], path[200];
    assert_non_null(header_of(&r, "Location", loc, sizeof loc));
    reply_free(&r);

    put_file(s.models, "victim.safetensors", ZOO_B, NULL);
    assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 1 replaced, 1 kept"));
    request_on(d.port, loc, NULL, &r);
    const char *st = json_string_value(json_object_get(r.json, "state"));
    if (!st || (strcmp(st, "queued") && strcmp(st, "running")))
        fail_msg("the attack was %s before the reload was over", st ? st : "?");
    reply_free(&r);

    /* the blocker has served its purpose */
    req_opts del = {.method = "DELETE"};
    request_on(d.port, blocker, &del, &r);
    reply_free(&r);
    snprintf(path, sizeof path, "%s?wait=60", loc);
    req_opts slow = {.timeout_ms = 90000};
    request_on(d.port, path, &slow, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "done");
    char *job_answer = attack_digest(json_object_get(r.json, "result"));
    assert_string_equal(job_answer, old_answer);
    reply_free(&r);

    post_on(d.port, "/v1/attacks", attack_body, &r);
    assert_int_equal(r.status, 200);
    char *new_answer = attack_digest(r.json);
    assert_string_not_equal(new_answer, old_answer);
    reply_free(&r);
    free(old_answer);
    free(job_answer);
    free(new_answer);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

/* The one worker's scratch keeps the workspace of the last model it
 * attacked. Reloads that free that model and then load one of another
 * shape, wherever the allocator puts it, do not leave the old workspace in
 * use: every attack on the victim answers as the same file loaded from the
 * start does. (test_scratch makes the new model come back at the freed
 * one's address.) */
static void test_attack_after_reloads_of_other_shapes(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    put_file(s.models, "victim.safetensors", ZOO_A, NULL);
    put_file(s.models, "ref-a.safetensors", ZOO_A, NULL);
    put_file(s.models, "ref-c.safetensors", ZOO_C, NULL);
    daemon_proc d;
    const char *extra[] = {"--models", s.models, "--workers", "1", NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    static const char ref_a[] =
        "{\"model\":\"ref-a\",\"target\":3,\"image\":{\"dataset\":\"mnist\",\"index\":18}}";
    static const char ref_c[] =
        "{\"model\":\"ref-c\",\"target\":3,\"image\":{\"dataset\":\"mnist\",\"index\":18}}";
    reply r;
    char *want[2];
    const char *bodies[2] = {ref_a, ref_c};
    for (int i = 0; i < 2; i++) {
        post_on(d.port, "/v1/attacks", bodies[i], &r);
        assert_int_equal(r.status, 200);
        want[i] = attack_digest(r.json);
        reply_free(&r);
    }
    assert_string_not_equal(want[0], want[1]);
    /* victim: A, then B (A's shape) and C in turn; the worker attacks the
     * victim only after the reload to C, so that the last model it served
     * was freed two reloads before */
    for (int round = 0; round < 3; round++) {
        post_on(d.port, "/v1/attacks", attack_body, &r);
        assert_int_equal(r.status, 200);
        char *got = attack_digest(r.json);
        assert_string_equal(got, want[round % 2 ? 1 : 0]);
        free(got);
        reply_free(&r);
        put_file(s.models, "victim.safetensors", ZOO_B, NULL);
        assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 1 replaced"));
        put_file(s.models, "victim.safetensors", round % 2 ? ZOO_A : ZOO_C, NULL);
        assert_non_null(strstr(reload(&d), "reload: ok, 0 added, 0 removed, 1 replaced"));
    }
    free(want[0]);
    free(want[1]);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    scratch_free(&s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_only),
        cmocka_unit_test(test_models_file),
        cmocka_unit_test(test_model_name),
        cmocka_unit_test(test_sighup_under_load),
        cmocka_unit_test(test_repository),
        cmocka_unit_test(test_attack_across_reload),
        cmocka_unit_test(test_attack_after_reloads_of_other_shapes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
