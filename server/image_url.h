/* image_url — an image named by URL in a request ({"image": {"url":
 * "https://..."}}): fetched on a worker through the outbound guard
 * (outbound.h), under --fetch-max-bytes and --fetch-timeout, and taken
 * only as image/png or image/jpeg; the bytes are then decoded as an
 * uploaded image is. */
#ifndef BS_SERVER_IMAGE_URL_H
#define BS_SERVER_IMAGE_URL_H

#include "server/handler.h"

#include <jansson.h>

/* The URL of image when it is the {"url": ...} form, else NULL. */
const char *image_url_of(const json_t *image);

/* Fetches url into *bytes (malloc'd) and *len, within --fetch-timeout and
 * before deadline (a bs_now() time, the work's). 0, or -1 after an answer
 * in out: 422 url_refused (the guard), 422 fetch_failed (no answer, a
 * status other than 200, another content type, too big, too slow). */
int image_url_fetch(const server *srv, const char *url, double deadline, uint8_t **bytes,
                    size_t *len, http_response *out);

#endif
