/* onnx — ONNX files to bs_model graphs; see onnx.h. The file is parsed by
 * protobuf-c into ONNX's messages (build/gen/onnx.pb-c.h, generated from
 * libonnx-dev's onnx.proto), then the graph is walked once in file order:
 * every name is either a constant known at load (initializers and the
 * shape arithmetic evaluated from them) or a tensor of the bs_model graph
 * with one sample's shape. */
#include "core/onnx.h"
#include "core/error.h"
#include "core/model.h"

#include "onnx.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FULL_RANK 8              /* dims of a constant */
#define MAX_ELEMS ((size_t)BS_MAX_PARAMS) /* elements of one constant */
#define MAX_COMPUTED ((size_t)1 << 22) /* elements a computed constant may have
                                        * beyond its largest input's */
#define MAX_DIM (1 << 24)            /* one dimension of the input */

enum { T_FLOAT = 1, T_INT32 = 6, T_INT64 = 7, T_BOOL = 9 };

/* A value known at load, with ONNX's dims (the batch counted where it is). */
typedef struct cval {
    int is_int;
    int rank;
    int64_t dims[MAX_FULL_RANK];
    size_t n;
    float *f;   /* n floats when !is_int */
    int64_t *i; /* n integers when is_int */
} cval;

enum { V_UNDEF, V_CONST, V_TENSOR };

/* One name of the file's graph. */
typedef struct value {
    const char *name;
    int kind;
    cval c;        /* V_CONST */
    int t;         /* V_TENSOR: the graph's tensor */
    int producer;  /* V_TENSOR: the node writing t, -1 for the input */
    int consumers; /* uses by needed nodes, the output counted */
    int onnx_node; /* the file's node writing it, -1 for none */
} value;

typedef struct imp {
    const Onnx__ModelProto *model;
    const Onnx__GraphProto *g;
    const bs_onnx_options *opt;
    const char *dir;  /* the model's folder; NULL when read from memory */
    int opset;
    int batch;
    value *vals;
    size_t n_vals, cap_vals;
    int *slots;       /* hash of names into vals, -1 empty */
    size_t n_slots;
    bs_layer *nodes;
    int n_nodes;
    float **wdata, **bdata; /* per node: conv and linear weights and biases */
    size_t *wsize, *bsize;
    bs_tensor *tensors;
    int n_tensors;
    float **tdata;    /* per tensor: a constant's floats */
    char **names;     /* names the importer made (owned) */
    int n_names, cap_names;
    const Onnx__NodeProto *cur;
    size_t max_elems; /* elements of the next constant (0: MAX_ELEMS) */
    char *err;
} imp;

/* --- messages -------------------------------------------------------------- */

static const char *node_name(const Onnx__NodeProto *n)
{
    if (n->name && *n->name)
        return n->name;
    if (n->n_output && n->output[0] && *n->output[0])
        return n->output[0];
    return "?";
}

/* A refusal naming the node being imported. */
static int nfail(imp *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int nfail(imp *im, const char *fmt, ...)
{
    char why[BS_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (im->cur)
        return bs_fail(im->err, "node '%.48s' (%.24s): %s", node_name(im->cur),
                       im->cur->op_type ? im->cur->op_type : "", why);
    return bs_fail(im->err, "%s", why);
}

static void dims_str(char *buf, size_t size, const int64_t *dims, int rank)
{
    size_t k = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < rank && k < size; d++)
        k += (size_t)snprintf(buf + k, size - k, d ? ",%lld" : "%lld", (long long)dims[d]);
    if (k < size)
        snprintf(buf + k, size - k, ")");
}

/* --- names ----------------------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int grow_slots(imp *im)
{
    size_t n = im->n_slots ? im->n_slots * 2 : 1024;
    int *s = malloc(n * sizeof *s);
    if (!s)
        return bs_fail(im->err, "out of memory");
    for (size_t k = 0; k < n; k++)
        s[k] = -1;
    for (size_t v = 0; v < im->n_vals; v++) {
        size_t k = hash_name(im->vals[v].name) & (n - 1);
        while (s[k] >= 0)
            k = (k + 1) & (n - 1);
        s[k] = (int)v;
    }
    free(im->slots);
    im->slots = s;
    im->n_slots = n;
    return 0;
}

static value *find(imp *im, const char *name)
{
    if (!im->n_slots)
        return NULL;
    size_t k = hash_name(name) & (im->n_slots - 1);
    for (; im->slots[k] >= 0; k = (k + 1) & (im->n_slots - 1))
        if (!strcmp(im->vals[im->slots[k]].name, name))
            return &im->vals[im->slots[k]];
    return NULL;
}

/* The value of name, created undefined when new. */
static value *intern(imp *im, const char *name)
{
    value *v = find(im, name);
    if (v)
        return v;
    if ((im->n_vals + 1) * 2 > im->n_slots && grow_slots(im))
        return NULL;
    if (im->n_vals == im->cap_vals) {
        size_t cap = im->cap_vals ? im->cap_vals * 2 : 256;
        value *nv = realloc(im->vals, cap * sizeof *nv);
        if (!nv) {
            bs_fail(im->err, "out of memory");
            return NULL;
        }
        im->vals = nv;
        im->cap_vals = cap;
    }
    v = &im->vals[im->n_vals];
    *v = (value){.name = name, .producer = -1, .onnx_node = -1};
    size_t k = hash_name(name) & (im->n_slots - 1);
    while (im->slots[k] >= 0)
        k = (k + 1) & (im->n_slots - 1);
    im->slots[k] = (int)im->n_vals++;
    return v;
}

/* A copy of s that lives as long as the import. */
static const char *keep_name(imp *im, const char *s)
{
    if (im->n_names == im->cap_names) {
        int cap = im->cap_names ? im->cap_names * 2 : 16;
        char **n = realloc(im->names, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        im->names = n;
        im->cap_names = cap;
    }
    char *d = strdup(s);
    if (d)
        im->names[im->n_names++] = d;
    return d;
}

/* --- constants ------------------------------------------------------------- */

static void cval_free(cval *c)
{
    free(c->f);
    free(c->i);
    c->f = NULL;
    c->i = NULL;
}

/* The elements of a constant of these dims into *n; refuses negative dims
 * and sizes past im->max_elems. */
static int cval_elems(imp *im, int rank, const int64_t *dims, size_t *n)
{
    char s[96];
    size_t cap = im->max_elems ? im->max_elems : MAX_ELEMS;
    if (rank < 0 || rank > MAX_FULL_RANK)
        return nfail(im, "a constant of rank %d (at most %d)", rank, MAX_FULL_RANK);
    *n = 1;
    for (int d = 0; d < rank; d++) {
        if (dims[d] < 0 || (dims[d] > 0 && *n > cap / (uint64_t)dims[d])) {
            dims_str(s, sizeof s, dims, rank);
            return nfail(im, "a constant of shape %s is larger than %zu elements", s, cap);
        }
        *n *= (size_t)dims[d];
    }
    return 0;
}

/* Allocates c's data for its dims (cval_elems). */
static int cval_alloc(imp *im, cval *c, int is_int, int rank, const int64_t *dims)
{
    size_t n;
    if (cval_elems(im, rank, dims, &n))
        return -1;
    c->is_int = is_int;
    c->rank = rank;
    if (rank)
        memcpy(c->dims, dims, (size_t)rank * sizeof *dims);
    c->n = n;
    if (is_int)
        c->i = calloc(n ? n : 1, sizeof *c->i);
    else
        c->f = calloc(n ? n : 1, sizeof *c->f);
    if (!c->i && !c->f)
        return nfail(im, "out of memory for a constant of %zu elements", n);
    return 0;
}

static double cget(const cval *c, size_t k)
{
    return c->is_int ? (double)c->i[k] : (double)c->f[k];
}

static const char *dtype_name(int t)
{
    static const char *const names[] = {"undefined", "float", "uint8", "int8", "uint16",
                                        "int16", "int32", "int64", "string", "bool",
                                        "float16", "double", "uint32", "uint64",
                                        "complex64", "complex128", "bfloat16"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

static size_t dtype_size(int t)
{
    return t == T_FLOAT || t == T_INT32 ? 4 : t == T_INT64 ? 8 : t == T_BOOL ? 1 : 0;
}

/* Decodes n little-endian elements of type t from p into c. */
static void decode_raw(cval *c, int t, const uint8_t *p)
{
    for (size_t k = 0; k < c->n; k++) {
        if (t == T_FLOAT) {
            uint32_t u = (uint32_t)p[4 * k] | (uint32_t)p[4 * k + 1] << 8 |
                         (uint32_t)p[4 * k + 2] << 16 | (uint32_t)p[4 * k + 3] << 24;
            memcpy(&c->f[k], &u, 4);
        } else if (t == T_INT32) {
            uint32_t u = (uint32_t)p[4 * k] | (uint32_t)p[4 * k + 1] << 8 |
                         (uint32_t)p[4 * k + 2] << 16 | (uint32_t)p[4 * k + 3] << 24;
            c->i[k] = (int32_t)u;
        } else if (t == T_INT64) {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--)
                u = u << 8 | p[8 * k + (size_t)b];
            c->i[k] = (int64_t)u;
        } else {
            c->i[k] = p[k] != 0;
        }
    }
}

/* Whether a relative location stays inside its folder: no absolute path,
 * no ".." component. */
static int location_inside(const char *loc)
{
    if (!*loc || loc[0] == '/')
        return 0;
    for (const char *p = loc; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += len + (e != NULL);
    }
    return 1;
}

/* Reads a tensor's external data into c (allocated here): the location
 * relative to the model's folder, offset and length checked against the
 * file. */
static int read_external(imp *im, const Onnx__TensorProto *tp, cval *c, int t,
                         const char *what)
{
    const char *loc = NULL;
    long long offset = 0, length = -1;
    if (!im->dir)
        return nfail(im, "%s '%.48s' has external data, which a model read from "
                     "memory cannot have", what, tp->name);
    for (size_t k = 0; k < tp->n_external_data; k++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[k];
        char *end;
        if (!e->key || !e->value)
            continue;
        if (!strcmp(e->key, "location")) {
            loc = e->value;
        } else if (!strcmp(e->key, "offset") || !strcmp(e->key, "length")) {
            errno = 0;
            long long v = strtoll(e->value, &end, 10);
            if (errno || end == e->value || *end || v < 0)
                return nfail(im, "%s '%.48s': external data %s '%.32s' is not a "
                             "byte count", what, tp->name, e->key, e->value);
            *(!strcmp(e->key, "offset") ? &offset : &length) = v;
        } else if (strcmp(e->key, "checksum")) {
            return nfail(im, "%s '%.48s': external data key '%.32s' is not supported",
                         what, tp->name, e->key);
        }
    }
    if (!loc)
        return nfail(im, "%s '%.48s' has external data without a location", what,
                     tp->name);
    if (!location_inside(loc))
        return nfail(im, "%s '%.48s': external data location '%.64s' leaves the "
                     "model's folder", what, tp->name, loc);
    size_t n;
    if (cval_elems(im, (int)tp->n_dims, tp->dims, &n))
        return -1;
    size_t need = n * dtype_size(t);
    if (length >= 0 && (unsigned long long)length != need)
        return nfail(im, "%s '%.48s': external data length %lld is not the %zu "
                     "bytes of its shape", what, tp->name, length, need);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", im->dir, loc) >= sizeof path)
        return nfail(im, "%s '%.48s': external data path too long", what, tp->name);
    /* A symbolic link may still lead out: compare the resolved folders. */
    char rdir[PATH_MAX], rfile[PATH_MAX];
    if (!realpath(im->dir, rdir) || !realpath(path, rfile))
        return nfail(im, "%s '%.48s': cannot open external data '%.64s': %s", what,
                     tp->name, loc, strerror(errno));
    size_t dl = strlen(rdir);
    if (strncmp(rfile, rdir, dl) || (rfile[dl] != '/' && dl > 1))
        return nfail(im, "%s '%.48s': external data location '%.64s' leaves the "
                     "model's folder", what, tp->name, loc);
    int fd = open(rfile, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return nfail(im, "%s '%.48s': external data '%.64s' is not a readable file",
                     what, tp->name, loc);
    }
    if ((unsigned long long)offset > (unsigned long long)st.st_size ||
        need > (unsigned long long)st.st_size - (unsigned long long)offset) {
        close(fd);
        return nfail(im, "%s '%.48s': external data at offset %lld + %zu bytes runs "
                     "past the end of '%.64s' (%lld bytes)", what, tp->name, offset,
                     need, loc, (long long)st.st_size);
    }
    uint8_t *buf = malloc(need ? need : 1);
    ssize_t got = buf ? pread(fd, buf, need, (off_t)offset) : -1;
    close(fd);
    if (got < 0 || (size_t)got != need) {
        free(buf);
        return nfail(im, "%s '%.48s': cannot read external data '%.64s'", what,
                     tp->name, loc);
    }
    if (cval_alloc(im, c, t != T_FLOAT, (int)tp->n_dims, tp->dims)) {
        free(buf);
        return -1;
    }
    decode_raw(c, t, buf);
    free(buf);
    return 0;
}

/* A TensorProto as a constant: float32, or int32/int64/bool as integers. */
static int tensor_to_cval(imp *im, const Onnx__TensorProto *tp, cval *c, const char *what)
{
    int t = tp->has_data_type ? tp->data_type : 0;
    const char *name = tp->name ? tp->name : "";
    if (!dtype_size(t))
        return nfail(im, "%s '%.48s' has data type %s, not float32, int32, int64 "
                     "or bool", what, name, dtype_name(t));
    if ((int)tp->n_dims > MAX_FULL_RANK)
        return nfail(im, "%s '%.48s' has rank %zu (at most %d)", what, name,
                     tp->n_dims, MAX_FULL_RANK);
    if (tp->segment)
        return nfail(im, "%s '%.48s' is segmented", what, name);
    /* The data is checked against the shape before the shape is allocated:
     * a few bytes may not claim a large tensor. */
    size_t n;
    if (cval_elems(im, (int)tp->n_dims, tp->dims, &n))
        return -1;
    int external = tp->has_data_location &&
                   tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    size_t typed = t == T_FLOAT ? tp->n_float_data : t == T_INT64 ? tp->n_int64_data
                                                                  : tp->n_int32_data;
    if (!external && tp->has_raw_data && tp->raw_data.len != n * dtype_size(t))
        return nfail(im, "%s '%.48s' holds %zu bytes of data, its shape needs %zu",
                     what, name, tp->raw_data.len, n * dtype_size(t));
    if (!external && !tp->has_raw_data && typed != n)
        return nfail(im, "%s '%.48s' holds %zu values, its shape needs %zu", what,
                     name, typed, n);
    if (external)
        return read_external(im, tp, c, t, what);
    if (cval_alloc(im, c, t != T_FLOAT, (int)tp->n_dims, tp->dims))
        return -1;
    if (tp->has_raw_data) {
        decode_raw(c, t, tp->raw_data.data);
        return 0;
    }
    for (size_t k = 0; k < c->n; k++) {
        if (t == T_FLOAT)
            c->f[k] = tp->float_data[k];
        else if (t == T_INT64)
            c->i[k] = tp->int64_data[k];
        else
            c->i[k] = t == T_BOOL ? tp->int32_data[k] != 0 : tp->int32_data[k];
    }
    return 0;
}

/* --- graph tensors and nodes ----------------------------------------------- */

static int new_tensor(imp *im, int rank, const int *dims, const char *name)
{
    if (im->n_tensors >= BS_MAX_TENSORS)
        return nfail(im, "the graph needs more than %d tensors", BS_MAX_TENSORS);
    if (rank < 1 || rank > BS_MAX_RANK)
        return nfail(im, "a tensor of %d dimensions per sample (1 to %d are "
                     "supported)", rank, BS_MAX_RANK);
    bs_tensor *t = &im->tensors[im->n_tensors];
    *t = (bs_tensor){.rank = rank, .size = 1};
    for (int d = 0; d < rank; d++) {
        if (dims[d] <= 0 || dims[d] > MAX_DIM || t->size > MAX_ELEMS / (size_t)dims[d])
            return nfail(im, "a tensor with dimension %d of size %d", d, dims[d]);
        t->dims[d] = dims[d];
        t->size *= (size_t)dims[d];
    }
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    return im->n_tensors++;
}

/* A constant tensor of the graph with one sample's dims from c's data. */
static int const_tensor(imp *im, const cval *c, int rank, const int *dims)
{
    int t = new_tensor(im, rank, dims, "");
    if (t < 0)
        return -1;
    im->tensors[t].constant = 1;
    if (!(im->tdata[t] = malloc(c->n * sizeof(float) + 1)))
        return nfail(im, "out of memory");
    for (size_t k = 0; k < c->n; k++)
        im->tdata[t][k] = (float)cget(c, k);
    return t;
}

static void define_tensor(value *v, int t, int producer)
{
    v->kind = V_TENSOR;
    v->t = t;
    v->producer = producer;
}

/* Appends node l writing a new tensor of one sample's shape dims, bound to
 * ONNX name out. Returns the tensor, or -1. */
static int emit(imp *im, bs_layer *l, int rank, const int *dims, const char *out)
{
    if (im->n_nodes >= BS_MAX_NODES)
        return nfail(im, "the graph needs more than %d nodes", BS_MAX_NODES);
    value *v = intern(im, out);
    if (!v)
        return -1;
    if (v->kind != V_UNDEF)
        return nfail(im, "output '%.48s' is written twice", out);
    int t = new_tensor(im, rank, dims, out);
    if (t < 0)
        return -1;
    l->out = t;
    snprintf(l->name, sizeof l->name, "%s", im->cur ? node_name(im->cur) : out);
    im->nodes[im->n_nodes] = *l;
    define_tensor(v, t, im->n_nodes);
    return im->n_nodes++, t;
}

static const bs_tensor *tensor_of(imp *im, const value *v)
{
    return &im->tensors[v->t];
}

/* --- attributes ------------------------------------------------------------ */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && !strcmp(n->attribute[k]->name, name))
            return n->attribute[k];
    return NULL;
}

/* Refuses attributes not in allowed (NULL-terminated). */
static int check_attrs(imp *im, const char *const *allowed)
{
    const Onnx__NodeProto *n = im->cur;
    for (size_t k = 0; k < n->n_attribute; k++) {
        const char *name = n->attribute[k]->name ? n->attribute[k]->name : "";
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, name);
        if (!ok)
            return nfail(im, "attribute %.48s is not supported", name);
    }
    return 0;
}

static int attr_int(imp *im, const char *name, int64_t def, int64_t *out)
{
    const Onnx__AttributeProto *a = attr(im->cur, name);
    *out = def;
    if (!a)
        return 0;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
        return nfail(im, "attribute %s is not an integer", name);
    *out = a->i;
    return 0;
}

static int attr_float(imp *im, const char *name, float def, float *out)
{
    const Onnx__AttributeProto *a = attr(im->cur, name);
    *out = def;
    if (!a)
        return 0;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
        return nfail(im, "attribute %s is not a float", name);
    *out = a->f;
    return 0;
}

/* Copies an ints attribute into v (room for max); *count is -1 when absent. */
static int attr_ints(imp *im, const char *name, int64_t *v, int max, int *count)
{
    const Onnx__AttributeProto *a = attr(im->cur, name);
    *count = -1;
    if (!a)
        return 0;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
        return nfail(im, "attribute %s is not a list of integers", name);
    if (a->n_ints > (size_t)max)
        return nfail(im, "attribute %s has %zu values (at most %d)", name, a->n_ints, max);
    if (a->n_ints)
        memcpy(v, a->ints, a->n_ints * sizeof *v);
    *count = (int)a->n_ints;
    return 0;
}

/* A string attribute into buf ("" when absent). */
static int attr_str(imp *im, const char *name, char *buf, size_t size)
{
    const Onnx__AttributeProto *a = attr(im->cur, name);
    buf[0] = 0;
    if (!a)
        return 0;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
        return nfail(im, "attribute %s is not a string", name);
    size_t len = a->s.len < size - 1 ? a->s.len : size - 1;
    if (len)
        memcpy(buf, a->s.data, len);
    buf[len] = 0;
    return 0;
}

/* --- inputs of a node ------------------------------------------------------ */

static int n_inputs(const Onnx__NodeProto *n)
{
    int k = (int)n->n_input;
    while (k > 0 && !*n->input[k - 1])
        k--;
    return k;
}

/* Input k of the node being imported, NULL when absent ("" or past the end). */
static value *input(imp *im, int k)
{
    if (k >= (int)im->cur->n_input || !*im->cur->input[k])
        return NULL;
    return find(im, im->cur->input[k]);
}

static int need_inputs(imp *im, int lo, int hi)
{
    int n = n_inputs(im->cur);
    if (n < lo || n > hi)
        return nfail(im, "has %d inputs, expected %d to %d", n, lo, hi);
    for (int k = 0; k < lo; k++)
        if (!input(im, k))
            return nfail(im, "input %d is empty", k);
    return 0;
}

static const cval *const_input(imp *im, int k, const char *what)
{
    value *v = input(im, k);
    if (!v || v->kind != V_CONST) {
        nfail(im, "input %d (%s) must be a constant", k, what);
        return NULL;
    }
    return &v->c;
}

static value *tensor_input(imp *im, int k)
{
    value *v = input(im, k);
    if (!v || v->kind != V_TENSOR) {
        nfail(im, "input %d must be computed from the model's input", k);
        return NULL;
    }
    return v;
}

/* A tensor's dims with the batch first, as ONNX sees them. */
static int full_dims(imp *im, const value *v, int64_t *dims)
{
    if (v->kind == V_CONST) {
        memcpy(dims, v->c.dims, (size_t)v->c.rank * sizeof *dims);
        return v->c.rank;
    }
    const bs_tensor *t = tensor_of(im, v);
    dims[0] = im->batch;
    for (int d = 0; d < t->rank; d++)
        dims[d + 1] = t->dims[d];
    return t->rank + 1;
}

/* An ONNX axis of a tensor of full rank r, negative counting from the end. */
static int norm_axis(imp *im, int64_t axis, int r, int *out)
{
    *out = 0;
    if (axis < -r || axis >= r)
        return nfail(im, "axis %lld is out of range for rank %d", (long long)axis, r);
    *out = (int)(axis < 0 ? axis + r : axis);
    return 0;
}

/* A constant used by a node beside a tensor of full rank r: its dims for one
 * sample. Broadcasting aligns trailing dims, so a constant of lower rank is
 * the same per sample; one of rank r must be 1 along the batch. */
static int const_operand(imp *im, const cval *c, int r, int *rank, int *dims)
{
    char s[96];
    if (c->rank > r || (c->rank == r && c->dims[0] != 1)) {
        dims_str(s, sizeof s, c->dims, c->rank);
        return nfail(im, "constant of shape %s differs along the batch dimension",
                     s);
    }
    int skip = c->rank == r ? 1 : 0;
    *rank = c->rank - skip;
    for (int d = 0; d < *rank; d++) {
        if (c->dims[d + skip] > MAX_DIM || c->dims[d + skip] <= 0)
            return nfail(im, "constant has a dimension of size %lld",
                         (long long)c->dims[d + skip]);
        dims[d] = (int)c->dims[d + skip];
    }
    if (*rank == 0) {
        *rank = 1;
        dims[0] = 1;
    }
    return 0;
}

/* --- shape arithmetic on constants ----------------------------------------- */

static int fold_constant_node(imp *im, const char *op, const char *out);

static value *define_const(imp *im, const char *name)
{
    value *v = intern(im, name);
    if (!v)
        return NULL;
    if (v->kind != V_UNDEF) {
        nfail(im, "output '%.48s' is written twice", name);
        return NULL;
    }
    v->kind = V_CONST;
    return v;
}

/* Strides of dims in elements. */
static void strides_of(const int64_t *dims, int rank, int64_t *st)
{
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= dims[d];
    }
}

/* Multi-index increment; returns 0 after the last. */
static int next_index(int64_t *idx, const int64_t *dims, int rank)
{
    for (int d = rank - 1; d >= 0; d--) {
        if (++idx[d] < dims[d])
            return 1;
        idx[d] = 0;
    }
    return 0;
}

static void cset(cval *c, size_t k, double x)
{
    if (c->is_int)
        c->i[k] = (int64_t)x;
    else
        c->f[k] = (float)x;
}

static int fold_binary(imp *im, const char *op, const cval *a, const cval *b, cval *o)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    int64_t dims[MAX_FULL_RANK], da[MAX_FULL_RANK], db[MAX_FULL_RANK];
    for (int d = 0; d < r; d++) {
        int ka = d - (r - a->rank), kb = d - (r - b->rank);
        da[d] = ka >= 0 ? a->dims[ka] : 1;
        db[d] = kb >= 0 ? b->dims[kb] : 1;
        if (da[d] != db[d] && da[d] != 1 && db[d] != 1)
            return nfail(im, "shapes do not broadcast");
        dims[d] = da[d] == 1 ? db[d] : da[d];
    }
    if (cval_alloc(im, o, a->is_int && b->is_int, r, dims))
        return -1;
    int64_t sa[MAX_FULL_RANK], sb[MAX_FULL_RANK], idx[MAX_FULL_RANK] = {0};
    strides_of(da, r, sa);
    strides_of(db, r, sb);
    for (size_t k = 0; k < o->n; k++) {
        size_t ia = 0, ib = 0;
        for (int d = 0; d < r; d++) {
            ia += (size_t)((da[d] == 1 ? 0 : idx[d]) * sa[d]);
            ib += (size_t)((db[d] == 1 ? 0 : idx[d]) * sb[d]);
        }
        double x = cget(a, ia), y = cget(b, ib), z;
        if (!strcmp(op, "Add"))
            z = x + y;
        else if (!strcmp(op, "Sub"))
            z = x - y;
        else if (!strcmp(op, "Mul"))
            z = x * y;
        else if (o->is_int) {
            if (y == 0)
                return nfail(im, "integer division by zero");
            z = (double)(a->i[ia] / b->i[ib]);
        } else {
            z = x / y;
        }
        cset(o, k, z);
        next_index(idx, dims, r);
    }
    return 0;
}

/* Integers of a constant input (1-D or scalar) into v; count into *n. */
static int const_ints(imp *im, int k, const char *what, int64_t *v, int max, int *n)
{
    const cval *c = const_input(im, k, what);
    if (!c)
        return -1;
    if (!c->is_int || c->rank > 1)
        return nfail(im, "input %d (%s) must be integers of rank 0 or 1", k, what);
    if (c->n > (size_t)max)
        return nfail(im, "input %d (%s) has %zu values (at most %d)", k, what, c->n, max);
    memcpy(v, c->i, c->n * sizeof *v);
    *n = (int)c->n;
    return 0;
}

/* The axes of Squeeze and Unsqueeze: an attribute before opset 13, an
 * input from it. */
static int axes_of(imp *im, int64_t *axes, int *n)
{
    if (im->opset < 13) {
        if (check_attrs(im, (const char *const[]){"axes", NULL}) ||
            attr_ints(im, "axes", axes, MAX_FULL_RANK, n))
            return -1;
        return 0;
    }
    if (check_attrs(im, (const char *const[]){NULL}))
        return -1;
    *n = -1;
    return input(im, 1) ? const_ints(im, 1, "axes", axes, MAX_FULL_RANK, n) : 0;
}

/* The dims after Squeeze or Unsqueeze of a tensor of full dims. */
static int squeeze_dims(imp *im, int unsq, const int64_t *dims, int r, int64_t *out, int *ro)
{
    int64_t axes[MAX_FULL_RANK];
    int n, flags[MAX_FULL_RANK + 1] = {0};
    if (axes_of(im, axes, &n))
        return -1;
    int rr = unsq ? r + (n > 0 ? n : 0) : r;
    if (unsq && n <= 0)
        return nfail(im, "Unsqueeze needs axes");
    if (rr > MAX_FULL_RANK)
        return nfail(im, "result of rank %d", rr);
    for (int k = 0; k < n; k++) {
        int a;
        if (norm_axis(im, axes[k], rr, &a))
            return -1;
        if (flags[a]++)
            return nfail(im, "axis %d repeats", a);
    }
    *ro = 0;
    if (unsq) {
        for (int d = 0, s = 0; d < rr; d++)
            out[(*ro)++] = flags[d] ? 1 : dims[s++];
        return 0;
    }
    for (int d = 0; d < r; d++) {
        int drop = n < 0 ? dims[d] == 1 : flags[d];
        if (drop && dims[d] == -1)
            return nfail(im, "the batch (axis 0) cannot be squeezed");
        if (drop && dims[d] != 1)
            return nfail(im, "axis %d has size %lld, not 1", d, (long long)dims[d]);
        if (!drop)
            out[(*ro)++] = dims[d];
    }
    return 0;
}

static int cval_copy(imp *im, const cval *a, cval *o, int rank, const int64_t *dims)
{
    if (cval_alloc(im, o, a->is_int, rank, dims))
        return -1;
    if (o->n != a->n)
        return nfail(im, "a reshape from %zu to %zu elements", a->n, o->n);
    if (a->is_int)
        memcpy(o->i, a->i, a->n * sizeof *o->i);
    else
        memcpy(o->f, a->f, a->n * sizeof *o->f);
    return 0;
}

static int fold_slice(imp *im, const cval *a, cval *o)
{
    int64_t st[MAX_FULL_RANK], en[MAX_FULL_RANK], ax[MAX_FULL_RANK], sp[MAX_FULL_RANK];
    int ns, ne, na = -1, np = -1;
    if (im->opset < 10) {
        if (check_attrs(im, (const char *const[]){"starts", "ends", "axes", NULL}) ||
            attr_ints(im, "starts", st, MAX_FULL_RANK, &ns) ||
            attr_ints(im, "ends", en, MAX_FULL_RANK, &ne) ||
            attr_ints(im, "axes", ax, MAX_FULL_RANK, &na))
            return -1;
    } else if (check_attrs(im, (const char *const[]){NULL}) ||
               const_ints(im, 1, "starts", st, MAX_FULL_RANK, &ns) ||
               const_ints(im, 2, "ends", en, MAX_FULL_RANK, &ne) ||
               (input(im, 3) && const_ints(im, 3, "axes", ax, MAX_FULL_RANK, &na)) ||
               (input(im, 4) && const_ints(im, 4, "steps", sp, MAX_FULL_RANK, &np))) {
        return -1;
    }
    if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (np >= 0 && np != ns))
        return nfail(im, "starts, ends, axes and steps differ in length");
    int r = a->rank;
    int64_t b[MAX_FULL_RANK], step[MAX_FULL_RANK], dims[MAX_FULL_RANK];
    for (int d = 0; d < r; d++) {
        b[d] = 0;
        step[d] = 1;
        dims[d] = a->dims[d];
    }
    for (int k = 0; k < ns; k++) {
        int d;
        if (norm_axis(im, na >= 0 ? ax[k] : k, r, &d))
            return -1;
        int64_t s = np >= 0 ? sp[k] : 1, n = a->dims[d];
        if (s == 0)
            return nfail(im, "a step of 0");
        int64_t lo = st[k] < 0 ? st[k] + n : st[k], hi = en[k] < 0 ? en[k] + n : en[k];
        if (s > 0) {
            lo = lo < 0 ? 0 : lo > n ? n : lo;
            hi = hi < 0 ? 0 : hi > n ? n : hi;
            dims[d] = hi > lo ? (hi - lo + s - 1) / s : 0;
        } else {
            lo = lo < 0 ? -1 : lo > n - 1 ? n - 1 : lo;
            hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
            dims[d] = lo > hi ? (lo - hi - s - 1) / -s : 0;
        }
        b[d] = lo;
        step[d] = s;
    }
    if (cval_alloc(im, o, a->is_int, r, dims))
        return -1;
    int64_t sa[MAX_FULL_RANK], idx[MAX_FULL_RANK] = {0};
    strides_of(a->dims, r, sa);
    for (size_t k = 0; k < o->n; k++) {
        size_t ia = 0;
        for (int d = 0; d < r; d++)
            ia += (size_t)((b[d] + idx[d] * step[d]) * sa[d]);
        cset(o, k, cget(a, ia));
        next_index(idx, dims, r);
    }
    return 0;
}

static int fold_gather(imp *im, const cval *a, const cval *ix, cval *o)
{
    int64_t axis;
    int ax;
    if (check_attrs(im, (const char *const[]){"axis", NULL}) ||
        attr_int(im, "axis", 0, &axis) || norm_axis(im, axis, a->rank, &ax))
        return -1;
    if (!ix->is_int)
        return nfail(im, "indices must be integers");
    int r = a->rank - 1 + ix->rank;
    if (r > MAX_FULL_RANK)
        return nfail(im, "result of rank %d", r);
    int64_t dims[MAX_FULL_RANK];
    int k = 0;
    for (int d = 0; d < ax; d++)
        dims[k++] = a->dims[d];
    for (int d = 0; d < ix->rank; d++)
        dims[k++] = ix->dims[d];
    for (int d = ax + 1; d < a->rank; d++)
        dims[k++] = a->dims[d];
    if (cval_alloc(im, o, a->is_int, r, dims))
        return -1;
    size_t outer = 1, inner = 1, n = (size_t)a->dims[ax];
    for (int d = 0; d < ax; d++)
        outer *= (size_t)a->dims[d];
    for (int d = ax + 1; d < a->rank; d++)
        inner *= (size_t)a->dims[d];
    size_t q = 0;
    for (size_t u = 0; u < outer; u++)
        for (size_t j = 0; j < ix->n; j++) {
            int64_t i = ix->i[j] < 0 ? ix->i[j] + (int64_t)n : ix->i[j];
            if (i < 0 || (size_t)i >= n)
                return nfail(im, "index %lld is out of range for %zu", (long long)ix->i[j], n);
            for (size_t w = 0; w < inner; w++)
                cset(o, q++, cget(a, (u * n + (size_t)i) * inner + w));
        }
    return 0;
}

static int fold_concat(imp *im, cval *o)
{
    int n = n_inputs(im->cur), ax;
    int64_t axis;
    if (check_attrs(im, (const char *const[]){"axis", NULL}) ||
        attr_int(im, "axis", 0, &axis))
        return -1;
    const cval *first = const_input(im, 0, "data");
    if (!first || norm_axis(im, axis, first->rank, &ax))
        return -1;
    int64_t dims[MAX_FULL_RANK];
    memcpy(dims, first->dims, sizeof dims);
    dims[ax] = 0;
    int is_int = 1;
    for (int k = 0; k < n; k++) {
        const cval *c = const_input(im, k, "data");
        if (!c)
            return -1;
        if (c->rank != first->rank)
            return nfail(im, "inputs differ in rank");
        for (int d = 0; d < c->rank; d++)
            if (d != ax && c->dims[d] != first->dims[d])
                return nfail(im, "inputs differ in dimension %d", d);
        dims[ax] += c->dims[ax];
        is_int &= c->is_int;
    }
    if (cval_alloc(im, o, is_int, first->rank, dims))
        return -1;
    size_t outer = 1, q = 0;
    for (int d = 0; d < ax; d++)
        outer *= (size_t)dims[d];
    for (size_t u = 0; u < outer; u++)
        for (int k = 0; k < n; k++) {
            const cval *c = &input(im, k)->c;
            size_t chunk = outer ? c->n / outer : 0;
            for (size_t w = 0; w < chunk; w++)
                cset(o, q++, cget(c, u * chunk + w));
        }
    return 0;
}

/* Evaluates a node whose inputs are all constants. Returns 1 when op is not
 * one evaluated at load, 0 when done, -1 on a refusal. */
static int fold_constant_op(imp *im, const char *op, const char *out)
{
    const Onnx__NodeProto *n = im->cur;
    cval o = {0};
    int rc = 0;
    if (!strcmp(op, "Constant")) {
        const Onnx__AttributeProto *a = n->n_attribute == 1 ? n->attribute[0] : NULL;
        const char *an = a && a->name ? a->name : "";
        if (!a)
            return nfail(im, "needs exactly one attribute");
        if (!strcmp(an, "value") && a->t) {
            rc = tensor_to_cval(im, a->t, &o, "value");
        } else if (!strcmp(an, "value_float") || !strcmp(an, "value_int")) {
            int is_int = an[6] == 'i';
            rc = cval_alloc(im, &o, is_int, 0, NULL);
            if (!rc)
                cset(&o, 0, is_int ? (double)a->i : (double)a->f);
        } else if (!strcmp(an, "value_floats") || !strcmp(an, "value_ints")) {
            int is_int = an[6] == 'i';
            int64_t d = is_int ? (int64_t)a->n_ints : (int64_t)a->n_floats;
            rc = cval_alloc(im, &o, is_int, 1, &d);
            for (size_t k = 0; !rc && k < o.n; k++)
                cset(&o, k, is_int ? (double)a->ints[k] : (double)a->floats[k]);
        } else {
            return nfail(im, "attribute %.48s is not supported", an);
        }
    } else if (!strcmp(op, "Shape")) {
        int64_t dims[MAX_FULL_RANK], start = 0, end, r;
        value *v = input(im, 0);
        if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){"start", "end", NULL}))
            return -1;
        r = full_dims(im, v, dims);
        if (attr_int(im, "start", 0, &start) || attr_int(im, "end", r, &end))
            return -1;
        start = start < 0 ? start + r : start;
        end = end < 0 ? end + r : end;
        start = start < 0 ? 0 : start > r ? r : start;
        end = end < start ? start : end > r ? r : end;
        int64_t len = end - start;
        rc = cval_alloc(im, &o, 1, 1, &len);
        for (int64_t k = 0; !rc && k < len; k++)
            o.i[k] = dims[start + k];
    } else if (!strcmp(op, "ConstantOfShape")) {
        int64_t dims[MAX_FULL_RANK];
        int nd;
        const Onnx__AttributeProto *a = attr(n, "value");
        cval fill = {0};
        if (check_attrs(im, (const char *const[]){"value", NULL}) ||
            const_ints(im, 0, "shape", dims, MAX_FULL_RANK, &nd))
            return -1;
        if (a && (!a->t || tensor_to_cval(im, a->t, &fill, "value")))
            return a && !a->t ? nfail(im, "value is not a tensor") : -1;
        if (a && fill.n != 1) {
            cval_free(&fill);
            return nfail(im, "value must hold one element");
        }
        rc = cval_alloc(im, &o, a ? fill.is_int : 0, nd, dims);
        for (size_t k = 0; !rc && k < o.n; k++)
            cset(&o, k, a ? cget(&fill, 0) : 0.0);
        cval_free(&fill);
    } else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") ||
               !strcmp(op, "Div")) {
        const cval *a = const_input(im, 0, "A"), *b = const_input(im, 1, "B");
        if (!a || !b || need_inputs(im, 2, 2) ||
            check_attrs(im, (const char *const[]){NULL}))
            return -1;
        rc = fold_binary(im, op, a, b, &o);
    } else if (!strcmp(op, "Cast")) {
        int64_t to;
        const cval *a = const_input(im, 0, "input");
        if (!a || check_attrs(im, (const char *const[]){"to", NULL}) ||
            attr_int(im, "to", 0, &to))
            return -1;
        if (to != T_FLOAT && to != T_INT32 && to != T_INT64 && to != T_BOOL)
            return nfail(im, "a cast to %s is not supported", dtype_name((int)to));
        rc = cval_alloc(im, &o, to != T_FLOAT, a->rank, a->dims);
        for (size_t k = 0; !rc && k < o.n; k++) {
            double x = cget(a, k);
            cset(&o, k, to == T_BOOL ? x != 0 : to == T_INT32 ? (double)(int32_t)x : x);
        }
    } else if (!strcmp(op, "Gather")) {
        const cval *a = const_input(im, 0, "data"), *ix = const_input(im, 1, "indices");
        if (!a || !ix)
            return -1;
        rc = fold_gather(im, a, ix, &o);
    } else if (!strcmp(op, "Slice")) {
        const cval *a = const_input(im, 0, "data");
        if (!a)
            return -1;
        rc = fold_slice(im, a, &o);
    } else if (!strcmp(op, "Concat")) {
        rc = fold_concat(im, &o);
    } else if (!strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze")) {
        const cval *a = const_input(im, 0, "data");
        int64_t dims[MAX_FULL_RANK];
        int r;
        if (!a || squeeze_dims(im, op[0] == 'U', a->dims, a->rank, dims, &r))
            return -1;
        rc = cval_copy(im, a, &o, r, dims);
    } else if (!strcmp(op, "Identity")) {
        const cval *a = const_input(im, 0, "input");
        if (!a || check_attrs(im, (const char *const[]){NULL}))
            return -1;
        rc = cval_copy(im, a, &o, a->rank, a->dims);
    } else {
        return 1;
    }
    if (rc) {
        cval_free(&o);
        return -1;
    }
    value *v = define_const(im, out);
    if (!v) {
        cval_free(&o);
        return -1;
    }
    v->c = o;
    return 0;
}

/* fold_constant_op with its result held to MAX_COMPUTED elements or its
 * largest input's count: a few bytes of shape arithmetic (ConstantOfShape,
 * broadcasting, Gather) may not make a large constant. A Constant's value
 * is in the file, checked against its shape. */
static int fold_constant_node(imp *im, const char *op, const char *out)
{
    size_t cap = MAX_COMPUTED;
    for (size_t k = 0; k < im->cur->n_input; k++) {
        const value *v = input(im, (int)k);
        if (v && v->kind == V_CONST && v->c.n > cap)
            cap = v->c.n;
    }
    im->max_elems = strcmp(op, "Constant") ? cap : MAX_ELEMS;
    int rc = fold_constant_op(im, op, out);
    im->max_elems = 0;
    return rc;
}

/* --- graph ops ------------------------------------------------------------- */

static int unary(imp *im, bs_layer *l, const value *x, const char *out)
{
    const bs_tensor *t = tensor_of(im, x);
    int dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    l->n_in = 1;
    l->in[0] = x->t;
    return emit(im, l, t->rank, dims, out) < 0 ? -1 : 0;
}

/* A reshape node: x seen as one sample's dims. */
static int reshape_to(imp *im, const value *x, int rank, const int *dims, const char *out)
{
    bs_layer l = {.kind = BS_RESHAPE, .shape_rank = rank};
    size_t n = 1;
    if (rank < 1 || rank > BS_MAX_RANK)
        return nfail(im, "a result of %d dimensions per sample (1 to %d are "
                     "supported)", rank, BS_MAX_RANK);
    for (int d = 0; d < rank; d++) {
        l.shape[d] = dims[d];
        n *= (size_t)(dims[d] > 0 ? dims[d] : 0);
    }
    if (n != tensor_of(im, x)->size)
        return nfail(im, "a reshape from %zu to %zu values per sample",
                     tensor_of(im, x)->size, n);
    l.n_in = 1;
    l.in[0] = x->t;
    return emit(im, &l, rank, dims, out) < 0 ? -1 : 0;
}

/* Full dims (batch first) after a reshape: the batch must stay first. */
static int reshape_full(imp *im, const value *x, const int64_t *dims, int r, const char *out)
{
    char s[96];
    int ps[BS_MAX_RANK];
    if (r < 1 || dims[0] != im->batch) {
        dims_str(s, sizeof s, dims, r);
        return nfail(im, "the result %s does not keep the batch (%d) first", s, im->batch);
    }
    if (r - 1 > BS_MAX_RANK || r < 2)
        return nfail(im, "a result of %d dimensions per sample (1 to %d are "
                     "supported)", r - 1, BS_MAX_RANK);
    for (int d = 1; d < r; d++) {
        if (dims[d] <= 0 || dims[d] > MAX_DIM)
            return nfail(im, "a result with dimension %d of size %lld", d, (long long)dims[d]);
        ps[d - 1] = (int)dims[d];
    }
    return reshape_to(im, x, r - 1, ps, out);
}

/* The target of Reshape: 0 copies the input's dim (unless allowzero), -1
 * takes what is left. */
static int reshape_target(imp *im, const int64_t *in, int ri, size_t total,
                          const int64_t *shape, int rs, int allowzero, int64_t *out)
{
    int infer = -1;
    size_t known = 1;
    for (int d = 0; d < rs; d++) {
        int64_t v = shape[d];
        if (v == 0 && !allowzero) {
            if (d >= ri)
                return nfail(im, "shape copies dimension %d the input does not have", d);
            v = in[d];
        }
        if (v == -1) {
            if (infer >= 0)
                return nfail(im, "shape has two -1");
            infer = d;
            out[d] = 1;
            continue;
        }
        if (v < 0 || v > (int64_t)MAX_ELEMS)
            return nfail(im, "shape has a dimension of %lld", (long long)v);
        out[d] = v;
        if (v && known > MAX_ELEMS / (size_t)v)
            return nfail(im, "shape is too large");
        known *= (size_t)v;
    }
    if (infer >= 0) {
        if (!known || total % known)
            return nfail(im, "-1 cannot be inferred for %zu values", total);
        out[infer] = (int64_t)(total / known);
    } else if (known != total) {
        return nfail(im, "shape holds %zu values, the input %zu", known, total);
    }
    return 0;
}

static int op_reshape(imp *im, const char *out)
{
    int64_t shape[MAX_FULL_RANK], in[MAX_FULL_RANK], dims[MAX_FULL_RANK], allowzero;
    int rs;
    if (need_inputs(im, 2, 2) ||
        check_attrs(im, (const char *const[]){"allowzero", NULL}) ||
        attr_int(im, "allowzero", 0, &allowzero) ||
        const_ints(im, 1, "shape", shape, MAX_FULL_RANK, &rs))
        return -1;
    value *x = input(im, 0);
    int ri = full_dims(im, x, in);
    size_t total = 1;
    for (int d = 0; d < ri; d++)
        total *= (size_t)in[d];
    if (reshape_target(im, in, ri, total, shape, rs, allowzero != 0, dims))
        return -1;
    if (x->kind == V_CONST) {
        cval o = {0};
        value *v;
        if (cval_copy(im, &x->c, &o, rs, dims) || !(v = define_const(im, out))) {
            cval_free(&o);
            return -1;
        }
        v->c = o;
        return 0;
    }
    return reshape_full(im, x, dims, rs, out);
}

static int op_flatten(imp *im, const char *out)
{
    int64_t axis, dims[MAX_FULL_RANK];
    int ax;
    if (need_inputs(im, 1, 1))
        return -1;
    value *x = input(im, 0);
    int r = full_dims(im, x, dims);
    if (check_attrs(im, (const char *const[]){"axis", NULL}) ||
        attr_int(im, "axis", 1, &axis) || norm_axis(im, axis, r + 1, &ax))
        return -1;
    int64_t two[2] = {1, 1};
    for (int d = 0; d < r; d++)
        two[d >= ax] *= dims[d];
    if (x->kind == V_CONST) {
        cval o = {0};
        value *v;
        if (cval_copy(im, &x->c, &o, 2, two) || !(v = define_const(im, out))) {
            cval_free(&o);
            return -1;
        }
        v->c = o;
        return 0;
    }
    if (ax != 1)
        return nfail(im, "axis %d would merge the batch with other dimensions "
                     "(only axis 1 is supported)", ax);
    return reshape_full(im, x, two, 2, out);
}

static int op_squeeze(imp *im, int unsq, const char *out)
{
    int64_t in[MAX_FULL_RANK], dims[MAX_FULL_RANK];
    int r;
    value *x = tensor_input(im, 0);
    if (!x)
        return -1;
    int ri = full_dims(im, x, in);
    in[0] = -1; /* the batch: never squeezed, never moved */
    if (squeeze_dims(im, unsq, in, ri, dims, &r))
        return -1;
    if (dims[0] != -1)
        return nfail(im, "the batch would not stay the first dimension");
    dims[0] = im->batch;
    return reshape_full(im, x, dims, r, out);
}

/* Broadcasts one sample's dims a and b into o (trailing dims aligned). */
static int broadcast(imp *im, const bs_tensor *a, int rb, const int *db, int *ro, int *o)
{
    int r = a->rank > rb ? a->rank : rb;
    *ro = 0;
    for (int d = 0; d < r; d++) {
        int ka = d - (r - a->rank), kb = d - (r - rb);
        int x = ka >= 0 ? a->dims[ka] : 1, y = kb >= 0 ? db[kb] : 1;
        if (x != y && x != 1 && y != 1)
            return nfail(im, "shapes do not broadcast (dimension %d: %d and %d)", d, x, y);
        o[d] = x == 1 ? y : x;
    }
    *ro = r;
    return 0;
}

/* Adds constant c into the bias of the linear node writing x, when x has no
 * other use and c adds one value per output feature. Returns 1 when folded. */
static int fold_bias(imp *im, const value *x, const cval *c, const char *out)
{
    if (x->producer < 0 || im->nodes[x->producer].kind != BS_LINEAR || x->consumers != 1)
        return 0;
    const bs_layer *l = &im->nodes[x->producer];
    int r = tensor_of(im, x)->rank + 1;
    if (c->rank > r || c->n != (size_t)l->out_features ||
        (c->rank && c->dims[c->rank - 1] != l->out_features))
        return 0;
    for (int k = 0; k < l->out_features; k++)
        im->bdata[x->producer][k] += (float)cget(c, (size_t)k);
    value *v = intern(im, out);
    if (!v)
        return -1;
    if (v->kind != V_UNDEF)
        return nfail(im, "output '%.48s' is written twice", out);
    define_tensor(v, x->t, x->producer);
    return 1;
}

static int op_binary(imp *im, bs_layer_kind kind, const char *out)
{
    if (need_inputs(im, 2, 2) || check_attrs(im, (const char *const[]){NULL}))
        return -1;
    value *a = input(im, 0), *b = input(im, 1);
    bs_layer l = {.kind = kind, .n_in = 2};
    int rb, db[BS_MAX_RANK], ro, dout[BS_MAX_RANK];
    if (a->kind == V_CONST && kind == BS_DIV)
        return nfail(im, "division of a constant by a tensor is not supported");
    if (a->kind == V_TENSOR && b->kind == V_TENSOR) {
        if (tensor_of(im, a)->rank != tensor_of(im, b)->rank)
            return nfail(im, "inputs differ in rank (broadcasting would move the batch)");
        if (kind == BS_DIV)
            return nfail(im, "division by a tensor is not supported (only by constants)");
        rb = tensor_of(im, b)->rank;
        memcpy(db, tensor_of(im, b)->dims, sizeof db);
        l.in[0] = a->t;
        l.in[1] = b->t;
    } else {
        int swap = a->kind == V_CONST;
        value *x = swap ? b : a, *c = swap ? a : b;
        if (kind == BS_ADD) {
            int f = fold_bias(im, x, &c->c, out);
            if (f)
                return f < 0 ? -1 : 0;
        }
        if (const_operand(im, &c->c, tensor_of(im, x)->rank + 1, &rb, db))
            return -1;
        int t = const_tensor(im, &c->c, rb, db);
        if (t < 0)
            return -1;
        l.in[swap] = x->t;
        l.in[!swap] = t;
        a = x;
    }
    if (broadcast(im, tensor_of(im, a), rb, db, &ro, dout))
        return -1;
    if (kind != BS_SUB && kind != BS_DIV && ro == tensor_of(im, a)->rank &&
        !memcmp(dout, tensor_of(im, a)->dims, (size_t)ro * sizeof *dout) && l.in[1] == a->t) {
        int s = l.in[0];
        l.in[0] = l.in[1];
        l.in[1] = s;
    }
    return emit(im, &l, ro, dout, out) < 0 ? -1 : 0;
}

/* A window (conv, pools) over (C,H,W): kernel kh x kw, strides, dilations,
 * pads and auto_pad from the node's attributes; ceil_mode's extra rows and
 * columns go into the bottom and right pads (*extra says whether any). */
typedef struct window {
    int kh, kw, sh, sw, dh, dw, pads[4], oh, ow, extra;
} window;

static int parse_window(imp *im, const bs_tensor *x, int kh, int kw, int ceil_mode,
                        window *w)
{
    int64_t v[4];
    int n;
    char ap[32];
    *w = (window){.kh = kh, .kw = kw, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    if (attr_ints(im, "kernel_shape", v, 4, &n))
        return -1;
    if (n >= 0 && (n != 2 || (kh && (v[0] != kh || v[1] != kw))))
        return nfail(im, "kernel_shape does not match a 2-D kernel of %dx%d", kh, kw);
    if (n == 2) {
        if (v[0] < 1 || v[0] > 1024 || v[1] < 1 || v[1] > 1024)
            return nfail(im, "kernel_shape (%lld,%lld) is out of range", (long long)v[0],
                         (long long)v[1]);
        w->kh = (int)v[0];
        w->kw = (int)v[1];
    }
    if (!w->kh)
        return nfail(im, "needs kernel_shape");
    if (attr_ints(im, "strides", v, 4, &n))
        return -1;
    if (n >= 0 && (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > 1024 || v[1] > 1024))
        return nfail(im, "strides must be two values from 1 to 1024");
    if (n == 2) {
        w->sh = (int)v[0];
        w->sw = (int)v[1];
    }
    if (attr_ints(im, "dilations", v, 4, &n))
        return -1;
    if (n >= 0 && (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > 1024 || v[1] > 1024))
        return nfail(im, "dilations must be two values from 1 to 1024");
    if (n == 2) {
        w->dh = (int)v[0];
        w->dw = (int)v[1];
    }
    if (attr_ints(im, "pads", v, 4, &n) || attr_str(im, "auto_pad", ap, sizeof ap))
        return -1;
    if (n >= 0 && n != 4)
        return nfail(im, "pads must be 4 values for a 2-D window");
    for (int k = 0; k < 4 && n == 4; k++) {
        if (v[k] < 0 || v[k] > 1024)
            return nfail(im, "pads must be from 0 to 1024");
        w->pads[k] = (int)v[k];
    }
    int H = x->dims[1], W = x->dims[2];
    int ekh = (w->kh - 1) * w->dh + 1, ekw = (w->kw - 1) * w->dw + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        int oh = (H + w->sh - 1) / w->sh, ow = (W + w->sw - 1) / w->sw;
        int th = (oh - 1) * w->sh + ekh - H, tw = (ow - 1) * w->sw + ekw - W;
        th = th < 0 ? 0 : th;
        tw = tw < 0 ? 0 : tw;
        int upper = ap[5] == 'U';
        w->pads[0] = upper ? th / 2 : th - th / 2;
        w->pads[2] = th - w->pads[0];
        w->pads[1] = upper ? tw / 2 : tw - tw / 2;
        w->pads[3] = tw - w->pads[1];
    } else if (!strcmp(ap, "VALID")) {
        memset(w->pads, 0, sizeof w->pads);
    } else if (*ap && strcmp(ap, "NOTSET")) {
        return nfail(im, "attribute auto_pad=%s is not supported", ap);
    }
    int ph = H + w->pads[0] + w->pads[2] - ekh, pw = W + w->pads[1] + w->pads[3] - ekw;
    if (ph < 0 || pw < 0)
        return nfail(im, "the window %dx%d is larger than the padded input %dx%d", ekh,
                     ekw, H + w->pads[0] + w->pads[2], W + w->pads[1] + w->pads[3]);
    w->oh = ph / w->sh + 1;
    w->ow = pw / w->sw + 1;
    if (ceil_mode) {
        int oh = (ph + w->sh - 1) / w->sh + 1, ow = (pw + w->sw - 1) / w->sw + 1;
        /* the last window must start inside the input or its begin pad */
        if ((oh - 1) * w->sh >= H + w->pads[0])
            oh--;
        if ((ow - 1) * w->sw >= W + w->pads[1])
            ow--;
        int eh = (oh - 1) * w->sh + ekh - (H + w->pads[0] + w->pads[2]);
        int ew = (ow - 1) * w->sw + ekw - (W + w->pads[1] + w->pads[3]);
        w->pads[2] += eh > 0 ? eh : 0;
        w->pads[3] += ew > 0 ? ew : 0;
        w->extra = eh > 0 || ew > 0;
        w->oh = oh;
        w->ow = ow;
    }
    return 0;
}

static void set_window(bs_layer *l, const window *w)
{
    l->kernel_h = w->kh;
    l->kernel_w = w->kw;
    l->stride_h = w->sh;
    l->stride_w = w->sw;
    l->dilation_h = w->dh;
    l->dilation_w = w->dw;
    memcpy(l->pads, w->pads, sizeof l->pads);
    l->kernel = w->kh;
    l->stride = w->sh;
    l->padding = w->pads[0];
}

static const bs_tensor *image_input(imp *im, value **x)
{
    *x = tensor_input(im, 0);
    if (!*x)
        return NULL;
    const bs_tensor *t = tensor_of(im, *x);
    if (t->rank != 3) {
        nfail(im, "needs a (N,C,H,W) input, got %d dimensions per sample "
              "(only 2-D windows are supported)", t->rank);
        return NULL;
    }
    return t;
}

/* Weights and zeroed biases of the node about to be emitted. */
static int alloc_params(imp *im, int node, size_t nw, size_t nb)
{
    if (node >= BS_MAX_NODES)
        return nfail(im, "the graph needs more than %d nodes", BS_MAX_NODES);
    if (!(im->wdata[node] = malloc(nw * sizeof(float))) ||
        !(im->bdata[node] = calloc(nb, sizeof(float))))
        return nfail(im, "out of memory");
    im->wsize[node] = nw;
    im->bsize[node] = nb;
    return 0;
}

static int op_conv(imp *im, const char *out)
{
    value *x;
    const bs_tensor *t;
    const cval *w, *b = NULL;
    int64_t group;
    window win;
    char s[96];
    if (need_inputs(im, 2, 3) ||
        check_attrs(im, (const char *const[]){"auto_pad", "dilations", "group",
                                              "kernel_shape", "pads", "strides", NULL}) ||
        !(t = image_input(im, &x)) || !(w = const_input(im, 1, "W")) ||
        (input(im, 2) && !(b = const_input(im, 2, "B"))) ||
        attr_int(im, "group", 1, &group))
        return -1;
    if (w->is_int || w->rank != 4) {
        dims_str(s, sizeof s, w->dims, w->rank);
        return nfail(im, "weights of shape %s are not float (OC,C/group,KH,KW)", s);
    }
    int C = t->dims[0];
    int64_t OC = w->dims[0];
    if (group < 1 || C % group || OC % group || w->dims[1] * group != C || OC < 1 ||
        OC > 65536 || w->dims[2] < 1 || w->dims[2] > 1024 || w->dims[3] < 1 ||
        w->dims[3] > 1024) {
        dims_str(s, sizeof s, w->dims, w->rank);
        return nfail(im, "weights of shape %s with group %lld do not fit %d input "
                     "channels", s, (long long)group, C);
    }
    if (b && (b->is_int || b->n != (size_t)OC))
        return nfail(im, "bias must be %lld floats", (long long)OC);
    if (parse_window(im, t, (int)w->dims[2], (int)w->dims[3], 0, &win))
        return -1;
    bs_layer l = {.kind = BS_CONV2D, .out_channels = (int)OC, .groups = (int)group,
                  .n_in = 1, .in = {x->t}};
    set_window(&l, &win);
    int node = im->n_nodes;
    int dims[3] = {(int)OC, win.oh, win.ow};
    if (alloc_params(im, node, w->n, (size_t)OC))
        return -1;
    memcpy(im->wdata[node], w->f, w->n * sizeof(float));
    for (int64_t k = 0; b && k < OC; k++)
        im->bdata[node][k] = b->f[k];
    return emit(im, &l, 3, dims, out) < 0 ? -1 : 0;
}

/* A linear node over x's last dimension: weights (N,K) as w[n*K+k] = the
 * weight from input k to output n, scaled by alpha; bias beta * c. */
static int linear(imp *im, const value *x, const cval *wm, int trans, float alpha,
                  const cval *c, float beta, const char *out)
{
    const bs_tensor *t = tensor_of(im, x);
    char s[96];
    if (wm->is_int || wm->rank != 2) {
        dims_str(s, sizeof s, wm->dims, wm->rank);
        return nfail(im, "weights of shape %s are not a float matrix", s);
    }
    int64_t K = trans ? wm->dims[1] : wm->dims[0], N = trans ? wm->dims[0] : wm->dims[1];
    if (K != t->dims[t->rank - 1] || N < 1 || N > 1000000) {
        dims_str(s, sizeof s, wm->dims, wm->rank);
        return nfail(im, "weights of shape %s do not fit %d input features", s,
                     t->dims[t->rank - 1]);
    }
    if (c && (c->is_int || (c->n != 1 && c->n != (size_t)N) ||
              (c->rank && c->dims[c->rank - 1] != N && c->n != 1)))
        return nfail(im, "bias C must be one value or %lld (per output feature)",
                     (long long)N);
    int node = im->n_nodes;
    if (alloc_params(im, node, wm->n, (size_t)N))
        return -1;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++)
            im->wdata[node][n * K + k] = alpha * wm->f[trans ? n * K + k : k * N + n];
        if (c)
            im->bdata[node][n] = beta * c->f[c->n == 1 ? 0 : n];
    }
    bs_layer l = {.kind = BS_LINEAR, .out_features = (int)N, .n_in = 1, .in = {x->t}};
    int dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    dims[t->rank - 1] = (int)N;
    return emit(im, &l, t->rank, dims, out) < 0 ? -1 : 0;
}

static int op_gemm(imp *im, const char *out)
{
    int64_t ta, tb;
    float alpha, beta;
    value *x;
    const cval *b, *c = NULL;
    if (need_inputs(im, 2, 3) ||
        check_attrs(im, (const char *const[]){"alpha", "beta", "transA", "transB", NULL}) ||
        attr_int(im, "transA", 0, &ta) || attr_int(im, "transB", 0, &tb) ||
        attr_float(im, "alpha", 1, &alpha) || attr_float(im, "beta", 1, &beta) ||
        !(x = tensor_input(im, 0)) || !(b = const_input(im, 1, "B")) ||
        (input(im, 2) && !(c = const_input(im, 2, "C"))))
        return -1;
    if (ta)
        return nfail(im, "attribute transA=%lld is not supported (the batch is "
                     "A's first dimension)", (long long)ta);
    if (tensor_of(im, x)->rank != 1)
        return nfail(im, "A must be (N,K), got %d dimensions per sample",
                     tensor_of(im, x)->rank);
    if (c && c->rank == 2 && c->dims[0] != 1)
        return nfail(im, "C must not vary along the batch");
    return linear(im, x, b, tb != 0, alpha, c, beta, out);
}

static int op_matmul(imp *im, const char *out)
{
    value *x;
    const cval *b;
    if (need_inputs(im, 2, 2) || check_attrs(im, (const char *const[]){NULL}))
        return -1;
    if (input(im, 0)->kind == V_CONST)
        return nfail(im, "a constant times a tensor is not supported (only a tensor "
                     "times a constant matrix)");
    if (!(x = tensor_input(im, 0)) || !(b = const_input(im, 1, "B")))
        return -1;
    return linear(im, x, b, 0, 1, NULL, 0, out);
}

/* Per-channel constants (C,1,..) for a tensor of rank r. */
static int channel_const(imp *im, const float *v, int C, int r)
{
    int dims[BS_MAX_RANK] = {C, 1, 1, 1};
    int64_t d = C;
    cval c = {0};
    if (cval_alloc(im, &c, 0, 1, &d))
        return -1;
    memcpy(c.f, v, (size_t)C * sizeof *v);
    int t = const_tensor(im, &c, r, dims);
    cval_free(&c);
    return t;
}

/* x * scale + shift with per-channel constants. */
static int scale_shift(imp *im, const value *x, const float *scale, const float *shift,
                       const char *mid, const char *out)
{
    const bs_tensor *t = tensor_of(im, x);
    int C = t->dims[0], r = t->rank, dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    int cs = channel_const(im, scale, C, r);
    if (cs < 0)
        return -1;
    bs_layer mul = {.kind = BS_MUL, .n_in = 2, .in = {x->t, cs}};
    int m = emit(im, &mul, r, dims, mid);
    int ch = m < 0 ? -1 : channel_const(im, shift, C, r);
    if (ch < 0)
        return -1;
    bs_layer add = {.kind = BS_ADD, .n_in = 2, .in = {m, ch}};
    return emit(im, &add, r, dims, out) < 0 ? -1 : 0;
}

static int op_batchnorm(imp *im, const char *out)
{
    float eps;
    int64_t training = 0;
    value *x;
    const cval *p[4];
    static const char *const names[4] = {"scale", "B", "mean", "var"};
    if (need_inputs(im, 5, 5) ||
        check_attrs(im, (const char *const[]){"epsilon", "momentum", "training_mode", NULL}) ||
        attr_float(im, "epsilon", 1e-5f, &eps) ||
        attr_int(im, "training_mode", 0, &training) || !(x = tensor_input(im, 0)))
        return -1;
    if (training)
        return nfail(im, "attribute training_mode=1 is not supported");
    int C = tensor_of(im, x)->dims[0];
    for (int k = 0; k < 4; k++) {
        if (!(p[k] = const_input(im, k + 1, names[k])))
            return -1;
        if (p[k]->is_int || p[k]->n != (size_t)C)
            return nfail(im, "%s must be %d floats (one per channel)", names[k], C);
    }
    float *a = malloc((size_t)C * 2 * sizeof *a);
    if (!a)
        return nfail(im, "out of memory");
    float *sh = a + C;
    for (int c = 0; c < C; c++) {
        a[c] = p[0]->f[c] / sqrtf(p[3]->f[c] + eps);
        sh[c] = p[1]->f[c] - p[2]->f[c] * a[c];
    }
    int rc = 0, prod = x->producer;
    if (prod >= 0 && im->nodes[prod].kind == BS_CONV2D && x->consumers == 1) {
        /* y = a (W x + b) + sh: the conv's weights and bias scaled */
        const bs_layer *l = &im->nodes[prod];
        size_t per = (size_t)(im->tensors[l->in[0]].dims[0] / l->groups) *
                     (size_t)l->kernel_h * (size_t)l->kernel_w;
        for (int c = 0; c < C; c++) {
            for (size_t k = 0; k < per; k++)
                im->wdata[prod][(size_t)c * per + k] *= a[c];
            im->bdata[prod][c] = im->bdata[prod][c] * a[c] + sh[c];
        }
        value *v = intern(im, out);
        if (!v || v->kind != V_UNDEF)
            rc = v ? nfail(im, "output '%.48s' is written twice", out) : -1;
        else
            define_tensor(v, x->t, prod);
    } else {
        char mid[BS_NAME_LEN + 8];
        snprintf(mid, sizeof mid, "%.60s:scale", out);
        const char *kept = keep_name(im, mid);
        rc = kept ? scale_shift(im, x, a, sh, kept, out) : nfail(im, "out of memory");
    }
    free(a);
    return rc;
}

static int op_pool(imp *im, int avg, const char *out)
{
    value *x;
    const bs_tensor *t;
    int64_t ceil_mode, cip = 0, order = 0;
    window w;
    if (need_inputs(im, 1, 1) ||
        check_attrs(im, avg ? (const char *const[]){"auto_pad", "ceil_mode",
                                                    "count_include_pad", "kernel_shape",
                                                    "pads", "strides", NULL}
                            : (const char *const[]){"auto_pad", "ceil_mode", "dilations",
                                                    "kernel_shape", "pads",
                                                    "storage_order", "strides", NULL}) ||
        !(t = image_input(im, &x)) || attr_int(im, "ceil_mode", 0, &ceil_mode) ||
        attr_int(im, "count_include_pad", 0, &cip) ||
        attr_int(im, "storage_order", 0, &order) ||
        parse_window(im, t, 0, 0, ceil_mode != 0, &w))
        return -1;
    if (w.dh != 1 || w.dw != 1)
        return nfail(im, "attribute dilations=(%d,%d) is not supported (only 1)", w.dh, w.dw);
    if (avg && cip && w.extra)
        return nfail(im, "ceil_mode with count_include_pad=1 adds a partial window "
                     "that is not supported");
    if (avg && cip && (w.pads[0] >= w.kh || w.pads[2] >= w.kh || w.pads[1] >= w.kw ||
                       w.pads[3] >= w.kw))
        return nfail(im, "pads as large as the window are not supported");
    bs_layer l = {.kind = avg ? BS_AVGPOOL2D : BS_MAXPOOL2D, .n_in = 1, .in = {x->t},
                  .count_include_pad = cip != 0};
    set_window(&l, &w);
    int dims[3] = {t->dims[0], w.oh, w.ow};
    return emit(im, &l, 3, dims, out) < 0 ? -1 : 0;
}

static int op_global_avgpool(imp *im, const char *out)
{
    value *x;
    const bs_tensor *t;
    if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){NULL}) ||
        !(t = image_input(im, &x)))
        return -1;
    bs_layer l = {.kind = BS_GLOBAL_AVGPOOL, .n_in = 1, .in = {x->t}};
    int dims[3] = {t->dims[0], 1, 1};
    return emit(im, &l, 3, dims, out) < 0 ? -1 : 0;
}

/* A scalar constant input (absent: def). */
static int scalar_input(imp *im, int k, const char *what, float def, float *out)
{
    *out = def;
    if (!input(im, k))
        return 0;
    const cval *c = const_input(im, k, what);
    if (!c)
        return -1;
    if (c->n != 1)
        return nfail(im, "%s must be one value", what);
    *out = (float)cget(c, 0);
    return 0;
}

static int op_activation(imp *im, const char *op, const char *out)
{
    value *x;
    bs_layer l = {0};
    if (!(x = tensor_input(im, 0)))
        return -1;
    if (!strcmp(op, "Relu") || !strcmp(op, "Sigmoid") || !strcmp(op, "Tanh") ||
        !strcmp(op, "HardSwish")) {
        if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){NULL}))
            return -1;
        l.kind = op[0] == 'R' ? BS_RELU : op[0] == 'S' ? BS_SIGMOID
                 : op[0] == 'T' ? BS_TANH : BS_HARDSWISH;
    } else if (!strcmp(op, "LeakyRelu")) {
        l.kind = BS_LEAKY_RELU;
        if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){"alpha", NULL}) ||
            attr_float(im, "alpha", 0.01f, &l.alpha))
            return -1;
    } else if (!strcmp(op, "HardSigmoid")) {
        l.kind = BS_HARDSIGMOID;
        if (need_inputs(im, 1, 1) ||
            check_attrs(im, (const char *const[]){"alpha", "beta", NULL}) ||
            attr_float(im, "alpha", 0.2f, &l.alpha) || attr_float(im, "beta", 0.5f, &l.beta))
            return -1;
    } else { /* Clip: bounds are attributes before opset 11, inputs from it */
        l.kind = BS_CLIP;
        if (im->opset < 11) {
            if (need_inputs(im, 1, 1) ||
                check_attrs(im, (const char *const[]){"min", "max", NULL}) ||
                attr_float(im, "min", -FLT_MAX, &l.alpha) ||
                attr_float(im, "max", FLT_MAX, &l.beta))
                return -1;
        } else if (need_inputs(im, 1, 3) || check_attrs(im, (const char *const[]){NULL}) ||
                   scalar_input(im, 1, "min", -FLT_MAX, &l.alpha) ||
                   scalar_input(im, 2, "max", FLT_MAX, &l.beta)) {
            return -1;
        }
    }
    return unary(im, &l, x, out);
}

static int op_concat(imp *im, const char *out)
{
    int64_t axis;
    int n = n_inputs(im->cur), ax, first = -1;
    bs_layer l = {.kind = BS_CONCAT, .n_in = n};
    if (check_attrs(im, (const char *const[]){"axis", NULL}) ||
        attr_int(im, "axis", 0, &axis))
        return -1;
    if (n < 1 || n > BS_MAX_INPUTS)
        return nfail(im, "has %d inputs (1 to %d are supported)", n, BS_MAX_INPUTS);
    for (int k = 0; k < n && first < 0; k++)
        if (input(im, k) && input(im, k)->kind == V_TENSOR)
            first = k;
    const bs_tensor *f = tensor_of(im, input(im, first));
    int r = f->rank, dims[BS_MAX_RANK];
    if (norm_axis(im, axis, r + 1, &ax))
        return -1;
    if (ax == 0)
        return nfail(im, "concatenation along the batch is not supported");
    memcpy(dims, f->dims, sizeof dims);
    dims[ax - 1] = 0;
    for (int k = 0; k < n; k++) {
        value *v = input(im, k);
        if (!v)
            return nfail(im, "input %d is empty", k);
        int rc, dc[BS_MAX_RANK];
        if (v->kind == V_CONST) {
            if (const_operand(im, &v->c, r + 1, &rc, dc) || (l.in[k] = const_tensor(im, &v->c, rc, dc)) < 0)
                return -1;
        } else {
            rc = tensor_of(im, v)->rank;
            memcpy(dc, tensor_of(im, v)->dims, sizeof dc);
            l.in[k] = v->t;
        }
        if (rc != r)
            return nfail(im, "inputs differ in rank");
        for (int d = 0; d < r; d++)
            if (d != ax - 1 && dc[d] != f->dims[d])
                return nfail(im, "inputs differ in dimension %d", d + 1);
        dims[ax - 1] += dc[ax - 1];
    }
    l.axis = ax - 1;
    return emit(im, &l, r, dims, out) < 0 ? -1 : 0;
}

static int op_pad(imp *im, const char *out)
{
    char mode[32];
    int64_t p[2 * MAX_FULL_RANK];
    int np;
    float fill = 0;
    value *x;
    if (!(x = tensor_input(im, 0)))
        return -1;
    if (im->opset < 11) {
        if (need_inputs(im, 1, 1) ||
            check_attrs(im, (const char *const[]){"mode", "pads", "value", NULL}) ||
            attr_ints(im, "pads", p, 2 * MAX_FULL_RANK, &np) ||
            attr_float(im, "value", 0, &fill))
            return -1;
    } else if (need_inputs(im, 2, 3) || check_attrs(im, (const char *const[]){"mode", NULL}) ||
               const_ints(im, 1, "pads", p, 2 * MAX_FULL_RANK, &np) ||
               scalar_input(im, 2, "constant_value", 0, &fill)) {
        return -1;
    }
    if (attr_str(im, "mode", mode, sizeof mode))
        return -1;
    const bs_tensor *t = tensor_of(im, x);
    int r = t->rank + 1;
    if (np != 2 * r)
        return nfail(im, "pads has %d values for a tensor of rank %d", np, r);
    if (r != 4 || p[0] || p[1] || p[4] || p[5])
        return nfail(im, "only pads on H and W of a (N,C,H,W) tensor are supported");
    bs_layer l = {.kind = BS_PAD, .n_in = 1, .in = {x->t}, .alpha = fill};
    if (!*mode || !strcmp(mode, "constant"))
        l.mode = BS_PAD_CONSTANT;
    else if (!strcmp(mode, "reflect"))
        l.mode = BS_PAD_REFLECT;
    else if (!strcmp(mode, "edge"))
        l.mode = BS_PAD_EDGE;
    else
        return nfail(im, "attribute mode=%s is not supported", mode);
    int pads[4] = {(int)p[2], (int)p[3], (int)p[6], (int)p[7]};
    for (int k = 0; k < 4; k++)
        if (p[k == 0 ? 2 : k == 1 ? 3 : k == 2 ? 6 : 7] < 0 || pads[k] > 1024)
            return nfail(im, "pads must be from 0 to 1024");
    int H = t->dims[1], W = t->dims[2];
    if (l.mode == BS_PAD_REFLECT && (pads[0] >= H || pads[2] >= H || pads[1] >= W || pads[3] >= W))
        return nfail(im, "reflect pads must be smaller than the input");
    memcpy(l.pads, pads, sizeof pads);
    int dims[3] = {t->dims[0], H + pads[0] + pads[2], W + pads[1] + pads[3]};
    return emit(im, &l, 3, dims, out) < 0 ? -1 : 0;
}

/* Dropout and Identity: the same floats (dropout is off at inference). */
static int op_identity(imp *im, const char *op, const char *out)
{
    value *x;
    if (!strcmp(op, "Dropout")) {
        if (need_inputs(im, 1, 3) ||
            check_attrs(im, (const char *const[]){"ratio", "seed", "is_test", NULL}))
            return -1;
        if (input(im, 2)) {
            const cval *c = const_input(im, 2, "training_mode");
            if (!c)
                return -1;
            if (c->n != 1 || cget(c, 0) != 0)
                return nfail(im, "training_mode must be false");
        }
    } else if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){NULL})) {
        return -1;
    }
    if (!(x = tensor_input(im, 0)))
        return -1;
    const bs_tensor *t = tensor_of(im, x);
    int dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    return reshape_to(im, x, t->rank, dims, out);
}

/* Softmax: before opset 13 over the dims from axis on, flattened (a reshape
 * around a softmax over the last dimension); from 13 over one axis. */
static int op_softmax(imp *im, const char *op, const char *out, int final)
{
    int64_t axis;
    int ax;
    value *x;
    if (need_inputs(im, 1, 1) || check_attrs(im, (const char *const[]){"axis", NULL}) ||
        !(x = tensor_input(im, 0)))
        return -1;
    const bs_tensor *t = tensor_of(im, x);
    int r = t->rank + 1;
    if (attr_int(im, "axis", im->opset < 13 ? 1 : -1, &axis) || norm_axis(im, axis, r, &ax))
        return -1;
    if (ax == 0)
        return nfail(im, "a softmax across the batch is not supported");
    if (final) {
        /* the logits rank the classes as the probabilities do */
        value *v = intern(im, out);
        if (!v || v->kind != V_UNDEF)
            return v ? nfail(im, "output '%.48s' is written twice", out) : -1;
        define_tensor(v, x->t, x->producer);
        return 0;
    }
    if (strcmp(op, "Softmax"))
        return nfail(im, "%s is only supported as the graph's last node", op);
    bs_layer l = {.kind = BS_SOFTMAX, .n_in = 1, .in = {x->t}};
    int dims[BS_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    if (im->opset >= 13 || ax == r - 1) {
        l.axis = ax - 1;
        return unary(im, &l, x, out);
    }
    int two[2] = {1, 1};
    for (int d = 0; d < t->rank; d++)
        two[d >= ax - 1] *= t->dims[d];
    char mid[BS_NAME_LEN + 16];
    snprintf(mid, sizeof mid, "%.60s:2d", out);
    const char *m1 = keep_name(im, mid);
    snprintf(mid, sizeof mid, "%.60s:softmax", out);
    const char *m2 = keep_name(im, mid);
    if (!m1 || !m2)
        return nfail(im, "out of memory");
    int lead = two[0] == 1;
    if (reshape_to(im, x, 2 - lead, two + lead, m1))
        return -1;
    value *v1 = find(im, m1);
    l.in[0] = v1->t;
    l.axis = 1 - lead;
    if (emit(im, &l, 2 - lead, two + lead, m2) < 0)
        return -1;
    return reshape_to(im, find(im, m2), t->rank, dims, out);
}

/* --- nodes ----------------------------------------------------------------- */

static int is_op(const char *op, const char *const *ops)
{
    for (; *ops; ops++)
        if (!strcmp(op, *ops))
            return 1;
    return 0;
}

static int import_node(imp *im, const char *logits)
{
    const Onnx__NodeProto *n = im->cur;
    const char *op = n->op_type ? n->op_type : "";
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
        return nfail(im, "domain '%.48s' is not supported (only ONNX's default domain)",
                     n->domain);
    if (n->n_output < 1 || !*n->output[0])
        return nfail(im, "has no output");
    for (size_t k = 1; k < n->n_output; k++) {
        value *v = *n->output[k] ? find(im, n->output[k]) : NULL;
        if (v && v->consumers)
            return nfail(im, "output %zu ('%.48s') is used; only the first output of "
                         "a node is supported", k, n->output[k]);
    }
    int all_const = 1;
    for (size_t k = 0; k < n->n_input; k++) {
        if (!*n->input[k])
            continue;
        value *v = find(im, n->input[k]);
        if (!v || v->kind == V_UNDEF)
            return nfail(im, "input '%.48s' is not defined before the node (it is "
                         "undefined, or the graph has a cycle)", n->input[k]);
        all_const &= v->kind == V_CONST;
    }
    const char *out = n->output[0];
    if (!strcmp(op, "Reshape"))
        return op_reshape(im, out);
    if (!strcmp(op, "Flatten"))
        return op_flatten(im, out);
    if (all_const || !strcmp(op, "Shape")) {
        int rc = fold_constant_node(im, op, out);
        if (rc != 1)
            return rc;
        return nfail(im, "op %.24s on constants is not supported", op);
    }
    if (!strcmp(op, "Conv"))
        return op_conv(im, out);
    if (!strcmp(op, "BatchNormalization"))
        return op_batchnorm(im, out);
    if (!strcmp(op, "Gemm"))
        return op_gemm(im, out);
    if (!strcmp(op, "MatMul"))
        return op_matmul(im, out);
    if (!strcmp(op, "Add"))
        return op_binary(im, BS_ADD, out);
    if (!strcmp(op, "Sub"))
        return op_binary(im, BS_SUB, out);
    if (!strcmp(op, "Mul"))
        return op_binary(im, BS_MUL, out);
    if (!strcmp(op, "Div"))
        return op_binary(im, BS_DIV, out);
    if (is_op(op, (const char *const[]){"Relu", "Sigmoid", "Tanh", "HardSwish", "LeakyRelu",
                                         "HardSigmoid", "Clip", NULL}))
        return op_activation(im, op, out);
    if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool"))
        return op_pool(im, op[0] == 'A', out);
    if (!strcmp(op, "GlobalAveragePool"))
        return op_global_avgpool(im, out);
    if (!strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze"))
        return op_squeeze(im, op[0] == 'U', out);
    if (!strcmp(op, "Concat"))
        return op_concat(im, out);
    if (!strcmp(op, "Pad"))
        return op_pad(im, out);
    if (!strcmp(op, "Dropout") || !strcmp(op, "Identity"))
        return op_identity(im, op, out);
    if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax"))
        return op_softmax(im, op, out,
                         !strcmp(out, logits) && !(im->opt && im->opt->keep_softmax));
    if (!strcmp(op, "Cast")) {
        int64_t to;
        if (check_attrs(im, (const char *const[]){"to", NULL}) || attr_int(im, "to", 0, &to))
            return -1;
        if (to != T_FLOAT)
            return nfail(im, "a cast of a tensor to %s is not supported", dtype_name((int)to));
        return op_identity(im, "Identity", out);
    }
    if (is_op(op, (const char *const[]){"Slice", "Gather", "ConstantOfShape", NULL}))
        return nfail(im, "%s of a tensor computed from the input is not supported (only "
                     "of constants)", op);
    return nfail(im, "op %.24s is not supported", op);
}

/* Marks the nodes the output needs and counts every needed name's uses. */
static int mark_needed(imp *im, const char *logits, uint8_t *needed)
{
    const Onnx__GraphProto *g = im->g;
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t o = 0; o < g->node[k]->n_output; o++) {
            const char *name = g->node[k]->output[o];
            value *v;
            if (!*name)
                continue;
            if (!(v = intern(im, name)))
                return -1;
            if (v->onnx_node >= 0 || v->kind != V_UNDEF)
                return bs_fail(im->err, "tensor '%.48s' is written twice (by node "
                               "'%.48s' and before it)", name, node_name(g->node[k]));
            v->onnx_node = (int)k;
        }
    value *lv = intern(im, logits);
    if (!lv)
        return -1;
    int *stack = malloc((g->n_node + 1) * sizeof *stack), top = 0;
    if (!stack)
        return bs_fail(im->err, "out of memory");
    if (lv->onnx_node >= 0) {
        needed[lv->onnx_node] = 1;
        stack[top++] = lv->onnx_node;
    }
    while (top > 0) {
        const Onnx__NodeProto *n = g->node[stack[--top]];
        for (size_t k = 0; k < n->n_input; k++) {
            value *v = *n->input[k] ? intern(im, n->input[k]) : NULL;
            if (*n->input[k] && !v) {
                free(stack);
                return -1;
            }
            if (v && v->onnx_node >= 0 && !needed[v->onnx_node]) {
                needed[v->onnx_node] = 1;
                stack[top++] = v->onnx_node;
            }
        }
    }
    free(stack);
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t i = 0; needed[k] && i < g->node[k]->n_input; i++)
            if (*g->node[k]->input[i])
                find(im, g->node[k]->input[i])->consumers++;
    find(im, logits)->consumers++;
    return 0;
}

/* --- metadata -------------------------------------------------------------- */

/* What the metadata and the sidecar say about the input. */
typedef struct meta_info {
    int rank, shape[BS_MAX_RANK]; /* input_shape, rank 0 when not given */
    int n_mean, n_std;
    float mean[64], std[64];
    float lo, hi;                 /* range */
    char *labels;                 /* compact JSON list, owned */
    int n_labels;
} meta_info;

static int floats_of(const json_t *a, float *v, int max, const char *key, float min,
                     char *err)
{
    if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > (size_t)max)
        return bs_fail(err, "%s must be a list of 1 to %d numbers", key, max);
    for (size_t k = 0; k < json_array_size(a); k++) {
        const json_t *x = json_array_get(a, k);
        if (!json_is_number(x) || !isfinite(json_number_value(x)) ||
            json_number_value(x) < min || fabs(json_number_value(x)) > 1e6)
            return bs_fail(err, "%s must be a list of numbers%s", key,
                           min > -1e6 ? " above 0" : "");
        v[k] = (float)json_number_value(x);
    }
    return (int)json_array_size(a);
}

/* Applies one known key; returns 1 when key is not one of them. */
static int meta_key(meta_info *mi, const char *key, const json_t *v, char *err)
{
    if (!strcmp(key, "input_shape")) {
        float s[BS_MAX_RANK];
        int n = floats_of(v, s, BS_MAX_RANK, key, 1, err);
        if (n < 0)
            return -1;
        for (int k = 0; k < n; k++) {
            if (s[k] != floorf(s[k]) || s[k] > MAX_DIM)
                return bs_fail(err, "input_shape must be positive integers");
            mi->shape[k] = (int)s[k];
        }
        mi->rank = n;
    } else if (!strcmp(key, "mean")) {
        if ((mi->n_mean = floats_of(v, mi->mean, 64, key, -1e6f, err)) < 0)
            return -1;
    } else if (!strcmp(key, "std")) {
        if ((mi->n_std = floats_of(v, mi->std, 64, key, 1e-12f, err)) < 0)
            return -1;
    } else if (!strcmp(key, "range")) {
        float r[2];
        if (floats_of(v, r, 2, key, -1e6f, err) != 2 || !(r[0] < r[1]))
            return bs_fail(err, "range must be [lo, hi] with lo < hi");
        mi->lo = r[0];
        mi->hi = r[1];
    } else if (!strcmp(key, "labels")) {
        if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 100000)
            return bs_fail(err, "labels must be a list of strings");
        for (size_t k = 0; k < json_array_size(v); k++)
            if (!json_is_string(json_array_get(v, k)))
                return bs_fail(err, "labels must be a list of strings");
        free(mi->labels);
        mi->labels = json_dumps(v, JSON_COMPACT);
        mi->n_labels = (int)json_array_size(v);
        if (!mi->labels)
            return bs_fail(err, "out of memory");
    } else {
        return 1;
    }
    return 0;
}

/* The model's metadata_props: known keys parsed (their values are JSON),
 * others kept as the model's metadata. */
static int meta_props(const Onnx__ModelProto *mp, meta_info *mi, bs_model *m, char *err)
{
    for (size_t k = 0; k < mp->n_metadata_props; k++) {
        const char *key = mp->metadata_props[k]->key, *val = mp->metadata_props[k]->value;
        if (!key || !val)
            continue;
        char why[BS_ERR_LEN];
        json_t *j = json_loads(val, JSON_DECODE_ANY, NULL);
        int rc = j ? meta_key(mi, key, j, why) : 1;
        json_decref(j);
        if (rc < 0)
            return bs_fail(err, "metadata %.48s: %.180s", key, why);
        if (j && rc == 0)
            continue;
        if (m && bs_model_set_meta(m, key, val))
            return bs_fail(err, "cannot keep metadata \"%.60s\" (at most %d entries)",
                           key, BS_MAX_META);
    }
    return 0;
}

static int meta_sidecar(const json_t *side, meta_info *mi, bs_model *m, char *err)
{
    const char *key;
    json_t *v;
    if (!side)
        return 0;
    if (!json_is_object(side))
        return bs_fail(err, "sidecar: not a JSON object");
    json_object_foreach((json_t *)side, key, v) {
        char why[BS_ERR_LEN];
        int rc = meta_key(mi, key, v, why);
        if (rc < 0)
            return bs_fail(err, "sidecar: %s", why);
        if (rc == 0)
            continue;
        if (!json_is_string(v))
            return bs_fail(err, "sidecar: %.48s is not one of input_shape, labels, mean, "
                           "std, range, nor a string", key);
        if (m && bs_model_set_meta(m, key, json_string_value(v)))
            return bs_fail(err, "cannot keep metadata \"%.60s\" (at most %d entries)",
                           key, BS_MAX_META);
    }
    return 0;
}

/* --- the model ------------------------------------------------------------- */

static void imp_free(imp *im)
{
    for (size_t k = 0; k < im->n_vals; k++)
        cval_free(&im->vals[k].c);
    free(im->vals);
    free(im->slots);
    for (int k = 0; k < BS_MAX_NODES && im->wdata; k++) {
        free(im->wdata[k]);
        free(im->bdata[k]);
    }
    for (int k = 0; k < BS_MAX_TENSORS && im->tdata; k++)
        free(im->tdata[k]);
    for (int k = 0; k < im->n_names; k++)
        free(im->names[k]);
    free(im->names);
    free(im->nodes);
    free(im->wdata);
    free(im->bdata);
    free(im->wsize);
    free(im->bsize);
    free(im->tensors);
    free(im->tdata);
}

static int find_opset(imp *im)
{
    const Onnx__ModelProto *mp = im->model;
    im->opset = -1;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const char *d = mp->opset_import[k]->domain ? mp->opset_import[k]->domain : "";
        if (!*d || !strcmp(d, "ai.onnx"))
            im->opset = (int)(mp->opset_import[k]->version > INT_MAX
                                  ? INT_MAX : mp->opset_import[k]->version);
    }
    if (im->opset < 0)
        return bs_fail(im->err, "the model imports no opset of ONNX's default domain");
    if (im->opset < BS_ONNX_OPSET_MIN || im->opset > BS_ONNX_OPSET_MAX)
        return bs_fail(im->err, "opset %d of ONNX's default domain is not supported "
                       "(%d to %d are)", im->opset, BS_ONNX_OPSET_MIN, BS_ONNX_OPSET_MAX);
    return 0;
}

/* The one graph input that is not a constant: tensor 0, one sample's shape
 * from its type, unknown dims from the options or the metadata. */
static int define_input(imp *im, const meta_info *mi, const Onnx__ValueInfoProto **in)
{
    const Onnx__GraphProto *g = im->g;
    int found = 0;
    for (size_t k = 0; k < g->n_input; k++) {
        value *v = g->input[k]->name ? intern(im, g->input[k]->name) : NULL;
        if (!g->input[k]->name)
            return bs_fail(im->err, "graph input %zu has no name", k);
        if (!v)
            return -1;
        if (v->kind != V_UNDEF)
            continue;
        if (found++)
            return bs_fail(im->err, "the graph has inputs '%.48s' and '%.48s' besides its "
                           "initializers; a classifier has one", (*in)->name,
                           g->input[k]->name);
        *in = g->input[k];
    }
    if (!found)
        return bs_fail(im->err, "the graph has no input besides its initializers");
    const Onnx__TypeProto *tp = (*in)->type;
    const Onnx__TensorShapeProto *sp = NULL;
    if (tp && tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return bs_fail(im->err, "input '%.48s' is not a tensor", (*in)->name);
    if (tp && tp->tensor_type->has_elem_type && tp->tensor_type->elem_type != T_FLOAT)
        return bs_fail(im->err, "input '%.48s' holds %s, not float", (*in)->name,
                       dtype_name(tp->tensor_type->elem_type));
    if (tp)
        sp = tp->tensor_type->shape;
    const int *given = NULL;
    int rank = 0;
    if (im->opt && im->opt->input_rank) {
        given = im->opt->input_shape;
        rank = im->opt->input_rank;
    } else if (mi->rank) {
        given = mi->shape;
        rank = mi->rank;
    }
    int dims[BS_MAX_RANK];
    if (sp) {
        if (sp->n_dim < 2 || sp->n_dim > BS_MAX_RANK + 1)
            return bs_fail(im->err, "input '%.48s' has %zu dimensions; 2 to %d (the batch "
                           "first) are supported", (*in)->name, sp->n_dim, BS_MAX_RANK + 1);
        if (given && rank != (int)sp->n_dim - 1)
            return bs_fail(im->err, "input_shape has %d dimensions, input '%.48s' %zu "
                           "besides the batch", rank, (*in)->name, sp->n_dim - 1);
        for (int d = 0; d < (int)sp->n_dim - 1; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = sp->dim[d + 1];
            int known = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                        dm->dim_value > 0;
            if (known && dm->dim_value > MAX_DIM)
                return bs_fail(im->err, "input '%.48s' has a dimension of %lld",
                               (*in)->name, (long long)dm->dim_value);
            if (known && given && given[d] != dm->dim_value)
                return bs_fail(im->err, "input_shape says %d for dimension %d, the model "
                               "%lld", given[d], d + 1, (long long)dm->dim_value);
            if (!known && !given)
                return bs_fail(im->err, "input '%.48s' has an unknown dimension %d: give "
                               "input_shape in the metadata or the sidecar", (*in)->name,
                               d + 1);
            dims[d] = known ? (int)dm->dim_value : given[d];
        }
        rank = (int)sp->n_dim - 1;
    } else if (given) {
        memcpy(dims, given, (size_t)rank * sizeof *dims);
    } else {
        return bs_fail(im->err, "input '%.48s' has no shape: give input_shape in the "
                       "metadata or the sidecar", (*in)->name);
    }
    int t = new_tensor(im, rank, dims, (*in)->name);
    if (t < 0)
        return -1;
    return 0;
}

/* Leading nodes from pixels in [0,1] to what the graph expects:
 * x' = ((lo + (hi - lo) x) - mean) / std per channel. */
static int normalise(imp *im, const meta_info *mi, const char *name)
{
    const bs_tensor *t = &im->tensors[0];
    value *v = intern(im, name);
    if (!v)
        return -1;
    int plain = mi->lo == 0 && mi->hi == 1;
    for (int k = 0; k < mi->n_mean; k++)
        plain &= mi->mean[k] == 0;
    for (int k = 0; k < mi->n_std; k++)
        plain &= mi->std[k] == 1;
    if (plain) {
        define_tensor(v, 0, -1);
        return 0;
    }
    int C = t->dims[0];
    if ((mi->n_mean > 1 && mi->n_mean != C) || (mi->n_std > 1 && mi->n_std != C) || C > 64)
        return bs_fail(im->err, "mean and std must have 1 or %d values (one per channel)", C);
    float a[64], b[64];
    for (int c = 0; c < C; c++) {
        float mean = mi->n_mean ? mi->mean[mi->n_mean > 1 ? c : 0] : 0;
        float sd = mi->n_std ? mi->std[mi->n_std > 1 ? c : 0] : 1;
        a[c] = (mi->hi - mi->lo) / sd;
        b[c] = (mi->lo - mean) / sd;
    }
    snprintf(im->tensors[0].name, sizeof im->tensors[0].name, "pixels");
    char mid[BS_NAME_LEN + 16];
    snprintf(mid, sizeof mid, "%.60s:scaled", name);
    const char *kept = keep_name(im, mid);
    if (!kept)
        return bs_fail(im->err, "out of memory");
    return scale_shift(im, &(value){.t = 0, .producer = -1}, a, b, kept, name);
}

/* Copies weights and constants into the built model's parameters. */
static int fill_params(imp *im, bs_model *m)
{
    for (int i = 0; i < im->n_nodes; i++) {
        const bs_layer *l = &m->layers[i];
        if (!im->wdata[i])
            continue;
        if (l->weight_size != im->wsize[i] || l->bias_size != im->bsize[i])
            return bs_fail(im->err, "node '%.48s': the graph holds %zu weights and %zu "
                           "biases, the file %zu and %zu", l->name, l->weight_size,
                           l->bias_size, im->wsize[i], im->bsize[i]);
        memcpy(m->params + l->weight_off, im->wdata[i], l->weight_size * sizeof(float));
        memcpy(m->params + l->bias_off, im->bdata[i], l->bias_size * sizeof(float));
    }
    for (int t = 0; t < im->n_tensors; t++)
        if (im->tdata[t])
            memcpy(m->params + m->tensors[t].off, im->tdata[t],
                   m->tensors[t].size * sizeof(float));
    return 0;
}

static bs_model *import(const uint8_t *buf, size_t len, const bs_onnx_options *opt,
                        const char *dir, const json_t *sidecar, char *err)
{
    imp im = {.opt = opt, .dir = dir, .err = err, .batch = opt && opt->batch > 0 ? opt->batch : 1};
    meta_info mi = {.lo = 0, .hi = 1};
    bs_model *m = NULL;
    uint8_t *needed = NULL;
    if (len > BS_ONNX_MAX_FILE) {
        bs_fail(err, "the file is %zu bytes, more than the limit of %u", len, BS_ONNX_MAX_FILE);
        return NULL;
    }
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) {
        bs_fail(err, "not an ONNX model (the protobuf message does not parse: truncated "
                "or not a ModelProto)");
        return NULL;
    }
    im.model = mp;
    im.g = mp->graph;
    if (find_opset(&im))
        goto done;
    if (!im.g || im.g->n_node == 0) {
        bs_fail(err, "the model has no graph, or a graph without nodes");
        goto done;
    }
    if (im.g->n_node > BS_ONNX_MAX_NODES || im.g->n_output < 1 || !im.g->output[0]->name) {
        bs_fail(err, "the graph has %zu nodes and %zu outputs (1 to %d nodes and an "
                "output are supported)", im.g->n_node, im.g->n_output, BS_ONNX_MAX_NODES);
        goto done;
    }
    if (im.g->n_sparse_initializer) {
        bs_fail(err, "sparse initializers are not supported");
        goto done;
    }
    if (meta_props(mp, &mi, NULL, err) || meta_sidecar(sidecar, &mi, NULL, err))
        goto done;
    if (!(im.nodes = calloc(BS_MAX_NODES, sizeof *im.nodes)) ||
        !(im.wdata = calloc(BS_MAX_NODES, sizeof *im.wdata)) ||
        !(im.bdata = calloc(BS_MAX_NODES, sizeof *im.bdata)) ||
        !(im.wsize = calloc(BS_MAX_NODES, sizeof *im.wsize)) ||
        !(im.bsize = calloc(BS_MAX_NODES, sizeof *im.bsize)) ||
        !(im.tensors = calloc(BS_MAX_TENSORS, sizeof *im.tensors)) ||
        !(im.tdata = calloc(BS_MAX_TENSORS, sizeof *im.tdata)) ||
        !(needed = calloc(im.g->n_node, 1))) {
        bs_fail(err, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < im.g->n_initializer; k++) {
        const Onnx__TensorProto *tp = im.g->initializer[k];
        value *v = tp->name ? intern(&im, tp->name) : NULL;
        if (!tp->name) {
            bs_fail(err, "initializer %zu has no name", k);
            goto done;
        }
        if (!v)
            goto done;
        if (v->kind != V_UNDEF) {
            bs_fail(err, "initializer '%.48s' is given twice", tp->name);
            goto done;
        }
        if (tensor_to_cval(&im, tp, &v->c, "initializer"))
            goto done;
        v->kind = V_CONST;
    }
    for (int k = 0; opt && k < opt->n_consts; k++) {
        value *v = intern(&im, opt->consts[k].name);
        Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, opt->consts[k].len,
                                                           opt->consts[k].data);
        int rc = !v || !tp ? -1 : 0;
        if (!tp)
            bs_fail(err, "constant '%.48s' is not a TensorProto", opt->consts[k].name);
        if (!rc && v->kind == V_CONST)
            cval_free(&v->c);
        if (!rc && !(rc = tensor_to_cval(&im, tp, &v->c, "constant")))
            v->kind = V_CONST;
        if (tp)
            onnx__tensor_proto__free_unpacked(tp, NULL);
        if (rc)
            goto done;
    }
    const Onnx__ValueInfoProto *in = NULL;
    const char *logits = im.g->output[0]->name;
    if (define_input(&im, &mi, &in) || normalise(&im, &mi, in->name) ||
        mark_needed(&im, logits, needed))
        goto done;
    for (size_t k = 0; k < im.g->n_node; k++) {
        if (!needed[k])
            continue;
        im.cur = im.g->node[k];
        if (import_node(&im, logits))
            goto done;
    }
    im.cur = NULL;
    value *lv = find(&im, logits);
    if (!lv || lv->kind != V_TENSOR) {
        bs_fail(err, "the output '%.48s' does not depend on the input", logits);
        goto done;
    }
    if (im.n_nodes == 0) {
        bs_fail(err, "the graph computes nothing from its input (a final Softmax is "
                "dropped: the logits rank the classes as the probabilities do)");
        goto done;
    }
    if (lv->producer != im.n_nodes - 1) {
        bs_fail(err, "the output '%.48s' is not written by the graph's last node", logits);
        goto done;
    }
    char why[BS_ERR_LEN];
    if (!(m = bs_graph_build(im.nodes, im.n_nodes, im.tensors, im.n_tensors, why))) {
        bs_fail(err, "graph: %s", why);
        goto done;
    }
    if (fill_params(&im, m) || meta_props(mp, &mi, m, err) || meta_sidecar(sidecar, &mi, m, err))
        goto fail;
    if (mi.labels && mi.n_labels != m->classes) {
        bs_fail(err, "labels: %d labels for %d classes", mi.n_labels, m->classes);
        goto fail;
    }
    if ((mi.labels && bs_model_set_meta(m, "labels", mi.labels)) ||
        bs_model_set_meta(m, "blindspot.format", "onnx") ||
        (mp->producer_name && *mp->producer_name &&
         bs_model_set_meta(m, "onnx.producer", mp->producer_name))) {
        bs_fail(err, "cannot keep the metadata (at most %d entries)", BS_MAX_META);
        goto fail;
    }
    goto done;
fail:
    bs_model_free(m);
    m = NULL;
done:
    free(needed);
    free(mi.labels);
    imp_free(&im);
    onnx__model_proto__free_unpacked(mp, NULL);
    return m;
}

bs_model *bs_onnx_load_buffer(const uint8_t *buf, size_t len,
                              const bs_onnx_options *opt, char *err)
{
    return import(buf, len, opt, NULL, NULL, err);
}

int bs_onnx_is_path(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && !strcmp(path + n - 5, ".onnx");
}

/* The whole of a regular file of at most max bytes; NULL with a message. */
static uint8_t *read_file(const char *path, size_t max, size_t *len, char *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;
    if (!f) {
        bs_fail(err, "cannot open %.160s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        bs_fail(err, "%.160s is not a regular file", path);
    else if ((unsigned long long)st.st_size > max)
        bs_fail(err, "%.160s is %lld bytes, more than the limit of %zu", path,
                (long long)st.st_size, max);
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        bs_fail(err, "%.160s: out of memory", path);
    else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        bs_fail(err, "cannot read %.160s", path);
        free(buf);
        buf = NULL;
    }
    *len = buf ? (size_t)st.st_size : 0;
    fclose(f);
    return buf;
}

bs_model *bs_onnx_load(const char *path, const bs_onnx_options *opt, char *err)
{
    char why[BS_ERR_LEN], dir[4096], side[4096];
    size_t len, n = strlen(path);
    json_t *sidecar = NULL;
    if (n >= sizeof dir - 8) {
        bs_fail(err, "path too long");
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path)
        snprintf(dir, sizeof dir, "/");
    size_t base = bs_onnx_is_path(path) ? n - 5 : n;
    snprintf(side, sizeof side, "%.*s.json", (int)base, path);
    if (access(side, F_OK) == 0) {
        json_error_t jerr;
        uint8_t *s = read_file(side, 1 << 20, &len, why);
        if (s && !(sidecar = json_loadb((const char *)s, len, JSON_REJECT_DUPLICATES, &jerr)))
            bs_fail(why, "not valid JSON: %s (line %d)", jerr.text, jerr.line);
        free(s);
        if (!sidecar) {
            bs_fail(err, "sidecar %.60s: %.180s", side, why);
            return NULL;
        }
    }
    uint8_t *buf = read_file(path, BS_ONNX_MAX_FILE, &len, err);
    bs_model *m = NULL;
    if (buf && !(m = import(buf, len, opt, dir, sidecar, why)))
        bs_fail(err, "%.60s: %.190s", path, why);
    free(buf);
    json_decref(sidecar);
    return m;
}
