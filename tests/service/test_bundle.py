"""The serving bundle (service/serving/bundle.py): one factory builds every bundle (startup, reindex, upgrade), a
request holds the bundle it started with to the end whatever is swapped meanwhile, and each bundle's
calibration is its own model's. The same across an upgrade over HTTP: tests/service/test_upgrade.py, and across
PostgreSQL replicas: tests/deploy/test_replicas.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.decode import decode_bytes
from service.config import Settings
from service.serving.bundle import Bundle
from service.serving.calibration import build_tables
from service.serving.embedder import embed_items
from service.serving.model import Model
from service.serving.runtime import Runtime
from tests.service.conftest import png, recounted

pytestmark = pytest.mark.anyio

GALLERY = {f"artist{a}": [100 * a + i for i in range(2)] for a in range(5)}  # 5 artists x 2 works: calibrates


def settings(data_dir: Path, **values: Any) -> Settings:
    return Settings(data_dir=data_dir, gpu_index=False, gallery_calibration_min_artists=5, **values)


@pytest.fixture(scope="module")
def uncounted_other(other_model: Model, tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The other model with a card that records no counts: its replies take the gallery's tables when it has them."""
    return Model.load(recounted(other_model.model_dir, tmp_path_factory.mktemp("uncounted-other"), None, None), "cpu")


async def _enrol(runtime: Runtime) -> None:
    for artist, seeds in GALLERY.items():
        runtime.portfolios.create_artist(artist, artist)
        await runtime.portfolios.add_works(artist, [(f"{s}.png", png(s)) for s in seeds])


def _staged(runtime: Runtime, model: Model) -> Bundle:
    """A bundle of `model` with the gallery embedded for it (not announced: nobody serves it yet), as an upgrade
    stages one."""
    first = runtime.factory(model)
    first.view("default").gallery.reindex(lambda datas: runtime.embedder.embed_many(first, datas), announce=False)
    bundle = runtime.factory(model)
    assert bundle.view("default").calibrator.refresh() is not None
    return bundle


async def test_one_factory_builds_every_bundle(tmp_path: Path, uncounted_model: Model, uncounted_other: Model) -> None:
    built: list[Bundle] = []
    runtime = Runtime.build(uncounted_model, settings(tmp_path / "data"))
    runtime.factory.on_build = built.append
    try:
        await _enrol(runtime)
        first = runtime.bundle
        assert (first.model, first.view("default").calibrator.model_id) == (uncounted_model, uncounted_model.model_id)
        runtime.reindex()  # after a reindex: a new bundle of the same model, from the factory
        assert built == [runtime.bundle] and runtime.bundle is not first and runtime.bundle.model is uncounted_model
        assert len(runtime.bundle.view("default").gallery) == len(first.view("default").gallery) == 10
        staged = _staged(runtime, uncounted_other)  # what an upgrade stages comes from it too
        assert built[-1] is staged and staged.view("default").calibrator.model_id == uncounted_other.model_id
    finally:
        runtime.close()


async def test_a_request_keeps_its_bundle_across_a_swap(
    tmp_path: Path, uncounted_model: Model, uncounted_other: Model
) -> None:
    runtime = Runtime.build(uncounted_model, settings(tmp_path / "data"))
    await runtime.start()
    try:
        await _enrol(runtime)
        old = runtime.bundle
        assert old.view("default").calibrator.refresh() is not None
        before = await runtime.scorer.verify(png(7), "artist1")
        assert before.calibration.source == "gallery" and before.calibration.model == old.model_id
        new = _staged(runtime, uncounted_other)

        # a verify held inside its first backbone run while the serving bundle is swapped (its picture dropped
        # from the old bundle's embedding cache first, so that it goes to the backbone again)
        old.cache.clear()
        entered, release = asyncio.Event(), asyncio.Event()
        real_crops = runtime.embedder.crops

        async def held(bundle: Bundle, inputs: np.ndarray) -> np.ndarray:
            entered.set()
            await release.wait()
            return await real_crops(bundle, inputs)

        runtime.embedder.crops = held  # type: ignore[method-assign]
        task = asyncio.create_task(runtime.scorer.verify(png(7), "artist1"))
        await asyncio.wait_for(entered.wait(), 60)
        assert runtime.bundles.swap(new) is old
        release.set()
        during = await task
        runtime.embedder.crops = real_crops  # type: ignore[method-assign]
        after = await runtime.scorer.verify(png(7), "artist1")
    finally:
        await runtime.stop()
        runtime.close()
    # the held request: entirely the old bundle's — model, scores, portfolio, calibration
    assert during.model == during.calibration.model == old.model_id
    assert during.score == pytest.approx(before.score, abs=1e-6) and during.threshold == before.threshold
    assert (during.calibration.genuine_pairs, during.calibration.impostor_pairs) == (
        before.calibration.genuine_pairs,
        before.calibration.impostor_pairs,
    )
    # the next request: entirely the new one's, its calibration built from the gallery scored by the new model
    assert after.model == after.calibration.model == new.model_id and after.calibration.source == "gallery"
    version, artists, vectors = new.view("default").gallery.snapshot()
    agg = uncounted_other.card.calibration.aggregation
    direct = build_tables(artists, vectors, uncounted_other.symmetric_scores, agg, version, min_artists=5)
    assert direct is not None and (direct.genuine_trials, direct.impostor_trials) == (
        after.calibration.genuine_pairs,
        after.calibration.impostor_pairs,
    )
    assert after.score != pytest.approx(during.score, abs=1e-6)


async def test_a_micro_batch_embeds_each_item_with_its_own_model(model: Model, other_model: Model) -> None:
    """During a swap one backbone batch may hold pictures of both bundles: each is embedded by its own model."""
    xs = [m.model_inputs(decode_bytes(png(s)).image) for s, m in ((1, model), (2, other_model), (3, model))]
    items = [(model, xs[0]), (other_model, xs[1]), (model, xs[2])]
    out = embed_items(items)
    for (m, x), emb in zip(items, out, strict=True):
        np.testing.assert_allclose(emb, m.crop_vectors([x])[0], rtol=1e-4, atol=1e-5)  # each picture's crops
