/* layers — the forward and backward pass of every layer type, as plain
 * functions over caller-owned float buffers.
 *
 * Every layer is a pair `bs_X_forward(out, inp, params..., dims)` and
 * `bs_X_backward(dinp, dparams..., dout, inp or out, params..., dims)`.
 * Tensors are row-major, batch first; images are (B,C,H,W). Weights follow
 * PyTorch's layout (linear (OC,C), conv2d (OC,C,KH,KW)) so that a PyTorch
 * state_dict maps onto them unchanged.
 *
 * Conventions for backward: `dinp` is overwritten (it may be NULL when the
 * gradient to the input is not needed); parameter gradients (`dweight`,
 * `dbias`) are accumulated with += so a caller zeroes them once per step
 * (they may be NULL when only the input gradient is wanted, as in an attack).
 * Nothing here allocates: scratch space comes from the caller. The forward
 * passes and the gradients to the input use the row-stable products of
 * core/gemm.h (a sample's result never depends on the batch around it);
 * the parameter gradients, needed only in training, use CBLAS sgemm, all
 * on the calling thread (linear and conv2d may lend their products to a
 * team, see below). */
#ifndef BS_LAYERS_H
#define BS_LAYERS_H

#include "core/team.h"

#include <stddef.h>
#include <stdint.h>

/* team (linear and conv2d): NULL, or threads among which the products of
 * the forward pass and of the input gradient are split when they are big
 * enough to gain, by output elements (output features or channels, input
 * features or channels, columns): each element's sums are those of one
 * thread, so the results are bit-identical to team NULL. The parameter
 * gradients stay on the calling thread. */

/* linear: inp (B,C), weight (OC,C), bias (OC), out (B,OC): out = inp W^T + b */
void bs_linear_forward(float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int OC, bs_team *team);
void bs_linear_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, int B, int C, int OC, bs_team *team);

/* Geometry of a 2-d convolution or pooling window. */
typedef struct bs_conv_dims {
    int C, H, W;     /* input channels, height, width */
    int OC, OH, OW;  /* output channels, height, width */
    int K;           /* square kernel size */
    int stride, pad; /* stride and zero padding on every side */
    /* General windows: when kh is 0 the square K, stride and pad above
     * apply, with no dilation. Otherwise a kh x kw kernel at strides
     * (sh,sw), dilations (dh,dw), padded pt, pl, pb, pr (top, left,
     * bottom, right). groups (conv2d; 0 or 1: dense) splits the channels:
     * output channel o sees input channels of group o / (OC/groups) only. */
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr;
    int groups;
} bs_conv_dims;

/* Output size of a window of size k, stride s, padding p over n inputs. */
int bs_conv_out_size(int n, int k, int s, int p);

/* The same in general: pads before and after, taps dilation apart. 0 when
 * the window does not fit. */
int bs_window_out_size(int n, int k, int s, int pad_begin, int pad_end, int dilation);

/* Floats of scratch that conv2d needs (one sample's im2col matrix). */
size_t bs_conv2d_scratch(const bs_conv_dims *d);

/* conv2d: inp (B,C,H,W), weight (OC,C/groups,KH,KW), bias (OC) or NULL,
 * out (B,OC,OH,OW). Each sample is unfolded into col (C*KH*KW, OH*OW) and
 * each group's rows multiplied by its weights seen as (OC/groups,
 * C/groups*KH*KW). */
void bs_conv2d_forward(float *out, const float *inp, const float *weight,
                       const float *bias, float *col, int B,
                       const bs_conv_dims *d, bs_team *team);
void bs_conv2d_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, float *col, int B,
                        const bs_conv_dims *d, bs_team *team);

/* maxpool2d: inp (B,C,H,W), out (B,C,OH,OW); d->OC == d->C. The _argmax
 * pair takes general windows (padding never wins: only taps inside the
 * input count); the plain pair a square window without padding.
 * Backward routes each output gradient to the first maximal input of its
 * window. The plain pair finds that input again from inp; the _argmax pair
 * has the forward record it instead: argmax (B,C,OH,OW) holds its offset
 * within its (H,W) plane, and the backward reads it (same result, no
 * second search). */
void bs_maxpool2d_forward(float *out, const float *inp, int B,
                          const bs_conv_dims *d);
void bs_maxpool2d_backward(float *dinp, const float *dout, const float *inp,
                           int B, const bs_conv_dims *d);
void bs_maxpool2d_forward_argmax(float *out, int *argmax, const float *inp,
                                 int B, const bs_conv_dims *d);
void bs_maxpool2d_backward_argmax(float *dinp, const float *dout,
                                  const int *argmax, int B,
                                  const bs_conv_dims *d);

/* avgpool2d: inp (B,C,H,W), out (B,C,OH,OW), general windows of d. The
 * mean of each window's taps inside the input; with include_pad the
 * padded zeros count in the divisor (ONNX count_include_pad). */
void bs_avgpool2d_forward(float *out, const float *inp, int include_pad, int B,
                          const bs_conv_dims *d);
void bs_avgpool2d_backward(float *dinp, const float *dout, int include_pad, int B,
                           const bs_conv_dims *d);

/* global average pooling: inp (B,C,HW), out (B,C) the mean of each plane. */
void bs_global_avgpool_forward(float *out, const float *inp, int B, int C, int HW);
void bs_global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW);

/* Elementwise activations over n floats. Backward takes the forward's
 * OUTPUT (all three derivatives are cheap functions of it). */
void bs_relu_forward(float *out, const float *inp, size_t n);
void bs_relu_backward(float *dinp, const float *dout, const float *out, size_t n);
void bs_sigmoid_forward(float *out, const float *inp, size_t n);
void bs_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
void bs_tanh_forward(float *out, const float *inp, size_t n);
void bs_tanh_backward(float *dinp, const float *dout, const float *out, size_t n);

/* dropout with drop probability p. At inference (mask == NULL) it is the
 * identity. In training, mask (n bytes) says which units survive; the
 * survivors are scaled by 1/(1-p) (inverted dropout). */
void bs_dropout_forward(float *out, const float *inp, const uint8_t *mask,
                        float p, size_t n);
void bs_dropout_backward(float *dinp, const float *dout, const uint8_t *mask,
                         float p, size_t n);

/* Piecewise-linear activations of imported graphs, over n floats.
 * Backward takes the forward's INPUT.
 *   leaky_relu   x < 0 ? alpha x : x
 *   clip         min(max(x, lo), hi)
 *   hardsigmoid  max(0, min(1, alpha x + beta))
 *   hardswish    x max(0, min(1, x/6 + 1/2)) */
void bs_leaky_relu_forward(float *out, const float *inp, float alpha, size_t n);
void bs_leaky_relu_backward(float *dinp, const float *dout, const float *inp, float alpha,
                            size_t n);
void bs_clip_forward(float *out, const float *inp, float lo, float hi, size_t n);
void bs_clip_backward(float *dinp, const float *dout, const float *inp, float lo, float hi,
                      size_t n);
void bs_hardsigmoid_forward(float *out, const float *inp, float alpha, float beta, size_t n);
void bs_hardsigmoid_backward(float *dinp, const float *dout, const float *inp, float alpha,
                             float beta, size_t n);
void bs_hardswish_forward(float *out, const float *inp, size_t n);
void bs_hardswish_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Elementwise binary ops with numpy broadcasting over one sample's dims
 * (up to BS_BCAST_RANK; the batch is not counted). An operand with batch
 * stride 0 (a constant) is the same for every sample. */
#define BS_BCAST_RANK 4

typedef enum bs_binary_op { BS_BIN_ADD, BS_BIN_SUB, BS_BIN_MUL, BS_BIN_DIV } bs_binary_op;

typedef struct bs_bcast {
    int rank;                       /* of the output */
    int dims[BS_BCAST_RANK];        /* the output's dims, left-padded with 1 */
    size_t a_stride[BS_BCAST_RANK]; /* floats between steps of a; 0 where broadcast */
    size_t b_stride[BS_BCAST_RANK];
    size_t a_batch, b_batch;        /* floats per sample; 0 for a constant */
    size_t out_size;                /* floats of the output per sample */
} bs_bcast;

/* Fills g for operands of the given dims (a_const, b_const: constants).
 * Returns -1 when the shapes do not broadcast. */
int bs_bcast_make(bs_bcast *g, const int *a_dims, int a_rank, int a_const,
                  const int *b_dims, int b_rank, int b_const);

/* out (B, g->out_size) = a op b. Backward overwrites da and db (either
 * may be NULL; a constant's must be), each the sum of the output gradients
 * its elements reached: add da = g, db = +-g; mul da = g b, db = g a;
 * div (b a constant) da = g / b. */
void bs_binary_forward(float *out, const float *a, const float *b, bs_binary_op op,
                       const bs_bcast *g, int B);
void bs_binary_backward(float *da, float *db, const float *dout, const float *a,
                        const float *b, bs_binary_op op, const bs_bcast *g, int B);

/* concat of n inputs: each sample of input k is outer blocks of inner[k]
 * floats (inner[k] the product of its dims from the axis on); out's
 * blocks are theirs side by side. Backward splits dout into dins (an
 * entry may be NULL). */
void bs_concat_forward(float *out, const float *const *ins, const size_t *inner, int n,
                       size_t outer, int B);
void bs_concat_backward(float *const *dins, const float *dout, const size_t *inner, int n,
                        size_t outer, int B);

/* pad: inp (B,C,H,W), out (B,C,H+pads[0]+pads[2],W+pads[1]+pads[3]);
 * pads top, left, bottom, right; mode a bs_pad_mode (constant value,
 * reflect without repeating the edge, edge repeating it). bs_pad_source
 * is the input index output index i reads along an axis of n, -1 for the
 * constant. */
int bs_pad_source(int i, int n, int pad_begin, int mode);
void bs_pad_forward(float *out, const float *inp, const int pads[4], int mode, float value,
                    int B, int C, int H, int W);
void bs_pad_backward(float *dinp, const float *dout, const int pads[4], int mode, int B,
                     int C, int H, int W);

/* softmax over the middle axis of (outer, len, inner). Backward takes the
 * forward's output. */
void bs_softmax_forward(float *out, const float *inp, size_t outer, int len, size_t inner);
void bs_softmax_backward(float *dinp, const float *dout, const float *out, size_t outer,
                         int len, size_t inner);

/* softmax cross-entropy: logits (B,V), targets (B) in [0,V).
 * Forward writes probs (B,V) and returns the mean loss over the batch
 * (losses, if not NULL, gets each sample's loss).
 * Backward: dlogits = (probs - onehot(target)) * scale; scale is 1/B for
 * the gradient of the mean. */
float bs_softmax_xent_forward(float *probs, float *losses, const float *logits,
                              const int *targets, int B, int V);
void bs_softmax_xent_backward(float *dlogits, const float *probs,
                              const int *targets, int B, int V, float scale);

#endif
