#!/usr/bin/python3
"""onnx_inspect — what an ONNX file asks of a loader, read with python3-onnx:
its opsets, its data input (the graph input that is not an initializer; a
dimension given by name or left 0 is dynamic), its outputs, its
metadata_props, and every op type it uses with how often and the attribute
values each takes (weights held in Constant nodes are counted, not shown).

usage: onnx_inspect.py MODEL.onnx [--json]
"""
import json
import sys
from collections import Counter, defaultdict

import onnx
from onnx import helper


def dims(value_info):
    """A value's shape: an int per fixed dimension, its name (or "?") per dynamic one."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def describe(model):
    g = model.graph
    initializers = {t.name for t in g.initializer}
    ops = Counter(n.op_type for n in g.node)
    attributes = defaultdict(set)
    for n in g.node:
        if n.op_type == "Constant":
            continue
        for a in n.attribute:
            value = helper.get_attribute_value(a)
            if isinstance(value, bytes):
                value = value.decode()
            attributes[n.op_type].add(f"{a.name}={json.dumps(value) if isinstance(value, list) else value}")
    io = lambda vs: [{"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                      "shape": dims(v)} for v in vs]
    return {
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": io([v for v in g.input if v.name not in initializers]),
        "outputs": io(g.output),
        "metadata_props": {p.key: p.value for p in model.metadata_props},
        "nodes": len(g.node),
        "initializers": len(g.initializer),
        "ops": {op: {"count": ops[op], "attributes": sorted(attributes[op])} for op in sorted(ops)},
    }


def main():
    args = sys.argv[1:]
    if len(args) not in (1, 2) or (len(args) == 2 and args[1] != "--json"):
        sys.exit("usage: onnx_inspect.py MODEL.onnx [--json]")
    d = describe(onnx.load(args[0]))
    if len(args) == 2:
        print(json.dumps(d, indent=1))
        return
    print(f"{args[0]}: ir {d['ir_version']}, producer '{d['producer']}', opsets "
          + ", ".join(f"{k} {v}" for k, v in d["opsets"].items()))
    for kind in ("inputs", "outputs"):
        for v in d[kind]:
            print(f"  {kind[:-1]:<6} {v['name']} {v['elem_type']} {v['shape']}")
    for k, v in d["metadata_props"].items():
        print(f"  metadata {k} = {v}")
    print(f"  {d['nodes']} nodes, {d['initializers']} initializers, {len(d['ops'])} op types:")
    for op, o in d["ops"].items():
        print(f"    {op:<20} {o['count']:>4}  {' '.join(o['attributes'])}")


if __name__ == "__main__":
    main()
