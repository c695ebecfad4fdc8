#!/usr/bin/python3
"""peer — the L-BFGS attack written the way Python attack libraries write it,
for `make bench` to time blindspot against.

A PyTorch nn.Sequential rebuilt from one of our safetensors files (read here
with struct + numpy: header length, JSON header, float32 data), or for an
ONNX file exported by tests/oracle/onnx_models.py that script's nn.Module
with the file's initializers as its weights (python3-onnx), SciPy's
fmin_l_bfgs_b (SciPy wraps the same L-BFGS-B 3.0 Fortran code as
liblbfgsb) on

    f(z) = c * ||z - x||_2^2 + xent(model(z), target),   z in [0,1]^n,

with the gradient from autograd (float32 model, float64 for SciPy), and
blindspot's search over c: start at 1, multiply by 10 while the attack
succeeds (divide while it fails) until the outcome flips, then bisect on a
log scale; 8 L-BFGS-B runs per target, each from x. A run succeeds when the
model calls the 8-bit image round(z*255)/255 the target; the result is the
successful 8-bit image with the smallest L2 perturbation.

IMAGES is a folder with mnist's test split (image i's label from the file),
or a raw little-endian float32 file of images of the model's input shape
(as `images` writes; image i's label is the model's own answer on it).

Like Foolbox's and CleverHans' L-BFGS attacks, one image and one target at a
time (SciPy's driver takes one problem, so per-call batching is not open to
a peer); the model runs on one thread, the forward pass that judges an image
under torch.no_grad. The prediction check batches the whole test split.

usage:
  peer.py predict MODEL IMAGES LABELS_FILE     check our labels (one a line)
  peer.py attack MODEL IMAGES N [TARGETS]      attack images 0..N-1
                                               towards (label+1) mod 10, or
                                               each towards label+1 ..
                                               label+TARGETS (mod 10), one
                                               target after the other
  peer.py images MODEL N OUT.f32               write N images in [0,1] of
                                               the model's input shape, on
                                               the 8-bit grid, from a fixed
                                               seed (smooth colour patterns
                                               with pixel noise)
Each prints one JSON object on stdout.
"""
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import fmin_l_bfgs_b

# The attack's settings: blindspot's bs_attack_defaults(BS_ATTACK_LBFGS).
SEARCH_STEPS = 8
INITIAL_C = 1.0
C_FACTOR = 10.0
HISTORY = 15
MAX_ITERATIONS = 150
FACTR = 1e7
PGTOL = 1e-5
IMAGE_SEED = 1000  # the images `images` writes


def load_safetensors(path):
    """Tensors (name -> float32 array) and metadata of a safetensors file."""
    with open(path, "rb") as f:
        buf = f.read()
    (hlen,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    data = buf[8 + hlen:]
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {t['dtype']}, not F32")
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def build_model(path):
    """The nn.Sequential of blindspot.arch with the file's weights, in eval mode."""
    tensors, meta = load_safetensors(path)
    arch = json.loads(meta["blindspot.arch"])
    shape = json.loads(meta["blindspot.input_shape"])  # [C,H,W]
    c, h, w = shape
    layers = []
    for spec in arch:
        kind = spec["type"]
        if kind == "flatten":
            layers.append(nn.Flatten())
            c, h, w = c * h * w, 1, 1
        elif kind == "linear":
            layers.append(nn.Linear(c * h * w, spec["out_features"]))
            c, h, w = spec["out_features"], 1, 1
        elif kind == "conv2d":
            k, s, p = spec["kernel"], spec.get("stride", 1), spec.get("padding", 0)
            layers.append(nn.Conv2d(c, spec["out_channels"], k, stride=s, padding=p))
            c, h, w = spec["out_channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif kind == "maxpool2d":
            k = spec["kernel"]
            s = spec.get("stride", k)
            layers.append(nn.MaxPool2d(k, stride=s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "sigmoid":
            layers.append(nn.Sigmoid())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        elif kind == "dropout":
            layers.append(nn.Dropout(spec.get("p", 0.5)))
        else:
            raise ValueError(f"{path}: unknown layer type {kind}")
    model = nn.Sequential(*layers)
    state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tuple(shape)


def oracle_models():
    """tests/oracle/onnx_models.py, where the ONNX files come from."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
    import onnx_models
    return onnx_models


def build_onnx_model(path):
    """The nn.Module tests/oracle/onnx_models.py exported as path (found by
    its file name), its state set from the file's initializers, which carry
    the module's parameter names (an export that keeps its batch norm)."""
    import onnx
    from onnx import numpy_helper
    oracle = oracle_models()
    fname = os.path.basename(path)
    spec = next((s for s in oracle.MODELS if any(f == fname for _, f in s["exports"])), None)
    if spec is None:
        raise ValueError(f"{path}: not one of tests/oracle/onnx_models.py's exports")
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
               for t in onnx.load(path).graph.initializer}
    model = spec["ctor"]()
    state = model.state_dict()
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{path}: no initializer for {', '.join(missing[:5])} "
                         "(the peer reads exports that keep the module's names)")
    model.load_state_dict({k: weights.get(k, v) for k, v in state.items()}, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tuple(spec["shape"])


def load_model(path):
    return build_onnx_model(path) if path.endswith(".onnx") else build_model(path)


def read_idx(path):
    """An IDX file (gzip) as a numpy array (ubyte or big-endian float32)."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    kind, ndims = buf[2], buf[3]
    dims = struct.unpack(">" + "I" * ndims, buf[4:4 + 4 * ndims])
    dtype = {0x08: np.uint8, 0x0D: ">f4"}[kind]
    return np.frombuffer(buf[4 + 4 * ndims:], dtype=dtype).reshape(dims)


def load_test(data_dir):
    """mnist's test split as blindspot loads it: bytes / 255 in float32."""
    images = read_idx(f"{data_dir}/mnist/test-images-idx3-ubyte.gz")
    labels = read_idx(f"{data_dir}/mnist/test-labels-idx1-ubyte.gz")
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / np.float32(255.0)
    return images.reshape(len(images), -1).astype(np.float32), labels.astype(np.int64)


def load_images(source, shape):
    """(images, labels) from mnist's test split in a folder, or a raw
    float32 file of images of shape (labels None: the model's answers)."""
    if not source.endswith(".f32"):
        return load_test(source)
    size = int(np.prod(shape))
    images = np.fromfile(source, dtype="<f4")
    if images.size == 0 or images.size % size:
        raise ValueError(f"{source}: not a whole number of {'x'.join(map(str, shape))} float32 images")
    return images.reshape(-1, size).astype(np.float32), None


def write_images(shape, n, path):
    """n images from the oracle's generator (a fixed seed), on the 8-bit grid
    as a decoded image file would be."""
    oracle = oracle_models()
    x = oracle.images(n, shape, torch.Generator().manual_seed(IMAGE_SEED))
    x = torch.round(x * 255.0) / 255.0
    x.numpy().astype("<f4").tofile(path)


def predict(model, shape, images):
    with torch.no_grad():
        logits = model(torch.from_numpy(images).view(-1, *shape))
    return logits.argmax(dim=1).numpy()


class Objective:
    """f and its gradient for SciPy: c*||z-x||^2 + xent(model(z), target)."""

    def __init__(self, model, shape, x, target):
        self.model, self.shape, self.x = model, shape, x
        self.target = torch.tensor([target])
        self.c = 1.0
        self.evaluations = 0

    def __call__(self, z):
        self.evaluations += 1
        zt = torch.from_numpy(z.astype(np.float32)).view(1, *self.shape)
        zt.requires_grad_(True)
        loss = F.cross_entropy(self.model(zt), self.target)
        (grad,) = torch.autograd.grad(loss, zt)
        r = z - self.x
        f = self.c * float(r @ r) + float(loss)
        return f, 2.0 * self.c * r + grad.numpy().ravel().astype(np.float64)


def attack(model, shape, x32, target):
    """One target: the c search of 8 L-BFGS-B runs. Returns the result."""
    x = x32.astype(np.float64)
    n = x.size
    obj = Objective(model, shape, x, target)
    bounds = [(0.0, 1.0)] * n
    c, good, bad = INITIAL_C, None, None
    best, iterations, judged = None, 0, 0
    for _ in range(SEARCH_STEPS):
        obj.c = c
        z, _, info = fmin_l_bfgs_b(obj, x, bounds=bounds, m=HISTORY, maxiter=MAX_ITERATIONS,
                                   factr=FACTR, pgtol=PGTOL)
        iterations += info["nit"]
        q = (np.round(np.clip(z, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
        with torch.no_grad():
            pred = int(model(torch.from_numpy(q).view(1, *shape)).argmax())
        judged += 1
        success = pred == target
        if success:
            l2 = float(np.sum((q.astype(np.float64) - x) ** 2))
            if best is None or l2 < best:
                best = l2
            good = c
        else:
            bad = c
        if good is not None and bad is not None:
            c = (good * bad) ** 0.5
        elif good is not None:
            c = good * C_FACTOR
        else:
            c = bad / C_FACTOR
    return {"success": best is not None,
            "distortion": (best / n) ** 0.5 if best is not None else None,
            "iterations": iterations, "evaluations": obj.evaluations + judged}


def main(argv):
    torch.set_num_threads(1)
    if len(argv) == 5 and argv[1] == "predict":
        model, shape = load_model(argv[2])
        images, _ = load_images(argv[3], shape)
        ours = np.loadtxt(argv[4], dtype=np.int64)
        mine = predict(model, shape, images)
        differ = np.nonzero(mine != ours)[0] if len(ours) == len(mine) else np.arange(len(mine))
        print(json.dumps({"model": argv[2], "images": int(len(mine)),
                          "differ": int(len(differ)), "first_differ": differ[:10].tolist(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()}))
        return 0 if len(differ) == 0 else 1
    if len(argv) in (5, 6) and argv[1] == "attack":
        model, shape = load_model(argv[2])
        images, labels = load_images(argv[3], shape)
        if labels is None:
            labels = predict(model, shape, images)
        count = int(argv[4])
        k = int(argv[5]) if len(argv) == 6 else 1
        results, per_image = [], []
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(count):
            mine = [attack(model, shape, images[i], int((labels[i] + 1 + j) % 10))
                    for j in range(k)]
            results += mine
            # as bench_core: successes among the targets, the first's distortion
            per_image.append([sum(1 for r in mine if r["success"]), mine[0]["distortion"]])
        secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        wins = [r for r in results if r["success"]]
        n = len(results)
        print(json.dumps({
            "model": argv[2], "n": count, "targets": k, "attacks": n, "seconds": secs,
            "cpu_seconds": cpu, "attacks_per_s": n / secs,
            "evaluations_per_s": sum(r["evaluations"] for r in results) / secs,
            "evaluations_per_attack": sum(r["evaluations"] for r in results) / n,
            "iterations_per_attack": sum(r["iterations"] for r in results) / n,
            "success": len(wins) / n,
            "distortion": (sum(r["distortion"] for r in wins) / len(wins)) if wins else None,
            "per_image": per_image}))
        return 0
    if len(argv) == 5 and argv[1] == "images":
        _, shape = load_model(argv[2])
        write_images(shape, int(argv[3]), argv[4])
        print(json.dumps({"model": argv[2], "n": int(argv[3]), "shape": list(shape),
                          "seed": IMAGE_SEED, "file": argv[4]}))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
