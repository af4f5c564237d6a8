"""What the server says when it starts: where the page and the API docs are, and — while no API key exists —
how to get the first one.

The service does not invent a key and print it: a key in a log would outlive the terminal it was shown in (log
files, journald, CI output). It names the one command that prints a new admin key once, or the environment
variable that makes one. Covered by tests/service/test_firstrun.py.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from service.config import Settings
from service.storage.keys import ANY_COLLECTION, KeyStore

log = logging.getLogger("service.startup")
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def base_url(settings: Settings) -> str:
    host = _WILDCARD.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _python() -> str:
    exe = Path(sys.executable)
    try:
        rel = os.path.relpath(exe)
    except ValueError:  # another drive (Windows)
        return str(exe)
    return rel if not rel.startswith("..") else str(exe)


def key_command(settings: Settings) -> str:
    """The command that prints a new admin key for this server's database."""
    cmd = f"{_python()} -m service"
    if settings.data_dir != Path("data"):
        cmd += f" --data-dir {settings.data_dir}"
    return cmd + " keys create --name admin --scope admin"


def startup_lines(settings: Settings, active_keys: int) -> list[str]:
    url = base_url(settings)
    lines = [f"brushprint is serving: the page at {url}/ , the API docs at {url}/docs"]
    if active_keys == 0:
        lines.append(
            "no API key exists yet, so nothing under /v1 (nor the page) can be used. Create the first admin key "
            f"(printed once, stored hashed) in another terminal: `{key_command(settings)}` — or restart with "
            "BRUSHPRINT_ADMIN_KEY set to a secret of at least 16 characters. Then paste the key into the page."
        )
    return lines


def announce(settings: Settings, keys: KeyStore) -> list[str]:
    """Log the startup lines (the server's JSON log on stderr, which `make run` shows)."""
    active = len(keys.list(ANY_COLLECTION, include_revoked=False))
    lines = startup_lines(settings, active)
    url = base_url(settings)
    log.info(lines[0], extra={"fields": {"page": f"{url}/", "docs": f"{url}/docs"}})
    for line in lines[1:]:
        log.warning(line, extra={"fields": {"first_run": True}})
    return lines
