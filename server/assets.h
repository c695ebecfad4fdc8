/* assets — files compiled into blindspotd at build time (the Makefile's
 * ASSETS list turns each into a byte array of build/gen/assets_data.c) and
 * served as they are, with an ETag from their content: a request whose
 * If-None-Match names it is answered 304 without a body. A client whose
 * Accept-Encoding takes gzip gets the file's gzip (made at build time)
 * when that is smaller, under its own ETag. */
#ifndef BS_SERVER_ASSETS_H
#define BS_SERVER_ASSETS_H

#include <stddef.h>

typedef struct asset_file {
    const char *path;         /* the URL path it is served on */
    const char *content_type;
    const unsigned char *data;
    size_t len;
    const unsigned char *gz; /* the same, gzipped */
    size_t gz_len;
} asset_file;

/* The generated table. */
extern const asset_file asset_files[];
extern const int asset_count;

/* The asset served on path, or NULL. */
const asset_file *asset_find(const char *path);

/* The ETag of len bytes at data (a quoted hash of them) into buf of size >= 20. */
void asset_etag(const unsigned char *data, size_t len, char *buf, size_t size);

#endif
