/* test_oip_tensor — the Open Inference Protocol's datatypes converted to a
 * model's FP32 (api/oip_tensor.h): every half decoded exactly (GCC's
 * _Float16 as the oracle), integers from little-endian bytes with their
 * signs, JSON values checked against each datatype's range, and what is
 * refused (not finite, a fraction for an integer, BOOL and BYTES). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/oip_tensor.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static void test_every_half_exact(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 oracle;
        uint16_t bits = (uint16_t)h;
        memcpy(&oracle, &bits, sizeof bits);
        float want = (float)oracle, got = bs_oip_half_to_float(bits);
        if (isnan(want))
            assert_true(isnan(got));
        else
            assert_memory_equal(&want, &got, sizeof want); /* -0 too */
    }
}

static void test_binary_integers_and_floats(void **state)
{
    (void)state;
    const uint8_t i8[] = {0x80, 0xFF, 0x7F};
    const uint8_t u16[] = {0xFF, 0xFF, 0x01, 0x00};
    const uint8_t i32[] = {0xFE, 0xFF, 0xFF, 0xFF};
    const uint8_t i64[] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    const uint8_t u64[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    double big = 1e39, half = 0.5;
    uint8_t f64[16];
    memcpy(f64, &half, 8);
    memcpy(f64 + 8, &big, 8);
    float out[4];
    size_t bad = 99;
    assert_int_equal(bs_oip_binary_to_float(i8 + 1, BS_OIP_INT8, 2, out, &bad), BS_OIP_OK);
    assert_true(out[0] == -1 && out[1] == 127);
    assert_int_equal(bs_oip_binary_to_float(i8, BS_OIP_UINT8, 1, out, &bad), BS_OIP_OK);
    assert_true(out[0] == 128);
    assert_int_equal(bs_oip_binary_to_float(u16, BS_OIP_UINT16, 2, out, &bad), BS_OIP_OK);
    assert_true(out[0] == 65535 && out[1] == 1);
    assert_int_equal(bs_oip_binary_to_float(i32, BS_OIP_INT32, 1, out, &bad), BS_OIP_OK);
    assert_true(out[0] == -2);
    assert_int_equal(bs_oip_binary_to_float(i64, BS_OIP_INT64, 1, out, &bad), BS_OIP_OK);
    assert_true(out[0] == -9223372036854775808.0f);
    assert_int_equal(bs_oip_binary_to_float(u64, BS_OIP_UINT64, 1, out, &bad), BS_OIP_OK);
    assert_true(out[0] == 18446744073709551616.0f);
    assert_int_equal(bs_oip_binary_to_float(f64, BS_OIP_FP64, 2, out, &bad), BS_OIP_OUT_OF_RANGE);
    assert_int_equal(bad, 1);
    assert_true(out[0] == 0.5f);
    const uint8_t h_inf[] = {0x00, 0x7C};
    assert_int_equal(bs_oip_binary_to_float(h_inf, BS_OIP_FP16, 1, out, &bad), BS_OIP_OUT_OF_RANGE);
}

/* The status of data (JSON text) read as datatype name, the bad index in *bad. */
static bs_oip_status json_status(const char *text, const char *name, size_t *bad)
{
    json_t *data = json_loads(text, 0, NULL);
    assert_non_null(data);
    float out[8];
    size_t n;
    int t = bs_oip_datatype_find(name);
    assert_true(t >= 0);
    bs_oip_status s = bs_oip_json_to_float(data, (bs_oip_datatype)t, out, 8, &n, bad);
    json_decref(data);
    return s;
}

static void test_json_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *data, *type;
        bs_oip_status want;
        size_t bad;
    } cases[] = {
        {"[0, 255]", "UINT8", BS_OIP_OK, 0},
        {"[0, 256]", "UINT8", BS_OIP_OUT_OF_RANGE, 1},
        {"[-1]", "UINT16", BS_OIP_OUT_OF_RANGE, 0},
        {"[[-128], [127]]", "INT8", BS_OIP_OK, 0},
        {"[[-128], [-129]]", "INT8", BS_OIP_OUT_OF_RANGE, 1},
        {"[2147483647, -2147483648]", "INT32", BS_OIP_OK, 0},
        {"[2147483648]", "INT32", BS_OIP_OUT_OF_RANGE, 0},
        {"[4294967295, 4294967296]", "UINT32", BS_OIP_OUT_OF_RANGE, 1},
        {"[1.5]", "INT32", BS_OIP_OUT_OF_RANGE, 0},
        {"[2.0, 1e2]", "INT16", BS_OIP_OK, 0},
        {"[9223372036854775807, -9223372036854775808]", "INT64", BS_OIP_OK, 0},
        {"[9.3e18]", "INT64", BS_OIP_OUT_OF_RANGE, 0},
        {"[-1]", "UINT64", BS_OIP_OUT_OF_RANGE, 0},
        {"[1e19]", "UINT64", BS_OIP_OK, 0},
        {"[65504, -65504]", "FP16", BS_OIP_OK, 0},
        {"[70000]", "FP16", BS_OIP_OUT_OF_RANGE, 0},
        {"[1e300]", "FP64", BS_OIP_OUT_OF_RANGE, 0},
        {"[1e-300, 0.5]", "FP64", BS_OIP_OK, 0},
        {"[0.5, \"x\"]", "FP32", BS_OIP_NOT_A_NUMBER, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t bad = 0;
        bs_oip_status s = json_status(cases[i].data, cases[i].type, &bad);
        if (s != cases[i].want)
            fail_msg("%s as %s: status %d, want %d", cases[i].data, cases[i].type, s,
                     cases[i].want);
        if (s != BS_OIP_OK)
            assert_int_equal(bad, cases[i].bad);
    }
}

static void test_datatype_table(void **state)
{
    (void)state;
    assert_int_equal(bs_oip_datatype_find("FP32"), BS_OIP_FP32);
    assert_int_equal(bs_oip_datatype_find("fp32"), -1);
    assert_int_equal(bs_oip_datatype_size(BS_OIP_FP16), 2);
    assert_int_equal(bs_oip_datatype_size(BS_OIP_UINT64), 8);
    assert_false(bs_oip_datatype_numeric(BS_OIP_BOOL));
    assert_false(bs_oip_datatype_numeric(BS_OIP_BYTES));
    assert_true(bs_oip_datatype_numeric(BS_OIP_INT8));
    assert_string_equal(bs_oip_datatype_name(BS_OIP_INT16), "INT16");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_half_exact),
        cmocka_unit_test(test_binary_integers_and_floats),
        cmocka_unit_test(test_json_ranges),
        cmocka_unit_test(test_datatype_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
