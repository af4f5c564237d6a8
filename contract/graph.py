"""The backbone's uint8 input: the card's normalisation (contract.recipe `to_input`) as the graph's first nodes.

A serving process (setting `backbone_input`, service/serving/model.py) can feed the backbone the crops as they
are cut from the picture — uint8, NHWC, RGB — instead of float32 ones: a quarter of the bytes queued for the
backbone and copied to a GPU. `with_uint8_input` returns the card's backbone graph with

    Cast(float) → Mul(scale) → Sub(mean) → Div(std) [→ Gather(BGR)] [→ Transpose(NCHW)]

in front of it: the very float32 operations `to_input` applies, in its order, so the network sees the same
values and gives the same outputs (tests/contract/test_graph.py, and tests/contract/test_shipped_models.py on the
shipped models). It is built in memory when a model is loaded: the file, its sha256 and the model id are the
card's, unchanged. Needs `onnx`, imported when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contract.card import Preprocessing

_PREFIX = "brushprint_uint8_input/"


def with_uint8_input(model: bytes | Path, p: Preprocessing, input_name: str) -> bytes:
    """The serialised ONNX graph `model` (a file or its bytes) taking uint8 crops [N, H, W, 3] RGB as
    `input_name`, normalised inside the graph as `p` says, the rest of the graph as it was."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.load_from_string(model)
    g = proto.graph
    matches = [i for i in g.input if i.name == input_name]
    if len(matches) != 1:
        raise ValueError(f"the graph has no input {input_name!r} (inputs: {[i.name for i in g.input]})")
    inp = matches[0]
    dims = list(inp.type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise ValueError(f"input {input_name!r} has {len(dims)} dimensions, a batch of crops has 4")
    if any(out.name == input_name for out in g.output):
        raise ValueError(f"input {input_name!r} is also an output of the graph")
    feeds = f"{_PREFIX}normalised"
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == input_name:
                node.input[i] = feeds
    consts = {
        "scale": np.asarray(p.scale, np.float32),
        "mean": np.asarray(p.mean, np.float32),
        "std": np.asarray(p.std, np.float32),
    }
    if p.channel_order == "BGR":
        consts["bgr"] = np.asarray([2, 1, 0], np.int64)
    g.initializer.extend(numpy_helper.from_array(v, f"{_PREFIX}{k}") for k, v in consts.items())
    steps: list[tuple[str, list[str], dict[str, Any]]] = [
        ("Cast", [], {"to": TensorProto.FLOAT}),
        ("Mul", [f"{_PREFIX}scale"], {}),
        ("Sub", [f"{_PREFIX}mean"], {}),
        ("Div", [f"{_PREFIX}std"], {}),
    ]
    if p.channel_order == "BGR":
        steps.append(("Gather", [f"{_PREFIX}bgr"], {"axis": 3}))
    if p.layout == "NCHW":
        steps.append(("Transpose", [], {"perm": [0, 3, 1, 2]}))
        dims = [dims[0], dims[2], dims[3], dims[1]]
    nodes, last = [], input_name
    for k, (op, extra, attrs) in enumerate(steps):
        out = feeds if k == len(steps) - 1 else f"{_PREFIX}{op.lower()}"
        nodes.append(helper.make_node(op, [last, *extra], [out], name=f"{_PREFIX}{op}", **attrs))
        last = out
    for node in reversed(nodes):
        g.node.insert(0, node)
    shape = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
             for d in dims]  # fmt: skip
    at = list(g.input).index(inp)
    g.input.remove(inp)
    g.input.insert(at, helper.make_tensor_value_info(input_name, TensorProto.UINT8, shape))
    data: bytes = proto.SerializeToString()
    return data
