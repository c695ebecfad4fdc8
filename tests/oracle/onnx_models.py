#!/usr/bin/python3
"""onnx_models — three small image classifiers built in PyTorch, exported with
torch.onnx.export, and PyTorch's own answers on fixed inputs: the oracle the
ONNX importer is checked against.

The models (weights from fixed seeds, untrained; 3-channel inputs, 10 classes):

  resnet     3x32x32. conv-bn-relu stem, a residual block (identity add), a
             strided residual block with a 1x1 projection, global average
             pool, linear. Eval mode with non-trivial batch-norm statistics,
             exported keeping the BatchNormalization nodes (opset 13), with
             labels and input shape in the file's metadata_props.
  mobilenet  3x32x32. Depthwise 3x3 + pointwise 1x1 blocks, ReLU6 (Clip), a
             hardswish, a stride 2; batch norm folded into the convolutions by
             the exporter. Exported twice: opset 11 (Clip's bounds as inputs,
             hardswish as HardSigmoid and Mul) and opset 14 (HardSwish).
  normnet    3x224x224. (x - mean) / std with per-channel constants inside
             forward, an early stride, max pool and average pool, a flatten
             written as x.view(x.size(0), -1) (the Shape, Gather, Unsqueeze,
             Concat and Reshape exporters leave), a final Softmax in the graph
             (its output is probabilities). Opset 9, the oldest the importer
             reads.

Every export has a dynamic batch dimension. For each model, 4 images in
[0, 1] from a fixed seed (smooth colour patterns with pixel noise), and for
each image:

  logits   the model's output before softmax
  probs    softmax(logits)
  grad     d xent(logits, target) / d input, one sample's loss per sample

written as raw little-endian float32 in C order (N,C,H,W for inputs and
gradients, N,10 for logits and probs), with index.json naming the files, the
shapes, the targets and the exports.

usage: onnx_models.py OUT_DIR
"""
import json
import os
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import onnx
except ImportError:  # the exports need only torch; metadata and checks need onnx
    onnx = None

BATCH = 4
CLASSES = 10
LOGIT_SCALE = 3.0
CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"]


def randomize(model, gen):
    """Weights at a scale where activations neither vanish nor saturate and
    the logits spread over several units (so that the probabilities differ
    from input to input and a small error in any layer shows), and batch
    norm statistics and affine maps far from identity (so that a loader which
    ignores or misplaces any of the four shows)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        elif isinstance(m, nn.Linear):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


def images(n, shape, gen):
    """n images in [0, 1]: a smooth pattern (random 4x4 colours upsampled)
    mixed with pixel noise, so that images differ in more than noise that
    pooling averages away."""
    c, h, w = shape
    coarse = torch.rand((n, c, 4, 4), generator=gen)
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.rand((n, c, h, w), generator=gen)
    return (0.7 * smooth + 0.3 * noise).clamp(0.0, 1.0)


def calibrate_head(model, shape, gen):
    """Set the final linear layer as training would leave it: centred on the
    features of typical images (without this the features' common part,
    positive after ReLU and pooling, gives every image the same class) and
    scaled so that the logits vary by LOGIT_SCALE from image to image."""
    seen = []
    hook = model.fc.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        logits_of(model, images(64, shape, gen))
        hook.remove()
        features = seen[0]
        mean = features.mean(0)
        spread = ((features - mean) @ model.fc.weight.T).std()
        model.fc.weight.mul_(LOGIT_SCALE / spread)
        model.fc.bias.copy_(-model.fc.weight @ mean)


def logits_of(model, x):
    return model.logits(x) if isinstance(model, NormNet) else model(x)


def conv_bn(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """out = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); the shortcut is
    a strided 1x1 convolution with batch norm when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = conv_bn(cin, cout, 3, stride)
        self.b = conv_bn(cout, cout, 3)
        self.shortcut = (conv_bn(cin, cout, 1, stride)
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8, 3)
        self.block1 = BasicBlock(8, 8, 1)
        self.block2 = BasicBlock(8, 16, 2)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x):
        x = self.block2(self.block1(F.relu(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, stride=2)                  # 16x16x16
        self.dw1 = conv_bn(16, 16, 3, groups=16)
        self.pw1 = conv_bn(16, 24, 1)
        self.dw2 = conv_bn(24, 24, 3, stride=2, groups=24)       # 24x8x8
        self.pw2 = conv_bn(24, 32, 1)
        self.fc = nn.Linear(32, CLASSES)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        x = F.relu6(self.dw1(x))
        x = F.hardswish(self.pw1(x))
        x = F.relu6(self.dw2(x))
        x = F.relu6(self.pw2(x))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class NormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 7, stride=4, padding=3)     # 8x56x56
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)        # 8x28x28
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)              # 16x28x28
        self.pool2 = nn.AvgPool2d(4, stride=4)                   # 16x7x7
        self.fc = nn.Linear(16 * 7 * 7, CLASSES)

    def logits(self, x):
        x = (x - self.mean) / self.std
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc(x.view(x.size(0), -1))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=1)


# exports: (opset, file); keep_bn: BatchNormalization nodes stay in the
# graph; output: what the graph returns ("logits" or "probabilities");
# targets: the cross-entropy's label for each of the BATCH images; metadata:
# metadata_props written into the file (values JSON)
MODELS = [
    dict(name="resnet", ctor=ResNet, shape=(3, 32, 32), exports=[(13, "resnet.onnx")],
         keep_bn=True, output="logits", targets=[3, 0, 9, 5],
         metadata={"labels": CIFAR_LABELS, "input_shape": [3, 32, 32]}),
    dict(name="mobilenet", ctor=MobileNet, shape=(3, 32, 32),
         exports=[(11, "mobilenet-op11.onnx"), (14, "mobilenet-op14.onnx")],
         keep_bn=False, output="logits", targets=[7, 2, 4, 1], metadata={}),
    dict(name="normnet", ctor=NormNet, shape=(3, 224, 224), exports=[(9, "normnet.onnx")],
         keep_bn=False, output="probabilities", targets=[6, 8, 0, 2], metadata={}),
]


def write_f32(path, t):
    t.detach().numpy().astype("<f4").tofile(path)


def export(model, example, path, opset, keep_bn):
    """torch.onnx.export with input 'input', output 'output', dynamic batch.
    keep_bn exports an eval-mode model without folding its batch norm into the
    convolutions (TrainingMode.PRESERVE), as a model exported from a training
    script often arrives."""
    mode = torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        # PRESERVE warns about constant folding of a model in training mode;
        # this one is in eval mode, where folding only touches constants
        warnings.filterwarnings("ignore", message=".*constant folding.*")
        torch.onnx.export(model, example, path, opset_version=opset, training=mode,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def set_metadata(path, props):
    m = onnx.load(path)
    for key, value in props.items():
        p = m.metadata_props.add()
        p.key, p.value = key, value
    onnx.save(m, path)


def build(out, index, seed, name, ctor, shape, exports, keep_bn, output, targets, metadata):
    torch.manual_seed(seed)
    model = ctor()
    randomize(model, torch.Generator().manual_seed(seed + 100))
    model.eval()
    calibrate_head(model, shape, torch.Generator().manual_seed(seed + 300))

    x = images(BATCH, shape, torch.Generator().manual_seed(seed + 200))
    x.requires_grad_(True)
    logits = logits_of(model, x)
    target = torch.tensor(targets)
    # summed over the batch: each sample's gradient is that of its own loss
    F.cross_entropy(logits, target, reduction="sum").backward()
    probs = F.softmax(logits, dim=1)

    files = {}
    for kind, t in (("input", x), ("logits", logits), ("probs", probs), ("grad", x.grad)):
        files[kind] = f"{name}.{kind}.f32"
        write_f32(os.path.join(out, files[kind]), t)

    props = {key: json.dumps(value) for key, value in metadata.items()}
    entries = []
    for opset, fname in exports:
        path = os.path.join(out, fname)
        export(model, x.detach()[:1], path, opset, keep_bn)
        entry = {"file": fname, "opset": opset, "batchnorm_in_graph": keep_bn}
        if onnx is not None:
            if props:
                set_metadata(path, props)
                entry["metadata_props"] = props
            onnx.checker.check_model(onnx.load(path))
            entry["ops"] = sorted({n.op_type for n in onnx.load(path).graph.node})
        entries.append(entry)

    index["models"].append({
        "name": name,
        "seed": seed,
        "input_shape": list(shape),
        "classes": CLASSES,
        "batch": BATCH,
        "targets": targets,
        "graph_output": output,
        "exports": entries,
        "files": files,
    })


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: onnx_models.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    start = time.time()
    index = {
        "format": "raw little-endian float32, C order; input and grad N,C,H,W; logits and probs N,classes",
        "grad": "d cross_entropy(logits[i], targets[i]) / d input[i] for each sample i",
        "input_name": "input",
        "output_name": "output",
        "torch": torch.__version__,
        "onnx": onnx.__version__ if onnx is not None else None,
        "models": [],
    }
    for seed, spec in enumerate(MODELS, start=1):
        build(out, index, seed, **spec)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    names = ", ".join(e["file"] for m in index["models"] for e in m["exports"])
    print(f"onnx_models: {names} and their fixtures in {out} ({time.time() - start:.1f} s)")
    if onnx is None:
        print("onnx_models: python3-onnx is missing: exports not checked, no metadata_props written")


if __name__ == "__main__":
    main()
