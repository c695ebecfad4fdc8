/* registry — what the daemon holds in memory: the models of --models (a
 * folder, or one file) and the datasets' splits.
 *
 * The datasets are loaded once at start-up and read-only afterwards, so any
 * thread may read them without locks. The models are a *model set*: an
 * immutable, reference-counted, name-sorted array of reference-counted
 * models. A request takes a reference to the current set when it is
 * dispatched (registry_acquire) and reads only that set; a reload
 * (registry_rescan on SIGHUP, registry_load_model and registry_unload_model
 * from the repository endpoints) builds a new set, keeping the unchanged
 * models of the old one as they are, and swaps it in under a mutex. Work in
 * flight keeps the set (and so the models) it started with until it lets
 * go of it; the last release frees what no set holds any more.
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
#include "core/error.h"
#include "core/model.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define REGISTRY_NAME_LEN 64
#define REGISTRY_MAX_DATASETS 8 /* dataset folders of --data served at once */
#define REGISTRY_PATH_LEN 1100
#define REGISTRY_MSG_LEN (BS_ERR_LEN + REGISTRY_PATH_LEN)

/* What tells a changed file from the one that was read: a file whose
 * identity is the same is not read again. */
typedef struct registry_file_id {
    uint64_t dev, ino;
    int64_t size;
    struct timespec mtime;
} registry_file_id;

typedef struct registry_model {
    char name[REGISTRY_NAME_LEN]; /* file name without .safetensors, or --model-name */
    char path[REGISTRY_PATH_LEN]; /* the file it came from */
    bs_model *model;
    registry_file_id id;          /* of the file when it was read */
    atomic_int refs;              /* model sets holding it */
    int n_places;                 /* of the worker pool (pool_workspace) */
    bs_workspace **ws;            /* (n_places) one per pool place, made on first
                                     use by the one thread in that place */
} registry_model;

/* An immutable set of models; read it only while holding a reference. */
typedef struct registry_set {
    atomic_int refs;
    int n_models;
    registry_model *models[]; /* (n_models) sorted by name */
} registry_set;

/* A model whose file failed to load at the last scan or load, or that was
 * unloaded; the repository index lists them. */
typedef struct registry_problem {
    char name[REGISTRY_NAME_LEN];
    char reason[REGISTRY_MSG_LEN];
    int unloaded;                 /* 1: POST .../unload took it out of serving */
} registry_problem;

/* One line of the repository index. */
typedef struct registry_state {
    char name[REGISTRY_NAME_LEN];
    int ready;                    /* a version of it serves */
    int unloaded;                 /* taken out by POST .../unload */
    char reason[REGISTRY_MSG_LEN]; /* why not, or why its file is not the one
                                      serving; "" when all is well */
} registry_state;

/* What a reload did, for the log line and /metrics. */
typedef struct registry_reload {
    int added, removed, replaced, kept, failed;
    int scan_failed;              /* the folder or file could not be read at all */
} registry_reload;

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
    registry_dataset datasets[REGISTRY_MAX_DATASETS];
    int n_datasets;
    char data_dir[REGISTRY_PATH_LEN];   /* where datasets were looked for */
    char models[REGISTRY_PATH_LEN];     /* --models: a folder or one file */
    char model_name[REGISTRY_NAME_LEN]; /* --model-name, or "" */
    int n_places;                       /* pool places, for the workspaces */
    pthread_mutex_t lock;               /* guards current and problems */
    pthread_mutex_t reload;             /* one reload at a time */
    registry_set *current;              /* never NULL once loaded */
    /* raised (under lock) before each new current set is seen: a model
     * that was freed can come back at its address only in a later
     * generation, so the address and the generation name one model (a
     * worker's scratch keeps a workspace by both; core/scratch.h) */
    _Atomic uint64_t generation;
    registry_problem *problems;
    int n_problems;
} registry;

/* Loads the models of models (a folder: its *.safetensors files; with
 * model_name, the one file it holds, of any name; or one file) and the
 * datasets of data_dir: mnist and fashion-mnist when their folders exist,
 * then, by name, every other folder holding a test-images-idx3-ubyte[.gz]
 * file (a user's own IDX files, colour or not; its train split when it has
 * one), at most REGISTRY_MAX_DATASETS in all. Strict:
 * a file that fails, a bad name, no model at all or, with model_name, more
 * than one file is an error. n_places is the worker pool's (for
 * workspaces). Returns 0, or -1 with a message in err naming the file and
 * the fault; reg is then empty. */
int registry_load(registry *reg, const char *models, const char *model_name,
                  const char *data_dir, int n_places, char *err, size_t errlen);
void registry_free(registry *reg);

/* The current model set, with a reference the caller releases. */
registry_set *registry_acquire(registry *reg);
void registry_set_retain(registry_set *set);
/* NULL is allowed. The last release frees the set, and each model no
 * other set holds. */
void registry_set_release(registry_set *set);
/* The model of set named name; NULL when absent (or set is NULL). */
const registry_model *registry_set_find(const registry_set *set, const char *name);

/* Reads the models again: new files are loaded, gone ones dropped, changed
 * ones (device, inode, size, mtime) read again, the rest kept as they are.
 * A file that fails keeps its previous version serving (a new one stays
 * out), and is logged and listed in the problems; unloaded models stay
 * out. Logs one line per failure on stderr. Fills *r; returns 0, or -1
 * when something failed. */
int registry_rescan(registry *reg, registry_reload *r);
/* Reads model name's file now (even when unchanged), and serves it from
 * now on (it is no longer unloaded). 0; -1 when no file has that name;
 * -2 when it fails to load (the previous version keeps serving); the
 * message in err. */
int registry_load_model(registry *reg, const char *name, char *err, size_t errlen);
/* Takes model name out of serving until registry_load_model names it:
 * rescans skip it. 0, or -1 when it is not loaded. */
int registry_unload_model(registry *reg, const char *name);
/* Every model served, failing or unloaded, by name, in a malloc'd array
 * the caller frees; -1 when memory runs out. */
int registry_states(registry *reg, registry_state **out);
/* Lookups by name; NULL when absent. */
const registry_split *registry_split_find(const registry *reg, const char *name,
                                          const char *split);
/* Why dataset name's split is not there, for a 404: the dataset is not
 * loaded (no folder where it was looked for) or has no such split. */
void registry_split_missing(const registry *reg, const char *name, const char *split,
                            char *err, size_t errlen);

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
