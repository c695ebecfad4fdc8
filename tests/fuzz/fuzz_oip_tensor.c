/* fuzz_oip_tensor — api/oip_tensor.h's conversions to FP32, from raw
 * little-endian bytes (the binary tensor data extension) and from JSON
 * numbers, for every numeric datatype.
 *
 * The input's first byte picks the datatype; the rest is read twice: as
 * raw elements (a whole number of them) and as a JSON document. Each value
 * is checked against a reference written here independently, in long
 * double: the raw conversion gives every element exactly as the datatype
 * holds it, rounded to float, and stops at the first value that is not
 * finite as a float; the JSON conversion accepts a number iff it is a
 * value of the datatype (whole and in range for integers, within 65504 for
 * FP16, finite as a float for all), counts every number seen, and
 * reports the flat index of the first it refuses. */
#include "tests/fuzz/fuzz.h"

#include "api/oip_tensor.h"

#include <math.h>
#include <string.h>

static const bs_oip_datatype numeric[] = {
    BS_OIP_UINT8, BS_OIP_UINT16, BS_OIP_UINT32, BS_OIP_UINT64, BS_OIP_INT8, BS_OIP_INT16,
    BS_OIP_INT32, BS_OIP_INT64,  BS_OIP_FP16,   BS_OIP_FP32,   BS_OIP_FP64,
};
#define N_NUMERIC (sizeof numeric / sizeof numeric[0])

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Element i of raw as datatype t, as a float (rounded once, from its
 * exact value). */
static float raw_value(const uint8_t *p, bs_oip_datatype t)
{
    uint64_t u = 0;
    size_t size = bs_oip_datatype_size(t);
    for (size_t k = 0; k < size; k++)
        u |= (uint64_t)p[k] << (8 * k);
    switch (t) {
    case BS_OIP_UINT8:
    case BS_OIP_UINT16:
    case BS_OIP_UINT32:
    case BS_OIP_UINT64: return (float)u;
    case BS_OIP_INT8: return (float)(int8_t)(uint8_t)u;
    case BS_OIP_INT16: return (float)(int16_t)(uint16_t)u;
    case BS_OIP_INT32: return (float)(int32_t)(uint32_t)u;
    case BS_OIP_INT64: return (float)(int64_t)u;
    case BS_OIP_FP16: {
        /* (-1)^s * 2^(e-15) * (1 + f/1024), or 2^-14 * f/1024 when e == 0 */
        int s = (int)(u >> 15), e = (int)(u >> 10) & 31, f = (int)(u & 1023);
        long double v = e == 0    ? ldexpl(f / 1024.0L, -14)
                        : e == 31 ? (f ? NAN : INFINITY)
                                  : ldexpl(1.0L + f / 1024.0L, e - 15);
        return (float)(s ? -v : v);
    }
    case BS_OIP_FP32: {
        float f;
        uint32_t w = (uint32_t)u;
        memcpy(&f, &w, sizeof f);
        return f;
    }
    default: {
        double d;
        memcpy(&d, &u, sizeof d);
        return (float)d;
    }
    }
}

static void check_binary(const uint8_t *raw, size_t len, bs_oip_datatype t)
{
    size_t size = bs_oip_datatype_size(t), n = len / size, bad = (size_t)-1;
    float *out = malloc((n ? n : 1) * sizeof *out);
    PROMISE(out != NULL, "out of memory");
    bs_oip_status st = bs_oip_binary_to_float(raw, t, n, out, &bad);
    size_t first_bad = n;
    for (size_t i = 0; i < n && first_bad == n; i++)
        if (!isfinite(raw_value(raw + i * size, t)))
            first_bad = i;
    PROMISE(st == (first_bad < n ? BS_OIP_OUT_OF_RANGE : BS_OIP_OK), "%s: status %d",
            bs_oip_datatype_name(t), (int)st);
    PROMISE(st == BS_OIP_OK || bad == first_bad, "%s: bad index %zu, first not finite %zu",
            bs_oip_datatype_name(t), bad, first_bad);
    for (size_t i = 0; i < first_bad; i++) {
        float want = raw_value(raw + i * size, t);
        PROMISE(same_float(out[i], want), "%s element %zu: %a, want %a",
                bs_oip_datatype_name(t), i, (double)out[i], (double)want);
    }
    free(out);
}

/* Whether JSON number v is a value of datatype t. */
static int fits(const json_t *v, bs_oip_datatype t)
{
    long double x = json_is_integer(v) ? (long double)json_integer_value(v)
                                       : (long double)json_real_value(v);
    float f = json_is_integer(v) ? (float)json_integer_value(v) : (float)json_real_value(v);
    long double lo, hi;
    switch (t) {
    case BS_OIP_FP16: return fabsl(x) <= 65504.0L;
    case BS_OIP_FP32:
    case BS_OIP_FP64: return isfinite(f);
    case BS_OIP_UINT8: lo = 0, hi = 255; break;
    case BS_OIP_UINT16: lo = 0, hi = 65535; break;
    case BS_OIP_UINT32: lo = 0, hi = 4294967295.0L; break;
    case BS_OIP_UINT64: lo = 0, hi = 18446744073709551615.0L; break;
    case BS_OIP_INT8: lo = -128, hi = 127; break;
    case BS_OIP_INT16: lo = -32768, hi = 32767; break;
    case BS_OIP_INT32: lo = -2147483648.0L, hi = 2147483647.0L; break;
    default: lo = -9223372036854775808.0L, hi = 9223372036854775807.0L; break;
    }
    return floorl(x) == x && x >= lo && x <= hi;
}

/* The reference walk: counts numbers into *n, the first refusal's index
 * and status into *bad and *st. */
static void walk(const json_t *v, bs_oip_datatype t, size_t *n, size_t *bad,
                 bs_oip_status *st)
{
    if (*st != BS_OIP_OK)
        return;
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) walk(e, t, n, bad, st);
        return;
    }
    if (!json_is_number(v) || !fits(v, t)) {
        *st = json_is_number(v) ? BS_OIP_OUT_OF_RANGE : BS_OIP_NOT_A_NUMBER;
        *bad = *n;
        return;
    }
    (*n)++;
}

static void check_json(const uint8_t *text, size_t len, bs_oip_datatype t)
{
    json_t *data = json_loadb((const char *)text, len, JSON_DECODE_ANY, NULL);
    if (!data)
        return;
    size_t want_n = 0, want_bad = 0, n, bad, n2, bad2;
    bs_oip_status want = BS_OIP_OK;
    walk(data, t, &want_n, &want_bad, &want);
    size_t cap = 64;
    float out[64];
    bs_oip_status st = bs_oip_json_to_float(data, t, out, cap, &n, &bad);
    PROMISE(st == want, "%s: status %d, want %d", bs_oip_datatype_name(t), (int)st, (int)want);
    PROMISE(st != BS_OIP_OK || n == want_n, "%s: %zu numbers counted, want %zu",
            bs_oip_datatype_name(t), n, want_n);
    PROMISE(st == BS_OIP_OK || bad == want_bad, "%s: refused at %zu, want %zu",
            bs_oip_datatype_name(t), bad, want_bad);
    PROMISE(bs_oip_json_to_float(data, t, NULL, 0, &n2, &bad2) == st && n2 == n,
            "counting alone differs");
    for (size_t i = 0; st == BS_OIP_OK && i < n && i < cap; i++)
        PROMISE(isfinite(out[i]), "%s: value %zu not finite", bs_oip_datatype_name(t), i);
    json_decref(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return 0;
    bs_oip_datatype t = numeric[buf[0] % N_NUMERIC];
    PROMISE(bs_oip_datatype_numeric(t) &&
                bs_oip_datatype_find(bs_oip_datatype_name(t)) == (int)t,
            "datatype table");
    check_binary(buf + 1, len - 1, t);
    check_json(buf + 1, len - 1, t);
    uint16_t h = (uint16_t)(buf[0] | (len > 1 ? buf[1] << 8 : 0));
    float want = raw_value((const uint8_t[]){(uint8_t)h, (uint8_t)(h >> 8)}, BS_OIP_FP16);
    float got = bs_oip_half_to_float(h);
    PROMISE(same_float(got, want) || (isnan(got) && isnan(want)), "half %04x: %a, want %a", h,
            (double)got, (double)want);
    return 0;
}
