/* deadlines — the time limits of slow clients that activity does not
 * reset: a request's whole head (--header-timeout, counted from the
 * connection's opening or from the previous answer) and its whole body
 * (--body-timeout, counted from the end of its head). libmicrohttpd has only
 * an idle timeout, which every byte resets, so one byte every few seconds
 * would hold a connection for ever.
 *
 * Each connection has an entry; a thread looks at them four times a second
 * and ends those whose deadline passed: a 408 request_timeout answer is
 * written first when the client is waiting for one (its request line is in,
 * or its body is arriving) and the connection is plain HTTP (inside TLS the
 * bytes would break the record stream), then the socket is shut down, so
 * that libmicrohttpd sees the end of the connection and closes it. Nothing
 * of libmicrohttpd is touched here: http.c reports each connection's phase,
 * and nothing is written once an answer of the daemon's own may be on its
 * way (the entry is then busy: no deadline). */
#ifndef BS_SERVER_DEADLINES_H
#define BS_SERVER_DEADLINES_H

typedef struct deadlines deadlines;
typedef struct deadline_conn deadline_conn;

/* Told of each connection ended: the client's address and the phase
 * ("head" or "body"). Called on the watching thread. */
typedef void (*deadlines_log_fn)(const char *client, const char *phase);

/* Starts the watching thread. tls: never write a 408. NULL when the thread
 * or memory cannot be had. */
deadlines *deadlines_start(double header_timeout, double body_timeout, int tls,
                           deadlines_log_fn on_timeout);
/* Stops the thread and frees what is left (call after the connections
 * are closed). */
void deadlines_stop(deadlines *d);

/* A new connection on socket fd, whose addr (for the log) is its client's
 * address: its head's deadline starts now. NULL when out of memory (the
 * connection is then not watched). */
deadline_conn *deadlines_add(deadlines *d, int fd, const char *addr);
/* The connection closed: the entry is freed; fd is not touched after. */
void deadlines_remove(deadlines *d, deadline_conn *c);

/* The phases, as http.c sees them. Each returns -1 when the connection was
 * already ended for its deadline (refuse to go on), else 0. */
int deadlines_request_line(deadlines *d, deadline_conn *c); /* a 408 may be written now */
int deadlines_body(deadlines *d, deadline_conn *c);         /* head in, body on its way */
int deadlines_busy(deadlines *d, deadline_conn *c);         /* whole request in: no deadline */
void deadlines_idle(deadlines *d, deadline_conn *c);        /* answered: the next head's turn */
int deadlines_alive(deadlines *d, deadline_conn *c);        /* the phase goes on */

#endif
