/* oip_tensor — datatype table and conversions to float; see oip_tensor.h. */
#include "api/oip_tensor.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} datatypes[] = {
#define BS_OIP_DATATYPE_ROW(name, wire, size) {wire, size},
    BS_OIP_DATATYPE_TABLE(BS_OIP_DATATYPE_ROW)
#undef BS_OIP_DATATYPE_ROW
};

int bs_oip_datatype_find(const char *name)
{
    for (int t = 0; t < BS_OIP_DATATYPES; t++)
        if (!strcmp(datatypes[t].name, name))
            return t;
    return -1;
}

const char *bs_oip_datatype_name(bs_oip_datatype t)
{
    return datatypes[t].name;
}

size_t bs_oip_datatype_size(bs_oip_datatype t)
{
    return datatypes[t].size;
}

int bs_oip_datatype_numeric(bs_oip_datatype t)
{
    return t != BS_OIP_BOOL && t != BS_OIP_BYTES;
}

static int is_integer_type(bs_oip_datatype t)
{
    return t != BS_OIP_FP16 && t != BS_OIP_FP32 && t != BS_OIP_FP64;
}

/* The range of integer datatype t, as doubles (the 64-bit bounds are
 * powers of two, exact in a double: max is exclusive there). */
static void integer_range(bs_oip_datatype t, double *min, double *max)
{
    switch (t) {
    case BS_OIP_UINT8: *min = 0, *max = 255; break;
    case BS_OIP_UINT16: *min = 0, *max = 65535; break;
    case BS_OIP_UINT32: *min = 0, *max = 4294967295.0; break;
    case BS_OIP_UINT64: *min = 0, *max = 18446744073709551616.0; break;
    case BS_OIP_INT8: *min = -128, *max = 127; break;
    case BS_OIP_INT16: *min = -32768, *max = 32767; break;
    case BS_OIP_INT32: *min = -2147483648.0, *max = 2147483647.0; break;
    default: *min = -9223372036854775808.0, *max = 9223372036854775808.0; break;
    }
}

/* Whether the JSON number v is a value of numeric datatype t; *f gets it
 * as a float. Integers are compared exactly (Jansson reads them as int64),
 * reals must be whole for integer datatypes. FP16 values must be within
 * its finite range (65504). */
static int json_value_fits(const json_t *v, bs_oip_datatype t, float *f)
{
    double min, max;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *f = (float)i;
        if (!is_integer_type(t))
            return t != BS_OIP_FP16 || (i >= -65504 && i <= 65504);
        if (t == BS_OIP_INT64)
            return 1;
        if (t == BS_OIP_UINT64)
            return i >= 0;
        integer_range(t, &min, &max);
        return (double)i >= min && (double)i <= max;
    }
    double d = json_real_value(v);
    *f = (float)d;
    if (!is_integer_type(t))
        return isfinite(*f) && (t != BS_OIP_FP16 || fabs(d) <= 65504);
    integer_range(t, &min, &max);
    int wide = t == BS_OIP_INT64 || t == BS_OIP_UINT64; /* max exclusive */
    return floor(d) == d && d >= min && (wide ? d < max : d <= max);
}

static bs_oip_status flatten(const json_t *v, bs_oip_datatype t, float *out, size_t cap,
                             size_t *n, size_t *bad)
{
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            bs_oip_status s = flatten(e, t, out, cap, n, bad);
            if (s != BS_OIP_OK)
                return s;
        }
        return BS_OIP_OK;
    }
    float f;
    if (!json_is_number(v)) {
        *bad = *n;
        return BS_OIP_NOT_A_NUMBER;
    }
    if (!json_value_fits(v, t, &f)) {
        *bad = *n;
        return BS_OIP_OUT_OF_RANGE;
    }
    if (out && *n < cap)
        out[*n] = f;
    (*n)++;
    return BS_OIP_OK;
}

bs_oip_status bs_oip_json_to_float(const json_t *data, bs_oip_datatype t, float *out,
                                   size_t cap, size_t *n, size_t *bad)
{
    *n = 0;
    return flatten(data, t, out, cap, n, bad);
}

float bs_oip_half_to_float(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1F, frac = h & 0x3FF;
    float v;
    if (exp == 0)
        v = ldexpf((float)frac, -24); /* subnormal: frac * 2^-24 */
    else if (exp == 31)
        v = frac ? NAN : INFINITY;
    else
        v = ldexpf((float)(frac | 0x400), exp - 25); /* (1024 + frac) * 2^(exp-15-10) */
    return sign ? -v : v;
}

/* The little-endian unsigned integer of size bytes at p. */
static uint64_t le(const uint8_t *p, size_t size)
{
    uint64_t v = 0;
    for (size_t i = size; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

bs_oip_status bs_oip_binary_to_float(const uint8_t *raw, bs_oip_datatype t, size_t n,
                                     float *out, size_t *bad)
{
    size_t size = datatypes[t].size;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = le(raw + i * size, size);
        float f;
        switch (t) {
        case BS_OIP_UINT8:
        case BS_OIP_UINT16:
        case BS_OIP_UINT32:
        case BS_OIP_UINT64: f = (float)u; break;
        case BS_OIP_INT8: f = (float)(int8_t)u; break;
        case BS_OIP_INT16: f = (float)(int16_t)u; break;
        case BS_OIP_INT32: f = (float)(int32_t)u; break;
        case BS_OIP_INT64: f = (float)(int64_t)u; break;
        case BS_OIP_FP16: f = bs_oip_half_to_float((uint16_t)u); break;
        case BS_OIP_FP32: {
            uint32_t w = (uint32_t)u;
            memcpy(&f, &w, sizeof f);
            break;
        }
        default: {
            double d;
            memcpy(&d, &u, sizeof d);
            f = (float)d;
            break;
        }
        }
        if (!isfinite(f)) {
            *bad = i;
            return BS_OIP_OUT_OF_RANGE;
        }
        out[i] = f;
    }
    return BS_OIP_OK;
}
