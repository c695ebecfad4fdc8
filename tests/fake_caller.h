/* fake_caller — the caller's side of api/attack_request.h without a
 * daemon, for tests/test_attack_request.c and its fuzz target: two models
 * that exist only as shapes ("digits" 1x28x28 and "colour" 3x28x28, ten
 * classes each), a split mnist/test of 28x28 images and one tiny/test of
 * 2x2 ones, three images each, whose sample i is the constant image i/10.
 * A file that includes it may define FAKE_SAMPLE_CHECK(index, n) first to
 * check the index a sample is asked for. */
#ifndef BS_TESTS_FAKE_CALLER_H
#define BS_TESTS_FAKE_CALLER_H

#include "api/attack_request.h"

#include <stdio.h>
#include <string.h>

#ifndef FAKE_SAMPLE_CHECK
#define FAKE_SAMPLE_CHECK(index, n) ((void)(index), (void)(n))
#endif

/* The parser reads only a model's shape and classes. */
static bs_model digits = {.input_shape = {1, 28, 28}, .input_size = 784, .classes = 10};
static bs_model colour = {.input_shape = {3, 28, 28}, .input_size = 2352, .classes = 10};

static const bs_model *fake_model(void *ctx, const char *name, const char **canonical, char *err)
{
    (void)ctx;
    if (!strcmp(name, "digits") || !strcmp(name, "colour")) {
        *canonical = !strcmp(name, "digits") ? "digits" : "colour";
        return !strcmp(name, "digits") ? &digits : &colour;
    }
    snprintf(err, BS_ERR_LEN, "No model named '%s' here.", name);
    return NULL;
}

static int fake_report_all(void *ctx, const bs_model *m, bs_report_model *out, int cap)
{
    (void)ctx;
    (void)m;
    if (cap < 1)
        return 0;
    out[0] = (bs_report_model){"digits", &digits};
    return 1;
}

static int fake_split(void *ctx, const char *dataset, const char *split, bs_image_split *out,
                      char *err)
{
    (void)ctx;
    if (!strcmp(dataset, "mnist") && !strcmp(split, "test")) {
        *out = (bs_image_split){.dataset = "mnist", .split = "test", .n = 3,
                                .shape = {1, 28, 28}, .input_size = 784};
        return 0;
    }
    if (!strcmp(dataset, "tiny") && !strcmp(split, "test")) {
        *out = (bs_image_split){.dataset = "tiny", .split = "test", .n = 3,
                                .shape = {1, 2, 2}, .input_size = 4};
        return 0;
    }
    snprintf(err, BS_ERR_LEN, "No split %s/%s here.", dataset, split);
    return -1;
}

static int fake_sample(void *ctx, const bs_image_split *split, int index, float *x)
{
    (void)ctx;
    FAKE_SAMPLE_CHECK(index, split->n);
    for (size_t i = 0; i < split->input_size; i++)
        x[i] = (float)index / 10.0f;
    return 0;
}

static const bs_attack_env fake_env = {.model = fake_model, .report_all = fake_report_all,
                                  .max_report = 4, .datasets = {NULL, fake_split, fake_sample},
                                  .max_pixels = 100 * 100};

#endif
