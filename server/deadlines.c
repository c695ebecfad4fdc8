/* deadlines — head and body deadlines of connections; see deadlines.h. */
#include "server/deadlines.h"

#include "api/errors.h"
#include "core/control.h" /* bs_now */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef enum conn_phase {
    CONN_HEAD,      /* waiting for a request's head; no request line yet */
    CONN_LINE,      /* the request line is in, the headers are arriving */
    CONN_BODY,      /* the head is in, the body is arriving */
    CONN_BUSY,      /* the daemon has the request: no deadline */
    CONN_TIMED_OUT, /* ended here: the socket is shut down */
} conn_phase;

struct deadline_conn {
    int fd;
    conn_phase phase;
    double deadline;           /* bs_now() seconds, in HEAD, LINE and BODY */
    char addr[64];             /* the client's address, for the log */
    deadline_conn *prev, *next;
};

struct deadlines {
    double header_timeout, body_timeout;
    int tls;
    deadlines_log_fn on_timeout;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    deadline_conn *conns;
    pthread_t thread;
};

#define SWEEP_SECONDS 0.25

/* Writes a 408 request_timeout answer with Connection: close, as far as
 * the socket takes it at once (it is being closed anyway). */
static void write_408(int fd, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "The request's %s did not arrive in time (--%s-timeout).", what,
             what[0] == 'h' ? "header" : "body");
    json_t *err = bs_error_json(BS_E_REQUEST_TIMEOUT, msg);
    json_t *doc = err ? json_pack("{s:o}", "error", err) : NULL;
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return;
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n", strlen(body));
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
        (void)send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    free(body);
}

/* Ends every connection whose deadline passed; under d->lock. */
static void sweep(deadlines *d)
{
    double now = bs_now();
    for (deadline_conn *c = d->conns; c; c = c->next) {
        if (c->phase == CONN_BUSY || c->phase == CONN_TIMED_OUT || now < c->deadline)
            continue;
        const char *what = c->phase == CONN_BODY ? "body" : "head";
        if (!d->tls && c->phase != CONN_HEAD)
            write_408(c->fd, what);
        shutdown(c->fd, SHUT_RDWR);
        c->phase = CONN_TIMED_OUT;
        d->on_timeout(c->addr, what);
    }
}

static void *watch(void *arg)
{
    deadlines *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(SWEEP_SECONDS * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->wake, &d->lock, &ts);
        sweep(d);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

deadlines *deadlines_start(double header_timeout, double body_timeout, int tls,
                           deadlines_log_fn on_timeout)
{
    deadlines *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->header_timeout = header_timeout;
    d->body_timeout = body_timeout;
    d->tls = tls;
    d->on_timeout = on_timeout;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    if (pthread_create(&d->thread, NULL, watch, d) != 0) {
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return NULL;
    }
    return d;
}

void deadlines_stop(deadlines *d)
{
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    while (d->conns) {
        deadline_conn *c = d->conns;
        d->conns = c->next;
        free(c);
    }
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

deadline_conn *deadlines_add(deadlines *d, int fd, const char *addr)
{
    deadline_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    pthread_mutex_lock(&d->lock);
    c->phase = CONN_HEAD;
    c->deadline = bs_now() + d->header_timeout;
    c->next = d->conns;
    if (d->conns)
        d->conns->prev = c;
    d->conns = c;
    pthread_mutex_unlock(&d->lock);
    return c;
}

void deadlines_remove(deadlines *d, deadline_conn *c)
{
    pthread_mutex_lock(&d->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        d->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&d->lock);
    free(c);
}

/* Moves c to phase (its deadline timeout seconds from now; 0: keep it)
 * unless it timed out. */
static int enter(deadlines *d, deadline_conn *c, conn_phase phase, double timeout)
{
    pthread_mutex_lock(&d->lock);
    int timed_out = c->phase == CONN_TIMED_OUT;
    if (!timed_out) {
        c->phase = phase;
        if (timeout > 0)
            c->deadline = bs_now() + timeout;
    }
    pthread_mutex_unlock(&d->lock);
    return timed_out ? -1 : 0;
}

int deadlines_request_line(deadlines *d, deadline_conn *c)
{
    return enter(d, c, CONN_LINE, 0);
}

int deadlines_body(deadlines *d, deadline_conn *c)
{
    return enter(d, c, CONN_BODY, d->body_timeout);
}

int deadlines_busy(deadlines *d, deadline_conn *c)
{
    return enter(d, c, CONN_BUSY, 0);
}

void deadlines_idle(deadlines *d, deadline_conn *c)
{
    (void)enter(d, c, CONN_HEAD, d->header_timeout);
}

int deadlines_alive(deadlines *d, deadline_conn *c)
{
    pthread_mutex_lock(&d->lock);
    int timed_out = c->phase == CONN_TIMED_OUT;
    pthread_mutex_unlock(&d->lock);
    return timed_out ? -1 : 0;
}
