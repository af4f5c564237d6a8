"""Crash durability: SIGKILL the real server while enrolments are in flight, restart it, audit what survived.

What must hold after every restart:
- every enrolment the server acknowledged (201) is present, with the same work ids and sha256;
- nothing half-written is visible: each listed work has its original on disk (bytes matching its sha256) and an
  embedding of the current model, and a multi-file enrolment is all there or not there at all;
- the faiss index agrees with the store: /readyz counts as many references as the store has works, and
  /v1/identify with an enrolled picture names its artist first;
- the service takes new enrolments again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.pictures import painting_jpeg
from bench.server import Server
from tests.reliability.conftest import ADMIN_KEY

OPERATOR_KEY = "reliability-operator-key-0123456789"

ARTISTS = [f"crash-{i}" for i in range(3)]
THREADS = 4
CYCLES = 2  # kill → restart → audit, twice: the second kill hits a store that has been recovered once
ACKS_BEFORE_KILL = 8


@dataclass
class Ledger:
    """What the clients sent and what the server acknowledged, shared by the enrolling threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, tuple[str, str]] = field(default_factory=dict)  # work id → (artist, sha256)
    requests: list[tuple[str, list[str]]] = field(default_factory=list)  # (artist, sha256s) of every attempt
    pictures: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # sha256 → (artist, bytes)
    unexpected: list[str] = field(default_factory=list)


def _enrol_until_killed(server: Server, ledger: Ledger, thread: int, cycle: int, stop: threading.Event) -> None:
    headers = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        i = 0
        while not stop.is_set():
            artist_n = (thread + i) % len(ARTISTS)
            artist = ARTISTS[artist_n]
            # every third request enrols two works at once, to catch a torn multi-file transaction
            count = 2 if i % 3 == 2 else 1
            datas = [painting_jpeg(artist_n, 100_000 * (cycle + 1) + 1000 * thread + 10 * i + j) for j in range(count)]
            shas = [hashlib.sha256(d).hexdigest() for d in datas]
            with ledger.lock:
                ledger.requests.append((artist, shas))
                for sha, d in zip(shas, datas, strict=True):
                    ledger.pictures[sha] = (artist, d)
            files = [("image", (f"t{thread}-{i}-{j}.jpg", d, "image/jpeg")) for j, d in enumerate(datas)]
            try:
                r = client.post(f"/v1/artists/{artist}/works", files=files, headers=headers)
            except httpx.TransportError:
                return  # the server is gone: this request was never acknowledged
            if r.status_code == 201:
                with ledger.lock:
                    for w in r.json()["works"]:
                        ledger.acked[w["id"]] = (artist, w["sha256"])
            else:
                with ledger.lock:
                    ledger.unexpected.append(f"{r.status_code} {r.text[:200]}")
            i += 1


def _kill_mid_enrolment(server: Server, ledger: Ledger, cycle: int) -> tuple[int, int]:
    """Run the enrolling threads, SIGKILL the server while they are still sending.

    Returns (works acknowledged, requests left unanswered by the kill) in this cycle.
    """
    before = len(ledger.acked)
    sent_before = len(ledger.requests)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_enrol_until_killed, args=(server, ledger, t, cycle, stop), daemon=True)
        for t in range(THREADS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    while len(ledger.acked) - before < ACKS_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    answered = {sha for _, sha in ledger.acked.values()}
    unanswered = sum(1 for _, shas in ledger.requests[sent_before:] if shas[0] not in answered)
    return len(ledger.acked) - before, unanswered - len(ledger.unexpected)


def _store_rows(data_dir: Path) -> tuple[dict[str, tuple[str, str, str]], dict[str, set[str]]]:
    """works: id → (artist, sha256, path); embeddings: work id → model ids. Read straight from SQLite."""
    con = sqlite3.connect(f"file:{data_dir / 'brushprint.db'}?mode=ro", uri=True)
    try:
        works = {r[0]: (r[1], r[2], r[3]) for r in con.execute("SELECT id, artist_id, sha256, path FROM works")}
        embeddings: dict[str, set[str]] = {}
        for work_id, model_id in con.execute("SELECT work_id, model_id FROM embeddings"):
            embeddings.setdefault(work_id, set()).add(model_id)
    finally:
        con.close()
    return works, embeddings


def _audit(server: Server, ledger: Ledger) -> int:
    headers = {"X-API-Key": ADMIN_KEY}
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        listed: dict[str, tuple[str, str]] = {}
        for artist in ARTISTS:
            r = client.get(f"/v1/artists/{artist}/works", headers=headers)
            assert r.status_code == 200, r.text
            for w in r.json()["works"]:
                listed[w["id"]] = (artist, w["sha256"])

        # 1. every acknowledged enrolment survived, unchanged
        lost = {wid: v for wid, v in ledger.acked.items() if listed.get(wid) != v}
        assert not lost, f"{len(lost)} acknowledged works lost or changed after SIGKILL: {lost}"

        # 2. nothing half-written: bytes on disk, an embedding of the current model, multi-file all-or-nothing
        ready = client.get("/readyz", headers={"X-API-Key": OPERATOR_KEY})
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        model_id = checks["model"]
        works, embeddings = _store_rows(server.data_dir)
        assert set(works) == set(listed), "the listing and the store disagree"
        for wid, (_artist, sha, rel) in works.items():
            original = server.data_dir / rel
            assert original.is_file(), f"work {wid} has no original on disk"
            assert hashlib.sha256(original.read_bytes()).hexdigest() == sha, f"work {wid}: original is corrupt"
            assert model_id in embeddings.get(wid, set()), f"work {wid} has no embedding of {model_id}"
        present = {sha for _, sha in listed.values()}
        for artist, shas in ledger.requests:
            got = [sha in present for sha in shas]
            assert all(got) or not any(got), f"a {len(shas)}-file enrolment for {artist} is half there: {got}"

        # 3. the faiss index agrees with the store
        assert checks["references"] == len(works), checks
        assert checks["works_missing_embedding"] == 0, checks
        for artist in ARTISTS:
            enrolled = [d for sha, (a, d) in ledger.pictures.items() if a == artist and sha in present]
            assert enrolled, f"{artist} has no works"
            r = client.post(
                "/v1/identify", files={"image": ("q.jpg", enrolled[0], "image/jpeg")}, data={"k": "3"}, headers=headers
            )
            assert r.status_code == 200, r.text
            assert r.json()["candidates"][0]["artist_id"] == artist, r.json()
        return len(works)


@pytest.mark.timeout(600)
def test_sigkill_during_concurrent_enrolment_loses_nothing_acknowledged(model_dir: Path, tmp_path: Path):
    server = Server(
        model_dir,
        tmp_path / "data",
        ADMIN_KEY,
        env={
            "BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0",
            "BRUSHPRINT_BATCH_MAX_WAIT_MS": "2",
            "BRUSHPRINT_OPERATOR_KEY": OPERATOR_KEY,  # /readyz counts references for an operator only
        },
        log_path=tmp_path / "server.log",
    )
    ledger = Ledger()
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for artist in ARTISTS:
                r = client.post("/v1/artists", json={"id": artist, "name": artist}, headers={"X-API-Key": ADMIN_KEY})
                assert r.status_code == 201, r.text
        for cycle in range(CYCLES):
            acked, in_flight = _kill_mid_enrolment(server, ledger, cycle)
            assert acked >= ACKS_BEFORE_KILL, f"cycle {cycle}: only {acked} acknowledged before the kill"
            # the kill really came mid-way: some enrolments were sent and never answered
            assert in_flight >= 1, f"cycle {cycle}: no enrolment was in flight at the kill"
            assert not ledger.unexpected, ledger.unexpected
            assert server.proc is not None and server.proc.returncode == -9
            server.start()
            n = _audit(server, ledger)
            assert n >= len(ledger.acked)

        # and it keeps working: a new enrolment is acknowledged and counted at once
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            headers = {"X-API-Key": ADMIN_KEY}
            data = painting_jpeg(0, 999_999)
            r = client.post(
                f"/v1/artists/{ARTISTS[0]}/works", files={"image": ("n.jpg", data, "image/jpeg")}, headers=headers
            )
            assert r.status_code == 201, r.text
            assert client.get("/readyz", headers={"X-API-Key": OPERATOR_KEY}).json()["checks"]["references"] == n + 1
        assert ADMIN_KEY not in server.log_text(), "the admin key was written to the server log"
    finally:
        server.stop()
