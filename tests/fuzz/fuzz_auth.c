/* fuzz_auth — server/auth.h's tokens file and its verdict on a bearer
 * token. The input is the file's text, a NUL, and an Authorization
 * header's value (absent without the NUL).
 *
 * Promises checked: a refused file says which line or that it holds no
 * token, and leaves the tokens in force as they were; an accepted one
 * holds at least one token; the first token of an accepted file (written
 * in clear) is known, whatever scope is asked; a known token's client is
 * "token:" and a name of letters, digits and . _ - @ only (it goes into
 * log lines and job owners); any other verdict on a token is that it is
 * wrong; no token is a missing one. */
#include "tests/fuzz/fuzz.h"

#include "server/auth.h"

#include <string.h>

/* A tokens file every run starts from: the table a refused file keeps. */
static const char base_file[] = "fuzz-base-token base infer\n";

/* The first field of the first line that is neither blank nor a comment,
 * when that line is a token in clear, into out (size bytes); "" otherwise. */
static void first_token(const char *text, char *out, size_t size)
{
    out[0] = '\0';
    for (const char *line = text; line && *line;) {
        const char *s = line + strspn(line, " \t\r");
        if (*s && *s != '\n' && *s != '#') {
            size_t n = strcspn(s, " \t\r\n");
            if (n < size && strncmp(s, "sha256:", 7)) {
                memcpy(out, s, n);
                out[n] = '\0';
            }
            return;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
}

static int name_ok(const char *client)
{
    if (strncmp(client, "token:", 6) || !client[6])
        return 0;
    for (const char *c = client + 6; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (*c >= '0' && *c <= '9') || strchr("._-@", *c)))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char *text = fuzz_text(buf, len);
    auth *a = auth_new();
    char *base = strdup(base_file);
    PROMISE(text && a && base, "out of memory");
    char err[512];
    PROMISE(auth_load_text(a, base, "base", err, sizeof err) == 0, "base file: %s", err);
    free(base);
    size_t at = strlen(text);
    const char *header = at < len ? text + at + 1 : NULL;
    char first[600];
    first_token(text, first, sizeof first);
    char *file = strdup(text);
    PROMISE(file != NULL, "out of memory");
    err[0] = '\0';
    int rc = auth_load_text(a, file, "fuzz", err, sizeof err);
    free(file);
    char client[AUTH_CLIENT_LEN];
    if (rc != 0) {
        PROMISE(strstr(err, "line ") || strstr(err, "holds no token") ||
                    strstr(err, "out of memory"), "refused without saying where: '%s'", err);
        PROMISE(auth_count(a) == 1, "a refused file changed the tokens");
        PROMISE(auth_check(a, "fuzz-base-token", AUTH_INFER, client) == AUTH_OK,
                "a refused file dropped the tokens in force");
    } else {
        PROMISE(auth_count(a) >= 1, "an accepted file without tokens");
        if (first[0]) {
            auth_verdict v = auth_check(a, first, AUTH_ADMIN, client);
            PROMISE(v == AUTH_OK || v == AUTH_FORBIDDEN, "the file's first token '%s': %d",
                    first, v);
            PROMISE(name_ok(client), "client '%s'", client);
        }
    }
    PROMISE(auth_check(a, NULL, AUTH_INFER, client) == AUTH_MISSING, "no token not missing");
    const char *token = auth_bearer(header);
    if (token) {
        auth_verdict v = auth_check(a, token, AUTH_INFER, client);
        if (v == AUTH_OK || v == AUTH_FORBIDDEN)
            PROMISE(name_ok(client), "client '%s'", client);
        else
            PROMISE(v == AUTH_WRONG, "token '%s': verdict %d", token, v);
    }
    auth_free(a);
    free(text);
    return 0;
}
