/* model_json — the document that describes a model, the one `blindspot
 * info --json` prints and GET /v1/models/{name} answers (GET /v1/models
 * lists the summary part of it):
 * {
 *   "name": "cnn",
 *   "arch": "cnn:small",          (the spec it was trained from; null when
 *                                  the file does not record one)
 *   "parameters": 80202, "input_shape": [1, 28, 28], "classes": 10,
 *   "dataset": "mnist", "train_error": 0.004, "test_error": 0.012,
 *                                 (from the metadata; null when absent)
 *   --- the summary ends here ---
 *   "file": "models/cnn.safetensors",   (the file it was loaded from)
 *   "layers": [{"index": 0, "type": "conv2d", "input_shape": [1,28,28],
 *               "output_shape": [16,24,24], "parameters": 416,
 *               "kernel": 5, "out_channels": 16, "padding": 0,
 *               "stride": 1}, ...],
 *              (shapes and parameter counts computed, then the layer's
 *               hyper-parameters as blindspot.arch stores them)
 *   "metadata": {"blindspot.dataset": "mnist", ...}   (every entry)
 * } */
#ifndef BS_MODEL_JSON_H
#define BS_MODEL_JSON_H

#include "core/model.h"

#include <jansson.h>

/* The summary of m, called name. NULL when out of memory. */
json_t *bs_model_summary_json(const char *name, const bs_model *m);

/* The whole document of m, called name, loaded from file. NULL when out
 * of memory. */
json_t *bs_model_json(const char *name, const char *file, const bs_model *m);

#endif
