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
 * }
 * The document holds no timings: the same evaluation gives it byte for
 * byte, whether run whole, merged from shards or on the daemon.
 *
 * A shard document (`blindspot evaluate --shard I/N`) carries one shard's
 * per-image records (core/evaluate.h's bs_eval_images), everything the
 * merge needs to make the document above exactly:
 * {
 *   "format": "blindspot-evaluation-shard-1",
 *   "shard": {"index": 1, "count": 3, "first": 4, "n": 4},
 *              (images first..first+n-1 of the slice, counted from its start)
 *   "dataset", "split", "first", "n", "seed", "method", "params", "noise",
 *   "magnify", "models": as above (the whole evaluation's),
 *   "train_error": [0.004, null, ...], "test_error": [...], (per model)
 *   "status": "done",
 *   "images": [{"clean_wrong": "0100",          (a flag per model, in order)
 *               "attacks": [{"ok": 1, "distortion": 0.07, "ratio": 2.1,
 *                            "wrong": "1100", "magnified_wrong": "1110"},
 *                           ...],               (one per model)
 *               "noise": [{"distortion": 0.1, "wrong": "0000"}, ...]}, ...]
 * }
 * Reals are written with 17 significant digits, so they read back exact. */
#ifndef BS_EVALUATE_JSON_H
#define BS_EVALUATE_JSON_H

#include "core/dataset.h"
#include "core/evaluate.h"
#include "core/model.h"

#include <jansson.h>

/* What the documents say of the models and the slice besides the numbers. */
typedef struct bs_eval_labels {
    const char *dataset, *split;
    int n_models;
    const char *names[BS_EVAL_MAX_MODELS];
    double train_error[BS_EVAL_MAX_MODELS]; /* recorded in the model file; NaN: none */
    double test_error[BS_EVAL_MAX_MODELS];
} bs_eval_labels;

/* The labels of models[i] called names[i] on dataset d (pointers kept). */
void bs_eval_labels_of(bs_eval_labels *l, const char *const *names,
                       const bs_model *const *models, int n_models, const bs_dataset *d);

/* The document above for r, made by bs_evaluate_transfer over the slice of
 * d in cfg with models[i] called names[i]. NULL when out of memory. */
json_t *bs_eval_result_json(const bs_eval_result *r, const char *const *names,
                            const bs_model *const *models, const bs_dataset *d,
                            const bs_eval_config *cfg);
/* The same from labels. */
json_t *bs_eval_document(const bs_eval_result *r, const bs_eval_labels *l,
                         const bs_eval_config *cfg);

/* The JSON flags of a shard document (reals exact). */
#define BS_EVAL_SHARD_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* The shard document of shard index of count (core/evaluate.h's
 * bs_eval_shard_range) of the evaluation cfg, its images' records in im,
 * ended with status. NULL when out of memory. */
json_t *bs_eval_shard_json(const bs_eval_images *im, int index, int count,
                           bs_attack_status status, const bs_eval_labels *l,
                           const bs_eval_config *cfg);

/* Merges shard documents docs[0..n_docs-1] (files[i] names docs[i] in
 * messages) into the document of the whole evaluation. NULL with a message
 * in err when they do not make one evaluation: not a shard document, a
 * record out of shape, shards of different evaluations (counts, slice,
 * seed, method, params, noise, magnify, models), a shard twice or one
 * missing. */
json_t *bs_eval_merge(json_t *const *docs, const char *const *files, int n_docs, char *err);

#endif
