/* registry — what the daemon holds in memory: every model of the models
 * folder and the datasets' splits. Built once at start-up and read-only
 * afterwards, so any thread may read it without locks. */
#ifndef BS_SERVER_REGISTRY_H
#define BS_SERVER_REGISTRY_H

#include "core/dataset.h"
#include "core/model.h"

#include <stddef.h>

#define REGISTRY_NAME_LEN 64

typedef struct registry_model {
    char name[REGISTRY_NAME_LEN]; /* file name without .safetensors */
    char path[1100];              /* the file it came from */
    bs_model *model;
    int index;                    /* position in registry.models */
} registry_model;

typedef struct registry_dataset {
    char name[REGISTRY_NAME_LEN]; /* "mnist", "fashion-mnist" */
    bs_dataset splits[2];         /* "train", "test" */
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
const bs_dataset *registry_split_find(const registry *reg, const char *name,
                                      const char *split);

#endif
