/* test_state — the job store on its own: a job and its request (body or
 * multipart parts) read back as written, with its start, end and cancel;
 * deleted jobs are gone; a failed insert leaves nothing behind; a job's
 * owner is kept, and a store written before owners existed (16-digit ids,
 * no owner column) still loads, its jobs owned by nobody; a second
 * opener of a file in use, a file of garbage, another program's database
 * and a folder that does not exist are refused with a message that says
 * which. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/state.h"
#include "tests/testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;
static char path[600];

static int setup(void **cm)
{
    (void)cm;
    dir = tu_tmpdir();
    snprintf(path, sizeof path, "%s/state.sqlite", dir);
    return 0;
}

static int teardown(void **cm)
{
    (void)cm;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* What a load saw: copies of the rows. */
typedef struct seen {
    int n;
    char id[4][40], owner[4][80], state[4][16], query[4][64], result[4][64], error[4][64];
    int cancel_requested[4], multipart[4], n_parts[4], done[4], total[4];
    double created[4], started[4], finished[4], deadline[4];
    char body[4][64];
    char part_names[4][64], part_data[4][64], part_files[4][64];
} seen;

static void collect(void *ctx, const state_job *j)
{
    seen *s = ctx;
    int i = s->n++;
    assert_true(i < 4);
    snprintf(s->id[i], 40, "%s", j->id);
    snprintf(s->owner[i], 80, "%s", j->owner ? j->owner : "(null)");
    snprintf(s->state[i], 16, "%s", j->state);
    snprintf(s->query[i], 64, "%s", j->query);
    snprintf(s->result[i], 64, "%s", j->result ? j->result : "(null)");
    snprintf(s->error[i], 64, "%s", j->error ? j->error : "(null)");
    s->cancel_requested[i] = j->cancel_requested;
    s->multipart[i] = j->multipart;
    s->n_parts[i] = j->n_parts;
    s->done[i] = j->done;
    s->total[i] = j->total;
    s->created[i] = j->created;
    s->started[i] = j->started;
    s->finished[i] = j->finished;
    s->deadline[i] = j->deadline;
    snprintf(s->body[i], 64, "%.*s", (int)j->body_len, j->body ? (const char *)j->body : "");
    for (int p = 0; p < j->n_parts; p++) {
        size_t len = strlen(s->part_names[i]);
        snprintf(s->part_names[i] + len, 64 - len, "%s;", j->parts[p].name);
        len = strlen(s->part_data[i]);
        snprintf(s->part_data[i] + len, 64 - len, "%.*s;", (int)j->parts[p].len,
                 (const char *)j->parts[p].data);
        len = strlen(s->part_files[i]);
        snprintf(s->part_files[i] + len, 64 - len, "%s;",
                 j->parts[p].filename ? j->parts[p].filename : "-");
    }
}

static void test_round_trip(void **cm)
{
    (void)cm;
    char err[512];
    state *s = state_open(path, err, sizeof err);
    assert_non_null(s);
    uint8_t png[] = {0x89, 'P', 'N', 'G'};
    http_part parts[2] = {
        {.name = "model", .data = (uint8_t *)"fc10-1e-4", .len = 9},
        {.name = "image", .filename = "seven.png", .content_type = "image/png",
         .data = png, .len = 4},
    };
    state_job a = {.id = "00000000000000aa", .kind = "attack", .model = "fc10-1e-4",
                   .state = "queued", .created = 1000.25, .deadline = 1060.5,
                   .method = "POST", .path = "/v1/attacks", .query = "[[\"async\",\"true\"]]",
                   .content_type = "application/json", .body = (const uint8_t *)"{\"n\":1}",
                   .body_len = 7};
    state_job b = {.id = "00000000000000bb", .kind = "attack", .model = "fc10-1e-4",
                   .state = "queued", .created = 1001, .deadline = 1061, .method = "POST",
                   .path = "/v1/attacks", .query = "[]", .multipart = 1, .parts = parts,
                   .n_parts = 2};
    assert_int_equal(state_insert(s, &a, err, sizeof err), 0);
    assert_int_equal(state_insert(s, &b, err, sizeof err), 0);
    /* The same id again fails whole: no second row, no stray parts. */
    assert_int_equal(state_insert(s, &b, err, sizeof err), -1);
    assert_non_null(strstr(err, "UNIQUE"));
    assert_int_equal(state_started(s, a.id, 1002.5), 0);
    assert_int_equal(state_finished(s, a.id, "done", "{\"ok\":1}", NULL, 1003.75, 4, 4), 0);
    assert_int_equal(state_cancel_requested(s, b.id), 0);
    state_close(s);

    /* Closed and opened again: what was committed is there. */
    s = state_open(path, err, sizeof err);
    assert_non_null(s);
    seen got;
    memset(&got, 0, sizeof got);
    assert_int_equal(state_load(s, collect, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.id[0], a.id);
    assert_string_equal(got.state[0], "done");
    assert_string_equal(got.query[0], a.query);
    assert_string_equal(got.body[0], "{\"n\":1}");
    assert_string_equal(got.result[0], "{\"ok\":1}");
    assert_string_equal(got.error[0], "(null)");
    assert_true(got.created[0] == 1000.25 && got.started[0] == 1002.5 &&
                got.finished[0] == 1003.75 && got.deadline[0] == 1060.5);
    assert_int_equal(got.done[0], 4);
    assert_int_equal(got.total[0], 4);
    assert_int_equal(got.cancel_requested[0], 0);
    assert_string_equal(got.id[1], b.id);
    assert_string_equal(got.state[1], "queued");
    assert_int_equal(got.cancel_requested[1], 1);
    assert_int_equal(got.multipart[1], 1);
    assert_int_equal(got.n_parts[1], 2);
    assert_string_equal(got.part_names[1], "model;image;");
    assert_string_equal(got.part_files[1], "-;seven.png;");
    assert_memory_equal(got.part_data[1], "fc10-1e-4;\x89PNG;", 15);

    assert_int_equal(state_delete(s, a.id), 0);
    assert_int_equal(state_delete(s, b.id), 0);
    memset(&got, 0, sizeof got);
    assert_int_equal(state_load(s, collect, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 0);
    state_close(s);
}

/* The jobs table as versions before job owners wrote it. */
static const char old_schema[] =
    "PRAGMA application_id=1651732580;"
    "CREATE TABLE jobs ("
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL, started REAL NOT NULL DEFAULT 0,"
    " finished REAL NOT NULL DEFAULT 0, deadline REAL NOT NULL,"
    " done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,"
    " result TEXT, error TEXT,"
    " method TEXT NOT NULL, path TEXT NOT NULL, query TEXT NOT NULL,"
    " content_type TEXT, accept TEXT, body BLOB, multipart INTEGER NOT NULL);"
    "CREATE TABLE parts ("
    " job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,"
    " name TEXT NOT NULL, filename TEXT, content_type TEXT, data BLOB NOT NULL,"
    " PRIMARY KEY (job, idx));"
    "INSERT INTO jobs (id, kind, model, state, created, finished, deadline, result, method,"
    " path, query, multipart) VALUES ('3f2a9c0d41b7e685', 'attack', 'cnn', 'done', 1000,"
    " 1001, 1060, '{}', 'POST', '/v1/attacks', '[]', 0);";

static void test_owners_and_old_stores(void **cm)
{
    (void)cm;
    char old[700];
    snprintf(old, sizeof old, "%s/old.sqlite", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, old_schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[512];
    state *s = state_open(old, err, sizeof err);
    assert_non_null(s);
    state_job owned = {.id = "c0ffee00c0ffee00c0ffee00c0ffee00", .kind = "attack",
                       .model = "cnn", .state = "queued", .owner = "token:alice",
                       .created = 2000, .deadline = 2060, .method = "POST",
                       .path = "/v1/attacks", .query = "[]"};
    assert_int_equal(state_insert(s, &owned, err, sizeof err), 0);
    state_close(s);
    s = state_open(old, err, sizeof err);
    assert_non_null(s);
    seen got = {0};
    assert_int_equal(state_load(s, collect, &got, err, sizeof err), 0);
    state_close(s);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.id[0], "3f2a9c0d41b7e685");
    assert_string_equal(got.owner[0], "");
    assert_string_equal(got.result[0], "{}");
    assert_string_equal(got.id[1], "c0ffee00c0ffee00c0ffee00c0ffee00");
    assert_string_equal(got.owner[1], "token:alice");
}

static void test_one_opener_at_a_time(void **cm)
{
    (void)cm;
    char err[512];
    state *s = state_open(path, err, sizeof err);
    assert_non_null(s);
    assert_null(state_open(path, err, sizeof err));
    assert_non_null(strstr(err, "in use by another process"));
    state_close(s);
    /* Released with the first. */
    s = state_open(path, err, sizeof err);
    assert_non_null(s);
    state_close(s);
}

static void test_refused_files(void **cm)
{
    (void)cm;
    char err[512], garbage[4096], p[700];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(i * 31 % 253);
    snprintf(p, sizeof p, "%s/garbage", dir);
    tu_write_file(p, garbage, sizeof garbage);
    assert_null(state_open(p, err, sizeof err));
    assert_non_null(strstr(err, "is not a blindspot state database"));

    snprintf(p, sizeof p, "%s/other.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE notes (text)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(state_open(p, err, sizeof err));
    assert_non_null(strstr(err, "another program's SQLite database"));

    snprintf(p, sizeof p, "%s/no/such/folder/state.sqlite", dir);
    assert_null(state_open(p, err, sizeof err));
    assert_non_null(strstr(err, "cannot open the state file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_owners_and_old_stores),
        cmocka_unit_test(test_one_opener_at_a_time),
        cmocka_unit_test(test_refused_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
