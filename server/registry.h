/* registry — what the daemon holds in memory: every model of the models
 * folder and the datasets' splits. Built once at start-up and read-only
 * afterwards, so any thread may read it without locks.
 *
 * A split is held as the 8-bit pixels its IDX file stores, each image
 * run-length coded on its own (zeros as runs), whenever every pixel's float
 * is exactly byte/255, as it is for unsigned-byte files: a fraction of the
 * 220 MB fashion-mnist's 70,000 images take as floats, and one image is
 * decoded in about a microsecond. A split that is not (a user's float32 file)
 * stays as floats. Handlers get floats on demand: one sample into their
 * buffer, or a slice materialised as a temporary bs_dataset they free. */
#ifndef BS_SERVER_REGISTRY_H
#define BS_SERVER_REGISTRY_H

#include "core/dataset.h"
#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

#define REGISTRY_NAME_LEN 64

typedef struct registry_model {
    char name[REGISTRY_NAME_LEN]; /* file name without .safetensors */
    char path[1100];              /* the file it came from */
    bs_model *model;
    int index;                    /* position in registry.models */
} registry_model;

/* One split of a dataset. The pixels are in exactly one of packed and
 * floats; read them through registry_split_sample / registry_split_slice. */
typedef struct registry_split {
    char name[REGISTRY_NAME_LEN]; /* the dataset's: "mnist", "fashion-mnist" */
    char split[16];               /* "train", "test" */
    int n;                        /* number of images, > 0 */
    int shape[3];                 /* (C,H,W) of one image */
    size_t input_size;            /* C*H*W pixels per image */
    int classes;                  /* max label + 1, at least 2 */
    int *labels;                  /* (n) in [0, classes); owned */
    uint8_t *packed;              /* image i's bytes (pixel = byte/255), run-
                                     length coded, at packed[offsets[i]..offsets[i+1]);
                                     or NULL */
    size_t *offsets;              /* (n+1) into packed; NULL with it */
    float *floats;                /* (n,C,H,W) in [0,1] when packed is NULL */
} registry_split;

typedef struct registry_dataset {
    char name[REGISTRY_NAME_LEN]; /* "mnist", "fashion-mnist" */
    registry_split splits[2];     /* "train", "test" */
    int n_splits;
} registry_dataset;

typedef struct registry {
    registry_model *models; /* sorted by name */
    int n_models;
    registry_dataset datasets[2];
    int n_datasets;
} registry;

/* Loads every *.safetensors of models_dir (in name order) and the datasets
 * of data_dir: mnist's train and test splits (required) and fashion-mnist's
 * (when its folder exists). Returns 0, or -1 with a message in err naming
 * the file and the fault; reg is then empty. */
int registry_load(registry *reg, const char *models_dir, const char *data_dir,
                  char *err, size_t errlen);
void registry_free(registry *reg);

/* Lookups by name; NULL when absent. */
const registry_model *registry_model_find(const registry *reg, const char *name);
const registry_split *registry_split_find(const registry *reg, const char *name,
                                          const char *split);

/* Image i (0 <= i < s->n) as the input_size floats in [0,1] a model takes,
 * into x; the same floats bs_dataset_load gives. Returns 0, or -1 when
 * memory runs out (inflating allocates a little). */
int registry_split_sample(const registry_split *s, int i, float *x);

/* Images first .. first+n-1 (within the split) and their labels as a
 * bs_dataset of its own (named as the split), for core functions that take
 * one; the caller frees it with bs_dataset_free. Returns 0, or -1 with a
 * message in err (char[BS_ERR_LEN]) when memory runs out; *out is then
 * empty. */
int registry_split_slice(const registry_split *s, int first, int n, bs_dataset *out,
                         char *err);

#endif
