/* outbound — the one way the daemon makes a request of another host (a
 * webhook's POST, an image fetched by URL), behind one guard against
 * server-side request forgery.
 *
 * The guard: only http:// and https:// URLs without user info; the host is
 * resolved once (getaddrinfo) and every address it resolves to is checked;
 * loopback, private (RFC 1918, CGNAT, unique-local), link-local (with the
 * cloud metadata address 169.254.169.254), multicast, unspecified,
 * broadcast and reserved addresses, and the IPv6 forms that carry an IPv4
 * address (mapped, compatible, NAT64, 6to4), are refused unless a CIDR of
 * the allow list (--outbound-allow) holds them. libcurl then connects to
 * exactly the addresses checked (CURLOPT_RESOLVE pins them, and the socket
 * callback checks each address again before connecting), follows no
 * redirect, takes no proxy from the environment (only --outbound-proxy),
 * speaks only http and https, and stops at a size and a time cap. A
 * refused destination is refused before any connection is made.
 *
 * The URL and address checks (outbound_parse_url, outbound_address_rule,
 * outbound_allow_parse) are pure functions: no network, no state. */
#ifndef BS_SERVER_OUTBOUND_H
#define BS_SERVER_OUTBOUND_H

#include <stddef.h>
#include <stdint.h>

#define OUTBOUND_URL_MAX 2048   /* longest URL taken */
#define OUTBOUND_MAX_ALLOW 32   /* CIDRs in an allow list */
#define OUTBOUND_MAX_ADDRS 16   /* addresses of one host checked and pinned */

/* One CIDR of the allow list. */
typedef struct outbound_cidr {
    int v6;            /* 0: IPv4 (addr[0..3]), 1: IPv6 */
    uint8_t addr[16];
    int bits;          /* prefix length */
} outbound_cidr;

/* What the guard allows and the caps of a request. */
typedef struct outbound_policy {
    outbound_cidr allow[OUTBOUND_MAX_ALLOW];
    int n_allow;
    char proxy[256];   /* --outbound-proxy; "": none (the environment's is ignored) */
} outbound_policy;

/* A URL as the guard reads it. */
typedef struct outbound_url {
    int https;
    char host[256];    /* a name, an IPv4 literal, or an IPv6 literal without brackets */
    int host_v6;       /* host was [IPv6] */
    int port;          /* given, or 80 / 443 */
    char rest[OUTBOUND_URL_MAX]; /* path and query, from the first '/' or '?' ("/" if none) */
} outbound_url;

/* The comma-separated CIDRs of list ("127.0.0.1/32,10.0.0.0/8,::1/128"; a
 * bare address is a /32 or /128; "" allows nothing) into p's allow list.
 * 0, or -1 with a message naming the bad entry. */
int outbound_allow_parse(const char *list, outbound_policy *p, char *err, size_t errlen);

/* Reads url. 0, or -1 with a message naming the rule broken (scheme other
 * than http or https, user info, no host, bad port, bytes a URL may not
 * hold, too long). */
int outbound_parse_url(const char *url, outbound_url *out, char *err, size_t errlen);

/* The address (4 bytes when v6 is 0, else 16): NULL when p lets it be
 * connected to, else the rule that refuses it, as a phrase ("a loopback
 * address", "a link-local address (cloud metadata services live there)"). */
const char *outbound_address_rule(const outbound_policy *p, int v6, const uint8_t *addr);

/* A checked destination: the URL and the addresses its host resolved to,
 * every one allowed. */
typedef struct outbound_target {
    outbound_url url;
    int n_addrs;
    char addrs[OUTBOUND_MAX_ADDRS][48]; /* numeric, as CURLOPT_RESOLVE takes them */
} outbound_target;

/* Parses url, resolves its host once and checks every address. 0 with t
 * filled, or -1 with a message naming the rule ("http://x/ resolves to
 * 127.0.0.1, a loopback address; ...") — no connection is made either way.
 * With a proxy configured the proxy resolves the name: only a literal
 * address in the URL is checked then. */
int outbound_check(const outbound_policy *p, const char *url, outbound_target *t, char *err,
                   size_t errlen);

/* A request through the guard. */
typedef struct outbound_request {
    const char *url;
    const char *body;          /* POST this (body_len bytes); NULL: GET */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines, n_headers of them */
    int n_headers;
    size_t max_bytes;          /* the answer's body cap */
    double timeout;            /* seconds for the whole exchange */
} outbound_request;

typedef struct outbound_response {
    int status;                /* the HTTP status; 0 when none came */
    char content_type[128];    /* without parameters, lower case; "" when absent */
    uint8_t *body;             /* malloc'd, len bytes (NUL after them); NULL for none */
    size_t len;
} outbound_response;

typedef enum outbound_result {
    OUTBOUND_OK,       /* an answer came (any status: the caller judges it) */
    OUTBOUND_REFUSED,  /* the guard refused the destination: nothing was sent */
    OUTBOUND_FAILED,   /* no usable answer: connection, TLS, timeout, too big */
} outbound_result;

/* Makes r through the guard into out (freed with outbound_response_free).
 * A redirect is an answer like any other (its status is 3xx); it is not
 * followed. err holds the reason when the result is not OUTBOUND_OK. */
outbound_result outbound_fetch(const outbound_policy *p, const outbound_request *r,
                               outbound_response *out, char *err, size_t errlen);
void outbound_response_free(outbound_response *r);

/* Once, before any thread makes a request (curl_global_init). 0 or -1. */
int outbound_global_init(void);

#endif
