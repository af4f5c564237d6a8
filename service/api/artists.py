"""Artists and their reference works (portfolios). Admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status

from service.api.deps import AdminKey, CatalogueForm, Offset, PortfoliosDep, UploadLimit, read_upload
from service.api.fields import BOOLEAN, INTEGER
from service.api.middleware import API_PREFIX, admitted
from service.api.schemas import ArtistIn, ArtistOut, ArtistPatch, Page, WorkOut, WorkPatch, WorksOut, error_responses
from service.errors import TooLarge
from service.serving.catalogue import per_work

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


@router.patch(
    "/{artist_id}",
    response_model=ArtistOut,
    summary="Rename an artist or replace its meta",
    description="Fields left out stay as they are. The id, the works and their embeddings do not change.",
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
def update_artist(_: AdminKey, portfolios: PortfoliosDep, artist_id: str, body: ArtistPatch) -> ArtistOut:
    return ArtistOut.model_validate(portfolios.update_artist(artist_id, body.name, body.meta))


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
    description="One or more files in the multipart field `image` (repeat the field), each with its catalogue "
    "entry in the fields `title`, `date`, `medium`, `dimensions`, `inventory_number`, `photo_credit`, `notes` (each "
    "given once per image, in the images' order, or not at all). All or nothing: if any file is rejected, none is "
    "enrolled. A picture already enrolled under any artist is a 409 naming the work: `duplicate_work` (the same "
    "bytes) or `same_painting` (the same painting photographed again, by the model's measured similarity), "
    "unless `allow_duplicate=true` (the same bytes twice in one portfolio never are).",
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
    catalogue: CatalogueForm,
    allow_duplicate: Annotated[
        bool,
        Form(description="enrol a picture of a painting already enrolled all the same (e.g. a known copy)"),
        BOOLEAN,
    ] = False,
) -> WorksOut:
    most = request.app.state.settings.max_files_per_request
    if len(image) > most:
        raise TooLarge("too_many_files", f"{len(image)} files in one request; the limit is {most}")
    entries = per_work(catalogue, len(image))  # before reading any upload: a mismatch costs nothing
    files = [(f.filename or "", await read_upload(f, limit)) for f in image]
    works = await portfolios.add_works(artist_id, files, entries, allow_duplicate)
    return WorksOut(works=[WorkOut.model_validate(w) for w in works])


@router.get(
    "/{artist_id}/works",
    response_model=WorksOut,
    summary="List an artist's works",
    responses=error_responses(401, 403, 404, 429),
)
def list_works(_: AdminKey, portfolios: PortfoliosDep, artist_id: str) -> WorksOut:
    return WorksOut(works=[WorkOut.model_validate(w) for w in portfolios.list_works(artist_id)])


@router.patch(
    "/{artist_id}/works/{work_id}",
    response_model=WorkOut,
    summary="Edit a work's catalogue entry",
    description="Only the fields sent change; `null` or an empty string clears one. The picture and its embedding "
    "do not change.",
    responses=error_responses(400, 401, 403, 404, 422, 429),
)
def update_work(_: AdminKey, portfolios: PortfoliosDep, artist_id: str, work_id: str, body: WorkPatch) -> WorkOut:
    changes = body.model_dump(exclude_unset=True)
    return WorkOut.model_validate(portfolios.update_work(artist_id, work_id, changes))


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
