/* fuzz_outbound — server/outbound.h's pure checks: the URL reader and the
 * address rules under an allow list. The input is an allow list, a URL
 * and an address (4 or 16 bytes) separated by NULs; a missing part is
 * empty.
 *
 * Promises checked: a URL taken has an http(s) scheme, a host of only
 * letters, digits, '.', '-', '_' (or a valid IPv6 literal), a port in
 * 1..65535 and a path that starts with '/' and holds no byte a parser
 * could read differently; no URL with user info ('@' before the path) is
 * taken; the URL rebuilt from the parts reads back to the same parts; an
 * allow list taken holds at most OUTBOUND_MAX_ALLOW CIDRs of valid
 * prefix lengths; with no allow list, loopback, link-local and private
 * addresses are always refused, and an IPv4-mapped IPv6 address gets the
 * verdict of the IPv4 address it carries; an address the list covers is
 * allowed. */
#include "tests/fuzz/fuzz.h"

#include "server/outbound.h"

#include <ctype.h>
#include <string.h>

static void check_url(const char *url)
{
    outbound_url u;
    char err[256] = "";
    if (outbound_parse_url(url, &u, err, sizeof err)) {
        PROMISE(err[0] != '\0', "'%s' refused without a message", url);
        return;
    }
    PROMISE(!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8),
            "'%s' taken with another scheme", url);
    const char *auth = strstr(url, "//") + 2;
    size_t alen = strcspn(auth, "/?#");
    PROMISE(!memchr(auth, '@', alen), "'%s' taken with user info", url);
    PROMISE(u.host[0] != '\0', "'%s' taken with no host", url);
    if (!u.host_v6)
        for (const char *c = u.host; *c; c++)
            PROMISE(isalnum((unsigned char)*c) || strchr(".-_", *c), "host '%s' of '%s'",
                    u.host, url);
    PROMISE(u.port >= 1 && u.port <= 65535, "port %d of '%s'", u.port, url);
    PROMISE(u.rest[0] == '/', "path '%s' of '%s'", u.rest, url);
    for (const char *c = u.rest; *c; c++)
        PROMISE(*c > ' ' && *c < 0x7f && !strchr("\"<>\\^`{|}#", *c), "byte 0x%02x in '%s'",
                (unsigned char)*c, u.rest);
    char again[OUTBOUND_URL_MAX + 300];
    snprintf(again, sizeof again, u.host_v6 ? "%s://[%s]:%d%s" : "%s://%s:%d%s",
             u.https ? "https" : "http", u.host, u.port, u.rest);
    outbound_url v;
    if (strlen(again) < OUTBOUND_URL_MAX) {
        PROMISE(outbound_parse_url(again, &v, err, sizeof err) == 0, "'%s' rebuilt as '%s' "
                "is refused: %s", url, again, err);
        PROMISE(v.https == u.https && v.port == u.port && !strcmp(v.host, u.host) &&
                    !strcmp(v.rest, u.rest), "'%s' rebuilt as '%s' reads differently", url,
                again);
    }
}

static void check_address(const char *list, const uint8_t *addr, size_t len)
{
    outbound_policy p = {0}, none = {0};
    char err[256];
    if (outbound_allow_parse(list, &p, err, sizeof err)) {
        PROMISE(err[0] != '\0', "allow list '%s' refused without a message", list);
        p.n_allow = 0;
    }
    PROMISE(p.n_allow <= OUTBOUND_MAX_ALLOW, "%d CIDRs", p.n_allow);
    for (int i = 0; i < p.n_allow; i++) {
        PROMISE(p.allow[i].bits >= 0 && p.allow[i].bits <= (p.allow[i].v6 ? 128 : 32),
                "prefix /%d", p.allow[i].bits);
        /* the CIDR's own address is allowed */
        PROMISE(outbound_address_rule(&p, p.allow[i].v6, p.allow[i].addr) == NULL,
                "a listed address of '%s' refused", list);
    }
    if (len < 4)
        return;
    int v6 = len >= 16;
    const char *rule = outbound_address_rule(&none, v6, addr);
    if (!v6) {
        if (addr[0] == 127 || addr[0] == 10 || (addr[0] == 169 && addr[1] == 254) ||
            (addr[0] == 192 && addr[1] == 168))
            PROMISE(rule != NULL, "%u.%u.%u.%u allowed", addr[0], addr[1], addr[2], addr[3]);
        uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(mapped + 12, addr, 4);
        PROMISE((outbound_address_rule(&none, 1, mapped) == NULL) == (rule == NULL),
                "::ffff:%u.%u.%u.%u judged apart from its IPv4 address", addr[0], addr[1],
                addr[2], addr[3]);
    } else {
        if ((addr[0] & 0xfe) == 0xfc || (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) ||
            addr[0] == 0xff)
            PROMISE(rule != NULL, "a private, link-local or multicast IPv6 address allowed");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char *text = fuzz_text(buf, len);
    if (!text)
        return 0;
    const char *list = text, *url = "";
    const uint8_t *addr = NULL;
    size_t at = strlen(text), alen = 0;
    if (at < len) {
        url = text + at + 1;
        at += strlen(url) + 1;
        if (at < len) {
            addr = buf + at + 1;
            alen = len - at - 1;
        }
    }
    check_url(url);
    check_address(list, addr, addr ? alen : 0);
    free(text);
    return 0;
}
