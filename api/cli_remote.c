/* cli_remote — the command line as a client of the daemon: which daemon
 * (--server URL on a command, or before it, or $BLINDSPOT_SERVER), its
 * token (--token TOKEN before the command, or $BLINDSPOT_TOKEN), and the requests a command makes through
 * api/client.h. A command that runs remotely prints the daemon's document
 * with the printer of its local run, so both print the same; an error is
 * the server's message, or which URL could not be reached, and exit 1. */
#include "api/cli.h"

#include "api/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `blindspot --server URL COMMAND ...` */
static const char *global_server;

void cli_set_server(const char *url)
{
    global_server = url;
}

/* `blindspot --token TOKEN COMMAND ...` */
static const char *global_token;

void cli_set_token(const char *token)
{
    global_token = token;
}

const char *cli_token(void)
{
    if (global_token && *global_token)
        return global_token;
    const char *env = getenv("BLINDSPOT_TOKEN");
    return env && *env ? env : NULL;
}

const char *cli_server(const char *flag)
{
    if (flag && *flag)
        return flag;
    if (global_server && *global_server)
        return global_server;
    const char *env = getenv("BLINDSPOT_SERVER");
    return env && *env ? env : NULL;
}

/* A client of server with the token of --token or the environment; 0 or
 * -1 after a message. */
static int client_open(const char *cmd, const char *server, bs_client *c)
{
    char err[BS_ERR_LEN];
    if (bs_client_init(c, server, cli_token(), err)) {
        bs_client_free(c);
        cli_fail(cmd, "%s", err);
        return -1;
    }
    return 0;
}

json_t *cli_remote_call(const char *cmd, const char *server, const char *method,
                        const char *path, const char *content_type, const void *body,
                        size_t len)
{
    bs_client c;
    if (client_open(cmd, server, &c))
        return NULL;
    char err[BS_ERR_LEN];
    json_t *doc = bs_client_call(&c, method, path, content_type, body, len, NULL, err);
    bs_client_free(&c);
    if (!doc)
        cli_fail(cmd, "%s", err);
    return doc;
}

json_t *cli_remote_json(const char *cmd, const char *server, const char *method,
                        const char *path, json_t *body)
{
    /* 17 significant digits: the daemon reads back the very doubles */
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(body);
    if (body && !text) {
        cli_fail(cmd, "out of memory");
        return NULL;
    }
    json_t *doc = cli_remote_call(cmd, server, method, path, text ? "application/json" : NULL,
                                  text, text ? strlen(text) : 0);
    free(text);
    return doc;
}

json_t *cli_remote_job(const char *cmd, const char *server, const char *path, json_t *body,
                       cli_progress *progress)
{
    bs_client c;
    if (client_open(cmd, server, &c)) {
        json_decref(body);
        return NULL;
    }
    char err[BS_ERR_LEN];
    json_t *doc = bs_client_job(&c, path, body, progress ? cli_show_progress : NULL, progress,
                                err);
    json_decref(body);
    bs_client_free(&c);
    if (!doc)
        cli_fail(cmd, "%s", err);
    return doc;
}
