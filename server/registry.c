/* registry — the model sets, their reloads, and the datasets; see registry.h. */
#include "server/registry.h"

#include "core/model_file.h"
#include "core/onnx.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const model_ext = ".safetensors";
static const char *const onnx_ext = ".onnx";

/* Whether file is a model by its name: *.safetensors or *.onnx. */
static int model_file_name(const char *file)
{
    size_t len = strlen(file), el = strlen(model_ext);
    return (len > el && !strcmp(file + len - el, model_ext)) || bs_onnx_is_path(file);
}

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

/* ---- scanning: which files are the models, under which names ---------- */

/* A model file found by a scan. */
typedef struct found {
    char name[REGISTRY_NAME_LEN];
    char path[REGISTRY_PATH_LEN];
    registry_file_id id;
} found;

typedef struct found_list {
    found *items;
    int n, cap;
} found_list;

static registry_file_id file_id(const struct stat *st)
{
    return (registry_file_id){(uint64_t)st->st_dev, (uint64_t)st->st_ino,
                              (int64_t)st->st_size, st->st_mtim};
}

static int same_file(const registry_file_id *a, const registry_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Adds path as model name (from the file name: without .safetensors or
 * .onnx, or without its last extension) or as model_name when one is given. */
static int found_add(found_list *l, const char *path, const char *file, const struct stat *st,
                     const char *model_name, char *err, size_t errlen)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        found *f = realloc(l->items, (size_t)cap * sizeof *f);
        if (!f) {
            snprintf(err, errlen, "out of memory listing the models");
            return -1;
        }
        l->items = f;
        l->cap = cap;
    }
    found *f = &l->items[l->n];
    memset(f, 0, sizeof *f);
    if (strlen(path) >= sizeof f->path) {
        snprintf(err, errlen, "%.200s...: the path is too long", path);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    f->id = file_id(st);
    size_t len = strlen(file), el = strlen(model_ext);
    const char *dot = strrchr(file, '.');
    if (model_name[0])
        len = strlen(model_name), file = model_name;
    else if (len > el && !strcmp(file + len - el, model_ext))
        len -= el;
    else if (bs_onnx_is_path(file))
        len -= strlen(onnx_ext);
    else if (dot && dot != file)
        len = (size_t)(dot - file);
    if (len >= sizeof f->name) {
        snprintf(err, errlen, "%s: the model name is longer than %zu characters", path,
                 sizeof f->name - 1);
        return -1;
    }
    memcpy(f->name, file, len);
    f->name[len] = '\0';
    if (!valid_name(f->name)) {
        snprintf(err, errlen, "%s: a model name may hold only letters, digits, '-', '_' and '.'",
                 path);
        return -1;
    }
    if (!strcmp(f->name, "stats")) {
        snprintf(err, errlen, "%s: the model name 'stats' is taken by GET /v2/models/stats "
                 "(every model's statistics); rename the file or give --model-name", path);
        return -1;
    }
    l->n++;
    return 0;
}

static int by_found_name(const void *a, const void *b)
{
    return strcmp(((const found *)a)->name, ((const found *)b)->name);
}

/* The model files of --models now, sorted by name: every *.safetensors and
 * *.onnx of a folder, or with model_name its one file (of any name; dot
 * files are not models), or the file itself. 0, or -1 with a message. */
static int scan(const registry *reg, found_list *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    struct stat st;
    if (stat(reg->models, &st) != 0) {
        snprintf(err, errlen, "cannot read the models at %s: %s", reg->models, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        const char *slash = strrchr(reg->models, '/');
        return found_add(l, reg->models, slash ? slash + 1 : reg->models, &st,
                         reg->model_name, err, errlen);
    }
    DIR *d = opendir(reg->models);
    if (!d) {
        snprintf(err, errlen, "cannot open the models folder %s: %s", reg->models,
                 strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (!reg->model_name[0] && !model_file_name(e->d_name))
            continue;
        char path[REGISTRY_PATH_LEN + 256];
        snprintf(path, sizeof path, "%s/%s", reg->models, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = found_add(l, path, e->d_name, &st, reg->model_name, err, errlen);
    }
    closedir(d);
    if (!rc && reg->model_name[0] && l->n != 1) {
        snprintf(err, errlen, "--model-name %s wants exactly one model file in %s; it holds %d",
                 reg->model_name, reg->models, l->n);
        rc = -1;
    }
    if (!rc)
        qsort(l->items, (size_t)l->n, sizeof *l->items, by_found_name);
    for (int i = 1; !rc && i < l->n; i++)
        if (!strcmp(l->items[i].name, l->items[i - 1].name)) {
            snprintf(err, errlen, "%s and %s would both be model %s", l->items[i - 1].path,
                     l->items[i].path, l->items[i].name);
            rc = -1;
        }
    if (rc) {
        free(l->items);
        memset(l, 0, sizeof *l);
    }
    return rc;
}

/* ---- models and sets --------------------------------------------------- */

static void model_release(registry_model *rm)
{
    if (!rm || atomic_fetch_sub(&rm->refs, 1) != 1)
        return;
    for (int i = 0; rm->ws && i < rm->n_places; i++)
        bs_workspace_free(rm->ws[i]);
    free(rm->ws);
    bs_model_free(rm->model);
    free(rm);
}

/* Reads f into a new model with one reference; NULL with a message. */
static registry_model *model_read(const registry *reg, const found *f, char *err, size_t errlen)
{
    registry_model *rm = calloc(1, sizeof *rm);
    if (rm)
        rm->ws = calloc((size_t)(reg->n_places > 0 ? reg->n_places : 1), sizeof *rm->ws);
    if (!rm || !rm->ws) {
        free(rm);
        snprintf(err, errlen, "model %s: out of memory", f->path);
        return NULL;
    }
    snprintf(rm->name, sizeof rm->name, "%s", f->name);
    snprintf(rm->path, sizeof rm->path, "%s", f->path);
    rm->id = f->id;
    rm->n_places = reg->n_places;
    atomic_init(&rm->refs, 1);
    char why[BS_ERR_LEN];
    rm->model = bs_onnx_is_path(f->path) ? bs_onnx_load(f->path, NULL, why)
                                         : bs_model_load(f->path, why);
    if (!rm->model) {
        snprintf(err, errlen, "model %s: %s", f->name, why); /* why names the file */
        free(rm->ws);
        free(rm);
        return NULL;
    }
    return rm;
}

static registry_set *set_new(int cap)
{
    registry_set *s = calloc(1, sizeof *s + (size_t)(cap > 0 ? cap : 1) * sizeof s->models[0]);
    if (s)
        atomic_init(&s->refs, 1);
    return s;
}

/* Appends rm with a reference of its own (models go in in name order). */
static void set_add(registry_set *s, registry_model *rm)
{
    atomic_fetch_add(&rm->refs, 1);
    s->models[s->n_models++] = rm;
}

void registry_set_retain(registry_set *set)
{
    atomic_fetch_add(&set->refs, 1);
}

void registry_set_release(registry_set *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    for (int i = 0; i < set->n_models; i++)
        model_release(set->models[i]);
    free(set);
}

registry_set *registry_acquire(registry *reg)
{
    pthread_mutex_lock(&reg->lock);
    registry_set *s = reg->current;
    if (s)
        registry_set_retain(s);
    pthread_mutex_unlock(&reg->lock);
    return s;
}

const registry_model *registry_set_find(const registry_set *set, const char *name)
{
    int lo = 0, hi = set ? set->n_models - 1 : -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(set->models[mid]->name, name);
        if (!c)
            return set->models[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* Makes next the current set (taking its reference) and lets go of the
 * old one. */
static void set_swap(registry *reg, registry_set *next)
{
    pthread_mutex_lock(&reg->lock);
    registry_set *old = reg->current;
    reg->current = next;
    pthread_mutex_unlock(&reg->lock);
    registry_set_release(old);
}

/* ---- problems: failing and unloaded models (under reg->lock) ----------- */

static registry_problem *problem_find(registry *reg, const char *name)
{
    for (int i = 0; i < reg->n_problems; i++)
        if (!strcmp(reg->problems[i].name, name))
            return &reg->problems[i];
    return NULL;
}

static void problem_drop(registry *reg, const char *name)
{
    pthread_mutex_lock(&reg->lock);
    registry_problem *p = problem_find(reg, name);
    if (p)
        *p = reg->problems[--reg->n_problems];
    pthread_mutex_unlock(&reg->lock);
}

static void problem_set(registry *reg, const char *name, const char *reason, int unloaded)
{
    pthread_mutex_lock(&reg->lock);
    registry_problem *p = problem_find(reg, name);
    if (!p) {
        registry_problem *grown =
            realloc(reg->problems, ((size_t)reg->n_problems + 1) * sizeof *grown);
        if (grown) {
            reg->problems = grown;
            p = &reg->problems[reg->n_problems++];
        }
    }
    if (p) {
        snprintf(p->name, sizeof p->name, "%s", name);
        snprintf(p->reason, sizeof p->reason, "%s", reason);
        p->unloaded = unloaded;
    }
    pthread_mutex_unlock(&reg->lock);
}

static int is_unloaded(registry *reg, const char *name)
{
    pthread_mutex_lock(&reg->lock);
    registry_problem *p = problem_find(reg, name);
    int u = p && p->unloaded;
    pthread_mutex_unlock(&reg->lock);
    return u;
}

/* ---- reloads ------------------------------------------------------------ */

int registry_rescan(registry *reg, registry_reload *r)
{
    memset(r, 0, sizeof *r);
    char err[REGISTRY_MSG_LEN];
    found_list l;
    pthread_mutex_lock(&reg->reload);
    if (scan(reg, &l, err, sizeof err)) {
        fprintf(stderr, "blindspotd: reload: %s; the models are kept as they are\n", err);
        pthread_mutex_unlock(&reg->reload);
        r->scan_failed = 1;
        return -1;
    }
    registry_set *old = registry_acquire(reg);
    registry_set *next = set_new(l.n);
    if (!next) {
        fprintf(stderr, "blindspotd: reload: out of memory; the models are kept as they are\n");
        registry_set_release(old);
        free(l.items);
        pthread_mutex_unlock(&reg->reload);
        r->scan_failed = 1;
        return -1;
    }
    for (int i = 0; i < l.n; i++) {
        const found *f = &l.items[i];
        if (is_unloaded(reg, f->name))
            continue;
        registry_model *cur = (registry_model *)registry_set_find(old, f->name);
        if (cur && same_file(&cur->id, &f->id)) {
            set_add(next, cur);
            r->kept++;
            continue;
        }
        registry_model *rm = model_read(reg, f, err, sizeof err);
        if (!rm) {
            r->failed++;
            fprintf(stderr, "blindspotd: reload: %s; %s\n", err,
                    cur ? "the previous version keeps serving" : "not served");
            problem_set(reg, f->name, err, 0);
            if (cur)
                set_add(next, cur);
            continue;
        }
        problem_drop(reg, f->name);
        set_add(next, rm);
        model_release(rm);
        if (cur)
            r->replaced++;
        else
            r->added++;
    }
    /* a failing or unloaded model whose file is gone is forgotten */
    pthread_mutex_lock(&reg->lock);
    for (int i = 0; i < reg->n_problems;) {
        int present = 0;
        for (int k = 0; k < l.n && !present; k++)
            present = !strcmp(l.items[k].name, reg->problems[i].name);
        if (!present)
            reg->problems[i] = reg->problems[--reg->n_problems];
        else
            i++;
    }
    pthread_mutex_unlock(&reg->lock);
    for (int i = 0; old && i < old->n_models; i++)
        if (!registry_set_find(next, old->models[i]->name))
            r->removed++;
    registry_set_release(old);
    set_swap(reg, next);
    free(l.items);
    pthread_mutex_unlock(&reg->reload);
    return r->failed ? -1 : 0;
}

/* A copy of the current set with model name replaced by rm (or added, in
 * its place by name), or taken out when rm is NULL. NULL when memory runs
 * out. */
static registry_set *set_with(registry *reg, const char *name, registry_model *rm)
{
    registry_set *old = registry_acquire(reg);
    registry_set *next = set_new((old ? old->n_models : 0) + 1);
    int placed = !rm;
    for (int i = 0; next && old && i < old->n_models; i++) {
        registry_model *m = old->models[i];
        int c = strcmp(m->name, name);
        if (c > 0 && !placed) {
            set_add(next, rm);
            placed = 1;
        }
        if (c)
            set_add(next, m);
    }
    if (next && !placed)
        set_add(next, rm);
    registry_set_release(old);
    return next;
}

int registry_load_model(registry *reg, const char *name, char *err, size_t errlen)
{
    found_list l;
    pthread_mutex_lock(&reg->reload);
    if (scan(reg, &l, err, errlen)) {
        pthread_mutex_unlock(&reg->reload);
        return -2;
    }
    const found *f = NULL;
    for (int i = 0; i < l.n; i++)
        if (!strcmp(l.items[i].name, name))
            f = &l.items[i];
    int rc = 0;
    registry_model *rm = NULL;
    registry_set *next = NULL;
    if (!f) {
        snprintf(err, errlen, "No model file is named '%.64s' in %s", name, reg->models);
        rc = -1;
    } else if (!(rm = model_read(reg, f, err, errlen))) {
        fprintf(stderr, "blindspotd: load: %s\n", err);
        problem_set(reg, name, err, 0);
        rc = -2;
    } else if (!(next = set_with(reg, name, rm))) {
        snprintf(err, errlen, "model %s: out of memory", f->path);
        rc = -2;
    } else {
        problem_drop(reg, name);
        set_swap(reg, next);
        fprintf(stderr, "blindspotd: load: model %s from %s\n", name, f->path);
    }
    model_release(rm);
    free(l.items);
    pthread_mutex_unlock(&reg->reload);
    return rc;
}

int registry_unload_model(registry *reg, const char *name)
{
    pthread_mutex_lock(&reg->reload);
    registry_set *cur = registry_acquire(reg);
    int rc = -1;
    if (registry_set_find(cur, name)) {
        registry_set *next = set_with(reg, name, NULL);
        if (next) {
            set_swap(reg, next);
            problem_set(reg, name, "unloaded by POST /v2/repository/models/{name}/unload; "
                                   "load it again with .../load", 1);
            fprintf(stderr, "blindspotd: unload: model %s\n", name);
            rc = 0;
        }
    }
    registry_set_release(cur);
    pthread_mutex_unlock(&reg->reload);
    return rc;
}

static int by_state_name(const void *a, const void *b)
{
    return strcmp(((const registry_state *)a)->name, ((const registry_state *)b)->name);
}

int registry_states(registry *reg, registry_state **out)
{
    pthread_mutex_lock(&reg->lock);
    const registry_set *s = reg->current;
    int n_set = s ? s->n_models : 0, n = 0;
    registry_state *st = calloc((size_t)(n_set + reg->n_problems + 1), sizeof *st);
    for (int i = 0; st && i < n_set; i++) {
        snprintf(st[n].name, sizeof st[n].name, "%s", s->models[i]->name);
        st[n++].ready = 1;
    }
    for (int i = 0; st && i < reg->n_problems; i++) {
        const registry_problem *p = &reg->problems[i];
        registry_state *e = NULL;
        for (int k = 0; k < n_set && !e; k++)
            if (!strcmp(st[k].name, p->name))
                e = &st[k];
        if (!e) {
            e = &st[n++];
            snprintf(e->name, sizeof e->name, "%s", p->name);
        }
        snprintf(e->reason, sizeof e->reason, "%s", p->reason);
        e->unloaded = p->unloaded;
    }
    pthread_mutex_unlock(&reg->lock);
    if (!st)
        return -1;
    qsort(st, (size_t)n, sizeof *st, by_state_name);
    *out = st;
    return n;
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

/* Loads dataset name when its folder exists in data_dir. */
static int load_dataset(registry *reg, const char *data_dir, const char *name, char *err,
                        size_t errlen)
{
    char folder[2048];
    struct stat st;
    snprintf(folder, sizeof folder, "%s/%s", data_dir, name);
    if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode))
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

/* The models at start-up: every file must load. */
static int load_models(registry *reg, char *err, size_t errlen)
{
    found_list l;
    if (scan(reg, &l, err, errlen))
        return -1;
    int rc = 0;
    if (l.n == 0) {
        snprintf(err, errlen, "no *.safetensors or *.onnx files in the models folder %s", reg->models);
        rc = -1;
    }
    registry_set *set = rc ? NULL : set_new(l.n);
    if (!rc && !set) {
        snprintf(err, errlen, "out of memory loading the models");
        rc = -1;
    }
    for (int i = 0; !rc && i < l.n; i++) {
        registry_model *rm = model_read(reg, &l.items[i], err, errlen);
        if (!rm)
            rc = -1;
        else
            set_add(set, rm);
        model_release(rm);
    }
    free(l.items);
    if (rc)
        registry_set_release(set);
    else
        reg->current = set;
    return rc;
}

int registry_load(registry *reg, const char *models, const char *model_name,
                  const char *data_dir, int n_places, char *err, size_t errlen)
{
    memset(reg, 0, sizeof *reg);
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->reload, NULL);
    snprintf(reg->models, sizeof reg->models, "%s", models);
    snprintf(reg->model_name, sizeof reg->model_name, "%s", model_name ? model_name : "");
    snprintf(reg->data_dir, sizeof reg->data_dir, "%s", data_dir);
    reg->n_places = n_places;
    if (load_models(reg, err, errlen) ||
        load_dataset(reg, data_dir, "mnist", err, errlen) ||
        load_dataset(reg, data_dir, "fashion-mnist", err, errlen)) {
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
    registry_set_release(reg->current);
    free(reg->problems);
    for (int d = 0; d < reg->n_datasets; d++)
        for (int s = 0; s < reg->datasets[d].n_splits; s++)
            split_free(&reg->datasets[d].splits[s]);
    pthread_mutex_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->reload);
    memset(reg, 0, sizeof *reg);
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

void registry_split_missing(const registry *reg, const char *name, const char *split,
                            char *err, size_t errlen)
{
    for (int d = 0; d < reg->n_datasets; d++)
        if (!strcmp(reg->datasets[d].name, name)) {
            snprintf(err, errlen, "Dataset %.64s has no split %.16s; GET /v1/datasets lists "
                     "them.", name, split);
            return;
        }
    snprintf(err, errlen, "Dataset %.64s is not loaded: no folder %.200s/%.64s; GET "
             "/v1/datasets lists those that are.", name, reg->data_dir, name);
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
