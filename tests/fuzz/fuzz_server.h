/* fuzz_server — the daemon the handler fuzzers (fuzz_v1_bodies,
 * fuzz_v2_infer) call into: one resident model, "tiny" (flatten, then
 * linear 4 -> 2 on (1,2,2) inputs, initialised from seed 1), metrics, and
 * the ready flag raised. Each target adds what its handlers need (a
 * configuration, datasets, a pool) before its first input. */
#ifndef BS_FUZZ_SERVER_H
#define BS_FUZZ_SERVER_H

#include "tests/fuzz/fuzz.h"

#include "server/handler.h"

#include <stdio.h>
#include <stdlib.h>

/* Builds tiny and makes it srv's one model; returns the model set a
 * request to srv carries (req.models). Both live as long as the fuzzer. */
static inline registry_set *fuzz_tiny_server(server *srv)
{
    char err[BS_ERR_LEN];
    bs_layer layers[2] = {{.kind = BS_FLATTEN}, {.kind = BS_LINEAR, .out_features = 2}};
    registry_set *set = calloc(1, sizeof *set + sizeof set->models[0]);
    registry_model *model = calloc(1, sizeof *model);
    PROMISE(set && model, "the model set");
    snprintf(model->name, sizeof model->name, "tiny");
    snprintf(model->path, sizeof model->path, "tiny.safetensors");
    model->n_places = pool_places(1);
    model->ws = calloc((size_t)model->n_places, sizeof *model->ws);
    model->model = bs_model_build(layers, 2, (const int[3]){1, 2, 2}, err);
    PROMISE(model->ws && model->model != NULL, "the tiny model: %s", err);
    bs_model_init(model->model, 1);
    atomic_init(&model->refs, 1);
    atomic_init(&set->refs, 1);
    set->models[0] = model;
    set->n_models = 1;
    srv->metrics = metrics_new();
    PROMISE(srv->metrics != NULL, "metrics");
    atomic_store(&srv->ready, 1);
    return set;
}

#endif
