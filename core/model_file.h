/* model_file — reads and writes models as safetensors files.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON header
 * and the raw little-endian float data. The header maps each tensor name to
 * {"dtype":"F32","shape":[...],"data_offsets":[begin,end]} (offsets into
 * the data section) and holds "__metadata__", an object of strings. Tensor
 * names follow PyTorch's nn.Sequential state_dict: layer i's parameters are
 * "i.weight" (linear (OC,C), conv2d (OC,C,K,K)) and "i.bias" (OC), so a
 * PyTorch model exports with safetensors.torch.save_file(state_dict, path,
 * metadata). Three metadata keys describe the network and are generated
 * from the model on save:
 *   blindspot.arch         the layers as a JSON list (see bs_arch_to_json)
 *   blindspot.input_shape  "[C,H,W]"
 *   blindspot.classes      "10"
 * Every other metadata entry (dataset, measured errors, training command)
 * round-trips unchanged through bs_model.meta.
 *
 * Loading trusts nothing in the file: every length, offset, shape and
 * hyper-parameter is checked before use, and a refused file gives NULL with
 * a message naming the problem (and the tensor, where there is one). Saving
 * is deterministic: the same model gives a byte-identical file. */
#ifndef BS_MODEL_FILE_H
#define BS_MODEL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

/* Largest JSON header accepted, as in the reference safetensors reader. */
#define BS_MODEL_MAX_HEADER (100u * 1000u * 1000u)

/* Reads path and loads it with bs_model_load_buffer. Returns a model to
 * free with bs_model_free, or NULL with a message in err (BS_ERR_LEN). */
bs_model *bs_model_load(const char *path, char *err);

/* Loads a model from the len bytes of a safetensors file in buf (which
 * need not be aligned or NUL-terminated). The three blindspot.* keys above
 * become the model's structure and are not copied into m->meta; all other
 * metadata is. Returns NULL with a message in err on any inconsistency. */
bs_model *bs_model_load_buffer(const uint8_t *buf, size_t len, char *err);

/* Writes m to path.tmp and renames it onto path, so a reader never sees a
 * half-written file. Tensors are laid out in layer order, header keys
 * sorted, the header padded with spaces to a multiple of 8 bytes. Returns 0,
 * or -1 with a message in err. */
int bs_model_save(const bs_model *m, const char *path, char *err);

/* The model's layers as compact JSON with sorted keys, e.g.
 * [{"type":"flatten"},{"out_features":100,"type":"linear"}]. Only
 * hyper-parameters are written (in features follow from the input shape).
 * Returns a malloc'd string (free with free), or NULL when out of memory. */
char *bs_arch_to_json(const bs_model *m);

/* Parses such a list into layers (room for BS_MAX_LAYERS) and sets
 * *n_layers; shapes are left for bs_model_build. Optional fields take
 * PyTorch's defaults: conv2d stride 1, padding 0; maxpool2d stride =
 * kernel; dropout p 0.5. Unknown types or fields and out-of-range values
 * are refused. Returns 0, or -1 with a message in err. */
int bs_arch_from_json(const char *json, bs_layer *layers, int *n_layers,
                      char *err);

#endif
