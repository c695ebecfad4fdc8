/* accept — content negotiation: which of the media types an answer can be
 * given in does a request's Accept header prefer (RFC 9110 §12.5.1, the
 * part clients use).
 *
 * The header is a comma-separated list of media ranges (a type such as
 * image/png, "image/" and an asterisk for any image, or an asterisk, a
 * slash and an asterisk for anything), each with optional
 * parameters of which only q (0 to 1, default 1) is read. Each offered type
 * takes the q of the most specific range that matches it; the offered type
 * with the highest q above 0 wins, ties going to the earlier offer (the
 * server's preference). An absent or empty header accepts the first offer;
 * a range written wrongly matches nothing. */
#ifndef BS_ACCEPT_H
#define BS_ACCEPT_H

/* The index in offered[0..n) of the type to answer with, or -1 when the
 * header accepts none of them (an HTTP 406). accept may be NULL. */
int bs_accept_pick(const char *accept, const char *const *offered, int n);

/* The q the header gives to type (0 when no range matches it; 1 when the
 * header is absent or empty). */
double bs_accept_quality(const char *accept, const char *type);

/* The q an Accept-Encoding header gives to a content coding such as gzip
 * (RFC 9110 §12.5.3): the coding's own entry, else "*"; 0 when neither is
 * listed or the header is absent (then the answer goes uncompressed). */
double bs_accept_coding(const char *accept_encoding, const char *coding);

#endif
