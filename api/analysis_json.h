/* analysis_json — the documents of the measurements of core/analysis.h,
 * the ones `blindspot lipschitz --json` and `blindspot units --json` print
 * and GET /v1/models/{name}/lipschitz and POST /v1/models/{name}/units
 * answer.
 *
 * Lipschitz bounds (§4.3):
 * {
 *   "model": "cnn", "seed": 1,             (the power iterations' start)
 *   "layers": [{"index": 0, "type": "conv2d", "output_shape": [16,24,24],
 *               "bound": 4.2, "iterations": 31}, ...],
 *              (iterations 0 for a constant bound)
 *   "product": 123.4,                      (the network's bound)
 *   "empirical": {"method": "lbfgs", "dataset": "mnist", "split": "test",
 *                 "images": 3, "examples": 3, "max_ratio": 2.1,
 *                 "mean_ratio": 1.7}
 *              (only when attacks were asked for: the ratios
 *               ||f(x+r) - f(x)|| / ||r|| the examples of the L-BFGS
 *               attack reach on the first images of the split)
 * }
 *
 * Unit analysis (§3), one direction:
 * {
 *   "model": "cnn", "layer": 3, "layer_type": "relu", "dim": 2304,
 *              (the layer read, after its activation, and its size)
 *   "direction": {"type": "unit", "unit": 17} | {"type": "random", "seed": 1},
 *   "dataset": "mnist", "split": "test", "images": 2000,   (those ranked)
 *   "k": 8, "indices": [...], "labels": [...], "scores": [...],
 *              (the top k by <phi(x), v>, best first)
 *   "majority": 3, "purity": 0.75,         (the most frequent label, and
 *                                           the share of the k carrying it)
 *   "grid": {"format": "png", "width", "height", "channels", "data": base64}
 *              (the k images side by side)
 * }
 * and the summary over U units against U random directions:
 * {
 *   "model", "layer", "layer_type", "dim", "dataset", "split", "k",
 *   "units": U, "first_seed": S,           (random directions S .. S+U-1)
 *   "unit_purity": {"mean", "std"}, "random_purity": {"mean", "std"},
 *   "chance_purity": 0.2                   (k images drawn at random)
 * } */
#ifndef BS_ANALYSIS_JSON_H
#define BS_ANALYSIS_JSON_H

#include "core/analysis.h"
#include "core/dataset.h"
#include "core/model.h"

#include <jansson.h>
#include <stdint.h>

/* The bounds of m, called name, from seed; with emp (may be NULL) the
 * empirical ratios measured on dataset/split. NULL when out of memory. */
json_t *bs_lipschitz_json(const char *name, const bs_model *m, uint64_t seed,
                          const bs_lipschitz *lip, const bs_lipschitz_empirical *emp,
                          const char *dataset, const char *split);

/* The ranking t of the images of d along a direction of layer (resolved
 * by bs_units_layer): the unit vector e_unit, or when unit < 0 the random
 * direction of seed. NULL with a message in err when the grid cannot be
 * made or memory runs out. */
json_t *bs_units_json(const char *name, const bs_model *m, int layer, int unit,
                      uint64_t seed, const bs_dataset *d, const bs_units_top *t, char *err);

/* The summary s over dataset/split with random directions from seed. NULL
 * when out of memory. */
json_t *bs_units_summary_json(const char *name, const bs_model *m, const char *dataset,
                              const char *split, uint64_t seed, const bs_units_summary *s);

#endif
