"""The next lever on a GPU, measured, not shipped: a model's backbone with a uint8 input and the card's
normalisation moved into the graph (Cast, then Mul, Sub, Div in the order contract.recipe `to_input` applies them),
against the float32 input the service feeds today. The outputs must be identical (printed: max abs difference);
the crops per second at each batch size show what a quarter of the bytes copied to the device buys.

    python -m bench.uint8_input [--model-dir models/fast] [--providers cuda] [--batches 64,256,1024]

Needs `onnx` (the [train] extra). Writes the uint8 variant to a temporary file; nothing under models/ changes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common as C


def uint8_variant(src: Path, dst: Path, scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """`src` with a uint8 input whose normalisation ((x * scale - mean) / std) runs inside the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inp = g.input[0]
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == inp.name:
                node.input[i] = "u8_normalised"
    values = {"u8_scale": scale, "u8_mean": mean, "u8_std": std}
    g.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in values.items())
    nodes = [
        helper.make_node("Cast", [inp.name], ["u8_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["u8_float", "u8_scale"], ["u8_scaled"]),
        helper.make_node("Sub", ["u8_scaled", "u8_mean"], ["u8_centred"]),
        helper.make_node("Div", ["u8_centred", "u8_std"], ["u8_normalised"]),
    ]
    for node in reversed(nodes):
        g.node.insert(0, node)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    onnx.save(model, str(dst))


def main(argv: list[str] | None = None) -> int:
    from contract.card import load_card
    from contract.recipe import to_input

    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path("models/fast"))
    p.add_argument("--batches", default="64,256,1024")
    args = p.parse_args(argv)
    providers = C.ort_providers(args.providers)
    card = load_card(args.model_dir)
    b = card.backbone
    pre = b.preprocessing
    if pre.layout != "NHWC" or pre.channel_order != "RGB":
        raise SystemExit("only NHWC RGB cards are measured here")
    report = C.Report("uint8_input", "uint8 backbone input, normalisation in the graph", C.command_line(), args.quick)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="brushprint-u8-") as tmp:
        u8_path = Path(tmp) / "backbone-u8.onnx"
        uint8_variant(args.model_dir / b.file, u8_path, pre.scale, tuple(pre.mean), tuple(pre.std))
        f32 = C.ort_session(args.model_dir / b.file, providers)
        u8 = C.ort_session(u8_path, providers)
        h, w = pre.crop
        x8 = rng.integers(0, 256, (16, h, w, 3), np.uint8)
        xf = np.stack([to_input(c, pre) for c in x8])
        diff = float(np.abs(f32.run(None, {b.input_name: xf})[0] - u8.run(None, {b.input_name: x8})[0]).max())
        for n in C.parse_sizes(args.batches):
            x8 = rng.integers(0, 256, (n, h, w, 3), np.uint8)
            xf = np.stack([to_input(c, pre) for c in x8])
            rates = {}
            for label, sess, x in (("float32", f32, xf), ("uint8", u8, x8)):
                for _ in range(2 if args.quick else 3):
                    sess.run(None, {b.input_name: x})
                runs = 2 if args.quick else 8
                t0 = time.perf_counter()
                for _ in range(runs):
                    sess.run(None, {b.input_name: x})
                rates[label] = n * runs / (time.perf_counter() - t0)
            crops = pre.n_crops
            rows.append([n, C.fmt(rates["float32"], 0), C.fmt(rates["uint8"], 0), C.fmt(rates["uint8"] / crops, 0),
                         f"{rates['uint8'] / rates['float32']:.2f}×"])  # fmt: skip
    report.table(
        f"{card.model_id} on {f32.get_providers()[0]}: crops/s by input dtype (pictures = {pre.n_crops} crops)",
        ["batch (crops)", "float32 input crops/s", "uint8 input crops/s", "uint8 pictures/s", "uint8 ÷ float32"],
        rows,
    )
    report.note(f"Outputs of the two inputs on the same 16 crops: max abs difference {diff:g}.")
    report.headline = f"uint8 ÷ float32 input at batch {rows[-1][0]}: {rows[-1][4]} ({rows[-1][3]} pictures/s)"
    report.emit(args.json)
    return 0 if diff <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
