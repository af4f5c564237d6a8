"""Shared fixtures for the service tests: a real ONNX model, small deterministic test pictures, a throwaway
PostgreSQL (`pg_server`, `pg_url`).

`model_dir` is the shipped model with a single centre crop (bench/modelcopy.py `single_crop_copy`: the same ONNX
files, backbone and cosine head) — the serving path the shipped model takes at a sixteenth of its backbone work
— or the dev model when no model is shipped (bench/devmodel.py, which needs onnx; nothing else here does, so the
serving tests run on the serving install). `other_model` is the same files with another recipe: another model id
and other embeddings. `shipped_model_dir` is models/default as it is, multi-crop recipe
included (tests/service/test_shipped_model.py, the browser tests). `recounted` gives a model directory whose card
records given pair/trial counts (or none, as cards before them): the calibration tests choose what the card
claims to rest on, whatever models/default records."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from bench.modelcopy import linked_copy, recipe_copy, single_crop_copy
from contract.card import Card
from service.serving.model import Model

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "default"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if (SHIPPED / "model.json").is_file():
        return single_crop_copy(SHIPPED, tmp_path_factory.mktemp("shipped-1crop"))
    from bench.devmodel import build_dev_model  # onnx: only where no model is shipped

    return build_dev_model(tmp_path_factory.mktemp("devmodel"))


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    assert (SHIPPED / "model.json").is_file(), "models/default is the shipped model"
    return SHIPPED


@pytest.fixture(scope="session")
def model(model_dir: Path) -> Model:
    return Model.load(model_dir, providers="cpu")


@pytest.fixture(scope="session")
def other_model(model_dir: Path, model: Model, tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A second, different model for model-change tests: the same files, the picture resized larger before its
    centre crop (another recipe → other embeddings, another model id)."""
    side = model.card.backbone.preprocessing.resize_shorter + 64
    return Model.load(recipe_copy(model_dir, tmp_path_factory.mktemp("othermodel"), resize_shorter=side), "cpu")


Counts = tuple[int, int] | None  # (genuine, impostor) behind a table; None: not recorded


def recounted(model_dir: Path, out: Path, pair: Counts, portfolio: Counts) -> Path:
    """A copy of `model_dir` (ONNX files linked) whose card records these effective counts for its pair table and
    every portfolio table; None leaves them out, like a card written before counts were."""

    def change(card: Card) -> Card:
        cal = card.calibration
        trials = dict(zip(("genuine_trials", "impostor_trials"), portfolio or (None, None), strict=True))
        tables = [p.model_copy(update=trials) for p in cal.portfolio]
        counts = dict(zip(("genuine_pairs", "impostor_pairs"), pair or (None, None), strict=True))
        return card.model_copy(update={"calibration": cal.model_copy(update={**counts, "portfolio": tables})})

    return linked_copy(model_dir, out, change)


@pytest.fixture(scope="session")
def uncounted_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model with a card that records no counts (how models/default shipped before them)."""
    return recounted(model_dir, tmp_path_factory.mktemp("uncounted"), None, None)


@pytest.fixture(scope="session")
def uncounted_model(uncounted_model_dir: Path) -> Model:
    return Model.load(uncounted_model_dir, providers="cpu")


@pytest.fixture(scope="session")
def counted_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The test model with the counts a card of the Met-set protocol records: 57 same-artist / 6025
    different-artist pairs per cross-validation repeat, 64 / 3682 leave-one-out trials."""
    return Model.load(recounted(model_dir, tmp_path_factory.mktemp("counted"), (57, 6025), (64, 3682)), "cpu")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def painting(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A small deterministic RGB picture: a seed-dependent palette gradient with strokes of noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-3, 3, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1] + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    return encode(painting(seed, size), "PNG")


# ---- PostgreSQL (tests/pg.sh) -------------------------------------------------------------------------------
PG_SH = ROOT / "tests" / "pg.sh"
INSTALL_HINT = (
    "PostgreSQL tests need the server binaries and psycopg: run `make postgres-deps` as root "
    "(Debian: apt-get install -y postgresql) and `pip install -e '.[postgres]'`"
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A cluster for the whole session; yields the URL of its maintenance database."""
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{INSTALL_HINT}: {e}", pytrace=False)
    # a short path (the server's unix socket path must stay under ~100 bytes) of its own, not under pytest's
    # numbered tmp dirs: a concurrent pytest session prunes old ones, and would delete a live cluster's files
    root = Path(tempfile.mkdtemp(prefix="bp-pg-"))
    proc = subprocess.run(["bash", str(PG_SH), "start", str(root)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"{INSTALL_HINT}\ntests/pg.sh start failed:\n{proc.stderr.strip()}", pytrace=False)
    url = proc.stdout.strip().splitlines()[-1]
    try:
        yield url
    finally:
        subprocess.run(["bash", str(PG_SH), "stop", str(root)], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database per test, dropped afterwards."""
    name = f"bp_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Run the test on both backends: None (the data dir's own SQLite file) or a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
