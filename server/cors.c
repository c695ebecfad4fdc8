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
