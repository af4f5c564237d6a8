"""Small deterministic "paintings" for the reliability tests and the load script.

Each artist has its own palette, stroke angle and stroke frequency; each work of an artist varies the phase
and the noise. Every (artist, index) pair gives different bytes, so enrolments never collide as duplicates.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image


def painting(artist: int, index: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(artist * 100_003 + index)
    style = np.random.default_rng(artist)
    hue = (artist * 0.381966) % 1.0
    angle = style.uniform(0, np.pi)
    freq = style.uniform(0.05, 0.4)
    palette = np.array(
        [colorsys.hsv_to_rgb((hue + d) % 1.0, style.uniform(0.4, 1.0), style.uniform(0.4, 1.0)) for d in (0, 0.08, 0.5)]
    )
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    t = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq + phase) * 0.5 + 0.5
    t2 = np.sin((xx * np.sin(angle) - yy * np.cos(angle)) * freq * 0.37 + phase * 1.7) * 0.5 + 0.5
    rgb = t[..., None] * palette[0] + (1 - t[..., None]) * palette[1]
    rgb = rgb * (0.75 + 0.25 * t2[..., None]) + 0.15 * t2[..., None] * palette[2]
    rgb += rng.normal(0, 0.04, size=rgb.shape)
    return Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")


def painting_jpeg(artist: int, index: int, size: tuple[int, int] = (160, 120), quality: int = 90) -> bytes:
    buf = io.BytesIO()
    painting(artist, index, size).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
