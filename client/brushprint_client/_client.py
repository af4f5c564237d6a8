"""`Client` (sync) and `AsyncClient`: one typed method per API route over one shared description of each call.

Each route is described once (`_Call`: method, path, query, form, files, how to read the answer); the two
clients only differ in how they send it and how they sleep between retries.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, Union
from urllib.parse import quote

import httpx

from brushprint_client._errors import BrushprintError, TransportFailed, error_from, retry_after
from brushprint_client._types import (
    CATALOGUE_FIELDS,
    Artist,
    ArtistPage,
    AuditPage,
    Collection,
    CreatedCollection,
    CreatedKey,
    Decision,
    Identification,
    Key,
    Me,
    Presets,
    Verdict,
    Work,
    build,
)

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
R = TypeVar("R")
API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers are retried and how long to wait: `Retry-After` when the API sends it (it does on 429 and
    503), else `backoff * 2**attempt`; never more than `max_wait` seconds per wait, at most `max_retries` times."""

    max_retries: int = 3
    max_wait: float = 30.0
    backoff: float = 0.5
    statuses: frozenset[int] = frozenset({429, 503})

    def wait(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying after `attempt` failed tries, or None to give up."""
        if response.status_code not in self.statuses or attempt >= self.max_retries:
            return None
        after = retry_after(response)
        return min(self.max_wait, after if after is not None else self.backoff * 2**attempt)


@dataclass
class _Call(Generic[R]):
    method: str
    path: str
    parse: Callable[[httpx.Response], R]
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)

    def request_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.params:
            kw["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.json is not None:
            kw["json"] = self.json
        if self.data:
            kw["data"] = self.data
        if self.files:
            kw["files"] = self.files
        return kw


# ---------------------------------------------------------------------------------------------- inputs
def _image(value: ImageInput, default_name: str = "image") -> tuple[str, bytes, str]:
    """(filename, bytes, content type) for a path, bytes or a binary file object. Read once, so a retry resends
    the same bytes; the server detects the format from the bytes, the content type is only a hint."""
    if isinstance(value, bytes | bytearray | memoryview):
        name, data = default_name, bytes(value)
    elif isinstance(value, str | os.PathLike):
        path = Path(value)
        name, data = path.name, path.read_bytes()
    elif hasattr(value, "read"):
        data = value.read()
        if not isinstance(data, bytes):
            raise TypeError("image file objects must be opened in binary mode ('rb')")
        name = os.path.basename(str(getattr(value, "name", default_name))) or default_name
    else:
        raise TypeError(f"an image is a path, bytes or a binary file, not {type(value).__name__}")
    return name, data, mimetypes.guess_type(name)[0] or "application/octet-stream"


def _strictness(threshold: float | None, max_fpr: float | None, min_precision: float | None) -> dict[str, str]:
    form = {"threshold": threshold, "max_fpr": max_fpr, "min_precision": min_precision}
    return {k: repr(float(v)) for k, v in form.items() if v is not None}


CatalogueEntry = Mapping[str, "str | None"]  # a work's catalogue fields, as `Catalogue` names them


def _catalogue_form(entries: Sequence[CatalogueEntry] | None, n: int) -> dict[str, list[str]]:
    """Per-image catalogue entries → enrolment's repeated form fields: a field given for any image is sent once per
    image, in the images' order (empty where that work has none)."""
    if entries is None:
        return {}
    if len(entries) != n:
        raise ValueError(f"{len(entries)} catalogue entries for {n} images: give one per image (or none)")
    unknown = sorted({k for e in entries for k in e} - set(CATALOGUE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown catalogue field(s) {', '.join(unknown)}; the fields are {', '.join(CATALOGUE_FIELDS)}"
        )
    used = [f for f in CATALOGUE_FIELDS if any(e.get(f) for e in entries)]
    return {f: [e.get(f) or "" for e in entries] for f in used}


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _json(parse: Callable[[Any], R]) -> Callable[[httpx.Response], R]:
    return lambda r: parse(r.json())


def _none(_: httpx.Response) -> None:
    return None


# ---------------------------------------------------------------------------------------------- the routes
class _Routes:
    """The calls, described once."""

    @staticmethod
    def compare(
        a: ImageInput, b: ImageInput, t: float | None, f: float | None, p: float | None, ev: int | None
    ) -> _Call[Decision]:
        data = _strictness(t, f, p)
        if ev is not None:
            data["evidence"] = str(ev)
        files = [("image_a", _image(a, "image_a")), ("image_b", _image(b, "image_b"))]
        return _Call("POST", "/v1/compare", _json(Decision.of), data=data, files=files)

    @staticmethod
    def verify(
        img: ImageInput, artist_id: str, t: float | None, f: float | None, p: float | None, ev: int | None
    ) -> _Call[Verdict]:
        data = {"artist_id": artist_id, **_strictness(t, f, p)}
        if ev is not None:
            data["evidence"] = str(ev)
        return _Call("POST", "/v1/verify", _json(Verdict.of), data=data, files=[("image", _image(img))])

    @staticmethod
    def identify(img: ImageInput, k: int) -> _Call[Identification]:
        return _Call(
            "POST", "/v1/identify", _json(Identification.of), data={"k": str(k)}, files=[("image", _image(img))]
        )

    @staticmethod
    def create_artist(artist_id: str, name: str, meta: dict[str, Any] | None) -> _Call[Artist]:
        body = {"id": artist_id, "name": name, **({"meta": meta} if meta is not None else {})}
        return _Call("POST", "/v1/artists", _json(lambda d: build(Artist, d)), json=body)

    @staticmethod
    def list_artists(offset: int, limit: int) -> _Call[ArtistPage]:
        return _Call("GET", "/v1/artists", _json(ArtistPage.of), params={"offset": offset, "limit": limit})

    @staticmethod
    def get_artist(artist_id: str) -> _Call[Artist]:
        return _Call("GET", f"/v1/artists/{_seg(artist_id)}", _json(lambda d: build(Artist, d)))

    @staticmethod
    def delete_artist(artist_id: str) -> _Call[None]:
        return _Call("DELETE", f"/v1/artists/{_seg(artist_id)}", _none)

    @staticmethod
    def update_artist(artist_id: str, name: str | None, meta: dict[str, Any] | None) -> _Call[Artist]:
        body = {k: v for k, v in {"name": name, "meta": meta}.items() if v is not None}
        return _Call("PATCH", f"/v1/artists/{_seg(artist_id)}", _json(lambda d: build(Artist, d)), json=body)

    @staticmethod
    def add_works(
        artist_id: str, images: Iterable[ImageInput], catalogue: Sequence[CatalogueEntry] | None, allow_duplicate: bool
    ) -> _Call[list[Work]]:
        files = [("image", _image(img, f"work-{i}")) for i, img in enumerate(images)]
        data: dict[str, Any] = _catalogue_form(catalogue, len(files))
        if allow_duplicate:
            data["allow_duplicate"] = "true"
        parse = _json(lambda d: [build(Work, w) for w in d["works"]])
        return _Call("POST", f"/v1/artists/{_seg(artist_id)}/works", parse, data=data, files=files)

    @staticmethod
    def update_work(artist_id: str, work_id: str, changes: CatalogueEntry) -> _Call[Work]:
        path = f"/v1/artists/{_seg(artist_id)}/works/{_seg(work_id)}"
        return _Call("PATCH", path, _json(lambda d: build(Work, d)), json=dict(changes))

    @staticmethod
    def presets(route: str, artist_id: str | None) -> _Call[Presets]:
        return _Call("GET", "/v1/strictness", _json(Presets.of), params={"route": route, "artist_id": artist_id})

    @staticmethod
    def list_works(artist_id: str) -> _Call[list[Work]]:
        parse = _json(lambda d: [build(Work, w) for w in d["works"]])
        return _Call("GET", f"/v1/artists/{_seg(artist_id)}/works", parse)

    @staticmethod
    def delete_work(artist_id: str, work_id: str) -> _Call[None]:
        return _Call("DELETE", f"/v1/artists/{_seg(artist_id)}/works/{_seg(work_id)}", _none)

    @staticmethod
    def work_image(artist_id: str, work_id: str, max_side: int, format: str) -> _Call[bytes]:
        path = f"/v1/artists/{_seg(artist_id)}/works/{_seg(work_id)}/image"
        return _Call("GET", path, lambda r: r.content, params={"max_side": max_side, "format": format})

    @staticmethod
    def create_key(name: str, scope: str) -> _Call[CreatedKey]:
        return _Call("POST", "/v1/keys", _json(lambda d: build(CreatedKey, d)), json={"name": name, "scope": scope})

    @staticmethod
    def me() -> _Call[Me]:
        return _Call("GET", "/v1/me", _json(lambda d: build(Me, d)))

    @staticmethod
    def list_keys(include_revoked: bool) -> _Call[list[Key]]:
        params = {"include_revoked": str(include_revoked).lower()}
        return _Call("GET", "/v1/keys", _json(lambda d: [build(Key, k) for k in d]), params=params)

    @staticmethod
    def revoke_key(ref: str | int) -> _Call[Key]:
        return _Call("DELETE", f"/v1/keys/{_seg(ref)}", _json(lambda d: build(Key, d)))

    @staticmethod
    def create_collection(
        collection_id: str, name: str | None, max_works: int | None, max_bytes: int | None, admin_key_name: str
    ) -> _Call[CreatedCollection]:
        body: dict[str, Any] = {"id": collection_id, "admin_key_name": admin_key_name}
        optional = (("name", name), ("max_works", max_works), ("max_bytes", max_bytes))
        body.update({k: v for k, v in optional if v is not None})
        return _Call("POST", "/v1/collections", _json(CreatedCollection.of), json=body)

    @staticmethod
    def list_collections() -> _Call[list[Collection]]:
        return _Call("GET", "/v1/collections", _json(lambda d: [build(Collection, c) for c in d]))

    @staticmethod
    def get_collection(collection_id: str) -> _Call[Collection]:
        return _Call("GET", f"/v1/collections/{_seg(collection_id)}", _json(lambda d: build(Collection, d)))

    @staticmethod
    def delete_collection(collection_id: str) -> _Call[None]:
        return _Call("DELETE", f"/v1/collections/{_seg(collection_id)}", _none)

    @staticmethod
    def create_collection_key(collection_id: str, name: str, scope: str) -> _Call[CreatedKey]:
        path = f"/v1/collections/{_seg(collection_id)}/keys"
        return _Call("POST", path, _json(lambda d: build(CreatedKey, d)), json={"name": name, "scope": scope})

    @staticmethod
    def audit(
        offset: int,
        limit: int,
        route: str | None,
        key_name: str | None,
        artist_id: str | None,
        since: datetime | str | None,
    ) -> _Call[AuditPage]:
        when = since.isoformat() if isinstance(since, datetime) else since
        params = {
            "offset": offset,
            "limit": limit,
            "route": route,
            "key_name": key_name,
            "artist_id": artist_id,
            "since": when,
        }
        return _Call("GET", "/v1/audit", _json(AuditPage.of), params=params)

    @staticmethod
    def archive() -> _Call[bytes]:
        return _Call("GET", "/v1/archive", lambda r: r.content)

    @staticmethod
    def health() -> _Call[dict[str, Any]]:
        return _Call("GET", "/healthz", _json(dict))

    @staticmethod
    def ready() -> _Call[dict[str, Any]]:
        return _Call("GET", "/readyz", _json(dict))


def _http_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def _transport_error(e: httpx.TransportError) -> TransportFailed:
    return TransportFailed(0, "transport_error", f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------- sync
class Client:
    """The API over one HTTP connection pool. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **_http_options(base_url, api_key, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: _Call[R]) -> R:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as e:
                raise _transport_error(e) from e
            if response.is_success:
                return call.parse(response)
            wait = self.retry.wait(attempt, response)
            if wait is None:
                raise error_from(response)
            attempt += 1
            self._sleep(wait)

    # scoring
    def compare(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        threshold: float | None = None,
        max_fpr: float | None = None,
        min_precision: float | None = None,
        evidence: int | None = None,
    ) -> Decision:
        """Were these two paintings made by the same artist? At most one strictness argument."""
        return self._run(_Routes.compare(image_a, image_b, threshold, max_fpr, min_precision, evidence))

    def verify(
        self,
        image: ImageInput,
        artist_id: str,
        *,
        threshold: float | None = None,
        max_fpr: float | None = None,
        min_precision: float | None = None,
        evidence: int | None = None,
    ) -> Verdict:
        """Is this painting by `artist_id`, judged against the artist's portfolio?"""
        return self._run(_Routes.verify(image, artist_id, threshold, max_fpr, min_precision, evidence))

    def identify(self, image: ImageInput, k: int = 5) -> Identification:
        """The `k` enrolled artists closest to the painting, and `open_set`: whether it belongs to any of them."""
        return self._run(_Routes.identify(image, k))

    def presets(self, route: str = "compare", artist_id: str | None = None) -> Presets:
        """The strictness presets the calibration can reach today, for "compare" or for "verify" against
        `artist_id`'s portfolio; pass a reachable one as `**{preset.field: preset.value}`."""
        return self._run(_Routes.presets(route, artist_id))

    # artists and works (admin)
    def create_artist(self, artist_id: str, name: str, meta: dict[str, Any] | None = None) -> Artist:
        return self._run(_Routes.create_artist(artist_id, name, meta))

    def list_artists(self, offset: int = 0, limit: int = 50) -> ArtistPage:
        return self._run(_Routes.list_artists(offset, limit))

    def get_artist(self, artist_id: str) -> Artist:
        return self._run(_Routes.get_artist(artist_id))

    def delete_artist(self, artist_id: str) -> None:
        self._run(_Routes.delete_artist(artist_id))

    def update_artist(self, artist_id: str, *, name: str | None = None, meta: dict[str, Any] | None = None) -> Artist:
        """Rename an artist or replace its meta (the id and the works stay)."""
        return self._run(_Routes.update_artist(artist_id, name, meta))

    def add_works(
        self,
        artist_id: str,
        images: Iterable[ImageInput],
        catalogue: Sequence[CatalogueEntry] | None = None,
        *,
        allow_duplicate: bool = False,
    ) -> list[Work]:
        """Enrol reference works in one all-or-nothing request, each with its catalogue entry (a dict of title,
        date, medium, dimensions, inventory_number, photo_credit, notes) when `catalogue` gives one per image. A
        picture already enrolled raises `Conflict` (`duplicate_work` or `same_painting`) unless `allow_duplicate`."""
        return self._run(_Routes.add_works(artist_id, images, catalogue, allow_duplicate))

    def update_work(self, artist_id: str, work_id: str, **changes: str | None) -> Work:
        """Edit a work's catalogue entry: the fields given change, None or "" clears one."""
        return self._run(_Routes.update_work(artist_id, work_id, changes))

    def list_works(self, artist_id: str) -> list[Work]:
        return self._run(_Routes.list_works(artist_id))

    def delete_work(self, artist_id: str, work_id: str) -> None:
        self._run(_Routes.delete_work(artist_id, work_id))

    def work_image(self, artist_id: str, work_id: str, max_side: int = 256, format: str = "jpeg") -> bytes:
        """A reference work as JPEG or PNG bytes, longer side at most `max_side` (scope verify)."""
        return self._run(_Routes.work_image(artist_id, work_id, max_side, format))

    # keys, audit and the archive (admin)
    def create_key(self, name: str, scope: str) -> CreatedKey:
        return self._run(_Routes.create_key(name, scope))

    def archive(self) -> bytes:
        """The key's collection as a backup archive (tar bytes, held in memory: for a large collection, `curl -o`),
        restorable with `python -m service import`. 503 `export_busy` is retried as any Retry-After."""
        return self._run(_Routes.archive())

    def me(self) -> Me:
        """The key this client uses, and the collection it acts in (any scope)."""
        return self._run(_Routes.me())

    def list_keys(self, include_revoked: bool = True) -> list[Key]:
        return self._run(_Routes.list_keys(include_revoked))

    def revoke_key(self, ref: str | int) -> Key:
        return self._run(_Routes.revoke_key(ref))

    def audit(
        self,
        offset: int = 0,
        limit: int = 100,
        *,
        route: str | None = None,
        key_name: str | None = None,
        artist_id: str | None = None,
        since: datetime | str | None = None,
    ) -> AuditPage:
        return self._run(_Routes.audit(offset, limit, route, key_name, artist_id, since))

    # collections (operator scope)
    def create_collection(
        self,
        collection_id: str,
        name: str | None = None,
        *,
        max_works: int | None = None,
        max_bytes: int | None = None,
        admin_key_name: str = "admin",
    ) -> CreatedCollection:
        """A new collection and its first admin key (`.key.key`, shown once)."""
        return self._run(_Routes.create_collection(collection_id, name, max_works, max_bytes, admin_key_name))

    def list_collections(self) -> list[Collection]:
        return self._run(_Routes.list_collections())

    def get_collection(self, collection_id: str) -> Collection:
        return self._run(_Routes.get_collection(collection_id))

    def delete_collection(self, collection_id: str) -> None:
        """Deletes the collection and everything in it."""
        return self._run(_Routes.delete_collection(collection_id))

    def create_collection_key(self, collection_id: str, name: str, scope: str) -> CreatedKey:
        return self._run(_Routes.create_collection_key(collection_id, name, scope))

    # operations (no key needed)
    def health(self) -> dict[str, Any]:
        return self._run(_Routes.health())

    def ready(self) -> dict[str, Any]:
        return self._run(_Routes.ready())


# ---------------------------------------------------------------------------------------------- async
class AsyncClient:
    """`Client`'s methods as coroutines. Use as an async context manager, or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **_http_options(base_url, api_key, timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: _Call[R]) -> R:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as e:
                raise _transport_error(e) from e
            if response.is_success:
                return call.parse(response)
            wait = self.retry.wait(attempt, response)
            if wait is None:
                raise error_from(response)
            attempt += 1
            await self._sleep(wait)

    async def compare(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        *,
        threshold: float | None = None,
        max_fpr: float | None = None,
        min_precision: float | None = None,
        evidence: int | None = None,
    ) -> Decision:
        return await self._run(_Routes.compare(image_a, image_b, threshold, max_fpr, min_precision, evidence))

    async def verify(
        self,
        image: ImageInput,
        artist_id: str,
        *,
        threshold: float | None = None,
        max_fpr: float | None = None,
        min_precision: float | None = None,
        evidence: int | None = None,
    ) -> Verdict:
        return await self._run(_Routes.verify(image, artist_id, threshold, max_fpr, min_precision, evidence))

    async def identify(self, image: ImageInput, k: int = 5) -> Identification:
        return await self._run(_Routes.identify(image, k))

    async def presets(self, route: str = "compare", artist_id: str | None = None) -> Presets:
        return await self._run(_Routes.presets(route, artist_id))

    async def create_artist(self, artist_id: str, name: str, meta: dict[str, Any] | None = None) -> Artist:
        return await self._run(_Routes.create_artist(artist_id, name, meta))

    async def list_artists(self, offset: int = 0, limit: int = 50) -> ArtistPage:
        return await self._run(_Routes.list_artists(offset, limit))

    async def get_artist(self, artist_id: str) -> Artist:
        return await self._run(_Routes.get_artist(artist_id))

    async def delete_artist(self, artist_id: str) -> None:
        await self._run(_Routes.delete_artist(artist_id))

    async def update_artist(
        self, artist_id: str, *, name: str | None = None, meta: dict[str, Any] | None = None
    ) -> Artist:
        return await self._run(_Routes.update_artist(artist_id, name, meta))

    async def add_works(
        self,
        artist_id: str,
        images: Iterable[ImageInput],
        catalogue: Sequence[CatalogueEntry] | None = None,
        *,
        allow_duplicate: bool = False,
    ) -> list[Work]:
        return await self._run(_Routes.add_works(artist_id, images, catalogue, allow_duplicate))

    async def update_work(self, artist_id: str, work_id: str, **changes: str | None) -> Work:
        return await self._run(_Routes.update_work(artist_id, work_id, changes))

    async def list_works(self, artist_id: str) -> list[Work]:
        return await self._run(_Routes.list_works(artist_id))

    async def delete_work(self, artist_id: str, work_id: str) -> None:
        await self._run(_Routes.delete_work(artist_id, work_id))

    async def work_image(self, artist_id: str, work_id: str, max_side: int = 256, format: str = "jpeg") -> bytes:
        return await self._run(_Routes.work_image(artist_id, work_id, max_side, format))

    async def create_key(self, name: str, scope: str) -> CreatedKey:
        return await self._run(_Routes.create_key(name, scope))

    async def archive(self) -> bytes:
        return await self._run(_Routes.archive())

    async def me(self) -> Me:
        """The key this client uses, and the collection it acts in (any scope)."""
        return await self._run(_Routes.me())

    async def list_keys(self, include_revoked: bool = True) -> list[Key]:
        return await self._run(_Routes.list_keys(include_revoked))

    async def revoke_key(self, ref: str | int) -> Key:
        return await self._run(_Routes.revoke_key(ref))

    async def audit(
        self,
        offset: int = 0,
        limit: int = 100,
        *,
        route: str | None = None,
        key_name: str | None = None,
        artist_id: str | None = None,
        since: datetime | str | None = None,
    ) -> AuditPage:
        return await self._run(_Routes.audit(offset, limit, route, key_name, artist_id, since))

    # collections (operator scope)
    async def create_collection(
        self,
        collection_id: str,
        name: str | None = None,
        *,
        max_works: int | None = None,
        max_bytes: int | None = None,
        admin_key_name: str = "admin",
    ) -> CreatedCollection:
        """A new collection and its first admin key (`.key.key`, shown once)."""
        return await self._run(_Routes.create_collection(collection_id, name, max_works, max_bytes, admin_key_name))

    async def list_collections(self) -> list[Collection]:
        return await self._run(_Routes.list_collections())

    async def get_collection(self, collection_id: str) -> Collection:
        return await self._run(_Routes.get_collection(collection_id))

    async def delete_collection(self, collection_id: str) -> None:
        """Deletes the collection and everything in it."""
        return await self._run(_Routes.delete_collection(collection_id))

    async def create_collection_key(self, collection_id: str, name: str, scope: str) -> CreatedKey:
        return await self._run(_Routes.create_collection_key(collection_id, name, scope))

    async def health(self) -> dict[str, Any]:
        return await self._run(_Routes.health())

    async def ready(self) -> dict[str, Any]:
        return await self._run(_Routes.ready())


__all__ = ["AsyncClient", "BrushprintError", "Client", "ImageInput", "RetryPolicy"]
