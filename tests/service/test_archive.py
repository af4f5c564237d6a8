"""GET /v1/archive (service/api/archive.py, service/ops/backup.py `Downloads`): a collection's admin downloads the
archive `python -m service export` writes; it restores into another deployment and answers there as it did; it
holds the caller's collection only; verify keys and operators are refused; one archive at a time, and nothing is
left on the server's disk."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from service.ops.backup import Downloads
from tests.service.apitools import ADMIN, OPERATOR, enrol, error_code, new_key, one, running
from tests.service.backups import cli


def _members(data: bytes) -> tuple[dict, set[str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        return manifest, set(tar.getnames())


def test_the_archive_downloads_and_restores_elsewhere_answering_alike(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running(model_dir, tmp_path / "source", operator_key=OPERATOR["X-API-Key"]) as c:
        enrol(c, "vermeer", [1, 2, 3])
        enrol(c, "hals", [11, 12])
        before = c.post("/v1/verify", files=one(4), data={"artist_id": "vermeer"}, headers=ADMIN).json()
        other = c.post("/v1/collections", json={"id": "other", "name": "Other"}, headers=OPERATOR).json()
        o = {"X-API-Key": other["key"]["key"]}
        assert c.post("/v1/artists", json={"id": "leyster", "name": "Leyster"}, headers=o).status_code == 201
        r = c.get("/v1/archive", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/x-tar"
        assert r.headers["content-disposition"].startswith('attachment; filename="brushprint-default-')
        assert r.headers["x-brushprint-works"] == "5"
        manifest, names = _members(r.content)
        assert manifest["collection"]["id"] == "default" and manifest["counts"]["works"] == 5
        assert manifest["counts"]["artists"] == 2  # not the other collection's leyster
        assert sum(1 for n in names if n.startswith("originals/")) == 5
        # the other collection's admin gets its own, and nothing of default's
        mine, _ = _members(c.get("/v1/archive", headers=o).content)
        assert mine["collection"]["id"] == "other" and mine["counts"] == {**mine["counts"], "artists": 1, "works": 0}
        assert not any((tmp_path / "source" / "downloads").rglob("*.tar"))  # removed once sent
    archive = tmp_path / "dealer.tar"
    archive.write_bytes(r.content)
    code, doc, err = cli(
        capsys, "--model-dir", str(model_dir), "--data-dir", str(tmp_path / "target"), "import", str(archive)
    )
    assert code == 0 and doc["counts"]["works"] == 5, err
    with running(model_dir, tmp_path / "target") as c:
        after = c.post("/v1/verify", files=one(4), data={"artist_id": "vermeer"}, headers=ADMIN).json()
    assert (after["score"], after["verdict"], after["portfolio_size"]) == (
        before["score"],
        before["verdict"],
        before["portfolio_size"],
    )


def test_only_an_admin_key_downloads(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path, operator_key=OPERATOR["X-API-Key"]) as c:
        verify = {"X-API-Key": new_key(c, "desk", "verify")}
        assert (c.get("/v1/archive", headers=verify).status_code, error_code(c.get("/v1/archive", headers=verify))) == (
            403,
            "insufficient_scope",
        )
        assert error_code(c.get("/v1/archive", headers=OPERATOR)) == "insufficient_scope"
        assert error_code(c.get("/v1/archive")) == "missing_api_key"


def test_one_archive_at_a_time(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.ops import backup

    entered, release = threading.Event(), threading.Event()
    real = backup.export_archive

    def slow(*args, **kw):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(backup, "export_archive", slow)
    with running(model_dir, tmp_path) as c:
        enrol(c, "vermeer", [1, 2])
        first: list = []
        t = threading.Thread(target=lambda: first.append(c.get("/v1/archive", headers=ADMIN)))
        t.start()
        assert entered.wait(30)
        busy = c.get("/v1/archive", headers=ADMIN)
        release.set()
        t.join(60)
        assert (busy.status_code, error_code(busy)) == (503, "export_busy")
        assert float(busy.headers["retry-after"]) >= 1
        assert first[0].status_code == 200 and first[0].headers["x-brushprint-works"] == "2"
        assert c.get("/v1/archive", headers=ADMIN).status_code == 200  # free again


def test_a_download_left_by_a_stopped_server_is_removed_at_start(model_dir: Path, tmp_path: Path) -> None:
    left = tmp_path / "downloads" / "archive-x"
    left.mkdir(parents=True)
    (left / "default.tar").write_bytes(b"half an archive")
    with running(model_dir, tmp_path) as c:
        assert not left.exists()
        assert isinstance(c.app.state.downloads, Downloads)  # type: ignore[attr-defined]
