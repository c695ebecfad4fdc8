/* ops — every op kind of a graph described once: one row per bs_layer_kind
 * with its name, how its output's shape and its parameters follow from its
 * inputs, its forward and backward over a batch, its Lipschitz bound and
 * what it needs of a workspace. Internal to core: model.c builds and runs
 * graphs through the table, analysis.c bounds them; a new op is one row
 * here (and its kernels in layers.c). */
#ifndef BS_OPS_H
#define BS_OPS_H

#include "core/layers.h"
#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

/* A node at run time: the model, the node, its inputs' and output's
 * activations for B samples (a constant input points into the params and
 * has no batch dimension), and the workspace for its scratch. */
typedef struct bs_op_run {
    const bs_model *m;
    const bs_layer *l;
    int node;
    bs_workspace *ws;
    int B;
    const float *in[BS_MAX_INPUTS];
    float *out;
} bs_op_run;

/* How a node's bound combines with its inputs' bounds into the bound of
 * its output as a function of the model's input (bs_lipschitz_bounds). */
typedef enum bs_lip_rule {
    BS_LIP_CHAIN, /* bound x the bound of its non-constant input */
    BS_LIP_SUM,   /* bound x the sum of its non-constant inputs' bounds */
    BS_LIP_RSS,   /* bound x the root of the sum of their squares (concat) */
} bs_lip_rule;

typedef struct bs_op {
    const char *name;
    int min_in, max_in; /* how many inputs it reads */
    int const_in;       /* 1: an input may be a constant (broadcast ops) */
    /* Fills out's rank and dims (size is set by the caller) and l's
     * weight_size and bias_size from the inputs; chain is 1 when the node
     * is a layer of bs_model_build (a (C,1,1) there is the flat (C)).
     * Returns 0, or -1 with the rest of a sentence that starts with the
     * node ("layer 2 (linear) " or "node 'x' (add) ") in why. */
    int (*infer)(bs_layer *l, const bs_tensor *const *in, bs_tensor *out, int chain,
                 char *why);
    void (*forward)(const bs_op_run *r);
    /* din[k] receives input k's gradient (overwritten), or is NULL when it
     * is not wanted; dw and db accumulate the parameter gradients (NULL
     * when not wanted or the op has none). */
    void (*backward)(const bs_op_run *r, const float *dout, float *const *din, float *dw,
                     float *db);
    /* An upper bound of ||f(x) - f(y)||_2 / ||x - y||_2 for the node alone
     * (for one non-constant input; see rule). iterations gets the power
     * steps taken (0 for a constant), note a reason when the bound is
     * HUGE_VAL. Returns -1 when out of memory. */
    double (*lipschitz)(const bs_model *m, const bs_layer *l, uint64_t seed, int *iterations,
                        const char **note);
    bs_lip_rule rule;
    size_t (*scratch)(const bs_model *m, const bs_layer *l); /* floats of ws->col, or NULL */
    int argmax; /* 1: ws->argmax[node] holds an int per output float */
    int mask;   /* 1: ws->masks[node] holds a byte per input float */
} bs_op;

/* The row of kind, or NULL for a kind that is not one. */
const bs_op *bs_op_of(bs_layer_kind kind);

/* The window geometry of a conv2d, maxpool2d or avgpool2d node of m. */
bs_conv_dims bs_op_window(const bs_model *m, const bs_layer *l);

/* (C,H,W) of a tensor for the legacy fields and messages: (n) is (n,1,1),
 * (a,b) (a,b,1), (a,b,c,d) (a*b,c,d). */
void bs_tensor_chw(const bs_tensor *t, int chw[3]);

#endif
