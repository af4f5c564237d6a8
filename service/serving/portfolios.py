"""Portfolio administration: artists, their reference works (enrolment embeds them with the serving bundle's
model), listings, deletions and a work's picture as a thumbnail. No HTTP here. A `Portfolios` acts for one
collection (`collection`, the caller's key's) and reaches that collection's gallery only: an artist or work of
another collection answers exactly as one that does not exist.

Enrolment embeds through the bundle's embedding cache (`Embedder.pictures`, service/serving/cache.py): a picture
the collection just compared, verified or identified is not embedded again, and one just enrolled answers a
compare from the cache; never across collections.

Every enrolment is one transaction (service/storage/gallery.py): any bad file (its name is in the message) or a
duplicate leaves the portfolio and the originals store as they were. It embeds with the bundle it took when it
started and stores into that bundle's gallery; if an upgrade switched the deployment meanwhile, the store's write
guard refuses it inside its transaction (503 `model_switching`, service/ops/upgrade.py) rather than store a work
without the new model's embedding. Covered by tests/service/test_engine.py and tests/service/test_api_artists.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence

from service.config import Settings
from service.errors import Invalid, NoFiles
from service.serving.bundle import BundleSlot
from service.serving.catalogue import checked
from service.serving.embedder import Embedder
from service.serving.thumbnails import Thumbnail, thumbnail
from service.serving.thumbnails import check_request as check_thumbnail
from service.storage.gallery import Artist, Gallery, NewWork, Work
from service.storage.schema import DEFAULT_COLLECTION

MAX_PAGE = 1000
MAX_META_BYTES = 16_384
ARTIST_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise Invalid("invalid_name", "name must be a non-empty string of at most 256 characters")
    return name.strip()


def artist_fields(artist_id: object, name: object, meta: object) -> tuple[str, str, dict]:
    """(id, name, meta) as the service stores an artist, or `Invalid` naming the first field it refuses. The one
    check of an artist: the API's create and an archive's restore (service/ops/backup.py) both call it."""
    if not isinstance(artist_id, str) or not ARTIST_ID_RE.fullmatch(artist_id):
        raise Invalid("invalid_artist_id", "artist id must be 1–64 characters of letters, digits, '_', '.', '-'")
    return artist_id, _name(name), _meta(meta)


def _meta(meta: object) -> dict:
    if meta is not None and not isinstance(meta, dict):
        raise Invalid("invalid_meta", "meta must be a JSON object")
    try:
        encoded = json.dumps(meta or {}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Invalid("invalid_meta", f"meta must be plain JSON: {e}") from e
    if len(encoded.encode()) > MAX_META_BYTES:
        raise Invalid("invalid_meta", f"meta must be at most {MAX_META_BYTES} bytes as JSON")
    return dict(meta or {})


class Portfolios:
    def __init__(
        self, bundles: BundleSlot, embedder: Embedder, settings: Settings, collection: str = DEFAULT_COLLECTION
    ):
        self.bundles = bundles
        self.embedder = embedder
        self.settings = settings
        self.collection = collection

    @property
    def _gallery(self) -> Gallery:
        return self.bundles.current.view(self.collection).gallery

    # ---- artists ------------------------------------------------------------------------------------------
    def create_artist(self, artist_id: str, name: str, meta: dict | None = None) -> Artist:
        return self._gallery.create_artist(*artist_fields(artist_id, name, meta))

    def update_artist(self, artist_id: str, name: str | None = None, meta: dict | None = None) -> Artist:
        """Rename an artist and/or replace its meta (None leaves it); its id and works stay."""
        return self._gallery.update_artist(
            artist_id, None if name is None else _name(name), None if meta is None else _meta(meta)
        )

    def list_artists(self, offset: int = 0, limit: int = 50) -> tuple[list[Artist], int]:
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise Invalid("invalid_pagination", f"offset must be ≥ 0 and limit between 1 and {MAX_PAGE}")
        return self._gallery.list_artists(offset, limit)

    def get_artist(self, artist_id: str) -> Artist:
        return self._gallery.get_artist(artist_id)

    def delete_artist(self, artist_id: str) -> None:
        self._gallery.delete_artist(artist_id)

    # ---- works --------------------------------------------------------------------------------------------
    async def add_works(
        self,
        artist_id: str,
        files: Sequence[tuple[str, bytes]],
        catalogue: Sequence[Mapping[str, object]] | None = None,
        allow_duplicate: bool = False,
    ) -> list[Work]:
        """Enrol uploads into a portfolio, all or nothing, each with its catalogue entry (`catalogue[i]` for
        `files[i]`). A picture of a painting already enrolled is refused unless `allow_duplicate`
        (service/storage/gallery.py `add_works`)."""
        if not files:
            raise NoFiles()
        entries = [checked(c) for c in catalogue] if catalogue is not None else [{} for _ in files]
        if len(entries) != len(files):
            raise Invalid("invalid_catalogue", f"{len(entries)} catalogue entries for {len(files)} images")
        b = self.bundles.current
        gallery = (await asyncio.to_thread(b.view, self.collection)).gallery
        await asyncio.to_thread(gallery.get_artist, artist_id)
        items: list[NewWork] = []
        # a chunk goes to the backbone queue at once: never more than the queue holds, or an idle server would shed it
        step = max(1, min(self.settings.batch_max_size, self.settings.max_queue))
        for start in range(0, len(files), step):
            chunk = files[start : start + step]
            # through the bundle's embedding cache: a picture this collection just compared is not embedded again
            pictures = await self.embedder.pictures(
                b, self.collection, [data for _, data in chunk], names=[name or "" for name, _ in chunk]
            )
            for (name, data), p, entry in zip(chunk, pictures, entries[start:], strict=False):
                items.append(
                    NewWork(filename=name or "", data=data, sha256=p.sha256, embedding=p.embedding, catalogue=entry)
                )
        return await asyncio.to_thread(gallery.add_works, artist_id, items, allow_duplicate)

    def list_works(self, artist_id: str) -> list[Work]:
        return self._gallery.list_works(artist_id)

    def update_work(self, artist_id: str, work_id: str, changes: dict[str, object]) -> Work:
        """Edit a work's catalogue entry: the fields given (None or "" clears one), checked as at enrolment."""
        return self._gallery.update_work(artist_id, work_id, checked(changes))

    def delete_work(self, artist_id: str, work_id: str) -> None:
        self._gallery.delete_work(artist_id, work_id)

    async def work_image(self, artist_id: str, work_id: str, max_side: int = 256, fmt: str = "jpeg") -> Thumbnail:
        """A reference work's original, scaled to at most `max_side` px, as JPEG or PNG."""
        check_thumbnail(max_side, fmt)
        data = await asyncio.to_thread(self._gallery.original, artist_id, work_id)

        def render() -> Thumbnail:
            return thumbnail(self.embedder.decode_original(data).image, max_side, fmt)

        return await asyncio.to_thread(render)
