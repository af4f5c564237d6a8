"""POST /v1/compare: were these two paintings made by the same artist?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

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
from service.api.schemas import DecisionOut, error_responses
from service.storage.audit import record

router = APIRouter(prefix=API_PREFIX, tags=["scoring"])


@router.post(
    "/compare",
    response_model=DecisionOut,
    summary="Compare two paintings",
    description="Scores whether `image_a` and `image_b` were painted by the same artist. The score is symmetric "
    "in the two images. Strictness: at most one of `threshold`, `max_fpr`, `min_precision`; none means the model "
    "card's recommended operating point. The answer carries the error rates expected at that threshold and their "
    "95 % upper bounds for the pairs behind them (`expected_fpr_upper`, `expected_fnr_upper`). "
    "`evidence=n` (2 to 4) adds an evidence map: each of n×n regions of `image_a` scored on its own against `image_b`.",
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
)
@admitted
async def compare(
    key: VerifyKey,
    scorer: ScorerDep,
    audit: AuditDep,
    strictness: StrictnessDep,
    limit: UploadLimit,
    request_id: RequestId,
    image_a: Annotated[UploadFile, File(description="first painting (JPEG, PNG, WebP, TIFF, BMP, still GIF)")],
    image_b: Annotated[UploadFile, File(description="second painting")],
    evidence: EvidenceGrid = None,
) -> DecisionOut:
    a = await read_upload(image_a, limit)
    b = await read_upload(image_b, limit)
    decision = await scorer.compare(a, b, strictness, evidence)
    await record(audit, decided(decision, key, "compare", request_id))
    return DecisionOut.model_validate(decision)
