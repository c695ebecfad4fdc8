/* webhooks — the delivery thread; see webhooks.h. */
#include "server/webhooks.h"

#include "server/jobs.h" /* JOB_ID_SIZE */

#include "core/control.h" /* bs_now */

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The largest answer read from a receiver: only its status matters. */
#define WEBHOOK_MAX_ANSWER 65536

typedef struct delivery {
    char id[JOB_ID_SIZE];
    char *url, *body;
    size_t len;
    int attempts;
    double next;          /* bs_now() of the next attempt */
    struct delivery *next_in_queue;
} delivery;

struct webhooks {
    const config *cfg;
    webhook_report report;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a delivery came, or quit was raised */
    pthread_t thread;
    delivery *queue;        /* in no particular order */
    int quit;
};

int webhooks_sign(const char *secret, const char *body, size_t len, char out[72])
{
    uint8_t mac[32];
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), body, len, mac))
        return -1;
    memcpy(out, "sha256=", 7);
    for (int i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

static void delivery_free(delivery *d)
{
    free(d->url);
    free(d->body);
    free(d);
}

/* One attempt of d; reports it and returns whether to try again. */
static int attempt(webhooks *w, delivery *d)
{
    const config *cfg = w->cfg;
    char sig[80] = "", sig_header[100], job_header[64], err[512] = "";
    const char *headers[3] = {"Content-Type: application/json", job_header, sig_header};
    int n_headers = 2;
    snprintf(job_header, sizeof job_header, "X-Blindspot-Job: %s", d->id);
    if (cfg->webhook_secret[0]) {
        if (webhooks_sign(cfg->webhook_secret, d->body, d->len, sig) == 0) {
            snprintf(sig_header, sizeof sig_header, "X-Blindspot-Signature: %s", sig);
            n_headers = 3;
        } else {
            snprintf(err, sizeof err, "the body could not be signed");
        }
    }
    outbound_request r = {.url = d->url, .body = d->body, .body_len = d->len,
                          .headers = headers, .n_headers = n_headers,
                          .max_bytes = WEBHOOK_MAX_ANSWER, .timeout = cfg->fetch_timeout};
    outbound_response out;
    outbound_result res = err[0] ? OUTBOUND_REFUSED
                                 : outbound_fetch(&cfg->outbound, &r, &out, err, sizeof err);
    d->attempts++;
    webhook_status s = {.state = WEBHOOK_FAILED, .attempts = d->attempts, .last_error = err};
    int again = 0;
    if (res == OUTBOUND_OK) {
        s.last_status = out.status;
        outbound_response_free(&out);
        if (out.status >= 200 && out.status < 300) {
            s.state = WEBHOOK_DELIVERED;
        } else {
            again = out.status >= 500;
            snprintf(err, sizeof err, "the receiver answered %d%s", out.status,
                     out.status >= 300 && out.status < 400 ? " (redirects are not followed)"
                                                           : "");
        }
    } else {
        again = res == OUTBOUND_FAILED;
    }
    if (again && d->attempts < cfg->webhook_tries)
        s.state = WEBHOOK_PENDING;
    else
        again = 0;
    w->report(w->ctx, d->id, &s);
    return again;
}

static void *run(void *arg)
{
    webhooks *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->quit) {
        delivery **first = NULL;
        for (delivery **p = &w->queue; *p; p = &(*p)->next_in_queue)
            if (!first || (*p)->next < (*first)->next)
                first = p;
        double now = bs_now();
        if (!first || (*first)->next > now) {
            if (!first) {
                pthread_cond_wait(&w->changed, &w->lock);
            } else {
                double wait = (*first)->next - now;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                double end = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + wait;
                ts.tv_sec = (time_t)end;
                ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
                pthread_cond_timedwait(&w->changed, &w->lock, &ts);
            }
            continue;
        }
        delivery *d = *first;
        *first = d->next_in_queue;
        pthread_mutex_unlock(&w->lock);
        int again = attempt(w, d);
        pthread_mutex_lock(&w->lock);
        if (again) {
            d->next = bs_now() + w->cfg->webhook_backoff * ldexp(1.0, d->attempts - 1);
            d->next_in_queue = w->queue;
            w->queue = d;
        } else {
            delivery_free(d);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

webhooks *webhooks_new(const config *cfg, webhook_report report, void *ctx)
{
    webhooks *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cfg = cfg;
    w->report = report;
    w->ctx = ctx;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
    if (pthread_create(&w->thread, NULL, run, w)) {
        pthread_cond_destroy(&w->changed);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

void webhooks_free(webhooks *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    while (w->queue) {
        delivery *d = w->queue;
        w->queue = d->next_in_queue;
        delivery_free(d);
    }
    pthread_cond_destroy(&w->changed);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int webhooks_post(webhooks *w, const char *id, const char *url, const char *body, size_t len,
                  int attempts)
{
    delivery *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    snprintf(d->id, sizeof d->id, "%s", id);
    d->url = strdup(url);
    d->body = malloc(len + 1);
    if (!d->url || !d->body) {
        delivery_free(d);
        return -1;
    }
    memcpy(d->body, body, len);
    d->body[len] = '\0';
    d->len = len;
    d->attempts = attempts;
    d->next = bs_now();
    pthread_mutex_lock(&w->lock);
    d->next_in_queue = w->queue;
    w->queue = d;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    return 0;
}
