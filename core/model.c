/* model — architecture specs, shapes, parameter layout, initialisation, and
 * the batched forward and backward pass through a list of layers. */
#include "core/model.h"
#include "core/error.h"

#include "core/layers.h"
#include "core/rng.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t bs_model_macs(const bs_model *m)
{
    size_t macs = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        if (l->kind == BS_LINEAR)
            macs += l->weight_size;
        else if (l->kind == BS_CONV2D)
            macs += l->weight_size * (size_t)l->out_shape[1] * (size_t)l->out_shape[2];
    }
    return macs;
}

const char *bs_layer_name(bs_layer_kind kind)
{
    switch (kind) {
    case BS_LINEAR: return "linear";
    case BS_CONV2D: return "conv2d";
    case BS_MAXPOOL2D: return "maxpool2d";
    case BS_FLATTEN: return "flatten";
    case BS_RELU: return "relu";
    case BS_SIGMOID: return "sigmoid";
    case BS_TANH: return "tanh";
    case BS_DROPOUT: return "dropout";
    case BS_AVGPOOL2D: return "avgpool2d";
    case BS_GLOBAL_AVGPOOL: return "global_avgpool";
    case BS_ADD: return "add";
    case BS_SUB: return "sub";
    case BS_MUL: return "mul";
    case BS_DIV: return "div";
    case BS_LEAKY_RELU: return "leaky_relu";
    case BS_CLIP: return "clip";
    case BS_HARDSIGMOID: return "hardsigmoid";
    case BS_HARDSWISH: return "hardswish";
    case BS_CONCAT: return "concat";
    case BS_PAD: return "pad";
    case BS_RESHAPE: return "reshape";
    case BS_SOFTMAX: return "softmax";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* architecture specs */

static int push(bs_layer *layers, int *n, bs_layer l, char *err)
{
    if (*n >= BS_MAX_LAYERS)
        return bs_fail(err, "architecture has more than %d layers", BS_MAX_LAYERS);
    layers[(*n)++] = l;
    return 0;
}

static int push_kind(bs_layer *layers, int *n, bs_layer_kind kind, char *err)
{
    return push(layers, n, (bs_layer){.kind = kind}, err);
}

/* Parses "a,b,c" (positive ints) from s up to end into v; returns count. */
static int parse_sizes(const char *s, const char *end, int *v, int max,
                       const char *spec, char *err)
{
    int n = 0;
    while (s < end) {
        char *e;
        errno = 0;
        long x = strtol(s, &e, 10);
        if (e == s || errno || x <= 0 || x > 1000000 || (e < end && *e != ','))
            return bs_fail(err, "architecture '%s': sizes must be positive integers "
                        "separated by commas", spec);
        if (n == max)
            return bs_fail(err, "architecture '%s': more than %d sizes", spec, max);
        v[n++] = (int)x;
        s = e < end ? e + 1 : e;
    }
    return n;
}

static int parse_act(const char *s, bs_layer_kind *act, const char *spec, char *err)
{
    if (!strcmp(s, "sigmoid"))
        *act = BS_SIGMOID;
    else if (!strcmp(s, "relu"))
        *act = BS_RELU;
    else if (!strcmp(s, "tanh"))
        *act = BS_TANH;
    else
        return bs_fail(err, "architecture '%s': unknown activation '%s' "
                    "(sigmoid, relu or tanh)", spec, s);
    return 0;
}

int bs_arch_parse(const char *spec, int classes, bs_layer *layers,
                  int *n_layers, char *err)
{
    int sizes[BS_MAX_LAYERS], hidden[BS_MAX_LAYERS];
    int n = 0, ns = 0, nh = 0;
    *n_layers = 0;
    if (classes < 2)
        return bs_fail(err, "a classifier needs at least 2 classes, got %d", classes);
    const char *colon = strchr(spec, ':');
    size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *rest = colon ? colon + 1 : "";

    if (kind_len == 2 && !strncmp(spec, "fc", 2)) {
        /* fc[:H1,H2,...[:act]] */
        bs_layer_kind act = BS_SIGMOID;
        const char *c2 = strchr(rest, ':');
        const char *end = c2 ? c2 : rest + strlen(rest);
        if (colon && (ns = parse_sizes(rest, end, sizes, BS_MAX_LAYERS, spec, err)) < 0)
            return -1;
        if (colon && ns == 0)
            return bs_fail(err, "architecture '%s': 'fc:' needs hidden sizes, "
                        "or write 'fc' for softmax regression", spec);
        if (c2 && parse_act(c2 + 1, &act, spec, err))
            return -1;
        if (push_kind(layers, &n, BS_FLATTEN, err))
            return -1;
        for (int i = 0; i < ns; i++)
            if (push(layers, &n, (bs_layer){.kind = BS_LINEAR, .out_features = sizes[i]}, err) ||
                push_kind(layers, &n, act, err))
                return -1;
    } else if (kind_len == 2 && !strncmp(spec, "ae", 2)) {
        /* ae:H — the classifier on top of an autoencoder's code */
        if ((ns = parse_sizes(rest, rest + strlen(rest), sizes, 1, spec, err)) < 0)
            return -1;
        if (ns != 1)
            return bs_fail(err, "architecture '%s': write ae:H with the code size H", spec);
        if (push_kind(layers, &n, BS_FLATTEN, err) ||
            push(layers, &n, (bs_layer){.kind = BS_LINEAR, .out_features = sizes[0]}, err) ||
            push_kind(layers, &n, BS_SIGMOID, err))
            return -1;
    } else if (kind_len == 3 && !strncmp(spec, "cnn", 3)) {
        /* cnn:C1,C2,...[:H1,H2,...] or cnn:small */
        if (!strcmp(rest, "small"))
            rest = "16,32:128";
        const char *c2 = strchr(rest, ':');
        const char *end = c2 ? c2 : rest + strlen(rest);
        if ((ns = parse_sizes(rest, end, sizes, BS_MAX_LAYERS, spec, err)) < 0)
            return -1;
        if (c2 && (nh = parse_sizes(c2 + 1, c2 + 1 + strlen(c2 + 1), hidden,
                                    BS_MAX_LAYERS, spec, err)) < 0)
            return -1;
        if (ns == 0)
            return bs_fail(err, "architecture '%s': write cnn:C1,C2[:H1] (channels of "
                        "each 5x5 conv block, then hidden sizes) or cnn:small", spec);
        for (int i = 0; i < ns; i++)
            if (push(layers, &n, (bs_layer){.kind = BS_CONV2D, .out_channels = sizes[i],
                                            .kernel = 5, .stride = 1}, err) ||
                push_kind(layers, &n, BS_RELU, err) ||
                push(layers, &n, (bs_layer){.kind = BS_MAXPOOL2D, .kernel = 2,
                                            .stride = 2}, err))
                return -1;
        if (push_kind(layers, &n, BS_FLATTEN, err))
            return -1;
        for (int i = 0; i < nh; i++)
            if (push(layers, &n, (bs_layer){.kind = BS_LINEAR, .out_features = hidden[i]}, err) ||
                push_kind(layers, &n, BS_RELU, err))
                return -1;
    } else {
        return bs_fail(err, "unknown architecture '%s' (fc, fc:H1,H2[:act], ae:H, "
                    "cnn:C1,C2[:H1], cnn:small)", spec);
    }
    if (push(layers, &n, (bs_layer){.kind = BS_LINEAR, .out_features = classes}, err))
        return -1;
    *n_layers = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* building a model: shapes and parameter layout */

static bs_conv_dims conv_dims(const bs_layer *l)
{
    return (bs_conv_dims){
        .C = l->in_shape[0], .H = l->in_shape[1], .W = l->in_shape[2],
        .OC = l->out_shape[0], .OH = l->out_shape[1], .OW = l->out_shape[2],
        .K = l->kernel, .stride = l->stride,
        .pad = l->kind == BS_CONV2D ? l->padding : 0,
    };
}

bs_model *bs_model_build(const bs_layer *layers, int n_layers,
                         const int input_shape[3], char *err)
{
    if (n_layers <= 0 || n_layers > BS_MAX_LAYERS) {
        bs_fail(err, "a model needs 1 to %d layers, got %d", BS_MAX_LAYERS, n_layers);
        return NULL;
    }
    for (int k = 0; k < 3; k++)
        if (input_shape[k] <= 0 || input_shape[k] > 4096) {
            bs_fail(err, "input shape (%d,%d,%d) is not a valid (C,H,W)",
                 input_shape[0], input_shape[1], input_shape[2]);
            return NULL;
        }
    bs_model *m = calloc(1, sizeof *m);
    if (m && !(m->layers = calloc((size_t)n_layers, sizeof *m->layers))) {
        free(m);
        m = NULL;
    }
    if (!m) {
        bs_fail(err, "out of memory");
        return NULL;
    }
    memcpy(m->input_shape, input_shape, sizeof m->input_shape);
    m->input_size = (size_t)input_shape[0] * input_shape[1] * input_shape[2];
    m->n_layers = n_layers;
    int shape[3] = {input_shape[0], input_shape[1], input_shape[2]};
    size_t off = 0;
    for (int i = 0; i < n_layers; i++) {
        bs_layer *l = &m->layers[i];
        *l = layers[i];
        memcpy(l->in_shape, shape, sizeof shape);
        l->in_size = (size_t)shape[0] * shape[1] * shape[2];
        const char *name = bs_layer_name(l->kind);
        switch (l->kind) {
        case BS_LINEAR:
            if (shape[1] != 1 || shape[2] != 1) {
                bs_fail(err, "layer %d (linear) needs a flat input but gets (%d,%d,%d); "
                     "put a flatten layer before it", i, shape[0], shape[1], shape[2]);
                goto bad;
            }
            if (l->out_features <= 0 || l->out_features > 1000000) {
                bs_fail(err, "layer %d (linear) has invalid out_features %d", i, l->out_features);
                goto bad;
            }
            l->weight_size = (size_t)l->out_features * shape[0];
            l->bias_size = (size_t)l->out_features;
            shape[0] = l->out_features;
            break;
        case BS_CONV2D: {
            if (l->out_channels <= 0 || l->out_channels > 65536 || l->kernel <= 0 ||
                l->kernel > 64 || l->stride <= 0 || l->stride > 64 ||
                l->padding < 0 || l->padding > 64) {
                bs_fail(err, "layer %d (conv2d) has invalid hyper-parameters "
                     "(out_channels %d, kernel %d, stride %d, padding %d)",
                     i, l->out_channels, l->kernel, l->stride, l->padding);
                goto bad;
            }
            int oh = bs_conv_out_size(shape[1], l->kernel, l->stride, l->padding);
            int ow = bs_conv_out_size(shape[2], l->kernel, l->stride, l->padding);
            if (oh <= 0 || ow <= 0) {
                bs_fail(err, "layer %d (conv2d, kernel %d) does not fit its input (%d,%d,%d)",
                     i, l->kernel, shape[0], shape[1], shape[2]);
                goto bad;
            }
            l->weight_size = (size_t)l->out_channels * shape[0] * l->kernel * l->kernel;
            l->bias_size = (size_t)l->out_channels;
            shape[0] = l->out_channels;
            shape[1] = oh;
            shape[2] = ow;
            break;
        }
        case BS_MAXPOOL2D: {
            if (l->stride == 0)
                l->stride = l->kernel;
            if (l->kernel <= 0 || l->kernel > 64 || l->stride <= 0 || l->stride > 64) {
                bs_fail(err, "layer %d (maxpool2d) has invalid kernel %d or stride %d",
                     i, l->kernel, l->stride);
                goto bad;
            }
            int oh = bs_conv_out_size(shape[1], l->kernel, l->stride, 0);
            int ow = bs_conv_out_size(shape[2], l->kernel, l->stride, 0);
            if (oh <= 0 || ow <= 0) {
                bs_fail(err, "layer %d (maxpool2d, kernel %d) does not fit its input (%d,%d,%d)",
                     i, l->kernel, shape[0], shape[1], shape[2]);
                goto bad;
            }
            shape[1] = oh;
            shape[2] = ow;
            break;
        }
        case BS_FLATTEN:
            shape[0] = shape[0] * shape[1] * shape[2];
            shape[1] = shape[2] = 1;
            break;
        case BS_DROPOUT:
            if (!(l->p >= 0.0f && l->p < 1.0f)) {
                bs_fail(err, "layer %d (dropout) has p %g outside [0,1)", i, (double)l->p);
                goto bad;
            }
            break;
        case BS_RELU:
        case BS_SIGMOID:
        case BS_TANH:
            break;
        default:
            bs_fail(err, "layer %d has unknown kind %d", i, (int)l->kind);
            goto bad;
        }
        memcpy(l->out_shape, shape, sizeof shape);
        l->out_size = (size_t)shape[0] * shape[1] * shape[2];
        if (l->out_size > ((size_t)1 << 26)) {
            bs_fail(err, "layer %d (%s) output of %zu floats per sample is too large",
                 i, name, l->out_size);
            goto bad;
        }
        if (l->weight_size + l->bias_size > BS_MAX_PARAMS - off) {
            bs_fail(err, "layer %d (%s) takes the model past %d parameters", i, name,
                 BS_MAX_PARAMS);
            goto bad;
        }
        l->weight_off = off;
        off += l->weight_size;
        l->bias_off = off;
        off += l->bias_size;
    }
    if (m->layers[n_layers - 1].out_shape[1] != 1 || m->layers[n_layers - 1].out_shape[2] != 1 ||
        m->layers[n_layers - 1].out_size < 2) {
        bs_fail(err, "the last layer must output a flat vector of at least 2 class scores");
        goto bad;
    }
    m->classes = (int)m->layers[n_layers - 1].out_size;
    m->n_params = off;
    m->params = calloc(off ? off : 1, sizeof(float));
    if (!m->params) {
        bs_fail(err, "out of memory for %zu parameters", off);
        goto bad;
    }
    return m;
bad:
    free(m->layers);
    free(m);
    return NULL;
}

void bs_model_free(bs_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->params);
    free(m->layers);
    free(m->tensors);
    free(m);
}

void bs_model_init(bs_model *m, uint64_t seed)
{
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_layers; i++) {
        bs_layer *l = &m->layers[i];
        if (!l->weight_size)
            continue;
        size_t fan_in = l->weight_size / l->bias_size;
        size_t k2 = l->kind == BS_CONV2D ? (size_t)l->kernel * l->kernel : 1;
        size_t fan_out = l->bias_size * k2;
        int relu_next = i + 1 < m->n_layers && m->layers[i + 1].kind == BS_RELU;
        /* He-uniform keeps relu activations' variance; Xavier-uniform suits
         * the saturating sigmoid and tanh and the output layer. */
        float bound = relu_next ? sqrtf(6.0f / (float)fan_in)
                                : sqrtf(6.0f / (float)(fan_in + fan_out));
        float *w = m->params + l->weight_off;
        for (size_t j = 0; j < l->weight_size; j++)
            w[j] = (2.0f * bs_rng_uniform(&rng) - 1.0f) * bound;
        memset(m->params + l->bias_off, 0, l->bias_size * sizeof(float));
    }
}

int bs_model_set_meta(bs_model *m, const char *key, const char *value)
{
    for (int i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) {
            char *v = strdup(value);
            if (!v)
                return -1;
            free(m->meta[i].value);
            m->meta[i].value = v;
            return 0;
        }
    if (m->n_meta >= BS_MAX_META)
        return -1;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    m->meta[m->n_meta++] = (bs_meta){k, v};
    return 0;
}

const char *bs_model_get_meta(const bs_model *m, const char *key)
{
    for (int i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key))
            return m->meta[i].value;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* workspace */

#define ALIGN_FLOATS 16 /* 64-byte alignment for every buffer */

/* Int buffers (targets, argmax) are carved from the float arena. */
_Static_assert(sizeof(int) == sizeof(float), "ints are laid out as floats");

static size_t round_up(size_t n)
{
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

bs_workspace *bs_workspace_new(const bs_model *m, int batch)
{
    if (batch <= 0)
        return NULL;
    bs_workspace *ws = calloc(1, sizeof *ws);
    size_t nodes = (size_t)m->n_layers;
    if (ws && (!(ws->acts = calloc(nodes + 1, sizeof *ws->acts)) ||
               !(ws->masks = calloc(nodes, sizeof *ws->masks)) ||
               !(ws->argmax = calloc(nodes, sizeof *ws->argmax)))) {
        bs_workspace_free(ws);
        return NULL;
    }
    if (!ws)
        return NULL;
    size_t B = (size_t)batch, floats = 0, bytes = 0, max_size = m->input_size;
    size_t col = 0;
    floats += round_up(B * m->input_size);
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        if (l->kind != BS_FLATTEN)
            floats += round_up(B * l->out_size);
        if (l->out_size > max_size)
            max_size = l->out_size;
        if (l->kind == BS_CONV2D) {
            bs_conv_dims d = conv_dims(l);
            size_t s = bs_conv2d_scratch(&d);
            if (s > col)
                col = s;
        }
        if (l->kind == BS_MAXPOOL2D)
            floats += round_up(B * l->out_size); /* argmax: one int per output */
        if (l->kind == BS_DROPOUT)
            bytes += round_up(B * l->in_size);
    }
    floats += 2 * round_up(B * max_size) + round_up(col) +
              round_up(B * (size_t)m->classes) + round_up(B) + round_up(B);
    /* aligned_alloc wants a multiple of the alignment */
    size_t total = round_up(floats + bytes / sizeof(float) + ALIGN_FLOATS) * sizeof(float);
    float *mem = aligned_alloc(64, total);
    if (!mem) {
        bs_workspace_free(ws);
        return NULL;
    }
    memset(mem, 0, total);
    float *p = mem;
    ws->mem = mem;
    ws->batch = batch;
    ws->acts[0] = p;
    p += round_up(B * m->input_size);
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        if (l->kind == BS_FLATTEN) {
            ws->acts[i + 1] = ws->acts[i]; /* same floats, another shape */
            continue;
        }
        ws->acts[i + 1] = p;
        p += round_up(B * l->out_size);
    }
    ws->grad_a = p;
    p += round_up(B * max_size);
    ws->grad_b = p;
    p += round_up(B * max_size);
    ws->col = p;
    p += round_up(col);
    ws->probs = p;
    p += round_up(B * (size_t)m->classes);
    ws->losses = p;
    p += round_up(B);
    ws->targets = (int *)p;
    p += round_up(B);
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == BS_MAXPOOL2D) {
            ws->argmax[i] = (int *)p;
            p += round_up(B * m->layers[i].out_size);
        }
    uint8_t *q = (uint8_t *)p;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == BS_DROPOUT) {
            ws->masks[i] = q;
            q += round_up(B * m->layers[i].in_size);
        }
    ws->rng = 0x5eed;
    return ws;
}

void bs_workspace_free(bs_workspace *ws)
{
    if (!ws)
        return;
    free(ws->mem);
    free(ws->acts);
    free(ws->masks);
    free(ws->argmax);
    free(ws);
}

/* ------------------------------------------------------------------------ */
/* forward and backward */

static uint64_t mask_next(uint64_t *s)
{
    /* xorshift64: cheap, deterministic per workspace */
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

const float *bs_model_forward(const bs_model *m, bs_workspace *ws,
                              const float *x, int B)
{
    memcpy(ws->acts[0], x, (size_t)B * m->input_size * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        const float *in = ws->acts[i];
        float *out = ws->acts[i + 1];
        const float *w = m->params + l->weight_off, *b = m->params + l->bias_off;
        size_t n = (size_t)B * l->out_size;
        switch (l->kind) {
        case BS_LINEAR:
            bs_linear_forward(out, in, w, b, B, (int)l->in_size, l->out_features);
            break;
        case BS_CONV2D: {
            bs_conv_dims d = conv_dims(l);
            bs_conv2d_forward(out, in, w, b, ws->col, B, &d);
            break;
        }
        case BS_MAXPOOL2D: {
            bs_conv_dims d = conv_dims(l);
            bs_maxpool2d_forward_argmax(out, ws->argmax[i], in, B, &d);
            break;
        }
        case BS_FLATTEN:
            break;
        case BS_RELU:
            bs_relu_forward(out, in, n);
            break;
        case BS_SIGMOID:
            bs_sigmoid_forward(out, in, n);
            break;
        case BS_TANH:
            bs_tanh_forward(out, in, n);
            break;
        case BS_DROPOUT: {
            uint8_t *mask = NULL;
            if (ws->training && l->p > 0.0f) {
                mask = ws->masks[i];
                uint64_t keep = (uint64_t)((1.0 - l->p) * 4294967296.0);
                for (size_t j = 0; j < n; j++)
                    mask[j] = (mask_next(&ws->rng) >> 32) < keep;
            }
            bs_dropout_forward(out, in, mask, l->p, n);
            break;
        }
        default: /* graph ops: bs_model_build refuses them */
            break;
        }
    }
    return ws->acts[m->n_layers];
}

/* Whether any layer before layer i has parameters. */
static int params_below(const bs_model *m, int i)
{
    for (int j = 0; j < i; j++)
        if (m->layers[j].weight_size)
            return 1;
    return 0;
}

void bs_model_backward(const bs_model *m, bs_workspace *ws,
                       const float *dlogits, float *dparams, float *dx, int B)
{
    const float *g = dlogits;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const bs_layer *l = &m->layers[i];
        /* Where the gradient to this layer's input goes: dx for the first
         * layer (or nowhere), else the ping-pong buffer g is not in. */
        float *dinp = i == 0 ? dx : (g == ws->grad_a ? ws->grad_b : ws->grad_a);
        if (l->kind == BS_FLATTEN) {
            if (i == 0 && dx)
                memcpy(dx, g, (size_t)B * l->in_size * sizeof(float));
            continue; /* same floats, another shape */
        }
        if (!dinp && !(dparams && l->weight_size))
            break; /* nothing below needs a gradient */
        if (!dx && !params_below(m, i))
            dinp = NULL; /* only parameter gradients are wanted, none below */
        const float *in = ws->acts[i], *out = ws->acts[i + 1];
        const float *w = m->params + l->weight_off;
        float *dw = dparams ? dparams + l->weight_off : NULL;
        float *db = dparams ? dparams + l->bias_off : NULL;
        size_t n = (size_t)B * l->out_size;
        switch (l->kind) {
        case BS_LINEAR:
            bs_linear_backward(dinp, dw, db, g, in, w, B, (int)l->in_size, l->out_features);
            break;
        case BS_CONV2D: {
            bs_conv_dims d = conv_dims(l);
            bs_conv2d_backward(dinp, dw, db, g, in, w, ws->col, B, &d);
            break;
        }
        case BS_MAXPOOL2D: {
            bs_conv_dims d = conv_dims(l);
            bs_maxpool2d_backward_argmax(dinp, g, ws->argmax[i], B, &d);
            break;
        }
        case BS_RELU:
            bs_relu_backward(dinp, g, out, n);
            break;
        case BS_SIGMOID:
            bs_sigmoid_backward(dinp, g, out, n);
            break;
        case BS_TANH:
            bs_tanh_backward(dinp, g, out, n);
            break;
        case BS_DROPOUT:
            bs_dropout_backward(dinp, g, ws->training && l->p > 0.0f ? ws->masks[i] : NULL,
                                l->p, n);
            break;
        case BS_FLATTEN:
        default: /* graph ops: bs_model_build refuses them */
            break;
        }
        g = dinp;
    }
}

float bs_model_loss(const bs_model *m, bs_workspace *ws, const int *targets, int B)
{
    return bs_softmax_xent_forward(ws->probs, ws->losses, ws->acts[m->n_layers],
                                   targets, B, m->classes);
}

int bs_argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}
