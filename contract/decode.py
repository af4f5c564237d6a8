"""Bytes or a file → a checked 8-bit RGB image, or an `ImageError` naming what is wrong.

The one decoder of both halves: the service decodes uploads with `decode_bytes`, training decodes corpus
files with `decode_file` (which reads the bytes and hands them to `decode_bytes`), so a picture becomes the
same pixels wherever it is read. EXIF orientation is applied; transparency (RGBA, LA, PA, palette with tRNS)
is composited on white; 16/32-bit and float grey are scaled to 8 bits; CMYK, grey and palette become RGB.

Everything here treats the bytes as hostile: the format is detected from the content with only the allowed
Pillow plugins enabled (so e.g. the EPS plugin, which shells out to Ghostscript, is never reached), the pixel
count is checked from the header before any pixel is decoded (`max_pixels`, 200 MP: anything larger is refused
as a bomb), and the image must decode completely. Pillow's own guard, which refuses above twice
`Image.MAX_IMAGE_PIXELS` as a file is opened, is raised (never switched off) so that it refuses at the largest
`max_pixels` in use, before any plugin allocates a picture.

Large scans are reduced while decoding to at most `decode_pixels` (40 MP; the recipe resizes the shorter side to
a few hundred pixels anyway), by a whole factor: a JPEG by its decoder's DCT scaling (Pillow `draft`: 1/2, 1/4 or
1/8, so only the reduced picture is ever in memory), other formats by decoding them once and then `Image.reduce`
(a box average) — one such full-size decode at a time per process (`_LARGE`), so memory stays bounded however
many arrive together. `Decoded.size` keeps the upload's own size (what quality is measured on) and `reduced`
the factor.
`decode_bytes` never opens a path or a URL. Errors are plain exceptions with a stable `code`; the service maps
their classes to HTTP statuses at its edge (`ImageTooLarge` 413, `UnsupportedImage` 415, `InvalidImage` 422).
Covered by tests/contract/test_decode.py and tests/contract/test_parity.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

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
    max_bytes: int = 64_000_000
    max_pixels: int = 200_000_000  # refused from the header above this
    decode_pixels: int = 40_000_000  # reduced while decoding above this
    min_side: int = 16
    # preprocessing scales the shorter side up to the model's size: a 16×2,000,000 strip would become billions
    # of pixels. Hanging scrolls reach ~10:1, so 25:1 refuses only the absurd.
    max_aspect: float = 25.0
    formats: frozenset[str] = field(default=DEFAULT_FORMATS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", frozenset(f.upper() for f in self.formats))
        _ensure_plugins(self.max_pixels)
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
    source_size: tuple[int, int] | None = None  # the upload's own width and height, oriented (None: the image's)
    reduced: int = 1  # the whole factor the picture was reduced by while decoding

    @property
    def size(self) -> tuple[int, int]:
        """The upload's own size (before any reduction), oriented as the image is."""
        return self.source_size or self.image.size

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _plugins(limits: ImageLimits) -> list[str]:
    return sorted(limits.formats)


_init_lock = threading.Lock()
# one full-size decode above `decode_pixels` at a time (formats the decoder cannot scale): bounded memory
_LARGE = threading.Lock()


def _ensure_plugins(max_pixels: int = 0) -> None:
    # Image.open(formats=...) only considers plugins already registered; preinit() registers the common
    # ones (JPEG, PNG, GIF, BMP, …) and init() the rest (WEBP, TIFF). Idempotent, but not thread-safe.
    with _init_lock:
        Image.preinit()
        Image.init()
        # Pillow refuses above 2 × MAX_IMAGE_PIXELS (179 MP by default) as it opens a file, before `max_pixels`
        # can be read from the header here (and its WebP plugin allocates the canvas while opening): raised, never
        # lowered or switched off, so that its refusal falls at the largest limit in use. Its warning, between
        # half that and that, is for sizes this module accepts on purpose.
        half = -(-max_pixels // 2)
        if Image.MAX_IMAGE_PIXELS is not None and half > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = half
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# Corpus files are the trainer's own, not hostile uploads: they may be any number of bytes. Every other check is
# the service's (pixels too, and the same reduction while decoding), so a model never learns from a picture the
# service would refuse or see otherwise (too small, absurd proportions, animated, another format).
CORPUS_LIMITS = ImageLimits(max_bytes=1 << 40)


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


def digest(data: bytes | bytearray | memoryview) -> str:
    """The sha256 of a picture's bytes (hex): what `Decoded.sha256` records."""
    return hashlib.sha256(data).hexdigest()


def decode_bytes(
    data: bytes | bytearray | memoryview, limits: ImageLimits | None = None, sha256: str | None = None
) -> Decoded:
    """Validate and decode a picture's bytes. Raises an ImageError for anything wrong with them. `sha256`: the
    bytes' `digest`, when the caller has it already (not computed again)."""
    limits = limits or ImageLimits()
    if not isinstance(data, bytes | bytearray | memoryview):
        # a str here would be a path or URL: refuse rather than guess
        raise TypeError(f"decode_bytes takes the picture's bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise InvalidImage("empty_image", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(len(data), limits)
    sha = sha256 or digest(data)
    _ensure_plugins(limits.max_pixels)

    try:
        im = Image.open(io.BytesIO(data), formats=_plugins(limits))
    except Image.DecompressionBombError as e:  # Pillow's guard, at the limit (`_ensure_plugins`)
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_many_pixels(int(found[1]) if found else None, limits) from e
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
        budget = min(limits.decode_pixels, limits.max_pixels)
        factor = _factor(w * h, budget)
        if factor > 1 and fmt in ("JPEG", "MPO"):
            # DCT scaling by the power of two at or above the factor (at most 1/8): only that is ever decoded
            scale = min(8, 1 << (factor - 1).bit_length())
            im.draft(im.mode, (w // scale, h // scale))
        try:
            with _LARGE if im.size[0] * im.size[1] > budget else contextlib.nullcontext():
                im.load()
                quant = getattr(im, "quantization", None) if fmt in ("JPEG", "MPO") else None
                orientation = _orientation(im)  # read before reducing: a reduced TIFF no longer has its tags
                picture = _reduced(im, _factor(im.size[0] * im.size[1], budget))
        except Exception as e:  # truncated data, bad chunks, decoder errors: Pillow raises many kinds
            raise InvalidImage("corrupt_image", f"the image could not be decoded completely: {e}") from e
        rgb = _to_rgb(_oriented(picture, orientation))
    return Decoded(
        image=rgb,
        sha256=sha,
        format=fmt,
        n_bytes=len(data),
        jpeg_quality=jpeg_quality(quant),
        source_size=(h, w) if orientation in _SWAPS_SIDES else (w, h),
        reduced=round(w / picture.size[0]),
    )


def _factor(pixels: int, budget: int) -> int:
    """The smallest whole factor that brings `pixels` within `budget` (1: no reduction)."""
    return 1 if pixels <= budget else math.ceil(math.sqrt(pixels / budget))


# modes Image.reduce cannot average (or would average meaninglessly: palette indices) and what to reduce them in
_REDUCE_IN = {"1": "L", "P": "RGB", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}


def _reduced(im: Image.Image, factor: int) -> Image.Image:
    """`im` reduced by a whole factor (a box average; alpha is premultiplied by Pillow, so compositing on white
    afterwards gives the average of the composited pixels)."""
    if factor <= 1:
        return im
    if im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
    elif im.mode in _REDUCE_IN:
        im = im.convert(_REDUCE_IN[im.mode])
    try:
        return im.reduce(factor)
    except ValueError:  # a mode Pillow cannot reduce
        return _to_rgb(im).reduce(factor)


def megabytes(n: int) -> str:
    """A byte count for people, in MB (10^6 bytes): "64 MB", "20.5 MB"; under 0.1 MB in kB ("10 kB")."""
    value, unit = (n / 1e6, "MB") if n >= 100_000 else (n / 1e3, "kB")
    return f"{value:,.1f}".removesuffix(".0") + f" {unit}"


def _too_many_bytes(size: int, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(
        "image_too_large", f"the upload is {megabytes(size)}; the limit is {megabytes(limits.max_bytes)}"
    )


def megapixels(n: int) -> str:
    """A pixel count for people, in MP: "53.3 MP", "200 MP", "200.02 MP"; under 0.01 MP in pixels ("3,000 pixels")."""
    return f"{n / 1e6:,.2f}".rstrip("0").rstrip(".") + " MP" if n >= 10_000 else f"{n:,} pixels"


def _too_many_pixels(size: tuple[int, int] | int | None, limits: ImageLimits) -> ImageTooLarge:
    """`size`: width and height from the header, or only their product (as Pillow's own guard gives it)."""
    if isinstance(size, tuple):
        what = f"{size[0]}×{size[1]} = {megapixels(size[0] * size[1])}"
    else:
        what = "too many pixels" if size is None else f"{size:,} pixels ({megapixels(size)})"
    return ImageTooLarge(
        "image_too_many_pixels",
        f"the image has {what}; the limit is {megapixels(limits.max_pixels)} (scans up to it are reduced while "
        "decoding)",
    )


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1: as stored; 1 too when the EXIF is broken: metadata damage, not picture damage)."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if value in _TRANSPOSE else 1


def _oriented(im: Image.Image, orientation: int) -> Image.Image:
    return im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im


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
