/* testhttp — blindspotd for the integration tests: start the daemon with
 * the zoo on a free loopback port, drive it with libcurl, stop it with
 * SIGTERM, and check answers (statuses, error documents, headers). Tests
 * run from the repository root with data/ and models/ prepared. */
#ifndef BS_TESTHTTP_H
#define BS_TESTHTTP_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct daemon_proc {
    pid_t pid;
    int port;
    char *dir;      /* scratch folder holding the log */
    char log[512];  /* the daemon's stderr */
} daemon_proc;

typedef struct reply {
    long status;
    char *body;
    size_t len;
    char *headers;
    size_t hlen;
    json_t *json; /* the body parsed, when it is JSON */
    int curl_error;
} reply;

typedef struct req_opts {
    const char *method;         /* default GET, or POST with a body */
    const char *const *headers; /* NULL-terminated */
    const char *body;
    size_t len;
    int chunked;                /* send the body with Transfer-Encoding: chunked */
    curl_mime *(*form)(CURL *); /* multipart body */
    long timeout_ms;            /* default 30 s */
    const char *interface;      /* the local address to send from ("127.0.0.2": another
                                   client of the daemon); NULL: 127.0.0.1 */
} req_opts;

/* When set, request_on (and so wait_ready and daemon_start) speaks HTTPS to
 * 127.0.0.1 and trusts this PEM file's certificates. */
extern const char *request_cainfo;

/* Content-Type: application/json, as a req_opts.headers list. */
extern const char *json_body_type[];

/* Monotonic seconds. */
double now_s(void);
/* A loopback port nobody listens on now. */
int free_port(void);
/* One request to 127.0.0.1:port; r holds status, headers, body and the
 * body parsed as JSON when it is. */
void request_on(int port, const char *path, const req_opts *o, reply *r);
void reply_free(reply *r);
/* The value of a response header (the last one of that name) copied into
 * buf, or NULL. */
const char *header_of(const reply *r, const char *name, char *buf, size_t size);
/* Waits up to seconds for /v2/health/ready to answer 200; -1 when the
 * process exited or time ran out. */
int wait_ready(int port, pid_t pid, double seconds);
/* Starts build/blindspotd with the zoo, 2 workers, a state file of its own
 * in d->dir (a later --state in extra overrides it) and extra flags
 * (NULL-terminated), its stderr in d->log; 0 once it is ready. */
int daemon_start(daemon_proc *d, const char *const *extra);
/* The same listening on host (an IPv4 address) rather than 127.0.0.1. */
int daemon_start_on(daemon_proc *d, const char *host, const char *const *extra);
/* SIGTERM, then the exit status (or -1 when it did not exit in time). */
int daemon_stop(daemon_proc *d);
/* Removes the daemon's scratch folder. */
void daemon_cleanup(daemon_proc *d);
/* The daemon of a cmocka group that needs no extra flags: daemon_group_setup
 * initialises libcurl, ignores SIGPIPE and starts daemon_of_group
 * (daemon_start; -1 with where its log is when it does not become ready);
 * daemon_group_teardown stops it (0 when it exited 0), cleans up and releases
 * libcurl. */
extern daemon_proc daemon_of_group;
int daemon_group_setup(void **state);
int daemon_group_teardown(void **state);
/* The value of the sample series (name and labels exactly as written) in
 * a Prometheus exposition; NAN when it has none. */
double metric_value(const char *text, const char *series);
/* Asserts (cmocka) that promtool (Debian's prometheus package, installed
 * by make deps) accepts the exposition text (len bytes). */
void assert_promtool_accepts(const char *text, size_t len);
/* Asserts (cmocka) an error answer: the status, the error document with
 * this code and a message, and an X-Request-Id. */
void assert_error(const reply *r, long status, const char *code);

#endif
