/* test_transport — what blindspotd does below the API: HTTPS with a
 * certificate made here with openssl (the handshake, plain HTTP refused on
 * the TLS port, a key that is not the certificate's refused at start, a new
 * pair served after SIGHUP, the CLI over https); the Host check against DNS
 * rebinding (loopback names only on a loopback address, --allowed-hosts);
 * slow clients (a head or a body trickled a byte at a time is cut at its
 * deadline while others are served, the per-address connection cap); and
 * the bytes libmicrohttpd would otherwise judge alone (an escaped NUL in a
 * path, a long URI, a garbage request line, a malformed chunked body),
 * each sent on a raw socket. */
#define _GNU_SOURCE /* memmem */
#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- raw sockets ------------------------------------------------------- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Everything the server sends on fd until it closes or seconds pass;
 * *closed says whether it closed. Caller frees. */
static char *read_until_close(int fd, double seconds, int *closed)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    double until = now_s() + seconds;
    *closed = 0;
    while (now_s() < until && len < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            *closed = 1;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Sends request on a new connection and returns what comes back before the
 * server closes it (or 3 s pass). */
static char *exchange(int port, const char *request, size_t len)
{
    int fd = connect_to(port);
    assert_int_equal(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len);
    int closed;
    char *out = read_until_close(fd, 3, &closed);
    close(fd);
    return out;
}

/* The status of a raw answer, and its body parsed. */
static int raw_status(const char *answer)
{
    int status = 0;
    return sscanf(answer, "HTTP/1.1 %d", &status) == 1 ? status : 0;
}

static void assert_raw_error(const char *answer, int status, const char *code)
{
    if (raw_status(answer) != status)
        fail_msg("expected %d, got: %.300s", status, answer);
    const char *body = strstr(answer, "\r\n\r\n");
    assert_non_null(body);
    json_t *doc = json_loads(body + 4, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(doc);
    json_t *e = json_object_get(doc, "error");
    const char *got = json_is_string(e) ? json_string_value(json_object_get(doc, "code"))
                                        : json_string_value(json_object_get(e, "code"));
    assert_non_null(got);
    assert_string_equal(got, code);
    json_decref(doc);
}

/* ---- paths and libmicrohttpd's own errors ------------------------------ */

static void test_control_characters_in_paths(void **state)
{
    (void)state;
    int port = daemon_of_group.port;
    reply r;
    request_on(port, "/v1/models/cnn%00.safetensors", NULL, &r);
    assert_error(&r, 400, "invalid_path"); /* not the model cnn */
    reply_free(&r);
    request_on(port, "/v1/models/cnn%0a", NULL, &r);
    assert_error(&r, 400, "invalid_path");
    reply_free(&r);
    request_on(port, "/v2/models/cnn%7F", NULL, &r);
    assert_error(&r, 400, "invalid_path");
    reply_free(&r);
    request_on(port, "/v1/models/cnn", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    /* an escape in the query is the value's business, not the path's */
    request_on(port, "/v1/models/cnn?x=%00", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void test_long_uri(void **state)
{
    (void)state;
    int port = daemon_of_group.port;
    /* over the daemon's 8 KiB: its own 414 */
    size_t n = 9000;
    char *req = malloc(n + 100);
    assert_non_null(req);
    int k = sprintf(req, "GET /");
    memset(req + k, 'a', n);
    k += (int)n;
    k += sprintf(req + k, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    char *out = exchange(port, req, (size_t)k);
    assert_raw_error(out, 414, "uri_too_long");
    free(out);
    free(req);
    /* past libmicrohttpd's buffer (32 KiB a connection): its own 414, not
     * JSON (docs/api.md) */
    n = 40000;
    req = malloc(n + 100);
    assert_non_null(req);
    k = sprintf(req, "GET /");
    memset(req + k, 'a', n);
    k += (int)n;
    k += sprintf(req + k, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    out = exchange(port, req, (size_t)k);
    assert_int_equal(raw_status(out), 414);
    free(out);
    free(req);
}

static void test_garbage_and_malformed_chunks(void **state)
{
    (void)state;
    int port = daemon_of_group.port;
    /* a request line without spaces: libmicrohttpd closes without a word */
    char *out = exchange(port, "GARBAGE\r\n\r\n", 11);
    assert_string_equal(out, "");
    free(out);
    /* a request line it cannot parse otherwise: its own 400 */
    out = exchange(port, "\x01\x02 junk\r\n\r\n", 11);
    assert_int_equal(raw_status(out), 400);
    free(out);
    /* a chunk size that is not hex, or a chunk longer than its size, on a
     * served path: libmicrohttpd's own 400 (HTML) */
    const char *chunked = "POST /v2/models/fc100-100-10/infer HTTP/1.1\r\nHost: localhost\r\n"
                          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "ZZ\r\nabc\r\n0\r\n\r\n";
    out = exchange(port, chunked, strlen(chunked));
    assert_int_equal(raw_status(out), 400);
    free(out);
    const char *overlong = "POST /v2/models/fc100-100-10/infer HTTP/1.1\r\nHost: localhost\r\n"
                           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n5\r\nabcdefghij\r\n0\r\n\r\n";
    out = exchange(port, overlong, strlen(overlong));
    assert_int_equal(raw_status(out), 400);
    free(out);
    /* and the daemon serves on */
    reply r;
    request_on(port, "/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

/* ---- the Host check ---------------------------------------------------- */

static long get_with_host(int port, const char *host_header, const char *origin)
{
    char origin_header[200];
    snprintf(origin_header, sizeof origin_header, "Origin: %s", origin ? origin : "");
    const char *headers[] = {host_header, origin ? origin_header : NULL, NULL};
    req_opts o = {.headers = headers};
    reply r;
    request_on(port, "/v1/models", &o, &r);
    long status = r.status;
    if (status == 403)
        assert_error(&r, 403, "host_not_allowed");
    reply_free(&r);
    return status;
}

static void test_loopback_host_names_only(void **state)
{
    (void)state;
    int port = daemon_of_group.port;
    char h[80];
    assert_int_equal(get_with_host(port, "Host: evil.example", NULL), 403);
    snprintf(h, sizeof h, "Host: evil.example:%d", port);
    assert_int_equal(get_with_host(port, h, NULL), 403);
    /* DNS rebinding: the page's origin is its own host, which the Host
     * header then names too; without the check it would pass as own */
    char origin[80];
    snprintf(origin, sizeof origin, "http://evil.example:%d", port);
    assert_int_equal(get_with_host(port, h, origin), 403);
    assert_int_equal(get_with_host(port, "Host: 127.0.0.1.evil.example", NULL), 403);
    assert_int_equal(get_with_host(port, "Host: localhost.", NULL), 403);
    const char *own[] = {"localhost", "LocalHost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        snprintf(h, sizeof h, "Host: %s", own[i]);
        assert_int_equal(get_with_host(port, h, NULL), 200);
        snprintf(h, sizeof h, "Host: %s:%d", own[i], port);
        assert_int_equal(get_with_host(port, h, NULL), 200);
    }
    /* a request without Host is no browser's: HTTP/1.0 */
    char *out = exchange(port, "GET /v2/health/live HTTP/1.0\r\n\r\n", 32);
    assert_non_null(strstr(out, " 200 "));
    free(out);
}

static void test_allowed_hosts_list(void **state)
{
    (void)state;
    daemon_proc d;
    const char *flags[] = {"--allowed-hosts", "api.example,Other.Example:9999,127.0.0.1",
                           NULL};
    assert_int_equal(daemon_start(&d, flags), 0);
    char h[80];
    snprintf(h, sizeof h, "Host: api.example:%d", d.port);
    assert_int_equal(get_with_host(d.port, h, NULL), 200);
    assert_int_equal(get_with_host(d.port, "Host: API.example", NULL), 200);
    assert_int_equal(get_with_host(d.port, "Host: other.example:9999", NULL), 200);
    assert_int_equal(get_with_host(d.port, "Host: other.example:9998", NULL), 403);
    /* the list replaces the loopback names */
    assert_int_equal(get_with_host(d.port, "Host: localhost", NULL), 403);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);

    const char *star[] = {"--allowed-hosts", "*", NULL};
    assert_int_equal(daemon_start(&d, star), 0);
    assert_int_equal(get_with_host(d.port, "Host: anything.example", NULL), 200);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);

    char *out = NULL, cmd[600];
    snprintf(cmd, sizeof cmd, "%s --allowed-hosts 'a.example,http://b.example' --check 2>&1",
             tu_bin("blindspotd"));
    int rc = tu_run(cmd, &out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--allowed-hosts"));
    free(out);
}

/* ---- slow clients ------------------------------------------------------ */

#define SLOW_CLIENTS 50

static void test_slow_heads_are_cut_while_others_are_served(void **state)
{
    (void)state;
    daemon_proc d;
    const char *flags[] = {"--header-timeout", "4", NULL};
    assert_int_equal(daemon_start(&d, flags), 0);
    static const char line[] = "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    int fds[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = connect_to(d.port);
        assert_int_equal(send(fds[i], line, strlen(line), MSG_NOSIGNAL), (ssize_t)strlen(line));
    }
    /* then one byte of a header every 2 s on each (every byte would reset
     * an idle timer), and meanwhile a normal request every 0.5 s */
    static const char head[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    double start = now_s(), next_byte = start;
    size_t sent = 0;
    int served = 0, asked = 0;
    double slowest = 0;
    while (now_s() < start + 3.5) {
        if (now_s() >= next_byte) {
            for (int i = 0; i < SLOW_CLIENTS; i++)
                (void)send(fds[i], head + sent, 1, MSG_NOSIGNAL);
            sent++;
            next_byte += 2;
        }
        double t0 = now_s();
        reply r;
        req_opts o = {.timeout_ms = 1000};
        request_on(d.port, "/v2/health/ready", &o, &r);
        asked++;
        served += r.status == 200;
        if (now_s() - t0 > slowest)
            slowest = now_s() - t0;
        reply_free(&r);
        usleep(500000);
    }
    assert_int_equal(served, asked);
    assert_true(slowest < 1.0);
    /* past the deadline (4 s and the watcher's quarter second), every one
     * of them is closed, however recently it sent a byte */
    while (now_s() < start + 3.7) {
        for (int i = 0; i < SLOW_CLIENTS; i++)
            (void)send(fds[i], head + sent, 1, MSG_NOSIGNAL);
        sent++;
        usleep(100000);
    }
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        int closed;
        char *out = read_until_close(fds[i], 2, &closed);
        assert_true(closed);
        /* the request line was in: a 408 went out first */
        assert_raw_error(out, 408, "request_timeout");
        free(out);
        close(fds[i]);
    }
    /* a connection that never sent its request line is closed without a word */
    int quiet = connect_to(d.port);
    int closed;
    double t0 = now_s();
    char *out = read_until_close(quiet, 8, &closed);
    assert_true(closed);
    assert_string_equal(out, "");
    assert_true(now_s() - t0 < 5.5);
    free(out);
    close(quiet);
    size_t log_len;
    char *log = (char *)tu_read_file(d.log, &log_len);
    assert_non_null(log);
    assert_non_null(strstr(log, "timeout client=127.0.0.1 phase=head closed=1"));
    free(log);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

/* The probe: slow heads on every one of --max-connections. Normal
 * requests cannot get in then, but only until the head deadline. */
static void test_full_house_of_slow_heads_empties(void **state)
{
    (void)state;
    daemon_proc d;
    const char *flags[] = {"--max-connections", "20", "--header-timeout", "3", NULL};
    assert_int_equal(daemon_start(&d, flags), 0);
    static const char line[] = "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nX-Slow: a";
    int fds[20];
    for (int i = 0; i < 20; i++) {
        fds[i] = connect_to(d.port);
        assert_int_equal(send(fds[i], line, strlen(line), MSG_NOSIGNAL), (ssize_t)strlen(line));
    }
    usleep(500000); /* all accepted: the house is full */
    double start = now_s(), answered = 0;
    while (!answered && now_s() < start + 10) {
        for (int i = 0; i < 20; i++)
            (void)send(fds[i], "a", 1, MSG_NOSIGNAL); /* activity: the idle timer restarts */
        reply r;
        req_opts o = {.timeout_ms = 500};
        request_on(d.port, "/v2/health/live", &o, &r);
        if (r.status == 200)
            answered = now_s() - start;
        reply_free(&r);
        usleep(200000);
    }
    /* shut out until the slow heads' deadline (3 s from their opening, half
     * a second before start), then served */
    if (!(answered > 1.5 && answered < 3 + 1.5))
        fail_msg("first answer after %.2f s", answered);
    for (int i = 0; i < 20; i++)
        close(fds[i]);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

static void test_slow_body_gets_408(void **state)
{
    (void)state;
    daemon_proc d;
    const char *flags[] = {"--body-timeout", "1.5", NULL};
    assert_int_equal(daemon_start(&d, flags), 0);
    static const char head[] = "POST /v2/models/fc100-100-10/infer HTTP/1.1\r\n"
                               "Host: localhost\r\nContent-Type: application/json\r\n"
                               "Content-Length: 100\r\n\r\n";
    int fd = connect_to(d.port);
    assert_int_equal(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    double start = now_s();
    /* a byte every 0.3 s: activity, yet the whole body's deadline holds */
    for (int i = 0; i < 8; i++) {
        (void)send(fd, " ", 1, MSG_NOSIGNAL);
        usleep(300000);
    }
    int closed;
    char *out = read_until_close(fd, 3, &closed);
    assert_true(closed);
    assert_true(now_s() - start < 4.5);
    assert_raw_error(out, 408, "request_timeout");
    free(out);
    close(fd);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

static void test_connections_per_address(void **state)
{
    (void)state;
    daemon_proc d;
    const char *flags[] = {"--max-connections-per-ip", "4", NULL};
    assert_int_equal(daemon_start(&d, flags), 0);
    /* four connections, each known to be accepted (answered, kept alive) */
    static const char live[] = "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_to(d.port);
        assert_int_equal(send(fds[i], live, strlen(live), MSG_NOSIGNAL), (ssize_t)strlen(live));
        char buf[512];
        size_t got = 0;
        while (!memmem(buf, got, "true}", 5) && got < sizeof buf) {
            ssize_t n = recv(fds[i], buf + got, sizeof buf - got, 0);
            assert_true(n > 0);
            got += (size_t)n;
        }
    }
    reply r;
    req_opts o = {.timeout_ms = 2000};
    request_on(d.port, "/v2/health/live", &o, &r);
    assert_int_not_equal(r.status, 200); /* closed at once */
    reply_free(&r);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    usleep(300000);
    request_on(d.port, "/v2/health/live", &o, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
}

/* ---- TLS --------------------------------------------------------------- */

/* A self-signed certificate for 127.0.0.1 and localhost and its key in dir
 * as NAME.crt and NAME.key. */
static void make_cert(const char *dir, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s/%s.key "
             "-out %s/%s.crt 2>/dev/null",
             dir, name, dir, name);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

static void test_tls(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    make_cert(dir, "one");
    make_cert(dir, "two");
    char cert[600], key[600], ca_one[600], ca_two[600], other_key[600];
    snprintf(cert, sizeof cert, "%s/served.crt", dir);
    snprintf(key, sizeof key, "%s/served.key", dir);
    snprintf(ca_one, sizeof ca_one, "%s/one.crt", dir);
    snprintf(ca_two, sizeof ca_two, "%s/two.crt", dir);
    snprintf(other_key, sizeof other_key, "%s/two.key", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp %s/one.crt %s && cp %s/one.key %s", dir, cert, dir, key);
    assert_int_equal(tu_run(cmd, NULL), 0);

    /* wrong files are refused at start, with a message naming them */
    const char *cases[][2] = {{cert, other_key}, {cert, "/nonexistent.key"}, {key, key}};
    for (size_t i = 0; i < 3; i++) {
        char *out = NULL;
        snprintf(cmd, sizeof cmd, "%s --listen 127.0.0.1:0 --state none --tls-cert %s "
                 "--tls-key %s 2>&1", tu_bin("blindspotd"), cases[i][0], cases[i][1]);
        assert_int_equal(tu_run(cmd, &out), 1);
        assert_non_null(strstr(out, "--tls-"));
        free(out);
    }
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --tls-key x.pem --check 2>&1", tu_bin("blindspotd"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--tls-cert and --tls-key go together"));
    free(out);

    daemon_proc d;
    const char *flags[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    request_cainfo = ca_one;
    int started = daemon_start(&d, flags); /* readiness asked over https */
    assert_int_equal(started, 0);
    reply r;
    request_on(d.port, "/v1/models/cnn", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    /* another CA: the handshake fails */
    request_cainfo = ca_two;
    request_on(d.port, "/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_not_equal(r.curl_error, 0);
    reply_free(&r);
    /* plain HTTP on the TLS port gets no answer */
    request_cainfo = NULL;
    req_opts o = {.timeout_ms = 3000};
    request_on(d.port, "/v2/health/live", &o, &r);
    assert_int_equal(r.status, 0);
    reply_free(&r);

    /* the CLI over https */
    snprintf(cmd, sizeof cmd, "%s --cacert %s health https://127.0.0.1:%d 2>&1",
             tu_bin("blindspot"), ca_one, d.port);
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "%s --cacert %s health https://127.0.0.1:%d 2>&1",
             tu_bin("blindspot"), ca_two, d.port);
    assert_int_not_equal(tu_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "CURL_CA_BUNDLE=%s %s --server https://127.0.0.1:%d info cnn "
             "--json >/dev/null 2>&1", ca_one, tu_bin("blindspot"), d.port);
    assert_int_equal(tu_run(cmd, NULL), 0);

    /* SIGHUP: the second pair is served to new handshakes */
    snprintf(cmd, sizeof cmd, "cp %s/two.crt %s && cp %s/two.key %s", dir, cert, dir, key);
    assert_int_equal(tu_run(cmd, NULL), 0);
    kill(d.pid, SIGHUP);
    request_cainfo = ca_two;
    long status = 0;
    for (int i = 0; i < 100 && status != 200; i++) {
        usleep(50000);
        request_on(d.port, "/v2/health/live", NULL, &r);
        status = r.status;
        reply_free(&r);
    }
    assert_int_equal(status, 200);
    request_cainfo = ca_one;
    request_on(d.port, "/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 0);
    reply_free(&r);
    /* a broken pair on SIGHUP keeps the last good one */
    snprintf(cmd, sizeof cmd, "cp %s/one.key %s", dir, key);
    assert_int_equal(tu_run(cmd, NULL), 0);
    kill(d.pid, SIGHUP);
    usleep(500000);
    request_cainfo = ca_two;
    request_on(d.port, "/v2/health/live", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    size_t log_len;
    char *log = (char *)tu_read_file(d.log, &log_len);
    assert_non_null(strstr(log, "TLS certificate kept: "));
    free(log);

    request_cainfo = ca_two;
    assert_int_equal(daemon_stop(&d), 0);
    request_cainfo = NULL;
    daemon_cleanup(&d);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_characters_in_paths),
        cmocka_unit_test(test_long_uri),
        cmocka_unit_test(test_garbage_and_malformed_chunks),
        cmocka_unit_test(test_loopback_host_names_only),
        cmocka_unit_test(test_allowed_hosts_list),
        cmocka_unit_test(test_slow_heads_are_cut_while_others_are_served),
        cmocka_unit_test(test_full_house_of_slow_heads_empties),
        cmocka_unit_test(test_slow_body_gets_408),
        cmocka_unit_test(test_connections_per_address),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, daemon_group_setup, daemon_group_teardown);
}
