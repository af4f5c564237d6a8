"""Procedural "artists": a corpus where style, not content, tells who painted what.

Each artist is a `Style` drawn from a seeded generator: palette scheme, stroke shape (dabs, long lines, curves,
dots, hatching, blocks), stroke length/width/direction distribution, opacity, coarse-to-fine passes, canvas
tone and underpainting, grain, canvas weave, edge softness, contrast/saturation/tint, vignette and a favourite
composition. Each painting draws a fresh random scene (sky/ground split, central blob, diagonal, grid or
scatter of shapes, all placed at random) and renders it stroke by stroke in the artist's style, so that
paintings of one artist share a hand but not a subject.

Difficulty is deliberate: artists belong to a few schools that share traits (hard negatives), and each painting
strays from its artist (now and then another stroke or composition, numbers drawn part-way towards a random
style, plus jitter). With the default knobs, zero-shot cosine pair AUC of ImageNet EfficientNet-Lite2 features
(pooled + style statistics) on unseen artists is about 0.83: clearly learnable, far from solved.

Stroke-based rendering: strokes take their colour from the underlying scene at their position, pulled towards
the artist's palette, and (for "flow" artists) follow the scene's contours, as in Hertzmann's painterly
rendering. numpy computes every stroke's geometry and colour at once; Pillow's ImageDraw rasterises them with
alpha blending. Deterministic: painting j of artist i depends only on (seed, i, j), so a corpus can be written
in any order, in parallel or resumed, and is pixel-identical (byte-identical on one Pillow/zlib) every time.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import cast

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image, ImageDraw, ImageFilter

from training.data.datasets import Item, Manifest

GENERATOR_VERSION = "1.0"  # bump whenever the pixels for a given (seed, artist, index, size) change
STROKES = ("dab", "line", "curve", "dot", "hatch", "block")
DIRECTIONS = ("fixed", "flow", "random")
COMPOSITIONS = ("horizon", "central", "diagonal", "grid", "scatter")
PALETTES = ("analogous", "complementary", "triadic", "split", "monochrome", "earth")
SCHOOLS = 8  # artists come in schools that share a manner (hard negatives)
LOYALTY = 0.75  # chance an artist keeps each categorical trait of its school
CONSTANCY = 0.85  # chance a painting keeps each categorical trait of its artist
WANDER = (0.0, 0.45)  # how far a painting's numbers stray from its artist's towards a random style
JITTER = 0.25  # per-painting wobble of every continuous style parameter (lognormal sigma)
_SCHOOL_TAG = 0x5C400
MAX_STROKES = 5000  # per painting, keeps the slowest styles near the speed target

# (length, width) ranges as fractions of the image side, per stroke shape
_GEOMETRY = {
    "dab": ((0.03, 0.09), (0.012, 0.04)),
    "line": ((0.10, 0.35), (0.004, 0.014)),
    "curve": ((0.08, 0.30), (0.006, 0.025)),
    "dot": ((0.0, 0.0), (0.007, 0.03)),
    "hatch": ((0.03, 0.10), (0.003, 0.008)),
    "block": ((0.02, 0.08), (0.015, 0.06)),
}


@dataclass(frozen=True)
class Style:
    """One artist's hand. Lengths and widths are fractions of the image side; blur/grain in pixels at 256."""

    palette_scheme: str
    palette: tuple[tuple[float, float, float], ...]  # HSV in [0, 1]
    hue_jitter: float
    sat_jitter: float
    val_jitter: float
    snap: float  # 0: scene colour as is, 1: nearest palette colour
    fidelity: float  # probability that a scene colour comes from the palette rather than anywhere
    ground: tuple[float, float, float]  # canvas tone, RGB
    underpaint: float  # how much of the blurred scene is laid down before the strokes
    stroke: str
    density: float  # canvas coverage of the first pass
    length: float
    width: float
    size_spread: float  # lognormal sigma of length and width
    direction: str
    angle: float  # radians, for "fixed" (and hatching)
    angle_spread: float
    cross: float  # hatching: angle of the second stroke family relative to the first; 0 = none
    curvature: float
    alpha: float
    passes: int
    blur: float
    grain_amp: float
    grain_scale: float
    grain_colour: bool
    weave_amp: float
    weave_period: float
    contrast: float
    saturation: float
    brightness: float
    tint: tuple[float, float, float]
    vignette: float
    composition: str
    habit: float  # probability that a painting uses the favourite composition
    horizon: float
    tilt: float

    def summary(self) -> dict[str, object]:
        return {
            "stroke": self.stroke,
            "direction": self.direction,
            "palette": self.palette_scheme,
            "composition": self.composition,
            "passes": self.passes,
        }


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def sample_style(rng: np.random.Generator) -> Style:
    """A random artist. Ranges are wide so artists differ, continuous so that some are close."""
    scheme = str(rng.choice(PALETTES))
    h0, k = rng.random(), int(rng.integers(3, 7))
    offsets = {
        "analogous": rng.uniform(-0.08, 0.08, k),
        "complementary": rng.choice([0.0, 0.5], k) + rng.normal(0, 0.03, k),
        "triadic": rng.choice([0.0, 1 / 3, 2 / 3], k) + rng.normal(0, 0.03, k),
        "split": rng.choice([0.0, 0.42, 0.58], k) + rng.normal(0, 0.03, k),
        "monochrome": rng.normal(0, 0.015, k),
        "earth": rng.uniform(0, 0.1, k) - h0 + 0.04,  # browns/ochres whatever h0
    }[scheme]
    s0 = rng.uniform(0.2, 0.6) if scheme == "earth" else rng.uniform(0.1, 0.95)
    v0 = rng.uniform(0.35, 0.9)
    palette = tuple(
        (
            float((h0 + o) % 1.0),
            float(np.clip(s0 + rng.normal(0, 0.12), 0, 1)),
            float(np.clip(v0 + rng.normal(0, 0.2), 0.05, 1)),
        )
        for o in offsets
    )
    stroke = str(rng.choice(STROKES))
    (l_lo, l_hi), (w_lo, w_hi) = _GEOMETRY[stroke]
    direction = "fixed" if stroke == "hatch" else str(rng.choice(DIRECTIONS))
    grain_scale = float(np.exp(rng.uniform(0, np.log(14))))
    return Style(
        palette_scheme=scheme,
        palette=palette,
        hue_jitter=float(rng.uniform(0, 0.06)),
        sat_jitter=float(rng.uniform(0, 0.15)),
        val_jitter=float(rng.uniform(0.02, 0.15)),
        snap=float(rng.uniform(0, 0.9)),
        fidelity=float(rng.uniform(0.5, 1.0)),
        ground=_triple(hsv_to_rgb([rng.random(), rng.uniform(0, 0.5), rng.uniform(0.15, 1.0)])),
        underpaint=float(rng.uniform(0, 1)),
        stroke=stroke,
        density=float(rng.uniform(0.5, 2.0)),
        length=float(rng.uniform(l_lo, l_hi)),
        width=float(np.exp(rng.uniform(np.log(w_lo), np.log(w_hi)))),
        size_spread=float(rng.uniform(0.05, 0.5)),
        direction=direction,
        angle=float(rng.uniform(0, np.pi)),
        angle_spread=float(rng.uniform(0.03, 0.6)),
        cross=float(rng.choice([0.0, np.pi / 2, np.pi / 3])) if stroke == "hatch" else 0.0,
        curvature=float(rng.uniform(0.5, 3.0) * rng.choice([-1, 1])),
        alpha=float(rng.uniform(0.35, 1.0)),
        passes=int(rng.integers(1, 4)),
        blur=float(rng.choice([0.0, rng.uniform(0.3, 2.0)])),
        grain_amp=float(rng.choice([0.0, rng.uniform(0.01, 0.07)])),
        grain_scale=grain_scale,
        grain_colour=bool(rng.random() < 0.5),
        weave_amp=float(rng.choice([0.0, rng.uniform(0.01, 0.06)])),
        weave_period=float(rng.uniform(2.5, 6.0)),
        contrast=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
        saturation=float(np.exp(rng.uniform(np.log(0.4), np.log(1.6)))),
        brightness=float(rng.uniform(-0.1, 0.1)),
        tint=_triple(rng.normal(0, 0.04, 3)),
        vignette=float(rng.choice([0.0, rng.uniform(0.1, 0.5)])),
        composition=str(rng.choice(COMPOSITIONS)),
        habit=float(rng.uniform(0.5, 0.95)),
        horizon=float(rng.uniform(0.25, 0.75)),
        tilt=float(rng.uniform(-1.2, 1.2)),
    )


def join_school(
    school: Style,
    own: Style,
    rng: np.random.Generator,
    loyalty: float = 0.7,
    independence: tuple[float, float] = (0.3, 0.8),
) -> Style:
    """`own` drawn towards `school`: each categorical trait kept with probability `loyalty`, numbers pulled.

    Artists join schools, which makes hard negatives (different artists, similar hands) as movements do among
    real painters; a painting joins its artist the same way, but closer, so an artist has periods and whims.
    """
    t = rng.uniform(*independence)  # 0 = a copy of the school, 1 = its own style

    def keep() -> bool:
        return bool(rng.random() < loyalty)

    def mix(a: float, b: float) -> float:
        return float(a + t * (b - a))

    out: dict[str, object] = {}
    for f in fields(Style):
        a, b = getattr(school, f.name), getattr(own, f.name)
        if isinstance(a, float):
            out[f.name] = mix(a, b)
        elif isinstance(a, tuple) and f.name != "palette":
            out[f.name] = tuple(mix(x, y) for x, y in zip(a, b, strict=True))
        else:
            out[f.name] = a if keep() else b
    if keep():  # the school's palette, each artist a little off
        out["palette_scheme"] = school.palette_scheme
        out["palette"] = tuple(
            ((h + rng.normal(0, 0.04)) % 1.0, float(np.clip(s * np.exp(rng.normal(0, 0.2)), 0, 1)), v)
            for h, s, v in school.palette
        )
    else:
        out["palette_scheme"], out["palette"] = own.palette_scheme, own.palette
    # stroke geometry only blends between strokes of one shape; the ranges differ by shape
    source = school if out["stroke"] == school.stroke else own
    same = out["stroke"] == own.stroke == school.stroke
    for name in ("length", "width", "cross"):
        out[name] = mix(getattr(school, name), getattr(own, name)) if same else getattr(source, name)
    if out["stroke"] == "hatch":
        out["direction"] = "fixed"
    return Style(**out)  # type: ignore[arg-type]


_JITTERED = (
    "density",
    "length",
    "width",
    "angle_spread",
    "alpha",
    "blur",
    "grain_amp",
    "weave_amp",
    "contrast",
    "saturation",
    "vignette",
)


def jitter_style(style: Style, rng: np.random.Generator, amount: float = 0.12) -> Style:
    """One painting's take on the artist's style: every continuous parameter wobbles a little."""
    changes: dict[str, object] = {
        name: float(getattr(style, name) * np.exp(rng.normal(0, amount))) for name in _JITTERED
    }
    changes["alpha"] = min(1.0, cast(float, changes["alpha"]))
    changes["angle"] = style.angle + float(rng.normal(0, amount))
    changes["brightness"] = style.brightness + float(rng.normal(0, amount / 4))
    changes["palette"] = tuple(((h + rng.normal(0, amount / 4)) % 1.0, s, v) for h, s, v in style.palette)
    return replace(style, **changes)  # type: ignore[arg-type]


def _palette_rgb(style: Style) -> np.ndarray:
    return hsv_to_rgb(np.asarray(style.palette, np.float64))


def _pick_colour(rng: np.random.Generator, palette: np.ndarray, fidelity: float = 1.0) -> tuple[int, int, int]:
    """A scene colour: a palette entry (or, now and then, any colour) shifted in value and saturation."""
    if rng.random() < fidelity:
        h, s, v = rgb_to_hsv(palette[rng.integers(len(palette))])
    else:
        h, s, v = rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.95)
    hsv = [h, np.clip(s * rng.uniform(0.6, 1.3), 0, 1), np.clip(v * rng.uniform(0.5, 1.3), 0, 1)]
    return tuple(int(c * 255) for c in hsv_to_rgb(hsv))  # type: ignore[return-value]


def _gradient(size: int, a: tuple[int, ...], b: tuple[int, ...], angle: float) -> np.ndarray:
    """[size, size, 3] linear blend from colour a to colour b along `angle`."""
    t = np.linspace(-0.5, 0.5, size)
    u = np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]
    u = (u - u.min()) / max(u.max() - u.min(), 1e-9)
    return np.asarray(a, np.float32) * (1 - u[..., None]) + np.asarray(b, np.float32) * u[..., None]


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 24) -> list[tuple[float, float]]:
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = r * (1 + sum(rng.uniform(0, 0.25) * np.sin(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
    return list(zip((cx + radius * np.cos(theta)).tolist(), (cy + radius * np.sin(theta)).tolist(), strict=True))


def _shape(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, colour: tuple[int, ...], size: int, scale: float
) -> None:
    """A random subject: ellipse, rectangle, triangle or blob of random size at a random place."""
    cx, cy = rng.uniform(0, size, 2)
    r = size * scale * rng.uniform(0.4, 1.0)
    kind = rng.integers(4)
    if kind == 0:
        e = r * rng.uniform(0.4, 1.0)
        draw.ellipse((cx - r, cy - e, cx + r, cy + e), fill=colour)
    elif kind == 1:
        e = r * rng.uniform(0.3, 1.5)
        draw.rectangle((cx - r, cy - e, cx + r, cy + e), fill=colour)
    elif kind == 2:
        a = rng.uniform(0, 2 * np.pi)
        pts = [(cx + r * math.cos(a + k * 2.1), cy + r * math.sin(a + k * 2.1)) for k in range(3)]
        draw.polygon(pts, fill=colour)
    else:
        draw.polygon(_blob(rng, cx, cy, r), fill=colour)


def render_scene(style: Style, rng: np.random.Generator, size: int) -> np.ndarray:
    """The subject: flat colour regions in the artist's palette and (usually) favourite composition."""
    palette = _palette_rgb(style)
    comp = style.composition if rng.random() < style.habit else str(rng.choice(COMPOSITIONS))

    def pick() -> tuple[int, int, int]:
        return _pick_colour(rng, palette, style.fidelity)

    c = [pick() for _ in range(4)]
    if comp == "horizon":
        y = int(size * np.clip(style.horizon + rng.normal(0, 0.08), 0.1, 0.9))
        base = np.concatenate([_gradient(size, c[0], c[1], np.pi / 2)[:y], _gradient(size, c[2], c[3], np.pi / 2)[y:]])
        img = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(1, 4)):  # hills/mountains standing on the horizon
            x, w, h = rng.uniform(0, size), size * rng.uniform(0.15, 0.5), size * rng.uniform(0.05, 0.3)
            draw.polygon([(x - w, y + 1), (x + rng.normal(0, w / 4), y - h), (x + w, y + 1)], fill=pick())
        for _ in range(rng.integers(0, 4)):
            _shape(draw, rng, pick(), size, 0.08)
    elif comp == "central":
        img = Image.fromarray(_gradient(size, c[0], c[1], rng.uniform(0, 2 * np.pi)).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        cx, cy = size * (0.5 + rng.normal(0, 0.07, 2))
        draw.polygon(_blob(rng, cx, cy, size * rng.uniform(0.18, 0.35)), fill=c[2])
        for _ in range(rng.integers(0, 3)):
            _shape(draw, rng, pick(), size, 0.07)
    elif comp == "diagonal":
        a = style.tilt + rng.normal(0, 0.25)
        img = Image.fromarray(_gradient(size, c[0], c[1], rng.uniform(0, 2 * np.pi)).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        px, py = size * rng.uniform(0.3, 0.7, 2)
        dx, dy = math.cos(a) * 2 * size, math.sin(a) * 2 * size
        nx, ny = -dy, dx  # the half-plane on one side of the line
        draw.polygon(
            [(px - dx, py - dy), (px + dx, py + dy), (px + dx + nx, py + dy + ny), (px - dx + nx, py - dy + ny)],
            fill=c[2],
        )
        for _ in range(rng.integers(1, 5)):
            _shape(draw, rng, pick(), size, 0.1)
    elif comp == "grid":
        img = Image.new("RGB", (size, size), c[0])
        draw = ImageDraw.Draw(img)
        rows = np.sort(rng.uniform(0, size, rng.integers(1, 4))).tolist()
        for top, bottom in zip([0.0, *rows], [*rows, float(size)], strict=True):
            cols = np.sort(rng.uniform(0, size, rng.integers(1, 4))).tolist()
            for left, right in zip([0.0, *cols], [*cols, float(size)], strict=True):
                draw.rectangle((left, top, right, bottom), fill=pick())
        for _ in range(rng.integers(0, 3)):
            _shape(draw, rng, pick(), size, 0.06)
    else:  # scatter
        img = Image.fromarray(_gradient(size, c[0], c[1], rng.uniform(0, 2 * np.pi)).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(6, 18)):
            _shape(draw, rng, pick(), size, rng.uniform(0.03, 0.15))
    return np.asarray(img, dtype=np.uint8)


def _stroke_colours(
    style: Style, rng: np.random.Generator, scene: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """[N, 4] uint8 RGBA: scene colour at each stroke, pulled towards the palette, jittered in HSV."""
    h = scene.shape[0]
    rgb = scene[np.clip(ys.astype(int), 0, h - 1), np.clip(xs.astype(int), 0, h - 1)].astype(np.float64) / 255
    palette = _palette_rgb(style)
    nearest = palette[np.argmin(((rgb[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)]
    rgb = (1 - style.snap) * rgb + style.snap * nearest
    hsv = rgb_to_hsv(np.clip(rgb, 0, 1))
    n = len(xs)
    hsv[:, 0] = (hsv[:, 0] + rng.normal(0, style.hue_jitter, n)) % 1.0
    hsv[:, 1] = np.clip(hsv[:, 1] + rng.normal(0, style.sat_jitter, n), 0, 1)
    hsv[:, 2] = np.clip(hsv[:, 2] + rng.normal(0, style.val_jitter, n), 0, 1)
    alpha = np.clip(style.alpha * np.exp(rng.normal(0, 0.15, n)), 0.05, 1.0)
    return np.concatenate([hsv_to_rgb(hsv), alpha[:, None]], axis=1).__mul__(255).round().astype(np.uint8)


_CELL = 4  # px of the coarse grid that holds the underpainting, flow field and detail map


def _coarse(scene: np.ndarray) -> Image.Image:
    g = max(8, scene.shape[0] // _CELL)
    return Image.fromarray(scene).resize((g, g), Image.Resampling.BOX)


def _flow(coarse: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(contour angle, edge strength per pixel) on the coarse grid, from the blurred scene luminance."""
    lum = coarse.convert("L").filter(ImageFilter.GaussianBlur(size / 64 / _CELL))
    gy, gx = np.gradient(np.asarray(lum, np.float32))
    return np.arctan2(gy, gx) + np.pi / 2, np.hypot(gx, gy) * (coarse.width / size)


def _paint(style: Style, rng: np.random.Generator, scene: np.ndarray, size: int) -> Image.Image:
    coarse = _coarse(scene)
    g = coarse.width
    base = np.asarray(style.ground, np.float32) * 255
    soft = coarse.filter(ImageFilter.GaussianBlur(g / 24)).resize((size, size), Image.Resampling.BILINEAR)
    canvas = Image.fromarray(
        ((1 - style.underpaint) * base + style.underpaint * np.asarray(soft, np.float32)).astype(np.uint8)
    )
    draw = ImageDraw.Draw(canvas, "RGBA")  # RGBA fills blend onto the RGB canvas
    contour, strength = _flow(coarse, size)
    weights = (strength + strength.mean() * 0.2).ravel()
    weights /= weights.sum()
    budget = MAX_STROKES
    for p in range(style.passes):
        shrink = 0.55**p
        length, width = style.length * size * shrink, max(1.0, style.width * size * shrink)
        area = (length + width) * width if style.stroke != "dot" else width * width
        n = int(min(budget, style.density * size * size / area * (0.6 if p else 1.0)))
        if n <= 0:
            break
        budget -= n
        if p == 0:
            xs, ys = rng.uniform(0, size, n), rng.uniform(0, size, n)
        else:  # detail passes go where the scene has edges, as a painter refines
            cell = rng.choice(g * g, n, p=weights)
            xs = ((cell % g) + rng.uniform(0, 1, n)) * (size / g)
            ys = ((cell // g) + rng.uniform(0, 1, n)) * (size / g)
        yi = np.clip((ys * g / size).astype(int), 0, g - 1)
        xi = np.clip((xs * g / size).astype(int), 0, g - 1)
        lengths = length * np.exp(rng.normal(0, style.size_spread, n))
        widths = np.maximum(1.0, width * np.exp(rng.normal(0, style.size_spread, n)))
        if style.direction == "random":
            angles = rng.uniform(0, np.pi, n)
        elif style.direction == "flow":
            flat_region = strength[yi, xi] < 0.2
            angles = np.where(flat_region, style.angle, contour[yi, xi]) + rng.normal(0, style.angle_spread, n)
        else:
            angles = style.angle + rng.normal(0, style.angle_spread, n)
            if style.cross:
                angles = angles + style.cross * (rng.random(n) < 0.5)
        colours = [tuple(c) for c in _stroke_colours(style, rng, scene, xs, ys).tolist()]
        _draw_strokes(draw, style, rng, xs, ys, lengths, widths, angles, colours)
    return canvas


def _draw_strokes(
    draw: ImageDraw.ImageDraw,
    style: Style,
    rng: np.random.Generator,
    xs: np.ndarray,
    ys: np.ndarray,
    lengths: np.ndarray,
    widths: np.ndarray,
    angles: np.ndarray,
    colours: list[tuple[int, ...]],
) -> None:
    n = len(xs)
    cos, sin = np.cos(angles), np.sin(angles)
    kind = style.stroke
    if kind in ("line", "hatch"):
        dx, dy = cos * lengths / 2, sin * lengths / 2
        seg = np.stack([xs - dx, ys - dy, xs + dx, ys + dy], 1).tolist()
        w = widths.round().astype(int).tolist()
        for s, c, wi in zip(seg, colours, w, strict=True):
            draw.line(s, fill=c, width=wi)
    elif kind == "dot":
        r = widths / 2
        boxes = np.stack([xs - r, ys - r, xs + r, ys + r], 1).tolist()
        for b, c in zip(boxes, colours, strict=True):
            draw.ellipse(b, fill=c)
    elif kind in ("dab", "block"):
        if kind == "dab":  # rotated ellipse as an 10-gon
            t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
            u, v = np.cos(t) / 2, np.sin(t) / 2
        else:
            u, v = np.array([-0.5, 0.5, 0.5, -0.5]), np.array([-0.5, -0.5, 0.5, 0.5])
        lu = (lengths + widths)[:, None] * u[None]
        wv = widths[:, None] * v[None]
        px = xs[:, None] + lu * cos[:, None] - wv * sin[:, None]
        py = ys[:, None] + lu * sin[:, None] + wv * cos[:, None]
        polys = np.stack([px, py], -1).reshape(n, -1).tolist()
        for pts, c in zip(polys, colours, strict=True):
            draw.polygon(pts, fill=c)
    else:  # curve: a polyline whose heading turns steadily
        m = 6
        t = np.linspace(-0.5, 0.5, m)
        kappa = style.curvature * np.exp(rng.normal(0, 0.3, n))
        heading = angles[:, None] + kappa[:, None] * t[None]
        step = (lengths / (m - 1))[:, None]
        px = np.cumsum(np.cos(heading) * step, 1)
        py = np.cumsum(np.sin(heading) * step, 1)
        px += xs[:, None] - px.mean(1, keepdims=True)
        py += ys[:, None] - py.mean(1, keepdims=True)
        lines = np.stack([px, py], -1).reshape(n, -1).tolist()
        w = widths.round().astype(int).tolist()
        for pts, c, wi in zip(lines, colours, w, strict=True):
            draw.line(pts, fill=c, width=wi, joint="curve")


def _finish(style: Style, rng: np.random.Generator, canvas: Image.Image, size: int) -> np.ndarray:
    """Edge softness, colour grading, grain, canvas weave and vignette."""
    px = size / 256
    if style.blur * px > 0.25:
        canvas = canvas.filter(ImageFilter.GaussianBlur(style.blur * px))
    x = np.asarray(canvas, np.float32) / 255
    grey = x @ np.asarray([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + (x - grey[..., None]) * style.saturation
    x = (x - 0.5) * style.contrast + 0.5 + style.brightness + np.asarray(style.tint, np.float32)
    if style.grain_amp > 0:
        cells = max(2, int(round(size / (style.grain_scale * px))))
        channels = 3 if style.grain_colour else 1
        noise = rng.standard_normal((channels, cells, cells)).astype(np.float32)
        up = np.stack(
            [np.asarray(Image.fromarray(c, "F").resize((size, size), Image.Resampling.BICUBIC)) for c in noise], -1
        )
        x = x + style.grain_amp * up
    if style.weave_amp > 0:
        k = 2 * np.pi / (style.weave_period * px)
        i = np.arange(size, dtype=np.float32)
        x = x + style.weave_amp * (np.sin(k * i)[None, :, None] * np.sin(k * i)[:, None, None])
    if style.vignette > 0:
        r = np.linspace(-1, 1, size, dtype=np.float32)
        x = x * (1 - style.vignette * 0.5 * (r[None, :] ** 2 + r[:, None] ** 2))[..., None]
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def school_of(seed: int, artist: int) -> int:
    return int(np.random.default_rng([_SCHOOL_TAG, seed, artist]).integers(SCHOOLS))


def school_style(seed: int, school: int) -> Style:
    return sample_style(np.random.default_rng([_SCHOOL_TAG, seed, school, 0]))


def artist_style(seed: int, artist: int) -> Style:
    """The hand of artist `artist`: an own random style drawn towards its school's."""
    return join_school(
        school_style(seed, school_of(seed, artist)),
        sample_style(np.random.default_rng([seed, artist])),
        np.random.default_rng([seed, artist, 0]),
        LOYALTY,
    )


def render_painting(seed: int, artist: int, index: int, size: int = 256) -> np.ndarray:
    """Painting `index` of artist `artist` in the corpus of `seed`: uint8 [size, size, 3], deterministic."""
    rng = np.random.default_rng([seed, artist, index, 1])
    style = join_school(artist_style(seed, artist), sample_style(rng), rng, CONSTANCY, WANDER)
    style = jitter_style(style, rng, JITTER)
    scene = render_scene(style, rng, size)
    return _finish(style, rng, _paint(style, rng, scene, size), size)


def _names(n_artists: int, per_artist: int, fmt: str) -> list[tuple[int, int, str, str]]:
    wa, wp = max(3, len(str(n_artists - 1))), max(2, len(str(per_artist - 1)))
    return [(a, j, f"artist_{a:0{wa}d}", f"{j:0{wp}d}.{fmt}") for a in range(n_artists) for j in range(per_artist)]


def _write(task: tuple[Path, int, int, int, int, str]) -> None:
    path, seed, artist, index, size, fmt = task
    pixels = render_painting(seed, artist, index, size)
    tmp = path.with_name(f".{path.name}.tmp")  # hidden, so a reader never sees a half-written file
    if fmt == "png":
        Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1)
    else:  # 4:4:4 and high quality so the fine texture survives
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=95, subsampling=0)
    os.replace(tmp, path)


def generate(
    root: str | Path,
    n_artists: int,
    per_artist: int,
    seed: int = 0,
    size: int = 256,
    progress: bool = False,
    fmt: str = "png",
    workers: int = 1,
) -> Manifest:
    """Write `root/artist_<i>/<j>.<fmt>` and `root/corpus.json`; returns the manifest (as `read_folders` reads it).

    Resumable: files already present from the same corpus (same corpus.json parameters) are kept; a different
    corpus in `root` is an error. `fmt` is "png" (lossless, default) or "jpg" (quality 95, 4:4:4, 3-4× smaller).
    """
    if n_artists < 1 or per_artist < 1 or size < 32 or seed < 0:
        raise ValueError("need n_artists ≥ 1, per_artist ≥ 1, size ≥ 32, seed ≥ 0")
    if fmt not in ("png", "jpg"):
        raise ValueError(f"fmt must be 'png' or 'jpg' (got {fmt!r})")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = {
        "generator": "training.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_artists": n_artists,
        "per_artist": per_artist,
        "size": size,
        "format": fmt,
    }
    info_path = root / "corpus.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if {k: old.get(k) for k in params} != params:
            raise ValueError(f"{root} already holds a different synthetic corpus ({info_path}); use another folder")
    knobs = {"schools": SCHOOLS, "loyalty": LOYALTY, "constancy": CONSTANCY, "wander": WANDER, "jitter": JITTER}
    styles = {
        name: {"school": school_of(seed, a), **artist_style(seed, a).summary()}
        for a, _, name, _ in _names(n_artists, 1, fmt)
    }
    info_path.write_text(json.dumps({**params, **knobs, "artists": styles}, indent=1) + "\n")

    names = _names(n_artists, per_artist, fmt)
    for _, _, artist, _ in names[::per_artist]:
        (root / artist).mkdir(exist_ok=True)
    tasks = [(root / a / f, seed, ai, j, size, fmt) for ai, j, a, f in names if not (root / a / f).is_file()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(names), initial=len(names) - len(tasks), desc="synthetic paintings", unit="img")
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write, tasks, chunksize=8):
                if bar is not None:
                    bar.update()
    else:
        for task in tasks:
            _write(task)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    items = [Item(f"{a}/{f}", root / a / f, a) for _, _, a, f in names]
    return Manifest(items, {"source": f"synthetic:{root}", "generator": params})
