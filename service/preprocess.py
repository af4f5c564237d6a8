"""RGB image → backbone input, exactly as the model card says.

The single implementation used by training (embedding extraction, export parity) and serving, so the two
halves can never drift apart. numpy + Pillow only. Covered by tests/service/test_preprocess.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from service.card import Preprocessing

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


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
    """PIL image (any mode) → float32 model input for one image (no batch axis)."""
    return to_input(np.asarray(resize_and_crop(image, p), dtype=np.uint8), p)
