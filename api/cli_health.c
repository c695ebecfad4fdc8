/* cli_health — `blindspot health [URL]`: asks the daemon at URL whether it
 * is ready (GET /v2/health/ready) or live (--live: /v2/health/live) and
 * turns the answer into an exit status, for a container's HEALTHCHECK and
 * for scripts that wait for a daemon. The slim image has no curl or wget;
 * this is the project's own client (api/client.h) with a time limit. */
#include "api/cli.h"

#include "api/client.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The daemon asked when neither URL, --server nor $BLINDSPOT_SERVER names one. */
#define HEALTH_URL "http://127.0.0.1:8080"
/* Seconds the whole request may take, unless --timeout says otherwise. */
#define HEALTH_TIMEOUT 5

/* The URL of the daemon this machine runs by listen (BLINDSPOT_LISTEN,
 * HOST:PORT or [HOST]:PORT) in buf: a wildcard host is asked on the
 * loopback. HEALTH_URL without listen. A container that moves the daemon's
 * port with BLINDSPOT_LISTEN keeps a working HEALTHCHECK so; one that
 * serves HTTPS (BLINDSPOT_TLS_CERT) is asked over https, its certificate
 * trusted (it must name 127.0.0.1, or the listen host, then). */
static const char *listen_url(const char *listen, char *buf, size_t n)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon || !colon[1])
        return HEALTH_URL;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    int wildcard = !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") ||
                   !strcmp(host, "*");
    /* the daemon serves HTTPS with this certificate: trust it, unless
     * told which CAs to trust */
    const char *tls = getenv("BLINDSPOT_TLS_CERT");
    const char *ca = getenv("BLINDSPOT_CACERT");
    if (tls && *tls && (!ca || !*ca))
        setenv("BLINDSPOT_CACERT", tls, 1);
    snprintf(buf, n, "%s://%s:%s", tls && *tls ? "https" : "http", wildcard ? "127.0.0.1" : host,
             colon + 1);
    return buf;
}

static void health_usage(FILE *f)
{
    fprintf(f,
            "usage: blindspot health [URL] [--live] [--timeout S]\n"
            "\n"
            "Exit 0 when the daemon at URL answers GET /v2/health/ready with 200 (every\n"
            "model loaded), 1 otherwise with one line on stderr saying why:\n"
            "it cannot be reached (connection refused, no answer in time) or it answered\n"
            "another status (400: not ready yet). For a container's HEALTHCHECK and for\n"
            "scripts that wait for the daemon.\n"
            "\n"
            "  URL          the daemon (default $BLINDSPOT_SERVER, else the address of\n"
            "               $BLINDSPOT_LISTEN, the daemon's own, on the loopback when it\n"
            "               listens on every address; else %s)\n"
            "  --live       ask GET /v2/health/live instead: the process is up\n"
            "  --timeout S  seconds the request may take in all (default %d)\n"
            "\n"
            "Environment: BLINDSPOT_SERVER the daemon's URL; BLINDSPOT_LISTEN the daemon's\n"
            "HOST:PORT when there is no URL; BLINDSPOT_TOKEN a token sent as\n"
            "`Authorization: Bearer TOKEN`.\n",
            HEALTH_URL, HEALTH_TIMEOUT);
}

int cli_health(int argc, char **argv)
{
    enum { O_LIVE = 1000, O_TIMEOUT };
    static const struct option opts[] = {
        {"live", no_argument, 0, O_LIVE}, {"timeout", required_argument, 0, O_TIMEOUT},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int live = 0, c;
    float timeout = HEALTH_TIMEOUT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_LIVE: live = 1; break;
        case O_TIMEOUT:
            if (cli_parse_float("--timeout", optarg, 0.001, 3600, &timeout))
                return 2;
            break;
        case 'h': health_usage(stdout); return 0;
        default: health_usage(stderr); return 2;
        }
    }
    if (argc - optind > 1) {
        fputs("blindspot health: one URL at most\n\n", stderr);
        health_usage(stderr);
        return 2;
    }
    char own[300];
    const char *url = cli_server(optind < argc ? argv[optind] : NULL);
    if (!url)
        url = listen_url(getenv("BLINDSPOT_LISTEN"), own, sizeof own);
    const char *path = live ? "/v2/health/live" : "/v2/health/ready";
    const char *state = live ? "live" : "ready";
    char err[BS_ERR_LEN];
    bs_client client;
    if (bs_client_init(&client, url, cli_token(), err)) {
        bs_client_free(&client);
        return cli_fail("health", "%s", err);
    }
    client.timeout_ms = (long)(timeout * 1000);
    long status = 0;
    json_t *doc = bs_client_call(&client, "GET", path, NULL, NULL, 0, &status, err);
    bs_client_free(&client);
    json_decref(doc);
    if (status == 0)
        return cli_fail("health", "%s (--timeout %g s)", err, timeout);
    if (status != 200)
        return cli_fail("health", "%s%s answered %ld: not %s", client.url, path, status, state);
    if (!doc)
        return cli_fail("health", "%s", err);
    printf("%s: %s\n", client.url, state);
    return 0;
}
