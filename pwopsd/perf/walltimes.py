"""Notebook wall times for the Reproduce page: one row per (seed, section) results file.

Reads the full-configuration results files under ``results/<profile>`` (their provenance:
command, machine, wall time, commit, date) and sums the wall time per seed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from pwopsd.config import NOTEBOOK_CONFIGS, RESULTS_DIR, TableSectionConfig
from pwopsd.perf.runinfo import commit_text, date_text, machine_text
from pwopsd.plots import load_json
from pwopsd.vocab import SECTION_TITLES

SECTIONS = tuple(NOTEBOOK_CONFIGS)
"""Every notebook (the paper's five and the two beyond it), in the order ``make results``
runs them."""

TABLE_SECTIONS = tuple(
    name for name, config in NOTEBOOK_CONFIGS.items() if issubclass(config, TableSectionConfig)
)
"""The method-table sections (every notebook but the diagnostic)."""


def notebook_result_files(results_dir: Path) -> list[tuple[str, int | None, Path]]:
    """(section, seed from the file name or None, path) of every full-configuration results
    file under ``results_dir`` (``results/<profile>``): ``<section>/<section>.seed<k>.json``,
    and for the diagnostic also ``diagnostic/diagnostic.json``. Tagged (scaled) runs are
    skipped."""
    found = []
    for section in SECTIONS:
        folder = Path(results_dir) / section
        pattern = re.compile(rf"{section}\.seed(\d+)\.json")
        for path in sorted(folder.glob(f"{section}*.json")):
            if m := pattern.fullmatch(path.name):
                found.append((section, int(m[1]), path))
            elif section == "diagnostic" and path.name == "diagnostic.json":
                found.append((section, None, path))
    return found


def notebook_runs(results_dir: Path = RESULTS_DIR / "toy") -> pd.DataFrame:
    """One row per (seed, section) with a results file: command, machine, wall time, commit.

    The seed comes from the file name, else from its provenance; a seeded file wins over
    ``diagnostic.json`` for the same seed. ``wall_seconds`` is the unrounded time.
    """
    rows: dict[tuple[int | None, str], dict[str, Any]] = {}
    for section, seed, path in notebook_result_files(results_dir):
        prov = (load_json(path) or {}).get("provenance") or {}
        seed = prov.get("seed") if seed is None else seed
        key = (seed, section)
        if key in rows and rows[key]["from_name"]:
            continue
        rows[key] = {
            "seed": seed,
            "section": section,
            "command": f"make {section} SEED={seed}",
            "machine": machine_text(prov.get("hardware") or {}),
            "wall time (min)": round((prov.get("wall_seconds") or 0) / 60, 1),
            "commit": commit_text(prov.get("git_commit")).replace("`", ""),
            "load (15-min mean at end)": (prov.get("load_average") or [None] * 3)[2] or "-",
            "finished": date_text(prov.get("written_at")),
            "wall_seconds": prov.get("wall_seconds") or 0.0,
            "from_name": path.name != "diagnostic.json",
        }
    order = {s: i for i, s in enumerate(SECTIONS)}
    keys = sorted(rows, key=lambda k: (k[0] if k[0] is not None else -1, order[k[1]]))
    frame = pd.DataFrame([rows[k] for k in keys])
    return frame.drop(columns="from_name") if len(frame) else frame


def notebook_runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`notebook_runs` for the page: indexed by seed and section (by title), no raw
    seconds, and no machine column when every run had the same machine
    (:func:`machines_sentence` names it once)."""
    if runs.empty:
        return runs
    out = runs.drop(columns="wall_seconds").assign(
        section=[SECTION_TITLES.get(s, s) for s in runs["section"]]
    )
    if out["machine"].nunique() == 1:
        out = out.drop(columns="machine")
    return out.set_index(["seed", "section"])


def machines_sentence(runs: pd.DataFrame) -> str:
    """The machine the runs used, said once ("" when none or when they differ: the table then
    has a machine column)."""
    machines = sorted(set(runs["machine"])) if not runs.empty else []
    return f"Every run used one machine: {machines[0]}." if len(machines) == 1 else ""


def wall_time_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Per seed: how many of the five notebooks have results, which are missing, and their
    total wall time in minutes."""
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for seed, group in runs.groupby("seed", sort=True):
        missing = [s for s in SECTIONS if s not in set(group["section"])]
        rows.append(
            {
                "seed": seed,
                "notebooks with results": f"{len(group)} of {len(SECTIONS)}",
                "not yet run": ", ".join(missing) or "-",
                "total wall time (min)": round(group["wall_seconds"].sum() / 60, 1),
            }
        )
    return pd.DataFrame(rows).set_index("seed")
