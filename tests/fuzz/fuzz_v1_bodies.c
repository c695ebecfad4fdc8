/* fuzz_v1_bodies — the JSON bodies of the daemon's /v1 POST endpoints as
 * their handlers see them (server/predict.c, attacks.c, evaluations.c,
 * analysis.c), without the HTTP layer: everything a handler reads and
 * checks before it hands work to the pool.
 *
 * The input's first byte picks the endpoint, the rest is the body. The
 * daemon holds one model, "tiny" (flatten, linear 4 -> 2 on (1,2,2)
 * inputs), and one dataset split, mnist's test of three 2x2 images, so
 * that slices, samples and unit analyses get past their lookups. Promises checked: a handler either answers at
 * once with an error in the /v1 shape ({"error": {"code", "message"}}, a
 * 4xx, or 503 when it cannot take work) or hands over work, which is then
 * released unrun (an attack's work may take minutes; running it is the
 * core's tests' business). */
#include "tests/fuzz/fuzz_server.h"

#include "server/handler.h"
#include "server/routes.h"

#include "core/control.h" /* bs_now */

#include <string.h>

static server srv;
/* With a proxy named, the outbound guard leaves names to the proxy: a
 * callback's host is checked without a DNS query, so the fuzzer makes no
 * traffic (literal addresses are still judged). */
static config cfg = {.max_pixels = 100 * 100, .timeout = 60,
                     .outbound = {.proxy = "http://proxy.invalid:3128"}};
static registry_set *models; /* tiny, the one model */
static int labels[3] = {0, 1, 0};
static float pixels[3 * 4] = {0, 0.5f, 1, 0.25f, 1, 1, 0, 0, 0.1f, 0.2f, 0.3f, 0.4f};

static const struct {
    const char *path;
    http_handler handler;
} endpoints[] = {
    {"/v1/models/tiny/predict", predict_create},
    {"/v1/attacks", attacks_create},
    {"/v1/evaluations", evaluations_create},
    {"/v1/models/tiny/units", analysis_units},
};
#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    models = fuzz_tiny_server(&srv);
    srv.cfg = &cfg;
    srv.reg.datasets[0] = (registry_dataset){
        .name = "mnist",
        .splits = {{.name = "mnist", .split = "test", .n = 3, .shape = {1, 2, 2},
                    .input_size = 4, .classes = 2, .labels = labels, .floats = pixels}},
        .n_splits = 1};
    srv.reg.n_datasets = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return 0;
    size_t e = buf[0] % N_ENDPOINTS;
    http_request req = {.method = "POST", .path = endpoints[e].path, .params = {"tiny"},
                        .n_params = e == 0 || e == 3, .content_type = "application/json",
                        .accept = "application/json", .body = buf + 1, .body_len = len - 1,
                        .arrival = bs_now(), .models = models};
    http_response resp = {0};
    http_work work = {.deadline = bs_now() + 60};
    handler_result hr = endpoints[e].handler(&srv, &req, &resp, &work);
    PROMISE(hr == HANDLER_ANSWERED || hr == HANDLER_DEFERRED || hr == HANDLER_ASYNC,
            "%s: handler result %d", endpoints[e].path, (int)hr);
    if (hr == HANDLER_ANSWERED) {
        PROMISE(!work.run, "%s: answered with work left", endpoints[e].path);
        PROMISE(resp.status >= 400 && resp.status < 600, "%s: status %d", endpoints[e].path,
                resp.status);
        json_t *body = json_loadb(resp.body, resp.body_len, 0, NULL);
        json_t *error = json_object_get(body, "error");
        PROMISE(json_is_string(json_object_get(error, "code")) &&
                    json_is_string(json_object_get(error, "message")),
                "%s: an error answer not in the /v1 shape: %.*s", endpoints[e].path,
                (int)resp.body_len, resp.body);
        json_decref(body);
    } else {
        PROMISE(work.run && work.free, "%s: work without run or free", endpoints[e].path);
        work.free(work.ctx);
    }
    resp_clear(&resp);
    return 0;
}
