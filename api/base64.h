/* base64 — the standard base64 of RFC 4648 §4 (alphabet A-Z a-z 0-9 + /,
 * '=' padding), used for images carried inside JSON.
 *
 * Encoding always pads. Decoding skips ASCII whitespace anywhere (so text
 * wrapped at 76 columns, as MIME and `base64` write it, decodes as it is) and
 * is otherwise strict: a character outside the alphabet, a length that is not
 * a multiple of 4 once whitespace is removed, '=' anywhere but in the last
 * one or two places, or non-zero bits under the padding (RFC 4648 §3.5) are
 * refused with a message that says what and where. */
#ifndef BS_BASE64_H
#define BS_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h" /* BS_ERR_LEN */

/* Encodes len bytes; returns a malloc'd NUL-terminated string of
 * 4*ceil(len/3) characters, or NULL when out of memory. */
char *bs_base64_encode(const uint8_t *data, size_t len);

/* Decodes slen characters of s (no NUL needed). Returns a malloc'd buffer
 * (non-NULL even for empty input) with *out_len bytes, or NULL with a message
 * in err (char[BS_ERR_LEN]) on bad input or when out of memory. */
uint8_t *bs_base64_decode(const char *s, size_t slen, size_t *out_len,
                          char *err);

#endif
