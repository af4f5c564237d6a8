"""The hostile corpus itself: deterministic, small, and each case really is what its name says.

Without these checks a fuzz test could pass because a "truncated JPEG" happened to decode fine, or a "bomb"
declared a harmless size. Pillow's strict decoder is the referee: cases the contract says must be rejected
fail to decode in Pillow (or are multi-frame, which the contract rejects by policy), cases that must be
accepted decode and convert to RGB.
"""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from tests.reliability import hostile

CASES = hostile.corpus()


def _pillow_decode(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(io.BytesIO(data))
        im.load()
        return im


def test_corpus_is_deterministic_and_small():
    again = hostile.corpus.__wrapped__()
    assert [(c.name, c.data) for c in again] == [(c.name, c.data) for c in CASES]
    assert len(CASES) >= 50
    assert sum(len(c.data) for c in CASES) < 1 << 20
    assert len({c.name for c in CASES}) == len(CASES)


def test_corpus_covers_the_issue_list():
    names = " ".join(c.name for c in CASES)
    for needle in [
        "zero_bytes",
        "text_",
        "html_",
        "pdf_",
        "zip_",
        "jpeg_truncated",
        "png_truncated",
        "gif_truncated",
        "webp_truncated",
        "png_bomb",
        "gif_bomb",
        "webp_bomb",
        "tiff_bomb",
        "huge_exif",
        "cmyk",
        "16bit",
        "palette_trns",
        "png_la",
        "png_rgba",
        "1x1",
        "1x4000",
        "4000x1",
        "polyglot",
        "trailing_zip",
        "gif_animated",
        "tiff_multiframe",
    ]:
        assert needle in names, needle


@pytest.mark.parametrize("case", [c for c in CASES if not c.may_succeed], ids=lambda c: c.name)
def test_rejected_cases_are_really_broken(case: hostile.Hostile):
    try:
        im = _pillow_decode(case.data)
    except Exception:
        return  # Pillow refuses it too: the case is genuinely hostile
    assert getattr(im, "n_frames", 1) > 1, f"{case.name} decodes as a normal still image"


@pytest.mark.parametrize("case", [c for c in CASES if c.must_succeed], ids=lambda c: c.name)
def test_accepted_cases_are_really_pictures(case: hostile.Hostile):
    im = _pillow_decode(case.data)
    assert im.convert("RGB").size == im.size
    assert min(im.size) >= 16


@pytest.mark.parametrize("case", [c for c in CASES if "bomb" in c.name and "ztxt" not in c.name], ids=lambda c: c.name)
def test_bombs_declare_huge_sizes_in_tiny_files(case: hostile.Hostile):
    assert len(case.data) < 128 * 1024
    # Pillow's own guard (a warning above MAX_IMAGE_PIXELS, an error above twice that: 179 Mpx by default, the
    # service's 200 Mpx once contract.decode has raised it) fires on the header alone: proof the declared size is
    # huge, with nothing decoded.
    with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning)), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.open(io.BytesIO(case.data))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_image_intake_answers_every_case_within_the_contract(case: hostile.Hostile):
    """The service's intake layer alone (no model): each upload is accepted or refused with an allowed 4xx."""
    from contract.decode import ImageError, ImageLimits, decode_bytes
    from service.api.errors import status_of

    try:
        checked = decode_bytes(case.data, ImageLimits())
    except ImageError as e:
        status = status_of(e)
        assert case.accepts(status), f"{case.name}: {status} {e.code} not in {sorted(case.outcomes)}"
        assert e.code and e.message
        return
    assert case.may_succeed, f"{case.name} was accepted but must be refused"
    assert checked.image.mode == "RGB"
    assert checked.image.size == (checked.width, checked.height)
