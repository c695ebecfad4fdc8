/* test_onnx_node — ONNX's own conformance tests (the Debian package
 * libonnx-testdata) through the importer and the graph executor: every test
 * of node/, pytorch-converted/ and pytorch-operator/ whose ops are all ones
 * the importer knows is loaded, with input_0 as the data (its first
 * dimension the batch) and the other inputs as constants, run forward and
 * compared with output_0 (rtol 1e-3, atol 1e-5). A test may be refused with
 * a reason; none may give a wrong answer. The summary line is the count
 * docs/models.md records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/onnx.h"
#include "onnx.pb-c.h"
#include "tests/testutil.h"

#define TESTDATA "/usr/share/libonnx-testdata/data"
#define MAX_INPUTS 8
#define MAX_REASONS 256
#define RTOL 1e-3
#define ATOL 1e-5

/* The ops of docs/models.md: a test is run when all its nodes are these. */
static const char *const supported[] = {
    "Conv", "BatchNormalization", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Concat",
    "Pad", "Dropout", "Identity", "Softmax", "LogSoftmax", "Constant", "Shape",
    "Slice", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape", NULL};

typedef struct tally {
    int n, passed, refused, failed;
    int n_reasons;
    char *reasons[MAX_REASONS];
    int counts[MAX_REASONS];
    char failures[4096];
} tally;

static int is_supported(const char *op)
{
    for (const char *const *s = supported; *s; s++)
        if (!strcmp(*s, op))
            return 1;
    return 0;
}

/* A refusal's reason without the node's name, so that alike ones group. */
static void add_reason(tally *t, const char *msg)
{
    const char *r = strstr(msg, "): ");
    r = r ? r + 3 : msg;
    for (int k = 0; k < t->n_reasons; k++)
        if (!strcmp(t->reasons[k], r)) {
            t->counts[k]++;
            return;
        }
    if (t->n_reasons < MAX_REASONS) {
        t->reasons[t->n_reasons] = strdup(r);
        t->counts[t->n_reasons++] = 1;
    }
}

static Onnx__TensorProto *read_tensor(const char *path, uint8_t **buf, size_t *len)
{
    *buf = tu_read_file(path, len);
    return *buf ? onnx__tensor_proto__unpack(NULL, *len, *buf) : NULL;
}

/* The floats of a float TensorProto (raw or typed), or NULL. */
static float *tensor_floats(const Onnx__TensorProto *tp, size_t *n)
{
    size_t count = 1;
    for (size_t d = 0; d < tp->n_dims; d++)
        count *= (size_t)tp->dims[d];
    if (tp->data_type != 1)
        return NULL;
    float *v = malloc(count * sizeof *v + 1);
    if (!v)
        return NULL;
    if (count == 0)
        ;
    else if (tp->has_raw_data && tp->raw_data.len == count * 4)
        memcpy(v, tp->raw_data.data, count * 4);
    else if (tp->n_float_data == count)
        memcpy(v, tp->float_data, count * 4);
    else {
        free(v);
        return NULL;
    }
    *n = count;
    return v;
}

/* Runs one test folder; returns 0 when it is not one of the supported ops'. */
static int run_case(tally *t, const char *dir, const char *name)
{
    char path[1024], err[BS_ERR_LEN], msg[BS_ERR_LEN + 64];
    size_t len;
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    uint8_t *buf = tu_read_file(path, &len);
    Onnx__ModelProto *mp = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
    free(buf);
    if (!mp) /* a model the test suite itself holds should parse */
        fail_msg("%s does not parse", path);
    if (!mp || !mp->graph)
        return 0;
    int ok = mp->graph->n_node > 0;
    for (size_t k = 0; ok && k < mp->graph->n_node; k++)
        ok = is_supported(mp->graph->node[k]->op_type);
    /* the graph inputs that are not initializers, in order */
    const char *inputs[MAX_INPUTS];
    int n_inputs = 0;
    for (size_t k = 0; ok && k < mp->graph->n_input; k++) {
        int init = 0;
        for (size_t i = 0; i < mp->graph->n_initializer; i++)
            init |= !strcmp(mp->graph->initializer[i]->name, mp->graph->input[k]->name);
        if (!init && n_inputs < MAX_INPUTS)
            inputs[n_inputs++] = mp->graph->input[k]->name;
    }
    if (!ok) {
        onnx__model_proto__free_unpacked(mp, NULL);
        return 0;
    }
    t->n++;
    uint8_t *bufs[MAX_INPUTS] = {0}, *obuf = NULL, *mbuf = NULL;
    Onnx__TensorProto *x = NULL, *y = NULL;
    bs_onnx_const consts[MAX_INPUTS];
    bs_model *m = NULL;
    bs_workspace *ws = NULL;
    float *xv = NULL, *yv = NULL;
    size_t nx = 0, ny = 0;
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_0.pb", dir, name);
    x = read_tensor(path, &bufs[0], &len);
    if (!x || !(xv = tensor_floats(x, &nx)) || x->n_dims < 2 || x->n_dims > BS_MAX_RANK + 1) {
        add_reason(t, !x || !xv ? "the data input is not a float tensor"
                                : "the data input's rank is not 2 to 5 (the batch and "
                                  "1 to 4 dimensions)");
        t->refused++;
        goto done;
    }
    bs_onnx_options opt = {.batch = (int)x->dims[0], .keep_softmax = 1,
                           .input_rank = (int)x->n_dims - 1, .consts = consts};
    for (size_t d = 1; d < x->n_dims; d++)
        opt.input_shape[d - 1] = (int)x->dims[d];
    for (int k = 1; k < n_inputs; k++) {
        snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%d.pb", dir, name, k);
        bufs[k] = tu_read_file(path, &len);
        if (!bufs[k])
            break;
        consts[opt.n_consts++] = (bs_onnx_const){inputs[k], bufs[k], len};
    }
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    snprintf(err, sizeof err, "cannot read model.onnx");
    if (!(mbuf = tu_read_file(path, &len)) || !(m = bs_onnx_load_buffer(mbuf, len, &opt, err))) {
        add_reason(t, err);
        t->refused++;
        goto done;
    }
    snprintf(path, sizeof path, "%s/%s/test_data_set_0/output_0.pb", dir, name);
    y = read_tensor(path, &obuf, &len);
    yv = y ? tensor_floats(y, &ny) : NULL;
    int B = opt.batch;
    size_t per = m->tensors[m->output].size;
    if (!yv || nx != (size_t)B * m->input_size || ny != (size_t)B * per) {
        snprintf(msg, sizeof msg, " %s (sizes: %zu outputs expected, %zu given)", name,
                 ny, (size_t)B * per);
        strncat(t->failures, msg, sizeof t->failures - strlen(t->failures) - 1);
        t->failed++;
        goto done;
    }
    ws = bs_workspace_new(m, B);
    const float *out = ws ? bs_model_forward(m, ws, xv, B) : NULL;
    size_t bad = ny;
    double worst = 0;
    for (size_t k = 0; out && k < ny; k++) {
        double d = fabs((double)out[k] - yv[k]);
        int same = (isnan(out[k]) && isnan(yv[k])) || out[k] == yv[k] ||
                   d <= ATOL + RTOL * fabs(yv[k]);
        if (!same && (bad == ny || d > worst)) {
            bad = k;
            worst = d;
        }
    }
    if (!out || bad != ny) {
        snprintf(msg, sizeof msg, " %s (at %zu: %g, expected %g)", name, bad,
                 out && bad < ny ? out[bad] : NAN, bad < ny ? yv[bad] : NAN);
        strncat(t->failures, msg, sizeof t->failures - strlen(t->failures) - 1);
        t->failed++;
    } else {
        t->passed++;
    }
done:
    bs_workspace_free(ws);
    bs_model_free(m);
    if (x)
        onnx__tensor_proto__free_unpacked(x, NULL);
    if (y)
        onnx__tensor_proto__free_unpacked(y, NULL);
    for (int k = 0; k < MAX_INPUTS; k++)
        free(bufs[k]);
    free(obuf);
    free(mbuf);
    free(xv);
    free(yv);
    onnx__model_proto__free_unpacked(mp, NULL);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_folder(tally *t, const char *sub)
{
    char dir[512];
    struct dirent **list;
    snprintf(dir, sizeof dir, "%s/%s", TESTDATA, sub);
    int n = scandir(dir, &list, NULL, by_name);
    for (int k = 0; k < n; k++) {
        if (!strncmp(list[k]->d_name, "test_", 5))
            run_case(t, dir, list[k]->d_name);
        free(list[k]);
    }
    if (n >= 0)
        free(list);
}

static void test_node_conformance(void **state)
{
    (void)state;
    tally t = {0};
    run_folder(&t, "node");
    run_folder(&t, "pytorch-converted");
    run_folder(&t, "pytorch-operator");
    printf("onnx node tests: %d passed, %d refused, %d failed of %d (supported ops)\n",
           t.passed, t.refused, t.failed, t.n);
    for (int k = 0; k < t.n_reasons; k++) {
        printf("  refused %3d: %s\n", t.counts[k], t.reasons[k]);
        free(t.reasons[k]);
    }
    if (t.failed)
        printf("  wrong answers:%s\n", t.failures);
    assert_true(t.n > 100);
    assert_true(t.passed > 0);
    assert_int_equal(t.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_conformance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
