#!/usr/bin/python3
"""ort_check — ONNX Runtime (tests/oracle/ort_run.mjs) against the oracle's
other half, before the importer is compared with either.

  ort_check.py fixtures DIR
      For every export in DIR/index.json (tests/oracle/onnx_models.py), ORT on
      the model's fixture inputs; its output goes to DIR/<export>.ort.f32 and
      its probabilities (softmax of the output, unless the graph ends in a
      Softmax) must match PyTorch's DIR/<model>.probs.f32 within 1e-5.

  ort_check.py ocr MODEL DIR
      The PP-OCR text-direction classifier MODEL on DIR/text*-{0,180}.png
      (tests/oracle/render_text.py), preprocessed as PaddleOCR's classifier
      does: BGR, resized to height 48 keeping the aspect ratio (at most 192
      wide), x / 255, (x - 0.5) / 0.5, zero-padded on the right to 192. The
      inputs go to DIR/cls.input.f32 (N,3,48,192), ORT's probabilities to
      DIR/cls.ort.f32 (N,2; class 0 is "0", class 1 is "180") and a summary
      to DIR/cls.json. Every image must be classed as its name says.

Each prints a table and exits 1 when a check fails.
"""
import glob
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
PROBS_TOLERANCE = 1e-5
CLS_SHAPE = (3, 48, 192)
CLS_LABELS = ["0", "180"]


def ort_run(model, inputs, shape, out):
    subprocess.run(["node", os.path.join(HERE, "ort_run.mjs"), model, inputs,
                    *map(str, shape), out], check=True)
    return np.fromfile(out, "<f4")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_fixtures(folder):
    with open(os.path.join(folder, "index.json")) as f:
        index = json.load(f)
    failed = 0
    print(f"{'export':<24} {'opset':>5} {'max |p_ort - p_torch|':>22}  argmax agrees")
    for m in index["models"]:
        files = m["files"]
        torch_probs = np.fromfile(os.path.join(folder, files["probs"]), "<f4").reshape(m["batch"], -1)
        for e in m["exports"]:
            stem = os.path.splitext(e["file"])[0]
            out = ort_run(os.path.join(folder, e["file"]), os.path.join(folder, files["input"]),
                          m["input_shape"], os.path.join(folder, stem + ".ort.f32"))
            out = out.reshape(m["batch"], -1).astype(np.float64)
            probs = out if m["graph_output"] == "probabilities" else softmax(out)
            diff = np.abs(probs - torch_probs).max()
            agree = bool((probs.argmax(1) == torch_probs.argmax(1)).all())
            ok = diff <= PROBS_TOLERANCE and agree
            failed += not ok
            print(f"{e['file']:<24} {e['opset']:>5} {diff:>22.3g}  {'yes' if agree else 'NO'}"
                  f"{'' if ok else '  FAILED'}")
    print(f"ort_check fixtures: {'all agree' if not failed else f'{failed} failed'} "
          f"(tolerance {PROBS_TOLERANCE:g})")
    return failed == 0


def cls_preprocess(path):
    """One image as PaddleOCR's classifier sees it (resize_norm_img of its
    tools/infer/predict_cls.py; PIL's bilinear resize in place of OpenCV's)."""
    c, h48, w192 = CLS_SHAPE
    img = Image.open(path).convert("RGB")
    w, h = img.size
    resized_w = min(w192, int(math.ceil(h48 * w / h)))
    if (w, h) != (resized_w, h48):
        img = img.resize((resized_w, h48), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32)[:, :, ::-1]          # RGB -> BGR, as cv2 reads
    x = (x.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    padded = np.zeros(CLS_SHAPE, dtype=np.float32)
    padded[:, :, :resized_w] = x
    return padded


def check_ocr(model, folder):
    paths = sorted(glob.glob(os.path.join(folder, "text*-*.png")),
                   key=lambda p: [int(n) for n in re.findall(r"\d+", os.path.basename(p))])
    if not paths:
        print(f"ort_check ocr: no text*-*.png in {folder}")
        return False
    x = np.stack([cls_preprocess(p) for p in paths])
    inputs = os.path.join(folder, "cls.input.f32")
    x.astype("<f4").tofile(inputs)
    probs = ort_run(model, inputs, CLS_SHAPE, os.path.join(folder, "cls.ort.f32")).reshape(len(paths), 2)
    rows, failed = [], 0
    print(f"{'image':<16} {'expected':>8} {'p(0)':>12} {'p(180)':>12}  answer")
    for path, p in zip(paths, probs):
        name = os.path.basename(path)
        expected = re.search(r"-(\d+)\.png$", name).group(1)
        answer = CLS_LABELS[int(p.argmax())]
        ok = answer == expected
        failed += not ok
        rows.append({"image": name, "expected": expected, "answer": answer,
                     "probs": [float(v) for v in p]})
        print(f"{name:<16} {expected:>8} {p[0]:>12.6g} {p[1]:>12.6g}  {answer}{'' if ok else '  WRONG'}")
    summary = {"model": os.path.basename(model), "input": "cls.input.f32",
               "input_shape": list(CLS_SHAPE), "output": "cls.ort.f32",
               "labels": CLS_LABELS, "images": rows}
    with open(os.path.join(folder, "cls.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(f"ort_check ocr: {len(paths) - failed} of {len(paths)} images classed as their names say")
    return failed == 0


def main():
    sys.stdout.reconfigure(line_buffering=True)  # in order with ort_run's lines on stderr
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "fixtures":
        ok = check_fixtures(args[1])
    elif len(args) == 3 and args[0] == "ocr":
        ok = check_ocr(args[1], args[2])
    else:
        sys.exit("usage: ort_check.py fixtures DIR | ort_check.py ocr MODEL DIR")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
