/* assets — the compiled-in files and their handler; see assets.h. */
#include "server/assets.h"

#include "server/routes.h"

#include "api/accept.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const asset_file *asset_find(const char *path)
{
    for (int i = 0; i < asset_count; i++)
        if (!strcmp(asset_files[i].path, path))
            return &asset_files[i];
    return NULL;
}

void asset_etag(const unsigned char *data, size_t len, char *buf, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < len; i++)
        h = (h ^ data[i]) * 0x100000001b3ULL;
    snprintf(buf, size, "\"%016llx\"", (unsigned long long)h);
}

/* Whether an If-None-Match value (a list of ETags, or *) names etag. */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    if (!strcmp(inm, "*"))
        return 1;
    return strstr(inm, etag) != NULL;
}

handler_result assets_get(server *srv, const http_request *req, http_response *resp,
                          http_work *work)
{
    (void)srv;
    (void)work;
    /* /ui is the studio's other name */
    const asset_file *a = asset_find(strcmp(req->path, "/ui") ? req->path : "/");
    if (!a) {
        resp_error(resp, BS_E_NOT_FOUND, "No endpoint has this path.");
        return HANDLER_ANSWERED;
    }
    /* the gzip when the client takes it and it is smaller */
    int gz = a->gz_len < a->len && bs_accept_coding(req_header(req, "Accept-Encoding"), "gzip") > 0;
    const unsigned char *data = gz ? a->gz : a->data;
    size_t len = gz ? a->gz_len : a->len;
    char etag[24];
    asset_etag(data, len, etag, sizeof etag);
    if (etag_matches(req_header(req, "If-None-Match"), etag)) {
        resp_bytes(resp, 304, NULL, NULL, 0);
    } else {
        char *body = malloc(len ? len : 1);
        if (!body) {
            resp_error(resp, BS_E_OUT_OF_MEMORY, "The server ran out of memory.");
            return HANDLER_ANSWERED;
        }
        memcpy(body, data, len);
        resp_bytes(resp, 200, a->content_type, body, len);
    }
    if (gz)
        resp_header(resp, "Content-Encoding", "gzip");
    if (a->gz_len < a->len)
        resp_header(resp, "Vary", "Accept-Encoding");
    /* the client keeps it, and asks again with If-None-Match each time */
    resp_header(resp, "ETag", "%s", etag);
    resp_header(resp, "Cache-Control", "no-cache");
    resp_header(resp, "X-Content-Type-Options", "nosniff");
    if (!strncmp(a->content_type, "text/html", 9)) {
        /* The pages load nothing from another origin and call only the
         * daemon; Redoc (/docs) styles itself with inline styles and
         * searches in a worker made from a blob. */
        int docs = !strcmp(a->path, "/docs");
        resp_header(resp, "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'%s; "
                    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
                    "form-action 'none'",
                    docs ? " 'unsafe-inline'" : "");
        resp_header(resp, "Referrer-Policy", "no-referrer");
    }
    return HANDLER_ANSWERED;
}
