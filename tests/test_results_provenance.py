"""Committed results files read the same on every machine: no absolute paths, and (once the
results are regenerated from one clean commit) no dirty commits."""

from __future__ import annotations

import json
import subprocess

from pwopsd import provenance
from tests.conftest import REPO_ROOT


def _committed_results() -> list:
    out = subprocess.run(
        ["git", "ls-files", "results"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO_ROOT / f for f in out if f.endswith(".json")]


def test_the_audit_finds_absolute_paths_and_dirty_commits_wherever_they_nest(tmp_path):
    folder = REPO_ROOT / "results" / "_audit_test"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        good = folder / "good.json"
        good.write_text(json.dumps({
            "models": {"qwen3": "checkpoints/toy-qwen3"}, "note": "/ not a path",
            "provenance": {"git_commit": "abc"},
        }))  # fmt: skip
        bad = folder / "bad.json"
        bad.write_text(json.dumps({
            "rows": [{"model": "/home/me/pwopsd/checkpoints/toy-qwen3"}],
            "per_family": {"qwen3": {"provenance": {"git_commit": "def-dirty"}}},
            "provenance": {"git_commit": "abc"},
        }))  # fmt: skip
        found = provenance.audit_results([good, bad])
        assert found["absolute paths"] == [
            "results/_audit_test/bad.json: /home/me/pwopsd/checkpoints/toy-qwen3"
        ]
        assert found["dirty commits"] == ["results/_audit_test/bad.json: def-dirty"]
        assert sorted(found["commits"]) == [
            "results/_audit_test/bad.json: abc",
            "results/_audit_test/bad.json: def-dirty",
            "results/_audit_test/good.json: abc",
        ]
    finally:
        for f in folder.glob("*.json"):
            f.unlink()
        folder.rmdir()


def test_no_committed_results_file_stores_an_absolute_path():
    """A path of the machine a run used (``/home/...``) would not exist on the reader's."""
    files = _committed_results()
    assert files, "no committed results files found"
    assert provenance.audit_results(files)["absolute paths"] == []
