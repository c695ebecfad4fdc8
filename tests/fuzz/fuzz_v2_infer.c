/* fuzz_v2_infer — POST /v2/models/{name}/infer as the daemon's handler
 * (server/v2.c) sees it, without the HTTP layer: the Open Inference
 * Protocol body, its Inference-Header-Content-Length framing of binary
 * tensors, datatype conversion, outputs and binary answers.
 *
 * The input's first line is the Inference-Header-Content-Length header
 * (an empty line: no header), the rest the body. The daemon holds one
 * model, "tiny" (flatten, linear 4 -> 2 on (1,2,2) inputs), and a pool of
 * one worker; a request the handler takes is run inline as the pool would
 * run it. Promises checked: every refusal is an OIP error answer (a 4xx
 * with {"error": message}); every accepted request answers 200 with the
 * batch's outputs, and, when it asked for binary outputs, an
 * Inference-Header-Content-Length within the body whose JSON parses. */
#include "tests/fuzz/fuzz_server.h"

#include "server/handler.h"
#include "server/routes.h"

#include "core/control.h" /* bs_now */

#include <string.h>
#include <strings.h>

static server srv;
static registry_set *models; /* tiny, the one model */

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    models = fuzz_tiny_server(&srv);
    srv.pool = pool_new(1, 1, 4, NULL);
    PROMISE(srv.pool != NULL, "pool");
    return 0;
}

/* The one request header a body can carry here. */
typedef struct fake_conn {
    const char *header_length;
} fake_conn;

static const char *fake_header(const void *conn, const char *name)
{
    const fake_conn *c = conn;
    return !strcasecmp(name, "Inference-Header-Content-Length") ? c->header_length : NULL;
}

/* A handler's deferred work, run inline as a worker would run it. */
typedef struct inline_job {
    pool_job job;
    http_work *work;
    http_response *resp;
} inline_job;

static void run_inline(pool_job *job, pool_worker *w)
{
    inline_job *j = (inline_job *)job;
    atomic_int cancel = 0;
    bs_control ctl = {.deadline = j->job.deadline, .cancel = &cancel};
    j->work->run(j->work->ctx, w, &ctl, j->resp);
}

static const char *resp_header_value(const http_response *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, name))
            return r->headers[i].value;
    return NULL;
}

static void check_error(const http_response *resp)
{
    PROMISE(resp->status >= 400 && resp->status < 600, "status %d", resp->status);
    json_t *body = json_loadb(resp->body, resp->body_len, 0, NULL);
    PROMISE(json_is_string(json_object_get(body, "error")), "an error answer not in OIP shape: %.*s",
            (int)resp->body_len, resp->body);
    json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    const uint8_t *nl = memchr(buf, '\n', len < 33 ? len : 33);
    if (!nl)
        return 0;
    char header[33];
    memcpy(header, buf, (size_t)(nl - buf));
    header[nl - buf] = '\0';
    fake_conn conn = {header[0] ? header : NULL};
    http_request req = {.method = "POST", .path = "/v2/models/tiny/infer",
                        .params = {"tiny"}, .n_params = 1, .content_type = "application/json",
                        .body = nl + 1, .body_len = len - (size_t)(nl + 1 - buf),
                        .arrival = bs_now(), .header = fake_header, .conn = &conn,
                        .models = models};
    http_response resp = {.oip_errors = 1};
    http_work work = {.deadline = bs_now() + 60};
    handler_result hr = v2_infer(&srv, &req, &resp, &work);
    PROMISE(hr == HANDLER_ANSWERED || hr == HANDLER_DEFERRED, "handler result %d", (int)hr);
    if (hr == HANDLER_ANSWERED) {
        PROMISE(!work.run, "answered with work left");
        check_error(&resp);
        resp_clear(&resp);
        return 0;
    }
    inline_job j = {.job = {.run = run_inline, .deadline = work.deadline, .fd = -1},
                    .work = &work, .resp = &resp};
    PROMISE(pool_run_inline(srv.pool, &j.job) == POOL_RAN, "the inline run declined");
    work.free(work.ctx);
    if (resp.status != 200) {
        check_error(&resp);
    } else {
        const char *hl = resp_header_value(&resp, "Inference-Header-Content-Length");
        size_t json_len = hl ? strtoul(hl, NULL, 10) : resp.body_len;
        PROMISE(json_len <= resp.body_len, "answer header length %zu of %zu", json_len,
                resp.body_len);
        json_t *body = json_loadb(resp.body, json_len, 0, NULL);
        PROMISE(json_is_array(json_object_get(body, "outputs")), "a 200 without outputs: %.*s",
                (int)json_len, resp.body);
        json_decref(body);
    }
    resp_clear(&resp);
    return 0;
}
