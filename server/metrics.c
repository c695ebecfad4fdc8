/* metrics — series storage and the text exposition; see metrics.h. */
#include "server/metrics.h"

#include "server/jobs.h"  /* jobs_state_names */
#include "server/quota.h" /* quota_reason_names */

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Upper bounds (seconds) of the histogram buckets; +Inf is implied. */
static const double http_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,  0.5,    1,     2.5,  5,     10,   30, 60};
static const double attack_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,  5,    10,  30,   60,  120};
/* Queue and compute times: an inference takes well under a millisecond,
 * an attack up to minutes. */
static const double work_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                      5,      10,      30,     60,    120};
#define N_WORK_BUCKETS (sizeof work_buckets / sizeof work_buckets[0])
#define N_HTTP_BUCKETS (sizeof http_buckets / sizeof http_buckets[0])
#define N_ATTACK_BUCKETS (sizeof attack_buckets / sizeof attack_buckets[0])

/* Enough for every (route, method, status) and (method, model) the daemon
 * can produce; anything past it is dropped rather than grown without end. */
#define MAX_REQUEST_SERIES 512
#define MAX_ATTACK_SERIES 256

typedef struct request_series {
    const char *route;
    char method[8];
    int status;
    unsigned long long buckets[N_HTTP_BUCKETS]; /* cumulative at render */
    unsigned long long count;
    double sum;
} request_series;

typedef struct attack_series {
    char method[16];
    char model[64];
    unsigned long long succeeded, failed, timed_out, cancelled;
    unsigned long long buckets[N_ATTACK_BUCKETS];
    unsigned long long count;
    double sum;
} attack_series;

#define MAX_MODEL_SERIES 256
#define MAX_WORK_SERIES 512

/* A histogram of seconds over work_buckets. */
typedef struct work_histogram {
    unsigned long long buckets[N_WORK_BUCKETS]; /* cumulative at render */
    unsigned long long count;
    double sum;
} work_histogram;

typedef struct work_series {
    const char *kind; /* static */
    char model[64];
    unsigned long long ok, failed;
    work_histogram queue, compute;
} work_series;

typedef struct model_series {
    char model[64];
    metrics_model_stats stats;
} model_series;

struct metrics {
    pthread_mutex_t lock;
    model_series models[MAX_MODEL_SERIES];
    int n_models;
    work_series work[MAX_WORK_SERIES];
    int n_work;
    request_series req[MAX_REQUEST_SERIES];
    int n_req;
    attack_series att[MAX_ATTACK_SERIES];
    int n_att;
    unsigned long long reloads_ok, reloads_failed, load_failures;
    unsigned long long rate_limited[QUOTA_REASONS]; /* refusals by reason */
    unsigned long long jobs_evicted;
    unsigned long long attack_streams, attack_stream_jobs;
};

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->lock, NULL);
    return m;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_reload(metrics *m, int ok, int load_failures)
{
    pthread_mutex_lock(&m->lock);
    if (ok)
        m->reloads_ok++;
    else
        m->reloads_failed++;
    m->load_failures += (unsigned long long)load_failures;
    pthread_mutex_unlock(&m->lock);
}

void metrics_rate_limited(metrics *m, int reason)
{
    if (reason < 0 || reason >= QUOTA_REASONS)
        return;
    pthread_mutex_lock(&m->lock);
    m->rate_limited[reason]++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_job_evicted(metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->jobs_evicted++;
    pthread_mutex_unlock(&m->lock);
}

/* Methods outside the usual set share one label value. */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                        "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(method, known[i]))
            return known[i];
    return "OTHER";
}

void metrics_request(metrics *m, const char *route, const char *method, int status,
                     double seconds)
{
    const char *ml = method_label(method);
    pthread_mutex_lock(&m->lock);
    request_series *s = NULL;
    for (int i = 0; i < m->n_req && !s; i++)
        if (m->req[i].route == route && m->req[i].status == status &&
            !strcmp(m->req[i].method, ml))
            s = &m->req[i];
    if (!s && m->n_req < MAX_REQUEST_SERIES) {
        s = &m->req[m->n_req++];
        s->route = route;
        snprintf(s->method, sizeof s->method, "%s", ml);
        s->status = status;
    }
    if (s) {
        for (size_t b = 0; b < N_HTTP_BUCKETS; b++)
            if (seconds <= http_buckets[b]) {
                s->buckets[b]++;
                break;
            }
        s->count++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&m->lock);
}

void metrics_attack(metrics *m, const char *method, const char *model, int succeeded,
                    int failed, int timed_out, int cancelled, double seconds)
{
    pthread_mutex_lock(&m->lock);
    attack_series *s = NULL;
    for (int i = 0; i < m->n_att && !s; i++)
        if (!strcmp(m->att[i].method, method) && !strcmp(m->att[i].model, model))
            s = &m->att[i];
    if (!s && m->n_att < MAX_ATTACK_SERIES) {
        s = &m->att[m->n_att++];
        snprintf(s->method, sizeof s->method, "%s", method);
        snprintf(s->model, sizeof s->model, "%s", model);
    }
    if (s) {
        s->succeeded += (unsigned)succeeded;
        s->failed += (unsigned)failed;
        s->timed_out += (unsigned)timed_out;
        s->cancelled += (unsigned)cancelled;
        for (size_t b = 0; b < N_ATTACK_BUCKETS; b++)
            if (seconds <= attack_buckets[b]) {
                s->buckets[b]++;
                break;
            }
        s->count++;
        s->sum += seconds;
    }
    pthread_mutex_unlock(&m->lock);
}

void metrics_attack_stream_job(metrics *m, int first)
{
    pthread_mutex_lock(&m->lock);
    m->attack_streams += first != 0;
    m->attack_stream_jobs++;
    pthread_mutex_unlock(&m->lock);
}

/* The series of model, made when absent (NULL when the table is full).
 * Called with the lock held. */
static model_series *model_of(metrics *m, const char *model)
{
    for (int i = 0; i < m->n_models; i++)
        if (!strcmp(m->models[i].model, model))
            return &m->models[i];
    if (m->n_models == MAX_MODEL_SERIES)
        return NULL;
    model_series *s = &m->models[m->n_models++];
    snprintf(s->model, sizeof s->model, "%s", model);
    return s;
}

static void observe(work_histogram *h, double seconds)
{
    for (size_t b = 0; b < N_WORK_BUCKETS; b++)
        if (seconds <= work_buckets[b]) {
            h->buckets[b]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}

void metrics_work(metrics *m, const char *kind, const char *model, int ok, double queued,
                  double ran)
{
    pthread_mutex_lock(&m->lock);
    work_series *s = NULL;
    for (int i = 0; i < m->n_work && !s; i++)
        if (!strcmp(m->work[i].kind, kind) && !strcmp(m->work[i].model, model))
            s = &m->work[i];
    if (!s && m->n_work < MAX_WORK_SERIES) {
        s = &m->work[m->n_work++];
        s->kind = kind;
        snprintf(s->model, sizeof s->model, "%s", model);
    }
    if (s) {
        *(ok ? &s->ok : &s->failed) += 1;
        observe(&s->queue, queued > 0 ? queued : 0);
        observe(&s->compute, ran > 0 ? ran : 0);
    }
    pthread_mutex_unlock(&m->lock);
}

static void add(metrics_duration *d, double seconds)
{
    d->count++;
    d->ns += (unsigned long long)(seconds > 0 ? seconds * 1e9 : 0);
}

void metrics_inference(metrics *m, const char *model, const metrics_inference_times *t)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&m->lock);
    model_series *s = model_of(m, model);
    if (s) {
        metrics_model_stats *st = &s->stats;
        st->last_inference = (unsigned long long)now.tv_sec * 1000 +
                             (unsigned long long)now.tv_nsec / 1000000;
        if (!t->ok) {
            add(&st->fail, t->total);
        } else {
            add(&st->success, t->total);
            st->inference_count += (unsigned long long)t->batch;
            st->execution_count++;
            add(&st->queue, t->queue);
            add(&st->compute_input, t->compute_input);
            add(&st->compute_infer, t->compute_infer);
            add(&st->compute_output, t->compute_output);
            metrics_batch *b = NULL;
            for (int i = 0; i < st->n_batches && !b; i++)
                if (st->batches[i].batch_size == t->batch)
                    b = &st->batches[i];
            if (!b && st->n_batches < METRICS_BATCH_SIZES) {
                b = &st->batches[st->n_batches++];
                b->batch_size = t->batch;
            }
            if (b) {
                add(&b->compute_input, t->compute_input);
                add(&b->compute_infer, t->compute_infer);
                add(&b->compute_output, t->compute_output);
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
}

void metrics_inference_stats(metrics *m, const char *model, metrics_model_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->n_models; i++)
        if (!strcmp(m->models[i].model, model))
            *out = m->models[i].stats;
    pthread_mutex_unlock(&m->lock);
}

/* A growing text buffer; on allocation failure it keeps failing quietly
 * and the caller sees NULL at the end. */
typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void put_gauge(text *t, const char *name, const char *help, int v)
{
    put(t, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v);
}

/* One histogram family over every work series: the queue, or (compute)
 * the run. Called with the lock held. */
static void put_work_histogram(text *t, const metrics *m, const char *name, const char *help,
                               int compute)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < m->n_work; i++) {
        const work_series *s = &m->work[i];
        const work_histogram *h = compute ? &s->compute : &s->queue;
        unsigned long long cum = 0;
        for (size_t b = 0; b < N_WORK_BUCKETS; b++) {
            cum += h->buckets[b];
            put(t, "%s_bucket{kind=\"%s\",model=\"%s\",le=\"%g\"} %llu\n", name, s->kind,
                s->model, work_buckets[b], cum);
        }
        put(t, "%s_bucket{kind=\"%s\",model=\"%s\",le=\"+Inf\"} %llu\n", name, s->kind,
            s->model, h->count);
        put(t, "%s_sum{kind=\"%s\",model=\"%s\"} %.9g\n", name, s->kind, s->model, h->sum);
        put(t, "%s_count{kind=\"%s\",model=\"%s\"} %llu\n", name, s->kind, s->model,
            h->count);
    }
}

/* The process as /proc describes it; a metric whose file cannot be read
 * is left out rather than reported as 0. */
typedef struct process_info {
    double cpu_seconds;      /* utime + stime */
    double virtual_bytes;    /* vsize */
    double resident_bytes;   /* rss pages * page size */
    double start_time;       /* seconds since the epoch */
    int have_stat;
    long open_fds;           /* -1: unknown */
    long max_fds;            /* soft limit; -1: unknown */
} process_info;

static void read_process(process_info *p)
{
    memset(p, 0, sizeof *p);
    p->open_fds = p->max_fds = -1;
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'. After it come state (field 3) .. ; utime is 14, stime
     * 15, starttime 22, vsize 23, rss 24. */
    char *rest = strrchr(buf, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;
    if (rest && ticks > 0 &&
        sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                         "%*d %*d %llu %llu %lld", &utime, &stime, &start, &vsize, &rss) == 5) {
        double btime = 0;
        FILE *st = fopen("/proc/stat", "r");
        char line[256];
        while (st && fgets(line, sizeof line, st))
            if (sscanf(line, "btime %lf", &btime) == 1)
                break;
        if (st)
            fclose(st);
        p->have_stat = btime > 0;
        p->cpu_seconds = (double)(utime + stime) / (double)ticks;
        p->virtual_bytes = (double)vsize;
        p->resident_bytes = (double)rss * (double)page;
        p->start_time = btime + (double)start / (double)ticks;
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long count = 0;
        for (struct dirent *e; (e = readdir(d));)
            count += e->d_name[0] != '.';
        closedir(d);
        p->open_fds = count - 1; /* the directory stream's own descriptor */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

/* The standard process_* metrics of Prometheus' client libraries. */
static void put_process(text *t)
{
    process_info p;
    read_process(&p);
    if (p.have_stat) {
        put(t, "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
               "seconds.\n# TYPE process_cpu_seconds_total counter\n"
               "process_cpu_seconds_total %.9g\n", p.cpu_seconds);
        put(t, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %.17g\n",
            p.virtual_bytes);
        put(t, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\n"
               "process_resident_memory_bytes %.17g\n", p.resident_bytes);
        put(t, "# HELP process_start_time_seconds Start time of the process since unix epoch "
               "in seconds.\n# TYPE process_start_time_seconds gauge\n"
               "process_start_time_seconds %.17g\n", p.start_time);
    }
    if (p.open_fds >= 0)
        put(t, "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", p.open_fds);
    if (p.max_fds >= 0)
        put(t, "# HELP process_max_fds Maximum number of open file descriptors.\n"
               "# TYPE process_max_fds gauge\nprocess_max_fds %ld\n", p.max_fds);
}

char *metrics_render(metrics *m, const metrics_gauges *g, size_t *len)
{
    text t = {.cap = 16384};
    t.s = malloc(t.cap);
    if (!t.s)
        return NULL;
    t.s[0] = '\0';
    put_gauge(&t, "blindspot_ready", "1 when every model and dataset is loaded.", g->ready);
    put_gauge(&t, "blindspot_models", "Resident models.", g->models);
    put_gauge(&t, "blindspot_queue_depth", "Jobs waiting for a worker.", g->queued);
    put_gauge(&t, "blindspot_queue_capacity", "Jobs that may wait (--queue-size).",
              g->queue_capacity);
    put_gauge(&t, "blindspot_workers_busy",
              "Jobs running: on workers (every attack of a batched stream), and small inferences on "
              "HTTP threads.", g->busy);
    put_gauge(&t, "blindspot_workers", "Worker threads (--workers).", g->workers);
    put(&t, "# HELP blindspot_jobs Asynchronous jobs in the table, by state.\n"
            "# TYPE blindspot_jobs gauge\n");
    _Static_assert(JOBS_STATES == sizeof g->jobs / sizeof g->jobs[0], "one gauge per state");
    for (int s = 0; s < JOBS_STATES; s++)
        put(&t, "blindspot_jobs{state=\"%s\"} %d\n", jobs_state_names[s], g->jobs[s]);
    put_gauge(&t, "blindspot_jobs_capacity", "Jobs the table may hold (--max-jobs).",
              g->max_jobs);

    put_gauge(&t, "blindspot_quota_clients",
              "Clients whose quotas are kept (--max-clients idle ones at most).", g->clients);

    put(&t, "# HELP blindspot_model_load_failing 1 for each model whose file failed to load "
            "at the last reload (a previous version may still serve).\n"
            "# TYPE blindspot_model_load_failing gauge\n");
    for (int i = 0; i < g->n_failing; i++)
        put(&t, "blindspot_model_load_failing{model=\"%s\"} 1\n", g->failing[i]);

    pthread_mutex_lock(&m->lock);
    put(&t, "# HELP blindspot_model_reloads_total Reloads of the models (SIGHUP, or a load "
            "through the repository endpoints), by result.\n"
            "# TYPE blindspot_model_reloads_total counter\n"
            "blindspot_model_reloads_total{result=\"ok\"} %llu\n"
            "blindspot_model_reloads_total{result=\"failed\"} %llu\n",
            m->reloads_ok, m->reloads_failed);
    put(&t, "# HELP blindspot_model_load_failures_total Model files that failed to load in a "
            "reload.\n"
            "# TYPE blindspot_model_load_failures_total counter\n"
            "blindspot_model_load_failures_total %llu\n", m->load_failures);
    put(&t, "# HELP blindspot_rate_limited_total Requests refused with 429 by a client's "
            "quota, by reason (rate: --rate-limit, client_work: --max-client-work, "
            "client_jobs: --max-client-jobs).\n"
            "# TYPE blindspot_rate_limited_total counter\n");
    for (int r = 0; r < QUOTA_REASONS; r++)
        put(&t, "blindspot_rate_limited_total{reason=\"%s\"} %llu\n", quota_reason_names[r],
            m->rate_limited[r]);
    put(&t, "# HELP blindspot_jobs_evicted_total Finished jobs forgotten before their "
            "--job-ttl to make room in a full job table.\n"
            "# TYPE blindspot_jobs_evicted_total counter\n"
            "blindspot_jobs_evicted_total %llu\n", m->jobs_evicted);
    put(&t, "# HELP blindspot_http_requests_total Answered HTTP requests.\n"
            "# TYPE blindspot_http_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++) {
        const request_series *s = &m->req[i];
        put(&t, "blindspot_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
            s->route, s->method, s->status, s->count);
    }
    put(&t, "# HELP blindspot_http_request_duration_seconds Time from a request's arrival "
            "to its answer.\n"
            "# TYPE blindspot_http_request_duration_seconds histogram\n");
    for (int i = 0; i < m->n_req; i++) {
        const request_series *s = &m->req[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b < N_HTTP_BUCKETS; b++) {
            cum += s->buckets[b];
            put(&t, "blindspot_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                    "status=\"%d\",le=\"%g\"} %llu\n",
                s->route, s->method, s->status, http_buckets[b], cum);
        }
        put(&t, "blindspot_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                "status=\"%d\",le=\"+Inf\"} %llu\n",
            s->route, s->method, s->status, s->count);
        put(&t, "blindspot_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\","
                "status=\"%d\"} %.9g\n",
            s->route, s->method, s->status, s->sum);
        put(&t, "blindspot_http_request_duration_seconds_count{route=\"%s\",method=\"%s\","
                "status=\"%d\"} %llu\n",
            s->route, s->method, s->status, s->count);
    }
    put(&t, "# HELP blindspot_attack_targets_total Attacked targets by outcome.\n"
            "# TYPE blindspot_attack_targets_total counter\n");
    for (int i = 0; i < m->n_att; i++) {
        const attack_series *s = &m->att[i];
        const char *names[] = {"success", "failure", "timeout", "cancelled"};
        unsigned long long v[] = {s->succeeded, s->failed, s->timed_out, s->cancelled};
        for (int o = 0; o < 4; o++)
            put(&t, "blindspot_attack_targets_total{method=\"%s\",model=\"%s\",outcome=\"%s\"} "
                    "%llu\n",
                s->method, s->model, names[o], v[o]);
    }
    put(&t, "# HELP blindspot_attack_streams_total Streams of lbfgs attacks batched across "
            "requests (--attack-batch) started.\n"
            "# TYPE blindspot_attack_streams_total counter\n"
            "blindspot_attack_streams_total %llu\n"
            "# HELP blindspot_attack_stream_jobs_total Attack requests those streams ran, "
            "their evaluations batched with the others of their stream.\n"
            "# TYPE blindspot_attack_stream_jobs_total counter\n"
            "blindspot_attack_stream_jobs_total %llu\n",
        m->attack_streams, m->attack_stream_jobs);
    put(&t, "# HELP blindspot_attack_duration_seconds Wall time of attack requests on a "
            "worker.\n"
            "# TYPE blindspot_attack_duration_seconds histogram\n");
    for (int i = 0; i < m->n_att; i++) {
        const attack_series *s = &m->att[i];
        unsigned long long cum = 0;
        for (size_t b = 0; b < N_ATTACK_BUCKETS; b++) {
            cum += s->buckets[b];
            put(&t, "blindspot_attack_duration_seconds_bucket{method=\"%s\",model=\"%s\","
                    "le=\"%g\"} %llu\n",
                s->method, s->model, attack_buckets[b], cum);
        }
        put(&t, "blindspot_attack_duration_seconds_bucket{method=\"%s\",model=\"%s\","
                "le=\"+Inf\"} %llu\n",
            s->method, s->model, s->count);
        put(&t, "blindspot_attack_duration_seconds_sum{method=\"%s\",model=\"%s\"} %.9g\n",
            s->method, s->model, s->sum);
        put(&t, "blindspot_attack_duration_seconds_count{method=\"%s\",model=\"%s\"} %llu\n",
            s->method, s->model, s->count);
    }
    put(&t, "# HELP blindspot_work_total Work run on the pool (or inline), by kind, model and "
            "outcome (success: answered below 400).\n"
            "# TYPE blindspot_work_total counter\n");
    for (int i = 0; i < m->n_work; i++) {
        const work_series *s = &m->work[i];
        put(&t, "blindspot_work_total{kind=\"%s\",model=\"%s\",outcome=\"success\"} %llu\n",
            s->kind, s->model, s->ok);
        put(&t, "blindspot_work_total{kind=\"%s\",model=\"%s\",outcome=\"failure\"} %llu\n",
            s->kind, s->model, s->failed);
    }
    put_work_histogram(&t, m, "blindspot_work_queue_seconds",
                       "Time from a request's arrival until its work started on a worker (or "
                       "inline).", 0);
    put_work_histogram(&t, m, "blindspot_work_compute_seconds",
                       "Time the work ran (the inference or attack itself).", 1);
    pthread_mutex_unlock(&m->lock);
    put_process(&t);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}
