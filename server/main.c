/* main — blindspotd's start-up, reloads and shutdown.
 *
 * Start-up: settings, then the job store (refused at once when another
 * daemon holds it), then HTTP (live at once, ready only once the models
 * and the datasets present are loaded), then the models and datasets, then
 * the worker pool and the job table with the jobs read back from the
 * store. SIGHUP (taken with sigwait) reads the models again
 * (registry_rescan) and the tokens file while everything else goes on.
 * Without tokens the daemon serves only on a loopback address, unless
 * --insecure-no-auth says otherwise (and the log says so loudly). Shutdown on SIGTERM or
 * SIGINT: stop accepting connections, let in-flight jobs finish for
 * --drain-timeout, answer what is left with 503, exit 0. */
#include "core/control.h" /* bs_now */
#include "server/auth.h"
#include "server/config.h"
#include "server/handler.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/outbound.h"
#include "server/quota.h"
#include "server/routes.h"
#include "server/state.h"
#include "server/tls.h"

#include <cblas.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>

/* After the pool is idle, how long answers already made may take to reach
 * their clients before the connections are closed. */
#define FLUSH_GRACE_S 2.0

/* SIGTERM, SIGINT and SIGHUP are blocked in every thread (threads inherit
 * the mask, so this runs before any is started) and taken by sigwait in
 * main: no handler runs at all, so nothing can go wrong inside one. */
static int block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    /* A write past the file-size limit fails (the job store answers 503)
     * rather than kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);
    return pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Loads the registry and reports it; used by --check and start-up. */
static int load(server *srv)
{
    char err[1400];
    double t0 = bs_now();
    const config *cfg = srv->cfg;
    if (registry_load(&srv->reg, cfg->models_dir, cfg->model_name, cfg->data_dir,
                      pool_places(cfg->workers), err, sizeof err)) {
        fprintf(stderr, "blindspotd: %s\n", err);
        return -1;
    }
    char names[64] = "";
    for (int d = 0; d < srv->reg.n_datasets; d++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", d ? ", " : "",
                 srv->reg.datasets[d].name);
    fprintf(stderr, "blindspotd: loaded %d models from %s and %d datasets (%s) from %s in "
            "%.2f s\n", srv->reg.current->n_models, cfg->models_dir, srv->reg.n_datasets,
            srv->reg.n_datasets ? names : "none", cfg->data_dir, bs_now() - t0);
    return 0;
}

/* The tokens file (--auth-tokens) and the rule that without tokens the
 * daemon stays on loopback. At start-up a bad file stops it; at a reload
 * the old tokens stay. 0, or -1 with the reason on stderr. */
static int load_tokens(server *srv, int at_start)
{
    const config *cfg = srv->cfg;
    char err[512];
    if (cfg->auth_tokens[0]) {
        if (auth_load(srv->auth, cfg->auth_tokens, err, sizeof err)) {
            fprintf(stderr, "blindspotd: %s%s\n", err,
                    at_start ? "" : "; the tokens read before stay in force");
            return -1;
        }
        fprintf(stderr, "blindspotd: %d access tokens read from %s\n", auth_count(srv->auth),
                cfg->auth_tokens);
        return 0;
    }
    if (!at_start)
        return 0;
    struct sockaddr_storage addr;
    unsigned addrlen;
    if (config_listen_addr(cfg, &addr, &addrlen, err, sizeof err)) {
        fprintf(stderr, "blindspotd: %s\n", err);
        return -1;
    }
    if (config_addr_is_loopback(&addr))
        return 0;
    if (!cfg->insecure_no_auth) {
        fprintf(stderr, "blindspotd: refusing to listen on %s without access tokens: anyone "
                "who can reach it could run attacks and read or cancel jobs; give "
                "--auth-tokens FILE, listen on a loopback address, or pass --insecure-no-auth "
                "on a network you trust\n", cfg->listen);
        return -1;
    }
    fprintf(stderr, "blindspotd: WARNING: INSECURE: listening on %s with no authentication "
            "(--insecure-no-auth): anyone who can reach this port can use every endpoint\n",
            cfg->listen);
    return 0;
}

/* SIGHUP: the models again, and one line saying what changed. */
static void reload(server *srv)
{
    load_tokens(srv, 0);
    registry_reload r;
    double t0 = bs_now();
    int rc = registry_rescan(&srv->reg, &r);
    metrics_reload(srv->metrics, rc == 0, r.failed);
    fprintf(stderr, "blindspotd: reload: %s, %d added, %d removed, %d replaced, %d kept, "
            "%d failed in %.2f s\n", rc == 0 ? "ok" : "failed", r.added, r.removed,
            r.replaced, r.kept, r.failed, bs_now() - t0);
}

int main(int argc, char **argv)
{
    /* One BLAS thread per call: parallelism comes from the worker pool. */
    openblas_set_num_threads(1);
    config cfg;
    char err[512];
    if (config_parse(&cfg, argc, argv, err, sizeof err)) {
        fprintf(stderr, "blindspotd: %s\n", err);
        return 2;
    }
    if (cfg.action == CONFIG_HELP) {
        config_print_help(argv[0]);
        return 0;
    }
    if (cfg.action == CONFIG_ROUTES) {
        routes_print(stdout);
        return 0;
    }
    if (cfg.action == CONFIG_ERRORS) {
        for (int e = 0; e < BS_E_COUNT; e++)
            printf("%d %-24s %s\n", bs_error_get(e)->status, bs_error_get(e)->code,
                   bs_error_get(e)->meaning);
        return 0;
    }
    if (outbound_global_init()) {
        fprintf(stderr, "blindspotd: libcurl cannot start\n");
        return 1;
    }
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.cfg = &cfg;
    if (cfg.action == CONFIG_CHECK) {
        struct sockaddr_storage addr;
        unsigned addrlen;
        int bad = config_listen_addr(&cfg, &addr, &addrlen, err, sizeof err);
        if (bad)
            fprintf(stderr, "blindspotd: %s\n", err);
        srv.auth = bad ? NULL : auth_new();
        if (srv.auth && load_tokens(&srv, 1))
            bad = 1;
        auth_free(srv.auth);
        if (cfg.tls_cert[0] && tls_open(cfg.tls_cert, cfg.tls_key, err, sizeof err)) {
            fprintf(stderr, "blindspotd: %s\n", err);
            bad = 1;
        }
        tls_close();
        if (load(&srv))
            return 1;
        registry_free(&srv.reg);
        if (bad)
            return 1;
        fprintf(stderr, "blindspotd: configuration and models are valid\n");
        return 0;
    }

    sigset_t signals;
    if (block_signals(&signals)) {
        fprintf(stderr, "blindspotd: cannot block SIGTERM and SIGINT\n");
        return 1;
    }
    srv.auth = auth_new();
    if (!srv.auth || load_tokens(&srv, 1)) {
        auth_free(srv.auth);
        return 1;
    }
    state *store = NULL;
    if (strcmp(cfg.state_path, "none") && strcmp(cfg.state_path, ":memory:")) {
        store = state_open(cfg.state_path, err, sizeof err);
        if (!store) {
            fprintf(stderr, "blindspotd: %s\n", err);
            auth_free(srv.auth);
            return 1;
        }
    }
    srv.metrics = metrics_new();
    srv.quota = quota_new(cfg.rate_limit, cfg.rate_burst, cfg.max_client_work,
                          cfg.max_clients, cfg.max_connections);
    http_server *http =
        srv.metrics && srv.quota ? http_start(&srv, err, sizeof err) : NULL;
    if (!http) {
        fprintf(stderr, "blindspotd: %s\n", srv.metrics && srv.quota ? err : "out of memory");
        quota_free(srv.quota);
        metrics_free(srv.metrics);
        state_close(store);
        auth_free(srv.auth);
        return 1;
    }
    fprintf(stderr, "blindspotd: listening on %s (port %d), %d workers, queue %d\n", cfg.listen,
            http_port(http), cfg.workers, cfg.queue_size);
    if (load(&srv)) {
        http_stop(http);
        quota_free(srv.quota);
        metrics_free(srv.metrics);
        state_close(store);
        auth_free(srv.auth);
        return 1;
    }
    srv.pool = pool_new(cfg.workers, cfg.attack_threads, cfg.queue_size, &srv.reg.generation);
    srv.jobs = srv.pool ? jobs_new(srv.pool, srv.metrics, cfg.max_jobs,
                                         cfg.max_client_jobs, cfg.job_ttl, store)
                        : NULL;
    if (!srv.jobs)
        snprintf(err, sizeof err, "cannot start %d worker threads", cfg.workers);
    webhooks *hooks = srv.jobs ? webhooks_new(&cfg, jobs_webhook_report, srv.jobs) : NULL;
    if (srv.jobs && !hooks)
        snprintf(err, sizeof err, "cannot start the webhook delivery thread");
    if (hooks)
        jobs_set_webhooks(srv.jobs, hooks);
    if (!hooks || jobs_restore(srv.jobs, &srv, err, sizeof err)) {
        fprintf(stderr, "blindspotd: %s\n", err);
        http_stop(http);
        if (srv.pool)
            pool_drain(srv.pool, bs_now());
        pool_free(srv.pool);
        webhooks_free(hooks);
        jobs_free(srv.jobs);
        registry_free(&srv.reg);
        quota_free(srv.quota);
        metrics_free(srv.metrics);
        state_close(store);
        auth_free(srv.auth);
        return 1;
    }
    atomic_store(&srv.ready, 1);
    fprintf(stderr, "blindspotd: ready\n");

    int sig = 0;
    while (sigwait(&signals, &sig) != 0 || sig == SIGHUP)
        if (sig == SIGHUP) {
            reload(&srv);
            int tls = http_reload_tls(http, err, sizeof err);
            if (tls <= 0)
                fprintf(stderr, "blindspotd: reload: TLS certificate %s%s\n",
                        tls == 0 ? "read again" : "kept: ", tls == 0 ? "" : err);
            sig = 0;
        }
    fprintf(stderr, "blindspotd: %s: draining (up to %.0f s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", cfg.drain_timeout);
    atomic_store(&srv.draining, 1);
    http_quiesce(http);
    jobs_stop(srv.jobs);
    int left = pool_drain(srv.pool, bs_now() + cfg.drain_timeout);
    double until = bs_now() + FLUSH_GRACE_S;
    while (atomic_load(&srv.active) > 0 && bs_now() < until)
        poll(NULL, 0, 10);
    http_stop(http);
    pool_free(srv.pool);
    webhooks_free(hooks);
    jobs_free(srv.jobs);
    state_close(store);
    registry_free(&srv.reg);
    quota_free(srv.quota);
    metrics_free(srv.metrics);
    auth_free(srv.auth);
    fprintf(stderr, "blindspotd: stopped (%d jobs cut short)\n", left);
    return 0;
}
