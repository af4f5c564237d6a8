"""What an upload's quality is, measured the same way in training and serving.

A score means what the model card says only for pictures like the ones it was measured on. Each picture's
measurements (`Measures`) are taken from what the service actually receives: its pixels, how hard it was
compressed (the JPEG quantisation tables, bits per pixel), and — at the resolution the recipe looks at it, the
shorter side resized as `Preprocessing.resize_shorter` says — how sharp it is and how noisy. The card's
`QualityModel` (fitted by training on copies of real paintings under acquisition conditions, training/quality.py)
turns them into one number in [0, 1], the picture's *quality*: the expected similarity of this copy's embedding
to the painting's own, so "0.9" reads "this photograph moves the painting's embedding about as much as a mild
re-encode". A pair's quality is the lower of its two pictures'; the card's calibration bands (contract.card
`QualityBand`) hold the error rates measured at each quality, and below `QualityModel.floor` the model was never
measured and the service says so.

numpy + Pillow only. Covered by tests/contract/test_quality.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from contract.card import Preprocessing, QualityBand, QualityModel
from contract.operating import Table, equal_error_point

# The IJG (libjpeg) standard luminance quantisation table at quality 50, in natural (row-major) order: what
# Pillow, libjpeg, phones and most web tools scale by quality. Pillow reports tables in the same order.
_IJG_LUMA = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    np.float64,
)  # fmt: skip


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_IJG_LUMA * scale + 50) / 100), 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])


def jpeg_quality(quantization: dict | None) -> int | None:
    """The IJG quality (1-100) whose luminance table is closest to the picture's, or None for no JPEG tables.

    Encoders with their own tables (some cameras) get the IJG quality that quantises about as coarsely."""
    if not quantization or 0 not in quantization:
        return None
    table = np.asarray(list(quantization[0]), np.float64)
    if table.size != 64:
        return None
    err = np.abs(np.log(_IJG_TABLES) - np.log(np.maximum(table, 1))).mean(axis=1)
    return int(np.argmin(err)) + 1


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), np.float32)


def _box_diff(g: np.ndarray, size: int, axis: int) -> np.ndarray:
    """|neighbour difference| of `g` after a running mean of `size` (odd) along `axis`, edges mirrored: with p
    the padded row, box[i] = mean(p[i : i + size]), so box[i+1] − box[i] = (p[i + size] − p[i]) / size."""
    half = size // 2
    p = np.pad(g, [(half, half) if a == axis else (0, 0) for a in range(2)], mode="symmetric")
    n = g.shape[axis]
    d = np.take(p, np.arange(size, size + n - 1), axis=axis) - np.take(p, np.arange(n - 1), axis=axis)
    return np.abs(d) / size


def blur_effect(grey: np.ndarray, h_size: int = 11) -> float:
    """Crété-Roffet et al. 2007, "The blur effect": 0 sharp … 1 blurry. How much of the picture's local
    contrast survives a further blur: a sharp picture loses much of it, an already blurry one little (the
    paper's neighbour differences; scikit-image's `blur_effect` uses Sobel gradients instead)."""
    g = np.asarray(grey, np.float32)
    blurs = []
    for axis in (0, 1):
        if g.shape[axis] < 3:
            return 1.0
        im_sharp = np.abs(np.diff(g, axis=axis))
        im_blur = _box_diff(g, h_size, axis)
        m1 = float(im_sharp.sum(dtype=np.float64))
        m2 = float(np.maximum(0, im_sharp - im_blur).sum(dtype=np.float64))
        blurs.append(abs(m1 - m2) / m1 if m1 > 0 else 1.0)
    return float(max(blurs))


def noise_sigma(grey: np.ndarray) -> float:
    """Immerkær 1996, fast noise variance estimation: the σ of white noise that would explain the picture's
    response to a Laplacian-difference mask (structure cancels, noise does not)."""
    g = np.asarray(grey, np.float32)
    h, w = g.shape
    if h < 3 or w < 3:
        return 0.0
    m = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )  # fmt: skip
    return float(math.sqrt(math.pi / 2) * np.abs(m).sum(dtype=np.float64) / (6 * (w - 2) * (h - 2)))


FEATURES = ("shorter_side", "megapixels", "bits_per_pixel", "jpeg_quality", "sharpness", "noise")


@dataclass(frozen=True)
class Measures:
    """What can be measured of one upload (no model needed)."""

    width: int
    height: int
    bits_per_pixel: float  # the upload's size over its pixels (compression, for any format)
    jpeg_quality: int | None  # estimated IJG quality of a JPEG upload, None for other formats
    sharpness: float  # 1 − blur effect, at the recipe's working resolution (0 blurry … 1 sharp)
    noise: float  # Immerkær σ at the working resolution, in 8-bit levels

    @property
    def shorter_side(self) -> int:
        return min(self.width, self.height)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def vector(self, names: Sequence[str] = FEATURES) -> np.ndarray:
        """The features a `QualityModel` reads, in `names` order (no JPEG tables counts as quality 100)."""
        values = {
            "shorter_side": math.log2(max(self.shorter_side, 1)),
            "megapixels": math.log2(max(self.megapixels, 1e-6)),
            "bits_per_pixel": math.log2(max(self.bits_per_pixel, 1e-3)),
            "jpeg_quality": float(self.jpeg_quality if self.jpeg_quality is not None else 100),
            "sharpness": self.sharpness,
            "noise": math.log2(1 + self.noise),
        }
        return np.array([values[n] for n in names], np.float64)

    def as_dict(self) -> dict:
        return asdict(self)


def measure(
    image: Image.Image, n_bytes: int, jpeg_q: int | None, working: Image.Image, size: tuple[int, int] | None = None
) -> Measures:
    """Measures of an upload: `image` as decoded (RGB), its size in bytes, its estimated JPEG quality (None: not
    a JPEG; contract.decode.Decoded carries both) and `working`, the picture as the recipe resized it
    (contract.recipe.resized) — where sharpness and noise are taken, so a small picture blown up to the model's
    size reads as blurry, as the model sees it. `size`: the upload's own width and height where the decoder
    reduced it (contract.decode.Decoded.size): the size and bits per pixel are the upload's, not the reduction's."""
    w, h = size or image.size
    grey = _grey(working)
    return Measures(
        width=w,
        height=h,
        bits_per_pixel=8.0 * n_bytes / max(1, w * h),
        jpeg_quality=jpeg_q,
        sharpness=1.0 - blur_effect(grey),
        noise=noise_sigma(grey),
    )


def score(measures: Measures, model: QualityModel) -> float:
    """The picture's quality in [0, 1] under the card's quality model."""
    f = measures.vector(model.features)
    z = (f - np.asarray(model.mean)) / np.asarray(model.scale)
    return float(np.clip(model.intercept + float(np.dot(model.coef, z)), 0.0, 1.0))


def pair_quality(qa: float | np.ndarray, qb: float | np.ndarray) -> float | np.ndarray:
    """A pair's quality from its pictures': their product (each picture's quality is how much of the painting's
    own embedding survived its camera, so both losses count; one good picture does not hide a poor one)."""
    return np.asarray(qa) * np.asarray(qb) if isinstance(qa, np.ndarray) else float(qa) * float(qb)


def band_for(quality: float, bands: Sequence[QualityBand]) -> QualityBand | None:
    """The band a pair of this quality falls in (bands highest first), or None below the lowest band."""
    for b in bands:
        if quality >= b.min_quality:
            return b
    return None


def band_table(band: QualityBand, level: str) -> tuple[Table, tuple[float, str]]:
    """A band's table for `level` ("pair": compare; "portfolio": verify) with its counts, and its default
    point (threshold, rule): the one reading of a band, for the service and for training's checks."""
    if level == "pair":
        return Table(band.pair, band.genuine_pairs, band.impostor_pairs), (
            band.recommended_threshold,
            band.recommended_rule,
        )
    rows = band.portfolio or band.pair
    table = (
        Table(rows, band.genuine_trials, band.impostor_trials, "trials")
        if band.portfolio
        else band_table(band, "pair")[0]
    )
    return table, equal_error_point(rows, f"leave-one-out portfolios of quality >= {band.min_quality:g}")


def measure_upload(image: Image.Image, n_bytes: int, jpeg_q: int | None, p: Preprocessing) -> Measures:
    """`measure` at the recipe's working resolution (the shorter side resized as `p` says)."""
    from contract.recipe import resized

    return measure(image, n_bytes, jpeg_q, resized(image, p))
