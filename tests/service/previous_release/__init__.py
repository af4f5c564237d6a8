"""A deployment's database as the release before migrations left it: `fill(url, data_dir, model)`.

The schema is the DDL that release's `create_all` ran (schema.sqlite.sql, schema.postgresql.sql beside this file,
emitted from it and committed as they were); the rows are written with plain SQL against those tables (not
through today's code, whose declarations may move on): three artists with their works and originals, the works'
embeddings computed by `model` as enrolment computes them and tagged with its id, the version row, API keys (one
active, one revoked), two decision-log rows, the serving-model row and a stale replica heartbeat.
Used by tests/service/test_migrations.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from contract.decode import decode_bytes
from service.serving.model import Model
from service.storage.db import make_engine
from tests.service.conftest import png

HERE = Path(__file__).resolve().parent
KEY = "previous-release-admin-key-0123456789"
ARTISTS = {
    "vermeer": ("Johannes Vermeer", {"school": "Delft"}, [1, 2, 3]),
    "hals": ("Frans Hals", {}, [11, 12]),
    "leyster": ("Judith Leyster", {"born": 1609, "tags": ["Haarlem", "☀"]}, [21, 22]),
}
T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def schema_statements(dialect: str) -> list[str]:
    text = (HERE / f"schema.{dialect}.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def work_id(seed: int) -> str:
    return f"00000000-0000-4000-8000-{seed:012d}"


def fill(url: str, data_dir: Path, model: Model) -> dict[str, object]:
    """Build the database at `url` (empty) and the originals under `data_dir`; returns what was written."""
    db = make_engine(url)
    rows_works, rows_embeddings = [], []
    for a, (_, _, seeds) in ARTISTS.items():
        for i, seed in enumerate(seeds):
            data = png(seed)
            sha = hashlib.sha256(data).hexdigest()
            rel = f"originals/{sha[:2]}/{sha}.bin"
            (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / rel).write_bytes(data)
            created = T0 + timedelta(minutes=len(rows_works), microseconds=i)
            rows_works.append(
                dict(
                    id=work_id(seed),
                    artist_id=a,
                    sha256=sha,
                    filename=f"{a}-{seed}.png",
                    path=rel,
                    size_bytes=len(data),
                    created=created,
                )
            )
            emb = model.embed_pictures([model.model_inputs(decode_bytes(data).image)])[0]
            vector = np.ascontiguousarray(emb, "<f4").tobytes()
            rows_embeddings.append(
                dict(work_id=work_id(seed), model_id=model.model_id, dim=len(emb), vector=vector, created=created)
            )
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    audit = [
        dict(time=T0 + timedelta(hours=1), key_name="ops", route="verify", artist_id="hals", image_sha256="a" * 64,
             image_b_sha256=None, score=0.71, threshold=0.5, decision="match", model_id=model.model_id,
             request_id="r1"),
        dict(time=T0 + timedelta(hours=2), key_name="old-desk", route="compare", artist_id=None,
             image_sha256="b" * 64, image_b_sha256="c" * 64, score=0.2, threshold=0.5, decision="no_match",
             model_id=model.model_id, request_id=None),
    ]  # fmt: skip
    tables = {
        "artists": [
            dict(id=a, name=name, meta=meta, created=T0 + timedelta(seconds=k))
            for k, (a, (name, meta, _)) in enumerate(ARTISTS.items())
        ],
        "works": rows_works,
        "embeddings": rows_embeddings,
        "gallery_state": [dict(id=1, version=7)],
        "api_keys": [
            dict(name="ops", prefix="env:" + key_hash[:6], key_hash=key_hash, scope="admin", created_at=T0,
                 revoked_at=None),
            dict(name="old-desk", prefix="bp_abcdefg", key_hash="f" * 64, scope="verify", created_at=T0,
                 revoked_at=T0 + timedelta(days=1)),
        ],
        "audit": audit,
        "serving_model": [
            dict(id=1, model_id=model.model_id, model_dir=str(model.model_dir.resolve()), staged_model_id=None,
                 staged_model_dir=None, switched_at=T0),
        ],
        "replicas": [
            dict(id="gone", host="old-host", pid=4242, model_id=model.model_id, staged_ready=None, error=None, seen=T0)
        ],
    }  # fmt: skip
    try:
        with db.begin() as c:
            for stmt in schema_statements(db.dialect.name):
                c.exec_driver_sql(stmt)
            for table, rows in tables.items():
                _insert(c, table, rows)
    finally:
        db.dispose()
    return {"works": rows_works, "audit": audit, "keys": tables["api_keys"]}


# how that release's column types bound these values (generic SQLAlchemy types: stored as it stored them)
_TYPES = {"meta": sa.JSON(), "vector": sa.LargeBinary(), **{
    n: sa.DateTime(timezone=True) for n in ("created", "created_at", "revoked_at", "time", "switched_at", "seen")
}}  # fmt: skip


def _insert(c: sa.Connection, table: str, rows: list[dict]) -> None:
    names = list(rows[0])
    stmt = sa.text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})")
    c.execute(stmt.bindparams(*(sa.bindparam(n, type_=_TYPES[n]) for n in names if n in _TYPES)), rows)
