/* analysis — Lipschitz bounds by power iteration (linear layers) and by the
 * DFT of the kernel (conv2d), the empirical ratio on the logits, and the
 * unit analysis: ranking a split by a direction of a layer's output, label
 * purity, and image grids of the top images. */
#include "core/analysis.h"
#include "core/error.h"

#include "core/rng.h"

#include <complex.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Lipschitz bounds */

double bs_lipschitz_linear(const float *weight, int OC, int C, uint64_t seed,
                           int *iterations)
{
    /* weight is (OC,C). With v of length 1, ||W v||^2 = v^T W^T W v is the
     * Rayleigh quotient of W^T W: it rises to sigma_max^2 as v -> W^T W v
     * converges to the top right singular vector. */
    double *v = malloc((size_t)C * sizeof *v), *u = malloc((size_t)OC * sizeof *u);
    if (!v || !u) {
        free(v);
        free(u);
        return -1.0;
    }
    bs_rng rng;
    bs_rng_seed(&rng, seed);
    double norm = 0.0;
    for (int c = 0; c < C; c++) {
        v[c] = bs_rng_normal(&rng);
        norm += v[c] * v[c];
    }
    norm = sqrt(norm);
    for (int c = 0; c < C; c++)
        v[c] /= norm;
    double sigma = 0.0;
    int it = 0;
    while (it < BS_LIPSCHITZ_MAX_ITER) {
        it++;
        double s2 = 0.0;
        for (int o = 0; o < OC; o++) {
            const float *row = weight + (size_t)o * C;
            double acc = 0.0;
            for (int c = 0; c < C; c++)
                acc += (double)row[c] * v[c];
            u[o] = acc;
            s2 += acc * acc;
        }
        double prev = sigma;
        sigma = sqrt(s2);
        /* v <- W^T u / ||W^T u|| */
        memset(v, 0, (size_t)C * sizeof *v);
        for (int o = 0; o < OC; o++) {
            const float *row = weight + (size_t)o * C;
            for (int c = 0; c < C; c++)
                v[c] += (double)row[c] * u[o];
        }
        norm = 0.0;
        for (int c = 0; c < C; c++)
            norm += v[c] * v[c];
        norm = sqrt(norm);
        if (sigma == 0.0 || norm == 0.0 || fabs(sigma - prev) <= BS_LIPSCHITZ_TOL * sigma)
            break;
        for (int c = 0; c < C; c++)
            v[c] /= norm;
    }
    free(v);
    free(u);
    if (iterations)
        *iterations = it;
    return sigma;
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

int bs_lipschitz_bounds(const bs_model *m, uint64_t seed, bs_lipschitz *out,
                        char *err)
{
    memset(out, 0, sizeof *out);
    out->n_layers = m->n_layers;
    out->product = 1.0;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        const float *w = m->params + l->weight_off;
        bs_lipschitz_layer *r = &out->layers[i];
        switch (l->kind) {
        case BS_LINEAR:
            r->bound = bs_lipschitz_linear(w, l->out_shape[0], l->in_shape[0], seed,
                                           &r->iterations);
            break;
        case BS_CONV2D: {
            bs_conv_dims d = {
                .C = l->in_shape[0], .H = l->in_shape[1], .W = l->in_shape[2],
                .OC = l->out_shape[0], .OH = l->out_shape[1], .OW = l->out_shape[2],
                .K = l->kernel, .stride = l->stride, .pad = l->padding,
            };
            r->bound = bs_lipschitz_conv2d(w, &d, seed, &r->iterations);
            break;
        }
        case BS_MAXPOOL2D:
            /* |max_w a - max_w b| <= ||(a-b)_w||_2; summed over windows, each
             * input counts once per window holding it: ceil(K/s)^2 at most. */
            r->bound = l->stride >= l->kernel ? 1.0
                                              : (double)((l->kernel + l->stride - 1) / l->stride);
            break;
        case BS_SIGMOID:
            r->bound = 0.25;
            break;
        case BS_FLATTEN:
        case BS_RELU:
        case BS_TANH:
        case BS_DROPOUT:
            r->bound = 1.0;
            break;
        default: /* graph ops: bs_model_build refuses them */
            break;
        }
        if (r->bound < 0.0)
            return bs_fail(err, "out of memory for the bound of layer %d (%s)", i,
                        bs_layer_name(l->kind));
        out->product *= r->bound;
    }
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
                        const bs_control *ctl, bs_scratch *scratch,
                        bs_lipschitz_empirical *out, char *err)
{
    if (d->input_size != m->input_size || n < 0 || n > d->n)
        return bs_fail(err, "the first %d images of %s do not fit the model's input", n,
                       d->name);
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    *out = (bs_lipschitz_empirical){.status = BS_ATTACK_DONE};
    double sum = 0.0;
    bs_control inner = bs_control_quiet(ctl); /* the progress counts images */
    for (int i = 0; i < n && out->status == BS_ATTACK_DONE; i++) {
        const float *x = d->images + (size_t)i * d->input_size;
        int target = (d->labels[i] + 1) % m->classes;
        bs_attack_result r;
        if (bs_attack_run(m, x, &target, 1, &p, &inner, scratch, &r, err))
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
    if ((k == BS_LINEAR || k == BS_CONV2D) && layer + 1 < m->n_layers) {
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
        const float *phi = ws->acts[L + 1]; /* (nb, dim) */
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
