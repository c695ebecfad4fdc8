/* evaluate_json — an evaluation's answer as JSON; see evaluate_json.h. */
#include "api/evaluate_json.h"

#include "api/attack_json.h"

#include <stdlib.h>

/* A metadata value that should be a number, as a JSON number or null. */
static json_t *meta_number(const bs_model *m, const char *key)
{
    const char *v = bs_model_get_meta(m, key);
    char *end;
    double d = v ? strtod(v, &end) : 0;
    return v && end != v && !*end ? json_real(d) : json_null();
}

/* {names[j]: row[j]} */
static json_t *by_model(const char *const *names, int n, const double *row)
{
    json_t *o = json_object();
    for (int j = 0; j < n; j++)
        json_object_set_new(o, names[j], json_real(row[j]));
    return o;
}

/* {names[i]: {names[j]: m[i][j]}} */
static json_t *matrix(const char *const *names, int n,
                      const double m[BS_EVAL_MAX_MODELS][BS_EVAL_MAX_MODELS])
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(o, names[i], by_model(names, n, m[i]));
    return o;
}

json_t *bs_eval_result_json(const bs_eval_result *r, const char *const *names,
                            const bs_model *const *models, const bs_dataset *d,
                            const bs_eval_config *cfg)
{
    int n = r->n_models;
    json_t *list = json_array(), *noise = json_array(), *table1 = json_object();
    for (int s = 0; s < cfg->n_noise; s++)
        json_array_append_new(noise, json_real(cfg->noise[s]));
    for (int i = 0; i < n; i++) {
        json_array_append_new(list, json_string(names[i]));
        json_object_set_new(table1, names[i], json_pack(
            "{s:o, s:o, s:f, s:i, s:f, s:f}",
            "train_error", meta_number(models[i], "blindspot.train_error"),
            "test_error", meta_number(models[i], "blindspot.test_error"),
            "slice_error", r->test_error[i], "successes", r->successes[i],
            "success_rate", (double)r->successes[i] / r->n,
            "mean_distortion", r->mean_distortion[i]));
    }
    json_t *noise_rows = json_array();
    for (int s = 0; s < cfg->n_noise; s++)
        json_array_append_new(noise_rows, json_pack(
            "{s:f, s:f, s:o}", "stddev", cfg->noise[s], "distortion", r->noise_distortion[s],
            "error", by_model(names, n, r->noise_error[s])));
    json_t *magnified = cfg->magnify > 0.0
                            ? json_pack("{s:f, s:o}", "distortion", cfg->magnify, "error",
                                        matrix(names, n, r->magnified))
                            : json_null();
    return json_pack(
        "{s:s, s:s, s:i, s:i, s:I, s:s, s:o, s:o, s:f, s:s, s:o, s:o,"
        " s:{s:o, s:o, s:o}, s:o, s:o}",
        "dataset", d->name, "split", d->split, "first", cfg->first, "n", r->n,
        "seed", (json_int_t)cfg->seed, "method", bs_attack_method_name(cfg->params.method),
        "params", bs_attack_params_to_json(&cfg->params), "noise", noise,
        "magnify", cfg->magnify, "status", bs_attack_status_name(r->status),
        "models", list, "table1", table1,
        "table2", "error", matrix(names, n, r->error),
        "distortion", by_model(names, n, r->mean_distortion), "noise", noise_rows,
        "magnified", magnified, "max_ratio", by_model(names, n, r->max_ratio));
}
