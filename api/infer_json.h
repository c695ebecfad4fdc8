/* infer_json — the answer of a KServe v2 inference, written straight to
 * JSON text, with the binary tensor data extension's raw outputs after it.
 *
 * The answer is
 *   {"model_name": "fc100-100-10", "model_version": "1",
 *    "outputs": [{"name": "probabilities", "datatype": "FP32",
 *                 "shape": [B, V], "data": [...B*V reals...]},
 *                {"name": "label", "datatype": "INT64", "shape": [B],
 *                 "data": [...B integers...]}],
 *    "id": "..."}
 * with either output left out when not asked for and "id" only when the
 * request had one. The text is byte for byte what json_dumps gives for
 * that document with JSON_COMPACT | JSON_REAL_PRECISION(9) (reals as "%.9g",
 * enough to give back every float exactly, with Jansson's touches: ".0" on
 * a real that prints as an integer, no '+' or leading zeros in exponents;
 * a non-finite real left out, as Jansson refuses to make one). Building
 * 20-odd json_t nodes and dumping them cost more than the inference of one
 * MNIST image.
 *
 * Two extensions of Triton change an output. Classification (top_k > 0):
 * "probabilities" becomes BYTES of shape [B, k], each sample's k most
 * probable classes, most probable first (ties: lower index first), as
 * "value:index" strings with the value printed "%f" (C++'s std::to_string,
 * as Triton prints it). Binary data: a binary output has
 * "parameters": {"binary_data_size": N} in place of "data", and its N
 * bytes follow the JSON in output order: FP32 and INT64 little-endian,
 * BYTES as a 4-byte little-endian length before each string. */
#ifndef BS_INFER_JSON_H
#define BS_INFER_JSON_H

#include <stddef.h>

/* What the answer says. */
typedef struct bs_infer_answer {
    const char *model_name;     /* UTF-8 */
    const char *model_version;  /* UTF-8 */
    const char *id;             /* UTF-8, echoed; NULL: no "id" */
    int batch;                  /* B */
    int classes;                /* V */
    const float *probabilities; /* B*V, row-major; NULL: no such output */
    const int *labels;          /* B; NULL: no such output */
    int top_k;                  /* > 0 (at most V): probabilities as top_k classifications */
    int probabilities_binary;   /* non-zero: the probabilities output as binary data */
    int labels_binary;          /* non-zero: the label output as binary data */
} bs_infer_answer;

/* The answer as a malloc'd buffer of *len bytes: the JSON text (*json_len
 * bytes, NUL-terminated when no output is binary, then *len == *json_len)
 * followed by the binary outputs. NULL when out of memory. */
char *bs_infer_answer_json(const bs_infer_answer *a, size_t *len, size_t *json_len);

#endif
