/* cors — which origins may call the API from a browser (--cors-origins),
 * and the Access-Control-* headers they get.
 *
 * A request without Origin (curl, the SDKs) is not a browser's and passes.
 * One whose Origin is the daemon's own (scheme://authority with the
 * authority its Host header) passes too. Any other Origin must be in the
 * list, or the list must be "*"; otherwise the request is refused before
 * any work, whatever its method or content type. "Origin: null" (a
 * sandboxed frame, a file: page) can be sent by any page, so it passes
 * only under "*". */
#ifndef BS_SERVER_CORS_H
#define BS_SERVER_CORS_H

#include <stddef.h>

typedef enum cors_verdict {
    CORS_NO_ORIGIN, /* no Origin header: not a cross-origin browser request */
    CORS_SAME,      /* the daemon's own origin */
    CORS_ALLOWED,   /* another origin, allowed by the list */
    CORS_REFUSED,   /* another origin, not allowed: 403 */
} cors_verdict;

/* What browsers may send beyond the safelisted headers, and what they may
 * read of an answer. */
#define CORS_ALLOW_HEADERS                                                                     \
    "Content-Type, Accept, Authorization, Inference-Header-Content-Length, Last-Event-ID, "     \
    "X-Request-Id"
#define CORS_EXPOSE_HEADERS                                                                    \
    "Location, Retry-After, X-Request-Id, Inference-Header-Content-Length, X-Blindspot-Model, " \
    "X-Blindspot-Original, X-Blindspot-Target, X-Blindspot-Label, X-Blindspot-Success, "       \
    "X-Blindspot-Status, X-Blindspot-Distortion, X-Blindspot-L2, X-Blindspot-Linf, "           \
    "X-Blindspot-C, X-Blindspot-Seconds"
#define CORS_MAX_AGE "600" /* seconds a browser may keep a preflight's answer */

/* Checks a --cors-origins value: "" (off), "*", or a comma-separated list
 * of http(s)://host[:port] origins. Returns 0, or -1 with a message. */
int cors_list_valid(const char *list, char *err, size_t errlen);

/* The verdict on a request's Origin (NULL: absent) given its Host header
 * (NULL: absent) and the list. */
cors_verdict cors_check(const char *list, const char *origin, const char *host);

/* The Host check against DNS rebinding (--allowed-hosts): a page of
 * another site whose name was made to resolve to the daemon's address
 * sends that name as Host, which the daemon then refuses; without the
 * check the page would count as the daemon's own origin. The names a
 * loopback address answers to when no list is given: */
#define CORS_LOOPBACK_HOSTS "localhost,127.0.0.1,[::1]"

/* Checks an --allowed-hosts value: "" (the default rule), "*", or a
 * comma-separated list of host[:port] (an IPv6 address in brackets).
 * Returns 0, or -1 with a message. */
int cors_hosts_valid(const char *list, char *err, size_t errlen);

/* Whether a request with this Host header (NULL: absent, which no browser
 * sends) is served: any Host under "*", or with no list on an address
 * other than loopback (loopback 0); else Host's name must be one of the
 * list's (or CORS_LOOPBACK_HOSTS's) names, case aside, with any port, or
 * equal an entry that names a port. */
int cors_host_allowed(const char *list, int loopback, const char *host);

#endif
