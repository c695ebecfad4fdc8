/* lbfgsb — L-BFGS-B 3.0 in C, routine for routine after the reference
 * Fortran (mainlb, active, projgr, cauchy, freev, formk, cmprlb, subsm,
 * lnsrlb, matupd, formt, bmv, dcsrch, dcstep), so that it takes the same
 * decisions and follows the same iterates.
 *
 * Conventions of the port. Counts and positions that the Fortran uses as
 * 1-based indices (col, head, nfree, nleft, nbreak, ...) keep their
 * Fortran values and are shifted by one where they index an array; the
 * index lists (index, entering, leaving, iorder) hold 0-based variable
 * numbers. The small matrices keep the Fortran column-major layout through
 * 1-based macros (SY(i,j), WN(i,j), ...).
 *
 * Where the time goes differs, not the algorithm. At n = 784 and m = 15 the
 * Fortran spends its time in passes over the n variables, one quantity at
 * a time; here:
 *
 * - S and Y share one array w with a row per variable: y_i's storage slots,
 *   then s_i's (ld slots each, m rounded up to 4). A sum over variables for
 *   every slot at once (W'd in cauchy, the new rows of formk, formk's
 *   corrections for the variables that entered or left the free set) is one
 *   pass over the contributing rows (rows_sum), and W v for each free
 *   variable one short dot product per row (rows_dot). Passes over the same
 *   rows are fused: cmprlb's W v and subsm's W'Zr (rows_dot_sum), and
 *   matupd's storage of the new pair with its products with the others
 *   (store_pair). Only the slots in use are read (col, rounded up to 4
 *   where lanes past col are masked or their sums unused); the circular
 *   order of the pairs is looked up in order[].
 * - Sums skip what is zero by construction: formk's active part runs over
 *   the active variables that moved (s_i != 0), cauchy's W'd over those
 *   that move along d, and subsm restores only the free variables.
 * - The passes over the variables run as AVX2+FMA kernels where the CPU
 *   has them (core/simd.h), each with a portable twin; the classifications
 *   of cauchy and freev append to their lists without branches (a pixel's
 *   status is unpredictable), and the line search's set-up is one pass.
 * - cauchy takes the breakpoints in order through the least of each block
 *   of 16 instead of the Fortran's heap (hpsolb): the Cauchy point usually
 *   lies within the first few dozen of several hundred breakpoints, and
 *   the blocks cost one pass to set up where a heap costs several.
 * - The gradient at the start of the line search is kept by swapping two
 *   buffers instead of copying. bmv and formt use L D^-1 and D^(-1/2), and
 *   the triangular solves the reciprocals of the factors' diagonals, all
 *   computed once per factorization instead of dividing in inner loops;
 *   those diagonals are square roots of positive numbers, so the solves the
 *   Fortran checks for a zero pivot (bmv in cauchy and cmprlb, subsm) cannot
 *   fail, and their recovery paths are gone.
 *
 * Nothing of this changes a decision, but the results differ from the
 * reference's in the last bits: sums are added in other orders (and with
 * FMA in the AVX2 kernels; so does the reference, whose dot products are
 * the system BLAS's), the factorizations are ours instead of LAPACK's,
 * divisions become products with a reciprocal computed once, the largest
 * feasible step is the minimum of per-lane running values, and breakpoints
 * that tie are taken in another order. tests/test_lbfgsb.c measures the
 * effect on both kernel paths: given the same function values, the
 * iterates agree with the reference's to ~1e-11 over whole runs. */
#include "core/lbfgsb.h"

#include "core/simd.h"

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

/* cauchy keeps the least breakpoint of each block of this many (see the
 * top of the file). */
#define BREAK_BLOCK 16

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
    int owned;       /* 1: made by bs_lbfgsb_new, which freeing it frees */
    int ld;          /* slots in each half of a row of w: m rounded up to a multiple of 4 */
    int simd;        /* 1: the AVX2 kernels, 0: their portable twins */
    double *l, *u;   /* n bounds, 0 where there is none (the Fortran's l and u) */
    double *lo, *hi; /* n bounds, -INFINITY / INFINITY where there is none */
    int *nbd;        /* n: 0 free, 1 lower only, 2 both, 3 upper only */
    double factr, pgtol, epsmch, tol;
    /* limited-memory matrices */
    double *w;       /* (n, 2ld): slot p of y_i at [2ld i + p], of s_i at [2ld i + ld + p] */
    double *sy, *ss, *wt; /* (m, m) column-major: S'Y, S'S, Cholesky of theta*S'S+LD^-1L' */
    double *ldinv;   /* (m, m) column-major: SY(i,k)/SY(k,k) for i > k, i.e. L D^-1 */
    double *dinv_sqrt; /* m: 1/sqrt(SY(i,i)), i.e. D^(-1/2) */
    double *wt_rdiag; /* m: 1 / wt's diagonal (cholesky_upper) */
    double *wn, *snd; /* (2m, 2m) column-major: K's factor, and its inner products */
    double *wn_rdiag; /* 2m: 1 / the factor's diagonal */
    /* n-vectors */
    double *g;       /* gradient at x (copied from the caller) */
    double *gold;    /* gradient at the start of the line search (swapped with g) */
    double *z;       /* Cauchy point, then subspace minimiser */
    double *r;       /* reduced gradient, then subsm's direction (nfree values) */
    double *d;       /* search direction */
    double *xold;    /* x at the start of the line search */
    double *t, *tden; /* cauchy's breakpoints: distance to the bound, |g_i| */
    double *bmin;    /* n/16 + 1: the least breakpoint of each block (block_min) ... */
    int *bpos;       /* n/16 + 1: ... and its position */
    double *coef;    /* coefficients of rows_sum, beside list */
    double *zsave;   /* subsm: z of the free variables before the projection */
    double *wa;      /* 8m: p, c, wbp, v of cauchy (p also wv of subsm) */
    double *acc;     /* 4 x 2ld: sums over rows (rows_sum, store_pair, ...) */
    double *cvec;    /* 2ld: rows_dot's coefficients, by storage slot */
    int *index;      /* n: free variables at the GCP (nfree of them) */
    int *iwhere;     /* n: bound status (see classify_portable) */
    int *entering, *leaving; /* n each: freev's variables that entered (nenter) and
                              * left (nleave) the free set, the Fortran's indx2 */
    int *iorder;     /* n: cauchy's breakpoints */
    int *list;       /* n: variables for rows_sum */
    unsigned char *was_free; /* (n+3)/4: bit i%4 of byte i/4 set when variable i was
                              * free (iwhere <= 0) at the last freev */
    int *slist;      /* n: matupd's variables with s_i != 0 (nslist of them) ... */
    double *scoef;   /* n: ... and their s_i, for formk */
    int *order;      /* m: storage slot of the j-th oldest pair (refresh_order) */
    /* scalars of mainlb */
    int state;
    int prjctd, cnstnd, boxed, updatd, wrk;
    int head, col, itail, iupdat, iter, nfgv, ifun, iback, nskip, info;
    int nseg, iword, nfree, nact, nenter, nleave, nslist;
    double f, theta, fold, dnorm, dtd, gd, gdold, stp, stpmx, sbgnrm, xstep;
    int ls_task;     /* last dcsrch answer */
    dcsrch_state ls;
};

#define SY(i, j) s->sy[((i) - 1) + ((j) - 1) * (size_t)m]
#define SS(i, j) s->ss[((i) - 1) + ((j) - 1) * (size_t)m]
#define WT(i, j) s->wt[((i) - 1) + ((j) - 1) * (size_t)m]
#define LDINV(i, j) s->ldinv[((i) - 1) + ((j) - 1) * (size_t)m]
#define WN(i, j) s->wn[((i) - 1) + ((j) - 1) * (size_t)m2]
#define WN1(i, j) s->snd[((i) - 1) + ((j) - 1) * (size_t)m2]
/* y_k and s_k in storage slot q (0-based) */
#define WY(k, q) s->w[(size_t)(k) * 2 * s->ld + (q)]
#define WS(k, q) s->w[(size_t)(k) * 2 * s->ld + s->ld + (q)]

/* The Fortran MAX and MIN (no NaN rules, so they inline to one instruction). */
static inline double dmax(double a, double b) { return a > b ? a : b; }
static inline double dmin(double a, double b) { return a < b ? a : b; }

/* Slots of w in use, rounded up to whole vectors of 4. */
static inline int slot_width(const bs_lbfgsb *s) { return (s->col + 3) / 4 * 4; }

/* ------------------------------------------------------------------------ */
/* kernels, portable: the passes over the variables. Each has an AVX2 twin
 * below and is reached through the dispatchers after it. */

/* a'b, in four interleaved partial sums. */
static double dot_portable(int n, const double *a, const double *b)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* dst = src, and returns src'd. */
static double copy_dot_portable(int n, double *dst, const double *src, const double *d)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int k = 0; k < 4; k++)
            dst[i + k] = src[i + k];
        s0 += src[i] * d[i];
        s1 += src[i + 1] * d[i + 1];
        s2 += src[i + 2] * d[i + 2];
        s3 += src[i + 3] * d[i + 3];
    }
    for (; i < n; i++) {
        dst[i] = src[i];
        s0 += src[i] * d[i];
    }
    return (s0 + s1) + (s2 + s3);
}

/* (a - b)'c */
static double diff_dot_portable(int n, const double *a, const double *b, const double *c)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (a[i] - b[i]) * c[i];
        s1 += (a[i + 1] - b[i + 1]) * c[i + 1];
        s2 += (a[i + 2] - b[i + 2]) * c[i + 2];
        s3 += (a[i + 3] - b[i + 3]) * c[i + 3];
    }
    for (; i < n; i++)
        s0 += (a[i] - b[i]) * c[i];
    return (s0 + s1) + (s2 + s3);
}

/* out = a d + base */
static void axpy_portable(int n, double *out, double a, const double *d, const double *base)
{
    for (int i = 0; i < n; i++)
        out[i] = a * d[i] + base[i];
}

/* t[k] = t[k] / den[k] */
static void divide_portable(int n, double *t, const double *den)
{
    for (int k = 0; k < n; k++)
        t[k] = t[k] / den[k];
}

/* The infinity norm of the projected gradient (lo, hi infinite where
 * there is no bound, which leaves g_i as it is, as the Fortran's nbd tests
 * do). */
static double projgr_portable(int n, const double *x, const double *g, const double *lo,
                              const double *hi)
{
    double norm = 0.0;
    for (int i = 0; i < n; i++) {
        double gi = g[i];
        gi = gi < 0.0 ? dmax(x[i] - hi[i], gi) : dmin(x[i] - lo[i], gi);
        norm = dmax(norm, fabs(gi));
    }
    return norm;
}

/* What the line search's set-up computes in one pass over the variables. */
typedef struct ls_setup {
    double dtd, gd; /* d'd and g'd */
    double stpmx;   /* the largest step along d inside the box, at most 1e10 */
} ls_setup;

/* d = z - x, xold = x, and d'd, g'd, and (bounded) the largest feasible
 * step, the Fortran's loop of lnsrlb as it stands. */
static ls_setup ls_setup_portable(const bs_lbfgsb *s, const double *x, int bounded)
{
    int n = s->n;
    const double *z = s->z, *g = s->gold, *l = s->l, *u = s->u;
    const int *nbd = s->nbd;
    double *d = s->d, *xold = s->xold;
    ls_setup o = {0.0, 0.0, STPMAX_UNCONSTRAINED};
    for (int i = 0; i < n; i++) {
        d[i] = z[i] - x[i];
        xold[i] = x[i];
    }
    o.dtd = dot_portable(n, d, d);
    o.gd = dot_portable(n, g, d);
    if (!bounded)
        return o;
    for (int i = 0; i < n; i++) {
        double a1 = d[i];
        if (nbd[i] == 0)
            continue;
        if (a1 < 0.0 && nbd[i] <= 2) {
            double a2 = l[i] - x[i];
            if (a2 >= 0.0)
                o.stpmx = 0.0;
            else if (a1 * o.stpmx < a2)
                o.stpmx = a2 / a1;
        } else if (a1 > 0.0 && nbd[i] >= 2) {
            double a2 = u[i] - x[i];
            if (a2 <= 0.0)
                o.stpmx = 0.0;
            else if (a1 * o.stpmx > a2)
                o.stpmx = a2 / a1;
        }
    }
    return o;
}

/* acc[q] = sum_t coef[t] y_var[t][q] and acc[ld + q] = sum_t coef[t]
 * s_var[t][q] for the slots q < cw: W' times a vector that is coef on the
 * variables var and zero elsewhere, per storage slot. */
static void rows_sum_portable(double *acc, const double *w, int ld, int cw, const int *var,
                              const double *coef, int cnt)
{
    size_t ld2 = 2 * (size_t)ld;
    for (int q = 0; q < cw; q++)
        acc[q] = acc[ld + q] = 0.0;
    for (int t = 0; t < cnt; t++) {
        const double *r = w + (size_t)var[t] * ld2;
        double c = coef[t];
        for (int q = 0; q < cw; q += 4) {
            acc[q] += c * r[q];
            acc[q + 1] += c * r[q + 1];
            acc[q + 2] += c * r[q + 2];
            acc[q + 3] += c * r[q + 3];
            acc[ld + q] += c * r[ld + q];
            acc[ld + q + 1] += c * r[ld + q + 1];
            acc[ld + q + 2] += c * r[ld + q + 2];
            acc[ld + q + 3] += c * r[ld + q + 3];
        }
    }
}

/* One row of W (its y part r[0..col), its s part r[ld..ld+col)) times c. */
static double row_dot(const double *r, int ld, int col, const double *c)
{
    double sy = 0.0, ss = 0.0;
    for (int q = 0; q < col; q++) {
        sy += r[q] * c[q];
        ss += r[ld + q] * c[ld + q];
    }
    return sy + ss;
}

/* v[t] += y_ind[t]'c[0..col) + s_ind[t]'c[ld..ld+col) for t < cnt: the
 * rows ind of W times a vector given by storage slot. The slots in use are
 * always 0..col-1 (head is 1 until the memory is full, and then col = m),
 * and only those are read: the others may hold anything from an earlier
 * run. */
static void rows_dot_portable(double *v, const double *w, int ld, int col, const int *ind, int cnt,
                              const double *c)
{
    size_t ld2 = 2 * (size_t)ld;
    for (int t = 0; t < cnt; t++) {
        v[t] += row_dot(w + (size_t)ind[t] * ld2, ld, col, c);
    }
}

/* What cauchy's classification of the variables found. */
typedef struct gcp_lists {
    int nmoved; /* variables that move along d = -g: list[0..nmoved), coef = -g */
    int nbreak; /* those of them that reach a bound: iorder[0..nbreak), t = the
                 * distance to it, tden = |g| (t / tden is the breakpoint) */
    int nfree;  /* the others, which move without a breakpoint */
    int bnded;  /* 0 when one of those has g != 0 */
} gcp_lists;

/* cauchy's first loop for the variables i0..i1-1 at x with gradient g:
 * iwhere = 1 at the lower bound and pushed against it, 2 the same at the
 * upper, -3 inside with g = 0, 0 otherwise (-1, no bounds, and 3, l = u,
 * stay); d = -g for the variables that move (iwhere 0 or -1), else 0; and
 * the lists of o continued. */
static void classify_portable(bs_lbfgsb *s, const double *x, const double *g, int i0, int i1,
                              gcp_lists *o)
{
    int *iwhere = s->iwhere;
    const double *lo = s->lo, *hi = s->hi;
    for (int i = i0; i < i1; i++) {
        double neggi = -g[i], tl = x[i] - lo[i], tu = hi[i] - x[i];
        int wi = iwhere[i];
        if (wi != 3 && wi != -1) {
            if (tl <= 0.0)
                wi = neggi <= 0.0;
            else if (tu <= 0.0)
                wi = neggi >= 0.0 ? 2 : 0;
            else
                wi = neggi == 0.0 ? -3 : 0;
            iwhere[i] = wi;
        }
        if (wi != 0 && wi != -1) {
            s->d[i] = 0.0;
            continue;
        }
        s->d[i] = neggi;
        s->list[o->nmoved] = i;
        s->coef[o->nmoved++] = neggi;
        if (neggi < 0.0 && lo[i] > -INFINITY) {
            s->iorder[o->nbreak] = i;
            s->t[o->nbreak] = tl;
            s->tden[o->nbreak++] = -neggi;
        } else if (neggi > 0.0 && hi[i] < INFINITY) {
            s->iorder[o->nbreak] = i;
            s->t[o->nbreak] = tu;
            s->tden[o->nbreak++] = neggi;
        } else {
            o->nfree++;
            if (neggi != 0.0)
                o->bnded = 0;
        }
    }
}

/* freev's loop for the variables i0..i1-1 (i0 a multiple of 4): the free
 * ones (iwhere <= 0) join index, and, when track, entering or leaving if
 * they changed sides since the last call; counts in s->nfree, nenter,
 * nleave. */
static void freev_portable(bs_lbfgsb *s, int i0, int i1, int track)
{
    for (int i = i0; i < i1; i++) {
        unsigned char bit = (unsigned char)(1u << (i % 4)), *was = &s->was_free[i / 4];
        int fr = s->iwhere[i] <= 0;
        if (fr)
            s->index[s->nfree++] = i;
        if (track && fr && !(*was & bit))
            s->entering[s->nenter++] = i;
        else if (track && !fr && (*was & bit))
            s->leaving[s->nleave++] = i;
        *was = (unsigned char)(fr ? *was | bit : *was & ~bit);
    }
}

/* matupd's pass for the variables i0..n-1: y = g - gold and s = stp d
 * into storage slot q of their rows, after adding s_i times the row as it
 * was to acc (W's, per slot; slot q's sum is of the replaced pair and
 * unused), and the variables with s != 0 appended to slist and scoef
 * (from *nmoved on). Returns the sum of y^2. */
static double store_pair_portable(bs_lbfgsb *s, int q, int i0, int *nmoved, double *acc)
{
    size_t ld2 = 2 * (size_t)s->ld, ld = (size_t)s->ld;
    int cw = slot_width(s);
    double stp = s->stp, rr = 0.0;
    for (int i = i0; i < s->n; i++) {
        double yi = s->g[i] - s->gold[i], si = stp * s->d[i];
        double *row = s->w + (size_t)i * ld2;
        if (si != 0.0) {
            for (int p = 0; p < cw; p++) {
                acc[p] += si * row[p];
                acc[ld + p] += si * row[ld + p];
            }
            s->slist[*nmoved] = i;
            s->scoef[(*nmoved)++] = si;
        }
        row[q] = yi;
        row[ld + q] = si;
        rr += yi * yi;
    }
    return rr;
}

/* cmprlb's and subsm's pass over the free rows: v[t] += row ind[t] of W
 * times c (as rows_dot_portable), then acc (2ld) += v[t] times that row
 * (as rows_sum_portable); with ynew (a slot, or -1 for none), formk's
 * products of that slot's column of Y with every slot too, acc[2ld..4ld)
 * += y_ind[t][ynew] times the row. The caller zeroes acc. */
static void rows_dot_sum_portable(double *v, double *acc, const double *w, int ld, int col,
                                  const int *ind, int cnt, const double *c, int ynew)
{
    size_t ld2 = 2 * (size_t)ld;
    double *acc2 = acc + ld2;
    for (int t = 0; t < cnt; t++) {
        const double *r = w + (size_t)ind[t] * ld2;
        double vt = v[t] + row_dot(r, ld, col, c);
        v[t] = vt;
        for (int q = 0; q < col; q++) {
            acc[q] += vt * r[q];
            acc[ld + q] += vt * r[ld + q];
        }
        if (ynew < 0)
            continue;
        double yt = r[ynew];
        for (int q = 0; q < col; q++) {
            acc2[q] += yt * r[q];
            acc2[ld + q] += yt * r[ld + q];
        }
    }
}

/* The first position of the least of a[0..n), n >= 1 (cauchy's
 * breakpoints: the comparisons go to conditional moves, as the order is
 * random). */
static int first_least_portable(const double *a, int n)
{
    int pos = 0;
    double least = a[0];
    for (int k = 1; k < n; k++) {
        int less = a[k] < least;
        least = less ? a[k] : least;
        pos = less ? k : pos;
    }
    return pos;
}

/* cmprlb's r[t] = -theta (z_k - x_k) - g_k for k = ind[t], t < cnt. */
static void reduced_gradient_portable(double *r, const int *ind, int cnt, double theta,
                                      const double *z, const double *x, const double *g)
{
    for (int t = 0; t < cnt; t++) {
        int k = ind[t];
        r[t] = -theta * (z[k] - x[k]) - g[k];
    }
}

/* subsm's projection: d[t] *= scale, and z_k = max(lo_k, min(hi_k, z_k +
 * d[t])) for k = ind[t] (infinite bounds leave a side free), the old z_k
 * kept in zold[t]. Returns 1 when some z_k landed on a bound. */
static int project_portable(double *z, double *zold, double *d, const int *ind, int cnt,
                            double scale, const double *lo, const double *hi)
{
    int hit = 0;
    for (int t = 0; t < cnt; t++) {
        int k = ind[t];
        double dk = d[t] * scale, zk = z[k];
        d[t] = dk;
        zold[t] = zk;
        double zn = dmin(hi[k], dmax(lo[k], zk + dk));
        z[k] = zn;
        hit |= (zn == lo[k]) | (zn == hi[k]);
    }
    return hit;
}

/* formk's active variables that moved: those of slist (with scoef) whose
 * iwhere > 0, into list and coef; returns their number. */
static int active_moved_portable(bs_lbfgsb *s, int k0, int cnt)
{
    for (int k = k0; k < s->nslist; k++) {
        int i = s->slist[k];
        s->list[cnt] = i;
        s->coef[cnt] = s->scoef[k];
        cnt += s->iwhere[i] > 0;
    }
    return cnt;
}

#if BS_HAVE_AVX2

/* ------------------------------------------------------------------------ */
/* kernels, AVX2 + FMA */

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")

BS_AVX2 static ALWAYS_INLINE double hsum(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* [sum a0, sum a1, sum a2, sum a3] */
BS_AVX2 static ALWAYS_INLINE __m256d hsum4(__m256d a0, __m256d a1, __m256d a2, __m256d a3)
{
    __m256d s01 = _mm256_hadd_pd(a0, a1), s23 = _mm256_hadd_pd(a2, a3);
    return _mm256_add_pd(_mm256_permute2f128_pd(s01, s23, 0x20),
                         _mm256_permute2f128_pd(s01, s23, 0x31));
}

/* The lists above grow by a vector of 4 at a time: the lanes whose bit is
 * set in a 4-bit mask are moved to the front (COMPRESS_PD for doubles, as
 * pairs of 32-bit lanes; COMPRESS_EPI32 for ints) and all 4 are stored,
 * the list then advancing by the mask's bit count. A list never holds more
 * entries than variables seen, so the 4 stores stay inside it. */
static const int COMPRESS_PD[16][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0, 0}, {2, 3, 0, 0, 0, 0, 0, 0},
    {0, 1, 2, 3, 0, 0, 0, 0}, {4, 5, 0, 0, 0, 0, 0, 0}, {0, 1, 4, 5, 0, 0, 0, 0},
    {2, 3, 4, 5, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 0, 0}, {6, 7, 0, 0, 0, 0, 0, 0},
    {0, 1, 6, 7, 0, 0, 0, 0}, {2, 3, 6, 7, 0, 0, 0, 0}, {0, 1, 2, 3, 6, 7, 0, 0},
    {4, 5, 6, 7, 0, 0, 0, 0}, {0, 1, 4, 5, 6, 7, 0, 0}, {2, 3, 4, 5, 6, 7, 0, 0},
    {0, 1, 2, 3, 4, 5, 6, 7},
};
static const int COMPRESS_EPI32[16][4] = {
    {0, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 0}, {0, 1, 0, 0}, {2, 0, 0, 0}, {0, 2, 0, 0},
    {1, 2, 0, 0}, {0, 1, 2, 0}, {3, 0, 0, 0}, {0, 3, 0, 0}, {1, 3, 0, 0}, {0, 1, 3, 0},
    {2, 3, 0, 0}, {0, 2, 3, 0}, {1, 2, 3, 0}, {0, 1, 2, 3},
};
static const int BITS4[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* Appends the lanes of v selected by mask to list (at *cnt) ... */
BS_AVX2 static ALWAYS_INLINE void append_pd(double *list, int cnt, __m256d v, int mask)
{
    __m256i perm = _mm256_loadu_si256((const __m256i *)COMPRESS_PD[mask]);
    _mm256_storeu_pd(list + cnt, _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), perm)));
}

/* ... and the variable numbers i..i+3 (in vi) so selected to list. */
BS_AVX2 static ALWAYS_INLINE void append_index(int *list, int cnt, __m128i vi, int mask)
{
    __m128i perm = _mm_loadu_si128((const __m128i *)COMPRESS_EPI32[mask]);
    _mm_storeu_si128((__m128i *)(list + cnt),
                     _mm_castps_si128(_mm_permutevar_ps(_mm_castsi128_ps(vi), perm)));
}

BS_AVX2 static void classify_avx2(bs_lbfgsb *s, const double *x, const double *g, int i0, int i1,
                                  gcp_lists *o)
{
    int *iwhere = s->iwhere, *moved = s->list, *iorder = s->iorder, i = i0;
    const double *lo = s->lo, *hi = s->hi;
    double *d = s->d, *coef = s->coef, *t = s->t, *tden = s->tden;
    const __m256d zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    const __m256d ninf = _mm256_set1_pd(-INFINITY), pinf = _mm256_set1_pd(INFINITY);
    const __m256i izero = _mm256_setzero_si256(), ione = _mm256_set1_epi64x(1);
    const __m256i itwo = _mm256_set1_epi64x(2), iminus3 = _mm256_set1_epi64x(-3);
    const __m256i ithree = _mm256_set1_epi64x(3), iminus1 = _mm256_set1_epi64x(-1);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    __m256d unbounded = zero;
    int nmoved = o->nmoved, nbreak = o->nbreak, nfree = o->nfree;
    for (; i + 4 <= i1; i += 4) {
        __m256d xi = _mm256_loadu_pd(x + i), loi = _mm256_loadu_pd(lo + i);
        __m256d hii = _mm256_loadu_pd(hi + i);
        __m256d neggi = _mm256_xor_pd(_mm256_loadu_pd(g + i), sign);
        __m256d tl = _mm256_sub_pd(xi, loi), tu = _mm256_sub_pd(hii, xi);
        __m256d xlower = _mm256_cmp_pd(tl, zero, _CMP_LE_OQ);
        __m256d xupper = _mm256_cmp_pd(tu, zero, _CMP_LE_OQ);
        __m256d s1 = _mm256_and_pd(xlower, _mm256_cmp_pd(neggi, zero, _CMP_LE_OQ));
        __m256d s2 = _mm256_andnot_pd(xlower, _mm256_and_pd(xupper, _mm256_cmp_pd(neggi, zero, _CMP_GE_OQ)));
        __m256d s3 = _mm256_andnot_pd(_mm256_or_pd(xlower, xupper), _mm256_cmp_pd(neggi, zero, _CMP_EQ_OQ));
        __m256i wnew = _mm256_or_si256(_mm256_and_si256(_mm256_castpd_si256(s1), ione),
                                       _mm256_or_si256(_mm256_and_si256(_mm256_castpd_si256(s2), itwo),
                                                       _mm256_and_si256(_mm256_castpd_si256(s3), iminus3)));
        __m256i wold = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(iwhere + i)));
        __m256i keep = _mm256_or_si256(_mm256_cmpeq_epi64(wold, ithree), _mm256_cmpeq_epi64(wold, iminus1));
        __m256i wi = _mm256_blendv_epi8(wnew, wold, keep);
        _mm_storeu_si128((__m128i *)(iwhere + i),
                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(wi, even)));
        __m256d moves = _mm256_castsi256_pd(_mm256_or_si256(_mm256_cmpeq_epi64(wi, izero),
                                                            _mm256_cmpeq_epi64(wi, iminus1)));
        _mm256_storeu_pd(d + i, _mm256_and_pd(moves, neggi));
        __m256d to_l = _mm256_and_pd(_mm256_and_pd(moves, _mm256_cmp_pd(neggi, zero, _CMP_LT_OQ)),
                                     _mm256_cmp_pd(loi, ninf, _CMP_NEQ_OQ));
        __m256d to_u = _mm256_and_pd(_mm256_and_pd(moves, _mm256_cmp_pd(neggi, zero, _CMP_GT_OQ)),
                                     _mm256_cmp_pd(hii, pinf, _CMP_NEQ_OQ));
        __m256d brk = _mm256_or_pd(to_l, to_u), fr = _mm256_andnot_pd(brk, moves);
        unbounded = _mm256_or_pd(unbounded, _mm256_and_pd(fr, _mm256_cmp_pd(neggi, zero, _CMP_NEQ_OQ)));
        int mm = _mm256_movemask_pd(moves), mb = _mm256_movemask_pd(brk);
        __m128i vi = _mm_add_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(i));
        append_index(moved, nmoved, vi, mm);
        append_pd(coef, nmoved, neggi, mm);
        nmoved += BITS4[mm];
        append_index(iorder, nbreak, vi, mb);
        append_pd(t, nbreak, _mm256_blendv_pd(tu, tl, to_l), mb);
        append_pd(tden, nbreak, _mm256_andnot_pd(sign, neggi), mb);
        nbreak += BITS4[mb];
        nfree += BITS4[_mm256_movemask_pd(fr)];
    }
    o->nmoved = nmoved;
    o->nbreak = nbreak;
    o->nfree = nfree;
    if (_mm256_movemask_pd(unbounded))
        o->bnded = 0;
    classify_portable(s, x, g, i, i1, o);
}

BS_AVX2 static void freev_avx2(bs_lbfgsb *s, int i0, int i1, int track)
{
    int i = i0;
    for (; i + 4 <= i1; i += 4) {
        __m128i wi = _mm_loadu_si128((const __m128i *)(s->iwhere + i));
        int mf = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(_mm_set1_epi32(1), wi)));
        __m128i vi = _mm_add_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(i));
        append_index(s->index, s->nfree, vi, mf);
        s->nfree += BITS4[mf];
        if (track) {
            int mw = s->was_free[i / 4], me = mf & ~mw, ml = mw & ~mf;
            append_index(s->entering, s->nenter, vi, me);
            s->nenter += BITS4[me];
            append_index(s->leaving, s->nleave, vi, ml);
            s->nleave += BITS4[ml];
        }
        s->was_free[i / 4] = (unsigned char)mf;
    }
    freev_portable(s, i, i1, track);
}

BS_AVX2 static int first_least_avx2(const double *a, int n)
{
    if (n < 8)
        return first_least_portable(a, n);
    __m256d m0 = _mm256_loadu_pd(a), m1 = _mm256_loadu_pd(a + n - 4);
    for (int k = 4; k + 4 <= n; k += 4)
        m0 = _mm256_min_pd(m0, _mm256_loadu_pd(a + k));
    m0 = _mm256_min_pd(m0, m1);
    __m128d h = _mm_min_pd(_mm256_castpd256_pd128(m0), _mm256_extractf128_pd(m0, 1));
    __m256d least = _mm256_set1_pd(dmin(_mm_cvtsd_f64(h), _mm_cvtsd_f64(_mm_unpackhi_pd(h, h))));
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        int hit = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(a + k), least, _CMP_EQ_OQ));
        if (hit)
            return k + __builtin_ctz((unsigned)hit);
    }
    int hit = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(a + n - 4), least, _CMP_EQ_OQ));
    return hit ? n - 4 + __builtin_ctz((unsigned)hit) : 0;
}

BS_AVX2 static void reduced_gradient_avx2(double *r, const int *ind, int cnt, double theta,
                                          const double *z, const double *x, const double *g)
{
    const __m256d mtheta = _mm256_set1_pd(-theta);
    int t = 0;
    for (; t + 4 <= cnt; t += 4) {
        __m128i k = _mm_loadu_si128((const __m128i *)(ind + t));
        __m256d dz = _mm256_sub_pd(_mm256_i32gather_pd(z, k, 8), _mm256_i32gather_pd(x, k, 8));
        _mm256_storeu_pd(r + t, _mm256_sub_pd(_mm256_mul_pd(mtheta, dz), _mm256_i32gather_pd(g, k, 8)));
    }
    reduced_gradient_portable(r + t, ind + t, cnt - t, theta, z, x, g);
}

BS_AVX2 static int project_avx2(double *z, double *zold, double *d, const int *ind, int cnt,
                                double scale, const double *lo, const double *hi)
{
    const __m256d vscale = _mm256_set1_pd(scale);
    __m256d hits = _mm256_setzero_pd();
    int t = 0;
    for (; t + 4 <= cnt; t += 4) {
        __m128i k = _mm_loadu_si128((const __m128i *)(ind + t));
        __m256d dk = _mm256_mul_pd(_mm256_loadu_pd(d + t), vscale), zk = _mm256_i32gather_pd(z, k, 8);
        __m256d lok = _mm256_i32gather_pd(lo, k, 8), hik = _mm256_i32gather_pd(hi, k, 8);
        _mm256_storeu_pd(d + t, dk);
        _mm256_storeu_pd(zold + t, zk);
        __m256d zn = _mm256_min_pd(hik, _mm256_max_pd(lok, _mm256_add_pd(zk, dk)));
        hits = _mm256_or_pd(hits, _mm256_or_pd(_mm256_cmp_pd(zn, lok, _CMP_EQ_OQ),
                                               _mm256_cmp_pd(zn, hik, _CMP_EQ_OQ)));
        __m128d z01 = _mm256_castpd256_pd128(zn), z23 = _mm256_extractf128_pd(zn, 1);
        _mm_storel_pd(z + ind[t], z01);
        _mm_storeh_pd(z + ind[t + 1], z01);
        _mm_storel_pd(z + ind[t + 2], z23);
        _mm_storeh_pd(z + ind[t + 3], z23);
    }
    int hit = _mm256_movemask_pd(hits) != 0;
    return project_portable(z, zold + t, d + t, ind + t, cnt - t, scale, lo, hi) | hit;
}

BS_AVX2 static int active_moved_avx2(bs_lbfgsb *s, int k0, int cnt)
{
    int k = k0;
    for (; k + 4 <= s->nslist; k += 4) {
        __m128i vi = _mm_loadu_si128((const __m128i *)(s->slist + k));
        __m128i w = _mm_i32gather_epi32(s->iwhere, vi, 4);
        int mask = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32(w, _mm_setzero_si128())));
        append_index(s->list, cnt, vi, mask);
        append_pd(s->coef, cnt, _mm256_loadu_pd(s->scoef + k), mask);
        cnt += BITS4[mask];
    }
    return active_moved_portable(s, k, cnt);
}

BS_AVX2 static double dot_avx2(int n, const double *a, const double *b)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4), s1);
        s2 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 8), _mm256_loadu_pd(b + i + 8), s2);
        s3 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 12), _mm256_loadu_pd(b + i + 12), s3);
    }
    for (; i + 4 <= n; i += 4)
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), s0);
    double sum = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

BS_AVX2 static double copy_dot_avx2(int n, double *dst, const double *src, const double *d)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_loadu_pd(src + i), b = _mm256_loadu_pd(src + i + 4);
        _mm256_storeu_pd(dst + i, a);
        _mm256_storeu_pd(dst + i + 4, b);
        s0 = _mm256_fmadd_pd(a, _mm256_loadu_pd(d + i), s0);
        s1 = _mm256_fmadd_pd(b, _mm256_loadu_pd(d + i + 4), s1);
    }
    double sum = hsum(_mm256_add_pd(s0, s1));
    for (; i < n; i++) {
        dst[i] = src[i];
        sum += src[i] * d[i];
    }
    return sum;
}

BS_AVX2 static double diff_dot_avx2(int n, const double *a, const double *b, const double *c)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d e0 = _mm256_sub_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i));
        __m256d e1 = _mm256_sub_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4));
        s0 = _mm256_fmadd_pd(e0, _mm256_loadu_pd(c + i), s0);
        s1 = _mm256_fmadd_pd(e1, _mm256_loadu_pd(c + i + 4), s1);
    }
    double sum = hsum(_mm256_add_pd(s0, s1));
    for (; i < n; i++)
        sum += (a[i] - b[i]) * c[i];
    return sum;
}

BS_AVX2 static void axpy_avx2(int n, double *out, double a, const double *d, const double *base)
{
    __m256d va = _mm256_set1_pd(a);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        _mm256_storeu_pd(out + i, _mm256_fmadd_pd(va, _mm256_loadu_pd(d + i),
                                                  _mm256_loadu_pd(base + i)));
    for (; i < n; i++)
        out[i] = a * d[i] + base[i];
}

BS_AVX2 static void divide_avx2(int n, double *t, const double *den)
{
    int k = 0;
    for (; k + 4 <= n; k += 4)
        _mm256_storeu_pd(t + k, _mm256_div_pd(_mm256_loadu_pd(t + k), _mm256_loadu_pd(den + k)));
    for (; k < n; k++)
        t[k] = t[k] / den[k];
}

BS_AVX2 static double projgr_avx2(int n, const double *x, const double *g, const double *lo,
                                  const double *hi)
{
    const __m256d zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    __m256d norm = zero;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d xi = _mm256_loadu_pd(x + i), gi = _mm256_loadu_pd(g + i);
        __m256d up = _mm256_max_pd(_mm256_sub_pd(xi, _mm256_loadu_pd(hi + i)), gi);
        __m256d down = _mm256_min_pd(_mm256_sub_pd(xi, _mm256_loadu_pd(lo + i)), gi);
        __m256d pg = _mm256_blendv_pd(down, up, _mm256_cmp_pd(gi, zero, _CMP_LT_OQ));
        norm = _mm256_max_pd(norm, _mm256_andnot_pd(sign, pg));
    }
    __m128d h = _mm_max_pd(_mm256_castpd256_pd128(norm), _mm256_extractf128_pd(norm, 1));
    double out = dmax(_mm_cvtsd_f64(h), _mm_cvtsd_f64(_mm_unpackhi_pd(h, h)));
    return dmax(out, projgr_portable(n - i, x + i, g + i, lo + i, hi + i));
}

/* The largest feasible step is kept per lane, each lane running the
 * Fortran's rule over its own variables, and the least lane taken. */
BS_AVX2 static ls_setup ls_setup_avx2(const bs_lbfgsb *s, const double *x, int bounded)
{
    int n = s->n, i = 0;
    const double *z = s->z, *g = s->gold, *lo = s->lo, *hi = s->hi;
    double *d = s->d, *xold = s->xold;
    const __m256d zero = _mm256_setzero_pd();
    __m256d dtd = zero, gd = zero, st = _mm256_set1_pd(STPMAX_UNCONSTRAINED);
    for (; i + 4 <= n; i += 4) {
        __m256d xi = _mm256_loadu_pd(x + i), di = _mm256_sub_pd(_mm256_loadu_pd(z + i), xi);
        _mm256_storeu_pd(d + i, di);
        _mm256_storeu_pd(xold + i, xi);
        dtd = _mm256_fmadd_pd(di, di, dtd);
        gd = _mm256_fmadd_pd(_mm256_loadu_pd(g + i), di, gd);
        if (!bounded)
            continue;
        /* a1 = d_i, a2 = the distance to the bound d_i points to */
        __m256d neg = _mm256_cmp_pd(di, zero, _CMP_LT_OQ), pos = _mm256_cmp_pd(di, zero, _CMP_GT_OQ);
        __m256d a2 = _mm256_blendv_pd(_mm256_sub_pd(_mm256_loadu_pd(hi + i), xi),
                                      _mm256_sub_pd(_mm256_loadu_pd(lo + i), xi), neg);
        __m256d blocked = _mm256_or_pd(_mm256_and_pd(neg, _mm256_cmp_pd(a2, zero, _CMP_GE_OQ)),
                                       _mm256_and_pd(pos, _mm256_cmp_pd(a2, zero, _CMP_LE_OQ)));
        __m256d a1st = _mm256_mul_pd(di, st);
        __m256d shrink = _mm256_or_pd(_mm256_and_pd(neg, _mm256_cmp_pd(a1st, a2, _CMP_LT_OQ)),
                                      _mm256_and_pd(pos, _mm256_cmp_pd(a1st, a2, _CMP_GT_OQ)));
        if (_mm256_movemask_pd(_mm256_or_pd(blocked, shrink))) {
            st = _mm256_blendv_pd(st, _mm256_div_pd(a2, di), shrink);
            st = _mm256_blendv_pd(st, zero, blocked);
        }
    }
    ls_setup o;
    o.dtd = hsum(dtd);
    o.gd = hsum(gd);
    __m128d h = _mm_min_pd(_mm256_castpd256_pd128(st), _mm256_extractf128_pd(st, 1));
    o.stpmx = dmin(_mm_cvtsd_f64(h), _mm_cvtsd_f64(_mm_unpackhi_pd(h, h)));
    for (; i < n; i++) {
        double a1 = z[i] - x[i], a2;
        d[i] = a1;
        xold[i] = x[i];
        o.dtd += a1 * a1;
        o.gd += g[i] * a1;
        if (!bounded)
            continue;
        if (a1 < 0.0) {
            a2 = lo[i] - x[i];
            if (a2 >= 0.0)
                o.stpmx = 0.0;
            else if (a1 * o.stpmx < a2)
                o.stpmx = a2 / a1;
        } else if (a1 > 0.0) {
            a2 = hi[i] - x[i];
            if (a2 <= 0.0)
                o.stpmx = 0.0;
            else if (a1 * o.stpmx > a2)
                o.stpmx = a2 / a1;
        }
    }
    return o;
}

/* rows_sum for nv vectors of slots (nv <= 4), from slot 0 of w and acc.
 * Few vectors leave the FMA chains short, so then two rows are taken at
 * once into two sets of sums. */
BS_AVX2 static ALWAYS_INLINE void rows_sum_block(double *acc, const double *w, int ld,
                                                 const int *var, const double *coef, int cnt,
                                                 int nv)
{
    size_t ld2 = 2 * (size_t)ld;
    __m256d ay[4], as[4], by[4], bs[4];
    UNROLL
    for (int k = 0; k < 4; k++)
        ay[k] = as[k] = by[k] = bs[k] = _mm256_setzero_pd();
    int t = 0;
    if (nv <= 2) {
        for (; t + 2 <= cnt; t += 2) {
            const double *r0 = w + (size_t)var[t] * ld2, *r1 = w + (size_t)var[t + 1] * ld2;
            __m256d c0 = _mm256_set1_pd(coef[t]), c1 = _mm256_set1_pd(coef[t + 1]);
            UNROLL
            for (int k = 0; k < nv; k++) {
                ay[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r0 + 4 * k), ay[k]);
                as[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r0 + ld + 4 * k), as[k]);
                by[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r1 + 4 * k), by[k]);
                bs[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r1 + ld + 4 * k), bs[k]);
            }
        }
    }
    for (; t < cnt; t++) {
        const double *r0 = w + (size_t)var[t] * ld2;
        __m256d c0 = _mm256_set1_pd(coef[t]);
        UNROLL
        for (int k = 0; k < nv; k++) {
            ay[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r0 + 4 * k), ay[k]);
            as[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r0 + ld + 4 * k), as[k]);
        }
    }
    UNROLL
    for (int k = 0; k < nv; k++) {
        _mm256_store_pd(acc + 4 * k, _mm256_add_pd(ay[k], by[k]));
        _mm256_store_pd(acc + ld + 4 * k, _mm256_add_pd(as[k], bs[k]));
    }
}

/* Rows of w and acc are 32-byte aligned (ld is a multiple of 4). */
BS_AVX2 static void rows_sum_avx2(double *acc, const double *w, int ld, int cw, const int *var,
                                  const double *coef, int cnt)
{
    for (int q0 = 0; q0 < cw; q0 += 16) {
        int nv = (cw - q0 < 16 ? cw - q0 : 16) / 4;
        switch (nv) {
        case 1: rows_sum_block(acc + q0, w + q0, ld, var, coef, cnt, 1); break;
        case 2: rows_sum_block(acc + q0, w + q0, ld, var, coef, cnt, 2); break;
        case 3: rows_sum_block(acc + q0, w + q0, ld, var, coef, cnt, 3); break;
        default: rows_sum_block(acc + q0, w + q0, ld, var, coef, cnt, 4); break;
        }
    }
}

/* rows_dot for col <= 4 nv <= 16: c stays in registers, four rows at a
 * time, each with its y and s halves in separate sums; the lanes from col
 * on are masked off where they are loaded. */
BS_AVX2 static ALWAYS_INLINE __m256d load_row(const double *r, int k, int nv, __m256d last)
{
    __m256d v = _mm256_load_pd(r + 4 * k);
    return k == nv - 1 ? _mm256_and_pd(v, last) : v;
}

BS_AVX2 static ALWAYS_INLINE void rows_dot_block(double *v, const double *w, int ld, int col,
                                                 const int *ind, int cnt, const double *c, int nv)
{
    size_t ld2 = 2 * (size_t)ld;
    __m256d cy[4], cs[4];
    __m256d last = _mm256_castsi256_pd(_mm256_cmpgt_epi64(
        _mm256_set1_epi64x(col - 4 * (nv - 1)), _mm256_setr_epi64x(0, 1, 2, 3)));
    UNROLL
    for (int k = 0; k < nv; k++) {
        cy[k] = _mm256_load_pd(c + 4 * k);
        cs[k] = _mm256_load_pd(c + ld + 4 * k);
    }
    int t = 0;
    for (; t + 4 <= cnt; t += 4) {
        __m256d a[4];
        UNROLL
        for (int j = 0; j < 4; j++) {
            const double *r = w + (size_t)ind[t + j] * ld2;
            __m256d sy = _mm256_mul_pd(load_row(r, 0, nv, last), cy[0]);
            __m256d ss = _mm256_mul_pd(load_row(r + ld, 0, nv, last), cs[0]);
            UNROLL
            for (int k = 1; k < nv; k++) {
                sy = _mm256_fmadd_pd(load_row(r, k, nv, last), cy[k], sy);
                ss = _mm256_fmadd_pd(load_row(r + ld, k, nv, last), cs[k], ss);
            }
            a[j] = _mm256_add_pd(sy, ss);
        }
        _mm256_storeu_pd(v + t, _mm256_add_pd(_mm256_loadu_pd(v + t), hsum4(a[0], a[1], a[2], a[3])));
    }
    for (; t < cnt; t++) {
        const double *r = w + (size_t)ind[t] * ld2;
        __m256d sy = _mm256_mul_pd(load_row(r, 0, nv, last), cy[0]);
        __m256d ss = _mm256_mul_pd(load_row(r + ld, 0, nv, last), cs[0]);
        UNROLL
        for (int k = 1; k < nv; k++) {
            sy = _mm256_fmadd_pd(load_row(r, k, nv, last), cy[k], sy);
            ss = _mm256_fmadd_pd(load_row(r + ld, k, nv, last), cs[k], ss);
        }
        v[t] += hsum(_mm256_add_pd(sy, ss));
    }
}

BS_AVX2 static void rows_dot_avx2(double *v, const double *w, int ld, int col, const int *ind,
                                  int cnt, const double *c)
{
    switch ((col + 3) / 4) {
    case 1: rows_dot_block(v, w, ld, col, ind, cnt, c, 1); break;
    case 2: rows_dot_block(v, w, ld, col, ind, cnt, c, 2); break;
    case 3: rows_dot_block(v, w, ld, col, ind, cnt, c, 3); break;
    case 4: rows_dot_block(v, w, ld, col, ind, cnt, c, 4); break;
    default: rows_dot_portable(v, w, ld, col, ind, cnt, c); break;
    }
}

/* store_pair for cw = 4 nv <= 16: the rows are read (into sums kept in
 * registers, two sets while they are few) before slot q is written. */
BS_AVX2 static ALWAYS_INLINE double store_pair_block(bs_lbfgsb *s, int q, int *nmoved,
                                                     double *acc, int nv)
{
    size_t ld2 = 2 * (size_t)s->ld, ld = (size_t)s->ld;
    const __m256d stp = _mm256_set1_pd(s->stp), zero = _mm256_setzero_pd();
    __m256d rr = zero, ay[4], as[4], by[4], bs[4];
    UNROLL
    for (int k = 0; k < 4; k++)
        ay[k] = as[k] = by[k] = bs[k] = zero;
    int i = 0, cnt = *nmoved;
    for (; i + 4 <= s->n; i += 4) {
        __m256d y = _mm256_sub_pd(_mm256_loadu_pd(s->g + i), _mm256_loadu_pd(s->gold + i));
        __m256d sv = _mm256_mul_pd(stp, _mm256_loadu_pd(s->d + i));
        rr = _mm256_fmadd_pd(y, y, rr);
        double *r = s->w + (size_t)i * ld2;
        __m256d c0 = _mm256_permute4x64_pd(sv, 0x00), c1 = _mm256_permute4x64_pd(sv, 0x55);
        __m256d c2 = _mm256_permute4x64_pd(sv, 0xaa), c3 = _mm256_permute4x64_pd(sv, 0xff);
        UNROLL
        for (int k = 0; k < nv; k++) {
            ay[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r + 4 * k), ay[k]);
            as[k] = _mm256_fmadd_pd(c0, _mm256_load_pd(r + ld + 4 * k), as[k]);
            if (nv <= 2) {
                by[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r + ld2 + 4 * k), by[k]);
                bs[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r + ld2 + ld + 4 * k), bs[k]);
            } else {
                ay[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r + ld2 + 4 * k), ay[k]);
                as[k] = _mm256_fmadd_pd(c1, _mm256_load_pd(r + ld2 + ld + 4 * k), as[k]);
            }
            ay[k] = _mm256_fmadd_pd(c2, _mm256_load_pd(r + 2 * ld2 + 4 * k), ay[k]);
            as[k] = _mm256_fmadd_pd(c2, _mm256_load_pd(r + 2 * ld2 + ld + 4 * k), as[k]);
            if (nv <= 2) {
                by[k] = _mm256_fmadd_pd(c3, _mm256_load_pd(r + 3 * ld2 + 4 * k), by[k]);
                bs[k] = _mm256_fmadd_pd(c3, _mm256_load_pd(r + 3 * ld2 + ld + 4 * k), bs[k]);
            } else {
                ay[k] = _mm256_fmadd_pd(c3, _mm256_load_pd(r + 3 * ld2 + 4 * k), ay[k]);
                as[k] = _mm256_fmadd_pd(c3, _mm256_load_pd(r + 3 * ld2 + ld + 4 * k), as[k]);
            }
        }
        r += q;
        __m128d y01 = _mm256_castpd256_pd128(y), y23 = _mm256_extractf128_pd(y, 1);
        __m128d s01 = _mm256_castpd256_pd128(sv), s23 = _mm256_extractf128_pd(sv, 1);
        _mm_storel_pd(r, y01);
        _mm_storel_pd(r + ld, s01);
        _mm_storeh_pd(r + ld2, y01);
        _mm_storeh_pd(r + ld2 + ld, s01);
        _mm_storel_pd(r + 2 * ld2, y23);
        _mm_storel_pd(r + 2 * ld2 + ld, s23);
        _mm_storeh_pd(r + 3 * ld2, y23);
        _mm_storeh_pd(r + 3 * ld2 + ld, s23);
        int mask = _mm256_movemask_pd(_mm256_cmp_pd(sv, zero, _CMP_NEQ_UQ));
        append_index(s->slist, cnt, _mm_add_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(i)), mask);
        append_pd(s->scoef, cnt, sv, mask);
        cnt += BITS4[mask];
    }
    UNROLL
    for (int k = 0; k < nv; k++) {
        _mm256_store_pd(acc + 4 * k, _mm256_add_pd(ay[k], by[k]));
        _mm256_store_pd(acc + ld + 4 * k, _mm256_add_pd(as[k], bs[k]));
    }
    *nmoved = cnt;
    return hsum(rr) + store_pair_portable(s, q, i, nmoved, acc);
}

BS_AVX2 static double store_pair_avx2(bs_lbfgsb *s, int q, int i0, int *nmoved, double *acc)
{
    switch (i0 == 0 ? slot_width(s) / 4 : 0) {
    case 1: return store_pair_block(s, q, nmoved, acc, 1);
    case 2: return store_pair_block(s, q, nmoved, acc, 2);
    case 3: return store_pair_block(s, q, nmoved, acc, 3);
    case 4: return store_pair_block(s, q, nmoved, acc, 4);
    default: return store_pair_portable(s, q, i0, nmoved, acc);
    }
}

/* rows_dot_sum for col <= 4 nv <= 16, fuse when ynew >= 0 */
BS_AVX2 static ALWAYS_INLINE void rows_dot_sum_block(double *v, double *acc, const double *w,
                                                     int ld, int col, const int *ind, int cnt,
                                                     const double *c, int ynew, int nv, int fuse)
{
    size_t ld2 = 2 * (size_t)ld;
    __m256d cy[4], cs[4], ay[4], as[4], fy[4], fs[4];
    __m256d last = _mm256_castsi256_pd(_mm256_cmpgt_epi64(
        _mm256_set1_epi64x(col - 4 * (nv - 1)), _mm256_setr_epi64x(0, 1, 2, 3)));
    UNROLL
    for (int k = 0; k < nv; k++) {
        cy[k] = _mm256_load_pd(c + 4 * k);
        cs[k] = _mm256_load_pd(c + ld + 4 * k);
        ay[k] = as[k] = fy[k] = fs[k] = _mm256_setzero_pd();
    }
    for (int t = 0; t < cnt; t++) {
        const double *r = w + (size_t)ind[t] * ld2;
        __m256d ry[4], rs[4];
        UNROLL
        for (int k = 0; k < nv; k++) {
            ry[k] = load_row(r, k, nv, last);
            rs[k] = load_row(r + ld, k, nv, last);
        }
        __m256d sy = _mm256_mul_pd(ry[0], cy[0]), ss = _mm256_mul_pd(rs[0], cs[0]);
        UNROLL
        for (int k = 1; k < nv; k++) {
            sy = _mm256_fmadd_pd(ry[k], cy[k], sy);
            ss = _mm256_fmadd_pd(rs[k], cs[k], ss);
        }
        double vt = v[t] + hsum(_mm256_add_pd(sy, ss));
        v[t] = vt;
        __m256d b = _mm256_set1_pd(vt);
        UNROLL
        for (int k = 0; k < nv; k++) {
            ay[k] = _mm256_fmadd_pd(b, ry[k], ay[k]);
            as[k] = _mm256_fmadd_pd(b, rs[k], as[k]);
        }
        if (fuse) {
            __m256d yt = _mm256_broadcast_sd(r + ynew);
            UNROLL
            for (int k = 0; k < nv; k++) {
                fy[k] = _mm256_fmadd_pd(yt, ry[k], fy[k]);
                fs[k] = _mm256_fmadd_pd(yt, rs[k], fs[k]);
            }
        }
    }
    UNROLL
    for (int k = 0; k < nv; k++) {
        _mm256_store_pd(acc + 4 * k, ay[k]);
        _mm256_store_pd(acc + ld + 4 * k, as[k]);
        if (fuse) {
            _mm256_store_pd(acc + 2 * ld + 4 * k, fy[k]);
            _mm256_store_pd(acc + 3 * ld + 4 * k, fs[k]);
        }
    }
}

BS_AVX2 static void rows_dot_sum_avx2(double *v, double *acc, const double *w, int ld, int col,
                                      const int *ind, int cnt, const double *c, int ynew)
{
    int fuse = ynew >= 0;
    switch ((col + 3) / 4 * 2 + fuse) {
    case 2: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 1, 0); break;
    case 3: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 1, 1); break;
    case 4: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 2, 0); break;
    case 5: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 2, 1); break;
    case 6: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 3, 0); break;
    case 7: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 3, 1); break;
    case 8: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 4, 0); break;
    case 9: rows_dot_sum_block(v, acc, w, ld, col, ind, cnt, c, ynew, 4, 1); break;
    default: rows_dot_sum_portable(v, acc, w, ld, col, ind, cnt, c, ynew); break;
    }
}

#endif /* BS_HAVE_AVX2 */

/* ------------------------------------------------------------------------ */
/* the dispatchers: the AVX2 kernel when s->simd, else the portable twin */

#if BS_HAVE_AVX2
#define DISPATCH(s, name, ...) ((s)->simd ? name##_avx2(__VA_ARGS__) : name##_portable(__VA_ARGS__))
#else
#define DISPATCH(s, name, ...) ((void)(s), name##_portable(__VA_ARGS__))
#endif

static double dot(const bs_lbfgsb *s, int n, const double *a, const double *b)
{
    return DISPATCH(s, dot, n, a, b);
}

static double copy_dot(const bs_lbfgsb *s, double *dst, const double *src, const double *d)
{
    return DISPATCH(s, copy_dot, s->n, dst, src, d);
}

static double diff_dot(const bs_lbfgsb *s, const double *a, const double *b, const double *c)
{
    return DISPATCH(s, diff_dot, s->n, a, b, c);
}

static void axpy(const bs_lbfgsb *s, double *out, double a, const double *d, const double *base)
{
    DISPATCH(s, axpy, s->n, out, a, d, base);
}

static void divide(const bs_lbfgsb *s, int n, double *t, const double *den)
{
    DISPATCH(s, divide, n, t, den);
}

static double projgr(const bs_lbfgsb *s, const double *x, const double *g)
{
    return DISPATCH(s, projgr, s->n, x, g, s->lo, s->hi);
}

static ls_setup ls_setup_pass(const bs_lbfgsb *s, const double *x, int bounded)
{
    return DISPATCH(s, ls_setup, s, x, bounded);
}

static int first_least(const bs_lbfgsb *s, const double *a, int n)
{
    return DISPATCH(s, first_least, a, n);
}

static void reduced_gradient(const bs_lbfgsb *s, double *r, const int *ind, int cnt,
                             const double *x, const double *g)
{
    DISPATCH(s, reduced_gradient, r, ind, cnt, s->theta, s->z, x, g);
}

static int project(bs_lbfgsb *s, double *d, const int *ind, int cnt, double scale)
{
    return DISPATCH(s, project, s->z, s->zsave, d, ind, cnt, scale, s->lo, s->hi);
}

static int active_moved(bs_lbfgsb *s)
{
    return DISPATCH(s, active_moved, s, 0, 0);
}

static void classify(bs_lbfgsb *s, const double *x, const double *g, gcp_lists *o)
{
    DISPATCH(s, classify, s, x, g, 0, s->n, o);
}

static void freev_scan(bs_lbfgsb *s, int track)
{
    DISPATCH(s, freev, s, 0, s->n, track);
}

/* acc (2ld) = W's over the rows as they were, see store_pair_portable */
static double store_pair(bs_lbfgsb *s, int q, int *nmoved, double *acc)
{
    memset(acc, 0, 2 * (size_t)s->ld * sizeof(double));
    return DISPATCH(s, store_pair, s, q, 0, nmoved, acc);
}

/* v[t] += row ind[t] of W times s->cvec, and acc (2ld) = W' times v on
 * the variables ind; with ynew >= 0, acc[2ld..4ld) = W' times column ynew
 * of Y on them (rows_dot_sum_portable) */
static void rows_dot_sum(bs_lbfgsb *s, double *acc, const int *ind, int cnt, double *v, int ynew)
{
    memset(acc, 0, (ynew >= 0 ? 4 : 2) * (size_t)s->ld * sizeof(double));
    DISPATCH(s, rows_dot_sum, v, acc, s->w, s->ld, s->col, ind, cnt, s->cvec, ynew);
}

/* acc (2ld) = W' times coef on the variables var, per slot (rows_sum_portable) */
static void rows_sum(const bs_lbfgsb *s, double *acc, const int *var, const double *coef, int cnt)
{
    DISPATCH(s, rows_sum, acc, s->w, s->ld, slot_width(s), var, coef, cnt);
}

/* v[t] += row ind[t] of W times s->cvec (rows_dot_portable) */
static void rows_dot(const bs_lbfgsb *s, const int *ind, int cnt, double *v)
{
    DISPATCH(s, rows_dot, v, s->w, s->ld, s->col, ind, cnt, s->cvec);
}

/* ------------------------------------------------------------------------ */
/* dense helpers: Cholesky and triangular solves on column-major a (lda) */

/* a'b for the short columns of the small matrices, in two partial sums
 * (their chains of additions are the latency of these routines). */
static inline double small_dot(int n, const double *a, const double *b)
{
    double s0 = 0.0, s1 = 0.0;
    int k = 0;
    for (; k + 2 <= n; k += 2) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
    }
    if (k < n)
        s0 += a[k] * b[k];
    return s0 + s1;
}

/* Upper Cholesky a = R'R of the leading n x n block in place (R in the
 * upper triangle), rdiag[k] = 1 / R(k,k); with ncols > n the rows 1..n of
 * the columns n+1..ncols (a block B beside it) become R'^-1 B, as formk
 * wants. 0, or the column where the matrix proved not positive definite.
 *
 * Row by row: row k of R needs only the rows above it, so the entries of
 * a row are independent dot products and the chain from one diagonal
 * entry to the next is one dot product, a square root and a division,
 * where column by column every entry waited for the one above it. The
 * diagonal is positive (a square root of a positive number): the
 * triangular systems the Fortran solves with checks for a zero pivot
 * cannot be singular here, and are solved multiplying by rdiag. */
static int cholesky_upper(double *a, int lda, int n, int ncols, double *rdiag)
{
#define A(i, j) a[((i) - 1) + ((j) - 1) * (size_t)lda]
    for (int k = 1; k <= n; k++) {
        double dk = A(k, k) - small_dot(k - 1, &A(1, k), &A(1, k));
        if (dk <= 0.0)
            return k;
        A(k, k) = sqrt(dk);
        double r = 1.0 / A(k, k);
        rdiag[k - 1] = r;
        for (int j = k + 1; j <= ncols; j++)
            A(k, j) = (A(k, j) - small_dot(k - 1, &A(1, k), &A(1, j))) * r;
    }
    return 0;
#undef A
}

/* Solves R'x = b (transpose = 1) or Rx = b (transpose = 0) for upper
 * triangular R with reciprocal diagonal rdiag, b overwritten. Both take
 * away each x_k from the rest of b as soon as it is known (R' by rows of
 * R, R by columns), so one step waits for the last only through one
 * multiply-add and one multiplication. */
static void solve_upper(const double *a, int lda, int n, const double *rdiag, double *b,
                        int transpose)
{
#define A(i, j) a[((i) - 1) + ((j) - 1) * (size_t)lda]
    if (transpose) {
        for (int k = 1; k <= n; k++) {
            double xk = b[k - 1] * rdiag[k - 1];
            b[k - 1] = xk;
            for (int j = k + 1; j <= n; j++)
                b[j - 1] -= A(k, j) * xk;
        }
    } else {
        b[n - 1] *= rdiag[n - 1];
        for (int j = n - 1; j >= 1; j--) {
            double temp = -b[j];
            for (int k = 1; k <= j; k++)
                b[k - 1] += temp * A(k, j + 1);
            b[j - 1] *= rdiag[j - 1];
        }
    }
#undef A
}

/* ------------------------------------------------------------------------ */
/* create, free */

/* Places the struct and every array of an instance for n variables and
 * history m at base (64-byte boundaries, in this order); with base NULL
 * only counts. Returns the bytes used. */
static size_t lay_out(bs_lbfgsb *s, unsigned char *base, int n, int m)
{
    size_t N = (size_t)n, M = (size_t)m, D = sizeof(double), ld = (size_t)(m + 3) / 4 * 4;
    size_t off = (sizeof(bs_lbfgsb) + 63) / 64 * 64;
#define PLACE(field, count, size)                                   \
    do {                                                            \
        if (base)                                                   \
            s->field = (void *)(base + off);                        \
        off += ((size_t)(count) * (size) + 63) / 64 * 64;           \
    } while (0)
    PLACE(l, N, D);
    PLACE(u, N, D);
    PLACE(lo, N, D);
    PLACE(hi, N, D);
    PLACE(nbd, N, sizeof(int));
    PLACE(w, N * 2 * ld, D);
    PLACE(sy, M * M, D);
    PLACE(ss, M * M, D);
    PLACE(wt, M * M, D);
    PLACE(ldinv, M * M, D);
    PLACE(dinv_sqrt, M, D);
    PLACE(wt_rdiag, M, D);
    PLACE(wn_rdiag, 2 * M, D);
    PLACE(wn, 4 * M * M, D);
    PLACE(snd, 4 * M * M, D);
    PLACE(g, N, D);
    PLACE(gold, N, D);
    PLACE(z, N, D);
    PLACE(r, N, D);
    PLACE(d, N, D);
    PLACE(xold, N, D);
    PLACE(t, N, D);
    PLACE(tden, N, D);
    PLACE(bmin, N / BREAK_BLOCK + 1, D);
    PLACE(bpos, N / BREAK_BLOCK + 1, sizeof(int));
    PLACE(coef, N, D);
    PLACE(zsave, N, D);
    PLACE(wa, 8 * M, D);
    PLACE(acc, 8 * ld, D);
    PLACE(cvec, 2 * ld, D);
    PLACE(index, N, sizeof(int));
    PLACE(slist, N, sizeof(int));
    PLACE(scoef, N, D);
    PLACE(iwhere, N, sizeof(int));
    PLACE(entering, N, sizeof(int));
    PLACE(leaving, N, sizeof(int));
    PLACE(iorder, N, sizeof(int));
    PLACE(list, N, sizeof(int));
    PLACE(was_free, (N + 3) / 4, 1);
    PLACE(order, M, sizeof(int));
#undef PLACE
    return off;
}

size_t bs_lbfgsb_size(int n, int m)
{
    return n < 1 || m < 1 ? 0 : lay_out(NULL, NULL, n, m);
}

bs_lbfgsb *bs_lbfgsb_init(void *mem, int n, int m, const double *lower, const double *upper,
                          double factr, double pgtol)
{
    if (!mem || n < 1 || m < 1 || !(factr >= 0.0) || !lower || !upper)
        return NULL;
    for (int i = 0; i < n; i++)
        if (isnan(lower[i]) || isnan(upper[i]) || lower[i] > upper[i] ||
            lower[i] == INFINITY || upper[i] == -INFINITY)
            return NULL;
    memset(mem, 0, bs_lbfgsb_size(n, m));
    bs_lbfgsb *s = mem;
    lay_out(s, mem, n, m);
    s->n = n;
    s->m = m;
    s->ld = (m + 3) / 4 * 4;
    s->simd = bs_cpu_avx2();
    s->factr = factr;
    s->pgtol = pgtol;
    s->epsmch = DBL_EPSILON;
    for (int i = 0; i < n; i++) {
        int has_l = isfinite(lower[i]), has_u = isfinite(upper[i]);
        s->l[i] = has_l ? lower[i] : 0.0;
        s->u[i] = has_u ? upper[i] : 0.0;
        s->lo[i] = lower[i];
        s->hi[i] = upper[i];
        s->nbd[i] = has_l ? (has_u ? 2 : 1) : (has_u ? 3 : 0);
    }
    return s;
}

bs_lbfgsb *bs_lbfgsb_new(int n, int m, const double *lower, const double *upper,
                         double factr, double pgtol)
{
    size_t bytes = bs_lbfgsb_size(n, m);
    void *mem = bytes ? aligned_alloc(64, bytes) : NULL;
    bs_lbfgsb *s = bs_lbfgsb_init(mem, n, m, lower, upper, factr, pgtol);
    if (!s) {
        free(mem);
        return NULL;
    }
    s->owned = 1;
    return s;
}

void bs_lbfgsb_free(bs_lbfgsb *s)
{
    if (s && s->owned)
        free(s);
}

int bs_lbfgsb_use_simd(bs_lbfgsb *s, int on)
{
    s->simd = on && bs_cpu_avx2();
    return s->simd;
}

int bs_lbfgsb_iterations(const bs_lbfgsb *s) { return s->iter; }
double bs_lbfgsb_f(const bs_lbfgsb *s) { return s->f; }
double bs_lbfgsb_pgnorm(const bs_lbfgsb *s) { return s->sbgnrm; }

/* ------------------------------------------------------------------------ */
/* active */

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

/* ------------------------------------------------------------------------ */
/* the compact representation: bmv, matupd, formt */

/* order[j] = the storage slot (0-based) of the j-th oldest pair, j < col:
 * the Fortran's pointr walk head, head+1, ... (mod m) done once. */
static void refresh_order(bs_lbfgsb *s)
{
    for (int j = 0; j < s->col; j++)
        s->order[j] = (s->head - 1 + j) % s->m;
}

/* p = M v for the 2col x 2col middle matrix M of the compact L-BFGS
 * formula, through its factors (S'Y's diagonal D and lower part L, and
 * J' in wt). */
static void bmv(const bs_lbfgsb *s, const double *v, double *p)
{
    int m = s->m, col = s->col;
    if (col == 0)
        return;
    /* solve [D^(1/2) 0; -L D^(-1/2) J] [p1; p2] = [v1; v2] */
    p[col] = v[col];
    for (int i = 2; i <= col; i++) {
        double sum = 0.0;
        for (int k = 1; k <= i - 1; k++)
            sum += LDINV(i, k) * v[k - 1];
        p[col + i - 1] = v[col + i - 1] + sum;
    }
    solve_upper(s->wt, m, col, s->wt_rdiag, p + col, 1);
    for (int i = 1; i <= col; i++)
        p[i - 1] = v[i - 1] * s->dinv_sqrt[i - 1];
    /* solve [-D^(1/2) D^(-1/2) L'; 0 J'] [p1; p2] = [p1; p2] */
    solve_upper(s->wt, m, col, s->wt_rdiag, p + col, 0);
    for (int i = 1; i <= col; i++)
        p[i - 1] = -p[i - 1] * s->dinv_sqrt[i - 1];
    for (int i = 1; i <= col; i++) {
        double sum = 0.0;
        for (int k = i + 1; k <= col; k++)
            sum += LDINV(k, i) * p[col + k - 1];
        p[i - 1] += sum;
    }
}

/* Stores s = stp d and y = g - gold as the newest pair, theta = y'y / s'y
 * (dr = s'y), the new row of S'Y and column of S'S, and bmv's L D^-1 and
 * D^(-1/2). */
static void matupd(bs_lbfgsb *s, double dr)
{
    int m = s->m, ld = s->ld;
    if (s->iupdat <= m) {
        s->col = s->iupdat;
        s->itail = (s->head + s->iupdat - 2) % m + 1;
    } else {
        s->itail = s->itail % m + 1;
        s->head = s->head % m + 1;
    }
    int col = s->col;
    s->nslist = 0;
    double *sy = s->acc, *ss = s->acc + ld;
    s->theta = store_pair(s, s->itail - 1, &s->nslist, s->acc) / dr;
    if (s->iupdat > m) {
        /* drop the oldest pair: shift S'S up-left and S'Y's lower part */
        for (int j = 1; j <= col - 1; j++) {
            for (int k = 0; k < j; k++)
                SS(1 + k, j) = SS(2 + k, j + 1);
            for (int k = 0; k < col - j; k++)
                SY(j + k, j) = SY(j + 1 + k, j + 1);
        }
    }
    /* the new row of S'Y and column of S'S, s'y_j and s_j's, from
     * store_pair */
    refresh_order(s);
    for (int j = 1; j <= col - 1; j++) {
        SY(col, j) = sy[s->order[j - 1]];
        SS(j, col) = ss[s->order[j - 1]];
    }
    SS(col, col) = s->stp == 1.0 ? s->dtd : s->stp * s->stp * s->dtd;
    SY(col, col) = dr;
    for (int k = 1; k <= col; k++) {
        double dinv = 1.0 / SY(k, k);
        s->dinv_sqrt[k - 1] = sqrt(dinv);
        for (int j = k + 1; j <= col; j++)
            LDINV(j, k) = SY(j, k) * dinv;
    }
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
                sum += LDINV(i, k) * SY(j, k);
            WT(i, j) = sum + theta * SS(i, j);
        }
    if (cholesky_upper(s->wt, m, col, col, s->wt_rdiag))
        return -3;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* generalized Cauchy point */

/* bmin[b] and bpos[b] = the least of the breakpoints t[16b .. min(16b +
 * 16, nleft)) and its first position. */
static void block_min(const bs_lbfgsb *s, const double *t, int b, int nleft)
{
    int k0 = b * BREAK_BLOCK, k1 = k0 + BREAK_BLOCK < nleft ? k0 + BREAK_BLOCK : nleft;
    int pos = k0 + first_least(s, t + k0, k1 - k0);
    s->bmin[b] = t[pos];
    s->bpos[b] = pos;
}

/* The first position of the least of t[0..nleft), nleft >= 1: that of
 * the first block holding the least block minimum. */
static int next_breakpoint(const bs_lbfgsb *s, int nleft)
{
    return s->bpos[first_least(s, s->bmin, (nleft + BREAK_BLOCK - 1) / BREAK_BLOCK)];
}

/* The first local minimiser of the quadratic model along the projected
 * steepest-descent path from x, into z; sets iwhere and, for cmprlb,
 * c = W'(z - x) in wa[2m..4m). 0, or non-zero when bmv fails. */
static void cauchy(bs_lbfgsb *s, const double *x, const double *g)
{
    int n = s->n, m = s->m, col = s->col, col2 = 2 * col, ld = s->ld;
    double theta = s->theta;
    const double *l = s->l, *u = s->u;
    const int *order = s->order;
    int *iorder = s->iorder, *iwhere = s->iwhere, *moved = s->list;
    double *t = s->t, *tden = s->tden, *d = s->d, *xcp = s->z, *coef = s->coef;
    double *p = s->wa, *c = s->wa + 2 * m, *wbp = s->wa + 4 * m, *v = s->wa + 6 * m;

    if (s->sbgnrm <= 0.0) {
        memcpy(xcp, x, (size_t)n * sizeof(double));
        return;
    }
    /* each variable's bound status, its part of d, and its breakpoint */
    gcp_lists o = {0, 0, 0, 1};
    classify(s, x, g, &o);
    int nmoved = o.nmoved, nbreak = o.nbreak, bnded = o.bnded;
    double f1 = -dot(s, nmoved, coef, coef);
    /* p = W'd summed per storage slot over the variables that move */
    if (col > 0) {
        double *py = s->acc, *ps = s->acc + ld;
        rows_sum(s, s->acc, moved, coef, nmoved);
        for (int j = 0; j < col; j++) {
            p[j] = py[order[j]];
            p[col + j] = ps[order[j]];
        }
        if (theta != 1.0)
            for (int j = 0; j < col; j++)
                p[col + j] *= theta;
    }
    if (nbreak == 0 && o.nfree == 0) {
        memcpy(xcp, x, (size_t)n * sizeof(double));
        return; /* d = 0: the GCP is x */
    }
    for (int j = 0; j < col2; j++)
        c[j] = 0.0;

    double f2 = -theta * f1, f2_org = f2;
    if (col > 0) {
        bmv(s, p, v);
        double vp = 0.0;
        for (int j = 0; j < col2; j++)
            vp += v[j] * p[j];
        f2 -= vp;
    }
    double dtm = -f1 / f2, tsum = 0.0, tj = 0.0;
    int nleft = nbreak, all_fixed = 0;
    s->nseg = 1;
    divide(s, nbreak, t, tden);
    /* The breakpoints not yet crossed are t[0..nleft), the least of each
     * block of them in bmin; the next one is moved to t[nleft-1], and
     * t[nleft..nbreak) are those crossed. */
    for (int b = 0; b * BREAK_BLOCK < nbreak; b++)
        block_min(s, t, b, nbreak);
    while (nbreak > 0) {
        double tj0 = tj;
        int k = next_breakpoint(s, nleft);
        double tk = t[k];
        int ik = iorder[k];
        t[k] = t[nleft - 1];
        iorder[k] = iorder[nleft - 1];
        t[nleft - 1] = tk;
        iorder[nleft - 1] = ik;
        tj = tk;
        int ibp = iorder[nleft - 1];
        double dt = tj - tj0;
        if (dtm < dt)
            break; /* the minimiser lies in this segment */

        /* fix variable ibp at its bound (xcp is set at the end) */
        tsum += dt;
        nleft--;
        /* the blocks of t[k] (now the last breakpoint) and of the place
         * the last left */
        if (k < nleft)
            block_min(s, t, k / BREAK_BLOCK, nleft);
        if (nleft % BREAK_BLOCK && (k >= nleft || k / BREAK_BLOCK != nleft / BREAK_BLOCK))
            block_min(s, t, nleft / BREAK_BLOCK, nleft);
        double dibp = d[ibp], zibp;
        d[ibp] = 0.0;
        if (dibp > 0.0) {
            zibp = u[ibp] - x[ibp];
            iwhere[ibp] = 2;
        } else {
            zibp = l[ibp] - x[ibp];
            iwhere[ibp] = 1;
        }
        if (nleft == 0 && nbreak == n) {
            /* every variable is fixed: the GCP is where they are */
            dtm = dt;
            all_fixed = 1;
            break;
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
                wbp[j] = WY(ibp, order[j]);
                wbp[col + j] = theta * WS(ibp, order[j]);
            }
            bmv(s, wbp, v);
            double wmc = 0.0, wmp = 0.0, wmw = 0.0;
            for (int j = 0; j < col2; j++) {
                wmc += c[j] * v[j];
                wmp += p[j] * v[j];
                wmw += wbp[j] * v[j];
            }
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
    if (!all_fixed) {
        if (dtm <= 0.0)
            dtm = 0.0;
        tsum += dtm;
    }
    /* xcp = x + tsum d, and the variables crossed at their bounds */
    axpy(s, xcp, tsum, d, x);
    for (int k = nleft; k < nbreak; k++) {
        int i = iorder[k];
        xcp[i] = iwhere[i] == 2 ? u[i] : l[i];
    }
    if (col > 0)
        for (int j = 0; j < col2; j++)
            c[j] += dtm * p[j];
}

/* Lists the variables that entered (entering[0..nenter)) and left
 * (leaving[0..nleave)) the free set since the last iteration, and the free
 * variables at the GCP (index[0..nfree)); the others are active. */
static void freev(bs_lbfgsb *s)
{
    s->nfree = s->nenter = s->nleave = 0;
    freev_scan(s, s->iter > 0 && s->cnstnd);
    s->nact = s->n - s->nfree;
    s->wrk = s->nleave > 0 || s->nenter > 0 || s->updatd;
}

/* ------------------------------------------------------------------------ */
/* subspace minimisation: formk, cmprlb, subsm */

/* acc = W' times the column q of Y (y_half) or S of the variables var,
 * those from var[nplus] on counted negatively: the inner products of that
 * column with every slot, over var[0..nplus) less those over the rest. */
static void column_products(bs_lbfgsb *s, double *acc, const int *var, int nplus, int cnt, int q,
                            int y_half)
{
    size_t ld2 = 2 * (size_t)s->ld, off = (size_t)q + (y_half ? 0 : (size_t)s->ld);
    for (int k = 0; k < nplus; k++)
        s->coef[k] = s->w[(size_t)var[k] * ld2 + off];
    for (int k = nplus; k < cnt; k++)
        s->coef[k] = -s->w[(size_t)var[k] * ld2 + off];
    rows_sum(s, acc, var, s->coef, cnt);
}

/* The LEL' factorization of K = [-D-Y'ZZ'Y/theta  L_a'-R_z'; L_a-R_z
 * theta*S'AA'S] in wn, updating the inner products in snd (wn1) for the
 * new pair and for the variables that entered or left the free set; the
 * new pair's products over the free variables are in acc[6ld..8ld) when
 * cmprlb summed them on its pass (fused), else formk sums them. 0, or
 * non-zero when a Cholesky factorization fails. */
static int formk(bs_lbfgsb *s, int fused)
{
    int m = s->m, m2 = 2 * m, col = s->col, ld = s->ld;
    int nsub = s->nfree, nenter = s->nenter, nleave = s->nleave;
    const int *ind = s->index, *order = s->order;
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
         * block (2,1): products of the newest pair (slot qnew) with every
         * slot, over the free variables (y_new) and over the active ones
         * (s_new, zero for those that did not move) */
        int qnew = order[col - 1];
        const double *fy = s->acc + 6 * ld, *fs = s->acc + 7 * ld;
        const double *ay = s->acc + 2 * ld, *as = s->acc + 3 * ld;
        if (!fused)
            column_products(s, s->acc + 6 * ld, ind, nsub, nsub, qnew, 1);
        rows_sum(s, s->acc + 2 * ld, s->list, s->coef, active_moved(s));
        for (int j = 1; j <= col; j++) {
            int q = order[j - 1];
            WN1(col, j) = fy[q];         /* Y'ZZ'Y, row col */
            WN1(m + col, m + j) = as[q]; /* S'AA'S, row col */
            WN1(m + col, j) = ay[q];     /* L_a, row col */
            WN1(m + j, col) = fs[q];     /* R_z, column col (last: it owns (col, col)) */
        }
        upcl = col - 1;
    } else {
        upcl = col;
    }

    /* old parts of the blocks: the variables that entered (+ in (1,1), -
     * in (2,2)) or left (the other way round), in one list (entering, then
     * leaving, counted negatively) so that each product is one pass. For
     * pair iy (slot qa) the products with column qa of Y give block
     * (1,1)'s column, those with column qa of S give block (2,2)'s and row
     * iy of block (2,1). */
    if (nenter + nleave > 0) {
        int nchanged = nenter + nleave, *changed = s->list;
        double *ey = s->acc, *es = s->acc + 2 * ld;
        memcpy(changed, s->entering, (size_t)nenter * sizeof(int));
        memcpy(changed + nenter, s->leaving, (size_t)nleave * sizeof(int));
        for (int iy = 1; iy <= upcl; iy++) {
            int qa = order[iy - 1], is = m + iy;
            column_products(s, ey, changed, nenter, nchanged, qa, 1);
            column_products(s, es, changed, nenter, nchanged, qa, 0);
            for (int jy = 1; jy <= iy; jy++) {
                int qb = order[jy - 1], js = m + jy;
                WN1(iy, jy) = WN1(iy, jy) + ey[qb];
                WN1(is, js) = WN1(is, js) - es[ld + qb];
            }
            for (int jy = 1; jy <= upcl; jy++) {
                int qb = order[jy - 1];
                if (is <= jy + m)
                    WN1(is, jy) = WN1(is, jy) + es[qb];
                else
                    WN1(is, jy) = WN1(is, jy) - es[qb];
            }
        }
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
    int col2 = 2 * col;
    if (cholesky_upper(s->wn, m2, col, col2, s->wn_rdiag))
        return -1;
    /* S'AA'S*theta + (L^-1(-L_a'+R_z'))'L^-1(-L_a'+R_z') in the (2,2) block */
    for (int is = col + 1; is <= col2; is++)
        for (int js = is; js <= col2; js++)
            WN(is, js) = WN(is, js) + small_dot(col, &WN(1, is), &WN(1, js));
    if (cholesky_upper(&WN(col + 1, col + 1), m2, col, col, s->wn_rdiag + col))
        return -2;
    return 0;
}

/* s->cvec = the vectors a / a_divisor (Y's half) and b_factor b (S's
 * half), given for the pairs oldest first, placed by storage slot; the
 * unused slots below cw zero. */
static void slot_vector(bs_lbfgsb *s, const double *a, double a_divisor, const double *b,
                        double b_factor)
{
    int col = s->col, ld = s->ld, cw = slot_width(s);
    for (int q = 0; q < cw; q++)
        s->cvec[q] = s->cvec[ld + q] = 0.0;
    for (int j = 0; j < col; j++) {
        s->cvec[s->order[j]] = a_divisor == 1.0 ? a[j] : a[j] / a_divisor;
        s->cvec[ld + s->order[j]] = b_factor == 1.0 ? b[j] : b_factor * b[j];
    }
}

/* r = -Z'(B(xcp - x) + g) over the free variables, with c = W'(xcp - x)
 * from cauchy; and, for subsm, W'Zr in acc[4ld..6ld). With ynew >= 0
 * (constrained only), formk's products of Y's column ynew with every slot
 * over the free rows, in acc[6ld..8ld), on the same pass. Returns 1 when
 * it summed those. */
static int cmprlb(bs_lbfgsb *s, const double *x, const double *g, int ynew)
{
    int n = s->n, m = s->m, col = s->col, nfree = s->nfree;
    double theta = s->theta, *r = s->r, *wa = s->wa;
    const int *index = s->index;
    if (!s->cnstnd && col > 0) {
        for (int i = 0; i < n; i++)
            r[i] = -g[i];
        rows_sum(s, s->acc + 4 * s->ld, index, r, nfree);
        return 0;
    }
    reduced_gradient(s, r, index, nfree, x, g);
    bmv(s, wa + 2 * m, wa);
    /* r += Y a1 + theta S a2 over the free rows */
    slot_vector(s, wa, 1.0, wa + col, theta);
    rows_dot_sum(s, s->acc + 4 * s->ld, index, nfree, r, ynew);
    return ynew >= 0;
}

/* Minimises the model over the free variables from the Cauchy point z
 * along the Newton direction (d = r on entry, reduced gradient), then
 * projects into the box; if the projected point is not a descent
 * direction from x, backtracks along the Newton direction to the box
 * (Morales and Nocedal 2011). z receives the result. */
static void subsm(bs_lbfgsb *s, const double *xx, const double *gg)
{
    int m = s->m, m2 = 2 * m, col = s->col, nsub = s->nfree, ld = s->ld;
    const int *ind = s->index, *nbd = s->nbd;
    const double *l = s->l, *u = s->u;
    double theta = s->theta, *x = s->z, *d = s->r, *xp = s->zsave, *wv = s->wa;
    if (nsub <= 0)
        return;

    /* wv = W'Zd, summed per storage slot by cmprlb */
    const double *vy = s->acc + 4 * ld, *vs = s->acc + 5 * ld;
    for (int i = 0; i < col; i++) {
        wv[i] = vy[s->order[i]];
        wv[col + i] = theta * vs[s->order[i]];
    }

    /* wv = K^(-1) wv */
    int col2 = 2 * col;
    solve_upper(s->wn, m2, col2, s->wn_rdiag, wv, 1);
    for (int i = 0; i < col; i++)
        wv[i] = -wv[i];
    solve_upper(s->wn, m2, col2, s->wn_rdiag, wv, 0);

    /* d = (1/theta) d + (1/theta^2) Z'W wv */
    slot_vector(s, wv, theta, wv + col, 1.0);
    rows_dot(s, ind, nsub, d);

    /* try the projection of the Newton point (the bounds are infinite
     * where there is none, so max and min leave such a variable alone) */
    s->iword = project(s, d, ind, nsub, 1.0 / theta);
    if (s->iword == 0 || diff_dot(s, x, xx, gg) <= 0.0)
        return;

    /* not a descent direction: back to the Cauchy point and backtrack */
    for (int i = 0; i < nsub; i++)
        x[ind[i]] = xp[i];
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


/* Sets up the line search along d = z - x: the largest feasible step
 * stpmx, the first trial step, and the saved x (xold), g (gold, by a swap
 * of the buffers) and f; g'd for lnsrlb's first round. */
static void lnsrlb_start(bs_lbfgsb *s, const double *x)
{
    double *swap = s->gold;
    s->gold = s->g;
    s->g = swap;
    ls_setup o = ls_setup_pass(s, x, s->cnstnd && s->iter > 0);
    s->dtd = o.dtd;
    s->dnorm = sqrt(s->dtd);
    s->gd = o.gd;
    s->stpmx = STPMAX_UNCONSTRAINED;
    if (s->cnstnd)
        s->stpmx = s->iter == 0 ? 1.0 : o.stpmx;
    if (s->iter == 0 && !s->boxed)
        s->stp = dmin(1.0 / s->dnorm, s->stpmx);
    else
        s->stp = 1.0;
    s->fold = s->f;
    s->ifun = 0;
    s->iback = 0;
}

/* One round of the line search with f and g'd (s->gd) at x. Returns 1
 * when x holds the next trial point (an evaluation is wanted), 0 when the
 * search ended (s->info non-zero when it failed). */
static int lnsrlb(bs_lbfgsb *s, double *x)
{
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
    if (s->stp == 1.0)
        memcpy(x, s->z, (size_t)s->n * sizeof(double));
    else
        axpy(s, x, s->stp, s->d, s->xold);
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
    s->nleave = 0;
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
        cauchy(s, x, s->g);
        freev(s);
    }
    if (s->nfree != 0 && s->col != 0) {
        /* cmprlb first, so that its pass over the free rows also sums
         * formk's products with the new pair (it does not need K) */
        int fused = cmprlb(s, x, s->g, s->wrk && s->updatd ? s->order[s->col - 1] : -1);
        if (s->wrk && formk(s, fused)) {
            forget(s); /* K not positive definite */
            goto iteration;
        }
        subsm(s, x, s->g);
    }
    lnsrlb_start(s, x);

line_search:
    if (lnsrlb(s, x) && s->iback < LS_MAX_EVALS) {
        s->state = ST_FG_LN;
        return BS_LBFGSB_FG;
    }
    if (s->info != 0 || s->iback >= LS_MAX_EVALS) {
        /* the search failed: back to the previous iterate */
        double *swap = s->g;
        s->g = s->gold;
        s->gold = swap;
        memcpy(x, s->xold, (size_t)n * sizeof(double));
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
    /* s = x_k+1 - x_k = stp d and y = g_k+1 - g_k (stored by matupd) */
    double dr;
    if (s->stp == 1.0) {
        dr = s->gd - s->gdold;
        ddum = -s->gdold;
    } else {
        dr = (s->gd - s->gdold) * s->stp;
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
    matupd(s, dr);
    if (formt(s))
        forget(s); /* T not positive definite */
    goto iteration;
}

int bs_lbfgsb_step(bs_lbfgsb *s, double *x, double f, const double *g)
{
    switch (s->state) {
    case ST_FG_START:
        s->f = f;
        memcpy(s->g, g, (size_t)s->n * sizeof(double));
        return mainlb(s, x, ST_FG_START);
    case ST_FG_LN:
        /* lnsrlb's g'd, while g is copied */
        s->f = f;
        s->gd = copy_dot(s, s->g, g, s->d);
        return mainlb(s, x, ST_FG_LN);
    case ST_NEW_X:
        return mainlb(s, x, ST_NEW_X);
    default:
        return BS_LBFGSB_ERROR;
    }
}
