"""The compose topology without Docker: PostgreSQL (tests/pg.sh), N `python -m service` replicas sharing it and
one data directory, and HAProxy with the repo's deploy/haproxy/haproxy.cfg in front.

Needs the Debian packages `postgresql` and `haproxy` (`make deploy-deps`, which `make test` runs).
Used by tests/deploy/test_replicas.py and tests/deploy/test_upgrade.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bench.server import HOST, Server, free_port

ROOT = Path(__file__).resolve().parents[2]
PG_SH = ROOT / "tests" / "pg.sh"
PROXY_DIR = ROOT / "deploy" / "haproxy"
ADMIN_KEY = "deploy-admin-key-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
HINT = (
    "the deployment tests need PostgreSQL and HAProxy: `make deploy-deps` "
    "(Debian: apt-get install -y postgresql haproxy)"
)


@contextmanager
def postgres(root: Path) -> Iterator[str]:
    """A throwaway cluster; yields the URL of a fresh database in it."""
    proc = subprocess.run(["bash", str(PG_SH), "start", str(root)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"{HINT}\ntests/pg.sh start failed:\n{proc.stderr.strip()}", pytrace=False)
    url = proc.stdout.strip().splitlines()[-1]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"bp_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.dispose()
        subprocess.run(["bash", str(PG_SH), "stop", str(root)], capture_output=True, timeout=120)


def replicas(model_dir: Path, data_dir: Path, db_url: str, n: int, logs: Path, **env: str) -> list[Server]:
    """n replicas sharing `db_url` and `data_dir` (as compose's replicas share PostgreSQL and the data volume),
    started together."""
    settings = {
        "BRUSHPRINT_DATABASE_URL": db_url,
        "BRUSHPRINT_PROVIDERS": "cpu",
        "BRUSHPRINT_BATCH_MAX_WAIT_MS": "2",
        "BRUSHPRINT_RATE_LIMIT_PER_MINUTE": "0",  # the proxy holds the limit in these tests
        **env,
    }
    servers = [
        Server(model_dir, data_dir, ADMIN_KEY, env=settings, log_path=logs / f"replica{i}.log") for i in range(n)
    ]
    errors: list[BaseException] = []

    def start(s: Server) -> None:
        try:
            s.start(timeout=120)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.kill()
        raise errors[0]
    return servers


class Proxy:
    """HAProxy with the repo's config; the backend file lists the replicas at their loopback ports."""

    def __init__(
        self,
        work: Path,
        servers: list[Server],
        rate_limit_per_minute: int = 0,
        max_request_bytes: int = 100 * 1024 * 1024,
    ):
        self.work = work
        self.servers = servers
        self.limit = rate_limit_per_minute
        self.max_request_bytes = max_request_bytes
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work / f"haproxy-{uuid.uuid4().hex[:6]}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready: bool = True) -> Proxy:
        """Start; wait until it answers, and with `ready` until a replica behind it is ready."""
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            pytest.fail(HINT, pytrace=False)
        self.work.mkdir(parents=True, exist_ok=True)
        backend = self.work / f"replicas-{uuid.uuid4().hex[:6]}.cfg"
        lines = ["backend replicas"] + [f"    server replica{i} {HOST}:{s.port}" for i, s in enumerate(self.servers)]
        backend.write_text("\n".join(lines) + "\n")
        self.port = free_port()
        env = {
            **os.environ,
            "BRUSHPRINT_PROXY_BIND": f"{HOST}:{self.port}",
            "BRUSHPRINT_PROXY_DIR": str(PROXY_DIR),
            "BRUSHPRINT_RATE_LIMIT_PER_MINUTE": str(self.limit),
            "BRUSHPRINT_MAX_REQUEST_BYTES": str(self.max_request_bytes),
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        cmd = [haproxy, "-db", "-f", str(PROXY_DIR / "haproxy.cfg"), "-f", str(backend)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=self.url, timeout=2) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited {self.proc.returncode}: {self.log_path.read_text()}")
                try:
                    if c.get("/readyz").status_code == 200 or not ready:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"haproxy not answering: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
