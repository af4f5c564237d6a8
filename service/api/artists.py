"""Artists and their reference works (portfolios). Admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status

from service.api.deps import AdminKey, Offset, PortfoliosDep, UploadLimit, read_upload
from service.api.fields import INTEGER
from service.api.middleware import API_PREFIX, admitted
from service.api.schemas import ArtistIn, ArtistOut, Page, WorkOut, WorksOut, error_responses
from service.errors import TooLarge

router = APIRouter(prefix=f"{API_PREFIX}/artists", tags=["artists"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ArtistOut,
    summary="Create an artist",
    responses=error_responses(400, 401, 403, 409, 413, 422, 429),
)
def create_artist(_: AdminKey, portfolios: PortfoliosDep, body: ArtistIn) -> ArtistOut:
    return ArtistOut.model_validate(portfolios.create_artist(body.id, body.name, body.meta or {}))


@router.get(
    "",
    response_model=Page[ArtistOut],
    summary="List artists",
    description="Oldest first. Page with `offset` and `limit`; `total` counts every artist.",
    responses=error_responses(401, 403, 422, 429),
)
def list_artists(
    _: AdminKey,
    portfolios: PortfoliosDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500), INTEGER] = 50,
) -> Page[ArtistOut]:
    items, total = portfolios.list_artists(offset, limit)
    return Page[ArtistOut](items=[ArtistOut.model_validate(a) for a in items], total=total, offset=offset, limit=limit)


@router.get(
    "/{artist_id}",
    response_model=ArtistOut,
    summary="Get an artist",
    responses=error_responses(401, 403, 404, 429),
)
def get_artist(_: AdminKey, portfolios: PortfoliosDep, artist_id: str) -> ArtistOut:
    return ArtistOut.model_validate(portfolios.get_artist(artist_id))


@router.delete(
    "/{artist_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete an artist and all of its works",
    responses=error_responses(401, 403, 404, 429),
)
def delete_artist(_: AdminKey, portfolios: PortfoliosDep, artist_id: str) -> Response:
    portfolios.delete_artist(artist_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{artist_id}/works",
    status_code=status.HTTP_201_CREATED,
    response_model=WorksOut,
    summary="Enrol reference works",
    description="One or more files in the multipart field `image` (repeat the field). All or nothing: if any "
    "file is rejected, none is enrolled. Uploading a work already in the portfolio is a 409 `duplicate_work`.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
)
@admitted
async def add_works(
    _: AdminKey,
    portfolios: PortfoliosDep,
    request: Request,
    limit: UploadLimit,
    artist_id: str,
    image: Annotated[list[UploadFile], File(description="the works' images; repeat the field for several")],
) -> WorksOut:
    most = request.app.state.settings.max_files_per_request
    if len(image) > most:
        raise TooLarge("too_many_files", f"{len(image)} files in one request; the limit is {most}")
    files = [(f.filename or "", await read_upload(f, limit)) for f in image]
    works = await portfolios.add_works(artist_id, files)
    return WorksOut(works=[WorkOut.model_validate(w) for w in works])


@router.get(
    "/{artist_id}/works",
    response_model=WorksOut,
    summary="List an artist's works",
    responses=error_responses(401, 403, 404, 429),
)
def list_works(_: AdminKey, portfolios: PortfoliosDep, artist_id: str) -> WorksOut:
    return WorksOut(works=[WorkOut.model_validate(w) for w in portfolios.list_works(artist_id)])


@router.delete(
    "/{artist_id}/works/{work_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete one work",
    responses=error_responses(401, 403, 404, 429),
)
def delete_work(_: AdminKey, portfolios: PortfoliosDep, artist_id: str, work_id: str) -> Response:
    portfolios.delete_work(artist_id, work_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
