#!/usr/bin/env bash
# Regenerates the seed corpora of tests/fuzz/corpus/ (a few small, real
# inputs per target; kilobytes in all). Run from the repository root after
# `make build`: bash tests/fuzz/make_corpus.sh
#
# Images come from the project's own encoder (tests/fuzz/seed_images.c,
# linked with build/libblindspot.a); inference bodies, IDX files and the
# model file are written here as a client or PyTorch would write them; the
# MNIST digit is the first of data/mnist's test split.
set -eu
out=tests/fuzz/corpus
rm -rf "$out"
mkdir -p "$out"/{accept,attack_request,auth,cors,host,base64,idx,image,model_file,multipart,onnx,oip_tensor,outbound,tensor_json,v1_bodies,v2_infer}

pkgs="jansson zlib openblas spng libturbojpeg"
gcc -std=c11 -O1 -I. $(pkg-config --cflags $pkgs) tests/fuzz/seed_images.c build/libblindspot.a \
    $(pkg-config --libs $pkgs) -llbfgsb -lm -lpthread -o build/seed_images
build/seed_images "$out"

python3 - "$out" <<'PY'
import gzip, json, struct, sys
out = sys.argv[1]

def put(name, data):
    with open(f"{out}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# the first test digit, as pixels in [0,1]
with gzip.open("data/mnist/test-images-idx3-ubyte.gz") as f:
    raw = f.read()
digit = [b / 255 for b in raw[16:16 + 784]]

def infer(data, shape, datatype="FP32", **extra):
    body = {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}
    body.update(extra)
    return json.dumps(body, separators=(",", ":"))

# Open Inference Protocol bodies, as KServe's and Triton's clients send them
put("tensor_json/mnist_digit.json", infer([round(v, 6) for v in digit], [1, 1, 28, 28]))
put("tensor_json/nested.json", infer([[[0.5, 1e-3], [-0.0, 1]], [[2.5e-1, 0], [1E2, 7]]],
                                     [2, 1, 2, 2], id="req-1",
                                     outputs=[{"name": "probabilities"}],
                                     parameters={"content_type": "pb"}))
put("tensor_json/int8.json", infer([0, -128, 127, 3], [1, 4], "INT8"))
put("tensor_json/binary_head.json",
    json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                            "parameters": {"binary_data_size": 16}}],
                "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}))
put("tensor_json/numbers.json", infer([1.7976931348623157e308, 4.9e-324, 123456789012345678,
                                       -9223372036854775808, 0.1, 3.4028235e38], [6]))

# v2_infer: the Inference-Header-Content-Length line (empty: none), then
# the body, for the target's model "tiny" with inputs (1,2,2)
put("v2_infer/json", "\n" + infer([[[0.5, 1], [0, 0.25]]], [1, 1, 2, 2], id="a",
                                   outputs=[{"name": "label"}]))
put("v2_infer/flat_batch", "\n" + infer([0, 0.5, 1, 0.5, 1, 1, 0, 0], [2, 4],
                                         outputs=[{"name": "probabilities",
                                                   "parameters": {"classification": 2}}]))
def binary(datatype, fmt, values, shape, binary_out):
    raw = struct.pack(fmt, *values)
    head = json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "probabilities",
                                    "parameters": {"binary_data": binary_out}}]},
                      separators=(",", ":")).encode()
    return str(len(head)).encode() + b"\n" + head + raw
put("v2_infer/binary_fp32", binary("FP32", "<4f", [0, 0.5, 1, 0.25], [1, 1, 2, 2], True))
put("v2_infer/binary_fp16", binary("FP16", "<8e", [0, 0.5, 1, 0.25] * 2, [2, 1, 2, 2], False))
put("v2_infer/binary_uint8", binary("UINT8", "<4B", [0, 128, 255, 7], [1, 4], True))

# v1_bodies: a byte picking the endpoint (predict, attacks, evaluations,
# units), then the JSON body, for "tiny" and a 3-image mnist test split
def v1(endpoint, body):
    return bytes([endpoint]) + json.dumps(body, separators=(",", ":")).encode()
put("v1_bodies/predict_image", v1(0, {"image": {"data": [0, 0.5, 1, 0.25], "shape": [1, 2, 2]},
                                      "invert": "no"}))
put("v1_bodies/predict_slice", v1(0, {"dataset": "mnist", "split": "test", "first": 1, "n": 2}))
put("v1_bodies/attack", v1(1, {"model": "tiny", "target": 1, "method": "fgsm",
                               "image": {"dataset": "mnist", "index": 2}, "report": ["tiny"]}))
put("v1_bodies/evaluation", v1(2, {"models": ["tiny"], "n": 2, "method": "fgsm", "seed": 3,
                                   "noise": [0.1], "magnify": 0}))
put("v1_bodies/units", v1(3, {"layer": 1, "direction": 0, "k": 2, "seed": 1}))
put("v1_bodies/units_summary", v1(3, {"layer": 1, "summary": 2, "k": 2}))

# oip_tensor: a datatype byte (index among the numeric datatypes), then
# raw little-endian elements or a JSON array
put("oip_tensor/fp32_raw", bytes([9]) + struct.pack("<4f", 0.0, 0.5, 1.0, -2.0))
put("oip_tensor/fp16_raw", bytes([8]) + struct.pack("<4e", 0.0, 0.5, 65504.0, -6.1e-5))
put("oip_tensor/fp64_raw", bytes([10]) + struct.pack("<2d", 0.25, 1e300))
put("oip_tensor/uint8_raw", bytes([0]) + bytes([0, 128, 255, 7]))
put("oip_tensor/int64_raw", bytes([7]) + struct.pack("<2q", -1, 2**62))
put("oip_tensor/int32_json", bytes([6]) + b"[[1,-2147483648],[2147483647,4.0]]")
put("oip_tensor/fp16_json", bytes([8]) + b"[65504,-65504.0,1e-8,0.5]")

# Accept headers of real clients: a browser, curl, requests, a picky script
put("accept/browser", "text/html,application/xhtml+xml,application/xml;q=0.9,"
                      "image/avif,image/webp,*/*;q=0.8")
put("accept/curl", "*/*")
put("accept/png", "image/png")
put("accept/weighted", "application/json;q=0.5, image/*;q=0.9, image/jpeg;q=0")
put("accept/own_type", "image/webp\nimage/webp;q=1.0, application/json;q=0.2")
# a tokens file and an Authorization header, separated by a NUL
put("auth/clear", "alice-secret alice infer,attack\n# a comment\n\nroot-secret root admin\n\0Bearer alice-secret")
put("auth/hashed", "sha256:" + "ab" * 32 + " bob infer   # hashed\n\0Bearer bob-secret")
put("auth/bad_scope", "t1 eve infer,steal\n\0Bearer t1")
put("auth/no_header", "t1 a evaluate\n")
# --cors-origins, Origin and Host, separated by NULs
put("cors/listed", "https://a.example,http://localhost:3000\0http://localhost:3000\0127.0.0.1:8080")
put("cors/same", "\0http://127.0.0.1:8080\0127.0.0.1:8080")
put("cors/star_null", "*\0null\0localhost:8080")
put("cors/curl", "https://a.example")
# a loopback flag byte, then --allowed-hosts and Host separated by a NUL
put("host/default_ok", "\x01\0localhost:8080")
put("host/rebinding", "\x01\0evil.example:8080")
put("host/listed", "\x00api.example,[fd00::5]:8443\0API.example:443")
put("host/ipv6", "\x01\0[::1]:8080")
put("host/no_host", "\x01api.example")

# --outbound-allow, a URL and an address (4 or 16 bytes), separated by NULs
put("outbound/loopback", b"127.0.0.1/32\0http://127.0.0.1:8080/hook\0\x7f\x00\x00\x01")
put("outbound/metadata", b"\0http://169.254.169.254/latest/meta-data/\0\xa9\xfe\xa9\xfe")
put("outbound/mapped", b"::1/128,10.0.0.0/8\0http://[::ffff:127.0.0.1]:80/\0"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x7f\x00\x00\x01")
put("outbound/userinfo", b"\0http://a@127.0.0.1/\0\x0a\x00\x00\x01")
put("outbound/public", b"\0https://Example.COM:8443/a/b?c=d#frag\0\x08\x08\x08\x08")

# attack requests: JSON bodies of POST /v1/attacks, and form fields
put("attack_request/dataset.json", json.dumps(
    {"model": "digits", "target": 3, "image": {"dataset": "mnist", "split": "test", "index": 1},
     "method": "lbfgs", "report": ["digits"], "timeout": 2.5}))
put("attack_request/floats.json", json.dumps(
    {"model": "colour", "target": "all", "image": {"data": [0, 0.5, 1, 0.25], "shape": [1, 2, 2]},
     "invert": "yes", "image_format": "floats", "params": {}}))
put("attack_request/form", "model=digits\ntarget=3,5\ndataset=tiny\nindex=2\nreport=digits,colour\n")

# base64 with MIME's line breaks
put("base64/wrapped", "aGVsbG8gd29ybGQsIHRoaXMgaXMgYmFzZTY0IHdyYXBwZWQgYXQgNzYgY29sdW1ucyBhcyBN\n"
                      "SU1FIHdyaXRlcyBpdA==\n")

# IDX: MNIST's first two test digits (plain and gzip), a float file
def idx(type_, dims, payload):
    return bytes([0, 0, type_, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload
put("idx/two_digits", idx(8, [2, 28, 28], raw[16:16 + 2 * 784]))
put("idx/labels.gz", gzip.compress(idx(8, [4], bytes([7, 2, 1, 0])), mtime=0))
put("idx/floats", idx(0x0D, [2, 2], struct.pack(">4f", 0.0, 0.5, 1.0, -1.0)))

# a safetensors model as safetensors.torch.save_file writes it: flatten,
# linear(4 -> 2) on (1,2,2) inputs
meta = {"blindspot.arch": '[{"type":"flatten"},{"out_features":2,"type":"linear"}]',
        "blindspot.input_shape": "[1,2,2]", "blindspot.classes": "2",
        "blindspot.dataset": "tiny"}
tensors = {"1.weight": ([2, 4], [0.5, -0.5, 0.25, 1.0, 0.0, 2.0, -1.0, 0.125]),
           "1.bias": ([2], [0.1, -0.1])}
header, data = {"__metadata__": meta}, b""
for name in sorted(tensors):
    shape, values = tensors[name]
    blob = struct.pack(f"<{len(values)}f", *values)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
    data += blob
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
put("model_file/linear.safetensors", struct.pack("<Q", len(h)) + h + data)
# multipart: a byte picking the endpoint (predict, attacks), then a
# multipart/form-data body with the boundary "fuzzb", as curl -F writes it,
# for "tiny" (1,2,2); the image part is the committed 2x2 grey PNG seed
def form(endpoint, fields, image=None, ctype="image/png"):
    body = b""
    for name, value in fields:
        body += (f'--fuzzb\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                 f"{value}\r\n").encode()
    if image is not None:
        body += (b'--fuzzb\r\nContent-Disposition: form-data; name="image"; '
                 b'filename="x.png"\r\nContent-Type: ' + ctype.encode() + b"\r\n\r\n" +
                 image + b"\r\n")
    return bytes([endpoint]) + body + b"--fuzzb--\r\n"
with open(f"{out}/image/gray.png", "rb") as f:
    png = f.read()
put("multipart/predict", form(0, [("invert", "no")], png))
put("multipart/attack", form(1, [("model", "tiny"), ("target", "1"), ("method", "fgsm"),
                                 ("report", "tiny")], png))
put("multipart/attack_dataset", form(1, [("model", "tiny"), ("target", "all"),
                                         ("dataset", "mnist"), ("index", "0")]))

put("model_file/arch.json", '[{"type":"conv2d","out_channels":2,"kernel":3,"padding":1},'
                            '{"type":"relu"},{"type":"maxpool2d","kernel":2},{"type":"flatten"},'
                            '{"type":"dropout","p":0.25},{"out_features":10,"type":"linear"}]')

# onnx: small models of ONNX's node tests (libonnx-testdata), their inputs
# after the first spliced in as initializers so that each is a classifier
# of one input (the last name field of a message wins, as protobuf reads it)
node = "/usr/share/libonnx-testdata/data/node"
def varint(n):
    b = b""
    while True:
        b += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return b
def read_varint(b, i):
    n, shift = 0, 0
    while True:
        n |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return n, i
def fields(b):
    i = 0
    while i < len(b):
        start = i
        key, i = read_varint(b, i)
        no, wt = key >> 3, key & 7
        if wt == 0:
            _, i = read_varint(b, i)
            yield no, b[start:i], None
        elif wt == 2:
            n, i = read_varint(b, i)
            yield no, b[start:i + n], b[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wt)
def ld(no, payload):
    return varint(no << 3 | 2) + varint(len(payload)) + payload
def seed(test, inits=()):
    with open(f"{node}/{test}/model.onnx", "rb") as f:
        model = f.read()
    spliced = b""
    for no, raw, value in fields(model):
        if no == 7:
            for k, name in enumerate(inits):
                with open(f"{node}/{test}/test_data_set_0/input_{k + 1}.pb", "rb") as f:
                    value += ld(5, f.read() + ld(8, name.encode()))
            raw = ld(7, value)
        spliced += raw
    put(f"onnx/{test[5:]}.onnx", spliced)
seed("test_relu")
seed("test_maxpool_2d_pads")
seed("test_averagepool_2d_pads_count_include_pad")
seed("test_leakyrelu")
seed("test_hardswish")
seed("test_flatten_axis1")
seed("test_conv_with_strides_padding", ["W"])
seed("test_batchnorm_example", ["s", "bias", "mean", "var"])
seed("test_gemm_default_vector_bias", ["b", "c"])
PY
du -sh "$out"
