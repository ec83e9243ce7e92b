"""Evaluation (PROTOCOL section 4): grading API, Avg/Pass/Maj@k, resumable runs, CLI.

Public API (fixed names, called by outside checks):

* :func:`extract_answer` ``(completion) -> str | None`` (None = INVALID),
* :func:`is_correct` ``(answer, gold) -> bool``,
* :func:`problem_metrics` ``(answers, gold) -> {"avg", "pass", "maj", ...}``,

and for notebooks :func:`evaluate_model`, which samples ``n`` completions per problem for
every benchmark and evaluation seed with one engine, grades them in worker processes and
returns per-seed Avg/Pass/Maj@n with the mean and Bessel sd over seeds.

Modules:

* :mod:`pwopsd.evaluate.samples`: the sample files (append-only JSONL through
  :mod:`pwopsd.jsonl`, the settings guard, the row of one sample);
* :mod:`pwopsd.evaluate.scoring`: :func:`problem_metrics` and the scores of whole runs;
* :mod:`pwopsd.evaluate.run`: :func:`evaluate_model` (argument checks, the out_dir lock,
  drawing only the missing samples, ``summary.json``);
* :mod:`pwopsd.evaluate.__main__`: the CLI.

Files under ``out_dir``:

* ``<benchmark>/seed<k>.samples.jsonl``: one row per sample (text, extracted answer,
  verdict), appended as samples finish. A killed run restarted with the same arguments
  keeps every complete row, drops a torn last line, and samples only what is missing; a
  corrupt line before the last is refused, naming file and line.
  Each sample's seed is derived from (seed, benchmark, problem id, sample index), so the
  resumed run draws the same samples wherever the backend is batch-invariant.
* ``<benchmark>/seed<k>.meta.json``: the settings the samples were drawn with; a restart
  with different settings is refused instead of mixing samples.
* ``<benchmark>/seed<k>.problems.json``: per-problem scores.
* ``summary.json``: scores plus provenance (model, adapter, git commit, packages, sampling
  parameters, dataset checksums, wall time, hardware).

CLI: ``python -m pwopsd.evaluate --model M --benchmarks toy_math500 toy_aime24 --n 12
--seed 1 --out results/toy/eval/base``.
"""

from pwopsd.evaluate.run import evaluate_model, prompt_template_hash, resolve_benchmarks
from pwopsd.evaluate.samples import read_samples
from pwopsd.evaluate.scoring import problem_metrics
from pwopsd.grading import GradingPool, Verdict, extract_answer, is_correct

__all__ = [
    "GradingPool",
    "Verdict",
    "evaluate_model",
    "extract_answer",
    "is_correct",
    "problem_metrics",
    "prompt_template_hash",
    "read_samples",
    "resolve_benchmarks",
]
