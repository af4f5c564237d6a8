"""service/config.py: environment variables, defaults and validators."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import BATCH_CROPS_CPU, BATCH_CROPS_CUDA, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BRUSHPRINT_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.model_dir == Path("models/default") and s.data_dir == Path("data")
    assert s.database_url == "sqlite:///data/brushprint.db"
    assert s.admin_key is None and s.providers == "auto" and s.log_level == "INFO"
    assert s.max_request_bytes >= s.max_upload_bytes


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRUSHPRINT_MODEL_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("BRUSHPRINT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("BRUSHPRINT_PORT", "9001")
    monkeypatch.setenv("BRUSHPRINT_ALLOWED_FORMATS", "jpeg, png")
    monkeypatch.setenv("BRUSHPRINT_PROVIDERS", "CPU")
    monkeypatch.setenv("BRUSHPRINT_LOG_LEVEL", "debug")
    monkeypatch.setenv("BRUSHPRINT_ADMIN_KEY", "a-very-long-admin-key")
    monkeypatch.setenv("BRUSHPRINT_RATE_LIMIT_PER_MINUTE", "30")
    s = Settings()
    assert s.model_dir == tmp_path / "m" and s.port == 9001
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'brushprint.db'}"
    assert s.allowed_formats == ["JPEG", "PNG"] and s.providers == "cpu" and s.log_level == "DEBUG"
    assert s.rate_limit_per_minute == 30
    assert s.admin_key is not None and s.admin_key.get_secret_value() == "a-very-long-admin-key"
    assert "a-very-long-admin-key" not in repr(s) and "a-very-long-admin-key" not in str(s.model_dump())


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRUSHPRINT_PORT", "9001")
    monkeypatch.setenv("BRUSHPRINT_DATABASE_URL", "postgresql+psycopg://u@db/brushprint")
    s = Settings(port=9002)
    assert s.port == 9002 and s.database_url == "postgresql+psycopg://u@db/brushprint"


def test_engine_reads_the_names_it_expects() -> None:
    # the engine is built from these fields (its only source of defaults); each must have a value
    s = Settings()
    for name in (
        "model_dir",
        "data_dir",
        "database_url",
        "max_upload_bytes",
        "max_pixels",
        "allowed_formats",
        "batch_max_size",
        "batch_max_wait_ms",
        "max_queue",
        "providers",
        "identify_shortlist",
    ):
        assert name in Settings.model_fields and getattr(s, name) is not None, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 70000},
        {"max_upload_bytes": 0},
        {"max_upload_bytes": 10_000, "max_request_bytes": 5_000},
        {"max_pixels": -1},
        {"batch_max_size": -1},
        {"batch_max_size": 2000},
        {"intra_op_threads": -1},
        {"intra_op_threads": 1.5},
        {"graph_optimization": "fast"},
        {"graph_optimization": ""},
        {"cpu_mem_arena": "maybe"},
        {"batch_max_wait_ms": -1},
        {"max_queue": 0},
        {"rate_limit_per_minute": -1},
        {"rate_limit_burst": 0},
        {"admin_key": "short"},
        {"allowed_formats": "jpeg,exe"},
        {"allowed_formats": ""},
        {"providers": "tpu"},
        {"log_level": "LOUD"},
    ],
)
def test_validators_refuse(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_session_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.intra_op_threads, s.graph_optimization) == (0, "all")  # 0: onnxruntime's own thread count
    monkeypatch.setenv("BRUSHPRINT_INTRA_OP_THREADS", "2")
    monkeypatch.setenv("BRUSHPRINT_GRAPH_OPTIMIZATION", "Basic")
    monkeypatch.setenv("BRUSHPRINT_CPU_MEM_ARENA", "false")
    s = Settings()
    assert (s.intra_op_threads, s.graph_optimization, s.cpu_mem_arena) == (2, "basic", False)
    monkeypatch.setenv("BRUSHPRINT_CPU_MEM_ARENA", "true")
    assert Settings().cpu_mem_arena is True


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("BRUSHPRINT_GRAPH_OPTIMIZATION", "fastest", "'all', 'extended', 'basic' or 'disabled'"),
        ("BRUSHPRINT_INTRA_OP_THREADS", "-2", "greater than or equal to 0"),
        ("BRUSHPRINT_INTRA_OP_THREADS", "two", "valid integer"),
        ("BRUSHPRINT_CPU_MEM_ARENA", "sometimes", "valid boolean"),
        ("BRUSHPRINT_BATCH_MAX_SIZE", "-16", "greater than or equal to 0"),
    ],
)
def test_session_settings_refused_by_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    # an operator's typo stops the service at start, naming the setting and what it takes
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert name.removeprefix("BRUSHPRINT_").lower() in message and says in message


def test_batch_max_size_follows_the_provider_when_unset() -> None:
    s = Settings()
    assert s.batch_max_size == 0  # unset: settled once the provider the model runs on is known
    cpu = s.for_providers(["CPUExecutionProvider"])
    cuda = s.for_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (cpu.batch_max_size, cuda.batch_max_size) == (BATCH_CROPS_CPU, BATCH_CROPS_CUDA) == (16, 16)
    assert s.batch_max_size == 0  # a copy: the settings given are not changed
    assert cpu.max_queue == s.max_queue and cpu.data_dir == s.data_dir
    # set by the operator: kept on either provider
    assert Settings(batch_max_size=48).for_providers(["CUDAExecutionProvider"]).batch_max_size == 48
    assert Settings(batch_max_size=48).for_providers(["CPUExecutionProvider"]).batch_max_size == 48
