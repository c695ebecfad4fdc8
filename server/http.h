/* http — the HTTP server on libmicrohttpd, and the one place that owns a
 * request's life-cycle: per-request state, the body read under its cap
 * (or parsed as multipart/form-data), routing, the model set a request
 * holds (and an asynchronous job after it), handing work to the pool
 * with the connection suspended, resuming it with the answer, the
 * X-Request-Id header, the log line and the metrics of every request. */
#ifndef BS_SERVER_HTTP_H
#define BS_SERVER_HTTP_H

#include "server/handler.h"

typedef struct http_server http_server;

/* Starts listening on cfg->listen with an internal epoll (else poll)
 * thread. Returns NULL with a message in err. */
http_server *http_start(server *srv, char *err, size_t errlen);

/* The port actually bound (useful with --listen HOST:0). */
int http_port(http_server *h);

/* Stops accepting connections; requests on open connections are still
 * answered (with 503 once srv->draining is set). */
void http_quiesce(http_server *h);

/* SIGHUP: reads --tls-cert and --tls-key again; new handshakes get the new
 * pair. Returns 1 without TLS, 0 when reloaded, or -1 with a message (the
 * previous pair keeps serving). */
int http_reload_tls(http_server *h, char *err, size_t errlen);

/* Closes every connection and stops the threads. Call when no request is
 * suspended any more (after pool_drain). */
void http_stop(http_server *h);

#endif
