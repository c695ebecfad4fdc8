/* test_outbound — the outbound guard (server/outbound.h) as tables of URLs,
 * addresses and allow lists. */
#include "server/outbound.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- the pure checks ------------------------------------------------------- */

static void test_address_rules(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        const char *rule; /* a word of the refusal, or NULL: allowed */
    } cases[] = {
        {"8.8.8.8", NULL},
        {"93.184.216.34", NULL},
        {"127.0.0.1", "loopback"},
        {"127.255.1.2", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"10.1.2.3", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.1", NULL},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "carrier-grade"},
        {"100.128.0.1", NULL},
        {"169.254.169.254", "metadata"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"255.255.255.255", "broadcast"},
        {"240.0.0.1", "reserved"},
        {"2001:4860:4860::8888", NULL},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::ffff:127.0.0.1", "IPv4-mapped"},
        {"::ffff:169.254.169.254", "IPv4-mapped"},
        {"::ffff:10.0.0.1", "IPv4-mapped"},
        {"::ffff:8.8.8.8", NULL},
        {"::127.0.0.1", "IPv4-compatible"},
        {"64:ff9b::7f00:1", "NAT64"},
        {"2002:7f00:1::", "6to4"},
        {"2002:808:808::", NULL},
        {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},
        {"fe80::1", "link-local"},
        {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},
    };
    outbound_policy none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[16];
        int v6 = strchr(cases[i].addr, ':') != NULL;
        assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, cases[i].addr, a), 1);
        const char *rule = outbound_address_rule(&none, v6, a);
        if (!cases[i].rule) {
            if (rule)
                fail_msg("%s refused: %s", cases[i].addr, rule);
        } else if (!rule || !strstr(rule, cases[i].rule)) {
            fail_msg("%s: rule '%s', expected one naming '%s'", cases[i].addr,
                     rule ? rule : "(allowed)", cases[i].rule);
        }
    }
}

static void test_allow_list(void **state)
{
    (void)state;
    outbound_policy p = {0};
    char err[256];
    assert_int_equal(outbound_allow_parse("127.0.0.1/32,10.1.0.0/16,fd00::/8", &p, err,
                                          sizeof err), 0);
    assert_int_equal(p.n_allow, 3);
    static const struct {
        const char *addr;
        int allowed;
    } cases[] = {
        {"127.0.0.1", 1}, {"127.0.0.2", 0},       {"10.1.200.3", 1},
        {"10.2.0.1", 0},  {"::ffff:127.0.0.1", 1}, {"::ffff:127.0.0.2", 0},
        {"fd00::5", 1},   {"fc00::5", 0},          {"::1", 0},
        {"169.254.169.254", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t a[16];
        int v6 = strchr(cases[i].addr, ':') != NULL;
        assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, cases[i].addr, a), 1);
        if ((outbound_address_rule(&p, v6, a) == NULL) != cases[i].allowed)
            fail_msg("%s: expected %s", cases[i].addr, cases[i].allowed ? "allowed" : "refused");
    }
    static const char *const bad[] = {"127.0.0.1/33", "::1/129", "localhost", "10.0.0.0/",
                                      "1.2.3.4,,5.6.7.8", "10.0.0.0/8x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (outbound_allow_parse(bad[i], &p, err, sizeof err) == 0)
            fail_msg("allow list '%s' taken", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(outbound_allow_parse("", &p, err, sizeof err), 0);
    assert_int_equal(p.n_allow, 0);
}

static void test_parse_url(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *host; /* NULL: refused */
        int port;
        const char *rest;
    } cases[] = {
        {"http://example.com", "example.com", 80, "/"},
        {"https://Example.COM:8443/a/b?c=d#frag", "example.com", 8443, "/a/b?c=d"},
        {"HTTP://x.test?q", "x.test", 80, "/?q"},
        {"http://[::1]:81/p", "::1", 81, "/p"},
        {"http://127.0.0.1:8080/hook", "127.0.0.1", 8080, "/hook"},
        {"ftp://example.com/", NULL, 0, NULL},
        {"file:///etc/passwd", NULL, 0, NULL},
        {"gopher://x/", NULL, 0, NULL},
        {"http://a@127.0.0.1/", NULL, 0, NULL},
        {"http://user:pw@example.com/", NULL, 0, NULL},
        {"http://example.com@127.0.0.1/", NULL, 0, NULL},
        {"http://127.0.0.1\\@example.com/", NULL, 0, NULL},
        {"http:///path", NULL, 0, NULL},
        {"http://x:0/", NULL, 0, NULL},
        {"http://x:65536/", NULL, 0, NULL},
        {"http://x:80a/", NULL, 0, NULL},
        {"http://[::1/", NULL, 0, NULL},
        {"http://[nothex]/", NULL, 0, NULL},
        {"http://exa mple.com/", NULL, 0, NULL},
        {"http://example.com/a b", NULL, 0, NULL},
        {"http://example.com/\r\nHost: x", NULL, 0, NULL},
        {"http://ex%61mple.com/", NULL, 0, NULL},
        {"", NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outbound_url u;
        char err[256] = "";
        int rc = outbound_parse_url(cases[i].url, &u, err, sizeof err);
        if (!cases[i].host) {
            if (rc == 0)
                fail_msg("'%s' taken (host %s)", cases[i].url, u.host);
            assert_true(err[0] != '\0');
            continue;
        }
        if (rc)
            fail_msg("'%s' refused: %s", cases[i].url, err);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.rest, cases[i].rest);
    }
}

int main(void)
{
    const struct CMUnitTest units[] = {
        cmocka_unit_test(test_address_rules),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_parse_url),
    };
    return cmocka_run_group_tests_name("outbound guard", units, NULL, NULL);
}
