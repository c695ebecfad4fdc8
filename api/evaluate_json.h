/* evaluate_json — the answer of an evaluation (core/evaluate.h: the
 * paper's Tables 1-3 over a dataset slice) as JSON. `blindspot evaluate
 * --json` and the daemon's POST /v1/evaluations jobs give the same
 * document:
 * {
 *   "dataset": "mnist", "split": "test", "first": 0, "n": 100, "seed": 1,
 *   "method": "lbfgs", "params": {...}, "noise": [0.1, 0.3], "magnify": 0.1,
 *   "status": "done",                          (or timeout, cancelled)
 *   "models": ["cnn", "fc10-1e-4", ...],       (the order of every table)
 *   "table1": {"cnn": {"train_error": 0.004, "test_error": 0.012,
 *               (from the model file's metadata; null when absent)
 *              "slice_error": 0.01, "successes": 100, "success_rate": 1,
 *              "mean_distortion": 0.071}, ...},
 *   "table2": {"error": {"cnn": {"cnn": 1, "fc10-1e-4": 0.35, ...}, ...},
 *              (row: the examples made for a model; column: the model
 *               judged on them; the share it gets wrong)
 *              "distortion": {"cnn": 0.071, ...},
 *              "noise": [{"stddev": 0.1, "distortion": 0.1,
 *                         "error": {"cnn": 0.01, ...}}, ...]},
 *   "magnified": {"distortion": 0.1, "error": {"cnn": {...}, ...}},
 *              (null when magnify is 0)
 *   "max_ratio": {"cnn": 2.3, ...}   (largest ||f(x+r)-f(x)|| / ||r||)
 * } */
#ifndef BS_EVALUATE_JSON_H
#define BS_EVALUATE_JSON_H

#include "core/dataset.h"
#include "core/evaluate.h"
#include "core/model.h"

#include <jansson.h>

/* The document above for r, made by bs_evaluate_transfer over the slice of
 * d in cfg with models[i] called names[i]. NULL when out of memory. */
json_t *bs_eval_result_json(const bs_eval_result *r, const char *const *names,
                            const bs_model *const *models, const bs_dataset *d,
                            const bs_eval_config *cfg);

#endif
