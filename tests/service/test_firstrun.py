"""The first run explains itself: the startup log names the page and the API docs, and while no key exists it
says how to get one (service/ops/firstrun.py)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from bench.server import Server
from service.config import Settings
from service.ops.firstrun import base_url, key_command, startup_lines


def test_lines_name_the_page_the_docs_and_the_key_command():
    s = Settings(host="0.0.0.0", port=8123, data_dir=Path("data"), admin_key=None)
    assert base_url(s) == "http://127.0.0.1:8123"
    lines = startup_lines(s, active_keys=0)
    assert "http://127.0.0.1:8123/ " in lines[0] and "http://127.0.0.1:8123/docs" in lines[0]
    assert len(lines) == 2 and "keys create --name admin --scope admin" in lines[1]
    assert "--data-dir" not in key_command(s) and "BRUSHPRINT_ADMIN_KEY" in lines[1]
    elsewhere = Settings(port=9000, data_dir=Path("/srv/bp"), admin_key=None)
    assert "--data-dir /srv/bp keys create" in key_command(elsewhere)
    assert startup_lines(elsewhere, active_keys=1) == startup_lines(elsewhere, 1)[:1]  # a key exists: no advice


class _KeylessServer(Server):
    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop("BRUSHPRINT_ADMIN_KEY")
        return env


def test_a_fresh_server_says_how_to_get_the_first_key(model_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    with _KeylessServer(model_dir, data, admin_key="unused-admin-key-0123456789") as server:
        page = httpx.get(server.base_url + "/")
        assert page.status_code == 200
        records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        started = [r for r in records if r.get("page") == server.base_url + "/"]
        assert started and started[0]["docs"] == server.base_url + "/docs"
        advice = [r for r in records if r.get("first_run")]
        assert len(advice) == 1 and f"--data-dir {data} keys create --name admin --scope admin" in advice[0]["message"]
    # once a key exists, the advice is gone
    from service.storage.db import open_database
    from service.storage.keys import KeyStore

    KeyStore(open_database(f"sqlite:///{data / 'brushprint.db'}")).create("admin", "admin", "default")
    with _KeylessServer(model_dir, data, admin_key="unused-admin-key-0123456789") as server:
        records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        last_start = records[max(i for i, r in enumerate(records) if "page" in r) :]
        assert not [r for r in last_start if r.get("first_run")]
