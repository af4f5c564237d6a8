"""service/config.py: environment variables, defaults and validators."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings


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
        {"batch_max_size": 0},
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
