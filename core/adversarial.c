/* adversarial — adversarial training: a pool of adversarial examples made
 * against the model being trained, and the minibatch hook of bs_train that
 * mixes them in. */
#include "core/adversarial.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stream that draws pool images and targets, apart from bs_train's own
 * (initialisation, shuffling) so that both stay fixed by the one seed. */
#define POOL_STREAM 0x9e3779b97f4a7c15ULL

bs_advtrain_config bs_advtrain_defaults(bs_attack_method method)
{
    bs_advtrain_config c = {
        .attack = bs_attack_defaults(method),
        .fraction = 0.5, .pool_size = 1000, .refresh = 0, .warmup_epochs = 1,
    };
    if (method == BS_ATTACK_LBFGS) {
        /* a pool of 1000 takes 3 to 6 s on FC100-100-10 at this budget */
        c.attack.search_steps = 3;
        c.attack.max_iterations = 50;
    }
    return c;
}

int bs_advtrain_check(const bs_advtrain_config *c, char *err)
{
    if (!(c->fraction >= 0.0 && c->fraction <= 1.0))
        return bs_fail(err, "the adversarial fraction must be in [0, 1], got %g", c->fraction);
    if (c->pool_size < 1 || c->pool_size > 1000000)
        return bs_fail(err, "the pool size must be in [1, 1000000], got %d", c->pool_size);
    if (c->refresh < 0)
        return bs_fail(err, "the pool refresh must be 0 (every epoch) or a number of "
                    "minibatches, got %d", c->refresh);
    if (c->warmup_epochs < 0)
        return bs_fail(err, "the warm-up epochs must not be negative, got %d", c->warmup_epochs);
    return bs_attack_params_check(&c->attack, err);
}

int bs_advtrain_pool_init(bs_advtrain_pool *p, int capacity, size_t input_size,
                          char *err)
{
    memset(p, 0, sizeof *p);
    if (capacity < 1)
        return bs_fail(err, "a pool needs room for at least one example");
    p->capacity = capacity;
    p->input_size = input_size;
    p->images = malloc((size_t)capacity * input_size * sizeof *p->images);
    p->labels = malloc((size_t)capacity * sizeof *p->labels);
    p->sources = malloc((size_t)capacity * sizeof *p->sources);
    if (!p->images || !p->labels || !p->sources) {
        bs_advtrain_pool_free(p);
        return bs_fail(err, "out of memory for a pool of %d adversarial examples", capacity);
    }
    return 0;
}

void bs_advtrain_pool_free(bs_advtrain_pool *p)
{
    free(p->images);
    free(p->labels);
    free(p->sources);
    memset(p, 0, sizeof *p);
}

int bs_advtrain_pool_refresh(bs_advtrain_pool *p, const bs_model *m,
                             const bs_dataset *d, const bs_attack_params *attack,
                             bs_rng *rng, char *err)
{
    p->n = 0;
    p->attempted = 0;
    p->distortion = 0.0;
    if (d->input_size != p->input_size || d->input_size != m->input_size)
        return bs_fail(err, "the dataset, the model and the pool disagree on the input size");
    int want = d->n < p->capacity ? d->n : p->capacity;
    int *order = malloc((size_t)d->n * sizeof *order);
    if (!order)
        return bs_fail(err, "out of memory for the pool");
    for (int i = 0; i < d->n; i++)
        order[i] = i;
    /* the attacks' buffers and workspace, made once for the refill */
    bs_scratch *scratch = bs_scratch_new();
    if (!scratch) {
        free(order);
        return bs_fail(err, "out of memory for the pool");
    }
    int rc = 0;
    for (int i = 0; i < want; i++) {
        /* a partial Fisher-Yates shuffle: want distinct images */
        int j = i + (int)bs_rng_below(rng, (uint32_t)(d->n - i));
        int idx = order[j];
        order[j] = order[i];
        order[i] = idx;
        int y = d->labels[idx];
        if (y < 0 || y >= m->classes) {
            rc = bs_fail(err, "label %d of training image %d is not one of the model's %d "
                      "classes", y, idx, m->classes);
            break;
        }
        int target = (y + 1 + (int)bs_rng_below(rng, (uint32_t)(m->classes - 1))) % m->classes;
        const float *x = d->images + (size_t)idx * d->input_size;
        bs_attack_result r;
        if (bs_attack_run(m, x, &target, 1, attack, NULL, scratch, &r, err)) {
            rc = -1;
            break;
        }
        p->attempted++;
        if (r.adversarial != y) {
            memcpy(p->images + (size_t)p->n * p->input_size, r.adv,
                   p->input_size * sizeof *p->images);
            p->labels[p->n] = y;
            p->sources[p->n] = idx;
            p->distortion += r.norms.distortion;
            p->n++;
        }
        bs_attack_result_free(&r);
    }
    bs_scratch_free(scratch);
    free(order);
    return rc;
}

/* The state behind the minibatch hook. */
typedef struct advtrain_run {
    const bs_dataset *d;
    const bs_advtrain_config *adv;
    bs_advtrain_pool pool;
    int *reading;   /* (pool.capacity) the pool's reading order */
    int cursor;     /* next position in reading */
    long batches;   /* minibatches seen after the warm-up */
    bs_rng rng;
    double distortion_sum;
    bs_advtrain_stats stats;
} advtrain_run;

/* bs_train_batch_fn: refreshes the pool when due, then overwrites the first
 * fraction of the minibatch (already a random draw) with pool examples. */
static int rewrite_batch(void *vctx, const bs_model *m, float *x, int *labels, int nb,
                         int epoch, int step, char *err)
{
    advtrain_run *r = vctx;
    const bs_advtrain_config *adv = r->adv;
    if (epoch <= adv->warmup_epochs)
        return 0;
    int due = adv->refresh > 0 ? r->batches % adv->refresh == 0 : step == 0;
    r->batches++;
    if (due) {
        double t0 = bs_now();
        if (bs_advtrain_pool_refresh(&r->pool, m, r->d, &adv->attack, &r->rng, err))
            return -1;
        r->stats.attack_seconds += bs_now() - t0;
        r->stats.refreshes++;
        r->stats.attempted += r->pool.attempted;
        r->stats.made += r->pool.n;
        r->distortion_sum += r->pool.distortion;
        for (int i = 0; i < r->pool.n; i++)
            r->reading[i] = i;
        bs_rng_shuffle(&r->rng, r->reading, r->pool.n);
        r->cursor = 0;
    }
    if (r->pool.n == 0)
        return 0;
    int q = (int)(adv->fraction * nb + 0.5);
    size_t in = r->pool.input_size;
    for (int j = 0; j < q; j++) {
        int e = r->reading[r->cursor];
        r->cursor = (r->cursor + 1) % r->pool.n;
        memcpy(x + (size_t)j * in, r->pool.images + (size_t)e * in, in * sizeof *x);
        labels[j] = r->pool.labels[e];
    }
    r->stats.used += q;
    return 0;
}

int bs_advtrain(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
                const bs_advtrain_config *adv, bs_train_progress_fn progress,
                void *ctx, bs_advtrain_stats *stats, char *err)
{
    if (cfg->batch_fn)
        return bs_fail(err, "adversarial training rewrites the minibatches itself: "
                    "batch_fn must be NULL");
    if (bs_advtrain_check(adv, err))
        return -1;
    if (d->n <= 0)
        return bs_fail(err, "dataset %s is empty", d->name);
    advtrain_run r = {.d = d, .adv = adv};
    int capacity = adv->pool_size < d->n ? adv->pool_size : d->n;
    if (bs_advtrain_pool_init(&r.pool, capacity, d->input_size, err))
        return -1;
    r.reading = malloc((size_t)capacity * sizeof *r.reading);
    if (!r.reading) {
        bs_advtrain_pool_free(&r.pool);
        return bs_fail(err, "out of memory for the pool");
    }
    bs_rng_seed(&r.rng, cfg->seed ^ POOL_STREAM);
    bs_train_config c = *cfg;
    c.batch_fn = rewrite_batch;
    c.batch_ctx = &r;
    int rc = bs_train(m, d, &c, progress, ctx, err);
    r.stats.mean_distortion = r.stats.made ? r.distortion_sum / r.stats.made : 0.0;
    if (stats)
        *stats = r.stats;
    free(r.reading);
    bs_advtrain_pool_free(&r.pool);
    return rc;
}
