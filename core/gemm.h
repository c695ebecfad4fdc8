/* gemm — the matrix products of the forward pass and of the gradient to a
 * layer's input, written so that every output element is computed by the
 * same sequence of operations however many rows the product has.
 *
 * Why not cblas_sgemm here: OpenBLAS picks its kernel by the matrix sizes,
 * so a row's result can change in the last bit with the number of rows
 * beside it. An attack on several targets at once must give bit for bit
 * what one target alone gives. These kernels block rows and columns only to
 * reuse loaded values; the arithmetic of one element never depends on the
 * blocking, so results are row-stable (and the same on every thread).
 * The same holds for columns: a product cut into column ranges, each range
 * a call of its own (on another thread, say), gives the bits of one call.
 * On x86-64 with AVX2 and FMA they run register-blocked FMA kernels, else a
 * portable twin (core/simd.h). Matrices are row-major with leading
 * dimensions (the distance between rows, in floats). Nothing allocates. */
#ifndef BS_GEMM_H
#define BS_GEMM_H

/* C (M,N) = A (M,K) @ B^T, B stored (N,K), plus bias[j] on column j (bias
 * may be NULL): each element is one dot product of two contiguous rows.
 * The linear layer's forward pass (A the batch, B the weight). */
void bs_gemm_nt(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                const float *bias, int M, int N, int K);

/* C (M,N) = A (M,K) @ B (K,N) plus init[i] on row i (init may be NULL):
 * each row of C is the rows of B summed in order k = 0..K-1, weighted by
 * A's row. With trans_a, A is stored transposed, (K,M), and read as such.
 * The linear layer's input gradient (A the output gradient, B the weight)
 * and both products of conv2d (forward: A the weight, B the im2col matrix;
 * input gradient: A the weight read transposed, B the output gradient). */
void bs_gemm_nn(float *C, int ldc, const float *A, int lda, int trans_a, const float *B,
                int ldb, const float *init, int M, int N, int K);

/* One sample of a conv2d with stride 1 and no padding: input (C,H,W),
 * weight (OC,C,K,K), output (OC,OH,OW) with OH = H-K+1, OW = W-K+1. */
typedef struct bs_gemm_conv {
    int C, H, W, OC, OH, OW, K;
} bs_gemm_conv;

/* The conv2d products without an unfolded matrix: the kernels read the
 * input (forward) and write the input gradient (backward) in place of the
 * im2col matrix. Forward: out = bias + weight @ im2col(in), each element
 * in the same sequence as bs_gemm_nn gives, for output channels lo..hi-1.
 * Backward: dinp = col2im(W^T @ dout), overwritten, for the planes of
 * input channels lo..hi-1 (each pixel's terms in the same order however
 * the channels are split). So disjoint ranges may run on several threads
 * and give the bits of one call over all. Both return 0, doing nothing,
 * where only the portable path runs: the caller then unfolds and uses
 * bs_gemm_nn. */
int bs_gemm_conv_forward(float *out, const float *in, const float *weight, const float *bias,
                         const bs_gemm_conv *g, int lo, int hi);
int bs_gemm_conv_backward(float *dinp, const float *dout, const float *weight,
                          const bs_gemm_conv *g, int lo, int hi);
/* 1 where the two above run (they return 1), 0 where they decline. */
int bs_gemm_conv_direct(void);

/* Set to 1 to run the portable twins on any machine (for tests that
 * check both paths); 0 by default. Set it before threads start. */
extern int bs_gemm_portable;

#endif
