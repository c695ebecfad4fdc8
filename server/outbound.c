/* outbound — the guard and libcurl behind it; see outbound.h. */
#include "server/outbound.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- the pure checks ------------------------------------------------------- */

/* Whether the first bits of a and b agree. */
static int prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole))
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int outbound_allow_parse(const char *list, outbound_policy *p, char *err, size_t errlen)
{
    p->n_allow = 0;
    for (const char *s = list; *s;) {
        size_t n = strcspn(s, ",");
        char entry[64];
        if (n == 0 || n >= sizeof entry) {
            snprintf(err, errlen, "--outbound-allow: '%.*s' is not a CIDR (like 10.0.0.0/8 "
                     "or ::1/128)", (int)(n > 60 ? 60 : n), s);
            return -1;
        }
        memcpy(entry, s, n);
        entry[n] = '\0';
        if (p->n_allow == OUTBOUND_MAX_ALLOW) {
            snprintf(err, errlen, "--outbound-allow lists more than %d CIDRs",
                     OUTBOUND_MAX_ALLOW);
            return -1;
        }
        outbound_cidr *c = &p->allow[p->n_allow];
        memset(c, 0, sizeof *c);
        char *slash = strchr(entry, '/');
        if (slash)
            *slash = '\0';
        if (inet_pton(AF_INET, entry, c->addr) == 1) {
            c->v6 = 0;
            c->bits = 32;
        } else if (inet_pton(AF_INET6, entry, c->addr) == 1) {
            c->v6 = 1;
            c->bits = 128;
        } else {
            snprintf(err, errlen, "--outbound-allow: '%s' is not an IPv4 or IPv6 address",
                     entry);
            return -1;
        }
        if (slash) {
            char *end;
            long bits = strtol(slash + 1, &end, 10);
            if (end == slash + 1 || *end || bits < 0 || bits > c->bits) {
                snprintf(err, errlen, "--outbound-allow: '/%s' is not a prefix length of "
                         "0 to %d", slash + 1, c->bits);
                return -1;
            }
            c->bits = (int)bits;
        }
        p->n_allow++;
        s += n;
        if (*s)
            s++;
    }
    return 0;
}

static int allowed(const outbound_policy *p, int v6, const uint8_t *addr)
{
    for (int i = 0; i < p->n_allow; i++)
        if (p->allow[i].v6 == v6 && prefix_match(p->allow[i].addr, addr, p->allow[i].bits))
            return 1;
    return 0;
}

/* The rule an IPv4 address falls under, or NULL for a public one. */
static const char *v4_rule(const uint8_t *a)
{
    static const struct {
        uint8_t net[4];
        int bits;
        const char *rule;
    } ranges[] = {
        {{0, 0, 0, 0}, 8, "an unspecified (this-network) address"},
        {{127, 0, 0, 0}, 8, "a loopback address"},
        {{10, 0, 0, 0}, 8, "a private address (10.0.0.0/8)"},
        {{172, 16, 0, 0}, 12, "a private address (172.16.0.0/12)"},
        {{192, 168, 0, 0}, 16, "a private address (192.168.0.0/16)"},
        {{100, 64, 0, 0}, 10, "a shared (carrier-grade NAT) address (100.64.0.0/10)"},
        {{169, 254, 0, 0}, 16, "a link-local address (cloud metadata services live there)"},
        {{192, 0, 0, 0}, 24, "an IETF protocol assignment address (192.0.0.0/24)"},
        {{198, 18, 0, 0}, 15, "a benchmarking address (198.18.0.0/15)"},
        {{255, 255, 255, 255}, 32, "the broadcast address"},
        {{224, 0, 0, 0}, 4, "a multicast address"},
        {{240, 0, 0, 0}, 4, "a reserved address (240.0.0.0/4)"},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (prefix_match(ranges[i].net, a, ranges[i].bits))
            return ranges[i].rule;
    return NULL;
}

const char *outbound_address_rule(const outbound_policy *p, int v6, const uint8_t *addr)
{
    if (allowed(p, v6, addr))
        return NULL;
    if (!v6)
        return v4_rule(addr);
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                                   nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    /* the forms that carry an IPv4 address: judged by it (and the list) */
    const uint8_t *v4 = NULL;
    const char *form = NULL;
    if (!memcmp(addr, zero, 16))
        return "an unspecified address (::)";
    if (!memcmp(addr, zero, 15) && addr[15] == 1)
        return "a loopback address (::1)";
    if (!memcmp(addr, mapped, 12))
        v4 = addr + 12, form = "IPv4-mapped";
    else if (!memcmp(addr, zero, 12))
        v4 = addr + 12, form = "IPv4-compatible";
    else if (!memcmp(addr, nat64, 12))
        v4 = addr + 12, form = "NAT64";
    else if (addr[0] == 0x20 && addr[1] == 0x02)
        v4 = addr + 2, form = "6to4";
    if (v4) {
        if (allowed(p, 0, v4))
            return NULL;
        const char *rule = v4_rule(v4);
        if (!rule)
            return NULL;
        static const char *const phrases[][2] = {
            {"IPv4-mapped", "an IPv4-mapped IPv6 form of a refused IPv4 address"},
            {"IPv4-compatible", "an IPv4-compatible IPv6 form of a refused IPv4 address"},
            {"NAT64", "a NAT64 IPv6 form of a refused IPv4 address"},
            {"6to4", "a 6to4 IPv6 form of a refused IPv4 address"},
        };
        for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
            if (!strcmp(form, phrases[i][0]))
                return phrases[i][1];
    }
    if ((addr[0] & 0xfe) == 0xfc)
        return "a unique-local (private) address (fc00::/7)";
    if (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80)
        return "a link-local address (fe80::/10)";
    if (addr[0] == 0xfe && (addr[1] & 0xc0) == 0xc0)
        return "a site-local address (fec0::/10)";
    if (addr[0] == 0xff)
        return "a multicast address (ff00::/8)";
    return NULL;
}

/* Bytes a URL's path and query may hold: printable ASCII but space, quote,
 * angle brackets, backslash and the like that parsers read differently. */
static int url_byte_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"<>\\^`{|}", c);
}

int outbound_parse_url(const char *url, outbound_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(url);
    if (len >= OUTBOUND_URL_MAX) {
        snprintf(err, errlen, "the URL is longer than %d bytes", OUTBOUND_URL_MAX - 1);
        return -1;
    }
    const char *s;
    if (!strncasecmp(url, "http://", 7))
        s = url + 7;
    else if (!strncasecmp(url, "https://", 8))
        s = url + 8, out->https = 1;
    else {
        snprintf(err, errlen, "only http:// and https:// URLs are fetched, not '%.40s'", url);
        return -1;
    }
    size_t alen = strcspn(s, "/?#");
    const char *rest = s + alen;
    if (memchr(s, '@', alen)) {
        snprintf(err, errlen, "URLs with user info (user@host) are refused");
        return -1;
    }
    const char *port = NULL;
    size_t hlen;
    if (*s == '[') {
        const char *close = memchr(s, ']', alen);
        if (!close) {
            snprintf(err, errlen, "the URL's IPv6 address has no closing ]");
            return -1;
        }
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= sizeof out->host) {
            snprintf(err, errlen, "the URL's IPv6 address is empty or too long");
            return -1;
        }
        memcpy(out->host, s + 1, hlen);
        out->host_v6 = 1;
        uint8_t a[16];
        if (inet_pton(AF_INET6, out->host, a) != 1) {
            snprintf(err, errlen, "[%s] is not an IPv6 address", out->host);
            return -1;
        }
        if (close + 1 < s + alen) {
            if (close[1] != ':') {
                snprintf(err, errlen, "bytes after the URL's IPv6 address");
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', alen);
        hlen = colon ? (size_t)(colon - s) : alen;
        if (colon)
            port = colon + 1;
        if (hlen == 0 || hlen >= sizeof out->host) {
            snprintf(err, errlen, "the URL has no host, or one longer than %zu bytes",
                     sizeof out->host - 1);
            return -1;
        }
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
                snprintf(err, errlen, "the URL's host holds byte 0x%02x; hosts are letters, "
                         "digits, '.', '-' and '_' (or an [IPv6] address)", c);
                return -1;
            }
            out->host[i] = (char)tolower(c);
        }
    }
    out->port = out->https ? 443 : 80;
    if (port) {
        const char *end = s + alen;
        long v = 0;
        if (port == end || end - port > 5) {
            snprintf(err, errlen, "the URL's port is empty or too long");
            return -1;
        }
        for (const char *c = port; c < end; c++) {
            if (!isdigit((unsigned char)*c)) {
                snprintf(err, errlen, "the URL's port is not a number");
                return -1;
            }
            v = v * 10 + (*c - '0');
        }
        if (v < 1 || v > 65535) {
            snprintf(err, errlen, "the URL's port %ld is not in 1..65535", v);
            return -1;
        }
        out->port = (int)v;
    }
    /* path and query; the fragment is the client's and is dropped */
    size_t rlen = strcspn(rest, "#");
    for (size_t i = 0; i < rlen; i++)
        if (!url_byte_ok((unsigned char)rest[i])) {
            snprintf(err, errlen, "the URL holds byte 0x%02x, which must be %%-encoded",
                     (unsigned char)rest[i]);
            return -1;
        }
    if (rest[rlen] == '#')
        for (const char *c = rest + rlen + 1; *c; c++)
            if (!url_byte_ok((unsigned char)*c) && *c != '#') {
                snprintf(err, errlen, "the URL holds byte 0x%02x, which must be %%-encoded",
                         (unsigned char)*c);
                return -1;
            }
    if (rlen == 0 || *rest == '?')
        snprintf(out->rest, sizeof out->rest, "/%.*s", (int)rlen, rest);
    else
        snprintf(out->rest, sizeof out->rest, "%.*s", (int)rlen, rest);
    return 0;
}

/* ---- resolution ------------------------------------------------------------ */

/* Checks one address of t's host; 0, or -1 with the refusal. */
static int check_addr(const outbound_policy *p, const char *url, const struct sockaddr *sa,
                      int literal, outbound_target *t, char *err, size_t errlen)
{
    int v6 = sa->sa_family == AF_INET6;
    const uint8_t *a = v6 ? ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr
                          : (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    char text[INET6_ADDRSTRLEN];
    inet_ntop(v6 ? AF_INET6 : AF_INET, a, text, sizeof text);
    const char *rule = outbound_address_rule(p, v6, a);
    if (rule) {
        if (literal)
            snprintf(err, errlen, "%.200s is refused: %s is %s; --outbound-allow lists the "
                     "ranges that may be called", url, text, rule);
        else
            snprintf(err, errlen, "%.200s is refused: it resolves to %s, %s; "
                     "--outbound-allow lists the ranges that may be called", url, text, rule);
        return -1;
    }
    for (int i = 0; i < t->n_addrs; i++)
        if (!strcmp(t->addrs[i], text))
            return 0;
    if (t->n_addrs < OUTBOUND_MAX_ADDRS) {
        /* CURLOPT_RESOLVE wants IPv6 addresses in brackets */
        snprintf(t->addrs[t->n_addrs++], sizeof t->addrs[0], v6 ? "[%s]" : "%s", text);
    }
    return 0;
}

int outbound_check(const outbound_policy *p, const char *url, outbound_target *t, char *err,
                   size_t errlen)
{
    memset(t, 0, sizeof *t);
    char why[256];
    if (outbound_parse_url(url, &t->url, why, sizeof why)) {
        snprintf(err, errlen, "%.200s is refused: %s", url, why);
        return -1;
    }
    uint8_t a[16];
    int literal = inet_pton(t->url.host_v6 ? AF_INET6 : AF_INET, t->url.host, a) == 1;
    if (p->proxy[0] && !literal)
        return 0; /* the proxy resolves the name */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = literal ? AI_NUMERICHOST : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(t->url.host, NULL, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "%.200s is refused: its host does not resolve (%s)", url,
                 gai_strerror(rc));
        return -1;
    }
    int bad = 0;
    for (struct addrinfo *ai = res; ai && !bad; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            bad = check_addr(p, url, ai->ai_addr, literal, t, err, errlen);
    freeaddrinfo(res);
    if (!bad && t->n_addrs == 0) {
        snprintf(err, errlen, "%.200s is refused: its host has no IPv4 or IPv6 address", url);
        bad = -1;
    }
    return bad ? -1 : 0;
}

/* ---- the request ----------------------------------------------------------- */

int outbound_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

typedef struct fetch_ctx {
    const outbound_policy *policy;
    outbound_response *out;
    size_t cap, max_bytes;
    int too_big;
    int refused;       /* the socket callback refused an address */
    char refused_addr[INET6_ADDRSTRLEN];
} fetch_ctx;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    fetch_ctx *c = arg;
    size_t len = size * n;
    outbound_response *o = c->out;
    if (o->len + len > c->max_bytes) {
        c->too_big = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    if (o->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < o->len + len + 1)
            cap *= 2;
        uint8_t *b = realloc(o->body, cap);
        if (!b)
            return 0;
        o->body = b;
        c->cap = cap;
    }
    memcpy(o->body + o->len, data, len);
    o->len += len;
    o->body[o->len] = '\0';
    return len;
}

/* The last guard before connect(): the address curl is about to connect
 * to is judged again, so that no second resolution can slip past. */
static curl_socket_t on_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *sa)
{
    fetch_ctx *c = arg;
    (void)purpose;
    if (!c->policy->proxy[0]) {
        int v6 = sa->family == AF_INET6;
        if (!v6 && sa->family != AF_INET) {
            c->refused = 1;
            return CURL_SOCKET_BAD;
        }
        const uint8_t *a = v6 ? ((struct sockaddr_in6 *)&sa->addr)->sin6_addr.s6_addr
                              : (const uint8_t *)&((struct sockaddr_in *)&sa->addr)->sin_addr;
        if (outbound_address_rule(c->policy, v6, a)) {
            c->refused = 1;
            inet_ntop(v6 ? AF_INET6 : AF_INET, a, c->refused_addr, sizeof c->refused_addr);
            return CURL_SOCKET_BAD;
        }
    }
    return socket(sa->family, sa->socktype, sa->protocol);
}

outbound_result outbound_fetch(const outbound_policy *p, const outbound_request *r,
                               outbound_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    outbound_target t;
    if (outbound_check(p, r->url, &t, err, errlen))
        return OUTBOUND_REFUSED;
    /* the URL curl sees is the one the guard read, rebuilt */
    char url[OUTBOUND_URL_MAX + 300], resolve[OUTBOUND_MAX_ADDRS * 50 + 300];
    const char *scheme = t.url.https ? "https" : "http";
    if (t.url.host_v6)
        snprintf(url, sizeof url, "%s://[%s]:%d%s", scheme, t.url.host, t.url.port, t.url.rest);
    else
        snprintf(url, sizeof url, "%s://%s:%d%s", scheme, t.url.host, t.url.port, t.url.rest);
    struct curl_slist *pins = NULL, *headers = NULL;
    if (t.n_addrs && !t.url.host_v6) {
        int n = snprintf(resolve, sizeof resolve, "%s:%d:", t.url.host, t.url.port);
        for (int i = 0; i < t.n_addrs && n < (int)sizeof resolve; i++)
            n += snprintf(resolve + n, sizeof resolve - (size_t)n, "%s%s", i ? "," : "",
                          t.addrs[i]);
        pins = curl_slist_append(NULL, resolve);
    }
    for (int i = 0; i < r->n_headers; i++)
        headers = curl_slist_append(headers, r->headers[i]);
    headers = curl_slist_append(headers, "Expect:");
    CURL *h = curl_easy_init();
    fetch_ctx c = {.policy = p, .out = out, .max_bytes = r->max_bytes};
    outbound_result result = OUTBOUND_FAILED;
    if (!h || !headers || (t.n_addrs && !t.url.host_v6 && !pins)) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, p->proxy);
    if (!p->proxy[0])
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (pins)
        curl_easy_setopt(h, CURLOPT_RESOLVE, pins);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &c);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "blindspotd");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes);
    long ms = (long)(r->timeout * 1000);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1L);
    if (r->body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    char *type = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type);
    if (type) {
        size_t n = strcspn(type, "; \t");
        for (size_t i = 0; i < n && i + 1 < sizeof out->content_type; i++)
            out->content_type[i] = (char)tolower((unsigned char)type[i]);
    }
    if (c.refused) {
        result = OUTBOUND_REFUSED;
        snprintf(err, errlen, "%.200s is refused: the connection would go to %s, which the "
                 "guard refuses", r->url, c.refused_addr[0] ? c.refused_addr : "an address");
    } else if (c.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errlen, "%.200s answered more than %zu bytes", r->url, r->max_bytes);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, errlen, "%.200s did not answer within %g s", r->url, r->timeout);
    } else if (rc != CURLE_OK) {
        snprintf(err, errlen, "%.200s: %s", r->url, curl_easy_strerror(rc));
    } else {
        result = OUTBOUND_OK;
    }
done:
    if (result != OUTBOUND_OK)
        outbound_response_free(out);
    if (h)
        curl_easy_cleanup(h);
    curl_slist_free_all(pins);
    curl_slist_free_all(headers);
    return result;
}

void outbound_response_free(outbound_response *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
