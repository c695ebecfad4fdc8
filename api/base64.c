/* base64 — RFC 4648 encoder and strict, whitespace-tolerant decoder (see
 * base64.h). */
#include "api/base64.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *bs_base64_encode(const uint8_t *data, size_t len)
{
    if (len / 3 >= (SIZE_MAX - 5) / 4)
        return NULL;
    size_t n = (len + 2) / 3 * 4;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    char *p = s;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        *p++ = ALPHABET[v >> 18 & 63];
        *p++ = ALPHABET[v >> 12 & 63];
        *p++ = ALPHABET[v >> 6 & 63];
        *p++ = ALPHABET[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        *p++ = ALPHABET[v >> 18 & 63];
        *p++ = ALPHABET[v >> 12 & 63];
        *p++ = i + 1 < len ? ALPHABET[v >> 6 & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    return s;
}

/* The 6-bit value of an alphabet character, or -1. */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint8_t *bs_base64_decode(const char *s, size_t slen, size_t *out_len, char *err)
{
    *out_len = 0;
    if (!s && slen) {
        bs_fail(err, "base64: no input");
        return NULL;
    }
    /* First pass: validate and count, so the output is allocated once. */
    size_t chars = 0, pad = 0;
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            pad++;
        } else if (sextet(c) < 0) {
            if (c >= 0x20 && c < 0x7f)
                bs_fail(err, "base64: invalid character '%c' at offset %zu", c, i);
            else
                bs_fail(err, "base64: invalid byte 0x%02x at offset %zu", c, i);
            return NULL;
        } else if (pad) {
            bs_fail(err, "base64: '=' padding in the middle of the data (offset %zu)", i);
            return NULL;
        }
        chars++;
    }
    if (chars % 4) {
        bs_fail(err, "base64: %zu characters, not a multiple of 4 (missing or "
                "extra '=' padding?)", chars);
        return NULL;
    }
    if (pad > 2) {
        bs_fail(err, "base64: %zu '=' padding characters, at most 2 are allowed", pad);
        return NULL;
    }
    size_t n = chars / 4 * 3 - pad;
    uint8_t *out = malloc(n ? n : 1);
    if (!out) {
        bs_fail(err, "base64: out of memory for %zu bytes", n);
        return NULL;
    }
    /* Second pass: decode groups of four sextets; the padding ends the data. */
    uint32_t acc = 0;
    int have = 0;
    size_t o = 0;
    for (size_t i = 0; i < slen; i++) {
        int v = sextet((unsigned char)s[i]);
        if (v < 0)
            continue;
        acc = acc << 6 | (uint32_t)v;
        if (++have == 4) {
            out[o++] = (uint8_t)(acc >> 16);
            out[o++] = (uint8_t)(acc >> 8);
            out[o++] = (uint8_t)acc;
            acc = 0;
            have = 0;
        }
    }
    /* 4 - pad sextets remain: 3 carry 16 bits plus 2 spare, 2 carry 8 plus 4. */
    if (pad) {
        acc <<= 6 * pad;
        uint32_t spare = pad == 1 ? acc & 0xff : acc & 0xffff;
        if (spare) {
            free(out);
            bs_fail(err, "base64: non-zero bits under the '=' padding (not the "
                    "canonical encoding)");
            return NULL;
        }
        out[o++] = (uint8_t)(acc >> 16);
        if (pad == 1)
            out[o++] = (uint8_t)(acc >> 8);
    }
    *out_len = o;
    return out;
}
