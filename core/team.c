/* team — the fork-join team of core/team.h.
 *
 * A run is published under the lock (its function, context, task count and
 * a new run number) and is open until the caller closes it. A worker joins
 * an open run under the lock, counting itself in `busy`, then takes tasks
 * (its own first, see take_tasks) until none are left. The caller takes
 * tasks the same way; when they run out it closes the run and waits for
 * `busy` to reach zero. Since joining and closing both hold the lock, no
 * worker can still be taking tasks of one run when the next one resets
 * `next` and `taken`. A worker leaves by decrementing `busy` (release), which the
 * caller reads (acquire), so every write a task made happens before the
 * run returns. */
#include "core/team.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Polls of the run number before a worker sleeps, and of busy before the
 * caller does: tens of microseconds, the gap between two ops of a forward
 * pass, short enough not to steal a core from other work for long. */
#define SPINS 20000

typedef struct member {
    struct bs_team *t;
    int index;                /* 1..threads-1 (the caller is 0) */
} member;

struct bs_team {
    int threads;              /* the caller counted */
    int made;                 /* workers started */
    pthread_t workers[BS_TEAM_MAX];
    member members[BS_TEAM_MAX];
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* a run was published, or stop */
    pthread_cond_t idle;      /* busy reached zero */
    /* the run, written under lock */
    void (*fn)(void *ctx, int task);
    void *ctx;
    int tasks;
    int open;                 /* workers may join */
    int stop;
    int sleepers;             /* workers waiting on wake */
    int caller_waits;         /* the caller waits on idle */
    atomic_int busy;          /* workers in the run: joins under lock */
    atomic_uint run;          /* the run's number: read unlocked to spin */
    atomic_int next;          /* the next task past the first `threads` */
    atomic_bool taken[BS_TEAM_MAX]; /* of the first `threads` tasks */
};

/* Thread `index` runs task `index` first, if no other thread took it: a
 * caller that splits the same work the same way run after run then finds
 * each part's data in the cache of the core that wrote it last time. Then
 * the tasks past the first `threads`, then any of the first left over. */
static void take_tasks(bs_team *t, int index, void (*fn)(void *, int), void *ctx, int tasks)
{
    int first = tasks < t->threads ? tasks : t->threads;
    if (index < first && !atomic_exchange_explicit(&t->taken[index], 1, memory_order_relaxed))
        fn(ctx, index);
    for (;;) {
        int k = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (k >= tasks)
            break;
        fn(ctx, k);
    }
    for (int k = 0; k < first; k++)
        if (!atomic_exchange_explicit(&t->taken[k], 1, memory_order_relaxed))
            fn(ctx, k);
}

static void *worker(void *arg)
{
    const member *me = arg;
    bs_team *t = me->t;
    unsigned seen = 0;
    for (;;) {
        for (int i = 0; i < SPINS && atomic_load_explicit(&t->run, memory_order_relaxed) == seen;
             i++)
            ;
        pthread_mutex_lock(&t->lock);
        while (!t->stop && (atomic_load_explicit(&t->run, memory_order_relaxed) == seen ||
                            !t->open)) {
            /* a run already closed is past: wait for the one after it */
            seen = atomic_load_explicit(&t->run, memory_order_relaxed);
            t->sleepers++;
            pthread_cond_wait(&t->wake, &t->lock);
            t->sleepers--;
        }
        if (t->stop) {
            pthread_mutex_unlock(&t->lock);
            return NULL;
        }
        seen = atomic_load_explicit(&t->run, memory_order_relaxed);
        void (*fn)(void *, int) = t->fn;
        void *ctx = t->ctx;
        int tasks = t->tasks;
        atomic_fetch_add_explicit(&t->busy, 1, memory_order_relaxed);
        pthread_mutex_unlock(&t->lock);
        take_tasks(t, me->index, fn, ctx, tasks);
        if (atomic_fetch_sub_explicit(&t->busy, 1, memory_order_release) == 1) {
            pthread_mutex_lock(&t->lock);
            if (t->caller_waits)
                pthread_cond_signal(&t->idle);
            pthread_mutex_unlock(&t->lock);
        }
    }
}

bs_team *bs_team_new(int threads)
{
    if (threads < 1 || threads > BS_TEAM_MAX)
        return NULL;
    bs_team *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->threads = threads;
    atomic_init(&t->run, 0);
    atomic_init(&t->next, 0);
    atomic_init(&t->busy, 0);
    if (pthread_mutex_init(&t->lock, NULL)) {
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->wake, NULL)) {
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->idle, NULL)) {
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    for (int k = 0; k < BS_TEAM_MAX; k++)
        atomic_init(&t->taken[k], 0);
    for (; t->made < threads - 1; t->made++) {
        t->members[t->made] = (member){t, t->made + 1};
        if (pthread_create(&t->workers[t->made], NULL, worker, &t->members[t->made])) {
            bs_team_free(t);
            return NULL;
        }
    }
    return t;
}

void bs_team_free(bs_team *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->made; i++)
        pthread_join(t->workers[i], NULL);
    pthread_cond_destroy(&t->idle);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int bs_team_threads(const bs_team *t)
{
    return t->threads;
}

void bs_team_run(bs_team *t, int tasks, void (*fn)(void *ctx, int task), void *ctx)
{
    if (t->made == 0 || tasks <= 1) {
        for (int k = 0; k < tasks; k++)
            fn(ctx, k);
        return;
    }
    pthread_mutex_lock(&t->lock);
    t->fn = fn;
    t->ctx = ctx;
    t->tasks = tasks;
    t->open = 1;
    atomic_store_explicit(&t->next, t->threads, memory_order_relaxed);
    for (int k = 0; k < t->threads; k++)
        atomic_store_explicit(&t->taken[k], 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->run, 1, memory_order_relaxed);
    if (t->sleepers)
        pthread_cond_broadcast(&t->wake);
    pthread_mutex_unlock(&t->lock);
    take_tasks(t, 0, fn, ctx, tasks);
    pthread_mutex_lock(&t->lock);
    t->open = 0;
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < SPINS; i++)
        if (!atomic_load_explicit(&t->busy, memory_order_acquire))
            return;
    pthread_mutex_lock(&t->lock);
    t->caller_waits = 1;
    while (atomic_load_explicit(&t->busy, memory_order_acquire))
        pthread_cond_wait(&t->idle, &t->lock);
    t->caller_waits = 0;
    pthread_mutex_unlock(&t->lock);
}
