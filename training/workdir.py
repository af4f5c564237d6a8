"""The work directory of a training run and its typed run state (WORK/run.json).

Stages communicate only through files here, so any stage can be rerun alone: `embed` writes the manifest, the
embeddings and what it was asked to do (`RunState.embed`); `train` writes heads/, `evaluate` eval/ and plots/;
every stage adds its time to `RunState.timings`. run.json is read back into `RunState` and validated: a file
this version cannot read is refused with a message saying so, never half-used. run.json files written before
the state was typed (flat keys, no "format") are read as they are. Covered by tests/training/test_workdir.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from training.settings import EmbedSettings

if TYPE_CHECKING:
    from training.evaluation.evaluate import HeadEvaluation

RUN_FILE = "run.json"
FORMAT: Literal[2] = 2


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Embedded(_State):
    """What `embed` was asked to do and what it found. `embedding_dim` is set once the embeddings are saved."""

    settings: EmbedSettings
    corpus_meta: dict[str, Any] = {}
    unreadable_skipped: int = 0
    summary: dict[str, dict[str, int]] = {}  # Manifest.summary(): split → images, artists, singletons
    embedding_dim: int | None = None
    backbone_weights: str | None = None  # provenance text of the backbone's weights


class RunState(_State):
    format: Literal[2] = FORMAT
    command: str = ""  # the command line of the last `run` / `make-default`, for the report
    timings: dict[str, float] = {}  # stage → seconds
    embed: Embedded | None = None


def _from_unversioned(data: Any) -> Any:
    """run.json before `format` 2 was one flat dict (corpus, arch, image_size, weights, seed, split_settings, …)."""
    if not isinstance(data, dict) or "format" in data:
        return data
    flat = dict(data)
    out: dict[str, Any] = {"format": FORMAT}
    for key in ("command", "timings"):
        if key in flat:
            out[key] = flat.pop(key)
    flat.pop("seed", None)  # the split seed, also in split_settings
    if "corpus" in flat:
        split = flat.pop("split_settings", None) or {}
        settings = {"corpus": flat.pop("corpus"), "split": split}
        settings |= {k: flat.pop(k) for k in ("arch", "image_size", "weights") if k in flat}
        out["embed"] = {"settings": settings, **flat}  # anything unknown left in flat is refused by validation
    elif flat:
        out["embed"] = flat  # keys without a corpus: not a state we know, refused by validation
    return out


class Work:
    """The work directory: caches, checkpoints, intermediate results, and run.json."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    manifest = property(lambda self: self.root / "manifest.csv")
    embeddings = property(lambda self: self.root / "embeddings.npy")
    cache = property(lambda self: self.root / "embed-cache")
    heads = property(lambda self: self.root / "heads")
    evals = property(lambda self: self.root / "eval")
    plots = property(lambda self: self.root / "plots")

    def state(self) -> RunState:
        """The run state (empty for a new work dir); SystemExit with the reason if run.json cannot be read."""
        if not self.run_file.is_file():
            return RunState()
        try:
            return RunState.model_validate(_from_unversioned(json.loads(self.run_file.read_text())))
        except json.JSONDecodeError as e:
            raise SystemExit(
                f"{self.run_file} is not a run state this version of training reads (not JSON: {e}); "
                "rerun embed, or use a fresh --work"
            ) from None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise SystemExit(
                f"{self.run_file} is not a run state this version of training reads ({where}: {first['msg']}); "
                "rerun embed, or use a fresh --work"
            ) from None

    def save(self, state: RunState) -> RunState:
        self.run_file.write_text(json.dumps(state.model_dump(mode="json"), indent=1) + "\n")
        return state

    def start(self, command: str, timings: dict[str, float] | None = None) -> RunState:
        """A new `run`: record its command line and forget the previous run's timings."""
        state = self.state()
        state.command, state.timings = command, dict(timings or {})
        return self.save(state)

    def timed(self, stage: str, seconds: float) -> None:
        state = self.state()
        state.timings = {**state.timings, stage: round(seconds, 1)}
        self.save(state)
        print(f"[{stage}] {seconds:.1f} s", flush=True)

    def embedded(self) -> Embedded:
        """What `embed` recorded, with its embeddings saved; SystemExit if embed has not finished here."""
        record = self.state().embed
        if record is None or record.embedding_dim is None or not self.embeddings.is_file():
            raise SystemExit(f"{self.root} holds no finished embed stage: run embed first")
        return record

    def write_evaluation(self, ev: HeadEvaluation) -> Path:
        """eval/<kind>.json: what `export` needs of an evaluation (calibration, metrics, plots, parameters)."""
        data = {
            "kind": ev.kind,
            "calibration": ev.calibration.model_dump(mode="json"),
            "metrics": ev.metrics,
            "plots": ev.plots,
            "params": ev.params,
            "train_summary": ev.train_summary,
        }
        self.evals.mkdir(exist_ok=True)
        path = self.evals / f"{ev.kind}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path

    def evaluated_kinds(self) -> list[str]:
        return [p.stem for p in sorted(self.evals.glob("*.json"))]

    def read_evaluation(self, kind: str) -> HeadEvaluation:
        path = self.evals / f"{kind}.json"
        if not path.is_file():
            raise SystemExit(f"no evaluation of the {kind} head in {self.evals}: run evaluate first")
        from contract.card import Calibration
        from training.evaluation.evaluate import HeadEvaluation

        d = json.loads(path.read_text())
        return HeadEvaluation(
            d["kind"],
            Calibration.model_validate(d["calibration"]),
            d["metrics"],
            d["plots"],
            d["params"],
            d["train_summary"],
        )
