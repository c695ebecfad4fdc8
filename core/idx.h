/* idx — reading and writing IDX files, the format of MNIST and Fashion-MNIST
 * (LeCun's "idx3-ubyte" and friends), plain or gzip-compressed.
 *
 * An IDX file is a header and the data: two zero bytes, a type byte (0x08
 * unsigned byte or 0x0D big-endian float32; other IDX types are refused), a
 * byte with the number of dimensions (1 to 4), each dimension as a big-endian
 * uint32, then the product of the dimensions in elements, row-major. Nothing
 * may follow the data.
 *
 * Reading checks the header before allocating anything, refuses files whose
 * data would exceed BS_IDX_MAX_BYTES, and never trusts a dimension beyond the
 * bytes actually present: a hostile or damaged file gives an error message,
 * never a crash or a huge allocation. Floats are returned in host order.
 * Writing goes to a temporary file that is renamed into place, so an
 * interrupted write never leaves a half file under the final name. */
#ifndef BS_IDX_H
#define BS_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h" /* BS_ERR_LEN */

#define BS_IDX_UBYTE 0x08
#define BS_IDX_FLOAT 0x0D
#define BS_IDX_MAX_DIMS 4
#define BS_IDX_MAX_BYTES ((size_t)1 << 31) /* largest data section accepted */

typedef struct bs_idx {
    uint8_t type;                    /* BS_IDX_UBYTE or BS_IDX_FLOAT */
    int ndims;                       /* 1..BS_IDX_MAX_DIMS */
    uint32_t dims[BS_IDX_MAX_DIMS];  /* dims[0] is the outermost (usually n) */
    size_t count;                    /* product of dims: number of elements */
    void *data;                      /* count uint8_t (ubyte) or count float in
                                        host order (float); owned, NULL when
                                        count is 0 */
} bs_idx;

/* Reads an IDX file, plain or gzip (detected from the content, not the
 * name). Returns 0, or -1 with a message in err (char[BS_ERR_LEN]) naming
 * the file and the problem; *out is then left empty (safe to bs_idx_free). */
int bs_idx_read(const char *path, bs_idx *out, char *err);

/* The same for the plain (uncompressed) bytes of an IDX file in memory. */
int bs_idx_read_buffer(const uint8_t *buf, size_t len, bs_idx *out, char *err);

/* Writes idx to path, gzip-compressed when path ends in ".gz", plain
 * otherwise, through a temporary file in the same folder renamed into place.
 * idx->count must equal the product of its dims. Returns 0, or -1 with a
 * message in err. */
int bs_idx_write(const char *path, const bs_idx *idx, char *err);

/* Frees idx->data and empties idx. */
void bs_idx_free(bs_idx *idx);

#endif
