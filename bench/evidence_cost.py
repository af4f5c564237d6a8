"""What an evidence map costs: /v1/verify's engine path with and without `evidence=n`, on one model, CPU.

    python bench/evidence_cost.py [--model-dir models/default] [--repeats 10] [--size 640x480]

Prints the median wall time of one verify against a 10-work portfolio for n = none, 2, 3, 4 and the ratio to
plain verify. Regions go through the backbone as one micro-batch, so n×n regions cost less than n×n verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from service.batching import BatchConfig
from service.engine import Engine
from service.model import Model


def picture(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = rng.uniform(0, 255, 3) + xx[..., None] * rng.uniform(-0.3, 0.3, 3) + yy[..., None] * rng.uniform(-0.3, 0.3, 3)
    img = np.clip(img + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


async def measure(model_dir: str, repeats: int, size: tuple[int, int]) -> list[tuple[str, float]]:
    model = Model.load(model_dir, providers="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.build(model, tmp, batch=BatchConfig(max_batch=16, max_wait_ms=5), use_gpu_index=False)
        await engine.start()
        try:
            engine.create_artist("a", "A")
            await engine.add_works("a", [(f"{i}.jpg", picture(i, size)) for i in range(10)])
            query = picture(99, size)
            rows = []
            for grid in (None, 2, 3, 4):
                await engine.verify(query, "a", evidence=grid)  # warm-up
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    await engine.verify(query, "a", evidence=grid)
                    times.append(time.perf_counter() - t0)
                rows.append(("none" if grid is None else f"{grid}x{grid}", statistics.median(times)))
            return rows
        finally:
            await engine.stop()
            engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default="models/default")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--size", default="640x480")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    rows = asyncio.run(measure(args.model_dir, args.repeats, (w, h)))
    base = rows[0][1]
    print(f"{'evidence':>9}  {'median ms':>9}  {'× plain':>7}")
    for name, seconds in rows:
        print(f"{name:>9}  {seconds * 1000:9.1f}  {seconds / base:7.2f}")


if __name__ == "__main__":
    main()
