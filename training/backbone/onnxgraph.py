"""Small ONNX graphs written by hand with onnx.helper (no TensorFlow): the cosine head's files and the
dev model tests and benchmarks use. Covered by tests/training/test_cosine.py."""

from __future__ import annotations

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
