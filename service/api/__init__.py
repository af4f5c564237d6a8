"""HTTP routers, one per resource, collected here so `create_app` includes them in one place. The API's routers
sit under `API_PREFIX` (service/api/middleware.py, where the key gate reads it too); health and the page at the
root."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import (
    archive,
    artists,
    audit,
    collections,
    compare,
    docs,
    health,
    identify,
    images,
    keys,
    strictness,
    verify,
    web,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    compare.router,
    verify.router,
    identify.router,
    strictness.router,
    artists.router,
    images.router,
    keys.router,
    keys.me_router,
    audit.router,
    archive.router,
    collections.router,
    web.router,
    docs.router,
)
