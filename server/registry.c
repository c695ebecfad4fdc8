/* registry — loading the resident models and datasets; see registry.h. */
#include "server/registry.h"

#include "core/model_file.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
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

/* The pixels of d as bytes b with b/255.0f (how core/dataset.c scales an
 * unsigned-byte file) giving back every float bit for bit; NULL when some
 * pixel has no such byte or memory runs out (*oom tells which). */
static uint8_t *exact_bytes(const bs_dataset *d, int *oom)
{
    size_t count = (size_t)d->n * d->input_size;
    uint8_t *b = malloc(count);
    *oom = !b;
    if (!b)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        float v = d->images[i];
        long q = v >= 0.0f && v <= 1.0f ? lroundf(v * 255.0f) : -1;
        float back = (float)q / 255.0f;
        if (q < 0 || memcmp(&back, &v, sizeof v) != 0) {
            free(b);
            return NULL;
        }
        b[i] = (uint8_t)q;
    }
    return b;
}

/* Images are kept run-length coded: a zero byte is followed by the length
 * of its run of zeros (1..255), any other byte stands for itself. Digits and
 * clothes on a black background are mostly zeros, so this halves fashion-
 * mnist and shrinks mnist five-fold, at a few nanoseconds a pixel either
 * way (zlib packs smaller but took 2.5 s at start-up). */
static size_t rle_encode(const uint8_t *b, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t k = 0; k < n;) {
        if (b[k]) {
            out[o++] = b[k++];
            continue;
        }
        size_t run = 0;
        while (k < n && !b[k] && run < 255) {
            k++;
            run++;
        }
        out[o++] = 0;
        out[o++] = (uint8_t)run;
    }
    return o;
}

/* Decodes into n bytes; -1 when the code does not make exactly n. */
static int rle_decode(const uint8_t *c, size_t len, uint8_t *out, size_t n)
{
    size_t o = 0;
    for (size_t k = 0; k < len; k++) {
        if (c[k]) {
            if (o >= n)
                return -1;
            out[o++] = c[k];
            continue;
        }
        if (++k >= len || !c[k] || c[k] > n - o)
            return -1;
        memset(out + o, 0, c[k]);
        o += c[k];
    }
    return o == n ? 0 : -1;
}

/* Codes every image of bytes (s's pixels) into s->packed and s->offsets,
 * and checks that each decodes back to its bytes. Returns 0, or -1 when
 * memory runs out. */
static int pack(registry_split *s, const uint8_t *bytes)
{
    size_t in = s->input_size, worst = in * 2; /* lone zeros double */
    int rc = -1;
    uint8_t *check = malloc(in);
    s->offsets = malloc(((size_t)s->n + 1) * sizeof *s->offsets);
    s->packed = malloc((size_t)s->n * worst);
    if (!s->offsets || !s->packed || !check)
        goto out;
    s->offsets[0] = 0;
    for (int i = 0; i < s->n; i++) {
        const uint8_t *img = bytes + (size_t)i * in;
        size_t len = rle_encode(img, in, s->packed + s->offsets[i]);
        s->offsets[i + 1] = s->offsets[i] + len;
        if (rle_decode(s->packed + s->offsets[i], len, check, in) ||
            memcmp(check, img, in) != 0)
            goto out;
    }
    uint8_t *shrunk = realloc(s->packed, s->offsets[s->n] ? s->offsets[s->n] : 1);
    if (shrunk)
        s->packed = shrunk;
    rc = 0;
out:
    if (rc) {
        free(s->packed);
        free(s->offsets);
        s->packed = NULL;
        s->offsets = NULL;
    }
    free(check);
    return rc;
}

/* Loads one split into s, packed when its pixels are exact bytes. */
static int load_split(registry_split *s, const char *data_dir, const char *name,
                      const char *split, char *err, size_t errlen)
{
    bs_dataset d;
    char why[BS_ERR_LEN];
    if (bs_dataset_load_bytes(data_dir, name, split, &d, why)) {
        snprintf(err, errlen, "dataset %s (%s split): %s", name, split, why);
        return -1;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->split, sizeof s->split, "%s", split);
    s->n = d.n;
    memcpy(s->shape, d.shape, sizeof s->shape);
    s->input_size = d.input_size;
    s->classes = d.classes;
    /* bytes straight from the file, or floats that happen to be bytes */
    int oom = 0;
    uint8_t *bytes = d.bytes ? d.bytes : exact_bytes(&d, &oom);
    if (oom || (bytes && pack(s, bytes))) {
        if (bytes != d.bytes)
            free(bytes);
        bs_dataset_free(&d);
        snprintf(err, errlen, "dataset %s (%s split): out of memory", name, split);
        return -1;
    }
    if (bytes != d.bytes)
        free(bytes);
    s->labels = d.labels;
    d.labels = NULL;
    if (!s->packed) {
        s->floats = d.images;
        d.images = NULL;
    }
    bs_dataset_free(&d);
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
        if (load_split(&ds->splits[s], data_dir, name, splits[s], err, errlen))
            return -1;
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
    /* Loading went through tens of MB of raw pixels and gzip buffers; give
     * the heap they leave free back to the system. */
    malloc_trim(0);
    return 0;
}

static void split_free(registry_split *s)
{
    free(s->labels);
    free(s->packed);
    free(s->offsets);
    free(s->floats);
}

void registry_free(registry *reg)
{
    for (int i = 0; i < reg->n_models; i++)
        bs_model_free(reg->models[i].model);
    free(reg->models);
    for (int d = 0; d < reg->n_datasets; d++)
        for (int s = 0; s < reg->datasets[d].n_splits; s++)
            split_free(&reg->datasets[d].splits[s]);
    memset(reg, 0, sizeof *reg);
}

const registry_model *registry_model_find(const registry *reg, const char *name)
{
    for (int i = 0; i < reg->n_models; i++)
        if (!strcmp(reg->models[i].name, name))
            return &reg->models[i];
    return NULL;
}

const registry_split *registry_split_find(const registry *reg, const char *name,
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

int registry_split_sample(const registry_split *s, int i, float *x)
{
    size_t in = s->input_size;
    if (!s->packed) {
        memcpy(x, s->floats + (size_t)i * in, in * sizeof *x);
        return 0;
    }
    /* decode the bytes into the float buffer's tail, then widen them in
     * place from the front: x[k] is written after byte k has been read */
    uint8_t *b = (uint8_t *)(x + in) - in;
    if (rle_decode(s->packed + s->offsets[i], s->offsets[i + 1] - s->offsets[i], b, in))
        return -1;
    for (size_t k = 0; k < in; k++)
        x[k] = b[k] / 255.0f;
    return 0;
}

int registry_split_slice(const registry_split *s, int first, int n, bs_dataset *out,
                         char *err)
{
    memset(out, 0, sizeof *out);
    out->images = malloc((size_t)n * s->input_size * sizeof *out->images);
    out->labels = malloc((size_t)n * sizeof *out->labels);
    int ok = out->images && out->labels;
    for (int i = 0; ok && i < n; i++)
        ok = !registry_split_sample(s, first + i, out->images + (size_t)i * s->input_size);
    if (!ok) {
        bs_dataset_free(out);
        snprintf(err, BS_ERR_LEN, "out of memory for %d images of %s/%s", n, s->name, s->split);
        return -1;
    }
    snprintf(out->name, sizeof out->name, "%s", s->name);
    snprintf(out->split, sizeof out->split, "%s", s->split);
    out->n = n;
    memcpy(out->shape, s->shape, sizeof out->shape);
    out->input_size = s->input_size;
    out->classes = s->classes;
    memcpy(out->labels, s->labels + first, (size_t)n * sizeof *out->labels);
    return 0;
}
