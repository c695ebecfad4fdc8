/* test_contract — the wire contract's tables against their documents: every
 * error code of api/errors.h is in api/openapi.yaml's ErrorBody code enum
 * and the other way round, and in docs/api.md's table with its status;
 * codes are unique snake_case words and each status is one an HTTP client
 * understands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testutil.h"

#include "api/errors.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The items of the YAML list that follows the line holding `anchor` and
 * then a line "enum:" within the next few lines, as one string
 * "\nitem\nitem\n". Caller frees; NULL when not found. */
static char *yaml_enum_after(const char *yaml, const char *anchor)
{
    const char *p = strstr(yaml, anchor);
    if (!p)
        return NULL;
    p = strstr(p, "enum:");
    if (!p)
        return NULL;
    p = strchr(p, '\n');
    size_t cap = 16, len = 1;
    char *out = malloc(cap);
    out[0] = '\n';
    out[1] = '\0';
    while (p && *++p) {
        const char *q = p;
        while (*q == ' ')
            q++;
        if (q[0] != '-' || q[1] != ' ')
            break;
        q += 2;
        size_t n = strcspn(q, "\n");
        if (len + n + 2 > cap) {
            cap = 2 * (len + n + 2);
            out = realloc(out, cap);
        }
        memcpy(out + len, q, n);
        len += n;
        out[len++] = '\n';
        out[len] = '\0';
        p = strchr(q, '\n');
    }
    return out;
}

static char *read_openapi(void)
{
    size_t len;
    char *yaml = (char *)tu_read_file("api/openapi.yaml", &len);
    assert_non_null(yaml);
    return yaml;
}

/* Every code in the table once in the enum, and nothing else there. */
static void test_error_codes_match_openapi(void **state)
{
    (void)state;
    char *yaml = read_openapi();
    char *list = yaml_enum_after(yaml, "    ErrorBody:");
    assert_non_null(list);
    size_t listed = 0;
    for (const char *p = list + 1; *p; p = strchr(p, '\n') + 1)
        listed++;
    for (int e = 0; e < BS_E_COUNT; e++) {
        char needle[80];
        snprintf(needle, sizeof needle, "\n%s\n", bs_error_get(e)->code);
        if (!strstr(list, needle))
            fail_msg("error code %s is not in api/openapi.yaml's ErrorBody enum",
                     bs_error_get(e)->code);
    }
    assert_int_equal(listed, BS_E_COUNT);
    free(list);
    free(yaml);
}

/* docs/api.md's table is `blindspotd --errors`: "| status | `code` | meaning |". */
static void test_error_codes_match_api_guide(void **state)
{
    (void)state;
    size_t len;
    char *md = (char *)tu_read_file("docs/api.md", &len);
    assert_non_null(md);
    for (int e = 0; e < BS_E_COUNT; e++) {
        const bs_error_info *info = bs_error_get(e);
        char row[512];
        snprintf(row, sizeof row, "\n| %d | `%s` | %s |\n", info->status, info->code,
                 info->meaning);
        if (!strstr(md, row))
            fail_msg("docs/api.md lacks the row%s(regenerate it from blindspotd --errors)", row);
    }
    free(md);
}

static void test_error_table_is_sound(void **state)
{
    (void)state;
    for (int e = 0; e < BS_E_COUNT; e++) {
        const bs_error_info *info = bs_error_get(e);
        for (const char *c = info->code; *c; c++)
            assert_true(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_');
        assert_true(info->status >= 400 && info->status <= 599);
        assert_true(strlen(info->meaning) > 10);
        assert_int_equal(bs_error_find(info->code), e);
    }
    assert_int_equal(bs_error_find("no_such_code"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes_match_openapi),
        cmocka_unit_test(test_error_codes_match_api_guide),
        cmocka_unit_test(test_error_table_is_sound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
