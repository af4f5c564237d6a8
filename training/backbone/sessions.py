"""The one way training opens an ONNX file to run it: onnxruntime on the CPU, quiet. Used by the real-painting
build (training/realmodel.py), the robustness judge (training/evaluation/robustness.py) and the int8 quantiser
(training/backbone/quantize.py), so none of them imports another for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path | str, threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession of `path` on the CPUExecutionProvider (warnings only; `threads`: intra-op
    threads, None: onnxruntime's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
