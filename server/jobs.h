/* jobs — asynchronous jobs: work that runs on the worker pool with no
 * connection waiting for it (POST /v1/attacks?async=true, POST
 * /v1/evaluations), kept under an id in a bounded table and read or
 * cancelled with GET and DELETE /v1/jobs/{id} (the handlers are here too).
 *
 * A job belongs to the client that made it when that client is a token's
 * (req->client "token:NAME"): another token's client finds no such job
 * (404, as for an unknown id). Jobs made without a token belong to nobody,
 * and a client without a token sees every job: without --auth-tokens all
 * clients are one.
 *
 * A job is queued, then running, then done, failed or cancelled. Its result
 * is the response its work made, byte for byte the document the
 * synchronous call answers; a failed job has the error of that response
 * (and its document when there is more in it than the error, such as an
 * attack's best results at its deadline). A job's time budget runs from its
 * creation: --job-timeout, lowered by ?timeout= or a body's timeout.
 *
 * Finished jobs are forgotten --job-ttl seconds after they finish (lazily:
 * the table is swept whenever it is used), or at once on a DELETE that
 * finds them finished. The table holds at most --max-jobs jobs: when it is
 * full, a new job makes room by forgetting the finished (done, failed or
 * cancelled) job that ended longest ago, and only a table full of queued
 * and running jobs refuses new ones (503). One client (http_request.client)
 * may have at most --max-client-jobs jobs queued or running; more are
 * refused with 429. GET with ?wait=S parks the request until the job ends or
 * S seconds pass (a thread of the table answers it then; shutdown answers
 * every parked request at once). GET /v1/jobs/{id}/events streams the
 * job's progress and its end as server-sent events; the same thread wakes
 * the streams (shutdown ends them at once). HTTP threads read jobs while workers update them: every
 * field that changes is guarded by the table's mutex and copied out under
 * it.
 *
 * With a store (state.h) every job is written before it is acknowledged,
 * with the request that made it, and every change of state and the result
 * when they happen; a DELETE is written too. After a restart
 * (jobs_restore) finished jobs are served again until their ttl, counted
 * in wall-clock time across the restart; queued and running ones are made
 * again through their route's handler and run under their old ids, with
 * what is left of their time budget; a job that cannot run again (its
 * budget ran out, its model is gone, its request is refused now, the queue
 * is full) ends failed with not_restarted or deadline_exceeded and a
 * message that says the daemon restarted and why. A shutdown leaves the
 * jobs it cuts short queued or running in the store, to run again. */
#ifndef BS_SERVER_JOBS_H
#define BS_SERVER_JOBS_H

#include "server/auth.h"
#include "server/handler.h"
#include "server/state.h"
#include "server/webhooks.h"

typedef struct jobs jobs;

/* A job id's room: 32 lowercase hex digits (128 random bits) and a NUL. */
#define JOB_ID_SIZE 40

/* An empty table for max_jobs jobs, max_client_jobs of them queued or
 * running per client, whose work runs on p, timed into m; finished jobs
 * live ttl seconds. Jobs are written to store, or kept in memory only when
 * it is NULL. NULL when out of memory. */
jobs *jobs_new(pool *p, metrics *m, int max_jobs, int max_client_jobs, double ttl,
               state *store);
/* Webhooks: a job whose work names a callback (work->callback) has its
 * document POSTed there through hooks once it ends, and shows the
 * delivery as "callback": {"url", "state", "attempts", "last_status",
 * "last_error"}; jobs_webhook_report is hooks' report callback, with the
 * table as its ctx. Set before jobs_restore, which hands pending
 * deliveries in again. */
void jobs_set_webhooks(jobs *t, webhooks *hooks);
void jobs_webhook_report(void *table, const char *id, const webhook_status *s);

/* The "callback" field of an asynchronous job's request: removed from
 * root, checked by the outbound guard and kept in work->callback. 0 (also
 * when there is none), or -1 after an answer: 400 when it is not a string,
 * 422 url_refused when the guard refuses it (before any job is made). */
int jobs_take_callback(const server *srv, json_t *root, http_work *work, http_response *resp);

/* Frees every job; call once the pool is drained (no job is in it). */
void jobs_free(jobs *t);

/* The deadline of a job made by req: its arrival plus --job-timeout, or
 * plus ?timeout= when that is smaller. Handlers returning HANDLER_ASYNC
 * start work->deadline from it. */
double jobs_deadline(const server *srv, const http_request *req);

/* Makes a job of work (work->kind names it), made by req, and queues it on
 * the pool. On success resp is 202 with Location: /v1/jobs/{id} and {"id",
 * "state", "location"}, the job is in the store (req with it), and the job
 * owns work->ctx (work->free is cleared). When req's client has
 * max_client_jobs jobs queued or running, resp is 429; when the table is
 * full of queued and running jobs or the queue is full, the server is
 * draining, or the store cannot be written, resp is 503; either way work
 * is left as it was. */
void jobs_submit(jobs *t, const http_request *req, http_work *work, http_response *resp);

/* From a job's work, on its worker: text (compact JSON, owned by the job
 * from now on) becomes the job document's "partial", what the work has
 * made so far (an evaluation's tables of the images measured), shown
 * while it runs and dropped when it ends (its result or error say it all
 * then, and a finished job reads the same before and after a restart).
 * Each call replaces the last. ctl is the control the work's run was
 * given; for work that does not run as a job, text is freed and nothing
 * else done. */
void jobs_partial(const bs_control *ctl, char *text);

/* The kind of the job id that client may see (see above) into kind (len
 * bytes): 0, or -1 when there is no such job. */
int jobs_kind_of(jobs *t, const char *id, const char *client, char *kind, size_t len);

/* At start-up, once the models are loaded and before the server is
 * ready: reads the store back into the table (see above). Restored jobs
 * count against max_jobs. 0, or -1 with a message in err when the store
 * cannot be read. */
int jobs_restore(jobs *t, server *srv, char *err, size_t errlen);

/* GET /v1/jobs/{id}/events: at most one progress event per interval
 * (seconds), a ": keep-alive" comment after a silence of JOBS_HEARTBEAT
 * seconds, and the reconnection delay (ms) sent as retry:. */
#define JOBS_EVENT_INTERVAL 0.25
#define JOBS_HEARTBEAT 15.0
#define JOBS_EVENT_RETRY "3000"

/* The longest a GET /v1/jobs/{id}?wait=S may wait, in seconds. */
#define JOBS_MAX_WAIT 300

/* At shutdown, before the pool drains: cancels every job that has not
 * finished, so that the drain does not wait for them (with a store they
 * stay unfinished there and run again at the next start). */
void jobs_stop(jobs *t);

/* The number of jobs in each state: queued, running, done, failed,
 * cancelled (expired ones are swept first). */
#define JOBS_STATES 5
void jobs_stats(jobs *t, int counts[JOBS_STATES]);
/* The names of the states, in that order. */
extern const char *const jobs_state_names[JOBS_STATES];

#endif
