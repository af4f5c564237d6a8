"""`python -m service` (also `brushprint-serve`): serve, manage API keys, reindex, migrate the schema.

    python -m service [--host H] [--port P] [--model-dir D] [--data-dir D]     serve (the default)
    python -m service keys create --name N --scope verify|admin [--collection C]   prints the new key, once
    python -m service keys create --name N --scope operator                     an operator key (no collection)
    python -m service keys list [--json] [--collection C]                       names and prefixes, never keys
    python -m service keys revoke (--name N [--collection C] | --id I)
    python -m service collections create --id C [--name N] [--max-works W] [--max-bytes B] [--key-name K]
                                                                                prints its first admin key, once
    python -m service collections list [--json] | delete --id C --yes
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
from sqlalchemy import exc as sa_exc

from service.config import Settings
from service.errors import ServiceError
from service.ops import opscli
from service.storage.keys import ANY_COLLECTION, KeyInfo, KeyStore, Scope
from service.storage.schema import DEFAULT_COLLECTION


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description="brushprint painting-authentication service")
    p.add_argument("--host", help="bind address (BRUSHPRINT_HOST)")
    p.add_argument("--port", type=int, help="port (BRUSHPRINT_PORT)")
    p.add_argument("--model-dir", help="model directory with model.json (BRUSHPRINT_MODEL_DIR)")
    p.add_argument("--data-dir", help="data directory: originals and the default SQLite file (BRUSHPRINT_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy URL (BRUSHPRINT_DATABASE_URL)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (BRUSHPRINT_LOG_LEVEL)")
    sub = p.add_subparsers(
        dest="command", metavar="{serve,keys,collections,reindex,db,export,import,drill,enrol,upgrade}"
    )
    sub.add_parser("serve", help="serve HTTP with uvicorn (the default)")

    keys = sub.add_parser("keys", help="create, list or revoke API keys").add_subparsers(
        dest="keys_command", metavar="{create,list,revoke}", required=True
    )
    in_collection = "the collection the key acts in (admin and verify keys; default: default)"
    create = keys.add_parser("create", help="issue a key; it is printed once, the service keeps only a hash")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    create.add_argument("--collection", help=in_collection)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.add_argument("--active", action="store_true", help="only keys that are not revoked")
    listing.add_argument("--collection", help="only this collection's keys (default: every key)")
    revoke = keys.add_parser("revoke", help="revoke a key by name (in a collection) or id")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--name")
    which.add_argument("--id", type=int)
    revoke.add_argument("--collection", help="the collection of the key named (default: default)")
    revoke.add_argument("--operator", action="store_true", help="the key named is an operator key")

    collections = sub.add_parser("collections", help="create, list or delete collections").add_subparsers(
        dest="collections_command", metavar="{create,list,delete}", required=True
    )
    made = collections.add_parser("create", help="a collection and its first admin key (printed once)")
    made.add_argument("--id", required=True)
    made.add_argument("--name")
    made.add_argument("--max-works", type=int, help="quota of works (default: none)")
    made.add_argument("--max-bytes", type=int, help="quota of bytes of originals (default: none)")
    made.add_argument("--key-name", default="admin", help="the first key's name (default: admin)")
    shown = collections.add_parser("list", help="collections with their quotas and what they hold")
    shown.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    gone = collections.add_parser("delete", help="delete a collection and everything in it")
    gone.add_argument("--id", required=True)
    gone.add_argument("--yes", action="store_true", required=True, help="yes, delete it and all it holds")

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
        "collection": k.collection,
        "prefix": k.prefix,
        "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    store = _key_store(settings)
    if args.keys_command == "create":
        operator = args.scope == Scope.operator.value
        if operator and args.collection:
            print("error: an operator key belongs to no collection: leave out --collection", file=sys.stderr)
            return 2
        collection = None if operator else (args.collection or DEFAULT_COLLECTION)
        info, key = store.create(args.name, args.scope, collection)
        _print_key(info, key)
        return 0
    if args.keys_command == "list":
        rows = [_key_row(k) for k in store.list(args.collection or ANY_COLLECTION, include_revoked=not args.active)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'ID':>4}  {'NAME':<24} {'SCOPE':<8} {'COLLECTION':<16} {'PREFIX':<11} {'CREATED':<25} STATUS")
        for r in rows:
            status = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
            where = r["collection"] or "-"
            print(
                f"{r['id']:>4}  {r['name']:<24} {r['scope']:<8} {where:<16} {r['prefix']:<11} {r['created_at']:<25} "
                f"{status}"
            )
        return 0
    if args.id is not None:
        info = store.revoke(args.id, ANY_COLLECTION)
    else:
        info = store.revoke(args.name, None if args.operator else (args.collection or DEFAULT_COLLECTION))
    print(f"revoked key {info.name!r} (id {info.id})", file=sys.stderr)
    return 0


def _print_key(info: KeyInfo, key: str) -> None:
    # The key alone on stdout, so `KEY=$(python -m service keys create …)` captures it; the rest on stderr.
    print(key)
    where = f"collection {info.collection!r}" if info.collection else "no collection"
    print(
        f"created key {info.name!r} (id {info.id}, scope {info.scope.value}, {where}); it is not shown again",
        file=sys.stderr,
    )


def _collections(args: argparse.Namespace, settings: Settings) -> int:
    from service.storage.collections import Collections

    keys = _key_store(settings)
    collections = Collections(keys.bind, settings.data_dir)
    if args.collections_command == "create":
        made, info, key = collections.create_with_key(
            keys, args.id, args.name, args.max_works, args.max_bytes, args.key_name
        )
        print(f"created collection {made.id!r} ({made.name})", file=sys.stderr)
        _print_key(info, key)
        return 0
    if args.collections_command == "delete":
        held = collections.delete(args.id)
        print(
            f"deleted collection {held.id!r}: {held.artists} artists, {held.works} works, {held.keys} active keys",
            file=sys.stderr,
        )
        return 0
    rows = [
        {
            "id": c.id,
            "name": c.name,
            "max_works": c.max_works,
            "max_bytes": c.max_bytes,
            "created": c.created.isoformat(),
            "artists": c.artists,
            "works": c.works,
            "bytes": c.bytes,
            "keys": c.keys,
        }
        for c in collections.listing()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':<20} {'ARTISTS':>8} {'WORKS':>8} {'BYTES':>12} {'KEYS':>5}  QUOTA (works / bytes)  NAME")
    for r in rows:
        quota = f"{r['max_works'] if r['max_works'] is not None else '-'} / "
        quota += f"{r['max_bytes'] if r['max_bytes'] is not None else '-'}"
        print(
            f"{r['id']:<20} {r['artists']:>8} {r['works']:>8} {r['bytes']:>12} {r['keys']:>5}  {quota:<21}  {r['name']}"
        )
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
        if args.command == "collections":
            return _collections(args, settings)
        if args.command == "reindex":
            return _reindex(args, settings)
        if args.command in opscli.COMMANDS:
            return opscli.run(args, settings)
        return _serve(settings)
    except ServiceError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as e:
        # a URL SQLAlchemy cannot parse, or a dialect it does not know: the operator's typo, not a crash
        print(f"error: invalid database URL (BRUSHPRINT_DATABASE_URL / --database-url): {e}", file=sys.stderr)
        return 2
    except sa_exc.OperationalError as e:
        print(f"error: cannot open the database {_safe_url(settings)}: {e.orig}", file=sys.stderr)
        return 1


def _safe_url(settings: Settings) -> str:
    """The database URL as an operator may see it printed: the password hidden."""
    from sqlalchemy.engine import make_url

    assert settings.database_url is not None
    return make_url(settings.database_url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
