"""Backups taken while the gallery changes, as the hostile probe of issue 19 took them, and restored.

The real server (`python -m service`, SQLite in its data dir or `--database-url`) is enrolled with 6 artists × 4
works; then writer threads enrol and delete works over HTTP without pause (one of them now and then deletes a
whole artist and creates it again), while `python -m service export` runs `--exports` times, one after another.
Once the writers stop, every archive is restored with `python -m service import` into an empty SQLite deployment
of its own, whose answer must name as many restored works (loaded as references) as its export counted; last,
`python -m service drill` runs on the quiet deployment and must find every answer identical.

    python -m bench.backup_probe [--exports 12] [--writers 3] [--model-dir DIR] [--database-url URL] [--json PATH]

Exit status 1 when an export or an import exits non-zero (or with a traceback), a restore differs from its export,
a writer got a 5xx, or the drill finds a difference; the last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.pictures import painting_jpeg
from bench.server import ROOT, Server

ARTISTS = [f"artist-{a}" for a in range(6)]
WORKS = 4
SIZE = (224, 168)


@dataclass
class Writes:
    """What the writers did; `ops` counts every answered request, so a difference brackets an export."""

    enrolled: int = 0
    deleted: int = 0
    artists_recreated: int = 0
    refused: int = 0  # 404/409: the artist or work went away meanwhile (expected)
    server_errors: list[str] = field(default_factory=list)
    ops: int = 0


@dataclass
class Run:
    command: str
    code: int
    seconds: float
    traceback: bool
    doc: dict
    error: str


def cli(server: Server, *argv: str, data_dir: Path | None = None, database_url: str | None = None) -> Run:
    """`python -m service ARGV` with the server's settings (or another deployment's data dir and database)."""
    env = server.environment()
    if data_dir is not None:
        env["BRUSHPRINT_DATA_DIR"] = str(data_dir)
        env.pop("BRUSHPRINT_DATABASE_URL", None)
    if database_url is not None:
        env["BRUSHPRINT_DATABASE_URL"] = database_url
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "service", *argv, "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    out = p.stdout.strip().splitlines()
    doc = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
    lines = p.stderr.strip().splitlines()
    error = next((line for line in reversed(lines) if line.startswith("error:") or "Error" in line), "")
    return Run(" ".join(argv), p.returncode, time.perf_counter() - t0, "Traceback" in p.stderr, doc, error)


def fresh(artist: int, n: int) -> tuple[str, tuple[str, bytes, str]]:
    return ("image", (f"w{n}.jpg", painting_jpeg(artist, n, SIZE), "image/jpeg"))


def setup(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=120) as c:
        for a, artist in enumerate(ARTISTS):
            c.post("/v1/artists", json={"id": artist, "name": artist.title()}).raise_for_status()
            c.post(f"/v1/artists/{artist}/works", files=[fresh(a, i) for i in range(WORKS)]).raise_for_status()


def writer(server: Server, seed: int, stop: threading.Event, writes: Writes, lock: threading.Lock) -> None:
    """Even seeds enrol one or two new works at a time; odd ones delete a work of an artist that has more than two
    (or, one time in 20, the whole artist, created again at once)."""
    rng = random.Random(seed)
    counter = 100_000 * (seed + 1)
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=120) as c:
        while not stop.is_set():
            a = rng.randrange(len(ARTISTS))
            artist = ARTISTS[a]
            if seed % 2 == 0:
                counter += 2
                files = [fresh(a, counter), fresh(a, counter + 1)][: rng.choice((1, 2))]
                answers = [(c.post(f"/v1/artists/{artist}/works", files=files), "enrolled", len(files))]
            else:
                works = c.get(f"/v1/artists/{artist}/works").json().get("works", [])
                if len(works) <= 2:  # the enrolling writers are slower (each work is embedded): let them catch up
                    time.sleep(0.05)
                    continue
                if rng.random() < 1 / 20:
                    answers = [(c.delete(f"/v1/artists/{artist}"), "", 0)]
                    new = c.post("/v1/artists", json={"id": artist, "name": artist.title()})
                    answers.append((new, "recreated", 1))
                else:
                    answers = [(c.delete(f"/v1/artists/{artist}/works/{rng.choice(works)['id']}"), "deleted", 1)]
            with lock:
                for r, what, n in answers:
                    writes.ops += 1
                    if r.status_code >= 500:
                        writes.server_errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code}")
                    elif r.status_code in (404, 409):
                        writes.refused += 1
                    elif what == "enrolled":
                        writes.enrolled += n
                    elif what == "deleted":
                        writes.deleted += n
                    elif what == "recreated":
                        writes.artists_recreated += n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exports", type=int, default=12, help="exports taken while the writers run (default 12)")
    ap.add_argument("--writers", type=int, default=3, help="writer threads: enrolling and deleting (default 3)")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--database-url", help="the live deployment's database (default: SQLite in its data dir)")
    ap.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = ap.parse_args(argv)
    key = "bp_probe_" + secrets.token_urlsafe(24)
    env = {"BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0"}
    if args.database_url:
        env["BRUSHPRINT_DATABASE_URL"] = args.database_url
    with tempfile.TemporaryDirectory(prefix="brushprint-backup-probe-") as tmp:
        root = Path(tmp)
        server = Server(args.model_dir, root / "live", key, env=env, log_path=root / "server.log")
        with server:
            setup(server)
            writes, lock, stop = Writes(), threading.Lock(), threading.Event()
            threads = [
                threading.Thread(target=writer, args=(server, i, stop, writes, lock), daemon=True)
                for i in range(args.writers)
            ]
            for t in threads:
                t.start()
            exports, during = [], []
            try:
                time.sleep(1.0)
                for i in range(args.exports):
                    before = writes.ops
                    exports.append(cli(server, "export", "--out", str(root / f"a{i}.tar")))
                    during.append(writes.ops - before)
            finally:
                stop.set()
                for t in threads:
                    t.join(120)
            imports = [
                cli(server, "import", str(root / f"a{i}.tar"), data_dir=root / f"restored{i}") if e.code == 0 else e
                for i, e in enumerate(exports)
            ]
            drill = cli(server, "drill", "--out", str(root / "drill.tar"))
            alive = server.alive()

    restored = [
        e.code == 0
        and i.code == 0
        and not i.traceback
        and i.doc.get("counts") == e.doc["counts"]
        and i.doc.get("references") == e.doc["counts"]["works"]
        for e, i in zip(exports, imports, strict=True)
    ]
    left_out = sum(len(e.doc.get("left_out", [])) for e in exports)
    for n, (e, i, ok) in enumerate(zip(exports, imports, restored, strict=True)):
        counts = e.doc.get("counts", {})
        print(
            f"export {n:2d}: exit {e.code} in {e.seconds:.1f} s, {during[n]} writes meanwhile, "
            f"{counts.get('artists')} artists / {counts.get('works')} works, left out {len(e.doc.get('left_out', []))}"
            f"{' ' + e.error if e.code else ''}; import: exit {i.code} in {i.seconds:.1f} s, "
            f"references {i.doc.get('references')}{' ' + i.error if i.code else ''} -> {'restored' if ok else 'FAILED'}"
        )
    print(f"writers: {asdict(writes)}")
    print(
        f"drill: exit {drill.code} in {drill.seconds:.1f} s, {drill.doc.get('identical')}/{drill.doc.get('questions')} "
        f"answers identical, live_moved {drill.doc.get('live_moved')}{' ' + drill.error if drill.code else ''}"
    )
    passed = all(restored) and drill.code == 0 and not writes.server_errors and alive
    figures = {
        "command": "python -m bench.backup_probe " + " ".join(argv if argv is not None else sys.argv[1:]),
        "database": "postgresql" if args.database_url else "sqlite",
        "exports": len(exports),
        "exports_ok": sum(e.code == 0 for e in exports),
        "restored": sum(restored),
        "exports_with_writes_meanwhile": sum(1 for d in during if d),
        "writes_during_exports": during,
        "left_out": left_out,
        "writes": asdict(writes),
        "drill": drill.doc,
        "passed": passed,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    print(
        f"HEADLINE {'PASS' if passed else 'FAIL'}: {figures['database']}: {figures['exports_ok']}/{len(exports)} "
        f"exports exited 0 ({figures['exports_with_writes_meanwhile']} with writes landing meanwhile, "
        f"{left_out} works left out), {sum(restored)}/{len(exports)} restored whole; writers "
        f"{writes.enrolled} enrolled / {writes.deleted} deleted / {writes.artists_recreated} artists re-created, "
        f"{len(writes.server_errors)} 5xx; drill {drill.doc.get('identical')}/{drill.doc.get('questions')} identical"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
