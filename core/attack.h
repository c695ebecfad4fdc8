/* attack — targeted adversarial examples: given a model, an image x in
 * [0,1]^n and target labels, find for each target a small perturbation r
 * such that the model calls x+r the target.
 *
 * One entry point, bs_attack_run, serves the command line and the daemon.
 * Methods (one row each in bs_attack_methods, which help texts, parsing and
 * api/openapi.yaml's method enum follow):
 *   lbfgs    the paper's (Szegedy et al. §4.1): minimise
 *            c*||r||_2^2 + xent(f(x+r), target) (or c*||r||_1) over the box
 *            x+r in [0,1]^n with L-BFGS-B 3.0, and search for the
 *            LARGEST c that still succeeds (the smallest r).
 *   adam-l1  the seed's reproduction: Adam on c*||r||_1 + xent(f(clamp(x+r))).
 *   fgsm, pgd (Linf or L2), cw-l2   baselines, each searching the smallest
 *            budget (eps, or c for Carlini-Wagner) that succeeds.
 * Several targets are attacked together: their model evaluations share one
 * batched forward/backward pass.
 *
 * The returned image is the one an 8-bit PNG holds: rounded to the grid
 * k/255 and re-checked (params.quantize); if rounding undoes the attack the
 * search continues from the rounded point with steps on the grid.
 *
 * A target that is already the model's label for x is answered at once with
 * status already_target: no search, the image x itself, zero norms, and
 * success 0, since no perturbation moved the model's answer.
 *
 * The model is only read. A call's buffers and model workspace come from
 * the caller's bs_scratch (core/scratch.h), one per thread, so calls on
 * several threads at once give the same results as one after another, and
 * a thread's calls after its first allocate nothing but their results'
 * images. Between model evaluations the call checks its bs_control
 * (core/control.h) and, past the deadline or once cancelled, returns the
 * best result found so far with status timeout or cancelled. */
#ifndef BS_ATTACK_H
#define BS_ATTACK_H

#include "core/control.h"
#include "core/error.h"
#include "core/model.h"
#include "core/scratch.h"

#include <stddef.h>
#include <stdint.h>

typedef enum bs_attack_method {
    BS_ATTACK_LBFGS,
    BS_ATTACK_ADAM_L1,
    BS_ATTACK_FGSM,
    BS_ATTACK_PGD,
    BS_ATTACK_CW_L2,
} bs_attack_method;

/* How a target's search ended. A target the model already gives for x is
 * not searched at all: its result is x itself, not a success. */
typedef enum bs_attack_status {
    BS_ATTACK_DONE,
    BS_ATTACK_TIMEOUT,
    BS_ATTACK_CANCELLED,
    BS_ATTACK_ALREADY_TARGET,
} bs_attack_status;

/* Every parameter of every method, with the defaults of bs_attack_defaults. */
#define BS_ATTACK_MAX_LANES 16

typedef struct bs_attack_params {
    bs_attack_method method;
    int quantize;         /* 1: return and judge the 8-bit image (default 1) */
    uint64_t seed;        /* random starts (adam-l1 uniform init) (default 1) */
    /* c search, shared by lbfgs, adam-l1 (when c_search) and cw-l2 */
    int search_steps;     /* runs of the inner optimiser per target */
    double initial_c;     /* first c tried */
    double c_factor;      /* c grows or shrinks by this until the outcome flips, then bisection */
    /* lbfgs */
    int norm;             /* 2 (c*||r||_2^2, default) or 1 (c*||r||_1) */
    int max_iterations;   /* L-BFGS-B iterations per run */
    int history;          /* L-BFGS-B memory m */
    double factr;         /* L-BFGS-B relative-reduction tolerance (x machine eps;
                           * default 1e10, above the float32 network's rounding) */
    double pgtol;         /* L-BFGS-B projected-gradient tolerance */
    int optimizer;        /* L-BFGS-B code: 1 its C port core/lbfgsb.c (default; it
                           * follows the reference's iterates, tests/test_lbfgsb.c),
                           * 0 the reference Fortran 3.0 (liblbfgsb) */
    int lanes;            /* values of c tried at once per target, as lanes of one
                           * batch: 1 (default) the sequential search above; L > 1
                           * rounds of L values, a grid c_factor apart around
                           * initial_c, then narrowing inside the bracket, as many
                           * rounds as bring it as close as search_steps
                           * sequential runs do (L=4: 4 rounds, 16 runs) */
    int warm_start;       /* a run for a new c starts from the best successful point
                           * found so far instead of from x (default 1) */
    /* adam-l1 (and cw-l2's optimiser) */
    float lr;             /* Adam step size */
    int steps;            /* Adam steps per run */
    int init_zeros;       /* adam-l1: r starts at 0 instead of uniform [0,1) */
    int c_search;         /* adam-l1: search c like lbfgs (0: one run at initial_c) */
    /* fgsm and pgd: the budget eps is searched in [0, eps_max] (for pgd's
     * L2 variant eps is an L2 radius searched in [0, eps_max*sqrt(n)]) */
    int pgd_norm;         /* 0 for Linf (default), 2 for L2 */
    double eps_max;       /* largest budget tried */
    int pgd_steps;        /* projected steps per budget */
    /* cw-l2 */
    double kappa;         /* confidence margin */
    /* grid repair after rounding: at most this many 8-bit steps */
    int repair_steps;
} bs_attack_params;

/* A parameter as the wire and the command line name it, one row each in
 * bs_attack_param_table (in the order answers list them). */
typedef enum bs_attack_param_kind {
    BS_PARAM_INT,    /* int field, a whole number */
    BS_PARAM_DOUBLE, /* double field */
    BS_PARAM_FLOAT,  /* float field */
    BS_PARAM_BOOL,   /* int field, true or false */
    BS_PARAM_SEED,   /* uint64_t field, a non-negative whole number */
    BS_PARAM_CHOICE, /* int field, one of two names */
} bs_attack_param_kind;

typedef struct bs_attack_param_info {
    const char *name;        /* "max_iterations", "norm" */
    bs_attack_param_kind kind;
    size_t offset;           /* of its field in bs_attack_params */
    const char *choices[2];  /* BS_PARAM_CHOICE: the names of ... */
    int values[2];           /* ... these field values */
} bs_attack_param_info;

#define BS_ATTACK_N_PARAMS 22
extern const bs_attack_param_info bs_attack_param_table[BS_ATTACK_N_PARAMS];

/* One attack method: everything the command line, the wire and the core
 * know about it. Rows are in the order of bs_attack_method. */
struct attack_ctx;
typedef struct bs_attack_method_info {
    bs_attack_method method;
    const char *name;           /* "lbfgs": the wire's and the CLI's spelling */
    const char *summary;        /* one line, for help texts */
    const char *params;         /* the parameters that apply, space-separated,
                                 * in the order help texts list them */
    bs_attack_params defaults;  /* every field; those not in params go unused */
    int (*run)(struct attack_ctx *a, char *err); /* fills a->res (attack_internal.h) */
} bs_attack_method_info;

#define BS_ATTACK_N_METHODS 5
extern const bs_attack_method_info bs_attack_methods[BS_ATTACK_N_METHODS];

/* Documented defaults for a method (see bs_attack_params for the fields). */
bs_attack_params bs_attack_defaults(bs_attack_method method);

/* A method's name <-> method; -1 if unknown. */
int bs_attack_method_parse(const char *name);
const char *bs_attack_method_name(bs_attack_method method);
const char *bs_attack_status_name(bs_attack_status status);
/* The method names joined by sep ("lbfgs, adam-l1, ..."), into buf of n bytes. */
const char *bs_attack_method_list(const char *sep, char *buf, size_t n);

/* The row of a parameter name, or NULL. */
const bs_attack_param_info *bs_attack_param_find(const char *name);
/* Whether the parameter name is one method uses. */
int bs_attack_param_applies(bs_attack_method method, const char *name);
/* The value of parameter f in p as the command line writes it ("150",
 * "1e-05", "true", "l2"), into buf of n bytes. */
const char *bs_attack_param_format(const bs_attack_params *p, const bs_attack_param_info *f,
                                   char *buf, size_t n);

/* Checks params for the method; -1 with a message naming the bad field. */
int bs_attack_params_check(const bs_attack_params *p, char *err);

/* Norms of a perturbation r = adv - x over n values. */
typedef struct bs_norms {
    int l0;            /* pixels changed (|r_i| > 1e-6) */
    double l1, l2, linf;
    double distortion; /* the paper's sqrt(sum r_i^2 / n) */
} bs_norms;

bs_norms bs_norms_of(const float *x, const float *adv, size_t n);

/* The outcome for one target. */
typedef struct bs_attack_result {
    int target;
    int original;         /* the model's label for x */
    int success;          /* model says target on the returned image, and did not on x */
    int success_float;    /* ... on the float optimum before rounding */
    int untargeted;       /* label of the returned image != original */
    int adversarial;      /* the model's label for the returned image */
    float target_prob;    /* softmax probability of the target on it */
    float *adv;           /* n floats: the returned image (on the grid when quantized) */
    float *adv_float;     /* n floats: the float optimum */
    uint8_t *adv8;        /* n bytes: the returned image as 8-bit pixels */
    bs_norms norms;       /* of adv - x */
    bs_norms norms_float; /* of adv_float - x */
    double c;             /* final c (lbfgs, adam-l1, cw-l2) or eps (fgsm, pgd) */
    int iterations;       /* optimiser iterations, all runs */
    int evaluations;      /* model evaluations (forward+backward), all runs */
    int runs;             /* inner optimiser runs (c or eps search steps) */
    double seconds;
    bs_attack_status status;
} bs_attack_result;

/* Attacks x (m->input_size floats in [0,1]) towards each of targets[0..k).
 * ctl (may be NULL) stops it; its progress is called after each finished
 * inner run of a target (done: that target's runs so far, total:
 * params.search_steps). Every buffer of the call is carved from scratch
 * and released before it returns, and the model workspace it needs (batch
 * k) is the one scratch keeps; with scratch NULL the call makes a
 * temporary one. results has room for k results; each is filled (and owns
 * its arrays, freed by bs_attack_result_free) whether or not it succeeded.
 * Returns 0, or -1 with a message when the request itself is invalid (bad
 * target, x outside [0,1], bad params, out of memory). */
int bs_attack_run(const bs_model *m, const float *x, const int *targets, int k,
                  const bs_attack_params *p, const bs_control *ctl, bs_scratch *scratch,
                  bs_attack_result *results, char *err);

void bs_attack_result_free(bs_attack_result *r);

/* Attacks batched across requests. A stream runs the lbfgs attacks that a
 * feed hands it on one model with one set of params in lockstep: every
 * model evaluation the optimiser runs of all admitted jobs ask for goes
 * into one batched forward and backward pass. A job is admitted as soon as
 * the feed offers it and rows are free (never waiting for a batch to
 * fill), and leaves as soon as its own search ends, its deadline passes or
 * it is cancelled (its ctl): the feed's done hears of it at once.
 *
 * Each job's results are bit for bit what bs_attack_run gives for it
 * alone (the model's kernels are row-stable, core/gemm.h), apart from
 * their seconds; the progress of its ctl is called as bs_attack_run calls
 * it. */
typedef struct bs_attack_job {
    const float *x;             /* m->input_size floats in [0,1] */
    const int *targets;         /* k labels */
    int k;
    const bs_control *ctl;      /* this job's deadline, cancel, progress; may be NULL */
    bs_attack_result *results;  /* room for k, filled as bs_attack_run fills them */
    int rc;                     /* when done: 0, or -1 with err (invalid, out of memory) */
    char err[BS_ERR_LEN];
    void *tag;                  /* the caller's */
} bs_attack_job;

typedef struct bs_attack_feed {
    /* The next job to admit, or NULL when none is waiting; never blocks.
     * free_rows: the rows the stream can take now (a job takes
     * bs_attack_stream_rows of them); a job offered that needs more than
     * the stream's capacity runs alone once the others have left. */
    bs_attack_job *(*next)(void *ctx, int free_rows);
    /* The job is over (results final, or rc -1 with err). */
    void (*done)(void *ctx, bs_attack_job *job);
    void *ctx;
} bs_attack_feed;

/* The rows a job of k targets takes in a stream with params p. */
int bs_attack_stream_rows(const bs_attack_params *p, int k);

/* Runs jobs from feed until it offers none and none is running, with at
 * most `rows` rows at once (at least one job of any size always runs; the
 * optimisers' state is held to about 256 MB, fewer rows for a big model).
 * Buffers come from scratch (NULL: a temporary one) as for bs_attack_run.
 * A job the stream cannot run (invalid, or out of memory for it) is
 * answered by done with rc -1 like any other. Returns 0, or -1 with a
 * message when the stream cannot run at all (p not lbfgs or invalid, out
 * of memory before the first job): then no job was taken from the feed. */
int bs_attack_stream(const bs_model *m, const bs_attack_params *p, int rows,
                     bs_scratch *scratch, const bs_attack_feed *feed, char *err);

#endif
