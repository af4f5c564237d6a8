"""`python -m service` (also `brushprint-serve`): serve, manage API keys, reindex, migrate the schema.

    python -m service [--host H] [--port P] [--model-dir D] [--data-dir D]     serve (the default)
    python -m service keys create --name N --scope verify|admin                prints the new key, once
    python -m service keys list [--json]                                        names and prefixes, never keys
    python -m service keys revoke (--name N | --id I)
    python -m service reindex [--prune]                                         re-embed after a model change
    python -m service db upgrade|current                                        schema migrations (Alembic)
    python -m service export|import|drill|enrol|upgrade …                       backup, restore, restore drill,
                                                                                bulk enrolment, model upgrade

Settings come from `BRUSHPRINT_*` environment variables; the flags override them. Covered by
tests/service/test_cli.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from service.config import Settings
from service.errors import ServiceError
from service.ops import opscli
from service.storage.keys import KeyInfo, KeyStore, Scope


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description="brushprint painting-authentication service")
    p.add_argument("--host", help="bind address (BRUSHPRINT_HOST)")
    p.add_argument("--port", type=int, help="port (BRUSHPRINT_PORT)")
    p.add_argument("--model-dir", help="model directory with model.json (BRUSHPRINT_MODEL_DIR)")
    p.add_argument("--data-dir", help="data directory: originals and the default SQLite file (BRUSHPRINT_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (BRUSHPRINT_DATABASE_URL)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (BRUSHPRINT_LOG_LEVEL)")
    sub = p.add_subparsers(dest="command", metavar="{serve,keys,reindex,db,export,import,drill,enrol,upgrade}")
    sub.add_parser("serve", help="serve HTTP with uvicorn (the default)")

    keys = sub.add_parser("keys", help="create, list or revoke API keys").add_subparsers(
        dest="keys_command", metavar="{create,list,revoke}", required=True
    )
    create = keys.add_parser("create", help="issue a key; it is printed once, the service keeps only a hash")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.add_argument("--active", action="store_true", help="only keys that are not revoked")
    revoke = keys.add_parser("revoke", help="revoke a key by name or id")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--name")
    which.add_argument("--id", type=int)

    reindex = sub.add_parser("reindex", help="embed every work lacking an embedding of the current model")
    reindex.add_argument("--prune", action="store_true", help="also drop embeddings of other models")
    opscli.add_commands(sub)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        field: value
        for field, value in (
            ("host", args.host),
            ("port", args.port),
            ("model_dir", args.model_dir),
            ("data_dir", args.data_dir),
            ("database_url", args.database_url),
            ("log_level", args.log_level),
        )
        if value is not None
    }
    return Settings(**overrides)


def _key_store(settings: Settings) -> KeyStore:
    # Keys need only the database, not the model: `keys …` works on a host without the model files.
    from service.storage.db import open_database

    assert settings.database_url is not None
    return KeyStore(open_database(settings.database_url, settings.migrate_on_start))


def _key_row(k: KeyInfo) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "scope": k.scope.value,
        "prefix": k.prefix,
        "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    store = _key_store(settings)
    if args.keys_command == "create":
        info, key = store.create(args.name, args.scope)
        # The key alone on stdout, so `KEY=$(python -m service keys create …)` captures it; the rest on stderr.
        print(key)
        print(
            f"created key {info.name!r} (id {info.id}, scope {info.scope.value}); it is not shown again",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "list":
        rows = [_key_row(k) for k in store.list(include_revoked=not args.active)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'ID':>4}  {'NAME':<24} {'SCOPE':<7} {'PREFIX':<11} {'CREATED':<25} STATUS")
        for r in rows:
            status = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
            print(f"{r['id']:>4}  {r['name']:<24} {r['scope']:<7} {r['prefix']:<11} {r['created_at']:<25} {status}")
        return 0
    info = store.revoke(args.id if args.id is not None else args.name)
    print(f"revoked key {info.name!r} (id {info.id})", file=sys.stderr)
    return 0


def _reindex(args: argparse.Namespace, settings: Settings) -> int:
    from service.serving.runtime import Runtime

    runtime = Runtime.from_settings(settings)
    try:
        result = runtime.reindex(prune=args.prune)
        model_id = runtime.model_id
    finally:
        runtime.close()
    print(
        json.dumps({"model": model_id, "embedded": result.embedded, "failed": result.failed, "pruned": result.pruned})
    )
    if result.failed:
        print(f"{len(result.failed)} works could not be embedded; delete or re-upload them", file=sys.stderr)
        return 1
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from service.logging import configure_logging
    from service.main import create_app

    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON logging
        access_log=False,  # our middleware logs each request with its id and key name
        timeout_graceful_shutdown=10,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as e:
        print(f"invalid settings:\n{e}", file=sys.stderr)
        return 2
    try:
        if args.command == "keys":
            return _keys(args, settings)
        if args.command == "reindex":
            return _reindex(args, settings)
        if args.command in opscli.COMMANDS:
            return opscli.run(args, settings)
        return _serve(settings)
    except ServiceError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
