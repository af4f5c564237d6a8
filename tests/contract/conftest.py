"""The contract's tests share the service tests' model (the shipped one, else the dev model) and pictures."""

from tests.service.conftest import model, model_dir  # noqa: F401  (fixtures)
