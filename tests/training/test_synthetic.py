"""The synthetic corpus: deterministic, readable as folders, and an artist's paintings look alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from training.data.datasets import load_corpus, read_folders
from training.data.synthetic import STROKES, artist_style, generate, render_painting


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_generate_is_deterministic_and_reads_as_folders(tmp_path: Path) -> None:
    m = generate(tmp_path / "a", n_artists=3, per_artist=2, seed=5, size=64)
    generate(tmp_path / "b", n_artists=3, per_artist=2, seed=5, size=64, workers=2)
    generate(tmp_path / "c", n_artists=3, per_artist=2, seed=6, size=64)

    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 6 and a == b  # same seed → byte-identical, serial or parallel
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)

    assert m == read_folders(tmp_path / "a") == load_corpus(f"synthetic:{tmp_path / 'a'}")
    assert m.artists() == ["artist_000", "artist_001", "artist_002"]
    with Image.open(m[0].path) as im:
        assert im.size == (64, 64) and im.mode == "RGB"

    info = json.loads((tmp_path / "a" / "corpus.json").read_text())
    assert {k: info[k] for k in ("seed", "n_artists", "per_artist", "size", "format")} == {
        "seed": 5,
        "n_artists": 3,
        "per_artist": 2,
        "size": 64,
        "format": "png",
    }
    assert info["version"] and set(info["artists"]) == set(m.artists())
    assert info["artists"]["artist_000"]["stroke"] in STROKES


def test_generate_resumes_and_refuses_another_corpus(tmp_path: Path) -> None:
    generate(tmp_path, n_artists=2, per_artist=2, seed=1, size=48)
    before = _files(tmp_path)
    victim = tmp_path / "artist_001" / "01.png"
    victim.unlink()
    generate(tmp_path, n_artists=2, per_artist=2, seed=1, size=48)
    assert _files(tmp_path) == before
    assert not list(tmp_path.rglob(".*.tmp"))
    with pytest.raises(ValueError, match="different synthetic corpus"):
        generate(tmp_path, n_artists=2, per_artist=2, seed=2, size=48)


def test_jpeg_format(tmp_path: Path) -> None:
    m = generate(tmp_path, n_artists=1, per_artist=2, seed=0, size=40, fmt="jpg")
    assert [p.suffix for p in m.paths()] == [".jpg", ".jpg"]
    assert m == read_folders(tmp_path)


def test_render_painting_is_pure() -> None:
    a = render_painting(3, 4, 5, size=48)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_painting(3, 4, 5, size=48))
    assert not np.array_equal(a, render_painting(3, 4, 6, size=48))
    assert artist_style(3, 4) == artist_style(3, 4) != artist_style(3, 5)


def _colour_histogram(pixels: np.ndarray, bins: int = 4) -> np.ndarray:
    q = (pixels.reshape(-1, 3).astype(np.int64) * bins) // 256
    h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins**3).astype(np.float64)
    return h / h.sum()


def _gradient_histogram(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """Distribution of local contrast: brushwork, grain and softness, whatever the colours."""
    gy, gx = np.gradient(pixels.astype(np.float32).mean(-1))
    h, _ = np.histogram(np.log1p(np.hypot(gx, gy)), bins=bins, range=(0, 5))
    return h / h.sum()


@pytest.mark.parametrize(("feature", "max_ratio"), [(_colour_histogram, 0.92), (_gradient_histogram, 0.8)])
def test_an_artists_paintings_are_closer_than_other_artists(
    feature: Callable[[np.ndarray], np.ndarray], max_ratio: float
) -> None:
    n_artists, per = 16, 4
    paintings = [render_painting(0, a, j, size=64) for a in range(n_artists) for j in range(per)]
    feats = np.stack([feature(p) for p in paintings])
    labels = np.repeat(np.arange(n_artists), per)
    dist = np.abs(feats[:, None] - feats[None]).sum(-1)  # L1 between histograms
    iu = np.triu_indices(len(labels), 1)
    same = (labels[:, None] == labels[None])[iu]
    within, between = dist[iu][same].mean(), dist[iu][~same].mean()
    assert within < max_ratio * between
    # style identifies the artist, but not trivially: some pairs of different artists are closer than own work
    auc = roc_auc_score(same, -dist[iu])
    assert 0.6 < auc < 0.95
