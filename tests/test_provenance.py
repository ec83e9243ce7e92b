"""Provenance: the commit's dirty flag ignores results/, the hardware names the CPU."""

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
