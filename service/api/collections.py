"""Collections over HTTP (operator scope): create one with its first key, list them, read one, delete one with
everything in it, issue a key in one. The same operations as `python -m service collections …`; logic in
service/storage/collections.py. An operator key sees collections and their figures, never what is inside them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from service.api.deps import KeysDep, OperatorKey
from service.api.middleware import API_PREFIX
from service.api.schemas import (
    CollectionCreated,
    CollectionIn,
    CollectionKeyIn,
    CollectionOut,
    KeyCreated,
    KeyOut,
    error_responses,
)
from service.serving.runtime import Runtime
from service.storage.collections import Collections

router = APIRouter(prefix=f"{API_PREFIX}/collections", tags=["collections"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _collections(request: Request) -> Collections:
    return _runtime(request).collections


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CollectionCreated,
    summary="Create a collection and its first key",
    description="The collection's first key (scope `admin`) is in this response only; the service stores a hash.",
    responses=error_responses(400, 401, 403, 409, 413, 422, 429),
)
def create_collection(_: OperatorKey, request: Request, keys: KeysDep, body: CollectionIn) -> CollectionCreated:
    made, info, key = _collections(request).create_with_key(
        keys, body.id, body.name, body.max_works, body.max_bytes, body.admin_key_name
    )
    out = KeyCreated(**KeyOut.model_validate(info).model_dump(), key=key)
    return CollectionCreated(collection=CollectionOut.model_validate(made), key=out)


@router.get(
    "",
    response_model=list[CollectionOut],
    summary="List collections",
    description="Oldest first, each with its quota and what it holds.",
    responses=error_responses(401, 403, 429),
)
def list_collections(_: OperatorKey, request: Request) -> list[CollectionOut]:
    return [CollectionOut.model_validate(c) for c in _collections(request).listing()]


@router.get(
    "/{collection_id}",
    response_model=CollectionOut,
    summary="Get a collection",
    responses=error_responses(401, 403, 404, 429),
)
def get_collection(_: OperatorKey, request: Request, collection_id: str) -> CollectionOut:
    return CollectionOut.model_validate(_collections(request).get(collection_id))


@router.delete(
    "/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a collection and everything in it",
    description="Its artists, works, originals (those no other work shares), keys and decision log, at once.",
    responses=error_responses(401, 403, 404, 429),
)
def delete_collection(_: OperatorKey, request: Request, collection_id: str) -> Response:
    _runtime(request).delete_collection(collection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{collection_id}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    summary="Issue a key in a collection",
    description="Scope `admin` or `verify` in that collection; the key is in this response only.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
def create_collection_key(
    _: OperatorKey, request: Request, keys: KeysDep, collection_id: str, body: CollectionKeyIn
) -> KeyCreated:
    _collections(request).get(collection_id)  # 404 unknown_collection before anything else
    info, key = keys.create(body.name, body.scope, collection_id)
    return KeyCreated(**KeyOut.model_validate(info).model_dump(), key=key)
