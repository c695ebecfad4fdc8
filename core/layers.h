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
 * on the calling thread. */
#ifndef BS_LAYERS_H
#define BS_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* linear: inp (B,C), weight (OC,C), bias (OC), out (B,OC): out = inp W^T + b */
void bs_linear_forward(float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int OC);
void bs_linear_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, int B, int C, int OC);

/* Geometry of a 2-d convolution or pooling window. */
typedef struct bs_conv_dims {
    int C, H, W;     /* input channels, height, width */
    int OC, OH, OW;  /* output channels, height, width */
    int K;           /* square kernel size */
    int stride, pad; /* stride and zero padding on every side */
} bs_conv_dims;

/* Output size of a window of size k, stride s, padding p over n inputs. */
int bs_conv_out_size(int n, int k, int s, int p);

/* Floats of scratch that conv2d needs (one sample's im2col matrix). */
size_t bs_conv2d_scratch(const bs_conv_dims *d);

/* conv2d: inp (B,C,H,W), weight (OC,C,K,K), bias (OC), out (B,OC,OH,OW).
 * Each sample is unfolded into col (C*K*K, OH*OW) and multiplied by the
 * weight seen as (OC, C*K*K). */
void bs_conv2d_forward(float *out, const float *inp, const float *weight,
                       const float *bias, float *col, int B,
                       const bs_conv_dims *d);
void bs_conv2d_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp,
                        const float *weight, float *col, int B,
                        const bs_conv_dims *d);

/* maxpool2d: inp (B,C,H,W), out (B,C,OH,OW); d->OC == d->C, no padding.
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
