"""Provenance: the commit's dirty flag ignores results/, the hardware names the CPU."""

import json
import shutil
import subprocess
import sys

import pytest

from pwopsd import provenance


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_dirty_flag_counts_code_not_results(tmp_path, monkeypatch):
    """A clone whose only change is a results file is clean; a changed code file is dirty."""
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "pkg.py").write_text("x = 1\n")
    (repo / "results" / "a.json").write_text("{}\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    commit = provenance.git_commit

    assert not commit().endswith("-dirty")
    (repo / "results" / "a.json").write_text('{"x": 1}\n')  # a second results file written
    assert not commit().endswith("-dirty")
    (repo / "pkg.py").write_text("x = 2\n")
    assert commit().endswith("-dirty")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_hardware_names_the_cpu():
    hw = provenance.hardware()
    assert hw["processor"], hw  # platform.processor() alone is "" on Linux
    assert set(hw["cpu_flags"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_tile"}


def test_results_files_store_paths_relative_to_the_repository(tmp_path):
    """A path inside the repository is written relative to its root (the file reads the same on
    every machine); a path outside it, and text that only starts with "/", are kept."""
    root = provenance.REPO_ROOT
    payload = {
        "models": {"qwen3": str(root / "checkpoints" / "toy-qwen3")},
        "out_dir": root / "results" / "toy",
        "list": [str(root / "data" / "toy" / "toy_val.jsonl"), "/usr/lib", "/ not a path"],
        "n": 3,
    }
    out = provenance.write_json(tmp_path / "r.json", payload)
    back = json.loads(out.read_text())
    assert back["models"] == {"qwen3": "checkpoints/toy-qwen3"}
    assert back["out_dir"] == "results/toy"
    assert back["list"] == ["data/toy/toy_val.jsonl", "/usr/lib", "/ not a path"]
    assert back["n"] == 3


def test_a_rerun_with_absolute_paths_matches_its_relative_settings(tmp_path):
    """Settings are stored repo-relative; the same run asked again with absolute paths is the
    same run (no mismatch), and another model is still refused."""
    from pwopsd import jsonl

    root = provenance.REPO_ROOT
    path = tmp_path / "settings.json"
    jsonl.check_settings(path, {"model": str(root / "checkpoints" / "toy-qwen3")}, "a run", "x")
    assert json.loads(path.read_text()) == {"model": "checkpoints/toy-qwen3"}
    jsonl.check_settings(path, {"model": str(root / "checkpoints" / "toy-qwen3")}, "a run", "x")
    with pytest.raises(jsonl.SettingsMismatch, match="toy-llama"):
        jsonl.check_settings(path, {"model": str(root / "checkpoints" / "toy-llama")}, "a run", "x")
