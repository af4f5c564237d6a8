"""The client tests reuse the service tests' session model (the shipped model when present, else the dev model), and
test this checkout's client: client/ goes first on the path, ahead of any installed brushprint_client (an editable
install may point at another checkout)."""

import sys
from pathlib import Path

from tests.service.conftest import model_dir  # noqa: F401

CLIENT_DIR = str(Path(__file__).resolve().parents[2] / "client")
if sys.path[:1] != [CLIENT_DIR]:
    sys.path.insert(0, CLIENT_DIR)
    for name in [m for m in sys.modules if m == "brushprint_client" or m.startswith("brushprint_client.")]:
        del sys.modules[name]
