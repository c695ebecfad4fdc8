/* test_onnx — the ONNX importer on models built here with protobuf-c: a
 * small convolutional classifier that loads and answers as the graph it
 * describes, the folds (BatchNormalization into the conv, a bias Add into
 * the linear layer, the final Softmax dropped), the metadata and sidecar,
 * and hostile files, each a good one with one thing broken and refused
 * with the message checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/onnx.h"
#include "onnx.pb-c.h"
#include "tests/testhttp.h"
#include "tests/testutil.h"

/* --- building models ------------------------------------------------------- */

#define MAX_ALLOCS 4096
static void *allocs[MAX_ALLOCS];
static int n_allocs;

/* Zeroed memory freed by arena_free. */
static void *A(size_t n)
{
    assert_true(n_allocs < MAX_ALLOCS);
    void *p = calloc(1, n);
    assert_non_null(p);
    return allocs[n_allocs++] = p;
}

static void arena_free(void)
{
    while (n_allocs > 0)
        free(allocs[--n_allocs]);
}

static char *S(const char *s)
{
    char *d = A(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

/* "a,b,c" into a list of strings; *n its length. */
static char **names(const char *csv, size_t *n)
{
    char **v = A(16 * sizeof *v);
    *n = 0;
    if (!*csv)
        return v;
    char *s = S(csv);
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","))
        v[(*n)++] = strcmp(tok, "-") ? tok : S("");
    return v;
}

static Onnx__TensorProto *tensor(const char *name, int type, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = A(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = S(name);
    t->has_data_type = 1;
    t->data_type = type;
    t->n_dims = (size_t)rank;
    t->dims = A((size_t)(rank + 1) * sizeof *t->dims);
    if (rank)
        memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
    return t;
}

static Onnx__TensorProto *tensor_f(const char *name, int rank, const int64_t *dims,
                                   const float *v)
{
    Onnx__TensorProto *t = tensor(name, 1, rank, dims);
    size_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= (size_t)dims[d];
    t->n_float_data = n;
    t->float_data = A(n * sizeof(float) + 1);
    memcpy(t->float_data, v, n * sizeof(float));
    return t;
}

static Onnx__TensorProto *tensor_i(const char *name, int n, const int64_t *v)
{
    int64_t d = n;
    Onnx__TensorProto *t = tensor(name, 7, 1, &d);
    t->n_int64_data = (size_t)n;
    t->int64_data = A((size_t)n * sizeof *v + 1);
    memcpy(t->int64_data, v, (size_t)n * sizeof *v);
    return t;
}

/* A float tensor's type; dims of -1 are symbolic ("N"). */
static Onnx__ValueInfoProto *vinfo(const char *name, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = A(sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = S(name);
    Onnx__TypeProto *tp = A(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = A(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = 1;
    Onnx__TensorShapeProto *sp = A(sizeof *sp);
    onnx__tensor_shape_proto__init(sp);
    sp->n_dim = (size_t)rank;
    sp->dim = A((size_t)(rank + 1) * sizeof *sp->dim);
    for (int d = 0; d < rank; d++) {
        Onnx__TensorShapeProto__Dimension *dm = A(sizeof *dm);
        onnx__tensor_shape_proto__dimension__init(dm);
        if (dims[d] < 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = S("N");
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = dims[d];
        }
        sp->dim[d] = dm;
    }
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->type = tp;
    return v;
}

static Onnx__NodeProto *node(const char *op, const char *name, const char *in,
                             const char *out)
{
    Onnx__NodeProto *n = A(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = S(op);
    n->name = S(name);
    n->input = names(in, &n->n_input);
    n->output = names(out, &n->n_output);
    n->attribute = A(16 * sizeof *n->attribute);
    return n;
}

static Onnx__AttributeProto *attr(Onnx__NodeProto *n, const char *name, int type)
{
    Onnx__AttributeProto *a = A(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = S(name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_i(Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_f(Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void attr_s(Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)S(v);
    a->s.len = strlen(v);
}

static void attr_ints(Onnx__NodeProto *n, const char *name, int k, const int64_t *v)
{
    Onnx__AttributeProto *a = attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)k;
    a->ints = A((size_t)k * sizeof *v + 1);
    memcpy(a->ints, v, (size_t)k * sizeof *v);
}

/* A model under construction. */
typedef struct mb {
    Onnx__ModelProto m;
    Onnx__GraphProto g;
    Onnx__OperatorSetIdProto op;
    Onnx__OperatorSetIdProto *ops[1];
    Onnx__NodeProto *nodes[64];
    Onnx__TensorProto *inits[64];
    Onnx__ValueInfoProto *inputs[8], *outputs[8];
    Onnx__StringStringEntryProto *props[8];
} mb;

static mb *model_new(int opset)
{
    mb *b = A(sizeof *b);
    onnx__model_proto__init(&b->m);
    onnx__graph_proto__init(&b->g);
    onnx__operator_set_id_proto__init(&b->op);
    b->op.domain = S("");
    b->op.has_version = 1;
    b->op.version = opset;
    b->ops[0] = &b->op;
    b->m.has_ir_version = 1;
    b->m.ir_version = 8;
    b->m.n_opset_import = 1;
    b->m.opset_import = b->ops;
    b->m.graph = &b->g;
    b->g.name = S("g");
    b->g.node = b->nodes;
    b->g.initializer = b->inits;
    b->g.input = b->inputs;
    b->g.output = b->outputs;
    b->m.metadata_props = b->props;
    return b;
}

static Onnx__NodeProto *add(mb *b, Onnx__NodeProto *n)
{
    return b->nodes[b->g.n_node++] = n;
}

static void init(mb *b, Onnx__TensorProto *t)
{
    b->inits[b->g.n_initializer++] = t;
}

static void prop(mb *b, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = A(sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = S(key);
    e->value = S(value);
    b->props[b->m.n_metadata_props++] = e;
}

static uint8_t *pack(const mb *b, size_t *len)
{
    *len = onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = A(*len + 1);
    onnx__model_proto__pack(&b->m, buf);
    return buf;
}

/* The reference classifier: x (N,1,4,4) -> Conv 3x3 pad 1 (2 channels) ->
 * BatchNormalization -> Relu -> MaxPool 2 -> Flatten -> Gemm (3 classes,
 * transB) -> Softmax. Weights are small deterministic numbers. */
static float W1[18], B1[2], BN[4][2] = {{1.5f, 0.5f}, {0.1f, -0.2f}, {0.3f, -0.1f}, {2.0f, 0.5f}};
static float W2[24], B2[3];

static mb *reference(int opset)
{
    for (int k = 0; k < 18; k++)
        W1[k] = (float)((k * 7) % 11 - 5) / 10.0f;
    B1[0] = 0.1f;
    B1[1] = -0.3f;
    for (int k = 0; k < 24; k++)
        W2[k] = (float)((k * 5) % 13 - 6) / 8.0f;
    for (int k = 0; k < 3; k++)
        B2[k] = 0.05f * (float)k;
    mb *b = model_new(opset);
    b->inputs[b->g.n_input++] = vinfo("x", 4, (int64_t[]){-1, 1, 4, 4});
    b->outputs[b->g.n_output++] = vinfo("probs", 2, (int64_t[]){-1, 3});
    init(b, tensor_f("w1", 4, (int64_t[]){2, 1, 3, 3}, W1));
    init(b, tensor_f("b1", 1, (int64_t[]){2}, B1));
    init(b, tensor_f("bn_s", 1, (int64_t[]){2}, BN[0]));
    init(b, tensor_f("bn_b", 1, (int64_t[]){2}, BN[1]));
    init(b, tensor_f("bn_m", 1, (int64_t[]){2}, BN[2]));
    init(b, tensor_f("bn_v", 1, (int64_t[]){2}, BN[3]));
    init(b, tensor_f("w2", 2, (int64_t[]){3, 8}, W2));
    init(b, tensor_f("b2", 1, (int64_t[]){3}, B2));
    Onnx__NodeProto *c = add(b, node("Conv", "conv1", "x,w1,b1", "c1"));
    attr_ints(c, "pads", 4, (int64_t[]){1, 1, 1, 1});
    attr_ints(c, "kernel_shape", 2, (int64_t[]){3, 3});
    attr_f(add(b, node("BatchNormalization", "bn1", "c1,bn_s,bn_b,bn_m,bn_v", "n1")),
           "epsilon", 1e-5f);
    add(b, node("Relu", "relu1", "n1", "r1"));
    Onnx__NodeProto *p = add(b, node("MaxPool", "pool1", "r1", "p1"));
    attr_ints(p, "kernel_shape", 2, (int64_t[]){2, 2});
    attr_ints(p, "strides", 2, (int64_t[]){2, 2});
    add(b, node("Flatten", "flat", "p1", "f1"));
    attr_i(add(b, node("Gemm", "fc", "f1,w2,b2", "logits")), "transB", 1);
    add(b, node("Softmax", "softmax", "logits", "probs"));
    return b;
}

/* The reference classifier's logits for one 4x4 image, computed plainly;
 * the graph sees lo + (hi - lo) x, and the activation clips at top. */
static void reference_logits(const float *px, float lo, float hi, float top, float *logits)
{
    float h[2][4][4], pooled[8], x[16];
    for (int k = 0; k < 16; k++)
        x[k] = lo + (hi - lo) * px[k];
    for (int oc = 0; oc < 2; oc++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                float s = B1[oc];
                for (int u = 0; u < 3; u++)
                    for (int v = 0; v < 3; v++) {
                        int y = i + u - 1, z = j + v - 1;
                        if (y >= 0 && y < 4 && z >= 0 && z < 4)
                            s += W1[oc * 9 + u * 3 + v] * x[y * 4 + z];
                    }
                s = (s - BN[2][oc]) / sqrtf(BN[3][oc] + 1e-5f) * BN[0][oc] + BN[1][oc];
                h[oc][i][j] = s > 0 ? (s < top ? s : top) : 0;
            }
    for (int oc = 0; oc < 2; oc++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                float mx = h[oc][2 * i][2 * j];
                for (int u = 0; u < 2; u++)
                    for (int v = 0; v < 2; v++)
                        mx = fmaxf(mx, h[oc][2 * i + u][2 * j + v]);
                pooled[oc * 4 + i * 2 + j] = mx;
            }
    for (int k = 0; k < 3; k++) {
        logits[k] = B2[k];
        for (int f = 0; f < 8; f++)
            logits[k] += W2[k * 8 + f] * pooled[f];
    }
}

static bs_model *load(const mb *b, const bs_onnx_options *opt, char *err)
{
    size_t len;
    uint8_t *buf = pack(b, &len);
    return bs_onnx_load_buffer(buf, len, opt, err);
}

/* Loading must fail with a message holding want. */
static void refused(const mb *b, const char *want)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = load(b, NULL, err);
    if (m || !strstr(err, want))
        fail_msg("wanted a refusal with \"%s\", got %s \"%s\"", want,
                 m ? "a model and" : "", err);
    bs_model_free(m);
}

static void refused_bytes(const uint8_t *buf, size_t len, const char *want)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_onnx_load_buffer(buf, len, NULL, err);
    if (m || !strstr(err, want))
        fail_msg("wanted a refusal with \"%s\", got \"%s\"", want, err);
    bs_model_free(m);
}

static void teardown_arena(void)
{
    arena_free();
}

/* Runs m on three images and compares with the reference. */
static void check_logits(const bs_model *m, float lo, float hi, float top, int softmax)
{
    float x[3][16], want[3];
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 16; k++)
            x[b][k] = (float)((k * 3 + b * 5) % 16) / 15.0f;
    assert_int_equal((int)m->input_size, 16);
    assert_int_equal(m->classes, 3);
    bs_workspace *ws = bs_workspace_new(m, 3);
    assert_non_null(ws);
    const float *out = bs_model_forward(m, ws, &x[0][0], 3);
    for (int b = 0; b < 3; b++) {
        reference_logits(x[b], lo, hi, top, want);
        if (softmax) {
            float mx = fmaxf(want[0], fmaxf(want[1], want[2])), sum = 0;
            for (int k = 0; k < 3; k++)
                sum += (want[k] = expf(want[k] - mx));
            for (int k = 0; k < 3; k++)
                want[k] /= sum;
        }
        for (int k = 0; k < 3; k++)
            if (fabsf(out[b * 3 + k] - want[k]) > 1e-5f + 1e-4f * fabsf(want[k]))
                fail_msg("image %d class %d: %g, expected %g", b, k, out[b * 3 + k], want[k]);
    }
    bs_workspace_free(ws);
}

static int count_kind(const bs_model *m, bs_layer_kind kind)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++)
        n += m->layers[i].kind == kind;
    return n;
}

static bs_model *must_load(const mb *b, const bs_onnx_options *opt)
{
    char err[BS_ERR_LEN];
    bs_model *m = load(b, opt, err);
    if (!m)
        fail_msg("refused: %s", err);
    return m;
}

/* --- models that load ------------------------------------------------------ */

/* The reference as exported: BatchNormalization folded into the conv, the
 * final Softmax dropped, the same logits. */
static void test_reference(void **state)
{
    (void)state;
    for (int opset = 9; opset <= 17; opset += 4) {
        bs_model *m = must_load(reference(opset), NULL);
        check_logits(m, 0, 1, INFINITY, 0);
        assert_int_equal(m->n_layers, 5); /* conv, relu, maxpool, flatten, linear */
        assert_int_equal(count_kind(m, BS_MUL), 0);
        assert_int_equal(count_kind(m, BS_SOFTMAX), 0);
        assert_string_equal(bs_model_get_meta(m, "blindspot.format"), "onnx");
        bs_model_free(m);
    }
    bs_onnx_options keep = {.keep_softmax = 1};
    bs_model *m = must_load(reference(13), &keep);
    check_logits(m, 0, 1, INFINITY, 1);
    assert_int_equal(count_kind(m, BS_SOFTMAX), 1);
    bs_model_free(m);
    teardown_arena();
}

/* A BatchNormalization that does not follow a conv directly stays, as a
 * per-channel multiply and add. */
static void test_batchnorm_unfolded(void **state)
{
    (void)state;
    mb *b = reference(13);
    for (size_t k = b->g.n_node; k > 1; k--)
        b->nodes[k] = b->nodes[k - 1];
    b->g.n_node++;
    b->nodes[1] = node("Identity", "same", "c1", "c1i");
    b->nodes[2]->input[0] = S("c1i");
    bs_model *m = must_load(b, NULL);
    check_logits(m, 0, 1, INFINITY, 0);
    assert_int_equal(count_kind(m, BS_MUL), 1);
    assert_int_equal(count_kind(m, BS_ADD), 1);
    bs_model_free(m);
    teardown_arena();
}

/* MatMul by a constant and an Add of a bias vector: one linear node. */
static void test_matmul_bias_fold(void **state)
{
    (void)state;
    mb *b = reference(13);
    float wt[24];
    for (int n = 0; n < 3; n++)
        for (int k = 0; k < 8; k++)
            wt[k * 3 + n] = W2[n * 8 + k];
    init(b, tensor_f("w2t", 2, (int64_t[]){8, 3}, wt));
    b->nodes[5] = node("MatMul", "mm", "f1,w2t", "mm_out");
    b->nodes[6] = node("Add", "bias", "mm_out,b2", "logits");
    add(b, node("Softmax", "softmax", "logits", "probs"));
    bs_model *m = must_load(b, NULL);
    check_logits(m, 0, 1, INFINITY, 0);
    assert_int_equal(m->n_layers, 5);
    assert_int_equal(count_kind(m, BS_ADD), 0);
    bs_model_free(m);
    teardown_arena();
}

/* PyTorch's older Flatten: Shape, Gather, Unsqueeze, Concat, Reshape,
 * evaluated at load. */
static void test_shape_arithmetic(void **state)
{
    (void)state;
    mb *b = reference(11);
    Onnx__TensorProto *zero = tensor("zero", 7, 0, NULL);
    zero->n_int64_data = 1;
    zero->int64_data = A(sizeof(int64_t));
    init(b, zero);
    init(b, tensor_i("minus_one", 1, (int64_t[]){-1}));
    Onnx__NodeProto *tail[3] = {b->nodes[5], b->nodes[6]};
    b->g.n_node = 4;
    add(b, node("Shape", "shape", "p1", "s"));
    add(b, node("Gather", "gather", "s,zero", "batch"));
    attr_ints(add(b, node("Unsqueeze", "unsq", "batch", "batch1")), "axes", 1, (int64_t[]){0});
    attr_i(add(b, node("Concat", "cat", "batch1,minus_one", "shape2")), "axis", 0);
    add(b, node("Reshape", "reshape", "p1,shape2", "f1"));
    add(b, tail[0]);
    add(b, tail[1]);
    bs_model *m = must_load(b, NULL);
    check_logits(m, 0, 1, INFINITY, 0);
    bs_model_free(m);
    teardown_arena();
}

/* Clip as ReLU6: bounds as attributes before opset 11, inputs from it. */
static void test_clip_bounds(void **state)
{
    (void)state;
    mb *b = reference(10);
    b->nodes[2] = node("Clip", "relu6", "n1", "r1");
    attr_f(b->nodes[2], "min", 0);
    attr_f(b->nodes[2], "max", 0.5f);
    bs_model *m = must_load(b, NULL);
    check_logits(m, 0, 1, 0.5f, 0);
    bs_model_free(m);
    b = reference(13);
    init(b, tensor_f("lo", 0, NULL, (float[]){0}));
    init(b, tensor_f("hi", 0, NULL, (float[]){0.5f}));
    b->nodes[2] = node("Clip", "relu6", "n1,lo,hi", "r1");
    m = must_load(b, NULL);
    check_logits(m, 0, 1, 0.5f, 0);
    bs_model_free(m);
    teardown_arena();
}

/* Pad in front of an unpadded conv is the padded conv: pads an attribute
 * before opset 11, an input from it. */
static void test_pad(void **state)
{
    (void)state;
    for (int opset = 10; opset <= 11; opset++) {
        mb *b = reference(opset);
        for (size_t k = b->g.n_node; k > 0; k--)
            b->nodes[k] = b->nodes[k - 1];
        b->g.n_node++;
        const int64_t pads[8] = {0, 0, 1, 1, 0, 0, 1, 1};
        if (opset < 11) {
            b->nodes[0] = node("Pad", "pad", "x", "xp");
            attr_ints(b->nodes[0], "pads", 8, pads);
            attr_s(b->nodes[0], "mode", "constant");
        } else {
            init(b, tensor_i("pads", 8, pads));
            b->nodes[0] = node("Pad", "pad", "x,pads", "xp");
        }
        b->nodes[1] = node("Conv", "conv1", "xp,w1,b1", "c1");
        bs_model *m = must_load(b, NULL);
        check_logits(m, 0, 1, INFINITY, 0);
        assert_int_equal(count_kind(m, BS_PAD), 1);
        bs_model_free(m);
    }
    mb *b = reference(13);
    init(b, tensor_i("pads", 8, (int64_t[]){1, 0, 1, 1, 0, 0, 1, 1}));
    for (size_t k = b->g.n_node; k > 0; k--)
        b->nodes[k] = b->nodes[k - 1];
    b->g.n_node++;
    b->nodes[0] = node("Pad", "pad", "x,pads", "xp");
    b->nodes[1]->input[0] = S("xp");
    refused(b, "node 'pad' (Pad): only pads on H and W of a (N,C,H,W) tensor are supported");
    teardown_arena();
}

/* Metadata and the sidecar: the input size, labels and the range the graph
 * expects; the sidecar wins. */
static void test_metadata_and_sidecar(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), path[512], err[BS_ERR_LEN];
    assert_non_null(dir);
    mb *b = reference(13);
    b->inputs[0] = vinfo("x", 4, (int64_t[]){-1, 1, -1, -1});
    prop(b, "input_shape", "[1,4,4]");
    prop(b, "labels", "[\"zero\",\"one\",\"two\"]");
    prop(b, "author", "test");
    bs_model *m = must_load(b, NULL);
    check_logits(m, 0, 1, INFINITY, 0);
    assert_string_equal(bs_model_get_meta(m, "labels"), "[\"zero\",\"one\",\"two\"]");
    assert_string_equal(bs_model_get_meta(m, "author"), "test");
    bs_model_free(m);

    size_t len;
    uint8_t *buf = pack(b, &len);
    snprintf(path, sizeof path, "%s/cls.onnx", dir);
    assert_int_equal(tu_write_file(path, buf, len), 0);
    snprintf(path, sizeof path, "%s/cls.json", dir);
    const char *side = "{\"labels\":[\"0\",\"90\",\"180\"],\"range\":[-1,1],"
                       "\"mean\":[0.5],\"std\":[0.5]}";
    assert_int_equal(tu_write_file(path, side, strlen(side)), 0);
    snprintf(path, sizeof path, "%s/cls.onnx", dir);
    m = bs_onnx_load(path, NULL, err);
    if (!m)
        fail_msg("refused: %s", err);
    /* the graph sees ((-1 + 2x) - 0.5) / 0.5 = -3 + 4x */
    check_logits(m, -3, 1, INFINITY, 0);
    assert_string_equal(bs_model_get_meta(m, "labels"), "[\"0\",\"90\",\"180\"]");
    bs_model_free(m);

    const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"labels\":[\"a\",\"b\"]}", "labels: 2 labels for 3 classes"},
        {"{\"std\":[0]}", "sidecar: std must be a list of numbers above 0"},
        {"{\"range\":[1,-1]}", "sidecar: range must be [lo, hi] with lo < hi"},
        {"{\"input_shape\":[1,4]}", "input_shape has 2 dimensions"},
        {"[1,2]", "sidecar: not a JSON object"},
        {"{\"labels\":", "not valid JSON"},
        {"{\"mean\":[1,2,3]}", "mean and std must have 1 or 1 values"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        snprintf(path, sizeof path, "%s/cls.json", dir);
        assert_int_equal(tu_write_file(path, bad[k].json, strlen(bad[k].json)), 0);
        snprintf(path, sizeof path, "%s/cls.onnx", dir);
        m = bs_onnx_load(path, NULL, err);
        if (m || !strstr(err, bad[k].want))
            fail_msg("%s: wanted \"%s\", got \"%s\"", bad[k].json, bad[k].want, err);
    }
    tu_rmtree(dir);
    free(dir);
    teardown_arena();
}

/* The daemon serves a models folder's *.onnx as it does *.safetensors: the
 * name without the extension, the platform blindspot_onnx, the sidecar's
 * labels in its metadata, and the reference's probabilities; the command
 * line predicts with it too. */
static void test_daemon_and_cli(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), path[512], cmd[1024];
    assert_non_null(dir);
    size_t len;
    uint8_t *buf = pack(reference(13), &len);
    snprintf(path, sizeof path, "%s/cls.onnx", dir);
    assert_int_equal(tu_write_file(path, buf, len), 0);
    snprintf(path, sizeof path, "%s/cls.json", dir);
    const char *side = "{\"labels\":[\"a\",\"b\",\"c\"]}";
    assert_int_equal(tu_write_file(path, side, strlen(side)), 0);

    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s predict --model %s/cls.onnx --dataset mnist --n 1 2>&1",
             tu_bin("blindspot"), dir);
    int rc = tu_run(cmd, &out);
    /* the model loaded: it takes 4x4 images, which mnist's are not */
    if (!out || !strstr(out, "but the model takes (1,4,4)"))
        fail_msg("blindspot predict: %d %s", rc, out ? out : "");
    free(out);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    daemon_proc d;
    const char *extra[] = {"--models", dir, NULL};
    assert_int_equal(daemon_start(&d, extra), 0);
    reply r;
    request_on(d.port, "/v2/models/cls", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "platform")), "blindspot_onnx");
    reply_free(&r);
    request_on(d.port, "/v1/models/cls", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *labels = json_object_get(json_object_get(r.json, "metadata"), "labels");
    assert_string_equal(json_string_value(labels), "[\"a\",\"b\",\"c\"]");
    reply_free(&r);

    float x[16], want[3];
    char body[1024];
    int n = snprintf(body, sizeof body, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,4,4],"
                     "\"datatype\":\"FP32\",\"data\":[");
    for (int k = 0; k < 16; k++) {
        x[k] = (float)((k * 7) % 16) / 16.0f;
        n += snprintf(body + n, sizeof body - (size_t)n, "%s%g", k ? "," : "", (double)x[k]);
    }
    snprintf(body + n, sizeof body - (size_t)n, "]}]}");
    request_on(d.port, "/v2/models/cls/infer",
               &(req_opts){.method = "POST", .body = body, .len = strlen(body),
                           .headers = json_body_type}, &r);
    assert_int_equal(r.status, 200);
    json_t *probs = json_object_get(json_array_get(json_object_get(r.json, "outputs"), 0), "data");
    reference_logits(x, 0, 1, INFINITY, want);
    float mx = fmaxf(want[0], fmaxf(want[1], want[2])), sum = 0;
    for (int k = 0; k < 3; k++)
        sum += (want[k] = expf(want[k] - mx));
    assert_int_equal((int)json_array_size(probs), 3);
    for (int k = 0; k < 3; k++)
        assert_float_equal(json_number_value(json_array_get(probs, (size_t)k)), want[k] / sum,
                           1e-5);
    reply_free(&r);
    assert_int_equal(daemon_stop(&d), 0);
    daemon_cleanup(&d);
    curl_global_cleanup();
    tu_rmtree(dir);
    free(dir);
    teardown_arena();
}

/* PP-OCR's text-direction classifier, a production model (make ocr
 * oracle-check puts it, its sidecar, the rendered text lines and ONNX
 * Runtime's answers in build/ocr/): loaded with its sidecar (3x48x192,
 * range [-1,1]) it gives ORT's probabilities on ORT's inputs taken back to
 * pixels, and the CLI classes each PNG as ORT does. */
#define OCR_DIR "build/ocr/"
#define OCR_MODEL OCR_DIR "ch_ppocr_mobile_v2.0_cls_infer.onnx"
#define OCR_SAMPLE (3 * 48 * 192)

/* log p1 - log p0: the logits' difference, also where p0 rounds to 1. */
static double log_odds(double p0, double p1)
{
    return log(p1) - log(p0);
}

static void test_ppocr(void **state)
{
    (void)state;
    size_t nx = 0, np = 0;
    uint8_t *xb = tu_read_file(OCR_DIR "cls.input.f32", &nx);
    uint8_t *pb = tu_read_file(OCR_DIR "cls.ort.f32", &np);
    json_t *summary = json_load_file(OCR_DIR "cls.json", 0, NULL);
    FILE *f = fopen(OCR_MODEL, "rb");
    if (!xb || !pb || !summary || !f) {
        printf("test_ppocr: skipped, no " OCR_DIR " (make ocr oracle-check makes it)\n");
        free(xb), free(pb), json_decref(summary);
        if (f)
            fclose(f);
        skip();
    }
    fclose(f);
    int n = (int)(nx / (sizeof(float) * OCR_SAMPLE));
    json_t *images = json_object_get(summary, "images");
    assert_true(n > 0 && nx == (size_t)n * sizeof(float) * OCR_SAMPLE);
    assert_int_equal(np, (size_t)n * 2 * sizeof(float));
    assert_int_equal((int)json_array_size(images), n);

    char err[BS_ERR_LEN];
    bs_model *m = bs_onnx_load(OCR_MODEL, NULL, err);
    if (!m)
        fail_msg("PP-OCR refused: %s", err);
    assert_int_equal((int)m->input_size, OCR_SAMPLE);
    assert_int_equal(m->classes, 2);
    assert_string_equal(bs_model_get_meta(m, "labels"), "[\"0\",\"180\"]");

    float *x = (float *)xb, *ort = (float *)pb;
    for (size_t i = 0; i < (size_t)n * OCR_SAMPLE; i++)
        x[i] = (x[i] + 1.0f) * 0.5f; /* ORT's [-1,1] back to pixels */
    bs_workspace *ws = bs_workspace_new(m, n);
    assert_non_null(ws);
    const float *logits = bs_model_forward(m, ws, x, n);
    for (int b = 0; b < n; b++) {
        const float *z = logits + 2 * b, *p = ort + 2 * b;
        double mx = fmax(z[0], z[1]);
        double e0 = exp(z[0] - mx), e1 = exp(z[1] - mx);
        double want = log_odds(p[0], p[1]), got = (double)z[1] - z[0];
        if (fabs(e0 / (e0 + e1) - p[0]) > 1e-5 || fabs(got - want) > 1e-3 * fmax(1.0, fabs(want)))
            fail_msg("image %d: p(0) %g, logit difference %g; ORT: p(0) %g, %g", b,
                     e0 / (e0 + e1), got, (double)p[0], want);
    }
    bs_workspace_free(ws);
    bs_model_free(m);

    for (int b = 0; b < n; b++) {
        json_t *row = json_array_get(images, (size_t)b);
        const char *image = json_string_value(json_object_get(row, "image"));
        const char *answer = json_string_value(json_object_get(row, "answer"));
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s predict --model " OCR_MODEL " --image " OCR_DIR
                 "%s --json", tu_bin("blindspot"), image);
        assert_int_equal(tu_run(cmd, &out), 0);
        json_t *doc = json_loads(out, 0, NULL);
        if (!doc)
            fail_msg("%s: not JSON: %s", cmd, out ? out : "");
        int label = (int)json_integer_value(json_object_get(doc, "label"));
        json_t *probs = json_object_get(doc, "probabilities");
        if (strcmp(label ? "180" : "0", answer) != 0)
            fail_msg("%s: label %d, ORT's answer %s", image, label, answer);
        assert_float_equal(json_number_value(json_array_get(probs, 0)), ort[2 * b], 1e-5);
        json_decref(doc);
        free(out);
    }
    json_decref(summary);
    free(xb);
    free(pb);
}

/* --- hostile files --------------------------------------------------------- */

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack(reference(13), &len);
    for (size_t cut = 1; cut < len; cut += len / 7)
        refused_bytes(buf, cut, "not an ONNX model");
    teardown_arena();
}

static void test_random_bytes(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint64_t s = 12345;
    for (size_t k = 0; k < sizeof buf; k++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        buf[k] = (uint8_t)(s >> 56);
    }
    buf[0] = 0xff; /* field 31 of wire type 7, which no message has */
    refused_bytes(buf, sizeof buf, "not an ONNX model");
    refused_bytes(buf, 0, "the model imports no opset");
}

static void test_unknown_op(void **state)
{
    (void)state;
    mb *b = reference(13);
    b->nodes[2]->op_type = S("Selu");
    refused(b, "node 'relu1' (Selu): op Selu is not supported");
    teardown_arena();
}

static void test_opsets(void **state)
{
    (void)state;
    refused(reference(8), "opset 8 of ONNX's default domain is not supported (9 to 17 are)");
    refused(reference(18), "opset 18 of ONNX's default domain is not supported (9 to 17 are)");
    mb *b = reference(13);
    b->op.domain = S("ai.onnx.ml");
    refused(b, "imports no opset of ONNX's default domain");
    b = reference(13);
    b->nodes[2]->domain = S("com.microsoft");
    refused(b, "node 'relu1' (Relu): domain 'com.microsoft' is not supported");
    teardown_arena();
}

static void test_unknown_attribute(void **state)
{
    (void)state;
    mb *b = reference(13);
    attr_i(b->nodes[2], "inplace", 1);
    refused(b, "node 'relu1' (Relu): attribute inplace is not supported");
    b = reference(13);
    attr_s(b->nodes[0], "auto_pad", "SAME_SIDEWAYS");
    refused(b, "node 'conv1' (Conv): attribute auto_pad=SAME_SIDEWAYS is not supported");
    b = reference(13);
    attr_i(b->nodes[5], "transA", 1);
    refused(b, "node 'fc' (Gemm): attribute transA=1 is not supported");
    teardown_arena();
}

static void test_undefined_and_cycle(void **state)
{
    (void)state;
    mb *b = reference(13);
    b->nodes[2]->input[0] = S("nowhere");
    refused(b, "node 'relu1' (Relu): input 'nowhere' is not defined before the node");
    /* relu1 reads pool1's output, pool1 reads relu1's: a cycle */
    b = reference(13);
    b->nodes[2]->input[0] = S("p1");
    refused(b, "node 'relu1' (Relu): input 'p1' is not defined before the node");
    b = reference(13);
    b->nodes[3]->output[0] = S("c1");
    refused(b, "tensor 'c1' is written twice");
    teardown_arena();
}

static void test_absurd_dims(void **state)
{
    (void)state;
    mb *b = reference(13);
    b->inits[0]->dims[0] = (int64_t)1 << 40;
    refused(b, "larger than");
    b = reference(13);
    b->inits[0]->dims[0] = -2;
    refused(b, "larger than");
    b = reference(13);
    b->inits[1]->n_float_data = 1;
    refused(b, "initializer 'b1' holds 1 values, its shape needs 2");
    b = reference(13);
    b->inputs[0] = vinfo("x", 4, (int64_t[]){-1, 1, (int64_t)1 << 40, 4});
    refused(b, "input 'x' has a dimension of");
    b = reference(13);
    b->inputs[0] = vinfo("x", 4, (int64_t[]){-1, 1, -1, 4});
    refused(b, "input 'x' has an unknown dimension 2: give input_shape");
    b = reference(13);
    b->inits[1]->data_type = 11;
    refused(b, "initializer 'b1' has data type double");
    /* a few bytes claiming a large tensor are refused before it is allocated */
    b = reference(13);
    b->inits[0]->dims[0] = (int64_t)1 << 23;
    refused(b, "initializer 'w1' holds 18 values, its shape needs 75497472");
    /* shape arithmetic may not make a constant much larger than its inputs */
    static const char *const big[][2] = {{"ConstantOfShape", "big_shape"}, {"Add", "col,row"}};
    for (int k = 0; k < 2; k++) {
        b = reference(13);
        init(b, tensor_i("big_shape", 4, (int64_t[]){1, 2, 4096, 4096}));
        init(b, tensor_f("col", 2, (int64_t[]){4096, 1}, A(4096 * sizeof(float))));
        init(b, tensor_f("row", 2, (int64_t[]){1, 4096}, A(4096 * sizeof(float))));
        Onnx__NodeProto *tail[5];
        memcpy(tail, b->nodes + 2, sizeof tail);
        b->g.n_node = 2;
        add(b, node(big[k][0], "big", big[k][1], "bigc"));
        add(b, node("Add", "plus", "n1,bigc", "n1b"));
        tail[0]->input[0] = S("n1b");
        for (int t = 0; t < 5; t++)
            add(b, tail[t]);
        refused(b, k ? "node 'big' (Add): a constant of shape (4096,4096) is larger than 4194304"
                     : "node 'big' (ConstantOfShape): a constant of shape (1,2,4096,4096) is "
                       "larger than 4194304");
    }
    teardown_arena();
}

static void test_inputs(void **state)
{
    (void)state;
    mb *b = reference(13);
    b->inputs[b->g.n_input++] = vinfo("y", 2, (int64_t[]){-1, 3});
    refused(b, "the graph has inputs 'x' and 'y' besides its initializers; a classifier "
               "has one");
    b = reference(13);
    b->g.n_input = 0;
    refused(b, "the graph has no input besides its initializers");
    teardown_arena();
}

/* External data: the location must stay in the model's folder and the
 * bytes must be in the file. */
static void test_external_data(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), path[512], err[BS_ERR_LEN];
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/b1.bin", dir);
    assert_int_equal(tu_write_file(path, B1, sizeof B1), 0);
    const struct {
        const char *location, *offset, *length, *want;
    } cases[] = {
        {"../b1.bin", "0", "8", "external data location '../b1.bin' leaves the model's folder"},
        {"/etc/passwd", "0", "8", "external data location '/etc/passwd' leaves"},
        {"sub/../../b1.bin", "0", "8", "leaves the model's folder"},
        {"b1.bin", "4", "8", "runs past the end of 'b1.bin' (8 bytes)"},
        {"b1.bin", "0", "12", "external data length 12 is not the 8 bytes of its shape"},
        {"missing.bin", "0", "8", "cannot open external data 'missing.bin'"},
        {"b1.bin", "0", "8", NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        mb *b = reference(13);
        Onnx__TensorProto *t = b->inits[1];
        t->n_float_data = 0;
        t->has_data_location = 1;
        t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        t->n_external_data = 3;
        t->external_data = A(3 * sizeof *t->external_data);
        const char *kv[3][2] = {{"location", cases[k].location},
                                {"offset", cases[k].offset},
                                {"length", cases[k].length}};
        for (int e = 0; e < 3; e++) {
            t->external_data[e] = A(sizeof **t->external_data);
            onnx__string_string_entry_proto__init(t->external_data[e]);
            t->external_data[e]->key = S(kv[e][0]);
            t->external_data[e]->value = S(kv[e][1]);
        }
        size_t len;
        uint8_t *buf = pack(b, &len);
        snprintf(path, sizeof path, "%s/m.onnx", dir);
        assert_int_equal(tu_write_file(path, buf, len), 0);
        bs_model *m = bs_onnx_load(path, NULL, err);
        if (!cases[k].want) {
            /* the good location reads; from memory it cannot */
            if (!m && !strstr(err, "graph:"))
                fail_msg("external data refused: %s", err);
            bs_model_free(m);
            refused(b, "has external data, which a model read from memory cannot have");
        } else if (m || !strstr(err, cases[k].want)) {
            fail_msg("%s: wanted \"%s\", got \"%s\"", cases[k].location, cases[k].want, err);
        }
    }
    tu_rmtree(dir);
    free(dir);
    teardown_arena();
}

static void test_file_errors(void **state)
{
    (void)state;
    char err[BS_ERR_LEN];
    assert_null(bs_onnx_load("/nonexistent/m.onnx", NULL, err));
    assert_non_null(strstr(err, "cannot open /nonexistent/m.onnx"));
    assert_true(bs_onnx_is_path("models/m.onnx"));
    assert_false(bs_onnx_is_path("models/m.safetensors"));
    assert_false(bs_onnx_is_path(".onnx"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_batchnorm_unfolded),
        cmocka_unit_test(test_matmul_bias_fold),
        cmocka_unit_test(test_shape_arithmetic),
        cmocka_unit_test(test_clip_bounds),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_metadata_and_sidecar),
        cmocka_unit_test(test_daemon_and_cli),
        cmocka_unit_test(test_ppocr),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_unknown_op),
        cmocka_unit_test(test_opsets),
        cmocka_unit_test(test_unknown_attribute),
        cmocka_unit_test(test_undefined_and_cycle),
        cmocka_unit_test(test_absurd_dims),
        cmocka_unit_test(test_inputs),
        cmocka_unit_test(test_external_data),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
