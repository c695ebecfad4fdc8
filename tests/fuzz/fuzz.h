/* fuzz — what the libFuzzer targets of tests/fuzz/ share: the entry point
 * libFuzzer calls, and PROMISE, which turns a module's documented promise
 * into a crash libFuzzer reports (with the input that broke it) instead of
 * a silent wrong answer. */
#ifndef BS_FUZZ_H
#define BS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the promise's text and a message when cond is false. */
#define PROMISE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "promise broken at %s:%d: %s: ", __FILE__,         \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* The input as a malloc'd string: its bytes and a NUL after them (a NUL
 * inside ends the string early, as it would a header); NULL when out of
 * memory. */
static inline char *fuzz_text(const uint8_t *buf, size_t len)
{
    char *text = malloc(len + 1);
    if (text) {
        memcpy(text, buf, len);
        text[len] = '\0';
    }
    return text;
}

/* A comma-separated list's entries in the opposite order, into out (as
 * long as list): a verdict on a list must not depend on its order. */
static inline void fuzz_reversed_list(const char *list, char *out)
{
    size_t len = strlen(list), at = 0;
    const char *end = list + len;
    while (end > list) {
        const char *start = end;
        while (start > list && start[-1] != ',')
            start--;
        memcpy(out + at, start, (size_t)(end - start));
        at += (size_t)(end - start);
        if (start > list)
            out[at++] = ',';
        end = start > list ? start - 1 : list;
    }
    out[at] = '\0';
}

#endif
