"""contract/card.py: the model card round-trips, refuses files that are not its own, and validates its tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.card import CARD_FILE, Calibration, Card, CardError, HeadSpec, load_card, sha256_file, write_card


@pytest.fixture
def card_dir(model_dir: Path, tmp_path: Path) -> Path:
    """A model directory whose ONNX files are small stand-ins, with the card's sha256 updated to match."""
    card = load_card(model_dir, verify_files=False)
    files = {}
    for name in card.onnx_files():
        (tmp_path / name).write_bytes(f"stand-in for {name}".encode())
        files[name] = sha256_file(tmp_path / name)
    write_card(card.model_copy(update={"files": files}), tmp_path)
    return tmp_path


def test_round_trip(card_dir: Path, tmp_path: Path) -> None:
    card = load_card(card_dir)
    again = tmp_path / "again"
    again.mkdir()
    write_card(card, again)
    assert Card.model_validate(json.loads((again / CARD_FILE).read_text())) == card
    assert card.model_id.startswith(f"{card.name}@{card.version}+") and len(card.model_id.split("+")[1]) == 12


def test_model_id_follows_the_files(card_dir: Path) -> None:
    card = load_card(card_dir)
    other = card.model_copy(update={"files": {**card.files, card.backbone.file: "0" * 64}})
    assert other.model_id != card.model_id
    assert load_card(card_dir).model_id == card.model_id


def _backbone(card: Card, **update: object) -> Card:
    """The card with its backbone section changed (nested keys as "preprocessing.grid")."""
    doc = card.backbone.model_dump()
    for key, value in update.items():
        *path, last = key.split(".")
        part = doc
        for p in path:
            part = part[p]
        part[last] = value
    return card.model_copy(update={"backbone": type(card.backbone).model_validate(doc)})


def test_model_id_follows_the_recipe(card_dir: Path) -> None:
    """Everything that changes an embedding changes the id, with the same files; provenance notes do not."""
    card = load_card(card_dir)
    p = card.backbone.preprocessing
    grid = (2, 2) if p.grid != (2, 2) else (1, 1)
    changes = {
        "preprocessing.grid": grid,
        "preprocessing.resize_shorter": p.resize_shorter + 32,
        "preprocessing.resample": "bicubic" if p.resample == "bilinear" else "bilinear",
        "preprocessing.mean": (0.5, 0.5, 0.5),
        "embedding.combine": "mean" if card.backbone.embedding.combine == "l2_mean" else "l2_mean",
        "input_name": "pixels",
    }
    ids = {key: _backbone(card, **{key: value}).model_id for key, value in changes.items()}
    assert card.model_id not in ids.values() and len(set(ids.values())) == len(ids), ids
    for key in ("weights", "arch", "embedding.description"):
        assert _backbone(card, **{key: "noted differently"}).model_id == card.model_id, key
    assert card.model_copy(update={"created": "later"}).model_id == card.model_id


def test_changed_file_is_refused(card_dir: Path) -> None:
    card = load_card(card_dir)
    (card_dir / card.head.file).write_bytes(b"other weights")
    with pytest.raises(CardError, match="does not match"):
        load_card(card_dir)
    assert load_card(card_dir, verify_files=False) == card


def test_missing_file_card_and_checksum(card_dir: Path, tmp_path: Path) -> None:
    card = load_card(card_dir)
    (card_dir / card.backbone.file).unlink()
    with pytest.raises(CardError, match="does not exist"):
        load_card(card_dir)
    with pytest.raises(CardError, match="no model.json"):
        load_card(tmp_path / "nowhere")
    (card_dir / card.backbone.file).write_bytes(b"x")
    write_card(card.model_copy(update={"files": {}}), card_dir)
    with pytest.raises(CardError, match="no sha256"):
        load_card(card_dir)


def test_invalid_json_and_unknown_fields(card_dir: Path) -> None:
    path = card_dir / CARD_FILE
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "surprise": 1}))
    with pytest.raises(CardError, match="not a valid model card"):
        load_card(card_dir)
    path.write_text("{not json")
    with pytest.raises(CardError, match="not a valid model card"):
        load_card(card_dir)


def test_calibration_tables_must_be_sorted_and_non_empty(card_dir: Path) -> None:
    cal = load_card(card_dir).calibration.model_dump()
    with pytest.raises(ValueError, match="sorted"):
        Calibration.model_validate({**cal, "pair": list(reversed(cal["pair"]))})
    with pytest.raises(ValueError, match="empty"):
        Calibration.model_validate({**cal, "pair": []})


def test_projection_and_comparator_come_together(card_dir: Path) -> None:
    head = load_card(card_dir).head.model_dump()
    part = {"file": "p.onnx", "input_names": ["embedding"], "output_name": "projection"}
    with pytest.raises(ValueError, match="together"):
        HeadSpec.model_validate({**head, "projection": part, "comparator": None})


def test_quality_bands_are_checked(card_dir: Path) -> None:
    cal = load_card(card_dir).calibration.model_dump()
    quality = {
        "features": ["sharpness"], "mean": [0.5], "scale": [0.1], "coef": [0.1], "intercept": 0.9, "floor": 0.6,
        "target": "t",
    }  # fmt: skip
    band = {"pair": cal["pair"], "recommended_threshold": 0.5, "recommended_rule": "r"}
    ok = Calibration.model_validate(
        {**cal, "quality": quality, "bands": [{**band, "min_quality": 0.8}, {**band, "min_quality": 0.6}]}
    )
    assert [b.min_quality for b in ok.bands] == [0.8, 0.6]
    with pytest.raises(ValueError, match="need a quality model"):
        Calibration.model_validate({**cal, "bands": [{**band, "min_quality": 0.8}]})
    with pytest.raises(ValueError, match="highest first"):
        Calibration.model_validate(
            {**cal, "quality": quality, "bands": [{**band, "min_quality": 0.6}, {**band, "min_quality": 0.8}]}
        )
    with pytest.raises(ValueError, match="floor"):
        Calibration.model_validate({**cal, "quality": quality, "bands": [{**band, "min_quality": 0.8}]})
    with pytest.raises(ValueError, match="same length"):
        Calibration.model_validate({**cal, "quality": {**quality, "coef": [0.1, 0.2]}})
    assert load_card(card_dir).calibration.quality is None  # cards without them load as before


def test_old_cards_without_counts_load_and_write_back_unchanged(card_dir: Path, tmp_path: Path) -> None:
    """Counts and row bounds are optional: a card from before them loads (its bounds are then unknown) and is
    written back byte for byte, with no nulls added."""
    raw = json.loads((card_dir / CARD_FILE).read_text())
    cal = raw["calibration"]
    for key in ("genuine_pairs", "impostor_pairs"):
        cal.pop(key, None)
    for row in cal["pair"]:
        row.pop("fpr_upper", None)
        row.pop("fnr_upper", None)
    for p in cal["portfolio"]:
        p.pop("genuine_trials", None)
        p.pop("impostor_trials", None)
        for row in p["table"]:
            row.pop("fpr_upper", None)
            row.pop("fnr_upper", None)
    (card_dir / CARD_FILE).write_text(json.dumps(raw, indent=2) + "\n")
    old = load_card(card_dir)
    assert old.calibration.genuine_pairs is None and old.calibration.impostor_pairs is None
    assert all(r.fpr_upper is None for r in old.calibration.pair)
    out = tmp_path / "old-again"
    out.mkdir()
    write_card(old, out)
    assert (out / CARD_FILE).read_text() == (card_dir / CARD_FILE).read_text()


def test_counts_round_trip_and_must_not_be_negative(card_dir: Path, tmp_path: Path) -> None:
    card = load_card(card_dir)
    cal = card.calibration
    portfolio = [p.model_copy(update={"genuine_trials": 64, "impostor_trials": 3682}) for p in cal.portfolio]
    counted = card.model_copy(
        update={
            "calibration": cal.model_copy(update={"genuine_pairs": 57, "impostor_pairs": 6025, "portfolio": portfolio})
        }
    )
    out = tmp_path / "counted"
    out.mkdir()
    write_card(counted, out)
    raw = json.loads((out / CARD_FILE).read_text())
    assert (raw["calibration"]["genuine_pairs"], raw["calibration"]["impostor_pairs"]) == (57, 6025)
    back = Card.model_validate(raw)
    assert back == counted
    raw["calibration"]["impostor_pairs"] = -1
    with pytest.raises(ValueError):
        Card.model_validate(raw)


def test_head_kinds_come_from_one_registry(card_dir: Path) -> None:
    from contract.heads import KINDS, TRAINED, head_kind

    assert set(KINDS) == {"seed", "symmetric", "cosine"} and TRAINED == ("seed", "symmetric")
    assert head_kind("cosine").order_free and not head_kind("seed").order_free
    head = load_card(card_dir).head.model_dump()
    with pytest.raises(ValueError, match="unknown head kind 'mlp'"):
        HeadSpec.model_validate({**head, "kind": "mlp"})
    # a kind that projects needs its projection; a cosine head its cosine spec
    with pytest.raises(ValueError, match="has a projection"):
        HeadSpec.model_validate({**head, "kind": "symmetric", "projection": None, "comparator": None})
    with pytest.raises(ValueError, match="cosine spec"):
        HeadSpec.model_validate({**head, "kind": "cosine", "cosine": None})


def test_seal_card_records_the_files_it_names(card_dir: Path, tmp_path: Path) -> None:
    import shutil

    from contract.card import seal_card

    card = load_card(card_dir)
    out = tmp_path / "sealed"
    out.mkdir()
    for name in card.onnx_files():
        shutil.copyfile(card_dir / name, out / name)
    (out / card.backbone.file).write_bytes(b"other weights")
    sealed = seal_card(card.model_copy(update={"files": {}}), out)
    assert sealed.files[card.backbone.file] == sha256_file(out / card.backbone.file)
    assert load_card(out) == sealed and sealed.model_id != card.model_id
