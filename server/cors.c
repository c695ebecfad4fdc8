/* cors — the origin list and the verdict on a request; see cors.h. */
#include "server/cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The length of the scheme and "://" of an http or https origin, or 0. */
static size_t scheme_len(const char *s)
{
    if (!strncasecmp(s, "http://", 7))
        return 7;
    if (!strncasecmp(s, "https://", 8))
        return 8;
    return 0;
}

/* Whether s[0..n) is an origin as browsers send it: a scheme, a non-empty
 * authority and nothing after it (no path, no trailing slash). */
static int origin_ok(const char *s, size_t n)
{
    size_t k = scheme_len(s);
    if (!k || k >= n)
        return 0;
    for (size_t i = k; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == '/' || s[i] == ',' || s[i] == '?' ||
            s[i] == '#' || s[i] == '@')
            return 0;
    return 1;
}

int cors_list_valid(const char *list, char *err, size_t errlen)
{
    if (!*list || !strcmp(list, "*"))
        return 0;
    for (const char *s = list;; s++) {
        size_t n = strcspn(s, ",");
        if (!origin_ok(s, n)) {
            snprintf(err, errlen, "--cors-origins wants * or a comma-separated list of "
                     "origins like https://a.example:8443 (no path, no spaces), got '%.*s'",
                     (int)n, s);
            return -1;
        }
        s += n;
        if (!*s)
            return 0;
    }
}

cors_verdict cors_check(const char *list, const char *origin, const char *host)
{
    if (!origin)
        return CORS_NO_ORIGIN;
    size_t k = scheme_len(origin);
    if (k && host && *host && !strcasecmp(origin + k, host))
        return CORS_SAME;
    if (!strcmp(list, "*"))
        return CORS_ALLOWED;
    size_t len = strlen(origin);
    if (!origin_ok(origin, len))
        return CORS_REFUSED; /* "null" and anything malformed */
    for (const char *s = list; *s;) {
        size_t n = strcspn(s, ",");
        if (n == len && !strncasecmp(s, origin, n))
            return CORS_ALLOWED;
        s += n;
        if (*s)
            s++;
    }
    return CORS_REFUSED;
}

/* The length of the name part of a Host value or list entry (an IPv6
 * address keeps its brackets), or 0 when what follows the name is not
 * nothing or ":" and a port of digits. */
static size_t host_name_len(const char *s, size_t n)
{
    size_t k = 0;
    if (n && s[0] == '[') {
        while (k < n && s[k] != ']')
            k++;
        if (k == n)
            return 0;
        k++;
    } else {
        while (k < n && s[k] != ':')
            k++;
    }
    if (k < n) {
        if (s[k] != ':' || k + 1 == n)
            return 0;
        for (size_t i = k + 1; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return 0;
    }
    return k;
}

/* Whether s[0..n) is a host name, [IPv6] or address with an optional port,
 * and nothing a header could hide behind. */
static int host_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ',' || s[i] == '/' || s[i] == '@' ||
            s[i] == '?' || s[i] == '#' || s[i] == '\\')
            return 0;
    return host_name_len(s, n) > 0;
}

int cors_hosts_valid(const char *list, char *err, size_t errlen)
{
    if (!*list || !strcmp(list, "*"))
        return 0;
    for (const char *s = list;; s++) {
        size_t n = strcspn(s, ",");
        if (!host_ok(s, n)) {
            snprintf(err, errlen, "--allowed-hosts wants * or a comma-separated list of host "
                     "names like api.example,localhost:8080 (no scheme, no spaces), got '%.*s'",
                     (int)n, s);
            return -1;
        }
        s += n;
        if (!*s)
            return 0;
    }
}

/* Whether Host value host[0..n) matches entry e[0..en): the whole value when
 * the entry names a port, else the name alone (any port). */
static int host_matches(const char *e, size_t en, const char *host, size_t n, size_t name)
{
    size_t ename = host_name_len(e, en);
    if (ename < en)
        return en == n && !strncasecmp(e, host, n);
    return en == name && !strncasecmp(e, host, name);
}

int cors_host_allowed(const char *list, int loopback, const char *host)
{
    if (!host)
        return 1;
    if (!strcmp(list, "*") || (!*list && !loopback))
        return 1;
    size_t n = strlen(host);
    if (!host_ok(host, n))
        return 0;
    size_t name = host_name_len(host, n);
    const char *entries = *list ? list : CORS_LOOPBACK_HOSTS;
    for (const char *s = entries; *s;) {
        size_t en = strcspn(s, ",");
        if (host_matches(s, en, host, n, name))
            return 1;
        s += en;
        if (*s)
            s++;
    }
    return 0;
}
