/* model — architecture specs, building a graph (shapes, parameter layout,
 * checks, through the op table of core/ops.h), initialisation, and the one
 * executor: the batched forward and backward pass over a graph's tensors,
 * of which a chain of layers is the special case. */
#include "core/model.h"
#include "core/error.h"

#include "core/layers.h"
#include "core/ops.h"
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
        if (l->kind == BS_LINEAR) /* once per row: every dimension but the last */
            macs += l->weight_size * (l->out_size / (size_t)l->out_features);
        else if (l->kind == BS_CONV2D)
            macs += l->weight_size * (size_t)l->out_shape[1] * (size_t)l->out_shape[2];
    }
    return macs;
}

const char *bs_layer_name(bs_layer_kind kind)
{
    const bs_op *op = bs_op_of(kind);
    return op ? op->name : "unknown";
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
/* building a model: shapes, checks and parameter layout */

#define MAX_TENSOR_FLOATS ((size_t)1 << 26) /* floats per sample of one tensor */

/* How messages name node i: "layer 2 (linear)" in a chain, else
 * "node 'conv_3' (conv2d)" (or "node 7 (conv2d)" when it has no name). */
static void node_label(char *buf, size_t n, const bs_layer *l, int i, int chain)
{
    const char *op = bs_layer_name(l->kind);
    if (chain)
        snprintf(buf, n, "layer %d (%s)", i, op);
    else if (l->name[0])
        snprintf(buf, n, "node '%s' (%s)", l->name, op);
    else
        snprintf(buf, n, "node %d (%s)", i, op);
}

/* How messages name tensor t: 'its name' or its number. */
static const char *tensor_label(char *buf, size_t n, const bs_model *m, int t)
{
    if (t >= 0 && t < m->n_tensors && m->tensors[t].name[0])
        snprintf(buf, n, "'%s'", m->tensors[t].name);
    else
        snprintf(buf, n, "%d", t);
    return buf;
}

static size_t dims_size(const bs_tensor *t)
{
    size_t n = 1;
    for (int k = 0; k < t->rank; k++)
        n *= (size_t)t->dims[k];
    return n;
}

/* A given tensor's shape (the input's, a constant's): rank 1..4, every
 * dimension positive, not too large; sets size. */
static int check_shape(bs_tensor *t)
{
    if (t->rank < 1 || t->rank > BS_MAX_RANK)
        return -1;
    for (int k = 0; k < t->rank; k++)
        if (t->dims[k] <= 0 || t->dims[k] > (1 << 24))
            return -1;
    t->size = dims_size(t);
    return t->size > MAX_TENSOR_FLOATS ? -1 : 0;
}

static void model_free_parts(bs_model *m)
{
    free(m->layers);
    free(m->tensors);
    free(m);
}

/* A model of n_nodes zeroed nodes over n_tensors zeroed tensors. */
static bs_model *model_new(int n_nodes, int n_tensors, char *err)
{
    bs_model *m = calloc(1, sizeof *m);
    if (m && (!(m->layers = calloc((size_t)n_nodes, sizeof *m->layers)) ||
              !(m->tensors = calloc((size_t)n_tensors, sizeof *m->tensors)))) {
        model_free_parts(m);
        m = NULL;
    }
    if (!m) {
        bs_fail(err, "out of memory");
        return NULL;
    }
    m->n_layers = n_nodes;
    m->n_tensors = n_tensors;
    return m;
}

/* Shapes, checks and parameter offsets of m's nodes over m's tensors, in
 * topological order through the op table; then params. chain: m came from
 * bs_model_build (its messages name layers by number). */
static int layout(bs_model *m, int chain, char *err)
{
    char who[BS_NAME_LEN + 64], why[BS_ERR_LEN], tl[BS_NAME_LEN + 8];
    uint8_t *made = calloc((size_t)m->n_tensors, 1);
    if (!made)
        return bs_fail(err, "out of memory");
    bs_tensor *in0 = &m->tensors[0];
    if (in0->constant || check_shape(in0)) {
        free(made);
        return bs_fail(err, "the input tensor needs a shape of 1 to %d positive dimensions",
                       BS_MAX_RANK);
    }
    made[0] = 1;
    size_t off = 0;
    for (int t = 1; t < m->n_tensors; t++) {
        bs_tensor *c = &m->tensors[t];
        if (!c->constant)
            continue;
        if (check_shape(c)) {
            free(made);
            return bs_fail(err, "constant %s has an invalid shape",
                           tensor_label(tl, sizeof tl, m, t));
        }
        made[t] = 1;
    }
    for (int i = 0; i < m->n_layers; i++) {
        bs_layer *l = &m->layers[i];
        const bs_op *op = bs_op_of(l->kind);
        node_label(who, sizeof who, l, i, chain);
        if (!op) {
            if (chain)
                bs_fail(err, "layer %d has unknown kind %d", i, (int)l->kind);
            else
                bs_fail(err, "node %d has unknown kind %d", i, (int)l->kind);
            goto bad;
        }
        if (l->n_in < op->min_in || l->n_in > op->max_in) {
            bs_fail(err, "%s reads %d inputs, not %d to %d", who, l->n_in, op->min_in,
                    op->max_in);
            goto bad;
        }
        const bs_tensor *ins[BS_MAX_INPUTS];
        for (int k = 0; k < l->n_in; k++) {
            int t = l->in[k];
            if (t < 0 || t >= m->n_tensors || !made[t]) {
                bs_fail(err, "%s reads tensor %s, which no earlier node writes", who,
                        tensor_label(tl, sizeof tl, m, t));
                goto bad;
            }
            if (m->tensors[t].constant && !op->const_in) {
                bs_fail(err, "%s reads constant %s; only add, sub, mul and div take constants",
                        who, tensor_label(tl, sizeof tl, m, t));
                goto bad;
            }
            ins[k] = &m->tensors[t];
        }
        if (l->out <= 0 || l->out >= m->n_tensors || made[l->out]) {
            bs_fail(err, "%s writes tensor %s, which is the input, a constant or written "
                    "before", who, tensor_label(tl, sizeof tl, m, l->out));
            goto bad;
        }
        bs_tensor *o = &m->tensors[l->out];
        o->rank = 0;
        o->constant = 0;
        l->weight_size = l->bias_size = 0;
        if (op->infer(l, ins, o, chain, why)) {
            bs_fail(err, "%s %s", who, why);
            goto bad;
        }
        o->size = dims_size(o);
        if (o->size > MAX_TENSOR_FLOATS) {
            bs_fail(err, "%s output of %zu floats per sample is too large", who, o->size);
            goto bad;
        }
        if (l->weight_size + l->bias_size > BS_MAX_PARAMS - off) {
            bs_fail(err, "%s takes the model past %d parameters", who, BS_MAX_PARAMS);
            goto bad;
        }
        l->weight_off = off;
        off += l->weight_size;
        l->bias_off = off;
        off += l->bias_size;
        bs_tensor_chw(ins[0], l->in_shape);
        bs_tensor_chw(o, l->out_shape);
        l->in_size = ins[0]->size;
        l->out_size = o->size;
        made[l->out] = 1;
    }
    for (int t = 1; t < m->n_tensors; t++) {
        bs_tensor *c = &m->tensors[t];
        if (!made[t]) {
            bs_fail(err, "tensor %s is neither the input, a constant nor a node's output",
                    tensor_label(tl, sizeof tl, m, t));
            goto bad;
        }
        if (!c->constant)
            continue;
        if (c->size > BS_MAX_PARAMS - off) {
            bs_fail(err, "constant %s takes the model past %d parameters",
                    tensor_label(tl, sizeof tl, m, t), BS_MAX_PARAMS);
            goto bad;
        }
        c->off = off;
        off += c->size;
    }
    free(made);
    made = NULL;
    m->output = m->layers[m->n_layers - 1].out;
    const bs_tensor *out = &m->tensors[m->output];
    if (chain ? out->rank != 1 || out->size < 2 : out->size < 2)
        return bs_fail(err, "the last layer must output a flat vector of at least 2 class "
                       "scores");
    m->classes = (int)out->size;
    bs_tensor_chw(in0, m->input_shape);
    m->input_size = in0->size;
    m->n_params = off;
    m->params = calloc(off ? off : 1, sizeof(float));
    if (!m->params)
        return bs_fail(err, "out of memory for %zu parameters", off);
    return 0;
bad:
    free(made);
    return -1;
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
    bs_model *m = model_new(n_layers, n_layers + 1, err);
    if (!m)
        return NULL;
    /* the chain: layer i reads tensor i and writes tensor i+1; a (C,1,1)
     * input is the flat (C) */
    bs_tensor *in0 = &m->tensors[0];
    if (input_shape[1] == 1 && input_shape[2] == 1) {
        in0->rank = 1;
        in0->dims[0] = input_shape[0];
    } else {
        in0->rank = 3;
        memcpy(in0->dims, input_shape, 3 * sizeof *input_shape);
    }
    for (int i = 0; i < n_layers; i++) {
        bs_layer *l = &m->layers[i];
        *l = layers[i];
        l->n_in = 1;
        l->in[0] = i;
        l->out = i + 1;
    }
    if (layout(m, 1, err)) {
        free(m->params);
        model_free_parts(m);
        return NULL;
    }
    return m;
}

bs_model *bs_graph_build(const bs_layer *nodes, int n_nodes,
                         const bs_tensor *tensors, int n_tensors, char *err)
{
    if (n_nodes <= 0 || n_nodes > BS_MAX_NODES) {
        bs_fail(err, "a graph needs 1 to %d nodes, got %d", BS_MAX_NODES, n_nodes);
        return NULL;
    }
    if (n_tensors < 2 || n_tensors > BS_MAX_TENSORS) {
        bs_fail(err, "a graph needs 2 to %d tensors, got %d", BS_MAX_TENSORS, n_tensors);
        return NULL;
    }
    bs_model *m = model_new(n_nodes, n_tensors, err);
    if (!m)
        return NULL;
    memcpy(m->layers, nodes, (size_t)n_nodes * sizeof *nodes);
    memcpy(m->tensors, tensors, (size_t)n_tensors * sizeof *tensors);
    for (int i = 0; i < n_nodes; i++)
        m->layers[i].name[BS_NAME_LEN - 1] = '\0';
    for (int t = 0; t < n_tensors; t++)
        m->tensors[t].name[BS_NAME_LEN - 1] = '\0';
    if (layout(m, 0, err)) {
        free(m->params);
        model_free_parts(m);
        return NULL;
    }
    return m;
}

int bs_model_find_node(const bs_model *m, const char *name)
{
    if (!name || !name[0])
        return -1;
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].name, name))
            return i;
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->tensors[m->layers[i].out].name, name))
            return i;
    return -1;
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
        size_t k2 = l->kind != BS_CONV2D ? 1
                    : l->kernel_h ? (size_t)l->kernel_h * l->kernel_w
                                  : (size_t)l->kernel * l->kernel;
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

static int is_reshape(bs_layer_kind k)
{
    return k == BS_FLATTEN || k == BS_RESHAPE;
}

/* The plan: which tensors share floats. A reshape's output is its input's
 * floats seen in another shape; its gradient shares its input's gradient
 * buffer too when nothing else reads the input (so that no other
 * contribution lands in it) and it is not the logits (whose gradient the
 * caller passes). consumers (n_tensors) gets how many inputs of nodes read
 * each tensor. Returns how many buffers backward needs for gradients added
 * to ones already written (at most the inputs of one node). */
static int plan_sharing(const bs_model *m, int *act_of, int *grad_of, int *consumers)
{
    for (int t = 0; t < m->n_tensors; t++) {
        act_of[t] = grad_of[t] = t;
        consumers[t] = 0;
    }
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i].n_in; k++)
            consumers[m->layers[i].in[k]]++;
    int most = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        if (is_reshape(l->kind)) {
            act_of[l->out] = act_of[l->in[0]];
            if (consumers[l->in[0]] == 1 && l->out != m->output)
                grad_of[l->out] = grad_of[l->in[0]];
        }
        int shared = 0;
        for (int k = 0; k < l->n_in; k++)
            shared += consumers[l->in[k]] > 1 && !m->tensors[l->in[k]].constant;
        most = shared > most ? shared : most;
    }
    return most;
}

/* A tensor's gradient buffer's lifetime in backward, in node indices. */
typedef struct lifetime {
    int t, lo, hi;
} lifetime;

static int later_first(const void *a, const void *b)
{
    const lifetime *x = a, *y = b;
    return x->hi != y->hi ? (x->hi < y->hi ? 1 : -1) : x->t - y->t;
}

/* Gradient buffers by lifetime. Backward uses tensor r's buffer from the
 * last node that reads r (or a reshape sharing it), whose contribution
 * comes first, down to r's producer, which reads the sum. Tensors whose
 * lifetimes do not meet share a slot, as a chain's layers shared two
 * ping-pong buffers. slot (n_tensors) gets each tensor's slot (-1: no
 * buffer of its own), slot_size each slot's floats per sample. Returns
 * the number of slots, or -1 when out of memory. */
static int plan_gradients(const bs_model *m, const int *grad_of, int *slot, size_t *slot_size)
{
    int nt = m->n_tensors, n = 0, slots = 0;
    lifetime *life = malloc((size_t)nt * sizeof *life);
    int *lo = malloc((size_t)nt * sizeof *lo), *hi = malloc((size_t)nt * sizeof *hi);
    int *last = malloc((size_t)nt * sizeof *last); /* per slot: its latest lo */
    if (!life || !lo || !hi || !last) {
        slots = -1;
        goto out;
    }
    for (int t = 0; t < nt; t++)
        lo[t] = hi[t] = slot[t] = -1;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        lo[l->out] = i;
        for (int k = 0; k < l->n_in; k++)
            if (i > hi[grad_of[l->in[k]]])
                hi[grad_of[l->in[k]]] = i;
    }
    for (int t = 1; t < nt; t++)
        if (!m->tensors[t].constant && t != m->output && grad_of[t] == t)
            life[n++] = (lifetime){t, lo[t], hi[t] > lo[t] ? hi[t] : lo[t]};
    /* backward meets them latest first; a slot is free again below the
     * producer of the tensor it last held */
    qsort(life, (size_t)n, sizeof *life, later_first);
    for (int j = 0; j < n; j++) {
        int s = 0;
        while (s < slots && last[s] <= life[j].hi)
            s++;
        if (s == slots)
            slot_size[slots++] = 0;
        last[s] = life[j].lo;
        slot[life[j].t] = s;
        if (m->tensors[life[j].t].size > slot_size[s])
            slot_size[s] = m->tensors[life[j].t].size;
    }
out:
    free(life);
    free(lo);
    free(hi);
    free(last);
    return slots;
}

bs_workspace *bs_workspace_new(const bs_model *m, int batch)
{
    if (batch <= 0)
        return NULL;
    bs_workspace *ws = calloc(1, sizeof *ws);
    size_t nodes = (size_t)m->n_layers, tensors = (size_t)m->n_tensors;
    int *consumers = calloc(tensors, sizeof *consumers), *slot = calloc(tensors, sizeof *slot);
    size_t *slot_size = calloc(tensors, sizeof *slot_size);
    float **slot_at = calloc(tensors, sizeof *slot_at);
    int slots = -1;
    if (!consumers || !slot || !slot_size || !slot_at || !ws ||
        !(ws->acts = calloc(tensors, sizeof *ws->acts)) ||
        !(ws->grads = calloc(tensors, sizeof *ws->grads)) ||
        !(ws->act_of = calloc(tensors, sizeof *ws->act_of)) ||
        !(ws->grad_of = calloc(tensors, sizeof *ws->grad_of)) ||
        !(ws->need = calloc(tensors, 1)) || !(ws->written = calloc(tensors, 1)) ||
        !(ws->masks = calloc(nodes, sizeof *ws->masks)) ||
        !(ws->argmax = calloc(nodes, sizeof *ws->argmax)) ||
        (ws->n_acc = plan_sharing(m, ws->act_of, ws->grad_of, consumers),
         slots = plan_gradients(m, ws->grad_of, slot, slot_size)) < 0) {
        free(consumers);
        free(slot);
        free(slot_size);
        free(slot_at);
        bs_workspace_free(ws);
        return NULL;
    }
    free(consumers);
    size_t B = (size_t)batch, floats = 0, bytes = 0, max_size = 0, col = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const bs_tensor *x = &m->tensors[t];
        if (x->constant)
            continue;
        if (ws->act_of[t] == t)
            floats += round_up(B * x->size);
        max_size = x->size > max_size ? x->size : max_size;
    }
    for (int s = 0; s < slots; s++)
        floats += round_up(B * slot_size[s]);
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        const bs_op *op = bs_op_of(l->kind);
        size_t s = op->scratch ? op->scratch(m, l) : 0;
        col = s > col ? s : col;
        if (op->argmax)
            floats += round_up(B * l->out_size); /* one int per output */
        if (op->mask)
            bytes += round_up(B * l->in_size);
    }
    floats += (size_t)ws->n_acc * round_up(B * max_size) + round_up(col) +
              round_up(B * (size_t)m->classes) + round_up(B) + round_up(B);
    /* aligned_alloc wants a multiple of the alignment */
    size_t total = round_up(floats + bytes / sizeof(float) + ALIGN_FLOATS) * sizeof(float);
    float *mem = aligned_alloc(64, total);
    if (!mem) {
        free(slot);
        free(slot_size);
        free(slot_at);
        bs_workspace_free(ws);
        return NULL;
    }
    memset(mem, 0, total);
    float *p = mem;
    ws->mem = mem;
    ws->batch = batch;
    for (int t = 0; t < m->n_tensors; t++) {
        const bs_tensor *x = &m->tensors[t];
        if (x->constant) {
            ws->acts[t] = m->params + x->off; /* read, never written */
        } else if (ws->act_of[t] == t) {
            ws->acts[t] = p;
            p += round_up(B * x->size);
        } else {
            ws->acts[t] = ws->acts[ws->act_of[t]]; /* same floats, another shape */
        }
    }
    for (int s = 0; s < slots; s++) {
        slot_at[s] = p;
        p += round_up(B * slot_size[s]);
    }
    for (int t = 0; t < m->n_tensors; t++)
        ws->grads[t] = slot[t] >= 0 ? slot_at[slot[t]] : NULL;
    free(slot);
    free(slot_size);
    free(slot_at);
    for (int j = 0; j < ws->n_acc; j++) {
        ws->acc[j] = p;
        p += round_up(B * max_size);
    }
    ws->col = p;
    p += round_up(col);
    ws->probs = p;
    p += round_up(B * (size_t)m->classes);
    ws->losses = p;
    p += round_up(B);
    ws->targets = (int *)p;
    p += round_up(B);
    for (int i = 0; i < m->n_layers; i++)
        if (bs_op_of(m->layers[i].kind)->argmax) {
            ws->argmax[i] = (int *)p;
            p += round_up(B * m->layers[i].out_size);
        }
    uint8_t *q = (uint8_t *)p;
    for (int i = 0; i < m->n_layers; i++)
        if (bs_op_of(m->layers[i].kind)->mask) {
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
    free(ws->grads);
    free(ws->act_of);
    free(ws->grad_of);
    free(ws->need);
    free(ws->written);
    free(ws->masks);
    free(ws->argmax);
    free(ws);
}

/* ------------------------------------------------------------------------ */
/* forward and backward: every node in order over ws->acts, through its op */

static void node_run(bs_op_run *r, const bs_model *m, bs_workspace *ws, int i, int B)
{
    const bs_layer *l = &m->layers[i];
    *r = (bs_op_run){.m = m, .l = l, .node = i, .ws = ws, .B = B, .out = ws->acts[l->out]};
    for (int k = 0; k < l->n_in; k++)
        r->in[k] = ws->acts[l->in[k]];
}

const float *bs_model_forward(const bs_model *m, bs_workspace *ws,
                              const float *x, int B)
{
    memcpy(ws->acts[0], x, (size_t)B * m->input_size * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        bs_op_run r;
        node_run(&r, m, ws, i, B);
        bs_op_of(m->layers[i].kind)->forward(&r);
    }
    return ws->acts[m->output];
}

/* Tensor t's gradient buffer in this backward: dx for the input (and what
 * shares it), dlogits for the logits, else the workspace's. */
static float *grad_of(const bs_model *m, bs_workspace *ws, int t, float *dx,
                      const float *dlogits)
{
    int root = ws->grad_of[t];
    if (root == 0)
        return dx;
    if (root == m->output)
        return (float *)dlogits; /* only read: nothing reads the logits */
    return ws->grads[root];
}

void bs_model_backward(const bs_model *m, bs_workspace *ws,
                       const float *dlogits, float *dparams, float *dx, int B)
{
    /* need[t]: t's gradient is wanted, by dx or by parameters below it */
    memset(ws->need, 0, (size_t)m->n_tensors);
    ws->need[0] = dx != NULL;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        int need = dparams && l->weight_size;
        for (int k = 0; k < l->n_in; k++)
            need |= ws->need[l->in[k]];
        ws->need[l->out] = (uint8_t)need;
    }
    /* written[t]: t's gradient buffer holds a first contribution; later
     * ones (t read by several nodes) go through ws->acc and are added */
    memset(ws->written, 0, (size_t)m->n_tensors);
    ws->written[m->output] = 1;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const bs_layer *l = &m->layers[i];
        if (!ws->need[l->out])
            continue;
        size_t out_n = (size_t)B * m->tensors[l->out].size;
        float *dout = grad_of(m, ws, l->out, dx, dlogits);
        if (!ws->written[l->out]) { /* nothing read it: its gradient is 0 */
            memset(dout, 0, out_n * sizeof(float));
            ws->written[l->out] = 1;
        }
        if (ws->grad_of[l->out] != l->out && ws->grad_of[l->out] == ws->grad_of[l->in[0]]) {
            ws->written[l->in[0]] = 1; /* a reshape sharing its input's gradient */
            continue;
        }
        float *din[BS_MAX_INPUTS];
        int slot[BS_MAX_INPUTS], n_acc = 0;
        for (int k = 0; k < l->n_in; k++) {
            int t = l->in[k], again = 0;
            slot[k] = -1;
            din[k] = NULL;
            if (!ws->need[t])
                continue;
            for (int j = 0; j < k; j++)
                again |= l->in[j] == t;
            if (ws->written[t] || again) {
                slot[k] = n_acc;
                din[k] = ws->acc[n_acc++];
            } else {
                din[k] = grad_of(m, ws, t, dx, dlogits);
            }
        }
        bs_op_run r;
        node_run(&r, m, ws, i, B);
        float *dw = dparams && l->weight_size ? dparams + l->weight_off : NULL;
        float *db = dparams && l->bias_size ? dparams + l->bias_off : NULL;
        bs_op_of(l->kind)->backward(&r, dout, din, dw, db);
        for (int k = 0; k < l->n_in; k++) {
            int t = l->in[k];
            if (!din[k])
                continue;
            if (slot[k] < 0) {
                ws->written[t] = 1;
                continue;
            }
            float *g = grad_of(m, ws, t, dx, dlogits);
            size_t n = (size_t)B * m->tensors[t].size;
            for (size_t j = 0; j < n; j++)
                g[j] += din[k][j];
        }
    }
}

float bs_model_loss(const bs_model *m, bs_workspace *ws, const int *targets, int B)
{
    return bs_softmax_xent_forward(ws->probs, ws->losses, ws->acts[m->output],
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
