/* evaluate — Tables 1-3 of the paper over a dataset slice: attacks on a
 * pool of threads (each attack independent and deterministic, so the
 * numbers do not depend on the thread count), then the transfer, noise and
 * magnified error rates by batched prediction. */
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

/* What the attack threads share. */
typedef struct attack_pool {
    const bs_model *const *models;
    int n_models, n;
    const bs_dataset *d;
    const bs_eval_config *cfg;
    const bs_attack_control *ctl;
    const int *targets;      /* n */
    float *adv;              /* n_models*n*input_size */
    int *ok;                 /* n_models*n */
    double *distortion;      /* n_models*n */
    atomic_int next, done, failed;
    pthread_mutex_t lock;    /* progress callback and error message */
    bs_eval_progress_fn progress;
    void *ctx;
    char err[BS_ERR_LEN];
    bs_attack_status status;
} attack_pool;

static int stop_asked(const bs_attack_control *ctl)
{
    return ctl && ((ctl->cancel && atomic_load(ctl->cancel)) ||
                   (ctl->deadline > 0.0 && bs_now() > ctl->deadline));
}

static void *attack_worker(void *arg)
{
    attack_pool *p = arg;
    size_t in = p->d->input_size;
    int total = p->n_models * p->n;
    for (;;) {
        int job = atomic_fetch_add(&p->next, 1);
        if (job >= total || atomic_load(&p->failed))
            break;
        int i = job / p->n, k = job % p->n;
        const float *x = p->d->images + (size_t)(p->cfg->first + k) * in;
        float *adv = p->adv + (size_t)job * in;
        bs_attack_result r;
        char err[BS_ERR_LEN];
        if (stop_asked(p->ctl)) {
            memcpy(adv, x, in * sizeof(float));
            pthread_mutex_lock(&p->lock);
            p->status = p->ctl->cancel && atomic_load(p->ctl->cancel) ? BS_ATTACK_CANCELLED
                                                                        : BS_ATTACK_TIMEOUT;
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        if (bs_attack_run(p->models[i], x, &p->targets[k], 1, &p->cfg->params, p->ctl, &r,
                          err)) {
            pthread_mutex_lock(&p->lock);
            snprintf(p->err, sizeof p->err, "model %d, image %d: %s", i,
                     p->cfg->first + k, err);
            pthread_mutex_unlock(&p->lock);
            atomic_store(&p->failed, 1);
            break;
        }
        memcpy(adv, r.adv, in * sizeof(float));
        p->ok[job] = r.success;
        p->distortion[job] = r.norms.distortion;
        if (r.status == BS_ATTACK_TIMEOUT || r.status == BS_ATTACK_CANCELLED) {
            pthread_mutex_lock(&p->lock);
            p->status = r.status;
            pthread_mutex_unlock(&p->lock);
        }
        bs_attack_result_free(&r);
        int done = atomic_fetch_add(&p->done, 1) + 1;
        if (p->progress) {
            pthread_mutex_lock(&p->lock);
            p->progress(p->ctx, done, total);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

/* Labels of model m for n images (n*input floats) into pred. */
static int predict(const bs_model *m, const float *images, int n, int *pred)
{
    bs_workspace *ws = bs_workspace_new(m, PREDICT_BATCH);
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

int bs_evaluate_transfer(const bs_model *const *models, int n_models,
                         const bs_dataset *d, const bs_eval_config *cfg,
                         const bs_attack_control *ctl, bs_eval_progress_fn progress,
                         void *ctx, bs_eval_result *out, float *adv_out, int *ok_out,
                         char *err)
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
    if (bs_attack_params_check(&cfg->params, err))
        return -1;

    int n = cfg->n, total = n_models * n, rc = 0;
    size_t in = d->input_size;
    const float *clean = d->images + (size_t)cfg->first * in;
    const int *labels = d->labels + cfg->first;
    memset(out, 0, sizeof *out);
    out->n_models = n_models;
    out->n = n;

    attack_pool p = {.models = models, .n_models = n_models, .n = n, .d = d, .cfg = cfg,
                     .ctl = ctl, .progress = progress, .ctx = ctx, .status = BS_ATTACK_DONE};
    int *targets = malloc((size_t)n * sizeof(int));
    p.adv = adv_out ? adv_out : malloc((size_t)total * in * sizeof(float));
    p.ok = ok_out ? ok_out : malloc((size_t)total * sizeof(int));
    p.distortion = malloc((size_t)total * sizeof(double));
    float *scratch = malloc((size_t)n * in * sizeof(float));
    int *pred = malloc((size_t)n * sizeof(int));
    pthread_t *th = malloc((size_t)cfg->threads * sizeof(pthread_t));
    bs_workspace *ws = NULL;
    if (!targets || !p.adv || !p.ok || !p.distortion || !scratch || !pred || !th) {
        rc = bs_fail(err, "out of memory for the evaluation");
        goto out;
    }
    memset(p.ok, 0, (size_t)total * sizeof(int));
    pthread_mutex_init(&p.lock, NULL);

    /* the targets: one per image, the same for every model */
    bs_rng rng;
    bs_rng_seed(&rng, cfg->seed);
    int classes = models[0]->classes;
    for (int k = 0; k < n; k++) {
        int t = (int)bs_rng_below(&rng, (uint32_t)classes - 1);
        targets[k] = t >= labels[k] ? t + 1 : t;
    }
    p.targets = targets;

    int started = 0;
    for (; started < cfg->threads; started++)
        if (pthread_create(&th[started], NULL, attack_worker, &p))
            break;
    if (started == 0)
        attack_worker(&p);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&p.lock);
    if (atomic_load(&p.failed)) {
        rc = bs_fail(err, "%s", p.err);
        goto out;
    }
    out->status = p.status;

    for (int i = 0; i < n_models; i++) {
        const bs_model *m = models[i];
        if (predict(m, clean, n, pred)) {
            rc = bs_fail(err, "out of memory for the evaluation");
            goto out;
        }
        int wrong = 0;
        for (int k = 0; k < n; k++)
            wrong += pred[k] != labels[k];
        out->test_error[i] = (double)wrong / n;
        double dist = 0.0;
        for (int k = 0; k < n; k++)
            if (p.ok[i * n + k]) {
                out->successes[i]++;
                dist += p.distortion[i * n + k];
            }
        out->mean_distortion[i] = out->successes[i] ? dist / out->successes[i] : 0.0;
    }

    /* transfer: every model on every model's successful examples, as they
     * are and magnified */
    for (int i = 0; i < n_models; i++) {
        const float *adv = p.adv + (size_t)i * n * in;
        for (int pass = 0; pass < (cfg->magnify > 0.0 ? 2 : 1); pass++) {
            const float *imgs = adv;
            if (pass == 1) {
                for (int k = 0; k < n; k++) {
                    const float *x = clean + (size_t)k * in, *a = adv + (size_t)k * in;
                    float *dst = scratch + (size_t)k * in;
                    double dd = p.distortion[i * n + k];
                    double scale = dd > 0.0 ? cfg->magnify / dd : 0.0;
                    for (size_t q = 0; q < in; q++)
                        dst[q] = fminf(fmaxf(x[q] + (float)(scale * (a[q] - x[q])), 0.0f), 1.0f);
                }
                imgs = scratch;
            }
            for (int j = 0; j < n_models; j++) {
                if (predict(models[j], imgs, n, pred)) {
                    rc = bs_fail(err, "out of memory for the evaluation");
                    goto out;
                }
                int wrong = 0;
                for (int k = 0; k < n; k++)
                    if (p.ok[i * n + k])
                        wrong += pred[k] != labels[k];
                double rate = out->successes[i] ? (double)wrong / out->successes[i] : 0.0;
                if (pass == 0)
                    out->error[i][j] = rate;
                else
                    out->magnified[i][j] = rate;
            }
        }
        /* the empirical Lipschitz ratio on the logits */
        ws = bs_workspace_new(models[i], 1);
        if (!ws) {
            rc = bs_fail(err, "out of memory for the evaluation");
            goto out;
        }
        for (int k = 0; k < n; k++)
            if (p.ok[i * n + k]) {
                const float *x = clean + (size_t)k * in, *a = adv + (size_t)k * in;
                bs_norms nr = bs_norms_of(x, a, in);
                if (nr.l2 > 0.0) {
                    double ratio = logit_distance(models[i], ws, a, x) / nr.l2;
                    if (ratio > out->max_ratio[i])
                        out->max_ratio[i] = ratio;
                }
            }
        bs_workspace_free(ws);
        ws = NULL;
    }

    /* Gaussian-noise baselines on the clean slice */
    for (int s = 0; s < cfg->n_noise; s++) {
        bs_rng nr;
        bs_rng_seed(&nr, cfg->seed * 1000003ULL + (uint64_t)s + 1);
        double dist = 0.0;
        for (int k = 0; k < n; k++) {
            const float *x = clean + (size_t)k * in;
            float *dst = scratch + (size_t)k * in;
            for (size_t q = 0; q < in; q++)
                dst[q] = fminf(fmaxf(x[q] + (float)cfg->noise[s] * bs_rng_normal(&nr), 0.0f),
                               1.0f);
            dist += bs_norms_of(x, dst, in).distortion;
        }
        out->noise_distortion[s] = dist / n;
        for (int j = 0; j < n_models; j++) {
            if (predict(models[j], scratch, n, pred)) {
                rc = bs_fail(err, "out of memory for the evaluation");
                goto out;
            }
            int wrong = 0;
            for (int k = 0; k < n; k++)
                wrong += pred[k] != labels[k];
            out->noise_error[s][j] = (double)wrong / n;
        }
    }
out:
    bs_workspace_free(ws);
    free(targets);
    if (!adv_out)
        free(p.adv);
    if (!ok_out)
        free(p.ok);
    free(p.distortion);
    free(scratch);
    free(pred);
    free(th);
    return rc;
}
