"""GET /v1/archive: the caller's collection as a backup archive (admin scope), for a dealer or registrar who holds
no shell on the server — what `python -m service export --collection C` writes (service/ops/backup.py): its
artists, works with their catalogue entries and originals, embeddings, keys (hashes, never keys) and decision
log, restorable with `python -m service import` into any deployment."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from service.api.deps import AdminKey, CallerCollection
from service.api.middleware import API_PREFIX
from service.api.schemas import error_responses
from service.ops.backup import Downloads

router = APIRouter(prefix=f"{API_PREFIX}/archive", tags=["archive"])


@router.get(
    "",
    response_class=FileResponse,
    summary="Download the collection's archive",
    description="The caller's collection as one tar archive (the format `python -m service export` writes and "
    "`python -m service import` restores, with every file's sha256 in its manifest), taken from a consistent "
    "snapshot while the service goes on serving. Headers: `X-Brushprint-Works`, `X-Brushprint-Gallery-Version`. "
    "One archive at a time per server: 503 `export_busy` with Retry-After while another is written.",
    responses={
        200: {"content": {"application/x-tar": {}}, "description": "the archive"},
        **error_responses(401, 403, 429, 503),
    },
)
def download_archive(_: AdminKey, collection: CallerCollection, request: Request) -> FileResponse:
    downloads: Downloads = request.app.state.downloads
    result = downloads.write(collection)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        result.path,
        media_type="application/x-tar",
        filename=f"brushprint-{collection}-{stamp}.tar",
        headers={
            "X-Brushprint-Works": str(result.counts.get("works", 0)),
            "X-Brushprint-Gallery-Version": str(result.gallery_version),
        },
        background=BackgroundTask(downloads.remove, result),
    )
