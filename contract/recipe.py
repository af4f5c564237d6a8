"""RGB image → backbone inputs, exactly as the model card says.

The single implementation used by training (embedding extraction, export parity) and serving, so the two
halves can never drift apart. numpy + Pillow only. Covered by tests/contract/test_recipe.py and
tests/contract/test_parity.py.

`model_inputs` is the recipe's entry point: one picture → `[n_crops, H, W, 3]` (NHWC; `[n_crops, 3, H, W]`
for an NCHW card). Today every card describes one centre crop, so n_crops is 1; `single_input` is how the
single-crop consumers (the embedding cache, the service's micro-batcher) take that one input.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from contract.card import Preprocessing

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class HasPreprocessing(Protocol):
    """A card's `BackboneSpec`, or training's `EmbedderSpec` before the card is written."""

    @property
    def preprocessing(self) -> Preprocessing: ...


def resize_and_crop(image: Image.Image, p: Preprocessing) -> Image.Image:
    """Shorter side to `resize_shorter` (aspect kept), then centre-crop to `crop`."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    s = p.resize_shorter / min(w, h)
    crop_h, crop_w = p.crop
    # never smaller than the crop, whatever the aspect ratio
    new_w, new_h = max(crop_w, round(w * s)), max(crop_h, round(h * s))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), _RESAMPLE[p.resample])
    left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
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


def model_inputs(image: Image.Image, backbone: HasPreprocessing) -> np.ndarray:
    """A decoded picture → float32 [n_crops, H, W, 3], the backbone inputs the card's recipe asks for."""
    return preprocess(image, backbone.preprocessing)[None]


def single_input(inputs: np.ndarray) -> np.ndarray:
    """The one input of a single-crop recipe's `model_inputs` (no batch axis)."""
    if len(inputs) != 1:
        raise ValueError(f"the recipe gives {len(inputs)} crops per picture; this consumer embeds exactly one")
    return inputs[0]
