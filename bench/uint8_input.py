"""The backbone's input type, side by side: a model's backbone fed uint8 crops with the card's normalisation as the
graph's first nodes (contract.graph.with_uint8_input; the service's `backbone_input=uint8`, its default) against
the card's file fed float32 crops normalised in numpy (`backbone_input=float32`). The outputs must be identical
(printed: max abs difference). Two measurements: the backbone alone at each batch size (crops/s: what a quarter
of the bytes copied to the device buys on a GPU; the float32 side does not pay its numpy normalisation here), and
per picture as the service runs it (`Model.model_inputs` + the backbone on 800×600 JPEGs, both models loaded as
the service loads them, rounds alternating).

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
    p.add_argument("--pictures", type=int, default=None, help="pictures per round as served (default 12; quick 3)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per input type as served (default 8; quick 2)")
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
    served = as_served(args.model_dir, args.providers, args.pictures or (3 if args.quick else 12),
                       args.rounds or (2 if args.quick else 8))  # fmt: skip
    report.table(
        f"Per picture as served (crops cut + backbone), median ms over {len(served['float32'])} rounds",
        ["backbone_input", "ms per picture", "÷ float32"],
        [[k, C.fmt(v, 1), f"{v / _medians(served)['float32']:.2f}×"] for k, v in _medians(served).items()],
    )
    report.data = {"batches": rows, "max_abs_difference": diff, "served_ms": served}
    m = _medians(served)
    report.headline = (
        f"uint8 ÷ float32 input: backbone alone at batch {rows[-1][0]} {rows[-1][4]} ({rows[-1][3]} pictures/s); "
        f"per picture as served {m['uint8'] / m['float32']:.2f}× ({C.fmt(m['uint8'], 1)} vs "
        f"{C.fmt(m['float32'], 1)} ms) [{f32.get_providers()[0]}]"
    )
    report.emit(args.json)
    return 0 if diff <= 1e-5 else 1


def as_served(model_dir: Path, providers: str, pictures: int, rounds: int) -> dict[str, list[float]]:
    """Per backbone_input, each round's ms per picture: `Model.model_inputs` then `Model.crop_vectors`, one picture
    at a time (the CPU default batch), on `pictures` 800×600 JPEGs decoded and resized beforehand."""
    import dataclasses

    from bench.pictures import painting_jpeg
    from contract.decode import decode_bytes
    from contract.recipe import resized
    from service.serving.model import Model

    base = C.session_config()
    models = {
        k: Model.load(model_dir, providers, session=dataclasses.replace(base, backbone_input=k))
        for k in ("float32", "uint8")
    }
    pre = models["float32"].card.backbone.preprocessing
    work = [resized(decode_bytes(painting_jpeg(i, 1, (800, 600))).image, pre) for i in range(pictures)]
    out: dict[str, list[float]] = {k: [] for k in models}
    for r in range(rounds + 1):  # the first round warms both up and is not kept
        for k in models if r % 2 == 0 else reversed(models):
            model = models[k]
            t0 = time.perf_counter()
            for w in work:
                model.crop_vectors([model.model_inputs(w)])
            if r:
                out[k].append((time.perf_counter() - t0) / len(work) * 1e3)
    return out


def _medians(served: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.median(v)) for k, v in served.items()}


if __name__ == "__main__":
    raise SystemExit(main())
