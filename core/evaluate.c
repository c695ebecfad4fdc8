/* evaluate — Tables 1-3 of the paper over a dataset slice: attacks on a
 * pool of threads (each attack independent and deterministic, so the
 * numbers do not depend on the thread count), then the transfer, noise and
 * magnified predictions by batched prediction (row-stable, core/gemm.h, so
 * a prediction does not depend on the images beside it), all kept per
 * image, a block of images at a time (so the records of the first blocks
 * are complete while the others run); the tables are reduced from those
 * records in image order. */
#include "core/evaluate.h"
#include "core/error.h"

#include "core/rng.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREDICT_BATCH 256

bs_eval_config bs_eval_defaults(void)
{
    return (bs_eval_config){
        .first = 0, .n = 100, .seed = 1, .params = bs_attack_defaults(BS_ATTACK_LBFGS),
        .n_noise = 2, .noise = {0.1, 0.3}, .magnify = 0.1, .threads = 1,
    };
}

/* What the attack threads share. The shard is images lo .. hi-1 of the
 * slice; its attacks run a block of images at a time (blo .. bhi-1). */
typedef struct attack_pool {
    const bs_model *const *models;
    int n_models, lo, hi;    /* the shard */
    int blo, bhi;            /* the block being attacked */
    const bs_dataset *d;
    const bs_eval_config *cfg;
    const bs_control *ctl;
    const int *targets;      /* hi-lo */
    float *adv;              /* (n_models, hi-lo, input_size) */
    bs_eval_images *im;
    atomic_int next, done, failed; /* next: of the block; done: of the shard */
    pthread_mutex_t lock;    /* ctl's progress callback and error message */
    char err[BS_ERR_LEN];
    bs_attack_status status;
} attack_pool;

/* One attack thread: the pool it takes attacks from, and its scratch,
 * which every attack of the call that it runs uses (block after block). */
typedef struct attack_thread {
    attack_pool *p;
    bs_scratch *scratch;
} attack_thread;

static void *attack_worker(void *arg)
{
    attack_pool *p = ((attack_thread *)arg)->p;
    bs_scratch *scratch = ((attack_thread *)arg)->scratch;
    size_t in = p->d->input_size;
    int len = p->bhi - p->blo, total = p->n_models * (p->hi - p->lo), M = p->n_models;
    for (;;) {
        int job = atomic_fetch_add(&p->next, 1);
        if (job >= p->n_models * len || atomic_load(&p->failed))
            break;
        int i = job / len, k = p->blo + job % len;
        const float *x = p->d->images + (size_t)(p->cfg->first + k) * in;
        float *adv = p->adv + ((size_t)i * (p->hi - p->lo) + (k - p->lo)) * in;
        size_t rec = (size_t)k * M + i;
        bs_attack_result r;
        char err[BS_ERR_LEN];
        bs_stop why = bs_should_stop(p->ctl);
        if (why != BS_STOP_NONE) {
            memcpy(adv, x, in * sizeof(float));
            pthread_mutex_lock(&p->lock);
            p->status = why == BS_STOP_CANCELLED ? BS_ATTACK_CANCELLED : BS_ATTACK_TIMEOUT;
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        bs_control quiet = bs_control_quiet(p->ctl);
        if (bs_attack_run(p->models[i], x, &p->targets[k - p->lo], 1, &p->cfg->params, &quiet,
                          scratch, &r, err)) {
            pthread_mutex_lock(&p->lock);
            snprintf(p->err, sizeof p->err, "model %d, image %d: %s", i,
                     p->cfg->first + k, err);
            pthread_mutex_unlock(&p->lock);
            atomic_store(&p->failed, 1);
            break;
        }
        memcpy(adv, r.adv, in * sizeof(float));
        p->im->ok[rec] = r.success != 0;
        p->im->distortion[rec] = r.norms.distortion;
        if (r.status == BS_ATTACK_TIMEOUT || r.status == BS_ATTACK_CANCELLED) {
            pthread_mutex_lock(&p->lock);
            p->status = r.status;
            pthread_mutex_unlock(&p->lock);
        }
        bs_attack_result_free(&r);
        int done = atomic_fetch_add(&p->done, 1) + 1;
        if (p->ctl && p->ctl->progress) {
            pthread_mutex_lock(&p->lock);
            p->ctl->progress(p->ctl->ctx, done, total);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

/* Labels of model m for n images (n*input floats) into pred. */
static int predict(const bs_model *m, const float *images, int n, int *pred)
{
    bs_workspace *ws = bs_workspace_new(m, n < PREDICT_BATCH ? n : PREDICT_BATCH);
    if (!ws)
        return -1;
    for (int b0 = 0; b0 < n; b0 += PREDICT_BATCH) {
        int nb = n - b0 < PREDICT_BATCH ? n - b0 : PREDICT_BATCH;
        const float *lg = bs_model_forward(m, ws, images + (size_t)b0 * m->input_size, nb);
        for (int j = 0; j < nb; j++)
            pred[b0 + j] = bs_argmax(lg + (size_t)j * m->classes, m->classes);
    }
    bs_workspace_free(ws);
    return 0;
}

/* ||f(a) - f(b)||_2 on the logits. */
static double logit_distance(const bs_model *m, bs_workspace *ws, const float *a, const float *b)
{
    const float *la = bs_model_forward(m, ws, a, 1);
    float fa[1024];
    int V = m->classes < 1024 ? m->classes : 1024;
    memcpy(fa, la, (size_t)V * sizeof(float));
    const float *lb = bs_model_forward(m, ws, b, 1);
    double s = 0.0;
    for (int c = 0; c < V; c++)
        s += ((double)fa[c] - lb[c]) * ((double)fa[c] - lb[c]);
    return sqrt(s);
}

bs_eval_images *bs_eval_images_new(int n_models, int n_noise, int n)
{
    bs_eval_images *im = calloc(1, sizeof *im);
    if (!im)
        return NULL;
    size_t N = n > 0 ? (size_t)n : 1, M = (size_t)n_models, S = (size_t)n_noise;
    im->n_models = n_models;
    im->n_noise = n_noise;
    im->n = n;
    im->clean_wrong = calloc(N * M, 1);
    im->ok = calloc(N * M, 1);
    im->distortion = calloc(N * M, sizeof(double));
    im->ratio = calloc(N * M, sizeof(double));
    im->adv_wrong = calloc(N * M * M, 1);
    im->magnified_wrong = calloc(N * M * M, 1);
    im->noise_distortion = calloc(N * S + 1, sizeof(double));
    im->noise_wrong = calloc(N * S * M + 1, 1);
    if (!im->clean_wrong || !im->ok || !im->distortion || !im->ratio || !im->adv_wrong ||
        !im->magnified_wrong || !im->noise_distortion || !im->noise_wrong) {
        bs_eval_images_free(im);
        return NULL;
    }
    return im;
}

void bs_eval_images_free(bs_eval_images *im)
{
    if (!im)
        return;
    free(im->clean_wrong);
    free(im->ok);
    free(im->distortion);
    free(im->ratio);
    free(im->adv_wrong);
    free(im->magnified_wrong);
    free(im->noise_distortion);
    free(im->noise_wrong);
    free(im);
}

void bs_eval_shard_range(int n, int index, int count, int *lo, int *hi)
{
    *lo = (int)((long long)n * index / count);
    *hi = (int)((long long)n * (index + 1) / count);
}

bs_attack_status bs_eval_status_join(bs_attack_status a, bs_attack_status b)
{
    if (a == BS_ATTACK_CANCELLED || b == BS_ATTACK_CANCELLED)
        return BS_ATTACK_CANCELLED;
    if (a == BS_ATTACK_TIMEOUT || b == BS_ATTACK_TIMEOUT)
        return BS_ATTACK_TIMEOUT;
    return BS_ATTACK_DONE;
}

int bs_evaluate_check(const bs_model *const *models, int n_models, const bs_dataset *d,
                      const bs_eval_config *cfg, char *err)
{
    if (n_models < 1 || n_models > BS_EVAL_MAX_MODELS)
        return bs_fail(err, "an evaluation takes 1 to %d models, got %d", BS_EVAL_MAX_MODELS,
                    n_models);
    for (int i = 0; i < n_models; i++)
        if (models[i]->input_size != d->input_size)
            return bs_fail(err, "model %d does not take the inputs of dataset %s", i, d->name);
    if (cfg->first < 0 || cfg->n < 1 || cfg->first > d->n - cfg->n)
        return bs_fail(err, "the slice %d..%d is outside the %d images of %s %s", cfg->first,
                    cfg->first + cfg->n - 1, d->n, d->name, d->split);
    if (cfg->n_noise < 0 || cfg->n_noise > BS_EVAL_MAX_NOISE || cfg->threads < 1 ||
        cfg->threads > 64 || !(cfg->magnify >= 0.0))
        return bs_fail(err, "invalid evaluation configuration");
    for (int s = 0; s < cfg->n_noise; s++)
        if (!(cfg->noise[s] > 0.0 && cfg->noise[s] <= 10.0))
            return bs_fail(err, "noise standard deviation %g is not in (0, 10]", cfg->noise[s]);
    return bs_attack_params_check(&cfg->params, err);
}

/* What the predictions of a shard share. */
typedef struct block_ctx {
    const bs_model *const *models;
    int M, S, lo, n;         /* models, noise rows, the shard lo .. lo+n-1 */
    const bs_eval_config *cfg;
    size_t in;               /* input size */
    const float *clean;      /* (n, in): the shard's images */
    const int *labels;       /* n */
    const float *adv;        /* (M, n, in): their adversarial examples */
    float *scratch;          /* (n, in) */
    int *pred;               /* n */
    bs_rng noise[BS_EVAL_MAX_NOISE]; /* each row's draws, at the block's first image */
    bs_eval_images *im;
} block_ctx;

/* Everything but the attacks for images b0 .. b1-1 of the shard (counted
 * from its start): clean, transfer, magnified and noise predictions and
 * the Lipschitz ratios, into their records. Predictions are row-stable, so
 * a block gives the numbers the whole shard at once would. 0, or -1 when
 * out of memory. */
static int measure_block(block_ctx *b, int b0, int b1)
{
    int M = b->M, S = b->S, nb = b1 - b0;
    size_t in = b->in;
    const float *clean = b->clean + (size_t)b0 * in;
    const int *labels = b->labels + b0;
    bs_eval_images *im = b->im;
    for (int j = 0; j < M; j++) {
        if (predict(b->models[j], clean, nb, b->pred))
            return -1;
        for (int k = 0; k < nb; k++)
            im->clean_wrong[(size_t)(b->lo + b0 + k) * M + j] = b->pred[k] != labels[k];
    }

    /* transfer: every model on every model's examples, as they are and
     * magnified */
    for (int i = 0; i < M; i++) {
        const float *adv = b->adv + ((size_t)i * b->n + b0) * in;
        for (int pass = 0; pass < (b->cfg->magnify > 0.0 ? 2 : 1); pass++) {
            const float *imgs = adv;
            unsigned char *wrong = pass == 0 ? im->adv_wrong : im->magnified_wrong;
            if (pass == 1) {
                for (int k = 0; k < nb; k++) {
                    const float *x = clean + (size_t)k * in, *a = adv + (size_t)k * in;
                    float *dst = b->scratch + (size_t)k * in;
                    double dd = im->distortion[(size_t)(b->lo + b0 + k) * M + i];
                    double scale = dd > 0.0 ? b->cfg->magnify / dd : 0.0;
                    for (size_t q = 0; q < in; q++)
                        dst[q] = fminf(fmaxf(x[q] + (float)(scale * (a[q] - x[q])), 0.0f), 1.0f);
                }
                imgs = b->scratch;
            }
            for (int j = 0; j < M; j++) {
                if (predict(b->models[j], imgs, nb, b->pred))
                    return -1;
                for (int k = 0; k < nb; k++)
                    wrong[((size_t)(b->lo + b0 + k) * M + i) * M + j] = b->pred[k] != labels[k];
            }
        }
        /* the empirical Lipschitz ratio on the logits */
        bs_workspace *ws = bs_workspace_new(b->models[i], 1);
        if (!ws)
            return -1;
        for (int k = 0; k < nb; k++) {
            size_t rec = (size_t)(b->lo + b0 + k) * M + i;
            im->ratio[rec] = 0.0;
            if (im->ok[rec]) {
                const float *x = clean + (size_t)k * in, *a = adv + (size_t)k * in;
                bs_norms nr = bs_norms_of(x, a, in);
                if (nr.l2 > 0.0)
                    im->ratio[rec] = logit_distance(b->models[i], ws, a, x) / nr.l2;
            }
        }
        bs_workspace_free(ws);
    }

    /* Gaussian-noise baselines on the clean images, each row's draws in
     * image order from the start of the slice whatever the shard */
    for (int s = 0; s < S; s++) {
        for (int k = 0; k < nb; k++) {
            const float *x = clean + (size_t)k * in;
            float *dst = b->scratch + (size_t)k * in;
            for (size_t q = 0; q < in; q++)
                dst[q] = fminf(fmaxf(x[q] + (float)b->cfg->noise[s] * bs_rng_normal(&b->noise[s]),
                                     0.0f), 1.0f);
            im->noise_distortion[(size_t)(b->lo + b0 + k) * S + s] =
                bs_norms_of(x, dst, in).distortion;
        }
        for (int j = 0; j < M; j++) {
            if (predict(b->models[j], b->scratch, nb, b->pred))
                return -1;
            for (int k = 0; k < nb; k++)
                im->noise_wrong[((size_t)(b->lo + b0 + k) * S + s) * M + j] =
                    b->pred[k] != labels[k];
        }
    }
    return 0;
}

int bs_evaluate_images(const bs_model *const *models, int n_models, const bs_dataset *d,
                       const bs_eval_config *cfg, int lo, int hi, const bs_control *ctl,
                       bs_eval_measured_fn measured, bs_eval_images *im, float *adv_out,
                       int *ok_out, bs_attack_status *status, char *err)
{
    if (bs_evaluate_check(models, n_models, d, cfg, err))
        return -1;
    if (im->n_models != n_models || im->n_noise != cfg->n_noise || im->n != cfg->n || lo < 0 ||
        hi > cfg->n || lo > hi)
        return bs_fail(err, "the image records do not fit the evaluation");
    if (measured && !ctl)
        return bs_fail(err, "measured blocks need a control for their context");
    *status = BS_ATTACK_DONE;
    if (lo == hi)
        return 0;

    int n = hi - lo, M = n_models, S = cfg->n_noise, total = M * n, rc = 0;
    size_t in = d->input_size;
    /* the shard's images and labels */
    const float *clean = d->images + (size_t)(cfg->first + lo) * in;
    const int *labels = d->labels + cfg->first + lo;

    attack_pool p = {.models = models, .n_models = M, .lo = lo, .hi = hi, .d = d, .cfg = cfg,
                     .ctl = ctl, .im = im, .status = BS_ATTACK_DONE};
    int *targets = malloc((size_t)n * sizeof(int));
    p.adv = malloc((size_t)total * in * sizeof(float));
    float *scratch = malloc((size_t)n * in * sizeof(float));
    int *pred = malloc((size_t)n * sizeof(int));
    pthread_t *th = malloc((size_t)cfg->threads * sizeof(pthread_t));
    attack_thread *at = calloc((size_t)cfg->threads, sizeof *at);
    if (!targets || !p.adv || !scratch || !pred || !th || !at) {
        rc = bs_fail(err, "out of memory for the evaluation");
        goto out;
    }
    for (int t = 0; t < cfg->threads; t++) {
        at[t].p = &p;
        if (!(at[t].scratch = bs_scratch_new())) {
            rc = bs_fail(err, "out of memory for the evaluation");
            goto out;
        }
    }
    for (int k = lo; k < hi; k++)
        for (int i = 0; i < M; i++) {
            im->ok[(size_t)k * M + i] = 0;
            im->distortion[(size_t)k * M + i] = 0.0;
        }
    pthread_mutex_init(&p.lock, NULL);

    /* the targets: one per image, the same for every model, drawn in image
     * order from the start of the slice whatever the shard */
    bs_rng rng;
    bs_rng_seed(&rng, cfg->seed);
    int classes = models[0]->classes;
    for (int k = 0; k < hi; k++) {
        int t = (int)bs_rng_below(&rng, (uint32_t)classes - 1);
        if (k >= lo)
            targets[k - lo] = t >= labels[k - lo] ? t + 1 : t;
    }
    p.targets = targets;

    block_ctx b = {.models = models, .M = M, .S = S, .lo = lo, .n = n, .cfg = cfg, .in = in,
                   .clean = clean, .labels = labels, .adv = p.adv, .scratch = scratch,
                   .pred = pred, .im = im};
    for (int s = 0; s < S; s++) {
        bs_rng_seed(&b.noise[s], cfg->seed * 1000003ULL + (uint64_t)s + 1);
        for (size_t q = 0; q < (size_t)lo * in; q++)
            (void)bs_rng_normal(&b.noise[s]);
    }

    /* With measured, a block of images at a time, one image per thread and
     * model: its records are complete (measured) before the next block
     * starts. Without, the whole shard is one block, so that no thread
     * waits for the slowest attack of each block. */
    int block = measured ? cfg->threads : (hi > lo ? hi - lo : 1);
    for (int b0 = lo; b0 < hi && !rc; b0 += block) {
        p.blo = b0;
        p.bhi = b0 + block < hi ? b0 + block : hi;
        atomic_store(&p.next, 0);
        int started = 0;
        for (; started < cfg->threads; started++)
            if (pthread_create(&th[started], NULL, attack_worker, &at[started]))
                break;
        if (started == 0)
            attack_worker(&at[0]);
        for (int t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        if (atomic_load(&p.failed))
            rc = bs_fail(err, "%s", p.err);
        else if (measure_block(&b, p.blo - lo, p.bhi - lo))
            rc = bs_fail(err, "out of memory for the evaluation");
        else if (measured && p.status == BS_ATTACK_DONE)
            measured(ctl->ctx, p.blo, p.bhi);
    }
    pthread_mutex_destroy(&p.lock);
    if (rc)
        goto out;
    *status = p.status;

    for (int i = 0; i < M; i++) {
        if (adv_out)
            memcpy(adv_out + ((size_t)i * cfg->n + lo) * in, p.adv + (size_t)i * n * in,
                   (size_t)n * in * sizeof(float));
        if (ok_out)
            for (int k = lo; k < hi; k++)
                ok_out[(size_t)i * cfg->n + k] = im->ok[(size_t)k * M + i];
    }
out:
    free(targets);
    free(p.adv);
    free(scratch);
    free(pred);
    free(th);
    for (int t = 0; at && t < cfg->threads; t++)
        bs_scratch_free(at[t].scratch);
    free(at);
    return rc;
}

void bs_eval_reduce(const bs_eval_images *im, const bs_eval_config *cfg,
                    bs_attack_status status, bs_eval_result *out)
{
    bs_eval_reduce_measured(im, NULL, cfg, status, out);
}

void bs_eval_reduce_measured(const bs_eval_images *im, const unsigned char *measured,
                             const bs_eval_config *cfg, bs_attack_status status,
                             bs_eval_result *out)
{
    int n = 0, M = im->n_models, S = im->n_noise;
    for (int k = 0; k < im->n; k++)
        n += !measured || measured[k];
    memset(out, 0, sizeof *out);
    out->n_models = M;
    out->n = n;
    if (n == 0)
        return;
    out->status = status;
    for (int i = 0; i < M; i++) {
        int wrong = 0;
        double dist = 0.0;
        for (int k = 0; k < im->n; k++) {
            if (measured && !measured[k])
                continue;
            size_t rec = (size_t)k * M + i;
            wrong += im->clean_wrong[rec];
            if (im->ok[rec]) {
                out->successes[i]++;
                dist += im->distortion[rec];
                if (im->ratio[rec] > out->max_ratio[i])
                    out->max_ratio[i] = im->ratio[rec];
            }
        }
        out->test_error[i] = (double)wrong / n;
        out->mean_distortion[i] = out->successes[i] ? dist / out->successes[i] : 0.0;
        for (int j = 0; j < M; j++) {
            int adv = 0, magnified = 0;
            for (int k = 0; k < im->n; k++)
                if ((!measured || measured[k]) && im->ok[(size_t)k * M + i]) {
                    adv += im->adv_wrong[((size_t)k * M + i) * M + j];
                    magnified += im->magnified_wrong[((size_t)k * M + i) * M + j];
                }
            out->error[i][j] = out->successes[i] ? (double)adv / out->successes[i] : 0.0;
            if (cfg->magnify > 0.0)
                out->magnified[i][j] =
                    out->successes[i] ? (double)magnified / out->successes[i] : 0.0;
        }
    }
    for (int s = 0; s < S; s++) {
        double dist = 0.0;
        for (int k = 0; k < im->n; k++)
            if (!measured || measured[k])
                dist += im->noise_distortion[(size_t)k * S + s];
        out->noise_distortion[s] = dist / n;
        for (int j = 0; j < M; j++) {
            int wrong = 0;
            for (int k = 0; k < im->n; k++)
                if (!measured || measured[k])
                    wrong += im->noise_wrong[((size_t)k * S + s) * M + j];
            out->noise_error[s][j] = (double)wrong / n;
        }
    }
}

int bs_evaluate_transfer(const bs_model *const *models, int n_models,
                         const bs_dataset *d, const bs_eval_config *cfg,
                         const bs_control *ctl, bs_eval_result *out, float *adv_out,
                         int *ok_out, char *err)
{
    if (bs_evaluate_check(models, n_models, d, cfg, err))
        return -1;
    bs_eval_images *im = bs_eval_images_new(n_models, cfg->n_noise, cfg->n);
    if (!im)
        return bs_fail(err, "out of memory for the evaluation");
    bs_attack_status status;
    int rc = bs_evaluate_images(models, n_models, d, cfg, 0, cfg->n, ctl, NULL, im,
                                adv_out, ok_out, &status, err);
    if (!rc)
        bs_eval_reduce(im, cfg, status, out);
    bs_eval_images_free(im);
    return rc;
}
