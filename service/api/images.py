"""GET /v1/artists/{artist_id}/works/{work_id}/image: a reference work as a bounded JPEG or PNG.

Scope `verify` (not only admin): a verdict names the works it leaned on, and the caller who may verify may see
them. Logic in `Portfolios.work_image` (service/serving/portfolios.py) and service/serving/thumbnails.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from service.api.deps import PortfoliosDep, VerifyKey
from service.api.fields import INTEGER
from service.api.middleware import API_PREFIX
from service.api.schemas import error_responses
from service.serving.thumbnails import DEFAULT_SIDE, MAX_SIDE, MIN_SIDE

router = APIRouter(prefix=f"{API_PREFIX}/artists", tags=["artists"])

_IMAGE = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/{artist_id}/works/{work_id}/image",
    response_class=Response,
    summary="A reference work's picture (thumbnail)",
    description="The enrolled original, orientation applied, scaled down (never up) so its longer side is at most "
    f"`max_side` pixels ({MIN_SIDE} to {MAX_SIDE}), as JPEG or PNG. Scope `verify` or `admin`.",
    responses={
        200: {"content": {"image/jpeg": _IMAGE, "image/png": _IMAGE}, "description": "the picture"},
        **error_responses(401, 403, 404, 422, 429),
    },
)
async def work_image(
    _: VerifyKey,
    portfolios: PortfoliosDep,
    artist_id: str,
    work_id: str,
    max_side: Annotated[
        int, Query(ge=MIN_SIDE, le=MAX_SIDE, description="longest side in pixels"), INTEGER
    ] = DEFAULT_SIDE,
    format: Annotated[Literal["jpeg", "png"], Query(description="`jpeg` (default) or `png`")] = "jpeg",
) -> Response:
    thumb = await portfolios.work_image(artist_id, work_id, max_side, format)
    # private: the picture is behind a key; the work id names fixed content, so it may be kept a while
    return Response(thumb.data, media_type=thumb.media_type, headers={"Cache-Control": "private, max-age=3600"})
