"""Scores from graded samples: one problem's Avg/Pass/Maj@k, and whole benchmarks per seed.

The rules live in :mod:`pwopsd.metrics`; this module feeds them verdicts, either graded here
(:func:`problem_metrics`, the public one-problem API) or read from the sample files with the
Maj@k clustering done in a :class:`~pwopsd.grading.GradingPool` (:func:`score_tasks`).
"""

from __future__ import annotations

from typing import Any

from pwopsd.evaluate.samples import Task
from pwopsd.grading import GradingPool, grade_pair, is_correct
from pwopsd.metrics import (
    EquivalentBatch,
    benchmark_scores,
    cluster_answers,
    mean_sd,
    problem_scores,
    unbiased_pass_at_k,
)
from pwopsd.provenance import write_json
from pwopsd.vocab import METRICS

UNBIASED_KS = (1, 2, 4, 8)
"""The k of the unbiased pass@k estimates reported beside Pass@n (and k = n itself)."""


def _serial_equivalent(pairs: list[tuple[str, str]]) -> list[bool]:
    return [grade_pair(a, b).correct for a, b in pairs]


def problem_metrics(answers: list[str | None], gold: str) -> dict:
    """Avg@k, Pass@k and Maj@k of one problem's k extracted answers (None = INVALID).

    Returns a dict with ``avg``, ``pass``, ``maj`` (fractions in [0, 1]) plus ``n``,
    ``n_correct`` and ``n_invalid``. Grades in this process (call it from the main thread).
    """
    if not answers:
        raise ValueError("problem_metrics needs at least one answer")
    verdicts = [is_correct(a, gold) for a in answers]
    clusters = cluster_answers([answers], _serial_equivalent)[0]
    return problem_scores(answers, verdicts, clusters)


def _task_scores(
    t: Task, n: int, equivalent: EquivalentBatch
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One cell's benchmark scores (with unbiased pass@k) and its per-problem scores."""
    answer_lists, verdict_lists = [], []
    for p in t.bench.problems:
        rows = [t.done.get((p.id, j)) for j in range(n)]
        if any(r is None for r in rows):
            raise RuntimeError(f"{t.samples_path}: problem {p.id!r} lacks samples after the run")
        answer_lists.append([r["answer"] for r in rows])
        verdict_lists.append([bool(r["correct"]) for r in rows])
    clusters = cluster_answers(answer_lists, equivalent)
    per_problem = [
        {"id": p.id, **problem_scores(a, v, c)}
        for p, a, v, c in zip(t.bench.problems, answer_lists, verdict_lists, clusters)
    ]
    scores = benchmark_scores(per_problem)
    for k in sorted({k for k in (*UNBIASED_KS, n) if k <= n}):
        scores[f"pass@{k}_unbiased"] = sum(
            unbiased_pass_at_k(n, int(pp["n_correct"]), k) for pp in per_problem
        ) / len(per_problem)
    return scores, per_problem


def score_tasks(tasks: list[Task], n: int, pool: GradingPool) -> dict[str, Any]:
    """Per benchmark: scores per seed, their mean and Bessel sd, per-problem details.

    Writes each cell's per-problem scores to ``seed<k>.problems.json`` beside its samples.
    """

    def equivalent(pairs: list[tuple[str, str]]) -> list[bool]:
        return [v.correct for v in pool.grade(pairs)]

    results: dict[str, Any] = {}
    for t in tasks:
        scores, per_problem = _task_scores(t, n, equivalent)
        write_json(t.problems_path, per_problem)
        entry = results.setdefault(t.bench.name, {"seeds": {}})
        entry["seeds"][str(t.seed)] = scores
    for entry in results.values():
        per_seed = list(entry["seeds"].values())
        entry["mean_sd"] = {
            m: mean_sd([s[m] for s in per_seed])
            for m in (*METRICS, *[k for k in per_seed[0] if k.startswith("pass@")])
        }
    return results
