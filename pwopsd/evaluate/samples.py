"""The sample files of an evaluation: one append-only JSONL file per (benchmark, seed).

Under ``out_dir/<benchmark>/``:

* ``seed<k>.samples.jsonl``: one row per sample (text, extracted answer, verdict), appended
  through :func:`pwopsd.jsonl.append` as samples finish. A resumed run reads it with
  :func:`pwopsd.jsonl.read` (``repair=True``): a torn last line (a kill mid-write) is cut
  off and that sample drawn again; a bad line before the last is corruption and raises
  :class:`~pwopsd.jsonl.CorruptFileError` naming file and line, rewriting nothing.
* ``seed<k>.meta.json``: the settings the samples were drawn with, kept by
  :func:`pwopsd.jsonl.check_settings`; a rerun with other settings is refused instead of
  mixing samples.
* ``seed<k>.problems.json``: per-problem scores, written by the scoring step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pwopsd import jsonl
from pwopsd.data import Benchmark
from pwopsd.grading import Verdict

SampleKey = tuple[int, str, int, int]
"""What a request carries back: (task index, problem id, sample index, sample seed)."""


def read_samples(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Complete rows of a samples file; a torn last line is dropped (``repair``: cut off)."""
    return jsonl.read(path, repair=repair)


@dataclasses.dataclass
class Task:
    """One (benchmark, seed) cell of a run: its samples file and the rows already on it."""

    bench: Benchmark
    seed: int
    samples_path: Path
    done: dict[tuple[str, int], dict[str, Any]]

    @property
    def problems_path(self) -> Path:
        """Where the scoring step writes this cell's per-problem scores."""
        return self.samples_path.with_name(f"seed{self.seed}.problems.json")

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the samples file (fsynced) and count them as done."""
        jsonl.append(self.samples_path, rows)
        for r in rows:
            self.done[(r["problem_id"], r["sample"])] = r


def open_task(out: Path, bench: Benchmark, seed: int, settings: dict[str, Any]) -> Task:
    """The cell of ``bench`` and ``seed`` under ``out``, with the rows it already holds.

    Refuses (:class:`~pwopsd.jsonl.SettingsMismatch`, a ``ValueError``) samples drawn with
    other ``settings``; cuts off a torn last line. Rows of problems outside this call (a
    larger ``max_problems`` before) are kept on disk and in ``done``, unused.
    """
    d = out / bench.name
    d.mkdir(parents=True, exist_ok=True)
    jsonl.check_settings(
        d / f"seed{seed}.meta.json",
        {**settings, "seed": seed, "benchmark": bench.source, "checksum": bench.checksum},
        what="samples",
        fix="use a fresh out_dir",
    )
    path = d / f"seed{seed}.samples.jsonl"
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for row in read_samples(path, repair=True):
        done.setdefault((row["problem_id"], row["sample"]), row)
    return Task(bench, seed, path, done)


def sample_row(
    task: Task, key: SampleKey, completion: Any, answer: str | None, verdict: Verdict
) -> dict[str, Any]:
    """The samples-file row of one graded completion."""
    _, pid, j, seed = key
    return {
        "benchmark": task.bench.name,
        "seed": task.seed,
        "problem_id": pid,
        "sample": j,
        "sample_seed": seed,
        "answer": answer,
        "correct": verdict.correct,
        "grade_method": verdict.method,
        "num_tokens": len(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "text": completion.text,
    }
