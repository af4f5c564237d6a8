"""Small ONNX graphs written by hand with onnx.helper (no TensorFlow): the cosine head's files and the
dev model tests and benchmarks use. Covered by tests/training/test_cosine.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def value(name: str, *shape: int | str) -> onnx.ValueInfoProto:
    """A float32 graph input or output."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    """A float32 initializer."""
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def save(graph: onnx.GraphProto, path: Path, producer: str = "brushprint") -> None:
    """Check and write a model (IR 8, opset 17: what onnxruntime 1.31 and tf2onnx's exports share)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def free_spatial_dims(path: Path) -> None:
    """Let a convolutional backbone file (input [N, H, W, C] or [N, C, H, W], H and W fixed by its export) take
    any height and width: the input's spatial dims become symbolic and the export's inferred intermediate shapes,
    which pin them, are dropped (onnxruntime infers them again at load). The weights and the nodes are unchanged,
    so at the export's own size the outputs are identical. A graph whose output depends on a fixed size (a
    Reshape to a constant shape, say) is refused with ValueError and the file left as it was: it must run at two
    other sizes and give [N, D] of the same D at both."""
    import onnxruntime as ort

    path = Path(path)
    model = onnx.load(str(path))
    weights = {t.name for t in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in weights]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"{path}: input {inp.name} has {len(dims)} dims, expected 4 ([N, H, W, C] or [N, C, H, W])")
    channels_first = dims[1].HasField("dim_value") and dims[1].dim_value in (1, 3)
    spatial = (2, 3) if channels_first else (1, 2)
    for i, name in zip(spatial, ("height", "width"), strict=True):
        dims[i].ClearField("dim_value")
        dims[i].dim_param = name
    del model.graph.value_info[:]
    tmp = path.with_name(path.name + ".free")
    onnx.save(model, str(tmp))
    try:
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        shapes = []
        for side in (40, 72):
            shape = (1, 3, side, side) if channels_first else (1, side, side, 3)
            shapes.append(sess.run(None, {inp.name: np.zeros(shape, np.float32)})[0].shape)
    except Exception as e:
        tmp.unlink()
        raise ValueError(f"{path}: does not run at another input size: {e}") from e
    if shapes[0] != shapes[1] or len(shapes[0]) != 2:
        tmp.unlink()
        raise ValueError(f"{path}: the output's shape depends on the input's size ({shapes[0]} vs {shapes[1]})")
    tmp.replace(path)


HEAD_FILES = {"pair": "head.onnx", "projection": "head_projection.onnx", "comparator": "head_comparator.onnx"}


def save_projection_head(
    out_dir: Path,
    project: Callable[[str, str, str], list[onnx.NodeProto]],
    compare: Callable[[str, str], list[onnx.NodeProto]],
    dims: tuple[int, int],
    project_inits: list[onnx.TensorProto],
    compare_inits: list[onnx.TensorProto],
    producer: str = "brushprint",
) -> dict[str, str]:
    """An order-free head as its three files: projection (embedding → projection), comparator (two projections →
    probability) and the pair head composed of both. `project(src, dst, tag)` and `compare(pa, pb)` give the nodes;
    `dims` = (embedding, projection) sizes. Returns kind → file name (`HEAD_FILES`)."""
    d, k = dims
    out_dir = Path(out_dir)
    graphs = {
        "projection": helper.make_graph(
            project("embedding", "projection", "p"),
            "projection",
            [value("embedding", "N", d)],
            [value("projection", "N", k)],
            project_inits,
        ),
        "comparator": helper.make_graph(
            compare("projection_a", "projection_b"),
            "comparator",
            [value("projection_a", "N", k), value("projection_b", "N", k)],
            [value("probability", "N")],
            compare_inits,
        ),
        "pair": helper.make_graph(
            project("embedding_a", "pa", "a") + project("embedding_b", "pb", "b") + compare("pa", "pb"),
            "pair",
            [value("embedding_a", "N", d), value("embedding_b", "N", d)],
            [value("probability", "N")],
            project_inits + compare_inits,
        ),
    }
    for kind, graph in graphs.items():
        save(graph, out_dir / HEAD_FILES[kind], producer=producer)
    return dict(HEAD_FILES)
