/* seed_images — writes the image seeds of tests/fuzz/corpus/ with the
 * project's own encoder (api/image.h): an 8x8 digit-like stroke as gray
 * and RGB PNG and JPEG, and the gray PNG as base64 for the base64 target
 * and inside an attack request. Run by tests/fuzz/make_corpus.sh. */
#include "api/base64.h"
#include "api/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "seed_images: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seed_images CORPUS_DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    enum { W = 8, H = 8 };
    uint8_t gray[W * H], rgb[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t v = (x == 3 || x == 4) && y > 0 && y < 7 ? 255 : (uint8_t)(8 * y);
            gray[y * W + x] = v;
            rgb[3 * (y * W + x)] = v;
            rgb[3 * (y * W + x) + 1] = (uint8_t)(255 - v);
            rgb[3 * (y * W + x) + 2] = (uint8_t)(32 * x);
        }
    struct {
        const char *name;
        const uint8_t *pixels;
        int channels;
        bs_image_format fmt;
    } seeds[] = {
        {"image/gray.png", gray, 1, BS_IMAGE_PNG},
        {"image/rgb.png", rgb, 3, BS_IMAGE_PNG},
        {"image/gray.jpg", gray, 1, BS_IMAGE_JPEG},
        {"image/rgb.jpg", rgb, 3, BS_IMAGE_JPEG},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        uint8_t *out;
        size_t len;
        char err[BS_ERR_LEN];
        if (bs_image_encode(seeds[i].pixels, W, H, seeds[i].channels, seeds[i].fmt, 90, &out,
                            &len, err)) {
            fprintf(stderr, "seed_images: %s: %s\n", seeds[i].name, err);
            return 1;
        }
        if (write_file(dir, seeds[i].name, out, len))
            return 1;
        if (i == 0) {
            char *b64 = bs_base64_encode(out, len);
            char body[4096];
            int n = snprintf(body, sizeof body,
                             "{\"model\":\"digits\",\"target\":[3,5],\"image\":{\"png\":\"%s\"},"
                             "\"invert\":\"auto\",\"image_format\":\"jpeg\"}",
                             b64);
            if (!b64 || write_file(dir, "base64/gray.png.b64", b64, strlen(b64)) ||
                write_file(dir, "attack_request/png.json", body, (size_t)n))
                return 1;
            /* the same PNG as an uploaded file after the form's fields */
            char form[4096];
            int k = snprintf(form, sizeof form, "model=digits\ntarget=3,5\nimage=\n");
            memcpy(form + k + 1, out, len);
            form[k] = '\0';
            if (write_file(dir, "attack_request/form_upload", form, (size_t)k + 1 + len))
                return 1;
            free(b64);
        }
        free(out);
    }
    return 0;
}
