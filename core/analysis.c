/* analysis — Lipschitz bounds by power iteration (linear layers) and by the
 * DFT of the kernel (conv2d), the empirical ratio on the logits, and the
 * unit analysis: ranking a split by a direction of a layer's output, label
 * purity, and image grids of the top images. */
#include "core/analysis.h"
#include "core/error.h"

#include "core/ops.h"
#include "core/rng.h"

#include <complex.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Lipschitz bounds */

double bs_lipschitz_operator(void (*apply)(void *ctx, double *out, const double *in),
                             void (*adjoint)(void *ctx, double *out, const double *in),
                             void *ctx, size_t n_in, size_t n_out, double tol, uint64_t seed,
                             int *iterations)
{
    /* With v of length 1, ||A v||^2 = v^T A^T A v is the Rayleigh quotient
     * of A^T A: it rises to sigma_max^2 as v -> A^T A v converges to the
     * top right singular vector. */
    double *v = malloc(n_in * sizeof *v), *u = malloc(n_out * sizeof *u);
    if (!v || !u) {
        free(v);
        free(u);
        return -1.0;
    }
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    double norm = 0.0;
    for (size_t c = 0; c < n_in; c++) {
        v[c] = bs_rng_normal(&rng);
        norm += v[c] * v[c];
    }
    norm = sqrt(norm);
    for (size_t c = 0; c < n_in; c++)
        v[c] /= norm;
    double sigma = 0.0;
    int it = 0;
    while (it < BS_LIPSCHITZ_MAX_ITER) {
        it++;
        apply(ctx, u, v);
        double s2 = 0.0;
        for (size_t o = 0; o < n_out; o++)
            s2 += u[o] * u[o];
        double prev = sigma;
        sigma = sqrt(s2);
        adjoint(ctx, v, u); /* v <- A^T u / ||A^T u|| */
        norm = 0.0;
        for (size_t c = 0; c < n_in; c++)
            norm += v[c] * v[c];
        norm = sqrt(norm);
        if (sigma == 0.0 || norm == 0.0 || fabs(sigma - prev) <= tol * sigma)
            break;
        for (size_t c = 0; c < n_in; c++)
            v[c] /= norm;
    }
    free(v);
    free(u);
    if (iterations)
        *iterations = it;
    return sigma;
}

/* A linear layer's weight (OC,C) as an operator, in double. */
typedef struct dense_op {
    const float *weight;
    int OC, C;
} dense_op;

static void dense_apply(void *ctx, double *u, const double *v)
{
    const dense_op *a = ctx;
    for (int o = 0; o < a->OC; o++) {
        const float *row = a->weight + (size_t)o * a->C;
        double acc = 0.0;
        for (int c = 0; c < a->C; c++)
            acc += (double)row[c] * v[c];
        u[o] = acc;
    }
}

static void dense_adjoint(void *ctx, double *v, const double *u)
{
    const dense_op *a = ctx;
    memset(v, 0, (size_t)a->C * sizeof *v);
    for (int o = 0; o < a->OC; o++) {
        const float *row = a->weight + (size_t)o * a->C;
        for (int c = 0; c < a->C; c++)
            v[c] += (double)row[c] * u[o];
    }
}

double bs_lipschitz_linear(const float *weight, int OC, int C, uint64_t seed,
                           int *iterations)
{
    dense_op a = {weight, OC, C};
    return bs_lipschitz_operator(dense_apply, dense_adjoint, &a, (size_t)C, (size_t)OC,
                                 BS_LIPSCHITZ_TOL, seed, iterations);
}

/* Largest eigenvalue of the n x n Hermitian positive semi-definite B by
 * power iteration from a complex Gaussian start drawn from seed; v and w are
 * scratch of n. Returns it; *iterations gets the steps. */
static double hermitian_top(const double complex *B, int n, double complex *v,
                            double complex *w, uint64_t seed, int *iterations)
{
    if (n == 1) {
        *iterations = 1;
        return creal(B[0]) > 0.0 ? creal(B[0]) : 0.0;
    }
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    double norm = 0.0;
    for (int i = 0; i < n; i++) {
        double re = bs_rng_normal(&rng), im = bs_rng_normal(&rng);
        v[i] = re + im * I;
        norm += re * re + im * im;
    }
    norm = sqrt(norm);
    for (int i = 0; i < n; i++)
        v[i] /= norm;
    double lambda = 0.0;
    int it = 0;
    while (it < BS_LIPSCHITZ_MAX_ITER) {
        it++;
        /* w = B v; the Rayleigh quotient v^H B v approaches lambda_max from below */
        double rq = 0.0;
        norm = 0.0;
        for (int i = 0; i < n; i++) {
            double complex acc = 0.0;
            for (int j = 0; j < n; j++)
                acc += B[(size_t)i * n + j] * v[j];
            w[i] = acc;
            rq += creal(conj(v[i]) * acc);
            norm += creal(acc) * creal(acc) + cimag(acc) * cimag(acc);
        }
        double prev = lambda;
        lambda = rq > 0.0 ? rq : 0.0;
        norm = sqrt(norm);
        if (lambda == 0.0 || norm == 0.0 || fabs(lambda - prev) <= BS_LIPSCHITZ_TOL * lambda)
            break;
        for (int i = 0; i < n; i++)
            v[i] = w[i] / norm;
    }
    *iterations = it;
    return lambda;
}

double bs_lipschitz_conv2d(const float *weight, const bs_conv_dims *d,
                           uint64_t seed, int *iterations)
{
    int OC = d->OC, C = d->C, K = d->K;
    int N1 = d->H + 2 * d->pad, N2 = d->W + 2 * d->pad;
    /* sigma_max(A) is the square root of the top eigenvalue of the smaller
     * of A^H A (C x C) and A A^H (OC x OC). */
    int n = C <= OC ? C : OC;
    double complex *tw1 = malloc((size_t)N1 * K * sizeof *tw1);
    double complex *tw2 = malloc((size_t)N2 * K * sizeof *tw2);
    double complex *A = malloc((size_t)OC * C * sizeof *A);
    double complex *B = malloc((size_t)n * n * sizeof *B);
    double complex *v = malloc((size_t)n * sizeof *v), *w = malloc((size_t)n * sizeof *w);
    double complex *row = malloc((size_t)K * sizeof *row);
    double best = -1.0;
    int most = 0;
    if (!tw1 || !tw2 || !A || !B || !v || !w || !row)
        goto out;
    /* twiddles e^{-2 pi i u a / N} (the sign does not change singular values) */
    for (int u = 0; u < N1; u++)
        for (int a = 0; a < K; a++)
            tw1[u * K + a] = cexp(-2.0 * M_PI * I * (double)((long)u * a % N1) / N1);
    for (int u = 0; u < N2; u++)
        for (int b = 0; b < K; b++)
            tw2[u * K + b] = cexp(-2.0 * M_PI * I * (double)((long)u * b % N2) / N2);
    best = 0.0;
    for (int fu = 0; fu < N1; fu++) {
        for (int fv = 0; fv < N2; fv++) {
            /* A[o][c] = sum_{a,b} w[o,c,a,b] e^{-2 pi i (fu a/N1 + fv b/N2)} */
            for (int oc = 0; oc < OC * C; oc++) {
                const float *k = weight + (size_t)oc * K * K;
                for (int a = 0; a < K; a++) {
                    double complex s = 0.0;
                    for (int b = 0; b < K; b++)
                        s += (double)k[a * K + b] * tw2[fv * K + b];
                    row[a] = s;
                }
                double complex s = 0.0;
                for (int a = 0; a < K; a++)
                    s += tw1[fu * K + a] * row[a];
                A[oc] = s;
            }
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    double complex s = 0.0;
                    if (C <= OC) /* (A^H A)[i][j] = sum_o conj(A[o][i]) A[o][j] */
                        for (int o = 0; o < OC; o++)
                            s += conj(A[(size_t)o * C + i]) * A[(size_t)o * C + j];
                    else /* (A A^H)[i][j] = sum_c A[i][c] conj(A[j][c]) */
                        for (int c = 0; c < C; c++)
                            s += A[(size_t)i * C + c] * conj(A[(size_t)j * C + c]);
                    B[(size_t)i * n + j] = s;
                }
            int it;
            double lambda = hermitian_top(B, n, v, w, seed, &it);
            if (lambda > best)
                best = lambda;
            if (it > most)
                most = it;
        }
    }
    best = sqrt(best);
out:
    free(tw1);
    free(tw2);
    free(A);
    free(B);
    free(v);
    free(w);
    free(row);
    if (iterations)
        *iterations = most;
    return best;
}

/* a x b where HUGE_VAL stays HUGE_VAL (never inf x 0 = NaN) */
static double bound_mul(double a, double b)
{
    return a == HUGE_VAL || b == HUGE_VAL ? HUGE_VAL : a * b;
}

int bs_lipschitz_bounds(const bs_model *m, uint64_t seed, bs_lipschitz *out,
                        char *err)
{
    memset(out, 0, sizeof *out);
    if (m->n_layers > BS_MAX_NODES)
        return bs_fail(err, "the model has more than %d nodes", BS_MAX_NODES);
    double *tensor = malloc((size_t)m->n_tensors * sizeof *tensor);
    if (!tensor)
        return bs_fail(err, "out of memory for the bounds");
    /* each tensor's bound as a function of the input: 1 for the input, 0
     * for constants */
    for (int t = 0; t < m->n_tensors; t++)
        tensor[t] = t == 0 ? 1.0 : 0.0;
    out->n_layers = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        const bs_op *op = bs_op_of(l->kind);
        bs_lipschitz_layer *r = &out->layers[i];
        r->bound = op->lipschitz(m, l, seed, &r->iterations, &r->note);
        if (r->bound < 0.0) {
            free(tensor);
            return bs_fail(err, "out of memory for the bound of layer %d (%s)", i,
                           bs_layer_name(l->kind));
        }
        double in = 0.0;
        for (int k = 0; k < l->n_in; k++) {
            int t = l->in[k];
            if (m->tensors[t].constant)
                continue;
            double b = tensor[t];
            if (op->rule == BS_LIP_RSS)
                in = b == HUGE_VAL || in == HUGE_VAL ? HUGE_VAL : in + b * b;
            else if (op->rule == BS_LIP_SUM)
                in = b == HUGE_VAL || in == HUGE_VAL ? HUGE_VAL : in + b;
            else
                in = b; /* one input that depends on x (a second makes the bound HUGE_VAL) */
        }
        if (op->rule == BS_LIP_RSS && in != HUGE_VAL)
            in = sqrt(in);
        /* a chain multiplies in order from 1: the product of its layers */
        r->output = tensor[l->out] = bound_mul(in, r->bound);
        if (r->output == HUGE_VAL && !out->note)
            out->note = r->note ? r->note : "a node's input has no finite bound";
    }
    out->product = tensor[m->output];
    if (out->product != HUGE_VAL)
        out->note = NULL;
    free(tensor);
    return 0;
}

double bs_lipschitz_ratio(const bs_model *m, const float *x, const float *x_adv,
                          char *err)
{
    size_t n = m->input_size;
    double r2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = (double)x_adv[i] - x[i];
        r2 += r * r;
    }
    if (r2 == 0.0) {
        bs_fail(err, "the two inputs are equal: the ratio is undefined");
        return -1.0;
    }
    bs_workspace *ws = bs_workspace_new(m, 2);
    float *pair = malloc(2 * n * sizeof *pair);
    if (!ws || !pair) {
        bs_workspace_free(ws);
        free(pair);
        bs_fail(err, "out of memory");
        return -1.0;
    }
    memcpy(pair, x, n * sizeof *pair);
    memcpy(pair + n, x_adv, n * sizeof *pair);
    const float *logits = bs_model_forward(m, ws, pair, 2);
    double f2 = 0.0;
    for (int c = 0; c < m->classes; c++) {
        double dl = (double)logits[m->classes + c] - logits[c];
        f2 += dl * dl;
    }
    bs_workspace_free(ws);
    free(pair);
    return sqrt(f2 / r2);
}

int bs_lipschitz_attack(const bs_model *m, const bs_dataset *d, int n,
                        const bs_attack_control *ctl, bs_lipschitz_empirical *out, char *err)
{
    if (d->input_size != m->input_size || n < 0 || n > d->n)
        return bs_fail(err, "the first %d images of %s do not fit the model's input", n,
                       d->name);
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    *out = (bs_lipschitz_empirical){.status = BS_ATTACK_DONE};
    double sum = 0.0;
    for (int i = 0; i < n && out->status == BS_ATTACK_DONE; i++) {
        const float *x = d->images + (size_t)i * d->input_size;
        int target = (d->labels[i] + 1) % m->classes;
        bs_attack_control inner = {0};
        if (ctl)
            inner = (bs_attack_control){.deadline = ctl->deadline, .cancel = ctl->cancel};
        bs_attack_result r;
        if (bs_attack_run(m, x, &target, 1, &p, &inner, &r, err))
            return -1;
        if (r.status != BS_ATTACK_DONE) {
            /* stopped: this image does not count */
            out->status = r.status;
            bs_attack_result_free(&r);
            break;
        }
        if (r.success && r.norms.l2 > 0.0) {
            double ratio = bs_lipschitz_ratio(m, x, r.adv, err);
            if (ratio < 0.0) {
                bs_attack_result_free(&r);
                return -1;
            }
            out->examples++;
            sum += ratio;
            if (ratio > out->max_ratio)
                out->max_ratio = ratio;
        }
        bs_attack_result_free(&r);
        out->images++;
        if (ctl && ctl->progress)
            ctl->progress(ctl->ctx, i + 1, n);
    }
    out->mean_ratio = out->examples ? sum / out->examples : 0.0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* unit analysis */

int bs_units_layer(const bs_model *m, int layer, char *err)
{
    if (layer < 0 || layer >= m->n_layers)
        return bs_fail(err, "layer %d is not one of the model's layers 0..%d", layer,
                    m->n_layers - 1);
    bs_layer_kind k = m->layers[layer].kind;
    if ((k == BS_LINEAR || k == BS_CONV2D) && layer + 1 < m->n_layers &&
        m->layers[layer + 1].in[0] == m->layers[layer].out) {
        bs_layer_kind next = m->layers[layer + 1].kind;
        if (next == BS_RELU || next == BS_SIGMOID || next == BS_TANH)
            return layer + 1;
    }
    return layer;
}

void bs_units_basis(float *v, size_t n, int unit)
{
    memset(v, 0, n * sizeof *v);
    if (unit >= 0 && (size_t)unit < n)
        v[unit] = 1.0f;
}

void bs_units_random(float *v, size_t n, uint64_t seed)
{
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    double norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        v[i] = bs_rng_normal(&rng);
        norm += (double)v[i] * v[i];
    }
    norm = sqrt(norm);
    for (size_t i = 0; i < n && norm > 0.0; i++)
        v[i] = (float)(v[i] / norm);
}

double bs_units_purity(const int *labels, int k, int *majority)
{
    int best = -1, best_count = 0;
    for (int i = 0; i < k; i++) {
        int count = 0;
        for (int j = 0; j < k; j++)
            count += labels[j] == labels[i];
        if (count > best_count || (count == best_count && labels[i] < best)) {
            best = labels[i];
            best_count = count;
        }
    }
    if (majority)
        *majority = best;
    return k > 0 ? (double)best_count / k : 0.0;
}

/* Puts (index, score) into the sorted top list of t (filled entries so far)
 * unless it ranks below all k. Indices arrive in increasing order, so an
 * equal score goes after the ones already there: ties favour the smaller
 * index. */
static void top_insert(bs_units_top *t, int *filled, int k, int index, double score)
{
    int p = *filled;
    while (p > 0 && t->scores[p - 1] < score)
        p--;
    if (p >= k)
        return;
    int last = *filled < k ? *filled : k - 1;
    memmove(t->indices + p + 1, t->indices + p, (size_t)(last - p) * sizeof(int));
    memmove(t->scores + p + 1, t->scores + p, (size_t)(last - p) * sizeof(double));
    t->indices[p] = index;
    t->scores[p] = score;
    if (*filled < k)
        (*filled)++;
}

static int check_fit(const bs_model *m, const bs_dataset *d, char *err)
{
    if (d->input_size != m->input_size || d->shape[0] != m->input_shape[0] ||
        d->shape[1] != m->input_shape[1] || d->shape[2] != m->input_shape[2])
        return bs_fail(err, "dataset %s has inputs (%d,%d,%d) but the model takes (%d,%d,%d)",
                    d->name, d->shape[0], d->shape[1], d->shape[2], m->input_shape[0],
                    m->input_shape[1], m->input_shape[2]);
    return 0;
}

int bs_units_rank(const bs_model *m, int layer, const bs_dataset *d,
                  const float *dirs, int n_dirs, int k, bs_units_top *tops,
                  char *err)
{
    int L = bs_units_layer(m, layer, err);
    if (L < 0 || check_fit(m, d, err))
        return -1;
    if (k < 1 || k > BS_UNITS_MAX_K || k > d->n)
        return bs_fail(err, "k must be in [1, %d] (and at most the %d images of the split), "
                    "got %d", BS_UNITS_MAX_K, d->n, k);
    if (n_dirs < 1)
        return bs_fail(err, "no direction to rank by");
    size_t dim = m->layers[L].out_size;
    int batch = d->n < BS_UNITS_BATCH ? d->n : BS_UNITS_BATCH;
    int *filled = calloc((size_t)n_dirs, sizeof *filled);
    bs_workspace *ws = bs_workspace_new(m, batch);
    if (!filled || !ws) {
        free(filled);
        bs_workspace_free(ws);
        return bs_fail(err, "out of memory for the unit ranking");
    }
    for (int t = 0; t < n_dirs; t++)
        memset(&tops[t], 0, sizeof tops[t]);
    for (int b0 = 0; b0 < d->n; b0 += batch) {
        int nb = d->n - b0 < batch ? d->n - b0 : batch;
        bs_model_forward(m, ws, d->images + (size_t)b0 * d->input_size, nb);
        const float *phi = ws->acts[m->layers[L].out]; /* (nb, dim) */
        for (int j = 0; j < nb; j++) {
            const float *p = phi + (size_t)j * dim;
            for (int t = 0; t < n_dirs; t++) {
                const float *v = dirs + (size_t)t * dim;
                double s = 0.0;
                for (size_t i = 0; i < dim; i++)
                    s += (double)p[i] * v[i];
                top_insert(&tops[t], &filled[t], k, b0 + j, s);
            }
        }
    }
    for (int t = 0; t < n_dirs; t++) {
        tops[t].k = k;
        for (int i = 0; i < k; i++)
            tops[t].labels[i] = d->labels[tops[t].indices[i]];
        tops[t].purity = bs_units_purity(tops[t].labels, k, &tops[t].majority);
    }
    free(filled);
    bs_workspace_free(ws);
    return 0;
}

/* Mean and population standard deviation of n values. */
static void mean_std(const double *v, int n, double *mean, double *std)
{
    double s = 0.0, s2 = 0.0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (v[i] - *mean) * (v[i] - *mean);
    *std = sqrt(s2 / n);
}

int bs_units_summarise(const bs_model *m, int layer, const bs_dataset *d,
                       int U, int k, uint64_t seed, bs_units_summary *out,
                       char *err)
{
    int L = bs_units_layer(m, layer, err);
    if (L < 0)
        return -1;
    size_t dim = m->layers[L].out_size;
    if (U < 1 || (size_t)U > dim)
        return bs_fail(err, "the summary needs 1 to %zu units (the size of layer %d's "
                    "output), got %d", dim, L, U);
    float *dirs = malloc(2 * (size_t)U * dim * sizeof *dirs);
    bs_units_top *tops = malloc(2 * (size_t)U * sizeof *tops);
    double *purity = malloc(2 * (size_t)U * sizeof *purity);
    int *order = malloc((size_t)d->n * sizeof *order);
    int rc = -1;
    if (!dirs || !tops || !purity || !order) {
        bs_fail(err, "out of memory for the unit summary");
        goto out;
    }
    for (int u = 0; u < U; u++) {
        bs_units_basis(dirs + (size_t)u * dim, dim, u);
        bs_units_random(dirs + (size_t)(U + u) * dim, dim, seed + (uint64_t)u);
    }
    if (bs_units_rank(m, layer, d, dirs, 2 * U, k, tops, err))
        goto out;
    *out = (bs_units_summary){.layer = L, .dim = (int)dim, .units = U, .k = k};
    for (int t = 0; t < 2 * U; t++)
        purity[t] = tops[t].purity;
    mean_std(purity, U, &out->unit_mean, &out->unit_std);
    mean_std(purity + U, U, &out->random_mean, &out->random_std);
    /* chance: k images drawn without replacement, U times */
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    for (int i = 0; i < d->n; i++)
        order[i] = i;
    int labels[BS_UNITS_MAX_K];
    double chance = 0.0;
    for (int u = 0; u < U; u++) {
        for (int i = 0; i < k; i++) {
            int j = i + (int)bs_rng_below(&rng, (uint32_t)(d->n - i));
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
            labels[i] = d->labels[order[i]];
        }
        chance += bs_units_purity(labels, k, NULL);
    }
    out->chance_mean = chance / U;
    rc = 0;
out:
    free(dirs);
    free(tops);
    free(purity);
    free(order);
    return rc;
}

int bs_units_grid_make(const bs_dataset *d, const int *indices, int k,
                       bs_units_grid *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (k < 1)
        return bs_fail(err, "a grid needs at least one image");
    for (int i = 0; i < k; i++)
        if (indices[i] < 0 || indices[i] >= d->n)
            return bs_fail(err, "image index %d is outside the split's 0..%d", indices[i],
                        d->n - 1);
    int C = d->shape[0], H = d->shape[1], W = d->shape[2];
    int width = k * W + (k - 1);
    uint8_t *px = malloc((size_t)width * H * C);
    if (!px)
        return bs_fail(err, "out of memory for the image grid");
    memset(px, 255, (size_t)width * H * C); /* the gaps are white */
    for (int i = 0; i < k; i++) {
        const float *img = d->images + (size_t)indices[i] * d->input_size;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = img[((size_t)c * H + y) * W + x];
                    long b = isnan(v) ? 0 : lroundf(v * 255.0f);
                    px[((size_t)y * width + i * (W + 1) + x) * C + c] =
                        (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
                }
    }
    *out = (bs_units_grid){.width = width, .height = H, .channels = C, .pixels = px};
    return 0;
}

void bs_units_grid_free(bs_units_grid *g)
{
    free(g->pixels);
    memset(g, 0, sizeof *g);
}
