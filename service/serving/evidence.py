"""Evidence maps: how strongly each region of a query image, on its own, matches the other side of a decision.

The query (for compare, image_a) is mapped on an n×n grid of equal regions whose boxes are in the upload's own
pixels (`Picture.size`: orientation-corrected, before any reduction while decoding). Each region gets one vector,
scored against the same target with the same aggregation as the whole picture — the artist's portfolio for
verify, the other image for compare — and judged at the decision's own threshold. How a region gets its vector
(the map's `method`):

- `crops`: pooled from the crops the decision already ran through the backbone. The recipe (contract.recipe)
  embeds a picture as the mean of the vectors of a rows×cols grid of crops spread edge to edge over its resized,
  `working` picture. Crop (i, j) stands for cell (i, j) of the equal rows×cols grid over the working picture
  (`crop_cells`): the cells tile the picture, and along each side a crop spans its cell where the crops overlap
  (the usual case) and lies inside it where they leave gaps (crop starts i·(W−c)/(n−1) against cell starts i·W/n,
  rounded alike), so a cell is the part of the picture its crop saw, or the part nearest to it. A region's vector is the
  mean of the crop vectors (contract.recipe.pool) weighted by the area, in working pixels, of each crop's cell
  inside the region (`crop_weights`). With n equal to the crop grid the regions are the cells: each region is one
  crop scored alone; a coarser n pools the crops whose cells it covers, in proportion. No backbone work is added.
- `regions`: a recipe whose crop grid has fewer than n rows or columns (a single centre crop, a 2×2 grid asked for
  a 3×3 map) has no crops to pool a map that fine from. Each region is cut from the decoded upload and goes through
  the whole recipe as an upload would (the backbone inputs, the micro-batcher with all regions submitted at once,
  the head): n² more pictures' backbone work.

Why keep `regions` instead of refusing such an n: every model keeps answering every n from 2 to 4, so the API,
the client and the page stay as they are and no model-dependent 422 appears; the shipped model's 4×4 grid pools
every n, so `regions` costs it nothing; and the single-crop models (the service tests' copy, the benchmarks'
baseline, the dev model where none is shipped) would otherwise have no map at all. The two methods mean somewhat
different things (below), so the reply says which one drew the map.

What it is: which parts of the picture look, to this model, like the target. What it is not: proof, a localisation
of a signature or a forgery, or a calibrated statement about a region — the calibration tables describe whole
pictures (the mean of all their crops). A `crops` region rests on the few crops covering it, and a crop sees a
little beyond its cell where crops overlap; a `regions` region is scaled up to the model's input as if it were a
whole picture. Covered by tests/service/test_evidence.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from contract.recipe import pool
from service.errors import Invalid
from service.serving.picture import Picture

MIN_GRID = 2
MAX_GRID = 4

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels (right and bottom exclusive)
Method = Literal["crops", "regions"]


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
    method: Method  # how each region's vector was made (module docstring)
    crop_grid: tuple[int, int]  # the recipe's crop grid, rows and columns: `crops` pools maps up to its size
    regions: list[Region]  # row-major


def check_grid(value: object) -> int:
    """The grid size a caller asked for, or `Invalid` (`invalid_evidence`)."""
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_GRID <= value <= MAX_GRID:
        raise Invalid(
            "invalid_evidence", f"evidence must be an integer grid size from {MIN_GRID} to {MAX_GRID}, not {value!r}"
        )
    return value


def _edges(length: int, n: int) -> list[int]:
    return [round(i * length / n) for i in range(n + 1)]


def grid_boxes(width: int, height: int, rows: int, cols: int) -> list[Box]:
    """A rows×cols grid of boxes covering the image exactly, row-major; edges rounded so every pixel is in one box."""
    xs, ys = _edges(width, cols), _edges(height, rows)
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def region_boxes(width: int, height: int, grid: int) -> list[Box]:
    """The map's n×n regions of an image of width × height, row-major."""
    return grid_boxes(width, height, grid, grid)


def crop_cells(working: tuple[int, int], crop_grid: tuple[int, int]) -> list[Box]:
    """The part of the working picture each crop stands for, in contract.recipe.crop_boxes order: the equal
    rows×cols grid over it (along each side a crop spans its cell, or lies inside it: module docstring)."""
    rows, cols = crop_grid
    return grid_boxes(working[0], working[1], rows, cols)


def _area(a: Box, b: Box) -> int:
    """Pixels of box a inside box b."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def crop_weights(working: tuple[int, int], crop_grid: tuple[int, int], grid: int) -> np.ndarray:
    """[n², rows·cols]: for region r of the n×n map over the working picture (row-major) and crop k (crop_boxes
    order), the area in working pixels of crop k's cell inside region r — the weight of crop k's vector in region
    r's. Each row sums to its region's area; at n = rows = cols it is the identity times the cells' areas."""
    cells = crop_cells(working, crop_grid)
    return np.array(
        [[_area(cell, region) for cell in cells] for region in region_boxes(working[0], working[1], grid)], np.float64
    )


def poolable(crop_grid: tuple[int, int], grid: int) -> bool:
    """Whether an n×n map can be pooled from the recipe's crops: at least n rows and n columns of them."""
    return min(crop_grid) >= grid


def pooled_regions(
    crops: np.ndarray, working: tuple[int, int], crop_grid: tuple[int, int], grid: int
) -> list[np.ndarray]:
    """Each region's vector: the crop vectors (contract.recipe.crop_features, crop_boxes order) pooled with
    `crop_weights`. A region that no crop's cell reaches has no vector: `ValueError` (the cells tile the picture,
    so only a working picture narrower than n pixels, which contract.recipe.resized never makes, has one)."""
    weights = crop_weights(working, crop_grid, grid)
    if len(crops) != weights.shape[1]:
        raise ValueError(f"{len(crops)} crop vectors for a {crop_grid[0]}×{crop_grid[1]} crop grid")
    empty = [i for i, total in enumerate(weights.sum(axis=1)) if total <= 0]
    if empty:
        raise ValueError(f"regions {empty} of a {grid}×{grid} map over {working} hold no crop's cell")
    return [pool(crops, row) for row in weights]


async def evidence_map(
    picture: Picture,
    grid: int,
    *,
    crop_grid: tuple[int, int],
    score: Callable[[list[np.ndarray]], list[float]],
    threshold: float,
    target: str,
    decode: Callable[[], Image.Image],
    prepare: Callable[[Image.Image], np.ndarray],
    embed: Callable[[np.ndarray], Awaitable[np.ndarray]],
) -> EvidenceMap:
    """Score each region of the query `picture` (its crop vectors, working and upload sizes).

    `crop_grid` is the bundle's recipe's (`preprocessing.grid`); `score` turns the regions' vectors into one score
    each against the target (run in a worker thread). Only for `regions` (a crop grid coarser than n): `decode`
    gives the decoded upload (a worker thread), `prepare` is the bundle's image → backbone inputs step
    (`Model.model_inputs`), `embed` its micro-batcher.
    """
    grid = check_grid(grid)
    method: Method
    if poolable(crop_grid, grid):
        method = "crops"
        vectors: Sequence[np.ndarray] = pooled_regions(picture.crops, picture.working, crop_grid, grid)
    else:
        method = "regions"
        image = await asyncio.to_thread(decode)
        cuts = region_boxes(image.width, image.height, grid)
        inputs = await asyncio.to_thread(lambda: [prepare(image.crop(b)) for b in cuts])
        vectors = await asyncio.gather(*(embed(x) for x in inputs))
    scores = await asyncio.to_thread(score, list(vectors))
    width, height = picture.size
    regions = [
        Region(row=i // grid, col=i % grid, box=b, score=float(s), match=bool(s >= threshold))
        for i, (b, s) in enumerate(zip(region_boxes(width, height, grid), scores, strict=True))
    ]
    return EvidenceMap(grid, width, height, threshold, target, method, crop_grid, regions)
