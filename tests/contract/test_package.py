"""The contract package imports no framework: training and serving can both depend on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "tensorflow", "keras", "onnxruntime", "faiss", "service", "training")


def test_importing_the_contract_pulls_in_no_framework() -> None:
    code = (
        "import sys, contract.card, contract.decode, contract.recipe, contract.aggregation\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
