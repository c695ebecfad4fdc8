/* auth — the tokens table and the verdict on a request; see auth.h. */
#include "server/auth.h"

#include <gnutls/crypto.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DIGEST_LEN 32     /* SHA-256 */
#define TOKEN_MAX 512     /* longest plain token in the file or a header */
#define FILE_MAX (1 << 20) /* a tokens file larger than this is refused */

typedef struct entry {
    uint8_t digest[DIGEST_LEN];
    unsigned scopes;
    char client[AUTH_CLIENT_LEN]; /* "token:NAME" */
} entry;

typedef struct table {
    entry *e;
    int n;
} table;

struct auth {
    pthread_rwlock_t lock; /* readers check, auth_load swaps */
    table t;
};

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"infer", AUTH_INFER},
    {"attack", AUTH_ATTACK},
    {"evaluate", AUTH_EVALUATE},
    {"admin", AUTH_ADMIN},
};
#define N_SCOPES (sizeof scope_names / sizeof scope_names[0])

auth *auth_new(void)
{
    auth *a = calloc(1, sizeof *a);
    if (a)
        pthread_rwlock_init(&a->lock, NULL);
    return a;
}

void auth_free(auth *a)
{
    if (!a)
        return;
    pthread_rwlock_destroy(&a->lock);
    free(a->t.e);
    free(a);
}

static int sha256(const char *s, size_t n, uint8_t out[DIGEST_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, s, n, out) == 0 ? 0 : -1;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The next field of a line (up to a blank) into *f, *n; 0 at the end of
 * the line or at a comment. */
static int next_field(const char **s, const char **f, size_t *n)
{
    *s += strspn(*s, " \t\r");
    if (!**s || **s == '#')
        return 0;
    *f = *s;
    *n = strcspn(*s, " \t\r");
    *s += *n;
    return 1;
}

/* Parses one non-blank line (NUL-terminated, without its newline) into e.
 * 0, or -1 with why in err. */
static int parse_line(const char *line, entry *e, char *err, size_t errlen)
{
    const char *s = line, *tok, *name, *scopes, *extra;
    size_t tn, nn, sn, xn;
    if (!next_field(&s, &tok, &tn))
        return 1; /* blank or a comment */
    if (!next_field(&s, &name, &nn) || !next_field(&s, &scopes, &sn)) {
        snprintf(err, errlen, "wants TOKEN CLIENT SCOPES (three fields)");
        return -1;
    }
    if (next_field(&s, &extra, &xn)) {
        snprintf(err, errlen, "has more than three fields (TOKEN CLIENT SCOPES)");
        return -1;
    }
    for (size_t i = 0; i < tn; i++)
        if (tok[i] <= ' ' || tok[i] >= 0x7f) {
            snprintf(err, errlen, "the token has a character that is not visible ASCII");
            return -1;
        }
    if (tn > 7 && !strncmp(tok, "sha256:", 7)) {
        if (tn != 7 + 2 * DIGEST_LEN) {
            snprintf(err, errlen, "sha256: wants 64 hex digits (the SHA-256 of the token)");
            return -1;
        }
        for (size_t i = 0; i < DIGEST_LEN; i++) {
            int hi = hex_digit(tok[7 + 2 * i]), lo = hex_digit(tok[8 + 2 * i]);
            if (hi < 0 || lo < 0) {
                snprintf(err, errlen, "sha256: wants 64 hex digits (the SHA-256 of the token)");
                return -1;
            }
            e->digest[i] = (uint8_t)(hi << 4 | lo);
        }
    } else if (tn > TOKEN_MAX) {
        snprintf(err, errlen, "the token is longer than %d characters", TOKEN_MAX);
        return -1;
    } else if (sha256(tok, tn, e->digest)) {
        snprintf(err, errlen, "SHA-256 failed");
        return -1;
    }
    if (nn > AUTH_NAME_MAX) {
        snprintf(err, errlen, "the client name is longer than %d characters", AUTH_NAME_MAX);
        return -1;
    }
    for (size_t i = 0; i < nn; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@')) {
            snprintf(err, errlen, "the client name '%.*s' has a character other than letters, "
                     "digits and . _ - @", (int)nn, name);
            return -1;
        }
    }
    snprintf(e->client, sizeof e->client, "token:%.*s", (int)nn, name);
    e->scopes = 0;
    for (size_t i = 0; i < sn;) {
        size_t k = strcspn(scopes + i, ",");
        if (k > sn - i)
            k = sn - i;
        unsigned bit = 0;
        for (size_t j = 0; j < N_SCOPES; j++)
            if (strlen(scope_names[j].name) == k && !strncmp(scope_names[j].name, scopes + i, k))
                bit = scope_names[j].bit;
        if (!bit) {
            snprintf(err, errlen, "unknown scope '%.*s' (infer, attack, evaluate, admin)",
                     (int)k, scopes + i);
            return -1;
        }
        e->scopes |= bit;
        i += k + 1;
    }
    return 0;
}

/* Reads the whole file into a NUL-terminated buffer, or NULL with err. */
static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--auth-tokens %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
    int bad = !buf || ferror(f) || n > FILE_MAX;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "--auth-tokens %s: %s", path,
                 !buf ? "out of memory" : n > FILE_MAX ? "larger than 1 MiB" : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "--auth-tokens %s: holds a NUL byte (not a text file)", path);
        free(buf);
        return NULL;
    }
    return buf;
}

int auth_load_text(auth *a, char *text, const char *source, char *err, size_t errlen)
{
    table t = {0};
    int cap = 0, lineno = 0, rc = 0;
    for (char *line = text; line && !rc;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        entry e;
        char why[200];
        int r = parse_line(line, &e, why, sizeof why);
        for (int i = 0; r == 0 && i < t.n; i++)
            if (!memcmp(t.e[i].digest, e.digest, DIGEST_LEN)) {
                snprintf(why, sizeof why, "the same token as another line");
                r = -1;
            }
        if (r < 0) {
            snprintf(err, errlen, "--auth-tokens %s, line %d: %s", source, lineno, why);
            rc = -1;
        } else if (r == 0) {
            if (t.n == cap) {
                cap = cap ? 2 * cap : 8;
                entry *ne = realloc(t.e, (size_t)cap * sizeof *ne);
                if (!ne) {
                    snprintf(err, errlen, "--auth-tokens %s: out of memory", source);
                    rc = -1;
                    break;
                }
                t.e = ne;
            }
            t.e[t.n++] = e;
        }
        line = nl ? nl + 1 : NULL;
    }
    if (!rc && t.n == 0) {
        snprintf(err, errlen, "--auth-tokens %s holds no token (TOKEN CLIENT SCOPES lines)",
                 source);
        rc = -1;
    }
    if (rc) {
        free(t.e);
        return -1;
    }
    pthread_rwlock_wrlock(&a->lock);
    table old = a->t;
    a->t = t;
    pthread_rwlock_unlock(&a->lock);
    free(old.e);
    return 0;
}

int auth_load(auth *a, const char *path, char *err, size_t errlen)
{
    char *text = read_file(path, err, errlen);
    if (!text)
        return -1;
    int rc = auth_load_text(a, text, path, err, errlen);
    free(text);
    return rc;
}

int auth_count(auth *a)
{
    pthread_rwlock_rdlock(&a->lock);
    int n = a->t.n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

auth_verdict auth_check(auth *a, const char *token, unsigned scope,
                        char client[AUTH_CLIENT_LEN])
{
    if (!token || !*token)
        return AUTH_MISSING;
    uint8_t d[DIGEST_LEN];
    size_t n = strlen(token);
    if (n > TOKEN_MAX || sha256(token, n, d))
        return AUTH_WRONG;
    pthread_rwlock_rdlock(&a->lock);
    /* Every entry is compared in full; found is the matching index plus one. */
    unsigned found = 0;
    for (int i = 0; i < a->t.n; i++) {
        unsigned diff = 0;
        for (int k = 0; k < DIGEST_LEN; k++)
            diff |= (unsigned)(a->t.e[i].digest[k] ^ d[k]);
        unsigned equal = ((diff - 1) >> 8) & 1; /* 1 when diff is 0 */
        found |= (0u - equal) & (unsigned)(i + 1);
    }
    auth_verdict v = AUTH_WRONG;
    if (found) {
        const entry *e = &a->t.e[found - 1];
        memcpy(client, e->client, AUTH_CLIENT_LEN);
        v = (e->scopes & scope) == scope ? AUTH_OK : AUTH_FORBIDDEN;
    }
    pthread_rwlock_unlock(&a->lock);
    return v;
}

const char *auth_bearer(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7))
        return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

const char *auth_scope_name(unsigned scope)
{
    for (size_t j = 0; j < N_SCOPES; j++)
        if (scope_names[j].bit == scope)
            return scope_names[j].name;
    return "none";
}

unsigned auth_scope_of_kind(const char *kind)
{
    if (!strcmp(kind, "attack"))
        return AUTH_ATTACK;
    if (!strcmp(kind, "evaluation") || !strcmp(kind, "lipschitz") || !strcmp(kind, "units"))
        return AUTH_EVALUATE;
    if (!strcmp(kind, "inference") || !strcmp(kind, "predict"))
        return AUTH_INFER;
    return AUTH_ADMIN; /* a kind this table does not know: only the operator */
}
