"""Model upgrade while serving: re-embed with a new model beside the old one, then switch every replica at once.

The database holds which model serves (`serving_model`, one row) and what each replica has loaded (`replicas`,
a heartbeat per process). `python -m service upgrade --to DIR` (`run_upgrade`) then:

1. embeds every stored original with the new model (embeddings are tagged by model id, so the old model's
   answers never see them), with a progress bar; it repeats until no work lacks one;
2. stages the new model: every replica loads it and builds its index beside the serving one, and says so in
   its heartbeat; the upgrade waits until every live replica is ready;
3. switches in ONE transaction that first takes the `gallery_state` row lock (which every enrolment takes
   too), checks that no work lacks a new-model embedding (else it embeds the stragglers and tries again) and
   sets `serving_model`.

Each replica (`ModelSwitch`, wired by service/main.py) reads `serving_model` at the start of every `/v1`
request (and once a second in the background): when it changed, it lets the requests in flight finish, brings
its staged bundle's index up to date and swaps the whole serving bundle — model, gallery view, calibrator,
quality rules, all built by the one `BundleFactory` (service/serving/bundle.py) — between two requests, through
the runtime's single bundle reference. So a request that starts after the
switch committed is answered by the new model on every replica, and no answer mixes the two. An enrolment
served by a replica that has not swapped yet is refused inside its transaction with 503 `model_switching`
(Retry-After 1) instead of storing a work without the new embedding. A failure or interruption before step 3
leaves `serving_model` as it was (the staged model is dropped again); nothing is half-switched.
Covered by tests/service/test_upgrade.py and, across PostgreSQL replicas, tests/deploy/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send
from tqdm import tqdm

from service.api.middleware import KEYED_PREFIX
from service.errors import ModelSwitching
from service.serving.bundle import Bundle
from service.serving.runtime import Runtime
from service.storage.db import make_sessionmaker
from service.storage.schema import ReplicaRow, ServingModelRow, utcnow

log = logging.getLogger(__name__)

LIVE_AFTER = timedelta(seconds=10)  # a replica whose heartbeat is older is taken for gone


class UpgradeError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _serving(s: Session) -> ServingModelRow | None:
    return s.get(ServingModelRow, 1)


def ensure_serving_row(db: sa.Engine, model_id: str, model_dir: str) -> ServingModelRow:
    """The serving row, created with this model when the deployment has none yet (its first start)."""
    sessions = make_sessionmaker(db)
    try:
        with sessions.begin() as s:
            row = _serving(s)
            if row is None:
                row = ServingModelRow(id=1, model_id=model_id, model_dir=model_dir)
                s.add(row)
            return row
    except sa.exc.IntegrityError:  # another replica starting at the same time inserted it
        with sessions() as s:
            row = _serving(s)
            assert row is not None
            return row


# ---- replica side --------------------------------------------------------------------------------------------
class _Gate:
    """Requests share it; a swap takes it alone, after the requests in flight are done."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._active = 0
        self._closed = False

    async def enter(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._closed)
            self._active += 1

    async def leave(self) -> None:
        async with self._cond:
            self._active -= 1
            self._cond.notify_all()

    async def exclusive(self, fn: Callable[[], Any]) -> Any:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._closed)
            self._closed = True
            await self._cond.wait_for(lambda: self._active == 0)
        try:
            return await asyncio.to_thread(fn)
        finally:
            async with self._cond:
                self._closed = False
                self._cond.notify_all()


class ModelSwitch:
    """Keeps one serving process on the model `serving_model` names (see the module docstring)."""

    def __init__(self, runtime: Runtime, model_dir: str | Path, poll_s: float = 1.0):
        self.runtime = runtime
        self.db: sa.Engine = runtime.db
        self.poll_s = poll_s
        self.replica_id = uuid.uuid4().hex
        self._sessions = make_sessionmaker(self.db)
        self._gate = _Gate()
        self._prepared: Bundle | None = None  # a staged bundle of the model being upgraded to
        self._prepare_lock = threading.Lock()
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self.on_switch: Callable[[Bundle], None] | None = None
        own_dir = str(Path(model_dir).resolve())
        configured = runtime.model_id
        row = ensure_serving_row(self.db, configured, own_dir)
        # every bundle this process builds from now on gets the write guard, and so does the serving one
        runtime.factory.on_build = self._guard
        self._guard(runtime.bundle)
        if row.model_id != configured:
            if live_replicas(self._sessions):
                # the deployment switched while this process was down: serve what the others serve
                log.info(
                    "model switch: serving %s like the running replicas (configured: %s)", row.model_id, configured
                )
                self._install(self._prepare(row.model_id, row.model_dir))
            else:
                # nothing else serves: the operator changed the model offline (stop, reindex, start)
                with self._sessions.begin() as s:
                    current = _serving(s)
                    assert current is not None
                    current.model_id, current.model_dir = configured, own_dir
                    current.staged_model_id = current.staged_model_dir = None
                    current.switched_at = utcnow()
                log.info("model switch: %s serves from now on (was %s)", configured, row.model_id)

    # -- lifecycle
    async def start(self) -> None:
        await asyncio.to_thread(self._heartbeat)
        self._task = asyncio.create_task(self._poll(), name="model-switch")
        # its own task: staging a model (its gallery tables) can take longer than LIVE_AFTER, and a replica busy
        # staging must not look gone to the upgrade waiting for it
        self._beat = asyncio.create_task(self._beat_loop(), name="model-switch-heartbeat")

    async def stop(self) -> None:
        for task in (self._task, self._beat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            with self._sessions.begin() as s:
                s.execute(sa.delete(ReplicaRow).where(ReplicaRow.id == self.replica_id))
        except Exception:  # noqa: BLE001 - a stale heartbeat expires by itself
            log.warning("model switch: could not remove this replica's heartbeat", exc_info=True)

    async def _poll(self) -> None:
        while True:
            try:
                await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a store hiccup must not end the loop
                log.warning("model switch: poll failed", exc_info=True)
            await asyncio.sleep(self.poll_s)

    async def _beat_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._heartbeat)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a store hiccup must not end the loop
                log.warning("model switch: heartbeat failed", exc_info=True)
            await asyncio.sleep(self.poll_s)

    # -- per request
    async def serve(self, call: Callable[[], Any]) -> None:
        try:
            await self.follow(stage=False)
        except Exception:  # noqa: BLE001 - the store is unreachable: serve on with the model this process has
            log.warning("model switch: could not read the serving model", exc_info=True)
        await self._gate.enter()
        try:
            await call()
        finally:
            await self._gate.leave()

    async def follow(self, stage: bool = True) -> None:
        """Swap to the serving model if the database names another; with `stage`, load a staged one (the
        background poll does that, never a request)."""
        row = await asyncio.to_thread(self._read)
        if row is None:
            return
        model_id, model_dir, staged_id, staged_dir = row
        if model_id != self.runtime.model_id:
            await self._gate.exclusive(lambda: self._switch(model_id, model_dir))
        elif not stage:
            return
        elif staged_id and staged_id != model_id and (self._prepared is None or self._prepared.model_id != staged_id):
            await asyncio.to_thread(self._stage, staged_id, staged_dir)
        elif not staged_id and self._prepared is not None:
            self._prepared = None  # the upgrade was abandoned: free the staged model

    def _read(self) -> tuple[str, str, str | None, str | None] | None:
        with self._sessions() as s:
            r = _serving(s)
            return None if r is None else (r.model_id, r.model_dir, r.staged_model_id, r.staged_model_dir)

    def _heartbeat(self) -> None:
        with self._sessions.begin() as s:
            row = s.get(ReplicaRow, self.replica_id)
            if row is None:
                row = ReplicaRow(id=self.replica_id, host=socket.gethostname()[:255], pid=os.getpid(), model_id="")
                s.add(row)
            row.model_id = self.runtime.model_id
            row.staged_ready = self._prepared.model_id if self._prepared is not None else None
            row.error = self._error
            row.seen = utcnow()

    # -- staging and switching (worker threads)
    def _prepare(self, model_id: str, model_dir: str | None) -> Bundle:
        """The bundle of `model_id`, built by the runtime's factory like every bundle (its write guard included)."""
        if not model_dir:
            raise UpgradeError("model_unavailable", f"no directory recorded for model {model_id}")
        bundle = self.runtime.factory.load(model_dir)
        if bundle.model_id != model_id:
            raise UpgradeError("model_mismatch", f"{model_dir} holds {bundle.model_id}, not {model_id}")
        return bundle

    def _stage(self, model_id: str, model_dir: str | None) -> None:
        with self._prepare_lock:
            if self._prepared is not None and self._prepared.model_id == model_id:
                return
            try:
                staged = self._prepare(model_id, model_dir)
                # the new model's gallery tables, built now (off the request path): the first replies after the
                # switch already have calibration of their own model, if the gallery is large enough
                staged.calibrate()
                self._prepared = staged
                self._error = None
                log.info("model switch: %s staged", model_id)
            except Exception as e:  # noqa: BLE001 - reported to the upgrade through the heartbeat
                self._error = f"{type(e).__name__}: {e}"[:1024]
                log.error("model switch: staging %s failed: %s", model_id, self._error)
        self._heartbeat()

    def _switch(self, model_id: str, model_dir: str) -> None:
        """Runs with no request in flight on this replica."""
        if self.runtime.model_id == model_id:  # another request or the poll switched first
            return
        with self._prepare_lock:
            prepared = self._prepared
            if prepared is None or prepared.model_id != model_id:
                prepared = self._prepare(model_id, model_dir)
            self._install(prepared)
            self._prepared = None
        self._heartbeat()

    def _install(self, bundle: Bundle) -> None:
        # the switch bumped gallery_state, so this reloads the staged index with everything written since staging
        bundle.sync()
        old = self.runtime.bundles.swap(bundle)
        log.info("model switch: now serving %s (was %s)", bundle.model_id, old.model_id)
        if self.on_switch is not None:
            self.on_switch(bundle)

    @staticmethod
    def _guard(bundle: Bundle) -> None:
        model_id = bundle.model_id

        def guard(s: Session) -> None:
            # inside the enrolment's transaction, after its gallery_state row lock: ordered with the switch
            serving = s.scalar(sa.select(ServingModelRow.model_id).where(ServingModelRow.id == 1))
            if serving is not None and serving != model_id:
                raise ModelSwitching(serving)

        bundle.store.write_guard = guard


class ModelGate:
    """ASGI middleware: every `/v1` request first follows the serving model (service/main.py adds it)."""

    def __init__(self, app: ASGIApp, switch: Callable[[], ModelSwitch | None]):
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        switch = self.switch() if scope["type"] == "http" and scope["path"].startswith(KEYED_PREFIX) else None
        if switch is None:
            await self.app(scope, receive, send)
            return
        await switch.serve(lambda: self.app(scope, receive, send))


# ---- the upgrade command -------------------------------------------------------------------------------------
@dataclass
class UpgradeResult:
    old_model: str
    new_model: str
    embedded: int
    replicas: int
    switched: bool
    seconds: float


def _stage_row(sessions: Any, model_id: str | None, model_dir: str | None) -> None:
    with sessions.begin() as s:
        row = _serving(s)
        assert row is not None
        row.staged_model_id, row.staged_model_dir = model_id, model_dir


def live_replicas(sessions: Any) -> list[ReplicaRow]:
    with sessions() as s:
        cutoff = utcnow() - LIVE_AFTER
        return list(s.scalars(sa.select(ReplicaRow).where(ReplicaRow.seen >= cutoff).order_by(ReplicaRow.id)))


def run_upgrade(
    settings: Any,
    new_model_dir: str | Path,
    wait_s: float = 120.0,
    progress: bool = True,
    print_fn: Callable[[str], None] = lambda m: print(m, flush=True),
) -> UpgradeResult:
    """Steps 1–3 of the module docstring. Raises UpgradeError (the old model still serving) on any failure."""
    t0 = time.monotonic()
    new_dir = str(Path(new_model_dir).resolve())
    runtime = Runtime.from_settings(settings.model_copy(update={"model_dir": Path(new_dir)}))
    db = runtime.db
    sessions = make_sessionmaker(db)
    staged = False
    try:
        with sessions() as s:
            row = _serving(s)
        if row is None:
            raise UpgradeError("not_serving", "no serving model is recorded: start the service once before upgrading")
        old, new = row.model_id, runtime.model_id
        if old == new:
            return UpgradeResult(old, new, 0, len(live_replicas(sessions)), False, time.monotonic() - t0)
        print_fn(f"upgrade {old} -> {new}: embedding {runtime.missing()} works with the new model")
        embedded = 0
        for attempt in range(6):
            embedded += _embed_missing(runtime, progress)
            # stage (once), wait for every live replica, then switch in one transaction
            if not staged:
                _stage_row(sessions, new, new_dir)
                staged = True
                n = _wait_for_replicas(sessions, new, wait_s, print_fn)
            store = runtime.bundle.store
            with store.write() as s:
                # the gallery_state row lock first: every enrolment takes it, so none slips past this check
                lacking = store.count_missing(new, s)
                if lacking == 0:
                    row2 = _serving(s)
                    assert row2 is not None
                    row2.model_id, row2.model_dir = new, new_dir
                    row2.staged_model_id = row2.staged_model_dir = None
                    row2.switched_at = utcnow()
            if lacking == 0:
                staged = False
                print_fn(f"switched to {new}: {n} replica(s) follow on their next request (at most 1 s)")
                return UpgradeResult(old, new, embedded, n, True, time.monotonic() - t0)
            print_fn(f"{lacking} works were enrolled meanwhile; embedding them too (attempt {attempt + 2})")
        raise UpgradeError("upgrade_not_converging", "works keep arriving faster than they are embedded; retry later")
    finally:
        if staged:
            try:
                _stage_row(sessions, None, None)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.warning("upgrade: could not clear the staged model", exc_info=True)
        runtime.close()


def _embed_missing(runtime: Runtime, progress: bool) -> int:
    with tqdm(total=runtime.missing(), desc="re-embed", unit="work", disable=not progress) as bar:
        # not announced: the serving replicas need not reload for embeddings of a model they do not serve; the
        # staged indexes reload when the switch bumps gallery_state
        result = runtime.reindex(on_progress=bar.update, announce=False)
    if result.failed:
        raise UpgradeError(
            "reembed_failed",
            f"{len(result.failed)} works could not be embedded with the new model (e.g. {result.failed[0]}); "
            "delete or re-upload them, then run the upgrade again",
        )
    return int(result.embedded)


def _wait_for_replicas(sessions: Any, new: str, wait_s: float, print_fn: Callable[[str], None]) -> int:
    deadline = time.monotonic() + wait_s
    last = ""
    while True:
        live = live_replicas(sessions)
        failed = [r for r in live if r.error]
        if failed:
            raise UpgradeError("staging_failed", f"replica {failed[0].host}:{failed[0].pid}: {failed[0].error}")
        ready = sum(1 for r in live if r.staged_ready == new)
        line = f"replicas ready with {new}: {ready}/{len(live)}"
        if line != last:
            print_fn(line)
            last = line
        if ready == len(live):
            return len(live)
        if time.monotonic() > deadline:
            raise UpgradeError("staging_timeout", f"{line} after {wait_s:.0f} s; the old model keeps serving")
        time.sleep(0.2)


def abort_upgrade(db: sa.Engine) -> bool:
    """Drop a staged model left by an interrupted upgrade; True when there was one."""
    sessions = make_sessionmaker(db)
    with sessions.begin() as s:
        row = _serving(s)
        if row is None or row.staged_model_id is None:
            return False
        row.staged_model_id = row.staged_model_dir = None
        return True
