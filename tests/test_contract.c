/* test_contract — the wire contract's tables against their documents: every
 * error code of api/errors.h is in api/openapi.yaml's ErrorBody code enum
 * and the other way round, and in docs/api.md's table with its status;
 * codes are unique snake_case words and each status is one an HTTP client
 * understands. The attack methods of core/attack.h's table are the method
 * enums of AttackRequest and EvaluationRequest, and the table is sound
 * (names parse back, each method's parameters exist, its defaults pass the
 * check); the studio's table of parameters and defaults is the core's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testutil.h"

#include "api/errors.h"
#include "core/attack.h"

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

/* The method enum of the schema named `schema` equals bs_attack_methods. */
static void check_method_enum(const char *yaml, const char *schema)
{
    const char *at = strstr(yaml, schema);
    assert_non_null(at);
    at = strstr(at, "\n        method:\n");
    assert_non_null(at);
    char *list = yaml_enum_after(at, "method:");
    assert_non_null(list);
    char want[256] = "\n";
    for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
        strcat(want, bs_attack_methods[i].name);
        strcat(want, "\n");
    }
    if (strcmp(list, want))
        fail_msg("%s's method enum in api/openapi.yaml is%s; core/attack.h's table has%s", schema,
                 list, want);
    free(list);
}

static void test_attack_methods_match_openapi(void **state)
{
    (void)state;
    char *yaml = read_openapi();
    check_method_enum(yaml, "\n    AttackRequest:\n");
    check_method_enum(yaml, "\n    EvaluationRequest:\n");
    free(yaml);
}

static void test_attack_method_table_is_sound(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
        const bs_attack_method_info *m = &bs_attack_methods[i];
        assert_int_equal(m->method, i);
        assert_int_equal(m->defaults.method, i);
        assert_int_equal(bs_attack_method_parse(m->name), i);
        assert_string_equal(bs_attack_method_name((bs_attack_method)i), m->name);
        assert_non_null(m->run);
        assert_true(strlen(m->summary) > 10);
        if (bs_attack_params_check(&m->defaults, err))
            fail_msg("%s's defaults fail the check: %s", m->name, err);
        /* every parameter it lists exists, once */
        char seen[BS_ATTACK_N_PARAMS] = {0};
        for (const char *s = m->params; *s; s += strspn(s, " ")) {
            char name[32];
            size_t len = strcspn(s, " ");
            snprintf(name, sizeof name, "%.*s", (int)len, s);
            const bs_attack_param_info *p = bs_attack_param_find(name);
            if (!p)
                fail_msg("%s lists the unknown parameter %s", m->name, name);
            if (seen[p - bs_attack_param_table]++)
                fail_msg("%s lists %s twice", m->name, name);
            assert_true(bs_attack_param_applies((bs_attack_method)i, name));
            s += len;
        }
    }
    assert_int_equal(bs_attack_method_parse("magic"), -1);
    for (int i = 0; i < BS_ATTACK_N_PARAMS; i++)
        assert_ptr_equal(bs_attack_param_find(bs_attack_param_table[i].name),
                         &bs_attack_param_table[i]);
    assert_false(bs_attack_param_applies(BS_ATTACK_FGSM, "history"));
    assert_false(bs_attack_param_applies(BS_ATTACK_LBFGS, "steps"));
    char list[128];
    assert_string_equal(bs_attack_method_list(", ", list, sizeof list),
                        "lbfgs, adam-l1, fgsm, pgd, cw-l2");
}

/* The studio's table of each method's parameters and their defaults
 * (server/studio/studio.js, METHODS: a choice is a list whose first entry
 * is the default) lists the core's, in the order help texts use, with the
 * core's defaults. */
static void test_studio_params_match_core(void **state)
{
    (void)state;
    size_t len;
    char *js = (char *)tu_read_file("server/studio/studio.js", &len);
    assert_non_null(js);
    const char *table = strstr(js, "const METHODS = {");
    assert_non_null(table);
    for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
        const bs_attack_method_info *m = &bs_attack_methods[i];
        char key[64];
        snprintf(key, sizeof key, strchr(m->name, '-') ? "\n    '%s': {" : "\n    %s: {",
                 m->name);
        const char *at = strstr(table, key);
        if (!at)
            fail_msg("studio.js has no METHODS entry for %s", m->name);
        at = strstr(at, "params: {");
        assert_non_null(at);
        at += strlen("params: {");
        const char *want = m->params;
        while (*at != '}') {
            at += strspn(at, " \n,");
            char name[32], value[64];
            size_t n = strcspn(at, ":");
            snprintf(name, sizeof name, "%.*s", (int)n, at);
            at += n + 1 + strspn(at + n + 1, " ");
            if (*at == '[') { /* a choice: its first entry, unquoted */
                n = strcspn(at + 2, "'");
                snprintf(value, sizeof value, "%.*s", (int)n, at + 2);
                at = strchr(at, ']') + 1;
            } else {
                n = strcspn(at, ",}\n");
                snprintf(value, sizeof value, "%.*s", (int)n, at);
                at += n;
            }
            at += strspn(at, " \n,");
            /* the next name the core lists */
            want += strspn(want, " ");
            size_t wn = strcspn(want, " ");
            if (strlen(name) != wn || strncmp(name, want, wn))
                fail_msg("studio.js lists %s's %s where the core lists %.*s", m->name, name,
                         (int)wn, want);
            want += wn;
            char core[64];
            const bs_attack_param_info *f = bs_attack_param_find(name);
            bs_attack_param_format(&m->defaults, f, core, sizeof core);
            int same = f->kind == BS_PARAM_CHOICE || f->kind == BS_PARAM_BOOL
                           ? !strcmp(value, core)
                           : strtod(value, NULL) == strtod(core, NULL);
            if (!same)
                fail_msg("studio.js gives %s's %s the default %s; the core's is %s", m->name,
                         name, value, core);
        }
        if (want[strspn(want, " ")])
            fail_msg("studio.js leaves out %s's %s", m->name, want + strspn(want, " "));
    }
    free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes_match_openapi),
        cmocka_unit_test(test_error_codes_match_api_guide),
        cmocka_unit_test(test_error_table_is_sound),
        cmocka_unit_test(test_attack_methods_match_openapi),
        cmocka_unit_test(test_attack_method_table_is_sound),
        cmocka_unit_test(test_studio_params_match_core),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
