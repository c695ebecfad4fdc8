/* train — minibatch SGD with momentum and L2 weight decay, autoencoder
 * pre-training, and evaluation of a classifier on a dataset.
 *
 * Training is deterministic: the same model, data, configuration and seed
 * give the same parameters bit for bit on the same build and machine
 * (CBLAS runs on the calling thread only). Nothing here prints; progress
 * reaches the caller through a callback. */
#ifndef BS_TRAIN_H
#define BS_TRAIN_H

#include "core/dataset.h"
#include "core/model.h"

#include <stdint.h>

/* Called before every minibatch of the "train" phase with its nb inputs x
 * (nb * input_size floats) and labels, which it may rewrite in place, and the
 * model as trained so far; epoch is 1-based, step 0-based within the epoch.
 * A non-zero return stops training with the message it wrote to err. */
typedef int (*bs_train_batch_fn)(void *ctx, const bs_model *m, float *x, int *labels,
                                 int nb, int epoch, int step, char *err);

typedef struct bs_train_config {
    int epochs;          /* passes over the training set */
    int batch;           /* minibatch size */
    float lr;            /* initial learning rate; decays to 0 on a cosine */
    float momentum;      /* heavy-ball momentum (PyTorch's convention) */
    float lambda;        /* L2 weight decay: adds lambda/2 * ||W||^2 over weights */
    uint64_t seed;       /* initialisation, shuffling and dropout */
    int pretrain_epochs; /* > 0: pre-train the first hidden layer as a sigmoid
                            autoencoder (input -> code -> input) first */
    bs_train_batch_fn batch_fn; /* NULL: minibatches as drawn (default) */
    void *batch_ctx;            /* passed to batch_fn */
} bs_train_config;

/* Defaults: 20 epochs, batch 64, lr 0.1, momentum 0.9, lambda 0, seed 1. */
bs_train_config bs_train_defaults(void);

/* What the progress callback sees: called every few steps and at the end of
 * every epoch (end_of_epoch set). */
typedef struct bs_train_progress {
    const char *phase;   /* "pretrain" or "train" */
    int epoch, epochs;   /* 1-based epoch of this phase */
    int step, steps;     /* minibatch within the epoch */
    float loss;          /* mean loss of this epoch so far */
    float error;         /* training error of this epoch so far (train phase) */
    double fraction;     /* of all training work, both phases, in [0,1] */
    int end_of_epoch;
} bs_train_progress;

typedef void (*bs_train_progress_fn)(void *ctx, const bs_train_progress *p);

/* Trains m in place on d (its parameters are initialised from cfg->seed
 * first). Returns 0, or -1 with a message in err. */
int bs_train(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
             bs_train_progress_fn progress, void *ctx, char *err);

/* Error rate of m on d in [0,1]; when confusion is not NULL it receives the
 * (classes x classes) counts, row = true label, column = prediction.
 * Returns -1 when the model and the dataset do not fit each other. */
double bs_evaluate(const bs_model *m, const bs_dataset *d, int *confusion,
                   char *err);

#endif
