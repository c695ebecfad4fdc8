/* pool — the fixed set of worker threads that runs all compute, fed by a
 * bounded queue of jobs.
 *
 * A job is reserved (pool_reserve, which refuses at once when the queue is
 * full or the pool is draining), then submitted. Every submitted job ends
 * in exactly one call of its done callback, with a verdict saying whether
 * it ran, and before it its run callback on a worker when it did. A watcher
 * thread keeps the promises the HTTP side cannot keep while a connection
 * is suspended: a queued job whose deadline passes is ended as EXPIRED at
 * that moment, and a job whose client hung up is ended as GONE (queued) or
 * has its cancel flag raised (running). pool_cancel does the same for a
 * job its owner no longer wants (DELETE of an asynchronous job).
 *
 * A small job may also run at once on the thread that has it
 * (pool_run_inline), when nothing waits in the queue: a hand-off to a
 * worker and back costs more than a tiny inference. It keeps the pool's
 * promises: it counts as running, its deadline is checked, the drain waits
 * for it and raises its cancel flag, and no more of them run at once than
 * there are workers.
 *
 * Each worker, and each of the --workers places for inline jobs, is a
 * place with a number; a model keeps one bs_workspace per place (made on
 * first use and reused for every later evaluation), so that no two threads
 * share one and a model's workspaces go when the model goes. Each place also
 * owns a bs_scratch for its life (pool_scratch), the arena of the attacks
 * it runs; before each job the scratch is told the models' generation, so
 * that the workspace it keeps never outlives its model (core/scratch.h).
 *
 * A worker may serve several jobs at once (attacks batched across
 * requests): the run of its job takes further queued jobs it can serve
 * with it (pool_take), each started in the worker's place as if a worker
 * had taken it from the queue, and the jobs it serves end one by one as
 * their work ends (pool_hold, pool_release), not when the run returns. */
#ifndef BS_SERVER_POOL_H
#define BS_SERVER_POOL_H

#include "core/model.h"
#include "core/scratch.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct pool pool;
typedef struct pool_worker pool_worker;

typedef enum pool_verdict {
    POOL_RAN,      /* run was called and returned */
    POOL_EXPIRED,  /* the deadline passed while it waited in the queue */
    POOL_GONE,     /* the client hung up while it waited */
    POOL_SHUTDOWN, /* still queued when the drain time ran out */
    POOL_CANCELLED, /* taken out of the queue by pool_cancel */
} pool_verdict;

typedef struct pool_job pool_job;
struct pool_job {
    /* On a worker thread. May read cancel and deadline; must not block on
     * anything but compute. */
    void (*run)(pool_job *job, pool_worker *w);
    /* Exactly once per submitted job, after run (or instead of it), on a
     * worker or the watcher or the draining thread; the job is out of the
     * pool's hands when it is called and may be freed by it. */
    void (*done)(pool_job *job, pool_verdict verdict);
    double deadline;   /* bs_now() seconds; queued past this: EXPIRED */
    int fd;            /* client socket watched for hang-up; -1: none */
    atomic_int cancel; /* raised when the client hangs up or the drain ends */
    void *tag;         /* the owner's, for a pool_take match to recognise the job by */
    /* Owned by the pool: */
    pool_job *next, *prev;
    pool_verdict verdict; /* how the watcher ended it */
};

/* Starts n_workers threads (and the watcher) for a queue of queue_size
 * jobs; with threads > 1 each worker lends a team of that many threads (its
 * own counted) to its scratch's model evaluations (core/team.h). generation (may be NULL) is the models' generation, which changes
 * before a model that may have been freed could be seen at its address
 * again (the registry's): each job's place reads it before the job runs.
 * NULL when threads or memory cannot be had. */
pool *pool_new(int n_workers, int threads, int queue_size, const _Atomic uint64_t *generation);

/* Claims a place in the queue. 0, or -1 when the queue is full or the pool
 * is draining (answer 503). A claim must be followed by pool_submit. */
int pool_reserve(pool *p);
/* Queues a job on a place claimed by pool_reserve. */
void pool_submit(pool *p, pool_job *job);

/* Runs job on the calling thread now, as a worker would take it from an
 * empty queue, for work short enough not to hold up the caller (an HTTP
 * thread's other connections). It counts as running while it runs
 * (pool_stats, pool_drain), and its run sees the cancel flag the drain
 * raises. Returns POOL_RAN after run returned, or POOL_EXPIRED when the
 * deadline had already passed (run is not called); done is never called.
 * Declines, returning -1 with nothing called, while the pool is draining,
 * while jobs wait in the queue (they go first), and while as many inline
 * jobs run as the pool has workers: then reserve and submit as usual. */
int pool_run_inline(pool *p, pool_job *job);

/* Cancels a submitted job: a queued one is taken out of the queue and
 * ended as CANCELLED before this returns (its done callback runs on the
 * calling thread, so the caller must not hold a lock done takes); a running
 * one has its cancel flag raised and ends when its run notices. Returns 1
 * when it was queued, 0 when running, -1 when it is no longer in the pool
 * (its done callback has run or is running). The job's memory must stay
 * valid for the call, whatever its state. */
int pool_cancel(pool *p, pool_job *job);

/* Stops taking jobs (pool_reserve fails), lets queued and running jobs
 * finish until the bs_now() time `until`, then ends what is still queued as
 * SHUTDOWN, raises cancel on running jobs and waits for them and for every
 * done callback to return. Returns the number of jobs that did not finish
 * in time. */
int pool_drain(pool *p, double until);
/* Joins the threads and frees the pool; drain first. */
void pool_free(pool *p);

/* Takes the next queued job, when match accepts it, and starts it in w's
 * place as a worker would: it joins the running set (the watcher watches
 * its client, the drain waits for it) and its run is called on the calling
 * thread, which must be the one running a job of w's (whose run calls
 * this). The next job is the first within its deadline after those the
 * idle workers will take: serving several jobs at once takes no job from
 * a free core and makes none wait longer than for a free worker. match is
 * called with the pool's lock held: it must be quick and must not call the
 * pool. The job's place is not told the
 * models' generation again: the job shares the running job's models. A run
 * that does not hold its job (pool_hold) ends it before this returns, as a
 * worker would. Returns 1 when a job was taken, 0 when none matched. */
int pool_take(pool_worker *w, int (*match)(pool_job *job, void *arg), void *arg);
/* Called by the run of the job w runs now (on a worker, or taken by
 * pool_take; not an inline one): the job does not end when its run returns
 * but when pool_release ends it, with the verdict POOL_RAN, which may be
 * before its run returns; its run must not touch the job after handing it
 * to pool_release. Returns the job. */
pool_job *pool_hold(pool_worker *w);
/* Ends a held job: out of the running set, then its done callback. */
void pool_release(pool_worker *w, pool_job *job);

/* Jobs waiting, jobs running, and the worker count (for /metrics). */
void pool_stats(pool *p, int *queued, int *running, int *workers);

/* How many places a pool of n_workers has: the length of the per_place
 * arrays below. */
int pool_places(int n_workers);
/* The place's scratch, the arena of the attacks its jobs run; it keeps a
 * workspace for the last model it served, valid in the generation read
 * before the job. */
bs_scratch *pool_scratch(pool_worker *w);
/* The worker's workspace for model m in per_place (one slot per place,
 * NULL until made), with room for batch samples; made on first use (or
 * when a larger batch is asked for) and kept. NULL when out of memory. */
bs_workspace *pool_workspace(pool_worker *w, bs_workspace **per_place, const bs_model *m,
                             int batch);

#endif
