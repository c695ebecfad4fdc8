/* state — the job store on SQLite; see state.h. */
#include "server/state.h"

#include <pthread.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks the file as blindspot's (PRAGMA application_id), so that another
 * program's database is refused rather than written into. */
#define STATE_APPLICATION_ID 0x62737064 /* "bspd" */

struct state {
    pthread_mutex_t lock; /* one connection, one caller at a time */
    sqlite3 *db;
    char path[1024];
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL, started REAL NOT NULL DEFAULT 0,"
    " finished REAL NOT NULL DEFAULT 0, deadline REAL NOT NULL,"
    " done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,"
    " result TEXT, error TEXT,"
    " method TEXT NOT NULL, path TEXT NOT NULL, query TEXT NOT NULL,"
    " content_type TEXT, accept TEXT, body BLOB, multipart INTEGER NOT NULL,"
    " owner TEXT NOT NULL DEFAULT '',"
    " callback TEXT, callback_state TEXT, callback_attempts INTEGER NOT NULL DEFAULT 0,"
    " callback_status INTEGER NOT NULL DEFAULT 0, callback_error TEXT);"
    "CREATE TABLE IF NOT EXISTS parts ("
    " job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, idx INTEGER NOT NULL,"
    " name TEXT NOT NULL, filename TEXT, content_type TEXT, data BLOB NOT NULL,"
    " PRIMARY KEY (job, idx));";

/* The message of a failed open: what is wrong with the file and what to do. */
static void open_error(state *s, int rc, char *err, size_t errlen)
{
    const char *why = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        snprintf(err, errlen, "the state file %s is in use by another process (another "
                 "blindspotd?); give each daemon its own --state", s->path);
    else if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
        snprintf(err, errlen, "the state file %s is not a blindspot state database (%s); "
                 "move it away or name another with --state", s->path, why);
    else
        snprintf(err, errlen, "cannot open the state file %s (%s); check that its folder "
                 "exists and is writable, or name another with --state", s->path, why);
}

/* One statement with no rows to read; the SQLite result code. */
static int exec(state *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL);
}

/* The single integer a query answers, or -1. */
static long long query_int(state *s, const char *sql, int *rc)
{
    sqlite3_stmt *st;
    long long v = -1;
    *rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (*rc != SQLITE_OK)
        return -1;
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        *rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return v;
}

/* Adds column name (its definition ddl) to the jobs table of a store made
 * by an earlier version, unless it is there. An SQLite result code. */
static int add_column(state *s, const char *name, const char *ddl)
{
    int rc;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = '%s'",
             name);
    long long has = query_int(s, sql, &rc);
    if (rc != SQLITE_OK || has > 0)
        return rc;
    snprintf(sql, sizeof sql, "ALTER TABLE jobs ADD COLUMN %s %s", name, ddl);
    return exec(s, sql);
}


state *state_open(const char *path, char *err, size_t errlen)
{
    state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory opening the state file");
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX, NULL);
    /* The lock: locking_mode=EXCLUSIVE keeps the write lock the first
     * transaction takes until the connection closes (and lets WAL work
     * without shared memory). The process dying releases it. */
    if (rc == SQLITE_OK)
        rc = exec(s, "PRAGMA locking_mode=EXCLUSIVE");
    if (rc == SQLITE_OK)
        rc = exec(s, "BEGIN EXCLUSIVE; COMMIT");
    if (rc == SQLITE_OK)
        rc = exec(s, "PRAGMA journal_mode=WAL");
    if (rc == SQLITE_OK)
        rc = exec(s, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON");
    long long app = -1, tables = -1;
    if (rc == SQLITE_OK)
        app = query_int(s, "PRAGMA application_id", &rc);
    if (rc == SQLITE_OK)
        tables = query_int(s, "SELECT count(*) FROM sqlite_master", &rc);
    int foreign = rc == SQLITE_OK && app != STATE_APPLICATION_ID && (app != 0 || tables != 0);
    if (foreign)
        rc = SQLITE_NOTADB;
    if (rc == SQLITE_OK && app == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA application_id=%d", STATE_APPLICATION_ID);
        rc = exec(s, sql);
    }
    if (rc == SQLITE_OK)
        rc = exec(s, schema);
    /* A store of a version before job owners (its jobs belong to nobody)
     * or before webhooks. */
    static const char *const added[][2] = {
        {"owner", "TEXT NOT NULL DEFAULT ''"},
        {"callback", "TEXT"},
        {"callback_state", "TEXT"},
        {"callback_attempts", "INTEGER NOT NULL DEFAULT 0"},
        {"callback_status", "INTEGER NOT NULL DEFAULT 0"},
        {"callback_error", "TEXT"},
    };
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof added / sizeof added[0]; i++)
        rc = add_column(s, added[i][0], added[i][1]);
    if (rc != SQLITE_OK) {
        if (foreign)
            snprintf(err, errlen, "the state file %s is another program's SQLite database; "
                     "move it away or name another with --state", s->path);
        else
            open_error(s, rc, err, errlen);
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void state_close(state *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Binds text or NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Binds the values of ap in order from the first parameter, each as types
 * says: 't' text (or NULL), 'd' double, 'i' int, 'b' a blob as a pointer
 * (NULL: a NULL) and a size_t length. */
static void bind_values(sqlite3_stmt *st, const char *types, va_list ap)
{
    int i = 1;
    for (const char *t = types; *t; t++, i++) {
        if (*t == 't') {
            bind_text(st, i, va_arg(ap, const char *));
        } else if (*t == 'd') {
            sqlite3_bind_double(st, i, va_arg(ap, double));
        } else if (*t == 'i') {
            sqlite3_bind_int(st, i, va_arg(ap, int));
        } else {
            const void *data = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            if (data)
                sqlite3_bind_blob64(st, i, data, len, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i);
        }
    }
}

/* Prepares sql and binds its parameters (see bind_values); the SQLite
 * result code, and the statement in *st when it is SQLITE_OK. */
static int prepare(state *s, sqlite3_stmt **st, const char *sql, const char *types, ...)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    va_list ap;
    va_start(ap, types);
    bind_values(*st, types, ap);
    va_end(ap);
    return SQLITE_OK;
}

/* Runs one prepared statement to its end; the SQLite result code. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int insert_locked(state *s, const state_job *j)
{
    sqlite3_stmt *st;
    int rc = prepare(s, &st,
        "INSERT INTO jobs (id, kind, model, state, cancel_requested, created, started,"
        " finished, deadline, done, total, result, error, method, path, query, content_type,"
        " accept, body, multipart, owner, callback, callback_state)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        "ttttiddddiitttttttbittt", j->id, j->kind, j->model ? j->model : "", j->state,
        j->cancel_requested, j->created, j->started, j->finished, j->deadline, j->done,
        j->total, j->result, j->error, j->method, j->path, j->query ? j->query : "[]",
        j->content_type, j->accept, (const void *)j->body, j->body_len, j->multipart,
        j->owner ? j->owner : "", j->callback, j->callback ? j->callback_state : NULL);
    if (rc == SQLITE_OK)
        rc = step_done(st);
    for (int i = 0; rc == SQLITE_OK && i < j->n_parts; i++) {
        const http_part *p = &j->parts[i];
        rc = prepare(s, &st, "INSERT INTO parts (job, idx, name, filename, content_type, data)"
                     " VALUES (?,?,?,?,?,?)", "titttb", j->id, i, p->name, p->filename,
                     p->content_type, p->data ? (const void *)p->data : "", p->len);
        if (rc == SQLITE_OK)
            rc = step_done(st);
    }
    return rc;
}

int state_insert(state *s, const state_job *j, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    int rc = exec(s, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
        rc = insert_locked(s, j);
    if (rc == SQLITE_OK)
        rc = exec(s, "COMMIT");
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        if (!sqlite3_get_autocommit(s->db))
            exec(s, "ROLLBACK");
    }
    pthread_mutex_unlock(&s->lock);
    return rc == SQLITE_OK ? 0 : -1;
}

/* One UPDATE or DELETE on the row of id, binding the values in order
 * ('t' text, 'd' double, 'i' int) and then id. 0 or -1; a failure is
 * logged, since no client waits for it. */
static int update(state *s, const char *sql, const char *id, const char *types, ...)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        va_list ap;
        va_start(ap, types);
        bind_values(st, types, ap);
        va_end(ap);
        bind_text(st, (int)strlen(types) + 1, id);
        rc = step_done(st);
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "blindspotd: the state file %s: cannot record job %s: %s\n", s->path,
                id, sqlite3_errmsg(s->db));
    pthread_mutex_unlock(&s->lock);
    return rc == SQLITE_OK ? 0 : -1;
}

int state_started(state *s, const char *id, double started)
{
    return update(s, "UPDATE jobs SET state = 'running', started = ? WHERE id = ?", id, "d",
                  started);
}

int state_finished(state *s, const char *id, const char *state, const char *result,
                   const char *error, double finished, int done, int total)
{
    return update(s, "UPDATE jobs SET state = ?, result = ?, error = ?, finished = ?,"
                  " done = ?, total = ? WHERE id = ?", id, "tttdii", state, result, error,
                  finished, done, total);
}

int state_callback(state *s, const char *id, const char *cb_state, int attempts,
                   int last_status, const char *last_error)
{
    return update(s, "UPDATE jobs SET callback_state = ?, callback_attempts = ?,"
                  " callback_status = ?, callback_error = ? WHERE id = ?", id, "tiit",
                  cb_state, attempts, last_status, last_error);
}

int state_cancel_requested(state *s, const char *id)
{
    return update(s, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", id, "");
}

int state_delete(state *s, const char *id)
{
    return update(s, "DELETE FROM jobs WHERE id = ?", id, "");
}

static const char *text_or_null(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Reads the parts of job id into parts (malloc'd; their strings point into
 * statement memory that lives until *pst is finalized). */
static int load_parts(state *s, const char *id, sqlite3_stmt **pst, http_part **parts, int *n)
{
    *parts = NULL;
    *n = 0;
    int rc = sqlite3_prepare_v2(s->db, "SELECT name, filename, content_type, data FROM parts"
                                " WHERE job = ? ORDER BY idx", -1, pst, NULL);
    if (rc != SQLITE_OK)
        return rc;
    bind_text(*pst, 1, id);
    /* Copies, since stepping on would invalidate the column memory. */
    int cap = 0;
    while ((rc = sqlite3_step(*pst)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            http_part *np = realloc(*parts, (size_t)cap * sizeof *np);
            if (!np)
                return SQLITE_NOMEM;
            *parts = np;
        }
        http_part *p = &(*parts)[(*n)++];
        memset(p, 0, sizeof *p);
        const char *name = text_or_null(*pst, 0), *fn = text_or_null(*pst, 1),
                   *ct = text_or_null(*pst, 2);
        size_t len = (size_t)sqlite3_column_bytes(*pst, 3);
        const void *data = sqlite3_column_blob(*pst, 3);
        p->name = strdup(name ? name : "");
        p->filename = fn ? strdup(fn) : NULL;
        p->content_type = ct ? strdup(ct) : NULL;
        p->data = malloc(len + 1);
        p->len = len;
        if (!p->name || (fn && !p->filename) || (ct && !p->content_type) || !p->data)
            return SQLITE_NOMEM;
        if (len)
            memcpy(p->data, data, len);
        p->data[len] = '\0';
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void state_parts_free(http_part *parts, int n)
{
    for (int i = 0; parts && i < n; i++) {
        free(parts[i].name);
        free(parts[i].filename);
        free(parts[i].content_type);
        free(parts[i].data);
    }
    free(parts);
}

int state_load(state *s, void (*each)(void *ctx, const state_job *j), void *ctx, char *err,
               size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db,
        "SELECT id, kind, model, state, cancel_requested, created, started, finished,"
        " deadline, done, total, result, error, method, path, query, content_type, accept,"
        " body, multipart, owner, callback, callback_state, callback_attempts, callback_status,"
        " callback_error FROM jobs ORDER BY created, rowid", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        state_job j = {
            .id = text_or_null(st, 0), .kind = text_or_null(st, 1),
            .model = text_or_null(st, 2), .state = text_or_null(st, 3),
            .cancel_requested = sqlite3_column_int(st, 4),
            .created = sqlite3_column_double(st, 5), .started = sqlite3_column_double(st, 6),
            .finished = sqlite3_column_double(st, 7), .deadline = sqlite3_column_double(st, 8),
            .done = sqlite3_column_int(st, 9), .total = sqlite3_column_int(st, 10),
            .result = text_or_null(st, 11), .error = text_or_null(st, 12),
            .method = text_or_null(st, 13), .path = text_or_null(st, 14),
            .query = text_or_null(st, 15), .content_type = text_or_null(st, 16),
            .accept = text_or_null(st, 17), .multipart = sqlite3_column_int(st, 19),
            .owner = text_or_null(st, 20),
            .callback = text_or_null(st, 21), .callback_state = text_or_null(st, 22),
            .callback_attempts = sqlite3_column_int(st, 23),
            .callback_status = sqlite3_column_int(st, 24),
            .callback_error = text_or_null(st, 25),
        };
        j.body = sqlite3_column_blob(st, 18);
        j.body_len = (size_t)sqlite3_column_bytes(st, 18);
        if (!j.id || !j.kind || !j.state || !j.method || !j.path) {
            rc = SQLITE_CORRUPT;
            break;
        }
        sqlite3_stmt *pst = NULL;
        http_part *parts = NULL;
        int n = 0;
        rc = load_parts(s, j.id, &pst, &parts, &n);
        sqlite3_finalize(pst);
        if (rc == SQLITE_OK) {
            j.parts = parts;
            j.n_parts = n;
            each(ctx, &j);
        }
        state_parts_free(parts, n);
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot read the state file %s: %s", s->path,
                 sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc == SQLITE_OK ? 0 : -1;
}
