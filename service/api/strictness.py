"""GET /v1/strictness: the strictness presets the calibration can reach today, for compare or for verify against
one artist's portfolio (what the page offers; service/serving/strictness.py `presets`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.api.deps import ScorerDep, VerifyKey
from service.api.middleware import API_PREFIX
from service.api.schemas import PresetsOut, error_responses

router = APIRouter(prefix=API_PREFIX, tags=["scoring"])


@router.get(
    "/strictness",
    response_model=PresetsOut,
    summary="Strictness presets the calibration can reach",
    description="For `route=compare`, or `route=verify` with `artist_id` (that portfolio as it is now): each preset "
    "strictness (`max_fpr` 0.01 / 0.05 / 0.10, `min_precision` 0.99 / 0.95) on the table a top-quality picture "
    "would be judged by, with its threshold and rates, or `reachable: false` and why the calibration's pairs "
    "cannot show it (a request asking for it would be 422 `operating_point_unreachable`); and the default "
    "verdict's two points.",
    responses=error_responses(401, 403, 404, 422, 429),
)
async def strictness(
    _: VerifyKey,
    scorer: ScorerDep,
    route: Annotated[Literal["compare", "verify"], Query(description="the decision the presets are for")],
    artist_id: Annotated[str | None, Query(min_length=1, max_length=64, description="verify: whose portfolio")] = None,
) -> PresetsOut:
    return PresetsOut.of(await scorer.presets(route, artist_id))
