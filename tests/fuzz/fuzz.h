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

#endif
