/* fuzz_multipart — multipart/form-data bodies through the daemon's whole
 * HTTP path (server/http.c): libmicrohttpd reads the request from a
 * socket, its post processor splits the body into parts, on_form_data
 * keeps them, and the handler of POST /v1/models/tiny/predict or
 * POST /v1/attacks reads them; the work runs on a pool of one worker.
 *
 * The input's first byte picks the endpoint, the rest is the body, sent
 * with the boundary "fuzzb" (tests/fuzz/multipart.dict holds it). The
 * daemon holds one model, "tiny" (flatten, linear 4 -> 2 on (1,2,2)
 * inputs). Promise checked: every request is answered (a status line, a
 * whole body; three tries), and an error answer is the /v1 error document. */
#include "tests/fuzz/fuzz_server.h"

#include "server/http.h"
#include "server/pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static server srv;
static config cfg;
static int port;

static const char *const paths[] = {"/v1/models/tiny/predict", "/v1/attacks"};

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[256];
    char *args[] = {"fuzz_multipart", "--listen", "127.0.0.1:0", "--http-threads", "1",
                    "--workers", "1", NULL};
    PROMISE(config_parse(&cfg, 7, args, err, sizeof err) == 0, "the configuration: %s", err);
    signal(SIGPIPE, SIG_IGN);
    srv.cfg = &cfg;
    srv.reg.current = fuzz_tiny_server(&srv);
    srv.pool = pool_new(1, 1, 8, NULL);
    PROMISE(srv.pool != NULL, "the pool");
    http_server *h = http_start(&srv, err, sizeof err);
    PROMISE(h != NULL, "the server: %s", err);
    port = http_port(h);
    return 0;
}

/* Sends the request, reads the answer to the end (the server closes the
 * connection); returns its length in buf, -1 when the connection failed. */
static long exchange(const char *head, size_t hlen, const uint8_t *body, size_t blen, char *buf,
                     size_t size)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* Closed with a reset, a connection leaves no TIME_WAIT behind: at
     * thousands a second, those would take every local port. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        PROMISE(fd >= 0, "socket: %s", strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            fd = -1;
            usleep(10000);
        }
    }
    PROMISE(fd >= 0, "connect: %s", strerror(errno));
    /* the server may answer (and close) before the whole body is sent */
    if (send(fd, head, hlen, 0) == (ssize_t)hlen && blen)
        (void)send(fd, body, blen, 0);
    size_t got = 0;
    ssize_t n;
    while (got < size - 1 && (n = recv(fd, buf + got, size - 1 - got, 0)) > 0)
        got += (size_t)n;
    close(fd);
    buf[got] = '\0';
    return (long)got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (len < 1)
        return 0;
    const char *path = paths[data[0] % 2];
    char head[512];
    int hlen = snprintf(head, sizeof head,
                        "POST %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n"
                        "Content-Type: multipart/form-data; boundary=fuzzb\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        path, len - 1);
    static char answer[1 << 20];
    /* At thousands of connections a second the server may close one
     * unread while it frees the last ones (its connection limit): a body
     * fails only when three tries get no answer. */
    long got = 0;
    for (int tries = 0; got <= 0 && tries < 3; tries++) {
        if (tries)
            usleep(20000);
        got = exchange(head, (size_t)hlen, data + 1, len - 1, answer, sizeof answer);
    }
    int status = 0;
    PROMISE(got > 0 && sscanf(answer, "HTTP/1.1 %d ", &status) == 1 && status >= 200 &&
                status < 600,
            "%s: no answer (%ld bytes): %.200s", path, got, answer);
    char *body = strstr(answer, "\r\n\r\n");
    PROMISE(body != NULL, "%s: an answer without its end of headers", path);
    if (status >= 400) {
        json_t *doc = json_loads(body + 4, 0, NULL);
        json_t *error = json_object_get(doc, "error");
        PROMISE(json_is_string(json_object_get(error, "code")) &&
                    json_is_string(json_object_get(error, "message")),
                "%s: a %d answer not in the /v1 shape: %.300s", path, status, body + 4);
        json_decref(doc);
    }
    return 0;
}
