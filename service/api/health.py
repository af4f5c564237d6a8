"""Operations endpoints, no key needed: /healthz (alive), /readyz (can answer), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.schemas import HealthOut, ReadyOut, error_responses
from service.errors import Unavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process answers")
async def healthz() -> HealthOut:
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: model loaded, store reachable, no reindex pending",
    description="503 `not_ready` while the model is not loaded, the database is unreachable, or enrolled works "
    "lack embeddings of the current model (run `python -m service reindex`; no restart needed).",
    responses=error_responses(503),
)
def readyz(request: Request) -> ReadyOut:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise Unavailable("not_ready", "the model is not loaded")
    checks: dict[str, Any] = runtime.ready()
    if not checks.get("store"):
        raise Unavailable("not_ready", "the database is unreachable")
    if checks.get("reindex_required"):
        raise Unavailable(
            "not_ready",
            f"{checks.get('works_missing_embedding')} works lack embeddings of {checks.get('model')}: "
            "run `python -m service reindex` (the service follows it without a restart)",
        )
    return ReadyOut(ready=True, checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
