/* quota — per-client limits on compute requests: a rate (a token bucket of
 * --rate-limit tokens a second, holding at most --rate-burst) and a cap on
 * the requests of one client in flight (--max-client-work), so that one
 * client can neither flood the daemon nor fill the worker queue for
 * everybody. Clients are keyed by http_request.client.
 *
 * The table of clients is bounded: it holds at most --max-clients idle
 * clients plus the busy ones (a busy client has a request in flight, so
 * there are at most --max-connections of them); when it is full, the
 * least recently seen idle client is forgotten. Forgetting one loses only
 * its bucket, which refills while it is idle anyway. One mutex guards the
 * table; every call is safe from any thread. (The cap on a client's
 * asynchronous jobs is kept by the job table, jobs.h.) */
#ifndef BS_SERVER_QUOTA_H
#define BS_SERVER_QUOTA_H

typedef struct quota quota;

/* Why a request was refused: the label of blindspot_rate_limited_total. */
typedef enum quota_verdict {
    QUOTA_ADMITTED = -1,
    QUOTA_RATE = 0,    /* the client's bucket is empty (--rate-limit) */
    QUOTA_WORK,        /* the client has --max-client-work requests in flight */
    QUOTA_JOBS,        /* the client has --max-client-jobs jobs queued or running */
    QUOTA_REASONS
} quota_verdict;

/* The reasons' names, in that order. */
extern const char *const quota_reason_names[QUOTA_REASONS];

/* A table for max_clients idle clients plus max_busy busy ones; rate
 * tokens a second (0: no rate limit) up to burst; at most max_work
 * requests in flight per client. NULL when out of memory. */
quota *quota_new(double rate, int burst, int max_work, int max_clients, int max_busy);
void quota_free(quota *q);

/* A compute request of client arrives at now (bs_now() seconds): takes a
 * token from its bucket and counts it in flight (QUOTA_ADMITTED; call
 * quota_release when it is answered), or refuses it, taking nothing, with
 * the seconds until it would be admitted in *retry_after. */
quota_verdict quota_admit(quota *q, const char *client, double now, double *retry_after);
/* The admitted request of client is answered. */
void quota_release(quota *q, const char *client);

/* The clients in the table now (the gauge of /metrics). */
int quota_clients(quota *q);

#endif
