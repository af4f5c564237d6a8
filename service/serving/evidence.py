"""Evidence maps: how strongly each region of a query image, on its own, matches the other side of a decision.

The query (the decoded, orientation-corrected image that was scored) is cut into an n×n grid of equal regions.
Each region goes through exactly the path a whole upload takes — the backbone inputs (crops) the model card's
recipe asks for, the backbone through the service's micro-batcher (all regions submitted at once, so they share
backbone runs: one run while their crops fit `batch_max_size`), the head — and is scored against the same
target with the same aggregation: the artist's portfolio for verify, the other image for compare. Each
region's score is judged at the decision's own threshold.

What it is: which parts of the picture look, to this model, like the portfolio. What it is not: proof, a
localisation of a signature or a forgery, or a calibrated statement about a region (the calibration tables
describe whole images, not crops). Covered by tests/service/test_evidence.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.errors import Invalid

MIN_GRID = 2
MAX_GRID = 4

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels (right and bottom exclusive)


@dataclass(frozen=True)
class Region:
    row: int
    col: int
    box: Box
    score: float
    match: bool  # score >= the decision's threshold


@dataclass(frozen=True)
class EvidenceMap:
    grid: int  # n: the map has n rows and n columns
    width: int  # size of the upload (orientation-corrected) the boxes refer to
    height: int
    threshold: float
    target: str  # "portfolio" (verify) or "image_b" (compare)
    regions: list[Region]  # row-major


def check_grid(value: object) -> int:
    """The grid size a caller asked for, or `Invalid` (`invalid_evidence`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_GRID <= value <= MAX_GRID:
        raise Invalid(
            "invalid_evidence", f"evidence must be an integer grid size from {MIN_GRID} to {MAX_GRID}, not {value!r}"
        )
    return value


def region_boxes(width: int, height: int, grid: int) -> list[Box]:
    """An n×n grid of boxes covering the image exactly, row-major; edges rounded so every pixel is in one box."""
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(j * height / grid) for j in range(grid + 1)]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]


async def evidence_map(
    image: Image.Image,
    grid: int,
    *,
    prepare: Callable[[Image.Image], np.ndarray],
    embed: Callable[[np.ndarray], Awaitable[np.ndarray]],
    score: Callable[[list[np.ndarray]], list[float]],
    threshold: float,
    target: str,
    size: tuple[int, int] | None = None,
) -> EvidenceMap:
    """Score each region of `image`.

    `size`: the upload's own width and height where the decoder reduced it (contract.decode.Decoded.size): the
    regions are cut from `image` but the boxes given are the same grid over the upload's own pixels. `prepare` is
    the bundle's image → backbone inputs step (`Model.model_inputs`), `embed` its micro-batcher, `score` turns the
    regions' embeddings into one score each against the target (run in a worker thread, like `prepare`).
    """
    grid = check_grid(grid)
    width, height = size or image.size
    boxes = region_boxes(width, height, grid)
    cuts = region_boxes(image.width, image.height, grid)
    inputs = await asyncio.to_thread(lambda: [prepare(image.crop(b)) for b in cuts])
    embeddings = await asyncio.gather(*(embed(x) for x in inputs))
    scores = await asyncio.to_thread(score, list(embeddings))
    regions = [
        Region(row=i // grid, col=i % grid, box=b, score=float(s), match=bool(s >= threshold))
        for i, (b, s) in enumerate(zip(boxes, scores, strict=True))
    ]
    return EvidenceMap(grid, width, height, threshold, target, regions)
