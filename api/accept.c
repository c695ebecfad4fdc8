/* accept — Accept header negotiation (see accept.h). */
#include "api/accept.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Skips spaces and tabs. */
static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* The q parameter of a range's parameters [s, end): 1 when absent; -1 when
 * it is not a number in [0,1], which makes the range match nothing. */
static double range_q(const char *s, const char *end)
{
    while ((s = memchr(s, ';', (size_t)(end - s))) != NULL) {
        s = skip_ows(s + 1);
        if ((*s == 'q' || *s == 'Q') && s[1] == '=') {
            char *stop;
            double q = strtod(s + 2, &stop);
            const char *after = skip_ows(stop);
            if (stop == s + 2 || (after < end && *after != ';') || !(q >= 0.0 && q <= 1.0))
                return -1.0;
            return q;
        }
    }
    return 1.0;
}

/* How specifically the range r (rlen bytes, no parameters) matches type:
 * 3 exactly, 2 by its major type with a wildcard subtype, 1 as the
 * wildcard of everything, 0 not at all. */
static int range_match(const char *r, size_t rlen, const char *type)
{
    size_t tlen = strlen(type);
    const char *slash = memchr(r, '/', rlen);
    if (!slash || slash == r || slash + 1 == r + rlen)
        return 0;
    size_t major = (size_t)(slash - r);
    if (rlen == 3 && !strncmp(r, "*/*", 3))
        return 1;
    if (rlen == major + 2 && slash[1] == '*')
        return tlen > major && type[major] == '/' && !strncasecmp(r, type, major) ? 2 : 0;
    return rlen == tlen && !strncasecmp(r, type, tlen) ? 3 : 0;
}

double bs_accept_quality(const char *accept, const char *type)
{
    if (!accept || !*skip_ows(accept))
        return 1.0;
    int best = 0;
    double q = 0.0;
    const char *s = accept;
    while (*s) {
        const char *end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        const char *r = skip_ows(s);
        size_t rlen = strcspn(r, ";, \t");
        if (r + rlen > end)
            rlen = (size_t)(end - r);
        int how = range_match(r, rlen, type);
        double rq = how ? range_q(r + rlen, end) : -1.0;
        if (how > best && rq >= 0.0) {
            best = how;
            q = rq;
        }
        s = *end ? end + 1 : end;
    }
    return q;
}

int bs_accept_pick(const char *accept, const char *const *offered, int n)
{
    int pick = -1;
    double best = 0.0;
    for (int i = 0; i < n; i++) {
        double q = bs_accept_quality(accept, offered[i]);
        if (q > best) {
            best = q;
            pick = i;
        }
    }
    return pick;
}
