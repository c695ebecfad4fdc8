/* metrics — counters and histograms for GET /metrics, in the Prometheus
 * text format (version 0.0.4), the standard process_* metrics read from
 * /proc at scrape time, and the per-model inference statistics that
 * /v2's statistics extension reports.
 *
 * Series are keyed by the route pattern ("/v2/models/{name}/infer"), never
 * the raw path, and by resident model names, so their number stays
 * bounded (tables of fixed size; what does not fit is dropped, not grown).
 * Recording takes one mutex; it happens a few times per request, off the
 * hot path. */
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

/* An attack entered a stream of lbfgs attacks batched across requests;
 * first: it started the stream (its worker's own). */
void metrics_attack_stream_job(metrics *m, int first);

/* One piece of work that ran on the pool, or inline on an HTTP thread:
 * kind (a static string: "inference", "attack"), model (its name; "" when
 * it has none), whether it answered below 400, the seconds from the
 * request's arrival until it started (the queue), and the seconds it ran
 * (the compute). */
void metrics_work(metrics *m, const char *kind, const char *model, int ok, double queued,
                  double ran);

/* One reload of the models (SIGHUP, or POST /v2/repository/models/{name}/load):
 * whether it went through without a fault, and how many files failed to
 * load in it. */
void metrics_reload(metrics *m, int ok, int load_failures);

/* One request refused by a client's quota; reason indexes
 * quota_reason_names (quota.h). */
void metrics_rate_limited(metrics *m, int reason);
/* One finished job forgotten before its ttl to make room for a new one. */
void metrics_job_evicted(metrics *m);

/* ---- inference statistics (the statistics extension of /v2) ---- */

/* A count and the nanoseconds it took in all. */
typedef struct metrics_duration {
    unsigned long long count, ns;
} metrics_duration;

/* Distinct batch sizes kept per model; executions of further sizes count
 * in the model's totals only. */
#define METRICS_BATCH_SIZES 32

/* One batch size's executions. */
typedef struct metrics_batch {
    int batch_size;
    metrics_duration compute_input, compute_infer, compute_output;
} metrics_batch;

/* Everything measured of one model's inferences since start-up. */
typedef struct metrics_model_stats {
    unsigned long long last_inference;  /* ms since the epoch; 0: none yet */
    unsigned long long inference_count; /* samples inferred successfully */
    unsigned long long execution_count; /* successful model executions (requests) */
    metrics_duration success, fail;     /* requests, arrival to answer */
    metrics_duration queue;             /* handed to the pool until a worker took it */
    metrics_duration compute_input;     /* reading and converting the input tensor */
    metrics_duration compute_infer;     /* the forward passes */
    metrics_duration compute_output;    /* writing the answer */
    metrics_batch batches[METRICS_BATCH_SIZES];
    int n_batches;
} metrics_model_stats;

/* The phases of one inference request, in seconds. */
typedef struct metrics_inference_times {
    int ok;               /* answered 200 */
    int batch;            /* samples (B); 0 when it failed before reading them */
    double total;         /* arrival to answer */
    double queue, compute_input, compute_infer, compute_output; /* 0 when not reached */
} metrics_inference_times;

/* Records one inference request of model (a failed one counts in fail
 * only, with its total time). */
void metrics_inference(metrics *m, const char *model, const metrics_inference_times *t);
/* Copies model's statistics into out (zeros when it has none). */
void metrics_inference_stats(metrics *m, const char *model, metrics_model_stats *out);

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
    int clients;        /* clients whose quotas are kept (quota.h) */
    const char *const *failing; /* (n_failing) models whose file failed to load
                                   at the last scan or load */
    int n_failing;
} metrics_gauges;

/* The whole exposition as a malloc'd string (*len bytes); NULL when out of
 * memory. */
char *metrics_render(metrics *m, const metrics_gauges *g, size_t *len);

#endif
