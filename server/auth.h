/* auth — who may call the daemon (--auth-tokens) and what each may do.
 *
 * The tokens file holds one token a line: "TOKEN CLIENT SCOPES", separated
 * by spaces or tabs, SCOPES a comma-separated list of infer, attack,
 * evaluate and admin; '#' starts a comment, blank lines are skipped. A
 * token written "sha256:HEX" is stored as the SHA-256 of the real one
 * (64 hex digits), so the file need not hold the secret itself.
 *
 * Only SHA-256 digests are kept in memory, and a presented token is hashed
 * and compared with every entry's digest in a loop that neither stops at
 * the first difference nor at the first match, so its time says nothing
 * of which bytes were right. The table is replaced whole by a successful
 * auth_load (SIGHUP); a file that fails to parse leaves the old one. Every
 * call is safe from any thread. */
#ifndef BS_SERVER_AUTH_H
#define BS_SERVER_AUTH_H

#include <stddef.h>

/* The scopes, as bits of a route's and a token's scope set. */
enum {
    AUTH_INFER = 1,    /* inference, predictions, reading models and datasets */
    AUTH_ATTACK = 2,   /* attacks and their jobs */
    AUTH_EVALUATE = 4, /* evaluations, Lipschitz bounds, unit analysis, their jobs */
    AUTH_ADMIN = 8,    /* the model repository; /metrics under --metrics-auth */
};

#define AUTH_CLIENT_LEN 80 /* "token:" + a client name, NUL included */
#define AUTH_NAME_MAX 64   /* longest client name in the tokens file */
#define AUTH_REALM "Bearer realm=\"blindspot\""

typedef struct auth auth;

typedef enum auth_verdict {
    AUTH_OK,        /* the token is known and has the scope */
    AUTH_MISSING,   /* no token presented: 401 */
    AUTH_WRONG,     /* a token the table does not hold: 401 */
    AUTH_FORBIDDEN, /* a known token without the scope: 403 */
} auth_verdict;

/* An empty table: no tokens, every request passes. NULL when out of memory. */
auth *auth_new(void);
void auth_free(auth *a);

/* Reads the tokens file at path into a new table and, when the whole file
 * is valid, puts it in place of the old one. 0, or -1 with a message in
 * err naming the line and what is wrong (the old table stays). */
int auth_load(auth *a, const char *path, char *err, size_t errlen);
/* The same for the file's text (NUL-terminated, changed in place: lines
 * are cut at their newlines), source naming it in messages. */
int auth_load_text(auth *a, char *text, const char *source, char *err, size_t errlen);

/* The number of tokens in the table (0: authentication is off). */
int auth_count(auth *a);

/* The verdict on a request needing scope (one AUTH_* bit) whose token is
 * token (NULL: none presented). On AUTH_OK and AUTH_FORBIDDEN client gets
 * "token:" and the token's client name. */
auth_verdict auth_check(auth *a, const char *token, unsigned scope,
                        char client[AUTH_CLIENT_LEN]);

/* The token of an Authorization header value ("Bearer TOKEN", the scheme
 * case-insensitive), or NULL when it is absent or another scheme. */
const char *auth_bearer(const char *authorization);

/* The name of a scope bit ("infer", ...), or "none". */
const char *auth_scope_name(unsigned scope);

/* The scope a job of this kind (a work's kind: "attack", "evaluation",
 * ...) needs to be read, followed or cancelled. */
unsigned auth_scope_of_kind(const char *kind);

#endif
