/* model — a sequential classifier: its architecture, its parameters, and the
 * workspace in which it runs forward and backward over a batch.
 *
 * A model is a list of layers in the manner of PyTorch's nn.Sequential
 * (layer i's parameters are the tensors "i.weight" and "i.bias"). All
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

#include <stddef.h>
#include <stdint.h>

#define BS_MAX_LAYERS 64
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
} bs_layer_kind;

typedef struct bs_layer {
    bs_layer_kind kind;
    int out_features; /* linear: OC (in features come from the input shape) */
    int out_channels; /* conv2d: OC */
    int kernel;       /* conv2d and maxpool2d: square window */
    int stride;       /* conv2d and maxpool2d */
    int padding;      /* conv2d */
    float p;          /* dropout: drop probability */
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
    int n_layers;
    bs_layer layers[BS_MAX_LAYERS];
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

/* Workspace: activations of every layer for up to `batch` samples, gradient
 * buffers and scratch. One allocation, made here. */
typedef struct bs_workspace {
    int batch;              /* capacity in samples */
    int training;           /* dropout active when non-zero */
    float *acts[BS_MAX_LAYERS + 1]; /* acts[0] input copy, acts[i+1] output of layer i */
    uint8_t *masks[BS_MAX_LAYERS];  /* dropout masks (training only) */
    int *argmax[BS_MAX_LAYERS];     /* maxpool2d: (batch, C,OH,OW) offset of each
                                     * window's maximum in its input plane,
                                     * written by forward, read by backward */
    float *grad_a, *grad_b;  /* ping-pong gradient buffers */
    float *col;              /* conv2d im2col scratch */
    float *probs;            /* (batch, classes) softmax of the logits */
    float *losses;           /* (batch) per-sample loss */
    int *targets;            /* (batch) scratch for label batches */
    uint64_t rng;            /* dropout mask stream */
    void *mem;
} bs_workspace;

bs_workspace *bs_workspace_new(const bs_model *m, int batch);
void bs_workspace_free(bs_workspace *ws);

/* Runs the model on x (B inputs of m->input_size floats, B <= ws->batch)
 * and returns the logits (B, classes), which live in the workspace. */
const float *bs_model_forward(const bs_model *m, bs_workspace *ws,
                              const float *x, int B);

/* Backward from dlogits (B, classes) through the activations the last
 * forward left in ws. dparams (n_params) is accumulated into when not
 * NULL; dx (B, input_size) is written when not NULL. */
void bs_model_backward(const bs_model *m, bs_workspace *ws,
                       const float *dlogits, float *dparams, float *dx, int B);

/* Mean softmax cross-entropy of the last forward against targets; fills
 * ws->probs and ws->losses. */
float bs_model_loss(const bs_model *m, bs_workspace *ws, const int *targets,
                    int B);

/* Index of the largest of n values (the first on ties). */
int bs_argmax(const float *v, int n);

#endif
