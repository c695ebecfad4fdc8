/* fuzz_server — the daemon the handler fuzzers (fuzz_v1_bodies,
 * fuzz_v2_infer) call into: one resident model, "tiny" (flatten, then
 * linear 4 -> 2 on (1,2,2) inputs, initialised from seed 1), metrics, and
 * the ready flag raised. Each target adds what its handlers need (a
 * configuration, datasets, a pool) before its first input. */
#ifndef BS_FUZZ_SERVER_H
#define BS_FUZZ_SERVER_H

#include "tests/fuzz/fuzz.h"

#include "server/handler.h"

/* Builds tiny into *model and makes it srv's one model. */
static inline void fuzz_tiny_server(server *srv, registry_model *model)
{
    char err[BS_ERR_LEN];
    bs_layer layers[2] = {{.kind = BS_FLATTEN}, {.kind = BS_LINEAR, .out_features = 2}};
    *model = (registry_model){.name = "tiny", .path = "tiny.safetensors", .index = 0};
    model->model = bs_model_build(layers, 2, (const int[3]){1, 2, 2}, err);
    PROMISE(model->model != NULL, "the tiny model: %s", err);
    bs_model_init(model->model, 1);
    srv->reg.models = model;
    srv->reg.n_models = 1;
    srv->metrics = metrics_new();
    PROMISE(srv->metrics != NULL, "metrics");
    atomic_store(&srv->ready, 1);
}

#endif
