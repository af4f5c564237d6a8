"""Corpus readers, manifest helpers and artist-disjoint splits."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.datasets import (
    Item,
    Manifest,
    drop_unreadable,
    load_corpus,
    read_folders,
    read_pbn,
    split_artists,
)


def _image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 18), colour).save(path, format=fmt)
    return path


def _truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


TRAIN_INFO = ["filename", "artist", "title", "style", "genre", "date"]
ALL_DATA = ["artist", "date", "genre", "pixelsx", "pixelsy", "size_bytes", "source", "style", "title"]
ALL_DATA += ["artist_group", "in_train", "new_filename"]


def _all_data_row(artist: str, in_train: bool, filename: str) -> list[str]:
    return [
        artist,
        "1900",
        "portrait",
        "12",
        "9",
        "100",
        "wikiart",
        "Cubism",
        "t",
        "train_only",
        str(in_train),
        filename,
    ]


def test_read_pbn_train_info_skips_missing_and_corrupt(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "1.jpg")
    _image(tmp_path / "train" / "2.jpg", (0, 200, 0))
    _image(tmp_path / "train" / "3.jpg", (0, 0, 200))
    (tmp_path / "train" / "4.jpg").write_bytes(b"this is not a jpeg")
    _truncated_jpeg(tmp_path / "train" / "5.jpg")
    rows = [
        ["1.jpg", "Monet", "a", "Impressionism", "landscape", "1890"],
        ["2.jpg", "Monet", "b", "Impressionism", "landscape", "1891"],
        ["3.jpg", "Degas", "c", "Impressionism", "genre", ""],
        ["4.jpg", "Degas", "d", "", "", ""],
        ["5.jpg", "Manet", "e", "", "", ""],
        ["6.jpg", "Manet", "never downloaded", "", "", ""],
        ["7.jpg", "", "no artist", "", "", ""],
    ]
    _csv(tmp_path / "train_info.csv", TRAIN_INFO, rows)

    m = read_pbn(tmp_path)
    assert [it.image_id for it in m] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "5.jpg"]
    assert m[0] == Item("1.jpg", tmp_path / "train" / "1.jpg", "Monet")
    assert m.meta["missing_files"] == 1 and m.meta["unlabelled"] == 1 and m.meta["flavour"] == "train_info"

    kept, n_skipped = drop_unreadable(m)
    assert n_skipped == 2
    assert [it.image_id for it in kept] == ["1.jpg", "2.jpg", "3.jpg"]
    assert kept.meta["unreadable"] == 2
    kept2, n2 = drop_unreadable(m, workers=2)
    assert n2 == 2 and list(kept2) == list(kept)


def test_read_pbn_all_data_info_uses_train_and_test_folders(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "10.jpg")
    _image(tmp_path / "test" / "11.jpg")
    _image(tmp_path / "train" / "12.jpg")
    rows = [
        _all_data_row("Klimt", True, "10.jpg"),
        _all_data_row("Klimt", False, "11.jpg"),
        _all_data_row("Schiele", True, "12.jpg"),
        _all_data_row("Schiele", False, "12.jpg"),  # listed twice: must not appear twice
        _all_data_row("Schiele", False, "13.jpg"),  # test image not downloaded
    ]
    _csv(tmp_path / "all_data_info.csv", ALL_DATA, rows)
    _csv(tmp_path / "train_info.csv", TRAIN_INFO, [["10.jpg", "Klimt", "", "", "", ""]])

    m = read_pbn(tmp_path)  # all_data_info.csv is preferred: it also labels test/
    assert m.meta["flavour"] == "all_data_info"
    assert [(it.image_id, it.path.parent.name, it.artist) for it in m] == [
        ("10.jpg", "train", "Klimt"),
        ("11.jpg", "test", "Klimt"),
        ("12.jpg", "train", "Schiele"),
    ]
    assert m.meta["missing_files"] == 1

    only_train = read_pbn(tmp_path, csv_name="train_info.csv")
    assert [it.image_id for it in only_train] == ["10.jpg"]


def test_read_pbn_missing_column_names_it(tmp_path: Path) -> None:
    header = [c for c in ALL_DATA if c != "in_train"]
    _csv(tmp_path / "all_data_info.csv", header, [["Klimt"] * len(header)])
    with pytest.raises(ValueError, match=r"all_data_info\.csv.*'in_train'"):
        read_pbn(tmp_path)
    _csv(tmp_path / "train_info.csv", ["filename", "title"], [["1.jpg", "x"]])
    with pytest.raises(ValueError, match=r"train_info\.csv.*'artist'"):
        read_pbn(tmp_path, csv_name="train_info.csv")


def test_read_pbn_without_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_info.csv"):
        read_pbn(tmp_path)


def test_read_folders(tmp_path: Path) -> None:
    _image(tmp_path / "vermeer" / "a.JPG", fmt="JPEG")
    _image(tmp_path / "vermeer" / "b.Png", fmt="PNG")
    _image(tmp_path / "vermeer" / "early" / "c.webp", fmt="WEBP")
    _image(tmp_path / "vermeer" / ".hidden.jpg", fmt="JPEG")
    _image(tmp_path / "vermeer" / ".thumbs" / "d.jpg", fmt="JPEG")
    (tmp_path / "vermeer" / "notes.txt").write_text("not an image")
    _image(tmp_path / "hals" / "e.tiff", fmt="TIFF")
    _image(tmp_path / ".git" / "f.jpg", fmt="JPEG")
    (tmp_path / "stray.jpg").write_bytes(b"")  # not in an artist folder

    m = read_folders(tmp_path)
    assert [(it.image_id, it.artist) for it in m] == [
        ("hals/e.tiff", "hals"),
        ("vermeer/a.JPG", "vermeer"),
        ("vermeer/b.Png", "vermeer"),
        ("vermeer/early/c.webp", "vermeer"),
    ]
    assert all(it.path.is_file() for it in m)
    assert load_corpus(f"folders:{tmp_path}") == m


def test_load_corpus_specs(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "1.jpg")
    _csv(tmp_path / "train_info.csv", TRAIN_INFO, [["1.jpg", "Monet", "", "", "", ""]])
    assert len(load_corpus(f"pbn:{tmp_path}")) == 1
    with pytest.raises(FileNotFoundError, match="corpus.json"):
        load_corpus(f"synthetic:{tmp_path}")
    with pytest.raises(ValueError, match="unknown kind"):
        load_corpus(f"kaggle:{tmp_path}")
    with pytest.raises(ValueError, match="expected"):
        load_corpus(str(tmp_path.name))


def _fake_manifest(counts: list[int]) -> Manifest:
    return Manifest(
        Item(f"a{a}/{j}.jpg", Path(f"/nowhere/a{a}/{j}.jpg"), f"a{a:02d}")
        for a, n in enumerate(counts)
        for j in range(n)
    )


def test_manifest_helpers_and_csv_round_trip(tmp_path: Path) -> None:
    m = _fake_manifest([3, 1, 2])
    labels, names = m.labels()
    assert names == ["a00", "a01", "a02"]
    assert labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert all(names[lab] == it.artist for lab, it in zip(labels, m, strict=True))
    assert isinstance(m[1:3], Manifest) and len(m[1:3]) == 2 and m[0].artist == "a00"

    s = split_artists(_fake_manifest([4] * 8 + [1] * 3), seed=1)
    back = Manifest.from_csv(s.to_csv(tmp_path / "manifest.csv"))
    assert list(back) == list(s)
    assert all(isinstance(it.path, Path) for it in back)
    with pytest.raises(ValueError, match="'split'"):
        _csv(tmp_path / "bad.csv", ["image_id", "path", "artist"], [["x", "y", "z"]])
        Manifest.from_csv(tmp_path / "bad.csv")


def test_split_artists_is_artist_disjoint_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    counts = [int(c) for c in rng.integers(2, 12, 40)] + [1] * 10
    m = _fake_manifest(counts)
    s = split_artists(m, val=0.15, test=0.15, seed=7)

    assert len(s) == len(m) and [it.image_id for it in s] == [it.image_id for it in m]
    ids = {name: {it.image_id for it in s.by_split(name)} for name in ("train", "val", "test")}
    assert set().union(*ids.values()) == {it.image_id for it in m}  # every image somewhere, none twice:
    assert sum(len(v) for v in ids.values()) == len(m)
    artists = {name: set(s.by_split(name).artists()) for name in ids}
    assert not artists["train"] & artists["val"]
    assert not artists["train"] & artists["test"]
    assert not artists["val"] & artists["test"]
    assert len(artists["val"]) == len(artists["test"]) == round(0.15 * 40) + round(0.15 * 10)
    for name in ("val", "test"):
        per = Counter(it.artist for it in s.by_split(name))
        assert sum(n >= 2 for n in per.values()) >= 2
    assert not s.by_split("test_seen")

    assert list(split_artists(m, seed=7)) == list(s)
    assert list(split_artists(m, seed=8)) != list(s)

    summary = s.summary()
    assert summary["all"] == {"images": len(m), "artists": 50, "singletons": 10}
    assert sum(summary[k]["images"] for k in ("train", "val", "test")) == len(m)
    assert summary["val"]["singletons"] == 2 and summary["test"]["singletons"] == 2


def test_split_artists_seen_split() -> None:
    m = _fake_manifest([10] * 12 + [2, 1])
    s = split_artists(m, val=0.2, test=0.2, seed=0, seen_test_fraction=0.3)
    train, seen = s.by_split("train"), s.by_split("test_seen")
    assert set(seen.artists()) <= set(train.artists())  # seen = held-out images of training artists
    assert not {it.image_id for it in seen} & {it.image_id for it in train}
    assert not set(seen.artists()) & (set(s.by_split("val").artists()) | set(s.by_split("test").artists()))
    per_all = Counter(it.artist for it in m)
    per_train = Counter(it.artist for it in train)
    per_seen = Counter(it.artist for it in seen)
    assert sum(per_seen.values()) > 0
    for artist in per_train:
        total = per_all[artist]
        assert per_seen[artist] == min(round(0.3 * total), total - 1)  # at least one image stays in train
        assert per_train[artist] == total - per_seen[artist]
    assert sum(Counter(it.split for it in s).values()) == len(m)
    # the artist-disjoint part is unchanged by asking for a seen split
    plain = split_artists(m, val=0.2, test=0.2, seed=0)
    assert plain.by_split("val") == s.by_split("val") and plain.by_split("test") == s.by_split("test")


def test_split_artists_rejects_tiny_corpora() -> None:
    with pytest.raises(ValueError, match="at least 6 artists"):
        split_artists(_fake_manifest([3] * 5 + [1] * 20))
    s = split_artists(_fake_manifest([3] * 6))  # the minimum: two artists with positives per split
    assert [len(s.by_split(n).artists()) for n in ("train", "val", "test")] == [2, 2, 2]
    with pytest.raises(ValueError):
        split_artists(_fake_manifest([3] * 6), val=0.5, test=0.5)
