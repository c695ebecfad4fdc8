/* train — SGD with momentum, L2 weight decay, cosine learning-rate decay,
 * per-epoch shuffling, and the sigmoid autoencoder pre-training of AE400-10. */
#include "core/train.h"
#include "core/error.h"

#include "core/layers.h"
#include "core/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_BATCH 256
#define PROGRESS_EVERY 16 /* minibatches between progress callbacks */

bs_train_config bs_train_defaults(void)
{
    return (bs_train_config){
        .epochs = 20, .batch = 64, .lr = 0.1f, .momentum = 0.9f,
        .lambda = 0.0f, .seed = 1, .pretrain_epochs = 0,
    };
}

static int fits(const bs_model *m, const bs_dataset *d, char *err)
{
    if ((size_t)d->input_size != m->input_size ||
        d->shape[0] != m->input_shape[0] || d->shape[1] != m->input_shape[1] ||
        d->shape[2] != m->input_shape[2])
        return bs_fail(err, "dataset %s has inputs (%d,%d,%d) but the model takes (%d,%d,%d)",
                    d->name, d->shape[0], d->shape[1], d->shape[2],
                    m->input_shape[0], m->input_shape[1], m->input_shape[2]);
    if (d->classes > m->classes)
        return bs_fail(err, "dataset %s has %d classes but the model only %d",
                    d->name, d->classes, m->classes);
    return 0;
}

/* One SGD-with-momentum step over all parameters:
 * g = grad + lambda*w (weights only), v = mu*v + g, w -= lr*v. */
static void sgd_step(bs_model *m, const float *grad, float *velocity,
                     float lr, float mu, float lambda)
{
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        size_t offs[2] = {l->weight_off, l->bias_off};
        size_t sizes[2] = {l->weight_size, l->bias_size};
        for (int t = 0; t < 2; t++) {
            float *w = m->params + offs[t], *v = velocity + offs[t];
            const float *g = grad + offs[t];
            float decay = t == 0 ? lambda : 0.0f;
            for (size_t j = 0; j < sizes[t]; j++) {
                v[j] = mu * v[j] + g[j] + decay * w[j];
                w[j] -= lr * v[j];
            }
        }
    }
}

static float l2_penalty(const bs_model *m, float lambda)
{
    if (lambda == 0.0f)
        return 0.0f;
    double s = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        const float *w = m->params + m->layers[i].weight_off;
        for (size_t j = 0; j < m->layers[i].weight_size; j++)
            s += (double)w[j] * w[j];
    }
    return (float)(0.5 * lambda * s);
}

/* The loop shared by both phases. In the "pretrain" phase the model's
 * outputs are logits of a reconstruction of the input, scored by binary
 * cross-entropy against the input pixels; in "train" they are class logits
 * scored by softmax cross-entropy against the labels. */
typedef struct phase {
    const char *name;
    int epochs;
    double done_before, total; /* units of work for the progress fraction */
} phase;

static int run_phase(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
                     const phase *ph, bs_rng *rng, bs_train_progress_fn progress,
                     void *ctx, char *err)
{
    int pretrain = !strcmp(ph->name, "pretrain");
    int B = cfg->batch, n = d->n, steps = (n + B - 1) / B;
    size_t in = m->input_size, V = (size_t)m->classes;
    bs_workspace *ws = bs_workspace_new(m, B);
    float *grad = calloc(m->n_params, sizeof(float));
    float *velocity = calloc(m->n_params, sizeof(float));
    float *xb = malloc((size_t)B * in * sizeof(float));
    float *dlogits = malloc((size_t)B * V * sizeof(float));
    int *order = malloc((size_t)n * sizeof(int));
    int rc = 0;
    if (!ws || !grad || !velocity || !xb || !dlogits || !order) {
        rc = bs_fail(err, "out of memory for training");
        goto out;
    }
    ws->training = 1;
    ws->rng = bs_rng_next(rng) | 1;
    for (int i = 0; i < n; i++)
        order[i] = i;
    long total_steps = (long)ph->epochs * steps, t = 0;
    for (int epoch = 1; epoch <= ph->epochs; epoch++) {
        bs_rng_shuffle(rng, order, n);
        double loss_sum = 0.0;
        long wrong = 0, seen = 0;
        for (int s = 0; s < steps; s++, t++) {
            int b0 = s * B, nb = n - b0 < B ? n - b0 : B;
            for (int j = 0; j < nb; j++) {
                memcpy(xb + (size_t)j * in, d->images + (size_t)order[b0 + j] * in,
                       in * sizeof(float));
                ws->targets[j] = d->labels[order[b0 + j]];
            }
            if (!pretrain && cfg->batch_fn &&
                cfg->batch_fn(cfg->batch_ctx, m, xb, ws->targets, nb, epoch, s, err)) {
                rc = -1;
                goto out;
            }
            const float *logits = bs_model_forward(m, ws, xb, nb);
            float loss;
            if (pretrain) {
                /* BCE with logits z against pixels x: d loss / dz = sigmoid(z) - x */
                double ls = 0.0;
                for (size_t k = 0; k < (size_t)nb * V; k++) {
                    float z = logits[k], x = xb[k];
                    ls += fmaxf(z, 0.0f) - z * x + log1pf(expf(-fabsf(z)));
                    dlogits[k] = (1.0f / (1.0f + expf(-z)) - x) / (float)nb;
                }
                loss = (float)(ls / nb);
            } else {
                loss = bs_model_loss(m, ws, ws->targets, nb);
                bs_softmax_xent_backward(dlogits, ws->probs, ws->targets, nb,
                                         (int)V, 1.0f / (float)nb);
                for (int j = 0; j < nb; j++)
                    wrong += bs_argmax(logits + (size_t)j * V, (int)V) != ws->targets[j];
            }
            if (!isfinite(loss)) {
                rc = bs_fail(err, "%s diverged at epoch %d (loss is not finite); "
                          "lower the learning rate", ph->name, epoch);
                goto out;
            }
            loss_sum += (double)loss * nb;
            seen += nb;
            memset(grad, 0, m->n_params * sizeof(float));
            bs_model_backward(m, ws, dlogits, grad, NULL, nb);
            /* cosine decay of the learning rate over the phase */
            float lr = cfg->lr * 0.5f * (1.0f + cosf((float)M_PI * (float)t / (float)total_steps));
            sgd_step(m, grad, velocity, lr, cfg->momentum, cfg->lambda);
            int last = s == steps - 1;
            if (progress && (last || s % PROGRESS_EVERY == 0)) {
                bs_train_progress p = {
                    .phase = ph->name, .epoch = epoch, .epochs = ph->epochs,
                    .step = s + 1, .steps = steps,
                    .loss = (float)(loss_sum / seen) + (pretrain ? 0.0f : l2_penalty(m, cfg->lambda)),
                    .error = pretrain ? 0.0f : (float)wrong / (float)seen,
                    .fraction = (ph->done_before + (double)(t + 1) / total_steps * ph->epochs) / ph->total,
                    .end_of_epoch = last,
                };
                progress(ctx, &p);
            }
        }
    }
out:
    bs_workspace_free(ws);
    free(grad);
    free(velocity);
    free(xb);
    free(dlogits);
    free(order);
    return rc;
}

/* Pre-trains the first linear layer of m (and its activation) as the encoder
 * of an autoencoder input -> code -> input, then copies it into m. */
static int pretrain_encoder(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
                            double total, bs_rng *rng, bs_train_progress_fn progress,
                            void *ctx, char *err)
{
    int enc = -1;
    for (int i = 0; i < m->n_layers && enc < 0; i++)
        if (m->layers[i].kind == BS_LINEAR)
            enc = i;
    if (enc < 0 || enc + 2 >= m->n_layers)
        return bs_fail(err, "autoencoder pre-training needs a hidden linear layer");
    /* The autoencoder: the layers up to the encoder's activation, then a
     * linear decoder back to the input size (logits of the pixels). */
    bs_layer layers[BS_MAX_LAYERS];
    int n = enc + 2;
    memcpy(layers, m->layers, (size_t)n * sizeof(bs_layer));
    layers[n++] = (bs_layer){.kind = BS_LINEAR, .out_features = (int)m->input_size};
    bs_model *ae = bs_model_build(layers, n, m->input_shape, err);
    if (!ae)
        return -1;
    bs_model_init(ae, cfg->seed + 1);
    phase ph = {"pretrain", cfg->pretrain_epochs, 0.0, total};
    int rc = run_phase(ae, d, cfg, &ph, rng, progress, ctx, err);
    if (rc == 0) {
        const bs_layer *src = &ae->layers[enc], *dst = &m->layers[enc];
        memcpy(m->params + dst->weight_off, ae->params + src->weight_off,
               dst->weight_size * sizeof(float));
        memcpy(m->params + dst->bias_off, ae->params + src->bias_off,
               dst->bias_size * sizeof(float));
    }
    bs_model_free(ae);
    return rc;
}

int bs_train(bs_model *m, const bs_dataset *d, const bs_train_config *cfg,
             bs_train_progress_fn progress, void *ctx, char *err)
{
    if (fits(m, d, err))
        return -1;
    if (cfg->epochs <= 0 || cfg->batch <= 0 || !(cfg->lr > 0.0f) ||
        !(cfg->momentum >= 0.0f && cfg->momentum < 1.0f) || !(cfg->lambda >= 0.0f) ||
        cfg->pretrain_epochs < 0)
        return bs_fail(err, "invalid training configuration (epochs %d, batch %d, lr %g, "
                    "momentum %g, lambda %g)", cfg->epochs, cfg->batch, (double)cfg->lr,
                    (double)cfg->momentum, (double)cfg->lambda);
    if (d->n <= 0)
        return bs_fail(err, "dataset %s is empty", d->name);
    bs_rng rng;
    bs_rng_seed(&rng, cfg->seed);
    bs_model_init(m, cfg->seed);
    double total = (double)cfg->pretrain_epochs + cfg->epochs;
    if (cfg->pretrain_epochs > 0 &&
        pretrain_encoder(m, d, cfg, total, &rng, progress, ctx, err))
        return -1;
    phase ph = {"train", cfg->epochs, (double)cfg->pretrain_epochs, total};
    return run_phase(m, d, cfg, &ph, &rng, progress, ctx, err);
}

double bs_evaluate(const bs_model *m, const bs_dataset *d, int *confusion, char *err)
{
    if (fits(m, d, err))
        return -1.0;
    bs_workspace *ws = bs_workspace_new(m, EVAL_BATCH);
    if (!ws) {
        bs_fail(err, "out of memory for evaluation");
        return -1.0;
    }
    int V = m->classes;
    if (confusion)
        memset(confusion, 0, (size_t)V * V * sizeof(int));
    long wrong = 0;
    for (int b0 = 0; b0 < d->n; b0 += EVAL_BATCH) {
        int nb = d->n - b0 < EVAL_BATCH ? d->n - b0 : EVAL_BATCH;
        const float *logits = bs_model_forward(m, ws, d->images + (size_t)b0 * m->input_size, nb);
        for (int j = 0; j < nb; j++) {
            int pred = bs_argmax(logits + (size_t)j * V, V), y = d->labels[b0 + j];
            wrong += pred != y;
            if (confusion)
                confusion[y * V + pred]++;
        }
    }
    bs_workspace_free(ws);
    return d->n ? (double)wrong / d->n : 0.0;
}
