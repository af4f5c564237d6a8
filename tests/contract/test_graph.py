"""contract/graph.py: a backbone graph fed the crops as cut (uint8) gives exactly what the card's graph gives on
contract.recipe's normalised float32 crops, for every layout and channel order a card may state; it refuses a
graph it cannot rewrite, and it never touches the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from contract.card import Preprocessing
from contract.graph import with_uint8_input
from contract.recipe import model_inputs, to_input

H, W = 6, 5


class _Spec:
    def __init__(self, p: Preprocessing):
        self.preprocessing = p


def _echo(path: Path, layout: str) -> Path:
    """A graph whose output is its input flattened (what the network would see), `layout`'s shape."""
    shape = ["N", 3, H, W] if layout == "NCHW" else ["N", H, W, 3]
    g = helper.make_graph(
        [helper.make_node("Flatten", ["crops"], ["seen"], axis=1)],
        "echo",
        [helper.make_tensor_value_info("crops", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("seen", TensorProto.FLOAT, ["N", 3 * H * W])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


def _pre(layout: str = "NHWC", order: str = "RGB", scale: float = 1 / 255) -> Preprocessing:
    return Preprocessing(
        resize_shorter=H,
        crop=(H, W),
        scale=scale,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channel_order=order,  # type: ignore[arg-type]
        layout=layout,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("scale", [1 / 255, 1.0])
def test_uint8_crops_reach_the_network_as_the_recipe_normalises_them(
    tmp_path: Path, layout: str, order: str, scale: float
) -> None:
    p = _pre(layout, order, scale)
    path = _echo(tmp_path / "echo.onnx", layout)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    u8 = ort.InferenceSession(with_uint8_input(path, p, "crops"), providers=["CPUExecutionProvider"])
    f32 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # built in memory: the file is the card's
    assert [(i.name, i.type) for i in u8.get_inputs()] == [("crops", "tensor(uint8)")]
    crops = np.random.default_rng(0).integers(0, 256, (4, H, W, 3), np.uint8)
    crops[0] = 0
    crops[1] = 255
    want = f32.run(None, {"crops": np.stack([to_input(c, p) for c in crops])})[0]
    got = u8.run(None, {"crops": crops})[0]
    assert np.array_equal(got, want)  # the same float32 operations in the same order: the same bits


def test_the_recipe_cuts_the_uint8_crops_the_float_ones_come_from() -> None:
    p = _pre().model_copy(update={"resize_shorter": 12, "grid": (2, 3)})
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 41, 3), np.uint8))
    raw, floats = model_inputs(picture, _Spec(p), uint8=True), model_inputs(picture, _Spec(p))
    assert raw.dtype == np.uint8 and raw.shape == floats.shape == (6, H, W, 3)
    assert np.array_equal(np.stack([to_input(c, p) for c in raw]), floats)
    one = p.model_copy(update={"grid": (1, 1)})
    raw1 = model_inputs(picture, _Spec(one), uint8=True)
    assert raw1.dtype == np.uint8 and np.array_equal(to_input(raw1[0], one)[None], model_inputs(picture, _Spec(one)))


def test_a_graph_it_cannot_rewrite_is_refused(tmp_path: Path) -> None:
    path = _echo(tmp_path / "echo.onnx", "NHWC")
    with pytest.raises(ValueError, match="no input 'images'"):
        with_uint8_input(path, _pre(), "images")
    g = helper.make_graph(
        [helper.make_node("Identity", ["v"], ["w"])],
        "flat",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, ["N", 8])],
    )
    flat = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(g), str(flat))
    with pytest.raises(ValueError, match="2 dimensions"):
        with_uint8_input(flat, _pre(), "v")
