/* infer_json — the inference answer as text; see infer_json.h.
 *
 * The buffer is sized for the longest text the answer can have before
 * anything is written, so the writers below never check for room. */
#include "api/infer_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest texts of one element, with its comma. */
#define REAL_MAX 32 /* "%.9g" of a double: "-1.23456789e-308" */
#define INT_MAX_LEN 16
#define FIXED_MAX 256 /* the keys, names and punctuation */

typedef struct text {
    char *s;
    size_t len;
} text;

static void put(text *t, const char *s)
{
    size_t n = strlen(s);
    memcpy(t->s + t->len, s, n);
    t->len += n;
}

/* A JSON string as Jansson writes valid UTF-8: '"', '\\' and control
 * characters escaped, everything else as it is. At most 6 bytes per byte
 * of s, plus the quotes. */
static void put_string(text *t, const char *s)
{
    t->s[t->len++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t" : NULL;
        if (esc)
            put(t, esc);
        else if (c < 0x20)
            t->len += (size_t)snprintf(t->s + t->len, 7, "\\u%04X", c);
        else
            t->s[t->len++] = (char)c;
    }
    t->s[t->len++] = '"';
}

/* A real as Jansson's JSON_REAL_PRECISION(9) writes it: "%.9g", ".0"
 * added when that reads as an integer, and the exponent without '+' or
 * leading zeros ("1e-05" is "1e-5"). */
static void put_real(text *t, double v)
{
    char *s = t->s + t->len;
    size_t n = (size_t)snprintf(s, REAL_MAX, "%.9g", v);
    char *e = memchr(s, 'e', n);
    if (!e && !memchr(s, '.', n)) {
        memcpy(s + n, ".0", 2);
        n += 2;
    }
    if (e) {
        char *from = e + 1, *digits = e + 1;
        if (*digits == '-')
            digits++, from++;
        if (*from == '+')
            from++;
        while (*from == '0')
            from++;
        memmove(digits, from, (size_t)(s + n - from));
        n -= (size_t)(from - digits);
    }
    t->len += n;
}

static void put_int(text *t, long v)
{
    t->len += (size_t)snprintf(t->s + t->len, INT_MAX_LEN, "%ld", v);
}

char *bs_infer_answer_json(const bs_infer_answer *a, size_t *len)
{
    size_t B = (size_t)a->batch, V = (size_t)a->classes;
    size_t cap = FIXED_MAX + 6 * (strlen(a->model_name) + strlen(a->model_version)) +
                 (a->id ? 6 * strlen(a->id) + 16 : 0) +
                 (a->probabilities ? B * V * REAL_MAX : 0) + (a->labels ? B * INT_MAX_LEN : 0);
    text t = {malloc(cap), 0};
    if (!t.s)
        return NULL;
    put(&t, "{\"model_name\":");
    put_string(&t, a->model_name);
    put(&t, ",\"model_version\":");
    put_string(&t, a->model_version);
    put(&t, ",\"outputs\":[");
    if (a->probabilities) {
        put(&t, "{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[");
        put_int(&t, a->batch);
        put(&t, ",");
        put_int(&t, a->classes);
        put(&t, "],\"data\":[");
        int first = 1;
        for (size_t i = 0; i < B * V; i++) {
            if (!isfinite(a->probabilities[i]))
                continue;
            if (!first)
                t.s[t.len++] = ',';
            put_real(&t, a->probabilities[i]);
            first = 0;
        }
        put(&t, "]}");
    }
    if (a->labels) {
        put(&t, a->probabilities ? ",{" : "{");
        put(&t, "\"name\":\"label\",\"datatype\":\"INT64\",\"shape\":[");
        put_int(&t, a->batch);
        put(&t, "],\"data\":[");
        for (size_t i = 0; i < B; i++) {
            if (i)
                t.s[t.len++] = ',';
            put_int(&t, a->labels[i]);
        }
        put(&t, "]}");
    }
    put(&t, "]");
    if (a->id) {
        put(&t, ",\"id\":");
        put_string(&t, a->id);
    }
    put(&t, "}");
    t.s[t.len] = '\0';
    *len = t.len;
    return t.s;
}
