/* fuzz_cors — server/cors.h's verdict on a request's Origin and Host
 * headers under a --cors-origins list. The input is the list, the Origin
 * and the Host separated by NULs (a missing part is an absent header; a
 * list that cors_list_valid refuses stops the daemon, so it is only
 * checked not to crash).
 *
 * Promises checked: no Origin is no browser's request (CORS_NO_ORIGIN);
 * with CORS off no other origin is ever allowed; the daemon's own origin
 * is exactly http(s):// and the Host (the case of neither counts); an
 * origin allowed by a list is one of its entries (case aside) and so
 * holds no byte that could end a header or start another field; every
 * entry of a valid list is allowed from a page on another host; and the
 * verdict does not depend on the order of the list's entries. */
#include "tests/fuzz/fuzz.h"

#include "server/cors.h"

#include <string.h>
#include <strings.h>

/* Whether origin is http:// or https:// and host, case aside. */
static int is_own(const char *origin, const char *host)
{
    const char *rest = !strncasecmp(origin, "http://", 7)    ? origin + 7
                       : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                             : NULL;
    return rest && host && *host && !strcasecmp(rest, host);
}

/* Whether origin is one of the comma-separated entries of list. */
static int listed(const char *list, const char *origin)
{
    size_t len = strlen(origin);
    for (const char *s = list;;) {
        size_t n = strcspn(s, ",");
        if (n == len && !strncasecmp(s, origin, n))
            return 1;
        s += n;
        if (!*s)
            return 0;
        s++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char *text = fuzz_text(buf, len);
    if (!text)
        return 0;
    const char *list = text, *origin = NULL, *host = NULL;
    size_t at = strlen(text);
    if (at < len) {
        origin = text + at + 1;
        at += strlen(origin) + 1;
        if (at < len)
            host = text + at + 1;
    }
    char err[256];
    if (cors_list_valid(list, err, sizeof err) != 0) {
        PROMISE(err[0] != '\0', "a refused list without a message");
        free(text);
        return 0;
    }
    cors_verdict v = cors_check(list, origin, host);
    if (!origin) {
        PROMISE(v == CORS_NO_ORIGIN, "no Origin gives verdict %d", v);
        free(text);
        return 0;
    }
    PROMISE(v != CORS_NO_ORIGIN, "Origin '%s' taken for none", origin);
    PROMISE((v == CORS_SAME) == is_own(origin, host), "Origin '%s', Host '%s': verdict %d",
            origin, host ? host : "(none)", v);
    int star = !strcmp(list, "*");
    if (!*list)
        PROMISE(v != CORS_ALLOWED, "CORS off allowed '%s'", origin);
    if (v == CORS_ALLOWED && !star) {
        PROMISE(listed(list, origin), "'%s' allowed but not listed in '%s'", origin, list);
        for (const char *s = origin; *s; s++)
            PROMISE(*s > ' ' && *s < 0x7f && *s != ',', "allowed '%s' holds byte 0x%02x", origin,
                    (unsigned char)*s);
    }
    if (*list && !star) {
        char *rev = malloc(strlen(list) + 1);
        PROMISE(rev != NULL, "out of memory");
        fuzz_reversed_list(list, rev);
        PROMISE(cors_check(rev, origin, host) == v, "'%s' and '%s' judge '%s' apart", list, rev,
                origin);
        free(rev);
        /* every entry is allowed from a page on another host */
        for (const char *s = list;;) {
            size_t n = strcspn(s, ",");
            char entry[512];
            if (n < sizeof entry) {
                memcpy(entry, s, n);
                entry[n] = '\0';
                cors_verdict e = cors_check(list, entry, "blindspot.invalid:1");
                PROMISE(e == CORS_ALLOWED || is_own(entry, "blindspot.invalid:1"),
                        "listed '%s' gets verdict %d", entry, e);
            }
            s += n;
            if (!*s)
                break;
            s++;
        }
    }
    free(text);
    return 0;
}
