/* oip_tensor — the tensor datatypes of the Open Inference Protocol (KServe
 * V2) and their conversion to the FP32 a model takes, from JSON numbers or
 * from raw little-endian bytes (Triton's binary tensor data extension).
 *
 * The models are FP32; an input of another numeric datatype is converted
 * value by value: FP16 exactly (every half is a float), FP64 rounded to the
 * nearest float, integers to the nearest float. A value that does not fit
 * is refused, never wrapped or clamped: an integer outside its datatype's
 * range or a JSON real with a fraction for an integer datatype, and any
 * value that is not finite as a float (1e39, an FP64 infinity, an FP16 NaN).
 * BOOL and BYTES hold no numbers to classify and are refused by name. */
#ifndef BS_API_OIP_TENSOR_H
#define BS_API_OIP_TENSOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* X(NAME, "wire name", bytes per element; 0 for BYTES, whose elements
 * carry their own length) */
#define BS_OIP_DATATYPE_TABLE(X) \
    X(BOOL, "BOOL", 1)           \
    X(UINT8, "UINT8", 1)         \
    X(UINT16, "UINT16", 2)       \
    X(UINT32, "UINT32", 4)       \
    X(UINT64, "UINT64", 8)       \
    X(INT8, "INT8", 1)           \
    X(INT16, "INT16", 2)         \
    X(INT32, "INT32", 4)         \
    X(INT64, "INT64", 8)         \
    X(FP16, "FP16", 2)           \
    X(FP32, "FP32", 4)           \
    X(FP64, "FP64", 8)           \
    X(BYTES, "BYTES", 0)

typedef enum bs_oip_datatype {
#define BS_OIP_DATATYPE_ENUM(name, wire, size) BS_OIP_##name,
    BS_OIP_DATATYPE_TABLE(BS_OIP_DATATYPE_ENUM)
#undef BS_OIP_DATATYPE_ENUM
    BS_OIP_DATATYPES
} bs_oip_datatype;

/* What a conversion found. */
typedef enum bs_oip_status {
    BS_OIP_OK,
    BS_OIP_NOT_A_NUMBER,   /* a JSON value that is neither a number nor an array */
    BS_OIP_OUT_OF_RANGE,   /* a value the datatype or a float cannot hold */
} bs_oip_status;

/* The datatype of wire name name ("FP32"), or -1. */
int bs_oip_datatype_find(const char *name);
/* The wire name of t. */
const char *bs_oip_datatype_name(bs_oip_datatype t);
/* Bytes per element of t (0 for BYTES). */
size_t bs_oip_datatype_size(bs_oip_datatype t);
/* Non-zero when t holds numbers that can become a model's FP32 input. */
int bs_oip_datatype_numeric(bs_oip_datatype t);

/* Flattens data (nested arrays of JSON numbers, row-major) read as
 * numeric datatype t into out (room for cap floats; out may be NULL to
 * count only). *n counts every number seen, so a wrong total can be told
 * apart. On a bad value returns its status with its flat index in *bad. */
bs_oip_status bs_oip_json_to_float(const json_t *data, bs_oip_datatype t, float *out,
                                   size_t cap, size_t *n, size_t *bad);

/* Converts n elements of numeric datatype t, little-endian at raw
 * (n * bs_oip_datatype_size(t) bytes, any alignment), into out. On a value
 * that is not finite as a float returns BS_OIP_OUT_OF_RANGE with its index
 * in *bad. */
bs_oip_status bs_oip_binary_to_float(const uint8_t *raw, bs_oip_datatype t, size_t n,
                                     float *out, size_t *bad);

/* The float of the IEEE 754 half h, exactly. */
float bs_oip_half_to_float(uint16_t h);

#endif
