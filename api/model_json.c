/* model_json — a model's document; see model_json.h. */
#include "api/model_json.h"

#include "core/model_file.h"

#include <stdlib.h>

/* A metadata value that should be a number, as a JSON number or null. */
static json_t *meta_number(const bs_model *m, const char *key)
{
    const char *v = bs_model_get_meta(m, key);
    char *end;
    double d = v ? strtod(v, &end) : 0;
    return v && end != v && !*end ? json_real(d) : json_null();
}

static json_t *meta_string(const bs_model *m, const char *key)
{
    const char *v = bs_model_get_meta(m, key);
    return v ? json_string(v) : json_null();
}

static json_t *shape_json(const int s[3])
{
    return json_pack("[i,i,i]", s[0], s[1], s[2]);
}

json_t *bs_model_summary_json(const char *name, const bs_model *m)
{
    return json_pack("{s:s, s:o, s:I, s:o, s:i, s:o, s:o, s:o}", "name", name, "arch",
                     meta_string(m, "blindspot.spec"), "parameters", (json_int_t)m->n_params,
                     "input_shape", shape_json(m->input_shape), "classes", m->classes,
                     "dataset", meta_string(m, "blindspot.dataset"), "train_error",
                     meta_number(m, "blindspot.train_error"), "test_error",
                     meta_number(m, "blindspot.test_error"));
}

json_t *bs_model_json(const char *name, const char *file, const bs_model *m)
{
    json_t *doc = bs_model_summary_json(name, m);
    char *text = bs_arch_to_json(m);
    json_t *arch = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *layers = json_array(), *meta = json_object();
    if (!doc || !arch || !layers || !meta) {
        json_decref(doc);
        json_decref(arch);
        json_decref(layers);
        json_decref(meta);
        return NULL;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        json_t *o = json_pack("{s:i, s:s, s:o, s:o, s:I}", "index", i, "type",
                              bs_layer_name(l->kind), "input_shape", shape_json(l->in_shape),
                              "output_shape", shape_json(l->out_shape), "parameters",
                              (json_int_t)(l->weight_size + l->bias_size));
        if (l->name[0]) /* the node's name in its file (an ONNX graph's) */
            json_object_set_new(o, "name", json_string(l->name));
        /* the stored hyper-parameters; "type" is the same word */
        json_object_update_missing(o, json_array_get(arch, (size_t)i));
        json_array_append_new(layers, o);
    }
    json_decref(arch);
    for (int i = 0; i < m->n_meta; i++)
        json_object_set_new(meta, m->meta[i].key, json_string(m->meta[i].value));
    json_object_set_new(doc, "file", json_string(file));
    json_object_set_new(doc, "layers", layers);
    json_object_set_new(doc, "metadata", meta);
    return doc;
}
