/* infer_json — the inference answer as text (and binary outputs); see
 * infer_json.h.
 *
 * The buffer is sized for the longest text the answer can have before
 * anything is written, so the writers below never check for room. */
#include "api/infer_json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest texts of one element, with its comma. */
#define REAL_MAX 32 /* "%.9g" of a double: "-1.23456789e-308" */
#define INT_MAX_LEN 16
#define FIXED_MAX 384 /* the keys, names, parameters and punctuation */
#define CLASS_MAX 64  /* "%f:%d" of a probability and a class index; -FLT_MAX takes 58 */

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

/* "%f" of a probability, ':', its index: the classification string, cut
 * to cap - 1 bytes (only a value far outside [0, 1] would be that long). */
static size_t class_string(char *buf, size_t cap, float value, int index)
{
    int n = snprintf(buf, cap, "%f:%d", value, index);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* The indices of row's k largest values, largest first, ties by lower
 * index (a partial selection sort: k is at most V, V is small). */
static void top_k(const float *row, int V, int k, int *idx)
{
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int c = 0; c < V; c++) {
            int taken = 0;
            for (int j = 0; j < i && !taken; j++)
                taken = idx[j] == c;
            if (!taken && (best < 0 || row[c] > row[best]))
                best = c;
        }
        idx[i] = best;
    }
}

static void put_le(text *t, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        t->s[t->len++] = (char)(v >> (8 * i));
}

/* The bytes of the classification strings of a, each after its length. */
static void put_classes_binary(text *t, const bs_infer_answer *a, int *idx)
{
    for (int b = 0; b < a->batch; b++) {
        const float *row = a->probabilities + (size_t)b * (size_t)a->classes;
        top_k(row, a->classes, a->top_k, idx);
        for (int i = 0; i < a->top_k; i++) {
            char s[CLASS_MAX];
            size_t n = class_string(s, sizeof s, row[idx[i]], idx[i]);
            put_le(t, n, 4);
            memcpy(t->s + t->len, s, n);
            t->len += n;
        }
    }
}

/* The size of put_classes_binary's bytes. */
static size_t classes_binary_size(const bs_infer_answer *a, int *idx)
{
    size_t size = 0;
    for (int b = 0; b < a->batch; b++) {
        const float *row = a->probabilities + (size_t)b * (size_t)a->classes;
        top_k(row, a->classes, a->top_k, idx);
        for (int i = 0; i < a->top_k; i++) {
            char s[CLASS_MAX];
            size += 4 + class_string(s, sizeof s, row[idx[i]], idx[i]);
        }
    }
    return size;
}

/* The probabilities output's JSON, up to (not including) its closing '}'. */
static void put_probabilities(text *t, const bs_infer_answer *a, int *idx, size_t binary_size)
{
    size_t B = (size_t)a->batch, V = (size_t)a->classes;
    if (a->top_k > 0) {
        put(t, "{\"name\":\"probabilities\",\"datatype\":\"BYTES\",\"shape\":[");
        put_int(t, a->batch);
        put(t, ",");
        put_int(t, a->top_k);
    } else {
        put(t, "{\"name\":\"probabilities\",\"datatype\":\"FP32\",\"shape\":[");
        put_int(t, a->batch);
        put(t, ",");
        put_int(t, a->classes);
    }
    if (a->probabilities_binary) {
        put(t, "],\"parameters\":{\"binary_data_size\":");
        put_int(t, (long)binary_size);
        put(t, "}");
        return;
    }
    put(t, "],\"data\":[");
    if (a->top_k > 0) {
        for (size_t b = 0; b < B; b++) {
            const float *row = a->probabilities + b * V;
            top_k(row, a->classes, a->top_k, idx);
            for (int i = 0; i < a->top_k; i++) {
                if (b || i)
                    t->s[t->len++] = ',';
                t->s[t->len++] = '"';
                t->len += class_string(t->s + t->len, CLASS_MAX, row[idx[i]], idx[i]);
                t->s[t->len++] = '"';
            }
        }
    } else {
        int first = 1;
        for (size_t i = 0; i < B * V; i++) {
            if (!isfinite(a->probabilities[i]))
                continue;
            if (!first)
                t->s[t->len++] = ',';
            put_real(t, a->probabilities[i]);
            first = 0;
        }
    }
    put(t, "]");
}

char *bs_infer_answer_json(const bs_infer_answer *a, size_t *len, size_t *json_len)
{
    size_t B = (size_t)a->batch, V = (size_t)a->classes;
    int *idx = a->top_k > 0 ? malloc((size_t)a->top_k * sizeof *idx) : NULL;
    if (a->top_k > 0 && !idx)
        return NULL;
    size_t probs_bin = 0, labels_bin = a->labels_binary ? 8 * B : 0;
    if (a->probabilities && a->probabilities_binary)
        probs_bin = a->top_k > 0 ? classes_binary_size(a, idx) : 4 * B * V;
    size_t probs_text = a->top_k > 0 ? B * (size_t)a->top_k * (CLASS_MAX + 3) : B * V * REAL_MAX;
    size_t cap = FIXED_MAX + 6 * (strlen(a->model_name) + strlen(a->model_version)) +
                 (a->id ? 6 * strlen(a->id) + 16 : 0) +
                 (a->probabilities ? probs_text + probs_bin : 0) +
                 (a->labels ? B * INT_MAX_LEN + labels_bin : 0);
    text t = {malloc(cap), 0};
    if (!t.s) {
        free(idx);
        return NULL;
    }
    put(&t, "{\"model_name\":");
    put_string(&t, a->model_name);
    put(&t, ",\"model_version\":");
    put_string(&t, a->model_version);
    put(&t, ",\"outputs\":[");
    if (a->probabilities) {
        put_probabilities(&t, a, idx, probs_bin);
        put(&t, "}");
    }
    if (a->labels) {
        put(&t, a->probabilities ? ",{" : "{");
        put(&t, "\"name\":\"label\",\"datatype\":\"INT64\",\"shape\":[");
        put_int(&t, a->batch);
        if (a->labels_binary) {
            put(&t, "],\"parameters\":{\"binary_data_size\":");
            put_int(&t, (long)labels_bin);
            put(&t, "}}");
        } else {
            put(&t, "],\"data\":[");
            for (size_t i = 0; i < B; i++) {
                if (i)
                    t.s[t.len++] = ',';
                put_int(&t, a->labels[i]);
            }
            put(&t, "]}");
        }
    }
    put(&t, "]");
    if (a->id) {
        put(&t, ",\"id\":");
        put_string(&t, a->id);
    }
    put(&t, "}");
    *json_len = t.len;
    t.s[t.len] = '\0';
    if (a->probabilities && a->probabilities_binary) {
        if (a->top_k > 0) {
            put_classes_binary(&t, a, idx);
        } else {
            for (size_t i = 0; i < B * V; i++) {
                uint32_t bits;
                memcpy(&bits, &a->probabilities[i], sizeof bits);
                put_le(&t, bits, 4);
            }
        }
    }
    if (a->labels && a->labels_binary)
        for (size_t i = 0; i < B; i++)
            put_le(&t, (uint64_t)(int64_t)a->labels[i], 8);
    free(idx);
    *len = t.len;
    return t.s;
}
