/* metrics — counters and histograms for GET /metrics, in the Prometheus
 * text format (version 0.0.4).
 *
 * Series are keyed by the route pattern ("/v2/models/{name}/infer"), never
 * the raw path, so their number stays bounded. Recording takes one mutex;
 * it happens once per request and once per attack, off the hot path. */
#ifndef BS_SERVER_METRICS_H
#define BS_SERVER_METRICS_H

#include <stddef.h>

typedef struct metrics metrics;

metrics *metrics_new(void);
void metrics_free(metrics *m);

/* One answered request: route pattern (a string that outlives m, or
 * "other" for unmatched paths), method, status, seconds from arrival. */
void metrics_request(metrics *m, const char *route, const char *method, int status,
                     double seconds);

/* One attack request: per-target outcomes and the wall time. */
void metrics_attack(metrics *m, const char *method, const char *model, int succeeded,
                    int failed, int timed_out, int cancelled, double seconds);

/* The gauges that are read, not counted, at scrape time. */
typedef struct metrics_gauges {
    int ready;          /* 1 when every model and dataset is loaded */
    int models;         /* resident models */
    int queued;         /* jobs waiting for a worker */
    int queue_capacity; /* --queue-size */
    int busy;           /* jobs running: on workers, or inline (pool_run_inline) */
    int workers;        /* --workers */
    int jobs[5];        /* asynchronous jobs by state, in the order of jobs_state_names */
    int max_jobs;       /* --max-jobs */
} metrics_gauges;

/* The whole exposition as a malloc'd string (*len bytes); NULL when out of
 * memory. */
char *metrics_render(metrics *m, const metrics_gauges *g, size_t *len);

#endif
