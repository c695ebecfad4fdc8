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

/* How specifically the coding r (rlen bytes) matches coding: 2 by name, 1
 * as the wildcard, 0 not at all. */
static int coding_match(const char *r, size_t rlen, const char *coding)
{
    if (rlen == 1 && *r == '*')
        return 1;
    return rlen == strlen(coding) && !strncasecmp(r, coding, rlen) ? 2 : 0;
}

/* The q the list header gives to name, each element matched by match (the
 * most specific match's q counts); 0 when none matches. */
static double list_quality(const char *header, const char *name,
                           int (*match)(const char *, size_t, const char *))
{
    int best = 0;
    double q = 0.0;
    const char *s = header;
    while (*s) {
        const char *end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        const char *r = skip_ows(s);
        size_t rlen = strcspn(r, ";, \t");
        if (r + rlen > end)
            rlen = (size_t)(end - r);
        int how = match(r, rlen, name);
        double rq = how ? range_q(r + rlen, end) : -1.0;
        if (how > best && rq >= 0.0) {
            best = how;
            q = rq;
        }
        s = *end ? end + 1 : end;
    }
    return q;
}

double bs_accept_quality(const char *accept, const char *type)
{
    if (!accept || !*skip_ows(accept))
        return 1.0;
    return list_quality(accept, type, range_match);
}

double bs_accept_coding(const char *accept_encoding, const char *coding)
{
    return accept_encoding ? list_quality(accept_encoding, coding, coding_match) : 0.0;
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
