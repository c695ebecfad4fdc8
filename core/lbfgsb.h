/* lbfgsb — a C implementation of L-BFGS-B 3.0 (Byrd, Lu, Nocedal and Zhu
 * 1995; Zhu et al. 1997; Morales and Nocedal 2011), the algorithm of the
 * reference Fortran setulb_ that SciPy wraps, step for step: the generalized
 * Cauchy point along the projected steepest-descent path with the compact
 * limited-memory matrix (W, M, theta), the direct primal subspace
 * minimisation with the 3.0 projection and backtracking, the Moré-Thuente
 * line search dcsrch (ftol 1e-3, gtol 0.9, xtol 0.1, at most 20
 * evaluations), and the same stopping tests. It follows the reference's
 * iterates (tests/test_lbfgsb.c checks it on shared problems) at a fraction
 * of its bookkeeping cost.
 *
 * Reverse communication, like the reference: the caller owns x and
 * evaluates f and g whenever asked.
 *
 *     bs_lbfgsb *s = bs_lbfgsb_new(n, m, lower, upper, factr, pgtol);
 *     int rc = bs_lbfgsb_start(s, x);           // x is projected into the box
 *     while (rc == BS_LBFGSB_FG || rc == BS_LBFGSB_NEW_X) {
 *         if (rc == BS_LBFGSB_FG) f = objective(x, g);
 *         rc = bs_lbfgsb_step(s, x, f, g);
 *     }
 *
 * All memory is allocated by bs_lbfgsb_new, or is the caller's
 * (bs_lbfgsb_init); start and step never allocate. One instance serves one
 * thread at a time. */
#ifndef BS_LBFGSB_H
#define BS_LBFGSB_H

#include <stddef.h>

/* What bs_lbfgsb_start and bs_lbfgsb_step ask of the caller. */
enum {
    BS_LBFGSB_FG = 1,    /* evaluate f and g at x, then call step */
    BS_LBFGSB_NEW_X = 2, /* an iteration finished at x; call step to go on */
    BS_LBFGSB_CONV = 3,  /* converged (projected gradient or relative reduction) */
    BS_LBFGSB_ABNORMAL = 4, /* the line search failed with no memory left to
                             * drop; x and bs_lbfgsb_f are the last good iterate */
    BS_LBFGSB_ERROR = 5, /* called out of turn (step before start, after the end) */
};

typedef struct bs_lbfgsb bs_lbfgsb;

/* An optimiser for n variables with history m, bounds lower[i] <= x[i] <=
 * upper[i] (copied; -INFINITY / INFINITY for a side without bound), and the
 * reference's tolerances: stop when (f_k - f_k+1)/max(|f_k|,|f_k+1|,1) <=
 * factr * machine epsilon or when the projected gradient's largest entry
 * is <= pgtol. NULL when out of memory or the arguments are invalid (n < 1,
 * m < 1, factr < 0, lower[i] > upper[i], a NaN bound). */
bs_lbfgsb *bs_lbfgsb_new(int n, int m, const double *lower, const double *upper,
                         double factr, double pgtol);
void bs_lbfgsb_free(bs_lbfgsb *s);

/* The same optimiser in the caller's memory: bs_lbfgsb_size(n, m) bytes
 * (0 when n or m < 1) at mem, aligned to 64 bytes, which init overwrites
 * and the instance uses until the caller takes it back (bs_lbfgsb_free
 * leaves it alone). NULL when mem is NULL or the arguments are invalid, as
 * for bs_lbfgsb_new. */
size_t bs_lbfgsb_size(int n, int m);
bs_lbfgsb *bs_lbfgsb_init(void *mem, int n, int m, const double *lower, const double *upper,
                          double factr, double pgtol);

/* Starts a run from x (projected into the box in place), forgetting any
 * previous run. Returns BS_LBFGSB_FG. */
int bs_lbfgsb_start(bs_lbfgsb *s, double *x);

/* Continues the run. After BS_LBFGSB_FG pass f and g (n values) at x; after
 * BS_LBFGSB_NEW_X they are not read. x may be changed by the call (the next
 * trial point, or the last good iterate on ABNORMAL). */
int bs_lbfgsb_step(bs_lbfgsb *s, double *x, double f, const double *g);

/* Whether s runs its AVX2+FMA kernels (core/simd.h): on by default where
 * the CPU has them. on = 0 selects the portable twins, which round
 * differently in the last bits; tests check both paths. Returns 1 when the
 * AVX2 kernels are now in use. */
int bs_lbfgsb_use_simd(bs_lbfgsb *s, int on);

/* Iterations finished in the current run (NEW_X answers so far). */
int bs_lbfgsb_iterations(const bs_lbfgsb *s);
/* f at the current iterate (valid after NEW_X, CONV or ABNORMAL). */
double bs_lbfgsb_f(const bs_lbfgsb *s);
/* The largest entry of the projected gradient at the current iterate. */
double bs_lbfgsb_pgnorm(const bs_lbfgsb *s);

/* The reference this port follows: L-BFGS-B 3.0 (Nocedal and Morales;
 * liblbfgsb, the code SciPy wraps), Fortran: every argument by reference,
 * and the lengths of the two CHARACTER*60 arguments (task, csave) appended
 * as hidden size_t values. */
extern void setulb_(const int *n, const int *m, double *x, const double *l,
                    const double *u, const int *nbd, double *f, double *g,
                    const double *factr, const double *pgtol, double *wa,
                    int *iwa, char *task, const int *iprint, char *csave,
                    int *lsave, int *isave, double *dsave, size_t task_len,
                    size_t csave_len);

#endif
