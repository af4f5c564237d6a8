"""contract/quality.py: the measures move the way a degradation moves them, JPEG quality is read back from the
tables, a quality model and bands are applied as the card says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data

from contract import quality
from contract.card import CalibrationRow, QualityBand, QualityModel
from contract.decode import decode_bytes


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((448, 448))


def _jpeg(im: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


@pytest.mark.parametrize("q", [10, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_read_from_the_tables(photo: Image.Image, q: int) -> None:
    assert decode_bytes(_jpeg(photo, q)).jpeg_quality == q


def test_no_tables_no_jpeg_quality(photo: Image.Image) -> None:
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    d = decode_bytes(buf.getvalue())
    assert d.jpeg_quality is None and d.n_bytes == len(buf.getvalue())
    assert quality.jpeg_quality(None) is None and quality.jpeg_quality({0: [1] * 10}) is None


def test_blur_effect_rises_with_blur_and_noise_sigma_with_noise(photo: Image.Image) -> None:
    grey = lambda im: np.asarray(im.convert("L"), np.float64)  # noqa: E731
    blurs = [quality.blur_effect(grey(photo.filter(ImageFilter.GaussianBlur(r)))) for r in (0.01, 1, 2, 4)]
    assert blurs == sorted(blurs) and 0 <= blurs[0] < blurs[-1] <= 1
    flat = np.full((64, 64), 128.0)
    rng = np.random.default_rng(0)
    for sigma in (2.0, 8.0):
        assert quality.noise_sigma(flat + rng.normal(0, sigma, flat.shape)) == pytest.approx(sigma, rel=0.1)
    assert quality.noise_sigma(flat) == 0.0
    assert quality.blur_effect(np.zeros((2, 50))) == 1.0


def test_measures_of_an_upload(photo: Image.Image) -> None:
    data_ = _jpeg(photo, 40)
    d = decode_bytes(data_)
    working = d.image.resize((672, 672))
    m = quality.measure(d.image, d.n_bytes, d.jpeg_quality, working)
    assert (m.width, m.height, m.shorter_side, m.jpeg_quality) == (448, 448, 448, 40)
    assert m.bits_per_pixel == pytest.approx(8 * len(data_) / 448**2)
    assert m.megapixels == pytest.approx(448**2 / 1e6)
    v = m.vector(["jpeg_quality", "shorter_side"])
    assert v.tolist() == [40.0, pytest.approx(np.log2(448))]
    assert quality.Measures(**m.as_dict()) == m


def _row(t: float) -> CalibrationRow:
    return CalibrationRow(threshold=t, fpr=1 - t, fnr=t, precision=0.5, recall=1 - t)


def test_score_and_bands() -> None:
    model = QualityModel(
        features=["jpeg_quality", "sharpness"],
        mean=[80.0, 0.5],
        scale=[10.0, 0.1],
        coef=[0.05, 0.02],
        intercept=0.9,
        floor=0.5,
        target="t",
    )
    m = quality.Measures(width=100, height=80, bits_per_pixel=2.0, jpeg_quality=60, sharpness=0.5, noise=1.0)
    assert quality.score(m, model) == pytest.approx(0.9 + 0.05 * -2)
    top = quality.Measures(width=100, height=80, bits_per_pixel=2.0, jpeg_quality=None, sharpness=0.9, noise=1.0)
    assert quality.score(top, model) == 1.0  # clipped; no JPEG tables reads as quality 100
    bands = [
        QualityBand(min_quality=q, pair=[_row(0.0), _row(1.0)], recommended_threshold=0.5, recommended_rule="r")
        for q in (0.9, 0.7, 0.5)
    ]
    assert [quality.band_for(q, bands) for q in (1.0, 0.9, 0.8, 0.5)] == [bands[0], bands[0], bands[1], bands[2]]
    assert quality.band_for(0.49, bands) is None
    assert quality.pair_quality(0.9, 0.5) == pytest.approx(0.45)
    assert quality.pair_quality(np.array([1.0, 0.5]), np.array([0.5, 0.5])).tolist() == [0.5, 0.25]
