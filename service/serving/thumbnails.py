"""Reference works as small pictures: a stored original → a bounded JPEG or PNG, orientation applied.

The page shows the works a verdict leaned on; integrators can fetch them too. The original is decoded by the same
checked path as any upload (`contract.decode.decode_bytes`), so a thumbnail never costs more than an upload did.
Covered by tests/service/test_evidence.py (thumbnails) and tests/reliability/test_access.py (route scope).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from service.errors import Invalid

MIN_SIDE = 16
MAX_SIDE = 512
DEFAULT_SIDE = 256
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    media_type: str
    width: int
    height: int


def check_request(max_side: object, fmt: object) -> tuple[int, str]:
    if isinstance(max_side, bool) or not isinstance(max_side, int) or not MIN_SIDE <= max_side <= MAX_SIDE:
        raise Invalid("invalid_max_side", f"max_side must be an integer from {MIN_SIDE} to {MAX_SIDE}")
    if fmt not in MEDIA_TYPES:
        raise Invalid("invalid_request", f"format must be one of {sorted(MEDIA_TYPES)}, not {fmt!r}")
    return max_side, str(fmt)


def thumbnail(image: Image.Image, max_side: int = DEFAULT_SIDE, fmt: str = "jpeg") -> Thumbnail:
    """An RGB image scaled down (never up) so its longer side is at most `max_side`, encoded as `fmt`."""
    max_side, fmt = check_request(max_side, fmt)
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt == "jpeg":
        small.convert("RGB").save(buf, format="JPEG", quality=85, optimize=True)
    else:
        small.save(buf, format="PNG", optimize=True)
    return Thumbnail(buf.getvalue(), MEDIA_TYPES[fmt], small.width, small.height)
