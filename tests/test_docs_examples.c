/* test_docs_examples — the shell examples of README.md and docs/api.md run
 * verbatim against a daemon, as a reader would paste them.
 *
 * An example is an indented code block (every line indented by four
 * spaces, after a blank line). The blocks of one document run in order in
 * one bash session (later blocks use files and variables of earlier ones),
 * in a scratch folder that holds links to the build, the data and a copy of
 * the models, with the daemon's address in place of localhost:8080. A block
 * fails the test when bash fails on it (set -e, pipefail) or when it prints
 * an error document of the daemon. Blocks that set the project up or take minutes
 * (`make ...`) and blocks after a line `<!-- example: not run -->` are
 * skipped. Needs `make data models`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testhttp.h"
#include "tests/testutil.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SKIP_MARK "<!-- example: not run -->"

static daemon_proc d;
static char *scratch;

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    /* The examples start evaluation jobs and go on; under the sanitizers
     * their shards take minutes, and the requests queued behind them must
     * not run out of the default 60 s budget while they wait. */
    const char *extra[] = {"--timeout", "600", NULL};
    if (daemon_start(&d, extra)) {
        fprintf(stderr, "blindspotd did not become ready; log in %s\n", d.log);
        return -1;
    }
    scratch = tu_tmpdir();
    char root[PATH_MAX], cmd[3 * PATH_MAX];
    if (!getcwd(root, sizeof root))
        return -1;
    const char *build = getenv("BLINDSPOT_BUILD") ? getenv("BLINDSPOT_BUILD") : "build";
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/build' && ln -s '%s/%s/blindspot' '%s/%s/blindspotd' '%s/build/' && "
             "ln -s '%s/data' '%s/data' && cp -r '%s/models' '%s/models'",
             scratch, root, build, root, build, scratch, root, scratch, root, scratch);
    return tu_run(cmd, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = daemon_stop(&d);
    daemon_cleanup(&d);
    tu_rmtree(scratch);
    free(scratch);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* Appends s (n bytes) to the growing string *buf. */
static void append(char **buf, size_t *len, const char *s, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* The script of a document's examples: each block announced by an echo of
 * "@@ example N" and its first line, localhost:8080 replaced. *blocks
 * counts the blocks taken. */
static char *script_of(const char *md, int port, int *blocks)
{
    char *s = NULL, addr[32];
    size_t len = 0;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    append(&s, &len, "set -eu -o pipefail\n", 20);
    *blocks = 0;
    const char *p = md;
    int skip_next = 0, prev_blank = 1;
    while (*p) {
        size_t n = strcspn(p, "\n");
        if (!strncmp(p, SKIP_MARK, strlen(SKIP_MARK)))
            skip_next = 1;
        if (prev_blank && n > 4 && !strncmp(p, "    ", 4) && p[4] != ' ' && p[4] != '-') {
            /* a block: lines indented by 4 until a line that is not */
            const char *end = p;
            while (*end && !strncmp(end, "    ", 4))
                end += strcspn(end, "\n") + (end[strcspn(end, "\n")] ? 1 : 0);
            int run = !skip_next && strncmp(p + 4, "make", 4) != 0;
            if (run) {
                char head[160];
                int hn = snprintf(head, sizeof head, "echo '@@ example %d: %.60s'\n", ++*blocks,
                                  p + 4);
                for (char *q = head + 8; q < head + hn - 2; q++)
                    if (*q == '\'' || *q == '\n')
                        *q = '"';
                head[hn - 2] = '\'';
                head[hn - 1] = '\n';
                append(&s, &len, head, (size_t)hn);
                for (const char *l = p; l < end;) {
                    size_t ln = strcspn(l, "\n");
                    const char *body = l + 4, *stop = l + ln;
                    /* the line, with the daemon's address in place of localhost:8080 */
                    for (const char *h; (h = strstr(body, "localhost:8080")) && h < stop;) {
                        append(&s, &len, body, (size_t)(h - body));
                        append(&s, &len, addr, strlen(addr));
                        body = h + strlen("localhost:8080");
                    }
                    append(&s, &len, body, (size_t)(stop - body));
                    append(&s, &len, "\n", 1);
                    l = stop + (*stop ? 1 : 0);
                }
                append(&s, &len, "echo\n", 5);
            }
            skip_next = 0;
            p = end;
            prev_blank = 0;
            continue;
        }
        prev_blank = n == 0;
        p += n + (p[n] ? 1 : 0);
    }
    return s;
}

/* Runs the examples of one document; fails with the output of the block
 * that went wrong. */
static void run_examples(const char *doc, int min_blocks)
{
    size_t len;
    char *md = (char *)tu_read_file(doc, &len);
    assert_non_null(md);
    int blocks;
    char *script = script_of(md, d.port, &blocks);
    free(md);
    if (blocks < min_blocks)
        fail_msg("%s: only %d examples found", doc, blocks);
    char path[PATH_MAX], cmd[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/examples.sh", scratch);
    assert_int_equal(tu_write_file(path, script, strlen(script)), 0);
    free(script);
    snprintf(cmd, sizeof cmd, "cd '%s' && bash examples.sh 2>&1", scratch);
    char *out = NULL;
    int rc = tu_run(cmd, &out);
    const char *last = out ? out : "";
    for (const char *q = last; (q = strstr(q, "@@ example ")); q++)
        last = q;
    /* the daemon's errors, compact: {"error":"..." on /v2, "error":{"code":" on /v1 */
    const char *bad = out ? strstr(out, "\"error\":{\"code\":\"") : NULL;
    if (!bad && out)
        bad = strstr(out, "{\"error\":\"");
    if (rc != 0)
        fail_msg("%s: an example failed (bash exit %d):\n%.3000s", doc, rc, last);
    if (bad) {
        const char *from = out;
        for (const char *q = out; (q = strstr(q, "@@ example ")) && q < bad; q++)
            from = q;
        fail_msg("%s: an example answered an error:\n%.3000s", doc, from);
    }
    free(out);
}

static void test_readme_examples(void **state)
{
    (void)state;
    run_examples("README.md", 7);
}

static void test_api_guide_examples(void **state)
{
    (void)state;
    run_examples("docs/api.md", 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_examples),
        cmocka_unit_test(test_api_guide_examples),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
