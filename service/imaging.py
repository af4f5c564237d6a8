"""Upload bytes → a checked RGB image, or a 4xx ApiError naming what is wrong.

Everything here treats the bytes as hostile: the format is detected from the content with only the allowed
Pillow plugins enabled (so e.g. the EPS plugin, which shells out to Ghostscript, is never reached), the pixel
count is checked from the header before any pixel is decoded, and the image must decode completely.
Bytes only: this module never opens a path or a URL. Covered by tests/service/test_imaging.py.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ApiError

DEFAULT_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"})

# Camera JPEGs often carry a second (preview/stereo) picture; Pillow's JPEG plugin then reports format MPO.
# They are JPEGs to the caller: only the first picture is used, they are not "animated".
_MULTI_PICTURE_OK = {"MPO"}
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16
    # preprocessing scales the shorter side up to the model's size: a 16×2,000,000 strip would become billions
    # of pixels. Hanging scrolls reach ~10:1, so 25:1 refuses only the absurd.
    max_aspect: float = 25.0
    formats: frozenset[str] = field(default=DEFAULT_FORMATS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", frozenset(f.upper() for f in self.formats))
        _ensure_plugins()
        unknown = self.formats - set(Image.OPEN)
        if unknown:
            raise ValueError(f"unknown image formats in the allow-list: {sorted(unknown)}")


@dataclass(frozen=True)
class CheckedImage:
    image: Image.Image  # RGB, 8 bit, EXIF orientation applied
    sha256: str
    format: str
    width: int
    height: int


def _plugins(limits: ImageLimits) -> list[str]:
    return sorted(limits.formats)


_init_lock = threading.Lock()


def _ensure_plugins() -> None:
    # Image.open(formats=...) only considers plugins already registered; preinit() registers the common
    # ones (JPEG, PNG, GIF, BMP, …) and init() the rest (WEBP, TIFF). Idempotent, but not thread-safe.
    with _init_lock:
        Image.preinit()
        Image.init()


def load_image(data: bytes | bytearray | memoryview, limits: ImageLimits | None = None) -> CheckedImage:
    """Validate and decode an upload. Raises ApiError (413/415/422) for anything a caller can get wrong."""
    limits = limits or ImageLimits()
    if not isinstance(data, bytes | bytearray | memoryview):
        # a str here would be a path or URL: refuse rather than guess
        raise TypeError(f"load_image takes the uploaded bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise ApiError(422, "empty_image", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise ApiError(
            413, "image_too_large", f"the upload is {len(data)} bytes; the limit is {limits.max_bytes} bytes"
        )
    sha = hashlib.sha256(data).hexdigest()
    _ensure_plugins()

    try:
        im = Image.open(io.BytesIO(data), formats=_plugins(limits))
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(None, limits) from e
    except UnidentifiedImageError as e:
        raise ApiError(
            415,
            "unsupported_format",
            f"not an image in an accepted format ({', '.join(sorted(limits.formats))})",
        ) from e
    except Exception as e:  # a plugin choking on a malformed header
        raise ApiError(422, "corrupt_image", f"the image header could not be read: {e}") from e

    with im:
        fmt = im.format or "unknown"
        w, h = im.size
        # header-only size: nothing has been decoded yet, so a bomb costs nothing here
        if w * h > limits.max_pixels:
            raise _too_many_pixels((w, h), limits)
        if min(w, h) < limits.min_side:
            raise ApiError(
                422, "image_too_small", f"the image is {w}×{h}; each side must be at least {limits.min_side} px"
            )
        if max(w, h) > limits.max_aspect * min(w, h):
            raise ApiError(
                422,
                "extreme_aspect_ratio",
                f"the image is {w}×{h}; the longer side may be at most {limits.max_aspect:g} times the shorter",
            )
        try:
            # finding a second frame means parsing past the first one, which can fail on damaged files
            animated = fmt not in _MULTI_PICTURE_OK and bool(getattr(im, "is_animated", False))
        except Exception as e:
            raise ApiError(422, "corrupt_image", f"the image could not be read: {e}") from e
        if animated:
            raise ApiError(
                415,
                "animated_image",
                "animated or multi-frame images are not accepted; upload a single still picture",
            )
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise _too_many_pixels((w, h), limits) from e
        except Exception as e:  # truncated data, bad chunks, decoder errors: Pillow raises many kinds
            raise ApiError(422, "corrupt_image", f"the image could not be decoded completely: {e}") from e
        rgb = _to_rgb(_oriented(im))
    return CheckedImage(image=rgb, sha256=sha, format=fmt, width=rgb.width, height=rgb.height)


def _too_many_pixels(size: tuple[int, int] | None, limits: ImageLimits) -> ApiError:
    what = f"{size[0]}×{size[1]} = {size[0] * size[1]} pixels" if size else "too many pixels"
    return ApiError(413, "image_too_many_pixels", f"the image has {what}; the limit is {limits.max_pixels}")


def _oriented(im: Image.Image) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:
        # broken EXIF is metadata damage, not picture damage: keep the pixels as stored
        return im
    return out if out is not None else im


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB. Transparency is composited on white (the paper/canvas colour)."""
    mode = im.mode
    if mode == "RGB":
        return im.copy() if im.readonly else im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_wide_to_uint8(np.asarray(im), mode), "L").convert("RGB")
    if (mode == "P" and "transparency" in im.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise ApiError(415, "unsupported_format", f"colour mode {mode} is not supported") from e


def _wide_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float grey → uint8.

    16-bit data (and 32-bit integer data within 0..65535, which is how Pillow reads 16-bit PNG/TIFF) is
    scaled by 255/65535 so tones keep their meaning; floats in 0..1 are scaled by 255; anything else is
    stretched min..max because its range carries no absolute meaning.
    """
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        scaled = a * (255.0 / 65535.0)
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = a * 255.0
    else:
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
