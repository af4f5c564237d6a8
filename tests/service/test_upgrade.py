"""Model upgrade while serving (`python -m service upgrade`, service/ops/upgrade.py), on one process and SQLite.
The same across PostgreSQL replicas behind the proxy: tests/deploy/test_replicas.py."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from service.__main__ import main
from service.api.errors import headers_of, status_of
from service.errors import ModelSwitching
from service.serving.model import Model
from service.storage.gallery import NewWork
from service.storage.schema import ServingModelRow
from tests.service.apitools import ADMIN, enrol, one, running
from tests.service.conftest import png, recounted

SEEDS = {"vermeer": [1, 2, 3], "hals": [11, 12, 13], "leyster": [21, 22]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRUSHPRINT_"):
            monkeypatch.delenv(name)


def serving_row(data: Path) -> tuple[str, str | None]:
    engine = sa.create_engine(f"sqlite:///{data / 'brushprint.db'}")
    try:
        with engine.connect() as c:
            r = c.execute(sa.select(ServingModelRow.model_id, ServingModelRow.staged_model_id)).one()
            return r[0], r[1]
    finally:
        engine.dispose()


def portfolios(c) -> dict[str, list[dict]]:
    return {a: c.get(f"/v1/artists/{a}/works", headers=ADMIN).json()["works"] for a in SEEDS}


@pytest.fixture(scope="module")
def uncounted_other_dir(other_model: Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The other model, its card without counts: replies then take the gallery's own tables once they exist."""
    return recounted(other_model.model_dir, tmp_path_factory.mktemp("uncounted-other"), None, None)


def test_upgrade_under_verify_traffic(
    uncounted_model_dir: Path, uncounted_other_dir: Path, other_model: Model, tmp_path: Path, capsys
) -> None:
    """Zero failed requests, identical portfolios, and every reply wholly one model's: after the switch its
    calibration is the gallery's own tables scored by the new model, and says so."""
    model_dir = uncounted_model_dir
    data = tmp_path / "data"
    with running(model_dir, data, model_poll_seconds=0.2, gallery_calibration_min_artists=2) as c:
        for artist, seeds in SEEDS.items():
            enrol(c, artist, seeds)
        old = c.get("/readyz").json()["checks"]["model"]
        before = portfolios(c)
        answers: list[tuple[float, int, str | None]] = []  # (start, status, model)
        calibrations: list[tuple[float, str, dict]] = []  # (start, model, calibration)
        stop = threading.Event()

        def traffic(w: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                artist = list(SEEDS)[i % len(SEEDS)]
                t = time.monotonic()
                r = c.post("/v1/verify", files=one(100 + i), data={"artist_id": artist}, headers=ADMIN)
                answers.append((t, r.status_code, r.json().get("model")))
                if r.status_code == 200:
                    calibrations.append((t, r.json()["model"], r.json()["calibration"]))

        threads = [threading.Thread(target=traffic, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()

        def wait_for(done: Callable[[], bool], timeout: float = 60.0) -> None:
            # the traffic's own pace, not a fixed sleep: under a loaded CI host one verify can take over a second
            deadline = time.monotonic() + timeout
            while not done() and time.monotonic() < deadline:
                time.sleep(0.05)

        try:
            wait_for(lambda: len(answers) >= 2)  # the old model has answered
            argv = [
                "--model-dir",
                str(model_dir),
                "--data-dir",
                str(data),
                "upgrade",
                "--to",
                str(uncounted_other_dir),
            ]
            code = main([*argv, "--no-progress", "--wait", "30"])
            switched = time.monotonic()
            out, err = capsys.readouterr()
            wait_for(lambda: sum(1 for t, _, _ in calibrations if t > switched) >= 2)  # answers begun after it
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert code == 0, err
        assert '"switched": true' in out and "replicas ready with" in err
        assert c.get("/readyz").json()["checks"]["model"] == other_model.model_id
        after = portfolios(c)
        # the serving bundle's calibrator is the new model's, current, and not rebuilt on every request
        calibrator = c.app.state.runtime.bundle.view("default").calibrator
        calibrator.wait(30)
        rebuilds = calibrator.rebuilds
        assert calibrator.tables is not None and calibrator.tables.model_id == other_model.model_id
        for i in range(3):
            r = c.post("/v1/verify", files=one(200 + i), data={"artist_id": "hals"}, headers=ADMIN).json()
            assert r["calibration"]["model"] == r["model"] == other_model.model_id
            assert r["calibration"]["source"] == "gallery"
        calibrator.wait(30)
        assert calibrator.rebuilds == rebuilds
        assert calibrator.built_version == c.app.state.runtime.bundle.view("default").gallery.replicas.version
    statuses = [s for _, s, _ in answers]
    by_model = {m: sum(1 for *_, x in answers if x == m) for m in (old, other_model.model_id)}
    print(f"\nverify answers during the upgrade: {len(answers)}, statuses {sorted(set(statuses))}, by model {by_model}")
    assert statuses and set(statuses) == {200}, statuses  # zero failed requests
    assert any(m == old for _, _, m in answers), "traffic must have run while the old model served"
    assert all(m == other_model.model_id for t, _, m in answers if t > switched), "a request after the switch"
    assert after == before  # identical portfolios (ids, files, order)
    # every reply's calibration is its own model's; after the switch, the new model's gallery tables
    assert calibrations and all(cal["model"] == m for _, m, cal in calibrations)
    late = [cal for t, _, cal in calibrations if t > switched]
    assert late and all(cal["source"] == "gallery" and cal["model"] == other_model.model_id for cal in late)
    assert serving_row(data) == (other_model.model_id, None)
    # restarted with the new model configured, it serves on from the store
    with running(uncounted_other_dir, data) as c:
        r = c.post("/v1/verify", files=one(5), data={"artist_id": "hals"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["model"] == other_model.model_id and r.json()["portfolio_size"] == 3


def test_failed_upgrade_leaves_the_old_model_serving(
    model_dir: Path, other_model: Model, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    with running(model_dir, data, model_poll_seconds=0.2) as c:
        for artist, seeds in SEEDS.items():
            enrol(c, artist, seeds)
        old = c.get("/readyz").json()["checks"]["model"]
        q = {"files": one(7), "data": {"artist_id": "vermeer"}, "headers": ADMIN}
        first = c.post("/v1/verify", **q).json()
        # one original lost from the disk: the new model cannot embed that work, the upgrade must not switch
        next((data / "originals").rglob("*.bin")).unlink()
        argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "upgrade", "--to", str(other_model.model_dir)]
        code = main([*argv, "--no-progress"])
        _, err = capsys.readouterr()
        assert code == 1 and "error: reembed_failed:" in err
        assert serving_row(data) == (old, None)
        time.sleep(0.5)  # a poll or two: still the old model, answering exactly as before
        assert c.post("/v1/verify", **q).json() == first

        # an upgrade that died after staging: the replica stages the model, `--abort` drops it, nothing switched
        engine = sa.create_engine(f"sqlite:///{data / 'brushprint.db'}")
        with engine.begin() as conn:
            conn.execute(
                sa.update(ServingModelRow).values(
                    staged_model_id=other_model.model_id, staged_model_dir=str(other_model.model_dir)
                )
            )
        engine.dispose()
        switch = c.app.state.model_switch
        deadline = time.monotonic() + 30
        while switch._prepared is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert switch._prepared is not None and switch._prepared.model.model_id == other_model.model_id
        assert c.post("/v1/verify", **q).json() == first  # staged, not serving
        assert main(["--data-dir", str(data), "upgrade", "--abort"]) == 0
        capsys.readouterr()
        assert serving_row(data) == (old, None)
        time.sleep(0.6)
        assert switch._prepared is None
        assert c.post("/v1/verify", **q).json() == first


def test_enrolment_on_a_replica_behind_the_switch_is_refused(
    model_dir: Path, other_model: Model, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with running(model_dir, data, model_poll_seconds=30) as c:
        enrol(c, "hals", [1, 2])
        gallery = c.app.state.runtime.bundle.view("default").gallery
        engine = sa.create_engine(f"sqlite:///{data / 'brushprint.db'}")
        with engine.begin() as conn:  # another process switched the deployment a moment ago
            conn.execute(sa.update(ServingModelRow).values(model_id=other_model.model_id))
        engine.dispose()
        emb = np.zeros(gallery.space.embedding_dim, np.float32)
        item = NewWork(filename="x.png", data=png(3), sha256="ab" * 32, embedding=emb)
        with pytest.raises(ModelSwitching) as e:
            gallery.add_works("hals", [item])
        assert status_of(e.value) == 503 and e.value.code == "model_switching"
        assert headers_of(e.value)["Retry-After"] == "1"
        assert len(gallery.list_works("hals")) == 2
