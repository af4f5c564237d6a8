"""service/api/errors.py answers every contract ImageError with the status its class stands for."""

from __future__ import annotations

import pytest

from contract.decode import ImageError, ImageTooLarge, InvalidImage, UnsupportedImage
from service.api.errors import STATUS, status_of


@pytest.mark.parametrize(
    ("kind", "status"), [(ImageTooLarge, 413), (UnsupportedImage, 415), (InvalidImage, 422)], ids=str
)
def test_every_code_of_a_class_gets_its_status(kind: type[ImageError], status: int) -> None:
    assert kind.codes
    for code in kind.codes:
        assert status_of(kind(code, "why")) == status
        assert status_of(kind(code, "why").about("file.png")) == status


def test_every_class_is_mapped() -> None:
    assert set(ImageError.__subclasses__()) & set(STATUS) == set(ImageError.__subclasses__())
