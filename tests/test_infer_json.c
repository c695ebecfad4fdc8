/* test_infer_json — api/infer_json's text against what it replaces: the
 * same document built with Jansson and dumped with JSON_COMPACT |
 * JSON_REAL_PRECISION(9), byte for byte, over random probabilities of every
 * magnitude (and non-finite ones), every mix of outputs, batches, and ids
 * that need escaping; with classification (top k as "%f:index" strings)
 * and binary outputs (their bytes after the JSON) mixed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/infer_json.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The indices of row's values, largest first, ties by lower index. */
static void ranked(const float *row, int V, int *order)
{
    for (int c = 0; c < V; c++) {
        int at = c;
        while (at > 0 && row[c] > row[order[at - 1]]) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = c;
    }
}

/* Appends v's bytes little-endian to the binary tail. */
static void tail_le(uint8_t *tail, size_t *n, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        tail[(*n)++] = (uint8_t)(v >> (8 * i));
}

/* The answer as server/v2.c built it with Jansson, with the binary
 * outputs' bytes in tail (*tail_len of them). */
static char *reference(const bs_infer_answer *a, uint8_t *tail, size_t *tail_len)
{
    json_t *outputs = json_array();
    *tail_len = 0;
    if (a->probabilities) {
        json_t *data = json_array();
        size_t start = *tail_len;
        if (a->top_k > 0) {
            int order[16];
            for (int b = 0; b < a->batch; b++) {
                const float *row = a->probabilities + (size_t)b * (size_t)a->classes;
                ranked(row, a->classes, order);
                for (int k = 0; k < a->top_k; k++) {
                    char s[80];
                    int n = snprintf(s, sizeof s, "%f:%d", row[order[k]], order[k]);
                    json_array_append_new(data, json_string(s));
                    tail_le(tail, tail_len, (uint64_t)n, 4);
                    memcpy(tail + *tail_len, s, (size_t)n);
                    *tail_len += (size_t)n;
                }
            }
        } else {
            for (size_t i = 0; i < (size_t)a->batch * (size_t)a->classes; i++) {
                json_array_append_new(data, json_real(a->probabilities[i]));
                uint32_t bits;
                memcpy(&bits, &a->probabilities[i], 4);
                tail_le(tail, tail_len, bits, 4);
            }
        }
        json_t *o = json_pack("{s:s, s:s, s:[i,i]}", "name", "probabilities", "datatype",
                              a->top_k > 0 ? "BYTES" : "FP32", "shape", a->batch,
                              a->top_k > 0 ? a->top_k : a->classes);
        if (a->probabilities_binary) {
            json_object_set_new(o, "parameters", json_pack("{s:i}", "binary_data_size",
                                                          (json_int_t)(*tail_len - start)));
            json_decref(data);
        } else {
            json_object_set_new(o, "data", data);
            *tail_len = start;
        }
        json_array_append_new(outputs, o);
    }
    if (a->labels) {
        json_t *data = json_array();
        for (int b = 0; b < a->batch; b++)
            json_array_append_new(data, json_integer(a->labels[b]));
        json_t *o = json_pack("{s:s, s:s, s:[i]}", "name", "label", "datatype", "INT64", "shape",
                              a->batch);
        if (a->labels_binary) {
            for (int b = 0; b < a->batch; b++)
                tail_le(tail, tail_len, (uint64_t)(int64_t)a->labels[b], 8);
            json_object_set_new(o, "parameters", json_pack("{s:i}", "binary_data_size",
                                                          (json_int_t)(8 * a->batch)));
            json_decref(data);
        } else {
            json_object_set_new(o, "data", data);
        }
        json_array_append_new(outputs, o);
    }
    json_t *doc = json_pack("{s:s, s:s, s:o}", "model_name", a->model_name, "model_version",
                            a->model_version, "outputs", outputs);
    if (a->id)
        json_object_set_new(doc, "id", json_string(a->id));
    char *s = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(doc);
    return s;
}

static void check(const bs_infer_answer *a)
{
    static uint8_t tail[64 * 10 * 80];
    size_t len = 0, json_len = 0, tail_len;
    char *got = bs_infer_answer_json(a, &len, &json_len);
    char *want = reference(a, tail, &tail_len);
    assert_non_null(got);
    assert_non_null(want);
    assert_int_equal(json_len, strlen(want));
    if (memcmp(got, want, json_len))
        fail_msg("got  %.*s\nwant %s", (int)json_len, got, want);
    assert_int_equal(len, json_len + tail_len);
    assert_memory_equal(got + json_len, tail, tail_len);
    if (!tail_len)
        assert_int_equal(got[len], '\0');
    free(got);
    free(want);
}

/* A float of any magnitude: random bits, or a softmax-like value. */
static float random_float(void)
{
    uint64_t r = rnd();
    switch (r % 6) {
    case 0: {
        uint32_t bits = (uint32_t)(r >> 32);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f; /* NaN and infinities included */
    }
    case 1:
        return (float)(r >> 40) / (float)(1 << 24);
    case 2:
        return expf(-(float)(r >> 40) / (float)(1 << 18));
    case 3:
        return (float)((r >> 32) % 1000);
    case 4:
        return ldexpf(1.0f, (int)((r >> 32) % 280) - 149);
    default:
        return (float)(r >> 40) * 1e-9f;
    }
}

static void test_random_answers(void **state)
{
    (void)state;
    static const char *const ids[] = {
        NULL, "", "req-42", "quote\" and \\ backslash", "tab\there\nnewline\r\b\f",
        "ctl \x01\x1f end", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "slash / kept",
    };
    static const char *const names[] = {"fc100-100-10", "cnn", "fc10-1e-4", "a.b_c"};
    float probs[64 * 10];
    int labels[64];
    for (int round = 0; round < 20000; round++) {
        int B = 1 + (int)(rnd() % (round % 10 ? 3 : 64)), V = 1 + (int)(rnd() % 10);
        for (int i = 0; i < B * V; i++)
            probs[i] = random_float();
        for (int b = 0; b < B; b++)
            labels[b] = (int)(rnd() % (uint64_t)V);
        int outputs = 1 + (int)(rnd() % 3);
        int top_k = round % 4 == 1 ? 1 + (int)(rnd() % (uint64_t)V) : 0;
        if (top_k) /* classification ranks numbers; NaN has no rank */
            for (int i = 0; i < B * V; i++)
                if (isnan(probs[i]))
                    probs[i] = 0.25f;
        bs_infer_answer a = {
            .model_name = names[rnd() % 4],
            .model_version = "1",
            .id = ids[rnd() % (sizeof ids / sizeof ids[0])],
            .batch = B,
            .classes = V,
            .probabilities = outputs & 1 ? probs : NULL,
            .labels = outputs & 2 ? labels : NULL,
            .top_k = top_k,
            .probabilities_binary = (int)(rnd() % 3 == 0),
            .labels_binary = (int)(rnd() % 3 == 0),
        };
        check(&a);
    }
}

/* The spellings "%.9g" has, each with Jansson's changes. */
static void test_real_spellings(void **state)
{
    (void)state;
    static const float values[] = {
        0.0f, -0.0f, 1.0f, 2.0f, 100.0f, 123456789.0f, 1e9f, 1.5e10f, 0.1f, 0.5f,
        1e-4f, 9.99999e-5f, 1e-5f, 1.17549435e-38f, 1.4e-45f, 3.40282347e38f, 1e20f,
        1e-10f, 0.333333343f, 0.99999994f, NAN, INFINITY, -INFINITY,
    };
    size_t n = sizeof values / sizeof values[0];
    int label = 0;
    bs_infer_answer a = {.model_name = "m", .model_version = "1", .batch = 1,
                         .classes = (int)n, .probabilities = values, .labels = &label};
    check(&a);
}

static void test_empty_batch_outputs(void **state)
{
    (void)state;
    bs_infer_answer a = {.model_name = "m", .model_version = "1", .batch = 3, .classes = 10};
    check(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_answers),
        cmocka_unit_test(test_real_spellings),
        cmocka_unit_test(test_empty_batch_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
