/* tensor_json — reading a KServe v2 inference request without turning its
 * tensor into hundreds of JSON nodes.
 *
 * A request is {"inputs": [{"name", "shape", "datatype", "data": [...]}],
 * ...}, and nearly all of its bytes are the numbers of inputs[0].data: 784
 * of them for one MNIST image. Jansson would make one json_t per number and
 * read each with strtod. bs_tensor_json_load reads that array straight
 * into floats and hands Jansson the rest of the document with the array
 * replaced by [], so that every other field is parsed and validated by
 * Jansson exactly as before.
 *
 * The promise is that nothing changes but the speed: a body is accepted
 * if and only if json_loadb(body, len, JSON_REJECT_DUPLICATES) accepts it,
 * with the same error text when it does not, and every float is the one
 * (float)json_number_value gives for its number: the correctly rounded
 * double of the literal (strtod), rounded to float; an integer literal
 * through its int64 value, as Jansson reads it (so "-0" is +0, "-0.0" is
 * -0). Whenever the array holds anything but nested arrays of numbers (a
 * string, null, a literal Jansson refuses, an integer beyond int64, a real
 * that overflows), it is left in the document for Jansson to read or
 * refuse, and the caller looks at it as it always did.
 *
 * Numbers of up to 19 significant digits with decimal exponents in
 * [-64, 63] are converted with the Eisel-Lemire algorithm (128-bit
 * products with a table of powers of ten; Lemire, "Number Parsing at a
 * Gigabyte per Second", 2021); the rare literal it cannot decide, and every
 * other literal, goes through strtod. */
#ifndef BS_TENSOR_JSON_H
#define BS_TENSOR_JSON_H

#include <jansson.h>
#include <stddef.h>

/* inputs[0].data read as floats. */
typedef struct bs_tensor_data {
    float *values; /* n floats in document order (nested arrays flattened),
                      malloc'd, owned by the caller; NULL when the array was
                      left in the document (see above) */
    size_t n;      /* numbers read, counting through every nesting level */
} bs_tensor_data;

/* Parses body (len bytes; no NUL needed) like json_loadb with
 * JSON_REJECT_DUPLICATES. On success returns the document; when
 * data->values is set, inputs[0].data in the document is an empty array
 * standing for them. On failure returns NULL with Jansson's error for the
 * whole body in *error, and data->values NULL. When memory for the floats
 * runs out the body simply goes to Jansson whole. */
json_t *bs_tensor_json_load(const char *body, size_t len, bs_tensor_data *data,
                            json_error_t *error);

/* Reads the JSON number literal at s (s < end) as Jansson would and
 * rounds it to float. Returns 0 with *out and *stop (the byte after the
 * literal), or -1 when s does not start a number JSON allows or Jansson
 * refuses it (an integer outside int64, a real beyond the double range). A
 * literal ends where the grammar does: the caller checks what follows. */
int bs_tensor_json_number(const char *s, const char *end, float *out, const char **stop);

#endif
