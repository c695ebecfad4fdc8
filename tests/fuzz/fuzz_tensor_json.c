/* fuzz_tensor_json — api/tensor_json.h against its reference, Jansson.
 *
 * The module promises to change nothing but the speed: a body is accepted
 * iff json_loadb(JSON_REJECT_DUPLICATES) accepts it, with the same error,
 * and each float it reads is (float)json_number_value of the number
 * Jansson reads. So every input is parsed both ways and compared: the
 * verdict, the error (text and place), the floats bit for bit (so -0 and
 * +0 differ), and the rest of the document (Jansson's inputs[0].data
 * emptied, as the fast path leaves it). bs_tensor_json_number is checked
 * the same way on the input read as one literal, and against strtod on a
 * literal of up to 19 digits built from the input's first bytes. */
#include "tests/fuzz/fuzz.h"

#include "api/tensor_json.h"

#include <string.h>

/* Appends the numbers of v (nested arrays of numbers) to out; the count
 * of numbers, or -1 when v holds anything else. */
static long flatten(const json_t *v, float *out, size_t cap, size_t n)
{
    if (json_is_number(v)) {
        if (n < cap)
            out[n] = (float)json_number_value(v);
        return (long)n + 1;
    }
    if (!json_is_array(v))
        return -1;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
        long m = flatten(e, out, cap, n);
        if (m < 0)
            return -1;
        n = (size_t)m;
    }
    return (long)n;
}

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void check_load(const char *body, size_t len)
{
    bs_tensor_data data;
    json_error_t fast_err, ref_err;
    json_t *fast = bs_tensor_json_load(body, len, &data, &fast_err);
    json_t *ref = json_loadb(body, len, JSON_REJECT_DUPLICATES, &ref_err);
    PROMISE(!fast == !ref, "fast %s, Jansson %s (%s)", fast ? "accepts" : "refuses",
            ref ? "accepts" : "refuses", fast ? ref_err.text : fast_err.text);
    if (!ref) {
        PROMISE(!data.values, "floats returned with an error");
        PROMISE(!strcmp(fast_err.text, ref_err.text) && fast_err.line == ref_err.line &&
                    fast_err.column == ref_err.column && fast_err.position == ref_err.position,
                "error '%s' at %d:%d (%d), Jansson '%s' at %d:%d (%d)", fast_err.text,
                fast_err.line, fast_err.column, fast_err.position, ref_err.text, ref_err.line,
                ref_err.column, ref_err.position);
        return;
    }
    if (data.values) {
        json_t *ref_data =
            json_object_get(json_array_get(json_object_get(ref, "inputs"), 0), "data");
        float *want = malloc(data.n * sizeof *want);
        PROMISE(want != NULL, "out of memory for %zu floats", data.n);
        long n = flatten(ref_data, want, data.n, 0);
        PROMISE(n >= 0 && (size_t)n == data.n, "%zu floats read, Jansson's data has %ld", data.n,
                n);
        for (size_t i = 0; i < data.n; i++)
            PROMISE(same_float(data.values[i], want[i]), "float %zu is %a, Jansson's %a", i,
                    (double)data.values[i], (double)want[i]);
        free(want);
        free(data.values);
        json_array_clear(ref_data);
    }
    PROMISE(json_equal(fast, ref), "the rest of the document differs from Jansson's");
    json_decref(fast);
    json_decref(ref);
}

static void check_number(const char *s, size_t len)
{
    float got;
    const char *stop;
    int rc = bs_tensor_json_number(s, s + len, &got, &stop);
    if (rc == 0) {
        /* the literal it read is a number Jansson reads to the same float */
        PROMISE(stop > s && stop <= s + len, "stop outside the literal");
        json_t *v = json_loadb(s, (size_t)(stop - s), JSON_DECODE_ANY, NULL);
        PROMISE(json_is_number(v), "'%.*s' read as a number, Jansson refuses it",
                (int)(stop - s), s);
        PROMISE(same_float(got, (float)json_number_value(v)), "'%.*s' read as %a, Jansson %a",
                (int)(stop - s), s, (double)got, json_number_value(v));
        json_decref(v);
    }
    /* a whole input that Jansson reads as one number (trailing blanks
     * allowed) is a literal the reader takes */
    json_t *whole = len && s[0] != ' ' && s[0] != '\t' && s[0] != '\n' && s[0] != '\r'
                        ? json_loadb(s, len, JSON_DECODE_ANY, NULL)
                        : NULL;
    if (json_is_number(whole))
        PROMISE(rc == 0 && same_float(got, (float)json_number_value(whole)),
                "Jansson reads a number the reader %s", rc ? "refuses" : "reads otherwise");
    json_decref(whole);
}

/* A literal the fast conversion (Eisel-Lemire) decides, built from the
 * input's first bytes: up to 19 digits, a point, an exponent that keeps
 * the value in its table's range or just outside; random bytes seldom
 * spell one. The reference is strtod, rounded to float. */
static void check_decimal(const uint8_t *buf, size_t len)
{
    if (len < 11)
        return;
    uint64_t w = 0, mod = 10;
    for (int i = 0; i < 8; i++)
        w = w << 8 | buf[i];
    for (int i = buf[8] % 19; i > 0; i--)
        mod *= 10;
    char num[24], text[64];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)(w % mod));
    int point = buf[9] % (n + 1), e = (int8_t)buf[10] % 90;
    /* num's digits with `point` of them after the point: 123 -> 1.23 */
    int k = snprintf(text, sizeof text, "%s%.*s%s%s%se%d", buf[9] & 0x80 ? "-" : "",
                     n - point, num, n == point ? "0" : "", point ? "." : "",
                     num + n - point, e);
    float got;
    const char *stop;
    PROMISE(bs_tensor_json_number(text, text + k, &got, &stop) == 0 && stop == text + k,
            "'%s' not read", text);
    PROMISE(same_float(got, (float)strtod(text, NULL)), "'%s' read as %a, strtod %a", text,
            (double)got, strtod(text, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    check_load((const char *)buf, len);
    check_number((const char *)buf, len);
    check_decimal(buf, len);
    return 0;
}
