/* evaluate — the paper's Table 1-3 measurements over a slice of a dataset:
 * adversarial examples made for every model, their minimum distortion, and
 * the error rate of every model on every model's examples (transfer), with
 * Gaussian-noise baselines and the examples' perturbations "magnified" to a
 * fixed distortion.
 *
 * The same function serves `blindspot reproduce` and the daemon's
 * POST /v1/evaluations; for the same models, slice, parameters and seed it
 * gives the same numbers, however many threads run it.
 *
 * An evaluation also runs in shards: bs_evaluate_images measures a part of
 * the slice's images into their per-image records (bs_eval_images), each
 * image with the target and noise the whole run draws for it, and
 * bs_eval_reduce makes the tables from the records of every image, summed
 * in image order. So shards run anywhere and merged give the numbers of one
 * run, bit for bit: bs_evaluate_transfer is one shard and its reduction. */
#ifndef BS_EVALUATE_H
#define BS_EVALUATE_H

#include "core/attack.h"
#include "core/dataset.h"
#include "core/model.h"

#define BS_EVAL_MAX_MODELS 32
#define BS_EVAL_MAX_NOISE 4

typedef struct bs_eval_config {
    int first, n;            /* the slice: images first .. first+n-1 */
    uint64_t seed;           /* targets (uniform over labels != the true one) and noise */
    bs_attack_params params; /* the attack (lbfgs by default) */
    int n_noise;             /* Gaussian-noise rows */
    double noise[BS_EVAL_MAX_NOISE]; /* their standard deviations (0.1, 0.3) */
    double magnify;          /* > 0: also measure with each perturbation scaled
                                to this distortion (0.1 in Table 3) */
    int threads;             /* attacks run on this many threads (>= 1) */
} bs_eval_config;

/* Defaults: first 0, n 100, seed 1, lbfgs defaults, noise 0.1 and 0.3,
 * magnify 0.1, 1 thread. */
bs_eval_config bs_eval_defaults(void);

typedef struct bs_eval_result {
    int n_models, n;               /* models and images */
    /* per model i (Table 1) */
    double test_error[BS_EVAL_MAX_MODELS];   /* on the slice's clean images */
    int successes[BS_EVAL_MAX_MODELS];       /* attacks that reached the target */
    double mean_distortion[BS_EVAL_MAX_MODELS]; /* over the successes */
    /* transfer (Tables 2 and 3): error[i][j] = error rate of model j on the
     * successful adversarial examples made for model i (the diagonal is
     * 1 by construction); magnified[i][j] the same after scaling each
     * perturbation to config.magnify distortion */
    double error[BS_EVAL_MAX_MODELS][BS_EVAL_MAX_MODELS];
    double magnified[BS_EVAL_MAX_MODELS][BS_EVAL_MAX_MODELS];
    /* noise rows: noise_error[s][j] = error rate of model j on clean images
     * plus N(0, noise[s]^2), clamped to [0,1] */
    double noise_error[BS_EVAL_MAX_NOISE][BS_EVAL_MAX_MODELS];
    double noise_distortion[BS_EVAL_MAX_NOISE]; /* their mean distortion */
    /* the largest ||f(x+r)-f(x)|| / ||r|| (logits) per model over its examples */
    double max_ratio[BS_EVAL_MAX_MODELS];
    bs_attack_status status;       /* done, or timeout/cancelled part-way */
} bs_eval_result;

/* What is measured of each image of the slice, the exact sufficient
 * statistics of the tables. Arrays are (n, ...) with the image first, so
 * that a shard's images are one block of rows; M is n_models, S n_noise. */
typedef struct bs_eval_images {
    int n_models, n_noise, n;
    unsigned char *clean_wrong;     /* (n,M): model j misclassifies the clean image */
    unsigned char *ok;              /* (n,M): the attack with model i reached its target */
    double *distortion;             /* (n,M): that attack's distortion (0 when stopped) */
    double *ratio;                  /* (n,M): ||f(x+r)-f(x)|| / ||r|| when ok and r != 0,
                                       else 0 */
    unsigned char *adv_wrong;       /* (n,M,M): [k][i][j] model j misclassifies the
                                       example made for model i */
    unsigned char *magnified_wrong; /* (n,M,M): the same magnified (0 when magnify is 0) */
    double *noise_distortion;       /* (n,S): distortion of the noisy image of row s */
    unsigned char *noise_wrong;     /* (n,S,M): model j misclassifies it */
} bs_eval_images;

/* Records for n images of n_models models and n_noise noise rows, zeroed;
 * NULL when out of memory. */
bs_eval_images *bs_eval_images_new(int n_models, int n_noise, int n);
void bs_eval_images_free(bs_eval_images *im);

/* Shard index of count (0 <= index < count): images lo .. hi-1 of a slice
 * of n, the index-th of count nearly equal blocks in order (empty when
 * count > n). */
void bs_eval_shard_range(int n, int index, int count, int *lo, int *hi);

/* Called with the control's ctx once the records of images lo .. hi-1 of
 * the slice are complete (every attack on them ran to its end; not called
 * for images whose attacks were stopped), from the thread that called
 * bs_evaluate_images. */
typedef void (*bs_eval_measured_fn)(void *ctx, int lo, int hi);

/* Runs the measurements. models must all take d's inputs. ctl (may be
 * NULL) stops the attacks, and its progress is called after every attack
 * (done of total: n_models*n), from the attack threads one at a time; the
 * attacks themselves report nothing. Each model's adversarial images
 * (n_models*n*input_size floats, NaN-free; x itself where the attack
 * failed) are written to adv_out when it is not NULL, and success flags to
 * ok_out (n_models*n). Returns 0, or -1 with a message. */
int bs_evaluate_transfer(const bs_model *const *models, int n_models,
                         const bs_dataset *d, const bs_eval_config *cfg,
                         const bs_control *ctl, bs_eval_result *out, float *adv_out,
                         int *ok_out, char *err);

/* 0 when models, d and cfg make an evaluation, else -1 with a message. */
int bs_evaluate_check(const bs_model *const *models, int n_models, const bs_dataset *d,
                      const bs_eval_config *cfg, char *err);

/* One shard: measures images lo .. hi-1 of cfg's slice into their rows of im
 * (made for n_models, cfg->n_noise and cfg->n), as bs_evaluate_transfer
 * does; adv_out and ok_out as there (their rows of these images). ctl's
 * progress counts the shard's attacks, n_models*(hi-lo). With measured
 * (optional; then ctl is not NULL) the images are attacked cfg->threads at a time,
 * and measured says when each such block's records are complete: the
 * tables of the images measured so far can be made while the rest run.
 * Without it the threads take the shard's attacks as they come. *status is done, or
 * timeout/cancelled when ctl stopped attacks (their records then say
 * failed). Threads that call it for disjoint ranges of one im may run at
 * once. Returns 0, or -1 with a message. */
int bs_evaluate_images(const bs_model *const *models, int n_models, const bs_dataset *d,
                       const bs_eval_config *cfg, int lo, int hi, const bs_control *ctl,
                       bs_eval_measured_fn measured, bs_eval_images *im, float *adv_out,
                       int *ok_out, bs_attack_status *status, char *err);

/* The tables from the records of every image of the slice (im->n of them),
 * with cfg's magnify; out->status is status. */
void bs_eval_reduce(const bs_eval_images *im, const bs_eval_config *cfg,
                    bs_attack_status status, bs_eval_result *out);

/* The same from the images k with measured[k] set alone (measured: im->n
 * flags; at least one set), out->n their number: summed in image order, so
 * with every flag set it is bs_eval_reduce's result, bit for bit. */
void bs_eval_reduce_measured(const bs_eval_images *im, const unsigned char *measured,
                             const bs_eval_config *cfg, bs_attack_status status,
                             bs_eval_result *out);

/* The status of work made of parts that ended with a and b: cancelled over
 * timeout over done. */
bs_attack_status bs_eval_status_join(bs_attack_status a, bs_attack_status b);

#endif
