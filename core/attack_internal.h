/* attack_internal — what the attack methods share, inside core/ only:
 * the batched objective evaluation, the deadline check, the search over c,
 * and the hand-in of a candidate image (8-bit rounding, repair on the grid,
 * keeping the smallest successful perturbation). attack.c implements it;
 * attack_lbfgs.c the L-BFGS method; attack_grad.c the gradient methods
 * (adam-l1, fgsm, pgd, cw-l2). Methods carve their buffers from a->arena;
 * bs_attack_run releases them all when the call ends. */
#ifndef BS_ATTACK_INTERNAL_H
#define BS_ATTACK_INTERNAL_H

#include "core/attack.h"

/* One bs_attack_run call: the model, the original image, the targets, and
 * buffers sized for all k targets at once. */
typedef struct attack_ctx {
    const bs_model *m;
    const bs_attack_params *p;
    const bs_control *ctl;
    bs_scratch *arena;       /* the caller's (or the call's own) scratch */
    const float *x;          /* original image, n floats */
    size_t n;                /* m->input_size */
    int V;                   /* classes */
    int k;                   /* targets */
    const int *targets;      /* k labels */
    int original;            /* model's label for x */
    bs_attack_result *res;   /* k results being filled */
    bs_workspace *ws;        /* batch capacity k or more, kept in arena */
    float *dlogits;          /* k*V, attack_eval's */
    float *offer_buf;        /* 2n: attack_offer's rounded image and gradient */
    float *best_fail_prob;   /* k: target prob of the best failed candidate */
    bs_attack_status status; /* DONE until the deadline or cancel hits */
} attack_ctx;

/* Checks a call's inputs: k in [1, 1024], targets classes of m, x in
 * [0,1], params valid; -1 with a message. */
int attack_check(const bs_model *m, const float *x, const int *targets, int k,
                 const bs_attack_params *p, char *err);

/* Sets a->original (one forward pass of x) and starts each of the k
 * results as x itself, its arrays allocated and best_fail_prob reset. a->res
 * is zeroed. -1 when out of memory, with the results freed. */
int attack_begin(attack_ctx *a, char *err);

/* The final verdict on each result, judged afresh on its returned image;
 * seconds since t0. */
void attack_verdict(attack_ctx *a, double t0);

/* Evaluates the model at B points xs (B*n floats), row b against target
 * tg[b] (labels, not indices into ctx->targets): loss[b] gets the softmax
 * cross-entropy to tg[b]; grad (B*n, may be NULL) its gradient w.r.t. the
 * input; pred[b] (may be NULL) the predicted label; prob[b] (may be NULL)
 * the target's probability. rows[b] (may be NULL) names which result (0..k)
 * each row works for, to count evaluations. B <= ctx->k. Returns the logits
 * (B*V) in the workspace. */
const float *attack_eval(attack_ctx *a, const float *xs, const int *tg, int B,
                         const int *rows, float *loss, float *grad, int *pred,
                         float *prob);

/* Like attack_eval but returns the raw logits' gradient route: dlogits
 * (B*V) is supplied by the caller (e.g. Carlini-Wagner's margin loss) and
 * grad receives the input gradient. The last forward must be on xs. */
void attack_backward(attack_ctx *a, const float *dlogits, int B, float *grad);

/* Non-zero when the deadline passed or cancel was asked; sets a->status. */
int attack_should_stop(attack_ctx *a);

/* Search over a scalar budget (c for lbfgs/adam-l1/cw-l2 where LARGER c
 * means a smaller perturbation; eps for fgsm/pgd where SMALLER eps does).
 * Start at `value`; multiply (or divide) by factor until the outcome flips,
 * then bisect between the best success and the nearest failure. */
typedef struct budget_search {
    double value;      /* the value to try next */
    double good, bad;  /* last success / failure values (valid when have_*) */
    int have_good, have_bad;
    int larger_is_smaller_perturbation; /* 1 for c, 0 for eps */
    double factor;
} budget_search;

void budget_search_init(budget_search *s, double start, double factor,
                        int larger_is_smaller_perturbation);
/* Records the outcome at s->value and picks the next value. */
void budget_search_update(budget_search *s, int success);

/* Hands in a candidate adversarial image for result row t (found with
 * budget `budget`): when params.quantize it is rounded to the 8-bit grid and,
 * if rounding undid it, repaired with up to params.repair_steps grid steps.
 * The result keeps the successful candidate with the smallest L2 (and
 * otherwise the failed one with the highest target probability). Returns
 * whether this candidate succeeded (on the 8-bit image when quantizing). */
int attack_offer(attack_ctx *a, int t, const float *candidate, double budget);

/* The methods, the table's run functions: attack_lbfgs in attack_lbfgs.c,
 * the gradient methods in attack_grad.c. Each fills a->res[0..k) through
 * attack_offer and adds iterations/runs to the results. Return 0, or -1 on
 * out of memory with a message in err. */
int attack_lbfgs(attack_ctx *a, char *err);
int attack_adam_l1(attack_ctx *a, char *err);
int attack_fgsm(attack_ctx *a, char *err);
int attack_pgd(attack_ctx *a, char *err);
int attack_cw_l2(attack_ctx *a, char *err);

#endif
