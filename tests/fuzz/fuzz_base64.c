/* fuzz_base64 — api/base64.h's decoder on any text, and the encoder on
 * any bytes.
 *
 * The decoder is strict (RFC 4648 §3.5: no bits under the padding, '='
 * only at the end, length a multiple of 4) apart from skipping ASCII
 * whitespace, so base64 has one spelling per byte string: whatever it
 * accepts must encode back to the input with its whitespace removed, and
 * whatever it refuses comes with a message. The input's bytes encoded
 * must decode back to themselves. */
#include "tests/fuzz/fuzz.h"

#include "api/base64.h"

#include <string.h>

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "";
    size_t n = 12345;
    uint8_t *bytes = bs_base64_decode((const char *)buf, len, &n, err);
    if (!bytes) {
        PROMISE(err[0] != '\0', "refused without a message");
    } else {
        char *back = bs_base64_encode(bytes, n);
        PROMISE(back != NULL, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < len; i++)
            if (!is_space(buf[i]))
                PROMISE(k < strlen(back) && back[k++] == (char)buf[i],
                        "decoded %zu bytes that encode otherwise, at input byte %zu", n, i);
        PROMISE(k == strlen(back), "decoded %zu bytes that encode longer", n);
        free(back);
        free(bytes);
    }

    char *text = bs_base64_encode(buf, len);
    PROMISE(text != NULL, "out of memory");
    PROMISE(strlen(text) == (len + 2) / 3 * 4, "%zu bytes encode as %zu characters", len,
            strlen(text));
    bytes = bs_base64_decode(text, strlen(text), &n, err);
    PROMISE(bytes != NULL, "its own encoding refused: %s", err);
    PROMISE(n == len && (len == 0 || !memcmp(bytes, buf, len)), "the round trip changed bytes");
    free(bytes);
    free(text);
    return 0;
}
