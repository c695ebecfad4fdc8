/* idx — IDX reader and writer (see idx.h). Files are read through zlib's
 * gzread, which passes plain files through unchanged, so one code path
 * serves both; bs_idx_read_buffer feeds the same parser from memory. */
#include "core/idx.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* zlib counts in unsigned int; larger transfers go in pieces of this size. */
#define GZ_CHUNK ((size_t)1 << 30)
/* A gzip source's data buffer starts this large and doubles up to the size
 * the header announces, so a small file that claims 2 GiB costs little. */
#define FIRST_ALLOC ((size_t)1 << 20)

/* Where the bytes come from: a gzFile, or a buffer in memory. */
typedef struct idx_src {
    const char *name;   /* for messages: the path, or "IDX buffer" */
    gzFile gz;          /* file source, or NULL */
    const uint8_t *buf; /* memory source */
    size_t len, pos;
} idx_src;

/* Reads up to n bytes into dst; *got is short only at the end of the input.
 * Returns -1 with a message on a read or decompression error. */
static int src_read(idx_src *s, void *dst, size_t n, size_t *got, char *err)
{
    *got = 0;
    if (!s->gz) {
        size_t left = s->len - s->pos;
        size_t k = left < n ? left : n;
        if (k)
            memcpy(dst, s->buf + s->pos, k);
        s->pos += k;
        *got = k;
        return 0;
    }
    while (*got < n) {
        size_t want = n - *got < GZ_CHUNK ? n - *got : GZ_CHUNK;
        int r = gzread(s->gz, (uint8_t *)dst + *got, (unsigned)want);
        if (r < 0) {
            int code;
            const char *msg = gzerror(s->gz, &code);
            bs_fail(err, "%s: cannot read: %s.", s->name,
                    code == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

/* Reads exactly `need` (> 0) bytes into a new buffer, growing it as bytes
 * actually arrive so that a small file claiming 2 GiB costs little. */
static int read_grow(idx_src *s, size_t need, uint8_t **out, char *err)
{
    size_t cap = need > FIRST_ALLOC ? FIRST_ALLOC : need;
    size_t have = 0, got;
    uint8_t *data = malloc(cap);
    while (data) {
        if (src_read(s, data + have, cap - have, &got, err)) {
            free(data);
            return -1;
        }
        have += got;
        if (have < cap || cap == need)
            break;
        cap = cap > need / 2 ? need : cap * 2;
        uint8_t *grown = realloc(data, cap);
        if (!grown)
            free(data);
        data = grown;
    }
    if (!data) {
        bs_fail(err, "%s: out of memory for %zu data bytes.",
                s->name, need);
        return -1;
    }
    if (have < need) {
        free(data);
        bs_fail(err,
                "%s: truncated: expected %zu data bytes, file has %zu.",
                s->name, need, have);
        return -1;
    }
    *out = data;
    return 0;
}

/* Reads the data section (need bytes) and checks that nothing follows it.
 * A memory source's length is checked before anything is allocated. */
static int read_data(idx_src *s, size_t need, uint8_t **out, char *err)
{
    *out = NULL;
    if (!s->gz && s->len - s->pos < need) {
        bs_fail(err,
                "%s: truncated: expected %zu data bytes, file has %zu.",
                s->name, need, s->len - s->pos);
        return -1;
    }
    uint8_t *data = NULL;
    if (need && read_grow(s, need, &data, err))
        return -1;
    uint8_t extra;
    size_t got;
    if (src_read(s, &extra, 1, &got, err)) {
        free(data);
        return -1;
    }
    if (got) {
        free(data);
        bs_fail(err,
                "%s: trailing bytes after data (the dims give %zu data bytes).",
                s->name, need);
        return -1;
    }
    *out = data;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t elem_size(uint8_t type)
{
    return type == BS_IDX_FLOAT ? 4 : 1;
}

/* Elements and bytes of an array of these dims, or -1 when the bytes would
 * exceed BS_IDX_MAX_BYTES. Exact: a zero dim makes an empty array even when
 * the other dims are huge. */
static int dims_size(uint8_t type, int ndims, const uint32_t *dims,
                     size_t *count, size_t *bytes)
{
    uint64_t n = 1;
    for (int i = 0; i < ndims; i++)
        if (dims[i] == 0)
            n = 0;
    for (int i = 0; i < ndims && n; i++) {
        n *= dims[i]; /* n <= 2^31 before, dims < 2^32: no wraparound */
        if (n * elem_size(type) > BS_IDX_MAX_BYTES)
            return -1;
    }
    *count = (size_t)n;
    *bytes = (size_t)n * elem_size(type);
    return 0;
}

static void dims_overflow_msg(const char *name, uint8_t type, int ndims,
                              const uint32_t *dims, char *err)
{
    char shape[64] = "";
    size_t used = 0;
    for (int i = 0; i < ndims; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%u",
                                 i ? "x" : "", dims[i]);
    bs_fail(err,
            "%s: dims overflow: %s elements of %zu bytes exceed the %zu-byte limit.",
            name, shape, elem_size(type), BS_IDX_MAX_BYTES);
}

static int idx_parse(idx_src *s, bs_idx *out, char *err)
{
    uint8_t h[4 * BS_IDX_MAX_DIMS];
    size_t got;

    memset(out, 0, sizeof *out);
    if (src_read(s, h, 4, &got, err))
        return -1;
    if (got == 0) {
        bs_fail(err, "%s: empty file, not an IDX file.", s->name);
        return -1;
    }
    if (got < 4) {
        bs_fail(err,
                "%s: truncated header: expected at least 4 bytes, file has %zu.",
                s->name, got);
        return -1;
    }
    if (h[0] != 0 || h[1] != 0) {
        bs_fail(err,
                "%s: bad magic %02X %02X, an IDX file starts with two zero bytes.",
                s->name, h[0], h[1]);
        return -1;
    }
    uint8_t type = h[2];
    int ndims = h[3];
    if (type != BS_IDX_UBYTE && type != BS_IDX_FLOAT) {
        bs_fail(err,
                "%s: unsupported type 0x%02X, only 0x08 (unsigned byte) and 0x0D (float32) are read.",
                s->name, type);
        return -1;
    }
    if (ndims == 0) {
        bs_fail(err, "%s: ndims 0, an IDX file needs 1 to %d dimensions.",
                s->name, BS_IDX_MAX_DIMS);
        return -1;
    }
    if (ndims > BS_IDX_MAX_DIMS) {
        bs_fail(err, "%s: ndims %d, at most %d dimensions are supported.",
                s->name, ndims, BS_IDX_MAX_DIMS);
        return -1;
    }

    size_t dim_bytes = 4 * (size_t)ndims;
    if (src_read(s, h, dim_bytes, &got, err))
        return -1;
    if (got < dim_bytes) {
        bs_fail(err,
                "%s: truncated header: expected %zu bytes, file has %zu.",
                s->name, 4 + dim_bytes, 4 + got);
        return -1;
    }
    uint32_t dims[BS_IDX_MAX_DIMS] = {0};
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(h + 4 * i);
    size_t count, bytes;
    if (dims_size(type, ndims, dims, &count, &bytes)) {
        dims_overflow_msg(s->name, type, ndims, dims, err);
        return -1;
    }

    uint8_t *data;
    if (read_data(s, bytes, &data, err))
        return -1;
    if (type == BS_IDX_FLOAT)
        for (size_t i = 0; i < count; i++) {
            uint32_t v = be32(data + 4 * i);
            memcpy(data + 4 * i, &v, 4); /* same bits, host order */
        }

    out->type = type;
    out->ndims = ndims;
    memcpy(out->dims, dims, sizeof dims);
    out->count = count;
    out->data = data;
    return 0;
}

int bs_idx_read(const char *path, bs_idx *out, char *err)
{
    memset(out, 0, sizeof *out);
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        bs_fail(err, "%s: cannot open: %s.", path,
                errno ? strerror(errno) : "out of memory");
        return -1;
    }
    gzbuffer(gz, 1 << 17);
    idx_src s = {.name = path, .gz = gz};
    int rc = idx_parse(&s, out, err);
    gzclose(gz);
    return rc;
}

int bs_idx_read_buffer(const uint8_t *buf, size_t len, bs_idx *out, char *err)
{
    idx_src s = {.name = "IDX buffer", .buf = buf, .len = buf ? len : 0};
    return idx_parse(&s, out, err);
}

/* Writes n bytes, in pieces zlib can count. */
static int gz_put(gzFile g, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        size_t k = n < GZ_CHUNK ? n : GZ_CHUNK;
        if (gzwrite(g, b, (unsigned)k) != (int)k)
            return -1;
        b += k;
        n -= k;
    }
    return 0;
}

static int write_body(gzFile g, const bs_idx *idx)
{
    uint8_t h[4 + 4 * BS_IDX_MAX_DIMS] = {0, 0, idx->type, (uint8_t)idx->ndims};
    for (int i = 0; i < idx->ndims; i++)
        put_be32(h + 4 + 4 * i, idx->dims[i]);
    if (gz_put(g, h, 4 + 4 * (size_t)idx->ndims))
        return -1;
    if (idx->type == BS_IDX_UBYTE)
        return gz_put(g, idx->data, idx->count);

    /* Floats go out big-endian through a small staging buffer. */
    const float *f = idx->data;
    uint8_t stage[4096 * 4];
    for (size_t i = 0; i < idx->count;) {
        size_t k = 0;
        for (; k < 4096 && i < idx->count; k++, i++) {
            uint32_t v;
            memcpy(&v, &f[i], 4);
            put_be32(stage + 4 * k, v);
        }
        if (gz_put(g, stage, 4 * k))
            return -1;
    }
    return 0;
}

int bs_idx_write(const char *path, const bs_idx *idx, char *err)
{
    if (idx->type != BS_IDX_UBYTE && idx->type != BS_IDX_FLOAT) {
        bs_fail(err, "%s: cannot write unsupported type 0x%02X.",
                path, idx->type);
        return -1;
    }
    if (idx->ndims < 1 || idx->ndims > BS_IDX_MAX_DIMS) {
        bs_fail(err, "%s: cannot write ndims %d, 1 to %d are supported.",
                path, idx->ndims, BS_IDX_MAX_DIMS);
        return -1;
    }
    size_t count, bytes;
    if (dims_size(idx->type, idx->ndims, idx->dims, &count, &bytes)) {
        dims_overflow_msg(path, idx->type, idx->ndims, idx->dims, err);
        return -1;
    }
    if (count != idx->count || (count && !idx->data)) {
        bs_fail(err,
                "%s: cannot write: count %zu does not match the dims' %zu elements.",
                path, idx->count, count);
        return -1;
    }

    size_t plen = strlen(path);
    int gzip = plen >= 3 && strcmp(path + plen - 3, ".gz") == 0;
    char tmp[4096];
    int fd = -1;
    for (unsigned k = 0; k < 100 && fd < 0; k++) {
        if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%u", path, (long)getpid(), k)
            >= (int)sizeof tmp) {
            bs_fail(err, "%.64s...: path too long.", path);
            return -1;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        bs_fail(err, "%s: cannot create: %s.", path, strerror(errno));
        return -1;
    }
    gzFile g = gzdopen(fd, gzip ? "wb6" : "wbT");
    if (!g) {
        close(fd);
        unlink(tmp);
        bs_fail(err, "%s: cannot write: out of memory.", path);
        return -1;
    }
    if (write_body(g, idx)) {
        int code;
        const char *msg = gzerror(g, &code);
        bs_fail(err, "%s: cannot write: %s.", path,
                code == Z_ERRNO ? strerror(errno) : msg);
        gzclose(g);
        unlink(tmp);
        return -1;
    }
    int rc = gzclose(g);
    if (rc != Z_OK) {
        bs_fail(err, "%s: cannot write: %s.", path,
                rc == Z_ERRNO ? strerror(errno) : "compression failed");
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        bs_fail(err, "%s: cannot rename the temporary file into place: %s.",
                path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void bs_idx_free(bs_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
