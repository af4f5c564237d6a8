"""API keys over HTTP (admin scope); the same operations as `python -m service keys …`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from service.api.deps import AdminKey, KeysDep
from service.api.fields import BOOLEAN
from service.api.middleware import API_PREFIX
from service.api.schemas import KeyCreated, KeyIn, KeyOut, error_responses

router = APIRouter(prefix=f"{API_PREFIX}/keys", tags=["keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    summary="Create an API key",
    description="The key is in this response only; the service stores a hash of it.",
    responses=error_responses(400, 401, 403, 409, 413, 422, 429),
)
def create_key(_: AdminKey, keys: KeysDep, body: KeyIn) -> KeyCreated:
    info, key = keys.create(body.name, body.scope)
    return KeyCreated(**KeyOut.model_validate(info).model_dump(), key=key)


@router.get(
    "",
    response_model=list[KeyOut],
    summary="List API keys",
    description="Names, scopes and non-secret prefixes; never the keys.",
    responses=error_responses(401, 403, 422, 429),
)
def list_keys(
    _: AdminKey, keys: KeysDep, include_revoked: Annotated[bool, Query(description="`true` or `false`"), BOOLEAN] = True
) -> list[KeyOut]:
    return [KeyOut.model_validate(k) for k in keys.list(include_revoked=include_revoked)]


@router.delete(
    "/{key_ref}",
    response_model=KeyOut,
    summary="Revoke an API key",
    description="`key_ref` is the key's numeric id or its name. A revoked key is refused at once.",
    responses=error_responses(401, 403, 404, 429),
)
def revoke_key(_: AdminKey, keys: KeysDep, key_ref: str) -> KeyOut:
    return KeyOut.model_validate(keys.revoke(key_ref))
