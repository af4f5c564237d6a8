"""training/data/conditions.py: every acquisition condition yields an upload the contract decodes, deterministic in its
seed, changing the picture the way it says; the leave-family-out rule never lets a fit see the judged families."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from contract.decode import CORPUS_LIMITS, decode_bytes
from contract.quality import blur_effect
from training.data import conditions as cond


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((320, 256))


@pytest.mark.parametrize("c", cond.CONDITIONS, ids=lambda c: c.name)
def test_every_condition_decodes_and_is_deterministic(c: cond.Condition, painting: Image.Image) -> None:
    a, b, other = c(painting, 3), c(painting, 3), c(painting, 4)
    assert a == b
    d = decode_bytes(a, CORPUS_LIMITS)
    assert d.image.mode == "RGB" and min(d.image.size) >= 16
    x, y = np.asarray(painting.resize(d.image.size), np.float64), np.asarray(d.image, np.float64)
    assert np.abs(x - y).mean() > 0.1, "the condition changed nothing"
    if not {"geometry", "noise", "combined"} & set(c.families) or c.name in {"messenger", "web_thumbnail"}:
        assert a == other  # only random conditions depend on the seed


def test_formats_and_qualities_are_what_the_names_say(painting: Image.Image) -> None:
    for name, fmt, q in (("jpeg_q30", "JPEG", 30), ("jpeg_q90", "JPEG", 90), ("webp_q75", "WEBP", None)):
        d = decode_bytes(cond.BY_NAME[name](painting, 0), CORPUS_LIMITS)
        assert d.format == fmt and d.jpeg_quality == q
    shot = decode_bytes(cond.BY_NAME["screenshot"](painting, 0), CORPUS_LIMITS)
    assert shot.format == "PNG" and shot.image.size == (208, 166)


def test_blur_and_resampling_lose_detail_sharpening_adds_it(painting: Image.Image) -> None:
    def blur_of(name: str) -> float:
        im = decode_bytes(cond.BY_NAME[name](painting, 0), CORPUS_LIMITS).image
        return blur_effect(np.asarray(im.convert("L"), np.float64))

    base = blur_effect(np.asarray(painting.convert("L"), np.float64))
    assert blur_of("blur_0.8") > base and blur_of("blur_1.5") > blur_of("blur_0.8")
    assert blur_of("down_up_0.3") > blur_of("down_up_0.8") > base
    assert blur_of("sharpen") < base


def test_handheld_crops_and_warps(painting: Image.Image) -> None:
    im = decode_bytes(cond.BY_NAME["handheld"](painting, 0), CORPUS_LIMITS).image
    w, h = painting.size
    assert 0.85 * w < im.width < w and 0.85 * h < im.height < h


def test_messenger_recompresses_twice(painting: Image.Image) -> None:
    raw = cond.BY_NAME["messenger"](painting, 0)
    d = decode_bytes(raw, CORPUS_LIMITS)
    assert d.format == "JPEG" and d.jpeg_quality == 55
    assert d.image.size == (round(round(320 * 0.6) * 0.85), round(round(256 * 0.6) * 0.85))
    assert isinstance(Image.open(io.BytesIO(raw)).quantization, dict)


def test_held_out_fit_never_shares_a_family() -> None:
    for judged in cond.CONDITIONS:
        allowed = cond.held_out_fit(judged)
        assert judged not in allowed
        assert all(not set(c.families) & set(judged.families) for c in allowed)
    combined = {c.name for c in cond.CONDITIONS if c.families == ("combined",)}
    assert combined == {"phone_photo", "messenger", "web_thumbnail"}
    assert not combined & {c.name for c in cond.held_out_fit(cond.BY_NAME["phone_photo"])}
    assert {c.name for c in cond.held_out_fit(cond.BY_NAME["jpeg_q30"])}.isdisjoint({"jpeg_q50", "jpeg_q90"})


def test_unknown_condition_names_are_refused() -> None:
    assert [c.name for c in cond.get(["jpeg_q30", "blur_0.8"])] == ["jpeg_q30", "blur_0.8"]
    with pytest.raises(KeyError, match="nope"):
        cond.get(["nope"])
