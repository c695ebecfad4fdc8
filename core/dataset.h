/* dataset — labelled images loaded by name from a data folder, as floats in
 * [0,1] ready for a model.
 *
 * A dataset is a folder of IDX files, two per split:
 *   {split}-images-idx3-ubyte[.gz]   (n,H,W), (n,C,H,W) or (n,H,W,C) (C 1
 *                                    or 3; the channels-last order is
 *                                    recognised by a last dim of 1 or 3 and a
 *                                    second that is neither, and reordered
 *                                    to (n,C,H,W) on load), ubyte or float32
 *   {split}-labels-idx1-ubyte[.gz]   (n) ubyte class indices
 * (the .gz file is tried first). Names resolve to folders like this:
 *   "mnist", "fashion-mnist", ...   data_dir/NAME, files {split}-...
 *   "mnist:P1", "mnist:P2"          the disjoint halves P' and P'' of the
 *                                   paper's Table 3: split "train" reads the
 *                                   files p1-... (p2-...) of data_dir/mnist,
 *                                   split "test" the usual test-... files
 *                                   (the suffix is case-insensitive and works
 *                                   for any named dataset that has p1/p2 files)
 *   anything containing '/'         a folder path used as it is, for a
 *                                   user's own IDX files
 * `make data` prepares mnist (with p1, p2) and fashion-mnist in data/. */
#ifndef BS_DATASET_H
#define BS_DATASET_H

#include <stddef.h>

#include "core/model.h" /* BS_ERR_LEN */

typedef struct bs_dataset {
    char name[64];     /* the name as given (a long folder path is cut) */
    char split[16];    /* "train", "test", ... */
    int n;             /* number of images, > 0 */
    int shape[3];      /* (C,H,W) of one image */
    size_t input_size; /* C*H*W floats per image */
    int classes;       /* max label + 1, at least 2 */
    float *images;     /* (n, C, H, W) in [0,1]; owned (NULL when bytes is set) */
    unsigned char *bytes; /* bs_dataset_load_bytes only: (n, C, H, W) bytes,
                           * pixel b standing for b / 255.0f; owned, or NULL */
    int *labels;       /* (n) in [0, classes); owned */
} bs_dataset;

/* Loads split ("train", "test", ...) of the dataset `name` from data_dir.
 * Returns 0, or -1 with a message in err (char[BS_ERR_LEN]) that names the
 * file and the problem; *out is then left empty (safe to bs_dataset_free). */
int bs_dataset_load(const char *data_dir, const char *name, const char *split,
                    bs_dataset *out, char *err);

/* The same, but an unsigned-byte images file stays bytes (out->bytes,
 * out->images NULL): a quarter of the memory, for callers that keep many
 * images and convert them when used (b / 255.0f gives the floats
 * bs_dataset_load gives). A float images file loads as floats. */
int bs_dataset_load_bytes(const char *data_dir, const char *name, const char *split,
                          bs_dataset *out, char *err);

/* Frees the images and labels and empties d. */
void bs_dataset_free(bs_dataset *d);

#endif
