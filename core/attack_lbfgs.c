/* attack_lbfgs — the paper's method (Szegedy et al. §4.1): minimise
 * c*||r||_2^2 + xent(f(x+r), target) (or c*||r||_1) over the box
 * x+r in [0,1]^n with L-BFGS-B 3.0 (the C port of core/lbfgsb.c, or the
 * Fortran reference) driven by reverse communication, and search for the
 * largest c that still succeeds. Every target is one optimiser instance;
 * all are stepped in lockstep so that their function evaluations form one
 * batch. */
#include "core/attack_internal.h"
#include "core/error.h"

#include "core/lbfgsb.h"
#include "core/simd.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TASK_LEN 60

/* One L-BFGS-B instance (one target) and its search over c. The variable is
 * the image z = x + r itself, boxed in [0,1]; r = z - x. */
typedef struct lbfgs_run {
    int t;              /* result row */
    int active;         /* still searching */
    int iters;          /* iterations of the current run */
    budget_search c;
    double *z, *g, *wa;
    int *iwa;
    bs_lbfgsb *native;  /* the C port (params.optimizer 1), else NULL */
    int started;        /* native: bs_lbfgsb_start was called for this run */
    double f;
    char task[TASK_LEN], csave[TASK_LEN];
    int lsave[4], isave[44];
    double dsave[29];
} lbfgs_run;

static void set_task(char *task, const char *s)
{
    memset(task, ' ', TASK_LEN);
    memcpy(task, s, strlen(s));
}

static void lbfgs_start(lbfgs_run *run, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run->z[i] = x[i];
    run->iters = 0;
    run->started = 0;
    set_task(run->task, "START");
}

/* One call of the run's optimiser (reference or C port): 1 when it wants f
 * and g at z, 2 when it finished an iteration, 0 when the run is over
 * (converged, or the line search failed; z is then the last good point). */
static int lbfgs_advance(lbfgs_run *run, int n, int m, const double *lower,
                         const double *upper, const int *nbd, const bs_attack_params *p)
{
    if (run->native) {
        int rc = run->started ? bs_lbfgsb_step(run->native, run->z, run->f, run->g)
                              : bs_lbfgsb_start(run->native, run->z);
        run->started = 1;
        return rc == BS_LBFGSB_FG ? 1 : rc == BS_LBFGSB_NEW_X ? 2 : 0;
    }
    int iprint = -1;
    setulb_(&n, &m, run->z, lower, upper, nbd, &run->f, run->g, &p->factr, &p->pgtol,
            run->wa, run->iwa, run->task, &iprint, run->csave, run->lsave, run->isave,
            run->dsave, TASK_LEN, TASK_LEN);
    if (!strncmp(run->task, "FG", 2))
        return 1;
    return !strncmp(run->task, "NEW_X", 5) ? 2 : 0;
}

/* The per-evaluation glue around the network, four lanes at a time where
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

int attack_lbfgs(attack_ctx *a, char *err)
{
    const bs_attack_params *p = a->p;
    bs_scratch *s = a->arena;
    int n = (int)a->n, k = a->k, m = p->history;
    size_t wa_len = 2 * (size_t)m * n + 5 * (size_t)n + 11 * (size_t)m * m + 8 * (size_t)m;
    lbfgs_run *runs = bs_scratch_array(s, k, lbfgs_run);
    double *lower = bs_scratch_array(s, n, double);
    double *upper = bs_scratch_array(s, n, double);
    int *nbd = bs_scratch_array(s, n, int);
    float *xs = bs_scratch_array(s, (size_t)k * n, float);
    float *grad = bs_scratch_array(s, (size_t)k * n, float);
    float *zf = bs_scratch_array(s, n, float);
    double *sq = bs_scratch_array(s, (size_t)k * n, double); /* (z - x)^2 per row */
    double *pen = bs_scratch_array(s, k, double);
    float *loss = bs_scratch_array(s, k, float);
    int *tg = bs_scratch_array(s, k, int), *rows = bs_scratch_array(s, k, int);
    if (!runs || !lower || !upper || !nbd || !xs || !grad || !zf || !sq || !pen || !loss ||
        !tg || !rows)
        return bs_fail(err, "out of memory for the attack");
    for (int i = 0; i < n; i++) {
        lower[i] = 0.0;
        upper[i] = 1.0;
        nbd[i] = 2; /* both bounds */
    }
    for (int j = 0; j < k; j++) {
        lbfgs_run *run = &runs[j];
        run->t = j;
        run->active = 1;
        run->z = bs_scratch_array(s, n, double);
        run->g = bs_scratch_array(s, n, double);
        if (p->optimizer == 1) {
            run->native = bs_lbfgsb_init(bs_scratch_alloc(s, bs_lbfgsb_size(n, m)), n, m,
                                         lower, upper, p->factr, p->pgtol);
        } else {
            run->wa = bs_scratch_array(s, wa_len, double);
            run->iwa = bs_scratch_array(s, 3 * (size_t)n, int);
        }
        if (!run->z || !run->g || (p->optimizer == 1 ? !run->native : !run->wa || !run->iwa))
            return bs_fail(err, "out of memory for the attack");
        budget_search_init(&run->c, p->initial_c, p->c_factor, 1);
        lbfgs_start(run, a->x, (size_t)n);
    }

    for (;;) {
        /* Advance every active instance until it asks for f and g at a new
         * point (FG) or its run ends; ended runs hand in their point and
         * the next c starts from x. */
        int B = 0;
        for (int j = 0; j < k; j++) {
            lbfgs_run *run = &runs[j];
            while (run->active) {
                int next = lbfgs_advance(run, n, m, lower, upper, nbd, p);
                if (next == 1) {
                    rows[B++] = j;
                    break;
                }
                if (next == 2) {
                    run->iters++;
                    a->res[run->t].iterations++;
                    if (run->iters < p->max_iterations)
                        continue;
                }
                /* converged, stopped by the iteration cap, or abnormal
                 * termination of the line search: the run is over */
                for (int i = 0; i < n; i++)
                    zf[i] = (float)run->z[i];
                int success = attack_offer(a, run->t, zf, run->c.value);
                a->res[run->t].runs++;
                if (a->ctl && a->ctl->progress)
                    a->ctl->progress(a->ctl->ctx, a->res[run->t].runs, p->search_steps);
                if (a->res[run->t].runs >= p->search_steps || attack_should_stop(a)) {
                    run->active = 0;
                    break;
                }
                budget_search_update(&run->c, success);
                lbfgs_start(run, a->x, (size_t)n);
            }
        }
        if (B == 0 || attack_should_stop(a))
            break;
        /* One batched evaluation of xent(f(z), target) and its gradient. */
        for (int b = 0; b < B; b++) {
            lbfgs_run *run = &runs[rows[b]];
            to_float(xs + (size_t)b * n, run->z, (size_t)n);
            tg[b] = a->res[run->t].target;
        }
        attack_eval(a, xs, tg, B, rows, loss, grad, NULL, NULL);
        for (int b = 0; b < B; b++) {
            lbfgs_run *run = &runs[rows[b]];
            const float *gb = grad + (size_t)b * n;
            double c = run->c.value;
            if (p->norm == 2) {
                l2_terms(run->g, sq + (size_t)b * n, run->z, a->x, gb, c, (size_t)n);
                continue;
            }
            pen[b] = 0.0;
            for (int i = 0; i < n; i++) {
                double r = run->z[i] - a->x[i];
                pen[b] += fabs(r);
                run->g[i] = c * (r > 0.0 ? 1.0 : r < 0.0 ? -1.0 : 0.0) + gb[i];
            }
        }
        if (p->norm == 2)
            sums_in_order(pen, sq, B, (size_t)n);
        for (int b = 0; b < B; b++) {
            lbfgs_run *run = &runs[rows[b]];
            run->f = run->c.value * pen[b] + loss[b];
        }
    }
    /* Stopped early: the runs still going hand in where they are (the
     * hand-in evaluates, so lift the stop for it and restore it after). */
    if (a->status != BS_ATTACK_DONE) {
        bs_attack_status why = a->status;
        a->status = BS_ATTACK_DONE;
        for (int j = 0; j < k; j++)
            if (runs[j].active) {
                for (int i = 0; i < n; i++)
                    zf[i] = (float)runs[j].z[i];
                attack_offer(a, runs[j].t, zf, runs[j].c.value);
            }
        a->status = why;
    }
    return 0;
}
