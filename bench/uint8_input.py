"""The backbone's input type, side by side: a model's backbone fed uint8 crops with the card's normalisation as the
graph's first nodes (contract.graph.with_uint8_input; the service's `backbone_input=uint8`, its default) against
the card's file fed float32 crops normalised in numpy (`backbone_input=float32`). The outputs must be identical
(printed: max abs difference); the crops per second at each batch size show what a quarter of the bytes copied
to the device buys (on a GPU) or costs (on a CPU).

    python -m bench.uint8_input [--model-dir models/fast] [--providers cuda] [--batches 64,256,1024]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common as C


def main(argv: list[str] | None = None) -> int:
    from contract.card import load_card
    from contract.graph import with_uint8_input
    from contract.recipe import to_input

    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", type=Path, default=Path("models/fast"))
    p.add_argument("--batches", default="64,256,1024")
    args = p.parse_args(argv)
    providers = C.ort_providers(args.providers)
    card = load_card(args.model_dir)
    b = card.backbone
    pre = b.preprocessing
    report = C.Report("uint8_input", "uint8 backbone input, normalisation in the graph", C.command_line(), args.quick)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="brushprint-u8-") as tmp:
        u8_path = Path(tmp) / "backbone-u8.onnx"
        u8_path.write_bytes(with_uint8_input(args.model_dir / b.file, pre, b.input_name))
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
