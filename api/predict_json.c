/* predict_json — the documents of a prediction; see predict_json.h. */
#include "api/predict_json.h"

#include "api/base64.h"
#include "api/image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *bs_predict_split_json(const char *name, const bs_model *m, const char *dataset,
                              const char *split, int first, int n, const int *confusion)
{
    int V = m->classes, errors = 0;
    json_t *rows = json_array();
    for (int y = 0; y < V; y++) {
        json_t *row = json_array();
        for (int p = 0; p < V; p++) {
            json_array_append_new(row, json_integer(confusion[y * V + p]));
            errors += y != p ? confusion[y * V + p] : 0;
        }
        json_array_append_new(rows, row);
    }
    json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:o}", "model", name,
                            "dataset", dataset, "split", split, "first", first, "images", n,
                            "errors", errors, "error_rate", (double)errors / n, "confusion",
                            rows);
    /* The recorded error was measured on the model's own test split. */
    const char *recorded = bs_model_get_meta(m, "blindspot.test_error");
    if (doc && recorded && !strcmp(split, "test"))
        json_object_set_new(doc, "recorded_test_error", json_real(atof(recorded)));
    return doc;
}

json_t *bs_input_png_json(const float *x, const int shape[3], int inverted, char *err)
{
    int C = shape[0], H = shape[1], W = shape[2];
    size_t plane = (size_t)H * W, n = (size_t)C * plane;
    uint8_t *planes = malloc(n), *png = NULL;
    size_t png_len = 0;
    char *b64 = NULL;
    snprintf(err, BS_ERR_LEN, "out of memory");
    if (planes) {
        bs_image_to_bytes(x, n, planes);
        if (!bs_image_encode_planes(planes, C, H, W, BS_IMAGE_PNG, 0, &png, &png_len, err))
            b64 = bs_base64_encode(png, png_len);
    }
    free(planes);
    free(png);
    json_t *o = b64 ? json_pack("{s:s, s:i, s:i, s:i, s:s, s:b}", "format", "png", "width", W,
                                "height", H, "channels", C, "data", b64, "inverted", inverted)
                    : NULL;
    free(b64);
    return o;
}

json_t *bs_predict_image_json(const char *name, const bs_model *m, bs_workspace *ws,
                              const float *x, int inverted, char *err)
{
    bs_model_forward(m, ws, x, 1);
    bs_model_loss(m, ws, (const int[1]){0}, 1); /* the softmax, into ws->probs */
    const float *probs = ws->probs;
    json_t *input = bs_input_png_json(x, m->input_shape, inverted, err);
    json_t *p = json_array();
    if (!input || !p) {
        json_decref(input);
        json_decref(p);
        return NULL;
    }
    for (int i = 0; i < m->classes; i++)
        json_array_append_new(p, json_real(probs[i]));
    return json_pack("{s:s, s:i, s:o, s:o}", "model", name, "label",
                     bs_argmax(probs, m->classes), "probabilities", p, "input", input);
}
