"""A "Covered by <test file>" in the code names a test file that exists.

Every .py file under service/, training/, bench/ and contract/ is scanned. A sentence starting "Covered by" may
name several files ("tests/a.py and tests/b.py"), a glob ("tests/service/test_api_*.py", which must match at
least one file), a folder of tests ("tests/contract/") or a bare file name after a path ("tests/service/x.py and
test_y.py": read in the same folder).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "training", "bench", "contract")
# from "Covered by" to the end of its sentence: a full stop not followed by a word character (".py" goes on)
COVERED = re.compile(r"Covered\s+by\b(?P<tail>.*?)(?:\.(?!\w)|\"\"\"|$)", re.S)
# a file (may be a glob), or a folder of tests ("tests/contract/")
PATH = re.compile(r"[\w./*-]*[\w*]\.py\b|\btests(?:/[\w-]+)*/")


def named_tests(text: str) -> list[list[str]]:
    """Per "Covered by" sentence, the test paths it names (relative to the repository root)."""
    out = []
    for m in COVERED.finditer(text):
        paths: list[str] = []
        for name in PATH.findall(m.group("tail")):
            if "/" not in name and paths:
                name = str(Path(paths[-1]).parent / name)
            paths.append(name)
        out.append(paths)
    return out


def missing(paths: list[str]) -> list[str]:
    """The named paths with no file behind them: a glob needs one match, a folder one test_*.py file; a bare name
    (no folder to read it in) is always missing."""
    bad = []
    for p in paths:
        if p.endswith("/"):
            found = any((ROOT / p).rglob("test_*.py"))
        elif "*" in p:
            found = any(f.is_file() for f in ROOT.glob(p))
        else:
            found = (ROOT / p).is_file()
        if "/" not in p or not found:
            bad.append(p)
    return bad


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def test_the_scanner_reads_what_the_code_writes(tmp_path: Path) -> None:
    text = '''"""Thing.

    Covered by tests/service/test_api_*.py. Also see service/x.py.
    """
    # Covered by tests/training/test_e2e.py, and on PostgreSQL by
    # tests/service/test_postgres.py (and the 401s by test_api_auth.py).
    """Covered by tests/service/test_nothing_here.py."""
    """Covered by the e2e test."""
    """Covered by tests/training/."""
    '''
    named = named_tests(text)
    assert named == [
        ["tests/service/test_api_*.py"],
        ["tests/training/test_e2e.py", "tests/service/test_postgres.py", "tests/service/test_api_auth.py"],
        ["tests/service/test_nothing_here.py"],
        [],
        ["tests/training/"],
    ]
    assert missing(named[0] + named[1]) == []
    assert missing(named[2]) == ["tests/service/test_nothing_here.py"]
    assert missing(named[4]) == []
    assert missing(["tests/service/test_api_nothing*.py", "test_e2e.py", "tests/nothing/"]) == [
        "tests/service/test_api_nothing*.py",
        "test_e2e.py",
        "tests/nothing/",
    ]
    # the packages do use the phrase: this test cannot pass by finding nothing
    assert sum(len(named_tests(p.read_text())) for p in sources()) >= 20


@pytest.mark.parametrize("source", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_covered_by_names_test_files_that_exist(source: Path) -> None:
    for paths in named_tests(source.read_text(encoding="utf-8")):
        assert paths, f"{source.relative_to(ROOT)}: a 'Covered by' that names no test file"
        assert not missing(paths), f"{source.relative_to(ROOT)} says it is covered by missing {missing(paths)}"
