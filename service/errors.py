"""Caller-caused failures as domain exceptions, raised by the code that knows; no HTTP here.

Every one carries a stable `code` and a `message` for the caller (codes are part of the public contract: the
README lists them), and `retry_after` (seconds) where waiting helps. The kind of failure is the class:
`BadRequest`, `Unauthorized`, `Forbidden`, `NotFound`, `Conflict`, `TooLarge`, `Invalid`, `RateLimited`,
`Unavailable`; failures raised from more than one place have a named subclass (`UnknownArtist`, `Overloaded`,
...). `service/api/errors.py` alone maps kinds to HTTP statuses and writes the error body.
Covered by tests/service/test_errors.py.
"""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, code: str, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class BadRequest(ServiceError):
    """The request is malformed or contradicts itself."""


class Unauthorized(ServiceError):
    """No valid credentials."""


class Forbidden(ServiceError):
    """Valid credentials that may not do this."""


class NotFound(ServiceError):
    """What the request names does not exist."""


class Conflict(ServiceError):
    """The request clashes with the current state (exists already, not ready for it)."""


class TooLarge(ServiceError):
    """More than a limit allows."""


class Invalid(ServiceError):
    """Well-formed, but a value is out of range or of the wrong kind."""


class RateLimited(ServiceError):
    """Too many requests for this caller; `retry_after` says when to come back."""


class Unavailable(ServiceError):
    """The service cannot answer now; `retry_after`, when set, says when to try again."""


class UnknownArtist(NotFound):
    def __init__(self, artist_id: str):
        super().__init__(code="unknown_artist", message=f"no artist with id {artist_id!r}")


class UnknownWork(NotFound):
    def __init__(self, artist_id: str, work_id: str):
        super().__init__(code="unknown_work", message=f"artist {artist_id!r} has no work {work_id!r}")


class DuplicateWork(Conflict):
    def __init__(self, message: str):
        super().__init__(code="duplicate_work", message=message)


class NoFiles(Invalid):
    def __init__(self) -> None:
        super().__init__(code="no_files", message="no image was uploaded")


class Overloaded(Unavailable):
    """Too much work queued or in flight: try again after `retry_after` seconds."""

    def __init__(self, message: str = "the service is busy", retry_after: float = 1.0):
        super().__init__(code="overloaded", message=message, retry_after=retry_after)


class ModelSwitching(Unavailable):
    """An enrolment on a replica that has not yet swapped to the model the deployment switched to
    (service/ops/upgrade.py): refused inside its transaction, so no work is stored without the new embedding."""

    def __init__(self, model_id: str):
        super().__init__(
            code="model_switching",
            message=f"the service is switching to model {model_id}; retry in a moment",
            retry_after=1.0,
        )


class UnknownCollection(NotFound):
    """Only an operator names collections; everyone else acts inside the one their key belongs to."""

    def __init__(self, collection_id: str):
        super().__init__(code="unknown_collection", message=f"no collection with id {collection_id!r}")


class QuotaExceeded(Conflict):
    """An enrolment that would take the collection past its quota of works or bytes (its own figures only)."""

    def __init__(self, message: str):
        super().__init__(code="quota_exceeded", message=message)
