/* predict_json — the documents of a prediction, the ones `blindspot
 * predict --json` prints and POST /v1/models/{name}/predict answers.
 *
 * A dataset split (or a slice of it), scored:
 * {
 *   "model": "cnn", "dataset": "mnist", "split": "test",
 *   "first": 0, "images": 2000,            (the slice first .. first+images-1)
 *   "errors": 24, "error_rate": 0.012,
 *   "confusion": [[...], ...],             (rows: true label, columns:
 *                                           prediction; classes x classes)
 *   "recorded_test_error": 0.012           (on the test split, when the
 *                                           model file records one)
 * }
 *
 * One image, classified:
 * {
 *   "model": "cnn", "label": 3, "probabilities": [...],   (the softmax)
 *   "input": {"format": "png", "width": 28, "height": 28, "channels": 1,
 *             "data": base64, "inverted": false}
 *            (the image as the model saw it, after conversion; 8-bit, so
 *             within 1/510 of what was classified)
 * } */
#ifndef BS_PREDICT_JSON_H
#define BS_PREDICT_JSON_H

#include "core/model.h"

#include <jansson.h>

/* The split document for model m called name, scored on images first ..
 * first+n-1 of dataset/split: confusion holds classes x classes counts
 * (bs_evaluate's). NULL when out of memory. */
json_t *bs_predict_split_json(const char *name, const bs_model *m, const char *dataset,
                              const char *split, int first, int n, const int *confusion);

/* Classifies x (m->input_size floats in [0,1]) with m, in ws (room for
 * one sample), and makes the image document; inverted says whether the
 * conversion inverted the image. NULL with a message in err when the
 * input cannot be encoded or memory runs out. */
json_t *bs_predict_image_json(const char *name, const bs_model *m, bs_workspace *ws,
                              const float *x, int inverted, char *err);

/* {"format": "png", "width", "height", "channels", "data": base64,
 * "inverted"}: a model input x of shape (C,H,W), C 1 or 3, as an 8-bit
 * PNG. NULL with a message in err. */
json_t *bs_input_png_json(const float *x, const int shape[3], int inverted, char *err);

#endif
