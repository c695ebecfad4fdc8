/* onnx — imports a classifier saved as ONNX (a ModelProto file) into a
 * bs_model graph (core/model.h).
 *
 * The importer reads the file with protobuf-c, accepts the default domain
 * at opsets BS_ONNX_OPSET_MIN..BS_ONNX_OPSET_MAX, takes the one graph input
 * that is not an initializer as the model's input (its first dimension the
 * batch), evaluates the shape arithmetic exporters leave (Shape, Gather,
 * Slice, Concat, ... on constants) for that input's size, and maps every
 * other node to the graph ops of core/model.h, folding BatchNormalization
 * into the convolution before it and a bias Add into the linear layer
 * before it. Whatever it cannot map exactly it refuses, naming the node,
 * its op and the reason: a model loads and answers as ONNX Runtime would,
 * or does not load. docs/models.md lists the ops and the rules.
 *
 * Metadata: the model's metadata_props and a sidecar `<model>.json` beside
 * the file (the sidecar wins) may give
 *   input_shape [C,H,W]   the size for the input's unknown dimensions
 *   labels ["a", ...]      class names, kept as the model's "labels" meta
 *   mean [..], std [..]    per-channel normalisation the graph expects
 *   range [lo, hi]         the pixel range the graph expects (default [0,1])
 * The normalisation becomes leading Mul and Add nodes, so that the model's
 * own input is always pixels in [0,1]: the graph sees
 * ((lo + (hi - lo) x) - mean) / std. Every other metadata entry is kept. */
#ifndef BS_ONNX_H
#define BS_ONNX_H

#include "core/model.h"

#include <stddef.h>
#include <stdint.h>

#define BS_ONNX_OPSET_MIN 9
#define BS_ONNX_OPSET_MAX 17
#define BS_ONNX_MAX_FILE (1024u * 1024u * 1024u) /* bytes of a model file */
#define BS_ONNX_MAX_NODES 100000                /* nodes of a file's graph */

/* A graph input bound to a constant: data holds a serialized TensorProto. */
typedef struct bs_onnx_const {
    const char *name;
    const uint8_t *data;
    size_t len;
} bs_onnx_const;

typedef struct bs_onnx_options {
    int input_rank;           /* 0, or the rank of input_shape */
    int input_shape[BS_MAX_RANK]; /* one sample's shape for the input's
                                   * unknown dims; wins over the metadata */
    int batch;                /* the batch the shape arithmetic sees (0: 1) */
    int keep_softmax;         /* keep a final Softmax rather than drop it */
    const bs_onnx_const *consts; /* graph inputs that are constants */
    int n_consts;
} bs_onnx_options;

/* Reads the file at path (at most BS_ONNX_MAX_FILE bytes), its sidecar
 * and external data beside it. opt may be NULL. Returns a model to free
 * with bs_model_free, or NULL with a message in err (BS_ERR_LEN). */
bs_model *bs_onnx_load(const char *path, const bs_onnx_options *opt, char *err);

/* The same from the len bytes of a file in memory: no sidecar, and
 * tensors with external data are refused. */
bs_model *bs_onnx_load_buffer(const uint8_t *buf, size_t len,
                              const bs_onnx_options *opt, char *err);

/* 1 when path names an ONNX file (ends in ".onnx"). */
int bs_onnx_is_path(const char *path);

#endif
