"""The delivery files say what issue 2 promises; Docker cannot build here, so these are read, not run."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_extras_never_mix_clashing_packages():
    extras = _pyproject()["project"]["optional-dependencies"]
    names = {k: {re.split(r"[<>=\[ ]", d)[0].lower() for d in v} for k, v in extras.items()}
    assert {"onnxruntime", "faiss-cpu"} <= names["cpu"]
    assert {"onnxruntime-gpu", "faiss-gpu"} <= names["gpu"]
    for other in set(names) - {"cpu", "gpu"}:
        assert not names[other] & {"onnxruntime", "onnxruntime-gpu", "faiss-cpu", "faiss-gpu"}, other
    base = {re.split(r"[<>=\[ ]", d)[0].lower() for d in _pyproject()["project"]["dependencies"]}
    assert not base & {"tensorflow", "keras", "tf2onnx"}, "serving must not pull TensorFlow"
    assert any(d.replace(" ", "").startswith("tf2onnx>=1.17") for d in extras["train"])


def test_dockerfile_targets_user_healthcheck_volume_and_make():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM .* AS gpu$", text, re.M) and re.search(r"^FROM .* AS cpu$", text, re.M)
    assert "cudnn" in text and "nvidia/cuda:13" in text
    assert text.count("USER brushprint") == 2
    assert text.count("HEALTHCHECK") == 2 and "/healthz" in text
    assert 'VOLUME ["/data"]' in text
    # one source of truth: the image installs through the Makefile target CI runs
    installs = re.findall(r"^RUN make (\S+)", text, re.M)
    assert installs and set(installs) == {"venv-serve"}
    assert "venv-serve:" in (ROOT / "Makefile").read_text()
    assert "check-serve-install" in (ROOT / ".ci" / "run").read_text()


def test_compose_gpu_reservation_volume_env_and_postgres_profile():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["brushprint"]
    device = svc["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert any(v.startswith("brushprint-data:/data") for v in svc["volumes"])
    assert "brushprint-data" in compose["volumes"]
    assert "BRUSHPRINT_ADMIN_KEY" in svc["environment"]
    assert compose["services"]["postgres"]["profiles"] == ["postgres"]


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert text.index("make run") < 2500
