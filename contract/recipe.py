"""RGB image → backbone inputs, exactly as the model card says.

The single implementation used by training (embedding extraction, export parity) and serving, so the two
halves can never drift apart. numpy + Pillow only. Covered by tests/contract/test_recipe.py and
tests/contract/test_parity.py.

`model_inputs` is the recipe's entry point: one picture → `[n_crops, H, W, 3]` (NHWC; `[n_crops, 3, H, W]`
for an NCHW card): the picture resized so its shorter side is `resize_shorter`, then a `grid` of crops spread
evenly over it (texture near native resolution, which carries the brushwork). The backbone runs every crop;
`combine` turns its per-crop outputs into the picture's one embedding, as the card's `EmbeddingRecipe` says.
A [1, 1] grid is the old single centre crop. With `uint8=True` the crops come as cut — uint8, NHWC, RGB — for a
backbone graph that normalises them itself (contract/graph.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from contract.card import EmbeddingRecipe, Preprocessing

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class HasPreprocessing(Protocol):
    """A card's `BackboneSpec`, or training's `EmbedderSpec` before the card is written."""

    @property
    def preprocessing(self) -> Preprocessing: ...


def resized(image: Image.Image, p: Preprocessing) -> Image.Image:
    """Shorter side to `resize_shorter` (aspect kept), never smaller than the crop in either direction."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    s = p.resize_shorter / min(w, h)
    crop_h, crop_w = p.crop
    new_w, new_h = max(crop_w, round(w * s)), max(crop_h, round(h * s))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), _RESAMPLE[p.resample])
    return image


def _starts(length: int, crop: int, n: int) -> list[int]:
    if n == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (n - 1)) for i in range(n)]


def crop_boxes(size: tuple[int, int], p: Preprocessing) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of each crop in the resized picture of `size` (w, h), row by row."""
    w, h = size
    crop_h, crop_w = p.crop
    rows, cols = p.grid
    return [(x, y, x + crop_w, y + crop_h) for y in _starts(h, crop_h, rows) for x in _starts(w, crop_w, cols)]


def resize_and_crop(image: Image.Image, p: Preprocessing) -> Image.Image:
    """Shorter side to `resize_shorter` (aspect kept), then centre-crop to `crop`."""
    image = resized(image, p)
    w, h = image.size
    crop_h, crop_w = p.crop
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def to_input(pixels: np.ndarray, p: Preprocessing) -> np.ndarray:
    """uint8 [H, W, 3] RGB (already resized/cropped) → float32 model input without the batch axis."""
    x: np.ndarray = pixels.astype(np.float32) * np.float32(p.scale)
    x = (x - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    if p.channel_order == "BGR":
        x = x[..., ::-1]
    if p.layout == "NCHW":
        x = np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x, dtype=np.float32)


def preprocess(image: Image.Image, p: Preprocessing) -> np.ndarray:
    """PIL image (any mode) → float32 input of the centre crop (no batch axis)."""
    return to_input(np.asarray(resize_and_crop(image, p), dtype=np.uint8), p)


def model_inputs(image: Image.Image, backbone: HasPreprocessing, uint8: bool = False) -> np.ndarray:
    """A decoded picture → float32 [n_crops, H, W, 3], the backbone inputs the card's recipe asks for; with
    `uint8`, the same crops before step 3 of `Preprocessing` (uint8 [n_crops, H, W, 3] RGB, whatever the card's
    layout and channel order: contract.graph.with_uint8_input puts the rest in the graph)."""
    p = backbone.preprocessing
    if p.grid == (1, 1):
        if uint8:
            return np.asarray(resize_and_crop(image, p), dtype=np.uint8)[None]
        return preprocess(image, p)[None]
    big = np.asarray(resized(image, p), dtype=np.uint8)
    boxes = crop_boxes((big.shape[1], big.shape[0]), p)
    if uint8:
        return np.stack([big[t:b, left:r] for left, t, r, b in boxes])
    if p.channel_order != "RGB" or p.layout != "NHWC":
        return np.stack([to_input(big[t:b, left:r], p) for left, t, r, b in boxes])
    # `to_input` of each crop, written in place into one array (the same operations in the same order, so the
    # same float32 values, without a temporary per operation and per crop)
    crop_h, crop_w = p.crop
    out = np.empty((len(boxes), crop_h, crop_w, 3), np.float32)
    for i, (left, t, r, b) in enumerate(boxes):
        out[i] = big[t:b, left:r]
    out *= np.float32(p.scale)
    out -= np.asarray(p.mean, np.float32)
    out /= np.asarray(p.std, np.float32)
    return out


def crop_features(crop_outputs: np.ndarray, recipe: EmbeddingRecipe) -> np.ndarray:
    """Backbone outputs of crops [n, crop_dim] → the per-crop vectors `combine` averages [n, embedding_dim]
    (training fits the whitening on these)."""
    x = np.asarray(crop_outputs, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected [n_crops, dim] crop outputs, got shape {x.shape}")
    if recipe.crop_features is not None:
        x = x[:, recipe.crop_features[0] : recipe.crop_features[1]]
    if recipe.combine == "l2_mean":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
    return x


def pool(vectors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-crop vectors [n, embedding_dim] (`crop_features`) → their (weighted) mean [embedding_dim]: a picture's
    embedding over all its crops (`combine`), or a region's over the crops that cover it (evidence maps)."""
    out: np.ndarray = np.average(np.asarray(vectors, np.float64), axis=0, weights=weights).astype(np.float32)
    return out


def combine(crop_outputs: np.ndarray, recipe: EmbeddingRecipe) -> np.ndarray:
    """The backbone's outputs for one picture's crops [n_crops, crop_dim] → its embedding [embedding_dim]."""
    return pool(crop_features(crop_outputs, recipe))
