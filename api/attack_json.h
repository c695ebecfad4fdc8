/* attack_json — the attack's wire contract: attack parameters from JSON,
 * and the attack's answer as JSON. `blindspot attack --json` and the
 * daemon's POST /v1/attacks print the same document, with the input the
 * model saw added (api/attack_request.h's bs_attack_request_answer).
 *
 * The answer:
 * {
 *   "model": "fc100-100-10", "method": "lbfgs", "params": {...},
 *   "original": {"label": 7, "probabilities": [...]},
 *   "results": [ { "target": 3, "status": "done", "success": true,
 *       "success_float": true, "untargeted": true, "label": 3,
 *       "target_probability": 0.61, "c": 1.25, "iterations": 83,
 *       "evaluations": 97, "runs": 8, "seconds": 0.021,
 *       "norms": {"l0":..,"l1":..,"l2":..,"linf":..,"distortion":..},
 *       "norms_float": {...},
 *       "image": {"format": "png", "width": 28, "height": 28,
 *                 "channels": 1, "data": "<base64>"},   (or "floats": [...])
 *       "predictions": [ {"model": "cnn", "label": 3, "probability": 0.4,
 *                        "original_label": 7, "fooled": true}, ... ]
 *   } ]
 * }
 * status is done, timeout, cancelled, or already_target when the model
 * already gives the target for x: then nothing was searched, success is
 * false and the image is x. success and fooled mean that the model's
 * answer moved to the target on the perturbed image (original_label is the
 * reported model's answer on x). */
#ifndef BS_ATTACK_JSON_H
#define BS_ATTACK_JSON_H

#include "core/attack.h"
#include "core/model.h"

#include <jansson.h>

/* Fills p from a JSON object of parameter names (core/attack.h's
 * bs_attack_param_table: numbers, booleans, and choices by name such as
 * "norm": "l1"), starting from the defaults of method (a name of
 * bs_attack_methods). An unknown method or key, a parameter the method does
 * not take, and values of the wrong type or range are refused with a
 * message naming them. obj may be NULL (the defaults). Returns 0 or -1. */
int bs_attack_params_from_json(const json_t *obj, const char *method,
                               bs_attack_params *p, char *err);
/* Every parameter of the table with its value in p. */
json_t *bs_attack_params_to_json(const bs_attack_params *p);

/* Parses targets: an integer, an array of integers, or "all" (every class
 * but the original). Fills targets (room for BS_MAX_TARGETS), *k. */
#define BS_MAX_TARGETS 64
int bs_attack_targets_from_json(const json_t *v, int classes, int original,
                                int *targets, int *k, char *err);

/* A resident model to predict with on every adversarial image. */
typedef struct bs_report_model {
    const char *name;
    const bs_model *model;
} bs_report_model;

/* Output image encodings. */
typedef enum bs_image_out { BS_OUT_PNG, BS_OUT_JPEG, BS_OUT_FLOATS } bs_image_out;
int bs_image_out_parse(const char *s, bs_image_out *out);

/* The answer document above. report (n_report models that take the source
 * model's input shape) are run on each returned image. Returns NULL with a
 * message on failure (out of memory, encoder failure). */
json_t *bs_attack_answer_json(const char *model_name, const bs_model *m,
                              const float *x, const bs_attack_params *p,
                              const bs_attack_result *res, int k,
                              const bs_report_model *report, int n_report,
                              bs_image_out out, char *err);

#endif
