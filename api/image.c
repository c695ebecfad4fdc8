/* image — PNG/JPEG codecs over libspng and TurboJPEG, and the conversion of
 * a decoded image to a model input (see image.h). Every codec call gets its
 * own context, so any number of threads may decode at once. */
#include "api/image.h"
#include "core/error.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>
#include <turbojpeg.h>

/* Ancillary PNG chunks (text, ICC profiles, EXIF) are kept by libspng while
 * it decodes; this bounds what a hostile file can make it hold. */
#define PNG_CHUNK_LIMIT ((size_t)16 << 20)

void bs_image_free(bs_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* Checks the size a header announces, before anything is allocated. */
static int check_size(const char *fmt, uint64_t w, uint64_t h,
                      size_t max_pixels, char *err)
{
    if (w == 0 || h == 0) {
        bs_fail(err, "%s image has an empty size (%llux%llu)", fmt,
                (unsigned long long)w, (unsigned long long)h);
        return -1;
    }
    uint64_t n = w * h; /* both < 2^32: cannot overflow */
    if (n > max_pixels || n > SIZE_MAX / 16) {
        bs_fail(err, "%s image is %llux%llu = %llu pixels, more than the limit "
                "of %zu pixels", fmt, (unsigned long long)w,
                (unsigned long long)h, (unsigned long long)n, max_pixels);
        return BS_IMAGE_TOO_LARGE;
    }
    return 0;
}

static int alloc_pixels(bs_image *out, int w, int h, int channels, char *err)
{
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    out->pixels = malloc(n * sizeof *out->pixels);
    if (!out->pixels) {
        bs_fail(err, "out of memory for a %dx%d image", w, h);
        return -1;
    }
    out->width = w;
    out->height = h;
    out->channels = channels;
    return 0;
}

/* libspng reads IEND's length and type but not its CRC, so a file cut in
 * its last four bytes would pass: insist on the whole chunk (its CRC is a
 * constant). Called only after a successful decode, so len > 33. */
static int png_iend_complete(const uint8_t *buf, size_t len)
{
    static const uint8_t iend_crc[4] = {0xae, 0x42, 0x60, 0x82};
    for (size_t p = len - 4; p >= 12; p--)
        if (!memcmp(buf + p, "IEND", 4))
            return p + 8 <= len && !memcmp(buf + p + 4, iend_crc, 4);
    return 0;
}

/* PNG: every colour type is decoded to RGBA (8 or 16 bits, tRNS applied),
 * then alpha is composited over white and gray sources keep one channel. */
static int decode_png(const uint8_t *buf, size_t len, size_t max_pixels,
                      bs_image *out, char *err)
{
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) {
        bs_fail(err, "out of memory for the PNG decoder");
        return -1;
    }
    void *raw = NULL;
    int rc = -1;
    struct spng_ihdr ihdr;
    int e = spng_set_chunk_limits(ctx, PNG_CHUNK_LIMIT, PNG_CHUNK_LIMIT);
    if (!e)
        e = spng_set_png_buffer(ctx, buf, len);
    if (!e)
        e = spng_get_ihdr(ctx, &ihdr);
    if (e) {
        bs_fail(err, "bad PNG header: %s", spng_strerror(e));
        goto done;
    }
    if ((rc = check_size("PNG", ihdr.width, ihdr.height, max_pixels, err)) != 0)
        goto done;
    rc = -1;

    int wide = ihdr.bit_depth == 16;
    int fmt = wide ? SPNG_FMT_RGBA16 : SPNG_FMT_RGBA8;
    size_t size;
    e = spng_decoded_image_size(ctx, fmt, &size);
    if (e) {
        bs_fail(err, "corrupt PNG: %s", spng_strerror(e));
        goto done;
    }
    raw = malloc(size);
    if (!raw) {
        bs_fail(err, "out of memory for a %ux%u PNG", ihdr.width, ihdr.height);
        goto done;
    }
    e = spng_decode_image(ctx, raw, size, fmt, SPNG_DECODE_TRNS);
    /* Read on to IEND, so a file cut after its pixel data is refused too. */
    if (!e)
        e = spng_decode_chunks(ctx);
    if (e) {
        bs_fail(err, "corrupt or truncated PNG: %s", spng_strerror(e));
        goto done;
    }
    if (!png_iend_complete(buf, len)) {
        bs_fail(err, "truncated PNG: the IEND chunk is incomplete");
        goto done;
    }

    int gray = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
               ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
    int ch = gray ? 1 : 3;
    if (alloc_pixels(out, (int)ihdr.width, (int)ihdr.height, ch, err))
        goto done;
    size_t n = (size_t)ihdr.width * ihdr.height;
    const uint8_t *p8 = raw;
    const uint16_t *p16 = raw;
    float maxv = wide ? 65535.0f : 255.0f;
    for (size_t i = 0; i < n; i++) {
        float rgba[4];
        for (int k = 0; k < 4; k++)
            rgba[k] = (float)(wide ? p16[4 * i + k] : p8[4 * i + k]) / maxv;
        float a = rgba[3];
        for (int k = 0; k < ch; k++)
            out->pixels[i * ch + k] = rgba[k] * a + (1.0f - a);
    }
    rc = 0;
done:
    free(raw);
    spng_ctx_free(ctx);
    return rc;
}

/* Whether the JPEG's markers reach a frame header (SOF0..SOF15 but DHT,
 * JPG and DAC) before the scan or the end of the data. TurboJPEG cannot be
 * asked this: given a stream cut before its frame header it may report
 * success with a width and height it never read (seen as 0x0 or as random
 * sizes), so the header is walked here first. */
static int jpeg_has_frame(const uint8_t *buf, size_t len)
{
    if (len < 4 || buf[0] != 0xFF || buf[1] != 0xD8)
        return 0;
    size_t at = 2;
    while (at + 4 <= len) {
        if (buf[at] != 0xFF)
            return 0;
        uint8_t marker = buf[at + 1];
        if (marker == 0xFF) { /* fill byte */
            at++;
            continue;
        }
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
            marker != 0xCC)
            return at + 2 + 8 <= len; /* length, precision, height, width, components */
        if (marker == 0xDA || marker == 0xD9)
            return 0; /* scan or end before any frame */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            at += 2; /* markers without a length */
            continue;
        }
        at += 2 + ((size_t)buf[at + 2] << 8 | buf[at + 3]);
    }
    return 0;
}

/* JPEG: TurboJPEG's warnings (libjpeg goes on past a premature end or a bad
 * Huffman code, filling with grey) are treated as errors, and the number of
 * progressive scans is limited, so a hostile file cannot take minutes. */
static int decode_jpeg(const uint8_t *buf, size_t len, size_t max_pixels,
                       bs_image *out, char *err)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        bs_fail(err, "cannot start the JPEG decoder: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    uint8_t *raw = NULL;
    int rc = -1;
    int w = 0, h = 0, subsamp, cs;
    if (!jpeg_has_frame(buf, len)) {
        bs_fail(err, "bad JPEG header: no frame header (SOF) before the data ends");
        goto done;
    }
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs)) {
        bs_fail(err, "bad JPEG header: %s", tjGetErrorStr2(tj));
        goto done;
    }
    if ((rc = check_size("JPEG", (uint64_t)(w > 0 ? w : 0), (uint64_t)(h > 0 ? h : 0),
                         max_pixels, err)) != 0)
        goto done;
    rc = -1;
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        bs_fail(err, "CMYK JPEG images are not supported; convert it to RGB or "
                "grayscale");
        goto done;
    }
    int ch = cs == TJCS_GRAY ? 1 : 3;
    size_t n = (size_t)w * (size_t)h * (size_t)ch;
    raw = malloc(n);
    if (!raw) {
        bs_fail(err, "out of memory for a %dx%d JPEG", w, h);
        goto done;
    }
    if (tjDecompress2(tj, buf, (unsigned long)len, raw, w, 0, h,
                      ch == 1 ? TJPF_GRAY : TJPF_RGB,
                      TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING |
                          TJFLAG_LIMITSCANS)) {
        bs_fail(err, "corrupt or truncated JPEG: %s", tjGetErrorStr2(tj));
        goto done;
    }
    if (alloc_pixels(out, w, h, ch, err))
        goto done;
    for (size_t i = 0; i < n; i++)
        out->pixels[i] = (float)raw[i] / 255.0f;
    rc = 0;
done:
    free(raw);
    tjDestroy(tj);
    return rc;
}

int bs_image_decode(const uint8_t *buf, size_t len, size_t max_pixels,
                    bs_image *out, char *err)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t jpeg_sig[3] = {0xff, 0xd8, 0xff};
    memset(out, 0, sizeof *out);
    if (!buf || len == 0) {
        bs_fail(err, "empty image");
        return -1;
    }
    int rc;
    if (len >= sizeof png_sig && !memcmp(buf, png_sig, sizeof png_sig))
        rc = decode_png(buf, len, max_pixels, out, err);
    else if (len >= sizeof jpeg_sig && !memcmp(buf, jpeg_sig, sizeof jpeg_sig))
        rc = decode_jpeg(buf, len, max_pixels, out, err);
    else {
        bs_fail(err, "not a PNG or JPEG image");
        return -1;
    }
    if (rc)
        bs_image_free(out);
    return rc;
}

static int encode_png(const uint8_t *pixels, int width, int height,
                      int channels, uint8_t **out, size_t *out_len, char *err)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) {
        bs_fail(err, "out of memory for the PNG encoder");
        return -1;
    }
    struct spng_ihdr ihdr = {
        .width = (uint32_t)width,
        .height = (uint32_t)height,
        .bit_depth = 8,
        .color_type = channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE
                                    : SPNG_COLOR_TYPE_TRUECOLOR,
    };
    size_t size = (size_t)width * (size_t)height * (size_t)channels;
    int e = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (!e)
        e = spng_set_ihdr(ctx, &ihdr);
    if (!e)
        e = spng_encode_image(ctx, pixels, size, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    void *png = NULL;
    size_t len = 0;
    if (!e)
        png = spng_get_png_buffer(ctx, &len, &e);
    spng_ctx_free(ctx);
    if (e || !png) {
        free(png);
        bs_fail(err, "PNG encoding failed: %s", spng_strerror(e));
        return -1;
    }
    /* libspng allocated the buffer with malloc and handed it over. */
    *out = png;
    *out_len = len;
    return 0;
}

static int encode_jpeg(const uint8_t *pixels, int width, int height,
                       int channels, int quality, uint8_t **out,
                       size_t *out_len, char *err)
{
    tjhandle tj = tjInitCompress();
    if (!tj) {
        bs_fail(err, "cannot start the JPEG encoder: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    unsigned char *jpeg = NULL;
    unsigned long len = 0;
    int rc = -1;
    if (tjCompress2(tj, pixels, width, 0, height,
                    channels == 1 ? TJPF_GRAY : TJPF_RGB, &jpeg, &len,
                    channels == 1 ? TJSAMP_GRAY : TJSAMP_444, quality,
                    TJFLAG_ACCURATEDCT)) {
        bs_fail(err, "JPEG encoding failed: %s", tjGetErrorStr2(tj));
        goto done;
    }
    /* TurboJPEG's buffer must go back through tjFree; callers get malloc's. */
    *out = malloc(len);
    if (!*out) {
        bs_fail(err, "out of memory for a %lu-byte JPEG", len);
        goto done;
    }
    memcpy(*out, jpeg, len);
    *out_len = len;
    rc = 0;
done:
    tjFree(jpeg);
    tjDestroy(tj);
    return rc;
}

int bs_image_encode(const uint8_t *pixels, int width, int height, int channels,
                    bs_image_format fmt, int quality, uint8_t **out,
                    size_t *out_len, char *err)
{
    *out = NULL;
    *out_len = 0;
    if (width <= 0 || height <= 0) {
        bs_fail(err, "cannot encode an image of size %dx%d", width, height);
        return -1;
    }
    if (channels != 1 && channels != 3) {
        bs_fail(err, "cannot encode an image of %d channels (1 or 3)", channels);
        return -1;
    }
    if (fmt == BS_IMAGE_PNG)
        return encode_png(pixels, width, height, channels, out, out_len, err);
    if (fmt == BS_IMAGE_JPEG) {
        if (quality < 1 || quality > 100) {
            bs_fail(err, "JPEG quality %d is outside 1..100", quality);
            return -1;
        }
        return encode_jpeg(pixels, width, height, channels, quality, out,
                           out_len, err);
    }
    bs_fail(err, "unknown image format %d", (int)fmt);
    return -1;
}

int bs_image_encode_planes(const uint8_t *planes, int channels, int height, int width,
                           bs_image_format fmt, int quality, uint8_t **out, size_t *out_len,
                           char *err)
{
    *out = NULL;
    *out_len = 0;
    if (channels <= 0 || height <= 0 || width <= 0) {
        bs_fail(err, "cannot encode an image of %d channels of %dx%d", channels, width, height);
        return -1;
    }
    size_t plane = (size_t)height * (size_t)width;
    uint8_t *hwc = malloc(plane * (size_t)channels);
    if (!hwc) {
        bs_fail(err, "out of memory");
        return -1;
    }
    for (int c = 0; c < channels; c++)
        for (size_t p = 0; p < plane; p++)
            hwc[p * (size_t)channels + (size_t)c] = planes[(size_t)c * plane + p];
    int rc = bs_image_encode(hwc, width, height, channels, fmt, quality, out, out_len, err);
    free(hwc);
    return rc;
}

void bs_image_to_bytes(const float *v, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        float x = v[i];
        if (!(x > 0.0f))
            out[i] = 0;
        else if (x >= 1.0f)
            out[i] = 255;
        else
            out[i] = (uint8_t)lround(x * 255.0f);
    }
}

/* Area-averaging geometry along one axis. Measured in units of 1/n_out of a
 * source pixel, source pixel j spans [j*n_out, (j+1)*n_out) and output pixel
 * i spans [i*n_in, (i+1)*n_in): integer bounds, so the overlaps are exact and
 * each output's overlaps sum to n_in. */
static void box_span(int64_t i, int64_t n_in, int64_t n_out, int64_t *j0,
                     int64_t *j1)
{
    *j0 = i * n_in / n_out;
    *j1 = ((i + 1) * n_in - 1) / n_out; /* inclusive */
}

static double box_overlap(int64_t i, int64_t j, int64_t n_in, int64_t n_out)
{
    int64_t lo = i * n_in > j * n_out ? i * n_in : j * n_out;
    int64_t hi = (i + 1) * n_in < (j + 1) * n_out ? (i + 1) * n_in : (j + 1) * n_out;
    return (double)(hi - lo);
}

/* Resizes the (sh,sw) plane src, rows src_stride floats apart, to the
 * (H,W) plane dst, rows dst_stride apart; tmp holds sh*W doubles. Sums are
 * kept in double and divided once, so a constant plane stays exact. */
static void box_resize(const float *src, int src_stride, int sw, int sh, float *dst,
                       int dst_stride, int W, int H, double *tmp)
{
    for (int y = 0; y < sh; y++) {
        const float *row = src + (size_t)y * src_stride;
        for (int ox = 0; ox < W; ox++) {
            int64_t j0, j1;
            box_span(ox, sw, W, &j0, &j1);
            double s = 0.0;
            for (int64_t j = j0; j <= j1; j++)
                s += box_overlap(ox, j, sw, W) * row[j];
            tmp[(size_t)y * W + ox] = s;
        }
    }
    double norm = (double)sw * (double)sh;
    for (int oy = 0; oy < H; oy++) {
        int64_t y0, y1;
        box_span(oy, sh, H, &y0, &y1);
        for (int ox = 0; ox < W; ox++) {
            double s = 0.0;
            for (int64_t y = y0; y <= y1; y++)
                s += box_overlap(oy, y, sh, H) * tmp[(size_t)y * W + ox];
            dst[(size_t)oy * dst_stride + ox] = (float)(s / norm);
        }
    }
}

/* Mean of the one-pixel frame of the (h,w) plane p, rows stride apart. */
static double frame_mean(const float *p, int stride, int w, int h)
{
    double s = 0.0;
    size_t n = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (y == 0 || y == h - 1 || x == 0 || x == w - 1) {
                s += p[(size_t)y * stride + x];
                n++;
            }
    return s / (double)n;
}

/* Mean of the one-pixel frame of every (H,W) plane of x. */
static double border_mean(const float *x, int C, int H, int W)
{
    double s = 0.0;
    for (int c = 0; c < C; c++)
        s += frame_mean(x + (size_t)c * H * W, W, W, H);
    return s / C;
}

int bs_resize_parse(const char *s, bs_resize *out)
{
    static const char *const names[] = {"stretch", "crop", "pad", "pad-right"};
    for (int i = 0; s && i < (int)(sizeof names / sizeof *names); i++)
        if (!strcmp(s, names[i])) {
            *out = (bs_resize)i;
            return 0;
        }
    return -1;
}

/* Where the source goes: the part (sx,sy,sw,sh) of the source that is used
 * and the part (ox,oy,ow,oh) of the (H,W) output it fills. Sizes are
 * rounded to whole pixels and never empty. */
typedef struct fit_geometry {
    int sx, sy, sw, sh;
    int ox, oy, ow, oh;
} fit_geometry;

static int at_least_1(double v)
{
    long r = lround(v);
    return r < 1 ? 1 : (int)r;
}

/* The largest rectangle of aspect ratio aw:ah inside ow x oh, centred:
 * its size into *w, *h and its corner into *x, *y. */
static void centred(int ow, int oh, int aw, int ah, int *w, int *h, int *x, int *y)
{
    *w = ow;
    *h = oh;
    if ((int64_t)ow * ah > (int64_t)oh * aw) /* the outside is the wider */
        *w = at_least_1((double)oh * aw / ah);
    else
        *h = at_least_1((double)ow * ah / aw);
    *x = (ow - *w) / 2;
    *y = (oh - *h) / 2;
}

static fit_geometry fit(bs_resize rs, int sw, int sh, int W, int H)
{
    fit_geometry g = {0, 0, sw, sh, 0, 0, W, H};
    if (rs == BS_RESIZE_CROP) /* the model's shape inside the source */
        centred(sw, sh, W, H, &g.sw, &g.sh, &g.sx, &g.sy);
    else if (rs == BS_RESIZE_PAD) /* the source's shape inside the model's */
        centred(W, H, sw, sh, &g.ow, &g.oh, &g.ox, &g.oy);
    else if (rs == BS_RESIZE_PAD_RIGHT) {
        /* PP-OCR's text lines: the full height, the width the aspect ratio
         * gives (rounded up), at most W */
        double w = ceil((double)H * sw / sh);
        g.ow = w >= W ? W : w < 1 ? 1 : (int)w;
    }
    return g;
}

int bs_image_to_input(const bs_image *img, int C, int H, int W, bs_invert inv,
                      float *out, int *inverted, char *err)
{
    return bs_image_to_input_fit(img, C, H, W, BS_RESIZE_STRETCH, inv, out, inverted, err);
}

int bs_image_to_input_fit(const bs_image *img, int C, int H, int W, bs_resize rs,
                          bs_invert inv, float *out, int *inverted, char *err)
{
    if (inverted)
        *inverted = 0;
    if (C != 1 && C != 3) {
        bs_fail(err, "model input has %d channels; images convert to 1 or 3", C);
        return -1;
    }
    if (H <= 0 || W <= 0) {
        bs_fail(err, "model input size %dx%d is empty", W, H);
        return -1;
    }
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3)) {
        bs_fail(err, "not a decoded image");
        return -1;
    }
    int sw = img->width, sh = img->height, sc = img->channels;
    size_t plane = (size_t)sw * sh;
    float *src = malloc((size_t)C * plane * sizeof *src);
    double *tmp = malloc((size_t)sh * W * sizeof *tmp);
    if (!src || !tmp) {
        free(src);
        free(tmp);
        bs_fail(err, "out of memory converting a %dx%d image", sw, sh);
        return -1;
    }

    /* Colour, into C planes of the source's size. */
    const float *px = img->pixels;
    for (size_t i = 0; i < plane; i++) {
        if (sc == C) {
            for (int c = 0; c < C; c++)
                src[c * plane + i] = px[i * sc + c];
        } else if (C == 1) {
            src[i] = (float)(0.299 * px[3 * i] + 0.587 * px[3 * i + 1] +
                             0.114 * px[3 * i + 2]);
        } else {
            for (int c = 0; c < 3; c++)
                src[c * plane + i] = px[i];
        }
    }

    fit_geometry g = fit(rs, sw, sh, W, H);
    for (int c = 0; c < C; c++) {
        const float *p = src + c * plane;
        float *o = out + (size_t)c * H * W;
        if (g.ow < W || g.oh < H) {
            /* padding: the source's own background, the mean of its frame
             * (white paper stays white, MNIST's black stays black) */
            float bg = (float)frame_mean(p, sw, sw, sh);
            for (size_t i = 0; i < (size_t)H * W; i++)
                o[i] = bg;
        }
        box_resize(p + (size_t)g.sy * sw + g.sx, sw, g.sw, g.sh,
                   o + (size_t)g.oy * W + g.ox, W, g.ow, g.oh, tmp);
    }
    free(src);
    free(tmp);

    /* AUTO is MNIST's convention (light strokes on black), so it judges
     * one-channel inputs only: a colour photo is never inverted unasked. */
    int flip = inv == BS_INVERT_YES ||
               (inv == BS_INVERT_AUTO && C == 1 && border_mean(out, C, H, W) > 0.5);
    if (flip) {
        size_t n = (size_t)C * H * W;
        for (size_t i = 0; i < n; i++)
            out[i] = 1.0f - out[i];
    }
    if (inverted)
        *inverted = flip;
    return 0;
}
