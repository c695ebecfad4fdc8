/* fuzz_idx — core/idx.h's reader on any bytes, plain or gzip, the way a
 * user's dataset file reaches it.
 *
 * Each input is read three ways, which must agree: from memory
 * (bs_idx_read_buffer), from a file holding the bytes (bs_idx_read, which
 * passes plain files through zlib), and from a file holding them
 * gzip-compressed (the same reader's gzip path); an input that is itself
 * gzip is read from the file as it is, damaged streams included. Promises
 * checked: a refusal has a message and leaves the result empty; an
 * accepted file has a known type, 1 to 4 dimensions whose product is the
 * count, exactly the bytes of its header and data (nothing may follow),
 * and the data as the file holds it (floats big-endian in the file, host
 * order out). The files are memfds, so nothing touches the disk. */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz.h"

#include "core/idx.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

/* A memfd holding len bytes of buf, gzip-compressed when gzip; its
 * /proc path in path. Returns the descriptor. */
static int memfile(const uint8_t *buf, size_t len, int gzip, char *path, size_t size)
{
    int fd = memfd_create("fuzz_idx", 0);
    PROMISE(fd >= 0, "memfd_create failed");
    if (gzip) {
        gzFile g = gzdopen(dup(fd), "wb1");
        PROMISE(g && (len == 0 || gzwrite(g, buf, (unsigned)len) == (int)len) &&
                    gzclose(g) == Z_OK,
                "gzip into the memfd failed");
    } else {
        PROMISE(write(fd, buf, len) == (ssize_t)len, "write into the memfd failed");
    }
    snprintf(path, size, "/proc/self/fd/%d", fd);
    return fd;
}

static void check_one(const bs_idx *idx, int rc, const char *err, const uint8_t *buf,
                      size_t len)
{
    PROMISE(rc == 0 || rc == -1, "answer %d", rc);
    if (rc) {
        PROMISE(err[0] && !idx->data && !idx->count, "a refusal without a message, or with data");
        return;
    }
    PROMISE(idx->type == BS_IDX_UBYTE || idx->type == BS_IDX_FLOAT, "type %#x", idx->type);
    PROMISE(idx->ndims >= 1 && idx->ndims <= BS_IDX_MAX_DIMS, "%d dimensions", idx->ndims);
    size_t count = 1;
    for (int d = 0; d < idx->ndims; d++)
        count *= idx->dims[d];
    size_t elem = idx->type == BS_IDX_UBYTE ? 1 : 4, header = 4 + 4 * (size_t)idx->ndims;
    PROMISE(count == idx->count && (count == 0) == (idx->data == NULL), "count %zu of %zu",
            idx->count, count);
    if (!buf)
        return;
    PROMISE(len == header + count * elem, "%zu bytes for %zu elements", len, count);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = buf + header + i * elem;
        if (idx->type == BS_IDX_UBYTE) {
            PROMISE(((const uint8_t *)idx->data)[i] == *p, "byte %zu", i);
        } else {
            uint32_t w = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            PROMISE(!memcmp(&w, (const float *)idx->data + i, 4), "float %zu", i);
        }
    }
}

static void check_same(const bs_idx *a, int rc_a, const bs_idx *b, int rc_b, const char *how)
{
    PROMISE(rc_a == rc_b, "memory says %d, %s %d", rc_a, how, rc_b);
    if (rc_a)
        return;
    PROMISE(a->type == b->type && a->ndims == b->ndims && a->count == b->count &&
                !memcmp(a->dims, b->dims, sizeof a->dims),
            "the header read from %s differs", how);
    size_t bytes = a->count * (a->type == BS_IDX_UBYTE ? 1 : 4);
    PROMISE(bytes == 0 || !memcmp(a->data, b->data, bytes), "the data read from %s differs", how);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "", path[64];
    bs_idx mem, file;
    int rc = bs_idx_read_buffer(buf, len, &mem, err);
    check_one(&mem, rc, err, buf, len);
    int is_gzip = len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;

    int fd = memfile(buf, len, 0, path, sizeof path);
    err[0] = '\0';
    int rc_file = bs_idx_read(path, &file, err);
    check_one(&file, rc_file, err, NULL, 0);
    if (!is_gzip)
        check_same(&mem, rc, &file, rc_file, "a plain file");
    bs_idx_free(&file);
    close(fd);

    if (!is_gzip) {
        fd = memfile(buf, len, 1, path, sizeof path);
        err[0] = '\0';
        rc_file = bs_idx_read(path, &file, err);
        check_one(&file, rc_file, err, NULL, 0);
        check_same(&mem, rc, &file, rc_file, "its gzip");
        bs_idx_free(&file);
        close(fd);
    }
    bs_idx_free(&mem);
    return 0;
}
