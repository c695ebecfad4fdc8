/* repository — the Open Inference Protocol's model-repository extension,
 * in Triton's shape: POST /v2/repository/index lists the models of --models
 * (ready, failing, unloaded), POST /v2/repository/models/{name}/load reads
 * a model's file now and serves it, POST .../unload takes a model out of
 * serving. They drive the same model sets as SIGHUP (registry.h): requests
 * already dispatched keep the set they started with.
 *
 * An unloaded model stays out across later SIGHUP rescans, even though its
 * file is still there, until a load names it: the operator's last word on a
 * model wins over the folder's contents. Removing the file and rescanning
 * forgets the unload.
 *
 * These are administrative operations; they answer on the HTTP thread (a
 * model file is read in milliseconds). */
#include "server/routes.h"

#include <stdlib.h>
#include <string.h>

#define REPOSITORY_VERSION "1" /* every model has this one version (/v2) */

/* The body of index, when there is one: {"ready": true} keeps the ready
 * models only. 0 with *ready_only set, or -1 after a 400 in resp. */
static int read_index_body(const http_request *req, int *ready_only, http_response *resp)
{
    *ready_only = 0;
    if (req->body_len == 0)
        return 0;
    json_t *root = req_json_object(req, resp);
    if (!root)
        return -1;
    const json_t *ready = json_object_get(root, "ready");
    int rc = 0;
    if (ready && !json_is_boolean(ready)) {
        resp_error(resp, BS_E_INVALID_REQUEST, "ready must be true or false.");
        rc = -1;
    }
    *ready_only = json_is_true(ready);
    json_decref(root);
    return rc;
}

handler_result repository_index(server *srv, const http_request *req, http_response *resp,
                                http_work *work)
{
    (void)work;
    int ready_only;
    if (read_index_body(req, &ready_only, resp))
        return HANDLER_ANSWERED;
    registry_state *st = NULL;
    int n = registry_states(&srv->reg, &st);
    json_t *list = json_array();
    if (n < 0 || !list) {
        free(st);
        json_decref(list);
        resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
        return HANDLER_ANSWERED;
    }
    for (int i = 0; i < n; i++) {
        if (ready_only && !st[i].ready)
            continue;
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "name", st[i].name,
                                              "version", REPOSITORY_VERSION, "state",
                                              st[i].ready ? "READY" : "UNAVAILABLE", "reason",
                                              st[i].reason));
    }
    free(st);
    resp_json(resp, 200, list);
    return HANDLER_ANSWERED;
}

handler_result repository_load(server *srv, const http_request *req, http_response *resp,
                               http_work *work)
{
    (void)work;
    const char *name = req->params[0];
    char err[REGISTRY_MSG_LEN];
    snprintf(resp->model, sizeof resp->model, "%s", name);
    int rc = registry_load_model(&srv->reg, name, err, sizeof err);
    if (rc != -1)
        metrics_reload(srv->metrics, rc == 0, rc == -2);
    if (rc == -1)
        resp_error(resp, BS_E_MODEL_NOT_FOUND, "%.900s; POST /v2/repository/index lists the "
                   "models.", err);
    else if (rc == -2)
        resp_error(resp, BS_E_MODEL_LOAD_FAILED, "%.900s; the previous version, if any, keeps "
                   "serving.", err);
    else
        resp_json(resp, 200, json_pack("{s:s, s:s, s:s}", "name", name, "version",
                                       REPOSITORY_VERSION, "state", "READY"));
    return HANDLER_ANSWERED;
}

handler_result repository_unload(server *srv, const http_request *req, http_response *resp,
                                 http_work *work)
{
    (void)work;
    const char *name = req->params[0];
    snprintf(resp->model, sizeof resp->model, "%s", name);
    if (registry_unload_model(&srv->reg, name))
        resp_error(resp, BS_E_MODEL_NOT_FOUND,
                   "No model named '%.64s' is loaded; POST /v2/repository/index lists them.",
                   name);
    else
        resp_json(resp, 200, json_pack("{s:s, s:s, s:s}", "name", name, "version",
                                       REPOSITORY_VERSION, "state", "UNAVAILABLE"));
    return HANDLER_ANSWERED;
}
