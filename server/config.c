/* config — the option table and its parsers; see config.h. */
#include "server/config.h"

#include "server/cors.h"

#include <errno.h>
#include <math.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum opt_kind {
    OPT_STRING,  /* char[] of the field's size */
    OPT_COUNT,   /* int, whole number */
    OPT_SECONDS, /* double, seconds (fractions allowed) */
    OPT_BYTES,   /* size_t, bytes with an optional K/M/G (binary) suffix */
    OPT_SWITCH,  /* int 0 or 1; the bare flag is 1, the variable takes 0/1 */
    OPT_NUMBER,  /* double, any number in range (a rate) */
} opt_kind;

typedef struct option_spec {
    const char *flag;    /* --flag */
    const char *env;     /* its environment twin */
    const char *metavar; /* what the value looks like in --help */
    opt_kind kind;
    size_t offset;       /* of the field in config */
    size_t size;         /* of the field (strings) */
    const char *def;     /* default, parsed like any other value */
    double min, max;     /* accepted range (numbers) */
    const char *help;
} option_spec;

#define FIELD(f) offsetof(config, f), sizeof(((config *)0)->f)

/* The one table behind parsing and --help. */
static const option_spec options[] = {
    {"listen", "BLINDSPOT_LISTEN", "HOST:PORT", OPT_STRING, FIELD(listen),
     "127.0.0.1:8080", 0, 0, "address and port to serve HTTP on (port 0: any free port)"},
    {"models", "BLINDSPOT_MODELS", "PATH", OPT_STRING, FIELD(models_dir), "models", 0, 0,
     "a folder whose *.safetensors and *.onnx files are loaded (a model's name is its file name), "
     "or one model file; SIGHUP reads it again"},
    {"model-name", "BLINDSPOT_MODEL_NAME", "NAME", OPT_STRING, FIELD(model_name), "", 0, 0,
     "serve one model under this name: --models is that file, or a folder holding only it "
     "(of any file name), as KServe mounts it"},
    {"data", "BLINDSPOT_DATA", "DIR", OPT_STRING, FIELD(data_dir), "data", 0, 0,
     "folder of the datasets (mnist, fashion-mnist), each loaded when its folder exists"},
    {"workers", "BLINDSPOT_WORKERS", "N", OPT_COUNT, FIELD(workers), "0", 0, 1024,
     "compute threads (0: one per core)"},
    {"http-threads", "BLINDSPOT_HTTP_THREADS", "N", OPT_COUNT, FIELD(http_threads), "0", 0,
     256, "threads that parse and answer HTTP (0: one per core); of the compute only "
          "a small inference runs on them, when no job waits"},
    {"queue-size", "BLINDSPOT_QUEUE_SIZE", "N", OPT_COUNT, FIELD(queue_size), "64", 1,
     1000000, "jobs that may wait for a worker; more are refused with 503"},
    {"attack-batch", "BLINDSPOT_ATTACK_BATCH", "ROWS", OPT_COUNT, FIELD(attack_batch), "8", 1,
     4096, "most rows (targets times lanes) of lbfgs attacks one worker runs in lockstep: "
           "queued attacks on the same model with the same params join a running one, "
           "their evaluations in one batch, and each answer is the one it gets alone "
           "(1: each attack alone)"},
    {"attack-threads", "BLINDSPOT_ATTACK_THREADS", "N", OPT_COUNT, FIELD(attack_threads), "1",
     1, 64, "threads each worker lends to one model evaluation of its work, the worker's "
            "own counted: the large products of a big model (an imported convolutional net) "
            "split among them with the bits of one thread. For fewer workers than cores "
            "(--workers 1 --attack-threads 2 on two cores): a worker's threads spin briefly "
            "between products and share the cores with the other workers' (measure first: "
            "on a 2-core machine the zoo's CNN is slower with 2, docs/benchmarks.md)"},
    {"timeout", "BLINDSPOT_TIMEOUT", "SECONDS", OPT_SECONDS, FIELD(timeout), "60", 0.001,
     86400, "time budget of a job from its arrival (requests may lower it); then 504"},
    {"max-body", "BLINDSPOT_MAX_BODY", "BYTES", OPT_BYTES, FIELD(max_body), "16M", 1,
     1024.0 * 1024 * 1024, "largest request body (K, M, G suffixes are binary); then 413"},
    {"drain-timeout", "BLINDSPOT_DRAIN_TIMEOUT", "SECONDS", OPT_SECONDS,
     FIELD(drain_timeout), "30", 0, 86400,
     "on SIGTERM/SIGINT, time in-flight jobs get to finish before 503"},
    {"max-connections", "BLINDSPOT_MAX_CONNECTIONS", "N", OPT_COUNT,
     FIELD(max_connections), "512", 1, 65536, "simultaneous client connections"},
    {"idle-timeout", "BLINDSPOT_IDLE_TIMEOUT", "SECONDS", OPT_COUNT, FIELD(idle_timeout),
     "30", 1, 86400, "an idle connection is closed after this many seconds"},
    {"max-pixels", "BLINDSPOT_MAX_PIXELS", "N", OPT_BYTES, FIELD(max_pixels), "4M", 1,
     1024.0 * 1024 * 1024, "largest uploaded image in pixels (width*height); then 422"},
    {"job-timeout", "BLINDSPOT_JOB_TIMEOUT", "SECONDS", OPT_SECONDS, FIELD(job_timeout),
     "3600", 0.001, 604800,
     "time budget of an async job (attack, evaluation) from its creation"},
    {"job-ttl", "BLINDSPOT_JOB_TTL", "SECONDS", OPT_SECONDS, FIELD(job_ttl), "3600", 0.001,
     604800, "a finished job is kept this long, then /v1/jobs/{id} is 404"},
    {"max-jobs", "BLINDSPOT_MAX_JOBS", "N", OPT_COUNT, FIELD(max_jobs), "256", 1, 100000,
     "jobs kept at once; a full table forgets the finished job that ended longest ago, and "
     "refuses new ones (503) only while every job in it is queued or running"},
    {"state", "BLINDSPOT_STATE", "FILE", OPT_STRING, FIELD(state_path),
     "blindspot-state.sqlite", 0, 0,
     "jobs survive restarts and crashes in this SQLite file (one daemon per file); "
     "none or :memory: keeps them in memory only"},
    {"rate-limit", "BLINDSPOT_RATE_LIMIT", "N", OPT_NUMBER, FIELD(rate_limit), "0", 0, 1e6,
     "compute requests (inference, prediction, attacks, evaluations, analyses) per second "
     "per client, a token bucket (0: no limit); more are refused with 429 and Retry-After"},
    {"rate-burst", "BLINDSPOT_RATE_BURST", "N", OPT_COUNT, FIELD(rate_burst), "0", 0, 1000000,
     "compute requests a client may send at once before --rate-limit applies (0: one "
     "second's worth, at least 1)"},
    {"max-client-jobs", "BLINDSPOT_MAX_CLIENT_JOBS", "N", OPT_COUNT, FIELD(max_client_jobs),
     "16", 1, 100000, "queued and running async jobs of one client; more are refused with 429"},
    {"max-client-work", "BLINDSPOT_MAX_CLIENT_WORK", "N", OPT_COUNT, FIELD(max_client_work),
     "0", 0, 1000000, "compute requests of one client in flight (arrived, not yet answered); "
     "more are refused with 429 (0: half --queue-size plus --workers)"},
    {"max-clients", "BLINDSPOT_MAX_CLIENTS", "N", OPT_COUNT, FIELD(max_clients), "4096", 1,
     1000000, "clients whose quotas are kept at once; the least recently seen idle ones are "
     "forgotten first"},
    {"cors-origins", "BLINDSPOT_CORS_ORIGINS", "LIST", OPT_STRING, FIELD(cors_origins), "", 0,
     0, "origins whose pages may call the API (comma-separated, like "
        "https://a.example,http://localhost:3000, or * for any); a request from any other "
        "origin than these and the daemon's own is refused with 403"},
    {"auth-tokens", "BLINDSPOT_AUTH_TOKENS", "FILE", OPT_STRING, FIELD(auth_tokens), "", 0, 0,
     "access tokens, one a line: TOKEN CLIENT SCOPES (scopes: infer,attack,evaluate,admin; "
     "TOKEN may be sha256:HEX); every request but health, the studio's pages and /metrics "
     "then needs Authorization: Bearer TOKEN (401, or 403 without the scope); SIGHUP reads "
     "it again"},
    {"insecure-no-auth", "BLINDSPOT_INSECURE_NO_AUTH", "", OPT_SWITCH, FIELD(insecure_no_auth),
     "0", 0, 1, "serve on an address other than loopback without --auth-tokens (refused "
                "otherwise): anyone who can reach the port may use everything"},
    {"metrics-auth", "BLINDSPOT_METRICS_AUTH", "", OPT_SWITCH, FIELD(metrics_auth), "0", 0, 1,
     "/metrics needs a token with the admin scope (open otherwise)"},
    {"outbound-allow", "BLINDSPOT_OUTBOUND_ALLOW", "LIST", OPT_STRING, FIELD(outbound_allow),
     "", 0, 0, "CIDRs (comma-separated, like 127.0.0.1/32,10.1.0.0/16) that webhooks and "
               "images by URL may reach although they are loopback, private, link-local, "
               "multicast or otherwise refused by the outbound guard"},
    {"outbound-proxy", "BLINDSPOT_OUTBOUND_PROXY", "URL", OPT_STRING, FIELD(outbound_proxy), "",
     0, 0, "proxy for webhooks and images by URL (the environment's *_proxy variables are "
           "ignored)"},
    {"fetch-max-bytes", "BLINDSPOT_FETCH_MAX_BYTES", "BYTES", OPT_BYTES, FIELD(fetch_max_bytes),
     "0", 0, 1024.0 * 1024 * 1024, "largest image fetched by URL (0: --max-body); then 422 "
                                   "fetch_failed"},
    {"fetch-timeout", "BLINDSPOT_FETCH_TIMEOUT", "SECONDS", OPT_SECONDS, FIELD(fetch_timeout),
     "10", 0.001, 3600, "time an image fetched by URL may take; then 422 fetch_failed"},
    {"webhook-secret", "BLINDSPOT_WEBHOOK_SECRET", "SECRET", OPT_STRING, FIELD(webhook_secret),
     "", 0, 0, "key of the HMAC-SHA256 in a webhook's X-Blindspot-Signature"},
    {"webhook-secret-file", "BLINDSPOT_WEBHOOK_SECRET_FILE", "FILE", OPT_STRING,
     FIELD(webhook_secret_file), "", 0, 0,
     "read the webhook secret from the first line of this file instead"},
    {"webhook-tries", "BLINDSPOT_WEBHOOK_TRIES", "N", OPT_COUNT, FIELD(webhook_tries), "5", 1, 20,
     "deliveries of a webhook tried (on a connection failure or a 5xx) before it has failed"},
    {"webhook-backoff", "BLINDSPOT_WEBHOOK_BACKOFF", "SECONDS", OPT_SECONDS,
     FIELD(webhook_backoff), "1", 0.001, 3600,
     "wait before a webhook's first retry, doubled before each next one"},
    {"allowed-hosts", "BLINDSPOT_ALLOWED_HOSTS", "LIST", OPT_STRING, FIELD(allowed_hosts), "",
     0, 0, "host names the Host header may carry (comma-separated, a port optional, * for "
           "any); none: on a loopback --listen only localhost, 127.0.0.1 and [::1], "
           "elsewhere any; another Host is refused with 403 (DNS rebinding)"},
    {"tls-cert", "BLINDSPOT_TLS_CERT", "FILE", OPT_STRING, FIELD(tls_cert), "", 0, 0,
     "serve HTTPS with this PEM certificate (chain), with --tls-key; SIGHUP reads both again"},
    {"tls-key", "BLINDSPOT_TLS_KEY", "FILE", OPT_STRING, FIELD(tls_key), "", 0, 0,
     "the PEM private key of --tls-cert"},
    {"header-timeout", "BLINDSPOT_HEADER_TIMEOUT", "SECONDS", OPT_SECONDS,
     FIELD(header_timeout), "10", 0.1, 86400,
     "a request's head (request line and headers) must arrive within this time of the "
     "connection's opening or of the previous answer, however slowly; then the connection "
     "is closed"},
    {"body-timeout", "BLINDSPOT_BODY_TIMEOUT", "SECONDS", OPT_SECONDS, FIELD(body_timeout),
     "60", 0.1, 86400, "a request's body must arrive within this time of its head; "
                       "then 408 and the connection is closed"},
    {"max-connections-per-ip", "BLINDSPOT_MAX_CONNECTIONS_PER_IP", "N", OPT_COUNT,
     FIELD(max_connections_per_ip), "64", 1, 65536,
     "simultaneous connections from one client address; more are closed at once"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* Parses text for option o into its field. where names the source
 * ("--workers" or "BLINDSPOT_WORKERS") for the message. */
static int set_option(config *cfg, const option_spec *o, const char *text,
                      const char *where, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    if (o->kind == OPT_STRING) {
        /* only an empty default may be empty: "not set" */
        if ((!*text && text != o->def) || strlen(text) >= o->size) {
            snprintf(err, errlen, "%s wants a non-empty value of at most %zu characters",
                     where, o->size - 1);
            return -1;
        }
        memcpy(field, text, strlen(text) + 1);
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || !isfinite(v))
        goto bad;
    if (o->kind == OPT_BYTES) {
        double unit = 1;
        if (*end == 'K' || *end == 'k')
            unit = 1024;
        else if (*end == 'M' || *end == 'm')
            unit = 1024.0 * 1024;
        else if (*end == 'G' || *end == 'g')
            unit = 1024.0 * 1024 * 1024;
        if (unit > 1) {
            end++;
            if (!strcmp(end, "iB") || !strcmp(end, "B"))
                end += strlen(end);
        }
        v *= unit;
    }
    if (*end || v < o->min || v > o->max)
        goto bad;
    if (o->kind != OPT_SECONDS && o->kind != OPT_NUMBER && v != floor(v))
        goto bad;
    if (o->kind == OPT_COUNT || o->kind == OPT_SWITCH)
        *(int *)field = (int)v;
    else if (o->kind == OPT_SECONDS || o->kind == OPT_NUMBER)
        *(double *)field = v;
    else
        *(size_t *)field = (size_t)v;
    return 0;
bad:
    if (o->kind == OPT_SWITCH)
        snprintf(err, errlen, "%s wants 0 or 1, got '%s'", where, text);
    else
        snprintf(err, errlen, "%s wants %s in [%g, %g], got '%s'", where,
                 o->kind == OPT_SECONDS  ? "a number of seconds"
                 : o->kind == OPT_NUMBER ? "a number"
                                         : "a whole number",
                 o->min, o->max, text);
    return -1;
}

/* The first line of --webhook-secret-file into webhook_secret. */
static int read_secret(config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(cfg->webhook_secret_file, "r");
    if (!f) {
        snprintf(err, errlen, "--webhook-secret-file %s: %s", cfg->webhook_secret_file,
                 strerror(errno));
        return -1;
    }
    char *line = fgets(cfg->webhook_secret, sizeof cfg->webhook_secret, f);
    fclose(f);
    if (line)
        line[strcspn(line, "\r\n")] = '\0';
    if (!line || !line[0]) {
        snprintf(err, errlen, "--webhook-secret-file %s: the file is empty",
                 cfg->webhook_secret_file);
        return -1;
    }
    return 0;
}

int config_parse(config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->action = CONFIG_SERVE;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set_option(cfg, &options[i], options[i].def, options[i].flag, err, errlen))
            return -1; /* a broken default is a bug; say so rather than start */
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *env = getenv(options[i].env);
        if (env && *env && set_option(cfg, &options[i], env, options[i].env, err, errlen))
            return -1;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            cfg->action = CONFIG_HELP;
            return 0;
        }
        if (!strcmp(arg, "--check")) {
            cfg->action = CONFIG_CHECK;
            continue;
        }
        if (!strcmp(arg, "--routes")) {
            cfg->action = CONFIG_ROUTES;
            continue;
        }
        if (!strcmp(arg, "--errors")) {
            cfg->action = CONFIG_ERRORS;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s'", arg);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_spec *o = NULL;
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (strlen(options[i].flag) == len && !strncmp(options[i].flag, name, len))
                o = &options[i];
        if (!o) {
            snprintf(err, errlen, "unknown option '%.*s' (see --help)", (int)len + 2, arg);
            return -1;
        }
        const char *value = eq                       ? eq + 1
                            : o->kind == OPT_SWITCH ? "1"
                            : a + 1 < argc          ? argv[++a]
                                                    : NULL;
        char where[64];
        snprintf(where, sizeof where, "--%s", o->flag);
        if (!value) {
            snprintf(err, errlen, "%s needs a value (%s)", where, o->metavar);
            return -1;
        }
        if (set_option(cfg, o, value, where, err, errlen))
            return -1;
    }
    if (cors_list_valid(cfg->cors_origins, err, errlen) ||
        cors_hosts_valid(cfg->allowed_hosts, err, errlen))
        return -1;
    if (outbound_allow_parse(cfg->outbound_allow, &cfg->outbound, err, errlen))
        return -1;
    snprintf(cfg->outbound.proxy, sizeof cfg->outbound.proxy, "%s", cfg->outbound_proxy);
    if (cfg->fetch_max_bytes == 0)
        cfg->fetch_max_bytes = cfg->max_body;
    if (cfg->webhook_secret_file[0] && read_secret(cfg, err, errlen))
        return -1;
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together; only %s is given",
                 cfg->tls_cert[0] ? "--tls-cert" : "--tls-key");
        return -1;
    }
    if (cfg->http_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->http_threads = n > 0 ? (int)n : 1;
    }
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)n : 1;
    }
    if (cfg->rate_burst == 0)
        cfg->rate_burst = cfg->rate_limit > 1 ? (int)ceil(cfg->rate_limit) : 1;
    if (cfg->max_client_work == 0)
        cfg->max_client_work = cfg->queue_size / 2 + cfg->workers;
    return 0;
}

void config_print_help(const char *prog)
{
    printf("usage: %s [OPTIONS]\n"
           "\n"
           "blindspotd keeps the model zoo in memory and serves inference (Open\n"
           "Inference Protocol v2) and adversarial attacks over HTTP/JSON.\n"
           "\n"
           "  --help       this text\n"
           "  --check      validate the settings, load the models and datasets, exit 0 or 1\n"
           "  --routes     print the served routes (METHOD /path) and exit\n"
           "  --errors     print every error code with its HTTP status and meaning, and exit\n"
           "\n"
           "A browser at the daemon's address gets the attack studio (/), the paper\n"
           "view (/paper) and the API rendered (/docs), all compiled into the binary;\n"
           "pages of other origins may call the API only when --cors-origins lists them.\n"
           "\n"
           "The API is described in api/openapi.yaml and docs/api.md; errors are\n"
           "{\"error\": {\"code\", \"message\"}} on /v1 and {\"error\": message, \"code\"}\n"
           "on /v2 (the Open Inference Protocol's shape).\n"
           "\n"
           "SIGHUP reads the models again without a restart: new files are loaded,\n"
           "removed ones dropped, changed ones replaced; work in flight finishes on\n"
           "the model it started with. A file that fails keeps its previous version.\n"
           "It also reads --tls-cert and --tls-key again (new connections get them).\n"
           "\n"
           "Every option also reads its environment variable; a flag wins over the\n"
           "variable, the variable over the default. Both --opt VALUE and --opt=VALUE.\n"
           "\n",
           prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_spec *o = &options[i];
        char left[64];
        snprintf(left, sizeof left, "--%s %s", o->flag, o->metavar);
        printf("  %-26s %s\n  %-26s env %s, default %s\n", left, o->help, "", o->env,
               o->kind == OPT_SWITCH ? (strcmp(o->def, "0") ? "on" : "off")
                                     : o->def[0] ? o->def : "none");
    }
}

int config_listen_addr(const config *cfg, struct sockaddr_storage *addr,
                       unsigned *addrlen, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    const char *s = cfg->listen;
    if (s[0] == '[') { /* [v6addr]:port */
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            goto bad;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            goto bad;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        goto bad;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--listen %s: %s", s, gai_strerror(rc));
        return -1;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *addrlen = (unsigned)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(err, errlen, "--listen wants HOST:PORT (or [IPv6]:PORT), got '%s'", s);
    return -1;
}

int config_addr_is_loopback(const struct sockaddr_storage *addr)
{
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}
