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
