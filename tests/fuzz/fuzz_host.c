/* fuzz_host — server/cors.h's Host check (--allowed-hosts) against DNS
 * rebinding. The input is one byte whose low bit says whether the daemon
 * listens on a loopback address, then the list and the Host header
 * separated by a NUL (no NUL: no Host header; a list that cors_hosts_valid
 * refuses stops the daemon, so it is only checked not to crash).
 *
 * Promises checked: no Host (no browser's request) and "*" always pass, and
 * so does any Host without a list off the loopback address; otherwise an
 * allowed Host is printable, holds no comma, and its name (before the
 * port) is one of the entries' names (or a loopback name), case aside;
 * every entry of a valid list is allowed as written, and one without a
 * port with a port too; the default list never lets a name through that
 * merely starts or ends like a loopback name; and the verdict does not
 * depend on the order of the list's entries. */
#include "tests/fuzz/fuzz.h"

#include "server/cors.h"

#include <strings.h>

/* The length of the name part of a Host value: up to the ']' of an IPv6
 * address, else up to the first ':'. */
static size_t name_len(const char *s)
{
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        return close ? (size_t)(close - s) + 1 : strlen(s);
    }
    return strcspn(s, ":");
}

/* Whether the name of host is the name of one entry of list, case aside. */
static int named(const char *list, const char *host)
{
    size_t n = name_len(host);
    char *copy = strdup(list), *save = NULL;
    PROMISE(copy != NULL, "out of memory");
    int found = 0;
    for (char *e = strtok_r(copy, ",", &save); e && !found; e = strtok_r(NULL, ",", &save))
        found = name_len(e) == n && !strncasecmp(e, host, n);
    free(copy);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return 0;
    int loopback = buf[0] & 1;
    char *text = fuzz_text(buf + 1, len - 1);
    if (!text)
        return 0;
    const char *list = text, *host = NULL;
    if (strlen(text) < len - 1)
        host = text + strlen(text) + 1;
    char err[256];
    if (cors_hosts_valid(list, err, sizeof err) != 0) {
        PROMISE(err[0] != '\0', "a refused list without a message");
        free(text);
        return 0;
    }
    int ok = cors_host_allowed(list, loopback, host);
    int open = !strcmp(list, "*") || (!*list && !loopback);
    if (!host || open)
        PROMISE(ok, "Host '%s' refused under list '%s' (loopback %d)", host ? host : "(none)",
                list, loopback);
    if (host && !open && ok) {
        for (const char *s = host; *s; s++)
            PROMISE(*s > ' ' && *s < 0x7f && *s != ',', "allowed Host '%s' holds byte 0x%02x",
                    host, (unsigned char)*s);
        PROMISE(named(*list ? list : CORS_LOOPBACK_HOSTS, host),
                "Host '%s' allowed but not named in '%s'", host, list);
    }
    if (host && !*list && loopback) {
        char longer[600];
        snprintf(longer, sizeof longer, "%s.evil.example", host);
        PROMISE(!cors_host_allowed(list, 1, longer), "'%s' passes as a loopback name", longer);
        snprintf(longer, sizeof longer, "evil.%s", host);
        PROMISE(!cors_host_allowed(list, 1, longer), "'%s' passes as a loopback name", longer);
    }
    if (*list && strcmp(list, "*")) {
        if (host) {
            char *rev = malloc(strlen(list) + 1);
            PROMISE(rev != NULL, "out of memory");
            fuzz_reversed_list(list, rev);
            PROMISE(cors_host_allowed(rev, loopback, host) == ok,
                    "'%s' and '%s' judge Host '%s' apart", list, rev, host);
            free(rev);
        }
        char *copy = strdup(list), *save = NULL;
        PROMISE(copy != NULL, "out of memory");
        for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
            PROMISE(cors_host_allowed(list, loopback, e), "listed '%s' refused", e);
            char with_port[600];
            if (name_len(e) == strlen(e) && strlen(e) < 512) {
                snprintf(with_port, sizeof with_port, "%s:8080", e);
                PROMISE(cors_host_allowed(list, loopback, with_port), "'%s' refused", with_port);
            }
        }
        free(copy);
    }
    free(text);
    return 0;
}
