"""Regenerate every toy result and benchmark from one clean commit, on an otherwise idle machine.

    .venv/bin/python scripts/regenerate.py [--seeds 1 2 3] [--only STEP ...] [--dry-run]

Runs, in order: the benchmarks (loss, grading, rollout, engine start-up), the toy calibration
and teacher signal, the recipe tunings, the diagnostic for every seed, "beyond" for every seed
(its fitted schedule pools all the diagnostic's seeds, so they come first), then the other
sections' notebooks, seed by seed. Training runs are cached per seed in ``results/toy/runs``,
so sections of one seed share them whatever the order.

The tree must be clean (``results/`` aside): every file then records the same clean commit,
which ``tests/test_results_provenance.py`` checks. A step whose output already records this
commit is skipped, so the script resumes where it stopped, also on another machine or day,
as long as HEAD is the same commit. Each step's output, wall time and the 1-minute load average
before it are printed; the files themselves record their load (``provenance.load_average``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pwopsd (a worktree's), not the installed one

from pwopsd.config import NOTEBOOK_CONFIGS  # noqa: E402
from pwopsd.provenance import git_commit, recorded_commits  # noqa: E402

PY = sys.executable
SECTIONS = tuple(NOTEBOOK_CONFIGS)
"""Every notebook, in the order ``make results`` runs them."""
PER_METHOD = ("opsd", "pw_opsd_moderate", "pw_opsd_aggressive")


def commits_in(path: Path) -> set[str]:
    """Every git_commit a results file records (empty when it does not exist)."""
    return set(recorded_commits(json.loads(path.read_text()))) if path.exists() else set()


def steps(seeds: list[int]) -> list[tuple[str, list[str], Path]]:
    """(name, command, the file that proves it done) in the order they run."""
    bench, toy = ROOT / "results" / "bench", ROOT / "results" / "toy"
    out = [
        ("bench-loss", [PY, "-m", "pwopsd.bench", "loss"], bench / "loss.json"),
        ("bench-grading", [PY, "-m", "pwopsd.bench", "grading"], bench / "grading.json"),
        ("bench-rollout", [PY, "-m", "pwopsd.bench", "rollout"], bench / "rollout.json"),
        (
            "bench-startup",
            [PY, "-m", "pwopsd.bench", "engine", "--compare-startup"],
            bench / "engine_startup.json",
        ),
        ("calibrate", [PY, "-m", "pwopsd.toy", "calibrate"], toy / "calibration.json"),
        ("teacher-signal", [PY, "-m", "pwopsd.toy", "teacher-signal"], toy / "calibration.json"),
        ("recipe", [PY, "-m", "pwopsd.toy", "recipe"], toy / "recipe_tuning.json"),
        (
            "recipe-per-method",
            [
                PY,
                "-m",
                "pwopsd.toy",
                "recipe",
                "--methods",
                *PER_METHOD,
                "--out",
                "results/toy/recipe_tuning_per_method.json",
            ],  # fmt: skip
            toy / "recipe_tuning_per_method.json",
        ),
    ]
    first = ("diagnostic", "beyond")
    order = [(section, seed) for section in first for seed in seeds]
    order += [(sec, seed) for seed in seeds for sec in SECTIONS if sec not in first]
    for section, seed in order:
        # What `make <section> SEED=k` runs, with this interpreter's papermill (a worktree has
        # no .venv of its own).
        executed = f"results/toy/{section}/{section}.seed{seed}.executed.ipynb"
        cmd = [str(Path(PY).with_name("papermill")), f"notebooks/{section}.ipynb", executed,
               "-p", "seed", str(seed), "-p", "profile", "toy", "--cwd", "notebooks"]  # fmt: skip
        out.append((f"{section} seed {seed}", cmd, toy / section / f"{section}.seed{seed}.json"))
    return out


STALE_CACHES = (
    Path("results/toy/position_premise/dial_measurements.json"),
    Path("results/toy/position_premise/diagnostic"),
)
"""Files a section reuses when present instead of measuring again (the position premise's dial
measurements): removed before a run when they record another commit, so they are remade."""


def drop_stale_caches(commit: str) -> None:
    """Remove each of :data:`STALE_CACHES` that records a commit other than ``commit``."""
    for rel in STALE_CACHES:
        path = ROOT / rel
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path] * path.exists()
        if any(commits_in(f) != {commit} for f in files):
            print(f"removing {rel}: recorded by another commit, so it is measured again")
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", nargs="+", help="run only the steps whose name starts with these")
    ap.add_argument("--dry-run", action="store_true", help="list the steps and which are done")
    args = ap.parse_args(argv)
    commit = git_commit()
    if commit.endswith("-dirty") and not args.dry_run:
        print("refusing: uncommitted changes outside results/ (git status)", file=sys.stderr)
        return 2
    todo = steps(args.seeds)
    if args.only:
        todo = [s for s in todo if any(s[0].startswith(o) for o in args.only)]
    if not args.dry_run:
        drop_stale_caches(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    for i, (name, cmd, proof) in enumerate(todo, 1):
        # teacher-signal writes into calibration.json after calibrate: done only when both did.
        done = commits_in(proof) == {commit} and not (
            name == "calibrate" and "teacher_signal" not in proof.read_text()
        )
        state = "done" if done else "to run"
        print(f"[{i}/{len(todo)}] {name}: {state} ({proof.relative_to(ROOT)})", flush=True)
        if done or args.dry_run:
            continue
        start, load = time.time(), os.getloadavg()[0]
        proof.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        print(f"    {name}: {time.time() - start:.0f} s, load before {load:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
