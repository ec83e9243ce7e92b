"""``python -m pwopsd.bench loss`` end to end at a tiny size: the results file has the issue's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from pwopsd.bench.loss import make_mask, max_rel_err, row_lengths
from pwopsd.bench.memory import PeakRSS, current_rss
from pwopsd.config import REPO_ROOT


def test_loss_bench_tiny_run_writes_the_documented_json(tmp_path):
    out = tmp_path / "loss.json"
    cmd = [
        sys.executable, "-m", "pwopsd.bench", "loss", "--vocab", "700", "--batch", "2", "--seq", "48",
        "--hidden", "16", "--chunk-size", "16", "--no-compile", "--padded", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["config"]["vocab"] == 700 and data["config"]["row_lengths"] == [48, 36]
    assert set(data["impls"]) == {"oracle", "chunked", "fused_linear", "oracle_linear"}
    for name, r in data["impls"].items():
        for key in ("seconds", "baseline_rss_bytes", "peak_rss_bytes", "max_rel_grad_err"):
            assert key in r, (name, key)
        assert r["peak_rss_bytes"] >= r["baseline_rss_bytes"] > 0
        assert r["max_rel_grad_err"] <= 1e-5, name
    assert data["impls"]["oracle"]["max_rel_grad_err"] == 0.0
    assert abs(data["impls"]["chunked"]["loss"] - data["impls"]["oracle"]["loss"]) <= 1e-5
    assert "git_commit" in data["provenance"]
    assert "chunked_speedup" in data["targets"] and "fused_linear_memory_ratio" in data["targets"]
    assert "max rel grad err" in proc.stdout  # the printed table


def test_bench_helpers():
    assert row_lengths(3, 8, padded=True) == [8, 6, 4]
    mask = make_mask([3, 1], 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    ref = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    assert (
        abs(max_rel_err(ref + torch.tensor([[0.0, 0.02], [0.0, 0.0]]), ref, rows=1) - 0.01) < 1e-7
    )
    base = current_rss()
    with PeakRSS() as peak:
        block = torch.ones(64, 1024, 1024)  # 256 MiB, freed before the context exits
        time.sleep(0.05)
        del block
    assert peak.peak - base >= 200 * 2**20
    assert current_rss() - base < 200 * 2**20
