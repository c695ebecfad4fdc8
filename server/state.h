/* state — the job store: every asynchronous job, with the request that made
 * it and, once it ends, its result, in an embedded SQLite database, so that
 * jobs outlive the process (a restart, a crash, SIGKILL).
 *
 * The database runs in WAL mode with synchronous=NORMAL: a committed write
 * survives the process dying at any point (not a power cut of the machine,
 * which may lose the last commits). The file is held with an exclusive
 * lock for as long as it is open, so a second daemon cannot open it.
 * Every call is safe from any thread (one connection behind a mutex); a
 * write returns when it has committed. The store knows nothing of the job
 * table (jobs.c) beyond the rows it keeps. */
#ifndef BS_SERVER_STATE_H
#define BS_SERVER_STATE_H

#include "server/handler.h" /* http_part */

#include <stddef.h>
#include <stdint.h>

typedef struct state state;

/* A job as stored. Strings may be NULL where a column is empty. */
typedef struct state_job {
    const char *id;           /* 32 hex digits (16 in stores of earlier versions) */
    const char *kind;         /* "attack", "evaluation" */
    const char *model;        /* the model concerned, "" for several */
    const char *state;        /* jobs_state_names[...] */
    const char *owner;        /* the "token:" client that made it; "" or NULL: nobody */
    int cancel_requested;     /* a DELETE came before it ended */
    double created, started, finished; /* wall-clock seconds; 0: not yet */
    double deadline;          /* wall-clock end of its time budget */
    int done, total;          /* progress when it ended */
    const char *result;       /* the work's JSON document */
    const char *error;        /* JSON text of the error object */
    /* the request that made it */
    const char *method, *path;
    const char *query;        /* JSON array of [key, value] pairs, in order */
    const char *content_type, *accept;
    const uint8_t *body;      /* raw body; NULL for multipart */
    size_t body_len;
    int multipart;
    const http_part *parts;   /* multipart fields, in order */
    int n_parts;
    /* the webhook of the job (webhooks.h); NULL when it has none */
    const char *callback;       /* its URL */
    const char *callback_state; /* pending, delivered, failed */
    int callback_attempts, callback_status;
    const char *callback_error;
} state_job;

/* Opens (creating when needed) the store at path and locks it. NULL with a
 * message in err naming the file and what to do: it cannot be created or
 * written, it is not an SQLite database of this program, or another
 * process holds it. */
state *state_open(const char *path, char *err, size_t errlen);
/* Closes the store and releases its lock; NULL is fine. */
void state_close(state *s);

/* Writes a new job with its request (parts included) in one transaction.
 * 0, or -1 with the reason in err. */
int state_insert(state *s, const state_job *j, char *err, size_t errlen);
/* The job began to run at started. */
int state_started(state *s, const char *id, double started);
/* The job ended: its state name, result, error, finish time and progress. */
int state_finished(state *s, const char *id, const char *state, const char *result,
                   const char *error, double finished, int done, int total);
/* An attempt to deliver the job's webhook was made: where it stands. */
int state_callback(state *s, const char *id, const char *cb_state, int attempts,
                   int last_status, const char *last_error);
/* A DELETE came for the job. */
int state_cancel_requested(state *s, const char *id);
/* Forgets the job (expired, or never acknowledged). */
int state_delete(state *s, const char *id);

/* Frees n parts (each field malloc'd, as state_load hands them out) and
 * the array. */
void state_parts_free(http_part *parts, int n);

/* Calls each for every stored job, oldest first. The row's strings and
 * parts live until each returns; each must not call the store. 0, or -1
 * with the reason in err. */
int state_load(state *s, void (*each)(void *ctx, const state_job *j), void *ctx, char *err,
               size_t errlen);

#endif
