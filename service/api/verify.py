"""POST /v1/verify: is this painting by the claimed artist, judged against the artist's portfolio?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.api.deps import (
    AuditDep,
    EvidenceGrid,
    RequestId,
    ScorerDep,
    StrictnessDep,
    UploadLimit,
    VerifyKey,
    decided,
    read_upload,
)
from service.api.middleware import API_PREFIX, admitted
from service.api.schemas import VerifyOut, error_responses
from service.storage.audit import record

router = APIRouter(prefix=API_PREFIX, tags=["scoring"])


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Verify a painting against an artist's portfolio",
    description="Scores `image` pairwise against every reference work of `artist_id` and aggregates the best "
    "pair scores as the portfolio calibration assumed; expected error rates come from the portfolio-level "
    "calibration for a portfolio of this size. Strictness as in /v1/compare. `evidence=n` (2 to 4) adds an evidence "
    "map: each of n×n regions of the image scored on its own against the same portfolio.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
)
@admitted
async def verify(
    key: VerifyKey,
    scorer: ScorerDep,
    audit: AuditDep,
    strictness: StrictnessDep,
    limit: UploadLimit,
    request_id: RequestId,
    image: Annotated[UploadFile, File(description="the painting to verify")],
    artist_id: Annotated[str, Form(min_length=1, max_length=64, description="the claimed artist's id")],
    evidence: EvidenceGrid = None,
) -> VerifyOut:
    data = await read_upload(image, limit)
    verdict = await scorer.verify(data, artist_id, strictness, evidence)
    await record(audit, decided(verdict, key, "verify", request_id, artist_id=artist_id))
    return VerifyOut.of(verdict)
