"""The committed toy diagnostic results: Table 1's schema and the toy profile's promise."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT

OUT = REPO_ROOT / "results" / "toy" / "diagnostic"
KEYS = {"score", "auroc", "ci_low", "ci_high", "auprc", "n_real_uncertain", "n_diversity"}


@pytest.fixture(scope="module")
def table():
    path = OUT / "table1.seed1.json"
    assert path.exists(), f"{path} is committed and missing: rerun `make diagnostic SEED=1`"
    return json.loads(path.read_text())


def test_table1_rows_and_provenance(table):
    rows = table["rows"]
    assert all(KEYS <= set(r) for r in rows)
    assert sum("position" in r["score"] for r in rows) == 1
    assert table["provenance"]["profile"] == "toy" and table["provenance"]["git_commit"]
    doc = json.loads((OUT / "diagnostic.seed1.json").read_text())
    assert doc["status"] == "ok" and doc["config"]["profile"] == "toy"


def test_toy_position_interval_is_narrower_than_0_3(table):
    # Issue 11: the toy profile gives enough labelled candidates for a usable interval.
    pos = next(r for r in table["rows"] if "position" in r["score"])
    assert pos["ci_low"] is not None and pos["ci_high"] - pos["ci_low"] < 0.3
    assert pos["ci_low"] <= pos["auroc"] <= pos["ci_high"]
