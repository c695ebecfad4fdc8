/* client — the daemon's HTTP API for the command line, over libcurl: a
 * request to the base URL `--server` names, its JSON answer parsed, an
 * error answer (either shape: /v1's {"error": {"code", "message"}} or the
 * Open Inference Protocol's {"error": "message", "code"}) turned into the
 * server's own message, a connection that fails into a message naming the
 * URL; and an asynchronous job (POST answered 202) followed through GET
 * /v1/jobs/{id}?wait=S to its result. Nothing is printed here: progress reaches
 * the caller through a callback. A bearer token, when given, goes with
 * every request as `Authorization: Bearer TOKEN`. An https server is
 * checked against the system's CAs, or those of the PEM file named by
 * $BLINDSPOT_CACERT (else $CURL_CA_BUNDLE, as the curl tool reads it). */
#ifndef BS_CLIENT_H
#define BS_CLIENT_H

#include "core/error.h" /* BS_ERR_LEN */

#include <jansson.h>
#include <stddef.h>

/* Seconds one read of a running job waits for its end (GET
 * /v1/jobs/{id}?wait=S): the job's progress is read again this often. */
#define BS_CLIENT_WAIT 1

typedef struct bs_client {
    char url[1024];   /* the base URL, without a trailing '/' */
    char auth[1200];  /* "Authorization: Bearer TOKEN", or "" without a token */
    void *curl;       /* the libcurl handle, reused (keep-alive); owned */
    long timeout_ms;  /* a request's whole time limit (0: none, the default) */
    char cainfo[1024]; /* PEM file of the CAs an https server's certificate must chain to
                        * ($BLINDSPOT_CACERT, else $CURL_CA_BUNDLE); "": the system's */
} bs_client;

/* A client of the daemon at url ("http://127.0.0.1:8080", with or without
 * a path prefix) sending token (NULL or "": none). Returns 0, or -1 with a
 * message in err (char[BS_ERR_LEN]) for a URL that is not http(s) or when
 * libcurl cannot start. */
int bs_client_init(bs_client *c, const char *url, const char *token, char *err);
void bs_client_free(bs_client *c);

/* Sends method (GET, POST) to path (with its query) with a body of len
 * bytes and its media type (body NULL: none). Returns the answer's JSON
 * document when the status is 2xx, *status (may be NULL) the status. NULL
 * with a message in err: the server's message for an error answer
 * (*status its status), or why the URL could not be reached (*status 0). */
json_t *bs_client_call(bs_client *c, const char *method, const char *path,
                       const char *content_type, const void *body, size_t len, long *status,
                       char *err);

/* Progress of a job: done of total units of work (the job's own). */
typedef void (*bs_client_progress_fn)(void *ctx, int done, int total);

/* POSTs the JSON document body to path, which answers 202 with the job's
 * location, then reads the job, each read waiting up to BS_CLIENT_WAIT
 * seconds for its end, until it ends, calling progress (may be NULL)
 * whenever its progress moved past 0. Returns the
 * job's result document, also that of a job that failed with results so
 * far (an attack whose budget ran out: its "error" says so); NULL with a
 * message in err when the request failed, the job failed without a result
 * (the job's own error message) or it was cancelled. */
json_t *bs_client_job(bs_client *c, const char *path, const json_t *body,
                      bs_client_progress_fn progress, void *ctx, char *err);

#endif
