/* config — the daemon's settings: one table of options, each a flag with an
 * environment twin and a default, read in the order default < environment <
 * flag. --help is printed from the same table, so the flags, the variables
 * and the defaults are written down once (config.c). */
#ifndef BS_SERVER_CONFIG_H
#define BS_SERVER_CONFIG_H

#include "server/outbound.h"

#include <stddef.h>

#define CONFIG_PATH_LEN 1024

typedef enum config_action {
    CONFIG_SERVE,  /* run the daemon */
    CONFIG_CHECK,  /* --check: load everything, report, exit 0 or 1 */
    CONFIG_ROUTES, /* --routes: print the route table and exit */
    CONFIG_ERRORS, /* --errors: print the error codes and exit */
    CONFIG_HELP,   /* --help */
} config_action;

typedef struct config {
    char listen[256];              /* host:port as given */
    char models_dir[CONFIG_PATH_LEN]; /* a folder (its *.safetensors) or one model file */
    char model_name[64];           /* the one model's name; "" for file names */
    char data_dir[CONFIG_PATH_LEN];   /* datasets (mnist, fashion-mnist) */
    int workers;                   /* compute threads; 0 in the table = one per core */
    int http_threads;              /* libmicrohttpd's polling threads; 0 = one per core */
    int queue_size;                /* jobs waiting for a worker before 503 */
    int attack_batch;              /* rows of lbfgs attacks one worker runs in lockstep */
    int attack_threads;            /* threads (the worker's counted) of its model evaluations */
    double timeout;                /* seconds a job may take, from arrival */
    size_t max_body;               /* bytes of request body */
    double drain_timeout;          /* seconds in-flight jobs get at shutdown */
    int max_connections;           /* simultaneous client connections */
    int idle_timeout;              /* seconds before an idle connection closes */
    size_t max_pixels;             /* largest decoded image (width*height) */
    double job_timeout;            /* seconds an asynchronous job may take, from creation */
    double job_ttl;                /* seconds a finished job is kept */
    int max_jobs;                  /* jobs in the table, finished or not, before 503 */
    char state_path[CONFIG_PATH_LEN]; /* the job store's SQLite file; "none": in memory */
    double rate_limit;             /* compute requests per second per client; 0: no limit */
    int rate_burst;                /* requests a client may send at once (0 in the table:
                                      the rate's one second, at least 1) */
    int max_client_jobs;           /* a client's queued and running async jobs before 429 */
    int max_client_work;           /* a client's compute requests in flight before 429 (0 in
                                      the table: half --queue-size plus --workers) */
    int max_clients;               /* clients whose quotas are kept; idle ones are forgotten */
    char cors_origins[1024];       /* origins browsers may call from; "*": any; "": none */
    char auth_tokens[CONFIG_PATH_LEN]; /* the tokens file (auth.h); "": no authentication */
    int insecure_no_auth;          /* 1: may listen off loopback without tokens */
    int metrics_auth;              /* 1: /metrics needs the admin scope */
    char outbound_allow[1024];     /* CIDRs the outbound guard lets through (outbound.h) */
    char outbound_proxy[256];      /* the proxy of outbound requests; "": none */
    size_t fetch_max_bytes;        /* largest image fetched by URL; 0 in the table = max_body */
    double fetch_timeout;          /* seconds an image fetch may take */
    char webhook_secret[256];      /* the key of X-Blindspot-Signature; "": unsigned */
    char webhook_secret_file[CONFIG_PATH_LEN]; /* or the first line of this file */
    int webhook_tries;             /* deliveries tried before a callback has failed */
    double webhook_backoff;        /* seconds before the first retry, doubled each time */
    outbound_policy outbound;      /* outbound_allow and outbound_proxy, parsed */
    char allowed_hosts[1024];      /* Host header names; "": loopback names on loopback */
    char tls_cert[CONFIG_PATH_LEN]; /* PEM certificate chain; "": plain HTTP */
    char tls_key[CONFIG_PATH_LEN];  /* its PEM private key */
    double header_timeout;         /* seconds for a request's whole head */
    double body_timeout;           /* seconds for a request's whole body, from its head */
    int max_connections_per_ip;    /* simultaneous connections of one client address */
    config_action action;
} config;

/* Fills cfg from the table's defaults, the environment and argv. Returns 0,
 * or -1 with a message in err (naming the flag or variable and the value)
 * for an unknown flag or a bad value. */
int config_parse(config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Prints the usage text: every flag, its variable and its default. */
void config_print_help(const char *prog);

/* The address to listen on. Returns 0, or -1 with a message. */
struct sockaddr_storage;
int config_listen_addr(const config *cfg, struct sockaddr_storage *addr,
                       unsigned *addrlen, char *err, size_t errlen);

/* Whether addr is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x). */
int config_addr_is_loopback(const struct sockaddr_storage *addr);

#endif
