/* adversarial — adversarial training (Szegedy et al. §4.1): the model is
 * trained with minibatches in which a share of the examples is replaced by
 * adversarial examples of training images, made against the model as it is
 * being trained and kept with their true labels.
 *
 * The adversarial examples come from a pool: pool_size training images
 * drawn at random, each attacked by bs_attack_run towards a random label
 * other than its own; those the model then misclassifies are kept. The pool
 * is remade at the start of every epoch (or every `refresh` minibatches)
 * once the warm-up epochs are over, and read round-robin in a shuffled
 * order. Everything else is bs_train's (SGD, weight decay, learning-rate
 * schedule, shuffling): this module only rewrites its minibatches through
 * bs_train_config.batch_fn. The same model, data, configurations and seed
 * give the same parameters. */
#ifndef BS_ADVERSARIAL_H
#define BS_ADVERSARIAL_H

#include "core/attack.h"
#include "core/dataset.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/train.h"

#include <stddef.h>

typedef struct bs_advtrain_config {
    bs_attack_params attack; /* the pool's attack: method and budget */
    double fraction;   /* share of every minibatch taken from the pool, in [0,1] */
    int pool_size;     /* training images attacked per refresh, >= 1 */
    int refresh;       /* minibatches between refreshes; 0: every epoch */
    int warmup_epochs; /* plain epochs before the first pool, >= 0 */
} bs_advtrain_config;

/* Defaults: fraction 0.5, pool 1000, refresh every epoch, 1 warm-up epoch,
 * the method's attack defaults with a small budget for lbfgs
 * (search_steps 3, max_iterations 50). */
bs_advtrain_config bs_advtrain_defaults(bs_attack_method method);

/* Checks a configuration; -1 with a message naming the bad field. */
int bs_advtrain_check(const bs_advtrain_config *c, char *err);

/* Adversarial examples with their true labels. */
typedef struct bs_advtrain_pool {
    int capacity;      /* room for this many examples */
    int n;             /* examples held */
    size_t input_size; /* floats per example */
    float *images;     /* (n, input_size) */
    int *labels;       /* (n) true labels */
    int *sources;      /* (n) training-set index each example was made from */
    int attempted;     /* attacks run by the last refresh */
    double distortion; /* sum of the held examples' distortions */
} bs_advtrain_pool;

/* Allocates room for capacity examples of input_size floats; 0 or -1. */
int bs_advtrain_pool_init(bs_advtrain_pool *p, int capacity, size_t input_size,
                          char *err);
void bs_advtrain_pool_free(bs_advtrain_pool *p);

/* Empties the pool and fills it from min(capacity, d->n) distinct training
 * images of d drawn with rng: each is attacked on m towards a random label
 * other than its own, and kept when m labels the returned image otherwise
 * than the truth. Returns 0, or -1 with a message when an attack request
 * fails. */
int bs_advtrain_pool_refresh(bs_advtrain_pool *p, const bs_model *m,
                             const bs_dataset *d, const bs_attack_params *attack,
                             bs_rng *rng, char *err);

/* What the pool did over a whole training run. */
typedef struct bs_advtrain_stats {
    int refreshes;          /* pools made */
    long attempted;         /* attacks run */
    long made;              /* adversarial examples kept */
    long used;              /* minibatch slots filled from the pool */
    double mean_distortion; /* of the examples kept, the paper's measure */
    double attack_seconds;  /* time spent making pools */
} bs_advtrain_stats;

/* Trains m on d as bs_train does (cfg->batch_fn must be NULL: it is this
 * module's), with adversarial minibatches per adv. progress is bs_train's.
 * stats may be NULL. Returns 0, or -1 with a message. */
int bs_advtrain(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
                const bs_advtrain_config *adv, bs_train_progress_fn progress,
                void *ctx, bs_advtrain_stats *stats, char *err);

#endif
