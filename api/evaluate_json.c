/* evaluate_json — an evaluation's answer as JSON, and its shards' documents
 * and their merge; see evaluate_json.h. */
#include "api/evaluate_json.h"

#include "api/attack_json.h"
#include "core/error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_FORMAT "blindspot-evaluation-shard-1"
#define MAX_SHARDS 1000000
#define MAX_IMAGES 10000000

/* A metadata value that should be a number, or NaN. */
static double meta_number(const bs_model *m, const char *key)
{
    const char *v = bs_model_get_meta(m, key);
    char *end;
    double d = v ? strtod(v, &end) : 0;
    return v && end != v && !*end && isfinite(d) ? d : NAN;
}

/* A number, or null for NaN. */
static json_t *number_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

void bs_eval_labels_of(bs_eval_labels *l, const char *const *names,
                       const bs_model *const *models, int n_models, const bs_dataset *d)
{
    memset(l, 0, sizeof *l);
    l->dataset = d->name;
    l->split = d->split;
    l->n_models = n_models;
    for (int i = 0; i < n_models; i++) {
        l->names[i] = names[i];
        l->train_error[i] = meta_number(models[i], "blindspot.train_error");
        l->test_error[i] = meta_number(models[i], "blindspot.test_error");
    }
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
    bs_eval_labels l;
    bs_eval_labels_of(&l, names, models, r->n_models, d);
    return bs_eval_document(r, &l, cfg);
}

json_t *bs_eval_document(const bs_eval_result *r, const bs_eval_labels *l,
                         const bs_eval_config *cfg)
{
    int n = r->n_models;
    const char *const *names = l->names;
    json_t *list = json_array(), *noise = json_array(), *table1 = json_object();
    for (int s = 0; s < cfg->n_noise; s++)
        json_array_append_new(noise, json_real(cfg->noise[s]));
    for (int i = 0; i < n; i++) {
        json_array_append_new(list, json_string(names[i]));
        json_object_set_new(table1, names[i], json_pack(
            "{s:o, s:o, s:f, s:i, s:f, s:f}",
            "train_error", number_or_null(l->train_error[i]),
            "test_error", number_or_null(l->test_error[i]),
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
        "dataset", l->dataset, "split", l->split, "first", cfg->first, "n", r->n,
        "seed", (json_int_t)cfg->seed, "method", bs_attack_method_name(cfg->params.method),
        "params", bs_attack_params_to_json(&cfg->params), "noise", noise,
        "magnify", cfg->magnify, "status", bs_attack_status_name(r->status),
        "models", list, "table1", table1,
        "table2", "error", matrix(names, n, r->error),
        "distortion", by_model(names, n, r->mean_distortion), "noise", noise_rows,
        "magnified", magnified, "max_ratio", by_model(names, n, r->max_ratio));
}

/* ---- shard documents -------------------------------------------------------- */

/* The fields every shard of one evaluation must agree on, with what a
 * message calls them. */
static const struct {
    const char *key, *what;
} header_fields[] = {
    {"dataset", "dataset"}, {"split", "split"}, {"first", "slice (first)"},
    {"n", "slice (n)"}, {"seed", "seed"}, {"method", "method"}, {"params", "params"},
    {"noise", "noise"}, {"magnify", "magnify"}, {"models", "models"},
    {"train_error", "models (their recorded train error)"},
    {"test_error", "models (their recorded test error)"},
};
#define N_HEADER_FIELDS (sizeof header_fields / sizeof header_fields[0])

/* n flags as a string of '0' and '1'. */
static json_t *flags(const unsigned char *f, int n)
{
    char s[BS_EVAL_MAX_MODELS + 1];
    for (int j = 0; j < n; j++)
        s[j] = f[j] ? '1' : '0';
    s[n] = '\0';
    return json_string(s);
}

json_t *bs_eval_shard_json(const bs_eval_images *im, int index, int count,
                           bs_attack_status status, const bs_eval_labels *l,
                           const bs_eval_config *cfg)
{
    bs_eval_result empty = {.n_models = im->n_models, .n = im->n, .status = status};
    json_t *whole = bs_eval_document(&empty, l, cfg);
    json_t *train = json_array(), *test = json_array(), *images = json_array();
    if (!whole || !train || !test || !images) {
        json_decref(whole);
        json_decref(train);
        json_decref(test);
        json_decref(images);
        return NULL;
    }
    int M = im->n_models, S = im->n_noise, lo, hi;
    bs_eval_shard_range(im->n, index, count, &lo, &hi);
    for (int i = 0; i < M; i++) {
        json_array_append_new(train, number_or_null(l->train_error[i]));
        json_array_append_new(test, number_or_null(l->test_error[i]));
    }
    for (int k = lo; k < hi; k++) {
        json_t *attacks = json_array(), *noise = json_array();
        for (int i = 0; i < M; i++) {
            size_t rec = (size_t)k * M + i;
            json_t *a = json_pack("{s:i, s:f, s:f, s:o}", "ok", im->ok[rec], "distortion",
                                  im->distortion[rec], "ratio", im->ratio[rec], "wrong",
                                  flags(im->adv_wrong + rec * M, M));
            if (a && cfg->magnify > 0.0)
                json_object_set_new(a, "magnified_wrong", flags(im->magnified_wrong + rec * M, M));
            json_array_append_new(attacks, a);
        }
        for (int s = 0; s < S; s++) {
            size_t rec = (size_t)k * S + s;
            json_array_append_new(noise, json_pack("{s:f, s:o}", "distortion",
                                                   im->noise_distortion[rec], "wrong",
                                                   flags(im->noise_wrong + rec * M, M)));
        }
        json_array_append_new(images, json_pack("{s:o, s:o, s:o}", "clean_wrong",
                                                flags(im->clean_wrong + (size_t)k * M, M),
                                                "attacks", attacks, "noise", noise));
    }
    json_t *doc = json_pack("{s:s, s:{s:i, s:i, s:i, s:i}}", "format", SHARD_FORMAT, "shard",
                            "index", index, "count", count, "first", lo, "n", hi - lo);
    if (doc) {
        for (size_t f = 0; f < N_HEADER_FIELDS; f++) {
            const char *key = header_fields[f].key;
            if (!strcmp(key, "train_error"))
                json_object_set(doc, key, train);
            else if (!strcmp(key, "test_error"))
                json_object_set(doc, key, test);
            else
                json_object_set(doc, key, json_object_get(whole, key));
        }
        json_object_set_new(doc, "status", json_string(bs_attack_status_name(status)));
        json_object_set(doc, "images", images);
    }
    json_decref(whole);
    json_decref(train);
    json_decref(test);
    json_decref(images);
    return doc;
}

/* ---- the merge -------------------------------------------------------------- */

/* An integer member in [lo, hi] into *out; -1 when it is not one. */
static int get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* A number in [0, max] into *out; -1 when it is not one. */
static int get_measure(const json_t *o, const char *key, double max, double *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !(json_number_value(v) >= 0 && json_number_value(v) <= max))
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* A string of n '0'/'1' flags into f; -1 when it is not one. */
static int get_flags(const json_t *o, const char *key, int n, unsigned char *f)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) != (size_t)n)
        return -1;
    const char *s = json_string_value(v);
    for (int j = 0; j < n; j++) {
        if (s[j] != '0' && s[j] != '1')
            return -1;
        f[j] = s[j] == '1';
    }
    return 0;
}

/* Reads the evaluation of shard document doc (its header) into cfg and l
 * (pointers into doc). 0, or -1 with a message. */
static int read_header(const json_t *doc, const char *file, bs_eval_config *cfg,
                       bs_eval_labels *l, char *err)
{
    *cfg = bs_eval_defaults();
    memset(l, 0, sizeof *l);
    long long first, n, seed;
    const json_t *method = json_object_get(doc, "method"), *params = json_object_get(doc, "params");
    const json_t *models = json_object_get(doc, "models"), *noise = json_object_get(doc, "noise");
    const json_t *train = json_object_get(doc, "train_error");
    const json_t *test = json_object_get(doc, "test_error");
    const json_t *magnify = json_object_get(doc, "magnify");
    l->dataset = json_string_value(json_object_get(doc, "dataset"));
    l->split = json_string_value(json_object_get(doc, "split"));
    if (!l->dataset || !l->split || get_int(doc, "first", 0, MAX_IMAGES, &first) ||
        get_int(doc, "n", 1, MAX_IMAGES, &n) || get_int(doc, "seed", 0, 1LL << 53, &seed) ||
        !json_is_string(method) || !json_is_object(params) || !json_is_array(models) ||
        !json_is_array(noise) || !json_is_array(train) || !json_is_array(test) ||
        !json_is_number(magnify))
        return bs_fail(err, "%s: the evaluation's fields are missing or of the wrong type",
                       file);
    cfg->first = (int)first;
    cfg->n = (int)n;
    cfg->seed = (uint64_t)seed;
    cfg->magnify = json_number_value(magnify);
    if (!(cfg->magnify >= 0.0 && cfg->magnify <= 1.0))
        return bs_fail(err, "%s: magnify is not in [0, 1]", file);
    /* the parameters of the method (the document lists every one) */
    int mi = bs_attack_method_parse(json_string_value(method));
    json_t *applied = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v)
        if (mi >= 0 && bs_attack_param_applies((bs_attack_method)mi, key))
            json_object_set(applied, key, v);
    char perr[BS_ERR_LEN];
    int bad = bs_attack_params_from_json(applied, json_string_value(method), &cfg->params, perr);
    json_decref(applied);
    if (bad)
        return bs_fail(err, "%s: %s", file, perr);
    /* every parameter listed, as the document to make will list them */
    json_t *listed = bs_attack_params_to_json(&cfg->params);
    bad = !json_equal(listed, params);
    json_decref(listed);
    if (bad)
        return bs_fail(err, "%s: params must list every parameter of the method's run", file);
    if (json_array_size(noise) > BS_EVAL_MAX_NOISE)
        return bs_fail(err, "%s: more than %d noise rows", file, BS_EVAL_MAX_NOISE);
    cfg->n_noise = (int)json_array_size(noise);
    for (int s = 0; s < cfg->n_noise; s++) {
        const json_t *e = json_array_get(noise, (size_t)s);
        cfg->noise[s] = json_number_value(e);
        if (!json_is_number(e) || !(cfg->noise[s] > 0.0 && cfg->noise[s] <= 10.0))
            return bs_fail(err, "%s: noise[%d] is not a standard deviation in (0, 10]", file, s);
    }
    size_t M = json_array_size(models);
    if (M < 1 || M > BS_EVAL_MAX_MODELS || json_array_size(train) != M ||
        json_array_size(test) != M)
        return bs_fail(err, "%s: models must list 1 to %d names, with a train and test error "
                       "each", file, BS_EVAL_MAX_MODELS);
    l->n_models = (int)M;
    for (size_t i = 0; i < M; i++) {
        l->names[i] = json_string_value(json_array_get(models, i));
        if (!l->names[i] || !*l->names[i])
            return bs_fail(err, "%s: models[%zu] is not a name", file, i);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(l->names[k], l->names[i]))
                return bs_fail(err, "%s: models lists %s twice", file, l->names[i]);
        const json_t *tr = json_array_get(train, i), *te = json_array_get(test, i);
        if (!(json_is_null(tr) || json_is_number(tr)) || !(json_is_null(te) || json_is_number(te)))
            return bs_fail(err, "%s: a recorded error of model %s is not a number or null",
                           file, l->names[i]);
        l->train_error[i] = json_is_null(tr) ? NAN : json_number_value(tr);
        l->test_error[i] = json_is_null(te) ? NAN : json_number_value(te);
    }
    return 0;
}

/* The shard's index and count, checked to be a shard document. */
static int read_shard(const json_t *doc, const char *file, long long *index, long long *count,
                      char *err)
{
    const json_t *shard = json_object_get(doc, "shard");
    if (!json_is_object(doc) ||
        !json_is_string(json_object_get(doc, "format")) ||
        strcmp(json_string_value(json_object_get(doc, "format")), SHARD_FORMAT))
        return bs_fail(err, "%s is not a shard document of blindspot evaluate --shard", file);
    if (get_int(shard, "count", 1, MAX_SHARDS, count) ||
        get_int(shard, "index", 0, *count - 1, index))
        return bs_fail(err, "%s: its shard index and count are missing or out of range", file);
    return 0;
}

/* The records of one image, the k-th of the slice, into im. */
static int read_image(const json_t *rec, int k, const bs_eval_config *cfg, bs_eval_images *im)
{
    int M = im->n_models, S = im->n_noise;
    const json_t *attacks = json_object_get(rec, "attacks"), *noise = json_object_get(rec, "noise");
    if (get_flags(rec, "clean_wrong", M, im->clean_wrong + (size_t)k * M) ||
        json_array_size(attacks) != (size_t)M || json_array_size(noise) != (size_t)S)
        return -1;
    for (int i = 0; i < M; i++) {
        const json_t *a = json_array_get(attacks, (size_t)i);
        size_t r = (size_t)k * M + i;
        long long ok;
        if (get_int(a, "ok", 0, 1, &ok) || get_measure(a, "distortion", 1.0, &im->distortion[r]) ||
            get_measure(a, "ratio", DBL_MAX, &im->ratio[r]) ||
            get_flags(a, "wrong", M, im->adv_wrong + r * M) ||
            (cfg->magnify > 0.0 && get_flags(a, "magnified_wrong", M, im->magnified_wrong + r * M)))
            return -1;
        im->ok[r] = (unsigned char)ok;
    }
    for (int s = 0; s < S; s++) {
        const json_t *e = json_array_get(noise, (size_t)s);
        size_t r = (size_t)k * S + s;
        if (get_measure(e, "distortion", 1.0, &im->noise_distortion[r]) ||
            get_flags(e, "wrong", M, im->noise_wrong + r * M))
            return -1;
    }
    return 0;
}

/* The status a shard document says it ended with. */
static int read_status(const json_t *doc, bs_attack_status *status)
{
    const char *s = json_string_value(json_object_get(doc, "status"));
    const bs_attack_status all[] = {BS_ATTACK_DONE, BS_ATTACK_TIMEOUT, BS_ATTACK_CANCELLED};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, bs_attack_status_name(all[i]))) {
            *status = all[i];
            return 0;
        }
    return -1;
}

json_t *bs_eval_merge(json_t *const *docs, const char *const *files, int n_docs, char *err)
{
    bs_eval_config cfg;
    bs_eval_labels l;
    long long count = 0, index;
    if (n_docs < 1) {
        bs_fail(err, "no shard documents to merge");
        return NULL;
    }
    if (read_shard(docs[0], files[0], &index, &count, err) ||
        read_header(docs[0], files[0], &cfg, &l, err))
        return NULL;
    /* every document a shard of the same evaluation, each shard once */
    int *owner = malloc((size_t)count * sizeof(int));
    if (!owner) {
        bs_fail(err, "out of memory");
        return NULL;
    }
    for (long long s = 0; s < count; s++)
        owner[s] = -1;
    int rc = 0;
    for (int f = 0; f < n_docs && !rc; f++) {
        long long c;
        if (read_shard(docs[f], files[f], &index, &c, err)) {
            rc = -1;
            break;
        }
        if (c != count) {
            rc = bs_fail(err, "%s is shard %lld/%lld, %s a shard of %lld: not the same split",
                         files[f], index, c, files[0], count);
            break;
        }
        for (size_t h = 0; h < N_HEADER_FIELDS; h++) {
            const char *key = header_fields[h].key;
            if (!json_equal(json_object_get(docs[f], key), json_object_get(docs[0], key))) {
                rc = bs_fail(err, "%s and %s are shards of different evaluations: their %s "
                             "differ", files[f], files[0], header_fields[h].what);
                break;
            }
        }
        if (!rc && owner[index] >= 0)
            rc = bs_fail(err, "%s and %s are both shard %lld/%lld", files[owner[index]],
                         files[f], index, count);
        if (!rc)
            owner[index] = f;
    }
    for (long long s = 0; s < count && !rc; s++)
        if (owner[s] < 0)
            rc = bs_fail(err, "shard %lld/%lld is missing (%lld of %lld given)", s, count,
                         (long long)n_docs, count);
    /* every shard holds the images its index gives it */
    for (long long s = 0; s < count && !rc; s++) {
        int lo, hi;
        long long first, n;
        const json_t *doc = docs[owner[s]];
        bs_eval_shard_range(cfg.n, (int)s, (int)count, &lo, &hi);
        if (get_int(json_object_get(doc, "shard"), "first", 0, MAX_IMAGES, &first) ||
            get_int(json_object_get(doc, "shard"), "n", 0, MAX_IMAGES, &n) || first != lo ||
            n != hi - lo || json_array_size(json_object_get(doc, "images")) != (size_t)(hi - lo))
            rc = bs_fail(err, "%s: shard %lld/%lld of %d images must hold the records of "
                         "images %d..%d of the slice", files[owner[s]], s, count, cfg.n, lo,
                         hi - 1);
    }
    bs_eval_images *im = rc ? NULL : bs_eval_images_new(l.n_models, cfg.n_noise, cfg.n);
    if (!rc && !im)
        rc = bs_fail(err, "out of memory");
    bs_attack_status status = BS_ATTACK_DONE;
    for (long long s = 0; s < count && !rc; s++) {
        int lo, hi;
        const json_t *doc = docs[owner[s]];
        bs_attack_status st;
        bs_eval_shard_range(cfg.n, (int)s, (int)count, &lo, &hi);
        if (read_status(doc, &st)) {
            rc = bs_fail(err, "%s: its status is not done, timeout or cancelled", files[owner[s]]);
            break;
        }
        status = bs_eval_status_join(status, st);
        for (int k = lo; k < hi && !rc; k++)
            if (read_image(json_array_get(json_object_get(doc, "images"), (size_t)(k - lo)), k,
                           &cfg, im))
                rc = bs_fail(err, "%s: the record of image %d of the slice is out of shape",
                             files[owner[s]], k);
    }
    free(owner);
    json_t *out = NULL;
    if (!rc) {
        bs_eval_result *r = malloc(sizeof *r);
        if (r) {
            bs_eval_reduce(im, &cfg, status, r);
            out = bs_eval_document(r, &l, &cfg);
            free(r);
        }
        if (!out)
            bs_fail(err, "out of memory");
    }
    bs_eval_images_free(im);
    return out;
}
