/* registry — loading the resident models and datasets; see registry.h. */
#include "server/registry.h"

#include "core/model_file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const model_ext = ".safetensors";

/* Model names travel in URL paths; keep them to characters that need no
 * escaping there. */
static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const registry_model *)a)->name, ((const registry_model *)b)->name);
}

static int load_models(registry *reg, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open the models folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), el = strlen(model_ext);
        if (len <= el || strcmp(e->d_name + len - el, model_ext) != 0)
            continue;
        if (reg->n_models == cap) {
            cap = cap ? 2 * cap : 16;
            registry_model *m = realloc(reg->models, (size_t)cap * sizeof *m);
            if (!m) {
                closedir(d);
                snprintf(err, errlen, "out of memory listing %s", dir);
                return -1;
            }
            reg->models = m;
        }
        registry_model *rm = &reg->models[reg->n_models];
        memset(rm, 0, sizeof *rm);
        snprintf(rm->path, sizeof rm->path, "%s/%s", dir, e->d_name);
        if (len - el >= sizeof rm->name) {
            closedir(d);
            snprintf(err, errlen, "%s: the model name is longer than %zu characters",
                     rm->path, sizeof rm->name - 1);
            return -1;
        }
        memcpy(rm->name, e->d_name, len - el);
        rm->name[len - el] = '\0';
        reg->n_models++;
        if (!valid_name(rm->name)) {
            closedir(d);
            snprintf(err, errlen,
                     "%s: a model name may hold only letters, digits, '-', '_' and '.'",
                     rm->path);
            return -1;
        }
    }
    closedir(d);
    if (reg->n_models == 0) {
        snprintf(err, errlen, "no *.safetensors files in the models folder %s", dir);
        return -1;
    }
    qsort(reg->models, (size_t)reg->n_models, sizeof *reg->models, by_name);
    for (int i = 0; i < reg->n_models; i++) {
        registry_model *rm = &reg->models[i];
        char why[BS_ERR_LEN];
        rm->index = i;
        rm->model = bs_model_load(rm->path, why);
        if (!rm->model) {
            snprintf(err, errlen, "model %s: %s", rm->path, why);
            return -1;
        }
    }
    return 0;
}

static int load_dataset(registry *reg, const char *data_dir, const char *name,
                        int required, char *err, size_t errlen)
{
    char folder[2048];
    struct stat st;
    snprintf(folder, sizeof folder, "%s/%s", data_dir, name);
    if (!required && (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode)))
        return 0;
    registry_dataset *ds = &reg->datasets[reg->n_datasets++];
    snprintf(ds->name, sizeof ds->name, "%s", name);
    static const char *const splits[] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        char why[BS_ERR_LEN];
        if (bs_dataset_load(data_dir, name, splits[s], &ds->splits[s], why)) {
            snprintf(err, errlen, "dataset %s (%s split): %s", name, splits[s], why);
            return -1;
        }
        ds->n_splits++;
    }
    return 0;
}

int registry_load(registry *reg, const char *models_dir, const char *data_dir,
                  char *err, size_t errlen)
{
    memset(reg, 0, sizeof *reg);
    if (load_models(reg, models_dir, err, errlen) ||
        load_dataset(reg, data_dir, "mnist", 1, err, errlen) ||
        load_dataset(reg, data_dir, "fashion-mnist", 0, err, errlen)) {
        registry_free(reg);
        return -1;
    }
    return 0;
}

void registry_free(registry *reg)
{
    for (int i = 0; i < reg->n_models; i++)
        bs_model_free(reg->models[i].model);
    free(reg->models);
    for (int d = 0; d < reg->n_datasets; d++)
        for (int s = 0; s < reg->datasets[d].n_splits; s++)
            bs_dataset_free(&reg->datasets[d].splits[s]);
    memset(reg, 0, sizeof *reg);
}

const registry_model *registry_model_find(const registry *reg, const char *name)
{
    for (int i = 0; i < reg->n_models; i++)
        if (!strcmp(reg->models[i].name, name))
            return &reg->models[i];
    return NULL;
}

const bs_dataset *registry_split_find(const registry *reg, const char *name,
                                      const char *split)
{
    for (int d = 0; d < reg->n_datasets; d++) {
        if (strcmp(reg->datasets[d].name, name) != 0)
            continue;
        for (int s = 0; s < reg->datasets[d].n_splits; s++)
            if (!strcmp(reg->datasets[d].splits[s].split, split))
                return &reg->datasets[d].splits[s];
    }
    return NULL;
}
