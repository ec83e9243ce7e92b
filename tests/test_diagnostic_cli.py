"""``python -m pwopsd.diagnostic``: flags mirror DiagnosticConfig, --dry-run starts nothing."""

from __future__ import annotations

import dataclasses
import json
import re

import papermill as pm
import pytest

from pwopsd.config import DiagnosticConfig
from pwopsd.diagnostic.__main__ import _parser, main
from tests.conftest import REPO_ROOT


def test_every_config_field_is_a_flag_with_the_config_default():
    args = vars(_parser().parse_args([]))
    args.pop("dry_run")
    assert DiagnosticConfig(**args) == DiagnosticConfig()
    assert set(args) == {f.name for f in dataclasses.fields(DiagnosticConfig)}


def test_paper_dry_run_prints_the_plan(capsys, tmp_path):
    assert main(["--profile", "paper", "--dry-run", "--out-dir", str(tmp_path / "p")]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"] == "Qwen/Qwen3-4B" and plan["spine_budget_tokens"] == 38912
    assert set(plan["pools"]) >= {"math500", "aime24", "aime25"}
    assert plan["max_continuations"] == plan["max_forced_children"] * 8
    assert not (tmp_path / "p").exists(), "a dry run writes nothing"


def test_bad_flag_names_the_parameter(capsys):
    assert main(["--min-children", "5", "--dry-run"]) == 2
    assert "min_children=5" in capsys.readouterr().err


@pytest.mark.slow
def test_notebook_runs_end_to_end_on_a_tiny_hf_config(tmp_path):
    """The notebook the book's numbers come from: real toy model, HF generate, all phases."""
    out = tmp_path / "diag"
    pm.execute_notebook(
        str(REPO_ROOT / "notebooks" / "diagnostic.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters=dict(
            out_dir=str(out),
            backend="hf",
            max_problems=2,
            candidates_per_problem=1,
            children_per_candidate=2,
            rollouts_per_child=1,
            mc_samples=2,
            bootstrap=20,
        ),
        progress_bar=False,
        kernel_name="python3",
    )
    # a tiny run writes tagged files, never the full run's names
    # (the tag may end in a digit, "...-bootstrap20", so match the whole name)
    assert not [p for p in out.glob("*.json") if re.fullmatch(r"\w+\.seed\d+\.json", p.name)]
    (table,) = out.glob("table1.*.json")
    rows = json.loads(table.read_text())["rows"]
    assert any("position" in r["score"] for r in rows)
    (summary,) = out.glob("diagnostic.*.json")
    assert json.loads(summary.read_text())["status"] == "ok"
