"""Request and response bodies of the HTTP API (pydantic), with the descriptions the OpenAPI docs show.

Scorer and portfolio results (dataclasses) are read with `from_attributes`, so the routes only pick the schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.operating import STRICT_MAX_FPR
from service.storage.audit import AuditEntry
from service.storage.keys import Scope

T = TypeVar("T")

ARTIST_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # the gallery's rule, stated here for the docs


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    @field_validator("*")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # SQLite hands back times without a zone; everything is stored in UTC, so say so in the answer.
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# ---- errors -----------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. `unknown_artist`", examples=["unknown_artist"])
    message: str = Field(description="human-readable explanation; wording may change")


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---- scoring ----------------------------------------------------------------------------------------------
class RegionOut(_Out):
    row: int
    col: int
    box: list[int] = Field(
        description="[left, top, right, bottom] in pixels of the query as uploaded (orientation-corrected)"
    )
    score: float = Field(description="this region's vector scored like a whole image's against the same target")
    match: bool = Field(description="score >= the decision's threshold")


class EvidenceOut(_Out):
    grid: int = Field(description="n: the query was cut into n×n equal regions")
    width: int = Field(description="width of the query as uploaded (orientation-corrected) the boxes refer to")
    height: int
    threshold: float = Field(description="the decision's threshold, which each region's `match` used")
    target: str = Field(description="`portfolio` (verify: the artist's works) or `image_b` (compare)")
    method: Literal["crops", "regions"] = Field(
        description="how each region's vector was made: `crops`, pooled from the model's crops the decision already "
        "computed (each crop weighted by the area of its cell of the crop grid inside the region; at n = the crop "
        "grid each region is one crop); `regions`, the region cut out and embedded through the whole recipe as an "
        "upload (models whose crop grid has fewer than n rows or columns)"
    )
    crop_grid: list[int] = Field(
        description="[rows, columns] of the model's crop grid: maps up to the smaller of the two are `crops`"
    )
    regions: list[RegionOut] = Field(description="row-major, n×n entries")


class CalibrationOut(_Out):
    source: Literal["gallery", "model_card"] = Field(
        description="`gallery`: error rates from this deployment's own enrolled works (once it holds enough artists "
        "with 2 or more works and they are at least as many as the model card's); `model_card`: from the model's "
        "evaluation on real paintings"
    )
    genuine_pairs: int | None = Field(
        default=None,
        description="same-artist pairs (compare) or leave-one-out trials (verify) behind the table; for the card, "
        "the effective count (per cross-validation repeat). null: the card does not record it",
    )
    impostor_pairs: int | None = Field(
        default=None, description="different-artist pairs or trials behind the table (null: not recorded)"
    )
    confidence: float | None = Field(
        default=None,
        description="confidence of the `expected_*_upper` bounds (0.95); null when the table's counts are not "
        "recorded and so no bound can be given",
    )
    reason: str = Field(default="", description="why this source was used and not the other")
    model: str = Field(
        default="",
        description="the model whose scores the table holds (the card's model, or the model the gallery's works "
        "were scored with): always the reply's `model`",
    )


class PictureQualityOut(_Out):
    score: float | None = Field(
        description="this picture's quality in [0, 1] under the model's quality model: how much of the painting's "
        "own embedding survives the photograph (1: as the museum published it; null: the model measures no quality)"
    )
    width: int
    height: int
    jpeg_quality: int | None = Field(description="estimated from a JPEG's quantisation tables; null: not a JPEG")
    bits_per_pixel: float = Field(description="the upload's size over its pixels")
    sharpness: float = Field(description="1 − blur effect at the model's working resolution: 0 blurry … 1 sharp")
    noise: float = Field(description="estimated noise σ at the working resolution, in 8-bit levels")

    @classmethod
    def of(cls, p: Any) -> PictureQualityOut:
        m = p.measures
        return cls(
            score=p.score,
            width=m.width,
            height=m.height,
            jpeg_quality=m.jpeg_quality,
            bits_per_pixel=round(m.bits_per_pixel, 3),
            sharpness=round(m.sharpness, 3),
            noise=round(m.noise, 2),
        )


class QualityOut(_Out):
    score: float | None = Field(
        description="the quality the rates were chosen for: compare, the product of the two pictures' (one poor "
        "photo is enough to move a score); verify, the query's (the portfolio counts as published)"
    )
    band: float | None = Field(
        description="lower edge of the model card's quality band whose error rates this reply uses (null: the "
        "model has no bands and its rates describe pictures as the museum published them)"
    )
    floor: float | None = Field(
        description="below this quality the model's rates were never measured and the service answers 422 "
        "`image_quality_too_low`"
    )
    pictures: list[PictureQualityOut] = Field(description="what was measured of each upload, in request order")

    @classmethod
    def of(cls, q: Any) -> QualityOut:
        return cls(score=q.score, band=q.band, floor=q.floor, pictures=[PictureQualityOut.of(p) for p in q.pictures])


class PointOut(_Out):
    threshold: float | None = Field(description="the score this point sits at (null: unreachable)")
    expected_fpr: float | None = Field(description="false-positive rate measured at this threshold")
    expected_fnr: float | None = Field(description="false-negative rate measured at this threshold")
    expected_fpr_upper: float | None = Field(description="its one-sided 95 % upper bound (null: counts not recorded)")
    expected_fnr_upper: float | None = Field(description="its one-sided 95 % upper bound (null: counts not recorded)")
    rule: str = Field(description="how the point was chosen")
    reachable: bool = Field(default=True, description="false: the calibration's pairs cannot show this strictness")
    why: str = Field(default="", description="why it is unreachable")

    @classmethod
    def of(cls, op: Any, rule: str = "", why: str = "") -> PointOut:
        if op is None:
            return cls(
                threshold=None,
                expected_fpr=None,
                expected_fnr=None,
                expected_fpr_upper=None,
                expected_fnr_upper=None,
                rule=rule,
                reachable=False,
                why=why,
            )
        return cls(
            threshold=op.threshold,
            expected_fpr=op.fpr,
            expected_fnr=op.fnr,
            expected_fpr_upper=op.fpr_upper,
            expected_fnr_upper=op.fnr_upper,
            rule=op.rule,
        )


class PointsOut(_Out):
    strict: PointOut = Field(
        description='"consistent" from here: the strictness asked for, else at most 1 % false matches with 95 % '
        "confidence (`max_fpr<=0.01`); unreachable when the calibration's pairs cannot show it (then nothing is "
        "consistent)"
    )
    equal_error: PointOut = Field(description='"not consistent" below here: the calibration\'s equal-error point')

    @classmethod
    def of(cls, tw: Any) -> PointsOut:
        return cls(
            strict=PointOut.of(tw.strict, f"max_fpr<={STRICT_MAX_FPR:g}", tw.unreachable),
            equal_error=PointOut.of(tw.equal_error),
        )


class PresetOut(_Out):
    id: str = Field(description="the preset's name, e.g. `fpr1`")
    label: str = Field(description="the preset in words")
    field: Literal["max_fpr", "min_precision"] = Field(description="the request field it sets")
    value: float = Field(description="the value it sets the field to")
    reachable: bool = Field(description="false: the calibration's pairs cannot show it (a request would be 422)")
    point: PointOut | None = Field(description="the operating point it gives (null: unreachable)")
    why: str = Field(description="why it is unreachable (empty when reachable)")


class PresetsOut(_Out):
    route: Literal["compare", "verify"]
    portfolio_size: int | None = Field(description="verify: the works of the portfolio the presets are for")
    presets: list[PresetOut]
    points: PointsOut = Field(description="the default verdict's two points on the same table")
    calibration: CalibrationOut = Field(description="the table the presets were read on")

    @classmethod
    def of(cls, p: Any) -> PresetsOut:
        return cls(
            route=p.route,
            portfolio_size=p.portfolio_size,
            presets=[
                PresetOut(
                    id=x.id,
                    label=x.label,
                    field=x.field,
                    value=x.value,
                    reachable=x.point is not None,
                    point=None if x.point is None else PointOut.of(x.point),
                    why=x.why,
                )
                for x in p.presets
            ],
            points=PointsOut.of(p.points),
            calibration=p.calibration,
        )


class CopyOfOut(_Out):
    image: str = Field(description="which upload: `image_a`, `image_b` (compare) or `image` (verify)")
    artist_id: str
    artist_name: str
    work_id: str = Field(description="the enrolled work the upload shows")
    title: str | None = Field(description="its catalogue title")
    similarity: float = Field(description="cosine of the two pictures' reference vectors (1 for the same bytes)")
    identical: bool = Field(description="the very same bytes")


class DecisionOut(_Out):
    score: float = Field(description="same-artist score in [0, 1]; symmetric in the two images")
    verdict: Literal["consistent", "inconclusive", "not_consistent"] = Field(
        description="`consistent` only at or above the strict point, `not_consistent` below the equal-error point, "
        "`inconclusive` between (`points` holds both, with their rates)"
    )
    summary: str = Field(description="the verdict in plain words, for people")
    points: PointsOut = Field(description="the two operating points the verdict was read at")
    same_work_as: list[CopyOfOut] = Field(
        description="enrolled works an upload is a copy of: the same bytes, or the same painting photographed again "
        "(the model card's measured same-painting similarity). A known work re-submitted is no evidence about a new "
        "one: verify judges a copy of one of the portfolio's works against the others"
    )
    threshold: float | None = Field(
        description="the strict point's threshold: `match` is `score >= threshold`. With a strictness field it is "
        "the one asked for; without one, at most 1 % false matches (95 % confidence), so `match` means `verdict` "
        "is `consistent`; null when the calibration cannot show that (then `match` is false)"
    )
    match: bool
    expected_fpr: float | None = Field(
        description="false-positive rate measured at this threshold (see `calibration`); null without a threshold"
    )
    expected_fnr: float | None = Field(
        description="false-negative rate measured at this threshold (see `calibration`); null without a threshold"
    )
    expected_fpr_upper: float | None = Field(
        description="one-sided 95 % Clopper–Pearson upper bound of the false-positive rate, for the number of "
        "different-artist pairs behind the table: the rate this threshold is shown not to exceed. null: the "
        "table does not record its counts"
    )
    expected_fnr_upper: float | None = Field(
        description="the same bound for the false-negative rate, from the same-artist pairs (null: not recorded)"
    )
    rule: str = Field(
        description="how the threshold was chosen, e.g. `threshold=0.8`, `max_fpr<=0.01` (its upper bound ≤ 0.01) "
        "or an EER rule"
    )
    model: str = Field(description="id of the model that scored: name@version+hash of its files")
    calibration: CalibrationOut = Field(description="which calibration tables gave the threshold and the rates")
    quality: QualityOut | None = Field(
        None,
        description="the uploads' measured quality and which band of the model card's error rates it picked",
    )

    @field_validator("points", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        return PointsOut.of(value) if value is not None and not isinstance(value, PointsOut | dict) else value

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, value: Any) -> Any:
        # the scorer's QualityUsed holds contract.quality.Measures: flatten them into the reply's fields
        return QualityOut.of(value) if value is not None and not isinstance(value, QualityOut | dict) else value

    evidence: EvidenceOut | None = Field(
        None,
        exclude_if=lambda v: v is None,  # absent, not null, unless asked for: other answers are exactly as before
        description="only when the request had `evidence=n`: which regions of the query, each on its own, match "
        "the target. Regions that look like it to the model, not proof",
    )


class CatalogueOut(_Out):
    """A work's catalogue entry (null: not recorded)."""

    title: str | None = None
    date: str | None = Field(None, description="as catalogued, e.g. `c. 1665`")
    medium: str | None = None
    dimensions: str | None = None
    inventory_number: str | None = Field(None, description="inventory or accession number")
    photo_credit: str | None = None
    notes: str | None = None


class ReferenceScore(CatalogueOut):
    work_id: str
    score: float


class VerifyOut(DecisionOut):
    artist_id: str = Field(description="the claimed artist")
    artist_name: str = Field(description="the claimed artist's name")
    portfolio_size: int = Field(description="number of reference works of the claimed artist")
    top_references: list[ReferenceScore] = Field(description="the references that weighed most, best first")

    @classmethod
    def of(cls, verdict: Any) -> VerifyOut:
        """From the scorer's Verdict, whose `top_references` carry their works' catalogue entries."""
        base = DecisionOut.model_validate(verdict).model_dump()
        refs = [ReferenceScore(work_id=r.work_id, score=r.score, **r.catalogue) for r in verdict.top_references]
        return cls(
            **base,
            artist_id=verdict.artist_id,
            artist_name=verdict.artist_name,
            portfolio_size=verdict.portfolio_size,
            top_references=refs,
        )


class CandidateOut(_Out):
    artist_id: str
    name: str
    score: float = Field(description="portfolio score of the query against this artist, as /verify computes it")


class OpenSetOut(_Out):
    verdict: Literal["consistent", "inconclusive", "not_consistent"] = Field(
        description="is the painting by any enrolled artist? `consistent`: the top candidate's score reaches the "
        "strict point (at most 1 % of paintings by artists not enrolled score so high, 95 % confidence); "
        "`not_consistent`: below the equal-error point (likely none of them); `inconclusive` between, or when the "
        "gallery cannot calibrate it (too few artists with 2 or more works, or a picture below its quality)"
    )
    summary: str = Field(description="the same in plain words")
    score: float | None = Field(description="the top candidate's score (null: no candidate)")
    artist_id: str | None = Field(description="the top candidate")
    artist_name: str = ""
    points: PointsOut | None = Field(description="the two points the verdict was read at (null: none)")
    calibration: CalibrationOut = Field(description="the gallery's leave-one-out identify trials behind the points")

    @field_validator("points", mode="before")
    @classmethod
    def _points(cls, value: Any) -> Any:
        return PointsOut.of(value) if value is not None and not isinstance(value, PointsOut | dict) else value


class IdentifyOut(_Out):
    candidates: list[CandidateOut] = Field(description="candidate artists, best first")
    model: str
    open_set: OpenSetOut = Field(description="whether the painting belongs to any enrolled artist at all")
    same_work_as: list[CopyOfOut] = Field(description="enrolled works the upload is a copy of (left out of ranking)")
    quality: QualityOut | None = None

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, value: Any) -> Any:
        return QualityOut.of(value) if value is not None and not isinstance(value, QualityOut | dict) else value


# ---- artists and works ------------------------------------------------------------------------------------
class ArtistIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ARTIST_ID_PATTERN, description="your stable identifier for the artist")
    name: str = Field(min_length=1, max_length=256)
    meta: dict[str, Any] | None = Field(None, description="free-form JSON kept with the artist")


class ArtistPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=256, description="the new name")
    meta: dict[str, Any] | None = Field(None, description="replaces the artist's meta")


class WorkPatch(BaseModel):
    """The catalogue fields to change (left out: unchanged; null or empty: cleared)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    date: str | None = None
    medium: str | None = None
    dimensions: str | None = None
    inventory_number: str | None = None
    photo_credit: str | None = None
    notes: str | None = None


class ArtistOut(_Out):
    id: str
    name: str
    meta: dict[str, Any] = Field(default_factory=dict)
    created: datetime | None = None
    works: int | None = Field(None, description="number of reference works")


class WorkOut(CatalogueOut):
    id: str
    artist_id: str
    sha256: str = Field(description="sha256 of the uploaded bytes")
    filename: str = ""
    size_bytes: int | None = None
    created: datetime | None = None


class WorksOut(BaseModel):
    works: list[WorkOut]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="items matching, over all pages")
    offset: int
    limit: int


# ---- keys and audit ---------------------------------------------------------------------------------------
class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.@-]+$")
    scope: Literal["verify", "admin"] = Field(
        description="`verify`: compare/verify/identify; `admin`: everything in the collection"
    )


class KeyOut(_Out):
    id: int
    name: str
    scope: Scope
    collection: str | None = Field(default=None, description="the collection the key acts in (null: an operator key)")
    prefix: str = Field(description="first characters of the key, to tell keys apart; not a secret")
    created_at: datetime
    revoked_at: datetime | None = None
    active: bool


class MeOut(_Out):
    name: str
    scope: Scope
    prefix: str = Field(description="first characters of the key; not a secret")
    collection: str | None = Field(description="the collection the key acts in (null: an operator key)")
    collection_name: str | None = Field(description="that collection's name (null: an operator key)")


class KeyCreated(KeyOut):
    key: str = Field(description="the API key: shown this once, store it now (the service keeps only a hash)")


# ---- collections (operator scope) ---------------------------------------------------------------------------
COLLECTION_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # the store's rule (service/storage/collections.py)


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=COLLECTION_ID_PATTERN, description="lower-case letters, digits, `_`, `.`, `-`")
    name: str | None = Field(default=None, min_length=1, max_length=256, description="default: the id")
    max_works: int | None = Field(default=None, ge=0, le=2**62, description="quota: works (null: no limit)")
    max_bytes: int | None = Field(
        default=None, ge=0, le=2**62, description="quota: bytes of originals (null: no limit)"
    )
    admin_key_name: str = Field(
        default="admin", min_length=1, max_length=64, pattern=r"^[\w.@-]+$", description="the first key's name"
    )


class CollectionOut(_Out):
    id: str
    name: str
    max_works: int | None = Field(description="quota of works (null: no limit)")
    max_bytes: int | None = Field(description="quota of bytes of originals (null: no limit)")
    created: datetime
    artists: int
    works: int
    bytes: int = Field(description="bytes of the collection's originals")
    keys: int = Field(description="active keys")


class CollectionCreated(BaseModel):
    collection: CollectionOut
    key: KeyCreated = Field(description="the collection's first key (scope admin): shown this once")


class CollectionKeyIn(KeyIn):
    pass


# the decision log's entries as declared (service/storage/schema.py), fields and all
AuditOut = AuditEntry


# ---- health -----------------------------------------------------------------------------------------------
class HealthOut(BaseModel):
    status: str = "ok"


class ReadyOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    ready: bool
    checks: dict[str, Any] = Field(default_factory=dict)


# ---- documented error responses ---------------------------------------------------------------------------
_ERROR_DOCS = {
    400: "`malformed_body` (unparseable multipart) or `conflicting_strictness` (more than one of threshold, "
    "max_fpr, min_precision)",
    401: "`missing_api_key` or `invalid_api_key` (unknown or revoked)",
    403: "`insufficient_scope`: the key's scope does not allow this route",
    404: "`unknown_artist`, `unknown_work`, `unknown_key` or `unknown_collection`: not in the key's collection (an id "
    "of another collection answers exactly as one that does not exist)",
    409: "`artist_exists`, `duplicate_work` (the same bytes already enrolled in the collection), `same_painting` (the "
    "same painting photographed again), `key_name_taken`, `collection_exists`, `quota_exceeded` (the "
    "collection's quota of works or bytes), `empty_portfolio` (verify against an artist without "
    "works) or `reindex_required` (works lack embeddings of the served model)",
    413: "`request_too_large`, `image_too_large`, `image_too_many_pixels` or `too_many_files`",
    415: "`unsupported_format` or `animated_image`",
    422: "`invalid_request` (the message names the field), `empty_image`, `corrupt_image`, `image_too_small`, "
    "`no_files`, `extreme_aspect_ratio`, `invalid_k`, `invalid_pagination`, `invalid_threshold`, "
    "`invalid_operating_point`, `operating_point_unreachable`, `invalid_evidence`, `invalid_max_side`, "
    "`invalid_artist_id`, `invalid_name`, `invalid_meta`, `invalid_collection_id`, `invalid_quota`, "
    "`invalid_catalogue` (a catalogue entry too long or not plain text, naming the field), "
    "`image_quality_too_low` (below the quality the model's rates were measured at)",
    429: "`rate_limited`: retry after the `Retry-After` header's seconds",
    503: "`overloaded` (retry after `Retry-After`), `not_ready`, `model_switching` (an enrolment while the "
    "deployment switches models; retry after `Retry-After`) or `export_busy` (another archive is being written; "
    "retry after `Retry-After`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these statuses, all with the `{"error": {...}}` body."""
    return {s: {"model": ErrorBody, "description": _ERROR_DOCS[s]} for s in statuses}
