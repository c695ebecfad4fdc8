/* pool — workers, the bounded queue and the watcher; see pool.h. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server/pool.h"

#include "core/control.h" /* bs_now */
#include "core/team.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the watcher looks at deadlines and client sockets. */
#define WATCH_INTERVAL_MS 50

struct pool_worker {
    pool *p;
    pthread_t thread;
    int place;         /* workers 0..n-1, inline places n..2n-1 (pool_places) */
    bs_scratch *scratch; /* the place's, for its life (pool_scratch) */
    bs_team *team;       /* lent to its scratch's workspaces (--attack-threads); NULL: none */
    /* Touched only by the place's thread: */
    pool_job *current; /* the job whose run runs now (NULL: none, or inline) */
    int held;          /* its run held it (pool_hold) */
};

/* A doubly linked list of jobs (queue or running set). */
typedef struct job_list {
    pool_job *head, *tail;
    int n;
} job_list;

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work;   /* a job was queued, or stopping */
    pthread_cond_t idle;   /* a job left the pool */
    pthread_cond_t watch;  /* wakes the watcher to stop */
    job_list queue;
    job_list running;
    int reserved;          /* claimed by pool_reserve, not yet submitted */
    int ending;            /* out of the lists, done callback still running */
    int queue_size;
    int draining;          /* pool_reserve refuses */
    int stopping;          /* threads exit */
    int n_idle;            /* workers waiting for a job */
    int n_workers;         /* threads started */
    int n_alloc;           /* workers allocated */
    pool_worker *workers;
    pool_worker *guests;   /* n_alloc places for inline jobs (no thread) */
    int *free_guests;      /* a stack of the indices of the idle places */
    int n_free_guests;
    pthread_t watcher;
    int watcher_started;
    const _Atomic uint64_t *generation; /* of the models (pool_new); NULL: none */
};

static void list_push(job_list *l, pool_job *j)
{
    j->next = NULL;
    j->prev = l->tail;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

static void list_remove(job_list *l, pool_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    j->next = j->prev = NULL;
    l->n--;
}

/* Runs job in place w, whose scratch learns first which models' generation
 * the job may see. */
static void run_in(pool_job *job, pool_worker *w)
{
    if (w->p->generation)
        bs_scratch_generation(w->scratch, atomic_load(w->p->generation));
    job->run(job, w);
}

/* Ends job j, out of the lists, with verdict v: its done callback, which
 * runs without the lock. Called with the lock held. */
static void end_job(pool *p, pool_job *j, pool_verdict v)
{
    /* Out of the lists before done: the watcher no longer looks at the
     * job's socket, which done may hand back to the HTTP side. */
    p->ending++;
    pthread_mutex_unlock(&p->lock);
    j->done(j, v);
    pthread_mutex_lock(&p->lock);
    p->ending--;
    pthread_cond_broadcast(&p->idle);
}

static void *worker_main(void *arg)
{
    pool_worker *w = arg;
    pool *p = w->p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        p->n_idle++;
        while (!p->queue.head && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        p->n_idle--;
        if (!p->queue.head)
            break;
        pool_job *j = p->queue.head;
        list_remove(&p->queue, j);
        pool_verdict v = POOL_RAN;
        if (bs_now() > j->deadline) {
            v = POOL_EXPIRED;
        } else {
            list_push(&p->running, j);
            pthread_mutex_unlock(&p->lock);
            w->current = j;
            w->held = 0;
            run_in(j, w);
            w->current = NULL;
            pthread_mutex_lock(&p->lock);
            if (w->held) /* pool_release ends it; it may be freed already */
                continue;
            list_remove(&p->running, j);
        }
        end_job(p, j, v);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Non-zero when the peer closed its end or the socket failed. Called with
 * the lock held, so the socket cannot be closed under us: its connection
 * stays suspended until the job's done callback resumes it. */
static int hung_up(int fd)
{
    if (fd < 0)
        return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void *watcher_main(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        job_list ended = {0};
        double now = bs_now();
        pool_job *next;
        for (pool_job *j = p->queue.head; j; j = next) {
            next = j->next;
            int gone = hung_up(j->fd);
            if (gone || now > j->deadline) {
                list_remove(&p->queue, j);
                j->verdict = gone ? POOL_GONE : POOL_EXPIRED;
                list_push(&ended, j);
            }
        }
        for (pool_job *j = p->running.head; j; j = j->next)
            if (hung_up(j->fd))
                atomic_store(&j->cancel, 1);
        if (ended.n) {
            p->ending += ended.n;
            pthread_mutex_unlock(&p->lock);
            for (pool_job *j = ended.head; j; j = next) {
                next = j->next;
                j->done(j, j->verdict);
            }
            pthread_mutex_lock(&p->lock);
            p->ending -= ended.n;
            pthread_cond_broadcast(&p->idle);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_INTERVAL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!p->stopping)
            pthread_cond_timedwait(&p->watch, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

pool *pool_new(int n_workers, int threads, int queue_size, const _Atomic uint64_t *generation)
{
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->generation = generation;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->idle, NULL);
    pthread_cond_init(&p->watch, NULL);
    p->queue_size = queue_size;
    p->workers = calloc((size_t)n_workers, sizeof *p->workers);
    if (!p->workers) {
        pool_free(p);
        return NULL;
    }
    p->n_alloc = n_workers;
    p->guests = calloc((size_t)n_workers, sizeof *p->guests);
    p->free_guests = calloc((size_t)n_workers, sizeof *p->free_guests);
    if (!p->guests || !p->free_guests) {
        pool_free(p);
        return NULL;
    }
    for (int i = 0; i < 2 * n_workers; i++) {
        pool_worker *w = i < n_workers ? &p->workers[i] : &p->guests[i - n_workers];
        w->p = p;
        w->place = i;
        if (!(w->scratch = bs_scratch_new())) {
            pool_free(p);
            return NULL;
        }
        /* a worker's team (inline places run small work alone) */
        if (i < n_workers && threads > 1) {
            if (!(w->team = bs_team_new(threads))) {
                pool_free(p);
                return NULL;
            }
            bs_scratch_team(w->scratch, w->team);
        }
    }
    for (int i = 0; i < n_workers; i++)
        p->free_guests[p->n_free_guests++] = i;
    for (int i = 0; i < n_workers; i++) {
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i])) {
            pool_free(p);
            return NULL;
        }
        p->n_workers++;
    }
    if (pthread_create(&p->watcher, NULL, watcher_main, p) != 0) {
        pool_free(p);
        return NULL;
    }
    p->watcher_started = 1;
    return p;
}

int pool_reserve(pool *p)
{
    pthread_mutex_lock(&p->lock);
    int ok = !p->draining && p->queue.n + p->reserved < p->queue_size;
    if (ok)
        p->reserved++;
    pthread_mutex_unlock(&p->lock);
    return ok ? 0 : -1;
}

void pool_submit(pool *p, pool_job *job)
{
    atomic_store(&job->cancel, 0);
    pthread_mutex_lock(&p->lock);
    p->reserved--;
    list_push(&p->queue, job);
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

int pool_run_inline(pool *p, pool_job *job)
{
    pthread_mutex_lock(&p->lock);
    if (p->draining || p->queue.n || !p->n_free_guests) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    if (bs_now() > job->deadline) {
        pthread_mutex_unlock(&p->lock);
        return POOL_EXPIRED;
    }
    pool_worker *w = &p->guests[p->free_guests[--p->n_free_guests]];
    /* Not a suspended connection: the watcher has no socket to look at. */
    job->fd = -1;
    atomic_store(&job->cancel, 0);
    list_push(&p->running, job);
    pthread_mutex_unlock(&p->lock);
    run_in(job, w);
    pthread_mutex_lock(&p->lock);
    list_remove(&p->running, job);
    p->free_guests[p->n_free_guests++] = (int)(w - p->guests);
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return POOL_RAN;
}

int pool_cancel(pool *p, pool_job *job)
{
    pthread_mutex_lock(&p->lock);
    pool_job *j = p->queue.head;
    while (j && j != job)
        j = j->next;
    if (j) {
        list_remove(&p->queue, job);
        p->ending++;
        pthread_mutex_unlock(&p->lock);
        job->done(job, POOL_CANCELLED);
        pthread_mutex_lock(&p->lock);
        p->ending--;
        pthread_cond_broadcast(&p->idle);
        pthread_mutex_unlock(&p->lock);
        return 1;
    }
    for (j = p->running.head; j && j != job; j = j->next)
        ;
    if (j)
        atomic_store(&job->cancel, 1);
    pthread_mutex_unlock(&p->lock);
    return j ? 0 : -1;
}

int pool_take(pool_worker *w, int (*match)(pool_job *job, void *arg), void *arg)
{
    pool *p = w->p;
    pthread_mutex_lock(&p->lock);
    double now = bs_now();
    /* The first jobs are the idle workers' to take, each on a core of its
     * own; the next is this run's if it can serve it. One it cannot serve
     * stops the search: passing it over would make it wait longer than for
     * a free worker. */
    int theirs = p->n_idle;
    pool_job *j = p->queue.head;
    for (; j; j = j->next) {
        if (now > j->deadline)
            continue; /* the watcher ends it EXPIRED */
        if (theirs > 0) {
            theirs--;
            continue;
        }
        if (!match(j, arg))
            j = NULL;
        break;
    }
    if (!j) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    list_remove(&p->queue, j);
    list_push(&p->running, j);
    pthread_mutex_unlock(&p->lock);
    pool_job *outer = w->current;
    int outer_held = w->held;
    w->current = j;
    w->held = 0;
    j->run(j, w);
    int held = w->held;
    w->current = outer;
    w->held = outer_held;
    if (!held) {
        pthread_mutex_lock(&p->lock);
        list_remove(&p->running, j);
        end_job(p, j, POOL_RAN);
        pthread_mutex_unlock(&p->lock);
    }
    return 1;
}

pool_job *pool_hold(pool_worker *w)
{
    w->held = 1;
    return w->current;
}

void pool_release(pool_worker *w, pool_job *job)
{
    pool *p = w->p;
    pthread_mutex_lock(&p->lock);
    list_remove(&p->running, job);
    end_job(p, job, POOL_RAN);
    pthread_mutex_unlock(&p->lock);
}

/* Waits on cond until the bs_now() time `until`; 0 when it passed. */
static int wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, double until)
{
    double left = until - bs_now();
    if (left <= 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + (left < 1 ? left : 1);
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(cond, lock, &ts);
    return 1;
}

int pool_drain(pool *p, double until)
{
    pthread_mutex_lock(&p->lock);
    p->draining = 1;
    while ((p->queue.n || p->running.n || p->reserved || p->ending) &&
           wait_until(&p->idle, &p->lock, until))
        ;
    job_list left = p->queue;
    memset(&p->queue, 0, sizeof p->queue);
    int unfinished = left.n + p->running.n;
    for (pool_job *j = p->running.head; j; j = j->next)
        atomic_store(&j->cancel, 1);
    pthread_mutex_unlock(&p->lock);
    pool_job *next;
    for (pool_job *j = left.head; j; j = next) {
        next = j->next;
        j->done(j, POOL_SHUTDOWN);
    }
    /* Every done callback has returned, so no connection is still to be
     * resumed when the caller stops the HTTP server. */
    pthread_mutex_lock(&p->lock);
    while (p->running.n || p->ending)
        pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return unfinished;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->watch);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i].thread, NULL);
    if (p->watcher_started)
        pthread_join(p->watcher, NULL);
    for (int i = 0; i < p->n_alloc; i++) {
        bs_scratch_free(p->workers[i].scratch);
        bs_team_free(p->workers[i].team);
        if (p->guests)
            bs_scratch_free(p->guests[i].scratch);
    }
    free(p->workers);
    free(p->guests);
    free(p->free_guests);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->watch);
    free(p);
}

void pool_stats(pool *p, int *queued, int *running, int *workers)
{
    pthread_mutex_lock(&p->lock);
    *queued = p->queue.n;
    *running = p->running.n;
    *workers = p->n_workers;
    pthread_mutex_unlock(&p->lock);
}

int pool_places(int n_workers)
{
    return 2 * n_workers;
}

bs_scratch *pool_scratch(pool_worker *w)
{
    return w->scratch;
}

bs_workspace *pool_workspace(pool_worker *w, bs_workspace **per_place, const bs_model *m,
                             int batch)
{
    bs_workspace **ws = &per_place[w->place];
    if (*ws && (*ws)->batch >= batch)
        return *ws;
    bs_workspace_free(*ws);
    *ws = bs_workspace_new(m, batch);
    return *ws;
}
