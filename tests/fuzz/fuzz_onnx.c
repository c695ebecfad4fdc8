/* fuzz_onnx — core/onnx.h's importer on any bytes read as an ONNX model
 * file (a model file is trusted no more than a request: the daemon loads
 * the *.onnx files users put in its models folder).
 *
 * Promises checked: a refused file gives NULL and a message; a loaded
 * model is whole (nodes that read only earlier tensors, the last node's
 * output the logits, every parameter and constant inside the parameter
 * array) and runs forward on a zero image without a fault. */
#include "tests/fuzz/fuzz.h"

#include "core/onnx.h"

static void check_model(const bs_model *m)
{
    PROMISE(m->n_layers >= 1 && m->n_layers <= BS_MAX_NODES, "%d nodes", m->n_layers);
    PROMISE(m->n_tensors >= 2 && m->n_tensors <= BS_MAX_TENSORS, "%d tensors", m->n_tensors);
    PROMISE(m->output == m->layers[m->n_layers - 1].out, "the logits are tensor %d, the "
            "last node writes %d", m->output, m->layers[m->n_layers - 1].out);
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        PROMISE(l->n_in >= 1 && l->n_in <= BS_MAX_INPUTS, "node %d has %d inputs", i, l->n_in);
        for (int k = 0; k < l->n_in; k++)
            PROMISE(l->in[k] >= 0 && l->in[k] < l->out, "node %d reads tensor %d, writes %d",
                    i, l->in[k], l->out);
        PROMISE(l->weight_off + l->weight_size <= m->n_params &&
                    l->bias_off + l->bias_size <= m->n_params,
                "node %d's parameters beyond the %zu", i, m->n_params);
    }
    for (int t = 0; t < m->n_tensors; t++)
        PROMISE(!m->tensors[t].constant || m->tensors[t].off + m->tensors[t].size <= m->n_params,
                "constant %d beyond the parameters", t);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_onnx_load_buffer(buf, len, NULL, err);
    if (!m) {
        PROMISE(err[0], "refused without a message");
        return 0;
    }
    check_model(m);
    /* a forward pass where it is cheap */
    if (m->input_size <= 4096 && bs_model_macs(m) <= (1u << 20)) {
        float *x = calloc(m->input_size, sizeof *x);
        bs_workspace *ws = bs_workspace_new(m, 1);
        if (x && ws)
            bs_model_forward(m, ws, x, 1);
        bs_workspace_free(ws);
        free(x);
    }
    bs_model_free(m);
    return 0;
}
