/* fuzz_accept — api/accept.h on any Accept header, and the same text as
 * an Accept-Encoding header (the input up to its first NUL, as an HTTP
 * library hands a header over).
 *
 * Promises checked: a quality is within [0,1], and 1 for a header that is
 * blank; matching ignores case (RFC 9110: media types and the q name are
 * case-insensitive, and strtod reads its numbers either way), so the
 * header upper-cased gives the same qualities; the pick is the earliest
 * offer of the highest quality above 0, or -1 when every quality is 0. The
 * offers are the daemon's (server/attacks.c) and a type taken from the
 * input itself, so that exact matches are reachable too. As
 * Accept-Encoding: gzip's quality is within [0,1], ignores case, and is 0
 * for an absent header. */
#include "tests/fuzz/fuzz.h"

#include "api/accept.h"

#include <ctype.h>
#include <string.h>

#define N_OFFERS 4

static void check(const char *accept, const char *const *offered)
{
    double q[N_OFFERS];
    int blank = 1;
    for (const char *s = accept; *s; s++)
        blank &= *s == ' ' || *s == '\t';
    for (int i = 0; i < N_OFFERS; i++) {
        q[i] = bs_accept_quality(accept, offered[i]);
        PROMISE(q[i] >= 0.0 && q[i] <= 1.0, "quality %g of %s", q[i], offered[i]);
        PROMISE(!blank || q[i] == 1.0, "a blank header gives %s quality %g", offered[i], q[i]);
    }
    int pick = bs_accept_pick(accept, offered, N_OFFERS);
    PROMISE(pick >= -1 && pick < N_OFFERS, "pick %d", pick);
    for (int i = 0; i < N_OFFERS; i++) {
        if (pick < 0)
            PROMISE(q[i] == 0.0, "nothing picked, %s has quality %g", offered[i], q[i]);
        else if (i < pick)
            PROMISE(q[i] < q[pick], "%s (q %g) passed over for the later %s", offered[i], q[i],
                    offered[pick]);
        else
            PROMISE(q[i] <= q[pick], "%s (q %g) beats the pick %s", offered[i], q[i],
                    offered[pick]);
    }
    PROMISE(pick < 0 || q[pick] > 0.0, "picked %s at quality 0", offered[pick]);

    char *upper = strdup(accept);
    PROMISE(upper != NULL, "out of memory");
    for (char *s = upper; *s; s++)
        *s = (char)toupper((unsigned char)*s);
    for (int i = 0; i < N_OFFERS; i++) {
        double u = bs_accept_quality(upper, offered[i]);
        PROMISE(u == q[i], "%s: quality %g, %g once the header is upper-cased", offered[i], q[i],
                u);
    }
    double gz = bs_accept_coding(accept, "gzip");
    PROMISE(gz >= 0.0 && gz <= 1.0, "gzip quality %g", gz);
    PROMISE(bs_accept_coding(upper, "gzip") == gz, "gzip: quality %g, %g once upper-cased", gz,
            bs_accept_coding(upper, "gzip"));
    free(upper);
    PROMISE(bs_accept_quality(NULL, offered[0]) == 1.0, "an absent header is not q=1");
    PROMISE(bs_accept_coding(NULL, "gzip") == 0.0, "an absent Accept-Encoding takes gzip");
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    /* The first line (up to 64 bytes) is an offered type, the rest the
     * header; without a newline the whole input is the header. */
    char *text = fuzz_text(buf, len);
    if (!text)
        return 0;
    char *nl = strchr(text, '\n'), own[65] = "text/plain";
    char *accept = text;
    if (nl && nl - text < (long)sizeof own) {
        memcpy(own, text, (size_t)(nl - text));
        own[nl - text] = '\0';
        accept = nl + 1;
    }
    const char *offered[N_OFFERS] = {"application/json", "image/png", "image/jpeg", own};
    check(accept, offered);
    free(text);
    return 0;
}
