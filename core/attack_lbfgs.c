/* attack_lbfgs — the paper's method (Szegedy et al. §4.1): minimise
 * c*||r||_2^2 + xent(f(x+r), target) (or c*||r||_1) over the box
 * x+r in [0,1]^n with L-BFGS-B 3.0 (the C port of core/lbfgsb.c, or the
 * Fortran reference) driven by reverse communication, and search for the
 * largest c that still succeeds.
 *
 * One engine runs every L-BFGS-B attack: a lockstep of rows. A row is one
 * L-BFGS-B instance at one value of c; a target's search holds `lanes`
 * rows; a job (one bs_attack_run call, or one request of a stream) holds
 * its targets. Each step advances every row until it asks for f and g at a
 * new point, and all those points go through the network in one batched
 * forward and backward pass. The kernels are row-stable (core/gemm.h), so
 * what a row computes never depends on the rows beside it: a job's results
 * are the same alone, beside its other targets or beside other jobs.
 *
 * The search over c, per target: with one lane, budget_search (start at
 * initial_c, multiply or divide by c_factor until the outcome flips, then
 * bisect on a log scale), one run after another. With L lanes, rounds of L
 * runs at once: a grid of L values around initial_c, c_factor apart, then
 * L values spread evenly (on a log scale) inside the bracket between the
 * largest success and the smallest failure above it, or beyond the grid
 * while no bracket exists. With warm_start a new run starts from the best
 * successful image found so far rather than from x. */
#include "core/attack_internal.h"
#include "core/error.h"

#include "core/lbfgsb.h"
#include "core/simd.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_LEN 60

struct lbfgs_target;

/* One L-BFGS-B instance: a lane of one target's search, running at one c.
 * The variable is the image z = x + r itself, boxed in [0,1]; r = z - x. */
typedef struct lbfgs_row {
    struct lbfgs_target *tgt; /* whose lane it is; NULL while free */
    int running;        /* its run is going */
    int iters;          /* iterations of the current run */
    double c;           /* the current run's c */
    double *z, *g, *wa;
    int *iwa;
    bs_lbfgsb *native;  /* the C port (params.optimizer 1), else NULL */
    int started;        /* native: bs_lbfgsb_start was called for this run */
    double f;
    char task[TASK_LEN], csave[TASK_LEN];
    int lsave[4], isave[44];
    double dsave[29];
} lbfgs_row;

/* One target of one job and its search over c. */
typedef struct lbfgs_target {
    struct lbfgs_job *job; /* NULL while the slot is free */
    int t;              /* result row in the job */
    int total;          /* runs its search makes in all */
    int lanes;
    lbfgs_row *lane[BS_ATTACK_MAX_LANES];
    budget_search c;    /* one lane: the sequential search */
    /* lanes: the bracket (the largest success, the smallest failure above
     * it, or with no success the smallest failure) and the last round */
    double good, bad;
    int have_good, have_bad;
    double round_c[BS_ATTACK_MAX_LANES];
    int round_success[BS_ATTACK_MAX_LANES];
} lbfgs_target;

/* One job: its attack_ctx and where it came from. */
typedef struct lbfgs_job {
    attack_ctx a;
    bs_attack_job *from;  /* the stream's job; NULL for bs_attack_run's */
    double t0;
    int targets_left;     /* targets whose search goes on */
    int in_use;
} lbfgs_job;

/* The lockstep: rows, targets and jobs in fixed slots for `cap` rows (a
 * target takes `lanes` rows, so there are cap / lanes target and job
 * slots), and the buffers of one batched evaluation. */
typedef struct lockstep {
    const bs_model *m;
    const bs_attack_params *p;
    bs_scratch *s;
    int n, cap, slots;
    lbfgs_row *rows;
    lbfgs_target *targets;
    lbfgs_job *jobs;
    int free_rows;
    double *lower, *upper;
    int *nbd;
    float *xs, *grad, *zf, *loss, *offer_bufs, *fail_probs;
    double *sq, *pen;
    int *tg;
    lbfgs_row **batch;
    attack_ctx carrier;   /* the batched evaluation's model, workspace, dlogits */
} lockstep;

static void set_task(char *task, const char *s)
{
    memset(task, ' ', TASK_LEN);
    memcpy(task, s, strlen(s));
}

/* Starts row's run at c from the image `from` (x, or a warm start). */
static void lbfgs_start(lbfgs_row *row, double c, const float *from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        row->z[i] = from[i];
    row->c = c;
    row->iters = 0;
    row->started = 0;
    row->running = 1;
    set_task(row->task, "START");
}

/* One call of the row's optimiser (reference or C port): 1 when it wants f
 * and g at z, 2 when it finished an iteration, 0 when the run is over
 * (converged, or the line search failed; z is then the last good point). */
static int lbfgs_advance(lbfgs_row *row, const lockstep *L)
{
    const bs_attack_params *p = L->p;
    if (row->native) {
        int rc = row->started ? bs_lbfgsb_step(row->native, row->z, row->f, row->g)
                              : bs_lbfgsb_start(row->native, row->z);
        row->started = 1;
        return rc == BS_LBFGSB_FG ? 1 : rc == BS_LBFGSB_NEW_X ? 2 : 0;
    }
    int iprint = -1, n = L->n, m = p->history;
    setulb_(&n, &m, row->z, L->lower, L->upper, L->nbd, &row->f, row->g, &p->factr,
            &p->pgtol, row->wa, row->iwa, row->task, &iprint, row->csave, row->lsave,
            row->isave, row->dsave, TASK_LEN, TASK_LEN);
    if (!strncmp(row->task, "FG", 2))
        return 1;
    return !strncmp(row->task, "NEW_X", 5) ? 2 : 0;
}

/* The per-evaluation glue around the network, four values at a time where
 * the machine has AVX2; both paths round alike (no FMA). The penalty is
 * summed in index order on both: a different order changes f in its last
 * bits, and the optimiser's stopping tests see that (measured: 2-7% more
 * evaluations per attack with four partial sums, the same results); the
 * sums of several targets overlap instead (sums_in_order). */
#if BS_HAVE_AVX2
BS_AVX2 static void to_float_avx2(float *dst, const double *z, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_loadu_pd(z + i)));
    for (; i < n; i++)
        dst[i] = (float)z[i];
}

/* g = 2c (z - x) + gb, and rr = (z - x)^2 for the caller to sum in order. */
BS_AVX2 static void l2_gradient_avx2(double *g, double *rr, const double *z, const float *x,
                                     const float *gb, double c, size_t n)
{
    __m256d c2 = _mm256_set1_pd(2.0 * c);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d r = _mm256_sub_pd(_mm256_loadu_pd(z + i), _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        _mm256_storeu_pd(rr + i, _mm256_mul_pd(r, r));
        _mm256_storeu_pd(g + i, _mm256_add_pd(_mm256_mul_pd(c2, r),
                                              _mm256_cvtps_pd(_mm_loadu_ps(gb + i))));
    }
    for (; i < n; i++) {
        double r = z[i] - x[i];
        rr[i] = r * r;
        g[i] = 2.0 * c * r + gb[i];
    }
}
#endif

static void to_float(float *dst, const double *z, size_t n)
{
#if BS_HAVE_AVX2
    if (bs_cpu_avx2()) {
        to_float_avx2(dst, z, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)z[i];
}

/* g = 2c (z - x) + gb, the penalty's gradient added to the network's, and
 * sq = (z - x)^2, element by element. */
static void l2_terms(double *g, double *sq, const double *z, const float *x, const float *gb,
                     double c, size_t n)
{
#if BS_HAVE_AVX2
    if (bs_cpu_avx2()) {
        l2_gradient_avx2(g, sq, z, x, gb, c, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        double r = z[i] - x[i];
        sq[i] = r * r;
        g[i] = 2.0 * c * r + gb[i];
    }
}

/* sum[j] = sq[j*n] + sq[j*n + 1] + ... in index order, for j < m: four
 * rows' sums advance together, each still in its own order (so each is what
 * a lone loop gives), but the four chains of additions overlap. */
static void sums_in_order(double *sum, const double *sq, int m, size_t n)
{
    int j = 0;
    for (; j + 4 <= m; j += 4) {
        const double *q0 = sq + (size_t)j * n, *q1 = q0 + n, *q2 = q1 + n, *q3 = q2 + n;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (size_t i = 0; i < n; i++) {
            s0 += q0[i];
            s1 += q1[i];
            s2 += q2[i];
            s3 += q3[i];
        }
        sum[j] = s0, sum[j + 1] = s1, sum[j + 2] = s2, sum[j + 3] = s3;
    }
    for (; j < m; j++) {
        const double *q = sq + (size_t)j * n;
        double s = 0.0;
        for (size_t i = 0; i < n; i++)
            s += q[i];
        sum[j] = s;
    }
}

/* ------------------------------------------------------------------------ */
/* the lockstep */

/* The doubles of the reference setulb_'s workspace wa, for n variables
 * and history m. */
static size_t reference_wa_len(size_t n, size_t m)
{
    return 2 * m * n + 5 * n + 11 * m * m + 8 * m;
}

/* The memory one row takes, for the stream's bound on its rows. */
static size_t row_bytes(const bs_attack_params *p, size_t n)
{
    size_t opt = p->optimizer == 1
                     ? bs_lbfgsb_size((int)n, p->history)
                     : reference_wa_len(n, (size_t)p->history) * sizeof(double) +
                           3 * n * sizeof(int);
    /* z, g and sq (doubles); xs, grad and a job's offer buffer (floats) */
    return opt + n * (3 * sizeof(double) + 4 * sizeof(float));
}

/* Carves every slot and buffer for cap rows from the scratch. */
static int lockstep_init(lockstep *L, const bs_model *m, const bs_attack_params *p, int cap,
                         bs_scratch *s, char *err)
{
    int n = (int)m->input_size, V = m->classes, hist = p->history;
    size_t wa_len = reference_wa_len((size_t)n, (size_t)hist);
    int slots = cap / p->lanes > 0 ? cap / p->lanes : 1;
    *L = (lockstep){.m = m, .p = p, .s = s, .n = n, .cap = cap, .slots = slots,
                    .free_rows = cap};
    L->rows = bs_scratch_array(s, cap, lbfgs_row);
    L->targets = bs_scratch_array(s, slots, lbfgs_target);
    L->jobs = bs_scratch_array(s, slots, lbfgs_job);
    L->lower = bs_scratch_array(s, n, double);
    L->upper = bs_scratch_array(s, n, double);
    L->nbd = bs_scratch_array(s, n, int);
    L->xs = bs_scratch_array(s, (size_t)cap * n, float);
    L->grad = bs_scratch_array(s, (size_t)cap * n, float);
    L->zf = bs_scratch_array(s, n, float);
    L->loss = bs_scratch_array(s, cap, float);
    L->offer_bufs = bs_scratch_array(s, (size_t)slots * 2 * n, float);
    L->fail_probs = bs_scratch_array(s, (size_t)slots * slots, float);
    L->sq = bs_scratch_array(s, (size_t)cap * n, double);
    L->pen = bs_scratch_array(s, cap, double);
    L->tg = bs_scratch_array(s, cap, int);
    L->batch = bs_scratch_array(s, cap, lbfgs_row *);
    L->carrier = (attack_ctx){.m = m, .p = p, .arena = s, .n = (size_t)n, .V = V, .k = cap,
                              .status = BS_ATTACK_DONE};
    L->carrier.ws = bs_scratch_workspace(s, m, cap);
    L->carrier.dlogits = bs_scratch_array(s, (size_t)cap * V, float);
    if (!L->rows || !L->targets || !L->jobs || !L->lower || !L->upper || !L->nbd || !L->xs ||
        !L->grad || !L->zf || !L->loss || !L->offer_bufs || !L->fail_probs || !L->sq ||
        !L->pen || !L->tg || !L->batch || !L->carrier.ws || !L->carrier.dlogits)
        return bs_fail(err, "out of memory for the attack");
    for (int i = 0; i < n; i++) {
        L->lower[i] = 0.0;
        L->upper[i] = 1.0;
        L->nbd[i] = 2; /* both bounds */
    }
    for (int r = 0; r < cap; r++) {
        lbfgs_row *row = &L->rows[r];
        row->z = bs_scratch_array(s, n, double);
        row->g = bs_scratch_array(s, n, double);
        if (p->optimizer == 1) {
            row->native = bs_lbfgsb_init(bs_scratch_alloc(s, bs_lbfgsb_size(n, hist)), n, hist,
                                         L->lower, L->upper, p->factr, p->pgtol);
        } else {
            row->wa = bs_scratch_array(s, wa_len, double);
            row->iwa = bs_scratch_array(s, 3 * (size_t)n, int);
        }
        if (!row->z || !row->g || (p->optimizer == 1 ? !row->native : !row->wa || !row->iwa))
            return bs_fail(err, "out of memory for the attack");
    }
    return 0;
}

static int jobs_running(const lockstep *L)
{
    for (int i = 0; i < L->slots; i++)
        if (L->jobs[i].in_use)
            return 1;
    return 0;
}

/* The first round's c for lane i of `lanes`: a grid c_factor apart around
 * initial_c, one more value above it than below when lanes is even (the
 * search wants the largest c that succeeds). */
static double grid_c(const bs_attack_params *p, int lanes, int i)
{
    return p->initial_c * pow(p->c_factor, (double)(i - (lanes - 1) / 2));
}

/* The rounds of a search with lanes: one over the grid, then as many
 * narrowing rounds as bring the bracket to what search_steps runs of the
 * sequential search reach. That one spends about two runs finding a
 * bracket a factor c_factor wide and halves it (on a log scale) with each
 * run after; a round of L lanes divides it by L + 1. A grid of two or
 * three values covers less than the sequential search's first two runs
 * (c_factor^3 around initial_c), so it gets one round more to find its
 * bracket. */
static int lanes_rounds(const bs_attack_params *p)
{
    if (p->lanes == 1)
        return p->search_steps;
    int halvings = p->search_steps > 2 ? p->search_steps - 2 : 0;
    return 1 + (p->lanes < 4) + (int)ceil(halvings * log(2.0) / log(p->lanes + 1.0) - 1e-9);
}

/* Takes a finished round's outcomes into the bracket: its successes first,
 * so that a failure counts only when it lies above the best success. */
static void bracket_update(lbfgs_target *T)
{
    for (int i = 0; i < T->lanes; i++)
        if (T->round_success[i] && (!T->have_good || T->round_c[i] > T->good)) {
            T->good = T->round_c[i];
            T->have_good = 1;
        }
    if (T->have_bad && T->have_good && T->bad <= T->good)
        T->have_bad = 0;
    for (int i = 0; i < T->lanes; i++) {
        double c = T->round_c[i];
        if (!T->round_success[i] && (!T->have_good || c > T->good) &&
            (!T->have_bad || c < T->bad)) {
            T->bad = c;
            T->have_bad = 1;
        }
    }
}

/* The c of lane i in a round after the first: spread evenly on a log scale
 * inside the bracket, or beyond the values tried while there is none. */
static double lanes_next_c(const lbfgs_target *T, const bs_attack_params *p, int i)
{
    int L = T->lanes;
    if (T->have_good && T->have_bad)
        return T->good * pow(T->bad / T->good, (double)(i + 1) / (L + 1));
    if (T->have_good)
        return T->good * pow(p->c_factor, i + 1);
    return T->bad / pow(p->c_factor, i + 1);
}

/* Starts the target's next round, one run per lane, from x or (warm_start)
 * from the best successful candidate so far; 0 when its search is over. */
static int next_round(lbfgs_target *T)
{
    attack_ctx *a = &T->job->a;
    const bs_attack_params *p = a->p;
    bs_attack_result *r = &a->res[T->t];
    if (r->runs >= T->total || attack_should_stop(a))
        return 0;
    const float *from = p->warm_start && r->success ? r->adv_float : a->x;
    for (int i = 0; i < T->lanes; i++) {
        double c = T->lanes == 1 ? T->c.value
                 : r->runs == 0  ? grid_c(p, T->lanes, i)
                                 : lanes_next_c(T, p, i);
        lbfgs_start(T->lane[i], c, from, a->n);
    }
    return 1;
}

/* A lane's run is over: its point is handed in, and the outcome recorded. */
static void run_over(lockstep *L, lbfgs_target *T, int i)
{
    lbfgs_row *row = T->lane[i];
    attack_ctx *a = &T->job->a;
    for (int j = 0; j < L->n; j++)
        L->zf[j] = (float)row->z[j];
    int success = attack_offer(a, T->t, L->zf, row->c);
    row->running = 0;
    T->round_c[i] = row->c;
    T->round_success[i] = success;
    a->res[T->t].runs++;
    if (a->ctl && a->ctl->progress)
        a->ctl->progress(a->ctl->ctx, a->res[T->t].runs, T->total);
    if (T->lanes == 1 && a->res[T->t].runs < T->total)
        budget_search_update(&T->c, success);
}

/* Frees the target's rows; the job ends with its last target. */
static void target_over(lockstep *L, lbfgs_target *T)
{
    for (int i = 0; i < T->lanes; i++) {
        T->lane[i]->tgt = NULL;
        T->lane[i]->running = 0;
    }
    L->free_rows += T->lanes;
    T->job->targets_left--;
    T->job = NULL;
}

/* Advances each lane of T until it asks for f and g (into the batch) or
 * its run ends; a round whose runs all ended makes way for the next. */
static void advance_target(lockstep *L, lbfgs_target *T, int *B)
{
    const bs_attack_params *p = L->p;
    attack_ctx *a = &T->job->a;
    for (;;) {
        int going = 0;
        for (int i = 0; i < T->lanes; i++) {
            lbfgs_row *row = T->lane[i];
            while (row->running) {
                int next = lbfgs_advance(row, L);
                if (next == 1) {
                    L->batch[(*B)++] = row;
                    going = 1;
                    break;
                }
                if (next == 2) {
                    row->iters++;
                    a->res[T->t].iterations++;
                    if (row->iters < p->max_iterations)
                        continue;
                }
                /* converged, stopped by the iteration cap, or abnormal
                 * termination of the line search */
                run_over(L, T, i);
            }
        }
        if (going)
            return;
        if (T->lanes > 1)
            bracket_update(T);
        if (!next_round(T)) {
            target_over(L, T);
            return;
        }
    }
}

/* A job that was stopped hands in the points its running lanes are at
 * (the hand-in evaluates, so the stop is lifted for it) and ends. */
static void stop_job(lockstep *L, lbfgs_job *J)
{
    attack_ctx *a = &J->a;
    bs_attack_status why = a->status;
    a->status = BS_ATTACK_DONE;
    for (int t = 0; t < L->slots; t++) {
        lbfgs_target *T = &L->targets[t];
        if (T->job != J)
            continue;
        for (int i = 0; i < T->lanes; i++)
            if (T->lane[i]->running) {
                for (int j = 0; j < L->n; j++)
                    L->zf[j] = (float)T->lane[i]->z[j];
                attack_offer(a, T->t, L->zf, T->lane[i]->c);
            }
        target_over(L, T);
    }
    a->status = why;
}

/* Takes job J's searched targets into free target slots, lanes rows each
 * (the caller checked there are enough), and starts their first round. */
static void admit(lockstep *L, lbfgs_job *J)
{
    attack_ctx *a = &J->a;
    const bs_attack_params *p = a->p;
    int lanes = p->lanes, rounds = lanes_rounds(p), r = 0;
    a->ws = L->carrier.ws;
    a->dlogits = L->carrier.dlogits;
    for (int t = 0; t < a->k; t++) {
        if (a->res[t].target == a->original)
            continue;
        lbfgs_target *T = L->targets;
        while (T->job)
            T++;
        *T = (lbfgs_target){.job = J, .t = t, .total = rounds * lanes, .lanes = lanes};
        budget_search_init(&T->c, p->initial_c, p->c_factor, 1);
        for (int i = 0; i < lanes; i++) {
            while (L->rows[r].tgt)
                r++;
            T->lane[i] = &L->rows[r];
            T->lane[i]->tgt = T;
        }
        L->free_rows -= lanes;
        J->targets_left++;
        next_round(T);
    }
}

/* One step: every running lane advances to its next request for f and g;
 * jobs that were stopped, or whose searches all ended, leave (done hears
 * of them through finish); the requests form one batched evaluation. */
static void step(lockstep *L, void (*finish)(lockstep *L, lbfgs_job *J, void *ctx), void *ctx)
{
    const bs_attack_params *p = L->p;
    int B = 0, n = L->n;
    for (int t = 0; t < L->slots; t++)
        if (L->targets[t].job)
            advance_target(L, &L->targets[t], &B);
    for (int j = 0; j < L->slots; j++) {
        lbfgs_job *J = &L->jobs[j];
        if (!J->in_use)
            continue;
        if (J->targets_left && attack_should_stop(&J->a))
            stop_job(L, J);
        if (!J->targets_left)
            finish(L, J, ctx);
    }
    /* the rows of jobs that just left drop out of the batch */
    int kept = 0;
    for (int b = 0; b < B; b++)
        if (L->batch[b]->tgt)
            L->batch[kept++] = L->batch[b];
    B = kept;
    if (B == 0)
        return;
    /* one batched evaluation of xent(f(z), target) and its gradient */
    for (int b = 0; b < B; b++) {
        lbfgs_row *row = L->batch[b];
        to_float(L->xs + (size_t)b * n, row->z, (size_t)n);
        L->tg[b] = row->tgt->job->a.res[row->tgt->t].target;
        row->tgt->job->a.res[row->tgt->t].evaluations++;
    }
    attack_eval(&L->carrier, L->xs, L->tg, B, NULL, L->loss, L->grad, NULL, NULL);
    for (int b = 0; b < B; b++) {
        lbfgs_row *row = L->batch[b];
        const float *x = row->tgt->job->a.x, *gb = L->grad + (size_t)b * n;
        if (p->norm == 2) {
            l2_terms(row->g, L->sq + (size_t)b * n, row->z, x, gb, row->c, (size_t)n);
            continue;
        }
        L->pen[b] = 0.0;
        for (int i = 0; i < n; i++) {
            double r = row->z[i] - x[i];
            L->pen[b] += fabs(r);
            row->g[i] = row->c * (r > 0.0 ? 1.0 : r < 0.0 ? -1.0 : 0.0) + gb[i];
        }
    }
    if (p->norm == 2)
        sums_in_order(L->pen, L->sq, B, (size_t)n);
    for (int b = 0; b < B; b++)
        L->batch[b]->f = L->batch[b]->c * L->pen[b] + L->loss[b];
}

/* ------------------------------------------------------------------------ */
/* bs_attack_run's lbfgs: one job, its rows all its own */

static void finish_alone(lockstep *L, lbfgs_job *J, void *ctx)
{
    (void)L, (void)ctx;
    J->in_use = 0;
}

int attack_lbfgs(attack_ctx *a, char *err)
{
    lockstep L;
    if (lockstep_init(&L, a->m, a->p, a->k * a->p->lanes, a->arena, err))
        return -1;
    lbfgs_job *J = &L.jobs[0];
    J->a = *a;
    J->in_use = 1;
    admit(&L, J);
    while (J->in_use)
        step(&L, finish_alone, NULL);
    /* the job's results and status are the caller's ctx's */
    a->status = J->a.status;
    a->ws = L.carrier.ws;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* streams: jobs batched across requests */

int bs_attack_stream_rows(const bs_attack_params *p, int k)
{
    return k * (p->method == BS_ATTACK_LBFGS ? p->lanes : 1);
}

/* A stream job leaves: its verdict, then the feed's done. */
static void finish_stream(lockstep *L, lbfgs_job *J, void *ctx)
{
    const bs_attack_feed *feed = ctx;
    attack_verdict(&J->a, J->t0);
    J->in_use = 0;
    (void)L;
    feed->done(feed->ctx, J->from);
}

/* Sets up a job of the feed (checked, with rows free for it) in a free job
 * slot and admits it; a job that runs out of memory is answered at once. */
static void admit_job(lockstep *L, bs_attack_job *job, const bs_attack_feed *feed)
{
    const bs_model *m = L->m;
    job->rc = -1;
    memset(job->results, 0, (size_t)job->k * sizeof *job->results);
    lbfgs_job *J = L->jobs;
    while (J->in_use)
        J++;
    size_t slot = (size_t)(J - L->jobs), n = (size_t)L->n;
    *J = (lbfgs_job){.from = job, .t0 = bs_now(), .in_use = 1};
    J->a = (attack_ctx){.m = m, .p = L->p, .ctl = job->ctl, .arena = L->s, .x = job->x,
                        .n = n, .V = m->classes, .k = job->k, .targets = job->targets,
                        .res = job->results, .ws = L->carrier.ws,
                        .dlogits = L->carrier.dlogits,
                        .offer_buf = L->offer_bufs + slot * 2 * n,
                        .best_fail_prob = L->fail_probs + slot * (size_t)L->slots,
                        .status = BS_ATTACK_DONE};
    if (attack_begin(&J->a, job->err)) {
        J->in_use = 0;
        feed->done(feed->ctx, job);
        return;
    }
    job->rc = 0;
    admit(L, J);
    if (!J->targets_left)
        finish_stream(L, J, (void *)feed);
}

int bs_attack_stream(const bs_model *m, const bs_attack_params *p, int rows,
                     bs_scratch *scratch, const bs_attack_feed *feed, char *err)
{
    if (bs_attack_params_check(p, err))
        return -1;
    if (p->method != BS_ATTACK_LBFGS)
        return bs_fail(err, "only lbfgs attacks run batched across requests");
    /* at most about 256 MB of optimiser state, whatever rows asks */
    size_t most = ((size_t)256 << 20) / row_bytes(p, m->input_size);
    int cap = rows < 1 ? 1 : (size_t)rows > most ? (int)(most ? most : 1) : rows;
    bs_scratch *own = NULL;
    if (!scratch && !(scratch = own = bs_scratch_new()))
        return bs_fail(err, "out of memory for the attack");
    size_t mark = bs_scratch_mark(scratch);
    lockstep L;
    int rc = lockstep_init(&L, m, p, cap, scratch, err), taken = 0;
    bs_attack_job *waiting = NULL; /* offered, waiting for rows */
    while (!rc) {
        /* admit what the feed offers while it fits */
        for (;;) {
            if (!waiting) {
                if (!(waiting = feed->next(feed->ctx, L.free_rows)))
                    break;
                taken = 1;
                /* an invalid job is answered before it is sized */
                if (attack_check(m, waiting->x, waiting->targets, waiting->k, p,
                                 waiting->err)) {
                    waiting->rc = -1;
                    feed->done(feed->ctx, waiting);
                    waiting = NULL;
                    continue;
                }
            }
            int need = bs_attack_stream_rows(p, waiting->k);
            if (need > L.cap && !jobs_running(&L)) {
                /* too big for the stream: alone, in a lockstep of its size */
                bs_scratch_release(scratch, mark);
                if ((rc = lockstep_init(&L, m, p, need, scratch, err)))
                    break;
            }
            if (need > L.free_rows)
                break;
            admit_job(&L, waiting, feed);
            waiting = NULL;
        }
        if (rc || (!waiting && !jobs_running(&L)))
            break;
        step(&L, finish_stream, (void *)feed);
        if (!jobs_running(&L) && L.cap != cap && !waiting) {
            bs_scratch_release(scratch, mark);
            rc = lockstep_init(&L, m, p, cap, scratch, err);
        }
    }
    /* Out of memory for a job larger than the stream, or for the stream
     * after it (no job runs then): the job waiting is answered so, and the
     * stream ends; the feed's other jobs are its caller's again. */
    if (rc && waiting) {
        waiting->rc = -1;
        snprintf(waiting->err, sizeof waiting->err, "%s", err);
        feed->done(feed->ctx, waiting);
    }
    bs_scratch_release(scratch, mark);
    bs_scratch_free(own);
    return taken ? 0 : rc;
}
