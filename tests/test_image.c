/* test_image — PNG/JPEG decoding and encoding, the conversion of images to
 * model inputs (colour, area-averaging resize, inversion), and base64; every
 * way an image or a base64 string can be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>
#include <spng.h>
#include <turbojpeg.h>
#include <zlib.h>

#include "api/base64.h"
#include "api/image.h"

#define BIG ((size_t)1 << 24) /* pixel cap for images that should pass */

static void assert_err_has(const char *err, const char *want)
{
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* Decoding buf must fail with a message containing want (any message when
 * want is NULL) and leave the image empty. */
static void assert_decode_refused(const uint8_t *buf, size_t len,
                                  size_t max_pixels, const char *want)
{
    char err[BS_ERR_LEN] = "";
    bs_image img = {.width = 7, .pixels = (float *)&img};
    int rc = bs_image_decode(buf, len, max_pixels, &img, err);
    assert_true(rc == -1 || rc == BS_IMAGE_TOO_LARGE);
    assert_true(err[0] != '\0');
    if (want)
        assert_err_has(err, want);
    assert_null(img.pixels);
    assert_int_equal(img.width, 0);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)((i * 131 + seed * 17 + (i >> 3) * 7) & 0xff);
    return b;
}

static uint8_t *encode(const uint8_t *px, int w, int h, int ch,
                       bs_image_format fmt, int quality, size_t *len)
{
    char err[BS_ERR_LEN] = "";
    uint8_t *out = NULL;
    if (bs_image_encode(px, w, h, ch, fmt, quality, &out, len, err))
        fail_msg("encode: %s", err);
    return out;
}

/* A PNG straight from libspng, for colour types and depths bs_image_encode
 * does not write. data is in the PNG's own layout (host-endian 16-bit). */
static uint8_t *spng_make(int w, int h, int depth, int color_type,
                          const void *data, size_t size,
                          const struct spng_plte *plte, size_t *len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h,
                             .bit_depth = (uint8_t)depth,
                             .color_type = (uint8_t)color_type};
    assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
    assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
    if (plte)
        assert_int_equal(spng_set_plte(ctx, (struct spng_plte *)plte), 0);
    assert_int_equal(spng_encode_image(ctx, data, size, SPNG_FMT_PNG,
                                       SPNG_ENCODE_FINALIZE), 0);
    int e = 0;
    uint8_t *png = spng_get_png_buffer(ctx, len, &e);
    assert_int_equal(e, 0);
    spng_ctx_free(ctx);
    return png;
}

static bs_image decode_ok(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "";
    bs_image img;
    if (bs_image_decode(buf, len, BIG, &img, err))
        fail_msg("decode: %s", err);
    return img;
}

/* --- PNG and JPEG round trips --------------------------------------------- */

static void png_round_trip(int ch)
{
    const int w = 13, h = 7;
    size_t n = (size_t)w * h * ch, len;
    uint8_t *px = pattern(n, 3);
    px[0] = 0;
    px[1] = 255;
    uint8_t *png = encode(px, w, h, ch, BS_IMAGE_PNG, 0, &len);
    bs_image img = decode_ok(png, len);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_int_equal(img.channels, ch);
    for (size_t i = 0; i < n; i++)
        assert_true(img.pixels[i] == (float)px[i] / 255.0f);
    uint8_t *back = malloc(n);
    bs_image_to_bytes(img.pixels, n, back);
    assert_memory_equal(back, px, n);
    free(back);
    bs_image_free(&img);
    assert_null(img.pixels);
    free(png);
    free(px);
}

static void test_png_round_trip_gray(void **state)
{
    (void)state;
    png_round_trip(1);
}

static void test_png_round_trip_rgb(void **state)
{
    (void)state;
    png_round_trip(3);
}

/* A model's channel planes (CHW) encode as the interleaved pixels (HWC)
 * they are: pixel p's channel c is planes[c*H*W + p]. */
static void test_png_from_planes(void **state)
{
    (void)state;
    int w = 5, h = 3, ch = 3;
    size_t plane = (size_t)w * h;
    uint8_t planes[45];
    for (int c = 0; c < ch; c++)
        for (size_t p = 0; p < plane; p++)
            planes[(size_t)c * plane + p] = (uint8_t)(c * 80 + p);
    uint8_t *png = NULL;
    size_t len = 0;
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_image_encode_planes(planes, ch, h, w, BS_IMAGE_PNG, 0, &png, &len, err),
                     0);
    bs_image img;
    assert_int_equal(bs_image_decode(png, len, 100, &img, err), 0);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_int_equal(img.channels, ch);
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < ch; c++)
            assert_int_equal(lroundf(img.pixels[p * ch + (size_t)c] * 255.0f), c * 80 + (int)p);
    bs_image_free(&img);
    free(png);
    assert_int_equal(bs_image_encode_planes(planes, 0, h, w, BS_IMAGE_PNG, 0, &png, &len, err),
                     -1);
    assert_null(png);
}

/* A smooth image: gradients, so JPEG's error stays small. */
static uint8_t *smooth(int w, int h, int ch)
{
    uint8_t *px = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                px[((size_t)y * w + x) * ch + c] =
                    (uint8_t)(40 + (x * 150) / w + (y * 50) / h + c * 10);
    return px;
}

static void jpeg_round_trip(int ch)
{
    const int w = 64, h = 48;
    size_t n = (size_t)w * h * ch, len;
    uint8_t *px = smooth(w, h, ch);
    uint8_t *jpg = encode(px, w, h, ch, BS_IMAGE_JPEG, 90, &len);
    assert_true(jpg[0] == 0xff && jpg[1] == 0xd8);
    bs_image img = decode_ok(jpg, len);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_int_equal(img.channels, ch);
    double mae = 0.0;
    for (size_t i = 0; i < n; i++)
        mae += fabs(img.pixels[i] - px[i] / 255.0);
    mae /= (double)n;
    assert_true(mae < 0.05);
    bs_image_free(&img);
    free(jpg);
    free(px);
}

static void test_jpeg_round_trip_rgb(void **state)
{
    (void)state;
    jpeg_round_trip(3);
}

static void test_jpeg_round_trip_gray(void **state)
{
    (void)state;
    jpeg_round_trip(1);
}

/* --- PNG flavours --------------------------------------------------------- */

static void test_png_16bit_scaled(void **state)
{
    (void)state;
    /* 1000/65535 = 0.01526 would come out as 4/255 = 0.0157 if it went
     * through 8 bits; the check is tighter than that. */
    uint16_t gray[4] = {0, 1000, 32768, 65535};
    size_t len;
    uint8_t *png = spng_make(2, 2, 16, SPNG_COLOR_TYPE_GRAYSCALE, gray,
                             sizeof gray, NULL, &len);
    bs_image img = decode_ok(png, len);
    assert_int_equal(img.channels, 1);
    for (int i = 0; i < 4; i++)
        assert_float_equal(img.pixels[i], gray[i] / 65535.0, 1e-6);
    bs_image_free(&img);
    free(png);

    uint16_t rgb[6] = {65535, 0, 1000, 300, 60000, 12345};
    png = spng_make(2, 1, 16, SPNG_COLOR_TYPE_TRUECOLOR, rgb, sizeof rgb, NULL,
                    &len);
    img = decode_ok(png, len);
    assert_int_equal(img.channels, 3);
    for (int i = 0; i < 6; i++)
        assert_float_equal(img.pixels[i], rgb[i] / 65535.0, 1e-6);
    bs_image_free(&img);
    free(png);
}

static void test_png_gray_alpha_over_white(void **state)
{
    (void)state;
    /* (gray, alpha) pairs */
    uint8_t ga[8] = {0, 255, 0, 0, 0, 128, 200, 255};
    size_t len;
    uint8_t *png = spng_make(4, 1, 8, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, ga,
                             sizeof ga, NULL, &len);
    bs_image img = decode_ok(png, len);
    assert_int_equal(img.channels, 1);
    assert_float_equal(img.pixels[0], 0.0, 1e-6);           /* opaque black */
    assert_float_equal(img.pixels[1], 1.0, 1e-6);           /* transparent: white */
    assert_float_equal(img.pixels[2], 1.0 - 128 / 255.0, 1e-6);
    assert_float_equal(img.pixels[3], 200 / 255.0, 1e-6);
    bs_image_free(&img);
    free(png);
}

static void test_png_rgba_over_white(void **state)
{
    (void)state;
    uint8_t rgba[12] = {255, 0, 0, 255, 0, 0, 0, 0, 0, 100, 200, 51};
    size_t len;
    uint8_t *png = spng_make(3, 1, 8, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, rgba,
                             sizeof rgba, NULL, &len);
    bs_image img = decode_ok(png, len);
    assert_int_equal(img.channels, 3);
    float *p = img.pixels;
    assert_float_equal(p[0], 1.0, 1e-6);
    assert_float_equal(p[1], 0.0, 1e-6);
    assert_float_equal(p[2], 0.0, 1e-6);
    for (int k = 3; k < 6; k++)
        assert_float_equal(p[k], 1.0, 1e-6);
    double a = 51 / 255.0;
    assert_float_equal(p[6], 0 * a + 1 - a, 1e-6);
    assert_float_equal(p[7], 100 / 255.0 * a + 1 - a, 1e-6);
    assert_float_equal(p[8], 200 / 255.0 * a + 1 - a, 1e-6);
    bs_image_free(&img);
    free(png);
}

static void test_png_palette_is_rgb(void **state)
{
    (void)state;
    struct spng_plte plte = {.n_entries = 2};
    plte.entries[0] = (struct spng_plte_entry){.red = 10, .green = 20, .blue = 30};
    plte.entries[1] = (struct spng_plte_entry){.red = 255, .green = 128, .blue = 0};
    uint8_t idx[3] = {1, 0, 1};
    size_t len;
    uint8_t *png = spng_make(3, 1, 8, SPNG_COLOR_TYPE_INDEXED, idx, sizeof idx,
                             &plte, &len);
    bs_image img = decode_ok(png, len);
    assert_int_equal(img.channels, 3);
    assert_float_equal(img.pixels[0], 1.0, 1e-6);
    assert_float_equal(img.pixels[1], 128 / 255.0, 1e-6);
    assert_float_equal(img.pixels[3], 10 / 255.0, 1e-6);
    assert_float_equal(img.pixels[5], 30 / 255.0, 1e-6);
    bs_image_free(&img);
    free(png);
}

/* --- refusals --------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The signature and a valid IHDR chunk (correct CRC), nothing else. */
static size_t png_header_only(uint8_t buf[33], uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    put32(buf + 8, 13);
    memcpy(buf + 12, "IHDR", 4);
    put32(buf + 16, w);
    put32(buf + 20, h);
    buf[24] = 8; /* bit depth */
    buf[25] = 0; /* gray */
    buf[26] = buf[27] = buf[28] = 0;
    put32(buf + 29, (uint32_t)crc32(0, buf + 12, 17));
    return 33;
}

static void test_pixel_cap_refused_from_header(void **state)
{
    (void)state;
    uint8_t buf[33];
    size_t len = png_header_only(buf, 100000, 100000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_decode_refused(buf, len, BIG, "100000x100000");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_true(s < 0.1);

    char err[BS_ERR_LEN];
    bs_image img;
    assert_int_equal(bs_image_decode(buf, len, BIG, &img, err), BS_IMAGE_TOO_LARGE);
    assert_err_has(err, "10000000000");
    assert_err_has(err, "16777216");
}

static void test_pixel_cap_exact_limit(void **state)
{
    (void)state;
    uint8_t px[30 * 30] = {0};
    size_t len;
    uint8_t *png = encode(px, 30, 30, 1, BS_IMAGE_PNG, 0, &len);
    assert_decode_refused(png, len, 899, "30x30");
    char err[BS_ERR_LEN];
    bs_image img;
    assert_int_equal(bs_image_decode(png, len, 900, &img, err), 0);
    bs_image_free(&img);
    free(png);
}

static void test_pixel_cap_jpeg(void **state)
{
    (void)state;
    uint8_t *px = smooth(40, 30, 3);
    size_t len;
    uint8_t *jpg = encode(px, 40, 30, 3, BS_IMAGE_JPEG, 80, &len);
    assert_decode_refused(jpg, len, 1199, "40x30");
    char err[BS_ERR_LEN];
    bs_image img;
    assert_int_equal(bs_image_decode(jpg, len, 1199, &img, err), BS_IMAGE_TOO_LARGE);
    free(jpg);
    free(px);
}

static void test_png_zero_width_refused(void **state)
{
    (void)state;
    uint8_t buf[33];
    size_t len = png_header_only(buf, 0, 10);
    char err[BS_ERR_LEN];
    bs_image img;
    assert_int_equal(bs_image_decode(buf, len, BIG, &img, err), -1);
    assert_err_has(err, "PNG");
}

/* Finds the SOF0 marker of a baseline JPEG. */
static size_t find_sof(const uint8_t *jpg, size_t len)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0)
            return i;
    fail_msg("no SOF0 marker");
    return 0;
}

static void test_jpeg_zero_height_refused(void **state)
{
    (void)state;
    uint8_t *px = smooth(16, 16, 1);
    size_t len;
    uint8_t *jpg = encode(px, 16, 16, 1, BS_IMAGE_JPEG, 80, &len);
    size_t sof = find_sof(jpg, len);
    jpg[sof + 5] = jpg[sof + 6] = 0; /* height */
    assert_decode_refused(jpg, len, BIG, "JPEG");
    free(jpg);
    free(px);
}

static void test_png_truncated_refused(void **state)
{
    (void)state;
    const int w = 32, h = 32;
    uint8_t *px = pattern((size_t)w * h * 3, 5);
    size_t len;
    uint8_t *png = encode(px, w, h, 3, BS_IMAGE_PNG, 0, &len);
    size_t cuts[] = {8, 12, 20, 32, 33, 40, 50, len / 2, len - 13, len - 5, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        assert_decode_refused(png, cuts[i], BIG, "PNG");
    free(png);
    free(px);
}

static void test_jpeg_truncated_refused(void **state)
{
    (void)state;
    uint8_t *px = smooth(64, 64, 3);
    size_t len;
    uint8_t *jpg = encode(px, 64, 64, 3, BS_IMAGE_JPEG, 90, &len);
    size_t cuts[] = {3, 4, 10, 20, 100, 300, len / 2, len - 10, len - 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        assert_decode_refused(jpg, cuts[i], BIG, "JPEG");
    free(jpg);
    free(px);
}

/* A JPEG cut anywhere before the end of its frame header has no size:
 * refused as a bad header (-1), never as empty or too large, every time
 * (TurboJPEG alone reports success for some such cuts, with a size it never
 * read: 0x0 or random values from run to run). */
static void test_jpeg_cut_before_frame_refused(void **state)
{
    (void)state;
    uint8_t *px = smooth(16, 16, 1);
    size_t len;
    uint8_t *jpg = encode(px, 16, 16, 1, BS_IMAGE_JPEG, 90, &len);
    size_t sof = 2;
    while (sof + 4 <= len && !(jpg[sof + 1] >= 0xC0 && jpg[sof + 1] <= 0xC3))
        sof += 2 + ((size_t)jpg[sof + 2] << 8 | jpg[sof + 3]);
    assert_true(sof + 4 <= len); /* found the SOF of a baseline JPEG */
    for (size_t cut = 4; cut < sof + 2 + 8; cut++)
        for (int rep = 0; rep < 3; rep++) {
            char err[BS_ERR_LEN] = "";
            bs_image img = {0};
            uint8_t *copy = malloc(cut);
            memcpy(copy, jpg, cut);
            int rc = bs_image_decode(copy, cut, BIG, &img, err);
            if (rc != -1)
                fail_msg("cut at %zu of %zu (frame header at %zu): rc %d: %s", cut, len, sof,
                         rc, err);
            assert_err_has(err, "JPEG header");
            free(copy);
        }
    free(jpg);
    free(px);
}

static void test_png_bad_crc_refused(void **state)
{
    (void)state;
    uint8_t *px = pattern(16 * 16, 9);
    size_t len;
    uint8_t *png = encode(px, 16, 16, 1, BS_IMAGE_PNG, 0, &len);
    png[45] ^= 0x40; /* inside the IDAT data */
    assert_decode_refused(png, len, BIG, "PNG");
    free(png);
    free(px);
}

static void test_jpeg_corrupt_data_refused(void **state)
{
    (void)state;
    uint8_t *px = smooth(64, 64, 3);
    size_t len;
    uint8_t *jpg = encode(px, 64, 64, 3, BS_IMAGE_JPEG, 90, &len);
    size_t sos = 0;
    for (size_t i = 2; i + 1 < len && !sos; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xda)
            sos = i;
    assert_true(sos > 0);
    /* An EOI marker in the middle of the entropy-coded data: libjpeg would
     * only warn and fill the rest with grey. */
    size_t mid = sos + (len - sos) / 2;
    jpg[mid] = 0xff;
    jpg[mid + 1] = 0xd9;
    assert_decode_refused(jpg, len, BIG, "Corrupt JPEG data");
    free(jpg);
    free(px);
}

/* Random byte changes anywhere in a PNG or a JPEG: each decode either
 * succeeds with a sane image or fails with a message (run under ASan). */
static void mutate_and_decode(const uint8_t *good, size_t len, uint32_t seed)
{
    uint8_t *buf = malloc(len);
    for (int round = 0; round < 300; round++) {
        memcpy(buf, good, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = 3 + (seed >> 8) % (len - 3); /* keep the magic */
            seed = seed * 1103515245u + 12345u;
            buf[at] = (uint8_t)(seed >> 16);
        }
        char err[BS_ERR_LEN] = "";
        bs_image img;
        if (bs_image_decode(buf, len, BIG, &img, err) == 0) {
            assert_true(img.channels == 1 || img.channels == 3);
            size_t n = (size_t)img.width * img.height * img.channels;
            for (size_t i = 0; i < n; i++)
                assert_true(img.pixels[i] >= 0.0f && img.pixels[i] <= 1.0f);
            bs_image_free(&img);
        } else {
            assert_true(err[0] != '\0');
        }
    }
    free(buf);
}

static void test_mutated_input_never_crashes(void **state)
{
    (void)state;
    uint8_t *px = smooth(32, 24, 3);
    size_t len;
    uint8_t *png = encode(px, 32, 24, 3, BS_IMAGE_PNG, 0, &len);
    mutate_and_decode(png, len, 1);
    free(png);
    uint8_t *jpg = encode(px, 32, 24, 3, BS_IMAGE_JPEG, 75, &len);
    mutate_and_decode(jpg, len, 2);
    free(jpg);
    free(px);
}

static void test_jpeg_cmyk_refused(void **state)
{
    (void)state;
    uint8_t px[8 * 8 * 4];
    memset(px, 100, sizeof px);
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    assert_int_equal(tjCompress2(tj, px, 8, 0, 8, TJPF_CMYK, &jpg, &len,
                                 TJSAMP_444, 90, 0), 0);
    assert_decode_refused(jpg, len, BIG, "CMYK");
    tjFree(jpg);
    tjDestroy(tj);
}

static void test_garbage_refused(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        s = s * 1103515245u + 12345u;
        buf[i] = (uint8_t)(s >> 16);
    }
    buf[0] = 0x42;
    assert_decode_refused(buf, sizeof buf, BIG, "not a PNG or JPEG image");
    assert_decode_refused((const uint8_t *)"GIF89a", 6, BIG, "not a PNG or JPEG");
}

static void test_garbage_after_png_signature_refused(void **state)
{
    (void)state;
    uint8_t buf[1024];
    uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 97 + 13);
    memcpy(buf, sig, 8);
    assert_decode_refused(buf, sizeof buf, BIG, "PNG");
}

static void test_garbage_after_jpeg_magic_refused(void **state)
{
    (void)state;
    uint8_t buf[1024];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 97 + 13);
    buf[0] = 0xff;
    buf[1] = 0xd8;
    buf[2] = 0xff;
    assert_decode_refused(buf, sizeof buf, BIG, "JPEG");
}

static void test_empty_refused(void **state)
{
    (void)state;
    uint8_t b = 0x89;
    assert_decode_refused(&b, 0, BIG, "empty");
    assert_decode_refused(NULL, 0, BIG, "empty");
    assert_decode_refused(&b, 1, BIG, "not a PNG or JPEG");
}

/* --- encoding --------------------------------------------------------------- */

static void assert_encode_refused(int w, int h, int ch, bs_image_format fmt,
                                  int quality, const char *want)
{
    uint8_t px[12] = {0};
    uint8_t *out = (uint8_t *)px;
    size_t len = 99;
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_image_encode(px, w, h, ch, fmt, quality, &out, &len, err), -1);
    assert_err_has(err, want);
    assert_null(out);
    assert_int_equal(len, 0);
}

static void test_encode_bad_channels_refused(void **state)
{
    (void)state;
    assert_encode_refused(2, 2, 2, BS_IMAGE_PNG, 0, "2 channels");
    assert_encode_refused(2, 2, 4, BS_IMAGE_JPEG, 90, "4 channels");
}

static void test_encode_bad_size_refused(void **state)
{
    (void)state;
    assert_encode_refused(0, 2, 1, BS_IMAGE_PNG, 0, "0x2");
    assert_encode_refused(2, -1, 1, BS_IMAGE_JPEG, 90, "2x-1");
}

static void test_encode_bad_quality_refused(void **state)
{
    (void)state;
    assert_encode_refused(2, 2, 1, BS_IMAGE_JPEG, 0, "quality 0");
    assert_encode_refused(2, 2, 1, BS_IMAGE_JPEG, 101, "quality 101");
}

static void test_to_bytes(void **state)
{
    (void)state;
    float v[8] = {-0.5f, 0.0f, 0.5f / 255.0f, 0.49f / 255.0f, 0.5f, 1.0f, 1.7f, NAN};
    uint8_t b[8];
    bs_image_to_bytes(v, 8, b);
    uint8_t want[8] = {0, 0, 1, 0, 128, 255, 255, 0};
    assert_memory_equal(b, want, 8);
}

/* --- conversion to model input ---------------------------------------------- */

static bs_image make_image(int w, int h, int ch)
{
    bs_image img = {.width = w, .height = h, .channels = ch};
    img.pixels = calloc((size_t)w * h * ch, sizeof(float));
    return img;
}

static void to_input_ok(const bs_image *img, int C, int H, int W, bs_invert inv,
                        float *out, int *inverted)
{
    char err[BS_ERR_LEN] = "";
    if (bs_image_to_input(img, C, H, W, inv, out, inverted, err))
        fail_msg("to_input: %s", err);
}

static void test_resize_blocks_exact(void **state)
{
    (void)state;
    bs_image img = make_image(56, 56, 1);
    for (int y = 0; y < 56; y++)
        for (int x = 0; x < 56; x++)
            img.pixels[y * 56 + x] = (float)((y / 2) * 28 + x / 2) / 783.0f;
    float out[28 * 28];
    to_input_ok(&img, 1, 28, 28, BS_INVERT_NO, out, NULL);
    for (int i = 0; i < 28 * 28; i++)
        assert_true(out[i] == (float)i / 783.0f);
    bs_image_free(&img);
}

static void constant_stays(int w, int h, int ch, int C, int H, int W)
{
    bs_image img = make_image(w, h, ch);
    for (size_t i = 0; i < (size_t)w * h * ch; i++)
        img.pixels[i] = 0.3f;
    size_t n = (size_t)C * H * W;
    float *out = malloc(n * sizeof *out);
    to_input_ok(&img, C, H, W, BS_INVERT_NO, out, NULL);
    for (size_t i = 0; i < n; i++)
        if (ch == C)
            assert_true(out[i] == 0.3f);
        else
            assert_float_equal(out[i], 0.3, 1e-6);
    free(out);
    bs_image_free(&img);
}

static void test_resize_constant_up_and_down(void **state)
{
    (void)state;
    constant_stays(10, 7, 1, 1, 28, 28);   /* up */
    constant_stays(97, 61, 1, 1, 28, 28);  /* down */
    constant_stays(28, 28, 1, 1, 9, 13);   /* down to odd sizes */
    constant_stays(3, 5, 3, 3, 28, 17);    /* up, RGB */
    constant_stays(100, 3, 3, 1, 7, 11);   /* down in x, up in y, with luma */
}

static void test_resize_3x3_to_2x2_overlaps(void **state)
{
    (void)state;
    /* Along each axis output 0 covers source 0 fully (2/3) and source 1 by
     * half (1/3); output 1 the mirror image. Weights are their products. */
    bs_image img = make_image(3, 3, 1);
    float p[9] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f};
    memcpy(img.pixels, p, sizeof p);
    float out[4];
    to_input_ok(&img, 1, 2, 2, BS_INVERT_NO, out, NULL);
    double want[4] = {
        (4 * 0.1 + 2 * 0.2 + 2 * 0.4 + 1 * 0.5) / 9,
        (2 * 0.2 + 4 * 0.3 + 1 * 0.5 + 2 * 0.6) / 9,
        (2 * 0.4 + 1 * 0.5 + 4 * 0.7 + 2 * 0.8) / 9,
        (1 * 0.5 + 2 * 0.6 + 2 * 0.8 + 4 * 0.9) / 9,
    };
    for (int i = 0; i < 4; i++)
        assert_float_equal(out[i], want[i], 1e-6);
    bs_image_free(&img);
}

static void test_resize_2_to_3_upscale(void **state)
{
    (void)state;
    /* Output 1 straddles both sources by half each. */
    bs_image img = make_image(2, 1, 1);
    img.pixels[0] = 0.2f;
    img.pixels[1] = 0.8f;
    float out[3];
    to_input_ok(&img, 1, 1, 3, BS_INVERT_NO, out, NULL);
    assert_float_equal(out[0], 0.2, 1e-7);
    assert_float_equal(out[1], 0.5, 1e-7);
    assert_float_equal(out[2], 0.8, 1e-7);
    bs_image_free(&img);
}

static void test_rgb_to_gray_luma(void **state)
{
    (void)state;
    bs_image img = make_image(3, 1, 3);
    img.pixels[0] = 1.0f; /* red */
    img.pixels[4] = 1.0f; /* green */
    img.pixels[8] = 1.0f; /* blue */
    float out[3];
    to_input_ok(&img, 1, 1, 3, BS_INVERT_NO, out, NULL);
    assert_float_equal(out[0], 0.299, 1e-6);
    assert_float_equal(out[1], 0.587, 1e-6);
    assert_float_equal(out[2], 0.114, 1e-6);
    bs_image_free(&img);
}

static void test_gray_to_rgb_replicates(void **state)
{
    (void)state;
    bs_image img = make_image(2, 1, 1);
    img.pixels[0] = 0.25f;
    img.pixels[1] = 0.75f;
    float out[6];
    to_input_ok(&img, 3, 1, 2, BS_INVERT_NO, out, NULL);
    for (int c = 0; c < 3; c++) {
        assert_true(out[c * 2] == 0.25f);
        assert_true(out[c * 2 + 1] == 0.75f);
    }
    bs_image_free(&img);
}

static void test_rgb_to_chw_planes(void **state)
{
    (void)state;
    bs_image img = make_image(2, 1, 3);
    float hwc[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    memcpy(img.pixels, hwc, sizeof hwc);
    float out[6];
    to_input_ok(&img, 3, 1, 2, BS_INVERT_NO, out, NULL);
    float chw[6] = {0.1f, 0.4f, 0.2f, 0.5f, 0.3f, 0.6f};
    for (int i = 0; i < 6; i++)
        assert_true(out[i] == chw[i]);
    bs_image_free(&img);
}

/* A 20x20 image of background bg with a vertical stroke of ink. */
static bs_image stroke_image(float bg, float ink)
{
    bs_image img = make_image(20, 20, 1);
    for (int i = 0; i < 400; i++)
        img.pixels[i] = bg;
    for (int y = 4; y < 16; y++)
        for (int x = 9; x < 11; x++)
            img.pixels[y * 20 + x] = ink;
    return img;
}

static void test_invert_auto_dark_on_light(void **state)
{
    (void)state;
    bs_image img = stroke_image(1.0f, 0.0f);
    float out[400];
    int inverted = -1;
    to_input_ok(&img, 1, 20, 20, BS_INVERT_AUTO, out, &inverted);
    assert_int_equal(inverted, 1);
    assert_true(out[0] == 0.0f);
    assert_true(out[10 * 20 + 9] == 1.0f);
    bs_image_free(&img);
}

static void test_invert_auto_light_on_dark(void **state)
{
    (void)state;
    bs_image img = stroke_image(0.0f, 1.0f);
    float out[400];
    int inverted = -1;
    to_input_ok(&img, 1, 20, 20, BS_INVERT_AUTO, out, &inverted);
    assert_int_equal(inverted, 0);
    assert_true(out[0] == 0.0f);
    assert_true(out[10 * 20 + 9] == 1.0f);
    bs_image_free(&img);
}

static void test_invert_yes_and_no(void **state)
{
    (void)state;
    bs_image img = stroke_image(0.0f, 1.0f);
    float out[400];
    int inverted = -1;
    to_input_ok(&img, 1, 20, 20, BS_INVERT_YES, out, &inverted);
    assert_int_equal(inverted, 1);
    assert_true(out[0] == 1.0f);
    bs_image_free(&img);
    img = stroke_image(1.0f, 0.0f);
    to_input_ok(&img, 1, 20, 20, BS_INVERT_NO, out, &inverted);
    assert_int_equal(inverted, 0);
    assert_true(out[0] == 1.0f);
    bs_image_free(&img);
}

/* --- fitting another aspect ratio (resize modes) ---------------------------- */

static void fit_ok(const bs_image *img, int C, int H, int W, bs_resize rs, float *out)
{
    char err[BS_ERR_LEN] = "";
    if (bs_image_to_input_fit(img, C, H, W, rs, BS_INVERT_NO, out, NULL, err))
        fail_msg("fit: %s", err);
}

static void test_resize_parse_names(void **state)
{
    (void)state;
    static const char *const names[] = {"stretch", "crop", "pad", "pad-right"};
    bs_resize rs;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bs_resize_parse(names[i], &rs), 0);
        assert_int_equal(rs, i);
    }
    assert_int_equal(bs_resize_parse("Pad", &rs), -1);
    assert_int_equal(bs_resize_parse("", &rs), -1);
    assert_int_equal(bs_resize_parse(NULL, &rs), -1);
}

/* crop: a 6x2 source into 2x2 keeps its middle two columns exactly */
static void test_fit_crop_centre(void **state)
{
    (void)state;
    bs_image img = make_image(6, 2, 1);
    for (int i = 0; i < 12; i++)
        img.pixels[i] = (float)(i % 6) / 10.0f;
    float out[4];
    fit_ok(&img, 1, 2, 2, BS_RESIZE_CROP, out);
    for (int y = 0; y < 2; y++) {
        assert_true(out[y * 2] == 0.2f);
        assert_true(out[y * 2 + 1] == 0.3f);
    }
    /* a tall source loses rows: 1x4 into 1x2 (H=2,W=1) keeps rows 1..2 */
    bs_image tall = make_image(1, 4, 1);
    for (int i = 0; i < 4; i++)
        tall.pixels[i] = (float)i / 10.0f;
    fit_ok(&tall, 1, 2, 1, BS_RESIZE_CROP, out);
    assert_true(out[0] == 0.1f && out[1] == 0.2f);
    bs_image_free(&tall);
    bs_image_free(&img);
}

/* pad: a 2x1 source fits a 4x4 input in rows 1..2, the background (its
 * frame's mean) above and below, channel by channel */
static void test_fit_pad_centred_background(void **state)
{
    (void)state;
    bs_image img = make_image(2, 1, 3);
    float src[6] = {0.2f, 0.4f, 1.0f, 0.6f, 0.8f, 1.0f}; /* two RGB pixels */
    memcpy(img.pixels, src, sizeof src);
    float out[3 * 16];
    fit_ok(&img, 3, 4, 4, BS_RESIZE_PAD, out);
    for (int c = 0; c < 3; c++) {
        const float *p = out + c * 16;
        float a = src[c], b = src[3 + c], bg = (float)((a + b) / 2.0);
        for (int x = 0; x < 4; x++) {
            assert_float_equal(p[x], bg, 1e-6);
            assert_float_equal(p[12 + x], bg, 1e-6);
            for (int y = 1; y <= 2; y++)
                assert_true(p[y * 4 + x] == (x < 2 ? a : b));
        }
    }
    bs_image_free(&img);
}

/* pad-right: the full height, the width of the aspect ratio at the left;
 * a source wider than the input is squeezed to it, as stretch would */
static void test_fit_pad_right_text_line(void **state)
{
    (void)state;
    bs_image img = make_image(2, 2, 1);
    float src[4] = {0.1f, 0.3f, 0.5f, 0.7f};
    memcpy(img.pixels, src, sizeof src);
    float out[12];
    fit_ok(&img, 1, 2, 6, BS_RESIZE_PAD_RIGHT, out);
    for (int y = 0; y < 2; y++) {
        assert_true(out[y * 6] == src[y * 2] && out[y * 6 + 1] == src[y * 2 + 1]);
        for (int x = 2; x < 6; x++)
            assert_float_equal(out[y * 6 + x], 0.4, 1e-6);
    }
    /* 3x2 into 2x6: ceil(2 * 3 / 2) = 3 columns */
    bs_image odd = make_image(3, 2, 1);
    for (int i = 0; i < 6; i++)
        odd.pixels[i] = 0.9f;
    fit_ok(&odd, 1, 2, 6, BS_RESIZE_PAD_RIGHT, out);
    assert_true(out[2] == 0.9f && out[3] == 0.9f);
    bs_image_free(&odd);

    bs_image wide = make_image(10, 1, 1);
    for (int i = 0; i < 10; i++)
        wide.pixels[i] = (float)i / 10.0f;
    float squeezed[4], stretched[4];
    fit_ok(&wide, 1, 1, 4, BS_RESIZE_PAD_RIGHT, squeezed);
    fit_ok(&wide, 1, 1, 4, BS_RESIZE_STRETCH, stretched);
    assert_memory_equal(squeezed, stretched, sizeof squeezed);
    bs_image_free(&wide);
    bs_image_free(&img);
}

/* auto inverts by MNIST's convention, for one channel only: a light
 * colour image stays as it is */
static void test_invert_auto_leaves_colour(void **state)
{
    (void)state;
    bs_image img = make_image(20, 20, 3);
    for (int i = 0; i < 20 * 20 * 3; i++)
        img.pixels[i] = 0.9f;
    float out[3 * 20 * 20];
    int inverted = 1;
    to_input_ok(&img, 3, 20, 20, BS_INVERT_AUTO, out, &inverted);
    assert_int_equal(inverted, 0);
    assert_true(out[0] == 0.9f);
    to_input_ok(&img, 1, 20, 20, BS_INVERT_AUTO, out, &inverted);
    assert_int_equal(inverted, 1);
    bs_image_free(&img);
}

static void test_to_input_bad_channels_refused(void **state)
{
    (void)state;
    bs_image img = make_image(2, 2, 1);
    float out[8];
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_image_to_input(&img, 2, 2, 2, BS_INVERT_NO, out, NULL, err), -1);
    assert_err_has(err, "2 channels");
    bs_image_free(&img);
}

static void test_to_input_bad_size_refused(void **state)
{
    (void)state;
    bs_image img = make_image(2, 2, 1);
    float out[8];
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_image_to_input(&img, 1, 0, 2, BS_INVERT_NO, out, NULL, err), -1);
    assert_err_has(err, "empty");
    bs_image_free(&img);
}

static void test_to_input_empty_image_refused(void **state)
{
    (void)state;
    bs_image img = {0};
    float out[4];
    char err[BS_ERR_LEN] = "";
    assert_int_equal(bs_image_to_input(&img, 1, 2, 2, BS_INVERT_NO, out, NULL, err), -1);
    assert_err_has(err, "not a decoded image");
}

static void test_decode_then_to_input(void **state)
{
    (void)state;
    /* A white 60x40 RGB JPEG-free path: PNG, black stroke, to 28x28 gray. */
    const int w = 60, h = 40;
    uint8_t *px = malloc((size_t)w * h * 3);
    memset(px, 255, (size_t)w * h * 3);
    for (int y = 10; y < 30; y++)
        for (int x = 28; x < 32; x++)
            memset(px + ((size_t)y * w + x) * 3, 0, 3);
    size_t len;
    uint8_t *png = encode(px, w, h, 3, BS_IMAGE_PNG, 0, &len);
    bs_image img = decode_ok(png, len);
    float out[28 * 28];
    int inverted = 0;
    to_input_ok(&img, 1, 28, 28, BS_INVERT_AUTO, out, &inverted);
    assert_int_equal(inverted, 1);
    assert_float_equal(out[0], 0.0, 1e-6);
    assert_true(out[14 * 28 + 14] > 0.5f);
    bs_image_free(&img);
    free(png);
    free(px);
}

/* --- base64 ----------------------------------------------------------------- */

static void assert_b64_decodes(const char *s, const char *want)
{
    char err[BS_ERR_LEN] = "";
    size_t n = 99;
    uint8_t *d = bs_base64_decode(s, strlen(s), &n, err);
    if (!d)
        fail_msg("decode \"%s\": %s", s, err);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(d, want, n);
    free(d);
}

static void assert_b64_refused(const char *s, const char *want)
{
    char err[BS_ERR_LEN] = "";
    size_t n = 99;
    assert_null(bs_base64_decode(s, strlen(s), &n, err));
    assert_err_has(err, want);
    assert_int_equal(n, 0);
}

static void test_base64_known_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10 */
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char *e = bs_base64_encode((const uint8_t *)in[i], strlen(in[i]));
        assert_string_equal(e, out[i]);
        free(e);
        assert_b64_decodes(out[i], in[i]);
    }
    uint8_t all[3] = {0xfb, 0xff, 0xbf};
    char *e = bs_base64_encode(all, 3);
    assert_string_equal(e, "+/+/");
    free(e);
}

static void test_base64_round_trip_lengths(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 64; len++) {
        uint8_t *data = pattern(len ? len : 1, (unsigned)len);
        char *s = bs_base64_encode(data, len);
        assert_non_null(s);
        assert_int_equal(strlen(s), (len + 2) / 3 * 4);
        char err[BS_ERR_LEN] = "";
        size_t n = 99;
        uint8_t *back = bs_base64_decode(s, strlen(s), &n, err);
        assert_non_null(back);
        assert_int_equal(n, len);
        if (len)
            assert_memory_equal(back, data, len);
        free(back);
        free(s);
        free(data);
    }
}

static void test_base64_whitespace_skipped(void **state)
{
    (void)state;
    assert_b64_decodes("Zm9v\nYmFy\n", "foobar");
    assert_b64_decodes("Zm9v\r\nYmE=\r\n", "fooba");
    assert_b64_decodes("  Zm 9v\tYg =\n= ", "foob");
    assert_b64_decodes("\n", "");
}

static void test_base64_no_nul_needed(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    size_t n;
    uint8_t *d = bs_base64_decode("Zm9vYmFy!?!?", 8, &n, err);
    assert_non_null(d);
    assert_int_equal(n, 6);
    assert_memory_equal(d, "foobar", 6);
    free(d);
}

static void test_base64_bad_char_refused(void **state)
{
    (void)state;
    assert_b64_refused("Zm9v*mFy", "invalid character '*' at offset 4");
    assert_b64_refused("Zm9v-mFy", "'-'"); /* base64url is not base64 */
    assert_b64_refused("Zm9v\x01mFy", "0x01");
    assert_b64_refused("Zm9v\xc3\xa9mF", "0xc3");
}

static void test_base64_bad_length_refused(void **state)
{
    (void)state;
    assert_b64_refused("Zm9vYmE", "not a multiple of 4");
    assert_b64_refused("Zg", "not a multiple of 4");
    assert_b64_refused("Zg=", "not a multiple of 4");
    assert_b64_refused("Zm9vY", "not a multiple of 4");
}

static void test_base64_padding_in_middle_refused(void **state)
{
    (void)state;
    assert_b64_refused("Zg==Zg==", "middle");
    assert_b64_refused("Zm=v", "middle");
}

static void test_base64_too_much_padding_refused(void **state)
{
    (void)state;
    assert_b64_refused("Z===", "at most 2");
    assert_b64_refused("====", "at most 2");
}

static void test_base64_nonzero_pad_bits_refused(void **state)
{
    (void)state;
    assert_b64_refused("Zh==", "non-zero bits");
    assert_b64_refused("Zm9=", "non-zero bits");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_round_trip_gray),
        cmocka_unit_test(test_png_round_trip_rgb),
        cmocka_unit_test(test_png_from_planes),
        cmocka_unit_test(test_jpeg_round_trip_rgb),
        cmocka_unit_test(test_jpeg_round_trip_gray),
        cmocka_unit_test(test_png_16bit_scaled),
        cmocka_unit_test(test_png_gray_alpha_over_white),
        cmocka_unit_test(test_png_rgba_over_white),
        cmocka_unit_test(test_png_palette_is_rgb),
        cmocka_unit_test(test_pixel_cap_refused_from_header),
        cmocka_unit_test(test_pixel_cap_exact_limit),
        cmocka_unit_test(test_pixel_cap_jpeg),
        cmocka_unit_test(test_png_zero_width_refused),
        cmocka_unit_test(test_jpeg_zero_height_refused),
        cmocka_unit_test(test_png_truncated_refused),
        cmocka_unit_test(test_jpeg_truncated_refused),
        cmocka_unit_test(test_jpeg_cut_before_frame_refused),
        cmocka_unit_test(test_png_bad_crc_refused),
        cmocka_unit_test(test_jpeg_corrupt_data_refused),
        cmocka_unit_test(test_mutated_input_never_crashes),
        cmocka_unit_test(test_jpeg_cmyk_refused),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_garbage_after_png_signature_refused),
        cmocka_unit_test(test_garbage_after_jpeg_magic_refused),
        cmocka_unit_test(test_empty_refused),
        cmocka_unit_test(test_encode_bad_channels_refused),
        cmocka_unit_test(test_encode_bad_size_refused),
        cmocka_unit_test(test_encode_bad_quality_refused),
        cmocka_unit_test(test_to_bytes),
        cmocka_unit_test(test_resize_blocks_exact),
        cmocka_unit_test(test_resize_constant_up_and_down),
        cmocka_unit_test(test_resize_3x3_to_2x2_overlaps),
        cmocka_unit_test(test_resize_2_to_3_upscale),
        cmocka_unit_test(test_rgb_to_gray_luma),
        cmocka_unit_test(test_gray_to_rgb_replicates),
        cmocka_unit_test(test_rgb_to_chw_planes),
        cmocka_unit_test(test_invert_auto_dark_on_light),
        cmocka_unit_test(test_invert_auto_light_on_dark),
        cmocka_unit_test(test_invert_yes_and_no),
        cmocka_unit_test(test_resize_parse_names),
        cmocka_unit_test(test_fit_crop_centre),
        cmocka_unit_test(test_fit_pad_centred_background),
        cmocka_unit_test(test_fit_pad_right_text_line),
        cmocka_unit_test(test_invert_auto_leaves_colour),
        cmocka_unit_test(test_to_input_bad_channels_refused),
        cmocka_unit_test(test_to_input_bad_size_refused),
        cmocka_unit_test(test_to_input_empty_image_refused),
        cmocka_unit_test(test_decode_then_to_input),
        cmocka_unit_test(test_base64_known_vectors),
        cmocka_unit_test(test_base64_round_trip_lengths),
        cmocka_unit_test(test_base64_whitespace_skipped),
        cmocka_unit_test(test_base64_no_nul_needed),
        cmocka_unit_test(test_base64_bad_char_refused),
        cmocka_unit_test(test_base64_bad_length_refused),
        cmocka_unit_test(test_base64_padding_in_middle_refused),
        cmocka_unit_test(test_base64_too_much_padding_refused),
        cmocka_unit_test(test_base64_nonzero_pad_bits_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
