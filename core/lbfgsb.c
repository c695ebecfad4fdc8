/* lbfgsb — L-BFGS-B 3.0 in C, routine for routine after the reference
 * Fortran (mainlb, active, cauchy, freev, formk, cmprlb, subsm, lnsrlb,
 * matupd, formt, bmv, hpsolb, dcsrch, dcstep), so that it takes the same
 * decisions and follows the same iterates.
 *
 * Conventions of the port. Counts and positions that the Fortran uses as
 * 1-based indices (col, head, pointr, nfree, nleft, nbreak, ileave, ...)
 * keep their Fortran values and are shifted by one where they index an
 * array; the index lists (index, indx2, iorder) hold 0-based variable
 * numbers. The small matrices keep the Fortran column-major layout through
 * 1-based macros (SY(i,j), WN(i,j), ...).
 *
 * Where the time goes differs, not the arithmetic. The n x m matrices S
 * and Y are stored by variable (ws[i*ld + slot]), so that the sums over
 * the variables (W'd in cauchy and subsm, the new rows of formk and
 * matupd) run once over memory for all slots together (slots_sum), and the
 * products W v for each free variable (cmprlb, subsm) read one short row
 * (add_w_product); the circular order of the pairs is looked up in order[]
 * instead of a modulo per element. For each number computed, the additions
 * happen in the Fortran's order. The results still differ from the
 * reference's in the last bits, for three reasons: the reference sums its
 * dot products with the system BLAS (OpenBLAS ddot, whose order of
 * additions is its own), factors with LAPACK's dpotrf and dtrtrs instead
 * of our Cholesky and triangular solves, and subsm here divides wv[j] by
 * theta once instead of dividing each product (a division per variable and
 * pair was a fifth of the time). tests/test_lbfgsb.c measures the effect:
 * given the same function values, iterates agree to 1e-12 over whole runs. */
#include "core/lbfgsb.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The line-search constants of lnsrlb. */
#define LS_FTOL 1e-3
#define LS_GTOL 0.9
#define LS_XTOL 0.1
#define LS_MAX_EVALS 20
#define STPMAX_UNCONSTRAINED 1e10

/* dcsrch's answers */
enum { DCS_FG, DCS_CONV, DCS_WARN, DCS_ERROR };

/* dcsrch's saved state (the Fortran isave/dsave). */
typedef struct dcsrch_state {
    int brackt, stage;
    double ginit, gtest, gx, gy, finit, fx, fy, stx, sty, stmin, stmax, width, width1;
} dcsrch_state;

/* Where the run resumes on the next bs_lbfgsb_step. */
enum { ST_IDLE, ST_FG_START, ST_FG_LN, ST_NEW_X, ST_DONE };

struct bs_lbfgsb {
    int n, m;
    int ld;          /* slots per variable in ws, wy: m rounded up to a multiple of 4 */
    double *l, *u;   /* n bounds */
    int *nbd;        /* n: 0 free, 1 lower only, 2 both, 3 upper only */
    double factr, pgtol, epsmch, tol;
    /* limited-memory matrices */
    double *ws, *wy; /* (n, ld) by variable: S and Y, slot p of variable i at [i*ld+p-1] */
    double *sy, *ss, *wt; /* (m, m) column-major: S'Y, S'S, Cholesky of theta*S'S+LD^-1L' */
    double *wn, *snd;     /* (2m, 2m) column-major: K's factor, and its inner products */
    /* n-vectors */
    double *g;       /* gradient at x (copied from the caller) */
    double *z;       /* Cauchy point, then subspace minimiser */
    double *r;       /* reduced gradient; g at the start of the line search; y */
    double *d;       /* search direction; s */
    double *t;       /* breakpoints; x at the start of the line search */
    double *xp;      /* subsm's copy of z before the projection */
    double *wa;      /* 8m: p, c, wbp, v of cauchy (p also wv of subsm) */
    int *index;      /* n: free variables (1..nfree), then active ones */
    int *iwhere;     /* n: bound status (see cauchy) */
    int *indx2;      /* n: cauchy's breakpoint order; freev's entering/leaving */
    int *order;      /* m: storage slot of the j-th oldest pair (refresh_order) */
    double *acc;     /* 4ld: sums over the variables kept per storage slot */
    double *coef;    /* n: coefficients for slots_sum */
    int *moved;      /* n: cauchy's variables that move along d */
    /* scalars of mainlb */
    int state;
    int prjctd, cnstnd, boxed, updatd, wrk;
    int head, col, itail, iupdat, iter, nfgv, ifun, iback, nskip, info;
    int nseg, iword, nfree, nact, ileave, nenter;
    double f, theta, fold, dnorm, dtd, gd, gdold, stp, stpmx, sbgnrm, xstep;
    int ls_task;     /* last dcsrch answer */
    dcsrch_state ls;
};

#define SY(i, j) s->sy[((i) - 1) + ((j) - 1) * (size_t)m]
#define SS(i, j) s->ss[((i) - 1) + ((j) - 1) * (size_t)m]
#define WT(i, j) s->wt[((i) - 1) + ((j) - 1) * (size_t)m]
#define WN(i, j) s->wn[((i) - 1) + ((j) - 1) * (size_t)m2]
#define WN1(i, j) s->snd[((i) - 1) + ((j) - 1) * (size_t)m2]
#define WS(k, p) s->ws[(size_t)(k) * s->ld + (p) - 1]
#define WY(k, p) s->wy[(size_t)(k) * s->ld + (p) - 1]

static double dot(int n, const double *a, const double *b)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* The Fortran MAX and MIN (no NaN rules, so they inline to one instruction). */
static inline double dmax(double a, double b) { return a > b ? a : b; }
static inline double dmin(double a, double b) { return a < b ? a : b; }

/* order[j] = the storage slot (0-based) of the j-th oldest pair, j < col:
 * the Fortran's pointr walk head, head+1, ... (mod m) done once. */
static void refresh_order(bs_lbfgsb *s)
{
    for (int j = 0; j < s->col; j++)
        s->order[j] = (s->head - 1 + j) % s->m;
}

/* acc[q] += sum over t < cnt, in order, of w[var[t]][q] * a[t] for every
 * storage slot q < ld (var NULL: variable t). Each acc[q] gets exactly the
 * Fortran's sequence of additions; four variables are folded per pass
 * ((((acc + r0 a0) + r1 a1) + r2 a2) + r3 a3, the same rounding as four
 * passes) and four slots per step, which the compiler pairs into vector
 * instructions. ld is a multiple of 4. */
static void slots_sum(int ld, double *restrict acc, const double *restrict w,
                      const int *var, const double *a, int cnt)
{
    int t = 0;
    for (; t + 4 <= cnt; t += 4) {
        const double *restrict r0 = w + (size_t)(var ? var[t] : t) * ld;
        const double *restrict r1 = w + (size_t)(var ? var[t + 1] : t + 1) * ld;
        const double *restrict r2 = w + (size_t)(var ? var[t + 2] : t + 2) * ld;
        const double *restrict r3 = w + (size_t)(var ? var[t + 3] : t + 3) * ld;
        double a0 = a[t], a1 = a[t + 1], a2 = a[t + 2], a3 = a[t + 3];
        for (int q = 0; q < ld; q += 4) {
            acc[q] = (((acc[q] + r0[q] * a0) + r1[q] * a1) + r2[q] * a2) + r3[q] * a3;
            acc[q + 1] = (((acc[q + 1] + r0[q + 1] * a0) + r1[q + 1] * a1) + r2[q + 1] * a2) +
                         r3[q + 1] * a3;
            acc[q + 2] = (((acc[q + 2] + r0[q + 2] * a0) + r1[q + 2] * a1) + r2[q + 2] * a2) +
                         r3[q + 2] * a3;
            acc[q + 3] = (((acc[q + 3] + r0[q + 3] * a0) + r1[q + 3] * a1) + r2[q + 3] * a2) +
                         r3[q + 3] * a3;
        }
    }
    for (; t < cnt; t++) {
        const double *restrict r0 = w + (size_t)(var ? var[t] : t) * ld;
        double a0 = a[t];
        for (int q = 0; q < ld; q += 4) {
            acc[q] += r0[q] * a0;
            acc[q + 1] += r0[q + 1] * a0;
            acc[q + 2] += r0[q + 2] * a0;
            acc[q + 3] += r0[q + 3] * a0;
        }
    }
}

/* v[i] = v[i] + sum_j (Y[k,j] a[j] + S[k,j] b[j]) with k = ind[i], the
 * pairs j oldest first, for i < nsub: the Fortran's order of additions for
 * each v[i], with four variables interleaved so that their chains of
 * additions overlap. */
static void add_w_product(const bs_lbfgsb *s, int nsub, const int *ind, const double *a,
                          const double *b, double *v)
{
    int col = s->col, ld = s->ld, i = 0;
    const int *order = s->order;
    for (; i + 4 <= nsub; i += 4) {
        const double *y0 = s->wy + (size_t)ind[i] * ld, *s0 = s->ws + (size_t)ind[i] * ld;
        const double *y1 = s->wy + (size_t)ind[i + 1] * ld, *s1 = s->ws + (size_t)ind[i + 1] * ld;
        const double *y2 = s->wy + (size_t)ind[i + 2] * ld, *s2 = s->ws + (size_t)ind[i + 2] * ld;
        const double *y3 = s->wy + (size_t)ind[i + 3] * ld, *s3 = s->ws + (size_t)ind[i + 3] * ld;
        double v0 = v[i], v1 = v[i + 1], v2 = v[i + 2], v3 = v[i + 3];
        for (int j = 0; j < col; j++) {
            int q = order[j];
            v0 = v0 + y0[q] * a[j] + s0[q] * b[j];
            v1 = v1 + y1[q] * a[j] + s1[q] * b[j];
            v2 = v2 + y2[q] * a[j] + s2[q] * b[j];
            v3 = v3 + y3[q] * a[j] + s3[q] * b[j];
        }
        v[i] = v0;
        v[i + 1] = v1;
        v[i + 2] = v2;
        v[i + 3] = v3;
    }
    for (; i < nsub; i++) {
        const double *y0 = s->wy + (size_t)ind[i] * ld, *s0 = s->ws + (size_t)ind[i] * ld;
        double v0 = v[i];
        for (int j = 0; j < col; j++)
            v0 = v0 + y0[order[j]] * a[j] + s0[order[j]] * b[j];
        v[i] = v0;
    }
}

/* ------------------------------------------------------------------------ */
/* dense helpers: Cholesky and triangular solves on column-major a (lda) */

/* Upper Cholesky a = R'R in place (R in the upper triangle); 0, or the
 * column where the matrix proved not positive definite. */
static int cholesky_upper(double *a, int lda, int n)
{
#define A(i, j) a[((i) - 1) + ((j) - 1) * (size_t)lda]
    for (int j = 1; j <= n; j++) {
        double sum = 0.0;
        for (int k = 1; k <= j - 1; k++) {
            double t = A(k, j);
            for (int i = 1; i <= k - 1; i++)
                t -= A(i, k) * A(i, j);
            t /= A(k, k);
            A(k, j) = t;
            sum += t * t;
        }
        sum = A(j, j) - sum;
        if (sum <= 0.0)
            return j;
        A(j, j) = sqrt(sum);
    }
    return 0;
#undef A
}

/* Solves R'x = b (transpose = 1) or Rx = b (transpose = 0) for upper
 * triangular R, b overwritten; 0, or the index of a zero diagonal. */
static int solve_upper(const double *a, int lda, int n, double *b, int transpose)
{
#define A(i, j) a[((i) - 1) + ((j) - 1) * (size_t)lda]
    for (int j = 1; j <= n; j++)
        if (A(j, j) == 0.0)
            return j;
    if (transpose) {
        b[0] /= A(1, 1);
        for (int j = 2; j <= n; j++) {
            double sum = 0.0;
            for (int k = 1; k <= j - 1; k++)
                sum += A(k, j) * b[k - 1];
            b[j - 1] = (b[j - 1] - sum) / A(j, j);
        }
    } else {
        b[n - 1] /= A(n, n);
        for (int j = n - 1; j >= 1; j--) {
            double temp = -b[j];
            for (int k = 1; k <= j; k++)
                b[k - 1] += temp * A(k, j + 1);
            b[j - 1] /= A(j, j);
        }
    }
    return 0;
#undef A
}

/* ------------------------------------------------------------------------ */
/* create, free */

bs_lbfgsb *bs_lbfgsb_new(int n, int m, const double *lower, const double *upper,
                         double factr, double pgtol)
{
    if (n < 1 || m < 1 || !(factr >= 0.0) || !lower || !upper)
        return NULL;
    for (int i = 0; i < n; i++)
        if (isnan(lower[i]) || isnan(upper[i]) || lower[i] > upper[i] ||
            lower[i] == INFINITY || upper[i] == -INFINITY)
            return NULL;
    bs_lbfgsb *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t N = (size_t)n, M = (size_t)m;
    s->n = n;
    s->m = m;
    s->ld = (m + 3) / 4 * 4;
    s->factr = factr;
    s->pgtol = pgtol;
    s->epsmch = DBL_EPSILON;
    s->l = calloc(N, sizeof(double));
    s->u = calloc(N, sizeof(double));
    s->nbd = calloc(N, sizeof(int));
    s->ws = calloc(N * (size_t)s->ld, sizeof(double));
    s->wy = calloc(N * (size_t)s->ld, sizeof(double));
    s->sy = calloc(M * M, sizeof(double));
    s->ss = calloc(M * M, sizeof(double));
    s->wt = calloc(M * M, sizeof(double));
    s->wn = calloc(4 * M * M, sizeof(double));
    s->snd = calloc(4 * M * M, sizeof(double));
    s->g = calloc(N, sizeof(double));
    s->z = calloc(N, sizeof(double));
    s->r = calloc(N, sizeof(double));
    s->d = calloc(N, sizeof(double));
    s->t = calloc(N, sizeof(double));
    s->xp = calloc(N, sizeof(double));
    s->wa = calloc(8 * M, sizeof(double));
    s->index = calloc(N, sizeof(int));
    s->iwhere = calloc(N, sizeof(int));
    s->indx2 = calloc(N, sizeof(int));
    s->order = calloc(M, sizeof(int));
    s->coef = calloc(N, sizeof(double));
    s->moved = calloc(N, sizeof(int));
    s->acc = calloc(4 * (size_t)s->ld, sizeof(double));
    if (!s->l || !s->u || !s->nbd || !s->ws || !s->wy || !s->sy || !s->ss || !s->wt ||
        !s->wn || !s->snd || !s->g || !s->z || !s->r || !s->d || !s->t || !s->xp ||
        !s->wa || !s->index || !s->iwhere || !s->indx2 || !s->order || !s->acc ||
        !s->coef || !s->moved) {
        bs_lbfgsb_free(s);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        int has_l = isfinite(lower[i]), has_u = isfinite(upper[i]);
        s->l[i] = has_l ? lower[i] : 0.0;
        s->u[i] = has_u ? upper[i] : 0.0;
        s->nbd[i] = has_l ? (has_u ? 2 : 1) : (has_u ? 3 : 0);
    }
    return s;
}

void bs_lbfgsb_free(bs_lbfgsb *s)
{
    if (!s)
        return;
    free(s->l);
    free(s->u);
    free(s->nbd);
    free(s->ws);
    free(s->wy);
    free(s->sy);
    free(s->ss);
    free(s->wt);
    free(s->wn);
    free(s->snd);
    free(s->g);
    free(s->z);
    free(s->r);
    free(s->d);
    free(s->t);
    free(s->xp);
    free(s->wa);
    free(s->index);
    free(s->iwhere);
    free(s->indx2);
    free(s->order);
    free(s->acc);
    free(s->coef);
    free(s->moved);
    free(s);
}

int bs_lbfgsb_iterations(const bs_lbfgsb *s) { return s->iter; }
double bs_lbfgsb_f(const bs_lbfgsb *s) { return s->f; }
double bs_lbfgsb_pgnorm(const bs_lbfgsb *s) { return s->sbgnrm; }

/* ------------------------------------------------------------------------ */
/* active, projgr */

/* Projects x into the box and sets iwhere (-1 no bounds, 3 l = u, else 0)
 * and the flags cnstnd (some bound) and boxed (every variable has both). */
static void active(bs_lbfgsb *s, double *x)
{
    const double *l = s->l, *u = s->u;
    const int *nbd = s->nbd;
    s->prjctd = 0;
    s->cnstnd = 0;
    s->boxed = 1;
    for (int i = 0; i < s->n; i++) {
        if (nbd[i] > 0) {
            if (nbd[i] <= 2 && x[i] <= l[i]) {
                if (x[i] < l[i]) {
                    s->prjctd = 1;
                    x[i] = l[i];
                }
            } else if (nbd[i] >= 2 && x[i] >= u[i]) {
                if (x[i] > u[i]) {
                    s->prjctd = 1;
                    x[i] = u[i];
                }
            }
        }
    }
    for (int i = 0; i < s->n; i++) {
        if (nbd[i] != 2)
            s->boxed = 0;
        if (nbd[i] == 0) {
            s->iwhere[i] = -1;
        } else {
            s->cnstnd = 1;
            s->iwhere[i] = (nbd[i] == 2 && s->u[i] - s->l[i] <= 0.0) ? 3 : 0;
        }
    }
}

/* Infinity norm of the projected gradient. */
static double projgr(const bs_lbfgsb *s, const double *x, const double *g)
{
    double norm = 0.0;
    for (int i = 0; i < s->n; i++) {
        double gi = g[i];
        if (s->nbd[i] != 0) {
            if (gi < 0.0) {
                if (s->nbd[i] >= 2)
                    gi = dmax(x[i] - s->u[i], gi);
            } else {
                if (s->nbd[i] <= 2)
                    gi = dmin(x[i] - s->l[i], gi);
            }
        }
        norm = dmax(norm, fabs(gi));
    }
    return norm;
}

/* ------------------------------------------------------------------------ */
/* the compact representation: bmv, matupd, formt */

/* p = M v for the 2col x 2col middle matrix M of the compact L-BFGS
 * formula, through its factors (S'Y's diagonal D and lower part L, and
 * J' in wt). 0, or non-zero when a triangular system is singular. */
static int bmv(const bs_lbfgsb *s, const double *v, double *p)
{
    int m = s->m, col = s->col;
    if (col == 0)
        return 0;
    /* solve [D^(1/2) 0; -L D^(-1/2) J] [p1; p2] = [v1; v2] */
    p[col] = v[col];
    for (int i = 2; i <= col; i++) {
        double sum = 0.0;
        for (int k = 1; k <= i - 1; k++)
            sum += SY(i, k) * v[k - 1] / SY(k, k);
        p[col + i - 1] = v[col + i - 1] + sum;
    }
    if (solve_upper(s->wt, m, col, p + col, 1))
        return -1;
    for (int i = 1; i <= col; i++)
        p[i - 1] = v[i - 1] / sqrt(SY(i, i));
    /* solve [-D^(1/2) D^(-1/2) L'; 0 J'] [p1; p2] = [p1; p2] */
    if (solve_upper(s->wt, m, col, p + col, 0))
        return -1;
    for (int i = 1; i <= col; i++)
        p[i - 1] = -p[i - 1] / sqrt(SY(i, i));
    for (int i = 1; i <= col; i++) {
        double sum = 0.0;
        for (int k = i + 1; k <= col; k++)
            sum += SY(k, i) * p[col + k - 1] / SY(i, i);
        p[i - 1] += sum;
    }
    return 0;
}

/* Stores s = d (already scaled by stp) and y = r as the newest pair,
 * theta = y'y / s'y, and the new row of S'Y and column of S'S. */
static void matupd(bs_lbfgsb *s, double rr, double dr)
{
    int n = s->n, m = s->m;
    if (s->iupdat <= m) {
        s->col = s->iupdat;
        s->itail = (s->head + s->iupdat - 2) % m + 1;
    } else {
        s->itail = s->itail % m + 1;
        s->head = s->head % m + 1;
    }
    int col = s->col, itail = s->itail;
    s->theta = rr / dr;
    if (s->iupdat > m) {
        /* drop the oldest pair: shift S'S up-left and S'Y's lower part */
        for (int j = 1; j <= col - 1; j++) {
            for (int k = 0; k < j; k++)
                SS(1 + k, j) = SS(2 + k, j + 1);
            for (int k = 0; k < col - j; k++)
                SY(j + k, j) = SY(j + 1 + k, j + 1);
        }
    }
    /* store the pair, and the new row of S'Y and column of S'S: d'y_j and
     * s_j'd summed over the variables in order, for every slot at once */
    int ld = s->ld;
    double *sy = s->acc, *ss = s->acc + ld;
    for (int q = 0; q < 2 * ld; q++)
        s->acc[q] = 0.0;
    for (int i = 0; i < n; i++) {
        WS(i, itail) = s->d[i];
        WY(i, itail) = s->r[i];
    }
    slots_sum(ld, sy, s->wy, NULL, s->d, n);
    slots_sum(ld, ss, s->ws, NULL, s->d, n);
    refresh_order(s);
    for (int j = 1; j <= col - 1; j++) {
        SY(col, j) = sy[s->order[j - 1]];
        SS(j, col) = ss[s->order[j - 1]];
    }
    SS(col, col) = s->stp == 1.0 ? s->dtd : s->stp * s->stp * s->dtd;
    SY(col, col) = dr;
}

/* T = theta*S'S + L D^(-1) L' in wt's upper triangle, then its Cholesky
 * factor J' there. 0, or non-zero when T is not positive definite. */
static int formt(bs_lbfgsb *s)
{
    int m = s->m, col = s->col;
    double theta = s->theta;
    for (int j = 1; j <= col; j++)
        WT(1, j) = theta * SS(1, j);
    for (int i = 2; i <= col; i++)
        for (int j = i; j <= col; j++) {
            int k1 = (i < j ? i : j) - 1;
            double sum = 0.0;
            for (int k = 1; k <= k1; k++)
                sum += SY(i, k) * SY(j, k) / SY(k, k);
            WT(i, j) = sum + theta * SS(i, j);
        }
    return cholesky_upper(s->wt, m, col) ? -3 : 0;
}

/* ------------------------------------------------------------------------ */
/* generalized Cauchy point */

/* Takes the least of t[0..n) (1-based positions 1..n in the Fortran) to
 * t[n-1], keeping the rest a heap; iheap = 0 builds the heap first. */
static void hpsolb(int n, double *t, int *iorder, int iheap)
{
    if (iheap == 0) {
        for (int k = 2; k <= n; k++) {
            double ddum = t[k - 1];
            int indxin = iorder[k - 1];
            int i = k;
            while (i > 1) {
                int j = i / 2;
                if (ddum < t[j - 1]) {
                    t[i - 1] = t[j - 1];
                    iorder[i - 1] = iorder[j - 1];
                    i = j;
                } else {
                    break;
                }
            }
            t[i - 1] = ddum;
            iorder[i - 1] = indxin;
        }
    }
    if (n > 1) {
        int i = 1;
        double out = t[0];
        int indxou = iorder[0];
        double ddum = t[n - 1];
        int indxin = iorder[n - 1];
        for (;;) {
            int j = i + i;
            if (j <= n - 1) {
                if (t[j] < t[j - 1])
                    j = j + 1;
                if (t[j - 1] < ddum) {
                    t[i - 1] = t[j - 1];
                    iorder[i - 1] = iorder[j - 1];
                    i = j;
                    continue;
                }
            }
            break;
        }
        t[i - 1] = ddum;
        iorder[i - 1] = indxin;
        t[n - 1] = out;
        iorder[n - 1] = indxou;
    }
}

/* The first local minimiser of the quadratic model along the projected
 * steepest-descent path from x, into z; sets iwhere and, for cmprlb,
 * c = W'(z - x) in wa[2m..4m). 0, or non-zero when bmv fails. */
static int cauchy(bs_lbfgsb *s, const double *x, const double *g)
{
    int n = s->n, m = s->m, col = s->col;
    double theta = s->theta;
    const double *l = s->l, *u = s->u;
    const int *nbd = s->nbd;
    int *iorder = s->indx2, *iwhere = s->iwhere;
    double *t = s->t, *d = s->d, *xcp = s->z;
    double *p = s->wa, *c = s->wa + 2 * m, *wbp = s->wa + 4 * m, *v = s->wa + 6 * m;

    if (s->sbgnrm <= 0.0) {
        memcpy(xcp, x, (size_t)n * sizeof(double));
        return 0;
    }
    int bnded = 1, nfree = n + 1, nbreak = 0, ibkmin = 0, col2 = 2 * col;
    double bkmin = 0.0, f1 = 0.0;
    /* p = W'd summed per storage slot (py: Y part, ps: S part) */
    int ld = s->ld;
    double *py = s->acc, *ps = s->acc + ld;
    for (int q = 0; q < 2 * ld; q++)
        s->acc[q] = 0.0;
    int nmoved = 0; /* variables that move along d, listed for p */

    /* Each variable's bound status and breakpoint; p = W'd as d is built. */
    for (int i = 0; i < n; i++) {
        double neggi = -g[i], tl = 0.0, tu = 0.0;
        if (iwhere[i] != 3 && iwhere[i] != -1) {
            if (nbd[i] <= 2)
                tl = x[i] - l[i];
            if (nbd[i] >= 2)
                tu = u[i] - x[i];
            int xlower = nbd[i] <= 2 && tl <= 0.0;
            int xupper = nbd[i] >= 2 && tu <= 0.0;
            iwhere[i] = 0;
            if (xlower) {
                if (neggi <= 0.0)
                    iwhere[i] = 1;
            } else if (xupper) {
                if (neggi >= 0.0)
                    iwhere[i] = 2;
            } else if (fabs(neggi) <= 0.0) {
                iwhere[i] = -3;
            }
        }
        if (iwhere[i] != 0 && iwhere[i] != -1) {
            d[i] = 0.0;
            continue;
        }
        d[i] = neggi;
        f1 -= neggi * neggi;
        if (col > 0) {
            s->moved[nmoved] = i;
            s->coef[nmoved++] = neggi;
        }
        if (nbd[i] <= 2 && nbd[i] != 0 && neggi < 0.0) {
            nbreak++;
            iorder[nbreak - 1] = i;
            t[nbreak - 1] = tl / (-neggi);
            if (nbreak == 1 || t[nbreak - 1] < bkmin) {
                bkmin = t[nbreak - 1];
                ibkmin = nbreak;
            }
        } else if (nbd[i] >= 2 && neggi > 0.0) {
            nbreak++;
            iorder[nbreak - 1] = i;
            t[nbreak - 1] = tu / neggi;
            if (nbreak == 1 || t[nbreak - 1] < bkmin) {
                bkmin = t[nbreak - 1];
                ibkmin = nbreak;
            }
        } else {
            nfree--;
            iorder[nfree - 1] = i;
            if (fabs(neggi) > 0.0)
                bnded = 0;
        }
    }
    slots_sum(ld, py, s->wy, s->moved, s->coef, nmoved);
    slots_sum(ld, ps, s->ws, s->moved, s->coef, nmoved);
    for (int j = 0; j < col; j++) {
        p[j] = py[s->order[j]];
        p[col + j] = ps[s->order[j]];
    }
    if (theta != 1.0)
        for (int j = 0; j < col; j++)
            p[col + j] *= theta;
    memcpy(xcp, x, (size_t)n * sizeof(double));
    if (nbreak == 0 && nfree == n + 1)
        return 0; /* d = 0: the GCP is x */
    for (int j = 0; j < col2; j++)
        c[j] = 0.0;

    double f2 = -theta * f1, f2_org = f2;
    if (col > 0) {
        if (bmv(s, p, v))
            return -1;
        f2 -= dot(col2, v, p);
    }
    double dtm = -f1 / f2, tsum = 0.0, tj = 0.0;
    s->nseg = 1;
    if (nbreak > 0) {
        int nleft = nbreak, iter = 1;
        for (;;) {
            /* the next breakpoint tj and its variable ibp */
            double tj0 = tj;
            int ibp;
            if (iter == 1) {
                tj = bkmin;
                ibp = iorder[ibkmin - 1];
            } else {
                if (iter == 2 && ibkmin != nbreak) {
                    t[ibkmin - 1] = t[nbreak - 1];
                    iorder[ibkmin - 1] = iorder[nbreak - 1];
                }
                hpsolb(nleft, t, iorder, iter - 2);
                tj = t[nleft - 1];
                ibp = iorder[nleft - 1];
            }
            double dt = tj - tj0;
            if (dtm < dt)
                break; /* the minimiser lies in this segment */

            /* fix variable ibp at its bound */
            tsum += dt;
            nleft--;
            iter++;
            double dibp = d[ibp], zibp;
            d[ibp] = 0.0;
            if (dibp > 0.0) {
                zibp = u[ibp] - x[ibp];
                xcp[ibp] = u[ibp];
                iwhere[ibp] = 2;
            } else {
                zibp = l[ibp] - x[ibp];
                xcp[ibp] = l[ibp];
                iwhere[ibp] = 1;
            }
            if (nleft == 0 && nbreak == n) {
                /* every variable is fixed: the GCP is xcp */
                dtm = dt;
                if (col > 0)
                    for (int j = 0; j < col2; j++)
                        c[j] += dtm * p[j];
                return 0;
            }
            s->nseg++;
            double dibp2 = dibp * dibp;
            f1 = f1 + dt * f2 + dibp2 - theta * dibp * zibp;
            f2 = f2 - theta * dibp2;
            if (col > 0) {
                for (int j = 0; j < col2; j++)
                    c[j] += dt * p[j];
                /* wbp: the row of W of the variable just fixed */
                for (int j = 0; j < col; j++) {
                    wbp[j] = WY(ibp, s->order[j] + 1);
                    wbp[col + j] = theta * WS(ibp, s->order[j] + 1);
                }
                if (bmv(s, wbp, v))
                    return -1;
                double wmc = dot(col2, c, v), wmp = dot(col2, p, v), wmw = dot(col2, wbp, v);
                for (int j = 0; j < col2; j++)
                    p[j] += -dibp * wbp[j];
                f1 += dibp * wmc;
                f2 = f2 + 2.0 * dibp * wmp - dibp2 * wmw;
            }
            f2 = dmax(s->epsmch * f2_org, f2);
            if (nleft > 0) {
                dtm = -f1 / f2;
                continue;
            }
            dtm = bnded ? 0.0 : -f1 / f2;
            break;
        }
    }
    if (dtm <= 0.0)
        dtm = 0.0;
    tsum += dtm;
    for (int i = 0; i < n; i++)
        xcp[i] += tsum * d[i];
    if (col > 0)
        for (int j = 0; j < col2; j++)
            c[j] += dtm * p[j];
    return 0;
}

/* Counts the variables entering (indx2[0..nenter)) and leaving
 * (indx2[ileave-1..n)) the free set since the last iteration, and lists
 * the free variables at the GCP (index[0..nfree)) then the active ones. */
static void freev(bs_lbfgsb *s)
{
    int n = s->n;
    int *index = s->index, *indx2 = s->indx2;
    s->nenter = 0;
    s->ileave = n + 1;
    if (s->iter > 0 && s->cnstnd) {
        for (int i = 0; i < s->nfree; i++) {
            int k = index[i];
            if (s->iwhere[k] > 0) {
                s->ileave--;
                indx2[s->ileave - 1] = k;
            }
        }
        for (int i = s->nfree; i < n; i++) {
            int k = index[i];
            if (s->iwhere[k] <= 0) {
                s->nenter++;
                indx2[s->nenter - 1] = k;
            }
        }
    }
    s->wrk = s->ileave < n + 1 || s->nenter > 0 || s->updatd;
    int nfree = 0, iact = n + 1;
    for (int i = 0; i < n; i++) {
        if (s->iwhere[i] <= 0) {
            index[nfree++] = i;
        } else {
            iact--;
            index[iact - 1] = i;
        }
    }
    s->nfree = nfree;
}

/* ------------------------------------------------------------------------ */
/* subspace minimisation: formk, cmprlb, subsm */

/* The LEL' factorization of K = [-D-Y'ZZ'Y/theta  L_a'-R_z'; L_a-R_z
 * theta*S'AA'S] in wn, updating the inner products in snd (wn1) for the
 * new pair and for the variables that entered or left the free set.
 * 0, or non-zero when a Cholesky factorization fails. */
static int formk(bs_lbfgsb *s)
{
    int n = s->n, m = s->m, m2 = 2 * m, col = s->col, head = s->head;
    int nsub = s->nfree, nenter = s->nenter, ileave = s->ileave;
    const int *ind = s->index, *indx2 = s->indx2;
    double theta = s->theta;
    int upcl;

    if (s->updatd) {
        if (s->iupdat > m) {
            /* shift the old part of WN1 */
            for (int jy = 1; jy <= m - 1; jy++) {
                int js = m + jy;
                for (int k = 0; k < m - jy; k++) {
                    WN1(jy + k, jy) = WN1(jy + 1 + k, jy + 1);
                    WN1(js + k, js) = WN1(js + 1 + k, js + 1);
                }
                for (int k = 0; k < m - 1; k++)
                    WN1(m + 1 + k, jy) = WN1(m + 2 + k, jy + 1);
            }
        }
        /* new rows in blocks (1,1), (2,1) and (2,2), and the new column in
         * block (2,1): products of the newest pair (slot inew) with every
         * slot, summed over the free (resp. active) variables in order */
        int ld = s->ld, inew = head + col - 1;
        if (inew > m)
            inew -= m;
        double *yy = s->acc, *ss = s->acc + ld, *sy = s->acc + 2 * ld, *ys = s->acc + 3 * ld;
        for (int q = 0; q < 4 * ld; q++)
            s->acc[q] = 0.0;
        for (int k = 0; k < nsub; k++)
            s->coef[k] = WY(ind[k], inew);
        slots_sum(ld, yy, s->wy, ind, s->coef, nsub); /* Y'ZZ'Y, row col */
        slots_sum(ld, ys, s->ws, ind, s->coef, nsub); /* R_z, column col */
        for (int k = nsub; k < n; k++)
            s->coef[k] = WS(ind[k], inew);
        slots_sum(ld, ss, s->ws, ind + nsub, s->coef + nsub, n - nsub); /* S'AA'S, row col */
        slots_sum(ld, sy, s->wy, ind + nsub, s->coef + nsub, n - nsub); /* L_a, row col */
        for (int j = 1; j <= col; j++) {
            int q = s->order[j - 1];
            WN1(col, j) = yy[q];
            WN1(m + col, m + j) = ss[q];
            WN1(m + col, j) = sy[q];
            WN1(m + j, col) = ys[q];
        }
        upcl = col - 1;
    } else {
        upcl = col;
    }

    /* old parts of blocks (1,1) and (2,2): variables that entered or left */
    int ipntr = head;
    for (int iy = 1; iy <= upcl; iy++) {
        int is = m + iy, jpntr = head;
        for (int jy = 1; jy <= iy; jy++) {
            int js = m + jy;
            double temp1 = 0.0, temp2 = 0.0, temp3 = 0.0, temp4 = 0.0;
            for (int k = 0; k < nenter; k++) {
                int k1 = indx2[k];
                temp1 += WY(k1, ipntr) * WY(k1, jpntr);
                temp2 += WS(k1, ipntr) * WS(k1, jpntr);
            }
            for (int k = ileave - 1; k < n; k++) {
                int k1 = indx2[k];
                temp3 += WY(k1, ipntr) * WY(k1, jpntr);
                temp4 += WS(k1, ipntr) * WS(k1, jpntr);
            }
            WN1(iy, jy) = WN1(iy, jy) + temp1 - temp3;
            WN1(is, js) = WN1(is, js) - temp2 + temp4;
            jpntr = jpntr % m + 1;
        }
        ipntr = ipntr % m + 1;
    }
    /* old part of block (2,1) */
    ipntr = head;
    for (int is = m + 1; is <= m + upcl; is++) {
        int jpntr = head;
        for (int jy = 1; jy <= upcl; jy++) {
            double temp1 = 0.0, temp3 = 0.0;
            for (int k = 0; k < nenter; k++) {
                int k1 = indx2[k];
                temp1 += WS(k1, ipntr) * WY(k1, jpntr);
            }
            for (int k = ileave - 1; k < n; k++) {
                int k1 = indx2[k];
                temp3 += WS(k1, ipntr) * WY(k1, jpntr);
            }
            if (is <= jy + m)
                WN1(is, jy) = WN1(is, jy) + temp1 - temp3;
            else
                WN1(is, jy) = WN1(is, jy) - temp1 + temp3;
            jpntr = jpntr % m + 1;
        }
        ipntr = ipntr % m + 1;
    }

    /* upper triangle of WN = [D+Y'ZZ'Y/theta  -L_a'+R_z'; -L_a+R_z  S'AA'S*theta] */
    for (int iy = 1; iy <= col; iy++) {
        int is = col + iy, is1 = m + iy;
        for (int jy = 1; jy <= iy; jy++) {
            int js = col + jy, js1 = m + jy;
            WN(jy, iy) = WN1(iy, jy) / theta;
            WN(js, is) = WN1(is1, js1) * theta;
        }
        for (int jy = 1; jy <= iy - 1; jy++)
            WN(jy, is) = -WN1(is1, jy);
        for (int jy = iy; jy <= col; jy++)
            WN(jy, is) = WN1(is1, jy);
        WN(iy, iy) = WN(iy, iy) + SY(iy, iy);
    }
    /* LL' of the (1,1) block, L^-1(-L_a'+R_z') in the (1,2) block */
    if (cholesky_upper(s->wn, m2, col))
        return -1;
    int col2 = 2 * col;
    for (int js = col + 1; js <= col2; js++)
        solve_upper(s->wn, m2, col, &WN(1, js), 1);
    /* S'AA'S*theta + (L^-1(-L_a'+R_z'))'L^-1(-L_a'+R_z') in the (2,2) block */
    for (int is = col + 1; is <= col2; is++)
        for (int js = is; js <= col2; js++)
            WN(is, js) = WN(is, js) + dot(col, &WN(1, is), &WN(1, js));
    if (cholesky_upper(&WN(col + 1, col + 1), m2, col))
        return -2;
    return 0;
}

/* r = -Z'(B(xcp - x) + g) over the free variables, with c = W'(xcp - x)
 * from cauchy. 0, or -8 when bmv fails. */
static int cmprlb(bs_lbfgsb *s, const double *x, const double *g)
{
    int n = s->n, m = s->m, col = s->col, nfree = s->nfree;
    double theta = s->theta, *r = s->r, *wa = s->wa;
    const double *z = s->z;
    const int *index = s->index;
    if (!s->cnstnd && col > 0) {
        for (int i = 0; i < n; i++)
            r[i] = -g[i];
        return 0;
    }
    for (int i = 0; i < nfree; i++) {
        int k = index[i];
        r[i] = -theta * (z[k] - x[k]) - g[k];
    }
    if (bmv(s, wa + 2 * m, wa))
        return -8;
    /* r += Y a1 + theta S a2 over the free rows, the memory slots in order
     * (wa is scratch from here on, so theta*a2 is stored in place) */
    for (int j = 0; j < col; j++)
        wa[col + j] *= theta;
    add_w_product(s, nfree, index, wa, wa + col, r);
    return 0;
}

/* Minimises the model over the free variables from the Cauchy point z
 * along the Newton direction (d = r on entry, reduced gradient), then
 * projects into the box; if the projected point is not a descent
 * direction from x, backtracks along the Newton direction to the box
 * (Morales and Nocedal 2011). z receives the result. */
static int subsm(bs_lbfgsb *s, const double *xx, const double *gg)
{
    int n = s->n, m = s->m, m2 = 2 * m, col = s->col, nsub = s->nfree;
    const int *ind = s->index, *nbd = s->nbd;
    const double *l = s->l, *u = s->u;
    double theta = s->theta, *x = s->z, *d = s->r, *xp = s->xp, *wv = s->wa;
    if (nsub <= 0)
        return 0;

    /* wv = W'Zd, summed per storage slot */
    const int *order = s->order;
    int ld = s->ld;
    double *vy = s->acc, *vs = s->acc + ld;
    for (int q = 0; q < 2 * ld; q++)
        s->acc[q] = 0.0;
    slots_sum(ld, vy, s->wy, ind, d, nsub);
    slots_sum(ld, vs, s->ws, ind, d, nsub);
    for (int i = 0; i < col; i++) {
        wv[i] = vy[order[i]];
        wv[col + i] = theta * vs[order[i]];
    }

    /* wv = K^(-1) wv */
    int col2 = 2 * col;
    if (solve_upper(s->wn, m2, col2, wv, 1))
        return -1;
    for (int i = 0; i < col; i++)
        wv[i] = -wv[i];
    if (solve_upper(s->wn, m2, col2, wv, 0))
        return -1;

    /* d = (1/theta) d + (1/theta^2) Z'W wv */
    double *wv_theta = s->acc; /* wv[j] / theta, computed once (see the top) */
    for (int jy = 0; jy < col; jy++)
        wv_theta[jy] = wv[jy] / theta;
    add_w_product(s, nsub, ind, wv_theta, wv + col, d);
    double inv_theta = 1.0 / theta;
    for (int i = 0; i < nsub; i++)
        d[i] *= inv_theta;

    /* try the projection of the Newton point */
    s->iword = 0;
    memcpy(xp, x, (size_t)n * sizeof(double));
    for (int i = 0; i < nsub; i++) {
        int k = ind[i];
        double dk = d[i], xk = x[k];
        if (nbd[k] == 0) {
            x[k] = xk + dk;
        } else if (nbd[k] == 1) {
            x[k] = dmax(l[k], xk + dk);
            if (x[k] == l[k])
                s->iword = 1;
        } else if (nbd[k] == 2) {
            xk = dmax(l[k], xk + dk);
            x[k] = dmin(u[k], xk);
            if (x[k] == l[k] || x[k] == u[k])
                s->iword = 1;
        } else {
            x[k] = dmin(u[k], xk + dk);
            if (x[k] == u[k])
                s->iword = 1;
        }
    }
    if (s->iword == 0)
        return 0;
    double dd_p = 0.0;
    for (int i = 0; i < n; i++)
        dd_p += (x[i] - xx[i]) * gg[i];
    if (dd_p <= 0.0)
        return 0;

    /* not a descent direction: back to the Cauchy point and backtrack */
    memcpy(x, xp, (size_t)n * sizeof(double));
    double alpha = 1.0, temp1 = alpha;
    int ibd = 0;
    for (int i = 1; i <= nsub; i++) {
        int k = ind[i - 1];
        double dk = d[i - 1];
        if (nbd[k] != 0) {
            if (dk < 0.0 && nbd[k] <= 2) {
                double temp2 = l[k] - x[k];
                if (temp2 >= 0.0)
                    temp1 = 0.0;
                else if (dk * alpha < temp2)
                    temp1 = temp2 / dk;
            } else if (dk > 0.0 && nbd[k] >= 2) {
                double temp2 = u[k] - x[k];
                if (temp2 <= 0.0)
                    temp1 = 0.0;
                else if (dk * alpha > temp2)
                    temp1 = temp2 / dk;
            }
            if (temp1 < alpha) {
                alpha = temp1;
                ibd = i;
            }
        }
    }
    if (alpha < 1.0) {
        double dk = d[ibd - 1];
        int k = ind[ibd - 1];
        if (dk > 0.0) {
            x[k] = u[k];
            d[ibd - 1] = 0.0;
        } else if (dk < 0.0) {
            x[k] = l[k];
            d[ibd - 1] = 0.0;
        }
    }
    for (int i = 0; i < nsub; i++) {
        int k = ind[i];
        x[k] = x[k] + alpha * d[i];
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* line search: dcstep, dcsrch (Moré and Thuente, MINPACK-2), lnsrlb */

/* A safeguarded step for the search and the update of the interval
 * [stx, sty] that brackets a step satisfying the conditions. */
static void dcstep(double *stx, double *fx, double *dx, double *sty, double *fy, double *dy,
                   double *stp, double fp, double dp, int *brackt, double stpmin, double stpmax)
{
    double sgnd = dp * (*dx / fabs(*dx));
    double theta, s, gamma, p, q, r, stpc, stpq, stpf;

    if (fp > *fx) {
        /* higher function value: the minimum is bracketed */
        theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        s = dmax(dmax(fabs(theta), fabs(*dx)), fabs(dp));
        gamma = s * sqrt((theta / s) * (theta / s) - (*dx / s) * (dp / s));
        if (*stp < *stx)
            gamma = -gamma;
        p = (gamma - *dx) + theta;
        q = ((gamma - *dx) + gamma) + dp;
        r = p / q;
        stpc = *stx + r * (*stp - *stx);
        stpq = *stx + ((*dx / ((*fx - fp) / (*stp - *stx) + *dx)) / 2.0) * (*stp - *stx);
        if (fabs(stpc - *stx) < fabs(stpq - *stx))
            stpf = stpc;
        else
            stpf = stpc + (stpq - stpc) / 2.0;
        *brackt = 1;
    } else if (sgnd < 0.0) {
        /* lower value, derivatives of opposite sign: bracketed */
        theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        s = dmax(dmax(fabs(theta), fabs(*dx)), fabs(dp));
        gamma = s * sqrt((theta / s) * (theta / s) - (*dx / s) * (dp / s));
        if (*stp > *stx)
            gamma = -gamma;
        p = (gamma - dp) + theta;
        q = ((gamma - dp) + gamma) + *dx;
        r = p / q;
        stpc = *stp + r * (*stx - *stp);
        stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        if (fabs(stpc - *stp) > fabs(stpq - *stp))
            stpf = stpc;
        else
            stpf = stpq;
        *brackt = 1;
    } else if (fabs(dp) < fabs(*dx)) {
        /* lower value, same sign, the derivative's magnitude decreases */
        theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        s = dmax(dmax(fabs(theta), fabs(*dx)), fabs(dp));
        gamma = s * sqrt(dmax(0.0, (theta / s) * (theta / s) - (*dx / s) * (dp / s)));
        if (*stp > *stx)
            gamma = -gamma;
        p = (gamma - dp) + theta;
        q = (gamma + (*dx - dp)) + gamma;
        r = p / q;
        if (r < 0.0 && gamma != 0.0)
            stpc = *stp + r * (*stx - *stp);
        else if (*stp > *stx)
            stpc = stpmax;
        else
            stpc = stpmin;
        stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        if (*brackt) {
            stpf = fabs(stpc - *stp) < fabs(stpq - *stp) ? stpc : stpq;
            if (*stp > *stx)
                stpf = dmin(*stp + 0.66 * (*sty - *stp), stpf);
            else
                stpf = dmax(*stp + 0.66 * (*sty - *stp), stpf);
        } else {
            stpf = fabs(stpc - *stp) > fabs(stpq - *stp) ? stpc : stpq;
            stpf = dmin(stpmax, stpf);
            stpf = dmax(stpmin, stpf);
        }
    } else {
        /* lower value, same sign, the magnitude does not decrease */
        if (*brackt) {
            theta = 3.0 * (fp - *fy) / (*sty - *stp) + *dy + dp;
            s = dmax(dmax(fabs(theta), fabs(*dy)), fabs(dp));
            gamma = s * sqrt((theta / s) * (theta / s) - (*dy / s) * (dp / s));
            if (*stp > *sty)
                gamma = -gamma;
            p = (gamma - dp) + theta;
            q = ((gamma - dp) + gamma) + *dy;
            r = p / q;
            stpc = *stp + r * (*sty - *stp);
            stpf = stpc;
        } else if (*stp > *stx) {
            stpf = stpmax;
        } else {
            stpf = stpmin;
        }
    }
    if (fp > *fx) {
        *sty = *stp;
        *fy = fp;
        *dy = dp;
    } else {
        if (sgnd < 0.0) {
            *sty = *stx;
            *fy = *fx;
            *dy = *dx;
        }
        *stx = *stp;
        *fx = fp;
        *dx = dp;
    }
    *stp = stpf;
}

/* One call of the Moré-Thuente search for a step with sufficient decrease
 * (ftol) and curvature (gtol): start = 1 on the first call with f and g
 * at 0. Returns DCS_FG with the next trial step in *stp, or the end. */
static int dcsrch(dcsrch_state *ls, double f, double g, double *stp, double stpmin,
                  double stpmax, int start)
{
    const double ftol = LS_FTOL, gtol = LS_GTOL, xtol = LS_XTOL;
    const double xtrapl = 1.1, xtrapu = 4.0;
    if (start) {
        if (*stp < stpmin || *stp > stpmax || g >= 0.0 || stpmax < stpmin)
            return DCS_ERROR;
        ls->brackt = 0;
        ls->stage = 1;
        ls->finit = f;
        ls->ginit = g;
        ls->gtest = ftol * ls->ginit;
        ls->width = stpmax - stpmin;
        ls->width1 = ls->width / 0.5;
        ls->stx = 0.0;
        ls->fx = ls->finit;
        ls->gx = ls->ginit;
        ls->sty = 0.0;
        ls->fy = ls->finit;
        ls->gy = ls->ginit;
        ls->stmin = 0.0;
        ls->stmax = *stp + xtrapu * *stp;
        return DCS_FG;
    }
    double ftest = ls->finit + *stp * ls->gtest;
    if (ls->stage == 1 && f <= ftest && g >= 0.0)
        ls->stage = 2;

    int task = DCS_FG;
    if (ls->brackt && (*stp <= ls->stmin || *stp >= ls->stmax))
        task = DCS_WARN; /* rounding errors prevent progress */
    if (ls->brackt && ls->stmax - ls->stmin <= xtol * ls->stmax)
        task = DCS_WARN; /* xtol test satisfied */
    if (*stp == stpmax && f <= ftest && g <= ls->gtest)
        task = DCS_WARN; /* stp = stpmax */
    if (*stp == stpmin && (f > ftest || g >= ls->gtest))
        task = DCS_WARN; /* stp = stpmin */
    if (f <= ftest && fabs(g) <= gtol * (-ls->ginit))
        task = DCS_CONV;
    if (task != DCS_FG)
        return task;

    if (ls->stage == 1 && f <= ls->fx && f > ftest) {
        /* the modified function psi while the decrease is not sufficient */
        double fm = f - *stp * ls->gtest;
        double fxm = ls->fx - ls->stx * ls->gtest;
        double fym = ls->fy - ls->sty * ls->gtest;
        double gm = g - ls->gtest;
        double gxm = ls->gx - ls->gtest;
        double gym = ls->gy - ls->gtest;
        dcstep(&ls->stx, &fxm, &gxm, &ls->sty, &fym, &gym, stp, fm, gm, &ls->brackt,
               ls->stmin, ls->stmax);
        ls->fx = fxm + ls->stx * ls->gtest;
        ls->fy = fym + ls->sty * ls->gtest;
        ls->gx = gxm + ls->gtest;
        ls->gy = gym + ls->gtest;
    } else {
        dcstep(&ls->stx, &ls->fx, &ls->gx, &ls->sty, &ls->fy, &ls->gy, stp, f, g,
               &ls->brackt, ls->stmin, ls->stmax);
    }
    if (ls->brackt) {
        if (fabs(ls->sty - ls->stx) >= 0.66 * ls->width1)
            *stp = ls->stx + 0.5 * (ls->sty - ls->stx);
        ls->width1 = ls->width;
        ls->width = fabs(ls->sty - ls->stx);
    }
    if (ls->brackt) {
        ls->stmin = dmin(ls->stx, ls->sty);
        ls->stmax = dmax(ls->stx, ls->sty);
    } else {
        ls->stmin = *stp + xtrapl * (*stp - ls->stx);
        ls->stmax = *stp + xtrapu * (*stp - ls->stx);
    }
    *stp = dmax(*stp, stpmin);
    *stp = dmin(*stp, stpmax);
    if ((ls->brackt && (*stp <= ls->stmin || *stp >= ls->stmax)) ||
        (ls->brackt && ls->stmax - ls->stmin <= xtol * ls->stmax))
        *stp = ls->stx;
    return DCS_FG;
}

/* Sets up the line search along d from x: the largest feasible step
 * stpmx, the first trial step, and the saved x (t), g (r) and f. */
static void lnsrlb_start(bs_lbfgsb *s, const double *x)
{
    int n = s->n;
    const double *d = s->d, *l = s->l, *u = s->u;
    const int *nbd = s->nbd;
    s->dtd = dot(n, d, d);
    s->dnorm = sqrt(s->dtd);
    s->stpmx = STPMAX_UNCONSTRAINED;
    if (s->cnstnd) {
        if (s->iter == 0) {
            s->stpmx = 1.0;
        } else {
            for (int i = 0; i < n; i++) {
                double a1 = d[i];
                if (nbd[i] == 0)
                    continue;
                if (a1 < 0.0 && nbd[i] <= 2) {
                    double a2 = l[i] - x[i];
                    if (a2 >= 0.0)
                        s->stpmx = 0.0;
                    else if (a1 * s->stpmx < a2)
                        s->stpmx = a2 / a1;
                } else if (a1 > 0.0 && nbd[i] >= 2) {
                    double a2 = u[i] - x[i];
                    if (a2 <= 0.0)
                        s->stpmx = 0.0;
                    else if (a1 * s->stpmx > a2)
                        s->stpmx = a2 / a1;
                }
            }
        }
    }
    if (s->iter == 0 && !s->boxed)
        s->stp = dmin(1.0 / s->dnorm, s->stpmx);
    else
        s->stp = 1.0;
    memcpy(s->t, x, (size_t)n * sizeof(double));
    memcpy(s->r, s->g, (size_t)n * sizeof(double));
    s->fold = s->f;
    s->ifun = 0;
    s->iback = 0;
}

/* One round of the line search with f and g at x. Returns 1 when x holds
 * the next trial point (an evaluation is wanted), 0 when the search ended
 * (s->info non-zero when it failed). */
static int lnsrlb(bs_lbfgsb *s, double *x)
{
    int n = s->n;
    s->gd = dot(n, s->g, s->d);
    int start = s->ifun == 0;
    if (start) {
        s->gdold = s->gd;
        if (s->gd >= 0.0) {
            s->info = -4; /* not a descent direction */
            return 0;
        }
    }
    s->ls_task = dcsrch(&s->ls, s->f, s->gd, &s->stp, 0.0, s->stpmx, start);
    s->xstep = s->stp * s->dnorm;
    if (s->ls_task == DCS_CONV || s->ls_task == DCS_WARN)
        return 0;
    /* the Fortran dcsrch reports an input error as a task that is neither
     * CONV nor WARN, so lnsrlb asks for another evaluation; so do we */
    s->ifun++;
    s->nfgv++;
    s->iback = s->ifun - 1;
    if (s->stp == 1.0) {
        memcpy(x, s->z, (size_t)n * sizeof(double));
    } else {
        for (int i = 0; i < n; i++)
            x[i] = s->stp * s->d[i] + s->t[i];
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* mainlb */

/* Drops the limited memory: B = I again. */
static void forget(bs_lbfgsb *s)
{
    s->info = 0;
    s->col = 0;
    s->head = 1;
    s->theta = 1.0;
    s->iupdat = 0;
    s->updatd = 0;
}

int bs_lbfgsb_start(bs_lbfgsb *s, double *x)
{
    s->tol = s->factr * s->epsmch;
    forget(s);
    s->itail = 0;
    s->iback = 0;
    s->nact = 0;
    s->ileave = 0;
    s->nenter = 0;
    s->fold = 0.0;
    s->dnorm = 0.0;
    s->gd = 0.0;
    s->stpmx = 0.0;
    s->sbgnrm = 0.0;
    s->stp = 0.0;
    s->gdold = 0.0;
    s->dtd = 0.0;
    s->iter = 0;
    s->nfgv = 0;
    s->nseg = 0;
    s->nskip = 0;
    s->nfree = s->n;
    s->ifun = 0;
    s->iword = 0;
    active(s, x);
    s->state = ST_FG_START;
    return BS_LBFGSB_FG;
}

/* The body of mainlb from one of its three re-entry points: after f and g
 * at x0 (ST_FG_START), after f and g at a trial point (ST_FG_LN), after an
 * iteration was reported (ST_NEW_X). */
static int mainlb(bs_lbfgsb *s, double *x, int entry)
{
    int n = s->n;
    if (entry == ST_FG_LN)
        goto line_search;
    if (entry == ST_NEW_X)
        goto new_x;

    s->nfgv = 1;
    s->sbgnrm = projgr(s, x, s->g);
    if (s->sbgnrm <= s->pgtol) {
        s->state = ST_DONE;
        return BS_LBFGSB_CONV;
    }

iteration:
    refresh_order(s);
    s->iword = -1;
    if (!s->cnstnd && s->col > 0) {
        /* unconstrained: no Cauchy point needed */
        memcpy(s->z, x, (size_t)n * sizeof(double));
        s->wrk = s->updatd;
        s->nseg = 0;
    } else {
        if (cauchy(s, x, s->g)) {
            forget(s); /* singular triangular system */
            goto iteration;
        }
        freev(s);
        s->nact = n - s->nfree;
    }
    if (s->nfree != 0 && s->col != 0) {
        if (s->wrk && formk(s)) {
            forget(s); /* K not positive definite */
            goto iteration;
        }
        int info = cmprlb(s, x, s->g);
        if (!info)
            info = subsm(s, x, s->g);
        if (info) {
            forget(s); /* singular triangular system */
            goto iteration;
        }
    }
    for (int i = 0; i < n; i++)
        s->d[i] = s->z[i] - x[i];
    lnsrlb_start(s, x);

line_search:
    if (lnsrlb(s, x) && s->iback < LS_MAX_EVALS) {
        s->state = ST_FG_LN;
        return BS_LBFGSB_FG;
    }
    if (s->info != 0 || s->iback >= LS_MAX_EVALS) {
        /* the search failed: back to the previous iterate */
        memcpy(x, s->t, (size_t)n * sizeof(double));
        memcpy(s->g, s->r, (size_t)n * sizeof(double));
        s->f = s->fold;
        if (s->col == 0) {
            if (s->info == 0) {
                s->info = -9;
                s->nfgv--;
                s->ifun--;
                s->iback--;
            }
            s->iter++;
            s->state = ST_DONE;
            return BS_LBFGSB_ABNORMAL;
        }
        if (s->info == 0)
            s->nfgv--;
        forget(s); /* bad direction: restart with B = I */
        goto iteration;
    }
    s->iter++;
    s->sbgnrm = projgr(s, x, s->g);
    s->state = ST_NEW_X;
    return BS_LBFGSB_NEW_X;

new_x:
    if (s->sbgnrm <= s->pgtol) {
        s->state = ST_DONE;
        return BS_LBFGSB_CONV;
    }
    double ddum = dmax(dmax(fabs(s->fold), fabs(s->f)), 1.0);
    if (s->fold - s->f <= s->tol * ddum) {
        s->state = ST_DONE;
        return BS_LBFGSB_CONV;
    }
    /* s = x_k+1 - x_k (in d, scaled by stp) and y = g_k+1 - g_k (in r) */
    for (int i = 0; i < n; i++)
        s->r[i] = s->g[i] - s->r[i];
    double rr = dot(n, s->r, s->r), dr;
    if (s->stp == 1.0) {
        dr = s->gd - s->gdold;
        ddum = -s->gdold;
    } else {
        dr = (s->gd - s->gdold) * s->stp;
        for (int i = 0; i < n; i++)
            s->d[i] *= s->stp;
        ddum = -s->gdold * s->stp;
    }
    if (dr <= s->epsmch * ddum) {
        /* too little curvature: skip the update */
        s->nskip++;
        s->updatd = 0;
        goto iteration;
    }
    s->updatd = 1;
    s->iupdat++;
    matupd(s, rr, dr);
    if (formt(s))
        forget(s); /* T not positive definite */
    goto iteration;
}

int bs_lbfgsb_step(bs_lbfgsb *s, double *x, double f, const double *g)
{
    switch (s->state) {
    case ST_FG_START:
    case ST_FG_LN:
        s->f = f;
        memcpy(s->g, g, (size_t)s->n * sizeof(double));
        return mainlb(s, x, s->state);
    case ST_NEW_X:
        return mainlb(s, x, ST_NEW_X);
    default:
        return BS_LBFGSB_ERROR;
    }
}
