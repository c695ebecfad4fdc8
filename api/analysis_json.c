/* analysis_json — the documents of core/analysis.h; see analysis_json.h. */
#include "api/analysis_json.h"

#include "api/base64.h"
#include "api/image.h"

#include <stdio.h>
#include <stdlib.h>

json_t *bs_lipschitz_json(const char *name, const bs_model *m, uint64_t seed,
                          const bs_lipschitz *lip, const bs_lipschitz_empirical *emp,
                          const char *dataset, const char *split)
{
    json_t *layers = json_array();
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        json_array_append_new(layers, json_pack(
            "{s:i, s:s, s:[i,i,i], s:f, s:i}", "index", i, "type", bs_layer_name(l->kind),
            "output_shape", l->out_shape[0], l->out_shape[1], l->out_shape[2], "bound",
            lip->layers[i].bound, "iterations", lip->layers[i].iterations));
    }
    json_t *doc = json_pack("{s:s, s:I, s:o, s:f}", "model", name, "seed", (json_int_t)seed,
                            "layers", layers, "product", lip->product);
    if (doc && emp)
        json_object_set_new(doc, "empirical", json_pack(
            "{s:s, s:s, s:s, s:i, s:i, s:f, s:f}", "method", "lbfgs", "dataset", dataset,
            "split", split, "images", emp->images, "examples", emp->examples, "max_ratio",
            emp->max_ratio, "mean_ratio", emp->mean_ratio));
    return doc;
}

/* The top images side by side, as {"format": "png", ..., "data": base64}. */
static json_t *grid_json(const bs_dataset *d, const bs_units_top *t, char *err)
{
    bs_units_grid g;
    if (bs_units_grid_make(d, t->indices, t->k, &g, err))
        return NULL;
    uint8_t *png = NULL;
    size_t len = 0;
    char *b64 = NULL;
    if (!bs_image_encode(g.pixels, g.width, g.height, g.channels, BS_IMAGE_PNG, 0, &png, &len,
                         err)) {
        b64 = bs_base64_encode(png, len);
        if (!b64)
            snprintf(err, BS_ERR_LEN, "out of memory");
    }
    json_t *o = b64 ? json_pack("{s:s, s:i, s:i, s:i, s:s}", "format", "png", "width", g.width,
                                "height", g.height, "channels", g.channels, "data", b64)
                    : NULL;
    bs_units_grid_free(&g);
    free(png);
    free(b64);
    return o;
}

json_t *bs_units_json(const char *name, const bs_model *m, int layer, int unit,
                      uint64_t seed, const bs_dataset *d, const bs_units_top *t, char *err)
{
    json_t *grid = grid_json(d, t, err);
    if (!grid)
        return NULL;
    json_t *idx = json_array(), *labels = json_array(), *scores = json_array();
    for (int i = 0; i < t->k; i++) {
        json_array_append_new(idx, json_integer(t->indices[i]));
        json_array_append_new(labels, json_integer(t->labels[i]));
        json_array_append_new(scores, json_real(t->scores[i]));
    }
    json_t *dir = unit < 0 ? json_pack("{s:s, s:I}", "type", "random", "seed", (json_int_t)seed)
                           : json_pack("{s:s, s:i}", "type", "unit", "unit", unit);
    json_t *doc = json_pack(
        "{s:s, s:i, s:s, s:I, s:o, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:i, s:f, s:o}", "model",
        name, "layer", layer, "layer_type", bs_layer_name(m->layers[layer].kind), "dim",
        (json_int_t)m->layers[layer].out_size, "direction", dir, "dataset", d->name, "split",
        d->split, "images", d->n, "k", t->k, "indices", idx, "labels", labels, "scores", scores,
        "majority", t->majority, "purity", t->purity, "grid", grid);
    if (!doc)
        snprintf(err, BS_ERR_LEN, "out of memory");
    return doc;
}

json_t *bs_units_summary_json(const char *name, const bs_model *m, const char *dataset,
                              const char *split, uint64_t seed, const bs_units_summary *s)
{
    return json_pack(
        "{s:s, s:i, s:s, s:i, s:s, s:s, s:i, s:i, s:I, s:{s:f, s:f}, s:{s:f, s:f}, s:f}",
        "model", name, "layer", s->layer, "layer_type", bs_layer_name(m->layers[s->layer].kind),
        "dim", s->dim, "dataset", dataset, "split", split, "k", s->k, "units", s->units,
        "first_seed", (json_int_t)seed, "unit_purity", "mean", s->unit_mean, "std", s->unit_std,
        "random_purity", "mean", s->random_mean, "std", s->random_std, "chance_purity",
        s->chance_mean);
}
