/* image — PNG and JPEG in and out, and the conversion of any decoded image
 * into the input a model expects.
 *
 * Decoding (libspng for PNG, TurboJPEG for JPEG) is for bytes that come from
 * the network: the format is sniffed from the content, the header's size is
 * checked against a pixel cap before any pixel is decoded, and damaged or
 * truncated input (a JPEG that libjpeg would only warn about included) is an
 * error with a message, never a crash, a hang or a half-grey image. Pixels
 * come out as floats in [0,1]: grayscale sources (with or without alpha) as
 * one channel, everything else (palette included) as RGB. Transparency is
 * composited over WHITE, the background a transparent drawing is meant to be
 * seen on; over black, dark ink on a transparent canvas would vanish.
 *
 * bs_image_to_input then makes a (C,H,W) model input of any size: colour
 * conversion, fitting to the model's aspect ratio (stretch, crop or pad), an
 * exact area-averaging resize, and optional inversion, because MNIST digits
 * are light strokes on a dark background while photos and drawings of digits
 * are usually the other way round. */
#ifndef BS_IMAGE_H
#define BS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h" /* BS_ERR_LEN */

typedef enum bs_image_format {
    BS_IMAGE_PNG,
    BS_IMAGE_JPEG,
} bs_image_format;

typedef struct bs_image {
    int width, height;
    int channels;  /* 1 (gray) or 3 (RGB) */
    float *pixels; /* height*width*channels values in [0,1], row-major, the
                      channels of a pixel together (HWC); owned */
} bs_image;

/* Decodes a PNG (any bit depth, colour type, interlacing; 16-bit scaled by
 * 1/65535) or a baseline/progressive JPEG (gray, YCbCr/RGB; CMYK refused)
 * from len bytes of buf. Refuses anything else ("not a PNG or JPEG image"),
 * empty sizes, and images of more than max_pixels pixels, judged from the
 * header alone. Returns 0, BS_IMAGE_TOO_LARGE for a valid header over the
 * pixel cap, or -1 for anything else, with a message in err
 * (char[BS_ERR_LEN]); *out is then empty (safe to bs_image_free). */
#define BS_IMAGE_TOO_LARGE (-2)
int bs_image_decode(const uint8_t *buf, size_t len, size_t max_pixels,
                    bs_image *out, char *err);

/* Frees img->pixels and empties img. */
void bs_image_free(bs_image *img);

/* Encodes 8-bit pixels (height*width*channels bytes, HWC, channels 1 or 3)
 * as an 8-bit gray or RGB PNG (lossless; quality ignored) or as a JPEG of
 * the given quality (1..100; no chroma subsampling, so thin coloured strokes
 * survive). *out is malloc'd, *out_len its size. Returns 0, or -1 with a
 * message in err. */
int bs_image_encode(const uint8_t *pixels, int width, int height, int channels,
                    bs_image_format fmt, int quality, uint8_t **out,
                    size_t *out_len, char *err);

/* The same for a model's layout: channels planes of height*width bytes
 * one after another (CHW), interleaved here into the pixels above. */
int bs_image_encode_planes(const uint8_t *planes, int channels, int height, int width,
                           bs_image_format fmt, int quality, uint8_t **out, size_t *out_len,
                           char *err);

/* Converts n floats in [0,1] to bytes: lround(v*255), clamped to 0..255
 * (NaN gives 0). */
void bs_image_to_bytes(const float *v, size_t n, uint8_t *out);

typedef enum bs_invert {
    BS_INVERT_NO,
    BS_INVERT_YES,
    BS_INVERT_AUTO, /* for a one-channel output only (MNIST's light strokes
                       on black), invert when the image looks like dark ink
                       on a light background: the mean of the output's
                       border pixels (one-pixel frame) is above 0.5; colour
                       outputs are never inverted by AUTO */
} bs_invert;

/* How an image of another aspect ratio than the model's input is fitted.
 * The values are the wire's names in order: "stretch", "crop", "pad",
 * "pad-right". */
typedef enum bs_resize {
    BS_RESIZE_STRETCH,   /* the whole image to W x H, the aspect ratio lost */
    BS_RESIZE_CROP,      /* the largest centred part of the model's aspect
                            ratio, then resized: the edges are lost */
    BS_RESIZE_PAD,       /* resized to fit inside, centred, the rest filled
                            with the image's background (each channel's mean
                            of its one-pixel frame) */
    BS_RESIZE_PAD_RIGHT, /* text lines (PP-OCR's recognisers): resized to
                            the full height, the width following the aspect
                            ratio (rounded up, at most W, squeezed beyond),
                            at the left, the rest on the right filled as pad
                            fills */
} bs_resize;

/* "stretch", "crop", "pad" or "pad-right" into *out; -1 for anything else. */
int bs_resize_parse(const char *s, bs_resize *out);

/* Converts img into a model input of shape (C,H,W), C 1 or 3, written to out
 * (C*H*W floats, channel planes one after another). In order:
 *   colour   RGB -> gray by ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B;
 *            gray -> RGB by replication;
 *   fit      as rs says: the whole image (stretch), its centred part of the
 *            model's aspect ratio (crop), or the whole image inside a
 *            part of the output (pad, pad-right), the rest background;
 *   resize   to that part by area averaging: each output pixel is the mean
 *            of the source area it covers, partially covered source pixels
 *            weighted by their overlap (an exact box filter, for up- and
 *            down-scaling alike; a constant image stays constant);
 *   invert   v -> 1 - v when inv is YES, or AUTO, C is 1 and the border is
 *            light.
 * *inverted (may be NULL) is set to whether it inverted. Returns 0, or -1
 * with a message in err when the shape or the image is not valid or memory
 * runs out. */
int bs_image_to_input_fit(const bs_image *img, int C, int H, int W, bs_resize rs,
                          bs_invert inv, float *out, int *inverted, char *err);

/* bs_image_to_input_fit with stretch. */
int bs_image_to_input(const bs_image *img, int C, int H, int W, bs_invert inv,
                      float *out, int *inverted, char *err);

#endif
