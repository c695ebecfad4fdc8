/* image_url — images by URL; see image_url.h. */
#include "server/image_url.h"

#include "core/control.h" /* bs_now */
#include "server/outbound.h"

#include <stdlib.h>
#include <string.h>

const char *image_url_of(const json_t *image)
{
    return json_is_object(image) ? json_string_value(json_object_get(image, "url")) : NULL;
}

int image_url_fetch(const server *srv, const char *url, double deadline, uint8_t **bytes,
                    size_t *len, http_response *out)
{
    const config *cfg = srv->cfg;
    double timeout = cfg->fetch_timeout, left = deadline - bs_now();
    if (deadline > 0 && left <= 0) {
        resp_error(out, BS_E_DEADLINE_EXCEEDED, "The time budget ran out before image.url "
                   "was fetched.");
        return -1;
    }
    if (deadline > 0 && left < timeout)
        timeout = left;
    static const char *const headers[] = {"Accept: image/png, image/jpeg"};
    outbound_request r = {.url = url, .headers = headers, .n_headers = 1,
                          .max_bytes = cfg->fetch_max_bytes, .timeout = timeout};
    outbound_response got;
    char err[600];
    outbound_result res = outbound_fetch(&cfg->outbound, &r, &got, err, sizeof err);
    if (res == OUTBOUND_REFUSED) {
        resp_error(out, BS_E_URL_REFUSED, "image.url %s.", err);
        return -1;
    }
    if (res == OUTBOUND_FAILED) {
        resp_error(out, BS_E_FETCH_FAILED, "image.url could not be fetched: %s.", err);
        return -1;
    }
    if (got.status != 200) {
        resp_error(out, BS_E_FETCH_FAILED, "image.url answered %d, not 200%s.", got.status,
                   got.status >= 300 && got.status < 400 ? " (redirects are not followed)" : "");
        outbound_response_free(&got);
        return -1;
    }
    if (strcmp(got.content_type, "image/png") && strcmp(got.content_type, "image/jpeg")) {
        resp_error(out, BS_E_FETCH_FAILED, "image.url answered Content-Type '%.60s'; "
                   "image/png or image/jpeg is taken.", got.content_type);
        outbound_response_free(&got);
        return -1;
    }
    *bytes = got.body;
    *len = got.len;
    if (!*bytes) {
        resp_error(out, BS_E_FETCH_FAILED, "image.url answered an empty body.");
        return -1;
    }
    return 0;
}
