/* test_accept — Accept and Accept-Encoding negotiation (api/accept.h): q-values, the
 * most specific range winning, wildcards, ties to the server's order,
 * q=0 and malformed ranges, an absent header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/accept.h"

static const char *const offered[] = {"application/json", "image/png", "image/jpeg"};

static int pick(const char *accept)
{
    return bs_accept_pick(accept, offered, 3);
}

static void test_picks_by_q_then_server_order(void **state)
{
    (void)state;
    assert_int_equal(pick(NULL), 0);
    assert_int_equal(pick(""), 0);
    assert_int_equal(pick("  "), 0);
    assert_int_equal(pick("*/*"), 0);
    assert_int_equal(pick("application/json"), 0);
    assert_int_equal(pick("image/png"), 1);
    assert_int_equal(pick("image/jpeg"), 2);
    assert_int_equal(pick("IMAGE/JPEG"), 2);
    assert_int_equal(pick("image/*"), 1);
    assert_int_equal(pick("image/png;q=0.9, application/json;q=0.5"), 1);
    assert_int_equal(pick("image/png; q=0.5, application/json"), 0);
    assert_int_equal(pick("application/json;q=0.5,image/jpeg;q=0.6,image/png;q=0.55"), 2);
    assert_int_equal(pick("image/png, image/jpeg"), 1);
    assert_int_equal(pick("text/html, image/jpeg;q=0.1"), 2);
    /* browsers' default */
    assert_int_equal(pick("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), 0);
}

static void test_specific_range_overrides_wildcard(void **state)
{
    (void)state;
    /* image/png;q=0 excludes PNG even where the image wildcard allows images */
    assert_int_equal(pick("image/*, image/png;q=0"), 2);
    assert_int_equal(pick("*/*;q=0.1, image/png"), 1);
    assert_int_equal(pick("*/*, application/json;q=0"), 1);
    assert_true(bs_accept_quality("image/*;q=0.3, */*;q=0.2", "image/jpeg") == 0.3);
    assert_true(bs_accept_quality("image/*;q=0.3, */*;q=0.2", "application/json") == 0.2);
    assert_true(bs_accept_quality("image/png;level=1;q=0.4", "image/png") == 0.4);
}

static void test_nothing_acceptable(void **state)
{
    (void)state;
    assert_int_equal(pick("text/html"), -1);
    assert_int_equal(pick("image/gif, text/*"), -1);
    assert_int_equal(pick("image/png;q=0"), -1);
    assert_int_equal(pick("*/*;q=0"), -1);
    /* ranges written wrongly match nothing */
    assert_int_equal(pick("image/png;q=2"), -1);
    assert_int_equal(pick("image/png;q=high"), -1);
    assert_int_equal(pick("png"), -1);
    assert_int_equal(pick("image/"), -1);
    assert_int_equal(pick(",,,"), -1);
}

/* Accept-Encoding: a coding by its name or "*", q honoured, nothing when
 * the header is absent. */
static void test_content_coding(void **state)
{
    (void)state;
    assert_true(bs_accept_coding("gzip, deflate, br", "gzip") == 1.0);
    assert_true(bs_accept_coding("GZIP", "gzip") == 1.0);
    assert_true(bs_accept_coding("br;q=1, gzip;q=0.5", "gzip") == 0.5);
    assert_true(bs_accept_coding("gzip;q=0", "gzip") == 0.0);
    assert_true(bs_accept_coding("*", "gzip") == 1.0);
    assert_true(bs_accept_coding("*;q=0.2, gzip;q=0", "gzip") == 0.0); /* the name wins */
    assert_true(bs_accept_coding("x-gzip, gzipx, identity", "gzip") == 0.0);
    assert_true(bs_accept_coding("gzip;q=2", "gzip") == 0.0);
    assert_true(bs_accept_coding("", "gzip") == 0.0);
    assert_true(bs_accept_coding(NULL, "gzip") == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks_by_q_then_server_order),
        cmocka_unit_test(test_specific_range_overrides_wildcard),
        cmocka_unit_test(test_nothing_acceptable),
        cmocka_unit_test(test_content_coding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
