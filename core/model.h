/* model — a classifier: its graph of layers, its parameters, and the
 * workspace in which it runs forward and backward over a batch.
 *
 * A model is a small directed acyclic graph in topological order: nodes
 * (bs_layer) read tensors and write one tensor each; tensor 0 is the input,
 * the last node's output the logits; constants are tensors too. The paper's
 * zoo is the special case of a chain in the manner of PyTorch's
 * nn.Sequential (node i reads tensor i and writes tensor i+1; layer i's
 * parameters are the tensors "i.weight" and "i.bias"), and ONNX files
 * import into the general case (core/onnx.h). All
 * parameters live in one float array, each layer pointing into it, so that
 * an optimiser sees one vector. A model is read-only once built; any number
 * of threads may run it at once, each with its own bs_workspace, which is
 * sized once for a batch size and never allocates afterwards.
 *
 * Architectures come from a spec a person can read (`fc:100,100`, `ae:400`,
 * `cnn:small`, see bs_arch_parse) or from the JSON list stored in a model
 * file's metadata (see model_file.c). */
#ifndef BS_MODEL_H
#define BS_MODEL_H

#include "core/error.h"
#include "core/team.h"

#include <stddef.h>
#include <stdint.h>

#define BS_MAX_LAYERS 64     /* layers of an architecture spec or a model file's list */
#define BS_MAX_NODES 2048    /* nodes of a graph */
#define BS_MAX_TENSORS 4096  /* tensors of a graph, constants included */
#define BS_MAX_RANK 4        /* dimensions of one sample (the batch not counted) */
#define BS_MAX_INPUTS 8      /* inputs of one node (concat) */
#define BS_NAME_LEN 64
#define BS_MAX_META 32
#define BS_MAX_PARAMS (1 << 27) /* 512 MB of float parameters */

typedef enum bs_layer_kind {
    BS_LINEAR,
    BS_CONV2D,
    BS_MAXPOOL2D,
    BS_FLATTEN,
    BS_RELU,
    BS_SIGMOID,
    BS_TANH,
    BS_DROPOUT,
    /* graph ops (ONNX import) */
    BS_AVGPOOL2D,       /* window average; count_include_pad */
    BS_GLOBAL_AVGPOOL,  /* (C,H,W) -> (C,1,1) */
    BS_ADD,             /* in[0] + in[1], numpy broadcasting over one sample's dims */
    BS_SUB,             /* in[0] - in[1] */
    BS_MUL,             /* in[0] * in[1] */
    BS_DIV,             /* in[0] / in[1], in[1] a constant */
    BS_LEAKY_RELU,      /* x < 0 ? alpha x : x */
    BS_CLIP,            /* min(max(x, alpha), beta) (ReLU6: 0, 6) */
    BS_HARDSIGMOID,     /* max(0, min(1, alpha x + beta)) */
    BS_HARDSWISH,       /* x * max(0, min(1, x/6 + 1/2)) */
    BS_CONCAT,          /* n_in inputs along axis */
    BS_PAD,             /* pads[] on H and W of a (C,H,W) tensor; mode, value alpha */
    BS_RESHAPE,         /* the same floats seen as out's shape (Reshape, Flatten, Identity) */
    BS_SOFTMAX,         /* over axis */
} bs_layer_kind;

/* One tensor of a graph, per sample: the batch dimension is not counted.
 * A flat vector of n has rank 1; an image (C,H,W) rank 3. A constant is the
 * same for every sample and broadcasts over the batch. */
typedef struct bs_tensor {
    int rank;                /* 1 .. BS_MAX_RANK */
    int dims[BS_MAX_RANK];
    size_t size;             /* product of dims: floats per sample */
    int constant;            /* 1: stored in bs_model.params at off */
    size_t off;
    char name[BS_NAME_LEN];  /* the value's name in its file, or "" */
} bs_tensor;

typedef enum bs_pad_mode {
    BS_PAD_CONSTANT,
    BS_PAD_REFLECT,
    BS_PAD_EDGE,
} bs_pad_mode;

typedef struct bs_layer {
    bs_layer_kind kind;
    int out_features; /* linear: OC (in features come from the input shape) */
    int out_channels; /* conv2d: OC */
    int kernel;       /* conv2d and maxpool2d: square window */
    int stride;       /* conv2d and maxpool2d */
    int padding;      /* conv2d */
    float p;          /* dropout: drop probability */
    /* Graph: which tensors the node reads and writes. bs_model_build sets
     * a chain; bs_graph_build takes them from its caller. */
    int n_in;
    int in[BS_MAX_INPUTS];
    int out;
    char name[BS_NAME_LEN]; /* the node's name in its file, or "" */
    /* Windows (conv2d, maxpool2d, avgpool2d) in general form. When kernel_h
     * is 0 the square kernel, stride and padding above apply. */
    int kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int pads[4];          /* top, left, bottom, right (windows and pad) */
    int groups;           /* conv2d: 0 or 1 dense; in channels for depthwise */
    int count_include_pad; /* avgpool2d: padded zeros count in the mean */
    int mode;             /* pad: a bs_pad_mode */
    float alpha, beta;    /* leaky_relu alpha; clip min alpha, max beta;
                           * hardsigmoid alpha, beta; pad's constant alpha */
    int axis;             /* concat, softmax: an axis of one sample (0 .. rank-1) */
    int shape_rank;       /* reshape: the output's shape of one sample */
    int shape[BS_MAX_RANK];
    /* Filled in by bs_model_build: */
    int in_shape[3];  /* (C,H,W); a flat vector of n is (n,1,1) */
    int out_shape[3];
    size_t in_size, out_size; /* floats per sample */
    size_t weight_off, bias_off; /* offsets into bs_model.params */
    size_t weight_size, bias_size; /* 0 for layers without parameters */
} bs_layer;

/* One metadata entry of a model file: free-form strings. */
typedef struct bs_meta {
    char *key;
    char *value;
} bs_meta;

typedef struct bs_model {
    int n_layers;         /* nodes */
    bs_layer *layers;     /* n_layers nodes in topological order, owned */
    int n_tensors;
    bs_tensor *tensors;   /* n_tensors, owned; tensors[0] is the input */
    int output;           /* the logits' tensor: the last node's out */
    int input_shape[3];   /* (C,H,W) of one input */
    size_t input_size;    /* C*H*W */
    int classes;          /* output size of the last layer */
    size_t n_params;
    float *params;        /* n_params floats, owned */
    int n_meta;
    bs_meta meta[BS_MAX_META];
} bs_model;

/* Parses an architecture spec for inputs of shape input_shape into layers
 * (kinds and hyper-parameters only; bs_model_build fills shapes).
 *   fc                  softmax regression: flatten, linear(classes)
 *   fc:H1,H2,...        sigmoid MLP with hidden sizes H1, H2, ...
 *   fc:H1,...:relu      the same with relu (or tanh) units
 *   ae:H                autoencoder classifier: flatten, linear(H), sigmoid,
 *                       linear(classes); training pre-trains the encoder
 *   cnn:C1,C2,...:H1,.. conv(5x5, Ci channels), relu, maxpool(2) per block,
 *                       then relu hidden layers Hj, then linear(classes)
 *   cnn:small           cnn:16,32:128
 * Returns 0, or -1 with a message in err. */
int bs_arch_parse(const char *spec, int classes, bs_layer *layers,
                  int *n_layers, char *err);

/* Creates a model from layers: checks that every layer fits the shape it
 * receives, computes shapes and parameter offsets, allocates params (zeroed).
 * Returns NULL with a message in err when the layers do not fit. */
bs_model *bs_model_build(const bs_layer *layers, int n_layers,
                         const int input_shape[3], char *err);
void bs_model_free(bs_model *m);

/* Creates a model from a graph. tensors[0] is the input; constants have
 * constant = 1 and their shapes set; every other tensor is written by
 * exactly one of the nodes, which are in topological order (a node reads
 * only the input, constants and earlier nodes' outputs); the last node's
 * output is the logits. Here each node's output shape is inferred (its op's
 * rules), its parameter sizes and offsets computed, and params allocated
 * zeroed, constants included: the caller then copies weights to
 * params + weight_off / bias_off (linear (OC,IN) over the last dimension,
 * conv2d (OC, C/groups, KH, KW), biases (OC)) and constants to
 * params + tensors[t].off. Only add, sub, mul and div read constants (a
 * constant broadcasts over the batch; div only by one), and never two. The
 * logits may have any shape of at least 2 floats (classes is their size).
 * Returns NULL with a message naming the node ("node 'conv_3' (conv2d)
 * ...") when something does not fit. */
bs_model *bs_graph_build(const bs_layer *nodes, int n_nodes,
                         const bs_tensor *tensors, int n_tensors, char *err);

/* The node whose name or output tensor's name is name; -1 when none. */
int bs_model_find_node(const bs_model *m, const char *name);

/* Initialises weights deterministically from seed (Xavier-uniform for
 * sigmoid/tanh nets, He-uniform before relu) and zeroes biases. */
void bs_model_init(bs_model *m, uint64_t seed);

/* Metadata: set replaces an existing key; get returns NULL when absent. */
int bs_model_set_meta(bs_model *m, const char *key, const char *value);
const char *bs_model_get_meta(const bs_model *m, const char *key);

/* Multiply-adds of one sample's forward pass through m's linear and conv2d
 * layers (a conv2d's weights once per output position): the measure by
 * which the daemon runs small work at once on its HTTP thread. */
size_t bs_model_macs(const bs_model *m);

/* The layer's canonical name ("linear", "conv2d", ...). */
const char *bs_layer_name(bs_layer_kind kind);

/* Workspace: activations of every tensor for up to `batch` samples, a
 * gradient buffer per tensor that needs one, and scratch, all planned here
 * in one allocation; forward and backward allocate nothing. */
typedef struct bs_workspace {
    int batch;              /* capacity in samples */
    int training;           /* dropout active when non-zero */
    float **acts;           /* per tensor: acts[0] input copy; in a chain
                             * acts[i+1] the output of layer i; constants
                             * point into the model's params; a reshape's
                             * output is its input's floats */
    float **grads;          /* per tensor: its gradient buffer in backward
                             * (tensors whose lifetimes in backward do not
                             * meet share one: a chain needs two), NULL for
                             * the input (dx), the logits (dlogits),
                             * constants and a reshape sharing its input's */
    int *act_of, *grad_of;  /* per tensor: the tensor whose activations
                             * and whose gradient buffer it shares (itself
                             * mostly) */
    uint8_t *need, *written; /* per tensor: backward's bookkeeping */
    int n_acc;              /* buffers in acc */
    float *acc[BS_MAX_INPUTS]; /* a node's input gradients that add to one
                             * already written (a tensor read by several
                             * nodes, as in residual nets) */
    uint8_t **masks;        /* per node: dropout masks (training only) */
    int **argmax;           /* per node: maxpool2d's (batch, C,OH,OW) offset
                             * of each window's maximum in its input plane,
                             * written by forward, read by backward */
    float *col;              /* conv2d im2col scratch */
    float *probs;            /* (batch, classes) softmax of the logits */
    float *losses;           /* (batch) per-sample loss */
    int *targets;            /* (batch) scratch for label batches */
    uint64_t rng;            /* dropout mask stream */
    bs_team *team;           /* NULL: forward and backward run on the
                             * calling thread; else they split the
                             * products of big linear and conv2d nodes
                             * (forward and to the input) among its
                             * threads, bit-identical to NULL (see
                             * core/layers.h). Not owned; set by the
                             * owner, bs_workspace_new leaves it NULL */
    void *mem;
} bs_workspace;

bs_workspace *bs_workspace_new(const bs_model *m, int batch);
void bs_workspace_free(bs_workspace *ws);

/* Runs the model on x (B inputs of m->input_size floats, B <= ws->batch)
 * and returns the logits (B, classes), which live in the workspace. */
const float *bs_model_forward(const bs_model *m, bs_workspace *ws,
                              const float *x, int B);

/* Backward from dlogits (B, classes) through the activations the last
 * forward left in ws: the nodes in reverse order, each tensor's gradient
 * the sum of what its readers send (the first writes, later ones add).
 * dparams (n_params) is accumulated into when not NULL; dx (B,
 * input_size) is written when not NULL. */
void bs_model_backward(const bs_model *m, bs_workspace *ws,
                       const float *dlogits, float *dparams, float *dx, int B);

/* Mean softmax cross-entropy of the last forward against targets; fills
 * ws->probs and ws->losses. */
float bs_model_loss(const bs_model *m, bs_workspace *ws, const int *targets,
                    int B);

/* Index of the largest of n values (the first on ties). */
int bs_argmax(const float *v, int n);

#endif
