"""The real server as a child process on loopback: `python -m service --host 127.0.0.1 --port <free port>`.

Used by the crash-durability test (which must SIGKILL a real process, not an in-process app), by
`bench/load.py`, and, set up for benchmarks, as `bench.common.Server`. Configuration goes through the same
`BRUSHPRINT_*` environment an operator would use.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc (Linux); 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ServerError(RuntimeError):
    pass


class Server:
    """One `python -m service` process. Use as a context manager; `kill()` is a SIGKILL, `stop()` a SIGTERM."""

    def __init__(
        self,
        model_dir: Path,
        data_dir: Path,
        admin_key: str,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.data_dir = Path(data_dir)
        self.admin_key = admin_key
        self.extra_env = dict(env or {})
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # the caller's own BRUSHPRINT_* settings must not leak into a test server
        env = {k: v for k, v in env.items() if not k.startswith("BRUSHPRINT_")}
        env.update(
            {
                "BRUSHPRINT_MODEL_DIR": str(self.model_dir),
                "BRUSHPRINT_DATA_DIR": str(self.data_dir),
                "BRUSHPRINT_ADMIN_KEY": self.admin_key,
                "BRUSHPRINT_LOG_LEVEL": "INFO",
                "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0, port: int | None = None) -> Server:
        """Start on `port` (a restart behind a proxy keeps its address), else on a free one."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it ends
        log.write(f"\n===== start {self.starts + 1} on port {self.port}\n".encode())
        log.flush()
        cmd = [sys.executable, "-m", "service", "--host", HOST, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        self.kill()
        raise ServerError(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no chance to finish a transaction."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        return rss_bytes(self.pid) if self.alive() else 0

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.admin_key}

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
