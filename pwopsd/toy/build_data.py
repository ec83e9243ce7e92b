"""Write the toy data: a training corpus and four held-out sets of rising difficulty.

``python -m pwopsd.toy data [--out DIR]`` writes, deterministically (fixed seeds):

* ``train.jsonl``: 4,000 problems with reference solutions along random valid routes (the
  stand-in for OpenThoughts-Math-30k; columns ``problem``, ``solution``, plus ``id``,
  ``answer``), 1 to 5 terms (1 to 9 steps);
* ``toy_math500`` (2 terms, 3 steps), ``toy_aime24`` (3 terms, 5 steps), ``toy_aime25``
  (4 terms, 7 steps), ``toy_hmmt25`` (5 terms, 9 steps): 64 problems each, canonical-route
  solutions. 64 problems x 12 samples keeps one model's evaluation on all four sets to a
  few minutes on 2 CPU cores while the standard error of an Avg@12 stays near 4 points;
* ``toy_val`` (2 to 5 terms, 64 problems): the held-out **validation** set, for tuning
  recipes and for the teacher-signal measurement; the four benchmark sets are never tuned on.

No held-out problem appears in the training corpus (nor in the pretraining stream, which
excludes them too: see :func:`heldout_problem_texts`).
"""

from __future__ import annotations

import json
from pathlib import Path

from pwopsd.config import TOY_DATA_DIR
from pwopsd.toy.task import Difficulty, make_rows
from pwopsd.vocab import TOY_BENCHMARKS

EVAL_SIZE = 64
TRAIN_SIZE = 4000
TRAIN_DIFFICULTY = Difficulty(min_terms=1, max_terms=5, max_factor=5)
EVAL_DIFFICULTIES = {
    name: Difficulty(terms, terms, max_factor=5)
    for name, terms in zip(TOY_BENCHMARKS, (2, 3, 4, 5), strict=True)
}
"""Benchmark set -> its difficulty: toy_math500 2 terms, toy_aime24 3, toy_aime25 4, toy_hmmt25 5."""
EVAL_SEEDS = {name: 1000 + i for i, name in enumerate(TOY_BENCHMARKS)}
TRAIN_SEED = 7
VAL_NAME = "toy_val"
VAL_DIFFICULTY = Difficulty(2, 5, max_factor=5)
VAL_SEED = 2000


def eval_sets() -> dict[str, list[dict[str, str]]]:
    """The four held-out sets (deterministic)."""
    return {
        name: make_rows(EVAL_SIZE, diff, EVAL_SEEDS[name], prefix=name, diverse=False)
        for name, diff in EVAL_DIFFICULTIES.items()
    }


def eval_problem_texts() -> set[str]:
    """Problem texts of the four benchmark sets."""
    return {row["problem"] for rows in eval_sets().values() for row in rows}


def val_set(exclude: set[str] | None = None) -> list[dict[str, str]]:
    """The validation set (deterministic), disjoint from the benchmark sets."""
    exclude = eval_problem_texts() if exclude is None else exclude
    return make_rows(EVAL_SIZE, VAL_DIFFICULTY, VAL_SEED, VAL_NAME, False, exclude)


def heldout_problem_texts() -> set[str]:
    """Problem texts of every held-out set, validation included (excluded from training)."""
    bench = eval_problem_texts()
    return bench | {row["problem"] for row in val_set(bench)}


def train_set(exclude: set[str] | None = None) -> list[dict[str, str]]:
    """The training corpus (deterministic), disjoint from the held-out sets."""
    exclude = heldout_problem_texts() if exclude is None else exclude
    return make_rows(TRAIN_SIZE, TRAIN_DIFFICULTY, TRAIN_SEED, "toy_train", True, exclude)


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` to ``path``, one JSON object a line (parent folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build(out_dir: Path = TOY_DATA_DIR) -> dict[str, int]:
    """Write every split under ``out_dir``; returns rows per file."""
    sets = eval_sets()
    exclude = {row["problem"] for rows in sets.values() for row in rows}
    sets[VAL_NAME] = val_set(exclude)
    exclude |= {row["problem"] for row in sets[VAL_NAME]}
    sets["train"] = train_set(exclude)
    for name, rows in sets.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    return {name: len(rows) for name, rows in sets.items()}
