/* test_tensor_json — api/tensor_json against what it replaces: every
 * number literal must give the float (float)strtod gives (and Jansson's
 * number, integers included), over random and edge-case literals; every
 * body must be accepted or refused as json_loadb refuses it, with the same
 * error, the same floats and the same rest of the document: hand-written
 * bodies, every truncation of them, and random mutations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/tensor_json.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rnd_int(int lo, int hi) /* inclusive */
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static int is_real_literal(const char *s)
{
    return strpbrk(s, ".eE") != NULL;
}

/* The literal must read as Jansson reads "[lit]" and, for reals, as
 * (float)strtod; a literal Jansson refuses must be refused. */
static void check_literal(const char *lit)
{
    size_t n = strlen(lit);
    char doc[1200];
    snprintf(doc, sizeof doc, "[%s]", lit);
    json_t *ref = json_loads(doc, 0, NULL);
    float got = 12345.0f;
    const char *stop = NULL;
    int rc = bs_tensor_json_number(lit, lit + n, &got, &stop);
    if (!ref || json_array_size(ref) != 1) {
        /* refused, or accepted only as a prefix the array reader refuses */
        if (rc == 0 && stop == lit + n)
            fail_msg("'%s': Jansson refuses it, the reader gives %.9g", lit, got);
        json_decref(ref);
        return;
    }
    if (rc != 0 || stop != lit + n)
        fail_msg("'%s': Jansson reads it, the reader refuses it (rc %d)", lit, rc);
    float want = (float)json_number_value(json_array_get(ref, 0));
    json_decref(ref);
    if (!same_float(got, want))
        fail_msg("'%s': got %a, Jansson %a", lit, (double)got, (double)want);
    if (is_real_literal(lit)) {
        float s = (float)strtod(lit, NULL);
        if (!same_float(got, s))
            fail_msg("'%s': got %a, strtod %a", lit, (double)got, (double)s);
    }
}

static void test_edge_literals(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "0.000", "1", "-1", "10", "1.5", "-2.25",
        "0.1", "0.2", "0.3", "0.30000000000000004", "1e5", "1E5", "1e+5", "1e-5", "1.0E-05",
        "0.007843137718737125", "0.20392157137393951", "0.99215686321258545", "1.0",
        "3.4028234663852886e38", "3.4028235e38", "3.4028236e38", "3.5e38", "-3.5e38",
        "1.1754943508222875e-38", "1.401298464324817e-45", "7e-46", "7.1e-46", "1e-46",
        "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
        "1e308", "1e309", "-1e309", "1e400", "-1e400", "1e-400", "-1e-400",
        "4.9406564584124654e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "9007199254740992",
        "9007199254740993", "9007199254740993.0", "9007199254740993.00000000001",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "18446744073709551615", "100000000000000000000",
        "1234567890123456789", "12345678901234567890", "1234567890123456789.0",
        "0.1234567890123456789", "0.12345678901234567890123", "1e-64", "1e-65", "1e63",
        "1e64", "9999999999999999999e-64", "9999999999999999999e63", "1e-99999999999",
        "1e99999999999", "0e99999999999", "1e00000000000000000001",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "1.00000000000000011102230246251565404236316680908203126",
        "1.0000000596046447753906250", "1.0000000596046447753906249",
        "1.0000000596046447753906251", "16777217", "16777217.0", "33554435",
        "0.000000000000000000000000000000000000000000000000000000000000000000001",
        "0.00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000123",
        /* refused by JSON or by Jansson */
        "01", "-01", "00", "-", "+1", ".5", "1.", "1.e5", "1e", "1e+", "1e-", "NaN", "nan",
        "Infinity", "-Infinity", "inf", "0x10", "1_000", "--1", "1.5.5", "1e5e5", "",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_literal(cases[i]);
}

/* What a literal's grammar leaves: the number ends, the rest is the
 * caller's (the array reader refuses "1.5x"). */
static void test_literal_stop(void **state)
{
    (void)state;
    const char *s = "1.5x";
    float f;
    const char *stop;
    assert_int_equal(bs_tensor_json_number(s, s + 4, &f, &stop), 0);
    assert_ptr_equal(stop, s + 3);
    s = "-0.0]";
    assert_int_equal(bs_tensor_json_number(s, s + 5, &f, &stop), 0);
    assert_true(signbit(f));
    assert_ptr_equal(stop, s + 4);
    s = "-0,";
    assert_int_equal(bs_tensor_json_number(s, s + 3, &f, &stop), 0);
    assert_false(signbit(f)); /* Jansson's integer 0 */
    /* the end bounds the literal: no NUL is read */
    s = "12345";
    assert_int_equal(bs_tensor_json_number(s, s + 2, &f, &stop), 0);
    assert_true(f == 12.0f);
}

/* Random floats and doubles printed as clients print them, random digit
 * strings, and values at or next to the halfway points between doubles
 * and between floats. */
static void test_random_literals(void **state)
{
    (void)state;
    char lit[1100];
    for (int i = 0; i < 300000; i++) {
        int kind = i % 8;
        if (kind == 0 || kind == 1) {
            uint32_t bits = (uint32_t)rnd();
            float f;
            memcpy(&f, &bits, sizeof f);
            if (!isfinite(f))
                continue;
            snprintf(lit, sizeof lit, kind ? "%.17g" : "%.9g", (double)f);
        } else if (kind == 2) {
            /* pixels: k/255 as a float, printed as Python prints it */
            float f = (float)rnd_int(0, 255) / 255.0f;
            snprintf(lit, sizeof lit, "%.*g", rnd_int(1, 20), (double)f);
        } else if (kind == 3) {
            uint64_t bits = rnd();
            double d;
            memcpy(&d, &bits, sizeof d);
            if (!isfinite(d))
                continue;
            static const char *const fmts[] = {"%.17g", "%.16g", "%.15g", "%.20g", "%.25e"};
            snprintf(lit, sizeof lit, fmts[rnd() % 5], d);
        } else if (kind == 4 || kind == 5) {
            /* digits: sign, integer part, fraction, exponent */
            int n = 0;
            if (rnd() & 1)
                lit[n++] = '-';
            int int_digits = rnd_int(0, kind == 4 ? 8 : 22);
            if (int_digits == 0)
                lit[n++] = '0';
            for (int k = 0; k < int_digits; k++)
                lit[n++] = (char)('0' + (k ? rnd_int(0, 9) : rnd_int(1, 9)));
            if (rnd() & 1) {
                lit[n++] = '.';
                int frac = rnd_int(1, kind == 4 ? 19 : 30);
                for (int k = 0; k < frac; k++)
                    lit[n++] = (char)('0' + (rnd() % 4 ? rnd_int(0, 9) : 0));
            }
            if (rnd() % 3 == 0)
                n += snprintf(lit + n, sizeof lit - (size_t)n, "%s%s%d", rnd() & 1 ? "e" : "E",
                              rnd() & 1 ? "-" : (rnd() & 1 ? "+" : ""),
                              rnd_int(0, kind == 4 ? 40 : 330));
            lit[n] = '\0';
        } else if (kind == 6) {
            /* the halfway point between two doubles, exactly and cut short */
            uint64_t bits = rnd() >> 2;
            double d;
            memcpy(&d, &bits, sizeof d);
            d = ldexp(1.0 + ldexp((double)(rnd() >> 12), -52), rnd_int(-70, 70));
            long double mid = ((long double)d + (long double)nextafter(d, INFINITY)) / 2;
            int digits = rnd() % 3 ? rnd_int(16, 21) : 120;
            snprintf(lit, sizeof lit, "%.*Le", digits, mid);
        } else {
            /* the halfway point between two floats (a double), likewise */
            float f = ldexpf(1.0f + ldexpf((float)(rnd() >> 41), -23), rnd_int(-60, 60));
            double mid = ((double)f + (double)nextafterf(f, INFINITY)) / 2;
            int digits = rnd() % 3 ? rnd_int(7, 19) : 80;
            snprintf(lit, sizeof lit, "%.*e", digits, mid);
        }
        check_literal(lit);
    }
}

/* ---- whole bodies ------------------------------------------------------- */

/* Our load of body must be Jansson's: same refusal and error, or the same
 * document with the same numbers in inputs[0].data. */
static void check_body(const char *body, size_t len)
{
    json_error_t e_ours, e_ref;
    bs_tensor_data td = {(float *)&td, 99};
    json_t *ours = bs_tensor_json_load(body, len, &td, &e_ours);
    json_t *ref = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e_ref);
    if (!ref) {
        if (ours)
            fail_msg("accepted what Jansson refuses (%s): %.*s", e_ref.text, (int)len, body);
        assert_null(td.values);
        assert_string_equal(e_ours.text, e_ref.text);
        assert_int_equal(e_ours.line, e_ref.line);
        assert_int_equal(e_ours.column, e_ref.column);
        assert_int_equal(e_ours.position, e_ref.position);
        return;
    }
    if (!ours)
        fail_msg("refused what Jansson accepts (%s): %.*s", e_ours.text, (int)len, body);
    if (td.values) {
        json_t *in = json_array_get(json_object_get(ref, "inputs"), 0);
        json_t *data = json_object_get(in, "data");
        /* flatten the reference's array, which must hold only numbers */
        json_t *stack[64];
        size_t idx[64], n = 0;
        int top = 0;
        stack[0] = data;
        idx[0] = 0;
        assert_true(json_is_array(data));
        while (top >= 0) {
            if (idx[top] == json_array_size(stack[top])) {
                top--;
                continue;
            }
            json_t *e = json_array_get(stack[top], idx[top]++);
            if (json_is_array(e)) {
                assert_true(top < 63);
                stack[++top] = e;
                idx[top] = 0;
                continue;
            }
            assert_true(json_is_number(e));
            assert_true(n < td.n);
            if (!same_float(td.values[n], (float)json_number_value(e)))
                fail_msg("number %zu: got %a, Jansson %a", n, (double)td.values[n],
                         json_number_value(e));
            n++;
        }
        assert_int_equal(n, td.n);
        json_object_set_new(in, "data", json_array());
        free(td.values);
    } else {
        assert_int_equal(td.n, 0);
    }
    if (!json_equal(ours, ref))
        fail_msg("the rest of the document differs: %.*s", (int)len, body);
    json_decref(ours);
    json_decref(ref);
}

static void check_str(const char *body)
{
    check_body(body, strlen(body));
}

static const char *const bodies[] = {
    "{\"id\":\"a\",\"inputs\":[{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"FP32\","
    "\"data\":[0.0,0.5,-0.0,1e-3]}],\"outputs\":[{\"name\":\"label\"}]}",
    "{\"inputs\":[{\"data\":[[[1,2],[3,-0]]],\"shape\":[1,1,2,2],\"datatype\":\"FP32\","
    "\"name\":\"x\"}]}",
    " {\r\n \"inputs\" :\t[ { \"name\" : \"input\" , \"data\" : [ 1 , 2.5e+3 ,\n-7E-2 ] , "
    "\"shape\" : [1,3] } ] } \n",
    /* a "data" that is not inputs[0].data comes first */
    "{\"parameters\":{\"a\":[1,{\"b\":\"]}\\\"[\"}],\"data\":[7]},\"inputs\":[{\"parameters\":"
    "{\"data\":[9]},\"data\":[0.25,0.125],\"x\":\"data\"}],\"data\":[5]}",
    "{\"inputs\":[{\"d\\u0061ta\":[1,2]}]}",
    "{\"inputs\":[{\"data\":[1,2]}],\"inputs\":[]}",
    "{\"inputs\":[{\"data\":[1,2],\"data\":[3]}]}",
    "{\"inputs\":[{\"data\":[1,\"x\"]}]}",
    "{\"inputs\":[{\"data\":[1,null]}]}",
    "{\"inputs\":[{\"data\":[1,true]}]}",
    "{\"inputs\":[{\"data\":[NaN]}]}",
    "{\"inputs\":[{\"data\":[1e400]}]}",
    "{\"inputs\":[{\"data\":[-1e400,2]}]}",
    "{\"inputs\":[{\"data\":[1e-400,-1e-400]}]}",
    "{\"inputs\":[{\"data\":[99999999999999999999]}]}",
    "{\"inputs\":[{\"data\":[9223372036854775807,-9223372036854775808]}]}",
    "{\"inputs\":[{\"data\":[1,2,]}]}",
    "{\"inputs\":[{\"data\":[,1]}]}",
    "{\"inputs\":[{\"data\":[1 2]}]}",
    "{\"inputs\":[{\"data\":[01]}]}",
    "{\"inputs\":[{\"data\":[1.5x]}]}",
    "{\"inputs\":[{\"data\":[1,2]}]} x",
    "{\"inputs\":[{\"data\":[1,2]}]",
    "{\"inputs\":[{\"data\":[]}]}",
    "{\"inputs\":[{\"data\":[[]]}]}",
    "{\"inputs\":[{\"data\":[[],[1]]}]}",
    "{\"inputs\":[{\"data\":5}]}",
    "{\"inputs\":[{\"data\":[1]},{\"data\":[2]}]}",
    "{\"inputs\":[[1],{\"data\":[2]}]}",
    "{\"inputs\":{\"data\":[1]}}",
    "{\"inputs\":[{\"data\":[1]}],\"outputs\":[{\"name\":\"probabilities\"}],\"id\":\"\\u00e9\"}",
    "{\"inputs\":[{\"data\":[1]}],\"id\":\"\\ud800\"}",
    "{\"inputs\":[{\"data\":[1]}],\"id\":\"\xff\"}",
    "{\"inputs\":[{\"data\":[1]}],\"id\":\"a\x01\"}",
    "{\"inputs\":[{\"data\":[\x00]}]}",
    "{\"inputs\"[{\"data\":[1]}]}",
    "{\"inputs\":[{\"data\" [1]}]}",
    "{\"inputs\":[{\"data\":[1]}]}{}",
    "[{\"inputs\":[{\"data\":[1]}]}]",
    "{}",
    "",
};

static void test_bodies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        check_str(bodies[i]);
    /* "{\"inputs\":[{\"data\":[\x00]}]}" holds a NUL: its real length */
    check_body("{\"inputs\":[{\"data\":[\x00]}]}", 22);
    check_body("{\"inputs\":[{\"data\":[1,2]}]}\x00", 28);
}

/* Bodies whose tensor must be read by the fast path (the rest of the
 * checks are check_body's): escapes and brackets inside strings before it,
 * members around it, spaces everywhere. */
static void test_fast_path_taken(void **state)
{
    (void)state;
    static const char *const fast[] = {
        "{\"inputs\":[{\"data\":[0.5]}]}",
        "{\"id\":\"a\\\"b\\\\\",\"parameters\":{\"s\":\"]}\\\"[{\",\"t\":[{}]},\"inputs\":"
        "[{\"name\":\"in\\\"put\",\"shape\":[1,2],\"data\":[0.5,0.25]}]}",
        " { \"inputs\" : [ { \"data\" : [ [ 1 ] , [ ] , [ 2 , 3 ] ] } ] } ",
        "{\"outputs\":[{\"name\":\"label\"}],\"inputs\":[{\"parameters\":{\"data\":[9]},"
        "\"data\":[-0.0,1e-3,7]}],\"x\":\"\\\\\"}",
    };
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++) {
        bs_tensor_data td;
        json_error_t e;
        json_t *root = bs_tensor_json_load(fast[i], strlen(fast[i]), &td, &e);
        assert_non_null(root);
        if (!td.values)
            fail_msg("the fast path was not taken: %s", fast[i]);
        free(td.values);
        json_decref(root);
        check_str(fast[i]);
    }
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char body[4096];
    for (int depth = 1; depth <= 40; depth += 3) {
        int n = snprintf(body, sizeof body, "{\"inputs\":[{\"data\":");
        for (int d = 0; d < depth; d++)
            body[n++] = '[';
        n += snprintf(body + n, sizeof body - (size_t)n, "0.5");
        for (int d = 0; d < depth; d++)
            body[n++] = ']';
        n += snprintf(body + n, sizeof body - (size_t)n, "}]}");
        check_body(body, (size_t)n);
    }
}

/* A body like the benchmark's: 784 pixel values as Python prints them. */
static size_t image_body(char *body, size_t cap)
{
    size_t n = (size_t)snprintf(body, cap, "{\"inputs\": [{\"name\": \"input\", \"shape\": "
                                "[1, 1, 28, 28], \"datatype\": \"FP32\", \"data\": [");
    for (int i = 0; i < 784; i++) {
        float f = rnd() % 5 ? 0.0f : (float)rnd_int(0, 255) / 255.0f;
        n += (size_t)snprintf(body + n, cap - n, "%s%.17g", i ? ", " : "", (double)f);
        if (f == 0.0f)
            n += (size_t)snprintf(body + n, cap - n, ".0");
    }
    n += (size_t)snprintf(body + n, cap - n, "]}]}");
    return n;
}

static void test_image_body(void **state)
{
    (void)state;
    static char body[32768];
    size_t n = image_body(body, sizeof body);
    bs_tensor_data td;
    json_error_t e;
    json_t *root = bs_tensor_json_load(body, n, &td, &e);
    assert_non_null(root);
    assert_non_null(td.values);
    assert_int_equal(td.n, 784);
    free(td.values);
    json_decref(root);
    check_body(body, n);
}

/* Every truncation of every body, and of an image body. */
static void test_truncated(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        for (size_t n = 0; n <= strlen(bodies[i]); n++)
            check_body(bodies[i], n);
    static char body[32768];
    size_t len = image_body(body, sizeof body);
    for (size_t n = 0; n <= len; n += 1 + n / 50)
        check_body(body, n);
}

/* Random edits of the bodies: a byte replaced by one that matters to the
 * grammar, deleted, or inserted. */
static void test_mutations(void **state)
{
    (void)state;
    static const char alphabet[] = "[]{},:.-+eE0123456789 \"\\xan";
    char buf[512];
    for (int round = 0; round < 60000; round++) {
        const char *src = bodies[round % 4];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        for (int edits = rnd_int(1, 3); edits > 0; edits--) {
            size_t at = (size_t)rnd() % (n + 1);
            char c = alphabet[rnd() % (sizeof alphabet - 1)];
            int op = rnd_int(0, 2);
            if (op == 0 && at < n) {
                buf[at] = c;
            } else if (op == 1 && at < n) {
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            } else if (n + 1 < sizeof buf) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
            }
        }
        check_body(buf, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_literals),
        cmocka_unit_test(test_literal_stop),
        cmocka_unit_test(test_random_literals),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_fast_path_taken),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_image_body),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
