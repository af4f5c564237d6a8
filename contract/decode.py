"""Bytes or a file → a checked 8-bit RGB image, or an `ImageError` naming what is wrong.

The one decoder of both halves: the service decodes uploads with `decode_bytes`, training decodes corpus
files with `decode_file` (which reads the bytes and hands them to `decode_bytes`), so a picture becomes the
same pixels wherever it is read. EXIF orientation is applied; transparency (RGBA, LA, PA, palette with tRNS)
is composited on white; 16/32-bit and float grey are scaled to 8 bits; CMYK, grey and palette become RGB.

Everything here treats the bytes as hostile: the format is detected from the content with only the allowed
Pillow plugins enabled (so e.g. the EPS plugin, which shells out to Ghostscript, is never reached), the pixel
count is checked from the header before any pixel is decoded, and the image must decode completely.
`decode_bytes` never opens a path or a URL. Errors are plain exceptions with a stable `code`; the service maps
their classes to HTTP statuses at its edge (`ImageTooLarge` 413, `UnsupportedImage` 415, `InvalidImage` 422).
Covered by tests/contract/test_decode.py and tests/contract/test_parity.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from contract.quality import jpeg_quality


class ImageError(Exception):
    """A picture that cannot be used, with a stable `code` and a message for a person."""

    codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, code: str, message: str):
        if self.codes and code not in self.codes:
            raise ValueError(f"{type(self).__name__} has no code {code!r} (it has {sorted(self.codes)})")
        super().__init__(message)
        self.code = code
        self.message = message

    def about(self, name: str) -> ImageError:
        """The same error with its message prefixed by `name` (the file it is about)."""
        return type(self)(self.code, f"{name}: {self.message}")


class ImageTooLarge(ImageError):
    """More bytes or pixels than the limits allow (HTTP 413)."""

    codes = frozenset({"image_too_large", "image_too_many_pixels"})


class UnsupportedImage(ImageError):
    """Not a picture in an accepted format, or a moving one (HTTP 415)."""

    codes = frozenset({"unsupported_format", "animated_image"})


class InvalidImage(ImageError):
    """A picture in an accepted format that is empty, damaged, of unusable proportions, or (raised by the service)
    below the quality its model was measured at (HTTP 422)."""

    codes = frozenset(
        {"empty_image", "corrupt_image", "image_too_small", "extreme_aspect_ratio", "image_quality_too_low"}
    )


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
class Decoded:
    image: Image.Image  # RGB, 8 bit, EXIF orientation applied, transparency on white
    sha256: str  # of the bytes as given
    format: str  # Pillow's name of the detected format (JPEG, PNG, MPO, ...)
    n_bytes: int = 0  # size of the bytes as given
    jpeg_quality: int | None = None  # estimated from a JPEG's quantisation tables (contract.quality), else None

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _plugins(limits: ImageLimits) -> list[str]:
    return sorted(limits.formats)


_init_lock = threading.Lock()


def _ensure_plugins() -> None:
    # Image.open(formats=...) only considers plugins already registered; preinit() registers the common
    # ones (JPEG, PNG, GIF, BMP, …) and init() the rest (WEBP, TIFF). Idempotent, but not thread-safe.
    with _init_lock:
        Image.preinit()
        Image.init()


# Corpus files are the trainer's own, not hostile uploads, and the recipe shrinks them anyway: they may be as large
# as Pillow itself decodes (its bomb guard, 2 × Image.MAX_IMAGE_PIXELS, is what training accepted before) and any
# number of bytes. Every other check is the service's, so a model never learns from a picture the service would
# refuse for its content (too small, absurd proportions, animated, another format).
CORPUS_LIMITS = ImageLimits(max_bytes=1 << 40, max_pixels=178_956_970)


def decode_file(path: str | os.PathLike[str], limits: ImageLimits | None = None) -> Decoded:
    """A picture file, checked and decoded exactly as `decode_bytes` does its bytes.

    `limits` default to `ImageLimits()`, the service's upload limits; training passes `CORPUS_LIMITS`. A file
    too large is refused from its size, before it is read. A missing or unreadable file is an OSError (not an
    ImageError: nothing is wrong with a picture).
    """
    limits = limits or ImageLimits()
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise _too_many_bytes(size, limits)
    return decode_bytes(path.read_bytes(), limits)


def decode_bytes(data: bytes | bytearray | memoryview, limits: ImageLimits | None = None) -> Decoded:
    """Validate and decode a picture's bytes. Raises an ImageError for anything wrong with them."""
    limits = limits or ImageLimits()
    if not isinstance(data, bytes | bytearray | memoryview):
        # a str here would be a path or URL: refuse rather than guess
        raise TypeError(f"decode_bytes takes the picture's bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise InvalidImage("empty_image", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(len(data), limits)
    sha = hashlib.sha256(data).hexdigest()
    _ensure_plugins()

    try:
        im = Image.open(io.BytesIO(data), formats=_plugins(limits))
    except Image.DecompressionBombError as e:
        raise _too_many_pixels(None, limits) from e
    except UnidentifiedImageError as e:
        raise UnsupportedImage(
            "unsupported_format", f"not an image in an accepted format ({', '.join(sorted(limits.formats))})"
        ) from e
    except Exception as e:  # a plugin choking on a malformed header
        raise InvalidImage("corrupt_image", f"the image header could not be read: {e}") from e

    with im:
        fmt = im.format or "unknown"
        w, h = im.size
        # header-only size: nothing has been decoded yet, so a bomb costs nothing here
        if w * h > limits.max_pixels:
            raise _too_many_pixels((w, h), limits)
        if min(w, h) < limits.min_side:
            raise InvalidImage(
                "image_too_small", f"the image is {w}×{h}; each side must be at least {limits.min_side} px"
            )
        if max(w, h) > limits.max_aspect * min(w, h):
            raise InvalidImage(
                "extreme_aspect_ratio",
                f"the image is {w}×{h}; the longer side may be at most {limits.max_aspect:g} times the shorter",
            )
        try:
            # finding a second frame means parsing past the first one, which can fail on damaged files
            animated = fmt not in _MULTI_PICTURE_OK and bool(getattr(im, "is_animated", False))
        except Exception as e:
            raise InvalidImage("corrupt_image", f"the image could not be read: {e}") from e
        if animated:
            raise UnsupportedImage(
                "animated_image",
                "animated or multi-frame images are not accepted; upload a single still picture",
            )
        try:
            im.load()
        except Image.DecompressionBombError as e:
            raise _too_many_pixels((w, h), limits) from e
        except Exception as e:  # truncated data, bad chunks, decoder errors: Pillow raises many kinds
            raise InvalidImage("corrupt_image", f"the image could not be decoded completely: {e}") from e
        quant = getattr(im, "quantization", None) if fmt in ("JPEG", "MPO") else None
        rgb = _to_rgb(_oriented(im))
    return Decoded(image=rgb, sha256=sha, format=fmt, n_bytes=len(data), jpeg_quality=jpeg_quality(quant))


def _too_many_bytes(size: int, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge("image_too_large", f"the upload is {size} bytes; the limit is {limits.max_bytes} bytes")


def _too_many_pixels(size: tuple[int, int] | None, limits: ImageLimits) -> ImageTooLarge:
    what = f"{size[0]}×{size[1]} = {size[0] * size[1]} pixels" if size else "too many pixels"
    return ImageTooLarge("image_too_many_pixels", f"the image has {what}; the limit is {limits.max_pixels}")


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
        raise UnsupportedImage("unsupported_format", f"colour mode {mode} is not supported") from e


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
