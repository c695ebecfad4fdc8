/* model_file — safetensors reading and writing of models; see model_file.h.
 *
 * Loading goes in stages, each trusting only what the previous one checked:
 * the length prefix, the JSON header, the metadata (architecture, input
 * shape, classes), every tensor entry on its own (dtype, shape, offsets
 * inside the data section), the tensors against each other (no overlap),
 * the tensors against the architecture (none missing, none extra, shapes as
 * the built model expects), and only then the copy of the data. */
#include "core/model_file.h"

#include "core/layers.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_KEY "__metadata__"
#define ARCH_KEY "blindspot.arch"
#define INPUT_SHAPE_KEY "blindspot.input_shape"
#define CLASSES_KEY "blindspot.classes"

/* Bound on every integer hyper-parameter and input dimension, so that the
 * shape arithmetic of bs_model_build stays far from int overflow. */
#define ARCH_MAX_INT (1 << 20)

/* Largest tensor rank printed or compared (conv2d weights have 4). */
#define MAX_RANK 8

/* --- byte order ------------------------------------------------------------
 * The format is little-endian. Bytes are assembled explicitly rather than
 * copied, so the code is right on any host and never reads an unaligned
 * float. */

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static float get_lef32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_lef32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++, u >>= 8)
        p[i] = (uint8_t)u;
}

/* --- parameter tensors of a layer ------------------------------------------ */

static int has_params(bs_layer_kind kind)
{
    return kind == BS_LINEAR || kind == BS_CONV2D;
}

/* The PyTorch shape of a built layer's weight (bias = 0) or bias (bias = 1):
 * linear (OC,C) and (OC); conv2d (OC,C,K,K) and (OC). Returns the rank. */
static int param_shape(const bs_layer *l, int bias, int64_t dims[MAX_RANK])
{
    int oc = l->kind == BS_LINEAR ? l->out_features : l->out_channels;
    dims[0] = oc;
    if (bias)
        return 1;
    if (l->kind == BS_LINEAR) {
        dims[1] = (int64_t)l->in_size;
        return 2;
    }
    dims[1] = l->in_shape[0];
    dims[2] = l->kernel;
    dims[3] = l->kernel;
    return 4;
}

static void shape_str(char *buf, size_t size, const int64_t *dims, int rank)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "",
                              (long long)dims[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* --- architecture as JSON -------------------------------------------------- */

/* The double whose shortest decimal form reads back as f, so that a dropout
 * of 0.1f is written "0.1" rather than "0.10000000149011612". */
static double float_decimal(float f)
{
    char s[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)f);
        double d = strtod(s, NULL);
        if ((float)d == f)
            return d;
    }
    return f;
}

static json_t *layer_to_json(const bs_layer *l)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "type", json_string(bs_layer_name(l->kind)));
    switch (l->kind) {
    case BS_LINEAR:
        bad |= json_object_set_new(o, "out_features", json_integer(l->out_features));
        break;
    case BS_CONV2D:
        bad |= json_object_set_new(o, "out_channels", json_integer(l->out_channels));
        bad |= json_object_set_new(o, "kernel", json_integer(l->kernel));
        bad |= json_object_set_new(o, "stride", json_integer(l->stride));
        bad |= json_object_set_new(o, "padding", json_integer(l->padding));
        break;
    case BS_MAXPOOL2D:
        bad |= json_object_set_new(o, "kernel", json_integer(l->kernel));
        bad |= json_object_set_new(o, "stride", json_integer(l->stride));
        break;
    case BS_DROPOUT:
        bad |= json_object_set_new(o, "p", json_real(float_decimal(l->p)));
        break;
    default:
        break;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *bs_arch_to_json(const bs_model *m)
{
    json_t *list = json_array();
    if (!list)
        return NULL;
    for (int i = 0; i < m->n_layers; i++) {
        if (json_array_append_new(list, layer_to_json(&m->layers[i])) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    /* Precision 9 prints float_decimal's doubles in their shortest form. */
    char *s = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(list);
    return s;
}

/* The fields a layer type accepts besides "type". */
static int field_allowed(bs_layer_kind kind, const char *key)
{
    switch (kind) {
    case BS_LINEAR:
        return strcmp(key, "out_features") == 0;
    case BS_CONV2D:
        return strcmp(key, "out_channels") == 0 || strcmp(key, "kernel") == 0 ||
               strcmp(key, "stride") == 0 || strcmp(key, "padding") == 0;
    case BS_MAXPOOL2D:
        return strcmp(key, "kernel") == 0 || strcmp(key, "stride") == 0;
    case BS_DROPOUT:
        return strcmp(key, "p") == 0;
    default:
        return 0;
    }
}

/* Reads o[key] into *out when present; it must be an integer in [lo, hi].
 * A required field that is absent is an error. */
static int get_int_field(const json_t *o, const char *key, int required,
                         int lo, int hi, int *out, int index, char *err)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (!required)
            return 0;
        snprintf(err, BS_ERR_LEN, "layer %d (%s) needs \"%s\"", index,
                 json_string_value(json_object_get(o, "type")), key);
        return -1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        snprintf(err, BS_ERR_LEN,
                 "layer %d (%s): \"%s\" must be an integer from %d to %d", index,
                 json_string_value(json_object_get(o, "type")), key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int layer_from_json(const json_t *o, int index, bs_layer *l, char *err)
{
    if (!json_is_object(o)) {
        snprintf(err, BS_ERR_LEN, "layer %d is not a JSON object", index);
        return -1;
    }
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type) {
        snprintf(err, BS_ERR_LEN, "layer %d has no \"type\" string", index);
        return -1;
    }
    memset(l, 0, sizeof *l);
    int kind;
    for (kind = BS_LINEAR; kind <= BS_DROPOUT; kind++)
        if (strcmp(type, bs_layer_name((bs_layer_kind)kind)) == 0)
            break;
    if (kind > BS_DROPOUT) {
        snprintf(err, BS_ERR_LEN,
                 "layer %d has unknown type \"%.40s\" (known: linear, conv2d, "
                 "maxpool2d, flatten, relu, sigmoid, tanh, dropout)", index, type);
        return -1;
    }
    l->kind = (bs_layer_kind)kind;

    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        if (strcmp(key, "type") != 0 && !field_allowed(l->kind, key)) {
            snprintf(err, BS_ERR_LEN, "layer %d (%s) has unknown field \"%.40s\"",
                     index, type, key);
            return -1;
        }
    }

    switch (l->kind) {
    case BS_LINEAR:
        return get_int_field(o, "out_features", 1, 1, ARCH_MAX_INT,
                             &l->out_features, index, err);
    case BS_CONV2D:
        l->stride = 1;
        if (get_int_field(o, "out_channels", 1, 1, ARCH_MAX_INT,
                          &l->out_channels, index, err) ||
            get_int_field(o, "kernel", 1, 1, ARCH_MAX_INT, &l->kernel, index, err) ||
            get_int_field(o, "stride", 0, 1, ARCH_MAX_INT, &l->stride, index, err) ||
            get_int_field(o, "padding", 0, 0, ARCH_MAX_INT, &l->padding, index, err))
            return -1;
        return 0;
    case BS_MAXPOOL2D:
        if (get_int_field(o, "kernel", 1, 1, ARCH_MAX_INT, &l->kernel, index, err))
            return -1;
        l->stride = l->kernel;
        return get_int_field(o, "stride", 0, 1, ARCH_MAX_INT, &l->stride, index, err);
    case BS_DROPOUT: {
        json_t *p = json_object_get(o, "p");
        l->p = 0.5f;
        if (!p)
            return 0;
        if (!json_is_number(p) || json_number_value(p) < 0 ||
            json_number_value(p) >= 1) {
            snprintf(err, BS_ERR_LEN,
                     "layer %d (dropout): \"p\" must be a number in [0, 1)", index);
            return -1;
        }
        l->p = (float)json_number_value(p);
        return 0;
    }
    default:
        return 0;
    }
}

int bs_arch_from_json(const char *json, bs_layer *layers, int *n_layers,
                      char *err)
{
    json_error_t jerr;
    json_t *list = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!list) {
        snprintf(err, BS_ERR_LEN, "not valid JSON: %s", jerr.text);
        return -1;
    }
    int rc = -1;
    size_t n = json_array_size(list);
    if (!json_is_array(list))
        snprintf(err, BS_ERR_LEN, "not a JSON list of layers");
    else if (n == 0)
        snprintf(err, BS_ERR_LEN, "the list of layers is empty");
    else if (n > BS_MAX_LAYERS)
        snprintf(err, BS_ERR_LEN, "%zu layers, more than the limit of %d", n,
                 BS_MAX_LAYERS);
    else {
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = layer_from_json(json_array_get(list, i), (int)i, &layers[i], err);
        if (rc == 0)
            *n_layers = (int)n;
    }
    json_decref(list);
    return rc;
}

/* --- loading --------------------------------------------------------------- */

/* One tensor entry of the header, checked against the data section. */
typedef struct tensor {
    const char *name;     /* key in the header (owned by the header) */
    int rank;
    int64_t dims[MAX_RANK];
    uint64_t begin, end;  /* byte range in the data section */
    int used;             /* claimed by a layer of the architecture */
} tensor;

/* What the header says, once checked. */
typedef struct header {
    json_t *root;
    json_t *meta;         /* the __metadata__ object */
    bs_layer layers[BS_MAX_LAYERS];
    int n_layers;
    int input_shape[3];
    int classes;
    tensor *tensors;
    size_t n_tensors;
} header;

static const char *meta_string(const header *h, const char *key, char *err)
{
    json_t *v = json_object_get(h->meta, key);
    if (!v)
        snprintf(err, BS_ERR_LEN, "metadata has no %s", key);
    return json_string_value(v);
}

static int parse_input_shape(const char *s, int shape[3], char *err)
{
    json_t *list = json_loads(s, 0, NULL);
    int ok = json_is_array(list) && json_array_size(list) == 3;
    for (size_t i = 0; ok && i < 3; i++) {
        json_t *d = json_array_get(list, i);
        ok = json_is_integer(d) && json_integer_value(d) >= 1 &&
             json_integer_value(d) <= ARCH_MAX_INT;
        if (ok)
            shape[i] = (int)json_integer_value(d);
    }
    json_decref(list);
    if (!ok)
        snprintf(err, BS_ERR_LEN,
                 "metadata " INPUT_SHAPE_KEY " \"%.40s\" is not [C,H,W] with "
                 "positive integers", s);
    return ok ? 0 : -1;
}

static int parse_classes(const char *s, int *classes, char *err)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 1 || v > ARCH_MAX_INT) {
        snprintf(err, BS_ERR_LEN,
                 "metadata " CLASSES_KEY " \"%.40s\" is not a positive integer", s);
        return -1;
    }
    *classes = (int)v;
    return 0;
}

static int parse_metadata(header *h, char *err)
{
    h->meta = json_object_get(h->root, META_KEY);
    if (!h->meta) {
        snprintf(err, BS_ERR_LEN,
                 "header has no " META_KEY " (not a blindspot model file?)");
        return -1;
    }
    if (!json_is_object(h->meta)) {
        snprintf(err, BS_ERR_LEN, "header's " META_KEY " is not a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(h->meta, key, v) {
        if (!json_is_string(v)) {
            snprintf(err, BS_ERR_LEN, "metadata \"%.60s\" is not a string", key);
            return -1;
        }
    }
    const char *arch = meta_string(h, ARCH_KEY, err);
    if (!arch)
        return -1;
    char why[BS_ERR_LEN];
    if (bs_arch_from_json(arch, h->layers, &h->n_layers, why) != 0) {
        snprintf(err, BS_ERR_LEN, "metadata " ARCH_KEY ": %.200s", why);
        return -1;
    }
    const char *shape = meta_string(h, INPUT_SHAPE_KEY, err);
    if (!shape || parse_input_shape(shape, h->input_shape, err) != 0)
        return -1;
    const char *classes = meta_string(h, CLASSES_KEY, err);
    if (!classes || parse_classes(classes, &h->classes, err) != 0)
        return -1;
    return 0;
}

/* Checks one tensor entry on its own: dtype, shape, and a byte range that
 * lies inside the data section and holds exactly the shape's floats. */
static int parse_tensor(const char *name, const json_t *info, size_t data_len,
                        tensor *t, char *err)
{
    t->name = name;
    t->used = 0;
    if (!json_is_object(info)) {
        snprintf(err, BS_ERR_LEN, "tensor \"%.60s\": entry is not a JSON object",
                 name);
        return -1;
    }
    const char *dtype = json_string_value(json_object_get(info, "dtype"));
    if (!dtype) {
        snprintf(err, BS_ERR_LEN, "tensor \"%.60s\" has no dtype string", name);
        return -1;
    }
    if (strcmp(dtype, "F32") != 0) {
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%.60s\" has dtype %.20s; only F32 is supported", name,
                 dtype);
        return -1;
    }

    json_t *shape = json_object_get(info, "shape");
    size_t rank = json_array_size(shape);
    if (!json_is_array(shape) || rank > MAX_RANK) {
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%.60s\": shape is not a list of at most %d integers",
                 name, MAX_RANK);
        return -1;
    }
    /* The byte count saturates: a shape too large for 64 bits can never
     * match a range inside the data section anyway. */
    uint64_t bytes = 4;
    int too_big = 0;
    t->rank = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            snprintf(err, BS_ERR_LEN,
                     "tensor \"%.60s\": shape is not a list of non-negative "
                     "integers", name);
            return -1;
        }
        t->dims[i] = json_integer_value(d);
        uint64_t dim = (uint64_t)t->dims[i];
        if (dim != 0 && bytes > UINT64_MAX / dim)
            too_big = 1;
        else
            bytes *= dim;
    }
    if (bytes == 0)
        too_big = 0;

    json_t *offs = json_object_get(info, "data_offsets");
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(b) > json_integer_value(e)) {
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%.60s\": data_offsets is not [begin,end] with "
                 "0 <= begin <= end", name);
        return -1;
    }
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    if (t->end > data_len) {
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%.60s\": data_offsets end %llu is past the end of the "
                 "data (%zu bytes)", name, (unsigned long long)t->end, data_len);
        return -1;
    }
    if (too_big || t->end - t->begin != bytes) {
        char s[96], need[32] = "more than 2^64";
        shape_str(s, sizeof s, t->dims, t->rank);
        if (!too_big)
            snprintf(need, sizeof need, "%llu", (unsigned long long)bytes);
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%.60s\": data_offsets span %llu bytes but shape %s "
                 "of F32 needs %s", name, (unsigned long long)(t->end - t->begin),
                 s, need);
        return -1;
    }
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const tensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int parse_tensors(header *h, size_t data_len, char *err)
{
    size_t n = json_object_size(h->root);
    h->tensors = calloc(n ? n : 1, sizeof *h->tensors);
    if (!h->tensors) {
        snprintf(err, BS_ERR_LEN, "out of memory reading the header");
        return -1;
    }
    const char *name;
    json_t *info;
    json_object_foreach(h->root, name, info) {
        if (strcmp(name, META_KEY) == 0)
            continue;
        if (parse_tensor(name, info, data_len, &h->tensors[h->n_tensors], err))
            return -1;
        h->n_tensors++;
    }
    /* Sorted by start, two tensors overlap exactly when one starts before
     * its predecessor ends; empty tensors occupy no bytes. */
    qsort(h->tensors, h->n_tensors, sizeof *h->tensors, by_begin);
    const tensor *last = NULL;
    for (size_t i = 0; i < h->n_tensors; i++) {
        const tensor *t = &h->tensors[i];
        if (t->begin == t->end)
            continue;
        if (last && t->begin < last->end) {
            snprintf(err, BS_ERR_LEN,
                     "tensors \"%.60s\" and \"%.60s\" overlap in the data section",
                     last->name, t->name);
            return -1;
        }
        if (!last || t->end > last->end)
            last = t;
    }
    return 0;
}

static tensor *find_tensor(header *h, const char *name)
{
    for (size_t i = 0; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i].name, name) == 0)
            return &h->tensors[i];
    return NULL;
}

/* Every parameter the architecture needs is present, nothing else is.
 * Shapes wait for the built model, which knows each layer's input. */
static int match_tensors(header *h, char *err)
{
    static const char *const suffix[2] = {"weight", "bias"};
    for (int i = 0; i < h->n_layers; i++) {
        if (!has_params(h->layers[i].kind))
            continue;
        for (int b = 0; b < 2; b++) {
            char name[32];
            snprintf(name, sizeof name, "%d.%s", i, suffix[b]);
            tensor *t = find_tensor(h, name);
            if (!t) {
                snprintf(err, BS_ERR_LEN, "missing tensor \"%s\" for layer %d (%s)",
                         name, i, bs_layer_name(h->layers[i].kind));
                return -1;
            }
            t->used = 1;
        }
    }
    for (size_t i = 0; i < h->n_tensors; i++) {
        if (!h->tensors[i].used) {
            snprintf(err, BS_ERR_LEN,
                     "unexpected tensor \"%.60s\": no layer of the architecture "
                     "has such a parameter", h->tensors[i].name);
            return -1;
        }
    }
    return 0;
}

/* Checks one parameter tensor's shape against the built layer and copies
 * its floats to params + off. */
static int fill_param(bs_model *m, int i, int bias, header *h,
                      const uint8_t *data, char *err)
{
    const bs_layer *l = &m->layers[i];
    char name[32];
    snprintf(name, sizeof name, "%d.%s", i, bias ? "bias" : "weight");
    const tensor *t = find_tensor(h, name);
    int64_t want[MAX_RANK];
    int rank = param_shape(l, bias, want);
    int same = t->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = t->dims[d] == want[d];
    if (!same) {
        char ws[96], gs[96];
        shape_str(ws, sizeof ws, want, rank);
        shape_str(gs, sizeof gs, t->dims, t->rank);
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%s\" has shape %.60s but the architecture expects "
                 "%.60s (layer %d, %s)", name, gs, ws, i, bs_layer_name(l->kind));
        return -1;
    }
    size_t n = (size_t)((t->end - t->begin) / 4);
    size_t size = bias ? l->bias_size : l->weight_size;
    size_t off = bias ? l->bias_off : l->weight_off;
    if (n != size || off > m->n_params || size > m->n_params - off) {
        snprintf(err, BS_ERR_LEN,
                 "tensor \"%s\" holds %zu floats but layer %d keeps %zu", name, n,
                 i, size);
        return -1;
    }
    const uint8_t *p = data + t->begin;
    for (size_t k = 0; k < n; k++)
        m->params[off + k] = get_lef32(p + 4 * k);
    return 0;
}

/* The parameter count the architecture implies, estimated before
 * bs_model_build allocates it, so that a small file claiming a huge network
 * is refused without a huge allocation. It follows bs_model_build's shape
 * rules in doubles (no overflow); where it stops early or disagrees, the
 * checks after building still decide. */
static double params_needed(const header *h)
{
    double c = h->input_shape[0], total = 0;
    int height = h->input_shape[1], width = h->input_shape[2];
    for (int i = 0; i < h->n_layers; i++) {
        const bs_layer *l = &h->layers[i];
        switch (l->kind) {
        case BS_LINEAR:
            total += (double)l->out_features * (c * height * width + 1);
            c = l->out_features;
            height = width = 1;
            break;
        case BS_CONV2D:
        case BS_MAXPOOL2D: {
            int pad = l->kind == BS_CONV2D ? l->padding : 0;
            height = bs_conv_out_size(height, l->kernel, l->stride, pad);
            width = bs_conv_out_size(width, l->kernel, l->stride, pad);
            if (height <= 0 || width <= 0)
                return total;
            if (l->kind == BS_CONV2D) {
                total += (double)l->out_channels * (c * l->kernel * l->kernel + 1);
                c = l->out_channels;
            }
            break;
        }
        case BS_FLATTEN:
            c *= (double)height * width;
            height = width = 1;
            break;
        default:
            break;
        }
    }
    return total;
}

static int is_structure_key(const char *key)
{
    return strcmp(key, ARCH_KEY) == 0 || strcmp(key, INPUT_SHAPE_KEY) == 0 ||
           strcmp(key, CLASSES_KEY) == 0;
}

static bs_model *build_model(header *h, const uint8_t *data, size_t data_len,
                             char *err)
{
    double needed = params_needed(h);
    if (needed > (double)(data_len / 4)) {
        snprintf(err, BS_ERR_LEN,
                 "metadata " ARCH_KEY " needs %.0f parameters but the data "
                 "section holds only %zu floats", needed, data_len / 4);
        return NULL;
    }
    char why[BS_ERR_LEN];
    bs_model *m = bs_model_build(h->layers, h->n_layers, h->input_shape, why);
    if (!m) {
        snprintf(err, BS_ERR_LEN,
                 "metadata " ARCH_KEY " does not fit input shape [%d,%d,%d]: %.160s",
                 h->input_shape[0], h->input_shape[1], h->input_shape[2], why);
        return NULL;
    }
    if (m->classes != h->classes) {
        snprintf(err, BS_ERR_LEN,
                 "metadata " CLASSES_KEY " is %d but the architecture gives %d "
                 "outputs", h->classes, m->classes);
        goto fail;
    }
    for (int i = 0; i < m->n_layers; i++) {
        if (!has_params(m->layers[i].kind))
            continue;
        if (fill_param(m, i, 0, h, data, err) || fill_param(m, i, 1, h, data, err))
            goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(h->meta, key, v) {
        if (is_structure_key(key))
            continue;
        if (bs_model_set_meta(m, key, json_string_value(v)) != 0) {
            snprintf(err, BS_ERR_LEN,
                     "cannot keep metadata \"%.60s\" (at most %d entries)", key,
                     BS_MAX_META);
            goto fail;
        }
    }
    return m;
fail:
    bs_model_free(m);
    return NULL;
}

bs_model *bs_model_load_buffer(const uint8_t *buf, size_t len, char *err)
{
    if (len < 8) {
        snprintf(err, BS_ERR_LEN,
                 "file is %zu bytes, too short for the 8-byte header length of a "
                 "safetensors file", len);
        return NULL;
    }
    uint64_t n = get_le64(buf);
    if (n > BS_MODEL_MAX_HEADER) {
        snprintf(err, BS_ERR_LEN,
                 "header length %llu is larger than the limit of %u bytes",
                 (unsigned long long)n, BS_MODEL_MAX_HEADER);
        return NULL;
    }
    if (n > len - 8) {
        snprintf(err, BS_ERR_LEN,
                 "header length %llu runs past the end of the file (%zu bytes "
                 "follow the length)", (unsigned long long)n, len - 8);
        return NULL;
    }
    header h = {0};
    json_error_t jerr;
    h.root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES,
                        &jerr);
    if (!h.root) {
        snprintf(err, BS_ERR_LEN, "header is not valid JSON: %s (byte %d)",
                 jerr.text, jerr.position);
        return NULL;
    }
    const uint8_t *data = buf + 8 + n;
    size_t data_len = len - 8 - (size_t)n;
    bs_model *m = NULL;
    if (!json_is_object(h.root))
        snprintf(err, BS_ERR_LEN, "header is not a JSON object");
    else if (parse_metadata(&h, err) == 0 && parse_tensors(&h, data_len, err) == 0 &&
             match_tensors(&h, err) == 0)
        m = build_model(&h, data, data_len, err);
    free(h.tensors);
    json_decref(h.root);
    return m;
}

bs_model *bs_model_load(const char *path, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, BS_ERR_LEN, "cannot open %.160s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, BS_ERR_LEN, "%.160s is not a regular file", path);
    } else {
        len = (size_t)st.st_size;
        buf = malloc(len ? len : 1);
        if (!buf)
            snprintf(err, BS_ERR_LEN, "%.160s: out of memory for %zu bytes", path,
                     len);
        else if (fread(buf, 1, len, f) != len) {
            snprintf(err, BS_ERR_LEN, "cannot read %.160s", path);
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    char why[BS_ERR_LEN];
    bs_model *m = bs_model_load_buffer(buf, len, why);
    if (!m)
        snprintf(err, BS_ERR_LEN, "%.60s: %.190s", path, why);
    free(buf);
    return m;
}

/* --- saving ---------------------------------------------------------------- */

static json_t *tensor_json(const int64_t *dims, int rank, uint64_t begin,
                           uint64_t end)
{
    json_t *shape = json_array();
    for (int d = 0; d < rank; d++)
        json_array_append_new(shape, json_integer(dims[d]));
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                     "data_offsets", (json_int_t)begin, (json_int_t)end);
}

/* The header's JSON: tensors in layer order, metadata with the structure
 * keys generated from the model. Returns NULL with err set. */
static char *header_json(const bs_model *m, char *err)
{
    json_t *root = json_object(), *meta = json_object();
    char *s = NULL, *arch = bs_arch_to_json(m);
    int bad = !root || !meta || !arch;
    uint64_t off = 0;
    for (int i = 0; i < m->n_layers && !bad; i++) {
        const bs_layer *l = &m->layers[i];
        if (!has_params(l->kind))
            continue;
        for (int b = 0; b < 2 && !bad; b++) {
            int64_t dims[MAX_RANK];
            int rank = param_shape(l, b, dims);
            size_t size = b ? l->bias_size : l->weight_size;
            size_t count = 1;
            for (int d = 0; d < rank; d++)
                count *= (size_t)dims[d];
            if (count != size) {
                snprintf(err, BS_ERR_LEN,
                         "layer %d (%s) keeps %zu %s floats, its shape needs %zu",
                         i, bs_layer_name(l->kind), size, b ? "bias" : "weight",
                         count);
                goto out;
            }
            char name[32];
            snprintf(name, sizeof name, "%d.%s", i, b ? "bias" : "weight");
            bad = json_object_set_new(root, name,
                                      tensor_json(dims, rank, off, off + 4 * size));
            off += 4 * (uint64_t)size;
        }
    }
    for (int j = 0; j < m->n_meta && !bad; j++) {
        /* Both fail only on invalid UTF-8 (or no memory); set_new frees v. */
        json_t *v = json_string(m->meta[j].value);
        if (!v || json_object_set_new(meta, m->meta[j].key, v) != 0) {
            snprintf(err, BS_ERR_LEN, "metadata \"%.60s\" is not valid UTF-8",
                     m->meta[j].key);
            goto out;
        }
    }
    if (!bad) {
        char shape[64], classes[16];
        snprintf(shape, sizeof shape, "[%d,%d,%d]", m->input_shape[0],
                 m->input_shape[1], m->input_shape[2]);
        snprintf(classes, sizeof classes, "%d", m->classes);
        bad = json_object_set_new(meta, ARCH_KEY, json_string(arch)) ||
              json_object_set_new(meta, INPUT_SHAPE_KEY, json_string(shape)) ||
              json_object_set_new(meta, CLASSES_KEY, json_string(classes)) ||
              json_object_set(root, META_KEY, meta);
    }
    if (!bad)
        s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        snprintf(err, BS_ERR_LEN, "out of memory writing the header");
out:
    free(arch);
    json_decref(meta);
    json_decref(root);
    return s;
}

/* Writes the whole file to f; returns 0, or -1 (errno set by stdio). */
static int write_file(FILE *f, const bs_model *m, const char *hdr)
{
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7;
    uint8_t prefix[8];
    put_le64(prefix, padded);
    if (fwrite(prefix, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen)
        return -1;
    for (size_t i = hlen; i < padded; i++)
        if (fputc(' ', f) == EOF)
            return -1;
    uint8_t chunk[4096];
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        if (!has_params(l->kind))
            continue;
        for (int b = 0; b < 2; b++) {
            const float *p = m->params + (b ? l->bias_off : l->weight_off);
            size_t n = b ? l->bias_size : l->weight_size;
            for (size_t k = 0; k < n;) {
                size_t c = 0;
                for (; c < sizeof chunk / 4 && k < n; c++, k++)
                    put_lef32(chunk + 4 * c, p[k]);
                if (fwrite(chunk, 4, c, f) != c)
                    return -1;
            }
        }
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        return -1;
    return 0;
}

int bs_model_save(const bs_model *m, const char *path, char *err)
{
    char *hdr = header_json(m, err);
    if (!hdr)
        return -1;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    int rc = -1;
    if (!tmp) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, BS_ERR_LEN, "cannot create %.160s: %s", tmp, strerror(errno));
        goto out;
    }
    int werr = write_file(f, m, hdr) != 0 ? errno : 0;
    if (fclose(f) != 0 && !werr)
        werr = errno ? errno : EIO;
    if (werr) {
        snprintf(err, BS_ERR_LEN, "cannot write %.160s: %s", tmp, strerror(werr));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, BS_ERR_LEN, "cannot rename %.80s to %.80s: %s", tmp, path,
                 strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    free(hdr);
    return rc;
}
