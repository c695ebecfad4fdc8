/* attack_grad — the gradient attacks: adam-l1 (the seed's reproduction),
 * targeted FGSM, PGD (Linf or L2) and Carlini-Wagner L2.
 *
 * Each method runs all k targets of one call in lockstep, so that one step's
 * model evaluations for every target are one batched forward/backward pass
 * (row b works for result b and target a->targets[b]). A target's finished
 * run hands its point to attack_offer, which rounds it to the 8-bit grid,
 * judges it and keeps the best; the success it reports drives the budget
 * search. Buffers are carved from the call's arena once per call; the steps
 * never allocate.
 * Before every batched evaluation the deadline and the cancel flag are
 * checked; a stopped call hands in the points of the runs it cut short (as
 * the lbfgs method does) and returns what attack_offer kept. */
#include "core/attack_internal.h"
#include "core/error.h"
#include "core/rng.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adam's constants (Kingma and Ba; PyTorch's and TensorFlow's defaults). */
#define ADAM_BETA1 0.9f
#define ADAM_BETA2 0.999f
#define ADAM_EPS 1e-8f

/* First budgets of the fgsm/pgd eps searches (doubled or halved until the
 * outcome flips, then bisected). The Linf start is a few grey levels above
 * what an MNIST digit needs against a weak model; L2 is in pixel units. */
#define EPS_START_LINF 0.05
#define EPS_START_L2 1.0
#define EPS_FACTOR 2.0

/* Carlini-Wagner maps w to x' = (tanh(w)+1)/2; x is pulled in by this much
 * before atanh so that pixels at exactly 0 or 1 get a finite w. */
#define CW_ATANH_SHRINK 0.999999

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static float signf(float v)
{
    return (float)((v > 0.0f) - (v < 0.0f));
}

/* The method's buffers, carved from the call's arena: `floats` zeroed
 * floats and `ints` zeroed ints, carved up by the caller. */
static int carve(attack_ctx *a, float **f, size_t floats, int **i, size_t ints,
                 const char *method, char *err)
{
    *f = bs_scratch_array(a->arena, floats, float);
    *i = bs_scratch_array(a->arena, ints, int);
    if (!*f || !*i)
        return bs_fail(err, "%s: out of memory for %zu bytes of scratch", method,
                       floats * sizeof(float) + ints * sizeof(int));
    return 0;
}

/* Row b of every batch works for result b. */
static void rows_identity(int *rows, int k)
{
    for (int b = 0; b < k; b++)
        rows[b] = b;
}

/* A target's run ended at `point` with budget c or eps: hand it in, count
 * it and report progress. Returns whether it succeeded. */
static int finish_run(attack_ctx *a, int t, const float *point, double budget,
                      int total_runs)
{
    int success = attack_offer(a, t, point, budget);
    a->res[t].runs++;
    if (a->ctl && a->ctl->progress)
        a->ctl->progress(a->ctl->ctx, a->res[t].runs, total_runs);
    return success;
}

/* Hands in the point of a run the deadline or cancel flag cut short. The
 * hand-in evaluates, so the stop is lifted for it and restored after. */
static void offer_unfinished(attack_ctx *a, int t, const float *point,
                             double budget)
{
    bs_attack_status why = a->status;
    a->status = BS_ATTACK_DONE;
    attack_offer(a, t, point, budget);
    a->status = why;
}

/* One Adam step on n parameters, PyTorch's formulation (no weight decay):
 *   m = m + (1-b1)(g-m),  v = b2 v + (1-b2) g^2,
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps),   t = 1, 2, ... */
static void adam_step(float *p, float *m, float *v, const float *g, size_t n,
                      float lr, int t)
{
    double bc1 = 1.0 - pow(ADAM_BETA1, t), bc2 = 1.0 - pow(ADAM_BETA2, t);
    float step = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        m[i] += (1.0f - ADAM_BETA1) * (g[i] - m[i]);
        v[i] = ADAM_BETA2 * v[i] + (1.0f - ADAM_BETA2) * g[i] * g[i];
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2_sqrt + ADAM_EPS);
    }
}

/* ------------------------------------------------------------------------ */
/* adam-l1: minimise c*||r||_1 + xent(f(clamp(x+r, 0, 1)), target) */

int attack_adam_l1(attack_ctx *a, char *err)
{
    const bs_attack_params *p = a->p;
    const int k = a->k;
    const size_t n = a->n, kn = (size_t)k * n;
    float *sf;
    int *si;
    /* r, Adam's m and v, the clamped points xs, their gradient: each (k,n) */
    if (carve(a, &sf, 5 * kn + (size_t)k, &si, (size_t)k, "adam-l1", err))
        return -1;
    float *r = sf, *m = r + kn, *v = m + kn, *xs = v + kn, *grad = xs + kn;
    float *loss = grad + kn;
    int *rows = si;
    budget_search *c_of = bs_scratch_array(a->arena, k, budget_search);
    if (!c_of)
        return bs_fail(err, "adam-l1: out of memory");
    rows_identity(rows, k);
    for (int t = 0; t < k; t++)
        budget_search_init(&c_of[t], p->initial_c, p->c_factor, 1);

    int runs = p->c_search ? p->search_steps : 1;
    for (int run = 0; run < runs; run++) {
        /* Every target and every run starts from the same r (one stream
         * seeded from p->seed per target), so that a target's result does
         * not depend on which other targets share the call. */
        for (int t = 0; t < k; t++) {
            float *rt = r + (size_t)t * n;
            if (p->init_zeros) {
                memset(rt, 0, n * sizeof *rt);
            } else {
                bs_rng rng;
                bs_rng_seed(&rng, p->seed);
                for (size_t i = 0; i < n; i++)
                    rt[i] = bs_rng_uniform(&rng);
            }
        }
        memset(m, 0, 2 * kn * sizeof *m); /* m and v */

        for (int step = 1; step <= p->steps; step++) {
            for (int t = 0; t < k; t++)
                for (size_t i = 0; i < n; i++)
                    xs[(size_t)t * n + i] =
                        clampf(a->x[i] + r[(size_t)t * n + i], 0.0f, 1.0f);
            if (attack_should_stop(a)) {
                for (int t = 0; t < k && step > 1; t++)
                    offer_unfinished(a, t, xs + (size_t)t * n, c_of[t].value);
                goto out;
            }
            attack_eval(a, xs, a->targets, k, rows, loss, grad, NULL, NULL);
            /* The xent gradient reaches r through the clamp where x+r is
             * inside [0,1] (boundaries included, as torch.clamp's backward
             * does: otherwise an r starting at 0 on a black pixel could
             * never move); the L1 term adds c*sign(r). */
            for (int t = 0; t < k; t++) {
                float c = (float)c_of[t].value;
                const float *rt = r + (size_t)t * n;
                float *gt = grad + (size_t)t * n;
                for (size_t i = 0; i < n; i++) {
                    float u = a->x[i] + rt[i];
                    float g = u >= 0.0f && u <= 1.0f ? gt[i] : 0.0f;
                    gt[i] = g + c * signf(rt[i]);
                }
                a->res[t].iterations++;
            }
            adam_step(r, m, v, grad, kn, p->lr, step);
        }

        for (int t = 0; t < k; t++) {
            float *xt = xs + (size_t)t * n;
            for (size_t i = 0; i < n; i++)
                xt[i] = clampf(a->x[i] + r[(size_t)t * n + i], 0.0f, 1.0f);
            int ok = finish_run(a, t, xt, c_of[t].value, runs);
            if (p->c_search)
                budget_search_update(&c_of[t], ok);
        }
    }
out:
    return 0;
}

/* ------------------------------------------------------------------------ */
/* fgsm and pgd: the smallest budget eps that succeeds */

/* The eps search of fgsm and pgd for one target; `cap` is the largest eps
 * allowed. Once the cap itself failed there is nothing larger to try. */
typedef struct eps_search {
    budget_search s;
    double cap;
    int exhausted;
} eps_search;

static void eps_search_init(eps_search *e, double start, double cap)
{
    budget_search_init(&e->s, fmin(start, cap), EPS_FACTOR, 0);
    e->cap = cap;
    e->exhausted = 0;
}

static void eps_search_update(eps_search *e, int success)
{
    if (!success && e->s.value >= e->cap)
        e->exhausted = 1;
    budget_search_update(&e->s, success);
    if (e->s.value > e->cap)
        e->s.value = e->cap;
}

/* The point as it will be judged: on the 8-bit grid when quantizing.
 * fgsm and pgd hand in points already on the grid, so attack_offer has
 * nothing to repair: its grid steps know no eps and would carry the image
 * outside the budget the result reports. */
static void to_grid(float *dst, const float *src, size_t n, int quantize)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = quantize ? roundf(src[i] * 255.0f) / 255.0f : src[i];
}

/* Targeted FGSM: x' = clamp(x - eps*sign(grad_x xent(f(x), target)), 0, 1).
 * The gradient at x is the same for every eps, so one batched evaluation
 * gives every target's direction and each eps tried costs only the
 * judgement in attack_offer. */
int attack_fgsm(attack_ctx *a, char *err)
{
    const bs_attack_params *p = a->p;
    const int k = a->k;
    const size_t n = a->n, kn = (size_t)k * n;
    float *sf;
    int *si;
    /* xs (k,n) copies of x, grad (k,n), cand (n), loss (k) */
    if (carve(a, &sf, 2 * kn + n + (size_t)k, &si, (size_t)k, "fgsm", err))
        return -1;
    float *xs = sf, *grad = xs + kn, *cand = grad + kn, *loss = cand + n;
    int *rows = si;
    eps_search *eps = bs_scratch_array(a->arena, k, eps_search);
    if (!eps)
        return bs_fail(err, "fgsm: out of memory");
    rows_identity(rows, k);
    for (int t = 0; t < k; t++) {
        memcpy(xs + (size_t)t * n, a->x, n * sizeof *xs);
        eps_search_init(&eps[t], EPS_START_LINF, p->eps_max);
    }

    if (attack_should_stop(a))
        goto out;
    attack_eval(a, xs, a->targets, k, rows, loss, grad, NULL, NULL);
    for (int t = 0; t < k; t++)
        a->res[t].iterations++;

    for (int step = 0; step < p->search_steps; step++) {
        for (int t = 0; t < k; t++) {
            if (eps[t].exhausted)
                continue;
            if (attack_should_stop(a))
                goto out;
            float e = (float)eps[t].s.value;
            const float *g = grad + (size_t)t * n;
            for (size_t i = 0; i < n; i++)
                cand[i] = clampf(a->x[i] - e * signf(g[i]), 0.0f, 1.0f);
            to_grid(cand, cand, n, p->quantize);
            eps_search_update(&eps[t], finish_run(a, t, cand, e, p->search_steps));
        }
    }
out:
    return 0;
}

/* Projects adv (n) onto the eps-ball around x in the attack's norm, then
 * onto the box [0,1]. For L2 the ball comes first and the box may cut
 * further, which only shrinks r. */
static void pgd_project(float *adv, const float *x, size_t n, int norm,
                        float eps)
{
    if (norm == 2) {
        double rr = 0.0;
        for (size_t i = 0; i < n; i++)
            rr += (double)(adv[i] - x[i]) * (adv[i] - x[i]);
        float scale = rr > (double)eps * eps ? (float)(eps / sqrt(rr)) : 1.0f;
        for (size_t i = 0; i < n; i++)
            adv[i] = clampf(x[i] + scale * (adv[i] - x[i]), 0.0f, 1.0f);
    } else {
        for (size_t i = 0; i < n; i++)
            adv[i] = clampf(clampf(adv[i], x[i] - eps, x[i] + eps), 0.0f, 1.0f);
    }
}

/* Targeted PGD (Madry et al.) from x, no random start: pgd_steps steps of
 * size 2.5*eps/pgd_steps down the target's cross-entropy (the sign of the
 * gradient for Linf, its direction for L2), each projected back onto the
 * eps-ball and the box. The iterate stays in floats but is evaluated (and
 * finally handed in) on the 8-bit grid when quantizing, so the point judged
 * is the one returned. A target stops early once the model calls it the
 * target, which keeps its perturbation small; the others go on as a smaller
 * batch. */
int attack_pgd(attack_ctx *a, char *err)
{
    const bs_attack_params *p = a->p;
    const int k = a->k, norm = p->pgd_norm;
    const size_t n = a->n, kn = (size_t)k * n;
    float *sf;
    int *si;
    /* adv (k,n) per target; xb, grad (k,n) the active rows as a batch;
     * loss (k). ints: tg, rows, pred (k each). */
    if (carve(a, &sf, 3 * kn + (size_t)k, &si, 3 * (size_t)k, "pgd", err))
        return -1;
    float *adv = sf, *xb = adv + kn, *grad = xb + kn, *loss = grad + kn;
    int *tg = si, *rows = tg + k, *pred = rows + k;
    eps_search *eps = bs_scratch_array(a->arena, k, eps_search);
    if (!eps)
        return bs_fail(err, "pgd: out of memory");
    double cap = norm == 2 ? p->eps_max * sqrt((double)n) : p->eps_max;
    for (int t = 0; t < k; t++)
        eps_search_init(&eps[t], norm == 2 ? EPS_START_L2 : EPS_START_LINF, cap);

    for (int run = 0; run < p->search_steps; run++) {
        int active = 0;
        for (int t = 0; t < k; t++) {
            memcpy(adv + (size_t)t * n, a->x, n * sizeof *adv);
            if (!eps[t].exhausted)
                rows[active++] = t;
        }
        if (!active)
            break; /* every target failed at the largest eps */

        /* pgd_steps steps, pgd_steps + 1 evaluations: the last judges the
         * final point */
        for (int step = 0; active; step++) {
            for (int b = 0; b < active; b++) {
                tg[b] = a->targets[rows[b]];
                to_grid(xb + (size_t)b * n, adv + (size_t)rows[b] * n, n, p->quantize);
            }
            if (attack_should_stop(a)) {
                for (int t = 0; t < k && step > 0; t++)
                    if (!eps[t].exhausted) {
                        float *at = adv + (size_t)t * n;
                        to_grid(at, at, n, p->quantize);
                        offer_unfinished(a, t, at, eps[t].s.value);
                    }
                goto out;
            }
            attack_eval(a, xb, tg, active, rows, loss, grad, pred, NULL);
            int still = 0;
            for (int b = 0; b < active; b++) {
                int t = rows[b];
                if (pred[b] == tg[b] || step == p->pgd_steps) {
                    /* reached the target, or out of steps: the point just
                     * judged is the one handed in */
                    memcpy(adv + (size_t)t * n, xb + (size_t)b * n, n * sizeof *adv);
                    continue;
                }
                float e = (float)eps[t].s.value;
                float alpha = 2.5f * e / (float)p->pgd_steps;
                float *at = adv + (size_t)t * n;
                const float *g = grad + (size_t)b * n;
                if (norm == 2) {
                    double gg = 0.0;
                    for (size_t i = 0; i < n; i++)
                        gg += (double)g[i] * g[i];
                    if (gg > 0.0) {
                        float step_len = (float)(alpha / sqrt(gg));
                        for (size_t i = 0; i < n; i++)
                            at[i] -= step_len * g[i];
                    }
                } else {
                    for (size_t i = 0; i < n; i++)
                        at[i] -= alpha * signf(g[i]);
                }
                pgd_project(at, a->x, n, norm, e);
                a->res[t].iterations++;
                rows[still++] = t; /* rows[] is read at b >= still only */
            }
            active = still;
        }

        for (int t = 0; t < k; t++) {
            if (eps[t].exhausted)
                continue;
            int ok = finish_run(a, t, adv + (size_t)t * n, eps[t].s.value,
                                p->search_steps);
            eps_search_update(&eps[t], ok);
        }
    }
out:
    return 0;
}

/* ------------------------------------------------------------------------ */
/* cw-l2: Carlini and Wagner's L2 attack */

/* With x' = (tanh(w)+1)/2 (always inside the box), minimise
 *   ||x' - x||_2^2 + c * max(max_{i != t} Z_i - Z_t, -kappa)
 * over w with Adam, Z the logits. Larger c weights the misclassification
 * term more and gives LARGER perturbations, so the search wants the
 * smallest c that succeeds. Each run keeps the smallest successful x' it
 * passed through (judged on the logits of the batched forward) and offers
 * that, or its last point when none succeeded. */
int attack_cw_l2(attack_ctx *a, char *err)
{
    const bs_attack_params *p = a->p;
    const int k = a->k, V = a->V;
    const size_t n = a->n, kn = (size_t)k * n;
    const float kappa = (float)p->kappa;
    float *sf;
    int *si;
    /* w, Adam's m and v, x', grad, best: each (k,n); dlogits (k,V);
     * loss, best_dist (k). */
    if (carve(a, &sf, 6 * kn + (size_t)k * V + 2 * (size_t)k, &si, (size_t)k,
                    "cw-l2", err))
        return -1;
    float *w = sf, *m = w + kn, *v = m + kn, *xp = v + kn, *grad = xp + kn;
    float *best = grad + kn, *dlogits = best + kn, *loss = dlogits + (size_t)k * V;
    float *best_dist = loss + k;
    int *rows = si;
    budget_search *c_of = bs_scratch_array(a->arena, k, budget_search);
    if (!c_of)
        return bs_fail(err, "cw-l2: out of memory");
    rows_identity(rows, k);
    for (int t = 0; t < k; t++)
        budget_search_init(&c_of[t], p->initial_c, p->c_factor, 0);

    for (int run = 0; run < p->search_steps; run++) {
        for (int t = 0; t < k; t++) {
            for (size_t i = 0; i < n; i++)
                w[(size_t)t * n + i] =
                    (float)atanh((2.0 * a->x[i] - 1.0) * CW_ATANH_SHRINK);
            best_dist[t] = FLT_MAX;
        }
        memset(m, 0, 2 * kn * sizeof *m); /* m and v */

        for (int step = 1; step <= p->steps; step++) {
            for (size_t i = 0; i < kn; i++)
                xp[i] = (tanhf(w[i]) + 1.0f) * 0.5f;
            if (attack_should_stop(a)) {
                for (int t = 0; t < k && step > 1; t++)
                    offer_unfinished(a, t, best_dist[t] < FLT_MAX ? best + (size_t)t * n
                                                                  : xp + (size_t)t * n,
                                     c_of[t].value);
                goto out;
            }
            const float *Z = attack_eval(a, xp, a->targets, k, rows, loss,
                                         NULL, NULL, NULL);
            /* The margin's gradient w.r.t. the logits: +c at the strongest
             * other class, -c at the target, while the margin is above
             * -kappa (below, the hinge is flat). */
            memset(dlogits, 0, (size_t)k * V * sizeof *dlogits);
            for (int t = 0; t < k; t++) {
                const float *z = Z + (size_t)t * V;
                int target = a->targets[t], other = -1;
                for (int j = 0; j < V; j++)
                    if (j != target && (other < 0 || z[j] > z[other]))
                        other = j;
                float margin = z[other] - z[target];
                float c = (float)c_of[t].value;
                if (margin > -kappa) {
                    dlogits[(size_t)t * V + other] = c;
                    dlogits[(size_t)t * V + target] = -c;
                }
                /* success: the target wins by at least kappa (strictly
                 * when kappa is 0, as the argmax needs) */
                if (kappa > 0.0f ? margin <= -kappa : margin < 0.0f) {
                    const float *xt = xp + (size_t)t * n;
                    double dist = 0.0;
                    for (size_t i = 0; i < n; i++)
                        dist += (double)(xt[i] - a->x[i]) * (xt[i] - a->x[i]);
                    if (dist < best_dist[t]) {
                        best_dist[t] = (float)dist;
                        memcpy(best + (size_t)t * n, xt, n * sizeof *best);
                    }
                }
                a->res[t].iterations++;
            }
            attack_backward(a, dlogits, k, grad);
            /* d/dx' of the distance is 2(x' - x); dx'/dw = (1 - tanh^2)/2
             * = 2 x' (1 - x'). */
            for (int t = 0; t < k; t++) {
                const float *xt = xp + (size_t)t * n;
                float *gt = grad + (size_t)t * n;
                for (size_t i = 0; i < n; i++)
                    gt[i] = (2.0f * (xt[i] - a->x[i]) + gt[i])
                            * 2.0f * xt[i] * (1.0f - xt[i]);
            }
            adam_step(w, m, v, grad, kn, p->lr, step);
        }

        for (int t = 0; t < k; t++) {
            float *xt = xp + (size_t)t * n;
            if (best_dist[t] < FLT_MAX)
                xt = best + (size_t)t * n;
            else
                for (size_t i = 0; i < n; i++)
                    xt[i] = (tanhf(w[(size_t)t * n + i]) + 1.0f) * 0.5f;
            int ok = finish_run(a, t, xt, c_of[t].value, p->search_steps);
            budget_search_update(&c_of[t], ok);
        }
    }
out:
    return 0;
}
