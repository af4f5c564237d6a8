"""Acquisition conditions: the same painting as people actually send it.

A dealer's picture of a painting is rarely the museum's file: a phone photo of a canvas (perspective, tilt, white
balance, sensor noise, the phone's sharpening, JPEG), a picture forwarded through a messenger (downscaled and
recompressed twice), a WebP from a web page, a screenshot. Each `Condition` turns a published picture into the
bytes such a caller would upload, deterministically for a given seed, so the model's evaluation can put every
image of a corpus through it (training/evaluation/robustness.py) and the robust projection can be fitted on copies that
differ only by the camera (training/heads/cosine.py).

Every condition belongs to a *family* (what kind of nuisance it is: jpeg, webp, resample, blur, sharpen, noise,
colour, geometry, and `combined` for the several-step ones a caller meets as a whole: a phone photo, a messenger
forward, a web thumbnail). Anything fitted on transformed copies is judged on conditions whose family it never
saw (leave one family out): `held_out_fit(c)` lists the conditions a fit may use when `c` is judged. A combined
condition is new as a combination; its single steps are each in some other family the fit did see.

Pillow + numpy only. Covered by tests/training/test_conditions.py.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# Bump when any condition's pixels change, so cached embeddings of the old version are not reused.
VERSION = 1

Transform = Callable[[Image.Image, np.random.Generator], bytes]


@dataclass(frozen=True)
class Condition:
    name: str
    families: tuple[str, ...]
    description: str
    apply: Transform

    def __call__(self, image: Image.Image, seed: int) -> bytes:
        """The bytes a caller would upload, for a decoded RGB picture (deterministic in `seed`)."""
        rng = np.random.default_rng([seed, int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)])
        return self.apply(image.convert("RGB"), rng)


# ------------------------------------------------------------------------------------------- building blocks


def encode(image: Image.Image, fmt: str, quality: int | None = None) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=quality or 90)
    elif fmt == "WEBP":
        image.save(buf, "WEBP", quality=quality or 80, method=4)
    else:
        image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def scaled(image: Image.Image, factor: float, resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    w, h = image.size
    return image.resize((max(16, round(w * factor)), max(16, round(h * factor))), resample, reducing_gap=None)


def down_up(image: Image.Image, factor: float) -> Image.Image:
    """Resolution lost on the way (a small copy blown up again): down with area averaging, back up bicubic."""
    small = scaled(image, factor, Image.Resampling.BOX)
    return small.resize(image.size, Image.Resampling.BICUBIC)


def blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def sharpen(image: Image.Image, radius: float = 2.0, percent: int = 120, threshold: int = 2) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=threshold))


def noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Sensor noise: signal-dependent (shot) plus read noise, stronger in the shadows' chroma, as a phone has."""
    x = np.asarray(image, np.float32)
    luma_scale = np.sqrt(np.clip(x, 8, 255) / 128.0)
    n = rng.normal(0.0, sigma, x.shape).astype(np.float32) * luma_scale
    n += rng.normal(0.0, sigma * 0.5, x.shape[:2] + (1,)).astype(np.float32)  # luminance grain
    return Image.fromarray(np.clip(x + n, 0, 255).round().astype(np.uint8))


def colour(image: Image.Image, gains: Sequence[float] = (1.0, 1.0, 1.0), gamma: float = 1.0) -> Image.Image:
    """White balance (per-channel gains) and a tone curve (gamma), as a camera's auto settings move them."""
    x = np.asarray(image, np.float32) / 255.0
    x = np.clip(x * np.asarray(gains, np.float32), 0, 1) ** gamma
    return Image.fromarray((x * 255.0).round().astype(np.uint8))


def handheld(image: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """A hand-held photo of a canvas: small perspective (corners moved up to 4 %), a tilt of up to 3°, and a frame
    of 2-6 % cut away (the photographer's framing), resampled bicubic."""
    w, h = image.size
    jitter = 0.04 * strength
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    dst = src + rng.uniform(-jitter, jitter, (4, 2)) * np.array([w, h])
    angle = np.deg2rad(rng.uniform(-3, 3) * strength)
    c, s = np.cos(angle), np.sin(angle)
    centre = np.array([w / 2, h / 2])
    dst = (dst - centre) @ np.array([[c, -s], [s, c]]).T + centre
    # PIL's PERSPECTIVE maps output pixels to input pixels: solve the homography output(dst) -> input(src)
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a), src.reshape(-1))
    warped = image.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC)
    cut = rng.uniform(0.02, 0.06, 4) * strength
    box = (round(cut[0] * w), round(cut[1] * h), round(w * (1 - cut[2])), round(h * (1 - cut[3])))
    return warped.crop(box)


# ---------------------------------------------------------------------------------------------- conditions


def _phone_photo(im: Image.Image, rng: np.random.Generator) -> bytes:
    im = handheld(im, rng)
    warm = rng.uniform(-0.08, 0.08)
    im = colour(im, (1 + warm, 1.0, 1 - warm), gamma=rng.uniform(0.85, 1.15))
    im = blur(im, rng.uniform(0.4, 0.9))
    im = noise(im, rng.uniform(3, 6), rng)
    im = sharpen(im, radius=1.5, percent=80)
    return encode(im, "JPEG", int(rng.integers(80, 92)))


def _messenger(im: Image.Image, rng: np.random.Generator) -> bytes:
    first = decode(encode(scaled(im, 0.6), "JPEG", 70))  # sent once
    return encode(scaled(first, 0.85), "JPEG", 55)  # and forwarded: recompressed again


def _web_thumbnail(im: Image.Image, rng: np.random.Generator) -> bytes:
    return encode(scaled(im, 0.5, Image.Resampling.LANCZOS), "WEBP", 50)


CONDITIONS: tuple[Condition, ...] = (
    Condition("jpeg_q90", ("jpeg",), "re-encoded as JPEG quality 90", lambda im, r: encode(im, "JPEG", 90)),
    Condition("jpeg_q70", ("jpeg",), "re-encoded as JPEG quality 70", lambda im, r: encode(im, "JPEG", 70)),
    Condition("jpeg_q50", ("jpeg",), "re-encoded as JPEG quality 50", lambda im, r: encode(im, "JPEG", 50)),
    Condition("jpeg_q30", ("jpeg",), "re-encoded as JPEG quality 30", lambda im, r: encode(im, "JPEG", 30)),
    Condition("webp_q75", ("webp",), "re-encoded as WebP quality 75", lambda im, r: encode(im, "WEBP", 75)),
    Condition(
        "webp_q60_s0.8",
        ("webp",),
        "scaled to 0.8, WebP quality 60 (a web page's copy)",
        lambda im, r: encode(scaled(im, 0.8), "WEBP", 60),
    ),
    Condition(
        "down_up_0.8", ("resample",), "scaled to 0.8 and back up (PNG)", lambda im, r: encode(down_up(im, 0.8), "PNG")
    ),
    Condition(
        "down_up_0.5", ("resample",), "scaled to 0.5 and back up (PNG)", lambda im, r: encode(down_up(im, 0.5), "PNG")
    ),
    Condition(
        "down_up_0.3", ("resample",), "scaled to 0.3 and back up (PNG)", lambda im, r: encode(down_up(im, 0.3), "PNG")
    ),
    Condition(
        "screenshot",
        ("resample",),
        "a screenshot of the picture shown at 0.65 size (bilinear, PNG)",
        lambda im, r: encode(scaled(im, 0.65), "PNG"),
    ),
    Condition("blur_0.8", ("blur",), "Gaussian blur radius 0.8 (PNG)", lambda im, r: encode(blur(im, 0.8), "PNG")),
    Condition("blur_1.5", ("blur",), "Gaussian blur radius 1.5 (PNG)", lambda im, r: encode(blur(im, 1.5), "PNG")),
    Condition(
        "sharpen",
        ("sharpen",),
        "unsharp mask radius 2, 150 % (PNG)",
        lambda im, r: encode(sharpen(im, 2.0, 150, 2), "PNG"),
    ),
    Condition("noise_6", ("noise",), "sensor noise sigma 6 (PNG)", lambda im, r: encode(noise(im, 6, r), "PNG")),
    Condition("noise_12", ("noise",), "sensor noise sigma 12 (PNG)", lambda im, r: encode(noise(im, 12, r), "PNG")),
    Condition(
        "warm_gamma",
        ("colour",),
        "white balance warm (R x1.08, B x0.9), gamma 0.8 (PNG)",
        lambda im, r: encode(colour(im, (1.08, 1.0, 0.9), 0.8), "PNG"),
    ),
    Condition(
        "cool_gamma",
        ("colour",),
        "white balance cool (R x0.92, B x1.08), gamma 1.25 (PNG)",
        lambda im, r: encode(colour(im, (0.92, 1.0, 1.08), 1.25), "PNG"),
    ),
    Condition(
        "saturated",
        ("colour",),
        "saturation x1.3, contrast x1.15 (PNG)",
        lambda im, r: encode(ImageEnhance.Contrast(ImageEnhance.Color(im).enhance(1.3)).enhance(1.15), "PNG"),
    ),
    Condition(
        "handheld",
        ("geometry",),
        "perspective up to 4 %, tilt up to 3°, 2-6 % cropped (PNG)",
        lambda im, r: encode(handheld(im, r), "PNG"),
    ),
    Condition(
        "phone_photo",
        ("combined",),
        "hand-held phone photo: perspective and tilt, white balance and tone, slight blur, noise, the phone's "
        "sharpening, JPEG 80-91",
        _phone_photo,
    ),
    Condition(
        "messenger",
        ("combined",),
        "sent through a messenger and forwarded: 0.6 scale JPEG 70, then 0.85 scale JPEG 55",
        _messenger,
    ),
    Condition(
        "web_thumbnail",
        ("combined",),
        "a web thumbnail: half size (Lanczos), WebP quality 50",
        _web_thumbnail,
    ),
)

BY_NAME = {c.name: c for c in CONDITIONS}
FAMILIES = tuple(sorted({f for c in CONDITIONS for f in c.families}))


def get(names: Sequence[str] | None = None) -> list[Condition]:
    """The named conditions (all of them for None), refusing unknown names."""
    if names is None:
        return list(CONDITIONS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise KeyError(f"unknown acquisition conditions {unknown}; known: {sorted(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def held_out_fit(judged: Condition, pool: Sequence[Condition] = CONDITIONS) -> list[Condition]:
    """The conditions a fit may use when `judged` is evaluated: none sharing any of its families."""
    return [c for c in pool if not set(c.families) & set(judged.families)]
