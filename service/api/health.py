"""Operations endpoints, no key needed: /healthz (alive), /readyz (can answer), /metrics (Prometheus).

None of them gives a figure of the deployment's contents to an anonymous caller: the number of references and of
works lacking an embedding (the sum over every collection, from which one dealer could read the others' size)
are in /readyz only for a request with an operator key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.middleware import API_KEY_HEADER
from service.api.schemas import HealthOut, ReadyOut, error_responses
from service.errors import ServiceError, Unavailable
from service.storage.keys import Scope

router = APIRouter(tags=["operations"])

OPERATOR_FIGURES = ("references", "works_missing_embedding")


def _operator(request: Request) -> bool:
    presented = request.headers.get(API_KEY_HEADER)
    keys = getattr(request.app.state, "keys", None)
    if not presented or keys is None:
        return False
    try:
        return bool(keys.authenticate(presented).scope == Scope.operator)
    except ServiceError:
        return False


@router.get("/healthz", response_model=HealthOut, summary="Liveness: the process answers")
async def healthz() -> HealthOut:
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: model loaded, store reachable, no reindex pending",
    description="503 `not_ready` while the model is not loaded, the database is unreachable, or enrolled works "
    "lack embeddings of the current model (run `python -m service reindex`; no restart needed). With an operator "
    "key in `X-API-Key`, `checks` also counts the references and the works lacking an embedding.",
    responses=error_responses(503),
)
def readyz(request: Request) -> ReadyOut:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise Unavailable("not_ready", "the model is not loaded")
    checks: dict[str, Any] = runtime.ready()
    if not _operator(request):
        checks = {k: v for k, v in checks.items() if k not in OPERATOR_FIGURES}
    if not checks.get("store"):
        raise Unavailable("not_ready", "the database is unreachable")
    if checks.get("reindex_required"):
        raise Unavailable(
            "not_ready",
            f"enrolled works lack embeddings of {checks.get('model')}: "
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
