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
    # "crops": pooled from the model's crops; "regions": each region embedded as an upload ("" from older servers)
    method: str = ""
    crop_grid: tuple[int, int] | None = None  # the model's crop grid, rows and columns

    @classmethod
    def of(cls, data: dict[str, Any]) -> Evidence:
        regions = [_build(Region, {**r, "box": tuple(r["box"])}) for r in data.get("regions", [])]
        grid = data.get("crop_grid")
        return _build(cls, data, regions=regions, crop_grid=tuple(grid) if isinstance(grid, list) else None)


@dataclass(frozen=True)
class Point:
    """One operating point of a verdict: its threshold and the rates measured there (None: unreachable, `why`)."""

    threshold: float | None
    expected_fpr: float | None
    expected_fnr: float | None
    rule: str
    expected_fpr_upper: float | None = None
    expected_fnr_upper: float | None = None
    reachable: bool = True
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Points:
    """The two points a three-way verdict is read at: "consistent" from `strict`, "not consistent" below
    `equal_error`, "inconclusive" between."""

    strict: Point
    equal_error: Point

    @classmethod
    def of(cls, data: dict[str, Any]) -> Points:
        return cls(_build(Point, data["strict"]), _build(Point, data["equal_error"]))


@dataclass(frozen=True)
class CopyOf:
    """An enrolled work an upload is a copy of: the same bytes (`identical`), or the same painting photographed
    again (`similarity` at or above the model's measured same-painting threshold)."""

    image: str  # which upload: "image_a", "image_b" (compare) or "image"
    artist_id: str
    artist_name: str
    work_id: str
    similarity: float
    identical: bool
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT = "consistent", "inconclusive", "not_consistent"


@dataclass(frozen=True)
class Decision:
    score: float
    # the strict point's threshold (`match` is score >= threshold): the strictness asked for, else at most 1 % false
    # matches with 95 % confidence; None (and `match` False) when the calibration cannot show that
    threshold: float | None
    match: bool
    expected_fpr: float | None
    expected_fnr: float | None
    rule: str
    model: str
    # "consistent", "inconclusive" or "not_consistent", and the same in plain words for people
    verdict: str = INCONCLUSIVE
    summary: str = ""
    points: Points | None = None
    same_work_as: list[CopyOf] = field(default_factory=list)
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

    @property
    def consistent(self) -> bool:
        """True only for the verdict "consistent" (at or above the strict point)."""
        return self.verdict == CONSISTENT


def _copies(data: dict[str, Any]) -> list[CopyOf]:
    return [_build(CopyOf, c) for c in data.get("same_work_as") or []]


def _decision_parts(data: dict[str, Any]) -> dict[str, Any]:
    ev, points = data.get("evidence"), data.get("points")
    return {
        "evidence": Evidence.of(ev) if isinstance(ev, dict) else None,
        "points": Points.of(points) if isinstance(points, dict) else None,
        "same_work_as": _copies(data),
    }


@dataclass(frozen=True, kw_only=True)
class Catalogue:
    """A work's catalogue entry (None: not recorded)."""

    title: str | None = None
    date: str | None = None  # as catalogued, e.g. "c. 1665"
    medium: str | None = None
    dimensions: str | None = None
    inventory_number: str | None = None  # inventory or accession number
    photo_credit: str | None = None
    notes: str | None = None


CATALOGUE_FIELDS = tuple(f.name for f in fields(Catalogue))


@dataclass(frozen=True)
class ReferenceScore(Catalogue):
    work_id: str
    score: float


@dataclass(frozen=True)
class Verdict(Decision):
    artist_id: str = ""
    artist_name: str = ""
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
class OpenSet:
    """Does the painting belong to any enrolled artist at all? A three-way verdict on the top candidate's score,
    calibrated on the gallery's own leave-one-out identify trials (`points` None: no table to read it on)."""

    verdict: str
    summary: str
    score: float | None
    artist_id: str | None
    artist_name: str = ""
    points: Points | None = None
    calibration: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> OpenSet:
        points = data.get("points")
        return _build(cls, data, points=Points.of(points) if isinstance(points, dict) else None)


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    model: str
    open_set: OpenSet | None = None
    same_work_as: list[CopyOf] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Identification:
        open_set = data.get("open_set")
        return _build(
            cls,
            data,
            candidates=[_build(Candidate, c) for c in data.get("candidates", [])],
            open_set=OpenSet.of(open_set) if isinstance(open_set, dict) else None,
            same_work_as=_copies(data),
        )


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
class Work(Catalogue):
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
    verdict: str | None = None  # the three-way verdict (identify: the open-set one)
    artist_name: str | None = None  # as named when the answer was given
    work_id: str | None = None  # verify: the reference that weighed most
    work_title: str | None = None
    same_work_as: str | None = None  # the enrolled work the upload was a copy of
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


@dataclass(frozen=True)
class Preset:
    """A strictness preset and whether the calibration can show it (`point` None: it cannot, `why`)."""

    id: str
    label: str
    field: str  # "max_fpr" or "min_precision": the argument to pass with `value`
    value: float
    reachable: bool
    point: Point | None = None
    why: str = ""


@dataclass(frozen=True)
class Presets:
    """The strictness presets for compare, or for verify against one portfolio, on today's calibration."""

    route: str
    presets: list[Preset]
    points: Points
    calibration: dict[str, Any]
    portfolio_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Presets:
        presets = [
            _build(Preset, p, point=_build(Point, p["point"]) if isinstance(p.get("point"), dict) else None)
            for p in data.get("presets", [])
        ]
        return _build(cls, data, presets=presets, points=Points.of(data["points"]))

    @property
    def reachable(self) -> list[Preset]:
        return [p for p in self.presets if p.reachable]


def build(cls: type[T], data: dict[str, Any]) -> T:
    return _build(cls, data)
