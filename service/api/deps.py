"""Typed dependencies the routers share: the caller's key (with scope and rate limits checked), the collection it
belongs to, the scorer and the portfolios of that collection (service/serving/), strictness form fields, capped
upload reading, and the decision log's record of a decision.

A route never names a collection: it gets the key's (`CallerCollection`), and with it a scorer and portfolios
that reach nothing else, so no id, count, thumbnail, ranking or calibration of another collection can answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query, Request, Security, UploadFile
from fastapi.security import APIKeyHeader

from contract.decode import megabytes
from service.api.fields import INTEGER, NUMBER
from service.api.ratelimit import RateLimiter
from service.errors import Forbidden, TooLarge
from service.serving.evidence import MAX_GRID, MIN_GRID
from service.serving.portfolios import Portfolios
from service.serving.scorer import Decision, Scorer
from service.serving.strictness import Strictness
from service.storage.audit import AuditLog, AuditRecord
from service.storage.keys import KeyInfo, KeyStore, Scope, scope_allows

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,  # we answer 401 in our own error format instead of FastAPI's 403
    scheme_name="ApiKey",
    description="API key issued by `python -m service keys create`, `POST /v1/keys` or `POST /v1/collections`. "
    "Scope `verify`: compare, verify, identify; `admin`: everything in the key's collection; `operator`: "
    "collections (`/v1/collections`), nothing inside any.",
)


def authenticated(request: Request, presented: Annotated[str | None, Security(api_key_header)] = None) -> KeyInfo:
    """The caller's key, before any scope check (FastAPI resolves it once per request)."""
    # Plain `def`: FastAPI runs it in the thread pool, so a key lookup here never blocks the event loop.
    # ApiKeyGate (service.api.middleware) has already authenticated every /v1 request before its body was read;
    # the lookup here is the fallback for an app assembled without it.
    key = getattr(request.state, "api_key", None)
    if not isinstance(key, KeyInfo):
        key = request.app.state.keys.authenticate(presented)
    request.state.key_name = key.name  # for the access log: the key's name, never the key
    return key


Caller = Annotated[KeyInfo, Depends(authenticated)]


def caller_collection(request: Request, key: Caller) -> str:
    """The collection the caller acts in: its key's. An operator key acts in none. This process first drops what
    it holds of an older collection of the same id (`Runtime.follow_collection`)."""
    if key.collection is None:
        raise Forbidden("insufficient_scope", "an operator key manages collections and acts inside none")
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.follow_collection(key.collection, key.collection_created)
    return key.collection


CallerCollection = Annotated[str, Depends(caller_collection)]


def get_scorer(request: Request, collection: CallerCollection) -> Scorer:
    return request.app.state.runtime.scorer_for(collection)


def get_portfolios(request: Request, collection: CallerCollection) -> Portfolios:
    return request.app.state.runtime.portfolios_for(collection)


def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys


def get_audit(request: Request) -> AuditLog:
    return request.app.state.audit


ScorerDep = Annotated[Scorer, Depends(get_scorer)]
PortfoliosDep = Annotated[Portfolios, Depends(get_portfolios)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]


def _allowed(request: Request, key: KeyInfo, need: Scope | None) -> KeyInfo:
    if need is not None and not scope_allows(key.scope, need):
        raise Forbidden("insufficient_scope", f"this route needs scope {need.value!r}; the key has {key.scope.value!r}")
    state = request.app.state
    limiter: RateLimiter = state.limiter
    limiter.check(key.id)
    if key.collection is not None:  # and the collection's own budget, shared by all of its keys
        collection_limiter: RateLimiter = state.collection_limiter
        collection_limiter.check(key.collection)
    return key


def require_verify(request: Request, key: Caller) -> KeyInfo:
    return _allowed(request, key, Scope.verify)


def require_admin(request: Request, key: Caller) -> KeyInfo:
    return _allowed(request, key, Scope.admin)


def require_operator(request: Request, key: Caller) -> KeyInfo:
    return _allowed(request, key, Scope.operator)


def require_any(request: Request, key: Caller) -> KeyInfo:
    """Any active key, of any scope (rate limits still apply)."""
    return _allowed(request, key, None)


AnyKey = Annotated[KeyInfo, Depends(require_any)]
VerifyKey = Annotated[KeyInfo, Depends(require_verify)]
AdminKey = Annotated[KeyInfo, Depends(require_admin)]
OperatorKey = Annotated[KeyInfo, Depends(require_operator)]

_UNIT = "a number from 0 to 1"


def strictness_form(
    threshold: Annotated[
        float | None,
        Form(ge=0.0, le=1.0, description=f"decision threshold, {_UNIT}: match when score ≥ threshold"),
        NUMBER,
    ] = None,
    max_fpr: Annotated[
        float | None,
        Form(
            ge=0.0,  # 0 itself is refused by `Strictness`, as the rest of the range, with a hint
            le=0.5,
            description="largest acceptable false-positive rate, a fraction above 0 and at most 0.5 (0.01 means 1 %): "
            "the threshold chosen is the lowest whose 95 % upper bound is at most this (422 "
            "`operating_point_unreachable` when the calibration pairs cannot show so low a rate). Without any "
            "strictness field the verdict's strict point is max_fpr 0.01",
        ),
        NUMBER,
    ] = None,
    min_precision: Annotated[
        float | None,
        Form(
            ge=0.0,
            le=1.0,
            description="smallest acceptable precision, a fraction above 0 and below 1 (0.99 means 99 %): the lowest "
            "threshold whose 95 % lower bound of precision is at least this",
        ),
        NUMBER,
    ] = None,
) -> Strictness:
    """At most one of the three (their ranges are checked by `Strictness`, with a hint); none means the verdict's
    default strict point (see the API description)."""
    return Strictness(threshold=threshold, max_fpr=max_fpr, min_precision=min_precision)


StrictnessDep = Annotated[Strictness, Depends(strictness_form)]

EvidenceGrid = Annotated[
    int | None,
    Form(
        ge=MIN_GRID,
        le=MAX_GRID,
        description=f"ask for an evidence map: the query cut into n×n regions (n from {MIN_GRID} to {MAX_GRID}), "
        "each scored on its own against the same target; pooled from the crops the decision already computed, no "
        "extra backbone work — except for a model whose crop grid has fewer than n rows or columns, where each "
        "region is embedded like an upload (n² extra embeddings, submitted to the backbone together)",
    ),
    INTEGER,
]


_EACH = "; with several images, give it once per image in their order (empty for none)"


def catalogue_form(
    title: Annotated[list[str] | None, Form(description=f"the work's title{_EACH}")] = None,
    date: Annotated[list[str] | None, Form(description=f"its date as catalogued, e.g. `c. 1665`{_EACH}")] = None,
    medium: Annotated[list[str] | None, Form(description=f"e.g. `oil on canvas`{_EACH}")] = None,
    dimensions: Annotated[list[str] | None, Form(description=f"e.g. `44.5 × 39 cm`{_EACH}")] = None,
    inventory_number: Annotated[list[str] | None, Form(description=f"inventory or accession number{_EACH}")] = None,
    photo_credit: Annotated[list[str] | None, Form(description=f"who made the photograph{_EACH}")] = None,
    notes: Annotated[list[str] | None, Form(description=f"free notes{_EACH}")] = None,
) -> dict[str, list[str] | None]:
    """Enrolment's catalogue fields as given (service/serving/catalogue.py `per_work` pairs them with images)."""
    return dict(
        title=title,
        date=date,
        medium=medium,
        dimensions=dimensions,
        inventory_number=inventory_number,
        photo_credit=photo_credit,
        notes=notes,
    )


CatalogueForm = Annotated[dict[str, list[str] | None], Depends(catalogue_form)]


Offset = Annotated[int, Query(ge=0, le=2**62, description="how many items to skip"), INTEGER]


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, reading at most limit + 1 so an oversized file costs no more than the limit."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(
            "image_too_large", f"{file.filename or 'the upload'} is over the limit of {megabytes(limit)} per image"
        )
    return data


def upload_limit(request: Request) -> int:
    return request.app.state.settings.max_upload_bytes


UploadLimit = Annotated[int, Depends(upload_limit)]


def decided(
    decision: Decision, key: KeyInfo, route: str, request_id: str | None, artist_id: str | None = None
) -> AuditRecord:
    """A compare/verify decision as the decision log records it (`decision.images`: the uploads' sha256), with the
    names and titles it showed: the artist's, and verify's reference that weighed most."""
    assert key.collection is not None  # a scoring route's key (the scorer dependency refused an operator's)
    top = getattr(decision, "top_references", None) or [None]
    return AuditRecord(
        collection_id=key.collection,
        key_name=key.name,
        route=route,
        artist_id=artist_id,
        image_sha256=decision.images[0],
        image_b_sha256=decision.images[1] if len(decision.images) > 1 else None,
        score=decision.score,
        threshold=decision.threshold,
        decision="match" if decision.match else "no_match",
        model_id=decision.model,
        request_id=request_id,
        verdict=decision.verdict,
        artist_name=getattr(decision, "artist_name", None) or None,
        work_id=top[0].work_id if top[0] is not None else None,
        work_title=top[0].catalogue.get("title") if top[0] is not None else None,
        same_work_as=decision.same_work_as[0].work_id if decision.same_work_as else None,
    )


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


RequestId = Annotated[str | None, Depends(request_id)]
