/* fuzz_image — api/image.h's decoder and api/image_input.h's path from
 * encoded bytes to a model input, on any bytes as a request carries them.
 *
 * Promises checked (image.h): the answer is 0, BS_IMAGE_TOO_LARGE or -1,
 * a refusal has a message and leaves the image empty; a decoded image has
 * a positive size within the pixel cap, 1 or 3 channels and every pixel in
 * [0,1]. The cap is judged from the header alone: a decoded image is
 * decoded again with a cap one pixel short of its size, which must be
 * BS_IMAGE_TOO_LARGE. A small image's pixels survive the project's own
 * PNG encoder (as bytes). image_input.h gives the same verdict with its
 * error code, and a model input within [0,1]. */
#include "tests/fuzz/fuzz.h"

#include "api/image.h"
#include "api/image_input.h"

#include <math.h>
#include <string.h>

/* Large enough for a real photo's thumbnail, small enough to stay fast. */
#define MAX_PIXELS (256 * 256)

static int in_unit(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(v[i] >= 0.0f && v[i] <= 1.0f))
            return 0;
    return 1;
}

/* The decoded image's bytes through the PNG encoder and back. */
static void check_png_round_trip(const bs_image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    uint8_t *bytes = malloc(n), *back = malloc(n), *png = NULL;
    size_t png_len;
    char err[BS_ERR_LEN];
    PROMISE(bytes && back, "out of memory");
    bs_image_to_bytes(img->pixels, n, bytes);
    PROMISE(bs_image_encode(bytes, img->width, img->height, img->channels, BS_IMAGE_PNG, 0,
                            &png, &png_len, err) == 0,
            "a decoded image does not encode: %s", err);
    bs_image again;
    PROMISE(bs_image_decode(png, png_len, MAX_PIXELS, &again, err) == 0,
            "the encoder's PNG does not decode: %s", err);
    PROMISE(again.width == img->width && again.height == img->height &&
                again.channels == img->channels,
            "%dx%dx%d came back %dx%dx%d", img->width, img->height, img->channels, again.width,
            again.height, again.channels);
    bs_image_to_bytes(again.pixels, n, back);
    PROMISE(!memcmp(bytes, back, n), "PNG round trip changed pixels");
    bs_image_free(&again);
    free(png);
    free(bytes);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "";
    bs_image img;
    int rc = bs_image_decode(buf, len, MAX_PIXELS, &img, err);
    PROMISE(rc == 0 || rc == -1 || rc == BS_IMAGE_TOO_LARGE, "answer %d", rc);
    if (rc) {
        PROMISE(err[0] && !img.pixels && !img.width && !img.height,
                "a refusal without a message or with an image");
    } else {
        size_t pixels = (size_t)img.width * (size_t)img.height;
        PROMISE(img.width > 0 && img.height > 0 && pixels <= MAX_PIXELS, "size %dx%d",
                img.width, img.height);
        PROMISE(img.channels == 1 || img.channels == 3, "%d channels", img.channels);
        PROMISE(in_unit(img.pixels, pixels * (size_t)img.channels), "a pixel outside [0,1]");
        bs_image none;
        PROMISE(bs_image_decode(buf, len, pixels - 1, &none, err) == BS_IMAGE_TOO_LARGE,
                "%dx%d decoded under a cap of %zu pixels", img.width, img.height, pixels - 1);
        if (pixels <= 64 * 64)
            check_png_round_trip(&img);
        float x[3 * 8 * 8];
        int inverted = -1;
        PROMISE(bs_image_to_input(&img, 3, 8, 8, BS_INVERT_AUTO, x, &inverted, err) == 0,
                "a decoded image not convertible: %s", err);
        PROMISE(in_unit(x, 3 * 8 * 8) && (inverted == 0 || inverted == 1),
                "input outside [0,1] or inverted %d", inverted);
        /* every resize mode into a non-square input fills all of it (the
         * NaNs put there first would fail in_unit) */
        for (int rs = BS_RESIZE_STRETCH; rs <= BS_RESIZE_PAD_RIGHT; rs++) {
            float line[3 * 4 * 16];
            for (size_t i = 0; i < sizeof line / sizeof *line; i++)
                line[i] = NAN;
            PROMISE(bs_image_to_input_fit(&img, 3, 4, 16, (bs_resize)rs, BS_INVERT_NO, line,
                                          NULL, err) == 0,
                    "resize mode %d: not convertible: %s", rs, err);
            PROMISE(in_unit(line, 3 * 4 * 16), "resize mode %d: input outside [0,1]", rs);
        }
    }
    bs_image_free(&img);

    float x[28 * 28];
    bs_image_target t = {.shape = {1, 28, 28}, .max_pixels = MAX_PIXELS, .x = x};
    bs_error_code code;
    char msg[BS_ERR_LEN] = "";
    int irc = bs_image_input_encoded(buf, len, BS_INVERT_AUTO, &t, &code, msg);
    if (irc == 0) {
        PROMISE(rc == 0, "image_input accepts what the decoder refuses");
        PROMISE(in_unit(x, 28 * 28), "a model input outside [0,1]");
    } else {
        PROMISE(irc == -1 && msg[0], "answer %d, message '%s'", irc, msg);
        PROMISE(code == (rc == BS_IMAGE_TOO_LARGE ? BS_E_IMAGE_TOO_LARGE : BS_E_INVALID_IMAGE),
                "error code %d for decoder answer %d", (int)code, rc);
    }
    return 0;
}
