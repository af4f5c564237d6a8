"""POST /v1/identify: which enrolled artists is this painting most like?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.api.deps import AuditDep, RequestId, ScorerDep, UploadLimit, VerifyKey, read_upload
from service.api.fields import INTEGER
from service.api.middleware import API_PREFIX, admitted
from service.api.schemas import IdentifyOut, error_responses
from service.serving.scorer import MAX_K
from service.storage.audit import AuditRecord, record

router = APIRouter(prefix=API_PREFIX, tags=["scoring"])


@router.post(
    "/identify",
    response_model=IdentifyOut,
    summary="Rank enrolled artists for a painting",
    description="A faiss shortlist over every reference embedding, rescored by the pair head and aggregated per "
    "artist as /v1/verify does. Returns up to `k` artists, best first, and `open_set`: whether the painting belongs "
    "to any enrolled artist at all, a three-way verdict on the top candidate's score calibrated on the gallery's "
    "own leave-one-out identify trials. To decide about one artist, call /v1/verify with the candidate.",
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
)
@admitted
async def identify(
    key: VerifyKey,
    scorer: ScorerDep,
    audit: AuditDep,
    limit: UploadLimit,
    request_id: RequestId,
    image: Annotated[UploadFile, File(description="the painting to identify")],
    k: Annotated[int, Form(ge=1, le=MAX_K, description="how many candidate artists to return"), INTEGER] = 5,
) -> IdentifyOut:
    data = await read_upload(image, limit)
    found = await scorer.identify(data, k)
    out = IdentifyOut.model_validate(found)
    top = out.candidates[0] if out.candidates else None
    entry = AuditRecord(
        key_name=key.name,
        route="identify",
        image_sha256=found.image,
        artist_id=top.artist_id if top else None,
        decision=f"ranked:{len(out.candidates)}",
        model_id=out.model,
        score=top.score if top else None,
        request_id=request_id,
        verdict=found.open_set.verdict,
        artist_name=top.name if top else None,
        same_work_as=found.same_work_as[0].work_id if found.same_work_as else None,
    )
    await record(audit, entry)
    return out
