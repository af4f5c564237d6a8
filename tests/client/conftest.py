"""The client tests reuse the service tests' session model (the shipped model when present, else the dev model)."""

from tests.service.conftest import model_dir  # noqa: F401
