"""`python -m service`: keys create / list / revoke, reindex after a model change, and serve's wiring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.modelcopy import recipe_copy
from contract.card import load_card
from service.__main__ import main
from service.storage.db import open_database
from service.storage.keys import KeyStore
from tests.service.apitools import ADMIN, enrol, one, running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRUSHPRINT_"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path)
    code, out, err = run(capsys, "--data-dir", d, "keys", "create", "--name", "gallery", "--scope", "verify")
    assert code == 0
    key = out.strip()
    assert key.startswith("bp_") and "\n" not in key  # stdout is the key alone, for $(…)
    assert "gallery" in err and key not in err

    store = KeyStore(open_database(f"sqlite:///{tmp_path / 'brushprint.db'}"))
    assert store.authenticate(key).name == "gallery"

    code, out, _ = run(capsys, "--data-dir", d, "keys", "list")
    assert code == 0 and "gallery" in out and "verify" in out and "active" in out
    assert key not in out and key[:10] in out  # the non-secret prefix only
    code, out, _ = run(capsys, "--data-dir", d, "keys", "list", "--json")
    listed = json.loads(out)
    assert [(k["name"], k["scope"], k["revoked_at"]) for k in listed] == [("gallery", "verify", None)]
    assert key not in out

    code, _, err = run(capsys, "--data-dir", d, "keys", "create", "--name", "gallery", "--scope", "admin")
    assert code == 1 and "key_name_taken" in err

    code, _, err = run(capsys, "--data-dir", d, "keys", "revoke", "--name", "gallery")
    assert code == 0 and "revoked" in err
    with pytest.raises(Exception, match="not valid"):
        store.authenticate(key)
    code, out, _ = run(capsys, "--data-dir", d, "keys", "list", "--active")
    assert "gallery" not in out

    code, _, err = run(capsys, "--data-dir", d, "keys", "revoke", "--id", "999")
    assert code == 1 and "unknown_key" in err


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path), "keys", "create", "--name", "x", "--scope", "root"])
    with pytest.raises(SystemExit):
        main(["keys", "revoke"])  # --name or --id required
    capsys.readouterr()
    code, _, err = run(capsys, "--port", "0", "keys", "list")
    assert code == 2 and "port" in err


def test_cli_key_works_over_http(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--data-dir", str(tmp_path), "keys", "create", "--name", "ops", "--scope", "admin")
    key = out.strip()
    with running(model_dir, tmp_path) as c:
        assert c.get("/v1/keys", headers={"X-API-Key": key}).status_code == 200
        names = {k["name"] for k in c.get("/v1/keys", headers={"X-API-Key": key}).json()}
        assert names == {"ops", "bootstrap-admin"}
        c.delete("/v1/keys/ops", headers=ADMIN)
    _, out, _ = run(capsys, "--data-dir", str(tmp_path), "keys", "list", "--json")
    listed = {k["name"]: (bool(k["revoked_at"]), k["collection"]) for k in json.loads(out)}
    assert listed == {
        "ops": (True, "default"),
        "bootstrap-admin": (False, "default"),
        "bootstrap-operator": (False, None),
    }


def test_collections_create_list_delete(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's CLI: a collection and its first admin key (printed once, usable at once and only there),
    keys in a collection, the listing with quotas and figures, and deletion with everything in it."""
    d = str(tmp_path)
    code, out, err = run(capsys, "--data-dir", d, "collections", "create", "--id", "dealer-b", "--max-works", "5")
    assert code == 0 and "dealer-b" in err
    first = out.strip()
    assert first.startswith("bp_") and first not in err
    code, out, _ = run(
        capsys, "--data-dir", d, "keys", "create", "--name", "desk", "--scope", "verify", "--collection", "dealer-b"
    )
    desk = out.strip()
    code, _, err = run(
        capsys, "--data-dir", d, "keys", "create", "--name", "x", "--scope", "verify", "--collection", "nope"
    )
    assert code == 1 and "unknown_collection" in err
    code, _, err = run(
        capsys, "--data-dir", d, "keys", "create", "--name", "op", "--scope", "operator", "--collection", "dealer-b"
    )
    assert code == 2 and "no collection" in err
    code, _, err = run(capsys, "--data-dir", d, "collections", "create", "--id", "Bad Id")
    assert code == 1 and "invalid_collection_id" in err
    with running(model_dir, tmp_path) as c:
        own = {"X-API-Key": first}
        r = c.post("/v1/artists", json={"id": "vermeer", "name": "Vermeer"}, headers=own)
        assert r.status_code == 201
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 0  # the default collection's admin sees none
        assert {k["name"] for k in c.get("/v1/keys", headers=own).json()} == {"admin", "desk"}
        assert (
            c.post(
                "/v1/identify", files={"image": ("q.png", b"", "image/png")}, headers={"X-API-Key": desk}
            ).status_code
            == 422
        )
    code, out, _ = run(capsys, "--data-dir", d, "collections", "list", "--json")
    listed = {c["id"]: (c["artists"], c["max_works"], c["keys"]) for c in json.loads(out)}
    assert listed == {"default": (0, None, 1), "dealer-b": (1, 5, 2)}
    code, out, _ = run(capsys, "--data-dir", d, "collections", "list")
    assert code == 0 and "dealer-b" in out and first not in out
    code, _, err = run(capsys, "--data-dir", d, "collections", "delete", "--id", "dealer-b", "--yes")
    assert code == 0 and "1 artists" in err
    store = KeyStore(open_database(f"sqlite:///{tmp_path / 'brushprint.db'}"))
    for key in (first, desk):
        with pytest.raises(Exception, match="not valid"):
            store.authenticate(key)
    code, _, err = run(capsys, "--data-dir", d, "collections", "delete", "--id", "dealer-b", "--yes")
    assert code == 1 and "unknown_collection" in err


def test_reindex_after_a_model_change(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with running(model_dir, data) as c:
        enrol(c, "alice", [1, 2, 3])
    other = recipe_copy(
        model_dir, tmp_path / "other", resize_shorter=load_card(model_dir).backbone.preprocessing.resize_shorter + 64
    )
    other_id = load_card(other).model_id

    with running(other, data) as c:  # works exist, but not for this model
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/verify", files=one(4), data={"artist_id": "alice"}, headers=ADMIN)
        assert r.status_code == 409 and r.json()["error"]["code"] == "reindex_required"

    code, out, _ = run(capsys, "--model-dir", str(other), "--data-dir", str(data), "reindex")
    assert code == 0
    result = json.loads(out)
    assert result["embedded"] == 3 and result["failed"] == [] and result["model"] == other_id

    with running(other, data) as c:
        assert c.get("/readyz").status_code == 200
        r = c.post("/v1/verify", files=one(4), data={"artist_id": "alice"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["portfolio_size"] == 3
    code, out, _ = run(capsys, "--model-dir", str(other), "--data-dir", str(data), "reindex")
    assert code == 0 and json.loads(out)["embedded"] == 0  # nothing left to do


def test_serve_flags_override_settings(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    seen: dict = {}

    def fake_run(app, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv("BRUSHPRINT_PORT", "9000")
    monkeypatch.setenv("BRUSHPRINT_HOST", "0.0.0.0")
    code = main(["--port", "8123", "--model-dir", str(model_dir), "--data-dir", str(tmp_path)])
    assert code == 0
    assert seen["port"] == 8123 and seen["host"] == "0.0.0.0"
    settings = seen["app"].state.settings
    assert settings.model_dir == model_dir and settings.data_dir == tmp_path
    assert seen["log_config"] is None and seen["access_log"] is False


def test_module_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRUSHPRINT_")}
    r = subprocess.run(
        [sys.executable, "-m", "service", "--data-dir", str(tmp_path), "keys", "list", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("nonsense://", 2, "invalid database URL"),
        ("::::", 2, "invalid database URL"),
        ("postgresql://someone:hunter2hunter2@127.0.0.1:1/nowhere", 1, "cannot open the database"),
    ],
)
def test_a_bad_database_url_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, code: int, says: str
) -> None:
    assert main(["--data-dir", str(tmp_path), "--database-url", url, "db", "current"]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert "hunter2hunter2" not in err  # a password in the URL is never printed
