/* analysis — the paper's measurements of a trained model that are not
 * attacks: upper bounds of the Lipschitz constant of every layer and of the
 * whole network (Szegedy et al. §4.3), and the unit analysis of §3 (which
 * images of a dataset maximise one hidden unit, or a random direction, of a
 * layer, and how coherent their labels are).
 *
 * Lipschitz bounds are for the L2 norm, from the input to the logits: the
 * network's bound is the product of its layers' bounds, so that
 * ||f(x) - f(y)||_2 <= product * ||x - y||_2 for any x, y. Per layer:
 *   linear     the largest singular value of W, by power iteration on W^T W
 *   conv2d     max over the 2-D frequencies of the (zero-padded) input grid
 *              of the largest singular value of the OC x C matrix of kernel
 *              DFTs (see bs_lipschitz_conv2d); exact for circular
 *              convolution, an upper bound for the cropped (and strided)
 *              convolution a model computes
 *   maxpool2d  1 for non-overlapping windows (stride >= kernel); otherwise
 *              ceil(kernel/stride), the square root of the largest number
 *              of windows one input can fall in
 *   relu, flatten, dropout (identity at inference), tanh   1
 *   sigmoid    1/4 (its largest slope)
 * Power iteration approaches the largest singular value from below; it
 * stops when the estimate changes by less than BS_LIPSCHITZ_TOL (relative)
 * or after BS_LIPSCHITZ_MAX_ITER steps, and accumulates in double.
 *
 * Beside the bounds, bs_lipschitz_attack measures the ratios the L-BFGS
 * attack's examples actually reach.
 *
 * Unit analysis works on phi_L(x), the output of layer L of the model (see
 * bs_units_layer), a direction v in that space (a basis vector e_i, "a
 * unit", or a random Gaussian direction), and the images of a dataset split
 * ranked by <phi_L(x), v>. The label purity of the top k (the share that
 * has their most frequent label) measures how "semantic" a direction is:
 * the paper's claim is that units are no more so than random directions.
 *
 * Nothing here keeps state; the model is only read. */
#ifndef BS_ANALYSIS_H
#define BS_ANALYSIS_H

#include "core/attack.h" /* the attacks of bs_lipschitz_attack */
#include "core/dataset.h"
#include "core/layers.h"
#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Lipschitz bounds (§4.3) */

#define BS_LIPSCHITZ_TOL 1e-6      /* relative change that ends power iteration */
#define BS_LIPSCHITZ_MAX_ITER 1000 /* power-iteration steps at most */

typedef struct bs_lipschitz_layer {
    double bound;   /* upper bound of ||f_i(x) - f_i(y)||_2 / ||x - y||_2
                     * (add, sub: per input; HUGE_VAL: none, see note) */
    int iterations; /* power-iteration steps taken (for conv2d the most over
                       its frequencies); 0 when the bound is a constant */
    double output;  /* bound of the node's output as a function of the
                     * model's input (HUGE_VAL: none) */
    const char *note; /* why there is no finite bound, or NULL */
} bs_lipschitz_layer;

typedef struct bs_lipschitz {
    int n_layers;                            /* as the model's */
    bs_lipschitz_layer layers[BS_MAX_NODES]; /* same index as bs_model.layers */
    double product; /* the network's bound: its logits' output bound; for a
                     * chain the product of its layers' bounds */
    const char *note; /* why the network has no finite bound, or NULL */
} bs_lipschitz;

/* Bounds every node of m and, node by node, each tensor as a function of
 * the input: a node of one input multiplies its input's bound; add and sub
 * of two tensors that depend on the input add theirs (residual nets); mul
 * and div by a constant multiply by max |c| (max 1/|c|); concat takes the
 * root of the sum of squares; mul of two tensors that depend on the input
 * has no global bound (HUGE_VAL, with a note). Per node: linear, conv2d
 * as above (a conv2d with uneven pads, strides that differ, dilations or
 * groups by power iteration on the operator itself); avgpool2d by Schur's
 * test, sqrt(max column sum x max row sum); global average pooling
 * 1/sqrt(H W); pad with reflect or edge the root of the most copies of one
 * input; leaky_relu max(1,|alpha|); hardsigmoid |alpha|; hardswish 3/2;
 * clip, reshape, softmax 1. seed fixes the power iterations' start
 * vectors. Returns 0, or -1 with a message in err (out of memory). */
int bs_lipschitz_bounds(const bs_model *m, uint64_t seed, bs_lipschitz *out,
                        char *err);

/* The largest singular value of a linear operator A from R^n_in to
 * R^n_out by power iteration on A^T A in double, given A (apply) and A^T
 * (adjoint); it stops when the estimate changes by less than tol
 * (relative) or after BS_LIPSCHITZ_MAX_ITER steps. Returns -1 when out of
 * memory. bs_lipschitz_linear is this with A = W. */
double bs_lipschitz_operator(void (*apply)(void *ctx, double *out, const double *in),
                             void (*adjoint)(void *ctx, double *out, const double *in),
                             void *ctx, size_t n_in, size_t n_out, double tol, uint64_t seed,
                             int *iterations);

/* Largest singular value of weight (OC,C). *iterations (may be NULL) gets
 * the steps taken. Returns -1 when memory runs out. */
double bs_lipschitz_linear(const float *weight, int OC, int C, uint64_t seed,
                           int *iterations);

/* Bound of the conv2d with weight (OC,C,K,K) and geometry d (d->H, d->W,
 * d->pad, d->K, d->C, d->OC are used; bias plays no part). The padded input
 * (H+2pad) x (W+2pad) is the grid: zero-padding is an isometry, the valid
 * cross-correlation on that grid is a crop of the circular one (its windows
 * never wrap), a stride only subsamples that crop, and neither can increase
 * a norm; the circular cross-correlation is block-diagonalised by the 2-D
 * DFT into the OC x C matrices A(u,v)[o][c] = DFT of kernel (o,c) zero-padded
 * to the grid, so its norm is max_{u,v} sigma_max(A(u,v)). Each sigma_max
 * comes from power iteration on the smaller of A^H A and A A^H. Returns -1
 * when memory runs out. */
double bs_lipschitz_conv2d(const float *weight, const bs_conv_dims *d,
                           uint64_t seed, int *iterations);

/* The empirical ratio ||f(x_adv) - f(x)||_2 / ||x_adv - x||_2 of the model's
 * LOGITS (what the bound of bs_lipschitz_bounds covers; softmax would only
 * shrink it). Returns it, or -1 with a message when x_adv == x or memory
 * runs out. */
double bs_lipschitz_ratio(const bs_model *m, const float *x, const float *x_adv,
                          char *err);

/* The ratios the paper's L-BFGS attack (default settings) reaches: each of
 * the first n images of d attacked towards (label+1) mod classes, and
 * bs_lipschitz_ratio of every example found. No ratio can exceed the
 * network's bound; how close they come says how loose the bound is. */
typedef struct bs_lipschitz_empirical {
    int images;         /* attacked: n, or fewer when ctl stopped the run */
    int examples;       /* attacks that reached their target with r != 0 */
    double max_ratio;   /* over the examples; 0 without one */
    double mean_ratio;
    bs_attack_status status; /* DONE, or TIMEOUT / CANCELLED by ctl */
} bs_lipschitz_empirical;

/* ctl (may be NULL) gives the attacks their deadline and cancel flag, and
 * its progress callback is called after each image with (images done, n).
 * Returns 0, or -1 with a message in err. */
int bs_lipschitz_attack(const bs_model *m, const bs_dataset *d, int n,
                        const bs_attack_control *ctl, bs_lipschitz_empirical *out, char *err);

/* ------------------------------------------------------------------------ */
/* Unit analysis (§3) */

#define BS_UNITS_MAX_K 64  /* top images per direction at most */
#define BS_UNITS_BATCH 256 /* images per forward pass */

/* The layer whose output is phi_L: layer itself, except that a linear or
 * conv2d layer directly followed by an activation (relu, sigmoid, tanh)
 * resolves to that activation, so that units are read after their
 * nonlinearity (in fc:100,100, layers 1 and 2 both name the first hidden
 * layer's sigmoid outputs). Returns the index, or -1 with a message when
 * layer is not one of m's. The dimension of phi_L is
 * m->layers[index].out_size. */
int bs_units_layer(const bs_model *m, int layer, char *err);

/* Directions in a space of n floats: the unit vector e_unit, and a standard
 * Gaussian vector drawn from seed and scaled to length 1. */
void bs_units_basis(float *v, size_t n, int unit);
void bs_units_random(float *v, size_t n, uint64_t seed);

/* The top k images of a split for one direction. */
typedef struct bs_units_top {
    int k;
    int indices[BS_UNITS_MAX_K]; /* dataset indices, best first (ties: smaller index) */
    int labels[BS_UNITS_MAX_K];  /* their labels */
    double scores[BS_UNITS_MAX_K]; /* <phi_L(x), v>, accumulated in double */
    int majority;                /* most frequent label among them (the smallest on ties) */
    double purity;               /* share of the k that carry it, in [1/k, 1] */
} bs_units_top;

/* Ranks the images of d by <phi_L(x), v> for each of n_dirs directions
 * (dirs is (n_dirs, dim) with dim the size of phi_L) and fills tops[i] with
 * the top k (1 <= k <= min(BS_UNITS_MAX_K, d->n)) of direction i. One pass
 * over d in batches of BS_UNITS_BATCH. Returns 0, or -1 with a message. */
int bs_units_rank(const bs_model *m, int layer, const bs_dataset *d,
                  const float *dirs, int n_dirs, int k, bs_units_top *tops,
                  char *err);

/* Label purity of a set of k labels; *majority (may be NULL) gets the most
 * frequent label, the smallest on ties. */
double bs_units_purity(const int *labels, int k, int *majority);

/* Mean label purity of the top k for U units against U random directions. */
typedef struct bs_units_summary {
    int layer;            /* resolved layer (bs_units_layer) */
    int dim;              /* size of phi_L */
    int units, k;         /* U and k */
    double unit_mean, unit_std;     /* over e_0 .. e_{U-1} */
    double random_mean, random_std; /* over random directions of seeds seed .. seed+U-1 */
    double chance_mean;   /* over U random k-subsets of the split: the
                             purity that carries no information */
} bs_units_summary;

/* U must be in [1, dim]. Returns 0, or -1 with a message. */
int bs_units_summarise(const bs_model *m, int layer, const bs_dataset *d,
                       int U, int k, uint64_t seed, bs_units_summary *out,
                       char *err);

/* k images of d side by side, one-pixel white gaps between them, as 8-bit
 * pixels (height * width * channels bytes, the channels of a pixel
 * together): ready for an image encoder. */
typedef struct bs_units_grid {
    int width, height, channels;
    uint8_t *pixels; /* owned */
} bs_units_grid;

/* Returns 0, or -1 with a message (bad index, out of memory). */
int bs_units_grid_make(const bs_dataset *d, const int *indices, int k,
                       bs_units_grid *out, char *err);
void bs_units_grid_free(bs_units_grid *g);

#endif
