/* webhooks — the delivery of a job's document to the callback URL its
 * request named, on a thread of its own (never a worker, never an HTTP
 * thread): a POST through the outbound guard (outbound.h), signed with
 * X-Blindspot-Signature: sha256=<hex HMAC-SHA256 of the body> under the
 * webhook secret, named by X-Blindspot-Job, and tried again with a doubling
 * wait (--webhook-backoff, 2x, 4x, ...) after a connection failure or a 5xx
 * answer, --webhook-tries times in all. Any other answer ends the delivery:
 * a 2xx has delivered it, a 3xx or 4xx has failed it (no redirect is
 * followed), as has a destination the guard refuses now.
 *
 * Every attempt is reported through the caller's callback (jobs.c shows it
 * on the job and writes it to the store), so a pending delivery can be
 * handed in again after a restart with the attempts it already made. */
#ifndef BS_SERVER_WEBHOOKS_H
#define BS_SERVER_WEBHOOKS_H

#include "server/config.h"

#include <stddef.h>

typedef struct webhooks webhooks;

/* The states of a delivery, as the job document names them. */
#define WEBHOOK_PENDING "pending"
#define WEBHOOK_DELIVERED "delivered"
#define WEBHOOK_FAILED "failed"

/* Where a delivery stands, after an attempt. */
typedef struct webhook_status {
    const char *state;      /* WEBHOOK_PENDING, _DELIVERED or _FAILED */
    int attempts;           /* made so far */
    int last_status;        /* the HTTP status of the last answer; 0: none */
    const char *last_error; /* why the last attempt did not deliver; "" when it did */
} webhook_status;

/* Called on the delivery thread after each attempt of job id. */
typedef void (*webhook_report)(void *ctx, const char *id, const webhook_status *s);

/* Starts the delivery thread under cfg's guard, secret, tries and backoff.
 * NULL when out of memory or the thread cannot start. */
webhooks *webhooks_new(const config *cfg, webhook_report report, void *ctx);
/* Stops the thread (an attempt in flight finishes first); deliveries not
 * made stay pending for the caller's store. NULL is fine. */
void webhooks_free(webhooks *w);

/* Queues the POST of body (len bytes, copied) to url for job id, attempts
 * made already (0 for a new delivery, more after a restart). 0, or -1 when
 * out of memory. */
int webhooks_post(webhooks *w, const char *id, const char *url, const char *body, size_t len,
                  int attempts);

/* "sha256=" and the hex HMAC-SHA256 of body under secret into out
 * (char[72]). 0, or -1 when GnuTLS fails. */
int webhooks_sign(const char *secret, const char *body, size_t len, char out[72]);

#endif
