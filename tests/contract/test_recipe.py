"""contract/recipe.py: resize, centre-crop and normalise exactly as the card's preprocessing says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from contract.card import Preprocessing
from contract.recipe import model_inputs, preprocess, resize_and_crop, to_input
from tests.service.conftest import painting

P = Preprocessing(resize_shorter=32, crop=(24, 28), scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))


@dataclass(frozen=True)
class _Spec:  # what training has before a card exists: anything with `.preprocessing`
    preprocessing: Preprocessing


@pytest.mark.parametrize("size", [(64, 40), (40, 64), (32, 32), (600, 30), (24, 28)])
def test_resize_keeps_aspect_then_crops_the_centre(size: tuple[int, int]) -> None:
    out = resize_and_crop(painting(1, size), P)
    assert out.size == (28, 24) and out.mode == "RGB"


def test_centre_crop_takes_the_middle() -> None:
    img = Image.new("RGB", (96, 32), (0, 0, 0))
    img.paste((255, 255, 255), (34, 0, 62, 32))  # a white band exactly as wide as the crop, centred
    out = np.asarray(resize_and_crop(img, P))  # shorter side already 32: no resize
    assert out.min() == 255


def test_normalisation_numbers() -> None:
    pixels = np.full((24, 28, 3), 255, np.uint8)
    x = to_input(pixels, P)
    assert x.dtype == np.float32 and x.shape == (24, 28, 3)
    np.testing.assert_allclose(x[0, 0], [(1 - 0.5) / 0.2, (1 - 0.4) / 0.25, (1 - 0.3) / 0.5], rtol=1e-6)


def test_bgr_and_nchw() -> None:
    pixels = np.asarray(resize_and_crop(painting(2, (40, 40)), P))
    rgb = to_input(pixels, P)
    bgr = to_input(pixels, P.model_copy(update={"channel_order": "BGR"}))
    assert np.array_equal(bgr, rgb[..., ::-1])
    nchw = to_input(pixels, P.model_copy(update={"layout": "NCHW"}))
    assert nchw.shape == (3, 24, 28) and np.array_equal(nchw, np.transpose(rgb, (2, 0, 1)))


def test_any_mode_is_made_rgb() -> None:
    grey = painting(3).convert("L")
    assert np.array_equal(preprocess(grey, P), preprocess(grey.convert("RGB"), P))


def test_model_inputs_is_one_crop_today() -> None:
    img = painting(4, (50, 70))
    x = model_inputs(img, _Spec(P))
    assert x.shape == (1, 24, 28, 3) and x.dtype == np.float32
    assert np.array_equal(x[0], preprocess(img, P))
