/* testhttp — the daemon and libcurl helpers of the integration tests; see
 * testhttp.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <math.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *json_body_type[] = {"Content-Type: application/json", NULL};



double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A port nobody listens on now: bind port 0, read it back, close. */
int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}


static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    char **buf = ud;
    size_t *len = (size_t *)(buf + 1);
    char *nb = realloc(*buf, *len + size * n + 1);
    if (!nb)
        return 0;
    memcpy(nb + *len, p, size * n);
    *len += size * n;
    nb[*len] = '\0';
    *buf = nb;
    return size * n;
}

typedef struct upload {
    const char *data;
    size_t len, off;
} upload;

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    upload *u = ud;
    size_t k = size * n < u->len - u->off ? size * n : u->len - u->off;
    memcpy(buf, u->data + u->off, k);
    u->off += k;
    return k;
}


const char *request_cainfo;

void request_on(int port, const char *path, const req_opts *o, reply *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", request_cainfo ? "https" : "http", port,
             path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (request_cainfo)
        curl_easy_setopt(c, CURLOPT_CAINFO, request_cainfo);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o && o->timeout_ms ? o->timeout_ms : 30000L);
    if (o && o->interface)
        curl_easy_setopt(c, CURLOPT_INTERFACE, o->interface);
    struct curl_slist *hl = NULL;
    for (int i = 0; o && o->headers && o->headers[i]; i++)
        hl = curl_slist_append(hl, o->headers[i]);
    upload u = {0};
    curl_mime *mime = NULL;
    if (o && o->form) {
        mime = o->form(c);
        curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    } else if (o && o->chunked) {
        u = (upload){o->body, o->len, 0};
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &u);
    } else if (o && o->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->len);
    }
    if (o && o->method && !strcmp(o->method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (o && o->method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    r->curl_error = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_mime_free(mime);
    curl_easy_cleanup(c);
    if (r->body)
        r->json = json_loadb(r->body, r->len, 0, NULL);
}

void reply_free(reply *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* The value of a response header (the last one of that name), or NULL. */
const char *header_of(const reply *r, const char *name, char *buf, size_t size)
{
    const char *found = NULL;
    size_t n = strlen(name);
    for (const char *p = r->headers; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncasecmp(p, name, n) && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(buf, size, "%.*s", (int)len, v);
            found = buf;
        }
    }
    return found;
}

int wait_ready(int port, pid_t pid, double seconds)
{
    double until = now_s() + seconds;
    while (now_s() < until) {
        reply r;
        req_opts o = {.timeout_ms = 1000};
        request_on(port, "/v2/health/ready", &o, &r);
        long status = r.status;
        reply_free(&r);
        if (status == 200)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(20000);
    }
    return -1;
}

/* Starts build/blindspotd with the zoo and extra flags (NULL-terminated). */
int daemon_start(daemon_proc *d, const char *const *extra)
{
    return daemon_start_on(d, "127.0.0.1", extra);
}

int daemon_start_on(daemon_proc *d, const char *host, const char *const *extra)
{
    memset(d, 0, sizeof *d);
    d->dir = tu_tmpdir();
    d->port = free_port();
    snprintf(d->log, sizeof d->log, "%s/blindspotd.log", d->dir);
    char listen[64];
    snprintf(listen, sizeof listen, "%s:%d", host, d->port);
    char state[600];
    snprintf(state, sizeof state, "%s/state.sqlite", d->dir);
    const char *argv[32] = {tu_bin("blindspotd"), "--listen", listen, "--models", "models",
                            "--data", "data", "--workers", "2", "--state", state};
    int argc = 11;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    char bin[512];
    snprintf(bin, sizeof bin, "%s", tu_bin("blindspotd"));
    argv[0] = bin;
    d->pid = fork();
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return wait_ready(d->port, d->pid, 30);
}

/* SIGTERM, then the exit status (or -1 when it did not exit in time). */
int daemon_stop(daemon_proc *d)
{
    int status = -1;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 600; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        usleep(50000);
        status = -1;
    }
    if (status == -1) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    return status;
}

daemon_proc daemon_of_group;

int daemon_group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    if (daemon_start(&daemon_of_group, NULL)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", daemon_of_group.log);
        return -1;
    }
    return 0;
}

int daemon_group_teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&daemon_of_group);
    daemon_cleanup(&daemon_of_group);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

void daemon_cleanup(daemon_proc *d)
{
    tu_rmtree(d->dir);
    free(d->dir);
    d->dir = NULL;
}

/* Asserts an error answer: the status, a JSON error with this code and a
 * message (on /v1 {"error": {"code", "message"}}, on /v2 the Open Inference
 * Protocol's {"error": message, "code"}), and an X-Request-Id. */
void assert_error(const reply *r, long status, const char *code)
{
    char buf[128];
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    json_t *e = json_object_get(r->json, "error");
    assert_non_null(e);
    if (json_is_string(e)) {
        assert_string_equal(json_string_value(json_object_get(r->json, "code")), code);
        assert_true(json_string_length(e) > 5);
    } else {
        assert_string_equal(json_string_value(json_object_get(e, "code")), code);
        assert_true(json_string_length(json_object_get(e, "message")) > 5);
    }
    assert_non_null(header_of(r, "X-Request-Id", buf, sizeof buf));
    if (status == 503)
        assert_non_null(header_of(r, "Retry-After", buf, sizeof buf));
}

/* ---- happy paths ----------------------------------------------------------- */


double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

void assert_promtool_accepts(const char *text, size_t len)
{
    char *dir = tu_tmpdir(), path[600], cmd[700];
    snprintf(path, sizeof path, "%s/metrics.txt", dir);
    assert_int_equal(tu_write_file(path, text, len), 0);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    if (rc != 0)
        fail_msg("promtool check metrics exited %d: %s", rc, out ? out : "");
    free(out);
    tu_rmtree(dir);
    free(dir);
}
