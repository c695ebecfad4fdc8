/* test_restart — jobs survive the daemon: a daemon with a state file is
 * killed (SIGKILL) with jobs queued, running, done and cancelled, and
 * started again on the same file; every acknowledged job is still there
 * and ends done, cancelled, or failed with a message that says the daemon
 * restarted and why; finished results are served byte for byte as before;
 * the ttl keeps counting across the restart; a second daemon cannot open
 * a file in use; a broken or unreachable file stops the start-up with a
 * clear message; a write that fails refuses the job (503) rather than
 * acknowledge it. Needs `make data models`. */
#define _GNU_SOURCE /* prlimit */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Milliseconds of work. */
static const char quick_body[] =
    "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3}";
/* The same with a budget of a second and a half. */
static const char short_budget_body[] =
    "{\"model\":\"fc10-1e-4\",\"image\":{\"dataset\":\"mnist\",\"index\":18},\"target\":3,"
    "\"timeout\":1.5}";
/* Runs until cancelled or a minute passes. */
static const char slow_body[] =
    "{\"model\":\"fc200-200-10\",\"image\":{\"dataset\":\"mnist\",\"index\":1},"
    "\"target\":\"all\",\"method\":\"adam-l1\",\"params\":{\"steps\":1000000},\"timeout\":60}";
static const char evaluation_body[] = "{\"models\":[\"fc10-1e-4\"],\"first\":20,\"n\":3}";

static reply sample_png; /* a digit as PNG, for the multipart job */

/* An attack as multipart/form-data with the image as a file. */
static curl_mime *attack_form(CURL *c)
{
    curl_mime *m = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(m);
    curl_mime_name(p, "model");
    curl_mime_data(p, "fc10-1e-4", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "target");
    curl_mime_data(p, "3", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "report");
    curl_mime_data(p, "cnn,fc10-1", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(m);
    curl_mime_name(p, "image");
    curl_mime_filename(p, "digit.png");
    curl_mime_type(p, "image/png");
    curl_mime_data(p, sample_png.body, sample_png.len);
    return m;
}

/* POSTs a job; its id goes to id (char[40]). */
static void submit(int port, const char *path, const char *body, char *id)
{
    reply r;
    req_opts o = {.headers = json_body_type, .body = body, .len = strlen(body)};
    request_on(port, path, &o, &r);
    if (r.status != 202)
        fail_msg("expected 202, got %ld: %s", r.status, r.body ? r.body : "");
    snprintf(id, 40, "%s", json_string_value(json_object_get(r.json, "id")));
    reply_free(&r);
}

/* GET /v1/jobs/{id}, waiting up to wait seconds for it to end. */
static void get_job(int port, const char *id, const char *wait, reply *r)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s?wait=%s", id, wait);
    req_opts o = {.timeout_ms = 60000};
    request_on(port, path, &o, r);
}

static const char *state_of(const reply *r)
{
    return json_string_value(json_object_get(r->json, "state"));
}

/* Waits until job id is in state want (up to 20 s). */
static void wait_state(int port, const char *id, const char *want)
{
    double until = now_s() + 20;
    for (;;) {
        reply r;
        get_job(port, id, "0", &r);
        int ok = r.status == 200 && !strcmp(state_of(&r), want);
        reply_free(&r);
        if (ok)
            return;
        if (now_s() > until)
            fail_msg("job %s did not become %s", id, want);
        usleep(20000);
    }
}

static void kill_hard(daemon_proc *d)
{
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
}

/* A models folder holding every model of models/ but one. */
static char *models_without(const char *left_out)
{
    char *dir = tu_tmpdir(), here[PATH_MAX];
    assert_non_null(realpath("models", here));
    DIR *dh = opendir(here);
    assert_non_null(dh);
    struct dirent *e;
    while ((e = readdir(dh))) {
        if (e->d_name[0] == '.' || !strncmp(e->d_name, left_out, strlen(left_out)))
            continue;
        char from[PATH_MAX * 2], to[PATH_MAX * 2];
        snprintf(from, sizeof from, "%s/%s", here, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        assert_int_equal(symlink(from, to), 0);
    }
    closedir(dh);
    return dir;
}

/* The error of a failed job: asserts its code and that it names the
 * restart. */
static void assert_restart_failure(const reply *r, const char *code)
{
    assert_string_equal(state_of(r), "failed");
    json_t *e = json_object_get(r->json, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    const char *m = json_string_value(json_object_get(e, "message"));
    assert_non_null(m);
    if (!strstr(m, "daemon restarted"))
        fail_msg("the message does not say the daemon restarted: %s", m);
}

/* The crash: SIGKILL with 35 acknowledged jobs in every state, then a
 * restart on the same file (without fc200-200-10, whose jobs cannot run
 * again). */
static void test_crash_and_restart(void **state)
{
    (void)state;
    daemon_proc a, b;
    /* 34 jobs from one client, more than --max-client-jobs may be live at once */
    const char *many[] = {"--max-client-jobs", "64", NULL};
    assert_int_equal(daemon_start(&a, many), 0);
    char db[600];
    snprintf(db, sizeof db, "%s/state.sqlite", a.dir);

    char done[20][40], slow[4][40], queued[9][40], budget[40], form[40];
    char *before[20 + 1] = {0};
    for (int i = 0; i < 20; i++)
        submit(a.port, i % 5 == 4 ? "/v1/evaluations" : "/v1/attacks?async=true",
               i % 5 == 4 ? evaluation_body : quick_body, done[i]);
    for (int i = 0; i < 20; i++) {
        reply r;
        get_job(a.port, done[i], "30", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(state_of(&r), "done");
        before[i] = strdup(r.body);
        reply_free(&r);
    }
    /* Two workers: two slow jobs run, the rest waits behind them. */
    for (int i = 0; i < 4; i++)
        submit(a.port, "/v1/attacks?async=true", slow_body, slow[i]);
    wait_state(a.port, slow[0], "running");
    wait_state(a.port, slow[1], "running");
    for (int i = 0; i < 9; i++)
        submit(a.port, "/v1/attacks?async=true", quick_body, queued[i]);
    reply r;
    /* One more waiting, sent as a form with the image as a file. */
    request_on(a.port, "/v1/datasets/mnist/test/0", NULL, &sample_png);
    assert_int_equal(sample_png.status, 200);
    req_opts multipart = {.form = attack_form};
    request_on(a.port, "/v1/attacks?async=true", &multipart, &r);
    assert_int_equal(r.status, 202);
    snprintf(form, sizeof form, "%s", json_string_value(json_object_get(r.json, "id")));
    reply_free(&r);
    reply_free(&sample_png);
    req_opts del = {.method = "DELETE"};
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", slow[3]);
    request_on(a.port, path, &del, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(state_of(&r), "cancelled");
    reply_free(&r);
    get_job(a.port, slow[3], "0", &r);
    char *cancelled_before = strdup(r.body);
    reply_free(&r);
    get_job(a.port, queued[8], "0", &r);
    assert_string_equal(state_of(&r), "queued");
    reply_free(&r);
    submit(a.port, "/v1/attacks?async=true", short_budget_body, budget);
    double killed = now_s();
    kill_hard(&a);

    /* Past the short budget before the restart. */
    while (now_s() - killed < 2)
        usleep(50000);
    char *models = models_without("fc200-200-10");
    const char *again[] = {"--state", db, "--models", models, NULL};
    assert_int_equal(daemon_start(&b, again), 0);

    for (int i = 0; i < 20; i++) {
        get_job(b.port, done[i], "0", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, before[i]);
        reply_free(&r);
        free(before[i]);
    }
    get_job(b.port, slow[3], "0", &r);
    assert_string_equal(r.body, cancelled_before);
    reply_free(&r);
    free(cancelled_before);
    for (int i = 0; i < 3; i++) {
        get_job(b.port, slow[i], "0", &r);
        assert_int_equal(r.status, 200);
        assert_restart_failure(&r, "not_restarted");
        assert_non_null(strstr(json_string_value(json_object_get(
                                   json_object_get(r.json, "error"), "message")),
                               "fc200-200-10"));
        reply_free(&r);
    }
    get_job(b.port, budget, "0", &r);
    assert_restart_failure(&r, "deadline_exceeded");
    reply_free(&r);
    for (int i = 0; i < 9; i++) {
        get_job(b.port, queued[i], "30", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(state_of(&r), "done");
        assert_true(json_is_object(json_object_get(r.json, "result")));
        reply_free(&r);
    }
    get_job(b.port, form, "30", &r);
    assert_string_equal(state_of(&r), "done");
    json_t *res = json_array_get(json_object_get(json_object_get(r.json, "result"), "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "target")), 3);
    assert_int_equal(json_array_size(json_object_get(res, "predictions")), 2);
    reply_free(&r);
    /* New ids are not old ones. */
    char fresh[40];
    submit(b.port, "/v1/attacks?async=true", quick_body, fresh);
    for (int i = 0; i < 20; i++)
        assert_string_not_equal(fresh, done[i]);
    for (int i = 0; i < 9; i++)
        assert_string_not_equal(fresh, queued[i]);
    assert_int_equal(daemon_stop(&b), 0);
    daemon_cleanup(&b);
    daemon_cleanup(&a);
    tu_rmtree(models);
    free(models);
}

/* A job queued when SIGTERM comes is not cancelled by the shutdown: it
 * runs at the next start. */
static void test_shutdown_keeps_unfinished_jobs(void **state)
{
    (void)state;
    daemon_proc a, b;
    const char *drain[] = {"--drain-timeout", "0.2", NULL};
    assert_int_equal(daemon_start(&a, drain), 0);
    char db[600], slow[3][40], queued[40];
    snprintf(db, sizeof db, "%s/state.sqlite", a.dir);
    for (int i = 0; i < 3; i++)
        submit(a.port, "/v1/attacks?async=true", slow_body, slow[i]);
    submit(a.port, "/v1/attacks?async=true", quick_body, queued);
    assert_int_equal(daemon_stop(&a), 0);
    const char *again[] = {"--state", db, NULL};
    assert_int_equal(daemon_start(&b, again), 0);
    reply r;
    get_job(b.port, queued, "0", &r);
    assert_int_equal(r.status, 200);
    assert_string_not_equal(state_of(&r), "cancelled");
    reply_free(&r);
    req_opts del = {.method = "DELETE"};
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%s", slow[i]);
        request_on(b.port, path, &del, &r);
        reply_free(&r);
    }
    get_job(b.port, queued, "30", &r);
    assert_string_equal(state_of(&r), "done");
    reply_free(&r);
    assert_int_equal(daemon_stop(&b), 0);
    daemon_cleanup(&b);
    daemon_cleanup(&a);
}

/* --job-ttl counts from the finish in wall-clock time, across restarts;
 * an expired job is gone after the next start too. The ttl is taken from
 * the daemon that serves the job, long enough for a restart to happen
 * within it (starts are slower under the sanitizers). */
static void test_ttl_across_restart(void **state)
{
    (void)state;
    daemon_proc a, b, c;
    double t0 = now_s();
    assert_int_equal(daemon_start(&a, NULL), 0);
    double ttl = 2 * (now_s() - t0) + 2;
    char db[600], id[40], ttl_text[32];
    snprintf(db, sizeof db, "%s/state.sqlite", a.dir);
    snprintf(ttl_text, sizeof ttl_text, "%.1f", ttl);
    submit(a.port, "/v1/attacks?async=true", quick_body, id);
    reply r;
    get_job(a.port, id, "30", &r);
    assert_string_equal(state_of(&r), "done");
    double finished = now_s();
    reply_free(&r);
    kill_hard(&a);

    const char *again[] = {"--state", db, "--job-ttl", ttl_text, NULL};
    assert_int_equal(daemon_start(&b, again), 0);
    get_job(b.port, id, "0", &r);
    assert_true(now_s() - finished < ttl - 0.5); /* else the check below proves nothing */
    assert_int_equal(r.status, 200);
    assert_string_equal(state_of(&r), "done");
    reply_free(&r);
    while (now_s() - finished < ttl + 0.3)
        usleep(50000);
    get_job(b.port, id, "0", &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    kill_hard(&b);

    assert_int_equal(daemon_start(&c, again), 0);
    get_job(c.port, id, "0", &r);
    assert_error(&r, 404, "job_not_found");
    reply_free(&r);
    assert_int_equal(daemon_stop(&c), 0);
    daemon_cleanup(&c);
    daemon_cleanup(&b);
    daemon_cleanup(&a);
}

/* Runs blindspotd on state file path; its exit status, its output in *out. */
static int run_on(const char *path, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 30 %s --listen 127.0.0.1:%d --models models --data data "
             "--state '%s' 2>&1", tu_bin("blindspotd"), free_port(), path);
    return tu_run(cmd, out);
}

static void test_second_daemon_refused(void **state)
{
    (void)state;
    daemon_proc a;
    assert_int_equal(daemon_start(&a, NULL), 0);
    char db[600], *out = NULL;
    snprintf(db, sizeof db, "%s/state.sqlite", a.dir);
    assert_int_equal(run_on(db, &out), 1);
    if (!strstr(out, "in use by another process"))
        fail_msg("unclear refusal: %s", out);
    free(out);
    /* The first one still works. */
    char id[40];
    submit(a.port, "/v1/attacks?async=true", quick_body, id);
    assert_int_equal(daemon_stop(&a), 0);
    daemon_cleanup(&a);
}

static void test_broken_state_file(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), path[600], *out = NULL;
    snprintf(path, sizeof path, "%s/garbage.sqlite", dir);
    char garbage[8192];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(i * 7919 % 251);
    tu_write_file(path, garbage, sizeof garbage);
    assert_int_equal(run_on(path, &out), 1);
    if (!strstr(out, "is not a blindspot state database"))
        fail_msg("unclear refusal: %s", out);
    free(out);
    snprintf(path, sizeof path, "%s/missing/folder/state.sqlite", dir);
    assert_int_equal(run_on(path, &out), 1);
    if (!strstr(out, "cannot open the state file"))
        fail_msg("unclear refusal: %s", out);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

/* A job whose row cannot be written is refused with 503, never
 * acknowledged; once writes work again, so do jobs. */
static void test_write_failure_refuses_job(void **state)
{
    (void)state;
    daemon_proc a;
    assert_int_equal(daemon_start(&a, NULL), 0);
    struct rlimit old, tiny;
    assert_int_equal(prlimit(a.pid, RLIMIT_FSIZE, NULL, &old), 0);
    tiny = old;
    tiny.rlim_cur = 1; /* every write past the first byte of a file fails */
    assert_int_equal(prlimit(a.pid, RLIMIT_FSIZE, &tiny, NULL), 0);
    reply r;
    req_opts o = {.headers = json_body_type, .body = quick_body, .len = strlen(quick_body)};
    request_on(a.port, "/v1/attacks?async=true", &o, &r);
    assert_error(&r, 503, "state_unavailable");
    reply_free(&r);
    assert_int_equal(prlimit(a.pid, RLIMIT_FSIZE, &old, NULL), 0);
    char id[40];
    submit(a.port, "/v1/attacks?async=true", quick_body, id);
    get_job(a.port, id, "30", &r);
    assert_string_equal(state_of(&r), "done");
    reply_free(&r);
    assert_int_equal(daemon_stop(&a), 0);
    daemon_cleanup(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_and_restart),
        cmocka_unit_test(test_shutdown_keeps_unfinished_jobs),
        cmocka_unit_test(test_ttl_across_restart),
        cmocka_unit_test(test_second_daemon_refused),
        cmocka_unit_test(test_broken_state_file),
        cmocka_unit_test(test_write_failure_refuses_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
