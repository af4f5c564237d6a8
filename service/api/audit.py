"""GET /v1/audit: the decision log (admin scope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from service.api.deps import AdminKey, AuditDep, Offset
from service.api.fields import INTEGER
from service.api.middleware import API_PREFIX
from service.api.schemas import AuditOut, Page, error_responses

router = APIRouter(prefix=f"{API_PREFIX}/audit", tags=["audit"])


def _iso_only(value: object) -> object:
    # pydantic would also read a bare number as a Unix time; the documented format is ISO 8601 only
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("since must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z")
    return value


@router.get(
    "",
    response_model=Page[AuditOut],
    summary="Read the decision log",
    description="Every compare / verify / identify answer, newest first. Filter by `route` (compare, verify, "
    "identify), `key_name`, `artist_id` and `since` (ISO 8601 time).",
    responses=error_responses(401, 403, 422, 429),
)
def read_audit(
    _: AdminKey,
    audit: AuditDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000), INTEGER] = 100,
    route: Annotated[str | None, Query(max_length=64)] = None,
    key_name: Annotated[str | None, Query(max_length=64)] = None,
    artist_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        datetime | None, Query(description="ISO 8601 time, e.g. 2026-01-31T12:00:00Z"), BeforeValidator(_iso_only)
    ] = None,
) -> Page[AuditOut]:
    items, total = audit.query(
        offset=offset, limit=limit, route=route, key_name=key_name, artist_id=artist_id, since=since
    )
    return Page[AuditOut](items=items, total=total, offset=offset, limit=limit)
