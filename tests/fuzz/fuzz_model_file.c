/* fuzz_model_file — core/model_file.h's safetensors loader on any bytes
 * (a model file is trusted no more than a request: the daemon loads files
 * users put in its models folder, and PyTorch exports them), and the
 * architecture list of its metadata on any text.
 *
 * Promises checked: a refused file gives NULL and a message; a loaded
 * model is whole (1 to BS_MAX_LAYERS layers chained shape to shape, the
 * input size the product of the input shape, the last layer's output the
 * classes, parameters within the file's bytes) and survives the round
 * trip: saved, loaded again and saved again it gives the same
 * parameters, metadata and a byte-identical file (saving is
 * deterministic). */
#include "tests/fuzz/fuzz.h"

#include "core/model_file.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file's bytes, malloc'd, in *len. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    PROMISE(f != NULL, "cannot open %s", path);
    struct stat st;
    PROMISE(fstat(fileno(f), &st) == 0, "cannot stat %s", path);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    PROMISE(b && fread(b, 1, (size_t)st.st_size, f) == (size_t)st.st_size, "cannot read %s",
            path);
    fclose(f);
    *len = (size_t)st.st_size;
    return b;
}

static void check_model(const bs_model *m, size_t len)
{
    PROMISE(m->n_layers >= 1 && m->n_layers <= BS_MAX_LAYERS, "%d layers", m->n_layers);
    size_t size = (size_t)m->input_shape[0] * (size_t)m->input_shape[1] * (size_t)m->input_shape[2];
    PROMISE(m->input_shape[0] > 0 && m->input_shape[1] > 0 && m->input_shape[2] > 0 &&
                size == m->input_size,
            "input shape against input size %zu", m->input_size);
    size_t in = m->input_size;
    for (int i = 0; i < m->n_layers; i++) {
        const bs_layer *l = &m->layers[i];
        PROMISE(l->in_size == in && l->out_size > 0, "layer %d takes %zu of %zu", i, l->in_size,
                in);
        PROMISE(l->weight_off + l->weight_size <= m->n_params &&
                    l->bias_off + l->bias_size <= m->n_params,
                "layer %d's parameters beyond the %zu", i, m->n_params);
        in = l->out_size;
    }
    PROMISE(in == (size_t)m->classes && m->classes > 0, "%zu outputs for %d classes", in,
            m->classes);
    PROMISE(m->n_params * sizeof(float) <= len && (m->n_params == 0 || m->params),
            "%zu parameters from %zu bytes", m->n_params, len);
}

static void check_round_trip(const bs_model *m)
{
    char path[64], err[BS_ERR_LEN];
    snprintf(path, sizeof path, "/tmp/fuzz_model_file.%d.safetensors", (int)getpid());
    PROMISE(bs_model_save(m, path, err) == 0, "a loaded model does not save: %s", err);
    size_t len;
    uint8_t *first = slurp(path, &len);
    bs_model *again = bs_model_load(path, err);
    PROMISE(again != NULL, "a saved model does not load: %s", err);
    PROMISE(again->n_params == m->n_params && again->n_layers == m->n_layers &&
                again->n_meta == m->n_meta &&
                !memcmp(again->params, m->params, m->n_params * sizeof(float)),
            "the model changed through its file");
    for (int i = 0; i < m->n_meta; i++) {
        const char *v = bs_model_get_meta(again, m->meta[i].key);
        PROMISE(v && !strcmp(v, m->meta[i].value), "metadata %s lost", m->meta[i].key);
    }
    PROMISE(bs_model_save(again, path, err) == 0, "saving again failed: %s", err);
    size_t len2;
    uint8_t *second = slurp(path, &len2);
    PROMISE(len == len2 && !memcmp(first, second, len), "saving is not deterministic");
    unlink(path);
    free(first);
    free(second);
    bs_model_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t len)
{
    char err[BS_ERR_LEN] = "";
    bs_model *m = bs_model_load_buffer(buf, len, err);
    if (!m) {
        PROMISE(err[0], "refused without a message");
    } else {
        check_model(m, len);
        check_round_trip(m);
        bs_model_free(m);
    }

    char *text = fuzz_text(buf, len);
    if (!text)
        return 0;
    bs_layer layers[BS_MAX_LAYERS];
    int n = -1;
    err[0] = '\0';
    if (bs_arch_from_json(text, layers, &n, err) == 0)
        PROMISE(n >= 0 && n <= BS_MAX_LAYERS, "%d layers", n);
    else
        PROMISE(err[0], "an architecture refused without a message");
    free(text);
    return 0;
}
