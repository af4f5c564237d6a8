"""Training and serving turn the same picture into the same backbone input, and score portfolios alike.

The training path is the embedding cache's: a corpus file on disk → `training.backbone.embed.embed_manifest`, which
feeds the backbone what `load_input` makes of it. The serving path is an upload: bytes → `Embedder.prepare`
(decode with the service's limits, the model's recipe) → what the micro-batcher hands the backbone. Both must be
the very same float32 arrays for every kind of file the issue found them to differ on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract.card import EmbeddingRecipe, Preprocessing
from contract.decode import decode_file
from service.config import Settings
from service.serving.model import Model
from service.serving.runtime import Runtime
from tests.service.conftest import encode, painting
from training.backbone.embed import embed_manifest, load_input
from training.data.datasets import Item, Manifest

ORIENTATION = 0x0112
# what `ImageOps.exif_transpose` does for each orientation, undone: storing undo(upright) with orientation o
# must decode to `upright` exactly
_UNDO = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def _sixteen_bit() -> Image.Image:
    a = (np.linspace(0, 65535, 48 * 40).reshape(40, 48)).astype(np.uint16)
    return Image.fromarray(a)


def _palette_with_trns() -> Image.Image:
    im = painting(4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 3
    return im


def _cases() -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) for every kind of picture the two halves once decoded differently."""
    wide = painting(1, (64, 32))
    for o in range(1, 9):
        yield f"orientation{o}.jpg", encode(wide, "JPEG", quality=92, exif=_exif(o))
    rgba = painting(2).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    yield "rgba.png", encode(rgba, "PNG")
    yield "transparent.png", encode(Image.new("RGBA", (48, 40), (0, 0, 0, 0)), "PNG")
    la = painting(3).convert("LA")
    la.putalpha(128)
    yield "la.png", encode(la, "PNG")
    yield "palette_trns.png", encode(_palette_with_trns(), "PNG", transparency=3)
    yield "cmyk.jpg", encode(painting(5).convert("CMYK"), "JPEG", quality=92)
    yield "16bit.png", encode(_sixteen_bit(), "PNG")
    yield "grey.png", encode(painting(6).convert("L"), "PNG")
    yield "grey.jpg", encode(painting(7).convert("L"), "JPEG", quality=92)
    yield "rgb.png", encode(painting(8), "PNG")


CASES = dict(_cases())


@dataclass(frozen=True)
class _Spec:
    """Training's EmbedderSpec fields, taken from the served model's card."""

    arch: str
    embedding_dim: int
    recipe: EmbeddingRecipe
    preprocessing: Preprocessing
    weights: str


class _Recorder:
    """A stand-in backbone that keeps every batch the embedding cache feeds it."""

    def __init__(self, dim: int):
        self.dim = dim
        self.batches: list[np.ndarray] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(x))
        return np.zeros((len(x), self.dim), np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    root = tmp_path_factory.mktemp("corpus")
    items = []
    for name, data in CASES.items():
        (root / name).write_bytes(data)
        items.append(Item(name, root / name, "artist"))
    return Manifest(items)


@pytest.fixture(scope="module")
def served(model: Model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, np.ndarray]]:
    runtime = Runtime.build(model, Settings(data_dir=tmp_path_factory.mktemp("data"), gpu_index=False))
    try:
        yield {name: runtime.embedder.prepare(runtime.bundle, data).inputs for name, data in CASES.items()}
    finally:
        runtime.close()


def test_the_embedding_cache_feeds_the_backbone_what_the_service_does(
    model: Model, corpus: Manifest, served: dict[str, np.ndarray], tmp_path: Path
) -> None:
    b = model.card.backbone
    spec = _Spec(b.arch, b.embedding_dim, b.embedding, b.preprocessing, b.weights)
    recorder = _Recorder(b.crop_dim)
    embed_manifest(corpus, recorder, spec, tmp_path / "cache", batch_size=len(corpus), progress=False)
    (batch,) = recorder.batches  # one batch, no padding: every file is distinct
    n = b.preprocessing.n_crops
    for i, name in enumerate(it.image_id for it in corpus):
        trained = batch[i * n : (i + 1) * n]  # this picture's crops, as the backbone saw them
        assert trained.dtype == served[name].dtype == np.float32
        assert trained.shape == served[name].shape, name
        assert np.array_equal(trained, served[name]), f"{name}: training and serving inputs differ"
        assert np.array_equal(load_input(corpus.paths()[list(CASES).index(name)], spec), trained)


def test_the_cases_are_the_hard_ones(model: Model, corpus: Manifest, served: dict[str, np.ndarray]) -> None:
    """The arrays compared above carry the decoding the issue found missing on the training side."""
    white = model.model_inputs(Image.new("RGB", (48, 40), (255, 255, 255)))
    assert np.array_equal(served["transparent.png"], white)  # transparent is white paper, not black
    by_name = {it.image_id: it.path for it in corpus}
    for o in range(1, 9):
        size = decode_file(by_name[f"orientation{o}.jpg"]).image.size
        assert size == ((32, 64) if o >= 5 else (64, 32)), o  # 5-8 turn the picture a quarter
    assert decode_file(by_name["16bit.png"]).image.getextrema() == ((0, 255),) * 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_decodes_upright(orientation: int, tmp_path: Path) -> None:
    upright = painting(9, (40, 24))
    undo = _UNDO[orientation]
    stored = upright if undo is None else upright.transpose(undo)
    p = tmp_path / "o.png"
    p.write_bytes(encode(stored, "PNG", exif=_exif(orientation)))  # lossless, so exact
    assert np.array_equal(np.asarray(decode_file(p).image), np.asarray(upright))


def test_evaluation_aggregates_portfolios_as_the_service_does() -> None:
    import contract.aggregation
    import service.serving.scorer
    import training.evaluation.evaluate as ev
    from contract.card import Aggregation

    assert ev.aggregate_rows is contract.aggregation.aggregate_rows
    assert service.serving.scorer.aggregate is contract.aggregation.aggregate

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 12)
    table = rng.random((len(labels), len(labels)))
    seen: list[np.ndarray] = []

    def score(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        s = table[ia, ib]
        seen.append(s)
        return s

    for k, m in [(1, 5), (3, 2), (10, 5), (10, 10)]:
        seen.clear()
        res = ev.portfolio_scores(score, labels, k=k, n_trials=40, top_m=m, seed=k)
        assert res is not None
        _, evaluated = res
        pair = seen[-1].reshape(40, k)  # the pair scores of each trial, in order
        served = [service.serving.scorer.aggregate(row, Aggregation(top_m=m)) for row in pair]
        assert evaluated.tolist() == served
