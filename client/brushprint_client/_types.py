"""What the API answers, as frozen dataclasses. Fields the client does not know yet (a newer server) are kept in
`extra`, so nothing an answer says is lost."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def _build(cls: type[T], data: dict[str, Any], **nested: Any) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names}
    known.update(nested)
    if "extra" in names:
        known["extra"] = {k: v for k, v in data.items() if k not in names}
    return cls(**known)


@dataclass(frozen=True)
class Region:
    row: int
    col: int
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels of the decoded, oriented query
    score: float
    match: bool


@dataclass(frozen=True)
class Evidence:
    grid: int
    width: int
    height: int
    threshold: float
    target: str  # "portfolio" (verify) or "image_b" (compare)
    regions: list[Region]

    @classmethod
    def of(cls, data: dict[str, Any]) -> Evidence:
        regions = [_build(Region, {**r, "box": tuple(r["box"])}) for r in data.get("regions", [])]
        return _build(cls, data, regions=regions)


@dataclass(frozen=True)
class Decision:
    score: float
    threshold: float
    match: bool
    expected_fpr: float
    expected_fnr: float
    rule: str
    model: str
    # one-sided 95 % upper bounds of the expected rates (None: the server's table does not record its counts)
    expected_fpr_upper: float | None = None
    expected_fnr_upper: float | None = None
    evidence: Evidence | None = None
    # where the expected rates came from: source, genuine_pairs, impostor_pairs, confidence, reason
    calibration: dict[str, Any] | None = None
    # the uploads' measured quality: score (the pair's, or the query's), band (whose rates were used), floor, and
    # per picture score, width, height, jpeg_quality, bits_per_pixel, sharpness, noise
    quality: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Decision:
        return _build(cls, data, **_decision_parts(data))


def _decision_parts(data: dict[str, Any]) -> dict[str, Any]:
    ev = data.get("evidence")
    return {"evidence": Evidence.of(ev) if isinstance(ev, dict) else None}


@dataclass(frozen=True)
class ReferenceScore:
    work_id: str
    score: float


@dataclass(frozen=True)
class Verdict(Decision):
    portfolio_size: int = 0
    top_references: list[ReferenceScore] = field(default_factory=list)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Verdict:
        refs = [_build(ReferenceScore, r) for r in data.get("top_references", [])]
        return _build(cls, data, top_references=refs, **_decision_parts(data))


@dataclass(frozen=True)
class Candidate:
    artist_id: str
    name: str
    score: float


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    model: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Identification:
        return _build(cls, data, candidates=[_build(Candidate, c) for c in data.get("candidates", [])])


@dataclass(frozen=True)
class Artist:
    id: str
    name: str
    meta: dict[str, Any] = field(default_factory=dict)
    created: str | None = None  # ISO 8601
    works: int | None = None


@dataclass(frozen=True)
class ArtistPage:
    items: list[Artist]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> ArtistPage:
        return _build(cls, data, items=[_build(Artist, a) for a in data.get("items", [])])


@dataclass(frozen=True)
class Work:
    id: str
    artist_id: str
    sha256: str
    filename: str = ""
    size_bytes: int | None = None
    created: str | None = None


@dataclass(frozen=True)
class Key:
    id: int
    name: str
    scope: str
    prefix: str
    created_at: str
    active: bool
    revoked_at: str | None = None
    collection: str | None = None  # the collection the key acts in (None: an operator key)


@dataclass(frozen=True)
class Me:
    """The calling key: its name, scope and prefix, and the collection it acts in (None: an operator key)."""

    name: str
    scope: str
    prefix: str
    collection: str | None = None
    collection_name: str | None = None


@dataclass(frozen=True)
class CreatedKey(Key):
    key: str = ""  # shown once: store it now


@dataclass(frozen=True)
class Collection:
    """A collection as an operator key sees it: its quota and what it holds, never what is in it."""

    id: str
    name: str
    created: str
    max_works: int | None = None
    max_bytes: int | None = None
    artists: int = 0
    works: int = 0
    bytes: int = 0
    keys: int = 0


@dataclass(frozen=True)
class CreatedCollection:
    collection: Collection
    key: CreatedKey  # the collection's first admin key, shown once: store it now

    @classmethod
    def of(cls, data: dict[str, Any]) -> CreatedCollection:
        return cls(build(Collection, data["collection"]), build(CreatedKey, data["key"]))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: str
    key_name: str
    route: str
    decision: str
    model_id: str
    image_sha256: str
    artist_id: str | None = None
    image_b_sha256: str | None = None
    score: float | None = None
    threshold: float | None = None
    request_id: str | None = None
    collection_id: str | None = None


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> AuditPage:
        return _build(cls, data, items=[_build(AuditEntry, e) for e in data.get("items", [])])


def build(cls: type[T], data: dict[str, Any]) -> T:
    return _build(cls, data)
